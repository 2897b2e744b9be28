//! Endpoint-independent mapping (RFC 4787 REQ-1, RFC 5382 REQ-1), port choice, pooling.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use super::*;
use crate::{ExternalAddress, PortAllocation, Protocol, StaticMapping};

#[test]
fn udp_tcp_icmp_keep_one_external_endpoint_for_every_destination() {
    let nat = nat();
    let a = forward(&nat, 1.0, udp(INSIDE_A, 5000, WAN1, 53), Direction::Outbound);
    let b = forward(&nat, 1.1, udp(INSIDE_A, 5000, FAR, 9999), Direction::Outbound);
    assert_eq!(a.src, EXT);
    assert_eq!((a.src, a.sport), (b.src, b.sport), "same external endpoint for two destinations");
    assert_eq!((b.dst, b.dport), (FAR, 9999), "destination untouched");

    let t1 = forward(&nat, 1.2, tcp(INSIDE_A, 6000, WAN1, 80, "S"), Direction::Outbound);
    let t2 = forward(&nat, 1.3, tcp(INSIDE_A, 6000, FAR, 443, "S"), Direction::Outbound);
    assert_eq!(t1.sport, t2.sport);

    let i1 = forward(&nat, 1.4, echo_request(INSIDE_A, WAN1, 77, 1), Direction::Outbound);
    let i2 = forward(&nat, 1.5, echo_request(INSIDE_A, FAR, 77, 1), Direction::Outbound);
    assert_eq!(i1.sport, i2.sport, "the ICMP identifier is mapped endpoint-independently");
    assert_eq!(i1.src, EXT);
}

#[test]
fn distinct_internal_endpoints_get_distinct_external_ports_inside_the_range() {
    let mut c = config();
    c.external_addresses[0].port_start = 40000;
    c.external_addresses[0].port_end = 40099;
    let nat = Nat::new(c).unwrap();
    let mut ports = HashSet::new();
    for i in 0..100u16 {
        let s = forward(&nat, 1.0, udp(INSIDE_A, 1000 + i, WAN1, 53), Direction::Outbound);
        assert!((40000..=40099).contains(&s.sport), "port {} outside the range", s.sport);
        assert!(ports.insert(s.sport), "port {} given twice", s.sport);
    }
    assert_eq!(dropped(&nat, 1.0, udp(INSIDE_A, 2000, WAN1, 53)), crate::DropReason::PortsExhausted);
    assert_eq!(nat.stats().dropped(crate::DropReason::PortsExhausted), 1);
}

#[test]
fn never_allocates_a_static_mapping_port() {
    let mut c = config();
    c.external_addresses[0].port_start = 40000;
    c.external_addresses[0].port_end = 40003;
    for port in [40000, 40002] {
        c.static_mappings.push(StaticMapping {
            protocol: Protocol::Udp,
            external_address: Ipv4Addr::UNSPECIFIED,
            external_port: port,
            internal_address: INSIDE_B.into(),
            internal_port: port,
            remote_prefix: "0.0.0.0/0".parse().unwrap(),
        });
    }
    let nat = Nat::new(c).unwrap();
    let p1 = forward(&nat, 1.0, udp(INSIDE_A, 1, WAN1, 53), Direction::Outbound).sport;
    let p2 = forward(&nat, 1.0, udp(INSIDE_A, 2, WAN1, 53), Direction::Outbound).sport;
    let mut got = [p1, p2];
    got.sort_unstable();
    assert_eq!(got, [40001, 40003]);
    assert_eq!(dropped(&nat, 1.0, udp(INSIDE_A, 3, WAN1, 53)), crate::DropReason::PortsExhausted);
}

#[test]
fn preserve_keeps_the_internal_port_when_free_and_falls_back_when_taken() {
    let mut c = config();
    c.port_allocation = PortAllocation::Preserve;
    let nat = Nat::new(c).unwrap();
    assert_eq!(forward(&nat, 1.0, udp(INSIDE_A, 5000, WAN1, 53), Direction::Outbound).sport, 5000);
    let other = forward(&nat, 1.0, udp(INSIDE_B, 5000, WAN1, 53), Direction::Outbound).sport;
    assert_ne!(other, 5000, "taken by A: B falls back to a random port");
    assert!(other >= 1024);
    // Below the range: not preserved (RFC 4787 REQ-3a keeps port classes apart).
    assert!(forward(&nat, 1.0, udp(INSIDE_A, 53, WAN1, 53), Direction::Outbound).sport >= 1024);
    // ICMP identifiers too.
    assert_eq!(forward(&nat, 1.0, echo_request(INSIDE_A, WAN1, 4242, 1), Direction::Outbound).sport, 4242);
}

#[test]
fn random_ports_depend_on_the_seed_and_nothing_else() {
    let ports = |seed: u64| {
        let mut c = config();
        c.seed = seed;
        let nat = Nat::new(c).unwrap();
        (0..8)
            .map(|i| forward(&nat, 1.0, udp(INSIDE_A, 5000 + i, WAN1, 53), Direction::Outbound).sport)
            .collect::<Vec<_>>()
    };
    assert_eq!(ports(7), ports(7), "same seed, same ports");
    assert_ne!(ports(7), ports(8), "another seed, other ports");
}

#[test]
fn paired_pooling_gives_one_host_one_external_address() {
    let mut c = config();
    c.external_addresses.push(ExternalAddress::new(Ipv4Addr::new(203, 0, 113, 2)));
    c.external_addresses.push(ExternalAddress::new(Ipv4Addr::new(203, 0, 113, 3)));
    let nat = Nat::new(c).unwrap();
    let first = forward(&nat, 1.0, udp(INSIDE_A, 1, WAN1, 53), Direction::Outbound).src;
    for i in 2..20 {
        assert_eq!(forward(&nat, 1.0, udp(INSIDE_A, i, FAR, 53), Direction::Outbound).src, first);
        assert_eq!(forward(&nat, 1.0, tcp(INSIDE_A, i, FAR, 80, "S"), Direction::Outbound).src, first);
    }
}

#[test]
fn inbound_reply_reaches_the_internal_endpoint_and_round_trips() {
    let nat = nat();
    let out = forward(&nat, 1.0, udp(INSIDE_A, 5000, WAN1, 53), Direction::Outbound);
    let back = forward(&nat, 1.1, udp(WAN1, 53, EXT, out.sport), Direction::Inbound);
    assert_eq!((back.src, back.sport, back.dst, back.dport), (WAN1, 53, INSIDE_A, 5000));
    let o = forward(&nat, 1.2, echo_request(INSIDE_A, WAN1, 9, 1), Direction::Outbound);
    let r = forward(&nat, 1.3, echo_reply(WAN1, EXT, o.sport, 1), Direction::Inbound);
    assert_eq!((r.dst, r.dport), (INSIDE_A, 9));
    let stats = nat.stats();
    assert_eq!((stats.translated_out, stats.translated_in, stats.sessions_created), (2, 2, 2));
}

#[test]
fn a_tcp_mapping_does_not_admit_udp() {
    // RFC 7857 §3: mappings are protocol-dependent.
    let nat = nat();
    let out = forward(&nat, 1.0, tcp(INSIDE_A, 5000, WAN1, 80, "S"), Direction::Outbound);
    assert_eq!(dropped(&nat, 1.1, udp(WAN1, 80, EXT, out.sport)), crate::DropReason::NoMapping);
}

#[test]
fn traffic_that_is_not_the_nats_business_passes_unchanged() {
    let nat = nat();
    for mut p in [udp(WAN1, 1, FAR, 2), udp(INSIDE_A, 1, INSIDE_B, 2)] {
        let before = p.clone();
        assert_eq!(run(&nat, 1.0, &mut p), Verdict::Pass);
        assert_eq!(p, before);
    }
    // Pinging the NAT's own address: the host answers, the engine leaves it alone.
    let mut ping = echo_request(WAN1, EXT, 1, 1);
    assert_eq!(run(&nat, 1.0, &mut ping), Verdict::Pass);
    assert_eq!(nat.session_count(), 0);
}

#[test]
fn inside_to_multicast_broadcast_and_reserved_destinations_is_dropped_and_counted() {
    // Passed on unchanged, these would leave with the internal source address.
    let nat = nat();
    let unroutable =
        [[224, 0, 0, 251], [239, 255, 255, 250], [255, 255, 255, 255], [240, 0, 0, 1], [127, 0, 0, 1], [0, 1, 2, 3]];
    for dst in unroutable {
        assert_eq!(
            dropped(&nat, 1.0, udp(INSIDE_A, 5353, dst, 5353)),
            crate::DropReason::UnroutableDestination,
            "{dst:?}"
        );
    }
    let mut ping = echo_request(INSIDE_A, [224, 0, 0, 1], 7, 1);
    assert_eq!(run(&nat, 1.0, &mut ping), Verdict::Drop(crate::DropReason::UnroutableDestination));
    assert_eq!(nat.stats().dropped["unroutable_destination"], unroutable.len() as u64 + 1);
    assert_eq!(nat.session_count(), 0);
    // Outside hosts sending to multicast are not the NAT's business.
    let mut from_outside = udp(WAN1, 5353, [224, 0, 0, 251], 5353);
    assert_eq!(run(&nat, 1.0, &mut from_outside), Verdict::Pass);
}

#[test]
fn with_unmatched_inbound_host_packets_without_a_mapping_are_the_hosts_and_not_drops() {
    // The daemon's setting: its external addresses are the host's, so an inbound packet that
    // belongs to no mapping is a reply to the host's own connection.
    let mut config = config();
    config.unmatched_inbound = crate::UnmatchedInbound::Host;
    let nat = crate::Nat::new(config).unwrap();
    let mut reply = udp(WAN1, 53, EXT, 40_000);
    let before = reply.clone();
    assert_eq!(run(&nat, 1.0, &mut reply), Verdict::Pass);
    assert_eq!(reply, before);
    let out = forward(&nat, 2.0, udp(INSIDE_A, 5000, WAN1, 53), Direction::Outbound);
    // A mapped port still belongs to the NAT, and its filtering still applies.
    assert_eq!(dropped(&nat, 2.1, udp(FAR, 53, EXT, out.sport)), crate::DropReason::Filtered);
    forward(&nat, 2.2, udp(WAN1, 53, EXT, out.sport), Direction::Inbound);
    let stats = nat.stats();
    assert_eq!(stats.dropped["no_mapping"], 0);
    assert_eq!(stats.dropped["filtered"], 1);
}
