//! Hairpinning (design §2, RFC 4787 REQ-9): an internal host sending to an external
//! (address, port) that maps to another internal endpoint reaches it, with its own external
//! mapping as the source; the answer goes back the same way.

mod common;

use common::*;

const A: &str = "10.100.10.11";
const B: &str = "10.100.10.12";
const R: &str = "198.51.100.10";

#[test]
fn hairpin_through_a_static_mapping_uses_the_senders_external_mapping() {
    let mut s = Scenario::new();
    s.args(&["--static-mapping", "tcp:0.0.0.0:8080=10.100.10.12:80"]);
    // A's mapping for 5000/TCP, made by talking to the outside first.
    s.at(0, tcp(ep(A, 5000), ep(R, 80), TCP_SYN, 1, 0, b""));
    let p = s.learn_port(0);
    s.at(10, tcp(ep(A, 5000), ep(EXT, 8080), TCP_SYN, 100, 0, b""));
    s.at(20, tcp(ep(B, 80), ep(EXT, p), TCP_SYN | TCP_ACK, 900, 101, b""));
    s.at(30, tcp(ep(A, 5000), ep(EXT, 8080), TCP_ACK | TCP_PSH, 101, 901, b"hello B"));
    let o = s.run();
    for ms in [10, 30] {
        let v = o.fwd(ms);
        assert_eq!(v.src_ep(), ep(EXT, p), "B sees A's external mapping as the source{}", o.context());
        assert_eq!(v.dst_ep(), ep(B, 80), "A's packet reaches B{}", o.context());
    }
    let v = o.fwd(20);
    assert_eq!(v.src_ep(), ep(EXT, 8080), "A sees B's answer coming from the address it called{}", o.context());
    assert_eq!(v.dst_ep(), ep(A, 5000));
    assert_eq!(o.fwd(30).l4_payload(), b"hello B");
    assert_eq!(o.stat("hairpinned"), 3, "{}", o.context());
    o.assert_drops(&[]);
}

#[test]
fn hairpin_without_a_prior_mapping_creates_one_for_the_sender() {
    let mut s = Scenario::new();
    s.args(&["--static-mapping", "udp:0.0.0.0:5353=10.100.10.12:53"]);
    s.at(0, udp(ep(A, 6000), ep(EXT, 5353), b"query"));
    let q = s.learn_port(0);
    assert!(q >= 1024, "A's new mapping {q} outside 1024-65535");
    s.at(10, udp(ep(B, 53), ep(EXT, q), b"answer"));
    // The mapping the hairpin made is A's external mapping (EIM): the same port outside.
    s.at(20, udp(ep(A, 6000), ep(R, 53), b"query outside"));
    let o = s.run();
    let v = o.fwd(0);
    assert_eq!(v.src(), ip(EXT), "hairpinned packets carry the external address, not A's{}", o.context());
    assert_eq!(v.dst_ep(), ep(B, 53));
    let v = o.fwd(10);
    assert_eq!(v.src_ep(), ep(EXT, 5353));
    assert_eq!(v.dst_ep(), ep(A, 6000));
    assert_eq!(o.fwd(20).src_ep(), ep(EXT, q), "the hairpin mapping is A's mapping for every destination");
}

#[test]
fn hairpin_between_two_dynamic_mappings() {
    // B's mapping Q (from talking to R) is open to anyone (EIF); A reaches it via EXT:Q.
    let mut s = Scenario::new();
    s.args(&["--udp-filtering", "EndpointIndependentFiltering"]);
    s.at(0, udp(ep(B, 7000), ep(R, 3478), b"stun"));
    s.at(1, udp(ep(A, 5000), ep(R, 3478), b"stun"));
    let q = s.learn_port(0);
    let p = s.learn_port(1);
    assert_ne!(p, q);
    s.at(10, udp(ep(A, 5000), ep(EXT, q), b"peer to peer"));
    s.at(20, udp(ep(B, 7000), ep(EXT, p), b"peer to peer back"));
    let o = s.run();
    let v = o.fwd(10);
    assert_eq!((v.src_ep(), v.dst_ep()), (ep(EXT, p), ep(B, 7000)), "{}", o.context());
    let v = o.fwd(20);
    assert_eq!((v.src_ep(), v.dst_ep()), (ep(EXT, q), ep(A, 5000)), "{}", o.context());
    assert_eq!(o.stat("hairpinned"), 2);
}

/// Decided (design §2 is silent): an internal host sending to a port of the external address
/// that maps to no internal endpoint is talking to the host itself (a DNS or web server on the
/// host's address), as on Linux and WinNAT hosts, so the packet passes untranslated and no
/// session is created. From outside, the same packet is unsolicited and is dropped.
#[test]
fn hairpin_to_an_unmapped_port_goes_to_the_host_unchanged() {
    let mut s = Scenario::new();
    s.args(&["--port-range", "40000-40010"]);
    s.at(0, udp(ep(A, 5000), ep(EXT, 50000), b"nobody home"));
    s.at(1, tcp(ep(A, 5001), ep(EXT, 50001), TCP_SYN, 1, 0, b""));
    let o = s.run();
    o.assert_passed_unchanged(0);
    o.assert_passed_unchanged(1);
    assert_eq!(o.stat("passed"), 2);
    assert_eq!(o.dropped_total(), 0);
    assert!(o.sessions().is_empty(), "{}", o.context());
}
