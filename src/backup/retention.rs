//! Which backups to keep: a pure decision over what is stored, the time and a policy.
//!
//! The rules, in words:
//! - the newest verified backup is always kept, whatever its age, so a run of failed
//!   backups never deletes the last good one;
//! - verified backups no older than `retain_for` are kept;
//! - for each of the last `monthly` calendar months (UTC), counting the month of `now`
//!   as the first, the newest verified backup of that month is kept as its monthly copy;
//! - unverified backups never count as copies: they are kept while no older than
//!   `retain_for` (so a failure can be inspected) and deleted after;
//! - everything else is deleted.
//!
//! When no backup at all is verified, nothing is deleted: a failed verification may still
//! hold the only data there is, and deleting every copy because the checks broke would
//! turn a verification problem into data loss. Such a store keeps growing until a backup
//! verifies again, which the reasons say.
//!
//! Ties in time are broken by id: of two verified backups taken at the same instant, the
//! one whose id sorts last counts as the newer.

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Serialize;

/// One stored backup, as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The backup's identifier (unique per backup).
    pub id: String,
    /// When the backup was taken.
    pub taken: Timestamp,
    /// Whether the backup passed verification.
    pub verified: bool,
}

/// How long and how many backups to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Verified backups no older than this are kept; unverified ones older than this are
    /// deleted.
    pub retain_for: Duration,
    /// How many calendar months, counting back from the month of `now`, keep their newest
    /// verified backup (0: none).
    pub monthly: u32,
}

/// The decision for one backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The backup's id.
    pub id: String,
    /// Whether the backup is kept (`false`: delete it).
    pub keep: bool,
    /// The evidence for the decision, in words.
    pub reason: String,
}

/// Decides, for every backup in `backups` and in the same order, whether it is kept.
pub fn decide(backups: &[Stored], now: Timestamp, policy: &Policy) -> Vec<Verdict> {
    let retain_for = duration_words(policy.retain_for);
    let Some(newest) = newest_verified(backups.iter().enumerate()) else {
        return backups
            .iter()
            .map(|backup| Verdict {
                id: backup.id.clone(),
                keep: true,
                reason: format!(
                    "{}, {}: no backup is verified, so nothing is deleted until one is",
                    if backup.verified {
                        "verified"
                    } else {
                        "verification failed"
                    },
                    age_words(age(backup, now)),
                ),
            })
            .collect();
    };
    let monthly = monthly_copies(backups, now, policy.monthly);
    backups
        .iter()
        .enumerate()
        .map(|(index, backup)| {
            let age = age(backup, now);
            let within = age <= policy.retain_for;
            let (keep, reason) = if !backup.verified {
                if within {
                    (
                        true,
                        format!(
                            "verification failed, {}: kept for inspection until older than retain_for {retain_for}",
                            age_words(age)
                        ),
                    )
                } else {
                    (
                        false,
                        format!(
                            "verification failed and it is {}, past retain_for {retain_for}",
                            age_words(age)
                        ),
                    )
                }
            } else {
                let mut reasons = Vec::new();
                if index == newest {
                    reasons.push("the newest verified backup: never deleted".to_owned());
                }
                if within {
                    reasons.push(format!(
                        "verified, {}, within retain_for {retain_for}",
                        age_words(age)
                    ));
                }
                if let Some(month) = monthly.get(&index) {
                    reasons.push(format!("monthly copy for {month}"));
                }
                match reasons.as_slice() {
                    [] => (
                        false,
                        format!(
                            "verified, {}, past retain_for {retain_for} and not a monthly copy",
                            age_words(age)
                        ),
                    ),
                    [only] if index == newest => (true, format!("{only} ({})", age_words(age))),
                    _ => (true, reasons.join("; ")),
                }
            };
            Verdict {
                id: backup.id.clone(),
                keep,
                reason,
            }
        })
        .collect()
}

/// The index of the newest verified backup among `candidates`, ties broken by id.
fn newest_verified<'a>(candidates: impl Iterator<Item = (usize, &'a Stored)>) -> Option<usize> {
    candidates
        .filter(|(_, backup)| backup.verified)
        .max_by(|(_, a), (_, b)| (a.taken, &a.id).cmp(&(b.taken, &b.id)))
        .map(|(index, _)| index)
}

/// The monthly copies: the index of each month's newest verified backup, with its month
/// (`YYYY-MM`), for the `months` calendar months ending with the month of `now`.
fn monthly_copies(backups: &[Stored], now: Timestamp, months: u32) -> HashMap<usize, String> {
    let last = month_number(now);
    let first = last - i64::from(months) + 1;
    (first..=last)
        .filter_map(|month| {
            let in_month = backups
                .iter()
                .enumerate()
                .filter(|(_, backup)| month_number(backup.taken) == month);
            let index = newest_verified(in_month)?;
            Some((
                index,
                format!(
                    "{:04}-{:02}",
                    month.div_euclid(12),
                    month.rem_euclid(12) + 1
                ),
            ))
        })
        .collect()
}

/// Months since year 0 of the UTC calendar month holding `time`.
fn month_number(time: Timestamp) -> i64 {
    let date = time.to_zoned(TimeZone::UTC).date();
    i64::from(date.year()) * 12 + i64::from(date.month()) - 1
}

/// How old `backup` is at `now`; a backup dated after `now` (clock skew) counts as new.
fn age(backup: &Stored, now: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(backup.taken)).unwrap_or(Duration::ZERO)
}

/// "3 days old", "5 hours old", "less than a minute old".
fn age_words(age: Duration) -> String {
    let seconds = age.as_secs();
    let (count, unit) = match seconds {
        86_400.. => (seconds / 86_400, "day"),
        3_600.. => (seconds / 3_600, "hour"),
        60.. => (seconds / 60, "minute"),
        _ => return "less than a minute old".to_owned(),
    };
    let plural = if count == 1 { "" } else { "s" };
    format!("{count} {unit}{plural} old")
}

/// A policy duration in its largest whole unit: "30d", "12h", "90m", "45s".
fn duration_words(duration: Duration) -> String {
    let seconds = duration.as_secs();
    [(86_400, "d"), (3_600, "h"), (60, "m")]
        .into_iter()
        .find(|(unit, _)| seconds > 0 && seconds.is_multiple_of(*unit))
        .map(|(unit, suffix)| format!("{}{suffix}", seconds / unit))
        .unwrap_or_else(|| format!("{seconds}s"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("a valid RFC 3339 timestamp")
    }

    fn backup(id: &str, taken: &str, verified: bool) -> Stored {
        Stored {
            id: id.to_owned(),
            taken: at(taken),
            verified,
        }
    }

    fn policy(days: u64, monthly: u32) -> Policy {
        Policy {
            retain_for: Duration::from_secs(days * DAY),
            monthly,
        }
    }

    /// The verdicts as `(id, keep, reason)`, for comparing whole decisions at once.
    fn verdicts(backups: &[Stored], now: &str, policy: Policy) -> Vec<(String, bool, String)> {
        decide(backups, at(now), &policy)
            .into_iter()
            .map(|v| (v.id, v.keep, v.reason))
            .collect()
    }

    fn row(id: &str, keep: bool, reason: &str) -> (String, bool, String) {
        (id.to_owned(), keep, reason.to_owned())
    }

    #[test]
    fn verified_backups_within_retain_for_are_kept_and_older_ones_deleted() {
        let backups = [
            backup("new", "2026-10-20T02:00:00Z", true),
            backup("recent", "2026-10-10T02:00:00Z", true),
            backup("old", "2026-09-01T02:00:00Z", true),
        ];
        assert_eq!(
            verdicts(&backups, "2026-10-20T08:00:00Z", policy(30, 0)),
            [
                row(
                    "new",
                    true,
                    "the newest verified backup: never deleted; verified, 6 hours old, within retain_for 30d"
                ),
                row(
                    "recent",
                    true,
                    "verified, 10 days old, within retain_for 30d"
                ),
                row(
                    "old",
                    false,
                    "verified, 49 days old, past retain_for 30d and not a monthly copy"
                ),
            ]
        );
    }

    #[test]
    fn retain_for_is_inclusive_to_the_second() {
        let backups = [
            backup("newest", "2026-10-20T00:00:00Z", true),
            backup("exactly", "2026-10-13T00:00:00Z", true),
            backup("one-second-more", "2026-10-12T23:59:59Z", true),
        ];
        let keep: Vec<bool> = decide(&backups, at("2026-10-20T00:00:00Z"), &policy(7, 0))
            .iter()
            .map(|v| v.keep)
            .collect();
        assert_eq!(keep, [true, true, false]);
    }

    #[test]
    fn the_newest_verified_backup_is_kept_even_when_400_days_old() {
        let backups = [
            backup("ancient", "2025-09-15T00:00:00Z", true),
            backup("older", "2025-09-01T00:00:00Z", true),
            backup("failed-recently", "2026-10-19T00:00:00Z", false),
            backup("failed-long-ago", "2026-01-01T00:00:00Z", false),
        ];
        assert_eq!(
            verdicts(&backups, "2026-10-20T00:00:00Z", policy(30, 3)),
            [
                row(
                    "ancient",
                    true,
                    "the newest verified backup: never deleted (400 days old)"
                ),
                row(
                    "older",
                    false,
                    "verified, 414 days old, past retain_for 30d and not a monthly copy"
                ),
                row(
                    "failed-recently",
                    true,
                    "verification failed, 1 day old: kept for inspection until older than retain_for 30d"
                ),
                row(
                    "failed-long-ago",
                    false,
                    "verification failed and it is 292 days old, past retain_for 30d"
                ),
            ]
        );
    }

    #[test]
    fn when_nothing_is_verified_nothing_is_deleted() {
        let backups = [
            backup("a", "2026-10-19T00:00:00Z", false),
            backup("b", "2025-01-01T00:00:00Z", false),
        ];
        assert_eq!(
            verdicts(&backups, "2026-10-20T00:00:00Z", policy(30, 6)),
            [
                row(
                    "a",
                    true,
                    "verification failed, 1 day old: no backup is verified, so nothing is deleted until one is"
                ),
                row(
                    "b",
                    true,
                    "verification failed, 657 days old: no backup is verified, so nothing is deleted until one is"
                ),
            ]
        );
        assert!(decide(&[], at("2026-10-20T00:00:00Z"), &policy(30, 6)).is_empty());
    }

    #[test]
    fn all_backups_old_keeps_only_the_newest_verified_and_monthly_copies() {
        let backups = [
            backup("aug-early", "2026-08-02T00:00:00Z", true),
            backup("aug-late", "2026-08-30T00:00:00Z", true),
            backup("jul", "2026-07-15T00:00:00Z", true),
            backup("jun", "2026-06-15T00:00:00Z", true),
        ];
        // October and September have no backup; August and July are in the 4 months.
        assert_eq!(
            verdicts(&backups, "2026-10-20T00:00:00Z", policy(7, 4)),
            [
                row(
                    "aug-early",
                    false,
                    "verified, 79 days old, past retain_for 7d and not a monthly copy"
                ),
                row(
                    "aug-late",
                    true,
                    "the newest verified backup: never deleted; monthly copy for 2026-08"
                ),
                row("jul", true, "monthly copy for 2026-07"),
                row(
                    "jun",
                    false,
                    "verified, 127 days old, past retain_for 7d and not a monthly copy"
                ),
            ]
        );
    }

    #[test]
    fn a_monthly_copy_is_the_newest_verified_backup_of_its_month() {
        let backups = [
            backup("sep-05", "2026-09-05T00:00:00Z", true),
            backup("sep-20", "2026-09-20T00:00:00Z", true),
            // Newer but unverified: never a monthly copy.
            backup("sep-28-failed", "2026-09-28T00:00:00Z", false),
            backup("oct-10", "2026-10-10T00:00:00Z", true),
        ];
        let decided = decide(&backups, at("2026-11-20T00:00:00Z"), &policy(20, 3));
        let kept: Vec<(&str, bool)> = decided.iter().map(|v| (v.id.as_str(), v.keep)).collect();
        assert_eq!(
            kept,
            [
                ("sep-05", false),
                ("sep-20", true),
                ("sep-28-failed", false),
                ("oct-10", true),
            ]
        );
        assert_eq!(decided[1].reason, "monthly copy for 2026-09");
        assert_eq!(
            decided[3].reason,
            "the newest verified backup: never deleted; monthly copy for 2026-10"
        );
    }

    #[test]
    fn months_are_utc_calendar_months_across_month_and_year_boundaries() {
        let backups = [
            backup("dec-31-late", "2026-12-31T23:59:59Z", true),
            backup("jan-01-first", "2027-01-01T00:00:00Z", true),
            backup("jan-20", "2027-01-20T00:00:00Z", true),
            backup("nov-30-late", "2026-11-30T23:59:59Z", true),
        ];
        // Two months from January 2027: January and December 2026, not November.
        let decided = decide(&backups, at("2027-01-25T00:00:00Z"), &policy(1, 2));
        let kept: Vec<(&str, bool, &str)> = decided
            .iter()
            .map(|v| (v.id.as_str(), v.keep, v.reason.as_str()))
            .collect();
        assert_eq!(
            kept,
            [
                ("dec-31-late", true, "monthly copy for 2026-12"),
                (
                    "jan-01-first",
                    false,
                    "verified, 24 days old, past retain_for 1d and not a monthly copy"
                ),
                (
                    "jan-20",
                    true,
                    "the newest verified backup: never deleted; monthly copy for 2027-01"
                ),
                (
                    "nov-30-late",
                    false,
                    "verified, 55 days old, past retain_for 1d and not a monthly copy"
                ),
            ]
        );
    }

    #[test]
    fn a_tie_in_time_keeps_exactly_one_chosen_by_id() {
        let backups = [
            backup("b", "2026-05-01T00:00:00Z", true),
            backup("a", "2026-05-01T00:00:00Z", true),
            backup("c", "2026-05-01T00:00:00Z", true),
        ];
        // Both the newest-verified and the monthly rule pick the id sorting last.
        for monthly in [0, 12] {
            let decided = decide(&backups, at("2026-10-20T00:00:00Z"), &policy(30, monthly));
            let kept: Vec<&str> = decided
                .iter()
                .filter(|v| v.keep)
                .map(|v| v.id.as_str())
                .collect();
            assert_eq!(kept, ["c"], "monthly = {monthly}");
        }
    }

    #[test]
    fn a_backup_dated_after_now_counts_as_new() {
        let backups = [
            backup("skewed", "2026-10-20T00:05:00Z", false),
            backup("good", "2026-10-19T00:00:00Z", true),
        ];
        let decided = decide(&backups, at("2026-10-20T00:00:00Z"), &policy(1, 0));
        assert_eq!(
            decided[0].reason,
            "verification failed, less than a minute old: kept for inspection until older than retain_for 1d"
        );
        assert!(decided[0].keep);
    }

    #[test]
    fn durations_are_written_in_their_largest_whole_unit() {
        assert_eq!(duration_words(Duration::from_secs(30 * DAY)), "30d");
        assert_eq!(duration_words(Duration::from_secs(36 * 3_600)), "36h");
        assert_eq!(duration_words(Duration::from_secs(90 * 60)), "90m");
        assert_eq!(duration_words(Duration::from_secs(45)), "45s");
        assert_eq!(duration_words(Duration::ZERO), "0s");
        assert_eq!(age_words(Duration::from_secs(DAY)), "1 day old");
        assert_eq!(age_words(Duration::from_secs(2 * 3_600 + 5)), "2 hours old");
        assert_eq!(age_words(Duration::from_secs(61)), "1 minute old");
    }
}
