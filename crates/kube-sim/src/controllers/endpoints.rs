//! The Endpoints and EndpointSlice controllers: for each Service with a selector, the
//! addresses of matching Pods, ready ones as ready, others as not ready.

use serde_json::{Value, json};

use super::{CONTROLLER_MANAGER, meta, write_logged};
use crate::resources::ids;
use crate::selectors::LabelSelector;
use crate::store::Inner;
use crate::writes::{self, Change};

const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
const SLICE_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const SLICE_CONTROLLER: &str = "endpointslice-controller.k8s.io";
const ENDPOINTS_MANAGED_BY: &str = "endpoints.kubernetes.io/managed-by";

/// Resolves a Service port's `targetPort` (number or container port name) for a Pod.
pub fn target_port(svc_port: &Value, pod: &Value) -> Option<i64> {
    match svc_port
        .get("targetPort")
        .or_else(|| svc_port.get("port"))?
    {
        Value::Number(n) => n.as_i64(),
        Value::String(name) => pod
            .pointer("/spec/containers")?
            .as_array()?
            .iter()
            .flat_map(|c| {
                c.get("ports")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
            })
            .find(|p| p.get("name").and_then(Value::as_str) == Some(name))?
            .get("containerPort")?
            .as_i64(),
        _ => None,
    }
}

/// One pass over every Service, plus clean-up of slices whose Service is gone.
pub fn reconcile(s: &mut Inner) {
    let services: Vec<std::sync::Arc<Value>> = s.list(*ids::SERVICE, None).cloned().collect();
    for svc in &services {
        let Some(sel) = svc
            .pointer("/spec/selector")
            .and_then(Value::as_object)
            .filter(|m| !m.is_empty())
        else {
            continue;
        };
        let selector = LabelSelector::from_map(sel);
        let ns = meta(svc, "namespace").to_string();
        let name = meta(svc, "name").to_string();
        let mut pods: Vec<std::sync::Arc<Value>> = s
            .list(*ids::POD, Some(&ns))
            .filter(|p| {
                selector.matches(p.pointer("/metadata/labels"))
                    && p.pointer("/status/podIP").is_some()
            })
            .cloned()
            .collect();
        pods.sort_by(|a, b| {
            a.pointer("/status/podIP")
                .and_then(Value::as_str)
                .cmp(&b.pointer("/status/podIP").and_then(Value::as_str))
        });
        let ports: Vec<Value> = svc
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        sync_endpoints(s, svc, &ns, &name, &pods, &ports);
        sync_slice(s, svc, &ns, &name, &pods, &ports);
    }
    // Slices and Endpoints whose Service was deleted go with it.
    let orphans: Vec<(bool, String, String)> = s
        .list(*ids::ENDPOINTSLICE, None)
        .filter(|o| {
            o.pointer("/metadata/labels")
                .and_then(|l| l.get(SLICE_MANAGED_BY))
                .and_then(Value::as_str)
                == Some(SLICE_CONTROLLER)
        })
        .map(|o| {
            (
                true,
                meta(o, "namespace").to_string(),
                meta(o, "name").to_string(),
            )
        })
        .chain(
            s.list(*ids::ENDPOINTS, None)
                .filter(|o| {
                    o.pointer("/metadata/labels")
                        .and_then(|l| l.get(ENDPOINTS_MANAGED_BY))
                        .is_some()
                })
                .map(|o| {
                    (
                        false,
                        meta(o, "namespace").to_string(),
                        meta(o, "name").to_string(),
                    )
                }),
        )
        .collect();
    for (slice, ns, name) in orphans {
        let svc_name = if slice {
            s.get(*ids::ENDPOINTSLICE, &ns, &name)
                .and_then(|o| {
                    o.pointer("/metadata/labels")
                        .and_then(|l| l.get(SERVICE_NAME_LABEL))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .unwrap_or_default()
        } else {
            name.clone()
        };
        let has_selector = s.get(*ids::SERVICE, &ns, &svc_name).is_some_and(|svc| {
            svc.pointer("/spec/selector")
                .is_some_and(|v| v.as_object().is_some_and(|m| !m.is_empty()))
        });
        if !has_selector {
            let res = if slice {
                *ids::ENDPOINTSLICE
            } else {
                *ids::ENDPOINTS
            };
            let _ = writes::delete(s, res, &ns, &name, &Default::default());
        }
    }
}

fn target_ref(p: &Value) -> Value {
    json!({"kind": "Pod", "namespace": meta(p, "namespace"), "name": meta(p, "name"), "uid": meta(p, "uid")})
}

fn is_ready(p: &Value) -> bool {
    super::replicaset::pod_ready_since(p).is_some()
        && p.pointer("/metadata/deletionTimestamp").is_none()
}

fn sync_endpoints(
    s: &mut Inner,
    svc: &Value,
    ns: &str,
    name: &str,
    pods: &[std::sync::Arc<Value>],
    ports: &[Value],
) {
    // One subset per distinct resolved port set; pods usually agree, so usually one.
    let mut subsets: Vec<Value> = Vec::new();
    for p in pods {
        let eps: Vec<Value> = ports
            .iter()
            .filter_map(|sp| {
                let port = target_port(sp, p)?;
                let mut e = json!({"port": port, "protocol": sp.get("protocol").cloned().unwrap_or(json!("TCP"))});
                if let Some(n) = sp.get("name") {
                    e["name"] = n.clone();
                }
                Some(e)
            })
            .collect();
        let addr = json!({"ip": p.pointer("/status/podIP"), "nodeName": p.pointer("/spec/nodeName"), "targetRef": target_ref(p)});
        let key = if is_ready(p) {
            "addresses"
        } else {
            "notReadyAddresses"
        };
        match subsets.iter_mut().find(|ss| ss["ports"] == json!(eps)) {
            Some(ss) => ss[key]
                .as_array_mut()
                .map(|a| a.push(addr.clone()))
                .unwrap_or_else(|| ss[key] = json!([addr])),
            None => {
                let mut ss = json!({"ports": eps});
                ss[key] = json!([addr]);
                subsets.push(ss);
            }
        }
    }
    let mut labels = svc
        .pointer("/metadata/labels")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or(json!({}));
    labels[ENDPOINTS_MANAGED_BY] = json!("endpoint-controller");
    let mut body = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": ns, "labels": labels}});
    if !subsets.is_empty() {
        body["subsets"] = json!(subsets);
    }
    upsert(s, *ids::ENDPOINTS, ns, name, body);
}

fn sync_slice(
    s: &mut Inner,
    svc: &Value,
    ns: &str,
    name: &str,
    pods: &[std::sync::Arc<Value>],
    ports: &[Value],
) {
    let slice_name = format!(
        "{name}-{}",
        &super::deployment::template_hash(&json!(name))[..5]
    );
    let endpoints: Vec<Value> = pods
        .iter()
        .map(|p| {
            let ready = is_ready(p);
            json!({
                "addresses": [p.pointer("/status/podIP")],
                "conditions": {"ready": ready, "serving": ready, "terminating": false},
                "nodeName": p.pointer("/spec/nodeName"),
                "targetRef": target_ref(p),
            })
        })
        .collect();
    let slice_ports: Vec<Value> = ports
        .iter()
        .filter_map(|sp| {
            let port = pods.iter().find_map(|p| target_port(sp, p)).or_else(|| sp.get("targetPort").and_then(Value::as_i64))?;
            Some(json!({"name": sp.get("name").cloned().unwrap_or(json!("")), "port": port, "protocol": sp.get("protocol").cloned().unwrap_or(json!("TCP"))}))
        })
        .collect();
    let body = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {
            "name": slice_name, "namespace": ns, "generateName": format!("{name}-"),
            "labels": {SERVICE_NAME_LABEL: name, SLICE_MANAGED_BY: SLICE_CONTROLLER},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": name, "uid": meta(svc, "uid"), "controller": true, "blockOwnerDeletion": true}]
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": slice_ports,
    });
    upsert(s, *ids::ENDPOINTSLICE, ns, &slice_name, body);
}

fn upsert(s: &mut Inner, res: crate::resources::ResId, ns: &str, name: &str, mut body: Value) {
    match s.get(res, ns, name) {
        Some(cur) => {
            // Most passes change nothing; skip the write path (and its field-ownership
            // bookkeeping) when every field the controller sets already matches.
            let unchanged = body.as_object().is_some_and(|b| {
                b.iter().all(|(k, v)| match k.as_str() {
                    "metadata" => ["labels", "ownerReferences"]
                        .iter()
                        .all(|f| cur["metadata"].get(f) == v.get(f)),
                    _ => cur.get(k) == Some(v),
                })
            }) && (body.get("subsets").is_some() || cur.get("subsets").is_none());
            if unchanged {
                return;
            }
            body["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"].clone();
            write_logged(
                s,
                res,
                ns,
                name,
                Change::Replace(body),
                CONTROLLER_MANAGER,
                "",
            );
        }
        None => write_logged(s, res, ns, "", Change::Create(body), CONTROLLER_MANAGER, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_target_ports_resolve_through_the_pod() {
        let pod = json!({"spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8000}]}]}});
        assert_eq!(
            target_port(&json!({"port": 80, "targetPort": "http"}), &pod),
            Some(8000)
        );
        assert_eq!(
            target_port(&json!({"port": 80, "targetPort": 8080}), &pod),
            Some(8080)
        );
        assert_eq!(target_port(&json!({"port": 80}), &pod), Some(80));
        assert_eq!(
            target_port(&json!({"port": 80, "targetPort": "metrics"}), &pod),
            None
        );
    }
}
