//! Gate steps: run the gate's command (output captured and logged), read its reports into
//! findings and coverage, and decide pass or fail ([`crate::findings::verdict`]). The
//! findings are kept for the job's check run and shown in the step report.

use std::collections::BTreeMap;
use std::path::Path;

use tracing::{info, warn};

use super::Done;
use super::report::{FIRST_FINDINGS, FindingLine, GateFindings};
use crate::config::pipeline::{Gate, ReportFormat, ReportSource, Stream};
use crate::findings::coverage::{self, Coverage};
use crate::findings::verdict::{self, Exit, Read};
use crate::findings::{Finding, MAX_INPUT_BYTES, Summary, Tool, thresholds};
use crate::process::{self, Output, ProcessError};

/// A gate that did not pass: the rules it broke.
#[derive(Debug, thiserror::Error)]
#[error("gate `{name}` failed: {}", reasons.join("; "))]
pub struct GateFailed {
    /// The gate's name.
    pub name: String,
    /// The rules it broke.
    pub reasons: Vec<String>,
}

/// What one gate step found.
#[derive(Debug, Clone, Default)]
pub struct GateRun {
    /// Every finding, paths relative to the repository root where they name files.
    pub findings: Vec<Finding>,
    /// For the step report.
    pub report: Option<GateFindings>,
}

/// Runs `gate` in `checkout`. `Err` only for a failed gate ([`GateFailed`], or the
/// command's [`ProcessError`] when the gate reads no reports); what it found comes back
/// either way.
pub async fn run(checkout: &Path, gate: &Gate) -> (anyhow::Result<Done>, GateRun) {
    let (exit, output) = match gate.command() {
        None => (Exit::NoCommand, Output::default()),
        Some(command) => {
            let child = process::Child {
                name: &command.name,
                argv: &command.run,
                workdir: &command.workdir,
                checkout,
                env: &command.env,
                timeout: command.timeout.0,
            };
            let keep = if gate.reports.is_empty() {
                0
            } else {
                MAX_INPUT_BYTES + 1
            };
            let (result, output) = process::run_captured(&child, keep).await;
            let exit = match result {
                Ok(()) => Exit::Success,
                Err(ProcessError::Failed { status, .. }) if !gate.reports.is_empty() => {
                    Exit::Failure(status)
                }
                Err(error) => return (Err(error.into()), GateRun::default()),
            };
            (exit, output)
        }
    };
    let read = read_reports(checkout, gate, &output);
    let limits = limits(gate);
    let verdict = verdict::decide(
        &exit,
        Read {
            findings: &read.findings,
            coverage: read.coverage.as_ref(),
            problems: &read.problems,
            all_judged: all_judged(gate),
        },
        &limits,
    );
    let summary = Summary::of(&read.findings);
    info!(
        "gate `{}`: {summary}{}",
        gate.name,
        read.coverage
            .as_ref()
            .map(|c| format!(", coverage {:.1}%", c.total_percent))
            .unwrap_or_default()
    );
    let lines = verdict.lines();
    for line in &lines {
        info!("gate `{}`: {line}", gate.name);
    }
    let report = GateFindings {
        errors: summary.errors,
        warnings: summary.warnings,
        notices: summary.notices,
        coverage_percent: read.coverage.as_ref().map(|c| c.total_percent),
        verdicts: lines,
        first: read
            .findings
            .iter()
            .take(FIRST_FINDINGS)
            .map(FindingLine::of)
            .collect(),
    };
    let outcome = if verdict.passed() {
        let mut outputs = BTreeMap::from([
            ("errors".to_owned(), summary.errors.to_string()),
            ("warnings".to_owned(), summary.warnings.to_string()),
            ("notices".to_owned(), summary.notices.to_string()),
        ]);
        if let Some(coverage) = &read.coverage {
            outputs.insert(
                "coverage".to_owned(),
                format!("{:.1}", coverage.total_percent),
            );
        }
        Ok(Done::Ran(outputs))
    } else {
        Err(GateFailed {
            name: gate.name.clone(),
            reasons: verdict.failed.clone(),
        }
        .into())
    };
    let run = GateRun {
        findings: read.findings,
        report: Some(report),
    };
    (outcome, run)
}

/// What the reports held.
#[derive(Default)]
struct Reports {
    findings: Vec<Finding>,
    coverage: Option<Coverage>,
    problems: Vec<String>,
}

fn read_reports(checkout: &Path, gate: &Gate, output: &Output) -> Reports {
    let mut reports = Reports::default();
    for source in &gate.reports {
        let text = match source_text(checkout, gate, source, output) {
            Ok(text) => text,
            Err(problem) => {
                warn!("gate `{}`: {problem}", gate.name);
                reports.problems.push(problem);
                continue;
            }
        };
        let parsed = match tool(source.format) {
            None => coverage::parse(&text).map(|c| reports.coverage = Some(c)),
            Some(tool) => crate::findings::parse(tool, &text).map(|found| {
                reports
                    .findings
                    .extend(found.into_iter().map(|f| rooted(f, &gate.workdir)))
            }),
        };
        if let Err(error) = parsed {
            let problem = format!("{}: {error}", where_from(source));
            warn!("gate `{}`: {problem}", gate.name);
            reports.problems.push(problem);
        }
    }
    reports
}

/// The report's text: a file under the gate's folder (inside the checkout, bounded), or
/// the captured stream.
fn source_text(
    checkout: &Path,
    gate: &Gate,
    source: &ReportSource,
    output: &Output,
) -> Result<String, String> {
    let bytes = match &source.file {
        Some(file) => {
            let relative = Path::new(&gate.workdir).join(file);
            let relative = relative.to_string_lossy();
            let path = process::inside(checkout, &relative).ok_or_else(|| {
                format!(
                    "{}: not found in the checkout (did the command write it?)",
                    where_from(source)
                )
            })?;
            read_report(&path).map_err(|e| format!("{}: {e}", where_from(source)))?
        }
        None => {
            let bytes = match source.output_stream() {
                Some(Stream::Stderr) => &output.stderr,
                _ => &output.stdout,
            };
            if bytes.len() > MAX_INPUT_BYTES {
                return Err(format!(
                    "{}: more than {} MiB of output",
                    where_from(source),
                    MAX_INPUT_BYTES >> 20
                ));
            }
            bytes.clone()
        }
    };
    String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8 text", where_from(source)))
}

/// A report file: a regular file (not a folder or a pipe) of at most [`MAX_INPUT_BYTES`].
fn read_report(path: &Path) -> Result<Vec<u8>, String> {
    if !std::fs::metadata(path)
        .map_err(|e| e.to_string())?
        .is_file()
    {
        return Err("not a file".to_owned());
    }
    crate::config::read_bounded(path, MAX_INPUT_BYTES as u64)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("larger than {} MiB", MAX_INPUT_BYTES >> 20))
}

/// `bandit report reports/bandit.json`, `flake8 output (stdout)`.
fn where_from(source: &ReportSource) -> String {
    match &source.file {
        Some(file) => format!("{} report {file}", source.format.name()),
        None => {
            let stream = source.output_stream().unwrap_or(Stream::Stdout);
            format!("{} output ({})", source.format.name(), stream.name())
        }
    }
}

/// The findings parser for a format; `None` for coverage.
fn tool(format: ReportFormat) -> Option<Tool> {
    Some(match format {
        ReportFormat::Flake8 => Tool::Flake8,
        ReportFormat::Black => Tool::Black,
        ReportFormat::Isort => Tool::Isort,
        ReportFormat::Bandit => Tool::Bandit,
        ReportFormat::PipAudit => Tool::PipAudit,
        ReportFormat::PytestJunit => Tool::PytestJunit,
        ReportFormat::Cobertura => return None,
    })
}

/// The pipeline file's thresholds as the findings module holds them.
fn limits(gate: &Gate) -> thresholds::Thresholds {
    let t = &gate.thresholds;
    thresholds::Thresholds {
        bandit_min_severity: t.bandit_severity,
        allowed_vulnerabilities: t.vulnerabilities,
        coverage_min_percent: t.coverage,
    }
}

/// Whether every report of the gate is judged by one of its thresholds.
fn all_judged(gate: &Gate) -> bool {
    let t = &gate.thresholds;
    !gate.reports.is_empty()
        && gate.reports.iter().all(|r| match r.format {
            ReportFormat::Bandit => t.bandit_severity.is_some(),
            ReportFormat::PipAudit => t.vulnerabilities.is_some(),
            ReportFormat::Cobertura => t.coverage.is_some(),
            _ => false,
        })
}

/// A finding's file made relative to the repository root (tools name files relative to
/// the folder they ran in). pip-audit names packages, not files, and is left alone.
fn rooted(mut finding: Finding, workdir: &str) -> Finding {
    let workdir = workdir.trim_end_matches('/');
    if finding.tool != Tool::PipAudit
        && workdir != "."
        && !workdir.is_empty()
        && !finding.path.starts_with('/')
    {
        let path = finding.path.trim_start_matches("./");
        finding.path = format!("{workdir}/{path}");
    }
    finding
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finding_paths_are_made_relative_to_the_repository() {
        let finding = Finding {
            tool: Tool::Flake8,
            path: "./app/main.py".into(),
            line: Some(1),
            column: None,
            code: None,
            severity: crate::findings::Severity::Warning,
            message: "m".into(),
        };
        assert_eq!(
            rooted(finding.clone(), "backend").path,
            "backend/app/main.py"
        );
        assert_eq!(rooted(finding.clone(), ".").path, "./app/main.py");
        let package = Finding {
            tool: Tool::PipAudit,
            path: "jinja2==2.4.1".into(),
            ..finding
        };
        assert_eq!(rooted(package, "backend").path, "jinja2==2.4.1");
    }
}
