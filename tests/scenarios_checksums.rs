//! Checksums: the harness's own validator is checked against known-bad packets (so that
//! "no problems" means something), and a mixed scenario's output is checked by `tshark` with
//! checksum validation on, as a second independent witness.

mod common;

use std::process::Command;

use common::check::checksum_problems;
use common::*;

const A: &str = "10.100.10.11";
const R: &str = "198.51.100.10";

fn problems(packets: &[Vec<u8>]) -> Vec<String> {
    checksum_problems(packets.iter().enumerate().map(|(i, p)| (format!("packet {i}"), &p[..])))
}

#[test]
fn validator_accepts_good_packets_and_rejects_each_kind_of_bad_one() {
    let good = vec![
        udp(ep(A, 5000), ep(R, 53), b"abc"),
        udp_no_checksum(ep(A, 5000), ep(R, 53), b"abc"),
        tcp(ep(A, 5000), ep(R, 80), TCP_SYN, 1, 0, b"odd length"),
        icmp_echo(ip(A), ip(R), true, 1, 2, b"ping"),
        icmp_error(ip(R), ip(A), ICMP_DEST_UNREACHABLE, 3, &udp(ep(A, 5000), ep(R, 53), b"abc")),
    ];
    assert_eq!(problems(&good), Vec::<String>::new());
    let mut frags = fragment(&udp(ep(A, 5000), ep(R, 53), &[9u8; 100]), 48);
    assert_eq!(frags.len(), 3);
    assert_eq!(problems(&frags), Vec::<String>::new());

    let flip = |p: &Vec<u8>, at: usize| {
        let mut p = p.clone();
        p[at] ^= 0x01;
        p
    };
    // IP header checksum, UDP, TCP, ICMP checksums.
    for (p, at, what) in
        [(&good[0], 10, "IPv4 header"), (&good[0], 26, "UDP"), (&good[2], 36, "TCP"), (&good[3], 22, "ICMP")]
    {
        let found = problems(&[flip(p, at)]);
        assert_eq!(found.len(), 1, "{what}: {found:?}");
        assert!(found[0].contains(what), "{what}: {found:?}");
    }
    // Inside an ICMP error whose own checksum is right: embedded IP header, embedded UDP.
    for (at, what) in [(10, "IPv4 header"), (26, "UDP")] {
        let embedded = flip(&udp(ep(A, 5000), ep(R, 53), b"abc"), at);
        let found = problems(&[icmp_error(ip(R), ip(A), ICMP_DEST_UNREACHABLE, 3, &embedded)]);
        assert_eq!(found.len(), 1, "{what}: {found:?}");
        assert!(found[0].contains("embedded") && found[0].contains(what), "{what}: {found:?}");
    }
    // A changed byte in a non-first fragment shows up in the reassembled UDP checksum.
    frags[2][25] ^= 1;
    let found = problems(&frags);
    assert!(found.len() == 1 && found[0].contains("reassembled") && found[0].contains("UDP"), "{found:?}");
}

/// A scenario exercising every kind of packet the NAT rewrites.
fn mixed_scenario() -> Scenario {
    let mut s = Scenario::new();
    s.strict_order = false;
    s.args(&["--static-mapping", "tcp:0.0.0.0:8080=10.100.10.12:80"]);
    s.at(0, udp(ep(A, 5000), ep(R, 53), b"query"));
    s.at(1, tcp(ep(A, 5001), ep(R, 80), TCP_SYN, 1, 0, b""));
    s.at(2, icmp_echo(ip(A), ip(R), true, 0x1234, 1, b"ping"));
    let pu = s.learn_port(0);
    let pt = s.learn_port(1);
    let id = s.learn_port(2);
    let seen_udp = s.learn(0);
    s.at(10, udp(ep(R, 53), ep(EXT, pu), b"answer"));
    s.at(11, tcp(ep(R, 80), ep(EXT, pt), TCP_SYN | TCP_ACK, 9, 2, b""));
    s.at(12, icmp_echo(ip(R), ip(EXT), false, id, 1, b"ping"));
    s.at(13, icmp_error(ip("198.51.100.1"), ip(EXT), ICMP_TIME_EXCEEDED, 0, &seen_udp));
    s.at(14, tcp(ep(R, 4000), ep(EXT, 8080), TCP_SYN, 1, 0, b""));
    s.at(15, tcp(ep(A, 5002), ep(EXT, 8080), TCP_SYN, 1, 0, b"")); // hairpin
    let f = fragment(&udp(ep(A, 5000), ep(R, 53), &[0x5a; 600]), 256);
    s.at(20, f[1].clone());
    s.at(21, f[0].clone());
    s.at(22, f[2].clone());
    s
}

#[test]
// tshark is a Linux program: a Windows build (run under Wine) cannot start it.
#[cfg_attr(windows, ignore = "tshark (Linux) cannot be started from a Windows test; the Linux run checks it")]
fn tshark_finds_no_bad_checksum_in_the_output() {
    let have_tshark = Command::new("tshark").arg("--version").output().is_ok_and(|o| o.status.success());
    if !have_tshark {
        assert!(
            std::env::var_os("CI").is_none(),
            "tshark is not installed but CI is set: .ci/apt-packages.txt lists it"
        );
        common::skip::record_skip(
            "tshark_finds_no_bad_checksum_in_the_output (tshark part; the etherparse checks ran)",
            "tshark is not installed: apt-get install tshark",
        );
        return;
    }
    let s = mixed_scenario();
    let o = s.run();
    assert_eq!(o.out.len(), s.recs.len(), "every packet of the mixed scenario is forwarded{}", o.context());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.pcap");
    let frames: Vec<_> = o.out_frames.clone();
    common::pcap::write_frames(&path, Link::Raw, Format::Pcap, &frames);
    let run = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(&path)
        .args([
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
            "-o",
            "tcp.check_checksum:TRUE",
            "-o",
            "ip.defragment:TRUE",
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "frame.number",
            "-e",
            "ip.checksum.status",
            "-e",
            "udp.checksum.status",
            "-e",
            "tcp.checksum.status",
            "-e",
            "icmp.checksum.status",
            "-e",
            "_ws.expert.message",
        ])
        .output()
        .expect("run tshark");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "tshark failed: {stderr}");
    let mut seen = [false; 4];
    let mut bad = Vec::new();
    for line in stdout.lines() {
        let cols: Vec<&str> = line.split('|').collect();
        assert!(cols.len() >= 5, "unexpected tshark line {line:?}");
        // Status: 0 = bad, 1 = good, 2 = not verified. Several values (comma separated) for
        // the headers embedded in ICMP errors.
        for (i, col) in cols[1..5].iter().enumerate() {
            for v in col.split(',').filter(|v| !v.is_empty()) {
                match v {
                    "0" => bad.push(line.to_string()),
                    "1" => seen[i] = true,
                    _ => {}
                }
            }
        }
        let expert = cols.get(5).copied().unwrap_or("").to_ascii_lowercase();
        if expert.contains("bad checksum") || expert.contains("incorrect") {
            bad.push(line.to_string());
        }
    }
    assert!(bad.is_empty(), "tshark reports bad checksums:\n{}\n{}", bad.join("\n"), o.context());
    assert_eq!(
        seen, [true; 4],
        "tshark verified no IP / UDP / TCP / ICMP checksum at all (is checksum validation on?):\n{stdout}"
    );
}
