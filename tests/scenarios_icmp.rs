//! ICMP (design §2 "Timers" ICMP query, "ICMP errors", RFC 5508): echo translation with the
//! identifier as port; inbound errors (destination unreachable, time exceeded) embedding a
//! translated UDP, TCP or echo packet translated back with every checksum right; errors
//! matching no session dropped; outbound errors about an inbound packet translated.
//!
//! Decision: an inbound echo *request* to the external address is not a reply to anything;
//! it passes unchanged (the NAT host answers it itself).

mod common;

use std::net::SocketAddrV4;

use common::*;

const A: &str = "10.100.10.11";
const B: &str = "10.100.10.12";
const R: &str = "198.51.100.10";
/// A router on the path (time exceeded comes from it, not from the remote).
const ROUTER: &str = "198.51.100.1";

#[test]
fn echo_request_and_reply_are_translated_with_the_identifier() {
    let mut s = Scenario::new();
    s.at(0, icmp_echo(ip(A), ip(R), true, 0x1234, 7, b"abcdefgh"));
    let id = s.learn_port(0);
    s.at(10, icmp_echo(ip(R), ip(EXT), false, id, 7, b"abcdefgh"));
    s.at(20, icmp_echo(ip(A), ip(R), true, 0x1234, 8, b"abcdefgh"));
    s.at(30, icmp_echo(ip(R), ip(EXT), false, id, 8, b"abcdefgh"));
    let o = s.run();
    for ms in [0, 20] {
        let v = o.fwd(ms);
        assert_eq!((v.src(), v.dst()), (ip(EXT), ip(R)));
        assert_eq!(v.icmp_type(), ICMP_ECHO_REQUEST);
        assert_eq!(v.icmp_id(), id, "same echo id mapping for the whole query session");
        assert_eq!(v.l4_payload(), b"abcdefgh");
    }
    for (ms, seq) in [(10, 7), (30, 8)] {
        let v = o.fwd(ms);
        assert_eq!((v.src(), v.dst()), (ip(R), ip(A)), "reply goes back to the pinger");
        assert_eq!(v.icmp_type(), ICMP_ECHO_REPLY);
        assert_eq!(v.icmp_id(), 0x1234, "identifier translated back");
        assert_eq!(v.icmp_seq(), seq);
    }
    assert_eq!(o.fwd(0).icmp_seq(), 7);
}

#[test]
fn echo_ids_of_two_hosts_do_not_collide() {
    // Same identifier on two hosts to one remote: the replies reach the right host.
    let mut s = Scenario::new();
    s.at(0, icmp_echo(ip(A), ip(R), true, 1, 1, b"a"));
    s.at(1, icmp_echo(ip(B), ip(R), true, 1, 1, b"b"));
    let ia = s.learn_port(0);
    let ib = s.learn_port(1);
    assert_ne!(ia, ib, "two internal (host, id) share external id {ia}");
    s.at(10, icmp_echo(ip(R), ip(EXT), false, ib, 1, b"b"));
    s.at(11, icmp_echo(ip(R), ip(EXT), false, ia, 1, b"a"));
    let o = s.run();
    assert_eq!((o.fwd(10).dst(), o.fwd(10).icmp_id()), (ip(B), 1));
    assert_eq!((o.fwd(11).dst(), o.fwd(11).icmp_id()), (ip(A), 1));
}

#[test]
fn inbound_echo_request_to_the_external_address_passes_unchanged() {
    let mut s = Scenario::new();
    s.at(0, icmp_echo(ip(R), ip(EXT), true, 0x5555, 1, b"are you there"));
    let o = s.run();
    o.assert_passed_unchanged(0);
    o.assert_drops(&[]);
}

/// Checks an inbound ICMP error translated back: outer destination the internal host,
/// outer source and type/code untouched, the embedded packet equal to what the internal
/// host originally sent (source address and port/id restored), checksums validated by the
/// harness.
fn assert_error_translated_back(o: &Outcome, ms: u64, original: &[u8], outer_src: &str, typ: u8, code: u8) {
    let v = o.fwd(ms);
    let orig = View::new(original);
    assert_eq!(v.src(), ip(outer_src), "outer source untouched{}", o.context());
    assert_eq!(v.dst(), orig.src(), "outer destination = the internal host{}", o.context());
    assert_eq!((v.icmp_type(), v.icmp_code()), (typ, code));
    let e = v.embedded();
    assert_eq!(e.src(), orig.src(), "embedded source address restored");
    assert_eq!(e.dst(), orig.dst(), "embedded destination untouched");
    assert_eq!(e.src_key(), orig.src_key(), "embedded source port / echo id restored");
    if orig.proto() != PROTO_ICMP {
        assert_eq!(e.dport(), orig.dport());
    }
    // Field by field the embedded packet must now be the packet the host sent: every byte,
    // including the L4 checksum (or echo checksum), equals the original's as far as the
    // error carries it -- except the TTL, which a router on the way may have decremented,
    // and so the IP header checksum (validated by the harness).
    assert_embedded_is(o, e, original);
}

/// The embedded packet equals `original` (truncated to what the error carries), ignoring
/// the TTL byte and the IP header checksum.
fn assert_embedded_is(o: &Outcome, e: View<'_>, original: &[u8]) {
    let n = e.bytes.len();
    assert!(n <= original.len(), "embedded packet longer than the original");
    let mask = |b: &[u8]| {
        let mut b = b.to_vec();
        b[8] = 0;
        b[10] = 0;
        b[11] = 0;
        b
    };
    assert_eq!(
        mask(e.bytes),
        mask(&original[..n]),
        "embedded packet differs from the original (TTL and IP checksum ignored){}",
        o.context()
    );
}

/// The internal packet, its translated copy as a remote saw it, and the error about it.
fn error_scenario(
    original: Vec<u8>,
    error_from: &str,
    typ: u8,
    code: u8,
    embed_len: Option<usize>,
) -> (Outcome, Vec<u8>) {
    let mut s = Scenario::new();
    s.at(0, original.clone());
    let seen_outside = s.learn(0);
    let embedded = match embed_len {
        Some(n) => seen_outside[..n].to_vec(),
        None => seen_outside,
    };
    s.at(100, icmp_error(ip(error_from), ip(EXT), typ, code, &embedded));
    let o = s.run();
    o.assert_drops(&[]);
    (o, original)
}

fn udp_original() -> Vec<u8> {
    udp(ep(A, 5000), ep(R, 53), b"dns query bytes")
}

fn tcp_original() -> Vec<u8> {
    tcp(ep(A, 5000), ep(R, 80), TCP_SYN, 0x01020304, 0, b"")
}

fn echo_original() -> Vec<u8> {
    icmp_echo(ip(A), ip(R), true, 0x1234, 1, b"ping payload")
}

#[test]
fn dest_unreachable_embedding_udp_is_translated_back() {
    // Port unreachable from the remote itself, the whole datagram embedded.
    let (o, orig) = error_scenario(udp_original(), R, ICMP_DEST_UNREACHABLE, 3, None);
    assert_error_translated_back(&o, 100, &orig, R, ICMP_DEST_UNREACHABLE, 3);
}

#[test]
fn time_exceeded_embedding_udp_is_translated_back() {
    let (o, orig) = error_scenario(udp_original(), ROUTER, ICMP_TIME_EXCEEDED, 0, None);
    assert_error_translated_back(&o, 100, &orig, ROUTER, ICMP_TIME_EXCEEDED, 0);
}

#[test]
fn dest_unreachable_embedding_truncated_udp_is_translated_back() {
    // RFC 792 minimum: IP header + 8 bytes. The UDP checksum is there but the payload it
    // covers is not; the NAT must still restore it (incrementally): the embedded UDP
    // checksum must equal the one the internal host sent.
    let (o, orig) = error_scenario(udp_original(), ROUTER, ICMP_DEST_UNREACHABLE, 1, Some(28));
    assert_error_translated_back(&o, 100, &orig, ROUTER, ICMP_DEST_UNREACHABLE, 1);
    assert_eq!(o.fwd(100).embedded().bytes.len(), 28);
}

#[test]
fn dest_unreachable_embedding_tcp_is_translated_back() {
    let (o, orig) = error_scenario(tcp_original(), ROUTER, ICMP_DEST_UNREACHABLE, 1, None);
    assert_error_translated_back(&o, 100, &orig, ROUTER, ICMP_DEST_UNREACHABLE, 1);
}

#[test]
fn dest_unreachable_embedding_truncated_tcp_is_translated_back() {
    // IP header + 8 bytes of TCP: ports and sequence number, no checksum to fix.
    let (o, orig) = error_scenario(tcp_original(), ROUTER, ICMP_DEST_UNREACHABLE, 13, Some(28));
    assert_error_translated_back(&o, 100, &orig, ROUTER, ICMP_DEST_UNREACHABLE, 13);
    assert_eq!(o.fwd(100).embedded().bytes.len(), 28);
}

#[test]
fn time_exceeded_embedding_tcp_is_translated_back() {
    let (o, orig) = error_scenario(tcp_original(), ROUTER, ICMP_TIME_EXCEEDED, 0, None);
    assert_error_translated_back(&o, 100, &orig, ROUTER, ICMP_TIME_EXCEEDED, 0);
}

#[test]
fn dest_unreachable_embedding_echo_is_translated_back() {
    let (o, orig) = error_scenario(echo_original(), ROUTER, ICMP_DEST_UNREACHABLE, 0, None);
    assert_error_translated_back(&o, 100, &orig, ROUTER, ICMP_DEST_UNREACHABLE, 0);
}

#[test]
fn time_exceeded_embedding_echo_is_translated_back() {
    // traceroute with ping.
    let (o, orig) = error_scenario(echo_original(), ROUTER, ICMP_TIME_EXCEEDED, 0, None);
    assert_error_translated_back(&o, 100, &orig, ROUTER, ICMP_TIME_EXCEEDED, 0);
}

#[test]
fn fragmentation_needed_keeps_the_next_hop_mtu() {
    // Type 3 code 4 carries the next-hop MTU in bytes 6-7 of the ICMP header: PMTUD
    // depends on it surviving the translation.
    let mut s = Scenario::new();
    let orig = udp_with(ep(A, 5000), ep(R, 53), &[7u8; 1400], |h| h.dont_fragment = true);
    s.at(0, orig.clone());
    let seen = s.learn(0);
    let mut err = icmp_error(ip(ROUTER), ip(EXT), ICMP_DEST_UNREACHABLE, 4, &seen[..28]);
    err[26..28].copy_from_slice(&1280u16.to_be_bytes());
    err[22..24].copy_from_slice(&[0, 0]);
    let c = inet_checksum(&err[20..]);
    err[22..24].copy_from_slice(&c.to_be_bytes());
    s.at(100, err);
    let o = s.run();
    assert_error_translated_back(&o, 100, &orig, ROUTER, ICMP_DEST_UNREACHABLE, 4);
    assert_eq!(&o.fwd(100).ip_payload()[6..8], &1280u16.to_be_bytes(), "next-hop MTU changed");
}

#[test]
fn inbound_error_matching_no_session_is_dropped() {
    let mut s = Scenario::new();
    s.at(0, udp(ep(A, 5000), ep(R, 53), b"x"));
    let p = s.learn_port(0);
    let other = if p == 65535 { p - 1 } else { p + 1 };
    // Embeds a packet from a port with no session.
    let ghost = udp(ep(EXT, other), ep(R, 53), b"x");
    s.at(10, icmp_error(ip(R), ip(EXT), ICMP_DEST_UNREACHABLE, 3, &ghost));
    // Embeds the right port but another remote: no session either.
    let wrong_remote = udp(ep(EXT, p), ep("198.51.100.77", 53), b"x");
    s.at(20, icmp_error(ip(ROUTER), ip(EXT), ICMP_TIME_EXCEEDED, 0, &wrong_remote));
    // An echo id nobody uses.
    let ghost_echo = icmp_echo(ip(EXT), ip(R), true, 0x7777, 1, b"");
    s.at(30, icmp_error(ip(ROUTER), ip(EXT), ICMP_TIME_EXCEEDED, 0, &ghost_echo));
    let o = s.run();
    for ms in [10, 20, 30] {
        o.assert_dropped(ms);
    }
    o.assert_drops(&[("icmp_error_no_session", 3)]);
}

/// Internal endpoint A:5000 talks to R:53, R answers; then A reports an error about R's
/// packet (as received, destination A:5000). Returns (outcome, the inbound packet as R sent
/// it, external port).
fn outbound_error(typ: u8, code: u8, embed_len: Option<usize>) -> (Outcome, Vec<u8>, u16) {
    let mut s = Scenario::new();
    s.args(&["--udp-filtering", "EndpointIndependentFiltering"]);
    s.at(0, udp(ep(A, 5000), ep(R, 53), b"x"));
    let p = s.learn_port(0);
    let from_remote = udp(ep(R, 53), ep(EXT, p), b"answer");
    s.at(10, from_remote.clone());
    let received = s.learn(10);
    assert_eq!(View::new(&received).dst_ep(), ep(A, 5000));
    let embedded = match embed_len {
        Some(n) => received[..n].to_vec(),
        None => received,
    };
    s.at(20, icmp_error(ip(A), ip(R), typ, code, &embedded));
    (s.run(), from_remote, p)
}

fn assert_outbound_error(o: &Outcome, from_remote: &[u8], p: u16, typ: u8, code: u8) {
    let v = o.fwd(20);
    assert_eq!(v.src(), ip(EXT), "outer source translated to the external address{}", o.context());
    assert_eq!(v.dst(), ip(R));
    assert_eq!((v.icmp_type(), v.icmp_code()), (typ, code));
    let e = v.embedded();
    assert_eq!(e.src_ep(), ep(R, 53), "embedded source (the remote) untouched");
    assert_eq!(e.dst_ep(), SocketAddrV4::new(ip(EXT), p), "embedded destination back to the external mapping");
    assert_embedded_is(o, e, from_remote);
    o.assert_drops(&[]);
}

#[test]
fn outbound_port_unreachable_about_an_inbound_packet_is_translated() {
    let (o, from_remote, p) = outbound_error(ICMP_DEST_UNREACHABLE, 3, None);
    assert_outbound_error(&o, &from_remote, p, ICMP_DEST_UNREACHABLE, 3);
}

#[test]
fn outbound_error_with_truncated_embedding_is_translated() {
    let (o, from_remote, p) = outbound_error(ICMP_DEST_UNREACHABLE, 3, Some(28));
    assert_outbound_error(&o, &from_remote, p, ICMP_DEST_UNREACHABLE, 3);
}

#[test]
fn outbound_time_exceeded_about_an_inbound_packet_is_translated() {
    let (o, from_remote, p) = outbound_error(ICMP_TIME_EXCEEDED, 0, None);
    assert_outbound_error(&o, &from_remote, p, ICMP_TIME_EXCEEDED, 0);
}

#[test]
fn outbound_error_about_a_static_mapping_packet_is_translated() {
    // A remote hits a forwarded port whose server is down: the host's port unreachable goes
    // out from the static mapping's external endpoint.
    let mut s = Scenario::new();
    s.args(&["--static-mapping", "udp:0.0.0.0:5353=10.100.10.11:53"]);
    let from_remote = udp(ep(R, 40000), ep(EXT, 5353), b"query");
    s.at(0, from_remote.clone());
    let received = s.learn(0);
    assert_eq!(View::new(&received).dst_ep(), ep(A, 53));
    s.at(10, icmp_error(ip(A), ip(R), ICMP_DEST_UNREACHABLE, 3, &received));
    let o = s.run();
    let v = o.fwd(10);
    assert_eq!((v.src(), v.dst()), (ip(EXT), ip(R)));
    let e = v.embedded();
    assert_eq!(e.dst_ep(), ep(EXT, 5353));
    assert_eq!(e.bytes.len(), from_remote.len());
    assert_embedded_is(&o, e, &from_remote);
}

#[test]
fn outbound_error_matching_no_session_is_dropped() {
    // An internal host reports an error about a packet that never came through the NAT:
    // nothing to translate it with, and forwarding it would leak the internal address.
    let mut s = Scenario::new();
    let never_seen = udp(ep(R, 53), ep(A, 5000), b"x");
    s.at(0, icmp_error(ip(A), ip(R), ICMP_DEST_UNREACHABLE, 3, &never_seen));
    let o = s.run();
    o.assert_dropped(0);
    o.assert_drops(&[("icmp_error_no_session", 1)]);
}

#[test]
fn inbound_error_about_a_static_mapping_reply_reaches_the_server() {
    // A static-mapping server's reply went out from EXT:8080; a router reports it could not
    // deliver it: the error reaches the server with the embedded source back to SRV:80.
    let mut s = Scenario::new();
    s.args(&["--static-mapping", "tcp:0.0.0.0:8080=10.100.10.12:80"]);
    s.at(0, tcp(ep(R, 41000), ep(EXT, 8080), TCP_SYN, 1, 0, b""));
    let reply = tcp(ep(B, 80), ep(R, 41000), TCP_SYN | TCP_ACK, 9, 2, b"");
    s.at(10, reply.clone());
    let seen = s.learn(10);
    assert_eq!(View::new(&seen).src_ep(), ep(EXT, 8080));
    s.at(20, icmp_error(ip(ROUTER), ip(EXT), ICMP_DEST_UNREACHABLE, 1, &seen));
    let o = s.run();
    assert_error_translated_back(&o, 20, &reply, ROUTER, ICMP_DEST_UNREACHABLE, 1);
}

#[test]
fn embedded_udp_zero_checksum_stays_zero() {
    let (o, orig) =
        error_scenario(udp_no_checksum(ep(A, 5000), ep(R, 53), b"no sum"), R, ICMP_DEST_UNREACHABLE, 3, Some(28));
    assert_error_translated_back(&o, 100, &orig, R, ICMP_DEST_UNREACHABLE, 3);
    assert_eq!(&o.fwd(100).embedded().bytes[26..28], &[0, 0], "embedded UDP checksum 0 must stay 0");
}
