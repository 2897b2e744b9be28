//! Filtering policy files (`netnat replay --filter-policy FILE`): a policy changes exactly the
//! packets it should. Each scenario runs twice, with and without the policy, on the same
//! capture and flags: the output with the policy is the output without it minus the packets
//! the policy refused (or plus the ones it allowed), and each refusal is counted under its
//! reason.

mod common;

use std::path::PathBuf;

use common::*;

const A: &str = "10.100.10.11";
const B: &str = "10.100.10.12";
/// A remote the hosts talk to.
const PEER: &str = "198.51.100.10";
/// Remotes in the denied prefix 198.51.100.128/25.
const BAD1: &str = "198.51.100.200";
const BAD2: &str = "198.51.100.201";
/// A stranger outside it.
const STRANGER: &str = "198.51.100.20";

/// A policy file in a directory that lives as long as the value.
struct PolicyFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn policy_file(text: &str) -> PolicyFile {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, text).expect("write policy");
    PolicyFile { _dir: dir, path }
}

fn with_policy(s: &Scenario, policy: &PolicyFile) -> Outcome {
    let mut s = s.clone();
    s.args(&["--filter-policy", policy.path.to_str().expect("utf-8 path")]);
    s.run()
}

/// The output packets, as (time, bytes).
fn out(o: &Outcome) -> Vec<(std::time::Duration, Vec<u8>)> {
    o.out.iter().map(|r| (r.ts, r.data.clone())).collect()
}

#[test]
fn a_denied_remote_is_dropped_and_counted_and_nothing_else_changes() {
    let mut s = Scenario::new();
    s.args(&["--udp-filtering", "EndpointIndependentFiltering", "--tcp-filtering", "EndpointIndependentFiltering"]);
    s.at(0, udp(ep(A, 5000), ep(PEER, 3478), b"stun"));
    s.at(1, tcp(ep(A, 6000), ep(PEER, 443), TCP_SYN, 1000, 0, b""));
    // A's own flow to a remote in the denied prefix.
    s.at(2, udp(ep(A, 5001), ep(BAD1, 53), b"query"));
    let pu = s.learn_port(0);
    let pt = s.learn_port(1);
    let pq = s.learn_port(2);
    s.at(100, udp(ep(PEER, 3478), ep(EXT, pu), b"answer"));
    s.at(200, udp(ep(BAD1, 9999), ep(EXT, pu), b"unsolicited")); // denied
    s.at(300, udp(ep(STRANGER, 9999), ep(EXT, pu), b"unsolicited")); // EIF admits
    s.at(400, tcp(ep(BAD2, 40000), ep(EXT, pt), TCP_SYN, 5000, 0, b"")); // denied
    s.at(500, tcp(ep(STRANGER, 40000), ep(EXT, pt), TCP_SYN, 5000, 0, b"")); // EIF admits
                                                                             // The reply on A's own session to the denied remote is a live session: not judged.
    s.at(600, udp(ep(BAD1, 53), ep(EXT, pq), b"reply"));
    // Another port of that remote is a new session on the mapping: judged, denied.
    s.at(700, udp(ep(BAD1, 54), ep(EXT, pq), b"other port"));
    s.at(800, udp(ep(B, 7000), ep(BAD2, 53), b"outbound is never filtered"));

    let policy = policy_file(
        r#"
[[rule]]
action = "deny"
remote = "198.51.100.128/25"
"#,
    );
    let without = s.run();
    let with = with_policy(&s, &policy);

    let denied = [200, 400, 700];
    without.assert_drops(&[]);
    with.assert_drops(&[("policy_denied", denied.len() as u64)]);
    let dropped: Vec<_> = with.drops.iter().map(|r| r.ts).collect();
    assert_eq!(dropped, denied.map(ts).to_vec(), "exactly the denied packets are in --drops{}", with.context());
    let expected: Vec<_> = out(&without).into_iter().filter(|(t, _)| !denied.map(ts).contains(t)).collect();
    assert_eq!(out(&with), expected, "every other packet is translated as without the policy{}", with.context());
    assert_eq!(with.fwd(600).dst_ep(), ep(A, 5001), "the live session to the denied remote still answers");
}

#[test]
fn an_allow_rule_admits_a_remote_the_fallback_refuses_but_creates_no_mapping() {
    let mut s = Scenario::new();
    // Default: AddressDependentFiltering.
    s.at(0, udp(ep(A, 5000), ep(PEER, 3478), b"stun"));
    let pu = s.learn_port(0);
    s.at(100, udp(ep(STRANGER, 9000), ep(EXT, pu), b"allowed in"));
    s.at(200, udp(ep(BAD1, 9000), ep(EXT, pu), b"not allowed"));
    // The allowed remote to an external port nobody holds: no mapping, whatever the policy.
    let free = if pu == 60000 { 60001 } else { 60000 };
    s.at(300, udp(ep(STRANGER, 9000), ep(EXT, free), b"no mapping"));

    let policy = policy_file(
        r#"
fallback = "AddressDependentFiltering"
[[rule]]
action = "allow"
remote = "198.51.100.20"
protocol = "udp"
internal = "10.100.10.11/32"
"#,
    );
    let without = s.run();
    let with = with_policy(&s, &policy);

    without.assert_drops(&[("filtered", 2), ("no_mapping", 1)]);
    with.assert_drops(&[("filtered", 1), ("no_mapping", 1)]);
    assert!(!without.is_forwarded(100));
    assert_eq!(with.fwd(100).dst_ep(), ep(A, 5000), "the allowed remote reaches the mapping");
    with.assert_dropped(200);
    with.assert_dropped(300);
    let extra: Vec<_> = out(&with).into_iter().filter(|(t, _)| *t != ts(100)).collect();
    assert_eq!(extra, out(&without), "nothing else changes{}", with.context());
}

#[test]
fn the_rate_limit_counts_new_inbound_sessions_per_host_by_packet_time() {
    let mut s = Scenario::new();
    s.args(&["--udp-filtering", "EndpointIndependentFiltering"]);
    s.at(0, udp(ep(A, 5000), ep(PEER, 3478), b"a"));
    s.at(1, udp(ep(B, 5000), ep(PEER, 3478), b"b"));
    let pa = s.learn_port(0);
    let pb = s.learn_port(1);
    // Five strangers within one second at A: two get in. B has its own window.
    for (i, ms) in [1000, 1100, 1200, 1300, 1999].into_iter().enumerate() {
        s.at(ms, udp(ep(STRANGER, 10_000 + i as u16), ep(EXT, pa), b"hello"));
    }
    s.at(2001, udp(ep(STRANGER, 20_000), ep(EXT, pb), b"hello"));
    // A's window opened at 1000 ms: at 2000 ms a new one opens.
    s.at(2002, udp(ep(STRANGER, 10_100), ep(EXT, pa), b"hello"));
    // Packets on admitted sessions are not counted.
    s.at(2003, udp(ep(STRANGER, 10_000), ep(EXT, pa), b"again"));
    s.at(2004, udp(ep(STRANGER, 10_001), ep(EXT, pa), b"again"));

    let policy = policy_file(
        r#"
[[limit]]
internal = "10.100.0.0/16"
new_inbound_per_second = 2
"#,
    );
    let without = s.run();
    let with = with_policy(&s, &policy);
    without.assert_drops(&[]);
    let limited = [1200, 1300, 1999];
    with.assert_drops(&[("policy_rate_limited", limited.len() as u64)]);
    let expected: Vec<_> = out(&without).into_iter().filter(|(t, _)| !limited.map(ts).contains(t)).collect();
    assert_eq!(out(&with), expected, "{}", with.context());
    // Deterministic: the same capture gives the same bytes again.
    assert_eq!(out(&with_policy(&s, &policy)), out(&with));
}
