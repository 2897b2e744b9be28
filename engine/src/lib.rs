//! netnat-engine: a sans-IO NAT44 translation engine with the semantics of Windows NAT
//! (WinNAT, the `NetNat` PowerShell module).
//!
//! What it does: given IPv4 packets and the time, it translates them in place (endpoint-
//! independent mapping, WinNAT's filtering and timers, ICMP error translation, static
//! mappings, hairpinning, fragments) and says what to do with each ([`Verdict`]). Filtering
//! can be refined by a policy: ordered allow/deny rules and per-host inbound rate limits
//! ([`policy`]).
//! What it does not do: open sockets, read a clock, draw OS entropy or spawn threads. The
//! caller captures packets, passes the time in and sends what the engine forwards.
//!
//! Read first: RFC 4787 (UDP), RFC 5382 (TCP), RFC 5508 (ICMP), RFC 7857 (updates),
//! RFC 6056 (port randomisation), RFC 1624 (incremental checksums).
//!
//! ```
//! use netnat_engine::{Nat, NatConfig, Instant, Verdict, Direction};
//! let nat = Nat::new(NatConfig::new("WinNAT", "10.100.0.0/16".parse().unwrap(),
//!     "203.0.113.1".parse().unwrap())).unwrap();
//! // A UDP packet 10.100.10.11:5000 -> 198.51.100.7:53 with no UDP checksum.
//! let mut pkt = [
//!     0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 10, 100, 10, 11, 198, 51, 100, 7,
//!     0x13, 0x88, 0, 53, 0, 8, 0, 0,
//! ];
//! netnat_engine::wire::ipv4::fill_checksum(&mut pkt);
//! let verdict = nat.handle_packet(Instant::from_secs(1), &mut pkt);
//! assert!(matches!(verdict, Verdict::Forward { direction: Direction::Outbound, .. }));
//! assert_eq!(&pkt[12..16], &[203, 0, 113, 1]);
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod events;
pub mod filter;
mod nat;
pub mod policy;
pub mod session;
pub mod stats;
pub mod time;
pub mod verdict;
pub mod wire;
mod worker;

pub use config::{
    ConfigError, ExternalAddress, FilteringBehavior, HairpinningMode, Limits, NatConfig, PortAllocation, Protocol,
    StaticMapping, Timeouts, UnmatchedInbound,
};
pub use events::{EndReason, Event, EventKind};
pub use filter::{FilteringPolicy, InboundContext, OutboundContext, Refusal};
pub use nat::Nat;
pub use session::{MappingInfo, SessionCounts, SessionInfo, TcpState};
pub use stats::Stats;
pub use time::{Duration, Instant};
pub use verdict::{Direction, DropReason, HeldId, ReleasedPacket, Verdict};
pub use worker::{Worker, FLUSH_EVERY};

mod alloc;
mod endpoint;
mod fragments;
mod icmp_error;
mod mapping_sessions;
mod ports;
mod rewrite;
mod settings;
mod shard_lock;
mod table;
mod tcp_state;
mod translate;

#[cfg(test)]
mod tests;
