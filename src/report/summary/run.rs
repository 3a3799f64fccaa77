//! The run summary, one page per run, kept under GitHub's size limit by leaving parts out
//! (findings tables first, then step rows) and saying so.

use std::fmt::Write;

use super::markdown::{cell, code, link};
use super::{SUMMARY_LIMIT_BYTES, findings, gantt, mermaid};
use crate::execute::report::{RunReport, human_millis, status_word};
use crate::plan::Plan;

/// How much of the run a summary shows.
#[derive(Debug, Clone, Copy)]
struct Shown {
    /// Whether the findings tables are shown (the counts always are).
    tables: bool,
    /// How many steps, in report order, are shown in the table, findings and timeline.
    steps: usize,
}

/// The summary of `report` (and the plan's flowchart, when given), at most
/// [`SUMMARY_LIMIT_BYTES`] long.
pub(super) fn markdown(report: &RunReport, plan: Option<&Plan>) -> String {
    let total = report.jobs.iter().map(|job| job.steps.len()).sum();
    let render = |tables, steps| compose(report, plan, Shown { tables, steps });
    let full = render(true, total);
    if full.len() <= SUMMARY_LIMIT_BYTES {
        return full;
    }
    let counts = render(false, total);
    if counts.len() <= SUMMARY_LIMIT_BYTES {
        return counts;
    }
    match most_steps_that_fit(total, |steps| render(false, steps).len()) {
        Some(steps) => render(false, steps),
        None => too_large(report),
    }
}

/// The most steps `n` in `0..total` whose summary of `size(n)` bytes fits; `None` when
/// not even `0` does. `size` grows with `n`.
fn most_steps_that_fit(total: usize, size: impl Fn(usize) -> usize) -> Option<usize> {
    if size(total) <= SUMMARY_LIMIT_BYTES {
        return Some(total);
    }
    if size(0) > SUMMARY_LIMIT_BYTES {
        return None;
    }
    // Invariant: `fits` fits and `over` does not.
    let (mut fits, mut over) = (0, total);
    while over - fits > 1 {
        let middle = fits + (over - fits) / 2;
        if size(middle) <= SUMMARY_LIMIT_BYTES {
            fits = middle;
        } else {
            over = middle;
        }
    }
    Some(fits)
}

/// The headline alone, when even a summary without steps would be too large.
fn too_large(report: &RunReport) -> String {
    let mut md = String::new();
    headline(&mut md, report);
    let _ = writeln!(
        md,
        "\n> **This run's summary is larger than GitHub's 1 MiB job summary limit even \
         without its steps.** The action's `report` output has the whole run."
    );
    md
}

/// The whole page for what `shown` allows.
fn compose(report: &RunReport, plan: Option<&Plan>, shown: Shown) -> String {
    let per_job = steps_per_job(report, shown.steps);
    let mut md = String::new();
    headline(&mut md, report);
    left_out_note(&mut md, report, shown);
    steps_table(&mut md, report, &per_job);
    findings::section(&mut md, report, &per_job, shown.tables);
    images(&mut md, report);
    if let Some(chart) = gantt::chart(report, &per_job) {
        let _ = writeln!(md, "\n### Timeline\n\n```mermaid\n{chart}```");
    }
    if let Some(plan) = plan {
        let _ = writeln!(md, "\n### Jobs\n\n```mermaid\n{}```", mermaid(plan));
    }
    md
}

/// How many of each job's steps are shown when the first `steps` of the run are.
fn steps_per_job(report: &RunReport, mut steps: usize) -> Vec<usize> {
    report
        .jobs
        .iter()
        .map(|job| {
            let shown = job.steps.len().min(steps);
            steps -= shown;
            shown
        })
        .collect()
}

fn headline(md: &mut String, report: &RunReport) {
    let _ = writeln!(md, "## jisu-deploy run: {}\n", status_word(report.result));
    let commit = report
        .sha
        .as_deref()
        .map(|sha| {
            format!(
                " · **Commit:** {}",
                code(&sha.chars().take(12).collect::<String>())
            )
        })
        .unwrap_or_default();
    let _ = writeln!(
        md,
        "**Event:** {}{commit} · **Took:** {}",
        cell(&report.event),
        human_millis(report.duration_ms)
    );
}

/// A visible note when the summary leaves something out.
fn left_out_note(md: &mut String, report: &RunReport, shown: Shown) {
    let total: usize = report.jobs.iter().map(|job| job.steps.len()).sum();
    let has_tables = report
        .jobs
        .iter()
        .flat_map(|job| &job.steps)
        .any(|step| step.findings.as_ref().is_some_and(|f| !f.first.is_empty()));
    let mut parts = Vec::new();
    if !shown.tables && has_tables {
        parts.push("the findings tables (their counts are shown)".to_owned());
    }
    if shown.steps < total {
        parts.push(format!(
            "{} of {total} steps (rows, findings and timeline)",
            total - shown.steps
        ));
    }
    if !parts.is_empty() {
        let _ = writeln!(
            md,
            "\n> **Shortened to fit GitHub's 1 MiB job summary limit.** Left out: {}. \
             The action's `report` output has the whole run.",
            parts.join("; ")
        );
    }
}

/// Jobs and the first `per_job[i]` steps of each job `i`, with result, duration and detail.
fn steps_table(md: &mut String, report: &RunReport, per_job: &[usize]) {
    let _ = writeln!(md, "\n### Steps\n");
    let _ = writeln!(md, "| Job | Step | Result | Duration | Detail |");
    let _ = writeln!(md, "| --- | --- | --- | --- | --- |");
    for (job, &count) in report.jobs.iter().zip(per_job) {
        let _ = writeln!(
            md,
            "| **{}** | | {} | {} | {} |",
            cell(&job.id),
            status_word(job.status),
            job.duration_ms.map(human_millis).unwrap_or_default(),
            cell(job.reason.as_deref().unwrap_or_default())
        );
        for step in &job.steps[..count] {
            let detail = step.error.as_deref().or(step.reason.as_deref());
            let _ = writeln!(
                md,
                "| | {} | {} | {} | {} |",
                cell(&step.id),
                status_word(step.status),
                step.duration_ms.map(human_millis).unwrap_or_default(),
                cell(detail.unwrap_or_default())
            );
        }
    }
}

/// The images the run pushed or promoted, and the environment URL.
fn images(md: &mut String, report: &RunReport) {
    if !report.digests.is_empty() {
        let _ = writeln!(md, "\n### Images\n\n| Component | Image |\n| --- | --- |");
        for (component, image) in &report.digests {
            let _ = writeln!(md, "| {} | {} |", cell(component), code(image));
        }
    }
    if let Some(url) = &report.environment_url {
        let _ = writeln!(md, "\n**Environment:** {}", link(url));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_steps_that_fit_are_found() {
        let size = |per_step: usize| move |n: usize| 1000 + n * per_step;
        assert_eq!(most_steps_that_fit(10, size(1)), Some(10));
        assert_eq!(
            most_steps_that_fit(10_000, size(1000)),
            Some((SUMMARY_LIMIT_BYTES - 1000) / 1000)
        );
        assert_eq!(
            most_steps_that_fit(5, |n| SUMMARY_LIMIT_BYTES + 1 + n),
            None
        );
    }
}
