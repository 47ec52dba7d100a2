//! Reactor migration: a reactor thread that moved between CPUs in the window, or may run on more
//! CPUs than its own core. A reactor owns its core's caches and its node's memory; a move costs
//! cold caches, possibly remote memory, and a core shared with whatever ran there.
//!
//! Stateless; pure.

use super::{candidate, cpu_list, Context, Detector};
use crate::finding::{Evidence, Finding, FindingKind, Severity, Subject};
use crate::window::Window;

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
            let (severity, summary, confidence) =
                if moved > 0 {
                    (
                        Severity::Warning,
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
                        Severity::Info,
                        format!(
                            "reactor {} may run on CPUs {allowed}, not only its core {}: the \
                         scheduler can move it at any time; pin it (pin_reactors = true)",
                            r.index, r.core
                        ),
                        0.7,
                    )
                };
            out.push(candidate(
                FindingKind::ReactorMigration,
                severity,
                Subject::Reactor { index: r.index },
                summary,
                evidence,
                w,
                confidence,
            ));
        }
    }
}
