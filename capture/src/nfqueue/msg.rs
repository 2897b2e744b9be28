//! The nfnetlink_queue wire format: building config and verdict messages, parsing packet and
//! error messages. Pure byte code, no syscalls; the socket side is in `super`.
//!
//! Layout (see `linux/netfilter/nfnetlink_queue.h`): every message is a netlink header
//! (`nlmsghdr`, host byte order) + `nfgenmsg` (queue number big-endian) + attributes
//! (`nlattr` header in host order, payloads big-endian), each padded to 4 bytes.

use std::ops::Range;

pub(super) const NLMSG_HDRLEN: usize = 16;
const NFGEN_HDRLEN: usize = 4;
const NLA_HDRLEN: usize = 4;
/// Attribute type bits that are flags, not the type.
const NLA_TYPE_MASK: u16 = 0x3fff;

const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = 0;
const NFQNL_MSG_VERDICT: u16 = 1;
const NFQNL_MSG_CONFIG: u16 = 2;

const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_IFINDEX_INDEV: u16 = 5;
const NFQA_IFINDEX_OUTDEV: u16 = 6;
const NFQA_PAYLOAD: u16 = 10;
const NFQA_CAP_LEN: u16 = 13;
const NFQA_SKB_INFO: u16 = 14;

const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const NFQA_CFG_MASK: u16 = 4;
const NFQA_CFG_FLAGS: u16 = 5;

/// `NFQNL_CFG_CMD_BIND`.
pub(super) const CMD_BIND: u8 = 1;
const NFQNL_COPY_PACKET: u8 = 2;

/// `NFQA_CFG_F_FAIL_OPEN`: accept instead of drop when the queue is full.
pub(super) const CFG_F_FAIL_OPEN: u32 = 1;
/// `NFQA_CFG_F_GSO`: hand over GSO super-packets and partial checksums unresolved.
pub(super) const CFG_F_GSO: u32 = 4;
/// `NFQA_SKB_CSUMNOTREADY`: the L4 checksum is partial (only with `CFG_F_GSO`).
pub(super) const SKB_CSUMNOTREADY: u32 = 1;
/// `NFQA_SKB_GSO`: a GSO super-packet, to be segmented after the verdict (only with
/// `CFG_F_GSO`).
pub(super) const SKB_GSO: u32 = 2;

/// `NF_DROP` / `NF_ACCEPT`.
pub(super) const NF_DROP: u32 = 0;
pub(super) const NF_ACCEPT: u32 = 1;

/// Starts a message at the end of `buf`; returns its start for [`end`].
fn begin(buf: &mut Vec<u8>, msg: u16, flags: u16, seq: u32, queue: u16) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_len, set by `end`
    buf.extend_from_slice(&((NFNL_SUBSYS_QUEUE << 8) | msg).to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: the kernel
    buf.extend_from_slice(&[0 /* AF_UNSPEC */, 0 /* NFNETLINK_V0 */]);
    buf.extend_from_slice(&queue.to_be_bytes());
    start
}

fn attr(buf: &mut Vec<u8>, typ: u16, payload: &[u8]) {
    // Attribute payloads here are at most 65535 + a few bytes of packet: the length of a
    // netlink attribute is u16, so longer payloads cannot be expressed; callers cap them.
    let len = (NLA_HDRLEN + payload.len()) as u16;
    buf.extend_from_slice(&len.to_ne_bytes());
    buf.extend_from_slice(&typ.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

fn end(buf: &mut [u8], start: usize) {
    let len = (buf.len() - start) as u32;
    buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

/// Appends a config command (`CMD_BIND`) for `queue`, asking for an ack.
pub(super) fn config_cmd(buf: &mut Vec<u8>, seq: u32, queue: u16, cmd: u8) {
    let start = begin(buf, NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, seq, queue);
    // struct nfqnl_msg_config_cmd { u8 command; u8 pad; __be16 pf; }; pf is ignored since 3.8.
    attr(buf, NFQA_CFG_CMD, &[cmd, 0, 0, 0]);
    end(buf, start);
}

/// Appends the queue parameters for `queue`: copy whole packets up to `copy_range` bytes,
/// at most `max_len` packets waiting, and `flags` for the bits in `mask`. Asks for an ack.
pub(super) fn config_params(
    buf: &mut Vec<u8>,
    seq: u32,
    queue: u16,
    copy_range: u32,
    max_len: u32,
    flags: u32,
    mask: u32,
) {
    let start = begin(buf, NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, seq, queue);
    // struct nfqnl_msg_config_params { __be32 copy_range; u8 copy_mode; } __packed;
    let mut params = [0u8; 5];
    params[..4].copy_from_slice(&copy_range.to_be_bytes());
    params[4] = NFQNL_COPY_PACKET;
    attr(buf, NFQA_CFG_PARAMS, &params);
    attr(buf, NFQA_CFG_QUEUE_MAXLEN, &max_len.to_be_bytes());
    attr(buf, NFQA_CFG_MASK, &mask.to_be_bytes());
    attr(buf, NFQA_CFG_FLAGS, &flags.to_be_bytes());
    end(buf, start);
}

/// Appends a verdict for packet `id` of `queue`, with a replacement payload when given. No
/// ack: errors come back as error messages on the next receive. Returns where the payload
/// starts in `buf` (0 without one).
pub(super) fn verdict(buf: &mut Vec<u8>, queue: u16, id: u32, verdict: u32, payload: Option<&[u8]>) -> usize {
    let start = begin(buf, NFQNL_MSG_VERDICT, NLM_F_REQUEST, 0, queue);
    let mut hdr = [0u8; 8];
    hdr[..4].copy_from_slice(&verdict.to_be_bytes());
    hdr[4..].copy_from_slice(&id.to_be_bytes());
    attr(buf, NFQA_VERDICT_HDR, &hdr);
    let mut at = 0;
    if let Some(p) = payload {
        at = buf.len() + NLA_HDRLEN;
        attr(buf, NFQA_PAYLOAD, p);
    }
    end(buf, start);
    at
}

/// A queued packet as the kernel describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct PacketMsg {
    pub queue: u16,
    pub id: u32,
    /// Where the packet bytes are in the parsed buffer (empty if the kernel sent none).
    pub payload: Range<usize>,
    /// The packet's full length when the kernel copied less (`NFQA_CAP_LEN`).
    pub cap_len: Option<u32>,
    pub skb_info: u32,
    pub indev: u32,
    pub outdev: u32,
}

/// One message from the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Msg {
    /// A queued packet.
    Packet(PacketMsg),
    /// An ack (`errno == 0`) or an error for the request with `seq`.
    Error { errno: i32, seq: u32 },
    /// Anything else (done, noop, other subsystems).
    Other,
}

fn u16_ne(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_ne(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u32_be(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parses the messages of one datagram; calls `f` with each. Returns `Err(offset)` at the
/// first malformed message (lengths that do not fit); the ones before it were delivered.
pub(super) fn parse(buf: &[u8], mut f: impl FnMut(Msg)) -> Result<(), usize> {
    let mut at = 0;
    while at + NLMSG_HDRLEN <= buf.len() {
        let len = u32_ne(buf, at).ok_or(at)? as usize;
        if len < NLMSG_HDRLEN || len > buf.len() - at {
            return Err(at);
        }
        let typ = u16_ne(buf, at + 4).ok_or(at)?;
        let seq = u32_ne(buf, at + 8).ok_or(at)?;
        let body = at + NLMSG_HDRLEN..at + len;
        let msg = if typ == NLMSG_ERROR {
            // struct nlmsgerr { int error; struct nlmsghdr msg; ... }; `seq` of the request is
            // in the embedded header.
            let errno = u32_ne(buf, body.start).ok_or(at)? as i32;
            let req_seq = u32_ne(buf, body.start + 4 + 8).unwrap_or(seq);
            Msg::Error { errno: -errno, seq: req_seq }
        } else if typ == NLMSG_DONE {
            Msg::Other
        } else if typ == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET {
            parse_packet(buf, body).ok_or(at)?
        } else {
            Msg::Other
        };
        f(msg);
        at += len.next_multiple_of(4);
    }
    Ok(())
}

fn parse_packet(buf: &[u8], body: Range<usize>) -> Option<Msg> {
    if body.len() < NFGEN_HDRLEN {
        return None;
    }
    let queue = u16::from_be_bytes([buf[body.start + 2], buf[body.start + 3]]);
    let mut p = PacketMsg { queue, ..PacketMsg::default() };
    let mut have_hdr = false;
    let mut at = body.start + NFGEN_HDRLEN;
    // The kernel does not count the padding after the last attribute (the payload) in
    // nlmsg_len, so `at` may step past `body.end`.
    while at + NLA_HDRLEN <= body.end {
        let len = usize::from(u16_ne(buf, at)?);
        let typ = u16_ne(buf, at + 2)? & NLA_TYPE_MASK;
        if len < NLA_HDRLEN || len > body.end - at {
            return None;
        }
        let data = at + NLA_HDRLEN..at + len;
        match typ {
            // struct nfqnl_msg_packet_hdr { __be32 packet_id; __be16 hw_protocol; u8 hook; }
            NFQA_PACKET_HDR => {
                p.id = u32_be(buf, data.start)?;
                have_hdr = true;
            }
            NFQA_PAYLOAD => p.payload = data,
            NFQA_CAP_LEN => p.cap_len = Some(u32_be(buf, data.start)?),
            NFQA_SKB_INFO => p.skb_info = u32_be(buf, data.start)?,
            NFQA_IFINDEX_INDEV => p.indev = u32_be(buf, data.start)?,
            NFQA_IFINDEX_OUTDEV => p.outdev = u32_be(buf, data.start)?,
            _ => {}
        }
        at += len.next_multiple_of(4);
    }
    have_hdr.then_some(Msg::Packet(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet message as the kernel builds it: header, packet hdr, indev, skb info, payload.
    fn kernel_packet(queue: u16, id: u32, payload: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        let start = begin(&mut b, NFQNL_MSG_PACKET, 0, 0, queue);
        let mut hdr = id.to_be_bytes().to_vec();
        hdr.extend_from_slice(&[0x08, 0x00, 0]); // ETH_P_IP, hook 0 (PREROUTING)
        attr(&mut b, NFQA_PACKET_HDR, &hdr);
        attr(&mut b, NFQA_IFINDEX_INDEV, &7u32.to_be_bytes());
        attr(&mut b, NFQA_SKB_INFO, &SKB_CSUMNOTREADY.to_be_bytes());
        attr(&mut b, NFQA_PAYLOAD, payload);
        end(&mut b, start);
        b
    }

    #[test]
    fn packet_messages_parse_back() {
        let payload: Vec<u8> = (0..29).collect(); // odd length: padding follows
        let mut buf = kernel_packet(3, 0xdead_beef, &payload);
        buf.extend_from_slice(&kernel_packet(3, 2, &[1, 2]));
        let mut got = Vec::new();
        parse(&buf, |m| got.push(m)).unwrap();
        assert_eq!(got.len(), 2);
        let Msg::Packet(p) = &got[0] else { panic!("{got:?}") };
        assert_eq!((p.queue, p.id, p.indev, p.skb_info), (3, 0xdead_beef, 7, SKB_CSUMNOTREADY));
        assert_eq!(&buf[p.payload.clone()], payload.as_slice());
        let Msg::Packet(q) = &got[1] else { panic!("{got:?}") };
        assert_eq!((q.id, &buf[q.payload.clone()]), (2, &[1u8, 2][..]));
    }

    #[test]
    fn unpadded_last_attribute_as_the_kernel_sends_it() {
        let mut buf = kernel_packet(1, 9, &[1, 2, 3, 4, 5]);
        // The kernel's nlmsg_len stops at the payload's last byte, before the padding.
        let unpadded = (buf.len() - 3) as u32;
        buf[0..4].copy_from_slice(&unpadded.to_ne_bytes());
        buf.truncate(unpadded as usize);
        let mut got = Vec::new();
        parse(&buf, |m| got.push(m)).unwrap();
        let [Msg::Packet(p)] = got.as_slice() else { panic!("{got:?}") };
        assert_eq!((p.id, &buf[p.payload.clone()]), (9, &[1u8, 2, 3, 4, 5][..]));
    }

    #[test]
    fn verdict_layout_matches_the_kernel_structs() {
        let mut b = Vec::new();
        let at = verdict(&mut b, 0x0102, 0x0a0b_0c0d, NF_ACCEPT, Some(&[9, 9, 9]));
        assert_eq!(at, 36, "the payload's offset");
        // nlmsghdr(16) + nfgenmsg(4) + verdict attr(4+8) + payload attr(4+3, padded to 8)
        assert_eq!(b.len(), 16 + 4 + 12 + 8);
        assert_eq!(u32::from_ne_bytes(b[0..4].try_into().unwrap()), 40);
        assert_eq!(u16::from_ne_bytes(b[4..6].try_into().unwrap()), 0x0301, "NFNL_SUBSYS_QUEUE << 8 | VERDICT");
        assert_eq!(&b[18..20], &[0x01, 0x02], "queue number is big-endian");
        assert_eq!(u16::from_ne_bytes(b[20..22].try_into().unwrap()), 12);
        assert_eq!(u16::from_ne_bytes(b[22..24].try_into().unwrap()), NFQA_VERDICT_HDR);
        assert_eq!(&b[24..32], &[0, 0, 0, 1, 0x0a, 0x0b, 0x0c, 0x0d]);
        assert_eq!(u16::from_ne_bytes(b[32..34].try_into().unwrap()), 7);
        assert_eq!(&b[36..40], &[9, 9, 9, 0]);
        let mut drop = Vec::new();
        verdict(&mut drop, 0, 1, NF_DROP, None);
        assert_eq!(drop.len(), 32, "no payload attribute on drop");
    }

    #[test]
    fn config_messages_ask_for_acks() {
        let mut b = Vec::new();
        config_cmd(&mut b, 5, 0, CMD_BIND);
        config_params(&mut b, 6, 0, 65535, 1024, CFG_F_FAIL_OPEN, CFG_F_FAIL_OPEN | CFG_F_GSO);
        let flags = u16::from_ne_bytes(b[6..8].try_into().unwrap());
        assert_eq!(flags, NLM_F_REQUEST | NLM_F_ACK);
        let first = u32::from_ne_bytes(b[0..4].try_into().unwrap()) as usize;
        assert_eq!(first, 28);
        // params attr: len 9, then copy_range BE and COPY_PACKET
        assert_eq!(&b[first + 20..first + 22], &9u16.to_ne_bytes());
        assert_eq!(&b[first + 24..first + 29], &[0, 0, 0xff, 0xff, NFQNL_COPY_PACKET]);
    }

    #[test]
    fn errors_and_acks_carry_errno_and_request_seq() {
        let mut b = Vec::new();
        b.extend_from_slice(&36u32.to_ne_bytes());
        b.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&(-1i32).to_ne_bytes()); // -EPERM
        let mut req = Vec::new();
        config_cmd(&mut req, 42, 0, CMD_BIND);
        b.extend_from_slice(&req[..16]);
        let mut got = Vec::new();
        parse(&b, |m| got.push(m)).unwrap();
        assert_eq!(got, vec![Msg::Error { errno: 1, seq: 42 }]);
    }

    #[test]
    fn malformed_lengths_are_errors_not_panics() {
        let good = kernel_packet(0, 1, &[1, 2, 3, 4]);
        for cut in 0..good.len() {
            let _ = parse(&good[..cut], |_| {});
        }
        let mut bad = good.clone();
        bad[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(parse(&bad, |_| {}).is_err());
        let mut bad_attr = good.clone();
        bad_attr[20..22].copy_from_slice(&999u16.to_ne_bytes());
        assert!(parse(&bad_attr, |_| {}).is_err());
        let mut no_hdr = good;
        no_hdr[22..24].copy_from_slice(&99u16.to_ne_bytes());
        assert!(parse(&no_hdr, |_| {}).is_err(), "a packet without NFQA_PACKET_HDR has no id");
    }
}
