//! IPv4 fragments (RFC 4787 REQ-14). Only the first fragment carries ports, so the engine
//! remembers how it translated each fragmented datagram's first fragment and applies the same
//! address rewrite to the others. Non-first fragments that arrive before their first one are
//! held (bounded in count, bytes and time, REQ-14a) and released once it is translated.
//!
//! Both the remembered translations and the held fragments are bounded per side (inside or
//! outside source) and per source address, so a sender cannot starve others: 4096 unsolicited
//! first fragments from outside fill the outside half only, and one source at most
//! `MAX_RECORDS_PER_SOURCE` of it.

use std::collections::{HashMap, VecDeque};

use crate::time::{Duration, Instant};
use crate::verdict::{Direction, DropReason, HeldId, ReleasedPacket};
use crate::wire::ipv4::Ipv4Packet;

/// How long a datagram's translation is remembered, and a held fragment kept, after the
/// last fragment seen (RFC 6146 FRAGMENT_MIN is 2 s; Linux reassembles for 30 s).
pub const FRAGMENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Most non-first fragments held at once.
pub const MAX_HELD_FRAGMENTS: usize = 64;
/// Most bytes of held fragments at once.
pub const MAX_HELD_BYTES: usize = 256 * 1024;
/// Most datagrams whose translation is remembered at once.
pub const MAX_RECORDS: usize = 4096;
/// Most datagrams remembered at once from sources on one side (inside or outside): half.
pub const MAX_RECORDS_PER_SIDE: usize = MAX_RECORDS / 2;
/// Most datagrams remembered at once from one source address (256 fragmented datagrams in
/// the 5 s timeout: a source sending faster than 50 a second has its later ones held).
pub const MAX_RECORDS_PER_SOURCE: usize = 256;
/// Most non-first fragments held at once from one side, and their bytes: half of each.
pub const MAX_HELD_PER_SIDE: usize = MAX_HELD_FRAGMENTS / 2;
/// Most bytes of held fragments from one side.
pub const MAX_HELD_BYTES_PER_SIDE: usize = MAX_HELD_BYTES / 2;
/// Most non-first fragments held at once from one source address.
pub const MAX_HELD_PER_SOURCE: usize = 16;

/// Where a fragment's source is: the internal prefix, or outside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Inside = 0,
    Outside = 1,
}

/// Identifies a datagram as its fragments arrive: source, destination, protocol, IP ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FragKey {
    pub src: u32,
    pub dst: u32,
    pub proto: u8,
    pub ident: u16,
}

/// What happened to a datagram's first fragment.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Outcome {
    Translated {
        new_src: u32,
        new_dst: u32,
        direction: Direction,
    },
    /// Not the NAT's business: the other fragments pass unchanged too.
    Passed,
    Dropped,
}

#[derive(Debug)]
struct Record {
    outcome: Outcome,
    expires: Instant,
    side: Side,
}

#[derive(Debug)]
struct Held {
    id: HeldId,
    key: FragKey,
    received: Instant,
    data: Vec<u8>,
    side: Side,
}

/// What one side, or one source, holds now.
#[derive(Clone, Copy, Debug, Default)]
struct Usage {
    records: usize,
    held: usize,
    held_bytes: usize,
}

#[derive(Debug, Default)]
pub(crate) struct Fragments {
    records: HashMap<FragKey, Record>,
    held: Vec<Held>,
    held_bytes: usize,
    sides: [Usage; 2],
    /// Per source address with anything remembered or held (removed at zero).
    sources: HashMap<u32, Usage>,
    pub released: VecDeque<ReleasedPacket>,
    /// The id of the next fragment held.
    next_held: u64,
}

/// Applies a first fragment's translation to another fragment of the same datagram.
fn apply(packet: &mut [u8], new_src: u32, new_dst: u32) {
    if let Ok(mut ip) = Ipv4Packet::new_checked(packet, false) {
        ip.set_src(new_src);
        ip.set_dst(new_dst);
    }
}

impl Fragments {
    /// A non-first fragment: translated, dropped, or held.
    /// `Ok(None)`: pass unchanged.
    pub(crate) fn handle_later(
        &mut self,
        now: Instant,
        key: FragKey,
        side: Side,
        packet: &mut [u8],
    ) -> Result<Option<Direction>, Hold> {
        match self.records.get_mut(&key) {
            Some(r) => {
                r.expires = now + FRAGMENT_TIMEOUT;
                match r.outcome {
                    Outcome::Translated { new_src, new_dst, direction } => {
                        apply(packet, new_src, new_dst);
                        Ok(Some(direction))
                    }
                    Outcome::Passed => Ok(None),
                    Outcome::Dropped => Err(Hold::Drop(DropReason::FragmentOfDropped)),
                }
            }
            None => {
                let n = packet.len();
                let (own, src) = (self.sides[side as usize], self.source(key.src));
                if self.held.len() >= MAX_HELD_FRAGMENTS
                    || self.held_bytes + n > MAX_HELD_BYTES
                    || own.held >= MAX_HELD_PER_SIDE
                    || own.held_bytes + n > MAX_HELD_BYTES_PER_SIDE
                    || src.held >= MAX_HELD_PER_SOURCE
                {
                    return Err(Hold::Drop(DropReason::FragmentBufferFull));
                }
                self.held_bytes += n;
                self.count(key.src, side, |u| {
                    u.held += 1;
                    u.held_bytes += n;
                });
                let id = HeldId(self.next_held);
                self.next_held += 1;
                self.held.push(Held { id, key, received: now, data: packet.to_vec(), side });
                Err(Hold::Held(id))
            }
        }
    }

    /// Records a first fragment's outcome and releases (or drops) the fragments held for it.
    /// Returns how many held fragments were dropped.
    pub(crate) fn first_seen(&mut self, now: Instant, key: FragKey, side: Side, outcome: Outcome) -> usize {
        let expires = now + FRAGMENT_TIMEOUT;
        if let Some(r) = self.records.get_mut(&key) {
            (r.outcome, r.expires) = (outcome, expires);
        } else if self.records.len() < MAX_RECORDS
            && self.sides[side as usize].records < MAX_RECORDS_PER_SIDE
            && self.source(key.src).records < MAX_RECORDS_PER_SOURCE
        {
            self.records.insert(key, Record { outcome, expires, side });
            self.count(key.src, side, |u| u.records += 1);
        }
        let mut dropped = 0;
        let mut i = 0;
        while i < self.held.len() {
            if self.held[i].key != key {
                i += 1;
                continue;
            }
            let mut h = self.held.remove(i);
            self.unhold(&h);
            match outcome {
                Outcome::Translated { new_src, new_dst, direction } => {
                    apply(&mut h.data, new_src, new_dst);
                    self.released.push_back(ReleasedPacket {
                        direction: Some(direction),
                        held: h.id,
                        received: h.received,
                        packet: h.data,
                    });
                }
                Outcome::Passed => self.released.push_back(ReleasedPacket {
                    direction: None,
                    held: h.id,
                    received: h.received,
                    packet: h.data,
                }),
                Outcome::Dropped => dropped += 1,
            }
        }
        dropped
    }

    /// Forgets expired records and drops held fragments whose first fragment never came.
    /// Returns how many held fragments timed out.
    pub(crate) fn expire(&mut self, now: Instant) -> usize {
        let mut gone = Vec::new();
        self.records.retain(|k, r| {
            let keep = r.expires > now;
            if !keep {
                gone.push((k.src, r.side));
            }
            keep
        });
        for (src, side) in gone {
            self.count(src, side, |u| u.records -= 1);
        }
        let (held, kept): (Vec<Held>, Vec<Held>) =
            core::mem::take(&mut self.held).into_iter().partition(|h| h.received + FRAGMENT_TIMEOUT <= now);
        self.held = kept;
        for h in &held {
            self.unhold(h);
        }
        held.len()
    }

    pub(crate) fn clear(&mut self) {
        for (k, r) in core::mem::take(&mut self.records) {
            self.count(k.src, r.side, |u| u.records -= 1);
        }
    }

    /// What `src` holds now.
    fn source(&self, src: u32) -> Usage {
        self.sources.get(&src).copied().unwrap_or_default()
    }

    /// Applies `f` to the usage of `src` and of its side; forgets a source that holds nothing.
    fn count(&mut self, src: u32, side: Side, f: impl Fn(&mut Usage)) {
        f(&mut self.sides[side as usize]);
        let u = self.sources.entry(src).or_default();
        f(u);
        if u.records == 0 && u.held == 0 {
            self.sources.remove(&src);
        }
    }

    /// Accounts for a held fragment leaving the buffer.
    fn unhold(&mut self, h: &Held) {
        let n = h.data.len();
        self.held_bytes -= n;
        self.count(h.key.src, h.side, |u| {
            u.held -= 1;
            u.held_bytes -= n;
        });
    }
}

/// A non-first fragment that cannot be sent now.
#[derive(Debug)]
pub(crate) enum Hold {
    Held(HeldId),
    Drop(DropReason),
}
