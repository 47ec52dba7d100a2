//! Tail latency: the requests above p99 share a cause. From the window's tail attribution
//! ([`crate::requests`]: request records joined with the kernel events that overlapped them),
//! the cause that explains the most of their delay is named with its counts and the delay they
//! carried ("412 of 1,020 requests above p99 overlapped a preemption of reactor 0 by
//! kworker/0:1; they waited 3.1 ms more on average").
//!
//! A cause is named when it overlapped at least [`MIN_REQUESTS`] slow requests, added at least
//! [`ADDED_MIN_NS`] and [`ADDED_MIN_MEDIANS`] medians to them on average, and explains at least
//! [`CAUSE_SHARE`] of the tail's excess latency (the slow requests' time over the median). The
//! background of a non-isolated core (kworker, rcu_preempt, kdamond: slices of 5-50 µs) adds
//! tens of µs and raises nothing; a hog's CFS slice (~3 ms) does. A cause must also recur
//! ([`MIN_EVENTS`] events in the window): one isolated event (a single TCP retransmit on a
//! healthy loopback run stalled a depth-64 queue for 6 ms once in 7 s) is the run's own noise,
//! visible in the tail attribution but not a finding. The cost is the share of the
//! tail's excess the cause explains, with the delay it added.
//! Stateless; pure.

use super::{costed, margin, si, us, Context, Detector};
use crate::finding::{Cost, Evidence, Finding, FindingKind, Subject};
use crate::requests::{KernelCause, TailAttribution, TailCause};
use crate::window::Window;

/// Slow requests a cause must have overlapped: fewer is chance.
pub const MIN_REQUESTS: u64 = 5;

/// Events of a cause in the window: fewer is an isolated incident, not a cause of the tail
/// (a hog's bursts every 100 ms give ~10 a second; the steady hog's slices ~20).
pub const MIN_EVENTS: u64 = 3;

/// Share of the tail's excess latency a cause must explain to be *the* cause.
pub const CAUSE_SHARE: f64 = 0.25;

/// Mean delay a cause must add to the slow requests it overlapped: 100 µs is a flash read's
/// whole service time; the background of a non-isolated core adds tens of µs.
pub const ADDED_MIN_NS: f64 = 100_000.0;

/// ...and in medians of the window: a delay within a few medians is the distribution's own tail.
pub const ADDED_MIN_MEDIANS: f64 = 5.0;

/// Windows a cause is judged over: the current one and the ones before it. The record reader
/// reads a share of each second at high rates (`agent::collect::records`), so a cause recurring
/// slower than its slices (a hog's 3 ms every 250 ms) is caught in some windows only; summed over
/// a few seconds it is judged on everything seen, and a finding needs a few such windows in a
/// row to be raised.
pub const HORIZON_WINDOWS: usize = 5;

/// Raises [`FindingKind::TailLatency`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Tail;

/// The tail attribution of several windows summed: slow requests, their excess, and per cause
/// (kind, who, reactor) the requests, events and latency explained; the median and threshold
/// are the latest window's, the stages and the slowest request the latest that has them.
struct Horizon {
    windows: usize,
    slow: u64,
    excess_ns: f64,
    median_ns: u64,
    threshold_ns: u64,
    stages: Vec<crate::requests::StageShare>,
    max: Option<crate::requests::SlowRequest>,
    causes: Vec<TailCause>,
}

impl Horizon {
    /// `tails` oldest first; `None` without slow requests or excess.
    fn of(tails: &[&TailAttribution]) -> Option<Horizon> {
        let last = tails.last()?;
        let mut h = Horizon {
            windows: tails.len(),
            slow: 0,
            excess_ns: 0.0,
            median_ns: last.median_ns,
            threshold_ns: last.threshold_ns,
            stages: last.stages.clone(),
            max: None,
            causes: Vec::new(),
        };
        for t in tails {
            h.slow += t.slow;
            h.excess_ns += t.excess_ns;
            if t.max.is_some() {
                h.max.clone_from(&t.max);
            }
            for c in &t.causes {
                match h
                    .causes
                    .iter_mut()
                    .find(|x| x.cause == c.cause && x.reactor == c.reactor)
                {
                    Some(x) => {
                        x.requests += c.requests;
                        x.events += c.events;
                        x.explained_ns += c.explained_ns;
                    }
                    None => h.causes.push(c.clone()),
                }
            }
        }
        for c in &mut h.causes {
            c.added_ns = c.explained_ns / c.requests.max(1) as f64;
        }
        h.causes
            .sort_by(|a, b| b.explained_ns.total_cmp(&a.explained_ns));
        (h.slow > 0 && h.excess_ns > 0.0).then_some(h)
    }
}

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

    fn observe(&mut self, w: &Window, ctx: &Context<'_>, out: &mut Vec<Finding>) {
        // The horizon (the current window may have no tail of its own: between the record
        // reader's slices a window can pass without records, and it must not break the streak
        // of a cause seen in the windows before it): this window and the ones before it, up to HORIZON_WINDOWS.
        let tails: Vec<&TailAttribution> = ctx
            .history
            .iter()
            .rev()
            .take(HORIZON_WINDOWS - 1)
            .chain(std::iter::once(w))
            .filter_map(|w| w.requests.as_ref().and_then(|r| r.tail.as_ref()))
            .collect();
        let Some(h) = Horizon::of(&tails) else {
            return;
        };
        let mut named: Vec<Subject> = Vec::new();
        for c in &h.causes {
            let c = &c;
            let t = &h;
            let explained = c.explained_ns / t.excess_ns;
            if c.requests < MIN_REQUESTS
                || c.events < MIN_EVENTS
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
                Evidence::new("windows judged", t.windows as f64, ""),
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
                     average ({} events in {}{}): {}",
                    si(c.requests as f64),
                    si(t.slow as f64),
                    us(t.threshold_ns as f64),
                    what(c),
                    us(c.added_ns),
                    c.events,
                    if t.windows > 1 {
                        format!("the last {} windows", t.windows)
                    } else {
                        "the window".to_string()
                    },
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requests::{build, KernelSpan, RequestBatch, RequestRecord};
    use crate::sample::TargetInfo;

    fn rec(start: u64, total: u64) -> RequestRecord {
        RequestRecord {
            reactor: 0,
            qpair: 1,
            cid: 0,
            start_ns: start,
            total_ns: total,
            stages: vec![("tcp.backend_completed".into(), total)],
        }
    }

    /// A window whose tail attribution comes from `records` and `spans`.
    fn window_of(records: Vec<RequestRecord>, spans: &[KernelSpan]) -> Window {
        let batch = RequestBatch {
            completed: records.len() as u64,
            policy: "all".into(),
            records,
            ..RequestBatch::default()
        };
        let span_refs: Vec<&KernelSpan> = spans.iter().collect();
        Window {
            requests: build(&[&batch], &span_refs, None, &TargetInfo::default()),
            ..Window::default()
        }
    }

    /// What the detector says of `w` after `history`.
    fn judge(history: &[Window], w: &Window) -> Vec<Finding> {
        let info = TargetInfo::default();
        let topo = crate::topology::Topology::default();
        let ctx = Context {
            info: &info,
            topology: &topo,
            history,
        };
        let mut out = Vec::new();
        Tail.observe(w, &ctx, &mut out);
        out
    }

    /// What the detector says of `w`, alone.
    fn findings(w: &Window) -> Vec<Finding> {
        judge(&[], w)
    }

    fn preempted(comm: &str, pid: u32, start: u64, len: u64) -> KernelSpan {
        KernelSpan {
            cause: KernelCause::Preemption {
                pid,
                comm: comm.into(),
            },
            reactor: Some(0),
            start_ns: start,
            end_ns: start + len,
        }
    }

    /// One isolated event, however slow (a single TCP retransmit stalling a depth-64 queue for
    /// 6 ms), is not the tail's cause; the same stall recurring three times is.
    #[test]
    fn an_isolated_event_is_not_named_a_recurring_one_is() {
        let run = |stalls: u64| {
            let mut records: Vec<RequestRecord> =
                (0..10_000u64).map(|i| rec(i * 100_000, 10_000)).collect();
            let mut spans = Vec::new();
            for k in 0..stalls {
                let i = (k * 3000 + 100) as usize;
                let at = records[i].start_ns;
                spans.push(KernelSpan {
                    cause: KernelCause::Retransmit,
                    reactor: None,
                    start_ns: at + 5_000,
                    end_ns: at + 6_000_000,
                });
                for j in 0..64 {
                    records[i + j] = rec(records[i + j].start_ns, 6_010_000);
                }
            }
            let w = window_of(records, &spans);
            findings(&w)
        };
        let once = run(1);
        assert!(once.is_empty(), "one retransmit: {once:?}");
        let thrice = run(3);
        assert_eq!(thrice.len(), 1, "{thrice:?}");
        assert!(
            thrice[0].summary.contains("retransmit"),
            "{}",
            thrice[0].summary
        );
    }

    /// A hog caught in one window of five (the record reader's slice held one burst) is
    /// judged over the horizon: named in that window and in the next ones while it is within
    /// the horizon, with the summed counts; one isolated event in the horizon is still not named.
    #[test]
    fn a_cause_caught_in_one_window_is_judged_over_the_horizon() {
        let quiet = || {
            window_of(
                (0..1000u64)
                    .map(|i| rec(i * 100_000, 10_000 + i % 7))
                    .collect(),
                &[],
            )
        };
        let caught = |bursts: u64| {
            let mut records: Vec<RequestRecord> = (0..1000u64)
                .map(|i| rec(i * 100_000, 10_000 + i % 7))
                .collect();
            let mut spans = Vec::new();
            for k in 0..bursts {
                let i = (k * 200 + 50) as usize;
                let at = records[i].start_ns;
                spans.push(preempted("hog", 77, at + 1_000, 3_000_000));
                for j in 0..8 {
                    records[i + j] = rec(records[i + j].start_ns, 3_010_000);
                }
            }
            window_of(records, &spans)
        };
        let mut history: Vec<Window> = vec![quiet(), quiet(), caught(3)];
        let mut named = Vec::new();
        for _ in 0..(HORIZON_WINDOWS + 2) {
            let w = quiet();
            named.push(judge(&history, &w).len());
            history.push(w);
        }
        // The catch is 1, 2, ... windows back: named while within the horizon (the current
        // window plus HORIZON_WINDOWS - 1 before it), then no more.
        assert_eq!(named[..HORIZON_WINDOWS - 1], vec![1; HORIZON_WINDOWS - 1]);
        assert_eq!(named[HORIZON_WINDOWS - 1..], vec![0; 3]);
        let f = judge(&history[..3], &quiet());
        assert!(
            f[0].summary.contains("24 of") && f[0].summary.contains("by hog"),
            "{}",
            f[0].summary
        );
        assert!(
            f[0].summary.contains("3 events in the last 4 windows"),
            "{}",
            f[0].summary
        );
        // One burst in the horizon is an isolated event.
        assert!(judge(&[quiet(), caught(1)], &quiet()).is_empty());
        // A window without records (the reader paused through it) still judges the horizon.
        let unread = Window::default();
        assert_eq!(judge(&history[..3], &unread).len(), 1);
        assert!(judge(&[], &unread).is_empty());
    }

    /// A bursty hog's window: the background (a kworker preempting the reactor often, 400 µs
    /// each time) overlaps more slow requests than the hog's few 3 ms bursts do, but the hog
    /// explains most of the tail: it is the one named for the reactor (sorting causes by
    /// requests named the kworker).
    #[test]
    fn the_cause_explaining_most_of_the_tail_is_named_not_the_most_frequent() {
        let mut records: Vec<RequestRecord> =
            (0..10_000u64).map(|i| rec(i * 100_000, 10_000)).collect();
        let mut spans = Vec::new();
        // 30 background preemptions, one slow request each (+400 µs).
        for k in 0..30u64 {
            let i = (k * 300 + 7) as usize;
            let at = records[i].start_ns;
            records[i] = rec(at, 410_000);
            spans.push(preempted("kworker/0:1", 55, at + 5_000, 400_000));
        }
        // 3 hog bursts, each delaying 3 requests by 3 ms.
        for k in 0..3u64 {
            let i = (k * 3000 + 100) as usize;
            let at = records[i].start_ns;
            spans.push(preempted("ringside-hog", 4242, at + 5_000, 3_000_000));
            for j in 0..3 {
                let r = &mut records[i + j];
                *r = rec(at, 3_010_000);
            }
        }
        let w = window_of(records, &spans);
        let t = w
            .requests
            .as_ref()
            .and_then(|r| r.tail.as_ref())
            .expect("a tail");
        let kworker = t
            .causes
            .iter()
            .find(|c| c.cause.who().starts_with("kworker"))
            .expect("the kworker is a cause");
        let hog = t
            .causes
            .iter()
            .find(|c| c.cause.who().starts_with("ringside-hog"))
            .expect("the hog is a cause");
        assert!(kworker.requests > hog.requests, "{:?}", t.causes);
        assert!(kworker.explained_ns / t.excess_ns >= CAUSE_SHARE, "{:?}", t);
        let out = findings(&w);
        assert_eq!(out.len(), 1, "one finding per subject: {out:?}");
        let f = &out[0];
        assert_eq!(f.subject, Subject::Reactor { index: 0 });
        assert!(f.summary.contains("ringside-hog"), "{}", f.summary);
        assert!(f.summary.starts_with("9 of "), "{}", f.summary);
    }
}
