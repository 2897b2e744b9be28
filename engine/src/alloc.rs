//! External port choice (RFC 6056): a seeded pseudo-random sequence, or the internal port
//! first when the policy is `preserve` (the Linux kernel's behaviour).

/// SplitMix64's finaliser: a fast, well-mixed 64-bit permutation.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Random probes before falling back to a scan of the whole range.
pub(crate) const RANDOM_PROBES: usize = 32;

/// The candidate ports for a new mapping, in the order to try them: the preserved port (if
/// asked and in range), `RANDOM_PROBES` pseudo-random ports, then every port of the range
/// from a random start, so a free port is always found when one exists.
pub(crate) fn candidates(start: u16, end: u16, preserve: Option<u16>, draw: u64) -> impl Iterator<Item = u16> {
    let len = u32::from(end) - u32::from(start) + 1;
    let at = move |x: u64| (u32::from(start) + (x % u64::from(len)) as u32) as u16;
    let preserved = preserve.filter(|p| (start..=end).contains(p));
    let random = (0..RANDOM_PROBES as u64).map(move |i| at(mix(draw ^ i.wrapping_mul(0xa076_1d64_78bd_642f))));
    let scan_from = mix(!draw);
    let scan = (0..u64::from(len)).map(move |i| at(scan_from.wrapping_add(i)));
    preserved.into_iter().chain(random).chain(scan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn candidates_stay_in_range_and_cover_it(start in 0u16..2000, len in 1u16..300, draw: u64, preserve: Option<u16>) {
            let end = start + len - 1;
            let c: Vec<u16> = candidates(start, end, preserve, draw).collect();
            prop_assert!(c.iter().all(|p| (start..=end).contains(p)));
            let mut all = c.clone();
            all.sort_unstable();
            all.dedup();
            prop_assert_eq!(all.len(), usize::from(len));
            if let Some(p) = preserve.filter(|p| (start..=end).contains(p)) {
                prop_assert_eq!(c[0], p);
            }
        }
    }

    #[test]
    fn different_draws_give_different_sequences() {
        let a: Vec<u16> = candidates(1024, 65535, None, 1).take(8).collect();
        let b: Vec<u16> = candidates(1024, 65535, None, 2).take(8).collect();
        assert_ne!(a, b);
    }
}
