//! Counters: packets translated per direction, dropped per reason, sessions created/expired.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::verdict::DropReason;

/// Live counters, shared by the worker threads. Relaxed atomics: each is a tally, nothing
/// is synchronised through them.
#[derive(Debug)]
pub(crate) struct Counters {
    pub translated_out: AtomicU64,
    pub translated_in: AtomicU64,
    pub hairpinned: AtomicU64,
    pub passed: AtomicU64,
    pub fragments_held: AtomicU64,
    pub sessions_created: AtomicU64,
    pub sessions_expired: AtomicU64,
    pub sessions_removed: AtomicU64,
    pub dropped: [AtomicU64; DropReason::ALL.len()],
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            translated_out: AtomicU64::new(0),
            translated_in: AtomicU64::new(0),
            hairpinned: AtomicU64::new(0),
            passed: AtomicU64::new(0),
            fragments_held: AtomicU64::new(0),
            sessions_created: AtomicU64::new(0),
            sessions_expired: AtomicU64::new(0),
            sessions_removed: AtomicU64::new(0),
            dropped: core::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn drop(&self, reason: DropReason) {
        bump(&self.dropped[reason.index()]);
    }

    pub(crate) fn snapshot(&self, sessions_active: u64) -> Stats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            translated_out: load(&self.translated_out),
            translated_in: load(&self.translated_in),
            hairpinned: load(&self.hairpinned),
            passed: load(&self.passed),
            fragments_held: load(&self.fragments_held),
            sessions_created: load(&self.sessions_created),
            sessions_expired: load(&self.sessions_expired),
            sessions_removed: load(&self.sessions_removed),
            sessions_active,
            dropped: DropReason::ALL.iter().map(|r| (r.name().to_owned(), load(&self.dropped[r.index()]))).collect(),
        }
    }
}

/// A snapshot of the counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Outbound packets translated (source rewritten).
    pub translated_out: u64,
    /// Inbound packets translated (destination rewritten).
    pub translated_in: u64,
    /// Hairpinned packets (internal to internal through an external endpoint).
    pub hairpinned: u64,
    /// Packets that were not the NAT's business and passed unchanged.
    pub passed: u64,
    /// Non-first fragments held until their first fragment came.
    pub fragments_held: u64,
    /// Sessions created.
    pub sessions_created: u64,
    /// Sessions that ended by idle timeout.
    pub sessions_expired: u64,
    /// Sessions removed by configuration changes (Remove-NetNat, removed addresses or mappings).
    pub sessions_removed: u64,
    /// Sessions alive at the time of the snapshot.
    pub sessions_active: u64,
    /// Dropped packets by reason (every reason present, zero or not).
    pub dropped: BTreeMap<String, u64>,
}

impl Stats {
    /// All dropped packets.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }

    /// Dropped packets for one reason.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped.get(reason.name()).copied().unwrap_or(0)
    }
}
