//! Keeping the NAT's ports and the host's own ports apart.
//!
//! The daemon translates to the host's own addresses (as WinNAT does), so a NAT mapping and
//! a host socket on the same (address, port, protocol) would be indistinguishable: replies to
//! the host would go to a VM. Two defences:
//! - the dynamic range of NATs on the host's addresses defaults to the largest part of
//!   1024-65535 outside the host's ephemeral range (`ip_local_port_range`, 32768-60999 by
//!   default on Linux, so 1024-32767; Windows' dynamic range 49152-65535 gives 1024-49151);
//! - every NAT range on a host address is added to `ip_local_reserved_ports` (Linux), so the
//!   host never picks one of them for its own connections even when a range was given
//!   explicitly or the ephemeral range is changed later. This is what WinNAT does with its
//!   "excluded port ranges" (`netsh int ipv4 show excludedportrange`).
//!
//! A host service listening on a port inside the NAT's range can still be shadowed for a
//! remote the NAT has a mapping toward on that port; keep listeners outside the range.

/// The lowest port a dynamic mapping may use (RFC 6056: well-known ports are left alone).
pub const FIRST: u16 = 1024;
/// The highest port.
pub const LAST: u16 = 65535;

/// The host's ephemeral port range, as the kernel would use it now.
pub fn host_ephemeral_range() -> Option<(u16, u16)> {
    imp::host_ephemeral_range()
}

/// The largest run of FIRST..=LAST outside `ephemeral` (all of it when there is none or it
/// lies outside).
pub fn nat_range(ephemeral: Option<(u16, u16)>) -> (u16, u16) {
    let Some((lo, hi)) = ephemeral else { return (FIRST, LAST) };
    let below = (lo > FIRST).then(|| (FIRST, lo - 1));
    let above = (hi < LAST).then(|| (hi.max(FIRST - 1) + 1, LAST));
    let size = |r: Option<(u16, u16)>| r.map_or(0, |(a, b)| u32::from(b) - u32::from(a) + 1);
    match (below, above) {
        (None, None) => (FIRST, LAST),
        _ if size(below) >= size(above) => below.unwrap_or((FIRST, LAST)),
        _ => above.unwrap_or((FIRST, LAST)),
    }
}

#[cfg(any(target_os = "linux", test))]
/// Parses `ip_local_reserved_ports` ("1024-2047,8080" or empty).
pub fn parse_ranges(text: &str) -> Vec<(u16, u16)> {
    text.trim()
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .filter_map(|p| {
            let p = p.trim();
            let (a, b) = p.split_once('-').unwrap_or((p, p));
            Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(any(target_os = "linux", test))]
/// The union of `ranges`, sorted, adjacent runs merged.
pub fn merge(mut ranges: Vec<(u16, u16)>) -> Vec<(u16, u16)> {
    ranges.retain(|(a, b)| a <= b);
    ranges.sort_unstable();
    let mut out: Vec<(u16, u16)> = Vec::new();
    for (a, b) in ranges {
        match out.last_mut() {
            Some(last) if u32::from(a) <= u32::from(last.1) + 1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

#[cfg(any(target_os = "linux", test))]
/// `ip_local_reserved_ports` syntax.
pub fn format_ranges(ranges: &[(u16, u16)]) -> String {
    let parts: Vec<String> =
        ranges.iter().map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect();
    parts.join(",")
}

/// Adds `ranges` to the host's reserved ports (Linux). Returns whether anything changed.
/// Ranges netnat reserved before stay reserved.
#[cfg(target_os = "linux")]
pub fn reserve(ranges: &[(u16, u16)]) -> std::io::Result<bool> {
    imp::reserve(ranges)
}

#[cfg(any(target_os = "linux", test))]
/// Whether `reserved` leaves no port of `ephemeral` for the host's own connections.
pub fn starves_host(reserved: &[(u16, u16)], ephemeral: (u16, u16)) -> bool {
    let merged = merge(reserved.to_vec());
    merged.iter().any(|(a, b)| *a <= ephemeral.0 && *b >= ephemeral.1)
}

#[cfg(target_os = "linux")]
mod imp {
    const RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";
    const RESERVED: &str = "/proc/sys/net/ipv4/ip_local_reserved_ports";

    pub fn host_ephemeral_range() -> Option<(u16, u16)> {
        let text = std::fs::read_to_string(RANGE).ok()?;
        let mut it = text.split_whitespace().map(|w| w.parse::<u16>());
        match (it.next(), it.next()) {
            (Some(Ok(a)), Some(Ok(b))) if a <= b => Some((a, b)),
            _ => None,
        }
    }

    pub fn reserve(ranges: &[(u16, u16)]) -> std::io::Result<bool> {
        let current = super::merge(super::parse_ranges(&std::fs::read_to_string(RESERVED)?));
        let mut all = current.clone();
        all.extend_from_slice(ranges);
        let next = super::merge(all);
        if next == current {
            return Ok(false);
        }
        std::fs::write(RESERVED, super::format_ranges(&next))?;
        Ok(true)
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    /// Windows' default dynamic port range (`netsh int ipv4 show dynamicport tcp`).
    pub fn host_ephemeral_range() -> Option<(u16, u16)> {
        Some((49152, 65535))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nat_range_avoids_the_hosts_ephemeral_ports() {
        assert_eq!(nat_range(Some((32768, 60999))), (1024, 32767));
        assert_eq!(nat_range(Some((49152, 65535))), (1024, 49151));
        assert_eq!(nat_range(Some((1024, 20000))), (20001, 65535));
        assert_eq!(nat_range(Some((10, 1023))), (1024, 65535));
        assert_eq!(nat_range(None), (1024, 65535));
        // No room at all: nothing better than the whole range (reservation then decides).
        assert_eq!(nat_range(Some((1024, 65535))), (1024, 65535));
        for eph in [(32768, 60999), (49152, 65535), (1024, 20000), (40000, 50000)] {
            let (a, b) = nat_range(Some(eph));
            assert!(b < eph.0 || a > eph.1, "{eph:?} -> {a}-{b}");
        }
    }

    #[test]
    fn reserved_port_lists_parse_merge_and_format_like_the_kernel() {
        assert_eq!(parse_ranges(""), vec![]);
        assert_eq!(parse_ranges("\n"), vec![]);
        assert_eq!(parse_ranges("8080,1024-2047\n"), vec![(8080, 8080), (1024, 2047)]);
        let merged = merge(vec![(8080, 8080), (1024, 2047), (2048, 3000), (2500, 2600), (9, 9)]);
        assert_eq!(merged, vec![(9, 9), (1024, 3000), (8080, 8080)]);
        assert_eq!(format_ranges(&merged), "9,1024-3000,8080");
        assert!(starves_host(&[(1024, 65535)], (32768, 60999)));
        assert!(!starves_host(&[(1024, 32767)], (32768, 60999)));
    }
}
