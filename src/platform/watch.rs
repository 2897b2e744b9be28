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
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    pub fn run(on_change: impl Fn()) -> std::io::Result<()> {
        // SAFETY: plain socket(2); the result is checked and owned below.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_nl is plain data; all-zero is valid.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = (libc::RTMGRP_IPV4_ROUTE | libc::RTMGRP_IPV4_IFADDR | libc::RTMGRP_LINK) as u32;
        // SAFETY: `addr` is a valid sockaddr_nl of the size passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
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
