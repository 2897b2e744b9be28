//! The host's own IPv4 addresses (what `ip -4 addr` lists), for NATs that have no
//! NetNatExternalAddress: such a NAT translates to the host's addresses, like WinNAT.

use std::net::Ipv4Addr;

/// The host's IPv4 addresses, loopback excluded, in interface order, without duplicates.
pub fn local_ipv4() -> std::io::Result<Vec<Ipv4Addr>> {
    let mut out = imp::list()?;
    out.retain(|a| !a.is_loopback() && !a.is_unspecified());
    let mut seen = std::collections::HashSet::new();
    out.retain(|a| seen.insert(*a));
    Ok(out)
}

/// Whether `addr` is one of the host's addresses (something can bind to it).
pub fn is_local(addr: Ipv4Addr) -> bool {
    std::net::UdpSocket::bind((addr, 0)).is_ok()
}

#[cfg(unix)]
mod imp {
    use std::net::Ipv4Addr;

    pub fn list() -> std::io::Result<Vec<Ipv4Addr>> {
        let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
        // SAFETY: getifaddrs writes a list head to `head` that we free below.
        if unsafe { libc::getifaddrs(&mut head) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut out = Vec::new();
        let mut cur = head;
        while !cur.is_null() {
            // SAFETY: `cur` is a node of the list getifaddrs returned, alive until freeifaddrs.
            let ifa = unsafe { &*cur };
            if !ifa.ifa_addr.is_null() {
                // SAFETY: ifa_addr points at a sockaddr of at least sa_family's size.
                let family = unsafe { (*ifa.ifa_addr).sa_family };
                if i32::from(family) == libc::AF_INET {
                    // SAFETY: for AF_INET the sockaddr is a sockaddr_in.
                    let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                    out.push(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
                }
            }
            cur = ifa.ifa_next;
        }
        // SAFETY: `head` came from getifaddrs and is freed once.
        unsafe { libc::freeifaddrs(head) };
        Ok(out)
    }
}

#[cfg(not(unix))]
mod imp {
    use std::net::Ipv4Addr;

    pub fn list() -> std::io::Result<Vec<Ipv4Addr>> {
        // The Windows port fills this from GetAdaptersAddresses.
        Ok(Vec::new())
    }
}
