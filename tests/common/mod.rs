//! Shared helpers of the scenario tests: a packet builder, pcap files, an independent
//! checksum validator and a runner for the real `netnat replay` binary.
//!
//! Every scenario runs the NAT of design §3.1: internal prefix 10.100.0.0/16, external
//! address 203.0.113.1; remotes live in 198.51.100.0/24 and 203.0.113.0/24.
//! `Scenario::run` validates every output packet's checksums, so every test does.

// Each test binary uses a different subset of the helpers.
#![allow(dead_code)]

pub mod check;
#[cfg(target_os = "linux")]
pub mod nfdump;
pub mod packet;
pub mod pcap;
pub mod run;
pub mod skip;

#[allow(unused_imports)]
pub use packet::*;
#[allow(unused_imports)]
pub use pcap::{Format, Link, Rec};
#[allow(unused_imports)]
pub use run::{secs, ts, Outcome, Scenario};

/// The NAT's external address.
pub const EXT: &str = "203.0.113.1";
