//! Tail latency: the requests above p99 share a cause. From the window's tail attribution
//! ([`crate::requests`]: request records joined with the kernel events that overlapped them),
//! the cause that touched the most slow requests is named with its counts and the delay they
//! carried ("412 of 1,020 requests above p99 overlapped a preemption of reactor 0 by
//! kworker/0:1; they waited 3.1 ms more on average").
//!
//! A cause is named when it overlapped at least [`MIN_REQUESTS`] slow requests, added at least
//! [`ADDED_MIN_NS`] and [`ADDED_MIN_MEDIANS`] medians to them on average, and explains at least
//! [`CAUSE_SHARE`] of the tail's excess latency (the slow requests' time over the median). The
//! background of a non-isolated core (kworker, rcu_preempt, kdamond: slices of 5-50 µs) adds
//! tens of µs and raises nothing; a hog's CFS slice (~3 ms) does. The cost is the share of the
//! tail's excess the cause explains, with the delay it added.
//! Stateless; pure.

use super::{costed, margin, si, us, Context, Detector};
use crate::finding::{Cost, Evidence, Finding, FindingKind, Subject};
use crate::requests::{KernelCause, TailCause};
use crate::window::Window;

/// Slow requests a cause must have overlapped: fewer is chance.
pub const MIN_REQUESTS: u64 = 5;

/// Share of the tail's excess latency a cause must explain to be *the* cause.
pub const CAUSE_SHARE: f64 = 0.25;

/// Mean delay a cause must add to the slow requests it overlapped: 100 µs is a flash read's
/// whole service time; the background of a non-isolated core adds tens of µs.
pub const ADDED_MIN_NS: f64 = 100_000.0;

/// ...and in medians of the window: a delay within a few medians is the distribution's own tail.
pub const ADDED_MIN_MEDIANS: f64 = 5.0;

/// Raises [`FindingKind::TailLatency`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Tail;

fn subject_of(c: &TailCause) -> Subject {
    match c.reactor {
        Some(index) => Subject::Reactor { index },
        None => match &c.cause {
            KernelCause::Block { device } => Subject::Device {
                name: device.clone(),
            },
            _ => Subject::Target,
        },
    }
}

fn what(c: &TailCause) -> String {
    let on = c
        .reactor
        .map(|r| format!(" of reactor {r}"))
        .unwrap_or_default();
    match &c.cause {
        KernelCause::Preemption { .. } => format!("a preemption{on} by {}", c.cause.who()),
        KernelCause::Irq { .. } => format!("a hard interrupt ({}){on}", c.cause.who()),
        KernelCause::Softirq { .. } => format!("a soft interrupt ({}){on}", c.cause.who()),
        KernelCause::Block { device } => format!("a slow block request of {device}"),
        KernelCause::Retransmit => "a TCP retransmit".into(),
    }
}

fn remedy(c: &KernelCause) -> &'static str {
    match c {
        KernelCause::Preemption { .. } => {
            "move that task off the reactor's core (isolcpus=/nohz_full=, or its own affinity)"
        }
        KernelCause::Irq { .. } | KernelCause::Softirq { .. } => {
            "steer interrupts away from the reactor's core (IRQ affinity, RPS/XPS)"
        }
        KernelCause::Block { .. } => {
            "the device itself is slow at times (check its queue and health)"
        }
        KernelCause::Retransmit => "the network drops packets (check the link and its queues)",
    }
}

impl Detector for Tail {
    fn name(&self) -> &'static str {
        "tail"
    }

    fn observe(&mut self, w: &Window, _ctx: &Context<'_>, out: &mut Vec<Finding>) {
        let Some(t) = w.requests.as_ref().and_then(|r| r.tail.as_ref()) else {
            return;
        };
        if t.slow == 0 || !(t.excess_ns > 0.0) {
            return;
        }
        let mut named: Vec<Subject> = Vec::new();
        for c in &t.causes {
            let explained = c.explained_ns / t.excess_ns;
            if c.requests < MIN_REQUESTS
                || !(explained >= CAUSE_SHARE)
                || !(c.added_ns >= ADDED_MIN_NS)
                || !(c.added_ns >= ADDED_MIN_MEDIANS * t.median_ns as f64)
            {
                continue;
            }
            let subject = subject_of(c);
            if named.contains(&subject) {
                continue; // the strongest cause per subject
            }
            named.push(subject.clone());
            let stage = t
                .stages
                .iter()
                .max_by(|a, b| {
                    (a.slow_mean_ns - a.typical_mean_ns)
                        .total_cmp(&(b.slow_mean_ns - b.typical_mean_ns))
                })
                .map(|s| s.name.clone());
            let cost = Cost {
                iops_share: None,
                latency_share: Some(explained.min(1.0)),
                added_latency_ns: Some(c.added_ns),
                basis: "share of the tail's excess latency (slow requests' time over the median) \
                        the overlapped requests carried"
                    .into(),
            };
            let mut evidence = vec![
                Evidence::new("requests above p99 (records)", t.slow as f64, ""),
                Evidence::new("of them overlapped", c.requests as f64, ""),
                Evidence::new("their added delay (mean)", c.added_ns / 1e3, "us"),
                Evidence::new("events of this cause", c.events as f64, ""),
                Evidence::new("p99 threshold", t.threshold_ns as f64 / 1e3, "us"),
                Evidence::new("median", t.median_ns as f64 / 1e3, "us"),
            ];
            if let KernelCause::Preemption { pid, .. } = &c.cause {
                evidence.push(Evidence::new("intruder pid", f64::from(*pid), "pid"));
            }
            if let Some(m) = &t.max {
                evidence.push(Evidence::new(
                    "slowest request",
                    m.request.total_ns as f64 / 1e3,
                    "us",
                ));
            }
            out.push(costed(
                FindingKind::TailLatency,
                cost,
                subject,
                format!(
                    "{} of {} requests above p99 ({}) overlapped {}; they waited {} more on \
                     average ({} events in the window{}): {}",
                    si(c.requests as f64),
                    si(t.slow as f64),
                    us(t.threshold_ns as f64),
                    what(c),
                    us(c.added_ns),
                    c.events,
                    stage
                        .map(|s| format!(", the time went in stage {s}"))
                        .unwrap_or_default(),
                    remedy(&c.cause)
                ),
                evidence,
                w,
                margin(explained, CAUSE_SHARE, 0.9),
            ));
        }
    }
}
