//! `netnat daemon`: the live NAT.
//!
//! Linux threads: NFQUEUE workers (one per queue) run packets through the engines; a timer
//! expires idle sessions when the engines ask for it; a rule keeper puts the kernel rules
//! back when someone else removes them; a watcher follows the host's route and address
//! changes; the control socket answers the cmdlets. The main thread waits for SIGINT/SIGTERM
//! or for a supervised thread to end (`supervise`): on a signal it removes the socket and
//! exits 0, when a thread died it exits 70 so a service manager restarts the daemon.
//!
//! Windows (`windows.rs`): two WinDivert threads instead of the queues and the timer, the
//! same watcher and control server (on a named pipe); Ctrl+C ends the process, and Windows
//! closes the WinDivert handles, so there is nothing to remove.
//!
//! Both start, serve and stop through one sequence, `bootstrap::run`, with what differs per
//! OS behind its `Platform` trait (`bootstrap/linux.rs`, `bootstrap/windows.rs`; failure
//! behaviour on Linux is described there).

// The live NAT runs on Linux and Windows; elsewhere these modules are compiled (and
// type-checked) but not called.
#![cfg_attr(not(any(target_os = "linux", windows)), allow(dead_code, unused_imports))]

#[cfg(any(target_os = "linux", windows))]
mod bootstrap;
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
pub(crate) mod worker_loop;

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

#[cfg(any(target_os = "linux", windows))]
mod imp {
    /// The one start-serve-stop sequence, on this OS's platform.
    pub fn run(args: super::DaemonArgs) -> anyhow::Result<std::process::ExitCode> {
        super::bootstrap::run::<super::bootstrap::Host>(args)
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
