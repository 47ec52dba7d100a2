//! The reactor's throughput as a function of the initiator's depth: what the detectors judge
//! starvation against and what the recommender predicts with (issue 12, DESIGN §6).
//!
//! **The loop.** A request goes round a closed loop: the initiator's core (submit, send, the
//! TCP stack), the wire, the reactor's core (receive, parse, execute, build and send the
//! response). With `D` requests in flight the loop is two CPU stations in series (the
//! initiator's and the reactor's; over loopback the network stack runs on those same cores),
//! and mean-value analysis of a closed loop of two balanced stations gives
//!
//! ```text
//!     X_loop(D) = D / ((D + 1) · s(D))        s(D): each station's time per I/O at depth D
//! ```
//!
//! At the observed depth `D0` Little's law gives the round trip `R0 = D0 / X0`, so
//! `s(D0) = R0 / (D0 + 1)`: at QD1 each station takes half the round trip.
//!
//! **Batching.** A station pays per I/O (parse, copy the 4 KiB, build the response) and per
//! batch (a receive and a send system call, a poll round, a TCP segment and its ACK). The deeper
//! the loop the more requests each receive and each send carries, so the per-batch costs are
//! shared: `s(D)` falls with depth until only the per-I/O work is left:
//!
//! ```text
//!     s(D) = s(1) · max(ρ, D^−γ)
//! ```
//!
//! `γ` ([`BATCH_EXPONENT`]): how fast batching amortizes the fixed costs (the batch grows about
//! as `D^γ`, not as `D`: the requests in flight spread over several receives); `ρ`
//! ([`FLOOR_SHARE`]): the per-I/O floor as a share of the QD1 cost. Past `D = ρ^(−1/γ)` the
//! batches stop paying and deeper only queues.
//!
//! **The reactor's own capacity.** The window measures the reactor's busy ns per I/O `c0` at
//! `D0`; it batches as the loop does, so its capacity at depth `D` is
//! `share / (c0 · max(ρr, D^−γ) / max(ρr, D0^−γ))` (`share`: the part of its core the reactor
//! gets; `ρr` = [`REACTOR_FLOOR_SHARE`], the reactor's own floor).
//! The model is
//!
//! ```text
//!     X(D) = min(X_loop(D), reactor capacity(D))
//! ```
//!
//! anchored on the window (it reproduces `X0` at `D0`). The **plateau** is its limit at
//! unbounded depth; the **knee** (the recommended depth) is the smallest power of two whose
//! modelled IOPS reach [`PLATEAU_SHARE`] of the plateau. Deeper only adds latency.
//!
//! **Calibration** (the two constants the windows of one depth cannot give). Four brute-force
//! sweeps of ringside-tgt over loopback, 4 KiB random reads, 2-core VM (the issue-12 sweep and
//! bench-results/scenarios-{b71b2b8,53d3282bfc41,0e2f4cef2c6d}.json): `s(D) / s(1)` from
//! depth 2 to 32 follows `D^−0.385` (each sweep alone: 0.38-0.39), and the floor (the lowest
//! `s(D) / s(1)` at depth 64 or 128) is 0.20-0.27 (mean 0.227). Calibrated on three sweeps and
//! checked on the fourth, `γ` lands within 0.01 and `ρ` within 0.015 of the values here. Given
//! windows at two depths at least [`FIT_DEPTH_SPREAD`] apart, `γ` is fitted from them instead.
//! Every prediction carries the range those spreads give ([`BATCH_EXPONENT_RANGE`],
//! [`FLOOR_SHARE_RANGE`]).
//!
//! **Limits.** Calibrated over loopback, where the wire is the two cores' own work: a real wire
//! adds a delay depth does not amortize (the model then expects the knee a little early). The
//! stations are taken as balanced (initiator about as costly per I/O as the reactor, true for
//! ringside-perf; a heavier initiator is its own limit). Deep queues cost something the model
//! does not hold (128 in flight measured 5-25 % below 64 in three of the four sweeps: socket
//! buffers, cache footprint), which is one more reason to stop at the knee.
//!
//! Pure: a function of the windows.

// `!(x >= y)` on purpose: a NaN must fail the condition.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use crate::window::{QpairWindow, ReactorWindow, Window};

/// `γ`: each station's time per I/O falls as `D^−γ` while batching pays (calibrated as the
/// module doc says).
pub const BATCH_EXPONENT: f64 = 0.385;

/// The range of [`BATCH_EXPONENT`] the predictions' ranges come from (the sweeps' spread and a
/// margin).
pub const BATCH_EXPONENT_RANGE: (f64, f64) = (0.345, 0.425);

/// `ρ`: the loop's per-I/O floor as a share of its QD1 cost (the sweeps: 0.20-0.27, mean 0.227).
pub const FLOOR_SHARE: f64 = 0.227;

/// The range of [`FLOOR_SHARE`]: the lowest and highest floor the sweeps showed.
pub const FLOOR_SHARE_RANGE: (f64, f64) = (0.20, 0.27);

/// The reactor's own floor as a share of its QD1 busy cost: 5.9 µs busy per I/O at QD1 (the
/// 0e2f4cef2c6d suite's depth-1 window, 100K IOPS) against 1.20 µs at the 836K plateau of the
/// same run's sweep (the reactor saturated) is 0.20. Lower than the loop's: the reactor's busy
/// time at QD1 also carries kernel work done for the initiator (its send delivers to the
/// initiator's socket), which batching shares too.
pub const REACTOR_FLOOR_SHARE: f64 = 0.20;

/// The range of [`REACTOR_FLOOR_SHARE`] (in proportion to [`FLOOR_SHARE_RANGE`]).
pub const REACTOR_FLOOR_SHARE_RANGE: (f64, f64) = (0.176, 0.238);

/// The knee: the smallest power of two whose modelled IOPS reach this share of the plateau.
/// Past it, doubling the depth adds at most 3 % and doubles the time a request queues.
pub const PLATEAU_SHARE: f64 = 0.97;

/// CPU stations in the loop: the initiator's core and the reactor's.
pub const LOOP_STATIONS: f64 = 2.0;

/// Completions a window needs to count.
pub const MIN_COMPLETIONS: u64 = 1000;

/// Depths (total per reactor) two windows must differ by, as a factor, to fit `γ` from them
/// rather than take the calibrated one.
pub const FIT_DEPTH_SPREAD: f64 = 2.0;

/// A fitted `γ` outside this band is noise (two windows too close in depth or disturbed) and the
/// calibrated one is kept.
pub const FIT_EXPONENT_BAND: (f64, f64) = (0.1, 0.9);

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

/// The model of one reactor, anchored on one window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DepthModel {
    /// ns per I/O at the plateau: the plateau is `1e9 / floor_ns`.
    pub floor_ns: f64,
    /// The floor's range (low, high) in ns, from the constants' ranges.
    pub floor_range_ns: (f64, f64),
    /// The observation the model is anchored on (the newest window).
    pub anchor: Observation,
    /// Round trip at the anchor (ns), Little's law: depth / IOPS.
    pub round_trip_ns: f64,
    /// Each loop station's time per I/O at the anchor (ns): round trip / (depth + 1).
    pub station_ns: f64,
    /// `γ` in use.
    pub exponent: f64,
    /// `γ`'s range.
    pub exponent_range: (f64, f64),
    /// Whether `γ` was fitted from windows at several depths (else: calibrated).
    pub fitted: bool,
    /// Share of its core the reactor gets (1 − stolen share).
    pub cpu_share: f64,
    /// The reactor's batch at the anchor (I/Os per poll iteration that found work), when the
    /// window has it: the evidence of how far batching has gone.
    pub batch: Option<f64>,
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
    /// Expected mean round trip (ns) at that depth (Little's law on the expected IOPS).
    pub latency_ns: f64,
}

/// The model's uncertain constants, one corner of their ranges.
#[derive(Clone, Copy, Debug)]
struct Params {
    gamma: f64,
    rho: f64,
    rho_reactor: f64,
}

/// How a station's cost at depth `d` compares with its QD1 cost: batching until the floor.
fn shape(d: f64, gamma: f64, floor: f64) -> f64 {
    d.max(1.0).powf(-gamma).max(floor)
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
        let station = |o: &Observation| o.depth / ((o.depth + LOOP_STATIONS - 1.0) * o.iops) * 1e9;
        // Least squares of ln s = c − γ · ln D over the depths, when they span enough.
        let (dmin, dmax) = usable.iter().fold((f64::MAX, 0.0f64), |(lo, hi), o| {
            (lo.min(o.depth), hi.max(o.depth))
        });
        let mut fitted = None;
        if dmax >= FIT_DEPTH_SPREAD * dmin {
            let n = usable.len() as f64;
            let xs: Vec<f64> = usable.iter().map(|o| o.depth.ln()).collect();
            let ys: Vec<f64> = usable.iter().map(|o| station(o).ln()).collect();
            let mx = xs.iter().sum::<f64>() / n;
            let my = ys.iter().sum::<f64>() / n;
            let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
            let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
            if sxx > 0.0 {
                let g = -sxy / sxx;
                if g >= FIT_EXPONENT_BAND.0 && g <= FIT_EXPONENT_BAND.1 {
                    fitted = Some(g);
                }
            }
        }
        let (exponent, exponent_range) = match fitted {
            // A fit over a few windows is as uncertain as the sweeps' spread.
            Some(g) => {
                let half = (BATCH_EXPONENT_RANGE.1 - BATCH_EXPONENT_RANGE.0) / 2.0;
                (g, (g - half, g + half))
            }
            None => (BATCH_EXPONENT, BATCH_EXPONENT_RANGE),
        };
        let mut m = DepthModel {
            floor_ns: 0.0,
            floor_range_ns: (0.0, 0.0),
            anchor,
            round_trip_ns: anchor.depth / anchor.iops * 1e9,
            station_ns: station(&anchor),
            exponent,
            exponent_range,
            fitted: fitted.is_some(),
            cpu_share: share,
            batch: None,
        };
        m.floor_ns = 1e9 / m.plateau_with(m.params());
        let floors: Vec<f64> = m
            .corners()
            .iter()
            .map(|p| 1e9 / m.plateau_with(*p))
            .collect();
        m.floor_range_ns = (
            floors.iter().copied().fold(f64::INFINITY, f64::min),
            floors.iter().copied().fold(0.0, f64::max),
        );
        Some(m)
    }

    fn params(&self) -> Params {
        Params {
            gamma: self.exponent,
            rho: FLOOR_SHARE,
            rho_reactor: REACTOR_FLOOR_SHARE,
        }
    }

    /// The corners of the constants' ranges.
    fn corners(&self) -> Vec<Params> {
        let mut v = Vec::new();
        for gamma in [self.exponent_range.0, self.exponent_range.1] {
            for (rho, rho_reactor) in [
                (FLOOR_SHARE_RANGE.0, REACTOR_FLOOR_SHARE_RANGE.0),
                (FLOOR_SHARE_RANGE.1, REACTOR_FLOOR_SHARE_RANGE.1),
            ] {
                v.push(Params {
                    gamma,
                    rho,
                    rho_reactor,
                });
            }
        }
        v
    }

    /// The loop's IOPS at depth `d` (mean-value analysis of the two stations).
    fn loop_iops(&self, p: Params, d: f64) -> f64 {
        let d0 = self.anchor.depth;
        let s = self.station_ns * shape(d, p.gamma, p.rho) / shape(d0, p.gamma, p.rho);
        d / ((d + LOOP_STATIONS - 1.0) * s) * 1e9
    }

    /// The reactor's capacity at depth `d`: its measured busy cost, batched alike, on its share
    /// of the core.
    fn reactor_iops(&self, p: Params, d: f64) -> f64 {
        let d0 = self.anchor.depth;
        let c = self.anchor.cost_ns * shape(d, p.gamma, p.rho_reactor)
            / shape(d0, p.gamma, p.rho_reactor);
        self.cpu_share / c * 1e9
    }

    fn iops_with(&self, p: Params, d: f64) -> f64 {
        self.loop_iops(p, d).min(self.reactor_iops(p, d))
    }

    /// The limit at unbounded depth.
    fn plateau_with(&self, p: Params) -> f64 {
        let d0 = self.anchor.depth;
        let looped = 1e9 * shape(d0, p.gamma, p.rho) / (p.rho * self.station_ns);
        let reactor = 1e9 * self.cpu_share * shape(d0, p.gamma, p.rho_reactor)
            / (p.rho_reactor * self.anchor.cost_ns);
        looped.min(reactor)
    }

    /// Expected IOPS, its range and latency at a total depth.
    pub fn predict(&self, depth: u32) -> Prediction {
        let d = f64::from(depth.max(1));
        let iops = self.iops_with(self.params(), d);
        let all: Vec<f64> = self
            .corners()
            .iter()
            .map(|p| self.iops_with(*p, d))
            .chain(std::iter::once(iops))
            .collect();
        Prediction {
            depth,
            iops,
            iops_range: (
                all.iter().copied().fold(f64::INFINITY, f64::min),
                all.iter().copied().fold(0.0, f64::max),
            ),
            latency_ns: d / iops * 1e9,
        }
    }

    /// The plateau (IOPS at unbounded depth).
    pub fn plateau(&self) -> f64 {
        1e9 / self.floor_ns
    }

    /// The knee: the smallest power of two whose modelled IOPS reach [`PLATEAU_SHARE`] of the
    /// plateau, capped at `max` (the target's limit, when known).
    pub fn knee(&self, max: Option<u32>) -> u32 {
        let cap = max.filter(|m| *m > 0).unwrap_or(MAX_DEPTH).min(MAX_DEPTH);
        let p = self.params();
        let goal = PLATEAU_SHARE * self.plateau_with(p);
        let mut d = 1u32;
        while d < cap && !(self.iops_with(p, f64::from(d)) >= goal) {
            d *= 2;
        }
        d.min(cap)
    }

    /// The depth from which batching stops paying (`ρ^(−1/γ)`), for the evidence.
    pub fn floor_depth(&self) -> f64 {
        FLOOR_SHARE.powf(-1.0 / self.exponent)
    }
}

/// The reactor's busy ns per I/O once batching has nothing left to share, from its busy cost
/// `cost_ns` with `depth` in flight on it (the calibrated exponent and reactor floor: at QD1
/// a fifth of the cost, unchanged from ~64 in flight).
pub fn reactor_floor_cost(cost_ns: f64, depth: f64) -> f64 {
    cost_ns * REACTOR_FLOOR_SHARE / shape(depth, BATCH_EXPONENT, REACTOR_FLOOR_SHARE)
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
    let mut m = DepthModel::fit(&obs, share)?;
    m.batch = w
        .reactor(index)
        .and_then(|r| r.ios_per_busy_poll)
        .filter(|b| b.is_finite() && *b > 0.0);
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::{QpairWindow, ReactorWindow, Window};

    /// A recorded brute-force sweep: depth → IOPS (median of its repeats), same target, same
    /// minute, 4 KiB random reads over loopback on the 2-core VM.
    struct Sweep {
        name: &'static str,
        points: [(u32, f64); 8],
    }

    const ISSUE_12: Sweep = Sweep {
        name: "issue 12",
        points: [
            (1, 116_000.0),
            (2, 195_000.0),
            (4, 308_000.0),
            (8, 444_000.0),
            (16, 588_000.0),
            (32, 821_000.0),
            (64, 858_000.0),
            (128, 640_000.0),
        ],
    };

    /// bench-results/scenarios-b71b2b8.json (one 4 s run per depth, no repeats).
    const B71B2B8: Sweep = Sweep {
        name: "b71b2b8",
        points: [
            (1, 97_179.1),
            (2, 173_202.4),
            (4, 276_306.6),
            (8, 391_265.1),
            (16, 548_668.0),
            (32, 765_383.3),
            (64, 646_425.4),
            (128, 948_927.7),
        ],
    };

    /// bench-results/scenarios-53d3282bfc41.json (3 repeats of 3 s each, median).
    const S53D3282: Sweep = Sweep {
        name: "53d3282bfc41",
        points: [
            (1, 110_884.0),
            (2, 185_781.2),
            (4, 294_367.1),
            (8, 435_632.5),
            (16, 585_462.7),
            (32, 843_801.7),
            (64, 997_481.9),
            (128, 960_881.4),
        ],
    };

    /// bench-results/scenarios-0e2f4cef2c6d.json (3 repeats of 3 s each, median).
    const S0E2F4CE: Sweep = Sweep {
        name: "0e2f4cef2c6d",
        points: [
            (1, 93_347.7),
            (2, 164_084.6),
            (4, 262_712.7),
            (8, 380_523.1),
            (16, 510_802.6),
            (32, 699_600.4),
            (64, 836_368.4),
            (128, 764_847.8),
        ],
    };

    impl Sweep {
        fn at(&self, d: u32) -> f64 {
            self.points
                .iter()
                .find(|x| x.0 == d)
                .map(|x| x.1)
                .expect("depth in the sweep")
        }

        fn best(&self) -> f64 {
            self.points.iter().map(|x| x.1).fold(0.0, f64::max)
        }
    }

    /// The reactor's busy share at QD1, 2 and 4 in the 0e2f4cef2c6d suite's depth windows (the
    /// sweeps do not record it): its recorded recommendations (740K, 1.07M and 1.69M at 32 from
    /// 100K, 151K and 251K IOPS, the earlier model with a batch ratio of 4.5) give 5.9, 4.2 and
    /// 2.6 µs busy per I/O.
    fn busy_share(depth: u32) -> f64 {
        match depth {
            1 => 0.59,
            2 => 0.63,
            _ => 0.66,
        }
    }

    /// One 1-second window of one reactor with one I/O qpair keeping `depth` in flight.
    fn window(depth: u32, iops: f64, busy: f64) -> Window {
        let mut w = Window {
            start_ns: 0,
            end_ns: 1_000_000_000,
            ..Window::default()
        };
        w.reactors.push(ReactorWindow {
            index: 0,
            iops,
            completions: iops as u64,
            busy_ratio: busy,
            ns_per_io: Some(busy / iops * 1e9),
            ios_per_busy_poll: Some(1.0),
            avg_outstanding: f64::from(depth),
            active_qpairs: 1,
            ..ReactorWindow::default()
        });
        w.qpairs.push(QpairWindow {
            reactor: 0,
            slot: 1,
            iops,
            completions: iops as u64,
            avg_outstanding: f64::from(depth),
            high_water: u64::from(depth),
            ..QpairWindow::default()
        });
        w.total.iops = iops;
        w.total.avg_outstanding = f64::from(depth);
        w
    }

    /// From a window at each of depths 1, 2 and 4 alone (what the suite's depth scenarios see),
    /// and from the three together: the knee's measured IOPS reach `share` of the sweep's best,
    /// and the prediction at the knee is within ±20 % of what the sweep measured there, inside
    /// its range.
    fn check(s: &Sweep, share: f64) {
        let mut cases: Vec<(String, Vec<Window>)> = [1, 2, 4]
            .iter()
            .map(|&d| (format!("QD{d}"), vec![window(d, s.at(d), busy_share(d))]))
            .collect();
        cases.push((
            "QD1, 2, 4".into(),
            [1, 2, 4]
                .iter()
                .map(|&d| window(d, s.at(d), busy_share(d)))
                .collect(),
        ));
        for (what, ws) in cases {
            let (last, history) = ws.split_last().expect("a window");
            let m = reactor_model(history, last, 0).expect("a model");
            assert_eq!(m.fitted, ws.len() > 1, "{} {what}", s.name);
            assert_eq!(m.batch, Some(1.0), "the window's batch is carried");
            let knee = m.knee(None);
            let got = s.at(knee.min(128));
            assert!(
                got >= share * s.best(),
                "{} from {what}: knee {knee} measured {got:.0}, best {:.0}",
                s.name,
                s.best()
            );
            let p = m.predict(knee);
            let err = p.iops / got - 1.0;
            assert!(
                err.abs() <= 0.20,
                "{} from {what}: predicted {:.0} at {knee}, measured {got:.0} ({:+.0} %)",
                s.name,
                p.iops,
                err * 100.0
            );
            assert!(
                p.iops_range.0 <= got && got <= p.iops_range.1,
                "{} from {what}: range {:?} misses {got:.0}",
                s.name,
                p.iops_range
            );
            // Latency is Little's law on the prediction: within the same ±20 % of the measured
            // round trip.
            let rtt = f64::from(knee) / got * 1e9;
            assert!(
                (p.latency_ns / rtt - 1.0).abs() <= 0.25,
                "{} from {what}: latency {:.0} vs {rtt:.0}",
                s.name,
                p.latency_ns
            );
        }
    }

    #[test]
    fn the_issue_12_sweep_knee_and_prediction_hold() {
        check(&ISSUE_12, 0.95);
    }

    #[test]
    fn the_53d3282_sweep_knee_and_prediction_hold() {
        check(&S53D3282, 0.95);
    }

    #[test]
    fn the_0e2f4ce_sweep_knee_and_prediction_hold() {
        check(&S0E2F4CE, 0.95);
    }

    /// b71b2b8's sweep ran each depth once: its 64 measured 646K, below its own 32 (765K) and
    /// below what the same run re-measured at 32 (863-878K); its best is 128 (949K). No depth
    /// the other sweeps support reaches 0.95 of that best; the model lands at 64 and its
    /// prediction there holds against the sweep's best (the plateau it aims at).
    #[test]
    fn the_b71b2b8_sweep_prediction_holds_against_its_plateau() {
        let s = &B71B2B8;
        for d in [1, 2, 4] {
            let w = window(d, s.at(d), busy_share(d));
            let m = reactor_model(&[], &w, 0).expect("a model");
            let knee = m.knee(None);
            assert!(knee >= 32, "QD{d}: knee {knee}");
            let p = m.predict(knee);
            assert!(
                (p.iops / s.best() - 1.0).abs() <= 0.20,
                "QD{d}: predicted {:.0} at {knee}, best {:.0}",
                p.iops,
                s.best()
            );
            assert!(
                p.iops >= s.at(32),
                "QD{d}: at {knee} the model expects {:.0}, less than 32 measured ({:.0})",
                p.iops,
                s.at(32)
            );
        }
    }

    #[test]
    fn the_old_fixed_divisor_answer_is_not_what_the_model_gives() {
        // The agent used to say depth 8 and ~606K from QD1 of the issue-12 sweep: 8 measured
        // 444K (0.52 of the best). The model goes past 8 and expects about what 8 measured.
        let w = window(1, ISSUE_12.at(1), busy_share(1));
        let m = reactor_model(&[], &w, 0).expect("a model");
        assert!(m.knee(None) > 8, "knee {}", m.knee(None));
        let at8 = m.predict(8).iops;
        assert!(
            (at8 / ISSUE_12.at(8) - 1.0).abs() <= 0.20,
            "at depth 8 the model says {at8:.0}, the sweep {:.0}",
            ISSUE_12.at(8)
        );
    }

    #[test]
    fn the_calibrated_exponent_and_floor_are_what_each_sweep_shows_alone() {
        // Leave-one-out in miniature: the loop station's cost from depth 2 to 32 of each sweep
        // fitted alone gives γ within the calibrated range.
        for s in [&ISSUE_12, &B71B2B8, &S53D3282, &S0E2F4CE] {
            let obs: Vec<Observation> = [2, 4, 8, 16, 32]
                .iter()
                .map(|&d| Observation {
                    depth: f64::from(d),
                    iops: s.at(d),
                    cost_ns: 1e9 / s.at(d),
                })
                .collect();
            let m = DepthModel::fit(&obs, 1.0).expect("a model");
            assert!(m.fitted, "{}", s.name);
            assert!(
                m.exponent >= BATCH_EXPONENT_RANGE.0 && m.exponent <= BATCH_EXPONENT_RANGE.1,
                "{}: γ {}",
                s.name,
                m.exponent
            );
            // And its floor: the lowest station cost at 64 or 128 over the QD1 one.
            let station = |d: u32| f64::from(d) / ((f64::from(d) + 1.0) * s.at(d));
            let floor = station(64).min(station(128)) / station(1);
            assert!(
                floor >= FLOOR_SHARE_RANGE.0 && floor <= FLOOR_SHARE_RANGE.1,
                "{}: floor share {floor}",
                s.name
            );
        }
    }

    #[test]
    fn windows_at_two_depths_fit_the_exponent_instead_of_the_calibration() {
        // A loop whose station cost falls as D^-0.6 (steeper than the calibrated 0.385):
        // windows at QD1 and QD8 recover the exponent; one window alone takes the calibration.
        let at = |d: f64| {
            let s = 4_000.0 * d.powf(-0.6);
            let iops = d / ((d + 1.0) * s) * 1e9;
            Observation {
                depth: d,
                iops,
                cost_ns: s,
            }
        };
        let m = DepthModel::fit(&[at(1.0), at(8.0)], 1.0).expect("model");
        assert!(m.fitted);
        assert!((m.exponent - 0.6).abs() < 1e-6, "γ {}", m.exponent);
        let one = DepthModel::fit(&[at(8.0)], 1.0).expect("model");
        assert!(!one.fitted);
        assert_eq!(one.exponent, BATCH_EXPONENT);
    }

    #[test]
    fn a_reactor_sharing_its_core_gets_only_its_share_of_the_plateau() {
        let w = window(1, 100_000.0, 0.59);
        let full = reactor_model(&[], &w, 0).expect("model");
        let o = observe(&w, w.reactor(0).expect("reactor")).expect("observation");
        let half = DepthModel::fit(&[o], 0.5).expect("model");
        // The reactor is the bound at QD1 here: half the core, half the reactor's plateau.
        assert!(
            half.plateau() < 0.6 * full.plateau(),
            "{} vs {}",
            half.plateau(),
            full.plateau()
        );
    }

    #[test]
    fn a_reactor_saturated_at_its_floor_has_no_deeper_knee() {
        // 128 in flight, 100 % busy: batching has nothing left to share.
        let w = window(128, 900_000.0, 1.0);
        let m = reactor_model(&[], &w, 0).expect("a model");
        assert!(m.knee(None) <= 128, "knee {}", m.knee(None));
        assert!(m.plateau() < 1.05 * 900_000.0, "plateau {}", m.plateau());
        // From 32 at 100 % busy the batches still grow: the model expects more at 64, as three
        // of the four sweeps measured (+5 %, +18 %, +20 %), but not twice as much.
        let w = window(32, 821_000.0, 1.0);
        let m = reactor_model(&[], &w, 0).expect("a model");
        let gain = m.predict(64).iops / 821_000.0;
        assert!(gain > 1.0 && gain < 1.3, "gain {gain}");
    }

    #[test]
    fn the_reactor_floor_cost_is_what_the_0e2f4ce_plateau_measured() {
        // 5.9 µs busy per I/O at QD1 (that suite's depth-1 window) → the plateau its sweep
        // measured at 64, 836K (1.196 µs per I/O, the reactor saturated).
        let floor = reactor_floor_cost(5_900.0, 1.0);
        assert!(
            (1e9 / floor / S0E2F4CE.at(64) - 1.0).abs() <= 0.05,
            "floor {floor} ns"
        );
        // Deep enough, nothing left to batch: the cost is the floor.
        assert_eq!(reactor_floor_cost(1_200.0, 128.0), 1_200.0);
        // Deeper windows are corrected less.
        assert!(reactor_floor_cost(2_000.0, 4.0) > reactor_floor_cost(2_000.0, 1.0));
    }

    #[test]
    fn the_targets_limit_caps_the_knee_and_garbage_gives_no_model() {
        let w = window(1, 100_000.0, 0.59);
        let m = reactor_model(&[], &w, 0).expect("a model");
        assert_eq!(m.knee(Some(4)), 4);
        let nan = Observation {
            depth: f64::NAN,
            iops: 1.0,
            cost_ns: 1.0,
        };
        assert!(DepthModel::fit(&[nan], 1.0).is_none());
        assert!(DepthModel::fit(&[], 1.0).is_none());
        let p = m.predict(64);
        assert!(p.iops_range.0 <= p.iops && p.iops <= p.iops_range.1);
    }
}
