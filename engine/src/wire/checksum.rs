//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).

/// Ones'-complement sum of `data` (padded with a zero byte if odd), folded to 16 bits,
/// added to `initial` (an unfolded partial sum).
pub fn sum(initial: u32, data: &[u8]) -> u32 {
    let mut acc = u64::from(initial);
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(u16::from_be_bytes([*last, 0]));
    }
    fold64(acc)
}

fn fold64(mut acc: u64) -> u32 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u32
}

/// The checksum field value for data whose partial sum is `partial`.
pub fn finish(partial: u32) -> u16 {
    !(fold64(u64::from(partial)) as u16)
}

/// The Internet checksum of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(0, data))
}

/// RFC 1624 eqn. 3: the new checksum after a 16-bit word changed from `old` to `new`.
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    let acc = u32::from(!check) + u32::from(!old) + u32::from(new);
    !(fold64(u64::from(acc)) as u16)
}

/// The new checksum after a 32-bit value (an address) changed from `old` to `new`.
pub fn update32(check: u16, old: u32, new: u32) -> u16 {
    let c = update16(check, (old >> 16) as u16, (new >> 16) as u16);
    update16(c, old as u16, new as u16)
}
