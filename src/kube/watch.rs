//! Waits for Deployments to finish rolling out: one watch on the namespace's Deployments,
//! one on the Pods this tool labelled, both resumed by kube-runtime's watcher when the
//! stream drops (re-listing on 410 Gone), under a wall-clock deadline of our own, because
//! a crash-looping Pod keeps resetting the controller's progress deadline.
//!
//! An API server that goes away is noticed by counting: after [`MAX_FAILED_RECONNECTS`]
//! attempts in a row of one watch that did not reach it, waiting stops with
//! [`Unreachable`], which is not a rollout failure (the rollout's outcome is unknown).
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

use super::client::redacted_url;
use super::render::{MANAGED_BY, MANAGER};
use super::retry::{ATTEMPTS, CallError, retrying};
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

/// Attempts in a row of one watch (listing or watching) that did not reach the API
/// server, after which it counts as unreachable. The watcher backs off between attempts
/// (0.8 s, doubling, jittered), so the fifth failure comes some 12 to 25 s after the
/// server went away: a restart of the server is ridden out, an outage is not waited out
/// until the rollout deadline.
pub const MAX_FAILED_RECONNECTS: u32 = 5;

/// The API server stopped answering while rollouts were waited for. Not a rollout failure:
/// whether the rollouts complete is unknown.
#[derive(Debug, thiserror::Error)]
#[error(
    "the API server at {server} is unreachable: {attempts} attempts in a row to reach it failed (last: {last}); the rollout's outcome is unknown"
)]
pub struct Unreachable {
    /// The server's URL, credentials redacted.
    pub server: String,
    /// Failed attempts in a row.
    pub attempts: u32,
    /// The last attempt's error, URLs redacted.
    pub last: String,
}

/// Consecutive attempts of one watch that did not reach the API server (pure).
#[derive(Debug, Default)]
struct Outage {
    failures: u32,
}

impl Outage {
    /// An event arrived: the server is reachable.
    fn reached(&mut self) {
        self.failures = 0;
    }

    /// Counts a failed attempt; true once the server counts as unreachable. An error the
    /// server itself answered with (410 Gone, a 500) shows it is there.
    fn failed(&mut self, error: &watcher::Error) -> bool {
        let not_reached = match error {
            watcher::Error::InitialListFailed(e)
            | watcher::Error::WatchStartFailed(e)
            | watcher::Error::WatchFailed(e) => not_reached(e),
            _ => false,
        };
        self.failures = if not_reached { self.failures + 1 } else { 0 };
        self.failures >= MAX_FAILED_RECONNECTS
    }
}

/// Whether `error` means the request never got an answer from the API server itself: no
/// connection, a connection lost, or a gateway in front of it saying it is gone.
fn not_reached(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => matches!(status.code, 502..=504),
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        _ => false,
    }
}

/// Which watch an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watch {
    Deployments,
    Pods,
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
    Error(Watch, watcher::Error),
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
    /// The API server's URL as it may be shown.
    server: String,
}

/// Waits until every Deployment in `workloads` is complete by kubectl's rules, failing
/// fast on a Pod that cannot start, at `timeout` at the latest, and with [`Unreachable`]
/// when the API server at `server` (as it may be shown) stops answering.
pub async fn wait_for_rollouts(
    client: &kube::Client,
    server: &str,
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
        .map(|e| {
            e.map_or_else(
                |e| Seen::Error(Watch::Deployments, e),
                |e| Seen::Deployment(Box::new(e)),
            )
        });
    let pod_events = watcher(pods, pod_config)
        .default_backoff()
        .map(|e| e.map_or_else(|e| Seen::Error(Watch::Pods, e), |e| Seen::Pod(Box::new(e))));
    let mut events = std::pin::pin!(stream::select(deployment_events, pod_events));
    let mut tracker = Tracker {
        wanted: workloads.iter().cloned().collect(),
        latest: BTreeMap::new(),
        logged: BTreeMap::new(),
        done: BTreeSet::new(),
        replica_sets: BTreeMap::new(),
        unready: BTreeMap::new(),
        server: server.to_owned(),
    };
    let (mut deployments_outage, mut pods_outage) = (Outage::default(), Outage::default());
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
        match &next {
            Seen::Deployment(_) => deployments_outage.reached(),
            Seen::Pod(_) => pods_outage.reached(),
            Seen::Error(..) => {}
        }
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
            Seen::Error(watch, error) => {
                let outage = match watch {
                    Watch::Deployments => &mut deployments_outage,
                    Watch::Pods => &mut pods_outage,
                };
                let gone = outage.failed(&error);
                let shown = crate::output::escape(&redacted_url(&error.to_string())).into_owned();
                warn!(?watch, failed_in_a_row = outage.failures, error = %shown, "watch interrupted; resuming");
                if gone {
                    return Err(Unreachable {
                        server: server.to_owned(),
                        attempts: outage.failures,
                        last: shown,
                    }
                    .into());
                }
            }
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
            let rs = match retrying("get replicaset", || replica_sets.get_opt(&rs_name)).await {
                Err(CallError::Kube(e)) if not_reached(&e) => {
                    return Err(Unreachable {
                        server: self.server.clone(),
                        attempts: ATTEMPTS,
                        last: crate::output::escape(&redacted_url(&e.to_string())).into_owned(),
                    }
                    .into());
                }
                other => other.with_context(|| format!("reading ReplicaSet {rs_name}"))?,
            };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> watcher::Error {
        watcher::Error::WatchStartFailed(kube::Error::Service(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        ))))
    }

    fn answered(code: u16) -> watcher::Error {
        watcher::Error::WatchStartFailed(kube::Error::Api(Box::new(kube::core::Status {
            code,
            ..kube::core::Status::default()
        })))
    }

    #[test]
    fn the_server_is_unreachable_after_five_failed_attempts_in_a_row() {
        let mut outage = Outage::default();
        for _ in 1..MAX_FAILED_RECONNECTS {
            assert!(!outage.failed(&refused()));
        }
        assert!(outage.failed(&refused()));
        assert_eq!(outage.failures, MAX_FAILED_RECONNECTS);
    }

    #[test]
    fn an_event_or_an_answer_in_between_starts_the_count_again() {
        let mut outage = Outage::default();
        for _ in 1..MAX_FAILED_RECONNECTS {
            assert!(!outage.failed(&refused()));
        }
        outage.reached();
        for _ in 1..MAX_FAILED_RECONNECTS {
            assert!(!outage.failed(&refused()));
        }
        // A 410 Gone or a 500 comes from the server itself.
        assert!(!outage.failed(&answered(410)));
        assert!(!outage.failed(&answered(500)));
        assert_eq!(outage.failures, 0);
        // A gateway saying the server behind it is gone counts.
        for _ in 1..MAX_FAILED_RECONNECTS {
            assert!(!outage.failed(&answered(503)));
        }
        assert!(outage.failed(&refused()));
    }

    #[test]
    fn unreachable_is_not_a_rollout_failure() {
        use crate::execute::report::FailureKind;
        let error = anyhow::Error::from(Unreachable {
            server: "https://***@k8s.example:6443/".to_owned(),
            attempts: MAX_FAILED_RECONNECTS,
            last: "client error (Connect)".to_owned(),
        });
        assert_eq!(FailureKind::of(&error), FailureKind::Other);
        assert!(
            error
                .to_string()
                .starts_with("the API server at https://***@k8s.example:6443/ is unreachable"),
            "{error}"
        );
    }
}
