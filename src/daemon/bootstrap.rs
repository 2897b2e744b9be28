//! How `netnat daemon` starts, serves and stops: one sequence for Linux and Windows
//! ([`run`]), with what differs behind a small [`Platform`] trait (`linux.rs`: NFQUEUE,
//! iptables rules, signals; `windows.rs`: WinDivert handles and filters, the control pipe).
//!
//! The sequence: the platform's checks (privileges, private directories, a control endpoint
//! another daemon owns) → the metrics listener and the event outputs (so a bad address or
//! path fails the start, with the reason) → the saved configuration, put in force through the
//! platform's change hook → the capture threads (only now: a worker with an empty dataplane
//! would pass a NAT's packets untranslated) → the watcher, metrics and events threads → the
//! control endpoint → "ready". Then the main thread waits for a stop request or for a
//! supervised thread to end: exit 0, or 70 so that a service manager restarts the daemon.

use std::ops::ControlFlow;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use parking_lot::Mutex;

use super::clock::Clock;
use super::dataplane::Dataplane;
use super::service::{ChangeHook, EngineSettings, Service};
use super::supervise::{Event, Supervisor};
use super::{server, DaemonArgs};
use crate::control::{self, transport};
use crate::platform::addrs;
use crate::state::StateStore;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(windows)]
mod windows;

#[cfg(target_os = "linux")]
pub use linux::Linux as Host;
#[cfg(windows)]
pub use windows::Windows as Host;

/// What the Linux and the Windows daemon do differently.
pub trait Platform: Sized {
    /// Checks and preparations before anything is read or bound: privileges, the state and
    /// control directories, a control endpoint another daemon serves. `Break(code)`: the
    /// command is done (`--remove-rules`).
    fn prepare(args: &DaemonArgs, socket: &Path, state_dir: &Path) -> anyhow::Result<ControlFlow<ExitCode, Self>>;

    /// What the service calls whenever the NATs change: puts their capture (kernel rules,
    /// WinDivert filters) in force.
    fn change_hook(&self) -> ChangeHook;

    /// After the saved configuration was put in force: refuses to run NATs whose capture is
    /// not in force.
    fn check_loaded(&self, plane: &Dataplane) -> anyhow::Result<()>;

    /// Starts the capture threads and what they need beside them.
    fn start_capture(
        &mut self,
        args: &DaemonArgs,
        plane: &Arc<Dataplane>,
        clock: Clock,
        supervisor: &Supervisor,
    ) -> anyhow::Result<()>;

    /// The control endpoint (created now, or claimed in `prepare`).
    fn listen(&mut self, socket: &Path) -> anyhow::Result<transport::Listener>;

    /// Makes the OS's requests to stop reach the supervisor as [`Event::Signal`].
    fn forward_stop_requests(&self, supervisor: &Supervisor) -> anyhow::Result<()>;

    /// What follows "listening on ENDPOINT" in the ready line.
    fn ready_note(&self) -> String;

    /// The daemon exits (after a stop request or a thread's end): tidy up.
    fn exiting(&self, socket: &Path);

    /// What stays in force after a stop request, for the log.
    fn stopped_note(&self) -> &'static str;

    /// What the NATs' traffic does until the daemon runs again, after a thread's end.
    fn died_note(&self) -> &'static str;
}

/// A seed for port choice that differs between runs.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new().build_hasher().finish()
}

/// Runs the daemon in the foreground on platform `P`.
pub fn run<P: Platform>(args: DaemonArgs) -> anyhow::Result<ExitCode> {
    let socket = control::socket_path(args.socket.clone());
    let state_dir = args.state_dir();
    let mut platform = match P::prepare(&args, &socket, &state_dir)? {
        ControlFlow::Continue(p) => p,
        ControlFlow::Break(code) => return Ok(code),
    };
    let metrics = super::bind_metrics(&args)?;
    let event_hub = super::open_event_hub(&args)?;
    let store = StateStore::new(&state_dir);
    let state = store.load()?;

    let (supervisor, events) = Supervisor::new();
    let clock = Clock::start();
    let plane = Arc::new(Dataplane::new());
    let host = addrs::local_ipv4().context("listing the host's addresses")?;
    let engine = EngineSettings {
        session_counters: args.session_counters,
        ..EngineSettings::for_host(random_seed(), args.limits())
    };
    let service = Service::new(state, Some(store), Arc::clone(&plane), clock, engine, host, platform.change_hook())
        .with_context(|| format!("loading the configuration from {}", state_dir.display()))?;
    platform.check_loaded(&plane)?;
    let service = Arc::new(Mutex::new(service));
    // Get-NetNatStatistics shows each supervised thread's health.
    plane.set_supervisor(supervisor.clone());
    platform.start_capture(&args, &plane, clock, &supervisor)?;
    super::spawn_watcher(&plane, &service)?;
    if let Some(metrics) = metrics {
        super::start_metrics(metrics, &plane, clock, &supervisor)?;
    }
    super::start_events(&event_hub, &plane, clock, &supervisor)?;
    let listener = platform.listen(&socket)?;
    supervisor.spawn("netnat-control", {
        let service = Arc::clone(&service);
        move || {
            server::serve(listener, service, event_hub);
            anyhow::bail!("the control server stopped")
        }
    })?;
    platform.forward_stop_requests(&supervisor)?;
    tracing::info!(control = %socket.display(), state = %state_dir.display(), "netnat daemon ready");
    eprintln!("netnat daemon: listening on {}{}", socket.display(), platform.ready_note());

    let event = events.recv().unwrap_or(Event::Signal(0));
    // Hold the service so no request changes the NATs while the daemon goes.
    let _quiet = service.lock();
    platform.exiting(&socket);
    match event {
        Event::Signal(signal) => {
            tracing::info!(signal, "stopping{}", platform.stopped_note());
            Ok(ExitCode::SUCCESS)
        }
        Event::Died { thread, why } => {
            let note = platform.died_note();
            tracing::error!(
                thread,
                "a daemon thread ended ({why}); exiting so the service manager restarts netnat{note}"
            );
            eprintln!("netnat daemon: thread {thread} ended ({why}); exiting");
            Ok(ExitCode::from(70))
        }
    }
}
