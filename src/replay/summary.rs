//! What a replay counted, the `--stats-json` document and the one-paragraph summary on stderr.

use std::fmt::Write as _;

use netnat_engine::Stats;
use serde::Serialize;

/// Counts kept by the replay loop (the engine keeps its own in [`Stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplayCounts {
    /// Frames read from the input.
    pub packets_read: u64,
    /// Frames written to the output (forwarded, passed, non-IPv4, released fragments).
    pub packets_written: u64,
    /// Frames that carry no IPv4 (ARP, IPv6): passed through unchanged.
    pub non_ipv4: u64,
    /// IPv4 packets handed to the engine.
    pub ipv4: u64,
    /// Forwarded outbound (source translated).
    pub outbound: u64,
    /// Forwarded inbound (destination translated).
    pub inbound: u64,
    /// Hairpinned (both translated).
    pub hairpinned: u64,
    /// IPv4 packets that were not the NAT's business, written unchanged.
    pub passed: u64,
    /// Fragments the engine held back.
    pub held: u64,
    /// Held fragments the engine released, translated.
    pub released: u64,
    /// Packets the engine dropped on arrival (`Verdict::Drop`); the engine's stats say why.
    pub dropped: u64,
    /// Frames whose timestamp went backwards; the clock was held still for them.
    pub timestamps_out_of_order: u64,
    /// The NAT's clock when the capture ended (its latest timestamp, microseconds since the
    /// Unix epoch): the "now" of `--sessions-detailed`.
    #[serde(skip)]
    pub clock_end_micros: u64,
}

/// The `--stats-json` document: the engine's counters plus the replay's own.
#[derive(Debug, Serialize)]
pub struct StatsReport<'a> {
    /// NatName.
    pub nat_name: &'a str,
    /// Frames read.
    pub packets_read: u64,
    /// Frames written to the output.
    pub packets_written: u64,
    /// Frames without IPv4, passed through.
    pub non_ipv4: u64,
    /// Frames dropped (the engine's `dropped` map says why).
    pub packets_dropped: u64,
    /// Held fragments released, translated.
    pub fragments_released: u64,
    /// Frames whose timestamp went backwards.
    pub timestamps_out_of_order: u64,
    /// Decisions of the `--filter-policy` module that failed (trapped, ran out of fuel,
    /// answered nonsense); absent without a module.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_module_errors: Option<u64>,
    /// The engine's counters.
    #[serde(flatten)]
    pub engine: &'a Stats,
}

/// The summary paragraph (drop reasons from the engine's counters, which also count held
/// fragments that timed out), e.g. "read 112 packets from in.pcap (112 IPv4, 0 other); wrote 112
/// to out.pcap: 56 outbound, 56 inbound, ...".
pub fn paragraph(input: &str, output: &str, counts: &ReplayCounts, stats: &Stats) -> String {
    let mut s = format!(
        "netnat replay: read {} packets from {input} ({} IPv4, {} other); wrote {} to {output}: \
         {} outbound, {} inbound, {} hairpinned, {} passed unchanged, {} non-IPv4",
        counts.packets_read,
        counts.ipv4,
        counts.non_ipv4,
        counts.packets_written,
        counts.outbound,
        counts.inbound,
        counts.hairpinned,
        counts.passed,
        counts.non_ipv4,
    );
    if counts.held > 0 {
        let _ = write!(s, ", {} of {} held fragments released", counts.released, counts.held);
    }
    let dropped: Vec<String> =
        stats.dropped.iter().filter(|(_, n)| **n > 0).map(|(reason, n)| format!("{reason} {n}")).collect();
    if dropped.is_empty() {
        s.push_str("; dropped 0");
    } else {
        let _ = write!(s, "; dropped {} ({})", stats.dropped_total(), dropped.join(", "));
    }
    let _ = write!(
        s,
        "; sessions: {} created, {} expired, {} active at the end.",
        stats.sessions_created, stats.sessions_expired, stats.sessions_active
    );
    if counts.timestamps_out_of_order > 0 {
        let _ = write!(
            s,
            " {} packets had timestamps earlier than the one before; they were replayed at the later time.",
            counts.timestamps_out_of_order
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraph_lists_drop_reasons_and_sessions() {
        let counts = ReplayCounts { packets_read: 10, ipv4: 9, non_ipv4: 1, packets_written: 7, ..Default::default() };
        let mut stats = Stats { sessions_created: 4, sessions_active: 3, sessions_expired: 1, ..Stats::default() };
        stats.dropped.insert("filtered".into(), 2);
        stats.dropped.insert("no_mapping".into(), 1);
        stats.dropped.insert("truncated".into(), 0);
        let p = paragraph("in.pcap", "out.pcap", &counts, &stats);
        assert!(p.contains("read 10 packets from in.pcap (9 IPv4, 1 other)"), "{p}");
        assert!(p.contains("dropped 3 (filtered 2, no_mapping 1)"), "{p}");
        assert!(!p.contains("truncated"), "{p}");
        assert!(p.contains("4 created, 1 expired, 3 active"), "{p}");
    }

    #[test]
    fn stats_report_flattens_engine_counters() {
        let stats = Stats { translated_out: 5, ..Stats::default() };
        let report = StatsReport {
            nat_name: "WinNAT",
            packets_read: 8,
            packets_written: 6,
            non_ipv4: 1,
            packets_dropped: 2,
            fragments_released: 0,
            timestamps_out_of_order: 0,
            engine: &stats,
            policy_module_errors: None,
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["translated_out"], 5);
        assert_eq!(json["packets_read"], 8);
        assert!(json["dropped"].is_object());
    }
}
