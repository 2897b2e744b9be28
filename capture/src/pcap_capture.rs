//! Capture files as a capture backend: frames are received from a pcap/pcapng reader and
//! what is accepted is written, as it then is, to a pcap writer. With it the daemon's worker
//! loop, the one NFQUEUE and WinDivert run, can be driven by a recorded capture without
//! root (see the worker loop's tests, which run the kernel sample through it).
//!
//! Each packet keeps its frame's link header (`l3_offset` is where its IPv4 header starts;
//! frames without IPv4 get an empty IPv4 part, so a dataplane leaves them alone) and its
//! capture timestamp. Dropped packets are counted, not written. The end of the input is
//! [`CaptureError::Closed`], which ends a worker loop; packets a caller adds to a batch
//! (released fragments) are written like any other.
//!
//! `netnat replay` keeps its own loop over [`PcapReader`]: its outputs note what the engine
//! decided for each frame (direction, drop reason, held fragments written where they are
//! released), which a capture verdict (accept or drop) does not carry.

use std::io::Write;
use std::time::Duration;

use crate::pcap::{Frame, PcapReader, PcapWriter};
use crate::{Action, Batch, Capture, CaptureError};

const BACKEND: &str = "pcap";

/// What a [`PcapCapture`] has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PcapCaptureStats {
    /// Frames read.
    pub received: u64,
    /// Packets written.
    pub written: u64,
    /// Packets dropped (not written).
    pub dropped: u64,
    /// Frames longer than the batch's buffers, written cut to them.
    pub truncated: u64,
}

/// A capture file in, a capture file out.
#[derive(Debug)]
pub struct PcapCapture<W: Write> {
    reader: PcapReader,
    writer: PcapWriter<W>,
    frame: Frame,
    stats: PcapCaptureStats,
}

impl<W: Write> PcapCapture<W> {
    /// Frames from `reader`; accepted packets to `writer` (whose link type should be the
    /// reader's, as the link headers are kept).
    pub fn new(reader: PcapReader, writer: PcapWriter<W>) -> Self {
        let frame = Frame::empty(reader.link_type());
        PcapCapture { reader, writer, frame, stats: PcapCaptureStats::default() }
    }

    /// Counters so far.
    pub fn stats(&self) -> PcapCaptureStats {
        self.stats
    }

    /// Flushes and returns the writer.
    pub fn finish(self) -> Result<W, CaptureError> {
        Ok(self.writer.finish()?)
    }
}

impl<W: Write> Capture for PcapCapture<W> {
    /// Reads up to a batch of frames; a file never waits, so `timeout` is not used. At the
    /// end of the input: `Closed` (after the last frames were delivered).
    fn recv_batch(&mut self, batch: &mut Batch, _timeout: Option<Duration>) -> Result<usize, CaptureError> {
        batch.clear();
        while batch.len() < batch.capacity() {
            if !self.reader.read_frame(&mut self.frame)? {
                break;
            }
            self.stats.received += 1;
            let frame = &self.frame;
            let slot = batch.push_slot().expect("room checked above");
            let l3_offset = frame.ipv4_offset.unwrap_or(frame.data.len());
            if slot.fill(&frame.data, l3_offset) < frame.data.len() {
                self.stats.truncated += 1;
            }
            slot.set_timestamp_us(frame.timestamp_micros);
        }
        if batch.is_empty() {
            return Err(CaptureError::Closed { backend: BACKEND });
        }
        Ok(batch.len())
    }

    fn send_batch(&mut self, batch: &mut Batch) -> Result<(), CaptureError> {
        for p in batch.iter() {
            if p.action() == Action::Drop {
                self.stats.dropped += 1;
                continue;
            }
            self.writer.write(p.timestamp_us(), p.data(), 0)?;
            self.stats.written += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcap::LinkType;

    /// A raw-IPv4 capture of `packets` (bytes, timestamp).
    fn capture(packets: &[(&[u8], u64)]) -> Vec<u8> {
        let mut w = PcapWriter::new(Vec::new(), LinkType::Raw, "in.pcap").unwrap();
        for (data, ts) in packets {
            w.write(*ts, data, 0).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn frames_come_in_batches_and_accepted_packets_go_out_rewritten_with_their_timestamps() {
        let a = [0x45u8, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 100, 0, 1, 203, 0, 113, 10];
        let mut b = a;
        b[15] = 2;
        let mut c = a;
        c[15] = 3;
        let input = capture(&[(&a, 1_000_001), (&b, 1_000_002), (&c, 1_000_003)]);
        let reader = PcapReader::from_reader(std::io::Cursor::new(input), "in.pcap").unwrap();
        let writer = PcapWriter::new(Vec::new(), LinkType::Raw, "out.pcap").unwrap();
        let mut cap = PcapCapture::new(reader, writer);
        let mut batch = Batch::new(2, 1500);
        assert_eq!(cap.recv_batch(&mut batch, None).unwrap(), 2);
        assert_eq!((batch.packets()[0].l3_offset(), batch.packets()[1].timestamp_us()), (0, 1_000_002));
        batch.iter_mut().next().unwrap().ip_mut()[12] = 198; // rewritten in place
        batch.packets_mut()[1].set_action(Action::Drop);
        cap.send_batch(&mut batch).unwrap();
        assert_eq!(cap.recv_batch(&mut batch, None).unwrap(), 1);
        cap.send_batch(&mut batch).unwrap();
        assert!(matches!(cap.recv_batch(&mut batch, None), Err(CaptureError::Closed { .. })));
        let stats = cap.stats();
        assert_eq!((stats.received, stats.written, stats.dropped), (3, 2, 1));
        let out = cap.finish().unwrap();
        let frames: Vec<Frame> =
            PcapReader::from_reader(std::io::Cursor::new(out), "out.pcap").unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!((frames[0].data[12], frames[0].timestamp_micros), (198, 1_000_001));
        assert_eq!((frames[1].data[15], frames[1].timestamp_micros), (3, 1_000_003));
    }

    #[test]
    fn an_unreadable_capture_is_an_error_that_names_the_file() {
        let mut input = capture(&[(&[0x45u8; 20], 1)]);
        input.truncate(input.len() - 5); // the last record cut short
        let reader = PcapReader::from_reader(std::io::Cursor::new(input), "cut.pcap").unwrap();
        let mut cap = PcapCapture::new(reader, PcapWriter::new(Vec::new(), LinkType::Raw, "out.pcap").unwrap());
        let e = cap.recv_batch(&mut Batch::new(4, 1500), None).unwrap_err();
        assert!(e.to_string().contains("cut.pcap"), "{e}");
    }
}
