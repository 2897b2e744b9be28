//! The encoder read back by an independent minimal IPFIX parser (written from RFC 7011 §3,
//! not from the encoder's tables), and the exporter checked against a real collector
//! (nfdump's nfcapd).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use netnat_engine::{DropReason, EndReason, Event, EventKind, Instant, Protocol};

use super::*;

// ---- an independent parser ----

/// A parsed message.
#[derive(Debug)]
struct Message {
    len: usize,
    export_time: u32,
    sequence: u32,
    domain: u32,
    /// (set ID, set length) in order.
    sets: Vec<(u16, usize)>,
    /// Template ID -> field specifiers (element ID, length).
    templates: Vec<(u16, Vec<(u16, u16)>)>,
    /// (template ID, element ID -> value bytes) per data record, in order.
    records: Vec<(u16, HashMap<u16, Vec<u8>>)>,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

/// Parses `msg`, decoding data sets with `known` templates (from earlier messages) and the
/// message's own; panics on anything malformed.
fn parse(msg: &[u8], known: &mut HashMap<u16, Vec<(u16, u16)>>) -> Message {
    assert!(msg.len() >= 16, "short message");
    assert_eq!(be16(msg, 0), 10, "version");
    let len = be16(msg, 2) as usize;
    assert_eq!(len, msg.len(), "message length field");
    let mut m = Message {
        len,
        export_time: be32(msg, 4),
        sequence: be32(msg, 8),
        domain: be32(msg, 12),
        sets: vec![],
        templates: vec![],
        records: vec![],
    };
    let mut at = 16;
    while at < len {
        assert!(at + 4 <= len, "set header past the end");
        let (id, set_len) = (be16(msg, at), be16(msg, at + 2) as usize);
        assert!(set_len >= 4 && at + set_len <= len, "set length {set_len} at {at}");
        m.sets.push((id, set_len));
        let body = &msg[at + 4..at + set_len];
        if id == 2 {
            let mut p = 0;
            while p + 4 <= body.len() {
                let (tid, count) = (be16(body, p), be16(body, p + 2) as usize);
                p += 4;
                let specs: Vec<(u16, u16)> =
                    (0..count).map(|i| (be16(body, p + 4 * i), be16(body, p + 4 * i + 2))).collect();
                assert!(specs.iter().all(|(id, _)| id & 0x8000 == 0), "no enterprise elements");
                p += 4 * count;
                known.insert(tid, specs.clone());
                m.templates.push((tid, specs));
            }
            assert_eq!(p, body.len(), "template set padding");
        } else {
            assert!(id >= 256, "data set ID {id}");
            let specs = known.get(&id).unwrap_or_else(|| panic!("data set {id} before its template"));
            let mut p = 0;
            while p < body.len() {
                let mut values = HashMap::new();
                for &(ie, flen) in specs {
                    let (start, n) = if flen == 0xffff {
                        let n = body[p] as usize;
                        assert_ne!(n, 255, "long form not expected");
                        (p + 1, n)
                    } else {
                        (p, flen as usize)
                    };
                    values.insert(ie, body[start..start + n].to_vec());
                    p = start + n;
                }
                assert!(p <= body.len(), "record past the set's end");
                m.records.push((id, values));
            }
        }
        at += set_len;
    }
    m
}

fn parse_all(msgs: &[Vec<u8>]) -> Vec<Message> {
    let mut known = HashMap::new();
    msgs.iter().map(|m| parse(m, &mut known)).collect()
}

// ---- fixtures ----

fn ep(a: [u8; 4], port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(a), port)
}

fn event(
    kind: EventKind,
    protocol: Protocol,
    internal: SocketAddrV4,
    external: Option<SocketAddrV4>,
    remote: Option<SocketAddrV4>,
) -> Event {
    Event { time: Instant::from_secs(1), kind, protocol, internal, external, remote }
}

const EPOCH_MS: u64 = 1_700_000_000_123;

fn exported(event: Event) -> ExportedEvent<'static> {
    ExportedEvent { epoch_ms: EPOCH_MS, nat_name: "nat0", event }
}

/// A mapping created with a session, and both deleted.
fn udp_lifecycle(i: u16) -> [Event; 4] {
    let internal = ep([10, 100, 0, 2], 5000 + i);
    let external = Some(ep([203, 0, 113, 1], 40000 + i));
    let remote = Some(ep([198, 51, 100, 7], 53));
    let p = Protocol::Udp;
    [
        event(EventKind::MappingCreated, p, internal, external, None),
        event(EventKind::SessionCreated, p, internal, external, remote),
        event(EventKind::SessionDeleted(EndReason::IdleTimeout), p, internal, external, remote),
        event(EventKind::MappingDeleted(EndReason::IdleTimeout), p, internal, external, None),
    ]
}

fn value_u(v: &HashMap<u16, Vec<u8>>, ie: u16) -> u64 {
    v[&ie].iter().fold(0u64, |acc, &b| acc << 8 | b as u64)
}

fn value_addr(v: &HashMap<u16, Vec<u8>>, ie: u16) -> Ipv4Addr {
    Ipv4Addr::from(<[u8; 4]>::try_from(v[&ie].as_slice()).unwrap())
}

// ---- encoding ----

#[test]
fn first_message_has_header_templates_then_data() {
    let mut enc = Encoder::new(7);
    let events: Vec<_> = udp_lifecycle(0).into_iter().map(exported).collect();
    let msgs = enc.encode(1_700_000_000, &events);
    assert_eq!(msgs.len(), 1);
    let m = &parse_all(&msgs)[0];
    assert_eq!((m.export_time, m.sequence, m.domain, m.len), (1_700_000_000, 0, 7, msgs[0].len()));
    // Templates, then one data set per run of one template: mapping, session (x2), mapping.
    let ids: Vec<u16> = m.sets.iter().map(|s| s.0).collect();
    assert_eq!(ids, [2, 257, 256, 257]);
    let session = [(323, 8), (230, 1), (4, 1), (8, 4), (7, 2), (225, 4), (227, 2), (12, 4), (11, 2), (284, 0xffff)];
    let mapping = [(323, 8), (230, 1), (4, 1), (8, 4), (7, 2), (225, 4), (227, 2), (284, 0xffff)];
    let ports = [(323, 8), (230, 1), (4, 1), (8, 4), (7, 2), (12, 4), (11, 2), (284, 0xffff)];
    let quota =
        [(323, 8), (230, 1), (466, 4), (4, 1), (8, 4), (7, 2), (225, 4), (227, 2), (12, 4), (11, 2), (284, 0xffff)];
    assert_eq!(
        m.templates,
        [(256, session.to_vec()), (257, mapping.to_vec()), (258, ports.to_vec()), (259, quota.to_vec())]
    );
    assert_eq!(enc.sequence(), 4);
}

#[test]
fn record_values_round_trip() {
    let mut enc = Encoder::new(1);
    let [created, session, ..] = udp_lifecycle(3);
    let events = [exported(created), exported(session)];
    let m = &parse_all(&enc.encode(100, &events))[0];
    let (tid, bib) = &m.records[0];
    assert_eq!(*tid, 257);
    assert_eq!(value_u(bib, 323), EPOCH_MS);
    assert_eq!(value_u(bib, 230), 8, "NAT44 BIB create");
    assert_eq!(value_u(bib, 4), 17);
    assert_eq!((value_addr(bib, 8), value_u(bib, 7)), (Ipv4Addr::new(10, 100, 0, 2), 5003));
    assert_eq!((value_addr(bib, 225), value_u(bib, 227)), (Ipv4Addr::new(203, 0, 113, 1), 40003));
    assert_eq!(bib[&284], b"nat0");
    assert!(!bib.contains_key(&12), "a mapping has no remote");
    let (tid, s) = &m.records[1];
    assert_eq!((*tid, value_u(s, 230)), (256, 4), "NAT44 session create");
    assert_eq!((value_addr(s, 12), value_u(s, 11)), (Ipv4Addr::new(198, 51, 100, 7), 53));
}

#[test]
fn nat_events_and_quota_values() {
    let internal = ep([10, 100, 0, 9], 7000);
    let remote = Some(ep([198, 51, 100, 1], 443));
    let external = Some(ep([203, 0, 113, 5], 1234));
    let t = Protocol::Tcp;
    let cases = [
        (event(EventKind::SessionDeleted(EndReason::TcpClosed), t, internal, external, remote), 256, 5, None),
        (event(EventKind::MappingDeleted(EndReason::Removed), t, internal, external, None), 257, 9, None),
        (event(EventKind::PortsExhausted, t, internal, None, remote), 258, 12, None),
        (event(EventKind::LimitReached(DropReason::SessionLimit), t, internal, None, remote), 259, 13, Some(1)),
        (event(EventKind::LimitReached(DropReason::HostSessionLimit), t, internal, None, remote), 259, 13, Some(3)),
        (
            event(EventKind::LimitReached(DropReason::InboundSessionLimit), t, internal, external, remote),
            259,
            13,
            Some(1),
        ),
    ];
    let events: Vec<_> = cases.iter().map(|c| exported(c.0)).collect();
    let m = &parse_all(&Encoder::new(1).encode(5, &events))[0];
    assert_eq!(m.records.len(), cases.len());
    for ((_, tid, nat_event, quota), (got_tid, v)) in cases.iter().zip(&m.records) {
        assert_eq!((got_tid, value_u(v, 230)), (tid, *nat_event as u64));
        assert_eq!(v.get(&466).map(|_| value_u(v, 466)), quota.map(|q: u64| q));
        assert_eq!(value_addr(v, 8), Ipv4Addr::new(10, 100, 0, 9));
    }
    // A limit before the mapping existed: external 0.0.0.0:0; the inbound one carries it.
    let limit = &m.records[3].1;
    assert_eq!((value_addr(limit, 225), value_u(limit, 227)), (Ipv4Addr::UNSPECIFIED, 0));
    let inbound = &m.records[5].1;
    assert_eq!((value_addr(inbound, 225), value_u(inbound, 227)), (Ipv4Addr::new(203, 0, 113, 5), 1234));
    // Ports exhausted sends no external endpoint at all.
    assert!(!m.records[2].1.contains_key(&225));
}

#[test]
fn sequence_counts_data_records_across_messages() {
    let mut enc = Encoder::new(1);
    let mut expected = 0u32;
    for batch in 0..5u16 {
        let events: Vec<_> = (0..batch * 3).flat_map(udp_lifecycle).map(exported).collect();
        let msgs = enc.encode(10, &events);
        for m in parse_all_with_templates(&msgs) {
            assert_eq!(m.sequence, expected);
            expected += m.records.len() as u32;
        }
        assert_eq!(enc.sequence(), expected);
    }
    assert_eq!(expected, (0..5).map(|b| b * 3 * 4).sum::<u32>());
}

/// Parses messages that may rely on templates from before them (all four are known here).
fn parse_all_with_templates(msgs: &[Vec<u8>]) -> Vec<Message> {
    let mut known = HashMap::new();
    for t in Template::ALL {
        let mut rec = Vec::new();
        t.write_record(&mut rec);
        let count = be16(&rec, 2) as usize;
        known.insert(t.id(), (0..count).map(|i| (be16(&rec, 4 + 4 * i), be16(&rec, 6 + 4 * i))).collect());
    }
    msgs.iter().map(|m| parse(m, &mut known)).collect()
}

#[test]
fn sequence_wraps_modulo_2_32() {
    let mut enc = Encoder::new(1);
    enc.sequence = u32::MAX - 1;
    let events: Vec<_> = udp_lifecycle(0).into_iter().map(exported).collect();
    let m = &parse_all(&enc.encode(1, &events))[0];
    assert_eq!(m.sequence, u32::MAX - 1);
    assert_eq!(enc.sequence(), 2);
}

#[test]
fn large_batch_is_split_under_the_size_bound_without_losing_records() {
    let mut enc = Encoder::new(1);
    let events: Vec<_> = (0..500).flat_map(udp_lifecycle).map(exported).collect();
    let msgs = enc.encode(10, &events);
    assert!(msgs.len() > 1);
    assert!(msgs.iter().all(|m| m.len() <= MAX_MESSAGE_LEN), "{:?}", msgs.iter().map(Vec::len).max());
    // Not wastefully small either: every message but the last is nearly full.
    let longest_record = 8 + 1 + 1 + 18 + 1 + 4;
    for m in &msgs[..msgs.len() - 1] {
        assert!(m.len() + longest_record + 4 > MAX_MESSAGE_LEN, "{} bytes", m.len());
    }
    let parsed = parse_all(&msgs);
    let records: Vec<_> = parsed.iter().flat_map(|m| &m.records).collect();
    assert_eq!(records.len(), events.len());
    // In order: the source ports follow the events'.
    for (r, e) in records.iter().zip(&events) {
        assert_eq!(value_u(&r.1, 7), e.event.internal.port() as u64);
    }
    let mut expected = 0;
    for m in &parsed {
        assert_eq!(m.sequence, expected);
        expected += m.records.len() as u32;
    }
}

#[test]
fn templates_are_resent_every_n_messages_and_after_60_s() {
    let mut enc = Encoder::new(1);
    let one = [exported(udp_lifecycle(0)[0])];
    let has_templates = |msgs: &[Vec<u8>]| -> Vec<bool> {
        parse_all_with_templates(msgs).iter().map(|m| m.sets.first().map(|s| s.0) == Some(2)).collect()
    };
    let mut seen = vec![];
    for _ in 0..(2 * TEMPLATE_REFRESH_MESSAGES + 1) {
        seen.extend(has_templates(&enc.encode(100, &one)));
    }
    let at: Vec<usize> = seen.iter().enumerate().filter(|(_, &t)| t).map(|(i, _)| i).collect();
    let n = TEMPLATE_REFRESH_MESSAGES as usize;
    assert_eq!(at, [0, n, 2 * n]);
    // By time: 59 s later not yet, 60 s after the last templates yes.
    let mut enc = Encoder::new(1);
    assert_eq!(has_templates(&enc.encode(1000, &one)), [true]);
    assert_eq!(has_templates(&enc.encode(1059, &one)), [false]);
    assert_eq!(has_templates(&enc.encode(1060, &one)), [true]);
    // A clock stepped back: templates again.
    assert_eq!(has_templates(&enc.encode(900, &one)), [true]);
}

#[test]
fn empty_batch_sends_templates_only_when_due() {
    let mut enc = Encoder::new(1);
    let msgs = enc.encode(10, &[]);
    assert_eq!(msgs.len(), 1);
    let m = &parse_all(&msgs)[0];
    assert_eq!((m.sets.len(), m.sets[0].0, m.records.len()), (1, 2, 0));
    assert!(enc.encode(11, &[]).is_empty());
    assert_eq!(enc.encode(70, &[]).len(), 1);
}

#[test]
fn long_nat_names_are_cut_at_a_character_boundary() {
    let name = "é".repeat(200); // 400 bytes
    let mut e = exported(udp_lifecycle(0)[0]);
    e.nat_name = &name;
    let m = &parse_all(&Encoder::new(1).encode(1, &[e]))[0];
    let sent = &m.records[0].1[&284];
    assert_eq!(sent.len(), MAX_NAME_LEN);
    assert_eq!(std::str::from_utf8(sent).unwrap(), "é".repeat(MAX_NAME_LEN / 2));
    // The encoder's invariant: the longest record (quota, longest name) fits a message that
    // also carries the templates, so every message holds at least one record.
    let internal = ep([10, 100, 0, 9], 7000);
    let mut worst = exported(event(
        EventKind::LimitReached(DropReason::SessionLimit),
        Protocol::Tcp,
        internal,
        None,
        Some(ep([198, 51, 100, 1], 1)),
    ));
    worst.nat_name = &name;
    let msgs = Encoder::new(1).encode(1, &[worst, worst]);
    assert_eq!(msgs.len(), 1);
    // Two such records and the templates: 762 bytes.
    assert!(msgs[0].len() <= MAX_MESSAGE_LEN, "{} bytes", msgs[0].len());
}

// ---- a real collector ----

// The collector itself (nfcapd and nfdump reading these messages back) is tested through the
// binary: tests/replay_ipfix.rs and tests/e2e_events.rs (tests/common/nfdump.rs).
