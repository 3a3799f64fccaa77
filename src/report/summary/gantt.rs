//! The run's timeline as a Mermaid gantt chart: a section per job, a bar per step that ran.

use std::fmt::Write;

use crate::execute::report::{JobReport, RunReport, Status, StepReport};

/// Longest section or task name shown, in characters.
const MAX_NAME_CHARS: usize = 60;

/// Words Mermaid's gantt lexer reads as a statement when a line starts with them; a task
/// name that starts with one gets a `_` before it.
const KEYWORDS: &[&str] = &[
    "accdescr",
    "accdescription",
    "acctitle",
    "axisformat",
    "call",
    "click",
    "dateformat",
    "excludes",
    "gantt",
    "href",
    "includes",
    "inclusiveenddates",
    "section",
    "tickinterval",
    "title",
    "todaymarker",
    "topaxis",
    "weekday",
    "weekend",
];

/// The chart for the first `shown[i]` steps of each job `i`; `None` when none of them ran.
pub(super) fn chart(report: &RunReport, shown: &[usize]) -> Option<String> {
    let mut sections = String::new();
    for (job, &count) in report.jobs.iter().zip(shown) {
        section(&mut sections, job, &job.steps[..count]);
    }
    if sections.is_empty() {
        return None;
    }
    let mut out = String::from("gantt\n  dateFormat x\n  axisFormat %H:%M:%S\n  todayMarker off\n");
    out.push_str(&sections);
    Some(out)
}

/// A section for `job` with a task per step that ran; nothing when none did.
fn section(out: &mut String, job: &JobReport, steps: &[StepReport]) {
    let tasks: Vec<String> = steps.iter().filter_map(task).collect();
    if tasks.is_empty() {
        return;
    }
    let _ = writeln!(out, "  section {}", name(&job.id));
    for task in tasks {
        let _ = writeln!(out, "    {task}");
    }
}

/// `name :tag, start, end` in Unix milliseconds, for a step that ran and says when.
fn task(step: &StepReport) -> Option<String> {
    let tag = match step.status {
        Status::Succeeded => "done",
        Status::Failed => "crit",
        Status::Skipped | Status::NotReached => return None,
    };
    let start = step
        .started
        .as_deref()?
        .parse::<jiff::Timestamp>()
        .ok()?
        .as_millisecond();
    let duration = i64::try_from(step.duration_ms?).ok()?;
    let end = start.checked_add(duration)?;
    Some(format!("{} :{tag}, {start}, {end}", name(&step.id)))
}

/// An id as a section or task name: characters other than letters, digits, spaces and
/// `-_./()` become `_` (`:` ends a name, `#` and `%` start comments, `;` ends a statement),
/// at most [`MAX_NAME_CHARS`] of them, and a `_` in front when it would start with a
/// keyword or a date.
fn name(id: &str) -> String {
    let safe = |c: char| c.is_alphanumeric() || " -_./()".contains(c);
    let mut name: String = id
        .trim()
        .chars()
        .take(MAX_NAME_CHARS)
        .map(|c| if safe(c) { c } else { '_' })
        .collect();
    if name.is_empty() || reads_as_statement(&name) {
        name.insert(0, '_');
    }
    name
}

/// Whether a line starting with `name` would be a statement or a date to the lexer.
fn reads_as_statement(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let keyword = KEYWORDS.iter().any(|word| {
        lower
            .strip_prefix(word)
            .is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_'))
    });
    let date = lower.len() >= 4 && lower.as_bytes()[..4].iter().all(u8::is_ascii_digit);
    keyword || date
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_break_the_chart() {
        assert_eq!(name("flake8"), "flake8");
        assert_eq!(name("deploy-staging"), "deploy-staging");
        assert_eq!(name("a: b # c; d %% e\nf"), "a_ b _ c_ d __ e_f");
        assert_eq!(name("click me"), "_click me");
        assert_eq!(name("Gantt-x"), "_Gantt-x");
        assert_eq!(name("title"), "_title");
        assert_eq!(name("titles"), "titles");
        assert_eq!(name("2024-01-01"), "_2024-01-01");
        assert_eq!(name(""), "_");
        assert_eq!(name(&"x".repeat(100)).len(), MAX_NAME_CHARS);
    }
}
