//! Emulated controllers, run together on a fixed real-time tick: garbage collection,
//! Deployments, ReplicaSets, the kubelet stand-in, and Endpoints/EndpointSlices. They
//! read and write through the same store and write path as API clients, so every change
//! they make is visible to watches.

pub mod deployment;
pub mod endpoints;
pub mod kubelet;
pub mod replicaset;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

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
    /// Real time between controller passes.
    pub tick: Duration,
}

/// Runs the controllers until the task is aborted.
pub async fn run(shared: Arc<Shared>, cfg: ControllerConfig) {
    let mut interval = tokio::time::interval(cfg.tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let mut s = shared.lock();
        reconcile_all(&mut s, &cfg);
    }
}

/// One pass of every controller.
pub fn reconcile_all(s: &mut Inner, cfg: &ControllerConfig) {
    writes::collect_garbage(s);
    deployment::reconcile(s);
    replicaset::reconcile(s);
    kubelet::reconcile(s, &cfg.images);
    endpoints::reconcile(s);
    writes::collect_garbage(s);
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
