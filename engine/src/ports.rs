//! The external index: for each external address, a table indexed directly by (protocol,
//! port or ICMP identifier) holding the internal key of the mapping that owns that external
//! endpoint (0: free).
//!
//! Why not a hash map: an inbound packet finds its mapping's internal key with one atomic
//! load from a slot it computes from the port: no hash, no lock, nothing written, so two
//! threads reading the same slots share their cache lines. The inbound path then costs one
//! shard lock (the mapping's, in `by_internal`), as the outbound path does. A sharded map
//! here cost a second shard lock per inbound packet (62 ns against 39 ns outbound, see
//! BENCHMARKS.md). The price is 1.5 MiB per external address (3 protocols x 65 536 ports x
//! 8 bytes), allocated when the address is first configured; a NAT has a handful.
//!
//! Claims and releases are compare-and-swap, so a slot has one owner at a time. Writers
//! claim a slot while holding the `by_internal` shard of the new mapping (its vacant entry)
//! and release it while holding the shard of the mapping being removed, so a reader that
//! finds a key and then locks that shard sees the mapping or its absence, never half of it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::config::Protocol;

const PORTS: usize = 1 << 16;

fn slot(proto: Protocol, port: u16) -> usize {
    let p = match proto {
        Protocol::Tcp => 0,
        Protocol::Udp => 1,
        Protocol::Icmp => 2,
    };
    p * PORTS + usize::from(port)
}

/// The owners of one external address's ports.
pub(crate) struct PortTable {
    pub addr: u32,
    slots: Box<[AtomicU64]>,
}

impl core::fmt::Debug for PortTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PortTable").field("addr", &std::net::Ipv4Addr::from(self.addr)).finish_non_exhaustive()
    }
}

impl PortTable {
    fn new(addr: u32) -> PortTable {
        PortTable { addr, slots: (0..3 * PORTS).map(|_| AtomicU64::new(0)).collect() }
    }

    /// The internal key of the mapping that owns (`proto`, `port`) on this address.
    #[inline]
    pub(crate) fn owner(&self, proto: Protocol, port: u16) -> Option<u64> {
        let v = self.slots[slot(proto, port)].load(Ordering::Acquire);
        (v != 0).then_some(v)
    }

    /// Makes internal key `ik` (never 0) the owner of a free slot; false if it has one.
    pub(crate) fn claim(&self, proto: Protocol, port: u16, ik: u64) -> bool {
        debug_assert_ne!(ik, 0);
        self.slots[slot(proto, port)].compare_exchange(0, ik, Ordering::AcqRel, Ordering::Relaxed).is_ok()
    }

    /// Frees the slot if `ik` owns it.
    pub(crate) fn release(&self, proto: Protocol, port: u16, ik: u64) {
        let _ = self.slots[slot(proto, port)].compare_exchange(ik, 0, Ordering::AcqRel, Ordering::Relaxed);
    }
}

/// Every external address's port table this NAT ever configured. An address removed from the
/// configuration keeps its table (its mappings are purged), so a worker still holding the old
/// settings and the next configuration that adds it back agree on the owners.
#[derive(Debug, Default)]
pub(crate) struct ExternalIndex {
    tables: RwLock<Vec<Arc<PortTable>>>,
}

impl ExternalIndex {
    /// The table of `addr`, created on first use.
    pub(crate) fn table_for(&self, addr: u32) -> Arc<PortTable> {
        if let Some(t) = self.get(addr) {
            return t;
        }
        let mut tables = self.tables.write();
        if let Some(t) = tables.iter().find(|t| t.addr == addr) {
            return t.clone();
        }
        let t = Arc::new(PortTable::new(addr));
        tables.push(t.clone());
        t
    }

    /// The table of `addr`, if it was ever configured.
    pub(crate) fn get(&self, addr: u32) -> Option<Arc<PortTable>> {
        self.tables.read().iter().find(|t| t.addr == addr).cloned()
    }

    /// All tables (for sweeps, which release many slots).
    pub(crate) fn all(&self) -> Vec<Arc<PortTable>> {
        self.tables.read().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_owner_per_slot_and_protocols_are_separate() {
        let index = ExternalIndex::default();
        let t = index.table_for(0xcb00_7101);
        assert!(Arc::ptr_eq(&t, &index.table_for(0xcb00_7101)));
        assert!(t.claim(Protocol::Udp, 40000, 7));
        assert!(!t.claim(Protocol::Udp, 40000, 8));
        assert!(t.claim(Protocol::Tcp, 40000, 8));
        assert_eq!(t.owner(Protocol::Udp, 40000), Some(7));
        assert_eq!(t.owner(Protocol::Icmp, 40000), None);
        t.release(Protocol::Udp, 40000, 8); // not the owner: nothing happens
        assert_eq!(t.owner(Protocol::Udp, 40000), Some(7));
        t.release(Protocol::Udp, 40000, 7);
        assert_eq!(t.owner(Protocol::Udp, 40000), None);
        assert!(t.claim(Protocol::Icmp, u16::MAX, 9));
        assert!(index.get(0xcb00_7102).is_none());
        assert_eq!(index.all().len(), 1);
    }
}
