//! Timers (design §2 "Timers"): every timeout just below (forwarded) and just above (dropped,
//! `no_mapping`: an expired session admits nothing) its value, with WinNAT's defaults and
//! with a configured value; TCP state transitions; UDP inbound refresh on and off.
//!
//! Decision: a packet arriving after its session expired is dropped as `no_mapping` (the
//! session, and so the mapping, no longer exists).

mod common;

use common::*;

const A: &str = "10.100.10.11";
const R: &str = "198.51.100.10";

fn expect(o: &Outcome, ms: u64, forwarded: bool, to: std::net::SocketAddrV4) {
    if forwarded {
        assert_eq!(o.fwd(ms).dst_ep(), to, "inbound translated back{}", o.context());
    } else {
        o.assert_dropped(ms);
        o.assert_drops(&[("no_mapping", 1)]);
        assert_eq!(o.stat("sessions_expired"), 1, "{}", o.context());
        assert!(o.sessions().is_empty(), "an expired session is still listed: {:#}", o.sessions);
    }
}

// ---- UDP idle -------------------------------------------------------------------------

fn udp_idle(args: &[&str], reply_at_s: f64, forwarded: bool) {
    let mut s = Scenario::new();
    s.args(args);
    s.at(0, udp(ep(A, 5000), ep(R, 53), b"query"));
    let p = s.learn_port(0);
    s.at(secs(reply_at_s), udp(ep(R, 53), ep(EXT, p), b"late answer"));
    let o = s.run();
    expect(&o, secs(reply_at_s), forwarded, ep(A, 5000));
}

#[test]
fn udp_idle_default_just_below_120s() {
    udp_idle(&[], 119.9, true);
}

#[test]
fn udp_idle_default_just_above_120s() {
    udp_idle(&[], 120.1, false);
}

#[test]
fn udp_idle_configured_30s() {
    udp_idle(&["--udp-idle-timeout", "30"], 29.9, true);
    udp_idle(&["--udp-idle-timeout", "30"], 30.1, false);
    // And the configured value replaces the default, not just shortens it.
    udp_idle(&["--udp-idle-timeout", "300"], 299.9, true);
}

#[test]
fn udp_outbound_packets_refresh() {
    for (at, fwd) in [(219.9, true), (220.1, false)] {
        let mut s = Scenario::new();
        s.at(0, udp(ep(A, 5000), ep(R, 53), b"1"));
        s.at(secs(100.0), udp(ep(A, 5000), ep(R, 53), b"2"));
        let p = s.learn_port(0);
        s.at(secs(at), udp(ep(R, 53), ep(EXT, p), b"answer"));
        let o = s.run();
        assert_eq!(o.fwd(secs(100.0)).src_ep(), ep(EXT, p), "same session, same mapping");
        expect(&o, secs(at), fwd, ep(A, 5000));
    }
}

#[test]
fn udp_inbound_refresh_off_by_default_inbound_does_not_refresh() {
    for args in [&[][..], &["--udp-inbound-refresh", "false"][..]] {
        let mut s = Scenario::new();
        s.args(args);
        s.at(0, udp(ep(A, 5000), ep(R, 53), b"subscribe"));
        let p = s.learn_port(0);
        s.at(secs(100.0), udp(ep(R, 53), ep(EXT, p), b"push 1"));
        s.at(secs(120.1), udp(ep(R, 53), ep(EXT, p), b"push 2"));
        let o = s.run();
        assert_eq!(o.fwd(secs(100.0)).dst_ep(), ep(A, 5000));
        // 120.1 s after the last outbound packet: expired although an inbound came at 100 s.
        expect(&o, secs(120.1), false, ep(A, 5000));
    }
}

#[test]
fn udp_inbound_refresh_on_inbound_refreshes() {
    for (at, fwd) in [(219.9, true), (220.1, false)] {
        let mut s = Scenario::new();
        s.args(&["--udp-inbound-refresh", "true"]);
        s.at(0, udp(ep(A, 5000), ep(R, 53), b"subscribe"));
        let p = s.learn_port(0);
        s.at(secs(100.0), udp(ep(R, 53), ep(EXT, p), b"push 1"));
        s.at(secs(at), udp(ep(R, 53), ep(EXT, p), b"push 2"));
        let o = s.run();
        assert_eq!(o.fwd(secs(100.0)).dst_ep(), ep(A, 5000));
        expect(&o, secs(at), fwd, ep(A, 5000));
    }
}

// ---- ICMP query -----------------------------------------------------------------------

fn icmp_query(args: &[&str], reply_at_s: f64, forwarded: bool) {
    let mut s = Scenario::new();
    s.args(args);
    s.at(0, icmp_echo(ip(A), ip(R), true, 0x4242, 1, b"ping"));
    let id = s.learn_port(0);
    s.at(secs(reply_at_s), icmp_echo(ip(R), ip(EXT), false, id, 1, b"ping"));
    let o = s.run();
    if forwarded {
        let v = o.fwd(secs(reply_at_s));
        assert_eq!(v.dst(), ip(A));
        assert_eq!(v.icmp_id(), 0x4242, "echo id translated back");
    } else {
        expect(&o, secs(reply_at_s), false, ep(A, 0));
    }
}

#[test]
fn icmp_query_default_just_below_30s() {
    icmp_query(&[], 29.9, true);
}

#[test]
fn icmp_query_default_just_above_30s() {
    icmp_query(&[], 30.1, false);
}

#[test]
fn icmp_query_configured_10s() {
    icmp_query(&["--icmp-query-timeout", "10"], 9.9, true);
    icmp_query(&["--icmp-query-timeout", "10"], 10.1, false);
    icmp_query(&["--icmp-query-timeout", "100"], 99.9, true);
}

// ---- TCP --------------------------------------------------------------------------------

/// SYN out at 0, SYN-ACK in at 0.1 s, ACK out at 0.2 s: established from 0.2 s.
fn handshake(s: &mut Scenario) -> u16 {
    s.at(0, tcp(ep(A, 5000), ep(R, 80), TCP_SYN, 100, 0, b""));
    let p = s.learn_port(0);
    s.at(100, tcp(ep(R, 80), ep(EXT, p), TCP_SYN | TCP_ACK, 900, 101, b""));
    s.at(200, tcp(ep(A, 5000), ep(R, 80), TCP_ACK, 101, 901, b""));
    p
}

fn inbound_data(p: u16) -> Vec<u8> {
    tcp(ep(R, 80), ep(EXT, p), TCP_ACK | TCP_PSH, 901, 101, b"late data")
}

fn tcp_transient_before_handshake(args: &[&str], at_s: f64, forwarded: bool) {
    let mut s = Scenario::new();
    s.args(args);
    s.at(0, tcp(ep(A, 5000), ep(R, 80), TCP_SYN, 100, 0, b""));
    let p = s.learn_port(0);
    s.at(secs(at_s), tcp(ep(R, 80), ep(EXT, p), TCP_SYN | TCP_ACK, 900, 101, b""));
    let o = s.run();
    expect(&o, secs(at_s), forwarded, ep(A, 5000));
}

#[test]
fn tcp_transient_default_syn_only_just_below_120s() {
    tcp_transient_before_handshake(&[], 119.9, true);
}

#[test]
fn tcp_transient_default_syn_only_just_above_120s() {
    tcp_transient_before_handshake(&[], 120.1, false);
}

#[test]
fn tcp_transient_configured_60s() {
    tcp_transient_before_handshake(&["--tcp-transient-timeout", "60"], 59.9, true);
    tcp_transient_before_handshake(&["--tcp-transient-timeout", "60"], 60.1, false);
    tcp_transient_before_handshake(&["--tcp-transient-timeout", "600"], 599.9, true);
}

#[test]
fn tcp_syn_and_syn_ack_without_final_ack_is_still_transient() {
    // Decision: the handshake completes with the third segment (the final ACK); a session
    // that saw SYN and SYN-ACK only is still transient.
    for (at, fwd) in [(119.9, true), (120.1, false)] {
        let mut s = Scenario::new();
        s.at(0, tcp(ep(A, 5000), ep(R, 80), TCP_SYN, 100, 0, b""));
        let p = s.learn_port(0);
        s.at(1000, tcp(ep(R, 80), ep(EXT, p), TCP_SYN | TCP_ACK, 900, 101, b""));
        s.at(1000 + secs(at), tcp(ep(R, 80), ep(EXT, p), TCP_SYN | TCP_ACK, 900, 101, b"")); // retransmit
        let o = s.run();
        expect(&o, 1000 + secs(at), fwd, ep(A, 5000));
    }
}

fn tcp_established(args: &[&str], idle_s: f64, forwarded: bool) {
    let mut s = Scenario::new();
    s.args(args);
    let p = handshake(&mut s);
    s.at(200 + secs(idle_s), inbound_data(p));
    let o = s.run();
    assert_eq!(o.fwd(100).dst_ep(), ep(A, 5000));
    assert_eq!(o.fwd(100).tcp_flags(), TCP_SYN | TCP_ACK);
    expect(&o, 200 + secs(idle_s), forwarded, ep(A, 5000));
}

#[test]
fn tcp_established_default_just_below_1800s() {
    // Far beyond the transient 120 s: the handshake made the session established.
    tcp_established(&[], 1799.9, true);
}

#[test]
fn tcp_established_default_just_above_1800s() {
    tcp_established(&[], 1800.1, false);
}

#[test]
fn tcp_established_configured_300s() {
    tcp_established(&["--tcp-established-timeout", "300"], 299.9, true);
    tcp_established(&["--tcp-established-timeout", "300"], 300.1, false);
    tcp_established(&["--tcp-established-timeout", "3600"], 3599.9, true);
}

#[test]
fn tcp_any_packet_refreshes_an_established_session() {
    // Inbound packets refresh TCP (unlike UDP without inbound refresh).
    for (at, fwd) in [(1000.0 + 1799.9, true), (1000.0 + 1800.1, false)] {
        let mut s = Scenario::new();
        let p = handshake(&mut s);
        s.at(secs(1000.0), inbound_data(p));
        s.at(secs(at), inbound_data(p));
        let o = s.run();
        assert!(o.is_forwarded(secs(1000.0)));
        expect(&o, secs(at), fwd, ep(A, 5000));
    }
}

/// Handshake, then `close` (packets at 10 s, 11 s, 12 s), then an inbound packet `after_s`
/// after the last close packet.
fn after_close(close: &[(bool, u8)], after_s: f64) -> (Outcome, u64) {
    let mut s = Scenario::new();
    let p = handshake(&mut s);
    let mut last = 0;
    for (i, (outbound, flags)) in close.iter().enumerate() {
        last = secs(10.0) + 1000 * i as u64;
        let pkt = if *outbound {
            tcp(ep(A, 5000), ep(R, 80), *flags, 101, 901, b"")
        } else {
            tcp(ep(R, 80), ep(EXT, p), *flags, 901, 102, b"")
        };
        s.at(last, pkt);
    }
    let probe = last + secs(after_s);
    s.at(probe, tcp(ep(R, 80), ep(EXT, p), TCP_ACK, 902, 102, b""));
    let o = s.run();
    for i in 0..close.len() as u64 {
        assert!(o.is_forwarded(secs(10.0) + 1000 * i), "close segment {i} not forwarded{}", o.context());
    }
    (o, probe)
}

const FIN_BOTH_WAYS: &[(bool, u8)] = &[(true, TCP_FIN | TCP_ACK), (false, TCP_FIN | TCP_ACK), (true, TCP_ACK)];

#[test]
fn tcp_fin_both_ways_makes_the_session_transient() {
    let (o, probe) = after_close(FIN_BOTH_WAYS, 119.9);
    expect(&o, probe, true, ep(A, 5000));
    let (o, probe) = after_close(FIN_BOTH_WAYS, 120.1);
    expect(&o, probe, false, ep(A, 5000));
}

#[test]
fn tcp_fin_one_way_stays_established() {
    // Half-close: the other direction may still send for as long as the connection lives.
    let (o, probe) = after_close(&[(true, TCP_FIN | TCP_ACK), (false, TCP_ACK)], 120.1);
    expect(&o, probe, true, ep(A, 5000));
    let (o, probe) = after_close(&[(false, TCP_FIN | TCP_ACK), (true, TCP_ACK)], 1000.0);
    expect(&o, probe, true, ep(A, 5000));
}

#[test]
fn tcp_inbound_rst_makes_the_session_transient() {
    let (o, probe) = after_close(&[(false, TCP_RST)], 119.9);
    expect(&o, probe, true, ep(A, 5000));
    let (o, probe) = after_close(&[(false, TCP_RST)], 120.1);
    expect(&o, probe, false, ep(A, 5000));
}

#[test]
fn tcp_outbound_rst_makes_the_session_transient() {
    let (o, probe) = after_close(&[(true, TCP_RST | TCP_ACK)], 119.9);
    expect(&o, probe, true, ep(A, 5000));
    let (o, probe) = after_close(&[(true, TCP_RST | TCP_ACK)], 120.1);
    expect(&o, probe, false, ep(A, 5000));
}

#[test]
fn expired_mapping_is_replaced_by_a_new_one() {
    // After expiry the internal endpoint sends again: a new session, translated normally,
    // and the remote's answer reaches it.
    let mut s = Scenario::new();
    s.args(&["--port-range", "40000-40000"]);
    s.at(0, udp(ep(A, 5000), ep(R, 53), b"1"));
    s.at(secs(200.0), udp(ep(A, 5000), ep(R, 53), b"2"));
    s.at(secs(201.0), udp(ep(R, 53), ep(EXT, 40000), b"answer"));
    let o = s.run();
    assert_eq!(o.fwd(0).src_ep(), ep(EXT, 40000));
    assert_eq!(o.fwd(secs(200.0)).src_ep(), ep(EXT, 40000));
    assert_eq!(o.fwd(secs(201.0)).dst_ep(), ep(A, 5000));
    assert_eq!(o.stat("sessions_created"), 2, "{}", o.context());
    assert_eq!(o.stat("sessions_expired"), 1, "{}", o.context());
}
