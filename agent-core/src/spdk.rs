//! What an SPDK `nvmf_tgt` adds to a sample beyond the common model: its poll groups, its
//! reactors' own busy/idle accounting and /proc CPU time, its pollers, its transport's buffer
//! settings, and a profile of its latest trace sample. The SPDK source (in the `agent` crate)
//! fills [`SpdkSample`]; [`window`] turns two samples into an [`SpdkWindow`] for the SPDK
//! detectors (`detect::spdk_*`). Also the SPDK-shaped config fragments ([`adapt_fragments`]).
//!
//! Pure data and arithmetic, no I/O.

use serde::{Deserialize, Serialize};

use crate::finding::Recommendation;
use crate::sample::TargetInfo;

/// `TargetInfo::flavor` of an SPDK target.
pub const FLAVOR: &str = "spdk";

/// Jiffies per second of the /proc CPU times SPDK reports (`usr`, `sys`, `irq` of
/// `framework_get_reactors`, read from `/proc/<pid>/task/<tid>/stat`): USER_HZ, 100 on Linux.
pub const PROC_TICKS_PER_S: u64 = 100;

/// SPDK's side of one sample (all counters cumulative, as read).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SpdkSample {
    /// Reactors (`framework_get_reactors`).
    pub reactors: Vec<SpdkReactor>,
    /// NVMe-oF poll groups (`nvmf_get_stats`, `thread_get_stats`).
    pub poll_groups: Vec<PollGroup>,
    /// Pollers of every thread (`thread_get_pollers`).
    pub pollers: Vec<Poller>,
    /// Qpairs listed by `nvmf_subsystem_get_qpairs`, per poll group thread name.
    pub listed_qpairs: Vec<(String, u32)>,
    /// The TCP transport's buffer settings (`nvmf_get_transports`), when known.
    pub transport: Option<TransportSettings>,
    /// The latest trace sample, when tracing of `nvmf_tcp` is on.
    pub trace: Option<TraceProfile>,
}

/// An SPDK reactor (one lcore).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpdkReactor {
    /// Lcore (= the reactor index in the common model).
    pub lcore: u32,
    /// Thread id.
    pub tid: u32,
    /// Whether the reactor runs in interrupt mode.
    pub in_interrupt: bool,
    /// SPDK's busy time (ns, from its busy ticks).
    pub busy_ns: u64,
    /// SPDK's idle time (ns).
    pub idle_ns: u64,
    /// The thread's CPU time as /proc says it (user + system, ns; jiffy resolution).
    pub proc_cpu_ns: u64,
    /// Lightweight threads on it.
    pub threads: Vec<String>,
}

/// An NVMe-oF poll group (one SPDK thread).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollGroup {
    /// Thread name (`nvmf_tgt_poll_group_000`).
    pub name: String,
    /// Lcore of the reactor running it.
    pub lcore: u32,
    /// Gauge: admin qpairs now (`current_admin_qpairs`).
    pub current_admin_qpairs: u32,
    /// Gauge: I/O qpairs now (`current_io_qpairs`).
    pub current_io_qpairs: u32,
    /// I/O qpairs ever placed on it.
    pub io_qpairs: u64,
    /// NVMe I/O completed.
    pub completed_nvme_io: u64,
    /// Gauge: requests waiting for a bdev_io.
    pub pending_bdev_io: u64,
    /// The thread's busy time (ns, `thread_get_stats`).
    pub busy_ns: u64,
    /// The thread's idle time (ns).
    pub idle_ns: u64,
}

/// A poller.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Poller {
    /// Thread it runs on.
    pub thread: String,
    /// Poller name (`nvmf_TCP`, `accel_comp_poll`).
    pub name: String,
    /// `active`, `timed` or `paused`.
    pub kind: String,
    /// Times it ran.
    pub run_count: u64,
    /// Times it found work.
    pub busy_count: u64,
}

/// The TCP transport's buffer settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransportSettings {
    /// `num_shared_buffers`: the transport's data buffer pool.
    pub num_shared_buffers: u64,
    /// `buf_cache_size` per poll group (`u32::MAX`: SPDK's default, see [`cache_per_group`]).
    pub buf_cache_size: u64,
    /// `io_unit_size`: bytes per buffer.
    pub io_unit_size: u64,
    /// `max_queue_depth`.
    pub max_queue_depth: u32,
}

/// Buffers each poll group caches: `buf_cache_size`, or with SPDK's default (`UINT32_MAX`)
/// `num_shared_buffers * 3 / 4 / poll groups` (as `nvmf_transport_poll_group_create` sizes it).
pub fn cache_per_group(t: &TransportSettings, groups: u64) -> u64 {
    if t.buf_cache_size >= u64::from(u32::MAX) {
        t.num_shared_buffers * 3 / 4 / groups.max(1)
    } else {
        t.buf_cache_size
    }
}

/// What the latest trace sample showed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TraceProfile {
    /// Time span the sample covers (ns).
    pub covered_ns: u64,
    /// Requests that completed in it.
    pub requests: u64,
    /// Requests that waited for a data buffer (`TCP_REQ_NEED_BUFFER` held over a poll).
    pub buffer_waits: u64,
    /// Time the reactor recorded nothing while requests were ready for it to act (ns).
    pub stall_ns: u64,
    /// Longest such stall (ns) and the requests ready during it.
    pub longest_stall: Option<(u64, u32)>,
    /// Lcore of the longest stall.
    pub stall_lcore: Option<u32>,
    /// Entries overwritten before the reader got them (cumulative).
    pub lost: u64,
    /// `true`: the profile is a snapshot taken after the run (a recording), standing for every
    /// window; `false`: read live, it covers the end of the latest window.
    pub snapshot: bool,
}

/// SPDK's side of a window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SpdkWindow {
    /// Per reactor.
    pub reactors: Vec<SpdkReactorWindow>,
    /// Per poll group.
    pub poll_groups: Vec<PollGroupWindow>,
    /// Pollers that ran in the window, most runs first.
    pub pollers: Vec<PollerWindow>,
    /// Qpairs listed per poll group thread at the window's end.
    pub listed_qpairs: Vec<(String, u32)>,
    /// Transport buffer settings.
    pub transport: Option<TransportSettings>,
    /// The latest trace profile.
    pub trace: Option<TraceProfile>,
}

/// A reactor in a window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SpdkReactorWindow {
    /// Lcore.
    pub lcore: u32,
    /// Interrupt mode.
    pub in_interrupt: bool,
    /// SPDK busy / (busy + idle).
    pub busy_ratio: f64,
    /// SPDK (busy + idle) / wall time: what SPDK accounted for.
    pub accounted_ratio: f64,
    /// /proc CPU time / wall time, when /proc advanced (jiffy resolution: ±1 jiffy).
    pub proc_cpu_ratio: Option<f64>,
    /// Threads on it.
    pub threads: Vec<String>,
}

/// A poll group in a window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PollGroupWindow {
    /// Thread name.
    pub name: String,
    /// Lcore.
    pub lcore: u32,
    /// I/O qpairs now.
    pub current_io_qpairs: u32,
    /// NVMe I/O completed per second.
    pub iops: f64,
    /// Thread busy / (busy + idle), when the thread's stats were read.
    pub busy_ratio: Option<f64>,
}

/// A poller in a window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PollerWindow {
    /// Thread.
    pub thread: String,
    /// Name.
    pub name: String,
    /// Runs per second.
    pub runs_per_s: f64,
    /// Runs that found work, per second.
    pub busy_per_s: f64,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// SPDK's window between two samples (`None` unless both carry SPDK data).
pub fn window(
    prev: Option<&SpdkSample>,
    now: Option<&SpdkSample>,
    dt_ns: u64,
) -> Option<SpdkWindow> {
    let (p, n) = (prev?, now?);
    let secs = dt_ns as f64 / 1e9;
    let per_s = |a: u64, b: u64| {
        if secs > 0.0 {
            a.saturating_sub(b) as f64 / secs
        } else {
            0.0
        }
    };
    let mut w = SpdkWindow {
        listed_qpairs: n.listed_qpairs.clone(),
        transport: n.transport.clone(),
        trace: n.trace.clone(),
        ..SpdkWindow::default()
    };
    for r in &n.reactors {
        // A reactor that appeared (or restarted under a new tid) counts from now on.
        let Some(pr) = p
            .reactors
            .iter()
            .find(|x| x.lcore == r.lcore && x.tid == r.tid)
        else {
            continue;
        };
        let busy = r.busy_ns.saturating_sub(pr.busy_ns);
        let idle = r.idle_ns.saturating_sub(pr.idle_ns);
        let cpu = r.proc_cpu_ns.saturating_sub(pr.proc_cpu_ns);
        w.reactors.push(SpdkReactorWindow {
            lcore: r.lcore,
            in_interrupt: r.in_interrupt,
            busy_ratio: ratio(busy, busy + idle),
            accounted_ratio: ratio(busy + idle, dt_ns),
            proc_cpu_ratio: (r.proc_cpu_ns > 0).then(|| ratio(cpu, dt_ns)),
            threads: r.threads.clone(),
        });
    }
    for g in &n.poll_groups {
        let pg = p.poll_groups.iter().find(|x| x.name == g.name);
        let zero = PollGroup::default();
        let pg = pg.unwrap_or(&zero);
        let busy = g.busy_ns.saturating_sub(pg.busy_ns);
        let idle = g.idle_ns.saturating_sub(pg.idle_ns);
        w.poll_groups.push(PollGroupWindow {
            name: g.name.clone(),
            lcore: g.lcore,
            current_io_qpairs: g.current_io_qpairs,
            iops: per_s(g.completed_nvme_io, pg.completed_nvme_io),
            busy_ratio: (busy + idle > 0).then(|| ratio(busy, busy + idle)),
        });
    }
    for q in &n.pollers {
        // Pollers come and go (spdk_top's crashes): one without a predecessor counts from zero.
        let pq = p
            .pollers
            .iter()
            .find(|x| x.thread == q.thread && x.name == q.name && x.kind == q.kind);
        let (r0, b0) = pq.map(|x| (x.run_count, x.busy_count)).unwrap_or((0, 0));
        if q.run_count < r0 {
            continue; // re-registered under the same name: no baseline
        }
        let runs = per_s(q.run_count, r0);
        if runs > 0.0 {
            w.pollers.push(PollerWindow {
                thread: q.thread.clone(),
                name: q.name.clone(),
                runs_per_s: runs,
                busy_per_s: per_s(q.busy_count, b0),
            });
        }
    }
    w.pollers
        .sort_by(|a, b| b.runs_per_s.total_cmp(&a.runs_per_s));
    Some(w)
}

/// Rewrites ringside-tgt fragments into SPDK's vocabulary for an SPDK target: the initiator's
/// depth as `spdk_nvme_perf -q`, the core list as an `nvmf_tgt -m` mask, the queue limit and
/// buffers as `rpc.py nvmf_create_transport` options. Other targets are left alone.
pub fn adapt_fragments(info: &TargetInfo, recs: &mut [Recommendation]) {
    if info.flavor.as_deref() != Some(FLAVOR) {
        return;
    }
    let (addr, port) = info
        .listeners
        .iter()
        .find(|l| l.transport == trace_ring::description::Transport::Tcp)
        .and_then(|l| l.address.rsplit_once(':'))
        .map(|(a, p)| (a.to_string(), p.to_string()))
        .unwrap_or_else(|| ("<addr>".into(), "<port>".into()));
    let nqn = info
        .namespaces
        .first()
        .map(|n| n.nqn.clone())
        .unwrap_or_else(|| "<nqn>".into());
    for r in recs.iter_mut() {
        let p = r.proposed.trim().to_string();
        let fragment = match r.applies_to.as_str() {
            "initiator" if p.parse::<u32>().is_ok() => Some(format!(
                "spdk_nvme_perf -q {p} -o 4096 -w randread -t 30 -r 'trtype:TCP adrfam:IPv4 \
                 traddr:{addr} trsvcid:{port} subnqn:{nqn}'\nfio --iodepth={p}\nnvme connect -t \
                 tcp -a {addr} -s {port} -n {nqn} --queue-size={p}"
            )),
            _ => {
                if r.fragment.starts_with("cores") || r.fragment.contains("\ncores") {
                    let cores = parse_list(&p);
                    (!cores.is_empty()).then(|| {
                        let mask: u128 = cores
                            .iter()
                            .filter(|c| **c < 128)
                            .fold(0, |m, c| m | (1u128 << c));
                        format!(
                            "nvmf_tgt -m 0x{mask:x}   # restart with one reactor per core of [{}]",
                            cores
                                .iter()
                                .map(|c| c.to_string())
                                .collect::<Vec<_>>()
                                .join(",")
                        )
                    })
                } else if r.fragment.contains("max_queue_depth") {
                    Some(format!(
                        "rpc.py nvmf_create_transport -t TCP -q {p}   # before the first listener"
                    ))
                } else if r.fragment.contains("idle") || r.fragment.contains("sleep") {
                    Some(
                        "nvmf_tgt --interrupt-mode   # or: rpc.py framework_set_scheduler dynamic"
                            .to_string(),
                    )
                } else {
                    None
                }
            }
        };
        if let Some(f) = fragment {
            r.fragment = f;
            if r.applies_to != "initiator" {
                r.applies_to = "nvmf_tgt".into();
            }
        }
    }
}

/// `[0, 2, 3]`, `0,2-3`, `2`: a core list as the recommender prints it.
fn parse_list(s: &str) -> Vec<u32> {
    let s = s.trim().trim_start_matches('[').trim_end_matches(']');
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            if let (Ok(a), Ok(b)) = (a.trim().parse::<u32>(), b.trim().parse::<u32>()) {
                out.extend(a..=b.min(a + 1024));
            }
        } else if let Ok(v) = part.parse() {
            out.push(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_cache_is_three_quarters_of_the_pool_over_the_groups() {
        let t = TransportSettings {
            num_shared_buffers: 511,
            buf_cache_size: u64::from(u32::MAX),
            ..TransportSettings::default()
        };
        assert_eq!(cache_per_group(&t, 1), 383);
        assert_eq!(cache_per_group(&t, 4), 95);
        let t = TransportSettings {
            buf_cache_size: 32,
            ..t
        };
        assert_eq!(cache_per_group(&t, 4), 32);
    }

    #[test]
    fn core_lists_parse_in_both_notations() {
        assert_eq!(parse_list("[0, 2, 3]"), vec![0, 2, 3]);
        assert_eq!(parse_list("0,2-3"), vec![0, 2, 3]);
    }

    #[test]
    fn pollers_that_vanish_or_reappear_do_not_break_the_window() {
        let p = SpdkSample {
            pollers: vec![Poller {
                thread: "t".into(),
                name: "gone".into(),
                kind: "active".into(),
                run_count: 10,
                busy_count: 1,
            }],
            ..SpdkSample::default()
        };
        let n = SpdkSample {
            pollers: vec![Poller {
                thread: "t".into(),
                name: "new".into(),
                kind: "active".into(),
                run_count: 500,
                busy_count: 0,
            }],
            ..SpdkSample::default()
        };
        let w = window(Some(&p), Some(&n), 1_000_000_000).unwrap();
        assert_eq!(w.pollers.len(), 1);
        assert_eq!(w.pollers[0].name, "new");
        assert_eq!(w.pollers[0].runs_per_s, 500.0);
    }
}
