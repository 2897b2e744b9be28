//! The Linux daemon's [`Platform`]: root, iptables rules kept in force by a keeper thread,
//! NFQUEUE workers and a timer thread, a Unix control socket, SIGINT/SIGTERM.
//!
//! Failure behaviour (see `platform::rules`): outbound packets of the NATs fail closed (with
//! no daemon they are dropped, never leaked untranslated); inbound packets fail open (with no
//! daemon they reach the host unchanged, so the host's own traffic keeps working). The rules
//! stay while NATs are configured: after SIGTERM, after `kill -9`, after a start that fails;
//! the next daemon start replaces them. Removing the last NAT, or `netnat daemon
//! --remove-rules`, removes them.

use std::ops::ControlFlow;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::Platform;
use crate::control::transport;
use crate::daemon::clock::Clock;
use crate::daemon::dataplane::Dataplane;
use crate::daemon::linux::{self, RuleKeeper};
use crate::daemon::service::ChangeHook;
use crate::daemon::supervise::{Event, Supervisor};
use crate::daemon::{fault, nfqueue, DaemonArgs};
use crate::platform::private_dir::{self, DirRole};
use crate::platform::rules::{self, Queues};

/// The Linux daemon's own parts.
pub struct Linux {
    queues: Queues,
    keeper: Arc<RuleKeeper>,
}

impl Platform for Linux {
    fn prepare(args: &DaemonArgs, socket: &Path, state_dir: &Path) -> anyhow::Result<ControlFlow<ExitCode, Self>> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            anyhow::bail!("netnat daemon must run as root: it installs iptables rules and reads NFQUEUE (try sudo)");
        }
        if args.remove_rules {
            rules::remove()?;
            eprintln!(
                "netnat daemon: kernel rules removed; with IP forwarding on, the internal prefixes are now routed untranslated"
            );
            return Ok(ControlFlow::Break(ExitCode::SUCCESS));
        }
        // Whoever can write into either directory can replace the configuration or the
        // socket: refuse to start unless both are root's and closed to others.
        let euid = transport::own_uid().unwrap_or(0);
        private_dir::ensure_private_dir(state_dir, DirRole::State, euid)?;
        private_dir::ensure_private_dir(private_dir::socket_dir(socket), DirRole::Socket, euid)?;
        if socket.exists() {
            if transport::is_live(socket) {
                anyhow::bail!(
                    "another netnat daemon is already serving {}; stop it first, or give this one another --socket",
                    socket.display()
                );
            }
            std::fs::remove_file(socket).with_context(|| format!("removing the stale socket {}", socket.display()))?;
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
        // until the configuration replaces them: they keep the NATs' outbound traffic
        // failing closed through the restart.
        Ok(ControlFlow::Continue(Linux { queues, keeper: Arc::new(RuleKeeper::new(queues)) }))
    }

    fn change_hook(&self) -> ChangeHook {
        let keeper = Arc::clone(&self.keeper);
        // Errors are logged by the keeper, which retries every second.
        Box::new(move |_, nats| {
            let _ = keeper.install(nats);
        })
    }

    fn check_loaded(&self, plane: &Dataplane) -> anyhow::Result<()> {
        if !plane.nats().is_empty() && !self.keeper.in_force() {
            anyhow::bail!(
                "cannot install the kernel rules for the configured NATs (see the error above); the NATs' outbound traffic stays blocked until they are installed"
            );
        }
        Ok(())
    }

    fn start_capture(
        &mut self,
        args: &DaemonArgs,
        plane: &Arc<Dataplane>,
        clock: Clock,
        supervisor: &Supervisor,
    ) -> anyhow::Result<()> {
        // Until the workers are bound the kernel drops what it queues for them (fail-closed).
        let tuning = nfqueue::Tuning { gso: !args.no_gso, busy_poll: Duration::from_micros(args.busy_poll_us) };
        let faults = fault::Faults::from_env()?;
        if faults != fault::Faults::default() {
            tracing::warn!(?faults, "fault injection armed by {} (tests only)", fault::VAR);
        }
        let queues = self.queues;
        nfqueue::start(queues.first, queues.count, tuning, faults, Arc::clone(plane), clock, supervisor)?;
        tracing::info!(queues = ?(queues.first..queues.first + queues.count), "NFQUEUE workers bound");
        supervisor.spawn("netnat-timer", {
            let plane = Arc::clone(plane);
            move || {
                timer(&plane, clock);
                Ok(())
            }
        })?;
        supervisor.spawn("netnat-rules", {
            let keeper = Arc::clone(&self.keeper);
            move || linux::keep_rules(&keeper)
        })
    }

    fn listen(&mut self, socket: &Path) -> anyhow::Result<transport::Listener> {
        transport::listen(socket).with_context(|| format!("creating the control socket {}", socket.display()))
    }

    fn forward_stop_requests(&self, supervisor: &Supervisor) -> anyhow::Result<()> {
        let mut signals =
            signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
                .context("installing signal handlers")?;
        let events = supervisor.events();
        std::thread::Builder::new()
            .name("netnat-signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    let _ = events.send(Event::Signal(signal));
                }
            })
            .context("starting the signal thread")?;
        Ok(())
    }

    fn ready_note(&self) -> String {
        String::new()
    }

    fn exiting(&self, socket: &Path) {
        let _ = std::fs::remove_file(socket);
    }

    fn stopped_note(&self) -> &'static str {
        "; the kernel rules stay, so the NATs' outbound traffic is dropped (never leaked) until netnat daemon runs again (Remove-NetNat or `netnat daemon --remove-rules` removes them)"
    }

    fn died_note(&self) -> &'static str {
        "; the NATs' traffic fails closed meanwhile"
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
