//! The session snapshot: one row per session with the NetNatSession properties, plus what the
//! table already keeps of each session's timer and TCP state (netnat's `-Detailed` rows).
//! Reading them costs the listing, never the packet path: no counter was added for them.

use std::net::Ipv4Addr;

use crate::config::Protocol;
use crate::time::{Duration, Instant};

/// One active session, as `Get-NetNatSession` shows it. For outbound-initiated sessions the
/// internal destination equals the external destination (the remote); for hairpinned ones the
/// internal destination is the other internal host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// NatName.
    pub nat_name: String,
    /// Protocol, as the IP protocol number (1 ICMP, 6 TCP, 17 UDP).
    pub protocol: u8,
    /// CreationTime, on the caller's clock.
    pub creation_time: Instant,
    /// InternalSourceAddress.
    pub internal_source_address: Ipv4Addr,
    /// InternalSourcePort (the ICMP identifier for ICMP).
    pub internal_source_port: u16,
    /// InternalDestinationAddress.
    pub internal_destination_address: Ipv4Addr,
    /// InternalDestinationPort.
    pub internal_destination_port: u16,
    /// ExternalSourceAddress: the address the remote sees.
    pub external_source_address: Ipv4Addr,
    /// ExternalSourcePort (the translated ICMP identifier for ICMP).
    pub external_source_port: u16,
    /// ExternalDestinationAddress.
    pub external_destination_address: Ipv4Addr,
    /// ExternalDestinationPort.
    pub external_destination_port: u16,
    /// When a packet last restarted its idle timer (up to 1 ms stale: the packet path skips
    /// the write within that time).
    pub last_seen: Instant,
    /// The idle timeout that applies to it now (for TCP it depends on `tcp_state`).
    pub timeout: Duration,
    /// What the NAT has seen of the TCP connection; `None` for UDP and ICMP.
    pub tcp_state: Option<TcpState>,
    /// Created by an inbound packet (a static mapping, or a remote admitted by filtering)
    /// rather than by the internal host.
    pub opened_inbound: bool,
    /// Its packets and bytes each way, when the NAT counts them
    /// (`NatConfig::session_counters`).
    pub counters: Option<SessionCounts>,
}

/// A session's traffic since it was created: packets, and bytes of IPv4 total length, out
/// (from the internal host) and in (to it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionCounts {
    /// Packets from the internal host.
    pub packets_out: u64,
    /// Packets to the internal host.
    pub packets_in: u64,
    /// Their bytes.
    pub bytes_out: u64,
    /// Their bytes.
    pub bytes_in: u64,
}

impl SessionInfo {
    /// How long it has been idle at `now`.
    pub fn idle(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_seen)
    }

    /// How long until it expires at `now` if no packet comes (zero once expired; an expired
    /// session stays listed until the sweep reaches it).
    pub fn time_left(&self, now: Instant) -> Duration {
        self.timeout.saturating_sub(self.idle(now))
    }
}

/// The TCP states the NAT tells apart (it follows flags, not the full RFC 793 machine): enough
/// to choose between TcpTransientConnectionTimeout and TcpEstablishedConnectionTimeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcpState {
    /// No handshake seen completing yet (also a flow picked up mid-way): transient timer.
    Opening,
    /// Handshake completed, no FIN or RST: established timer.
    Established,
    /// Established, FIN seen in one direction: still the established timer.
    Closing,
    /// FIN seen in both directions: transient timer.
    Closed,
    /// RST seen: transient timer.
    Reset,
}

impl TcpState {
    /// Every state, in the order above.
    pub const ALL: [TcpState; 5] =
        [TcpState::Opening, TcpState::Established, TcpState::Closing, TcpState::Closed, TcpState::Reset];

    /// Its stable name (`Opening`, `Established`, ...).
    pub fn name(self) -> &'static str {
        match self {
            TcpState::Opening => "Opening",
            TcpState::Established => "Established",
            TcpState::Closing => "Closing",
            TcpState::Closed => "Closed",
            TcpState::Reset => "Reset",
        }
    }
}

/// One endpoint-independent mapping (an external port in use) with its session count, as
/// [`crate::Nat::for_each_mapping`] shows it: for port-use summaries without listing sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MappingInfo {
    /// Its protocol.
    pub protocol: Protocol,
    /// The internal endpoint.
    pub internal_address: Ipv4Addr,
    /// The internal port (ICMP identifier).
    pub internal_port: u16,
    /// The external endpoint the remotes see.
    pub external_address: Ipv4Addr,
    /// The external port (ICMP identifier).
    pub external_port: u16,
    /// Its sessions (remotes).
    pub sessions: usize,
    /// Created by a static mapping.
    pub from_static: bool,
}

#[cfg(test)]
mod tests {
    use crate::tests::{config, echo_reply, echo_request, forward, nat, tcp, udp, EXT, INSIDE_A, INSIDE_B, WAN1};
    use crate::{Direction, Duration, Instant, Nat, Protocol, SessionCounts, TcpState};

    /// With `session_counters`, each session counts its packets and IPv4 bytes each way
    /// (UDP with and without inbound refresh, TCP, ICMP echo); without, rows have no counts.
    #[test]
    fn counted_sessions_count_packets_and_bytes_each_way() {
        let mut c = config();
        c.session_counters = true;
        let nat = Nat::new(c).unwrap();
        let mut q = udp(INSIDE_A, 5000, WAN1, 53);
        q.extend_from_slice(&[0; 12]); // 40 bytes; the header's lengths are fixed below
        q[3] = 40;
        q[25] = 20;
        crate::wire::ipv4::fill_checksum(&mut q);
        q[26..28].fill(0); // no UDP checksum
        let ext = forward(&nat, 1.0, q.clone(), Direction::Outbound).sport;
        forward(&nat, 1.1, q.clone(), Direction::Outbound);
        forward(&nat, 1.2, udp(WAN1, 53, EXT, ext), Direction::Inbound);
        let t = forward(&nat, 2.0, tcp(INSIDE_B, 6000, WAN1, 80, "S"), Direction::Outbound);
        forward(&nat, 2.1, tcp(WAN1, 80, EXT, t.sport, "SA"), Direction::Inbound);
        let e = forward(&nat, 3.0, echo_request(INSIDE_A, WAN1, 77, 1), Direction::Outbound);
        forward(&nat, 3.1, echo_reply(WAN1, EXT, e.sport, 1), Direction::Inbound);
        let rows = nat.sessions();
        let of = |proto: u8| rows.iter().find(|r| r.protocol == proto).unwrap().counters.unwrap();
        let len = |p: Vec<u8>| p.len() as u64;
        let reply = len(udp(WAN1, 53, EXT, ext));
        assert_eq!(of(17), SessionCounts { packets_out: 2, packets_in: 1, bytes_out: 80, bytes_in: reply });
        let (syn, syn_ack) = (len(tcp(INSIDE_B, 6000, WAN1, 80, "S")), len(tcp(WAN1, 80, EXT, t.sport, "SA")));
        assert_eq!(of(6), SessionCounts { packets_out: 1, packets_in: 1, bytes_out: syn, bytes_in: syn_ack });
        let icmp = of(1);
        assert_eq!((icmp.packets_out, icmp.packets_in), (1, 1));
        assert_eq!(icmp.bytes_out, icmp.bytes_in);

        let plain = nat_with_traffic();
        assert!(plain.sessions().iter().all(|r| r.counters.is_none()), "off by default");
    }

    fn nat_with_traffic() -> Nat {
        let nat = nat();
        forward(&nat, 1.0, udp(INSIDE_A, 5000, WAN1, 53), Direction::Outbound);
        nat
    }

    /// The listing carries each session's timer and TCP state as the table holds them, and
    /// the mapping walk counts ports and sessions without listing them.
    #[test]
    fn sessions_show_their_timer_and_tcp_state_and_mappings_their_sessions() {
        let nat = nat();
        forward(&nat, 1.0, udp(INSIDE_A, 5000, WAN1, 53), Direction::Outbound);
        forward(&nat, 2.0, udp(INSIDE_A, 5000, [203, 0, 113, 11], 53), Direction::Outbound);
        let out = forward(&nat, 3.0, tcp(INSIDE_B, 6000, WAN1, 80, "S"), Direction::Outbound);
        let mut syn_ack = tcp(WAN1, 80, EXT, out.sport, "SA");
        assert!(matches!(nat.handle_packet(Instant::from_secs(4), &mut syn_ack), crate::Verdict::Forward { .. }));
        forward(&nat, 5.0, tcp(INSIDE_B, 6000, WAN1, 80, "A"), Direction::Outbound);

        let rows = nat.sessions();
        let udp_row = rows
            .iter()
            .find(|r| r.protocol == 17 && r.external_destination_address == std::net::Ipv4Addr::from(WAN1))
            .unwrap();
        assert_eq!(
            (udp_row.last_seen, udp_row.timeout, udp_row.tcp_state),
            (Instant::from_secs(1), Duration::from_secs(120), None)
        );
        assert!(!udp_row.opened_inbound);
        let now = Instant::from_secs(31);
        assert_eq!((udp_row.idle(now), udp_row.time_left(now)), (Duration::from_secs(30), Duration::from_secs(90)));
        assert_eq!(udp_row.time_left(Instant::from_secs(500)), Duration::ZERO);
        let tcp_row = rows.iter().find(|r| r.protocol == 6).unwrap();
        assert_eq!(tcp_row.tcp_state, Some(TcpState::Established));
        assert_eq!((tcp_row.last_seen, tcp_row.timeout), (Instant::from_secs(5), Duration::from_secs(1800)));

        let mut mappings = Vec::new();
        nat.for_each_mapping(|m| mappings.push(*m));
        mappings.sort_by_key(|m| m.internal_port);
        assert_eq!(mappings.len(), 2, "{mappings:?}");
        assert_eq!((mappings[0].protocol, mappings[0].sessions), (Protocol::Udp, 2));
        assert_eq!((mappings[1].protocol, mappings[1].sessions), (Protocol::Tcp, 1));
        assert_eq!(mappings[1].external_address, std::net::Ipv4Addr::from(EXT));
    }

    #[test]
    fn tcp_states_follow_the_flags() {
        use crate::tcp_state::TcpTrack;
        let state = |steps: &[(bool, &str)]| {
            let mut t = TcpTrack::default();
            for (outbound, flags) in steps {
                let bits = flags.chars().fold(0u8, |b, f| {
                    b | match f {
                        'S' => crate::wire::tcp::SYN,
                        'A' => crate::wire::tcp::ACK,
                        'F' => crate::wire::tcp::FIN,
                        'R' => crate::wire::tcp::RST,
                        _ => 0,
                    }
                });
                t.on_packet(*outbound, bits);
            }
            t.state()
        };
        assert_eq!(state(&[(true, "S")]), TcpState::Opening);
        assert_eq!(state(&[(true, "A")]), TcpState::Opening, "picked up mid-flow");
        let open = [(true, "S"), (false, "SA"), (true, "A")];
        assert_eq!(state(&open), TcpState::Established);
        assert_eq!(state(&[open[0], open[1], open[2], (true, "FA")]), TcpState::Closing);
        assert_eq!(state(&[open[0], open[1], open[2], (true, "FA"), (false, "FA")]), TcpState::Closed);
        assert_eq!(state(&[open[0], open[1], open[2], (false, "R")]), TcpState::Reset);
        assert_eq!(TcpState::ALL.map(TcpState::name), ["Opening", "Established", "Closing", "Closed", "Reset"]);
    }
}
