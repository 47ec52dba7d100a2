//! A serialisable latency histogram: trace-ring's log-linear [`Histogram`] stored sparsely, so
//! recordings and snapshots carry exact bucket counts (mergeable, deltas, quantiles) without
//! 560 zeros each.
//!
//! Pure value type; no I/O.

use serde::{Deserialize, Serialize};
pub use trace_ring::histogram::{bucket_bounds, bucket_index};
use trace_ring::layout::{HIST_BUCKETS, HIST_PREFIX_WORDS};
pub use trace_ring::Histogram;

/// A latency histogram in nanoseconds (trace-ring's bucket layout), serialised as
/// `{"sum":…,"max":…,"b":[[index,count],…]}` with only non-empty buckets.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Hist(pub Option<Box<Histogram>>);

#[derive(Serialize, Deserialize)]
struct Sparse {
    sum: u64,
    max: u64,
    b: Vec<(u16, u64)>,
}

impl Hist {
    /// An empty histogram.
    pub fn empty() -> Hist {
        Hist(None)
    }

    /// Wraps a histogram.
    pub fn from_histogram(h: Histogram) -> Hist {
        if h.count() == 0 {
            Hist(None)
        } else {
            Hist(Some(Box::new(h)))
        }
    }

    /// Records one value (used by tests and by folding request events).
    pub fn record(&mut self, ns: u64) {
        self.0
            .get_or_insert_with(|| Box::new(Histogram::new()))
            .record(ns);
    }

    /// Number of values.
    pub fn count(&self) -> u64 {
        self.0.as_ref().map_or(0, |h| h.count())
    }

    /// Sum of values (ns).
    pub fn sum(&self) -> u64 {
        self.0.as_ref().map_or(0, |h| h.sum())
    }

    /// Largest value (ns).
    pub fn max(&self) -> u64 {
        self.0.as_ref().map_or(0, |h| h.max())
    }

    /// Mean (ns), `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        self.0.as_ref().and_then(|h| h.mean())
    }

    /// Quantile `q` in `[0, 1]` (ns, the bucket's upper bound), `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        self.0.as_ref().and_then(|h| h.quantile(q))
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Hist) {
        if let Some(o) = &other.0 {
            match &mut self.0 {
                Some(h) => h.merge(o),
                None => self.0 = Some(o.clone()),
            }
        }
    }

    /// What `self` gained since `earlier` (both cumulative). A histogram that went backwards
    /// (slot reused, producer restarted) yields `self` whole.
    pub fn delta_since(&self, earlier: &Hist) -> Hist {
        match (&self.0, &earlier.0) {
            (None, _) => Hist(None),
            (Some(h), None) => Hist(Some(h.clone())),
            (Some(h), Some(e)) => {
                if h.count() < e.count() {
                    Hist(Some(h.clone()))
                } else {
                    Hist::from_histogram(h.delta_since(e))
                }
            }
        }
    }

    /// Non-empty buckets as `(low_ns, high_ns, count)`.
    pub fn buckets(&self) -> Vec<(u64, u64, u64)> {
        let Some(h) = &self.0 else { return Vec::new() };
        h.buckets()
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(i, &c)| {
                let (lo, hi) = bucket_bounds(i);
                (lo, hi, c)
            })
            .collect()
    }
}

impl Serialize for Hist {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let sparse = match &self.0 {
            None => Sparse {
                sum: 0,
                max: 0,
                b: Vec::new(),
            },
            Some(h) => Sparse {
                sum: h.sum(),
                max: h.max(),
                b: h.buckets()
                    .iter()
                    .enumerate()
                    .filter(|(_, &c)| c > 0)
                    .map(|(i, &c)| (i as u16, c))
                    .collect(),
            },
        };
        sparse.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Hist {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Hist, D::Error> {
        let sparse = Sparse::deserialize(d)?;
        if sparse.b.is_empty() {
            return Ok(Hist(None));
        }
        // The trace file's block layout: [sum, max, reserved x6, buckets...].
        let mut words = vec![0u64; HIST_PREFIX_WORDS + HIST_BUCKETS];
        words[0] = sparse.sum;
        words[1] = sparse.max;
        for (i, c) in sparse.b {
            let slot = words[HIST_PREFIX_WORDS..]
                .get_mut(usize::from(i))
                .ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "histogram bucket {i} out of range (0..{HIST_BUCKETS})"
                    ))
                })?;
            *slot = slot.saturating_add(c);
        }
        let h = Histogram::from_block(&words);
        Ok(Hist::from_histogram(h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_round_trip_keeps_counts_sum_max_and_quantiles() {
        let mut h = Hist::empty();
        for v in [10, 1_000, 25_000, 25_100, 1_000_000] {
            h.record(v);
        }
        let json = serde_json::to_string(&h).expect("serialise");
        let back: Hist = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back, h, "round trip changed the histogram: {json}");
        assert_eq!(back.count(), 5);
        assert_eq!(back.max(), 1_000_000);
        assert_eq!(back.quantile(0.5), h.quantile(0.5));
    }

    #[test]
    fn out_of_range_bucket_is_an_error_not_a_panic() {
        let err = serde_json::from_str::<Hist>(r#"{"sum":1,"max":1,"b":[[9999,1]]}"#)
            .expect_err("bucket 9999 must be rejected");
        assert!(err.to_string().contains("out of range"), "{err}");
    }

    #[test]
    fn delta_of_a_reset_histogram_is_the_new_histogram() {
        let mut before = Hist::empty();
        before.record(5);
        before.record(6);
        let mut after = Hist::empty();
        after.record(7);
        assert_eq!(after.delta_since(&before).count(), 1);
        let mut grown = before.clone();
        grown.record(100);
        assert_eq!(grown.delta_since(&before).count(), 1);
        assert_eq!(grown.delta_since(&before).max(), 100);
    }
}
