//! The engine's own clock type. The engine never reads a clock: every `handle_*` call is
//! given `now`, which must never go backwards between calls.

use core::ops::{Add, Sub};
pub use core::time::Duration;

/// A point in time, in microseconds since an origin the caller chooses (pcap timestamps in
/// replay, a monotonic clock in live mode).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The origin.
    pub const ZERO: Instant = Instant(0);

    /// `micros` microseconds after the origin.
    pub const fn from_micros(micros: u64) -> Instant {
        Instant(micros)
    }

    /// `millis` milliseconds after the origin.
    pub const fn from_millis(millis: u64) -> Instant {
        Instant(millis.saturating_mul(1_000))
    }

    /// `secs` seconds after the origin.
    pub const fn from_secs(secs: u64) -> Instant {
        Instant(secs.saturating_mul(1_000_000))
    }

    /// Microseconds since the origin.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        let micros = u64::try_from(rhs.as_micros()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(micros))
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    fn sub(self, rhs: Duration) -> Instant {
        let micros = u64::try_from(rhs.as_micros()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_sub(micros))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_and_converts_units() {
        assert_eq!(Instant::from_secs(2) + Duration::from_millis(500), Instant::from_micros(2_500_000));
        assert_eq!(Instant::from_secs(1) - Duration::from_secs(5), Instant::ZERO);
        assert_eq!(Instant::from_secs(3).saturating_duration_since(Instant::from_secs(5)), Duration::ZERO);
        assert_eq!(
            Instant::from_millis(1500).saturating_duration_since(Instant::from_secs(1)),
            Duration::from_millis(500)
        );
    }
}
