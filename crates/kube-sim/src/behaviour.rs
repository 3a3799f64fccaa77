//! Scripted container behaviour: which images become ready (and when), crash-loop,
//! fail to pull, never become ready, or flap. The kubelet stand-in asks this module
//! what a container looks like after some simulated time; the answer is a pure function
//! of the behaviour and the elapsed time, so it is the same on every tick.

use std::time::Duration;

use serde_json::{Value, json};

/// What a container running an image does.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageBehavior {
    /// Starts and becomes ready after `after` (simulated time).
    Ready {
        /// Delay from pod creation to readiness.
        after: Duration,
    },
    /// Runs but never passes its readiness probe.
    NeverReady,
    /// Exits with an error `run_for` after each start; restarts with the kubelet's
    /// exponential back-off (10 s doubling to 5 min), so `restartCount` grows.
    CrashLoop {
        /// How long each run lasts before the crash.
        run_for: Duration,
    },
    /// The image cannot be pulled: `ErrImagePull`, then `ImagePullBackOff`.
    ImagePullBackOff,
    /// Becomes ready after `after`, then alternates not-ready/ready every `period`.
    Flapping {
        /// Delay to the first readiness.
        after: Duration,
        /// Length of each ready or not-ready phase.
        period: Duration,
    },
}

/// Image-to-behaviour rules: the first rule whose pattern is a substring of the image
/// wins; then the built-in conventions; then the default.
#[derive(Debug, Clone)]
pub struct ImageRules {
    /// `(substring of the image reference, behaviour)`, checked in order.
    pub rules: Vec<(String, ImageBehavior)>,
    /// Behaviour of images no rule matches.
    pub default: ImageBehavior,
}

impl Default for ImageRules {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            default: ImageBehavior::Ready {
                after: Duration::from_secs(2),
            },
        }
    }
}

impl ImageRules {
    /// The behaviour of `image`. Besides explicit rules, image references containing
    /// `crashloop`, `imagepullbackoff` (or `no-such-image`), `neverready` or `flapping`
    /// behave that way, so a manifest can script a failure without test code.
    pub fn behavior_of(&self, image: &str) -> ImageBehavior {
        if let Some((_, b)) = self.rules.iter().find(|(p, _)| image.contains(p.as_str())) {
            return b.clone();
        }
        let lower = image.to_ascii_lowercase();
        if lower.contains("crashloop") {
            ImageBehavior::CrashLoop {
                run_for: Duration::from_secs(3),
            }
        } else if lower.contains("imagepullbackoff") || lower.contains("no-such-image") {
            ImageBehavior::ImagePullBackOff
        } else if lower.contains("neverready") {
            ImageBehavior::NeverReady
        } else if lower.contains("flapping") {
            ImageBehavior::Flapping {
                after: Duration::from_secs(2),
                period: Duration::from_secs(10),
            }
        } else {
            self.default.clone()
        }
    }
}

/// What one container looks like at a moment.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerView {
    /// Readiness.
    pub ready: bool,
    /// Whether the container process is running.
    pub running: bool,
    /// Restarts so far.
    pub restarts: i64,
    /// `state` as the kubelet reports it; times are offsets resolved by the caller.
    pub state: Value,
    /// `lastState`.
    pub last_state: Value,
    /// Whether the image was pulled (pods with unpullable images stay `Pending`).
    pub pulled: bool,
}

const BACKOFF_START_S: u64 = 10;
const BACKOFF_CAP_S: u64 = 300;

/// The container's state `elapsed` after pod creation. `fmt_time(offset)` renders the
/// timestamp `offset` after pod creation.
pub fn container_view(
    b: &ImageBehavior,
    elapsed: Duration,
    name: &str,
    pod: &str,
    fmt_time: impl Fn(Duration) -> String,
) -> ContainerView {
    let running = |since: Duration| json!({"running": {"startedAt": fmt_time(since)}});
    match b {
        ImageBehavior::Ready { after } => ContainerView {
            ready: elapsed >= *after,
            running: true,
            restarts: 0,
            state: running(Duration::ZERO),
            last_state: json!({}),
            pulled: true,
        },
        ImageBehavior::NeverReady => ContainerView {
            ready: false,
            running: true,
            restarts: 0,
            state: running(Duration::ZERO),
            last_state: json!({}),
            pulled: true,
        },
        ImageBehavior::Flapping { after, period } => {
            let ready = elapsed >= *after && {
                let p = period.as_millis().max(1);
                ((elapsed - *after).as_millis() / p).is_multiple_of(2)
            };
            ContainerView {
                ready,
                running: true,
                restarts: 0,
                state: running(Duration::ZERO),
                last_state: json!({}),
                pulled: true,
            }
        }
        ImageBehavior::ImagePullBackOff => {
            let (reason, message) = if elapsed < Duration::from_secs(5) {
                ("ErrImagePull", "failed to pull and unpack image: not found")
            } else {
                ("ImagePullBackOff", "Back-off pulling image")
            };
            ContainerView {
                ready: false,
                running: false,
                restarts: 0,
                state: json!({"waiting": {"reason": reason, "message": message}}),
                last_state: json!({}),
                pulled: false,
            }
        }
        ImageBehavior::CrashLoop { run_for } => {
            // Walk the timeline: run, crash, back off (doubling), run again, ...
            let mut t = Duration::ZERO;
            let mut restarts = 0i64;
            let mut backoff = BACKOFF_START_S;
            let mut previous: Option<(Duration, Duration)> = None;
            loop {
                let run_end = t + *run_for;
                if elapsed < run_end {
                    let last = match previous {
                        None => json!({}),
                        Some((started, finished)) => {
                            json!({"terminated": {"exitCode": 1, "reason": "Error", "startedAt": fmt_time(started), "finishedAt": fmt_time(finished)}})
                        }
                    };
                    return ContainerView {
                        ready: false,
                        running: true,
                        restarts,
                        state: running(t),
                        last_state: last,
                        pulled: true,
                    };
                }
                let wait = Duration::from_secs(backoff);
                if elapsed < run_end + wait {
                    return ContainerView {
                        ready: false,
                        running: false,
                        restarts: restarts + 1,
                        state: json!({"waiting": {"reason": "CrashLoopBackOff", "message": format!("back-off {backoff}s restarting failed container={name} pod={pod}")}}),
                        last_state: json!({"terminated": {"exitCode": 1, "reason": "Error", "startedAt": fmt_time(t), "finishedAt": fmt_time(run_end)}}),
                        pulled: true,
                    };
                }
                previous = Some((t, run_end));
                t = run_end + wait;
                restarts += 1;
                backoff = (backoff * 2).min(BACKOFF_CAP_S);
            }
        }
    }
}

/// How long after `elapsed` the container's view next changes (readiness, state or
/// restart count), so the kubelet can sleep until then; `None` if it never changes.
pub fn next_change(b: &ImageBehavior, elapsed: Duration) -> Option<Duration> {
    let until = |t: Duration| (t > elapsed).then(|| t - elapsed);
    match b {
        ImageBehavior::Ready { after } => until(*after),
        ImageBehavior::NeverReady => None,
        ImageBehavior::ImagePullBackOff => until(Duration::from_secs(5)),
        ImageBehavior::Flapping { after, period } => {
            if elapsed < *after {
                return until(*after);
            }
            let p = period.as_millis().max(1);
            let into = (elapsed - *after).as_millis() % p;
            Some(Duration::from_millis((p - into) as u64))
        }
        ImageBehavior::CrashLoop { run_for } => {
            let mut t = Duration::ZERO;
            let mut backoff = BACKOFF_START_S;
            loop {
                let run_end = t + *run_for;
                if elapsed < run_end {
                    return until(run_end);
                }
                let restart = run_end + Duration::from_secs(backoff);
                if elapsed < restart {
                    return until(restart);
                }
                t = restart;
                backoff = (backoff * 2).min(BACKOFF_CAP_S);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(b: &ImageBehavior, secs: u64) -> ContainerView {
        container_view(b, Duration::from_secs(secs), "c", "p", |d| {
            format!("+{}", d.as_secs())
        })
    }

    #[test]
    fn conventions_pick_behaviours_from_image_names() {
        let rules = ImageRules {
            rules: vec![("ghcr.io/x/slow".into(), ImageBehavior::NeverReady)],
            ..Default::default()
        };
        assert_eq!(
            rules.behavior_of("ghcr.io/x/slow:1"),
            ImageBehavior::NeverReady
        );
        assert!(matches!(
            rules.behavior_of("app:crashloop"),
            ImageBehavior::CrashLoop { .. }
        ));
        assert_eq!(
            rules.behavior_of("ghcr.io/x/no-such-image:1"),
            ImageBehavior::ImagePullBackOff
        );
        assert!(matches!(
            rules.behavior_of("nginx:1.27"),
            ImageBehavior::Ready { .. }
        ));
    }

    #[test]
    fn ready_after_delay_and_flapping_alternates() {
        let r = ImageBehavior::Ready {
            after: Duration::from_secs(2),
        };
        assert!(!view(&r, 1).ready && view(&r, 2).ready);
        let f = ImageBehavior::Flapping {
            after: Duration::from_secs(2),
            period: Duration::from_secs(10),
        };
        assert!(
            !view(&f, 1).ready && view(&f, 3).ready && !view(&f, 13).ready && view(&f, 23).ready
        );
    }

    #[test]
    fn crash_loop_backs_off_exponentially_and_counts_restarts() {
        let c = ImageBehavior::CrashLoop {
            run_for: Duration::from_secs(3),
        };
        assert!(view(&c, 1).running);
        let v = view(&c, 5);
        assert_eq!(v.restarts, 1);
        assert_eq!(v.state["waiting"]["reason"], "CrashLoopBackOff");
        assert!(
            v.state["waiting"]["message"]
                .as_str()
                .unwrap()
                .starts_with("back-off 10s")
        );
        // Runs again at 13 s, crashes at 16 s, backs off 20 s.
        assert!(view(&c, 14).running && view(&c, 14).restarts == 1);
        let v = view(&c, 20);
        assert_eq!(v.restarts, 2);
        assert!(
            v.state["waiting"]["message"]
                .as_str()
                .unwrap()
                .starts_with("back-off 20s")
        );
        assert!(view(&c, 3600).restarts > 10);
    }

    #[test]
    fn next_change_points_at_the_next_transition() {
        let s = Duration::from_secs;
        assert_eq!(
            next_change(&ImageBehavior::Ready { after: s(2) }, s(1)),
            Some(s(1))
        );
        assert_eq!(
            next_change(&ImageBehavior::Ready { after: s(2) }, s(3)),
            None
        );
        assert_eq!(next_change(&ImageBehavior::NeverReady, s(3)), None);
        let f = ImageBehavior::Flapping {
            after: s(2),
            period: s(10),
        };
        assert_eq!(next_change(&f, s(5)), Some(s(7)));
        let c = ImageBehavior::CrashLoop { run_for: s(3) };
        // Runs 0-3, backs off to 13, runs to 16, backs off 20 s to 36.
        assert_eq!(next_change(&c, s(1)), Some(s(2)));
        assert_eq!(next_change(&c, s(5)), Some(s(8)));
        assert_eq!(next_change(&c, s(20)), Some(s(16)));
        // The view really changes at each reported instant.
        for at in [s(1), s(5), s(14), s(20)] {
            let next = at + next_change(&c, at).unwrap();
            assert_ne!(view(&c, at.as_secs()), view(&c, next.as_secs()));
        }
    }

    #[test]
    fn image_pull_failure_moves_from_err_to_back_off() {
        let v = view(&ImageBehavior::ImagePullBackOff, 1);
        assert_eq!(v.state["waiting"]["reason"], "ErrImagePull");
        assert_eq!(
            view(&ImageBehavior::ImagePullBackOff, 30).state["waiting"]["reason"],
            "ImagePullBackOff"
        );
        assert!(!v.pulled && !v.ready);
    }
}
