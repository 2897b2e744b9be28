//! One mapping's sessions, one per remote endpoint: a short list, or maps keyed by remote
//! endpoint and by remote address (see [`LINEAR_SESSIONS`]).
//!
//! Why two maps in a crowded mapping: an established packet finds its session by (address,
//! port), and address-dependent filtering asks whether the internal endpoint has sent to an
//! address at all. Answering that by walking the mapping let one outside packet cost a walk of
//! its victim's sessions (up to the per-host cap, 8192); with the address index it costs the
//! sessions of the sender's own address.

use std::collections::HashMap;

use smallvec::SmallVec;

use crate::table::{Hasher, Session};

/// Sessions of a mapping holding at most this many are kept in a list and found by a scan:
/// one or a few remotes per internal endpoint is the common case, and a scan of a few
/// 24-byte entries costs less than hashing. Beyond it they move to hash maps, so a mapping
/// with 10 K remotes costs a packet what a mapping with one does (BENCHMARKS.md, "One
/// crowded mapping").
pub(crate) const LINEAR_SESSIONS: usize = 8;

/// A remote endpoint as a hash key.
fn remote_key(addr: u32, port: u16) -> u64 {
    (u64::from(addr) << 16) | u64::from(port)
}

#[cfg(test)]
thread_local! {
    /// Counts the work of this thread's session lookups in tests: entries compared or
    /// visited, or one per hash lookup.
    pub(crate) static LOOKUP_STEPS: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
}

#[inline(always)]
fn count_step(_n: usize) {
    #[cfg(test)]
    LOOKUP_STEPS.with(|c| c.set(c.get() + _n));
}

/// A mapping's sessions: a list up to [`LINEAR_SESSIONS`], maps beyond.
#[derive(Debug)]
pub(crate) enum Sessions {
    Few(SmallVec<[Session; 1]>),
    /// Boxed: the maps with their hashers are over 100 bytes, which every mapping would
    /// carry inline.
    Many(Box<Crowded>),
}

/// The sessions of a crowded mapping.
#[derive(Debug)]
pub(crate) struct Crowded {
    by_remote: HashMap<u64, Session, Hasher>,
    /// The remote ports of the sessions at each remote address (most remotes use one port).
    ports_by_addr: HashMap<u32, SmallVec<[u16; 8]>, Hasher>,
}

impl Crowded {
    fn with_capacity(n: usize, hasher: &Hasher) -> Crowded {
        Crowded {
            by_remote: HashMap::with_capacity_and_hasher(n, hasher.clone()),
            ports_by_addr: HashMap::with_capacity_and_hasher(n, hasher.clone()),
        }
    }

    fn insert(&mut self, session: Session) -> &mut Session {
        self.ports_by_addr.entry(session.remote_addr).or_default().push(session.remote_port);
        let k = remote_key(session.remote_addr, session.remote_port);
        self.by_remote.entry(k).insert_entry(session).into_mut()
    }
}

impl Sessions {
    pub(crate) fn one(first: Session) -> Sessions {
        Sessions::Few(smallvec::smallvec![first])
    }

    pub(crate) fn empty() -> Sessions {
        Sessions::Few(SmallVec::new())
    }

    #[inline(always)]
    pub(crate) fn find(&self, addr: u32, port: u16) -> Option<&Session> {
        match self {
            Sessions::Few(v) => {
                let found = v.iter().position(|s| s.remote_addr == addr && s.remote_port == port);
                count_step(found.map_or(v.len(), |i| i + 1));
                found.map(|i| &v[i])
            }
            Sessions::Many(m) => {
                count_step(1);
                m.by_remote.get(&remote_key(addr, port))
            }
        }
    }

    pub(crate) fn find_mut(&mut self, addr: u32, port: u16) -> Option<&mut Session> {
        match self {
            Sessions::Few(v) => {
                let found = v.iter().position(|s| s.remote_addr == addr && s.remote_port == port);
                count_step(found.map_or(v.len(), |i| i + 1));
                found.map(|i| &mut v[i])
            }
            Sessions::Many(m) => {
                count_step(1);
                m.by_remote.get_mut(&remote_key(addr, port))
            }
        }
    }

    /// The sessions with remotes at `addr`: a scan of the list, or the address index (one
    /// lookup, then the sessions of that address only).
    pub(crate) fn at_address(&self, addr: u32) -> impl Iterator<Item = &Session> {
        let (few, many) = match self {
            Sessions::Few(v) => {
                (Some(v.iter().inspect(|_| count_step(1)).filter(move |s| s.remote_addr == addr)), None)
            }
            Sessions::Many(m) => {
                count_step(1);
                let ports = m.ports_by_addr.get(&addr).map(|p| p.iter()).into_iter().flatten();
                (
                    None,
                    Some(ports.filter_map(move |&p| m.by_remote.get(&remote_key(addr, p))).inspect(|_| count_step(1))),
                )
            }
        };
        few.into_iter().flatten().chain(many.into_iter().flatten())
    }

    /// Adds a session for a remote that has none here; moves to maps past `LINEAR_SESSIONS`
    /// (seeded with `hasher`, which an outside sender cannot predict).
    pub(crate) fn insert(&mut self, session: Session, hasher: &Hasher) -> &mut Session {
        if let Sessions::Few(v) = self {
            if v.len() >= LINEAR_SESSIONS {
                let mut m = Crowded::with_capacity(2 * LINEAR_SESSIONS, hasher);
                for s in v.drain(..) {
                    m.insert(s);
                }
                *self = Sessions::Many(Box::new(m));
            }
        }
        match self {
            Sessions::Few(v) => {
                v.push(session);
                let last = v.len() - 1;
                &mut v[last]
            }
            Sessions::Many(m) => m.insert(session),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Sessions::Few(v) => v.len(),
            Sessions::Many(m) => m.by_remote.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every session (a walk of the mapping: for listings and sweeps, not for packets).
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Session> {
        let (few, many) = match self {
            Sessions::Few(v) => (Some(v.iter()), None),
            Sessions::Many(m) => (None, Some(m.by_remote.values())),
        };
        few.into_iter().flatten().chain(many.into_iter().flatten()).inspect(|_| count_step(1))
    }

    /// Keeps the sessions for which `keep` says so; maps that shrank back to a few go back
    /// to a list (half the threshold, so a mapping at the edge does not flip every sweep).
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&Session) -> bool) {
        match self {
            Sessions::Few(v) => v.retain(|s| keep(s)),
            Sessions::Many(m) => {
                let Crowded { by_remote, ports_by_addr } = &mut **m;
                by_remote.retain(|_, s| {
                    let kept = keep(s);
                    if !kept {
                        forget_port(ports_by_addr, s.remote_addr, s.remote_port);
                    }
                    kept
                });
                if by_remote.len() <= LINEAR_SESSIONS / 2 {
                    *self = Sessions::Few(by_remote.drain().map(|(_, s)| s).collect());
                }
            }
        }
    }
}

/// Removes one remote port from the address index (the address with it once none is left).
fn forget_port(index: &mut HashMap<u32, SmallVec<[u16; 8]>, Hasher>, addr: u32, port: u16) {
    if let Some(ports) = index.get_mut(&addr) {
        if let Some(i) = ports.iter().position(|&p| p == port) {
            ports.swap_remove(i);
        }
        if ports.is_empty() {
            index.remove(&addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::time::Instant;

    fn hasher() -> Hasher {
        ahash::RandomState::with_seeds(1, 2, 3, 4)
    }

    fn steps() -> usize {
        LOOKUP_STEPS.with(|c| c.get())
    }

    proptest! {
        /// The list-or-maps container against a plain map of remotes, across the threshold
        /// both ways; the address index lists exactly the remotes at each address.
        #[test]
        fn sessions_behave_as_a_map_of_remotes(ops in proptest::collection::vec((0u8..3, 0u32..40), 1..300)) {
            let h = hasher();
            let mut sessions = Sessions::empty();
            let mut model = std::collections::BTreeSet::new();
            for (op, r) in ops {
                let (addr, port) = (0xc633_6400 + r / 4, (r % 4) as u16);
                match op {
                    0 if !model.contains(&r) => {
                        sessions.insert(Session::new(addr, port, true, Instant::ZERO), &h);
                        model.insert(r);
                    }
                    1 => {
                        // Removes the remotes of one residue class.
                        sessions.retain(|s| (s.remote_addr + u32::from(s.remote_port)) % 3 != r % 3);
                        model.retain(|&m| (0xc633_6400 + m / 4 + m % 4) % 3 != r % 3);
                    }
                    _ => {}
                }
                prop_assert_eq!(sessions.len(), model.len());
                prop_assert_eq!(sessions.find(addr, port).is_some(), model.contains(&r));
                prop_assert_eq!(sessions.iter().count(), model.len());
                let mut at: Vec<u16> = sessions.at_address(addr).map(|s| s.remote_port).collect();
                at.sort_unstable();
                let expected: Vec<u16> =
                    model.iter().filter(|&&m| m / 4 == r / 4).map(|&m| (m % 4) as u16).collect();
                prop_assert_eq!(at, expected);
                let many = matches!(sessions, Sessions::Many(_));
                prop_assert!(!many || sessions.len() > LINEAR_SESSIONS / 2, "a small map goes back to a list");
                prop_assert!(many || sessions.len() <= LINEAR_SESSIONS, "a long list becomes a map");
            }
        }
    }

    #[test]
    fn a_lookup_in_a_crowded_mapping_costs_one_step() {
        let h = hasher();
        let mut sessions = Sessions::empty();
        let n = 20_000u32;
        for i in 0..n {
            sessions.insert(Session::new(0x0a00_0000 + i, 53, true, Instant::ZERO), &h);
        }
        let before = steps();
        for i in (0..n).step_by(7) {
            assert!(sessions.find(0x0a00_0000 + i, 53).is_some());
            assert!(sessions.find(0x0a00_0000 + i, 54).is_none());
        }
        let lookups = 2 * n.div_ceil(7) as usize;
        assert_eq!(steps() - before, lookups);
    }

    #[test]
    fn the_sessions_of_one_address_are_found_without_a_walk() {
        let h = hasher();
        let mut sessions = Sessions::empty();
        for i in 0..10_000u32 {
            sessions.insert(Session::new(0x0a00_0000 + i, 53, true, Instant::ZERO), &h);
        }
        for port in [53, 54, 55] {
            if sessions.find(0xc633_6407, port).is_none() {
                sessions.insert(Session::new(0xc633_6407, port, true, Instant::ZERO), &h);
            }
        }
        let before = steps();
        assert_eq!(sessions.at_address(0xc633_6407).count(), 3);
        assert_eq!(sessions.at_address(0xc633_6408).count(), 0);
        assert!(steps() - before <= 5, "{} steps", steps() - before);
    }
}
