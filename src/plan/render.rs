//! Printing a plan: a readable tree for terminals and logs, stable JSON for programs.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::output;

use super::{Action, ColorRole, Decision, ImageSource, Plan, When, short};
use crate::config::context::{DispatchRequest, Event, GitRef};
use crate::config::pipeline::{Stream, Thresholds};

/// Who shows a plan, which its headline says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// `plan`: changes nothing, and says what a run of the plan would do.
    Plan,
    /// A dry `run`: the plan it would carry out, and nothing changed.
    DryRun,
}

/// One line saying what event the plan is for, and what showing it means.
pub fn headline(plan: &Plan, view: View) -> String {
    let mode = match view {
        View::Plan if plan.dry_run => "plan only: a run would be a dry run",
        View::Plan => "plan only: a run would change things",
        View::DryRun => "dry run: nothing is changed",
    };
    format!("{} [{mode}]", headline_event(plan))
}

/// The event the plan is for, in words: `push to branch `develop` at 3f2c1e0`.
pub fn headline_event(plan: &Plan) -> String {
    let ctx = &plan.context;
    let at = ctx
        .sha
        .as_deref()
        .map(|sha| format!(" at {}", short(sha)))
        .unwrap_or_default();
    match &ctx.event {
        Event::Push { git_ref, .. } => match git_ref {
            GitRef::Branch(name) => format!("push to branch `{name}`{at}"),
            GitRef::Tag(name) => format!("push of tag `{name}`{at}"),
            GitRef::Other(name) => format!("push of `{name}`{at}"),
        },
        Event::PullRequest {
            number,
            base_branch,
            ..
        } => {
            let base = base_branch
                .as_deref()
                .map(|b| format!(" into `{b}`"))
                .unwrap_or_default();
            format!("pull request #{number}{base}{at}")
        }
        Event::WorkflowDispatch { request, .. } => match request {
            DispatchRequest::Promote { environment, sha } => {
                format!("workflow_dispatch: promote {} to {environment}", short(sha))
            }
            DispatchRequest::Rollback { environment } => {
                format!("workflow_dispatch: roll back {environment}")
            }
            DispatchRequest::Switch { environment } => {
                format!("workflow_dispatch: switch {environment} to its idle color")
            }
        },
        Event::Schedule { cron: Some(cron) } => format!("schedule `{cron}`"),
        Event::Schedule { cron: None } => "schedule".to_owned(),
    }
}

fn mark(decision: &Decision) -> &'static str {
    if decision.runs { "run " } else { "skip" }
}

/// The plan as an indented tree.
pub fn text(plan: &Plan, view: View) -> String {
    let mut out = String::new();
    output::push_line(&mut out, &format!("Plan for {}", headline(plan, view)));
    for note in &plan.notes {
        output::push_line(&mut out, &format!("  note: {note}"));
    }
    for (j, job) in plan.jobs.iter().enumerate() {
        let last_job = j + 1 == plan.jobs.len();
        let (branch, indent) = if last_job {
            ("└─", "   ")
        } else {
            ("├─", "│  ")
        };
        let needs = if job.needs.is_empty() {
            String::new()
        } else {
            format!(" (needs {})", job.needs.join(", "))
        };
        output::push_line(
            &mut out,
            &format!(
                "{branch} [{}] {}{needs}: {}",
                mark(&job.decision),
                job.id,
                job.decision.reason
            ),
        );
        for (s, step) in job.steps.iter().enumerate() {
            let last_step = s + 1 == job.steps.len();
            let step_branch = if last_step { "└─" } else { "├─" };
            let detail_indent = if last_step { "   " } else { "│  " };
            let always = if step.when == When::Always {
                " (always)"
            } else {
                ""
            };
            output::push_line(
                &mut out,
                &format!(
                    "{indent}{step_branch} [{}] {}{always}: {}",
                    mark(&step.decision),
                    step.id,
                    step.decision.reason
                ),
            );
            for detail in describe(&step.action) {
                output::push_line(&mut out, &format!("{indent}{detail_indent}   {detail}"));
            }
        }
    }
    if plan.jobs.is_empty() && plan.notes.is_empty() {
        output::push_line(&mut out, "  (nothing to do)");
    }
    out
}

fn color(role: &Option<ColorRole>) -> &'static str {
    match role {
        Some(ColorRole::Idle) => "-<idle color>",
        Some(ColorRole::Live) => "-<live color>",
        None => "",
    }
}

fn command_lines(run: &[String], workdir: &str, env: &BTreeMap<String, String>) -> Vec<String> {
    let mut line = format!("$ {}", run.join(" "));
    if workdir != "." {
        let _ = write!(line, "   (in {workdir})");
    }
    let mut lines = vec![line];
    if !env.is_empty() {
        let vars: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        lines.push(format!("env: {}", vars.join(" ")));
    }
    lines
}

/// A gate's limits in words (`bandit issue of severity medium or higher`).
pub fn threshold_words(thresholds: &Thresholds) -> Vec<String> {
    let mut words = Vec::new();
    if let Some(severity) = thresholds.bandit_severity {
        words.push(format!("a bandit issue of severity {severity} or higher"));
    }
    if let Some(allowed) = thresholds.vulnerabilities {
        words.push(format!("more than {allowed} known vulnerabilities"));
    }
    if let Some(minimum) = thresholds.coverage {
        words.push(format!("coverage below {minimum}%"));
    }
    words
}

/// What an action does, in one or more short lines.
pub fn describe(action: &Action) -> Vec<String> {
    match action {
        Action::RunCommand { command } => {
            command_lines(&command.run, &command.workdir, &command.env)
        }
        Action::RunGate { gate } => {
            let mut lines = if gate.run.is_empty() {
                vec![format!("reads reports in {}", gate.workdir)]
            } else {
                command_lines(&gate.run, &gate.workdir, &gate.env)
            };
            if !gate.reports.is_empty() {
                let reports: Vec<String> = gate
                    .reports
                    .iter()
                    .map(|r| {
                        let from = match (&r.file, r.output_stream()) {
                            (Some(file), _) => file.as_str(),
                            (None, stream) => stream.unwrap_or(Stream::Stdout).name(),
                        };
                        format!("{} ({from})", r.format.name())
                    })
                    .collect();
                lines.push(format!("findings: {}", reports.join(", ")));
            }
            let limits = threshold_words(&gate.thresholds);
            if !limits.is_empty() {
                lines.push(format!("fails when: {}", limits.join("; ")));
            }
            lines
        }
        Action::BuildImage {
            context,
            dockerfile,
            tags,
            push,
            ..
        } => {
            let mut lines = vec![format!("context {context}, {dockerfile}")];
            let verb = if *push { "push" } else { "tag (local)" };
            lines.extend(tags.iter().map(|t| format!("{verb} {t}")));
            lines
        }
        Action::AcquireLock { namespace, lease } | Action::ReleaseLock { namespace, lease } => {
            vec![format!("Lease {namespace}/{lease}")]
        }
        Action::Apply {
            namespace,
            manifests,
            images,
            replicas,
            color: role,
            url,
            preview_url,
        } => {
            let mut lines = vec![format!(
                "manifests {manifests} -> namespace {namespace}{}",
                match role {
                    Some(_) => format!(", objects suffixed {}", color(role)),
                    None => String::new(),
                }
            )];
            for image in images {
                lines.push(match image {
                    ImageSource::Build {
                        component,
                        reference,
                    } => {
                        format!("{component}: digest pushed as {reference}")
                    }
                    ImageSource::Promotion {
                        component,
                        reference,
                    } => {
                        format!("{component}: digest of {reference}")
                    }
                });
            }
            if !replicas.is_empty() {
                let list: Vec<String> = replicas.iter().map(|(c, n)| format!("{c}={n}")).collect();
                lines.push(format!("replicas {}", list.join(" ")));
            }
            lines.push(match preview_url {
                Some(preview) => format!("Ingress hosts from {url}, preview from {preview}"),
                None => format!("Ingress hosts from {url}"),
            });
            lines
        }
        Action::WaitRollout {
            namespace,
            workloads,
            color: role,
            timeout,
        } => {
            let names: Vec<String> = workloads
                .iter()
                .map(|w| format!("{w}{}", color(role)))
                .collect();
            vec![format!(
                "deployments {} in {namespace}, deadline {timeout}",
                names.join(", ")
            )]
        }
        Action::HttpChecks { base_url, checks }
        | Action::VerifyAfterSwitch {
            base_url, checks, ..
        } => checks
            .iter()
            .map(|c| {
                let url = if c.url.starts_with('/') {
                    format!("{}{}", base_url.trim_end_matches('/'), c.url)
                } else {
                    c.url.clone()
                };
                format!(
                    "{}: GET {url} expects {} ({} tries, {} each)",
                    c.name, c.expect_status, c.retries, c.timeout
                )
            })
            .collect(),
        Action::ReadLiveColor {
            namespace,
            services,
        } => {
            vec![format!("services {} in {namespace}", services.join(", "))]
        }
        Action::SwitchTraffic {
            namespace,
            services,
            to,
        } => {
            let to = match to {
                ColorRole::Idle => "the idle color",
                ColorRole::Live => "the live color",
            };
            vec![format!(
                "services {} in {namespace} -> {to}",
                services.join(", ")
            )]
        }
        Action::KeepPreviousColor {
            namespace,
            scale_down_after,
        } => {
            vec![format!(
                "previous color in {namespace} scaled to 0 after {scale_down_after}"
            )]
        }
        Action::CleanupColors {
            namespace,
            workloads,
        } => {
            vec![format!(
                "the previous color of {} in {namespace} scaled to 0 once past its keep time; adopted un-colored Deployments deleted",
                workloads.join(", ")
            )]
        }
        Action::RedeployPrevious {
            namespace,
            workloads,
        } => {
            vec![format!(
                "deployments {} in {namespace}",
                workloads.join(", ")
            )]
        }
        Action::RecordDeployment {
            environment,
            url,
            production,
        } => {
            vec![format!(
                "environment {environment} ({url}), production_environment: {production}"
            )]
        }
        Action::PromoteImages { images, .. } => images
            .iter()
            .map(|p| format!("{}: {} -> {}", p.component, p.source, p.target))
            .collect(),
        Action::PruneImages {
            repositories,
            keep_sha_tags,
            delete_untagged_after,
            always_keep,
        } => vec![
            format!("repositories {}", repositories.join(", ")),
            format!(
                "keep the newest {keep_sha_tags} commit builds per component, by the commits' history; untagged versions go after {delete_untagged_after}"
            ),
            format!("always kept: {}", always_keep.join(", ")),
        ],
        Action::Backup {
            namespace,
            targets,
            destination,
            retain_for,
            ..
        } => vec![
            format!(
                "{} from {namespace}",
                targets
                    .iter()
                    .map(|t| t.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            format!("to {destination}, expired after {retain_for}"),
        ],
    }
}

/// The plan as pretty JSON, the documented `--output json` form.
pub fn json(plan: &Plan) -> String {
    let mut text = serde_json::to_string_pretty(plan).expect("a plan is plain data");
    text.push('\n');
    text
}
