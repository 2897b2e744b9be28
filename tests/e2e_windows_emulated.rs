//! The seed article's walk-through through **netnat.exe** (the Windows build, run by Wine in
//! the `nat` namespace) and an emulated WinDivert device: the stand-in WinDivert.dll of
//! `tools/windivert-emu/` (WinDivert's own filter compiler and evaluator, device functions
//! relayed) and the relay of `tests/windivert_relay/` (NFQUEUE at FORWARD / INPUT / OUTPUT,
//! raw-socket injection). vm — nat — wan as in `e2e_basic`, real ping, curl, a UDP request,
//! `Get-NetNatSession`, a static mapping reached from wan, tcpdump on wan as the witness, and a
//! daemon restart that keeps the configuration. docs/windows.md lists where the emulation
//! differs from the real driver.
//!
//! Needs root, wine, and the Windows build with the stand-in DLL (`bash .ci/windows-wine.sh`
//! makes both). Without them the test records a skip that says how to get them; in CI (`CI`
//! set) a missing build is an error, since `.ci/run` builds it first.
#![cfg(target_os = "linux")]

mod e2e_common;
mod windivert_relay;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use e2e_common::*;
use windivert_relay::{Hook, Relay};

const TEST: &str = "article_walkthrough_through_netnat_exe_with_emulated_windivert";
const BUILD: &str = "bash .ci/windows-wine.sh";

/// What `New-NetNat` prints, the same text `e2e_basic` expects from the Linux build.
const NEW_NETNAT_OUTPUT: &str = "
Name                             : WinNAT
ExternalIPInterfaceAddressPrefix :
InternalIPInterfaceAddressPrefix : 10.100.0.0/16
IcmpQueryTimeout                 : 30
TcpEstablishedConnectionTimeout  : 1800
TcpTransientConnectionTimeout    : 120
TcpFilteringBehavior             : AddressDependentFiltering
UdpFilteringBehavior             : AddressDependentFiltering
UdpIdleSessionTimeout            : 120
UdpInboundRefresh                : False
Store                            : Local
Active                           : True


";

/// The Windows files the test runs: netnat.exe, the stand-in WinDivert.dll and the
/// bcryptprimitives.dll shim Wine 8 needs.
struct WindowsBuild {
    exe: PathBuf,
    emu_dll: PathBuf,
    shim: PathBuf,
}

fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // target/debug/deps/<this test>
    let exe = std::env::current_exe().expect("test binary path");
    exe.ancestors().nth(3).map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("target"))
}

/// Finds the build (`NETNAT_WINDOWS_BUILD` = the directory with netnat.exe, default
/// target/x86_64-pc-windows-gnu/debug), or says what is missing and how to make it.
fn windows_build() -> Result<WindowsBuild, String> {
    let dir = std::env::var_os("NETNAT_WINDOWS_BUILD")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("x86_64-pc-windows-gnu").join("debug"));
    let b = WindowsBuild {
        exe: dir.join("netnat.exe"),
        emu_dll: dir.join("windivert-emu").join("WinDivert.dll"),
        shim: dir.join("bcryptprimitives.dll"),
    };
    for f in [&b.exe, &b.emu_dll, &b.shim] {
        if !f.is_file() {
            return Err(format!("{} is missing; build it with `{BUILD}`", f.display()));
        }
    }
    for tool in ["wine", "wineserver", "wineboot"] {
        if !Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().is_ok_and(|o| o.status.success()) {
            return Err(format!("`{tool}` is missing; `{BUILD}` installs wine"));
        }
    }
    Ok(b)
}

/// netnat.exe under Wine in the nat namespace, with its own Wine prefix (so its wineserver,
/// which creates the process's sockets, runs in nat too) and its own copy of the files.
struct Wine {
    nat: String,
    prefix: PathBuf,
    bin: PathBuf,
    pipe: String,
    state: String,
    relay_port: u16,
    log: PathBuf,
    daemon: Option<Child>,
}

impl Wine {
    fn new(t: &Topology, build: &WindowsBuild, relay_port: u16) -> Wine {
        let bin = t.dir.path().join("windows");
        std::fs::create_dir(&bin).unwrap();
        // A copy: the stand-in must not replace the real WinDivert.dll next to the build.
        std::fs::copy(&build.exe, bin.join("netnat.exe")).unwrap();
        std::fs::copy(&build.emu_dll, bin.join("WinDivert.dll")).unwrap();
        std::fs::copy(&build.shim, bin.join("bcryptprimitives.dll")).unwrap();
        let state = t.dir.path().join("state");
        let w = Wine {
            nat: t.nat.clone(),
            prefix: t.dir.path().join("wine-prefix"),
            bin,
            pipe: format!("netnat-emu-{}", std::process::id()),
            state: format!("Z:{}", state.display()).replace('/', "\\"),
            relay_port,
            log: t.dir.path().join("daemon.log"),
            daemon: None,
        };
        let started = Instant::now();
        let out = w.run_bounded(&mut w.command("wineboot", &["-i"]), Duration::from_secs(180));
        assert!(out.status.success(), "wineboot failed: {}", String::from_utf8_lossy(&out.stderr));
        eprintln!("{TEST}: Wine prefix ready in {:.1} s", started.elapsed().as_secs_f64());
        w
    }

    /// `program args` in nat with this prefix.
    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.nat, program])
            .args(args)
            .env("WINEPREFIX", &self.prefix)
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            .env("WINEARCH", "win64")
            .env("NETNAT_WINDIVERT_EMU", self.relay_port.to_string())
            .env_remove("NETNAT_SKIP_LOG")
            .current_dir(&self.bin)
            .stdin(Stdio::null());
        c
    }

    fn netnat(&self, args: &[&str]) -> Command {
        let exe = self.bin.join("netnat.exe");
        let mut full = vec![exe.to_str().expect("utf-8 path"), "--socket", &self.pipe];
        full.extend_from_slice(args);
        self.command("wine", &full)
    }

    fn start_daemon(&mut self) {
        assert!(self.daemon.is_none());
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let exe = self.bin.join("netnat.exe");
        let mut c = self.command("wine", &[exe.to_str().unwrap(), "daemon", "--socket", &self.pipe, "--state-dir"]);
        c.arg(&self.state).env("NETNAT_LOG", "info").stdout(Stdio::null()).stderr(log);
        self.daemon = Some(c.spawn().expect("start wine netnat.exe daemon"));
        let ready = wait_until(Duration::from_secs(60), || {
            if let Some(status) = self.daemon.as_mut().and_then(|d| d.try_wait().ok().flatten()) {
                panic!("netnat.exe daemon exited at start ({status}):\n{}", self.log());
            }
            self.cmdlet_output(&["Get-NetNatGlobal"]).status.success()
        });
        assert!(ready, "netnat.exe daemon did not answer within 60 s:\n{}", self.log());
    }

    fn kill_daemon(&mut self) {
        let mut d = self.daemon.take().expect("daemon running");
        let _ = d.kill();
        let _ = d.wait();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn cmdlet_output(&self, args: &[&str]) -> Output {
        self.run_bounded(&mut self.netnat(args), Duration::from_secs(60))
    }

    /// Runs a Wine command with its output in files, not pipes: Wine's helper processes
    /// (wineserver, services.exe) may inherit and keep pipes open long after the command
    /// ended. Killed and reported after `timeout`.
    fn run_bounded(&self, cmd: &mut Command, timeout: Duration) -> Output {
        static RUNS: AtomicU32 = AtomicU32::new(0);
        let tag = RUNS.fetch_add(1, Ordering::Relaxed);
        let (out_path, err_path) = (self.bin.join(format!("out-{tag}")), self.bin.join(format!("err-{tag}")));
        let out = std::fs::File::create(&out_path).unwrap();
        let err = std::fs::File::create(&err_path).unwrap();
        let mut child = cmd.stdout(out).stderr(err).spawn().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{cmd:?} did not finish within {timeout:?}:\nstdout: {}\nstderr: {}\ndaemon log:\n{}",
                    std::fs::read_to_string(&out_path).unwrap_or_default(),
                    std::fs::read_to_string(&err_path).unwrap_or_default(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let output = Output {
            status,
            stdout: std::fs::read(&out_path).unwrap_or_default(),
            stderr: std::fs::read(&err_path).unwrap_or_default(),
        };
        let _ = std::fs::remove_file(out_path);
        let _ = std::fs::remove_file(err_path);
        output
    }

    fn cmdlet(&self, args: &[&str]) -> String {
        let out = self.cmdlet_output(args);
        assert!(
            out.status.success(),
            "wine netnat.exe {} failed:\nstdout: {}\nstderr: {}\ndaemon log:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn sessions(&self) -> Vec<serde_json::Value> {
        serde_json::from_str(&self.cmdlet(&["Get-NetNatSession", "-o", "json"])).expect("sessions JSON")
    }
}

impl Drop for Wine {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
        let _ = self.command("wineserver", &["-k"]).stderr(Stdio::null()).status();
    }
}

/// Waits until the daemon's handles are open in the relay's log and `want` holds for them.
fn wait_for_handles(relay: &Relay, wine: &Wine, what: &str, want: impl Fn(&[(bool, String)]) -> bool) {
    let ok = wait_until(Duration::from_secs(20), || want(&relay.open_handles()));
    assert!(ok, "WinDivert handles: expected {what}, have {:?}\ndaemon log:\n{}", relay.open_handles(), wine.log());
}

#[test]
fn article_walkthrough_through_netnat_exe_with_emulated_windivert() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip::record_skip(TEST, "needs root: network namespaces, NFQUEUE and netnat.exe under Wine");
        return;
    }
    let build = match windows_build() {
        Ok(b) => b,
        Err(why) if std::env::var_os("CI").is_some() => panic!("{TEST}: {why} (CI runs `{BUILD}` before the tests)"),
        Err(why) => {
            skip::record_skip(TEST, &why);
            return;
        }
    };
    if !root_or_skip(TEST) {
        return;
    }
    let started = Instant::now();
    let mut t = Topology::new();
    let relay = Relay::start(&t.nat).expect("the WinDivert relay in nat");
    let nat = t.nat.clone();
    for rule in relay.rules() {
        let mut args = vec!["iptables"];
        args.extend(rule.iter().map(String::as_str));
        t.ns(&nat, &args);
    }
    let mut wine = Wine::new(&t, &build, relay.port());
    wine.start_daemon();
    // The daemon's three handles (design: forward, sender, network), all "false" without a NAT.
    wait_for_handles(&relay, &wine, "three handles with the filter false", |h| {
        h.len() == 3 && h.iter().all(|(_, f)| f == "false") && h.iter().filter(|(fwd, _)| *fwd).count() == 1
    });

    // PS C:\> Get-NetNat -> nothing; New-NetNat as in the article, printed as on Linux.
    assert_eq!(wine.cmdlet(&["Get-NetNat"]), "");
    let out = wine.cmdlet(&["New-NetNat", "-Name", "WinNAT", "-InternalIPInterfaceAddressPrefix", "10.100.0.0/16"]);
    assert_eq!(out, NEW_NETNAT_OUTPUT);
    assert_eq!(wine.cmdlet(&["Get-NetNat"]), NEW_NETNAT_OUTPUT);
    wait_for_handles(&relay, &wine, "a forward filter for 10.100.0.0/16 and a network filter for 203.0.113.1", |h| {
        h.iter().any(|(fwd, f)| *fwd && f.contains("ip.SrcAddr >= 10.100.0.0"))
            && h.iter().any(|(fwd, f)| !*fwd && f.contains("ip.DstAddr == 203.0.113.1"))
    });

    let www = t.dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    let blob: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(www.join("blob"), &blob).unwrap();
    let (vm, wan) = (t.vm.clone(), t.wan.clone());
    t.http_server(&wan, WAN1, 8000, &www);
    t.udp_echo(&wan, WAN1, 5353);
    let capture = t.capture_wan();

    // ping
    let ping = run(&mut t.cmd(&vm, &["ping", "-c", "3", "-W", "2", WAN1]));
    assert!(
        ping.status.success(),
        "ping through netnat.exe failed:\n{}\nrelay: {:?}\ndaemon log:\n{}",
        String::from_utf8_lossy(&ping.stdout),
        relay.counts(),
        wine.log()
    );
    // curl
    let got = t.dir.path().join("got");
    let curl =
        run(t.cmd(&vm, &["curl", "-sS", "--max-time", "30", "-o"]).arg(&got).arg(format!("http://{WAN1}:8000/blob")));
    assert!(curl.status.success(), "curl through netnat.exe failed: {}", String::from_utf8_lossy(&curl.stderr));
    assert!(std::fs::read(&got).unwrap() == blob, "downloaded bytes differ from the served file");
    // a UDP request; the server sees the external address
    let answer = t.udp_request(&vm, WAN1, 5353, "hello", 3.0).expect("no UDP answer through netnat.exe");
    assert_eq!(answer, format!("echo {EXTERNAL}:hello"));

    // Get-NetNatSession: the three flows, translated to the external address.
    let sessions = wine.sessions();
    for (protocol, port) in [(1, None), (6, Some(8000)), (17, Some(5353))] {
        let s = sessions
            .iter()
            .find(|s| s["Protocol"] == protocol)
            .unwrap_or_else(|| panic!("no session of protocol {protocol}: {sessions:?}"));
        assert_eq!(s["NatName"], "WinNAT");
        assert_eq!(s["InternalSourceAddress"], VM);
        assert_eq!(s["ExternalSourceAddress"], EXTERNAL);
        assert_eq!(s["ExternalDestinationAddress"], WAN1);
        if let Some(port) = port {
            assert_eq!(s["ExternalDestinationPort"], port, "{s}");
        }
    }
    let listing = wine.cmdlet(&["Get-NetNatSession"]);
    assert!(listing.starts_with("\nNatName                    : WinNAT\nInternalRoutingDomainId    : {00000000-0000-0000-0000-000000000000}\nCreationTime               : "), "{listing}");
    assert!(listing.contains("ExternalSourceAddress      : 203.0.113.1\n"), "{listing}");

    // A static mapping reached from wan: 203.0.113.1:8080 -> vm:80.
    let vm_www = t.dir.path().join("vm-www");
    std::fs::create_dir(&vm_www).unwrap();
    std::fs::write(vm_www.join("index.html"), "served by the vm behind netnat.exe\n").unwrap();
    t.http_server(&vm, VM, 80, &vm_www);
    wine.cmdlet(&[
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
    // 8080 is inside the NAT's dynamic range (1024-49151 here), which the network filter
    // already diverts: the filters do not change.
    let url = format!("http://{EXTERNAL}:8080/index.html");
    let from_wan = run(&mut t.cmd(&wan, &["curl", "-sS", "--max-time", "10", &url]));
    assert!(
        from_wan.status.success(),
        "wan cannot reach the static mapping: {}\nrelay: {:?}\ndaemon log:\n{}",
        String::from_utf8_lossy(&from_wan.stderr),
        relay.counts(),
        wine.log()
    );
    assert_eq!(String::from_utf8_lossy(&from_wan.stdout), "served by the vm behind netnat.exe\n");
    let inbound = wine.sessions();
    assert!(
        inbound.iter().any(|s| s["Protocol"] == 6
            && s["InternalSourceAddress"] == VM
            && s["InternalSourcePort"] == 80
            && s["ExternalSourcePort"] == 8080
            && s["ExternalDestinationAddress"] == WAN1),
        "no session for the static mapping: {inbound:?}"
    );

    // wan saw packets, and none with an internal address.
    let seen = capture.stop();
    assert!(seen.len() > 10, "the wan capture saw almost nothing: {seen:?}");
    let external: Ipv4Addr = EXTERNAL.parse().unwrap();
    for (src, dst) in &seen {
        assert!(
            !src.to_string().starts_with("10.100.") && !dst.to_string().starts_with("10.100."),
            "wan saw an internal address: {src} > {dst}"
        );
    }
    assert!(seen.iter().any(|(s, _)| *s == external));

    // The packets really went through the emulated device: diverted at both layers, sent
    // back by netnat.exe, none lost to a missing verdict.
    let counts = relay.counts();
    eprintln!("{TEST}: relay counters {counts:?}");
    assert!(counts.diverted.get(&Hook::Forward).copied().unwrap_or(0) > 100, "{counts:?}");
    assert!(counts.diverted.get(&Hook::Input).copied().unwrap_or(0) > 100, "{counts:?}");
    assert!(counts.injected.get(&(false, true)).copied().unwrap_or(0) > 200, "{counts:?}");
    assert_eq!(counts.verdict_timeouts, 0, "{counts:?}");
    assert_eq!(counts.inject_errors, 0, "{counts:?}");

    // A restart (the process killed) keeps the configuration; traffic flows again.
    wine.kill_daemon();
    assert!(
        wait_until(Duration::from_secs(10), || relay.open_handles().is_empty()),
        "handles still open after the daemon died: {:?}",
        relay.open_handles()
    );
    // With no handle open nothing is diverted: the vm's packets are routed untranslated and
    // wan, which has no route to 10.100.0.0/16, cannot answer (ping, so that no server dies on
    // an unroutable reply).
    assert!(!t.ping_ok(&vm, WAN1), "translated with no daemon running");
    wine.start_daemon();
    assert_eq!(wine.cmdlet(&["Get-NetNat"]), NEW_NETNAT_OUTPUT);
    let mappings = wine.cmdlet(&["Get-NetNatStaticMapping", "-o", "json"]);
    assert!(mappings.contains("8080") && mappings.contains(VM), "{mappings}");
    wait_for_handles(&relay, &wine, "the restored filters", |h| {
        h.iter().any(|(fwd, f)| *fwd && f.contains("ip.SrcAddr >= 10.100.0.0"))
            && h.iter().any(|(fwd, f)| !*fwd && f.contains("ip.DstAddr == 203.0.113.1"))
    });
    let before = relay.counts();
    let answer = t.udp_request(&vm, WAN1, 5353, "again", 3.0).unwrap_or_else(|| {
        panic!(
            "no UDP answer after the restart\nrelay before: {before:?}\nrelay after: {:?}\nhandles: {:?}\ndaemon log:\n{}",
            relay.counts(),
            relay.open_handles(),
            wine.log()
        )
    });
    assert_eq!(answer, format!("echo {EXTERNAL}:again"));
    eprintln!("{TEST}: walk-through done in {:.1} s", started.elapsed().as_secs_f64());
}
