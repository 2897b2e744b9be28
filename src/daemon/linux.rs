//! The Linux pieces of the daemon: kernel rules from the configuration, and capture.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use netnat_engine::Protocol;
use parking_lot::Mutex;

use super::dataplane::{Addressing, LiveNat};
use crate::platform::ports;
use crate::platform::rules::{self, InboundMatch, Installed, Queues, RuleSpec, RulesError};
use crate::platform::ruleset_events::RulesetEvents;

/// The rules that divert the packets of `nats`.
pub fn rule_spec(nats: &[Arc<LiveNat>], queues: Queues) -> RuleSpec {
    let mut inbound = BTreeSet::new();
    for nat in nats {
        let template = nat.template();
        let config = &template.config;
        let mut ranges: Vec<(Option<std::net::Ipv4Addr>, (u16, u16))> = Vec::new();
        match template.addressing {
            Addressing::Explicit => {
                for e in &config.external_addresses {
                    ranges.push((Some(e.address), (e.port_start, e.port_end)));
                }
            }
            Addressing::Implicit { ports } => ranges.push((None, ports)),
        }
        for (destination, ports) in &ranges {
            for protocol in [Protocol::Tcp, Protocol::Udp] {
                inbound.insert(InboundMatch { destination: *destination, protocol, ports: *ports });
            }
            inbound.insert(InboundMatch { destination: *destination, protocol: Protocol::Icmp, ports: (0, 0) });
        }
        for m in &config.static_mappings {
            let destinations: Vec<Option<std::net::Ipv4Addr>> = if !m.external_address.is_unspecified() {
                vec![Some(m.external_address)]
            } else {
                ranges.iter().map(|(d, _)| *d).collect()
            };
            for destination in destinations {
                let covered = ranges
                    .iter()
                    .any(|(d, (a, b))| (*d == destination || d.is_none()) && (*a..=*b).contains(&m.external_port));
                if !covered {
                    inbound.insert(InboundMatch {
                        destination,
                        protocol: m.protocol,
                        ports: (m.external_port, m.external_port),
                    });
                }
            }
        }
    }
    RuleSpec {
        queues,
        internal_prefixes: nats.iter().map(|n| n.prefix).collect(),
        inbound: inbound.into_iter().collect(),
    }
}

/// The port ranges of `nats` on the host's own addresses: what the host must not use for its
/// own connections (`platform::ports`).
pub fn host_port_ranges(nats: &[Arc<LiveNat>], host: &[Ipv4Addr]) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    for nat in nats {
        let template = nat.template();
        match template.addressing {
            Addressing::Implicit { ports } => out.push(ports),
            Addressing::Explicit => out.extend(
                template
                    .config
                    .external_addresses
                    .iter()
                    .filter(|e| host.contains(&e.address))
                    .map(|e| (e.port_start, e.port_end)),
            ),
        }
    }
    out
}

/// The kernel rules in force, and the means to notice that someone else removed them.
#[derive(Debug)]
pub struct RuleKeeper {
    queues: Queues,
    kept: Mutex<Option<Kept>>,
}

#[derive(Debug)]
struct Kept {
    spec: RuleSpec,
    /// What the kernel held right after the last successful install; `None` when that
    /// install failed (the next check tries again).
    installed: Option<Installed>,
}

impl RuleKeeper {
    /// No rules known yet.
    pub fn new(queues: Queues) -> RuleKeeper {
        RuleKeeper { queues, kept: Mutex::new(None) }
    }

    /// Installs the rules for `nats`, or removes them all when there are none; reserves the
    /// NATs' ports on the host's addresses so host sockets never take them.
    pub fn install(&self, nats: &[Arc<LiveNat>]) -> Result<(), RulesError> {
        let mut kept = self.kept.lock();
        if nats.is_empty() {
            *kept = None;
            rules::remove()?;
            tracing::info!("no NAT left: kernel rules removed");
            return Ok(());
        }
        self.reserve_ports(nats);
        let spec = rule_spec(nats, self.queues);
        let result = rules::apply_and_read_back(&spec);
        let (installed, result) = match result {
            Ok(i) => (Some(i), Ok(())),
            Err(e) => (None, Err(e)),
        };
        *kept = Some(Kept { spec, installed });
        match &result {
            Ok(()) => tracing::info!(nats = nats.len(), "kernel rules updated"),
            Err(e) => tracing::error!("cannot install the kernel rules (retrying every second): {e}"),
        }
        result
    }

    fn reserve_ports(&self, nats: &[Arc<LiveNat>]) {
        let host = crate::platform::addrs::local_ipv4().unwrap_or_default();
        let ranges = host_port_ranges(nats, &host);
        match ports::reserve(&ranges) {
            Ok(true) => tracing::info!(
                ranges = %ports::format_ranges(&ports::merge(ranges.clone())),
                "reserved the NATs' ports on the host's addresses (net.ipv4.ip_local_reserved_ports): host sockets will not use them"
            ),
            Ok(false) => {}
            Err(e) => tracing::warn!("cannot reserve the NATs' ports in net.ipv4.ip_local_reserved_ports: {e}"),
        }
        if let Some(eph) = ports::host_ephemeral_range() {
            if ports::starves_host(&ranges, eph) {
                tracing::warn!(
                    "the NATs' port ranges cover the host's whole ephemeral range {}-{}: the host cannot open connections of its own; give a narrower -PortStart/-PortEnd",
                    eph.0,
                    eph.1
                );
            }
        }
    }

    /// Whether NAT rules are meant to be installed and are.
    pub fn in_force(&self) -> bool {
        self.kept.lock().as_ref().is_some_and(|k| k.installed.is_some())
    }

    /// Puts the rules back if they are no longer as installed (someone ran `nft flush
    /// ruleset`, reloaded a firewall, deleted a chain) or if the last install failed.
    pub fn restore_if_needed(&self) {
        let mut kept = self.kept.lock();
        let Some(k) = kept.as_mut() else { return };
        let failed_before = k.installed.is_none();
        if k.installed.as_ref().is_some_and(Installed::intact) {
            return;
        }
        match rules::apply_and_read_back(&k.spec) {
            Ok(i) => {
                k.installed = Some(i);
                if failed_before {
                    tracing::warn!("kernel rules installed after an earlier failure");
                } else {
                    tracing::warn!(
                        "netnat's kernel rules were removed or changed by someone else (nft flush ruleset, a firewall reload?); restored them"
                    );
                }
            }
            Err(e) => {
                k.installed = None;
                tracing::error!("netnat's kernel rules are missing and cannot be restored: {e}");
            }
        }
    }
}

/// How long the rules may stay broken when no change event arrives (a missed event, a
/// kernel without nftables notifications).
const RULE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Watches the ruleset for changes and restores netnat's rules; runs forever.
pub fn keep_rules(keeper: &RuleKeeper) -> anyhow::Result<()> {
    let mut events = match RulesetEvents::open() {
        Ok(e) => Some(e),
        Err(e) => {
            tracing::warn!("no nftables change events ({e}): checking the rules every second instead");
            None
        }
    };
    loop {
        match events.as_mut() {
            Some(ev) => {
                if let Err(e) = ev.wait(RULE_CHECK_INTERVAL) {
                    tracing::warn!("nftables change events failed ({e}): checking the rules every second instead");
                    events = None;
                }
            }
            None => std::thread::sleep(RULE_CHECK_INTERVAL),
        }
        keeper.restore_if_needed();
    }
}
