//! Moving traffic between colors: read which color every routed Service selects, count
//! the ready Pods a color would get, and switch the Services by patching only their
//! `color` selector key, each patch guarded by the `resourceVersion` just read. A switch
//! that fails halfway puts the Services it already moved back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;

use super::color::{COLOR_LABEL, Color, ServiceColors, SwitchMark, SwitchMarks, selected_color};
use super::retry::{CallError, retrying};

/// Annotation each switch leaves on the Services it moves: `<from>-><to>@<switch id>`, so a
/// run killed halfway through a switch can be recognised and undone by the next one.
pub const SWITCH_MARK: &str = "jisu.dev/switch";

/// Field manager of the selector patches (kept apart from the apply manager, so a later
/// apply never fights over the color key).
pub const SWITCH_MANAGER: &str = "jisu-deploy-switch";

/// Why traffic did not move.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    /// A routed Service would select a color with no ready Pod.
    #[error(
        "Service `{service}` would send traffic to color {color}, which has no ready Pod; nothing was switched"
    )]
    NoReadyPods {
        /// The Service.
        service: String,
        /// The color.
        color: String,
    },
    /// A Service changed between reading and patching (another run, or a person).
    #[error("Service `{service}` changed while switching ({detail}); switched back {undone:?}")]
    Changed {
        /// The Service.
        service: String,
        /// What was found.
        detail: String,
        /// The Services put back.
        undone: Vec<String>,
    },
    /// The API refused or failed a patch.
    #[error("patching Service `{service}` failed: {source}; switched back {undone:?}")]
    Patch {
        /// The Service.
        service: String,
        /// The API error.
        source: CallError,
        /// The Services put back.
        undone: Vec<String>,
    },
    /// Reading failed.
    #[error("reading Service `{service}`: {source}")]
    Read {
        /// The Service.
        service: String,
        /// The API error.
        source: CallError,
    },
}

/// What a switch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switched {
    /// The Services patched, in order.
    pub services: Vec<String>,
    /// From the first patch sent to the last one answered.
    pub window: Duration,
}

fn label(color: Option<Color>) -> String {
    color.map_or_else(|| "(none)".to_owned(), |c| c.as_str().to_owned())
}

/// The color each routed Service selects (`None` for a Service that selects no color, or
/// does not exist yet), and the switch mark each carries ([`SWITCH_MARK`]).
pub async fn read_colors(
    client: &kube::Client,
    namespace: &str,
    services: &[String],
) -> anyhow::Result<(ServiceColors, SwitchMarks)> {
    let api: Api<Service> = Api::namespaced(client.clone(), namespace);
    let mut colors = ServiceColors::new();
    let mut marks = SwitchMarks::new();
    for name in services {
        let Some(service) = retrying("read a Service", || api.get_opt(name))
            .await
            .map_err(|source| SwitchError::Read {
                service: name.clone(),
                source,
            })?
        else {
            colors.insert(name.clone(), None);
            continue;
        };
        let value = serde_json::to_value(&service)?;
        colors.insert(name.clone(), selected_color(name, &value)?);
        let mark = service
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(SWITCH_MARK))
            .and_then(|m| SwitchMark::parse(m));
        if let Some(mark) = mark {
            marks.insert(name.clone(), mark);
        }
    }
    Ok((colors, marks))
}

/// The Pods `service` would select with its color key set to `color`, and how many are
/// ready. `None` selects what the Service's selector selects without a color.
pub async fn ready_pods(
    client: &kube::Client,
    namespace: &str,
    selector: &BTreeMap<String, String>,
    color: Option<Color>,
) -> Result<usize, CallError> {
    let mut selector = selector.clone();
    match color {
        Some(color) => selector.insert(COLOR_LABEL.to_owned(), color.as_str().to_owned()),
        None => selector.remove(COLOR_LABEL),
    };
    let query: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let params = ListParams::default().labels(&query.join(","));
    let list = retrying("list Pods", || pods.list(&params)).await?;
    Ok(list
        .items
        .iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none() && is_ready(pod))
        .count())
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

/// Points every Service in `services` at `to`, expecting each to select `from` now. Before
/// any patch, every Service must have a ready Pod in `to` (unless `to` is `None`: back to
/// the un-colored selector). Each patch carries the `resourceVersion` just read, so a
/// Service changed meanwhile is not overwritten; on any failure the Services already moved
/// go back to `from`.
pub async fn switch(
    client: &kube::Client,
    namespace: &str,
    services: &[String],
    from: Option<Color>,
    to: Option<Color>,
) -> Result<Switched, SwitchError> {
    let api: Api<Service> = Api::namespaced(client.clone(), namespace);
    let mut current = Vec::new();
    for name in services {
        let read = |source| SwitchError::Read {
            service: name.clone(),
            source,
        };
        let read = &read;
        let service = retrying("read a Service", || api.get(name))
            .await
            .map_err(read)?;
        let selector = service
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        let ready = ready_pods(client, namespace, &selector, to)
            .await
            .map_err(read)?;
        if to.is_some() && ready == 0 {
            return Err(SwitchError::NoReadyPods {
                service: name.clone(),
                color: label(to),
            });
        }
        current.push(service);
    }
    let mark = SwitchMark {
        from,
        to,
        id: switch_id(),
    }
    .to_string();
    let started = Instant::now();
    let mut moved: Vec<String> = Vec::new();
    for service in &current {
        let name = service.metadata.name.clone().unwrap_or_default();
        let value = serde_json::to_value(service).unwrap_or_default();
        let now = selected_color(&name, &value).ok().flatten();
        if now != from && now != to {
            let undone = undo(&api, &moved, from).await;
            return Err(SwitchError::Changed {
                service: name,
                detail: format!("it selects {}, expected {}", label(now), label(from)),
                undone,
            });
        }
        if now == to {
            continue;
        }
        let version = service
            .metadata
            .resource_version
            .clone()
            .unwrap_or_default();
        let guard = Guard {
            version: &version,
            mark: &mark,
        };
        if let Err(source) = patch_color(&api, &name, to, Some(guard)).await {
            // A retried patch may have landed before its answer was lost: then the Service
            // already carries this switch's mark and color.
            if source.code() == Some(409) && already_moved(&api, &name, to, &mark).await {
                moved.push(name);
                continue;
            }
            let undone = undo(&api, &moved, from).await;
            return Err(match source {
                source if source.code() == Some(409) => SwitchError::Changed {
                    service: name,
                    detail: "its resourceVersion moved on".to_owned(),
                    undone,
                },
                source => SwitchError::Patch {
                    service: name,
                    source,
                    undone,
                },
            });
        }
        moved.push(name);
    }
    Ok(Switched {
        services: moved,
        window: started.elapsed(),
    })
}

/// What a guarded patch carries besides the color: the `resourceVersion` it expects and
/// the switch mark it leaves.
struct Guard<'a> {
    version: &'a str,
    mark: &'a str,
}

/// A merge patch of the color key alone (`null` removes it); guarded, it also expects the
/// `resourceVersion` read and leaves the switch mark.
async fn patch_color(
    api: &Api<Service>,
    name: &str,
    color: Option<Color>,
    guard: Option<Guard<'_>>,
) -> Result<Service, CallError> {
    let mut patch = json!({"spec": {"selector": {COLOR_LABEL: color.map(Color::as_str)}}});
    if let Some(guard) = guard {
        patch["metadata"] = json!({
            "resourceVersion": guard.version,
            "annotations": {SWITCH_MARK: guard.mark},
        });
    }
    let params = PatchParams::apply(SWITCH_MANAGER).validation_strict();
    let patch = Patch::Merge(&patch);
    retrying("patch a Service's selector", || {
        api.patch(name, &params, &patch)
    })
    .await
}

/// Whether `name` already selects `to` and carries `mark`.
async fn already_moved(api: &Api<Service>, name: &str, to: Option<Color>, mark: &str) -> bool {
    let Ok(service) = retrying("read a Service", || api.get(name)).await else {
        return false;
    };
    let value = serde_json::to_value(&service).unwrap_or_default();
    let marked = service
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SWITCH_MARK))
        .is_some_and(|m| m == mark);
    marked && selected_color(name, &value).ok().flatten() == to
}

/// An id telling one switch from another: the time and this process.
fn switch_id() -> String {
    format!(
        "{}-{}",
        jiff::Timestamp::now().as_millisecond(),
        std::process::id()
    )
}

/// Puts `moved` back on `from`, unguarded: they were ours a moment ago. Returns the ones
/// that went back.
async fn undo(api: &Api<Service>, moved: &[String], from: Option<Color>) -> Vec<String> {
    let mut undone = Vec::new();
    for name in moved {
        match patch_color(api, name, from, None).await {
            Ok(_) => undone.push(name.clone()),
            Err(error) => tracing::error!(service = %name, %error, "could not switch back"),
        }
    }
    undone
}

/// A Service's selector as label pairs (from the Service as JSON).
pub fn selector_of(service: &serde_json::Value) -> BTreeMap<String, String> {
    service
        .pointer("/spec/selector")
        .and_then(serde_json::Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}
