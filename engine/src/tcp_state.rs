//! What the NAT tracks of a TCP connection: enough to choose between WinNAT's two TCP timers,
//! and enough of the sequence space that a blind RST or FIN cannot end a connection.
//!
//! Timers: a session is *transient* (TcpTransientConnectionTimeout) until the three-way
//! handshake completes, and again once a FIN has been seen in both directions or an RST in
//! either; it is *established* (TcpEstablishedConnectionTimeout) in between.
//!
//! Windows (RFC 5961, as Linux conntrack does it, simplified): per direction the tracker keeps
//! the next sequence number the sender will use (the highest seq + len seen, lazily, see
//! below) and the largest window the sender has advertised, scaled (RFC 7323). An RST or FIN
//! whose sequence number lies more than the receiver's largest window away from the sender's
//! next sequence number is *out of window*: it changes nothing and is dropped, counted as
//! [`DropReason::TcpOutOfWindow`]. Why drop rather than forward: the receiver would ignore it
//! anyway (RFC 793 segment acceptability; RFC 5961 §3.2 answers an out-of-window RST with
//! nothing, an in-window one with a challenge ACK), so dropping loses nothing legitimate, and
//! it keeps the NAT's state and the receiver's in step. Conntrack marks such segments INVALID,
//! which usual rulesets drop. An in-window RST or FIN is forwarded and moves the state as it
//! always did; this includes an RST at exactly the next sequence number, the one a real
//! endpoint sends. The tracker cannot tell an exact RST from an in-window one (it does not
//! follow the acknowledgements, which change with every packet), so an in-window blind RST
//! still closes the session: the attacker must guess within a window, one chance in
//! 2^32 / (2 window) per try, instead of every try succeeding.
//!
//! The bound: `[next - window, next + window]`, `window` the receiver's largest advertised
//! window, never below [`MIN_WINDOW`]. A legitimate RST carries the sender's next sequence
//! number (an abort) or the receiver's acknowledgement (a reply to a segment of a connection
//! it has forgotten), which trails the sender's next sequence number by at most the data in
//! flight, at most the receiver's window. The floor keeps connections with tiny windows
//! closable when the NAT's view of the window is behind (a window update in flight).
//!
//! Lazy tracking (the packet path must not write per packet): an ordinary segment writes the
//! sender's word only when it moves the next sequence number more than half the receiver's
//! window ahead of the recorded one, or raises the largest window; so the recorded number
//! trails the real one by at most half a window, within the bound. Only segments inside the
//! bound teach anything: a blind data segment cannot move the window to where a blind RST
//! would then be accepted.
//!
//! Unknown sequence numbers (a session the NAT picked up mid-flow, or a direction that has not
//! sent yet): until a direction's first segment has been seen, its RSTs and FINs are accepted,
//! so such sessions stay closable; its first segment (any, SYN or not) teaches its sequence
//! number and window. Without the SYNs the window scale is unknown and taken as the largest,
//! 14, which accepts more, never less. A SYN teaches its direction's initial sequence number
//! only while the handshake has not completed (or after the connection closed and the SYN
//! opens a new one): a blind SYN on an established connection moves nothing.

use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use crate::verdict::DropReason;
use crate::wire::tcp::{self, ACK, FIN, MAX_WINDOW_SHIFT, RST, SYN};

/// The largest window RFC 7323 allows: 65535 scaled by 2^14 (just under 2^30).
pub(crate) const MAX_WINDOW: u32 = 0xffff << MAX_WINDOW_SHIFT;

/// The narrowest bound an RST or FIN is checked against: a full unscaled window.
pub(crate) const MIN_WINDOW: u32 = 0xffff;

/// What the tracker reads of one TCP segment (for UDP and ICMP: [`TcpSegment::NONE`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TcpSegment {
    /// The flags byte.
    pub flags: u8,
    /// Sequence number.
    pub seq: u32,
    /// Sequence space the segment occupies: payload bytes, plus one for a SYN and one for a FIN.
    pub len: u32,
    /// The window field, unscaled.
    pub window: u16,
    /// The window scale option of a SYN, if it carries one (`None` for other segments).
    pub wscale: Option<u8>,
    /// The whole packet's IPv4 total length, for the session counters (set for UDP and ICMP
    /// packets too, which carry no other field).
    pub ip_len: u16,
}

impl TcpSegment {
    /// Not a TCP segment.
    pub(crate) const NONE: TcpSegment = TcpSegment { flags: 0, seq: 0, len: 0, window: 0, wscale: None, ip_len: 0 };

    /// A packet of `ip_len` bytes that is not a TCP segment.
    pub(crate) const fn other(ip_len: u16) -> TcpSegment {
        TcpSegment { ip_len, ..TcpSegment::NONE }
    }

    /// Reads the tracked fields of `seg`, whose header length `header_len` the caller checked
    /// (20 to `seg.len()`). `seg` ends where the IP packet ends (for a first fragment, where
    /// the fragment ends: its length then counts only the bytes present).
    #[inline(always)]
    pub(crate) fn parse(seg: &[u8], header_len: usize) -> TcpSegment {
        let flags = tcp::flags(seg);
        let payload = (seg.len() - header_len) as u32;
        let len = payload + u32::from(flags & SYN != 0) + u32::from(flags & FIN != 0);
        let wscale = if flags & SYN != 0 { tcp::window_scale(seg, header_len) } else { None };
        TcpSegment { flags, seq: tcp::seq(seg), len, window: tcp::window(seg), wscale, ip_len: 0 }
    }
}

/// One direction's word (see [`TcpSeqs`]): bits 0..32 the sender's next sequence number,
/// 32..48 the largest window field it sent (in units of 2^shift), 48..52 the shift, then
/// flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Side(u64);

/// The direction's first segment has been seen: the other fields mean something.
const KNOWN: u64 = 1 << 52;
/// The direction's SYN has been seen (its window scale option, or its absence, is known).
const SYN_SEEN: u64 = 1 << 53;
/// The direction's SYN carried a window scale option.
const WS_OPT: u64 = 1 << 54;

impl Side {
    fn next(self) -> u32 {
        self.0 as u32
    }

    fn raw_window(self) -> u16 {
        (self.0 >> 32) as u16
    }

    fn shift(self) -> u8 {
        ((self.0 >> 48) & 0xf) as u8
    }

    fn known(self) -> bool {
        self.0 & KNOWN != 0
    }

    fn with_next(self, next: u32) -> Side {
        Side((self.0 & !0xffff_ffff) | u64::from(next))
    }

    fn with_raw_window(self, w: u16) -> Side {
        Side((self.0 & !(0xffff << 32)) | (u64::from(w) << 32))
    }

    fn with_shift(self, shift: u8) -> Side {
        Side((self.0 & !(0xf << 48)) | (u64::from(shift.min(MAX_WINDOW_SHIFT)) << 48))
    }

    /// How far from this side's next sequence number the other side's may be: the largest
    /// window this side advertised, scaled, at least [`MIN_WINDOW`]; [`MAX_WINDOW`] while
    /// this side has sent nothing.
    #[inline(always)]
    fn window(self) -> u32 {
        if self.known() {
            (u32::from(self.raw_window()) << self.shift()).max(MIN_WINDOW)
        } else {
            MAX_WINDOW
        }
    }
}

/// How far `seq` is from `next`, either way, in sequence space (mod 2^32).
#[inline(always)]
fn distance(seq: u32, next: u32) -> u32 {
    (seq.wrapping_sub(next) as i32).unsigned_abs()
}

/// The sequence space of one TCP session: one word per direction (index 0 the internal
/// host's segments, 1 the remote's), each written only by its own direction's segments.
/// Two threads racing on one direction may lose an update; the next segment redoes it.
#[derive(Debug, Default)]
pub(crate) struct TcpSeqs([AtomicU64; 2]);

impl TcpSeqs {
    #[inline(always)]
    fn word(&self, outbound: bool) -> &AtomicU64 {
        &self.0[usize::from(!outbound)]
    }

    #[inline(always)]
    fn side(&self, outbound: bool) -> Side {
        Side(self.word(outbound).load(Ordering::Relaxed))
    }

    fn store(&self, outbound: bool, side: Side) {
        self.word(outbound).store(side.0, Ordering::Relaxed);
    }

    /// Whether `seg`'s sequence number lies within the window tracked for its sender (see
    /// the module doc); always while the sender's sequence number is unknown.
    pub(crate) fn in_window(&self, outbound: bool, seg: &TcpSegment) -> bool {
        let me = self.side(outbound);
        !me.known() || distance(seg.seq, me.next()) <= self.side(!outbound).window()
    }

    /// Records a segment that changes nothing in the flags' state (the packet path): writes
    /// only on a direction's first segment, when the next sequence number moved more than half
    /// a window, or when the window grew.
    #[inline(always)]
    pub(crate) fn on_ordinary(&self, outbound: bool, seg: &TcpSegment) {
        let me = self.side(outbound);
        let ahead = seg.seq.wrapping_add(seg.len).wrapping_sub(me.next()) as i32;
        // The common case, a pure ACK or a retransmission: nothing new, no window to compute.
        if me.known() && ahead <= 0 && seg.window <= me.raw_window() {
            return;
        }
        self.on_new(outbound, me, seg, ahead);
    }

    /// [`Self::on_ordinary`] for a segment that carries new data or a larger window (or is
    /// its direction's first).
    #[inline]
    fn on_new(&self, outbound: bool, me: Side, seg: &TcpSegment, ahead: i32) {
        if !me.known() {
            return self.learn(outbound, seg);
        }
        let peer = self.side(!outbound);
        let window = peer.window();
        if distance(seg.seq, me.next()) > window {
            return;
        }
        // While the receiver has sent nothing its window is unknown: follow every advance
        // (one round trip at most), so the lag is right once the window is known.
        let slack = if peer.known() { window / 2 } else { 0 };
        if ahead > slack as i32 || seg.window > me.raw_window() {
            self.advance(outbound, me, seg, ahead);
        }
    }

    #[cold]
    #[inline(never)]
    fn advance(&self, outbound: bool, me: Side, seg: &TcpSegment, ahead: i32) {
        let mut new = me.with_raw_window(me.raw_window().max(seg.window));
        if ahead > 0 {
            new = new.with_next(seg.seq.wrapping_add(seg.len));
        }
        self.store(outbound, new);
    }

    /// A direction's first segment, not a SYN: the session was picked up mid-flow (or the SYN
    /// went another way). Its window scale is unknown unless the other side's SYN said the
    /// connection has none.
    #[cold]
    #[inline(never)]
    fn learn(&self, outbound: bool, seg: &TcpSegment) {
        let peer = self.side(!outbound);
        let unscaled = peer.0 & (SYN_SEEN | WS_OPT) == SYN_SEEN;
        let side = Side(KNOWN)
            .with_next(seg.seq.wrapping_add(seg.len))
            .with_raw_window(seg.window)
            .with_shift(if unscaled { 0 } else { MAX_WINDOW_SHIFT });
        self.store(outbound, side);
    }

    /// A SYN that opens the connection in its direction: its initial sequence number, its
    /// window (unscaled in a SYN, RFC 7323 §2.2) and its window scale option. Scaling holds
    /// only if both SYNs carry the option; the side that learns the other has none sets both
    /// shifts to 0.
    fn learn_syn(&self, outbound: bool, seg: &TcpSegment) {
        let peer = self.side(!outbound);
        let shift = seg.wscale.unwrap_or(0).min(MAX_WINDOW_SHIFT);
        let scaled = seg.wscale.is_some() && (peer.0 & SYN_SEEN == 0 || peer.0 & WS_OPT != 0);
        let shift = if scaled { shift } else { 0 };
        let raw = (u32::from(seg.window) + (1u32 << shift) - 1) >> shift;
        let mut flags = KNOWN | SYN_SEEN;
        if seg.wscale.is_some() {
            flags |= WS_OPT;
        }
        let side = Side(flags).with_next(seg.seq.wrapping_add(seg.len)).with_raw_window(raw as u16).with_shift(shift);
        self.store(outbound, side);
        if seg.wscale.is_none() && peer.0 & WS_OPT != 0 && peer.shift() != 0 {
            // One compare-and-swap: losing to a packet of the other side only leaves its
            // windows read larger than they are (accepts more).
            let _ = self.word(!outbound).compare_exchange(
                peer.0,
                peer.with_shift(0).0,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// Records a segment the flags' state machine looked at (SYN, FIN, RST or the handshake's
    /// last ACK), already found in window; `before` is the flags' state it found.
    fn on_control(&self, outbound: bool, seg: &TcpSegment, before: TcpTrack) {
        if seg.flags & SYN != 0 {
            if seg.flags & ACK == 0 && before.is_closed() {
                // A new connection on the 5-tuple: the old sequence space means nothing.
                self.store(true, Side::default());
                self.store(false, Side::default());
                self.learn_syn(outbound, seg);
            } else if !before.is_established() {
                // Before the handshake completes a SYN (re)starts its direction: a retransmission
                // teaches the same number, a new attempt from the same port a new one.
                self.learn_syn(outbound, seg);
            }
            return;
        }
        if seg.flags & RST == 0 {
            self.on_ordinary(outbound, seg);
        }
    }
}

/// Records a TCP segment on a session's flags' state and sequence space; an RST or FIN
/// outside the window changes nothing and is refused.
#[inline(always)]
pub(crate) fn on_segment(state: &AtomicU8, seqs: &TcpSeqs, outbound: bool, seg: &TcpSegment) -> Result<(), DropReason> {
    // Only a SYN, FIN, RST or the handshake's last ACK changes the flags' state.
    let old = state.load(Ordering::Relaxed);
    if TcpTrack(old).unchanged_by(seg.flags) {
        seqs.on_ordinary(outbound, seg);
        Ok(())
    } else {
        on_control_segment(state, seqs, old, outbound, seg)
    }
}

/// Records a segment that changes the flags' state `old` (see [`TcpTrack::unchanged_by`]),
/// after checking that an RST or FIN is in window: one that is not changes nothing.
#[cold]
#[inline(never)]
fn on_control_segment(
    state: &AtomicU8,
    seqs: &TcpSeqs,
    mut old: u8,
    outbound: bool,
    seg: &TcpSegment,
) -> Result<(), DropReason> {
    if seg.flags & (RST | FIN) != 0 && !seqs.in_window(outbound, seg) {
        return Err(DropReason::TcpOutOfWindow);
    }
    let before = TcpTrack(old);
    // Lost races with a packet of the same flow on another thread are retried.
    loop {
        let mut track = TcpTrack(old);
        track.on_packet(outbound, seg.flags);
        if track.0 == old {
            break;
        }
        match state.compare_exchange_weak(old, track.0, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => break,
            Err(now_bits) => old = now_bits,
        }
    }
    seqs.on_control(outbound, seg, before);
    Ok(())
}

/// Whether an inbound segment may open a session through a static mapping: a SYN alone (ECN
/// and other flags aside), the first segment of a connection. Anything else from a remote
/// without a live session is dropped as [`DropReason::TcpNoSession`].
///
/// Decision. What WinNAT does here is unknown: the reference lists RST handling and inbound
/// unsolicited segments among the behaviours to measure on a real host, and no public source
/// says. Linux conntrack with `nf_conntrack_tcp_loose=1` (its default) picks connections up
/// mid-stream, so a DNAT port forward would translate such a segment. We do not, because:
/// a session opened by an ACK, FIN or RST belongs to no connection the internal server has
/// (it would answer with an RST at best); forwarding them lets anyone probe the internal host
/// through the forward (ACK scans map its firewall) or inject into it; and each spoofed
/// segment would hold a session slot for the transient timeout without even a SYN. The cost:
/// a forwarded connection whose session expired while idle, or that predates a restart of
/// the NAT, is not resumed by the remote's next segment. It is resumed if the internal host
/// sends first (outbound segments still open sessions mid-flow); otherwise the remote's
/// retransmissions fail as they would through any NAT that lost its state. UDP port forwards
/// are unchanged: any datagram opens a session.
pub(crate) fn opens_connection(flags: u8) -> bool {
    flags & (SYN | ACK | RST | FIN) == SYN
}

/// Flags seen on one TCP session, one bit each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TcpTrack(u8);

const SYN_OUT: u8 = 1;
const SYN_IN: u8 = 2;
const ESTABLISHED: u8 = 4;
const FIN_OUT: u8 = 8;
const FIN_IN: u8 = 16;
const RESET: u8 = 32;

impl TcpTrack {
    /// The flags as stored in a session's atomic byte.
    pub(crate) fn bits(self) -> u8 {
        self.0
    }

    pub(crate) fn from_bits(bits: u8) -> TcpTrack {
        TcpTrack(bits)
    }

    /// Records a packet with TCP `flags`, outbound (`true`) or inbound.
    pub(crate) fn on_packet(&mut self, outbound: bool, flags: u8) {
        // A fresh SYN on a finished connection (the 5-tuple is being reused) starts over.
        if flags & SYN != 0 && flags & ACK == 0 && self.is_closed() {
            *self = TcpTrack::default();
        }
        if flags & RST != 0 {
            self.0 |= RESET;
        }
        if flags & SYN != 0 {
            self.0 |= if outbound { SYN_OUT } else { SYN_IN };
        } else if flags & ACK != 0 && self.0 & (SYN_OUT | SYN_IN) == SYN_OUT | SYN_IN {
            // The first ACK without SYN after SYNs both ways completes the handshake (also for
            // a simultaneous open, RFC 5382 REQ-2).
            self.0 |= ESTABLISHED;
        }
        if flags & FIN != 0 {
            self.0 |= if outbound { FIN_OUT } else { FIN_IN };
        }
    }

    /// Whether a packet with `flags` leaves the state as it is, decided without computing
    /// the new state (the packet path's common case: an ACK on an established connection).
    #[inline(always)]
    pub(crate) fn unchanged_by(self, flags: u8) -> bool {
        flags & (SYN | FIN | RST) == 0
            && (self.0 & ESTABLISHED != 0 || flags & ACK == 0 || self.0 & (SYN_OUT | SYN_IN) != SYN_OUT | SYN_IN)
    }

    /// Whether the connection was reset or closed both ways.
    pub(crate) fn is_closed(self) -> bool {
        self.0 & RESET != 0 || self.0 & (FIN_OUT | FIN_IN) == FIN_OUT | FIN_IN
    }

    /// Whether the established timer applies.
    pub(crate) fn is_established(self) -> bool {
        self.0 & ESTABLISHED != 0 && !self.is_closed()
    }

    /// The state as the session listing names it.
    pub(crate) fn state(self) -> crate::session::TcpState {
        use crate::session::TcpState;
        if self.0 & RESET != 0 {
            TcpState::Reset
        } else if self.is_closed() {
            TcpState::Closed
        } else if self.0 & ESTABLISHED == 0 {
            TcpState::Opening
        } else if self.0 & (FIN_OUT | FIN_IN) != 0 {
            TcpState::Closing
        } else {
            TcpState::Established
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_by_agrees_with_on_packet_for_every_state_and_flags() {
        for bits in 0..64u8 {
            for flags in 0..=255u8 {
                for outbound in [true, false] {
                    let mut t = TcpTrack(bits);
                    t.on_packet(outbound, flags);
                    if TcpTrack(bits).unchanged_by(flags) {
                        assert_eq!(t.0, bits, "state {bits:#b} flags {flags:#x} outbound {outbound}");
                    }
                }
            }
        }
        assert!(TcpTrack(SYN_OUT | SYN_IN | ESTABLISHED).unchanged_by(ACK));
        assert!(!TcpTrack(SYN_OUT | SYN_IN).unchanged_by(ACK));
    }

    #[test]
    fn handshake_then_fin_both_ways() {
        let mut t = TcpTrack::default();
        t.on_packet(true, SYN);
        assert!(!t.is_established());
        t.on_packet(false, SYN | ACK);
        assert!(!t.is_established());
        t.on_packet(true, ACK);
        assert!(t.is_established());
        t.on_packet(true, FIN | ACK);
        assert!(t.is_established(), "one FIN is still established (half-close)");
        t.on_packet(false, FIN | ACK);
        assert!(!t.is_established() && t.is_closed());
        t.on_packet(true, SYN);
        assert!(!t.is_closed(), "a new SYN on a closed session starts a new connection");
    }

    #[test]
    fn rst_in_either_direction_closes() {
        for outbound in [true, false] {
            let mut t = TcpTrack::default();
            t.on_packet(true, SYN);
            t.on_packet(false, SYN | ACK);
            t.on_packet(true, ACK);
            t.on_packet(outbound, RST);
            assert!(t.is_closed() && !t.is_established());
        }
    }

    #[test]
    fn ack_without_both_syns_is_not_established() {
        let mut t = TcpTrack::default();
        t.on_packet(true, SYN);
        t.on_packet(true, ACK);
        assert!(!t.is_established());
        let mut t = TcpTrack::default();
        t.on_packet(true, SYN);
        t.on_packet(false, SYN);
        t.on_packet(false, ACK);
        assert!(t.is_established(), "simultaneous open");
    }

    /// A session's TCP state as `Session` holds it.
    #[derive(Debug, Default)]
    struct Conn {
        state: AtomicU8,
        seqs: TcpSeqs,
    }

    const OUT: bool = true;
    const IN: bool = false;
    /// The internal host's and the remote's initial sequence numbers in [`handshake`].
    const ISN_OUT: u32 = 0xfff0_0000;
    const ISN_IN: u32 = 7_000_000;

    impl Conn {
        fn send(&self, outbound: bool, seg: TcpSegment) -> Result<(), DropReason> {
            on_segment(&self.state, &self.seqs, outbound, &seg)
        }

        fn track(&self) -> TcpTrack {
            TcpTrack(self.state.load(Ordering::Relaxed))
        }

        /// The whole observable state: flags and both sequence words.
        fn snapshot(&self) -> (u8, u64, u64) {
            (self.state.load(Ordering::Relaxed), self.seqs.side(OUT).0, self.seqs.side(IN).0)
        }
    }

    fn seg(flags: u8, seq: u32, payload: u32, window: u16) -> TcpSegment {
        let len = payload + u32::from(flags & SYN != 0) + u32::from(flags & FIN != 0);
        TcpSegment { flags, seq, len, window, wscale: None, ip_len: 0 }
    }

    fn syn(flags: u8, seq: u32, window: u16, wscale: Option<u8>) -> TcpSegment {
        TcpSegment { wscale, ..seg(flags, seq, 0, window) }
    }

    /// A handshake with window scale 7 both ways (the internal host's ISN close to the wrap),
    /// then windows of 2000 << 7 = 256000 bytes (out) and 3000 << 7 = 384000 bytes (in).
    fn handshake() -> Conn {
        let c = Conn::default();
        c.send(OUT, syn(SYN, ISN_OUT, 64240, Some(7))).unwrap();
        c.send(IN, syn(SYN | ACK, ISN_IN, 65160, Some(7))).unwrap();
        c.send(OUT, seg(ACK, ISN_OUT.wrapping_add(1), 0, 2000)).unwrap();
        c.send(IN, seg(ACK, ISN_IN + 1, 0, 3000)).unwrap();
        assert!(c.track().is_established());
        c
    }

    const OUT_WINDOW: u32 = 2000 << 7;
    const IN_WINDOW: u32 = 3000 << 7;

    #[test]
    fn blind_rst_outside_the_window_is_refused_and_changes_nothing() {
        let c = handshake();
        let before = c.snapshot();
        for flags in [RST, RST | ACK] {
            let far = ISN_IN + 1 + OUT_WINDOW + 1;
            assert_eq!(c.send(IN, seg(flags, far, 0, 0)), Err(DropReason::TcpOutOfWindow));
            assert_eq!(c.send(IN, seg(flags, 0x8000_0000, 0, 0)), Err(DropReason::TcpOutOfWindow));
            let behind = (ISN_IN + 1).wrapping_sub(OUT_WINDOW + 1);
            assert_eq!(c.send(IN, seg(flags, behind, 0, 0)), Err(DropReason::TcpOutOfWindow));
        }
        // And from the inside, against the remote's window.
        let far = ISN_OUT.wrapping_add(1 + IN_WINDOW + 1);
        assert_eq!(c.send(OUT, seg(RST, far, 0, 0)), Err(DropReason::TcpOutOfWindow));
        assert_eq!(c.snapshot(), before);
        assert!(c.track().is_established());
    }

    #[test]
    fn rst_in_window_closes_at_the_edges_and_at_the_next_sequence_number() {
        for (outbound, next, window) in [(IN, ISN_IN + 1, OUT_WINDOW), (OUT, ISN_OUT.wrapping_add(1), IN_WINDOW)] {
            for seq in [next, next.wrapping_add(window), next.wrapping_sub(window)] {
                let c = handshake();
                c.send(outbound, seg(RST, seq, 0, 0)).unwrap();
                assert!(c.track().is_closed() && !c.track().is_established(), "seq {seq} outbound {outbound}");
            }
        }
    }

    #[test]
    fn out_of_window_fin_does_not_half_close() {
        let c = handshake();
        let far = ISN_IN.wrapping_add(0x4000_0000);
        assert_eq!(c.send(IN, seg(FIN | ACK, far, 0, 3000)), Err(DropReason::TcpOutOfWindow));
        // The internal host's FIN is real; had the blind one counted, both ways would be closed.
        c.send(OUT, seg(FIN | ACK, ISN_OUT.wrapping_add(1), 0, 2000)).unwrap();
        assert!(c.track().is_established() && !c.track().is_closed(), "half-closed only");
        c.send(IN, seg(FIN | ACK, ISN_IN + 1, 0, 3000)).unwrap();
        assert!(c.track().is_closed());
    }

    #[test]
    fn without_window_scaling_on_both_sides_windows_are_not_scaled() {
        // The remote's SYN-ACK has no window scale option: the internal host's window field
        // is bytes, so 2000 means the floor (65535), not 256000.
        let c = Conn::default();
        c.send(OUT, syn(SYN, ISN_OUT, 64240, Some(7))).unwrap();
        c.send(IN, syn(SYN | ACK, ISN_IN, 65160, None)).unwrap();
        c.send(OUT, seg(ACK, ISN_OUT.wrapping_add(1), 0, 2000)).unwrap();
        assert_eq!(c.send(IN, seg(RST, ISN_IN + 1 + 100_000, 0, 0)), Err(DropReason::TcpOutOfWindow));
        c.send(IN, seg(RST, ISN_IN + 1 + MIN_WINDOW, 0, 0)).unwrap();
        assert!(c.track().is_closed());
        // The same with scaling agreed: 100000 is within 256000.
        let c = handshake();
        c.send(IN, seg(RST, ISN_IN + 1 + 100_000, 0, 0)).unwrap();
        assert!(c.track().is_closed());
    }

    #[test]
    fn a_long_transfer_keeps_the_next_sequence_number_writing_rarely() {
        let c = handshake();
        let mut seq = ISN_IN + 1;
        let (mut writes, mut last) = (0, c.seqs.side(IN));
        const SEGMENTS: u32 = 70_000; // about 100 MB, 260 windows
        for _ in 0..SEGMENTS {
            c.send(IN, seg(ACK, seq, 1448, 3000)).unwrap();
            seq = seq.wrapping_add(1448);
            if c.seqs.side(IN) != last {
                writes += 1;
                last = c.seqs.side(IN);
            }
        }
        assert!(writes < SEGMENTS / 50, "{writes} writes for {SEGMENTS} segments");
        // The receiver has acknowledged all but a window's worth: a reset answering that
        // acknowledgement, and the sender's own at its next sequence number, both count.
        let before = c.snapshot();
        let acked = seq.wrapping_sub(OUT_WINDOW);
        c.send(IN, seg(RST, acked, 0, 0)).unwrap();
        assert!(c.track().is_closed());
        c.state.store(before.0, Ordering::Relaxed);
        c.send(IN, seg(RST, seq, 0, 0)).unwrap();
        assert!(c.track().is_closed());
    }

    #[test]
    fn a_blind_syn_or_data_segment_does_not_move_the_window() {
        let c = handshake();
        let blind = ISN_IN.wrapping_add(0x9000_0000);
        c.send(IN, syn(SYN, blind, 65535, Some(14))).unwrap();
        c.send(IN, seg(ACK | 0x08, blind + 1, 1000, 65535)).unwrap();
        assert_eq!(c.send(IN, seg(RST, blind + 1001, 0, 0)), Err(DropReason::TcpOutOfWindow));
        c.send(IN, seg(RST, ISN_IN + 1, 0, 0)).unwrap();
        assert!(c.track().is_closed());
    }

    #[test]
    fn mid_flow_sessions_accept_until_each_side_is_known_then_check() {
        // Picked up from the internal host's ACK: the remote has not been seen, so its RST
        // (say, answering that segment after a reboot) is accepted.
        let c = Conn::default();
        c.send(OUT, seg(ACK, 123_456, 100, 2000)).unwrap();
        c.send(IN, seg(RST, 0xdead_beef, 0, 0)).unwrap();
        assert!(c.track().is_closed());
        // Once both sides have sent, the window (scale unknown: 14) applies.
        let c = Conn::default();
        c.send(OUT, seg(ACK, 123_456, 100, 8)).unwrap();
        c.send(IN, seg(ACK, 987_654, 100, 8)).unwrap();
        let window = 8u32 << 14;
        assert_eq!(c.send(IN, seg(RST, 987_754 + window + 1, 0, 0)), Err(DropReason::TcpOutOfWindow));
        assert_eq!(c.send(OUT, seg(FIN, 123_556u32.wrapping_sub(window + 1), 0, 0)), Err(DropReason::TcpOutOfWindow));
        c.send(IN, seg(RST, 987_754 + window, 0, 0)).unwrap();
        assert!(c.track().is_closed());
    }

    #[test]
    fn a_new_syn_after_close_starts_a_new_sequence_space() {
        let c = handshake();
        c.send(IN, seg(RST, ISN_IN + 1, 0, 0)).unwrap();
        let isn = ISN_IN.wrapping_add(0x8000_0000);
        c.send(OUT, syn(SYN, 42, 64240, Some(7))).unwrap();
        c.send(IN, syn(SYN | ACK, isn, 65160, Some(7))).unwrap();
        c.send(OUT, seg(ACK, 43, 0, 2000)).unwrap();
        assert!(c.track().is_established());
        assert_eq!(c.send(IN, seg(RST, ISN_IN + 1, 0, 0)), Err(DropReason::TcpOutOfWindow));
        c.send(IN, seg(RST, isn + 1, 0, 0)).unwrap();
        assert!(c.track().is_closed());
    }

    #[test]
    fn only_a_bare_syn_opens_a_connection() {
        assert!(opens_connection(SYN));
        assert!(opens_connection(SYN | 0xc0), "ECN setup SYN");
        for flags in [ACK, RST, RST | ACK, FIN | ACK, SYN | ACK, SYN | FIN, SYN | RST, 0] {
            assert!(!opens_connection(flags), "{flags:#x}");
        }
    }

    #[test]
    fn parse_counts_syn_fin_and_payload_and_reads_the_window_scale() {
        let mut b = vec![0u8; 24];
        b[4..8].copy_from_slice(&77u32.to_be_bytes());
        b[12] = 6 << 4;
        b[13] = SYN;
        b[14..16].copy_from_slice(&1234u16.to_be_bytes());
        b[20..24].copy_from_slice(&[1, 3, 3, 9]);
        let s = TcpSegment::parse(&b, 24);
        assert_eq!((s.flags, s.seq, s.len, s.window, s.wscale), (SYN, 77, 1, 1234, Some(9)));
        b[13] = FIN | ACK;
        b.extend_from_slice(b"data");
        let s = TcpSegment::parse(&b, 24);
        assert_eq!((s.len, s.wscale), (5, None));
    }

    proptest::proptest! {
        #[test]
        fn rst_and_fin_outside_the_window_leave_the_state_unchanged(
            distance in (OUT_WINDOW.max(IN_WINDOW) + 1)..=0x8000_0000u32,
            behind: bool,
            outbound: bool,
            flags in proptest::sample::select(vec![RST, RST | ACK, FIN, FIN | ACK, FIN | ACK | 0x08]),
            payload in 0u32..1500,
        ) {
            let c = handshake();
            let next = if outbound { ISN_OUT.wrapping_add(1) } else { ISN_IN + 1 };
            let seq = if behind { next.wrapping_sub(distance) } else { next.wrapping_add(distance) };
            let before = c.snapshot();
            proptest::prop_assert_eq!(c.send(outbound, seg(flags, seq, payload, 65535)), Err(DropReason::TcpOutOfWindow));
            proptest::prop_assert_eq!(c.snapshot(), before);
            proptest::prop_assert!(c.track().is_established());
        }

        #[test]
        fn after_any_transfer_the_senders_reset_is_accepted(
            sizes in proptest::collection::vec(0u32..65_000, 1..400),
            window in 1u16..=0xffff,
            shift in 0u8..=14,
        ) {
            // Whatever the segment sizes (TSO-sized ones included) and windows, the tracked
            // next sequence number stays within the bound of the real one.
            let c = Conn::default();
            c.send(OUT, syn(SYN, ISN_OUT, 64240, Some(shift))).unwrap();
            c.send(IN, syn(SYN | ACK, ISN_IN, 65535, Some(shift))).unwrap();
            c.send(OUT, seg(ACK, ISN_OUT.wrapping_add(1), 0, window)).unwrap();
            let max = (u32::from(window) << shift).max(MIN_WINDOW);
            let mut seq = ISN_IN + 1;
            for size in sizes {
                let size = size.min(max);
                c.send(IN, seg(ACK, seq, size, 100)).unwrap();
                seq = seq.wrapping_add(size);
            }
            proptest::prop_assert!(c.seqs.in_window(IN, &seg(RST, seq, 0, 0)));
            proptest::prop_assert!(c.seqs.in_window(IN, &seg(FIN, seq, 0, 0)));
            c.send(IN, seg(RST, seq, 0, 0)).unwrap();
            proptest::prop_assert!(c.track().is_closed());
        }
    }
}
