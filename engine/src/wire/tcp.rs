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

/// Sequence number.
pub fn seq(seg: &[u8]) -> u32 {
    u32::from_be_bytes([seg[4], seg[5], seg[6], seg[7]])
}

/// The window field, unscaled.
pub fn window(seg: &[u8]) -> u16 {
    u16::from_be_bytes([seg[14], seg[15]])
}

/// The largest shift the window scale option may carry (RFC 7323 §2.3: larger values are
/// used as 14).
pub const MAX_WINDOW_SHIFT: u8 = 14;

/// The shift of the window scale option (RFC 7323 §2.2, kind 3) among the options of a
/// segment whose header is `header_len` bytes (checked by the caller: 20 to `seg.len()`).
/// A malformed option list ends the search.
pub fn window_scale(seg: &[u8], header_len: usize) -> Option<u8> {
    let mut opts = seg.get(MIN_HEADER_LEN..header_len)?;
    while let [kind, rest @ ..] = opts {
        match kind {
            0 => return None,
            1 => opts = rest,
            _ => {
                let len = usize::from(*rest.first()?);
                if len < 2 || len > opts.len() {
                    return None;
                }
                if *kind == 3 {
                    return (len == 3).then(|| opts[2].min(MAX_WINDOW_SHIFT));
                }
                opts = &opts[len..];
            }
        }
    }
    None
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A 20-byte header followed by `options`, data offset set to cover them.
    fn with_options(options: &[u8]) -> Vec<u8> {
        let mut seg = vec![0u8; MIN_HEADER_LEN];
        seg.extend_from_slice(options);
        seg[12] = ((seg.len() / 4) as u8) << 4;
        seg
    }

    #[test]
    fn window_scale_is_found_among_a_linux_syns_options() {
        // MSS 1460, SACK permitted, timestamps, NOP, window scale 7 (a Linux SYN).
        let seg = with_options(&[2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7]);
        assert_eq!(window_scale(&seg, header_len(&seg)), Some(7));
        assert_eq!(window_scale(&with_options(&[3, 3, 200, 0]), 24), Some(MAX_WINDOW_SHIFT), "RFC 7323 §2.3");
        assert_eq!(window_scale(&with_options(&[2, 4, 5, 180]), 24), None);
        assert_eq!(window_scale(&with_options(&[0, 3, 3, 7]), 24), None, "after end of options");
        assert_eq!(window_scale(&with_options(&[3, 4, 7, 0]), 24), None, "wrong length");
        assert_eq!(window_scale(&with_options(&[2, 9, 5, 180]), 24), None, "length beyond the header");
        assert_eq!(window_scale(&with_options(&[]), 20), None);
    }

    proptest! {
        #[test]
        fn window_scale_never_panics(options in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut options = options;
            options.truncate(options.len() / 4 * 4);
            let seg = with_options(&options);
            let _ = window_scale(&seg, header_len(&seg));
        }
    }
}
