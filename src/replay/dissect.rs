//! Frames as named fields, for `--expect` (which compares two captures field by field) and
//! for the pcapng comments (which describe a packet in one line).
//!
//! Field names are Wireshark's display-filter names (`ip.src`, `ip.ttl`, `udp.srcport`,
//! `tcp.checksum`), so a name in a difference report can be given to `tshark -Y` as it is.
//! The fields of the packet inside an ICMP error carry an `icmp.` prefix (`icmp.ip.src`,
//! `icmp.udp.srcport`). The fields cover every byte of the frame, in order, so two frames
//! are equal byte for byte exactly when all their fields are (a test holds it to that).
//!
//! Headers are parsed by etherparse, a parser independent of the engine's own
//! (`netnat_engine::wire`), and every checksum that can be recomputed is, with etherparse's
//! sums: a report can then say whether a checksum that differs is at least correct.
//! A checksum cannot be recomputed when the packet is a fragment, was cut short by the
//! capture, or is the truncated packet inside an ICMP error.
//!
//! Never panics: a header that cannot be parsed becomes one bytes field (`ip.payload`,
//! `udp.payload`, `frame`), so malformed frames are still compared, byte for byte.

use std::fmt;
use std::net::Ipv4Addr;

use etherparse::checksum::Sum16BitWords;
use etherparse::{Icmpv4Slice, Ipv4HeaderSlice, TcpHeaderSlice, UdpHeaderSlice};
use netnat_capture::pcap::LinkType;

/// IP protocol numbers the dissector looks into.
const ICMP: u8 = 1;
const TCP: u8 = 6;
const UDP: u8 = 17;

/// ICMP types whose body is an identifier and a sequence number (echo reply, echo request).
const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;
/// ICMP error types, whose body holds the start of the packet that caused them (RFC 792):
/// destination unreachable, source quench, redirect, time exceeded, parameter problem.
const ICMP_ERRORS: [u8; 5] = [3, 4, 5, 11, 12];

/// One field's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    /// A number shown in decimal (ports, lengths, TTL).
    Int(u64),
    /// A number shown in hexadecimal with `digits` digits (checksums, flags, ids).
    Hex {
        /// The number.
        value: u64,
        /// How many hex digits it is shown with.
        digits: u8,
    },
    /// An IPv4 address.
    Addr(Ipv4Addr),
    /// An Ethernet address.
    Mac([u8; 6]),
    /// Bytes (options, payloads, what could not be parsed).
    Bytes(&'a [u8]),
}

impl Value<'_> {
    /// The value as a number, for the numeric kinds.
    pub fn number(&self) -> Option<u64> {
        match *self {
            Value::Int(v) | Value::Hex { value: v, .. } => Some(v),
            _ => None,
        }
    }
}

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(v) => write!(f, "{v}"),
            Value::Hex { value, digits } => write!(f, "0x{value:0width$x}", width = usize::from(*digits)),
            Value::Addr(a) => write!(f, "{a}"),
            Value::Mac(m) => {
                write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
            }
            Value::Bytes(b) => write!(f, "{} bytes", b.len()),
        }
    }
}

/// What a field is, beyond its value: what `--expect`'s ignore options act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Compared as it is.
    Plain,
    /// A TCP/UDP port or an ICMP query identifier, which belongs to the endpoint `addr`
    /// (for an identifier: the querier's address) of IP protocol `protocol`.
    Port {
        /// The IP protocol the port is a port of (6, 17, or 1 for an ICMP identifier).
        protocol: u8,
        /// The address of the endpoint the port belongs to.
        addr: Ipv4Addr,
    },
    /// A checksum, with the value it should have when that can be computed.
    Checksum {
        /// The correct checksum of the bytes it covers; `None` when they are not all there.
        correct: Option<u16>,
    },
}

/// One named field of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field<'a> {
    /// Wireshark's name, without the `icmp.` prefix of an inner packet.
    pub name: &'static str,
    /// Whether it belongs to the packet inside an ICMP error.
    pub inner: bool,
    /// The value.
    pub value: Value<'a>,
    /// What it is.
    pub kind: Kind,
}

impl Field<'_> {
    /// The full name, e.g. `udp.srcport` or `icmp.udp.srcport`.
    pub fn full_name(&self) -> String {
        if self.inner {
            format!("icmp.{}", self.name)
        } else {
            self.name.to_owned()
        }
    }
}

/// The fields of `frame`, a frame of link type `link`.
pub fn dissect(link: LinkType, frame: &[u8]) -> Vec<Field<'_>> {
    let mut d = Dissector { fields: Vec::with_capacity(32), inner: false };
    let Some(offset) = link.ipv4_offset(frame) else {
        if link == LinkType::Ethernet && frame.len() >= 14 {
            d.ethernet(frame, 14);
            d.bytes("data", &frame[14..]);
        } else {
            d.bytes("frame", frame);
        }
        return d.fields;
    };
    if link == LinkType::Ethernet {
        d.ethernet(frame, offset);
    }
    let ip = &frame[offset..];
    let used = d.ipv4(ip);
    if used < ip.len() {
        d.bytes(if link == LinkType::Ethernet { "eth.padding" } else { "frame.trailer" }, &ip[used..]);
    }
    d.fields
}

struct Dissector<'a> {
    fields: Vec<Field<'a>>,
    /// Fields now pushed belong to the packet inside an ICMP error.
    inner: bool,
}

impl<'a> Dissector<'a> {
    fn push(&mut self, name: &'static str, value: Value<'a>, kind: Kind) {
        self.fields.push(Field { name, inner: self.inner, value, kind });
    }

    fn int(&mut self, name: &'static str, v: impl Into<u64>) {
        self.push(name, Value::Int(v.into()), Kind::Plain);
    }

    fn hex(&mut self, name: &'static str, v: impl Into<u64>, digits: u8) {
        self.push(name, Value::Hex { value: v.into(), digits }, Kind::Plain);
    }

    fn bytes(&mut self, name: &'static str, b: &'a [u8]) {
        if !b.is_empty() {
            self.push(name, Value::Bytes(b), Kind::Plain);
        }
    }

    fn port(&mut self, name: &'static str, port: u16, protocol: u8, addr: Ipv4Addr) {
        self.push(name, Value::Int(port.into()), Kind::Port { protocol, addr });
    }

    fn checksum(&mut self, name: &'static str, value: u16, correct: Option<u16>) {
        self.push(name, Value::Hex { value: value.into(), digits: 4 }, Kind::Checksum { correct });
    }

    /// The Ethernet header up to `offset`, where the payload starts (`frame.len() >= 14`).
    fn ethernet(&mut self, frame: &'a [u8], offset: usize) {
        let mac = |at: usize| {
            let mut m = [0u8; 6];
            m.copy_from_slice(&frame[at..at + 6]);
            Value::Mac(m)
        };
        self.push("eth.dst", mac(0), Kind::Plain);
        self.push("eth.src", mac(6), Kind::Plain);
        if offset > 14 {
            self.bytes("vlan", &frame[12..offset - 2]);
        }
        self.hex("eth.type", u16::from_be_bytes([frame[offset - 2], frame[offset - 1]]), 4);
    }

    /// An IPv4 packet at the start of `ip`; returns how many bytes of `ip` it covers (up to
    /// its total length; the rest is link-layer padding).
    fn ipv4(&mut self, ip: &'a [u8]) -> usize {
        let Ok(h) = Ipv4HeaderSlice::from_slice(ip) else {
            self.bytes("ip", ip);
            return ip.len();
        };
        let header = h.slice();
        let hlen = header.len();
        let total = usize::from(h.total_len());
        // What the packet covers of `ip`: its total length, or what the capture kept of it.
        let end = total.clamp(hlen, ip.len());
        let complete = total >= hlen && total <= ip.len();
        let (src, dst) = (h.source_addr(), h.destination_addr());
        self.int("ip.version", h.version());
        self.int("ip.hdr_len", u64::from(h.ihl()) * 4);
        self.hex("ip.dsfield", header[1], 2);
        self.int("ip.len", h.total_len());
        self.hex("ip.id", h.identification(), 4);
        self.hex("ip.flags", header[6] >> 5, 1);
        let frag_offset = h.fragments_offset().value();
        self.int("ip.frag_offset", u64::from(frag_offset) * 8);
        self.int("ip.ttl", h.ttl());
        self.int("ip.proto", h.protocol().0);
        let correct = Sum16BitWords::new().add_slice(&header[..10]).add_slice(&header[12..]).ones_complement().to_be();
        self.checksum("ip.checksum", h.header_checksum(), Some(correct));
        self.push("ip.src", Value::Addr(src), Kind::Plain);
        self.push("ip.dst", Value::Addr(dst), Kind::Plain);
        self.bytes("ip.options", h.options());
        let payload = &ip[hlen..end];
        // A fragment's checksum covers bytes other fragments carry; an inner packet is cut short.
        let whole = complete && !h.more_fragments() && frag_offset == 0 && !self.inner;
        if frag_offset != 0 {
            self.bytes("data", payload);
            return end;
        }
        match h.protocol().0 {
            UDP => self.udp(payload, src, dst, whole),
            TCP => self.tcp(payload, src, dst, whole),
            ICMP => self.icmp(payload, src, dst, whole),
            _ => self.bytes("ip.payload", payload),
        }
        end
    }

    fn udp(&mut self, l4: &'a [u8], src: Ipv4Addr, dst: Ipv4Addr, whole: bool) {
        if self.inner {
            return self.inner_transport(l4, UDP, src, dst);
        }
        let Ok(u) = UdpHeaderSlice::from_slice(l4) else {
            return self.bytes("udp.payload", l4);
        };
        let payload = &l4[8..];
        let correct = match u.checksum() {
            // No checksum (RFC 768): nothing to recompute, and zero is right.
            0 => Some(0),
            _ if whole && usize::from(u.length()) == l4.len() => {
                u.to_header().calc_checksum_ipv4_raw(src.octets(), dst.octets(), payload).ok()
            }
            _ => None,
        };
        self.port("udp.srcport", u.source_port(), UDP, src);
        self.port("udp.dstport", u.destination_port(), UDP, dst);
        self.int("udp.length", u.length());
        self.checksum("udp.checksum", u.checksum(), correct);
        self.bytes("udp.payload", payload);
    }

    fn tcp(&mut self, l4: &'a [u8], src: Ipv4Addr, dst: Ipv4Addr, whole: bool) {
        if self.inner {
            return self.inner_transport(l4, TCP, src, dst);
        }
        let Ok(t) = TcpHeaderSlice::from_slice(l4) else {
            return self.bytes("tcp.payload", l4);
        };
        let header = t.slice();
        let payload = &l4[header.len()..];
        let correct = if whole { t.calc_checksum_ipv4_raw(src.octets(), dst.octets(), payload).ok() } else { None };
        self.port("tcp.srcport", t.source_port(), TCP, src);
        self.port("tcp.dstport", t.destination_port(), TCP, dst);
        self.hex("tcp.seq_raw", t.sequence_number(), 8);
        self.hex("tcp.ack_raw", t.acknowledgment_number(), 8);
        self.int("tcp.hdr_len", header.len() as u64);
        self.hex("tcp.flags", u16::from_be_bytes([header[12], header[13]]) & 0x0fff, 3);
        self.int("tcp.window_size_value", t.window_size());
        self.checksum("tcp.checksum", t.checksum(), correct);
        self.int("tcp.urgent_pointer", t.urgent_pointer());
        self.bytes("tcp.options", &header[20..]);
        self.bytes("tcp.payload", payload);
    }

    /// The start of a TCP or UDP header inside an ICMP error, often only its first 8 bytes:
    /// the ports, then (UDP) length and checksum or (TCP) the sequence number, then the rest.
    fn inner_transport(&mut self, l4: &'a [u8], protocol: u8, src: Ipv4Addr, dst: Ipv4Addr) {
        let (name, src_name, dst_name) = match protocol {
            UDP => ("udp.payload", "udp.srcport", "udp.dstport"),
            _ => ("tcp.payload", "tcp.srcport", "tcp.dstport"),
        };
        if l4.len() < 4 {
            return self.bytes(name, l4);
        }
        self.port(src_name, u16::from_be_bytes([l4[0], l4[1]]), protocol, src);
        self.port(dst_name, u16::from_be_bytes([l4[2], l4[3]]), protocol, dst);
        if l4.len() < 8 {
            return self.bytes(name, &l4[4..]);
        }
        if protocol == UDP {
            self.int("udp.length", u16::from_be_bytes([l4[4], l4[5]]));
            self.checksum("udp.checksum", u16::from_be_bytes([l4[6], l4[7]]), None);
        } else {
            self.hex("tcp.seq_raw", u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]]), 8);
        }
        self.bytes(name, &l4[8..]);
    }

    fn icmp(&mut self, l4: &'a [u8], src: Ipv4Addr, dst: Ipv4Addr, whole: bool) {
        let parsed = if self.inner { None } else { Icmpv4Slice::from_slice(l4).ok() };
        if l4.len() < 8 || (!self.inner && parsed.is_none()) {
            return self.bytes("icmp.payload", l4);
        }
        let (kind, code) = (l4[0], l4[1]);
        let correct =
            whole.then(|| Sum16BitWords::new().add_slice(&l4[..2]).add_slice(&l4[4..]).ones_complement().to_be());
        self.int("icmp.type", kind);
        self.int("icmp.code", code);
        self.checksum("icmp.checksum", u16::from_be_bytes([l4[2], l4[3]]), correct);
        let body = &l4[8..];
        match kind {
            ICMP_ECHO_REQUEST | ICMP_ECHO_REPLY => {
                let querier = if kind == ICMP_ECHO_REQUEST { src } else { dst };
                self.port("icmp.ident", u16::from_be_bytes([l4[4], l4[5]]), ICMP, querier);
                self.int("icmp.seq", u16::from_be_bytes([l4[6], l4[7]]));
                self.bytes("data", body);
            }
            k if ICMP_ERRORS.contains(&k) && !self.inner => {
                self.hex("icmp.rest", u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]]), 8);
                self.inner = true;
                let used = self.ipv4(body);
                self.inner = false;
                self.bytes("data", &body[used..]);
            }
            _ => {
                self.hex("icmp.rest", u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]]), 8);
                self.bytes("data", body);
            }
        }
    }
}

/// One side of a flow: an address and, for TCP/UDP, a port, for an ICMP query, its
/// identifier (on the querier's side).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The address.
    pub addr: Ipv4Addr,
    /// The port or identifier, if the packet has one for this side.
    pub port: Option<u16>,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}:{p}", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

/// Who a packet is from and to, as the NAT sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    /// Source.
    pub src: Endpoint,
    /// Destination.
    pub dst: Endpoint,
    /// `udp`, `tcp`, `icmp` or `proto N`.
    pub protocol: Protocol,
}

/// An IP protocol, for display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protocol(pub u8);

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            ICMP => f.write_str("icmp"),
            TCP => f.write_str("tcp"),
            UDP => f.write_str("udp"),
            n => write!(f, "proto {n}"),
        }
    }
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {} {}", self.src, self.dst, self.protocol)
    }
}

fn find<'f, 'a>(fields: &'f [Field<'a>], name: &str, inner: bool) -> Option<&'f Field<'a>> {
    fields.iter().find(|f| f.name == name && f.inner == inner)
}

fn addr(fields: &[Field<'_>], name: &str, inner: bool) -> Option<Ipv4Addr> {
    match find(fields, name, inner)?.value {
        Value::Addr(a) => Some(a),
        _ => None,
    }
}

fn number(fields: &[Field<'_>], name: &str, inner: bool) -> Option<u64> {
    find(fields, name, inner)?.value.number()
}

fn port(fields: &[Field<'_>], name: &str, inner: bool) -> Option<u16> {
    number(fields, name, inner).and_then(|n| u16::try_from(n).ok())
}

/// The flow of the packet at one level (outer or inner) of `fields`.
fn flow_at(fields: &[Field<'_>], inner: bool) -> Option<Flow> {
    let src = addr(fields, "ip.src", inner)?;
    let dst = addr(fields, "ip.dst", inner)?;
    let protocol = u8::try_from(number(fields, "ip.proto", inner)?).ok()?;
    let (src_port, dst_port) = match protocol {
        UDP => (port(fields, "udp.srcport", inner), port(fields, "udp.dstport", inner)),
        TCP => (port(fields, "tcp.srcport", inner), port(fields, "tcp.dstport", inner)),
        ICMP => match (number(fields, "icmp.type", inner), port(fields, "icmp.ident", inner)) {
            (Some(t), id) if t == u64::from(ICMP_ECHO_REQUEST) => (id, None),
            (Some(t), id) if t == u64::from(ICMP_ECHO_REPLY) => (None, id),
            _ => (None, None),
        },
        _ => (None, None),
    };
    Some(Flow {
        src: Endpoint { addr: src, port: src_port },
        dst: Endpoint { addr: dst, port: dst_port },
        protocol: Protocol(protocol),
    })
}

/// The flow a packet belongs to, as the NAT translates it: its own addresses and ports, or,
/// for an ICMP error, those of the packet inside it, reversed (the error travels back along
/// that packet's flow, RFC 5508).
pub fn flow(fields: &[Field<'_>]) -> Option<Flow> {
    if fields.iter().any(|f| f.inner) {
        if let Some(inner) = flow_at(fields, true) {
            return Some(Flow { src: inner.dst, dst: inner.src, protocol: inner.protocol });
        }
    }
    flow_at(fields, false)
}

/// ICMP type names for the short form.
fn icmp_name(kind: u64) -> Option<&'static str> {
    Some(match kind {
        0 => "echo-reply",
        3 => "destination-unreachable",
        4 => "source-quench",
        5 => "redirect",
        8 => "echo-request",
        11 => "time-exceeded",
        12 => "parameter-problem",
        _ => return None,
    })
}

/// TCP flag names in header order from FIN up.
const TCP_FLAGS: [&str; 9] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "NS"];

/// A packet in one line, e.g. `10.100.0.2:40000 -> 198.51.100.7:53 udp`,
/// `10.100.10.11:45528 -> 203.0.113.10:8000 tcp [SYN]`,
/// `10.100.10.11 -> 203.0.113.10 icmp echo-request id 31 seq 1`,
/// `203.0.113.10 -> 203.0.113.1 icmp destination-unreachable code 3 for udp 203.0.113.1:1025 -> 203.0.113.10:9`.
pub fn brief(fields: &[Field<'_>]) -> String {
    let Some(outer) = flow_at(fields, false) else {
        return match find(fields, "eth.type", false).and_then(|f| f.value.number()) {
            Some(t) => format!("not IPv4 (ethertype 0x{t:04x})"),
            None => "not IPv4".to_owned(),
        };
    };
    // An ICMP identifier is shown as `id N` below, not as a port.
    let mut s = match outer.protocol.0 {
        ICMP => format!("{} -> {} icmp", outer.src.addr, outer.dst.addr),
        _ => outer.to_string(),
    };
    if let Some(offset) = number(fields, "ip.frag_offset", false).filter(|o| *o > 0) {
        s.push_str(&format!(" fragment offset {offset}"));
        return s;
    }
    if number(fields, "ip.flags", false).is_some_and(|f| f & 1 != 0) {
        s.push_str(" first fragment");
    }
    match outer.protocol.0 {
        TCP => {
            if let Some(flags) = number(fields, "tcp.flags", false) {
                let names: Vec<&str> =
                    TCP_FLAGS.iter().enumerate().filter(|(i, _)| flags & (1 << i) != 0).map(|(_, n)| *n).collect();
                s.push_str(&format!(" [{}]", names.join(",")));
            }
        }
        ICMP => {
            let Some(kind) = number(fields, "icmp.type", false) else { return s };
            match icmp_name(kind) {
                Some(name) => s.push_str(&format!(" {name}")),
                None => s.push_str(&format!(" type {kind}")),
            }
            if let Some(id) = port(fields, "icmp.ident", false) {
                let seq = number(fields, "icmp.seq", false).unwrap_or(0);
                s.push_str(&format!(" id {id} seq {seq}"));
            } else if let Some(code) = number(fields, "icmp.code", false).filter(|c| *c != 0) {
                s.push_str(&format!(" code {code}"));
            }
            if let Some(inner) = flow_at(fields, true) {
                s.push_str(&format!(" for {} {} -> {}", inner.protocol, inner.src, inner.dst));
            }
        }
        _ => {}
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// UDP 10.100.0.2:40000 -> 198.51.100.7:53, 4 bytes of payload, correct checksums.
    fn udp_packet() -> Vec<u8> {
        let payload = [1u8, 2, 3, 4];
        let builder = etherparse::PacketBuilder::ipv4([10, 100, 0, 2], [198, 51, 100, 7], 64).udp(40000, 53);
        let mut out = Vec::new();
        builder.write(&mut out, &payload).unwrap();
        out
    }

    fn names(fields: &[Field<'_>]) -> Vec<String> {
        fields.iter().map(Field::full_name).collect()
    }

    /// The bytes each field stands for, concatenated, for frames made of whole bytes fields
    /// and fixed-width numbers: equal to the frame when the fields cover every byte once.
    fn covered_len(fields: &[Field<'_>]) -> usize {
        fields
            .iter()
            .map(|f| match (f.name, f.value) {
                (_, Value::Bytes(b)) => b.len(),
                (_, Value::Mac(_)) => 6,
                (_, Value::Addr(_)) => 4,
                // version and hdr_len share a byte, as do flags and frag_offset.
                ("ip.version" | "ip.flags", _) => 0,
                ("ip.hdr_len" | "ip.dsfield" | "ip.ttl" | "ip.proto" | "icmp.type" | "icmp.code", _) => 1,
                ("tcp.hdr_len", _) => 1,
                ("tcp.flags", _) => 1,
                ("tcp.seq_raw" | "tcp.ack_raw" | "icmp.rest", _) => 4,
                _ => 2,
            })
            .sum()
    }

    #[test]
    fn udp_fields_have_wireshark_names_and_correct_checksums() {
        let p = udp_packet();
        let fields = dissect(LinkType::Raw, &p);
        assert_eq!(
            names(&fields),
            [
                "ip.version",
                "ip.hdr_len",
                "ip.dsfield",
                "ip.len",
                "ip.id",
                "ip.flags",
                "ip.frag_offset",
                "ip.ttl",
                "ip.proto",
                "ip.checksum",
                "ip.src",
                "ip.dst",
                "udp.srcport",
                "udp.dstport",
                "udp.length",
                "udp.checksum",
                "udp.payload"
            ]
        );
        assert_eq!(covered_len(&fields), p.len());
        for f in &fields {
            if let (Kind::Checksum { correct }, Some(v)) = (f.kind, f.value.number()) {
                assert_eq!(correct, Some(v as u16), "{} is correct as built", f.name);
            }
        }
        let port = fields.iter().find(|f| f.name == "udp.srcport").unwrap();
        assert_eq!(port.kind, Kind::Port { protocol: UDP, addr: Ipv4Addr::new(10, 100, 0, 2) });
        assert_eq!(brief(&fields), "10.100.0.2:40000 -> 198.51.100.7:53 udp");

        let mut bad = p.clone();
        bad[8] = 63; // TTL changed, checksums left.
        let fields = dissect(LinkType::Raw, &bad);
        let sum = fields.iter().find(|f| f.name == "ip.checksum").unwrap();
        let Kind::Checksum { correct: Some(c) } = sum.kind else { panic!("{sum:?}") };
        assert_ne!(u64::from(c), sum.value.number().unwrap(), "the stale checksum is seen as wrong");
    }

    #[test]
    fn icmp_error_fields_name_the_inner_packet_and_its_flow_is_reversed() {
        // 198.51.100.7 says port unreachable about 203.0.113.1:1025 -> 198.51.100.7:53 udp.
        let inner = {
            let p = etherparse::PacketBuilder::ipv4([203, 0, 113, 1], [198, 51, 100, 7], 64).udp(1025, 53);
            let mut out = Vec::new();
            p.write(&mut out, &[9u8; 12]).unwrap();
            out.truncate(28);
            out
        };
        let icmp = etherparse::PacketBuilder::ipv4([198, 51, 100, 7], [203, 0, 113, 1], 64).icmpv4_raw(3, 3, [0; 4]);
        let mut p = Vec::new();
        icmp.write(&mut p, &inner).unwrap();
        let fields = dissect(LinkType::Ipv4, &p);
        let n = names(&fields);
        for want in
            ["icmp.type", "icmp.rest", "icmp.ip.src", "icmp.ip.checksum", "icmp.udp.srcport", "icmp.udp.checksum"]
        {
            assert!(n.iter().any(|x| x == want), "{want} in {n:?}");
        }
        assert_eq!(covered_len(&fields), p.len());
        let icmp_sum = fields.iter().find(|f| f.name == "icmp.checksum").unwrap();
        assert_eq!(icmp_sum.kind, Kind::Checksum { correct: Some(icmp_sum.value.number().unwrap() as u16) });
        let inner_port = fields.iter().find(|f| f.inner && f.name == "udp.srcport").unwrap();
        assert_eq!(inner_port.kind, Kind::Port { protocol: UDP, addr: Ipv4Addr::new(203, 0, 113, 1) });
        let flow = flow(&fields).unwrap();
        assert_eq!(flow.to_string(), "198.51.100.7:53 -> 203.0.113.1:1025 udp");
        assert_eq!(
            brief(&fields),
            "198.51.100.7 -> 203.0.113.1 icmp destination-unreachable code 3 for udp 203.0.113.1:1025 -> 198.51.100.7:53"
        );
    }

    #[test]
    fn echo_tcp_ethernet_and_fragments() {
        let mut frame = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0];
        etherparse::PacketBuilder::ipv4([10, 100, 10, 11], [203, 0, 113, 10], 64)
            .icmpv4_echo_request(31, 1)
            .write(&mut frame, &[0; 8])
            .unwrap();
        frame.extend_from_slice(&[0; 6]); // Ethernet padding
        let fields = dissect(LinkType::Ethernet, &frame);
        assert_eq!(covered_len(&fields), frame.len());
        assert_eq!(fields.last().unwrap().name, "eth.padding");
        assert_eq!(brief(&fields), "10.100.10.11 -> 203.0.113.10 icmp echo-request id 31 seq 1");
        assert_eq!(flow(&fields).unwrap().src.port, Some(31), "the querier's side has the identifier");

        let mut tcp = Vec::new();
        etherparse::PacketBuilder::ipv4([10, 100, 10, 11], [203, 0, 113, 10], 64)
            .tcp(45528, 8000, 7, 1000)
            .syn()
            .write(&mut tcp, &[])
            .unwrap();
        let fields = dissect(LinkType::Raw, &tcp);
        assert_eq!(covered_len(&fields), tcp.len());
        assert_eq!(brief(&fields), "10.100.10.11:45528 -> 203.0.113.10:8000 tcp [SYN]");
        let sum = fields.iter().find(|f| f.name == "tcp.checksum").unwrap();
        assert_eq!(sum.kind, Kind::Checksum { correct: Some(sum.value.number().unwrap() as u16) });

        // A non-first fragment: its payload is data, and no checksum is claimed for it.
        let mut frag = udp_packet();
        frag[6] = 0x00;
        frag[7] = 0x01; // offset 8 bytes
        let fields = dissect(LinkType::Raw, &frag);
        assert_eq!(fields.last().unwrap().name, "data");
        assert!(brief(&fields).ends_with("udp fragment offset 8"), "{}", brief(&fields));
    }

    #[test]
    fn garbage_is_bytes_never_a_panic() {
        for frame in [&[][..], &[0x45][..], &[0x45, 0, 0, 200, 0, 0, 0, 0, 64, 17][..], &[0x4f; 30][..]] {
            for link in [LinkType::Raw, LinkType::Ipv4, LinkType::Ethernet] {
                let fields = dissect(link, frame);
                let _ = brief(&fields);
                let _ = flow(&fields);
            }
        }
        let arp = [vec![0xffu8; 6], vec![2, 0, 0, 0, 0, 1], vec![8, 6], vec![0; 28]].concat();
        let fields = dissect(LinkType::Ethernet, &arp);
        assert_eq!(brief(&fields), "not IPv4 (ethertype 0x0806)");
        assert_eq!(covered_len(&fields), arp.len());
    }

    proptest::proptest! {
        /// Any bytes: no panic, and the fields cover the frame exactly once.
        #[test]
        fn any_frame_dissects_and_is_covered(
            frame in proptest::collection::vec(proptest::num::u8::ANY, 0..120),
            raw in proptest::bool::ANY,
        ) {
            let mut frame = frame;
            if raw && !frame.is_empty() {
                frame[0] = 0x45;
            }
            let link = if raw { LinkType::Raw } else { LinkType::Ethernet };
            let fields = dissect(link, &frame);
            let _ = brief(&fields);
            proptest::prop_assert_eq!(covered_len(&fields), frame.len());
        }
    }
}
