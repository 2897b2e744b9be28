//! The one's-complement sum the NFQUEUE backend runs over every packet the kernel hands over
//! with a partial checksum (up to 64 KiB for a GSO super-packet): the chosen implementation
//! (`netnat_capture::nfqueue::csum::ones_sum`, native-endian 32-bit words into four 64-bit
//! accumulators) against the textbook 16-bit loop and a 64-bit add-with-carry loop.
//!
//! `cargo bench -p netnat-capture --bench l4_checksum`

#[cfg(target_os = "linux")]
mod linux {
    use std::hint::black_box;

    use criterion::{Criterion, Throughput};
    use netnat_capture::nfqueue::csum::ones_sum;

    fn fold(mut acc: u64) -> u16 {
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    /// Big-endian 16-bit words into a 64-bit accumulator (the engine's `wire::checksum::sum`).
    fn words16(data: &[u8]) -> u16 {
        let mut acc: u64 = 0;
        let mut chunks = data.chunks_exact(2);
        for c in &mut chunks {
            acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            acc += u64::from(u16::from_be_bytes([*last, 0]));
        }
        fold(acc)
    }

    /// Native-endian 64-bit words, carries added back (an add-with-carry chain).
    fn words64_carry(data: &[u8]) -> u16 {
        let mut acc: u64 = 0;
        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_ne_bytes(c.try_into().expect("8 bytes"));
            let (s, carry) = acc.overflowing_add(w);
            acc = s + u64::from(carry);
        }
        let mut tail = [0u8; 8];
        tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        let (s, carry) = acc.overflowing_add(u64::from_ne_bytes(tail));
        acc = s + u64::from(carry);
        let folded = fold((acc >> 32) + (acc & 0xffff_ffff));
        if cfg!(target_endian = "little") {
            folded.swap_bytes()
        } else {
            folded
        }
    }

    pub fn bench(c: &mut Criterion) {
        for len in [64usize, 1500, 65_000] {
            let data: Vec<u8> = (0..len + 1).map(|i| (i * 131 % 251) as u8).collect();
            // Odd start: packets sit at whatever offset the batch buffer gives them.
            let data = &data[1..];
            assert_eq!(ones_sum(data), words16(data));
            assert_eq!(words64_carry(data), words16(data));
            let mut g = c.benchmark_group(format!("ones_sum_{len}B"));
            g.throughput(Throughput::Bytes(len as u64));
            g.bench_function("chosen_u32x4_into_u64", |b| b.iter(|| ones_sum(black_box(data))));
            g.bench_function("u16_words", |b| b.iter(|| words16(black_box(data))));
            g.bench_function("u64_add_with_carry", |b| b.iter(|| words64_carry(black_box(data))));
            g.finish();
        }
    }
}

#[cfg(target_os = "linux")]
criterion::criterion_group!(benches, linux::bench);
#[cfg(target_os = "linux")]
criterion::criterion_main!(benches);

#[cfg(not(target_os = "linux"))]
fn main() {}
