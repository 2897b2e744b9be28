//! End to end: WinNAT's address-dependent filtering (and the switch to endpoint-independent
//! filtering with Set-NetNat), and static mappings reached from the outside.
//! Runs as root (CI); without root it prints `SKIPPED (needs root)`.
#![cfg(target_os = "linux")]

mod e2e_common;

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::Duration;

use e2e_common::*;

/// A UDP socket in vm on port 40000 that sends one datagram to wan and then prints every
/// datagram it receives (for at most 60 s / 100 datagrams).
fn vm_listener(t: &mut Topology) -> mpsc::Receiver<String> {
    let script = format!(
        "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',40000))\ns.sendto(b'open',('{WAN1}',7000))\ns.settimeout(60)\nfor _ in range(100):\n    d,p=s.recvfrom(4096)\n    print(p[0],d.decode(),flush=True)\n"
    );
    let vm = t.vm.clone();
    let child = t.spawn(&vm, &["python3", "-c", &script]);
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// The vm's listener on port 40000 after its first datagram to a UDP echo server on WAN1:7000
/// came back: its lines (the echo among them) and the external port of its mapping.
fn open_vm_mapping(t: &mut Topology) -> (mpsc::Receiver<String>, Vec<String>, u16) {
    let wan = t.wan.clone();
    t.udp_echo(&wan, WAN1, 7000);
    let rx = vm_listener(t);
    let mut seen = Vec::new();
    assert!(expect_line(&rx, "echo", Duration::from_secs(10), &mut seen), "no echo reached vm: {seen:?}\n{}", t.log());
    let session = t
        .sessions()
        .into_iter()
        .find(|s| s["Protocol"] == 17 && s["InternalSourcePort"] == 40000)
        .expect("UDP session for vm:40000");
    let ext_port = u16::try_from(session["ExternalSourcePort"].as_u64().unwrap()).unwrap();
    (rx, seen, ext_port)
}

/// Sends one datagram from `src` (a wan address, source port `sport`) to `dst:port`.
fn send_from_wan(t: &Topology, src: &str, sport: u16, dst: &str, port: u16, payload: &str) {
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('{src}',{sport}))\ns.sendto(b'{payload}',('{dst}',{port}))\n"
    );
    t.ns(&t.wan, &["python3", "-c", &script]);
}

/// Sends one datagram from `src:sport` to the NAT's `ext_port` and waits until the NAT counts
/// a drop as `reason`.
fn send_and_expect_counted(t: &Topology, src: &str, sport: u16, ext_port: u16, payload: &str, reason: &str) {
    let before = t.counter(&["dropped", reason]);
    send_from_wan(t, src, sport, EXTERNAL, ext_port, payload);
    assert!(
        wait_until(Duration::from_secs(10), || t.counter(&["dropped", reason]) > before),
        "the datagram from {src}:{sport} was not counted as {reason}:\n{}",
        t.log()
    );
}

/// Waits up to `timeout` for a line containing `needle`; other lines are collected.
fn expect_line(rx: &mpsc::Receiver<String>, needle: &str, timeout: Duration, seen: &mut Vec<String>) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                let hit = line.contains(needle);
                seen.push(line);
                if hit {
                    return true;
                }
            }
            Err(_) => return false,
        }
    }
    false
}

#[test]
fn address_dependent_filtering_then_endpoint_independent_after_set_netnat() {
    if !root_or_skip("address_dependent_filtering") {
        return;
    }
    let mut t = Topology::new();
    t.start_daemon();
    t.cmdlet(&["New-NetNat", "-Name", "WinNAT", "-InternalIPInterfaceAddressPrefix", "10.100.0.0/16"]);
    let (rx, mut seen, ext_port) = open_vm_mapping(&mut t);

    // 203.0.113.11 was never contacted: filtered (AddressDependentFiltering, the default).
    let filtered_before = t.counter(&["dropped", "filtered"]);
    send_from_wan(&t, WAN2, 7001, EXTERNAL, ext_port, "from-11");
    assert!(
        wait_until(Duration::from_secs(10), || t.counter(&["dropped", "filtered"]) > filtered_before),
        "the datagram from {WAN2} was not counted as filtered"
    );
    // 203.0.113.10 from another port is admitted (address-dependent, not port-dependent);
    // it arrives after the filtered one was dropped, so that one cannot be in flight.
    send_from_wan(&t, WAN1, 7002, EXTERNAL, ext_port, "from-10-other-port");
    assert!(expect_line(&rx, "from-10-other-port", Duration::from_secs(10), &mut seen), "{seen:?}");
    assert!(!seen.iter().any(|l| l.contains("from-11")), "a filtered datagram reached vm: {seen:?}");

    // After Set-NetNat -UdpFilteringBehavior EndpointIndependentFiltering it is admitted.
    assert_eq!(
        t.cmdlet(&["Set-NetNat", "-Name", "WinNAT", "-UdpFilteringBehavior", "EndpointIndependentFiltering"]),
        ""
    );
    let nat = t.cmdlet(&["Get-NetNat", "WinNAT"]);
    assert!(nat.contains("UdpFilteringBehavior             : EndpointIndependentFiltering\n"), "{nat}");
    send_from_wan(&t, WAN2, 7001, EXTERNAL, ext_port, "from-11-after-eif");
    assert!(expect_line(&rx, "from-11-after-eif", Duration::from_secs(10), &mut seen), "{seen:?}\n{}", t.log());
    assert!(seen.iter().any(|l| l.starts_with(&format!("{WAN2} from-11-after-eif"))), "{seen:?}");
}

#[test]
fn static_mapping_is_reached_from_wan_and_duplicates_are_refused() {
    if !root_or_skip("static_mapping") {
        return;
    }
    let mut t = Topology::new();
    t.start_daemon();
    t.cmdlet(&["New-NetNat", "-Name", "WinNAT", "-InternalIPInterfaceAddressPrefix", "10.100.0.0/16"]);
    let www = t.dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("index.txt"), "served by the vm\n").unwrap();
    let vm = t.vm.clone();
    t.http_server(&vm, VM, 80, &www);

    let out = t.cmdlet(&[
        "Add-NetNatStaticMapping",
        "-NatName",
        "WinNAT",
        "-Protocol",
        "TCP",
        "-ExternalIPAddress",
        "0.0.0.0",
        "-ExternalPort",
        "8080",
        "-InternalIPAddress",
        VM,
        "-InternalPort",
        "80",
    ]);
    assert_eq!(
        out,
        "
StaticMappingID               : 0
NatName                       : WinNAT
Protocol                      : TCP
RemoteExternalIPAddressPrefix : 0.0.0.0/0
ExternalIPAddress             : 0.0.0.0
ExternalPort                  : 8080
InternalIPAddress             : 10.100.10.11
InternalPort                  : 80
InternalRoutingDomainId       : {00000000-0000-0000-0000-000000000000}
Active                        : True


"
    );
    for from in [WAN1, WAN2] {
        let body = t.ns(
            &t.wan,
            &["curl", "-sS", "--max-time", "10", "--interface", from, &format!("http://{EXTERNAL}:8080/index.txt")],
        );
        assert_eq!(body, "served by the vm\n", "from {from}");
    }
    let inbound = t.sessions().into_iter().find(|s| s["ExternalSourcePort"] == 8080).expect("static mapping session");
    assert_eq!(inbound["InternalSourceAddress"], VM);
    assert_eq!(inbound["InternalSourcePort"], 80);

    let e = t.cmdlet_error(&[
        "Add-NetNatStaticMapping",
        "WinNAT",
        "-Protocol",
        "tcp",
        "-ExternalIPAddress",
        "0.0.0.0",
        "-ExternalPort",
        "8080",
        "-InternalIPAddress",
        "10.100.10.12",
    ]);
    assert!(e.contains("You were not connected because a duplicate name exists on the network."), "{e}");
    assert!(e.contains("StaticMappingID 0"), "{e}");

    // RemoteExternalIPAddressPrefix restricts who may use a mapping.
    t.udp_echo(&vm, VM, 9000);
    t.cmdlet(&[
        "Add-NetNatStaticMapping",
        "-NatName",
        "WinNAT",
        "-Protocol",
        "UDP",
        "-ExternalIPAddress",
        "0.0.0.0",
        "-ExternalPort",
        "9000",
        "-InternalIPAddress",
        VM,
        "-RemoteExternalIPAddressPrefix",
        "203.0.113.10/32",
    ]);
    let before = t.counter(&["dropped", "remote_not_allowed"]);
    let script = |src: &str| {
        format!(
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('{src}',0))\ns.settimeout(3)\ns.sendto(b'hi',('{EXTERNAL}',9000))\nprint(s.recv(100).decode())\n"
        )
    };
    let ok = t.ns(&t.wan, &["python3", "-c", &script(WAN1)]);
    assert_eq!(ok.trim(), format!("echo {WAN1}:hi"));
    let refused = run(&mut t.cmd(&t.wan, &["python3", "-c", &script(WAN2)]));
    assert!(!refused.status.success(), "{WAN2} reached a mapping restricted to 203.0.113.10/32");
    assert!(t.counter(&["dropped", "remote_not_allowed"]) > before);

    // The host's own services stay reachable, also on a port inside the dynamic range
    // (netnat hands packets that belong to no session back to the host).
    let host_www = t.dir.path().join("host-www");
    std::fs::create_dir(&host_www).unwrap();
    std::fs::write(host_www.join("h.txt"), "served by the nat host\n").unwrap();
    let nat = t.nat.clone();
    t.http_server(&nat, EXTERNAL, 2222, &host_www);
    let body = t.ns(&t.wan, &["curl", "-sS", "--max-time", "10", &format!("http://{EXTERNAL}:2222/h.txt")]);
    assert_eq!(body, "served by the nat host\n");

    // Remove-NetNatStaticMapping without arguments removes all of them.
    t.cmdlet(&["Remove-NetNatStaticMapping"]);
    assert_eq!(t.cmdlet(&["Get-NetNatStaticMapping"]), "");
}

#[test]
fn a_vm_reaches_its_own_published_port_through_the_external_address_hairpin() {
    if !root_or_skip("hairpin") {
        return;
    }
    let mut t = Topology::new();
    t.start_daemon();
    t.cmdlet(&["New-NetNat", "-Name", "WinNAT", "-InternalIPInterfaceAddressPrefix", "10.100.0.0/16"]);
    let www = t.dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("index.txt"), "hairpinned\n").unwrap();
    let vm = t.vm.clone();
    t.http_server(&vm, VM, 80, &www);
    t.cmdlet(&[
        "Add-NetNatStaticMapping",
        "WinNAT",
        "-Protocol",
        "TCP",
        "-ExternalIPAddress",
        "0.0.0.0",
        "-ExternalPort",
        "8080",
        "-InternalIPAddress",
        VM,
        "-InternalPort",
        "80",
    ]);
    let body = t.ns(&vm, &["curl", "-sS", "--max-time", "10", &format!("http://{EXTERNAL}:8080/index.txt")]);
    assert_eq!(body, "hairpinned\n");
    assert!(t.counter(&["hairpinned"]) > 0, "no packet counted as hairpinned");
    // The VM still reaches the host itself on that address (no mapping behind the port).
    let host_www = t.dir.path().join("host");
    std::fs::create_dir(&host_www).unwrap();
    std::fs::write(host_www.join("h.txt"), "host\n").unwrap();
    let nat = t.nat.clone();
    t.http_server(&nat, EXTERNAL, 2222, &host_www);
    let body = t.ns(&vm, &["curl", "-sS", "--max-time", "10", &format!("http://{EXTERNAL}:2222/h.txt")]);
    assert_eq!(body, "host\n");
}

#[test]
fn a_filter_policy_file_keeps_a_denied_remote_out_and_lets_the_others_in() {
    if !root_or_skip("filter_policy") {
        return;
    }
    let mut t = Topology::new();
    t.start_daemon();
    t.cmdlet(&["New-NetNat", "-Name", "WinNAT", "-InternalIPInterfaceAddressPrefix", "10.100.0.0/16"]);
    // Endpoint-independent for everyone but 203.0.113.11, which is denied.
    let policy = t.dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!("fallback = \"EndpointIndependentFiltering\"\n\n[[rule]]\naction = \"deny\"\nremote = \"{WAN2}\"\n"),
    )
    .unwrap();
    let policy = policy.to_str().unwrap().to_owned();
    assert_eq!(t.cmdlet(&["Set-NetNat", "-Name", "WinNAT", "-FilterPolicyFile", &policy]), "");
    let (rx, mut seen, ext_port) = open_vm_mapping(&mut t);

    send_and_expect_counted(&t, WAN2, 7001, ext_port, "from-11-denied", "policy_denied");
    // A port of 203.0.113.10 the vm never sent to: admitted by the endpoint-independent
    // fallback (the NAT's own default, address-dependent, would admit it too; a third port of
    // the denied address would not be).
    send_from_wan(&t, WAN1, 7003, EXTERNAL, ext_port, "from-10-admitted");
    assert!(expect_line(&rx, "from-10-admitted", Duration::from_secs(10), &mut seen), "{seen:?}\n{}", t.log());
    assert!(!seen.iter().any(|l| l.contains("denied")), "a denied datagram reached vm: {seen:?}");
    // The policy survives a restart (kept in the state file, not re-read from the path).
    std::fs::remove_file(&policy).unwrap();
    assert!(t.stop_daemon("TERM").success());
    t.start_daemon();
    let nat = t.cmdlet(&["Get-NetNat", "WinNAT", "-o", "json"]);
    assert!(nat.contains("FilterPolicy"), "the policy was not kept across the restart: {nat}");
}

#[test]
fn a_wasm_policy_module_keeps_a_denied_remote_out_survives_a_trap_and_a_restart() {
    if !root_or_skip("wasm_policy_module") {
        return;
    }
    let mut t = Topology::new();
    t.start_daemon();
    t.cmdlet(&["New-NetNat", "-Name", "WinNAT", "-InternalIPInterfaceAddressPrefix", "10.100.0.0/16"]);
    // 203.0.113.10 (0xcb00710a) is allowed from any port, everyone else denied.
    let abi = r#"(func (export "netnat_abi_version") (result i32) (i32.const 1))"#;
    let module = t.dir.path().join("only-wan1.wat");
    std::fs::write(
        &module,
        format!(
            r#"(module {abi}
  (func (export "netnat_inbound") (param $p i32) (param $ra i32) (param i32 i32 i32 i32 i32 i32 i64) (result i32)
    (select (i32.const 1) (i32.const 2) (i32.eq (local.get $ra) (i32.const 0xcb00710a)))))"#
        ),
    )
    .unwrap();
    let module = module.to_str().unwrap().to_owned();
    assert_eq!(t.cmdlet(&["Set-NetNat", "-Name", "WinNAT", "-FilterPolicyFile", &module]), "");
    let (rx, mut seen, ext_port) = open_vm_mapping(&mut t);

    send_and_expect_counted(&t, WAN2, 7001, ext_port, "from-11-denied", "policy_denied");
    send_from_wan(&t, WAN1, 7003, EXTERNAL, ext_port, "from-10-admitted");
    assert!(expect_line(&rx, "from-10-admitted", Duration::from_secs(10), &mut seen), "{seen:?}\n{}", t.log());

    // A module that traps on every decision, with on_error = "deny": refused, counted, and the
    // daemon goes on answering.
    std::fs::write(
        t.dir.path().join("trap.wat"),
        format!(r#"(module {abi} (func (export "netnat_inbound") (param i32 i32 i32 i32 i32 i32 i32 i32 i64) (result i32) unreachable))"#),
    )
    .unwrap();
    let trapping = t.dir.path().join("trap.toml");
    std::fs::write(&trapping, "[module]\npath = \"trap.wat\"\non_error = \"deny\"\n").unwrap();
    assert_eq!(t.cmdlet(&["Set-NetNat", "-Name", "WinNAT", "-FilterPolicyFile", trapping.to_str().unwrap()]), "");
    send_and_expect_counted(&t, WAN1, 7004, ext_port, "trapped-denied", "policy_failed");
    assert!(t.cmdlet(&["Get-NetNat", "WinNAT", "-o", "json"]).contains("WinNAT"), "the daemon answers");

    // The allowing module again; it survives a restart with its file gone.
    assert_eq!(t.cmdlet(&["Set-NetNat", "-Name", "WinNAT", "-FilterPolicyFile", &module]), "");
    std::fs::remove_file(&module).unwrap();
    assert!(t.stop_daemon("TERM").success());
    t.start_daemon();
    let nat = t.cmdlet(&["Get-NetNat", "WinNAT", "-o", "json"]);
    assert!(nat.contains("\"Module\""), "the module was not kept across the restart: {nat}");
    assert!(!seen.iter().any(|l| l.contains("denied")), "a refused datagram reached vm: {seen:?}");
    // Drain what came meanwhile and check again.
    std::thread::sleep(Duration::from_millis(300));
    seen.extend(rx.try_iter());
    assert!(!seen.iter().any(|l| l.contains("denied")), "a refused datagram reached vm: {seen:?}");
}
