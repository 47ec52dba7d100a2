//! Per-worker I/O statistics: counters, per-status error counts and an HDR latency histogram
//! (nanoseconds). Each worker thread owns one `IoStats` and never shares it while running;
//! the coordinator merges them after the workers have been joined.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

/// Highest latency the histogram tracks exactly (60 s); larger values saturate.
const MAX_TRACKABLE_NS: u64 = 60_000_000_000;

/// The I/O counters and latency histogram of one worker (or of a merged total).
#[derive(Debug, Clone)]
pub struct IoStats {
    pub reads: u64,
    pub writes: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    /// Commands that completed with an NVMe error status, by status name.
    pub errors: BTreeMap<String, u64>,
    /// Blocks whose content was checked (`--verify`).
    pub verified_blocks: u64,
    /// Reads whose data did not match the pattern.
    pub mismatches: u64,
    pub latency: Histogram<u64>,
}

impl Default for IoStats {
    fn default() -> Self {
        Self::new()
    }
}

impl IoStats {
    pub fn new() -> Self {
        IoStats {
            reads: 0,
            writes: 0,
            read_bytes: 0,
            write_bytes: 0,
            errors: BTreeMap::new(),
            verified_blocks: 0,
            mismatches: 0,
            // 3 significant digits: 0.1% resolution, ~200 KiB per histogram.
            latency: Histogram::new_with_bounds(1, MAX_TRACKABLE_NS, 3)
                .expect("constant histogram bounds are valid"),
        }
    }

    /// Completed I/Os (successful or not).
    pub fn ios(&self) -> u64 {
        self.reads + self.writes + self.error_count()
    }

    pub fn bytes(&self) -> u64 {
        self.read_bytes + self.write_bytes
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    #[inline]
    pub fn record_read(&mut self, bytes: u64, latency_ns: u64) {
        self.reads += 1;
        self.read_bytes += bytes;
        self.latency.saturating_record(latency_ns.max(1));
    }

    #[inline]
    pub fn record_write(&mut self, bytes: u64, latency_ns: u64) {
        self.writes += 1;
        self.write_bytes += bytes;
        self.latency.saturating_record(latency_ns.max(1));
    }

    /// An NVMe error completion. Errors are rare, so the name is allocated only here.
    pub fn record_error(&mut self, status_name: &str) {
        *self.errors.entry(status_name.to_string()).or_insert(0) += 1;
    }

    /// Resets everything (used at the end of the warm-up).
    pub fn reset(&mut self) {
        self.reads = 0;
        self.writes = 0;
        self.read_bytes = 0;
        self.write_bytes = 0;
        self.errors.clear();
        self.verified_blocks = 0;
        self.mismatches = 0;
        self.latency.reset();
    }

    /// Adds `other` into `self` (histograms merge exactly: same bounds and precision).
    pub fn merge(&mut self, other: &IoStats) {
        self.reads += other.reads;
        self.writes += other.writes;
        self.read_bytes += other.read_bytes;
        self.write_bytes += other.write_bytes;
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_insert(0) += v;
        }
        self.verified_blocks += other.verified_blocks;
        self.mismatches += other.mismatches;
        // Both histograms come from `IoStats::new`, so bounds match and `add` cannot fail;
        // saturate defensively anyway rather than lose the whole merge.
        if self.latency.add(&other.latency).is_err() {
            for v in other.latency.iter_recorded() {
                self.latency
                    .saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
    }

    /// Latency summary in microseconds.
    pub fn latency_summary(&self) -> LatencySummary {
        let h = &self.latency;
        let us = |ns: u64| ns as f64 / 1000.0;
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            avg_us: h.mean() / 1000.0,
            min_us: us(h.min()),
            p50_us: us(h.value_at_quantile(0.50)),
            p90_us: us(h.value_at_quantile(0.90)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        }
    }
}

/// Latency figures in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct LatencySummary {
    pub avg_us: f64,
    pub min_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_counts_errors_and_latencies() {
        let mut a = IoStats::new();
        let mut b = IoStats::new();
        for _ in 0..99 {
            a.record_read(4096, 10_000);
        }
        b.record_write(8192, 1_000_000);
        b.record_error("LBA Out of Range");
        b.record_error("LBA Out of Range");
        a.record_error("Invalid Field");
        a.merge(&b);
        assert_eq!(a.reads, 99);
        assert_eq!(a.writes, 1);
        assert_eq!(a.ios(), 103);
        assert_eq!(a.bytes(), 99 * 4096 + 8192);
        assert_eq!(a.errors.get("LBA Out of Range"), Some(&2));
        assert_eq!(a.errors.get("Invalid Field"), Some(&1));
        assert_eq!(a.latency.len(), 100);
        let s = a.latency_summary();
        assert!((s.p50_us - 10.0).abs() < 0.05, "p50 {s:?}");
        assert!((s.max_us - 1000.0).abs() < 1.0, "max {s:?}");
        assert!(
            (s.p999_us - 1000.0).abs() < 1.0,
            "p99.9 is the slow one {s:?}"
        );
        let expected_avg = (99.0 * 10.0 + 1000.0) / 100.0;
        assert!((s.avg_us - expected_avg).abs() < 0.1, "avg {s:?}");
    }

    #[test]
    fn reset_clears_everything_and_empty_summary_is_zero() {
        let mut a = IoStats::new();
        a.record_read(512, 5);
        a.record_error("x");
        a.reset();
        assert_eq!(a.ios(), 0);
        assert!(a.latency.is_empty());
        assert_eq!(a.latency_summary(), LatencySummary::default());
    }

    #[test]
    fn huge_latency_saturates_instead_of_failing() {
        let mut a = IoStats::new();
        a.record_read(1, u64::MAX);
        assert_eq!(a.latency.len(), 1);
    }
}
