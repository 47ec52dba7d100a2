//! Idle polling burn: a reactor whose loop finds work in under [`IDLE_BUSY_RATIO`] of its time
//! while its thread is on CPU at least [`ON_CPU_RATIO`] of the window. That is the poll-mode
//! trade (latency for a core) paid without the traffic that justifies it; the target's `sleep`
//! idle policy gives the core back between bursts.
//!
//! Stateless; pure. Persistence over windows is the analyzer's job.

use super::{candidate, margin, pct, si, Context, Detector};
use crate::finding::{Evidence, Finding, FindingKind, Severity, Subject};
use crate::window::Window;

/// Busy share below which the reactor is "idle": 5 % of a core. QD1 at 47K IOPS already keeps
/// this target's reactor 15-30 % busy, so only a nearly idle target falls under it.
pub const IDLE_BUSY_RATIO: f64 = 0.05;

/// Runnable share (on CPU + waiting for it) at which the thread counts as spinning: a sleeping
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
        let policy = ctx.info.settings.idle.as_deref().unwrap_or("unknown");
        for r in &w.reactors {
            let Some(cpu) = r.cpu_ratio else { continue };
            let runnable = cpu + r.runqueue_wait_ratio.unwrap_or(0.0);
            if r.stalled || !(r.busy_ratio < IDLE_BUSY_RATIO) || !(runnable >= ON_CPU_RATIO) {
                continue;
            }
            let advice = if policy == "sleep" {
                "the sleep policy is set but never engages: lower after_idle_polls"
            } else {
                "the sleep idle policy would give the core back between bursts"
            };
            out.push(candidate(
                FindingKind::IdlePollingBurn,
                Severity::Info,
                Subject::Reactor { index: r.index },
                format!(
                    "reactor {} burns core {} ({} on CPU) polling while only {} of its loop does \
                     work ({} IOPS); {advice}",
                    r.index,
                    r.core,
                    pct(cpu),
                    pct(r.busy_ratio),
                    si(r.iops)
                ),
                vec![
                    Evidence::new("reactor busy", r.busy_ratio * 100.0, "%"),
                    Evidence::new("thread on CPU", cpu * 100.0, "%"),
                    Evidence::new("thread runnable", runnable * 100.0, "%"),
                    Evidence::new("IOPS", r.iops, "IOPS"),
                    Evidence::new("polls", r.polls_per_s, "/s"),
                ],
                w,
                margin(r.busy_ratio, IDLE_BUSY_RATIO, 0.0).min(margin(runnable, ON_CPU_RATIO, 1.0)),
            ));
        }
    }
}
