//! Property tests of the engine's invariants over random traffic (style.md): nothing leaves
//! outward with an internal source; every forwarded packet's checksums are right; two internal
//! endpoints never share an external endpoint; limits hold; out→in round-trips.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;
use crate::FilteringBehavior;

#[derive(Debug, Clone)]
enum Step {
    Out { host: u8, port: u16, remote: u8, rport: u16, kind: u8 },
    In { remote: u8, rport: u16, ext_port_pick: u16, kind: u8 },
    Advance(u16),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..4, 1u16..5, 0u8..3, 1u16..4, 0u8..3).prop_map(|(host, port, remote, rport, kind)| Step::Out { host, port, remote, rport, kind }),
        3 => (0u8..3, 1u16..4, any::<u16>(), 0u8..3).prop_map(|(remote, rport, ext_port_pick, kind)| Step::In { remote, rport, ext_port_pick, kind }),
        1 => (0u16..200).prop_map(Step::Advance),
    ]
}

fn host(i: u8) -> [u8; 4] {
    [10, 100, 10, 10 + i]
}

fn remote(i: u8) -> [u8; 4] {
    [[203, 0, 113, 10], [203, 0, 113, 11], [198, 51, 100, 7]][usize::from(i % 3)]
}

fn packet(kind: u8, src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, outbound: bool) -> Vec<u8> {
    match kind {
        0 => udp(src, sport, dst, dport),
        1 => tcp(src, sport, dst, dport, if outbound { "S" } else { "SA" }),
        _ if outbound => echo_request(src, dst, sport, 1),
        _ => echo_reply(src, dst, dport, 1),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_over_random_traffic(
        steps in proptest::collection::vec(step(), 1..60),
        filtering in prop_oneof![Just(FilteringBehavior::EndpointIndependent), Just(FilteringBehavior::AddressDependent), Just(FilteringBehavior::AddressAndPortDependent)],
        max_sessions in 1usize..12,
        seed: u64,
    ) {
        let mut c = config();
        c.udp_filtering = filtering;
        c.tcp_filtering = filtering;
        c.limits.max_sessions = max_sessions;
        c.limits.max_sessions_per_host = 4;
        c.external_addresses[0].port_start = 40000;
        c.external_addresses[0].port_end = 40015;
        c.seed = seed;
        let nat = Nat::new(c).unwrap();
        let mut now = 0.0;
        // Ports the engine handed out, so inbound packets can hit real mappings.
        let mut seen_ports: Vec<u16> = vec![40000];
        for s in steps {
            match s {
                Step::Out { host: h, port, remote: r, rport, kind } => {
                    let orig = packet(kind, host(h), port, remote(r), rport, true);
                    let mut p = orig.clone();
                    if let Verdict::Forward { direction, .. } = run(&nat, now, &mut p) {
                        prop_assert_eq!(direction, Direction::Outbound);
                        let out = seen(&p);
                        prop_assert_eq!(out.src, EXT, "nothing leaves with an internal source");
                        prop_assert!((40000..=40015).contains(&out.sport));
                        seen_ports.push(out.sport);
                        // Round trip: the remote's answer comes back to the sender, unless the
                        // filter or the limits refuse it (only APDF/ADF cannot refuse a
                        // remote that was just sent to).
                        let mut back = packet(kind, remote(r), rport, EXT, out.sport, false);
                        if kind == 2 { back = echo_reply(remote(r), EXT, out.sport, 1); }
                        match run(&nat, now, &mut back) {
                            Verdict::Forward { .. } => {
                                let b = seen(&back);
                                prop_assert_eq!(b.dst, host(h));
                                prop_assert_eq!(b.dport, port);
                            }
                            v => prop_assert!(false, "reply to a live session refused: {:?}", v),
                        }
                    }
                }
                Step::In { remote: r, rport, ext_port_pick, kind } => {
                    let ext_port = seen_ports[usize::from(ext_port_pick) % seen_ports.len()];
                    let mut p = packet(kind, remote(r), rport, EXT, ext_port, false);
                    if let Verdict::Forward { .. } = run(&nat, now, &mut p) {
                        let inn = seen(&p);
                        prop_assert_eq!(&inn.dst[..3], &[10, 100, 10]);
                    }
                }
                Step::Advance(secs) => {
                    now += f64::from(secs);
                    nat.handle_timeout(crate::Instant::from_micros((now * 1e6) as u64));
                }
            }
            prop_assert!(nat.session_count() <= max_sessions);
            let rows = nat.sessions();
            prop_assert_eq!(rows.len(), nat.session_count());
            let mut owner = HashMap::new();
            for r in &rows {
                let k = (r.protocol, r.external_source_address, r.external_source_port);
                let v = (r.internal_source_address, r.internal_source_port);
                prop_assert_eq!(*owner.entry(k).or_insert(v), v, "two internal endpoints share {:?}", k);
            }
        }
    }
}

/// Two workers on two threads share one NAT: every flow keeps its own external port, replies
/// come back to the right internal endpoint, and the counters add up after the workers drop.
#[test]
fn workers_on_two_threads_share_one_table() {
    let nat = nat();
    let ports: Vec<Vec<u16>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2u8)
            .map(|t| {
                let nat = &nat;
                scope.spawn(move || {
                    let mut w = nat.worker();
                    let mut ports = Vec::new();
                    for round in 0..3 {
                        for flow in 0..300u16 {
                            let mut p = udp(host(t), 1000 + flow, WAN1, 53);
                            let v = w.handle_packet(crate::Instant::from_secs(1), &mut p);
                            assert!(matches!(v, Verdict::Forward { .. }), "{v:?}");
                            let out = seen(&p);
                            let mut back = udp(WAN1, 53, EXT, out.sport);
                            assert!(matches!(
                                w.handle_packet(crate::Instant::from_secs(1), &mut back),
                                Verdict::Forward { .. }
                            ));
                            assert_eq!(seen(&back).dst, host(t));
                            if round == 0 {
                                ports.push(out.sport);
                            } else {
                                assert_eq!(ports[usize::from(flow)], out.sport, "mapping kept");
                            }
                        }
                    }
                    ports
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<u16> = ports.concat();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 600, "no external port shared between the threads' flows");
    let s = nat.stats();
    assert_eq!((s.translated_out, s.translated_in, s.sessions_active), (1800, 1800, 600));
}

/// Readers and writers of the table at once: two workers translate their established flows
/// (reading shards through their own slots) while a third thread, through the shared slot,
/// creates new flows, sweeps every shard and lists the sessions (taking every shard for
/// writing and reading). Every packet must still be translated to its own mapping.
#[test]
fn established_flows_stay_translated_while_another_thread_writes_every_shard() {
    let nat = nat();
    let now = crate::Instant::from_secs(1);
    let established: Vec<(u16, u16)> = (0..200u16)
        .map(|flow| {
            let mut p = udp(host(0), 2000 + flow, WAN1, 53);
            assert!(matches!(nat.handle_packet(now, &mut p), Verdict::Forward { .. }));
            (2000 + flow, seen(&p).sport)
        })
        .collect();
    std::thread::scope(|scope| {
        for t in 0..2usize {
            let (nat, established) = (&nat, &established);
            scope.spawn(move || {
                let mut w = nat.worker();
                for round in 0..40 {
                    for (i, &(internal, external)) in established.iter().enumerate().skip(t).step_by(2) {
                        let mut p = udp(host(0), internal, WAN1, 53);
                        assert!(
                            matches!(w.handle_packet(now, &mut p), Verdict::Forward { .. }),
                            "round {round} flow {i}"
                        );
                        assert_eq!(seen(&p).sport, external, "flow {i} kept its mapping");
                        let mut back = udp(WAN1, 53, EXT, external);
                        assert!(matches!(w.handle_packet(now, &mut back), Verdict::Forward { .. }));
                        assert_eq!((seen(&back).dst, seen(&back).dport), (host(0), internal));
                    }
                }
            });
        }
        let nat = &nat;
        scope.spawn(move || {
            for flow in 0..400u16 {
                let mut p = udp(host(1), 5000 + flow, WAN1, 53);
                assert!(matches!(nat.handle_packet(now, &mut p), Verdict::Forward { .. }));
                if flow % 20 == 0 {
                    nat.handle_timeout(now);
                    assert!(nat.sessions().len() >= 200 + usize::from(flow));
                }
            }
        });
    });
    assert_eq!(nat.session_count(), 600);
}

/// A filtering policy that reads another NAT (its sessions, and a packet of an established
/// flow through it) and then drops the packet; counts its calls.
#[derive(Debug)]
struct ReadsOther {
    other: std::sync::Arc<Nat>,
    established: (u16, u16),
    calls: std::sync::atomic::AtomicU64,
}

impl crate::FilteringPolicy for ReadsOther {
    fn admit(&self, ctx: &crate::InboundContext<'_>) -> bool {
        for r in self.other.sessions() {
            assert_eq!(r.external_source_address, std::net::Ipv4Addr::from(EXT), "{r:?}");
            assert_eq!(r.internal_destination_address, std::net::Ipv4Addr::from(WAN1), "{r:?}");
        }
        let (internal, external) = self.established;
        let mut p = udp(host(0), internal, WAN1, 53);
        assert!(matches!(self.other.handle_packet(ctx.now, &mut p), Verdict::Forward { .. }));
        assert_eq!(seen(&p).sport, external, "the other NAT's flow kept its mapping");
        self.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        false
    }
}

/// A worker of one NAT whose filtering policy reads a second NAT, while another thread
/// writes the second NAT (new flows, sweeps of every shard): the policy's reads of the
/// second NAT must be reads under its lock (the worker's reader slot is its own NAT's).
#[test]
fn a_policy_reading_another_nat_while_that_nat_is_written() {
    let (rounds, flows): (u16, u16) = if cfg!(miri) { (6, 24) } else { (2000, 8000) };
    let now = crate::Instant::from_secs(1);
    let other = std::sync::Arc::new(nat());
    let mut p = udp(host(0), 2000, WAN1, 53);
    assert!(matches!(other.handle_packet(now, &mut p), Verdict::Forward { .. }));
    let established = (2000, seen(&p).sport);
    let policy = std::sync::Arc::new(ReadsOther { other: other.clone(), established, calls: Default::default() });
    let nat = nat();
    nat.set_filtering_policy(crate::Protocol::Udp, Some(policy.clone()));
    let mut p = udp(host(0), 5000, WAN1, 53);
    assert!(matches!(nat.handle_packet(now, &mut p), Verdict::Forward { .. }));
    let mapped = seen(&p).sport;
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut w = nat.worker();
            for n in 0..rounds {
                // A remote the internal host never sent to: the policy decides.
                let mut p = udp(WAN2, 1000 + n, EXT, mapped);
                assert_eq!(w.handle_packet(now, &mut p), Verdict::Drop(crate::DropReason::Filtered));
            }
        });
        scope.spawn(|| {
            // One new flow a second; every 8 the sweep removes those idle for over 120 s
            // (the established flow is kept alive).
            for flow in 0..flows {
                let later = crate::Instant::from_secs(1 + u64::from(flow));
                let mut p = udp(host(1), 3000 + flow, WAN1, 53);
                assert!(matches!(other.handle_packet(later, &mut p), Verdict::Forward { .. }));
                if flow % 8 == 0 {
                    let mut p = udp(host(0), established.0, WAN1, 53);
                    assert!(matches!(other.handle_packet(later, &mut p), Verdict::Forward { .. }));
                    other.handle_timeout(later);
                }
            }
        });
    });
    assert_eq!(policy.calls.load(std::sync::atomic::Ordering::Relaxed), u64::from(rounds));
    // The last sweep (at flow 8k) kept the flows of the last 120 s and the established one.
    let last_sweep = (flows - 1) / 8 * 8;
    let kept = usize::from(flows) - usize::from(last_sweep.saturating_sub(120));
    assert_eq!(other.session_count(), 1 + kept);
}
