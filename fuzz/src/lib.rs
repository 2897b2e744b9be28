//! Helpers shared by the netnat fuzz targets: an independent checksum checker, packet
//! builders, and the engine invariants every target asserts.
//!
//! Everything here is written without the engine's `wire` module, so a checksum the engine
//! gets wrong cannot look right because both sides share a bug.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::AtomicBool;

use netnat_engine::{Nat, NatConfig, PortAllocation};

/// The fuzzed NAT's internal prefix, 10.100.0.0/16, as (network, mask).
pub const INTERNAL_NET: u32 = 0x0a64_0000;
/// Mask of the internal prefix.
pub const INTERNAL_MASK: u32 = 0xffff_0000;
/// The fuzzed NAT's external address.
pub const EXTERNAL: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// The internal host of the kernel sample capture.
pub const VM: Ipv4Addr = Ipv4Addr::new(10, 100, 10, 11);

/// IP protocol numbers.
pub const ICMP: u8 = 1;
/// IP protocol number of TCP.
pub const TCP: u8 = 6;
/// IP protocol number of UDP.
pub const UDP: u8 = 17;

/// Whether `addr` is inside 10.100.0.0/16.
pub fn is_internal(addr: u32) -> bool {
    addr & INTERNAL_MASK == INTERNAL_NET
}

/// The configuration of the fuzzed NAT: 10.100.0.0/16 behind 203.0.113.1.
pub fn base_config() -> NatConfig {
    let mut c = NatConfig::new("fuzz", "10.100.0.0/16".parse().expect("valid prefix"), EXTERNAL);
    c.seed = 7;
    c
}

/// Same, with the `preserve` port policy so external ports are predictable from the input.
pub fn preserve_config() -> NatConfig {
    let mut c = base_config();
    c.port_allocation = PortAllocation::Preserve;
    c
}

/// Big-endian u16 at `at`.
pub fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Big-endian u32 at `at`.
pub fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// One's-complement sum of `data` added to `initial` (not folded to 16 bits).
pub fn sum16(initial: u64, data: &[u8]) -> u64 {
    let mut acc = initial;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds and complements a sum into a checksum value.
pub fn fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// The parts of an IPv4 packet the checks need, parsed strictly.
#[derive(Clone, Copy, Debug)]
pub struct Ip {
    /// Header length in bytes.
    pub ihl: usize,
    /// Total length from the header.
    pub total: usize,
    /// IP protocol.
    pub proto: u8,
    /// Source address.
    pub src: u32,
    /// Destination address.
    pub dst: u32,
    /// More-fragments flag set or a non-zero offset.
    pub fragment: bool,
    /// A non-zero fragment offset.
    pub later_fragment: bool,
}

/// Parses an IPv4 header; `strict` requires the whole packet to be present.
pub fn parse_ip(p: &[u8], strict: bool) -> Option<Ip> {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let total = usize::from(be16(p, 2));
    if ihl < 20 || ihl > p.len() || total < ihl || (strict && total > p.len()) {
        return None;
    }
    let frag = be16(p, 6);
    Some(Ip {
        ihl,
        total,
        proto: p[9],
        src: be32(p, 12),
        dst: be32(p, 16),
        fragment: frag & 0x3fff != 0,
        later_fragment: frag & 0x1fff != 0,
    })
}

/// Whether the IPv4 header checksum of `p` is valid.
pub fn ip_checksum_ok(p: &[u8]) -> bool {
    let ihl = usize::from(p[0] & 0x0f) * 4;
    p.len() >= ihl && fold(sum16(0, &p[..ihl])) == 0
}

/// When set, targets print each step and its verdict to stderr (for reading a finding).
pub static TRACE: AtomicBool = AtomicBool::new(false);

/// Whether the transport checksum of a whole, unfragmented packet is valid: TCP and UDP
/// over the pseudo-header (a UDP checksum of zero means none), ICMP over the message. Other
/// protocols, and segments too short to have a checksum field, count as valid.
pub fn l4_checksum_ok(p: &[u8], ip: &Ip) -> bool {
    let seg = &p[ip.ihl..ip.total];
    let pseudo = || sum16(u64::from(ip.proto) + seg.len() as u64, &p[12..20]);
    match ip.proto {
        UDP if seg.len() >= 8 => be16(seg, 6) == 0 || fold(sum16(pseudo(), seg)) == 0,
        TCP if seg.len() >= 20 => fold(sum16(pseudo(), seg)) == 0,
        ICMP if seg.len() >= 8 => fold(sum16(0, seg)) == 0,
        _ => true,
    }
}

/// Whether a complete, unfragmented packet has valid IPv4 and transport checksums.
pub fn all_checksums_ok(p: &[u8]) -> bool {
    match parse_ip(p, true) {
        Some(ip) => ip_checksum_ok(p) && (ip.fragment || l4_checksum_ok(p, &ip)),
        None => false,
    }
}

/// Recomputes the IPv4 header checksum of `p` (whose IHL fits in it).
pub fn fill_ip_checksum(p: &mut [u8]) {
    let ihl = usize::from(p[0] & 0x0f) * 4;
    p[10] = 0;
    p[11] = 0;
    let c = fold(sum16(0, &p[..ihl]));
    p[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Recomputes the transport checksum of a complete, unfragmented packet (if it has one).
pub fn fill_l4_checksum(p: &mut [u8]) {
    let Some(ip) = parse_ip(p, true) else { return };
    if ip.fragment {
        return;
    }
    let (ihl, total) = (ip.ihl, ip.total);
    let len = total - ihl;
    let pseudo = sum16(u64::from(ip.proto) + len as u64, &p[12..20]);
    let at = match ip.proto {
        UDP if len >= 8 => 6,
        TCP if len >= 20 => 16,
        ICMP if len >= 8 => 2,
        _ => return,
    };
    p[ihl + at] = 0;
    p[ihl + at + 1] = 0;
    let c = if ip.proto == ICMP { fold(sum16(0, &p[ihl..total])) } else { fold(sum16(pseudo, &p[ihl..total])) };
    let c = if ip.proto == UDP && c == 0 { 0xffff } else { c };
    p[ihl + at..ihl + at + 2].copy_from_slice(&c.to_be_bytes());
}

/// Builds an IPv4 packet (no options) around `l4` with valid checksums. `frag` is the
/// flags/fragment-offset field (0x4000 = DF).
pub fn build(proto: u8, src: u32, dst: u32, ident: u16, frag: u16, l4: &[u8]) -> Vec<u8> {
    let total = 20 + l4.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total.min(0xffff) as u16).to_be_bytes());
    p[4..6].copy_from_slice(&ident.to_be_bytes());
    p[6..8].copy_from_slice(&frag.to_be_bytes());
    p[8] = 64;
    p[9] = proto;
    p[12..16].copy_from_slice(&src.to_be_bytes());
    p[16..20].copy_from_slice(&dst.to_be_bytes());
    p[20..].copy_from_slice(l4);
    fill_ip_checksum(&mut p);
    fill_l4_checksum(&mut p);
    p
}

/// A transport header plus payload: UDP (8 bytes), TCP (20 bytes, `flags`) or ICMP echo
/// (`flags` is the ICMP type, `sport` the identifier).
pub fn l4(proto: u8, sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = match proto {
        UDP => {
            let mut h = vec![0u8; 8];
            h[0..2].copy_from_slice(&sport.to_be_bytes());
            h[2..4].copy_from_slice(&dport.to_be_bytes());
            h[4..6].copy_from_slice(&((8 + payload.len()).min(0xffff) as u16).to_be_bytes());
            h
        }
        TCP => {
            let mut h = vec![0u8; 20];
            h[0..2].copy_from_slice(&sport.to_be_bytes());
            h[2..4].copy_from_slice(&dport.to_be_bytes());
            h[4..8].copy_from_slice(&1u32.to_be_bytes());
            h[12] = 5 << 4;
            h[13] = flags;
            h[14..16].copy_from_slice(&64240u16.to_be_bytes());
            h
        }
        _ => {
            let mut h = vec![0u8; 8];
            h[0] = flags;
            h[4..6].copy_from_slice(&sport.to_be_bytes());
            h[6..8].copy_from_slice(&1u16.to_be_bytes());
            h
        }
    };
    h.extend_from_slice(payload);
    h
}

/// Checks the table-wide invariants of `nat` and panics (a fuzz finding) when one breaks:
/// the session counter equals the session rows, no two internal endpoints share an
/// external (protocol, address, port), the session count is within `max_sessions` and each
/// host's within `max_per_host`.
pub fn check_table(nat: &Nat, max_sessions: usize, max_per_host: usize) {
    let rows = nat.sessions();
    let count = nat.session_count();
    assert_eq!(rows.len(), count, "session counter {count} differs from the {} session rows", rows.len());
    assert!(count <= max_sessions, "{count} sessions exceed the limit {max_sessions}");
    let mut owner: HashMap<(u8, Ipv4Addr, u16), (Ipv4Addr, u16)> = HashMap::new();
    let mut per_host: HashMap<Ipv4Addr, usize> = HashMap::new();
    for r in &rows {
        let key = (r.protocol, r.external_source_address, r.external_source_port);
        let internal = (r.internal_source_address, r.internal_source_port);
        if let Some(other) = owner.insert(key, internal) {
            assert_eq!(other, internal, "internal endpoints {other:?} and {internal:?} share external {key:?}");
        }
        assert!(!is_internal(u32::from(r.external_source_address)), "session with an internal external address: {r:?}");
        *per_host.entry(r.internal_source_address).or_default() += 1;
    }
    for (host, n) in per_host {
        assert!(n <= max_per_host, "host {host} holds {n} sessions, above the per-host limit {max_per_host}");
    }
}

/// The fuzz targets as plain functions, so regression inputs run under `cargo test` too.
pub mod targets {
    pub mod operation_sequence;
    pub mod packet_outbound_inbound;
    pub mod pcap_reader;
}
