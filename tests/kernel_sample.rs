//! The differential oracle: `samples/kernel-nat/` holds what a Linux NAT (nftables
//! `masquerade`, port preservation) was given (`input.pcap`) and what it sent on
//! (`expected.pcap`). `netnat replay --port-allocation preserve` must turn the one into the
//! other. Nobody on the project wrote the expected answer, so this catches mistakes that our
//! own scenario tests would share with the engine.
//!
//! What is compared, and why:
//! - Every packet, field by field, by `netnat replay --expect expected.pcap` itself (the
//!   comparison a user runs), with `--ignore ttl,ip-checksum,mac,order,time`:
//!   - `ttl`, `ip-checksum`: the kernel routed the packets, so its TTLs are one lower and its
//!     header checksums differ accordingly; `--expect` checks ours to be correct instead (and
//!     tshark does too, with checksum validation on, below). That ours = kernel's + 1 is
//!     checked here, beside `--expect`: netnat does not decrement TTL; the host that forwards
//!     does.
//!   - `mac`: the kernel wrote the MACs of its egress interface and the next hop, while
//!     `netnat replay` keeps each frame's link header as it came in (checked here: our link
//!     header equals the input's byte for byte).
//!   - `order`: the expected capture is two interfaces' captures merged by time, so packets
//!     the kernel sent within microseconds of each other on different interfaces can swap
//!     places (the sample has one such move); `--expect` lets a packet move up to 8 places.
//!   - `time`: the kernel sent each packet a few microseconds after it came in; ours keep
//!     their input timestamps exactly (checked here).
//! - The session table (`--sessions-json`) against the flows seen in the input: one row per
//!   outbound (internal endpoint, remote) pair, port preserved, created at the flow's first
//!   packet's timestamp.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use pcap_file::pcap::PcapReader;

#[path = "common/skip.rs"]
mod skip;

/// Where the sample lives, relative to the package root.
const SAMPLE: &str = "samples/kernel-nat";
/// The sample's NAT.
const INTERNAL_PREFIX: &str = "10.100.0.0/16";
const EXTERNAL_ADDRESS: &str = "203.0.113.1";
/// Ethernet header length (the sample has no VLAN tags).
const ETH: usize = 14;
/// What `--expect` does not compare for a kernel capture (see the module doc).
const KERNEL_IGNORES: &str = "ttl,ip-checksum,mac,order,time";
/// `netnat replay`'s exit status when the output differs from `--expect` (documented in its --help).
const EXIT_DIFFERS: i32 = 3;

/// One pcap record.
#[derive(Debug, Clone)]
struct Record {
    micros: u64,
    data: Vec<u8>,
}

fn read_pcap(path: &Path) -> (u32, Vec<Record>) {
    let file = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut reader = PcapReader::new(file).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let link = u32::from(reader.header().datalink);
    let mut records = Vec::new();
    while let Some(p) = reader.next_packet() {
        let p = p.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let micros = u64::try_from(p.timestamp.as_micros()).unwrap();
        records.push(Record { micros, data: p.data.into_owned() });
    }
    (link, records)
}

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(SAMPLE).join(name)
}

/// Runs the real binary on the sample, comparing its output with the kernel's through
/// `--expect` (given `ignore` for `--ignore`, none if empty); returns the run's result and the
/// (output pcap, sessions json) paths. The stats go to `stats.json` beside them.
fn replay_sample_expecting(dir: &Path, ignore: &str) -> (std::process::Output, PathBuf, PathBuf) {
    let out = dir.join("out.pcap");
    let sessions = dir.join("sessions.json");
    let stats = dir.join("stats.json");
    let mut command = Command::new(env!("CARGO_BIN_EXE_netnat"));
    command
        .arg("replay")
        .arg(sample("input.pcap"))
        .args(["--port-allocation", "preserve", "--internal-prefix", INTERNAL_PREFIX])
        .args(["--external-address", EXTERNAL_ADDRESS, "-o"])
        .arg(&out)
        .arg("--sessions-json")
        .arg(&sessions)
        .arg("--stats-json")
        .arg(&stats)
        .arg("--expect")
        .arg(sample("expected.pcap"));
    if !ignore.is_empty() {
        command.args(["--ignore", ignore]);
    }
    let result = command.output().expect("run netnat");
    (result, out, sessions)
}

/// The sample replayed and matched against the kernel's answer; returns the paths.
fn replay_sample(dir: &Path) -> (PathBuf, PathBuf) {
    let (result, out, sessions) = replay_sample_expecting(dir, KERNEL_IGNORES);
    let stderr = String::from_utf8_lossy(&result.stderr);
    if !result.status.success() {
        let stats = std::fs::read_to_string(dir.join("stats.json")).unwrap_or_default();
        panic!("netnat replay --expect expected.pcap failed ({}):\n{stderr}\nnetnat's stats:\n{stats}", result.status);
    }
    (out, sessions)
}

#[test]
fn every_output_packet_matches_the_kernel_nat() {
    let dir = tempfile::tempdir().unwrap();
    let (result, out, _) = replay_sample_expecting(dir.path(), KERNEL_IGNORES);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "netnat replay --expect failed ({}):\n{stderr}", result.status);
    let (input_link, input) = read_pcap(&sample("input.pcap"));
    let (_, expected) = read_pcap(&sample("expected.pcap"));
    assert_eq!(input.len(), expected.len(), "the sample pairs every input packet with an output one");
    assert!(
        stderr.contains(&format!(
            "--expect {}: all {} packets match",
            sample("expected.pcap").display(),
            expected.len()
        )),
        "--expect reports the match:\n{stderr}"
    );

    // What --expect was told to ignore is checked here, against the input.
    let (out_link, ours) = read_pcap(&out);
    assert_eq!(out_link, input_link, "output keeps the input's link type");
    assert_eq!(ours.len(), input.len(), "every packet forwarded, none dropped, none added");
    for (i, (o, inp)) in ours.iter().zip(&input).enumerate() {
        assert_eq!(o.micros, inp.micros, "packet {i}: keeps its input timestamp");
        assert_eq!(o.data[..ETH], inp.data[..ETH], "packet {i}: link header kept as it came in");
        assert_eq!(o.data[ETH + 8], inp.data[ETH + 8], "packet {i}: netnat keeps the TTL");
    }
    let input_ttls: Vec<u8> = input.iter().map(|r| r.data[ETH + 8]).collect();
    let mut kernel_ttls: Vec<u8> = expected.iter().map(|r| r.data[ETH + 8] + 1).collect();
    let mut sorted_input = input_ttls.clone();
    sorted_input.sort_unstable();
    kernel_ttls.sort_unstable();
    assert_eq!(kernel_ttls, sorted_input, "the kernel's TTLs are one lower than what came in");
}

#[test]
fn expect_without_the_kernel_ignores_names_what_the_kernel_changed() {
    // The comparison has teeth on real data: strictly, every packet differs in TTL, header
    // checksum, MACs and time, and the report says so by field.
    let dir = tempfile::tempdir().unwrap();
    let (result, _, _) = replay_sample_expecting(dir.path(), "");
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(EXIT_DIFFERS), "{stderr}");
    for needle in [
        "the output differs",
        "packet 1 (203.0.113.1 -> 203.0.113.10 icmp echo-request id 24650 seq 1):",
        "ip.ttl: expected 63, got 64",
        "ip.checksum: expected 0x",
        "eth.src: expected",
        "frame.time: expected",
    ] {
        assert!(stderr.contains(needle), "{needle:?} in:\n{stderr}");
    }
    // Without `order`, the one packet the merged capture moved is extra where ours has it and
    // missing where the kernel's capture has it.
    let (result, _, _) = replay_sample_expecting(dir.path(), "ttl,ip-checksum,mac,time");
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(EXIT_DIFFERS), "{stderr}");
    assert!(stderr.contains("0 packets changed, 1 missing, 1 extra"), "{stderr}");
}

/// Outbound flows of the input: (protocol, internal source, source port or ICMP id, remote,
/// remote port) -> first timestamp.
fn outbound_flows(input: &[Record]) -> BTreeMap<(u8, Ipv4Addr, u16, Ipv4Addr, u16), u64> {
    let prefix: ipnet::Ipv4Net = INTERNAL_PREFIX.parse().unwrap();
    let mut flows = BTreeMap::new();
    for r in input {
        let ip = &r.data[ETH..];
        let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
        if !prefix.contains(&src) || prefix.contains(&dst) {
            continue;
        }
        let l4 = &ip[usize::from(ip[0] & 0x0f) * 4..];
        let key = match ip[9] {
            // Echo request: the identifier plays the port.
            1 if l4[0] == 8 => (1, src, u16::from_be_bytes([l4[4], l4[5]]), dst, 0),
            6 | 17 => (ip[9], src, u16::from_be_bytes([l4[0], l4[1]]), dst, u16::from_be_bytes([l4[2], l4[3]])),
            _ => continue,
        };
        flows.entry(key).or_insert(r.micros);
    }
    flows
}

#[test]
fn session_table_has_one_row_per_outbound_flow_with_preserved_ports() {
    let dir = tempfile::tempdir().unwrap();
    let (_, sessions_path) = replay_sample(dir.path());
    let sessions: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&sessions_path).unwrap()).expect("sessions JSON is an array");
    let (_, input) = read_pcap(&sample("input.pcap"));
    let flows = outbound_flows(&input);
    assert!(flows.len() >= 3, "the sample has ICMP, TCP and UDP flows");

    let mut seen = BTreeMap::new();
    for s in &sessions {
        let addr = |k: &str| s[k].as_str().unwrap_or_else(|| panic!("{k} missing: {s}")).parse::<Ipv4Addr>().unwrap();
        let port = |k: &str| u16::try_from(s[k].as_u64().unwrap_or_else(|| panic!("{k} missing: {s}"))).unwrap();
        assert_eq!(s["NatName"], "WinNAT");
        let protocol = u8::try_from(s["Protocol"].as_u64().unwrap()).unwrap();
        let remote_port = if protocol == 1 { 0 } else { port("InternalDestinationPort") };
        let key = (
            protocol,
            addr("InternalSourceAddress"),
            port("InternalSourcePort"),
            addr("InternalDestinationAddress"),
            remote_port,
        );
        assert_eq!(addr("ExternalSourceAddress").to_string(), EXTERNAL_ADDRESS, "{s}");
        assert_eq!(port("ExternalSourcePort"), port("InternalSourcePort"), "preserve keeps the port: {s}");
        assert_eq!(addr("ExternalDestinationAddress"), addr("InternalDestinationAddress"), "{s}");
        if protocol != 1 {
            assert_eq!(port("ExternalDestinationPort"), port("InternalDestinationPort"), "{s}");
        }
        seen.insert(key, s["CreationTime"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen.len(), sessions.len(), "no duplicate rows");
    let expected_keys: Vec<_> = flows.keys().collect();
    let seen_keys: Vec<_> = seen.keys().collect();
    assert_eq!(seen_keys, expected_keys, "one session per outbound flow of the input");
    for (key, first_micros) in &flows {
        let created = &seen[key];
        let micros = format!(".{:06}Z", first_micros % 1_000_000);
        assert!(created.ends_with(&micros), "{key:?}: CreationTime {created} is not the first packet's time");
    }
}

/// tshark's verdict per checksum (0 bad, 1 good, 2 unverified), validation switched on.
#[test]
// tshark is a Linux program: a Windows build (run under Wine) cannot start it.
#[cfg_attr(windows, ignore = "tshark (Linux) cannot be started from a Windows test; the Linux run checks it")]
fn output_checksums_pass_tshark_validation() {
    if Command::new("tshark").arg("--version").output().is_err() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("tshark is missing in CI; .ci/run installs it from .ci/apt-packages.txt");
        }
        skip::record_skip("output_checksums_pass_tshark_validation", "tshark is not installed: apt-get install tshark");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (out, _) = replay_sample(dir.path());
    let result = Command::new("tshark")
        .arg("-r")
        .arg(&out)
        .args(["-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE"])
        .args(["-T", "fields", "-E", "separator=;"])
        .args(["-e", "frame.number", "-e", "ip.checksum.status", "-e", "tcp.checksum.status"])
        .args(["-e", "udp.checksum.status", "-e", "icmp.checksum.status"])
        .output()
        .expect("run tshark");
    assert!(result.status.success(), "tshark failed: {}", String::from_utf8_lossy(&result.stderr));
    let text = String::from_utf8(result.stdout).unwrap();
    let (_, ours) = read_pcap(&out);
    assert_eq!(text.lines().count(), ours.len(), "tshark read every packet:\n{text}");
    let names = ["ip", "tcp", "udp", "icmp"];
    let mut good = [0usize; 4];
    for line in text.lines() {
        let fields: Vec<&str> = line.split(';').collect();
        for (k, field) in fields[1..].iter().enumerate() {
            for status in field.split(',').filter(|s| !s.is_empty()) {
                assert_ne!(status, "0", "frame {}: bad {} checksum (tshark: {line})", fields[0], names[k]);
                if status == "1" {
                    good[k] += 1;
                }
            }
        }
    }
    // Each protocol of the sample was actually validated, not merely left unverified.
    for (k, n) in good.iter().enumerate() {
        assert!(*n > 0, "no {} checksum was validated as good:\n{text}", names[k]);
    }
    assert!(good[0] >= ours.len(), "every packet's IPv4 checksum was validated");
}
