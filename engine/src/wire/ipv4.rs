//! IPv4 header view (placeholder, filled in next).

/// Computes and stores the IPv4 header checksum of `packet`.
pub fn fill_checksum(packet: &mut [u8]) {
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    packet[10] = 0;
    packet[11] = 0;
    let c = super::checksum::checksum(&packet[..ihl]);
    packet[10..12].copy_from_slice(&c.to_be_bytes());
}
