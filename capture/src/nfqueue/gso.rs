//! Software segmentation of a TCP GSO super-packet, for a caller that must send a packet
//! itself instead of handing it back with a verdict (the daemon sends hairpinned packets
//! from a raw socket, and a raw socket refuses anything longer than the route's MTU).
//!
//! NFQUEUE does not say a super-packet's segment size (`gso_size`), so the caller chooses
//! the largest packet (`max_len`, e.g. the MTU of the interface the super-packet came in
//! on). Segments follow `tcp_gso_segment`: the same headers, the sequence number advanced
//! by the payload before it, IP identification incremented per segment, FIN and PSH only on
//! the last segment and CWR only on the first, both checksums computed in full.
//!
//! UDP cannot be segmented this way: a UDP GSO super-datagram is a train of datagrams whose
//! boundaries only `gso_size` knows.

use super::csum::{ones_sum, TCP};

/// Why a packet was not segmented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotSegmented {
    /// Not a whole IPv4 TCP segment (another protocol, a fragment, bad lengths).
    NotTcp,
    /// `max_len` leaves no room for payload after the headers.
    TooSmall,
}

const FIN: u8 = 0x01;
const PSH: u8 = 0x08;
const CWR: u8 = 0x80;

/// Calls `emit` with each segment of the IPv4 TCP packet `ip`, none longer than `max_len`
/// (a packet that fits is emitted as it is); `scratch` is reused between segments. Returns
/// how many segments were emitted.
pub fn segment_tcp(
    ip: &[u8],
    max_len: usize,
    scratch: &mut Vec<u8>,
    mut emit: impl FnMut(&[u8]),
) -> Result<usize, NotSegmented> {
    if ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != TCP || u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
        return Err(NotSegmented::NotTcp);
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if ihl < 20 || total > ip.len() || total < ihl + 20 {
        return Err(NotSegmented::NotTcp);
    }
    let thl = usize::from(ip[ihl + 12] >> 4) * 4;
    let headers = ihl + thl;
    if thl < 20 || total < headers {
        return Err(NotSegmented::NotTcp);
    }
    if total <= max_len {
        emit(&ip[..total]);
        return Ok(1);
    }
    let mss = max_len.checked_sub(headers).filter(|m| *m > 0).ok_or(NotSegmented::TooSmall)?;
    let payload = &ip[headers..total];
    let id = u16::from_be_bytes([ip[4], ip[5]]);
    let seq = u32::from_be_bytes([ip[ihl + 4], ip[ihl + 5], ip[ihl + 6], ip[ihl + 7]]);
    let flags = ip[ihl + 13];
    let count = payload.len().div_ceil(mss);
    for (i, chunk) in payload.chunks(mss).enumerate() {
        scratch.clear();
        scratch.extend_from_slice(&ip[..headers]);
        scratch.extend_from_slice(chunk);
        let len = scratch.len() as u16;
        scratch[2..4].copy_from_slice(&len.to_be_bytes());
        scratch[4..6].copy_from_slice(&id.wrapping_add(i as u16).to_be_bytes());
        scratch[10..12].copy_from_slice(&[0, 0]);
        let ip_check = !ones_sum(&scratch[..ihl]);
        scratch[10..12].copy_from_slice(&ip_check.to_be_bytes());
        let tcp = &mut scratch[ihl..];
        tcp[4..8].copy_from_slice(&seq.wrapping_add((i * mss) as u32).to_be_bytes());
        let mut f = flags;
        if i + 1 < count {
            f &= !(FIN | PSH);
        }
        if i > 0 {
            f &= !CWR;
        }
        tcp[13] = f;
        tcp[16..18].copy_from_slice(&[0, 0]);
        let l4_len = tcp.len();
        let mut sum = u64::from(ones_sum(&ip[12..20])) + u64::from(TCP) + l4_len as u64;
        sum += u64::from(ones_sum(tcp));
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        tcp[16..18].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        emit(scratch);
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn verifies(ip: &[u8]) -> bool {
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let ip_ok = ones_sum(&ip[..ihl]) == 0xffff;
        let mut sum = u64::from(ones_sum(&ip[12..20])) + 6 + (ip.len() - ihl) as u64;
        sum += u64::from(ones_sum(&ip[ihl..]));
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        ip_ok && sum == 0xffff
    }

    /// A TCP super-packet with `payload`, flags `flags`, a 12-byte option block.
    fn super_packet(payload: &[u8], flags: u8) -> Vec<u8> {
        let total = 20 + 32 + payload.len();
        let mut ip = vec![0x45, 0, 0, 0, 0xff, 0xfe, 0x40, 0, 64, 6, 0, 0, 10, 100, 10, 11, 10, 100, 10, 12];
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        let mut tcp = vec![0u8; 32];
        tcp[0..4].copy_from_slice(&[0x1f, 0x90, 0xc0, 0x00]);
        tcp[4..8].copy_from_slice(&0xffff_fff0u32.to_be_bytes()); // wraps
        tcp[12] = 8 << 4;
        tcp[13] = flags;
        tcp[20..32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
        ip.extend_from_slice(&tcp);
        ip.extend_from_slice(payload);
        ip
    }

    #[test]
    fn segments_carry_the_payload_in_order_with_the_kernels_flags_ids_and_checksums() {
        let payload: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let ip = super_packet(&payload, FIN | PSH | CWR | 0x10);
        let mut segments = Vec::new();
        let n = segment_tcp(&ip, 1500, &mut Vec::new(), |s| segments.push(s.to_vec())).unwrap();
        assert_eq!(n, payload.len().div_ceil(1448));
        assert_eq!(segments.len(), n);
        let mut joined = Vec::new();
        for (i, s) in segments.iter().enumerate() {
            assert!(s.len() <= 1500);
            assert!(verifies(s), "segment {i}");
            assert_eq!(u16::from_be_bytes([s[2], s[3]]) as usize, s.len());
            assert_eq!(u16::from_be_bytes([s[4], s[5]]), 0xfffeu16.wrapping_add(i as u16));
            let seq = u32::from_be_bytes([s[24], s[25], s[26], s[27]]);
            assert_eq!(seq, 0xffff_fff0u32.wrapping_add((i * 1448) as u32));
            let flags = s[33];
            assert_eq!(flags & FIN != 0, i + 1 == n, "FIN on the last only");
            assert_eq!(flags & PSH != 0, i + 1 == n, "PSH on the last only");
            assert_eq!(flags & CWR != 0, i == 0, "CWR on the first only");
            assert_eq!(flags & 0x10, 0x10, "ACK on all");
            assert_eq!(&s[40..52], &ip[40..52], "options copied");
            joined.extend_from_slice(&s[52..]);
        }
        assert_eq!(joined, payload);
    }

    #[test]
    fn a_packet_that_fits_is_emitted_unchanged_and_others_are_refused() {
        let ip = super_packet(&[1, 2, 3], 0x18);
        let mut out = Vec::new();
        assert_eq!(segment_tcp(&ip, 1500, &mut Vec::new(), |s| out.push(s.to_vec())), Ok(1));
        assert_eq!(out, vec![ip.clone()]);
        assert_eq!(segment_tcp(&ip, 52, &mut Vec::new(), |_| {}), Err(NotSegmented::TooSmall));
        let mut udp = ip.clone();
        udp[9] = 17;
        assert_eq!(segment_tcp(&udp, 1500, &mut Vec::new(), |_| {}), Err(NotSegmented::NotTcp));
        let mut fragment = ip;
        fragment[7] = 1;
        assert_eq!(segment_tcp(&fragment, 1500, &mut Vec::new(), |_| {}), Err(NotSegmented::NotTcp));
        assert_eq!(segment_tcp(&[0x45; 30], 1500, &mut Vec::new(), |_| {}), Err(NotSegmented::NotTcp));
    }

    proptest! {
        #[test]
        fn any_payload_and_size_reassembles(len in 0usize..20_000, max_len in 53usize..9000) {
            let payload: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let ip = super_packet(&payload, 0x18);
            let mut joined = Vec::new();
            segment_tcp(&ip, max_len, &mut Vec::new(), |s| {
                assert!(s.len() <= max_len);
                // A packet that fits is emitted as it was (the fixture has no checksums).
                assert!(ip.len() <= max_len || verifies(s));
                joined.extend_from_slice(&s[52..]);
            }).unwrap();
            prop_assert_eq!(joined, payload);
        }
    }
}
