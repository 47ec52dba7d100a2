//! Idle polling burn: a reactor whose loop finds work in under [`IDLE_BUSY_RATIO`] of its time
//! while its thread is on CPU at least [`ON_CPU_RATIO`] of the window. That is the poll-mode
//! trade (latency for a core) paid without the traffic that justifies it; the target's `sleep`
//! idle policy gives the core back between bursts.
//!
//! Stateless; pure. Persistence over windows is the analyzer's job.

use super::{candidate, margin, pct, si, Context, Detector};
use crate::finding::{Evidence, Finding, FindingKind, Severity, Subject};
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
            out.push(candidate(
                FindingKind::IdlePollingBurn,
                Severity::Info,
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
