//! Fragments (design §2, RFC 4787 REQ-14): every fragment of a translated datagram is
//! translated, outbound and inbound, also when non-first fragments arrive before the first.
//! The harness reassembles the output fragments and validates the UDP checksum of the whole
//! datagram (the first fragment's checksum covers all of them).
//!
//! Ambiguity: held fragments can only be written once the first fragment came, so the output
//! is not in input order for them; the contract still says every forwarded packet keeps its
//! input timestamp, which is what these tests assert.

mod common;

use common::*;

const A: &str = "10.100.10.11";
const R: &str = "198.51.100.10";

fn payload() -> Vec<u8> {
    (0..1000u32).map(|i| (i * 7 % 251) as u8).collect()
}

/// A 1008-byte UDP datagram split into fragments of 400, 400, 208 payload bytes.
fn fragments(src: std::net::SocketAddrV4, dst: std::net::SocketAddrV4, ident: u16) -> Vec<Vec<u8>> {
    let whole = udp_with(src, dst, &payload(), |h| h.ident = ident);
    let f = fragment(&whole, 400);
    assert_eq!(f.len(), 3);
    f
}

/// Checks the output fragments at `times` (input order of fragment 0, 1, 2) against the
/// input ones: addresses translated (`src`, `dst` expected), identification consistent,
/// offsets / MF kept, payload of non-first fragments untouched, first fragment's ports.
fn assert_fragments(o: &Outcome, times: [u64; 3], src: std::net::Ipv4Addr, dst: std::net::Ipv4Addr) -> View<'_> {
    let ident = o.fwd(times[0]).ident();
    for (i, ms) in times.into_iter().enumerate() {
        let input = View::new(o.input_at(ms));
        let v = o.fwd(ms);
        assert_eq!(v.src(), src, "fragment {i} source{}", o.context());
        assert_eq!(v.dst(), dst, "fragment {i} destination{}", o.context());
        assert_eq!(v.frag_offset(), input.frag_offset(), "fragment {i} offset");
        assert_eq!(v.more_fragments(), input.more_fragments(), "fragment {i} MF flag");
        assert_eq!(v.ident(), ident, "fragments of one datagram must keep one identification");
        if i > 0 {
            assert_eq!(v.ip_payload(), input.ip_payload(), "non-first fragment {i} payload must not change");
        } else {
            assert_eq!(&v.ip_payload()[8..], &input.ip_payload()[8..], "first fragment data after the UDP header");
        }
    }
    o.fwd(times[0])
}

#[test]
fn outbound_fragments_in_order_are_all_translated() {
    let mut s = Scenario::new();
    for (i, f) in fragments(ep(A, 5000), ep(R, 9000), 0x4242).into_iter().enumerate() {
        s.at(i as u64, f);
    }
    let o = s.run();
    let first = assert_fragments(&o, [0, 1, 2], ip(EXT), ip(R));
    assert_eq!(first.dport(), 9000);
    let p = first.sport();
    assert!(p >= 1024);
    // The session exists: an answer comes back to A.
    assert_eq!(o.sessions().len(), 1);
    assert_eq!(o.sessions()[0]["ExternalSourcePort"], p);
}

#[test]
fn outbound_non_first_fragments_before_the_first_are_translated() {
    let mut s = Scenario::new();
    s.strict_order = false;
    let f = fragments(ep(A, 5000), ep(R, 9000), 0x4343);
    s.at(0, f[1].clone());
    s.at(1, f[2].clone());
    s.at(2, f[0].clone());
    let o = s.run();
    let first = assert_fragments(&o, [2, 0, 1], ip(EXT), ip(R));
    assert_eq!(first.dport(), 9000);
    assert_eq!(o.out.len(), 3);
    assert_eq!(o.stat("fragments_held"), 2, "{}", o.context());
    o.assert_drops(&[]);
}

#[test]
fn inbound_fragments_in_order_are_all_translated() {
    let mut s = Scenario::new();
    s.at(0, udp(ep(A, 5000), ep(R, 9000), b"send me a big answer"));
    let p = s.learn_port(0);
    for (i, f) in fragments(ep(R, 9000), ep(EXT, p), 0x5151).into_iter().enumerate() {
        s.at(10 + i as u64, f);
    }
    let o = s.run();
    let first = assert_fragments(&o, [10, 11, 12], ip(R), ip(A));
    assert_eq!(first.dport(), 5000, "first fragment's destination port translated back");
    assert_eq!(first.sport(), 9000);
    o.assert_drops(&[]);
}

#[test]
fn inbound_non_first_fragments_before_the_first_are_translated() {
    let mut s = Scenario::new();
    s.strict_order = false;
    s.at(0, udp(ep(A, 5000), ep(R, 9000), b"send me a big answer"));
    let p = s.learn_port(0);
    let f = fragments(ep(R, 9000), ep(EXT, p), 0x5252);
    s.at(10, f[2].clone());
    s.at(11, f[1].clone());
    s.at(12, f[0].clone());
    let o = s.run();
    let first = assert_fragments(&o, [12, 11, 10], ip(R), ip(A));
    assert_eq!(first.dport(), 5000);
    assert_eq!(o.out.len(), 4);
    assert_eq!(o.stat("fragments_held"), 2, "{}", o.context());
    o.assert_drops(&[]);
}

#[test]
fn fragments_of_a_filtered_datagram_are_dropped() {
    // ADF (default): a stranger's fragmented datagram to A's mapping. The first fragment is
    // filtered; the non-first ones belong to a dropped datagram.
    let mut s = Scenario::new();
    s.at(0, udp(ep(A, 5000), ep(R, 9000), b"x"));
    let p = s.learn_port(0);
    for (i, f) in fragments(ep("198.51.100.99", 9000), ep(EXT, p), 0x6161).into_iter().enumerate() {
        s.at(10 + i as u64, f);
    }
    let o = s.run();
    for ms in [10, 11, 12] {
        o.assert_dropped(ms);
    }
    o.assert_drops(&[("filtered", 1), ("fragment_of_dropped", 2)]);
}

#[test]
fn two_fragmented_datagrams_interleaved() {
    // Two internal hosts, distinct identifications, fragments interleaved and partly early.
    let mut s = Scenario::new();
    s.strict_order = false;
    let fa = fragments(ep(A, 5000), ep(R, 9000), 0x7001);
    let fb = fragments(ep("10.100.20.21", 5000), ep(R, 9000), 0x7002);
    s.at(0, fa[0].clone());
    s.at(1, fb[2].clone());
    s.at(2, fa[1].clone());
    s.at(3, fb[0].clone());
    s.at(4, fa[2].clone());
    s.at(5, fb[1].clone());
    let o = s.run();
    let a = assert_fragments(&o, [0, 2, 4], ip(EXT), ip(R));
    let b = assert_fragments(&o, [3, 5, 1], ip(EXT), ip(R));
    assert_ne!(a.sport(), b.sport(), "two internal endpoints share an external port");
    assert_eq!(o.out.len(), 6);
}

#[test]
fn early_fragments_of_a_datagram_whose_first_fragment_is_dropped_are_dropped() {
    // The held non-first fragments learn their fate from the first: filtered, so they are
    // dropped too, counted as `fragment_of_dropped`, and never show up in the output.
    let mut s = Scenario::new();
    s.strict_order = false;
    s.at(0, udp(ep(A, 5000), ep(R, 9000), b"x"));
    let p = s.learn_port(0);
    let f = fragments(ep("198.51.100.99", 9000), ep(EXT, p), 0x6262);
    s.at(10, f[1].clone());
    s.at(11, f[2].clone());
    s.at(12, f[0].clone());
    s.at(20, udp(ep(R, 9000), ep(EXT, p), b"still fine"));
    let o = s.run();
    assert_eq!(o.out.len(), 2, "{}", o.context());
    assert_eq!(o.fwd(20).dst_ep(), ep(A, 5000));
    o.assert_dropped(12);
    assert_eq!(o.dropped("filtered"), 1, "{}", o.context());
    assert_eq!(o.dropped("fragment_of_dropped"), 2, "{}", o.context());
}
