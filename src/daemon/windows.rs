//! The Windows pieces of the daemon: WinDivert handles for the NATs' filters
//! ([`super::divert`]) and the threads that run their packets through the [`Dataplane`].
//!
//! - `netnat-divert-fwd`: a forward-layer handle with the NATs' outbound half (VM packets the
//!   host routes elsewhere; only that layer sees them, and only with IP forwarding on).
//!   Translated packets now carry a host address as source, so they are sent as *outbound*
//!   through a second, network-layer handle that diverts nothing; the forward handle drops
//!   the originals. Packets the dataplane leaves alone go back to the forward layer as they
//!   were.
//! - `netnat-divert-net`: a network-layer handle with the inbound half (and VM packets to the
//!   host's own addresses). Rewritten packets are reinjected as *outbound*, so the host routes
//!   them by their new destination (a VM, through the internal vEthernet adapter). This thread
//!   also expires idle sessions and sends the fragments the engines release.
//!
//! When the NATs change, each thread opens a handle with the new filter before it closes the
//! old one; packets still queued in the old handle are lost (TCP retransmits them).
//! When the daemon exits (even killed), Windows closes the handles and nothing is diverted any
//! more: with IP forwarding enabled, VM packets are then routed *untranslated*.
//!
//! Type-checked for x86_64-pc-windows-gnu on Linux; not run on Windows by us.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use netnat_capture::windivert::{WinDivert, WinDivertConfig};
use netnat_capture::{Action as CaptureAction, Batch, Capture, CaptureError, Packet};
use netnat_engine::Instant;
use parking_lot::Mutex;

use super::clock::Clock;
use super::dataplane::{Dataplane, Delivery, LiveNat};
use super::divert::{self, Filters};
use super::supervise::Supervisor;
use super::worker_loop::{self, BatchSize, Egress};

/// Packets per receive.
const BATCH: usize = 64;
/// Extra batch slots for fragments released by the engines.
const SPARE: usize = 16;
/// Longest packet WinDivert hands over.
const MAX_PACKET: usize = u16::MAX as usize;
/// Longest wait for packets before the threads look at filter changes and timers.
const TICK: Duration = Duration::from_millis(100);
/// How often idle sessions are expired.
const EXPIRY_EVERY: Duration = Duration::from_millis(100);

/// The filters the threads should run with; the service updates it whenever the NATs change.
#[derive(Debug, Default)]
pub struct FilterSlot {
    generation: AtomicU64,
    filters: Mutex<Filters>,
}

impl FilterSlot {
    fn set(&self, filters: Filters) {
        let mut current = self.filters.lock();
        if *current != filters {
            *current = filters;
            self.generation.fetch_add(1, Ordering::Release);
        }
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn current(&self) -> (u64, Filters) {
        let filters = self.filters.lock();
        (self.generation(), filters.clone())
    }
}

/// Points the WinDivert threads at the filters for `nats` (the service's change hook).
pub fn install(nats: &[Arc<LiveNat>], slot: &FilterSlot) {
    match divert::filters(nats) {
        Ok(filters) => {
            tracing::info!(nats = nats.len(), forward = %filters.forward, network = %filters.network, "WinDivert filters");
            slot.set(filters);
        }
        Err(e) => tracing::error!("cannot build the WinDivert filters: {e}; the previous ones stay in force"),
    }
}

fn open(filter: &str, forward: bool) -> anyhow::Result<WinDivert> {
    let config =
        WinDivertConfig { filter: filter.to_owned(), batch_packets: BATCH, forward, ..WinDivertConfig::default() };
    let layer = if forward { "forward" } else { "network" };
    WinDivert::open(config)
        .with_context(|| format!("opening a WinDivert {layer}-layer handle with the filter {filter:?}"))
}

/// Opens the handles for the filters in force (so a missing driver, DLL or elevation stops
/// the daemon at once, with WinDivert's hint) and starts both threads.
pub fn start(
    slot: &Arc<FilterSlot>,
    plane: &Arc<Dataplane>,
    clock: Clock,
    supervisor: &Supervisor,
) -> anyhow::Result<()> {
    let (generation, filters) = slot.current();
    let forward = open(&filters.forward, true)?;
    let sender = open("false", false)?;
    let network = open(&filters.network, false)?;
    let threads = [
        ("netnat-divert-fwd", forward, Role::Forward { sender, out: Batch::new(BATCH, MAX_PACKET) }),
        ("netnat-divert-net", network, Role::Network { next_expiry: clock.now() }),
    ];
    for (name, handle, role) in threads {
        let (slot, plane, health) = (Arc::clone(slot), Arc::clone(plane), supervisor.clone());
        // A thread that ends ends the daemon (the Supervisor tells the main thread).
        supervisor.spawn(name, move || {
            let seen = |at: f64| health.packet_seen(name, at);
            work(role, handle, generation, &slot, &plane, clock, seen)
                .with_context(|| format!("WinDivert thread {name}"))
        })?;
    }
    Ok(())
}

/// What a thread does with the packets it diverts.
enum Role {
    /// Forward layer: translated packets leave through `sender` (network layer, outbound).
    Forward { sender: WinDivert, out: Batch },
    /// Network layer: rewritten packets are reinjected outbound; timers run here.
    Network { next_expiry: Instant },
}

/// A WinDivert thread's side of the [`worker_loop`]: its role, and the filter generation
/// its handle was opened with.
struct DivertEgress<'a> {
    role: Role,
    seen: u64,
    slot: &'a FilterSlot,
}

impl Egress<WinDivert> for DivertEgress<'_> {
    fn before_receive(&mut self, handle: &mut WinDivert) -> Option<Duration> {
        let forward = matches!(self.role, Role::Forward { .. });
        if self.slot.generation() != self.seen {
            let (generation, filters) = self.slot.current();
            let filter = if forward { filters.forward } else { filters.network };
            // The new handle first, so nothing slips past undiverted in between.
            match open(&filter, forward) {
                Ok(new) => *handle = new,
                Err(e) => tracing::error!("{e:#}; the previous filter stays in force"),
            }
            self.seen = generation;
        }
        if let Role::Forward { out, .. } = &mut self.role {
            out.clear();
        }
        Some(TICK)
    }

    fn rewritten(&mut self, p: &mut Packet, _: Delivery) -> CaptureAction {
        match &mut self.role {
            Role::Forward { out, .. } => {
                push_outbound(out, p.ip());
                CaptureAction::Drop
            }
            Role::Network { .. } => {
                p.meta.outbound = Some(true);
                CaptureAction::Accept
            }
        }
    }

    fn before_send(&mut self, now: Instant, plane: &Dataplane, batch: &mut Batch) -> Result<(), CaptureError> {
        match &mut self.role {
            Role::Forward { sender, out } => sender.send_batch(out),
            Role::Network { next_expiry } => {
                if now >= *next_expiry {
                    *next_expiry = now + EXPIRY_EVERY;
                    for nat in plane.nats().iter() {
                        for packet in nat.handle_timeout_if_due(now) {
                            push_outbound(batch, &packet);
                        }
                    }
                }
                plane.drain_released(|p| push_outbound(batch, p));
                Ok(())
            }
        }
    }
}

fn work(
    role: Role,
    mut handle: WinDivert,
    seen: u64,
    slot: &FilterSlot,
    plane: &Dataplane,
    clock: Clock,
    packet_seen: impl Fn(f64),
) -> anyhow::Result<()> {
    let mut egress = DivertEgress { role, seen, slot };
    let size = BatchSize { packets: BATCH, spare: SPARE, max_len: MAX_PACKET };
    worker_loop::run(&mut handle, &mut egress, plane, clock, size, |now| packet_seen(now.as_micros() as f64 / 1e6))?;
    anyhow::bail!("the WinDivert handle was closed")
}

/// Adds `packet` to `batch` to be sent as outbound from the host (routed by its
/// destination); dropped with a log line when the batch is full.
fn push_outbound(batch: &mut Batch, packet: &[u8]) {
    match batch.push_slot() {
        Some(slot) => {
            slot.fill(packet, 0);
            // No captured address: the backend sends it with a fresh network-layer one.
            slot.meta.id = u64::MAX;
            slot.meta.outbound = Some(true);
        }
        None => tracing::debug!("WinDivert batch full: a packet to send from the host was dropped"),
    }
}
