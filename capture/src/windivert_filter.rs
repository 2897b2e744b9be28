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
        let _ =
            write!(clause, "ip.SrcAddr >= {lo} and ip.SrcAddr <= {hi} and (ip.DstAddr < {lo} or ip.DstAddr > {hi}))");
        clauses.push(clause);
    }
    Ok(format!("ip and ({})", clauses.join(" or ")))
}

/// Outbound half: from the internal prefix to outside it, arriving from the VMs.
///
/// "Outside the prefix" is two comparisons joined by `or`: WinDivert 2.2's `not` negates a
/// single test, and its compiler rejects `not (...)` (found by the oracle tests below; every
/// filter with a NAT used to be refused by `WinDivertOpen`).
fn outbound_clause(interface: Option<u32>, lo: Ipv4Addr, hi: Ipv4Addr) -> String {
    // `write!` to a String cannot fail.
    let mut out = String::from("(inbound");
    if let Some(idx) = interface {
        let _ = write!(out, " and ifIdx == {idx}");
    }
    let _ = write!(out, " and ip.SrcAddr >= {lo} and ip.SrcAddr <= {hi} and (ip.DstAddr < {lo} or ip.DstAddr > {hi}))");
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
    // Every fragment, the first one (MF set, offset 0) too, whatever its ports: a datagram
    // split between netnat and the host is lost (netnat holds the later fragments waiting
    // for a first one the host got). netnat hands back the fragments that are no NAT's.
    out.push_str(" or icmp or ip.MF or ip.FragOff != 0))");
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
             and (ip.DstAddr < 10.100.0.0 or ip.DstAddr > 10.100.255.255)) \
             or (inbound and ip.DstAddr == 203.0.113.1 and ((tcp.DstPort >= 1024 and tcp.DstPort <= 49151) \
             or (udp.DstPort >= 1024 and udp.DstPort <= 49151) or icmp or ip.MF or ip.FragOff != 0)))"
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
                 and (ip.DstAddr < 10.200.0.0 or ip.DstAddr > 10.200.255.255)))"
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
             and (ip.DstAddr < 10.100.0.0 or ip.DstAddr > 10.100.255.255)) \
             or (ip.SrcAddr >= 10.200.0.0 and ip.SrcAddr <= 10.200.255.255 \
             and (ip.DstAddr < 10.200.0.0 or ip.DstAddr > 10.200.255.255)))"
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

/// WinDivert's own filter compiler and evaluator (windivert.dll, built from windivert-sys's
/// vendored source; no driver needed) as the oracle for the strings built here: every filter
/// must compile, and exactly the packets the design says the NAT translates are diverted.
/// Windows only; `.ci/windows-wine.sh` runs it under Wine.
#[cfg(all(test, windows))]
pub(crate) mod oracle {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::windivert::{compile_filter, filter_matches, SeenAt};

    pub const VM: [u8; 4] = [10, 100, 10, 11];
    pub const VM2: [u8; 4] = [10, 100, 10, 12];
    pub const GATEWAY: [u8; 4] = [10, 100, 1, 1];
    pub const EXT: [u8; 4] = [203, 0, 113, 1];
    pub const EXT2: [u8; 4] = [198, 51, 100, 1];
    pub const OTHER_HOST_ADDR: [u8; 4] = [203, 0, 113, 5];
    pub const REMOTE: [u8; 4] = [198, 51, 100, 20];
    pub const ROUTER: [u8; 4] = [198, 51, 100, 254];
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMP: u8 = 1;

    /// An IPv4 packet: 20-byte header (`frag` = flags and offset word), then `l4`.
    pub fn ipv4(proto: u8, src: [u8; 4], dst: [u8; 4], frag: u16, l4: &[u8]) -> Vec<u8> {
        let len = 20 + l4.len();
        let mut p = vec![0x45, 0, (len >> 8) as u8, len as u8, 0x12, 0x34];
        p.extend_from_slice(&frag.to_be_bytes());
        p.extend_from_slice(&[64, proto, 0, 0]);
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        let mut sum: u32 = p.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        let sum = !(sum as u16);
        p[10..12].copy_from_slice(&sum.to_be_bytes());
        p.extend_from_slice(l4);
        p
    }

    /// TCP SYN or UDP header with 8 bytes of payload.
    pub fn ports(proto: u8, sport: u16, dport: u16) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(&sport.to_be_bytes());
        h.extend_from_slice(&dport.to_be_bytes());
        if proto == TCP {
            h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        } else {
            h.extend_from_slice(&16u16.to_be_bytes());
            h.extend_from_slice(&[0, 0]);
        }
        h.extend_from_slice(b"netnat!!");
        h
    }

    pub fn l4(proto: u8, src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
        ipv4(proto, src, dst, 0, &ports(proto, sport, dport))
    }

    pub fn echo(src: [u8; 4], dst: [u8; 4], kind: u8, id: u16) -> Vec<u8> {
        let mut m = vec![kind, 0, 0, 0];
        m.extend_from_slice(&id.to_be_bytes());
        m.extend_from_slice(&[0, 1]);
        m.extend_from_slice(b"ping");
        ipv4(ICMP, src, dst, 0, &m)
    }

    /// An ICMP error (`kind`: 3 unreachable, 11 time exceeded) quoting `quoted`'s header and
    /// first 8 bytes.
    pub fn icmp_error(src: [u8; 4], dst: [u8; 4], kind: u8, quoted: &[u8]) -> Vec<u8> {
        let mut m = vec![kind, if kind == 3 { 3 } else { 0 }, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&quoted[..28]);
        ipv4(ICMP, src, dst, 0, &m)
    }

    pub fn net_in(interface: u32) -> SeenAt {
        SeenAt { forward: false, outbound: false, interface }
    }
    pub fn net_out(interface: u32) -> SeenAt {
        SeenAt { forward: false, outbound: true, interface }
    }
    pub fn fwd(interface: u32) -> SeenAt {
        SeenAt { forward: true, outbound: false, interface }
    }

    /// Asserts that WinDivert compiles `filter` and diverts exactly the `(what, packet, at,
    /// diverted)` cases marked so.
    pub fn check(filter: &str, forward: bool, cases: &[(&str, Vec<u8>, SeenAt, bool)]) {
        compile_filter(filter, forward).unwrap_or_else(|e| panic!("{e}\nfilter: {filter}"));
        let mut wrong = Vec::new();
        for (what, packet, at, diverted) in cases {
            assert_eq!(at.forward, forward, "{what}: a case for the other layer");
            let got = filter_matches(filter, packet, *at).unwrap_or_else(|e| panic!("{what}: {e}\nfilter: {filter}"));
            if got != *diverted {
                wrong.push(format!("{what}: WinDivert {} it", if got { "diverts" } else { "does not divert" }));
            }
        }
        assert!(wrong.is_empty(), "{}\nfilter: {filter}", wrong.join("\n"));
    }

    fn article_spec(interface: Option<u32>) -> NatFilterSpec {
        NatFilterSpec {
            internal_network: Ipv4Addr::new(10, 100, 0, 0),
            internal_prefix_len: 16,
            internal_interface: interface,
            external: vec![
                ExternalAddress { address: EXT.into(), port_start: 1024, port_end: 49151 },
                ExternalAddress { address: EXT2.into(), port_start: 1024, port_end: 65535 },
            ],
            static_ports: vec![
                StaticPort { protocol: Protocol::Tcp, address: Ipv4Addr::UNSPECIFIED, port: 80 },
                StaticPort { protocol: Protocol::Udp, address: EXT.into(), port: 53 },
            ],
        }
    }

    /// Packets and whether the network-layer filter of [`article_spec`] diverts them
    /// (internal interface 7 when `with_interface`).
    fn network_cases(with_interface: bool) -> Vec<(&'static str, Vec<u8>, SeenAt, bool)> {
        let translated_out = l4(UDP, EXT, 40000, REMOTE, 53);
        let from_remote = l4(UDP, REMOTE, 53, VM, 5353);
        let mut cases = vec![
            // Outbound half: VM packets, inbound on the internal adapter (7).
            ("vm tcp to a remote", l4(TCP, VM, 40000, REMOTE, 443), net_in(7), true),
            ("vm udp to a remote", l4(UDP, VM, 5353, REMOTE, 53), net_in(7), true),
            ("vm echo request", echo(VM, REMOTE, 8, 77), net_in(7), true),
            ("hairpin: vm to the external address", l4(TCP, VM, 40000, EXT, 80), net_in(7), true),
            ("hairpin: vm to another external address", l4(UDP, VM, 5353, EXT2, 40001), net_in(7), true),
            ("vm icmp error about a remote's packet", icmp_error(VM, REMOTE, 3, &from_remote), net_in(7), true),
            ("vm non-first fragment", ipv4(UDP, VM, REMOTE, 185, &[0; 16]), net_in(7), true),
            ("vm to vm", l4(TCP, VM, 40000, VM2, 22), net_in(7), false),
            ("vm to the gateway (inside the prefix)", l4(UDP, VM, 5353, GATEWAY, 53), net_in(7), false),
            ("an internal source sent by the host (outbound)", l4(TCP, VM, 40000, REMOTE, 443), net_out(3), false),
            // Inbound half: to an external address, inbound on any adapter.
            ("reply tcp to a dynamic port", l4(TCP, REMOTE, 443, EXT, 40000), net_in(3), true),
            ("reply udp to a dynamic port", l4(UDP, REMOTE, 53, EXT, 40000), net_in(3), true),
            ("reply to the range's first port", l4(UDP, REMOTE, 53, EXT, 1024), net_in(3), true),
            ("reply to the range's last port", l4(TCP, REMOTE, 443, EXT, 49151), net_in(3), true),
            ("host's own ephemeral port above the range", l4(TCP, REMOTE, 443, EXT, 50000), net_in(3), false),
            ("a port below the range", l4(TCP, REMOTE, 443, EXT, 1023), net_in(3), false),
            ("second address, its whole range", l4(TCP, REMOTE, 443, EXT2, 65535), net_in(3), true),
            ("static tcp 80 (any external address)", l4(TCP, REMOTE, 50001, EXT, 80), net_in(3), true),
            ("static tcp 80 on the second address", l4(TCP, REMOTE, 50001, EXT2, 80), net_in(3), true),
            ("static udp 53 (first address only)", l4(UDP, REMOTE, 50001, EXT, 53), net_in(3), true),
            ("udp 53 on the second address (not mapped)", l4(UDP, REMOTE, 50001, EXT2, 53), net_in(3), false),
            ("tcp 53 (the mapping is udp)", l4(TCP, REMOTE, 50001, EXT, 53), net_in(3), false),
            ("echo reply", echo(REMOTE, EXT, 0, 4000), net_in(3), true),
            ("unreachable quoting a translated packet", icmp_error(ROUTER, EXT, 3, &translated_out), net_in(3), true),
            (
                "time exceeded quoting a translated packet",
                icmp_error(ROUTER, EXT, 11, &translated_out),
                net_in(3),
                true,
            ),
            ("non-first fragment to the external address", ipv4(UDP, REMOTE, EXT, 185, &[0; 16]), net_in(3), true),
            (
                "first fragment to a dynamic port",
                ipv4(UDP, REMOTE, EXT, 0x2000, &ports(UDP, 53, 40000)),
                net_in(3),
                true,
            ),
            ("last fragment (MF clear, offset > 0)", ipv4(TCP, REMOTE, EXT, 370, &[0; 16]), net_in(3), true),
            (
                "first fragment to a host port outside the range (the whole datagram goes to netnat)",
                ipv4(UDP, REMOTE, EXT, 0x2000, &ports(UDP, 53, 500)),
                net_in(3),
                true,
            ),
            // The host's own traffic is not the NAT's business.
            ("host connection out", l4(TCP, EXT, 50000, REMOTE, 443), net_out(3), false),
            ("host to itself, outbound", l4(TCP, EXT, 50000, EXT, 40000), net_out(1), false),
            ("host's other address", l4(TCP, REMOTE, 443, OTHER_HOST_ADDR, 40000), net_in(3), false),
            ("remote to remote", l4(UDP, REMOTE, 53, ROUTER, 40000), net_in(3), false),
        ];
        if with_interface {
            cases.push(("vm source arriving on another adapter", l4(TCP, VM, 40000, REMOTE, 443), net_in(3), false));
        } else {
            cases.push(("vm source on any adapter", l4(TCP, VM, 40000, REMOTE, 443), net_in(3), true));
        }
        cases
    }

    #[test]
    fn the_network_filter_diverts_exactly_what_the_nat_translates() {
        check(&nat_filter(&article_spec(Some(7))).unwrap(), false, &network_cases(true));
        check(&nat_filter(&article_spec(None)).unwrap(), false, &network_cases(false));
    }

    #[test]
    fn the_forward_filter_diverts_exactly_the_outbound_half() {
        let reply = l4(UDP, REMOTE, 53, VM, 5353);
        let cases = |interface: Option<u32>| {
            vec![
                ("vm tcp to a remote", l4(TCP, VM, 40000, REMOTE, 443), fwd(7), true),
                ("vm echo request", echo(VM, REMOTE, 8, 77), fwd(7), true),
                ("vm icmp error", icmp_error(VM, REMOTE, 3, &reply), fwd(7), true),
                ("vm non-first fragment", ipv4(UDP, VM, REMOTE, 185, &[0; 16]), fwd(7), true),
                ("vm to the external address", l4(TCP, VM, 40000, EXT, 80), fwd(7), true),
                ("vm to vm", l4(TCP, VM, 40000, VM2, 22), fwd(7), false),
                ("routed towards the vm", reply.clone(), fwd(3), false),
                ("remote to remote", l4(UDP, REMOTE, 53, ROUTER, 40000), fwd(3), false),
                ("vm source on another adapter", l4(TCP, VM, 40000, REMOTE, 443), fwd(3), interface.is_none()),
            ]
        };
        check(&forward_filter(&[article_spec(Some(7))]).unwrap(), true, &cases(Some(7)));
        check(&forward_filter(&[article_spec(None)]).unwrap(), true, &cases(None));
        check(&forward_filter(&[]).unwrap(), true, &[("nothing", l4(TCP, VM, 1, REMOTE, 2), fwd(7), false)]);
    }

    #[test]
    fn no_nat_diverts_nothing_and_a_nat_without_addresses_only_its_outbound_half() {
        check(&nats_filter(&[]).unwrap(), false, &[("vm packet", l4(TCP, VM, 1, REMOTE, 2), net_in(7), false)]);
        let mut bare = article_spec(None);
        bare.external.clear();
        bare.static_ports.clear();
        check(
            &nats_filter(&[bare]).unwrap(),
            false,
            &[
                ("vm packet", l4(TCP, VM, 40000, REMOTE, 443), net_in(7), true),
                ("reply to a former address", l4(TCP, REMOTE, 443, EXT, 40000), net_in(3), false),
            ],
        );
    }

    #[test]
    fn several_nats_and_many_static_mappings_still_compile_and_divert_right() {
        // Up to MAX_STATIC_TERMS static ports outside the range are listed one by one, on
        // each of two external addresses; one more folds them into all TCP/UDP.
        for count in [MAX_STATIC_TERMS, MAX_STATIC_TERMS + 1] {
            let mut spec = article_spec(Some(7));
            spec.static_ports = (0..count as u16)
                .map(|i| StaticPort { protocol: Protocol::Tcp, address: Ipv4Addr::UNSPECIFIED, port: 100 + i })
                .collect();
            let f = nat_filter(&spec).unwrap();
            let last = 100 + count as u16 - 1;
            check(
                &f,
                false,
                &[
                    ("first static port", l4(TCP, REMOTE, 50001, EXT, 100), net_in(3), true),
                    ("last static port", l4(TCP, REMOTE, 50001, EXT2, last), net_in(3), true),
                    ("udp 53 on the first address", l4(UDP, REMOTE, 5, EXT, 53), net_in(3), count > MAX_STATIC_TERMS),
                    (
                        "host port above the range",
                        l4(TCP, REMOTE, 443, EXT, 50000),
                        net_in(3),
                        count > MAX_STATIC_TERMS,
                    ),
                    ("vm packet", l4(TCP, VM, 40000, REMOTE, 443), net_in(7), true),
                ],
            );
        }
        // Eight NATs (10.100.0.0/19 .. 10.100.224.0/19), one external address each.
        let specs: Vec<NatFilterSpec> = (0..8u8)
            .map(|i| NatFilterSpec {
                internal_network: Ipv4Addr::new(10, 100, i * 32, 0),
                internal_prefix_len: 19,
                internal_interface: Some(10 + u32::from(i)),
                external: vec![ExternalAddress {
                    address: Ipv4Addr::new(203, 0, 113, 1 + i),
                    port_start: 1024,
                    port_end: 49151,
                }],
                static_ports: vec![StaticPort { protocol: Protocol::Tcp, address: Ipv4Addr::UNSPECIFIED, port: 80 }],
            })
            .collect();
        let f = nats_filter(&specs).unwrap();
        check(
            &f,
            false,
            &[
                ("nat 0's vm", l4(TCP, [10, 100, 10, 11], 40000, REMOTE, 443), net_in(10), true),
                ("nat 7's vm", l4(TCP, [10, 100, 230, 11], 40000, REMOTE, 443), net_in(17), true),
                ("nat 7's vm on nat 0's adapter", l4(TCP, [10, 100, 230, 11], 40000, REMOTE, 443), net_in(10), false),
                (
                    "nat 0's vm to nat 7's vm",
                    l4(TCP, [10, 100, 10, 11], 40000, [10, 100, 230, 11], 22),
                    net_in(10),
                    true,
                ),
                ("reply to nat 7", l4(UDP, REMOTE, 53, [203, 0, 113, 8], 40000), net_in(3), true),
                ("static port on nat 4", l4(TCP, REMOTE, 50001, [203, 0, 113, 5], 80), net_in(3), true),
                ("not a nat address", l4(UDP, REMOTE, 53, [203, 0, 113, 9], 40000), net_in(3), false),
            ],
        );
        check(
            &forward_filter(&specs).unwrap(),
            true,
            &[("nat 3's vm", l4(UDP, [10, 100, 100, 1], 5, REMOTE, 53), fwd(13), true)],
        );
    }
}
