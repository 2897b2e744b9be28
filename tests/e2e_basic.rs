//! End to end, as the seed article does it: a NAT created with the cmdlets, then real clients
//! through it (ping, curl from a web server, UDP request/response), the session table, and a
//! capture on the wan side as the witness that only the external address goes out.
//! Runs as root (CI); without root it prints `SKIPPED (needs root)`.
#![cfg(target_os = "linux")]

mod e2e_common;

use std::net::Ipv4Addr;
use std::time::Duration;

use e2e_common::*;

const NEW_NETNAT_OUTPUT: &str = "
Name                             : WinNAT
ExternalIPInterfaceAddressPrefix :
InternalIPInterfaceAddressPrefix : 10.100.0.0/16
IcmpQueryTimeout                 : 30
TcpEstablishedConnectionTimeout  : 1800
TcpTransientConnectionTimeout    : 120
TcpFilteringBehavior             : AddressDependentFiltering
UdpFilteringBehavior             : AddressDependentFiltering
UdpIdleSessionTimeout            : 120
UdpInboundRefresh                : False
Store                            : Local
Active                           : True


";

#[test]
fn article_walkthrough_ping_curl_udp_sessions_and_wan_sees_only_the_external_address() {
    if !root_or_skip("article_walkthrough") {
        return;
    }
    let mut t = Topology::new();
    t.start_daemon();

    // PS C:\> Get-NetNat  -> nothing
    assert_eq!(t.cmdlet(&["Get-NetNat"]), "");
    // PS C:\> New-NetNat -Name WinNAT -InternalIPInterfaceAddressPrefix 10.100.0.0/16
    let out = t.cmdlet(&["New-NetNat", "-Name", "WinNAT", "-InternalIPInterfaceAddressPrefix", "10.100.0.0/16"]);
    assert_eq!(out, NEW_NETNAT_OUTPUT);
    assert_eq!(t.cmdlet(&["Get-NetNat"]), NEW_NETNAT_OUTPUT);
    assert_eq!(t.cmdlet(&["get-netnat", "WinNAT"]), NEW_NETNAT_OUTPUT, "positional, case-insensitive");

    let blob_dir = t.dir.path().join("www");
    std::fs::create_dir(&blob_dir).unwrap();
    let blob: Vec<u8> = (0..2_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(blob_dir.join("blob"), &blob).unwrap();
    let wan = t.wan.clone();
    let vm = t.vm.clone();
    t.http_server(&wan, WAN1, 8000, &blob_dir);
    t.udp_echo(&wan, WAN1, 5353);
    // A kernel SNAT rule that would rewrite every forwarded packet to 203.0.113.99 if
    // conntrack's NAT saw netnat's flows; netnat exempts them, so wan must never see .99.
    let nat = t.nat.clone();
    let out_if = t.nat_out.clone();
    t.ns(&nat, &["ip", "addr", "add", "203.0.113.99/24", "dev", &out_if]);
    t.ns(
        &nat,
        &["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", &out_if, "-j", "SNAT", "--to-source", "203.0.113.99"],
    );
    let capture = t.capture_wan();

    // ping through the NAT, and its ICMP session.
    let ping = run(&mut t.cmd(&vm, &["ping", "-c", "3", "-W", "2", WAN1]));
    assert!(
        ping.status.success(),
        "ping through the NAT failed:\n{}\n{}",
        String::from_utf8_lossy(&ping.stdout),
        t.log()
    );
    let icmp: Vec<_> = t.sessions().into_iter().filter(|s| s["Protocol"] == 1).collect();
    assert!(!icmp.is_empty(), "no ICMP session after ping");
    assert_eq!(icmp[0]["InternalSourceAddress"], VM);
    assert_eq!(icmp[0]["ExternalSourceAddress"], EXTERNAL);
    assert_eq!(icmp[0]["ExternalDestinationAddress"], WAN1);
    assert_eq!(icmp[0]["NatName"], "WinNAT");

    // TCP download with curl.
    let got = t.dir.path().join("got");
    let curl =
        run(t.cmd(&vm, &["curl", "-sS", "--max-time", "30", "-o"]).arg(&got).arg(format!("http://{WAN1}:8000/blob")));
    assert!(curl.status.success(), "curl through the NAT failed: {}", String::from_utf8_lossy(&curl.stderr));
    assert!(std::fs::read(&got).unwrap() == blob, "downloaded bytes differ from the served file");

    // UDP request/response; the server sees the external address.
    let answer = t.udp_request(&vm, WAN1, 5353, "hello", 3.0).expect("no UDP answer through the NAT");
    assert_eq!(answer, format!("echo {EXTERNAL}:hello"));

    // The session table has all three protocols, in the article's layout.
    let protocols: Vec<u64> = t.sessions().iter().map(|s| s["Protocol"].as_u64().unwrap()).collect();
    for p in [1, 6, 17] {
        assert!(protocols.contains(&p), "no session of protocol {p}: {protocols:?}");
    }
    let listing = t.cmdlet(&["Get-NetNatSession"]);
    assert!(listing.starts_with("\nNatName                    : WinNAT\nInternalRoutingDomainId    : {00000000-0000-0000-0000-000000000000}\nCreationTime               : "), "{listing}");
    assert!(listing.contains("ExternalSourceAddress      : 203.0.113.1\n"), "{listing}");

    // wan saw packets, and none with an internal address.
    let seen = capture.stop();
    assert!(seen.len() > 10, "the wan capture saw almost nothing: {seen:?}");
    let external: Ipv4Addr = EXTERNAL.parse().unwrap();
    for (src, dst) in &seen {
        assert!(
            !src.to_string().starts_with("10.100.") && !dst.to_string().starts_with("10.100."),
            "wan saw an internal address: {src} > {dst}"
        );
        let wan_side = |a: &Ipv4Addr| a.to_string().starts_with("203.0.113.");
        assert!(wan_side(src) && wan_side(dst), "unexpected packet on wan: {src} > {dst}");
    }
    assert!(seen.iter().any(|(s, _)| *s == external));
    assert!(
        !seen.iter().any(|(s, d)| s.to_string() == "203.0.113.99" || d.to_string() == "203.0.113.99"),
        "the kernel's conntrack NAT also rewrote netnat's flows"
    );
}

#[test]
fn remove_netnat_drops_sessions_and_unknown_parameters_are_explained() {
    if !root_or_skip("remove_netnat_drops_sessions") {
        return;
    }
    let mut t = Topology::new();
    t.start_daemon();
    t.cmdlet(&["New-NetNat", "--name", "WinNAT", "--internal-ip-interface-address-prefix", "10.100.0.0/16"]);
    let wan = t.wan.clone();
    t.udp_echo(&wan, WAN1, 5353);
    let vm = t.vm.clone();
    assert!(t.udp_request(&vm, WAN1, 5353, "one", 3.0).is_some());
    assert!(t.ping_ok(&vm, WAN1));
    assert!(t.sessions().len() >= 2);

    let e = t.cmdlet_error(&["New-NetNat", "-Name", "Other", "-InternalIPInterfaceAddressPrefix", "10.100.128.0/17"]);
    assert!(e.contains("The parameter is incorrect.") && e.contains("overlaps"), "{e}");
    let e = t.cmdlet_error(&["Get-NetNat", "-Nme", "WinNAT"]);
    assert!(e.contains("'Nme'") && e.contains("-Name"), "{e}");
    let e = t.cmdlet_error(&["Set-NetNat", "-Name", "WinNAT", "-InternalIPInterfaceAddressPrefix", "10.0.0.0/8"]);
    assert!(e.contains("cannot be changed"), "{e}");

    // A second NAT with a disjoint prefix is fine (beyond WinNAT).
    t.cmdlet(&["New-NetNat", "-Name", "Second", "-InternalIPInterfaceAddressPrefix", "10.101.0.0/16"]);
    assert_eq!(t.cmdlet(&["Get-NetNat"]).matches("Name                             :").count(), 2);

    // Remove-NetNat without arguments removes all, and their sessions.
    assert_eq!(t.cmdlet(&["Remove-NetNat"]), "");
    assert_eq!(t.cmdlet(&["Get-NetNat"]), "");
    assert!(t.sessions().is_empty(), "sessions survived Remove-NetNat");
    assert!(!t.rules_present(), "kernel rules left after the last NAT was removed");
    // Without a NAT nothing is translated: the wan has no route back to 10.100/16.
    assert!(t.udp_request(&vm, WAN1, 5353, "two", 1.0).is_none());
}

#[test]
fn without_external_addresses_the_nat_uses_the_routes_source_address_and_follows_changes() {
    if !root_or_skip("route_source_address") {
        return;
    }
    let mut t = Topology::new();
    t.start_daemon();
    t.cmdlet(&["New-NetNat", "-Name", "WinNAT", "-InternalIPInterfaceAddressPrefix", "10.100.0.0/16"]);
    let vm = t.vm.clone();
    assert!(t.ping_ok(&vm, WAN1));

    // A second outside network appears after the daemon started: nat gets 198.51.100.1 on
    // the same link, wan gets 198.51.100.10. Traffic toward it must leave from 198.51.100.1,
    // the address `ip route get 198.51.100.10` picks in nat.
    let (nat, wan) = (t.nat.clone(), t.wan.clone());
    t.ns(&nat, &["ip", "addr", "add", "198.51.100.1/24", "dev", &t.nat_out]);
    t.ns(&wan, &["ip", "addr", "add", "198.51.100.10/24", "dev", &t.wan_if]);
    let route = t.ns(&nat, &["ip", "route", "get", "198.51.100.10"]);
    assert!(route.contains("src 198.51.100.1"), "{route}");
    assert!(
        wait_until(Duration::from_secs(10), || t.ping_ok(&vm, "198.51.100.10")),
        "vm cannot reach the new network through the NAT:\n{}",
        t.log()
    );
    let sessions = t.sessions();
    let new = sessions.iter().find(|s| s["ExternalDestinationAddress"] == "198.51.100.10").expect("session");
    assert_eq!(new["ExternalSourceAddress"], "198.51.100.1");
    let old = sessions.iter().find(|s| s["ExternalDestinationAddress"] == WAN1).expect("session");
    assert_eq!(old["ExternalSourceAddress"], EXTERNAL);
}
