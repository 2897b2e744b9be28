//! WASM filtering policy modules (`netnat replay --filter-policy FILE.wat`): each example
//! module changes exactly the packets it should, a module keeps its state across decisions
//! and replays stay deterministic, and a module that traps or runs out of fuel is handled as
//! its policy file says without taking the replay down. As in `scenarios_policy.rs`, each
//! scenario runs with and without the module on the same capture.

mod common;

use std::path::{Path, PathBuf};

use common::*;

const A: &str = "10.100.10.11";
const PEER: &str = "198.51.100.10";
/// In the allow-list's 198.51.100.0/25.
const LISTED: &str = "198.51.100.20";
/// Outside both of its prefixes.
const UNLISTED: &str = "198.51.100.200";

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/policy-modules").join(name)
}

fn with_policy(s: &Scenario, path: &Path) -> Outcome {
    let mut s = s.clone();
    s.args(&["--filter-policy", path.to_str().expect("utf-8 path")]);
    s.run()
}

/// The output packets, as (time, bytes).
fn out(o: &Outcome) -> Vec<(std::time::Duration, Vec<u8>)> {
    o.out.iter().map(|r| (r.ts, r.data.clone())).collect()
}

/// `without`'s output minus the packets at `refused` (ms) equals `with`'s.
fn assert_only_refused(without: &Outcome, with: &Outcome, refused: &[u64]) {
    let refused: Vec<_> = refused.iter().map(|&ms| ts(ms)).collect();
    let dropped: Vec<_> = with.drops.iter().map(|r| r.ts).collect();
    assert_eq!(dropped, refused, "exactly these packets are refused{}", with.context());
    let expected: Vec<_> = out(without).into_iter().filter(|(t, _)| !refused.contains(t)).collect();
    assert_eq!(out(with), expected, "every other packet is translated as without the module{}", with.context());
}

#[test]
fn the_allow_list_module_admits_its_prefixes_at_its_rate_and_denies_the_rest() {
    let mut s = Scenario::new();
    // Without the module everything unsolicited gets in.
    s.args(&["--udp-filtering", "EndpointIndependentFiltering"]);
    s.at(0, udp(ep(A, 5000), ep(PEER, 3478), b"open a mapping"));
    let p = s.learn_port(0);
    s.at(100, udp(ep(UNLISTED, 7000), ep(EXT, p), b"not on the list"));
    // Seven listed remotes within one second: five admitted, two rate-limited.
    for i in 0..7u16 {
        s.at(200 + u64::from(i), udp(ep(LISTED, 7000 + i), ep(EXT, p), b"listed"));
    }
    // 203.0.113.0/24 is listed too; a new second opens a new window.
    s.at(1300, udp(ep("203.0.113.77", 7000), ep(EXT, p), b"next second"));
    // An admitted remote's session is live: its next packets are not asked about.
    s.at(1400, udp(ep(LISTED, 7000), ep(EXT, p), b"established"));

    let without = s.run();
    without.assert_drops(&[]);
    // The WAT example and its Rust twin built with the SDK (policy-sdk/examples).
    for module in ["allowlist-rate.wat", "allowlist-rate.wasm"] {
        let with = with_policy(&s, &example(module));
        with.assert_drops(&[("policy_denied", 1), ("policy_rate_limited", 2)]);
        assert_only_refused(&without, &with, &[100, 205, 206]);
        assert_eq!(with.fwd(1300).dst_ep(), ep(A, 5000), "{module}");
    }
}

#[test]
fn the_full_cone_module_opens_port_3478_only_and_filters_the_rest_by_address() {
    let mut s = Scenario::new();
    // The NAT's own behaviour is the strictest; the module overrides it both ways.
    s.args(&["--udp-filtering", "AddressAndPortDependentFiltering"]);
    s.at(0, udp(ep(A, 3478), ep(PEER, 3478), b"stun agent"));
    s.at(1, udp(ep(A, 5000), ep(PEER, 53), b"query"));
    let stun = s.learn_port(0);
    let other = s.learn_port(1);
    s.at(100, udp(ep(LISTED, 40000), ep(EXT, stun), b"a peer reaches the agent"));
    s.at(200, udp(ep(PEER, 54), ep(EXT, other), b"another port of a contacted address"));
    s.at(300, udp(ep(LISTED, 53), ep(EXT, other), b"a stranger"));

    let without = s.run();
    without.assert_drops(&[("filtered", 3)]);
    for module in ["full-cone-3478.wat", "full-cone-3478.wasm"] {
        let with = with_policy(&s, &example(module));
        with.assert_drops(&[("policy_denied", 1)]);
        assert_eq!(with.fwd(100).dst_ep(), ep(A, 3478), "{module}: full cone on 3478");
        assert_eq!(with.fwd(200).dst_ep(), ep(A, 5000), "{module}: address-dependent elsewhere");
        with.assert_dropped(300);
    }
}

#[test]
fn a_module_with_state_replays_the_same_output_every_time() {
    let mut s = Scenario::new();
    s.args(&["--udp-filtering", "EndpointIndependentFiltering"]);
    s.at(0, udp(ep(A, 5000), ep(PEER, 3478), b"open"));
    let p = s.learn_port(0);
    for i in 0..40u16 {
        s.at(100 + 97 * u64::from(i), udp(ep(LISTED, 9000 + i), ep(EXT, p), b"listed"));
    }
    let path = example("allowlist-rate.wasm");
    let first = with_policy(&s, &path);
    let second = with_policy(&s, &path);
    assert!(first.dropped("policy_rate_limited") > 0, "the rate limit bites{}", first.context());
    assert_eq!(out(&first), out(&second));
    assert_eq!(
        first.drops.iter().map(|r| r.ts).collect::<Vec<_>>(),
        second.drops.iter().map(|r| r.ts).collect::<Vec<_>>()
    );
}

/// A module that fails every decision its way, named by a policy file with `on_error`.
fn failing_policy(dir: &Path, body: &str, on_error: &str) -> PathBuf {
    let module = format!(
        r#"(module
  (func (export "netnat_abi_version") (result i32) (i32.const 1))
  (func (export "netnat_inbound") (param i32 i32 i32 i32 i32 i32 i32 i32 i64) (result i32) {body}))"#
    );
    std::fs::write(dir.join("failing.wat"), module).expect("write module");
    let policy = dir.join(format!("policy-{on_error}.toml"));
    let text = format!("[module]\npath = \"failing.wat\"\non_error = \"{on_error}\"\nfuel_per_call = 10000\n");
    std::fs::write(&policy, text).expect("write policy");
    policy
}

#[test]
fn a_trapping_or_endless_module_is_counted_and_handled_as_its_file_says() {
    let mut s = Scenario::new();
    s.args(&["--udp-filtering", "AddressDependentFiltering"]);
    s.at(0, udp(ep(A, 5000), ep(PEER, 53), b"query"));
    let p = s.learn_port(0);
    s.at(100, udp(ep(PEER, 53), ep(EXT, p), b"established: never asked"));
    s.at(200, udp(ep(PEER, 54), ep(EXT, p), b"ADF admits"));
    s.at(300, udp(ep(LISTED, 54), ep(EXT, p), b"ADF refuses"));
    let without = s.run();
    without.assert_drops(&[("filtered", 1)]);

    let dir = tempfile::tempdir().expect("tempdir");
    for (what, body) in
        [("a trap", "unreachable"), ("an endless loop", "(loop br 0) (i32.const 1)"), ("a bad answer", "(i32.const 7)")]
    {
        let deny = with_policy(&s, &failing_policy(dir.path(), body, "deny"));
        deny.assert_drops(&[("policy_failed", 2)]);
        assert_only_refused(&without, &deny, &[200, 300]);
        assert_eq!(deny.stats["policy_module_errors"], 2, "{what}: counted{}", deny.context());
        assert!(deny.stderr.contains("2 decisions failed"), "{what}: said on stderr{}", deny.context());

        let fallback = with_policy(&s, &failing_policy(dir.path(), body, "fallback"));
        fallback.assert_drops(&[("filtered", 1)]);
        assert_eq!(out(&fallback), out(&without), "{what}: the NAT's behaviour decides{}", fallback.context());
        assert_eq!(fallback.stats["policy_module_errors"], 2, "{what}: counted{}", fallback.context());
    }
}

#[test]
fn a_module_can_refuse_new_mappings_toward_a_prefix_and_is_not_asked_for_new_sessions() {
    let mut s = Scenario::new();
    s.at(0, udp(ep(A, 5000), ep(PEER, 53), b"allowed"));
    s.at(10, udp(ep(A, 5001), ep(UNLISTED, 53), b"a new mapping toward 198.51.100.128/25"));
    s.at(20, tcp(ep(A, 6000), ep(UNLISTED, 443), TCP_SYN, 1, 0, b""));
    // A new session of an existing mapping toward the prefix: not a new mapping, not asked.
    s.at(30, udp(ep(A, 5000), ep(UNLISTED, 53), b"same mapping"));
    let dir = tempfile::tempdir().expect("tempdir");
    let module = dir.path().join("no-new-mappings.wat");
    std::fs::write(
        &module,
        r#"(module
  (func (export "netnat_abi_version") (result i32) (i32.const 1))
  (func (export "netnat_inbound") (param i32 i32 i32 i32 i32 i32 i32 i32 i64) (result i32) (i32.const 0))
  (func (export "netnat_outbound")
    (param $protocol i32) (param $internal_addr i32) (param $internal_port i32)
    (param $remote_addr i32) (param $remote_port i32) (param $tcp_flags i32) (param $now_ms i64) (result i32)
    ;; 198.51.100.128/25: deny (2); else fall back (0: allowed, as WinNAT).
    (select (i32.const 2) (i32.const 0)
      (i32.eq (i32.and (local.get $remote_addr) (i32.const 0xffffff80)) (i32.const 0xc6336480)))))"#,
    )
    .expect("write module");
    let without = s.run();
    let with = with_policy(&s, &module);
    without.assert_drops(&[]);
    with.assert_drops(&[("policy_denied", 2)]);
    assert_only_refused(&without, &with, &[10, 20]);
    assert!(with.is_forwarded(30), "{}", with.context());
}
