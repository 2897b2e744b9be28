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

#[cfg(windows)]
mod imp {
    use std::net::Ipv4Addr;

    use windows::Win32::Foundation::{ERROR_INSUFFICIENT_BUFFER, NO_ERROR};
    use windows::Win32::NetworkManagement::IpHelper::{GetIpAddrTable, MIB_IPADDRROW_XP, MIB_IPADDRTABLE};

    /// `wType` flags of rows to skip: MIB_IPADDR_DISCONNECTED, MIB_IPADDR_DELETED.
    const SKIP: u16 = 0x0008 | 0x0040;

    /// The IPv4 address table (what `Get-NetIPAddress -AddressFamily IPv4` lists), in
    /// interface order.
    pub fn list() -> std::io::Result<Vec<Ipv4Addr>> {
        let row = std::mem::size_of::<MIB_IPADDRROW_XP>();
        let mut size = 0u32;
        // A few tries: the table may grow between the size query and the read.
        for _ in 0..4 {
            // u32 elements give the table its alignment; `size` is in bytes.
            let mut buf = vec![0u32; (size as usize).div_ceil(4).max(1)];
            let table = buf.as_mut_ptr().cast::<MIB_IPADDRTABLE>();
            // SAFETY: `buf` is writable for `size` bytes (rounded up); on
            // ERROR_INSUFFICIENT_BUFFER the call only writes the size it needs.
            let rc = unsafe { GetIpAddrTable(Some(table), &mut size, true) };
            if rc == ERROR_INSUFFICIENT_BUFFER.0 {
                continue;
            }
            if rc != NO_ERROR.0 {
                return Err(std::io::Error::from_raw_os_error(rc as i32));
            }
            // SAFETY: on success the buffer holds a MIB_IPADDRTABLE: a u32 count followed by
            // that many rows, all inside the `size` bytes written.
            let count = unsafe { (*table).dwNumEntries } as usize;
            let rows_at = std::mem::offset_of!(MIB_IPADDRTABLE, table);
            if rows_at + count * row > size as usize {
                return Err(std::io::Error::other("GetIpAddrTable returned a table longer than its buffer"));
            }
            // SAFETY: checked just above that `count` rows lie within the written buffer.
            let rows = unsafe { std::slice::from_raw_parts((*table).table.as_ptr(), count) };
            return Ok(rows
                .iter()
                .filter(|r| r.wType & SKIP == 0)
                .map(|r| Ipv4Addr::from(u32::from_be(r.dwAddr)))
                .collect());
        }
        Err(std::io::Error::other("the IPv4 address table kept changing while it was read"))
    }
}

#[cfg(not(any(unix, windows)))]
mod imp {
    use std::net::Ipv4Addr;

    pub fn list() -> std::io::Result<Vec<Ipv4Addr>> {
        Ok(Vec::new())
    }
}
