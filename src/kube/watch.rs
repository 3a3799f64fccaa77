//! Waits for Deployments to finish rolling out: one watch on the namespace's Deployments,
//! one on the Pods this tool labelled, both resumed by kube-runtime's watcher when the
//! stream drops (re-listing on 410 Gone), under a wall-clock deadline of our own, because
//! a crash-looping Pod keeps resetting the controller's progress deadline.
//!
//! The decisions (complete? failing for good?) are `rollout.rs`; this file only feeds them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Context as _;
use futures::{StreamExt, stream};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::time::Instant;
use tracing::{info, warn};

use super::render::{MANAGED_BY, MANAGER};
use super::retry::retrying;
use super::rollout::{FailureReason, Progress, availability, deployment_progress, pod_failure};

/// Why waiting ended without every rollout complete.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// A new Pod is failing in a way waiting will not fix.
    #[error(
        "Deployment/{workload}: rollout failed: Pod {pod}, container `{container}`: {reason}: {message}"
    )]
    Failed {
        /// The Deployment.
        workload: String,
        /// The Pod's reason.
        reason: FailureReason,
        /// The Pod.
        pod: String,
        /// The container.
        container: String,
        /// The Pod's own message.
        message: String,
    },
    /// The Deployment controller reported `ProgressDeadlineExceeded`.
    #[error("Deployment/{workload}: {message}")]
    ProgressDeadline {
        /// The Deployment.
        workload: String,
        /// What the controller said.
        message: String,
    },
    /// Our own deadline passed first.
    #[error("rollout not complete after {}s: {}", .timeout.as_secs(), waiting_list(.waiting))]
    Timeout {
        /// The deadline.
        timeout: Duration,
        /// Deployments still waiting, with what they wait for.
        waiting: BTreeMap<String, String>,
    },
    /// A Deployment is missing or was deleted while waiting.
    #[error("Deployment/{0} does not exist (deleted during the rollout?)")]
    Missing(String),
}

fn waiting_list(waiting: &BTreeMap<String, String>) -> String {
    waiting
        .iter()
        .map(|(name, why)| format!("Deployment/{name}: {why}"))
        .collect::<Vec<_>>()
        .join("; ")
}

// Boxed: the two events are kilobytes each and this enum is moved on every event.
enum Seen {
    Deployment(Box<watcher::Event<Deployment>>),
    Pod(Box<watcher::Event<Pod>>),
    Error(watcher::Error),
}

/// State of the wait: the latest view of each Deployment and what was last logged.
struct Tracker {
    wanted: BTreeSet<String>,
    latest: BTreeMap<String, Deployment>,
    logged: BTreeMap<String, (i32, i32)>,
    done: BTreeSet<String>,
    /// ReplicaSet name -> (Deployment, revision), read once per ReplicaSet.
    replica_sets: BTreeMap<String, Option<(String, i64)>>,
    /// Deployment -> why its newest unready Pod is not ready, for the timeout message.
    unready: BTreeMap<String, String>,
}

/// Waits until every Deployment in `workloads` is complete by kubectl's rules, failing
/// fast on a Pod that cannot start, and at `timeout` at the latest.
pub async fn wait_for_rollouts(
    client: &kube::Client,
    namespace: &str,
    workloads: &[String],
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), namespace);
    // Only the Pods of objects this tool rendered: their templates carry the label.
    let pod_config = watcher::Config::default().labels(&format!("{MANAGED_BY}={MANAGER}"));
    let deployment_events = watcher(deployments, watcher::Config::default())
        .default_backoff()
        .map(|e| e.map_or_else(Seen::Error, |e| Seen::Deployment(Box::new(e))));
    let pod_events = watcher(pods, pod_config)
        .default_backoff()
        .map(|e| e.map_or_else(Seen::Error, |e| Seen::Pod(Box::new(e))));
    let mut events = std::pin::pin!(stream::select(deployment_events, pod_events));
    let mut tracker = Tracker {
        wanted: workloads.iter().cloned().collect(),
        latest: BTreeMap::new(),
        logged: BTreeMap::new(),
        done: BTreeSet::new(),
        replica_sets: BTreeMap::new(),
        unready: BTreeMap::new(),
    };
    let mut listed_once = false;
    info!(
        "waiting for {} within {}s",
        workloads.join(", "),
        timeout.as_secs()
    );
    while tracker.done.len() < tracker.wanted.len() {
        let next = match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(next)) => next,
            Ok(None) => anyhow::bail!("the watch on namespace {namespace} ended for good"),
            Err(_) => return Err(tracker.timeout(timeout).into()),
        };
        match next {
            Seen::Deployment(event) => match *event {
                watcher::Event::Apply(d) | watcher::Event::InitApply(d) => tracker.deployment(d)?,
                watcher::Event::Delete(d) => {
                    let name = d.metadata.name.unwrap_or_default();
                    if tracker.wanted.contains(&name) {
                        return Err(RolloutError::Missing(name).into());
                    }
                }
                watcher::Event::InitDone if !listed_once => {
                    listed_once = true;
                    let missing = tracker
                        .wanted
                        .iter()
                        .find(|n| !tracker.latest.contains_key(*n));
                    if let Some(missing) = missing {
                        return Err(RolloutError::Missing(missing.clone()).into());
                    }
                }
                watcher::Event::Init | watcher::Event::InitDone => {}
            },
            Seen::Pod(event) => {
                if let watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) = *event {
                    tracker.pod(&pod, &replica_sets).await?;
                }
            }
            Seen::Error(error) => warn!(%error, "watch interrupted; resuming"),
        }
    }
    Ok(())
}

impl Tracker {
    fn deployment(&mut self, deployment: Deployment) -> anyhow::Result<()> {
        let name = deployment.metadata.name.clone().unwrap_or_default();
        if !self.wanted.contains(&name) {
            return Ok(());
        }
        let counts = availability(&deployment);
        match deployment_progress(&deployment) {
            Progress::Complete => {
                if self.done.insert(name.clone()) {
                    info!(
                        "Deployment/{name}: rolled out, {}/{} replicas available",
                        counts.0, counts.1
                    );
                }
            }
            Progress::DeadlineExceeded(message) => {
                return Err(RolloutError::ProgressDeadline {
                    workload: name,
                    message,
                }
                .into());
            }
            Progress::Waiting(_) => {
                // A finished rollout that a later event shows unfinished (a new apply
                // elsewhere, a Pod lost) is waited for again.
                self.done.remove(&name);
                if self.logged.get(&name) != Some(&counts) {
                    info!(
                        "Deployment/{name}: {}/{} replicas available",
                        counts.0, counts.1
                    );
                    self.logged.insert(name.clone(), counts);
                }
            }
        }
        self.latest.insert(name, deployment);
        Ok(())
    }

    async fn pod(&mut self, pod: &Pod, replica_sets: &Api<ReplicaSet>) -> anyhow::Result<()> {
        let failure = pod_failure(pod);
        let unready = not_ready(pod);
        if failure.is_none() && unready.is_none() {
            return Ok(());
        }
        let Some(workload) = self.owning_rollout(pod, replica_sets).await? else {
            return Ok(());
        };
        let Some(failure) = failure else {
            if let Some(why) = unready {
                self.unready.insert(workload, why);
            }
            return Ok(());
        };
        Err(RolloutError::Failed {
            workload,
            reason: failure.reason,
            pod: failure.pod,
            container: failure.container,
            message: failure.message,
        }
        .into())
    }

    /// The Deployment whose *current* rollout `pod` belongs to, if any: a failing Pod of an
    /// older ReplicaSet is not this deploy's failure.
    async fn owning_rollout(
        &mut self,
        pod: &Pod,
        replica_sets: &Api<ReplicaSet>,
    ) -> anyhow::Result<Option<String>> {
        let owner = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.kind == "ReplicaSet");
        let Some(rs_name) = owner.map(|o| o.name.clone()) else {
            return Ok(None);
        };
        if !self.replica_sets.contains_key(&rs_name) {
            let rs = retrying("get replicaset", || replica_sets.get_opt(&rs_name))
                .await
                .with_context(|| format!("reading ReplicaSet {rs_name}"))?;
            let entry = rs.and_then(|rs| {
                let deployment = rs
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .find(|o| o.kind == "Deployment")?
                    .name
                    .clone();
                Some((deployment, revision(&rs.metadata)))
            });
            self.replica_sets.insert(rs_name.clone(), entry);
        }
        let Some(Some((deployment, rs_revision))) = self.replica_sets.get(&rs_name).cloned() else {
            return Ok(None);
        };
        if !self.wanted.contains(&deployment) {
            return Ok(None);
        }
        let current = self
            .latest
            .get(&deployment)
            .map_or(0, |d| revision(&d.metadata));
        Ok((rs_revision >= current).then_some(deployment))
    }

    fn timeout(&self, timeout: Duration) -> RolloutError {
        let waiting = self
            .wanted
            .iter()
            .filter(|name| !self.done.contains(*name))
            .map(|name| {
                let mut why = match self.latest.get(name).map(deployment_progress) {
                    Some(Progress::Waiting(why)) => why,
                    Some(other) => format!("{other:?}"),
                    None => "not seen yet".to_owned(),
                };
                if let Some(pod) = self.unready.get(name) {
                    why.push_str(&format!(" ({pod})"));
                }
                (name.clone(), why)
            })
            .collect();
        RolloutError::Timeout { timeout, waiting }
    }
}

/// Why a Pod is not Ready, from its `Ready` condition: `Pod p: ContainersNotReady: ...`.
fn not_ready(pod: &Pod) -> Option<String> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let ready = conditions.iter().find(|c| c.type_ == "Ready")?;
    (ready.status != "True").then(|| {
        format!(
            "Pod {}: {}: {}",
            pod.metadata.name.as_deref().unwrap_or("?"),
            ready.reason.as_deref().unwrap_or("NotReady"),
            ready.message.as_deref().unwrap_or("no message")
        )
    })
}

/// `deployment.kubernetes.io/revision`, 0 when absent.
fn revision(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> i64 {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get("deployment.kubernetes.io/revision"))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}
