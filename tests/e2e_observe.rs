//! End to end, observability: the daemon's metrics endpoint (`--metrics-listen`) scraped
//! inside the nat namespace before and after real vm traffic, checked by `promtool check
//! metrics`; `Get-NetNatSession -Detailed` on the live sessions; a non-loopback listen address
//! refused. Runs as root (CI); without root it prints `SKIPPED (needs root)`.
#![cfg(target_os = "linux")]

mod e2e_common;

use std::io::Write;
use std::process::Stdio;

use e2e_common::*;

/// The metrics port, on the nat namespace's own loopback (no clash with the host's ports).
const METRICS: &str = "127.0.0.1:9464";

/// One scrape of the endpoint from inside nat.
fn scrape(t: &Topology) -> String {
    t.ns(&t.nat, &["curl", "-sS", "--fail", "--max-time", "5", &format!("http://{METRICS}/metrics")])
}

/// The value of the sample whose line starts with `series` (name and labels), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_move_with_traffic_and_promtool_accepts_them_and_sessions_have_details() {
    if !root_or_skip("metrics_move_with_traffic") {
        return;
    }
    let mut t = Topology::new();
    t.daemon_args = vec!["--metrics-listen".into(), METRICS.into(), "--session-counters".into()];
    t.start_daemon();
    t.cmdlet(&["New-NetNat", "-Name", "WinNAT", "-InternalIPInterfaceAddressPrefix", "10.100.0.0/16"]);
    let wan = t.wan.clone();
    t.udp_echo(&wan, WAN1, 5353);

    let out = r#"netnat_packets_translated_total{nat="WinNAT",direction="outbound"}"#;
    let created = r#"netnat_sessions_created_total{nat="WinNAT"}"#;
    let before = scrape(&t);
    assert_eq!(sample(&before, out), Some(0.0), "{before}");
    assert_eq!(sample(&before, created), Some(0.0), "{before}");

    for i in 0..3 {
        let answer = t.udp_request(&t.vm, WAN1, 5353, &format!("hello{i}"), 2.0);
        assert_eq!(answer.as_deref(), Some(format!("echo {EXTERNAL}:hello{i}").as_str()));
    }
    assert!(t.ping_ok(&t.vm, WAN1), "ping through the NAT");

    let after = scrape(&t);
    let moved = |series: &str, at_least: f64| {
        let v = sample(&after, series).unwrap_or_else(|| panic!("no {series} in:\n{after}"));
        assert!(v >= at_least, "{series} = {v}, expected at least {at_least}:\n{after}");
    };
    // Three UDP requests (one mapping per source port) and one ping, each answered.
    moved(out, 4.0);
    moved(r#"netnat_packets_translated_total{nat="WinNAT",direction="inbound"}"#, 4.0);
    moved(created, 4.0);
    moved(r#"netnat_sessions{nat="WinNAT",protocol="udp"}"#, 3.0);
    moved(r#"netnat_sessions{nat="WinNAT",protocol="icmp"}"#, 1.0);
    moved(r#"netnat_internal_host_ports_in_use{nat="WinNAT",host="10.100.10.11"}"#, 4.0);
    moved(r#"netnat_internal_hosts{nat="WinNAT"}"#, 1.0);
    moved(r#"netnat_external_ports_in_use{nat="WinNAT",address="203.0.113.1",protocol="udp"}"#, 3.0);
    moved(r#"netnat_thread_up{thread="netnat-queue-0"}"#, 1.0);
    moved(r#"netnat_capture_packets_received_total{queue="0"}"#, 1.0);
    assert_eq!(sample(&after, r#"netnat_nfqueue_dropped_total{queue="0",cause="queue_full"}"#), Some(0.0), "{after}");
    // The same counter as Get-NetNatStatistics, read a moment later (no traffic meanwhile).
    assert_eq!(sample(&after, out), Some(t.counter(&["translated_out"]) as f64));

    match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Err(_) => e2e_common::skip::record_skip("metrics_move_with_traffic: promtool check", "promtool missing"),
        Ok(mut child) => {
            child.stdin.take().unwrap().write_all(after.as_bytes()).unwrap();
            let o = child.wait_with_output().unwrap();
            let said = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
            assert!(o.status.success() && said.trim().is_empty(), "promtool: {said}\n{after}");
        }
    }
    // OpenMetrics when asked for.
    let om = t.ns(
        &t.nat,
        &[
            "curl",
            "-sS",
            "--fail",
            "--max-time",
            "5",
            "-H",
            "Accept: application/openmetrics-text; version=1.0.0",
            &format!("http://{METRICS}/metrics"),
        ],
    );
    assert!(om.ends_with("# EOF\n") && om.contains("# TYPE netnat_packets_translated counter\n"), "{om}");

    // Get-NetNatSession stays WinNAT's; -Detailed adds netnat's fields.
    let plain = t.sessions();
    assert!(plain.iter().all(|s| s.get("IdleSeconds").is_none()), "{plain:?}");
    let text = t.cmdlet(&["Get-NetNatSession", "-Detailed", "-o", "json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&text).expect("sessions JSON");
    assert_eq!(rows.len(), plain.len());
    let udp: Vec<&serde_json::Value> = rows.iter().filter(|r| r["Protocol"] == 17).collect();
    assert_eq!(udp.len(), 3, "{rows:?}");
    for r in udp {
        assert_eq!((&r["TimeoutSeconds"], &r["OpenedDirection"]), (&120.into(), &"Outbound".into()), "{r}");
        assert!(r["TcpState"].is_null(), "{r}");
        let (idle, left) = (r["IdleSeconds"].as_f64().unwrap(), r["TimeLeftSeconds"].as_f64().unwrap());
        assert!((0.0..60.0).contains(&idle) && (idle + left - 120.0).abs() < 0.002, "{r}");
        // --session-counters: one request out ("helloN", 34 bytes of IPv4) and its echo in
        // ("echo 203.0.113.1:helloN", 51 bytes).
        let counts = ["PacketsOut", "PacketsIn", "BytesOut", "BytesIn"].map(|k| r[k].as_u64());
        assert_eq!(counts, [Some(1), Some(1), Some(34), Some(51)], "{r}");
    }
    let icmp = rows.iter().find(|r| r["Protocol"] == 1).expect("the ping's session");
    assert_eq!(icmp["TimeoutSeconds"], 30, "{icmp}");
    let list = t.cmdlet(&["Get-NetNatSession", "-Detailed"]);
    assert!(list.contains("\nOpenedDirection            : Outbound\n"), "{list}");
}

#[test]
fn a_non_loopback_metrics_address_is_refused_with_the_way_out() {
    if !root_or_skip("a_non_loopback_metrics_address_is_refused") {
        return;
    }
    let mut t = Topology::new();
    t.daemon_args = vec!["--metrics-listen".into(), "0.0.0.0:9464".into()];
    let (status, log) = t.start_daemon_expecting_failure();
    assert!(!status.success());
    assert!(log.contains("not a loopback address") && log.contains("--metrics-allow-remote"), "{log}");
    // With the opt-in it serves on every address of nat, e.g. its outside one.
    t.daemon_args.push("--metrics-allow-remote".into());
    t.start_daemon();
    let text = t.ns(&t.nat, &["curl", "-sS", "--fail", "--max-time", "5", "http://203.0.113.1:9464/metrics"]);
    assert!(text.contains("# TYPE netnat_thread_up gauge"), "{text}");
}
