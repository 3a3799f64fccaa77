//! The lock steps of a deploy job: `lock` takes the environment's Lease (or, in a dry run,
//! says who holds it), `unlock` gives it back. While a lock is held the executor races
//! every step of the job against its loss ([`Locks::lost`]): a lost lock fails the running
//! step and the job, so two runs never deploy one environment at once. Whatever a job
//! leaves held is released when the job ends; a signal releases it through
//! [`crate::cleanup`].

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use tracing::warn;

use super::Done;
use crate::kube::lock::{self, HeldLock, Identity, LockError, LockSettings};
use crate::output::escape;

/// The locks this run holds, by `namespace/name`.
#[derive(Default)]
pub struct Locks {
    held: BTreeMap<String, HeldLock>,
}

impl Locks {
    /// Runs a `lock` step: takes the Lease, waiting up to `settings.wait`; in a dry run
    /// only reads who holds it.
    pub async fn acquire(
        &mut self,
        client: &kube::Client,
        (namespace, name): (&str, &str),
        identity: Identity,
        settings: &LockSettings,
        preview: bool,
    ) -> anyhow::Result<Done> {
        let key = format!("{namespace}/{name}");
        if preview {
            let reason = match lock::current_claim(client, namespace, name).await? {
                Some(claim) => format!(
                    "dry run: the lock was not taken; Lease {key} is held by {}{} until {} unless renewed",
                    escape(&claim.holder),
                    claim
                        .run_url
                        .map(|u| format!(" (run {})", escape(&u)))
                        .unwrap_or_default(),
                    claim.expires
                ),
                None => format!("dry run: the lock was not taken; Lease {key} is free"),
            };
            return Ok(Done::Skipped(reason));
        }
        let held = lock::acquire(client, namespace, name, identity, settings).await?;
        let mut outputs = BTreeMap::from([
            ("holder".to_owned(), held.holder().to_owned()),
            ("lease".to_owned(), key.clone()),
        ]);
        if let Some(previous) = &held.expired_holder {
            outputs.insert("taken_over_from".to_owned(), previous.clone());
        }
        self.held.insert(key, held);
        Ok(Done::Ran(outputs))
    }

    /// Runs an `unlock` step: gives the Lease back if this run still holds it.
    pub async fn release(
        &mut self,
        (namespace, name): (&str, &str),
        preview: bool,
    ) -> anyhow::Result<Done> {
        let key = format!("{namespace}/{name}");
        if preview {
            return Ok(Done::Skipped("dry run: nothing was locked".to_owned()));
        }
        let Some(held) = self.held.remove(&key) else {
            return Ok(Done::Skipped(format!(
                "this run did not take the lock (Lease {key}); nothing to release"
            )));
        };
        let holder = held.holder().to_owned();
        let released = held.release().await?;
        Ok(Done::Ran(BTreeMap::from([
            ("holder".to_owned(), holder),
            ("lease".to_owned(), key),
            ("released".to_owned(), released.to_string()),
        ])))
    }

    /// Releases every lock still held (at the end of a job); problems are logged.
    pub async fn release_all(&mut self) {
        for (key, held) in std::mem::take(&mut self.held) {
            match held.release().await {
                Ok(released) => warn!("deploy lock {key} left held by its job: {released}"),
                Err(e) => warn!("deploy lock {key}: could not release it: {e:#}"),
            }
        }
    }

    /// Whether no lock is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// The first lock known to be lost, if any.
    pub fn lost_now(&self) -> Option<LockError> {
        self.held.values().find_map(HeldLock::lost_now)
    }

    /// Resolves when any held lock is lost; pending forever while all are held (or none).
    pub fn lost(&self) -> Pin<Box<dyn Future<Output = LockError> + Send>> {
        let watching: Vec<_> = self
            .held
            .values()
            .map(|held| Box::pin(held.lost()))
            .collect();
        if watching.is_empty() {
            return Box::pin(std::future::pending());
        }
        Box::pin(async move { futures::future::select_all(watching).await.0 })
    }
}
