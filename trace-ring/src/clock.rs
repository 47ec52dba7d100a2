//! The trace clock: TSC frequency, the (TSC, CLOCK_MONOTONIC) calibration pair written in the
//! header, and conversions between ticks and nanoseconds.
//!
//! Threading/ownership: `Clock` is a plain `Copy` value; [`Clock::calibrated`] measures once per
//! process (about 15 ms, on first use) and caches the result in a `OnceLock`.
#![forbid(unsafe_code)]

use std::sync::OnceLock;
use std::time::Duration;

use crate::layout::{FLAG_TSC_INVARIANT, FLAG_TSC_IS_MONOTONIC_NS};
use crate::tsc;

/// Frequency and calibration of the record timestamps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    /// Ticks per second (1e9 when the "tsc" is CLOCK_MONOTONIC ns).
    pub tsc_hz: u64,
    /// A tick value ...
    pub calib_tsc: u64,
    /// ... and CLOCK_MONOTONIC ns at the same instant.
    pub calib_mono_ns: u64,
    /// `FLAG_TSC_IS_MONOTONIC_NS` / `FLAG_TSC_INVARIANT` as written in the header.
    pub flags: u64,
}

impl Clock {
    /// The process-wide calibration, measured on first use over 15 ms.
    pub fn calibrated() -> Clock {
        static CLOCK: OnceLock<Clock> = OnceLock::new();
        *CLOCK.get_or_init(|| Clock::measure(Duration::from_millis(15)))
    }

    /// Measures the TSC frequency against CLOCK_MONOTONIC over `window` (sleeping), and takes the
    /// calibration pair at the end of the window. On architectures without a TSC returns the
    /// identity clock (ticks are CLOCK_MONOTONIC ns) without sleeping.
    pub fn measure(window: Duration) -> Clock {
        if tsc::IS_MONOTONIC_NS {
            let now = tsc::mono_ns();
            return Clock {
                tsc_hz: 1_000_000_000,
                calib_tsc: now,
                calib_mono_ns: now,
                flags: FLAG_TSC_IS_MONOTONIC_NS,
            };
        }
        let (t0, m0) = pair();
        std::thread::sleep(window);
        let (t1, m1) = pair();
        let dt = t1.saturating_sub(t0);
        let dm = m1.saturating_sub(m0).max(1);
        let hz = (u128::from(dt) * 1_000_000_000 / u128::from(dm)) as u64;
        let flags = if tsc::invariant() {
            FLAG_TSC_INVARIANT
        } else {
            0
        };
        Clock {
            tsc_hz: hz.max(1),
            calib_tsc: t1,
            calib_mono_ns: m1,
            flags,
        }
    }

    /// Converts a record timestamp to CLOCK_MONOTONIC nanoseconds (saturating at 0 and u64::MAX).
    pub fn to_mono_ns(&self, tsc: u64) -> u64 {
        let delta = i128::from(tsc) - i128::from(self.calib_tsc);
        let ns = i128::from(self.calib_mono_ns) + delta * 1_000_000_000 / i128::from(self.hz());
        ns.clamp(0, i128::from(u64::MAX)) as u64
    }

    /// Converts CLOCK_MONOTONIC nanoseconds to a record timestamp (saturating).
    pub fn from_mono_ns(&self, ns: u64) -> u64 {
        let delta = i128::from(ns) - i128::from(self.calib_mono_ns);
        let t = i128::from(self.calib_tsc) + delta * i128::from(self.hz()) / 1_000_000_000;
        t.clamp(0, i128::from(u64::MAX)) as u64
    }

    /// Converts a duration in ticks to nanoseconds (saturating).
    pub fn ticks_to_ns(&self, ticks: u64) -> u64 {
        (u128::from(ticks) * 1_000_000_000 / u128::from(self.hz())).min(u128::from(u64::MAX)) as u64
    }

    /// Converts nanoseconds to ticks (saturating).
    pub fn ns_to_ticks(&self, ns: u64) -> u64 {
        (u128::from(ns) * u128::from(self.hz()) / 1_000_000_000).min(u128::from(u64::MAX)) as u64
    }

    /// Fixed-point multiplier for the hot path: `ns = (ticks * m) >> 32` (see
    /// [`Clock::fast_ticks_to_ns`]); error below 1 ns per 4 s of ticks at GHz rates.
    pub fn ns_multiplier(&self) -> u64 {
        ((1_000_000_000u128 << 32) / u128::from(self.hz())).min(u128::from(u64::MAX)) as u64
    }

    /// `ticks` to ns with a multiplier from [`Clock::ns_multiplier`] (one multiply, saturating).
    #[inline(always)]
    pub fn fast_ticks_to_ns(ticks: u64, multiplier: u64) -> u64 {
        let ns = (u128::from(ticks) * u128::from(multiplier)) >> 32;
        if ns > u128::from(u64::MAX) {
            u64::MAX
        } else {
            ns as u64
        }
    }

    fn hz(&self) -> u64 {
        self.tsc_hz.max(1)
    }
}

/// A (tsc, mono ns) pair read as close together as we can: the best of a few tries.
fn pair() -> (u64, u64) {
    let mut best = (u64::MAX, 0u64, 0u64);
    for _ in 0..5 {
        let a = tsc::now();
        let m = tsc::mono_ns();
        let b = tsc::now();
        let gap = b.wrapping_sub(a);
        if gap < best.0 {
            best = (gap, a + gap / 2, m);
        }
    }
    (best.1, best.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip() {
        let c = Clock {
            tsc_hz: 2_500_000_000,
            calib_tsc: 10_000_000_000,
            calib_mono_ns: 4_000_000_000,
            flags: 0,
        };
        assert_eq!(c.to_mono_ns(10_000_000_000), 4_000_000_000);
        assert_eq!(c.to_mono_ns(12_500_000_000), 5_000_000_000);
        assert_eq!(c.to_mono_ns(7_500_000_000), 3_000_000_000);
        assert_eq!(
            c.to_mono_ns(0),
            0,
            "before the monotonic epoch saturates at 0"
        );
        assert_eq!(c.from_mono_ns(5_000_000_000), 12_500_000_000);
        assert_eq!(c.ticks_to_ns(2_500), 1_000);
        assert_eq!(c.ns_to_ticks(1_000), 2_500);
        let m = c.ns_multiplier();
        let fast = Clock::fast_ticks_to_ns(2_500_000, m);
        assert!(
            (999_999..=1_000_000).contains(&fast),
            "fast conversion {fast}"
        );
        assert_eq!(Clock::fast_ticks_to_ns(u64::MAX, u64::MAX), u64::MAX);
    }

    #[test]
    fn measured_clock_tracks_monotonic() {
        let c = Clock::calibrated();
        assert!(
            c.tsc_hz > 1_000_000,
            "implausible tsc frequency {}",
            c.tsc_hz
        );
        // A conversion of "now" lands near CLOCK_MONOTONIC "now" (generous: 50 ms, not timing the
        // machine, just catching a wrong formula such as a swapped ratio).
        let t = tsc::now();
        let m = tsc::mono_ns();
        let conv = c.to_mono_ns(t);
        assert!(
            conv.abs_diff(m) < 50_000_000,
            "converted {conv} vs monotonic {m}"
        );
    }
}
