//! The clocks a prune judges ages by (design.md §10, format.md §16 rule 1).
//!
//! Marks and unindexed packs are judged by the *store's* clock, so that the grace period does
//! not depend on the marking and the deleting host agreeing on the time: a prune reads the
//! store's clock from the last-modified time of the lock object it wrote, as the lock itself
//! does for staleness ([`LockGuard::store_now`]), marks packs with the store's
//! time, and deletes a marked pack only when the grace period has passed both by the store's
//! clock and by its own. When the two clocks differ by more than [`MAX_CLOCK_SKEW`], nothing is
//! deleted by age at all.

use crate::error::Result;
use crate::repo::keys::now_ns;
use crate::repo::lock::LockGuard;
use std::time::Duration;

/// The most the local clock and the store's may differ before a prune refuses to delete
/// anything by age (it still plans and marks). Five minutes: far above what NTP-synchronised
/// hosts and stores differ by (and above a timestamp's second granularity on S3-like stores
/// plus a slow lock write), far below any sensible grace period.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

fn max_skew_ns() -> i64 {
    i64::try_from(MAX_CLOCK_SKEW.as_nanos()).unwrap_or(i64::MAX)
}

/// Local time and the store's, read at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Clocks {
    /// The local time of the reading (ns since the epoch).
    pub local_ns: i64,
    /// The store's clock minus the local one (ns), from an object just written; `None` when
    /// not measured (a dry run writes nothing, so it judges by the local clock alone).
    pub store_offset_ns: Option<i64>,
}

/// How old a mark is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkAge {
    /// Dated more than [`MAX_CLOCK_SKEW`] after now by either clock: written by a host whose
    /// clock was ahead. Counts as just marked.
    Future,
    /// The smaller of its ages by the local and the store's clock (ns; may be slightly
    /// negative).
    Age(i64),
}

impl Clocks {
    /// The local clock alone (a dry run).
    pub fn unmeasured() -> Clocks {
        Clocks {
            local_ns: now_ns(),
            store_offset_ns: None,
        }
    }

    /// Read the store's clock as the lock knows it: from the last-modified time the store gave
    /// the lock object written last (at taking or at the latest refresh), advanced by the boot
    /// time since. A store that gives no time leaves the local clock alone (as a dry run).
    pub fn measure(lock: &LockGuard) -> Result<Clocks> {
        Ok(match lock.store_now()? {
            Some(now) => Clocks {
                local_ns: now.local_ns,
                store_offset_ns: Some(now.store_ns.saturating_sub(now.local_ns)),
            },
            None => Clocks::unmeasured(),
        })
    }

    /// The store's time at the reading (the local time when not measured).
    pub fn store_ns(&self) -> i64 {
        self.local_ns
            .saturating_add(self.store_offset_ns.unwrap_or(0))
    }

    /// Why nothing may be deleted by age, if so: the clocks differ by more than
    /// [`MAX_CLOCK_SKEW`]. One line.
    pub fn skew_refusal(&self) -> Option<String> {
        let off = self.store_offset_ns?;
        if off.unsigned_abs() <= max_skew_ns().unsigned_abs() {
            return None;
        }
        let secs = off.unsigned_abs() / 1_000_000_000;
        Some(format!(
            "this host's clock is {} {} the store's (more than {} allowed): nothing is deleted \
             by age until the clocks agree",
            humantime::format_duration(Duration::from_secs(secs)),
            if off < 0 { "ahead of" } else { "behind" },
            humantime::format_duration(MAX_CLOCK_SKEW)
        ))
    }

    /// The age of a mark dated `marked_ns`, by both clocks.
    pub fn mark_age(&self, marked_ns: i64) -> MarkAge {
        let local = self.local_ns.saturating_sub(marked_ns);
        let store = self.store_ns().saturating_sub(marked_ns);
        let age = local.min(store);
        if age < -max_skew_ns() {
            MarkAge::Future
        } else {
            MarkAge::Age(age)
        }
    }

    /// The age of an object the store last modified at `modified_ns`, by the store's clock.
    pub fn store_age(&self, modified_ns: i64) -> i64 {
        self.store_ns().saturating_sub(modified_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000_000;
    const HOUR: i64 = 60 * MIN;

    fn clocks(local: i64, offset: Option<i64>) -> Clocks {
        Clocks {
            local_ns: local,
            store_offset_ns: offset,
        }
    }

    #[test]
    fn skew_within_the_bound_is_accepted_beyond_it_refused() {
        let t = 1_000 * HOUR;
        assert_eq!(clocks(t, None).skew_refusal(), None);
        assert_eq!(clocks(t, Some(4 * MIN)).skew_refusal(), None);
        assert_eq!(clocks(t, Some(-5 * MIN)).skew_refusal(), None);
        let ahead = clocks(t, Some(-25 * HOUR)).skew_refusal().unwrap();
        assert!(ahead.contains("1day 1h ahead of"), "{ahead}");
        let behind = clocks(t, Some(6 * MIN)).skew_refusal().unwrap();
        assert!(behind.contains("6m behind"), "{behind}");
    }

    #[test]
    fn a_mark_is_as_old_as_the_younger_of_its_two_ages() {
        let t = 1_000 * HOUR;
        // Store 2 min behind: the store's age is the smaller one.
        let c = clocks(t, Some(-2 * MIN));
        assert_eq!(c.mark_age(t - 24 * HOUR), MarkAge::Age(24 * HOUR - 2 * MIN));
        // Store ahead: the local age is the smaller one.
        let c = clocks(t, Some(3 * MIN));
        assert_eq!(c.mark_age(t - HOUR), MarkAge::Age(HOUR));
        // A little in the future (within the skew bound): just marked.
        assert_eq!(c.mark_age(t + MIN), MarkAge::Age(-MIN));
        // Far in the future (a host whose clock was a day ahead marked it): flagged.
        assert_eq!(c.mark_age(t + 24 * HOUR), MarkAge::Future);
        assert_eq!(c.store_age(t - HOUR), HOUR + 3 * MIN);
    }
}
