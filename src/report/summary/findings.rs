//! The run summary's findings section: per gate step its counts, coverage and verdicts,
//! and a table of the first findings.

use std::fmt::Write;

use super::markdown::cell;
use crate::execute::report::{FindingLine, GateFindings, RunReport, StepReport, status_word};

/// The section for the first `shown[i]` steps of each job `i`; the tables of findings only
/// when `tables`. Nothing when no such step has findings.
pub(super) fn section(md: &mut String, report: &RunReport, shown: &[usize], tables: bool) {
    let gates: Vec<(String, &StepReport, &GateFindings)> = report
        .jobs
        .iter()
        .zip(shown)
        .flat_map(|(job, &count)| {
            job.steps[..count].iter().filter_map(move |step| {
                let found = step.findings.as_ref()?;
                Some((format!("{} / {}", job.id, step.id), step, found))
            })
        })
        .collect();
    if gates.is_empty() {
        return;
    }
    let _ = writeln!(md, "\n### Findings\n");
    let _ = writeln!(
        md,
        "| Gate | Result | Errors | Warnings | Notices | Coverage | Verdicts |"
    );
    let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- | --- |");
    for (gate, step, found) in &gates {
        counts_row(md, gate, step, found);
    }
    if tables {
        for (gate, _, found) in &gates {
            first_findings(md, gate, found);
        }
    }
}

/// One gate's row: result, counts, coverage and the verdicts, one per line.
fn counts_row(md: &mut String, gate: &str, step: &StepReport, found: &GateFindings) {
    let coverage = found
        .coverage_percent
        .map(|percent| format!("{percent:.1}%"))
        .unwrap_or_default();
    let verdicts: Vec<String> = found.verdicts.iter().map(|v| cell(v)).collect();
    let _ = writeln!(
        md,
        "| {} | {} | {} | {} | {} | {} | {} |",
        cell(gate),
        status_word(step.status),
        found.errors,
        found.warnings,
        found.notices,
        coverage,
        verdicts.join("<br>")
    );
}

/// One gate's first findings as a table, and how many more it counted.
fn first_findings(md: &mut String, gate: &str, found: &GateFindings) {
    if found.first.is_empty() {
        return;
    }
    let _ = writeln!(md, "\n#### {}\n", cell(gate));
    let _ = writeln!(md, "| Tool | Severity | Where | Code | Message |");
    let _ = writeln!(md, "| --- | --- | --- | --- | --- |");
    for line in &found.first {
        finding_row(md, line);
    }
    let counted = found.errors + found.warnings + found.notices;
    let more = counted.saturating_sub(found.first.len());
    if more > 0 {
        let _ = writeln!(
            md,
            "\n{more} more {} {} counted above but not listed.",
            plural(more, "finding", "findings"),
            plural(more, "is", "are")
        );
    }
}

fn finding_row(md: &mut String, line: &FindingLine) {
    let place = match line.line {
        Some(number) => format!("{}:{number}", line.path),
        None => line.path.clone(),
    };
    let _ = writeln!(
        md,
        "| {} | {} | {} | {} | {} |",
        cell(&line.tool),
        cell(&line.severity),
        cell(&place),
        cell(line.code.as_deref().unwrap_or_default()),
        cell(&line.message)
    );
}

fn plural(count: usize, one: &'static str, many: &'static str) -> &'static str {
    if count == 1 { one } else { many }
}
