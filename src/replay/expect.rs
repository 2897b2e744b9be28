//! `--expect FILE`: the replay's output compared with an expected capture, packet by packet
//! and field by field — golden-capture tests.
//!
//! Packets are dissected into Wireshark-named fields ([`super::dissect`]) and compared in
//! order. Timestamps are compared too (`frame.time`). A difference is reported by packet
//! number (1-based, as Wireshark numbers frames) and field, expected against got. Packets
//! are aligned, not only zipped: when a packet is missing from the output or the output has
//! one too many, the comparison finds where the two agree again (within [`LOOKAHEAD`]
//! packets) and reports the packet as missing or extra instead of every later one as
//! different.
//!
//! What `--ignore` relaxes, and why each exists:
//! - `ttl`: the outer IPv4 TTL. A capture taken after a router (the Linux kernel's NAT
//!   forwards, so its TTLs are one lower) differs there and nowhere else.
//! - `ip-checksum`: the outer IPv4 header checksum is not compared with the expected one but
//!   checked to be correct (it changes with the TTL). Other checksums are always compared.
//! - `external-port`: the external port (or ICMP identifier) the NAT chose may differ from
//!   the expected one, but consistently: each port of ours on an external address stands for
//!   one expected port, for every packet, and no two of ours for the same one — one flow
//!   stays one flow. An inconsistency is reported with the packet that set the pairing.
//!   A packet whose port differs has other checksums covering that port (TCP, UDP, ICMP);
//!   those are checked to be correct instead of compared.
//! - `mac`: Ethernet source and destination addresses (a capture taken on another host's
//!   interface has its MACs).
//! - `order`: packets may be reordered within [`REORDER_WINDOW`] places (a capture merged
//!   from two interfaces by time can swap packets sent microseconds apart).
//! - `time`: the timestamps.
//!
//! Frames of different link types are compared from the IPv4 header on, and the report says
//! so.

use std::collections::{HashMap, VecDeque};
use std::fmt::{self, Write as _};
use std::net::Ipv4Addr;

use netnat_capture::pcap::LinkType;

use super::dissect::{self, Field, Kind, Value};
use super::sink::Recorded;

/// Exit status of `netnat replay` when the output differs from `--expect`'s capture (1 is
/// an error, 2 a bad command line, as for every netnat command).
pub const EXIT_DIFFERS: u8 = 3;

/// How far ahead the alignment looks for a packet that matches again after a missing or an
/// extra one.
pub const LOOKAHEAD: usize = 8;

/// How many places a packet may move with `--ignore order`.
pub const REORDER_WINDOW: usize = 8;

/// How many differing packets the report lists in full.
pub const MAX_REPORTED: usize = 50;

/// What `--ignore` may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ignore {
    /// The outer IPv4 TTL.
    Ttl,
    /// The outer IPv4 header checksum's value (it must still be correct).
    IpChecksum,
    /// The external port's value (it must map consistently).
    ExternalPort,
    /// Ethernet addresses.
    Mac,
    /// Order within [`REORDER_WINDOW`].
    Order,
    /// Timestamps.
    Time,
}

impl Ignore {
    /// Every item, in the order `--help` lists them.
    pub const ALL: [Ignore; 6] =
        [Ignore::Ttl, Ignore::IpChecksum, Ignore::ExternalPort, Ignore::Mac, Ignore::Order, Ignore::Time];

    /// The name `--ignore` takes.
    pub const fn name(self) -> &'static str {
        match self {
            Ignore::Ttl => "ttl",
            Ignore::IpChecksum => "ip-checksum",
            Ignore::ExternalPort => "external-port",
            Ignore::Mac => "mac",
            Ignore::Order => "order",
            Ignore::Time => "time",
        }
    }
}

impl fmt::Display for Ignore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One `--ignore` item (the command line splits the list at commas).
pub fn parse_ignore(s: &str) -> Result<Ignore, String> {
    let s = s.trim();
    Ignore::ALL.into_iter().find(|i| i.name().eq_ignore_ascii_case(s)).ok_or_else(|| {
        let names: Vec<&str> = Ignore::ALL.iter().map(|i| i.name()).collect();
        format!("{s:?} is not something --ignore knows; give a comma-separated list of {}", names.join(", "))
    })
}

/// How to compare.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// What not to compare.
    pub ignore: Vec<Ignore>,
    /// The NAT's external addresses: ports on them are external ports.
    pub external_addresses: Vec<Ipv4Addr>,
}

impl Options {
    fn ignores(&self, i: Ignore) -> bool {
        self.ignore.contains(&i)
    }
}

/// One capture to compare: its link type and frames.
#[derive(Clone, Copy, Debug)]
pub struct Capture<'a> {
    /// Link type of every frame.
    pub link_type: LinkType,
    /// The frames, in file order.
    pub frames: &'a [Recorded],
}

/// One field that differs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// The field's name, e.g. `ip.ttl` (or `frame.time`, `layout`).
    pub field: String,
    /// What the expected capture has.
    pub expected: String,
    /// What the output has.
    pub got: String,
    /// Why it counts as a difference when that is not plain (a mapping conflict, a wrong
    /// checksum).
    pub why: Option<String>,
}

/// One entry of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// An expected packet and an output packet at the same place differ in these fields.
    Changed {
        /// Expected packet number (from 1).
        expected: usize,
        /// Output packet number (from 1).
        got: usize,
        /// The output packet in one line.
        brief: String,
        /// The fields that differ.
        differences: Vec<Difference>,
    },
    /// An expected packet with no counterpart in the output.
    Missing {
        /// Expected packet number (from 1).
        expected: usize,
        /// The expected packet in one line.
        brief: String,
    },
    /// An output packet with no counterpart in the expected capture.
    Extra {
        /// Output packet number (from 1).
        got: usize,
        /// The output packet in one line.
        brief: String,
    },
}

/// The result of a comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Packets in the expected capture.
    pub expected_packets: usize,
    /// Packets in the output.
    pub got_packets: usize,
    /// What differs, in output order.
    pub entries: Vec<Entry>,
    /// Packets matched out of place (`--ignore order`).
    pub reordered: usize,
    /// External ports of ours paired with a different expected port (`--ignore external-port`).
    pub ports_mapped: usize,
    /// The link types differed, so frames were compared from the IPv4 header on.
    pub link_types: Option<(LinkType, LinkType)>,
    /// What was ignored.
    pub ignored: Vec<Ignore>,
}

impl Report {
    /// Whether the output matches.
    pub fn matches(&self) -> bool {
        self.entries.is_empty()
    }

    /// The report for a person, naming the expected capture as `name`.
    pub fn render(&self, name: &str) -> String {
        let mut s = String::new();
        let ignoring = if self.ignored.is_empty() {
            String::new()
        } else {
            let items: Vec<&str> = self.ignored.iter().map(|i| i.name()).collect();
            format!("ignoring {}", items.join(", "))
        };
        let mut notes: Vec<String> = Vec::new();
        if !ignoring.is_empty() {
            notes.push(ignoring);
        }
        if let Some((expected, got)) = self.link_types {
            notes.push(format!(
                "link types differ (expected {expected}, output {got}): compared from the IPv4 header on"
            ));
        }
        if self.reordered > 0 {
            notes.push(format!("{} out of place", packets(self.reordered)));
        }
        if self.ports_mapped > 0 {
            let ports = if self.ports_mapped == 1 { "port" } else { "ports" };
            notes.push(format!("{} external {ports} mapped to other numbers", self.ports_mapped));
        }
        let notes = if notes.is_empty() { String::new() } else { format!(" ({})", notes.join("; ")) };
        if self.matches() {
            let _ = write!(s, "--expect {name}: all {} match{notes}", packets(self.expected_packets));
            return s;
        }
        let count = |f: fn(&Entry) -> bool| self.entries.iter().filter(|e| f(e)).count();
        let changed = count(|e| matches!(e, Entry::Changed { .. }));
        let missing = count(|e| matches!(e, Entry::Missing { .. }));
        let extra = count(|e| matches!(e, Entry::Extra { .. }));
        let _ = writeln!(
            s,
            "--expect {name}: the output differs: {} changed, {missing} missing, {extra} extra \
             ({} expected, {} in the output){notes}",
            packets(changed),
            self.expected_packets,
            self.got_packets
        );
        for entry in self.entries.iter().take(MAX_REPORTED) {
            match entry {
                Entry::Changed { expected, got, brief, differences } => {
                    let at = if expected == got {
                        format!("packet {got}")
                    } else {
                        format!("expected packet {expected} / output packet {got}")
                    };
                    let _ = writeln!(s, "{at} ({brief}):");
                    for d in differences {
                        let _ = write!(s, "    {}: expected {}, got {}", d.field, d.expected, d.got);
                        if let Some(why) = &d.why {
                            let _ = write!(s, " ({why})");
                        }
                        s.push('\n');
                    }
                }
                Entry::Missing { expected, brief } => {
                    let _ = writeln!(s, "expected packet {expected} ({brief}): missing from the output");
                }
                Entry::Extra { got, brief } => {
                    let _ = writeln!(s, "output packet {got} ({brief}): extra, not in the expected capture");
                }
            }
        }
        if self.entries.len() > MAX_REPORTED {
            let _ = writeln!(s, "... and {} more", self.entries.len() - MAX_REPORTED);
        }
        s.truncate(s.trim_end().len());
        s
    }
}

/// "1 packet", "2 packets".
fn packets(n: usize) -> String {
    if n == 1 {
        "1 packet".to_owned()
    } else {
        format!("{n} packets")
    }
}

/// A dissected frame.
struct Packet<'a> {
    timestamp_micros: u64,
    fields: Vec<Field<'a>>,
}

fn prepare<'a>(capture: &Capture<'a>, link_only: bool) -> Vec<Packet<'a>> {
    capture
        .frames
        .iter()
        .map(|f| {
            let mut fields = dissect::dissect(capture.link_type, &f.data);
            if link_only {
                fields.retain(|f| !(f.name.starts_with("eth.") || f.name == "vlan"));
            }
            Packet { timestamp_micros: f.timestamp_micros, fields }
        })
        .collect()
}

/// (protocol, address of ours, port) — one side of an external-port pairing.
type PortKey = (u8, Ipv4Addr, u16);

/// The pairings of `--ignore external-port`: ours to expected and back, each with the
/// expected packet number that made it.
#[derive(Default)]
struct PortMap {
    ours: HashMap<PortKey, (u16, usize)>,
    theirs: HashMap<PortKey, (u16, usize)>,
}

/// A pairing a comparison would add.
#[derive(Clone, Copy)]
struct Pairing {
    key: PortKey,
    expected_port: u16,
}

struct Comparer<'o> {
    options: &'o Options,
    map: PortMap,
    ports_mapped: usize,
}

fn time(micros: u64) -> String {
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

fn bytes_difference(expected: &[u8], got: &[u8]) -> Option<String> {
    let at = expected.iter().zip(got).position(|(a, b)| a != b)?;
    Some(format!("first difference at byte {at}: expected 0x{:02x}, got 0x{:02x}", expected[at], got[at]))
}

impl Comparer<'_> {
    /// The differences between expected packet `e` (number `expected_no`) and ours `g`;
    /// pairings of external ports this comparison relies on and that are not yet known are
    /// added to `new` (the caller keeps them if it accepts the pair).
    fn differences(
        &self,
        e: &Packet<'_>,
        g: &Packet<'_>,
        expected_no: usize,
        new: &mut Vec<Pairing>,
    ) -> Vec<Difference> {
        let o = self.options;
        let mut out = Vec::new();
        if !o.ignores(Ignore::Time) && e.timestamp_micros != g.timestamp_micros {
            out.push(Difference {
                field: "frame.time".into(),
                expected: time(e.timestamp_micros),
                got: time(g.timestamp_micros),
                why: None,
            });
        }
        // Fields are compared while both packets have the same layout.
        let same = e.fields.iter().zip(&g.fields).take_while(|(a, b)| a.name == b.name && a.inner == b.inner).count();

        // Ports first: whether one was mapped decides how checksums are compared.
        let mut remapped = false;
        for (ef, gf) in e.fields[..same].iter().zip(&g.fields[..same]) {
            let Kind::Port { protocol, addr } = gf.kind else { continue };
            let (Some(ep), Some(gp)) = (ef.value.number(), gf.value.number()) else { continue };
            let (ep, gp) = (ep as u16, gp as u16);
            if !o.ignores(Ignore::ExternalPort) || !o.external_addresses.contains(&addr) {
                continue;
            }
            if ep != gp {
                remapped = true;
            }
            let key = (protocol, addr, gp);
            let back = (protocol, addr, ep);
            let known = self
                .map
                .ours
                .get(&key)
                .copied()
                .or_else(|| new.iter().find(|p| p.key == key).map(|p| (p.expected_port, expected_no)));
            let known_back = self.map.theirs.get(&back).copied().or_else(|| {
                new.iter()
                    .find(|p| p.key.0 == protocol && p.key.1 == addr && p.expected_port == ep)
                    .map(|p| (p.key.2, expected_no))
            });
            match (known, known_back) {
                (Some((want, at)), _) if want != ep => out.push(Difference {
                    field: gf.full_name(),
                    expected: ep.to_string(),
                    got: gp.to_string(),
                    why: Some(format!(
                        "inconsistent external port: expected packet {at} paired our {addr}:{gp} with {want}"
                    )),
                }),
                (_, Some((ours, at))) if ours != gp => out.push(Difference {
                    field: gf.full_name(),
                    expected: ep.to_string(),
                    got: gp.to_string(),
                    why: Some(format!(
                        "inconsistent external port: expected packet {at} paired expected {addr}:{ep} with our {ours}"
                    )),
                }),
                (None, None) => new.push(Pairing { key, expected_port: ep }),
                _ => {}
            }
        }

        let ttl_differs = e.fields[..same]
            .iter()
            .zip(&g.fields[..same])
            .any(|(a, b)| a.name == "ip.ttl" && !a.inner && a.value != b.value);
        for (ef, gf) in e.fields[..same].iter().zip(&g.fields[..same]) {
            let outer = !gf.inner;
            match (gf.name, gf.kind) {
                ("eth.src" | "eth.dst", _) if o.ignores(Ignore::Mac) => continue,
                ("ip.ttl", _) if outer && o.ignores(Ignore::Ttl) => continue,
                (_, Kind::Port { addr, .. })
                    if o.ignores(Ignore::ExternalPort) && o.external_addresses.contains(&addr) =>
                {
                    continue
                }
                (name, Kind::Checksum { correct })
                    if (name == "ip.checksum" && outer && o.ignores(Ignore::IpChecksum))
                        || (name != "ip.checksum" && remapped) =>
                {
                    // Compared by correctness, not value.
                    if let (Some(c), Some(v)) = (correct, gf.value.number()) {
                        if u64::from(c) != v {
                            out.push(Difference {
                                field: gf.full_name(),
                                expected: format!("a correct checksum, 0x{c:04x}"),
                                got: gf.value.to_string(),
                                why: Some("our checksum is wrong".into()),
                            });
                        }
                    }
                    continue;
                }
                _ => {}
            }
            if ef.value == gf.value {
                continue;
            }
            let why = match (ef.value, gf.value) {
                (Value::Bytes(a), Value::Bytes(b)) => bytes_difference(a, b),
                _ if gf.name == "ip.checksum" && outer && ttl_differs && o.ignores(Ignore::Ttl) => {
                    Some("the TTL differs too: add --ignore ip-checksum to check it for correctness instead".into())
                }
                _ => None,
            };
            out.push(Difference {
                field: gf.full_name(),
                expected: ef.value.to_string(),
                got: gf.value.to_string(),
                why,
            });
        }
        if same < e.fields.len().max(g.fields.len()) {
            let show = |f: Option<&Field<'_>>| match f {
                Some(f) => format!("{} {}", f.full_name(), f.value),
                None => "nothing more".to_owned(),
            };
            out.push(Difference {
                field: "layout".into(),
                expected: show(e.fields.get(same)),
                got: show(g.fields.get(same)),
                why: Some("the packets differ in structure from here on".into()),
            });
        }
        out
    }

    fn differs(&self, e: &Packet<'_>, g: &Packet<'_>, expected_no: usize) -> bool {
        !self.differences(e, g, expected_no, &mut Vec::new()).is_empty()
    }

    fn keep(&mut self, pairings: Vec<Pairing>, expected_no: usize) {
        for p in pairings {
            let (protocol, addr, ours) = p.key;
            if ours != p.expected_port {
                self.ports_mapped += 1;
            }
            self.map.ours.insert(p.key, (p.expected_port, expected_no));
            self.map.theirs.insert((protocol, addr, p.expected_port), (ours, expected_no));
        }
    }
}

/// Compares `got` (the replay's output) with `expected`.
pub fn compare(expected: Capture<'_>, got: Capture<'_>, options: &Options) -> Report {
    let link_differs = expected.link_type != got.link_type;
    let exp = prepare(&expected, link_differs);
    let ours = prepare(&got, link_differs);
    let mut c = Comparer { options, map: PortMap::default(), ports_mapped: 0 };
    let window = if options.ignores(Ignore::Order) { REORDER_WINDOW } else { 0 };
    let mut entries = Vec::new();
    let mut reordered = 0;
    // Expected packets not yet matched, in order, each with how many of our packets matched
    // an expected packet behind it (overtook it, with `--ignore order`).
    let mut pending: VecDeque<(usize, usize)> = (0..exp.len()).map(|i| (i, 0)).collect();
    let missing = |i: usize| Entry::Missing { expected: i + 1, brief: dissect::brief(&exp[i].fields) };

    for (j, g) in ours.iter().enumerate() {
        let mut new = Vec::new();
        let near = pending.iter().take(window + 1).position(|&(i, _)| {
            new.clear();
            c.differences(&exp[i], g, i + 1, &mut new).is_empty()
        });
        if let Some(k) = near {
            let (i, _) = pending.remove(k).unwrap_or_default();
            c.keep(new, i + 1);
            if k > 0 {
                reordered += 1;
            }
            // The expected packets this one overtook have been passed by once more.
            for p in pending.iter_mut().take(k) {
                p.1 += 1;
            }
        } else if pending
            .front()
            .is_some_and(|&(i, _)| ours.iter().skip(j + 1).take(LOOKAHEAD).any(|g2| !c.differs(&exp[i], g2, i + 1)))
        {
            // The next expected packet comes later: this one of ours is extra (or far out of
            // place). Looked at before the case below, so a packet that moved far is one extra
            // here and one missing there, not every packet it jumped over missing.
            entries.push(Entry::Extra { got: j + 1, brief: dissect::brief(&g.fields) });
        } else if let Some(k) = (window + 1..pending.len().min(window + 1 + LOOKAHEAD)).find(|&k| {
            new.clear();
            c.differences(&exp[pending[k].0], g, pending[k].0 + 1, &mut new).is_empty()
        }) {
            // The expected packets before the one that matches never came.
            for (i, _) in pending.drain(..k) {
                entries.push(missing(i));
            }
            let (i, _) = pending.pop_front().unwrap_or_default();
            c.keep(new, i + 1);
        } else if let Some((i, _)) = pending.pop_front() {
            new.clear();
            let differences = c.differences(&exp[i], g, i + 1, &mut new);
            c.keep(new, i + 1);
            entries.push(Entry::Changed { expected: i + 1, got: j + 1, brief: dissect::brief(&g.fields), differences });
        } else {
            entries.push(Entry::Extra { got: j + 1, brief: dissect::brief(&g.fields) });
        }
        // An expected packet overtaken more often than the window allows is missing.
        while pending.front().is_some_and(|&(_, passed)| passed > window) {
            if let Some((i, _)) = pending.pop_front() {
                entries.push(missing(i));
            }
        }
    }
    entries.extend(pending.into_iter().map(|(i, _)| missing(i)));
    let mut ignored = options.ignore.clone();
    ignored.sort();
    ignored.dedup();
    Report {
        expected_packets: exp.len(),
        got_packets: ours.len(),
        entries,
        reordered,
        ports_mapped: c.ports_mapped,
        link_types: link_differs.then_some((expected.link_type, got.link_type)),
        ignored,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);

    fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, ttl: u8) -> Vec<u8> {
        let mut out = Vec::new();
        etherparse::PacketBuilder::ipv4(src, dst, ttl).udp(sport, dport).write(&mut out, &[1, 2, 3, 4]).unwrap();
        out
    }

    fn rec(data: Vec<u8>, micros: u64) -> Recorded {
        Recorded { timestamp_micros: micros, data }
    }

    /// Outbound and reply of two flows, translated to `ports`.
    fn flows(ports: [u16; 2], ttl: u8) -> Vec<Recorded> {
        let r = [198, 51, 100, 7];
        vec![
            rec(udp([203, 0, 113, 1], ports[0], r, 53, ttl), 1),
            rec(udp([203, 0, 113, 1], ports[1], r, 53, ttl), 2),
            rec(udp(r, 53, [10, 100, 0, 2], 40000, ttl), 3),
            rec(udp(r, 53, [10, 100, 0, 3], 40001, ttl), 4),
            rec(udp([203, 0, 113, 1], ports[0], r, 53, ttl), 5),
        ]
    }

    fn run(expected: &[Recorded], got: &[Recorded], ignore: &[Ignore]) -> Report {
        let options = Options { ignore: ignore.to_vec(), external_addresses: vec![EXT] };
        compare(
            Capture { link_type: LinkType::Raw, frames: expected },
            Capture { link_type: LinkType::Raw, frames: got },
            &options,
        )
    }

    fn changed_fields(r: &Report) -> Vec<(usize, String)> {
        r.entries
            .iter()
            .flat_map(|e| match e {
                Entry::Changed { got, differences, .. } => {
                    differences.iter().map(|d| (*got, d.field.clone())).collect()
                }
                _ => vec![],
            })
            .collect()
    }

    #[test]
    fn identical_captures_match() {
        let a = flows([1025, 1026], 64);
        let r = run(&a, &a, &[]);
        assert!(r.matches(), "{}", r.render("x"));
        assert_eq!(r.render("x"), "--expect x: all 5 packets match");
    }

    #[test]
    fn a_changed_field_is_named_with_its_packet() {
        let want = flows([1025, 1026], 64);
        let mut got = want.clone();
        got[2].data[19] = 4; // ip.dst 10.100.0.2 -> 10.100.0.4 (checksums now stale too)
        let r = run(&want, &got, &[]);
        assert!(!r.matches());
        let fields = changed_fields(&r);
        assert!(fields.contains(&(3, "ip.dst".to_owned())), "{fields:?}");
        let text = r.render("golden.pcap");
        assert!(text.contains("packet 3 ("), "{text}");
        assert!(text.contains("ip.dst: expected 10.100.0.2, got 10.100.0.4"), "{text}");
        assert!(
            text.starts_with("--expect golden.pcap: the output differs: 1 packet changed, 0 missing, 0 extra"),
            "{text}"
        );
    }

    #[test]
    fn ttl_and_ip_checksum_are_ignored_but_the_checksum_must_be_correct() {
        let want = flows([1025, 1026], 63);
        let got = flows([1025, 1026], 64);
        let r = run(&want, &got, &[]);
        assert_eq!(changed_fields(&r).iter().filter(|(_, f)| f == "ip.ttl").count(), 5);
        let r = run(&want, &got, &[Ignore::Ttl]);
        let fields = changed_fields(&r);
        assert!(fields.iter().all(|(_, f)| f == "ip.checksum"), "{fields:?}");
        assert!(r.render("x").contains("add --ignore ip-checksum"), "{}", r.render("x"));
        let r = run(&want, &got, &[Ignore::Ttl, Ignore::IpChecksum]);
        assert!(r.matches(), "{}", r.render("x"));

        let mut broken = got.clone();
        broken[1].data[10] ^= 0xff;
        let r = run(&want, &broken, &[Ignore::Ttl, Ignore::IpChecksum]);
        assert_eq!(changed_fields(&r), [(2, "ip.checksum".to_owned())]);
        assert!(r.render("x").contains("our checksum is wrong"), "{}", r.render("x"));
    }

    #[test]
    fn external_ports_map_consistently_per_flow() {
        let want = flows([1025, 1026], 64);
        let got = flows([5000, 6000], 64);
        let r = run(&want, &got, &[]);
        assert!(changed_fields(&r).contains(&(1, "udp.srcport".to_owned())));
        let r = run(&want, &got, &[Ignore::ExternalPort]);
        assert!(r.matches(), "{}", r.render("x"));
        assert_eq!(r.ports_mapped, 2);

        // Our 5000 stands for 1025 in packet 1, so it cannot stand for 1026 in packet 5.
        let mut bad = got.clone();
        bad[4] = rec(udp([203, 0, 113, 1], 6000, [198, 51, 100, 7], 53, 64), 5);
        let r = run(&want, &bad, &[Ignore::ExternalPort]);
        assert_eq!(changed_fields(&r), [(5, "udp.srcport".to_owned())]);
        let text = r.render("x");
        assert!(text.contains("inconsistent external port"), "{text}");
        assert!(text.contains("expected packet 2 paired our 203.0.113.1:6000 with 1026"), "{text}");

        // Two ports of ours for one expected port: two flows became one.
        let merged = flows([5000, 5000], 64);
        let r = run(&want, &merged, &[Ignore::ExternalPort]);
        assert_eq!(changed_fields(&r), [(2, "udp.srcport".to_owned())], "{}", r.render("x"));

        // Ports on other addresses are compared as they are.
        let mut internal = want.clone();
        internal[2] = rec(udp([198, 51, 100, 7], 53, [10, 100, 0, 2], 40009, 64), 3);
        let r = run(&want, &internal, &[Ignore::ExternalPort]);
        assert_eq!(changed_fields(&r), [(3, "udp.dstport".to_owned()), (3, "udp.checksum".to_owned())]);
    }

    #[test]
    fn missing_extra_and_reordered_packets() {
        let want = flows([1025, 1026], 64);
        let mut got = want.clone();
        got.remove(1);
        let r = run(&want, &got, &[]);
        assert_eq!(r.entries.len(), 1, "{}", r.render("x"));
        assert!(matches!(r.entries[0], Entry::Missing { expected: 2, .. }), "{}", r.render("x"));

        let mut got = want.clone();
        got.insert(2, rec(udp([10, 100, 0, 9], 1, [198, 51, 100, 9], 2, 64), 2));
        let r = run(&want, &got, &[]);
        assert_eq!(r.entries.len(), 1, "{}", r.render("x"));
        assert!(matches!(r.entries[0], Entry::Extra { got: 3, .. }));
        assert!(
            r.render("x").contains("output packet 3 (10.100.0.9:1 -> 198.51.100.9:2 udp): extra"),
            "{}",
            r.render("x")
        );

        let mut swapped = want.clone();
        swapped.swap(2, 3);
        let r = run(&want, &swapped, &[Ignore::Time]);
        assert!(!r.matches(), "order counts by default");
        let r = run(&want, &swapped, &[Ignore::Time, Ignore::Order]);
        assert!(r.matches(), "{}", r.render("x"));
        assert_eq!(r.reordered, 1);

        // A packet two places early after a long run in order (the kernel sample has one).
        let long: Vec<Recorded> =
            (0..30u16).map(|n| rec(udp([203, 0, 113, 1], 1025, [198, 51, 100, 7], 2000 + n, 64), 1)).collect();
        let mut moved = long.clone();
        let early = moved.remove(22);
        moved.insert(20, early);
        let r = run(&long, &moved, &[Ignore::Order]);
        assert!(r.matches(), "{}", r.render("x"));
        assert_eq!(r.reordered, 1);
        // Moved further than the window: missing where expected, extra where it came.
        let mut far = long.clone();
        let early = far.remove(25);
        far.insert(25 - REORDER_WINDOW - 2, early);
        let r = run(&long, &far, &[Ignore::Order]);
        assert!(!r.matches());
        assert!(r.entries.iter().any(|e| matches!(e, Entry::Missing { expected: 26, .. })), "{}", r.render("x"));

        let r = run(&want, &[], &[]);
        assert_eq!(r.entries.len(), 5);
        let r = run(&[], &want, &[]);
        assert!(r.entries.iter().all(|e| matches!(e, Entry::Extra { .. })) && r.entries.len() == 5);
    }

    #[test]
    fn timestamps_count_unless_ignored() {
        let want = flows([1025, 1026], 64);
        let mut got = want.clone();
        got[0].timestamp_micros = 1_500_000;
        let r = run(&want, &got, &[]);
        assert_eq!(changed_fields(&r), [(1, "frame.time".to_owned())]);
        assert!(r.render("x").contains("frame.time: expected 0.000001, got 1.500000"), "{}", r.render("x"));
        assert!(run(&want, &got, &[Ignore::Time]).matches());
    }

    #[test]
    fn ignore_names_parse_and_unknown_ones_say_what_is_known() {
        for i in Ignore::ALL {
            assert_eq!(parse_ignore(i.name()), Ok(i));
        }
        assert_eq!(parse_ignore(" TTL "), Ok(Ignore::Ttl));
        let err = parse_ignore("checksums").unwrap_err();
        assert!(err.contains("checksums") && err.contains("external-port"), "{err}");
    }
}
