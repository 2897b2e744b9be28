//! Shared helpers for the netnat benches: 64-byte packet builders, flow set-up on a [`Nat`],
//! and the two in-run baselines every engine figure is reported next to.
//!
//! - [`parse_and_touch`]: the least a packet path can do (read the IPv4 header and the ports,
//!   write one byte), over the same buffers the engine gets.
//! - [`BaselineTable`]: a plain `Mutex<HashMap>` translation table doing the same lookup,
//!   timer update and in-place rewrite (incremental checksums) as the engine's fast path, in
//!   place of the engine's lock-sharded table.
//!
//! What this crate does not do: measure anything by itself (see `benches/engine.rs` and
//! `src/bin/memory.rs`), or test the engine's semantics (see the engine's own tests).
//!
//! The checksum code here is written independently of the engine's `wire` module so that a
//! bench packet is not valid merely because both sides share a bug.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use netnat_engine::{ExternalAddress, Instant, Nat, NatConfig, Verdict};
use parking_lot::Mutex;

/// Every bench packet is this long: the 64-byte packets of design.md §6.
pub const PACKET_LEN: usize = 64;
/// The NAT's internal prefix.
pub const INTERNAL_PREFIX: &str = "10.100.0.0/16";
/// The NAT's first external address.
pub const EXTERNAL: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// The remote every flow talks to.
pub const REMOTE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
/// The remote's port.
pub const REMOTE_PORT: u16 = 53;
/// The fixed clock of every bench: sessions are created and used at this instant.
pub const NOW: Instant = Instant::from_secs(10);

/// IP protocol numbers.
pub const ICMP: u8 = 1;
/// IP protocol number of TCP.
pub const TCP: u8 = 6;
/// IP protocol number of UDP.
pub const UDP: u8 = 17;

/// TCP flags used by the benches.
pub const SYN: u8 = 0x02;
/// TCP ACK flag.
pub const ACK: u8 = 0x10;

/// A 64-byte packet.
pub type Packet = [u8; PACKET_LEN];

/// The criterion settings of every netnat bench (the engine's here, the daemon's packet path
/// in the netnat package): 20 samples of 2 s after a 0.5 s warm-up, so a bench file runs in
/// minutes on the 2-core machine. BENCHMARKS.md's figures were measured with them.
pub fn criterion_settings() -> criterion::Criterion {
    criterion::Criterion::default()
        .measurement_time(std::time::Duration::from_secs(2))
        .warm_up_time(std::time::Duration::from_millis(500))
        .sample_size(20)
}

/// A NAT on 10.100.0.0/16 with `externals` external addresses 203.0.113.1, .2, ... and a
/// session limit of at least `max_sessions`.
pub fn config(externals: u8, max_sessions: usize) -> NatConfig {
    let mut c = NatConfig::new("bench", INTERNAL_PREFIX.parse().expect("valid prefix"), EXTERNAL);
    c.external_addresses = (1..=externals).map(|i| ExternalAddress::new(Ipv4Addr::new(203, 0, 113, i))).collect();
    c.limits.max_sessions = c.limits.max_sessions.max(max_sessions);
    c.seed = 0x5eed;
    c
}

/// The `i`-th distinct internal endpoint (`i < 2^20`): hosts vary fastest (16 endpoints per
/// host at 1 M) so the per-host cap never binds.
pub fn internal_endpoint(i: usize) -> (Ipv4Addr, u16) {
    assert!(i < 1 << 20, "at most 2^20 distinct internal endpoints");
    let host = (i & 0xffff) as u32;
    let addr = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 100, 0, 0)) | host);
    (addr, 20_000 + (i >> 16) as u16)
}

/// The Internet checksum's one's-complement sum of `data`, added to `initial`.
pub fn sum16(initial: u32, data: &[u8]) -> u32 {
    let mut acc = u64::from(initial);
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(*last) << 8;
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u32
}

/// Folds and complements a sum into a checksum field value.
pub fn fold(sum: u32) -> u16 {
    let mut s = sum;
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// The TCP/UDP pseudo-header sum of an IPv4 packet for an L4 length.
fn pseudo(pkt: &[u8], proto: u8, l4_len: usize) -> u32 {
    sum16(u32::from(proto) + l4_len as u32, &pkt[12..20])
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Writes an IPv4 header (no options) for a `total`-byte packet and fills its checksum.
fn ipv4_header(pkt: &mut [u8], total: usize, proto: u8, src: Ipv4Addr, dst: Ipv4Addr) {
    pkt[0] = 0x45;
    pkt[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    pkt[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    pkt[6] = 0x40; // DF
    pkt[8] = 64;
    pkt[9] = proto;
    pkt[12..16].copy_from_slice(&src.octets());
    pkt[16..20].copy_from_slice(&dst.octets());
    let c = fold(sum16(0, &pkt[..20]));
    pkt[10..12].copy_from_slice(&c.to_be_bytes());
}

/// A 64-byte UDP packet with a valid UDP checksum.
pub fn udp(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)) -> Packet {
    let mut p = [0u8; PACKET_LEN];
    ipv4_header(&mut p, PACKET_LEN, UDP, src.0, dst.0);
    let l4 = PACKET_LEN - 20;
    p[20..22].copy_from_slice(&src.1.to_be_bytes());
    p[22..24].copy_from_slice(&dst.1.to_be_bytes());
    p[24..26].copy_from_slice(&(l4 as u16).to_be_bytes());
    for (i, b) in p[28..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let c = fold(sum16(pseudo(&p, UDP, l4), &p[20..]));
    p[26..28].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
    p
}

/// A 64-byte TCP segment with `flags` and a valid checksum.
pub fn tcp(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), flags: u8) -> Packet {
    let mut p = [0u8; PACKET_LEN];
    ipv4_header(&mut p, PACKET_LEN, TCP, src.0, dst.0);
    let l4 = PACKET_LEN - 20;
    p[20..22].copy_from_slice(&src.1.to_be_bytes());
    p[22..24].copy_from_slice(&dst.1.to_be_bytes());
    p[24..28].copy_from_slice(&1000u32.to_be_bytes());
    p[28..32].copy_from_slice(&2000u32.to_be_bytes());
    p[32] = 5 << 4;
    p[33] = flags;
    p[34..36].copy_from_slice(&64240u16.to_be_bytes());
    for (i, b) in p[40..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let c = fold(sum16(pseudo(&p, TCP, l4), &p[20..]));
    p[36..38].copy_from_slice(&c.to_be_bytes());
    p
}

/// A 64-byte ICMP echo request (`ty` 8) or reply (`ty` 0) with identifier `id`.
pub fn icmp_echo(src: Ipv4Addr, dst: Ipv4Addr, ty: u8, id: u16) -> Packet {
    let mut p = [0u8; PACKET_LEN];
    ipv4_header(&mut p, PACKET_LEN, ICMP, src, dst);
    p[20] = ty;
    p[24..26].copy_from_slice(&id.to_be_bytes());
    p[26..28].copy_from_slice(&1u16.to_be_bytes());
    for (i, b) in p[28..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let c = fold(sum16(0, &p[20..]));
    p[22..24].copy_from_slice(&c.to_be_bytes());
    p
}

/// A 64-byte ICMP destination unreachable (port unreachable) from `src` to `dst` quoting
/// the first 36 bytes of `quoted` (its IPv4 header and 16 bytes of transport).
pub fn icmp_port_unreachable(src: Ipv4Addr, dst: Ipv4Addr, quoted: &[u8]) -> Packet {
    let mut p = [0u8; PACKET_LEN];
    ipv4_header(&mut p, PACKET_LEN, ICMP, src, dst);
    p[20] = 3;
    p[21] = 3;
    p[28..].copy_from_slice(&quoted[..PACKET_LEN - 28]);
    let c = fold(sum16(0, &p[20..]));
    p[22..24].copy_from_slice(&c.to_be_bytes());
    p
}

/// Source endpoint of a translated (or any) UDP/TCP packet.
pub fn source(pkt: &[u8]) -> (Ipv4Addr, u16) {
    (Ipv4Addr::from(be32(pkt, 12)), be16(pkt, 20))
}

/// Flows set up on a NAT: for each, the internal and the external endpoint.
#[derive(Clone, Debug, Default)]
pub struct Flows {
    /// Internal endpoints, in creation order.
    pub internal: Vec<(Ipv4Addr, u16)>,
    /// The external endpoint the NAT gave each.
    pub external: Vec<(Ipv4Addr, u16)>,
}

fn forward(nat: &Nat, pkt: &mut [u8]) -> anyhow::Result<()> {
    match nat.handle_packet(NOW, pkt) {
        Verdict::Forward { .. } => Ok(()),
        other => anyhow::bail!("set-up packet not forwarded: {other:?}"),
    }
}

/// Creates `n` UDP flows (internal endpoints `0..n`) to the remote, one session each.
pub fn establish_udp(nat: &Nat, n: usize) -> anyhow::Result<Flows> {
    let mut flows = Flows::default();
    for i in 0..n {
        let int = internal_endpoint(i);
        let mut p = udp(int, (REMOTE, REMOTE_PORT));
        forward(nat, &mut p)?;
        flows.internal.push(int);
        flows.external.push(source(&p));
    }
    Ok(flows)
}

/// Creates `n` established TCP flows: SYN out, SYN-ACK in, ACK out.
pub fn establish_tcp(nat: &Nat, n: usize) -> anyhow::Result<Flows> {
    let mut flows = Flows::default();
    for i in 0..n {
        let int = internal_endpoint(i);
        let mut p = tcp(int, (REMOTE, REMOTE_PORT), SYN);
        forward(nat, &mut p)?;
        let ext = source(&p);
        forward(nat, &mut tcp((REMOTE, REMOTE_PORT), ext, SYN | ACK))?;
        forward(nat, &mut tcp(int, (REMOTE, REMOTE_PORT), ACK))?;
        flows.internal.push(int);
        flows.external.push(ext);
    }
    Ok(flows)
}

/// Creates `n` ICMP echo flows (internal host `i`, identifier `i`); the external identifier
/// is in the "port" of `external`.
pub fn establish_icmp(nat: &Nat, n: usize) -> anyhow::Result<Flows> {
    let mut flows = Flows::default();
    for i in 0..n {
        let (addr, _) = internal_endpoint(i);
        let id = i as u16;
        let mut p = icmp_echo(addr, REMOTE, 8, id);
        forward(nat, &mut p)?;
        flows.internal.push((addr, id));
        flows.external.push((Ipv4Addr::from(be32(&p, 12)), be16(&p, 24)));
    }
    Ok(flows)
}

/// The least a packet path does: read the IPv4 header and the ports, write one byte (the
/// TTL). Returns a value derived from every field read so nothing is optimised away.
#[inline]
pub fn parse_and_touch(pkt: &mut [u8]) -> u32 {
    if pkt.len() < 20 || pkt[0] >> 4 != 4 {
        return 0;
    }
    let ihl = usize::from(pkt[0] & 0x0f) * 4;
    let total = u32::from(be16(pkt, 2));
    let proto = u32::from(pkt[9]);
    let (src, dst) = (be32(pkt, 12), be32(pkt, 16));
    let ports = if pkt.len() >= ihl + 4 { be32(pkt, ihl) } else { 0 };
    pkt[8] = pkt[8].wrapping_sub(1);
    src ^ dst.rotate_left(7) ^ ports ^ (proto << 24) ^ total
}

/// RFC 1624 eqn. 3: the checksum after a 16-bit field changed from `old` to `new`.
#[inline]
fn update16(check: u16, old: u16, new: u16) -> u16 {
    let s = u32::from(!check) + u32::from(!old) + u32::from(new);
    fold(s)
}

#[inline]
fn update32(check: u16, old: u32, new: u32) -> u16 {
    let c = update16(check, (old >> 16) as u16, (new >> 16) as u16);
    update16(c, old as u16, new as u16)
}

/// One entry of the baseline table: what the engine keeps per established flow on the fast
/// path (external endpoint, remote, last-seen time).
#[derive(Clone, Copy, Debug)]
struct BaselineEntry {
    external_addr: u32,
    external_port: u16,
    remote_addr: u32,
    remote_port: u16,
    last_seen: u64,
}

/// A plain `Mutex<HashMap>` translation table (same hasher family as the engine, ahash):
/// the baseline for the engine's lock-sharded table. Outbound only, established flows only.
#[derive(Debug, Default)]
pub struct BaselineTable {
    map: Mutex<HashMap<u64, BaselineEntry, ahash::RandomState>>,
}

fn baseline_key(proto: u8, addr: u32, port: u16) -> u64 {
    (u64::from(proto) << 48) | (u64::from(addr) << 16) | u64::from(port)
}

impl BaselineTable {
    /// An empty table.
    pub fn new() -> BaselineTable {
        BaselineTable { map: Mutex::new(HashMap::with_hasher(ahash::RandomState::with_seeds(1, 2, 3, 4))) }
    }

    /// The same flows as a NAT's: `flows.internal[i]` maps to `flows.external[i]`.
    pub fn from_flows(proto: u8, flows: &Flows) -> BaselineTable {
        let t = BaselineTable::new();
        {
            let mut map = t.map.lock();
            for (int, ext) in flows.internal.iter().zip(&flows.external) {
                map.insert(
                    baseline_key(proto, u32::from(int.0), int.1),
                    BaselineEntry {
                        external_addr: u32::from(ext.0),
                        external_port: ext.1,
                        remote_addr: u32::from(REMOTE),
                        remote_port: REMOTE_PORT,
                        last_seen: 0,
                    },
                );
            }
        }
        t
    }

    /// Translates an outbound TCP or UDP packet of a known flow in place, with the same
    /// checks and checksum updates the engine does. Returns whether it was translated.
    #[inline]
    pub fn translate_out(&self, now: Instant, pkt: &mut [u8]) -> bool {
        if pkt.len() < 20 || pkt[0] != 0x45 {
            return false;
        }
        let total = usize::from(be16(pkt, 2));
        let proto = pkt[9];
        if total > pkt.len() || total < 28 || !(proto == TCP || proto == UDP) {
            return false;
        }
        let (src, dst) = (be32(pkt, 12), be32(pkt, 16));
        let (sport, dport) = (be16(pkt, 20), be16(pkt, 22));
        let (ext_addr, ext_port) = {
            let mut map = self.map.lock();
            let Some(e) = map.get_mut(&baseline_key(proto, src, sport)) else { return false };
            if e.remote_addr != dst || e.remote_port != dport {
                return false;
            }
            e.last_seen = now.as_micros();
            (e.external_addr, e.external_port)
        };
        pkt[12..16].copy_from_slice(&ext_addr.to_be_bytes());
        let ipc = update32(be16(pkt, 10), src, ext_addr);
        pkt[10..12].copy_from_slice(&ipc.to_be_bytes());
        pkt[20..22].copy_from_slice(&ext_port.to_be_bytes());
        let at = if proto == TCP { 36 } else { 26 };
        let old = be16(pkt, at);
        if proto == UDP && old == 0 {
            return true;
        }
        let c = update16(update32(old, src, ext_addr), sport, ext_port);
        pkt[at..at + 2].copy_from_slice(&c.to_be_bytes());
        true
    }
}

/// Whether the IPv4 header checksum and the TCP/UDP/ICMP checksum of an unfragmented packet
/// are valid (a full recompute). Used to check the bench set-up is realistic.
pub fn checksums_valid(pkt: &[u8]) -> bool {
    let ihl = usize::from(pkt[0] & 0x0f) * 4;
    let total = usize::from(be16(pkt, 2));
    if fold(sum16(0, &pkt[..ihl])) != 0 {
        return false;
    }
    let seg = &pkt[ihl..total];
    match pkt[9] {
        UDP if be16(seg, 6) == 0 => true,
        TCP | UDP => fold(sum16(pseudo(pkt, pkt[9], seg.len()), seg)) == 0,
        ICMP => fold(sum16(0, seg)) == 0,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netnat_engine::Direction;

    #[test]
    fn built_packets_have_valid_checksums() {
        let a = internal_endpoint(5);
        assert!(checksums_valid(&udp(a, (REMOTE, 53))));
        assert!(checksums_valid(&tcp(a, (REMOTE, 53), SYN)));
        assert!(checksums_valid(&icmp_echo(a.0, REMOTE, 8, 7)));
        assert!(checksums_valid(&icmp_port_unreachable(REMOTE, EXTERNAL, &udp(a, (REMOTE, 53)))));
    }

    #[test]
    fn baseline_translates_like_the_engine() {
        let nat = Nat::new(config(1, 0)).unwrap();
        let flows = establish_udp(&nat, 8).unwrap();
        let table = BaselineTable::from_flows(UDP, &flows);
        for int in &flows.internal {
            let mut by_engine = udp(*int, (REMOTE, REMOTE_PORT));
            let mut by_baseline = by_engine;
            let v = nat.handle_packet(NOW, &mut by_engine);
            assert!(matches!(v, Verdict::Forward { direction: Direction::Outbound, .. }));
            assert!(table.translate_out(NOW, &mut by_baseline));
            assert_eq!(by_engine, by_baseline);
            assert!(checksums_valid(&by_baseline));
        }
    }

    #[test]
    fn established_flows_translate_both_ways() {
        let nat = Nat::new(config(1, 0)).unwrap();
        let flows = establish_tcp(&nat, 4).unwrap();
        for ext in &flows.external {
            let mut p = tcp((REMOTE, REMOTE_PORT), *ext, ACK);
            assert!(matches!(nat.handle_packet(NOW, &mut p), Verdict::Forward { direction: Direction::Inbound, .. }));
            assert!(checksums_valid(&p));
        }
        let icmp = establish_icmp(&nat, 4).unwrap();
        for ext in &icmp.external {
            let mut p = icmp_echo(REMOTE, ext.0, 0, ext.1);
            assert!(matches!(nat.handle_packet(NOW, &mut p), Verdict::Forward { direction: Direction::Inbound, .. }));
            assert!(checksums_valid(&p));
        }
    }

    #[test]
    fn internal_endpoints_are_distinct() {
        let mut seen: Vec<_> = (0..1 << 20).step_by(4099).map(internal_endpoint).collect();
        let n = seen.len();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), n);
    }
}
