//! A capture thread's translator: the NATs as one thread sees them and a `Worker` per engine,
//! kept across batches for as long as the NATs stay the same ([`Dataplane::run_thread`]).
//!
//! A `Worker` is the engine's fast path: cached settings, local counters, a reader slot of
//! its own in the session table's lock. Making one per batch cost what the fast path saves
//! (a settings `Arc` clone, a slot claim, a counter flush into lines every thread shares,
//! once a batch); a thread's workers now live until the NATs or their engines change, and
//! flush their counts when the thread's capture ran dry (see [`Translator::batch_done`]).

use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use netnat_capture::{Action as CaptureAction, Batch, Packet};
use netnat_engine::{Direction, Instant, Nat, Verdict, Worker};
use smallvec::SmallVec;

use super::{Dataplane, Delivery, Instance, LiveNat};

/// The NATs and their engine instances as a thread sees them, with the generations they had,
/// so the thread can tell when to take new ones.
pub(super) struct Snapshot {
    generation: u64,
    nats: Arc<Vec<Arc<LiveNat>>>,
    /// `instances[i]`: those of `nats[i]`, of generation `generations[i]`.
    instances: SmallVec<[Arc<Vec<Arc<Instance>>>; 4]>,
    generations: SmallVec<[u64; 4]>,
    /// `prefixes[i]`: the internal prefix of `nats[i]` as (network, mask), host order.
    prefixes: SmallVec<[(u32, u32); 4]>,
}

impl Snapshot {
    /// The NATs of `plane` as of now. Generations are read before what they count, so a
    /// change that lands in between makes the snapshot look old (and be taken again), never
    /// current.
    pub(super) fn of(plane: &Dataplane) -> Snapshot {
        let generation = plane.generation.load(Ordering::Acquire);
        let nats = plane.nats.load_full();
        let mut generations = SmallVec::new();
        let mut instances = SmallVec::new();
        for nat in nats.iter() {
            generations.push(nat.generation.load(Ordering::Acquire));
            instances.push(nat.instances.load_full());
        }
        let prefixes = nats.iter().map(|n| (u32::from(n.prefix.network()), u32::from(n.prefix.netmask()))).collect();
        Snapshot { generation, nats, instances, generations, prefixes }
    }

    /// Whether `plane` still has these NATs with these engines (a few shared reads, no writes).
    pub(super) fn is_current(&self, plane: &Dataplane) -> bool {
        plane.generation.load(Ordering::Acquire) == self.generation
            && self.nats.iter().zip(&self.generations).all(|(n, g)| n.generation.load(Ordering::Acquire) == *g)
    }

    /// The NAT whose internal prefix holds `a`.
    #[inline]
    fn nat_of(&self, a: Ipv4Addr) -> Option<usize> {
        let a = u32::from(a);
        self.prefixes.iter().position(|&(network, mask)| a & mask == network)
    }
}

/// Translates a capture thread's packets with the NATs of one [`Snapshot`], through a
/// [`Worker`] per engine, made when a packet first needs it.
pub struct Translator<'a> {
    plane: &'a Dataplane,
    snapshot: &'a Snapshot,
    /// By instance: `first[at] + i` is instance `i` of NAT `at`.
    workers: SmallVec<[Option<Worker<'a>>; 4]>,
    first: SmallVec<[usize; 4]>,
    /// Every engine of the snapshot, for their timers (a `Vec`: iterated per packet, where a
    /// `SmallVec` checks where its items are at every step).
    engines: Vec<&'a Nat>,
    /// The worker of a dataplane of one engine ([`Dataplane::with_one_engine`]), made with
    /// the translator: every packet goes to it, with no lookup.
    only: Option<Worker<'a>>,
    /// Whether a worker counted packets since the last flush.
    unflushed: bool,
}

impl<'a> Translator<'a> {
    pub(super) fn new(plane: &'a Dataplane, snapshot: &'a Snapshot) -> Translator<'a> {
        let mut first = SmallVec::new();
        let mut total = 0;
        for instances in &snapshot.instances {
            first.push(total);
            total += instances.len();
        }
        let engines: Vec<&Nat> = snapshot.instances.iter().flat_map(|i| i.iter()).map(|inst| &inst.nat).collect();
        let only = if plane.one_engine { engines.first().map(|nat| nat.worker()) } else { None };
        let workers = (0..total).map(|_| None).collect();
        Translator { plane, snapshot, workers, first, engines, only, unflushed: false }
    }

    /// Translates every packet of a received `batch` at `now` (a live capture's time: one
    /// reading of the clock per batch); see [`Translator::process_batch_at`].
    pub fn process_batch(
        &mut self,
        now: Instant,
        batch: &mut Batch,
        rewritten: impl FnMut(&mut Packet, Delivery) -> CaptureAction,
    ) {
        self.process_batch_at(|_| now, batch, rewritten);
    }

    /// Translates every packet of a received `batch` and sets its new length, its capture
    /// action and the engine's verdict (`meta.verdict`). Each packet is translated at
    /// `now_of(packet)` (a recording's time is each packet's own), after the engine timers
    /// whose `poll_timeout` has come by then ran. How a rewritten packet leaves is the
    /// platform's choice, so `rewritten(packet, delivery)` is called for each
    /// [`Delivery::Translated`] or [`Delivery::FromHost`] (with the length already set) and
    /// returns its action: Linux accepts translated packets and sends hairpinned ones from a
    /// raw socket; Windows reinjects both as outbound.
    pub fn process_batch_at(
        &mut self,
        mut now_of: impl FnMut(&Packet) -> Instant,
        batch: &mut Batch,
        mut rewritten: impl FnMut(&mut Packet, Delivery) -> CaptureAction,
    ) {
        self.unflushed |= !batch.is_empty();
        for p in batch.iter_mut() {
            let now = now_of(p);
            self.run_due_timers(now);
            if p.meta.not_ipv4 {
                p.set_action(CaptureAction::Accept);
                continue;
            }
            // The verdict is stored where the engine's value lands, then read: not returned
            // beside a `Delivery` (a tuple copied through the stack with overlapping loads the
            // CPU could not forward from the stores: a quarter of the loop's samples in perf).
            let delivery = match self.decide(now, p.ip_mut()) {
                Decided::Engine(v) => {
                    p.meta.verdict = Some(v);
                    delivery(v)
                }
                Decided::Unchanged => {
                    p.meta.verdict = None;
                    Delivery::Unchanged
                }
                Decided::NoRoute => {
                    p.meta.verdict = None;
                    Delivery::Drop
                }
            };
            let action = match delivery {
                Delivery::Unchanged => CaptureAction::Accept,
                Delivery::Drop => CaptureAction::Drop,
                Delivery::Translated { len, .. } | Delivery::FromHost { len } => {
                    p.set_ip_len(len);
                    rewritten(p, delivery)
                }
            };
            p.set_action(action);
        }
    }

    /// `handle_timeout` for each engine whose `poll_timeout` has come (a load per engine
    /// when none has): so that a thread's capture honours the engines' timers at the time
    /// of its packets. Threads without packets leave them to the platform's timer (the Linux
    /// timer thread, the Windows network thread's tick).
    #[inline]
    fn run_due_timers(&self, now: Instant) {
        for nat in &self.engines {
            if nat.poll_timeout().is_some_and(|due| due <= now) {
                nat.handle_timeout(now);
            }
        }
    }

    /// Called after each round of the thread: `drained` when its capture had no more packets
    /// waiting (the batch was not full, or the receive timed out). The workers then add their
    /// counts to the engines' statistics, so `Get-NetNatStatistics` is exact once traffic
    /// pauses; under load they add them every `FLUSH_EVERY` packets on their own.
    pub fn batch_done(&mut self, drained: bool) {
        if drained && self.unflushed {
            self.workers.iter_mut().chain(std::iter::once(&mut self.only)).flatten().for_each(Worker::flush);
            self.unflushed = false;
        }
    }

    /// Whether the NATs are still those this translator was made for (a thread checks after
    /// each receive, which may have waited through a change).
    pub fn is_current(&self) -> bool {
        self.snapshot.is_current(self.plane)
    }

    /// Whether the workers hold counts the statistics do not show yet (a thread then waits
    /// for packets only so long, so that a pause flushes them).
    pub fn holds_counts(&self) -> bool {
        self.unflushed
    }

    /// Translates `packet` (IPv4, no link header) in place and says what to do with it.
    #[cfg(test)]
    pub(super) fn process(&mut self, now: Instant, packet: &mut [u8]) -> Delivery {
        match self.decide(now, packet) {
            Decided::Engine(v) => delivery(v),
            Decided::Unchanged => Delivery::Unchanged,
            Decided::NoRoute => Delivery::Drop,
        }
    }

    /// Translates `packet` (IPv4, no link header) in place: which engine decided and what,
    /// or why none was asked.
    // Always inlined: called once per packet.
    #[inline(always)]
    fn decide(&mut self, now: Instant, packet: &mut [u8]) -> Decided {
        if let Some(only) = self.only.as_mut() {
            return Decided::Engine(only.handle_packet(now, packet));
        }
        let Some((src, dst)) = addresses(packet) else { return Decided::Unchanged };
        let snapshot = self.snapshot;
        if let Some(at) = snapshot.nat_of(src) {
            if snapshot.nat_of(dst).is_some() {
                return Decided::Unchanged;
            }
            let Some(i) = snapshot.nats[at].outbound_instance(&snapshot.instances[at], dst, &self.plane.routes) else {
                // No route toward dst (or no usable host address): the kernel could not
                // deliver it either.
                return Decided::NoRoute;
            };
            return Decided::Engine(self.worker(at, i).handle_packet(now, packet));
        }
        let mut asked = Decided::Unchanged;
        for (at, instances) in snapshot.instances.iter().enumerate() {
            for (i, _) in instances.iter().enumerate().filter(|(_, inst)| inst.addresses.contains(&dst)) {
                // The engines run with `UnmatchedInbound::Host`: a packet no mapping claims
                // passes, uncounted as a drop, and may still be another NAT's.
                match self.worker(at, i).handle_packet(now, packet) {
                    Verdict::Pass => asked = Decided::Engine(Verdict::Pass),
                    v => return Decided::Engine(v),
                }
            }
        }
        asked
    }

    /// The worker for instance `i` of NAT `at`.
    #[inline]
    fn worker(&mut self, at: usize, i: usize) -> &mut Worker<'a> {
        let snapshot = self.snapshot;
        self.workers[self.first[at] + i].get_or_insert_with(|| snapshot.instances[at][i].nat.worker())
    }
}

impl std::fmt::Debug for Translator<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nats: Vec<&str> = self.snapshot.nats.iter().map(|n| n.name.as_str()).collect();
        let workers = self.workers.iter().chain(std::iter::once(&self.only)).filter(|w| w.is_some()).count();
        f.debug_struct("Translator").field("nats", &nats).field("workers", &workers).finish()
    }
}

/// Who decided on a packet, and what.
enum Decided {
    /// An engine, with this verdict.
    Engine(Verdict),
    /// No engine: not any NAT's (or between two NATs' internal hosts).
    Unchanged,
    /// No engine: no route toward the destination (or no usable host address), dropped.
    NoRoute,
}

/// What the dataplane does with a packet an engine decided on: a hairpinned packet (both
/// addresses rewritten) now comes from an external address, the host's, which the host must
/// send itself.
#[inline]
fn delivery(v: Verdict) -> Delivery {
    match v {
        Verdict::Forward { direction: Direction::Hairpin, len } => Delivery::FromHost { len },
        Verdict::Forward { direction, len } => Delivery::Translated { len, inbound: direction != Direction::Outbound },
        Verdict::Pass => Delivery::Unchanged,
        Verdict::Held(_) | Verdict::Drop(_) => Delivery::Drop,
    }
}

/// Source and destination of an IPv4 packet, if it is one.
fn addresses(packet: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    if packet.len() < 20 || packet[0] >> 4 != 4 {
        return None;
    }
    let src = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
    Some((src, dst))
}
