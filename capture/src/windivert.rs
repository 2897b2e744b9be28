//! WinDivert backend (Windows only): packets matching a filter (see
//! [`crate::windivert_filter::nat_filter`]) are diverted from the network stack, received in
//! batches with `WinDivertRecvEx`, rewritten in place by the caller and reinjected with
//! `WinDivertSendEx` using the address (interface + direction) they were captured with.
//!
//! **Not run on real Windows by us**: this file is type-checked for x86_64-pc-windows-gnu by
//! `tools/check-windows.sh`; the pure parts (filter builder, batch splitter) are unit-tested
//! on Linux.
//!
//! # Why windivert-sys and not the windivert crate
//! windivert 0.6's `recv_ex` allocates two `Vec`s per call and parses every packet with
//! `expect` (a panic on anything that is not IP); its `send_ex` copies the whole batch into a
//! fresh `Vec`; and it has no receive timeout. Here the receive buffer, the address arrays
//! and the send buffer are allocated once, the receive is overlapped I/O bounded by the
//! timeout, and splitting uses [`crate::windivert_split`].
//!
//! # Direction and reinjection
//! Packets from the VMs reach the host *inbound* on the internal vEthernet adapter. A packet
//! is reinjected with its captured address unless the caller changed
//! [`crate::PacketMeta::outbound`] or `in_interface`: a WinDivert NAT typically reinjects a
//! translated VM packet (source now the external address) as *outbound* so the host routes
//! it out, and a translated reply (destination now a VM) as *outbound* too, so it is routed
//! to the vEthernet adapter; both without enabling IP forwarding. Which one the daemon uses
//! is its choice; it must be verified on Windows.
//!
//! Packets the host *routes* (a VM's packet to the Internet: its destination is not the
//! host) do not pass WinDivert's network layer at all, according to WinDivert's maintainer
//! (basil00/WinDivert issues #34, #227): they are seen only at the forward layer, and only
//! when IP forwarding is enabled. [`WinDivertConfig::forward`] opens a handle there; the
//! daemon diverts the NATs' outbound half with one and sends the translated packets out
//! through a network-layer handle as outbound (issue #244 suggests the same). At the forward
//! layer reinjection uses the captured interface index (`FwpsInjectForwardAsync0`); at the
//! network layer an outbound packet is routed by its destination and its interface index is
//! ignored (read in the WinDivert 2.2.2 driver source vendored in windivert-sys 0.10).
//!
//! # Checksums
//! The caller (the engine) updates checksums incrementally, which is only right if they were
//! right on receive. Outbound packets from the host's own stack may carry offloaded
//! (not yet computed) checksums; WinDivert says so in the address's checksum flags. With
//! [`WinDivertConfig::complete_checksums`] (default) such packets get
//! `WinDivertHelperCalcChecksums` once on receive; every reinjected packet is then marked as
//! having valid checksums. Packets from VMs normally arrive with valid checksums and pay
//! nothing. (Not measured: there is no Windows machine here.)

use std::ffi::{c_void, CString};
use std::io;
use std::time::Duration;

use windivert_sys::address::{WINDIVERT_ADDRESS, WINDIVERT_DATA_NETWORK};
use windivert_sys::{
    ChecksumFlags, WinDivertClose, WinDivertFlags, WinDivertHelperCalcChecksums, WinDivertHelperCompileFilter,
    WinDivertHelperEvalFilter, WinDivertLayer, WinDivertOpen, WinDivertParam, WinDivertRecvEx, WinDivertSendEx,
    WinDivertSetParam, WINDIVERT_BATCH_MAX, WINDIVERT_MTU_MAX,
};
use windows::Win32::Foundation::{CloseHandle, HANDLE};
use windows::Win32::System::Threading::CreateEventW;
use windows::Win32::System::IO::{CancelIoEx, GetOverlappedResult, GetOverlappedResultEx, OVERLAPPED};

use crate::windivert_split::split_packets;
use crate::{clock, Action, Batch, Capture, CaptureError, PacketMeta};

const BACKEND: &str = "windivert";
const ADDR_SIZE: usize = std::mem::size_of::<WINDIVERT_ADDRESS>();
const WAIT_TIMEOUT: i32 = 258;
const ERROR_IO_INCOMPLETE: i32 = 996;
const ERROR_IO_PENDING: i32 = 997;
const ERROR_OPERATION_ABORTED: i32 = 995;

/// How to open a WinDivert handle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WinDivertConfig {
    /// The filter, e.g. from [`crate::windivert_filter::nat_filter`].
    pub filter: String,
    /// WinDivert priority (-30000..=30000); higher sees packets first.
    pub priority: i16,
    /// Packets per receive (1..=255, WinDivert's batch maximum).
    pub batch_packets: usize,
    /// `WINDIVERT_PARAM_QUEUE_LENGTH`: packets the driver queues for us (32..=16384).
    pub queue_length: u64,
    /// `WINDIVERT_PARAM_QUEUE_TIME` in ms (100..=16000): older queued packets are dropped.
    pub queue_time_ms: u64,
    /// Compute offloaded checksums on receive (see the module doc).
    pub complete_checksums: bool,
    /// Open at `WINDIVERT_LAYER_NETWORK_FORWARD` (packets the host routes from one interface
    /// to another; needs IP forwarding enabled) instead of `WINDIVERT_LAYER_NETWORK` (packets
    /// to and from the host itself).
    pub forward: bool,
}

impl Default for WinDivertConfig {
    fn default() -> Self {
        WinDivertConfig {
            filter: "false".into(),
            priority: 0,
            batch_packets: 64,
            queue_length: 8192,
            queue_time_ms: 2000,
            complete_checksums: true,
            forward: false,
        }
    }
}

/// Counters of one handle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WinDivertStats {
    /// Packets handed to the caller.
    pub received: u64,
    /// Packets reinjected.
    pub sent: u64,
    /// Packets the caller dropped (not reinjected).
    pub dropped: u64,
    /// Packets whose checksums were computed on receive.
    pub checksums_completed: u64,
    /// Bytes at the end of a receive that were not a complete IP packet (skipped).
    pub unsplittable: u64,
}

/// Buffers the driver writes into during an overlapped receive: boxed so their addresses stay
/// fixed while the I/O is pending, even if the `WinDivert` value moves.
struct RxState {
    overlapped: OVERLAPPED,
    addr_len: u32,
    addrs: [WINDIVERT_ADDRESS; WINDIVERT_BATCH_MAX as usize],
}

/// An open WinDivert handle at the network layer (or the forward layer, see
/// [`WinDivertConfig::forward`]).
pub struct WinDivert {
    handle: HANDLE,
    event: HANDLE,
    config: WinDivertConfig,
    rx: Box<RxState>,
    rx_buf: Box<[u8]>,
    pending: bool,
    /// Address of each packet of the last receive, indexed by `PacketMeta::id`.
    slots: Vec<WINDIVERT_ADDRESS>,
    tx_buf: Vec<u8>,
    tx_addrs: Vec<WINDIVERT_ADDRESS>,
    stats: WinDivertStats,
}

// SAFETY: the raw pointers inside OVERLAPPED refer to this value's own boxed buffers and event,
// which move with it; WinDivert and kernel handles may be used from any thread. The type is
// not Sync, so only one thread uses it at a time.
unsafe impl Send for WinDivert {}

impl std::fmt::Debug for WinDivert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WinDivert").field("filter", &self.config.filter).field("stats", &self.stats).finish()
    }
}

/// What is needed for WinDivertOpen to work, said whenever the driver cannot be loaded.
const DRIVER_NEEDED: &str = "netnat needs the WinDivert 2.2 driver: put WinDivert64.sys (from the signed release, \
     https://reqrypt.org/windivert.html) next to netnat.exe and WinDivert.dll, and run netnat as Administrator \
     (WinDivert installs the driver the first time a handle is opened)";

/// What to tell the user for a `WinDivertOpen` error code.
fn open_hint(code: Option<i32>) -> String {
    let why = match code {
        Some(5) => {
            return "run as Administrator (the WinDivert driver can only be opened from an elevated prompt)".into()
        }
        Some(87) => return "the filter is invalid; this is a bug in netnat's filter builder, please report it".into(),
        Some(654) => return "an incompatible WinDivert driver is loaded; reboot or run `sc stop WinDivert`".into(),
        Some(2) | Some(3) => "WinDivert64.sys was not found",
        Some(577) => "the driver's signature was rejected; use the signed WinDivert 2.2 release files",
        Some(1060) => "the WinDivert driver is not installed",
        // Wine gives this: it has no kernel driver support for WinDivert64.sys.
        Some(1114) => {
            "the WinDivert driver could not be loaded (no WinDivert64.sys, or a system that cannot load \
                       kernel drivers, such as Wine)"
        }
        Some(1275) => "the driver was blocked (security software or Secure Boot policy)",
        _ => "the WinDivert driver could not be opened",
    };
    format!("{why}; {DRIVER_NEEDED}")
}

/// A filter that WinDivert's own compiler refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("windivert: the filter is invalid at character {position} ({message}); this is a bug in netnat's filter builder, please report it")]
pub struct FilterRejected {
    /// WinDivert's message, e.g. "Filter expression too long".
    pub message: String,
    /// Where in the filter string the compiler stopped.
    pub position: u32,
}

/// Compiles `filter` for the network layer (or the forward layer) with WinDivert.dll's own
/// compiler (`WinDivertHelperCompileFilter`), as `WinDivertOpen` would; needs neither the
/// driver nor privileges.
pub fn compile_filter(filter: &str, forward: bool) -> Result<(), FilterRejected> {
    let text = CString::new(filter)
        .map_err(|_| FilterRejected { message: "the filter contains a NUL byte".into(), position: 0 })?;
    let layer = if forward { WinDivertLayer::Forward } else { WinDivertLayer::Network };
    let mut message: *const std::ffi::c_char = std::ptr::null();
    let mut position = 0u32;
    // SAFETY: `text` is NUL-terminated and outlives the call; a null object buffer asks only
    // for a check; the error string WinDivert returns is a static literal.
    let ok = unsafe {
        WinDivertHelperCompileFilter(text.as_ptr(), layer, std::ptr::null_mut(), 0, &mut message, &mut position)
    };
    if ok.as_bool() {
        return Ok(());
    }
    let message = if message.is_null() {
        "no reason given".to_owned()
    } else {
        // SAFETY: non-null: a NUL-terminated static string from windivert.dll.
        unsafe { std::ffi::CStr::from_ptr(message) }.to_string_lossy().into_owned()
    };
    Err(FilterRejected { message, position })
}

/// Where a packet is seen, for [`filter_matches`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeenAt {
    /// At the forward layer (packets the host routes) rather than the network layer.
    pub forward: bool,
    /// Outbound from the host (network layer only; WinDivert's `outbound`).
    pub outbound: bool,
    /// Interface index (`ifIdx`).
    pub interface: u32,
}

/// Whether `filter` diverts the IPv4 `packet` seen at `at`, by WinDivert.dll's own evaluator
/// (`WinDivertHelperEvalFilter`); needs neither the driver nor privileges. An error when the
/// filter does not compile or the packet cannot be parsed.
pub fn filter_matches(filter: &str, packet: &[u8], at: SeenAt) -> io::Result<bool> {
    let text =
        CString::new(filter).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "the filter contains a NUL"))?;
    let mut addr = WINDIVERT_ADDRESS::default();
    addr.set_layer(if at.forward { WinDivertLayer::Forward } else { WinDivertLayer::Network });
    addr.set_outbound(at.outbound);
    addr.union_field.Network = WINDIVERT_DATA_NETWORK { interface_id: at.interface, subinterface_id: 0 };
    // SAFETY: `text` is NUL-terminated, `packet` readable for its length and `addr` a valid
    // network-layer address; all outlive the call. WinDivert sets the last error to 0 for a
    // packet that does not match and to an error code otherwise.
    let ok = unsafe { WinDivertHelperEvalFilter(text.as_ptr(), packet.as_ptr().cast(), packet.len() as u32, &addr) };
    if ok.as_bool() {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(0) {
        Ok(false)
    } else {
        Err(e)
    }
}

impl WinDivert {
    /// Opens a network-layer handle with `config.filter`.
    pub fn open(config: WinDivertConfig) -> Result<WinDivert, CaptureError> {
        if !(1..=WINDIVERT_BATCH_MAX as usize).contains(&config.batch_packets) {
            return Err(CaptureError::Config {
                backend: BACKEND,
                detail: format!("batch_packets is {}; it must be 1..=255", config.batch_packets),
            });
        }
        let filter = CString::new(config.filter.clone())
            .map_err(|_| CaptureError::Config { backend: BACKEND, detail: "the filter contains a NUL byte".into() })?;
        // SAFETY: CreateEventW with no name and default security returns a new handle or an error.
        let event = unsafe { CreateEventW(None, true, false, None) }
            .map_err(|e| CaptureError::os("windivert: cannot create an event", io::Error::from(e), ""))?;
        let layer = if config.forward { WinDivertLayer::Forward } else { WinDivertLayer::Network };
        // SAFETY: `filter` is a NUL-terminated string that outlives the call.
        let handle = unsafe { WinDivertOpen(filter.as_ptr(), layer, config.priority, WinDivertFlags::new()) };
        if handle.is_invalid() {
            let e = io::Error::last_os_error();
            // SAFETY: `event` is the handle created above, closed once.
            unsafe { CloseHandle(event) };
            let mut hint = open_hint(e.raw_os_error());
            if e.raw_os_error() == Some(87) {
                if let Err(rejected) = compile_filter(&config.filter, config.forward) {
                    hint = rejected.to_string();
                }
            }
            return Err(CaptureError::os("windivert: cannot open a handle", e, &hint));
        }
        for (param, value) in
            [(WinDivertParam::QueueLength, config.queue_length), (WinDivertParam::QueueTime, config.queue_time_ms)]
        {
            // SAFETY: a valid handle; invalid values make the call fail, which we ignore (the
            // driver keeps its default).
            unsafe { WinDivertSetParam(handle, param, value) };
        }
        let rx = Box::new(RxState {
            // SAFETY: OVERLAPPED is plain data; all-zero is its documented initial state.
            overlapped: unsafe { std::mem::zeroed() },
            addr_len: 0,
            addrs: [WINDIVERT_ADDRESS::default(); WINDIVERT_BATCH_MAX as usize],
        });
        let rx_len = config.batch_packets * WINDIVERT_MTU_MAX as usize;
        Ok(WinDivert {
            handle,
            event,
            rx,
            rx_buf: vec![0u8; rx_len].into_boxed_slice(),
            pending: false,
            slots: Vec::with_capacity(config.batch_packets),
            tx_buf: Vec::with_capacity(rx_len),
            tx_addrs: Vec::with_capacity(config.batch_packets),
            config,
            stats: WinDivertStats::default(),
        })
    }

    /// Counters so far.
    pub fn stats(&self) -> WinDivertStats {
        self.stats
    }

    /// Starts an overlapped receive into `rx_buf` unless one is pending.
    fn start_recv(&mut self) -> io::Result<()> {
        if self.pending {
            return Ok(());
        }
        let rx = &mut *self.rx;
        // SAFETY: OVERLAPPED is plain data; reset for a new operation, with our event.
        rx.overlapped = unsafe { std::mem::zeroed() };
        rx.overlapped.hEvent = self.event;
        rx.addr_len = (self.config.batch_packets * ADDR_SIZE) as u32;
        // SAFETY: buffer, address array, its length and the OVERLAPPED live in boxes owned by
        // `self` that are neither moved nor freed until the I/O completes (Drop cancels and
        // waits for it). pRecvLen may be null for overlapped I/O.
        let ok = unsafe {
            WinDivertRecvEx(
                self.handle,
                self.rx_buf.as_mut_ptr().cast::<c_void>(),
                self.rx_buf.len() as u32,
                std::ptr::null_mut(),
                0,
                rx.addrs.as_mut_ptr(),
                &mut rx.addr_len,
                &mut rx.overlapped,
            )
        };
        if ok.as_bool() {
            self.pending = true; // completed at once; GetOverlappedResult returns immediately
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(ERROR_IO_PENDING) {
            self.pending = true;
            Ok(())
        } else {
            Err(e)
        }
    }

    /// Copies the completed receive (`n` bytes) into the batch.
    fn deliver(&mut self, batch: &mut Batch, n: usize) {
        let count = (self.rx.addr_len as usize / ADDR_SIZE).min(self.config.batch_packets);
        let now = clock::now_us();
        self.slots.clear();
        let data = &mut self.rx_buf[..n];
        let mut consumed = 0;
        let found = split_packets(data, count, |_, len| consumed += len);
        self.stats.unsplittable += (n - consumed) as u64;
        let mut at = 0;
        for i in 0..found.min(batch.capacity()) {
            let len = crate::windivert_split::first_packet_len(&data[at..]).unwrap_or(0);
            let mut addr = self.rx.addrs[i];
            let pkt = &mut data[at..at + len];
            at += len;
            let checksums_valid = addr.ipchecksum() && addr.tcpchecksum() && addr.udpchecksum();
            if self.config.complete_checksums && !checksums_valid {
                // SAFETY: `pkt` is a valid, writable packet of `len` bytes; `addr` is its address.
                let ok = unsafe {
                    WinDivertHelperCalcChecksums(pkt.as_mut_ptr().cast(), len as u32, &mut addr, ChecksumFlags::new())
                };
                if ok.as_bool() {
                    self.stats.checksums_completed += 1;
                }
            }
            let Some(slot) = batch.push_slot() else { break };
            if slot.fill(pkt, 0) < len {
                // Longer than the batch's buffers: give the slot back; the packet is not
                // reinjected (dropped), which only happens with batches below 65535 bytes.
                batch.truncate(batch.len() - 1);
                continue;
            }
            slot.set_timestamp_us(now);
            // SAFETY: at the network layer the address's union holds WINDIVERT_DATA_NETWORK.
            let iface = unsafe { addr.union_field.Network.interface_id };
            slot.meta = PacketMeta {
                id: self.slots.len() as u64,
                queue: 0,
                in_interface: iface,
                out_interface: 0,
                outbound: Some(addr.outbound()),
                ..PacketMeta::default()
            };
            self.slots.push(addr);
        }
        self.stats.received += batch.len() as u64;
    }

    fn send_chunk(&mut self) -> io::Result<()> {
        if self.tx_addrs.is_empty() {
            return Ok(());
        }
        // SAFETY: `tx_buf` holds the packets back to back and `tx_addrs` one address per
        // packet; both outlive this synchronous call.
        let ok = unsafe {
            WinDivertSendEx(
                self.handle,
                self.tx_buf.as_ptr().cast(),
                self.tx_buf.len() as u32,
                std::ptr::null_mut(),
                0,
                self.tx_addrs.as_ptr(),
                (self.tx_addrs.len() * ADDR_SIZE) as u32,
                std::ptr::null_mut(),
            )
        };
        self.stats.sent += self.tx_addrs.len() as u64;
        self.tx_buf.clear();
        self.tx_addrs.clear();
        if ok.as_bool() {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

impl Capture for WinDivert {
    fn recv_batch(&mut self, batch: &mut Batch, timeout: Option<Duration>) -> Result<usize, CaptureError> {
        batch.clear();
        self.start_recv().map_err(|e| CaptureError::os("windivert: cannot receive", e, ""))?;
        let ms = match timeout {
            None => u32::MAX, // INFINITE
            Some(t) => u32::try_from(t.as_millis()).unwrap_or(u32::MAX - 1),
        };
        let mut n = 0u32;
        // SAFETY: the OVERLAPPED is the one passed to the pending WinDivertRecvEx.
        let ok = unsafe { GetOverlappedResultEx(self.handle, &self.rx.overlapped, &mut n, ms, false) };
        if !ok.as_bool() {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                // Still pending: leave it for the next call.
                Some(WAIT_TIMEOUT) | Some(ERROR_IO_INCOMPLETE) => Ok(0),
                _ => {
                    self.pending = false;
                    Err(CaptureError::os("windivert: cannot receive", e, ""))
                }
            };
        }
        self.pending = false;
        self.deliver(batch, n as usize);
        Ok(batch.len())
    }

    fn send_batch(&mut self, batch: &mut Batch) -> Result<(), CaptureError> {
        for p in batch.iter() {
            if p.action() == Action::Drop {
                self.stats.dropped += 1;
                continue;
            }
            let mut addr =
                usize::try_from(p.meta.id).ok().and_then(|i| self.slots.get(i).copied()).unwrap_or_else(|| {
                    let mut a = WINDIVERT_ADDRESS::default();
                    a.set_layer(WinDivertLayer::Network);
                    a
                });
            if let Some(out) = p.meta.outbound {
                addr.set_outbound(out);
            }
            if p.meta.in_interface != 0 {
                // SAFETY: reading the network view of the union, which is plain integers.
                let sub = unsafe { addr.union_field.Network.subinterface_id };
                addr.union_field.Network =
                    WINDIVERT_DATA_NETWORK { interface_id: p.meta.in_interface, subinterface_id: sub };
            }
            // The engine leaves every checksum correct.
            addr.set_ipchecksum(true);
            addr.set_tcpchecksum(true);
            addr.set_udpchecksum(true);
            self.tx_buf.extend_from_slice(p.ip());
            self.tx_addrs.push(addr);
            if self.tx_addrs.len() == WINDIVERT_BATCH_MAX as usize {
                self.send_chunk().map_err(|e| CaptureError::os("windivert: cannot reinject", e, ""))?;
            }
        }
        self.send_chunk().map_err(|e| CaptureError::os("windivert: cannot reinject", e, ""))
    }
}

impl Drop for WinDivert {
    fn drop(&mut self) {
        // SAFETY: a pending receive writes into our boxes; cancel it and wait until the driver
        // is done with them before they are freed. Then close both handles exactly once.
        unsafe {
            if self.pending {
                CancelIoEx(self.handle, Some(&self.rx.overlapped));
                let mut n = 0u32;
                let ok = GetOverlappedResult(self.handle, &self.rx.overlapped, &mut n, true);
                let _ = (ok, ERROR_OPERATION_ABORTED);
            }
            WinDivertClose(self.handle);
            CloseHandle(self.event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_driver_says_what_to_install_and_how_to_run() {
        for code in [Some(2), Some(1060), Some(1114), Some(1275), Some(4242), None] {
            let hint = open_hint(code);
            assert!(hint.contains("WinDivert64.sys") && hint.contains("next to netnat.exe"), "{code:?}: {hint}");
            assert!(hint.contains("run netnat as Administrator"), "{code:?}: {hint}");
        }
        assert!(open_hint(Some(5)).contains("Administrator"));
    }

    /// What `netnat daemon` runs into first: a handle with the filter "false". Without the
    /// driver (under Wine, or WinDivert64.sys missing) the error says what is missing.
    #[test]
    fn opening_without_the_driver_fails_with_the_hint() {
        let config = WinDivertConfig { forward: true, ..WinDivertConfig::default() };
        match WinDivert::open(config) {
            Ok(_) => println!("a WinDivert driver is installed here: nothing to check"),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.starts_with("windivert: cannot open a handle: "), "{msg}");
                if e.raw_os_error() != Some(5) {
                    assert!(msg.contains("WinDivert64.sys") && msg.contains("Administrator"), "{msg}");
                }
            }
        }
    }

    #[test]
    fn a_filter_windivert_refuses_is_reported_with_its_position() {
        let e = compile_filter("ip and not (tcp or udp)", false).unwrap_err();
        assert_eq!(e.position, 11, "{e}");
        assert!(e.to_string().contains("bug in netnat's filter builder"), "{e}");
        compile_filter("ip and (tcp.DstPort < 10 or tcp.DstPort > 20)", false).unwrap();
        compile_filter("false", true).unwrap();
    }
}
