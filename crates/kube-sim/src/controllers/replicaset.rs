//! The ReplicaSet controller: creates and deletes Pods to match `spec.replicas`
//! (not-ready and newest Pods go first) and reports ready and available counts.

use serde_json::{Value, json};

use super::{CONTROLLER_MANAGER, Wake, meta, owned_by, put_status, write_logged};
use crate::resources::ids;
use crate::store::Inner;
use crate::writes::{self, Change};

/// Whether a Pod's `Ready` condition is true, and since when (simulated epoch ms).
pub fn pod_ready_since(pod: &Value) -> Option<i64> {
    let c = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c["type"] == "Ready" && c["status"] == "True")?;
    Some(
        c.get("lastTransitionTime")
            .and_then(Value::as_str)
            .and_then(crate::clock::parse_rfc3339)
            .unwrap_or(0),
    )
}

/// One pass over every ReplicaSet.
pub fn reconcile(s: &mut Inner, wake: &mut Wake) {
    let sets: Vec<std::sync::Arc<Value>> = s.list(*ids::REPLICASET, None).cloned().collect();
    for rs in sets {
        if rs.pointer("/metadata/deletionTimestamp").is_none() {
            reconcile_one(s, &rs, wake);
        }
    }
}

fn reconcile_one(s: &mut Inner, rs: &Value, wake: &mut Wake) {
    let ns = meta(rs, "namespace").to_string();
    let name = meta(rs, "name").to_string();
    let uid = meta(rs, "uid").to_string();
    let want = rs
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
        .max(0) as usize;
    let mut pods: Vec<std::sync::Arc<Value>> = s
        .list(*ids::POD, Some(&ns))
        .filter(|p| owned_by(p, &uid) && p.pointer("/metadata/deletionTimestamp").is_none())
        .cloned()
        .collect();

    if pods.len() < want {
        for _ in pods.len()..want {
            let pod_name = format!("{name}-{}", s.random_suffix());
            let tpl = rs.pointer("/spec/template").cloned().unwrap_or(json!({}));
            let mut metadata = tpl.get("metadata").cloned().unwrap_or(json!({}));
            metadata["name"] = json!(pod_name);
            metadata["namespace"] = json!(ns);
            metadata["generateName"] = json!(format!("{name}-"));
            metadata["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true}]);
            let mut spec = tpl.get("spec").cloned().unwrap_or(json!({}));
            spec["nodeName"] = json!("kube-sim-node");
            let body =
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec});
            write_logged(
                s,
                *ids::POD,
                &ns,
                "",
                Change::Create(body),
                CONTROLLER_MANAGER,
                "",
            );
            if let Some(p) = s.get(*ids::POD, &ns, &pod_name) {
                pods.push(p);
            }
        }
    } else if pods.len() > want {
        // Delete not-ready Pods first, then the newest.
        pods.sort_by(|a, b| {
            let ra = pod_ready_since(a).is_some();
            let rb = pod_ready_since(b).is_some();
            ra.cmp(&rb)
                .then(meta(b, "creationTimestamp").cmp(meta(a, "creationTimestamp")))
        });
        let excess = pods.len() - want;
        for p in pods.drain(..excess) {
            let _ = writes::delete(s, *ids::POD, &ns, meta(&p, "name"), &Default::default());
        }
    }

    let min_ready_ms = rs
        .pointer("/spec/minReadySeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        * 1000;
    let ready: Vec<i64> = pods.iter().filter_map(|p| pod_ready_since(p)).collect();
    let min_ready = std::time::Duration::from_millis(min_ready_ms.max(0) as u64);
    let mut available = 0;
    for since in &ready {
        let ready_for = s.clock.sim_since(*since);
        if ready_for >= min_ready {
            available += 1;
        } else {
            wake.at(min_ready - ready_for);
        }
    }
    let mut status = json!({
        "replicas": pods.len(),
        "fullyLabeledReplicas": pods.len(),
        "readyReplicas": ready.len(),
        "availableReplicas": available,
        "observedGeneration": rs.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
    });
    for f in ["fullyLabeledReplicas", "readyReplicas", "availableReplicas"] {
        if status[f] == json!(0) {
            status.as_object_mut().map(|m| m.remove(f));
        }
    }
    if let Some(fresh) = s.get(*ids::REPLICASET, &ns, &name) {
        put_status(s, *ids::REPLICASET, &fresh, status, CONTROLLER_MANAGER);
    }
}
