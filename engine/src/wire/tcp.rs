//! TCP header fields (RFC 793) over the IPv4 payload.
//!
//! Functions take the transport segment; callers check [`MIN_HEADER_LEN`] (or, for embedded
//! packets, the bytes they touch) first, after which none of them panics.

use super::checksum;

/// The smallest TCP header.
pub const MIN_HEADER_LEN: usize = 20;
/// Offset of the checksum field.
pub const CHECKSUM: usize = 16;

/// FIN flag.
pub const FIN: u8 = 0x01;
/// SYN flag.
pub const SYN: u8 = 0x02;
/// RST flag.
pub const RST: u8 = 0x04;
/// ACK flag.
pub const ACK: u8 = 0x10;

/// Source port.
pub fn src_port(seg: &[u8]) -> u16 {
    u16::from_be_bytes([seg[0], seg[1]])
}

/// Destination port.
pub fn dst_port(seg: &[u8]) -> u16 {
    u16::from_be_bytes([seg[2], seg[3]])
}

/// Header length from the data offset field.
pub fn header_len(seg: &[u8]) -> usize {
    usize::from(seg[12] >> 4) * 4
}

/// The flags byte (FIN, SYN, RST, PSH, ACK, URG, ECE, CWR).
pub fn flags(seg: &[u8]) -> u8 {
    seg[13]
}

/// The checksum field.
pub fn checksum_field(seg: &[u8]) -> u16 {
    u16::from_be_bytes([seg[CHECKSUM], seg[CHECKSUM + 1]])
}

/// Stores a checksum.
pub fn set_checksum(seg: &mut [u8], c: u16) {
    seg[CHECKSUM..CHECKSUM + 2].copy_from_slice(&c.to_be_bytes());
}

/// The full checksum of a TCP segment given its pseudo-header sum.
pub fn compute_checksum(pseudo: u32, seg: &[u8]) -> u16 {
    let s = checksum::sum(pseudo, &seg[..CHECKSUM]);
    checksum::finish(checksum::sum(s, &seg[CHECKSUM + 2..]))
}
