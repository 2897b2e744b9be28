//! pcap / pcapng reading and pcap writing, for `netnat replay` and the tests.
//!
//! [`PcapReader`] reads classic pcap (either byte order, micro- or nanosecond timestamps) and
//! pcapng (every section and interface, each interface's `if_tsresol`), link types Ethernet
//! (1), raw IP (101) and IPv4 (228). It yields one [`Frame`] per packet: the timestamp in
//! microseconds since the Unix epoch, the frame bytes as captured, and where the IPv4 header
//! starts, if the frame carries IPv4 (Ethernet with ethertype 0x0800, also behind up to two
//! 802.1Q / 802.1ad VLAN tags). Frames that carry something else (ARP, IPv6) have no offset:
//! the caller passes them on unchanged. As an iterator it allocates each frame;
//! [`PcapReader::read_frame`] refills one the caller keeps, which is what the replay loop uses.
//!
//! [`PcapWriter`] writes classic pcap (microsecond timestamps, native byte order) with the
//! link type it is given, so a translated capture has the link type of its input.
//! [`PcapNgWriter`] writes pcapng, one interface of that link type, each frame an Enhanced
//! Packet Block with an optional comment (`opt_comment`, shown by Wireshark as the packet
//! comment and by tshark as `frame.comment`); it is a separate, slower type, so the pcap
//! writer's path is untouched by it.
//!
//! Errors name the file and the problem and say how to fix it; a malformed file is an error,
//! never a panic. What this module does not do: decide what a frame means to the NAT, or
//! what a comment says.

use std::borrow::Cow;
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Cursor, Read, Write};
use std::path::{Path, PathBuf};

use pcap_file::pcap::{PcapHeader, PcapParser, RawPcapPacket};
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::pcapng::{Block, PcapNgReader, PcapNgWriter as LibPcapNgWriter};
use pcap_file::{DataLink, PcapError as LibError, TsResolution};

/// Largest frame a pcap record may hold (libpcap's MAXIMUM_SNAPLEN); longer means corruption.
pub const MAX_FRAME_LEN: u32 = 262_144;

/// Ethertype of IPv4.
const ETHERTYPE_IPV4: u16 = 0x0800;
/// Ethertypes of 802.1Q and 802.1ad VLAN tags.
const ETHERTYPE_VLAN: [u16; 3] = [0x8100, 0x88a8, 0x9100];
/// Length of an Ethernet II header without VLAN tags.
const ETHERNET_HEADER_LEN: usize = 14;

/// The link types netnat reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// LINKTYPE_ETHERNET (1): Ethernet II frames.
    Ethernet,
    /// LINKTYPE_RAW (101): raw IP packets, IPv4 or IPv6 (the version nibble says which).
    Raw,
    /// LINKTYPE_IPV4 (228): raw IPv4 packets.
    Ipv4,
}

impl LinkType {
    /// The LINKTYPE_ number in pcap headers.
    pub const fn number(self) -> u32 {
        match self {
            LinkType::Ethernet => 1,
            LinkType::Raw => 101,
            LinkType::Ipv4 => 228,
        }
    }

    /// The link type with LINKTYPE_ number `n`, if netnat supports it.
    pub const fn from_number(n: u32) -> Option<LinkType> {
        match n {
            1 => Some(LinkType::Ethernet),
            101 => Some(LinkType::Raw),
            228 => Some(LinkType::Ipv4),
            _ => None,
        }
    }

    /// Where the IPv4 header of `frame` starts, or `None` when the frame does not carry IPv4
    /// (ARP, IPv6, a runt Ethernet frame).
    pub fn ipv4_offset(self, frame: &[u8]) -> Option<usize> {
        match self {
            LinkType::Ethernet => ethernet_ipv4_offset(frame),
            LinkType::Raw => (frame.first().map(|b| b >> 4) == Some(4)).then_some(0),
            LinkType::Ipv4 => (!frame.is_empty()).then_some(0),
        }
    }

    fn data_link(self) -> DataLink {
        DataLink::from(self.number())
    }
}

impl fmt::Display for LinkType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkType::Ethernet => f.write_str("Ethernet (1)"),
            LinkType::Raw => f.write_str("raw IP (101)"),
            LinkType::Ipv4 => f.write_str("IPv4 (228)"),
        }
    }
}

/// Skips the Ethernet header and up to two VLAN tags; `Some` only for ethertype IPv4.
fn ethernet_ipv4_offset(frame: &[u8]) -> Option<usize> {
    let mut at = ETHERNET_HEADER_LEN - 2;
    for _ in 0..3 {
        let ethertype = u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]);
        if ethertype == ETHERTYPE_IPV4 {
            return (frame.len() > at + 2).then_some(at + 2);
        }
        if !ETHERTYPE_VLAN.contains(&ethertype) {
            return None;
        }
        at += 4;
    }
    None
}

/// One captured frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Capture time in microseconds since the Unix epoch.
    pub timestamp_micros: u64,
    /// The link type of the capture.
    pub link_type: LinkType,
    /// The frame as captured, link header included.
    pub data: Vec<u8>,
    /// Length of the frame on the wire (more than `data.len()` when the capture cut it short).
    pub original_len: u32,
    /// Where the IPv4 header starts in `data`; `None` for frames that do not carry IPv4.
    pub ipv4_offset: Option<usize>,
}

impl Frame {
    /// A frame with no bytes, for [`PcapReader::read_frame`] to fill.
    pub fn empty(link_type: LinkType) -> Frame {
        Frame { timestamp_micros: 0, link_type, data: Vec::new(), original_len: 0, ipv4_offset: None }
    }
}

/// Why a capture could not be read or written. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    /// The file cannot be opened or read (missing, a directory, no permission, I/O error).
    #[error("cannot read {}: {source}; check the path and that the file is readable", .path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The file is empty.
    #[error("{} is empty; give a pcap or pcapng capture (e.g. from `tcpdump -w` or `tshark -w`)", .path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The file does not start like a pcap or pcapng file.
    #[error(
        "{} is not a pcap or pcapng file ({detail}); give a capture written by tcpdump, tshark, dumpcap or \
         Wireshark (`editcap -F pcap IN OUT` converts other formats)",
        .path.display()
    )]
    NotPcap {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        detail: String,
    },
    /// The file ends in the middle of a header or record.
    #[error(
        "{} is truncated: it ends in the middle of {what}; the capture was cut short (disk full, capture \
         killed?) — drop the partial record with `editcap IN OUT` or capture again",
        .path.display()
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Which header or record (e.g. "record 12").
        what: String,
    },
    /// A header or record holds impossible values.
    #[error("{} is corrupt at {what}: {detail}; check the file (`capinfos`, `tshark -r`) or capture again", .path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Which header or record.
        what: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The capture's link type is not one netnat reads.
    #[error(
        "{} has link type {link_type}, which netnat does not read; netnat reads Ethernet (1), raw IP (101) \
         and IPv4 (228) captures — capture on one interface rather than `any` (Linux cooked, 113/276), or \
         convert with `editcap -T ether IN OUT` where the frames allow it",
        .path.display()
    )]
    UnsupportedLinkType {
        /// The file.
        path: PathBuf,
        /// The link type number and name.
        link_type: String,
    },
    /// A pcapng file whose interfaces have different link types.
    #[error(
        "{} mixes link types ({first} and {other}); netnat writes one link type per output — split the capture \
         per interface first (`tshark -r IN -Y 'frame.interface_id == 0' -w OUT`)",
        .path.display()
    )]
    MixedLinkTypes {
        /// The file.
        path: PathBuf,
        /// The first interface's link type.
        first: LinkType,
        /// The differing one.
        other: LinkType,
    },
    /// The output cannot be written.
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
}

type Source = std::io::Chain<Cursor<[u8; 4]>, Box<dyn Read + Send>>;

enum Format {
    Classic { reader: ClassicRecords, ts_resolution: TsResolution },
    PcapNg { reader: PcapNgReader<Source> },
}

/// Bytes a classic pcap reader buffers: room for the largest record (`MAX_FRAME_LEN` plus its
/// 16-byte header) and small enough to stay in a core's L2 cache. pcap-file's own reader reads
/// 8 MB at a time, past L2: copying each frame out of that buffer was 9.5 % of a replay's
/// samples, and the replay of bench/replay's 1 M 64-byte frames took 238 ms of CPU with an
/// 8 MB buffer against 205 ms with this one (perf stat task-clock, median of 12 alternated
/// runs; user 140 vs 125 ms, system 70 vs 53 ms).
const CLASSIC_READ_BUFFER: usize = 512 << 10;

/// Classic pcap records, parsed by pcap-file's [`PcapParser`] out of a buffer this reader
/// owns (see [`CLASSIC_READ_BUFFER`]).
struct ClassicRecords {
    parser: PcapParser,
    input: Box<dyn Read + Send>,
    buf: Box<[u8]>,
    /// `buf[start..end]` is read and not yet parsed.
    start: usize,
    end: usize,
    eof: bool,
}

impl ClassicRecords {
    /// Reads the file header; `magic` is its first four bytes, already read from `input`.
    fn new(magic: [u8; 4], mut input: Box<dyn Read + Send>) -> Result<ClassicRecords, LibError> {
        let mut buf = vec![0u8; CLASSIC_READ_BUFFER].into_boxed_slice();
        buf[..4].copy_from_slice(&magic);
        let mut end = 4;
        let mut eof = false;
        let (parser, start) = loop {
            match PcapParser::new(&buf[..end]) {
                Ok((rest, parser)) => break (parser, end - rest.len()),
                Err(LibError::IncompleteBuffer) if !eof => {
                    let n = read_retrying(&mut input, &mut buf[end..]).map_err(LibError::IoError)?;
                    eof = n == 0;
                    end += n;
                }
                Err(LibError::IncompleteBuffer) => return Err(LibError::IoError(io::ErrorKind::UnexpectedEof.into())),
                Err(e) => return Err(e),
            }
        };
        Ok(ClassicRecords { parser, input, buf, start, end, eof })
    }

    fn header(&self) -> PcapHeader {
        self.parser.header()
    }

    /// The next record, borrowed from the buffer; `None` at the end of the file between
    /// records. A record cut short by the end of the file is an `UnexpectedEof` error. A
    /// record longer than `MAX_FRAME_LEN` comes back as soon as its header is read, with no
    /// data: the caller rejects it by its `incl_len` (it may not fit the buffer).
    fn next_raw(&mut self) -> Option<Result<RawPcapPacket<'_>, LibError>> {
        // The fields are copied out and the data sliced again after the loop: a borrow
        // returned from inside the loop would keep `buf` borrowed across the refill.
        let (raw, data_end) = loop {
            match self.parser.next_raw_packet(&self.buf[self.start..self.end]) {
                Ok((rest, raw)) => {
                    let header = (raw.ts_sec, raw.ts_frac, raw.incl_len, raw.orig_len, raw.data.len());
                    break (header, self.end - rest.len());
                }
                Err(LibError::IncompleteBuffer) => {}
                Err(e) => return Some(Err(e)),
            }
            let pending = self.end - self.start;
            if let Some(header) = self.buf[self.start..self.end].first_chunk::<16>() {
                let len = [header[8], header[9], header[10], header[11]];
                let incl_len = match self.parser.header().endianness {
                    pcap_file::Endianness::Big => u32::from_be_bytes(len),
                    pcap_file::Endianness::Little => u32::from_le_bytes(len),
                };
                if incl_len > MAX_FRAME_LEN {
                    let data = Cow::Borrowed(&[][..]);
                    return Some(Ok(RawPcapPacket { ts_sec: 0, ts_frac: 0, incl_len, orig_len: incl_len, data }));
                }
            }
            if self.eof {
                return (pending > 0).then(|| Err(LibError::IoError(io::ErrorKind::UnexpectedEof.into())));
            }
            // The partial record moves to the front; it fits with room to spare (it is at most
            // MAX_FRAME_LEN + 16 bytes, checked above), so the read below always has room.
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, pending);
            match read_retrying(&mut self.input, &mut self.buf[pending..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) => return Some(Err(LibError::IoError(e))),
            }
        };
        let (ts_sec, ts_frac, incl_len, orig_len, len) = raw;
        self.start = data_end;
        let data = Cow::Borrowed(&self.buf[data_end - len..data_end]);
        Some(Ok(RawPcapPacket { ts_sec, ts_frac, incl_len, orig_len, data }))
    }
}

/// One `read`, retried when a signal interrupts it.
fn read_retrying(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Reads the frames of a pcap or pcapng capture, in file order.
pub struct PcapReader {
    path: PathBuf,
    format: Format,
    link_type: LinkType,
    /// Records read so far (for error messages: "record 12").
    records: u64,
    /// Approximate bytes consumed, for progress display.
    position: u64,
    /// Timestamp of the last frame (Simple Packet Blocks have none of their own).
    last_timestamp: u64,
    done: bool,
}

impl fmt::Debug for PcapReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PcapReader")
            .field("path", &self.path)
            .field("link_type", &self.link_type)
            .field("records", &self.records)
            .finish_non_exhaustive()
    }
}

/// pcapng Section Header Block type, which is also the file's first four bytes.
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

impl PcapReader {
    /// Opens `path` and reads its header (for pcapng: up to the first interface).
    pub fn open(path: impl AsRef<Path>) -> Result<PcapReader, PcapError> {
        let path = path.as_ref();
        let is_dir = || io::Error::new(io::ErrorKind::IsADirectory, "it is a directory");
        let file = File::open(path).map_err(|source| {
            // Windows refuses to open a directory as a file ("access denied"); say what it is.
            let source = if path.is_dir() { is_dir() } else { source };
            PcapError::Unreadable { path: path.to_owned(), source }
        })?;
        if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
            return Err(PcapError::Unreadable { path: path.to_owned(), source: is_dir() });
        }
        PcapReader::from_reader(file, path)
    }

    /// Reads a capture from `reader`; `name` is used in error messages.
    pub fn from_reader(reader: impl Read + Send + 'static, name: impl AsRef<Path>) -> Result<PcapReader, PcapError> {
        let path = name.as_ref().to_owned();
        let mut reader: Box<dyn Read + Send> = Box::new(reader);
        let mut magic = [0u8; 4];
        let got = read_up_to(&mut reader, &mut magic)
            .map_err(|source| PcapError::Unreadable { path: path.clone(), source })?;
        if got == 0 {
            return Err(PcapError::Empty { path });
        }
        let is_classic = matches!(u32::from_be_bytes(magic), 0xa1b2_c3d4 | 0xa1b2_3c4d | 0xd4c3_b2a1 | 0x4d3c_b2a1);
        let is_ng = magic == PCAPNG_MAGIC;
        if got < 4 || !(is_classic || is_ng) {
            let shown: Vec<String> = magic[..got].iter().map(|b| format!("{b:02x}")).collect();
            return Err(PcapError::NotPcap {
                path,
                detail: format!("it starts with bytes {}, not a pcap or pcapng magic number", shown.join(" ")),
            });
        }
        if is_classic {
            let classic = ClassicRecords::new(magic, reader)
                .map_err(|e| classify(&path, e, "the pcap file header".to_owned()))?;
            let header = classic.header();
            let number = u32::from(header.datalink);
            let link_type = LinkType::from_number(number)
                .ok_or_else(|| PcapError::UnsupportedLinkType { path: path.clone(), link_type: link_name(number) })?;
            Ok(PcapReader {
                path,
                format: Format::Classic { reader: classic, ts_resolution: header.ts_resolution },
                link_type,
                records: 0,
                position: 24,
                last_timestamp: 0,
                done: false,
            })
        } else {
            let source: Source = Cursor::new(magic).chain(reader);
            let ng =
                PcapNgReader::new(source).map_err(|e| classify(&path, e, "the pcapng section header".to_owned()))?;
            let mut reader = PcapReader {
                path,
                format: Format::PcapNg { reader: ng },
                // Replaced by the first interface's link type below.
                link_type: LinkType::Ethernet,
                records: 1,
                position: 28,
                last_timestamp: 0,
                done: false,
            };
            reader.link_type = reader.first_pcapng_link_type()?;
            Ok(reader)
        }
    }

    /// The file's name as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The capture's link type (every frame has it).
    pub fn link_type(&self) -> LinkType {
        self.link_type
    }

    /// Approximately how many bytes of the file have been consumed (for a progress bar).
    pub fn bytes_consumed(&self) -> u64 {
        self.position
    }

    /// pcapng: reads blocks up to the first Interface Description Block. Packets cannot come
    /// before it (they name an interface), so nothing is lost.
    fn first_pcapng_link_type(&mut self) -> Result<LinkType, PcapError> {
        let Format::PcapNg { reader } = &mut self.format else {
            unreachable!("only called for pcapng");
        };
        loop {
            self.records += 1;
            let what = format!("block {}", self.records);
            let Some(block) = reader.next_block() else {
                return Err(PcapError::Corrupt {
                    path: self.path.clone(),
                    what,
                    detail: "the file ends before any interface description block, so it holds no packets".into(),
                });
            };
            let block = block.map_err(|e| classify(&self.path, e, what.clone()))?;
            match block {
                Block::InterfaceDescription(idb) => {
                    self.position += 20 + 8;
                    let number = u32::from(idb.linktype);
                    return LinkType::from_number(number).ok_or_else(|| PcapError::UnsupportedLinkType {
                        path: self.path.clone(),
                        link_type: link_name(number),
                    });
                }
                Block::EnhancedPacket(_) | Block::SimplePacket(_) | Block::Packet(_) => {
                    return Err(PcapError::Corrupt {
                        path: self.path.clone(),
                        what,
                        detail: "a packet block comes before any interface description block".into(),
                    });
                }
                _ => {}
            }
        }
    }

    /// "record 12" / "block 12": the record just read, for error messages.
    fn what(&self, kind: &str) -> String {
        format!("{kind} {}", self.records)
    }

    /// The next classic record: its timestamp, wire length and bytes (borrowed from the read
    /// buffer).
    fn next_classic_record(&mut self) -> Option<Result<Record<'_>, PcapError>> {
        let Format::Classic { reader, ts_resolution } = &mut self.format else {
            unreachable!("only called for pcap");
        };
        self.records += 1;
        let raw = match reader.next_raw()? {
            Ok(raw) => raw,
            Err(e) => return Some(Err(classify(&self.path, e, format!("record {}", self.records)))),
        };
        let what = || format!("record {}", self.records);
        if raw.incl_len > MAX_FRAME_LEN {
            let detail = format!("its captured length {} is above the maximum {MAX_FRAME_LEN}", raw.incl_len);
            return Some(Err(PcapError::Corrupt { path: self.path.clone(), what: what(), detail }));
        }
        let frac_micros = match ts_resolution {
            TsResolution::MicroSecond => u64::from(raw.ts_frac),
            TsResolution::NanoSecond => u64::from(raw.ts_frac) / 1000,
        };
        if frac_micros >= 1_000_000 {
            let detail = format!("its timestamp fraction {} is a second or more", raw.ts_frac);
            return Some(Err(PcapError::Corrupt { path: self.path.clone(), what: what(), detail }));
        }
        let timestamp_micros = u64::from(raw.ts_sec) * 1_000_000 + frac_micros;
        let original_len = raw.orig_len.max(raw.incl_len);
        self.position += 16 + raw.data.len() as u64;
        self.last_timestamp = timestamp_micros;
        let std::borrow::Cow::Borrowed(data) = raw.data else { unreachable!("records are borrowed from the buffer") };
        Some(Ok((timestamp_micros, original_len, data)))
    }

    fn next_classic(&mut self, frame: &mut Frame) -> Option<Result<(), PcapError>> {
        let (timestamp_micros, original_len, data) = match self.next_classic_record()? {
            Ok(record) => record,
            Err(e) => return Some(Err(e)),
        };
        frame.data.clear();
        frame.data.extend_from_slice(data);
        self.fill(frame, timestamp_micros, original_len);
        Some(Ok(()))
    }

    fn next_pcapng(&mut self, frame: &mut Frame) -> Option<Result<(), PcapError>> {
        loop {
            let Format::PcapNg { reader } = &mut self.format else {
                unreachable!("only called for pcapng");
            };
            self.records += 1;
            let block = match reader.next_block()? {
                Ok(block) => block,
                Err(e) => return Some(Err(classify(&self.path, e, format!("block {}", self.records)))),
            };
            let (interface_id, raw_ts, original_len) = match block {
                Block::EnhancedPacket(epb) => {
                    self.position += 32 + epb.data.len() as u64;
                    // pcap-file stores the raw 64-bit timestamp as nanoseconds, whatever the
                    // interface's resolution; undo that and apply if_tsresol below.
                    let raw = u64::try_from(epb.timestamp.as_nanos()).unwrap_or(u64::MAX);
                    frame.data.clear();
                    frame.data.extend_from_slice(&epb.data);
                    (epb.interface_id, Some(raw), epb.original_len)
                }
                Block::SimplePacket(spb) => {
                    self.position += 16 + spb.data.len() as u64;
                    frame.data.clear();
                    frame.data.extend_from_slice(&spb.data);
                    (0, None, spb.original_len)
                }
                Block::InterfaceDescription(idb) => {
                    self.position += 28;
                    let number = u32::from(idb.linktype);
                    match LinkType::from_number(number) {
                        Some(l) if l == self.link_type => continue,
                        Some(other) => {
                            let first = self.link_type;
                            return Some(Err(PcapError::MixedLinkTypes { path: self.path.clone(), first, other }));
                        }
                        None => {
                            let link_type = link_name(number);
                            return Some(Err(PcapError::UnsupportedLinkType { path: self.path.clone(), link_type }));
                        }
                    }
                }
                _ => continue,
            };
            let Some(interface) = reader.interfaces().get(interface_id as usize) else {
                let detail = format!("the packet names interface {interface_id}, which the section does not describe");
                return Some(Err(PcapError::Corrupt { path: self.path.clone(), what: self.what("block"), detail }));
            };
            let resolution = interface
                .options
                .iter()
                .find_map(|o| match o {
                    InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
                    _ => None,
                })
                .unwrap_or(6);
            let micros = match raw_ts.map(|raw| to_micros(raw, resolution)) {
                Some(Ok(micros)) => micros,
                // A Simple Packet Block has no timestamp; it keeps the clock where it was.
                None => self.last_timestamp,
                Some(Err(())) => {
                    let detail =
                        format!("interface {interface_id} has an unusable timestamp resolution {resolution:#x}");
                    return Some(Err(PcapError::Corrupt { path: self.path.clone(), what: self.what("block"), detail }));
                }
            };
            let original_len = original_len.max(u32::try_from(frame.data.len()).unwrap_or(u32::MAX));
            self.fill(frame, micros, original_len);
            return Some(Ok(()));
        }
    }

    /// Completes `frame`, whose `data` holds the record's bytes.
    fn fill(&mut self, frame: &mut Frame, timestamp_micros: u64, original_len: u32) {
        self.last_timestamp = timestamp_micros;
        frame.timestamp_micros = timestamp_micros;
        frame.link_type = self.link_type;
        frame.original_len = original_len;
        frame.ipv4_offset = self.link_type.ipv4_offset(&frame.data);
    }

    /// Reads the next frame into `frame`, reusing its buffer (the replay loop allocates
    /// nothing per frame this way); `Ok(false)` at the end of the capture. After an error
    /// every further call returns `Ok(false)`. `frame` is left unspecified on error and at
    /// the end.
    pub fn read_frame(&mut self, frame: &mut Frame) -> Result<bool, PcapError> {
        if self.done {
            return Ok(false);
        }
        let next = match self.format {
            Format::Classic { .. } => self.next_classic(frame),
            Format::PcapNg { .. } => self.next_pcapng(frame),
        };
        match next {
            Some(Ok(())) => Ok(true),
            None => {
                self.done = true;
                Ok(false)
            }
            Some(Err(e)) => {
                self.done = true;
                Err(e)
            }
        }
    }
}

/// A classic record as read: timestamp (microseconds), wire length, the bytes.
type Record<'a> = (u64, u32, &'a [u8]);

/// A frame [`PcapReader::read_frame_into`] copied into a caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameInfo {
    /// Capture time in microseconds since the Unix epoch.
    pub timestamp_micros: u64,
    /// Bytes copied: the frame as captured, link header included.
    pub len: usize,
    /// Length of the frame on the wire.
    pub original_len: u32,
    /// Where the IPv4 header starts; `None` for frames that do not carry IPv4.
    pub ipv4_offset: Option<usize>,
}

impl PcapReader {
    /// Reads the next frame straight into `buf` (a capture backend's packet buffer: a classic
    /// pcap record is copied once, from the read buffer, where [`PcapReader::read_frame`] and
    /// then the backend would copy it twice); `Ok(None)` at the end of the capture. pcapng
    /// frames go through `scratch` first. A frame longer than `buf` is an error (the caller's:
    /// no frame is longer than [`MAX_FRAME_LEN`] bytes).
    pub fn read_frame_into(&mut self, buf: &mut [u8], scratch: &mut Frame) -> Result<Option<FrameInfo>, PcapError> {
        if self.done {
            return Ok(None);
        }
        let record = match self.format {
            Format::Classic { .. } => match self.next_classic_record() {
                Some(Ok((timestamp_micros, original_len, data))) => match buf.get_mut(..data.len()) {
                    Some(into) => {
                        into.copy_from_slice(data);
                        Ok(Some((timestamp_micros, data.len(), original_len)))
                    }
                    None => Err(too_long(data.len(), buf.len())),
                },
                Some(Err(e)) => Err(e),
                None => Ok(None),
            },
            Format::PcapNg { .. } => match self.next_pcapng(scratch) {
                Some(Ok(())) => match buf.get_mut(..scratch.data.len()) {
                    Some(into) => {
                        into.copy_from_slice(&scratch.data);
                        Ok(Some((scratch.timestamp_micros, scratch.data.len(), scratch.original_len)))
                    }
                    None => Err(too_long(scratch.data.len(), buf.len())),
                },
                Some(Err(e)) => Err(e),
                None => Ok(None),
            },
        };
        match record {
            Ok(Some((timestamp_micros, len, original_len))) => {
                let ipv4_offset = self.link_type.ipv4_offset(&buf[..len]);
                Ok(Some(FrameInfo { timestamp_micros, len, original_len, ipv4_offset }))
            }
            Ok(None) => {
                self.done = true;
                Ok(None)
            }
            Err(e) => {
                self.done = true;
                Err(e)
            }
        }
    }
}

impl Iterator for PcapReader {
    type Item = Result<Frame, PcapError>;

    /// The next frame, in a buffer of its own; after an error the iterator ends.
    fn next(&mut self) -> Option<Self::Item> {
        let mut frame = Frame::empty(self.link_type);
        match self.read_frame(&mut frame) {
            Ok(true) => Some(Ok(frame)),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

/// The error for a frame of `len` bytes read into a buffer of `room` (a caller's mistake:
/// buffers of `MAX_FRAME_LEN` hold every frame this reader returns).
fn too_long(len: usize, room: usize) -> PcapError {
    let detail = format!("a frame of {len} bytes does not fit a buffer of {room}; give it {MAX_FRAME_LEN} bytes");
    PcapError::Unreadable {
        path: PathBuf::from("(read_frame_into)"),
        source: io::Error::new(io::ErrorKind::InvalidInput, detail),
    }
}

/// Converts a pcapng timestamp in units of `if_tsresol` to microseconds.
fn to_micros(raw: u64, resolution: u8) -> Result<u64, ()> {
    let exponent = u32::from(resolution & 0x7f);
    let micros = if resolution & 0x80 == 0 {
        // Units of 10^-exponent seconds.
        match exponent.cmp(&6) {
            std::cmp::Ordering::Equal => u128::from(raw),
            std::cmp::Ordering::Greater => u128::from(raw) / 10u128.checked_pow(exponent - 6).ok_or(())?,
            std::cmp::Ordering::Less => u128::from(raw) * 10u128.pow(6 - exponent),
        }
    } else {
        // Units of 2^-exponent seconds.
        if exponent > 64 {
            return Err(());
        }
        (u128::from(raw) * 1_000_000) >> exponent
    };
    u64::try_from(micros).map_err(|_| ())
}

/// Reads until `buf` is full or the reader ends; returns how many bytes were read.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Turns a pcap-file error into one that names the file and the record.
fn classify(path: &Path, error: LibError, what: String) -> PcapError {
    let path = path.to_owned();
    match error {
        LibError::IncompleteBuffer => PcapError::Truncated { path, what },
        LibError::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => PcapError::Truncated { path, what },
        LibError::IoError(source) => PcapError::Unreadable { path, source },
        LibError::InvalidField(detail) => PcapError::Corrupt { path, what, detail: detail.to_owned() },
        LibError::InvalidInterfaceId(id) => {
            PcapError::Corrupt { path, what, detail: format!("it names interface {id}, which is not described") }
        }
        other => PcapError::Corrupt { path, what, detail: other.to_string() },
    }
}

/// "113 (LINUX_SLL)" for error messages.
fn link_name(number: u32) -> String {
    format!("{number} ({:?})", DataLink::from(number))
}

/// Writes a classic pcap file (microsecond timestamps) with one link type.
///
/// pcap-file writes the file header; each record's 16-byte header is encoded here and written
/// with the data in two `write_all` calls. pcap-file's record writer makes five (four `u32`s,
/// then the data): with its checks, about 240 instructions a record through a `BufWriter`
/// (callgrind, bench/replay), more than the engine spends translating the packet.
pub struct PcapWriter<W: Write> {
    path: PathBuf,
    writer: W,
    link_type: LinkType,
    written: u64,
}

impl<W: Write> fmt::Debug for PcapWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PcapWriter")
            .field("path", &self.path)
            .field("link_type", &self.link_type)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl PcapWriter<BufWriter<File>> {
    /// Creates (or truncates) `path` and writes the pcap header.
    pub fn create(path: impl AsRef<Path>, link_type: LinkType) -> Result<Self, PcapError> {
        let path = path.as_ref();
        let file = File::create(path).map_err(|source| PcapError::Write { path: path.to_owned(), source })?;
        PcapWriter::new(BufWriter::new(file), link_type, path)
    }
}

impl<W: Write> PcapWriter<W> {
    /// Writes the pcap header to `writer`; `name` is used in error messages.
    pub fn new(writer: W, link_type: LinkType, name: impl AsRef<Path>) -> Result<Self, PcapError> {
        let path = name.as_ref().to_owned();
        let header = PcapHeader {
            datalink: link_type.data_link(),
            snaplen: MAX_FRAME_LEN,
            ts_resolution: TsResolution::MicroSecond,
            endianness: pcap_file::Endianness::native(),
            ..PcapHeader::default()
        };
        let mut writer = writer;
        header.write_to(&mut writer).map_err(|e| write_error(&path, e))?;
        Ok(PcapWriter { path, writer, link_type, written: 0 })
    }

    /// The link type every frame must have.
    pub fn link_type(&self) -> LinkType {
        self.link_type
    }

    /// Frames written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Writes one frame captured at `timestamp_micros` whose wire length was `original_len`
    /// (raised to `data.len()` if smaller).
    pub fn write(&mut self, timestamp_micros: u64, data: &[u8], original_len: u32) -> Result<(), PcapError> {
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        if len > MAX_FRAME_LEN {
            let source = io::Error::new(io::ErrorKind::InvalidInput, format!("a frame of {len} bytes is too long"));
            return Err(PcapError::Write { path: self.path.clone(), source });
        }
        let Ok(ts_sec) = u32::try_from(timestamp_micros / 1_000_000) else {
            // pcap-file's words, as before this writer encoded records itself.
            return Err(write_error(&self.path, LibError::InvalidField("PcapPacket: timestamp_secs > u32::MAX")));
        };
        // The file header says native byte order (see `new`).
        let ts_usec = (timestamp_micros % 1_000_000) as u32;
        let mut record = [0u8; 16];
        for (at, field) in [ts_sec, ts_usec, len, original_len.max(len)].into_iter().enumerate() {
            record[at * 4..at * 4 + 4].copy_from_slice(&field.to_ne_bytes());
        }
        let written = self.writer.write_all(&record).and_then(|()| self.writer.write_all(data));
        written.map_err(|source| PcapError::Write { path: self.path.clone(), source })?;
        self.written += 1;
        Ok(())
    }

    /// Writes `frame` with its timestamp and original length.
    pub fn write_frame(&mut self, frame: &Frame) -> Result<(), PcapError> {
        self.write(frame.timestamp_micros, &frame.data, frame.original_len)
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(self) -> Result<W, PcapError> {
        let path = self.path;
        let mut inner = self.writer;
        inner.flush().map_err(|source| PcapError::Write { path, source })?;
        Ok(inner)
    }
}

/// Timestamp resolution of the interface a [`PcapNgWriter`] describes: nanoseconds
/// (`if_tsresol` 9). pcap-file 2.0 writes an Enhanced Packet Block's timestamp as
/// nanoseconds whatever the interface says, so the interface must say nanoseconds for the
/// file to be right (without the option, readers assume microseconds: times 1000x too late).
const PCAPNG_TS_RESOLUTION: u8 = 9;

/// Longest comment a pcapng option holds: its length field is 16 bits.
pub const MAX_COMMENT_LEN: usize = u16::MAX as usize;

/// Writes a pcapng file: one section, one interface of one link type, and an Enhanced
/// Packet Block per frame, with an optional comment.
///
/// Blocks are encoded by pcap-file (checked against tshark by the replay's tests: comments,
/// timestamps, lengths); a comment longer than [`MAX_COMMENT_LEN`] bytes is cut at a
/// character boundary, since the option's length field cannot say more.
pub struct PcapNgWriter<W: Write> {
    path: PathBuf,
    writer: LibPcapNgWriter<W>,
    link_type: LinkType,
    written: u64,
}

impl<W: Write> fmt::Debug for PcapNgWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PcapNgWriter")
            .field("path", &self.path)
            .field("link_type", &self.link_type)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl<W: Write> PcapNgWriter<W> {
    /// Writes the section header (naming `application` as `shb_userappl`) and the interface
    /// description to `writer`; `name` is used in error messages.
    pub fn new(writer: W, link_type: LinkType, application: &str, name: impl AsRef<Path>) -> Result<Self, PcapError> {
        let path = name.as_ref().to_owned();
        let section = SectionHeaderBlock {
            endianness: pcap_file::Endianness::native(),
            options: vec![SectionHeaderOption::UserApplication(Cow::Owned(application.to_owned()))],
            ..SectionHeaderBlock::default()
        };
        let mut writer = LibPcapNgWriter::with_section_header(writer, section).map_err(|e| write_error(&path, e))?;
        let mut interface = InterfaceDescriptionBlock::new(link_type.data_link(), MAX_FRAME_LEN);
        interface.options.push(InterfaceDescriptionOption::IfTsResol(PCAPNG_TS_RESOLUTION));
        writer.write_pcapng_block(interface).map_err(|e| write_error(&path, e))?;
        Ok(PcapNgWriter { path, writer, link_type, written: 0 })
    }

    /// The link type every frame must have.
    pub fn link_type(&self) -> LinkType {
        self.link_type
    }

    /// Frames written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Writes one frame captured at `timestamp_micros` whose wire length was `original_len`
    /// (raised to `data.len()` if smaller), with `comment` as its `opt_comment`.
    pub fn write(
        &mut self,
        timestamp_micros: u64,
        data: &[u8],
        original_len: u32,
        comment: Option<&str>,
    ) -> Result<(), PcapError> {
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        if len > MAX_FRAME_LEN {
            let source = io::Error::new(io::ErrorKind::InvalidInput, format!("a frame of {len} bytes is too long"));
            return Err(PcapError::Write { path: self.path.clone(), source });
        }
        let options = match comment {
            Some(c) => vec![EnhancedPacketOption::Comment(Cow::Borrowed(cut_at_char(c, MAX_COMMENT_LEN)))],
            None => Vec::new(),
        };
        let block = EnhancedPacketBlock {
            interface_id: 0,
            // Nanoseconds, as the interface's if_tsresol says (see PCAPNG_TS_RESOLUTION).
            timestamp: std::time::Duration::from_micros(timestamp_micros),
            original_len: original_len.max(len),
            data: Cow::Borrowed(data),
            options,
        };
        self.writer.write_pcapng_block(block).map_err(|e| write_error(&self.path, e))?;
        self.written += 1;
        Ok(())
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(self) -> Result<W, PcapError> {
        let path = self.path;
        let mut inner = self.writer.into_inner();
        inner.flush().map_err(|source| PcapError::Write { path, source })?;
        Ok(inner)
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn cut_at_char(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn write_error(path: &Path, error: LibError) -> PcapError {
    let source = match error {
        LibError::IoError(e) => e,
        other => io::Error::other(other.to_string()),
    };
    PcapError::Write { path: path.to_owned(), source }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_empty_frame_carries_no_ipv4_whatever_the_link_type() {
        // Fuzz observation O2: LINKTYPE_IPV4 promised IPv4 even for a zero-length record.
        for lt in [LinkType::Ethernet, LinkType::Raw, LinkType::Ipv4] {
            assert_eq!(lt.ipv4_offset(&[]), None, "{lt}");
        }
        assert_eq!(LinkType::Ipv4.ipv4_offset(&[0x45]), Some(0));
    }

    use super::*;
    use std::time::Duration;

    /// A UDP/IPv4 packet 10.100.10.11:5000 -> 198.51.100.7:53, 28 bytes.
    const IPV4_UDP: [u8; 28] =
        [0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 10, 100, 10, 11, 198, 51, 100, 7, 0x13, 0x88, 0, 53, 0, 8, 0, 0];

    fn ethernet(ethertype: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
        f.extend_from_slice(ethertype);
        f.extend_from_slice(payload);
        f
    }

    fn write_to_vec(link_type: LinkType, frames: &[(u64, Vec<u8>)]) -> Vec<u8> {
        let mut w = PcapWriter::new(Vec::new(), link_type, "mem.pcap").unwrap();
        for (ts, data) in frames {
            w.write(*ts, data, 0).unwrap();
        }
        w.finish().unwrap()
    }

    fn read_all(bytes: Vec<u8>) -> Result<Vec<Frame>, PcapError> {
        PcapReader::from_reader(Cursor::new(bytes), "mem.pcap")?.collect()
    }

    #[test]
    fn pcap_round_trips_frames_timestamps_and_link_type() {
        let frames = vec![
            (1_700_000_000_123_456, ethernet(&[0x08, 0x00], &IPV4_UDP)),
            (1_700_000_001_000_001, ethernet(&[0x08, 0x06], &[0u8; 28])),
        ];
        let read = read_all(write_to_vec(LinkType::Ethernet, &frames)).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].timestamp_micros, 1_700_000_000_123_456);
        assert_eq!(read[0].data, frames[0].1);
        assert_eq!(read[0].ipv4_offset, Some(14));
        assert_eq!(read[1].ipv4_offset, None, "ARP is not IPv4");
        assert!(read.iter().all(|f| f.link_type == LinkType::Ethernet));
        for link in [LinkType::Raw, LinkType::Ipv4] {
            let read = read_all(write_to_vec(link, &[(5, IPV4_UDP.to_vec())])).unwrap();
            assert_eq!(read[0].link_type, link);
            assert_eq!(read[0].ipv4_offset, Some(0));
        }
    }

    #[test]
    fn ethernet_offsets_skip_vlan_tags_and_reject_other_ethertypes() {
        let one_tag = ethernet(&[0x81, 0x00, 0x00, 0x0a, 0x08, 0x00], &IPV4_UDP);
        assert_eq!(LinkType::Ethernet.ipv4_offset(&one_tag), Some(18));
        let two_tags = ethernet(&[0x88, 0xa8, 0, 1, 0x81, 0x00, 0, 2, 0x08, 0x00], &IPV4_UDP);
        assert_eq!(LinkType::Ethernet.ipv4_offset(&two_tags), Some(22));
        assert_eq!(LinkType::Ethernet.ipv4_offset(&ethernet(&[0x86, 0xdd], &[0x60; 40])), None);
        assert_eq!(LinkType::Ethernet.ipv4_offset(&[0u8; 13]), None, "runt frame");
        assert_eq!(LinkType::Ethernet.ipv4_offset(&ethernet(&[0x08, 0x00], &[])), None, "no payload");
        assert_eq!(LinkType::Raw.ipv4_offset(&[0x60; 40]), None, "IPv6 in LINKTYPE_RAW");
    }

    #[test]
    fn garbage_empty_and_truncated_files_are_named_errors() {
        let err = read_all(b"hello, world".to_vec()).unwrap_err();
        assert!(matches!(err, PcapError::NotPcap { .. }), "{err}");
        assert!(err.to_string().contains("mem.pcap") && err.to_string().contains("68 65 6c 6c"), "{err}");

        assert!(matches!(read_all(Vec::new()).unwrap_err(), PcapError::Empty { .. }));

        let whole = write_to_vec(LinkType::Ethernet, &vec![(1, ethernet(&[8, 0], &IPV4_UDP)); 3]);
        let cut = whole[..whole.len() - 5].to_vec();
        let mut reader = PcapReader::from_reader(Cursor::new(cut), "cut.pcap").unwrap();
        assert!(reader.next().unwrap().is_ok());
        assert!(reader.next().unwrap().is_ok());
        let err = reader.next().unwrap().unwrap_err();
        assert!(matches!(&err, PcapError::Truncated { what, .. } if what == "record 3"), "{err}");
        assert!(reader.next().is_none(), "the iterator ends after an error");

        let err = read_all(whole[..10].to_vec()).unwrap_err();
        assert!(matches!(&err, PcapError::Truncated { .. }), "{err}");
    }

    #[test]
    fn unsupported_link_type_says_which() {
        let mut bytes = write_to_vec(LinkType::Ethernet, &[]);
        // LINKTYPE_LINUX_SLL (113) in the native-endian header's network field.
        bytes[20..24].copy_from_slice(&113u32.to_ne_bytes());
        let err = read_all(bytes).unwrap_err();
        assert!(matches!(err, PcapError::UnsupportedLinkType { .. }), "{err}");
        assert!(err.to_string().contains("113"), "{err}");
    }

    #[test]
    fn absurd_record_length_is_corrupt_not_a_panic() {
        let mut bytes = write_to_vec(LinkType::Raw, &[(1, IPV4_UDP.to_vec())]);
        bytes[24 + 8..24 + 12].copy_from_slice(&u32::MAX.to_ne_bytes());
        bytes[24 + 12..24 + 16].copy_from_slice(&u32::MAX.to_ne_bytes());
        let err = read_all(bytes).unwrap_err();
        assert!(matches!(err, PcapError::Corrupt { .. } | PcapError::Truncated { .. }), "{err}");
    }

    /// A reader that hands out at most `chunk` bytes per `read`, like a pipe.
    struct Trickle {
        bytes: Cursor<Vec<u8>>,
        chunk: usize,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.chunk);
            self.bytes.read(&mut buf[..n])
        }
    }

    #[test]
    fn records_across_buffer_refills_and_short_reads_read_back_whole() {
        // Several times the read buffer, with frame lengths that do not divide it, up to the
        // largest frame allowed.
        let mut frames: Vec<(u64, Vec<u8>)> = (0..3000u64)
            .map(|i| (1_700_000_000_000_000 + i, (0..(i as usize * 37) % 1500).map(|b| b as u8).collect()))
            .collect();
        frames.push((9, vec![0x45; MAX_FRAME_LEN as usize]));
        frames.push((10, IPV4_UDP.to_vec()));
        let bytes = write_to_vec(LinkType::Raw, &frames);
        assert!(bytes.len() > 3 * CLASSIC_READ_BUFFER);
        for chunk in [usize::MAX, 4093, 7] {
            let reader = Trickle { bytes: Cursor::new(bytes.clone()), chunk };
            let read: Vec<Frame> =
                PcapReader::from_reader(reader, "mem.pcap").unwrap().collect::<Result<_, _>>().unwrap();
            assert_eq!(read.len(), frames.len(), "chunk {chunk}");
            for (f, (ts, data)) in read.iter().zip(&frames) {
                assert_eq!((f.timestamp_micros, &f.data), (*ts, data), "chunk {chunk}");
            }
        }
        // Reusing one frame reads the same.
        let mut reader = PcapReader::from_reader(Cursor::new(bytes), "mem.pcap").unwrap();
        let mut frame = Frame::empty(LinkType::Raw);
        let mut n = 0;
        while reader.read_frame(&mut frame).unwrap() {
            assert_eq!(frame.data, frames[n].1);
            n += 1;
        }
        assert_eq!(n, frames.len());
        assert!(!reader.read_frame(&mut frame).unwrap(), "stays at the end");
    }

    #[test]
    fn a_record_longer_than_the_maximum_is_corrupt_even_when_the_file_is_short() {
        let mut bytes = write_to_vec(LinkType::Raw, &[(1, IPV4_UDP.to_vec())]);
        bytes[24 + 8..24 + 12].copy_from_slice(&(MAX_FRAME_LEN + 1).to_ne_bytes());
        let err = read_all(bytes).unwrap_err();
        assert!(matches!(&err, PcapError::Corrupt { what, .. } if what == "record 1"), "{err}");
        assert!(err.to_string().contains(&format!("{}", MAX_FRAME_LEN + 1)), "{err}");
    }

    #[test]
    fn records_keep_their_bytes_timestamp_and_lengths_on_the_wire() {
        // The record header is encoded here, not by pcap-file: hold it to the format.
        let mut w = PcapWriter::new(Vec::new(), LinkType::Ethernet, "mem.pcap").unwrap();
        w.write(1_700_000_001_234_567, &[1, 2, 3], 60).unwrap();
        w.write(5, &[4; 10], 0).unwrap();
        let bytes = w.finish().unwrap();
        let ne = |v: u32| v.to_ne_bytes();
        let mut want = Vec::new();
        for field in [1_700_000_001, 234_567, 3, 60] {
            want.extend_from_slice(&ne(field));
        }
        want.extend_from_slice(&[1, 2, 3]);
        for field in [0, 5, 10, 10] {
            want.extend_from_slice(&ne(field));
        }
        want.extend_from_slice(&[4; 10]);
        assert_eq!(&bytes[24..], &want[..]);
        let mut r = pcap_file::pcap::PcapReader::new(Cursor::new(bytes)).unwrap();
        let p = r.next_packet().unwrap().unwrap();
        assert_eq!(
            (p.timestamp, p.orig_len, &p.data[..]),
            (Duration::from_micros(1_700_000_001_234_567), 60, &[1, 2, 3][..])
        );

        let mut w = PcapWriter::new(Vec::new(), LinkType::Raw, "mem.pcap").unwrap();
        let err = w.write((u64::from(u32::MAX) + 1) * 1_000_000, &IPV4_UDP, 0).unwrap_err();
        assert!(err.to_string().contains("timestamp_secs > u32::MAX"), "{err}");
    }

    #[test]
    fn pcapng_timestamps_follow_if_tsresol() {
        assert_eq!(to_micros(1_234_567, 6), Ok(1_234_567));
        assert_eq!(to_micros(1_234_567_000, 9), Ok(1_234_567));
        assert_eq!(to_micros(1_234, 3), Ok(1_234_000));
        assert_eq!(to_micros(3 << 20, 0x80 | 20), Ok(3_000_000));
        assert!(to_micros(1, 0x80 | 100).is_err());
    }

    #[test]
    fn pcapng_with_nanosecond_interface_reads() {
        use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
        use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
        use pcap_file::pcapng::PcapNgWriter;
        use std::borrow::Cow;

        let mut w = PcapNgWriter::new(Vec::new()).unwrap();
        let mut idb = InterfaceDescriptionBlock::new(DataLink::RAW, 65535);
        idb.options.push(InterfaceDescriptionOption::IfTsResol(9));
        w.write_pcapng_block(idb).unwrap();
        let epb = EnhancedPacketBlock {
            interface_id: 0,
            // pcap-file writes this field's nanoseconds as the raw timestamp.
            timestamp: Duration::from_nanos(1_700_000_000_123_456_789),
            original_len: 28,
            data: Cow::Borrowed(&IPV4_UDP),
            options: vec![],
        };
        w.write_pcapng_block(epb).unwrap();
        let frames = read_all(w.into_inner()).unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].timestamp_micros, 1_700_000_000_123_456);
        assert_eq!(frames[0].link_type, LinkType::Raw);
        assert_eq!(frames[0].data, IPV4_UDP);
    }

    #[test]
    fn pcapng_writer_round_trips_frames_comments_and_timestamps() {
        use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;

        let frame = ethernet(&[8, 0], &IPV4_UDP);
        let mut w = PcapNgWriter::new(Vec::new(), LinkType::Ethernet, "netnat test", "mem.pcapng").unwrap();
        w.write(1_700_000_000_123_456, &frame, 60, Some("verdict: translated")).unwrap();
        w.write(1_700_000_001_000_001, &IPV4_UDP[..27], 0, None).unwrap();
        // Comments of every length modulo 4 are padded right.
        for n in 0..4 {
            w.write(7, &frame, 0, Some(&"é".repeat(n))).unwrap();
        }
        assert_eq!(w.written(), 6);
        let bytes = w.finish().unwrap();

        // Our own reader: timestamps through if_tsresol, data, lengths.
        let frames = read_all(bytes.clone()).unwrap();
        assert_eq!(frames.len(), 6);
        assert_eq!(
            (frames[0].timestamp_micros, &frames[0].data, frames[0].original_len),
            (1_700_000_000_123_456, &frame, 60)
        );
        assert_eq!(frames[0].ipv4_offset, Some(14));
        assert_eq!(
            (frames[1].timestamp_micros, frames[1].data.len(), frames[1].original_len),
            (1_700_000_001_000_001, 27, 27)
        );

        // pcap-file's reader: the comments and the interface's resolution.
        let mut r = pcap_file::pcapng::PcapNgReader::new(Cursor::new(bytes)).unwrap();
        let mut comments = Vec::new();
        while let Some(block) = r.next_block() {
            match block.unwrap() {
                Block::EnhancedPacket(epb) => comments.push(epb.options.iter().find_map(|o| match o {
                    EnhancedPacketOption::Comment(c) => Some(c.to_string()),
                    _ => None,
                })),
                Block::InterfaceDescription(idb) => {
                    assert!(idb.options.contains(&InterfaceDescriptionOption::IfTsResol(9)), "{idb:?}");
                }
                _ => {}
            }
        }
        let want: Vec<Option<String>> = [Some("verdict: translated".to_owned()), None]
            .into_iter()
            .chain((0..4).map(|n| Some("é".repeat(n))))
            .collect();
        assert_eq!(comments, want);
    }

    #[test]
    fn pcapng_enhanced_packet_block_is_laid_out_as_the_spec_says() {
        // Held to the format byte by byte (pcapng draft, section 4.3), not only to pcap-file's
        // reader: block type 6, total length, interface 0, timestamp high/low in if_tsresol
        // units (ns), captured and original lengths, data padded to 32 bits, opt_comment (1)
        // padded, opt_endofopt, total length again.
        let mut w = PcapNgWriter::new(Vec::new(), LinkType::Raw, "x", "mem.pcapng").unwrap();
        let header_len = w.writer.get_ref().len();
        w.write(1_000_001, &[0x45, 1, 2], 0, Some("hello")).unwrap();
        let bytes = w.finish().unwrap();
        let epb = &bytes[header_len..];
        let ne = |v: u32| v.to_ne_bytes().to_vec();
        let ns: u64 = 1_000_001_000;
        let mut want = Vec::new();
        want.extend(ne(6));
        let total = 4 + 4 + 20 + 4 + (4 + 8) + 4 + 4;
        want.extend(ne(total));
        want.extend(ne(0));
        want.extend(ne((ns >> 32) as u32));
        want.extend(ne(ns as u32));
        want.extend(ne(3));
        want.extend(ne(3));
        want.extend([0x45, 1, 2, 0]);
        want.extend(1u16.to_ne_bytes());
        want.extend(5u16.to_ne_bytes());
        want.extend(b"hello\0\0\0");
        want.extend([0, 0, 0, 0]);
        want.extend(ne(total));
        assert_eq!(epb, &want[..]);
    }

    #[test]
    fn comments_are_cut_at_a_character_boundary() {
        assert_eq!(cut_at_char("abc", 5), "abc");
        assert_eq!(cut_at_char("aéb", 2), "a");
        assert_eq!(cut_at_char("aéb", 3), "aé");
        let long = "é".repeat(MAX_COMMENT_LEN);
        let mut w = PcapNgWriter::new(Vec::new(), LinkType::Raw, "x", "mem.pcapng").unwrap();
        w.write(1, &IPV4_UDP, 0, Some(&long)).unwrap();
        let frames = read_all(w.finish().unwrap()).unwrap();
        assert_eq!(frames[0].data, IPV4_UDP, "the block after a cut comment still reads");
    }

    fn small_pcapng() -> Vec<u8> {
        use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
        use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
        use pcap_file::pcapng::PcapNgWriter;
        use std::borrow::Cow;

        let mut w = PcapNgWriter::new(Vec::new()).unwrap();
        w.write_pcapng_block(InterfaceDescriptionBlock::new(DataLink::ETHERNET, 65535)).unwrap();
        for i in 0..3u64 {
            let data = ethernet(&[8, 0], &IPV4_UDP);
            let epb = EnhancedPacketBlock {
                interface_id: 0,
                timestamp: Duration::from_micros(i),
                original_len: 42,
                data: Cow::Owned(data),
                options: vec![],
            };
            w.write_pcapng_block(epb).unwrap();
        }
        w.into_inner()
    }

    proptest::proptest! {
        /// Corrupted files are errors or frames, never panics; and reading always ends.
        #[test]
        fn corrupted_captures_never_panic(
            pcapng in proptest::bool::ANY,
            flips in proptest::collection::vec((0usize..400, proptest::num::u8::ANY), 1..6),
            cut in 0usize..400,
        ) {
            let mut bytes = if pcapng {
                small_pcapng()
            } else {
                write_to_vec(LinkType::Ethernet, &vec![(1, ethernet(&[8, 0], &IPV4_UDP)); 3])
            };
            for (at, value) in flips {
                let at = at % bytes.len();
                bytes[at] = value;
            }
            bytes.truncate(cut.max(1));
            if let Ok(reader) = PcapReader::from_reader(Cursor::new(bytes), "fuzz.pcap") {
                proptest::prop_assert!(reader.take(100).count() <= 10);
            }
        }
    }
}
