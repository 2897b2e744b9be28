//! IPv4 fragments (RFC 4787 REQ-14). Only the first fragment carries ports, so the engine
//! remembers how it translated each fragmented datagram's first fragment and applies the same
//! address rewrite to the others. Non-first fragments that arrive before their first one are
//! held (bounded in count, bytes and time, REQ-14a) and released once it is translated.

use std::collections::{HashMap, VecDeque};

use crate::nat::ReleasedPacket;
use crate::time::{Duration, Instant};
use crate::verdict::{Direction, DropReason};
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
}

#[derive(Debug)]
struct Held {
    key: FragKey,
    received: Instant,
    data: Vec<u8>,
}

#[derive(Debug, Default)]
pub(crate) struct Fragments {
    records: HashMap<FragKey, Record>,
    held: Vec<Held>,
    held_bytes: usize,
    pub released: VecDeque<ReleasedPacket>,
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
                if self.held.len() >= MAX_HELD_FRAGMENTS || self.held_bytes + packet.len() > MAX_HELD_BYTES {
                    return Err(Hold::Drop(DropReason::FragmentBufferFull));
                }
                self.held_bytes += packet.len();
                self.held.push(Held { key, received: now, data: packet.to_vec() });
                Err(Hold::Held)
            }
        }
    }

    /// Records a first fragment's outcome and releases (or drops) the fragments held for it.
    /// Returns how many held fragments were dropped.
    pub(crate) fn first_seen(&mut self, now: Instant, key: FragKey, outcome: Outcome) -> usize {
        if self.records.len() < MAX_RECORDS || self.records.contains_key(&key) {
            self.records.insert(key, Record { outcome, expires: now + FRAGMENT_TIMEOUT });
        }
        let mut dropped = 0;
        let mut i = 0;
        while i < self.held.len() {
            if self.held[i].key != key {
                i += 1;
                continue;
            }
            let mut h = self.held.remove(i);
            self.held_bytes -= h.data.len();
            match outcome {
                Outcome::Translated { new_src, new_dst, direction } => {
                    apply(&mut h.data, new_src, new_dst);
                    self.released.push_back(ReleasedPacket {
                        direction: Some(direction),
                        received: h.received,
                        packet: h.data,
                    });
                }
                Outcome::Passed => {
                    self.released.push_back(ReleasedPacket { direction: None, received: h.received, packet: h.data })
                }
                Outcome::Dropped => dropped += 1,
            }
        }
        dropped
    }

    /// Forgets expired records and drops held fragments whose first fragment never came.
    /// Returns how many held fragments timed out.
    pub(crate) fn expire(&mut self, now: Instant) -> usize {
        self.records.retain(|_, r| r.expires > now);
        let before = self.held.len();
        let held_bytes = &mut self.held_bytes;
        self.held.retain(|h| {
            let keep = h.received + FRAGMENT_TIMEOUT > now;
            if !keep {
                *held_bytes -= h.data.len();
            }
            keep
        });
        before - self.held.len()
    }

    pub(crate) fn clear(&mut self) {
        self.records.clear();
    }
}

/// A non-first fragment that cannot be sent now.
#[derive(Debug)]
pub(crate) enum Hold {
    Held,
    Drop(DropReason),
}
