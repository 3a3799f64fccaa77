//! Fault injection: latency, error answers per verb and path (500, 503, 429 with
//! `Retry-After`, 409, ...), and dropped watch connections. Rules can be changed while
//! the server runs, so a test can break the API in the middle of a deploy.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::status::ApiError;

/// One rule: requests that match `verb` and `path_contains` get `latency` added and,
/// with `probability`, the error `status` instead of an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    /// Kubernetes verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`); `None` matches every verb.
    pub verb: Option<String>,
    /// Substring of the request path (e.g. `/services/web`); `None` matches every path.
    pub path_contains: Option<String>,
    /// HTTP status to answer with (500, 503, 429, 409, 504); `None` adds latency only.
    pub status: Option<u16>,
    /// `Retry-After` seconds for the error answer.
    pub retry_after: Option<u64>,
    /// Extra latency (real time) before answering.
    pub latency: Duration,
    /// Chance that a matching request gets the error, 0.0 to 1.0.
    pub probability: f64,
    /// How many more times the rule may fire; `None` means unlimited.
    pub times: Option<u32>,
}

impl FaultRule {
    /// A rule answering every matching request with `status`.
    pub fn error(status: u16) -> Self {
        Self {
            verb: None,
            path_contains: None,
            status: Some(status),
            retry_after: None,
            latency: Duration::ZERO,
            probability: 1.0,
            times: None,
        }
    }

    /// A 429 with `Retry-After: secs`.
    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        Self {
            retry_after: Some(retry_after_secs),
            ..Self::error(429)
        }
    }

    /// A rule that only slows matching requests down.
    pub fn latency(latency: Duration) -> Self {
        Self {
            status: None,
            latency,
            ..Self::error(500)
        }
    }

    /// Restricts the rule to one verb.
    pub fn verb(mut self, verb: &str) -> Self {
        self.verb = Some(verb.to_string());
        self
    }

    /// Restricts the rule to paths containing `s`.
    pub fn path_contains(mut self, s: &str) -> Self {
        self.path_contains = Some(s.to_string());
        self
    }

    /// Fires with this probability (error rate).
    pub fn probability(mut self, p: f64) -> Self {
        self.probability = p.clamp(0.0, 1.0);
        self
    }

    /// Fires at most `n` times, then stays inert.
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    fn matches(&self, verb: &str, path: &str) -> bool {
        self.verb.as_deref().is_none_or(|v| v == verb)
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| path.contains(p))
            && self.times != Some(0)
    }
}

/// What to do with one request.
#[derive(Debug, Default, PartialEq)]
pub struct Decision {
    /// Sleep this long first.
    pub latency: Duration,
    /// Then answer with this error instead of serving the request.
    pub error: Option<ApiError>,
}

/// Decides for one request, given a uniform random number per rule (pure, for tests).
pub fn decide(
    rules: &mut [FaultRule],
    verb: &str,
    path: &str,
    mut roll: impl FnMut() -> f64,
) -> Decision {
    let mut d = Decision::default();
    for rule in rules.iter_mut().filter(|r| r.matches(verb, path)) {
        d.latency += rule.latency;
        let Some(code) = rule.status else { continue };
        if d.error.is_none() && roll() < rule.probability {
            d.error = Some(ApiError::injected(code, rule.retry_after));
            if let Some(n) = rule.times.as_mut() {
                *n -= 1;
            }
        }
    }
    d
}

#[derive(Debug)]
struct State {
    rules: Vec<FaultRule>,
    watch_lifetime: Option<Duration>,
    rng: u64,
}

/// The live fault configuration of a running simulator; cheap to clone.
#[derive(Debug, Clone)]
pub struct Faults {
    state: Arc<Mutex<State>>,
    drops: Arc<watch::Sender<u64>>,
}

impl Default for Faults {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl Faults {
    /// Starts with `rules`.
    pub fn new(rules: Vec<FaultRule>) -> Self {
        let (tx, _) = watch::channel(0);
        Self {
            state: Arc::new(Mutex::new(State {
                rules,
                watch_lifetime: None,
                rng: 0x2545_f491_4f6c_dd1d,
            })),
            drops: Arc::new(tx),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a rule.
    pub fn add(&self, rule: FaultRule) {
        self.lock().rules.push(rule);
    }

    /// Removes every rule and the watch lifetime.
    pub fn clear(&self) {
        let mut s = self.lock();
        s.rules.clear();
        s.watch_lifetime = None;
    }

    /// Closes every watch connection after it has been open this long (real time).
    pub fn set_watch_lifetime(&self, lifetime: Option<Duration>) {
        self.lock().watch_lifetime = lifetime;
    }

    /// Closes every open watch connection now, as a flaky network or an API server
    /// restart would.
    pub fn drop_watches(&self) {
        self.drops.send_modify(|n| *n += 1);
    }

    pub(crate) fn watch_lifetime(&self) -> Option<Duration> {
        self.lock().watch_lifetime
    }

    pub(crate) fn drop_signal(&self) -> watch::Receiver<u64> {
        self.drops.subscribe()
    }

    pub(crate) fn decide(&self, verb: &str, path: &str) -> Decision {
        let mut s = self.lock();
        let State { rules, rng, .. } = &mut *s;
        decide(rules, verb, path, || {
            // xorshift64: reproducible error rates without a random number crate.
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            (*rng >> 11) as f64 / (1u64 << 53) as f64
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_verb_and_path_and_count_down() {
        let mut rules = vec![
            FaultRule::error(503)
                .verb("patch")
                .path_contains("/services/")
                .times(1),
        ];
        assert!(
            decide(
                &mut rules,
                "get",
                "/api/v1/namespaces/a/services/web",
                || 0.0
            )
            .error
            .is_none()
        );
        let d = decide(
            &mut rules,
            "patch",
            "/api/v1/namespaces/a/services/web",
            || 0.0,
        );
        assert_eq!(d.error.unwrap().code, 503);
        assert!(
            decide(
                &mut rules,
                "patch",
                "/api/v1/namespaces/a/services/web",
                || 0.0
            )
            .error
            .is_none()
        );
    }

    #[test]
    fn probability_and_latency_combine() {
        let mut rules = vec![
            FaultRule::latency(Duration::from_millis(5)),
            FaultRule::too_many_requests(2).probability(0.5),
        ];
        let d = decide(&mut rules, "list", "/x", || 0.9);
        assert_eq!(
            d,
            Decision {
                latency: Duration::from_millis(5),
                error: None
            }
        );
        let e = decide(&mut rules, "list", "/x", || 0.1).error.unwrap();
        assert_eq!((e.code, e.retry_after), (429, Some(2)));
    }

    #[test]
    fn error_rate_is_roughly_honoured() {
        let f = Faults::new(vec![FaultRule::error(500).probability(0.3)]);
        let hits = (0..2000)
            .filter(|_| f.decide("get", "/").error.is_some())
            .count();
        assert!((450..750).contains(&hits), "{hits}");
    }
}
