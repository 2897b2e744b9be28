//! Shared pieces of the end-to-end tests: network namespaces `vm` — `nat` — `wan` built per
//! test (design §4), the real `netnat daemon` running in `nat`, the cmdlets, real clients.
//!
//! Everything a test creates is named after the process id and a per-process counter, and is
//! removed by [`Topology`]'s `Drop` (daemon and servers killed, namespaces deleted), also when
//! the test fails. Every wait is a poll of a condition with a deadline ([`wait_until`]).
//! Without root the tests print `SKIPPED (needs root)` and pass.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The netnat binary under test.
pub const NETNAT: &str = env!("CARGO_BIN_EXE_netnat");

/// vm's address.
pub const VM: &str = "10.100.10.11";
/// nat's inside address (vm's gateway).
pub const GATEWAY: &str = "10.100.1.1";
/// nat's outside address: the only source address wan may see.
pub const EXTERNAL: &str = "203.0.113.1";
/// wan's first address (servers).
pub const WAN1: &str = "203.0.113.10";
/// wan's second address (the "other remote" of filtering tests).
pub const WAN2: &str = "203.0.113.11";

#[path = "../common/skip.rs"]
pub mod skip;

#[path = "../common/nfdump.rs"]
pub mod nfdump;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Whether the tests can run; prints the loud skip line when not.
pub fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        skip::record_skip(test, "needs root: builds network namespaces and runs the NAT daemon");
        return false;
    }
    for tool in ["ip", "iptables", "nft", "tc", "python3", "curl", "ping", "tcpdump"] {
        if which(tool).is_none() {
            panic!("{test}: `{tool}` is missing; install the packages in .ci/apt-packages.txt");
        }
    }
    true
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|p| p.join(tool)).find(|p| p.is_file()))
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a command to completion and returns its output (panics if it cannot start).
pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs a command that must succeed.
pub fn check(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The three namespaces, their links, the daemon and any servers; all removed on drop.
#[derive(Debug)]
pub struct Topology {
    /// Namespace names.
    pub vm: String,
    pub nat: String,
    pub wan: String,
    /// Interface names: vm side, nat inside, nat outside, wan side.
    pub vm_if: String,
    pub nat_in: String,
    pub nat_out: String,
    pub wan_if: String,
    /// Scratch directory (socket, state, logs, captures).
    pub dir: tempfile::TempDir,
    /// Extra arguments for `netnat daemon` (e.g. session limits), set before starting it.
    pub daemon_args: Vec<String>,
    /// Extra environment for `netnat daemon` (e.g. `NETNAT_FAULT`), set before starting it.
    pub daemon_env: Vec<(String, String)>,
    daemon: Option<Child>,
    children: Vec<Child>,
}

impl Topology {
    /// Builds vm (10.100.10.11/16 via 10.100.1.1) — nat (10.100.1.1/16 | 203.0.113.1/24,
    /// forwarding on) — wan (203.0.113.10/24 and 203.0.113.11/24, no route to 10.100/16).
    pub fn new() -> Topology {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}x{n}", std::process::id());
        let t = Topology {
            vm: format!("nn-e2e-{tag}-vm"),
            nat: format!("nn-e2e-{tag}-nat"),
            wan: format!("nn-e2e-{tag}-wan"),
            vm_if: format!("v{tag}"),
            nat_in: format!("i{tag}"),
            nat_out: format!("o{tag}"),
            wan_if: format!("w{tag}"),
            dir: tempfile::Builder::new().prefix("netnat-e2e-").tempdir().expect("temp dir"),
            daemon_args: Vec::new(),
            daemon_env: Vec::new(),
            daemon: None,
            children: Vec::new(),
        };
        for ns in [&t.vm, &t.nat, &t.wan] {
            check(Command::new("ip").args(["netns", "add", ns]));
            t.ns(ns, &["ip", "link", "set", "lo", "up"]);
        }
        check(Command::new("ip").args([
            "link", "add", &t.vm_if, "netns", &t.vm, "type", "veth", "peer", "name", &t.nat_in, "netns", &t.nat,
        ]));
        check(Command::new("ip").args([
            "link", "add", &t.nat_out, "netns", &t.nat, "type", "veth", "peer", "name", &t.wan_if, "netns", &t.wan,
        ]));
        t.ns(&t.vm, &["ip", "addr", "add", "10.100.10.11/16", "dev", &t.vm_if]);
        t.ns(&t.vm, &["ip", "link", "set", &t.vm_if, "up"]);
        t.ns(&t.vm, &["ip", "route", "add", "default", "via", GATEWAY]);
        t.ns(&t.nat, &["ip", "addr", "add", "10.100.1.1/16", "dev", &t.nat_in]);
        t.ns(&t.nat, &["ip", "addr", "add", "203.0.113.1/24", "dev", &t.nat_out]);
        t.ns(&t.nat, &["ip", "link", "set", &t.nat_in, "up"]);
        t.ns(&t.nat, &["ip", "link", "set", &t.nat_out, "up"]);
        t.ns(&t.nat, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        t.ns(&t.wan, &["ip", "addr", "add", "203.0.113.10/24", "dev", &t.wan_if]);
        t.ns(&t.wan, &["ip", "addr", "add", "203.0.113.11/24", "dev", &t.wan_if]);
        t.ns(&t.wan, &["ip", "link", "set", &t.wan_if, "up"]);
        // Links are up when the vm can reach its gateway (no NAT involved).
        assert!(
            wait_until(Duration::from_secs(10), || t.ping_ok(&t.vm, GATEWAY)),
            "vm cannot reach its gateway: namespace setup failed"
        );
        t
    }

    /// Runs a command in namespace `ns`; it must succeed. Returns its stdout.
    pub fn ns(&self, ns: &str, args: &[&str]) -> String {
        check(Command::new("ip").args(["netns", "exec", ns]).args(args))
    }

    /// A command that runs in `ns`.
    pub fn cmd(&self, ns: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).args(args).stdin(Stdio::null());
        c
    }

    /// Whether one ping from `ns` to `dst` gets an answer within 1 s.
    pub fn ping_ok(&self, ns: &str, dst: &str) -> bool {
        run(&mut self.cmd(ns, &["ping", "-c", "1", "-W", "1", dst])).status.success()
    }

    /// The control socket path.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("netnat.sock")
    }

    /// The state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Starts `netnat daemon` in nat (socket and state in the scratch dir) and waits until it
    /// answers. Panics with its log if it does not.
    pub fn start_daemon(&mut self) {
        self.start_daemon_process();
        let ready = wait_until(Duration::from_secs(15), || {
            if let Some(status) = self.daemon_exit() {
                panic!("the daemon exited at start ({status}):\n{}", self.log());
            }
            self.cmdlet_output(&["Get-NetNatGlobal"]).status.success()
        });
        assert!(ready, "the daemon did not answer within 15 s:\n{}", self.log());
    }

    fn start_daemon_process(&mut self) {
        assert!(self.daemon.is_none(), "daemon already running");
        let log = std::fs::File::create(self.daemon_log()).expect("daemon log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.nat, NETNAT, "daemon", "--socket"])
            .arg(self.socket())
            .arg("--state-dir")
            .arg(self.state_dir())
            .args(&self.daemon_args)
            .env("NETNAT_LOG", "info")
            .envs(self.daemon_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the daemon");
        self.daemon = Some(child);
    }

    /// Starts the daemon expecting it to refuse to start; returns its exit status and log.
    pub fn start_daemon_expecting_failure(&mut self) -> (ExitStatus, String) {
        self.start_daemon_process();
        let mut child = self.daemon.take().expect("just started");
        let exited = wait_until(Duration::from_secs(15), || child.try_wait().ok().flatten().is_some());
        if !exited {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the daemon kept running although it should have refused to start:\n{}", self.log());
        }
        let status = child.wait().expect("status");
        (status, self.log())
    }

    /// The daemon's exit status, if it has exited.
    pub fn daemon_exit(&mut self) -> Option<ExitStatus> {
        self.daemon.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits (bounded) for a daemon that is expected to end by itself; its exit status, or
    /// `None` if it still runs after `timeout`. An ended daemon is forgotten, so the next
    /// [`Topology::start_daemon`] can start another.
    pub fn wait_for_daemon_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut status = None;
        wait_until(timeout, || {
            status = self.daemon_exit();
            status.is_some()
        });
        if status.is_some() {
            self.daemon = None;
        }
        status
    }

    /// Sends `signal` to the daemon and waits (bounded) for it to exit.
    pub fn stop_daemon(&mut self, signal: &str) -> ExitStatus {
        let mut child = self.daemon.take().expect("no daemon running");
        check(Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]));
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().expect("wait for the daemon") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                panic!("the daemon did not exit within 15 s of SIG{signal}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The daemon's log file.
    pub fn daemon_log(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.daemon_log()).unwrap_or_default()
    }

    /// Runs `netnat <args>` in nat against this topology's daemon.
    pub fn cmdlet_output(&self, args: &[&str]) -> Output {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.nat, NETNAT, "--socket"]).arg(self.socket()).args(args);
        run(&mut c)
    }

    /// Runs a cmdlet that must succeed; returns its stdout.
    pub fn cmdlet(&self, args: &[&str]) -> String {
        let out = self.cmdlet_output(args);
        assert!(
            out.status.success(),
            "netnat {} failed:\nstdout: {}\nstderr: {}\ndaemon log:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a cmdlet that must fail; returns its stderr.
    pub fn cmdlet_error(&self, args: &[&str]) -> String {
        let out = self.cmdlet_output(args);
        assert!(!out.status.success(), "netnat {} should have failed but printed {:?}", args.join(" "), out.stdout);
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Get-NetNatSession -o json.
    pub fn sessions(&self) -> Vec<serde_json::Value> {
        let text = self.cmdlet(&["Get-NetNatSession", "-o", "json"]);
        serde_json::from_str::<Vec<serde_json::Value>>(&text).expect("sessions JSON")
    }

    /// The engine counter `name` summed over all NATs and instances (Get-NetNatStatistics).
    pub fn counter(&self, path: &[&str]) -> u64 {
        let text = self.cmdlet(&["Get-NetNatStatistics"]);
        let v: serde_json::Value = serde_json::from_str(&text).expect("statistics JSON");
        let mut total = 0;
        for instances in v.as_object().expect("object").values() {
            for inst in instances.as_array().expect("array") {
                let mut x = &inst["stats"];
                for p in path {
                    x = &x[*p];
                }
                total += x.as_u64().unwrap_or(0);
            }
        }
        total
    }

    /// The `InCsumErrors` counter of `proto` ("Tcp" or "Udp") in namespace `ns`
    /// (`/proc/net/snmp`): segments that namespace's kernel received with a bad checksum.
    pub fn checksum_errors(&self, ns: &str, proto: &str) -> u64 {
        let text = self.ns(ns, &["cat", "/proc/net/snmp"]);
        let prefix = format!("{proto}:");
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(&prefix)).collect();
        let [names, values] = lines.as_slice() else { panic!("no {proto} lines in /proc/net/snmp:\n{text}") };
        let at = names.split_whitespace().position(|n| n == "InCsumErrors").expect("InCsumErrors column");
        values.split_whitespace().nth(at).and_then(|v| v.parse().ok()).expect("InCsumErrors value")
    }

    /// Starts a long-running process in `ns` that is killed on drop.
    pub fn spawn(&mut self, ns: &str, args: &[&str]) -> &mut Child {
        let child = self.cmd(ns, args).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("spawn");
        self.children.push(child);
        self.children.last_mut().expect("just pushed")
    }

    /// Starts `python3 -m http.server` on `addr:port` in `ns`, serving `dir`, and waits until
    /// it accepts connections.
    pub fn http_server(&mut self, ns: &str, addr: &str, port: u16, dir: &Path) {
        let mut c = self.cmd(ns, &["python3", "-m", "http.server", &port.to_string(), "--bind", addr]);
        c.current_dir(dir).stdout(Stdio::null()).stderr(Stdio::null());
        self.children.push(c.spawn().expect("http server"));
        let probe = format!("import socket; socket.create_connection(('{addr}', {port}), 1)");
        let ns = ns.to_owned();
        assert!(
            wait_until(Duration::from_secs(10), || run(&mut self.cmd(&ns, &["python3", "-c", &probe]))
                .status
                .success()),
            "HTTP server on {addr}:{port} did not start"
        );
    }

    /// Starts a UDP echo server on `addr:port` in `ns` (answers "echo <peer ip>:<data>", at
    /// most 1000 datagrams) and waits until it is bound.
    pub fn udp_echo(&mut self, ns: &str, addr: &str, port: u16) {
        let script = format!(
            "import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('{addr}',{port}))\nprint('ready',flush=True)\nfor _ in range(1000):\n    d,p=s.recvfrom(4096)\n    s.sendto(b'echo '+p[0].encode()+b':'+d,p)\n"
        );
        let child = self.spawn(ns, &["python3", "-c", &script]);
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout")).read_line(&mut line).expect("echo server");
        assert_eq!(line.trim(), "ready", "UDP echo server did not start");
    }

    /// Sends one UDP datagram from `ns` to `dst:port` and returns the answer, if any came
    /// within `timeout_s` seconds.
    pub fn udp_request(&self, ns: &str, dst: &str, port: u16, payload: &str, timeout_s: f32) -> Option<String> {
        let script = format!(
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout({timeout_s})\ns.sendto(b'{payload}',('{dst}',{port}))\nprint(s.recv(4096).decode())\n"
        );
        let out = run(&mut self.cmd(ns, &["python3", "-c", &script]));
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Starts tcpdump on wan's interface writing to a file; returns a handle to stop it.
    pub fn capture_wan(&mut self) -> Capture {
        let file = self.dir.path().join(format!("wan-{}.pcap", self.children.len()));
        let mut child = self
            .cmd(&self.wan, &["tcpdump", "-i", &self.wan_if, "-n", "-U", "--immediate-mode", "-w"])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump");
        // tcpdump says "listening on ..." once the capture is armed.
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("NETNAT_E2E_DEBUG").is_some() {
                    eprintln!("tcpdump: {line}");
                }
                if line.contains("listening on") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(10)).expect("tcpdump did not start listening");
        Capture { child: Some(child), file }
    }

    /// Whether netnat's kernel rules exist in nat.
    pub fn rules_present(&self) -> bool {
        let raw = run(&mut self.cmd(&self.nat, &["iptables", "-t", "raw", "-S", "NETNAT-PRE"])).status.success();
        let mangle = run(&mut self.cmd(&self.nat, &["iptables", "-t", "mangle", "-S", "NETNAT-POST"])).status.success();
        let nft = run(&mut self.cmd(&self.nat, &["nft", "list", "table", "ip", "netnat"])).status.success();
        raw || mangle || nft
    }

    /// Whether netnat's leak guard (a tc egress filter at preference 20033) is on the nat
    /// host's outside interface.
    pub fn leak_guard_present(&self) -> bool {
        let out = run(&mut self.cmd(&self.nat, &["tc", "filter", "show", "dev", &self.nat_out, "egress"]));
        String::from_utf8_lossy(&out.stdout).contains("pref 20033")
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.vm, &self.nat, &self.wan] {
            let _ = Command::new("ip").args(["netns", "del", ns]).stderr(Stdio::null()).status();
        }
    }
}

/// A running tcpdump.
#[derive(Debug)]
pub struct Capture {
    child: Option<Child>,
    file: PathBuf,
}

impl Capture {
    /// Stops the capture and returns (source, destination) of every IPv4 packet seen.
    pub fn stop(mut self) -> Vec<(Ipv4Addr, Ipv4Addr)> {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
        let _ = child.wait();
        let out = check(Command::new("tcpdump").args(["-r"]).arg(&self.file).args(["-n", "-q", "ip"]));
        if std::env::var_os("NETNAT_E2E_DEBUG").is_some() {
            eprintln!("wan capture:\n{out}");
        }
        out.lines()
            .filter_map(|l| {
                // "12:00:00.000000 IP 203.0.113.1.1234 > 203.0.113.10.80: tcp 0"
                let mut it = l.split_whitespace().skip_while(|w| *w != "IP").skip(1);
                let src = host_of(it.next()?)?;
                let dst = host_of(it.next().filter(|w| *w == ">").and_then(|_| it.next())?.trim_end_matches(':'))?;
                Some((src, dst))
            })
            .collect()
    }
}

/// `a.b.c.d` or `a.b.c.d.port` to the address.
fn host_of(w: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = w.trim_end_matches(':').split('.').collect();
    if parts.len() < 4 {
        return None;
    }
    parts[..4].join(".").parse().ok()
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
