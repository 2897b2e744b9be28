//! NFQUEUE workers (Linux): one thread per queue receives batches of packets the kernel
//! diverted (`netnat-capture`'s NFQUEUE backend: `recvmmsg` in, all verdicts of a batch in
//! one `sendto`), runs them through the [`Dataplane`] and gives each its verdict.
//!
//! GSO and checksums: unless `--no-gso`, the backend takes GSO super-packets whole (one
//! crossing per up to 64 KiB instead of per segment) and completes partial checksums
//! before the engine sees them, so the engine's incremental updates stay correct and no
//! `ethtool` offload change is needed on any interface (see `netnat_capture::nfqueue`).
//! Each worker publishes the backend's counters (GSO packets, checksums completed, ...) to
//! the [`Dataplane`] after every batch, for `Get-NetNatStatistics`.
//!
//! Hairpinned packets are sent from a raw socket, which refuses anything longer than the
//! MTU, so a hairpinned TCP super-packet is cut into segments first (`reinject_segmented`).
//! A hairpinned UDP GSO super-datagram cannot be cut (NFQUEUE does not say its segment
//! size) and is dropped (`reinject_failed`); a deployment with UDP GSO senders (QUIC stacks)
//! talking to each other through the external address runs with `--no-gso`.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use netnat_capture::nfqueue::gso::segment_tcp;
use netnat_capture::nfqueue::{Nfqueue, NfqueueConfig, NfqueueStats};
use netnat_capture::{Action as CaptureAction, Packet};

use super::clock::Clock;
use super::dataplane::{CaptureCounters, Dataplane, Delivery};
use super::fault::{Faults, PanicAfter};
use super::supervise::Supervisor;
use super::worker_loop::{self, BatchSize, Egress};
use crate::platform::raw::RawSender;

/// Packets per batch.
const BATCH: usize = 64;

/// How the workers receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuning {
    /// Take GSO super-packets whole (see the module doc); `--no-gso` turns it off.
    pub gso: bool,
    /// After the last packet, keep checking the queue this long before sleeping
    /// (`--busy-poll-us`); zero sleeps at once.
    pub busy_poll: Duration,
}

/// Starts one worker per queue in `first..first + count` under `supervisor` (a worker that
/// ends ends the daemon); returns once all are bound.
pub fn start(
    first: u16,
    count: u16,
    tuning: Tuning,
    faults: Faults,
    plane: Arc<Dataplane>,
    clock: Clock,
    supervisor: &Supervisor,
) -> anyhow::Result<()> {
    let (ready_tx, ready_rx) = mpsc::channel();
    for queue in first..first.saturating_add(count) {
        let plane = Arc::clone(&plane);
        let ready = ready_tx.clone();
        let name = format!("netnat-queue-{queue}");
        let health = supervisor.clone();
        let thread = name.clone();
        let panic_after = if queue == first { faults.queue_worker_panic_after } else { None };
        supervisor.spawn(&name, move || {
            // Fail-closed when the queue overflows: an outbound packet accepted
            // untranslated would leak an internal address.
            let config = NfqueueConfig { queue, fail_open: false, gso: tuning.gso, ..NfqueueConfig::default() };
            match Nfqueue::open(config) {
                Ok(q) => {
                    let _ = ready.send(Ok(()));
                    let mut fault = PanicAfter::new(panic_after);
                    let seen = |at: f64| {
                        fault.batch();
                        health.packet_seen(&thread, at)
                    };
                    work(q, &plane, clock, tuning.busy_poll, seen).with_context(|| format!("NFQUEUE worker {queue}"))
                }
                Err(e) => {
                    let _ = ready.send(Err(anyhow::Error::new(e).context(format!(
                        "binding NFQUEUE {queue} (another program or netnat daemon may own it: choose other numbers with --queue-num)"
                    ))));
                    Ok(())
                }
            }
        })?;
    }
    drop(ready_tx);
    for _ in 0..count {
        ready_rx.recv().context("a queue worker died while starting")??;
    }
    Ok(())
}

fn work(
    mut q: Nfqueue,
    plane: &Dataplane,
    clock: Clock,
    busy_poll: Duration,
    mut packet_seen: impl FnMut(f64),
) -> anyhow::Result<()> {
    let mut egress =
        NfqueueEgress { out: Reinjector::open()?, busy_poll, last_packet: Instant::now(), spinning: false };
    let size = BatchSize { packets: BATCH, spare: 0, max_len: usize::from(u16::MAX) };
    worker_loop::run(&mut q, &mut egress, plane, clock, size, |now| packet_seen(now.as_micros() as f64 / 1e6))?;
    anyhow::bail!("NFQUEUE queue {} was closed", q.queue())
}

/// The NFQUEUE side of the [`worker_loop`]: translated packets are accepted with their new
/// bytes; hairpinned ones (now with a host address as source) and released fragments are
/// sent from a raw socket; the backend's counters are published after every round.
struct NfqueueEgress {
    out: Reinjector,
    /// After the last packet, keep checking the queue this long before sleeping.
    busy_poll: Duration,
    /// When the queue last had a packet (for `busy_poll`).
    last_packet: Instant,
    /// The last receive was a non-blocking check that found nothing.
    spinning: bool,
}

impl Egress<Nfqueue> for NfqueueEgress {
    fn before_receive(&mut self, _: &mut Nfqueue) -> Option<Duration> {
        if self.spinning {
            // Let whatever else wants this CPU (another worker, the traffic's own processes)
            // run first, or it waits until the spin ends.
            std::thread::yield_now();
        }
        let spin = !self.busy_poll.is_zero() && self.last_packet.elapsed() < self.busy_poll;
        self.spinning = spin;
        spin.then_some(Duration::ZERO)
    }

    fn rewritten(&mut self, p: &mut Packet, delivery: Delivery) -> CaptureAction {
        match delivery {
            Delivery::FromHost { .. } => {
                self.out.send(p.ip(), p.meta.in_interface, "a hairpinned packet");
                CaptureAction::Drop
            }
            _ => CaptureAction::Accept,
        }
    }

    fn after_send(&mut self, plane: &Dataplane, q: &Nfqueue, received: Option<usize>) {
        if received == Some(0) {
            return;
        }
        if received.is_some() {
            self.spinning = false;
            if !self.busy_poll.is_zero() {
                self.last_packet = Instant::now();
            }
            let out = &mut self.out;
            plane.drain_released(|p| out.send(p, 0, "a released fragment"));
        }
        let mut published = counters(&q.stats());
        published.reinject_segmented = self.out.segmented;
        published.reinject_failed = self.out.failed;
        plane.publish_capture(q.queue(), published);
    }
}

/// Sends the packets a worker cannot hand back with a verdict (hairpinned packets, released
/// fragments) from a raw socket, which refuses packets longer than the route's MTU: a TCP
/// GSO super-packet is cut to the MTU of the interface it came in on first (UDP ones cannot
/// be cut without their segment size, which NFQUEUE does not give, and are counted failed).
struct Reinjector {
    raw: RawSender,
    /// For the MTU ioctl.
    probe: OwnedFd,
    /// MTU by interface index; an entry is dropped when a send says it is stale.
    mtus: HashMap<u32, usize>,
    scratch: Vec<u8>,
    segmented: u64,
    failed: u64,
}

/// The MTU assumed when the interface is unknown (a released fragment, a failed lookup).
const DEFAULT_MTU: usize = 1500;

impl Reinjector {
    fn open() -> anyhow::Result<Reinjector> {
        let raw = RawSender::open().context("opening a raw socket for hairpinned packets")?;
        // SAFETY: plain socket(2); the result is checked and owned below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("opening a socket to read interface MTUs");
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let probe = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Reinjector { raw, probe, mtus: HashMap::new(), scratch: Vec::new(), segmented: 0, failed: 0 })
    }

    fn send(&mut self, packet: &[u8], in_interface: u32, what: &str) {
        let mtu = self.mtu(in_interface);
        let result = if packet.len() <= mtu {
            self.raw.send(packet)
        } else {
            let raw = &self.raw;
            let mut first_error = None;
            match segment_tcp(packet, mtu, &mut self.scratch, |s| {
                if let Err(e) = raw.send(s) {
                    first_error.get_or_insert(e);
                }
            }) {
                Ok(_) => {
                    self.segmented += 1;
                    first_error.map_or(Ok(()), Err)
                }
                Err(e) => Err(std::io::Error::other(format!(
                    "{} bytes, longer than the MTU {mtu}, and not a TCP segment that can be cut ({e:?})",
                    packet.len()
                ))),
            }
        };
        if let Err(e) = result {
            self.failed += 1;
            if e.raw_os_error() == Some(libc::EMSGSIZE) {
                self.mtus.remove(&in_interface);
            }
            tracing::debug!("cannot send {what}: {e}");
        }
    }

    fn mtu(&mut self, index: u32) -> usize {
        if index == 0 {
            return DEFAULT_MTU;
        }
        if let Some(m) = self.mtus.get(&index) {
            return *m;
        }
        let mtu = interface_mtu(&self.probe, index).unwrap_or(DEFAULT_MTU);
        self.mtus.insert(index, mtu);
        mtu
    }
}

/// The MTU of interface `index` (`SIOCGIFMTU`).
fn interface_mtu(probe: &OwnedFd, index: u32) -> Option<usize> {
    // SAFETY: ifreq is plain data; all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    // SAFETY: `ifr_name` has room for IF_NAMESIZE bytes, which is what if_indextoname writes.
    let name = unsafe { libc::if_indextoname(index, req.ifr_name.as_mut_ptr()) };
    if name.is_null() {
        return None;
    }
    // SAFETY: a live socket and a valid ifreq naming the interface.
    let rc = unsafe { libc::ioctl(probe.as_raw_fd(), libc::SIOCGIFMTU, &mut req) };
    // SAFETY: SIOCGIFMTU filled the `ifru_mtu` member of the union.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    (rc == 0).then(|| usize::try_from(mtu).ok()).flatten().filter(|m| *m >= 68)
}

fn counters(s: &NfqueueStats) -> CaptureCounters {
    CaptureCounters {
        received: s.received,
        gso_packets: s.gso_packets,
        checksums_completed: s.checksums_completed,
        checksum_not_ready: s.checksum_not_ready,
        too_long: s.too_long,
        verdict_errors: s.verdict_errors,
        malformed: s.malformed,
        reinject_segmented: 0,
        reinject_failed: 0,
    }
}
