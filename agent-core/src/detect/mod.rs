//! Detectors: one module each, every one a small state machine over windows.
//!
//! Contract: [`Detector::observe`] looks at one [`Window`] (with the [`Topology`], the
//! [`TargetInfo`] and the windows before it) and pushes a *candidate* [`Finding`] for each
//! subject whose condition holds in this window, with the evidence from this window and a
//! `confidence` in 0..1 that reflects the margin over its threshold. It never decides alone that
//! a fault is real: the [`crate::analyzer::Analyzer`] raises a finding only after the same
//! (kind, subject) held in several consecutive windows (DESIGN §6: never from one noisy window).
//!
//! Every threshold is a named constant in its detector's module with the reason for its value.
//! Thresholds are set from what the fault does to a poll-mode NVMe-oF target, not fitted to the
//! fixtures: the fixture tests replay recordings of healthy targets too, and those must stay
//! silent.
//!
//! Pure: no I/O, no clock; state only from the windows seen.

// Conditions are written `!(x >= threshold)` on purpose: a NaN (a window with nothing in it)
// must fail a condition, never pass it.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use crate::finding::{Cost, Evidence, Finding, FindingKind, Severity, Subject};
use crate::sample::TargetInfo;
use crate::topology::Topology;
use crate::window::{QpairWindow, ReactorWindow, Window};

pub mod idle;
pub mod link;
pub mod migration;
pub mod numa;
pub mod preemption;
pub mod spdk_buffers;
pub mod spdk_cpu;
pub mod spdk_idle;
pub mod spdk_poll_groups;
pub mod stall;
pub mod starvation;
pub mod syscalls;
pub mod tail;

/// What a detector sees besides the current window.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// What the target is.
    pub info: &'a TargetInfo,
    /// The machine.
    pub topology: &'a Topology,
    /// Earlier windows, oldest first (bounded; the current one is not included).
    pub history: &'a [Window],
}

/// A fault detector.
pub trait Detector: Send {
    /// Stable name (`numa`, `starvation`…).
    fn name(&self) -> &'static str;

    /// Looks at one window and pushes candidate findings.
    fn observe(&mut self, window: &Window, ctx: &Context<'_>, out: &mut Vec<Finding>);
}

/// The standard set, in report order.
pub fn default_detectors() -> Vec<Box<dyn Detector>> {
    vec![
        Box::new(stall::Stall),
        Box::new(numa::Numa),
        Box::new(starvation::Starvation),
        Box::new(link::Link),
        Box::new(preemption::Preemption),
        Box::new(migration::Migration),
        Box::new(syscalls::Syscalls),
        Box::new(idle::Idle),
        // SPDK targets only (they act on `Window::spdk`).
        Box::new(spdk_poll_groups::SpdkPollGroups),
        Box::new(spdk_buffers::SpdkBuffers),
        Box::new(spdk_idle::SpdkIdle),
        Box::new(spdk_cpu::SpdkCpu),
        Box::new(tail::Tail),
    ]
}

/// A candidate finding for this window. Evidence that is not a finite number is dropped (a
/// report never shows NaN), and a confidence that is not finite becomes 0.5.
pub(crate) fn candidate(
    kind: FindingKind,
    severity: Severity,
    subject: Subject,
    summary: String,
    evidence: Vec<Evidence>,
    w: &Window,
    confidence: f64,
) -> Finding {
    Finding {
        kind,
        severity,
        subject,
        summary,
        evidence: evidence
            .into_iter()
            .filter(|e| e.value.is_finite())
            .collect(),
        windows: 1,
        since_ns: w.start_ns,
        until_ns: w.end_ns,
        confidence: if confidence.is_finite() {
            confidence.clamp(0.0, 1.0)
        } else {
            0.5
        },
        cost: None,
    }
}

/// A candidate whose severity follows from its measured cost (DESIGN §6): the cost is kept on
/// the finding and shown first among its evidence.
#[allow(clippy::too_many_arguments)]
pub(crate) fn costed(
    kind: FindingKind,
    cost: Cost,
    subject: Subject,
    summary: String,
    evidence: Vec<Evidence>,
    w: &Window,
    confidence: f64,
) -> Finding {
    let severity = cost.severity();
    let mut all = cost.evidence();
    all.extend(evidence);
    let mut f = candidate(kind, severity, subject, summary, all, w, confidence);
    f.cost = Some(cost);
    f
}

/// A candidate whose cost could not be measured from the window: the cost carries no share,
/// only its `basis` (which says why and what would measure it), and the severity is the
/// detector's explicit rule for that case (`Cost::severity` would read an unmeasured cost as
/// free, which it is not).
#[allow(clippy::too_many_arguments)]
pub(crate) fn unmeasured(
    kind: FindingKind,
    severity: Severity,
    basis: String,
    subject: Subject,
    summary: String,
    evidence: Vec<Evidence>,
    w: &Window,
    confidence: f64,
) -> Finding {
    let mut f = candidate(kind, severity, subject, summary, evidence, w, confidence);
    f.cost = Some(Cost {
        basis: format!("not measured: {basis}"),
        ..Cost::default()
    });
    f
}

/// Reactor busy share from which it counts as saturated: a loop busy 90 % of the time has no
/// headroom a window's noise does not eat.
pub const SATURATED_BUSY: f64 = 0.9;

/// The share of a reactor's IOPS lost when it loses `time_share` of its core's time: all of it
/// on a saturated reactor (that time would have served requests), the busy part of it on one
/// with idle time (the rest fell on idle polls and shows as latency, not throughput).
pub(crate) fn iops_lost(time_share: f64, busy_ratio: f64) -> f64 {
    let busy = if busy_ratio.is_finite() {
        busy_ratio.clamp(0.0, 1.0)
    } else {
        1.0
    };
    let s = time_share.clamp(0.0, 1.0);
    if busy >= SATURATED_BUSY {
        s
    } else {
        s * busy
    }
}

/// Confidence from the margin over a threshold: 0.5 at `threshold`, rising linearly to 1.0 at
/// `full` (which may lie below the threshold for "less than" conditions).
pub(crate) fn margin(value: f64, threshold: f64, full: f64) -> f64 {
    let t = (value - threshold) / (full - threshold);
    if t.is_finite() {
        0.5 + 0.5 * t.clamp(0.0, 1.0)
    } else {
        0.5
    }
}

/// The qpairs of a reactor in a window.
pub(crate) fn qpairs_of<'w>(
    w: &'w Window,
    reactor: u32,
) -> impl Iterator<Item = &'w QpairWindow> + 'w {
    w.qpairs.iter().filter(move |q| q.reactor == reactor)
}

/// Completions in a window for a qpair to count as an I/O qpair: the admin queue (keep-alives,
/// a waiting AER) stays under it.
pub const IO_QPAIR_COMPLETIONS: u64 = 100;

/// I/O qpairs of a reactor in a window.
pub(crate) fn io_qpairs(w: &Window, reactor: u32) -> u32 {
    qpairs_of(w, reactor)
        .filter(|q| q.completions >= IO_QPAIR_COMPLETIONS)
        .count() as u32
}

/// Whether a reactor carries I/O in this window (an admin connection alone does not count).
pub(crate) fn carries_io(r: &ReactorWindow) -> bool {
    r.completions >= IO_QPAIR_COMPLETIONS
}

/// `47K`, `1.2M`, `850`: IOPS and rates for summaries.
pub(crate) fn si(v: f64) -> String {
    if !v.is_finite() {
        return "?".into();
    }
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}K", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}K", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// A ratio as a percentage for summaries (`37 %`).
pub(crate) fn pct(r: f64) -> String {
    if r.is_finite() {
        format!("{:.0} %", r * 100.0)
    } else {
        "? %".into()
    }
}

/// Nanoseconds as microseconds for summaries (`21 µs`, `2.3 µs`).
pub(crate) fn us(ns: f64) -> String {
    if !ns.is_finite() {
        return "? µs".into();
    }
    let u = ns / 1e3;
    if u >= 10.0 {
        format!("{u:.0} µs")
    } else {
        format!("{u:.1} µs")
    }
}

/// A CPU list in the target's notation: `2-3`, `0,2,4`, `8-11,16`.
pub fn cpu_list(cpus: &[u32]) -> String {
    let mut v = cpus.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let start = v[i];
        let mut end = start;
        while i + 1 < v.len() && v[i + 1] == end + 1 {
            i += 1;
            end = v[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

/// Runs one detector over one window (unit tests of the detectors).
#[cfg(test)]
pub(crate) fn observe_one(
    d: &mut dyn Detector,
    w: &Window,
    info: &TargetInfo,
    topology: &Topology,
    history: &[Window],
) -> Vec<Finding> {
    let ctx = Context {
        info,
        topology,
        history,
    };
    let mut out = Vec::new();
    d.observe(w, &ctx, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_collapse_ranges() {
        assert_eq!(cpu_list(&[3, 2, 0, 5, 4]), "0,2-5");
        assert_eq!(cpu_list(&[7]), "7");
        assert_eq!(cpu_list(&[]), "");
    }

    #[test]
    fn margin_is_half_at_the_threshold_and_full_at_the_far_end() {
        assert_eq!(margin(0.05, 0.05, 0.25), 0.5);
        assert_eq!(margin(0.25, 0.05, 0.25), 1.0);
        assert_eq!(margin(1.0, 4.0, 1.0), 1.0, "below-threshold conditions");
        assert_eq!(margin(f64::NAN, 1.0, 2.0), 0.5);
        assert_eq!(margin(1.0, 1.0, 1.0), 0.5, "degenerate range");
    }

    #[test]
    fn summaries_format_rates_compactly() {
        assert_eq!(si(47_000.0), "47K");
        assert_eq!(si(1_250_000.0), "1.25M");
        assert_eq!(si(3_400.0), "3.4K");
        assert_eq!(us(21_400.0), "21 µs");
        assert_eq!(us(2_300.0), "2.3 µs");
        assert_eq!(pct(0.153), "15 %");
    }
}
