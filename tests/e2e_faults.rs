//! End to end, faults of the live daemon (issue 6 item 4) beyond those of `e2e_lifecycle.rs`
//! (kill -9, a corrupt state file, restart): the control socket used by a non-root user
//! (refused by the socket's mode and, behind it, by the peer-credential check; nothing
//! changes); malformed control requests (an error reply each, or a clean close for an
//! over-long line; the connection and the daemon keep serving); a half-written state file
//! (refused with an error naming it, left byte for byte); the NFQUEUE falling behind (a
//! stalled daemon: the kernel drops and counts, nothing leaks untranslated, the backlog is
//! worked off; a burst faster than the daemon: it stays up and answers).
//!
//! Kernel queue drops: `Get-NetNatStatistics` reports the kernel's per-queue counters of the
//! daemon's own queues (its `nfqueue` entry, read from `/proc/net/netfilter/nfnetlink_queue`);
//! the tests read that file in the nat namespace too, as the independent witness.
//!
//! Runs as root (CI); without root it prints `SKIPPED (needs root)` and passes.
#![cfg(target_os = "linux")]

mod e2e_common;
#[path = "e2e_common/hostile.rs"]
mod hostile;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use e2e_common::*;
use hostile::*;

fn new_winnat(t: &Topology) {
    t.cmdlet(&["New-NetNat", "-Name", "WinNAT", "-InternalIPInterfaceAddressPrefix", "10.100.0.0/16"]);
}

fn add_mapping(t: &Topology) {
    t.cmdlet(&[
        "Add-NetNatStaticMapping",
        "-NatName",
        "WinNAT",
        "-Protocol",
        "TCP",
        "-ExternalIPAddress",
        "0.0.0.0",
        "-ExternalPort",
        "8080",
        "-InternalIPAddress",
        VM,
        "-InternalPort",
        "80",
    ]);
}

/// What the configuration looks like through the cmdlets.
fn config_snapshot(t: &Topology) -> Vec<String> {
    ["Get-NetNat", "Get-NetNatStaticMapping", "Get-NetNatExternalAddress", "Get-NetNatGlobal"]
        .iter()
        .map(|c| t.cmdlet_output(&[c, "-o", "json"]))
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .collect()
}

/// A copy of the netnat binary that any user may run (the build tree may not be).
fn world_executable_netnat(t: &Topology) -> PathBuf {
    let dir = t.dir.path().join("bin");
    std::fs::create_dir(&dir).unwrap();
    let bin = dir.join("netnat");
    std::fs::copy(NETNAT, &bin).expect("copy netnat");
    for p in [t.dir.path(), &dir] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// Runs `netnat <args>` as user nobody (no groups) against this topology's daemon.
fn as_nobody(t: &Topology, bin: &Path, args: &[&str]) -> Output {
    let mut c = t.cmd(&t.nat, &["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]);
    c.arg(bin).arg("--socket").arg(t.socket()).args(args);
    run(&mut c)
}

/// Cmdlets a non-root user tries: reading sessions and changing the configuration.
const ATTEMPTS: &[&[&str]] = &[
    &["Get-NetNatSession"],
    &["Get-NetNat"],
    &["New-NetNat", "-Name", "Evil", "-InternalIPInterfaceAddressPrefix", "10.200.0.0/16"],
    &["Set-NetNat", "-Name", "WinNAT", "-UdpFilteringBehavior", "EndpointIndependentFiltering"],
    &["Remove-NetNatStaticMapping", "-NatName", "WinNAT"],
    &["Remove-NetNat", "-Name", "WinNAT"],
];

#[test]
fn a_non_root_user_is_refused_by_the_control_socket_and_changes_nothing() {
    if !root_or_skip("non_root_control") {
        return;
    }
    let mut t = Topology::new();
    t.start_daemon();
    new_winnat(&t);
    add_mapping(&t);
    let before = config_snapshot(&t);
    let state = std::fs::read(t.state_dir().join("state.json")).expect("state file");
    let bin = world_executable_netnat(&t);
    assert!(as_nobody(&t, &bin, &["Get-NetNat", "-?"]).status.success(), "nobody cannot even run netnat");

    // 1. The socket is mode 0600 (root's): nobody's connect fails.
    let mode = std::fs::metadata(t.socket()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    for args in ATTEMPTS {
        let out = as_nobody(&t, &bin, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "nobody ran {args:?}: {}", String::from_utf8_lossy(&out.stdout));
        assert!(
            err.contains("Permission denied") && err.contains("root"),
            "{args:?}: the error must say access was denied and that root is needed: {err}"
        );
    }

    // 2. Behind the mode, the daemon checks the peer's uid: with the socket opened to all
    // (a mistake or a hostile chmod), nobody is still refused, by the daemon itself. Its
    // refusal is the first line on the connection, before any request is read. (The
    // system's Python: a per-user install under /root is out of nobody's reach.)
    std::fs::set_permissions(t.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let probe = format!(
        "import socket\ns=socket.socket(socket.AF_UNIX)\ns.settimeout(10)\ns.connect('{}')\nprint(s.makefile().readline().strip(), flush=True)\ntry:\n    s.sendall(b'{{\"cmdlet\":\"Remove-NetNat\"}}\\n')\n    print(s.makefile().readline().strip())\nexcept OSError as e:\n    print('closed', e)\n",
        t.socket().display()
    );
    let out = run(t
        .cmd(
            &t.nat,
            &["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/bin/python3", "-c", &probe],
        )
        .stdin(std::process::Stdio::null()));
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().unwrap_or_default();
    let refusal: serde_json::Value = serde_json::from_str(first)
        .unwrap_or_else(|e| panic!("nobody got no JSON refusal ({e}): {text}{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(refusal["error"]["kind"], "BadRequest", "{refusal}");
    let detail = refusal["error"]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("permission denied") && detail.contains("uid 65534") && detail.contains("as root"),
        "{detail}"
    );
    assert!(!text.contains("\"ok\""), "nobody's request was served: {text}");
    for args in ATTEMPTS {
        let out = as_nobody(&t, &bin, args);
        assert!(
            !out.status.success(),
            "nobody ran {args:?} through a 0666 socket: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(!out.stderr.is_empty(), "{args:?}: refused without a word");
    }

    assert!(t.daemon_exit().is_none(), "the daemon died:\n{}", t.log());
    assert_eq!(config_snapshot(&t), before, "a refused user changed the configuration");
    assert_eq!(std::fs::read(t.state_dir().join("state.json")).unwrap(), state, "state file changed");
}

#[test]
fn a_refused_user_is_told_why_by_the_cmdlet() {
    if !root_or_skip("refused_user_told_why") {
        return;
    }
    let mut t = Topology::new();
    t.start_daemon();
    new_winnat(&t);
    let bin = world_executable_netnat(&t);
    std::fs::set_permissions(t.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    for round in 0..5 {
        for args in ATTEMPTS {
            let out = as_nobody(&t, &bin, args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success());
            assert!(
                err.contains("permission denied") && err.contains("uid 65534") && err.contains("as root"),
                "round {round}, {args:?}: the cmdlet must show the daemon's refusal: {err}"
            );
        }
    }
}

/// Parses a reply line; fails on anything else.
fn reply(answer: Answer, what: &str, t: &Topology) -> serde_json::Value {
    match answer {
        Answer::Line(l) => serde_json::from_str(&l).unwrap_or_else(|e| panic!("{what}: reply is not JSON ({e}): {l}")),
        other => panic!("{what}: no reply line ({other:?}); daemon log:\n{}", t.log()),
    }
}

fn assert_bad_request(v: &serde_json::Value, what: &str) {
    let e = &v["error"];
    assert_eq!(e["kind"], "BadRequest", "{what}: expected a BadRequest error, got {v}");
    let detail = e["detail"].as_str().unwrap_or_default();
    assert!(detail.len() > 10, "{what}: the error must say what is wrong: {v}");
}

#[test]
fn malformed_control_requests_get_an_error_and_the_daemon_keeps_serving() {
    if !root_or_skip("malformed_control") {
        return;
    }
    let mut t = Topology::new();
    t.start_daemon();
    new_winnat(&t);
    let before = config_snapshot(&t);
    let valid = b"{\"cmdlet\":\"Get-NetNat\"}\n";

    let deep = format!("{}\n", "[".repeat(50_000));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("text", b"this is not json\n".to_vec()),
        ("binary garbage", b"\x00\xff\xfe{\x80\x81garbage\x00\n".to_vec()),
        ("truncated JSON", b"{\"cmdlet\": \n".to_vec()),
        ("unknown request kind", b"{\"cmdlet\":\"Format-Volume\"}\n".to_vec()),
        ("no cmdlet tag", b"{\"kind\":\"Get-NetNat\"}\n".to_vec()),
        ("unknown field", b"{\"cmdlet\":\"Get-NetNat\",\"bogus\":1}\n".to_vec()),
        ("wrong type", b"{\"cmdlet\":\"New-NetNat\",\"name\":5,\"internal_prefix\":\"10.1.0.0/16\"}\n".to_vec()),
        ("invalid prefix", b"{\"cmdlet\":\"New-NetNat\",\"name\":\"X\",\"internal_prefix\":\"10.1.0.0/33\"}\n".to_vec()),
        (
            "port out of range",
            b"{\"cmdlet\":\"Add-NetNatStaticMapping\",\"nat_name\":\"WinNAT\",\"protocol\":\"TCP\",\"external_address\":\"0.0.0.0\",\"external_port\":70000,\"internal_address\":\"10.100.10.11\"}\n".to_vec(),
        ),
        ("a number", b"42\n".to_vec()),
        ("null", b"null\n".to_vec()),
        ("a bare string", b"\"Get-NetNat\"\n".to_vec()),
        ("empty line", b"\n".to_vec()),
        ("blank CRLF line", b"   \r\n".to_vec()),
        ("50000 nested arrays", deep.into_bytes()),
    ];
    // One connection for all: after each bad line the same connection still serves.
    let mut s = control_connect(&t);
    for (what, bytes) in &cases {
        let v = reply(exchange(&mut s, bytes), what, &t);
        assert_bad_request(&v, what);
        let ok = reply(exchange(&mut s, valid), &format!("valid request after {what}"), &t);
        assert!(ok.get("ok").is_some(), "after {what}: {ok}");
    }
    drop(s);

    // An over-long line (over the 64 KiB limit, no newline): an error or a clean close,
    // never a hang; the next connection is served.
    let mut s = control_connect(&t);
    match exchange(&mut s, &vec![b'a'; 100 * 1024]) {
        Answer::Line(l) => assert!(l.contains("longer than"), "over-long line: {l}"),
        Answer::Closed => {}
        Answer::Silent => panic!("the daemon neither answered nor closed an over-long line"),
    }
    drop(s);
    let mut s = control_connect(&t);
    let long_name = format!("{{\"cmdlet\":\"Get-NetNat\",\"names\":[\"{}\"]}}\n", "n".repeat(70_000));
    match exchange(&mut s, long_name.as_bytes()) {
        Answer::Line(l) => assert!(l.contains("longer than"), "over-long request: {l}"),
        Answer::Closed => {}
        Answer::Silent => panic!("the daemon neither answered nor closed an over-long request"),
    }
    drop(s);

    // Half a request, then the client goes away.
    let mut s = control_connect(&t);
    s.write_all(b"{\"cmdlet\":\"Get-Ne").unwrap();
    drop(s);

    // Idle clients hold connections open: others are still served.
    let idle: Vec<_> = (0..64).map(|_| control_connect(&t)).collect();
    assert!(answers_within(&t, Duration::from_secs(5)), "64 idle clients block the control socket");
    drop(idle);

    assert!(t.daemon_exit().is_none(), "the daemon died:\n{}", t.log());
    assert_eq!(config_snapshot(&t), before, "a malformed request changed the configuration");
    let mut s = control_connect(&t);
    let ok = reply(exchange(&mut s, valid), "final valid request", &t);
    assert!(ok["ok"]["output"]["objects"].as_array().is_some_and(|a| a.len() == 1), "{ok}");
}

#[test]
fn a_pathological_wildcard_does_not_freeze_the_control_plane() {
    if !root_or_skip("pathological_wildcard") {
        return;
    }
    let mut t = Topology::new();
    t.start_daemon();
    let name = "a".repeat(60);
    t.cmdlet(&["New-NetNat", "-Name", &name, "-InternalIPInterfaceAddressPrefix", "10.100.0.0/16"]);
    // 25 stars, each followed by an 'a', and a final 'b' that never matches: a naive
    // backtracking matcher tries every way to place 25 'a's among 60.
    let pattern = format!("{}*b", "*a".repeat(25));
    let mut s = control_connect(&t);
    let request = format!("{{\"cmdlet\":\"Get-NetNat\",\"names\":[\"{pattern}\"]}}\n");
    let answer = exchange(&mut s, request.as_bytes());
    let mut other = control_connect(&t);
    let next = exchange(&mut other, b"{\"cmdlet\":\"Get-NetNatGlobal\"}\n");
    assert!(
        matches!((&answer, &next), (Answer::Line(_), Answer::Line(_))),
        "wildcard request: {answer:?} within 10 s; a following Get-NetNatGlobal on another connection: {next:?}"
    );
}

/// netnat's chains and nftables table as the kernel holds them.
fn rules_snapshot(t: &Topology) -> String {
    let mut out = String::new();
    for args in [
        &["iptables", "-t", "raw", "-S", "NETNAT-PRE"][..],
        &["iptables", "-t", "mangle", "-S", "NETNAT-POST"],
        &["nft", "list", "table", "ip", "netnat"],
    ] {
        out.push_str(&String::from_utf8_lossy(&run(&mut t.cmd(&t.nat, args)).stdout));
    }
    out
}

#[test]
fn a_half_written_state_file_stops_the_daemon_and_is_left_byte_identical() {
    if !root_or_skip("half_written_state") {
        return;
    }
    let mut t = Topology::new();
    t.start_daemon();
    new_winnat(&t);
    add_mapping(&t);
    t.cmdlet(&[
        "Add-NetNatExternalAddress",
        "-NatName",
        "WinNAT",
        "-IPAddress",
        EXTERNAL,
        "-PortStart",
        "20000",
        "-PortEnd",
        "29999",
    ]);
    let before = config_snapshot(&t);
    assert!(t.stop_daemon("TERM").success());
    // The stopped daemon's rules stay (the vm's traffic fails closed meanwhile).
    let rules_before = rules_snapshot(&t);
    assert!(t.rules_present(), "the fail-closed rules must stay after a clean stop");
    let file = t.state_dir().join("state.json");
    let full = std::fs::read(&file).expect("state file");
    assert!(full.len() > 200, "state file unexpectedly small: {}", String::from_utf8_lossy(&full));

    // A crash in the middle of a non-atomic write, or a copy cut short, at several points.
    for cut in [full.len() / 2, 1, 0, full.len() - 2] {
        let half = &full[..cut];
        std::fs::write(&file, half).unwrap();
        let (status, log) = t.start_daemon_expecting_failure();
        assert!(!status.success(), "cut at {cut}: the daemon started on a half-written state file");
        assert!(
            log.contains(&file.display().to_string()) && log.contains("corrupt"),
            "cut at {cut}: the error must name the file and say it is corrupt:\n{log}"
        );
        assert_eq!(std::fs::read(&file).unwrap(), half, "cut at {cut}: the daemon changed the state file");
        let names: Vec<_> = std::fs::read_dir(t.state_dir()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["state.json"], "cut at {cut}: files left in the state directory");
        assert_eq!(rules_snapshot(&t), rules_before, "cut at {cut}: a daemon that refused to start changed the rules");
        assert!(!t.socket().exists(), "cut at {cut}: control socket left behind");
    }

    // Put the whole file back: nothing was lost.
    std::fs::write(&file, &full).unwrap();
    t.start_daemon();
    assert_eq!(config_snapshot(&t), before, "the configuration did not survive");
}

/// Sends `count` UDP datagrams from the vm to WAN1:9 (nothing listens) as fast as Python
/// can, stopping after `limit_s` seconds; returns how many were sent.
fn udp_burst(t: &Topology, count: u32, limit_s: u32, two_flows: bool) -> u64 {
    let script = format!(
        r#"
deadline = time.time() + {limit_s}
a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); a.bind(('{VM}', 45000))
b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); b.bind(('{VM}', 45001))
dst = [('{WAN1}', 9), ('{WAN2}' if {two} else '{WAN1}', 9)]
n = 0
payload = b'x' * 18
while n < {count}:
    if n % 1024 == 0 and time.time() > deadline: break
    (a if n % 2 else b).sendto(payload, dst[n % 2]); n += 1
print(n)
"#,
        two = if two_flows { "True" } else { "False" }
    );
    python_ok(t, &t.vm, &script, Duration::from_secs(u64::from(limit_s) + 20)).parse().unwrap()
}

#[test]
fn queue_overflow_while_the_daemon_is_stalled_is_dropped_never_leaked_and_recovers() {
    if !root_or_skip("queue_overflow_stalled") {
        return;
    }
    let mut t = Topology::new();
    t.start_daemon();
    new_winnat(&t);
    let (wan, nat) = (t.wan.clone(), t.nat.clone());
    t.udp_echo(&wan, WAN1, 5353);
    let vm = t.vm.clone();
    assert!(t.udp_request(&vm, WAN1, 5353, "before", 3.0).is_some());
    let rows = queue_rows(&t, &nat);
    assert!(!rows.is_empty() && rows.iter().all(|r| r.peer_portid != 0), "the daemon's queues are not bound: {rows:?}");
    let drops_before = kernel_queue_drops(&t, &nat);
    let capture = t.capture_wan();

    // Stall the daemon (as a long GC pause, a swapped-out process or an overloaded CPU
    // would) and send far more than a queue holds (4096 packets).
    const SENT: u32 = 20_000;
    let pid = daemon_pid(&t);
    signal(pid, "STOP");
    let sent = udp_burst(&t, SENT, 15, false);
    let stalled = queue_rows(&t, &nat);
    signal(pid, "CONT");
    assert_eq!(sent, u64::from(SENT), "the burst was cut short by its deadline");
    let waiting: u64 = stalled.iter().map(|r| r.waiting).sum();
    let dropped = stalled.iter().map(|r| r.queue_dropped + r.user_dropped).sum::<u64>() - drops_before;
    eprintln!("stalled daemon: {sent} sent, {waiting} waiting in the queues, {dropped} dropped by the kernel");
    assert!(waiting > 0, "nothing queued while the daemon was stalled: {stalled:?}");
    assert!(stalled.iter().all(|r| r.waiting <= 4096), "a queue grew past its length limit: {stalled:?}");
    assert!(dropped >= sent - 4096 * stalled.len() as u64, "the kernel did not count the overflow: {stalled:?}");

    // The daemon works off its backlog and carries on.
    assert!(
        queues_drain(&t, &nat, Duration::from_secs(30)),
        "the backlog was not worked off: {:?}",
        queue_rows(&t, &nat)
    );
    assert!(t.daemon_exit().is_none(), "the daemon died after the stall:\n{}", t.log());
    assert!(answers_within(&t, Duration::from_secs(10)), "the daemon does not answer after the stall");
    assert_eq!(t.udp_request(&vm, WAN1, 5353, "after", 3.0).as_deref(), Some("echo 203.0.113.1:after"));

    // Overflow is fail-closed: the packets the kernel could not queue were dropped, not let
    // through untranslated; the queued backlog went out translated.
    let seen = capture.stop();
    let leaks: Vec<_> = seen.iter().filter(|(s, d)| is_internal(*s) || is_internal(*d)).collect();
    assert!(leaks.is_empty(), "internal addresses on wan during the overflow: {:?}", &leaks[..leaks.len().min(10)]);
    let out = seen.iter().filter(|(s, d)| s.to_string() == EXTERNAL && d.to_string() == WAN1).count() as u64;
    eprintln!("wan saw {out} translated packets from the burst and the echo test");
    assert!(out >= 1 && out <= sent - dropped + 10, "wan saw {out} packets, {sent} sent, {dropped} dropped");
}

#[test]
fn a_burst_faster_than_the_daemon_leaves_it_up_and_answering() {
    if !root_or_skip("queue_burst") {
        return;
    }
    let mut t = Topology::new();
    t.start_daemon();
    new_winnat(&t);
    let nat = t.nat.clone();
    let vm = t.vm.clone();
    let drops_before = kernel_queue_drops(&t, &nat);
    let translated_before = t.counter(&["translated_out"]);

    // 300 000 small datagrams in two flows (so both queues may work), as fast as Python
    // sends them, at most 25 s; the control plane is asked three times meanwhile.
    let script = r#"
deadline = time.time() + 25
a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); a.bind(('VM', 45000))
b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); b.bind(('VM', 45001))
n = 0
while n < 300000:
    if n % 1024 == 0 and time.time() > deadline: break
    if n % 2: a.sendto(b'x' * 18, ('WAN1', 9))
    else: b.sendto(b'x' * 18, ('WAN2', 9))
    n += 1
print(n)
"#
    .replace("'VM'", &format!("'{VM}'"))
    .replace("'WAN1'", &format!("'{WAN1}'"))
    .replace("'WAN2'", &format!("'{WAN2}'"));
    let generator = python_spawn(&t, &vm, &script, Duration::from_secs(60));
    for _ in 0..3 {
        assert!(answers_within(&t, Duration::from_secs(15)), "the daemon did not answer within 15 s during the burst");
    }
    let sent: u64 = finish(generator, Duration::from_secs(60)).parse().unwrap();
    assert!(queues_drain(&t, &nat, Duration::from_secs(60)), "the backlog was not worked off");
    assert!(t.daemon_exit().is_none(), "the daemon died under the burst:\n{}", t.log());
    let translated = t.counter(&["translated_out"]) - translated_before;
    let dropped = kernel_queue_drops(&t, &nat) - drops_before;
    eprintln!(
        "burst: {sent} sent, {translated} translated, {dropped} dropped by the kernel (queue full or netlink full)"
    );
    assert!(sent >= 10_000, "the generator sent only {sent} packets: not a burst");
    assert!(translated > 0 && translated <= sent + 10, "translated {translated} of {sent}");
    // Every datagram was either translated or dropped by the kernel, which counted it
    // (1% allowed for drops before the queue, e.g. a full veth backlog).
    assert!(
        (translated + dropped) * 100 >= sent * 99,
        "{sent} sent but only {translated} translated and {dropped} counted as queue drops: packets vanished"
    );
    assert!(t.ping_ok(&vm, WAN1), "the NAT does not work after the burst");
    assert!(t.sessions().iter().any(|s| s["InternalSourcePort"] == 45000));
}

#[test]
fn get_netnatstatistics_reports_kernel_queue_drops() {
    if !root_or_skip("queue_drops_reported") {
        return;
    }
    let mut t = Topology::new();
    t.start_daemon();
    new_winnat(&t);
    let nat = t.nat.clone();
    let before = kernel_queue_drops(&t, &nat);
    let pid = daemon_pid(&t);
    signal(pid, "STOP");
    udp_burst(&t, 10_000, 15, false);
    signal(pid, "CONT");
    let kernel = kernel_queue_drops(&t, &nat) - before;
    assert!(kernel > 0);
    assert!(queues_drain(&t, &nat, Duration::from_secs(30)));
    // Any numeric statistic whose name mentions the queue and drops, at least the kernel's.
    let text = t.cmdlet(&["Get-NetNatStatistics"]);
    let v: serde_json::Value = serde_json::from_str(&text).expect("statistics JSON");
    fn find(v: &serde_json::Value, path: &str, out: &mut Vec<(String, u64)>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    find(x, &format!("{path}.{k}"), out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| find(x, path, out)),
            serde_json::Value::Number(n) => out.push((path.to_owned(), n.as_u64().unwrap_or(0))),
            _ => {}
        }
    }
    let mut all = Vec::new();
    find(&v, "", &mut all);
    let reported: u64 = all.iter().filter(|(k, _)| k.contains("queue") && k.contains("drop")).map(|(_, n)| n).sum();
    assert!(
        reported >= kernel,
        "kernel dropped {kernel} queued packets; Get-NetNatStatistics says {reported}:\n{text}"
    );
}
