//! Runs the real `netnat replay` binary over a scenario and collects what it wrote.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::check::checksum_problems;
use super::packet::View;
use super::pcap::{eth_frame, ip_of_frame, read_frames, write_frames, Format, Link, Rec};

/// The clock origin of every scenario: a realistic capture time (2023-11-14T22:13:20Z), so
/// nothing depends on timestamps starting at zero. Scenario times are milliseconds after it.
pub const EPOCH_SECS: u64 = 1_700_000_000;

pub fn ts(ms: u64) -> Duration {
    Duration::from_secs(EPOCH_SECS) + Duration::from_millis(ms)
}

/// Seconds (with fractions) to scenario milliseconds: `secs(119.9)`.
pub fn secs(s: f64) -> u64 {
    (s * 1000.0).round() as u64
}

/// The NAT every scenario runs (design §3.1): 10.100.0.0/16 behind 203.0.113.1.
pub const BASE_ARGS: &[&str] = &["--internal-prefix", "10.100.0.0/16", "--external-address", "203.0.113.1"];

/// A capture to replay: packets at millisecond offsets, plus extra `netnat replay` flags.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub recs: Vec<Rec>,
    /// Non-IPv4 frames (Ethernet only), with their times.
    pub other_frames: Vec<(Duration, Vec<u8>)>,
    pub link: Link,
    pub format: Format,
    pub args: Vec<String>,
    /// Packets whose output copy is not checksum-validated (deliberately broken inputs that
    /// a test allows to pass).
    pub exempt: BTreeSet<Duration>,
    /// Whether output order must follow input order (held fragments are released later).
    pub strict_order: bool,
    /// Outputs learnt by earlier runs of a prefix of this scenario: a later run must produce
    /// the same bytes for them (same seed, same input so far => same translation).
    learnt: Vec<(Duration, Vec<u8>)>,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario::new()
    }
}

impl Scenario {
    pub fn new() -> Scenario {
        Scenario {
            recs: Vec::new(),
            other_frames: Vec::new(),
            link: Link::Raw,
            format: Format::Pcap,
            args: Vec::new(),
            exempt: BTreeSet::new(),
            strict_order: true,
            learnt: Vec::new(),
        }
    }

    /// Adds `packet` at `ms` milliseconds. Times must be unique and increasing: they name
    /// the packet in the output.
    pub fn at(&mut self, ms: u64, packet: Vec<u8>) -> &mut Scenario {
        let t = ts(ms);
        if let Some(last) = self.recs.last() {
            assert!(t > last.ts, "scenario times must increase (got {ms} ms after {:?})", last.ts);
        }
        self.recs.push(Rec { ts: t, data: packet });
        self
    }

    pub fn args(&mut self, args: &[&str]) -> &mut Scenario {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    fn has_arg(&self, name: &str) -> bool {
        self.args.iter().any(|a| a == name)
    }

    /// Runs the binary; does not judge the exit status.
    pub fn run_unchecked(&self) -> Outcome {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join(match self.format {
            Format::Pcap => "in.pcap",
            Format::PcapNg | Format::PcapNgNanos => "in.pcapng",
        });
        let output = dir.path().join("out.pcap");
        let drops = dir.path().join("drops.pcap");
        let sessions = dir.path().join("sessions.json");
        let stats = dir.path().join("stats.json");

        let mut frames: Vec<(Duration, Vec<u8>)> = self
            .recs
            .iter()
            .map(|r| {
                (
                    r.ts,
                    match self.link {
                        Link::Raw => r.data.clone(),
                        Link::Ethernet => eth_frame(&r.data),
                    },
                )
            })
            .collect();
        // Other frames go before the first packet with a later time; packets keep their
        // order (a test may write timestamps that go backwards on purpose).
        for f in &self.other_frames {
            let at = frames.iter().position(|g| g.0 > f.0).unwrap_or(frames.len());
            frames.insert(at, f.clone());
        }
        write_frames(&input, self.link, self.format, &frames);

        let mut cmd = Command::new(env!("CARGO_BIN_EXE_netnat"));
        cmd.arg("replay").arg(&input).arg("-o").arg(&output).args(BASE_ARGS);
        if !self.has_arg("--seed") {
            // Port choice must not depend on OS entropy in a test: always seed.
            cmd.args(["--seed", "7"]);
        }
        cmd.args(&self.args);
        cmd.arg("--drops").arg(&drops).arg("--sessions-json").arg(&sessions).arg("--stats-json").arg(&stats);
        let shown = format!("{cmd:?}");
        let res = cmd.output().expect("spawn netnat");
        let stderr = String::from_utf8_lossy(&res.stderr).into_owned();
        let mut o = Outcome {
            success: res.status.success(),
            status: res.status.to_string(),
            command: shown,
            stderr,
            input: self.recs.clone(),
            link: self.link,
            out_frames: Vec::new(),
            out: Vec::new(),
            drops: Vec::new(),
            stats: Value::Null,
            sessions: Value::Null,
        };
        if !o.success {
            return o;
        }
        o.out_frames = read_output(&output, self.link, &o);
        o.out = o
            .out_frames
            .iter()
            .filter_map(|(t, f)| ip_of_frame(self.link, f).map(|d| Rec { ts: *t, data: d }))
            .collect();
        o.drops = read_output(&drops, self.link, &o)
            .iter()
            .filter_map(|(t, f)| ip_of_frame(self.link, f).map(|d| Rec { ts: *t, data: d }))
            .collect();
        o.stats = read_json(&stats, &o);
        o.sessions = read_json(&sessions, &o);
        o
    }

    /// Runs the binary, asserts it succeeded, validates every output packet's checksums
    /// (independent parser), that outputs carry input timestamps (in input order unless the
    /// scenario allows otherwise), and that packets learnt from earlier prefix runs came out
    /// the same.
    pub fn run(&self) -> Outcome {
        let o = self.run_unchecked();
        assert!(o.success, "netnat replay failed ({})\ncommand: {}\nstderr:\n{}", o.status, o.command, o.stderr);
        o.assert_checksums(&self.exempt);
        let input_ts: BTreeSet<Duration> = self.recs.iter().map(|r| r.ts).collect();
        let other_ts: BTreeSet<Duration> = self.other_frames.iter().map(|f| f.0).collect();
        for (t, _) in &o.out_frames {
            assert!(
                input_ts.contains(t) || other_ts.contains(t),
                "output packet at {} matches no input timestamp (contract: input timestamps kept){}",
                show_ts(*t),
                o.context()
            );
        }
        if self.strict_order {
            let times: Vec<Duration> = o.out_frames.iter().map(|f| f.0).collect();
            let mut sorted = times.clone();
            sorted.sort();
            assert_eq!(times, sorted, "output is not in input order{}", o.context());
        }
        for (t, bytes) in &self.learnt {
            let now = o.out.iter().find(|r| r.ts == *t).map(|r| &r.data);
            assert_eq!(
                now,
                Some(bytes),
                "replaying a longer capture with the same seed changed the translation of the packet at {} \
                 (a prefix run translated it differently): replay is not deterministic",
                show_ts(*t)
            );
        }
        o
    }

    /// Runs the scenario as built so far and returns the translated source "port" (UDP/TCP
    /// port or ICMP id) of the packet at `ms`, which must have been forwarded. Later runs
    /// check that this packet translates the same (the seed is fixed).
    pub fn learn_port(&mut self, ms: u64) -> u16 {
        let bytes = self.learn(ms);
        View::new(&bytes).src_key()
    }

    /// Runs the scenario as built so far and returns the output packet at `ms` (which must
    /// have been forwarded); later runs check it comes out the same.
    pub fn learn(&mut self, ms: u64) -> Vec<u8> {
        let o = self.run();
        let bytes = o.fwd(ms).bytes.to_vec();
        self.learnt.push((ts(ms), bytes.clone()));
        bytes
    }
}

fn show_ts(t: Duration) -> String {
    let rel = t.saturating_sub(Duration::from_secs(EPOCH_SECS));
    format!("t={}.{:03}s", rel.as_secs(), rel.subsec_millis())
}

fn read_output(path: &Path, link: Link, o: &Outcome) -> Vec<(Duration, Vec<u8>)> {
    assert!(path.exists(), "netnat replay did not write {}{}", path.display(), o.context());
    read_frames(path, link)
}

fn read_json(path: &Path, o: &Outcome) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("netnat replay did not write {}: {e}{}", path.display(), o.context()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}\n{text}", path.display()))
}

/// What one replay produced.
#[derive(Debug)]
pub struct Outcome {
    pub success: bool,
    pub status: String,
    pub command: String,
    pub stderr: String,
    pub input: Vec<Rec>,
    pub link: Link,
    /// OUTPUT as link-layer frames.
    pub out_frames: Vec<(Duration, Vec<u8>)>,
    /// OUTPUT's IPv4 packets.
    pub out: Vec<Rec>,
    /// --drops's IPv4 packets.
    pub drops: Vec<Rec>,
    pub stats: Value,
    pub sessions: Value,
}

impl Outcome {
    /// A summary appended to assertion messages.
    pub fn context(&self) -> String {
        let mut s = format!("\ncommand: {}\nstderr:\n{}\nstats: {}\noutput:", self.command, self.stderr, self.stats);
        for r in &self.out {
            s.push_str(&format!("\n  {} {}", show_ts(r.ts), describe(&r.data)));
        }
        s.push_str("\ndropped:");
        for r in &self.drops {
            s.push_str(&format!("\n  {} {}", show_ts(r.ts), describe(&r.data)));
        }
        s
    }

    pub fn assert_checksums(&self, exempt: &BTreeSet<Duration>) {
        let problems = checksum_problems(
            self.out
                .iter()
                .filter(|r| !exempt.contains(&r.ts))
                .map(|r| (format!("output at {}", show_ts(r.ts)), &r.data[..])),
        );
        assert!(problems.is_empty(), "checksum problems in the output:\n  {}{}", problems.join("\n  "), self.context());
    }

    /// The output packet carrying the input timestamp `ms`; fails the test if there is none
    /// (the packet was dropped) or more than one.
    pub fn fwd(&self, ms: u64) -> View<'_> {
        let t = ts(ms);
        let found: Vec<&Rec> = self.out.iter().filter(|r| r.ts == t).collect();
        assert!(
            !found.is_empty(),
            "the packet at {} was expected in the output but is not{}",
            show_ts(t),
            self.context()
        );
        assert_eq!(
            found.len(),
            1,
            "the packet at {} is in the output {} times{}",
            show_ts(t),
            found.len(),
            self.context()
        );
        View::new(&found[0].data)
    }

    pub fn is_forwarded(&self, ms: u64) -> bool {
        self.out.iter().any(|r| r.ts == ts(ms))
    }

    /// The input packet at `ms`.
    pub fn input_at(&self, ms: u64) -> &[u8] {
        &self.input.iter().find(|r| r.ts == ts(ms)).expect("no input at that time").data
    }

    /// Asserts the packet at `ms` was dropped: absent from OUTPUT, present in --drops.
    pub fn assert_dropped(&self, ms: u64) {
        let t = ts(ms);
        assert!(
            !self.out.iter().any(|r| r.ts == t),
            "the packet at {} was expected to be dropped but is in the output{}",
            show_ts(t),
            self.context()
        );
        assert!(
            self.drops.iter().any(|r| r.ts == t),
            "the packet at {} is not in the output but not in --drops either{}",
            show_ts(t),
            self.context()
        );
    }

    /// Asserts the packet at `ms` is in the output byte for byte as it came in.
    pub fn assert_passed_unchanged(&self, ms: u64) {
        let v = self.fwd(ms);
        assert_eq!(v.bytes, self.input_at(ms), "the packet at {} was changed{}", show_ts(ts(ms)), self.context());
    }

    /// A counter of --stats-json (top level).
    pub fn stat(&self, name: &str) -> u64 {
        self.stats
            .get(name)
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("--stats-json has no numeric {name:?}: {}", self.stats))
    }

    /// `dropped.<reason>` of --stats-json; the reason must be present (every reason is,
    /// zero or not — engine/src/stats.rs).
    pub fn dropped(&self, reason: &str) -> u64 {
        self.stats
            .get("dropped")
            .and_then(|d| d.get(reason))
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("--stats-json has no dropped.{reason}: {}", self.stats))
    }

    pub fn dropped_total(&self) -> u64 {
        self.stats
            .get("dropped")
            .and_then(Value::as_object)
            .unwrap_or_else(|| panic!("--stats-json has no dropped map: {}", self.stats))
            .values()
            .map(|v| v.as_u64().expect("dropped counters are numbers"))
            .sum()
    }

    /// Asserts the drop counters are exactly `expected` (reason, count), all others zero.
    pub fn assert_drops(&self, expected: &[(&str, u64)]) {
        for (reason, n) in expected {
            assert_eq!(self.dropped(reason), *n, "dropped.{reason}{}", self.context());
        }
        let total: u64 = expected.iter().map(|(_, n)| n).sum();
        assert_eq!(self.dropped_total(), total, "total drops (other reasons counted?){}", self.context());
        assert_eq!(self.drops.len() as u64, total, "packets in --drops{}", self.context());
    }

    /// The --sessions-json rows.
    pub fn sessions(&self) -> &Vec<Value> {
        self.sessions.as_array().unwrap_or_else(|| panic!("--sessions-json is not an array: {}", self.sessions))
    }
}

/// One line describing a packet, for failure messages.
pub fn describe(p: &[u8]) -> String {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return format!("{} bytes {:02x?}", p.len(), &p[..p.len().min(24)]);
    }
    let v = View { bytes: p };
    if v.is_fragment() && v.frag_offset() != 0 {
        return format!(
            "{} -> {} proto {} fragment off {} id {:#06x}",
            v.src(),
            v.dst(),
            v.proto(),
            v.frag_offset(),
            v.ident()
        );
    }
    let l4 = v.ip_payload();
    match v.proto() {
        6 | 17 if l4.len() >= 4 => format!(
            "{} {}:{} -> {}:{}{}",
            if v.proto() == 6 { "TCP" } else { "UDP" },
            v.src(),
            u16::from_be_bytes([l4[0], l4[1]]),
            v.dst(),
            u16::from_be_bytes([l4[2], l4[3]]),
            if v.is_fragment() { " (first fragment)" } else { "" }
        ),
        1 if l4.len() >= 8 => format!(
            "ICMP {} -> {} type {} code {} id/rest {}",
            v.src(),
            v.dst(),
            l4[0],
            l4[1],
            u16::from_be_bytes([l4[4], l4[5]])
        ),
        _ => format!("{} -> {} proto {} len {}", v.src(), v.dst(), v.proto(), p.len()),
    }
}
