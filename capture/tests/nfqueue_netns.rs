//! NFQUEUE end to end, as root, in network namespaces this test creates and deletes:
//! `nn-cap-<pid>-<tag>-a` (sender, 10.100.77.1) —veth— `nn-cap-<pid>-<tag>-b` (receiver,
//! 10.100.77.2, with an `iptables -t raw PREROUTING ... -j NFQUEUE --queue-bypass` rule).
//! Real UDP sockets send real datagrams (veth hands them over with CHECKSUM_PARTIAL); the
//! backend receives them, the test rewrites or drops them, and the receiving socket is the
//! witness: the kernel discards a datagram whose UDP checksum is wrong, so what arrives proves
//! both the rewrite and its checksum.
//!
//! Without root the tests print `SKIPPED (needs root)` and pass.
#![cfg(target_os = "linux")]

use std::fs::File;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use netnat_capture::nfqueue::{Nfqueue, NfqueueConfig};
use netnat_capture::{Action, Batch, Capture};

#[path = "../../tests/common/skip.rs"]
mod skip;

const PORT: u16 = 9999;
const DEADLINE: Duration = Duration::from_secs(10);

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn skip_unless_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    skip::record_skip(test, "needs root: creates network namespaces and binds an NFQUEUE queue");
    true
}

fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| {
        panic!("cannot run {args:?}: {e}; install the packages in .ci/apt-packages.txt (iproute2, iptables)")
    });
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Two namespaces joined by a veth pair; deleted on drop, also when the test fails.
struct Topology {
    a: String,
    b: String,
}

impl Topology {
    fn new(tag: &str, queue: u16) -> Topology {
        let pid = std::process::id();
        let t = Topology { a: format!("nn-cap-{pid}-{tag}-a"), b: format!("nn-cap-{pid}-{tag}-b") };
        run(&["ip", "netns", "add", &t.a]);
        run(&["ip", "netns", "add", &t.b]);
        run(&["ip", "-n", &t.a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &t.b]);
        run(&["ip", "-n", &t.a, "addr", "add", "10.100.77.1/24", "dev", "va"]);
        run(&["ip", "-n", &t.b, "addr", "add", "10.100.77.2/24", "dev", "vb"]);
        for (ns, dev) in [(&t.a, "va"), (&t.b, "vb")] {
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            run(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        let q = queue.to_string();
        run(&[
            "ip",
            "netns",
            "exec",
            &t.b,
            "iptables",
            "-t",
            "raw",
            "-A",
            "PREROUTING",
            "-i",
            "vb",
            "-p",
            "udp",
            "--dport",
            &PORT.to_string(),
            "-j",
            "NFQUEUE",
            "--queue-num",
            &q,
            "--queue-bypass",
        ]);
        t
    }

    /// Runs `f` on a thread that has entered namespace `ns`; sockets it creates live there.
    fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{ns}");
        std::thread::spawn(move || {
            let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: a valid namespace fd; setns only changes this (short-lived) thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("namespace thread panicked")
    }

    fn sockets(&self) -> (UdpSocket, UdpSocket) {
        let tx = Topology::in_ns(&self.a, || UdpSocket::bind("10.100.77.1:0").expect("bind sender"));
        let rx = Topology::in_ns(&self.b, || UdpSocket::bind(("10.100.77.2", PORT)).expect("bind receiver"));
        rx.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        (tx, rx)
    }

    fn open_queue(&self, queue: u16) -> Nfqueue {
        Topology::in_ns(&self.b, move || Nfqueue::open(NfqueueConfig { queue, ..NfqueueConfig::default() }))
            .expect("open queue")
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Internet checksum of the UDP datagram in IPv4 packet `ip` (0 means valid when the field
/// is included).
fn udp_checksum(ip: &[u8]) -> u16 {
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let udp = &ip[ihl..];
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
    };
    add(&ip[12..20]);
    add(&[0, 17]);
    add(&(udp.len() as u16).to_be_bytes());
    add(udp);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn fix_udp_checksum(ip: &mut [u8]) {
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    ip[ihl + 6..ihl + 8].copy_from_slice(&[0, 0]);
    let c = match udp_checksum(ip) {
        0 => 0xffff,
        c => c,
    };
    ip[ihl + 6..ihl + 8].copy_from_slice(&c.to_be_bytes());
}

fn payload(ip: &[u8]) -> &[u8] {
    &ip[usize::from(ip[0] & 0x0f) * 4 + 8..]
}

/// Receives until `n` datagrams arrived or the deadline passed.
fn receive(rx: &UdpSocket, n: usize) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + DEADLINE;
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while got.len() < n && Instant::now() < deadline {
        if let Ok((len, _)) = rx.recv_from(&mut buf) {
            got.push(buf[..len].to_vec());
        }
    }
    got
}

/// Runs the queue until `n` packets were handled by `decide` or the deadline passed.
fn serve(q: &mut Nfqueue, n: usize, mut decide: impl FnMut(&mut netnat_capture::Packet)) -> usize {
    let deadline = Instant::now() + DEADLINE;
    let mut batch = Batch::new(16, 65535);
    let mut handled = 0;
    while handled < n && Instant::now() < deadline {
        let got = q.recv_batch(&mut batch, Some(Duration::from_millis(100))).expect("recv_batch");
        for p in batch.iter_mut() {
            decide(p);
        }
        q.send_batch(&mut batch).expect("send_batch");
        handled += got;
    }
    handled
}

#[test]
fn rewritten_packets_reach_the_receiver_with_valid_checksums() {
    if skip_unless_root("rewritten_packets_reach_the_receiver_with_valid_checksums") {
        return;
    }
    let topo = Topology::new("rw", 5);
    let mut q = topo.open_queue(5);
    let (tx, rx) = topo.sockets();
    if let Ok(out) = Command::new("ip").args(["netns", "exec", &topo.a, "ethtool", "-k", "va"]).output() {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success() || text.contains("tx-checksumming: on"),
            "veth tx checksum offload is off, so this test would not see CHECKSUM_PARTIAL packets:\n{text}"
        );
    }

    const N: usize = 20;
    for i in 0..N {
        tx.send_to(format!("netnat-{i}").as_bytes(), ("10.100.77.2", PORT)).expect("send");
    }
    // One packet accepted with a wrong checksum, then a marker: the kernel must discard the
    // first, which shows the receiver really checks what we reinject.
    tx.send_to(b"bad-checksum", ("10.100.77.2", PORT)).expect("send");
    tx.send_to(b"marker", ("10.100.77.2", PORT)).expect("send");

    let mut input_checksums_valid = 0;
    let handled = serve(&mut q, N + 2, |p| {
        assert_eq!(p.meta.queue, 5);
        assert_eq!(p.l3_offset(), 0, "NFQUEUE hands over raw IPv4");
        let ip = p.ip_mut();
        if udp_checksum(ip) == 0 {
            input_checksums_valid += 1;
        }
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let start = ihl + 8;
        if payload(ip).starts_with(b"bad") {
            ip[start] = b'B';
            ip[ihl + 6] ^= 0x55; // wrong on purpose
            return;
        }
        ip[start] = ip[start].to_ascii_uppercase();
        fix_udp_checksum(ip);
    });
    assert_eq!(handled, N + 2, "every datagram went through the queue");
    assert_eq!(
        input_checksums_valid,
        N + 2,
        "the backend completed the CHECKSUM_PARTIAL checksums before handing over"
    );
    let stats = q.stats();
    assert_eq!((stats.received, stats.accepted, stats.checksum_not_ready), ((N + 2) as u64, (N + 2) as u64, 0));
    assert_eq!(stats.checksums_completed, (N + 2) as u64, "veth hands local UDP over with CHECKSUM_PARTIAL");

    let got = receive(&rx, N + 1);
    let expect: Vec<Vec<u8>> = (0..N).map(|i| format!("Netnat-{i}").into_bytes()).chain([b"Marker".to_vec()]).collect();
    assert_eq!(got, expect, "rewritten datagrams arrive in order; the bad-checksum one is discarded");
}

#[test]
fn dropped_packets_never_arrive_and_lengths_can_change() {
    if skip_unless_root("dropped_packets_never_arrive_and_lengths_can_change") {
        return;
    }
    let topo = Topology::new("dr", 6);
    let mut q = topo.open_queue(6);
    let (tx, rx) = topo.sockets();
    for i in 0..10 {
        let msg = if i % 2 == 0 { format!("drop-{i}") } else { format!("keep-{i}-and-some-tail") };
        tx.send_to(msg.as_bytes(), ("10.100.77.2", PORT)).expect("send");
    }
    let handled = serve(&mut q, 10, |p| {
        if payload(p.ip()).starts_with(b"drop") {
            p.set_action(Action::Drop);
            return;
        }
        // Shorten "keep-N-and-some-tail" to "keep-N": a verdict with a new length.
        let new_ip_len = p.ip().len() - "-and-some-tail".len();
        p.set_ip_len(new_ip_len);
        let ip = p.ip_mut();
        ip[2..4].copy_from_slice(&(new_ip_len as u16).to_be_bytes());
        ip[10..12].copy_from_slice(&[0, 0]);
        let mut sum: u32 = ip[..20].chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let udp_len = (new_ip_len - ihl) as u16;
        ip[ihl + 4..ihl + 6].copy_from_slice(&udp_len.to_be_bytes());
        fix_udp_checksum(ip);
    });
    assert_eq!(handled, 10);
    assert_eq!((q.stats().dropped, q.stats().accepted), (5, 5));
    let got = receive(&rx, 5);
    let expect: Vec<Vec<u8>> = [1, 3, 5, 7, 9].iter().map(|i| format!("keep-{i}").into_bytes()).collect();
    assert_eq!(got, expect);
}

#[test]
fn traffic_bypasses_a_closed_queue_and_a_second_binder_is_refused() {
    if skip_unless_root("traffic_bypasses_a_closed_queue_and_a_second_binder_is_refused") {
        return;
    }
    let topo = Topology::new("by", 7);
    let q = topo.open_queue(7);
    let b = topo.b.clone();
    let err = Topology::in_ns(&b, || Nfqueue::open(NfqueueConfig { queue: 7, ..NfqueueConfig::default() }))
        .expect_err("queue 7 is already bound");
    let msg = err.to_string();
    assert!(msg.starts_with("nfqueue: cannot bind queue 7: ") && msg.contains("another process"), "{msg}");

    // The daemon "dies": its socket closes. --queue-bypass lets traffic through, untouched.
    drop(q);
    let (tx, rx) = topo.sockets();
    tx.send_to(b"after-close", ("10.100.77.2", PORT)).expect("send");
    assert_eq!(receive(&rx, 1), vec![b"after-close".to_vec()]);
}

/// What a bulk transfer through the queue looked like.
struct Bulk {
    packets: u64,
    largest: usize,
    stats: netnat_capture::nfqueue::NfqueueStats,
    /// The receiver's `TcpInCsumErrors` during the transfer.
    checksum_errors: u64,
}

/// The `InCsumErrors` counter of `proto` ("Tcp" or "Udp") in namespace `ns` (`/proc/net/snmp`).
fn checksum_errors(ns: &str, proto: &str) -> u64 {
    let out = Command::new("ip").args(["netns", "exec", ns, "cat", "/proc/net/snmp"]).output().expect("read snmp");
    let text = String::from_utf8_lossy(&out.stdout);
    let prefix = format!("{proto}:");
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(&prefix)).collect();
    let [names, values] = lines.as_slice() else { panic!("no {proto} lines in /proc/net/snmp:\n{text}") };
    let at = names.split_whitespace().position(|n| n == "InCsumErrors").expect("InCsumErrors column");
    values.split_whitespace().nth(at).and_then(|v| v.parse().ok()).expect("InCsumErrors value")
}

fn tcp_checksum_errors(ns: &str) -> u64 {
    checksum_errors(ns, "Tcp")
}

/// Sends 4 MiB over TCP from a to b through queue `queue` (every segment handed back as a
/// modified payload: the mangle path, after which the kernel verifies checksums in
/// software) and checks that they arrive byte for byte.
fn bulk_tcp(tag: &str, queue: u16, gso: bool) -> Bulk {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let topo = Topology::new(tag, queue);
    run(&[
        "ip",
        "netns",
        "exec",
        &topo.b,
        "iptables",
        "-t",
        "raw",
        "-A",
        "PREROUTING",
        "-i",
        "vb",
        "-p",
        "tcp",
        "--dport",
        "9998",
        "-j",
        "NFQUEUE",
        "--queue-num",
        &queue.to_string(),
        "--queue-bypass",
    ]);
    let b = topo.b.clone();
    let mut q = Topology::in_ns(&b, move || Nfqueue::open(NfqueueConfig { queue, gso, ..NfqueueConfig::default() }))
        .expect("open queue");
    let listener = Topology::in_ns(&topo.b, || TcpListener::bind("10.100.77.2:9998").expect("listen"));
    let errors_before = tcp_checksum_errors(&topo.b);
    let stop = Arc::new(AtomicBool::new(false));
    let stop_worker = stop.clone();
    let worker = std::thread::spawn(move || {
        let mut batch = Batch::new(32, 65535);
        let (mut packets, mut largest) = (0u64, 0usize);
        let deadline = Instant::now() + DEADLINE;
        while !stop_worker.load(Ordering::Relaxed) && Instant::now() < deadline {
            q.recv_batch(&mut batch, Some(Duration::from_millis(50))).expect("recv_batch");
            for p in batch.iter() {
                packets += 1;
                largest = largest.max(p.len());
            }
            q.send_batch(&mut batch).expect("send_batch");
        }
        (packets, largest, q.stats())
    });

    const LEN: usize = 4 << 20;
    let data: Vec<u8> = (0..LEN).map(|i| (i * 7 % 251) as u8).collect();
    let sent = data.clone();
    let client = Topology::in_ns(&topo.a, || {
        let s = TcpStream::connect_timeout(&"10.100.77.2:9998".parse().unwrap(), DEADLINE).expect("connect");
        s.set_write_timeout(Some(DEADLINE)).expect("timeout");
        s
    });
    let writer = std::thread::spawn(move || {
        let mut client = client;
        client.write_all(&sent).expect("write");
    });
    let (mut conn, _) = listener.accept().expect("accept");
    conn.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut got = Vec::with_capacity(LEN);
    let mut buf = vec![0u8; 1 << 16];
    while got.len() < LEN {
        let n = conn.read(&mut buf).expect("read");
        assert!(n > 0, "connection closed after {} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
    }
    writer.join().expect("writer");
    stop.store(true, Ordering::Relaxed);
    let (packets, largest, stats) = worker.join().expect("worker");
    assert!(got == data, "the stream arrived intact");
    Bulk { packets, largest, stats, checksum_errors: tcp_checksum_errors(&topo.b) - errors_before }
}

#[test]
fn bulk_tcp_with_gso_arrives_whole_with_completed_checksums_byte_for_byte() {
    if skip_unless_root("bulk_tcp_with_gso_arrives_whole_with_completed_checksums_byte_for_byte") {
        return;
    }
    let bulk = bulk_tcp("gso", 8, true);
    let s = bulk.stats;
    assert!(bulk.largest > 1500, "GSO super-packets reach user space whole (largest {})", bulk.largest);
    assert!(s.gso_packets > 0, "the kernel flagged super-packets: {s:?}");
    assert!(s.checksums_completed > 0, "partial checksums arrived and were completed: {s:?}");
    assert_eq!(s.checksum_not_ready, 0, "{s:?}");
    assert_eq!((s.too_long, s.verdict_errors, s.malformed), (0, 0, 0), "{s:?}");
    // The mangled super-packets are delivered locally and verified whole, in software.
    assert_eq!(bulk.checksum_errors, 0, "the receiver found bad TCP checksums");
    assert!(bulk.packets < 1000, "4 MiB in super-packets, not ~2900 segments ({} packets)", bulk.packets);
}

#[test]
fn bulk_tcp_without_gso_is_segmented_before_queueing() {
    if skip_unless_root("bulk_tcp_without_gso_is_segmented_before_queueing") {
        return;
    }
    let bulk = bulk_tcp("seg", 9, false);
    let s = bulk.stats;
    assert!(bulk.packets > 100, "the segments went through the queue ({})", bulk.packets);
    assert!(bulk.largest <= 1500, "GSO super-packets are segmented before queueing (largest {})", bulk.largest);
    assert_eq!((s.gso_packets, s.checksums_completed, s.checksum_not_ready), (0, 0, 0), "{s:?}");
    assert_eq!(bulk.checksum_errors, 0, "the receiver found bad TCP checksums");
}

/// The kernel's `queue_total` (packets waiting for a verdict) of queue `queue` in `ns`.
fn queue_waiting(ns: &str, queue: u16) -> usize {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "cat", "/proc/net/netfilter/nfnetlink_queue"])
        .output()
        .expect("read nfnetlink_queue");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.first() == Some(&queue.to_string().as_str()))
        .and_then(|f| f.get(2)?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_full_batch_of_64_kib_packets_gets_every_verdict() {
    if skip_unless_root("a_full_batch_of_64_kib_packets_gets_every_verdict") {
        return;
    }
    const N: usize = 64;
    const SIZE: usize = 60_000;
    let topo = Topology::new("big", 10);
    // An MTU above the datagram size: each datagram is one 60 KiB IPv4 packet, unfragmented.
    run(&["ip", "-n", &topo.a, "link", "set", "va", "mtu", "65000"]);
    run(&["ip", "-n", &topo.b, "link", "set", "vb", "mtu", "65000"]);
    let mut q = topo.open_queue(10);
    let (tx, rx) = topo.sockets();
    let big: libc::c_int = 16 << 20;
    for s in [tx.as_raw_fd(), rx.as_raw_fd()] {
        for opt in [libc::SO_RCVBUFFORCE, libc::SO_SNDBUFFORCE] {
            // SAFETY: a live socket and a c_int of the size passed.
            let rc = unsafe {
                libc::setsockopt(
                    s,
                    libc::SOL_SOCKET,
                    opt,
                    (&big as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            assert_eq!(rc, 0, "setsockopt: {}", std::io::Error::last_os_error());
        }
    }
    for i in 0..N {
        let mut d = vec![b'x'; SIZE];
        d[..8].copy_from_slice(format!("big-{i:04}").as_bytes());
        tx.send_to(&d, ("10.100.77.2", PORT)).expect("send");
    }
    // Nothing is read until all of them wait in the kernel: one receive takes a full batch.
    let deadline = Instant::now() + DEADLINE;
    while queue_waiting(&topo.b, 10) < N && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(queue_waiting(&topo.b, 10), N, "all datagrams queued");
    let mut batch = Batch::new(N, 65535);
    let got = q.recv_batch(&mut batch, Some(DEADLINE)).expect("recv_batch");
    assert_eq!(got, N, "one receive fills the batch");
    for p in batch.iter_mut() {
        assert_eq!(p.ip().len(), 20 + 8 + SIZE);
        assert_eq!(udp_checksum(p.ip()), 0, "the partial checksum was completed");
        let ip = p.ip_mut();
        ip[28] = b'B';
        fix_udp_checksum(ip);
    }
    // ~3.8 MB of verdicts: more than one netlink datagram may carry.
    q.send_batch(&mut batch).expect("send_batch");
    // Verdict errors come back as messages on the next receive.
    q.recv_batch(&mut batch, Some(Duration::from_millis(200))).expect("recv_batch");
    let stats = q.stats();
    assert_eq!((stats.accepted, stats.verdict_errors, stats.too_long), (N as u64, 0, 0), "{stats:?}");
    assert_eq!(stats.checksums_completed, N as u64, "{stats:?}");

    let deadline = Instant::now() + DEADLINE;
    let mut received = Vec::new();
    let mut buf = vec![0u8; 65536];
    while received.len() < N && Instant::now() < deadline {
        if let Ok((len, _)) = rx.recv_from(&mut buf) {
            received.push(buf[..len].to_vec());
        }
    }
    assert_eq!(received.len(), N, "every datagram arrived after its verdict");
    for (i, d) in received.iter().enumerate() {
        assert_eq!(d.len(), SIZE);
        assert_eq!(&d[..8], format!("Big-{i:04}").as_bytes(), "rewritten, in order");
        assert!(d[8..].iter().all(|&b| b == b'x'));
    }
    assert_eq!(queue_waiting(&topo.b, 10), 0, "no packet left without a verdict");
}

#[test]
fn an_unchanged_udp_gso_datagram_is_delivered_locally_segment_by_segment() {
    if skip_unless_root("an_unchanged_udp_gso_datagram_is_delivered_locally_segment_by_segment") {
        return;
    }
    /// `UDP_SEGMENT` (linux/udp.h): the socket sends GSO super-datagrams of this segment size.
    const UDP_SEGMENT: libc::c_int = 103;
    const SEGMENT: usize = 1000;
    const SEGMENTS: usize = 10;
    let topo = Topology::new("ug", 11);
    let mut q = topo.open_queue(11);
    let (tx, rx) = topo.sockets();
    let size = SEGMENT as libc::c_int;
    // SAFETY: a live socket and a c_int of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            tx.as_raw_fd(),
            libc::SOL_UDP,
            UDP_SEGMENT,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "UDP_SEGMENT: {}", std::io::Error::last_os_error());
    let errors_before = checksum_errors(&topo.b, "Udp");
    let data: Vec<u8> = (0..SEGMENTS).flat_map(|i| vec![b'a' + i as u8; SEGMENT]).collect();
    tx.send_to(&data, ("10.100.77.2", PORT)).expect("send");

    let mut seen = Vec::new();
    let handled = serve(&mut q, 1, |p| seen.push((p.ip().len(), udp_checksum(p.ip()))));
    assert_eq!(handled, 1, "one super-datagram crossed");
    assert_eq!(seen, vec![(20 + 8 + SEGMENTS * SEGMENT, 0)], "whole, with its checksum completed");
    let stats = q.stats();
    assert_eq!((stats.gso_packets, stats.checksums_completed, stats.checksum_not_ready), (1, 1, 0), "{stats:?}");

    // The verdict carried no bytes, so the kernel segments its own packet on delivery (a
    // mangled UDP GSO packet is dropped on local delivery, counted in Udp InErrors).
    let got = receive(&rx, SEGMENTS);
    assert_eq!(got.len(), SEGMENTS, "every segment arrived");
    for (i, d) in got.iter().enumerate() {
        assert_eq!(d.len(), SEGMENT, "segment {i}");
        assert!(d.iter().all(|&b| b == b'a' + i as u8), "segment {i}");
    }
    assert_eq!(checksum_errors(&topo.b, "Udp") - errors_before, 0, "the receiver found bad UDP checksums");
}
