//! The Windows daemon's [`Platform`]: WinDivert handles for the NATs' filters (their threads
//! in `daemon::windows`), a control pipe claimed before anything else, Ctrl+C. When the
//! daemon exits (even killed), Windows closes the WinDivert handles and nothing is diverted
//! any more: there is nothing to remove.

use std::ops::ControlFlow;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use super::Platform;
use crate::control::transport;
use crate::daemon::clock::Clock;
use crate::daemon::dataplane::Dataplane;
use crate::daemon::service::ChangeHook;
use crate::daemon::supervise::Supervisor;
use crate::daemon::windows::{self, FilterSlot};
use crate::daemon::DaemonArgs;

/// The Windows daemon's own parts.
pub struct Windows {
    /// The control pipe, claimed in `prepare`.
    listener: Option<transport::Listener>,
    /// The filters the WinDivert threads run with.
    filters: Arc<FilterSlot>,
}

impl Platform for Windows {
    fn prepare(args: &DaemonArgs, pipe: &Path, state_dir: &Path) -> anyhow::Result<ControlFlow<ExitCode, Self>> {
        if args.queues.is_some() || args.queue_num != 0 || args.no_gso || args.busy_poll_us != 0 || args.remove_rules {
            tracing::warn!(
                "--queue-num, --queues, --no-gso, --busy-poll-us and --remove-rules are Linux settings (NFQUEUE, kernel rules); ignored on Windows"
            );
        }
        // Created SYSTEM/Administrators-only: ProgramData lets every user add files.
        crate::platform::win_security::create_private_dir(state_dir)
            .with_context(|| format!("creating the state directory {}", state_dir.display()))?;
        // Claim the pipe first: it fails when another daemon (or program) owns the name.
        let listener =
            transport::listen(pipe).with_context(|| format!("creating the control pipe {}", pipe.display()))?;
        Ok(ControlFlow::Continue(Windows { listener: Some(listener), filters: Arc::new(FilterSlot::default()) }))
    }

    fn change_hook(&self) -> ChangeHook {
        let filters = Arc::clone(&self.filters);
        Box::new(move |_, nats| windows::install(nats, &filters))
    }

    fn check_loaded(&self, _: &Dataplane) -> anyhow::Result<()> {
        // The filters are checked when the handles open (start_capture): a filter WinDivert
        // refuses, a missing driver or missing rights stop the daemon there.
        Ok(())
    }

    fn start_capture(
        &mut self,
        _: &DaemonArgs,
        plane: &Arc<Dataplane>,
        clock: Clock,
        supervisor: &Supervisor,
    ) -> anyhow::Result<()> {
        windows::start(&self.filters, plane, clock, supervisor)
    }

    fn listen(&mut self, _: &Path) -> anyhow::Result<transport::Listener> {
        self.listener.take().context("the control pipe was already handed out")
    }

    fn forward_stop_requests(&self, _: &Supervisor) -> anyhow::Result<()> {
        // Ctrl+C ends the process; Windows closes the handles.
        Ok(())
    }

    fn ready_note(&self) -> String {
        " (Ctrl+C stops it)".into()
    }

    fn exiting(&self, _: &Path) {}

    fn stopped_note(&self) -> &'static str {
        "; the WinDivert handles close with the process"
    }

    fn died_note(&self) -> &'static str {
        ""
    }
}
