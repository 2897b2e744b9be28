//! `netnat replay` as a user meets it: flags and their errors, the `--config` file and its
//! precedence, bad input files, the JSON outputs, pcapng and raw-IP inputs, non-IPv4 frames,
//! `--drops`, atomic output, the annotated pcapng output (read back by tshark and by
//! pcap-file) and `--expect` with its `--ignore` options. Packet-level NAT behaviour is tested
//! in `scenarios_*.rs`; these tests run the real binary on the kernel sample and on captures
//! derived from it.

use std::fs::{self, File};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::DataLink;

#[path = "common/skip.rs"]
mod skip;

const SAMPLE_INPUT: &str = "samples/kernel-nat/input.pcap";
const ETH: usize = 14;
/// The settings that make the sample translate (see tests/kernel_sample.rs).
const NAT_FLAGS: [&str; 6] =
    ["--internal-prefix", "10.100.0.0/16", "--external-address", "203.0.113.1", "--port-allocation", "preserve"];

fn sample_input() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(SAMPLE_INPUT)
}

fn netnat<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_netnat")).arg("replay").args(args).output().expect("run netnat")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts failure with a message containing every one of `needles`.
fn assert_fails_with(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure, got success; stderr:\n{err}");
    for n in needles {
        assert!(err.contains(n), "expected {n:?} in stderr:\n{err}");
    }
    assert!(!err.contains("panicked"), "must not panic:\n{err}");
}

fn assert_ok(o: &Output) {
    assert!(o.status.success(), "netnat replay failed:\n{}", stderr(o));
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    micros: u64,
    data: Vec<u8>,
}

fn read_pcap(path: &Path) -> (DataLink, Vec<Record>) {
    let mut reader = PcapReader::new(File::open(path).unwrap()).unwrap();
    let link = reader.header().datalink;
    let mut records = Vec::new();
    while let Some(p) = reader.next_packet() {
        let p = p.unwrap();
        records.push(Record { micros: u64::try_from(p.timestamp.as_micros()).unwrap(), data: p.data.into_owned() });
    }
    (link, records)
}

fn write_pcap(path: &Path, link: DataLink, records: &[Record]) {
    let header = PcapHeader { datalink: link, ..PcapHeader::default() };
    let mut w = PcapWriter::with_header(File::create(path).unwrap(), header).unwrap();
    for r in records {
        let len = u32::try_from(r.data.len()).unwrap();
        w.write_packet(&PcapPacket::new(std::time::Duration::from_micros(r.micros), len, &r.data)).unwrap();
    }
}

/// Replays `input` with the sample's NAT settings plus `extra`; returns the output records.
fn replay(dir: &Path, input: &Path, extra: &[&str]) -> (DataLink, Vec<Record>) {
    let out = dir.join("out.pcap");
    let o = netnat(
        [input.as_os_str(), "-o".as_ref(), out.as_os_str()]
            .into_iter()
            .chain(NAT_FLAGS.iter().chain(extra).map(|s| s.as_ref())),
    );
    assert_ok(&o);
    read_pcap(&out)
}

fn ip_src(frame: &[u8], offset: usize) -> Ipv4Addr {
    let ip = &frame[offset..];
    Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15])
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn help_lists_every_flag_of_the_design() {
    let o = netnat(["--help"]);
    assert_ok(&o);
    let help = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "--output",
        "--internal-prefix",
        "--external-address",
        "--port-range",
        "--port-allocation",
        "--udp-idle-timeout",
        "--tcp-established-timeout",
        "--tcp-transient-timeout",
        "--icmp-query-timeout",
        "--udp-filtering",
        "--tcp-filtering",
        "--udp-inbound-refresh",
        "--static-mapping",
        "--max-sessions",
        "--max-sessions-per-host",
        "--seed",
        "--config",
        "--drops",
        "--sessions-json",
        "--stats-json",
        "--nat-name",
        "--format",
        "--expect",
        "--ignore",
        "external-port",
        "3 the output differs from --expect",
        "frame.comment",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[test]
fn missing_settings_say_which_flag_to_give() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.pcap");
    let input = sample_input();
    let o = netnat([
        input.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--external-address".as_ref(),
        "203.0.113.1".as_ref(),
    ]);
    assert_fails_with(&o, &["--internal-prefix", "10.100.0.0/16"]);
    let o = netnat([
        input.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--internal-prefix".as_ref(),
        "10.100.0.0/16".as_ref(),
    ]);
    assert_fails_with(&o, &["--external-address"]);
    let o = netnat([input.as_os_str(), "--internal-prefix".as_ref(), "10.100.0.0/16".as_ref()]);
    assert_fails_with(&o, &["-o OUTPUT"]);
    assert!(files_in(dir.path()).is_empty(), "nothing written on a settings error");
}

#[test]
fn bad_flag_values_are_rejected_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.pcap");
    let input = sample_input();
    for (flag, value, needles) in [
        ("--internal-prefix", "10.100.0.0/33", &["10.100.0.0/33", "ADDRESS/LENGTH"][..]),
        ("--external-address", "203.0.113.300", &["203.0.113.300", "dotted quad"]),
        ("--port-range", "2000-1000", &["empty", "1024-65535"]),
        ("--port-allocation", "sequential", &["random or preserve"]),
        ("--udp-filtering", "open", &["EndpointIndependentFiltering"]),
        ("--tcp-filtering", "closed", &["AddressAndPortDependentFiltering"]),
        ("--udp-inbound-refresh", "maybe", &["true or false"]),
        ("--udp-idle-timeout", "0", &["at least 1"]),
        ("--tcp-established-timeout", "long", &["number of seconds"]),
        ("--static-mapping", "tcp:0.0.0.0:8080", &["PROTO:EXTADDR:EXTPORT=INTADDR"]),
        ("--max-sessions", "0", &["at least 1"]),
        ("--hairpinning", "sideways", &["External or Local"]),
        ("--no-such-flag", "1", &["--no-such-flag"]),
    ] {
        let o = netnat(
            [input.as_os_str(), "-o".as_ref(), out.as_os_str()]
                .into_iter()
                .chain(NAT_FLAGS.iter().map(|s| s.as_ref()))
                .chain([flag.as_ref(), value.as_ref()]),
        );
        assert_fails_with(&o, needles);
    }
    // Settings that parse but contradict each other: the engine's check, reported by flag.
    let o = netnat([
        input.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--internal-prefix".as_ref(),
        "10.100.0.0/16".as_ref(),
        "--external-address".as_ref(),
        "10.100.0.1".as_ref(),
    ]);
    assert_fails_with(&o, &["10.100.0.1", "inside the internal prefix"]);
    let o = netnat(
        [input.as_os_str(), "-o".as_ref(), out.as_os_str()]
            .into_iter()
            .chain(NAT_FLAGS.iter().map(|s| s.as_ref()))
            .chain(["--static-mapping", "tcp:0.0.0.0:80=192.0.2.1:80"].iter().map(|s| s.as_ref())),
    );
    assert_fails_with(&o, &["192.0.2.1", "outside the internal prefix"]);
    // --external-address accumulates (a repeated one is a duplicate), other flags: the last wins.
    let o = netnat(
        [input.as_os_str(), "-o".as_ref(), out.as_os_str()]
            .into_iter()
            .chain(NAT_FLAGS.iter().map(|s| s.as_ref()))
            .chain(["--external-address", "203.0.113.1", "--seed", "1", "--seed", "2"].iter().map(|s| s.as_ref())),
    );
    assert_fails_with(&o, &["203.0.113.1 is given twice"]);
    assert!(files_in(dir.path()).is_empty(), "nothing written on a settings error");
}

#[test]
fn config_file_errors_name_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.pcap");
    let config = dir.path().join("nat.toml");
    let input = sample_input();
    let run = |text: &str| {
        fs::write(&config, text).unwrap();
        netnat([input.as_os_str(), "-o".as_ref(), out.as_os_str(), "--config".as_ref(), config.as_os_str()])
    };
    let path = config.display().to_string();
    assert_fails_with(
        &run("internal_prefix = \"10.100.0.0/16\"\nexternal_adress = [\"203.0.113.1\"]\n"),
        &[&path, "external_adress"],
    );
    assert_fails_with(&run("internal_prefix = \"10.100.0.0/99\"\n"), &[&path, "internal_prefix", "10.100.0.0/99"]);
    assert_fails_with(&run("udp_idle_timeout = \"two minutes\"\n"), &[&path, "udp_idle_timeout"]);
    assert_fails_with(&run("static_mapping = [\"tcp:0.0.0.0:80=10.100.0.2:80:80\"]\n"), &[&path, "static_mapping"]);
    assert_fails_with(&run("not = valid = toml\n"), &[&path]);
    let missing = dir.path().join("missing.toml");
    let o = netnat([input.as_os_str(), "-o".as_ref(), out.as_os_str(), "--config".as_ref(), missing.as_os_str()]);
    assert_fails_with(&o, &[&missing.display().to_string(), "--config"]);
    assert!(!out.exists());
}

#[test]
fn flags_override_the_config_file_and_the_file_fills_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nat.toml");
    // The file alone would translate to 198.51.100.99 with random ports; the command line
    // overrides the address, the file still supplies the prefix, the policy and the JSON path.
    fs::write(
        &config,
        "internal_prefix = \"10.100.0.0/16\"\n\
         external_address = [\"198.51.100.99\"]\n\
         port_allocation = \"preserve\"\n\
         nat_name = \"FromFile\"\n\
         sessions_json = \"sessions.json\"\n",
    )
    .unwrap();
    let out = dir.path().join("out.pcap");
    let input = sample_input();
    let o = netnat([
        input.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--config".as_ref(),
        config.as_os_str(),
        "--external-address".as_ref(),
        "203.0.113.1".as_ref(),
    ]);
    assert_ok(&o);
    let (_, records) = read_pcap(&out);
    let (_, input_records) = read_pcap(&input);
    let outbound: Vec<Ipv4Addr> = records
        .iter()
        .zip(&input_records)
        .filter(|(_, i)| ip_src(&i.data, ETH).octets()[..2] == [10, 100])
        .map(|(o, _)| ip_src(&o.data, ETH))
        .collect();
    assert!(!outbound.is_empty());
    assert!(outbound.iter().all(|a| *a == Ipv4Addr::new(203, 0, 113, 1)), "the flag wins: {outbound:?}");
    // sessions_json is relative to the config file's directory.
    let sessions: Vec<serde_json::Value> =
        serde_json::from_str(&fs::read_to_string(dir.path().join("sessions.json")).unwrap()).unwrap();
    assert!(!sessions.is_empty());
    for s in &sessions {
        assert_eq!(s["NatName"], "FromFile", "nat_name from the file");
        assert_eq!(s["ExternalSourcePort"], s["InternalSourcePort"], "port_allocation from the file");
    }
}

#[test]
fn unreadable_garbage_and_truncated_inputs_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.pcap");
    let run = |input: &Path| {
        netnat(
            [input.as_os_str(), "-o".as_ref(), out.as_os_str()].into_iter().chain(NAT_FLAGS.iter().map(|s| s.as_ref())),
        )
    };
    let missing = dir.path().join("missing.pcap");
    assert_fails_with(&run(&missing), &[&missing.display().to_string(), "cannot read"]);

    let garbage = dir.path().join("garbage.pcap");
    fs::write(&garbage, b"GET / HTTP/1.1\r\nHost: example\r\n\r\n").unwrap();
    assert_fails_with(&run(&garbage), &[&garbage.display().to_string(), "not a pcap"]);

    let empty = dir.path().join("empty.pcap");
    fs::write(&empty, b"").unwrap();
    assert_fails_with(&run(&empty), &[&empty.display().to_string(), "empty"]);

    let sample = fs::read(sample_input()).unwrap();
    let truncated = dir.path().join("truncated.pcap");
    fs::write(&truncated, &sample[..sample.len() - 100]).unwrap();
    assert_fails_with(&run(&truncated), &[&truncated.display().to_string(), "truncated", "record"]);

    let header_only = dir.path().join("short-header.pcap");
    fs::write(&header_only, &sample[..12]).unwrap();
    assert_fails_with(&run(&header_only), &[&header_only.display().to_string(), "truncated"]);

    let mut sll = sample[..24].to_vec();
    sll[20..24].copy_from_slice(&113u32.to_le_bytes());
    let sll_path = dir.path().join("cooked.pcap");
    fs::write(&sll_path, &sll).unwrap();
    assert_fails_with(&run(&sll_path), &[&sll_path.display().to_string(), "link type 113", "Ethernet"]);

    assert_fails_with(&run(dir.path()), &[&dir.path().display().to_string(), "directory"]);
    assert!(!out.exists(), "no output for a failed replay");
}

#[test]
fn failed_replay_keeps_the_old_output_and_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.pcap");
    fs::write(&out, b"previous result").unwrap();
    let sample = fs::read(sample_input()).unwrap();
    let truncated = dir.path().join("in.pcap");
    // Cut inside the last record: the replay writes 111 packets, then fails.
    fs::write(&truncated, &sample[..sample.len() - 10]).unwrap();
    let sessions = dir.path().join("sessions.json");
    let o = netnat(
        [truncated.as_os_str(), "-o".as_ref(), out.as_os_str(), "--sessions-json".as_ref(), sessions.as_os_str()]
            .into_iter()
            .chain(NAT_FLAGS.iter().map(|s| s.as_ref())),
    );
    assert_fails_with(&o, &["truncated"]);
    assert_eq!(fs::read(&out).unwrap(), b"previous result", "the old output is untouched");
    assert_eq!(files_in(dir.path()), ["in.pcap", "out.pcap"], "no temporary or partial files");

    // The same run on the whole file replaces it, again without leftovers.
    fs::copy(sample_input(), &truncated).unwrap();
    let o = netnat(
        [truncated.as_os_str(), "-o".as_ref(), out.as_os_str(), "--sessions-json".as_ref(), sessions.as_os_str()]
            .into_iter()
            .chain(NAT_FLAGS.iter().map(|s| s.as_ref())),
    );
    assert_ok(&o);
    assert_eq!(read_pcap(&out).1.len(), read_pcap(&sample_input()).1.len());
    assert_eq!(files_in(dir.path()), ["in.pcap", "out.pcap", "sessions.json"]);
}

#[test]
fn stats_and_sessions_json_agree_with_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let stats_path = dir.path().join("stats.json");
    let sessions_path = dir.path().join("sessions.json");
    let (_, out) = replay(
        dir.path(),
        &sample_input(),
        &["--stats-json", stats_path.to_str().unwrap(), "--sessions-json", sessions_path.to_str().unwrap()],
    );
    let (_, input) = read_pcap(&sample_input());
    let stats: serde_json::Value = serde_json::from_str(&fs::read_to_string(&stats_path).unwrap()).unwrap();
    let n = |k: &str| stats[k].as_u64().unwrap_or_else(|| panic!("stats lacks {k}: {stats}"));
    assert_eq!(n("packets_read"), input.len() as u64);
    assert_eq!(n("packets_written"), out.len() as u64);
    assert_eq!(n("non_ipv4"), 0);
    assert_eq!(n("translated_out") + n("translated_in") + n("passed"), out.len() as u64);
    let outbound = input.iter().filter(|r| ip_src(&r.data, ETH).octets()[..2] == [10, 100]).count() as u64;
    assert_eq!(n("translated_out"), outbound);
    assert_eq!(n("packets_dropped"), 0);
    assert!(stats["dropped"].as_object().is_some_and(|m| m.contains_key("no_mapping")), "{stats}");

    let sessions: Vec<serde_json::Value> = serde_json::from_str(&fs::read_to_string(&sessions_path).unwrap()).unwrap();
    assert_eq!(sessions.len() as u64, n("sessions_active"));
    assert_eq!(n("sessions_created"), n("sessions_active") + n("sessions_expired") + n("sessions_removed"));
    let keys = [
        "NatName",
        "Protocol",
        "CreationTime",
        "InternalSourceAddress",
        "InternalSourcePort",
        "InternalDestinationAddress",
        "InternalDestinationPort",
        "ExternalSourceAddress",
        "ExternalSourcePort",
        "ExternalDestinationAddress",
        "ExternalDestinationPort",
    ];
    for s in &sessions {
        let obj = s.as_object().unwrap();
        assert_eq!(obj.len(), keys.len(), "exactly the NetNatSession properties: {s}");
        for k in keys {
            assert!(obj.contains_key(k), "{k} missing: {s}");
        }
        assert_eq!(s["NatName"], "WinNAT", "default NatName");
        assert!([1, 6, 17].contains(&s["Protocol"].as_u64().unwrap()), "{s}");
        let t = s["CreationTime"].as_str().unwrap();
        assert!(t.len() == 27 && t.starts_with("20") && t.ends_with('Z') && t.as_bytes()[19] == b'.', "{t}");
    }
}

#[test]
fn pcapng_input_replays_like_pcap() {
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption};
    use pcap_file::pcapng::PcapNgWriter;

    let dir = tempfile::tempdir().unwrap();
    let (_, input) = read_pcap(&sample_input());
    let ng = dir.path().join("in.pcapng");
    let mut w = PcapNgWriter::new(File::create(&ng).unwrap()).unwrap();
    let mut idb = InterfaceDescriptionBlock::new(DataLink::ETHERNET, 262_144);
    // Nanosecond timestamps, as dumpcap writes them on Linux.
    idb.options.push(InterfaceDescriptionOption::IfTsResol(9));
    w.write_pcapng_block(idb).unwrap();
    for r in &input {
        let epb = EnhancedPacketBlock {
            interface_id: 0,
            // pcap-file writes the nanoseconds of this field as the raw timestamp.
            timestamp: std::time::Duration::from_micros(r.micros),
            original_len: u32::try_from(r.data.len()).unwrap(),
            data: r.data.as_slice().into(),
            options: vec![],
        };
        w.write_pcapng_block(epb).unwrap();
    }
    drop(w);

    let (link_ng, from_ng) = replay(dir.path(), &ng, &[]);
    let (link_pcap, from_pcap) = replay(dir.path(), &sample_input(), &[]);
    assert_eq!(link_ng, DataLink::ETHERNET);
    assert_eq!(link_ng, link_pcap);
    assert_eq!(from_ng, from_pcap, "same packets, same timestamps");
}

#[test]
fn raw_ip_link_types_replay_and_keep_their_link_type() {
    let dir = tempfile::tempdir().unwrap();
    let (_, eth_out) = replay(dir.path(), &sample_input(), &[]);
    let (_, input) = read_pcap(&sample_input());
    let raw: Vec<Record> = input.iter().map(|r| Record { micros: r.micros, data: r.data[ETH..].to_vec() }).collect();
    for link in [DataLink::RAW, DataLink::IPV4] {
        let path = dir.path().join("raw.pcap");
        write_pcap(&path, link, &raw);
        let (out_link, out) = replay(dir.path(), &path, &[]);
        assert_eq!(out_link, link, "output keeps link type {link:?}");
        assert_eq!(out.len(), eth_out.len());
        for (o, e) in out.iter().zip(&eth_out) {
            assert_eq!(o.micros, e.micros);
            assert_eq!(o.data, e.data[ETH..], "the same translation without the Ethernet header");
        }
    }
}

#[test]
fn non_ipv4_frames_pass_through_unchanged_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let (_, input) = read_pcap(&sample_input());
    let mut arp = input[0].data[..ETH].to_vec();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1, 0xaa, 0x4d, 0xaa, 0x3a, 0xb9, 0x60, 10, 100, 10, 11]);
    arp.extend_from_slice(&[0, 0, 0, 0, 0, 0, 10, 100, 1, 1]);
    let mut ipv6 = input[0].data[..ETH].to_vec();
    ipv6[12..14].copy_from_slice(&[0x86, 0xdd]);
    ipv6.extend_from_slice(&[0x60, 0, 0, 0, 0, 0, 59, 64]);
    ipv6.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    ipv6.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    let mut mixed = input.clone();
    mixed.insert(1, Record { micros: input[0].micros + 1, data: arp.clone() });
    mixed.insert(4, Record { micros: input[2].micros + 1, data: ipv6.clone() });
    let path = dir.path().join("mixed.pcap");
    write_pcap(&path, DataLink::ETHERNET, &mixed);
    let stats_path = dir.path().join("stats.json");
    let (_, out) = replay(dir.path(), &path, &["--stats-json", stats_path.to_str().unwrap()]);
    assert_eq!(out.len(), mixed.len());
    assert_eq!(out[1], mixed[1], "ARP unchanged, in place");
    assert_eq!(out[4], mixed[4], "IPv6 unchanged, in place");
    assert_ne!(out[0].data, mixed[0].data, "IPv4 around them still translated");
    let stats: serde_json::Value = serde_json::from_str(&fs::read_to_string(&stats_path).unwrap()).unwrap();
    assert_eq!(stats["non_ipv4"], 2);
}

#[test]
fn drops_file_holds_dropped_packets_as_they_came() {
    let dir = tempfile::tempdir().unwrap();
    let (_, input) = read_pcap(&sample_input());
    // Only what came from outside: with no outbound packet first, nothing maps, all drop.
    let inbound: Vec<Record> =
        input.iter().filter(|r| ip_src(&r.data, ETH).octets()[..2] != [10, 100]).cloned().collect();
    assert!(!inbound.is_empty());
    let path = dir.path().join("inbound.pcap");
    write_pcap(&path, DataLink::ETHERNET, &inbound);
    let drops = dir.path().join("drops.pcap");
    let stats_path = dir.path().join("stats.json");
    let (_, out) =
        replay(dir.path(), &path, &["--drops", drops.to_str().unwrap(), "--stats-json", stats_path.to_str().unwrap()]);
    assert!(out.is_empty(), "nothing forwarded: {} packets", out.len());
    let (link, dropped) = read_pcap(&drops);
    assert_eq!(link, DataLink::ETHERNET);
    assert_eq!(dropped, inbound, "every dropped packet, unmodified, with its timestamp");
    let stats: serde_json::Value = serde_json::from_str(&fs::read_to_string(&stats_path).unwrap()).unwrap();
    assert_eq!(stats["packets_dropped"], inbound.len() as u64);
    let o = netnat(
        [path.as_os_str(), "-o".as_ref(), dir.path().join("o2.pcap").as_os_str()]
            .into_iter()
            .chain(NAT_FLAGS.iter().map(|s| s.as_ref())),
    );
    assert_ok(&o);
    let summary = stderr(&o);
    assert!(summary.contains(&format!("dropped {}", inbound.len())), "summary counts drops:\n{summary}");
}

#[test]
fn dash_writes_the_capture_to_stdout_and_quiet_silences_the_summary() {
    let input = sample_input();
    let o = netnat(
        [input.as_os_str(), "-o".as_ref(), "-".as_ref(), "-q".as_ref()]
            .into_iter()
            .chain(NAT_FLAGS.iter().map(|s| s.as_ref())),
    );
    assert_ok(&o);
    assert!(o.stderr.is_empty(), "-q prints nothing: {}", stderr(&o));
    let mut reader = PcapReader::new(o.stdout.as_slice()).expect("stdout is a pcap");
    let mut n = 0;
    while let Some(p) = reader.next_packet() {
        p.unwrap();
        n += 1;
    }
    assert_eq!(n, read_pcap(&input).1.len());

    let dir = tempfile::tempdir().unwrap();
    let o = netnat(
        [input.as_os_str(), "-o".as_ref(), dir.path().join("o.pcap").as_os_str()]
            .into_iter()
            .chain(NAT_FLAGS.iter().map(|s| s.as_ref())),
    );
    assert_ok(&o);
    let summary = stderr(&o);
    assert!(summary.contains(&format!("read {n} packets")) && summary.contains("sessions"), "{summary}");
}

#[test]
fn example_config_is_valid_and_flags_redirect_its_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/replay.toml");
    let out = dir.path().join("out.pcap");
    let sessions = dir.path().join("sessions.json");
    let stats = dir.path().join("stats.json");
    let o = netnat([
        sample_input().as_os_str(),
        "--config".as_ref(),
        example.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--sessions-json".as_ref(),
        sessions.as_os_str(),
        "--stats-json".as_ref(),
        stats.as_os_str(),
    ]);
    assert_ok(&o);
    assert_eq!(read_pcap(&out).1.len(), read_pcap(&sample_input()).1.len(), "the example translates the sample");
    assert!(sessions.exists() && stats.exists());
}

/// An Ethernet frame from `mac` with an IPv4 fragment of a UDP datagram `src -> 198.51.100.10`
/// (identification 0x1234, fragment offset `offset8` in 8-byte units, more fragments `mf`).
fn fragment_frame(mac: u8, src: [u8; 4], offset8: u16, mf: bool, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, mac, 0x08, 0x00];
    let total = u16::try_from(20 + payload.len()).unwrap();
    let flags = offset8 | if mf { 0x2000 } else { 0 };
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0x12, 0x34]);
    ip.extend_from_slice(&flags.to_be_bytes());
    ip.extend_from_slice(&[64, 17, 0, 0]);
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&[198, 51, 100, 10]);
    let sum = ip.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).sum::<u32>();
    let sum = !((sum & 0xffff) + (sum >> 16)) as u16;
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(payload);
    f
}

/// Two hosts' datagrams with the same IP identification whose last fragments come first, at
/// the same instant: each released fragment is written behind its own frame's link header
/// (the engine's held id, not the packet's IP id words or its time, finds it).
#[test]
fn released_fragments_are_written_behind_their_own_frames() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = ([10, 100, 1, 1], [10, 100, 2, 2]);
    // UDP header (checksum 0: none) + 8 bytes; the last fragment holds 8 more bytes.
    let first = |tag: u8| [&[0x13, 0x88, 0x23, 0x28, 0, 24, 0, 0][..], &[tag; 8]].concat();
    let input = vec![
        Record { micros: 1000, data: fragment_frame(0x0a, a, 2, false, &[0xaa; 8]) },
        Record { micros: 1000, data: fragment_frame(0x0b, b, 2, false, &[0xbb; 8]) },
        Record { micros: 2000, data: fragment_frame(0x0b, b, 0, true, &first(0xbb)) },
        Record { micros: 3000, data: fragment_frame(0x0a, a, 0, true, &first(0xaa)) },
    ];
    let path = dir.path().join("fragments.pcap");
    write_pcap(&path, DataLink::ETHERNET, &input);
    let (_, out) = replay(dir.path(), &path, &[]);
    // B's first fragment releases B's held one, then A's first releases A's.
    let seen: Vec<(u64, u8, u8, Ipv4Addr)> =
        out.iter().map(|r| (r.micros, r.data[11], r.data[r.data.len() - 1], ip_src(&r.data, ETH))).collect();
    let ext = Ipv4Addr::new(203, 0, 113, 1);
    assert_eq!(
        seen,
        vec![(2000, 0x0b, 0xbb, ext), (1000, 0x0b, 0xbb, ext), (3000, 0x0a, 0xaa, ext), (1000, 0x0a, 0xaa, ext)],
        "(time, source MAC, payload, source) of each output frame"
    );
}

/// `netnat replay`'s exit status when the output differs from `--expect` (its --help says so).
const EXIT_DIFFERS: i32 = 3;

/// `link` (an Ethernet header) and a UDP/IPv4 packet `src:sport -> dst:dport`, 4 bytes of
/// payload, correct checksums.
fn udp_frame(link: &[u8], src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut frame = link[..ETH].to_vec();
    etherparse::PacketBuilder::ipv4(src, dst, 64).udp(sport, dport).write(&mut frame, &[1, 2, 3, 4]).unwrap();
    frame
}

/// The sample with, after its first packet, one packet the NAT drops (inbound to an external
/// port nothing maps), one it passes (between two outside hosts: not its business) and an ARP
/// frame. Returns the records and the indexes of those three.
fn mixed_input() -> (Vec<Record>, [usize; 3]) {
    let (_, input) = read_pcap(&sample_input());
    let link = &input[0].data[..ETH];
    let t = input[0].micros;
    let dropped = udp_frame(link, [198, 51, 100, 7], 53, [203, 0, 113, 1], 999);
    let passed = udp_frame(link, [198, 51, 100, 7], 5000, [198, 51, 100, 8], 6000);
    let mut arp = link.to_vec();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1, 0xaa, 0x4d, 0xaa, 0x3a, 0xb9, 0x60, 10, 100, 10, 11]);
    arp.extend_from_slice(&[0, 0, 0, 0, 0, 0, 10, 100, 1, 1]);
    let mut mixed = input.clone();
    mixed.insert(1, Record { micros: t + 1, data: dropped });
    mixed.insert(2, Record { micros: t + 2, data: passed });
    mixed.insert(3, Record { micros: t + 3, data: arp });
    (mixed, [1, 2, 3])
}

/// Whether tshark runs here; records a skip (and says "SKIPPED (tshark missing)") if not.
/// In CI it must be there (.ci/apt-packages.txt installs it).
fn tshark_or_skip(test: &str) -> bool {
    if Command::new("tshark").arg("--version").output().is_ok() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("tshark is missing in CI; .ci/run installs it from .ci/apt-packages.txt");
    }
    skip::record_skip(test, "tshark missing");
    false
}

/// `tshark -r path -T fields -e ...fields`, one Vec per frame.
fn tshark_fields(path: &Path, fields: &[&str]) -> Vec<Vec<String>> {
    let mut command = Command::new("tshark");
    command.arg("-r").arg(path).args(["-T", "fields", "-E", "separator=/t"]);
    for f in fields {
        command.args(["-e", f]);
    }
    let out = command.output().expect("run tshark");
    assert!(out.status.success(), "tshark -r {} failed: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| l.split('\t').map(str::to_owned).collect()).collect()
}

#[test]
// tshark is a Linux program: a Windows build (run under Wine) cannot start it.
#[cfg_attr(windows, ignore = "tshark (Linux) cannot be started from a Windows test; the Linux run checks it")]
fn pcapng_comments_say_what_the_nat_did_as_tshark_reads_them() {
    if !tshark_or_skip("pcapng_comments_say_what_the_nat_did_as_tshark_reads_them") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (mixed, [dropped_at, ..]) = mixed_input();
    let path = dir.path().join("mixed.pcap");
    write_pcap(&path, DataLink::ETHERNET, &mixed);
    let out = dir.path().join("out.pcapng");
    let drops = dir.path().join("drops.pcapng");
    let o = netnat(
        [path.as_os_str(), "-o".as_ref(), out.as_os_str(), "--drops".as_ref(), drops.as_os_str()]
            .into_iter()
            .chain(NAT_FLAGS.iter().map(|s| s.as_ref())),
    );
    assert_ok(&o);

    let frames = tshark_fields(&out, &["frame.comment", "frame.time_epoch"]);
    assert_eq!(frames.len(), mixed.len() - 1, "every packet but the dropped one");
    for (f, r) in frames.iter().zip(mixed.iter().enumerate().filter(|(i, _)| *i != dropped_at).map(|(_, r)| r)) {
        assert!(f[0].starts_with("verdict: "), "every packet has a comment: {f:?}");
        let micros = format!("{}.{:06}", r.micros / 1_000_000, r.micros % 1_000_000);
        assert!(f[1].starts_with(&micros), "tshark reads the input's timestamp {micros}: {f:?}");
    }
    let comments: Vec<&str> = frames.iter().map(|f| f[0].as_str()).collect();
    // Translated: the first ping, and a UDP datagram of the sample.
    assert_eq!(
        comments[0],
        "verdict: translated; direction: outbound; \
         session: 10.100.10.11:24650 -> 203.0.113.1:24650 -> 203.0.113.10 icmp; \
         in: 10.100.10.11 -> 203.0.113.10 icmp echo-request id 24650 seq 1"
    );
    let udp = "verdict: translated; direction: outbound; \
               session: 10.100.10.11:45123 -> 203.0.113.1:45123 -> 203.0.113.10:6111 udp; \
               in: 10.100.10.11:45123 -> 203.0.113.10:6111 udp";
    assert!(comments.contains(&udp), "{udp:?} in:\n{}", comments.join("\n"));
    let reply = "verdict: translated; direction: inbound; \
                 session: 10.100.10.11:24650 -> 203.0.113.1:24650 -> 203.0.113.10 icmp; \
                 in: 203.0.113.10 -> 203.0.113.1 icmp echo-reply id 24650 seq 1";
    assert!(comments.contains(&reply), "{reply:?} in:\n{}", comments.join("\n"));
    // Passed by the NAT: not its business; and a frame without IPv4.
    assert_eq!(
        comments[1],
        "verdict: passed; reason: not the NAT's business; packet: 198.51.100.7:5000 -> 198.51.100.8:6000 udp"
    );
    assert_eq!(comments[2], "verdict: passed; reason: not IPv4 (ethertype 0x0806)");
    // Dropped: in --drops, with the engine's reason.
    let dropped = tshark_fields(&drops, &["frame.comment"]);
    assert_eq!(
        dropped,
        [["verdict: dropped; reason: no_mapping; packet: 198.51.100.7:53 -> 203.0.113.1:999 udp".to_owned()]]
    );
}

/// One pcapng frame: timestamp in microseconds, bytes, comment.
type NgFrame = (u64, Vec<u8>, Option<String>);

/// A pcapng file's link type and frames.
fn read_pcapng(path: &Path) -> (DataLink, Vec<NgFrame>) {
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
    use pcap_file::pcapng::{Block, PcapNgReader};

    let mut reader = PcapNgReader::new(File::open(path).unwrap()).expect("a pcapng file");
    let mut frames = Vec::new();
    let mut link = None;
    while let Some(block) = reader.next_block() {
        match block.unwrap() {
            Block::InterfaceDescription(idb) => {
                // pcap-file reads raw timestamps as nanoseconds: the interface must say so.
                assert!(idb.options.contains(&InterfaceDescriptionOption::IfTsResol(9)), "{idb:?}");
                link = Some(idb.linktype);
            }
            Block::EnhancedPacket(epb) => {
                let comment = epb.options.iter().find_map(|o| match o {
                    EnhancedPacketOption::Comment(c) => Some(c.to_string()),
                    _ => None,
                });
                let micros = u64::try_from(epb.timestamp.as_micros()).unwrap();
                frames.push((micros, epb.data.into_owned(), comment));
            }
            _ => {}
        }
    }
    (link.expect("an interface description block"), frames)
}

#[test]
fn pcapng_output_holds_the_pcap_outputs_packets_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (mixed, _) = mixed_input();
    let path = dir.path().join("mixed.pcap");
    write_pcap(&path, DataLink::ETHERNET, &mixed);
    let run = |out: &str, drops: &str, extra: &[&str]| {
        let (out, drops) = (dir.path().join(out), dir.path().join(drops));
        let o = netnat(
            [path.as_os_str(), "-o".as_ref(), out.as_os_str(), "--drops".as_ref(), drops.as_os_str()]
                .into_iter()
                .chain(NAT_FLAGS.iter().chain(extra).map(|s| s.as_ref())),
        );
        assert_ok(&o);
        (out, drops)
    };
    let (pcap_out, pcap_drops) = run("out.pcap", "drops.pcap", &[]);
    let (ng_out, ng_drops) = run("out.pcapng", "drops.pcapng", &[]);
    for (pcap, ng) in [(&pcap_out, &ng_out), (&pcap_drops, &ng_drops)] {
        let (_, want) = read_pcap(pcap);
        let (link, got) = read_pcapng(ng);
        assert_eq!(link, DataLink::ETHERNET, "the input's link type");
        let got_records: Vec<Record> =
            got.iter().map(|(micros, data, _)| Record { micros: *micros, data: data.clone() }).collect();
        assert_eq!(got_records, want, "{}: same packets, bytes and timestamps as {}", ng.display(), pcap.display());
        assert!(
            got.iter().all(|(_, _, c)| c.as_deref().is_some_and(|c| c.starts_with("verdict: "))),
            "every packet commented"
        );
    }
    // The packets parse (etherparse, independently): the first is the translated ping.
    let (_, got) = read_pcapng(&ng_out);
    let first = etherparse::SlicedPacket::from_ethernet(&got[0].1).expect("an Ethernet/IPv4 frame");
    let Some(etherparse::NetSlice::Ipv4(ip)) = first.net else { panic!("IPv4: {first:?}") };
    assert_eq!(ip.header().source_addr(), Ipv4Addr::new(203, 0, 113, 1), "translated to the external address");

    // --format overrides the extension, both ways.
    let (forced_ng, _) = run("out.cap", "d1.cap", &["--format", "pcapng"]);
    assert_eq!(read_pcapng(&forced_ng).1.len(), got.len());
    let (forced_pcap, _) = run("forced.pcapng", "d2.pcapng", &["--format", "pcap"]);
    assert_eq!(read_pcap(&forced_pcap).1, read_pcap(&pcap_out).1, "a pcap despite the name");
}

/// Replays `input` with the sample's settings plus `extra`, comparing with `expected`; -o is
/// left out. Returns the run.
fn replay_expecting(input: &Path, expected: &Path, extra: &[&str]) -> Output {
    netnat(
        [input.as_os_str(), "--expect".as_ref(), expected.as_os_str()]
            .into_iter()
            .chain(NAT_FLAGS.iter().chain(extra).map(|s| s.as_ref())),
    )
}

fn assert_differs_with(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(EXIT_DIFFERS), "exit status {EXIT_DIFFERS} expected:\n{err}");
    for n in needles {
        assert!(err.contains(n), "expected {n:?} in stderr:\n{err}");
    }
}

#[test]
fn expect_accepts_an_identical_capture_and_names_a_changed_field() {
    let dir = tempfile::tempdir().unwrap();
    let input = sample_input();
    let (_, out) = replay(dir.path(), &input, &[]);
    let golden = dir.path().join("golden.pcap");
    write_pcap(&golden, DataLink::ETHERNET, &out);

    let o = replay_expecting(&input, &golden, &[]);
    assert_ok(&o);
    assert!(
        stderr(&o).contains(&format!("--expect {}: all {} packets match", golden.display(), out.len())),
        "{}",
        stderr(&o)
    );
    let o = replay_expecting(&input, &golden, &["-q"]);
    assert_ok(&o);
    assert!(o.stderr.is_empty(), "-q: nothing on a match: {}", stderr(&o));

    // One field of packet 5 changed in the expected capture: the TTL.
    let mut changed = out.clone();
    changed[4].data[ETH + 8] = 1;
    write_pcap(&golden, DataLink::ETHERNET, &changed);
    let o = replay_expecting(&input, &golden, &["-q"]);
    assert_differs_with(
        &o,
        &["the output differs: 1 packet changed, 0 missing, 0 extra", "packet 5 (", "ip.ttl: expected 1, got 64"],
    );
    let report = stderr(&o);
    let field_lines: Vec<&str> = report.lines().filter(|l| l.starts_with("    ")).collect();
    assert_eq!(field_lines, ["    ip.ttl: expected 1, got 64"], "only that field differs:\n{report}");

    // A missing and an extra packet.
    let mut shorter = out.clone();
    shorter.remove(9);
    write_pcap(&golden, DataLink::ETHERNET, &shorter);
    assert_differs_with(
        &replay_expecting(&input, &golden, &[]),
        &["0 packets changed, 0 missing, 1 extra", "output packet 10 ("],
    );
}

#[test]
fn expect_ignores_what_a_router_changes_when_told() {
    let dir = tempfile::tempdir().unwrap();
    let input = sample_input();
    let (_, out) = replay(dir.path(), &input, &[]);
    // What a router after the NAT would have sent: TTL one lower, header checksum recomputed.
    let routed: Vec<Record> = out
        .iter()
        .map(|r| {
            let mut data = r.data.clone();
            let (mut header, _) = etherparse::Ipv4Header::from_slice(&data[ETH..]).unwrap();
            header.time_to_live -= 1;
            header.header_checksum = header.calc_header_checksum();
            let len = header.header_len();
            data[ETH..ETH + len].copy_from_slice(&header.to_bytes());
            Record { micros: r.micros, data }
        })
        .collect();
    let golden = dir.path().join("routed.pcap");
    write_pcap(&golden, DataLink::ETHERNET, &routed);

    assert_differs_with(&replay_expecting(&input, &golden, &[]), &["ip.ttl: expected 63, got 64", "ip.checksum"]);
    assert_differs_with(&replay_expecting(&input, &golden, &["--ignore", "ttl"]), &["add --ignore ip-checksum"]);
    let o = replay_expecting(&input, &golden, &["--ignore", "ttl,ip-checksum"]);
    assert_ok(&o);
    assert!(stderr(&o).contains("all 112 packets match (ignoring ttl, ip-checksum)"), "{}", stderr(&o));
    let o = replay_expecting(&input, &golden, &["--ignore", "ttl", "--ignore", "ip-checksum"]);
    assert_ok(&o);

    let o = netnat(
        [input.as_os_str(), "-o".as_ref(), dir.path().join("o.pcap").as_os_str(), "--ignore".as_ref(), "ttl".as_ref()]
            .into_iter()
            .chain(NAT_FLAGS.iter().map(|s| s.as_ref())),
    );
    assert_fails_with(&o, &["--ignore", "--expect EXPECTED"]);
    let o = replay_expecting(&input, &golden, &["--ignore", "tll"]);
    assert_fails_with(&o, &["tll", "ttl, ip-checksum, external-port"]);
}

/// (source port, index) of each outbound UDP packet of `records`, by internal source port.
fn udp_source_ports(records: &[Record]) -> Vec<(usize, u16)> {
    records
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let p = etherparse::SlicedPacket::from_ethernet(&r.data).ok()?;
            match p.transport? {
                etherparse::TransportSlice::Udp(u) => Some((i, u.source_port())),
                _ => None,
            }
        })
        .collect()
}

#[test]
fn expect_maps_external_ports_consistently_per_flow() {
    let dir = tempfile::tempdir().unwrap();
    // Outbound packets only: with random ports the replies of the sample (to the preserved
    // ports) would find no mapping.
    let (_, all) = read_pcap(&sample_input());
    let outbound: Vec<Record> = all.into_iter().filter(|r| ip_src(&r.data, ETH).octets()[..2] == [10, 100]).collect();
    let input = dir.path().join("outbound.pcap");
    write_pcap(&input, DataLink::ETHERNET, &outbound);
    let random = |seed: &'static str| ["--port-allocation", "random", "--seed", seed];
    let (_, expected) = replay(dir.path(), &input, &random("1"));
    let golden = dir.path().join("seed1.pcap");
    write_pcap(&golden, DataLink::ETHERNET, &expected);

    assert_ok(&replay_expecting(&input, &golden, &random("1")));
    assert_differs_with(
        &replay_expecting(&input, &golden, &random("2")),
        &["udp.srcport: expected", "tcp.srcport: expected"],
    );
    let o = replay_expecting(&input, &golden, &[&random("2")[..], &["--ignore", "external-port"]].concat());
    assert_ok(&o);
    assert!(stderr(&o).contains("external ports mapped to other numbers"), "{}", stderr(&o));

    // In the expected capture, a later packet of one UDP flow now has another flow's port:
    // ours keeps one port per flow, so the pairing is inconsistent there.
    let udp = udp_source_ports(&expected);
    let (first_a, port_a) = udp[0];
    let (later_a, _) = *udp.iter().skip(1).find(|(_, p)| *p == port_a).expect("a flow with two UDP packets");
    let (_, port_b) = *udp.iter().find(|(_, p)| *p != port_a).expect("a second UDP flow");
    let mut inconsistent = expected.clone();
    let at = ETH + 20;
    inconsistent[later_a].data[at..at + 2].copy_from_slice(&port_b.to_be_bytes());
    write_pcap(&golden, DataLink::ETHERNET, &inconsistent);
    let o = replay_expecting(&input, &golden, &[&random("2")[..], &["--ignore", "external-port"]].concat());
    assert_differs_with(
        &o,
        &[
            &format!("packet {} (", later_a + 1),
            &format!("udp.srcport: expected {port_b}, got "),
            "inconsistent external port",
        ],
    );
    assert!(
        stderr(&o).contains(&format!("expected packet {} paired", first_a + 1))
            || stderr(&o).contains("paired expected"),
        "{}",
        stderr(&o)
    );
}

/// `--sessions-detailed` adds netnat's fields to each `--sessions-json` row, at the capture's
/// last timestamp; without it the rows keep Get-NetNatSession's eleven properties.
#[test]
fn sessions_detailed_adds_idle_time_left_tcp_state_and_direction() {
    let dir = tempfile::tempdir().unwrap();
    let (_, sample) = read_pcap(&sample_input());
    let link = &sample[0].data[..ETH];
    let t0 = 1_795_773_867_000_000u64;
    let mut syn = link.to_vec();
    etherparse::PacketBuilder::ipv4([10, 100, 10, 12], [198, 51, 100, 7], 64)
        .tcp(6000, 80, 1, 65535)
        .syn()
        .write(&mut syn, &[])
        .unwrap();
    let input = dir.path().join("in.pcap");
    let at = |s: f64, data| Record { micros: t0 + (s * 1e6) as u64, data };
    write_pcap(
        &input,
        DataLink::ETHERNET,
        &[
            at(0.0, udp_frame(link, [10, 100, 10, 11], 5000, [198, 51, 100, 7], 53)),
            // The reply does not restart the idle timer (UdpInboundRefresh is False).
            at(3.0, udp_frame(link, [198, 51, 100, 7], 53, [203, 0, 113, 1], 5000)),
            at(5.0, syn),
            // Opens a session inbound, through the static mapping.
            at(6.0, udp_frame(link, [198, 51, 100, 9], 4444, [203, 0, 113, 1], 8080)),
            at(8.5, udp_frame(link, [10, 100, 10, 13], 7000, [198, 51, 100, 8], 123)),
        ],
    );
    let sessions = dir.path().join("sessions.json");
    let run = |extra: &[&str]| {
        let args = ["--static-mapping", "udp:0.0.0.0:8080=10.100.10.14", "--sessions-json", sessions.to_str().unwrap()];
        replay(dir.path(), &input, &args.iter().chain(extra).copied().collect::<Vec<_>>());
        let rows: Vec<serde_json::Value> = serde_json::from_str(&fs::read_to_string(&sessions).unwrap()).unwrap();
        rows
    };
    let plain = run(&[]);
    assert_eq!(plain.len(), 4);
    assert!(plain.iter().all(|r| r.as_object().unwrap().len() == 11), "{plain:?}");

    let rows = run(&["--sessions-detailed"]);
    let by_port =
        |port: u64| rows.iter().find(|r| r["InternalSourcePort"] == port).unwrap_or_else(|| panic!("{rows:?}"));
    let detail = |port| {
        let r = by_port(port);
        (
            r["IdleSeconds"].as_f64().unwrap(),
            r["TimeLeftSeconds"].as_f64().unwrap(),
            r["TimeoutSeconds"].as_u64().unwrap(),
            r["TcpState"].as_str().map(str::to_owned),
            r["OpenedDirection"].as_str().unwrap().to_owned(),
        )
    };
    let out = "Outbound".to_owned();
    assert_eq!(detail(5000), (8.5, 111.5, 120, None, out.clone()));
    assert_eq!(detail(6000), (3.5, 116.5, 120, Some("Opening".into()), out.clone()));
    assert_eq!(detail(8080), (2.5, 117.5, 120, None, "Inbound".into()));
    assert_eq!(detail(7000), (0.0, 120.0, 120, None, out));
    for (p, d) in plain.iter().zip(&rows) {
        let mut d = d.as_object().unwrap().clone();
        for k in ["IdleSeconds", "TimeLeftSeconds", "TimeoutSeconds", "TcpState", "OpenedDirection"] {
            d.remove(k).unwrap();
        }
        assert_eq!(p.as_object().unwrap(), &d, "the WinNAT properties are unchanged");
    }
    assert!(rows.iter().all(|r| r.get("PacketsOut").is_none()), "no counts without --session-counters");

    // With --session-counters the rows count packets and bytes (IPv4 total length) each way:
    // UDP frames here are 32 bytes, the SYN 40.
    let counted = run(&["--sessions-detailed", "--session-counters"]);
    let counts = |port: u64| {
        let r = counted.iter().find(|r| r["InternalSourcePort"] == port).unwrap_or_else(|| panic!("{counted:?}"));
        ["PacketsOut", "PacketsIn", "BytesOut", "BytesIn"].map(|k| r[k].as_u64().unwrap_or_else(|| panic!("{k}: {r}")))
    };
    assert_eq!(counts(5000), [1, 1, 32, 32]);
    assert_eq!(counts(6000), [1, 0, 40, 0]);
    assert_eq!(counts(8080), [0, 1, 0, 32]);
    assert_eq!(counts(7000), [1, 0, 32, 0]);

    let o = netnat(
        [input.as_os_str(), "-o".as_ref(), dir.path().join("x.pcap").as_os_str(), "--sessions-detailed".as_ref()]
            .into_iter()
            .chain(NAT_FLAGS.iter().map(|s| s.as_ref())),
    );
    assert_fails_with(&o, &["--sessions-detailed", "--sessions-json FILE"]);
}
