//! Change hooks: a test may watch every stored change (client writes and controller
//! writes alike) synchronously, in `resourceVersion` order, as the store makes it.

use std::sync::Arc;

use serde_json::Value;

use crate::resources::RESOURCES;
use crate::store::{Event, EventType};

/// One stored change, as a change hook sees it.
#[derive(Debug, Clone)]
pub struct StoredChange {
    /// The `resourceVersion` the change was stored at; consecutive changes have
    /// consecutive versions.
    pub resource_version: u64,
    /// `Added`, `Modified` or `Deleted`.
    pub verb: EventType,
    /// Kind of the object, e.g. `Deployment`.
    pub kind: &'static str,
    /// `apiVersion` of the object, e.g. `apps/v1`.
    pub api_version: String,
    /// Namespace (empty for cluster-scoped objects).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The object after the change (for deletions: its last state).
    pub object: Arc<Value>,
}

impl StoredChange {
    /// The change a store event describes.
    pub fn from_event(ev: &Event) -> Self {
        let rt = &RESOURCES[ev.res];
        let name = ev
            .object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        Self {
            resource_version: ev.rv,
            verb: ev.kind,
            kind: rt.kind,
            api_version: rt.api_version(),
            namespace: ev.ns.clone(),
            name,
            object: ev.object.clone(),
        }
    }
}

/// A change hook. It runs while the store is locked, right after the change, so it must
/// be quick and must not call back into the simulator (`KubeSim::object` would deadlock).
pub type ChangeHook = Arc<dyn Fn(&StoredChange) + Send + Sync>;
