//! The engine's one's-complement sum (`wire::checksum::sum`, native-endian 32-bit words into
//! four 64-bit accumulators), which the NFQUEUE backend also runs over every packet the
//! kernel hands over with a partial checksum (up to 64 KiB for a GSO super-packet), against
//! the textbook 16-bit loop it replaced and a 64-bit add-with-carry loop.
//!
//! `cargo bench -p netnat-engine --bench checksum`

mod sums {
    use std::hint::black_box;

    use criterion::{Criterion, Throughput};

    fn ones_sum(data: &[u8]) -> u16 {
        netnat_engine::wire::checksum::sum(0, data) as u16
    }

    fn fold(mut acc: u64) -> u16 {
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    /// Big-endian 16-bit words into a 64-bit accumulator (the engine's sum before).
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

criterion::criterion_group!(benches, sums::bench);
criterion::criterion_main!(benches);
