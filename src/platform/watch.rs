//! Tells when the host's routes or addresses change, so cached route lookups and the
//! implicit external addresses are refreshed.
//!
//! Linux: a netlink socket subscribed to IPv4 route and address events. Elsewhere: a timer
//! (every few seconds) stands in for the events.

/// Runs `on_change` after every route or address change, forever (call it on its own thread).
pub fn run(on_change: impl Fn()) -> std::io::Result<()> {
    imp::run(on_change)
}

#[cfg(target_os = "linux")]
mod imp {
    use std::os::fd::AsRawFd;

    pub fn run(on_change: impl Fn()) -> std::io::Result<()> {
        let groups = (libc::RTMGRP_IPV4_ROUTE | libc::RTMGRP_IPV4_IFADDR | libc::RTMGRP_LINK) as u32;
        let fd = crate::platform::ruleset_events::netlink_socket(libc::NETLINK_ROUTE, groups)?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: `buf` is valid for writes of its length.
            let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                // ENOBUFS: events were lost; refresh anyway.
                if e.raw_os_error() != Some(libc::ENOBUFS) && e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            on_change();
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    /// How often to refresh where no change events exist.
    const POLL_FALLBACK: std::time::Duration = std::time::Duration::from_secs(5);

    pub fn run(on_change: impl Fn()) -> std::io::Result<()> {
        loop {
            std::thread::sleep(POLL_FALLBACK);
            on_change();
        }
    }
}
