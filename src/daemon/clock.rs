//! The daemon's clock: the capture backends' monotonic clock (`netnat_capture::clock`,
//! microseconds since the process first read it, the time every received packet is stamped
//! with) as engine [`Instant`]s, and the wall-clock time of each instant, for CreationTime.
//! One clock for the process: a packet's stamp and the engine's `now` are comparable.

use std::time::{Duration, SystemTime};

use netnat_capture::clock::now_us;
use netnat_engine::Instant;

/// Converts between the process's monotonic clock and engine instants / wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// The wall-clock time of the monotonic clock's origin.
    wall_origin: SystemTime,
}

impl Clock {
    /// The clock, with its wall-clock time as of now.
    pub fn start() -> Self {
        let since_origin = Duration::from_micros(now_us());
        let wall = SystemTime::now();
        Clock { wall_origin: wall.checked_sub(since_origin).unwrap_or(wall) }
    }

    /// Now, as an engine instant (never goes backwards).
    pub fn now(&self) -> Instant {
        Instant::from_micros(now_us())
    }

    /// `at` as local wall-clock time, `yyyy/MM/dd HH:mm:ss` (the seed article's format).
    pub fn format_local(&self, at: Instant) -> String {
        let wall = self.wall_origin + Duration::from_micros(at.as_micros());
        let local: chrono::DateTime<chrono::Local> = wall.into();
        local.format("%Y/%m/%d %H:%M:%S").to_string()
    }

    /// `at` as milliseconds since the Unix epoch (IPFIX times).
    pub fn epoch_millis(&self, at: Instant) -> u64 {
        let wall = self.wall_origin + Duration::from_micros(at.as_micros());
        wall.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
    }

    /// `at` as UTC wall-clock time, RFC 3339 with microseconds (event logs).
    pub fn format_rfc3339(&self, at: Instant) -> String {
        let wall = self.wall_origin + Duration::from_micros(at.as_micros());
        let utc: chrono::DateTime<chrono::Utc> = wall.into();
        utc.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_monotonic_and_formats_like_the_article() {
        let c = Clock::start();
        let a = c.now();
        let b = c.now();
        assert!(b >= a);
        let s = c.format_local(a);
        assert_eq!(s.len(), "2016/12/13 17:57:16".len(), "{s}");
        assert_eq!(&s[4..5], "/");
    }

    /// A packet a backend stamps lies between two readings of the daemon's clock, and an
    /// instant formats as the wall-clock time it was read at.
    #[test]
    fn packet_stamps_and_engine_time_are_one_clock() {
        let c = Clock::start();
        let before = c.now();
        let (mut loopback, handle) = netnat_capture::loopback::Loopback::new();
        handle.inject(&[0x45; 20], 0);
        let mut batch = netnat_capture::Batch::new(1, 64);
        netnat_capture::Capture::recv_batch(&mut loopback, &mut batch, None).unwrap();
        let after = c.now();
        let stamp = Instant::from_micros(batch.packets()[0].timestamp_us());
        assert!(before <= stamp && stamp <= after, "{before:?} <= {stamp:?} <= {after:?}");
        let wall: chrono::DateTime<chrono::Local> = SystemTime::now().into();
        let formatted = c.format_local(after);
        let expected = wall.format("%Y/%m/%d %H:%M").to_string();
        assert!(formatted.starts_with(&expected) || wall.format("%S").to_string() == "00", "{formatted} vs {expected}");
    }
}
