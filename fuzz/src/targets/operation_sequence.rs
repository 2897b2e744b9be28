//! Arbitrary sequences of operations on one NAT, its invariants checked after every step.
//!
//! Odd-length sequences send their packets through a long-lived `Worker` (cached settings),
//! even-length ones through `Nat::handle_packet`.
//!
//! Operations: outbound and inbound TCP/UDP/ICMP packets built from structured fields (few
//! hosts, remotes and ports, so flows collide), replies to earlier flows, hairpinned packets,
//! ICMP errors quoting earlier packets (also forged or corrupted ones), first and later
//! fragments, raw bytes, clock advances, sweeps, reconfiguration (timeouts, filtering,
//! inbound refresh, port range and policy, limits, hairpinning, a second external address),
//! static mappings added and removed, and clearing the sessions.
//!
//! Invariants, after every step:
//! - nothing panics;
//! - every forwarded outbound packet has a source outside 10.100.0.0/16, and the packet an
//!   outbound ICMP error quotes has no internal destination;
//! - every forwarded inbound packet goes to an internal host that has sent to that remote's
//!   address before (since the last clear), unless endpoint-independent filtering or a
//!   static mapping for that endpoint has been in force since;
//! - every forwarded packet built valid has a valid IPv4 header checksum and, unfragmented,
//!   a valid TCP/UDP/ICMP checksum (recomputed independently);
//! - the session counter equals the number of session rows and stays within `max_sessions`
//!   (and each host within `max_sessions_per_host`) — once a lowered limit has been reached;
//! - no two sessions with different internal endpoints share (protocol, external address,
//!   external port).

use std::collections::HashSet;
use std::net::Ipv4Addr;

use crate::{
    all_checksums_ok, base_config, be16, be32, build, check_table, ip_checksum_ok, is_internal, l4, parse_ip, ICMP,
    TCP, UDP,
};
use arbitrary::Arbitrary;
use netnat_engine::{
    Direction, Duration, ExternalAddress, FilteringBehavior, HairpinningMode, Instant, Nat, NatConfig, PortAllocation,
    Protocol, StaticMapping, Verdict, Worker,
};

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Proto {
    Udp,
    Tcp,
    Icmp,
}

impl Proto {
    fn number(self) -> u8 {
        match self {
            Proto::Udp => UDP,
            Proto::Tcp => TCP,
            Proto::Icmp => ICMP,
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Frag {
    Whole,
    First { ident: u8 },
    Later { ident: u8, offset: u8, more: bool },
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Target {
    /// The external endpoint of an earlier outbound flow.
    Logged(u8),
    /// A static-mapping port.
    Static(u8),
    /// Any port.
    Port(u16),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Corrupt {
    None,
    IcmpChecksum,
    QuotedIpChecksum,
    /// A forged quote: another source port.
    QuotedPort(u8),
    /// A forged quote: another remote.
    QuotedRemote(u8),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Reconf {
    udp_filtering: u8,
    tcp_filtering: u8,
    udp_inbound_refresh: bool,
    timeouts: [u8; 4],
    small_port_range: bool,
    preserve: bool,
    max_sessions: u8,
    max_per_host: u8,
    hairpin_local: bool,
    second_external: bool,
}

/// One step of a sequence.
#[derive(Arbitrary, Debug, Clone)]
pub enum Op {
    Outbound { proto: Proto, host: u8, sport: u8, remote: u8, dport: u8, flags: u8, payload: u8, frag: Frag },
    Inbound { proto: Proto, remote: u8, sport: u8, target: Target, flags: u8, payload: u8, frag: Frag },
    Reply { index: u8, flags: u8 },
    Hairpin { proto: Proto, host: u8, sport: u8, target: Target, flags: u8 },
    IcmpError { inbound: bool, index: u8, ty: u8, quote: u8, corrupt: Corrupt },
    Advance { secs: u16 },
    AdvanceMicros { micros: u32 },
    Timeout,
    Reconfigure(Reconf),
    AddStatic { tcp: bool, ext_port: u8, host: u8, int_port: u8, remote_prefix_len: u8, any_address: bool },
    RemoveStatic { index: u8 },
    ClearSessions,
    Raw { bytes: Vec<u8>, inbound: bool },
}

/// A packet that crossed the NAT, kept to build replies and ICMP errors from.
#[derive(Debug, Clone)]
struct Logged {
    proto: u8,
    /// The packet as it left the NAT.
    bytes: Vec<u8>,
}

const MAX_OPS: usize = 96;
const MAX_LOG: usize = 32;

fn host(i: u8) -> u32 {
    u32::from(Ipv4Addr::new(10, 100, 0, 1 + i % 8))
}

fn remote(i: u8) -> u32 {
    if i % 8 == 7 {
        u32::from(Ipv4Addr::new(203, 0, 113, 10))
    } else {
        u32::from(Ipv4Addr::new(198, 51, 100, 1 + i % 4))
    }
}

fn filtering(x: u8) -> FilteringBehavior {
    match x % 3 {
        0 => FilteringBehavior::EndpointIndependent,
        1 => FilteringBehavior::AddressDependent,
        _ => FilteringBehavior::AddressAndPortDependent,
    }
}

fn frag_field(frag: Frag) -> (u16, u16) {
    match frag {
        Frag::Whole => (0x1000, 0x4000),
        Frag::First { ident } => (u16::from(ident), 0x2000),
        Frag::Later { ident, offset, more } => {
            (u16::from(ident), u16::from(offset.max(1)) | if more { 0x2000 } else { 0 })
        }
    }
}

/// A packet from the structured fields; later fragments carry payload only.
fn packet(proto: u8, src: (u32, u16), dst: (u32, u16), flags: u8, payload: u8, frag: Frag) -> Vec<u8> {
    let data = vec![0xa5; usize::from(payload % 48)];
    let (ident, field) = frag_field(frag);
    let body = match frag {
        Frag::Later { .. } => {
            let mut d = data;
            d.resize(8 + d.len(), 0x5a);
            d
        }
        _ => l4(proto, src.1, dst.1, flags, &data),
    };
    build(proto, src.0, dst.0, ident, field, &body)
}

struct State<'a> {
    nat: &'a Nat,
    /// Packets go through this per-thread handle (cached settings) when present.
    worker: Option<Worker<'a>>,
    config: NatConfig,
    now: Instant,
    outbound_log: Vec<Logged>,
    inbound_log: Vec<Logged>,
    /// (protocol, internal address, internal port, remote address) that may talk inbound.
    contacted: HashSet<(u8, u32, u16, u32)>,
    /// Endpoint-independent filtering was in force for (TCP, UDP) since the last clear.
    eif_since_clear: [bool; 2],
    /// Internal endpoints of static mappings in force since the last clear.
    static_endpoints: HashSet<(u8, u32, u16)>,
    bound_sessions: usize,
    bound_per_host: usize,
}

fn push(log: &mut Vec<Logged>, entry: Logged) {
    if log.len() == MAX_LOG {
        log.remove(0);
    }
    log.push(entry);
}

impl<'a> State<'a> {
    fn new(nat: &'a Nat, config: NatConfig, use_worker: bool) -> State<'a> {
        let mut s = State {
            nat,
            worker: use_worker.then(|| nat.worker()),
            config: config.clone(),
            now: Instant::from_secs(1),
            outbound_log: Vec::new(),
            inbound_log: Vec::new(),
            contacted: HashSet::new(),
            eif_since_clear: [false; 2],
            static_endpoints: HashSet::new(),
            bound_sessions: config.limits.max_sessions,
            bound_per_host: config.limits.max_sessions_per_host,
        };
        s.note_config();
        s
    }

    /// Records what the configuration in force admits (for the filtering invariant).
    fn note_config(&mut self) {
        self.eif_since_clear[0] |= self.config.tcp_filtering == FilteringBehavior::EndpointIndependent;
        self.eif_since_clear[1] |= self.config.udp_filtering == FilteringBehavior::EndpointIndependent;
        for m in &self.config.static_mappings {
            let proto = if m.protocol == Protocol::Tcp { TCP } else { UDP };
            self.static_endpoints.insert((proto, u32::from(m.internal_address), m.internal_port));
        }
    }

    fn external(&self, i: u8) -> u32 {
        let a = &self.config.external_addresses;
        u32::from(a[usize::from(i) % a.len()].address)
    }

    fn target(&self, t: Target) -> Option<(u32, u16)> {
        match t {
            Target::Logged(i) => {
                let e = self.outbound_log.get(usize::from(i) % self.outbound_log.len().max(1))?;
                let p = &e.bytes;
                let ip = parse_ip(p, false)?;
                let port = match e.proto {
                    ICMP => be16(p, ip.ihl + 4),
                    _ => be16(p, ip.ihl),
                };
                Some((ip.src, port))
            }
            Target::Static(i) => Some((self.external(i / 4), 8000 + u16::from(i % 4))),
            Target::Port(p) => Some((self.external(0), p)),
        }
    }

    /// Sends a packet the fuzzer built (valid when `valid`) and checks the outcome.
    fn send(&mut self, mut pkt: Vec<u8>, valid: bool) {
        let input = pkt.clone();
        self.note_hairpin_attempt(&input);
        let verdict = match &mut self.worker {
            Some(w) => w.handle_packet(self.now, &mut pkt),
            None => self.nat.handle_packet(self.now, &mut pkt),
        };
        if crate::TRACE.load(std::sync::atomic::Ordering::Relaxed) {
            eprintln!("    {:02x?}\n    -> {verdict:?} {:02x?}", input, &pkt);
        }
        if let Verdict::Forward { direction, len } = verdict {
            let out = pkt[..len].to_vec();
            self.check_forwarded(direction, &input, &out, valid);
        }
        if verdict == Verdict::Pass {
            assert_eq!(pkt, input, "a passed packet was modified");
        }
        self.drain_released();
    }

    /// A packet from an internal host to an external address of the NAT is hairpinned; its
    /// outbound leg opens the sender's session to that address even when the target's
    /// filtering then drops the packet, and that session admits the address under
    /// address-dependent filtering from then on. Recorded before sending, whatever the verdict.
    fn note_hairpin_attempt(&mut self, input: &[u8]) {
        let Some(ip) = parse_ip(input, false) else { return };
        let externals = &self.config.external_addresses;
        if !is_internal(ip.src) || !externals.iter().any(|e| u32::from(e.address) == ip.dst) || ip.later_fragment {
            return;
        }
        if let Some((sport, _)) = ports(ip.proto, &input[ip.ihl..], true) {
            self.contacted.insert((ip.proto, ip.src, sport, ip.dst));
        }
    }

    fn drain_released(&mut self) {
        while let Some(r) = self.nat.poll_released() {
            let p = &r.packet;
            if p.len() < 20 {
                continue;
            }
            if r.direction == Some(Direction::Outbound) {
                assert!(!is_internal(be32(p, 12)), "released fragment leaves with an internal source");
            }
            if r.direction.is_some() && parse_ip(p, false).is_some() {
                assert!(ip_checksum_ok(p), "released fragment with a bad IPv4 header checksum");
            }
        }
    }

    fn check_forwarded(&mut self, direction: Direction, input: &[u8], out: &[u8], valid: bool) {
        let ip = parse_ip(out, false).expect("a forwarded packet is IPv4");
        let input_valid = valid || all_checksums_ok(input);
        if input_valid {
            assert!(ip_checksum_ok(out), "forwarded packet with a bad IPv4 header checksum");
            if !ip.fragment {
                assert!(all_checksums_ok(out), "forwarded packet with a bad transport checksum");
            }
        }
        let seg = &out[ip.ihl..out.len().min(ip.total)];
        match direction {
            Direction::Outbound => {
                assert!(!is_internal(ip.src), "outbound packet leaves with an internal source");
                if ip.proto == ICMP && !ip.fragment && seg.len() >= 28 && matches!(seg[0], 3 | 11 | 12) {
                    let q = &seg[8..];
                    assert!(!is_internal(be32(q, 16)), "outbound ICMP error quotes an internal destination");
                    if input_valid {
                        assert!(ip_checksum_ok(q), "outbound ICMP error with a bad quoted IPv4 checksum");
                    }
                }
                if !ip.later_fragment {
                    if let Some((int_port, _)) = ports(ip.proto, seg, true) {
                        let int = parse_ip(input, false).expect("input was IPv4");
                        let isport = ports(ip.proto, &input[int.ihl..], true).map_or(int_port, |p| p.0);
                        self.contacted.insert((ip.proto, int.src, isport, ip.dst));
                    }
                }
                if !ip.fragment && matches!(ip.proto, UDP | TCP | ICMP) {
                    push(&mut self.outbound_log, Logged { proto: ip.proto, bytes: out.to_vec() });
                }
            }
            Direction::Inbound => {
                assert!(is_internal(ip.dst), "inbound packet not delivered to an internal host");
                if ip.later_fragment {
                    return;
                }
                let is_error = ip.proto == ICMP && seg.len() >= 8 && matches!(seg[0], 3 | 11 | 12);
                if is_error {
                    let q = &seg[8..];
                    let qip = parse_ip(q, false).expect("a translated error quotes an IPv4 packet");
                    assert_eq!(qip.src, ip.dst, "inbound ICMP error delivered to a host other than the quoted source");
                    let (qport, _) = ports(qip.proto, &q[qip.ihl..], true).expect("quoted ports");
                    self.check_admitted(qip.proto, (qip.src, qport), qip.dst, "ICMP error");
                    if input_valid {
                        assert!(ip_checksum_ok(q), "inbound ICMP error with a bad quoted IPv4 checksum");
                    }
                } else if let Some((_, dport)) = ports(ip.proto, seg, false) {
                    self.check_admitted(ip.proto, (ip.dst, dport), ip.src, "packet");
                    self.contacted.insert((ip.proto, ip.dst, dport, ip.src));
                    if !ip.fragment {
                        push(&mut self.inbound_log, Logged { proto: ip.proto, bytes: out.to_vec() });
                    }
                }
            }
            Direction::Hairpin => {
                assert!(is_internal(ip.dst), "hairpinned packet not delivered to an internal host");
                if self.config.hairpinning == HairpinningMode::Local || ip.fragment {
                    return;
                }
                assert!(!is_internal(ip.src), "hairpinned packet keeps its internal source in External mode");
                // Two legs: the sender's outbound one (to the external address) and the
                // target's inbound one, filtered like any inbound packet.
                let int = parse_ip(input, false).expect("input was IPv4");
                if let (Some((isport, _)), Some((_, dport))) =
                    (ports(ip.proto, &input[int.ihl..], true), ports(ip.proto, seg, true))
                {
                    self.contacted.insert((ip.proto, int.src, isport, int.dst));
                    self.check_admitted(ip.proto, (ip.dst, dport), ip.src, "hairpinned packet");
                    self.contacted.insert((ip.proto, ip.dst, dport, ip.src));
                }
            }
        }
    }

    /// An inbound packet from `remote` reached internal endpoint `internal`: some filtering
    /// rule must admit it.
    fn check_admitted(&self, proto: u8, internal: (u32, u16), remote: u32, what: &str) {
        if self.contacted.contains(&(proto, internal.0, internal.1, remote)) {
            return;
        }
        let eif = match proto {
            TCP => self.eif_since_clear[0],
            UDP => self.eif_since_clear[1],
            _ => false,
        };
        let static_ok = self.static_endpoints.contains(&(proto, internal.0, internal.1));
        assert!(
            eif || static_ok,
            "unsolicited inbound {what} (protocol {proto}) from {} reached {}:{}",
            Ipv4Addr::from(remote),
            Ipv4Addr::from(internal.0),
            internal.1
        );
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Outbound { proto, host: h, sport, remote: r, dport, flags, payload, frag } => {
                let p = proto.number();
                let flags = if p == ICMP { 8 } else { flags };
                let src = (host(h), 40_000 + u16::from(sport % 16));
                let pkt = packet(p, src, (remote(r), 50 + u16::from(dport % 4)), flags, payload, frag);
                self.send(pkt, true);
            }
            Op::Inbound { proto, remote: r, sport, target, flags, payload, frag } => {
                let Some(dst) = self.target(target) else { return };
                let p = proto.number();
                let (flags, src_port) = if p == ICMP { (0, dst.1) } else { (flags, 50 + u16::from(sport % 4)) };
                // An echo reply carries the identifier in its own "source port" slot.
                let (src, dst) =
                    if p == ICMP { ((remote(r), dst.1), (dst.0, 0)) } else { ((remote(r), src_port), dst) };
                let pkt = packet(p, src, dst, flags, payload, frag);
                self.send(pkt, true);
            }
            Op::Reply { index, flags } => {
                if self.outbound_log.is_empty() {
                    return;
                }
                let e = self.outbound_log[usize::from(index) % self.outbound_log.len()].clone();
                let Some(ip) = parse_ip(&e.bytes, true) else { return };
                let seg = &e.bytes[ip.ihl..ip.total];
                let pkt = match e.proto {
                    ICMP if seg.len() >= 8 && seg[0] == 8 => {
                        build(ICMP, ip.dst, ip.src, 7, 0, &l4(ICMP, be16(seg, 4), 0, 0, &seg[8..]))
                    }
                    UDP | TCP if seg.len() >= 4 => {
                        build(e.proto, ip.dst, ip.src, 7, 0, &l4(e.proto, be16(seg, 2), be16(seg, 0), flags, &[1; 4]))
                    }
                    _ => return,
                };
                self.send(pkt, true);
            }
            Op::Hairpin { proto, host: h, sport, target, flags } => {
                let Some(dst) = self.target(target) else { return };
                let p = proto.number();
                let src = (host(h), 40_000 + u16::from(sport % 16));
                let pkt = if p == ICMP {
                    packet(p, (src.0, dst.1), (dst.0, 0), 8, 4, Frag::Whole)
                } else {
                    packet(p, src, dst, flags, 4, Frag::Whole)
                };
                self.send(pkt, true);
            }
            Op::IcmpError { inbound, index, ty, quote, corrupt } => self.icmp_error(inbound, index, ty, quote, corrupt),
            Op::Advance { secs } => self.now = self.now + Duration::from_secs(u64::from(secs % 4000)),
            Op::AdvanceMicros { micros } => self.now = self.now + Duration::from_micros(u64::from(micros)),
            Op::Timeout => {
                self.nat.handle_timeout(self.now);
                self.drain_released();
            }
            Op::Reconfigure(r) => self.reconfigure(r),
            Op::AddStatic { tcp, ext_port, host: h, int_port, remote_prefix_len, any_address } => {
                let mut c = self.config.clone();
                let external_address =
                    if any_address { Ipv4Addr::UNSPECIFIED } else { Ipv4Addr::from(self.external(0)) };
                let prefix_len = remote_prefix_len % 33;
                let remote_prefix = format!("198.51.100.0/{prefix_len}").parse().ok();
                let remote_prefix = if prefix_len == 0 { "0.0.0.0/0".parse().ok() } else { remote_prefix };
                let Some(remote_prefix) = remote_prefix else { return };
                c.static_mappings.push(StaticMapping {
                    protocol: if tcp { Protocol::Tcp } else { Protocol::Udp },
                    external_address,
                    external_port: 8000 + u16::from(ext_port % 4),
                    internal_address: Ipv4Addr::from(host(h)),
                    internal_port: 80 + u16::from(int_port % 2),
                    remote_prefix,
                });
                self.set_config(c);
            }
            Op::RemoveStatic { index } => {
                let mut c = self.config.clone();
                if c.static_mappings.is_empty() {
                    return;
                }
                let i = usize::from(index) % c.static_mappings.len();
                c.static_mappings.remove(i);
                self.set_config(c);
            }
            Op::ClearSessions => {
                self.nat.clear_sessions();
                self.contacted.clear();
                self.eif_since_clear = [false; 2];
                self.static_endpoints.clear();
                self.note_config();
                self.bound_sessions = self.config.limits.max_sessions;
                self.bound_per_host = self.config.limits.max_sessions_per_host;
            }
            Op::Raw { mut bytes, inbound } => {
                if bytes.len() >= 20 {
                    if inbound {
                        bytes[16..20].copy_from_slice(&self.external(0).to_be_bytes());
                    } else {
                        bytes[12..14].copy_from_slice(&[10, 100]);
                    }
                }
                self.send(bytes, false);
            }
        }
    }

    fn icmp_error(&mut self, inbound: bool, index: u8, ty: u8, quote: u8, corrupt: Corrupt) {
        let log = if inbound { &self.outbound_log } else { &self.inbound_log };
        if log.is_empty() {
            return;
        }
        let quoted_pkt = log[usize::from(index) % log.len()].bytes.clone();
        let Some(qip) = parse_ip(&quoted_pkt, true) else { return };
        let mut q = quoted_pkt[..quoted_pkt.len().min(qip.ihl + 8 + usize::from(quote % 40))].to_vec();
        if quote % 41 == 40 {
            q.truncate(qip.ihl + 4);
        }
        match corrupt {
            Corrupt::QuotedIpChecksum => q[10] ^= 0x40,
            Corrupt::QuotedPort(x) if q.len() >= qip.ihl + 2 => {
                let at = if inbound { qip.ihl } else { qip.ihl + 2 };
                if at + 2 <= q.len() {
                    q[at + 1] = q[at + 1].wrapping_add(1 + x % 8);
                }
            }
            Corrupt::QuotedRemote(x) => {
                let at = if inbound { 16 } else { 12 };
                q[at + 3] = q[at + 3].wrapping_add(1 + x % 4);
                crate::fill_ip_checksum(&mut q);
            }
            _ => {}
        }
        let (ty, code) = match ty % 6 {
            0 | 1 => (3, ty % 16),
            2 => (11, 0),
            3 => (12, 0),
            4 => (4, 0),
            _ => (5, 1),
        };
        let mut msg = vec![ty, code, 0, 0, 0, 0, 0, 0];
        msg.extend_from_slice(&q);
        // Inbound: from the remote the quoted packet went to, to the quoted source (the
        // external endpoint). Outbound: from the internal host the quoted packet reached.
        let (src, dst) = (qip.dst, qip.src);
        let mut pkt = build(ICMP, src, dst, 9, 0, &msg);
        if let Corrupt::IcmpChecksum = corrupt {
            pkt[22] ^= 0x01;
        }
        self.send(pkt, false);
    }

    fn reconfigure(&mut self, r: Reconf) {
        let mut c = self.config.clone();
        c.udp_filtering = filtering(r.udp_filtering);
        c.tcp_filtering = filtering(r.tcp_filtering);
        c.udp_inbound_refresh = r.udp_inbound_refresh;
        let secs = |x: u8| Duration::from_secs(1 + u64::from(x));
        c.timeouts.icmp_query = secs(r.timeouts[0]);
        c.timeouts.tcp_established = secs(r.timeouts[1]).saturating_mul(8);
        c.timeouts.tcp_transient = secs(r.timeouts[2]);
        c.timeouts.udp_idle = secs(r.timeouts[3]);
        let (start, end) = if r.small_port_range { (1024, 1039) } else { (1024, 65535) };
        let mut addrs =
            vec![ExternalAddress { address: Ipv4Addr::new(203, 0, 113, 1), port_start: start, port_end: end }];
        if r.second_external {
            addrs.push(ExternalAddress { address: Ipv4Addr::new(203, 0, 113, 2), port_start: start, port_end: end });
        }
        c.external_addresses = addrs;
        c.port_allocation = if r.preserve { PortAllocation::Preserve } else { PortAllocation::Random };
        c.limits.max_sessions = if r.max_sessions >= 128 { 1 << 20 } else { 1 + usize::from(r.max_sessions % 16) };
        c.limits.max_sessions_per_host =
            if r.max_per_host >= 128 { 1 << 16 } else { 1 + usize::from(r.max_per_host % 8) };
        c.hairpinning = if r.hairpin_local { HairpinningMode::Local } else { HairpinningMode::External };
        self.set_config(c);
    }

    fn set_config(&mut self, c: NatConfig) {
        if self.nat.reconfigure(c.clone()).is_err() {
            return;
        }
        let rows = self.nat.sessions();
        let max_host = max_per_host(&rows);
        self.bound_sessions = c.limits.max_sessions.max(rows.len());
        self.bound_per_host = c.limits.max_sessions_per_host.max(max_host);
        self.config = c;
        self.note_config();
    }

    fn check(&mut self) {
        check_table(self.nat, self.bound_sessions, self.bound_per_host);
        // A lowered limit binds once the table has shrunk below it.
        let rows = self.nat.sessions();
        let limits = self.config.limits;
        self.bound_sessions = limits.max_sessions.max(self.bound_sessions.min(rows.len()));
        self.bound_per_host = limits.max_sessions_per_host.max(self.bound_per_host.min(max_per_host(&rows)));
    }
}

fn max_per_host(rows: &[netnat_engine::SessionInfo]) -> usize {
    let mut counts = std::collections::HashMap::new();
    for r in rows {
        *counts.entry(r.internal_source_address).or_insert(0usize) += 1;
    }
    counts.into_values().max().unwrap_or(0)
}

/// (source port, destination port) of a TCP/UDP segment, or for ICMP echo the identifier
/// in both; `None` when too short or another ICMP type (`echo_any`: any echo type).
fn ports(proto: u8, seg: &[u8], echo_any: bool) -> Option<(u16, u16)> {
    match proto {
        UDP | TCP if seg.len() >= 4 => Some((be16(seg, 0), be16(seg, 2))),
        ICMP if seg.len() >= 8 && (seg[0] == 0 || (echo_any && seg[0] == 8)) => Some((be16(seg, 4), be16(seg, 4))),
        _ => None,
    }
}

/// Runs one input, decoded as libfuzzer-sys decodes a `Vec<Op>` argument.
pub fn fuzz_one(data: &[u8]) {
    let Ok(ops) = Vec::<Op>::arbitrary_take_rest(arbitrary::Unstructured::new(data)) else { return };
    run_ops(ops);
}

/// Runs a sequence of operations on a fresh NAT, checking the invariants after each.
pub fn run_ops(ops: Vec<Op>) {
    // Odd-length sequences send their packets through a long-lived `Worker`, whose cached
    // settings must follow every reconfiguration.
    let config = base_config();
    let nat = Nat::new(config.clone()).expect("valid config");
    let mut state = State::new(&nat, config, ops.len() % 2 == 1);
    for op in ops.into_iter().take(MAX_OPS) {
        if crate::TRACE.load(std::sync::atomic::Ordering::Relaxed) {
            eprintln!("t={:?} {op:?}", state.now);
        }
        state.apply(op);
        state.check();
    }
}
