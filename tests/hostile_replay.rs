//! Hostile traffic through `netnat replay` (issue 6 item 3; design §2 "Limits", "Filtering",
//! "ICMP errors"): a SYN flood and a UDP port scan from one internal host meet the per-host
//! cap while another host keeps working; a flood of unsolicited inbound packets is dropped,
//! counted and creates nothing; a port exhaustion attempt is contained by the per-host cap
//! and ports come back after the idle timeout; forged or misdirected ICMP errors are dropped
//! with the right reason and neither disturb nor refresh the real session; blind RSTs and FINs
//! at random sequence numbers are dropped and the connection stays established; ACK, RST and
//! FIN probes to a TCP port forward open nothing (issue "Hardening" item 4).
//!
//! Every test also checks that no output packet bound outside carries an internal
//! (10.100.0.0/16) source, nor embeds one in an ICMP error ([`assert_nothing_leaks`]); the
//! harness validates every output checksum.

mod common;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use common::*;
use serde_json::Value;

/// The attacker: an internal host that floods.
const A: &str = "10.100.10.11";
/// Another internal host that must keep working.
const B: &str = "10.100.10.12";
const C: &str = "10.100.10.13";
/// Remotes the internal hosts talk to.
const R: &str = "198.51.100.10";
const R2: &str = "198.51.100.20";
/// A router on the path (sends ICMP errors).
const ROUTER: &str = "198.51.100.1";

fn is_internal(a: Ipv4Addr) -> bool {
    let [x, y, _, _] = a.octets();
    (x, y) == (10, 100)
}

/// A destination outside the internal prefix: multicast, broadcast and reserved ones
/// included (the NAT drops what it must not route; nothing may leave with an internal source).
fn is_outside(a: Ipv4Addr) -> bool {
    !is_internal(a)
}

/// Fails if any output packet going outside has an internal source, or is an ICMP error
/// whose embedded packet still names an internal address.
fn assert_nothing_leaks(o: &Outcome) {
    let mut checked = 0usize;
    for r in &o.out {
        let v = View::new(&r.data);
        if !is_outside(v.dst()) {
            continue;
        }
        checked += 1;
        assert!(
            !is_internal(v.src()),
            "a packet left outward with an internal source: {}{}",
            run_describe(&r.data),
            o.context()
        );
        if v.proto() == PROTO_ICMP && !v.is_fragment() && matches!(v.icmp_type(), 3 | 4 | 5 | 11 | 12) {
            let e = v.embedded();
            assert!(
                !is_internal(e.src()) && !is_internal(e.dst()),
                "an ICMP error left outward embedding an internal address ({} -> {}): {}{}",
                e.src(),
                e.dst(),
                run_describe(&r.data),
                o.context()
            );
        }
    }
    // Every scenario here sends something out; a check over nothing proves nothing.
    assert!(checked > 0, "no output packet went outside{}", o.context());
}

fn run_describe(p: &[u8]) -> String {
    common::run::describe(p)
}

/// The --sessions-json rows whose InternalSourceAddress is `host`.
fn sessions_of<'a>(o: &'a Outcome, host: &str) -> Vec<&'a Value> {
    o.sessions().iter().filter(|s| s["InternalSourceAddress"] == host).collect()
}

/// Deterministic pseudo-random numbers (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn syn_flood_from_one_host_is_capped_and_another_host_keeps_working() {
    const CAP: usize = 16;
    const FLOOD: u16 = 600;
    let mut s = Scenario::new();
    s.args(&["--max-sessions-per-host", &CAP.to_string()]);
    let mut t = 0u64;
    let mut flood_ms = Vec::new();
    let mut flood = |s: &mut Scenario, t: &mut u64, range: std::ops::Range<u16>| {
        for i in range {
            // A new source port per SYN: a new mapping and session each.
            s.at(*t, tcp(ep(A, 10_000 + i), ep(R, 80), TCP_SYN, u32::from(i), 0, b""));
            flood_ms.push(*t);
            *t += 1;
        }
    };
    flood(&mut s, &mut t, 0..FLOOD / 2);
    // B opens a connection in the middle of the flood.
    let b_syn = t;
    s.at(b_syn, tcp(ep(B, 40_000), ep(R2, 443), TCP_SYN, 1000, 0, b""));
    t += 1;
    let pa = s.learn_port(0);
    let pb = s.learn_port(b_syn);
    flood(&mut s, &mut t, FLOOD / 2..FLOOD);
    let mut at = |s: &mut Scenario, p: Vec<u8>| {
        t += 1;
        s.at(t, p);
        t
    };
    let b_synack = at(&mut s, tcp(ep(R2, 443), ep(EXT, pb), TCP_SYN | TCP_ACK, 5000, 1001, b""));
    let b_ack = at(&mut s, tcp(ep(B, 40_000), ep(R2, 443), TCP_ACK, 1001, 5001, b""));
    let b_data = at(&mut s, tcp(ep(B, 40_000), ep(R2, 443), TCP_PSH | TCP_ACK, 1001, 5001, b"GET / HTTP/1.1\r\n\r\n"));
    let b_udp: Vec<u64> = (0..5).map(|i| at(&mut s, udp(ep(B, 50_000 + i), ep(R2, 53), b"query"))).collect();
    // The flows A got before the cap keep working.
    let a_synack = at(&mut s, tcp(ep(R, 80), ep(EXT, pa), TCP_SYN | TCP_ACK, 9000, 1, b""));
    let o = s.run();

    let from_a = sessions_of(&o, A);
    assert_eq!(from_a.len(), CAP, "sessions of the flooding host (cap {CAP}){}", o.context());
    for (k, ms) in flood_ms.iter().enumerate() {
        if k < CAP {
            assert_eq!(o.fwd(*ms).src(), ip(EXT), "SYN {k} of A, under the cap");
        } else {
            o.assert_dropped(*ms);
        }
    }
    assert_eq!(o.fwd(b_syn).src_ep(), ep(EXT, pb));
    assert_eq!(o.fwd(b_synack).dst_ep(), ep(B, 40_000), "B's connection answered during A's flood");
    for ms in [b_ack, b_data] {
        assert_eq!(o.fwd(ms).src_ep(), ep(EXT, pb));
    }
    for ms in &b_udp {
        assert_eq!(o.fwd(*ms).src(), ip(EXT), "B's new UDP flows after A's flood");
    }
    assert_eq!(o.fwd(a_synack).dst_ep(), ep(A, 10_000));
    assert_eq!(sessions_of(&o, B).len(), 1 + b_udp.len());
    o.assert_drops(&[("host_session_limit", u64::from(FLOOD) - CAP as u64)]);
    assert_nothing_leaks(&o);
}

#[test]
fn udp_port_scan_from_one_host_is_capped_and_another_host_keeps_working() {
    const CAP: usize = 32;
    const SCAN: u16 = 1000;
    let mut s = Scenario::new();
    s.args(&["--max-sessions-per-host", &CAP.to_string()]);
    // One source endpoint probing 1000 ports of one remote: one mapping, one session per
    // probed port (NetNatSession rows), so the cap applies to the scan too.
    let mut t = 0u64;
    let mut scan_ms = Vec::new();
    let mut b_queries = Vec::new();
    for port in 1..=SCAN {
        s.at(t, udp(ep(A, 33_333), ep(R, port), b"probe"));
        scan_ms.push(t);
        t += 1;
        if port % 200 == 0 {
            // B's DNS, from a fresh port each time, while A scans.
            s.at(t, udp(ep(B, 50_000 + port), ep(R2, 53), b"query"));
            b_queries.push((t, 50_000 + port));
            t += 1;
        }
    }
    let pa = s.learn_port(0);
    let mut answers = Vec::new();
    for (q_ms, bport) in &b_queries {
        let pb = s.learn_port(*q_ms);
        t += 1;
        s.at(t, udp(ep(R2, 53), ep(EXT, pb), b"answer"));
        answers.push((t, *bport));
    }
    // R answers from a port A probed before the cap: it reaches A.
    t += 1;
    let answered = t;
    s.at(answered, udp(ep(R, 1), ep(EXT, pa), b"open port"));
    // R "answers" from a port whose probe was dropped: address-dependent filtering would
    // admit R, but that needs a new session, and A is at its cap.
    t += 1;
    let over_cap = t;
    s.at(over_cap, udp(ep(R, SCAN), ep(EXT, pa), b"unsolicited from a probed port"));
    let o = s.run();

    let from_a = sessions_of(&o, A);
    assert_eq!(from_a.len(), CAP, "sessions of the scanning host{}", o.context());
    let probed: BTreeSet<u64> = from_a.iter().map(|s| s["InternalDestinationPort"].as_u64().unwrap()).collect();
    assert_eq!(probed, (1..=CAP as u64).collect(), "the first {CAP} probes hold the sessions");
    for (k, ms) in scan_ms.iter().enumerate() {
        if k < CAP {
            assert_eq!(o.fwd(*ms).src_ep(), ep(EXT, pa));
        } else {
            o.assert_dropped(*ms);
        }
    }
    for (ms, _) in &b_queries {
        assert_eq!(o.fwd(*ms).src(), ip(EXT), "B's query during the scan");
    }
    for (ms, bport) in &answers {
        assert_eq!(o.fwd(*ms).dst_ep(), ep(B, *bport), "B's answer during the scan");
    }
    assert_eq!(o.fwd(answered).dst_ep(), ep(A, 33_333));
    o.assert_dropped(over_cap);
    o.assert_drops(&[("host_session_limit", u64::from(SCAN) - CAP as u64 + 1)]);
    assert_eq!(sessions_of(&o, A).len(), CAP, "an inbound packet pushed A over its cap");
    assert_nothing_leaks(&o);
}

#[test]
fn unsolicited_inbound_flood_is_dropped_counted_and_creates_nothing() {
    let mut s = Scenario::new();
    // Legitimate sessions of A: UDP, TCP and an echo query.
    s.at(0, udp(ep(A, 5000), ep(R, 53), b"query"));
    s.at(1, tcp(ep(A, 6000), ep(R, 80), TCP_SYN, 1, 0, b""));
    s.at(2, icmp_echo(ip(A), ip(R), true, 0x4242, 1, b"ping"));
    let pu = s.learn_port(0);
    let pt = s.learn_port(1);
    let id = s.learn_port(2);

    // The flood comes from addresses A never talked to (198.51.100.100-199, 203.0.113.200-
    // 249), so address-dependent filtering admits none of it, also where it hits a mapped
    // port or echo id: those are counted `filtered`, the rest `no_mapping`.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let stranger = |rng: &mut Rng| -> String {
        if rng.below(2) == 0 {
            format!("198.51.100.{}", 100 + rng.below(100))
        } else {
            format!("203.0.113.{}", 200 + rng.below(50))
        }
    };
    let mut t = 100u64;
    let mut flood_ms = Vec::new();
    let (mut filtered, mut no_mapping) = (0u64, 0u64);
    let mut push = |s: &mut Scenario, p: Vec<u8>, mapped: bool| {
        s.at(t, p);
        flood_ms.push(t);
        t += 1;
        if mapped {
            filtered += 1;
        } else {
            no_mapping += 1;
        }
    };
    // UDP to 1500 ports (a sweep) plus the mapped port, several times.
    for port in (1024..65535).step_by(43).chain([pu; 5]) {
        let src = stranger(&mut rng);
        push(&mut s, udp(ep(&src, 53), ep(EXT, port), b"unsolicited"), port == pu);
    }
    // TCP SYN, ACK and RST scans, plus the mapped TCP port.
    for (k, port) in (1..=1000u16).chain([pt; 5]).enumerate() {
        let src = stranger(&mut rng);
        let flags = [TCP_SYN, TCP_ACK, TCP_RST | TCP_ACK][k % 3];
        push(&mut s, tcp(ep(&src, 40_000 + port % 1000), ep(EXT, port), flags, 7, 7, b""), port == pt);
    }
    // Echo replies with random identifiers, plus the one in use, from strangers.
    for k in 0..500u16 {
        let src = stranger(&mut rng);
        let rid = if k % 100 == 0 { id } else { rng.below(65536) as u16 };
        push(&mut s, icmp_echo(ip(&src), ip(EXT), false, rid, k, b"pong"), rid == id);
    }
    // After the flood, the real sessions answer as before.
    let after = t + 10;
    s.at(after, udp(ep(R, 53), ep(EXT, pu), b"answer"));
    s.at(after + 1, tcp(ep(R, 80), ep(EXT, pt), TCP_SYN | TCP_ACK, 100, 2, b""));
    s.at(after + 2, icmp_echo(ip(R), ip(EXT), false, id, 1, b"ping"));
    let o = s.run();

    for ms in &flood_ms {
        o.assert_dropped(*ms);
    }
    assert!(filtered >= 15, "the flood must hit the mapped ports and id (test construction)");
    o.assert_drops(&[("no_mapping", no_mapping), ("filtered", filtered)]);
    assert_eq!(o.stat("sessions_created"), 3, "the flood created sessions{}", o.context());
    assert_eq!(o.sessions().len(), 3);
    assert_eq!(o.stat("translated_in"), 3, "only the three real answers came in");
    assert_eq!(o.fwd(after).dst_ep(), ep(A, 5000));
    assert_eq!(o.fwd(after + 1).dst_ep(), ep(A, 6000));
    let echo = o.fwd(after + 2);
    assert_eq!((echo.dst(), echo.icmp_id()), (ip(A), 0x4242));
    assert_nothing_leaks(&o);
}

#[test]
fn one_host_cannot_take_every_port_under_the_per_host_cap() {
    // Ten external ports, at most four sessions per host: A's flood gets four, B still gets
    // its four, C the last two; after that the range is exhausted for everyone.
    let mut s = Scenario::new();
    s.args(&["--port-range", "40000-40009", "--max-sessions-per-host", "4"]);
    let mut t = 0u64;
    let mut a_ms = Vec::new();
    for i in 0..50u16 {
        s.at(t, udp(ep(A, 20_000 + i), ep(R, 53), b"grab a port"));
        a_ms.push(t);
        t += 1;
    }
    let b_ms: Vec<u64> = (0..4u16)
        .map(|i| {
            t += 1;
            s.at(t, udp(ep(B, 30_000 + i), ep(R, 53), b"b"));
            t
        })
        .collect();
    let c_ms: Vec<u64> = (0..3u16)
        .map(|i| {
            t += 1;
            s.at(t, udp(ep(C, 30_000 + i), ep(R, 53), b"c"));
            t
        })
        .collect();
    let o = s.run();
    let mut ports = BTreeSet::new();
    for ms in a_ms[..4].iter().chain(&b_ms).chain(&c_ms[..2]) {
        let v = o.fwd(*ms);
        assert_eq!(v.src(), ip(EXT));
        assert!(ports.insert(v.sport()), "external port {} given twice", v.sport());
    }
    assert_eq!(ports, (40_000..=40_009).collect(), "every port of the range used once");
    for ms in &a_ms[4..] {
        o.assert_dropped(*ms);
    }
    o.assert_dropped(c_ms[2]);
    o.assert_drops(&[("host_session_limit", 46), ("ports_exhausted", 1)]);
    assert_eq!(sessions_of(&o, A).len(), 4);
    assert_nothing_leaks(&o);
}

#[test]
fn udp_ports_exhausted_by_a_flood_come_back_after_the_idle_timeout() {
    let mut s = Scenario::new();
    s.args(&["--port-range", "40000-40007", "--udp-idle-timeout", "30"]);
    // A takes all eight ports within 8 ms and keeps trying: 92 more flows are refused.
    for i in 0..100u16 {
        s.at(u64::from(i), udp(ep(A, 20_000 + i), ep(R, 53), b"flood"));
    }
    let b_early = secs(1.0);
    s.at(b_early, udp(ep(B, 5000), ep(R2, 53), b"no port yet"));
    // 29.9 s after the last of A's eight flows: still alive, still no port.
    let b_before = secs(29.9);
    s.at(b_before, udp(ep(B, 5000), ep(R2, 53), b"still no port"));
    // 30 s of idle have passed for all of A's flows: every port is free again.
    let b_after = secs(30.2);
    s.at(b_after, udp(ep(B, 5000), ep(R2, 53), b"a port at last"));
    let pb = s.learn_port(b_after);
    let answer = secs(30.3);
    s.at(answer, udp(ep(R2, 53), ep(EXT, pb), b"answer"));
    let c_ms: Vec<u64> = (0..8u64)
        .map(|i| {
            let ms = secs(30.4) + i;
            s.at(ms, udp(ep(C, 6000 + i as u16), ep(R, 53), b"c"));
            ms
        })
        .collect();
    let o = s.run();
    for i in 0..8u64 {
        assert!((40_000..=40_007).contains(&o.fwd(i).sport()));
    }
    for i in 8..100u64 {
        o.assert_dropped(i);
    }
    o.assert_dropped(b_early);
    o.assert_dropped(b_before);
    assert!((40_000..=40_007).contains(&pb));
    assert_eq!(o.fwd(answer).dst_ep(), ep(B, 5000), "the recovered port works both ways");
    // B holds one port, C gets the other seven, and the eighth flow of C finds none.
    let mut ports: BTreeSet<u16> = [pb].into();
    for ms in &c_ms[..7] {
        assert!(ports.insert(o.fwd(*ms).sport()), "external port reused while in use");
    }
    assert_eq!(ports.len(), 8, "all eight ports came back");
    o.assert_dropped(c_ms[7]);
    o.assert_drops(&[("ports_exhausted", 92 + 2 + 1)]);
    assert!(sessions_of(&o, A).is_empty(), "A's expired sessions are still listed{}", o.context());
    assert_nothing_leaks(&o);
}

#[test]
fn tcp_ports_exhausted_by_a_syn_flood_come_back_after_the_transient_timeout() {
    // SYNs never answered keep their sessions transient (TcpTransientConnectionTimeout).
    let mut s = Scenario::new();
    s.args(&["--port-range", "40000-40003", "--tcp-transient-timeout", "10"]);
    for i in 0..40u16 {
        s.at(u64::from(i), tcp(ep(A, 20_000 + i), ep(R, 80), TCP_SYN, 1, 0, b""));
    }
    s.at(secs(9.9), tcp(ep(B, 7000), ep(R2, 443), TCP_SYN, 1, 0, b""));
    let b_after = secs(10.1);
    s.at(b_after, tcp(ep(B, 7001), ep(R2, 443), TCP_SYN, 1, 0, b""));
    let pb = s.learn_port(b_after);
    s.at(secs(10.2), tcp(ep(R2, 443), ep(EXT, pb), TCP_SYN | TCP_ACK, 50, 2, b""));
    let o = s.run();
    for i in 4..40u64 {
        o.assert_dropped(i);
    }
    o.assert_dropped(secs(9.9));
    assert!((40_000..=40_003).contains(&pb));
    assert_eq!(o.fwd(secs(10.2)).dst_ep(), ep(B, 7001));
    o.assert_drops(&[("ports_exhausted", 36 + 1)]);
    assert_nothing_leaks(&o);
}

/// A port unreachable from `from` to the external address, embedding `embedded`.
fn error_to_ext(from: &str, embedded: &[u8]) -> Vec<u8> {
    icmp_error(ip(from), ip(EXT), ICMP_DEST_UNREACHABLE, 3, embedded)
}

#[test]
fn forged_or_misdirected_icmp_errors_are_dropped_and_the_real_session_is_unaffected() {
    let mut s = Scenario::new();
    s.at(0, udp(ep(A, 5000), ep(R, 53), b"query"));
    s.at(1, tcp(ep(A, 6000), ep(R, 80), TCP_SYN, 1, 0, b""));
    s.at(2, udp(ep(B, 5000), ep(R2, 53), b"b's query"));
    let pa = s.learn_port(0);
    let pt = s.learn_port(1);
    let pb = s.learn_port(2);
    assert_ne!(pa, pb);
    // What R saw from A, as a genuine error would embed it.
    let seen = udp(ep(EXT, pa), ep(R, 53), b"query");
    let unused = (1024..=u16::MAX).find(|p| ![pa, pt, pb].contains(p)).unwrap();

    let mut cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("right external port, wrong remote address", udp(ep(EXT, pa), ep(R2, 53), b"q"), "icmp_error_no_session"),
        ("right external port, wrong remote port", udp(ep(EXT, pa), ep(R, 54), b"q"), "icmp_error_no_session"),
        // B's session, as if A's external port had sent to B's remote.
        ("another session's remote", udp(ep(EXT, pa), ep(R2, 53), b"b"), "icmp_error_no_session"),
        ("another host's port, A's remote", udp(ep(EXT, pb), ep(R, 53), b"q"), "icmp_error_no_session"),
        ("right port, other protocol", tcp(ep(EXT, pa), ep(R, 53), TCP_SYN, 1, 0, b""), "icmp_error_no_session"),
        ("TCP session, wrong remote port", tcp(ep(EXT, pt), ep(R, 81), TCP_SYN, 1, 0, b""), "icmp_error_no_session"),
        ("unknown external port", udp(ep(EXT, unused), ep(R, 53), b"q"), "icmp_error_no_session"),
        ("embedded source not our address", udp(ep("203.0.113.99", pa), ep(R, 53), b"q"), "icmp_error_no_session"),
        ("embedded source the internal address", udp(ep(A, 5000), ep(R, 53), b"q"), "icmp_error_no_session"),
        ("embedded packet from the remote", udp(ep(R, 53), ep(EXT, pa), b"q"), "icmp_error_no_session"),
        ("embedded echo id nobody uses", icmp_echo(ip(EXT), ip(R), true, unused, 1, b""), "icmp_error_no_session"),
    ];
    let mut bad_ip_sum = seen.clone();
    bad_ip_sum[10] ^= 0x5a;
    cases.push(("bad embedded IP header checksum", bad_ip_sum, "bad_embedded_packet"));
    cases.push(("embedded packet cut inside its ports", seen[..22].to_vec(), "bad_embedded_packet"));
    let mut bad_ihl = seen.clone();
    bad_ihl[0] = 0x44;
    cases.push(("embedded IHL below 5", bad_ihl, "bad_embedded_packet"));

    let mut t = 100u64;
    let mut forged_ms = Vec::new();
    for (_, embedded, _) in &cases {
        for from in [ROUTER, R] {
            s.at(t, error_to_ext(from, embedded));
            forged_ms.push(t);
            t += 1;
        }
    }
    // A genuine error embedding the real session but with a broken ICMP checksum.
    let mut bad_icmp = error_to_ext(R, &seen);
    bad_icmp[22] ^= 0xff;
    s.at(t, bad_icmp);
    let bad_icmp_ms = t;
    t += 1;
    // Then the real thing, and the real session's traffic.
    let genuine = t;
    s.at(genuine, error_to_ext(R, &seen));
    s.at(genuine + 1, udp(ep(R, 53), ep(EXT, pa), b"answer"));
    s.at(genuine + 2, udp(ep(A, 5000), ep(R, 53), b"again"));
    s.at(genuine + 3, tcp(ep(R, 80), ep(EXT, pt), TCP_SYN | TCP_ACK, 9, 2, b""));
    s.at(genuine + 4, udp(ep(R2, 53), ep(EXT, pb), b"b's answer"));
    let o = s.run();

    for (k, ms) in forged_ms.iter().enumerate() {
        let what = cases[k / 2].0;
        assert!(!o.is_forwarded(*ms), "forged ICMP error forwarded ({what}){}", o.context());
        o.assert_dropped(*ms);
    }
    o.assert_dropped(bad_icmp_ms);
    let count = |reason: &str| 2 * cases.iter().filter(|c| c.2 == reason).count() as u64;
    o.assert_drops(&[
        ("icmp_error_no_session", count("icmp_error_no_session")),
        ("bad_embedded_packet", count("bad_embedded_packet")),
        ("bad_icmp_checksum", 1),
    ]);
    let v = o.fwd(genuine);
    assert_eq!(v.dst(), ip(A), "the genuine error reaches A");
    assert_eq!(v.embedded().src_ep(), ep(A, 5000));
    assert_eq!(o.fwd(genuine + 1).dst_ep(), ep(A, 5000));
    assert_eq!(o.fwd(genuine + 2).src_ep(), ep(EXT, pa), "A keeps its mapping");
    assert_eq!(o.fwd(genuine + 3).dst_ep(), ep(A, 6000));
    assert_eq!(o.fwd(genuine + 4).dst_ep(), ep(B, 5000));
    assert_eq!(o.sessions().len(), 3, "errors created or removed sessions{}", o.context());
    assert_nothing_leaks(&o);
}

#[test]
fn icmp_errors_do_not_keep_a_session_alive() {
    // Otherwise a remote could pin a mapping (and its port) forever by sending errors about
    // it. The session idles from 0 s; errors, genuine and forged, come until 9.9 s.
    let mut s = Scenario::new();
    s.args(&["--udp-idle-timeout", "10"]);
    s.at(0, udp(ep(A, 5000), ep(R, 53), b"query"));
    let pa = s.learn_port(0);
    let seen = udp(ep(EXT, pa), ep(R, 53), b"query");
    let mut genuine = Vec::new();
    for k in 0..20u64 {
        let ms = secs(0.5) + k * 470;
        s.at(ms, error_to_ext(ROUTER, &seen));
        genuine.push(ms);
        s.at(ms + 1, error_to_ext(R, &udp(ep(EXT, pa), ep(R2, 53), b"forged")));
    }
    let late = secs(10.5);
    s.at(late, udp(ep(R, 53), ep(EXT, pa), b"answer after the timeout"));
    let o = s.run();
    for ms in &genuine {
        assert_eq!(o.fwd(*ms).dst(), ip(A), "a genuine error within the session's life");
    }
    o.assert_dropped(late);
    assert_eq!(
        o.dropped("no_mapping") + o.dropped("filtered"),
        1,
        "the answer after the idle timeout must find the session expired{}",
        o.context()
    );
    assert_eq!(o.dropped("icmp_error_no_session"), 20);
    assert_nothing_leaks(&o);
}

#[test]
fn a_random_hostile_mix_never_exceeds_the_caps_nor_leaks() {
    // Three internal hosts, one of them hostile, and strangers outside, in a seeded random
    // order: the per-host and global caps hold at the end and no internal address leaves.
    const PER_HOST: usize = 20;
    const TOTAL: usize = 45;
    let mut s = Scenario::new();
    s.args(&["--max-sessions-per-host", &PER_HOST.to_string(), "--max-sessions", &TOTAL.to_string()]);
    s.args(&["--udp-filtering", "EndpointIndependentFiltering"]);
    let mut rng = Rng(42);
    let hosts = [A, B, C];
    for t in 0..4000u64 {
        let p = match rng.below(10) {
            0..=3 => {
                let host = if rng.below(2) == 0 { A } else { hosts[rng.below(3) as usize] };
                let sport = 1024 + rng.below(200) as u16;
                let dport = 1 + rng.below(1000) as u16;
                if rng.below(2) == 0 {
                    udp(ep(host, sport), ep(R, dport), b"out")
                } else {
                    tcp(ep(host, sport), ep(R, dport), TCP_SYN, 1, 0, b"")
                }
            }
            4 => icmp_echo(ip(hosts[rng.below(3) as usize]), ip(R2), true, rng.below(65536) as u16, 1, b""),
            5..=7 => {
                let src = format!("203.0.113.{}", 100 + rng.below(100));
                let port = 1024 + rng.below(64512) as u16;
                if rng.below(2) == 0 {
                    udp(ep(&src, 53), ep(EXT, port), b"in")
                } else {
                    tcp(ep(&src, 80), ep(EXT, port), TCP_SYN | TCP_ACK, 1, 1, b"")
                }
            }
            8 => icmp_echo(ip(R), ip(EXT), false, rng.below(65536) as u16, 1, b""),
            _ => {
                let embedded = udp(ep(EXT, 1024 + rng.below(64512) as u16), ep(R, 53), b"x");
                error_to_ext(ROUTER, &embedded)
            }
        };
        s.at(t, p);
    }
    let o = s.run();
    for host in hosts {
        let n = sessions_of(&o, host).len();
        assert!(n <= PER_HOST, "{host} holds {n} sessions, cap {PER_HOST}");
    }
    assert!(o.sessions().len() <= TOTAL, "{} sessions, cap {TOTAL}", o.sessions().len());
    assert!(o.dropped("host_session_limit") > 0, "the mix must reach the per-host cap (test construction)");
    assert_eq!(sessions_of(&o, A).len(), PER_HOST, "the hostile host sits at its cap");
    assert_nothing_leaks(&o);
}

#[test]
fn blind_resets_and_fins_do_not_end_an_established_connection() {
    // An off-path attacker who knows the connection's addresses and ports (not its sequence
    // numbers) sprays RSTs and FINs from R's address. The builder's window is 64240 without
    // scaling, so the bound is 65535 (the floor) around R's next sequence number, 5101.
    const BLIND: u64 = 300;
    const NEXT: u32 = 5101;
    let mut s = Scenario::new();
    s.at(0, tcp(ep(A, 6000), ep(R, 443), TCP_SYN, 1000, 0, b""));
    let p = s.learn_port(0);
    s.at(1, tcp(ep(R, 443), ep(EXT, p), TCP_SYN | TCP_ACK, 5000, 1001, b""));
    s.at(2, tcp(ep(A, 6000), ep(R, 443), TCP_ACK, 1001, 5001, b""));
    s.at(3, tcp(ep(R, 443), ep(EXT, p), TCP_ACK | TCP_PSH, 5001, 1001, &[b'x'; 100]));
    let mut rng = Rng(0x5eed);
    let mut blind_ms = Vec::new();
    for k in 0..BLIND {
        // Anything at least two windows away from NEXT, either way (mod 2^32): the tracker's
        // idea of the next sequence number may trail the real one by half a window.
        let seq = NEXT.wrapping_add(131_072 + rng.below((1 << 32) - 2 * 131_072 - 1) as u32);
        let flags = [TCP_RST, TCP_RST | TCP_ACK, TCP_FIN | TCP_ACK][(k % 3) as usize];
        let t = 10 + k;
        s.at(t, tcp(ep(R, 443), ep(EXT, p), flags, seq, 1001, b""));
        blind_ms.push(t);
    }
    // Past the transient timeout (120 s): the connection is still established.
    let later = secs(300.0);
    s.at(later, tcp(ep(R, 443), ep(EXT, p), TCP_ACK | TCP_PSH, NEXT, 1001, b"still here"));
    s.at(later + 1, tcp(ep(A, 6000), ep(R, 443), TCP_ACK, 1001, NEXT + 10, b""));
    // R's own RST, at its next sequence number, closes it: transient from then on.
    let rst = later + 2;
    s.at(rst, tcp(ep(R, 443), ep(EXT, p), TCP_RST, NEXT + 10, 0, b""));
    let after = secs(300.0 + 121.0);
    s.at(after, tcp(ep(R, 443), ep(EXT, p), TCP_ACK, NEXT + 10, 1001, b""));
    let o = s.run();

    for ms in &blind_ms {
        o.assert_dropped(*ms);
    }
    assert_eq!(o.fwd(later).dst_ep(), ep(A, 6000), "the connection survived the blind segments{}", o.context());
    assert_eq!(o.fwd(later + 1).src_ep(), ep(EXT, p));
    assert_eq!(o.fwd(rst).tcp_flags(), TCP_RST);
    o.assert_dropped(after);
    o.assert_drops(&[("tcp_out_of_window", BLIND), ("no_mapping", 1)]);
    assert_nothing_leaks(&o);
}

#[test]
fn a_port_forward_opens_nothing_for_probes_other_than_a_syn() {
    // ACK, RST and FIN probes from strangers to a TCP port forward: dropped, no session; the
    // SYN of a real client still connects.
    let mut s = Scenario::new();
    s.args(&["--static-mapping", "tcp:0.0.0.0:8080=10.100.10.12:80"]);
    let mut rng = Rng(7);
    let mut probe_ms = Vec::new();
    for k in 0..60u64 {
        let src = format!("198.51.100.{}", 100 + rng.below(100));
        let flags = [TCP_ACK, TCP_RST, TCP_RST | TCP_ACK, TCP_FIN | TCP_ACK, TCP_SYN | TCP_ACK][(k % 5) as usize];
        s.at(k, tcp(ep(&src, 40_000 + k as u16), ep(EXT, 8080), flags, rng.below(1 << 32) as u32, 1, b""));
        probe_ms.push(k);
    }
    s.at(100, tcp(ep(R, 41_000), ep(EXT, 8080), TCP_SYN, 500, 0, b""));
    s.at(101, tcp(ep(B, 80), ep(R, 41_000), TCP_SYN | TCP_ACK, 7000, 501, b""));
    s.at(102, tcp(ep(R, 41_000), ep(EXT, 8080), TCP_ACK, 501, 7001, b""));
    let o = s.run();
    for ms in &probe_ms {
        o.assert_dropped(*ms);
    }
    o.assert_drops(&[("tcp_no_session", probe_ms.len() as u64)]);
    assert_eq!(o.fwd(100).dst_ep(), ep(B, 80));
    assert_eq!(o.fwd(101).src_ep(), ep(EXT, 8080));
    assert_eq!(o.fwd(102).dst_ep(), ep(B, 80));
    assert_eq!(o.sessions().len(), 1, "only the real client's session: {:#}", o.sessions);
    assert_nothing_leaks(&o);
}

/// An outcome whose output is `packets`, to show the leak check can fail.
fn synthetic(packets: Vec<Vec<u8>>) -> Outcome {
    Outcome {
        success: true,
        status: "exit status: 0".into(),
        command: "(synthetic)".into(),
        stderr: String::new(),
        input: Vec::new(),
        link: Link::Raw,
        out_frames: Vec::new(),
        out: packets.into_iter().enumerate().map(|(i, data)| Rec { ts: ts(i as u64), data }).collect(),
        drops: Vec::new(),
        stats: Value::Null,
        sessions: Value::Array(Vec::new()),
    }
}

#[test]
#[should_panic(expected = "left outward with an internal source")]
fn the_leak_check_catches_an_internal_source() {
    assert_nothing_leaks(&synthetic(vec![udp(ep(A, 5000), ep(R, 53), b"untranslated")]));
}

#[test]
#[should_panic(expected = "embedding an internal address")]
fn the_leak_check_catches_an_internal_address_inside_an_icmp_error() {
    let about = udp(ep(R, 53), ep(A, 5000), b"answer");
    assert_nothing_leaks(&synthetic(vec![icmp_error(ip(EXT), ip(R), ICMP_DEST_UNREACHABLE, 3, &about)]));
}

#[test]
fn inside_to_multicast_broadcast_and_reserved_destinations_never_leaves_with_an_internal_source() {
    let mut s = Scenario::new();
    let unroutable = ["224.0.0.251", "239.255.255.250", "255.255.255.255", "240.0.0.1", "127.0.0.1"];
    for (i, dst) in unroutable.iter().enumerate() {
        s.at(i as u64, udp(ep(A, 5353), ep(dst, 5353), b"mdns"));
    }
    let last = unroutable.len() as u64;
    s.at(last, udp(ep(A, 5353), ep(R, 53), b"query"));
    let o = s.run();
    for i in 0..last {
        o.assert_dropped(i);
    }
    assert_eq!(o.fwd(last).src(), ip(EXT));
    assert_eq!(o.dropped("unroutable_destination"), last, "{}", o.context());
    assert_nothing_leaks(&o);
}
