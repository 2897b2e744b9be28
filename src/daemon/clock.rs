//! The daemon's clock: a monotonic engine [`Instant`] (microseconds since the daemon
//! started) and the wall-clock time of each instant, for CreationTime.

use std::time::{Duration, SystemTime};

use netnat_engine::Instant;

/// Converts between the monotonic clock and engine instants.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: std::time::Instant,
    wall_start: SystemTime,
}

impl Clock {
    /// A clock whose origin is now.
    pub fn start() -> Self {
        Clock { start: std::time::Instant::now(), wall_start: SystemTime::now() }
    }

    /// Now, as an engine instant (never goes backwards).
    pub fn now(&self) -> Instant {
        let micros = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        Instant::from_micros(micros)
    }

    /// `at` as local wall-clock time, `yyyy/MM/dd HH:mm:ss` (the seed article's format).
    pub fn format_local(&self, at: Instant) -> String {
        let wall = self.wall_start + Duration::from_micros(at.as_micros());
        let local: chrono::DateTime<chrono::Local> = wall.into();
        local.format("%Y/%m/%d %H:%M:%S").to_string()
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
}
