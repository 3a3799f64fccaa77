//! The deploy lock: one `coordination.k8s.io/v1` Lease per environment, so that one deploy
//! at a time changes it. The decisions are pure ([`decide`]); this module reads and writes
//! the Lease.
//!
//! - **Acquire**: create the Lease if there is none; take it if nobody holds it or its
//!   holder stopped renewing (`renewTime + leaseDurationSeconds` is past), counting a
//!   transition; otherwise poll until it is free, up to a bound, then fail naming the
//!   holder.
//! - **Hold**: a background task renews it (by default every 20 s for a 60 s lease). When
//!   a renewal finds the Lease is no longer ours, or renewals failed for a whole lease
//!   duration, the holder is told through [`HeldLock::lost`]; the executor then fails the
//!   running step and every later one of the job.
//! - **Release**: clear `holderIdentity` (the Lease stays, with its transition count) if it
//!   is still ours. Also registered as a signal cleanup ([`crate::cleanup`]) while held, so
//!   a cancelled run gives it back too.
//!
//! Every write carries the `resourceVersion` its decision was made on; a conflict (409)
//! means someone else wrote first, and the decision is made again on what is stored now.
//! Two runs can therefore never both believe they hold the lock.

pub mod decide;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tracing::{info, warn};

use super::retry::{CallError, retrying};
use crate::output::escape;
use decide::{Acquire, LeaseView, Release, Renew};

/// Annotation on the Lease naming the GitHub run that holds it.
pub const RUN_URL_ANNOTATION: &str = "jisu.dev/run-url";

/// Field manager and `managed-by` label of the Lease.
const MANAGER: &str = "jisu-deploy";

/// How the lock is taken and held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockSettings {
    /// How long to wait for another holder before failing.
    pub wait: Duration,
    /// `leaseDurationSeconds`: how long a claim lasts without renewal.
    pub lease_duration: Duration,
    /// Pause between renewals.
    pub renew_every: Duration,
    /// Pause between looks at a Lease someone else holds.
    pub poll: Duration,
}

impl Default for LockSettings {
    fn default() -> Self {
        LockSettings {
            wait: Duration::from_secs(600),
            lease_duration: Duration::from_secs(60),
            renew_every: Duration::from_secs(20),
            poll: Duration::from_secs(1),
        }
    }
}

/// Who holds the lock: a readable `holderIdentity`, and the GitHub run, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `spec.holderIdentity`: the run URL (when known) and `host/pid`, unique per process.
    pub holder: String,
    /// The GitHub Actions run, also written to [`RUN_URL_ANNOTATION`].
    pub run_url: Option<String>,
}

impl Identity {
    /// This process's identity, from the GitHub Actions variables in `env`.
    pub fn of_this_process(env: &dyn Fn(&str) -> Option<String>) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .or_else(|| env("HOSTNAME"))
            .unwrap_or_else(|| "localhost".to_owned());
        Identity::new(env, &host, std::process::id())
    }

    /// The identity for a process `pid` on `host` with the variables in `env`: the run URL
    /// (`GITHUB_SERVER_URL/GITHUB_REPOSITORY/actions/runs/GITHUB_RUN_ID[/attempts/N]`)
    /// followed by `(host/pid)`, or just `host/pid` outside Actions.
    pub fn new(env: &dyn Fn(&str) -> Option<String>, host: &str, pid: u32) -> Self {
        let var = |name: &str| env(name).filter(|v| !v.is_empty());
        let run_url = match (
            var("GITHUB_SERVER_URL"),
            var("GITHUB_REPOSITORY"),
            var("GITHUB_RUN_ID"),
        ) {
            (Some(server), Some(repository), Some(run)) => {
                let mut url = format!(
                    "{}/{repository}/actions/runs/{run}",
                    server.trim_end_matches('/')
                );
                if let Some(attempt) = var("GITHUB_RUN_ATTEMPT") {
                    url.push_str(&format!("/attempts/{attempt}"));
                }
                Some(url)
            }
            _ => None,
        };
        let process = format!("{host}/{pid}");
        let holder = match &run_url {
            Some(url) => format!("{url} ({process})"),
            None => process,
        };
        Identity { holder, run_url }
    }
}

/// Why the lock could not be taken, kept or given back.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Someone else held it for the whole wait.
    #[error(
        "the deploy lock (Lease {namespace}/{name}) is held by {holder}{run}; gave up after waiting {waited}s (its claim runs until {expires} unless renewed; --lock-timeout sets the wait)",
        run = run_url.as_deref().map(|u| format!(", run {u}")).unwrap_or_default()
    )]
    Held {
        /// The Lease's namespace.
        namespace: String,
        /// The Lease's name.
        name: String,
        /// The holder, escaped for printing.
        holder: String,
        /// The holder's run, escaped for printing, from the Lease's annotation.
        run_url: Option<String>,
        /// When the holder's claim runs out unless renewed.
        expires: Timestamp,
        /// Seconds waited.
        waited: u64,
    },
    /// It was ours, and is not any more.
    #[error(
        "lost the deploy lock (Lease {namespace}/{name}): {why}; stopped so that two deploys never run at once"
    )]
    Lost {
        /// The Lease's namespace.
        namespace: String,
        /// The Lease's name.
        name: String,
        /// What happened, escaped for printing.
        why: String,
    },
    /// The API server refused or could not be reached.
    #[error("{action} Lease {namespace}/{name}")]
    Api {
        /// What was being done.
        action: &'static str,
        /// The Lease's namespace.
        namespace: String,
        /// The Lease's name.
        name: String,
        /// The API error.
        #[source]
        source: CallError,
    },
}

/// Someone else's live claim on a Lease, as a dry run reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// `holderIdentity`.
    pub holder: String,
    /// The holder's run, from the annotation.
    pub run_url: Option<String>,
    /// When the claim runs out unless renewed.
    pub expires: Timestamp,
}

/// What releasing found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Released {
    /// It was ours, and is free now.
    Cleared,
    /// It was not ours any more; it was left alone.
    NotHeld {
        /// Who holds it, if anyone.
        holder: Option<String>,
    },
}

impl std::fmt::Display for Released {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Released::Cleared => write!(f, "released"),
            Released::NotHeld { holder: None } => {
                write!(f, "not held by this run any more; nothing to release")
            }
            Released::NotHeld {
                holder: Some(holder),
            } => write!(
                f,
                "now held by {}; left alone (not released)",
                escape(holder)
            ),
        }
    }
}

/// A lock this process holds; renewed in the background until released.
pub struct HeldLock {
    lease: LeaseRef,
    renewer: tokio::task::JoinHandle<()>,
    lost: watch::Receiver<Option<String>>,
    cleanup: Option<crate::cleanup::Registration>,
    /// The holder whose claim had run out when this one was taken, if any.
    pub expired_holder: Option<String>,
}

/// The Lease a lock lives in, and who we are.
#[derive(Clone)]
struct LeaseRef {
    api: Api<Lease>,
    namespace: String,
    name: String,
    identity: Arc<Identity>,
}

impl LeaseRef {
    fn api_error(&self, action: &'static str, source: CallError) -> LockError {
        LockError::Api {
            action,
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            source,
        }
    }

    async fn get(&self) -> Result<Option<Lease>, LockError> {
        retrying("get lease", || self.api.get_opt(&self.name))
            .await
            .map_err(|e| self.api_error("reading", e))
    }

    /// Replaces `lease` (its `resourceVersion` the precondition); `Ok(None)` on a conflict.
    async fn replace(
        &self,
        lease: &Lease,
        action: &'static str,
    ) -> Result<Option<Lease>, LockError> {
        let params = PostParams {
            field_manager: Some(MANAGER.to_owned()),
            ..PostParams::default()
        };
        match retrying("replace lease", || {
            self.api.replace(&self.name, &params, lease)
        })
        .await
        {
            Ok(written) => Ok(Some(written)),
            Err(e) if e.code() == Some(409) => Ok(None),
            Err(e) => Err(self.api_error(action, e)),
        }
    }
}

/// The decisions' view of a stored Lease.
pub fn view(lease: &Lease) -> LeaseView {
    let spec = lease.spec.clone().unwrap_or_default();
    LeaseView {
        holder: spec.holder_identity,
        renewed: spec.renew_time.or(spec.acquire_time).map(|t| t.0),
        duration: spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs),
        transitions: spec.lease_transitions.unwrap_or(0),
    }
}

fn run_url_of(lease: &Lease) -> Option<String> {
    lease
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(RUN_URL_ANNOTATION).cloned())
}

/// Who holds the Lease `namespace/name` now, if anyone does with a live claim; reads only
/// (what a dry run reports).
pub async fn current_claim(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Option<Claim>, LockError> {
    let lease = LeaseRef {
        api: Api::namespaced(client.clone(), namespace),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        identity: Arc::new(Identity {
            holder: String::new(),
            run_url: None,
        }),
    };
    let Some(stored) = lease.get().await? else {
        return Ok(None);
    };
    let seen = view(&stored);
    let now = Timestamp::now();
    Ok(match (seen.holder(), seen.expires()) {
        (Some(holder), Some(expires)) if expires > now => Some(Claim {
            holder: holder.to_owned(),
            run_url: run_url_of(&stored),
            expires,
        }),
        _ => None,
    })
}

/// Takes the lock `namespace/name` for `identity`, waiting up to `settings.wait` for
/// another holder; renews it in the background from then on.
pub async fn acquire(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    identity: Identity,
    settings: &LockSettings,
) -> Result<HeldLock, LockError> {
    let lease = LeaseRef {
        api: Api::namespaced(client.clone(), namespace),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        identity: Arc::new(identity),
    };
    let started = tokio::time::Instant::now();
    let deadline = started + settings.wait;
    let mut announced: Option<String> = None;
    loop {
        let stored = lease.get().await?;
        let now = Timestamp::now();
        let seen = stored.as_ref().map(view);
        let me = lease.identity.holder.as_str();
        let decision = decide::acquire(seen.as_ref(), now, me);
        let (written, expired_holder) = match decision {
            Acquire::Wait { holder, expires } => {
                if tokio::time::Instant::now() >= deadline {
                    let run_url = stored.as_ref().and_then(run_url_of);
                    return Err(LockError::Held {
                        namespace: lease.namespace.clone(),
                        name: lease.name.clone(),
                        holder: escape(&holder).into_owned(),
                        run_url: run_url.map(|u| escape(&u).into_owned()),
                        expires,
                        waited: started.elapsed().as_secs(),
                    });
                }
                if announced.as_deref() != Some(holder.as_str()) {
                    info!(
                        "deploy lock {namespace}/{name} is held by {}; waiting up to {}s",
                        escape(&holder),
                        settings.wait.as_secs()
                    );
                    announced = Some(holder);
                }
                // Wake when the claim would run out, at the latest.
                let until_expiry = expires
                    .duration_since(now)
                    .try_into()
                    .unwrap_or(Duration::ZERO)
                    + Duration::from_millis(50);
                let pause = settings.poll.min(until_expiry);
                tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + pause)).await;
                continue;
            }
            Acquire::Create => {
                let body = new_lease(&lease, settings, now);
                let params = PostParams {
                    field_manager: Some(MANAGER.to_owned()),
                    ..PostParams::default()
                };
                match retrying("create lease", || lease.api.create(&params, &body)).await {
                    Ok(written) => (written, None),
                    // Someone created it first: decide again on theirs.
                    Err(e) if e.code() == Some(409) => continue,
                    Err(e) => return Err(lease.api_error("creating", e)),
                }
            }
            Acquire::Take {
                transitions,
                expired_holder,
            } => {
                let Some(stored) = stored else { continue };
                let body = claimed(stored, &lease, settings, now, Some(transitions));
                match lease.replace(&body, "taking").await? {
                    Some(written) => (written, expired_holder),
                    None => continue,
                }
            }
            Acquire::Keep => {
                let Some(stored) = stored else { continue };
                let body = claimed(stored, &lease, settings, now, None);
                match lease.replace(&body, "renewing").await? {
                    Some(written) => (written, None),
                    None => continue,
                }
            }
        };
        if let Some(previous) = &expired_holder {
            warn!(
                "deploy lock {namespace}/{name}: took it over from {}, which stopped renewing it",
                escape(previous)
            );
        }
        return Ok(hold(lease, written, settings, expired_holder));
    }
}

/// A Lease held by us from `now`.
fn new_lease(lease: &LeaseRef, settings: &LockSettings, now: Timestamp) -> Lease {
    let mut labels = BTreeMap::new();
    labels.insert(
        "app.kubernetes.io/managed-by".to_owned(),
        MANAGER.to_owned(),
    );
    let stored = Lease {
        metadata: ObjectMeta {
            name: Some(lease.name.clone()),
            namespace: Some(lease.namespace.clone()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        }),
    };
    claimed(stored, lease, settings, now, None)
}

/// `stored`, held by us from `now`: a new acquire time and transition count when
/// `transitions` is given (a take), else only a new renew time.
fn claimed(
    mut stored: Lease,
    lease: &LeaseRef,
    settings: &LockSettings,
    now: Timestamp,
    transitions: Option<i32>,
) -> Lease {
    let spec = stored.spec.get_or_insert_with(LeaseSpec::default);
    if let Some(transitions) = transitions {
        spec.lease_transitions = Some(transitions);
        spec.acquire_time = Some(MicroTime(now));
    }
    if spec.acquire_time.is_none() {
        spec.acquire_time = Some(MicroTime(now));
    }
    spec.holder_identity = Some(lease.identity.holder.clone());
    spec.lease_duration_seconds =
        Some(i32::try_from(settings.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX));
    spec.renew_time = Some(MicroTime(now));
    let annotations = stored
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new);
    match &lease.identity.run_url {
        Some(url) => {
            annotations.insert(RUN_URL_ANNOTATION.to_owned(), url.clone());
        }
        None => {
            annotations.remove(RUN_URL_ANNOTATION);
        }
    }
    stored
}

/// Starts renewing `written` and registers the release as a signal cleanup.
fn hold(
    lease: LeaseRef,
    written: Lease,
    settings: &LockSettings,
    expired_holder: Option<String>,
) -> HeldLock {
    info!(
        "took the deploy lock {}/{} as {}",
        lease.namespace,
        lease.name,
        escape(&lease.identity.holder)
    );
    let (lost_tx, lost) = watch::channel(None);
    let renewer = tokio::spawn(renew_until_lost(
        lease.clone(),
        written,
        settings.clone(),
        lost_tx,
    ));
    let abort = renewer.abort_handle();
    let for_cleanup = lease.clone();
    let cleanup = crate::cleanup::on_signal().register(
        &format!(
            "releasing the deploy lock {}/{}",
            lease.namespace, lease.name
        ),
        move || async move {
            abort.abort();
            let what = format!("deploy lock {}/{}", for_cleanup.namespace, for_cleanup.name);
            match release_lease(&for_cleanup).await {
                Ok(released) => format!("{what}: {released}"),
                Err(e) => format!("{what}: could not release it: {}", chain(&e)),
            }
        },
    );
    HeldLock {
        lease,
        renewer,
        lost,
        cleanup: Some(cleanup),
        expired_holder,
    }
}

/// Renews every `renew_every` until the Lease is not ours; then says why on `lost`.
async fn renew_until_lost(
    lease: LeaseRef,
    mut last: Lease,
    settings: LockSettings,
    lost: watch::Sender<Option<String>>,
) {
    let mut last_renewed = Timestamp::now();
    loop {
        tokio::time::sleep(settings.renew_every).await;
        match renew_once(&lease, &settings, &mut last).await {
            Ok(None) => last_renewed = Timestamp::now(),
            Ok(Some(why)) => {
                let _ = lost.send(Some(why));
                return;
            }
            Err(e) => {
                let error = chain(&e);
                if decide::overdue(last_renewed, settings.lease_duration, Timestamp::now()) {
                    let _ = lost.send(Some(format!(
                        "not renewed for {}s, so another run may have taken it: {error}",
                        settings.lease_duration.as_secs()
                    )));
                    return;
                }
                warn!("renewing the deploy lock failed; trying again: {error}");
            }
        }
    }
}

/// One renewal: `Ok(None)` renewed, `Ok(Some(why))` lost. A conflict re-reads.
async fn renew_once(
    lease: &LeaseRef,
    settings: &LockSettings,
    last: &mut Lease,
) -> Result<Option<String>, LockError> {
    let mut stored = Some(last.clone());
    for _ in 0..5 {
        let me = lease.identity.holder.as_str();
        match decide::renew(stored.as_ref().map(view).as_ref(), me) {
            Renew::Lost { holder } => {
                return Ok(Some(match holder {
                    Some(holder) => format!("it is now held by {}", escape(&holder)),
                    None => "it was released or deleted by someone else".to_owned(),
                }));
            }
            Renew::Renew => {
                let Some(current) = stored.take() else {
                    continue;
                };
                let body = claimed(current, lease, settings, Timestamp::now(), None);
                match lease.replace(&body, "renewing").await? {
                    Some(written) => {
                        *last = written;
                        return Ok(None);
                    }
                    None => stored = lease.get().await?,
                }
            }
        }
    }
    Ok(Some("it kept changing under every renewal".to_owned()))
}

/// Clears the holder if it is still us, re-reading on a conflict.
async fn release_lease(lease: &LeaseRef) -> Result<Released, LockError> {
    for _ in 0..5 {
        let Some(mut stored) = lease.get().await? else {
            return Ok(Released::NotHeld { holder: None });
        };
        match decide::release(Some(&view(&stored)), &lease.identity.holder) {
            Release::NotHeld { holder } => return Ok(Released::NotHeld { holder }),
            Release::Clear => {
                if let Some(spec) = stored.spec.as_mut() {
                    spec.holder_identity = None;
                }
                if let Some(annotations) = stored.metadata.annotations.as_mut() {
                    annotations.remove(RUN_URL_ANNOTATION);
                }
                if lease.replace(&stored, "releasing").await?.is_some() {
                    info!(
                        "released the deploy lock {}/{}",
                        lease.namespace, lease.name
                    );
                    return Ok(Released::Cleared);
                }
            }
        }
    }
    Err(LockError::Lost {
        namespace: lease.namespace.clone(),
        name: lease.name.clone(),
        why: "it kept changing while being released".to_owned(),
    })
}

impl HeldLock {
    /// Our `holderIdentity`.
    pub fn holder(&self) -> &str {
        &self.lease.identity.holder
    }

    /// `namespace/name` of the Lease.
    pub fn lease(&self) -> String {
        format!("{}/{}", self.lease.namespace, self.lease.name)
    }

    /// Resolves once the lock is lost, with the error saying why; pending forever while
    /// it is held.
    pub fn lost(&self) -> impl Future<Output = LockError> + Send + 'static {
        let mut lost = self.lost.clone();
        let (namespace, name) = (self.lease.namespace.clone(), self.lease.name.clone());
        async move {
            let seen = lost.wait_for(Option::is_some).await.map(|why| why.clone());
            let why = match seen {
                Ok(why) => why.unwrap_or_default(),
                // The renewer is gone without a word: it was stopped, not lost.
                Err(_) => std::future::pending().await,
            };
            LockError::Lost {
                namespace,
                name,
                why,
            }
        }
    }

    /// Whether the lock is known to be lost, with why.
    pub fn lost_now(&self) -> Option<LockError> {
        let why = self.lost.borrow().clone()?;
        Some(LockError::Lost {
            namespace: self.lease.namespace.clone(),
            name: self.lease.name.clone(),
            why,
        })
    }

    /// Stops renewing and gives the lock back if it is still ours.
    pub async fn release(mut self) -> Result<Released, LockError> {
        self.renewer.abort();
        let _ = (&mut self.renewer).await;
        if let Some(cleanup) = self.cleanup.take() {
            crate::cleanup::on_signal().remove(cleanup);
        }
        release_lease(&self.lease).await
    }
}

impl Drop for HeldLock {
    /// Stops renewing; the Lease then runs out by itself. The signal cleanup stays
    /// registered (a lock dropped with the work a signal stopped is still given back).
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// An error with its causes, `: `-separated.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests;
