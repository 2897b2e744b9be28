//! UDP header fields (RFC 768) over the IPv4 payload.
//!
//! Functions take the transport segment (`ipv4.payload()`); callers check
//! [`HEADER_LEN`] first, after which none of them panics.

use super::checksum;

/// UDP header length.
pub const HEADER_LEN: usize = 8;
/// Offset of the checksum field.
pub const CHECKSUM: usize = 6;

/// Source port.
pub fn src_port(seg: &[u8]) -> u16 {
    u16::from_be_bytes([seg[0], seg[1]])
}

/// Destination port.
pub fn dst_port(seg: &[u8]) -> u16 {
    u16::from_be_bytes([seg[2], seg[3]])
}

/// The length field.
pub fn length(seg: &[u8]) -> usize {
    usize::from(u16::from_be_bytes([seg[4], seg[5]]))
}

/// The checksum field (0: none was computed).
pub fn checksum_field(seg: &[u8]) -> u16 {
    u16::from_be_bytes([seg[CHECKSUM], seg[CHECKSUM + 1]])
}

/// Applies `f` to the checksum unless it is zero ("no checksum" stays so, RFC 768); a
/// computed zero is sent as 0xffff.
pub fn update_checksum(seg: &mut [u8], f: impl FnOnce(u16) -> u16) {
    let c = checksum_field(seg);
    if c == 0 {
        return;
    }
    let mut n = f(c);
    if n == 0 {
        n = 0xffff;
    }
    seg[CHECKSUM..CHECKSUM + 2].copy_from_slice(&n.to_be_bytes());
}

/// The full checksum of a UDP datagram given its pseudo-header sum (for tests and verification).
pub fn compute_checksum(pseudo: u32, seg: &[u8]) -> u16 {
    let mut s = checksum::sum(pseudo, &seg[..CHECKSUM]);
    s = checksum::sum(s, &seg[CHECKSUM + 2..]);
    match checksum::finish(s) {
        0 => 0xffff,
        c => c,
    }
}
