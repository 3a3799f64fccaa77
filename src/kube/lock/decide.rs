//! The deploy lock's decisions, without I/O: given the stored Lease (or none), the time and
//! who we are, whether to create it, take it, keep it, wait, or accept that it is not ours.
//!
//! Every decision is carried out by one write guarded by the `resourceVersion` it was made
//! on, so a decision made on a Lease that changed meanwhile fails with a conflict and is
//! made again on the new one; two runs can never both act on the same version.

use std::time::Duration;

use jiff::Timestamp;

/// How long a holder's claim lasts when its Lease does not say (Kubernetes' own default
/// for leader election).
pub const FALLBACK_DURATION: Duration = Duration::from_secs(15);

/// What the stored Lease says, reduced to what the decisions need.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaseView {
    /// `spec.holderIdentity`; `None` (or empty) when nobody holds it.
    pub holder: Option<String>,
    /// `spec.renewTime`, else `spec.acquireTime`.
    pub renewed: Option<Timestamp>,
    /// `spec.leaseDurationSeconds`.
    pub duration: Option<Duration>,
    /// `spec.leaseTransitions`.
    pub transitions: i32,
}

impl LeaseView {
    /// The holder, if there is one (an empty identity is nobody).
    pub fn holder(&self) -> Option<&str> {
        self.holder.as_deref().filter(|h| !h.is_empty())
    }

    /// When the holder's claim runs out unless renewed: last renewal plus the duration.
    /// `None` when it was never renewed, which counts as expired.
    pub fn expires(&self) -> Option<Timestamp> {
        let renewed = self.renewed?;
        let duration = self.duration.unwrap_or(FALLBACK_DURATION);
        renewed
            .checked_add(jiff::SignedDuration::try_from(duration).ok()?)
            .ok()
    }

    /// Whether someone other than `me` holds it and their claim has not run out at `now`.
    pub fn held_by_other(&self, now: Timestamp, me: &str) -> bool {
        matches!(self.holder(), Some(h) if h != me) && self.expires().is_some_and(|e| e > now)
    }
}

/// What to do to get the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquire {
    /// There is no Lease: create it, held by us, with no transitions.
    Create,
    /// Nobody holds it, or its holder stopped renewing: replace it, held by us, with
    /// `transitions` as the new `leaseTransitions`.
    Take {
        /// The new `leaseTransitions`.
        transitions: i32,
        /// The holder whose claim ran out, if any.
        expired_holder: Option<String>,
    },
    /// We hold it already: renew it.
    Keep,
    /// Someone else holds it and keeps renewing: wait, and decide again.
    Wait {
        /// Who holds it.
        holder: String,
        /// When their claim runs out unless they renew it.
        expires: Timestamp,
    },
}

/// Decides how to get the lock, given the stored Lease (`None`: there is none).
pub fn acquire(current: Option<&LeaseView>, now: Timestamp, me: &str) -> Acquire {
    let Some(lease) = current else {
        return Acquire::Create;
    };
    match lease.holder() {
        Some(holder) if holder == me => Acquire::Keep,
        Some(holder) => match lease.expires() {
            Some(expires) if expires > now => Acquire::Wait {
                holder: holder.to_owned(),
                expires,
            },
            _ => Acquire::Take {
                transitions: lease.transitions.saturating_add(1),
                expired_holder: Some(holder.to_owned()),
            },
        },
        None => Acquire::Take {
            transitions: lease.transitions.saturating_add(1),
            expired_holder: None,
        },
    }
}

/// What a renewal finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renew {
    /// Still ours: write a new renew time.
    Renew,
    /// Not ours any more: the job must stop.
    Lost {
        /// Who holds it now (`None`: nobody, or the Lease is gone).
        holder: Option<String>,
    },
}

/// Decides a renewal, given the stored Lease.
pub fn renew(current: Option<&LeaseView>, me: &str) -> Renew {
    match current.and_then(LeaseView::holder) {
        Some(holder) if holder == me => Renew::Renew,
        holder => Renew::Lost {
            holder: holder.map(str::to_owned),
        },
    }
}

/// Whether renewals have failed for so long that others may already see the lock as free:
/// the last successful write plus the duration is past.
pub fn overdue(last_renewed: Timestamp, duration: Duration, now: Timestamp) -> bool {
    jiff::SignedDuration::try_from(duration)
        .ok()
        .and_then(|d| last_renewed.checked_add(d).ok())
        .is_none_or(|expires| expires <= now)
}

/// What releasing does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    /// Ours: clear the holder (the Lease stays, keeping its transition count).
    Clear,
    /// Not ours (gone, free or someone else's): leave it alone.
    NotHeld {
        /// Who holds it, if anyone.
        holder: Option<String>,
    },
}

/// Decides a release, given the stored Lease.
pub fn release(current: Option<&LeaseView>, me: &str) -> Release {
    match current.and_then(LeaseView::holder) {
        Some(holder) if holder == me => Release::Clear,
        holder => Release::NotHeld {
            holder: holder.map(str::to_owned),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "https://github.com/o/r/actions/runs/1/attempts/1 (runner/7)";

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    fn held(holder: &str, renewed: i64, transitions: i32) -> LeaseView {
        LeaseView {
            holder: Some(holder.to_owned()),
            renewed: Some(at(renewed)),
            duration: Some(Duration::from_secs(60)),
            transitions,
        }
    }

    #[test]
    fn no_lease_is_created() {
        assert_eq!(acquire(None, at(0), ME), Acquire::Create);
    }

    #[test]
    fn a_live_holder_is_waited_for_until_its_claim_runs_out() {
        let lease = held("other", 0, 3);
        assert_eq!(
            acquire(Some(&lease), at(59), ME),
            Acquire::Wait {
                holder: "other".into(),
                expires: at(60)
            }
        );
        assert!(lease.held_by_other(at(59), ME));
        assert_eq!(
            acquire(Some(&lease), at(60), ME),
            Acquire::Take {
                transitions: 4,
                expired_holder: Some("other".into())
            },
            "a claim is over at renewTime + leaseDurationSeconds"
        );
        assert!(!lease.held_by_other(at(60), ME));
    }

    #[test]
    fn a_free_lease_is_taken_and_counts_a_transition() {
        let mut lease = held("", 0, 2);
        assert_eq!(
            acquire(Some(&lease), at(1), ME),
            Acquire::Take {
                transitions: 3,
                expired_holder: None
            }
        );
        lease.holder = None;
        assert!(matches!(
            acquire(Some(&lease), at(1), ME),
            Acquire::Take { transitions: 3, .. }
        ));
    }

    #[test]
    fn a_holder_that_never_renewed_or_without_a_duration() {
        let never = LeaseView {
            holder: Some("other".into()),
            ..LeaseView::default()
        };
        assert!(matches!(
            acquire(Some(&never), at(0), ME),
            Acquire::Take { transitions: 1, .. }
        ));
        let no_duration = LeaseView {
            duration: None,
            ..held("other", 0, 0)
        };
        assert!(matches!(
            acquire(Some(&no_duration), at(14), ME),
            Acquire::Wait { .. }
        ));
        assert!(matches!(
            acquire(Some(&no_duration), at(15), ME),
            Acquire::Take { .. }
        ));
    }

    #[test]
    fn our_own_lease_is_kept_even_when_expired() {
        assert_eq!(acquire(Some(&held(ME, 0, 5)), at(3600), ME), Acquire::Keep);
    }

    #[test]
    fn renewal_notices_a_lost_lease() {
        assert_eq!(renew(Some(&held(ME, 0, 0)), ME), Renew::Renew);
        assert_eq!(
            renew(Some(&held("thief", 0, 1)), ME),
            Renew::Lost {
                holder: Some("thief".into())
            }
        );
        assert_eq!(renew(None, ME), Renew::Lost { holder: None });
        assert_eq!(
            renew(Some(&held("", 0, 1)), ME),
            Renew::Lost { holder: None }
        );
    }

    #[test]
    fn renewals_are_overdue_once_the_claim_could_have_run_out() {
        let duration = Duration::from_secs(60);
        assert!(!overdue(at(0), duration, at(59)));
        assert!(overdue(at(0), duration, at(60)));
    }

    #[test]
    fn only_our_own_lease_is_released() {
        assert_eq!(release(Some(&held(ME, 0, 0)), ME), Release::Clear);
        assert_eq!(
            release(Some(&held("next", 0, 1)), ME),
            Release::NotHeld {
                holder: Some("next".into())
            }
        );
        assert_eq!(release(None, ME), Release::NotHeld { holder: None });
    }
}
