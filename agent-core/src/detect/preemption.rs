//! Reactor preemption: another task takes CPU time from a reactor on its core. A poll-mode
//! reactor assumes it owns its core; every slice it loses is latency added to whatever arrived
//! meanwhile, and throughput lost when it is busy.
//!
//! Sources, best first: the eBPF `sched_switch` aggregate (`preempted_ratio`, with the intruder's
//! name), procfs schedstat run-queue wait (`runqueue_wait_ratio`), involuntary context switches.
//!
//! Severity follows from the cost (DESIGN §6): the share of the core's time others took is the
//! share of IOPS a saturated reactor loses (and, on a reactor with idle time, the latency its
//! requests waited while it was off the core). A non-isolated core's background (kdamond,
//! rcu_preempt, kworkers: 0.5-1 % of the time, a few hundred switches a second) costs under 2 %:
//! an info note with the remedy (isolcpus/nohz_full, IRQ affinity), never a warning. A hog that
//! takes a quarter of the core stays critical.
//! Stateless; pure.

use super::{costed, margin, pct, Context, Detector};
use crate::finding::{Cost, Evidence, Finding, FindingKind, Subject};
use crate::window::Window;

/// Share of the window the reactor was runnable but not running: 5 % is 50 ms per second in
/// which requests wait for a core the reactor should own; scheduler noise on a dedicated core
/// stays well under 1 %.
pub const STOLEN_RATIO: f64 = 0.05;

/// Stolen share at which the confidence is full: a quarter of the core gone (critical by cost).
pub const STOLEN_CRITICAL: f64 = 0.25;

/// Time one involuntary switch costs the reactor when no stolen-time measure exists: a kernel
/// worker's or timer's slice on a busy core (tens of µs); used only to size the cost of a
/// switches-only observation.
pub const SLICE_NS_ESTIMATE: f64 = 30_000.0;

/// Involuntary switches per second: a sole runnable thread on its core is switched out only by
/// kernel workers and timers (a few per second); 100/s means something else gets time slices
/// there (CFS slices are 3-4 ms, so a competitor shows up at 100-300/s).
pub const INVOLUNTARY_PER_S: f64 = 100.0;

/// Raises [`FindingKind::ReactorPreemption`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Preemption;

impl Detector for Preemption {
    fn name(&self) -> &'static str {
        "preemption"
    }

    fn observe(&mut self, w: &Window, _ctx: &Context<'_>, out: &mut Vec<Finding>) {
        for r in &w.reactors {
            if r.stalled {
                continue; // the stall detector owns a stopped reactor
            }
            // The best measure of stolen time available: eBPF, else schedstat.
            // The agent's own time on the core is its cost (the report's agent cost), never the
            // machine's fault: schedstat's wait includes it, the eBPF measure already not.
            let agent = r.agent_ratio.filter(|a| a.is_finite()).unwrap_or(0.0);
            let stolen = match (r.preempted_ratio, r.runqueue_wait_ratio) {
                (Some(a), Some(b)) => Some(a.max((b - agent).max(0.0))),
                (a, b) => a.or(b.map(|b| (b - agent).max(0.0))),
            }
            .filter(|s| s.is_finite());
            let inv = r.involuntary_switches_per_s.filter(|v| v.is_finite());
            let by_stolen = stolen.is_some_and(|s| s >= STOLEN_RATIO);
            let by_switches = inv.is_some_and(|v| v >= INVOLUNTARY_PER_S);
            if !by_stolen && !by_switches {
                continue;
            }
            let mut evidence = Vec::new();
            if let Some(s) = stolen {
                evidence.push(Evidence::new("time runnable, not running", s * 100.0, "%"));
            }
            if let Some(v) = inv {
                evidence.push(Evidence::new("involuntary switches", v, "/s"));
            }
            if let Some(p) = r.preemptions {
                evidence.push(Evidence::new("preemptions", p as f64, ""));
            }
            if let Some(c) = r.cpu_ratio {
                evidence.push(Evidence::new("thread on CPU", c * 100.0, "%"));
            }
            if agent > 0.0 {
                evidence.push(Evidence::new(
                    "agent's own share (its cost, not counted)",
                    agent * 100.0,
                    "%",
                ));
            }
            if let Some((pid, _)) = &r.top_intruder {
                evidence.push(Evidence::new("intruder pid", f64::from(*pid), "pid"));
            }
            evidence.push(Evidence::new("reactor IOPS", r.iops, "IOPS"));
            let who = match &r.top_intruder {
                Some((pid, comm)) => format!("mostly {comm} (pid {pid})"),
                None => "another task".into(),
            };
            let how_much = match (stolen, inv) {
                (Some(s), _) if by_stolen => format!("loses {} of its time", pct(s)),
                (_, Some(v)) => format!("is switched out {v:.0} times/s"),
                _ => "is preempted".into(),
            };
            // The cost: the share of the window others ran on the reactor's core. Without a
            // stolen-time measure, the switches at a typical background slice each.
            let share = stolen.unwrap_or_else(|| inv.unwrap_or(0.0) * SLICE_NS_ESTIMATE / 1e9);
            let saturated = r.busy_ratio >= 0.9;
            let cost = Cost {
                iops_share: Some(if saturated {
                    share
                } else {
                    share * r.busy_ratio
                }),
                latency_share: None,
                added_latency_ns: None,
                basis: if stolen.is_some() {
                    "time others ran on the reactor's core; a saturated reactor loses that share \
                     of its IOPS, one with idle time the busy part of it"
                        .into()
                } else {
                    "involuntary switches × a typical background slice (no stolen-time measure)"
                        .into()
                },
            };
            let confidence = stolen
                .map(|s| margin(s, STOLEN_RATIO, STOLEN_CRITICAL))
                .unwrap_or(0.0)
                .max(
                    inv.map(|v| margin(v, INVOLUNTARY_PER_S, 5.0 * INVOLUNTARY_PER_S) - 0.1)
                        .unwrap_or(0.0),
                );
            let background = cost.severity() == crate::finding::Severity::Info;
            let summary = if background {
                format!(
                    "reactor {} {how_much} on core {} to {who}: the background of a core the \
                     kernel also uses, costing about {:.1} % of its time; to remove it, isolate \
                     the core (isolcpus=, nohz_full=) and steer interrupts away from it (IRQ \
                     affinity)",
                    r.index,
                    r.core,
                    share * 100.0
                )
            } else {
                format!(
                    "reactor {} {how_much} on core {} to {who}, costing ~{:.0} % of its \
                     throughput: move that work off the core (isolate it, or give the reactor \
                     another core)",
                    r.index,
                    r.core,
                    cost.share() * 100.0
                )
            };
            out.push(costed(
                FindingKind::ReactorPreemption,
                cost,
                Subject::Reactor { index: r.index },
                summary,
                evidence,
                w,
                confidence,
            ));
        }
    }
}
