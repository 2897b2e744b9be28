//! Filtering (design §2 "Filtering"): for UDP and TCP, each behaviour admits exactly the
//! remotes it should. The internal endpoint 10.100.10.11:5000 talks to 198.51.100.10:P0; then
//! three remotes send to its mapping:
//!   same address, same port   -> every behaviour admits
//!   same address, other port  -> EIF and ADF admit, APDF drops
//!   other address             -> EIF admits, ADF and APDF drop
//! Dropped ones are counted as `filtered`.

mod common;

use common::*;

const A: &str = "10.100.10.11";
const R: &str = "198.51.100.10";
const OTHER: &str = "198.51.100.99";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Proto {
    Udp,
    Tcp,
}

fn packet(proto: Proto, src: std::net::SocketAddrV4, dst: std::net::SocketAddrV4, first_contact: bool) -> Vec<u8> {
    match proto {
        Proto::Udp => udp(src, dst, b"data"),
        // New remotes open with a SYN (an inbound connection attempt); the known remote
        // answers the outbound SYN with a SYN-ACK.
        Proto::Tcp if first_contact => tcp(src, dst, TCP_SYN, 9000, 0, b""),
        Proto::Tcp => tcp(src, dst, TCP_SYN | TCP_ACK, 9000, 1001, b""),
    }
}

/// Runs the scenario; returns which of (same remote, same addr other port, other addr) were
/// admitted, after checking every admitted one was translated to the internal endpoint.
fn admitted(proto: Proto, behaviour: Option<&str>) -> [bool; 3] {
    let (flag, remote_port) = match proto {
        Proto::Udp => ("--udp-filtering", 53),
        Proto::Tcp => ("--tcp-filtering", 80),
    };
    let mut s = Scenario::new();
    if let Some(b) = behaviour {
        s.args(&[flag, b]);
    }
    let out = match proto {
        Proto::Udp => udp(ep(A, 5000), ep(R, remote_port), b"hi"),
        Proto::Tcp => tcp(ep(A, 5000), ep(R, remote_port), TCP_SYN, 1000, 0, b""),
    };
    s.at(0, out);
    let p = s.learn_port(0);
    s.at(1000, packet(proto, ep(R, remote_port), ep(EXT, p), false));
    s.at(2000, packet(proto, ep(R, remote_port + 1), ep(EXT, p), true));
    s.at(3000, packet(proto, ep(OTHER, remote_port), ep(EXT, p), true));
    let o = s.run();
    let mut got = [false; 3];
    for (i, ms) in [1000, 2000, 3000].into_iter().enumerate() {
        got[i] = o.is_forwarded(ms);
        let input = View::new(o.input_at(ms));
        if got[i] {
            let v = o.fwd(ms);
            assert_eq!(v.dst_ep(), ep(A, 5000), "admitted inbound translated to the internal endpoint{}", o.context());
            assert_eq!(v.src_ep(), input.src_ep(), "inbound source untouched");
        } else {
            o.assert_dropped(ms);
        }
    }
    let n_dropped = got.iter().filter(|g| !**g).count() as u64;
    o.assert_drops(&[("filtered", n_dropped)]);
    got
}

#[test]
fn udp_endpoint_independent_filtering() {
    assert_eq!(admitted(Proto::Udp, Some("EndpointIndependentFiltering")), [true, true, true]);
}

#[test]
fn udp_address_dependent_filtering() {
    assert_eq!(admitted(Proto::Udp, Some("AddressDependentFiltering")), [true, true, false]);
}

#[test]
fn udp_address_and_port_dependent_filtering() {
    assert_eq!(admitted(Proto::Udp, Some("AddressAndPortDependentFiltering")), [true, false, false]);
}

#[test]
fn udp_default_is_address_dependent() {
    assert_eq!(admitted(Proto::Udp, None), [true, true, false]);
}

#[test]
fn tcp_endpoint_independent_filtering() {
    assert_eq!(admitted(Proto::Tcp, Some("EndpointIndependentFiltering")), [true, true, true]);
}

#[test]
fn tcp_address_dependent_filtering() {
    assert_eq!(admitted(Proto::Tcp, Some("AddressDependentFiltering")), [true, true, false]);
}

#[test]
fn tcp_address_and_port_dependent_filtering() {
    assert_eq!(admitted(Proto::Tcp, Some("AddressAndPortDependentFiltering")), [true, false, false]);
}

#[test]
fn tcp_default_is_address_dependent() {
    assert_eq!(admitted(Proto::Tcp, None), [true, true, false]);
}

#[test]
fn filtering_is_per_protocol() {
    // UDP open (EIF), TCP strict (APDF): a stranger reaches the UDP mapping, not the TCP one.
    let mut s = Scenario::new();
    s.args(&["--udp-filtering", "EndpointIndependentFiltering", "--tcp-filtering", "AddressAndPortDependentFiltering"]);
    s.at(0, udp(ep(A, 5000), ep(R, 53), b"x"));
    s.at(1, tcp(ep(A, 5000), ep(R, 80), TCP_SYN, 1, 0, b""));
    let pu = s.learn_port(0);
    let pt = s.learn_port(1);
    s.at(10, udp(ep(OTHER, 9999), ep(EXT, pu), b"stranger"));
    s.at(11, tcp(ep(OTHER, 9999), ep(EXT, pt), TCP_SYN, 1, 0, b""));
    let o = s.run();
    assert_eq!(o.fwd(10).dst_ep(), ep(A, 5000));
    o.assert_dropped(11);
    o.assert_drops(&[("filtered", 1)]);
}

#[test]
fn address_dependent_admits_a_remote_once_sent_to() {
    // ADF: after the internal endpoint sends to OTHER, OTHER (any port) is admitted.
    let mut s = Scenario::new();
    s.at(0, udp(ep(A, 5000), ep(R, 53), b"x"));
    let p = s.learn_port(0);
    s.at(10, udp(ep(OTHER, 7000), ep(EXT, p), b"too early"));
    s.at(20, udp(ep(A, 5000), ep(OTHER, 7000), b"now I talk to you"));
    s.at(30, udp(ep(OTHER, 7001), ep(EXT, p), b"welcome"));
    let o = s.run();
    o.assert_dropped(10);
    assert_eq!(o.fwd(20).src_ep(), ep(EXT, p), "EIM: same mapping for the new remote");
    assert_eq!(o.fwd(30).dst_ep(), ep(A, 5000));
    o.assert_drops(&[("filtered", 1)]);
}

#[test]
fn unknown_filtering_behaviour_is_a_clear_error() {
    let mut s = Scenario::new();
    s.args(&["--udp-filtering", "OpenToEveryone"]);
    s.at(0, udp(ep(A, 5000), ep(R, 53), b"x"));
    let o = s.run_unchecked();
    assert!(!o.success, "an unknown behaviour must be refused");
    assert!(o.stderr.contains("OpenToEveryone"), "the error names the bad value: {}", o.stderr);
}
