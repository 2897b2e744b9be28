//! End to end with the offloads every Linux host has on (issue 5): TCP sends GSO
//! super-packets of up to 64 KiB with partial checksums (`CHECKSUM_PARTIAL`) over veth, and
//! the daemon takes them whole through NFQUEUE (`NFQA_CFG_F_GSO`) instead of having the
//! kernel cut them into ~44 segments that each cross to user space. The witnesses:
//! - bulk TCP both ways (upload vm -> wan, download wan -> vm) arrives byte for byte;
//! - `Get-NetNatStatistics` counts GSO super-packets and completed checksums (`nfqueue`
//!   entry), so super-packets really crossed;
//! - the receivers' kernels found no bad checksum (`InCsumErrors` in `/proc/net/snmp` of wan
//!   and vm stays 0): the translated packets carry valid checksums;
//! - UDP GSO datagrams (`UDP_SEGMENT`) and ICMP still cross, intact;
//! - a bulk hairpinned download (which the daemon sends from a raw socket, so it cuts TCP
//!   super-packets to the MTU itself) arrives intact.
//!
//! Runs as root (CI); without root it prints `SKIPPED (needs root)` and passes.
#![cfg(target_os = "linux")]

mod e2e_common;
#[path = "e2e_common/hostile.rs"]
mod hostile;

use std::time::Duration;

use e2e_common::*;
use hostile::*;

fn new_winnat(t: &Topology) {
    t.cmdlet(&["New-NetNat", "-Name", "WinNAT", "-InternalIPInterfaceAddressPrefix", "10.100.0.0/16"]);
}

/// Fails unless the vm's veth has the offloads that make super-packets and partial checksums.
fn assert_offloads_on(t: &Topology) {
    let out = run(&mut t.cmd(&t.vm, &["ethtool", "-k", &t.vm_if]));
    if !out.status.success() {
        eprintln!("ethtool not available; assuming veth's default offloads (TSO and checksum on)");
        return;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    for feature in ["tcp-segmentation-offload: on", "tx-checksumming: on"] {
        assert!(text.contains(feature), "vm's veth should have {feature}:\n{text}");
    }
}

/// Bytes `len` of the test pattern (not periodic at any power of two).
fn pattern(len: usize) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

#[test]
fn bulk_tcp_crosses_as_gso_super_packets_byte_for_byte_with_valid_checksums() {
    if !root_or_skip("bulk_tcp_gso") {
        return;
    }
    let mut t = Topology::new();
    t.start_daemon();
    new_winnat(&t);
    assert_offloads_on(&t);
    let (vm, wan) = (t.vm.clone(), t.wan.clone());
    let tcp_errors_before = (t.checksum_errors(&wan, "Tcp"), t.checksum_errors(&vm, "Tcp"));

    // Upload, vm -> wan: 32 MiB of hash output; the server reports length, SHA-256 and the
    // peer address it saw (connections that send nothing are readiness probes).
    const UP: usize = 32 << 20;
    let server = python_spawn(
        &t,
        &wan,
        &format!(
            "import hashlib\n\
             l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             l.bind(('{WAN1}', 7100)); l.listen(4); l.settimeout(60)\n\
             while True:\n\
             \x20   c, peer = l.accept(); c.settimeout(60); h = hashlib.sha256(); n = 0\n\
             \x20   while True:\n\
             \x20       d = c.recv(1 << 20)\n\
             \x20       if not d: break\n\
             \x20       h.update(d); n += len(d)\n\
             \x20   if n: break\n\
             print(n, h.hexdigest(), peer[0])\n"
        ),
        Duration::from_secs(90),
    );
    let probe = format!("socket.create_connection(('{WAN1}', 7100), 1).close()");
    assert!(
        wait_until(Duration::from_secs(10), || python(&t, &vm, &probe, Duration::from_secs(3)).status.success()),
        "the upload server did not start (or the NAT does not pass TCP):\n{}",
        t.log()
    );
    let client = python_ok(
        &t,
        &vm,
        &format!(
            "import hashlib\n\
             data = b''.join(hashlib.sha256(i.to_bytes(4, 'big')).digest() for i in range({UP} // 32))\n\
             c = socket.create_connection(('{WAN1}', 7100), 10); c.settimeout(60)\n\
             c.sendall(data); c.shutdown(socket.SHUT_WR); c.recv(1); c.close()\n\
             print(len(data), hashlib.sha256(data).hexdigest())\n"
        ),
        Duration::from_secs(90),
    );
    let received = finish(server, Duration::from_secs(90));
    let fields: Vec<&str> = received.split_whitespace().collect();
    assert_eq!(fields.len(), 3, "upload server said {received:?}");
    assert_eq!(format!("{} {}", fields[0], fields[1]), client, "the upload arrived intact");
    assert_eq!(fields[2], EXTERNAL, "wan saw the external address");

    // Download, wan -> vm: 32 MiB over HTTP.
    const DOWN: usize = 32 << 20;
    let blob_dir = t.dir.path().join("www");
    std::fs::create_dir(&blob_dir).unwrap();
    let blob = pattern(DOWN);
    std::fs::write(blob_dir.join("blob"), &blob).unwrap();
    t.http_server(&wan, WAN1, 8000, &blob_dir);
    let got = t.dir.path().join("got");
    let curl =
        run(t.cmd(&vm, &["curl", "-sS", "--max-time", "60", "-o"]).arg(&got).arg(format!("http://{WAN1}:8000/blob")));
    assert!(curl.status.success(), "curl through the NAT failed: {}", String::from_utf8_lossy(&curl.stderr));
    assert!(std::fs::read(&got).unwrap() == blob, "downloaded bytes differ from the served file");

    // Super-packets crossed whole, their partial checksums were completed, nothing refused.
    let gso = t.counter(&["gso_packets"]);
    let completed = t.counter(&["checksums_completed"]);
    let received = t.counter(&["received"]);
    assert!(gso > 0, "no GSO super-packet reached the daemon:\n{}", t.cmdlet(&["Get-NetNatStatistics"]));
    assert!(completed > 0, "no partial checksum was completed:\n{}", t.cmdlet(&["Get-NetNatStatistics"]));
    assert_eq!(t.counter(&["checksum_not_ready"]), 0);
    assert_eq!(t.counter(&["too_long"]), 0);
    assert_eq!(t.counter(&["verdict_errors"]), 0);
    // 64 MiB crossed as ~2,000 packets here (data and ACKs); with `--no-gso` ~51,000.
    assert!(received < 10_000, "{received} packets crossed for 64 MiB: super-packets were segmented");

    let tcp_errors =
        (t.checksum_errors(&wan, "Tcp") - tcp_errors_before.0, t.checksum_errors(&vm, "Tcp") - tcp_errors_before.1);
    assert_eq!(tcp_errors, (0, 0), "bad TCP checksums arrived (wan, vm)");
}

#[test]
fn udp_gso_datagrams_and_icmp_cross_intact() {
    if !root_or_skip("udp_gso_and_icmp") {
        return;
    }
    let mut t = Topology::new();
    t.start_daemon();
    new_winnat(&t);
    let (vm, wan) = (t.vm.clone(), t.wan.clone());
    let udp_errors_before = t.checksum_errors(&wan, "Udp");

    assert!(t.ping_ok(&vm, WAN1), "ping through the NAT failed:\n{}", t.log());
    t.udp_echo(&wan, WAN1, 5353);
    assert_eq!(t.udp_request(&vm, WAN1, 5353, "plain", 3.0), Some(format!("echo {EXTERNAL}:plain")));

    // 50 sends of 20 segments of 1200 bytes each: the kernel hands each send over as one
    // UDP GSO super-datagram (24 KB), segmented after the verdict.
    const SENDS: usize = 50;
    const SEGMENTS: usize = 20;
    const SEGMENT: usize = 1200;
    let receiver = python_spawn(
        &t,
        &wan,
        &format!(
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)\n\
             s.bind(('{WAN1}', 6000)); s.settimeout(5)\n\
             n = bad = 0; peers = set()\n\
             try:\n\
             \x20   while n < {total}:\n\
             \x20       d, p = s.recvfrom(65536); n += 1; peers.add(p[0])\n\
             \x20       if len(d) != {SEGMENT} or d != d[:1] * len(d): bad += 1\n\
             except socket.timeout:\n\
             \x20   pass\n\
             print(n, bad, ','.join(sorted(peers)) or '-')\n",
            total = SENDS * SEGMENTS
        ),
        Duration::from_secs(60),
    );
    // No datagram goes to a closed port: wait until the receiver is bound.
    assert!(
        wait_until(Duration::from_secs(10), || t.ns(&wan, &["ss", "-uln"]).contains(&format!("{WAN1}:6000"))),
        "the UDP receiver did not bind"
    );
    python_ok(
        &t,
        &vm,
        &format!(
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             s.setsockopt(socket.SOL_UDP, 103, {SEGMENT})  # UDP_SEGMENT\n\
             for i in range({SENDS}):\n\
             \x20   s.sendto(b''.join(bytes([(i * {SEGMENTS} + k) % 251]) * {SEGMENT} for k in range({SEGMENTS})), ('{WAN1}', 6000))\n\
             \x20   time.sleep(0.002)\n"
        ),
        Duration::from_secs(30),
    );
    let out = finish(receiver, Duration::from_secs(60));
    let fields: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(fields.len(), 3, "UDP receiver said {out:?}");
    assert_eq!(fields[0], (SENDS * SEGMENTS).to_string(), "every segment arrived: {out}");
    assert_eq!(fields[1], "0", "no segment was corrupted: {out}");
    assert_eq!(fields[2], EXTERNAL, "wan saw the external address: {out}");
    assert!(t.counter(&["gso_packets"]) > 0, "the datagrams crossed as super-datagrams");
    assert_eq!(t.checksum_errors(&wan, "Udp") - udp_errors_before, 0, "bad UDP checksums arrived at wan");
    assert!(t.ping_ok(&vm, WAN1), "ping after the burst failed");
}

#[test]
fn a_bulk_hairpinned_download_arrives_byte_for_byte() {
    if !root_or_skip("bulk_hairpin_gso") {
        return;
    }
    let mut t = Topology::new();
    t.start_daemon();
    new_winnat(&t);
    assert_offloads_on(&t);
    // The vm downloads from its own published port through the external address: both
    // directions are hairpinned, which the daemon sends from a raw socket, and the server's
    // super-packets are longer than any MTU a raw socket accepts.
    const LEN: usize = 8 << 20;
    let www = t.dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    let blob = pattern(LEN);
    std::fs::write(www.join("blob"), &blob).unwrap();
    let vm = t.vm.clone();
    t.http_server(&vm, VM, 80, &www);
    t.cmdlet(&[
        "Add-NetNatStaticMapping",
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
    let got = t.dir.path().join("got");
    let curl = run(t
        .cmd(&vm, &["curl", "-sS", "--max-time", "30", "-o"])
        .arg(&got)
        .arg(format!("http://{EXTERNAL}:8080/blob")));
    assert!(
        curl.status.success(),
        "hairpinned download failed: {}\n{}",
        String::from_utf8_lossy(&curl.stderr),
        t.cmdlet(&["Get-NetNatStatistics"])
    );
    assert!(std::fs::read(&got).unwrap() == blob, "hairpinned bytes differ from the served file");
    assert!(t.counter(&["hairpinned"]) > 0, "no packet counted as hairpinned");
    assert!(t.counter(&["gso_packets"]) > 0, "the server's super-packets reached the daemon whole");
    assert!(t.counter(&["reinject_segmented"]) > 0, "hairpinned super-packets were cut to the MTU");
    assert_eq!(t.counter(&["reinject_failed"]), 0);
    assert_eq!(t.checksum_errors(&vm, "Tcp"), 0, "bad TCP checksums arrived at the vm");
}

#[test]
fn workers_that_busy_poll_translate_the_same() {
    if !root_or_skip("busy_poll") {
        return;
    }
    let mut t = Topology::new();
    t.daemon_args.extend(["--busy-poll-us".to_owned(), "200".to_owned()]);
    t.start_daemon();
    new_winnat(&t);
    let (vm, wan) = (t.vm.clone(), t.wan.clone());
    assert!(t.ping_ok(&vm, WAN1), "ping through the NAT failed:\n{}", t.log());
    t.udp_echo(&wan, WAN1, 5353);
    for i in 0..20 {
        let payload = format!("poll{i}");
        assert_eq!(t.udp_request(&vm, WAN1, 5353, &payload, 3.0), Some(format!("echo {EXTERNAL}:{payload}")));
    }
    assert!(t.counter(&["translated_out"]) >= 21);
}
