//! The job summary GitHub shows on the run page: for a plan, a table of jobs and steps and
//! a Mermaid flowchart of how the jobs depend on each other; for a run, each step's result
//! and duration, the images and the environment URL.

use std::fmt::Write;

use crate::output;

use crate::execute::report::{RunReport, human_millis, status_word};
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

/// The run report for `GITHUB_STEP_SUMMARY`: steps, results, durations, images, URL.
pub fn run_markdown(report: &RunReport) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "## jisu-deploy run: {}\n", status_word(report.result));
    let _ = writeln!(
        md,
        "{} · {}\n",
        cell(&report.event),
        human_millis(report.duration_ms)
    );
    let _ = writeln!(md, "| Job | Step | Result | Duration | Detail |");
    let _ = writeln!(md, "| --- | --- | --- | --- | --- |");
    for job in &report.jobs {
        let _ = writeln!(
            md,
            "| **{}** | | {} | {} | {} |",
            cell(&job.id),
            status_word(job.status),
            job.duration_ms.map(human_millis).unwrap_or_default(),
            cell(job.reason.as_deref().unwrap_or_default())
        );
        for step in &job.steps {
            let detail = step
                .error
                .as_deref()
                .or(step.reason.as_deref())
                .unwrap_or_default();
            let _ = writeln!(
                md,
                "| | {} | {} | {} | {} |",
                cell(&step.id),
                status_word(step.status),
                step.duration_ms.map(human_millis).unwrap_or_default(),
                cell(detail)
            );
        }
    }
    if !report.digests.is_empty() {
        let _ = writeln!(md, "\n| Component | Image |\n| --- | --- |");
        for (component, image) in &report.digests {
            let _ = writeln!(md, "| {} | `{}` |", cell(component), cell(image));
        }
    }
    if let Some(url) = &report.environment_url {
        let _ = writeln!(md, "\nEnvironment: {}", cell(url));
    }
    md
}
