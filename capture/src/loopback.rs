//! An in-memory backend for tests: the test injects packets through a [`LoopbackHandle`], the
//! code under test receives them with [`Capture::recv_batch`], and what it sends (or drops) is
//! collected on the handle.
//!
//! It waits like a live backend (a condition variable, bounded by the timeout), so a worker
//! loop can be tested on its own thread without sleeps.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::{clock, Action, Batch, Capture, CaptureError, PacketMeta};

/// A packet that went through the loopback: what `send_batch` saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoopbackPacket {
    /// The bytes as sent (after any rewrite, at the final length).
    pub data: Vec<u8>,
    /// Offset of the IPv4 header in `data`.
    pub l3_offset: usize,
    /// The packet's timestamp in microseconds.
    pub timestamp_us: u64,
    /// The metadata as sent.
    pub meta: PacketMeta,
}

#[derive(Debug, Default)]
struct Shared {
    rx: VecDeque<LoopbackPacket>,
    sent: Vec<LoopbackPacket>,
    dropped: Vec<LoopbackPacket>,
    closed: bool,
}

#[derive(Debug, Default)]
struct Inner {
    state: Mutex<Shared>,
    ready: Condvar,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding the lock can only come from a test's own assertion; the data
        // (plain queues) is still consistent, so keep going rather than cascade panics.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The backend side: implements [`Capture`].
#[derive(Debug)]
pub struct Loopback {
    inner: Arc<Inner>,
}

/// The test side: injects packets and collects what was sent. Clone it freely.
#[derive(Clone, Debug)]
pub struct LoopbackHandle {
    inner: Arc<Inner>,
}

impl Loopback {
    /// A new loopback and its handle.
    pub fn new() -> (Loopback, LoopbackHandle) {
        let inner = Arc::new(Inner::default());
        (Loopback { inner: inner.clone() }, LoopbackHandle { inner })
    }
}

impl LoopbackHandle {
    /// Queues a packet for `recv_batch`, stamped with [`clock::now_us`].
    pub fn inject(&self, bytes: &[u8], l3_offset: usize) {
        self.inject_at(bytes, l3_offset, clock::now_us());
    }

    /// Queues a packet with an explicit timestamp (microseconds).
    pub fn inject_at(&self, bytes: &[u8], l3_offset: usize, timestamp_us: u64) {
        let packet = LoopbackPacket { data: bytes.to_vec(), l3_offset, timestamp_us, meta: PacketMeta::default() };
        self.inner.lock().rx.push_back(packet);
        self.inner.ready.notify_all();
    }

    /// Takes the packets sent with `Action::Accept` so far, in send order.
    pub fn take_sent(&self) -> Vec<LoopbackPacket> {
        std::mem::take(&mut self.inner.lock().sent)
    }

    /// Takes the packets sent with `Action::Drop` so far.
    pub fn take_dropped(&self) -> Vec<LoopbackPacket> {
        std::mem::take(&mut self.inner.lock().dropped)
    }

    /// Packets injected but not yet received.
    pub fn pending(&self) -> usize {
        self.inner.lock().rx.len()
    }

    /// Ends the input: once the queue is empty, `recv_batch` returns [`CaptureError::Closed`]
    /// instead of waiting, so a worker loop under test terminates.
    pub fn close(&self) {
        self.inner.lock().closed = true;
        self.inner.ready.notify_all();
    }
}

impl Capture for Loopback {
    fn recv_batch(&mut self, batch: &mut Batch, timeout: Option<Duration>) -> Result<usize, CaptureError> {
        batch.clear();
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut state = self.inner.lock();
        while state.rx.is_empty() {
            if state.closed {
                return Err(CaptureError::Closed { backend: "loopback" });
            }
            state = match deadline {
                None => self.inner.ready.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(0);
                    }
                    self.inner.ready.wait_timeout(state, left).unwrap_or_else(|e| e.into_inner()).0
                }
            };
        }
        while !batch.is_full() {
            let Some(p) = state.rx.pop_front() else { break };
            batch.push(&p.data, p.l3_offset, p.timestamp_us);
        }
        Ok(batch.len())
    }

    fn send_batch(&mut self, batch: &mut Batch) -> Result<(), CaptureError> {
        let mut state = self.inner.lock();
        for p in batch.iter() {
            let out = LoopbackPacket {
                data: p.data().to_vec(),
                l3_offset: p.l3_offset(),
                timestamp_us: p.timestamp_us(),
                meta: p.meta,
            };
            match p.action() {
                Action::Accept => state.sent.push(out),
                Action::Drop => state.dropped.push(out),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_rewritten_packets_come_out_and_dropped_ones_do_not() {
        let (mut cap, h) = Loopback::new();
        h.inject_at(&[1, 2, 3, 4], 0, 10);
        h.inject_at(&[5, 6, 7, 8], 0, 11);
        let mut b = Batch::new(8, 100);
        assert_eq!(cap.recv_batch(&mut b, Some(Duration::ZERO)).unwrap(), 2);
        b.packets_mut()[0].data_mut()[0] = 9;
        b.packets_mut()[0].set_len(2);
        b.packets_mut()[1].set_action(Action::Drop);
        cap.send_batch(&mut b).unwrap();
        let sent = h.take_sent();
        assert_eq!(sent.len(), 1);
        assert_eq!((sent[0].data.as_slice(), sent[0].timestamp_us), (&[9u8, 2][..], 10));
        assert_eq!(h.take_dropped()[0].data, vec![5, 6, 7, 8]);
    }

    #[test]
    fn recv_respects_batch_capacity_and_keeps_the_rest() {
        let (mut cap, h) = Loopback::new();
        for i in 0..5u8 {
            h.inject(&[i], 0);
        }
        let mut b = Batch::new(3, 16);
        assert_eq!(cap.recv_batch(&mut b, None).unwrap(), 3);
        assert_eq!(h.pending(), 2);
        assert_eq!(cap.recv_batch(&mut b, None).unwrap(), 2);
        assert_eq!(b.packets()[0].data(), &[3]);
    }

    #[test]
    fn timeout_returns_zero_and_close_ends_the_input() {
        let (mut cap, h) = Loopback::new();
        let mut b = Batch::new(1, 16);
        assert_eq!(cap.recv_batch(&mut b, Some(Duration::from_millis(5))).unwrap(), 0);
        h.close();
        assert!(matches!(cap.recv_batch(&mut b, None), Err(CaptureError::Closed { .. })));
    }

    #[test]
    fn a_blocked_receiver_wakes_when_a_packet_is_injected() {
        let (mut cap, h) = Loopback::new();
        let t = std::thread::spawn(move || {
            let mut b = Batch::new(1, 16);
            cap.recv_batch(&mut b, Some(Duration::from_secs(10))).map(|n| (n, b.packets()[0].data().to_vec()))
        });
        h.inject(&[42], 0);
        assert_eq!(t.join().unwrap().unwrap(), (1, vec![42]));
    }
}
