//! The allow-list with a rate limit of examples/policy-modules/allowlist-rate.wat, in Rust:
//! unsolicited inbound sessions only from 203.0.113.0/24 and 198.51.100.0/25, at most 5 new
//! ones per second of packet time (over all hosts); the rest of those in that second are
//! rate-limited, every other remote denied.
#![no_std]

use core::sync::atomic::{AtomicI64, AtomicU32, Ordering};

use netnat_policy::{netnat_policy, Decision, Inbound, Prefix};

const ALLOWED: [Prefix; 2] = [Prefix::new([203, 0, 113, 0], 24), Prefix::new([198, 51, 100, 0], 25)];
const PER_SECOND: u32 = 5;

static WINDOW_START: AtomicI64 = AtomicI64::new(-1000);
static ADMITTED: AtomicU32 = AtomicU32::new(0);

fn decide(p: &Inbound) -> Decision {
    if !ALLOWED.iter().any(|&prefix| p.remote.is_in(prefix)) {
        return Decision::Deny;
    }
    // A new one-second window opens with the first packet after the last one closed.
    if p.now_ms - WINDOW_START.load(Ordering::Relaxed) >= 1000 {
        WINDOW_START.store(p.now_ms, Ordering::Relaxed);
        ADMITTED.store(0, Ordering::Relaxed);
    }
    if ADMITTED.load(Ordering::Relaxed) >= PER_SECOND {
        return Decision::RateLimited;
    }
    ADMITTED.fetch_add(1, Ordering::Relaxed);
    Decision::Allow
}

netnat_policy!(decide);
