//! Completing partial TCP/UDP checksums in user space, as the kernel's `skb_checksum_help`
//! does.
//!
//! With `NFQA_CFG_F_GSO` the kernel queues packets with `CHECKSUM_PARTIAL` as they are (the
//! message's `NFQA_SKB_INFO` says `NFQA_SKB_CSUMNOTREADY`): the L4 checksum field holds only
//! the folded, non-inverted sum of the pseudo-header (RFC 793/768, computed with the length
//! of the whole segment, also for a GSO super-packet). Completing it is the kernel's own
//! recipe: sum the L4 segment (that field included), fold, invert; a UDP result of 0 is sent
//! as 0xffff (0 means "no checksum").
//!
//! The sum is the engine's `wire::checksum::sum` (native-endian 32-bit words into four 64-bit
//! accumulators; measured in `engine/benches/checksum.rs`: 1,500 bytes in 29 ns, small
//! next to a queue crossing, so no dependency such as internet-checksum seemed worth adding).

/// IP protocol numbers whose checksum the kernel may leave partial.
pub(super) const TCP: u8 = 6;
pub(super) const UDP: u8 = 17;

/// The RFC 1071 one's-complement sum of `data` as big-endian 16-bit words, folded to 16
/// bits, not inverted: the engine's (one implementation, measured there).
pub(super) fn ones_sum(data: &[u8]) -> u16 {
    netnat_engine::wire::checksum::sum(0, data) as u16
}

/// Why a partial checksum could not be completed; the packet is left as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotCompleted {
    /// Not an IPv4 TCP or UDP packet, or a fragment: the kernel only offloads whole TCP/UDP.
    Protocol,
    /// The headers do not fit the packet.
    Truncated,
}

/// Where the TCP/UDP checksum field of the IPv4 packet `ip` is: (L4 start, field offset in
/// the L4 header, L4 end).
fn l4_checksum_field(ip: &[u8]) -> Result<(usize, usize, usize), NotCompleted> {
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return Err(NotCompleted::Protocol);
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    // More fragments, or a fragment offset: not a whole segment.
    if u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
        return Err(NotCompleted::Protocol);
    }
    let field = match ip[9] {
        TCP => 16,
        UDP => 6,
        _ => return Err(NotCompleted::Protocol),
    };
    if ihl < 20 || total < ihl + field + 2 || total > ip.len() {
        return Err(NotCompleted::Truncated);
    }
    Ok((ihl, field, total))
}

/// Completes the partial TCP or UDP checksum of the IPv4 packet `ip` in place.
pub fn complete_partial(ip: &mut [u8]) -> Result<(), NotCompleted> {
    let (ihl, field, total) = l4_checksum_field(ip)?;
    let segment = &mut ip[ihl..total];
    let check = !ones_sum(segment);
    let check = if check == 0 && field == 6 { 0xffff } else { check };
    segment[field..field + 2].copy_from_slice(&check.to_be_bytes());
    Ok(())
}

/// Puts the partial form back in the TCP or UDP checksum field of `ip`: the folded,
/// non-inverted pseudo-header sum of its current headers (`udp4_hwcsum`'s `~csum_tcpudp_magic`).
/// The kernel's UDP segmentation (`__udp_gso_segment`) derives each segment's checksum from
/// that field as if it held this, whatever the packet's checksum state, so a UDP GSO packet
/// must carry it in its verdict (see the module doc of `super`).
pub fn restore_partial(ip: &mut [u8]) -> Result<(), NotCompleted> {
    let (ihl, field, total) = l4_checksum_field(ip)?;
    // Protocol and L4 length (at most 0xffff + 0xff) start the sum; the addresses are added.
    let length_and_protocol = u32::from(ip[9]) + (total - ihl) as u32;
    let partial = netnat_engine::wire::checksum::sum(length_and_protocol, &ip[12..20]) as u16;
    ip[ihl + field..ihl + field + 2].copy_from_slice(&partial.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The textbook fold, as the reference (the code under test uses the engine's).
    fn fold(mut acc: u64) -> u16 {
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    /// The textbook loop, as the reference.
    fn reference_sum(data: &[u8]) -> u16 {
        let mut acc: u64 = 0;
        for c in data.chunks(2) {
            acc += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
        fold(acc)
    }

    fn pseudo_sum(ip: &[u8]) -> u64 {
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let l4_len = u16::from_be_bytes([ip[2], ip[3]]) as usize - ihl;
        let mut acc = u64::from(reference_sum(&ip[12..20]));
        acc += u64::from(ip[9]);
        acc + l4_len as u64
    }

    /// IPv4 + L4 header + payload, with the L4 checksum field set as a CHECKSUM_PARTIAL
    /// packet has it: the folded pseudo-header sum.
    fn partial_packet(protocol: u8, payload: &[u8]) -> Vec<u8> {
        let l4_header = if protocol == TCP { 20 } else { 8 };
        let total = 20 + l4_header + payload.len();
        let mut ip = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, protocol, 0, 0, 10, 100, 10, 11, 203, 0, 113, 10];
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        let mut l4 = vec![0u8; l4_header];
        l4[0..4].copy_from_slice(&[0x9c, 0x40, 0x00, 0x50]);
        if protocol == TCP {
            l4[12] = 0x50;
        } else {
            l4[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        }
        ip.extend_from_slice(&l4);
        ip.extend_from_slice(payload);
        let field = 20 + if protocol == TCP { 16 } else { 6 };
        let partial = fold(pseudo_sum(&ip));
        ip[field..field + 2].copy_from_slice(&partial.to_be_bytes());
        ip
    }

    /// Whether the L4 checksum of `ip` verifies (the receiver's check).
    fn verifies(ip: &[u8]) -> bool {
        let mut acc = pseudo_sum(ip);
        acc += u64::from(reference_sum(&ip[20..]));
        fold(acc) == 0xffff
    }

    #[test]
    fn completed_tcp_and_udp_checksums_verify() {
        for protocol in [TCP, UDP] {
            for len in [0, 1, 2, 7, 1448, 65_000] {
                let payload: Vec<u8> = (0..len).map(|i| (i * 31 % 256) as u8).collect();
                let mut ip = partial_packet(protocol, &payload);
                complete_partial(&mut ip).unwrap();
                assert!(verifies(&ip), "protocol {protocol}, {len} bytes");
            }
        }
    }

    #[test]
    fn a_udp_checksum_that_comes_out_zero_is_sent_as_ffff() {
        // With payload 0000 0000 the checksum is c = !S; payload c 0000 sums to S + !S =
        // 0xffff, whose checksum is 0.
        let mut ip = partial_packet(UDP, &[0, 0, 0, 0]);
        complete_partial(&mut ip).unwrap();
        let c = u16::from_be_bytes([ip[26], ip[27]]);
        let payload = [c.to_be_bytes()[0], c.to_be_bytes()[1], 0, 0];
        let mut fixed = partial_packet(UDP, &payload);
        complete_partial(&mut fixed).unwrap();
        assert_eq!(&fixed[26..28], &[0xff, 0xff]);
        assert!(verifies(&fixed));
    }

    #[test]
    fn restore_partial_undoes_completion() {
        for protocol in [TCP, UDP] {
            let partial = partial_packet(protocol, &[9; 333]);
            let mut ip = partial.clone();
            complete_partial(&mut ip).unwrap();
            assert_ne!(ip, partial);
            restore_partial(&mut ip).unwrap();
            assert_eq!(ip, partial, "protocol {protocol}");
        }
    }

    #[test]
    fn other_protocols_fragments_and_truncated_packets_are_left_alone() {
        let mut icmp = partial_packet(UDP, &[1, 2, 3]);
        icmp[9] = 1;
        let before = icmp.clone();
        assert_eq!(complete_partial(&mut icmp), Err(NotCompleted::Protocol));
        assert_eq!(icmp, before);
        let mut fragment = partial_packet(TCP, &[1, 2, 3]);
        fragment[6] = 0x20; // more fragments
        assert_eq!(complete_partial(&mut fragment), Err(NotCompleted::Protocol));
        let mut short = partial_packet(TCP, &[]);
        short.truncate(30);
        assert_eq!(complete_partial(&mut short), Err(NotCompleted::Truncated));
        assert_eq!(complete_partial(&mut [0x45, 0, 0]), Err(NotCompleted::Protocol));
    }

    proptest! {
        #[test]
        fn completion_verifies_for_any_payload(protocol in prop_oneof![Just(TCP), Just(UDP)],
                                               payload in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut ip = partial_packet(protocol, &payload);
            complete_partial(&mut ip).unwrap();
            prop_assert!(verifies(&ip));
        }
    }
}
