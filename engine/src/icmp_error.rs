//! ICMP error translation (RFC 5508 §4.2, REQ-3 to REQ-6). An error embeds (the start of) the
//! packet that caused it; the NAT finds the session of that packet without refreshing it,
//! reverts the embedded packet's translated endpoint, points the outer header at the right
//! host and fixes every checksum: embedded IP header and transport (incrementally), ICMP
//! (recomputed after it was verified) and outer IP header (incrementally).

use crate::config::Protocol;
use crate::endpoint::{Inside, Outside, Remote};
use crate::nat::Nat;
use crate::rewrite::{rewrite_endpoint, Side};
use crate::settings::Settings;
use crate::time::Instant;
use crate::verdict::DropReason;
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::{icmp, udp};

/// The embedded packet's protocol and endpoints: (protocol, source, destination).
type Embedded = (Protocol, (u32, u16), (u32, u16));

/// Parses the packet embedded in the ICMP error `msg` (laxly: it is truncated by design).
fn embedded(msg: &[u8]) -> Result<Embedded, DropReason> {
    let inner = msg.get(icmp::HEADER_LEN..).ok_or(DropReason::Truncated)?;
    let ip = Ipv4Packet::new_checked(inner, false).map_err(|_| DropReason::BadEmbeddedPacket)?;
    if !ip.verify_checksum() {
        return Err(DropReason::BadEmbeddedPacket);
    }
    if ip.frag_offset() != 0 {
        // No ports to find the session by.
        return Err(DropReason::IcmpErrorNoSession);
    }
    let proto = Protocol::from_number(ip.protocol()).ok_or(DropReason::IcmpErrorNoSession)?;
    let seg = ip.payload();
    if seg.len() < udp::HEADER_LEN {
        return Err(DropReason::BadEmbeddedPacket);
    }
    let (src, dst) = (ip.src(), ip.dst());
    Ok(match proto {
        Protocol::Icmp => {
            let id = icmp::ident(seg);
            match icmp::msg_type(seg) {
                icmp::ECHO_REQUEST => (proto, (src, id), (dst, 0)),
                icmp::ECHO_REPLY => (proto, (src, 0), (dst, id)),
                _ => return Err(DropReason::IcmpErrorNoSession),
            }
        }
        _ => (proto, (src, u16::from_be_bytes([seg[0], seg[1]])), (dst, u16::from_be_bytes([seg[2], seg[3]]))),
    })
}

impl Nat {
    /// Translates an ICMP error in `packet` (IPv4 header of `ihl` bytes, then ICMP). Inbound:
    /// it embeds a packet we sent out; outbound: an internal host's error about a packet it got
    /// through us.
    pub(crate) fn translate_icmp_error(
        &self,
        s: &Settings,
        now: Instant,
        packet: &mut [u8],
        ihl: usize,
        inbound: bool,
    ) -> Result<(), DropReason> {
        let msg = &packet[ihl..];
        if msg.len() < icmp::HEADER_LEN {
            return Err(DropReason::Truncated);
        }
        if !icmp::verify_checksum(msg) {
            return Err(DropReason::BadIcmpChecksum);
        }
        let (proto, src, dst) = embedded(msg)?;
        let inner_start = ihl + icmp::HEADER_LEN;
        if inbound {
            // The embedded packet went out through us: its source is our external endpoint.
            if !s.is_external(src.0) {
                return Err(DropReason::IcmpErrorNoSession);
            }
            let (external, remote) = (Outside(src.0, src.1), Remote(dst.0, dst.1));
            let internal = self
                .session_for_inbound_error(s, now, proto, external, remote)
                .ok_or(DropReason::IcmpErrorNoSession)?;
            rewrite_endpoint(&mut packet[inner_start..], proto, Side::Source, internal.0, internal.1, true);
            rewrite_endpoint(packet, proto, Side::Destination, internal.0, 0, false);
        } else {
            // The embedded packet came in through us: its destination is the internal endpoint.
            if !s.is_internal(dst.0) {
                return Err(DropReason::IcmpErrorNoSession);
            }
            let (internal, remote) = (Inside(dst.0, dst.1), Remote(src.0, src.1));
            let external = self
                .session_for_outbound_error(s, now, proto, internal, remote)
                .ok_or(DropReason::IcmpErrorNoSession)?;
            rewrite_endpoint(&mut packet[inner_start..], proto, Side::Destination, external.0, external.1, true);
            rewrite_endpoint(packet, proto, Side::Source, external.0, 0, false);
        }
        icmp::fill_checksum(&mut packet[ihl..]);
        Ok(())
    }
}
