//! A real IPFIX collector for the tests: Debian's nfdump (`nfcapd` receives and writes files,
//! `nfdump` reads them back), on 127.0.0.1 of the host or of a network namespace. Killed on
//! drop, also when a test fails.
//!
//! nfdump 1.7.1: `nfcapd -w DIR -b 127.0.0.1 -p PORT` writes `nfcapd.current.*` and, on
//! SIGTERM, closes and renames it and reports `Flows: N, ... Sequence Errors: N` on stderr;
//! `nfdump -r FILE -o json` lists the records (its text formats print "UNKNOW" for RFC 8158's
//! natEvent values, its JSON names them).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running nfcapd.
pub struct Collector {
    child: Child,
    /// The command prefix that runs a program where nfcapd runs (`ip netns exec NS`, or none).
    prefix: Vec<String>,
    pub port: u16,
    log: PathBuf,
    flows: PathBuf,
    _dir: tempfile::TempDir,
}

/// What nfcapd said when it stopped, and the records nfdump read back.
pub struct Collected {
    /// nfcapd's stderr (its `Flows: N, ... Sequence Errors: N` line among others).
    pub said: String,
    /// nfdump's records, as JSON objects (`nat_event_id`, `proto`, `src4_addr`, `src_port`,
    /// `src4_xlt_ip`, `src_xlt_port`, `dst4_addr`, `dst_port`, `t_event`, ...).
    pub records: Vec<Value>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn command(prefix: &[String], program: &str) -> Command {
    match prefix.split_first() {
        None => Command::new(program),
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(program);
            c
        }
    }
}

/// Polls `done` every 20 ms until it holds; panics with `what` after 10 s.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Collector {
    /// Starts nfcapd on 127.0.0.1:`port` (0: a free port of the host) where `prefix` runs
    /// programs. `None`, with the skip recorded, when nfdump is not installed (in CI, where
    /// `.ci/apt-packages.txt` installs it, that is a failure).
    pub fn start(test: &str, prefix: &[&str], port: u16) -> Option<Collector> {
        let prefix: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
        let runs = |tool: &str| command(&prefix, tool).arg("-V").output().is_ok_and(|o| o.status.success());
        if !(runs("nfcapd") && runs("nfdump")) {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "nfcapd/nfdump are missing in CI; .ci/run installs them from .ci/apt-packages.txt (nfdump)"
            );
            super::skip::record_skip(test, "nfcapd/nfdump are not installed: apt-get install nfdump");
            return None;
        }
        let port = if port != 0 {
            port
        } else {
            // Bound and released; nfcapd takes it next (another process would have to win a
            // race of milliseconds).
            std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
        };
        let dir = tempfile::tempdir().unwrap();
        let flows = dir.path().join("flows");
        std::fs::create_dir(&flows).unwrap();
        let log = dir.path().join("nfcapd.log");
        let child = command(&prefix, "nfcapd")
            .arg("-w")
            .arg(&flows)
            .args(["-b", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start nfcapd");
        let c = Collector { child, prefix, port, log, flows, _dir: dir };
        wait_for("nfcapd to bind its port", || c.rx_queue().is_some());
        Some(c)
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The receive queue (bytes) of nfcapd's socket, from /proc/net/udp where it runs.
    fn rx_queue(&self) -> Option<u64> {
        let out = command(&self.prefix, "cat").arg("/proc/net/udp").output().ok()?;
        let local = format!("0100007F:{:04X}", self.port);
        String::from_utf8_lossy(&out.stdout).lines().skip(1).find_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.get(1) == Some(&local.as_str()))
                .then(|| cols.get(4)?.split(':').nth(1).and_then(|q| u64::from_str_radix(q, 16).ok()))
                .flatten()
        })
    }

    /// Waits until nfcapd read everything sent, stops it (SIGTERM: it writes and renames its
    /// file) and reads the records back with nfdump.
    pub fn stop_and_read(mut self) -> Collected {
        wait_for("nfcapd to read every datagram", || self.rx_queue() == Some(0));
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped; no memory involved.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        wait_for("nfcapd to exit", || matches!(self.child.try_wait(), Ok(Some(_))));
        let said = std::fs::read_to_string(&self.log).unwrap();
        let files: Vec<_> = std::fs::read_dir(&self.flows).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(files.len(), 1, "one file: {files:?}; nfcapd said:\n{said}");
        assert!(!files[0].to_string_lossy().contains("current"), "renamed on exit: {files:?}");
        let out = command(&self.prefix, "nfdump")
            .env("TZ", "UTC")
            .arg("-r")
            .arg(&files[0])
            .args(["-o", "json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "nfdump: {}", String::from_utf8_lossy(&out.stderr));
        let records = if out.stdout.iter().all(u8::is_ascii_whitespace) {
            Vec::new()
        } else {
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("nfdump -o json: {e}"))
        };
        Collected { said, records }
    }
}

/// A record as `NATEVENT PROTO INTERNAL EXTERNAL REMOTE` (absent endpoints as 0.0.0.0:0).
pub fn record_key(r: &Value) -> String {
    let text = |k: &str, absent: &str| match r.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => absent.to_string(),
    };
    format!(
        "{} {} {}:{} {}:{} {}:{}",
        text("nat_event_id", "-"),
        text("proto", "-"),
        text("src4_addr", "-"),
        text("src_port", "-"),
        text("src4_xlt_ip", "0.0.0.0"),
        text("src_xlt_port", "0"),
        text("dst4_addr", "0.0.0.0"),
        text("dst_port", "0"),
    )
}

/// An event line of `--events` / `--event-log` as [`record_key`] would list it, with IANA's
/// natEvent values written out here (not taken from netnat's encoder).
pub fn event_key(e: &Value) -> String {
    let nat_event = match e["event"].as_str().unwrap() {
        "session_created" => 4,
        "session_deleted" => 5,
        "mapping_created" => 8,
        "mapping_deleted" => 9,
        "ports_exhausted" => 12,
        "limit_reached" => 13,
        other => panic!("unknown event {other}"),
    };
    let proto = match e["protocol"].as_str().unwrap() {
        "icmp" => 1,
        "tcp" => 6,
        "udp" => 17,
        other => panic!("unknown protocol {other}"),
    };
    let ep = |k: &str| e[k].as_str().unwrap_or("0.0.0.0:0").to_owned();
    let mut internal = ep("internal");
    if proto == 1 {
        // nfdump lists no source port for an ICMP record (it reads the port fields of ICMP
        // as type and code), though the identifier is exported in sourceTransportPort.
        internal = format!("{}:-", internal.rsplit_once(':').expect("ADDRESS:PORT").0);
    }
    format!("{nat_event} {proto} {internal} {} {}", ep("external"), ep("remote"))
}
