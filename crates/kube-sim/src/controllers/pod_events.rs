//! The Events the kubelet stand-in records for its Pods, as the real kubelet does:
//! `Scheduled`, `Pulled`, `Created`, `Started`, and the failures the scripted behaviours
//! produce (`BackOff` for crash loops, `Failed` and `BackOff` for unpullable images,
//! `Unhealthy` for failing readiness probes). Repeats are aggregated into one core/v1
//! Event with a growing `count` and `lastTimestamp`. Like container states, the list is
//! a pure function of the behaviour and the simulated time since the Pod was created.

use std::time::Duration;

use serde_json::{Value, json};

use super::{CONTROLLER_MANAGER, meta, write_logged};
use crate::behaviour::ImageBehavior;
use crate::clock::SimClock;
use crate::resources::ids;
use crate::store::Inner;
use crate::writes::Change;

/// The one node pods run on.
pub const NODE: &str = "kube-sim-node";

/// One aggregated Event about a Pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodEvent {
    /// `Scheduled`, `Pulled`, `BackOff`, `Unhealthy`, ...
    pub reason: &'static str,
    /// `Warning` rather than `Normal`.
    pub warning: bool,
    /// The message.
    pub message: String,
    /// `spec.containers{NAME}` for container events, empty for the Pod itself.
    pub field_path: String,
    /// Simulated time after Pod creation of the first occurrence.
    pub first: Duration,
    /// ... and of the latest.
    pub last: Duration,
    /// Occurrences so far.
    pub count: u64,
}

fn ev(
    reason: &'static str,
    warning: bool,
    message: String,
    path: &str,
    times: &[Duration],
) -> Option<PodEvent> {
    Some(PodEvent {
        reason,
        warning,
        message,
        field_path: path.to_string(),
        first: *times.first()?,
        last: *times.last()?,
        count: times.len() as u64,
    })
}

// Occurrences every `period` from `from` up to `elapsed`.
fn every(from: Duration, period: Duration, elapsed: Duration) -> Vec<Duration> {
    if elapsed < from {
        return Vec::new();
    }
    let period = period.max(Duration::from_secs(1));
    let n = ((elapsed - from).as_millis() / period.as_millis()).min(100_000) as u32 + 1;
    (0..n).map(|k| from + period * k).collect()
}

/// The Events of one container running `b`, `elapsed` after its Pod was created.
/// `pod_display` is the kubelet's `NAME_NAMESPACE(UID)`.
pub fn container_events(
    b: &ImageBehavior,
    elapsed: Duration,
    container: &Value,
    pod_display: &str,
) -> Vec<PodEvent> {
    let name = container
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let image = container
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let path = format!("spec.containers{{{name}}}");
    let probe = container.get("readinessProbe");
    let probe_period = Duration::from_secs(
        probe
            .and_then(|p| p.get("periodSeconds"))
            .and_then(Value::as_u64)
            .unwrap_or(10),
    );
    let probe_delay = Duration::from_secs(
        probe
            .and_then(|p| p.get("initialDelaySeconds"))
            .and_then(Value::as_u64)
            .unwrap_or(0),
    );
    let probe_failure = if probe.is_some_and(|p| p.get("httpGet").is_some()) || probe.is_none() {
        "Readiness probe failed: HTTP probe failed with statuscode: 503".to_string()
    } else {
        "Readiness probe failed: dial tcp: connect: connection refused".to_string()
    };
    let started = |times: &[Duration]| {
        vec![
            ev(
                "Pulled",
                false,
                format!("Container image \"{image}\" already present on machine"),
                &path,
                times,
            ),
            ev(
                "Created",
                false,
                format!("Created container: {name}"),
                &path,
                times,
            ),
            ev(
                "Started",
                false,
                format!("Started container {name}"),
                &path,
                times,
            ),
        ]
    };
    let zero = [Duration::ZERO];
    let out: Vec<Option<PodEvent>> = match b {
        ImageBehavior::Ready { .. } => started(&zero),
        ImageBehavior::NeverReady => {
            let mut v = started(&zero);
            v.push(ev(
                "Unhealthy",
                true,
                probe_failure,
                &path,
                &every(probe_delay, probe_period, elapsed),
            ));
            v
        }
        ImageBehavior::Flapping { after, period } => {
            let mut v = started(&zero);
            // Probe failures that fall in the not-ready halves of each cycle.
            let p = period.as_millis().max(1);
            let failures: Vec<Duration> = every(
                probe_delay,
                probe_period,
                elapsed.min(*after + *period * 2000),
            )
            .into_iter()
            .filter(|t| *t >= *after && ((t.as_millis() - after.as_millis()) / p) % 2 == 1)
            .collect();
            v.push(ev("Unhealthy", true, probe_failure, &path, &failures));
            v
        }
        ImageBehavior::ImagePullBackOff => {
            let five = Duration::from_secs(5);
            let backoffs = every(five, Duration::from_secs(10), elapsed);
            vec![
                ev(
                    "Pulling",
                    false,
                    format!("Pulling image \"{image}\""),
                    &path,
                    &zero,
                ),
                ev(
                    "Failed",
                    true,
                    format!(
                        "Failed to pull image \"{image}\": failed to pull and unpack image \"{image}\": not found"
                    ),
                    &path,
                    &zero,
                ),
                ev("Failed", true, "Error: ErrImagePull".into(), &path, &zero),
                ev(
                    "BackOff",
                    false,
                    format!("Back-off pulling image \"{image}\""),
                    &path,
                    &backoffs,
                ),
                ev(
                    "Failed",
                    true,
                    "Error: ImagePullBackOff".into(),
                    &path,
                    &backoffs,
                ),
            ]
        }
        ImageBehavior::CrashLoop { run_for } => {
            let (starts, crashes) = crash_timeline(*run_for, elapsed);
            let mut v = started(&starts);
            v.push(ev(
                "BackOff",
                true,
                format!("Back-off restarting failed container {name} in pod {pod_display}"),
                &path,
                &crashes,
            ));
            v
        }
    };
    out.into_iter().flatten().collect()
}

// Start and crash times of a crash-looping container up to `elapsed` (10 s back-off
// doubling to 5 min, as in `behaviour`).
fn crash_timeline(run_for: Duration, elapsed: Duration) -> (Vec<Duration>, Vec<Duration>) {
    let (mut starts, mut crashes) = (Vec::new(), Vec::new());
    let mut t = Duration::ZERO;
    let mut backoff = 10u64;
    while t <= elapsed && starts.len() < 10_000 {
        starts.push(t);
        let end = t + run_for;
        if end > elapsed {
            break;
        }
        crashes.push(end);
        t = end + Duration::from_secs(backoff);
        backoff = (backoff * 2).min(300);
    }
    (starts, crashes)
}

/// Writes (or updates the count of) every Event `events` describes for `pod`.
pub fn record(s: &mut Inner, clock: &SimClock, pod: &Value, created: i64, events: &[PodEvent]) {
    let (ns, pod_name, uid) = (meta(pod, "namespace"), meta(pod, "name"), meta(pod, "uid"));
    for e in events {
        let first_ms = created + clock.to_real(e.first).as_millis() as i64;
        let last_ms = created + clock.to_real(e.last).as_millis() as i64;
        // Real Event names are the object's name and a hex timestamp in nanoseconds;
        // a hash of the event keeps simultaneous ones apart.
        let salt = e
            .message
            .bytes()
            .chain(e.reason.bytes())
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
            % 1_000_000;
        let name = format!("{pod_name}.{:x}", (first_ms as u64) * 1_000_000 + salt);
        let existing = s.get(*ids::EVENT, ns, &name);
        let last = clock.format(last_ms);
        if existing
            .as_deref()
            .is_some_and(|x| x["count"] == e.count && x["lastTimestamp"] == last.as_str())
        {
            continue;
        }
        let scheduler = e.reason == "Scheduled";
        let mut involved = json!({"kind": "Pod", "namespace": ns, "name": pod_name, "uid": uid, "apiVersion": "v1"});
        if !e.field_path.is_empty() {
            involved["fieldPath"] = json!(e.field_path);
        }
        let (component, manager) = if scheduler {
            ("default-scheduler", CONTROLLER_MANAGER)
        } else {
            ("kubelet", super::kubelet::KUBELET)
        };
        let mut source = json!({"component": component});
        if !scheduler {
            source["host"] = json!(NODE);
        }
        let body = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": involved,
            "reason": e.reason,
            "message": e.message,
            "source": source,
            "firstTimestamp": clock.format(first_ms),
            "lastTimestamp": last,
            "count": e.count,
            "type": if e.warning { "Warning" } else { "Normal" },
            "eventTime": null,
            "reportingComponent": component,
            "reportingInstance": if scheduler { "" } else { NODE },
        });
        let change = match existing {
            None => Change::Create(body),
            Some(_) => Change::Replace(body),
        };
        write_logged(s, *ids::EVENT, ns, &name, change, manager, "");
    }
}

/// The Pod-level `Scheduled` event.
pub fn scheduled(pod: &Value) -> PodEvent {
    PodEvent {
        reason: "Scheduled",
        warning: false,
        message: format!(
            "Successfully assigned {}/{} to {NODE}",
            meta(pod, "namespace"),
            meta(pod, "name")
        ),
        field_path: String::new(),
        first: Duration::ZERO,
        last: Duration::ZERO,
        count: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(events: &[PodEvent]) -> Vec<(&str, u64)> {
        events.iter().map(|e| (e.reason, e.count)).collect()
    }

    #[test]
    fn crash_loops_aggregate_back_offs_and_restarts() {
        let c = json!({"name": "web", "image": "app:crashloop"});
        let b = ImageBehavior::CrashLoop {
            run_for: Duration::from_secs(3),
        };
        // Runs 0-3, backs off to 13, runs to 16, backs off to 36, runs to 39, ...
        let at = |s| container_events(&b, Duration::from_secs(s), &c, "p_ns(uid)");
        assert_eq!(
            names(&at(1)),
            [("Pulled", 1), ("Created", 1), ("Started", 1)]
        );
        let e = at(20);
        assert_eq!(
            names(&e),
            [
                ("Pulled", 2),
                ("Created", 2),
                ("Started", 2),
                ("BackOff", 2)
            ]
        );
        assert_eq!(
            e[3].message,
            "Back-off restarting failed container web in pod p_ns(uid)"
        );
        assert!(e[3].warning && e[3].last == Duration::from_secs(16));
    }

    #[test]
    fn failing_probes_and_pulls_repeat_every_period() {
        let c = json!({"name": "web", "image": "x", "readinessProbe": {"httpGet": {"port": 80}, "periodSeconds": 5}});
        let e = container_events(&ImageBehavior::NeverReady, Duration::from_secs(21), &c, "p");
        assert_eq!(e[3].reason, "Unhealthy");
        assert_eq!((e[3].count, e[3].last), (5, Duration::from_secs(20)));
        assert_eq!(
            e[3].message,
            "Readiness probe failed: HTTP probe failed with statuscode: 503"
        );
        let e = container_events(
            &ImageBehavior::ImagePullBackOff,
            Duration::from_secs(26),
            &c,
            "p",
        );
        assert_eq!(
            names(&e),
            [
                ("Pulling", 1),
                ("Failed", 1),
                ("Failed", 1),
                ("BackOff", 3),
                ("Failed", 3)
            ]
        );
        assert_eq!(e[4].message, "Error: ImagePullBackOff");
        assert!(e[1].message.starts_with("Failed to pull image \"x\": "));
        let flap = ImageBehavior::Flapping {
            after: Duration::from_secs(2),
            period: Duration::from_secs(10),
        };
        let e = container_events(&flap, Duration::from_secs(11), &c, "p");
        assert_eq!(e.len(), 3, "ready until 12 s: no failures yet");
        let e = container_events(&flap, Duration::from_secs(21), &c, "p");
        assert_eq!(
            e[3].count, 2,
            "probes at 15 and 20 s fall in the 12-22 s not-ready half"
        );
    }
}
