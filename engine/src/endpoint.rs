//! The three roles an (address, port) pair plays on the packet path, as types of their own,
//! so that a function taking an internal host and a remote cannot be handed them the other
//! way round. Each is (IPv4 address as a host-order `u32`, port or ICMP identifier).
//!
//! Where a role really changes hands it is converted by name: in a hairpin, the external
//! endpoint of the sending host acts as the remote of the session toward the target host
//! ([`Outside::as_remote`]); an ICMP error's embedded packet is read from the side it
//! travelled.

use std::net::SocketAddrV4;

macro_rules! endpoint {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub(crate) struct $name(
            /// The IPv4 address, host order.
            pub(crate) u32,
            /// The port (ICMP: the identifier).
            pub(crate) u16,
        );

        impl $name {
            /// As a socket address (what policies and events carry).
            #[inline]
            pub(crate) fn socket_addr(self) -> SocketAddrV4 {
                SocketAddrV4::new(self.0.into(), self.1)
            }
        }
    };
}

endpoint!(
    /// An internal host's endpoint: a source inside the prefix, or the target of an inbound
    /// session.
    Inside
);
endpoint!(
    /// An external endpoint of the NAT: one of its external addresses and a port it maps.
    Outside
);
endpoint!(
    /// A remote host's endpoint: the far side of a session.
    Remote
);

impl Outside {
    /// This external endpoint as the remote of a session: a hairpinned packet reaches its
    /// target from the sender's external endpoint (RFC 4787 REQ-9).
    #[inline]
    pub(crate) fn as_remote(self) -> Remote {
        Remote(self.0, self.1)
    }
}
