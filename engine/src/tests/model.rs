//! Reference-model test (style.md): random outbound / inbound / clock-advance steps on UDP
//! against a plain `HashMap` model of WinNAT's table (endpoint-independent mapping,
//! address-dependent filtering, 120 s idle timeout refreshed by outbound packets only).

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

type Ep = ([u8; 4], u16);

#[derive(Debug, Clone)]
enum Op {
    Out(u8, u16, u8, u16),
    In(u8, u16, u8),
    Advance(u16),
}

#[derive(Default, Debug)]
struct Model {
    /// internal endpoint -> external port
    mappings: HashMap<Ep, u16>,
    /// (internal, remote) -> (last refresh, sent outbound)
    sessions: HashMap<(Ep, Ep), (f64, bool)>,
}

impl Model {
    fn alive(&self, now: f64, last: f64) -> bool {
        now - last <= 120.0
    }

    fn sweep(&mut self, now: f64) {
        self.sessions.retain(|_, (last, _)| now - *last <= 120.0);
        let sessions = &self.sessions;
        self.mappings.retain(|int, _| sessions.keys().any(|(i, _)| i == int));
    }

    fn internal_for(&self, ext_port: u16) -> Option<Ep> {
        self.mappings.iter().find(|(_, p)| **p == ext_port).map(|(i, _)| *i)
    }
}

fn int(i: u8) -> [u8; 4] {
    [10, 100, 10, 11 + i % 2]
}

fn rem(i: u8) -> [u8; 4] {
    [[203, 0, 113, 10], [203, 0, 113, 11]][usize::from(i % 2)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..2, 1u16..3, 0u8..2, 53u16..55).prop_map(|(a, b, c, d)| Op::Out(a, b, c, d)),
        3 => (0u8..2, 53u16..55, any::<u8>()).prop_map(|(a, b, c)| Op::In(a, b, c)),
        1 => (0u16..130).prop_map(Op::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_the_hashmap_model(ops in proptest::collection::vec(op(), 1..80), seed: u64) {
        let mut c = config();
        c.seed = seed;
        let nat = Nat::new(c).unwrap();
        let mut m = Model::default();
        let mut now = 0.0;
        for o in ops {
            match o {
                Op::Out(h, p, r, rp) => {
                    let (i, remote) = ((int(h), p), (rem(r), rp));
                    let out = forward(&nat, now, udp(i.0, i.1, remote.0, remote.1), Direction::Outbound);
                    match m.mappings.get(&i) {
                        Some(port) => prop_assert_eq!(out.sport, *port, "mapping kept while it lives"),
                        None => {
                            prop_assert!(m.internal_for(out.sport).is_none(), "port {} reused while live", out.sport);
                            m.mappings.insert(i, out.sport);
                        }
                    }
                    m.sessions.insert((i, remote), (now, true));
                }
                Op::In(r, rp, pick) => {
                    let ports: Vec<u16> = m.mappings.values().copied().collect();
                    let ext_port = if ports.is_empty() { 40000 } else { ports[usize::from(pick) % ports.len()] };
                    let remote = (rem(r), rp);
                    let target = m.internal_for(ext_port);
                    let expected = target.filter(|i| {
                        let existing = m.sessions.get(&(*i, remote)).is_some_and(|(last, _)| m.alive(now, *last));
                        let adf = m.sessions.iter().any(|((si, sr), (last, out))| si == i && sr.0 == remote.0 && *out && m.alive(now, *last));
                        existing || adf
                    });
                    let mut p = udp(remote.0, remote.1, EXT, ext_port);
                    let v = run(&nat, now, &mut p);
                    match expected {
                        Some(i) => {
                            prop_assert!(matches!(v, Verdict::Forward { .. }), "model admits, engine said {:?}", v);
                            let s = seen(&p);
                            prop_assert_eq!((s.dst, s.dport), i);
                            m.sessions.entry((i, remote)).or_insert((now, false));
                        }
                        None => prop_assert!(matches!(v, Verdict::Drop(_)), "model refuses, engine said {:?}", v),
                    }
                }
                Op::Advance(secs) => {
                    now += f64::from(secs);
                    nat.handle_timeout(crate::Instant::from_micros((now * 1e6) as u64));
                    m.sweep(now);
                }
            }
            prop_assert_eq!(nat.session_count(), m.sessions.len());
        }
    }
}
