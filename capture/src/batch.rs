//! A reusable batch of packets: the unit every capture backend receives into and sends from.
//!
//! A [`Batch`] owns `capacity` packet buffers allocated once in [`Batch::new`]; `recv_batch`
//! refills them in place and `send_batch` reads them back, so the steady state allocates
//! nothing. Each buffer holds `max_len` bytes of packet plus [`BATCH_HEADROOM`] bytes a backend
//! may use while receiving (NFQUEUE reads the netlink header into it before moving the packet
//! to the front).
//!
//! Invariants, kept by every method: `len <= capacity`, and for every valid packet
//! `l3_offset <= len <= max_len`.

use std::fmt;

use netnat_engine::Verdict;

/// Extra bytes each buffer has beyond `max_len`, for backend headers during receive.
pub const BATCH_HEADROOM: usize = 512;

/// What the sender does with a packet; the caller sets it after processing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Action {
    /// Send it on: the bytes in `data()` (possibly rewritten in place, possibly with a new
    /// length). The default after a receive.
    #[default]
    Accept,
    /// Do not send it. For NFQUEUE this issues a drop verdict; for files it is left out.
    Drop,
}

/// Backend metadata of a packet. Backends fill it on receive; `send_batch` of the same backend
/// reads it back. File and in-memory backends leave it at its default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketMeta {
    /// The backend's handle for the verdict: the NFQUEUE packet id, or the WinDivert slot.
    pub id: u64,
    /// The NFQUEUE queue number the packet came from (0 elsewhere).
    pub queue: u16,
    /// Index of the interface the packet arrived on, 0 when unknown or locally generated.
    pub in_interface: u32,
    /// Index of the interface the packet leaves on, 0 when unknown (NFQUEUE in PREROUTING).
    pub out_interface: u32,
    /// The OS's direction: `Some(true)` for outbound (WinDivert's `Outbound` flag). WinDivert
    /// reinjects in the direction stored here, so a caller may change it before sending.
    pub outbound: Option<bool>,
    /// The frame carries no IPv4 packet (a capture file's ARP or IPv6 frame): a translator
    /// leaves it alone. Live backends deliver IPv4 only and leave this `false`.
    pub not_ipv4: bool,
    /// What the engine said of the packet, set by the translator for packets an engine saw
    /// (`None`: none did), so a backend that records decisions (`netnat replay`'s annotated
    /// outputs) reads them from the engine rather than working them out again.
    pub verdict: Option<Verdict>,
}

/// One packet: an owned buffer reused between calls, the packet's length and where its IPv4
/// header starts.
pub struct Packet {
    /// The packet's bytes are `buf[start..]`; see [`Batch::new`] for why not all from 0.
    buf: Box<[u8]>,
    start: usize,
    len: usize,
    l3_offset: usize,
    timestamp_us: u64,
    action: Action,
    /// Backend metadata; see [`PacketMeta`].
    pub meta: PacketMeta,
}

impl Packet {
    fn with_capacity(bytes: usize, start: usize) -> Self {
        Packet {
            buf: vec![0; start + bytes].into_boxed_slice(),
            start,
            len: 0,
            l3_offset: 0,
            timestamp_us: 0,
            action: Action::Accept,
            meta: PacketMeta::default(),
        }
    }

    /// Resets everything but the buffer, for a backend about to fill this slot.
    fn reset(&mut self) {
        self.len = 0;
        self.l3_offset = 0;
        self.timestamp_us = 0;
        self.action = Action::Accept;
        self.meta = PacketMeta::default();
    }

    /// The packet bytes, from the link-layer header (if any) to the end.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }

    /// The packet bytes, mutable, for rewriting in place.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + self.len]
    }

    /// The IPv4 packet: `data()` from the IPv4 header on.
    pub fn ip(&self) -> &[u8] {
        &self.buf[self.start + self.l3_offset..self.start + self.len]
    }

    /// The IPv4 packet, mutable. This is what the engine's `handle_packet` takes.
    pub fn ip_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start + self.l3_offset..self.start + self.len]
    }

    /// The whole buffer up to [`Packet::max_len`], to write a packet longer than the current
    /// one before calling [`Packet::set_len`].
    pub fn buffer_mut(&mut self) -> &mut [u8] {
        let max = self.max_len();
        &mut self.buf[self.start..self.start + max]
    }

    /// The whole buffer including the receive headroom; for backends only.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn raw_buffer_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..]
    }

    /// Length of `data()`.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the packet has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The longest packet this buffer holds.
    pub fn max_len(&self) -> usize {
        self.buf.len() - self.start - BATCH_HEADROOM
    }

    /// Sets the length of `data()`, e.g. after the engine returned `Forward { len }` (then
    /// `set_len(l3_offset() + len)`, or use [`Packet::set_ip_len`]). Clamped to
    /// `l3_offset()..=max_len()` so the invariants hold whatever the caller passes.
    pub fn set_len(&mut self, len: usize) {
        self.len = len.clamp(self.l3_offset, self.max_len());
    }

    /// Sets the length of the IPv4 packet (`ip().len()`); clamped like [`Packet::set_len`].
    pub fn set_ip_len(&mut self, len: usize) {
        self.set_len(self.l3_offset.saturating_add(len));
    }

    /// Offset of the IPv4 header in `data()`: 0 for raw IP, 14 for Ethernet.
    pub fn l3_offset(&self) -> usize {
        self.l3_offset
    }

    /// Sets the offset of the IPv4 header; clamped to `len()`.
    pub fn set_l3_offset(&mut self, offset: usize) {
        self.l3_offset = offset.min(self.len);
    }

    /// Capture time in microseconds: the file's timestamp (since the Unix epoch) for pcap
    /// input, [`crate::clock::now_us`] for live backends.
    pub fn timestamp_us(&self) -> u64 {
        self.timestamp_us
    }

    /// Sets the capture time in microseconds.
    pub fn set_timestamp_us(&mut self, ts: u64) {
        self.timestamp_us = ts;
    }

    /// What `send_batch` does with this packet.
    pub fn action(&self) -> Action {
        self.action
    }

    /// Sets what `send_batch` does with this packet.
    pub fn set_action(&mut self, action: Action) {
        self.action = action;
    }

    /// Replaces the packet with `bytes` (truncated to `max_len()`), keeping metadata and
    /// action. Returns the number of bytes copied.
    pub fn fill(&mut self, bytes: &[u8], l3_offset: usize) -> usize {
        let n = bytes.len().min(self.max_len());
        self.buf[self.start..self.start + n].copy_from_slice(&bytes[..n]);
        self.len = n;
        self.l3_offset = l3_offset.min(n);
        n
    }

    /// Sets length and offset directly; for backends that wrote into `raw_buffer_mut`.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn set_raw(&mut self, len: usize, l3_offset: usize) {
        self.len = len.min(self.max_len());
        self.l3_offset = l3_offset.min(self.len);
    }

    /// Copies packet `src` (bytes, offset, time, action, metadata) into `self`.
    fn copy_from(&mut self, src: &Packet) {
        self.fill(src.data(), src.l3_offset);
        self.timestamp_us = src.timestamp_us;
        self.action = src.action;
        self.meta = src.meta;
    }
}

impl fmt::Debug for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Packet")
            .field("len", &self.len)
            .field("l3_offset", &self.l3_offset)
            .field("timestamp_us", &self.timestamp_us)
            .field("action", &self.action)
            .field("meta", &self.meta)
            .finish()
    }
}

/// Where packet `i` of a batch starts in its buffer. Large buffers are mapped pages of their
/// own, so without this every packet would start at the same offset in a page, and the first
/// bytes of all of them (the headers the engine reads and rewrites) would compete for the
/// same few sets of the L1 cache (8 ways on the machines BENCHMARKS.md names, for 64
/// packets). Starting each one a cache line further spreads them over 64 sets; callgrind's
/// cache simulation of a replay counted twice the L1 misses without it.
fn stagger(i: usize) -> usize {
    (i % 64) * 64
}

/// A fixed set of reusable packet buffers, of which the first `len()` hold packets.
pub struct Batch {
    packets: Vec<Packet>,
    len: usize,
}

impl Batch {
    /// Allocates `capacity` buffers (at least one) of `max_len` bytes (plus headroom) each.
    /// 65535 holds any IPv4 packet; buffers are zeroed lazily by the OS, so a large
    /// `max_len` costs address space, not memory, until packets that big arrive.
    pub fn new(capacity: usize, max_len: usize) -> Self {
        let capacity = capacity.max(1);
        let packets = (0..capacity).map(|i| Packet::with_capacity(max_len + BATCH_HEADROOM, stagger(i))).collect();
        Batch { packets, len: 0 }
    }

    /// How many packets the batch can hold.
    pub fn capacity(&self) -> usize {
        self.packets.len()
    }

    /// The longest packet each buffer holds.
    pub fn max_len(&self) -> usize {
        self.packets[0].max_len()
    }

    /// Number of valid packets.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no valid packets.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when no packet can be added.
    pub fn is_full(&self) -> bool {
        self.len == self.packets.len()
    }

    /// Forgets all packets (buffers are kept).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Keeps the first `len` packets.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// The valid packets.
    pub fn packets(&self) -> &[Packet] {
        &self.packets[..self.len]
    }

    /// The valid packets, mutable: rewrite them, set their action, reorder them.
    pub fn packets_mut(&mut self) -> &mut [Packet] {
        &mut self.packets[..self.len]
    }

    /// Iterates over the valid packets.
    pub fn iter(&self) -> std::slice::Iter<'_, Packet> {
        self.packets().iter()
    }

    /// Iterates mutably over the valid packets.
    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, Packet> {
        self.packets_mut().iter_mut()
    }

    /// Makes the next free slot valid, reset (length 0, `Accept`, default metadata), and
    /// returns it; `None` when the batch is full.
    pub fn push_slot(&mut self) -> Option<&mut Packet> {
        let slot = self.packets.get_mut(self.len)?;
        slot.reset();
        self.len += 1;
        Some(slot)
    }

    /// Appends a copy of `bytes` with the given IPv4 header offset and timestamp. Returns
    /// false (and changes nothing) when the batch is full.
    pub fn push(&mut self, bytes: &[u8], l3_offset: usize, timestamp_us: u64) -> bool {
        match self.push_slot() {
            Some(p) => {
                p.fill(bytes, l3_offset);
                p.timestamp_us = timestamp_us;
                true
            }
            None => false,
        }
    }

    /// The free slots after the valid packets, for a backend to receive into directly;
    /// it then makes the first `n` of them valid with [`Batch::grow`].
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn spare_mut(&mut self) -> &mut [Packet] {
        &mut self.packets[self.len..]
    }

    /// Makes the first `n` free slots valid (as filled by the backend).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn grow(&mut self, n: usize) {
        self.len = (self.len + n).min(self.packets.len());
    }

    /// Removes packet `index`, keeping the order of the others; its buffer moves to the free
    /// slots. Out-of-range indexes are ignored.
    pub fn remove(&mut self, index: usize) {
        if index < self.len {
            self.packets[index..self.len].rotate_left(1);
            self.len -= 1;
        }
    }

    /// Appends a copy of packet `index` (bytes, time, action, metadata). Returns false when
    /// the batch is full or `index` is out of range.
    pub fn push_copy(&mut self, index: usize) -> bool {
        if index >= self.len || self.is_full() {
            return false;
        }
        let (valid, free) = self.packets.split_at_mut(self.len);
        free[0].copy_from(&valid[index]);
        self.len += 1;
        true
    }
}

impl fmt::Debug for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("len", &self.len)
            .field("capacity", &self.capacity())
            .field("max_len", &self.max_len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_and_read_back() {
        let mut b = Batch::new(2, 100);
        assert!(b.push(&[1, 2, 3], 0, 7));
        assert!(b.push(&[9; 20], 14, 8));
        assert!(!b.push(&[0], 0, 9), "a full batch refuses packets");
        assert_eq!(b.len(), 2);
        assert_eq!(b.packets()[0].data(), &[1, 2, 3]);
        assert_eq!(b.packets()[1].ip(), &[9; 6]);
        assert_eq!(b.packets()[1].timestamp_us(), 8);
    }

    #[test]
    fn set_len_is_clamped() {
        let mut b = Batch::new(1, 10);
        b.push(&[0; 20], 4, 0);
        let p = &mut b.packets_mut()[0];
        assert_eq!(p.len(), 10, "fill truncates to max_len");
        p.set_len(1000);
        assert_eq!(p.len(), 10);
        p.set_len(1);
        assert_eq!(p.len(), 4, "never shorter than the l3 offset");
        p.set_ip_len(3);
        assert_eq!(p.len(), 7);
    }

    #[test]
    fn remove_keeps_order_and_buffers() {
        let mut b = Batch::new(3, 8);
        for i in 0..3u8 {
            b.push(&[i], 0, u64::from(i));
        }
        b.remove(1);
        let firsts: Vec<u8> = b.iter().map(|p| p.data()[0]).collect();
        assert_eq!(firsts, vec![0, 2]);
        assert!(b.push(&[5], 0, 5), "the removed slot is free again");
        assert_eq!(b.len(), 3);
    }

    #[test]
    fn push_copy_duplicates_everything() {
        let mut b = Batch::new(2, 8);
        b.push(&[1, 2], 1, 42);
        b.packets_mut()[0].set_action(Action::Drop);
        b.packets_mut()[0].meta.id = 77;
        assert!(b.push_copy(0));
        let q = &b.packets()[1];
        assert_eq!(
            (q.data(), q.l3_offset(), q.timestamp_us(), q.action(), q.meta.id),
            (&[1u8, 2][..], 1, 42, Action::Drop, 77)
        );
        assert!(!b.push_copy(0), "full");
    }

    #[test]
    fn push_slot_resets_a_reused_slot() {
        let mut b = Batch::new(1, 8);
        b.push(&[1], 0, 1);
        b.packets_mut()[0].set_action(Action::Drop);
        b.clear();
        let p = b.push_slot().expect("one free slot");
        assert_eq!((p.len(), p.action()), (0, Action::Accept));
    }
}
