//! Sending a ready IPv4 packet from the host (Linux): a raw socket with `IPPROTO_RAW`
//! (header included), so the kernel routes the packet as if the host had sent it.
//!
//! Used for packets the NAT cannot hand back to the queue: hairpinned packets, whose new
//! source is one of the host's own addresses (the kernel would drop them as martians on
//! the input path), and fragments the engine held and releases later.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A raw IPv4 socket for sending complete packets.
#[derive(Debug)]
pub struct RawSender {
    fd: OwnedFd,
}

impl RawSender {
    /// Opens the socket (needs CAP_NET_RAW).
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2); the result is checked and owned below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::IPPROTO_RAW) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        Ok(RawSender { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// Sends `packet` (an IPv4 packet with a correct transport checksum) to its destination.
    pub fn send(&self, packet: &[u8]) -> io::Result<()> {
        if packet.len() < 20 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "shorter than an IPv4 header"));
        }
        let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
        // SAFETY: sockaddr_in is plain data; all-zero is valid before the fields are set.
        let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from(dst).to_be();
        // SAFETY: `packet` is valid for reads of its length; `addr` is a valid sockaddr_in of
        // the size passed.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&addr as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
