//! The monotonic microsecond clock live backends stamp packets with.
//!
//! All backends and threads of one process share one origin (the first call), so timestamps
//! from several NFQUEUE workers are comparable and can be passed to one engine. The daemon's
//! clock (`src/daemon/clock.rs`) is this one, so a packet's stamp and the engine's `now` are
//! the same time line.

use std::sync::OnceLock;
use std::time::Instant;

static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// Microseconds since the process's first call to this function; never goes backwards.
pub fn now_us() -> u64 {
    let origin = *ORIGIN.get_or_init(Instant::now);
    // u64 microseconds overflow after 584 000 years.
    origin.elapsed().as_micros() as u64
}

#[cfg(test)]
mod tests {
    #[test]
    fn monotonic() {
        let a = super::now_us();
        let b = super::now_us();
        assert!(b >= a);
    }
}
