//! The kubelet stand-in: gives every Pod an IP and a status that follows its images'
//! scripted behaviour (ready after a delay, never ready, crash-looping, failing to
//! pull, flapping), measured in simulated time from the Pod's creation.

use serde_json::{Value, json};

use super::{Wake, meta, put_status};
use crate::behaviour::{ImageRules, container_view, next_change};
use crate::clock::parse_rfc3339;
use crate::resources::ids;
use crate::store::Inner;
use crate::writes::POD_SHUTDOWN;

/// Field manager the kubelet writes Pod status with.
pub const KUBELET: &str = "kubelet";

/// One pass over every Pod.
pub fn reconcile(s: &mut Inner, images: &ImageRules, wake: &mut Wake) {
    let pods: Vec<std::sync::Arc<Value>> = s.list(*ids::POD, None).cloned().collect();
    let now = s.clock.now();
    let now_s = s.clock.format(now);
    let clock = s.clock.clone();
    for pod in pods {
        if let Some(ts) = pod
            .pointer("/metadata/deletionTimestamp")
            .and_then(Value::as_str)
        {
            finish_termination(s, &pod, parse_rfc3339(ts).unwrap_or(now), wake);
            continue;
        }
        let created = parse_rfc3339(meta(&pod, "creationTimestamp")).unwrap_or(now);
        let elapsed = clock.sim_since(created);
        let name = meta(&pod, "name").to_string();
        let mut statuses = Vec::new();
        let mut events = vec![super::pod_events::scheduled(&pod)];
        let pod_display = format!("{name}_{}({})", meta(&pod, "namespace"), meta(&pod, "uid"));
        let (mut all_ready, mut all_pulled) = (true, true);
        for c in pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let cname = c.get("name").and_then(Value::as_str).unwrap_or_default();
            let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
            let b = images.behavior_of(image);
            if let Some(d) = next_change(&b, elapsed) {
                wake.at(d);
            }
            events.extend(super::pod_events::container_events(
                &b,
                elapsed,
                c,
                &pod_display,
            ));
            let v = container_view(&b, elapsed, cname, &name, |d| {
                clock.format(created + clock.to_real(d).as_millis() as i64)
            });
            // Without a readiness probe the kubelet counts a running container as ready,
            // so a crash-looping one is ready for each short run (which, as on a real
            // cluster, keeps resetting its Deployment's progress deadline).
            let ready = v.ready
                || (matches!(b, crate::behaviour::ImageBehavior::CrashLoop { .. })
                    && v.running
                    && c.get("readinessProbe").is_none());
            all_ready &= ready;
            all_pulled &= v.pulled;
            let digest = format!(
                "{}@sha256:{:064x}",
                image.split('@').next().unwrap_or(image),
                image.len()
            );
            statuses.push(json!({
                "name": cname, "image": image, "imageID": if v.pulled { digest } else { String::new() },
                "ready": ready, "started": v.running, "restartCount": v.restarts,
                "state": v.state, "lastState": v.last_state,
                "containerID": if v.pulled { format!("containerd://{:064x}", created) } else { String::new() },
            }));
        }
        let ip = match pod.pointer("/status/podIP").and_then(Value::as_str) {
            Some(ip) => ip.to_string(),
            None => {
                let n = s.next_counter();
                format!("10.244.{}.{}", (n / 250) % 250, n % 250 + 1)
            }
        };
        let prev = pod.get("status");
        let cond = |ty: &str, ok: bool| {
            let status = if ok { "True" } else { "False" };
            let old = prev
                .and_then(|p| p.get("conditions"))
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| c["type"] == ty && c["status"] == status));
            let since = old
                .and_then(|c| c.get("lastTransitionTime"))
                .cloned()
                .unwrap_or(json!(now_s));
            let mut c = json!({"type": ty, "status": status, "lastProbeTime": null, "lastTransitionTime": since});
            if !ok && (ty == "Ready" || ty == "ContainersReady") {
                c["reason"] = json!("ContainersNotReady");
            }
            c
        };
        // Crash-looping pods stay Running between restarts; unpulled images keep a pod Pending.
        let phase = if all_pulled { "Running" } else { "Pending" };
        let created_s = clock.format(created);
        let status = json!({
            "phase": phase,
            "conditions": [
                cond("PodReadyToStartContainers", true),
                cond("Initialized", true),
                cond("Ready", all_ready),
                cond("ContainersReady", all_ready),
                cond("PodScheduled", true),
            ],
            "hostIP": "10.0.0.10", "hostIPs": [{"ip": "10.0.0.10"}],
            "podIP": ip, "podIPs": [{"ip": ip}],
            "startTime": created_s,
            "qosClass": "BestEffort",
            "containerStatuses": statuses,
        });
        put_status(s, *ids::POD, &pod, status, KUBELET);
        super::pod_events::record(s, &clock, &pod, created, &events);
    }
}

// A terminating Pod's containers stop after `POD_SHUTDOWN` (or its grace period, if
// shorter); then the Pod object goes, unless finalizers still hold it.
fn finish_termination(s: &mut Inner, pod: &Value, since: i64, wake: &mut Wake) {
    let grace = pod
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        .max(0);
    let stop_after = POD_SHUTDOWN.min(std::time::Duration::from_secs(grace as u64));
    let elapsed = s.clock.sim_since(since);
    if elapsed < stop_after {
        wake.at(stop_after - elapsed);
        return;
    }
    let (ns, name) = (
        meta(pod, "namespace").to_string(),
        meta(pod, "name").to_string(),
    );
    let held = pod
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    if !held {
        s.remove(*ids::POD, &ns, &name);
    } else if grace > 0 {
        // Stopped, but held by finalizers: removing the last one deletes it.
        let mut done = pod.clone();
        done["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        s.put(*ids::POD, done);
    }
}
