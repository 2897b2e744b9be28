//! Static mappings (Add-NetNatStaticMapping) and hairpinning (RFC 4787 REQ-9).

use std::net::Ipv4Addr;

use super::*;
use crate::{DropReason, ExternalAddress, HairpinningMode, Protocol, StaticMapping};

fn forward_8080(remote_prefix: &str, external: Ipv4Addr) -> StaticMapping {
    StaticMapping {
        protocol: Protocol::Tcp,
        external_address: external,
        external_port: 8080,
        internal_address: INSIDE_B.into(),
        internal_port: 80,
        remote_prefix: remote_prefix.parse().unwrap(),
    }
}

#[test]
fn static_mapping_on_any_address_reaches_the_internal_server_and_back() {
    let mut c = config();
    c.external_addresses.push(ExternalAddress::new(Ipv4Addr::new(203, 0, 113, 2)));
    c.static_mappings.push(forward_8080("0.0.0.0/0", Ipv4Addr::UNSPECIFIED));
    let nat = Nat::new(c).unwrap();
    // One internal endpoint has one mapping (EIM), so while the server's mapping on one
    // external address lives, the other address cannot open a second one; each works alone.
    for (i, ext) in [EXT, [203, 0, 113, 2]].into_iter().enumerate() {
        let sport = 50000 + i as u16;
        if i == 1 {
            assert_eq!(dropped(&nat, 1.2, tcp(WAN1, sport, ext, 8080, "S")), DropReason::NoMapping);
            nat.clear_sessions();
        }
        let s = forward(&nat, 1.0, tcp(WAN1, sport, ext, 8080, "S"), Direction::Inbound);
        assert_eq!((s.dst, s.dport), (INSIDE_B, 80), "via {ext:?}");
        if i == 0 {
            // The server's reply leaves from the static mapping's external endpoint.
            let r = forward(&nat, 1.1, tcp(INSIDE_B, 80, WAN1, sport, "SA"), Direction::Outbound);
            assert_eq!((r.src, r.sport), (EXT, 8080));
        }
    }
    let rows = nat.sessions();
    assert!(rows.iter().any(|r| r.internal_source_address == Ipv4Addr::from(INSIDE_B)
        && r.internal_source_port == 80
        && r.external_source_address == Ipv4Addr::new(203, 0, 113, 2)
        && r.external_source_port == 8080
        && r.external_destination_address == Ipv4Addr::from(WAN1)));
}

#[test]
fn static_mapping_restricts_remotes_to_its_prefix() {
    let mut c = config();
    c.static_mappings.push(forward_8080("203.0.113.10/32", Ipv4Addr::from(EXT)));
    let nat = Nat::new(c).unwrap();
    forward(&nat, 1.0, tcp(WAN1, 50000, EXT, 8080, "S"), Direction::Inbound);
    assert_eq!(dropped(&nat, 1.0, tcp(WAN2, 50000, EXT, 8080, "S")), DropReason::RemoteNotAllowed);
    assert_eq!(nat.stats().dropped(DropReason::RemoteNotAllowed), 1);
}

/// Decision (see `tcp_state::opens_connection`): a TCP port forward opens sessions only for a
/// SYN; anything else from a remote without a session is dropped as `tcp_no_session`.
#[test]
fn inbound_tcp_other_than_a_syn_opens_no_session_through_a_static_mapping() {
    let mut c = config();
    c.static_mappings.push(forward_8080("203.0.113.0/28", Ipv4Addr::UNSPECIFIED));
    let nat = Nat::new(c).unwrap();
    for flags in ["A", "R", "RA", "FA", "SA", "PA", "SF", "SR", ""] {
        assert_eq!(dropped(&nat, 1.0, tcp(WAN1, 50000, EXT, 8080, flags)), DropReason::TcpNoSession, "{flags:?}");
    }
    assert_eq!(nat.stats().dropped(DropReason::TcpNoSession), 9);
    assert_eq!(nat.session_count(), 0, "probes created sessions");
    // The remote prefix is checked first.
    assert_eq!(dropped(&nat, 1.0, tcp(FAR, 50000, EXT, 8080, "A")), DropReason::RemoteNotAllowed);
    // A SYN opens; then the session's own segments pass, another remote's ACK still not.
    forward(&nat, 1.0, tcp(WAN1, 50000, EXT, 8080, "S"), Direction::Inbound);
    forward(&nat, 1.1, tcp(INSIDE_B, 80, WAN1, 50000, "SA"), Direction::Outbound);
    forward(&nat, 1.2, tcp(WAN1, 50000, EXT, 8080, "A"), Direction::Inbound);
    assert_eq!(dropped(&nat, 1.3, tcp(WAN2, 50000, EXT, 8080, "A")), DropReason::TcpNoSession);
    assert_eq!(dropped(&nat, 1.3, tcp(WAN1, 50001, EXT, 8080, "RA")), DropReason::TcpNoSession);
    // Once the session expired (established, 1800 s idle), a late ACK opens nothing.
    assert_eq!(dropped(&nat, 1802.0, tcp(WAN1, 50000, EXT, 8080, "A")), DropReason::TcpNoSession);
    // UDP port forwards are unchanged: any datagram opens a session.
    let mut c = config();
    c.static_mappings
        .push(StaticMapping { protocol: Protocol::Udp, ..forward_8080("0.0.0.0/0", Ipv4Addr::UNSPECIFIED) });
    let nat = Nat::new(c).unwrap();
    forward(&nat, 1.0, udp(WAN1, 50000, EXT, 8080), Direction::Inbound);
}

#[test]
fn removing_a_static_mapping_removes_its_sessions() {
    let mut c = config();
    c.static_mappings.push(forward_8080("0.0.0.0/0", Ipv4Addr::UNSPECIFIED));
    let nat = Nat::new(c.clone()).unwrap();
    forward(&nat, 1.0, tcp(WAN1, 50000, EXT, 8080, "S"), Direction::Inbound);
    assert_eq!(nat.session_count(), 1);
    c.static_mappings.clear();
    nat.reconfigure(c).unwrap();
    assert_eq!(nat.session_count(), 0);
    assert_eq!(nat.stats().sessions_removed, 1);
    assert_eq!(dropped(&nat, 2.0, tcp(WAN1, 50000, EXT, 8080, "A")), DropReason::NoMapping);
}

#[test]
fn hairpinning_uses_the_senders_external_mapping_as_source() {
    let mut c = config();
    c.static_mappings
        .push(StaticMapping { protocol: Protocol::Udp, ..forward_8080("0.0.0.0/0", Ipv4Addr::UNSPECIFIED) });
    let nat = Nat::new(c).unwrap();
    // A learns its own mapping by talking to WAN1 first.
    let a_ext = forward(&nat, 1.0, udp(INSIDE_A, 5000, WAN1, 53), Direction::Outbound);
    let h = forward(&nat, 1.1, udp(INSIDE_A, 5000, EXT, 8080), Direction::Hairpin);
    assert_eq!((h.dst, h.dport), (INSIDE_B, 80), "reaches B");
    assert_eq!((h.src, h.sport), (EXT, a_ext.sport), "from A's external endpoint (REQ-9a)");
    // B's answer to A's external endpoint hairpins back to A.
    let back = forward(&nat, 1.2, udp(INSIDE_B, 80, EXT, a_ext.sport), Direction::Hairpin);
    assert_eq!((back.src, back.sport, back.dst, back.dport), (EXT, 8080, INSIDE_A, 5000));
}

#[test]
fn hairpinning_local_mode_keeps_the_internal_source() {
    let mut c = config();
    c.hairpinning = HairpinningMode::Local;
    c.static_mappings
        .push(StaticMapping { protocol: Protocol::Udp, ..forward_8080("0.0.0.0/0", Ipv4Addr::UNSPECIFIED) });
    let nat = Nat::new(c).unwrap();
    let h = forward(&nat, 1.0, udp(INSIDE_A, 5000, EXT, 8080), Direction::Hairpin);
    assert_eq!((h.src, h.sport, h.dst, h.dport), (INSIDE_A, 5000, INSIDE_B, 80));
}

#[test]
fn traffic_to_an_unmapped_port_of_the_external_address_goes_to_the_host() {
    let nat = nat();
    let mut p = udp(INSIDE_A, 5000, EXT, 53);
    let before = p.clone();
    assert_eq!(run(&nat, 1.0, &mut p), Verdict::Pass);
    assert_eq!(p, before);
}

#[test]
fn session_limits_cap_one_host_and_leave_others_working() {
    let mut c = config();
    c.limits.max_sessions_per_host = 3;
    c.limits.max_sessions = 5;
    let nat = Nat::new(c).unwrap();
    for i in 0..3 {
        forward(&nat, 1.0, udp(INSIDE_A, 1000 + i, WAN1, 53), Direction::Outbound);
    }
    assert_eq!(dropped(&nat, 1.0, udp(INSIDE_A, 2000, WAN1, 53)), DropReason::HostSessionLimit);
    assert_eq!(
        dropped(&nat, 1.0, udp(INSIDE_A, 1000, FAR, 53)),
        DropReason::HostSessionLimit,
        "a new session on an old mapping counts too"
    );
    forward(&nat, 1.0, udp(INSIDE_A, 1000, WAN1, 53), Direction::Outbound);
    forward(&nat, 1.0, udp(INSIDE_B, 1, WAN1, 53), Direction::Outbound);
    forward(&nat, 1.0, udp(INSIDE_B, 2, WAN1, 53), Direction::Outbound);
    assert_eq!(dropped(&nat, 1.0, udp(INSIDE_B, 3, WAN1, 53)), DropReason::SessionLimit);
    assert_eq!(nat.session_count(), 5);
    nat.clear_sessions();
    assert_eq!(nat.session_count(), 0);
    forward(&nat, 2.0, udp(INSIDE_A, 2000, WAN1, 53), Direction::Outbound);
}
