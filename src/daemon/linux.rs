//! The Linux pieces of the daemon: kernel rules from the configuration, and capture.

use std::collections::BTreeSet;
use std::sync::Arc;

use netnat_engine::Protocol;

use super::dataplane::{Addressing, LiveNat};
use crate::platform::rules::{self, InboundMatch, Queues, RuleSpec};

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

/// Installs the rules for `nats`, or removes them all when there are none.
pub fn install(nats: &[Arc<LiveNat>], queues: Queues) {
    let result = if nats.is_empty() { rules::remove() } else { rules::apply(&rule_spec(nats, queues)) };
    match result {
        Ok(()) => tracing::info!(nats = nats.len(), "kernel rules updated"),
        Err(e) => tracing::error!("cannot install the kernel rules: {e}"),
    }
}
