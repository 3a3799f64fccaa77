//! The GitHub deployment record of a deploy, switch or rollback job: created with status
//! `in_progress` when the job starts, and given its final status (`success`, or `failure`
//! when a step failed) by the job's `record` step, which runs whatever happened before.
//!
//! Records need `GITHUB_TOKEN` and the repository (`GITHUB_REPOSITORY`); without them (a
//! run outside Actions) and in a dry run the `record` step says why nothing was recorded.

use std::collections::BTreeMap;

use serde_json::json;
use tracing::{info, warn};

use super::Done;
use crate::github::deployments::{DeploymentState, DeploymentsClient, NewDeployment};
use crate::plan::{Action, Job, Plan};
use crate::session::Session;

/// The record of the running job, if one was opened.
#[derive(Default)]
pub struct Records {
    open: Option<Opened>,
}

enum Opened {
    /// Created and `in_progress`.
    Created {
        client: DeploymentsClient,
        id: u64,
        environment_url: String,
        log_url: Option<String>,
    },
    /// Creating it failed; the `record` step reports this.
    Failed(anyhow::Error),
    /// Nothing to record with, for this reason.
    Unavailable(String),
}

impl Records {
    /// Opens the record for `job` when it has a `record` step that runs.
    pub async fn start(
        &mut self,
        session: &Session,
        plan: &Plan,
        job: &Job,
        digests: &BTreeMap<String, String>,
        preview: bool,
    ) {
        self.open = None;
        let Some(Action::RecordDeployment {
            environment,
            url,
            production,
        }) = job
            .steps
            .iter()
            .find(|s| s.decision.runs && matches!(s.action, Action::RecordDeployment { .. }))
            .map(|s| &s.action)
        else {
            return;
        };
        if preview {
            self.open = Some(Opened::Unavailable(
                "dry run: no deployment record".to_owned(),
            ));
            return;
        }
        let client = match crate::github::deployments::from_env(|name| session.env(name)) {
            Ok(Some(client)) => client,
            Ok(None) => {
                self.open = Some(Opened::Unavailable(
                    "no GITHUB_TOKEN and GITHUB_REPOSITORY (a run outside GitHub Actions): no deployment record"
                        .to_owned(),
                ));
                return;
            }
            Err(error) => {
                self.open = Some(Opened::Failed(error));
                return;
            }
        };
        let task = task(plan, job);
        // The deployed commit: the promoted one for a promotion, else the run's; a
        // rollback or switch dispatched by hand records the dispatching commit.
        let git_ref = Some(super::deployed_version(plan))
            .filter(|sha| !sha.is_empty())
            .or_else(|| session.env("GITHUB_SHA"))
            .unwrap_or_else(|| {
                plan.context
                    .default_branch
                    .clone()
                    .unwrap_or_else(|| "main".to_owned())
            });
        let deployment = NewDeployment {
            git_ref,
            environment: environment.clone(),
            production_environment: *production,
            transient_environment: false,
            description: format!("jisu-deploy {task} of {environment}"),
            payload: json!({"operation": task, "digests": digests, "job": job.id}),
            auto_merge: false,
            required_contexts: Vec::new(),
            task: task.clone(),
        };
        let log_url =
            crate::kube::lock::Identity::of_this_process(&|name| session.env(name)).run_url;
        let opened = async {
            let id = client.create(&deployment).await?;
            client
                .set_status(
                    id,
                    DeploymentState::InProgress,
                    None,
                    log_url.as_deref(),
                    &format!("{task} of {environment} started"),
                )
                .await?;
            anyhow::Ok((client, id))
        }
        .await;
        self.open = Some(match opened {
            Ok((client, id)) => {
                info!(id, %environment, "deployment record created (in_progress)");
                Opened::Created {
                    client,
                    id,
                    environment_url: url.clone(),
                    log_url,
                }
            }
            Err(error) => {
                warn!(error = %format!("{error:#}"), "could not create the deployment record");
                Opened::Failed(error)
            }
        });
    }

    /// Gives the record its final status: `failure` when the job `failed`, else `success`
    /// (and GitHub marks the environment's earlier records inactive). `summary` says what
    /// runs now (e.g. the live color).
    pub async fn finish(&mut self, failed: bool, summary: &str) -> anyhow::Result<Done> {
        match self.open.take() {
            None => Ok(Done::Skipped("nothing was opened to record".to_owned())),
            Some(Opened::Unavailable(reason)) => Ok(Done::Skipped(reason)),
            Some(Opened::Failed(error)) => Err(error),
            Some(Opened::Created {
                client,
                id,
                environment_url,
                log_url,
            }) => {
                let state = if failed {
                    DeploymentState::Failure
                } else {
                    DeploymentState::Success
                };
                let description = if failed {
                    format!("failed; {summary}")
                } else {
                    summary.to_owned()
                };
                client
                    .set_status(
                        id,
                        state,
                        Some(&environment_url),
                        log_url.as_deref(),
                        &description,
                    )
                    .await?;
                Ok(Done::Ran(BTreeMap::from([
                    ("deployment_id".to_owned(), id.to_string()),
                    ("state".to_owned(), format!("{state:?}").to_lowercase()),
                ])))
            }
        }
    }
}

/// The record's task: the job's kind (`deploy`, `rollback`, `switch`), `promote` for the
/// deploy of a dispatched promotion.
fn task(plan: &Plan, job: &Job) -> String {
    use crate::config::context::{DispatchRequest, Event};
    use crate::plan::JobKind;
    match &plan.context.event {
        Event::WorkflowDispatch {
            request: DispatchRequest::Promote { .. },
            ..
        } if job.kind == JobKind::Deploy => "promote".to_owned(),
        _ => job.kind.as_str().to_owned(),
    }
}
