//! Skipped tests are counted, not passed off as passes: a test that cannot run here (no root,
//! a missing tool) says so on stderr and appends one line to the file named by
//! `NETNAT_SKIP_LOG`, which `scripts/test.sh` (the README's test command) reads to print
//! "N passed, N failed, N skipped".

/// Records that `test` was skipped and why.
pub fn record_skip(test: &str, why: &str) {
    eprintln!("SKIPPED ({why}): {test}");
    if let Some(path) = std::env::var_os("NETNAT_SKIP_LOG") {
        use std::io::Write;
        // One short append per skip: lines from parallel tests do not interleave.
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "{test}\t{why}");
        }
    }
}
