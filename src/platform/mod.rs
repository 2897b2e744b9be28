//! What netnat needs from the host operating system, kept small and behind `cfg`:
//! the source address the kernel would pick toward a destination ([`route`]), the host's
//! own addresses ([`addrs`]), a watcher that tells when those change ([`watch`]), and the
//! packet-diversion rules for NFQUEUE ([`rules`], Linux).

pub mod addrs;
pub mod route;
#[cfg(target_os = "linux")]
pub mod rules;
pub mod watch;
