//! NFQUEUE workers (Linux): one thread per queue receives batches of packets the kernel
//! diverted (`netnat-capture`'s NFQUEUE backend: `recvmmsg` in, all verdicts of a batch in
//! one `sendto`), runs them through the [`Dataplane`] and gives each its verdict.
//!
//! Checksums: the backend does not ask for GSO/partial-checksum packets, so the kernel hands
//! over complete, segmented packets with their checksums computed; the engine updates them
//! incrementally. This is why the veths need no `ethtool` offload changes.

use std::sync::mpsc;
use std::sync::Arc;

use anyhow::Context;
use netnat_capture::nfqueue::{Nfqueue, NfqueueConfig};
use netnat_capture::{Action as Verdict, Batch, Capture};

use super::clock::Clock;
use super::dataplane::{Action, Dataplane};
use crate::platform::raw::RawSender;

/// Packets per batch.
const BATCH: usize = 64;

/// Consecutive errors after which a worker gives up (its queue then behaves as with no
/// daemon: outbound fails closed, inbound fails open).
const MAX_CONSECUTIVE_ERRORS: u32 = 1000;

/// Starts one worker per queue in `first..first + count`; returns once all are bound.
pub fn start(first: u16, count: u16, plane: Arc<Dataplane>, clock: Clock) -> anyhow::Result<()> {
    let (ready_tx, ready_rx) = mpsc::channel();
    for queue in first..first.saturating_add(count) {
        let plane = Arc::clone(&plane);
        let ready = ready_tx.clone();
        std::thread::Builder::new()
            .name(format!("netnat-queue-{queue}"))
            .spawn(move || {
                // Fail-closed when the queue overflows: an outbound packet accepted
                // untranslated would leak an internal address.
                let config = NfqueueConfig { queue, fail_open: false, ..NfqueueConfig::default() };
                match Nfqueue::open(config) {
                    Ok(q) => {
                        let _ = ready.send(Ok(()));
                        if let Err(e) = work(q, &plane, clock) {
                            tracing::error!(queue, "NFQUEUE worker stopped: {e:#}");
                        }
                    }
                    Err(e) => {
                        let _ = ready.send(Err(anyhow::Error::new(e).context(format!(
                            "binding NFQUEUE {queue} (another program or netnat daemon may own it: choose other numbers with --queue-num)"
                        ))));
                    }
                }
            })
            .context("starting a queue worker thread")?;
    }
    drop(ready_tx);
    for _ in 0..count {
        ready_rx.recv().context("a queue worker died while starting")??;
    }
    Ok(())
}

fn work(mut q: Nfqueue, plane: &Dataplane, clock: Clock) -> anyhow::Result<()> {
    let raw = RawSender::open().context("opening a raw socket for hairpinned packets")?;
    let mut batch = Batch::new(BATCH, usize::from(u16::MAX));
    let mut errors = 0u32;
    loop {
        let result = q.recv_batch(&mut batch, None).and_then(|_| {
            plane.process_batch(clock.now(), &mut batch, |p, action| match action {
                Action::Reinject { .. } => {
                    if let Err(e) = raw.send(p.ip()) {
                        tracing::debug!("cannot send a hairpinned packet: {e}");
                    }
                    Verdict::Drop
                }
                _ => Verdict::Accept,
            });
            q.send_batch(&mut batch)?;
            plane.drain_released(|p| {
                if let Err(e) = raw.send(p) {
                    tracing::debug!("cannot send a released fragment: {e}");
                }
            });
            Ok(())
        });
        match result {
            Ok(()) => errors = 0,
            Err(e) => {
                errors += 1;
                tracing::warn!(queue = q.queue(), "NFQUEUE error: {e}");
                if errors >= MAX_CONSECUTIVE_ERRORS {
                    return Err(e).context("NFQUEUE keeps failing");
                }
            }
        }
    }
}
