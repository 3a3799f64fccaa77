//! The Deployment controller's arithmetic, pure: surge and unavailability fenceposts,
//! how far to scale the new and old ReplicaSets in one step, and the status with its
//! `Progressing` / `Available` conditions. Follows kube-controller-manager's
//! `deployment/util` and `rolling.go`.

use serde_json::{Value, json};

/// Resolves an int-or-percent against `total`: percentages round up for surge and down
/// for unavailability, as the real controller does.
pub fn int_or_percent(v: Option<&Value>, total: i64, round_up: bool, default_pct: i64) -> i64 {
    let pct = |p: i64| {
        if round_up {
            (p * total + 99) / 100
        } else {
            p * total / 100
        }
    };
    match v {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => match s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
            Some(p) => pct(p),
            None => s.parse().unwrap_or(0),
        },
        _ => pct(default_pct),
    }
}

/// `(maxSurge, maxUnavailable)`; both zero is not allowed, so unavailability becomes 1.
pub fn fenceposts(strategy: Option<&Value>, desired: i64) -> (i64, i64) {
    let ru = strategy.and_then(|s| s.get("rollingUpdate"));
    let surge = int_or_percent(ru.and_then(|r| r.get("maxSurge")), desired, true, 25);
    let unavailable = int_or_percent(ru.and_then(|r| r.get("maxUnavailable")), desired, false, 25);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable.min(desired))
    }
}

/// A ReplicaSet as the rollout sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rs {
    /// Name.
    pub name: String,
    /// `spec.replicas` (the value being decided).
    pub spec: i64,
    /// `status.replicas`: pods that exist.
    pub pods: i64,
    /// `status.readyReplicas`.
    pub ready: i64,
    /// `status.availableReplicas`.
    pub available: i64,
}

/// One rolling-update step: returns the new `spec.replicas` for the new ReplicaSet and
/// for each old one (oldest first, as given).
pub fn rolling_step(
    desired: i64,
    surge: i64,
    unavailable: i64,
    new: &Rs,
    old: &[Rs],
) -> (i64, Vec<i64>) {
    let mut new_spec = new.spec;
    let mut old_spec: Vec<i64> = old.iter().map(|r| r.spec).collect();
    if old_spec.iter().all(|s| *s == 0) {
        // Nothing to replace: a plain scale.
        return (desired, old_spec);
    }
    // Scale up the new ReplicaSet within the surge allowance.
    let total: i64 = new_spec + old_spec.iter().sum::<i64>();
    let max_total = desired + surge;
    if new_spec < desired && total < max_total {
        new_spec += (max_total - total).min(desired - new_spec);
    } else if new_spec > desired {
        new_spec = desired;
    }
    // Scale down old ReplicaSets within the unavailability allowance.
    let min_available = desired - unavailable;
    let all_spec: i64 = new_spec + old_spec.iter().sum::<i64>();
    let new_unavailable = new_spec - new.available;
    let mut budget = all_spec - min_available - new_unavailable;
    if budget <= 0 {
        return (new_spec, old_spec);
    }
    // First old pods that are not available anyway: removing them costs nothing.
    for (i, r) in old.iter().enumerate() {
        if budget <= 0 {
            break;
        }
        let unhealthy = (old_spec[i] - r.available).max(0);
        let cut = unhealthy.min(budget);
        old_spec[i] -= cut;
        budget -= cut;
    }
    // Then available ones, as long as enough stay available overall.
    let available: i64 = new.available + old.iter().map(|r| r.available).sum::<i64>();
    let mut can_remove = (available - min_available).max(0);
    for (i, r) in old.iter().enumerate() {
        if can_remove <= 0 {
            break;
        }
        let cut = old_spec[i].min(can_remove).min(r.available);
        old_spec[i] -= cut;
        can_remove -= cut;
    }
    (new_spec, old_spec)
}

/// Inputs to the status computation.
#[derive(Debug, Clone)]
pub struct StatusInput<'a> {
    /// `metadata.generation`.
    pub generation: i64,
    /// `spec.replicas`.
    pub desired: i64,
    /// maxUnavailable, resolved.
    pub max_unavailable: i64,
    /// `spec.progressDeadlineSeconds`.
    pub progress_deadline_s: i64,
    /// The new ReplicaSet.
    pub new: &'a Rs,
    /// The old ReplicaSets.
    pub old: &'a [Rs],
    /// Whether the new ReplicaSet was created in this step.
    pub created_new: bool,
    /// The previous status.
    pub previous: Option<&'a Value>,
    /// Now, as wall-clock epoch ms.
    pub now_ms: i64,
    /// Simulated seconds per real second, to turn timestamp differences into simulated time.
    pub scale: f64,
    /// Now, RFC 3339.
    pub now: &'a str,
}

fn condition(
    prev: Option<&Value>,
    ty: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &str,
    touch: bool,
) -> Value {
    let old = prev
        .and_then(|p| p.get("conditions"))
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some(ty))
        });
    let same_status = old.is_some_and(|c| c.get("status").and_then(Value::as_str) == Some(status));
    let same =
        same_status && old.is_some_and(|c| c.get("reason").and_then(Value::as_str) == Some(reason));
    let transition = if same_status {
        old.and_then(|c| c.get("lastTransitionTime")).cloned()
    } else {
        None
    };
    let update = if same && !touch {
        old.and_then(|c| c.get("lastUpdateTime")).cloned()
    } else {
        None
    };
    json!({
        "type": ty, "status": status, "reason": reason, "message": message,
        "lastUpdateTime": update.unwrap_or_else(|| json!(now)),
        "lastTransitionTime": transition.unwrap_or_else(|| json!(now)),
    })
}

/// The Deployment status after a step.
pub fn status(i: &StatusInput<'_>) -> Value {
    let all = std::iter::once(i.new).chain(i.old.iter());
    let (mut replicas, mut ready, mut available, mut spec_total) = (0, 0, 0, 0);
    for r in all {
        replicas += r.pods;
        ready += r.ready;
        available += r.available;
        spec_total += r.spec;
    }
    let updated = i.new.pods;
    let prev_num = |f: &str| {
        i.previous
            .and_then(|p| p.get(f))
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };

    let available_cond = if available >= i.desired - i.max_unavailable {
        condition(
            i.previous,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            i.now,
            false,
        )
    } else {
        condition(
            i.previous,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            i.now,
            false,
        )
    };

    let name = &i.new.name;
    let complete = updated == i.desired && replicas == i.desired && available == i.desired;
    let prev_old = prev_num("replicas") - prev_num("updatedReplicas");
    let progressed = updated > prev_num("updatedReplicas")
        || (replicas - updated) < prev_old
        || ready > prev_num("readyReplicas")
        || available > prev_num("availableReplicas");
    let prev_progressing = i
        .previous
        .and_then(|p| p.get("conditions"))
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Progressing"))
        .cloned();
    let progressing = if complete {
        condition(
            i.previous,
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            &format!("ReplicaSet \"{name}\" has successfully progressed."),
            i.now,
            false,
        )
    } else if i.created_new {
        condition(
            i.previous,
            "Progressing",
            "True",
            "NewReplicaSetCreated",
            &format!("Created new replica set \"{name}\""),
            i.now,
            true,
        )
    } else if let Some(p) = prev_progressing.filter(|_| !progressed) {
        let last = p
            .get("lastUpdateTime")
            .and_then(Value::as_str)
            .and_then(crate::clock::parse_rfc3339)
            .unwrap_or(i.now_ms);
        let timed_out = p["reason"] == "ProgressDeadlineExceeded"
            || ((i.now_ms - last) as f64 * i.scale) as i64 > i.progress_deadline_s * 1000;
        if timed_out {
            condition(
                i.previous,
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                &format!("ReplicaSet \"{name}\" has timed out progressing."),
                i.now,
                false,
            )
        } else if p["reason"] == "NewReplicaSetAvailable" {
            // The template changed to an existing ReplicaSet (or the deployment scaled): progressing again.
            condition(
                i.previous,
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                &format!("ReplicaSet \"{name}\" is progressing."),
                i.now,
                true,
            )
        } else {
            p
        }
    } else {
        condition(
            i.previous,
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            &format!("ReplicaSet \"{name}\" is progressing."),
            i.now,
            true,
        )
    };

    let mut st = json!({
        "observedGeneration": i.generation,
        "replicas": replicas,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "conditions": [available_cond, progressing],
    });
    let unavailable = (spec_total - available).max(0);
    if unavailable > 0 {
        st["unavailableReplicas"] = json!(unavailable);
    }
    // The real API omits zero counts.
    for f in [
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
    ] {
        if st[f] == json!(0) {
            st.as_object_mut().map(|m| m.remove(f));
        }
    }
    st
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(name: &str, spec: i64, available: i64) -> Rs {
        Rs {
            name: name.into(),
            spec,
            pods: spec,
            ready: available,
            available,
        }
    }

    #[test]
    fn fenceposts_round_like_the_controller() {
        assert_eq!(fenceposts(None, 4), (1, 1));
        assert_eq!(fenceposts(None, 3), (1, 0));
        assert_eq!(
            fenceposts(
                Some(&json!({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}})),
                3
            ),
            (0, 1)
        );
        assert_eq!(
            fenceposts(
                Some(&json!({"rollingUpdate": {"maxSurge": "50%", "maxUnavailable": 2}})),
                3
            ),
            (2, 2)
        );
    }

    #[test]
    fn rolling_update_surges_then_replaces_available_pods() {
        // 4 desired, surge 1, unavailable 1: start with new=0, old=4 all available.
        let (n, o) = rolling_step(4, 1, 1, &rs("new", 0, 0), &[rs("old", 4, 4)]);
        assert_eq!((n, o.clone()), (1, vec![3]));
        // New pod not yet available: nothing more can go.
        let (n, o) = rolling_step(4, 1, 1, &rs("new", 1, 0), &[rs("old", 3, 3)]);
        assert_eq!((n, o), (2, vec![3]));
        // Everything new is available: old scaled to zero.
        let (n, o) = rolling_step(4, 1, 1, &rs("new", 4, 4), &[rs("old", 1, 1)]);
        assert_eq!((n, o), (4, vec![0]));
        // No old pods at all: a plain scale.
        assert_eq!(
            rolling_step(6, 1, 1, &rs("new", 4, 4), &[rs("old", 0, 0)]).0,
            6
        );
    }

    #[test]
    fn status_reports_progress_and_deadline() {
        let new = rs("web-abc", 2, 2);
        let now = "2025-01-01T00:10:00Z";
        let input = |prev: Option<&'static Value>, new: &'static Rs, now_ms: i64| StatusInput {
            generation: 3,
            desired: 2,
            max_unavailable: 0,
            progress_deadline_s: 60,
            new,
            old: &[],
            created_new: false,
            previous: prev,
            now_ms,
            now,
            scale: 1.0,
        };
        let new: &'static Rs = Box::leak(Box::new(new));
        let st = status(&input(None, new, 0));
        assert_eq!(st["observedGeneration"], 3);
        assert_eq!(st["conditions"][1]["reason"], "NewReplicaSetAvailable");
        assert_eq!(st["conditions"][0]["status"], "True");

        let stuck: &'static Rs = Box::leak(Box::new(Rs {
            name: "web-abc".into(),
            spec: 2,
            pods: 2,
            ready: 0,
            available: 0,
        }));
        let prev: &'static Value = Box::leak(Box::new(
            json!({"replicas": 2, "updatedReplicas": 2, "conditions": [
            {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated", "lastUpdateTime": "2025-01-01T00:00:00Z", "lastTransitionTime": "2025-01-01T00:00:00Z"}]}),
        ));
        let t0 = crate::clock::parse_rfc3339("2025-01-01T00:00:00Z").unwrap();
        let st = status(&input(Some(prev), stuck, t0 + 30_000));
        assert_eq!(st["conditions"][1]["reason"], "ReplicaSetUpdated");
        assert_eq!(st["conditions"][0]["reason"], "MinimumReplicasUnavailable");
        let st = status(&input(Some(prev), stuck, t0 + 61_000));
        assert_eq!(st["conditions"][1]["reason"], "ProgressDeadlineExceeded");
        assert_eq!(st["conditions"][1]["status"], "False");
        assert_eq!(
            st["conditions"][1]["message"],
            "ReplicaSet \"web-abc\" has timed out progressing."
        );
    }
}
