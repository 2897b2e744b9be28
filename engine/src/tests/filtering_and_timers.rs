//! Filtering behaviours (RFC 4787 §5) and WinNAT's timers.

use std::sync::Arc;

use super::*;
use crate::filter::{FilteringPolicy, InboundContext};
use crate::{DropReason, Duration, FilteringBehavior, Protocol};

fn with_filtering(b: FilteringBehavior) -> Nat {
    let mut c = config();
    c.udp_filtering = b;
    c.tcp_filtering = b;
    Nat::new(c).unwrap()
}

/// Opens a mapping to WAN1:53 (UDP) / WAN1:80 (TCP) and returns the external ports.
fn open(nat: &Nat) -> (u16, u16) {
    let u = forward(nat, 1.0, udp(INSIDE_A, 5000, WAN1, 53), Direction::Outbound).sport;
    let t = forward(nat, 1.0, tcp(INSIDE_A, 6000, WAN1, 80, "S"), Direction::Outbound).sport;
    (u, t)
}

#[test]
fn each_behaviour_admits_exactly_its_remotes() {
    use FilteringBehavior::*;
    // (remote, port) -> admitted under EIF, ADF, APDF.
    let cases: [([u8; 4], u16, bool, bool, bool); 3] =
        [(WAN1, 0, true, true, true), (WAN1, 1, true, true, false), (WAN2, 0, true, false, false)];
    for (i, b) in [EndpointIndependent, AddressDependent, AddressAndPortDependent].into_iter().enumerate() {
        for (remote, port_delta, eif, adf, apdf) in cases {
            let nat = with_filtering(b);
            let (u, t) = open(&nat);
            let admitted = [eif, adf, apdf][i];
            let mut p = udp(remote, 53 + port_delta, EXT, u);
            let v = run(&nat, 2.0, &mut p);
            assert_eq!(
                matches!(v, Verdict::Forward { .. }),
                admitted,
                "{b:?} udp from {remote:?}:+{port_delta}: {v:?}"
            );
            if !admitted {
                assert_eq!(v, Verdict::Drop(DropReason::Filtered));
            }
            let mut p = tcp(remote, 80 + port_delta, EXT, t, "SA");
            let v = run(&nat, 2.0, &mut p);
            assert_eq!(
                matches!(v, Verdict::Forward { .. }),
                admitted,
                "{b:?} tcp from {remote:?}:+{port_delta}: {v:?}"
            );
        }
    }
}

#[test]
fn default_is_address_dependent_and_unsolicited_inbound_creates_nothing() {
    let nat = nat();
    assert_eq!(dropped(&nat, 1.0, udp(WAN1, 53, EXT, 40000)), DropReason::NoMapping);
    let (u, _) = open(&nat);
    assert_eq!(dropped(&nat, 2.0, udp(WAN2, 53, EXT, u)), DropReason::Filtered);
    assert_eq!(nat.session_count(), 2);
}

#[test]
fn udp_idle_timeout_just_below_and_just_above() {
    let nat = nat();
    let (u, _) = open(&nat);
    // Last outbound at 1.0; the session lives 120 s of idle time.
    forward(&nat, 120.9, udp(WAN1, 53, EXT, u), Direction::Inbound);
    assert_eq!(dropped(&nat, 121.1, udp(WAN1, 53, EXT, u)), DropReason::Filtered);
}

#[test]
fn inbound_refresh_only_when_udp_inbound_refresh_is_true() {
    for refresh in [false, true] {
        let mut c = config();
        c.udp_inbound_refresh = refresh;
        let nat = Nat::new(c).unwrap();
        let u = forward(&nat, 0.0, udp(INSIDE_A, 5000, WAN1, 53), Direction::Outbound).sport;
        forward(&nat, 100.0, udp(WAN1, 53, EXT, u), Direction::Inbound);
        // 150 s after the outbound packet, 50 s after the inbound one.
        let mut p = udp(WAN1, 53, EXT, u);
        let v = run(&nat, 150.0, &mut p);
        assert_eq!(matches!(v, Verdict::Forward { .. }), refresh, "UdpInboundRefresh={refresh}: {v:?}");
    }
}

#[test]
fn configured_timeouts_are_used() {
    let mut c = config();
    c.timeouts.udp_idle = Duration::from_secs(10);
    c.timeouts.icmp_query = Duration::from_secs(5);
    let nat = Nat::new(c).unwrap();
    let u = forward(&nat, 0.0, udp(INSIDE_A, 5000, WAN1, 53), Direction::Outbound).sport;
    let i = forward(&nat, 0.0, echo_request(INSIDE_A, WAN1, 3, 1), Direction::Outbound).sport;
    forward(&nat, 4.9, echo_reply(WAN1, EXT, i, 1), Direction::Inbound);
    assert_eq!(dropped(&nat, 5.1, echo_reply(WAN1, EXT, i, 1)), DropReason::Filtered);
    forward(&nat, 9.9, udp(WAN1, 53, EXT, u), Direction::Inbound);
    assert_eq!(dropped(&nat, 10.1, udp(WAN1, 53, EXT, u)), DropReason::Filtered);
}

#[test]
fn icmp_query_default_is_30_seconds() {
    let nat = nat();
    let i = forward(&nat, 0.0, echo_request(INSIDE_A, WAN1, 3, 1), Direction::Outbound).sport;
    forward(&nat, 29.9, echo_reply(WAN1, EXT, i, 1), Direction::Inbound);
    assert_eq!(dropped(&nat, 30.1, echo_reply(WAN1, EXT, i, 2)), DropReason::Filtered);
}

/// Runs a handshake at t=0 and returns the external port.
fn handshake(nat: &Nat) -> u16 {
    let t = forward(nat, 0.0, tcp(INSIDE_A, 6000, WAN1, 80, "S"), Direction::Outbound).sport;
    forward(nat, 0.0, tcp(WAN1, 80, EXT, t, "SA"), Direction::Inbound);
    forward(nat, 0.0, tcp(INSIDE_A, 6000, WAN1, 80, "A"), Direction::Outbound);
    t
}

#[test]
fn tcp_transient_until_the_handshake_completes() {
    let nat = nat();
    let t = forward(&nat, 0.0, tcp(INSIDE_A, 6000, WAN1, 80, "S"), Direction::Outbound).sport;
    forward(&nat, 119.9, tcp(WAN1, 80, EXT, t, "SA"), Direction::Inbound);
    // The SYN-ACK refreshed the session at 119.9; without the final ACK it stays transient.
    assert_eq!(dropped(&nat, 240.0, tcp(WAN1, 80, EXT, t, "SA")), DropReason::Filtered);
}

#[test]
fn tcp_established_timeout_after_handshake() {
    let below = nat();
    let t = handshake(&below);
    forward(&below, 1799.9, tcp(WAN1, 80, EXT, t, "A"), Direction::Inbound);
    let above = nat();
    let t = handshake(&above);
    assert_eq!(dropped(&above, 1800.1, tcp(WAN1, 80, EXT, t, "A")), DropReason::Filtered);
}

#[test]
fn tcp_fin_both_ways_and_rst_return_to_transient() {
    for closing in [&[("out", "FA"), ("in", "FA")][..], &[("in", "R")][..], &[("out", "RA")][..]] {
        let nat = nat();
        let t = handshake(&nat);
        for (dir, flags) in closing {
            let mut p = if *dir == "out" { tcp(INSIDE_A, 6000, WAN1, 80, flags) } else { tcp(WAN1, 80, EXT, t, flags) };
            assert!(matches!(run(&nat, 10.0, &mut p), Verdict::Forward { .. }));
        }
        forward(&nat, 129.9, tcp(WAN1, 80, EXT, t, "A"), Direction::Inbound);
        assert_eq!(dropped(&nat, 250.1, tcp(WAN1, 80, EXT, t, "A")), DropReason::Filtered, "{closing:?}");
    }
    // One FIN only: still established (half-close).
    let nat = nat();
    let t = handshake(&nat);
    forward(&nat, 10.0, tcp(INSIDE_A, 6000, WAN1, 80, "FA"), Direction::Outbound);
    forward(&nat, 1000.0, tcp(WAN1, 80, EXT, t, "A"), Direction::Inbound);
}

// The handshake above uses sequence number 1000 both ways with windows of 65535 and no
// window scaling: the remote's next sequence number is 1001, and its RSTs and FINs must lie
// within 65535 of it (RFC 5961; `tcp_state.rs`).

#[test]
fn a_blind_rst_outside_the_window_is_dropped_and_the_session_stays_established() {
    let nat = nat();
    let t = handshake(&nat);
    let blind = [0x8000_0000, 1001 + 65_536, 1001u32.wrapping_sub(65_536), 0xdead_beef, 3_141_592_653];
    for (i, seq) in blind.into_iter().enumerate() {
        let flags = if i % 2 == 0 { "R" } else { "RA" };
        assert_eq!(dropped(&nat, 10.0, tcp_seq(WAN1, 80, EXT, t, flags, seq)), DropReason::TcpOutOfWindow, "{seq}");
    }
    assert_eq!(nat.stats().dropped(DropReason::TcpOutOfWindow), blind.len() as u64);
    // Still established: alive long after the transient timeout (120 s) would have ended it,
    // and the dropped RSTs did not refresh it either (1800 s from the handshake at 0).
    forward(&nat, 1799.9, tcp(WAN1, 80, EXT, t, "A"), Direction::Inbound);
    let nat2 = self::nat();
    let t2 = handshake(&nat2);
    dropped(&nat2, 10.0, tcp_seq(WAN1, 80, EXT, t2, "R", 0x8000_0000));
    assert_eq!(dropped(&nat2, 1800.1, tcp(WAN1, 80, EXT, t2, "A")), DropReason::Filtered);
}

#[test]
fn an_in_window_rst_closes_the_session() {
    for seq in [1001, 1001 + 65_535, 1001 - 1000] {
        let nat = nat();
        let t = handshake(&nat);
        forward(&nat, 10.0, tcp_seq(WAN1, 80, EXT, t, "R", seq), Direction::Inbound);
        forward(&nat, 129.9, tcp(WAN1, 80, EXT, t, "A"), Direction::Inbound);
        assert_eq!(dropped(&nat, 250.1, tcp(WAN1, 80, EXT, t, "A")), DropReason::Filtered, "transient after RST {seq}");
    }
}

#[test]
fn an_out_of_window_fin_does_not_move_the_session_toward_closing() {
    let nat = nat();
    let t = handshake(&nat);
    assert_eq!(dropped(&nat, 10.0, tcp_seq(WAN1, 80, EXT, t, "FA", 0x4000_0000)), DropReason::TcpOutOfWindow);
    // The internal host's FIN is real: had the blind one counted, the session would be
    // closed both ways and transient, gone by 1000 s.
    forward(&nat, 10.0, tcp(INSIDE_A, 6000, WAN1, 80, "FA"), Direction::Outbound);
    forward(&nat, 1000.0, tcp(WAN1, 80, EXT, t, "A"), Direction::Inbound);
}

#[test]
fn a_session_picked_up_mid_flow_stays_closable() {
    // No SYN seen: the session starts from the internal host's ACK. The remote's RST, before
    // the remote has sent anything, is forwarded whatever its sequence number.
    let nat = nat();
    let t = forward(&nat, 0.0, tcp_seq(INSIDE_A, 6000, WAN1, 80, "A", 555), Direction::Outbound).sport;
    forward(&nat, 1.0, tcp_seq(WAN1, 80, EXT, t, "R", 0xdead_beef), Direction::Inbound);
    // Once the remote has sent, its RSTs are checked (the window scale unknown, so wide: up to
    // 65535 << 14 here).
    let nat = self::nat();
    let t = forward(&nat, 0.0, tcp_seq(INSIDE_A, 6000, WAN1, 80, "A", 555), Direction::Outbound).sport;
    forward(&nat, 1.0, tcp_seq(WAN1, 80, EXT, t, "A", 7_000_000), Direction::Inbound);
    let far = 7_000_000u32.wrapping_add(0x7000_0000);
    assert_eq!(dropped(&nat, 2.0, tcp_seq(WAN1, 80, EXT, t, "R", far)), DropReason::TcpOutOfWindow);
    forward(&nat, 3.0, tcp_seq(WAN1, 80, EXT, t, "R", 7_000_000), Direction::Inbound);
}

#[test]
fn expiry_frees_the_port_and_is_counted() {
    let mut c = config();
    c.external_addresses[0].port_start = 40000;
    c.external_addresses[0].port_end = 40000;
    let nat = Nat::new(c).unwrap();
    forward(&nat, 0.0, udp(INSIDE_A, 5000, WAN1, 53), Direction::Outbound);
    assert_eq!(dropped(&nat, 60.0, udp(INSIDE_B, 5000, WAN1, 53)), DropReason::PortsExhausted);
    // After the idle timeout the single port goes to B (a forced sweep frees it).
    let b = forward(&nat, 121.0, udp(INSIDE_B, 5000, WAN1, 53), Direction::Outbound);
    assert_eq!(b.sport, 40000);
    let s = nat.stats();
    assert_eq!((s.sessions_expired, s.sessions_active), (1, 1));
    nat.handle_timeout(crate::Instant::from_secs(300));
    assert_eq!(nat.session_count(), 0);
    assert_eq!(nat.stats().sessions_expired, 2);
}

/// A custom policy: admits only remotes from one /24, whatever the internal host sent to.
#[derive(Debug)]
struct OnlyFrom(u32);

impl FilteringPolicy for OnlyFrom {
    fn admit(&self, ctx: &InboundContext<'_>) -> bool {
        u32::from(*ctx.remote.ip()) >> 8 == self.0 >> 8
    }
}

#[test]
fn a_custom_filtering_policy_replaces_the_builtin_and_can_be_removed() {
    let nat = nat();
    nat.set_filtering_policy(Protocol::Udp, Some(Arc::new(OnlyFrom(u32::from_be_bytes(FAR)))));
    let u = forward(&nat, 1.0, udp(INSIDE_A, 5000, WAN1, 53), Direction::Outbound).sport;
    forward(&nat, 1.1, udp([198, 51, 100, 99], 1, EXT, u), Direction::Inbound);
    assert_eq!(dropped(&nat, 1.2, udp(WAN2, 53, EXT, u)), DropReason::Filtered);
    nat.set_filtering_policy(Protocol::Udp, None);
    assert_eq!(dropped(&nat, 1.3, udp([198, 51, 100, 98], 1, EXT, u)), DropReason::Filtered);
}

/// A custom policy that refuses new mappings of internal port 666 (and admits inbound as
/// address-dependent filtering does).
#[derive(Debug)]
struct NoMappingsFor666;

impl FilteringPolicy for NoMappingsFor666 {
    fn admit(&self, ctx: &InboundContext<'_>) -> bool {
        ctx.has_sent_to_address(*ctx.remote.ip())
    }

    fn new_mapping(&self, ctx: &crate::OutboundContext) -> Result<(), crate::Refusal> {
        if ctx.internal.port() == 666 {
            Err(crate::Refusal::Denied)
        } else {
            Ok(())
        }
    }
}

#[test]
fn a_policy_can_refuse_new_mappings_and_is_asked_only_for_new_ones() {
    let nat = nat();
    nat.set_filtering_policy(Protocol::Udp, Some(Arc::new(NoMappingsFor666)));
    assert_eq!(dropped(&nat, 1.0, udp(INSIDE_A, 666, WAN1, 53)), DropReason::PolicyDenied);
    assert_eq!(nat.session_count(), 0, "nothing was created");
    // TCP keeps its own (built-in) policy; other UDP ports get mappings.
    forward(&nat, 1.1, tcp(INSIDE_A, 666, WAN1, 80, "S"), Direction::Outbound);
    forward(&nat, 1.2, udp(INSIDE_A, 667, WAN1, 53), Direction::Outbound);
    assert_eq!(nat.stats().dropped(DropReason::PolicyDenied), 1);
}

#[test]
fn reconfigure_changes_filtering_and_keeps_sessions() {
    let nat = nat();
    let (u, _) = open(&nat);
    assert_eq!(dropped(&nat, 2.0, udp(WAN2, 53, EXT, u)), DropReason::Filtered);
    let mut c = (*nat.config()).clone();
    c.udp_filtering = FilteringBehavior::EndpointIndependent;
    nat.reconfigure(c).unwrap();
    assert_eq!(nat.session_count(), 2, "Set-NetNat keeps sessions");
    forward(&nat, 3.0, udp(WAN2, 53, EXT, u), Direction::Inbound);
}

mod filter_policy {
    use super::*;
    use crate::policy::{InboundLimit, Policy, Rule, RuleAction};

    fn deny_wan2_with_eif() -> Policy {
        Policy {
            fallback: Some(FilteringBehavior::EndpointIndependent),
            rules: vec![Rule {
                action: RuleAction::Deny,
                remote: Ipv4Net::from(Ipv4Addr::from(WAN2)),
                remote_ports: None,
                protocol: None,
                internal: Ipv4Net::default(),
            }],
            limits: vec![],
        }
    }

    fn with_policy(policy: Policy) -> Nat {
        let mut c = config();
        c.filter_policy = Some(policy);
        Nat::new(c).unwrap()
    }

    use ipnet::Ipv4Net;

    #[test]
    fn a_deny_rule_is_counted_as_its_own_reason_and_the_fallback_admits_the_rest() {
        let nat = with_policy(deny_wan2_with_eif());
        let (u, t) = open(&nat);
        assert_eq!(dropped(&nat, 2.0, udp(WAN2, 53, EXT, u)), DropReason::PolicyDenied);
        assert_eq!(dropped(&nat, 2.0, tcp(WAN2, 80, EXT, t, "S")), DropReason::PolicyDenied);
        // EIF fallback: a remote nobody contacted gets in.
        forward(&nat, 2.0, udp(FAR, 9, EXT, u), Direction::Inbound);
        assert_eq!(nat.stats().dropped(DropReason::PolicyDenied), 2);
        assert_eq!(nat.stats().dropped(DropReason::Filtered), 0);
    }

    #[test]
    fn a_policy_never_creates_mappings_nor_cuts_live_sessions() {
        let mut p = deny_wan2_with_eif();
        p.rules[0].action = RuleAction::Allow;
        p.fallback = Some(FilteringBehavior::AddressAndPortDependent);
        let nat = with_policy(p);
        // Allowed remote, but nobody holds the port: no mapping.
        assert_eq!(dropped(&nat, 1.0, udp(WAN2, 53, EXT, 40000)), DropReason::NoMapping);
        // A session the host opened to a denied remote keeps answering.
        let nat = with_policy(deny_wan2_with_eif());
        let u = forward(&nat, 1.0, udp(INSIDE_A, 5000, WAN2, 53), Direction::Outbound).sport;
        forward(&nat, 2.0, udp(WAN2, 53, EXT, u), Direction::Inbound);
        assert_eq!(dropped(&nat, 2.0, udp(WAN2, 54, EXT, u)), DropReason::PolicyDenied, "another port of it");
    }

    #[test]
    fn rate_limit_uses_packet_time_and_survives_an_unrelated_reconfiguration() {
        let mut p = deny_wan2_with_eif();
        p.rules.clear();
        p.limits = vec![InboundLimit { internal: Ipv4Net::default(), new_inbound_per_second: 2 }];
        let mut c = config();
        c.filter_policy = Some(p.clone());
        let nat = Nat::new(c.clone()).unwrap();
        let (u, _) = open(&nat);
        forward(&nat, 2.0, udp(FAR, 1, EXT, u), Direction::Inbound);
        forward(&nat, 2.1, udp(FAR, 2, EXT, u), Direction::Inbound);
        assert_eq!(dropped(&nat, 2.2, udp(FAR, 3, EXT, u)), DropReason::PolicyRateLimited);
        // Same policy, another timeout: the window stays used up.
        c.timeouts.udp_idle = Duration::from_secs(300);
        nat.reconfigure(c.clone()).unwrap();
        assert_eq!(dropped(&nat, 2.3, udp(FAR, 4, EXT, u)), DropReason::PolicyRateLimited);
        // One second after the window opened, by packet time.
        forward(&nat, 3.0, udp(FAR, 5, EXT, u), Direction::Inbound);
        // A changed policy starts afresh.
        p.limits[0].new_inbound_per_second = 3;
        c.filter_policy = Some(p);
        nat.reconfigure(c.clone()).unwrap();
        forward(&nat, 3.1, udp(FAR, 6, EXT, u), Direction::Inbound);
        forward(&nat, 3.2, udp(FAR, 7, EXT, u), Direction::Inbound);
        forward(&nat, 3.3, udp(FAR, 8, EXT, u), Direction::Inbound);
        assert_eq!(dropped(&nat, 3.4, udp(FAR, 9, EXT, u)), DropReason::PolicyRateLimited);
        // No policy: the plain behaviour (ADF; FAR was never contacted).
        c.filter_policy = None;
        nat.reconfigure(c).unwrap();
        assert_eq!(dropped(&nat, 3.5, udp(FAR, 10, EXT, u)), DropReason::Filtered);
    }

    #[test]
    fn without_a_fallback_the_nats_behaviour_applies_per_protocol() {
        let mut p = deny_wan2_with_eif();
        p.fallback = None;
        let mut c = config();
        c.udp_filtering = FilteringBehavior::EndpointIndependent;
        c.tcp_filtering = FilteringBehavior::AddressDependent;
        c.filter_policy = Some(p);
        let nat = Nat::new(c).unwrap();
        let (u, t) = open(&nat);
        forward(&nat, 2.0, udp(FAR, 9, EXT, u), Direction::Inbound);
        assert_eq!(dropped(&nat, 2.0, tcp(FAR, 9, EXT, t, "S")), DropReason::Filtered);
    }

    #[test]
    fn a_policy_rule_outside_the_internal_prefix_is_refused() {
        let mut p = deny_wan2_with_eif();
        p.rules[0].internal = "10.200.0.0/16".parse().unwrap();
        let mut c = config();
        c.filter_policy = Some(p);
        let e = Nat::new(c).unwrap_err();
        assert!(matches!(e, crate::ConfigError::FilterPolicy(_)), "{e}");
        assert!(e.to_string().contains("rule 1"), "{e}");
    }
}
