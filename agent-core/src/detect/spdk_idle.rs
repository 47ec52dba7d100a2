//! An SPDK reactor that should sleep in interrupt mode but spins, and the poller that keeps it
//! awake (spdk#3350, #3552): in interrupt mode an idle reactor waits in epoll; if its thread
//! still burns CPU while SPDK's own accounting finds almost no work, a poller (a timed one with
//! a short period, or an active one that never registered an interrupt) keeps waking it.
//!
//! From `framework_get_reactors` (`in_interrupt`, busy/idle ticks, /proc CPU time) and
//! `thread_get_pollers` (run counts per poller). Stateless; pure. Poll-mode reactors spin by
//! design: the common idle detector judges those.
//!
//! Cost: as for the common idle detector ([`super::idle::burn_cost`]): no IOPS or latency, the
//! core; always info.

use super::{costed, idle::burn_cost, margin, pct, Context, Detector};
use crate::finding::{Evidence, Finding, FindingKind, Subject};
use crate::window::Window;

/// SPDK busy share under which an interrupt-mode reactor has (almost) nothing to do.
pub const IDLE_BUSY: f64 = 0.05;

/// CPU share (from /proc) at which an interrupt-mode reactor counts as spinning: an idle one
/// sleeping in epoll uses a few %.
pub const SPINNING_CPU: f64 = 0.5;

/// Raises [`FindingKind::IdlePollingBurn`] for interrupt-mode SPDK reactors.
#[derive(Clone, Copy, Debug, Default)]
pub struct SpdkIdle;

impl Detector for SpdkIdle {
    fn name(&self) -> &'static str {
        "spdk_idle"
    }

    fn observe(&mut self, w: &Window, _ctx: &Context<'_>, out: &mut Vec<Finding>) {
        let Some(s) = &w.spdk else { return };
        for r in s.reactors.iter().filter(|r| r.in_interrupt) {
            let cpu = r
                .proc_cpu_ratio
                .or_else(|| w.reactor(r.lcore).and_then(|x| x.cpu_ratio));
            let Some(cpu) = cpu else { continue };
            if !(r.busy_ratio < IDLE_BUSY) || !(cpu >= SPINNING_CPU) {
                continue;
            }
            let top = s
                .pollers
                .iter()
                .filter(|p| r.threads.contains(&p.thread))
                .max_by(|a, b| a.runs_per_s.total_cmp(&b.runs_per_s));
            let who = top
                .map(|p| {
                    format!(
                        "poller {} on thread {} runs {:.0} times/s ({:.0} with work) and keeps it awake",
                        p.name, p.thread, p.runs_per_s, p.busy_per_s
                    )
                })
                .unwrap_or_else(|| "no poller ran on its threads: its thread spins outside SPDK's pollers".into());
            let mut evidence = vec![
                Evidence::new("SPDK busy", r.busy_ratio * 100.0, "%"),
                Evidence::new("thread on CPU (/proc)", cpu * 100.0, "%"),
            ];
            if let Some(p) = top {
                evidence.push(Evidence::new("top poller runs", p.runs_per_s, "/s"));
                evidence.push(Evidence::new("top poller busy runs", p.busy_per_s, "/s"));
            }
            out.push(costed(
                FindingKind::IdlePollingBurn,
                burn_cost(r.busy_ratio, cpu),
                Subject::Reactor { index: r.lcore },
                format!(
                    "reactor {} is in interrupt mode but its thread is {} on CPU while SPDK finds \
                     work in {} of its time: {who}",
                    r.lcore,
                    pct(cpu),
                    pct(r.busy_ratio)
                ),
                evidence,
                w,
                margin(cpu, SPINNING_CPU, 1.0),
            ));
        }
    }
}
