//! Behaviour tests of the engine, one file per area of design §2, on packets built and
//! checked with etherparse (an independent parser).

mod dos;
mod errors_and_fragments;
mod events;
mod filtering_and_timers;
mod invariants;
mod mapping;
mod model;
mod static_and_hairpin;

use std::net::Ipv4Addr;

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

use crate::wire::checksum;
use crate::{Direction, Instant, Nat, NatConfig, Verdict};

pub(crate) const INSIDE_A: [u8; 4] = [10, 100, 10, 11];
pub(crate) const INSIDE_B: [u8; 4] = [10, 100, 10, 12];
pub(crate) const EXT: [u8; 4] = [203, 0, 113, 1];
pub(crate) const WAN1: [u8; 4] = [203, 0, 113, 10];
pub(crate) const WAN2: [u8; 4] = [203, 0, 113, 11];
pub(crate) const FAR: [u8; 4] = [198, 51, 100, 7];

pub(crate) fn config() -> NatConfig {
    NatConfig::new("WinNAT", "10.100.0.0/16".parse().unwrap(), Ipv4Addr::from(EXT))
}

pub(crate) fn nat() -> Nat {
    Nat::new(config()).unwrap()
}

pub(crate) fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv4(src, dst, 64).udp(sport, dport).write(&mut out, b"payload!").unwrap();
    out
}

pub(crate) fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: &str) -> Vec<u8> {
    tcp_seq(src, sport, dst, dport, flags, 1000)
}

/// Like [`tcp`] (window 65535, no options, no payload), with sequence number `seq`.
pub(crate) fn tcp_seq(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: &str, seq: u32) -> Vec<u8> {
    let mut b = PacketBuilder::ipv4(src, dst, 64).tcp(sport, dport, seq, 65535);
    for f in flags.chars() {
        b = match f {
            'S' => b.syn(),
            'A' => b.ack(1),
            'F' => b.fin(),
            'R' => b.rst(),
            'P' => b.psh(),
            _ => panic!("flag {f}"),
        };
    }
    let mut out = Vec::new();
    b.write(&mut out, b"").unwrap();
    out
}

pub(crate) fn echo_request(src: [u8; 4], dst: [u8; 4], id: u16, seq: u16) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv4(src, dst, 64).icmpv4_echo_request(id, seq).write(&mut out, b"ping").unwrap();
    out
}

pub(crate) fn echo_reply(src: [u8; 4], dst: [u8; 4], id: u16, seq: u16) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv4(src, dst, 64).icmpv4_echo_reply(id, seq).write(&mut out, b"ping").unwrap();
    out
}

/// An ICMP error of `ty`/`code` from `src` to `dst` quoting the first bytes of `original`.
pub(crate) fn icmp_error(src: [u8; 4], dst: [u8; 4], ty: u8, code: u8, original: &[u8]) -> Vec<u8> {
    let quoted = &original[..original.len().min(28)];
    let mut msg = vec![ty, code, 0, 0, 0, 0, 0, 0];
    msg.extend_from_slice(quoted);
    let c = checksum::checksum(&msg);
    msg[2..4].copy_from_slice(&c.to_be_bytes());
    let mut out = Vec::new();
    let ip = etherparse::Ipv4Header::new(msg.len() as u16, 64, etherparse::IpNumber::ICMP, src, dst).unwrap();
    ip.write(&mut out).unwrap();
    out.extend_from_slice(&msg);
    out
}

/// What tests read back from a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seen {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub sport: u16,
    pub dport: u16,
}

/// Parses `p` with etherparse, asserting that every checksum is right.
pub(crate) fn seen(p: &[u8]) -> Seen {
    assert_checksums(p);
    let s = SlicedPacket::from_ip(p).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &s.net else { panic!("not ipv4") };
    let (src, dst) = (ip.header().source(), ip.header().destination());
    let (sport, dport) = match &s.transport {
        Some(TransportSlice::Udp(u)) => (u.source_port(), u.destination_port()),
        Some(TransportSlice::Tcp(t)) => (t.source_port(), t.destination_port()),
        Some(TransportSlice::Icmpv4(i)) => {
            let b = i.slice();
            let id = u16::from_be_bytes([b[4], b[5]]);
            (id, id)
        }
        _ => (0, 0),
    };
    Seen { src, dst, sport, dport }
}

/// Every checksum of `p` (IPv4 header, TCP/UDP with pseudo-header, ICMP) recomputed from
/// scratch equals the one in the packet; for ICMP errors the embedded IPv4 header too.
pub(crate) fn assert_checksums(p: &[u8]) {
    let s = SlicedPacket::from_ip(p).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &s.net else { panic!("not ipv4") };
    let h = ip.header().to_header();
    assert_eq!(h.calc_header_checksum(), h.header_checksum, "ipv4 header checksum");
    if ip.is_payload_fragmented() && h.fragment_offset.value() != 0 {
        return;
    }
    match &s.transport {
        Some(TransportSlice::Udp(u)) => {
            let hdr = u.to_header();
            if hdr.checksum != 0 && !ip.is_payload_fragmented() {
                assert_eq!(hdr.calc_checksum_ipv4(&h, u.payload()).unwrap(), hdr.checksum, "udp checksum");
            }
        }
        Some(TransportSlice::Tcp(t)) if !ip.is_payload_fragmented() => {
            assert_eq!(t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap(), t.checksum(), "tcp checksum");
        }
        Some(TransportSlice::Icmpv4(i)) if !ip.is_payload_fragmented() => {
            assert_eq!(checksum::checksum(i.slice()), 0, "icmp checksum");
            let b = i.slice();
            if matches!(b[0], 3 | 11 | 12) {
                let inner = &b[8..];
                let ihl = usize::from(inner[0] & 0xf) * 4;
                assert_eq!(checksum::checksum(&inner[..ihl]), 0, "embedded ipv4 header checksum");
            }
        }
        _ => {}
    }
}

/// Hands `p` to the engine at `secs` seconds and returns the verdict.
pub(crate) fn run(nat: &Nat, secs: f64, p: &mut [u8]) -> Verdict {
    nat.handle_packet(Instant::from_micros((secs * 1e6) as u64), p)
}

/// Sends `p` and expects it forwarded in `dir`; returns what came out.
pub(crate) fn forward(nat: &Nat, secs: f64, mut p: Vec<u8>, dir: Direction) -> Seen {
    let v = run(nat, secs, &mut p);
    assert!(matches!(v, Verdict::Forward { direction, .. } if direction == dir), "expected {dir:?}, got {v:?}");
    seen(&p)
}

/// Sends `p` and expects it dropped; returns the reason.
pub(crate) fn dropped(nat: &Nat, secs: f64, mut p: Vec<u8>) -> crate::DropReason {
    match run(nat, secs, &mut p) {
        Verdict::Drop(r) => r,
        v => panic!("expected a drop, got {v:?}"),
    }
}
