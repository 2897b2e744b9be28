//! Cheap denial of service (issue "Hardening", item 6): what one sender can make the engine
//! spend. Work is counted (lookup steps, sessions expired per call), never timed.

use proptest::prelude::*;

use super::*;
use crate::mapping_sessions::LOOKUP_STEPS;
use crate::nat::SWEEP_BUDGET;
use crate::{DropReason, ExternalAddress, FilteringBehavior, Instant};

fn steps() -> usize {
    LOOKUP_STEPS.with(|c| c.get())
}

/// The `i`-th remote address (198.51.x.y, never internal nor external).
fn far(i: u32) -> [u8; 4] {
    (u32::from_be_bytes([198, 51, 0, 0]) + i).to_be_bytes()
}

#[test]
fn established_packets_in_a_crowded_mapping_do_not_scan_it() {
    let n = 12_000u32;
    let mut c = config();
    c.limits.max_sessions_per_host = 2 * n as usize;
    let nat = Nat::new(c).unwrap();
    let mut ext = 0;
    for i in 0..n {
        ext = forward(&nat, 1.0, udp(INSIDE_A, 5000, far(i), 53), Direction::Outbound).sport;
    }
    assert_eq!(nat.session_count(), n as usize);
    let before = steps();
    let picked: Vec<u32> = (0..500).map(|k| (k * 7919) % n).collect();
    for &i in &picked {
        forward(&nat, 2.0, udp(INSIDE_A, 5000, far(i), 53), Direction::Outbound);
        forward(&nat, 2.0, udp(far(i), 53, EXT, ext), Direction::Inbound);
    }
    let per_packet = (steps() - before) as f64 / (2 * picked.len()) as f64;
    assert!(per_packet <= 2.0, "{per_packet} lookup steps per packet in a mapping of {n} sessions");
}

#[test]
fn an_unsolicited_packet_costs_the_senders_address_not_a_walk_of_the_mapping() {
    // One internal endpoint with 8000 remotes (a busy peer-to-peer or DNS port), under
    // address-dependent filtering: every outside packet from a new port asks the filter.
    let n = 8000u32;
    let mut c = config();
    c.udp_filtering = FilteringBehavior::AddressDependent;
    c.limits.max_sessions_per_host = 2 * n as usize;
    let nat = Nat::new(c).unwrap();
    let mut ext = 0;
    for i in 0..n {
        ext = forward(&nat, 1.0, udp(INSIDE_A, 5000, far(i), 53), Direction::Outbound).sport;
    }
    let before = steps();
    let probes = 200u16;
    for port in 0..probes {
        // Never contacted: refused. A contacted address from another port: admitted.
        assert_eq!(dropped(&nat, 2.0, udp(WAN1, 1000 + port, EXT, ext)), DropReason::Filtered);
        forward(&nat, 2.0, udp(far(u32::from(port)), 1000 + port, EXT, ext), Direction::Inbound);
    }
    let per_packet = (steps() - before) as f64 / f64::from(2 * probes);
    assert!(per_packet <= 8.0, "{per_packet} session steps per unsolicited packet in a mapping of {n}");
}

/// A NAT with `hosts` x 10 internal endpoints, each talking to `remotes` remotes, created
/// at 1 s (so expired from 122 s on).
fn big_nat(hosts: u32, remotes: u32, max_sessions: usize) -> Nat {
    let mut c = config();
    c.external_addresses = (1..=4).map(|i| ExternalAddress::new([203, 0, 113, i].into())).collect();
    c.limits.max_sessions = max_sessions;
    let nat = Nat::new(c).unwrap();
    for h in 0..hosts {
        let host = (u32::from_be_bytes([10, 100, 0, 0]) + 256 + h).to_be_bytes();
        for port in 0..10 {
            for r in 0..remotes {
                let mut p = udp(host, 2000 + port, far(r), 53);
                assert!(matches!(run(&nat, 1.0, &mut p), Verdict::Forward { .. }));
            }
        }
    }
    nat
}

#[test]
fn a_timeout_call_sweeps_a_bounded_part_of_a_big_table() {
    let hosts = (3 * SWEEP_BUDGET).div_ceil(10 * 16);
    let n = hosts * 10 * 16;
    let nat = big_nat(hosts as u32, 16, n);
    assert_eq!(nat.session_count(), n);
    let now = Instant::from_secs(1000);
    let mut calls = 0;
    while nat.session_count() > 0 {
        let before = nat.stats().sessions_expired;
        nat.handle_timeout(now);
        calls += 1;
        let expired = nat.stats().sessions_expired - before;
        assert!(expired as usize <= SWEEP_BUDGET, "call {calls} expired {expired} sessions");
        assert!(calls < 10, "the table is swept in a few calls");
        if nat.session_count() > 0 {
            assert!(
                nat.poll_timeout().unwrap() <= now + crate::nat::SWEEP_STEP_INTERVAL,
                "the next step is asked for soon"
            );
        }
    }
    assert!(calls >= 3, "{n} sessions took {calls} calls");
    // The round done, the next one is due a sweep interval after it started.
    nat.handle_timeout(now);
    assert_eq!(nat.poll_timeout(), Some(now + crate::nat::SWEEP_INTERVAL));
}

#[test]
fn a_full_table_reclaims_a_bounded_part_on_the_packet_path() {
    let hosts = (3 * SWEEP_BUDGET).div_ceil(10 * 16);
    let n = hosts * 10 * 16;
    let nat = big_nat(hosts as u32, 16, n);
    assert_eq!(dropped(&nat, 2.0, udp(INSIDE_B, 7000, FAR, 53)), DropReason::SessionLimit);
    // Everything has expired; the table is full, so a new flow forces a sweep step.
    forward(&nat, 1000.0, udp(INSIDE_B, 7000, FAR, 53), Direction::Outbound);
    let left = nat.session_count();
    assert!(
        left >= n - 2 * crate::nat::FORCED_SWEEP_BUDGET,
        "one bounded step, not the whole table: {left} of {n} left"
    );
}

#[test]
fn a_host_at_its_cap_reclaims_its_own_expired_sessions_first() {
    let mut c = config();
    c.limits.max_sessions_per_host = 100;
    let nat = Nat::new(c).unwrap();
    for i in 0..100 {
        forward(&nat, 1.0, udp(INSIDE_A, 5000, far(i), 53), Direction::Outbound);
    }
    assert_eq!(dropped(&nat, 2.0, udp(INSIDE_A, 5000, far(100), 53)), DropReason::HostSessionLimit);
    // Once they expire, the mapping's own expired sessions make room.
    forward(&nat, 200.0, udp(INSIDE_A, 5000, far(100), 53), Direction::Outbound);
    assert_eq!(nat.session_count(), 1);
}

/// A mapping of INSIDE_A:5000 to WAN1:53; returns its external port.
fn victim(nat: &Nat, at: f64) -> u16 {
    forward(nat, at, udp(INSIDE_A, 5000, WAN1, 53), Direction::Outbound).sport
}

#[test]
fn a_remote_spraying_ports_cannot_exhaust_its_victims_quota() {
    let cap = crate::config::DEFAULT_MAX_INBOUND_SESSIONS_PER_MAPPING;
    for (filtering, attacker) in
        [(FilteringBehavior::AddressDependent, WAN1), (FilteringBehavior::EndpointIndependent, WAN2)]
    {
        let mut c = config();
        c.udp_filtering = filtering;
        c.limits.max_sessions_per_host = 300;
        // The host's inbound cap (half its quota by default) out of the way: this is the
        // mapping's.
        c.limits.max_inbound_sessions_per_host = Some(cap);
        let nat = Nat::new(c).unwrap();
        let ext = victim(&nat, 1.0);
        let mut admitted = 0;
        for port in 1000..2000 {
            let mut p = udp(attacker, port, EXT, ext);
            match run(&nat, 2.0, &mut p) {
                Verdict::Forward { .. } => admitted += 1,
                v => assert_eq!(v, Verdict::Drop(DropReason::InboundSessionLimit), "{filtering:?}"),
            }
        }
        assert_eq!(admitted, cap, "{filtering:?}");
        assert_eq!(nat.stats().dropped(DropReason::InboundSessionLimit), (1000 - cap) as u64);
        // The victim's own flows, on the same mapping and on new ones, keep working.
        forward(&nat, 3.0, udp(INSIDE_A, 5000, FAR, 53), Direction::Outbound);
        for port in 0..40 {
            forward(&nat, 3.0, udp(INSIDE_A, 6000 + port, FAR, 53), Direction::Outbound);
        }
        // The victim answering a remote makes no difference to the count: opened inbound.
        forward(&nat, 3.0, udp(INSIDE_A, 5000, attacker, 1000), Direction::Outbound);
        assert_eq!(dropped(&nat, 3.0, udp(attacker, 2000, EXT, ext)), DropReason::InboundSessionLimit);
        // Once the sprayed sessions expire and are swept, the cap is free again (the
        // victim's refreshed mapping survives).
        victim(&nat, 100.0);
        nat.handle_timeout(Instant::from_secs(125));
        forward(&nat, 125.0, udp(attacker, 3000, EXT, ext), Direction::Inbound);
    }
}

#[test]
fn remotes_cannot_take_a_hosts_quota_through_its_many_mappings() {
    // A host with 40 open UDP ports under endpoint-independent filtering; a sender spoofing
    // 10 240 sources fills every mapping to its own cap (256).
    let mut c = config();
    c.udp_filtering = FilteringBehavior::EndpointIndependent;
    let nat = Nat::new(c).unwrap();
    let limits = crate::Limits::default();
    let share = limits.inbound_sessions_per_host();
    let exts: Vec<u16> =
        (0..40).map(|m| forward(&nat, 1.0, udp(INSIDE_A, 5000 + m, FAR, 53), Direction::Outbound).sport).collect();
    let mut admitted = 0;
    for (m, &ext) in exts.iter().enumerate() {
        for k in 0..limits.max_inbound_sessions_per_mapping as u32 {
            let mut p = udp(far(m as u32 * 256 + k), 999, EXT, ext);
            match run(&nat, 2.0, &mut p) {
                Verdict::Forward { .. } => admitted += 1,
                v => assert_eq!(v, Verdict::Drop(DropReason::InboundSessionLimit)),
            }
        }
    }
    assert_eq!(admitted, share, "remotes open at most the host's inbound share");
    assert_eq!(nat.table.host_counts(u32::from_be_bytes(INSIDE_A)), (40 + share, share));
    // The host keeps the rest of its quota for its own flows.
    for port in 0..1000 {
        forward(&nat, 3.0, udp(INSIDE_A, 7000 + port, FAR, 53), Direction::Outbound);
    }
    // Once the remotes' sessions expire and are swept, they are given back.
    for ext_port in 0..40 {
        forward(&nat, 100.0, udp(INSIDE_A, 5000 + ext_port, FAR, 53), Direction::Outbound);
    }
    for _ in 0..10 {
        nat.handle_timeout(Instant::from_secs(125));
    }
    assert_eq!(nat.table.host_counts(u32::from_be_bytes(INSIDE_A)), (40, 0));
}

#[test]
fn static_mappings_are_not_capped_per_mapping() {
    let mut c = config();
    c.static_mappings.push(crate::StaticMapping {
        protocol: crate::Protocol::Udp,
        external_address: EXT.into(),
        external_port: 5353,
        internal_address: INSIDE_A.into(),
        internal_port: 53,
        remote_prefix: "0.0.0.0/0".parse().unwrap(),
    });
    c.limits.max_inbound_sessions_per_mapping = 2;
    let nat = Nat::new(c).unwrap();
    for i in 0..10 {
        forward(&nat, 1.0, udp(far(i), 999, EXT, 5353), Direction::Inbound);
    }
}

/// Every mapping's inbound-opened count matches its sessions and stays within the cap; the
/// host's counts are the sums over its mappings, within the host's inbound cap.
fn check_inbound_counts(nat: &Nat, cap: usize, host_cap: usize) -> Result<(), TestCaseError> {
    let mut result = Ok(());
    let (mut all, mut charged) = (0, 0);
    nat.table.by_internal.for_each(|m| {
        let opened = m.sessions.iter().filter(|s| s.opened_inbound()).count();
        all += m.sessions.len();
        charged += m.charged_inbound();
        if result.is_ok() && (opened != m.inbound_sessions as usize || (!m.from_static && opened > cap)) {
            result =
                Err(TestCaseError::fail(format!("{} counted, {opened} opened inbound, cap {cap}", m.inbound_sessions)));
        }
    });
    result?;
    let host = nat.table.host_counts(u32::from_be_bytes(INSIDE_A));
    prop_assert_eq!(host, (all, charged), "the host's (sessions, inbound-opened) against its mappings");
    prop_assert!(charged <= host_cap, "{} inbound-opened over the host's cap {}", charged, host_cap);
    Ok(())
}

#[derive(Debug, Clone)]
enum Op {
    Out { port: u16, remote: u8, rport: u16 },
    In { remote: u8, rport: u16, mapping: u16 },
    Advance(u16),
    Timeout,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn inbound_opened_counts_stay_exact_and_capped(
        ops in proptest::collection::vec(prop_oneof![
            3 => (0u16..2, 0u8..3, 0u16..4).prop_map(|(port, remote, rport)| Op::Out { port, remote, rport }),
            4 => (0u8..3, 0u16..6, 0u16..2).prop_map(|(remote, rport, mapping)| Op::In { remote, rport, mapping }),
            1 => (0u16..150).prop_map(Op::Advance),
            1 => Just(Op::Timeout),
        ], 1..80),
        eif: bool,
        cap in 1usize..4,
        host_cap in 1usize..6,
    ) {
        let mut c = config();
        c.udp_filtering = if eif { FilteringBehavior::EndpointIndependent } else { FilteringBehavior::AddressDependent };
        c.limits.max_inbound_sessions_per_mapping = cap;
        c.limits.max_sessions_per_host = 8;
        c.limits.max_inbound_sessions_per_host = Some(host_cap);
        let nat = Nat::new(c).unwrap();
        let remotes = [WAN1, WAN2, FAR];
        let mut now = 1.0;
        let mut ext = [None, None];
        for op in ops {
            match op {
                Op::Out { port, remote, rport } => {
                    let mut p = udp(INSIDE_A, 5000 + port, remotes[usize::from(remote)], 53 + rport);
                    if let Verdict::Forward { .. } = run(&nat, now, &mut p) {
                        ext[usize::from(port)] = Some(seen(&p).sport);
                    }
                }
                Op::In { remote, rport, mapping } => {
                    if let Some(e) = ext[usize::from(mapping)] {
                        let mut p = udp(remotes[usize::from(remote)], 53 + rport, EXT, e);
                        run(&nat, now, &mut p);
                    }
                }
                Op::Advance(s) => now += f64::from(s),
                Op::Timeout => nat.handle_timeout(Instant::from_micros((now * 1e6) as u64)),
            }
            check_inbound_counts(&nat, cap, host_cap)?;
        }
    }
}
