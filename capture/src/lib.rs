//! netnat-capture: packet I/O backends behind one trait.
//!
//! Every backend implements [`Capture`]: receive a [`Batch`] of packets, let the caller
//! rewrite them in place and set each one's [`Action`], send the batch back. The engine never
//! sees a backend; the daemon's worker loop drives the live ones, `netnat replay` the files.
//!
//! | backend | where | what it is |
//! |---|---|---|
//! | [`pcap`] | everywhere | pcap / pcapng files: reader and writers (`netnat replay`'s capture backend, `src/replay/capture.rs`, is built on them) |
//! //! | [`loopback`] | everywhere | in-memory queue, for tests of the worker loop |
//! | [`fault`] | everywhere | wraps any backend; seeded drops, duplicates, reordering, truncation |
//! | `nfqueue` | Linux | NFQUEUE: packets diverted by iptables, reinjected with a verdict |
//! | `windivert` | Windows | WinDivert: packets diverted by a filter, reinjected with `WinDivertSendEx` |
//!
//! What this crate does not do: parse or translate packets (that is `netnat-engine`), or
//! install firewall rules (the daemon does; [`windivert_filter`] only builds the filter string).
//!
//! # The cycle
//! ```
//! use netnat_capture::{Action, Batch, Capture, loopback::Loopback};
//! # fn main() -> Result<(), netnat_capture::CaptureError> {
//! let (mut cap, handle) = Loopback::new();
//! handle.inject(&[0x45, 0, 0, 20], 0);
//! let mut batch = Batch::new(64, 65535);
//! let n = cap.recv_batch(&mut batch, Some(std::time::Duration::from_millis(10)))?;
//! for p in batch.iter_mut() {
//!     // worker.handle_packet(now, p.ip_mut()) -> Forward { len, .. }, Pass, Held or Drop
//!     p.set_action(Action::Accept);
//! }
//! cap.send_batch(&mut batch)?;
//! assert_eq!((n, handle.take_sent().len()), (1, 1));
//! # Ok(()) }
//! ```

pub mod batch;
pub mod clock;
pub mod error;
pub mod fault;
pub mod loopback;
#[cfg(target_os = "linux")]
pub mod nfqueue;
pub mod pcap;
#[cfg(windows)]
pub mod windivert;
pub mod windivert_filter;
pub mod windivert_split;

use std::time::Duration;

pub use batch::{Action, Batch, Packet, PacketMeta};
pub use error::CaptureError;

/// Batched packet I/O, implemented by every backend.
///
/// Call order: `recv_batch`, process every packet (rewrite in place, [`Packet::set_len`],
/// [`Packet::set_action`]), then `send_batch` with the same batch before the next
/// `recv_batch`. Live backends (NFQUEUE, WinDivert) hold each received packet in the kernel
/// until `send_batch` gives its verdict, so a batch must not be dropped or cleared in between:
/// packets without a verdict stay queued in the kernel until the backend is closed.
/// `send_batch` leaves the batch's contents alone; `recv_batch` replaces them.
pub trait Capture {
    /// Replaces the batch's contents with up to `batch.capacity()` packets and returns how
    /// many arrived. Waits at most `timeout` for the first one (`None`: until one arrives;
    /// `Some(ZERO)`: not at all), then takes whatever else is ready without waiting.
    /// `Ok(0)` means the timeout passed (or a signal interrupted the wait); a file backend
    /// at end of input also returns `Ok(0)`, see its docs.
    fn recv_batch(&mut self, batch: &mut Batch, timeout: Option<Duration>) -> Result<usize, CaptureError>;

    /// Sends on every packet of the batch whose action is [`Action::Accept`] (its current
    /// bytes and length) and discards the ones marked [`Action::Drop`]. For NFQUEUE this
    /// issues the verdicts, with the modified payload when a packet changed.
    fn send_batch(&mut self, batch: &mut Batch) -> Result<(), CaptureError>;
}

impl<C: Capture + ?Sized> Capture for Box<C> {
    fn recv_batch(&mut self, batch: &mut Batch, timeout: Option<Duration>) -> Result<usize, CaptureError> {
        (**self).recv_batch(batch, timeout)
    }

    fn send_batch(&mut self, batch: &mut Batch) -> Result<(), CaptureError> {
        (**self).send_batch(batch)
    }
}
