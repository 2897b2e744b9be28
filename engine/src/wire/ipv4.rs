//! IPv4 header view (RFC 791).
//!
//! Panic contract: once [`Ipv4Packet::new_checked`] succeeds, no accessor or setter panics.

use core::ops::Range;

use super::checksum;

mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const TOTAL_LEN: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLAGS_FRAG: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
}

/// The smallest IPv4 header.
pub const MIN_HEADER_LEN: usize = 20;

/// Why a buffer is not a usable IPv4 packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Ipv4Error {
    /// Shorter than 20 bytes or than its total length.
    #[error("truncated ipv4 packet")]
    Truncated,
    /// Version is not 4, IHL below 5 or beyond the buffer, total length below the header.
    #[error("malformed ipv4 header")]
    Malformed,
}

/// A read/write view of an IPv4 packet.
#[derive(Debug)]
pub struct Ipv4Packet<T> {
    buffer: T,
}

fn be16(b: &[u8], r: Range<usize>) -> u16 {
    u16::from_be_bytes([b[r.start], b[r.start + 1]])
}

fn be32(b: &[u8], r: Range<usize>) -> u32 {
    u32::from_be_bytes([b[r.start], b[r.start + 1], b[r.start + 2], b[r.start + 3]])
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Checks version, IHL and total length against the buffer. `strict_len` requires the
    /// buffer to hold the total length (embedded packets in ICMP errors are truncated by
    /// design and are parsed with `false`).
    pub fn new_checked(buffer: T, strict_len: bool) -> Result<Self, Ipv4Error> {
        let b = buffer.as_ref();
        if b.len() < MIN_HEADER_LEN {
            return Err(Ipv4Error::Truncated);
        }
        let ihl = usize::from(b[field::VER_IHL] & 0x0f) * 4;
        if b[field::VER_IHL] >> 4 != 4 || ihl < MIN_HEADER_LEN {
            return Err(Ipv4Error::Malformed);
        }
        if ihl > b.len() {
            return Err(Ipv4Error::Truncated);
        }
        let total = usize::from(be16(b, field::TOTAL_LEN));
        if total < ihl {
            return Err(Ipv4Error::Malformed);
        }
        if strict_len && total > b.len() {
            return Err(Ipv4Error::Truncated);
        }
        Ok(Ipv4Packet { buffer })
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Header length in bytes.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The total length field.
    pub fn total_len(&self) -> usize {
        usize::from(be16(self.buffer.as_ref(), field::TOTAL_LEN))
    }

    /// The identification field.
    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT)
    }

    /// The fragment offset in bytes.
    pub fn frag_offset(&self) -> usize {
        usize::from(be16(self.buffer.as_ref(), field::FLAGS_FRAG) & 0x1fff) * 8
    }

    /// The more-fragments flag.
    pub fn more_frags(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLAGS_FRAG) & 0x2000 != 0
    }

    /// Whether this is any fragment (first, middle or last) of a fragmented datagram.
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// The protocol number.
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// The header checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Source address as a big-endian integer.
    pub fn src(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SRC)
    }

    /// Destination address as a big-endian integer.
    pub fn dst(&self) -> u32 {
        be32(self.buffer.as_ref(), field::DST)
    }

    /// Whether the header checksum is right.
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(&self.buffer.as_ref()[..self.header_len()]) == 0
    }

    /// The payload: from the end of the header to the total length, or to the end of the
    /// buffer where the packet is truncated (embedded packets).
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        let end = self.total_len().min(b.len());
        &b[self.header_len()..end]
    }

    /// The ones'-complement sum of the TCP/UDP pseudo-header for a transport length.
    pub fn pseudo_header_sum(&self, l4_len: usize) -> u32 {
        let b = self.buffer.as_ref();
        let mut s = checksum::sum(0, &b[field::SRC.start..field::DST.end]);
        s += u32::from(self.protocol());
        s += l4_len as u32 & 0xffff;
        s
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Rewrites the source address, updating the header checksum incrementally.
    pub fn set_src(&mut self, addr: u32) {
        let old = self.src();
        let c = checksum::update32(self.checksum(), old, addr);
        let b = self.buffer.as_mut();
        b[field::SRC].copy_from_slice(&addr.to_be_bytes());
        b[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
    }

    /// Rewrites the destination address, updating the header checksum incrementally.
    pub fn set_dst(&mut self, addr: u32) {
        let old = self.dst();
        let c = checksum::update32(self.checksum(), old, addr);
        let b = self.buffer.as_mut();
        b[field::DST].copy_from_slice(&addr.to_be_bytes());
        b[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
    }

    /// Recomputes the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        let ihl = self.header_len();
        let b = self.buffer.as_mut();
        b[field::CHECKSUM].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(&b[..ihl]);
        b[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
    }

    /// The payload, mutable (bounded like [`Ipv4Packet::payload`]).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        let end = self.total_len().min(self.buffer.as_ref().len());
        &mut self.buffer.as_mut()[start..end]
    }
}

/// Computes and stores the IPv4 header checksum of `packet`; does nothing to a buffer that is
/// not an IPv4 header.
pub fn fill_checksum(packet: &mut [u8]) {
    if let Ok(mut p) = Ipv4Packet::new_checked(packet, false) {
        p.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 28, 0x12, 0x34, 0x20, 0x01, 64, 17, 0, 0, 10, 100, 10, 11, 198, 51, 100, 7, 0x13, 0x88, 0, 53,
            0, 8, 0, 0,
        ];
        fill_checksum(&mut p);
        p
    }

    #[test]
    fn parses_fields() {
        let b = sample();
        let p = Ipv4Packet::new_checked(&b[..], true).unwrap();
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 28);
        assert_eq!(p.ident(), 0x1234);
        assert!(p.more_frags());
        assert_eq!(p.frag_offset(), 8);
        assert_eq!(p.protocol(), 17);
        assert_eq!(p.src(), u32::from_be_bytes([10, 100, 10, 11]));
        assert!(p.verify_checksum());
        assert_eq!(p.payload().len(), 8);
    }

    #[test]
    fn rejects_bad_headers() {
        let mut b = sample();
        assert_eq!(Ipv4Packet::new_checked(&b[..19], true).unwrap_err(), Ipv4Error::Truncated);
        assert_eq!(Ipv4Packet::new_checked(&b[..27], true).unwrap_err(), Ipv4Error::Truncated);
        assert!(Ipv4Packet::new_checked(&b[..27], false).is_ok());
        b[0] = 0x44;
        assert_eq!(Ipv4Packet::new_checked(&b[..], true).unwrap_err(), Ipv4Error::Malformed);
        b[0] = 0x65;
        assert_eq!(Ipv4Packet::new_checked(&b[..], true).unwrap_err(), Ipv4Error::Malformed);
        b[0] = 0x4f;
        assert_eq!(Ipv4Packet::new_checked(&b[..], true).unwrap_err(), Ipv4Error::Truncated);
        let mut b = sample();
        b[2..4].copy_from_slice(&10u16.to_be_bytes());
        assert_eq!(Ipv4Packet::new_checked(&b[..], true).unwrap_err(), Ipv4Error::Malformed);
    }

    proptest! {
        #[test]
        fn incremental_address_rewrite_equals_full_recompute(src: u32, dst: u32, new_src: u32, new_dst: u32, ttl: u8, id: u16) {
            let mut b = sample();
            b[4..6].copy_from_slice(&id.to_be_bytes());
            b[8] = ttl;
            b[12..16].copy_from_slice(&src.to_be_bytes());
            b[16..20].copy_from_slice(&dst.to_be_bytes());
            fill_checksum(&mut b);
            let mut p = Ipv4Packet::new_checked(&mut b[..], true).unwrap();
            p.set_src(new_src);
            p.set_dst(new_dst);
            let incremental = p.checksum();
            p.fill_checksum();
            // 0x0000 and 0xffff are the same number in ones' complement; a header sum can never
            // be zero, so the full recompute never yields 0xffff and both must agree exactly.
            prop_assert_eq!(incremental, p.checksum());
            prop_assert!(p.verify_checksum());
        }
    }
}
