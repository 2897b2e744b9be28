//! Where the replay loop's frames go: a [`Sink`] per output.
//!
//! - `PcapWriter` — the plain pcap output. It is the path `bench/replay` measures, and the
//!   loop is generic over its sink so that this one compiles to what it was before sinks
//!   existed: it wants no [`Note`], so no packet is copied and no note is built for it.
//! - [`AnnotatedPcapNg`] — pcapng, every frame with a comment saying what the engine did
//!   (`-o x.pcapng`, `--drops x.pcapng`, `--format pcapng`).
//! - [`Recorder`] — keeps the output in memory for `--expect` to compare.
//! - [`Fanout`] — several of these at once (`-o x.pcapng --expect y.pcap`).
//!
//! A [`Note`] carries what the engine decided; the comment only puts it into words (and reads
//! the addresses it shows from the packets before and after translation). Nothing here
//! decides what a packet is: direction and verdict are the engine's, drop reasons too.

use std::fmt::Write as _;

use netnat_capture::pcap::{LinkType, PcapNgWriter, PcapWriter};
use netnat_engine::{Direction, DropReason};

use super::dissect::{self, Flow};
use super::output::AtomicFile;

/// What the engine did with a frame, for the sinks that say so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Note<'a> {
    /// Translated (`Verdict::Forward`). `before` is the frame as it came in, whose IPv4
    /// header starts at `ipv4_offset`; it is empty when no sink wants notes.
    Translated {
        /// Which way it crossed the NAT.
        direction: Direction,
        /// The frame before translation.
        before: &'a [u8],
        /// Where its IPv4 header starts.
        ipv4_offset: usize,
    },
    /// A held fragment the engine released, translated (`direction` `None`: released
    /// unchanged, not the NAT's business).
    Released {
        /// Which way it crossed the NAT.
        direction: Option<Direction>,
        /// The frame before translation.
        before: &'a [u8],
        /// Where its IPv4 header starts.
        ipv4_offset: usize,
    },
    /// IPv4 that is not the NAT's business (`Verdict::Pass`), unchanged.
    Passed,
    /// A frame without IPv4, unchanged.
    NotIpv4,
    /// Dropped by the engine (`Verdict::Drop`), as it came in.
    Dropped(DropReason),
    /// A fragment the engine held and never released: its first fragment did not come.
    NeverReleased,
}

/// One frame for a sink.
#[derive(Clone, Copy, Debug)]
pub struct Written<'a> {
    /// Capture time, microseconds since the Unix epoch.
    pub timestamp_micros: u64,
    /// The frame, link header included.
    pub data: &'a [u8],
    /// Length on the wire (0: `data.len()`).
    pub original_len: u32,
    /// What happened to it.
    pub note: Note<'a>,
}

/// An output of the replay.
pub trait Sink {
    /// Whether [`Sink::write`] uses `note`'s `before` (the loop then keeps a copy of each
    /// packet as it came in, which costs a copy per packet).
    fn wants_notes(&self) -> bool;

    /// Writes one frame.
    fn write(&mut self, frame: &Written<'_>) -> anyhow::Result<()>;

    /// Completes the output (flushes the file and renames it into place).
    fn finish(self: Box<Self>) -> anyhow::Result<()>;
}

impl Sink for PcapWriter<AtomicFile> {
    #[inline]
    fn wants_notes(&self) -> bool {
        false
    }

    #[inline]
    fn write(&mut self, frame: &Written<'_>) -> anyhow::Result<()> {
        PcapWriter::write(self, frame.timestamp_micros, frame.data, frame.original_len)?;
        Ok(())
    }

    fn finish(self: Box<Self>) -> anyhow::Result<()> {
        PcapWriter::finish(*self)?.commit()
    }
}

/// A pcapng output whose every frame carries a comment (see [`comment`]).
#[derive(Debug)]
pub struct AnnotatedPcapNg {
    writer: PcapNgWriter<AtomicFile>,
    link_type: LinkType,
    /// Reused for every comment.
    text: String,
}

impl AnnotatedPcapNg {
    /// Wraps a pcapng writer whose frames have link type `link_type`.
    pub fn new(writer: PcapNgWriter<AtomicFile>) -> AnnotatedPcapNg {
        let link_type = writer.link_type();
        AnnotatedPcapNg { writer, link_type, text: String::new() }
    }
}

impl Sink for AnnotatedPcapNg {
    fn wants_notes(&self) -> bool {
        true
    }

    fn write(&mut self, frame: &Written<'_>) -> anyhow::Result<()> {
        self.text.clear();
        comment(&mut self.text, self.link_type, frame);
        self.writer.write(frame.timestamp_micros, frame.data, frame.original_len, Some(&self.text))?;
        Ok(())
    }

    fn finish(self: Box<Self>) -> anyhow::Result<()> {
        self.writer.finish()?.commit()
    }
}

/// One recorded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// Capture time, microseconds since the Unix epoch.
    pub timestamp_micros: u64,
    /// The frame.
    pub data: Vec<u8>,
}

/// Keeps every frame in memory (for `--expect`).
#[derive(Debug)]
pub struct Recorder<'a> {
    /// Where the frames go.
    pub frames: &'a mut Vec<Recorded>,
}

impl Sink for Recorder<'_> {
    fn wants_notes(&self) -> bool {
        false
    }

    fn write(&mut self, frame: &Written<'_>) -> anyhow::Result<()> {
        self.frames.push(Recorded { timestamp_micros: frame.timestamp_micros, data: frame.data.to_vec() });
        Ok(())
    }

    fn finish(self: Box<Self>) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Several sinks fed the same frames.
pub struct Fanout<'a> {
    sinks: Vec<Box<dyn Sink + 'a>>,
    notes: bool,
}

impl std::fmt::Debug for Fanout<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout").field("sinks", &self.sinks.len()).finish()
    }
}

impl<'a> Fanout<'a> {
    /// Feeds every one of `sinks`.
    pub fn new(sinks: Vec<Box<dyn Sink + 'a>>) -> Fanout<'a> {
        let notes = sinks.iter().any(|s| s.wants_notes());
        Fanout { sinks, notes }
    }
}

impl Sink for Fanout<'_> {
    fn wants_notes(&self) -> bool {
        self.notes
    }

    fn write(&mut self, frame: &Written<'_>) -> anyhow::Result<()> {
        self.sinks.iter_mut().try_for_each(|s| s.write(frame))
    }

    fn finish(self: Box<Self>) -> anyhow::Result<()> {
        self.sinks.into_iter().try_for_each(|s| s.finish())
    }
}

fn direction_name(direction: Direction) -> &'static str {
    match direction {
        Direction::Outbound => "outbound",
        Direction::Inbound => "inbound",
        Direction::Hairpin => "hairpin",
    }
}

/// The session a translated packet belongs to, as `internal -> external -> remote proto`,
/// read from the packet before (`before`) and after (`after`) translation:
/// outbound, the source was internal and became external; inbound, the destination was
/// external and became internal; hairpin, both (the remote is then the other internal host's
/// external endpoint, which is named too).
fn session(direction: Direction, before: &Flow, after: &Flow) -> String {
    match direction {
        Direction::Outbound => format!("{} -> {} -> {} {}", before.src, after.src, after.dst, after.protocol),
        Direction::Inbound => format!("{} -> {} -> {} {}", after.dst, before.dst, before.src, after.protocol),
        Direction::Hairpin => format!(
            "{} -> {} -> {} {} (hairpinned to {})",
            before.src, after.src, before.dst, after.protocol, after.dst
        ),
    }
}

/// Writes the comment of `frame` into `out`, e.g.
/// `verdict: translated; direction: outbound; session: 10.100.0.2:40000 -> 203.0.113.1:1025 -> 198.51.100.7:53 udp; in: 10.100.0.2:40000 -> 198.51.100.7:53 udp`
/// or `verdict: dropped; reason: no_mapping; packet: 198.51.100.7:53 -> 203.0.113.1:999 udp`.
/// Parts are `; `-separated `name: value` pairs, so `frame.comment contains "verdict: dropped"`
/// finds the drops in Wireshark.
pub fn comment(out: &mut String, link: LinkType, frame: &Written<'_>) {
    let fields = dissect::dissect(link, frame.data);
    let packet = dissect::brief(&fields);
    // Writing to a String cannot fail, so the results of write! are ignored.
    match frame.note {
        Note::Translated { direction, before, ipv4_offset }
        | Note::Released { direction: Some(direction), before, ipv4_offset } => {
            let _ = write!(out, "verdict: translated; direction: {}", direction_name(direction));
            if matches!(frame.note, Note::Released { .. }) {
                out.push_str("; held: a fragment that came before its first one, released by it");
            }
            // The frame as it came in has the same link type and link header.
            let before = (before.len() > ipv4_offset).then(|| dissect::dissect(link, before));
            if let (Some(b), Some(a)) = (before.as_deref().and_then(dissect::flow), dissect::flow(&fields)) {
                let _ = write!(out, "; session: {}", session(direction, &b, &a));
            }
            if let Some(b) = &before {
                let _ = write!(out, "; in: {}", dissect::brief(b));
            }
        }
        Note::Released { direction: None, .. } => {
            let _ = write!(
                out,
                "verdict: passed; reason: not the NAT's business; held: a fragment released by its first one; packet: {packet}"
            );
        }
        Note::Passed => {
            let _ = write!(out, "verdict: passed; reason: not the NAT's business; packet: {packet}");
        }
        Note::NotIpv4 => {
            let _ = write!(out, "verdict: passed; reason: {packet}");
        }
        Note::Dropped(reason) => {
            let _ = write!(out, "verdict: dropped; reason: {}; packet: {packet}", reason.name());
        }
        Note::NeverReleased => {
            let _ = write!(
                out,
                "verdict: dropped; reason: held fragment never released (its first fragment did not come); packet: {packet}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
        let mut out = Vec::new();
        etherparse::PacketBuilder::ipv4(src, dst, 64).udp(sport, dport).write(&mut out, &[1, 2, 3]).unwrap();
        out
    }

    fn text(note: Note<'_>, data: &[u8]) -> String {
        let mut s = String::new();
        comment(&mut s, LinkType::Raw, &Written { timestamp_micros: 1, data, original_len: 0, note });
        s
    }

    #[test]
    fn comments_name_verdict_direction_session_and_the_packet_as_it_came() {
        let before = udp([10, 100, 0, 2], 40000, [198, 51, 100, 7], 53);
        let after = udp([203, 0, 113, 1], 1025, [198, 51, 100, 7], 53);
        let note = Note::Translated { direction: Direction::Outbound, before: &before, ipv4_offset: 0 };
        assert_eq!(
            text(note, &after),
            "verdict: translated; direction: outbound; \
             session: 10.100.0.2:40000 -> 203.0.113.1:1025 -> 198.51.100.7:53 udp; \
             in: 10.100.0.2:40000 -> 198.51.100.7:53 udp"
        );
        // The reply: the same session, read from the other side.
        let note = Note::Translated {
            direction: Direction::Inbound,
            before: &udp([198, 51, 100, 7], 53, [203, 0, 113, 1], 1025),
            ipv4_offset: 0,
        };
        let s = text(note, &udp([198, 51, 100, 7], 53, [10, 100, 0, 2], 40000));
        assert!(
            s.contains("direction: inbound; session: 10.100.0.2:40000 -> 203.0.113.1:1025 -> 198.51.100.7:53 udp"),
            "{s}"
        );

        let hairpin_before = udp([10, 100, 0, 2], 40000, [203, 0, 113, 1], 8080);
        let hairpin_after = udp([203, 0, 113, 1], 1025, [10, 100, 0, 3], 80);
        let note = Note::Translated { direction: Direction::Hairpin, before: &hairpin_before, ipv4_offset: 0 };
        let s = text(note, &hairpin_after);
        assert!(
            s.contains(
                "session: 10.100.0.2:40000 -> 203.0.113.1:1025 -> 203.0.113.1:8080 udp (hairpinned to 10.100.0.3:80)"
            ),
            "{s}"
        );

        let s = text(Note::Dropped(DropReason::NoMapping), &before);
        assert_eq!(s, "verdict: dropped; reason: no_mapping; packet: 10.100.0.2:40000 -> 198.51.100.7:53 udp");
        let s = text(Note::Passed, &udp([192, 0, 2, 1], 5, [192, 0, 2, 2], 6));
        assert_eq!(s, "verdict: passed; reason: not the NAT's business; packet: 192.0.2.1:5 -> 192.0.2.2:6 udp");
        let s = text(Note::NeverReleased, &before);
        assert!(s.starts_with("verdict: dropped; reason: held fragment never released"), "{s}");
        let released = Note::Released { direction: Some(Direction::Outbound), before: &before, ipv4_offset: 0 };
        assert!(text(released, &after).contains("held: "), "released fragments say so");
    }
}
