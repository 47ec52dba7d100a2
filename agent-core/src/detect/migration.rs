//! Reactor migration: a reactor thread that moved between CPUs in the window, or may run on more
//! CPUs than its own core. A reactor owns its core's caches and its node's memory; a move costs
//! cold caches, possibly remote memory, and a core shared with whatever ran there.
//!
//! Cost: each move costs the reactor the refill of its caches on the new CPU
//! ([`REFILL_NS`]); the moves in the window times that, over the window, is the share of its
//! time lost, which costs IOPS as preempted time does ([`super::iops_lost`]). Time it then waits
//! for the new CPU is run-queue wait, costed by the preemption detector, not counted twice here.
//! An unpinned reactor that did not move costs nothing yet: an info note with the remedy.
//!
//! Stateless; pure.

use super::{costed, cpu_list, iops_lost, Context, Detector};
use crate::finding::{Cost, Evidence, Finding, FindingKind, Subject};
use crate::window::{ReactorWindow, Window};

/// Reactor time one migration costs: its working set (request pool, qpair state, socket
/// buffers: a few MiB) refilled from L3 or memory on the new CPU, 50-200 µs; the upper end,
/// because a move to another node refills from remote memory.
pub const REFILL_NS: f64 = 200_000.0;

/// The cost of a reactor's moves in a window of `seconds`.
pub fn cost(r: &ReactorWindow, seconds: f64) -> Cost {
    let moved = r.migrations.unwrap_or(0) as f64;
    let share = (moved * REFILL_NS / (seconds * 1e9)).min(1.0);
    let share = if share.is_finite() { share } else { 0.0 };
    Cost {
        iops_share: Some(iops_lost(share, r.busy_ratio)),
        latency_share: None,
        added_latency_ns: None,
        basis: format!(
            "{moved:.0} move(s) × ~{:.0} µs of cache refill each over the {seconds:.1} s window \
             (time waiting on the new CPU is counted as preemption)",
            REFILL_NS / 1e3
        ),
    }
}

/// Raises [`FindingKind::ReactorMigration`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Migration;

impl Detector for Migration {
    fn name(&self) -> &'static str {
        "migration"
    }

    fn observe(&mut self, w: &Window, _ctx: &Context<'_>, out: &mut Vec<Finding>) {
        for r in &w.reactors {
            let moved = r.migrations.unwrap_or(0);
            // Any migration of a pinned poll-mode thread is a fault: there is no threshold
            // above zero that a healthy reactor reaches.
            let unpinned = !r.allowed_cpus.is_empty()
                && (r.allowed_cpus.len() > 1 || !r.allowed_cpus.contains(&r.core));
            if moved == 0 && !unpinned {
                continue;
            }
            let mut evidence = vec![
                Evidence::new("migrations", moved as f64, ""),
                Evidence::new("allowed CPUs", r.allowed_cpus.len() as f64, ""),
                Evidence::new("configured core", f64::from(r.core), "cpu"),
            ];
            if let Some(c) = r.last_cpu {
                evidence.push(Evidence::new("last CPU", f64::from(c), "cpu"));
            }
            let allowed = cpu_list(&r.allowed_cpus);
            let (summary, confidence) =
                if moved > 0 {
                    (
                        format!(
                        "reactor {} moved between CPUs {moved} time(s) in {:.1} s (allowed CPUs \
                         {}, configured core {}): each move leaves its caches and may share a \
                         core; pin it (pin_reactors = true)",
                        r.index,
                        w.seconds(),
                        if allowed.is_empty() { "?".into() } else { allowed },
                        r.core
                    ),
                        (0.6 + 0.1 * moved as f64).min(1.0),
                    )
                } else {
                    (
                        format!(
                            "reactor {} may run on CPUs {allowed}, not only its core {}: the \
                         scheduler can move it at any time; pin it (pin_reactors = true)",
                            r.index, r.core
                        ),
                        0.7,
                    )
                };
            out.push(costed(
                FindingKind::ReactorMigration,
                cost(r, w.seconds()),
                Subject::Reactor { index: r.index },
                summary,
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

    fn observe(r: ReactorWindow) -> Vec<Finding> {
        let w = Window {
            end_ns: 1_000_000_000,
            reactors: vec![r],
            ..Window::default()
        };
        let (info, topo) = (TargetInfo::default(), Topology::default());
        super::super::observe_one(&mut Migration, &w, &info, &topo, &[])
    }

    fn reactor(moves: u64, busy: f64) -> ReactorWindow {
        ReactorWindow {
            core: 0,
            busy_ratio: busy,
            migrations: Some(moves),
            allowed_cpus: vec![0, 1],
            ..ReactorWindow::default()
        }
    }

    #[test]
    fn a_few_moves_cost_their_cache_refill_and_are_info() {
        let f = observe(reactor(3, 1.0));
        assert_eq!(f.len(), 1);
        let c = f[0].cost.as_ref().expect("cost");
        assert!(
            (c.iops_share.unwrap() - 3.0 * REFILL_NS / 1e9).abs() < 1e-12,
            "{c:?}"
        );
        assert_eq!(f[0].severity, Severity::Info);
        assert!(f[0].summary.contains("pin it"), "{}", f[0].summary);
    }

    #[test]
    fn a_reactor_bouncing_between_cpus_costs_a_warning_then_critical() {
        // 500 moves/s × 200 µs = 10 % of a saturated reactor's time.
        let f = observe(reactor(500, 1.0));
        assert!((f[0].cost.as_ref().unwrap().share() - 0.1).abs() < 1e-9);
        assert_eq!(f[0].severity, Severity::Warning);
        // The same on a reactor half idle: half of it is IOPS.
        let f = observe(reactor(500, 0.5));
        assert!((f[0].cost.as_ref().unwrap().share() - 0.05).abs() < 1e-9);
        let f = observe(reactor(2_000, 1.0));
        assert_eq!(f[0].severity, Severity::Critical, "40 % of the time");
    }

    #[test]
    fn unpinned_without_moves_costs_nothing() {
        let f = observe(reactor(0, 1.0));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].cost.as_ref().unwrap().share(), 0.0);
        assert_eq!(f[0].severity, Severity::Info);
    }
}
