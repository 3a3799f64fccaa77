//! Simulated time: a clock that runs `scale` times faster than the wall clock, and the
//! RFC 3339 timestamps Kubernetes objects carry.
//!
//! Objects carry real wall-clock timestamps (so `kubectl get` shows sensible ages), but
//! every delay the emulated controllers honour (pod ready delays, crash-loop back-off,
//! `progressDeadlineSeconds`, `minReadySeconds`) is the real time elapsed since a
//! timestamp multiplied by the scale, so a test can exercise a ten-minute deadline in a
//! few real seconds. With a scale other than 1, timestamps carry milliseconds, which
//! `metav1.Time` parsers accept, so that short simulated delays stay measurable.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A wall-clock instant, in milliseconds since the Unix epoch.
pub type SimMillis = i64;

/// The clock: wall time for timestamps, scaled for elapsed simulated time.
#[derive(Debug, Clone)]
pub struct SimClock {
    start_real: Instant,
    start_epoch_ms: i64,
    scale: f64,
    // Jumps made with `advance`, in wall-clock milliseconds; shared by every clone.
    skipped_ms: Arc<AtomicI64>,
}

impl SimClock {
    /// A clock that advances `scale` simulated seconds per real second (1.0 = real time).
    pub fn new(scale: f64) -> Self {
        let start_epoch_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Self {
            start_real: Instant::now(),
            start_epoch_ms,
            scale: if scale.is_finite() && scale > 0.0 {
                scale
            } else {
                1.0
            },
            skipped_ms: Arc::new(AtomicI64::new(0)),
        }
    }

    /// Jumps `sim` simulated time ahead at once: every pending delay shortens by it.
    /// Timestamps written afterwards are ahead of the host's clock by `sim / scale`.
    pub fn advance(&self, sim: Duration) {
        let real_ms = (sim.as_secs_f64() * 1000.0 / self.scale).ceil() as i64;
        self.skipped_ms.fetch_add(real_ms, Ordering::SeqCst);
    }

    /// Simulated seconds per real second.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// The current wall-clock time (monotonic since start).
    pub fn now(&self) -> SimMillis {
        self.start_epoch_ms
            + self.start_real.elapsed().as_millis() as i64
            + self.skipped_ms.load(Ordering::SeqCst)
    }

    /// The current time as an RFC 3339 timestamp: whole seconds, as the API server
    /// writes `metav1.Time`, or milliseconds when time is scaled.
    pub fn now_rfc3339(&self) -> String {
        self.format(self.now())
    }

    /// Formats an instant as [`SimClock::now_rfc3339`] does.
    pub fn format(&self, ms: SimMillis) -> String {
        if self.scale == 1.0 {
            format_rfc3339(ms)
        } else {
            format_rfc3339_millis(ms)
        }
    }

    /// Simulated time elapsed since the wall-clock instant `since`.
    pub fn sim_since(&self, since: SimMillis) -> Duration {
        Duration::from_secs_f64((self.now() - since).max(0) as f64 / 1000.0 * self.scale)
    }

    /// The real duration that corresponds to `sim` simulated time.
    pub fn to_real(&self, sim: Duration) -> Duration {
        Duration::from_secs_f64(sim.as_secs_f64() / self.scale)
    }
}

/// Formats epoch milliseconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_rfc3339(ms: SimMillis) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Formats epoch milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_rfc3339_millis(ms: SimMillis) -> String {
    let whole = format_rfc3339(ms);
    format!("{}.{:03}Z", &whole[..whole.len() - 1], ms.rem_euclid(1000))
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac]Z` (what the API server and this simulator write)
/// into epoch milliseconds. Offsets other than `Z` are not accepted.
pub fn parse_rfc3339(s: &str) -> Option<SimMillis> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || !s.ends_with('Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let days = days_from_civil(y, mo, d);
    let frac = s[19..s.len() - 1].strip_prefix('.').unwrap_or("");
    let millis = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<3}")[..3].parse::<i64>().ok()?
    };
    Some(((days * 86_400) + h * 3600 + mi * 60 + se) * 1000 + millis)
}

// Howard Hinnant's civil-date algorithms: exact for the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_known_instants() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_709_251_199_000), "2024-02-29T23:59:59Z");
        assert_eq!(
            parse_rfc3339("2024-02-29T23:59:59Z"),
            Some(1_709_251_199_000)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T23:59:59.123456Z"),
            Some(1_709_251_199_123)
        );
        assert_eq!(
            format_rfc3339_millis(1_709_251_199_045),
            "2024-02-29T23:59:59.045Z"
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T23:59:59.5Z"),
            Some(1_709_251_199_500)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn scaled_clock_runs_faster_than_real_time() {
        let clock = SimClock::new(1000.0);
        let t0 = clock.now();
        std::thread::sleep(Duration::from_millis(20));
        // 20 ms real at 1000x is 20 simulated seconds; allow for scheduling slack.
        assert!(clock.sim_since(t0) >= Duration::from_secs(19));
        assert!(clock.now_rfc3339().contains('.'));
        let copy = clock.clone();
        let before = copy.sim_since(t0);
        clock.advance(Duration::from_secs(600));
        assert!(
            copy.sim_since(t0) >= before + Duration::from_secs(600),
            "clones share the jump"
        );
        assert_eq!(
            clock.to_real(Duration::from_secs(10)),
            Duration::from_millis(10)
        );
    }
}
