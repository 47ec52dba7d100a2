//! Requests, not only counters (DESIGN §6): the request records the ring collector rebuilt and
//! the kernel events the kernel collector streamed, joined on the one clock.
//!
//! Per window: per-stage latency per qpair from the records, and **tail attribution**: for the
//! requests above the window's p99 (and its slowest one), which stage took their time and which
//! kernel events (a preemption of the reactor, an interrupt on its core, a block request of a
//! namespace's device, a retransmit) overlapped them, with how many requests each cause touched
//! and the delay they carried over the median.
//!
//! Bounded: a collector keeps at most a cap of records per sample (the slowest ones first, then
//! an even sample of the rest) and says so in [`RequestBatch`]; the p99 threshold comes from the
//! counters' latency histogram of *all* requests when there is one, so sampling never moves it.
//!
//! Pure: no I/O, no clock.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::sample::TargetInfo;

/// One request as the ring recorded it, its times converted to CLOCK_MONOTONIC ns.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Reactor index.
    pub reactor: u32,
    /// Qpair slot within the reactor.
    pub qpair: u16,
    /// Command id.
    pub cid: u32,
    /// First tracepoint (ns).
    pub start_ns: u64,
    /// First to last tracepoint (ns).
    pub total_ns: u64,
    /// Stages in order: (name of the tracepoint that ended the stage, ns since the previous one).
    pub stages: Vec<(Arc<str>, u64)>,
}

impl RequestRecord {
    /// End (ns).
    pub fn end_ns(&self) -> u64 {
        self.start_ns.saturating_add(self.total_ns)
    }
}

/// The records one sample carries, and how they were bounded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestBatch {
    /// Requests the collector rebuilt since the previous sample.
    pub completed: u64,
    /// Requests rebuilt but not kept (over the cap).
    pub dropped: u64,
    /// Ring records overwritten before the collector read them (the ring lapped it).
    pub lost_records: u64,
    /// How the kept records were chosen (`all`, `slowest 512 + every 8th`).
    pub policy: String,
    /// The kept records.
    pub records: Vec<RequestRecord>,
}

/// What a kernel event was.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum KernelCause {
    /// The reactor thread was runnable while another task ran on its core.
    Preemption {
        /// The task that ran.
        pid: u32,
        /// Its name.
        comm: String,
    },
    /// A hard interrupt on the reactor's core.
    Irq {
        /// Handler or vector name.
        name: String,
    },
    /// A soft interrupt on the reactor's core.
    Softirq {
        /// `NET_RX`, `TIMER`…
        name: String,
    },
    /// A block request of a namespace's device.
    Block {
        /// Device name.
        device: String,
    },
    /// A TCP retransmit on a listener's connection.
    Retransmit,
}

impl KernelCause {
    /// Short kind name (`preemption`, `irq`, `softirq`, `block`, `retransmit`).
    pub fn kind(&self) -> &'static str {
        match self {
            KernelCause::Preemption { .. } => "preemption",
            KernelCause::Irq { .. } => "irq",
            KernelCause::Softirq { .. } => "softirq",
            KernelCause::Block { .. } => "block",
            KernelCause::Retransmit => "retransmit",
        }
    }

    /// Who or what (`kworker/0:1 (pid 812)`, `NET_RX`, `loop3`).
    pub fn who(&self) -> String {
        match self {
            KernelCause::Preemption { pid, comm } => format!("{comm} (pid {pid})"),
            KernelCause::Irq { name } | KernelCause::Softirq { name } => name.clone(),
            KernelCause::Block { device } => device.clone(),
            KernelCause::Retransmit => "a listener connection".into(),
        }
    }
}

/// One kernel event with a duration, on the one clock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelSpan {
    /// What.
    pub cause: KernelCause,
    /// The reactor it touched (preemption of its thread, interrupt on its core), `None` when it
    /// concerns the target as a whole (a device, a connection).
    pub reactor: Option<u32>,
    /// Start (ns).
    pub start_ns: u64,
    /// End (ns); equal to the start for an instant (a retransmit).
    pub end_ns: u64,
}

/// Latency of one stage over a set of requests.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StageStat {
    /// Stage name.
    pub name: String,
    /// Mean (ns).
    pub mean_ns: f64,
    /// Median (ns).
    pub p50_ns: u64,
    /// 99th percentile (ns).
    pub p99_ns: u64,
}

/// Per-stage latency of one qpair from its records.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QpairStages {
    /// Reactor index.
    pub reactor: u32,
    /// Slot.
    pub slot: u16,
    /// Records.
    pub requests: u64,
    /// Stages in order.
    pub stages: Vec<StageStat>,
}

/// A stage's mean time in the slow requests against the others.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StageShare {
    /// Stage name.
    pub name: String,
    /// Mean ns in the requests above p99.
    pub slow_mean_ns: f64,
    /// Mean ns in the requests at or under p99.
    pub typical_mean_ns: f64,
}

/// One cause of the tail.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TailCause {
    /// What.
    pub cause: KernelCause,
    /// The reactor, when the cause concerns one.
    pub reactor: Option<u32>,
    /// Requests above p99 it overlapped.
    pub requests: u64,
    /// Events of this cause in the window.
    pub events: u64,
    /// Mean delay it added to the slow requests it overlapped (ns): per request, its time over
    /// the median, at most the time the cause's events overlapped it.
    pub added_ns: f64,
    /// Sum of that delay over the overlapped slow requests (ns): the latency it explains.
    pub explained_ns: f64,
}

/// A slow request with what overlapped it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlowRequest {
    /// The record.
    pub request: RequestRecord,
    /// The kernel events that overlapped it.
    pub overlapped: Vec<KernelSpan>,
}

/// The tail of one window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TailAttribution {
    /// The p99 threshold (ns): of the counters' histogram when known, else of the records.
    pub threshold_ns: u64,
    /// The window's median (ns), same source.
    pub median_ns: u64,
    /// Requests in the window (all, from the counters when known).
    pub requests: u64,
    /// Kept records above the threshold.
    pub slow: u64,
    /// Sum of all requests' latency in the window (ns).
    pub total_latency_ns: f64,
    /// Sum over the slow records of their latency over the median (ns): the tail's excess, of
    /// which each cause explains a share.
    pub excess_ns: f64,
    /// Stage breakdown, slow vs typical (the stacked bar of the report).
    pub stages: Vec<StageShare>,
    /// Causes, the most latency explained first.
    pub causes: Vec<TailCause>,
    /// The slowest request.
    pub max: Option<SlowRequest>,
    /// A few slow requests with their overlaps (slowest first).
    pub examples: Vec<SlowRequest>,
}

/// The requests of a window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestWindow {
    /// Requests rebuilt by the collector in the window.
    pub completed: u64,
    /// Records kept (the rest were dropped by the cap).
    pub kept: u64,
    /// Records dropped by the cap.
    pub dropped: u64,
    /// Ring records lost to laps.
    pub lost_records: u64,
    /// How records were chosen (the last sample's policy).
    pub policy: String,
    /// Kernel events joined.
    pub kernel_events: u64,
    /// Per qpair.
    pub qpairs: Vec<QpairStages>,
    /// The tail.
    pub tail: Option<TailAttribution>,
}

/// Examples kept per window.
pub const EXAMPLES: usize = 5;

fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// [`quantile`] of unsorted values, by selection (reorders `v`).
fn select_quantile(v: &mut [u64], q: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    *v.select_nth_unstable(rank - 1).1
}

fn stage_stats(records: &[&RequestRecord]) -> Vec<StageStat> {
    // (position, name) → values. A handful of keys, and the names of one batch share their
    // `Arc`s, so a linear scan with a pointer comparison first beats a map (this runs on every
    // stage of every kept request each tick).
    type Key = (usize, Arc<str>);
    let mut by: Vec<(Key, Vec<u64>)> = Vec::new();
    for r in records {
        for (i, (name, ns)) in r.stages.iter().enumerate() {
            let at = by
                .iter()
                .position(|((j, n), _)| *j == i && (Arc::ptr_eq(n, name) || n == name));
            match at {
                Some(k) => by[k].1.push(*ns),
                None => by.push(((i, name.clone()), vec![*ns])),
            }
        }
    }
    by.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    by.into_iter()
        .map(|((_, name), mut v)| StageStat {
            name: name.to_string(),
            mean_ns: v.iter().sum::<u64>() as f64 / v.len() as f64,
            // Two selections instead of a sort (this runs on every stage of every kept
            // request each tick): the same ranks as `quantile` on the sorted values.
            p99_ns: select_quantile(&mut v, 0.99),
            p50_ns: select_quantile(&mut v, 0.5),
        })
        .collect()
}

/// Whether a span touches a request: same reactor (or a target-wide cause) and overlapping time.
fn overlaps(s: &KernelSpan, r: &RequestRecord) -> bool {
    s.reactor.is_none_or(|x| x == r.reactor) && s.start_ns <= r.end_ns() && s.end_ns >= r.start_ns
}

/// Joins a window's records and kernel events. `hist_p50_p99_count_sum` is the counters'
/// latency histogram of all requests in the window (median, p99, count, sum in ns) when the
/// target keeps one.
pub fn build(
    batches: &[&RequestBatch],
    spans: &[&KernelSpan],
    counters: Option<(u64, u64, u64, f64)>,
    _info: &TargetInfo,
) -> Option<RequestWindow> {
    if batches.is_empty() {
        return None;
    }
    let records: Vec<&RequestRecord> = batches.iter().flat_map(|b| b.records.iter()).collect();
    let mut w = RequestWindow {
        completed: batches.iter().map(|b| b.completed).sum(),
        kept: records.len() as u64,
        dropped: batches.iter().map(|b| b.dropped).sum(),
        lost_records: batches.iter().map(|b| b.lost_records).sum(),
        policy: batches.last().map(|b| b.policy.clone()).unwrap_or_default(),
        kernel_events: spans.len() as u64,
        ..RequestWindow::default()
    };
    let mut by_qpair: BTreeMap<(u32, u16), Vec<&RequestRecord>> = BTreeMap::new();
    for r in &records {
        by_qpair.entry((r.reactor, r.qpair)).or_default().push(r);
    }
    w.qpairs = by_qpair
        .iter()
        .map(|(&(reactor, slot), v)| QpairStages {
            reactor,
            slot,
            requests: v.len() as u64,
            stages: stage_stats(v),
        })
        .collect();
    if records.is_empty() {
        return Some(w);
    }
    let mut totals: Vec<u64> = records.iter().map(|r| r.total_ns).collect();
    totals.sort_unstable();
    let (median, threshold, count, sum) = match counters.filter(|c| c.2 > 0) {
        Some(c) => c,
        None => (
            quantile(&totals, 0.5),
            quantile(&totals, 0.99),
            totals.len() as u64,
            totals.iter().sum::<u64>() as f64,
        ),
    };
    // Above p99; at p99 too when the slow ones are more than 1 % (records at the threshold are
    // then the tail itself), never the median.
    let (slow, typical): (Vec<&RequestRecord>, Vec<&RequestRecord>) = records
        .iter()
        .partition(|r| r.total_ns > threshold || (r.total_ns == threshold && threshold > median));
    let excess: f64 = slow
        .iter()
        .map(|r| r.total_ns.saturating_sub(median) as f64)
        .sum();
    let mut tail = TailAttribution {
        excess_ns: excess,
        threshold_ns: threshold,
        median_ns: median,
        requests: count,
        slow: slow.len() as u64,
        total_latency_ns: sum,
        ..TailAttribution::default()
    };
    // Stage breakdown: the slow requests' mean per stage against the others'.
    let slow_st = stage_stats(&slow);
    let typ_st = stage_stats(&typical);
    tail.stages = slow_st
        .iter()
        .map(|s| StageShare {
            name: s.name.clone(),
            slow_mean_ns: s.mean_ns,
            typical_mean_ns: typ_st
                .iter()
                .find(|t| t.name == s.name)
                .map_or(0.0, |t| t.mean_ns),
        })
        .collect();
    // Causes: every span kind/who/reactor that overlapped a slow request.
    let mut causes: BTreeMap<(KernelCause, Option<u32>), (u64, f64, u64)> = BTreeMap::new();
    for s in spans {
        causes
            .entry((s.cause.clone(), s.reactor))
            .or_insert((0, 0.0, 0))
            .2 += 1;
    }
    let mut slow_sorted = slow.clone();
    slow_sorted.sort_by_key(|r| std::cmp::Reverse(r.total_ns));
    for r in &slow_sorted {
        let excess = r.total_ns.saturating_sub(median) as f64;
        // Per cause: how long its events overlapped the request. A cause explains at most that
        // much of the request's excess (an instant, a retransmit, explains all of it).
        let mut per: Vec<((KernelCause, Option<u32>), u64, bool)> = Vec::new();
        for s in spans.iter().filter(|s| overlaps(s, r)) {
            let key = (s.cause.clone(), s.reactor);
            let ov = s
                .end_ns
                .min(r.end_ns())
                .saturating_sub(s.start_ns.max(r.start_ns));
            let instant = s.end_ns == s.start_ns;
            match per.iter_mut().find(|x| x.0 == key) {
                Some(x) => {
                    x.1 += ov;
                    x.2 |= instant;
                }
                None => per.push((key, ov, instant)),
            }
        }
        for (key, ov, instant) in per {
            let e = causes.entry(key).or_insert((0, 0.0, 0));
            e.0 += 1;
            e.1 += if instant {
                excess
            } else {
                excess.min(ov as f64)
            };
        }
    }
    tail.causes = causes
        .into_iter()
        .filter(|(_, (n, _, _))| *n > 0)
        .map(|((cause, reactor), (n, excess, events))| TailCause {
            cause,
            reactor,
            requests: n,
            events,
            added_ns: excess / n as f64,
            explained_ns: excess,
        })
        .collect();
    // The cause that explains the most latency first: the background of a non-isolated core
    // overlaps more slow requests than a hog does (hundreds of short preemptions a second) but
    // adds tens of µs to each; the hog's few requests carry ms.
    tail.causes.sort_by(|a, b| {
        b.explained_ns
            .total_cmp(&a.explained_ns)
            .then(b.requests.cmp(&a.requests))
    });
    let with_overlaps = |r: &RequestRecord| SlowRequest {
        request: r.clone(),
        overlapped: spans
            .iter()
            .filter(|s| overlaps(s, r))
            .map(|s| (*s).clone())
            .collect(),
    };
    tail.max = records
        .iter()
        .max_by_key(|r| r.total_ns)
        .map(|r| with_overlaps(r));
    tail.examples = slow_sorted
        .iter()
        .take(EXAMPLES)
        .map(|r| with_overlaps(r))
        .collect();
    w.tail = Some(tail);
    Some(w)
}

/// The tail a report shows: of the windows', the one whose strongest cause explains the most
/// latency; without any cause, the newest tail.
pub fn worst_tail<'a>(
    windows: impl Iterator<Item = &'a crate::window::Window>,
) -> Option<TailAttribution> {
    let tails: Vec<&TailAttribution> = windows
        .filter_map(|w| w.requests.as_ref().and_then(|r| r.tail.as_ref()))
        .collect();
    let strongest =
        |t: &TailAttribution| t.causes.iter().map(|c| c.explained_ns).fold(0.0, f64::max);
    tails
        .iter()
        .copied()
        .filter(|t| strongest(t) > 0.0)
        .max_by(|a, b| strongest(a).total_cmp(&strongest(b)))
        .or(tails.last().copied())
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selected_quantiles_match_the_sorted_ones() {
        // A scrambled sequence with repeats, at lengths around the rank rounding edges.
        for n in [1usize, 2, 3, 99, 100, 101, 1000, 4097] {
            let v: Vec<u64> = (0..n as u64).map(|i| (i * 7919 + 13) % 101).collect();
            let mut sorted = v.clone();
            sorted.sort_unstable();
            for q in [0.5, 0.99, 1.0] {
                let mut w = v.clone();
                assert_eq!(
                    select_quantile(&mut w, q),
                    quantile(&sorted, q),
                    "n {n} q {q}"
                );
            }
        }
        assert_eq!(select_quantile(&mut [], 0.5), 0);
    }

    fn rec(reactor: u32, start: u64, total: u64) -> RequestRecord {
        RequestRecord {
            reactor,
            qpair: 1,
            cid: 0,
            start_ns: start,
            total_ns: total,
            stages: vec![
                ("capsule".into(), 0),
                ("backend".into(), total / 4),
                ("sent".into(), total - total / 4),
            ],
        }
    }

    #[test]
    fn the_slow_requests_are_tied_to_the_preemption_that_overlapped_them() {
        // 1000 requests of 20 µs every 10 µs; 20 of them during a 2 ms preemption of reactor 0
        // took 1 ms; one interrupt on reactor 1 overlaps nothing of reactor 0's.
        let mut records: Vec<RequestRecord> =
            (0..1000u64).map(|i| rec(0, i * 10_000, 20_000)).collect();
        for r in records.iter_mut().skip(500).take(20) {
            *r = rec(0, r.start_ns, 1_000_000);
        }
        let batch = RequestBatch {
            completed: 1000,
            policy: "all".into(),
            records,
            ..RequestBatch::default()
        };
        let hog = KernelSpan {
            cause: KernelCause::Preemption {
                pid: 77,
                comm: "hog".into(),
            },
            reactor: Some(0),
            start_ns: 5_000_000,
            end_ns: 7_000_000,
        };
        let irq = KernelSpan {
            cause: KernelCause::Softirq {
                name: "NET_RX".into(),
            },
            reactor: Some(1),
            start_ns: 5_000_000,
            end_ns: 5_010_000,
        };
        let w = build(&[&batch], &[&hog, &irq], None, &TargetInfo::default()).expect("window");
        let t = w.tail.expect("a tail");
        assert_eq!(t.threshold_ns, 1_000_000, "p99 of 1000 with 20 slow");
        assert_eq!(t.slow, 20, "2 % are slow: the ones at p99 are the tail");
        // The counters' histogram of all requests gives the threshold when there is one.
        let counters = Some((20_000, 20_000, 1000, 1000.0 * 20_000.0 + 20.0 * 980_000.0));
        let w = build(&[&batch], &[&hog, &irq], counters, &TargetInfo::default()).expect("w");
        let t = w.tail.expect("a tail");
        assert_eq!(t.slow, 20);
        let c = &t.causes[0];
        assert_eq!(c.cause.kind(), "preemption");
        assert_eq!(c.requests, 20, "{:?}", t.causes);
        assert!((c.added_ns - 980_000.0).abs() < 1.0, "{}", c.added_ns);
        assert!(t.causes.iter().all(|c| c.cause.kind() != "softirq"));
        let backend = t
            .stages
            .iter()
            .find(|s| s.name == "backend")
            .expect("stage");
        assert!(backend.slow_mean_ns > 10.0 * backend.typical_mean_ns);
        assert_eq!(t.max.as_ref().map(|m| m.request.total_ns), Some(1_000_000));
        assert_eq!(t.examples.len(), EXAMPLES);
        assert!(t.examples.iter().all(|e| !e.overlapped.is_empty()));
        assert_eq!(w.qpairs.len(), 1);
        assert_eq!(w.qpairs[0].stages.len(), 3);
    }

    #[test]
    fn no_records_no_tail_and_no_batches_no_window() {
        assert!(build(&[], &[], None, &TargetInfo::default()).is_none());
        let empty = RequestBatch::default();
        let w = build(&[&empty], &[], None, &TargetInfo::default()).expect("window");
        assert!(w.tail.is_none());
    }
}
