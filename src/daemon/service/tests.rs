//! The control plane's tests: changes refused before they are saved, filter policies and
//! modules, presentation.

use super::compile::port_slice;
use super::*;
use crate::control::protocol::ErrorKind;

fn service() -> Service {
    Service::new(
        State::default(),
        None,
        Arc::new(Dataplane::new()),
        Clock::start(),
        EngineSettings { seed: 7, limits: Limits::default(), host_nat_ports: (1024, 65535), session_counters: false },
        vec![Ipv4Addr::new(203, 0, 113, 1), Ipv4Addr::new(10, 100, 1, 1)],
        Box::new(|_, _| {}),
    )
    .unwrap()
}

fn new_nat(s: &mut Service, name: &str, prefix: &str) -> Reply {
    s.handle(Request::NewNetNat {
        name: name.into(),
        internal_prefix: prefix.parse().unwrap(),
        external_prefix: None,
        filter_policy: None,
    })
}

/// Add-NetNatExternalAddress -NatName WinNAT -IPAddress 203.0.113.1 (so the NAT has
/// explicit addressing and one engine).
fn add_external_address(s: &mut Service) {
    let add_address = Request::AddNetNatExternalAddress {
        nat_name: "WinNAT".into(),
        address: Ipv4Addr::new(203, 0, 113, 1),
        port_start: None,
        port_end: None,
    };
    assert!(matches!(s.handle(add_address), Reply::Ok { .. }));
}

fn err(r: Reply) -> ControlError {
    match r {
        Reply::Error(e) => e,
        Reply::Ok { output, .. } => panic!("expected an error, got {output:?}"),
    }
}

/// A change the engines would refuse (a static mapping to a host outside the internal
/// prefix) is refused before the save: the state file keeps its bytes, the running NAT
/// is the same object with its session, and the configuration in force is unchanged.
#[test]
fn a_refused_change_leaves_the_state_file_and_the_running_nats_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::new(dir.path());
    let plane = Arc::new(Dataplane::new());
    let engine =
        EngineSettings { seed: 7, limits: Limits::default(), host_nat_ports: (1024, 65535), session_counters: false };
    let hosts = vec![Ipv4Addr::new(203, 0, 113, 1)];
    let mut s = Service::new(
        State::default(),
        Some(StateStore::new(dir.path())),
        Arc::clone(&plane),
        Clock::start(),
        engine,
        hosts,
        Box::new(|_, _| {}),
    )
    .unwrap();
    assert!(matches!(new_nat(&mut s, "WinNAT", "10.100.0.0/16"), Reply::Ok { .. }));
    add_external_address(&mut s);
    // One flow through the running NAT.
    let mut p = vec![0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 10, 100, 10, 11, 198, 51, 100, 10];
    p.extend_from_slice(&[0x13, 0x88, 0, 53, 0, 8, 0, 0]);
    netnat_engine::wire::ipv4::fill_checksum(&mut p);
    let now = netnat_engine::Instant::from_secs(1);
    assert!(matches!(plane.process(now, &mut p), crate::daemon::dataplane::Delivery::Translated { .. }));
    let (saved, state, running) = (std::fs::read(store.path()).unwrap(), s.state().clone(), plane.nats());

    let refused = s.handle(Request::AddNetNatStaticMapping {
        nat_name: "WinNAT".into(),
        protocol: Protocol::Udp,
        remote_prefix: None,
        external_address: Ipv4Addr::UNSPECIFIED,
        external_port: 8080,
        internal_address: Ipv4Addr::new(10, 200, 0, 5),
        internal_port: None,
    });
    let e = err(refused);
    assert_eq!(e.kind, ErrorKind::InvalidParameter, "{e}");
    assert_eq!(std::fs::read(store.path()).unwrap(), saved, "the state file is untouched");
    assert_eq!(s.state(), &state, "the configuration in force is unchanged");
    assert!(Arc::ptr_eq(&plane.nats()[0], &running[0]), "the same NAT runs");
    assert_eq!(plane.nats()[0].sessions().len(), 1, "its session is kept");
}

const POLICY: &str =
    "[[rule]]\naction = \"deny\"\nremote = \"198.51.100.0/24\"\n\n[[limit]]\nnew_inbound_per_second = 5\n";

fn source(text: &str) -> PolicySource {
    PolicySource { path: "/etc/netnat/policy.toml".into(), text: text.into(), module: None }
}

fn set_policy(s: &mut Service, change: PolicyChange) -> Reply {
    s.handle(Request::SetNetNat {
        names: Some(vec!["WinNAT".into()]),
        changes: NatChanges { filter_policy: Some(change), ..NatChanges::default() },
    })
}

fn service_at(dir: &std::path::Path, state: State, plane: Arc<Dataplane>) -> Service {
    let engine =
        EngineSettings { seed: 7, limits: Limits::default(), host_nat_ports: (1024, 65535), session_counters: false };
    Service::new(
        state,
        Some(StateStore::new(dir)),
        plane,
        Clock::start(),
        engine,
        vec![Ipv4Addr::new(203, 0, 113, 1)],
        Box::new(|_, _| {}),
    )
    .unwrap()
}

/// The policy each running engine of the NAT has.
fn running_policy(plane: &Dataplane) -> Vec<Option<netnat_engine::policy::Policy>> {
    plane.nats()[0].instances().iter().map(|i| i.nat.config().filter_policy.clone()).collect()
}

/// Opens a mapping 10.100.0.5:5000 -> 198.51.100.7:53 through `nat` at 1 s; returns what an
/// unsolicited packet from another port of that remote (at 2 s) gets.
fn mapping_prober(nat: &netnat_engine::Nat) -> impl Fn(u16) -> netnat_engine::Verdict + '_ {
    let udp = |src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16| {
        let mut p = Vec::new();
        etherparse::PacketBuilder::ipv4(src, dst, 64).udp(sport, dport).write(&mut p, b"x").unwrap();
        p
    };
    let mut out = udp([10, 100, 0, 5], 5000, [198, 51, 100, 7], 53);
    assert!(matches!(
        nat.handle_packet(netnat_engine::Instant::from_secs(1), &mut out),
        netnat_engine::Verdict::Forward { .. }
    ));
    let ext = u16::from_be_bytes([out[20], out[21]]);
    move |port| {
        let mut p = udp([198, 51, 100, 7], port, [203, 0, 113, 1], ext);
        nat.handle_packet(netnat_engine::Instant::from_secs(2), &mut p)
    }
}

/// A policy module (as the cmdlet sends it) runs in the NAT's engines instead of its
/// filtering; a module that cannot run is refused with the file named and nothing
/// changes; removing it brings the configured filtering back.
#[test]
fn a_policy_module_runs_in_the_nats_engines_and_a_bad_one_is_refused() {
    use base64::Engine as _;
    let module = |wat: &str| PolicySource {
        path: "/etc/netnat/m.wat".into(),
        text: String::new(),
        module: Some(crate::control::protocol::ModuleSource {
            base64: base64::engine::general_purpose::STANDARD.encode(wat),
            on_error: "deny".into(),
            fuel_per_call: 1000,
        }),
    };
    const ABI: &str = r#"(func (export "netnat_abi_version") (result i32) (i32.const 1))"#;
    let deny_all = format!(
        r#"(module {ABI} (func (export "netnat_inbound") (param i32 i32 i32 i32 i32 i32 i32 i32 i64) (result i32) (i32.const 2)))"#
    );
    let dir = tempfile::tempdir().unwrap();
    let plane = Arc::new(Dataplane::new());
    let mut s = service_at(dir.path(), State::default(), Arc::clone(&plane));
    assert!(matches!(new_nat(&mut s, "WinNAT", "10.100.0.0/16"), Reply::Ok { .. }));
    assert!(matches!(set_policy(&mut s, PolicyChange::Set(module(&deny_all))), Reply::Ok { .. }));

    let nat = &plane.nats()[0].instances()[0].nat;
    let probe = mapping_prober(nat);
    // Address-dependent filtering would admit another port of a contacted address.
    assert_eq!(probe(54), netnat_engine::Verdict::Drop(netnat_engine::DropReason::PolicyDenied));
    let Reply::Ok { output: Output::Nats(nats), .. } = s.handle(Request::GetNetNat { names: None }) else { panic!() };
    let info = nats[0].filter_policy.clone().expect("shown");
    assert_eq!(info.to_string(), "/etc/netnat/m.wat (WASM module, on_error deny, 1000 fuel per decision)");

    let store = StateStore::new(dir.path());
    let saved = std::fs::read(store.path()).unwrap();
    let imports = format!(r#"(module (import "env" "log" (func)) {ABI})"#);
    let e = err(set_policy(&mut s, PolicyChange::Set(module(&imports))));
    assert!(e.to_string().contains("/etc/netnat/m.wat: the module imports env.log"), "{e}");
    assert_eq!(std::fs::read(store.path()).unwrap(), saved, "the state file is untouched");
    assert_eq!(probe(55), netnat_engine::Verdict::Drop(netnat_engine::DropReason::PolicyDenied), "still the module");

    // The saved module comes back with the daemon.
    let reloaded_plane = Arc::new(Dataplane::new());
    let _reloaded = service_at(dir.path(), store.load().unwrap(), Arc::clone(&reloaded_plane));
    let reloaded_nat = &reloaded_plane.nats()[0].instances()[0].nat;
    let reloaded_probe = mapping_prober(reloaded_nat);
    assert_eq!(reloaded_probe(54), netnat_engine::Verdict::Drop(netnat_engine::DropReason::PolicyDenied));

    assert!(matches!(set_policy(&mut s, PolicyChange::Remove), Reply::Ok { .. }));
    assert!(matches!(probe(56), netnat_engine::Verdict::Forward { .. }), "the configured filtering again");
}

/// A bad policy (bad text, or a rule that can never match this NAT) is refused by
/// Set-NetNat and New-NetNat with the file and line; the state file, the state and the
/// running NAT stay as they were.
#[test]
fn a_bad_filter_policy_is_refused_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let plane = Arc::new(Dataplane::new());
    let mut s = service_at(dir.path(), State::default(), Arc::clone(&plane));
    assert!(matches!(new_nat(&mut s, "WinNAT", "10.100.0.0/16"), Reply::Ok { .. }));
    assert!(matches!(set_policy(&mut s, PolicyChange::Set(source(POLICY))), Reply::Ok { .. }));
    let store = StateStore::new(dir.path());
    let (saved, state, running) = (std::fs::read(store.path()).unwrap(), s.state().clone(), plane.nats());

    for (text, expect) in [
        ("[[rule]]\naction = \"deny\"\nremote = \"198.51.100.0/33\"\n", "/etc/netnat/policy.toml:3: rule 1: \"remote\" is not an IPv4 prefix"),
        ("[[rule]]\naction = \"deny\"\ninternal = \"10.200.0.5\"\n", "/etc/netnat/policy.toml:3: rule 1: \"internal\" 10.200.0.5/32 lies outside the NAT's internal prefix 10.100.0.0/16"),
        ("[[rule]]\nactoin = \"deny\"\n", "/etc/netnat/policy.toml:2:1: rule 1: unknown field `actoin`"),
    ] {
        let e = err(set_policy(&mut s, PolicyChange::Set(source(text))));
        assert_eq!(e.kind, ErrorKind::InvalidParameter, "{e}");
        assert!(e.to_string().contains(expect), "expected {expect:?} in: {e}");
        assert_eq!(std::fs::read(store.path()).unwrap(), saved, "the state file is untouched");
        assert_eq!(s.state(), &state, "the configuration in force is unchanged");
        assert!(Arc::ptr_eq(&plane.nats()[0], &running[0]), "the same NAT runs");
        assert_eq!(running_policy(&plane), vec![Some(crate::policy_file::parse(POLICY, "p").unwrap().policy().clone())]);
    }
    let e = err(s.handle(Request::NewNetNat {
        name: "Other".into(),
        internal_prefix: "10.101.0.0/16".parse().unwrap(),
        external_prefix: None,
        filter_policy: Some(source("[[rule]]\naction = \"deny\"\ninternal = \"10.100.0.5\"\n")),
    }));
    assert!(e.to_string().contains("Filter policy of NAT 'Other'"), "{e}");
    assert_eq!(s.state(), &state, "no NAT was created");
    assert_eq!(std::fs::read(store.path()).unwrap(), saved);
}

/// A valid policy is saved with its text (not only its path), shown by Get-NetNat only
/// as the extension field, runs in the engine, and survives a restart from the state
/// file; -RemoveFilterPolicy removes it.
#[test]
fn a_filter_policy_persists_with_its_text_and_survives_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let plane = Arc::new(Dataplane::new());
    let mut s = service_at(dir.path(), State::default(), Arc::clone(&plane));
    let reply = s.handle(Request::NewNetNat {
        name: "WinNAT".into(),
        internal_prefix: "10.100.0.0/16".parse().unwrap(),
        external_prefix: None,
        filter_policy: Some(source(POLICY)),
    });
    let Reply::Ok { output: Output::Nats(nats), .. } = reply else { panic!("{reply:?}") };
    let info = nats[0].filter_policy.clone().expect("shown by New-NetNat");
    assert_eq!((info.path.as_str(), info.rules, info.limits), ("/etc/netnat/policy.toml", 1, 1));
    let expected = crate::policy_file::parse(POLICY, "p").unwrap().policy().clone();
    assert_eq!(running_policy(&plane), vec![Some(expected.clone())]);
    let saved = std::fs::read_to_string(StateStore::new(dir.path()).path()).unwrap();
    assert!(saved.contains("new_inbound_per_second = 5"), "the text is saved: {saved}");

    // A restart: a new service over the state loaded from the file (no policy file exists
    // anywhere: the daemon never needed one).
    drop(s);
    let plane = Arc::new(Dataplane::new());
    let loaded = StateStore::new(dir.path()).load().unwrap();
    let mut s = service_at(dir.path(), loaded, Arc::clone(&plane));
    assert_eq!(s.state().nats[0].filter_policy.as_ref().map(|p| p.text.as_str()), Some(POLICY));
    assert_eq!(running_policy(&plane), vec![Some(expected)]);
    let Reply::Ok { output: Output::Nats(nats), .. } = s.handle(Request::GetNetNat { names: None }) else { panic!() };
    assert_eq!(nats[0].filter_policy.as_ref().map(|p| p.rules), Some(1));

    // Another setting leaves the policy alone; removing it goes back to the behaviours.
    let reply = s.handle(Request::SetNetNat {
        names: None,
        changes: NatChanges { udp_idle_session_timeout: Some(60), ..NatChanges::default() },
    });
    assert!(matches!(reply, Reply::Ok { .. }));
    assert!(s.state().nats[0].filter_policy.is_some());
    assert!(matches!(set_policy(&mut s, PolicyChange::Remove), Reply::Ok { .. }));
    assert_eq!(running_policy(&plane), vec![None]);
    let saved = std::fs::read_to_string(StateStore::new(dir.path()).path()).unwrap();
    assert!(!saved.contains("filter_policy"), "no key without a policy: {saved}");
}

/// Get-NetNatSession lists WinNAT's properties only; with -Detailed each row also has the
/// session's timer and TCP state, read from the engine at the daemon's clock.
#[test]
fn get_session_detailed_adds_timer_and_tcp_state() {
    let plane = Arc::new(Dataplane::new());
    let dir = tempfile::tempdir().unwrap();
    let mut s = service_at(dir.path(), State::default(), Arc::clone(&plane));
    assert!(matches!(new_nat(&mut s, "WinNAT", "10.100.0.0/16"), Reply::Ok { .. }));
    add_external_address(&mut s);
    let now = s.clock.now();
    // A TCP SYN from 10.100.10.11:5000 to 198.51.100.10:80.
    let mut syn = vec![0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0, 10, 100, 10, 11, 198, 51, 100, 10];
    syn.extend_from_slice(&[0x13, 0x88, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    netnat_engine::wire::ipv4::fill_checksum(&mut syn);
    let action = plane.process(now, &mut syn);
    assert!(matches!(action, crate::daemon::dataplane::Delivery::Translated { .. }), "{action:?}");

    let Reply::Ok { output: Output::Sessions(plain), .. } =
        s.handle(Request::GetNetNatSession { detailed: false, watch: false })
    else {
        panic!("no sessions")
    };
    assert_eq!(plain.len(), 1);
    assert_eq!(plain[0].detail, None, "the default rows are WinNAT's");
    let Reply::Ok { output: Output::Sessions(rows), .. } =
        s.handle(Request::GetNetNatSession { detailed: true, watch: false })
    else {
        panic!("no sessions")
    };
    let d = rows[0].detail.clone().expect("detail with -Detailed");
    assert_eq!(
        (d.tcp_state.as_deref(), d.timeout_seconds, d.opened_direction.as_str()),
        (Some("Opening"), 120, "Outbound")
    );
    assert!(d.idle_seconds < 10.0 && d.idle_seconds >= 0.0, "{d:?}");
    assert!((d.idle_seconds + d.time_left_seconds - 120.0).abs() < 0.002, "{d:?}");
    let mut without = rows[0].clone();
    without.detail = None;
    assert_eq!(without, plain[0], "the WinNAT properties are the same");
}

#[test]
fn port_slices_cover_the_range_without_overlap() {
    const ALL: (u16, u16) = (1024, 65535);
    assert_eq!(port_slice(ALL, 0, 1), ALL);
    let (a, b) = (port_slice(ALL, 0, 2), port_slice(ALL, 1, 2));
    assert_eq!(a.0, 1024);
    assert_eq!(a.1 + 1, b.0);
    assert_eq!(b.1, 65535);
    // The host's share of a Linux default: below its ephemeral range 32768-60999.
    let host = (1024, 32767);
    let slices: Vec<_> = (0..3).map(|k| port_slice(host, k, 3)).collect();
    assert_eq!((slices[0].0, slices[2].1), host);
    assert!(slices.windows(2).all(|w| w[0].1 + 1 == w[1].0));
    // More NATs than ports never yields an empty or inverted slice.
    assert!((0..5).map(|k| port_slice((7, 8), k, 5)).all(|(a, b)| a <= b && (7..=8).contains(&a)));
}

#[test]
fn overlapping_prefixes_are_refused_with_winnat_wording() {
    let mut s = service();
    assert!(matches!(new_nat(&mut s, "WinNAT", "10.100.0.0/16"), Reply::Ok { .. }));
    let e = err(new_nat(&mut s, "Other", "10.100.5.0/24"));
    assert_eq!(e.kind, ErrorKind::InvalidParameter);
    assert!(e.to_string().starts_with("The parameter is incorrect."), "{e}");
    assert!(e.to_string().contains("WinNAT"), "{e}");
    let e = err(new_nat(&mut s, "winnat", "10.200.0.0/16"));
    assert_eq!(e.kind, ErrorKind::DuplicateName);
    assert!(matches!(new_nat(&mut s, "Second", "10.200.0.0/16"), Reply::Ok { .. }));
    assert_eq!(s.state().nats.len(), 2);
}

#[test]
fn duplicate_static_port_and_remove_all() {
    let mut s = service();
    new_nat(&mut s, "WinNAT", "10.100.0.0/16");
    let add = |port| Request::AddNetNatStaticMapping {
        nat_name: "WinNAT".into(),
        protocol: Protocol::Tcp,
        remote_prefix: None,
        external_address: Ipv4Addr::UNSPECIFIED,
        external_port: port,
        internal_address: Ipv4Addr::new(10, 100, 10, 11),
        internal_port: None,
    };
    assert!(matches!(s.handle(add(8080)), Reply::Ok { .. }));
    let e = err(s.handle(add(8080)));
    assert!(e.to_string().contains("duplicate name exists on the network"), "{e}");
    assert_eq!(s.state().static_mappings[0].internal_port, 8080);
    assert!(matches!(s.handle(Request::RemoveNetNat { names: None }), Reply::Ok { .. }));
    assert!(s.state().nats.is_empty() && s.state().static_mappings.is_empty());
}

#[test]
fn remove_by_id_removes_only_that_record_and_an_unknown_id_is_not_found() {
    let mut s = service();
    new_nat(&mut s, "WinNAT", "10.100.0.0/16");
    for port in [8080, 8081] {
        let add = Request::AddNetNatStaticMapping {
            nat_name: "WinNAT".into(),
            protocol: Protocol::Tcp,
            remote_prefix: None,
            external_address: Ipv4Addr::UNSPECIFIED,
            external_port: port,
            internal_address: Ipv4Addr::new(10, 100, 10, 11),
            internal_port: None,
        };
        assert!(matches!(s.handle(add), Reply::Ok { .. }));
    }
    let first = s.state().static_mappings[0].id;
    let e = err(s.handle(Request::RemoveNetNatStaticMapping { ids: Some(vec![first, 999]), nat_names: None }));
    assert!(
        e.to_string()
            .contains("No MSFT_NetNatStaticMapping objects found with property 'StaticMappingID' equal to '999'"),
        "{e}"
    );
    assert_eq!(s.state().static_mappings.len(), 2, "nothing removed when one id is unknown");
    assert!(matches!(
        s.handle(Request::RemoveNetNatStaticMapping { ids: Some(vec![first]), nat_names: None }),
        Reply::Ok { .. }
    ));
    assert_eq!(s.state().static_mappings.iter().map(|m| m.external_port).collect::<Vec<_>>(), [8081]);
    let e = err(s.handle(Request::RemoveNetNatExternalAddress { ids: Some(vec![7]), nat_names: None }));
    assert!(
        e.to_string()
            .contains("No MSFT_NetNatExternalAddress objects found with property 'ExternalAddressID' equal to '7'"),
        "{e}"
    );
    let e = err(s.handle(Request::RemoveNetNatStaticMapping { ids: None, nat_names: Some(vec!["Other".into()]) }));
    assert!(
        e.to_string().contains("No MSFT_NetNatStaticMapping objects found with property 'NatName' equal to 'Other'"),
        "{e}"
    );
}

#[test]
fn get_unknown_name_is_not_found_but_wildcards_may_match_nothing() {
    let mut s = service();
    let e = err(s.handle(Request::GetNetNat { names: Some(vec!["Nope".into()]) }));
    assert!(e.to_string().contains("No MSFT_NetNat objects found with property 'Name' equal to 'Nope'"));
    assert!(matches!(s.handle(Request::GetNetNat { names: Some(vec!["No*".into()]) }), Reply::Ok { .. }));
}
#[cfg(target_os = "linux")]
#[test]
fn statistics_include_the_kernel_queue_counters_beside_the_nats() {
    let mut s = service();
    assert!(matches!(new_nat(&mut s, "WinNAT", "10.100.0.0/16"), Reply::Ok { .. }));
    assert!(matches!(new_nat(&mut s, "nfqueue", "10.101.0.0/16"), Reply::Ok { .. }));
    let Reply::Ok { output: Output::Statistics(map), .. } = s.handle(Request::GetNetNatStatistics) else {
        panic!("no statistics")
    };
    // The NATs keep their entries, engine counters under "stats".
    for nat in ["WinNAT", "nfqueue"] {
        assert!(map[nat][0]["stats"].is_object(), "{nat}: {map:?}");
    }
    // The kernel's entry has the same shape; this test process binds no queue: zeros, a note.
    let kernel = &map["nfqueue (kernel)"][0];
    assert_eq!(kernel["stats"]["dropped"], 0, "{kernel}");
    assert_eq!(kernel["stats"]["queue_dropped"], 0, "{kernel}");
    assert_eq!(kernel["stats"]["user_dropped"], 0, "{kernel}");
    assert_eq!(kernel["queues"], serde_json::json!([]));
    assert!(kernel["note"].is_string(), "{kernel}");
    // The capture workers' counters are there too, zero before any worker published.
    assert_eq!(kernel["stats"]["gso_packets"], 0, "{kernel}");
    assert_eq!(kernel["stats"]["checksums_completed"], 0, "{kernel}");
}
