//! In-place rewrites of a packet's source or destination endpoint, every checksum updated
//! incrementally (RFC 1624): the IPv4 header checksum for the address, the TCP/UDP checksum
//! for the address (pseudo-header) and the port, the ICMP checksum for the identifier.

use crate::config::Protocol;
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::{checksum, icmp, tcp, udp};

/// Which endpoint of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Source,
    Destination,
}

/// Rewrites one endpoint of `packet` (an IPv4 packet whose transport header, if `with_l4`, is
/// known to be complete up to the fields touched; callers check). For ICMP the "port" is the
/// query identifier, which both sides share.
pub(crate) fn rewrite_endpoint(packet: &mut [u8], proto: Protocol, side: Side, addr: u32, port: u16, with_l4: bool) {
    let Ok(ip) = Ipv4Packet::new_checked(&*packet, false) else { return };
    let (ihl, end) = (ip.header_len(), ip.total_len().min(packet.len()));
    let packet = &mut packet[..end];
    set_addr(packet, side, addr, with_l4.then_some(proto).map(|p| (p, ihl, port)));
}

/// The same for a packet the caller has checked: `packet` ends at its total length, `ihl`
/// is its header length, the transport header is complete. The packet path's rewrite.
#[inline(always)]
pub(crate) fn rewrite_checked(packet: &mut [u8], ihl: usize, proto: Protocol, side: Side, addr: u32, port: u16) {
    set_addr(packet, side, addr, Some((proto, ihl, port)));
}

/// Writes the address and the IPv4 header checksum, then (with `l4`: protocol, header
/// length, port) the port or identifier and the transport checksum. The address's change is
/// summed once for both checksums (the TCP/UDP pseudo-header holds it too).
#[inline(always)]
fn set_addr(packet: &mut [u8], side: Side, addr: u32, l4: Option<(Protocol, usize, u16)>) {
    let Some((hdr, _)) = packet.split_first_chunk_mut::<20>() else { return };
    let at = if side == Side::Source { 12 } else { 16 };
    let old_addr = u32::from_be_bytes([hdr[at], hdr[at + 1], hdr[at + 2], hdr[at + 3]]);
    hdr[at..at + 4].copy_from_slice(&addr.to_be_bytes());
    let delta = checksum::delta32(old_addr, addr);
    let ip_check = u16::from_be_bytes([hdr[10], hdr[11]]);
    hdr[10..12].copy_from_slice(&checksum::apply(ip_check, delta).to_be_bytes());
    let Some((proto, ihl, port)) = l4 else { return };
    let Some(seg) = packet.get_mut(ihl..) else { return };
    let port_at = if side == Side::Source { 0 } else { 2 };
    match proto {
        Protocol::Tcp => {
            if let Some((th, _)) = seg.split_first_chunk_mut::<{ tcp::CHECKSUM + 2 }>() {
                let old_port = u16::from_be_bytes([th[port_at], th[port_at + 1]]);
                th[port_at..port_at + 2].copy_from_slice(&port.to_be_bytes());
                let c = u16::from_be_bytes([th[tcp::CHECKSUM], th[tcp::CHECKSUM + 1]]);
                let c = checksum::apply(c, delta + checksum::delta16(old_port, port));
                th[tcp::CHECKSUM..].copy_from_slice(&c.to_be_bytes());
                return;
            }
        }
        Protocol::Udp => {
            if let Some((uh, _)) = seg.split_first_chunk_mut::<{ udp::HEADER_LEN }>() {
                let old_port = u16::from_be_bytes([uh[port_at], uh[port_at + 1]]);
                uh[port_at..port_at + 2].copy_from_slice(&port.to_be_bytes());
                let c = u16::from_be_bytes([uh[udp::CHECKSUM], uh[udp::CHECKSUM + 1]]);
                // Zero: no checksum (RFC 768), stays so; a computed zero is sent as 0xffff.
                if c != 0 {
                    let c = match checksum::apply(c, delta + checksum::delta16(old_port, port)) {
                        0 => 0xffff,
                        c => c,
                    };
                    uh[udp::CHECKSUM..].copy_from_slice(&c.to_be_bytes());
                }
                return;
            }
        }
        Protocol::Icmp => {
            if seg.len() >= icmp::HEADER_LEN {
                icmp::set_ident(seg, port);
            }
            return;
        }
    }
    // A truncated embedded transport header: the address is rewritten, the rest was not
    // quoted by the ICMP error's sender.
    if seg.len() >= port_at + 2 {
        seg[port_at..port_at + 2].copy_from_slice(&port.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn udp_packet(src: u32, dst: u32, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let b = etherparse::PacketBuilder::ipv4(src.to_be_bytes(), dst.to_be_bytes(), 64).udp(sport, dport);
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    fn tcp_packet(src: u32, dst: u32, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let b =
            etherparse::PacketBuilder::ipv4(src.to_be_bytes(), dst.to_be_bytes(), 64).tcp(sport, dport, 7, 1024).ack(9);
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    /// Recomputes every checksum of `packet` with etherparse and compares with what is there.
    fn checksums_valid(packet: &[u8]) -> bool {
        let Ok(s) = etherparse::SlicedPacket::from_ip(packet) else { return false };
        let Some(etherparse::NetSlice::Ipv4(ip)) = s.net else { return false };
        let h = ip.header().to_header();
        if h.calc_header_checksum() != h.header_checksum {
            return false;
        }
        match s.transport {
            Some(etherparse::TransportSlice::Udp(u)) => {
                let hdr = u.to_header();
                hdr.checksum == 0 || hdr.calc_checksum_ipv4(&h, u.payload()).unwrap() == hdr.checksum
            }
            Some(etherparse::TransportSlice::Tcp(t)) => {
                t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap() == t.checksum()
            }
            Some(etherparse::TransportSlice::Icmpv4(i)) => {
                let full = i.slice();
                checksum::checksum(full) == 0
            }
            _ => false,
        }
    }

    proptest! {
        #[test]
        fn incremental_l4_rewrite_equals_full_recompute(
            src: u32, dst: u32, sport: u16, dport: u16, new_addr: u32, new_port: u16,
            payload in proptest::collection::vec(any::<u8>(), 0..64), tcp_not_udp: bool, src_side: bool,
        ) {
            let mut p = if tcp_not_udp { tcp_packet(src, dst, sport, dport, &payload) } else { udp_packet(src, dst, sport, dport, &payload) };
            let proto = if tcp_not_udp { Protocol::Tcp } else { Protocol::Udp };
            let side = if src_side { Side::Source } else { Side::Destination };
            rewrite_endpoint(&mut p, proto, side, new_addr, new_port, true);
            prop_assert!(checksums_valid(&p));
            let s = etherparse::SlicedPacket::from_ip(&p).unwrap();
            let Some(etherparse::NetSlice::Ipv4(ip)) = s.net else { unreachable!() };
            let (a, port) = match (side, s.transport) {
                (Side::Source, Some(etherparse::TransportSlice::Udp(u))) => (ip.header().source(), u.source_port()),
                (Side::Destination, Some(etherparse::TransportSlice::Udp(u))) => (ip.header().destination(), u.destination_port()),
                (Side::Source, Some(etherparse::TransportSlice::Tcp(t))) => (ip.header().source(), t.source_port()),
                (Side::Destination, Some(etherparse::TransportSlice::Tcp(t))) => (ip.header().destination(), t.destination_port()),
                _ => unreachable!(),
            };
            prop_assert_eq!(a, new_addr.to_be_bytes());
            prop_assert_eq!(port, new_port);
        }

        #[test]
        fn icmp_ident_rewrite_keeps_checksum_valid(src: u32, dst: u32, id: u16, seq: u16, new_id: u16, new_addr: u32,
            payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let b = etherparse::PacketBuilder::ipv4(src.to_be_bytes(), dst.to_be_bytes(), 64).icmpv4_echo_request(id, seq);
            let mut p = Vec::new();
            b.write(&mut p, &payload).unwrap();
            rewrite_endpoint(&mut p, Protocol::Icmp, Side::Source, new_addr, new_id, true);
            prop_assert!(checksums_valid(&p));
            prop_assert_eq!(u16::from_be_bytes([p[24], p[25]]), new_id);
        }
    }

    #[test]
    fn zero_udp_checksum_stays_zero() {
        let mut p = udp_packet(0x0a64_0a0b, 0xc633_6407, 5000, 53, b"hello");
        p[26] = 0;
        p[27] = 0;
        rewrite_endpoint(&mut p, Protocol::Udp, Side::Source, 0xcb00_7101, 40000, true);
        assert_eq!(&p[26..28], &[0, 0]);
        assert_eq!(u16::from_be_bytes([p[20], p[21]]), 40000);
    }
}
