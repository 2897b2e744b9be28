//! What a WASM policy module costs per decision: unsolicited UDP packets (new remotes, one
//! mapping) through a `Worker`, each judged once, with the built-in address-dependent filter
//! and with each example module, in the same run. The difference is the module's cost (the
//! call into wasmi, the fuel, the lock). Established packets never ask a policy, so the
//! fast path is the same with and without one (`one_mapping` in the engine bench).
//!
//!   cargo bench -p netnat --bench policy_module
//!
//! Results and their reading are in BENCHMARKS.md ("Policy modules").

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use netnat::{ModulePolicy, ModuleSpec, OnError, DEFAULT_FUEL_PER_CALL};
use netnat_bench::{config, source, udp, Packet, NOW, REMOTE, REMOTE_PORT};
use netnat_engine::{FilteringBehavior, Nat, Protocol, Verdict};

/// Unsolicited packets per measured iteration (each from its own remote address).
const PROBES: usize = 1024;

/// A NAT under address-dependent filtering with one mapping (10.100.0.1:5000 talking to
/// REMOTE), and the unsolicited packets: from addresses outside both of the allow-list
/// module's prefixes, so every decision is "refuse" and no session is created (the packets
/// stay unsolicited on every iteration).
fn nat_and_probes(policy: Option<&str>) -> (Nat, Vec<Packet>) {
    let mut cfg = config(1, 0);
    cfg.udp_filtering = FilteringBehavior::AddressDependent;
    let nat = Nat::new(cfg).expect("valid config");
    if let Some(name) = policy {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/policy-modules").join(name);
        let spec = ModuleSpec::read(&path, OnError::Deny, DEFAULT_FUEL_PER_CALL).expect("example module");
        let module = Arc::new(
            ModulePolicy::load(&spec, FilteringBehavior::AddressDependent, FilteringBehavior::AddressDependent)
                .expect("loads"),
        );
        nat.set_filtering_policy(Protocol::Udp, Some(module));
    }
    let mut out = udp((Ipv4Addr::new(10, 100, 0, 1), 5000), (REMOTE, REMOTE_PORT));
    assert!(matches!(nat.handle_packet(NOW, &mut out), Verdict::Forward { .. }));
    let ext = source(&out);
    // 198.51.100.128-254 is in neither 203.0.113.0/24 nor 198.51.100.0/25 (the allow-list).
    let probes: Vec<Packet> = (0..PROBES)
        .map(|i| udp((Ipv4Addr::new(198, 51, 100, 128 + (i % 127) as u8), 10_000 + i as u16), ext))
        .collect();
    for p in &probes {
        let mut q = *p;
        assert!(matches!(nat.handle_packet(NOW, &mut q), Verdict::Drop(_)), "every probe is refused");
    }
    (nat, probes)
}

fn decisions(c: &mut Criterion) {
    let mut g = c.benchmark_group("policy_decision");
    g.throughput(Throughput::Elements(PROBES as u64));
    let mut bufs = vec![[0u8; 64]; PROBES];
    for (label, policy) in [
        ("builtin_adf", None),
        ("allowlist_rate_wat", Some("allowlist-rate.wat")),
        ("full_cone_3478_wat", Some("full-cone-3478.wat")),
    ] {
        let (nat, probes) = nat_and_probes(policy);
        let mut worker = nat.worker();
        g.bench_function(label, |b| {
            b.iter(|| {
                bufs.copy_from_slice(&probes);
                for p in bufs.iter_mut() {
                    black_box(worker.handle_packet(NOW, p));
                }
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = netnat_bench::criterion_settings();
    targets = decisions
}
criterion_main!(benches);
