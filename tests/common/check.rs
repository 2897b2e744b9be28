//! Independent checksum validation of every packet the NAT writes, with etherparse (no code
//! shared with the builder in `packet.rs` nor with the engine).
//!
//! Checked: the IPv4 header checksum; the UDP (unless zero), TCP or ICMP checksum of every
//! unfragmented packet; for fragments, the L4 checksum of the reassembled datagram once every
//! fragment of it is in the output; for ICMP errors, the embedded IPv4 header checksum and,
//! when the embedded packet is complete, its L4 checksum.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use etherparse::{Icmpv4Slice, Ipv4HeaderSlice, TcpHeaderSlice, UdpHeaderSlice};

use super::packet::{PROTO_ICMP, PROTO_TCP, PROTO_UDP};

/// Checks the IPv4 header checksum and returns (header len, total len).
fn check_ip_header<'a>(p: &'a [u8], what: &str) -> Result<Ipv4HeaderSlice<'a>, String> {
    let h = Ipv4HeaderSlice::from_slice(p).map_err(|e| format!("{what}: IPv4 header does not parse: {e}"))?;
    let want = h.to_header().calc_header_checksum();
    if h.header_checksum() != want {
        return Err(format!(
            "{what}: bad IPv4 header checksum {:#06x}, recomputed {want:#06x} ({} -> {})",
            h.header_checksum(),
            h.source_addr(),
            h.destination_addr()
        ));
    }
    Ok(h)
}

/// Checks the L4 checksum of a complete (reassembled or unfragmented) L4 message.
fn check_l4(proto: u8, src: Ipv4Addr, dst: Ipv4Addr, l4: &[u8], what: &str, depth: u32) -> Result<(), String> {
    match proto {
        PROTO_UDP => {
            let u = UdpHeaderSlice::from_slice(l4).map_err(|e| format!("{what}: UDP header does not parse: {e}"))?;
            if usize::from(u.length()) != l4.len() {
                return Err(format!("{what}: UDP length {} but {} bytes of UDP", u.length(), l4.len()));
            }
            if u.checksum() == 0 {
                return Ok(()); // "no checksum"; the NAT must leave it zero (checked by tests).
            }
            let want = u
                .to_header()
                .calc_checksum_ipv4_raw(src.octets(), dst.octets(), &l4[8..])
                .map_err(|e| format!("{what}: {e}"))?;
            if u.checksum() != want {
                return Err(format!(
                    "{what}: bad UDP checksum {:#06x}, recomputed {want:#06x} ({src}:{} -> {dst}:{})",
                    u.checksum(),
                    u.source_port(),
                    u.destination_port()
                ));
            }
        }
        PROTO_TCP => {
            let t = TcpHeaderSlice::from_slice(l4).map_err(|e| format!("{what}: TCP header does not parse: {e}"))?;
            let payload = &l4[t.slice().len()..];
            let want = t
                .to_header()
                .calc_checksum_ipv4_raw(src.octets(), dst.octets(), payload)
                .map_err(|e| format!("{what}: {e}"))?;
            if t.checksum() != want {
                return Err(format!(
                    "{what}: bad TCP checksum {:#06x}, recomputed {want:#06x} ({src}:{} -> {dst}:{})",
                    t.checksum(),
                    t.source_port(),
                    t.destination_port()
                ));
            }
        }
        PROTO_ICMP => {
            let s = Icmpv4Slice::from_slice(l4).map_err(|e| format!("{what}: ICMP header does not parse: {e}"))?;
            let want = s.icmp_type().calc_checksum(s.payload());
            if s.checksum() != want {
                return Err(format!(
                    "{what}: bad ICMP checksum {:#06x}, recomputed {want:#06x} (type {} code {}, {src} -> {dst})",
                    s.checksum(),
                    s.type_u8(),
                    s.code_u8()
                ));
            }
            if matches!(s.type_u8(), 3 | 4 | 5 | 11 | 12) && depth == 0 {
                check_embedded(&l4[8..], &format!("{what}: embedded packet"))?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The packet inside an ICMP error: its header checksum always; its L4 checksum when the
/// packet is complete and unfragmented (a truncated one cannot be verified here; tests that
/// truncate compare the field with the expected value instead).
fn check_embedded(p: &[u8], what: &str) -> Result<(), String> {
    let h = check_ip_header(p, what)?;
    let total = usize::from(h.total_len());
    let ihl = h.slice().len();
    if total > p.len() || total < ihl || h.is_fragmenting_payload() {
        return Ok(());
    }
    check_l4(h.protocol().0, h.source_addr(), h.destination_addr(), &p[ihl..total], what, 1)
}

/// Validates one unfragmented packet; fragments are returned for reassembly.
fn check_one(p: &[u8], what: &str) -> Result<Option<FragKeyed>, String> {
    let h = check_ip_header(p, what)?;
    let total = usize::from(h.total_len());
    let ihl = h.slice().len();
    if total != p.len() {
        return Err(format!("{what}: IPv4 total length {total} but the packet has {} bytes", p.len()));
    }
    let payload = &p[ihl..total];
    if h.is_fragmenting_payload() {
        let key = (h.source_addr(), h.destination_addr(), h.identification(), h.protocol().0);
        let offset = usize::from(h.fragments_offset().value()) * 8;
        return Ok(Some((key, offset, h.more_fragments(), payload.to_vec())));
    }
    check_l4(h.protocol().0, h.source_addr(), h.destination_addr(), payload, what, 0)?;
    Ok(None)
}

type FragKey = (Ipv4Addr, Ipv4Addr, u16, u8);
type FragKeyed = (FragKey, usize, bool, Vec<u8>);

/// Validates every packet of an output; returns the list of problems (empty when all good).
pub fn checksum_problems<'a>(packets: impl IntoIterator<Item = (String, &'a [u8])>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut frags: BTreeMap<FragKey, Vec<(usize, bool, Vec<u8>)>> = BTreeMap::new();
    for (what, p) in packets {
        match check_one(p, &what) {
            Ok(None) => {}
            Ok(Some((key, off, mf, data))) => frags.entry(key).or_default().push((off, mf, data)),
            Err(e) => problems.push(e),
        }
    }
    for ((src, dst, id, proto), mut parts) in frags {
        parts.sort_by_key(|(off, _, _)| *off);
        let mut whole = Vec::new();
        let mut complete = parts.last().is_some_and(|(_, mf, _)| !mf);
        for (off, _, data) in &parts {
            if *off != whole.len() {
                complete = false;
                break;
            }
            whole.extend_from_slice(data);
        }
        if complete {
            let what = format!("reassembled datagram {src} -> {dst} id {id:#06x}");
            if let Err(e) = check_l4(proto, src, dst, &whole, &what, 0) {
                problems.push(e);
            }
        }
    }
    problems
}
