//! A capture file as a capture backend: how `netnat replay` runs through the daemon's worker
//! loop (`daemon::worker_loop::run`), the one NFQUEUE and WinDivert run.
//!
//! [`ReplayCapture::recv_batch`] reads frames into the batch, each with its link header in
//! front of its IPv4 packet, its capture timestamp, and `meta.not_ipv4` for frames without
//! IPv4 (the translator leaves those alone). [`ReplayCapture::send_batch`] writes each frame
//! as the engine's verdict in `meta.verdict` says: translated, passed or without IPv4 to the
//! output (with a [`Note`] for the sinks that want one), dropped ones as they came in to
//! `--drops`, held fragments kept, with their link header, until the engine releases them.
//!
//! Order: the output keeps the input's order, with a released fragment right after the frame
//! that released it. A batch therefore ends after any non-first fragment (only those can be
//! held), and while the engine holds fragments each batch is one frame, after which the
//! engine's released packets are written. The engine's event queue is drained every
//! [`DRAIN_EVERY`] frames exactly: no batch runs past a multiple of it.

use std::time::Duration;

use netnat_capture::pcap::{Frame, LinkType, PcapReader};
use netnat_capture::{Batch, Capture, CaptureError};
use netnat_engine::{Direction, HeldId, Instant, Nat, Verdict};

use super::events::{EventWriter, DRAIN_EVERY};
use super::sink::{Note, Sink};
use super::summary::ReplayCounts;

/// How often (in frames) the progress bar is updated.
const PROGRESS_EVERY: u64 = 1024;

/// What the capture keeps of a frame of the current batch until it is written.
#[derive(Debug, Default)]
struct Received {
    /// The frame as it came in, when an output wants it (notes, `--drops`): the engine
    /// rewrites the batch's copy.
    original: Vec<u8>,
    /// Its captured length, link header and any trailer included.
    len: usize,
    /// Its length on the wire.
    wire_len: u32,
}

/// A frame whose IPv4 packet the engine holds (a fragment that came before its first one).
#[derive(Debug)]
struct HeldFrame {
    /// The engine's id for it, which comes back with the released packet.
    id: HeldId,
    /// Its capture timestamp.
    timestamp_micros: u64,
    /// The frame as it came in.
    data: Vec<u8>,
    /// Its length on the wire.
    wire_len: u32,
    /// Where its IPv4 header starts.
    offset: usize,
}

/// Where a replay's frames and events go.
pub struct Outputs<'r, 'd, O: Sink> {
    /// The translated capture.
    pub output: &'r mut O,
    /// The dropped frames as they came in (`--drops`).
    pub drops: Option<&'r mut (dyn Sink + 'd)>,
    /// The engine's session events (`--events`, `--ipfix-collector`).
    pub events: Option<&'r mut EventWriter>,
    /// Moved on as the input is read.
    pub progress: &'r indicatif::ProgressBar,
}

/// A capture file in; the replay's outputs out. `engine` is the one engine of the replay's
/// dataplane, whose released fragments and events this writes.
pub struct ReplayCapture<'r, 'd, O: Sink> {
    reader: &'r mut PcapReader,
    engine: &'r Nat,
    out: Outputs<'r, 'd, O>,
    link_type: LinkType,
    frames_per_batch: usize,
    /// For pcapng frames, which the reader copies out of their blocks first.
    scratch: Frame,
    /// `received[i]`: packet `i` of the current batch.
    received: Vec<Received>,
    /// Whether frames are copied as they came in (an output wants them).
    keep_originals: bool,
    /// Whether the output wants notes.
    notes: bool,
    held: Vec<HeldFrame>,
    counts: ReplayCounts,
    /// The first error of an output, returned by the replay as it was.
    failure: Option<anyhow::Error>,
}

impl<O: Sink> std::fmt::Debug for ReplayCapture<'_, '_, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayCapture").field("counts", &self.counts).field("held", &self.held.len()).finish()
    }
}

impl<'r, 'd, O: Sink> ReplayCapture<'r, 'd, O> {
    /// Frames of `reader`, at most `frames_per_batch` a batch, to `out`.
    pub fn new(reader: &'r mut PcapReader, engine: &'r Nat, out: Outputs<'r, 'd, O>, frames_per_batch: usize) -> Self {
        let link_type = reader.link_type();
        let notes = out.output.wants_notes();
        ReplayCapture {
            keep_originals: notes || out.drops.is_some(),
            notes,
            reader,
            engine,
            out,
            link_type,
            frames_per_batch: frames_per_batch.max(1),
            scratch: Frame::empty(link_type),
            received: Vec::new(),
            held: Vec::new(),
            counts: ReplayCounts::default(),
            failure: None,
        }
    }

    /// The first error of an output, if one stopped the capture.
    pub fn take_failure(&mut self) -> Option<anyhow::Error> {
        self.failure.take()
    }

    /// After the worker loop ended: expires what the last timestamp `now` expires (so the
    /// session table is the one at the end), writes what that released, drains the last
    /// events and writes the fragments never released to `--drops`.
    pub fn finish(mut self, now: Instant) -> anyhow::Result<ReplayCounts> {
        if self.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.engine.handle_timeout(now);
        }
        self.write_released()?;
        if let Some(events) = self.out.events.as_deref_mut() {
            events.drain(self.engine)?;
        }
        // Fragments never released were dropped (their first fragment never came or came too late).
        if let Some(drops) = self.out.drops.as_deref_mut() {
            for h in &self.held {
                drops.write(h.timestamp_micros, &h.data, h.wire_len, Some(&Note::NeverReleased))?;
            }
        }
        self.out.progress.set_position(self.reader.bytes_consumed());
        Ok(self.counts)
    }

    /// Keeps `e` for the replay to return, and stops the worker loop.
    fn fail(&mut self, e: anyhow::Error) -> CaptureError {
        let reason = format!("{e:#}");
        self.failure.get_or_insert(e);
        CaptureError::Stopped { reason }
    }

    /// Writes packet `i` of a sent batch as its verdict says.
    fn write_frame(&mut self, p: &mut netnat_capture::Packet, i: usize) -> anyhow::Result<()> {
        let frame = &self.received[i];
        let before = frame.original.as_slice();
        let offset = p.l3_offset();
        let counts = &mut self.counts;
        if p.meta.not_ipv4 {
            counts.non_ipv4 += 1;
            return write(self.out.output, self.notes, p.timestamp_us(), p.data(), frame, || Note::NotIpv4, counts);
        }
        counts.ipv4 += 1;
        match p.meta.verdict {
            Some(Verdict::Forward { direction, len }) => {
                count_direction(counts, direction);
                // An Ethernet frame keeps its trailer (padding), which the engine left as it was.
                p.set_len(forwarded_end(self.link_type, offset, len, frame.len));
                let note = || Note::Translated { direction, before, ipv4_offset: offset };
                write(self.out.output, self.notes, p.timestamp_us(), p.data(), frame, note, counts)
            }
            Some(Verdict::Pass) | None => {
                counts.passed += 1;
                write(self.out.output, self.notes, p.timestamp_us(), p.data(), frame, || Note::Passed, counts)
            }
            Some(Verdict::Held(id)) => {
                counts.held += 1;
                let data = if self.keep_originals { before.to_vec() } else { p.data().to_vec() };
                let (timestamp_micros, wire_len) = (p.timestamp_us(), frame.wire_len);
                self.held.push(HeldFrame { id, timestamp_micros, data, wire_len, offset });
                Ok(())
            }
            Some(Verdict::Drop(reason)) => {
                counts.dropped += 1;
                if let Some(drops) = self.out.drops.as_deref_mut() {
                    drops.write(p.timestamp_us(), before, frame.wire_len, Some(&Note::Dropped(reason)))?;
                }
                Ok(())
            }
        }
    }

    /// Writes every packet the engine releases, behind the link header it came with.
    fn write_released(&mut self) -> anyhow::Result<()> {
        while let Some(released) = self.engine.poll_released() {
            let counts = &mut self.counts;
            counts.released += 1;
            match released.direction {
                Some(direction) => count_direction(counts, direction),
                None => counts.passed += 1,
            }
            let direction = released.direction;
            let Some(at) = self.held.iter().position(|h| h.id == released.held) else {
                // The engine released a packet it never said it held: write it with no link
                // header only if the capture has none, otherwise it cannot be framed.
                if self.link_type != LinkType::Ethernet {
                    let note = Note::Released { direction, before: &[], ipv4_offset: 0 };
                    self.out.output.write(released.received.as_micros(), &released.packet, 0, Some(&note))?;
                    counts.packets_written += 1;
                }
                continue;
            };
            let h = self.held.remove(at);
            let mut data = h.data[..h.offset].to_vec();
            data.extend_from_slice(&released.packet);
            let note = Note::Released { direction, before: &h.data, ipv4_offset: h.offset };
            self.out.output.write(h.timestamp_micros, &data, 0, Some(&note))?;
            counts.packets_written += 1;
        }
        Ok(())
    }

    /// After a batch was written: what the engine released, its events, the progress bar.
    fn after_batch(&mut self, read_before: u64) -> anyhow::Result<()> {
        // The engine releases only packets it answered `Held` for, and every one of those is
        // in `held` until released: with nothing held there is nothing to poll (and no lock
        // to take).
        if !self.held.is_empty() {
            self.write_released()?;
        }
        let read = self.counts.packets_read;
        if let Some(events) = self.out.events.as_deref_mut().filter(|_| read % DRAIN_EVERY == 0) {
            events.drain(self.engine)?;
        }
        if read / PROGRESS_EVERY != read_before / PROGRESS_EVERY {
            self.out.progress.set_position(self.reader.bytes_consumed());
        }
        Ok(())
    }
}

impl<O: Sink> Capture for ReplayCapture<'_, '_, O> {
    /// Reads the next frames; a file never waits, so `timeout` is not used. At the end of the
    /// input: `Closed` (after the last frames were delivered).
    fn recv_batch(&mut self, batch: &mut Batch, _timeout: Option<Duration>) -> Result<usize, CaptureError> {
        batch.clear();
        let mut limit = if self.held.is_empty() { self.frames_per_batch.min(batch.capacity()) } else { 1 };
        if self.out.events.is_some() {
            limit = limit.min((DRAIN_EVERY - self.counts.packets_read % DRAIN_EVERY) as usize);
        }
        while batch.len() < limit {
            let i = batch.len();
            let slot = batch.push_slot().expect("the limit is within the batch's capacity");
            let Some(frame) = self.reader.read_frame_into(slot.buffer_mut(), &mut self.scratch)? else {
                batch.truncate(i);
                break;
            };
            self.counts.packets_read += 1;
            slot.set_len(frame.len);
            slot.set_l3_offset(frame.ipv4_offset.unwrap_or(frame.len));
            slot.set_timestamp_us(frame.timestamp_micros);
            slot.meta.not_ipv4 = frame.ipv4_offset.is_none();
            if self.received.len() <= i {
                self.received.push(Received::default());
            }
            let received = &mut self.received[i];
            (received.len, received.wire_len) = (frame.len, frame.original_len);
            if self.keep_originals {
                received.original.clear();
                received.original.extend_from_slice(slot.data());
            }
            if frame.ipv4_offset.is_some() && is_later_fragment(slot.ip()) {
                break;
            }
        }
        if batch.is_empty() {
            return Err(CaptureError::Closed { backend: "replay" });
        }
        Ok(batch.len())
    }

    fn send_batch(&mut self, batch: &mut Batch) -> Result<(), CaptureError> {
        let read_before = self.counts.packets_read - batch.len() as u64;
        for (i, p) in batch.packets_mut().iter_mut().enumerate() {
            if let Err(e) = self.write_frame(p, i) {
                return Err(self.fail(e));
            }
        }
        self.after_batch(read_before).map_err(|e| self.fail(e))
    }
}

/// Whether an IPv4 packet is a non-first fragment (the only kind the engine may hold): its
/// fragment offset field is not 0. Read from the bytes, not through `wire::ipv4::Ipv4Packet`,
/// whose header checks cost 15 instructions a frame (callgrind) for a hint that only ends a
/// batch early.
fn is_later_fragment(ip: &[u8]) -> bool {
    ip.len() >= 8 && (ip[6] & 0x1f != 0 || ip[7] != 0)
}

/// Where a forwarded frame ends: an Ethernet frame keeps its trailer (padding) as it was (the
/// engine never lengthens a packet, so the frame's own length); a raw IP frame is the packet.
fn forwarded_end(link_type: LinkType, offset: usize, len: usize, frame_len: usize) -> usize {
    match link_type {
        LinkType::Ethernet => frame_len,
        LinkType::Raw | LinkType::Ipv4 => (offset + len).min(frame_len),
    }
}

fn count_direction(counts: &mut ReplayCounts, direction: Direction) {
    match direction {
        Direction::Outbound => counts.outbound += 1,
        Direction::Inbound => counts.inbound += 1,
        Direction::Hairpin => counts.hairpinned += 1,
    }
}

/// Writes `data`, the bytes of `frame` to write; `note` is built only when `notes` (the sink
/// wants them), so the plain pcap path builds none.
#[inline]
fn write<'a, O: Sink>(
    out: &mut O,
    notes: bool,
    timestamp_micros: u64,
    data: &[u8],
    frame: &Received,
    note: impl FnOnce() -> Note<'a>,
    counts: &mut ReplayCounts,
) -> anyhow::Result<()> {
    // A frame the capture cut short stays as short, with its original wire length.
    let wire_len = if data.len() == frame.len { frame.wire_len } else { 0 };
    let note = notes.then(note);
    out.write(timestamp_micros, data, wire_len, note.as_ref())?;
    counts.packets_written += 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::dataplane::{Addressing, Dataplane, LiveNat, Template};
    use crate::replay::sink::{Recorded, Recorder};
    use netnat_capture::pcap::PcapWriter;
    use std::net::Ipv4Addr;

    /// IPv4 `src -> 198.51.100.10`, UDP, with fragment field `frag` (offset in 8-byte units,
    /// 0x2000: more fragments) and `body` after the header.
    fn ipv4(src: [u8; 4], ident: u16, frag: u16, body: &[u8]) -> Vec<u8> {
        let total = u16::try_from(20 + body.len()).unwrap();
        let mut p = vec![0x45, 0];
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&ident.to_be_bytes());
        p.extend_from_slice(&frag.to_be_bytes());
        p.extend_from_slice(&[64, 17, 0, 0]);
        p.extend_from_slice(&src);
        p.extend_from_slice(&[198, 51, 100, 10]);
        p.extend_from_slice(body);
        netnat_engine::wire::ipv4::fill_checksum(&mut p);
        p
    }

    /// A UDP header `sport -> 53` saying `len` bytes, and 8 payload bytes (16 bytes: a whole
    /// datagram with `len` 16, the first fragment of one with more), no checksum.
    fn udp_header(sport: u16, len: u16) -> Vec<u8> {
        let mut u = sport.to_be_bytes().to_vec();
        u.extend_from_slice(&53u16.to_be_bytes());
        u.extend_from_slice(&len.to_be_bytes());
        u.extend_from_slice(&[0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        u
    }

    /// Replays raw-IPv4 `frames` (bytes, timestamp) through the worker loop; what comes out.
    fn replay(frames: &[(Vec<u8>, u64)]) -> (Vec<Recorded>, ReplayCounts) {
        let mut w = PcapWriter::new(Vec::new(), LinkType::Raw, "in.pcap").unwrap();
        for (data, ts) in frames {
            w.write(*ts, data, 0).unwrap();
        }
        let input = std::io::Cursor::new(w.finish().unwrap());
        let mut reader = PcapReader::from_reader(input, "in.pcap").unwrap();
        let mut config =
            netnat_engine::NatConfig::new("R", "10.100.0.0/16".parse().unwrap(), Ipv4Addr::new(203, 0, 113, 1));
        config.seed = 7;
        let template = Template { config, addressing: Addressing::Explicit };
        let plane = Dataplane::with_one_engine(LiveNat::new("R".into(), template, &[], &[]).unwrap());
        let mut out = Vec::new();
        let progress = indicatif::ProgressBar::hidden();
        let counts = super::super::translate::replay(
            &mut reader,
            &plane,
            &mut Recorder { frames: &mut out },
            None,
            None,
            &progress,
        )
        .unwrap();
        (out, counts)
    }

    /// A fragment that comes before its first one is held, and written right after the frame
    /// that released it, before the frames that followed in the same batch; every frame is
    /// translated (its source is the external address).
    #[test]
    fn a_released_fragment_follows_the_frame_that_released_it() {
        let first = udp_header(5000, 24);
        let frames = vec![
            (ipv4([10, 100, 0, 2], 0x1234, 2, &[9; 8]), 1), // the second fragment: held
            (ipv4([10, 100, 0, 2], 0x1234, 0x2000, &first[..16]), 2),
            (ipv4([10, 100, 0, 3], 1, 0, &udp_header(5001, 16)), 3),
            (ipv4([10, 100, 0, 4], 2, 0, &udp_header(5002, 16)), 4),
        ];
        let (out, counts) = replay(&frames);
        let order: Vec<u64> = out.iter().map(|f| f.timestamp_micros).collect();
        assert_eq!(order, [2, 1, 3, 4], "the released fragment keeps its timestamp and comes after its first");
        assert!(out.iter().all(|f| f.data[12..16] == [203, 0, 113, 1]), "all translated");
        assert_eq!((counts.held, counts.released, counts.outbound), (1, 1, 4), "{counts:?}");
    }

    /// More frames than a batch, timestamps going backwards once: all written in order, the
    /// clock held still for the late one.
    #[test]
    fn frames_beyond_a_batch_keep_their_order_and_late_timestamps_are_counted() {
        let mut frames: Vec<(Vec<u8>, u64)> = (0..200u16)
            .map(|i| (ipv4([10, 100, 1, (i % 250) as u8 + 1], i, 0, &udp_header(6000 + i, 16)), u64::from(i) + 10))
            .collect();
        frames[150].1 = 5;
        let (out, counts) = replay(&frames);
        let order: Vec<u64> = out.iter().map(|f| f.timestamp_micros).collect();
        let expected: Vec<u64> = frames.iter().map(|f| f.1).collect();
        assert_eq!(order, expected);
        assert_eq!((counts.packets_read, counts.packets_written, counts.timestamps_out_of_order), (200, 200, 1));
        assert_eq!(counts.clock_end_micros, 209);
    }

    #[test]
    fn forwarded_frames_keep_ethernet_padding_and_trim_raw() {
        assert_eq!(forwarded_end(LinkType::Ethernet, 14, 28, 60), 60);
        assert_eq!(forwarded_end(LinkType::Ethernet, 14, 46, 60), 60);
        assert_eq!(forwarded_end(LinkType::Raw, 0, 28, 30), 28);
        assert_eq!(forwarded_end(LinkType::Ipv4, 0, 40, 30), 30, "never beyond the frame");
    }
}
