//! The daemon's one capture-worker loop, for every capture backend: receive a batch, run it
//! through the [`Dataplane`] (each engine through the thread's own `Worker`), hand the
//! verdicts back, and send what the engines released. NFQUEUE workers (Linux), both
//! WinDivert threads (Windows), `netnat replay` (a capture file as the backend,
//! `crate::replay::capture`) and the unprivileged tests over the `Loopback` and `Fault`
//! backends run this same function; what differs per platform is an [`Egress`]: how a
//! rewritten packet leaves and what else a thread sends or publishes around a batch, and a
//! [`Timeline`]: where the engines' time comes from (the clock, or a recording's stamps).
//!
//! The loop ends when the backend says it is closed (`CaptureError::Closed`: a test's
//! loopback input or a replay's file ran out), at once on a final error (a file that cannot
//! be read or written), or after `MAX_CONSECUTIVE_ERRORS` failed rounds in a row (so a
//! broken capture is seen: the daemon's supervisor then stops the daemon).

use std::ops::ControlFlow;
use std::time::Duration;

use anyhow::Context;
use netnat_capture::{Action as CaptureAction, Batch, Capture, CaptureError, Packet};
use netnat_engine::Instant;

use super::clock::Clock;
use super::dataplane::{Dataplane, Delivery};

/// Consecutive failed rounds after which the loop gives up.
pub const MAX_CONSECUTIVE_ERRORS: u32 = 1000;

/// Longest a receive waits while the thread's workers hold counts the statistics do not show
/// yet: a capture that stops after a full batch still has them flushed this soon.
pub const COUNTS_WAIT: Duration = Duration::from_millis(100);

/// What a platform does around the shared loop, for a capture `C`.
pub trait Egress<C> {
    /// Before each receive: how long to wait for the first packet (`None`: until one comes).
    /// May replace the capture (Windows opens a handle with a new filter when the NATs change).
    fn before_receive(&mut self, capture: &mut C) -> Option<Duration>;

    /// The capture verdict for a packet the dataplane rewrote (its length is already set):
    /// accept it as it now is, or drop it after sending it some other way.
    fn rewritten(&mut self, packet: &mut Packet, delivery: Delivery) -> CaptureAction;

    /// After the batch was translated (or the receive timed out, `received == 0`) and before
    /// its verdicts are sent: a thread may add packets to `batch` (released fragments to send
    /// through this capture) or send what it set aside.
    fn before_send(&mut self, _now: Instant, _plane: &Dataplane, _batch: &mut Batch) -> Result<(), CaptureError> {
        Ok(())
    }

    /// After the verdicts were sent (`received`: the packets of this round), or after a failed
    /// round (`None`): send released fragments another way, publish counters.
    fn after_send(&mut self, _plane: &Dataplane, _capture: &C, _received: Option<usize>) {}
}

/// Where a round's engine time comes from.
pub trait Timeline {
    /// The time of a round, read once after its receive.
    fn round(&mut self) -> Instant;

    /// The engines' `now` for `packet`, one of that round's: the round's time for a live
    /// capture (one clock reading per batch), the packet's own for a recording.
    fn packet(&mut self, round: Instant, packet: &Packet) -> Instant;
}

/// A live capture's time: the process's clock, read once per round.
impl Timeline for Clock {
    fn round(&mut self) -> Instant {
        self.now()
    }

    #[inline]
    fn packet(&mut self, round: Instant, _: &Packet) -> Instant {
        round
    }
}

impl<T: Timeline> Timeline for &mut T {
    fn round(&mut self) -> Instant {
        (**self).round()
    }

    #[inline]
    fn packet(&mut self, round: Instant, packet: &Packet) -> Instant {
        (**self).packet(round, packet)
    }
}

/// The size of a worker's batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchSize {
    /// Packets one receive may deliver.
    pub packets: usize,
    /// Room beyond that for packets a thread adds before sending (WinDivert's receive stops
    /// at its own batch size, so released fragments fit behind it).
    pub spare: usize,
    /// Room per packet.
    pub max_len: usize,
}

/// Runs `capture`'s packets through `plane` until the capture is closed, fails for good
/// ([`CaptureError::is_final`]: the error is returned) or keeps failing. The engines' time is
/// `time`'s. `on_packets(now)` is called for every round that received packets (the
/// supervisor's liveness record). The thread's [`Translator`](super::dataplane::Translator) (a `Worker`
/// per engine) lives across rounds until the NATs change.
pub fn run<C: Capture, E: Egress<C>>(
    capture: &mut C,
    egress: &mut E,
    plane: &Dataplane,
    mut time: impl Timeline,
    size: BatchSize,
    mut on_packets: impl FnMut(Instant),
) -> anyhow::Result<()> {
    let mut batch = Batch::new(size.packets + size.spare, size.max_len);
    let mut errors = 0u32;
    // A batch received but not yet translated: the NATs changed while the receive waited,
    // so it waits for a translator with the NATs as they are now.
    let mut received: Option<usize> = None;
    plane.run_thread(|translator| {
        let round = (|| {
            let n = match received {
                Some(n) => n,
                None => {
                    let mut wait = egress.before_receive(capture);
                    if translator.holds_counts() {
                        wait = Some(wait.map_or(COUNTS_WAIT, |w| w.min(COUNTS_WAIT)));
                    }
                    *received.insert(capture.recv_batch(&mut batch, wait)?)
                }
            };
            if !translator.is_current() {
                return Ok(None);
            }
            received = None;
            let now = time.round();
            if n > 0 {
                on_packets(now);
                let now_of = |p: &Packet| time.packet(now, p);
                translator.process_batch_at(now_of, &mut batch, |p, delivery| egress.rewritten(p, delivery));
            }
            // A receive that did not fill its batch took everything that was waiting.
            translator.batch_done(n < size.packets);
            egress.before_send(now, plane, &mut batch)?;
            if !batch.is_empty() {
                capture.send_batch(&mut batch)?;
            }
            Ok(Some(n))
        })();
        match round {
            Ok(None) => ControlFlow::Continue(()),
            Ok(Some(n)) => {
                errors = 0;
                egress.after_send(plane, capture, Some(n));
                ControlFlow::Continue(())
            }
            Err(CaptureError::Closed { .. }) => ControlFlow::Break(Ok(())),
            Err(e) if e.is_final() => ControlFlow::Break(Err(e.into())),
            Err(e) => {
                egress.after_send(plane, capture, None);
                errors += 1;
                tracing::warn!("capture error: {e}");
                if errors >= MAX_CONSECUTIVE_ERRORS {
                    return ControlFlow::Break(Err(e).context("the capture keeps failing"));
                }
                ControlFlow::Continue(())
            }
        }
    })
}

#[cfg(test)]
mod tests;
