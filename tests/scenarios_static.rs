//! Static mappings (design §2, Add-NetNatStaticMapping): TCP and UDP port forwarding,
//! ExternalIPAddress 0.0.0.0 = any external address, InternalPort defaulting to
//! ExternalPort, RemoteExternalIPAddressPrefix restricting the remotes.
//! CLI form (§3.1): PROTO:EXTADDR:EXTPORT=INTADDR:INTPORT[@REMOTE_PREFIX].

mod common;

use common::*;

const SRV: &str = "10.100.10.11";
const R: &str = "198.51.100.10";

#[test]
fn tcp_static_mapping_on_any_address_forwards_and_replies_come_from_the_mapping() {
    let mut s = Scenario::new();
    s.args(&["--static-mapping", "tcp:0.0.0.0:8080=10.100.10.11:80"]);
    s.at(0, tcp(ep(R, 41000), ep(EXT, 8080), TCP_SYN, 500, 0, b""));
    s.at(10, tcp(ep(SRV, 80), ep(R, 41000), TCP_SYN | TCP_ACK, 7000, 501, b""));
    s.at(20, tcp(ep(R, 41000), ep(EXT, 8080), TCP_ACK, 501, 7001, b""));
    s.at(30, tcp(ep(R, 41000), ep(EXT, 8080), TCP_ACK | TCP_PSH, 501, 7001, b"GET / HTTP/1.0\r\n\r\n"));
    s.at(40, tcp(ep(SRV, 80), ep(R, 41000), TCP_ACK | TCP_PSH, 7001, 519, b"HTTP/1.0 200 OK\r\n\r\n"));
    let o = s.run();
    for ms in [0, 20, 30] {
        let v = o.fwd(ms);
        assert_eq!(v.src_ep(), ep(R, 41000), "remote source untouched");
        assert_eq!(v.dst_ep(), ep(SRV, 80), "forwarded to the internal endpoint{}", o.context());
    }
    for ms in [10, 40] {
        let v = o.fwd(ms);
        assert_eq!(v.src_ep(), ep(EXT, 8080), "server replies from the mapping's external port{}", o.context());
        assert_eq!(v.dst_ep(), ep(R, 41000));
    }
    assert_eq!(o.fwd(30).l4_payload(), b"GET / HTTP/1.0\r\n\r\n");
    o.assert_drops(&[]);
    let rows = o.sessions();
    assert_eq!(rows.len(), 1, "inbound to a static mapping creates one session: {:#}", o.sessions);
    let r = &rows[0];
    assert_eq!(r["Protocol"], 6);
    assert_eq!(r["InternalSourceAddress"], SRV);
    assert_eq!(r["InternalSourcePort"], 80);
    assert_eq!(r["ExternalSourceAddress"], EXT);
    assert_eq!(r["ExternalSourcePort"], 8080);
    assert_eq!(r["ExternalDestinationAddress"], R);
    assert_eq!(r["ExternalDestinationPort"], 41000);
}

#[test]
fn udp_static_mapping_on_the_explicit_external_address() {
    let mut s = Scenario::new();
    s.args(&["--static-mapping", "udp:203.0.113.1:5353=10.100.10.11:53"]);
    s.at(0, udp(ep(R, 40000), ep(EXT, 5353), b"query"));
    s.at(10, udp(ep(SRV, 53), ep(R, 40000), b"answer"));
    // Another remote, any port: static mappings admit everyone by default (0.0.0.0/0).
    s.at(20, udp(ep("203.0.113.50", 1), ep(EXT, 5353), b"query 2"));
    let o = s.run();
    assert_eq!(o.fwd(0).dst_ep(), ep(SRV, 53));
    assert_eq!(o.fwd(10).src_ep(), ep(EXT, 5353));
    assert_eq!(o.fwd(20).dst_ep(), ep(SRV, 53));
    assert_eq!(o.fwd(20).src_ep(), ep("203.0.113.50", 1));
    o.assert_drops(&[]);
}

#[test]
fn static_mapping_is_per_protocol() {
    // A TCP mapping does not forward UDP to the same port.
    let mut s = Scenario::new();
    s.args(&["--static-mapping", "tcp:0.0.0.0:8080=10.100.10.11:80"]);
    s.at(0, udp(ep(R, 40000), ep(EXT, 8080), b"udp to a tcp mapping"));
    s.at(10, tcp(ep(R, 40000), ep(EXT, 8080), TCP_SYN, 1, 0, b""));
    let o = s.run();
    o.assert_dropped(0);
    assert_eq!(o.fwd(10).dst_ep(), ep(SRV, 80));
    o.assert_drops(&[("no_mapping", 1)]);
}

#[test]
fn internal_port_defaults_to_external_port() {
    // Ambiguity: §3.1 writes INTADDR:INTPORT, §2 says InternalPort defaults to
    // ExternalPort. Decision: the CLI accepts PROTO:EXTADDR:EXTPORT=INTADDR (no port), as
    // Add-NetNatStaticMapping accepts a missing -InternalPort.
    let mut s = Scenario::new();
    s.args(&["--static-mapping", "tcp:0.0.0.0:8080=10.100.10.11"]);
    s.at(0, tcp(ep(R, 41000), ep(EXT, 8080), TCP_SYN, 1, 0, b""));
    s.at(10, tcp(ep(SRV, 8080), ep(R, 41000), TCP_SYN | TCP_ACK, 9, 2, b""));
    let o = s.run();
    assert_eq!(o.fwd(0).dst_ep(), ep(SRV, 8080), "InternalPort defaults to ExternalPort{}", o.context());
    assert_eq!(o.fwd(10).src_ep(), ep(EXT, 8080));
}

#[test]
fn remote_prefix_restricts_the_remotes() {
    let mut s = Scenario::new();
    s.args(&["--static-mapping", "udp:0.0.0.0:5353=10.100.10.11:53@198.51.100.0/25"]);
    s.at(0, udp(ep("198.51.100.10", 1000), ep(EXT, 5353), b"inside the prefix"));
    s.at(10, udp(ep("198.51.100.127", 1000), ep(EXT, 5353), b"last address of the prefix"));
    s.at(20, udp(ep("198.51.100.128", 1000), ep(EXT, 5353), b"just outside"));
    s.at(30, udp(ep("203.0.113.50", 1000), ep(EXT, 5353), b"far outside"));
    let o = s.run();
    assert_eq!(o.fwd(0).dst_ep(), ep(SRV, 53));
    assert_eq!(o.fwd(10).dst_ep(), ep(SRV, 53));
    o.assert_dropped(20);
    o.assert_dropped(30);
    o.assert_drops(&[("remote_not_allowed", 2)]);
}

#[test]
fn remote_prefix_restricts_tcp_too() {
    let mut s = Scenario::new();
    s.args(&["--static-mapping", "tcp:0.0.0.0:2222=10.100.10.11:22@203.0.113.64/26"]);
    s.at(0, tcp(ep("203.0.113.70", 50000), ep(EXT, 2222), TCP_SYN, 1, 0, b""));
    s.at(10, tcp(ep(R, 50000), ep(EXT, 2222), TCP_SYN, 1, 0, b""));
    let o = s.run();
    assert_eq!(o.fwd(0).dst_ep(), ep(SRV, 22));
    o.assert_dropped(10);
    o.assert_drops(&[("remote_not_allowed", 1)]);
}

#[test]
fn several_static_mappings_coexist_with_dynamic_traffic() {
    let mut s = Scenario::new();
    s.args(&[
        "--static-mapping",
        "tcp:0.0.0.0:80=10.100.10.11:8080",
        "--static-mapping",
        "tcp:0.0.0.0:443=10.100.10.12:443",
        "--static-mapping",
        "udp:0.0.0.0:80=10.100.10.13:9000",
    ]);
    s.at(0, tcp(ep(R, 1111), ep(EXT, 80), TCP_SYN, 1, 0, b""));
    s.at(1, tcp(ep(R, 1112), ep(EXT, 443), TCP_SYN, 1, 0, b""));
    s.at(2, udp(ep(R, 1113), ep(EXT, 80), b"x"));
    // The server behind :80 also opens an outbound connection from another port: dynamic.
    s.at(3, tcp(ep(SRV, 33333), ep(R, 25), TCP_SYN, 1, 0, b""));
    let o = s.run();
    assert_eq!(o.fwd(0).dst_ep(), ep(SRV, 8080));
    assert_eq!(o.fwd(1).dst_ep(), ep("10.100.10.12", 443));
    assert_eq!(o.fwd(2).dst_ep(), ep("10.100.10.13", 9000));
    let v = o.fwd(3);
    assert_eq!(v.src(), ip(EXT));
    assert!(![80, 443].contains(&v.sport()), "dynamic flow got a static mapping's TCP port");
}

#[test]
fn bad_static_mapping_is_a_clear_error() {
    // Internal address outside the internal prefix: refused, naming the problem.
    let mut s = Scenario::new();
    s.args(&["--static-mapping", "tcp:0.0.0.0:8080=198.51.100.50:80"]);
    s.at(0, tcp(ep(R, 1), ep(EXT, 8080), TCP_SYN, 1, 0, b""));
    let o = s.run_unchecked();
    assert!(!o.success, "a mapping outside the internal prefix must be refused");
    assert!(o.stderr.contains("198.51.100.50"), "error names the bad address: {}", o.stderr);
}

#[test]
fn static_mapping_endpoint_keeps_its_external_port_for_new_remotes() {
    // Ambiguity: the contract does not say which external port a static mapping's internal
    // endpoint uses when it opens a flow to a remote itself. Decision (EIM, RFC 4787 REQ-1):
    // the static mapping is that endpoint's mapping, so 10.100.10.11:53 appears as EXT:5353
    // to every remote, also ones that never sent to it.
    let mut s = Scenario::new();
    s.args(&["--static-mapping", "udp:0.0.0.0:5353=10.100.10.11:53"]);
    s.at(0, udp(ep(SRV, 53), ep(R, 53), b"recursive query from the DNS server"));
    let o = s.run();
    assert_eq!(o.fwd(0).src_ep(), ep(EXT, 5353), "{}", o.context());
}
