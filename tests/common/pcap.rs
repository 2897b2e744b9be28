//! pcap / pcapng files for the scenarios: raw IPv4 (link type 101) and Ethernet (1).

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read};
use std::path::Path;
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::DataLink;

/// One captured packet: timestamp and the IPv4 packet (no link header).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rec {
    pub ts: Duration,
    pub data: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// LINKTYPE_RAW (101): the record is the IPv4 packet.
    Raw,
    /// LINKTYPE_ETHERNET (1): a 14-byte Ethernet II header, EtherType 0x0800.
    Ethernet,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Classic pcap, microsecond timestamps.
    Pcap,
    /// pcapng with the default timestamp resolution (microseconds, no `if_tsresol`), as
    /// tcpdump writes it.
    PcapNg,
    /// pcapng with `if_tsresol` = 9 (nanoseconds).
    PcapNgNanos,
}

/// MACs used in Ethernet inputs: frames go from the "vm" side to the "gateway" side; the
/// replay is expected to keep the link header as it is.
pub const ETH_DST: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x00, 0x01];
pub const ETH_SRC: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x00, 0x02];

impl Link {
    fn datalink(self) -> DataLink {
        match self {
            Link::Raw => DataLink::RAW,
            Link::Ethernet => DataLink::ETHERNET,
        }
    }
}

/// Wraps an IPv4 packet in an Ethernet II header.
pub fn eth_frame(ip: &[u8]) -> Vec<u8> {
    eth_frame_type(ip, 0x0800)
}

pub fn eth_frame_type(payload: &[u8], ethertype: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&ETH_DST);
    f.extend_from_slice(&ETH_SRC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Writes `recs` (link-layer frames already, see `frame_for`) to `path`.
pub fn write_frames(path: &Path, link: Link, format: Format, frames: &[(Duration, Vec<u8>)]) {
    let file = BufWriter::new(File::create(path).expect("create input pcap"));
    match format {
        Format::Pcap => {
            let header = PcapHeader { datalink: link.datalink(), ..Default::default() };
            let mut w = PcapWriter::with_header(file, header).expect("pcap header");
            for (ts, data) in frames {
                w.write_packet(&PcapPacket::new(*ts, data.len() as u32, data)).expect("write pcap packet");
            }
        }
        Format::PcapNg | Format::PcapNgNanos => {
            let nanos = format == Format::PcapNgNanos;
            let mut w = PcapNgWriter::new(file).expect("pcapng header");
            let mut idb = InterfaceDescriptionBlock::new(link.datalink(), 65535);
            if nanos {
                idb.options.push(InterfaceDescriptionOption::IfTsResol(9));
            }
            w.write_pcapng_block(idb).expect("pcapng idb");
            for (ts, data) in frames {
                // pcap-file 2.0 writes the EPB timestamp as a count of nanoseconds whatever
                // the interface's resolution; for the default (microsecond) resolution hand
                // it a Duration whose nanosecond count is the microsecond count.
                let timestamp = if nanos { *ts } else { std::time::Duration::from_nanos(ts.as_micros() as u64) };
                let epb = EnhancedPacketBlock {
                    interface_id: 0,
                    timestamp,
                    original_len: data.len() as u32,
                    data: Cow::Borrowed(data),
                    options: vec![],
                };
                w.write_pcapng_block(epb).expect("write pcapng packet");
            }
        }
    }
}

/// Reads a pcap (the contract says OUTPUT and --drops are pcap, same link type as the input).
/// Returns the link-layer frames.
pub fn read_frames(path: &Path, expect_link: Link) -> Vec<(Duration, Vec<u8>)> {
    let mut magic = [0u8; 4];
    File::open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
        .read_exact(&mut magic)
        .unwrap_or_else(|e| panic!("{} is shorter than a pcap header: {e}", path.display()));
    assert_ne!(
        magic,
        [0x0a, 0x0d, 0x0d, 0x0a],
        "{} is pcapng; the contract (§3.1) says OUTPUT is pcap",
        path.display()
    );
    let file = BufReader::new(File::open(path).expect("open pcap"));
    let mut r = PcapReader::new(file).unwrap_or_else(|e| panic!("{} is not a pcap: {e}", path.display()));
    assert_eq!(
        r.header().datalink,
        expect_link.datalink(),
        "{}: link type differs from the input's (contract: same link type)",
        path.display()
    );
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.unwrap_or_else(|e| panic!("{}: bad pcap record: {e}", path.display()));
        assert_eq!(p.orig_len as usize, p.data.len(), "{}: record truncated (orig_len != caplen)", path.display());
        out.push((p.timestamp, p.data.into_owned()));
    }
    out
}

/// The IPv4 packet of a frame (strips the Ethernet header, asserts it was kept).
pub fn ip_of_frame(link: Link, frame: &[u8]) -> Option<Vec<u8>> {
    match link {
        Link::Raw => Some(frame.to_vec()),
        Link::Ethernet => {
            assert!(frame.len() >= 14, "Ethernet frame shorter than its header");
            if frame[12..14] != [0x08, 0x00] {
                return None;
            }
            Some(frame[14..].to_vec())
        }
    }
}
