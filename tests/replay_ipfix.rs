//! `netnat replay --ipfix-collector ADDR:PORT` against a real collector (Debian's nfdump:
//! `nfcapd` receives, `nfdump` reads back): every event the replay reports in `--events` is
//! listed by nfdump with its natEvent, protocol and internal, external and remote endpoints
//! and its time, and nfcapd counts every record with no sequence gap.
#![cfg(target_os = "linux")]

mod common;

use common::nfdump::{event_key, record_key, Collector};
use common::*;
use serde_json::Value;

const PEER: &str = "198.51.100.10";

#[test]
fn nfdump_lists_every_mapping_and_session_the_replay_reported() {
    let Some(collector) = Collector::start("replay_ipfix::nfdump_lists_every_mapping_and_session", &[], 0) else {
        return;
    };
    let mut s = Scenario::new();
    s.args(&["--max-sessions-per-host", "40"]);
    // 60 hosts x 1 UDP flow, 20 hosts x 2 TCP flows; a host over its cap; everything expires
    // at 300 s: mapping, session and limit events, several hundred (more than one message).
    for h in 0..60u16 {
        s.at(u64::from(h), udp(ep(&format!("10.100.20.{}", h + 1), 5000 + h), ep(PEER, 53), b"q"));
    }
    for h in 0..20u16 {
        for (k, port) in [6000u16, 6001].into_iter().enumerate() {
            s.at(
                100 + 2 * u64::from(h) + k as u64,
                tcp(ep(&format!("10.100.21.{}", h + 1), port), ep(PEER, 443), TCP_SYN, 1, 0, b""),
            );
        }
    }
    for port in 0..41u16 {
        s.at(200 + u64::from(port), udp(ep("10.100.22.1", 7000 + port), ep(PEER, 53), b"burst"));
    }
    s.at(secs(300.0), udp(ep("10.100.23.1", 8000), ep(PEER, 53), b"late"));
    let dir = tempfile::tempdir().unwrap();
    let events_path = dir.path().join("events.jsonl");
    s.args(&["--events", events_path.to_str().unwrap(), "--ipfix-collector", &collector.addr()]);
    let o = s.run();
    o.assert_drops(&[("host_session_limit", 1)]);

    let events: Vec<Value> =
        std::fs::read_to_string(&events_path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let got = collector.stop_and_read();
    assert!(events.len() > 300, "{} events", events.len());
    assert!(got.said.contains(&format!("Flows: {},", events.len())), "nfcapd said:\n{}", got.said);
    assert!(got.said.contains("Sequence Errors: 0,"), "nfcapd said:\n{}", got.said);
    let mut listed: Vec<String> = got.records.iter().map(record_key).collect();
    let mut expected: Vec<String> = events.iter().map(event_key).collect();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected);
    // Capture times, to the millisecond (UTC). nfdump 1.7.1 prints the milliseconds without
    // leading zeros ("20.1" is 20.001 s), so they are read back as a number.
    let padded = |t: &str| {
        let (secs, ms) = t.split_once('.').unwrap_or((t, "0"));
        format!("{secs}.{:03}", ms.parse::<u32>().unwrap())
    };
    let mut times: Vec<String> = got.records.iter().map(|r| padded(r["t_event"].as_str().unwrap())).collect();
    let mut want: Vec<String> = events.iter().map(|e| e["time"].as_str().unwrap()[..23].to_owned()).collect();
    times.sort();
    want.sort();
    assert_eq!(times, want);
    // nfdump's names for the values (its JSON output knows RFC 8158's table).
    let names: std::collections::BTreeSet<String> = got
        .records
        .iter()
        .map(|r| format!("{}={}", r["nat_event_id"].as_str().unwrap_or("-"), r["nat_event"].as_str().unwrap_or("-")))
        .collect();
    let want = [
        "13=Quota Exceeded",
        "4=NAT44 session create",
        "5=NAT44 session delete",
        "8=NAT44 BIB create",
        "9=NAT44 BIB delete",
    ];
    assert_eq!(names.into_iter().collect::<Vec<_>>(), want);
    // A mapping as the translated packet shows it.
    let first_port = o.fwd(0).sport();
    let key = format!("8 17 10.100.20.1:5000 203.0.113.1:{first_port} 0.0.0.0:0");
    assert!(listed.contains(&key), "{key} in {listed:?}");
}
