//! The `--verify` data pattern: every logical block's content is a pure function of
//! (LBA, seed), and the block starts with its own LBA and the seed, so misdirected, stale or
//! torn data is detected. Pure functions; callers own the buffers (one per request slot).
//!
//! Block layout (little-endian 64-bit words): word 0 = LBA, word 1 = seed, word i >= 2 =
//! `mix64(base ^ i)` with `base = mix64(seed ^ lba * K)`. A tail shorter than 8 bytes (never
//! the case for real LBA formats) uses the low bytes of the next word.

use crate::rng::mix64;

const LBA_MUL: u64 = 0x2545_f491_4f6c_dd1d;

/// The first difference found in a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Mismatch {
    /// The LBA that was read.
    pub lba: u64,
    /// Byte offset within that block of the first differing 64-bit word.
    pub offset: usize,
    /// The expected and received words at that offset (little-endian).
    pub expected: u64,
    pub got: u64,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.offset {
            0 => " (block header: LBA, data belongs to another block)",
            8 => " (block header: seed, data from another run)",
            _ => "",
        };
        write!(
            f,
            "lba {} offset {}: expected {:#018x} got {:#018x}{what}",
            self.lba, self.offset, self.expected, self.got
        )
    }
}

/// Generator and checker for one seed and LBA size.
#[derive(Debug, Clone, Copy)]
pub struct Pattern {
    seed: u64,
    block_size: usize,
}

#[inline]
fn word(lba: u64, seed: u64, base: u64, i: usize) -> u64 {
    match i {
        0 => lba,
        1 => seed,
        _ => mix64(base ^ i as u64),
    }
}

impl Pattern {
    /// `block_size` is the namespace's LBA data size (512, 4096, ...); must be > 0.
    pub fn new(seed: u64, block_size: usize) -> Self {
        Pattern {
            seed,
            block_size: block_size.max(16),
        }
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    fn base(&self, lba: u64) -> u64 {
        mix64(self.seed ^ lba.wrapping_mul(LBA_MUL))
    }

    /// Fills `buf` (a whole number of blocks) with the pattern of `first_lba`, `first_lba + 1`...
    pub fn fill(&self, first_lba: u64, buf: &mut [u8]) {
        for (b, block) in buf.chunks_mut(self.block_size).enumerate() {
            let lba = first_lba.wrapping_add(b as u64);
            let base = self.base(lba);
            let whole = block.len() / 8;
            let mut words = block.chunks_exact_mut(8);
            for (i, w) in words.by_ref().enumerate() {
                w.copy_from_slice(&word(lba, self.seed, base, i).to_le_bytes());
            }
            let tail = words.into_remainder();
            if !tail.is_empty() {
                let i = whole as u64;
                let n = tail.len();
                tail.copy_from_slice(&mix64(base ^ i).to_le_bytes()[..n]);
            }
        }
    }

    /// Checks `buf` against the pattern starting at `first_lba`; returns the first mismatch.
    pub fn check(&self, first_lba: u64, buf: &[u8]) -> Option<Mismatch> {
        for (b, block) in buf.chunks(self.block_size).enumerate() {
            let lba = first_lba.wrapping_add(b as u64);
            let base = self.base(lba);
            let mut words = block.chunks_exact(8);
            for (i, w) in words.by_ref().enumerate() {
                let mut a = [0u8; 8];
                a.copy_from_slice(w);
                let got = u64::from_le_bytes(a);
                let expected = word(lba, self.seed, base, i);
                if got != expected {
                    return Some(Mismatch {
                        lba,
                        offset: i * 8,
                        expected,
                        got,
                    });
                }
            }
            let tail = words.remainder();
            if !tail.is_empty() {
                let i = block.len() / 8;
                let exp = mix64(base ^ i as u64).to_le_bytes();
                if tail != &exp[..tail.len()] {
                    let mut g = [0u8; 8];
                    g[..tail.len()].copy_from_slice(tail);
                    let mut e = [0u8; 8];
                    e[..tail.len()].copy_from_slice(&exp[..tail.len()]);
                    return Some(Mismatch {
                        lba,
                        offset: i * 8,
                        expected: u64::from_le_bytes(e),
                        got: u64::from_le_bytes(g),
                    });
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_then_check_is_clean() {
        let p = Pattern::new(42, 512);
        let mut buf = vec![0u8; 4096];
        p.fill(100, &mut buf);
        assert_eq!(p.check(100, &buf), None);
        assert_eq!(&buf[..8], &100u64.to_le_bytes(), "header carries the LBA");
        assert_eq!(&buf[512..520], &101u64.to_le_bytes(), "second block");
    }

    #[test]
    fn wrong_lba_is_caught_in_the_header() {
        let p = Pattern::new(42, 4096);
        let mut buf = vec![0u8; 4096];
        p.fill(7, &mut buf);
        let m = p
            .check(8, &buf)
            .expect("data of lba 7 read as lba 8 must mismatch");
        assert_eq!(
            m,
            Mismatch {
                lba: 8,
                offset: 0,
                expected: 8,
                got: 7
            }
        );
        assert!(m.to_string().contains("another block"), "{m}");
    }

    #[test]
    fn wrong_seed_and_flipped_byte_are_caught() {
        let p = Pattern::new(1, 512);
        let q = Pattern::new(2, 512);
        let mut buf = vec![0u8; 1024];
        p.fill(0, &mut buf);
        assert_eq!(q.check(0, &buf).map(|m| m.offset), Some(8));
        buf[512 + 300] ^= 1;
        let m = p.check(0, &buf).expect("flipped byte");
        assert_eq!((m.lba, m.offset), (1, 296));
        assert_ne!(m.expected, m.got);
    }

    #[test]
    fn blocks_differ_from_each_other_and_from_zero() {
        let p = Pattern::new(0, 512);
        let mut a = vec![0u8; 512];
        let mut b = vec![0u8; 512];
        p.fill(1, &mut a);
        p.fill(2, &mut b);
        assert_ne!(a[16..], b[16..], "payload depends on the LBA");
        assert!(p.check(3, &[0u8; 512]).is_some(), "zeroes never verify");
    }

    #[test]
    fn odd_tail_is_generated_and_checked() {
        let p = Pattern::new(3, 20);
        let mut buf = vec![0u8; 40];
        p.fill(5, &mut buf);
        assert_eq!(p.check(5, &buf), None);
        buf[39] ^= 0x80;
        assert_eq!(p.check(5, &buf).map(|m| (m.lba, m.offset)), Some((6, 16)));
    }
}
