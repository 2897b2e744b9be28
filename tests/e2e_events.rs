//! End to end, session events: `netnat daemon --event-log FILE --ipfix-collector ADDR` and
//! `Get-NetNatSession -Watch` while the vm opens flows through the NAT, they expire and the
//! NAT is removed. The log and the watcher name every flow with its internal, external and
//! remote endpoints, and each ends with its reason; a real IPFIX collector (nfdump, in the
//! nat namespace) lists every event of the log. Runs as root (CI); without root it prints `SKIPPED (needs
//! root)`.
#![cfg(target_os = "linux")]

mod e2e_common;

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::Duration;

use e2e_common::nfdump::{event_key, record_key, Collector};
use e2e_common::*;
use serde_json::Value;

fn lines_of(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}"))).collect()
}

fn is(e: &Value, event: &str, internal: &str) -> bool {
    e["event"] == event && e["internal"] == internal
}

#[test]
fn the_event_log_and_a_watcher_tell_which_flows_opened_expired_and_were_removed() {
    if !root_or_skip("the_event_log_and_a_watcher_tell") {
        return;
    }
    let mut t = Topology::new();
    let log = t.dir.path().join("events.jsonl");
    let nat_ns = t.nat.clone();
    let collector = Collector::start("e2e_events: nfdump", &["ip", "netns", "exec", &nat_ns], 4739);
    t.daemon_args = vec!["--event-log".into(), log.display().to_string()];
    if let Some(c) = &collector {
        t.daemon_args.extend(["--ipfix-collector".to_owned(), c.addr()]);
    }
    t.start_daemon();
    t.cmdlet(&["New-NetNat", "-Name", "WinNAT", "-InternalIPInterfaceAddressPrefix", "10.100.0.0/16"]);
    t.cmdlet(&["Set-NetNat", "-Name", "WinNAT", "-UdpIdleSessionTimeout", "2"]);
    let wan = t.wan.clone();
    t.udp_echo(&wan, WAN1, 5353);

    // A watcher, from before the traffic.
    let socket = t.socket().display().to_string();
    let nat = t.nat.clone();
    let watcher = t.spawn(&nat, &[NETNAT, "--socket", &socket, "Get-NetNatSession", "-Watch", "-o", "json"]);
    let stdout = watcher.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));

    for i in 0..2 {
        let answer = t.udp_request(&t.vm, WAN1, 5353, &format!("hello{i}"), 2.0);
        assert_eq!(answer.as_deref(), Some(format!("echo {EXTERNAL}:hello{i}").as_str()));
    }
    let sessions = t.sessions();
    let udp: Vec<&Value> = sessions.iter().filter(|s| s["Protocol"] == 17).collect();
    assert_eq!(udp.len(), 2, "{sessions:?}");
    let internals: Vec<String> = udp.iter().map(|s| format!("{VM}:{}", s["InternalSourcePort"])).collect();

    // The watcher sees both flows open, with the endpoints Get-NetNatSession shows.
    let mut watched = Vec::new();
    let seen_both = wait_until(Duration::from_secs(5), || {
        watched.extend(rx.try_iter());
        let events = lines_of(&watched.join("\n"));
        internals.iter().all(|i| events.iter().any(|e| is(e, "session_created", i)))
    });
    assert!(seen_both, "watcher lines: {watched:#?}");
    for s in &udp {
        let internal = format!("{VM}:{}", s["InternalSourcePort"]);
        let external = format!("{}:{}", s["ExternalSourceAddress"].as_str().unwrap(), s["ExternalSourcePort"]);
        let events = lines_of(&watched.join("\n"));
        let created = events.iter().find(|e| is(e, "session_created", &internal)).expect("created");
        assert_eq!(created["external"], external.as_str());
        assert_eq!(created["remote"], format!("{WAN1}:5353").as_str());
        assert_eq!((created["nat"].as_str(), created["protocol"].as_str()), (Some("WinNAT"), Some("udp")));
        assert!(events.iter().any(|e| is(e, "mapping_created", &internal) && e["external"] == external.as_str()));
    }

    // Idle for 2 s: both expire, and the log says so.
    let read_log = || lines_of(&std::fs::read_to_string(&log).unwrap_or_default());
    let expired = wait_until(Duration::from_secs(10), || {
        let events = read_log();
        internals.iter().all(|i| {
            events.iter().any(|e| is(e, "session_deleted", i) && e["reason"] == "idle_timeout")
                && events.iter().any(|e| is(e, "mapping_deleted", i))
        })
    });
    assert!(expired, "event log:\n{}", std::fs::read_to_string(&log).unwrap_or_default());

    // The ping's session is still alive (ICMP 30 s) when the NAT goes: removed.
    assert!(t.ping_ok(&t.vm, WAN1));
    t.cmdlet(&["Remove-NetNat", "-Name", "WinNAT"]);
    let removed = wait_until(Duration::from_secs(5), || {
        read_log()
            .iter()
            .any(|e| e["event"] == "session_deleted" && e["reason"] == "removed" && e["protocol"] == "icmp")
    });
    assert!(removed, "event log:\n{}", std::fs::read_to_string(&log).unwrap_or_default());

    // The watcher got the same lines as the log, in the same order.
    std::thread::sleep(Duration::from_millis(300));
    watched.extend(rx.try_iter());
    let logged: Vec<String> = std::fs::read_to_string(&log).unwrap().lines().map(str::to_owned).collect();
    assert!(!watched.is_empty());
    assert_eq!(watched, logged[logged.len() - watched.len()..], "the watcher's lines are the log's");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&log).unwrap().permissions().mode() & 0o777, 0o600);
    }

    // The collector got every event of the log, with the same endpoints.
    if let Some(collector) = collector {
        let got = collector.stop_and_read();
        let mut listed: Vec<String> = got.records.iter().map(record_key).collect();
        let mut expected: Vec<String> =
            lines_of(&std::fs::read_to_string(&log).unwrap()).iter().map(event_key).collect();
        listed.sort();
        expected.sort();
        assert_eq!(listed, expected, "nfcapd said:\n{}", got.said);
        assert!(got.said.contains("Sequence Errors: 0,"), "nfcapd said:\n{}", got.said);
    }
}
