//! A custom filtering policy: inbound packets may reach a mapping only from a list of remote
//! prefixes (say, your office and a monitoring service), on top of address-dependent
//! filtering. Plug it in with `Nat::set_filtering_policy`.
//!
//! Run: `cargo run -p netnat-engine --example allowlist_filter`

use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use netnat_engine::filter::AddressDependent;
use netnat_engine::{Direction, FilteringPolicy, InboundContext, Instant, Nat, NatConfig, Protocol, Verdict};

/// Admits a remote when it is inside one of `allowed` AND address-dependent filtering admits it.
#[derive(Debug)]
pub struct Allowlist {
    allowed: Vec<Ipv4Net>,
}

impl FilteringPolicy for Allowlist {
    fn admit(&self, ctx: &InboundContext<'_>) -> bool {
        self.allowed.iter().any(|net| net.contains(ctx.remote.ip())) && AddressDependent.admit(ctx)
    }
}

fn udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    let mut p = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0];
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&[0, 8, 0, 0]); // length 8, no checksum
    netnat_engine::wire::ipv4::fill_checksum(&mut p);
    p
}

/// Sends a query out to `remote`, then its answer plus a second answer from `remote` port+1;
/// returns whether the answers got in.
fn demo(nat: &Nat, remote: Ipv4Addr) -> (bool, bool) {
    let inside = Ipv4Addr::new(10, 100, 10, 11);
    let mut q = udp(inside, 5000, remote, 53);
    let Verdict::Forward { direction: Direction::Outbound, .. } = nat.handle_packet(Instant::from_secs(1), &mut q)
    else {
        panic!("query not translated");
    };
    let ext_port = u16::from_be_bytes([q[20], q[21]]);
    let ext = Ipv4Addr::new(q[12], q[13], q[14], q[15]);
    let mut a = udp(remote, 53, ext, ext_port);
    let first = matches!(nat.handle_packet(Instant::from_secs(2), &mut a), Verdict::Forward { .. });
    let mut b = udp(remote, 54, ext, ext_port);
    let second = matches!(nat.handle_packet(Instant::from_secs(2), &mut b), Verdict::Forward { .. });
    (first, second)
}

fn main() {
    let nat = Nat::new(NatConfig::new("WinNAT", "10.100.0.0/16".parse().unwrap(), Ipv4Addr::new(203, 0, 113, 1)))
        .expect("valid config");
    nat.set_filtering_policy(
        Protocol::Udp,
        Some(Arc::new(Allowlist { allowed: vec!["198.51.100.0/24".parse().unwrap()] })),
    );
    for remote in [Ipv4Addr::new(198, 51, 100, 7), Ipv4Addr::new(203, 0, 113, 10)] {
        let (first, second) = demo(&nat, remote);
        println!("{remote}: answer from port 53 admitted: {first}; from port 54 admitted: {second}");
    }
    println!("{}", stats_line(&nat));
}

fn stats_line(nat: &Nat) -> String {
    let s = nat.stats();
    format!(
        "translated out {}, in {}, filtered {}",
        s.translated_out,
        s.translated_in,
        s.dropped(netnat_engine::DropReason::Filtered)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nat_with_allowlist() -> Nat {
        let nat = Nat::new(NatConfig::new("WinNAT", "10.100.0.0/16".parse().unwrap(), Ipv4Addr::new(203, 0, 113, 1)))
            .unwrap();
        nat.set_filtering_policy(
            Protocol::Udp,
            Some(Arc::new(Allowlist { allowed: vec!["198.51.100.0/24".parse().unwrap()] })),
        );
        nat
    }

    #[test]
    fn allowed_prefix_gets_address_dependent_filtering() {
        // Existing session (port 53) in; another port of the same address in (ADF).
        assert_eq!(demo(&nat_with_allowlist(), Ipv4Addr::new(198, 51, 100, 7)), (true, true));
    }

    #[test]
    fn other_remotes_get_only_their_existing_session() {
        // The session the host opened still answers (filters only judge new remotes); the
        // remote's other port is refused by the allowlist.
        let nat = nat_with_allowlist();
        assert_eq!(demo(&nat, Ipv4Addr::new(203, 0, 113, 10)), (true, false));
        assert_eq!(nat.stats().dropped(netnat_engine::DropReason::Filtered), 1);
    }
}
