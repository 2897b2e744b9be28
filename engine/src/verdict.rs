//! What the engine tells its caller to do with a packet.

use serde::Serialize;

use crate::time::Instant;

/// Which way a packet crossed the NAT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Direction {
    /// From the internal prefix toward the outside: the source was translated.
    Outbound,
    /// From the outside to an external address: the destination was translated.
    Inbound,
    /// From an internal host to an external (address, port) of this NAT that maps to an
    /// internal endpoint: both source and destination were translated (RFC 4787 REQ-9).
    Hairpin,
}

/// The engine's decision for one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The packet was translated in place; send the first `len` bytes on.
    Forward {
        /// How the packet crossed the NAT.
        direction: Direction,
        /// Length of the translated packet (the NAT never changes it, but callers must not assume).
        len: usize,
    },
    /// Not the NAT's business (neither outbound from the internal prefix nor addressed to an
    /// external address): pass it on unchanged.
    Pass,
    /// A non-first fragment whose first fragment has not been seen yet: the engine keeps a
    /// copy and hands it back, translated, through `Nat::poll_released` once it can, with
    /// this id in [`crate::ReleasedPacket::held`] (so a caller that keeps what surrounds the
    /// packet, a frame's link header or a capture handle, finds it again exactly).
    Held(HeldId),
    /// Drop the packet; the reason has been counted.
    Drop(DropReason),
}

/// A fragment the engine held back (it came before its first fragment) and now releases,
/// translated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleasedPacket {
    /// How it crossed the NAT; `None`: not the NAT's business, unchanged.
    pub direction: Option<Direction>,
    /// The id `handle_packet` returned with [`Verdict::Held`] for it.
    pub held: HeldId,
    /// When it was handed to `handle_packet`.
    pub received: Instant,
    /// The translated packet.
    pub packet: Vec<u8>,
}

/// Names one fragment the engine held: unique per [`crate::Nat`] (a count from 0 in the
/// order fragments were held), so it is as deterministic as the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HeldId(pub u64);

macro_rules! drop_reasons {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// Why a packet was dropped. Every drop is counted under its reason.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum DropReason {
            $($(#[$doc])* $variant,)*
        }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];

            /// The reason's stable snake_case name, used in stats output.
            pub const fn name(self) -> &'static str {
                match self { $(DropReason::$variant => $name,)* }
            }

            /// Index into a counter array of `ALL.len()` entries.
            pub const fn index(self) -> usize {
                self as usize
            }
        }
    };
}

drop_reasons! {
    /// Shorter than its headers say, or shorter than a minimal header.
    Truncated => "truncated",
    /// An IPv4 header that is not one: wrong version, IHL below 5, total length below IHL.
    BadIpHeader => "bad_ip_header",
    /// A TCP data offset below 5 or beyond the packet, or a UDP length that does not fit.
    BadTransportHeader => "bad_transport_header",
    /// From inside to a destination that is never routed (0/8, 127/8, multicast 224/4,
    /// reserved 240/4 and the limited broadcast): passed on, it would leave with its internal
    /// source.
    UnroutableDestination => "unroutable_destination",
    /// An IP protocol the NAT cannot translate (neither TCP, UDP nor ICMP).
    UnsupportedProtocol => "unsupported_protocol",
    /// An ICMP type the NAT does not translate (e.g. an outbound router advertisement).
    UnsupportedIcmp => "unsupported_icmp",
    /// An ICMP error whose ICMP checksum is wrong (RFC 5508 REQ-3).
    BadIcmpChecksum => "bad_icmp_checksum",
    /// An ICMP error whose embedded packet cannot be parsed (too short, bad IHL).
    BadEmbeddedPacket => "bad_embedded_packet",
    /// An ICMP error whose embedded packet matches no session (RFC 5508 REQ-4/5).
    IcmpErrorNoSession => "icmp_error_no_session",
    /// Inbound to an external address with no mapping and no static mapping.
    NoMapping => "no_mapping",
    /// A mapping exists but the filtering behaviour does not admit this remote.
    Filtered => "filtered",
    /// A static mapping exists but the remote is outside its RemoteExternalIPAddressPrefix.
    RemoteNotAllowed => "remote_not_allowed",
    /// No free external port for a new mapping.
    PortsExhausted => "ports_exhausted",
    /// The NAT holds its maximum number of sessions.
    SessionLimit => "session_limit",
    /// The internal host holds its maximum number of sessions.
    HostSessionLimit => "host_session_limit",
    /// A non-first fragment could not be held: the fragment buffer is full.
    FragmentBufferFull => "fragment_buffer_full",
    /// A held fragment whose first fragment never came in time.
    FragmentTimeout => "fragment_timeout",
    /// A non-first fragment of a datagram whose first fragment was dropped.
    FragmentOfDropped => "fragment_of_dropped",
    /// A TCP RST or FIN on a session whose sequence number lies outside the window tracked
    /// for its sender (RFC 5961: a blind reset or close); the session is left as it was.
    TcpOutOfWindow => "tcp_out_of_window",
    /// An inbound TCP segment other than a SYN to a static mapping, from a remote without a
    /// session: a port forward opens connections only with a SYN.
    TcpNoSession => "tcp_no_session",
    /// Inbound packets already opened `Limits::max_inbound_sessions_per_mapping` sessions on
    /// this dynamic mapping.
    InboundSessionLimit => "inbound_session_limit",
    /// A deny rule of the NAT's filtering policy matched (`NatConfig::filter_policy`).
    PolicyDenied => "policy_denied",
    /// The filtering policy's rate limit for the internal host was used up.
    PolicyRateLimited => "policy_rate_limited",
    /// The filtering policy could not decide (a policy module trapped, ran out of fuel or
    /// answered nonsense) and is set to deny then.
    PolicyFailed => "policy_failed",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_have_unique_names_and_dense_indexes() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::ALL.len());
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
