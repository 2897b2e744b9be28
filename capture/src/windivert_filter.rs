//! Builds the WinDivert filter string for a NAT. Pure and compiled everywhere, so it is tested
//! on Linux; only `windivert.rs` needs Windows.
//!
//! What the NAT must see (design §2 "Direction"), at WinDivert's network layer:
//! - **outbound translation**: packets from the internal prefix to anywhere outside it. They
//!   come from the VMs through the Hyper-V switch, so the host sees them *inbound* on the
//!   internal vEthernet adapter (`ifIdx`). Hairpin traffic (internal → external address) is
//!   included, since the external address is outside the prefix.
//! - **inbound translation**: packets to an external address, *inbound* on any interface, on
//!   the external address's port range (TCP/UDP destination port in `PortStart..=PortEnd`),
//!   the static mappings' ports, all ICMP (echo replies by identifier, errors by embedded
//!   packet — the engine drops what matches no session), and non-first fragments (no ports).
//!
//! Limiting inbound capture to the port range matters when the external address is the
//! host's own address (the usual WinNAT setup): the host's own connections use ephemeral
//! ports (49152–65535 by default) that the filter would otherwise steal. Give the NAT a range
//! that does not overlap them (as `Add-NetNatExternalAddress -PortStart/-PortEnd` does).
//! Packets the filter catches that are not the NAT's business are passed back unchanged by
//! the engine, so a broader filter costs speed, not correctness.
//!
//! WinDivert compiles a filter to at most 256 instructions (`WINDIVERT_FILTER_MAXLEN`); when
//! the static mappings would need more comparisons than [`MAX_STATIC_TERMS`], they are folded
//! into "all TCP/UDP to the external address" (a superset, still correct).

use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// Static-mapping port comparisons above which the filter captures all TCP/UDP to the
/// external addresses instead (keeps the compiled filter under WinDivert's limit).
pub const MAX_STATIC_TERMS: usize = 64;

/// Transport protocol of a static mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// An external address with its port range (NetNatExternalAddress).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExternalAddress {
    /// IPAddress.
    pub address: Ipv4Addr,
    /// PortStart.
    pub port_start: u16,
    /// PortEnd.
    pub port_end: u16,
}

/// A static mapping's external side (NetNatStaticMapping).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaticPort {
    /// Protocol.
    pub protocol: Protocol,
    /// ExternalIPAddress; `0.0.0.0` means every external address of the NAT.
    pub address: Ipv4Addr,
    /// ExternalPort.
    pub port: u16,
}

/// What one NAT needs to capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatFilterSpec {
    /// InternalIPInterfaceAddressPrefix: network address.
    pub internal_network: Ipv4Addr,
    /// InternalIPInterfaceAddressPrefix: prefix length (0..=32).
    pub internal_prefix_len: u8,
    /// Interface index of the internal vEthernet adapter (`Get-NetAdapter`'s ifIndex); `None`
    /// captures internal-prefix traffic arriving on any interface.
    pub internal_interface: Option<u32>,
    /// The NAT's external addresses (at least one).
    pub external: Vec<ExternalAddress>,
    /// Static mappings.
    pub static_ports: Vec<StaticPort>,
}

/// Why no filter could be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    /// Prefix length above 32.
    #[error("windivert filter: internal prefix length {0} is above 32; use e.g. 10.100.0.0/16")]
    PrefixLength(u8),
    /// No external address: the inbound half cannot be built.
    #[error("windivert filter: the nat has no external address; add one (Add-NetNatExternalAddress) or let the daemon pick the host's address first")]
    NoExternalAddress,
    /// PortStart above PortEnd.
    #[error(
        "windivert filter: external address {address} has port range {start}-{end}; PortStart must not exceed PortEnd"
    )]
    PortRange {
        /// The address.
        address: Ipv4Addr,
        /// PortStart.
        start: u16,
        /// PortEnd.
        end: u16,
    },
}

/// First and last address of `network/len` (host bits of `network` are ignored).
pub fn prefix_bounds(network: Ipv4Addr, len: u8) -> Result<(Ipv4Addr, Ipv4Addr), FilterError> {
    if len > 32 {
        return Err(FilterError::PrefixLength(len));
    }
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    let first = u32::from(network) & mask;
    Ok((Ipv4Addr::from(first), Ipv4Addr::from(first | !mask)))
}

/// The WinDivert filter (network layer) that captures everything `spec`'s NAT translates.
pub fn nat_filter(spec: &NatFilterSpec) -> Result<String, FilterError> {
    let (lo, hi) = prefix_bounds(spec.internal_network, spec.internal_prefix_len)?;
    if spec.external.is_empty() {
        return Err(FilterError::NoExternalAddress);
    }
    for e in &spec.external {
        if e.port_start > e.port_end {
            return Err(FilterError::PortRange { address: e.address, start: e.port_start, end: e.port_end });
        }
    }

    let mut out = String::from("ip and (");
    // Outbound half. `write!` to a String cannot fail.
    out.push_str("(inbound");
    if let Some(idx) = spec.internal_interface {
        let _ = write!(out, " and ifIdx == {idx}");
    }
    let _ = write!(
        out,
        " and ip.SrcAddr >= {lo} and ip.SrcAddr <= {hi} and not (ip.DstAddr >= {lo} and ip.DstAddr <= {hi}))"
    );

    // Inbound half, one clause per external address.
    let fold_static = spec.static_ports.len() > MAX_STATIC_TERMS;
    for e in &spec.external {
        let _ = write!(out, " or (inbound and ip.DstAddr == {} and (", e.address);
        if fold_static {
            out.push_str("tcp or udp");
        } else {
            for (i, proto) in ["tcp", "udp"].iter().enumerate() {
                if i > 0 {
                    out.push_str(" or ");
                }
                let _ = write!(out, "({proto}.DstPort >= {} and {proto}.DstPort <= {})", e.port_start, e.port_end);
            }
            for s in &spec.static_ports {
                let outside_range = s.port < e.port_start || s.port > e.port_end;
                let applies = s.address == Ipv4Addr::UNSPECIFIED || s.address == e.address;
                if applies && outside_range {
                    let _ = write!(out, " or {}.DstPort == {}", s.protocol.name(), s.port);
                }
            }
        }
        out.push_str(" or icmp or ip.FragOff != 0))");
    }
    out.push(')');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> NatFilterSpec {
        NatFilterSpec {
            internal_network: Ipv4Addr::new(10, 100, 0, 0),
            internal_prefix_len: 16,
            internal_interface: Some(7),
            external: vec![ExternalAddress {
                address: Ipv4Addr::new(203, 0, 113, 1),
                port_start: 1024,
                port_end: 49151,
            }],
            static_ports: vec![],
        }
    }

    #[test]
    fn the_article_nat_gives_the_expected_filter() {
        assert_eq!(
            nat_filter(&spec()).unwrap(),
            "ip and ((inbound and ifIdx == 7 and ip.SrcAddr >= 10.100.0.0 and ip.SrcAddr <= 10.100.255.255 \
             and not (ip.DstAddr >= 10.100.0.0 and ip.DstAddr <= 10.100.255.255)) \
             or (inbound and ip.DstAddr == 203.0.113.1 and ((tcp.DstPort >= 1024 and tcp.DstPort <= 49151) \
             or (udp.DstPort >= 1024 and udp.DstPort <= 49151) or icmp or ip.FragOff != 0)))"
        );
    }

    #[test]
    fn prefix_bounds_ignore_host_bits_and_cover_edges() {
        let b = |a: [u8; 4], l| prefix_bounds(Ipv4Addr::from(a), l).unwrap();
        assert_eq!(b([10, 100, 10, 11], 16), (Ipv4Addr::new(10, 100, 0, 0), Ipv4Addr::new(10, 100, 255, 255)));
        assert_eq!(b([10, 100, 10, 11], 32), (Ipv4Addr::new(10, 100, 10, 11), Ipv4Addr::new(10, 100, 10, 11)));
        assert_eq!(b([1, 2, 3, 4], 0), (Ipv4Addr::new(0, 0, 0, 0), Ipv4Addr::new(255, 255, 255, 255)));
        assert_eq!(prefix_bounds(Ipv4Addr::new(10, 0, 0, 0), 33), Err(FilterError::PrefixLength(33)));
    }

    #[test]
    fn static_ports_outside_the_range_are_added_per_address() {
        let mut s = spec();
        s.external.push(ExternalAddress { address: Ipv4Addr::new(203, 0, 113, 2), port_start: 1024, port_end: 65535 });
        s.static_ports = vec![
            StaticPort { protocol: Protocol::Tcp, address: Ipv4Addr::UNSPECIFIED, port: 50080 },
            StaticPort { protocol: Protocol::Udp, address: Ipv4Addr::new(203, 0, 113, 1), port: 53 },
            StaticPort { protocol: Protocol::Tcp, address: Ipv4Addr::new(203, 0, 113, 1), port: 8080 },
        ];
        let f = nat_filter(&s).unwrap();
        let (first, second) = f.split_once("ip.DstAddr == 203.0.113.2").unwrap();
        assert!(first.contains("tcp.DstPort == 50080") && first.contains("udp.DstPort == 53"), "{f}");
        assert!(!first.contains("tcp.DstPort == 8080"), "8080 is inside the range already: {f}");
        assert!(!second.contains("50080") && !second.contains("== 53"), "inside 1024-65535 / other address: {f}");
        assert_eq!(f.matches('(').count(), f.matches(')').count(), "balanced: {f}");
    }

    #[test]
    fn many_static_mappings_fold_into_all_tcp_and_udp() {
        let mut s = spec();
        s.static_ports = (0..=MAX_STATIC_TERMS as u16)
            .map(|p| StaticPort { protocol: Protocol::Tcp, address: Ipv4Addr::UNSPECIFIED, port: p })
            .collect();
        let f = nat_filter(&s).unwrap();
        assert!(f.contains("ip.DstAddr == 203.0.113.1 and (tcp or udp or icmp"), "{f}");
        assert!(f.len() < 400, "{f}");
    }

    #[test]
    fn no_interface_no_external_and_bad_ranges() {
        let mut s = spec();
        s.internal_interface = None;
        assert!(!nat_filter(&s).unwrap().contains("ifIdx"));
        s.external[0].port_start = 2000;
        s.external[0].port_end = 1000;
        let e = nat_filter(&s).unwrap_err();
        assert!(e.to_string().contains("2000-1000"), "{e}");
        s.external.clear();
        assert_eq!(nat_filter(&s), Err(FilterError::NoExternalAddress));
    }
}
