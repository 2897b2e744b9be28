//! What netnat needs from the host operating system, kept small and behind `cfg`:
//! the source address the kernel would pick toward a destination ([`route`]), the host's
//! own addresses ([`addrs`]), a watcher that tells when those change ([`watch`]), and the
//! packet-diversion rules for NFQUEUE ([`rules`], Linux) and the events that tell when
//! someone else changes the ruleset (`ruleset_events`, Linux), the kernel's counters of those
//! queues (`nfqueue_stats`, Linux), the tc egress filter that keeps internal sources in when
//! netfilter is flushed (`leak_guard`, Linux), a raw socket to send packets
//! from the host (`raw`, Linux), and security descriptors for what the daemon creates
//! (`sddl`, pure; `win_security`, Windows), and the ownership and mode checks of the daemon's
//! own directories (`private_dir`, Unix).

// The live NAT runs on Linux and Windows; elsewhere these modules are compiled (and
// type-checked) but not called.
#![cfg_attr(not(any(target_os = "linux", windows)), allow(dead_code, unused_imports))]

pub mod addrs;
#[cfg(target_os = "linux")]
pub mod leak_guard;
pub mod nfqueue_stats;
pub mod ports;
#[cfg(unix)]
pub mod private_dir;
#[cfg(target_os = "linux")]
pub mod raw;
pub mod route;
#[cfg(target_os = "linux")]
pub mod rules;
#[cfg(target_os = "linux")]
pub mod ruleset_events;
#[cfg(any(windows, test))]
pub mod sddl;
pub mod watch;
#[cfg(windows)]
pub mod win_security;
