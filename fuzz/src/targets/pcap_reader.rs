//! Bytes as a capture file into the pcap/pcapng reader of netnat-capture.
//!
//! Checked: nothing panics (a malformed file is an error, never a panic); every frame's IPv4
//! offset can be sliced at; and every frame read back through the pcap writer and the
//! reader again comes out the same (link type, bytes, original length, timestamp).

use std::io::Cursor;

use netnat_capture::pcap::{PcapReader, PcapWriter};

/// Frames read per input: enough to reach every block of a fuzzer-sized file.
const MAX_FRAMES: usize = 4096;

/// Runs one input: the bytes of a capture file.
pub fn fuzz_one(data: &[u8]) {
    let Ok(reader) = PcapReader::from_reader(Cursor::new(data.to_vec()), "fuzz.pcap") else { return };
    let link_type = reader.link_type();
    let mut frames = Vec::new();
    for frame in reader.take(MAX_FRAMES) {
        let Ok(frame) = frame else { break };
        assert_eq!(frame.link_type, link_type, "a frame with another link type than the file");
        if let Some(at) = frame.ipv4_offset {
            // The offset points at an IPv4 header's first byte (observation O2, fixed: an
            // empty frame of a LINKTYPE_IPV4 capture used to get offset 0).
            assert!(at < frame.data.len(), "IPv4 offset {at} at or beyond a frame of {} bytes", frame.data.len());
        }
        frames.push(frame);
    }
    let Ok(mut writer) = PcapWriter::new(Vec::new(), link_type, "roundtrip.pcap") else { return };
    let mut written = Vec::new();
    for f in frames {
        if writer.write_frame(&f).is_ok() {
            written.push(f);
        }
    }
    let bytes = writer.finish().expect("writing to memory cannot fail");
    let back = PcapReader::from_reader(Cursor::new(bytes), "roundtrip.pcap").expect("our own pcap reads back");
    let back: Vec<_> = back.map(|f| f.expect("our own frame reads back")).collect();
    assert_eq!(back.len(), written.len(), "frame count changed through write and read");
    for (a, b) in written.iter().zip(&back) {
        assert_eq!(a.data, b.data, "frame bytes changed through write and read");
        assert_eq!(a.timestamp_micros, b.timestamp_micros, "timestamp changed through write and read");
        assert_eq!(a.original_len.max(a.data.len() as u32), b.original_len, "original length changed");
        assert_eq!(a.ipv4_offset, b.ipv4_offset, "IPv4 offset changed through write and read");
    }
}
