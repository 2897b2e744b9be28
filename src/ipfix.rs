//! IPFIX export of the engine's session events (RFC 7011 messages carrying RFC 8158's NAT
//! event information elements), over UDP to a collector.
//!
//! [`Encoder`] is pure: events in, message bytes out, with the sequence number and the
//! template schedule as its only state (no socket, no clock: the caller passes the export
//! time). [`IpfixExporter`] is the I/O driver: an [`Encoder`] and a UDP socket connected to
//! the collector. Read RFC 7011 §3 (message format), §8.4 (templates over UDP) and RFC 8158
//! §4 (NAT event templates) first.
//!
//! # What is sent
//! Each message (at most [`MAX_MESSAGE_LEN`] bytes, so it fits an unfragmented UDP datagram
//! on any usual path) has the version 10 header (length, export time, the sequence number,
//! which counts the data records sent before this message, and the observation domain), then
//! a Template Set (set ID 2) when templates are due, then Data Sets. Templates go in the first
//! message and again every [`TEMPLATE_REFRESH_MESSAGES`] messages or
//! [`TEMPLATE_REFRESH_SECS`] of export time, whichever comes first (RFC 7011 §8.4: a UDP
//! collector may have restarted or lost them). A batch that does not fit one message is split
//! between records.
//!
//! One template per kind of event, as RFC 8158 §4 does, so no record carries a field that has
//! no value for its event:
//!
//! | template | events (natEvent) | fields |
//! |---|---|---|
//! | 256 session | session create (4) / delete (5) | 323 observationTimeMilliseconds, 230 natEvent, 4 protocolIdentifier, 8 sourceIPv4Address, 7 sourceTransportPort, 225 postNATSourceIPv4Address, 227 postNAPTSourceTransportPort, 12 destinationIPv4Address, 11 destinationTransportPort, 284 natPoolName |
//! | 257 mapping (BIB) | NAT44 BIB create (8) / delete (9) | as 256 without 12 and 11 |
//! | 258 ports exhausted | NAT ports exhausted (12) | as 256 without 225 and 227 (no port was found) |
//! | 259 quota exceeded | quota exceeded (13) | as 256 plus 466 natQuotaExceededEvent |
//!
//! The internal endpoint is the source, the mapping's external endpoint the post-NAT source,
//! the remote the destination; ICMP carries the query identifier as the port (as the engine
//! does). A session whose remote is unknown, or a refused session whose mapping did not
//! exist yet, sends 0.0.0.0 / 0 for the missing endpoint.
//!
//! natQuotaExceededEvent (IANA): 1 "maximum session entries" for `session_limit` (the NAT's
//! session table is full) and for `inbound_session_limit` (the mapping's cap on inbound
//! sessions: a session-count limit scoped to one mapping, whose external endpoint the record
//! carries, which tells the two apart); 3 "maximum entries per user" for
//! `host_session_limit`. The limits' values (maxSessionEntries 471 ...) are not sent: the
//! engine's event does not carry them.
//!
//! The NAT's name (a NetNat `Name`) goes as natPoolName (284, a variable-length string, cut
//! to [`MAX_NAME_LEN`] bytes): a NetNat has one external prefix, its pool. The end reason of
//! a delete (idle, TCP close, removed) has no IANA element and is not sent.
//!
//! # What a collector shows
//! nfdump 1.7.1 (Debian's `nfdump` package) decodes 323 (its event time), 230, 4, 8, 7, 225,
//! 227, 12 and 11, and ignores 284 and 466 (it has no field for them; the records are kept).
//! For ICMP records it lists no source port (it reads an ICMP record's ports as type and
//! code), so the query identifier sent in 7 does not show there; 227 (the translated
//! identifier) does. Its JSON prints milliseconds without leading zeros (`20.1` is 20.001 s).
//! Run a collector and read what it wrote:
//! ```text
//! nfcapd -w /tmp/nf -p 4739 -b 127.0.0.1   # one file per 5 min; SIGTERM closes and renames
//!                                          # nfcapd.current.* to nfcapd.YYYYMMDDhhmm
//! nfdump -R /tmp/nf -o nel                 # a table, or -o json for one object per record
//! ```
//! A session create, in `-o nel` (nfdump 1.7.1's text formats print "UNKNOW" for every RFC
//! 8158 natEvent value; its `-o json` names them, `"nat_event" : "NAT44 session create"`):
//! ```text
//! 2023-11-14 22:13:20.123  UNKNOW UDP        10.100.1.10:50000 ->    198.51.100.20:443        203.0.113.9:61000 ->          0.0.0.0:0
//! ```
//! The columns are the event time, natEvent, protocol, internal -> remote, and the external
//! endpoint ("X-Src"; "X-Dst" stays 0.0.0.0:0, as this NAT does not rewrite destinations).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};

use netnat_engine::{DropReason, Event, EventKind};

#[cfg(test)]
mod tests;

/// The largest message sent, in bytes: an IPv4 + UDP datagram of it fits a 1500-byte MTU,
/// with room for tunnel headers.
pub const MAX_MESSAGE_LEN: usize = 1400;

/// Templates are sent again after this many messages without them (RFC 7011 §8.4).
pub const TEMPLATE_REFRESH_MESSAGES: u32 = 20;

/// Templates are sent again when this much export time has passed since they were last sent.
pub const TEMPLATE_REFRESH_SECS: u32 = 60;

/// The longest NAT name sent, in bytes (longer names are cut at a character boundary): it
/// keeps the one-byte length form of a variable-length field (RFC 7011 §7).
pub const MAX_NAME_LEN: usize = 254;

const VERSION: u16 = 10;
const SET_HEADER_LEN: usize = 4;
const TEMPLATE_SET_ID: u16 = 2;
/// Field length meaning "variable" in a template (RFC 7011 §7).
const VARIABLE_LENGTH: u16 = 0xffff;

/// IANA information element identifiers used here.
mod ie {
    pub const PROTOCOL_IDENTIFIER: u16 = 4;
    pub const SOURCE_TRANSPORT_PORT: u16 = 7;
    pub const SOURCE_IPV4_ADDRESS: u16 = 8;
    pub const DESTINATION_TRANSPORT_PORT: u16 = 11;
    pub const DESTINATION_IPV4_ADDRESS: u16 = 12;
    pub const POST_NAT_SOURCE_IPV4_ADDRESS: u16 = 225;
    pub const POST_NAPT_SOURCE_TRANSPORT_PORT: u16 = 227;
    pub const NAT_EVENT: u16 = 230;
    pub const NAT_POOL_NAME: u16 = 284;
    pub const OBSERVATION_TIME_MILLISECONDS: u16 = 323;
    pub const NAT_QUOTA_EXCEEDED_EVENT: u16 = 466;
}

/// IANA natEvent values (RFC 8158 §4.1, Table 1).
mod nat_event {
    pub const NAT44_SESSION_CREATE: u8 = 4;
    pub const NAT44_SESSION_DELETE: u8 = 5;
    pub const NAT44_BIB_CREATE: u8 = 8;
    pub const NAT44_BIB_DELETE: u8 = 9;
    pub const NAT_PORTS_EXHAUSTED: u8 = 12;
    pub const QUOTA_EXCEEDED: u8 = 13;
}

/// IANA natQuotaExceededEvent values (RFC 8158 §4.1.1).
mod quota_event {
    pub const MAXIMUM_SESSION_ENTRIES: u32 = 1;
    pub const MAXIMUM_ENTRIES_PER_USER: u32 = 3;
}

/// One field of a record: which element, and what the record holds for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    TimeMs,
    NatEvent,
    Protocol,
    Internal,
    External,
    Remote,
    Name,
    QuotaEvent,
}

impl Field {
    /// The field specifiers it stands for: (element ID, length).
    fn specs(self) -> &'static [(u16, u16)] {
        match self {
            Field::TimeMs => &[(ie::OBSERVATION_TIME_MILLISECONDS, 8)],
            Field::NatEvent => &[(ie::NAT_EVENT, 1)],
            Field::Protocol => &[(ie::PROTOCOL_IDENTIFIER, 1)],
            Field::Internal => &[(ie::SOURCE_IPV4_ADDRESS, 4), (ie::SOURCE_TRANSPORT_PORT, 2)],
            Field::External => &[(ie::POST_NAT_SOURCE_IPV4_ADDRESS, 4), (ie::POST_NAPT_SOURCE_TRANSPORT_PORT, 2)],
            Field::Remote => &[(ie::DESTINATION_IPV4_ADDRESS, 4), (ie::DESTINATION_TRANSPORT_PORT, 2)],
            Field::Name => &[(ie::NAT_POOL_NAME, VARIABLE_LENGTH)],
            Field::QuotaEvent => &[(ie::NAT_QUOTA_EXCEEDED_EVENT, 4)],
        }
    }
}

/// The templates, one per kind of event (see the module doc's table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Template {
    Session,
    Mapping,
    PortsExhausted,
    QuotaExceeded,
}

impl Template {
    const ALL: [Template; 4] =
        [Template::Session, Template::Mapping, Template::PortsExhausted, Template::QuotaExceeded];

    /// The template ID (data set ID): 256 and up (RFC 7011 §3.4.1).
    fn id(self) -> u16 {
        match self {
            Template::Session => 256,
            Template::Mapping => 257,
            Template::PortsExhausted => 258,
            Template::QuotaExceeded => 259,
        }
    }

    fn fields(self) -> &'static [Field] {
        use Field::*;
        match self {
            Template::Session => &[TimeMs, NatEvent, Protocol, Internal, External, Remote, Name],
            Template::Mapping => &[TimeMs, NatEvent, Protocol, Internal, External, Name],
            Template::PortsExhausted => &[TimeMs, NatEvent, Protocol, Internal, Remote, Name],
            Template::QuotaExceeded => &[TimeMs, NatEvent, QuotaEvent, Protocol, Internal, External, Remote, Name],
        }
    }

    /// Appends the template record: ID, field count, field specifiers.
    fn write_record(self, out: &mut Vec<u8>) {
        let specs: Vec<(u16, u16)> = self.fields().iter().flat_map(|f| f.specs().iter().copied()).collect();
        put_u16(out, self.id());
        put_u16(out, specs.len() as u16);
        for (id, len) in specs {
            put_u16(out, id);
            put_u16(out, len);
        }
    }
}

/// One event to export, with what the engine's event does not know: the wall-clock time and
/// the NAT it came from.
#[derive(Clone, Copy, Debug)]
pub struct ExportedEvent<'a> {
    /// When it happened, in milliseconds since the Unix epoch (observationTimeMilliseconds).
    pub epoch_ms: u64,
    /// The NAT's name (natPoolName).
    pub nat_name: &'a str,
    /// The engine's event.
    pub event: Event,
}

impl ExportedEvent<'_> {
    /// The template and natEvent value of the event.
    fn template_and_nat_event(&self) -> (Template, u8) {
        match self.event.kind {
            EventKind::SessionCreated => (Template::Session, nat_event::NAT44_SESSION_CREATE),
            EventKind::SessionDeleted(_) => (Template::Session, nat_event::NAT44_SESSION_DELETE),
            EventKind::MappingCreated => (Template::Mapping, nat_event::NAT44_BIB_CREATE),
            EventKind::MappingDeleted(_) => (Template::Mapping, nat_event::NAT44_BIB_DELETE),
            EventKind::PortsExhausted => (Template::PortsExhausted, nat_event::NAT_PORTS_EXHAUSTED),
            EventKind::LimitReached(_) => (Template::QuotaExceeded, nat_event::QUOTA_EXCEEDED),
        }
    }

    /// Appends the data record for template `t`.
    fn write_record(&self, t: Template, nat_event: u8, out: &mut Vec<u8>) {
        let e = &self.event;
        let unspecified = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
        let endpoint = |out: &mut Vec<u8>, ep: SocketAddrV4| {
            out.extend_from_slice(&ep.ip().octets());
            put_u16(out, ep.port());
        };
        for field in t.fields() {
            match field {
                Field::TimeMs => out.extend_from_slice(&self.epoch_ms.to_be_bytes()),
                Field::NatEvent => out.push(nat_event),
                Field::Protocol => out.push(e.protocol.number()),
                Field::Internal => endpoint(out, e.internal),
                Field::External => endpoint(out, e.external.unwrap_or(unspecified)),
                Field::Remote => endpoint(out, e.remote.unwrap_or(unspecified)),
                Field::QuotaEvent => out.extend_from_slice(&quota_event(e.kind).to_be_bytes()),
                Field::Name => {
                    let name = truncated(self.nat_name, MAX_NAME_LEN);
                    // At most MAX_NAME_LEN (254) bytes: the one-byte length form.
                    out.push(name.len() as u8);
                    out.extend_from_slice(name.as_bytes());
                }
            }
        }
    }
}

/// The natQuotaExceededEvent value for a limit (see the module doc).
fn quota_event(kind: EventKind) -> u32 {
    match kind {
        EventKind::LimitReached(DropReason::HostSessionLimit) => quota_event::MAXIMUM_ENTRIES_PER_USER,
        // session_limit, inbound_session_limit, and any limit added later.
        _ => quota_event::MAXIMUM_SESSION_ENTRIES,
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
fn truncated(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Writes `v` at `at` (a length field reserved earlier).
fn set_u16(buf: &mut [u8], at: usize, v: u16) {
    buf[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Turns batches of events into IPFIX messages: the sequence number and the template
/// schedule of one observation domain's stream. Pure: no socket, no clock.
///
/// Call [`Encoder::encode`] with export times that do not go backwards; if one does, the
/// templates are sent again (the safe side).
#[derive(Debug)]
pub struct Encoder {
    observation_domain: u32,
    /// Data records sent so far, modulo 2^32 (the next message's sequence number).
    sequence: u32,
    /// When and after how many messages templates were last sent; `None` before the first.
    templates_sent: Option<TemplatesSent>,
}

#[derive(Clone, Copy, Debug)]
struct TemplatesSent {
    export_time_secs: u32,
    messages_since: u32,
}

impl Encoder {
    /// A stream for `observation_domain`, starting at sequence number 0 with templates due.
    pub fn new(observation_domain: u32) -> Self {
        Encoder { observation_domain, sequence: 0, templates_sent: None }
    }

    /// The next message's sequence number: data records encoded so far, modulo 2^32.
    #[cfg(test)]
    pub fn sequence(&self) -> u32 {
        self.sequence
    }

    /// The messages for `events`, in order, each at most [`MAX_MESSAGE_LEN`] bytes. No events
    /// and no templates due: no message. No events but templates due: one message with just
    /// the templates (so a collector learns them early).
    pub fn encode(&mut self, export_time_secs: u32, events: &[ExportedEvent<'_>]) -> Vec<Vec<u8>> {
        let mut messages = Vec::new();
        let mut events = events.iter().peekable();
        loop {
            let templates = self.templates_due(export_time_secs);
            if events.peek().is_none() && !templates {
                break;
            }
            let mut msg = Vec::with_capacity(MAX_MESSAGE_LEN);
            put_u16(&mut msg, VERSION);
            put_u16(&mut msg, 0); // length, set below
            msg.extend_from_slice(&export_time_secs.to_be_bytes());
            msg.extend_from_slice(&self.sequence.to_be_bytes());
            msg.extend_from_slice(&self.observation_domain.to_be_bytes());
            if templates {
                let start = msg.len();
                put_u16(&mut msg, TEMPLATE_SET_ID);
                put_u16(&mut msg, 0);
                for t in Template::ALL {
                    t.write_record(&mut msg);
                }
                let len = (msg.len() - start) as u16;
                set_u16(&mut msg, start + 2, len);
            }
            // Data sets: one per run of events with the same template.
            let mut open_set: Option<(Template, usize)> = None;
            let mut record = Vec::new();
            let mut records = 0u32;
            while let Some(event) = events.peek() {
                let (t, nat_event) = event.template_and_nat_event();
                record.clear();
                event.write_record(t, nat_event, &mut record);
                let new_set = open_set.is_none_or(|(open, _)| open != t);
                let needed = record.len() + if new_set { SET_HEADER_LEN } else { 0 };
                if msg.len() + needed > MAX_MESSAGE_LEN {
                    // A record always fits a message with no record yet (header, templates,
                    // set header and even two of the longest records take 762 bytes: the test
                    // long_nat_names_are_cut_at_a_character_boundary), so this ends a message
                    // that holds at least one record and the loop moves on.
                    break;
                }
                if new_set {
                    close_set(&mut msg, open_set);
                    open_set = Some((t, msg.len()));
                    put_u16(&mut msg, t.id());
                    put_u16(&mut msg, 0);
                }
                msg.extend_from_slice(&record);
                records += 1;
                events.next();
            }
            close_set(&mut msg, open_set);
            let len = msg.len() as u16;
            set_u16(&mut msg, 2, len);
            self.sequence = self.sequence.wrapping_add(records);
            self.templates_sent = Some(match (templates, self.templates_sent) {
                (false, Some(s)) => TemplatesSent { messages_since: s.messages_since + 1, ..s },
                _ => TemplatesSent { export_time_secs, messages_since: 1 },
            });
            messages.push(msg);
        }
        messages
    }

    /// Whether the next message carries the templates.
    fn templates_due(&self, export_time_secs: u32) -> bool {
        match self.templates_sent {
            None => true,
            Some(s) => {
                s.messages_since >= TEMPLATE_REFRESH_MESSAGES
                    || export_time_secs < s.export_time_secs
                    || export_time_secs - s.export_time_secs >= TEMPLATE_REFRESH_SECS
            }
        }
    }
}

/// Writes the length of the data set opened at `open` (if any), now that it is complete.
fn close_set(msg: &mut [u8], open: Option<(Template, usize)>) {
    if let Some((_, start)) = open {
        let len = (msg.len() - start) as u16;
        set_u16(msg, start + 2, len);
    }
}

/// Sends events to an IPFIX collector over UDP: an [`Encoder`] and a socket connected to the
/// collector.
#[derive(Debug)]
pub struct IpfixExporter {
    socket: UdpSocket,
    encoder: Encoder,
}

impl IpfixExporter {
    /// An exporter from an ephemeral local port to `collector`, for `observation_domain`.
    pub fn new(collector: SocketAddr, observation_domain: u32) -> std::io::Result<Self> {
        let local: SocketAddr = match collector {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local)?;
        socket.connect(collector)?;
        Ok(IpfixExporter { socket, encoder: Encoder::new(observation_domain) })
    }

    /// Encodes `events` and sends the messages, one datagram each. An error from the socket
    /// (the collector's port unreachable, reported on a later send) is returned after the
    /// sequence number has counted the batch: the collector sees the loss as a gap, as RFC
    /// 7011 §10.3.2 intends.
    pub fn export(&mut self, export_time_secs: u32, events: &[ExportedEvent<'_>]) -> std::io::Result<()> {
        let mut result = Ok(());
        for msg in self.encoder.encode(export_time_secs, events) {
            if let Err(e) = self.socket.send(&msg) {
                result = result.and(Err(e));
            }
        }
        result
    }
}
