//! Write a netnat filtering policy module in a few lines of Rust: a function from the
//! inbound packet's [`Inbound`] context to a [`Decision`], exported with
//! [`netnat_policy!`], built for `wasm32-unknown-unknown`. The module speaks netnat's policy
//! ABI version 1 (docs/policy-modules.md in the netnat repository); netnat runs it with
//! `--filter-policy module.wasm`.
//!
//! ```
//! use netnat_policy::{netnat_policy, Decision, Inbound, Protocol};
//!
//! fn decide(p: &Inbound) -> Decision {
//!     match p.protocol {
//!         Protocol::Udp if p.internal.port == 3478 => Decision::Allow,
//!         _ => Decision::Fallback,
//!     }
//! }
//! netnat_policy!(decide);
//! # assert_eq!(decide(&Inbound::example()), Decision::Fallback);
//! ```
//!
//! `no_std`, no allocation, no imports: the module netnat loads must import nothing. State
//! lives in `static` atomics or cells (netnat calls a module from one thread at a time).
#![no_std]

/// The ABI version this crate speaks.
pub const ABI_VERSION: i32 = 1;

/// TCP or UDP (netnat asks no policy about ICMP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// 6.
    Tcp,
    /// 17.
    Udp,
    /// Anything else (not sent by ABI 1).
    Other(u8),
}

impl Protocol {
    fn from_number(n: i32) -> Protocol {
        match n {
            6 => Protocol::Tcp,
            17 => Protocol::Udp,
            n => Protocol::Other(n as u8),
        }
    }
}

/// An IPv4 address and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The address, octets in order (198.51.100.7 is `[198, 51, 100, 7]`).
    pub addr: [u8; 4],
    /// The port.
    pub port: u16,
}

impl Endpoint {
    fn new(addr: i32, port: i32) -> Endpoint {
        Endpoint { addr: (addr as u32).to_be_bytes(), port: port as u16 }
    }

    /// Whether the address is in `prefix`.
    pub fn is_in(&self, prefix: Prefix) -> bool {
        prefix.contains(self.addr)
    }
}

/// An IPv4 prefix: `Prefix::new([198, 51, 100, 0], 24)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    addr: u32,
    len: u8,
}

impl Prefix {
    /// `addr`/`len` (`len` above 32 is taken as 32).
    pub const fn new(addr: [u8; 4], len: u8) -> Prefix {
        let len = if len > 32 { 32 } else { len };
        Prefix { addr: u32::from_be_bytes(addr) & Self::mask(len), len }
    }

    const fn mask(len: u8) -> u32 {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - len as u32)
        }
    }

    /// Whether `addr` is in it.
    pub const fn contains(&self, addr: [u8; 4]) -> bool {
        u32::from_be_bytes(addr) & Self::mask(self.len) == self.addr
    }
}

/// What the policy is asked about: an inbound packet from a remote without a live session
/// to an existing mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inbound {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The remote that sent the packet.
    pub remote: Endpoint,
    /// The mapping's internal endpoint.
    pub internal: Endpoint,
    /// The mapping's external endpoint (the packet's destination).
    pub external: Endpoint,
    /// The packet would open a new session.
    pub new_session: bool,
    /// The internal endpoint has a live session it sent on to the remote's address (what
    /// address-dependent filtering admits).
    pub sent_to_address: bool,
    /// ... to the remote's exact address and port (address-and-port-dependent filtering).
    pub sent_to_endpoint: bool,
    /// The TCP flags (0 for UDP).
    pub tcp_flags: u8,
    /// The packet's time in milliseconds (capture time in replay).
    pub now_ms: i64,
}

impl Inbound {
    /// Decodes the ABI's arguments.
    #[allow(clippy::too_many_arguments)]
    pub fn from_abi(
        protocol: i32,
        remote_addr: i32,
        remote_port: i32,
        internal_addr: i32,
        internal_port: i32,
        external_addr: i32,
        external_port: i32,
        flags: i32,
        now_ms: i64,
    ) -> Inbound {
        Inbound {
            protocol: Protocol::from_number(protocol),
            remote: Endpoint::new(remote_addr, remote_port),
            internal: Endpoint::new(internal_addr, internal_port),
            external: Endpoint::new(external_addr, external_port),
            new_session: flags & 1 != 0,
            sent_to_address: flags & 2 != 0,
            sent_to_endpoint: flags & 4 != 0,
            tcp_flags: (flags >> 8) as u8,
            now_ms,
        }
    }

    /// A sample context (UDP from 198.51.100.7:53 to 10.100.10.11:5000's mapping), for docs
    /// and tests.
    pub fn example() -> Inbound {
        Inbound {
            protocol: Protocol::Udp,
            remote: Endpoint { addr: [198, 51, 100, 7], port: 53 },
            internal: Endpoint { addr: [10, 100, 10, 11], port: 5000 },
            external: Endpoint { addr: [203, 0, 113, 1], port: 40000 },
            new_session: true,
            sent_to_address: false,
            sent_to_endpoint: false,
            tcp_flags: 0,
            now_ms: 0,
        }
    }
}

/// What the optional outbound hook is asked about: an internal endpoint's first packet out,
/// which would create its mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outbound {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The internal endpoint that would get a mapping.
    pub internal: Endpoint,
    /// The remote it sends to.
    pub remote: Endpoint,
    /// The TCP flags (0 for UDP).
    pub tcp_flags: u8,
    /// The packet's time in milliseconds.
    pub now_ms: i64,
}

impl Outbound {
    /// Decodes the ABI's arguments.
    pub fn from_abi(
        protocol: i32,
        internal_addr: i32,
        internal_port: i32,
        remote_addr: i32,
        remote_port: i32,
        tcp_flags: i32,
        now_ms: i64,
    ) -> Outbound {
        Outbound {
            protocol: Protocol::from_number(protocol),
            internal: Endpoint::new(internal_addr, internal_port),
            remote: Endpoint::new(remote_addr, remote_port),
            tcp_flags: tcp_flags as u8,
            now_ms,
        }
    }
}

/// A policy's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Let the NAT's own filtering behaviour decide.
    Fallback,
    /// Admit the packet (it opens a session, within the NAT's limits).
    Allow,
    /// Refuse it (counted as `policy_denied`).
    Deny,
    /// Refuse it as over a rate (counted as `policy_rate_limited`).
    RateLimited,
}

impl Decision {
    /// The ABI's answer.
    pub const fn to_abi(self) -> i32 {
        match self {
            Decision::Fallback => 0,
            Decision::Allow => 1,
            Decision::Deny => 2,
            Decision::RateLimited => 3,
        }
    }
}

/// Exports `netnat_abi_version` and `netnat_inbound` calling `$decide: fn(&Inbound) ->
/// Decision`, and a panic handler that traps (netnat counts a trap and handles it as the
/// policy file's `on_error` says). Use once, in a `cdylib` crate built for
/// `wasm32-unknown-unknown`.
///
/// `netnat_policy!(decide, outbound = may_map)` also exports `netnat_outbound`, asking
/// `may_map: fn(&Outbound) -> Decision` whether an internal endpoint may get a new mapping
/// (`Fallback` allows, as WinNAT does).
#[macro_export]
macro_rules! netnat_policy {
    ($decide:path, outbound = $outbound:path) => {
        $crate::netnat_policy!($decide);

        #[unsafe(no_mangle)]
        pub extern "C" fn netnat_outbound(
            protocol: i32,
            internal_addr: i32,
            internal_port: i32,
            remote_addr: i32,
            remote_port: i32,
            tcp_flags: i32,
            now_ms: i64,
        ) -> i32 {
            let outbound = $crate::Outbound::from_abi(
                protocol,
                internal_addr,
                internal_port,
                remote_addr,
                remote_port,
                tcp_flags,
                now_ms,
            );
            $outbound(&outbound).to_abi()
        }
    };
    ($decide:path) => {
        #[unsafe(no_mangle)]
        pub extern "C" fn netnat_abi_version() -> i32 {
            $crate::ABI_VERSION
        }

        #[unsafe(no_mangle)]
        #[allow(clippy::too_many_arguments)]
        pub extern "C" fn netnat_inbound(
            protocol: i32,
            remote_addr: i32,
            remote_port: i32,
            internal_addr: i32,
            internal_port: i32,
            external_addr: i32,
            external_port: i32,
            flags: i32,
            now_ms: i64,
        ) -> i32 {
            let inbound = $crate::Inbound::from_abi(
                protocol,
                remote_addr,
                remote_port,
                internal_addr,
                internal_port,
                external_addr,
                external_port,
                flags,
                now_ms,
            );
            $decide(&inbound).to_abi()
        }

        #[cfg(all(target_arch = "wasm32", not(test)))]
        #[panic_handler]
        fn panic(_: &core::panic::PanicInfo) -> ! {
            core::arch::wasm32::unreachable()
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_abi_decodes_as_netnat_encodes() {
        // 198.51.100.7:53 -> 203.0.113.1:40000 (10.100.10.11:5000), TCP SYN, sent to the address.
        let p = Inbound::from_abi(
            6,
            0xc633_6407u32 as i32,
            53,
            0x0a64_0a0b,
            5000,
            0xcb00_7101u32 as i32,
            40000,
            1 | 2 | (0x02 << 8),
            1234,
        );
        assert_eq!(p.protocol, Protocol::Tcp);
        assert_eq!(p.remote, Endpoint { addr: [198, 51, 100, 7], port: 53 });
        assert_eq!(p.internal, Endpoint { addr: [10, 100, 10, 11], port: 5000 });
        assert_eq!(p.external.addr, [203, 0, 113, 1]);
        assert!(p.new_session && p.sent_to_address && !p.sent_to_endpoint);
        assert_eq!((p.tcp_flags, p.now_ms), (0x02, 1234));
        assert_eq!(
            [Decision::Fallback, Decision::Allow, Decision::Deny, Decision::RateLimited].map(Decision::to_abi),
            [0, 1, 2, 3]
        );
    }

    #[test]
    fn the_outbound_abi_decodes_as_netnat_encodes() {
        let o = Outbound::from_abi(17, 0x0a64_0a0b, 5000, 0xc633_6407u32 as i32, 53, 0, 99);
        assert_eq!(
            (o.protocol, o.internal.port, o.remote.addr, o.now_ms),
            (Protocol::Udp, 5000, [198, 51, 100, 7], 99)
        );
    }

    mod with_outbound {
        use crate::{Decision, Inbound, Outbound};
        fn inbound(_: &Inbound) -> Decision {
            Decision::Fallback
        }
        fn outbound(o: &Outbound) -> Decision {
            if o.internal.port == 666 {
                Decision::Deny
            } else {
                Decision::Fallback
            }
        }
        crate::netnat_policy!(inbound, outbound = outbound);

        #[test]
        fn the_macro_exports_both_functions() {
            assert_eq!(netnat_abi_version(), 1);
            assert_eq!(netnat_outbound(17, 0x0a64_0a0b, 666, 0, 53, 0, 0), 2);
            assert_eq!(netnat_outbound(17, 0x0a64_0a0b, 667, 0, 53, 0, 0), 0);
            assert_eq!(netnat_inbound(17, 0, 53, 0, 5000, 0, 40000, 1, 0), 0);
        }
    }

    #[test]
    fn prefixes_contain_what_they_should() {
        let p = Prefix::new([198, 51, 100, 0], 25);
        assert!(p.contains([198, 51, 100, 127]) && !p.contains([198, 51, 100, 128]));
        assert!(Prefix::new([1, 2, 3, 4], 0).contains([9, 9, 9, 9]));
        assert!(
            Prefix::new([1, 2, 3, 4], 32).contains([1, 2, 3, 4])
                && !Prefix::new([1, 2, 3, 4], 40).contains([1, 2, 3, 5])
        );
    }
}
