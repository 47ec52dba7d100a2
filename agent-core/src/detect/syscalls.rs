//! System calls on the fast path: a reactor that enters the kernel more than its transport
//! needs. Kernel NVMe/TCP needs per poll one receive per connection (or one `epoll_wait`) and,
//! when it has responses, one `writev` per connection with output: about two per *batch*, not
//! per I/O. Anything else per request (a synchronous read on the backend, `io_uring_enter` per
//! submission, a stray `clock_gettime` that is not vDSO, logging) shows up as syscalls growing
//! with IOPS beyond that budget. RDMA needs none on the I/O path.
//!
//! Cost: the excess calls × [`SYSCALL_NS`] each is reactor time spent in the kernel for
//! nothing; as a share of the window it is the IOPS a saturated reactor loses, and per I/O the
//! latency each request gains (against the reactor's mean latency: the share it explains). The
//! time per call is an estimate (the probes count calls, they do not time them), said in the
//! basis.
//!
//! Judged only when the kernel probes report syscalls (`raw_syscalls:sys_enter`). Stateless; pure.

use super::{costed, io_qpairs, margin, si, Context, Detector};
use crate::finding::{Cost, Evidence, Finding, FindingKind, Subject};
use crate::sample::Transport;
use crate::window::Window;

/// Syscalls per poll iteration NVMe/TCP legitimately makes beyond one receive per active I/O
/// connection: the batched `writev`, and the receive on the controller's admin connection
/// (polled like any other but rarely active, so not among the window's active qpairs).
pub const TCP_SYSCALLS_PER_POLL: f64 = 2.0;

/// Calls per second an RDMA-only reactor may make (slow path: connection events, timers).
pub const RDMA_SLOW_PATH_PER_S: f64 = 1000.0;

/// Excess syscalls per I/O above the budget before the reactor is flagged: half a call per
/// request is already a per-request kernel entry for every other I/O, 0.5-1 µs each here,
/// against ~2.5 µs of reactor time per I/O.
pub const EXCESS_PER_IO: f64 = 0.5;

/// Time one system call costs the calling thread (entry, exit, the work of a cheap call, the
/// cache and TLB disturbance after it): 0.5-1 µs on the machines this target runs on; the
/// middle of that.
pub const SYSCALL_NS: f64 = 750.0;

/// The cost of `excess_per_io` calls per I/O on a reactor serving `iops` with mean latency
/// `mean_latency_ns` (when known).
pub fn cost(excess_per_io: f64, iops: f64, mean_latency_ns: Option<f64>) -> Cost {
    let added = excess_per_io.max(0.0) * SYSCALL_NS;
    let time_share = (added * iops / 1e9).min(1.0);
    Cost {
        iops_share: Some(time_share),
        latency_share: mean_latency_ns
            .filter(|m| m.is_finite() && *m > 0.0)
            .map(|m| (added / m).min(1.0)),
        added_latency_ns: Some(added),
        basis: format!(
            "{excess_per_io:.1} excess call(s) per I/O × ~{SYSCALL_NS:.0} ns each (estimated: \
             calls are counted, not timed): the share of the reactor's time they take is the \
             IOPS a saturated reactor loses, and each request waits for them"
        ),
    }
}

/// Below this rate the per-I/O ratio is dominated by slow-path noise.
pub const MIN_IOPS: f64 = 1000.0;

/// Raises [`FindingKind::FastPathSyscalls`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Syscalls;

impl Detector for Syscalls {
    fn name(&self) -> &'static str {
        "syscalls"
    }

    fn observe(&mut self, w: &Window, ctx: &Context<'_>, out: &mut Vec<Finding>) {
        let tcp = ctx.info.listeners.is_empty()
            || ctx
                .info
                .listeners
                .iter()
                .any(|l| l.transport != Transport::Rdma);
        for r in &w.reactors {
            let Some(calls) = r.syscalls_per_s.filter(|v| v.is_finite()) else {
                continue;
            };
            if r.stalled || !(r.iops >= MIN_IOPS) {
                continue;
            }
            let budget = if tcp {
                // One receive per connection per poll (or one epoll_wait), plus the batched send.
                r.polls_per_s * (f64::from(io_qpairs(w, r.index).max(1)) + TCP_SYSCALLS_PER_POLL)
            } else {
                RDMA_SLOW_PATH_PER_S
            };
            let excess_per_io = (calls - budget) / r.iops;
            if !(excess_per_io >= EXCESS_PER_IO) {
                continue;
            }
            let per_io = calls / r.iops;
            let need = if tcp {
                "the ~2 per poll batch NVMe/TCP needs"
            } else {
                "none, as RDMA needs on the I/O path"
            };
            out.push(costed(
                FindingKind::FastPathSyscalls,
                cost(excess_per_io, r.iops, r.latency.mean()),
                Subject::Reactor { index: r.index },
                format!(
                    "reactor {} makes {per_io:.1} syscalls per I/O ({}/s at {} IOPS), \
                     {excess_per_io:.1} per I/O beyond {need}: something on the fast path enters \
                     the kernel per request",
                    r.index,
                    si(calls),
                    si(r.iops)
                ),
                vec![
                    Evidence::new("syscalls", calls, "/s"),
                    Evidence::new("syscalls per I/O", per_io, ""),
                    Evidence::new("excess per I/O", excess_per_io, ""),
                    Evidence::new("transport budget", budget, "/s"),
                    Evidence::new("polls", r.polls_per_s, "/s"),
                    Evidence::new("IOPS", r.iops, "IOPS"),
                ],
                w,
                margin(excess_per_io, EXCESS_PER_IO, 2.0),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::Severity;
    use crate::hist::Hist;
    use crate::sample::TargetInfo;
    use crate::topology::Topology;
    use crate::window::ReactorWindow;

    fn observe(iops: f64, calls_per_io: f64, latency_us: u64) -> Vec<Finding> {
        let mut latency = Hist::empty();
        latency.record(latency_us * 1000);
        let w = Window {
            end_ns: 1_000_000_000,
            reactors: vec![ReactorWindow {
                iops,
                busy_ratio: 1.0,
                polls_per_s: 10_000.0,
                latency,
                syscalls_per_s: Some(iops * calls_per_io + 30_000.0),
                ..ReactorWindow::default()
            }],
            ..Window::default()
        };
        let (info, topo) = (TargetInfo::default(), Topology::default());
        super::super::observe_one(&mut Syscalls, &w, &info, &topo, &[])
    }

    #[test]
    fn excess_calls_cost_their_time_share_of_the_reactor() {
        // 200K IOPS with 1 excess call each: 200K × 750 ns = 15 % of the reactor's time.
        let f = observe(200_000.0, 1.0, 100);
        assert_eq!(f.len(), 1, "{f:?}");
        let c = f[0].cost.as_ref().expect("cost");
        assert!((c.iops_share.unwrap() - 0.15).abs() < 1e-9, "{c:?}");
        assert_eq!(c.added_latency_ns, Some(750.0));
        assert!(c.basis.contains("estimated"), "{}", c.basis);
        assert_eq!(f[0].severity, Severity::Warning);
        // 3 per I/O at 200K: 45 % of the time, critical.
        let f = observe(200_000.0, 3.0, 100);
        assert_eq!(f[0].severity, Severity::Critical);
    }

    #[test]
    fn a_light_load_with_excess_calls_costs_little() {
        // 2K IOPS, 1 excess call each: 0.15 % of the time, 0.75 µs of a 100 µs round trip.
        let f = observe(2_000.0, 1.0, 100);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].cost.as_ref().unwrap().share() < 0.01);
        assert_eq!(f[0].severity, Severity::Info);
        // The same calls on a 10 µs round trip explain 7.5 % of it.
        let f = observe(2_000.0, 1.0, 10);
        assert_eq!(f[0].severity, Severity::Warning);
    }
}
