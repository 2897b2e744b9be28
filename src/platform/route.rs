//! The source address the kernel picks toward a destination, cached.
//!
//! The lookup asks the kernel itself: connecting an unbound UDP socket runs the routing
//! decision (the same one `ip route get` shows) and binds the preferred source address,
//! without sending anything. That costs a few system calls, so results are cached per
//! destination and thrown away when [`super::watch`] reports a route or address change (the
//! cache's generation moves on).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;

/// Most destinations kept; the cache is cleared when it grows beyond this.
const MAX_ENTRIES: usize = 1 << 16;

/// Asks the kernel which source address it would use toward `dst`; `None` when there is no
/// route.
pub fn source_toward(dst: Ipv4Addr) -> Option<Ipv4Addr> {
    let socket = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    // Port 9 (discard): any port works, nothing is sent.
    socket.connect(SocketAddrV4::new(dst, 9)).ok()?;
    match socket.local_addr().ok()? {
        SocketAddr::V4(a) if !a.ip().is_unspecified() => Some(*a.ip()),
        _ => None,
    }
}

/// A per-destination cache of [`source_toward`], invalidated by a generation counter.
#[derive(Debug, Default)]
pub struct RouteCache {
    generation: AtomicU64,
    entries: RwLock<(u64, HashMap<Ipv4Addr, Option<Ipv4Addr>>)>,
}

impl RouteCache {
    /// An empty cache.
    #[cfg(test)]
    pub fn new() -> Self {
        RouteCache::default()
    }

    /// Forgets every entry.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// The source toward `dst`, from the cache or the kernel.
    pub fn source_toward(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        let generation = self.generation.load(Ordering::Relaxed);
        {
            let entries = self.entries.read();
            if entries.0 == generation {
                if let Some(hit) = entries.1.get(&dst) {
                    return *hit;
                }
            }
        }
        let found = source_toward(dst);
        let mut entries = self.entries.write();
        if entries.0 != generation || entries.1.len() >= MAX_ENTRIES {
            entries.1.clear();
            entries.0 = generation;
        }
        entries.1.insert(dst, found);
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_reached_from_loopback() {
        assert_eq!(source_toward(Ipv4Addr::LOCALHOST), Some(Ipv4Addr::LOCALHOST));
        let cache = RouteCache::new();
        assert_eq!(cache.source_toward(Ipv4Addr::LOCALHOST), Some(Ipv4Addr::LOCALHOST));
        cache.invalidate();
        assert_eq!(cache.source_toward(Ipv4Addr::LOCALHOST), Some(Ipv4Addr::LOCALHOST));
    }
}
