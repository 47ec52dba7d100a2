//! The reactor's throughput as a function of the initiator's depth: what the detectors judge
//! starvation against and what the recommender predicts with (issue 12, DESIGN §6).
//!
//! A poll-mode reactor pays two kinds of work: per I/O (parse, backend, build the response,
//! copy the data) and per batch (a receive and a send system call, a poll round), shared by the
//! I/Os that arrive together. With `D` requests kept in flight on a reactor the batch grows with
//! `D`, so its busy time per I/O falls as
//!
//! ```text
//!     c(D) = a + s / D          (a: per-I/O floor, s: per-batch cost)
//! ```
//!
//! and the closed loop (initiator → wire → reactor → wire) serves
//!
//! ```text
//!     X(D) = D / (Z + D · a)    (Z: round trip minus the reactor's serial share)
//! ```
//!
//! (mean-value analysis of one serial server with a delay: `Z` is the part of a request's round
//! trip in which the reactor can serve others — the initiator, the wire, the per-batch work —
//! and `D · a` the part the requests queue for it). From a window at depth `D0` serving `X0`
//! with busy cost `c0` per I/O: the round trip `R0 = D0 / X0` (Little's law), `a` from the fit of
//! `c(D)` over windows at different depths, or from the one window with the calibrated batch
//! ratio [`BATCH_RATIO`] (`s = K · a`, so `a = c0 / (1 + K / D0)`) and its range
//! [`BATCH_RATIO_RANGE`], and `Z = R0 − D0 · a`.
//!
//! The plateau `1 / a` is approached, never reached: the **knee** is the smallest power of two
//! from which doubling the depth adds under [`KNEE_GAIN`] IOPS (while it doubles the time a
//! request waits for the reactor). Deeper only costs latency.
//!
//! Calibration (the only constant not measured in the windows): `K` = the per-batch cost over the
//! per-I/O floor. ringside-tgt over loopback, 4 KiB reads: 11.3 µs per I/O at QD1 vs 2.2-2.4 µs at
//! QD32 (a quiet-machine recording), and the issue-12 sweep (QD1 116K … QD32 821K, QD64 858K)
//! fits `c(D) = 1.07 µs · (1 + 4.5 / D)` within 10 % from QD2 to QD64. `K` from 3.5 to 5.5 gives
//! the range every prediction carries.
//!
//! Pure: a function of the windows.

// `!(x >= y)` on purpose: a NaN must fail the condition.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use crate::window::{QpairWindow, ReactorWindow, Window};

/// Per-batch cost over the per-I/O floor (`s / a`), calibrated as the module doc says.
pub const BATCH_RATIO: f64 = 4.5;

/// The range of [`BATCH_RATIO`] the predictions' ranges come from.
pub const BATCH_RATIO_RANGE: (f64, f64) = (3.5, 5.5);

/// Doubling the depth past the knee adds less than this share of IOPS: 12 % more throughput for
/// twice the queueing delay is where a storage engineer stops (at this share the model sits at
/// ~80 % of its asymptote, which it only reaches at infinite depth).
pub const KNEE_GAIN: f64 = 0.12;

/// Completions a window needs to count.
pub const MIN_COMPLETIONS: u64 = 1000;

/// Depths (total per reactor) two windows must differ by, as a factor, to fit `a` and `s` from
/// them rather than from the calibrated ratio.
pub const FIT_DEPTH_SPREAD: f64 = 2.0;

/// Deepest depth the model proposes (per reactor, all its qpairs together).
pub const MAX_DEPTH: u32 = 4096;

/// One reactor at one depth, as a window shows it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Observation {
    /// Requests the initiator(s) keep in flight on the reactor (all its I/O qpairs together).
    pub depth: f64,
    /// The reactor's IOPS.
    pub iops: f64,
    /// Busy ns per I/O.
    pub cost_ns: f64,
}

/// The fitted model of one reactor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DepthModel {
    /// Per-I/O floor (ns): the plateau is `1e9 / floor_ns`.
    pub floor_ns: f64,
    /// The floor's range (low, high) in ns.
    pub floor_range_ns: (f64, f64),
    /// Depth, IOPS and round trip (ns) of the observation the loop is anchored on.
    pub anchor: Observation,
    /// Round trip at the anchor (ns), Little's law.
    pub round_trip_ns: f64,
    /// Whether `floor_ns` was fitted from several depths (else: the calibrated ratio).
    pub fitted: bool,
    /// Share of its core the reactor gets (1 − stolen share).
    pub cpu_share: f64,
}

/// A prediction at one depth.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prediction {
    /// Total depth on the reactor.
    pub depth: u32,
    /// Expected IOPS.
    pub iops: f64,
    /// Range of expected IOPS (low, high).
    pub iops_range: (f64, f64),
    /// Expected mean round trip (ns) at that depth: `Z + D · a`.
    pub latency_ns: f64,
}

impl DepthModel {
    /// Fits a model from observations of one reactor, newest last (the newest is the anchor).
    /// `None` without a usable observation.
    pub fn fit(obs: &[Observation], cpu_share: f64) -> Option<DepthModel> {
        let ok = |o: &&Observation| {
            o.depth.is_finite()
                && o.depth > 0.0
                && o.iops.is_finite()
                && o.iops > 0.0
                && o.cost_ns.is_finite()
                && o.cost_ns > 0.0
        };
        let usable: Vec<Observation> = obs.iter().filter(ok).copied().collect();
        let anchor = *usable.last()?;
        let share = if cpu_share.is_finite() {
            cpu_share.clamp(0.05, 1.0)
        } else {
            1.0
        };
        // Least squares of c = a + s · (1/D) over the distinct depths, when they span enough.
        let (dmin, dmax) = usable.iter().fold((f64::MAX, 0.0f64), |(lo, hi), o| {
            (lo.min(o.depth), hi.max(o.depth))
        });
        let mut fitted = None;
        if dmax >= FIT_DEPTH_SPREAD * dmin {
            let n = usable.len() as f64;
            let xs: Vec<f64> = usable.iter().map(|o| 1.0 / o.depth).collect();
            let mx = xs.iter().sum::<f64>() / n;
            let my = usable.iter().map(|o| o.cost_ns).sum::<f64>() / n;
            let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
            let sxy: f64 = xs
                .iter()
                .zip(&usable)
                .map(|(x, o)| (x - mx) * (o.cost_ns - my))
                .sum();
            if sxx > 0.0 {
                let s = sxy / sxx;
                let a = my - s * mx;
                if a > 0.0 && s >= 0.0 {
                    fitted = Some(a);
                }
            }
        }
        let from_ratio = |k: f64| anchor.cost_ns / (1.0 + k / anchor.depth);
        let (floor, range, is_fit) = match fitted {
            Some(a) => (a, (a * 0.9, a * 1.1), true),
            None => (
                from_ratio(BATCH_RATIO),
                (
                    from_ratio(BATCH_RATIO_RANGE.1),
                    from_ratio(BATCH_RATIO_RANGE.0),
                ),
                false,
            ),
        };
        Some(DepthModel {
            floor_ns: floor / share,
            floor_range_ns: (range.0 / share, range.1 / share),
            anchor,
            round_trip_ns: anchor.depth / anchor.iops * 1e9,
            fitted: is_fit,
            cpu_share: share,
        })
    }

    /// The delay part of the loop (ns) for a floor: the anchor's round trip minus its queueing.
    fn delay_ns(&self, floor: f64) -> f64 {
        (self.round_trip_ns - self.anchor.depth * floor).max(0.0)
    }

    fn iops_with(&self, floor: f64, depth: f64) -> f64 {
        depth / (self.delay_ns(floor) + depth * floor) * 1e9
    }

    /// Expected IOPS, its range and latency at a total depth.
    pub fn predict(&self, depth: u32) -> Prediction {
        let d = f64::from(depth.max(1));
        let (lo_floor, hi_floor) = self.floor_range_ns;
        let a = self.iops_with(hi_floor, d);
        let b = self.iops_with(lo_floor, d);
        Prediction {
            depth,
            iops: self.iops_with(self.floor_ns, d),
            iops_range: (a.min(b), a.max(b)),
            latency_ns: self.delay_ns(self.floor_ns) + d * self.floor_ns,
        }
    }

    /// The plateau (IOPS at unbounded depth).
    pub fn plateau(&self) -> f64 {
        1e9 / self.floor_ns
    }

    /// The knee: the smallest power of two from which doubling adds under [`KNEE_GAIN`], capped
    /// at `max` (the target's limit, when known).
    pub fn knee(&self, max: Option<u32>) -> u32 {
        let cap = max.filter(|m| *m > 0).unwrap_or(MAX_DEPTH).min(MAX_DEPTH);
        let mut d = 1u32;
        while d < cap {
            let now = self.iops_with(self.floor_ns, f64::from(d));
            let next = self.iops_with(self.floor_ns, f64::from(d * 2));
            if !(next >= now * (1.0 + KNEE_GAIN)) {
                break;
            }
            d *= 2;
        }
        d.min(cap)
    }
}

/// The initiator's depth on a qpair: it had at least this many in flight (its high-water at the
/// target, or its time-weighted mean there, whichever is larger).
pub fn initiator_depth(q: &QpairWindow) -> u32 {
    let avg = if q.avg_outstanding.is_finite() {
        q.avg_outstanding.round().clamp(0.0, 65_536.0) as u32
    } else {
        0
    };
    (q.high_water.min(65_536) as u32).max(avg).max(1)
}

/// Whether a qpair carries I/O in a window (the admin queue does not).
fn io_qpair(q: &QpairWindow) -> bool {
    q.completions >= crate::detect::IO_QPAIR_COMPLETIONS
}

/// The observation of a reactor in a window: its I/O qpairs' depths summed, its IOPS and cost.
pub fn observe(w: &Window, r: &ReactorWindow) -> Option<Observation> {
    if r.stalled || r.completions < MIN_COMPLETIONS {
        return None;
    }
    let cost = r.ns_per_io.filter(|c| c.is_finite() && *c > 0.0)?;
    let depth: u32 = w
        .qpairs
        .iter()
        .filter(|q| q.reactor == r.index && io_qpair(q))
        .map(initiator_depth)
        .sum();
    (depth > 0 && r.iops > 0.0).then_some(Observation {
        depth: f64::from(depth),
        iops: r.iops,
        cost_ns: cost,
    })
}

/// The model of reactor `index` from `history` (oldest first) and the current window `w`.
pub fn reactor_model(history: &[Window], w: &Window, index: u32) -> Option<DepthModel> {
    let mut obs: Vec<Observation> = history
        .iter()
        .chain(std::iter::once(w))
        .filter_map(|x| x.reactor(index).and_then(|r| observe(x, r)))
        .collect();
    let anchor = observe(w, w.reactor(index)?)?;
    // The anchor is the current window; keep it last.
    obs.retain(|o| *o != anchor);
    obs.push(anchor);
    let waits: Vec<f64> = history
        .iter()
        .chain(std::iter::once(w))
        .filter_map(|x| x.reactor(index))
        .filter_map(|r| r.preempted_ratio.or(r.runqueue_wait_ratio))
        .filter(|v| v.is_finite())
        .collect();
    let share = if waits.is_empty() {
        1.0
    } else {
        1.0 - waits.iter().sum::<f64>() / waits.len() as f64
    };
    DepthModel::fit(&obs, share)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The issue-12 sweep, same target, same minute: depth → IOPS.
    const SWEEP: [(u32, f64); 8] = [
        (1, 116_000.0),
        (2, 195_000.0),
        (4, 308_000.0),
        (8, 444_000.0),
        (16, 588_000.0),
        (32, 821_000.0),
        (64, 858_000.0),
        (128, 640_000.0),
    ];

    fn measured(d: u32) -> f64 {
        SWEEP
            .iter()
            .find(|(x, _)| *x == d)
            .map(|x| x.1)
            .expect("depth in the sweep")
    }

    fn best() -> f64 {
        SWEEP.iter().map(|x| x.1).fold(0.0, f64::max)
    }

    /// At QD1 the reactor was 67 % busy (the quiet-machine recording's share at QD1; the sweep
    /// did not record it): 116K IOPS at 5.8 µs of busy time each.
    fn qd1() -> Observation {
        Observation {
            depth: 1.0,
            iops: 116_000.0,
            cost_ns: 0.67e9 / 116_000.0,
        }
    }

    #[test]
    fn from_one_qd1_window_the_knee_reaches_the_sweeps_best_and_the_prediction_holds() {
        let m = DepthModel::fit(&[qd1()], 1.0).expect("a model");
        let knee = m.knee(None);
        let got = measured(knee);
        assert!(
            got >= 0.95 * best(),
            "knee {knee}: the sweep measured {got} there, best {}",
            best()
        );
        let p = m.predict(knee);
        let err = (p.iops - got) / got;
        assert!(
            err.abs() <= 0.20,
            "predicted {} at {knee}, measured {got}",
            p.iops
        );
        assert!(
            p.iops_range.0 <= got && got <= p.iops_range.1,
            "the range {:?} holds the measurement {got}",
            p.iops_range
        );
        // Latency: 32 requests at 821K IOPS take 39 µs each (Little's law).
        let measured_rtt = f64::from(knee) / got * 1e9;
        assert!(
            (p.latency_ns - measured_rtt).abs() / measured_rtt <= 0.25,
            "latency {} vs {measured_rtt}",
            p.latency_ns
        );
    }

    #[test]
    fn the_old_fixed_divisor_answer_is_not_what_the_model_gives() {
        // The agent used to say depth 8 and ~606K from QD1: 8 measured 444K (0.52 of the best).
        let m = DepthModel::fit(&[qd1()], 1.0).expect("a model");
        assert!(m.knee(None) > 8, "knee {}", m.knee(None));
        let at8 = m.predict(8).iops;
        assert!(
            (at8 - measured(8)).abs() / measured(8) <= 0.20,
            "at depth 8 the model says {at8}, the sweep {}",
            measured(8)
        );
    }

    #[test]
    fn windows_at_two_depths_fit_the_floor_instead_of_the_calibration() {
        // A reactor whose cost is 1.0 µs + 8 µs per batch (a ratio of 8, far from the
        // calibrated 4.5): windows at QD1 and QD4 recover the floor; one window alone cannot.
        let at = |d: f64, iops: f64| Observation {
            depth: d,
            iops,
            cost_ns: 1_000.0 + 8_000.0 / d,
        };
        let m = DepthModel::fit(&[at(1.0, 100_000.0), at(4.0, 300_000.0)], 1.0).expect("model");
        assert!(m.fitted);
        assert!((m.floor_ns - 1_000.0).abs() < 1.0, "floor {}", m.floor_ns);
        let one = DepthModel::fit(&[at(4.0, 300_000.0)], 1.0).expect("model");
        assert!(!one.fitted);
        assert!(
            (one.floor_ns - 1_000.0).abs() > 100.0,
            "calibrated {}",
            one.floor_ns
        );
        // A reactor sharing its core gets only its share of the plateau.
        let half = DepthModel::fit(&[at(1.0, 100_000.0), at(4.0, 300_000.0)], 0.5).expect("m");
        assert!(
            (half.plateau() - 0.5e6).abs() < 1e3,
            "plateau {}",
            half.plateau()
        );
    }

    #[test]
    fn a_saturated_deep_reactor_has_no_deeper_knee() {
        // QD32 at 821K, 100 % busy: the knee is where it runs.
        let o = Observation {
            depth: 32.0,
            iops: 821_000.0,
            cost_ns: 1e9 / 821_000.0,
        };
        let m = DepthModel::fit(&[o], 1.0).expect("a model");
        assert!(m.knee(None) <= 32, "knee {}", m.knee(None));
        assert!(m.plateau() < 1.25 * 821_000.0, "plateau {}", m.plateau());
    }

    #[test]
    fn the_targets_limit_caps_the_knee_and_garbage_gives_no_model() {
        let m = DepthModel::fit(&[qd1()], 1.0).expect("a model");
        assert_eq!(m.knee(Some(4)), 4);
        let nan = Observation {
            depth: f64::NAN,
            iops: 1.0,
            cost_ns: 1.0,
        };
        assert!(DepthModel::fit(&[nan], 1.0).is_none());
        assert!(DepthModel::fit(&[], 1.0).is_none());
    }
}
