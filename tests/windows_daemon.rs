//! `netnat daemon` on Windows without the WinDivert driver (Wine, or a host where
//! WinDivert64.sys is missing): it must stop at once, non-zero, saying what is missing and
//! how to fix it. `.ci/windows-wine.sh` runs it under Wine, where no kernel driver loads.
#![cfg(windows)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "common/skip.rs"]
mod skip;

#[test]
fn without_the_windivert_driver_the_daemon_says_what_is_missing_and_exits_non_zero() {
    let state = tempfile::tempdir().unwrap();
    let pipe = format!("netnat-test-daemon-{}", std::process::id());
    let mut child = Command::new(env!("CARGO_BIN_EXE_netnat"))
        .args(["daemon", "--socket", &pipe, "--state-dir"])
        .arg(state.path().join("netnat"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            // A host with the driver installed, running elevated: the daemon started.
            child.kill().unwrap();
            let _ = child.wait();
            skip::record_skip(
                "without_the_windivert_driver_the_daemon_says_what_is_missing_and_exits_non_zero",
                "the WinDivert driver is installed here, so the daemon started",
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exit status {:?}\n{stderr}", out.status);
    assert!(stderr.contains("netnat: error: opening a WinDivert"), "{stderr}");
    assert!(stderr.contains("windivert: cannot open a handle"), "{stderr}");
    assert!(stderr.contains("WinDivert64.sys") && stderr.contains("next to netnat.exe"), "{stderr}");
    assert!(stderr.contains("Administrator"), "{stderr}");
    assert!(!stderr.contains("dLL"), "acronyms keep their case: {stderr}");
}
