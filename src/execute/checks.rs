//! The check run of a gate job (`lint`, `security`, `test`): created `in_progress` on the
//! commit that was built (a pull request's head sha) when the job starts, and finished with
//! every finding of the job's gates as annotations and the conclusion when it ends.
//!
//! Where GitHub refuses check runs (403: a pull request from a fork, a token without
//! `checks: write`), the findings go out as `::error`/`::warning`/`::notice` workflow
//! commands instead, next to the job summary, and the gate job's result as a commit status
//! where the token may set those (`statuses: write`); the log says so once per run.

use tracing::{info, warn};

use crate::findings::{Finding, Severity, Summary};
use crate::github::RepositoryApi;
use crate::github::actions::AnnotationAt;
use crate::github::checks::{CheckOutput, CheckRunsClient, ChecksError, Conclusion};
use crate::github::statuses::{CommitState, StatusesClient};
use crate::plan::{Action, Job, Plan};
use crate::session::Session;

/// The most findings sent as workflow commands when check runs are refused (GitHub shows
/// only the first few per step anyway); the job summary lists the rest's counts.
const MAX_COMMAND_ANNOTATIONS: usize = 100;

/// The check run of the running gate job, and what it has collected.
#[derive(Default)]
pub struct Checks {
    open: Option<Open>,
    /// Findings of the job's gates so far.
    findings: Vec<Finding>,
    /// One line per gate step: its name and verdict.
    lines: Vec<String>,
    /// Whether the log has said that check runs are refused.
    told_refused: bool,
}

enum Open {
    /// Created `in_progress`.
    Created {
        client: CheckRunsClient,
        id: u64,
        /// For a commit status if the last request is refused.
        fallback: Fallback,
    },
    /// No check run: the findings go out as workflow commands, and the result as a commit
    /// status when a client is there.
    Commands(Option<Fallback>),
    /// Nothing is reported beyond the log (not in Actions, or a dry run).
    Quiet,
}

impl Checks {
    /// Opens the check run for `job` if it runs gates.
    pub async fn start(&mut self, session: &Session, plan: &Plan, job: &Job, preview: bool) {
        self.open = None;
        self.findings.clear();
        self.lines.clear();
        if !job
            .steps
            .iter()
            .any(|s| s.decision.runs && matches!(s.action, Action::RunGate { .. }))
        {
            return;
        }
        if preview {
            self.open = Some(Open::Quiet);
            return;
        }
        let (Some(api), Some(sha)) = (
            RepositoryApi::from_env(|name| session.env(name)),
            plan.context.sha.as_deref(),
        ) else {
            self.open = Some(if session.runner.in_actions {
                Open::Commands(None)
            } else {
                Open::Quiet
            });
            return;
        };
        let details_url =
            crate::kube::lock::Identity::of_this_process(&|name| session.env(name)).run_url;
        let name = check_name(job);
        let fallback = Fallback {
            api,
            sha: sha.to_owned(),
            context: name.clone(),
            details_url,
        };
        let created = async {
            let api = &fallback.api;
            let client = CheckRunsClient::new(&api.base, &api.token, &api.repository)?;
            let id = client
                .start(&name, sha, fallback.details_url.as_deref())
                .await?;
            anyhow::Ok((client, id))
        }
        .await;
        self.open = Some(match created {
            Ok((client, id)) => {
                info!(id, check = %name, "check run created (in_progress)");
                Open::Created {
                    client,
                    id,
                    fallback,
                }
            }
            Err(error) => {
                self.refused(&error);
                fallback
                    .set(CommitState::Pending, &format!("{} running", job.id))
                    .await;
                Open::Commands(Some(fallback))
            }
        });
    }

    /// Adds a gate step's findings and verdict.
    pub fn add(&mut self, step: &str, passed: bool, findings: Vec<Finding>, verdicts: &[String]) {
        let word = if passed { "passed" } else { "failed" };
        let mut line = format!("`{}` {word}: {}", step, Summary::of(&findings));
        for verdict in verdicts {
            line.push_str(&format!("; {verdict}"));
        }
        self.lines.push(line);
        self.findings.extend(findings);
    }

    /// Finishes the job's check run: `failure` when the job `failed`.
    pub async fn finish(&mut self, session: &Session, job: &Job, failed: bool) {
        let Some(open) = self.open.take() else {
            return;
        };
        let findings = std::mem::take(&mut self.findings);
        let output = output(job, failed, &findings, &self.lines);
        let state = if failed {
            CommitState::Failure
        } else {
            CommitState::Success
        };
        match open {
            Open::Quiet => {}
            Open::Commands(fallback) => {
                annotate(session, &findings);
                if let Some(fallback) = fallback {
                    fallback.set(state, &output.title).await;
                }
            }
            Open::Created {
                client,
                id,
                fallback,
            } => {
                let conclusion = if failed {
                    Conclusion::Failure
                } else {
                    Conclusion::Success
                };
                match client.finish(id, conclusion, &output, &findings).await {
                    Ok(requests) => info!(id, requests, "check run concluded"),
                    Err(error) => {
                        self.refused(&anyhow::Error::from(error));
                        annotate(session, &findings);
                        fallback.set(state, &output.title).await;
                    }
                }
            }
        }
    }

    /// Says once per run why findings go to workflow commands instead of a check run.
    fn refused(&mut self, error: &anyhow::Error) {
        if self.told_refused {
            return;
        }
        self.told_refused = true;
        let forbidden = error.chain().any(|c| {
            matches!(
                c.downcast_ref::<ChecksError>(),
                Some(ChecksError::Forbidden)
            )
        });
        if forbidden {
            warn!("{error:#}; findings go to workflow annotations and the job summary instead");
        } else {
            warn!(
                "could not write the check run: {error:#}; findings go to workflow annotations and the job summary instead"
            );
        }
    }
}

/// Where a gate job's result goes as a commit status when check runs are refused.
struct Fallback {
    api: RepositoryApi,
    sha: String,
    context: String,
    details_url: Option<String>,
}

impl Fallback {
    /// Sets the commit status; a refusal or failure is logged, never fatal (the gate's
    /// result is in the log, the annotations and the summary either way).
    async fn set(&self, state: CommitState, description: &str) {
        let result = async {
            let api = &self.api;
            let client = StatusesClient::new(&api.base, &api.token, &api.repository)?;
            client
                .set(
                    &self.sha,
                    state,
                    &self.context,
                    description,
                    self.details_url.as_deref(),
                )
                .await?;
            anyhow::Ok(())
        }
        .await;
        match result {
            Ok(()) => info!(context = %self.context, ?state, "commit status set"),
            Err(error) => warn!("no commit status either: {error:#}"),
        }
    }
}

/// The check run's name: the tool's and the job's.
fn check_name(job: &Job) -> String {
    format!("jisu-deploy {}", job.id)
}

fn output(job: &Job, failed: bool, findings: &[Finding], lines: &[String]) -> CheckOutput {
    let summary = Summary::of(findings);
    let word = if failed { "failed" } else { "passed" };
    let title = if summary.total() == 0 {
        format!("{} {word}: no findings", job.id)
    } else {
        format!("{} {word}: {summary}", job.id)
    };
    let mut text = String::new();
    for line in lines {
        text.push_str("- ");
        text.push_str(&crate::report::summary::markdown_text(line));
        text.push('\n');
    }
    CheckOutput {
        title,
        summary: text,
        text: String::new(),
    }
}

/// The findings as workflow-command annotations, at most [`MAX_COMMAND_ANNOTATIONS`].
fn annotate(session: &Session, findings: &[Finding]) {
    for finding in findings.iter().take(MAX_COMMAND_ANNOTATIONS) {
        let level = match finding.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Notice => "notice",
        };
        let title = match &finding.code {
            Some(code) => format!("{} {code}", finding.tool),
            None => finding.tool.to_string(),
        };
        let at = AnnotationAt {
            file: Some(finding.path.clone()),
            line: finding.line.map(|l| l as usize),
            column: finding.column.map(|c| c as usize),
            title: Some(title),
        };
        session.runner.annotate(level, &at, &finding.message);
    }
    if findings.len() > MAX_COMMAND_ANNOTATIONS {
        warn!(
            "{} more findings are not annotated; the job summary counts them",
            findings.len() - MAX_COMMAND_ANNOTATIONS
        );
    }
}
