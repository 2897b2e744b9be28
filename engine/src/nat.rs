//! The engine: one NAT (one NetNat object), its table and counters, and the packet path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use crate::config::{ConfigError, HairpinningMode, NatConfig, Protocol, UnmatchedInbound};
use crate::endpoint::{Inside, Outside, Remote};
use crate::filter::FilteringPolicy;
use crate::fragments::{FragKey, Fragments, Hold, Outcome, Side as FragSide};
use crate::rewrite::{rewrite_checked, Side};
use crate::session::{MappingInfo, SessionInfo};
use crate::settings::{Filters, Settings};
use crate::stats::{bump, Counters, Stats};
use crate::table::Table;
use crate::tcp_state::TcpSegment;
use crate::time::{Duration, Instant};
use crate::verdict::{Direction, DropReason, ReleasedPacket, Verdict};
use crate::wire::{icmp, tcp, udp};

/// How often `poll_timeout` asks for a new sweep round over the idle sessions. Expired
/// sessions admit nothing in between (every lookup checks the idle time); the sweep frees
/// their ports and memory.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// The sweep is incremental: each `handle_timeout` looks at no more than this many mappings
/// and sessions (plus the sessions of the mapping it stops in, at most a host's cap): about
/// 0.8 ms at 1 M sessions, where each mapping visited is a cache miss (BENCHMARKS.md, "One
/// sweep call"); a round over 1 M sessions takes 64 calls.
pub const SWEEP_BUDGET: usize = 16 * 1024;

/// What a sweep step forced on the packet path may look at: a quarter of `SWEEP_BUDGET`, so
/// the packet that meets a full table waits about 0.2 ms, not a whole sweep.
pub const FORCED_SWEEP_BUDGET: usize = SWEEP_BUDGET / 4;

/// While a round is under way, `poll_timeout` asks for the next step this much later.
pub const SWEEP_STEP_INTERVAL: Duration = Duration::from_millis(1);

/// The least time between two sweep steps forced by a full port range or session limit
/// (each one bounded by `FORCED_SWEEP_BUDGET`), so a flood of new flows against a full table
/// cannot make every packet sweep.
pub const FORCED_SWEEP_INTERVAL: Duration = Duration::from_millis(10);

/// How a packet relates to the NAT, from its addresses alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Outbound,
    Inbound,
    /// From the internal prefix to one of the NAT's external addresses.
    Hairpin,
}

/// One NAT. Shared by reference between worker threads (`&self` everywhere; the table is
/// lock-sharded).
///
/// Call order: `handle_packet` for every IPv4 packet, then drain `poll_released`; call
/// `handle_timeout(now)` whenever `poll_timeout()` has passed. `now` must never go backwards.
pub struct Nat {
    pub(crate) settings: ArcSwap<Settings>,
    /// Where the filtering policies come from; also serialises reconfiguration.
    filters: Mutex<Filters>,
    pub(crate) table: Table,
    fragments: Mutex<Fragments>,
    /// Padded: `handle_packet` writes these per packet, and the fields read per packet (the
    /// table's shard pointers and hasher) must not share their cache lines.
    pub(crate) counters: crossbeam_utils::CachePadded<Counters>,
    pub(crate) port_draws: AtomicU64,
    /// When the sweep round under way (or the last one) started.
    round_started: AtomicU64,
    /// What `poll_timeout` answers.
    next_sweep: AtomicU64,
    last_forced_sweep: AtomicU64,
}

impl core::fmt::Debug for Nat {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Nat")
            .field("name", &self.settings.load().config.name)
            .field("sessions", &self.session_count())
            .finish()
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Destinations no internal host may send to through the NAT: "this network" (0/8),
/// loopback (127/8), multicast (224/4), reserved (240/4, with the limited broadcast
/// 255.255.255.255). None of them is routed (RFC 1812 4.2.2.11, RFC 5735); passed on they would
/// leave with the internal source address.
fn is_unroutable(dst: u32) -> bool {
    let first = dst >> 24;
    first == 0 || first == 127 || first >= 224
}

/// How a packet relates to the NAT; `Ok(None)`: not the NAT's business.
fn classify(s: &Settings, src: u32, dst: u32) -> Result<Option<Class>, DropReason> {
    Ok(if s.is_internal(src) {
        // Internal to internal is routed locally.
        if s.is_internal(dst) {
            None
        } else if is_unroutable(dst) {
            return Err(DropReason::UnroutableDestination);
        } else if s.is_external(dst) {
            Some(Class::Hairpin)
        } else {
            Some(Class::Outbound)
        }
    } else if s.is_external(dst) {
        Some(Class::Inbound)
    } else {
        None
    })
}

/// With `UnmatchedInbound::Host`, an inbound packet that belongs to no mapping (or an ICMP
/// error that matches no session) is the host's: passed, not dropped.
#[inline(always)]
fn unmatched_inbound(
    s: &Settings,
    class: Class,
    result: Result<Option<Direction>, DropReason>,
) -> Result<Option<Direction>, DropReason> {
    match result {
        Err(DropReason::NoMapping | DropReason::IcmpErrorNoSession)
            if class == Class::Inbound && s.config.unmatched_inbound == UnmatchedInbound::Host =>
        {
            Ok(None)
        }
        other => other,
    }
}

/// Ports of a TCP or UDP segment and what the TCP tracker reads of it, with its header checked.
#[inline(always)]
fn ports(proto: Protocol, seg: &[u8], fragment: bool) -> Result<(u16, u16, TcpSegment), DropReason> {
    match proto {
        Protocol::Udp => {
            if seg.len() < udp::HEADER_LEN {
                return Err(DropReason::Truncated);
            }
            let len = udp::length(seg);
            if !fragment && (len < udp::HEADER_LEN || len > seg.len()) {
                return Err(DropReason::BadTransportHeader);
            }
            Ok((udp::src_port(seg), udp::dst_port(seg), TcpSegment::NONE))
        }
        _ => {
            if seg.len() < tcp::MIN_HEADER_LEN {
                return Err(DropReason::Truncated);
            }
            let hl = tcp::header_len(seg);
            if hl < tcp::MIN_HEADER_LEN || hl > seg.len() {
                return Err(DropReason::BadTransportHeader);
            }
            Ok((tcp::src_port(seg), tcp::dst_port(seg), TcpSegment::parse(seg, hl)))
        }
    }
}

impl Nat {
    /// A NAT with the given settings.
    pub fn new(config: NatConfig) -> Result<Nat, ConfigError> {
        config.validate()?;
        let mut filters = Filters::default();
        let table = Table::new(config.seed);
        Ok(Nat {
            settings: ArcSwap::from_pointee(Settings::new(config, &mut filters, &table.external)),
            filters: Mutex::new(filters),
            table,
            fragments: Mutex::new(Fragments::default()),
            counters: crossbeam_utils::CachePadded::new(Counters::default()),
            port_draws: AtomicU64::new(0),
            round_started: AtomicU64::new(0),
            next_sweep: AtomicU64::new((Instant::ZERO + SWEEP_INTERVAL).as_micros()),
            last_forced_sweep: AtomicU64::new(0),
        })
    }

    /// Translates `packet` (an IPv4 packet from its header on, no link header) in place.
    pub fn handle_packet(&self, now: Instant, packet: &mut [u8]) -> Verdict {
        let s = self.settings.load();
        let verdict = self.process(&s, now, packet);
        match verdict {
            Verdict::Forward { direction: Direction::Outbound, .. } => bump(&self.counters.translated_out),
            Verdict::Forward { direction: Direction::Inbound, .. } => bump(&self.counters.translated_in),
            Verdict::Forward { direction: Direction::Hairpin, .. } => bump(&self.counters.hairpinned),
            Verdict::Pass => bump(&self.counters.passed),
            Verdict::Held(_) => bump(&self.counters.fragments_held),
            Verdict::Drop(reason) => self.counters.drop(reason),
        }
        verdict
    }

    pub(crate) fn process(&self, s: &Settings, now: Instant, packet: &mut [u8]) -> Verdict {
        let len = packet.len();
        if len < crate::wire::ipv4::MIN_HEADER_LEN {
            return Verdict::Drop(DropReason::Truncated);
        }
        if packet[0] >> 4 != 4 {
            return Verdict::Drop(DropReason::BadIpHeader);
        }
        let (src, dst) = (be32(packet, 12), be32(packet, 16));
        let class = match classify(s, src, dst) {
            Ok(Some(class)) => class,
            Ok(None) => return Verdict::Pass,
            Err(reason) => return Verdict::Drop(reason),
        };
        // The header checks of `Ipv4Packet::new_checked`, once, on the fields read anyway.
        let ihl = usize::from(packet[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
        if ihl < crate::wire::ipv4::MIN_HEADER_LEN || total < ihl.min(len) {
            return Verdict::Drop(if ihl > len { DropReason::Truncated } else { DropReason::BadIpHeader });
        }
        if ihl > len || total > len {
            return Verdict::Drop(DropReason::Truncated);
        }
        let proto = packet[9];
        // More-fragments flag and fragment offset: zero for all but fragments.
        let flags_offset = u16::from_be_bytes([packet[6], packet[7]]);
        let pkt = &mut packet[..total];
        if flags_offset & 0x3fff == 0 {
            let result = self.translate(s, now, class, pkt, (src, dst), ihl, proto, false);
            return match unmatched_inbound(s, class, result) {
                Ok(Some(direction)) => Verdict::Forward { direction, len },
                Ok(None) => Verdict::Pass,
                Err(reason) => Verdict::Drop(reason),
            };
        }
        let frag_key = FragKey { src, dst, proto, ident: u16::from_be_bytes([pkt[4], pkt[5]]) };
        let side = if class == Class::Inbound { FragSide::Outside } else { FragSide::Inside };
        if flags_offset & 0x1fff != 0 {
            return match self.fragments.lock().handle_later(now, frag_key, side, pkt) {
                Ok(Some(direction)) => Verdict::Forward { direction, len },
                Ok(None) => Verdict::Pass,
                Err(Hold::Held(id)) => Verdict::Held(id),
                Err(Hold::Drop(reason)) => Verdict::Drop(reason),
            };
        }
        let result = unmatched_inbound(s, class, self.translate(s, now, class, pkt, (src, dst), ihl, proto, true));
        let outcome = match result {
            Ok(Some(direction)) => Outcome::Translated { new_src: be32(pkt, 12), new_dst: be32(pkt, 16), direction },
            Ok(None) => Outcome::Passed,
            Err(_) => Outcome::Dropped,
        };
        let dropped = self.fragments.lock().first_seen(now, frag_key, side, outcome);
        for _ in 0..dropped {
            self.counters.drop(DropReason::FragmentOfDropped);
        }
        match result {
            Ok(Some(direction)) => Verdict::Forward { direction, len },
            Ok(None) => Verdict::Pass,
            Err(reason) => Verdict::Drop(reason),
        }
    }

    /// Translates an unfragmented packet or a first fragment (`pkt` ends at its total length,
    /// `ihl` is its checked header length). `Ok(None)`: pass unchanged.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn translate(
        &self,
        s: &Settings,
        now: Instant,
        class: Class,
        pkt: &mut [u8],
        (src, dst): (u32, u32),
        ihl: usize,
        proto: u8,
        fragment: bool,
    ) -> Result<Option<Direction>, DropReason> {
        let Some(proto) = Protocol::from_number(proto) else {
            // Other protocols addressed to the host itself are the host's business.
            return if class == Class::Inbound { Ok(None) } else { Err(DropReason::UnsupportedProtocol) };
        };
        if proto == Protocol::Icmp {
            return self.translate_icmp(s, now, class, pkt, ihl, fragment);
        }
        let (sport, dport, mut seg) = ports(proto, &pkt[ihl..], fragment)?;
        // For the session counters (a fragmented datagram counts its first fragment).
        seg.ip_len = pkt.len() as u16;
        match class {
            Class::Outbound => {
                let ext = self.outbound(s, now, proto, Inside(src, sport), Remote(dst, dport), seg)?;
                rewrite_checked(pkt, ihl, proto, Side::Source, ext.0, ext.1);
                Ok(Some(Direction::Outbound))
            }
            Class::Inbound => {
                let int = self.inbound(s, now, proto, Remote(src, sport), Outside(dst, dport), seg)?;
                rewrite_checked(pkt, ihl, proto, Side::Destination, int.0, int.1);
                Ok(Some(Direction::Inbound))
            }
            Class::Hairpin => self.hairpin(s, now, proto, pkt, ihl, Inside(src, sport), Outside(dst, dport), seg),
        }
    }

    fn translate_icmp(
        &self,
        s: &Settings,
        now: Instant,
        class: Class,
        pkt: &mut [u8],
        ihl: usize,
        fragment: bool,
    ) -> Result<Option<Direction>, DropReason> {
        let (src, dst) = (be32(pkt, 12), be32(pkt, 16));
        let msg = &pkt[ihl..];
        if msg.len() < icmp::HEADER_LEN {
            return Err(DropReason::Truncated);
        }
        let (ty, id) = (icmp::msg_type(msg), icmp::ident(msg));
        let echo = TcpSegment::other(pkt.len() as u16);
        let is_error = icmp::is_translated_error(ty);
        if is_error && fragment {
            // An error is small; a fragmented one cannot have its checksum verified.
            return Err(DropReason::UnsupportedIcmp);
        }
        match (class, ty) {
            (Class::Outbound, icmp::ECHO_REQUEST) => {
                let ext = self.outbound(s, now, Protocol::Icmp, Inside(src, id), Remote(dst, 0), echo)?;
                rewrite_checked(pkt, ihl, Protocol::Icmp, Side::Source, ext.0, ext.1);
                Ok(Some(Direction::Outbound))
            }
            (Class::Inbound, icmp::ECHO_REPLY) => {
                let int = self.inbound(s, now, Protocol::Icmp, Remote(src, 0), Outside(dst, id), echo)?;
                rewrite_checked(pkt, ihl, Protocol::Icmp, Side::Destination, int.0, int.1);
                Ok(Some(Direction::Inbound))
            }
            (Class::Inbound, _) if is_error => {
                self.translate_icmp_error(s, now, pkt, ihl, true)?;
                Ok(Some(Direction::Inbound))
            }
            (Class::Outbound, _) if is_error => {
                self.translate_icmp_error(s, now, pkt, ihl, false)?;
                Ok(Some(Direction::Outbound))
            }
            (Class::Inbound, icmp::SOURCE_QUENCH | icmp::REDIRECT) => Err(DropReason::UnsupportedIcmp),
            // Queries to an external address (ping the host) are answered by the host.
            (Class::Inbound, _) | (Class::Hairpin, icmp::ECHO_REQUEST) => Ok(None),
            _ => Err(DropReason::UnsupportedIcmp),
        }
    }

    /// An internal host sending to an external address of this NAT (RFC 4787 REQ-9).
    #[allow(clippy::too_many_arguments)]
    fn hairpin(
        &self,
        s: &Settings,
        now: Instant,
        proto: Protocol,
        pkt: &mut [u8],
        ihl: usize,
        internal: Inside,
        target: Outside,
        seg: TcpSegment,
    ) -> Result<Option<Direction>, DropReason> {
        if !self.is_mapped(s, proto, target) {
            // Nothing behind that port: the packet is for the host itself.
            return Ok(None);
        }
        match s.config.hairpinning {
            HairpinningMode::External => {
                // The target's external endpoint is the sender's remote, and the sender's
                // external endpoint the target's.
                let ext = self.outbound(s, now, proto, internal, target.as_remote(), seg)?;
                let int = self.inbound(s, now, proto, ext.as_remote(), target, seg)?;
                rewrite_checked(pkt, ihl, proto, Side::Source, ext.0, ext.1);
                rewrite_checked(pkt, ihl, proto, Side::Destination, int.0, int.1);
            }
            HairpinningMode::Local => {
                let int = self.local_hairpin_target(s, proto, target).ok_or(DropReason::NoMapping)?;
                rewrite_checked(pkt, ihl, proto, Side::Destination, int.0, int.1);
            }
        }
        Ok(Some(Direction::Hairpin))
    }

    /// The next held fragment that can now be sent, if any.
    pub fn poll_released(&self) -> Option<ReleasedPacket> {
        self.fragments.lock().released.pop_front()
    }

    /// Expires idle sessions (one bounded step of the sweep, see `SWEEP_BUDGET`) and stale
    /// fragments.
    pub fn handle_timeout(&self, now: Instant) {
        self.table.events.advance(now);
        self.sweep(now, SWEEP_BUDGET);
        let timed_out = self.fragments.lock().expire(now);
        for _ in 0..timed_out {
            self.counters.drop(DropReason::FragmentTimeout);
        }
    }

    /// One step of the sweep; schedules the next one.
    fn sweep(&self, now: Instant, budget: usize) {
        let s = self.settings.load();
        let t = s.config.timeouts;
        let step = self.table.sweep_step(now, budget, |m, sess| !sess.is_alive(m.protocol, now, &t));
        self.counters.sessions_expired.fetch_add(step.expired, Ordering::Relaxed);
        if step.round_started {
            self.round_started.store(now.as_micros(), Ordering::Relaxed);
        }
        let next = if step.round_done {
            Instant::from_micros(self.round_started.load(Ordering::Relaxed)) + SWEEP_INTERVAL
        } else {
            now + SWEEP_STEP_INTERVAL
        };
        self.next_sweep.store(next.as_micros(), Ordering::Relaxed);
    }

    /// A sweep step on demand when ports or session slots run out, at most once per
    /// `FORCED_SWEEP_INTERVAL`. Returns whether it ran.
    pub(crate) fn forced_sweep(&self, now: Instant) -> bool {
        let last = self.last_forced_sweep.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_duration_since(Instant::from_micros(last)) >= FORCED_SWEEP_INTERVAL;
        if !due
            || self
                .last_forced_sweep
                .compare_exchange(last, now.as_micros().max(1), Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return false;
        }
        self.sweep(now, FORCED_SWEEP_BUDGET);
        true
    }

    /// When `handle_timeout` should next be called: soon while a sweep round is under way,
    /// else when the next round is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        Some(Instant::from_micros(self.next_sweep.load(Ordering::Relaxed)))
    }

    /// The session table, one row per session (Get-NetNatSession), sorted by internal
    /// endpoint then remote. Idle sessions not yet swept are included.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        let config = self.settings.load().config.clone();
        let (name, timeouts) = (config.name.clone(), config.timeouts);
        let mut rows = Vec::with_capacity(self.session_count());
        self.table.by_internal.for_each(|m| {
            for sess in m.sessions.iter() {
                let tcp = (m.protocol == Protocol::Tcp).then(|| sess.tcp().state());
                rows.push(SessionInfo {
                    nat_name: name.clone(),
                    protocol: m.protocol.number(),
                    creation_time: sess.created,
                    internal_source_address: m.internal_addr.into(),
                    internal_source_port: m.internal_port,
                    internal_destination_address: sess.remote_addr.into(),
                    internal_destination_port: sess.remote_port,
                    external_source_address: m.external_addr.into(),
                    external_source_port: m.external_port,
                    external_destination_address: sess.remote_addr.into(),
                    external_destination_port: sess.remote_port,
                    last_seen: sess.last_seen(),
                    timeout: sess.timeout(m.protocol, &timeouts),
                    tcp_state: tcp,
                    opened_inbound: sess.opened_inbound(),
                    counters: sess.counts(),
                });
            }
        });
        rows.sort_by_key(|r| {
            (
                r.protocol,
                r.internal_source_address,
                r.internal_source_port,
                r.external_destination_address,
                r.external_destination_port,
            )
        });
        rows
    }

    /// Calls `f` with every mapping (external port in use) and its session count, one table
    /// shard read-locked at a time: what a port-use summary needs, without building a row per
    /// session. `f` must not call back into this NAT.
    pub fn for_each_mapping(&self, mut f: impl FnMut(&MappingInfo)) {
        self.table.by_internal.for_each(|m| {
            f(&MappingInfo {
                protocol: m.protocol,
                internal_address: m.internal_addr.into(),
                internal_port: m.internal_port,
                external_address: m.external_addr.into(),
                external_port: m.external_port,
                sessions: m.sessions.len(),
                from_static: m.from_static,
            })
        });
    }

    /// Number of live sessions (idle ones not yet swept included).
    pub fn session_count(&self) -> usize {
        self.table.session_count()
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.counters.snapshot(self.session_count() as u64)
    }

    /// The settings in force.
    pub fn config(&self) -> Arc<NatConfig> {
        self.settings.load().config.clone()
    }

    /// Replaces the settings (Set-NetNat, Add/Remove-NetNatStaticMapping,
    /// Add/Remove-NetNatExternalAddress). Sessions survive unless their external address was
    /// removed, their internal host left the internal prefix, a new static mapping claims their
    /// external port, or the static mapping that made them is gone.
    pub fn reconfigure(&self, config: NatConfig) -> Result<(), ConfigError> {
        config.validate()?;
        let mut filters = self.filters.lock();
        let settings = Arc::new(Settings::new(config, &mut filters, &self.table.external));
        self.settings.store(settings.clone());
        drop(filters);
        let s = &*settings;
        let (_, removed) = self.table.purge(
            |_, _| false,
            |m| {
                let static_owner = s.static_owner(m.protocol, m.external_addr, m.external_port);
                let static_ok = match static_owner {
                    Some(sm) => {
                        m.from_static
                            || (u32::from(sm.internal_address) == m.internal_addr
                                && sm.internal_port == m.internal_port)
                    }
                    None => !m.from_static,
                };
                !s.is_external(m.external_addr) || !s.is_internal(m.internal_addr) || !static_ok
            },
        );
        self.counters.sessions_removed.fetch_add(removed, Ordering::Relaxed);
        Ok(())
    }

    /// Replaces the filtering policy of TCP or UDP with a custom one, which wins over the
    /// configuration's (`filter_policy`, TcpFilteringBehavior, UdpFilteringBehavior); `None`
    /// goes back to the configured one. ICMP echo replies are always address-dependent.
    pub fn set_filtering_policy(&self, protocol: Protocol, policy: Option<Arc<dyn FilteringPolicy>>) {
        let mut filters = self.filters.lock();
        match protocol {
            Protocol::Tcp => filters.custom[0] = policy,
            Protocol::Udp => filters.custom[1] = policy,
            Protocol::Icmp => return,
        }
        let config = (*self.settings.load().config).clone();
        self.settings.store(Arc::new(Settings::new(config, &mut filters, &self.table.external)));
    }

    /// Turns session events on or off (off by default): mappings and sessions created and
    /// deleted, and the limits that refused one, queued for [`Nat::drain_events`]. Off, they
    /// cost one flag test where a session is created or deleted; on or off, an established
    /// packet makes none.
    pub fn set_events(&self, on: bool) {
        self.table.events.set_enabled(on);
    }

    /// Moves the queued events into `into`, oldest first (at most
    /// [`crate::events::MAX_QUEUED_EVENTS`] wait between two drains; more are counted by
    /// [`Nat::events_lost`]).
    pub fn drain_events(&self, into: &mut Vec<crate::events::Event>) {
        self.table.events.drain(into);
    }

    /// Events dropped because the queue was full.
    pub fn events_lost(&self) -> u64 {
        self.table.events.lost()
    }

    /// Drops every session (Remove-NetNat drops the NAT's connections).
    pub fn clear_sessions(&self) {
        let (_, removed) = self.table.purge(|_, _| false, |_| true);
        self.counters.sessions_removed.fetch_add(removed, Ordering::Relaxed);
        self.fragments.lock().clear();
    }
}
