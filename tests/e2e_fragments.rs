//! End to end, fragmented IPv4 datagrams through the live NAT, in the namespaces of design §4
//! with the real daemon and the article's `New-NetNat`: a vm's 3000-byte UDP request to a wan
//! server and the server's 3000-byte answer cross the NAT as fragments and arrive whole, and
//! fragmented datagrams from wan to the NAT host's own sockets (inside and outside the NAT's
//! port range) reach the host whole (none held by netnat, none split between netnat and the
//! host). A capture on wan is the witness that no internal source leaves.
//!
//! Runs as root (CI); without root it prints `SKIPPED (needs root)` and passes.
#![cfg(target_os = "linux")]

mod e2e_common;
#[path = "e2e_common/hostile.rs"]
mod hostile;

use std::time::Duration;

use e2e_common::*;
use hostile::*;

/// A UDP server in `ns` on `addr:port` that answers each datagram with its length and, when
/// `echo`, the datagram itself; it serves `count` datagrams and prints each length.
fn big_udp_server(t: &Topology, ns: &str, addr: &str, port: u16, echo: bool, count: u32) -> std::process::Child {
    let answer = if echo { "s.sendto(d, p)" } else { "pass" };
    let child = python_spawn(
        t,
        ns,
        &format!(
            r#"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('{addr}', {port})); s.settimeout(20)
print('ready', flush=True)
for _ in range({count}):
    d, p = s.recvfrom(65535)
    print(len(d), flush=True)
    {answer}
"#
        ),
        Duration::from_secs(30),
    );
    child
}

fn wait_ready(child: &mut std::process::Child) {
    use std::io::BufRead;
    let mut line = String::new();
    let out = child.stdout.as_mut().expect("stdout");
    // Reading the one line moves the pipe's reader past it; the rest stays for `finish`.
    let mut reader = std::io::BufReader::new(out);
    reader.read_line(&mut line).expect("server output");
    assert_eq!(line.trim(), "ready", "the server did not start");
}

/// Sends one `size`-byte UDP datagram of zeros (so a later fragment's first bytes, read as
/// ports, are port 0, which no port rule matches) from `ns` (bound to `from`) to `to` and,
/// when `expect_answer`, prints the length of the answer (or `none`).
fn send_big(t: &Topology, ns: &str, from: (&str, u16), to: (&str, u16), size: usize, expect_answer: bool) -> String {
    let ((src, sport), (dst, dport)) = (from, to);
    let script = format!(
        r#"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('{src}', {sport})); s.settimeout(3)
s.sendto(bytes({size}), ('{dst}', {dport}))
if {expect_answer}:
    try:
        print(len(s.recv(65535)))
    except socket.timeout:
        print('none')
"#,
        expect_answer = if expect_answer { "True" } else { "False" }
    );
    finish(python_spawn(t, ns, &script, Duration::from_secs(10)), Duration::from_secs(15))
}

#[test]
fn fragmented_datagrams_cross_the_nat_and_reach_host_sockets_whole() {
    if !root_or_skip("fragments") {
        return;
    }
    let mut t = Topology::new();
    t.start_daemon();
    t.cmdlet(&["New-NetNat", "-Name", "WinNAT", "-InternalIPInterfaceAddressPrefix", "10.100.0.0/16"]);
    let (vm, wan, nat) = (t.vm.clone(), t.wan.clone(), t.nat.clone());
    let capture = Sniffer::start(&t, &wan, &t.wan_if, &t.dir.path().join("wan-fragments.pcap"));

    // Through the NAT, both ways: 3000 bytes need three fragments on a 1500-byte link.
    let mut echo = big_udp_server(&t, &wan, WAN1, 5400, true, 1);
    wait_ready(&mut echo);
    assert_eq!(
        send_big(&t, &vm, (VM, 41000), (WAN1, 5400), 3000, true),
        "3000",
        "the fragmented answer did not reach the vm whole:\n{}",
        t.log()
    );
    assert_eq!(finish(echo, Duration::from_secs(10)), "3000", "the server did not get the vm's datagram whole");

    // To the NAT host's own sockets: port 500 is outside the NAT's range (not diverted at
    // all), 30000 inside it (diverted, no session: handed to the host).
    eprintln!("through the NAT: whole both ways");
    for port in [500u16, 30000] {
        eprintln!("to the host's port {port}");
        let mut host = big_udp_server(&t, &nat, EXTERNAL, port, false, 1);
        wait_ready(&mut host);
        assert_eq!(send_big(&t, &wan, (WAN1, 5401), (EXTERNAL, port), 3000, false), "");
        assert_eq!(
            finish(host, Duration::from_secs(25)),
            "3000",
            "a fragmented datagram to the host's port {port} did not arrive whole:\n{}",
            t.log()
        );
    }
    let seen = capture.stop();
    let leaked: Vec<_> = seen.iter().filter(|s| is_internal(s.src) || is_internal(s.dst)).collect();
    assert!(leaked.is_empty(), "internal addresses on wan: {leaked:?}");
}
