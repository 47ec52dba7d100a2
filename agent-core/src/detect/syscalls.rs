//! System calls on the fast path: a reactor that enters the kernel more than its transport
//! needs. Kernel NVMe/TCP needs per poll one receive per connection (or one `epoll_wait`) and,
//! when it has responses, one `writev` per connection with output: about two per *batch*, not
//! per I/O. Anything else per request (a synchronous read on the backend, `io_uring_enter` per
//! submission, a stray `clock_gettime` that is not vDSO, logging) shows up as syscalls growing
//! with IOPS beyond that budget. RDMA needs none on the I/O path.
//!
//! Judged only when the kernel probes report syscalls (`raw_syscalls:sys_enter`). Stateless; pure.

use super::{candidate, io_qpairs, margin, si, Context, Detector};
use crate::finding::{Evidence, Finding, FindingKind, Severity, Subject};
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
            out.push(candidate(
                FindingKind::FastPathSyscalls,
                if excess_per_io >= 2.0 {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
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
