//! What netnat needs from the host operating system, kept small and behind `cfg`:
//! the source address the kernel would pick toward a destination ([`route`]), the host's
//! own addresses ([`addrs`]), a watcher that tells when those change ([`watch`]), and the
//! packet-diversion rules for NFQUEUE ([`rules`], Linux), and a raw socket to send packets
//! from the host (`raw`, Linux).

// The live NAT runs on Linux only for now; elsewhere these modules are compiled (and
// type-checked) but not yet called.
#![cfg_attr(not(target_os = "linux"), allow(dead_code, unused_imports))]

pub mod addrs;
#[cfg(target_os = "linux")]
pub mod raw;
pub mod route;
#[cfg(target_os = "linux")]
pub mod rules;
pub mod watch;
