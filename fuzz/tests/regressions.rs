//! Every input a fuzz target once failed on, run again under `cargo test` (stable, no
//! sanitizer): `fuzz/regressions/<target>/fixed/*` must pass; `fuzz/regressions/<target>/open/*`
//! are findings not fixed yet (see fuzz/README.md) and run only with `-- --ignored`.
//!
//! Run: `cd fuzz && cargo test` (add `-- --ignored open` to see the open findings fail).

use std::path::Path;

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 3] = [
    ("packet_outbound_inbound", netnat_fuzz::targets::packet_outbound_inbound::fuzz_one),
    ("operation_sequence", netnat_fuzz::targets::operation_sequence::fuzz_one),
    ("pcap_reader", netnat_fuzz::targets::pcap_reader::fuzz_one),
];

/// Runs every file of `fuzz/regressions/<target>/<state>/`; returns the failures.
fn run_all(state: &str) -> (usize, Vec<String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    let (mut ran, mut failed) = (0, Vec::new());
    for (name, target) in TARGETS {
        let Ok(dir) = std::fs::read_dir(root.join(name).join(state)) else { continue };
        for entry in dir {
            let path = entry.expect("readable directory").path();
            let data = std::fs::read(&path).expect("readable regression file");
            ran += 1;
            if std::panic::catch_unwind(|| target(&data)).is_err() {
                failed.push(path.display().to_string());
            }
        }
    }
    (ran, failed)
}

#[test]
fn fixed_findings_stay_fixed() {
    let (_, failed) = run_all("fixed");
    assert!(failed.is_empty(), "regressions fail again: {failed:#?}");
}

#[test]
#[ignore = "open findings: each fails until the engine is fixed (fuzz/README.md)"]
fn open_findings_still_fail() {
    let (ran, failed) = run_all("open");
    assert_eq!(failed.len(), ran, "some open findings pass now; move them to fixed/");
}

/// Replays one input with a trace of every step on stderr:
/// `NETNAT_FUZZ_TARGET=operation_sequence NETNAT_FUZZ_INPUT=artifacts/... cargo test --test regressions trace -- --ignored --nocapture`
#[test]
#[ignore = "a tool, not a test: set NETNAT_FUZZ_TARGET and NETNAT_FUZZ_INPUT"]
fn trace() {
    let (Ok(name), Ok(input)) = (std::env::var("NETNAT_FUZZ_TARGET"), std::env::var("NETNAT_FUZZ_INPUT")) else {
        panic!("set NETNAT_FUZZ_TARGET (one of {:?}) and NETNAT_FUZZ_INPUT", TARGETS.map(|t| t.0));
    };
    let target = TARGETS.iter().find(|t| t.0 == name).unwrap_or_else(|| panic!("no target {name:?}")).1;
    let data = std::fs::read(&input).unwrap_or_else(|e| panic!("cannot read {input}: {e}"));
    netnat_fuzz::TRACE.store(true, std::sync::atomic::Ordering::Relaxed);
    target(&data);
}
