//! A tiny, fast, seedable PRNG (wyrand) for LBA choice and read/write mixing. One instance per
//! qpair, owned by its worker thread; never shared.

/// wyrand: one multiply per output, passes BigCrush, 2^64 period. Good enough for picking LBAs.
#[derive(Debug, Clone)]
pub struct WyRand {
    state: u64,
}

impl WyRand {
    pub fn new(seed: u64) -> Self {
        WyRand { state: seed }
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.state) * u128::from(self.state ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) ^ t) as u64
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is < n/2^64, irrelevant here).
    /// `n == 0` yields 0.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// splitmix64 finaliser: a bijective mix used to derive independent seeds and pattern words.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_different_seed_different_stream() {
        let a: Vec<u64> = {
            let mut r = WyRand::new(7);
            (0..8).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = WyRand::new(7);
            (0..8).map(|_| r.next_u64()).collect()
        };
        let c: Vec<u64> = {
            let mut r = WyRand::new(8);
            (0..8).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b, "deterministic");
        assert_ne!(a, c, "seed matters");
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut r = WyRand::new(1);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            let v = r.below(10);
            assert!(v < 10, "out of range: {v}");
            seen[v as usize] += 1;
        }
        assert!(
            seen.iter().all(|&n| n > 800),
            "roughly uniform over 0..10: {seen:?}"
        );
        assert_eq!(r.below(0), 0);
    }
}
