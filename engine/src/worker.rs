//! A per-thread handle on a shared [`Nat`] for the packet path: it reads the settings
//! through a cache (no atomic read-modify-write per packet, unlike `ArcSwap::load`) and
//! counts in plain integers it adds to the shared counters every [`FLUSH_EVERY`] packets and
//! when dropped, so worker threads do not write one shared cache line per packet.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use arc_swap::{ArcSwap, Cache};

use crate::nat::Nat;
use crate::settings::Settings;
use crate::shard_lock::{with_slot, Slot};
use crate::table::ShardMap;
use crate::time::Instant;
use crate::verdict::{Direction, DropReason, Verdict};

/// Packets a worker counts locally before adding to the shared counters.
pub const FLUSH_EVERY: u32 = 1024;

const OUT: usize = 0;
const IN: usize = 1;
const HAIRPIN: usize = 2;
const PASSED: usize = 3;
const HELD: usize = 4;
const DROPPED: usize = 5;

/// One worker thread's view of a [`Nat`]. Create one per thread with [`Nat::worker`]; counts
/// reach [`Nat::stats`] every `FLUSH_EVERY` packets, on [`Worker::flush`] and on drop.
pub struct Worker<'a> {
    nat: &'a Nat,
    settings: Cache<&'a ArcSwap<Settings>, Arc<Settings>>,
    counts: [u64; DROPPED + DropReason::ALL.len()],
    pending: u32,
    /// Its own reader slot in the table's shard lock (`None`: all taken, it shares one);
    /// given back when the worker drops.
    slot: Option<Slot<'a, ShardMap>>,
}

impl core::fmt::Debug for Worker<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Worker").field("nat", self.nat).field("pending", &self.pending).finish()
    }
}

impl Nat {
    /// A per-thread handle for the packet path: same translation, cheaper per packet when
    /// several threads share the NAT (see [`Worker`]).
    pub fn worker(&self) -> Worker<'_> {
        Worker::new(self, &self.settings)
    }
}

impl<'a> Worker<'a> {
    fn new(nat: &'a Nat, settings: &'a ArcSwap<Settings>) -> Worker<'a> {
        Worker {
            nat,
            settings: Cache::new(settings),
            counts: [0; DROPPED + DropReason::ALL.len()],
            pending: 0,
            slot: nat.table.by_internal.claim_slot(),
        }
    }

    /// Same as [`Nat::handle_packet`].
    pub fn handle_packet(&mut self, now: Instant, packet: &mut [u8]) -> Verdict {
        // Borrowed from the cache, not cloned: no reference-count traffic per packet.
        let s: &Arc<Settings> = self.settings.load();
        let nat = self.nat;
        let verdict = match &mut self.slot {
            Some(slot) => with_slot(slot, || nat.process(s, now, packet)),
            None => nat.process(s, now, packet),
        };
        let slot = match verdict {
            Verdict::Forward { direction: Direction::Outbound, .. } => OUT,
            Verdict::Forward { direction: Direction::Inbound, .. } => IN,
            Verdict::Forward { direction: Direction::Hairpin, .. } => HAIRPIN,
            Verdict::Pass => PASSED,
            Verdict::Held(_) => HELD,
            Verdict::Drop(reason) => DROPPED + reason.index(),
        };
        self.counts[slot] += 1;
        self.pending += 1;
        if self.pending >= FLUSH_EVERY {
            self.flush();
        }
        verdict
    }

    /// Adds the local counts to the shared counters now (only those that counted something:
    /// a worker that lives for one short batch writes one or two shared counters, not all).
    pub fn flush(&mut self) {
        let c = &self.nat.counters;
        let shared = [&c.translated_out, &c.translated_in, &c.hairpinned, &c.passed, &c.fragments_held];
        let counters = shared.into_iter().chain(c.dropped.iter());
        for (count, counter) in self.counts.iter_mut().zip(counters) {
            if *count != 0 {
                counter.fetch_add(core::mem::take(count), Ordering::Relaxed);
            }
        }
        self.pending = 0;
    }
}

impl Drop for Worker<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}
