//! Whether a gate passed: its command's exit, the reports read from it and its thresholds,
//! in one pure decision with a line per rule applied.
//!
//! - A command that could not start or ran past its deadline fails the gate.
//! - A report that is missing or cannot be parsed fails the gate: findings that cannot be
//!   read cannot be judged.
//! - Every threshold crossed fails the gate, its message naming the limit.
//! - A non-zero exit fails the gate, unless every report of the gate is judged by a
//!   threshold (bandit by `bandit_severity`, pip-audit by `vulnerabilities`, coverage by
//!   `coverage`): then the thresholds are the judge (bandit exits 1 on a low issue the
//!   gate allows).
//! - A gate without a command (reading reports an earlier step wrote) has no exit status:
//!   an error or warning finding of a report no threshold judges fails it.

use super::coverage::Coverage;
use super::thresholds::Thresholds;
use super::{Finding, Severity, Tool};

/// How a gate's command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// The gate runs no command.
    NoCommand,
    /// Exit status 0.
    Success,
    /// It ran and exited unsuccessfully (the OS's words for the status).
    Failure(String),
    /// It did not start or did not finish (the reason).
    Broken(String),
}

/// A gate's verdict: the rules it broke and the rules it kept, one line each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateVerdict {
    /// The rules broken; the gate passed when there are none.
    pub failed: Vec<String>,
    /// The rules kept.
    pub held: Vec<String>,
}

impl GateVerdict {
    /// Whether the gate passed.
    pub fn passed(&self) -> bool {
        self.failed.is_empty()
    }

    /// Every line, broken rules first.
    pub fn lines(&self) -> Vec<String> {
        self.failed.iter().chain(&self.held).cloned().collect()
    }
}

/// What the gate read, and which tools its thresholds judge.
#[derive(Debug, Clone, Copy)]
pub struct Read<'a> {
    /// Every finding of every report.
    pub findings: &'a [Finding],
    /// The coverage report, if the gate reads one.
    pub coverage: Option<&'a Coverage>,
    /// Reports that could not be read or parsed: one message each.
    pub problems: &'a [String],
    /// Whether every report the gate reads is judged by a threshold.
    pub all_judged: bool,
}

/// The verdict on one gate.
pub fn decide(exit: &Exit, read: Read<'_>, thresholds: &Thresholds) -> GateVerdict {
    let mut failed: Vec<String> = Vec::new();
    let mut passed: Vec<String> = Vec::new();
    match exit {
        Exit::Broken(why) => failed.push(why.clone()),
        Exit::Failure(status) if !read.all_judged || !read.problems.is_empty() => {
            failed.push(format!("the command failed ({status})"));
        }
        Exit::Failure(status) => {
            passed.push(format!("the command's {status} is left to the thresholds"))
        }
        Exit::Success => {}
        Exit::NoCommand => {
            let judged = judged_tools(thresholds);
            let unjudged: Vec<&Finding> = read
                .findings
                .iter()
                .filter(|f| !judged.contains(&f.tool) && f.severity >= Severity::Warning)
                .collect();
            if let Some(first) = unjudged.first() {
                failed.push(format!(
                    "{} finding(s) of error or warning severity, the first {}",
                    unjudged.len(),
                    place(first)
                ));
            }
        }
    }
    failed.extend(read.problems.iter().cloned());
    for verdict in thresholds.evaluate(read.findings, read.coverage) {
        if verdict.passed {
            passed.push(verdict.message);
        } else {
            failed.push(verdict.message);
        }
    }
    GateVerdict {
        failed,
        held: passed,
    }
}

/// The tools whose findings a threshold judges.
fn judged_tools(thresholds: &Thresholds) -> Vec<Tool> {
    let mut tools = Vec::new();
    if thresholds.bandit_min_severity.is_some() {
        tools.push(Tool::Bandit);
    }
    if thresholds.allowed_vulnerabilities.is_some() {
        tools.push(Tool::PipAudit);
    }
    tools
}

/// `flake8 F401 at app/main.py:3`.
fn place(finding: &Finding) -> String {
    let at = match finding.line {
        Some(line) => format!("{}:{line}", finding.path),
        None => finding.path.clone(),
    };
    match &finding.code {
        Some(code) => format!("{} {code} at {at}", finding.tool),
        None => format!("{} at {at}", finding.tool),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::findings::bandit::Level;

    fn finding(tool: Tool, severity: Severity) -> Finding {
        Finding {
            tool,
            path: "app/a.py".into(),
            line: Some(3),
            column: None,
            code: Some("X1".into()),
            severity,
            message: "m".into(),
        }
    }

    fn read<'a>(findings: &'a [Finding], problems: &'a [String], all_judged: bool) -> Read<'a> {
        Read {
            findings,
            coverage: None,
            problems,
            all_judged,
        }
    }

    #[test]
    fn without_thresholds_the_exit_status_decides() {
        let found = [finding(Tool::Flake8, Severity::Warning)];
        let none = Thresholds::default();
        let failed = decide(
            &Exit::Failure("exit status: 1".into()),
            read(&found, &[], false),
            &none,
        );
        assert!(!failed.passed());
        assert_eq!(failed.failed, ["the command failed (exit status: 1)"]);
        assert!(decide(&Exit::Success, read(&found, &[], false), &none).passed());
    }

    #[test]
    fn thresholds_judge_a_tool_that_exits_one_on_any_issue() {
        let low = [finding(Tool::Bandit, Severity::Notice)];
        let limits = Thresholds {
            bandit_min_severity: Some(Level::Medium),
            ..Thresholds::default()
        };
        let exit = Exit::Failure("exit status: 1".into());
        let verdict = decide(&exit, read(&low, &[], true), &limits);
        assert!(verdict.passed(), "{:?}", verdict.failed);
        let high = [finding(Tool::Bandit, Severity::Error)];
        let verdict = decide(&exit, read(&high, &[], true), &limits);
        assert!(!verdict.passed());
        assert!(
            verdict.failed[0].contains("minimum severity medium"),
            "{:?}",
            verdict.failed
        );
    }

    #[test]
    fn an_unjudged_report_keeps_the_exit_status_in_force() {
        let limits = Thresholds {
            coverage_min_percent: Some(50.0),
            ..Thresholds::default()
        };
        let covered = Coverage {
            total_percent: 90.0,
            lines_valid: None,
            lines_covered: None,
            files: Vec::new(),
        };
        let exit = Exit::Failure("exit status: 1".into());
        let verdict = decide(
            &exit,
            Read {
                findings: &[],
                coverage: Some(&covered),
                problems: &[],
                all_judged: false,
            },
            &limits,
        );
        assert!(!verdict.passed());
        assert_eq!(verdict.failed[0], "the command failed (exit status: 1)");
    }

    #[test]
    fn unreadable_reports_and_broken_commands_fail() {
        let problems = ["bandit report reports/b.json: not found".to_owned()];
        let verdict = decide(
            &Exit::Success,
            read(&[], &problems, true),
            &Thresholds::default(),
        );
        assert!(!verdict.passed());
        let broken = decide(
            &Exit::Broken("`t` did not finish within 1s".into()),
            read(&[], &[], true),
            &Thresholds::default(),
        );
        assert!(!broken.passed());
    }

    #[test]
    fn reports_from_an_earlier_step_fail_on_unjudged_findings() {
        let found = [
            finding(Tool::Bandit, Severity::Error),
            finding(Tool::PytestJunit, Severity::Error),
        ];
        let limits = Thresholds {
            bandit_min_severity: Some(Level::High),
            ..Thresholds::default()
        };
        let verdict = decide(&Exit::NoCommand, read(&found, &[], false), &limits);
        assert!(!verdict.passed());
        assert!(
            verdict.failed[0].starts_with(
                "1 finding(s) of error or warning severity, the first pytest-junit X1 at app/a.py:3"
            ),
            "{:?}",
            verdict.failed
        );
        let notices = [finding(Tool::PytestJunit, Severity::Notice)];
        assert!(
            decide(
                &Exit::NoCommand,
                read(&notices, &[], false),
                &Thresholds::default()
            )
            .passed()
        );
    }
}
