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
//! A VM's packet that the host routes elsewhere never reaches WinDivert's network layer; it
//! is seen at the forward layer (with IP forwarding enabled), so the daemon splits the two
//! halves: [`forward_filter`] (outbound half, forward layer) and [`nats_filter`] (both halves
//! at the network layer; there the outbound half still catches VM packets to the host's own
//! addresses, e.g. hairpinning through a static mapping).
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
    if spec.external.is_empty() {
        return Err(FilterError::NoExternalAddress);
    }
    nats_filter(std::slice::from_ref(spec))
}

/// One filter for several NATs (what one daemon serves): the clauses of every NAT joined
/// with `or`; `"false"` (capture nothing) for no NAT. Unlike [`nat_filter`], a NAT without
/// external addresses is allowed: only its outbound half is captured (the daemon then drops
/// those packets, failing closed, until the NAT has an address to translate to).
pub fn nats_filter(specs: &[NatFilterSpec]) -> Result<String, FilterError> {
    if specs.is_empty() {
        return Ok("false".to_owned());
    }
    let mut clauses = Vec::new();
    for spec in specs {
        let (lo, hi) = prefix_bounds(spec.internal_network, spec.internal_prefix_len)?;
        for e in &spec.external {
            if e.port_start > e.port_end {
                return Err(FilterError::PortRange { address: e.address, start: e.port_start, end: e.port_end });
            }
        }
        clauses.push(outbound_clause(spec.internal_interface, lo, hi));
        let fold_static = spec.static_ports.len() > MAX_STATIC_TERMS;
        for e in &spec.external {
            let clause = inbound_clause(e, &spec.static_ports, fold_static);
            if !clauses.contains(&clause) {
                clauses.push(clause);
            }
        }
    }
    Ok(format!("ip and ({})", clauses.join(" or ")))
}

/// The filter for WinDivert's *forward* layer (packets the host routes, which the network
/// layer never sees): the outbound half of every NAT, packets from its internal prefix to
/// outside it. The forward layer has no meaningful direction, so none is tested. `"false"`
/// for no NAT.
pub fn forward_filter(specs: &[NatFilterSpec]) -> Result<String, FilterError> {
    if specs.is_empty() {
        return Ok("false".to_owned());
    }
    let mut clauses = Vec::new();
    for spec in specs {
        let (lo, hi) = prefix_bounds(spec.internal_network, spec.internal_prefix_len)?;
        let mut clause = String::from("(");
        if let Some(idx) = spec.internal_interface {
            let _ = write!(clause, "ifIdx == {idx} and ");
        }
        let _ = write!(
            clause,
            "ip.SrcAddr >= {lo} and ip.SrcAddr <= {hi} and not (ip.DstAddr >= {lo} and ip.DstAddr <= {hi}))"
        );
        clauses.push(clause);
    }
    Ok(format!("ip and ({})", clauses.join(" or ")))
}

/// Outbound half: from the internal prefix to outside it, arriving from the VMs.
fn outbound_clause(interface: Option<u32>, lo: Ipv4Addr, hi: Ipv4Addr) -> String {
    // `write!` to a String cannot fail.
    let mut out = String::from("(inbound");
    if let Some(idx) = interface {
        let _ = write!(out, " and ifIdx == {idx}");
    }
    let _ = write!(
        out,
        " and ip.SrcAddr >= {lo} and ip.SrcAddr <= {hi} and not (ip.DstAddr >= {lo} and ip.DstAddr <= {hi}))"
    );
    out
}

/// Inbound half for one external address.
fn inbound_clause(e: &ExternalAddress, static_ports: &[StaticPort], fold_static: bool) -> String {
    let mut out = String::new();
    let _ = write!(out, "(inbound and ip.DstAddr == {} and (", e.address);
    if fold_static {
        out.push_str("tcp or udp");
    } else {
        for (i, proto) in ["tcp", "udp"].iter().enumerate() {
            if i > 0 {
                out.push_str(" or ");
            }
            let _ = write!(out, "({proto}.DstPort >= {} and {proto}.DstPort <= {})", e.port_start, e.port_end);
        }
        for s in static_ports {
            let outside_range = s.port < e.port_start || s.port > e.port_end;
            let applies = s.address == Ipv4Addr::UNSPECIFIED || s.address == e.address;
            if applies && outside_range {
                let _ = write!(out, " or {}.DstPort == {}", s.protocol.name(), s.port);
            }
        }
    }
    out.push_str(" or icmp or ip.FragOff != 0))");
    out
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
    fn several_nats_share_one_filter() {
        assert_eq!(nats_filter(&[]).unwrap(), "false");
        let mut second = spec();
        second.internal_network = Ipv4Addr::new(10, 200, 0, 0);
        second.internal_interface = None;
        second.external.clear();
        let f = nats_filter(&[spec(), second]).unwrap();
        let one = nat_filter(&spec()).unwrap();
        let inner = &one["ip and (".len()..one.len() - 1];
        assert_eq!(
            f,
            format!(
                "ip and ({inner} or (inbound and ip.SrcAddr >= 10.200.0.0 and ip.SrcAddr <= 10.200.255.255 \
                 and not (ip.DstAddr >= 10.200.0.0 and ip.DstAddr <= 10.200.255.255)))"
            )
        );
        assert_eq!(f.matches('(').count(), f.matches(')').count(), "balanced: {f}");
        let twice = nats_filter(&[spec(), spec()]).unwrap();
        assert_eq!(twice.matches("ip.DstAddr == 203.0.113.1").count(), 1, "identical clauses once: {twice}");
    }

    #[test]
    fn the_forward_filter_takes_the_outbound_half_without_direction() {
        assert_eq!(forward_filter(&[]).unwrap(), "false");
        let mut second = spec();
        second.internal_network = Ipv4Addr::new(10, 200, 0, 0);
        second.internal_interface = None;
        assert_eq!(
            forward_filter(&[spec(), second]).unwrap(),
            "ip and ((ifIdx == 7 and ip.SrcAddr >= 10.100.0.0 and ip.SrcAddr <= 10.100.255.255 \
             and not (ip.DstAddr >= 10.100.0.0 and ip.DstAddr <= 10.100.255.255)) \
             or (ip.SrcAddr >= 10.200.0.0 and ip.SrcAddr <= 10.200.255.255 \
             and not (ip.DstAddr >= 10.200.0.0 and ip.DstAddr <= 10.200.255.255)))"
        );
        let mut bad = spec();
        bad.internal_prefix_len = 40;
        assert_eq!(forward_filter(&[bad]), Err(FilterError::PrefixLength(40)));
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
