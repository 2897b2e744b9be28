//! The metrics endpoint's text: Prometheus text exposition 0.0.4 (what `promtool check
//! metrics` validates) or OpenMetrics 1.0 (when the scraper asks for it), rendered from the
//! [`Snapshot`] that Get-NetNatStatistics shows plus each NAT's port use ([`Usage`]).
//!
//! Names start with `netnat_`; counters end in `_total`. In OpenMetrics a counter family is
//! named without `_total` (its samples keep it) and the text ends with `# EOF`; otherwise the
//! two formats are the same text. A family with no samples is left out.
//!
//! Label cardinality is bounded: per NAT, one series per direction, drop reason and protocol,
//! at most [`TOP_EXTERNAL_ADDRESSES`] external addresses (times 3 protocols) and
//! [`TOP_INTERNAL_HOSTS`] internal hosts (those holding the most ports); per NFQUEUE queue a
//! fixed set; one series per daemon thread. So a NAT costs about a hundred series however
//! many hosts it serves; `netnat_internal_hosts` says how many hosts there are in all.

use std::fmt::Write as _;

use netnat_engine::Protocol;

use super::statistics::{Snapshot, Usage};
#[cfg(doc)]
use super::statistics::{TOP_EXTERNAL_ADDRESSES, TOP_INTERNAL_HOSTS};

/// Which exposition format to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Prometheus,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Format {
    /// The format a scraper's `Accept` header asks for (OpenMetrics if it lists it).
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.to_ascii_lowercase().contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    /// Its HTTP `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// One metric family being filled: its samples are kept until [`Family::write`].
struct Family {
    /// The name without `_total`.
    name: &'static str,
    kind: Kind,
    help: &'static str,
    samples: String,
}

impl Family {
    fn counter(name: &'static str, help: &'static str) -> Family {
        Family { name, kind: Kind::Counter, help, samples: String::new() }
    }

    fn gauge(name: &'static str, help: &'static str) -> Family {
        Family { name, kind: Kind::Gauge, help, samples: String::new() }
    }

    /// Adds a sample with `labels` and `value`.
    fn sample(&mut self, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let suffix = if self.kind == Kind::Counter { "_total" } else { "" };
        let _ = write!(self.samples, "{}{suffix}", self.name);
        if !labels.is_empty() {
            self.samples.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.samples.push(',');
                }
                let _ = write!(self.samples, "{k}=\"{}\"", escape_label(v));
            }
            self.samples.push('}');
        }
        let _ = writeln!(self.samples, " {value}");
    }

    /// Writes the family (HELP, TYPE, samples) to `out`, unless it has no samples.
    fn write(self, out: &mut String, format: Format) {
        if self.samples.is_empty() {
            return;
        }
        let (kind, suffix) = match (self.kind, format) {
            (Kind::Counter, Format::Prometheus) => ("counter", "_total"),
            (Kind::Counter, Format::OpenMetrics) => ("counter", ""),
            (Kind::Gauge, _) => ("gauge", ""),
        };
        let _ = writeln!(out, "# HELP {}{suffix} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {}{suffix} {kind}", self.name);
        out.push_str(&self.samples);
    }
}

/// A label value with `\`, `"` and line feeds escaped (both formats).
fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn protocol_label(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Icmp => "icmp",
    }
}

/// What the capture workers count, with the help of each (`CaptureCounters`' fields).
const CAPTURE: &[(&str, &str, &str)] = &[
    ("received", "netnat_capture_packets_received", "Packets the capture workers received from the kernel."),
    ("gso_packets", "netnat_capture_gso_packets", "GSO super-packets among the received packets."),
    (
        "checksums_completed",
        "netnat_capture_checksums_completed",
        "Partial (offloaded) checksums completed before translation.",
    ),
    (
        "checksum_not_ready",
        "netnat_capture_checksum_not_ready",
        "Partial checksums that could not be completed (should stay 0).",
    ),
    ("too_long", "netnat_capture_too_long", "Packets longer than the kernel copies, refused."),
    ("verdict_errors", "netnat_capture_verdict_errors", "Errors the kernel reported for verdicts."),
    ("malformed", "netnat_capture_malformed", "Messages from the kernel that could not be parsed."),
    (
        "reinject_segmented",
        "netnat_capture_reinject_segmented",
        "Hairpinned TCP super-packets cut into segments before the daemon sent them.",
    ),
    ("reinject_failed", "netnat_capture_reinject_failed", "Packets the daemon sends itself that could not be sent."),
];

/// The exposition text of `snapshot` and the NATs' `usage` (by NAT name).
pub fn render(snapshot: &Snapshot, usage: &[(String, Usage)], format: Format) -> String {
    let mut out = String::new();

    let mut translated = Family::counter(
        "netnat_packets_translated",
        "Packets translated, by direction (Get-NetNatStatistics translated_out, translated_in).",
    );
    let mut hairpinned = Family::counter(
        "netnat_packets_hairpinned",
        "Packets hairpinned (internal to internal through an external endpoint).",
    );
    let mut passed =
        Family::counter("netnat_packets_passed", "Packets that were not the NAT's business, passed unchanged.");
    let mut held =
        Family::counter("netnat_fragments_held", "Non-first fragments held until their first fragment came.");
    let mut dropped = Family::counter(
        "netnat_packets_dropped",
        "Packets the NAT dropped, by reason (the names of Get-NetNatStatistics and replay --stats-json).",
    );
    let mut created = Family::counter("netnat_sessions_created", "Sessions created.");
    let mut expired = Family::counter("netnat_sessions_expired", "Sessions that ended by idle timeout.");
    let mut removed = Family::counter("netnat_sessions_removed", "Sessions removed by configuration changes.");
    let mut active = Family::gauge("netnat_sessions_active", "Sessions alive (idle ones not yet swept included).");
    for nat in &snapshot.nats {
        let l = [("nat", nat.name.as_str())];
        let sum = |f: fn(&netnat_engine::Stats) -> u64| nat.instances.iter().map(|i| f(&i.stats)).sum::<u64>();
        translated.sample(&[l[0], ("direction", "outbound")], sum(|s| s.translated_out));
        translated.sample(&[l[0], ("direction", "inbound")], sum(|s| s.translated_in));
        hairpinned.sample(&l, sum(|s| s.hairpinned));
        passed.sample(&l, sum(|s| s.passed));
        held.sample(&l, sum(|s| s.fragments_held));
        let mut reasons = std::collections::BTreeMap::<&str, u64>::new();
        for (reason, n) in nat.instances.iter().flat_map(|i| i.stats.dropped.iter()) {
            *reasons.entry(reason).or_default() += n;
        }
        for (reason, n) in reasons {
            dropped.sample(&[l[0], ("reason", reason)], n);
        }
        created.sample(&l, sum(|s| s.sessions_created));
        expired.sample(&l, sum(|s| s.sessions_expired));
        removed.sample(&l, sum(|s| s.sessions_removed));
        active.sample(&l, sum(|s| s.sessions_active));
    }
    for f in [translated, hairpinned, passed, held, dropped, created, expired, removed, active] {
        f.write(&mut out, format);
    }

    let mut sessions = Family::gauge("netnat_sessions", "Sessions by protocol.");
    let mut range = Family::gauge("netnat_external_port_range_size", "Ports of an external address's dynamic range (each protocol has its own); in_use / size is how close it is to exhaustion.");
    let mut in_use = Family::gauge("netnat_external_ports_in_use", "External ports in use (mappings, static ones included) per external address and protocol; the addresses with the most, at most 16 per NAT.");
    let mut hosts = Family::gauge("netnat_internal_hosts", "Internal hosts holding at least one mapping.");
    let mut host_ports = Family::gauge(
        "netnat_internal_host_ports_in_use",
        "External ports (mappings) an internal host holds, all protocols; the 10 hosts per NAT holding the most.",
    );
    let mut host_sessions = Family::gauge(
        "netnat_internal_host_sessions",
        "Sessions of the internal hosts listed in netnat_internal_host_ports_in_use.",
    );
    for (nat, u) in usage {
        for (p, n) in &u.sessions {
            sessions.sample(&[("nat", nat), ("protocol", protocol_label(*p))], n);
        }
        for e in &u.external {
            let address = e.address.to_string();
            if e.range_size > 0 {
                range.sample(&[("nat", nat), ("address", &address)], e.range_size);
            }
            for (p, n) in &e.in_use {
                in_use.sample(&[("nat", nat), ("address", &address), ("protocol", protocol_label(*p))], n);
            }
        }
        hosts.sample(&[("nat", nat)], u.hosts);
        for h in &u.top_hosts {
            let host = h.address.to_string();
            host_ports.sample(&[("nat", nat), ("host", &host)], h.ports);
            host_sessions.sample(&[("nat", nat), ("host", &host)], h.sessions);
        }
    }
    for f in [sessions, range, in_use, hosts, host_ports, host_sessions] {
        f.write(&mut out, format);
    }

    if let Some(kernel) = &snapshot.kernel {
        let mut queue_dropped = Family::counter("netnat_nfqueue_dropped", "Packets the kernel diverted to the daemon but dropped before it saw them: cause queue_full (the queue was full) or socket_full (the netlink socket was full). 32-bit kernel counters, restarting when a queue is bound again.");
        let mut waiting =
            Family::gauge("netnat_nfqueue_waiting", "Packets waiting in an NFQUEUE queue for the daemon's verdict.");
        for q in &kernel.queues {
            let queue = q.queue_number.to_string();
            queue_dropped.sample(&[("queue", &queue), ("cause", "queue_full")], q.queue_dropped);
            queue_dropped.sample(&[("queue", &queue), ("cause", "socket_full")], q.user_dropped);
            waiting.sample(&[("queue", &queue)], q.waiting);
        }
        queue_dropped.write(&mut out, format);
        waiting.write(&mut out, format);
    }
    let capture: Vec<(String, serde_json::Map<String, serde_json::Value>)> = snapshot
        .capture
        .iter()
        .filter_map(|(q, c)| match serde_json::to_value(c) {
            Ok(serde_json::Value::Object(m)) => Some((q.to_string(), m)),
            _ => None,
        })
        .collect();
    for (field, name, help) in CAPTURE {
        let mut f = Family::counter(name, help);
        for (queue, counters) in &capture {
            if let Some(n) = counters.get(*field).and_then(serde_json::Value::as_u64) {
                f.sample(&[("queue", queue)], n);
            }
        }
        f.write(&mut out, format);
    }

    let mut up =
        Family::gauge("netnat_thread_up", "1 while a supervised daemon thread runs (the daemon exits when one ends).");
    let mut age =
        Family::gauge("netnat_thread_last_packet_age_seconds", "Seconds since a capture worker last handled a packet.");
    for (thread, h) in &snapshot.threads {
        up.sample(&[("thread", thread)], u8::from(h.alive));
        if let Some(at) = h.last_packet_s {
            age.sample(&[("thread", thread)], format_args!("{:.3}", (snapshot.now_s - at).max(0.0)));
        }
    }
    up.write(&mut out, format);
    age.write(&mut out, format);

    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

// The repository's skip recorder (`scripts/test.sh` counts what it logs).
#[cfg(test)]
#[path = "../../tests/common/skip.rs"]
mod skip;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;

    use netnat_engine::Stats;

    use super::super::dataplane::CaptureCounters;
    use super::super::statistics::{ExternalUse, HostUse, InstanceStats, NatStats};
    use super::super::supervise::ThreadHealth;
    use super::*;
    use crate::platform::nfqueue_stats::{KernelQueueStats, QueueRow, Totals};

    /// A known state: NAT `WinNAT` with two instances, NAT `lab "b"` (a name that needs
    /// escaping), one kernel queue with drops, one worker that saw a packet 2.5 s ago.
    pub(crate) fn known() -> (Snapshot, Vec<(String, Usage)>) {
        let stats = |out, inb, drop_filtered| Stats {
            translated_out: out,
            translated_in: inb,
            sessions_created: 7,
            sessions_active: 3,
            dropped: [("filtered".to_owned(), drop_filtered), ("no_mapping".to_owned(), 1)].into(),
            ..Stats::default()
        };
        let snapshot = Snapshot {
            nats: vec![
                NatStats {
                    name: "WinNAT".into(),
                    instances: vec![
                        InstanceStats { addresses: vec![Ipv4Addr::new(203, 0, 113, 1)], stats: stats(10, 8, 2) },
                        InstanceStats { addresses: vec![Ipv4Addr::new(198, 51, 100, 1)], stats: stats(5, 4, 0) },
                    ],
                },
                NatStats { name: "lab \"b\"".into(), instances: vec![] },
            ],
            kernel: Some(KernelQueueStats {
                stats: Totals { queue_dropped: 4, user_dropped: 1, dropped: 5 },
                queues: vec![QueueRow {
                    queue_number: 0,
                    peer_portid: 9,
                    waiting: 2,
                    queue_dropped: 4,
                    user_dropped: 1,
                }],
                note: None,
            }),
            capture: vec![(0, CaptureCounters { received: 40, gso_packets: 3, ..CaptureCounters::default() })],
            threads: [
                ("netnat-nfq-0".to_owned(), ThreadHealth { alive: true, last_packet_s: Some(10.0) }),
                ("netnat-timer".to_owned(), ThreadHealth { alive: false, last_packet_s: None }),
            ]
            .into(),
            now_s: 12.5,
        };
        let in_use: BTreeMap<Protocol, u64> = [(Protocol::Tcp, 2), (Protocol::Udp, 5), (Protocol::Icmp, 0)].into();
        let usage = Usage {
            sessions: [(Protocol::Tcp, 2), (Protocol::Udp, 6), (Protocol::Icmp, 0)].into(),
            external: vec![ExternalUse { address: Ipv4Addr::new(203, 0, 113, 1), range_size: 64512, in_use }],
            top_hosts: vec![HostUse { address: Ipv4Addr::new(10, 100, 10, 11), ports: 6, sessions: 7 }],
            hosts: 1,
        };
        (snapshot, vec![("WinNAT".into(), usage)])
    }

    #[test]
    fn known_state_renders_names_labels_and_values() {
        let (snapshot, usage) = known();
        let text = render(&snapshot, &usage, Format::Prometheus);
        for line in [
            "# HELP netnat_packets_translated_total Packets translated",
            "# TYPE netnat_packets_translated_total counter",
            "netnat_packets_translated_total{nat=\"WinNAT\",direction=\"outbound\"} 15\n",
            "netnat_packets_translated_total{nat=\"WinNAT\",direction=\"inbound\"} 12\n",
            "netnat_packets_translated_total{nat=\"lab \\\"b\\\"\",direction=\"outbound\"} 0\n",
            "netnat_packets_dropped_total{nat=\"WinNAT\",reason=\"filtered\"} 2\n",
            "netnat_packets_dropped_total{nat=\"WinNAT\",reason=\"no_mapping\"} 2\n",
            "netnat_sessions_created_total{nat=\"WinNAT\"} 14\n",
            "# TYPE netnat_sessions_active gauge\n",
            "netnat_sessions_active{nat=\"WinNAT\"} 6\n",
            "netnat_sessions{nat=\"WinNAT\",protocol=\"udp\"} 6\n",
            "netnat_sessions{nat=\"WinNAT\",protocol=\"icmp\"} 0\n",
            "netnat_external_port_range_size{nat=\"WinNAT\",address=\"203.0.113.1\"} 64512\n",
            "netnat_external_ports_in_use{nat=\"WinNAT\",address=\"203.0.113.1\",protocol=\"udp\"} 5\n",
            "netnat_internal_hosts{nat=\"WinNAT\"} 1\n",
            "netnat_internal_host_ports_in_use{nat=\"WinNAT\",host=\"10.100.10.11\"} 6\n",
            "netnat_internal_host_sessions{nat=\"WinNAT\",host=\"10.100.10.11\"} 7\n",
            "netnat_nfqueue_dropped_total{queue=\"0\",cause=\"queue_full\"} 4\n",
            "netnat_nfqueue_dropped_total{queue=\"0\",cause=\"socket_full\"} 1\n",
            "netnat_nfqueue_waiting{queue=\"0\"} 2\n",
            "netnat_capture_packets_received_total{queue=\"0\"} 40\n",
            "netnat_capture_gso_packets_total{queue=\"0\"} 3\n",
            "netnat_thread_up{thread=\"netnat-nfq-0\"} 1\n",
            "netnat_thread_up{thread=\"netnat-timer\"} 0\n",
            "netnat_thread_last_packet_age_seconds{thread=\"netnat-nfq-0\"} 2.500\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        assert!(!text.contains("last_packet_age_seconds{thread=\"netnat-timer\"}"), "no packet, no age");
        assert!(!text.contains("# EOF"), "not in the Prometheus format");
        // Every sample's family is declared, with help, before it; every name is netnat_.
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap().to_owned());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(name.starts_with("netnat_") && declared.contains(name), "{line}");
            }
        }
        assert_eq!(text.matches("# HELP ").count(), declared.len());
    }

    #[test]
    fn openmetrics_names_counter_families_without_total_and_ends_with_eof() {
        let (snapshot, usage) = known();
        let om = render(&snapshot, &usage, Format::OpenMetrics);
        assert!(om.contains("# TYPE netnat_packets_translated counter\n"), "{om}");
        assert!(om.contains("netnat_packets_translated_total{nat=\"WinNAT\",direction=\"outbound\"} 15\n"));
        assert!(om.ends_with("\n# EOF\n") || om.ends_with("} 2.500\n# EOF\n"), "{om}");
        // The same samples as the Prometheus text.
        let samples = |t: &str| t.lines().filter(|l| !l.starts_with('#')).map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(samples(&om), samples(&render(&snapshot, &usage, Format::Prometheus)));
        assert_eq!(
            Format::from_accept(Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5")),
            Format::OpenMetrics
        );
        assert_eq!(Format::from_accept(Some("text/plain")), Format::Prometheus);
        assert_eq!(Format::from_accept(None), Format::Prometheus);
    }

    /// `promtool check metrics` (Prometheus' own linter) accepts the text: names, HELP and
    /// TYPE lines, `_total` on counters, label syntax. Skipped, and recorded as such, when
    /// promtool is missing (Debian package `prometheus`, in .ci/apt-packages.txt).
    #[test]
    fn promtool_accepts_the_text() {
        use std::io::Write;
        let (snapshot, usage) = known();
        let text = render(&snapshot, &usage, Format::Prometheus);
        let child = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            super::skip::record_skip("daemon::metrics::tests::promtool_accepts_the_text", "promtool missing");
            return;
        };
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && said.trim().is_empty(), "promtool: {said}\n{text}");
    }

    #[test]
    fn an_empty_daemon_renders_only_what_it_has() {
        let empty = Snapshot { nats: vec![], kernel: None, capture: vec![], threads: BTreeMap::new(), now_s: 0.0 };
        assert_eq!(render(&empty, &[], Format::Prometheus), "");
        assert_eq!(render(&empty, &[], Format::OpenMetrics), "# EOF\n");
    }
}
