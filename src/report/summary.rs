//! The job summary GitHub shows on the run page: a table of jobs and steps and a Mermaid
//! flowchart of how the jobs depend on each other.

use std::fmt::Write;

use crate::plan::{Plan, render};

/// Markdown for `GITHUB_STEP_SUMMARY`.
pub fn plan_markdown(plan: &Plan) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "## jisu-deploy plan\n");
    let _ = writeln!(md, "{}\n", cell(&render::headline(plan)));
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

/// A Markdown table cell: pipes escaped, line breaks folded.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\r', '\n'], " ")
}

/// A Mermaid flowchart: one node per job, an edge per `needs`, skipped jobs dashed.
pub fn mermaid(plan: &Plan) -> String {
    let mut out = String::from("flowchart LR\n");
    let node = |id: &str| id.replace(|c: char| !c.is_ascii_alphanumeric(), "_");
    for job in &plan.jobs {
        let label = if job.decision.runs {
            job.id.clone()
        } else {
            format!("{} (skipped)", job.id)
        };
        let _ = writeln!(
            out,
            "  {}[\"{}\"]",
            node(&job.id),
            label.replace('"', "#quot;")
        );
    }
    for job in &plan.jobs {
        for need in &job.needs {
            let _ = writeln!(out, "  {} --> {}", node(need), node(&job.id));
        }
    }
    let skipped: Vec<String> = plan
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
