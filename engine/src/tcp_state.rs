//! What the NAT tracks of a TCP connection: just enough to choose between WinNAT's two TCP
//! timers. A session is *transient* (TcpTransientConnectionTimeout) until the three-way
//! handshake completes, and again once a FIN has been seen in both directions or an RST in
//! either; it is *established* (TcpEstablishedConnectionTimeout) in between.

use crate::wire::tcp::{ACK, FIN, RST, SYN};

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
}
