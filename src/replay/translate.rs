//! The replay loop: frames from the reader through the engine into the writers.
//!
//! Invariants: the engine's clock is the frames' timestamps, held still when a timestamp goes
//! backwards (the engine requires `now` never to decrease); `handle_timeout` runs before a
//! frame whenever `poll_timeout` has passed; every frame the engine forwards or passes, and
//! every frame without IPv4, is written in input order with its own timestamp and its link
//! header untouched; held fragments are written when the engine releases them, with the
//! timestamp they came in with and the link header of the frame that carried them.

use netnat_capture::pcap::{Frame, LinkType, PcapReader};
use netnat_engine::{Direction, HeldId, Instant, Nat, Verdict};

use super::events::{EventWriter, DRAIN_EVERY};
use super::sink::{Note, Sink};
use super::summary::ReplayCounts;

/// How often (in frames) the progress bar is updated.
const PROGRESS_EVERY: u64 = 1024;

/// A frame whose IPv4 packet the engine holds (a fragment that came before its first one).
#[derive(Debug)]
struct HeldFrame {
    /// The engine's id for it, which comes back with the released packet.
    id: HeldId,
    /// The frame as it came in.
    frame: Frame,
    /// Where its IPv4 header starts.
    offset: usize,
}

/// Replays every frame of `reader` through `nat` into `output` (the translated capture) and
/// `drops` (the dropped frames as they came in). The engine's counters reach `nat.stats()`
/// when this returns (its [`netnat_engine::Worker`] is dropped here).
///
/// Generic over the output so that the plain pcap writer, the path `bench/replay` measures,
/// is called directly; the other outputs share one instance through `sink::Fanout`.
pub fn replay<O: Sink>(
    reader: &mut PcapReader,
    nat: &Nat,
    output: &mut O,
    mut drops: Option<&mut (dyn Sink + '_)>,
    mut events: Option<&mut EventWriter>,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<ReplayCounts> {
    let mut counts = ReplayCounts::default();
    let mut held: Vec<HeldFrame> = Vec::new();
    let mut clock = 0u64;
    let link_type = reader.link_type();
    let mut worker = nat.worker();
    // One buffer for every frame: the reader refills it, the engine rewrites it in place.
    let mut frame = Frame::empty(link_type);
    // The engine may have rewritten part of a packet it then drops; --drops wants it as it
    // came, and an annotated output shows it as it came: then each frame is copied first
    // (into one reused buffer).
    let notes = output.wants_notes();
    let mut original: Option<Vec<u8>> = (drops.is_some() || notes).then(Vec::new);
    while reader.read_frame(&mut frame)? {
        counts.packets_read += 1;
        if counts.packets_read % PROGRESS_EVERY == 0 {
            progress.set_position(reader.bytes_consumed());
        }
        if frame.timestamp_micros < clock {
            counts.timestamps_out_of_order += 1;
        }
        clock = clock.max(frame.timestamp_micros);
        let now = Instant::from_micros(clock);
        if nat.poll_timeout().is_some_and(|t| t <= now) {
            nat.handle_timeout(now);
        }
        let Some(offset) = frame.ipv4_offset else {
            counts.non_ipv4 += 1;
            write(output, notes, &frame, &frame.data, || Note::NotIpv4, &mut counts)?;
            continue;
        };
        counts.ipv4 += 1;
        if let Some(original) = original.as_mut() {
            original.clone_from(&frame.data);
        }
        match worker.handle_packet(now, &mut frame.data[offset..]) {
            Verdict::Forward { direction, len } => {
                count_direction(&mut counts, direction);
                let end = forwarded_end(frame.link_type, offset, len, frame.data.len());
                let before = original.as_deref().unwrap_or_default();
                let note = || Note::Translated { direction, before, ipv4_offset: offset };
                write(output, notes, &frame, &frame.data[..end], note, &mut counts)?;
            }
            Verdict::Pass => {
                counts.passed += 1;
                write(output, notes, &frame, &frame.data, || Note::Passed, &mut counts)?;
            }
            Verdict::Held(id) => {
                counts.held += 1;
                let mut frame = frame.clone();
                if let Some(original) = &original {
                    frame.data.clone_from(original);
                }
                held.push(HeldFrame { id, frame, offset });
            }
            Verdict::Drop(reason) => {
                counts.dropped += 1;
                if let (Some(drops), Some(original)) = (drops.as_deref_mut(), &original) {
                    drops.write(frame.timestamp_micros, original, frame.original_len, Some(&Note::Dropped(reason)))?;
                }
            }
        }
        // The engine releases only packets it answered `Held` for, and every one of those is
        // in `held` until released: with nothing held there is nothing to poll (and no lock
        // to take per packet).
        if !held.is_empty() {
            drain_released(nat, link_type, &mut held, output, &mut counts)?;
        }
        if let Some(events) = events.as_deref_mut().filter(|_| counts.packets_read % DRAIN_EVERY == 0) {
            events.drain(nat)?;
        }
    }
    drop(worker);
    // Expire what the last timestamp expires, so the session table is the one at the end.
    let now = Instant::from_micros(clock);
    if nat.poll_timeout().is_some_and(|t| t <= now) {
        nat.handle_timeout(now);
    }
    drain_released(nat, link_type, &mut held, output, &mut counts)?;
    if let Some(events) = events {
        events.drain(nat)?;
    }
    // Fragments never released were dropped (their first fragment never came or came too late).
    if let Some(drops) = drops {
        for h in &held {
            drops.write(h.frame.timestamp_micros, &h.frame.data, h.frame.original_len, Some(&Note::NeverReleased))?;
        }
    }
    progress.set_position(reader.bytes_consumed());
    counts.clock_end_micros = clock;
    Ok(counts)
}

/// Where a forwarded frame ends: an Ethernet frame keeps its trailer (padding) as it was; a
/// raw IP frame is the packet.
fn forwarded_end(link_type: LinkType, offset: usize, len: usize, frame_len: usize) -> usize {
    match link_type {
        LinkType::Ethernet => frame_len.max(offset + len).min(frame_len),
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

/// Writes `data`, the frame's bytes to write; `note` is built only when `notes` (the sink
/// wants them), so the plain pcap path builds none.
#[inline]
fn write<'a, O: Sink>(
    out: &mut O,
    notes: bool,
    frame: &Frame,
    data: &[u8],
    note: impl FnOnce() -> Note<'a>,
    counts: &mut ReplayCounts,
) -> anyhow::Result<()> {
    // A frame the capture cut short stays as short, with its original wire length.
    let original_len = if data.len() == frame.data.len() { frame.original_len } else { 0 };
    let note = notes.then(note);
    out.write(frame.timestamp_micros, data, original_len, note.as_ref())?;
    counts.packets_written += 1;
    Ok(())
}

/// Writes every packet the engine releases, behind the link header it came with.
fn drain_released<O: Sink>(
    nat: &Nat,
    link_type: LinkType,
    held: &mut Vec<HeldFrame>,
    output: &mut O,
    counts: &mut ReplayCounts,
) -> anyhow::Result<()> {
    while let Some(released) = nat.poll_released() {
        counts.released += 1;
        match released.direction {
            Some(direction) => count_direction(counts, direction),
            None => counts.passed += 1,
        }
        let direction = released.direction;
        let Some(at) = held.iter().position(|h| h.id == released.held) else {
            // The engine released a packet it never said it held: write it with no link
            // header only if the capture has none, otherwise it cannot be framed.
            if link_type != LinkType::Ethernet {
                let note = Note::Released { direction, before: &[], ipv4_offset: 0 };
                output.write(released.received.as_micros(), &released.packet, 0, Some(&note))?;
                counts.packets_written += 1;
            }
            continue;
        };
        let h = held.remove(at);
        let mut data = h.frame.data[..h.offset].to_vec();
        data.extend_from_slice(&released.packet);
        let note = Note::Released { direction, before: &h.frame.data, ipv4_offset: h.offset };
        output.write(h.frame.timestamp_micros, &data, 0, Some(&note))?;
        counts.packets_written += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_frames_keep_ethernet_padding_and_trim_raw() {
        assert_eq!(forwarded_end(LinkType::Ethernet, 14, 28, 60), 60);
        assert_eq!(forwarded_end(LinkType::Ethernet, 14, 46, 60), 60);
        assert_eq!(forwarded_end(LinkType::Raw, 0, 28, 30), 28);
        assert_eq!(forwarded_end(LinkType::Ipv4, 0, 40, 30), 30, "never beyond the frame");
    }
}
