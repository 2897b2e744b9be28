//! Splits a WinDivert batch receive buffer into packets. Pure, compiled everywhere, so it is
//! tested on Linux.
//!
//! `WinDivertRecvEx` writes the packets of a batch back to back into one buffer and returns
//! one address per packet but no per-packet lengths: the length of each is its IP header's
//! (IPv4 total length, or IPv6 payload length + 40). The windivert crate's `recv_ex` does this
//! split with `expect` and allocates per call; this does it without either.

/// Length of the first packet in `buf`, from its IP header; `None` when `buf` does not start
/// with a complete IPv4 or IPv6 packet (the split stops there).
pub fn first_packet_len(buf: &[u8]) -> Option<usize> {
    let version = buf.first()? >> 4;
    let len = match version {
        4 => {
            let total = usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]));
            if total < 20 {
                return None;
            }
            total
        }
        6 => 40 + usize::from(u16::from_be_bytes([*buf.get(4)?, *buf.get(5)?])),
        _ => return None,
    };
    (len <= buf.len()).then_some(len)
}

/// Calls `f(offset, len)` for each of up to `count` packets laid back to back in `buf`;
/// returns how many it found. Stops early at anything that is not a complete IP packet.
pub fn split_packets(buf: &[u8], count: usize, mut f: impl FnMut(usize, usize)) -> usize {
    let mut at = 0;
    for found in 0..count {
        let Some(len) = first_packet_len(&buf[at..]) else { return found };
        f(at, len);
        at += len;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4(total: u16) -> Vec<u8> {
        let mut p = vec![0u8; usize::from(total)];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p
    }

    #[test]
    fn splits_ipv4_and_ipv6_back_to_back() {
        let mut buf = ipv4(28);
        let mut v6 = vec![0u8; 48];
        v6[0] = 0x60;
        v6[4..6].copy_from_slice(&8u16.to_be_bytes());
        buf.extend_from_slice(&v6);
        buf.extend_from_slice(&ipv4(60));
        let mut got = Vec::new();
        assert_eq!(split_packets(&buf, 3, |o, l| got.push((o, l))), 3);
        assert_eq!(got, vec![(0, 28), (28, 48), (76, 60)]);
    }

    #[test]
    fn stops_at_garbage_or_truncation() {
        let mut buf = ipv4(28);
        buf.extend_from_slice(&ipv4(100)[..50]);
        assert_eq!(split_packets(&buf, 2, |_, _| {}), 1, "second packet is cut short");
        assert_eq!(first_packet_len(&[0x45, 0, 0, 10]), None, "total length below the header");
        assert_eq!(first_packet_len(&[0x00; 40]), None, "not IP");
        assert_eq!(first_packet_len(&[]), None);
        assert_eq!(split_packets(&ipv4(20), 5, |_, _| {}), 1, "fewer packets than asked");
    }
}
