//! Reactor stall: a reactor whose last poll is older than the window and whose poll counter did
//! not move ([`crate::window::ReactorWindow::stalled`]). A poll-mode reactor never blocks, so a
//! stopped loop means a bug, a blocking call on the I/O path, or a thread stopped by a debugger
//! or the kernel; every qpair it owns is frozen with it.
//!
//! Stateless; pure.

use super::{candidate, qpairs_of, Context, Detector};
use crate::finding::{Evidence, Finding, FindingKind, Severity, Subject};
use crate::window::Window;

/// Raises [`FindingKind::ReactorStalled`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Stall;

impl Detector for Stall {
    fn name(&self) -> &'static str {
        "stall"
    }

    fn observe(&mut self, w: &Window, _ctx: &Context<'_>, out: &mut Vec<Finding>) {
        for r in w.reactors.iter().filter(|r| r.stalled) {
            let stuck: u64 = qpairs_of(w, r.index)
                .map(|q| q.outstanding)
                .fold(0u64, u64::saturating_add);
            let qpairs = qpairs_of(w, r.index).count();
            let mut evidence = vec![
                Evidence::new("polls", r.polls_per_s, "/s"),
                Evidence::new("completions", r.completions as f64, ""),
                Evidence::new("requests outstanding", stuck as f64, ""),
                Evidence::new("qpairs frozen", qpairs as f64, ""),
                Evidence::new("window", w.seconds(), "s"),
            ];
            if let Some(c) = r.cpu_ratio {
                evidence.push(Evidence::new("thread on CPU", c * 100.0, "%"));
            }
            let how = match r.cpu_ratio {
                Some(c) if c > 0.5 => "its thread still runs: it is looping outside the poll loop",
                Some(_) => "its thread is off CPU: it is blocked or stopped",
                None => {
                    "it is blocked, stopped, looping outside the poll loop, or the target exited"
                }
            };
            out.push(candidate(
                FindingKind::ReactorStalled,
                Severity::Critical,
                Subject::Reactor { index: r.index },
                format!(
                    "reactor {} (core {}) has not polled for the whole {:.1} s window with {} \
                     request(s) outstanding on {} qpair(s); {how}",
                    r.index,
                    r.core,
                    w.seconds(),
                    stuck,
                    qpairs
                ),
                evidence,
                w,
                1.0,
            ));
        }
    }
}
