//! Memory per session at 1 M sessions (design.md §6: <= 256 bytes each).
//!
//! Creates 1 M UDP sessions on one NAT and reports the heap bytes per session (a counting
//! global allocator: live bytes after minus before, allocator overhead not included) and the
//! resident-set growth per session (/proc/self/statm, allocator overhead and page rounding
//! included). Two shapes: one session per mapping (every flow its own internal endpoint, the
//! worst case), and four sessions per mapping (each internal endpoint talks to four remotes).
//!
//! Run: `cargo run --release -p netnat-bench --bin memory` (about 1 GB of RAM at peak).

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};

use netnat_bench::{config, internal_endpoint, udp, NOW, REMOTE};
use netnat_engine::{Nat, Verdict};

/// Wraps the system allocator and counts the bytes currently allocated.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract holds exactly as for `System`; the counter has no effect on memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; `ptr` came from this allocator with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `realloc`'s contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(new_size, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Resident set size in bytes (second field of /proc/self/statm, in pages).
fn rss() -> anyhow::Result<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: usize = statm.split_whitespace().nth(1).ok_or_else(|| anyhow::anyhow!("short statm"))?.parse()?;
    // Pages are 4 KiB on the machines this runs on (x86-64 Linux).
    Ok(pages * 4096)
}

/// Sessions in each measurement.
const SESSIONS: usize = 1 << 20;

fn measure(label: &str, sessions_per_mapping: usize) -> anyhow::Result<()> {
    let mappings = SESSIONS / sessions_per_mapping;
    // 32 external addresses: room for 32 x 64512 mappings, far above 1 M even with the
    // uneven spread of hosts over addresses.
    let cfg = config(32, SESSIONS);
    let (heap0, rss0) = (LIVE.load(Ordering::Relaxed), rss()?);
    let nat = Nat::new(cfg)?;
    let started = std::time::Instant::now();
    for i in 0..mappings {
        let int = internal_endpoint(i);
        for r in 0..sessions_per_mapping {
            let remote = Ipv4Addr::from(u32::from(REMOTE) + r as u32);
            let mut p = udp(int, (remote, 53));
            let v = nat.handle_packet(NOW, &mut p);
            anyhow::ensure!(matches!(v, Verdict::Forward { .. }), "flow {i}/{r} not forwarded: {v:?}");
        }
    }
    let elapsed = started.elapsed();
    let n = nat.session_count();
    anyhow::ensure!(n == SESSIONS, "expected {SESSIONS} sessions, got {n}");
    let (heap1, rss1) = (LIVE.load(Ordering::Relaxed), rss()?);
    let heap = (heap1 - heap0) as f64 / n as f64;
    let resident = rss1.saturating_sub(rss0) as f64 / n as f64;
    println!(
        "memory {label}: {n} sessions in {mappings} mappings: heap {heap:.1} B/session, RSS {resident:.1} B/session \
         (target <= 256); created in {:.2} s ({:.2} M sessions/s)",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64() / 1e6,
    );
    drop(nat);
    Ok(())
}

/// With no argument, runs each shape in a child process of its own, so freed memory of one
/// measurement cannot be reused by the next and hide its RSS growth.
fn main() -> anyhow::Result<()> {
    match std::env::args().nth(1).as_deref() {
        Some("1") => measure("1-per-mapping", 1),
        Some("4") => measure("4-per-mapping", 4),
        Some(other) => {
            anyhow::bail!("unknown shape {other:?}; give 1 or 4 (sessions per mapping), or nothing for both")
        }
        None => {
            for shape in ["1", "4"] {
                let status = std::process::Command::new(std::env::current_exe()?).arg(shape).status()?;
                anyhow::ensure!(status.success(), "shape {shape} failed: {status}");
            }
            Ok(())
        }
    }
}
