//! Log-linear latency histograms: the pure value type (merge, quantiles) and the bucket math the
//! producer uses to record into shared memory.
//!
//! Threading/ownership: `Histogram` is a plain value (no I/O, no `unsafe`, `core` only). In the
//! trace file a histogram is a block of `u64` words written by one reactor; readers copy it into a
//! `Histogram` with [`Histogram::from_block`].
//!
//! Bucketing (HdrHistogram-like, values in nanoseconds): values `0..16` each get their own bucket;
//! above that each power-of-two range `[2^e, 2^(e+1))` is split into `2^HIST_SUB_BITS = 16` equal
//! sub-buckets, so a bucket is at most 6.25 % of its lower bound wide. Values `>= 2^38` ns (~275 s)
//! are clamped into the last bucket (the exact maximum is kept separately). 560 buckets in all.
#![forbid(unsafe_code)]

use crate::layout::{HIST_BUCKETS, HIST_MAX_EXP, HIST_PREFIX_WORDS, HIST_SUB_BITS, HIST_WORDS};

const SUB: u64 = 1 << HIST_SUB_BITS;

/// Word index of `sum_ns` in a histogram block.
pub const HIST_SUM_WORD: usize = 0;
/// Word index of `max_ns` in a histogram block.
pub const HIST_MAX_WORD: usize = 1;

/// Bucket index of a value (ns).
#[inline(always)]
pub const fn bucket_index(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // >= HIST_SUB_BITS
    if e >= HIST_MAX_EXP {
        return HIST_BUCKETS - 1;
    }
    let sub = (v >> (e - HIST_SUB_BITS)) & (SUB - 1);
    (((e - HIST_SUB_BITS + 1) as u64 * SUB) + sub) as usize
}

/// Inclusive value range `(low, high)` of a bucket. The last bucket's nominal range is reported
/// (clamped values above it also land there).
pub const fn bucket_bounds(index: usize) -> (u64, u64) {
    let group = index as u64 / SUB;
    let sub = index as u64 % SUB;
    if group == 0 {
        return (sub, sub);
    }
    let e = group as u32 + HIST_SUB_BITS - 1;
    let width = 1u64 << (e - HIST_SUB_BITS);
    let low = (SUB + sub) << (e - HIST_SUB_BITS);
    (low, low + width - 1)
}

/// A latency histogram in nanoseconds with a fixed bucket layout; mergeable.
#[derive(Clone, PartialEq, Eq)]
pub struct Histogram {
    buckets: [u64; HIST_BUCKETS],
    sum: u64,
    max: u64,
}

impl core::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count())
            .field("sum", &self.sum)
            .field("max", &self.max)
            .finish()
    }
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub const fn new() -> Histogram {
        Histogram {
            buckets: [0; HIST_BUCKETS],
            sum: 0,
            max: 0,
        }
    }

    /// Records one value.
    pub fn record(&mut self, ns: u64) {
        self.record_n(ns, 1);
    }

    /// Records a value `n` times.
    pub fn record_n(&mut self, ns: u64, n: u64) {
        if n == 0 {
            return;
        }
        let b = &mut self.buckets[bucket_index(ns)];
        *b = b.saturating_add(n);
        self.sum = self.sum.saturating_add(ns.saturating_mul(n));
        self.max = self.max.max(ns);
    }

    /// Builds a histogram from a block of words as laid out in the trace file
    /// (`[sum_ns, max_ns, reserved x6, buckets...]`). Missing words read as zero.
    pub fn from_block(words: &[u64]) -> Histogram {
        let mut h = Histogram::new();
        h.sum = words.get(HIST_SUM_WORD).copied().unwrap_or(0);
        h.max = words.get(HIST_MAX_WORD).copied().unwrap_or(0);
        if let Some(buckets) = words.get(HIST_PREFIX_WORDS..HIST_WORDS.min(words.len())) {
            h.buckets[..buckets.len()].copy_from_slice(buckets);
        }
        h
    }

    /// Builds a histogram from bucket counts (e.g. counters kept elsewhere). `sum` and `max` are
    /// estimated from bucket midpoints / the highest non-empty bucket.
    pub fn from_counts(counts: &[u64]) -> Histogram {
        let mut h = Histogram::new();
        for (i, &c) in counts.iter().enumerate().take(HIST_BUCKETS) {
            if c == 0 {
                continue;
            }
            h.buckets[i] = c;
            let mid = bucket_midpoint(i);
            h.sum = h.sum.saturating_add(mid.saturating_mul(c));
            h.max = h.max.max(bucket_bounds(i).1);
        }
        h
    }

    /// Adds another histogram into this one (the result equals the histogram of the union).
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a = a.saturating_add(*b);
        }
        self.sum = self.sum.saturating_add(other.sum);
        self.max = self.max.max(other.max);
    }

    /// Bucket-wise difference `self - earlier` (for rates over a window between two snapshots of
    /// the same monotonic histogram). `max` is this snapshot's (the window max is not recoverable).
    pub fn delta_since(&self, earlier: &Histogram) -> Histogram {
        let mut h = Histogram::new();
        for (i, (a, b)) in self.buckets.iter().zip(earlier.buckets.iter()).enumerate() {
            h.buckets[i] = a.saturating_sub(*b);
        }
        h.sum = self.sum.saturating_sub(earlier.sum);
        h.max = if h.count() == 0 { 0 } else { self.max };
        h
    }

    /// Number of recorded values (sum of the buckets, so it is consistent with the buckets even
    /// when copied while the writer was recording).
    pub fn count(&self) -> u64 {
        self.buckets.iter().fold(0u64, |a, &b| a.saturating_add(b))
    }

    /// Sum of recorded values in ns (saturating).
    pub fn sum(&self) -> u64 {
        self.sum
    }

    /// Largest recorded value in ns (exact, not bucketed).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Mean in ns, `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        let n = self.count();
        (n > 0).then(|| self.sum as f64 / n as f64)
    }

    /// Bucket counts.
    pub fn buckets(&self) -> &[u64; HIST_BUCKETS] {
        &self.buckets
    }

    /// The value at quantile `q` (0.0 ..= 1.0), `None` when empty. The result lies in the same
    /// bucket as the exact order statistic of rank `ceil(q * count)` (at least 1): it is that
    /// bucket's midpoint, capped at the recorded maximum.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 1.0) };
        // ceil without std: f64 -> u64 truncates, add one when there was a fraction.
        let exact = q * n as f64;
        let mut rank = exact as u64;
        if (rank as f64) < exact {
            rank += 1;
        }
        let rank = rank.clamp(1, n);
        let mut seen = 0u64;
        for (i, &c) in self.buckets.iter().enumerate() {
            seen = seen.saturating_add(c);
            if seen >= rank {
                let (low, _) = bucket_bounds(i);
                return Some(bucket_midpoint(i).min(self.max.max(low)));
            }
        }
        Some(self.max)
    }
}

/// Midpoint of a bucket's nominal range.
pub const fn bucket_midpoint(index: usize) -> u64 {
    let (low, high) = bucket_bounds(index);
    low + (high - low) / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_cover_the_range() {
        let mut expected_low = 0u64;
        for i in 0..HIST_BUCKETS {
            let (low, high) = bucket_bounds(i);
            assert_eq!(
                low,
                expected_low,
                "bucket {i} starts where {} ended",
                i as i64 - 1
            );
            assert!(high >= low);
            assert_eq!(bucket_index(low), i, "low bound of {i}");
            assert_eq!(bucket_index(high), i, "high bound of {i}");
            // Relative width never exceeds 1/16 once past the exact range.
            if low >= SUB {
                assert!((high - low + 1) * 16 <= low, "bucket {i} too wide");
            }
            expected_low = high + 1;
        }
        assert_eq!(expected_low, 1 << HIST_MAX_EXP);
        assert_eq!(bucket_index(u64::MAX), HIST_BUCKETS - 1);
        assert_eq!(bucket_index(1 << HIST_MAX_EXP), HIST_BUCKETS - 1);
    }

    #[test]
    fn quantiles_of_known_data() {
        let mut h = Histogram::new();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        assert_eq!(h.count(), 1000);
        assert_eq!(h.max(), 1_000_000);
        let p50 = h.quantile(0.5).expect("non-empty");
        assert_eq!(bucket_index(p50), bucket_index(500_000));
        let p100 = h.quantile(1.0).expect("non-empty");
        assert!(p100 <= 1_000_000 && bucket_index(p100) == bucket_index(1_000_000));
        assert_eq!(h.quantile(0.0), h.quantile(0.0001));
        assert_eq!(Histogram::new().quantile(0.5), None);
    }

    #[test]
    fn block_round_trip_and_delta() {
        let mut words = [0u64; HIST_WORDS];
        words[HIST_SUM_WORD] = 30;
        words[HIST_MAX_WORD] = 20;
        words[HIST_PREFIX_WORDS + bucket_index(10)] = 1;
        words[HIST_PREFIX_WORDS + bucket_index(20)] = 1;
        let h = Histogram::from_block(&words);
        assert_eq!(h.count(), 2);
        assert_eq!(h.sum(), 30);
        assert_eq!(h.max(), 20);
        let mut later = h.clone();
        later.record(20);
        let d = later.delta_since(&h);
        assert_eq!(d.count(), 1);
        assert_eq!(d.sum(), 20);
        assert_eq!(Histogram::from_block(&[]).count(), 0);
    }

    #[test]
    fn from_counts_estimates_sum() {
        let mut counts = [0u64; HIST_BUCKETS];
        counts[5] = 2;
        let h = Histogram::from_counts(&counts);
        assert_eq!(h.count(), 2);
        assert_eq!(h.sum(), 10);
        assert_eq!(h.max(), 5);
    }
}
