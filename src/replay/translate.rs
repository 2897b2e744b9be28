//! The replay: frames from the capture file through the daemon's worker loop, the one the
//! NFQUEUE and WinDivert daemons run, into the outputs.
//!
//! Invariants: the engine's clock is the frames' timestamps, held still when a timestamp goes
//! backwards (the engine requires `now` never to decrease); `handle_timeout` runs before a
//! frame whenever `poll_timeout` has passed (the translator does, per packet); every frame the
//! engine forwards or passes, and every frame without IPv4, is written in input order with
//! its own timestamp and its link header untouched; held fragments are written when the
//! engine releases them, with the timestamp they came in with and the link header of the
//! frame that carried them (see [`super::capture`]).

use netnat_capture::pcap::{PcapReader, MAX_FRAME_LEN};
use netnat_capture::Packet;
use netnat_engine::Instant;

use super::capture::{Outputs, ReplayCapture};
use super::events::EventWriter;
use super::sink::Sink;
use super::summary::ReplayCounts;
use crate::daemon::dataplane::Dataplane;
use crate::daemon::worker_loop::{self, BatchSize, Egress, Timeline};

/// Frames a batch holds: enough that the loop's per-round work is small beside the frames'.
const FRAMES_PER_BATCH: usize = 16;

/// A recording's time: each packet's own timestamp, held still when one goes backwards.
#[derive(Clone, Copy, Debug, Default)]
struct RecordedTime {
    /// The latest timestamp so far, microseconds since the Unix epoch.
    latest: u64,
    /// Packets whose timestamp was earlier than one before them.
    out_of_order: u64,
}

impl Timeline for RecordedTime {
    fn round(&mut self) -> Instant {
        Instant::from_micros(self.latest)
    }

    #[inline]
    fn packet(&mut self, _: Instant, packet: &Packet) -> Instant {
        let at = packet.timestamp_us();
        if at < self.latest {
            self.out_of_order += 1;
        }
        self.latest = self.latest.max(at);
        Instant::from_micros(self.latest)
    }
}

/// What the replay does around the worker loop: nothing, as every frame, translated or
/// not, goes back to the capture, which writes it.
#[derive(Debug)]
struct ToTheFile;

impl<C> Egress<C> for ToTheFile {
    fn before_receive(&mut self, _: &mut C) -> Option<std::time::Duration> {
        None
    }

    #[inline]
    fn rewritten(&mut self, _: &mut Packet, _: crate::daemon::dataplane::Delivery) -> netnat_capture::Action {
        netnat_capture::Action::Accept
    }
}

/// Replays every frame of `reader` through `plane` (one engine, see
/// [`Dataplane::with_one_engine`]) into `output` (the translated capture) and `drops` (the
/// dropped frames as they came in). The engine's counters reach its stats when this returns
/// (the loop's workers are dropped with it).
///
/// Generic over the output so that the plain pcap writer, the path `bench/replay` measures,
/// is called directly; the other outputs share one instance through `sink::Fanout`.
pub fn replay<O: Sink>(
    reader: &mut PcapReader,
    plane: &Dataplane,
    output: &mut O,
    drops: Option<&mut (dyn Sink + '_)>,
    events: Option<&mut EventWriter>,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<ReplayCounts> {
    let instance = plane.nats().first().and_then(|n| n.instances().first().cloned());
    let instance = instance.ok_or_else(|| anyhow::anyhow!("the replay's dataplane has no engine"))?;
    let outputs = Outputs { output, drops, events, progress };
    let mut capture = ReplayCapture::new(reader, &instance.nat, outputs, FRAMES_PER_BATCH);
    let mut time = RecordedTime::default();
    let size = BatchSize { packets: FRAMES_PER_BATCH, spare: 0, max_len: MAX_FRAME_LEN as usize };
    let looped = worker_loop::run(&mut capture, &mut ToTheFile, plane, &mut time, size, |_| {});
    if let Some(e) = capture.take_failure() {
        return Err(e);
    }
    looped?;
    let mut counts = capture.finish(Instant::from_micros(time.latest))?;
    counts.timestamps_out_of_order = time.out_of_order;
    counts.clock_end_micros = time.latest;
    Ok(counts)
}
