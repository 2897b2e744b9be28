//! Helpers of the hostile-traffic and fault tests (`e2e_hostile.rs`, `e2e_faults.rs`), on top
//! of [`crate::e2e_common`]: bounded traffic generators (Python, run under `timeout`), a
//! tcpdump on any interface, the kernel's NFQUEUE counters, the daemon's process id, and a
//! raw exchange on the control socket.
//!
//! Every generator stops at a packet count and at a deadline, whichever comes first, and the
//! whole process is killed by `timeout` if it overstays.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::e2e_common::{check, run, wait_until, Topology, NETNAT};

/// Python helpers shared by the generators: an RFC 1071 checksum, a TCP segment and an ICMP
/// echo builder, for raw sockets (the kernel adds the IP header).
pub const PY_PRELUDE: &str = r#"
import socket, struct, sys, time, random
def csum(b):
    if len(b) % 2:
        b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
def tcp_segment(src, dst, sport, dport, flags):
    h = struct.pack('!HHIIBBHHH', sport, dport, random.getrandbits(32), 0, 5 << 4, flags, 64240, 0, 0)
    ph = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack('!BBH', 0, 6, len(h))
    c = csum(ph + h)
    return h[:16] + struct.pack('!H', c) + h[18:]
def icmp_echo(typ, ident, seq, payload=b'hostile'):
    h = struct.pack('!BBHHH', typ, 0, 0, ident, seq) + payload
    return h[:2] + struct.pack('!H', csum(h)) + h[4:]
def raw(proto, src):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
    s.bind((src, 0))
    return s
"#;

/// Runs a Python script (after [`PY_PRELUDE`]) in `ns`, killed after `limit`; returns its
/// output. The script itself must bound its traffic.
pub fn python(t: &Topology, ns: &str, script: &str, limit: Duration) -> Output {
    let code = format!("{PY_PRELUDE}\n{script}");
    let secs = limit.as_secs().max(1).to_string();
    run(&mut t.cmd(ns, &["timeout", "-s", "KILL", &secs, "python3", "-c", &code]))
}

/// Like [`python`], the script must succeed; returns its stdout trimmed.
pub fn python_ok(t: &Topology, ns: &str, script: &str, limit: Duration) -> String {
    let out = python(t, ns, script, limit);
    assert!(
        out.status.success(),
        "python in {ns} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Starts a Python script (after [`PY_PRELUDE`]) in `ns` in the background, killed after
/// `limit` at the latest.
pub fn python_spawn(t: &Topology, ns: &str, script: &str, limit: Duration) -> Child {
    let code = format!("{PY_PRELUDE}\n{script}");
    let secs = limit.as_secs().max(1).to_string();
    t.cmd(ns, &["timeout", "-s", "KILL", &secs, "python3", "-c", &code])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python")
}

/// Waits (bounded) for a background generator and returns its stdout; fails if it failed.
pub fn finish(child: Child, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    let mut child = child;
    loop {
        if let Some(status) = child.try_wait().expect("wait for the generator") {
            let mut out = String::new();
            let mut err = String::new();
            if let Some(mut s) = child.stdout.take() {
                let _ = s.read_to_string(&mut out);
            }
            if let Some(mut s) = child.stderr.take() {
                let _ = s.read_to_string(&mut err);
            }
            assert!(status.success(), "traffic generator failed ({status}):\n{out}\n{err}");
            return out.trim().to_owned();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("traffic generator still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One packet line of `tcpdump -n -q`: source and destination address and port (port 0
/// for ICMP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    pub src: Ipv4Addr,
    pub sport: u16,
    pub dst: Ipv4Addr,
    pub dport: u16,
}

/// A tcpdump on any interface of any namespace, stopped (and its file read) on demand,
/// killed on drop.
#[derive(Debug)]
pub struct Sniffer {
    child: Option<Child>,
    file: PathBuf,
}

impl Sniffer {
    /// Starts tcpdump on `iface` in `ns`, writing to `file`, and waits until it listens.
    pub fn start(t: &Topology, ns: &str, iface: &str, file: &Path) -> Sniffer {
        let mut child = t
            .cmd(ns, &["tcpdump", "-i", iface, "-n", "-U", "--immediate-mode", "-B", "8192", "-w"])
            .arg(file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("listening on") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(10)).expect("tcpdump did not start listening");
        Sniffer { child: Some(child), file: file.to_path_buf() }
    }

    /// Stops the capture and returns every IPv4 packet seen.
    pub fn stop(mut self) -> Vec<Seen> {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
        let _ = child.wait();
        let out = check(Command::new("tcpdump").args(["-r"]).arg(&self.file).args(["-n", "-q", "ip"]));
        out.lines().filter_map(parse_line).collect()
    }
}

impl Drop for Sniffer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// "12:00:00.000000 IP 203.0.113.1.1234 > 203.0.113.10.80: tcp 0" (or without ports).
fn parse_line(l: &str) -> Option<Seen> {
    let mut it = l.split_whitespace().skip_while(|w| *w != "IP").skip(1);
    let (src, sport) = endpoint(it.next()?)?;
    if it.next()? != ">" {
        return None;
    }
    let (dst, dport) = endpoint(it.next()?.trim_end_matches(':'))?;
    Some(Seen { src, sport, dst, dport })
}

fn endpoint(w: &str) -> Option<(Ipv4Addr, u16)> {
    let parts: Vec<&str> = w.trim_end_matches(':').split('.').collect();
    if parts.len() < 4 {
        return None;
    }
    let addr = parts[..4].join(".").parse().ok()?;
    let port = parts.get(4).and_then(|p| p.parse().ok()).unwrap_or(0);
    Some((addr, port))
}

/// Whether `a` is in the internal prefix 10.100.0.0/16.
pub fn is_internal(a: Ipv4Addr) -> bool {
    let [x, y, _, _] = a.octets();
    (x, y) == (10, 100)
}

/// One row of `/proc/net/netfilter/nfnetlink_queue` (per network namespace).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueRow {
    pub queue: u32,
    /// Netlink port id of the bound process (0: none).
    pub peer_portid: u32,
    /// Packets waiting for a verdict now.
    pub waiting: u64,
    /// Packets the kernel dropped because the queue was full.
    pub queue_dropped: u64,
    /// Packets the kernel could not hand to the process (netlink socket full).
    pub user_dropped: u64,
}

/// The NFQUEUE rows of namespace `ns`.
pub fn queue_rows(t: &Topology, ns: &str) -> Vec<QueueRow> {
    let text = t.ns(ns, &["cat", "/proc/net/netfilter/nfnetlink_queue"]);
    text.lines()
        .filter_map(|l| {
            let f: Vec<u64> = l.split_whitespace().filter_map(|w| w.parse().ok()).collect();
            // queue, portid, waiting, copy mode, copy range, queue_dropped, user_dropped, id, 1
            (f.len() >= 7).then(|| QueueRow {
                queue: f[0] as u32,
                peer_portid: f[1] as u32,
                waiting: f[2],
                queue_dropped: f[5],
                user_dropped: f[6],
            })
        })
        .collect()
}

/// Kernel drops (queue full + netlink full) summed over the queues of `ns`.
pub fn kernel_queue_drops(t: &Topology, ns: &str) -> u64 {
    queue_rows(t, ns).iter().map(|r| r.queue_dropped + r.user_dropped).sum()
}

/// The daemon's process id, found by its unique socket path on its command line.
pub fn daemon_pid(t: &Topology) -> u32 {
    let socket = t.socket().display().to_string();
    for entry in std::fs::read_dir("/proc").expect("/proc") {
        let Ok(entry) = entry else { continue };
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let args: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        if args.first().map(String::as_str) == Some(NETNAT)
            && args.iter().any(|a| a == "daemon")
            && args.contains(&socket)
        {
            return pid;
        }
    }
    panic!("no netnat daemon with socket {socket} is running:\n{}", t.log());
}

/// Sends `signal` (e.g. "STOP", "CONT") to process `pid`.
pub fn signal(pid: u32, signal: &str) {
    check(Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]));
}

/// Whether the daemon answers a cmdlet within `limit`.
pub fn answers_within(t: &Topology, limit: Duration) -> bool {
    let start = Instant::now();
    let ok = t.cmdlet_output(&["Get-NetNatGlobal"]).status.success();
    ok && start.elapsed() <= limit
}

/// What came back on a raw control connection.
#[derive(Debug)]
pub enum Answer {
    /// One reply line (without the newline).
    Line(String),
    /// The daemon closed the connection without a line.
    Closed,
    /// Nothing within the timeout.
    Silent,
}

/// Connects to the control socket from this (root) process.
pub fn control_connect(t: &Topology) -> UnixStream {
    let s = UnixStream::connect(t.socket()).unwrap_or_else(|e| panic!("connect {}: {e}", t.socket().display()));
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
    s.set_write_timeout(Some(Duration::from_secs(10))).expect("write timeout");
    s
}

/// Writes `bytes` on `stream` (write errors ignored: the daemon may close early) and reads
/// one answer line.
pub fn exchange(stream: &mut UnixStream, bytes: &[u8]) -> Answer {
    let _ = stream.write_all(bytes);
    read_answer(stream)
}

/// Reads one line, or says the connection closed or stayed silent.
pub fn read_answer(stream: &mut UnixStream) -> Answer {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => {
                return if line.is_empty() {
                    Answer::Closed
                } else {
                    Answer::Line(String::from_utf8_lossy(&line).into_owned())
                }
            }
            Ok(_) if byte[0] == b'\n' => return Answer::Line(String::from_utf8_lossy(&line).into_owned()),
            Ok(_) => line.push(byte[0]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Answer::Silent
            }
            // A reset after the daemon closed on unread input counts as a close.
            Err(_) => return Answer::Closed,
        }
    }
}

/// Polls until every NFQUEUE of `ns` has no packet waiting, up to `limit`.
pub fn queues_drain(t: &Topology, ns: &str, limit: Duration) -> bool {
    wait_until(limit, || queue_rows(t, ns).iter().all(|r| r.waiting == 0))
}
