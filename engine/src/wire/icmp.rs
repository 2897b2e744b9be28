//! ICMPv4 fields (RFC 792) over the IPv4 payload.
//!
//! Functions take the ICMP message; callers check [`HEADER_LEN`] first, after which none of
//! them panics.

use super::checksum;

/// Type, code, checksum and the 4-byte rest of header.
pub const HEADER_LEN: usize = 8;
/// Offset of the checksum field.
pub const CHECKSUM: usize = 2;
/// Offset of the identifier of query messages.
pub const IDENT: usize = 4;

/// Echo reply.
pub const ECHO_REPLY: u8 = 0;
/// Destination unreachable.
pub const DEST_UNREACHABLE: u8 = 3;
/// Source quench (deprecated, RFC 6633).
pub const SOURCE_QUENCH: u8 = 4;
/// Redirect.
pub const REDIRECT: u8 = 5;
/// Echo request.
pub const ECHO_REQUEST: u8 = 8;
/// Time exceeded.
pub const TIME_EXCEEDED: u8 = 11;
/// Parameter problem.
pub const PARAMETER_PROBLEM: u8 = 12;

/// Whether `ty` is an error message that embeds the packet that caused it and that the NAT
/// translates (RFC 5508 §4).
pub fn is_translated_error(ty: u8) -> bool {
    matches!(ty, DEST_UNREACHABLE | TIME_EXCEEDED | PARAMETER_PROBLEM)
}

/// The type.
pub fn msg_type(msg: &[u8]) -> u8 {
    msg[0]
}

/// The identifier of a query message.
pub fn ident(msg: &[u8]) -> u16 {
    u16::from_be_bytes([msg[IDENT], msg[IDENT + 1]])
}

/// The checksum field.
pub fn checksum_field(msg: &[u8]) -> u16 {
    u16::from_be_bytes([msg[CHECKSUM], msg[CHECKSUM + 1]])
}

/// Rewrites the identifier, updating the checksum incrementally.
pub fn set_ident(msg: &mut [u8], id: u16) {
    let mut c = checksum::update16(checksum_field(msg), ident(msg), id);
    msg[IDENT..IDENT + 2].copy_from_slice(&id.to_be_bytes());
    // The incremental update yields 0x0000 (-0) where the data sums to +0, which happens only
    // when every other byte is zero (an ICMP message has no pseudo-header); receivers want
    // 0xffff there (fuzz finding F1).
    if c == 0 && msg[..CHECKSUM].iter().chain(&msg[CHECKSUM + 2..]).all(|&b| b == 0) {
        c = 0xffff;
    }
    msg[CHECKSUM..CHECKSUM + 2].copy_from_slice(&c.to_be_bytes());
}

/// Whether the checksum over the whole message is right.
pub fn verify_checksum(msg: &[u8]) -> bool {
    checksum::checksum(msg) == 0
}

/// Recomputes the checksum over the whole message.
pub fn fill_checksum(msg: &mut [u8]) {
    msg[CHECKSUM..CHECKSUM + 2].copy_from_slice(&[0, 0]);
    let c = checksum::checksum(msg);
    msg[CHECKSUM..CHECKSUM + 2].copy_from_slice(&c.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_zero_message_gets_the_positive_zero_checksum() {
        // Echo reply, id 7, seq 0, no payload: checksum ~(7) = 0xfff8.
        let mut msg = [0u8, 0, 0xff, 0xf8, 0, 7, 0, 0];
        assert!(verify_checksum(&msg));
        set_ident(&mut msg, 0);
        assert_eq!(checksum_field(&msg), 0xffff);
        assert!(verify_checksum(&msg));
        set_ident(&mut msg, 9);
        assert!(verify_checksum(&msg));
    }
}
