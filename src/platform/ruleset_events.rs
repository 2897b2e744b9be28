//! Tells when the kernel's firewall ruleset changes (Linux): a netlink socket subscribed to
//! nftables' change notifications (`NFNLGRP_NFTABLES`, the events `nft monitor` prints).
//! iptables-nft, `nft -f`, `nft flush ruleset` and firewall reloads all send them, so the
//! daemon learns within milliseconds that someone touched its rules, instead of at the next
//! poll.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// `NFNLGRP_NFTABLES` from `linux/netfilter/nfnetlink.h` (not in the libc crate).
const NFNLGRP_NFTABLES: libc::c_int = 7;

/// A netlink socket of `protocol`, bound to the multicast `groups` (a bit mask; 0 for none).
/// The route watcher (`watch`) opens its socket the same way.
pub fn netlink_socket(protocol: libc::c_int, groups: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is checked and owned below.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_nl is plain data; all-zero is valid.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_groups = groups;
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
    Ok(fd)
}

/// A subscription to ruleset change events.
#[derive(Debug)]
pub struct RulesetEvents {
    fd: OwnedFd,
    buf: Vec<u8>,
}

impl RulesetEvents {
    /// Subscribes; fails where the kernel has no nftables netlink interface.
    pub fn open() -> std::io::Result<RulesetEvents> {
        let fd = netlink_socket(libc::NETLINK_NETFILTER, 0)?;
        let group = NFNLGRP_NFTABLES;
        // SAFETY: a live socket; the option value is a c_int of the size passed.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_NETLINK,
                libc::NETLINK_ADD_MEMBERSHIP,
                (&group as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(RulesetEvents { fd, buf: vec![0u8; 64 * 1024] })
    }

    /// Waits up to `timeout` for a change; returns whether one came. All pending events are
    /// consumed (one change of many rules is one wake-up). Lost events (`ENOBUFS`) count as a
    /// change.
    pub fn wait(&mut self, timeout: Duration) -> std::io::Result<bool> {
        let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            return if e.kind() == std::io::ErrorKind::Interrupted { Ok(false) } else { Err(e) };
        }
        if rc == 0 {
            return Ok(false);
        }
        loop {
            // SAFETY: `buf` is valid for writes of its length.
            let n = unsafe {
                libc::recv(self.fd.as_raw_fd(), self.buf.as_mut_ptr().cast(), self.buf.len(), libc::MSG_DONTWAIT)
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) => return Ok(true),
                    Some(libc::ENOBUFS) | Some(libc::EINTR) => continue,
                    _ => return Err(e),
                }
            }
        }
    }
}
