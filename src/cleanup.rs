//! Work that must still happen when a signal stops the run.
//!
//! A SIGTERM or SIGINT makes [`crate::session::Session::block_on`] drop the running future
//! at its next await point, so nothing inside it gets to finish. Whatever must outlive
//! that (giving back the deploy lock, so the next run need not wait for the Lease to
//! expire) registers here while it is needed and unregisters once done. After a signal,
//! `block_on` runs what is still registered, each under one short shared deadline, then
//! exits.
//!
//! The list is process-wide, like the signal it answers: a [`crate::session::Session`] is
//! opened once per process, and a registration made anywhere (a spawned task, a step
//! deep in the executor) must be found without threading a handle through every call.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A cleanup's work: started at most once, after a signal. It says what it did.
type Work = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = String> + Send>> + Send>;

/// The pending cleanups, in registration order.
pub struct Cleanups {
    next: AtomicU64,
    pending: Mutex<BTreeMap<u64, (String, Work)>>,
}

/// A registration's ticket; [`Cleanups::remove`] takes it back. Dropping it leaves the
/// work registered, on purpose: a future dropped by a signal drops its tickets too.
#[derive(Debug)]
#[must_use = "without the ticket the cleanup can never be removed"]
pub struct Registration(u64);

static ON_SIGNAL: Cleanups = Cleanups::new();

/// The process's list, run by [`crate::session::Session::block_on`] after a signal.
pub fn on_signal() -> &'static Cleanups {
    &ON_SIGNAL
}

impl Cleanups {
    /// An empty list.
    pub const fn new() -> Self {
        Cleanups {
            next: AtomicU64::new(0),
            pending: Mutex::new(BTreeMap::new()),
        }
    }

    /// Registers `work`, named `what` for the log should it not finish in time.
    pub fn register<F, Fut>(&self, what: &str, work: F) -> Registration
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = String> + Send + 'static,
    {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let work: Work = Box::new(move || Box::pin(work()));
        self.lock().insert(id, (what.to_owned(), work));
        Registration(id)
    }

    /// Takes the work back (it was done another way, or is no longer needed).
    pub fn remove(&self, registration: Registration) {
        self.lock().remove(&registration.0);
    }

    /// How many are registered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs every registered cleanup at once, all within `deadline`; returns what each
    /// said, or that it did not finish in time. The list is empty afterwards.
    pub async fn run_all(&self, deadline: Duration) -> Vec<String> {
        let work: Vec<(String, Work)> = std::mem::take(&mut *self.lock()).into_values().collect();
        let mut running = Vec::new();
        for (what, work) in work {
            running.push((what, tokio::spawn(work())));
        }
        let until = tokio::time::Instant::now() + deadline;
        let mut said = Vec::new();
        for (what, handle) in running {
            match tokio::time::timeout_at(until, handle).await {
                Ok(Ok(text)) => said.push(text),
                Ok(Err(_)) => said.push(format!("{what}: failed")),
                Err(_) => said.push(format!(
                    "{what}: not done within {}s",
                    deadline.as_secs_f64()
                )),
            }
        }
        said
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, (String, Work)>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Default for Cleanups {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn registered_work_runs_once_and_removed_work_never() {
        let list = Cleanups::new();
        let kept = list.register("kept", || async { "kept ran".to_owned() });
        let removed = list.register("removed", || async { "removed ran".to_owned() });
        list.remove(removed);
        drop(kept);
        assert_eq!(list.len(), 1, "a dropped ticket leaves its work registered");
        assert_eq!(
            list.run_all(Duration::from_secs(1)).await,
            ["kept ran".to_owned()]
        );
        assert!(list.is_empty());
        assert!(list.run_all(Duration::from_secs(1)).await.is_empty());
    }

    #[tokio::test]
    async fn work_past_the_deadline_is_named() {
        let list = Cleanups::new();
        let _ticket = list.register("slow release", || async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            "done".to_owned()
        });
        let said = list.run_all(Duration::from_millis(20)).await;
        assert_eq!(said, ["slow release: not done within 0.02s".to_owned()]);
    }
}
