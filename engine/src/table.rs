//! The translation table: mappings (one per internal endpoint, RFC 4787 endpoint-independent
//! mapping) each holding its sessions (one per remote endpoint, the NetNatSession rows).
//!
//! The mappings live in 64 shards keyed by internal endpoint; the external index
//! (`ports.rs`, one directly indexed slot per external address, protocol and port) gives an
//! inbound packet the internal key without a lock. The shards are behind a
//! `shard_lock::ShardedLock`, whose readers write only a cache line of their own thread.
//! Why: an established flow's packet only reads the mapping (what a session changes per
//! packet, its idle timer, TCP flags and direction, are atomics written only when they
//! change), so threads translating different flows write no shared cache line. With one
//! lock word per shard (DashMap) every packet wrote the shard's word and two threads
//! bounced it between their cores. Writers (a new mapping or session, a sweep) pay for it.
//!
//! Invariants: a mapping's external slot holds its internal key; no two mappings share an
//! external (protocol, address, port); a mapping always holds at least one session (an empty
//! one is removed by the next purge or sweep visit); every mapping has an entry carrying its
//! `sweep_tag` in its shard's sweep queue, which the incremental sweep visits in order
//! (`Table::sweep_step`); a mapping's `inbound_sessions` counts its sessions that say
//! `opened_inbound`. A slot may briefly hold the key of a mapping being
//! removed or replaced: readers check the mapping's external endpoint.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};

use dashmap::DashMap;
use parking_lot::Mutex;

use crate::config::{Limits, Protocol, Timeouts};
use crate::endpoint::{Inside, Outside, Remote};
use crate::events::{EndReason, Event, EventKind, EventQueue};
pub(crate) use crate::mapping_sessions::Sessions;
use crate::ports::ExternalIndex;
use crate::shard_lock::{ReadGuard, ShardedLock, Slot, WriteGuard, SHARDS};
use crate::tcp_state::{self, TcpSegment, TcpSeqs, TcpTrack};
use crate::time::{Duration, Instant};
use crate::verdict::DropReason;

fn tagged(ik: u64, tag: u8) -> u64 {
    (ik & KEY_BITS) | (u64::from(tag) << 56)
}

/// An index key: protocol, IPv4 address and port (or ICMP identifier) packed in 56 bits.
pub(crate) fn key(proto: Protocol, addr: u32, port: u16) -> u64 {
    (u64::from(proto.number()) << 48) | (u64::from(addr) << 16) | u64::from(port)
}

/// How stale a session's idle timer may be: a packet within this time of the last one
/// that moved the timer does not write it (so established flows write nothing shared per
/// packet). A session may therefore expire up to this much early; timeouts are seconds.
pub(crate) const IDLE_TIMER_GRANULARITY_MICROS: u64 = 1_000;

const OUTBOUND_SEEN: u8 = 1;
const OPENED_INBOUND: u8 = 2;

/// One session: the internal endpoint's traffic with one remote endpoint. The fields a
/// packet changes are atomics, so the packet path updates them under a shared lock.
#[derive(Debug)]
pub(crate) struct Session {
    pub remote_addr: u32,
    pub remote_port: u16,
    /// `OUTBOUND_SEEN` (the internal endpoint has sent to this remote: what filtering looks
    /// at) and `OPENED_INBOUND` (created by an inbound packet; fixed at creation).
    flags: AtomicU8,
    tcp: AtomicU8,
    pub created: Instant,
    last_seen: AtomicU64,
    /// TCP sequence numbers and windows, per direction (zero for UDP and ICMP).
    seqs: TcpSeqs,
    /// Packets and bytes each way, when the NAT counts them (`NatConfig::session_counters`);
    /// boxed, so a session that is not counted carries one pointer.
    counters: Option<Box<SessionCounters>>,
}

/// A session's packets and bytes (IPv4 total length) out and in.
#[derive(Debug, Default)]
pub(crate) struct SessionCounters {
    packets: [AtomicU64; 2],
    bytes: [AtomicU64; 2],
}

impl Session {
    pub(crate) fn new(remote_addr: u32, remote_port: u16, outbound: bool, now: Instant) -> Session {
        Session {
            remote_addr,
            remote_port,
            flags: AtomicU8::new(if outbound { OUTBOUND_SEEN } else { OPENED_INBOUND }),
            tcp: AtomicU8::new(TcpTrack::default().bits()),
            created: now,
            last_seen: AtomicU64::new(now.as_micros()),
            seqs: TcpSeqs::default(),
            counters: None,
        }
    }

    /// The same session with its packets and bytes counted, when `on`.
    pub(crate) fn counted(mut self, on: bool) -> Session {
        if on {
            self.counters = Some(Box::default());
        }
        self
    }

    /// Counts one packet of `bytes` (its IPv4 total length) out or in, if this session is
    /// counted.
    #[inline(always)]
    pub(crate) fn count(&self, outbound: bool, bytes: u16) {
        if let Some(c) = &self.counters {
            let i = usize::from(!outbound);
            c.packets[i].fetch_add(1, Ordering::Relaxed);
            c.bytes[i].fetch_add(u64::from(bytes), Ordering::Relaxed);
        }
    }

    /// (packets out, packets in, bytes out, bytes in), if counted.
    pub(crate) fn counts(&self) -> Option<crate::session::SessionCounts> {
        self.counters.as_ref().map(|c| crate::session::SessionCounts {
            packets_out: c.packets[0].load(Ordering::Relaxed),
            packets_in: c.packets[1].load(Ordering::Relaxed),
            bytes_out: c.bytes[0].load(Ordering::Relaxed),
            bytes_in: c.bytes[1].load(Ordering::Relaxed),
        })
    }

    pub(crate) fn outbound_seen(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & OUTBOUND_SEEN != 0
    }

    /// Whether an inbound packet created it (counted in its mapping's `inbound_sessions`).
    pub(crate) fn opened_inbound(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & OPENED_INBOUND != 0
    }

    pub(crate) fn tcp(&self) -> TcpTrack {
        TcpTrack::from_bits(self.tcp.load(Ordering::Relaxed))
    }

    pub(crate) fn last_seen(&self) -> Instant {
        Instant::from_micros(self.last_seen.load(Ordering::Relaxed))
    }

    /// Restarts the idle timer at `now` (unless it moved less than the granularity ago).
    #[inline]
    pub(crate) fn refresh(&self, now: Instant) {
        let last = self.last_seen.load(Ordering::Relaxed);
        if now.as_micros().saturating_sub(last) >= IDLE_TIMER_GRANULARITY_MICROS {
            self.last_seen.store(now.as_micros(), Ordering::Relaxed);
        }
    }

    /// Records a packet: direction, TCP state (`seg` is [`TcpSegment::NONE`] for other
    /// protocols), idle timer. A TCP RST or FIN outside the tracked window records nothing
    /// and is refused (see `tcp_state.rs`).
    #[inline(always)]
    pub(crate) fn on_packet(
        &self,
        proto: Protocol,
        outbound: bool,
        seg: TcpSegment,
        now: Instant,
    ) -> Result<(), DropReason> {
        if proto == Protocol::Tcp {
            tcp_state::on_segment(&self.tcp, &self.seqs, outbound, &seg)?;
        }
        if outbound && !self.outbound_seen() {
            self.flags.fetch_or(OUTBOUND_SEEN, Ordering::Relaxed);
        }
        self.refresh(now);
        self.count(outbound, seg.ip_len);
        Ok(())
    }

    pub(crate) fn timeout(&self, proto: Protocol, t: &Timeouts) -> Duration {
        match proto {
            Protocol::Udp => t.udp_idle,
            Protocol::Icmp => t.icmp_query,
            Protocol::Tcp if self.tcp().is_established() => t.tcp_established,
            Protocol::Tcp => t.tcp_transient,
        }
    }

    /// Why it ends once it is no longer alive: a TCP connection that closed or reset, or
    /// plain idleness.
    pub(crate) fn end_reason(&self, proto: Protocol) -> EndReason {
        use crate::session::TcpState;
        let closed = matches!(self.tcp().state(), TcpState::Closing | TcpState::Closed | TcpState::Reset);
        if proto == Protocol::Tcp && closed {
            EndReason::TcpClosed
        } else {
            EndReason::IdleTimeout
        }
    }

    /// Alive while idle for no longer than its timeout.
    pub(crate) fn is_alive(&self, proto: Protocol, now: Instant, t: &Timeouts) -> bool {
        now.saturating_duration_since(self.last_seen()) <= self.timeout(proto, t)
    }
}

/// One endpoint-independent mapping and its sessions.
#[derive(Debug)]
pub(crate) struct Mapping {
    pub protocol: Protocol,
    pub internal_addr: u32,
    pub internal_port: u16,
    pub external_addr: u32,
    pub external_port: u16,
    /// Created by a static mapping (its filtering is the mapping's remote prefix).
    pub from_static: bool,
    /// Tells this mapping's entry in its shard's sweep queue from a stale one left by an
    /// earlier mapping of the same internal key (see `Table::sweep_step`).
    sweep_tag: u8,
    /// Sessions that inbound packets created (`Session::opened_inbound`), capped by
    /// `Limits::max_inbound_sessions_per_mapping`.
    pub inbound_sessions: u32,
    pub sessions: Sessions,
}

impl Mapping {
    /// A mapping from `internal` to `external` (address, port) holding its first session.
    pub(crate) fn new(
        protocol: Protocol,
        internal: Inside,
        external: Outside,
        from_static: bool,
        first: Session,
    ) -> Mapping {
        Mapping {
            protocol,
            internal_addr: internal.0,
            internal_port: internal.1,
            external_addr: external.0,
            external_port: external.1,
            from_static,
            sweep_tag: 0,
            inbound_sessions: u32::from(first.opened_inbound()),
            sessions: Sessions::one(first),
        }
    }

    /// Its internal endpoint.
    #[inline]
    pub(crate) fn inside(&self) -> Inside {
        Inside(self.internal_addr, self.internal_port)
    }

    /// Its external endpoint.
    #[inline]
    pub(crate) fn outside(&self) -> Outside {
        Outside(self.external_addr, self.external_port)
    }

    #[inline(always)]
    pub(crate) fn session(&self, remote_addr: u32, remote_port: u16) -> Option<&Session> {
        self.sessions.find(remote_addr, remote_port)
    }

    /// Inbound-opened sessions charged to the host's inbound cap
    /// ([`Limits::inbound_sessions_per_host`]): those of a dynamic mapping (a static
    /// mapping's are its server's business, bounded by the per-host cap only).
    pub(crate) fn charged_inbound(&self) -> usize {
        if self.from_static {
            0
        } else {
            self.inbound_sessions as usize
        }
    }

    /// An event about this mapping, or (with `remote`) one of its sessions.
    pub(crate) fn event(&self, time: Instant, kind: EventKind, remote: Option<Remote>) -> Event {
        Event {
            time,
            kind,
            protocol: self.protocol,
            internal: self.inside().socket_addr(),
            external: Some(self.outside().socket_addr()),
            remote: remote.map(Remote::socket_addr),
        }
    }

    /// What removing the whole mapping gives back.
    pub(crate) fn all_released(&self) -> Released {
        Released { sessions: self.sessions.len(), opened_inbound: self.charged_inbound() }
    }

    /// Removes the sessions for which `expire` says so; returns what to give back.
    pub(crate) fn expire_sessions(&mut self, mut expire: impl FnMut(&Mapping, &Session) -> bool) -> Released {
        let before = self.sessions.len();
        let mut sessions = core::mem::replace(&mut self.sessions, Sessions::empty());
        let mut inbound_gone = 0;
        sessions.retain(|s| {
            let gone = expire(self, s);
            inbound_gone += u32::from(gone && s.opened_inbound());
            !gone
        });
        self.sessions = sessions;
        self.inbound_sessions -= inbound_gone;
        let opened_inbound = if self.from_static { 0 } else { inbound_gone as usize };
        Released { sessions: before - self.sessions.len(), opened_inbound }
    }
}

/// Deterministic hashing (seeded from the NAT's seed) that an outside sender cannot predict
/// without the seed.
pub(crate) type Hasher = ahash::RandomState;

pub(crate) type ShardMap = HashMap<u64, Mapping, Hasher>;

/// The mappings, sharded by internal key (see the module doc).
pub(crate) struct Mappings {
    pub(crate) lock: ShardedLock<ShardMap>,
    hasher: Hasher,
}

impl core::fmt::Debug for Mappings {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Mappings").field("shards", &SHARDS).finish_non_exhaustive()
    }
}

impl Mappings {
    fn new(hasher: Hasher) -> Mappings {
        Mappings { lock: ShardedLock::new(|| HashMap::with_hasher(hasher.clone())), hasher }
    }

    #[inline(always)]
    fn shard(&self, ik: u64) -> usize {
        // Bits below the top 7, which the shard's own table uses for its control bytes.
        let h = self.hasher.hash_one(ik);
        ((h << 7) >> (64 - SHARDS.trailing_zeros())) as usize
    }

    /// The shard holding `ik`, for reading (the packet path).
    #[inline(always)]
    pub(crate) fn read(&self, ik: u64) -> ReadGuard<'_, ShardMap> {
        self.lock.read(self.shard(ik))
    }

    /// The shard holding `ik`, for changes.
    pub(crate) fn write(&self, ik: u64) -> WriteGuard<'_, ShardMap> {
        self.lock.write(self.shard(ik))
    }

    /// A reader slot of its own for a worker thread (see `shard_lock.rs`), given back when
    /// dropped.
    pub(crate) fn claim_slot(&self) -> Option<Slot<'_, ShardMap>> {
        self.lock.claim_slot()
    }

    /// Calls `f` on every mapping (a consistent view per shard, not across shards).
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Mapping)) {
        for i in 0..SHARDS {
            self.lock.read(i).values().for_each(&mut f);
        }
    }

    /// Keeps the mappings for which `keep` says so, one shard locked at a time.
    fn retain(&self, mut keep: impl FnMut(&u64, &mut Mapping) -> bool) {
        for i in 0..SHARDS {
            self.lock.write(i).retain(&mut keep);
        }
    }
}

/// Bits of a sweep-queue entry that hold the internal key (`key` uses 56); the top byte
/// holds the mapping's `sweep_tag`.
const KEY_BITS: u64 = (1 << 56) - 1;

/// Where the incremental sweep is in its round over the shards' queues.
#[derive(Debug, Default)]
struct SweepCursor {
    shard: usize,
    /// Entries of this shard's queue still to visit this round (`None`: not started).
    left: Option<usize>,
}

/// What one `Table::sweep_step` did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SweepStep {
    /// Sessions expired.
    pub expired: u64,
    /// Mappings and sessions looked at (at most the budget plus one mapping's sessions).
    pub work: usize,
    /// The step began a new round.
    pub round_started: bool,
    /// The step finished a round: every mapping that existed when the round reached its
    /// shard has been visited.
    pub round_done: bool,
}

/// One internal host's share of the table.
#[derive(Clone, Copy, Debug, Default)]
struct HostSessions {
    /// Its sessions ([`Limits::max_sessions_per_host`]).
    all: usize,
    /// Those of them inbound packets opened on its dynamic mappings
    /// ([`Limits::inbound_sessions_per_host`], [`Mapping::charged_inbound`]).
    opened_inbound: usize,
}

/// Sessions given back to the table: how many, and how many of them inbound packets opened on
/// a dynamic mapping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Released {
    pub sessions: usize,
    pub opened_inbound: usize,
}

impl Released {
    /// One session that an inbound packet opened on a dynamic mapping, replaced or refused.
    pub(crate) const ONE_OPENED_INBOUND: Released = Released { sessions: 0, opened_inbound: 1 };
    /// One session.
    pub(crate) const ONE: Released = Released { sessions: 1, opened_inbound: 0 };
}

#[derive(Debug)]
pub(crate) struct Table {
    pub by_internal: Mappings,
    /// External endpoint -> internal key.
    pub external: ExternalIndex,
    sessions: AtomicUsize,
    per_host: DashMap<u32, HostSessions, Hasher>,
    /// Per shard, its mappings' internal keys (tagged, see `KEY_BITS`) in the order the sweep
    /// visits them: visited entries go to the back, so a round visits each mapping once and
    /// no sweep walks more than its budget. Locked after the shard, never before it.
    sweep_queues: Box<[Mutex<VecDeque<u64>>]>,
    /// Held through a sweep step (one sweeper at a time).
    cursor: Mutex<SweepCursor>,
    /// Session events, when asked for (`Nat::set_events`).
    pub events: EventQueue,
}

impl Table {
    pub(crate) fn new(seed: u64) -> Table {
        let h = || {
            let s = crate::alloc::mix(seed);
            ahash::RandomState::with_seeds(s, s.rotate_left(17), s.rotate_left(31), s.rotate_left(47))
        };
        Table {
            by_internal: Mappings::new(h()),
            external: ExternalIndex::default(),
            sessions: AtomicUsize::new(0),
            per_host: DashMap::with_hasher_and_shard_amount(h(), 64),
            sweep_queues: (0..SHARDS).map(|_| Mutex::new(VecDeque::new())).collect(),
            cursor: Mutex::new(SweepCursor::default()),
            events: EventQueue::default(),
        }
    }

    /// Puts a new mapping (just inserted, its shard still locked for writing) in its shard's
    /// sweep queue. Every mapping inserted into `by_internal` must be enqueued, or it is
    /// never swept.
    pub(crate) fn enqueue(&self, ik: u64, m: &mut Mapping) {
        let mut q = self.sweep_queues[self.by_internal.shard(ik)].lock();
        // A stale entry of an earlier mapping of `ik` may still be queued; the tag tells them
        // apart. Where tags collide (1 in 256), the first visit re-tags the mapping and the
        // other entry is stale from then on: a visit too many, nothing worse.
        m.sweep_tag = q.back().map_or(0, |&e| (e >> 56) as u8).wrapping_add(1);
        q.push_back(tagged(ik, m.sweep_tag));
    }

    /// One bounded step of the sweep: visits mappings in queue order from where the last
    /// step stopped, removing the sessions `expire` says so and the mappings left empty,
    /// until `budget` mappings and sessions have been looked at or the round is done.
    pub(crate) fn sweep_step(
        &self,
        now: Instant,
        budget: usize,
        mut expire: impl FnMut(&Mapping, &Session) -> bool,
    ) -> SweepStep {
        let mut cursor = self.cursor.lock();
        let port_tables = self.external.all();
        let mut step = SweepStep { round_started: cursor.shard == 0 && cursor.left.is_none(), ..SweepStep::default() };
        while step.work < budget && !step.round_done {
            let i = cursor.shard;
            let mut shard = self.by_internal.lock.write(i);
            let mut q = self.sweep_queues[i].lock();
            let mut left = cursor.left.unwrap_or(q.len()).min(q.len());
            while left > 0 && step.work < budget {
                left -= 1;
                let Some(e) = q.pop_front() else { break };
                let ik = e & KEY_BITS;
                step.work += 1;
                let Some(m) = shard.get_mut(&ik).filter(|m| m.sweep_tag == (e >> 56) as u8) else {
                    continue; // stale: its mapping is gone or was re-queued under a new tag
                };
                step.work += m.sessions.len();
                let mut last_end = EndReason::IdleTimeout;
                let released = m.expire_sessions(|m, sess| {
                    let gone = expire(m, sess);
                    if gone {
                        last_end = sess.end_reason(m.protocol);
                        self.session_event(now, EventKind::SessionDeleted(last_end), m, sess);
                    }
                    gone
                });
                step.expired += released.sessions as u64;
                self.release_sessions(m.internal_addr, released);
                if m.sessions.is_empty() {
                    if let Some(t) = port_tables.iter().find(|t| t.addr == m.external_addr) {
                        t.release(m.protocol, m.external_port, ik);
                    }
                    self.events.emit(|| m.event(now, EventKind::MappingDeleted(last_end), None));
                    shard.remove(&ik);
                } else {
                    // A new tag, so a duplicate entry of this mapping (left by a removal and
                    // re-creation racing a round) is found stale.
                    m.sweep_tag = m.sweep_tag.wrapping_add(1);
                    q.push_back(tagged(ik, m.sweep_tag));
                }
            }
            if left == 0 {
                *cursor = SweepCursor { shard: i + 1, left: None };
                if cursor.shard == SHARDS {
                    *cursor = SweepCursor::default();
                    step.round_done = true;
                }
            } else {
                cursor.left = Some(left);
            }
        }
        step
    }

    /// Live sessions (including idle ones not yet purged).
    pub(crate) fn session_count(&self) -> usize {
        self.sessions.load(Ordering::Relaxed)
    }

    /// Queues an event about `m`'s session `sess`.
    pub(crate) fn session_event(&self, time: Instant, kind: EventKind, m: &Mapping, sess: &Session) {
        self.events.emit(|| m.event(time, kind, Some(Remote(sess.remote_addr, sess.remote_port))));
    }

    /// Queues the events of a new mapping `m` with its first session (the one with `remote`).
    pub(crate) fn mapping_created(&self, time: Instant, m: &Mapping, remote: Remote) {
        self.events.emit(|| m.event(time, EventKind::MappingCreated, None));
        self.events.emit(|| m.event(time, EventKind::SessionCreated, Some(remote)));
    }

    /// Claims room for one more session of `host`, or says which limit stops it.
    pub(crate) fn reserve_session(&self, host: u32, limits: &Limits) -> Result<(), DropReason> {
        self.sessions
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| (n < limits.max_sessions).then_some(n + 1))
            .map_err(|_| DropReason::SessionLimit)?;
        let mut count = self.per_host.entry(host).or_default();
        if count.all >= limits.max_sessions_per_host {
            drop(count);
            self.sessions.fetch_sub(1, Ordering::AcqRel);
            self.per_host.remove_if(&host, |_, c| c.all == 0 && c.opened_inbound == 0);
            return Err(DropReason::HostSessionLimit);
        }
        count.all += 1;
        Ok(())
    }

    /// Claims room for one more inbound-opened session on a dynamic mapping of `host` (on top
    /// of [`Table::reserve_session`]), or refuses it with `InboundSessionLimit`.
    pub(crate) fn reserve_opened_inbound(&self, host: u32, limits: &Limits) -> Result<(), DropReason> {
        let mut count = self.per_host.entry(host).or_default();
        if count.opened_inbound >= limits.inbound_sessions_per_host() {
            drop(count);
            self.per_host.remove_if(&host, |_, c| c.all == 0 && c.opened_inbound == 0);
            return Err(DropReason::InboundSessionLimit);
        }
        count.opened_inbound += 1;
        Ok(())
    }

    /// Gives back what `host`'s sessions held.
    pub(crate) fn release_sessions(&self, host: u32, released: Released) {
        if released == Released::default() {
            return;
        }
        self.sessions.fetch_sub(released.sessions, Ordering::AcqRel);
        if let Some(mut count) = self.per_host.get_mut(&host) {
            count.all = count.all.saturating_sub(released.sessions);
            count.opened_inbound = count.opened_inbound.saturating_sub(released.opened_inbound);
        }
        self.per_host.remove_if(&host, |_, c| c.all == 0 && c.opened_inbound == 0);
    }

    /// `host`'s (sessions, inbound-opened sessions on dynamic mappings), for tests.
    #[cfg(test)]
    pub(crate) fn host_counts(&self, host: u32) -> (usize, usize) {
        self.per_host.get(&host).map_or((0, 0), |c| (c.all, c.opened_inbound))
    }

    /// Removes sessions and mappings: every session for which `expire` says so, then every
    /// mapping left empty or for which `remove` says so. Returns (expired, removed) counts.
    pub(crate) fn purge(
        &self,
        mut expire: impl FnMut(&Mapping, &Session) -> bool,
        mut remove: impl FnMut(&Mapping) -> bool,
    ) -> (u64, u64) {
        let (mut expired, mut removed) = (0u64, 0u64);
        let port_tables = self.external.all();
        self.by_internal.retain(|ik, m| {
            let now = self.events.latest();
            let expired_here = m.expire_sessions(|m, sess| {
                let gone = expire(m, sess);
                if gone {
                    self.session_event(now, EventKind::SessionDeleted(sess.end_reason(m.protocol)), m, sess);
                }
                gone
            });
            let empty = m.sessions.is_empty();
            let gone = empty || remove(m);
            let removed_here = if gone { m.all_released() } else { Released::default() };
            if gone && self.events.enabled() {
                for sess in m.sessions.iter() {
                    self.session_event(now, EventKind::SessionDeleted(EndReason::Removed), m, sess);
                }
                // An empty mapping lost its last session to its timer (a reclaim on the packet
                // path); the others go with the configuration.
                let end = if empty { EndReason::IdleTimeout } else { EndReason::Removed };
                self.events.emit(|| m.event(now, EventKind::MappingDeleted(end), None));
            }
            self.release_sessions(
                m.internal_addr,
                Released {
                    sessions: expired_here.sessions + removed_here.sessions,
                    opened_inbound: expired_here.opened_inbound + removed_here.opened_inbound,
                },
            );
            expired += expired_here.sessions as u64;
            removed += removed_here.sessions as u64;
            if gone {
                if let Some(t) = port_tables.iter().find(|t| t.addr == m.external_addr) {
                    t.release(m.protocol, m.external_port, *ik);
                }
            }
            !gone
        });
        (expired, removed)
    }

    /// The hasher of a mapping's session map (see `Sessions::insert`).
    pub(crate) fn hasher(&self) -> &Hasher {
        &self.by_internal.hasher
    }

    /// Hash of a key with the table's hasher (used to decorrelate port draws).
    pub(crate) fn hash_key(&self, k: u64) -> u64 {
        self.by_internal.hasher.hash_one(k)
    }
}
