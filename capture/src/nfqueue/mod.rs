//! NFQUEUE backend (Linux): packets that an iptables `-j NFQUEUE` rule diverts to a queue are
//! received here in batches, rewritten in place by the caller, and reinjected with a verdict
//! that carries the new bytes. The Linux analogue of WinDivert.
//!
//! # The rule the daemon installs
//! ```text
//! iptables -t raw -A PREROUTING -s 10.100.0.0/16 ! -d 10.100.0.0/16 -j NFQUEUE --queue-num 0 --queue-bypass
//! iptables -t raw -A PREROUTING -d 203.0.113.1                      -j NFQUEUE --queue-num 0 --queue-bypass
//! iptables -t raw -A PREROUTING ... -j CT --notrack   # before the NFQUEUE rules: see below
//! ```
//! - `-t raw PREROUTING` runs before conntrack and the kernel's own NAT; add
//!   `-j CT --notrack` (or `-j NOTRACK`) for the flows netnat owns so that kernel conntrack
//!   does not also track or NAT them.
//! - nft's native `queue` statement needs CONFIG_NFT_QUEUE, which some kernels (these
//!   machines') lack; the xtables target works through iptables-nft.
//! - Several queues: `--queue-balance 0:3` spreads flows over queues 0..=3 by a hash of the
//!   addresses; open them with [`Nfqueue::open_range`], one per worker thread. The hash is of
//!   the addresses *as they arrive*, so the two directions of a translated flow may land on
//!   different queues: workers must share one engine (which the engine's sharded table is for).
//!
//! # Fail-open, and what happens when the daemon dies
//! - With `--queue-bypass` in the rule, a packet that arrives while **no process is bound**
//!   to the queue is accepted (it continues through the ruleset) instead of dropped. When the
//!   daemon dies (even `kill -9`), the kernel releases its binding as the socket closes, the
//!   packets it held without a verdict are dropped (a handful, which TCP retransmits), and
//!   from then on traffic passes — **untranslated**: the host stays reachable, but internal
//!   addresses leave un-NATed until the daemon is back or its rules are removed. We chose this
//!   (fail-open) so that a crashed NAT never black-holes the host; a deployment that prefers
//!   fail-closed omits `--queue-bypass`.
//! - [`NfqueueConfig::fail_open`] sets `NFQA_CFG_F_FAIL_OPEN`: when the daemon is alive but
//!   too slow and the queue (`queue_max_len`) is full, the kernel accepts (untranslated)
//!   instead of dropping. Default on, for the same reason.
//!
//! # Checksum offload and GSO
//! Packets that local sockets send over veth (and that forwarding keeps as they came) carry
//! `CHECKSUM_PARTIAL` (the L4 checksum field holds only the pseudo-header sum), and TCP sends
//! GSO super-packets of up to 64 KiB that the device, or the kernel just before it, cuts into
//! MTU-sized segments. With [`NfqueueConfig::gso`] (the default) this backend sets
//! `NFQA_CFG_F_GSO`: the kernel queues such packets as they are, one super-packet per
//! message instead of ~44 segments each crossing to user space and back. Before the caller
//! sees a packet whose checksum is partial (`NFQA_SKB_CSUMNOTREADY`), the backend completes
//! it ([`csum::complete_partial`], what the kernel's `skb_checksum_help` would do), so every
//! packet the caller sees has complete, valid checksums and the engine's incremental
//! updates (RFC 1624) stay correct.
//!
//! After the verdict (checked on kernel 6.18 with veth, offloads on): a verdict that carries
//! bytes makes the kernel mark the packet `CHECKSUM_NONE` (`nfqnl_mangle`), so
//! - a plain packet keeps the checksum in its bytes and the receiver verifies it in
//!   software: the engine's must be right, and is (`TcpInCsumErrors` / `UdpInCsumErrors`
//!   stay 0 in the tests);
//! - a TCP GSO packet on its way out goes through `tcp4_gso_segment`, which re-derives the
//!   checksum from the (translated) headers and marks it partial again (over veth the
//!   super-packet even arrives whole: tshark on the far side shows 65,212-byte packets with
//!   the pseudo-header sum in the field); delivered locally, it is verified whole in software;
//! - the kernel's UDP segmentation (`__udp_gso_segment`) derives each segment's checksum from
//!   the field *as if it held the partial form*, so the verdict of a UDP GSO packet carries
//!   that form again ([`csum::restore_partial`], from the final headers); and because a
//!   mangled UDP GSO packet cannot be delivered to a local socket (dropped, counted in
//!   `Udp: InErrors`), one the caller left unchanged gets a verdict without bytes (the
//!   backend keeps a copy of each UDP GSO packet of the batch to tell).
//!
//! Counters: [`NfqueueStats::gso_packets`] (super-packets received),
//! [`NfqueueStats::checksums_completed`], and [`NfqueueStats::checksum_not_ready`] for
//! partial checksums that could not be completed (not TCP/UDP; should stay 0).
//!
//! Sizes: the kernel copies at most 65531 bytes (`NFQNL_MAX_COPY_RANGE`, 0xffff minus an
//! attribute header), which every super-packet a local TCP builds fits; a GRO-merged packet
//! of 65532–65535 bytes from a physical NIC would not and is dropped as `too_long` (turn GRO
//! off on that NIC, or `gso` off, if that counter grows). Batches need `max_len` 65535; the
//! socket's receive buffer ([`NfqueueConfig::recv_buffer`]) holds a few hundred such
//! messages; verdicts go out in `sendto` datagrams of at most [`SEND_CHUNK`] bytes (or one
//! verdict), well under the send buffer, so the kernel never refuses one (`EMSGSIZE`).
//!
//! With `gso` off the kernel completes checksums and segments GSO packets itself before
//! queueing, at the price of one crossing per segment.
//!
//! # Why not the `nfq` crate
//! nfq 0.2 was the plan; its `Queue` hides the socket, so a receive cannot be bounded by a
//! timeout (`poll`) and a worker blocked in `recv` cannot stop or run timers; it sends one
//! syscall per verdict; and holding messages of a batch makes it allocate a fresh ~70 KiB
//! buffer per packet. This module speaks the same netlink protocol directly (~300 lines,
//! the codec in `msg.rs` unit-tested without root): `poll` + `recvmmsg` for batched receive
//! straight into the batch's buffers, all verdicts of a batch in one `sendto`.

pub mod csum;
pub mod gso;
mod msg;

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::batch::BATCH_HEADROOM;
use crate::{clock, Action, Batch, Capture, CaptureError};

const BACKEND: &str = "nfqueue";
/// Datagrams per `recvmmsg` call.
const RECV_CHUNK: usize = 64;
/// Most verdict bytes in one `sendto` (one verdict may be longer, up to 64 KiB + headers):
/// under the default socket send buffer (~208 KiB), which a netlink datagram must fit.
pub const SEND_CHUNK: usize = 128 * 1024;
/// How long `open` waits for the kernel's acks.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// How to open a queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NfqueueConfig {
    /// Queue number, as in `--queue-num`.
    pub queue: u16,
    /// Longest packet copied to userspace; longer ones are dropped and counted. 65535 (the
    /// default) holds every IPv4 packet. A batch needs `Batch::max_len() >= copy_range`.
    pub copy_range: u16,
    /// Packets the kernel holds for this queue before it drops (or, fail-open, accepts) new
    /// ones. Kernel default 1024; ours 4096.
    pub queue_max_len: u32,
    /// `NFQA_CFG_F_FAIL_OPEN`: accept instead of drop when the queue is full. Default true.
    pub fail_open: bool,
    /// Socket receive buffer in bytes (`SO_RCVBUFFORCE`, falling back to `SO_RCVBUF`).
    /// Default 32 MiB: a few hundred 64 KiB messages, more than TCP keeps in flight.
    pub recv_buffer: usize,
    /// `NFQA_CFG_F_GSO`: take GSO super-packets whole and complete partial checksums here
    /// (see the module doc). Default true.
    pub gso: bool,
}

impl Default for NfqueueConfig {
    fn default() -> Self {
        NfqueueConfig {
            queue: 0,
            copy_range: u16::MAX,
            queue_max_len: 4096,
            fail_open: true,
            recv_buffer: 32 << 20,
            gso: true,
        }
    }
}

/// Counters of one queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NfqueueStats {
    /// Packets handed to the caller.
    pub received: u64,
    /// Accept verdicts sent.
    pub accepted: u64,
    /// Drop verdicts sent for the caller's `Action::Drop`.
    pub dropped: u64,
    /// Packets longer than `copy_range`, dropped without reaching the caller.
    pub too_long: u64,
    /// GSO super-packets received whole (the kernel's `NFQA_SKB_GSO`; only with `gso`).
    pub gso_packets: u64,
    /// Packets that arrived with a partial TCP/UDP checksum, completed before the caller
    /// saw them (only with `gso`).
    pub checksums_completed: u64,
    /// Packets that arrived with a partial checksum this backend could not complete (not
    /// TCP/UDP, or truncated), handed over as they are. Should stay 0.
    pub checksum_not_ready: u64,
    /// Errors the kernel reported for verdicts (e.g. an unknown packet id).
    pub verdict_errors: u64,
    /// Messages that could not be parsed (skipped).
    pub malformed: u64,
}

/// One bound NFQUEUE queue. Closing it (drop) releases the queue; see the module doc for
/// what happens to traffic then.
#[derive(Debug)]
pub struct Nfqueue {
    fd: OwnedFd,
    config: NfqueueConfig,
    seq: u32,
    /// Verdict messages being gathered; reused.
    tx: Vec<u8>,
    stats: NfqueueStats,
    /// Datagram lengths of the last `recvmmsg`.
    rx_lens: [usize; RECV_CHUNK],
    /// The UDP GSO packets of the current batch: id and bytes as handed to the caller (see
    /// the module doc). The byte buffers are reused.
    udp_gso: Vec<(u32, Vec<u8>)>,
    /// Buffers for `udp_gso`.
    spare_copies: Vec<Vec<u8>>,
}

impl Nfqueue {
    /// Opens a netlink socket and binds queue `config.queue`. Open the queues before
    /// installing the iptables rules that feed them.
    pub fn open(config: NfqueueConfig) -> Result<Nfqueue, CaptureError> {
        let q = config.queue;
        if config.copy_range == 0 {
            return Err(CaptureError::Config { backend: BACKEND, detail: "copy_range must be at least 1".into() });
        }
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw =
            unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_NETFILTER) };
        if raw < 0 {
            return Err(CaptureError::os(
                "nfqueue: cannot open a netfilter netlink socket",
                io::Error::last_os_error(),
                "the kernel needs CONFIG_NETFILTER_NETLINK_QUEUE (modprobe nfnetlink_queue)",
            ));
        }
        // SAFETY: `raw` is a fresh, valid descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut nfq = Nfqueue {
            fd,
            config,
            seq: 0,
            tx: Vec::with_capacity(SEND_CHUNK + 70_000),
            stats: NfqueueStats::default(),
            rx_lens: [0; RECV_CHUNK],
            udp_gso: Vec::new(),
            spare_copies: Vec::new(),
        };

        // SAFETY: sockaddr_nl is plain data; all-zero is a valid value (family set below).
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `addr` is a valid sockaddr_nl of the size passed.
        let rc = unsafe {
            libc::bind(
                nfq.fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(CaptureError::os("nfqueue: cannot bind the netlink socket", io::Error::last_os_error(), ""));
        }
        // Queue overruns are counted by the kernel (/proc/net/netfilter/nfnetlink_queue); an
        // ENOBUFS error here would only make us lose our place.
        nfq.setsockopt(libc::SOL_NETLINK, libc::NETLINK_NO_ENOBUFS, 1);
        let rcvbuf = i32::try_from(config.recv_buffer).unwrap_or(i32::MAX);
        if !nfq.setsockopt(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, rcvbuf) {
            nfq.setsockopt(libc::SOL_SOCKET, libc::SO_RCVBUF, rcvbuf);
        }
        nfq.setsockopt(libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, 1 << 20);

        nfq.request(&format!("nfqueue: cannot bind queue {q}"), |buf, seq| {
            msg::config_cmd(buf, seq, q, msg::CMD_BIND)
        })?;
        let mut flags = if config.fail_open { msg::CFG_F_FAIL_OPEN } else { 0 };
        if config.gso {
            flags |= msg::CFG_F_GSO;
        }
        nfq.request(&format!("nfqueue: cannot configure queue {q}"), |buf, seq| {
            msg::config_params(
                buf,
                seq,
                q,
                u32::from(config.copy_range),
                config.queue_max_len,
                flags,
                msg::CFG_F_FAIL_OPEN | msg::CFG_F_GSO,
            )
        })?;
        Ok(nfq)
    }

    /// Opens queues `first..first + count`, one per worker thread, matching an iptables rule
    /// with `--queue-balance first:first+count-1`. Every other setting comes from `config`.
    pub fn open_range(first: u16, count: u16, config: NfqueueConfig) -> Result<Vec<Nfqueue>, CaptureError> {
        let last = first.checked_add(count.saturating_sub(1)).ok_or_else(|| CaptureError::Config {
            backend: BACKEND,
            detail: format!("queues {first}..{first}+{count} go past 65535"),
        })?;
        (first..=last).take(usize::from(count)).map(|queue| Nfqueue::open(NfqueueConfig { queue, ..config })).collect()
    }

    /// The queue number.
    pub fn queue(&self) -> u16 {
        self.config.queue
    }

    /// Counters so far.
    pub fn stats(&self) -> NfqueueStats {
        self.stats
    }

    fn setsockopt(&self, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> bool {
        // SAFETY: `value` is a live c_int and its size is passed.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        rc == 0
    }

    /// Sends one config request and waits for its ack. Packets that arrive meanwhile (before
    /// the copy mode is set they carry no payload) get a drop verdict.
    fn request(&mut self, context: &str, build: impl FnOnce(&mut Vec<u8>, u32)) -> Result<(), CaptureError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        self.tx.clear();
        build(&mut self.tx, seq);
        self.flush().map_err(|e| CaptureError::os(context, e, ""))?;
        let deadline = Instant::now() + ACK_TIMEOUT;
        let mut buf = vec![0u8; 8192 + usize::from(self.config.copy_range)];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.wait_readable(Some(left)).map_err(|e| CaptureError::os(context, e, ""))? {
                return Err(CaptureError::os(
                    context,
                    io::Error::from(io::ErrorKind::TimedOut),
                    "the kernel did not answer; is nfnetlink_queue loaded?",
                ));
            }
            // SAFETY: `buf` is valid for writes of its length.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(CaptureError::os(context, e, ""));
            }
            let mut answer = None;
            self.tx.clear();
            let tx = &mut self.tx;
            let parsed = msg::parse(&buf[..n as usize], |m| match m {
                msg::Msg::Error { errno, seq: s } if s == seq => answer = Some(errno),
                msg::Msg::Packet(p) => {
                    msg::verdict(tx, p.queue, p.id, msg::NF_DROP, None);
                }
                _ => {}
            });
            if parsed.is_err() {
                self.stats.malformed += 1;
            }
            self.flush().map_err(|e| CaptureError::os(context, e, ""))?;
            match answer {
                Some(0) => return Ok(()),
                Some(errno) => {
                    let hint = match errno {
                        // The kernel answers EPERM both without CAP_NET_ADMIN and when
                        // another socket holds the queue.
                        libc::EPERM | libc::EBUSY => format!(
                            "run as root (CAP_NET_ADMIN is needed); if you are, another process is bound to \
                             queue {} (see /proc/net/netfilter/nfnetlink_queue) — stop it or use another --queue-num",
                            self.config.queue
                        ),
                        _ => String::new(),
                    };
                    return Err(CaptureError::os(context, io::Error::from_raw_os_error(errno), &hint));
                }
                None => continue,
            }
        }
    }

    /// Waits until the socket is readable; false on timeout or signal.
    fn wait_readable(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let ms = match timeout {
            None => -1,
            // Round up so a 100 µs timeout waits 1 ms rather than spinning.
            Some(t) => i32::try_from(t.as_micros().div_ceil(1000)).unwrap_or(i32::MAX),
        };
        let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted { Ok(false) } else { Err(e) };
        }
        Ok(rc > 0)
    }

    /// Sends the gathered verdicts in one datagram (the kernel processes every message in it).
    fn flush(&mut self) -> io::Result<()> {
        if self.tx.is_empty() {
            return Ok(());
        }
        // SAFETY: sockaddr_nl is plain data; all-zero (pid 0) addresses the kernel.
        let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        to.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        loop {
            // SAFETY: `tx` and `to` are valid for the lengths passed.
            let n = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    self.tx.as_ptr().cast(),
                    self.tx.len(),
                    0,
                    (&to as *const libc::sockaddr_nl).cast(),
                    std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                )
            };
            if n >= 0 {
                self.tx.clear();
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Receives up to `want` datagrams into the batch's free slots; returns how many arrived.
    /// Without `block`, does not wait (0 when none is ready); with it, waits for the first
    /// (`MSG_WAITFORONE`: one syscall where `poll` + receive would be two; 0 on a signal).
    fn recv_chunk(&mut self, batch: &mut Batch, want: usize, block: bool) -> io::Result<usize> {
        let spare = batch.spare_mut();
        let want = want.min(spare.len()).min(RECV_CHUNK);
        // SAFETY: iovec and mmsghdr are plain C structs for which all-zero is valid (null
        // pointers, zero lengths); every entry used is filled in below.
        let mut iov: [libc::iovec; RECV_CHUNK] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut hdrs: [libc::mmsghdr; RECV_CHUNK] = unsafe { std::mem::zeroed() };
        for i in 0..want {
            let buf = spare[i].raw_buffer_mut();
            iov[i] = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
            hdrs[i].msg_hdr.msg_iov = &mut iov[i];
            hdrs[i].msg_hdr.msg_iovlen = 1;
        }
        loop {
            // SAFETY: `hdrs[..want]` point at `iov[..want]`, which point at distinct buffers
            // of the batch that outlive the call; nothing else touches them meanwhile.
            let n = unsafe {
                libc::recvmmsg(
                    self.fd.as_raw_fd(),
                    hdrs.as_mut_ptr(),
                    want as libc::c_uint,
                    if block { libc::MSG_WAITFORONE } else { libc::MSG_DONTWAIT },
                    std::ptr::null_mut(),
                )
            };
            if n >= 0 {
                let n = n as usize;
                for (len, h) in self.rx_lens.iter_mut().zip(&hdrs).take(n) {
                    // A datagram longer than the buffer (MSG_TRUNC) cannot happen: buffers
                    // hold copy_range plus headroom for the metadata. Parse what is there.
                    *len = h.msg_len as usize;
                }
                return Ok(n);
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock => return Ok(0),
                // A signal ends a blocking wait, as it ends a `poll`.
                io::ErrorKind::Interrupted if block => return Ok(0),
                io::ErrorKind::Interrupted => continue,
                _ => return Err(e),
            }
        }
    }

    /// Turns the `n` datagrams just received into the batch's free slots into packets: moves
    /// each payload to the front of its buffer, keeps packet slots, releases the others.
    fn take_packets(&mut self, batch: &mut Batch, n: usize, now: u64) {
        let mut kept = 0;
        for i in 0..n {
            let spare = batch.spare_mut();
            let slot = &mut spare[i];
            let raw_len = self.rx_lens[i];
            let mut packet = None;
            let mut errors = 0;
            let parsed = msg::parse(&slot.raw_buffer_mut()[..raw_len], |m| match m {
                // One packet per datagram is what the kernel sends; keep the first.
                msg::Msg::Packet(p) if packet.is_none() => packet = Some(p),
                msg::Msg::Packet(p) => {
                    msg::verdict(&mut self.tx, p.queue, p.id, msg::NF_DROP, None);
                }
                msg::Msg::Error { errno, .. } if errno != 0 => errors += 1,
                _ => {}
            });
            self.stats.verdict_errors += errors;
            if parsed.is_err() {
                self.stats.malformed += 1;
            }
            let Some(p) = packet else { continue };
            let payload_len = p.payload.len();
            if p.cap_len.is_some_and(|c| c as usize > payload_len)
                || payload_len + BATCH_HEADROOM > slot.raw_buffer_mut().len()
            {
                self.stats.too_long += 1;
                msg::verdict(&mut self.tx, p.queue, p.id, msg::NF_DROP, None);
                continue;
            }
            slot.raw_buffer_mut().copy_within(p.payload.clone(), 0);
            let packet = &mut slot.raw_buffer_mut()[..payload_len];
            if p.skb_info & msg::SKB_CSUMNOTREADY != 0 {
                match csum::complete_partial(packet) {
                    Ok(()) => self.stats.checksums_completed += 1,
                    Err(_) => self.stats.checksum_not_ready += 1,
                }
            }
            if p.skb_info & msg::SKB_GSO != 0 {
                self.stats.gso_packets += 1;
                if packet.get(9) == Some(&csum::UDP) {
                    let mut copy = self.spare_copies.pop().unwrap_or_default();
                    copy.clear();
                    copy.extend_from_slice(packet);
                    self.udp_gso.push((p.id, copy));
                }
            }
            slot.set_raw(payload_len, 0);
            slot.set_timestamp_us(now);
            slot.set_action(Action::Accept);
            slot.meta = crate::PacketMeta {
                id: u64::from(p.id),
                queue: p.queue,
                in_interface: p.indev,
                out_interface: p.outdev,
                outbound: None,
                ..crate::PacketMeta::default()
            };
            spare.swap(kept, i);
            kept += 1;
        }
        batch.grow(kept);
        self.stats.received += kept as u64;
    }
}

impl Capture for Nfqueue {
    fn recv_batch(&mut self, batch: &mut Batch, timeout: Option<Duration>) -> Result<usize, CaptureError> {
        batch.clear();
        self.spare_copies.extend(self.udp_gso.drain(..).map(|(_, copy)| copy));
        let need = usize::from(self.config.copy_range);
        if batch.max_len() < need {
            return Err(CaptureError::BatchTooSmall { backend: BACKEND, need, have: batch.max_len() });
        }
        let q = self.config.queue;
        let deadline = timeout.map(|t| Instant::now() + t);
        while batch.is_empty() {
            // Without a timeout the first receive itself waits; with one, `poll` does.
            let block = deadline.is_none();
            if let Some(d) = deadline {
                let left = d.saturating_duration_since(Instant::now());
                let ready = self
                    .wait_readable(Some(left))
                    .map_err(|e| CaptureError::os(format!("nfqueue: cannot wait on queue {q}"), e, ""))?;
                if !ready {
                    break;
                }
            }
            let mut first = true;
            loop {
                let room = batch.capacity() - batch.len();
                let n = self
                    .recv_chunk(batch, room, block && first)
                    .map_err(|e| CaptureError::os(format!("nfqueue: cannot receive from queue {q}"), e, ""))?;
                let interrupted = block && first && n == 0;
                first = false;
                self.take_packets(batch, n, clock::now_us());
                if n < room.min(RECV_CHUNK) || batch.is_full() {
                    if interrupted {
                        self.flush().map_err(|e| {
                            CaptureError::os(format!("nfqueue: cannot send verdicts on queue {q}"), e, "")
                        })?;
                        return Ok(batch.len());
                    }
                    break;
                }
            }
            // Drop verdicts for packets we could not hand over.
            self.flush().map_err(|e| CaptureError::os(format!("nfqueue: cannot send verdicts on queue {q}"), e, ""))?;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
        }
        Ok(batch.len())
    }

    fn send_batch(&mut self, batch: &mut Batch) -> Result<(), CaptureError> {
        let q = self.config.queue;
        let ctx = || format!("nfqueue: cannot send verdicts on queue {q}");
        self.tx.clear();
        for p in batch.iter() {
            // The packet id is 32 bits in the kernel; ids of other backends are not ours.
            let Ok(id) = u32::try_from(p.meta.id) else { continue };
            // Keep each datagram under SEND_CHUNK (a verdict's header is under 64 bytes).
            if !self.tx.is_empty() && self.tx.len() + p.len() + 64 > SEND_CHUNK {
                self.flush().map_err(|e| CaptureError::os(ctx(), e, ""))?;
            }
            match p.action() {
                Action::Accept => {
                    match self.udp_gso.iter().find(|(i, _)| *i == id) {
                        // Unchanged: the kernel keeps its own packet, checksum state and all
                        // (a mangled UDP GSO packet cannot be delivered locally).
                        Some((_, original)) if original.as_slice() == p.data() => {
                            msg::verdict(&mut self.tx, p.meta.queue, id, msg::NF_ACCEPT, None);
                        }
                        Some(_) => {
                            let at = msg::verdict(&mut self.tx, p.meta.queue, id, msg::NF_ACCEPT, Some(p.data()));
                            // Not TCP/UDP any more (the caller rewrote it): nothing to restore.
                            let _ = csum::restore_partial(&mut self.tx[at..at + p.len()]);
                        }
                        None => {
                            msg::verdict(&mut self.tx, p.meta.queue, id, msg::NF_ACCEPT, Some(p.data()));
                        }
                    }
                    self.stats.accepted += 1;
                }
                Action::Drop => {
                    msg::verdict(&mut self.tx, p.meta.queue, id, msg::NF_DROP, None);
                    self.stats.dropped += 1;
                }
            }
        }
        self.flush().map_err(|e| CaptureError::os(ctx(), e, ""))
    }
}
