//! The job summary GitHub shows on the run page: for a plan, a table of jobs and steps and
//! a Mermaid flowchart of how the jobs depend on each other; for a run, each step's result
//! and duration, the gates' findings, the images and the environment URL, and a Mermaid
//! gantt chart of the steps' timeline.
//!
//! Every text from outside (a tool's message, a branch, a path, an error) goes through one
//! escaping function for Markdown, and Mermaid gets ids and labels it cannot misread.

mod findings;
mod gantt;
mod markdown;
mod run;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use crate::output;

use self::markdown::cell;
use crate::execute::report::{RunReport, human_millis, status_word};
use crate::plan::Plan;
use crate::plan::render::{self, View};

/// Markdown for `GITHUB_STEP_SUMMARY`: the plan as `plan` shows it or a dry `run` would
/// carry it out.
pub fn plan_markdown(plan: &Plan, view: View) -> String {
    let mut md = String::new();
    let title = match view {
        View::Plan => "## jisu-deploy plan",
        View::DryRun => "## jisu-deploy run (dry run)",
    };
    let _ = writeln!(md, "{title}\n");
    let _ = writeln!(md, "{}\n", cell(&render::headline(plan, view)));
    for note in &plan.notes {
        let _ = writeln!(md, "> {}\n", cell(note));
    }
    if plan.jobs.is_empty() {
        return md;
    }
    let _ = writeln!(md, "| Job | Step | Runs | Why |");
    let _ = writeln!(md, "| --- | --- | --- | --- |");
    for job in &plan.jobs {
        let _ = writeln!(
            md,
            "| **{}** | | {} | {} |",
            cell(&job.id),
            yes_no(job.decision.runs),
            cell(&job.decision.reason)
        );
        for step in &job.steps {
            let _ = writeln!(
                md,
                "| | {} | {} | {} |",
                cell(&step.id),
                yes_no(step.decision.runs),
                cell(&step.decision.reason)
            );
        }
    }
    let _ = writeln!(md, "\n```mermaid\n{}```", mermaid(plan));
    md
}

fn yes_no(runs: bool) -> &'static str {
    if runs { "yes" } else { "skipped" }
}

/// A Mermaid flowchart: one node per job, an edge per `needs`, skipped jobs dashed. Node
/// ids are the job ids with other characters than ASCII letters and digits as `_` (made
/// unique, and never a Mermaid keyword); labels are the job ids with Mermaid's entity codes
/// for the characters it would read as syntax.
pub fn mermaid(plan: &Plan) -> String {
    let mut out = String::from("flowchart LR\n");
    let nodes = node_ids(plan.jobs.iter().map(|job| job.id.as_str()));
    let node = |id: &str| nodes.get(id).map(String::as_str).unwrap_or("missing");
    for job in &plan.jobs {
        let label = if job.decision.runs {
            job.id.clone()
        } else {
            format!("{} (skipped)", job.id)
        };
        let _ = writeln!(out, "  {}[\"{}\"]", node(&job.id), mermaid_label(&label));
    }
    for job in &plan.jobs {
        for need in job
            .needs
            .iter()
            .filter(|need| nodes.contains_key(need.as_str()))
        {
            let _ = writeln!(out, "  {} --> {}", node(need), node(&job.id));
        }
    }
    let skipped: Vec<&str> = plan
        .jobs
        .iter()
        .filter(|j| !j.decision.runs)
        .map(|j| node(&j.id))
        .collect();
    if !skipped.is_empty() {
        let _ = writeln!(out, "  classDef skipped stroke-dasharray: 5 5,color:#888");
        let _ = writeln!(out, "  class {} skipped", skipped.join(","));
    }
    out
}

/// Words a flowchart reads as syntax where a node id stands.
const FLOWCHART_KEYWORDS: &[&str] = &[
    "call",
    "class",
    "classdef",
    "click",
    "default",
    "end",
    "flowchart",
    "graph",
    "href",
    "linkstyle",
    "style",
    "subgraph",
];

/// A flowchart node id per job id: ASCII letters, digits and `_`, a `job_` in front of a
/// keyword, an empty id or one starting with a digit, and `_2`, `_3`, ... after an id
/// already taken.
fn node_ids<'a>(ids: impl Iterator<Item = &'a str>) -> BTreeMap<String, String> {
    let mut nodes = BTreeMap::new();
    let mut taken = BTreeSet::new();
    for id in ids {
        if nodes.contains_key(id) {
            continue;
        }
        let mut base: String = id
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let keyword = FLOWCHART_KEYWORDS.contains(&base.to_ascii_lowercase().as_str());
        if keyword || !base.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            base.insert_str(0, "job_");
        }
        let mut node = base.clone();
        for n in 2.. {
            if taken.insert(node.clone()) {
                break;
            }
            node = format!("{base}_{n}");
        }
        nodes.insert(id.to_owned(), node);
    }
    nodes
}

/// Text inside a quoted Mermaid label: quotes, `#`, `<`, `>`, `&` and backticks as
/// Mermaid's `#code;` entities, line breaks as spaces.
fn mermaid_label(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' | '#' | '<' | '>' | '&' | '`' => {
                let _ = write!(out, "#{};", u32::from(c));
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The run report for a terminal or log: one line per job and step with its status and
/// duration, then the images and the environment URL.
pub fn run_text(report: &RunReport) -> String {
    let mut out = String::new();
    output::push_line(
        &mut out,
        &format!(
            "Run of {}: {} in {}",
            report.event,
            status_word(report.result),
            human_millis(report.duration_ms)
        ),
    );
    for job in &report.jobs {
        output::push_line(
            &mut out,
            &format!(
                "  {:<11} {}{}{}",
                status_word(job.status),
                job.id,
                took(job.duration_ms),
                because(job.reason.as_deref())
            ),
        );
        for step in &job.steps {
            let detail = step.error.as_deref().or(step.reason.as_deref());
            output::push_line(
                &mut out,
                &format!(
                    "    {:<11} {}{}{}",
                    status_word(step.status),
                    step.id,
                    took(step.duration_ms),
                    because(detail)
                ),
            );
        }
    }
    for (component, image) in &report.digests {
        output::push_line(&mut out, &format!("  image {component}: {image}"));
    }
    if let Some(url) = &report.environment_url {
        output::push_line(&mut out, &format!("  environment: {url}"));
    }
    out
}

fn took(ms: Option<u64>) -> String {
    ms.map(|ms| format!(" ({})", human_millis(ms)))
        .unwrap_or_default()
}

fn because(reason: Option<&str>) -> String {
    reason.map(|r| format!(": {r}")).unwrap_or_default()
}

/// Text from outside (a tool's message, a path, an error) as inert Markdown inline text;
/// it must not start a line.
pub fn markdown_text(text: &str) -> String {
    markdown::cell(text)
}

/// The most bytes GitHub takes from one step's `GITHUB_STEP_SUMMARY` (1 MiB); the run
/// summary never exceeds it.
pub const SUMMARY_LIMIT_BYTES: usize = 1 << 20;

/// The run report for `GITHUB_STEP_SUMMARY`, one page: each step's result and duration,
/// the gates' findings, the images and environment URL, a gantt chart of the steps that
/// ran, and the flowchart of `plan`'s jobs (see [`mermaid`]) when given the plan the run
/// carried out; at most [`SUMMARY_LIMIT_BYTES`] (findings tables, then step rows are left
/// out to fit, with a note saying so).
pub fn run_markdown(report: &RunReport, plan: Option<&Plan>) -> String {
    run::markdown(report, plan)
}
