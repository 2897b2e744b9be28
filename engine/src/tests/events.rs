//! Session events (`Nat::set_events`, `Nat::drain_events`): each change of the table is
//! reported once, with its endpoints and reason, and the events replayed into a set give the
//! session table itself.

use std::collections::BTreeSet;
use std::net::SocketAddrV4;

use proptest::prelude::*;

use super::*;
use crate::events::{EndReason, Event, EventKind};
use crate::{DropReason, FilteringBehavior, Instant, Protocol, StaticMapping};

fn ep(a: [u8; 4], port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(a.into(), port)
}

fn drain(nat: &Nat) -> Vec<Event> {
    let mut v = Vec::new();
    nat.drain_events(&mut v);
    v
}

fn kinds(events: &[Event]) -> Vec<EventKind> {
    events.iter().map(|e| e.kind).collect()
}

fn with_events(c: crate::NatConfig) -> Nat {
    let nat = Nat::new(c).unwrap();
    nat.set_events(true);
    nat
}

#[test]
fn events_are_off_unless_asked_for() {
    let nat = nat();
    forward(&nat, 1.0, udp(INSIDE_A, 5000, WAN1, 53), Direction::Outbound);
    nat.handle_timeout(Instant::from_secs(500));
    assert!(drain(&nat).is_empty());
}

#[test]
fn a_flow_reports_its_mapping_and_sessions_once_and_established_packets_nothing() {
    let nat = with_events(config());
    let ext = forward(&nat, 1.0, udp(INSIDE_A, 5000, WAN1, 53), Direction::Outbound).sport;
    let e = drain(&nat);
    assert_eq!(kinds(&e), [EventKind::MappingCreated, EventKind::SessionCreated]);
    assert_eq!(e[0].internal, ep(INSIDE_A, 5000));
    assert_eq!(e[0].external, Some(ep(EXT, ext)));
    assert_eq!((e[0].remote, e[1].remote), (None, Some(ep(WAN1, 53))));
    assert_eq!((e[1].time, e[1].protocol), (Instant::from_secs(1), Protocol::Udp));
    for i in 0..50 {
        forward(&nat, 2.0 + f64::from(i) / 100.0, udp(INSIDE_A, 5000, WAN1, 53), Direction::Outbound);
        forward(&nat, 2.0, udp(WAN1, 53, EXT, ext), Direction::Inbound);
    }
    assert!(drain(&nat).is_empty(), "established packets make no events");
    forward(&nat, 3.0, udp(INSIDE_A, 5000, FAR, 53), Direction::Outbound);
    assert_eq!(kinds(&drain(&nat)), [EventKind::SessionCreated]);
    // Both expire (UDP 120 s) and the sweep takes the mapping with them.
    nat.handle_timeout(Instant::from_secs(200));
    let e = drain(&nat);
    assert_eq!(
        kinds(&e),
        [
            EventKind::SessionDeleted(EndReason::IdleTimeout),
            EventKind::SessionDeleted(EndReason::IdleTimeout),
            EventKind::MappingDeleted(EndReason::IdleTimeout)
        ]
    );
    assert!(e.iter().all(|x| x.time == Instant::from_secs(200) && x.external == Some(ep(EXT, ext))));
    let remotes: BTreeSet<_> = e[..2].iter().map(|x| x.remote.unwrap()).collect();
    assert_eq!(remotes, [ep(WAN1, 53), ep(FAR, 53)].into());
}

#[test]
fn a_closed_tcp_connection_ends_as_tcp_closed() {
    let nat = with_events(config());
    let ext = forward(&nat, 1.0, tcp_seq(INSIDE_A, 6000, WAN1, 80, "S", 100), Direction::Outbound).sport;
    forward(&nat, 1.1, tcp_seq(WAN1, 80, EXT, ext, "SA", 500), Direction::Inbound);
    forward(&nat, 1.2, tcp_seq(INSIDE_A, 6000, WAN1, 80, "A", 101), Direction::Outbound);
    forward(&nat, 1.3, tcp_seq(INSIDE_A, 6000, WAN1, 80, "FA", 101), Direction::Outbound);
    forward(&nat, 1.4, tcp_seq(WAN1, 80, EXT, ext, "FA", 501), Direction::Inbound);
    drain(&nat);
    nat.handle_timeout(Instant::from_secs(400));
    assert_eq!(
        kinds(&drain(&nat)),
        [EventKind::SessionDeleted(EndReason::TcpClosed), EventKind::MappingDeleted(EndReason::TcpClosed)]
    );
}

#[test]
fn refusals_by_limits_and_ports_are_reported_with_who_asked() {
    let mut c = config();
    c.limits.max_sessions_per_host = 1;
    let nat = with_events(c);
    forward(&nat, 1.0, udp(INSIDE_A, 5000, WAN1, 53), Direction::Outbound);
    drain(&nat);
    assert_eq!(dropped(&nat, 2.0, udp(INSIDE_A, 5001, WAN1, 53)), DropReason::HostSessionLimit);
    let e = drain(&nat);
    assert_eq!(kinds(&e), [EventKind::LimitReached(DropReason::HostSessionLimit)]);
    assert_eq!((e[0].internal, e[0].external, e[0].remote), (ep(INSIDE_A, 5001), None, Some(ep(WAN1, 53))));

    let mut c = config();
    c.external_addresses[0].port_start = 40000;
    c.external_addresses[0].port_end = 40000;
    let nat = with_events(c);
    forward(&nat, 1.0, udp(INSIDE_A, 5000, WAN1, 53), Direction::Outbound);
    drain(&nat);
    assert_eq!(dropped(&nat, 2.0, udp(INSIDE_B, 5000, WAN1, 53)), DropReason::PortsExhausted);
    assert_eq!(kinds(&drain(&nat)), [EventKind::PortsExhausted]);

    // Inbound: the mapping's inbound cap, reported with the mapping's endpoints.
    let mut c = config();
    c.udp_filtering = FilteringBehavior::EndpointIndependent;
    c.limits.max_inbound_sessions_per_mapping = 1;
    let nat = with_events(c);
    let ext = forward(&nat, 1.0, udp(INSIDE_A, 5000, WAN1, 53), Direction::Outbound).sport;
    forward(&nat, 2.0, udp(WAN2, 9, EXT, ext), Direction::Inbound);
    assert_eq!(dropped(&nat, 2.0, udp(WAN2, 10, EXT, ext)), DropReason::InboundSessionLimit);
    let e = drain(&nat);
    assert_eq!(
        kinds(&e),
        [
            EventKind::MappingCreated,
            EventKind::SessionCreated,
            EventKind::SessionCreated,
            EventKind::LimitReached(DropReason::InboundSessionLimit)
        ]
    );
    assert_eq!(
        (e[3].internal, e[3].external, e[3].remote),
        (ep(INSIDE_A, 5000), Some(ep(EXT, ext)), Some(ep(WAN2, 10)))
    );
}

#[test]
fn static_mappings_reconfiguration_and_clearing_report_their_sessions() {
    let mut c = config();
    c.static_mappings.push(StaticMapping {
        protocol: Protocol::Udp,
        external_address: EXT.into(),
        external_port: 5353,
        internal_address: INSIDE_B.into(),
        internal_port: 53,
        remote_prefix: "0.0.0.0/0".parse().unwrap(),
    });
    let nat = with_events(c.clone());
    forward(&nat, 1.0, udp(WAN1, 999, EXT, 5353), Direction::Inbound);
    let e = drain(&nat);
    assert_eq!(kinds(&e), [EventKind::MappingCreated, EventKind::SessionCreated]);
    assert_eq!(e[1].internal, ep(INSIDE_B, 53));
    forward(&nat, 1.0, udp(INSIDE_A, 5000, WAN1, 53), Direction::Outbound);
    drain(&nat);
    // Removing the static mapping removes its sessions, at the latest time the NAT saw.
    c.static_mappings.clear();
    nat.reconfigure(c).unwrap();
    let e = drain(&nat);
    assert_eq!(
        kinds(&e),
        [EventKind::SessionDeleted(EndReason::Removed), EventKind::MappingDeleted(EndReason::Removed)]
    );
    assert!(e.iter().all(|x| x.internal == ep(INSIDE_B, 53) && x.time == Instant::from_secs(1)));
    nat.clear_sessions();
    let e = drain(&nat);
    assert_eq!(
        kinds(&e),
        [EventKind::SessionDeleted(EndReason::Removed), EventKind::MappingDeleted(EndReason::Removed)]
    );
    assert_eq!(e[0].internal, ep(INSIDE_A, 5000));
}

#[derive(Debug, Clone)]
enum Op {
    Out { host: u8, port: u16, remote: u8 },
    In { remote: u8, rport: u16, pick: u8 },
    Advance(u16),
    Timeout,
}

/// (protocol, internal, remote) of a session row or a session event.
type Key = (u8, SocketAddrV4, SocketAddrV4);

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

    /// The sessions created minus those deleted, by the events, are the session table; the
    /// mappings likewise are the mappings the table holds.
    #[test]
    fn events_replayed_give_the_session_table(
        ops in proptest::collection::vec(prop_oneof![
            4 => (0u8..3, 0u16..3, 0u8..4).prop_map(|(host, port, remote)| Op::Out { host, port, remote }),
            3 => (0u8..4, 0u16..3, any::<u8>()).prop_map(|(remote, rport, pick)| Op::In { remote, rport, pick }),
            1 => (0u16..200).prop_map(Op::Advance),
            1 => Just(Op::Timeout),
        ], 1..80),
        eif: bool,
        per_host in 1usize..6,
    ) {
        let mut c = config();
        c.udp_filtering = if eif { FilteringBehavior::EndpointIndependent } else { FilteringBehavior::AddressDependent };
        c.limits.max_sessions_per_host = per_host;
        c.limits.max_inbound_sessions_per_mapping = 2;
        let nat = with_events(c);
        let remotes = [WAN1, WAN2, FAR, [198, 51, 100, 99]];
        let mut now = 1.0;
        let mut exts: Vec<u16> = Vec::new();
        let (mut sessions, mut mappings) = (BTreeSet::<Key>::new(), BTreeSet::new());
        for op in ops {
            match op {
                Op::Out { host, port, remote } => {
                    let mut p = udp([10, 100, 10, 20 + host], 4000 + port, remotes[usize::from(remote)], 53);
                    if let Verdict::Forward { .. } = run(&nat, now, &mut p) {
                        exts.push(seen(&p).sport);
                    }
                }
                Op::In { remote, rport, pick } if !exts.is_empty() => {
                    let ext = exts[usize::from(pick) % exts.len()];
                    run(&nat, now, &mut udp(remotes[usize::from(remote)], 53 + rport, EXT, ext));
                }
                Op::In { .. } => {}
                Op::Advance(s) => now += f64::from(s),
                Op::Timeout => nat.handle_timeout(Instant::from_micros((now * 1e6) as u64)),
            }
            for e in drain(&nat) {
                let proto = e.protocol.number();
                match e.kind {
                    EventKind::SessionCreated => prop_assert!(sessions.insert((proto, e.internal, e.remote.unwrap())), "{e:?} twice"),
                    EventKind::SessionDeleted(_) => prop_assert!(sessions.remove(&(proto, e.internal, e.remote.unwrap())), "{e:?} unknown"),
                    EventKind::MappingCreated => prop_assert!(mappings.insert((proto, e.internal, e.external.unwrap()))),
                    EventKind::MappingDeleted(_) => prop_assert!(mappings.remove(&(proto, e.internal, e.external.unwrap()))),
                    EventKind::PortsExhausted | EventKind::LimitReached(_) => {}
                }
            }
            let rows: BTreeSet<Key> = nat
                .sessions()
                .iter()
                .map(|r| {
                    let internal = SocketAddrV4::new(r.internal_source_address, r.internal_source_port);
                    (r.protocol, internal, SocketAddrV4::new(r.external_destination_address, r.external_destination_port))
                })
                .collect();
            prop_assert_eq!(&rows, &sessions);
            let mut table = BTreeSet::new();
            nat.for_each_mapping(|m| {
                table.insert((m.protocol.number(), SocketAddrV4::new(m.internal_address, m.internal_port), SocketAddrV4::new(m.external_address, m.external_port)));
            });
            prop_assert_eq!(&table, &mappings);
        }
    }
}
