//! `netnat daemon`: the live NAT.
//!
//! Linux threads: NFQUEUE workers (one per queue) run packets through the engines; a timer
//! expires idle sessions when the engines ask for it; a rule keeper puts the kernel rules
//! back when someone else removes them; a watcher follows the host's route and address
//! changes; the control socket answers the cmdlets. The main thread waits for SIGINT/SIGTERM
//! or for a supervised thread to end (`supervise`): on a signal it removes the socket and
//! exits 0, when a thread died it exits 70 so a service manager restarts the daemon.
//!
//! Failure behaviour on Linux (see `platform::rules`): outbound packets of the NATs fail
//! closed (with no daemon they are dropped, never leaked untranslated); inbound packets fail
//! open (with no daemon they reach the host unchanged, so the host's own traffic keeps
//! working). The rules stay while NATs are configured: after SIGTERM, after `kill -9`, after
//! a start that fails; the next daemon start replaces them. Removing the last NAT, or
//! `netnat daemon --remove-rules`, removes them.
//!
//! Windows (`windows.rs`): two WinDivert threads instead of the queues and the timer, the
//! same watcher, and the control pipe served on the main thread; Ctrl+C ends the process,
//! and Windows closes the WinDivert handles, so there is nothing to remove.

// The live NAT runs on Linux and Windows; elsewhere these modules are compiled (and
// type-checked) but not called.
#![cfg_attr(not(any(target_os = "linux", windows)), allow(dead_code, unused_imports))]

pub mod clock;
pub mod dataplane;
#[cfg(any(windows, test))]
mod divert;
pub mod events;
#[cfg(target_os = "linux")]
mod fault;
#[cfg(target_os = "linux")]
mod linux;
pub mod metrics;
mod metrics_http;
#[cfg(target_os = "linux")]
mod nfqueue;
pub mod server;
pub mod service;
pub mod statistics;
pub mod supervise;
#[cfg(windows)]
mod windows;
#[cfg_attr(not(any(target_os = "linux", windows)), allow(dead_code))]
mod worker_loop;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use parking_lot::Mutex;

use self::dataplane::Dataplane;
use self::service::Service;
use crate::platform::{addrs, watch};

/// Arguments of `netnat daemon`.
#[derive(Debug, clap::Args)]
pub struct DaemonArgs {
    /// Control socket path (default /run/netnat/netnat.sock); on Windows a pipe name
    /// (default \\.\pipe\netnat; a bare NAME means \\.\pipe\NAME).
    #[arg(long, env = "NETNAT_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Where the configuration is kept (default /var/lib/netnat; on Windows
    /// %ProgramData%\netnat).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// First NFQUEUE number used (Linux).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub queue_num: u16,
    /// Number of NFQUEUE queues (one worker thread each); default: one per CPU, at most 4
    /// (Linux).
    #[arg(long, value_name = "N")]
    pub queues: Option<u16>,
    /// Have the kernel segment GSO packets and complete checksums before queueing them, as
    /// before netnat took super-packets whole: one queue crossing per MTU-sized segment, so
    /// bulk TCP is several times slower. For kernels or NICs where whole super-packets cause
    /// trouble (Linux).
    #[arg(long)]
    pub no_gso: bool,
    /// After the last packet, keep checking the queues this many microseconds before
    /// sleeping (Linux). A sleeping worker adds the time its CPU takes to wake up to every
    /// packet that finds it asleep (~19 us per wake-up on VMs without halt polling);
    /// spinning removes that at the price of CPU time while traffic flows (a spinning
    /// worker yields to anything else that wants its CPU). It helps only when a queue's
    /// packets come closer together than this: 200 suits request/response traffic at a few
    /// thousand round trips per second. 0 (the default) sleeps at once.
    #[arg(long, value_name = "US", default_value_t = 0)]
    pub busy_poll_us: u64,
    /// Most sessions each NAT holds at once (new flows beyond it are dropped and counted).
    #[arg(long, value_name = "N", default_value_t = netnat_engine::Limits::default().max_sessions)]
    pub max_sessions: usize,
    /// Most sessions one internal host holds at once, so one VM cannot exhaust the ports of
    /// all others.
    #[arg(long, value_name = "N", default_value_t = netnat_engine::Limits::default().max_sessions_per_host)]
    pub max_sessions_per_host: usize,
    /// Serve Prometheus/OpenMetrics metrics at http://ADDR:PORT/metrics (off by default). Only
    /// loopback addresses unless --metrics-allow-remote is given.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Allow --metrics-listen on an address other than loopback (the endpoint has no
    /// authentication and its labels name internal hosts: firewall it).
    #[arg(long, requires = "metrics_listen")]
    pub metrics_allow_remote: bool,
    /// Append the NATs' session events to FILE as JSON lines (mappings and sessions created and
    /// deleted with the reason, ports exhausted, limits reached), rotated by size into FILE.1,
    /// FILE.2, ...; created 0600.
    #[arg(long, value_name = "FILE")]
    pub event_log: Option<PathBuf>,
    /// Rotate --event-log when it would grow past this many MiB.
    #[arg(long, value_name = "MIB", default_value_t = 64, requires = "event_log")]
    pub event_log_max_mib: u64,
    /// Old --event-log files kept (FILE.1 is the newest).
    #[arg(long, value_name = "N", default_value_t = 4, requires = "event_log")]
    pub event_log_keep: u32,
    /// Count packets and bytes per session and direction (PacketsOut, PacketsIn, BytesOut,
    /// BytesIn in `Get-NetNatSession -Detailed`); off by default, as counting writes each
    /// session on every packet.
    #[arg(long)]
    pub session_counters: bool,
    /// Send the session events as IPFIX (RFC 7011, with RFC 8158's NAT event fields) over UDP
    /// to a collector, e.g. nfdump's `nfcapd -p 4739`.
    #[arg(long, value_name = "ADDR:PORT")]
    pub ipfix_collector: Option<std::net::SocketAddr>,
    /// Remove netnat's kernel rules and exit (Linux). The rules stay when the daemon stops,
    /// so the NATs' traffic fails closed; this is for taking netnat off the host.
    #[arg(long)]
    pub remove_rules: bool,
}

impl DaemonArgs {
    /// The session limits given on the command line.
    pub fn limits(&self) -> netnat_engine::Limits {
        netnat_engine::Limits {
            max_sessions: self.max_sessions,
            max_sessions_per_host: self.max_sessions_per_host,
            ..netnat_engine::Limits::default()
        }
    }

    /// `--state-dir`, else the platform's default.
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(crate::state::default_state_dir)
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> anyhow::Result<()> {
    std::thread::Builder::new().name(name.into()).spawn(f).with_context(|| format!("starting thread {name}"))?;
    Ok(())
}

/// Starts the thread that follows route and address changes: cached routes are dropped and
/// the NATs that translate to the host's addresses are rebuilt.
fn spawn_watcher(plane: &Arc<Dataplane>, service: &Arc<Mutex<Service>>) -> anyhow::Result<()> {
    let plane = Arc::clone(plane);
    let service = Arc::clone(service);
    spawn("netnat-watch", move || {
        let result = watch::run(|| {
            plane.routes().invalidate();
            match addrs::local_ipv4() {
                Ok(a) => service.lock().set_host_addresses(a),
                Err(e) => tracing::warn!("cannot list the host's addresses: {e}"),
            }
        });
        if let Err(e) = result {
            tracing::error!("route/address watcher stopped: {e}; route changes will not be followed");
        }
    })
}

/// The event hub, with `--event-log` opened and `--ipfix-collector` connected when given (before the daemon says it is ready,
/// so a path it cannot write fails the start with the reason).
fn open_event_hub(args: &DaemonArgs) -> anyhow::Result<Arc<events::EventHub>> {
    let log = args
        .event_log
        .as_ref()
        .map(|path| {
            crate::event_log::RotatingLog::open(
                path,
                args.event_log_max_mib.saturating_mul(1 << 20),
                args.event_log_keep,
            )
            .with_context(|| format!("opening --event-log {}", path.display()))
        })
        .transpose()?;
    let ipfix = args
        .ipfix_collector
        .map(|c| {
            crate::ipfix::IpfixExporter::new(c, 1)
                .with_context(|| format!("--ipfix-collector {c}: cannot open a UDP socket to it"))
        })
        .transpose()?;
    Ok(events::EventHub::new(log, ipfix))
}

/// Drains the engines' session events into `hub` on a supervised thread.
fn start_events(
    hub: &Arc<events::EventHub>,
    plane: &Arc<Dataplane>,
    clock: clock::Clock,
    supervisor: &supervise::Supervisor,
) -> anyhow::Result<()> {
    let (hub, plane) = (Arc::clone(hub), Arc::clone(plane));
    supervisor.spawn("netnat-events", move || {
        events::pump(&plane, clock, &hub);
        Ok(())
    })
}

/// Binds `--metrics-listen` when given (before the daemon says it is ready, so a refused or
/// busy address fails the start with the reason).
fn bind_metrics(args: &DaemonArgs) -> anyhow::Result<Option<std::net::TcpListener>> {
    args.metrics_listen.map(|addr| metrics_http::bind(addr, args.metrics_allow_remote)).transpose()
}

/// Serves the metrics endpoint on a supervised thread: the statistics of `plane` at the
/// daemon's clock, and each NAT's port use.
fn start_metrics(
    listener: std::net::TcpListener,
    plane: &Arc<Dataplane>,
    clock: clock::Clock,
    supervisor: &supervise::Supervisor,
) -> anyhow::Result<()> {
    let plane = Arc::clone(plane);
    let addr = listener.local_addr().ok();
    supervisor.spawn("netnat-metrics", move || {
        metrics_http::serve(listener, |format| {
            let snapshot = statistics::collect(&plane, clock.now());
            let usage: Vec<_> = snapshot
                .nats
                .iter()
                .filter_map(|n| statistics::usage(&plane, &n.name).map(|u| (n.name.clone(), u)))
                .collect();
            metrics::render(&snapshot, &usage, format)
        });
        anyhow::bail!("the metrics listener stopped")
    })?;
    if let Some(addr) = addr {
        tracing::info!(%addr, "serving metrics at http://{addr}/metrics");
    }
    Ok(())
}

/// A seed for port choice that differs between runs.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new().build_hasher().finish()
}

/// Runs the daemon in the foreground.
pub fn run(args: DaemonArgs) -> anyhow::Result<ExitCode> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NETNAT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    imp::run(args)
}

#[cfg(target_os = "linux")]
mod imp {
    use std::process::ExitCode;
    use std::sync::Arc;
    use std::time::Duration;

    use anyhow::Context;
    use parking_lot::Mutex;

    use super::clock::Clock;
    use super::dataplane::Dataplane;
    use super::linux::{self, RuleKeeper};
    use super::service::Service;
    use super::supervise::{Event, Supervisor};
    use super::{nfqueue, random_seed, server, DaemonArgs};
    use crate::control::{self, transport};
    use crate::platform::addrs;
    use crate::platform::private_dir::{self, DirRole};
    use crate::platform::rules::{self, Queues};
    use crate::state::StateStore;

    pub fn run(args: DaemonArgs) -> anyhow::Result<ExitCode> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            anyhow::bail!("netnat daemon must run as root: it installs iptables rules and reads NFQUEUE (try sudo)");
        }
        if args.remove_rules {
            rules::remove()?;
            eprintln!(
                "netnat daemon: kernel rules removed; with IP forwarding on, the internal prefixes are now routed untranslated"
            );
            return Ok(ExitCode::SUCCESS);
        }
        let socket = control::socket_path(args.socket.clone());
        let state_dir = args.state_dir();
        let metrics = super::bind_metrics(&args)?;
        let event_hub = super::open_event_hub(&args)?;
        // Whoever can write into either directory can replace the configuration or the
        // socket: refuse to start unless both are root's and closed to others.
        let euid = transport::own_uid().unwrap_or(0);
        private_dir::ensure_private_dir(&state_dir, DirRole::State, euid)?;
        private_dir::ensure_private_dir(private_dir::socket_dir(&socket), DirRole::Socket, euid)?;
        let store = StateStore::new(&state_dir);
        let state = store.load()?;
        if socket.exists() {
            if transport::is_live(&socket) {
                anyhow::bail!(
                    "another netnat daemon is already serving {}; stop it first, or give this one another --socket",
                    socket.display()
                );
            }
            std::fs::remove_file(&socket).with_context(|| format!("removing the stale socket {}", socket.display()))?;
        }
        if std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").map(|s| s.trim() == "0").unwrap_or(false) {
            tracing::warn!(
                "IP forwarding is off: nothing will cross the NAT; enable it with `sysctl -w net.ipv4.ip_forward=1`"
            );
        }
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let queues = Queues {
            first: args.queue_num,
            count: args.queues.unwrap_or(u16::try_from(cpus.min(4)).unwrap_or(1)).max(1),
        };

        // Rules left by an earlier daemon (stopped, killed, or failed to start) stay in place
        // until the configuration below replaces them: they keep the NATs' outbound traffic
        // failing closed through the restart.
        let (supervisor, events) = Supervisor::new();
        let clock = Clock::start();
        let plane = Arc::new(Dataplane::new());
        let keeper = Arc::new(RuleKeeper::new(queues));
        let host = addrs::local_ipv4().context("listing the host's addresses")?;
        let hook_keeper = Arc::clone(&keeper);
        let service = Service::new(
            state,
            Some(store),
            Arc::clone(&plane),
            clock,
            super::service::EngineSettings {
                session_counters: args.session_counters,
                ..super::service::EngineSettings::for_host(random_seed(), args.limits())
            },
            host,
            Box::new(move |_, nats| {
                // Errors are logged by the keeper, which retries every second.
                let _ = hook_keeper.install(nats);
            }),
        )
        .with_context(|| format!("loading the configuration from {}", state_dir.display()))?;
        if !plane.nats().is_empty() && !keeper.in_force() {
            anyhow::bail!(
                "cannot install the kernel rules for the configured NATs (see the error above); the NATs' outbound traffic stays blocked until they are installed"
            );
        }
        let service = Arc::new(Mutex::new(service));
        plane.set_supervisor(supervisor.clone());
        // The workers start once the NATs are loaded: a worker with an empty dataplane would
        // accept the queued outbound packets of a NAT it does not know yet, untranslated.
        // Until they are bound the kernel drops what it queues for them (fail-closed).
        let tuning =
            nfqueue::Tuning { gso: !args.no_gso, busy_poll: std::time::Duration::from_micros(args.busy_poll_us) };
        let faults = super::fault::Faults::from_env()?;
        if faults != super::fault::Faults::default() {
            tracing::warn!(?faults, "fault injection armed by {} (tests only)", super::fault::VAR);
        }
        nfqueue::start(queues.first, queues.count, tuning, faults, Arc::clone(&plane), clock, &supervisor)?;

        supervisor.spawn("netnat-timer", {
            let plane = Arc::clone(&plane);
            move || {
                timer(&plane, clock);
                Ok(())
            }
        })?;
        supervisor.spawn("netnat-rules", {
            let keeper = Arc::clone(&keeper);
            move || linux::keep_rules(&keeper)
        })?;
        super::spawn_watcher(&plane, &service)?;
        if let Some(metrics) = metrics {
            super::start_metrics(metrics, &plane, clock, &supervisor)?;
        }
        super::start_events(&event_hub, &plane, clock, &supervisor)?;

        let listener =
            transport::listen(&socket).with_context(|| format!("creating the control socket {}", socket.display()))?;
        supervisor.spawn("netnat-control", {
            let service = Arc::clone(&service);
            move || {
                server::serve(listener, service, event_hub);
                Ok(())
            }
        })?;

        let mut signals =
            signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
                .context("installing signal handlers")?;
        let signal_events = supervisor.events();
        std::thread::Builder::new()
            .name("netnat-signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    let _ = signal_events.send(Event::Signal(signal));
                }
            })
            .context("starting the signal thread")?;
        tracing::info!(
            socket = %socket.display(),
            state = %state_dir.display(),
            queues = ?(queues.first..queues.first + queues.count),
            "netnat daemon ready"
        );
        eprintln!("netnat daemon: listening on {}", socket.display());
        let event = events.recv().unwrap_or(Event::Signal(signal_hook::consts::SIGTERM));
        // Hold the service so no request changes rules while the daemon goes.
        let _quiet = service.lock();
        let _ = std::fs::remove_file(&socket);
        match event {
            Event::Signal(signal) => {
                tracing::info!(
                    signal,
                    "stopping; the kernel rules stay, so the NATs' outbound traffic is dropped (never leaked) until netnat daemon runs again (Remove-NetNat or `netnat daemon --remove-rules` removes them)"
                );
                Ok(ExitCode::SUCCESS)
            }
            Event::Died { thread, why } => {
                tracing::error!(
                    thread,
                    "a daemon thread ended ({why}); exiting so the service manager restarts netnat; the NATs' traffic fails closed meanwhile"
                );
                eprintln!("netnat daemon: thread {thread} ended ({why}); exiting");
                Ok(ExitCode::from(70))
            }
        }
    }

    /// The longest the timer sleeps: new NATs and changed timeouts are noticed this fast.
    const TIMER_MAX_SLEEP: Duration = Duration::from_secs(1);
    /// The shortest: a NAT that asks for a call right away still leaves the CPU to packets.
    const TIMER_MIN_SLEEP: Duration = Duration::from_millis(1);

    /// Expires idle sessions when each NAT's `poll_timeout` says so.
    /// Fragments the engine held are sent from the host when it releases them.
    fn timer(plane: &Dataplane, clock: Clock) {
        let raw = crate::platform::raw::RawSender::open()
            .map_err(|e| tracing::warn!("no raw socket ({e}): held fragments will be dropped"))
            .ok();
        loop {
            let now = clock.now();
            let mut next = now + TIMER_MAX_SLEEP;
            for nat in plane.nats().iter() {
                for packet in nat.handle_timeout_if_due(now) {
                    if let Some(raw) = &raw {
                        if let Err(e) = raw.send(&packet) {
                            tracing::debug!("cannot send a released fragment: {e}");
                        }
                    }
                }
                if let Some(due) = nat.poll_timeout() {
                    next = next.min(due);
                }
            }
            let wait = next.saturating_duration_since(clock.now());
            std::thread::sleep(wait.clamp(TIMER_MIN_SLEEP, TIMER_MAX_SLEEP));
        }
    }
}

#[cfg(windows)]
mod imp {
    use std::process::ExitCode;
    use std::sync::Arc;

    use anyhow::Context;
    use parking_lot::Mutex;

    use super::clock::Clock;
    use super::dataplane::Dataplane;
    use super::service::Service;
    use super::supervise::{Event, Supervisor};
    use super::windows::{self, FilterSlot};
    use super::{random_seed, server, spawn_watcher, DaemonArgs};
    use crate::control::{self, transport};
    use crate::platform::addrs;
    use crate::state::StateStore;

    pub fn run(args: DaemonArgs) -> anyhow::Result<ExitCode> {
        let pipe = control::socket_path(args.socket.clone());
        let state_dir = args.state_dir();
        let metrics = super::bind_metrics(&args)?;
        let event_hub = super::open_event_hub(&args)?;
        if args.queues.is_some() || args.queue_num != 0 || args.no_gso || args.busy_poll_us != 0 {
            tracing::warn!(
                "--queue-num, --queues, --no-gso and --busy-poll-us are NFQUEUE settings (Linux); ignored on Windows"
            );
        }
        // Created SYSTEM/Administrators-only: ProgramData lets every user add files.
        crate::platform::win_security::create_private_dir(&state_dir)
            .with_context(|| format!("creating the state directory {}", state_dir.display()))?;
        let store = StateStore::new(&state_dir);
        let state = store.load()?;
        // Claim the pipe first: it fails when another daemon (or program) owns the name.
        let listener =
            transport::listen(&pipe).with_context(|| format!("creating the control pipe {}", pipe.display()))?;

        let clock = Clock::start();
        let plane = Arc::new(Dataplane::new());
        let slot = Arc::new(FilterSlot::default());
        let host = addrs::local_ipv4().context("listing the host's addresses")?;
        let hook_slot = Arc::clone(&slot);
        let service = Service::new(
            state,
            Some(store),
            Arc::clone(&plane),
            clock,
            super::service::EngineSettings {
                session_counters: args.session_counters,
                ..super::service::EngineSettings::for_host(random_seed(), args.limits())
            },
            host,
            Box::new(move |_, nats| windows::install(nats, &hook_slot)),
        )
        .with_context(|| format!("loading the configuration from {}", state_dir.display()))?;
        let service = Arc::new(Mutex::new(service));
        // As on Linux: a thread that ends (the WinDivert threads, the control server) ends
        // the daemon with exit code 70 and a message naming it, so the service manager
        // restarts it; Get-NetNatStatistics shows each thread's health.
        let (supervisor, events) = Supervisor::new();
        plane.set_supervisor(supervisor.clone());
        windows::start(&slot, &plane, clock, &supervisor)?;
        spawn_watcher(&plane, &service)?;
        if let Some(metrics) = metrics {
            super::start_metrics(metrics, &plane, clock, &supervisor)?;
        }
        super::start_events(&event_hub, &plane, clock, &supervisor)?;
        supervisor.spawn("netnat-control", move || {
            server::serve(listener, service, event_hub);
            anyhow::bail!("the control pipe server stopped")
        })?;

        tracing::info!(pipe = %pipe.display(), state = %state_dir.display(), "netnat daemon ready");
        eprintln!("netnat daemon: listening on {} (Ctrl+C stops it)", pipe.display());
        match events.recv() {
            Ok(Event::Died { thread, why }) => {
                tracing::error!(
                    thread,
                    "a daemon thread ended ({why}); exiting so the service manager restarts netnat"
                );
                eprintln!("netnat daemon: thread {thread} ended ({why}); exiting");
                Ok(ExitCode::from(70))
            }
            Ok(Event::Signal(_)) | Err(_) => Ok(ExitCode::SUCCESS),
        }
    }
}

#[cfg(not(any(target_os = "linux", windows)))]
mod imp {
    use std::process::ExitCode;

    use super::DaemonArgs;

    pub fn run(args: DaemonArgs) -> anyhow::Result<ExitCode> {
        let _ = args;
        anyhow::bail!("netnat daemon runs on Linux (NFQUEUE) and Windows (WinDivert) only")
    }
}
