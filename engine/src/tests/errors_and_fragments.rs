//! ICMP error translation (RFC 5508) and IPv4 fragments (RFC 4787 REQ-14).

use super::*;
use crate::DropReason;

/// The packet quoted inside an ICMP error in `p`.
fn quoted(p: &[u8]) -> Seen {
    let inner = &p[28..];
    let ihl = usize::from(inner[0] & 0xf) * 4;
    assert_eq!(checksum::checksum(&inner[..ihl]), 0, "embedded ipv4 checksum");
    let l4 = &inner[ihl..];
    Seen {
        src: inner[12..16].try_into().unwrap(),
        dst: inner[16..20].try_into().unwrap(),
        sport: u16::from_be_bytes([l4[0], l4[1]]),
        dport: u16::from_be_bytes([l4[2], l4[3]]),
    }
}

#[test]
fn inbound_errors_about_udp_tcp_and_echo_are_translated_back() {
    let nat = nat();
    let originals =
        [udp(INSIDE_A, 5000, FAR, 33434), tcp(INSIDE_A, 6000, FAR, 80, "S"), echo_request(INSIDE_A, FAR, 77, 1)];
    for (i, orig) in originals.into_iter().enumerate() {
        let mut out = orig.clone();
        assert!(matches!(run(&nat, 1.0, &mut out), Verdict::Forward { .. }));
        // A router on the way (WAN1) reports time exceeded / port unreachable about `out`.
        let (ty, code) = if i == 0 { (3, 3) } else { (11, 0) };
        let mut err = icmp_error(WAN1, EXT, ty, code, &out);
        assert!(matches!(run(&nat, 1.5, &mut err), Verdict::Forward { direction: Direction::Inbound, .. }), "case {i}");
        let outer = seen(&err);
        assert_eq!(outer.dst, INSIDE_A, "outer destination is the internal host");
        assert_eq!(outer.src, WAN1);
        assert_eq!(err[20], ty, "type kept");
        assert_eq!(err[21], code, "code kept");
        let mut q = quoted(&err);
        if i == 2 {
            // ICMP: the identifier, not the type/code, plays the port.
            q.sport = u16::from_be_bytes([err[48 + 4], err[48 + 5]]);
        }
        assert_eq!(q.src, INSIDE_A, "embedded source reverted");
        let internal_port = [5000, 6000, 77][i];
        assert_eq!(q.sport, internal_port, "embedded port/identifier reverted");
        assert_eq!(q.dst, FAR);
        if i < 2 {
            assert_eq!(q.dport, [33434, 80][i], "remote port untouched");
        }
        // The embedded transport checksum was updated incrementally: it equals the checksum
        // of the original packet we quoted (same bytes after reversal).
        let inner_l4 = &err[28 + 20..];
        let orig_l4 = &orig[20..];
        let n = inner_l4.len().min(8);
        assert_eq!(&inner_l4[..n], &orig_l4[..n], "embedded transport header equals the original");
    }
}

#[test]
fn errors_matching_no_session_are_dropped_and_do_not_refresh() {
    let nat = nat();
    let forged = udp(EXT, 40000, FAR, 53);
    assert_eq!(dropped(&nat, 1.0, icmp_error(WAN1, EXT, 3, 3, &forged)), DropReason::IcmpErrorNoSession);
    let mut out = udp(INSIDE_A, 5000, FAR, 53);
    run(&nat, 0.0, &mut out);
    // Another remote than the session's: the embedded destination does not match.
    let mut other = out.clone();
    other[16..20].copy_from_slice(&WAN2);
    crate::wire::ipv4::fill_checksum(&mut other);
    assert_eq!(dropped(&nat, 1.0, icmp_error(WAN1, EXT, 3, 3, &other)), DropReason::IcmpErrorNoSession);
    // An error does not refresh the session (RFC 5508 REQ-6): at 119 an error, at 121 dead.
    let mut err = icmp_error(WAN1, EXT, 3, 3, &out);
    assert!(matches!(run(&nat, 119.0, &mut err), Verdict::Forward { .. }));
    assert_eq!(dropped(&nat, 121.0, icmp_error(WAN1, EXT, 3, 3, &out)), DropReason::IcmpErrorNoSession);
}

#[test]
fn corrupt_errors_are_dropped_by_reason() {
    let nat = nat();
    let mut out = udp(INSIDE_A, 5000, FAR, 53);
    run(&nat, 0.0, &mut out);
    let mut bad_sum = icmp_error(WAN1, EXT, 3, 3, &out);
    bad_sum[22] ^= 0xff;
    assert_eq!(dropped(&nat, 1.0, bad_sum), DropReason::BadIcmpChecksum);
    let mut bad_inner = out.clone();
    bad_inner[10] ^= 0xff;
    assert_eq!(dropped(&nat, 1.0, icmp_error(WAN1, EXT, 3, 3, &bad_inner)), DropReason::BadEmbeddedPacket);
    assert_eq!(dropped(&nat, 1.0, icmp_error(WAN1, EXT, 3, 3, &out[..24])), DropReason::BadEmbeddedPacket);
    let s = nat.stats();
    assert_eq!(s.dropped(DropReason::BadIcmpChecksum), 1);
    assert_eq!(s.dropped(DropReason::BadEmbeddedPacket), 2);
}

#[test]
fn outbound_error_from_an_internal_host_is_translated() {
    let mut c = config();
    c.udp_filtering = crate::FilteringBehavior::EndpointIndependent;
    let nat = Nat::new(c).unwrap();
    let out = forward(&nat, 0.0, udp(INSIDE_A, 5000, FAR, 53), Direction::Outbound);
    // WAN2 sends in (admitted by EIF); A answers with port unreachable about that packet.
    let mut inbound = udp(WAN2, 7777, EXT, out.sport);
    run(&nat, 1.0, &mut inbound);
    let mut err = icmp_error(INSIDE_A, WAN2, 3, 3, &inbound);
    assert!(matches!(run(&nat, 1.1, &mut err), Verdict::Forward { direction: Direction::Outbound, .. }));
    let outer = seen(&err);
    assert_eq!((outer.src, outer.dst), (EXT, WAN2), "nothing leaves with an internal address");
    let q = quoted(&err);
    assert_eq!((q.src, q.sport, q.dst, q.dport), (WAN2, 7777, EXT, out.sport));
}

/// Splits an IPv4 packet into fragments of `chunk` payload bytes (a multiple of 8).
fn fragment(p: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    let (hdr, payload) = p.split_at(20);
    let chunks: Vec<&[u8]> = payload.chunks(chunk).collect();
    chunks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut f = hdr.to_vec();
            f.extend_from_slice(c);
            let len = f.len() as u16;
            f[2..4].copy_from_slice(&len.to_be_bytes());
            let more = if i + 1 < chunks.len() { 0x2000 } else { 0 };
            let off = ((i * chunk / 8) as u16) | more;
            f[6..8].copy_from_slice(&off.to_be_bytes());
            crate::wire::ipv4::fill_checksum(&mut f);
            f
        })
        .collect()
}

fn big_udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut out = Vec::new();
    etherparse::PacketBuilder::ipv4(src, dst, 64).udp(sport, dport).write(&mut out, &[0x5a; 100]).unwrap();
    out[4..6].copy_from_slice(&0x4242u16.to_be_bytes());
    crate::wire::ipv4::fill_checksum(&mut out);
    out
}

/// Reassembles fragments (in any order) and checks the datagram with etherparse.
fn reassemble(frags: &[Vec<u8>]) -> Vec<u8> {
    let mut sorted: Vec<&Vec<u8>> = frags.iter().collect();
    sorted.sort_by_key(|f| u16::from_be_bytes([f[6], f[7]]) & 0x1fff);
    let mut p = sorted[0][..20].to_vec();
    for f in &sorted {
        p.extend_from_slice(&f[20..]);
    }
    let len = p.len() as u16;
    p[2..4].copy_from_slice(&len.to_be_bytes());
    p[6..8].copy_from_slice(&[0, 0]);
    crate::wire::ipv4::fill_checksum(&mut p);
    p
}

#[test]
fn fragments_in_order_are_all_translated_both_ways() {
    let nat = nat();
    let mut frags = fragment(&big_udp(INSIDE_A, 5000, WAN1, 53), 48);
    assert_eq!(frags.len(), 3);
    for f in &mut frags {
        assert!(matches!(run(&nat, 1.0, f), Verdict::Forward { direction: Direction::Outbound, .. }));
        assert_eq!(&f[12..16], &EXT);
        assert_checksums(f);
    }
    let whole = seen(&reassemble(&frags));
    assert_eq!(whole.src, EXT);
    let mut back = fragment(&big_udp(WAN1, 53, EXT, whole.sport), 48);
    for f in &mut back {
        assert!(matches!(run(&nat, 1.1, f), Verdict::Forward { direction: Direction::Inbound, .. }));
        assert_eq!(&f[16..20], &INSIDE_A);
    }
    assert_eq!(seen(&reassemble(&back)).dport, 5000, "checksum of the reassembled datagram is right too");
}

#[test]
fn non_first_fragments_before_the_first_are_held_then_released() {
    let nat = nat();
    let frags = fragment(&big_udp(INSIDE_A, 5000, WAN1, 53), 48);
    let (mut last, mut middle, mut first) = (frags[2].clone(), frags[1].clone(), frags[0].clone());
    let Verdict::Held(last_id) = run(&nat, 1.0, &mut last) else { panic!("the last fragment is held") };
    let Verdict::Held(middle_id) = run(&nat, 1.0, &mut middle) else { panic!("the middle fragment is held") };
    assert_ne!(last_id, middle_id, "each held fragment has its own id");
    assert!(nat.poll_released().is_none());
    assert!(matches!(run(&nat, 1.1, &mut first), Verdict::Forward { .. }));
    let r1 = nat.poll_released().expect("released");
    let r2 = nat.poll_released().expect("released");
    assert!(nat.poll_released().is_none());
    assert_eq!(r1.packet[6..8], frags[2][6..8], "released in arrival order");
    assert_eq!((r1.held, r2.held), (last_id, middle_id), "each comes back with the id it was held under");
    assert_eq!(r1.direction, Some(Direction::Outbound));
    assert_eq!(r1.received, crate::Instant::from_secs(1));
    let out = reassemble(&[first, r1.packet, r2.packet]);
    assert_eq!(seen(&out).src, EXT);
}

#[test]
fn held_fragments_time_out_and_fragments_of_dropped_datagrams_are_dropped() {
    let nat = nat();
    let frags = fragment(&big_udp(INSIDE_A, 5000, WAN1, 53), 48);
    assert!(matches!(run(&nat, 1.0, &mut frags[1].clone()), Verdict::Held(_)));
    nat.handle_timeout(crate::Instant::from_secs(10));
    assert_eq!(nat.stats().dropped(DropReason::FragmentTimeout), 1);
    // An unsolicited inbound fragmented datagram: its first fragment is dropped, so are the rest.
    let inbound = fragment(&big_udp(WAN1, 53, EXT, 40000), 48);
    assert!(matches!(run(&nat, 11.0, &mut inbound[2].clone()), Verdict::Held(_)));
    assert_eq!(dropped(&nat, 11.0, inbound[0].clone()), DropReason::NoMapping);
    assert_eq!(dropped(&nat, 11.0, inbound[1].clone()), DropReason::FragmentOfDropped);
    assert_eq!(nat.stats().dropped(DropReason::FragmentOfDropped), 2, "the held one and the late one");
}

/// `big_udp` with IP identification `ident`.
fn big_udp_ident(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, ident: u16) -> Vec<u8> {
    let mut p = big_udp(src, sport, dst, dport);
    p[4..6].copy_from_slice(&ident.to_be_bytes());
    crate::wire::ipv4::fill_checksum(&mut p);
    p
}

/// An inside host's datagram arriving out of order (middle, first, last) is translated whole.
fn inside_out_of_order_datagram_gets_through(nat: &Nat, at: f64) {
    let frags = fragment(&big_udp(INSIDE_A, 5000, WAN1, 53), 48);
    let held = run(nat, at, &mut frags[1].clone());
    assert!(matches!(held, Verdict::Held(_)), "middle fragment held: {held:?}");
    let mut first = frags[0].clone();
    assert!(matches!(run(nat, at, &mut first), Verdict::Forward { direction: Direction::Outbound, .. }));
    let middle = nat.poll_released().expect("the middle fragment is released");
    let mut last = frags[2].clone();
    let v = run(nat, at, &mut last);
    assert!(matches!(v, Verdict::Forward { direction: Direction::Outbound, .. }), "last fragment: {v:?}");
    assert_eq!(seen(&reassemble(&[first, middle.packet, last])).src, EXT);
}

#[test]
fn unsolicited_first_fragments_from_outside_do_not_starve_inside_fragments() {
    // 4096 first fragments of unsolicited datagrams from many outside sources, then from one.
    for sources in [4096u32, 1] {
        let nat = nat();
        for i in 0..4096u32 {
            let src = (u32::from_be_bytes([192, 0, 2, 0]) + i % sources).to_be_bytes();
            let first = fragment(&big_udp_ident(src, 53, EXT, 40000, i as u16), 48).swap_remove(0);
            assert_eq!(dropped(&nat, 1.0, first), DropReason::NoMapping);
        }
        inside_out_of_order_datagram_gets_through(&nat, 1.5);
    }
}

#[test]
fn unsolicited_non_first_fragments_from_outside_leave_inside_room_to_hold() {
    let nat = nat();
    for i in 0..200u16 {
        let src = [192, 0, 2, (i % 50) as u8];
        let later = fragment(&big_udp_ident(src, 53, EXT, 40000, i), 48).swap_remove(1);
        let v = run(&nat, 1.0, &mut later.clone());
        assert!(matches!(v, Verdict::Held(_) | Verdict::Drop(DropReason::FragmentBufferFull)), "{v:?}");
    }
    assert!(nat.stats().dropped(DropReason::FragmentBufferFull) > 0, "the outside half is full");
    inside_out_of_order_datagram_gets_through(&nat, 1.5);
}

#[test]
fn one_source_holds_at_most_its_share_of_fragments() {
    let nat = nat();
    let mut held = 0;
    for i in 0..64u16 {
        let later = fragment(&big_udp_ident(INSIDE_B, 5000, WAN1, 53, i), 48).swap_remove(1);
        if matches!(run(&nat, 1.0, &mut later.clone()), Verdict::Held(_)) {
            held += 1;
        }
    }
    assert_eq!(held, crate::fragments::MAX_HELD_PER_SOURCE);
    inside_out_of_order_datagram_gets_through(&nat, 1.5);
}

#[test]
fn malformed_packets_are_dropped_by_reason_never_panic() {
    let nat = nat();
    let good = udp(INSIDE_A, 5000, WAN1, 53);
    let mut cases: Vec<(Vec<u8>, DropReason)> = vec![(good[..10].to_vec(), DropReason::Truncated)];
    let mut bad_ihl = good.clone();
    bad_ihl[0] = 0x44;
    cases.push((bad_ihl, DropReason::BadIpHeader));
    let mut long_total = good.clone();
    long_total[2..4].copy_from_slice(&200u16.to_be_bytes());
    cases.push((long_total, DropReason::Truncated));
    let mut bad_udp_len = good.clone();
    bad_udp_len[24..26].copy_from_slice(&100u16.to_be_bytes());
    cases.push((bad_udp_len, DropReason::BadTransportHeader));
    let short_tcp = tcp(INSIDE_A, 1, WAN1, 2, "S")[..30].to_vec();
    let mut short_tcp = short_tcp;
    short_tcp[2..4].copy_from_slice(&30u16.to_be_bytes());
    cases.push((short_tcp, DropReason::Truncated));
    let mut gre = good.clone();
    gre[9] = 47;
    cases.push((gre, DropReason::UnsupportedProtocol));
    for (p, reason) in cases {
        assert_eq!(dropped(&nat, 1.0, p), reason);
    }
    assert_eq!(nat.session_count(), 0);
    forward(&nat, 1.0, good, Direction::Outbound);
}
