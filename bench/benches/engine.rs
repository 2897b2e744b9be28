//! Criterion benches of the engine (design.md §6), each next to a baseline measured in the same
//! run. Every packet is a prebuilt 64-byte buffer; the clock is fixed (`NOW`).
//!
//! Packets are translated in place, so each measured pass first copies the packet from its
//! template into the batch buffer; `established/copy_only` measures that copy alone and
//! `established/parse_and_touch` the copy plus the least a packet path can do.
//!
//! Run: `cargo bench -p netnat-bench --bench engine` (a filter such as `-- established`
//! selects groups). Results and their reading are in BENCHMARKS.md.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use netnat_bench::{
    config, establish_icmp, establish_tcp, establish_udp, icmp_echo, icmp_port_unreachable, internal_endpoint,
    parse_and_touch, tcp, udp, BaselineTable, Flows, Packet, ACK, NOW, REMOTE, REMOTE_PORT, SYN, TCP, UDP,
};
use netnat_engine::{Instant, Nat, Verdict};

/// Packets per measured batch.
const BATCH: usize = 1024;

/// Panics (at set-up, never in a measured loop) unless the verdict forwards.
fn expect_forward(v: Verdict, what: &str) {
    assert!(matches!(v, Verdict::Forward { .. }), "{what}: set-up packet not forwarded: {v:?}");
}

/// Copies every template into its buffer and runs `f` on it: one measured batch.
#[inline]
fn pass(templates: &[Packet], bufs: &mut [Packet], mut f: impl FnMut(&mut [u8])) {
    for (buf, t) in bufs.iter_mut().zip(templates) {
        *buf = *t;
        f(buf);
    }
}

/// Checks once, before measuring, that the engine forwards every template.
fn check_templates(nat: &Nat, templates: &[Packet], what: &str) {
    for t in templates {
        let mut p = *t;
        expect_forward(nat.handle_packet(NOW, &mut p), what);
    }
}

fn outbound_udp(flows: &Flows) -> Vec<Packet> {
    flows.internal.iter().map(|&int| udp(int, (REMOTE, REMOTE_PORT))).collect()
}

fn inbound_udp(flows: &Flows) -> Vec<Packet> {
    flows.external.iter().map(|&ext| udp((REMOTE, REMOTE_PORT), ext)).collect()
}

fn outbound_tcp(flows: &Flows) -> Vec<Packet> {
    flows.internal.iter().map(|&int| tcp(int, (REMOTE, REMOTE_PORT), ACK)).collect()
}

fn inbound_tcp(flows: &Flows) -> Vec<Packet> {
    flows.external.iter().map(|&ext| tcp((REMOTE, REMOTE_PORT), ext, ACK)).collect()
}

/// Established-flow translation of UDP and TCP, out and in, next to the copy and
/// parse-and-touch baselines and the `Mutex<HashMap>` table.
fn established(c: &mut Criterion) {
    let nat = Nat::new(config(1, 0)).expect("valid config");
    let udp_flows = establish_udp(&nat, BATCH).expect("udp set-up");
    let tcp_flows = establish_tcp(&nat, BATCH).expect("tcp set-up");
    let sets: [(&str, Vec<Packet>); 4] = [
        ("udp_out", outbound_udp(&udp_flows)),
        ("udp_in", inbound_udp(&udp_flows)),
        ("tcp_out", outbound_tcp(&tcp_flows)),
        ("tcp_in", inbound_tcp(&tcp_flows)),
    ];
    for (name, t) in &sets {
        check_templates(&nat, t, name);
    }
    let udp_base = BaselineTable::from_flows(UDP, &udp_flows);
    let tcp_base = BaselineTable::from_flows(TCP, &tcp_flows);
    let mut bufs = vec![[0u8; 64]; BATCH];

    let mut g = c.benchmark_group("established");
    g.throughput(Throughput::Elements(BATCH as u64));
    let udp_out = &sets[0].1;
    g.bench_function("copy_only", |b| {
        b.iter(|| {
            pass(udp_out, &mut bufs, |p| {
                black_box(p);
            })
        })
    });
    g.bench_function("parse_and_touch", |b| {
        b.iter(|| {
            pass(udp_out, &mut bufs, |p| {
                black_box(parse_and_touch(p));
            })
        })
    });
    for (name, t) in &sets {
        g.bench_function(*name, |b| {
            b.iter(|| {
                pass(t, &mut bufs, |p| {
                    black_box(nat.handle_packet(NOW, p));
                })
            })
        });
    }
    // The same through a per-thread `Worker` (cached settings, local counters), as the
    // daemon's workers would use it.
    for (name, t) in &sets {
        let mut worker = nat.worker();
        g.bench_function(format!("{name}_worker"), |b| {
            b.iter(|| {
                pass(t, &mut bufs, |p| {
                    black_box(worker.handle_packet(NOW, p));
                })
            })
        });
    }
    g.bench_function("mutex_hashmap_udp_out", |b| {
        b.iter(|| {
            pass(udp_out, &mut bufs, |p| {
                black_box(udp_base.translate_out(NOW, p));
            })
        })
    });
    let tcp_out = &sets[2].1;
    g.bench_function("mutex_hashmap_tcp_out", |b| {
        b.iter(|| {
            pass(tcp_out, &mut bufs, |p| {
                black_box(tcp_base.translate_out(NOW, p));
            })
        })
    });
    g.finish();
}

/// ICMP echo (query) translation both ways and inbound ICMP error translation (RFC 5508).
fn icmp(c: &mut Criterion) {
    let nat = Nat::new(config(1, 0)).expect("valid config");
    let echo = establish_icmp(&nat, BATCH).expect("icmp set-up");
    let requests: Vec<Packet> = echo.internal.iter().map(|&(a, id)| icmp_echo(a, REMOTE, 8, id)).collect();
    let replies: Vec<Packet> = echo.external.iter().map(|&(a, id)| icmp_echo(REMOTE, a, 0, id)).collect();
    let flows = establish_udp(&nat, BATCH).expect("udp set-up");
    // What the remote got from each flow, quoted back in a port unreachable.
    let errors: Vec<Packet> = flows
        .external
        .iter()
        .map(|&ext| icmp_port_unreachable(REMOTE, ext.0, &udp(ext, (REMOTE, REMOTE_PORT))))
        .collect();
    check_templates(&nat, &requests, "echo_request_out");
    check_templates(&nat, &replies, "echo_reply_in");
    check_templates(&nat, &errors, "error_in");
    let mut bufs = vec![[0u8; 64]; BATCH];

    let mut g = c.benchmark_group("icmp");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("parse_and_touch", |b| {
        b.iter(|| {
            pass(&errors, &mut bufs, |p| {
                black_box(parse_and_touch(p));
            })
        })
    });
    for (name, t) in [("echo_request_out", &requests), ("echo_reply_in", &replies), ("error_in", &errors)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                pass(t, &mut bufs, |p| {
                    black_box(nat.handle_packet(NOW, p));
                })
            })
        });
    }
    g.finish();
}

/// New sessions: port allocation and both indexes, a fresh NAT per batch of distinct
/// internal endpoints.
fn new_sessions(c: &mut Criterion) {
    let udp_first: Vec<Packet> = (0..BATCH).map(|i| udp(internal_endpoint(i), (REMOTE, REMOTE_PORT))).collect();
    let tcp_syn: Vec<Packet> = (0..BATCH).map(|i| tcp(internal_endpoint(i), (REMOTE, REMOTE_PORT), SYN)).collect();
    let mut g = c.benchmark_group("new_session");
    g.throughput(Throughput::Elements(BATCH as u64));
    for (name, t) in [("udp", &udp_first), ("tcp_syn", &tcp_syn)] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || (Nat::new(config(1, 0)).expect("valid config"), t.clone()),
                |(nat, mut bufs)| {
                    for p in &mut bufs {
                        black_box(nat.handle_packet(NOW, p));
                    }
                    // Returned so that dropping the table is not measured.
                    (nat, bufs)
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

/// A deterministic sample of `BATCH` flow indexes out of `n`, spread over the table.
fn sample(n: usize) -> Vec<usize> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..BATCH)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        })
        .collect()
}

/// Established UDP outbound lookups at 4 K and at 1 M live sessions (32 external addresses
/// so 1 M mappings fit in the port ranges).
fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("lookup");
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut bufs = vec![[0u8; 64]; BATCH];
    for (label, n) in [("4K", 4 << 10), ("1M", 1 << 20)] {
        let nat = Nat::new(config(32, n)).expect("valid config");
        let flows = establish_udp(&nat, n).expect("lookup set-up");
        assert_eq!(nat.session_count(), n);
        let picked: Vec<Packet> =
            sample(n).into_iter().map(|i| udp(flows.internal[i], (REMOTE, REMOTE_PORT))).collect();
        check_templates(&nat, &picked, label);
        let base = BaselineTable::from_flows(UDP, &flows);
        g.bench_function(format!("udp_out_{label}"), |b| {
            b.iter(|| {
                pass(&picked, &mut bufs, |p| {
                    black_box(nat.handle_packet(NOW, p));
                })
            })
        });
        let mut worker = nat.worker();
        g.bench_function(format!("udp_out_{label}_worker"), |b| {
            b.iter(|| {
                pass(&picked, &mut bufs, |p| {
                    black_box(worker.handle_packet(NOW, p));
                })
            })
        });
        drop(worker);
        g.bench_function(format!("mutex_hashmap_udp_out_{label}"), |b| {
            b.iter(|| {
                pass(&picked, &mut bufs, |p| {
                    black_box(base.translate_out(NOW, p));
                })
            })
        });
    }
    g.finish();
}

/// `handle_timeout` over N sessions: a sweep that finds nothing to expire, and one that
/// expires every session (a fresh table per iteration). Four external addresses so 64 K
/// mappings fit in the port ranges.
fn expiry(c: &mut Criterion) {
    let mut g = c.benchmark_group("expiry");
    let live = Instant::from_secs(20);
    let expired = Instant::from_secs(10_000);
    for n in [4 << 10, 64 << 10] {
        g.throughput(Throughput::Elements(n as u64));
        let nat = Nat::new(config(4, n)).expect("valid config");
        establish_udp(&nat, n).expect("expiry set-up");
        g.bench_function(format!("sweep_none_expire_{n}"), |b| b.iter(|| nat.handle_timeout(black_box(live))));
        assert_eq!(nat.session_count(), n);
    }
    let n = 16 << 10;
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function(format!("sweep_all_expire_{n}"), |b| {
        b.iter_batched(
            || {
                let nat = Nat::new(config(4, n)).expect("valid config");
                establish_udp(&nat, n).expect("expiry set-up");
                nat
            },
            |nat| {
                nat.handle_timeout(expired);
                nat
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// Sessions in the crowded mapping of the `one_mapping` group.
const CROWDED: usize = 10_000;

/// The packets of the `one_mapping` group: established both ways, and unsolicited (from
/// addresses the internal endpoint never sent to, which address-dependent filtering refuses).
struct Crowded {
    out: Vec<Packet>,
    inb: Vec<Packet>,
    unsolicited: Vec<Packet>,
}

/// One internal endpoint talking to `n` remotes (198.51.100.7 + i, port 53): `n` sessions in
/// one mapping, under address-dependent filtering. The per-host cap is raised so it never
/// binds.
fn crowded_nat(n: usize) -> (Nat, Crowded) {
    let mut cfg = config(1, n);
    cfg.limits.max_sessions_per_host = cfg.limits.max_sessions_per_host.max(n);
    cfg.udp_filtering = netnat_engine::FilteringBehavior::AddressDependent;
    let nat = Nat::new(cfg).expect("valid config");
    let int = internal_endpoint(0);
    let remote = |i: usize| (std::net::Ipv4Addr::from(u32::from(REMOTE) + i as u32), REMOTE_PORT);
    let mut ext = None;
    for i in 0..n {
        let mut p = udp(int, remote(i));
        expect_forward(nat.handle_packet(NOW, &mut p), "crowded set-up");
        ext = Some(netnat_bench::source(&p));
    }
    assert_eq!(nat.session_count(), n);
    let ext = ext.expect("n > 0");
    let picked: Vec<usize> = if n == 1 { vec![0; BATCH] } else { sample(n) };
    let out = picked.iter().map(|&i| udp(int, remote(i))).collect();
    let inb = picked.iter().map(|&i| udp(remote(i), ext)).collect();
    let unsolicited = picked.iter().map(|&i| udp(remote(n + i), ext)).collect();
    (nat, Crowded { out, inb, unsolicited })
}

/// An established UDP packet through a `Worker` when its mapping holds one session and when
/// it holds 10 K (one internal port talking to many remotes): the session lookup must not
/// grow with the mapping. Nor must the filtering of an unsolicited packet (`udp_unsolicited`,
/// refused by address-dependent filtering), which once walked the mapping's sessions.
fn one_mapping(c: &mut Criterion) {
    let mut g = c.benchmark_group("one_mapping");
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut bufs = vec![[0u8; 64]; BATCH];
    for (label, n) in [("1", 1), ("10k", CROWDED)] {
        let (nat, p) = crowded_nat(n);
        check_templates(&nat, &p.out, label);
        check_templates(&nat, &p.inb, label);
        for t in &p.unsolicited {
            let mut probe = *t;
            let v = nat.handle_packet(NOW, &mut probe);
            assert_eq!(v, Verdict::Drop(netnat_engine::DropReason::Filtered), "unsolicited {label}");
        }
        let mut worker = nat.worker();
        for (dir, t) in [("udp_out", &p.out), ("udp_in", &p.inb), ("udp_unsolicited", &p.unsolicited)] {
            g.bench_function(format!("{dir}_{label}_worker"), |b| {
                b.iter(|| {
                    pass(t, &mut bufs, |p| {
                        black_box(worker.handle_packet(NOW, p));
                    })
                })
            });
        }
    }
    g.finish();
}

/// One `handle_timeout` call at 1 M live sessions (nothing expires): what the timer pays
/// per call. 32 external addresses so 1 M mappings fit in the port ranges.
fn sweep_call(c: &mut Criterion) {
    let mut g = c.benchmark_group("sweep_call");
    let n = 1 << 20;
    let nat = Nat::new(config(32, n)).expect("valid config");
    establish_udp(&nat, n).expect("sweep set-up");
    let mut now = Instant::from_secs(20);
    g.bench_function("handle_timeout_1M", |b| {
        b.iter(|| {
            now = now + Duration::from_millis(1);
            nat.handle_timeout(black_box(now))
        })
    });
    assert_eq!(nat.session_count(), n);
    g.finish();
}

/// Packets per thread per measured batch in the thread-scaling group.
const PER_THREAD: usize = 16 * BATCH;

/// 1 vs 2 worker threads sharing one `Arc<Nat>` (and, as the baseline, one
/// `Mutex<HashMap>`), each translating its own established UDP flows outbound.
fn threads(c: &mut Criterion) {
    let nat = Arc::new(Nat::new(config(1, 0)).expect("valid config"));
    let flows = establish_udp(&nat, 2 * BATCH).expect("threads set-up");
    let base = Arc::new(BaselineTable::from_flows(UDP, &flows));
    let per_thread: Vec<Vec<Packet>> = (0..2)
        .map(|t| flows.internal[t * BATCH..(t + 1) * BATCH].iter().map(|&i| udp(i, (REMOTE, REMOTE_PORT))).collect())
        .collect();
    for t in &per_thread {
        check_templates(&nat, t, "threads");
    }
    let mut g = c.benchmark_group("threads");
    for n in [1usize, 2] {
        g.throughput(Throughput::Elements((n * PER_THREAD) as u64));
        let run = |f: &(dyn Fn(&mut [u8]) + Sync)| {
            std::thread::scope(|s| {
                for templates in &per_thread[..n] {
                    s.spawn(move || {
                        let mut buf = [0u8; 64];
                        for t in templates.iter().cycle().take(PER_THREAD) {
                            buf = *t;
                            f(&mut buf);
                        }
                        black_box(buf);
                    });
                }
            })
        };
        g.bench_function(format!("engine_udp_out_{n}"), |b| {
            b.iter(|| {
                run(&|p| {
                    black_box(nat.handle_packet(NOW, p));
                })
            })
        });
        g.bench_function(format!("engine_worker_udp_out_{n}"), |b| {
            b.iter(|| {
                std::thread::scope(|s| {
                    for templates in &per_thread[..n] {
                        let nat = &nat;
                        s.spawn(move || {
                            let mut worker = nat.worker();
                            let mut buf = [0u8; 64];
                            for t in templates.iter().cycle().take(PER_THREAD) {
                                buf = *t;
                                black_box(worker.handle_packet(NOW, &mut buf));
                            }
                            black_box(buf);
                        });
                    }
                })
            })
        });
        g.bench_function(format!("mutex_hashmap_udp_out_{n}"), |b| {
            b.iter(|| {
                run(&|p| {
                    black_box(base.translate_out(NOW, p));
                })
            })
        });
        g.bench_function(format!("parse_and_touch_{n}"), |b| {
            b.iter(|| {
                run(&|p| {
                    black_box(parse_and_touch(p));
                })
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = netnat_bench::criterion_settings();
    targets = established, icmp, new_sessions, lookup, expiry, threads, one_mapping, sweep_call
}
criterion_main!(benches);
