//! Bad input (design §2): a packet the NAT must act on (outbound from the internal prefix,
//! or inbound to the external address) that it cannot parse is dropped and counted by
//! reason; never a panic; other traffic is unaffected. Reason names: engine/src/verdict.rs.
//!
//! Every scenario wraps the malformed packets between the halves of a healthy UDP exchange
//! (A:5000 <-> R:53), so "other traffic unaffected" is checked each time.

mod common;

use common::*;

const A: &str = "10.100.10.11";
const R: &str = "198.51.100.10";

/// Runs: healthy outbound at 0, `bad` packets at 100, 101, ..., then the healthy answer and
/// a second outbound. Asserts the healthy traffic; returns the outcome and the bad times.
fn with_healthy_traffic(args: &[&str], bad: Vec<Vec<u8>>) -> (Outcome, Vec<u64>) {
    let mut s = Scenario::new();
    s.args(args);
    s.at(0, udp(ep(A, 5000), ep(R, 53), b"query"));
    let p = s.learn_port(0);
    let mut times = Vec::new();
    for (i, b) in bad.into_iter().enumerate() {
        let t = 100 + i as u64;
        s.at(t, b);
        times.push(t);
    }
    s.at(1000, udp(ep(R, 53), ep(EXT, p), b"answer"));
    s.at(1001, udp(ep(A, 5000), ep(R, 53), b"query 2"));
    let o = s.run();
    assert_eq!(o.fwd(1000).dst_ep(), ep(A, 5000), "healthy answer after bad input{}", o.context());
    assert_eq!(o.fwd(1000).l4_payload(), b"answer");
    assert_eq!(o.fwd(1001).src_ep(), ep(EXT, p), "healthy mapping unchanged after bad input{}", o.context());
    (o, times)
}

fn outbound_udp() -> Vec<u8> {
    udp(ep(A, 6000), ep(R, 53), b"0123456789abcdef0123456789")
}

#[test]
fn truncated_packets_are_dropped_as_truncated() {
    // Total length says 54 but the capture holds 30 bytes (outbound and inbound).
    let mut out_cut = outbound_udp();
    out_cut.truncate(30);
    let mut in_cut = udp(ep(R, 53), ep(EXT, 40000), b"0123456789abcdef0123456789");
    in_cut.truncate(30);
    // A UDP packet whose IP total length (24) leaves only 4 bytes of UDP header.
    let mut short_udp = IpHdr::new(ip(A), ip(R), PROTO_UDP).build(&[0x17, 0x70, 0x00, 0x35]);
    fix_ip_checksum(&mut short_udp);
    // A TCP packet with 10 bytes of TCP header.
    let short_tcp = IpHdr::new(ip(A), ip(R), PROTO_TCP).build(&[0x17, 0x70, 0, 80, 0, 0, 0, 1, 0, 0]);
    // An echo request with 4 bytes of ICMP.
    let short_icmp = IpHdr::new(ip(A), ip(R), PROTO_ICMP).build(&[8, 0, 0xf7, 0xff]);
    let (o, t) = with_healthy_traffic(&[], vec![out_cut, in_cut, short_udp, short_tcp, short_icmp]);
    for ms in &t {
        o.assert_dropped(*ms);
    }
    o.assert_drops(&[("truncated", 5)]);
}

#[test]
fn bad_ihl_is_dropped_as_bad_ip_header() {
    let mut ihl4 = outbound_udp();
    ihl4[0] = 0x44;
    fix_ip_checksum(&mut ihl4);
    let mut ihl0 = outbound_udp();
    ihl0[0] = 0x40;
    let mut ihl3_inbound = udp(ep(R, 53), ep(EXT, 40000), b"x");
    ihl3_inbound[0] = 0x43;
    let (o, t) = with_healthy_traffic(&[], vec![ihl4, ihl0, ihl3_inbound]);
    for ms in &t {
        o.assert_dropped(*ms);
    }
    o.assert_drops(&[("bad_ip_header", 3)]);
}

#[test]
fn ihl_beyond_the_packet_is_dropped() {
    // IHL 15 (60 bytes) in a 34-byte packet: the header runs past the end. Shorter than its
    // header says: `truncated`.
    let mut p = udp(ep(A, 6000), ep(R, 53), b"xy");
    p[0] = 0x4f;
    let (o, t) = with_healthy_traffic(&[], vec![p]);
    o.assert_dropped(t[0]);
    o.assert_drops(&[("truncated", 1)]);
}

#[test]
fn total_length_below_the_header_is_dropped_as_bad_ip_header() {
    let mut p = outbound_udp();
    p[2..4].copy_from_slice(&16u16.to_be_bytes());
    fix_ip_checksum(&mut p);
    let mut zero = outbound_udp();
    zero[2..4].copy_from_slice(&0u16.to_be_bytes());
    fix_ip_checksum(&mut zero);
    let (o, t) = with_healthy_traffic(&[], vec![p, zero]);
    for ms in &t {
        o.assert_dropped(*ms);
    }
    o.assert_drops(&[("bad_ip_header", 2)]);
}

#[test]
fn total_length_beyond_the_packet_is_dropped_as_truncated() {
    let mut p = outbound_udp();
    let len = p.len() as u16;
    p[2..4].copy_from_slice(&(len + 100).to_be_bytes());
    fix_ip_checksum(&mut p);
    let (o, t) = with_healthy_traffic(&[], vec![p]);
    o.assert_dropped(t[0]);
    o.assert_drops(&[("truncated", 1)]);
}

#[test]
fn bad_transport_headers_are_dropped() {
    // UDP length 200 in a 34-byte UDP datagram; UDP length 4 (< 8); TCP data offset 3;
    // TCP data offset 15 (60 bytes) in a 20-byte TCP segment.
    let mut udp_long = outbound_udp();
    udp_long[24..26].copy_from_slice(&200u16.to_be_bytes());
    let mut udp_tiny = outbound_udp();
    udp_tiny[24..26].copy_from_slice(&4u16.to_be_bytes());
    let mut tcp_do3 = tcp(ep(A, 6001), ep(R, 80), TCP_SYN, 1, 0, b"");
    tcp_do3[32] = 3 << 4;
    let mut tcp_do15 = tcp(ep(A, 6002), ep(R, 80), TCP_SYN, 1, 0, b"");
    tcp_do15[32] = 15 << 4;
    let (o, t) = with_healthy_traffic(&[], vec![udp_long, udp_tiny, tcp_do3, tcp_do15]);
    for ms in &t {
        o.assert_dropped(*ms);
    }
    o.assert_drops(&[("bad_transport_header", 4)]);
    assert_eq!(o.sessions().len(), 1, "bad packets must not create sessions: {:#}", o.sessions);
}

/// An inbound ICMP error about A:5000's datagram whose embedded bytes `f` mangles (the
/// ICMP checksum is made right again).
fn mangled_error(p: u16, f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut embedded = udp(ep(EXT, p), ep(R, 53), b"query");
    f(&mut embedded);
    icmp_error(ip(R), ip(EXT), ICMP_DEST_UNREACHABLE, 3, &embedded)
}

#[test]
fn truncated_or_broken_embedded_packets_are_dropped() {
    let mut s = Scenario::new();
    s.at(0, udp(ep(A, 5000), ep(R, 53), b"query"));
    let p = s.learn_port(0);
    // 12 bytes of embedded IP header; IHL 3; IHL 15 with 28 bytes; version 6.
    s.at(10, mangled_error(p, |e| e.truncate(12)));
    s.at(11, mangled_error(p, |e| e[0] = 0x43));
    s.at(
        12,
        mangled_error(p, |e| {
            e[0] = 0x4f;
            e.truncate(28)
        }),
    );
    s.at(13, mangled_error(p, |e| e[0] = 0x65));
    // An error with nothing embedded at all.
    s.at(14, icmp_error(ip(R), ip(EXT), ICMP_DEST_UNREACHABLE, 3, &[]));
    // Healthy error afterwards: still translated.
    s.at(20, mangled_error(p, |_| {}));
    s.at(30, udp(ep(R, 53), ep(EXT, p), b"answer"));
    let o = s.run();
    for ms in 10..=14 {
        o.assert_dropped(ms);
    }
    assert_eq!(o.fwd(20).dst(), ip(A));
    assert_eq!(o.fwd(20).embedded().src_ep(), ep(A, 5000));
    assert_eq!(o.fwd(30).dst_ep(), ep(A, 5000));
    o.assert_drops(&[("bad_embedded_packet", 5)]);
}

#[test]
fn icmp_error_with_a_bad_checksum_is_dropped() {
    let mut s = Scenario::new();
    s.at(0, udp(ep(A, 5000), ep(R, 53), b"query"));
    let p = s.learn_port(0);
    let mut e = mangled_error(p, |_| {});
    e[22] ^= 0x55;
    s.at(10, e);
    s.at(20, mangled_error(p, |_| {}));
    let o = s.run();
    o.assert_dropped(10);
    assert_eq!(o.fwd(20).dst(), ip(A));
    o.assert_drops(&[("bad_icmp_checksum", 1)]);
}

#[test]
fn garbage_never_crashes_the_replay() {
    // Records too short or too odd to be IPv4 at all. Whether each is passed or dropped is
    // not specified (most cannot even be classified); the replay must survive them and keep
    // translating. The output copies (if any) are exempt from checksum validation.
    let mut s = Scenario::new();
    s.at(0, udp(ep(A, 5000), ep(R, 53), b"query"));
    let p = s.learn_port(0);
    let garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x45],
        vec![0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17],
        vec![0xff; 20],
        vec![0x00; 60],
        {
            let mut v = vec![0x45, 0, 0xff, 0xff];
            v.resize(19, 0xaa);
            v
        },
        // An internal source with an IP options area of junk and a protocol nobody knows.
        {
            let mut v = IpHdr::new(ip(A), ip(R), 253).build(b"experimental");
            v[0] = 0x46;
            v.insert(20, 0);
            v.insert(20, 0);
            v.insert(20, 0);
            v.insert(20, 0);
            let l = v.len() as u16;
            v[2..4].copy_from_slice(&l.to_be_bytes());
            fix_ip_checksum(&mut v);
            v
        },
    ];
    for (i, g) in garbage.into_iter().enumerate() {
        let t = 100 + i as u64;
        s.exempt.insert(ts(t));
        s.at(t, g);
    }
    s.at(1000, udp(ep(R, 53), ep(EXT, p), b"answer"));
    let o = s.run();
    assert_eq!(o.fwd(1000).dst_ep(), ep(A, 5000));
    assert_eq!(o.fwd(1000).l4_payload(), b"answer");
}

#[test]
fn unsupported_protocol_from_inside_is_dropped_and_counted() {
    // GRE (47) from an internal host: the NAT cannot translate it (no ports) — dropped as
    // `unsupported_protocol` rather than leaking the internal address.
    let gre = IpHdr::new(ip(A), ip(R), 47).build(&[0, 0, 0x08, 0x00, 1, 2, 3, 4]);
    let (o, t) = with_healthy_traffic(&[], vec![gre]);
    o.assert_dropped(t[0]);
    o.assert_drops(&[("unsupported_protocol", 1)]);
}
