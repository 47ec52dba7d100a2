//! Reactor stall: a reactor whose last poll is older than the window and whose poll counter did
//! not move ([`crate::window::ReactorWindow::stalled`]). A poll-mode reactor never blocks, so a
//! stopped loop means a bug, a blocking call on the I/O path, or a thread stopped by a debugger
//! or the kernel; every qpair it owns is frozen with it.
//!
//! Cost: the reactor serves nothing, so the target loses the share of its IOPS this reactor
//! carried in the last window it polled (from the history; all of it when no earlier window
//! shows one, or nothing when it never carried I/O). Requests caught on it wait the whole
//! window: their latency is all stall. A stopped reactor that held no requests and carried no
//! I/O costs nothing yet (info: the next connection placed on it will hang).
//!
//! Stateless; pure.

use super::{costed, pct, qpairs_of, Context, Detector};
use crate::finding::{Cost, Evidence, Finding, FindingKind, Subject};
use crate::window::Window;

/// The stall's cost: the share of the target's IOPS the reactor carried before it stopped
/// (`history`: earlier windows, oldest first) and, with requests stuck on it, their whole wait.
pub fn cost(w: &Window, history: &[Window], index: u32, stuck: u64) -> Cost {
    // The latest earlier window in which this reactor still polled.
    let before = history.iter().rev().find_map(|h| {
        let r = h.reactor(index).filter(|r| !r.stalled)?;
        let total: f64 = h.reactors.iter().map(|r| r.iops).sum();
        (total > 0.0).then_some(r.iops / total)
    });
    let (iops_share, basis) = match before {
        Some(s) => (
            s,
            format!(
                "the reactor served {} of the target's IOPS in the last window it polled and \
                 serves none now",
                pct(s)
            ),
        ),
        None if stuck > 0 => (
            1.0,
            "no earlier window: the reactor's own IOPS are all lost, its requests frozen".into(),
        ),
        None => (
            0.0,
            "no earlier window shows I/O on it and no request is stuck on it".into(),
        ),
    };
    let frozen = stuck > 0;
    Cost {
        iops_share: Some(iops_share),
        latency_share: frozen.then_some(1.0),
        added_latency_ns: frozen.then(|| w.end_ns.saturating_sub(w.start_ns) as f64),
        basis,
    }
}

/// Raises [`FindingKind::ReactorStalled`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Stall;

impl Detector for Stall {
    fn name(&self) -> &'static str {
        "stall"
    }

    fn observe(&mut self, w: &Window, ctx: &Context<'_>, out: &mut Vec<Finding>) {
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
            out.push(costed(
                FindingKind::ReactorStalled,
                cost(w, ctx.history, r.index, stuck),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::Severity;
    use crate::sample::TargetInfo;
    use crate::topology::Topology;
    use crate::window::{QpairWindow, ReactorWindow};

    fn reactor(index: u32, iops: f64, stalled: bool) -> ReactorWindow {
        ReactorWindow {
            index,
            core: index,
            iops,
            stalled,
            ..ReactorWindow::default()
        }
    }

    fn window(reactors: Vec<ReactorWindow>, outstanding: u64) -> Window {
        Window {
            start_ns: 0,
            end_ns: 1_000_000_000,
            reactors,
            qpairs: vec![QpairWindow {
                reactor: 0,
                outstanding,
                ..QpairWindow::default()
            }],
            ..Window::default()
        }
    }

    fn observe(w: &Window, history: &[Window]) -> Vec<Finding> {
        let (info, topo) = (TargetInfo::default(), Topology::default());
        super::super::observe_one(&mut Stall, w, &info, &topo, history)
    }

    #[test]
    fn the_cost_is_the_share_of_iops_the_reactor_carried_before_it_stopped() {
        let before = window(
            vec![reactor(0, 30_000.0, false), reactor(1, 70_000.0, false)],
            4,
        );
        let now = window(vec![reactor(0, 0.0, true), reactor(1, 70_000.0, false)], 4);
        let f = observe(&now, &[before]);
        assert_eq!(f.len(), 1, "{f:?}");
        let c = f[0].cost.as_ref().expect("a stall's cost");
        assert!((c.iops_share.unwrap() - 0.3).abs() < 1e-9, "{c:?}");
        assert_eq!(c.latency_share, Some(1.0), "stuck requests wait the window");
        assert_eq!(c.added_latency_ns, Some(1e9));
        assert_eq!(f[0].severity, Severity::Critical, "30 % of IOPS gone");
    }

    #[test]
    fn a_small_reactor_stopping_with_requests_is_still_critical_by_their_wait() {
        let before = window(
            vec![reactor(0, 1_000.0, false), reactor(1, 99_000.0, false)],
            0,
        );
        let now = window(vec![reactor(0, 0.0, true), reactor(1, 99_000.0, false)], 2);
        let f = observe(&now, &[before]);
        let c = f[0].cost.as_ref().unwrap();
        assert!((c.iops_share.unwrap() - 0.01).abs() < 1e-9, "{c:?}");
        assert_eq!(f[0].severity, Severity::Critical, "its requests are frozen");
    }

    #[test]
    fn a_stopped_reactor_that_never_carried_io_and_holds_nothing_is_info() {
        let before = window(vec![reactor(0, 0.0, false), reactor(1, 50_000.0, false)], 0);
        let now = window(vec![reactor(0, 0.0, true), reactor(1, 50_000.0, false)], 0);
        let f = observe(&now, &[before]);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].cost.as_ref().unwrap().share(), 0.0);
        assert_eq!(f[0].severity, Severity::Info);
        // Without history but with requests stuck: all of its own IOPS.
        let f = observe(&window(vec![reactor(0, 0.0, true)], 8), &[]);
        assert_eq!(f[0].cost.as_ref().unwrap().iops_share, Some(1.0));
        assert_eq!(f[0].severity, Severity::Critical);
    }
}
