//! Idle polling burn: a reactor whose loop finds work in under [`IDLE_BUSY_RATIO`] of its time
//! while its thread is on CPU at least [`ON_CPU_RATIO`] of the window. That is the poll-mode
//! trade (latency for a core) paid without the traffic that justifies it; the target's `sleep`
//! idle policy gives the core back between bursts.
//!
//! Cost: none in IOPS or latency (the reactor has more than enough time for what arrives); the
//! price is the core, [`burn_cost`] says how much of it. So the finding is always info, with
//! the remedy.
//!
//! Stateless; pure. Persistence over windows is the analyzer's job.

use super::{costed, margin, pct, si, Context, Detector};
use crate::finding::{Cost, Evidence, Finding, FindingKind, Subject};
use crate::sample::IdlePolicy;
use crate::window::Window;

/// Busy share below which the reactor is "idle": 5 % of a core. QD1 at 47K IOPS already keeps
/// this target's reactor 15-30 % busy, so only a nearly idle target falls under it.
pub const IDLE_BUSY_RATIO: f64 = 0.05;

/// Runnable share (on CPU + waiting for it; without thread statistics a `poll` policy implies
/// ~100 %) at which the thread counts as spinning: a sleeping
/// (epoll) reactor is runnable a few % of the time when idle; a polling one ~100 %, even when
/// another task shares its core (then it waits instead of running). 90 % leaves room for
/// interrupts and accounting skew.
pub const ON_CPU_RATIO: f64 = 0.9;

/// The cost of a reactor polling with little work: no IOPS lost, no latency added (it has time
/// to spare for every request); the core it spins on is the price, `on_cpu - busy` of it.
/// Shared with the SPDK idle detector.
pub fn burn_cost(busy: f64, on_cpu: f64) -> Cost {
    Cost {
        iops_share: Some(0.0),
        latency_share: Some(0.0),
        added_latency_ns: None,
        basis: format!(
            "costs no IOPS or latency (the loop has time to spare); its price is {} of a core \
             polled without work",
            pct((on_cpu - busy).max(0.0))
        ),
    }
}

/// Raises [`FindingKind::IdlePollingBurn`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Idle;

impl Detector for Idle {
    fn name(&self) -> &'static str {
        "idle"
    }

    fn observe(&mut self, w: &Window, ctx: &Context<'_>, out: &mut Vec<Finding>) {
        let policy = ctx.info.settings.idle.unwrap_or_default();
        for r in &w.reactors {
            // Without thread statistics the policy says it: a `poll` reactor spins by design.
            let (cpu, runnable, inferred) = match r.cpu_ratio {
                Some(c) => (c, c + r.runqueue_wait_ratio.unwrap_or(0.0), false),
                None if policy == IdlePolicy::Poll => (1.0, 1.0, true),
                None => continue,
            };
            if r.stalled || !(r.busy_ratio < IDLE_BUSY_RATIO) || !(runnable >= ON_CPU_RATIO) {
                continue;
            }
            let advice = if policy == IdlePolicy::Sleep {
                "the sleep policy is set but never engages: lower after_idle_polls"
            } else {
                "the sleep idle policy would give the core back between bursts"
            };
            let on_cpu = if inferred {
                "spinning under the poll policy".to_string()
            } else {
                format!("{} on CPU", pct(cpu))
            };
            let mut evidence = vec![
                Evidence::new("reactor busy", r.busy_ratio * 100.0, "%"),
                Evidence::new("IOPS", r.iops, "IOPS"),
                Evidence::new("polls", r.polls_per_s, "/s"),
            ];
            if !inferred {
                evidence.push(Evidence::new("thread on CPU", cpu * 100.0, "%"));
                evidence.push(Evidence::new("thread runnable", runnable * 100.0, "%"));
            }
            // Measured on-CPU time is surer than what the policy implies.
            let confidence =
                margin(r.busy_ratio, IDLE_BUSY_RATIO, 0.0).min(margin(runnable, ON_CPU_RATIO, 1.0))
                    * if inferred { 0.8 } else { 1.0 };
            out.push(costed(
                FindingKind::IdlePollingBurn,
                burn_cost(r.busy_ratio, cpu),
                Subject::Reactor { index: r.index },
                format!(
                    "reactor {} burns core {} ({on_cpu}) polling while only {} of its loop does \
                     work ({} IOPS); {advice}",
                    r.index,
                    r.core,
                    pct(r.busy_ratio),
                    si(r.iops)
                ),
                evidence,
                w,
                confidence,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::Severity;
    use crate::sample::TargetInfo;
    use crate::topology::Topology;
    use crate::window::ReactorWindow;

    #[test]
    fn an_idle_spinning_reactor_costs_no_iops_only_its_core_and_is_info() {
        let w = Window {
            end_ns: 1_000_000_000,
            reactors: vec![ReactorWindow {
                busy_ratio: 0.01,
                iops: 200.0,
                cpu_ratio: Some(0.99),
                ..ReactorWindow::default()
            }],
            ..Window::default()
        };
        let (info, topo) = (TargetInfo::default(), Topology::default());
        let f = super::super::observe_one(&mut Idle, &w, &info, &topo, &[]);
        assert_eq!(f.len(), 1, "{f:?}");
        let c = f[0].cost.as_ref().expect("cost");
        assert_eq!((c.iops_share, c.latency_share), (Some(0.0), Some(0.0)));
        assert!(c.basis.contains("98 % of a core"), "{}", c.basis);
        assert_eq!(f[0].severity, Severity::Info);
        assert_eq!(f[0].severity, c.severity());
    }
}
