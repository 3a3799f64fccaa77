//! Simulated time: a clock that runs `scale` times faster than the wall clock, and the
//! RFC 3339 timestamps Kubernetes objects carry.
//!
//! Every deadline the emulated controllers honour (pod ready delays, crash-loop back-off,
//! `progressDeadlineSeconds`) is measured on this clock, so a test can exercise a
//! ten-minute deadline in a few real seconds.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A point on the simulated timeline, in milliseconds since the Unix epoch.
pub type SimMillis = i64;

/// The simulated clock. It starts at the real wall-clock time and then advances `scale`
/// simulated seconds per real second.
#[derive(Debug, Clone)]
pub struct SimClock {
    start_real: Instant,
    start_epoch_ms: i64,
    scale: f64,
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
        }
    }

    /// Simulated seconds per real second.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// The current simulated time.
    pub fn now(&self) -> SimMillis {
        let real = self.start_real.elapsed().as_secs_f64();
        self.start_epoch_ms + (real * self.scale * 1000.0) as i64
    }

    /// The current simulated time as an RFC 3339 timestamp (second precision, as the
    /// API server writes `metav1.Time`).
    pub fn now_rfc3339(&self) -> String {
        format_rfc3339(self.now())
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
    Some(((days * 86_400) + h * 3600 + mi * 60 + se) * 1000)
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
            Some(1_709_251_199_000)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn scaled_clock_runs_faster_than_real_time() {
        let clock = SimClock::new(1000.0);
        let t0 = clock.now();
        std::thread::sleep(Duration::from_millis(20));
        // 20 ms real at 1000x is 20 simulated seconds; allow for scheduling slack.
        assert!(clock.now() - t0 >= 19_000);
        assert_eq!(
            clock.to_real(Duration::from_secs(10)),
            Duration::from_millis(10)
        );
    }
}
