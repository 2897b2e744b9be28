//! NFQUEUE workers (Linux): one thread per queue receives packets the kernel diverted,
//! runs them through the [`Dataplane`] and returns a verdict.
//!
//! Inbound packets that were translated are re-injected with [`MARK`] and `NF_REPEAT`, so the
//! `raw` PREROUTING chain sees them again, exempts them from conntrack and lets them be routed
//! to their new (internal) destination. Everything else is accepted or dropped in place.
//!
//! Checksums: the queue is not configured for GSO/partial checksums, so the kernel hands over
//! complete, segmented packets with their checksums computed; the engine updates them
//! incrementally.
//!
//! This talks to the `nfq` crate directly; it moves onto `netnat-capture`'s NFQUEUE backend
//! once that exposes marks and the repeat verdict.

use std::sync::mpsc;
use std::sync::Arc;

use anyhow::Context;

use super::clock::Clock;
use super::dataplane::{Action, Dataplane};
use crate::platform::rules::MARK;

/// Longest queue the kernel keeps per queue number before dropping.
const QUEUE_MAX_LEN: u32 = 8192;

/// Starts one worker per queue in `first..first + count`; returns once all are bound.
pub fn start(first: u16, count: u16, plane: Arc<Dataplane>, clock: Clock) -> anyhow::Result<()> {
    let (ready_tx, ready_rx) = mpsc::channel();
    for num in first..first.saturating_add(count) {
        let plane = Arc::clone(&plane);
        let ready = ready_tx.clone();
        std::thread::Builder::new()
            .name(format!("netnat-queue-{num}"))
            .spawn(move || {
                let queue = open(num);
                match queue {
                    Ok(q) => {
                        let _ = ready.send(Ok(()));
                        if let Err(e) = work(q, &plane, clock) {
                            tracing::error!(queue = num, "NFQUEUE worker stopped: {e:#}");
                        }
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
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

fn open(num: u16) -> anyhow::Result<nfq::Queue> {
    let hint =
        "netnat daemon needs root (CAP_NET_ADMIN) and the nfnetlink_queue kernel module (modprobe nfnetlink_queue)";
    let mut q = nfq::Queue::open().with_context(|| format!("opening an NFQUEUE socket: {hint}"))?;
    q.bind(num).with_context(|| {
        format!("binding NFQUEUE {num}: another program (or another netnat daemon) may own it; choose other numbers with --queue-num; {hint}")
    })?;
    q.set_queue_max_len(num, QUEUE_MAX_LEN).context("setting the NFQUEUE length")?;
    Ok(q)
}

/// Consecutive receive errors after which a worker gives up (its queue then fails closed for
/// outbound and open for inbound packets, as with no daemon).
const MAX_CONSECUTIVE_ERRORS: u32 = 1000;

fn work(mut q: nfq::Queue, plane: &Dataplane, clock: Clock) -> anyhow::Result<()> {
    let mut errors = 0u32;
    loop {
        let mut msg = match q.recv() {
            Ok(m) => {
                errors = 0;
                m
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // E.g. ENOSPC for a message longer than the buffer: that packet is lost (it
                // stays unverdicted in the kernel until the queue closes); keep serving others.
                errors += 1;
                tracing::warn!("NFQUEUE receive error: {e}");
                if errors >= MAX_CONSECUTIVE_ERRORS {
                    return Err(e).context("receiving from NFQUEUE keeps failing");
                }
                continue;
            }
        };
        let now = clock.now();
        let action = plane.process(now, msg.get_payload_mut());
        match action {
            Action::Accept => msg.set_verdict(nfq::Verdict::Accept),
            Action::Drop => msg.set_verdict(nfq::Verdict::Drop),
            Action::Translated { len, inbound } => {
                if len < msg.get_payload().len() {
                    let shorter = msg.get_payload()[..len].to_vec();
                    msg.set_payload(shorter);
                }
                if inbound {
                    let mark = msg.get_nfmark() | MARK;
                    msg.set_nfmark(mark);
                    msg.set_verdict(nfq::Verdict::Repeat);
                } else {
                    msg.set_verdict(nfq::Verdict::Accept);
                }
            }
        }
        if let Err(e) = q.verdict(msg) {
            tracing::warn!("NFQUEUE verdict error: {e}");
        }
    }
}
