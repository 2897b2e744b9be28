//! The configuration in the form the packet path reads it: addresses as integers, the
//! filtering policies resolved. Swapped as a whole (`ArcSwap`) so a packet sees one version.

use std::sync::Arc;

use crate::config::{NatConfig, Protocol, StaticMapping};
use crate::filter::{self, FilteringPolicy};
use crate::policy::Compiled;
use crate::ports::{ExternalIndex, PortTable};

/// One external address, its dynamic port range and the owners of its ports.
#[derive(Clone, Debug)]
pub(crate) struct ExternalRange {
    pub addr: u32,
    pub start: u16,
    pub end: u16,
    pub ports: Arc<PortTable>,
}

#[derive(Debug)]
pub(crate) struct Settings {
    pub config: Arc<NatConfig>,
    pub internal_net: u32,
    pub internal_mask: u32,
    pub externals: Vec<ExternalRange>,
    pub tcp_filter: Arc<dyn FilteringPolicy>,
    pub udp_filter: Arc<dyn FilteringPolicy>,
}

/// Where the filtering policies come from; held by the `Nat` under its reconfiguration lock.
#[derive(Debug, Default)]
pub(crate) struct Filters {
    /// Set with `Nat::set_filtering_policy` (TCP, UDP); they win over the configuration.
    pub custom: [Option<Arc<dyn FilteringPolicy>>; 2],
    /// The configuration's filter policy, compiled. Kept while reconfigurations leave the
    /// policy as it was, so its rate-limit windows live on (a Set-NetNat of a timeout does
    /// not hand every host a fresh budget).
    compiled: Option<Arc<Compiled>>,
}

impl Filters {
    /// The TCP and UDP filters for `config`.
    fn resolve(&mut self, config: &NatConfig) -> [Arc<dyn FilteringPolicy>; 2] {
        self.compiled = match (&config.filter_policy, self.compiled.take()) {
            (None, _) => None,
            (Some(p), Some(c)) if c.policy() == p => Some(c),
            (Some(p), _) => Some(Arc::new(Compiled::new(p.clone()))),
        };
        let pick = |i: usize, configured| -> Arc<dyn FilteringPolicy> {
            match (&self.custom[i], &self.compiled) {
                (Some(custom), _) => custom.clone(),
                (None, Some(compiled)) => compiled.filter(configured),
                (None, None) => filter::builtin(configured),
            }
        };
        [pick(0, config.tcp_filtering), pick(1, config.udp_filtering)]
    }
}

impl Settings {
    pub(crate) fn new(config: NatConfig, filters: &mut Filters, index: &ExternalIndex) -> Settings {
        let internal_mask = u32::from(config.internal_prefix.netmask());
        let internal_net = u32::from(config.internal_prefix.network());
        let externals = config
            .external_addresses
            .iter()
            .map(|e| {
                let addr = u32::from(e.address);
                ExternalRange { addr, start: e.port_start, end: e.port_end, ports: index.table_for(addr) }
            })
            .collect();
        let [tcp_filter, udp_filter] = filters.resolve(&config);
        Settings { config: Arc::new(config), internal_net, internal_mask, externals, tcp_filter, udp_filter }
    }

    pub(crate) fn is_internal(&self, addr: u32) -> bool {
        addr & self.internal_mask == self.internal_net
    }

    pub(crate) fn is_external(&self, addr: u32) -> bool {
        self.externals.iter().any(|e| e.addr == addr)
    }

    /// The external address `addr`, if it is one of this NAT's.
    pub(crate) fn external(&self, addr: u32) -> Option<&ExternalRange> {
        self.externals.iter().find(|e| e.addr == addr)
    }

    /// The static mapping that owns an external (address, port), if any.
    pub(crate) fn static_owner(&self, proto: Protocol, addr: u32, port: u16) -> Option<&StaticMapping> {
        let addr = addr.into();
        self.config.static_mappings.iter().find(|m| m.owns(proto, addr, port))
    }

    /// The static mapping whose internal endpoint this is, if any.
    pub(crate) fn static_for_internal(&self, proto: Protocol, addr: u32, port: u16) -> Option<&StaticMapping> {
        self.config
            .static_mappings
            .iter()
            .find(|m| m.protocol == proto && u32::from(m.internal_address) == addr && m.internal_port == port)
    }

    pub(crate) fn filter(&self, proto: Protocol) -> &dyn FilteringPolicy {
        match proto {
            Protocol::Tcp => &*self.tcp_filter,
            _ => &*self.udp_filter,
        }
    }

    /// The external address for an internal host: the same one for all its sessions ("paired"
    /// pooling, RFC 4787 REQ-2), spread over the addresses by a hash.
    pub(crate) fn external_for(&self, internal: u32) -> Option<&ExternalRange> {
        match self.externals.len() {
            0 => None,
            1 => self.externals.first(),
            n => {
                let h = crate::alloc::mix(u64::from(internal) ^ self.config.seed);
                self.externals.get((h % n as u64) as usize)
            }
        }
    }
}
