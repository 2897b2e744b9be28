//! Limits (design §2 "Limits"): port exhaustion drops new flows and counts them
//! (`ports_exhausted`) while existing flows go on; expiry frees ports; --max-sessions and
//! --max-sessions-per-host cap sessions (`session_limit`, `host_session_limit`), one capped
//! host leaving the others working.

mod common;

use std::collections::BTreeSet;

use common::*;

const A: &str = "10.100.10.11";
const B: &str = "10.100.10.12";
const C: &str = "10.100.10.13";
const R: &str = "198.51.100.10";

#[test]
fn third_endpoint_finds_the_ports_exhausted_then_gets_one_after_expiry() {
    let mut s = Scenario::new();
    s.args(&["--port-range", "40000-40001"]);
    s.at(0, udp(ep(A, 5000), ep(R, 53), b"a"));
    s.at(1000, udp(ep(B, 5000), ep(R, 53), b"b"));
    s.at(2000, udp(ep(C, 5000), ep(R, 53), b"c: no port left"));
    let pa = s.learn_port(0);
    let pb = s.learn_port(1000);
    let ports: BTreeSet<u16> = [pa, pb].into();
    assert_eq!(ports, [40000, 40001].into(), "two endpoints, two ports of the range");
    // Existing flows untouched: answers reach A and B, and A keeps its port.
    s.at(3000, udp(ep(R, 53), ep(EXT, pa), b"to a"));
    s.at(4000, udp(ep(R, 53), ep(EXT, pb), b"to b"));
    s.at(5000, udp(ep(A, 5000), ep(R, 53), b"a again"));
    // A's session idles from 5 s, B's from 1 s: at 122 s B's has expired (UDP 120 s), A's
    // not; C gets B's old port.
    s.at(secs(122.0), udp(ep(C, 5000), ep(R, 53), b"c: retry"));
    s.at(secs(123.0), udp(ep(R, 53), ep(EXT, pb), b"to c"));
    let o = s.run();
    o.assert_dropped(2000);
    assert_eq!(o.fwd(3000).dst_ep(), ep(A, 5000));
    assert_eq!(o.fwd(4000).dst_ep(), ep(B, 5000));
    assert_eq!(o.fwd(5000).src_ep(), ep(EXT, pa));
    assert_eq!(o.fwd(secs(122.0)).src_ep(), ep(EXT, pb), "the expired mapping's port is reused{}", o.context());
    assert_eq!(o.fwd(secs(123.0)).dst_ep(), ep(C, 5000), "and now leads to C");
    o.assert_drops(&[("ports_exhausted", 1)]);
}

#[test]
fn exhaustion_is_per_protocol_and_existing_endpoints_keep_working() {
    let mut s = Scenario::new();
    s.args(&["--port-range", "40000-40001"]);
    s.at(0, udp(ep(A, 5000), ep(R, 53), b"a"));
    s.at(1, udp(ep(B, 5000), ep(R, 53), b"b"));
    s.at(2, udp(ep(C, 5000), ep(R, 53), b"c"));
    s.at(3, udp(ep(C, 5001), ep(R, 53), b"c"));
    // A mapped endpoint talking to a new destination needs no new port (EIM).
    s.at(4, udp(ep(A, 5000), ep("198.51.100.20", 123), b"a to another remote"));
    // TCP has its own ports.
    s.at(5, tcp(ep(C, 5000), ep(R, 80), TCP_SYN, 1, 0, b""));
    let o = s.run();
    o.assert_dropped(2);
    o.assert_dropped(3);
    let pa = o.fwd(0).sport();
    assert_eq!(o.fwd(4).src_ep(), ep(EXT, pa));
    assert!((40000..=40001).contains(&o.fwd(5).sport()));
    o.assert_drops(&[("ports_exhausted", 2)]);
}

#[test]
fn icmp_ids_run_out_too() {
    // Decision: ICMP identifiers come from the same range as ports (the id plays the role
    // of the port).
    let mut s = Scenario::new();
    s.args(&["--port-range", "40000-40001"]);
    s.at(0, icmp_echo(ip(A), ip(R), true, 1, 1, b""));
    s.at(1, icmp_echo(ip(B), ip(R), true, 1, 1, b""));
    s.at(2, icmp_echo(ip(C), ip(R), true, 1, 1, b""));
    let o = s.run();
    let ids: BTreeSet<u16> = [o.fwd(0).icmp_id(), o.fwd(1).icmp_id()].into();
    assert_eq!(ids, [40000, 40001].into());
    o.assert_dropped(2);
    o.assert_drops(&[("ports_exhausted", 1)]);
}

#[test]
fn max_sessions_caps_the_whole_nat() {
    let mut s = Scenario::new();
    s.args(&["--max-sessions", "3"]);
    s.at(0, udp(ep(A, 5000), ep(R, 53), b"1"));
    s.at(1, udp(ep(A, 5001), ep(R, 53), b"2"));
    s.at(2, udp(ep(B, 5000), ep(R, 53), b"3"));
    s.at(3, udp(ep(C, 5000), ep(R, 53), b"4: over the limit"));
    s.at(4, tcp(ep(C, 5000), ep(R, 80), TCP_SYN, 1, 0, b""));
    let p = s.learn_port(0);
    // Existing sessions keep working.
    s.at(10, udp(ep(R, 53), ep(EXT, p), b"answer"));
    s.at(11, udp(ep(A, 5000), ep(R, 53), b"again"));
    let o = s.run();
    for ms in [0, 1, 2] {
        assert_eq!(o.fwd(ms).src(), ip(EXT));
    }
    o.assert_dropped(3);
    o.assert_dropped(4);
    assert_eq!(o.fwd(10).dst_ep(), ep(A, 5000));
    assert_eq!(o.fwd(11).src_ep(), ep(EXT, p));
    o.assert_drops(&[("session_limit", 2)]);
    assert_eq!(o.sessions().len(), 3);
}

#[test]
fn max_sessions_frees_up_after_expiry() {
    let mut s = Scenario::new();
    s.args(&["--max-sessions", "1", "--udp-idle-timeout", "10"]);
    s.at(0, udp(ep(A, 5000), ep(R, 53), b"1"));
    s.at(secs(5.0), udp(ep(B, 5000), ep(R, 53), b"2: full"));
    s.at(secs(10.5), udp(ep(B, 5000), ep(R, 53), b"3: A's session expired"));
    let o = s.run();
    o.assert_dropped(secs(5.0));
    assert_eq!(o.fwd(secs(10.5)).src(), ip(EXT));
    o.assert_drops(&[("session_limit", 1)]);
}

#[test]
fn max_sessions_per_host_caps_one_host_and_not_the_others() {
    let mut s = Scenario::new();
    s.args(&["--max-sessions-per-host", "2"]);
    s.at(0, udp(ep(A, 5000), ep(R, 53), b"a1"));
    s.at(1, udp(ep(A, 5001), ep(R, 53), b"a2"));
    s.at(2, udp(ep(A, 5002), ep(R, 53), b"a3: over the host limit"));
    s.at(3, tcp(ep(A, 5003), ep(R, 80), TCP_SYN, 1, 0, b""));
    s.at(4, icmp_echo(ip(A), ip(R), true, 9, 1, b""));
    s.at(5, udp(ep(B, 5000), ep(R, 53), b"b1"));
    s.at(6, udp(ep(B, 5001), ep(R, 53), b"b2"));
    s.at(7, udp(ep(C, 5000), ep(R, 53), b"c1"));
    let p = s.learn_port(1);
    s.at(10, udp(ep(R, 53), ep(EXT, p), b"answer to a2"));
    let o = s.run();
    for ms in [0, 1, 5, 6, 7] {
        assert_eq!(o.fwd(ms).src(), ip(EXT));
    }
    for ms in [2, 3, 4] {
        o.assert_dropped(ms);
    }
    assert_eq!(o.fwd(10).dst_ep(), ep(A, 5001), "A's existing sessions unaffected");
    o.assert_drops(&[("host_session_limit", 3)]);
    assert_eq!(o.sessions().len(), 5);
}

#[test]
fn zero_limits_are_refused() {
    for flag in ["--max-sessions", "--max-sessions-per-host"] {
        let mut s = Scenario::new();
        s.args(&[flag, "0"]);
        s.at(0, udp(ep(A, 5000), ep(R, 53), b"x"));
        let o = s.run_unchecked();
        assert!(!o.success, "{flag} 0 must be refused (a NAT that admits nothing)");
    }
}

#[test]
fn empty_port_range_is_refused() {
    let mut s = Scenario::new();
    s.args(&["--port-range", "40001-40000"]);
    s.at(0, udp(ep(A, 5000), ep(R, 53), b"x"));
    let o = s.run_unchecked();
    assert!(!o.success, "an empty port range must be refused");
    assert!(o.stderr.contains("40001"), "error names the range: {}", o.stderr);
}

#[test]
fn session_limit_applies_to_inbound_static_mapping_sessions_too() {
    let mut s = Scenario::new();
    s.args(&["--max-sessions", "1", "--static-mapping", "tcp:0.0.0.0:8080=10.100.10.11:80"]);
    s.at(0, tcp(ep(R, 1000), ep(EXT, 8080), TCP_SYN, 1, 0, b""));
    s.at(1, tcp(ep("198.51.100.20", 1000), ep(EXT, 8080), TCP_SYN, 1, 0, b""));
    s.at(2, udp(ep(B, 5000), ep(R, 53), b"x"));
    let o = s.run();
    assert_eq!(o.fwd(0).dst_ep(), ep(A, 80));
    o.assert_dropped(1);
    o.assert_dropped(2);
    o.assert_drops(&[("session_limit", 2)]);
}
