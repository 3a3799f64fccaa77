//! Server-side printing: the `meta.k8s.io/v1` Table kubectl asks for (`Accept: ...;as=Table`)
//! so `kubectl get` shows the familiar columns (READY, UP-TO-DATE, STATUS, PORT(S), ...).

use serde_json::{Value, json};

use crate::clock::parse_rfc3339;

/// Whether an `Accept` header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept.contains("as=Table")
}

/// Renders an age the way kubectl does (`45s`, `3m12s`, `5h`, `2d3h`).
pub fn human_age(secs: i64) -> String {
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86_400);
    match () {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 => format!("{m}m{}s", s % 60),
        _ if h < 3 => format!("{m}m"),
        _ if h < 8 => format!("{h}h{}m", m % 60),
        _ if h < 48 => format!("{h}h"),
        _ if d < 8 => format!("{d}d{}h", h % 24),
        _ => format!("{d}d"),
    }
}

fn col(name: &str, ty: &str, priority: i64) -> Value {
    let format = if name == "Name" { "name" } else { "" };
    json!({"name": name, "type": ty, "format": format, "description": "", "priority": priority})
}

fn int(o: &Value, p: &str) -> i64 {
    o.pointer(p).and_then(Value::as_i64).unwrap_or(0)
}

fn text<'a>(o: &'a Value, p: &str) -> &'a str {
    o.pointer(p).and_then(Value::as_str).unwrap_or_default()
}

fn columns(kind: &str) -> Vec<Value> {
    let names: &[(&str, &str)] = match kind {
        "Deployment" => &[
            ("Ready", "string"),
            ("Up-to-date", "integer"),
            ("Available", "integer"),
        ],
        "ReplicaSet" => &[
            ("Desired", "integer"),
            ("Current", "integer"),
            ("Ready", "integer"),
        ],
        "Pod" => &[
            ("Ready", "string"),
            ("Status", "string"),
            ("Restarts", "string"),
        ],
        "Service" => &[
            ("Type", "string"),
            ("Cluster-IP", "string"),
            ("External-IP", "string"),
            ("Port(s)", "string"),
        ],
        "Namespace" => &[("Status", "string")],
        "Endpoints" => &[("Endpoints", "string")],
        "ConfigMap" => &[("Data", "integer")],
        "Secret" => &[("Type", "string"), ("Data", "integer")],
        "HorizontalPodAutoscaler" => &[
            ("Reference", "string"),
            ("MinPods", "integer"),
            ("MaxPods", "integer"),
            ("Replicas", "integer"),
        ],
        "Lease" => &[("Holder", "string")],
        _ => &[],
    };
    let mut cols = vec![col("Name", "string", 0)];
    cols.extend(names.iter().map(|(n, t)| col(n, t, 0)));
    cols.push(col("Age", "string", 0));
    cols
}

fn cells(kind: &str, o: &Value) -> Vec<Value> {
    let mut c = vec![json!(text(o, "/metadata/name"))];
    match kind {
        "Deployment" => {
            c.push(json!(format!(
                "{}/{}",
                int(o, "/status/readyReplicas"),
                int(o, "/spec/replicas")
            )));
            c.push(json!(int(o, "/status/updatedReplicas")));
            c.push(json!(int(o, "/status/availableReplicas")));
        }
        "ReplicaSet" => {
            c.push(json!(int(o, "/spec/replicas")));
            c.push(json!(int(o, "/status/replicas")));
            c.push(json!(int(o, "/status/readyReplicas")));
        }
        "Pod" => {
            let statuses = o
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let total = o
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = statuses.iter().filter(|s| s["ready"] == true).count();
            let restarts: i64 = statuses
                .iter()
                .map(|s| s["restartCount"].as_i64().unwrap_or(0))
                .sum();
            let waiting = statuses
                .iter()
                .find_map(|s| s.pointer("/state/waiting/reason").and_then(Value::as_str));
            let status = if o.pointer("/metadata/deletionTimestamp").is_some() {
                "Terminating"
            } else {
                waiting.unwrap_or_else(|| {
                    o.pointer("/status/phase")
                        .and_then(Value::as_str)
                        .unwrap_or("Pending")
                })
            };
            c.push(json!(format!("{ready}/{total}")));
            c.push(json!(status));
            c.push(json!(restarts.to_string()));
        }
        "Service" => {
            let ports: Vec<String> = o
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|p| format!("{}/{}", p["port"], p["protocol"].as_str().unwrap_or("TCP")))
                .collect();
            c.push(json!(text(o, "/spec/type")));
            c.push(json!(
                o.pointer("/spec/clusterIP")
                    .and_then(Value::as_str)
                    .unwrap_or("None")
            ));
            c.push(json!("<none>"));
            c.push(json!(if ports.is_empty() {
                "<none>".to_string()
            } else {
                ports.join(",")
            }));
        }
        "Namespace" => c.push(json!(
            o.pointer("/status/phase")
                .and_then(Value::as_str)
                .unwrap_or("Active")
        )),
        "Endpoints" => {
            let mut eps = Vec::new();
            for ss in o
                .get("subsets")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                for a in ss
                    .get("addresses")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    for p in ss
                        .get("ports")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        eps.push(format!(
                            "{}:{}",
                            a["ip"].as_str().unwrap_or_default(),
                            p["port"]
                        ));
                    }
                }
            }
            c.push(json!(if eps.is_empty() {
                "<none>".to_string()
            } else {
                eps.join(",")
            }));
        }
        "ConfigMap" => {
            let n = ["data", "binaryData"]
                .iter()
                .filter_map(|f| o.get(f).and_then(Value::as_object))
                .map(|m| m.len())
                .sum::<usize>();
            c.push(json!(n));
        }
        "Secret" => {
            c.push(json!(text(o, "/type")));
            c.push(json!(
                o.get("data")
                    .and_then(Value::as_object)
                    .map_or(0, |m| m.len())
            ));
        }
        "HorizontalPodAutoscaler" => {
            c.push(json!(format!(
                "{}/{}",
                text(o, "/spec/scaleTargetRef/kind"),
                text(o, "/spec/scaleTargetRef/name")
            )));
            c.push(json!(int(o, "/spec/minReplicas").max(1)));
            c.push(json!(int(o, "/spec/maxReplicas")));
            c.push(json!(int(o, "/status/currentReplicas")));
        }
        "Lease" => c.push(json!(text(o, "/spec/holderIdentity"))),
        _ => {}
    }
    c
}

/// A Table of `items` (all of `kind`) at `now_ms`.
pub fn table(
    kind: &str,
    items: &[&Value],
    resource_version: &str,
    continue_token: Option<&str>,
    now_ms: i64,
) -> Value {
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let mut cells = cells(kind, o);
            let created = parse_rfc3339(text(o, "/metadata/creationTimestamp")).unwrap_or(now_ms);
            cells.push(json!(human_age((now_ms - created) / 1000)));
            let mut meta = o.get("metadata").cloned().unwrap_or(json!({}));
            if let Some(m) = meta.as_object_mut() {
                m.remove("managedFields");
            }
            json!({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta}})
        })
        .collect();
    let mut metadata = json!({"resourceVersion": resource_version});
    if let Some(c) = continue_token {
        metadata["continue"] = json!(c);
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "columnDefinitions": columns(kind), "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_render_like_kubectl() {
        assert_eq!(human_age(45), "45s");
        assert_eq!(human_age(192), "3m12s");
        assert_eq!(human_age(3600 * 5 + 60 * 7), "5h7m");
        assert_eq!(human_age(86_400 * 2 + 3600 * 3), "2d3h");
    }

    #[test]
    fn deployment_and_pod_rows_have_the_usual_columns() {
        let d = json!({"metadata": {"name": "web", "creationTimestamp": "2025-01-01T00:00:00Z"},
            "spec": {"replicas": 3}, "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        let now = parse_rfc3339("2025-01-01T00:00:30Z").unwrap();
        let t = table("Deployment", &[&d], "7", None, now);
        assert_eq!(t["rows"][0]["cells"], json!(["web", "2/3", 3, 2, "30s"]));
        assert_eq!(t["columnDefinitions"].as_array().unwrap().len(), 5);
        let p = json!({"metadata": {"name": "p"}, "spec": {"containers": [{}]},
            "status": {"phase": "Running", "containerStatuses": [{"ready": false, "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        let t = table("Pod", &[&p], "7", None, now);
        assert_eq!(
            t["rows"][0]["cells"].as_array().unwrap()[1..4],
            [json!("0/1"), json!("CrashLoopBackOff"), json!("4")]
        );
    }
}
