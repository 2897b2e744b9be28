//! A seeded fault injector: wraps any [`Capture`] and, on receive, drops, duplicates,
//! reorders and truncates packets with given probabilities. The same seed and input give the
//! same faults, so a failing test reproduces.
//!
//! Meant for the loopback and pcap backends. Over a live backend (NFQUEUE, WinDivert) a
//! packet the injector drops never gets a verdict (the kernel holds it until the queue is
//! closed), and a duplicate gets a second verdict the kernel rejects; that is acceptable for
//! a test tool, not for production.

use std::time::Duration;

use crate::{Batch, Capture, CaptureError};

/// Probabilities (each in 0.0..=1.0, clamped) of each fault per received packet.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FaultConfig {
    /// PRNG seed; the same seed gives the same faults.
    pub seed: u64,
    /// A packet is removed from the batch.
    pub drop: f64,
    /// A copy of the packet is appended (when the batch has room).
    pub duplicate: f64,
    /// The packet swaps places with the next one.
    pub reorder: f64,
    /// The packet is cut to a random shorter length (keeping its link header and at least one
    /// byte after it).
    pub truncate: f64,
}

/// How many faults were injected so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Packets removed.
    pub dropped: u64,
    /// Copies appended.
    pub duplicated: u64,
    /// Adjacent swaps.
    pub reordered: u64,
    /// Packets cut short.
    pub truncated: u64,
}

/// The wrapper. Sending passes straight through.
#[derive(Debug)]
pub struct Fault<C> {
    inner: C,
    config: FaultConfig,
    rng: SplitMix64,
    stats: FaultStats,
}

impl<C: Capture> Fault<C> {
    /// Wraps `inner`.
    pub fn new(inner: C, config: FaultConfig) -> Self {
        Fault { inner, config, rng: SplitMix64(config.seed), stats: FaultStats::default() }
    }

    /// Faults injected so far.
    pub fn stats(&self) -> FaultStats {
        self.stats
    }

    /// The wrapped backend.
    pub fn inner_mut(&mut self) -> &mut C {
        &mut self.inner
    }

    /// Unwraps.
    pub fn into_inner(self) -> C {
        self.inner
    }

    fn apply(&mut self, batch: &mut Batch) {
        let c = self.config;
        let mut i = 0;
        // Only the packets that arrived are candidates; duplicates appended below are not.
        let mut originals = batch.len();
        while i < originals {
            if self.rng.chance(c.drop) {
                batch.remove(i);
                originals -= 1;
                self.stats.dropped += 1;
                continue;
            }
            if self.rng.chance(c.truncate) {
                let p = &mut batch.packets_mut()[i];
                let (lo, len) = (p.l3_offset(), p.len());
                // Keep at least one byte past the link header: a cut inside the IP header
                // is the interesting case, an empty packet is not.
                if len > lo + 1 {
                    let new_len = lo + 1 + (self.rng.next() % (len - lo - 1) as u64) as usize;
                    p.set_len(new_len);
                    self.stats.truncated += 1;
                }
            }
            if self.rng.chance(c.duplicate) && batch.push_copy(i) {
                self.stats.duplicated += 1;
            }
            i += 1;
        }
        for i in 0..batch.len().saturating_sub(1) {
            if self.rng.chance(c.reorder) {
                batch.packets_mut().swap(i, i + 1);
                self.stats.reordered += 1;
            }
        }
    }
}

impl<C: Capture> Capture for Fault<C> {
    fn recv_batch(&mut self, batch: &mut Batch, timeout: Option<Duration>) -> Result<usize, CaptureError> {
        self.inner.recv_batch(batch, timeout)?;
        self.apply(batch);
        Ok(batch.len())
    }

    fn send_batch(&mut self, batch: &mut Batch) -> Result<(), CaptureError> {
        self.inner.send_batch(batch)
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, seedable, good enough for fault dice.
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `p` (clamped to 0..=1); draws nothing when `p <= 0`, so a
    /// disabled fault does not shift the others' sequence.
    fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        // 53 random bits -> uniform in [0, 1).
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        u < p.min(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loopback::Loopback;

    /// Runs `n` numbered 20-byte packets through a fault injector; returns the first byte of
    /// each packet received, their lengths, and the stats.
    fn run(config: FaultConfig, n: u8) -> (Vec<u8>, Vec<usize>, FaultStats) {
        let (cap, h) = Loopback::new();
        for i in 0..n {
            h.inject_at(&[i; 20], 0, u64::from(i));
        }
        let mut f = Fault::new(cap, config);
        let mut b = Batch::new(usize::from(n) * 2, 64);
        f.recv_batch(&mut b, Some(Duration::ZERO)).unwrap();
        (b.iter().map(|p| p.data()[0]).collect(), b.iter().map(|p| p.len()).collect(), f.stats())
    }

    #[test]
    fn no_faults_is_the_identity() {
        let (ids, lens, stats) = run(FaultConfig { seed: 1, ..Default::default() }, 50);
        assert_eq!(ids, (0..50).collect::<Vec<_>>());
        assert!(lens.iter().all(|&l| l == 20));
        assert_eq!(stats, FaultStats::default());
    }

    #[test]
    fn same_seed_same_faults_other_seed_other_faults() {
        let cfg = FaultConfig { seed: 7, drop: 0.2, duplicate: 0.2, reorder: 0.2, truncate: 0.2 };
        let a = run(cfg, 60);
        assert_eq!(a, run(cfg, 60));
        assert_ne!(a.0, run(FaultConfig { seed: 8, ..cfg }, 60).0);
    }

    #[test]
    fn drops_remove_and_duplicates_add() {
        let (ids, _, stats) = run(FaultConfig { seed: 3, drop: 0.5, ..Default::default() }, 100);
        assert!(stats.dropped > 20 && stats.dropped < 80, "{stats:?}");
        assert_eq!(ids.len() as u64, 100 - stats.dropped);
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "drops alone keep the order");

        let (ids, _, stats) = run(FaultConfig { seed: 3, duplicate: 1.0, ..Default::default() }, 10);
        assert_eq!(stats.duplicated, 10);
        assert_eq!(ids.len(), 20);
        assert_eq!(&ids[10..], &ids[..10], "copies follow the originals");
    }

    #[test]
    fn reorder_permutes_and_truncate_shortens() {
        let (mut ids, _, stats) = run(FaultConfig { seed: 5, reorder: 0.5, ..Default::default() }, 40);
        assert!(stats.reordered > 0);
        assert_ne!(ids, (0..40).collect::<Vec<_>>());
        ids.sort_unstable();
        assert_eq!(ids, (0..40).collect::<Vec<_>>(), "reordering loses nothing");

        let (_, lens, stats) = run(FaultConfig { seed: 5, truncate: 1.0, ..Default::default() }, 30);
        assert_eq!(stats.truncated, 30);
        assert!(lens.iter().all(|&l| l < 20));
    }
}
