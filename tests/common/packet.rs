//! A small IPv4 / UDP / TCP / ICMP packet builder (correct checksums unless a test breaks them
//! on purpose) and a read-only view for field-by-field assertions.
//!
//! The builder computes checksums with its own RFC 1071 sum; the validator in `check.rs`
//! recomputes them with etherparse, so the two never share code.

use std::net::{Ipv4Addr, SocketAddrV4};

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;

pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_DEST_UNREACHABLE: u8 = 3;
pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMP_TIME_EXCEEDED: u8 = 11;

/// `a.b.c.d:port` shorthand.
pub fn ep(addr: &str, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(addr.parse().expect("test address"), port)
}

pub fn ip(addr: &str) -> Ipv4Addr {
    addr.parse().expect("test address")
}

/// RFC 1071 one's-complement sum, folded, not inverted.
fn sum16(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The internet checksum of `data` (inverted).
pub fn inet_checksum(data: &[u8]) -> u16 {
    !fold(sum16(0, data))
}

fn pseudo_checksum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) -> u16 {
    let mut acc = sum16(0, &src.octets());
    acc = sum16(acc, &dst.octets());
    acc += u32::from(proto);
    acc += l4.len() as u32;
    !fold(sum16(acc, l4))
}

/// IPv4 header fields for the builder.
#[derive(Clone, Debug)]
pub struct IpHdr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub ttl: u8,
    pub ident: u16,
    pub dont_fragment: bool,
    pub more_fragments: bool,
    /// Fragment offset in 8-byte units.
    pub frag_offset: u16,
}

impl IpHdr {
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, proto: u8) -> IpHdr {
        IpHdr { src, dst, proto, ttl: 64, ident: 0x1c46, dont_fragment: false, more_fragments: false, frag_offset: 0 }
    }

    /// Header + `payload`, with a correct header checksum.
    pub fn build(&self, payload: &[u8]) -> Vec<u8> {
        let total = 20 + payload.len();
        let mut p = vec![0u8; 20];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[4..6].copy_from_slice(&self.ident.to_be_bytes());
        let mut frag = self.frag_offset & 0x1fff;
        if self.dont_fragment {
            frag |= 0x4000;
        }
        if self.more_fragments {
            frag |= 0x2000;
        }
        p[6..8].copy_from_slice(&frag.to_be_bytes());
        p[8] = self.ttl;
        p[9] = self.proto;
        p[12..16].copy_from_slice(&self.src.octets());
        p[16..20].copy_from_slice(&self.dst.octets());
        let c = inet_checksum(&p);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }
}

/// A UDP datagram `src -> dst` carrying `payload`, checksum computed.
pub fn udp(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    udp_with(src, dst, payload, |_| {})
}

/// Like `udp`, with a hook to change the IP header fields.
pub fn udp_with(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8], f: impl FnOnce(&mut IpHdr)) -> Vec<u8> {
    let mut l4 = Vec::with_capacity(8 + payload.len());
    l4.extend_from_slice(&src.port().to_be_bytes());
    l4.extend_from_slice(&dst.port().to_be_bytes());
    l4.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    l4.extend_from_slice(&[0, 0]);
    l4.extend_from_slice(payload);
    let mut c = pseudo_checksum(*src.ip(), *dst.ip(), PROTO_UDP, &l4);
    if c == 0 {
        c = 0xffff;
    }
    l4[6..8].copy_from_slice(&c.to_be_bytes());
    let mut h = IpHdr::new(*src.ip(), *dst.ip(), PROTO_UDP);
    f(&mut h);
    h.build(&l4)
}

/// A UDP datagram with checksum 0 ("no checksum", RFC 768).
pub fn udp_no_checksum(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let mut p = udp(src, dst, payload);
    p[26] = 0;
    p[27] = 0;
    p
}

/// A TCP segment (20-byte header, no options), checksum computed.
pub fn tcp(src: SocketAddrV4, dst: SocketAddrV4, flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    let mut l4 = Vec::with_capacity(20 + payload.len());
    l4.extend_from_slice(&src.port().to_be_bytes());
    l4.extend_from_slice(&dst.port().to_be_bytes());
    l4.extend_from_slice(&seq.to_be_bytes());
    l4.extend_from_slice(&ack.to_be_bytes());
    l4.push(5 << 4);
    l4.push(flags);
    l4.extend_from_slice(&64240u16.to_be_bytes());
    l4.extend_from_slice(&[0, 0, 0, 0]);
    l4.extend_from_slice(payload);
    let c = pseudo_checksum(*src.ip(), *dst.ip(), PROTO_TCP, &l4);
    l4[16..18].copy_from_slice(&c.to_be_bytes());
    IpHdr::new(*src.ip(), *dst.ip(), PROTO_TCP).build(&l4)
}

/// An ICMP echo request (`request`) or reply.
pub fn icmp_echo(src: Ipv4Addr, dst: Ipv4Addr, request: bool, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut l4 = vec![if request { ICMP_ECHO_REQUEST } else { ICMP_ECHO_REPLY }, 0, 0, 0];
    l4.extend_from_slice(&id.to_be_bytes());
    l4.extend_from_slice(&seq.to_be_bytes());
    l4.extend_from_slice(payload);
    let c = inet_checksum(&l4);
    l4[2..4].copy_from_slice(&c.to_be_bytes());
    IpHdr::new(src, dst, PROTO_ICMP).build(&l4)
}

/// An ICMP error (type/code) from `src` to `dst` embedding `embedded` (an IP packet, possibly
/// truncated). Bytes 4..8 of the ICMP header are zero (unused / next-hop MTU 0).
pub fn icmp_error(src: Ipv4Addr, dst: Ipv4Addr, typ: u8, code: u8, embedded: &[u8]) -> Vec<u8> {
    let mut l4 = vec![typ, code, 0, 0, 0, 0, 0, 0];
    l4.extend_from_slice(embedded);
    let c = inet_checksum(&l4);
    l4[2..4].copy_from_slice(&c.to_be_bytes());
    IpHdr::new(src, dst, PROTO_ICMP).build(&l4)
}

/// Splits an (unfragmented, 20-byte header) IP packet into fragments carrying at most
/// `chunk` payload bytes each (`chunk` a multiple of 8). Identification and other header
/// fields are kept; header checksums are recomputed.
pub fn fragment(packet: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    assert_eq!(chunk % 8, 0, "fragment payloads must be multiples of 8 bytes");
    let v = View::new(packet);
    let payload = v.ip_payload();
    let mut frags = Vec::new();
    let mut off = 0;
    while off < payload.len() {
        let end = (off + chunk).min(payload.len());
        let h = IpHdr {
            src: v.src(),
            dst: v.dst(),
            proto: v.proto(),
            ttl: v.ttl(),
            ident: v.ident(),
            dont_fragment: false,
            more_fragments: end < payload.len(),
            frag_offset: (off / 8) as u16,
        };
        frags.push(h.build(&payload[off..end]));
        off = end;
    }
    frags
}

/// Recomputes the IPv4 header checksum of `p` in place (after a test edits a header field).
pub fn fix_ip_checksum(p: &mut [u8]) {
    let ihl = usize::from(p[0] & 0x0f) * 4;
    p[10] = 0;
    p[11] = 0;
    let c = inet_checksum(&p[..ihl.min(p.len())]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Read-only view of an IPv4 packet for assertions. Panics (test failure) on packets too
/// short for the asked field.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    pub bytes: &'a [u8],
}

impl<'a> View<'a> {
    pub fn new(bytes: &'a [u8]) -> View<'a> {
        assert!(bytes.len() >= 20, "not an IPv4 packet (len {}): {:02x?}", bytes.len(), bytes);
        View { bytes }
    }
    fn be16(&self, at: usize) -> u16 {
        u16::from_be_bytes([self.bytes[at], self.bytes[at + 1]])
    }
    pub fn ihl_len(&self) -> usize {
        usize::from(self.bytes[0] & 0x0f) * 4
    }
    pub fn total_len(&self) -> usize {
        usize::from(self.be16(2))
    }
    pub fn ident(&self) -> u16 {
        self.be16(4)
    }
    pub fn more_fragments(&self) -> bool {
        self.bytes[6] & 0x20 != 0
    }
    /// Fragment offset in 8-byte units.
    pub fn frag_offset(&self) -> u16 {
        self.be16(6) & 0x1fff
    }
    pub fn is_fragment(&self) -> bool {
        self.more_fragments() || self.frag_offset() != 0
    }
    pub fn ttl(&self) -> u8 {
        self.bytes[8]
    }
    pub fn proto(&self) -> u8 {
        self.bytes[9]
    }
    pub fn ip_checksum(&self) -> u16 {
        self.be16(10)
    }
    pub fn src(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.bytes[12], self.bytes[13], self.bytes[14], self.bytes[15])
    }
    pub fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.bytes[16], self.bytes[17], self.bytes[18], self.bytes[19])
    }
    /// The IP payload, bounded by total length and by the bytes present.
    pub fn ip_payload(&self) -> &'a [u8] {
        let end = self.total_len().min(self.bytes.len());
        &self.bytes[self.ihl_len().min(end)..end]
    }
    fn l4(&self) -> &'a [u8] {
        assert!(self.frag_offset() == 0, "asked for L4 fields of a non-first fragment");
        self.ip_payload()
    }
    fn l4_be16(&self, at: usize) -> u16 {
        let l4 = self.l4();
        u16::from_be_bytes([l4[at], l4[at + 1]])
    }
    pub fn sport(&self) -> u16 {
        assert!(self.proto() == PROTO_TCP || self.proto() == PROTO_UDP, "sport of proto {}", self.proto());
        self.l4_be16(0)
    }
    pub fn dport(&self) -> u16 {
        assert!(self.proto() == PROTO_TCP || self.proto() == PROTO_UDP, "dport of proto {}", self.proto());
        self.l4_be16(2)
    }
    pub fn src_ep(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.src(), self.sport())
    }
    pub fn dst_ep(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.dst(), self.dport())
    }
    /// UDP/TCP/ICMP checksum field.
    pub fn l4_checksum(&self) -> u16 {
        match self.proto() {
            PROTO_UDP => self.l4_be16(6),
            PROTO_TCP => self.l4_be16(16),
            PROTO_ICMP => self.l4_be16(2),
            p => panic!("no L4 checksum for proto {p}"),
        }
    }
    pub fn tcp_flags(&self) -> u8 {
        assert_eq!(self.proto(), PROTO_TCP);
        self.l4()[13]
    }
    pub fn tcp_seq(&self) -> u32 {
        let l4 = self.l4();
        u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]])
    }
    /// Payload after the UDP (8) or TCP (data offset) header.
    pub fn l4_payload(&self) -> &'a [u8] {
        let l4 = self.l4();
        match self.proto() {
            PROTO_UDP => &l4[8..],
            PROTO_TCP => &l4[usize::from(l4[12] >> 4) * 4..],
            PROTO_ICMP => &l4[8..],
            p => panic!("no L4 payload for proto {p}"),
        }
    }
    pub fn icmp_type(&self) -> u8 {
        assert_eq!(self.proto(), PROTO_ICMP);
        self.l4()[0]
    }
    pub fn icmp_code(&self) -> u8 {
        assert_eq!(self.proto(), PROTO_ICMP);
        self.l4()[1]
    }
    /// ICMP echo identifier.
    pub fn icmp_id(&self) -> u16 {
        assert_eq!(self.proto(), PROTO_ICMP);
        self.l4_be16(4)
    }
    pub fn icmp_seq(&self) -> u16 {
        assert_eq!(self.proto(), PROTO_ICMP);
        self.l4_be16(6)
    }
    /// The "port" of the source endpoint: the L4 port, or the ICMP echo identifier.
    pub fn src_key(&self) -> u16 {
        if self.proto() == PROTO_ICMP {
            self.icmp_id()
        } else {
            self.sport()
        }
    }
    /// The packet embedded in an ICMP error (possibly truncated).
    pub fn embedded(&self) -> View<'a> {
        let t = self.icmp_type();
        assert!(matches!(t, 3 | 4 | 5 | 11 | 12), "ICMP type {t} is not an error");
        View::new(&self.l4()[8..])
    }
}
