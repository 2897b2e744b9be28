//! Raw bytes as an IPv4 packet into a NAT (10.100.0.0/16 behind 203.0.113.1), outbound and
//! inbound.
//!
//! Input: one mode byte, then the packet. Mode & 3:
//! 0. the bytes as they are (the engine classifies them);
//! 1. forced outbound: source put inside 10.100.0.0/16, destination outside it;
//! 2. forced inbound: destination set to 203.0.113.1, after a priming outbound packet that
//!    opens the session the inbound packet (or the packet an ICMP error quotes) belongs to
//!    (the NAT preserves ports, so the external port is the internal one);
//! 3. forced outbound, then its mirror image sent back inbound (the round trip).
//!
//! Mode & 4 keeps the transport checksum as given instead of recomputing it after forcing;
//! mode & 8 runs a sweep at a late time before the packet; mode & 16 uses random ports.
//!
//! Checked: nothing panics; a forwarded outbound packet has no internal source and a
//! forwarded inbound one an internal destination; a packet that came in with valid checksums
//! leaves with valid checksums (IPv4 header, TCP/UDP/ICMP, and the quoted IPv4 header of an
//! ICMP error); a passed packet is unchanged; a mirrored reply to a translated UDP, TCP or
//! echo packet gets back to the endpoint that sent it.

use crate::{
    all_checksums_ok, base_config, be16, build, fill_ip_checksum, fill_l4_checksum, ip_checksum_ok, is_internal, l4,
    parse_ip, preserve_config, EXTERNAL, ICMP, TCP, UDP, VM,
};
use netnat_engine::{Direction, Instant, Nat, Verdict};

const NOW: Instant = Instant::from_secs(100);

/// Runs one input (see the module doc for its layout).
pub fn fuzz_one(data: &[u8]) {
    let Some((&mode, bytes)) = data.split_first() else { return };
    let config = if mode & 16 != 0 { base_config() } else { preserve_config() };
    let nat = Nat::new(config).expect("valid config");
    if mode & 8 != 0 {
        nat.handle_timeout(Instant::from_secs(10_000));
    }
    let mut pkt = bytes.to_vec();
    let keep_l4 = mode & 4 != 0;
    match mode & 3 {
        0 => {
            run(&nat, &mut pkt);
        }
        1 => {
            force_outbound(&mut pkt, keep_l4);
            run(&nat, &mut pkt);
        }
        2 => {
            force_inbound(&mut pkt, keep_l4);
            prime(&nat, &pkt);
            run(&nat, &mut pkt);
        }
        _ => {
            force_outbound(&mut pkt, keep_l4);
            let original = pkt.clone();
            if let Verdict::Forward { direction: Direction::Outbound, len } = run(&nat, &mut pkt) {
                round_trip(&nat, &original, &pkt[..len]);
            }
        }
    }
    while let Some(released) = nat.poll_released() {
        if released.direction == Some(Direction::Outbound) && released.packet.len() >= 20 {
            assert!(!is_internal(crate::be32(&released.packet, 12)), "released fragment leaks its source");
        }
    }
}

/// Sends `pkt` and checks what comes out.
fn run(nat: &Nat, pkt: &mut Vec<u8>) -> Verdict {
    let before = pkt.clone();
    let ip_ok = parse_ip(pkt, false).is_some() && ip_checksum_ok(pkt);
    let all_ok = all_checksums_ok(pkt);
    let quoted_ok = quoted_header_ok(pkt);
    let verdict = nat.handle_packet(NOW, pkt);
    match verdict {
        Verdict::Forward { direction, len } => {
            assert!(len <= pkt.len(), "forward length {len} beyond the buffer {}", pkt.len());
            let out = &pkt[..len];
            let ip = parse_ip(out, false).expect("a forwarded packet is IPv4");
            match direction {
                Direction::Outbound => assert!(!is_internal(ip.src), "outbound packet keeps an internal source"),
                Direction::Inbound => assert!(is_internal(ip.dst), "inbound packet not sent to an internal host"),
                Direction::Hairpin => {}
            }
            if ip_ok {
                assert!(ip_checksum_ok(out), "IPv4 header checksum broken by the translation");
            }
            if all_ok {
                assert!(all_checksums_ok(out), "transport checksum broken by the translation");
            }
            if quoted_ok == Some(true) {
                assert_eq!(quoted_header_ok(out), Some(true), "quoted IPv4 header checksum broken");
            }
        }
        Verdict::Pass => assert_eq!(*pkt, before, "a passed packet was modified"),
        Verdict::Held(_) | Verdict::Drop(_) => {}
    }
    verdict
}

/// For an ICMP error: whether the IPv4 header it quotes has a valid checksum.
fn quoted_header_ok(pkt: &[u8]) -> Option<bool> {
    let ip = parse_ip(pkt, true)?;
    let msg = &pkt[ip.ihl..ip.total];
    if ip.proto != ICMP || ip.fragment || msg.len() < 8 || !matches!(msg[0], 3 | 11 | 12) {
        return None;
    }
    let inner = &msg[8..];
    parse_ip(inner, false)?;
    Some(ip_checksum_ok(inner))
}

fn fix_checksums(pkt: &mut [u8], keep_l4: bool) {
    if parse_ip(pkt, false).is_some() {
        fill_ip_checksum(pkt);
        if !keep_l4 {
            fill_l4_checksum(pkt);
        }
    }
}

fn force_outbound(pkt: &mut [u8], keep_l4: bool) {
    if pkt.len() < 20 {
        return;
    }
    pkt[12..14].copy_from_slice(&[10, 100]);
    let dst = crate::be32(pkt, 16);
    if is_internal(dst) || dst == u32::from(EXTERNAL) || dst >> 28 >= 0xe {
        pkt[16..19].copy_from_slice(&[198, 51, 100]);
    }
    fix_checksums(pkt, keep_l4);
}

fn force_inbound(pkt: &mut [u8], keep_l4: bool) {
    if pkt.len() < 20 {
        return;
    }
    pkt[16..20].copy_from_slice(&EXTERNAL.octets());
    if is_internal(crate::be32(pkt, 12)) {
        pkt[12..14].copy_from_slice(&[198, 51]);
    }
    fix_checksums(pkt, keep_l4);
}

/// Opens, from 10.100.10.11, the session an inbound packet would belong to.
fn prime(nat: &Nat, inbound: &[u8]) {
    let Some(ip) = parse_ip(inbound, false) else { return };
    let seg = &inbound[ip.ihl..inbound.len().min(ip.total.max(ip.ihl))];
    let (proto, remote, rport, port, flags) = match ip.proto {
        UDP | TCP if seg.len() >= 4 => (ip.proto, ip.src, be16(seg, 0), be16(seg, 2), 0x02),
        ICMP if seg.len() >= 8 && seg[0] == 0 => (ICMP, ip.src, 0, be16(seg, 4), 8),
        ICMP if seg.len() >= 8 + 24 && matches!(seg[0], 3 | 11 | 12) => {
            // An error quoting a packet we sent: open that packet's session.
            let Some(q) = parse_ip(&seg[8..], false) else { return };
            let qseg = &seg[8 + q.ihl.min(seg.len() - 8)..];
            if qseg.len() < 8 {
                return;
            }
            match q.proto {
                UDP | TCP => (q.proto, q.dst, be16(qseg, 2), be16(qseg, 0), 0x02),
                ICMP => (ICMP, q.dst, 0, be16(qseg, 4), 8),
                _ => return,
            }
        }
        _ => return,
    };
    let mut out = build(proto, u32::from(VM), remote, 1, 0x4000, &l4(proto, port, rport, flags, &[0; 8]));
    // The priming packet is well-formed; it may still be dropped (e.g. a port of 0).
    run(nat, &mut out);
}

/// Mirrors a translated outbound packet back and checks it reaches the original sender.
fn round_trip(nat: &Nat, original: &[u8], translated: &[u8]) {
    let Some(ip) = parse_ip(translated, true) else { return };
    if ip.fragment {
        return;
    }
    let mut reply = translated[..ip.total].to_vec();
    reply[12..16].copy_from_slice(&translated[16..20]);
    reply[16..20].copy_from_slice(&translated[12..16]);
    let ihl = ip.ihl;
    let echo = ip.proto == ICMP && reply.len() >= ihl + 8 && reply[ihl] == 8;
    match ip.proto {
        UDP | TCP if reply.len() >= ihl + 4 => {
            let (s, d) = (be16(&reply, ihl), be16(&reply, ihl + 2));
            reply[ihl..ihl + 2].copy_from_slice(&d.to_be_bytes());
            reply[ihl + 2..ihl + 4].copy_from_slice(&s.to_be_bytes());
        }
        _ if echo => reply[ihl] = 0,
        _ => return,
    }
    fill_ip_checksum(&mut reply);
    fill_l4_checksum(&mut reply);
    let verdict = run(nat, &mut reply);
    let Verdict::Forward { direction: Direction::Inbound, len } = verdict else {
        panic!("the mirrored reply to a translated packet was not let in: {verdict:?}");
    };
    let back = &reply[..len];
    assert_eq!(back[16..20], original[12..16], "reply delivered to another host");
    let at = if echo { ihl + 4 } else { ihl + 2 };
    let sent = if echo { ihl + 4 } else { ihl };
    assert_eq!(back[at..at + 2], original[sent..sent + 2], "reply delivered to another port or identifier");
}
