//! `netnat replay --events FILE`: which flows a capture opened and when they ended, as JSON
//! lines in capture time, checked against the translated packets and the session table the
//! replay ends with.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::Value;

const A: &str = "10.100.10.11";
const B: &str = "10.100.10.12";
const PEER: &str = "198.51.100.10";

/// Runs `s` with `--events` into a temp file; returns the outcome and the parsed lines.
fn run_with_events(s: &Scenario) -> (Outcome, Vec<Value>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.jsonl");
    let mut s = s.clone();
    s.args(&["--events", path.to_str().expect("utf-8")]);
    let o = s.run();
    let text = std::fs::read_to_string(&path).expect("the events file exists");
    assert!(text.ends_with('\n'), "whole lines");
    let lines = text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect();
    (o, lines)
}

fn field<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("{key} missing in {v}"))
}

/// The capture time of scenario millisecond `ms`, as the events print it.
fn at(ms: u64) -> String {
    let t = ts(ms);
    let secs = t.as_secs() as i64;
    let dt = chrono::DateTime::from_timestamp(secs, t.subsec_micros() * 1000).unwrap();
    dt.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

#[test]
fn events_tell_which_flows_opened_and_when_and_why_they_ended() {
    let mut s = Scenario::new();
    s.at(0, udp(ep(A, 5000), ep(PEER, 53), b"query"));
    let pu = s.learn_port(0);
    s.at(100, udp(ep(PEER, 53), ep(EXT, pu), b"answer"));
    // B opens and closes a TCP connection.
    s.at(1000, tcp(ep(B, 6000), ep(PEER, 443), TCP_SYN, 100, 0, b""));
    let pt = s.learn_port(1000);
    s.at(1100, tcp(ep(PEER, 443), ep(EXT, pt), TCP_SYN | TCP_ACK, 500, 101, b""));
    s.at(1200, tcp(ep(B, 6000), ep(PEER, 443), TCP_ACK, 101, 501, b""));
    s.at(1300, tcp(ep(B, 6000), ep(PEER, 443), TCP_FIN | TCP_ACK, 101, 501, b""));
    s.at(1400, tcp(ep(PEER, 443), ep(EXT, pt), TCP_FIN | TCP_ACK, 501, 102, b""));
    // Much later (past UDP's 120 s and TCP's 120 s transient timers) A opens another flow,
    // and the timer call before it expires both.
    s.at(secs(300.0), udp(ep(A, 5001), ep(PEER, 53), b"later"));
    let pl = s.learn_port(secs(300.0));

    let (o, events) = run_with_events(&s);
    let summary: Vec<(String, Option<&str>, String)> = events
        .iter()
        .map(|e| (field(e, "event").to_owned(), e["reason"].as_str(), field(e, "internal").to_owned()))
        .collect();
    let a = format!("{A}:5000");
    let b = format!("{B}:6000");
    let later = format!("{A}:5001");
    assert_eq!(
        summary,
        [
            ("mapping_created".into(), None, a.clone()),
            ("session_created".into(), None, a.clone()),
            ("mapping_created".into(), None, b.clone()),
            ("session_created".into(), None, b.clone()),
            ("session_deleted".into(), Some("idle_timeout"), a.clone()),
            ("mapping_deleted".into(), Some("idle_timeout"), a.clone()),
            ("session_deleted".into(), Some("tcp_closed"), b.clone()),
            ("mapping_deleted".into(), Some("tcp_closed"), b.clone()),
            ("mapping_created".into(), None, later.clone()),
            ("session_created".into(), None, later.clone()),
        ],
        "{events:#?}"
    );
    // Endpoints as the packets show them; times in capture time.
    assert_eq!(field(&events[1], "external"), format!("203.0.113.1:{pu}"));
    assert_eq!(field(&events[1], "remote"), format!("{PEER}:53"));
    assert_eq!((field(&events[1], "protocol"), field(&events[3], "protocol")), ("udp", "tcp"));
    assert_eq!(field(&events[3], "external"), format!("203.0.113.1:{pt}"));
    assert_eq!(field(&events[9], "external"), format!("203.0.113.1:{pl}"));
    assert_eq!(field(&events[0], "time"), at(0));
    assert_eq!(field(&events[2], "time"), at(1000));
    assert_eq!(field(&events[4], "time"), at(secs(300.0)), "expired at the timer call the later frame made");
    assert!(events.iter().all(|e| field(e, "nat") == "WinNAT"));
    assert!(events[0].get("remote").is_none(), "mapping events have no remote");

    // What the events leave open is the session table at the end.
    let mut open = BTreeSet::new();
    for e in &events {
        let key = (field(e, "internal").to_owned(), e["remote"].as_str().map(str::to_owned));
        match field(e, "event") {
            "session_created" => assert!(open.insert(key)),
            "session_deleted" => assert!(open.remove(&key)),
            _ => {}
        }
    }
    let rows: BTreeSet<_> = o
        .sessions
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            let internal = format!("{}:{}", r["InternalSourceAddress"].as_str().unwrap(), r["InternalSourcePort"]);
            let remote =
                format!("{}:{}", r["ExternalDestinationAddress"].as_str().unwrap(), r["ExternalDestinationPort"]);
            (internal, Some(remote))
        })
        .collect();
    assert_eq!(open, rows);
}

#[test]
fn refusals_by_a_limit_are_events_too() {
    let mut s = Scenario::new();
    s.args(&["--max-sessions-per-host", "1"]);
    s.at(0, udp(ep(A, 5000), ep(PEER, 53), b"one"));
    s.at(10, udp(ep(A, 5001), ep(PEER, 53), b"over the cap"));
    let (o, events) = run_with_events(&s);
    o.assert_drops(&[("host_session_limit", 1)]);
    let last = events.last().expect("events");
    assert_eq!((field(last, "event"), last["reason"].as_str()), ("limit_reached", Some("host_session_limit")));
    assert_eq!(field(last, "internal"), format!("{A}:5001"));
    assert!(last.get("external").is_none(), "no mapping was made");
    assert_eq!(field(last, "time"), at(10));
}
