//! The Deployment controller: one ReplicaSet per pod-template hash, rolling updates
//! and Recreate, revision history, and the status kubectl's rollout status reads.

use serde_json::{Value, json};

use super::{CONTROLLER_MANAGER, Wake, meta, owned_by, put_status, write_logged};
use crate::resources::ids;
use crate::rollout::{self, Rs};
use crate::store::Inner;
use crate::writes::{Change, PatchType};

const REVISION: &str = "deployment.kubernetes.io/revision";
const HASH_LABEL: &str = "pod-template-hash";

/// The `pod-template-hash` of a template: FNV-1a of its JSON, rendered in the
/// controller's safe alphabet.
pub fn template_hash(template: &Value) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in template.to_string().bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string()
        .bytes()
        .map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char)
        .collect()
}

fn rs_view(o: &Value) -> Rs {
    let n = |p: &str| o.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    Rs {
        name: meta(o, "name").to_string(),
        spec: n("/spec/replicas"),
        pods: n("/status/replicas"),
        ready: n("/status/readyReplicas"),
        available: n("/status/availableReplicas"),
    }
}

fn revision(o: &Value) -> i64 {
    o.pointer("/metadata/annotations")
        .and_then(|a| a.get(REVISION))
        .and_then(Value::as_str)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// One pass over every Deployment.
pub fn reconcile(s: &mut Inner, wake: &mut Wake) {
    let deployments: Vec<std::sync::Arc<Value>> = s.list(*ids::DEPLOYMENT, None).cloned().collect();
    for d in deployments {
        if d.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        reconcile_one(s, &d, wake);
    }
}

fn reconcile_one(s: &mut Inner, d: &Value, wake: &mut Wake) {
    let ns = meta(d, "namespace").to_string();
    let name = meta(d, "name").to_string();
    let uid = meta(d, "uid").to_string();
    let desired = d
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let template = d.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let hash = template_hash(&template);

    let mut owned: Vec<std::sync::Arc<Value>> = s
        .list(*ids::REPLICASET, Some(&ns))
        .filter(|r| owned_by(r, &uid))
        .cloned()
        .collect();
    owned.sort_by(|a, b| {
        meta(a, "creationTimestamp")
            .cmp(meta(b, "creationTimestamp"))
            .then(revision(a).cmp(&revision(b)))
    });
    let max_rev = owned.iter().map(|r| revision(r)).max().unwrap_or(0);
    let new_pos = owned.iter().position(|r| {
        r.pointer("/metadata/labels")
            .and_then(|l| l.get(HASH_LABEL))
            .and_then(Value::as_str)
            == Some(&hash)
    });

    let mut created_new = false;
    let new_rs = match new_pos {
        Some(i) => {
            let rs = owned.remove(i);
            if revision(&rs) < max_rev {
                // Rolling back to an older template makes its ReplicaSet the newest revision.
                let patch =
                    json!({"metadata": {"annotations": {REVISION: (max_rev + 1).to_string()}}});
                write_logged(
                    s,
                    *ids::REPLICASET,
                    &ns,
                    meta(&rs, "name"),
                    Change::Patch(PatchType::Merge, patch),
                    CONTROLLER_MANAGER,
                    "",
                );
            }
            rs
        }
        None => {
            created_new = true;
            let rs_name = format!("{name}-{hash}");
            let mut tpl = template.clone();
            tpl["metadata"]["labels"][HASH_LABEL] = json!(hash);
            let mut selector = d.pointer("/spec/selector").cloned().unwrap_or(json!({}));
            selector["matchLabels"][HASH_LABEL] = json!(hash);
            let recreate = d.pointer("/spec/strategy/type") == Some(&json!("Recreate"));
            let no_old_pods = owned
                .iter()
                .all(|r| rs_view(r).spec == 0 && rs_view(r).pods == 0);
            let initial = if !recreate && no_old_pods { desired } else { 0 };
            let body = json!({
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {
                    "name": rs_name, "namespace": ns,
                    "labels": tpl["metadata"]["labels"].clone(),
                    "annotations": {REVISION: (max_rev + 1).to_string(), "deployment.kubernetes.io/desired-replicas": desired.to_string()},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true}]
                },
                "spec": {"replicas": initial, "minReadySeconds": d.pointer("/spec/minReadySeconds").cloned().unwrap_or(json!(0)), "selector": selector, "template": tpl}
            });
            write_logged(
                s,
                *ids::REPLICASET,
                &ns,
                "",
                Change::Create(body),
                CONTROLLER_MANAGER,
                "",
            );
            match s.get(*ids::REPLICASET, &ns, &rs_name) {
                Some(rs) => rs,
                None => return,
            }
        }
    };

    // The Deployment carries its current revision, as kubectl rollout undo expects.
    let new_revision = s
        .get(*ids::REPLICASET, &ns, meta(&new_rs, "name"))
        .map(|r| revision(&r))
        .unwrap_or(max_rev + 1)
        .to_string();
    let current = d
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(REVISION))
        .and_then(Value::as_str);
    if current != Some(new_revision.as_str()) {
        let patch = json!({"metadata": {"annotations": {REVISION: new_revision}}});
        write_logged(
            s,
            *ids::DEPLOYMENT,
            &ns,
            &name,
            Change::Patch(PatchType::Merge, patch),
            CONTROLLER_MANAGER,
            "",
        );
    }

    let strategy = d.pointer("/spec/strategy");
    let (surge, unavailable) = rollout::fenceposts(strategy, desired);
    let new_view = rs_view(&new_rs);
    let old_views: Vec<Rs> = owned.iter().map(|r| rs_view(r)).collect();
    let paused = d.pointer("/spec/paused") == Some(&json!(true));
    let (new_spec, old_specs) = if paused {
        (new_view.spec, old_views.iter().map(|r| r.spec).collect())
    } else if strategy.and_then(|s| s.get("type")) == Some(&json!("Recreate")) {
        let old_gone = old_views.iter().all(|r| r.pods == 0);
        (if old_gone { desired } else { 0 }, vec![0; old_views.len()])
    } else {
        rollout::rolling_step(desired, surge, unavailable, &new_view, &old_views)
    };
    let scale = |s: &mut Inner, rs: &Value, to: i64| {
        if rs_view(rs).spec != to {
            let patch = json!({"spec": {"replicas": to}, "metadata": {"annotations": {"deployment.kubernetes.io/desired-replicas": desired.to_string()}}});
            write_logged(
                s,
                *ids::REPLICASET,
                meta(rs, "namespace"),
                meta(rs, "name"),
                Change::Patch(PatchType::Merge, patch),
                CONTROLLER_MANAGER,
                "",
            );
        }
    };
    for (rs, to) in owned.iter().zip(&old_specs) {
        scale(s, rs, *to);
    }
    scale(s, &new_rs, new_spec);

    // Old ReplicaSets beyond revisionHistoryLimit, scaled to zero, are deleted.
    let limit = d
        .pointer("/spec/revisionHistoryLimit")
        .and_then(Value::as_i64)
        .unwrap_or(10)
        .max(0) as usize;
    let idle: Vec<&std::sync::Arc<Value>> = owned
        .iter()
        .zip(&old_specs)
        .filter(|(r, to)| **to == 0 && rs_view(r).pods == 0)
        .map(|(r, _)| r)
        .collect();
    if idle.len() > limit {
        for rs in &idle[..idle.len() - limit] {
            let _ = crate::writes::delete(
                s,
                *ids::REPLICASET,
                &ns,
                meta(rs, "name"),
                &Default::default(),
            );
        }
    }

    let now = s.clock.now_rfc3339();
    let now_ms = s.clock.now();
    let new_now = Rs {
        spec: new_spec,
        ..new_view
    };
    let old_now: Vec<Rs> = old_views
        .into_iter()
        .zip(&old_specs)
        .map(|(r, to)| Rs { spec: *to, ..r })
        .collect();
    let mut status = rollout::status(&rollout::StatusInput {
        generation: d
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1),
        desired,
        // The real MaxUnavailable is zero for anything but RollingUpdate.
        max_unavailable: if strategy.and_then(|s| s.get("type")) == Some(&json!("Recreate")) {
            0
        } else {
            unavailable
        },
        progress_deadline_s: d
            .pointer("/spec/progressDeadlineSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(600),
        new: &new_now,
        old: &old_now,
        created_new,
        previous: d.get("status"),
        now_ms,
        scale: s.clock.scale(),
        now: &now,
    });
    if paused {
        // A paused rollout never times out.
        if let Some(c) = status["conditions"]
            .as_array_mut()
            .and_then(|cs| cs.iter_mut().find(|c| c["type"] == "Progressing"))
            && c["reason"] != "NewReplicaSetAvailable"
        {
            *c = json!({"type": "Progressing", "status": "Unknown", "reason": "DeploymentPaused", "message": "Deployment is paused", "lastUpdateTime": now, "lastTransitionTime": now});
        }
    }
    // A rollout that has not finished times out by itself: wake up when it would.
    let progressing = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Progressing"));
    if let Some(c) = progressing.filter(|c| {
        matches!(
            c["reason"].as_str(),
            Some("ReplicaSetUpdated" | "NewReplicaSetCreated")
        )
    }) {
        let last = c["lastUpdateTime"]
            .as_str()
            .and_then(crate::clock::parse_rfc3339)
            .unwrap_or(now_ms);
        let deadline = std::time::Duration::from_secs(
            d.pointer("/spec/progressDeadlineSeconds")
                .and_then(Value::as_u64)
                .unwrap_or(600),
        );
        wake.at(
            deadline.saturating_sub(s.clock.sim_since(last)) + std::time::Duration::from_millis(1)
        );
    }
    if let Some(fresh) = s.get(*ids::DEPLOYMENT, &ns, &name) {
        put_status(s, *ids::DEPLOYMENT, &fresh, status, CONTROLLER_MANAGER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_hash_is_stable_and_template_sensitive() {
        let a = json!({"spec": {"containers": [{"name": "web", "image": "nginx:1"}]}});
        let b = json!({"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}});
        assert_eq!(template_hash(&a), template_hash(&a.clone()));
        assert_ne!(template_hash(&a), template_hash(&b));
        assert!(
            template_hash(&a)
                .bytes()
                .all(|c| b"bcdfghjklmnpqrstvwxz2456789".contains(&c))
        );
    }
}
