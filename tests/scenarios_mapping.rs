//! Mapping (design §2 "Mapping", "Direction"): endpoint-independent mapping for UDP, TCP and
//! ICMP echo; distinct external ports for distinct internal endpoints; --port-range;
//! static-mapping ports are never allocated; `preserve` keeps the port; seeded allocation.

mod common;

use std::collections::BTreeSet;

use common::*;

const A: &str = "10.100.10.11";
const B: &str = "10.100.10.12";
const R1: &str = "198.51.100.10";
const R2: &str = "198.51.100.20";
const R3: &str = "203.0.113.10";

/// The outbound packet at `ms`: source rewritten to the external address, destination and
/// payload untouched.
fn assert_snat(o: &Outcome, ms: u64) -> u16 {
    let input = View::new(o.input_at(ms));
    let v = o.fwd(ms);
    assert_eq!(v.src(), ip(EXT), "outbound source address{}", o.context());
    assert_eq!(v.dst(), input.dst(), "outbound destination address{}", o.context());
    assert_eq!(v.proto(), input.proto());
    assert_eq!(v.total_len(), input.total_len());
    if v.proto() == PROTO_ICMP {
        assert_eq!(v.icmp_type(), input.icmp_type());
        assert_eq!(v.icmp_seq(), input.icmp_seq(), "echo sequence number");
    } else {
        assert_eq!(v.dport(), input.dport(), "outbound destination port{}", o.context());
    }
    assert_eq!(v.l4_payload(), input.l4_payload(), "payload");
    v.src_key()
}

#[test]
fn udp_endpoint_independent_mapping_same_port_for_every_destination() {
    let mut s = Scenario::new();
    s.at(0, udp(ep(A, 5000), ep(R1, 53), b"one"));
    s.at(10, udp(ep(A, 5000), ep(R2, 53), b"two"));
    s.at(20, udp(ep(A, 5000), ep(R3, 4000), b"three"));
    s.at(30, udp(ep(A, 5000), ep(R1, 54), b"four"));
    let o = s.run();
    let p = assert_snat(&o, 0);
    for ms in [10, 20, 30] {
        assert_eq!(assert_snat(&o, ms), p, "EIM: same internal endpoint, new destination, same external port");
    }
    assert!(p >= 1024, "default port range is 1024-65535, got {p}");
    assert_eq!(o.stat("translated_out"), 4);
    o.assert_drops(&[]);
}

#[test]
fn tcp_endpoint_independent_mapping_same_port_for_every_destination() {
    let mut s = Scenario::new();
    s.at(0, tcp(ep(A, 40123), ep(R1, 80), TCP_SYN, 1000, 0, b""));
    s.at(10, tcp(ep(A, 40123), ep(R2, 443), TCP_SYN, 2000, 0, b""));
    s.at(20, tcp(ep(A, 40123), ep(R3, 8080), TCP_SYN, 3000, 0, b""));
    let o = s.run();
    let p = assert_snat(&o, 0);
    assert_eq!(assert_snat(&o, 10), p);
    assert_eq!(assert_snat(&o, 20), p);
    let v = o.fwd(10);
    assert_eq!(v.tcp_flags(), TCP_SYN);
    assert_eq!(v.tcp_seq(), 2000, "sequence numbers are not the NAT's business");
}

#[test]
fn icmp_echo_endpoint_independent_mapping_same_id_for_every_destination() {
    let mut s = Scenario::new();
    s.at(0, icmp_echo(ip(A), ip(R1), true, 0x1234, 1, b"ping"));
    s.at(10, icmp_echo(ip(A), ip(R2), true, 0x1234, 2, b"ping"));
    s.at(20, icmp_echo(ip(A), ip(R3), true, 0x1234, 3, b"ping"));
    let o = s.run();
    let id = assert_snat(&o, 0);
    assert_eq!(assert_snat(&o, 10), id, "ICMP id plays the role of the port: EIM keeps it");
    assert_eq!(assert_snat(&o, 20), id);
}

#[test]
fn two_internal_endpoints_never_share_an_external_port() {
    // 40 UDP + 40 TCP + 20 ICMP internal endpoints, with colliding internal ports across
    // hosts (A:5000 and B:5000) and the same destination: every external (port, protocol)
    // distinct.
    let mut s = Scenario::new();
    let mut t = 0;
    for i in 0..20u16 {
        for host in [A, B] {
            s.at(t, udp(ep(host, 5000 + i), ep(R1, 53), b"x"));
            t += 1;
            s.at(t, tcp(ep(host, 5000 + i), ep(R1, 80), TCP_SYN, 1, 0, b""));
            t += 1;
        }
        let host = if i % 2 == 0 { A } else { B };
        s.at(t, icmp_echo(ip(host), ip(R1), true, 0x0100 + i / 2, 1, b""));
        t += 1;
    }
    let o = s.run();
    let mut seen = BTreeSet::new();
    for ms in 0..t {
        let v = o.fwd(ms);
        assert_eq!(v.src(), ip(EXT));
        assert!(
            seen.insert((v.proto(), v.src_key())),
            "external ({}, {}) given twice{}",
            v.proto(),
            v.src_key(),
            o.context()
        );
    }
    assert_eq!(o.sessions().len() as u64, t, "one session per flow in --sessions-json");
}

#[test]
fn external_ports_stay_inside_port_range() {
    let mut s = Scenario::new();
    s.args(&["--port-range", "40000-40099"]);
    let mut t = 0;
    for i in 0..30u16 {
        s.at(t, udp(ep(A, 1000 + i), ep(R1, 53), b"x"));
        s.at(t + 1, tcp(ep(B, 60000 + i), ep(R1, 80), TCP_SYN, 7, 0, b""));
        t += 2;
    }
    let o = s.run();
    let mut seen = BTreeSet::new();
    for ms in 0..t {
        let p = assert_snat(&o, ms);
        assert!((40000..=40099).contains(&p), "port {p} outside --port-range 40000-40099{}", o.context());
        assert!(seen.insert((o.fwd(ms).proto(), p)));
    }
}

#[test]
fn static_mapping_port_is_never_allocated() {
    // Ten ports, one owned by a UDP static mapping: nine UDP flows get the nine others, the
    // tenth finds the range exhausted rather than taking 40005.
    let mut s = Scenario::new();
    s.args(&["--port-range", "40000-40009", "--static-mapping", "udp:0.0.0.0:40005=10.100.10.50:53"]);
    for i in 0..10u16 {
        s.at(u64::from(i), udp(ep(A, 2000 + i), ep(R1, 53), b"x"));
    }
    let o = s.run();
    let mut ports = BTreeSet::new();
    for ms in 0..9 {
        let p = assert_snat(&o, ms);
        assert_ne!(p, 40005, "allocated the static mapping's port{}", o.context());
        assert!((40000..=40009).contains(&p));
        ports.insert(p);
    }
    assert_eq!(ports.len(), 9);
    o.assert_dropped(9);
    o.assert_drops(&[("ports_exhausted", 1)]);
}

#[test]
fn preserve_policy_does_not_take_a_static_mapping_port() {
    let mut s = Scenario::new();
    s.args(&["--port-allocation", "preserve", "--static-mapping", "udp:0.0.0.0:40005=10.100.10.50:53"]);
    s.at(0, udp(ep(A, 40005), ep(R1, 53), b"x"));
    let o = s.run();
    let p = assert_snat(&o, 0);
    assert_ne!(p, 40005, "preserve must fall back when a static mapping owns the port");
    assert!(p >= 1024);
}

#[test]
fn preserve_policy_keeps_the_internal_port_and_icmp_id() {
    let mut s = Scenario::new();
    s.args(&["--port-allocation", "preserve"]);
    s.at(0, udp(ep(A, 40123), ep(R1, 53), b"x"));
    s.at(1, tcp(ep(A, 51515), ep(R1, 80), TCP_SYN, 5, 0, b""));
    s.at(2, icmp_echo(ip(A), ip(R1), true, 4321, 1, b""));
    // Same internal port on another host: the port is taken, so fall back to another one.
    s.at(3, udp(ep(B, 40123), ep(R1, 53), b"y"));
    // Internal port outside the range (1024-65535): fall back to a port inside it.
    s.at(4, udp(ep(B, 500), ep(R1, 53), b"z"));
    // Same for an ICMP id below the range.
    s.at(5, icmp_echo(ip(B), ip(R1), true, 7, 1, b""));
    let o = s.run();
    let id = assert_snat(&o, 5);
    assert!(id >= 1024, "preserve kept ICMP id {id}, outside the range 1024-65535");
    assert_eq!(assert_snat(&o, 0), 40123);
    assert_eq!(assert_snat(&o, 1), 51515);
    assert_eq!(assert_snat(&o, 2), 4321);
    let p = assert_snat(&o, 3);
    assert_ne!(p, 40123, "two internal endpoints share external port 40123{}", o.context());
    assert!(p >= 1024);
    let p = assert_snat(&o, 4);
    assert!(p >= 1024, "preserve fell back to {p}, outside the range 1024-65535");
}

#[test]
fn preserve_policy_falls_back_outside_a_narrow_range() {
    let mut s = Scenario::new();
    s.args(&["--port-allocation", "preserve", "--port-range", "40000-40099"]);
    s.at(0, udp(ep(A, 40050), ep(R1, 53), b"x"));
    s.at(1, udp(ep(A, 5000), ep(R1, 53), b"x"));
    let o = s.run();
    assert_eq!(assert_snat(&o, 0), 40050);
    let p = assert_snat(&o, 1);
    assert!((40000..=40099).contains(&p), "fallback port {p} outside the range");
}

fn seeded_run(seed: &str) -> Outcome {
    let mut s = Scenario::new();
    s.args(&["--seed", seed]);
    for i in 0..20u16 {
        s.at(u64::from(i) * 2, udp(ep(A, 3000 + i), ep(R1, 53), b"x"));
        s.at(u64::from(i) * 2 + 1, tcp(ep(B, 3000 + i), ep(R2, 80), TCP_SYN, 1, 0, b""));
    }
    s.run()
}

#[test]
fn same_seed_same_output_different_seed_different_ports() {
    let a = seeded_run("1");
    let b = seeded_run("1");
    assert_eq!(a.out, b.out, "same input, same seed: byte-identical output");
    assert_eq!(a.sessions().len(), 40);
    let c = seeded_run("2");
    // 40 ports drawn from 64512: two seeds giving the same 40 ports means the seed is not
    // used (the contract says only "may differ"; equal draws are astronomically unlikely).
    let ports = |o: &Outcome| (0..40).map(|ms| o.fwd(ms).src_key()).collect::<Vec<_>>();
    assert_ne!(ports(&a), ports(&c), "--seed 1 and --seed 2 allocated the same 40 ports");
}

#[test]
fn sessions_json_has_the_netnatsession_fields() {
    let mut s = Scenario::new();
    s.at(0, udp(ep(A, 5000), ep(R1, 53), b"x"));
    s.at(1000, tcp(ep(B, 6000), ep(R2, 443), TCP_SYN, 1, 0, b""));
    s.at(65_000, icmp_echo(ip(A), ip(R1), true, 0x77, 1, b""));
    s.at(66_000, udp(ep(A, 5000), ep(R1, 53), b"later packets do not change CreationTime"));
    let o = s.run();
    let rows = o.sessions();
    assert_eq!(rows.len(), 3, "{:#}", o.sessions);
    let find = |proto: u64| {
        rows.iter()
            .find(|r| r["Protocol"].as_u64() == Some(proto))
            .unwrap_or_else(|| panic!("no session with Protocol {proto} (a number): {:#}", o.sessions))
    };
    // CreationTime is the capture time of the packet that created the session (the packet
    // timestamps are the clock); the scenario epoch is 2023-11-14T22:13:20Z. Its exact
    // format is not in the contract: the date and the time to the second must be in it.
    for (proto, ms, int_src, int_port, rem, rem_port, created) in [
        (17, 0, A, 5000, R1, 53, "22:13:20"),
        (6, 1000, B, 6000, R2, 443, "22:13:21"),
        (1, 65_000, A, 0x77, R1, 0, "22:14:25"),
    ] {
        let r = find(proto);
        let ext_port = o.fwd(ms).src_key();
        assert!(r["NatName"].is_string(), "NatName: {r}");
        let ct = r["CreationTime"].as_str().unwrap_or_else(|| panic!("CreationTime is not a string: {r}"));
        assert!(
            ct.contains("2023-11-14") && ct.contains(created),
            "CreationTime {ct:?}, expected 2023-11-14 {created}"
        );
        assert_eq!(r["InternalSourceAddress"], int_src, "{r}");
        assert_eq!(r["InternalSourcePort"], int_port, "{r}");
        assert_eq!(r["InternalDestinationAddress"], rem, "{r}");
        assert_eq!(r["ExternalSourceAddress"], EXT, "{r}");
        assert_eq!(r["ExternalSourcePort"], ext_port, "{r}");
        assert_eq!(r["ExternalDestinationAddress"], rem, "{r}");
        if proto != 1 {
            // ICMP has no destination port; its value is not specified.
            assert_eq!(r["InternalDestinationPort"], rem_port, "{r}");
            assert_eq!(r["ExternalDestinationPort"], rem_port, "{r}");
        }
    }
}

#[test]
fn not_the_nats_business_passes_unchanged() {
    // Decision (design §2 "Direction"): a packet neither from the internal prefix (to
    // outside) nor to an external address passes unchanged and appears in the output.
    let mut s = Scenario::new();
    s.at(0, udp(ep(R1, 5000), ep(R2, 53), b"transit"));
    s.at(1, tcp(ep("203.0.113.10", 80), ep("198.51.100.30", 1234), TCP_ACK, 1, 1, b"x"));
    // Internal to internal: the destination is inside the prefix, so it is not outbound.
    s.at(2, udp(ep(A, 5000), ep(B, 5000), b"lan"));
    // To another address of the external /24 that is not the NAT's.
    s.at(3, udp(ep(R1, 53), ep("203.0.113.2", 5000), b"neighbour"));
    let o = s.run();
    for ms in 0..4 {
        o.assert_passed_unchanged(ms);
    }
    assert_eq!(o.stat("passed"), 4);
    assert_eq!(o.sessions().len(), 0, "passing traffic creates no session");
}

#[test]
fn unsolicited_inbound_is_dropped_as_no_mapping() {
    // Decision: inbound to the external address with no mapping is dropped (`no_mapping`).
    let mut s = Scenario::new();
    s.at(0, udp(ep(R1, 53), ep(EXT, 40000), b"hello?"));
    s.at(1, tcp(ep(R1, 4444), ep(EXT, 22), TCP_SYN, 1, 0, b""));
    s.at(2, icmp_echo(ip(R1), ip(EXT), false, 0x99, 1, b"unsolicited reply"));
    let o = s.run();
    for ms in 0..3 {
        o.assert_dropped(ms);
    }
    o.assert_drops(&[("no_mapping", 3)]);
}

#[test]
fn nothing_leaves_with_an_internal_source() {
    let mut s = Scenario::new();
    let mut t = 0;
    for i in 0..10u8 {
        let host = format!("10.100.{i}.{}", 10 + i);
        s.at(t, udp(ep(&host, 5000), ep(R1, 53), b"x"));
        s.at(t + 1, icmp_echo(ip(&host), ip(R2), true, 1, 1, b""));
        t += 2;
    }
    let o = s.run();
    for r in &o.out {
        let v = View::new(&r.data);
        assert_eq!(v.src(), ip(EXT), "an outbound packet left with source {}", v.src());
    }
    assert_eq!(o.out.len(), 20);
}

#[test]
fn ethernet_link_type_translates_and_keeps_the_link_header() {
    let mut s = Scenario::new();
    s.link = Link::Ethernet;
    s.at(0, udp(ep(A, 5000), ep(R1, 53), b"x"));
    let p = s.learn_port(0);
    s.at(1, udp(ep(R1, 53), ep(EXT, p), b"y"));
    let o = s.run();
    assert_snat(&o, 0);
    let v = o.fwd(1);
    assert_eq!(v.dst_ep(), ep(A, 5000));
    for (_, frame) in &o.out_frames {
        assert_eq!(&frame[..6], &common::pcap::ETH_DST, "destination MAC changed");
        assert_eq!(&frame[6..12], &common::pcap::ETH_SRC, "source MAC changed");
        assert_eq!(&frame[12..14], &[0x08, 0x00]);
    }
}

#[test]
fn ethernet_non_ipv4_frames_pass_unchanged() {
    // Decision: frames that are not IPv4 (here ARP) are not the NAT's business; a replay
    // keeps them like any packet that passes.
    let mut s = Scenario::new();
    s.link = Link::Ethernet;
    s.at(0, udp(ep(A, 5000), ep(R1, 53), b"x"));
    let arp: Vec<u8> =
        [&[0, 1, 8, 0, 6, 4, 0, 1][..], &common::pcap::ETH_SRC, &[10, 100, 10, 11], &[0; 6], &[10, 100, 1, 1]].concat();
    let frame = common::pcap::eth_frame_type(&arp, 0x0806);
    s.other_frames.push((ts(1), frame.clone()));
    let o = s.run();
    assert_snat(&o, 0);
    assert!(o.out_frames.iter().any(|(t, f)| *t == ts(1) && *f == frame), "ARP frame not passed{}", o.context());
}

#[test]
fn pcapng_input_is_translated_into_a_pcap() {
    // Microsecond (default) and nanosecond interface resolutions; timestamps (checked by the
    // harness against the input's) survive both.
    for format in [Format::PcapNg, Format::PcapNgNanos] {
        let mut s = Scenario::new();
        s.format = format;
        s.at(0, udp(ep(A, 5000), ep(R1, 53), b"x"));
        s.at(1, icmp_echo(ip(A), ip(R1), true, 9, 1, b""));
        s.at(secs(119.999), udp(ep(A, 5001), ep(R1, 53), b"x"));
        let o = s.run();
        assert_snat(&o, 0);
        assert_snat(&o, 1);
        assert_snat(&o, secs(119.999));
    }
}

#[test]
fn udp_zero_checksum_stays_zero() {
    let mut s = Scenario::new();
    s.at(0, udp_no_checksum(ep(A, 5000), ep(R1, 53), b"no checksum"));
    let p = s.learn_port(0);
    s.at(1, udp_no_checksum(ep(R1, 53), ep(EXT, p), b"reply"));
    let o = s.run();
    assert_snat(&o, 0);
    assert_eq!(o.fwd(0).l4_checksum(), 0, "design §2: a UDP checksum of zero stays zero");
    assert_eq!(o.fwd(1).dst_ep(), ep(A, 5000));
    assert_eq!(o.fwd(1).l4_checksum(), 0);
}

#[test]
fn dropped_packets_go_to_the_drops_file_as_they_came_in() {
    let mut s = Scenario::new();
    s.args(&["--port-range", "40000-40000"]);
    s.at(0, udp(ep(A, 5000), ep(R1, 53), b"gets the only port"));
    s.at(1, udp(ep(B, 5000), ep(R1, 53), b"finds none"));
    s.at(2, udp(ep(R2, 53), ep(EXT, 40000), b"filtered"));
    s.at(3, tcp(ep(R2, 1), ep(EXT, 80), TCP_SYN, 1, 0, b""));
    let o = s.run();
    o.assert_drops(&[("ports_exhausted", 1), ("filtered", 1), ("no_mapping", 1)]);
    for ms in [1, 2, 3] {
        let d = o.drops.iter().find(|r| r.ts == ts(ms)).expect("in --drops");
        assert_eq!(d.data, o.input_at(ms), "--drops holds the packet as it came in, untranslated");
    }
}

#[test]
fn timestamps_going_backwards_do_not_break_the_replay() {
    // Merged captures are not always sorted. The engine's clock must not go backwards
    // (design: `now` never goes backwards), so the replay has to cope; every packet is still
    // translated and keeps its own timestamp.
    let mut s = Scenario::new();
    s.strict_order = false;
    s.at(10_000, udp(ep(A, 5000), ep(R1, 53), b"first in file"));
    s.recs.push(Rec { ts: ts(5_000), data: udp(ep(A, 5001), ep(R1, 53), b"earlier timestamp") });
    s.recs.push(Rec { ts: ts(11_000), data: udp(ep(A, 5000), ep(R1, 53), b"back to normal") });
    let o = s.run();
    let p = assert_snat(&o, 10_000);
    assert_snat(&o, 5_000);
    assert_eq!(assert_snat(&o, 11_000), p);
    let order: Vec<_> = o.out.iter().map(|r| r.ts).collect();
    assert_eq!(order, vec![ts(10_000), ts(5_000), ts(11_000)], "output keeps input order");
}

#[test]
fn ip_options_are_kept_and_the_transport_header_found_behind_them() {
    // IHL 6: four bytes of options (NOP NOP NOP EOL) before the UDP header; then a TCP
    // segment with IHL 7.
    let with_options = |p: Vec<u8>, words: usize| {
        let mut v = p[..20].to_vec();
        v.extend(std::iter::repeat_n([1u8, 1, 1, 0], words).flatten());
        v.extend_from_slice(&p[20..]);
        v[0] = 0x45 + words as u8;
        let l = v.len() as u16;
        v[2..4].copy_from_slice(&l.to_be_bytes());
        fix_ip_checksum(&mut v);
        v
    };
    let mut s = Scenario::new();
    s.at(0, with_options(udp(ep(A, 5000), ep(R1, 53), b"options"), 1));
    s.at(1, with_options(tcp(ep(A, 5001), ep(R1, 80), TCP_SYN, 1, 0, b""), 2));
    let p = s.learn_port(0);
    s.at(2, with_options(udp(ep(R1, 53), ep(EXT, p), b"answer"), 1));
    let o = s.run();
    let v = o.fwd(0);
    assert_eq!(v.ihl_len(), 24);
    assert_eq!(&v.bytes[20..24], &[1, 1, 1, 0], "options kept");
    assert_eq!(v.src(), ip(EXT));
    assert_eq!(v.dst_ep(), ep(R1, 53));
    assert_eq!(v.l4_payload(), b"options");
    let v = o.fwd(1);
    assert_eq!(v.ihl_len(), 28);
    assert_eq!((v.src(), v.dport()), (ip(EXT), 80));
    let v = o.fwd(2);
    assert_eq!(v.dst_ep(), ep(A, 5000));
    assert_eq!(v.l4_payload(), b"answer");
}
