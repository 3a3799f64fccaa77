//! Emulated controllers, run together on a fixed real-time tick: garbage collection,
//! Deployments, ReplicaSets, the kubelet stand-in, and Endpoints/EndpointSlices. They
//! read and write through the same store and write path as API clients, so every change
//! they make is visible to watches.

pub mod deployment;
pub mod endpoints;
pub mod kubelet;
pub mod pod_events;
pub mod replicaset;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::behaviour::ImageRules;
use crate::http::Shared;
use crate::store::Inner;
use crate::writes::{self, Change, WriteCtx};

/// Field manager the controller-manager writes with.
pub const CONTROLLER_MANAGER: &str = "kube-controller-manager";

/// Configuration of the emulated controllers.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Image behaviours for the kubelet stand-in.
    pub images: ImageRules,
    /// Real time to wait after a change before the next pass (debounce).
    pub tick: Duration,
}

/// The earliest simulated delay after which some controller's view changes by itself
/// (a pod becomes ready, a crash-looping container restarts, a deadline passes).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Wake(Option<Duration>);

impl Wake {
    /// Records that something changes `after` from now (simulated time).
    pub fn at(&mut self, after: Duration) {
        self.0 = Some(self.0.map_or(after, |cur| cur.min(after)));
    }

    /// The earliest recorded delay.
    pub fn get(self) -> Option<Duration> {
        self.0
    }
}

// Even with nothing scheduled, look again now and then: a cheap safety net.
const MAX_IDLE: Duration = Duration::from_secs(1);

/// Runs the controllers until the task is aborted. A pass runs after any change to the
/// store (debounced by `tick`), again while passes keep writing, and otherwise when the
/// next time-driven transition is due: an idle simulator costs almost nothing.
pub async fn run(shared: Arc<Shared>, mut cfg: ControllerConfig) {
    let mut events = shared.lock().subscribe();
    loop {
        // Image rules may be changed while the simulator runs.
        cfg.images = shared.image_rules();
        let (wrote, wake) = {
            let mut s = shared.lock();
            let before = s.rv();
            // A controller tripping over an odd object must not stop the others for good.
            let pass = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                reconcile_all(&mut s, &cfg)
            }));
            let wake = pass.unwrap_or_else(|_| {
                tracing::error!("a controller pass panicked; retrying after the next change");
                Wake::default()
            });
            (s.rv() != before, wake)
        };
        // The pass's own writes are queued too; the follow-up pass covers them.
        while !matches!(
            events.try_recv(),
            Err(TryRecvError::Empty | TryRecvError::Closed)
        ) {}
        if wrote {
            tokio::time::sleep(cfg.tick).await;
            continue;
        }
        // A couple of milliseconds past the due time, so the transition has happened.
        let idle = wake
            .get()
            .map_or(MAX_IDLE, |d| {
                shared.clock.to_real(d) + Duration::from_millis(2)
            })
            .min(MAX_IDLE);
        tokio::select! {
            ev = events.recv() => {
                if matches!(ev, Err(RecvError::Closed)) {
                    return;
                }
                tokio::time::sleep(cfg.tick).await;
            }
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(idle) => {}
        }
    }
}

/// One pass of every controller; returns when the next time-driven pass is due.
pub fn reconcile_all(s: &mut Inner, cfg: &ControllerConfig) -> Wake {
    let mut wake = Wake::default();
    writes::collect_garbage(s);
    deployment::reconcile(s, &mut wake);
    replicaset::reconcile(s, &mut wake);
    kubelet::reconcile(s, &cfg.images, &mut wake);
    endpoints::reconcile(s);
    writes::collect_garbage(s);
    wake
}

/// `metadata.<field>` as a string.
pub fn meta<'a>(o: &'a Value, field: &str) -> &'a str {
    o.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Whether `o` has a controller owner reference to `uid`.
pub fn owned_by(o: &Value, uid: &str) -> bool {
    o.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| {
            refs.iter()
                .any(|r| r.get("uid").and_then(Value::as_str) == Some(uid))
        })
}

/// Writes a controller change, logging (not propagating) failures: a controller retries
/// on its next pass, as the real ones requeue.
pub fn write_logged(
    s: &mut Inner,
    res: crate::resources::ResId,
    ns: &str,
    name: &str,
    change: Change,
    manager: &str,
    subresource: &str,
) {
    let ctx = WriteCtx {
        manager,
        subresource,
        dry_run: false,
        validation: None,
    };
    if let Err(e) = writes::write(s, res, ns, name, change, ctx) {
        tracing::debug!(ns, name, error = %e, "controller write failed; retrying next pass");
    }
}

/// Replaces the status of an object if it differs.
pub fn put_status(
    s: &mut Inner,
    res: crate::resources::ResId,
    obj: &Value,
    status: Value,
    manager: &str,
) {
    if obj.get("status") == Some(&status) {
        return;
    }
    let mut o = obj.clone();
    o["status"] = status;
    write_logged(
        s,
        res,
        meta(obj, "namespace"),
        meta(obj, "name"),
        Change::Replace(o),
        manager,
        "status",
    );
}
