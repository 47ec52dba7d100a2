//! Is an SPDK reactor's thread really running? Two views that need no kernel probe:
//!
//! - **SPDK's ticks against /proc** (spdk#2461, #2875): SPDK adds every loop iteration's TSC
//!   span to busy or idle, so time its thread spent off the CPU lands in those counts. When
//!   busy + idle cover the wall time but /proc shows the thread on CPU for much less, the
//!   difference is time it did not run, and SPDK's busy share overstates the work.
//! - **Gaps in the trace**: requests ready for the reactor's next step (received, buffered,
//!   executed, ready to complete) and no entry at all for milliseconds: the reactor thread was
//!   not running. A trace is a sample (the ring's last entries), so this is said with a
//!   confidence that reflects it; with the kernel probes attached, the preemption detector
//!   measures the same directly.
//!
//! Both raise [`FindingKind::ReactorPreemption`] on the reactor, costed as preempted time is:
//! the share of the window the thread did not run costs a reactor carrying I/O that share of
//! its IOPS when saturated, the busy part of it otherwise ([`super::iops_lost`]); a reactor
//! without I/O loses nothing (info). A trace gap is time requests were ready and nobody served
//! them: its share of the traced time is work held back, measured on the sample the trace is
//! (said in the basis). Stateless; pure.

use super::{carries_io, costed, iops_lost, margin, pct, us, Context, Detector};
use crate::finding::{Cost, Evidence, Finding, FindingKind, Subject};
use crate::window::Window;

/// Share of the window SPDK accounted (busy + idle over wall time) for the cross-check to
/// apply: a poll-mode reactor accounts for all of it.
pub const ACCOUNTED: f64 = 0.9;

/// Accounted share minus /proc's on-CPU share from which the thread was off CPU: /proc counts in
/// jiffies (10 ms), so one second carries ±1 % of noise, and interrupts are charged to whoever
/// runs; 15 % is well above both.
pub const OFF_CPU_SHARE: f64 = 0.15;

/// Share of the traced time spent in stalls from which the trace says the reactor stops.
pub const STALL_SHARE: f64 = 0.05;

/// Stalled share from which the confidence grows to its ceiling (at twice this): a fifth of the
/// time with requests ready and nobody serving them is no sampling accident. (The severity
/// follows from the stalled share itself, as the cost.)
pub const STALL_WARN_SHARE: f64 = 0.2;

/// Confidence ceiling of a conclusion from a trace sample: it covers milliseconds of the window.
pub const TRACE_CONFIDENCE: f64 = 0.6;

/// Raises [`FindingKind::ReactorPreemption`] from SPDK's own figures.
#[derive(Clone, Copy, Debug, Default)]
pub struct SpdkCpu;

impl Detector for SpdkCpu {
    fn name(&self) -> &'static str {
        "spdk_cpu"
    }

    fn observe(&mut self, w: &Window, _ctx: &Context<'_>, out: &mut Vec<Finding>) {
        let Some(s) = &w.spdk else { return };
        for r in &s.reactors {
            let common = w.reactor(r.lcore);
            let io = common.is_some_and(carries_io);
            let Some(cpu) = r.proc_cpu_ratio else {
                continue;
            };
            if r.in_interrupt || !(r.accounted_ratio >= ACCOUNTED) {
                continue;
            }
            let off = r.accounted_ratio.min(1.0) - cpu;
            if !(off >= OFF_CPU_SHARE) {
                continue;
            }
            let cost = Cost {
                iops_share: Some(if io {
                    iops_lost(off, r.busy_ratio)
                } else {
                    0.0
                }),
                latency_share: None,
                added_latency_ns: None,
                basis: if io {
                    "the share of the window SPDK accounted but the thread was off CPU; a \
                     saturated reactor loses that share of its IOPS, one with idle time the \
                     busy part of it"
                        .into()
                } else {
                    "the reactor carries no I/O: the time it did not run cost nothing".into()
                },
            };
            out.push(costed(
                FindingKind::ReactorPreemption,
                cost,
                Subject::Reactor { index: r.lcore },
                format!(
                    "SPDK accounts {} of the window to reactor {} (busy {}), but /proc shows its \
                     thread on CPU only {}: {} of the time it did not run, and SPDK's busy share \
                     counts it as work",
                    pct(r.accounted_ratio),
                    r.lcore,
                    pct(r.busy_ratio),
                    pct(cpu),
                    pct(off)
                ),
                vec![
                    Evidence::new(
                        "SPDK busy + idle / wall time",
                        r.accounted_ratio * 100.0,
                        "%",
                    ),
                    Evidence::new("SPDK busy", r.busy_ratio * 100.0, "%"),
                    Evidence::new("thread on CPU (/proc)", cpu * 100.0, "%"),
                    Evidence::new("off CPU", off * 100.0, "%"),
                ],
                w,
                margin(off, OFF_CPU_SHARE, 0.5),
            ));
        }
        let Some(t) = &s.trace else { return };
        let (Some((longest, ready)), Some(lcore)) = (t.longest_stall, t.stall_lcore) else {
            return;
        };
        if t.covered_ns == 0 {
            return;
        }
        let share = t.stall_ns as f64 / t.covered_ns as f64;
        let Some(common) = w.reactor(lcore) else {
            return;
        };
        if !carries_io(common) || !(share >= STALL_SHARE) {
            return;
        }
        let spdk = s.reactors.iter().find(|r| r.lcore == lcore);
        let mut evidence = vec![
            Evidence::new(
                "longest trace gap with requests ready",
                longest as f64 / 1e3,
                "us",
            ),
            Evidence::new("requests ready during it", f64::from(ready), ""),
            Evidence::new("stalled share of the traced time", share * 100.0, "%"),
            Evidence::new("traced time", t.covered_ns as f64 / 1e3, "us"),
            Evidence::new("SPDK busy", common.busy_ratio * 100.0, "%"),
        ];
        if let Some(n) = common.ns_per_io {
            evidence.push(Evidence::new("SPDK busy time per I/O", n / 1e3, "us"));
        }
        if let Some(r) = spdk {
            evidence.push(Evidence::new(
                "SPDK busy + idle / wall time",
                r.accounted_ratio * 100.0,
                "%",
            ));
            if let Some(c) = r.proc_cpu_ratio {
                evidence.push(Evidence::new("thread on CPU (/proc)", c * 100.0, "%"));
            }
        }
        let ceiling = if t.snapshot {
            TRACE_CONFIDENCE - 0.1
        } else {
            TRACE_CONFIDENCE
        };
        let basis = if t.snapshot {
            "a trace snapshot taken after the run, standing for the whole load"
        } else {
            "the trace's latest entries"
        };
        let cost = Cost {
            iops_share: Some(share.min(1.0)),
            latency_share: None,
            added_latency_ns: None,
            basis: format!(
                "{} of the traced time requests were ready and the reactor did not run: that \
                 share of its work was held back (sampled: {basis})",
                pct(share)
            ),
        };
        out.push(costed(
            FindingKind::ReactorPreemption,
            cost,
            Subject::Reactor { index: lcore },
            format!(
                "reactor {lcore}'s trace stops for {} while {ready} request(s) wait for its next \
                 step ({} of the {} traced): its thread was not running — another task on core {} \
                 or the hypervisor. From {basis}, without kernel probes: attach them (run as root) \
                 to name the intruder",
                us(longest as f64),
                pct(share),
                us(t.covered_ns as f64),
                common.core
            ),
            evidence,
            w,
            margin(share, STALL_SHARE, STALL_WARN_SHARE * 2.0).min(ceiling),
        ));
    }
}
