//! The packet path: which NAT a packet belongs to, and what to tell the kernel.
//!
//! Each NetNat object is a [`LiveNat`] with one or more engine instances ([`Instance`]):
//! - a NAT with NetNatExternalAddress objects has one instance translating to those addresses;
//! - a NAT without any uses the host's own addresses, like WinNAT: one instance per host
//!   address (outside every internal prefix), each translating to that address only. An
//!   outbound packet goes to the instance of the source address the kernel would pick on the
//!   route toward its destination ([`RouteCache`], refreshed on route/address changes), so
//!   replies come back to an address the remote can reach. Several such NATs share the
//!   host's addresses by splitting the dynamic port range 1024–65535 between them.
//!
//! Inbound packets (to a host or external address) that no instance claims, i.e. the engine
//! says "no mapping" or "ICMP error for no session", belong to the host itself and are
//! accepted unchanged: host services and the host's own connections keep working.

use std::net::Ipv4Addr;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use ipnet::Ipv4Net;
use netnat_capture::{Action as CaptureAction, Batch, Packet};
use netnat_engine::{ConfigError, ExternalAddress, Instant, Nat, NatConfig, SessionInfo};
use parking_lot::Mutex;

use crate::platform::route::RouteCache;
use crate::policy_module::ModulePolicy;

mod translator;

use translator::Snapshot;
pub use translator::Translator;

/// One engine and the external addresses it translates to.
#[derive(Debug)]
pub struct Instance {
    /// Its external addresses.
    pub addresses: Vec<Ipv4Addr>,
    /// The engine.
    pub nat: Nat,
}

/// Makes `nat` ask `module` (or its configured filtering, with `None`) for TCP and UDP.
fn use_module(nat: &Nat, module: Option<&Arc<ModulePolicy>>) {
    for protocol in [netnat_engine::Protocol::Tcp, netnat_engine::Protocol::Udp] {
        nat.set_filtering_policy(protocol, module.map(|m| Arc::clone(m) as Arc<dyn netnat_engine::FilteringPolicy>));
    }
}

/// An engine as the daemon runs it: with session events on (`daemon::events` drains them).
fn engine(config: NatConfig) -> Result<Nat, ConfigError> {
    let nat = Nat::new(config)?;
    nat.set_events(true);
    Ok(nat)
}

/// How a NAT picks its external addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addressing {
    /// The NetNatExternalAddress objects (already in the template).
    Explicit,
    /// The host's own addresses, each with this dynamic port range.
    Implicit {
        /// PortStart, PortEnd.
        ports: (u16, u16),
    },
}

/// The settings of a NAT minus what depends on the instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    /// The engine configuration; for implicit addressing `external_addresses` is empty and
    /// filled per instance.
    pub config: NatConfig,
    /// How addresses are chosen.
    pub addressing: Addressing,
}

impl Template {
    /// The engine configuration of the instance for `address` (implicit addressing), or of
    /// the single instance (explicit).
    pub fn config_for(&self, address: Option<Ipv4Addr>) -> NatConfig {
        let mut config = self.config.clone();
        if let (Addressing::Implicit { ports }, Some(a)) = (&self.addressing, address) {
            config.external_addresses = vec![ExternalAddress { address: a, port_start: ports.0, port_end: ports.1 }];
            config.static_mappings.retain(|m| m.external_address.is_unspecified() || m.external_address == a);
            config.seed ^= u64::from(u32::from(a)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
        config
    }

    /// Checks the template as the engine would, for each address it would run on.
    pub fn validate(&self, host_addresses: &[Ipv4Addr]) -> Result<(), ConfigError> {
        match self.addressing {
            Addressing::Explicit => self.config.validate(),
            Addressing::Implicit { .. } => {
                self.config_for(None).validate()?;
                for a in host_addresses.iter().filter(|a| !self.config.internal_prefix.contains(*a)) {
                    self.config_for(Some(*a)).validate()?;
                }
                Ok(())
            }
        }
    }
}

/// One NetNat object at run time.
#[derive(Debug)]
pub struct LiveNat {
    /// Name.
    pub name: String,
    /// The internal prefix (network address form).
    pub prefix: Ipv4Net,
    template: Mutex<Template>,
    /// Whether the template's addressing is explicit (read per packet, so not behind the lock).
    explicit: AtomicBool,
    instances: ArcSwap<Vec<Arc<Instance>>>,
    /// Bumped whenever `instances` is replaced, so capture threads know to take new ones.
    generation: AtomicU64,
    /// The NAT's WASM filtering policy module, if any: every engine (also those made later)
    /// asks it instead of its configured filtering, for TCP and UDP.
    module: Mutex<Option<Arc<ModulePolicy>>>,
}

impl LiveNat {
    /// A NAT with `template`, with instances for `host_addresses` when addressing is implicit.
    pub fn new(
        name: String,
        template: Template,
        host_addresses: &[Ipv4Addr],
        others: &[Ipv4Net],
    ) -> Result<Self, ConfigError> {
        let live = LiveNat {
            name,
            prefix: template.config.internal_prefix.trunc(),
            explicit: AtomicBool::new(template.addressing == Addressing::Explicit),
            template: Mutex::new(template),
            instances: ArcSwap::from_pointee(Vec::new()),
            generation: AtomicU64::new(0),
            module: Mutex::new(None),
        };
        live.rebuild(host_addresses, others)?;
        Ok(live)
    }

    /// Runs `module` (or, with `None`, the configured filtering again) in every engine of this
    /// NAT, now and in those made later.
    pub fn set_policy_module(&self, module: Option<Arc<ModulePolicy>>) {
        let mut current = self.module.lock();
        *current = module;
        for inst in self.instances.load().iter() {
            use_module(&inst.nat, current.as_ref());
        }
    }

    /// The engine instances.
    pub fn instances(&self) -> Arc<Vec<Arc<Instance>>> {
        self.instances.load_full()
    }

    /// The template in force.
    pub fn template(&self) -> Template {
        self.template.lock().clone()
    }

    /// Applies a new template: instances whose addresses stay keep their sessions
    /// (`Nat::reconfigure`); a change of addressing mode starts new instances.
    pub fn set_template(
        &self,
        template: Template,
        host_addresses: &[Ipv4Addr],
        others: &[Ipv4Net],
    ) -> Result<(), ConfigError> {
        let mut current = self.template.lock();
        let same_mode = std::mem::discriminant(&current.addressing) == std::mem::discriminant(&template.addressing)
            && (template.addressing != Addressing::Explicit
                || current.config.external_addresses == template.config.external_addresses);
        self.explicit.store(template.addressing == Addressing::Explicit, Ordering::Relaxed);
        let old = std::mem::replace(&mut *current, template);
        drop(current);
        let result = if same_mode {
            self.reconfigure_all().and_then(|()| self.rebuild(host_addresses, others))
        } else {
            self.store_instances(Vec::new());
            self.rebuild(host_addresses, others)
        };
        if result.is_err() {
            self.explicit.store(old.addressing == Addressing::Explicit, Ordering::Relaxed);
            *self.template.lock() = old;
        }
        result
    }

    fn reconfigure_all(&self) -> Result<(), ConfigError> {
        let template = self.template.lock().clone();
        for inst in self.instances.load().iter() {
            let address = match template.addressing {
                Addressing::Explicit => None,
                Addressing::Implicit { .. } => inst.addresses.first().copied(),
            };
            inst.nat.reconfigure(template.config_for(address))?;
        }
        Ok(())
    }

    /// Makes the instance set match the template and the host's addresses: creates missing
    /// instances, drops those whose address is gone, keeps the rest.
    pub fn rebuild(&self, host_addresses: &[Ipv4Addr], others: &[Ipv4Net]) -> Result<(), ConfigError> {
        let template = self.template.lock().clone();
        let current = self.instances.load_full();
        let next: Vec<Arc<Instance>> = match template.addressing {
            Addressing::Explicit => {
                let addresses: Vec<Ipv4Addr> = template.config.external_addresses.iter().map(|e| e.address).collect();
                match current.first() {
                    Some(inst) if inst.addresses == addresses => vec![Arc::clone(inst)],
                    _ => vec![Arc::new(Instance { addresses, nat: engine(template.config_for(None))? })],
                }
            }
            Addressing::Implicit { .. } => {
                let mut next = Vec::new();
                for a in host_addresses {
                    if self.prefix.contains(a) || others.iter().any(|p| p.contains(a)) {
                        continue;
                    }
                    match current.iter().find(|i| i.addresses.first() == Some(a)) {
                        Some(inst) => next.push(Arc::clone(inst)),
                        None => next.push(Arc::new(Instance {
                            addresses: vec![*a],
                            nat: engine(template.config_for(Some(*a)))?,
                        })),
                    }
                }
                next
            }
        };
        // New engines run the module too (kept ones have it already).
        let module = self.module.lock();
        for inst in &next {
            use_module(&inst.nat, module.as_ref());
        }
        self.store_instances(next);
        Ok(())
    }

    /// Puts `instances` in force; capture threads see the new generation after the store.
    fn store_instances(&self, instances: Vec<Arc<Instance>>) {
        self.instances.store(Arc::new(instances));
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Which of this NAT's `instances` an outbound packet to `dst` goes to.
    fn outbound_instance(&self, instances: &[Arc<Instance>], dst: Ipv4Addr, routes: &RouteCache) -> Option<usize> {
        if self.is_explicit() {
            return (!instances.is_empty()).then_some(0);
        }
        let source = routes.source_toward(dst)?;
        instances.iter().position(|i| i.addresses.first() == Some(&source))
    }

    fn is_explicit(&self) -> bool {
        self.explicit.load(Ordering::Relaxed)
    }

    /// Every session of every instance.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.instances.load().iter().flat_map(|i| i.nat.sessions()).collect()
    }

    /// Drops every session.
    pub fn clear_sessions(&self) {
        for i in self.instances.load().iter() {
            i.nat.clear_sessions();
        }
    }

    /// When the earliest of its engines wants `handle_timeout` (the Linux timer sleeps until
    /// then; the Windows workers expire on their own tick).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.instances.load().iter().filter_map(|i| i.nat.poll_timeout()).min()
    }

    /// `handle_timeout` for the engines whose `poll_timeout` has come; their released
    /// fragments are returned for sending.
    pub fn handle_timeout_if_due(&self, now: Instant) -> Vec<Vec<u8>> {
        let mut released = Vec::new();
        for i in self.instances.load().iter() {
            if i.nat.poll_timeout().is_some_and(|due| due <= now) {
                i.nat.handle_timeout(now);
            }
            while let Some(p) = i.nat.poll_released() {
                released.push(p.packet);
            }
        }
        released
    }
}

/// How a packet leaves the dataplane: the daemon's decision, made from the engine's
/// `Verdict` and turned by each platform into a capture `Action` (accept or drop) and,
/// for packets the host sends itself, a send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// It continues unchanged (not the NAT's, or the host's own).
    Unchanged,
    /// It was translated in place; send the first `len` bytes. `inbound`: its destination
    /// changed (inbound or hairpin) rather than its source.
    Translated {
        /// Bytes to send.
        len: usize,
        /// Destination rewritten.
        inbound: bool,
    },
    /// It was hairpinned and now has one of the host's addresses as source: drop the
    /// original and send the first `len` bytes from the host (the input path would take the
    /// host's own source address for a spoof).
    FromHost {
        /// Bytes to send.
        len: usize,
    },
    /// Drop it.
    Drop,
}

/// Counters a capture worker publishes for `Get-NetNatStatistics` (the NFQUEUE backend's
/// on Linux): what reached the daemon, how large, and what it had to fix or refuse.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CaptureCounters {
    /// Packets received from the kernel.
    pub received: u64,
    /// GSO super-packets among them (up to 64 KiB, segmented by the kernel after the verdict).
    pub gso_packets: u64,
    /// Partial TCP/UDP checksums (checksum offload) completed before translation.
    pub checksums_completed: u64,
    /// Partial checksums that could not be completed (should stay 0).
    pub checksum_not_ready: u64,
    /// Packets longer than the kernel would copy, refused.
    pub too_long: u64,
    /// Errors the kernel reported for verdicts.
    pub verdict_errors: u64,
    /// Messages from the kernel that could not be parsed.
    pub malformed: u64,
    /// Packets the daemon sends itself (hairpinned) that were TCP super-packets longer than
    /// the MTU, cut into segments first.
    pub reinject_segmented: u64,
    /// Packets the daemon sends itself (hairpinned, released fragments) that could not be
    /// sent, e.g. UDP GSO super-datagrams longer than the MTU, which cannot be cut without
    /// their segment size.
    pub reinject_failed: u64,
}

/// The NATs the packet path serves; swapped as a whole when the configuration changes.
#[derive(Debug, Default)]
pub struct Dataplane {
    nats: ArcSwap<Vec<Arc<LiveNat>>>,
    /// Bumped whenever `nats` is replaced (each NAT counts its own engine changes).
    generation: AtomicU64,
    routes: RouteCache,
    /// The capture workers' counters, by queue number (only NFQUEUE workers publish yet).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    capture: Mutex<std::collections::BTreeMap<u16, CaptureCounters>>,
    /// The daemon's supervised threads, for their health in Get-NetNatStatistics.
    supervisor: std::sync::OnceLock<super::supervise::Supervisor>,
    /// Every packet goes to the first engine, which classifies it ([`Dataplane::with_one_engine`]).
    one_engine: bool,
}

impl Dataplane {
    /// No NATs yet.
    pub fn new() -> Self {
        Dataplane::default()
    }

    /// A dataplane of one NAT whose first engine is handed every IPv4 packet and says itself
    /// what is its business (`netnat replay`: a capture has no host whose own packets the
    /// dataplane must tell apart, so the engine's rules are the only ones, as for any caller
    /// of `Nat::handle_packet`).
    pub fn with_one_engine(nat: LiveNat) -> Self {
        let plane = Dataplane { one_engine: true, ..Dataplane::default() };
        plane.set_nats(vec![Arc::new(nat)]);
        plane
    }

    /// The route cache (its generation is bumped on route changes).
    pub fn routes(&self) -> &RouteCache {
        &self.routes
    }

    /// The NATs in force.
    pub fn nats(&self) -> Arc<Vec<Arc<LiveNat>>> {
        self.nats.load_full()
    }

    /// Replaces the set of NATs.
    pub fn set_nats(&self, nats: Vec<Arc<LiveNat>>) {
        self.nats.store(Arc::new(nats));
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Records the counters of capture queue `queue` (a worker calls this after each batch).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub fn publish_capture(&self, queue: u16, counters: CaptureCounters) {
        self.capture.lock().insert(queue, counters);
    }

    /// Makes the supervised threads' health part of the statistics.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub fn set_supervisor(&self, supervisor: super::supervise::Supervisor) {
        let _ = self.supervisor.set(supervisor);
    }

    /// Each supervised thread's health, by name (empty without a supervisor).
    pub fn thread_health(&self) -> std::collections::BTreeMap<String, super::supervise::ThreadHealth> {
        self.supervisor.get().map(super::supervise::Supervisor::health).unwrap_or_default()
    }

    /// The capture counters published so far, by queue number.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub fn capture_counters(&self) -> Vec<(u16, CaptureCounters)> {
        self.capture.lock().iter().map(|(q, c)| (*q, *c)).collect()
    }

    /// Hands every held fragment the engines have released to `send`.
    pub fn drain_released(&self, mut send: impl FnMut(&[u8])) {
        for nat in self.nats.load().iter() {
            for inst in nat.instances.load().iter() {
                while let Some(p) = inst.nat.poll_released() {
                    send(&p.packet);
                }
            }
        }
    }

    /// Translates every packet of a received `batch` in a batch of its own: the
    /// [`Translator`] of a thread that lives for one batch (tests and the instruction-count
    /// example; capture threads keep theirs, see [`Dataplane::run_thread`]).
    pub fn process_batch(
        &self,
        now: Instant,
        batch: &mut Batch,
        rewritten: impl FnMut(&mut Packet, Delivery) -> CaptureAction,
    ) {
        let snapshot = Snapshot::of(self);
        Translator::new(self, &snapshot).process_batch(now, batch, rewritten);
    }

    /// Translates one `packet` (IPv4, no link header) in place and says what to do with it
    /// (a batch of one).
    #[cfg(test)]
    pub fn process(&self, now: Instant, packet: &mut [u8]) -> Delivery {
        let snapshot = Snapshot::of(self);
        // Bound first: the translator borrows the snapshot, which must outlive it.
        let delivery = Translator::new(self, &snapshot).process(now, packet);
        delivery
    }

    /// Runs a capture thread's rounds: `round(translator)` is called again and again with
    /// one [`Translator`] (the NATs as they were when it was made, a `Worker` per engine:
    /// the engine's fast path, kept across batches) until it breaks; when the NATs or their
    /// engines change, the next round gets a new translator.
    pub fn run_thread<R>(&self, mut round: impl FnMut(&mut Translator<'_>) -> ControlFlow<R>) -> R {
        loop {
            let snapshot = Snapshot::of(self);
            let mut translator = Translator::new(self, &snapshot);
            while snapshot.is_current(self) {
                if let ControlFlow::Break(r) = round(&mut translator) {
                    return r;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// UDP `src:sport -> dst:dport`, no UDP checksum, valid IP checksum.
    fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&[0, 8, 0, 0]);
        netnat_engine::wire::ipv4::fill_checksum(&mut p);
        p
    }

    fn plane() -> Dataplane {
        let mut config = NatConfig::new("WinNAT", "10.100.0.0/16".parse().unwrap(), Ipv4Addr::new(203, 0, 113, 1));
        config.seed = 1;
        // As the service compiles every NAT: the external address is the host's too.
        config.unmatched_inbound = netnat_engine::UnmatchedInbound::Host;
        let template = Template { config, addressing: Addressing::Explicit };
        let nat = LiveNat::new("WinNAT".into(), template, &[], &[]).unwrap();
        let plane = Dataplane::new();
        plane.set_nats(vec![Arc::new(nat)]);
        plane
    }

    #[test]
    fn outbound_is_translated_and_replies_come_back_marked_inbound() {
        let plane = plane();
        let mut out = udp([10, 100, 10, 11], 5000, [203, 0, 113, 10], 53);
        let action = plane.process(Instant::from_secs(1), &mut out);
        assert_eq!(action, Delivery::Translated { len: 28, inbound: false });
        assert_eq!(&out[12..16], &[203, 0, 113, 1]);
        let ext_port = u16::from_be_bytes([out[20], out[21]]);
        let mut reply = udp([203, 0, 113, 10], 53, [203, 0, 113, 1], ext_port);
        assert_eq!(plane.process(Instant::from_secs(2), &mut reply), Delivery::Translated { len: 28, inbound: true });
        assert_eq!(&reply[16..20], &[10, 100, 10, 11]);
    }

    #[test]
    fn batches_get_lengths_and_verdicts_and_rewritten_packets_go_to_the_platform() {
        let plane = plane();
        let mut batch = Batch::new(4, 1500);
        batch.push(&udp([10, 100, 10, 11], 5000, [203, 0, 113, 10], 53), 0, 0);
        batch.push(&udp([203, 0, 113, 10], 40000, [203, 0, 113, 1], 2222), 0, 0);
        let mut truncated = udp([10, 100, 10, 11], 5001, [203, 0, 113, 10], 53);
        truncated.truncate(24);
        batch.push(&truncated, 0, 0);
        let mut seen = Vec::new();
        plane.process_batch(Instant::from_secs(1), &mut batch, |p, action| {
            seen.push(action);
            p.meta.outbound = Some(true);
            CaptureAction::Accept
        });
        assert_eq!(seen, vec![Delivery::Translated { len: 28, inbound: false }]);
        let verdicts: Vec<_> = batch.iter().map(|p| p.action()).collect();
        assert_eq!(verdicts, vec![CaptureAction::Accept, CaptureAction::Accept, CaptureAction::Drop]);
        let first = &batch.packets()[0];
        assert_eq!((first.ip().len(), &first.ip()[12..16]), (28, &[203, 0, 113, 1][..]));
        assert_eq!(first.meta.outbound, Some(true));
        assert_eq!(batch.packets()[1].meta.outbound, None, "untouched packets keep their direction");
        // The batch's workers flushed their counts when it ended.
        let stats = plane.nats()[0].instances()[0].nat.stats();
        let counted = (stats.translated_out, stats.passed, stats.dropped["truncated"], stats.dropped_total());
        assert_eq!(counted, (1, 1, 1, 1), "{stats:?}");
    }

    /// A capture thread keeps one translator (its engines' workers) across batches: counts
    /// stay in the workers while batches come full and reach the statistics once the capture
    /// ran dry; a change of NATs gives the next round a new translator, with the new NATs.
    #[test]
    fn a_threads_workers_live_across_batches_until_the_nats_change() {
        let plane = plane();
        let stats = |plane: &Dataplane| plane.nats()[0].instances()[0].nat.stats().translated_out;
        let mut batch = Batch::new(4, 1500);
        let mut round = 0;
        let mut sources = Vec::new();
        plane.run_thread(|translator| {
            round += 1;
            batch.clear();
            for port in 0..4 {
                batch.push(&udp([10, 100, 10, 11], 5000 + port, [203, 0, 113, 10], 53), 0, 0);
            }
            translator.process_batch(Instant::from_secs(1), &mut batch, |_, _| CaptureAction::Accept);
            sources.push(batch.packets()[0].ip()[12..16].to_vec());
            match round {
                1 | 2 => {
                    translator.batch_done(false);
                    assert_eq!(stats(&plane), 0, "round {round}: full batches keep their counts in the workers");
                }
                3 => {
                    translator.batch_done(true);
                    assert_eq!(stats(&plane), 12, "a drained capture flushes every count");
                    // The operator changes the NAT's external address.
                    let mut config = plane.nats()[0].template().config;
                    config.external_addresses[0].address = Ipv4Addr::new(203, 0, 113, 2);
                    let template = Template { config, addressing: Addressing::Explicit };
                    let nat = LiveNat::new("WinNAT".into(), template, &[], &[]).unwrap();
                    plane.set_nats(vec![Arc::new(nat)]);
                }
                _ => {
                    translator.batch_done(true);
                    assert_eq!(stats(&plane), 4, "the new NAT's engine counted the fourth batch");
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        });
        let old: &[u8] = &[203, 0, 113, 1];
        let new: &[u8] = &[203, 0, 113, 2];
        assert_eq!(sources, [old, old, old, new], "the round after the change translated with the new NAT");
    }

    /// A NAT whose engines change under a running thread (a new instance for a new host
    /// address) is picked up by the next round too.
    #[test]
    fn a_threads_translator_follows_a_nat_whose_engines_change() {
        let mut config = NatConfig::new("WinNAT", "10.100.0.0/16".parse().unwrap(), Ipv4Addr::new(203, 0, 113, 1));
        config.external_addresses.clear();
        config.unmatched_inbound = netnat_engine::UnmatchedInbound::Host;
        let template = Template { config, addressing: Addressing::Implicit { ports: (1024, 65535) } };
        let nat = Arc::new(LiveNat::new("WinNAT".into(), template, &[], &[]).unwrap());
        let plane = Dataplane::new();
        plane.set_nats(vec![Arc::clone(&nat)]);
        let mut rounds = 0;
        let reply = plane.run_thread(|translator| {
            rounds += 1;
            let mut to_host = udp([198, 51, 100, 20], 53, [203, 0, 113, 1], 40000);
            let action = translator.process(Instant::from_secs(1), &mut to_host);
            if rounds == 1 {
                assert_eq!(action, Delivery::Unchanged, "no engine for 203.0.113.1 yet");
                nat.rebuild(&[Ipv4Addr::new(203, 0, 113, 1)], &[]).unwrap();
                return ControlFlow::Continue(());
            }
            ControlFlow::Break(action)
        });
        assert_eq!((rounds, reply), (2, Delivery::Unchanged), "the new engine passes what no mapping claims");
        assert_eq!(nat.instances()[0].nat.stats().passed, 1, "and it was the new engine that saw it");
    }

    #[test]
    fn packets_for_the_host_and_between_internal_hosts_pass_unchanged() {
        let plane = plane();
        let mut to_host = udp([203, 0, 113, 10], 40000, [203, 0, 113, 1], 2222);
        let copy = to_host.clone();
        assert_eq!(plane.process(Instant::from_secs(1), &mut to_host), Delivery::Unchanged);
        assert_eq!(to_host, copy);
        // The host's own replies are not the NAT's drops (Get-NetNatStatistics).
        let stats = plane.nats()[0].instances()[0].nat.stats();
        assert_eq!((stats.dropped["no_mapping"], stats.dropped_total()), (0, 0), "{stats:?}");
        let mut internal = udp([10, 100, 10, 11], 1, [10, 100, 10, 12], 2);
        assert_eq!(plane.process(Instant::from_secs(1), &mut internal), Delivery::Unchanged);
        assert_eq!(plane.process(Instant::from_secs(1), &mut [0x60, 0, 0]), Delivery::Unchanged);
    }
}
