//! What the Windows daemon asks WinDivert to divert, built from the running NATs by
//! `netnat_capture::windivert_filter` (pure, so tested on Linux too). The counterpart of
//! `linux::rule_spec`. Two filters, because a VM's packet that the host routes elsewhere is
//! seen only at WinDivert's forward layer:
//! - forward layer: the NATs' outbound half (internal prefix to outside it);
//! - network layer: replies and static-mapping traffic to the external addresses, and VM
//!   packets addressed to the host itself (hairpinning through the host's address).
//!
//! A NAT with NetNatExternalAddress objects captures inbound traffic to those addresses and
//! port ranges; a NAT without them (WinNAT's usual setup) to each host address it
//! currently translates to, with its slice of the dynamic port range. Static mappings add
//! their ports where the range does not cover them.

use std::sync::Arc;

use netnat_capture::windivert_filter::{self, ExternalAddress, FilterError, NatFilterSpec, StaticPort};
use netnat_engine::Protocol;

use super::dataplane::{Addressing, LiveNat};

/// What one running NAT needs diverted.
pub fn spec(nat: &LiveNat) -> NatFilterSpec {
    let template = nat.template();
    let config = &template.config;
    let external = match template.addressing {
        Addressing::Explicit => config
            .external_addresses
            .iter()
            .map(|e| ExternalAddress { address: e.address, port_start: e.port_start, port_end: e.port_end })
            .collect(),
        Addressing::Implicit { ports } => nat
            .instances()
            .iter()
            .flat_map(|i| i.addresses.clone())
            .map(|address| ExternalAddress { address, port_start: ports.0, port_end: ports.1 })
            .collect(),
    };
    let static_ports = config
        .static_mappings
        .iter()
        .filter_map(|m| {
            let protocol = match m.protocol {
                Protocol::Tcp => windivert_filter::Protocol::Tcp,
                Protocol::Udp => windivert_filter::Protocol::Udp,
                Protocol::Icmp => return None,
            };
            Some(StaticPort { protocol, address: m.external_address, port: m.external_port })
        })
        .collect();
    NatFilterSpec {
        internal_network: nat.prefix.network(),
        internal_prefix_len: nat.prefix.prefix_len(),
        // Internal-prefix traffic is diverted from whichever adapter it arrives on (the
        // internal vEthernet adapter in the article's setup).
        internal_interface: None,
        external,
        static_ports,
    }
}

/// The two WinDivert filters for a set of NATs (`"false"` where there is nothing to divert).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filters {
    /// For the forward-layer handle.
    pub forward: String,
    /// For the network-layer handle.
    pub network: String,
}

impl Default for Filters {
    fn default() -> Self {
        Filters { forward: "false".into(), network: "false".into() }
    }
}

/// The filters for all of `nats`.
pub fn filters(nats: &[Arc<LiveNat>]) -> Result<Filters, FilterError> {
    let specs: Vec<NatFilterSpec> = nats.iter().map(|n| spec(n)).collect();
    Ok(Filters { forward: windivert_filter::forward_filter(&specs)?, network: windivert_filter::nats_filter(&specs)? })
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use netnat_engine::{NatConfig, StaticMapping};

    use super::*;
    use crate::daemon::dataplane::Template;

    fn live(addressing: Addressing, hosts: &[Ipv4Addr]) -> Arc<LiveNat> {
        let mut config = NatConfig::new("WinNAT", "10.100.0.0/16".parse().unwrap(), Ipv4Addr::new(203, 0, 113, 1));
        config.static_mappings.push(StaticMapping {
            protocol: Protocol::Tcp,
            external_address: Ipv4Addr::UNSPECIFIED,
            external_port: 80,
            internal_address: Ipv4Addr::new(10, 100, 10, 11),
            internal_port: 80,
            remote_prefix: "0.0.0.0/0".parse().unwrap(),
        });
        if addressing != Addressing::Explicit {
            config.external_addresses.clear();
        }
        Arc::new(LiveNat::new("WinNAT".into(), Template { config, addressing }, hosts, &[]).unwrap())
    }

    #[test]
    fn explicit_addresses_and_static_ports_are_diverted() {
        let f = filters(&[live(Addressing::Explicit, &[])]).unwrap();
        assert!(f.forward.starts_with("ip and ((ip.SrcAddr >= 10.100.0.0"), "{f:?}");
        assert!(!f.forward.contains("203.0.113.1"), "{f:?}");
        let f = f.network;
        assert!(f.contains("ip.SrcAddr >= 10.100.0.0 and ip.SrcAddr <= 10.100.255.255"), "{f}");
        assert!(f.contains("ip.DstAddr == 203.0.113.1"), "{f}");
        assert!(f.contains("tcp.DstPort == 80"), "port 80 is below the dynamic range: {f}");
        assert!(!f.contains("ifIdx"), "{f}");
    }

    #[test]
    fn implicit_addressing_follows_the_host_addresses_outside_the_prefix() {
        let hosts = [Ipv4Addr::new(198, 51, 100, 7), Ipv4Addr::new(10, 100, 1, 1)];
        let nat = live(Addressing::Implicit { ports: (1024, 32767) }, &hosts);
        let f = filters(&[nat]).unwrap().network;
        assert!(f.contains("ip.DstAddr == 198.51.100.7 and ((tcp.DstPort >= 1024 and tcp.DstPort <= 32767)"), "{f}");
        assert!(!f.contains("ip.DstAddr == 10.100.1.1"), "the gateway is inside the prefix: {f}");
        let none = live(Addressing::Implicit { ports: (1024, 65535) }, &[]);
        let f = filters(&[none]).unwrap().network;
        assert!(f.contains("ip.SrcAddr >= 10.100.0.0") && !f.contains("ip.DstAddr =="), "outbound half only: {f}");
        assert_eq!(filters(&[]).unwrap(), Filters::default());
    }

    /// The daemon's filters as WinDivert itself compiles and evaluates them (windivert.dll
    /// from windivert-sys's vendored source; see `netnat_capture::windivert_filter`'s oracle
    /// tests for every kind of packet).
    #[cfg(windows)]
    #[test]
    fn windivert_compiles_the_daemons_filters_and_diverts_the_nats_packets() {
        use netnat_capture::windivert::{compile_filter, filter_matches, SeenAt};

        let udp = |src: [u8; 4], sport, dst: [u8; 4], dport| {
            let mut p = Vec::new();
            etherparse::PacketBuilder::ipv4(src, dst, 64).udp(sport, dport).write(&mut p, b"netnat").unwrap();
            p
        };
        let tcp = |src: [u8; 4], sport, dst: [u8; 4], dport| {
            let mut p = Vec::new();
            etherparse::PacketBuilder::ipv4(src, dst, 64).tcp(sport, dport, 1, 65535).syn().write(&mut p, b"").unwrap();
            p
        };
        let at = |forward, outbound| SeenAt { forward, outbound, interface: 7 };
        let host = [Ipv4Addr::new(198, 51, 100, 7)];
        let nats = [
            live(Addressing::Explicit, &[]),
            live(Addressing::Implicit { ports: (1024, 32767) }, &host),
            live(Addressing::Implicit { ports: (1024, 65535) }, &[]),
        ];
        for nat in nats {
            let f = filters(&[Arc::clone(&nat)]).unwrap();
            compile_filter(&f.forward, true).unwrap_or_else(|e| panic!("{e}: {}", f.forward));
            compile_filter(&f.network, false).unwrap_or_else(|e| panic!("{e}: {}", f.network));
            let vm_out = udp([10, 100, 10, 11], 5353, [198, 51, 100, 20], 53);
            assert!(filter_matches(&f.forward, &vm_out, at(true, false)).unwrap(), "{f:?}");
            assert!(filter_matches(&f.network, &vm_out, at(false, false)).unwrap(), "{f:?}");
            let vm_to_vm = udp([10, 100, 10, 11], 5353, [10, 100, 10, 12], 53);
            assert!(!filter_matches(&f.forward, &vm_to_vm, at(true, false)).unwrap(), "{f:?}");
            let addresses: Vec<Ipv4Addr> = spec(&nat).external.iter().map(|e| e.address).collect();
            for ext in addresses {
                let reply = udp([198, 51, 100, 20], 53, ext.octets(), 20000);
                assert!(filter_matches(&f.network, &reply, at(false, false)).unwrap(), "{ext}: {f:?}");
                let static_80 = tcp([198, 51, 100, 20], 50000, ext.octets(), 80);
                assert!(filter_matches(&f.network, &static_80, at(false, false)).unwrap(), "{ext}: {f:?}");
                let host_own = tcp([198, 51, 100, 20], 443, ext.octets(), 1000);
                assert!(!filter_matches(&f.network, &host_own, at(false, false)).unwrap(), "{ext}: {f:?}");
            }
        }
        let none = Filters::default();
        compile_filter(&none.forward, true).unwrap();
        compile_filter(&none.network, false).unwrap();
    }
}
