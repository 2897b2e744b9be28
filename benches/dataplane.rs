//! The daemon's packet path as shipped: batches of 64-byte UDP packets through a capture
//! thread's `Translator` (`Dataplane::run_thread`, what the NFQUEUE and WinDivert workers run), next to
//! the engine alone on the same NAT in the same run: `Worker::handle_packet` (the fast path)
//! and `Nat::handle_packet`. One and two threads, each translating its own established flows
//! outbound.
//!
//!   cargo bench -p netnat --bench dataplane
//!
//! Results and their reading are in BENCHMARKS.md ("Daemon packet path").

use std::hint::black_box;
use std::ops::ControlFlow;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use netnat::dataplane::{Addressing, Dataplane, Delivery, LiveNat, Template};
use netnat_bench::{config, establish_udp, udp, Packet, NOW, REMOTE, REMOTE_PORT};
use netnat_capture::{Action as CaptureAction, Batch};
use netnat_engine::{Nat, UnmatchedInbound};

/// Packets per batch, as the NFQUEUE workers receive them.
const BATCH: usize = 64;
/// Flows per thread (each thread cycles through its own).
const FLOWS: usize = 1024;
/// Packets per thread per measured iteration.
const PER_THREAD: usize = 16 * FLOWS;

/// A dataplane with one NAT on 10.100.0.0/16 -> 203.0.113.1, as the daemon compiles it.
fn plane() -> Dataplane {
    let mut config = config(1, 0);
    config.unmatched_inbound = UnmatchedInbound::Host;
    let template = Template { config, addressing: Addressing::Explicit };
    let nat = LiveNat::new("bench".into(), template, &[], &[]).expect("valid NAT");
    let plane = Dataplane::new();
    plane.set_nats(vec![Arc::new(nat)]);
    plane
}

/// Translates `PER_THREAD` packets cycling through `templates` in batches of `BATCH`, as a
/// capture thread does: through `Dataplane::run_thread`, whose translator (a `Worker` per
/// engine) lives for the whole run.
fn run_batches(plane: &Dataplane, templates: &[Packet], batch: &mut Batch) {
    let mut left = PER_THREAD;
    let mut next = templates.iter().cycle();
    plane.run_thread(|translator| {
        if left == 0 {
            return ControlFlow::Break(());
        }
        batch.clear();
        for t in next.by_ref().take(BATCH.min(left)) {
            batch.push(t, 0, 0);
        }
        left -= batch.len();
        translator.process_batch(NOW, batch, |_, action| {
            debug_assert!(matches!(action, Delivery::Translated { inbound: false, .. }));
            CaptureAction::Accept
        });
        translator.batch_done(batch.len() < BATCH);
        black_box(&batch);
        ControlFlow::Continue(())
    });
}

/// The same through a translator made for each batch (`Dataplane::process_batch`): how the
/// workers ran before their translators lived across batches, measured beside it.
fn run_batches_per_batch_translator(plane: &Dataplane, templates: &[Packet], batch: &mut Batch) {
    let mut left = PER_THREAD;
    let mut next = templates.iter().cycle();
    while left > 0 {
        batch.clear();
        for t in next.by_ref().take(BATCH.min(left)) {
            batch.push(t, 0, 0);
        }
        left -= batch.len();
        plane.process_batch(NOW, batch, |_, _| CaptureAction::Accept);
        black_box(&batch);
    }
}

fn threads(c: &mut Criterion) {
    let plane = plane();
    let nat: &Nat = &plane.nats()[0].instances()[0].nat;
    let flows = establish_udp(nat, 2 * FLOWS).expect("set-up");
    let per_thread: Vec<Vec<Packet>> = (0..2)
        .map(|t| flows.internal[t * FLOWS..(t + 1) * FLOWS].iter().map(|&i| udp(i, (REMOTE, REMOTE_PORT))).collect())
        .collect();
    // Every template is an established flow the dataplane translates (not a new session).
    let created = nat.stats().sessions_created;
    let mut check = Batch::new(BATCH, 1500);
    run_batches(&plane, &per_thread[0], &mut check);
    assert_eq!(nat.stats().sessions_created, created, "the bench packets are established flows");

    let mut g = c.benchmark_group("dataplane");
    for n in [1usize, 2] {
        g.throughput(Throughput::Elements((n * PER_THREAD) as u64));
        let plane = &plane;
        g.bench_function(format!("capture_thread_udp_out_{n}"), |b| {
            b.iter(|| {
                std::thread::scope(|s| {
                    for templates in &per_thread[..n] {
                        s.spawn(move || run_batches(plane, templates, &mut Batch::new(BATCH, 1500)));
                    }
                })
            })
        });
        g.bench_function(format!("translator_per_batch_udp_out_{n}"), |b| {
            b.iter(|| {
                std::thread::scope(|s| {
                    for templates in &per_thread[..n] {
                        s.spawn(move || {
                            run_batches_per_batch_translator(plane, templates, &mut Batch::new(BATCH, 1500))
                        });
                    }
                })
            })
        });
        g.bench_function(format!("engine_worker_udp_out_{n}"), |b| {
            b.iter(|| {
                std::thread::scope(|s| {
                    for templates in &per_thread[..n] {
                        s.spawn(move || {
                            let mut worker = nat.worker();
                            for t in templates.iter().cycle().take(PER_THREAD) {
                                let mut buf = *t;
                                black_box(worker.handle_packet(NOW, &mut buf));
                            }
                        });
                    }
                })
            })
        });
        g.bench_function(format!("engine_handle_packet_udp_out_{n}"), |b| {
            b.iter(|| {
                std::thread::scope(|s| {
                    for templates in &per_thread[..n] {
                        s.spawn(move || {
                            for t in templates.iter().cycle().take(PER_THREAD) {
                                let mut buf = *t;
                                black_box(nat.handle_packet(NOW, &mut buf));
                            }
                        });
                    }
                })
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = netnat_bench::criterion_settings();
    targets = threads
}
criterion_main!(benches);
