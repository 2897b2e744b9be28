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
//! one is removed by the next purge). A slot may briefly hold the key of a mapping being
//! removed or replaced: readers check the mapping's external endpoint.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use dashmap::DashMap;
use smallvec::SmallVec;

use crate::config::{Limits, Protocol, Timeouts};
use crate::ports::ExternalIndex;
use crate::shard_lock::{ReadGuard, ShardedLock, Slot, WriteGuard, SHARDS};
use crate::tcp_state::TcpTrack;
use crate::time::{Duration, Instant};
use crate::verdict::DropReason;

/// An index key: protocol, IPv4 address and port (or ICMP identifier) packed in 56 bits.
pub(crate) fn key(proto: Protocol, addr: u32, port: u16) -> u64 {
    (u64::from(proto.number()) << 48) | (u64::from(addr) << 16) | u64::from(port)
}

/// How stale a session's idle timer may be: a packet within this time of the last one
/// that moved the timer does not write it (so established flows write nothing shared per
/// packet). A session may therefore expire up to this much early; timeouts are seconds.
pub(crate) const IDLE_TIMER_GRANULARITY_MICROS: u64 = 1_000;

/// One session: the internal endpoint's traffic with one remote endpoint. The fields a
/// packet changes are atomics, so the packet path updates them under a shared lock.
#[derive(Debug)]
pub(crate) struct Session {
    pub remote_addr: u32,
    pub remote_port: u16,
    /// Whether the internal endpoint has sent to this remote (what filtering looks at).
    outbound_seen: AtomicBool,
    tcp: AtomicU8,
    pub created: Instant,
    last_seen: AtomicU64,
}

impl Session {
    pub(crate) fn new(remote_addr: u32, remote_port: u16, outbound: bool, now: Instant) -> Session {
        Session {
            remote_addr,
            remote_port,
            outbound_seen: AtomicBool::new(outbound),
            tcp: AtomicU8::new(TcpTrack::default().bits()),
            created: now,
            last_seen: AtomicU64::new(now.as_micros()),
        }
    }

    pub(crate) fn outbound_seen(&self) -> bool {
        self.outbound_seen.load(Ordering::Relaxed)
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

    /// Records a packet: direction, TCP flags (0 for other protocols), idle timer.
    #[inline(always)]
    pub(crate) fn on_packet(&self, proto: Protocol, outbound: bool, flags: u8, now: Instant) {
        if outbound && !self.outbound_seen.load(Ordering::Relaxed) {
            self.outbound_seen.store(true, Ordering::Relaxed);
        }
        if proto == Protocol::Tcp {
            // Only a SYN, FIN, RST or the handshake's last ACK changes the flags' state.
            let old = self.tcp.load(Ordering::Relaxed);
            if !TcpTrack::from_bits(old).unchanged_by(flags) {
                self.update_tcp(old, outbound, flags);
            }
        }
        self.refresh(now);
    }

    /// Moves the TCP flags' state for a packet that changes it; a lost race with a packet
    /// of the same flow on another thread is retried.
    #[cold]
    #[inline(never)]
    fn update_tcp(&self, mut old: u8, outbound: bool, flags: u8) {
        loop {
            let mut track = TcpTrack::from_bits(old);
            track.on_packet(outbound, flags);
            if track.bits() == old {
                return;
            }
            match self.tcp.compare_exchange_weak(old, track.bits(), Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(now_bits) => old = now_bits,
            }
        }
    }

    pub(crate) fn timeout(&self, proto: Protocol, t: &Timeouts) -> Duration {
        match proto {
            Protocol::Udp => t.udp_idle,
            Protocol::Icmp => t.icmp_query,
            Protocol::Tcp if self.tcp().is_established() => t.tcp_established,
            Protocol::Tcp => t.tcp_transient,
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
    pub sessions: SmallVec<[Session; 1]>,
}

impl Mapping {
    /// A mapping from `internal` to `external` (address, port) holding its first session.
    pub(crate) fn new(
        protocol: Protocol,
        internal: (u32, u16),
        external: (u32, u16),
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
            sessions: smallvec::smallvec![first],
        }
    }

    pub(crate) fn session_index(&self, remote_addr: u32, remote_port: u16) -> Option<usize> {
        self.sessions.iter().position(|s| s.remote_addr == remote_addr && s.remote_port == remote_port)
    }

    pub(crate) fn session(&self, remote_addr: u32, remote_port: u16) -> Option<&Session> {
        self.sessions.iter().find(|s| s.remote_addr == remote_addr && s.remote_port == remote_port)
    }
}

/// Deterministic hashing (seeded from the NAT's seed) that an outside sender cannot predict
/// without the seed.
pub(crate) type Hasher = ahash::RandomState;

pub(crate) type ShardMap = HashMap<u64, Mapping, Hasher>;

/// The mappings, sharded by internal key (see the module doc).
pub(crate) struct Mappings {
    lock: ShardedLock<ShardMap>,
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

#[derive(Debug)]
pub(crate) struct Table {
    pub by_internal: Mappings,
    /// External endpoint -> internal key.
    pub external: ExternalIndex,
    sessions: AtomicUsize,
    per_host: DashMap<u32, usize, Hasher>,
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
        }
    }

    /// Live sessions (including idle ones not yet purged).
    pub(crate) fn session_count(&self) -> usize {
        self.sessions.load(Ordering::Relaxed)
    }

    /// Claims room for one more session of `host`, or says which limit stops it.
    pub(crate) fn reserve_session(&self, host: u32, limits: &Limits) -> Result<(), DropReason> {
        self.sessions
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| (n < limits.max_sessions).then_some(n + 1))
            .map_err(|_| DropReason::SessionLimit)?;
        let mut count = self.per_host.entry(host).or_insert(0);
        if *count >= limits.max_sessions_per_host {
            drop(count);
            self.sessions.fetch_sub(1, Ordering::AcqRel);
            return Err(DropReason::HostSessionLimit);
        }
        *count += 1;
        Ok(())
    }

    /// Gives back room for `n` sessions of `host`.
    pub(crate) fn release_sessions(&self, host: u32, n: usize) {
        if n == 0 {
            return;
        }
        self.sessions.fetch_sub(n, Ordering::AcqRel);
        if let Some(mut count) = self.per_host.get_mut(&host) {
            *count = count.saturating_sub(n);
        }
        self.per_host.remove_if(&host, |_, c| *c == 0);
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
            let before = m.sessions.len();
            let mut sessions = core::mem::take(&mut m.sessions);
            sessions.retain(|s| !expire(m, s));
            m.sessions = sessions;
            let n_expired = before - m.sessions.len();
            let gone = m.sessions.is_empty() || remove(m);
            let n_removed = if gone { m.sessions.len() } else { 0 };
            self.release_sessions(m.internal_addr, n_expired + n_removed);
            expired += n_expired as u64;
            removed += n_removed as u64;
            if gone {
                if let Some(t) = port_tables.iter().find(|t| t.addr == m.external_addr) {
                    t.release(m.protocol, m.external_port, *ik);
                }
            }
            !gone
        });
        (expired, removed)
    }

    /// Hash of a key with the table's hasher (used to decorrelate port draws).
    pub(crate) fn hash_key(&self, k: u64) -> u64 {
        self.by_internal.hasher.hash_one(k)
    }
}
