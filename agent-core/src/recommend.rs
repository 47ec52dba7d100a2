//! The recommender: from the findings and the measured windows, the settings to change, each
//! with its current value, proposed value, expected effect and evidence, and a ready fragment
//! (TOML for `ringside-tgt`, flags for the initiator).
//!
//! The model (DESIGN §6), every figure measured in the windows:
//! - **Per-core capacity** = 1e9 / ns_per_io (busy-poll ns per completed I/O), the lowest cost any
//!   reactor showed over the kept windows, each carried to the floor batching reaches
//!   ([`model::reactor_floor_cost`]: a reactor at shallow depth pays a receive and a send for few
//!   I/Os; batching at depth shares those).
//! - **Depth per qpair** for an initiator-limited qpair: the knee of the reactor model
//!   ([`crate::model`]: a closed loop of two CPU stations whose cost per I/O falls with depth as
//!   batching shares the per-batch costs, down to a per-I/O floor; anchored on the measured round
//!   trip, Little's law, and the reactor's busy cost), split over the reactor's qpairs, capped
//!   by the knee of a measured depth sweep (when the windows hold one: the smallest depth
//!   reaching [`KNEE_SHARE`] of the best IOPS) and by the target's `max_queue_depth`. The expected IOPS carry the model's range and the expected
//!   round trip.
//! - **Reactors** = demand / (capacity × [`TARGET_BUSY`]), on the NIC's NUMA node.
//!
//! `applies_to` is `"ringside-tgt"` (the fragment is TOML for its config file), `"initiator"`
//! (the fragment is options for ringside-perf, fio and nvme-cli, one per line) or
//! `"ringside-tgt launch"` (the fragment is the command line that starts the target).
//!
//! Pure: a function of its inputs.

// `!(x > 0.0)` on purpose: a NaN must fail the condition.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use std::collections::BTreeMap;

use crate::detect::{cpu_list, IO_QPAIR_COMPLETIONS};
use crate::finding::{Finding, FindingKind, Recommendation, Setting, Subject};
use crate::model;
use crate::sample::{IdlePolicy, PlacementPolicy, TargetInfo};
use crate::topology::Topology;
use crate::window::{QpairWindow, Window};

/// Completions a reactor window needs for its cost per I/O to count.
pub const MIN_COMPLETIONS: u64 = 1000;

/// The knee: the smallest depth whose IOPS reaches this share of the best depth's IOPS.
pub const KNEE_SHARE: f64 = 0.9;

/// Distinct depths needed before a knee is believed.
pub const KNEE_MIN_DEPTHS: usize = 3;

/// Busy share reactors are sized for: headroom for bursts and for the latency rise near 100 %.
pub const TARGET_BUSY: f64 = 0.8;

/// A reactor goes to sleep after this long without work: no workload worth polling for leaves
/// its reactor idle for a whole millisecond (QD1 at 47K IOPS brings a request every ~21 µs).
pub const IDLE_BEFORE_SLEEP_US: f64 = 1000.0;

/// Windows a saturation must hold before more reactors are proposed (as for findings).
pub const PERSIST_WINDOWS: usize = 3;

/// Longest sleep: bounds how late timers (keep-alive) and backend completions are seen.
pub const MAX_SLEEP_US: u32 = 1000;

/// Recommendations for the current state. `windows` are the recent windows, oldest first (the
/// last one is the newest); `findings` are the raised (persistent) findings.
pub fn recommend(
    info: &TargetInfo,
    topology: &Topology,
    windows: &[Window],
    findings: &[Finding],
) -> Vec<Recommendation> {
    let Some(latest) = windows.last() else {
        return Vec::new();
    };
    let m = Model::measure(info, windows);
    let raised = |k: FindingKind| findings.iter().any(|f| f.kind == k);
    let mut out = Vec::new();

    let reactors = reactor_count(info, topology, windows, &m, findings);
    let want_reactors = reactors
        .as_ref()
        .and_then(|r| r.proposed.parse::<usize>().ok());
    if let Some(r) = reactors {
        out.push(r);
    }
    if raised(FindingKind::NumaMisplacement) {
        out.extend(numa(info, topology, latest, &m, want_reactors));
    }
    if raised(FindingKind::InitiatorLimited) {
        out.extend(queue_depth(info, windows, &m, findings));
    }
    if raised(FindingKind::ReactorImbalance) {
        out.extend(spread(info, latest, &m));
    }
    if raised(FindingKind::IdlePollingBurn) {
        out.extend(idle(info, latest, findings));
    }
    // A prediction from garbage (a NaN in a window) is no prediction.
    for r in &mut out {
        r.expected_iops = r.expected_iops.filter(|v| v.is_finite() && *v >= 0.0);
    }
    // What answers a raised finding first (most severe first), then what the model suggests.
    let rank = |r: &Recommendation| {
        r.addresses
            .iter()
            .filter_map(|k| {
                findings
                    .iter()
                    .filter(|f| f.kind == *k)
                    .map(|f| f.severity)
                    .max()
            })
            .max()
    };
    out.sort_by_key(|r| std::cmp::Reverse(rank(r)));
    crate::spdk::adapt_fragments(info, &mut out);
    out
}

/// What the windows say about the target's capacity.
#[derive(Clone, Debug, Default)]
struct Model {
    /// Busy ns per I/O of one core, batched (estimated when `batched` is false).
    cost_ns: Option<f64>,
    /// Measured cost, before any correction.
    measured_cost_ns: Option<f64>,
    /// Whether the cost comes from a batched window.
    batched: bool,
    /// The knee of a depth sweep, when the windows hold one.
    knee: Option<Knee>,
    /// Share of its core the reactor gets (1 − run-queue wait), when the OS was watched: a
    /// reactor sharing its core serves only that share of its capacity.
    cpu_share: Option<f64>,
}

impl Model {
    fn measure(_info: &TargetInfo, windows: &[Window]) -> Model {
        // Lowest cost per I/O seen once batched: a window's cost at its depth, carried to the
        // reactor model's floor (a shallow window pays a receive and a send per I/O; batching at
        // depth shares them). Windows deep enough to be at the floor need no correction.
        let mut best: Option<(f64, f64)> = None;
        for w in windows {
            for r in &w.reactors {
                let Some(c) = r.ns_per_io.filter(|c| c.is_finite() && *c > 0.0) else {
                    continue;
                };
                if r.completions < MIN_COMPLETIONS || r.stalled {
                    continue;
                }
                let depth = model::observe(w, r)
                    .map(|o| o.depth)
                    .unwrap_or(r.avg_outstanding)
                    .max(1.0);
                let floor = model::reactor_floor_cost(c, depth);
                if best.is_none_or(|(b, _)| floor < b) {
                    best = Some((floor, c));
                }
            }
        }
        let cost = best.map(|b| b.0);
        let measured = best.map(|b| b.1);
        let is_batched = best.is_some_and(|(f, c)| f >= 0.99 * c);
        let waits: Vec<f64> = windows
            .iter()
            .flat_map(|w| w.reactors.iter())
            .filter_map(|r| r.runqueue_wait_ratio.or(r.preempted_ratio))
            .filter(|v| v.is_finite())
            .collect();
        let cpu_share = (!waits.is_empty())
            .then(|| (1.0 - waits.iter().sum::<f64>() / waits.len() as f64).clamp(0.05, 1.0));
        Model {
            cost_ns: cost,
            measured_cost_ns: measured,
            batched: is_batched,
            knee: knee(windows),
            cpu_share,
        }
    }

    /// IOPS one core can serve.
    fn capacity(&self) -> Option<f64> {
        self.cost_ns
            .map(|c| 1e9 / c * self.cpu_share.unwrap_or(1.0))
    }

    fn capacity_evidence(&self) -> Option<String> {
        let (cost, measured) = (self.cost_ns?, self.measured_cost_ns?);
        let share = self.cpu_share.unwrap_or(1.0);
        let shared = if share < 0.95 {
            format!(
                "; the reactor gets {:.0} % of its core (the rest waits on the run queue), so ~{} IOPS",
                share * 100.0,
                k(1e9 / cost * share)
            )
        } else {
            String::new()
        };
        Some(
            if self.batched {
                format!(
                "per-core capacity ~{} IOPS: 1e9 / {:.2} µs busy per I/O (best measured window)",
                k(1e9 / cost),
                cost / 1e3
            )
            } else {
                format!(
                "per-core capacity ~{} IOPS: measured {:.2} µs busy per I/O at a depth where the \
                 batches still grow; ~{:.2} µs once batched (the reactor model's floor)",
                k(1e9 / cost),
                measured / 1e3,
                cost / 1e3
            )
            } + &shared,
        )
    }
}

/// I/O qpairs of a reactor in a window.
fn io_qpairs(w: &Window, reactor: u32) -> usize {
    w.qpairs
        .iter()
        .filter(|q| q.reactor == reactor && q.completions >= IO_QPAIR_COMPLETIONS)
        .count()
}

/// I/O qpairs of the whole target in a window.
fn all_io_qpairs(w: &Window) -> usize {
    w.qpairs
        .iter()
        .filter(|q| q.completions >= IO_QPAIR_COMPLETIONS)
        .count()
}

/// IOPS as `47K`, `1.2M`.
fn k(v: f64) -> String {
    if !v.is_finite() {
        "?".into()
    } else if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}K", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn ratio_text(new: f64, old: f64) -> String {
    if old > 0.0 && new.is_finite() {
        let r = new / old;
        if r >= 1.95 {
            format!("~{r:.0}x IOPS")
        } else {
            format!("~{:+.0} % IOPS", (r - 1.0) * 100.0)
        }
    } else {
        "more IOPS".into()
    }
}

fn next_pow2(v: f64) -> u32 {
    if !v.is_finite() || v <= 1.0 {
        return 1;
    }
    let c = v.ceil().min(f64::from(1u32 << 16)) as u32;
    c.next_power_of_two()
}

/// One depth of a sweep.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SweepPoint {
    /// Outstanding per qpair (nearest power of two).
    pub depth: u32,
    /// Median total IOPS of the windows at that depth.
    pub iops: f64,
    /// p50 latency at the target (ns) of that window.
    pub p50_ns: u64,
}

/// The knee of a depth sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct Knee {
    /// The smallest depth whose IOPS reaches [`KNEE_SHARE`] of the best.
    pub depth: u32,
    /// The measured depths, ascending.
    pub points: Vec<SweepPoint>,
}

/// The knee of a depth sweep in `windows`: windows grouped by per-qpair outstanding (nearest
/// power of two), each depth's median IOPS; the knee is the smallest depth within [`KNEE_SHARE`]
/// of the best. `None` with fewer than [`KNEE_MIN_DEPTHS`] depths.
pub fn knee(windows: &[Window]) -> Option<Knee> {
    let mut by_depth: BTreeMap<u32, Vec<(f64, u64)>> = BTreeMap::new();
    for w in windows {
        let qp = all_io_qpairs(w);
        let done: u64 = w
            .reactors
            .iter()
            .map(|r| r.completions)
            .fold(0u64, u64::saturating_add);
        if qp == 0 || done < MIN_COMPLETIONS {
            continue;
        }
        let per_qpair = w.total.avg_outstanding / qp as f64;
        if !(per_qpair.is_finite() && per_qpair > 0.0) {
            continue;
        }
        let depth = 2f64.powf(per_qpair.log2().round().clamp(0.0, 16.0)) as u32;
        let p50 = w.total.latency.quantile(0.5).unwrap_or(0);
        by_depth.entry(depth).or_default().push((w.total.iops, p50));
    }
    if by_depth.len() < KNEE_MIN_DEPTHS {
        return None;
    }
    let points: Vec<SweepPoint> = by_depth
        .into_iter()
        .map(|(depth, mut v)| {
            v.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (iops, p50_ns) = v[v.len() / 2];
            SweepPoint {
                depth,
                iops,
                p50_ns,
            }
        })
        .collect();
    let best = points.iter().map(|p| p.iops).fold(0.0, f64::max);
    let depth = points.iter().find(|p| p.iops >= KNEE_SHARE * best)?.depth;
    Some(Knee { depth, points })
}

/// The node the reactors belong on: the listeners' NIC, else the namespaces' device.
fn home_node(info: &TargetInfo, topo: &Topology) -> Option<u32> {
    info.listeners
        .iter()
        .filter_map(|l| l.netdev.as_deref())
        .find_map(|n| topo.node_of_netdev(n))
        .or_else(|| {
            info.namespaces
                .iter()
                .filter_map(|n| n.device.as_deref())
                .find_map(|d| topo.pci_of_block_device(d)?.node)
        })
}

fn current_cores(info: &TargetInfo, w: &Window) -> Vec<u32> {
    if info.settings.cores.is_empty() {
        w.reactors.iter().map(|r| r.core).collect()
    } else {
        info.settings.cores.clone()
    }
}

fn toml_list(v: &[u32]) -> String {
    format!(
        "[{}]",
        v.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
    )
}

/// `n` cores for the reactors: those of `node` (current cores there first), else the current
/// cores extended by any others.
fn pick_cores(topo: &Topology, node: Option<u32>, current: &[u32], n: usize) -> Vec<u32> {
    let pool: Vec<u32> = match node {
        Some(nd) if !topo.cpus_of_node(nd).is_empty() => topo.cpus_of_node(nd),
        _ => {
            let mut all: Vec<u32> = topo.cpus.iter().map(|c| c.os_index).collect();
            all.sort_unstable();
            all
        }
    };
    let mut v: Vec<u32> = current
        .iter()
        .copied()
        .filter(|c| pool.contains(c))
        .collect();
    for c in &pool {
        if v.len() >= n {
            break;
        }
        if !v.contains(c) {
            v.push(*c);
        }
    }
    v.truncate(n);
    v.sort_unstable();
    v
}

fn reactor_count(
    info: &TargetInfo,
    topo: &Topology,
    windows: &[Window],
    m: &Model,
    findings: &[Finding],
) -> Option<Recommendation> {
    let w = windows.last()?;
    let cap = m.capacity()?;
    let n = w.reactors.len();
    if n == 0 {
        return None;
    }
    let raised = |k: FindingKind| findings.iter().any(|f| f.kind == k);
    // Saturated in each of the last windows, like a finding (never from one window).
    let recent = &windows[windows.len().saturating_sub(PERSIST_WINDOWS)..];
    let saturated = recent.len() >= PERSIST_WINDOWS.min(windows.len()).max(1)
        && recent.iter().all(|rw| {
            let live: Vec<_> = rw.reactors.iter().filter(|r| !r.stalled).collect();
            !live.is_empty()
                && live
                    .iter()
                    .all(|r| r.busy_ratio >= crate::detect::starvation::SATURATED_BUSY)
        });
    let demand = w.total.iops;
    if !(demand.is_finite() && demand > 0.0) {
        return None;
    }
    let (proposed, why, addresses) = if saturated
        && !raised(FindingKind::ReactorImbalance)
        && !raised(FindingKind::ReactorPreemption)
        && !raised(FindingKind::InitiatorLimited)
    {
        (
            n + 1,
            format!(
                "every reactor is at least {:.0} % busy ({} IOPS in total): demand is at least \
                 what they serve",
                crate::detect::starvation::SATURATED_BUSY * 100.0,
                k(demand)
            ),
            vec![],
        )
    } else if raised(FindingKind::IdlePollingBurn) && n > 1 {
        let need = ((demand / (cap * TARGET_BUSY)).ceil() as usize).max(1);
        if need >= n {
            return None;
        }
        (
            need,
            format!(
                "{} IOPS in total fit in {need} reactor(s) at {:.0} % busy (per-core capacity \
                 ~{})",
                k(demand),
                TARGET_BUSY * 100.0,
                k(cap)
            ),
            vec![FindingKind::IdlePollingBurn],
        )
    } else {
        return None;
    };
    let home = home_node(info, topo).or_else(|| w.reactors.first().and_then(|r| r.node));
    let cores = pick_cores(topo, home, &current_cores(info, w), proposed);
    if cores.len() != proposed {
        return None; // not enough CPUs to say anything useful
    }
    let expected = if proposed > n {
        demand * proposed as f64 / n as f64
    } else {
        demand
    };
    let mut evidence = vec![why];
    evidence.extend(m.capacity_evidence());
    if let Some(h) = home {
        evidence.push(format!("cores from NUMA node {h} ({})", cpu_list(&cores)));
    }
    Some(Recommendation {
        setting: Setting::ReactorCount,
        current: n.to_string(),
        proposed: proposed.to_string(),
        expected_effect: if proposed > n {
            format!(
                "up to {} with {proposed} reactors: {} -> ~{} (needs at least {proposed} initiator \
                 qpairs to feed them)",
                ratio_text(expected, demand),
                k(demand),
                k(expected)
            )
        } else {
            format!(
                "same IOPS ({}) on {proposed} core(s); {} core(s) freed",
                k(demand),
                n - proposed
            )
        },
        expected_iops: (proposed > n).then_some(expected),
        expected_iops_range: None,
        expected_latency_us: None,
        evidence,
        addresses,
        applies_to: "ringside-tgt".into(),
        fragment: format!("cores = {}", toml_list(&cores)),
    })
}

fn numa(
    info: &TargetInfo,
    topo: &Topology,
    w: &Window,
    _m: &Model,
    want_reactors: Option<usize>,
) -> Vec<Recommendation> {
    let mut out = Vec::new();
    let Some(home) = home_node(info, topo).or_else(|| {
        // No NIC or device locality: follow the memory.
        w.memory.as_ref().and_then(|m| {
            m.buffer_bytes_by_node
                .iter()
                .max_by_key(|(_, b)| *b)
                .map(|(n, _)| *n)
        })
    }) else {
        return out;
    };
    let current = current_cores(info, w);
    let n = want_reactors.unwrap_or(current.len().max(1));
    let cores = pick_cores(topo, Some(home), &current, n);
    let off_node = current
        .iter()
        .any(|c| topo.node_of_cpu(*c).is_some_and(|nd| nd != home));
    if off_node && !cores.is_empty() {
        let nic = info
            .listeners
            .iter()
            .filter_map(|l| l.netdev.as_deref())
            .find(|n| topo.node_of_netdev(n) == Some(home));
        let mut evidence = vec![format!(
            "reactor cores {} are on node(s) {}",
            cpu_list(&current),
            cpu_list(
                &current
                    .iter()
                    .filter_map(|c| topo.node_of_cpu(*c))
                    .collect::<Vec<_>>()
            )
        )];
        match nic {
            Some(nic) => evidence.push(format!("NIC {nic} is on node {home}")),
            None => evidence.push(format!("the backend device is on node {home}")),
        }
        evidence.push(format!(
            "node {home} CPUs: {}",
            cpu_list(&topo.cpus_of_node(home))
        ));
        out.push(Recommendation {
            setting: Setting::CoreList,
            current: toml_list(&current),
            proposed: toml_list(&cores),
            expected_effect: format!(
                "no interconnect crossing per packet and per buffer access: lower latency per \
                 I/O and the node-local capacity ({} reactor(s) on node {home})",
                cores.len()
            ),
            expected_iops: None,
            expected_iops_range: None,
            expected_latency_us: None,
            evidence,
            addresses: vec![FindingKind::NumaMisplacement],
            applies_to: "ringside-tgt".into(),
            fragment: format!("cores = {}", toml_list(&cores)),
        });
    }
    if let Some(mem) = &w.memory {
        let total: u64 = mem
            .buffer_bytes_by_node
            .iter()
            .map(|(_, b)| *b)
            .fold(0u64, u64::saturating_add);
        let local: u64 = mem
            .buffer_bytes_by_node
            .iter()
            .filter(|(n, _)| *n == home)
            .map(|(_, b)| *b)
            .fold(0u64, u64::saturating_add);
        if total > 0 && (local as f64) < 0.5 * total as f64 {
            out.push(Recommendation {
                setting: Setting::MemoryBinding,
                current: mem.policy.clone().unwrap_or_else(|| "default".into()),
                proposed: format!("bind:{home}"),
                expected_effect: format!(
                    "I/O buffers on node {home} with the NIC and the reactors: no remote memory \
                     access per I/O"
                ),
                expected_iops: None,
                expected_iops_range: None,
                expected_latency_us: None,
                evidence: vec![format!(
                    "{:.0} % of {} MiB of buffers are on node(s) other than {home}",
                    100.0 * (1.0 - local as f64 / total as f64),
                    total >> 20
                )],
                addresses: vec![FindingKind::NumaMisplacement],
                applies_to: "ringside-tgt launch".into(),
                fragment: format!(
                    "numactl --cpunodebind={home} --membind={home} ringside-tgt --config target.toml"
                ),
            });
        }
    }
    out
}

/// The round trip the initiator sees on a qpair (ns): its depth / IOPS, at least the target's p50.
fn round_trip_ns(q: &QpairWindow) -> Option<f64> {
    if !(q.iops > 0.0) {
        return None;
    }
    let little = f64::from(model::initiator_depth(q)) / q.iops * 1e9;
    let p50 = q.latency.quantile(0.5).map_or(0.0, |v| v as f64);
    Some(little.max(p50)).filter(|v| v.is_finite() && *v > 0.0)
}

fn connect_line(info: &TargetInfo) -> String {
    let (addr, port) = info
        .listeners
        .first()
        .and_then(|l| l.address.rsplit_once(':'))
        .map(|(a, p)| (a.to_string(), p.to_string()))
        .unwrap_or_else(|| ("<addr>".into(), "4420".into()));
    let nqn = info
        .namespaces
        .first()
        .map(|n| n.nqn.clone())
        .unwrap_or_else(|| "<subsystem nqn>".into());
    format!("nvme connect -t tcp -a {addr} -s {port} -n {nqn}")
}

fn queue_depth(
    info: &TargetInfo,
    windows: &[Window],
    m: &Model,
    findings: &[Finding],
) -> Vec<Recommendation> {
    let Some(latest) = windows.last() else {
        return Vec::new();
    };
    // The flagged qpairs, from the newest window that has them.
    let mut flagged: Vec<(&Window, &QpairWindow)> = Vec::new();
    for f in findings
        .iter()
        .filter(|f| f.kind == FindingKind::InitiatorLimited)
    {
        let Subject::Qpair { reactor, slot } = f.subject else {
            continue;
        };
        let found = windows.iter().rev().find_map(|w| {
            w.qpairs
                .iter()
                .find(|q| q.reactor == reactor && q.slot == slot && q.iops > 0.0)
                .map(|q| (w, q))
        });
        flagged.extend(found);
    }
    if flagged.is_empty() {
        return Vec::new();
    }
    let mut current: Vec<u32> = flagged
        .iter()
        .map(|(_, q)| model::initiator_depth(q))
        .collect();
    current.sort_unstable();
    let current = current[current.len() / 2];
    // The reactor model of each reactor with a flagged qpair (anchored on the newest window
    // that carries it), the per-qpair depth at its knee.
    let mut reactors: Vec<u32> = flagged.iter().map(|(_, q)| q.reactor).collect();
    reactors.sort_unstable();
    reactors.dedup();
    let limit = info.settings.max_queue_depth.filter(|v| *v > 0);
    let mut evidence = Vec::new();
    for (_, q) in flagged.iter().take(4) {
        evidence.push(format!(
            "qpair {}.{}: {} in flight at the initiator (high-water {}, {:.2} avg at the target), \
             {} IOPS -> round trip {:.1} µs (Little's law: depth / IOPS)",
            q.reactor,
            q.slot,
            model::initiator_depth(q),
            q.high_water,
            q.avg_outstanding,
            k(q.iops),
            round_trip_ns(q).unwrap_or(0.0) / 1e3
        ));
    }
    let mut models = Vec::new();
    for &ri in &reactors {
        let Some((w, qn)) = windows.iter().rev().find_map(|w| {
            let qn = io_qpairs(w, ri);
            (qn > 0 && w.reactor(ri).is_some()).then_some((w, qn))
        }) else {
            continue;
        };
        let idx = windows
            .iter()
            .position(|x| std::ptr::eq(x, w))
            .unwrap_or(windows.len() - 1);
        let Some(rm) = model::reactor_model(&windows[..idx], w, ri) else {
            continue;
        };
        models.push((ri, qn, rm));
    }
    if models.is_empty() {
        return Vec::new();
    }
    // Per-qpair depth: the knee of the total depth, split over the reactor's qpairs.
    let mut proposed = 1u32;
    for (_, qn, rm) in &models {
        // Uncapped here: the target's limit caps it below, and says so.
        let total = rm.knee(None);
        proposed = proposed.max(next_pow2(f64::from(total) / *qn as f64));
    }
    for (ri, qn, rm) in &models {
        evidence.push(format!(
            "reactor {ri}: {:.2} µs busy per I/O at {} in flight ({} qpair(s)), round trip {:.1} \
             µs -> {:.2} µs per I/O on each side of the loop; batching shares the per-batch \
             costs as D^-{:.3} ({}) down to {:.0} % of the QD1 cost (from ~{:.0} in flight), \
             plateau ~{} IOPS ({}-{})",
            rm.anchor.cost_ns / 1e3,
            rm.anchor.depth,
            qn,
            rm.round_trip_ns / 1e3,
            rm.station_ns / 1e3,
            rm.exponent,
            if rm.fitted {
                "fitted over windows at several depths"
            } else {
                "one depth seen: the exponent calibrated on four brute-force sweeps"
            },
            model::FLOOR_SHARE * 100.0,
            rm.floor_depth(),
            k(rm.plateau()),
            k(1e9 / rm.floor_range_ns.1),
            k(1e9 / rm.floor_range_ns.0),
        ));
        if let Some(b) = rm.batch {
            evidence.push(format!(
                "reactor {ri}: {b:.2} I/O(s) per poll iteration that found work at {} in \
                 flight (the batch its per-iteration costs are shared by)",
                rm.anchor.depth
            ));
        }
    }
    evidence.push(format!(
        "model: X(D) = min(D / ((D + 1)·s(D)), reactor capacity(D)), s(D) = s(1)·max({}, \
         D^-γ); knee = the smallest depth reaching {:.0} % of the plateau -> {proposed} per qpair",
        model::FLOOR_SHARE,
        model::PLATEAU_SHARE * 100.0
    ));
    if let Some(Knee {
        depth: knee,
        points,
    }) = &m.knee
    {
        let sweep: Vec<String> = points
            .iter()
            .map(|p| {
                format!(
                    "{}: {} @ {:.0} µs",
                    p.depth,
                    k(p.iops),
                    p.p50_ns as f64 / 1e3
                )
            })
            .collect();
        evidence.push(format!(
            "measured depths (outstanding per qpair: IOPS @ p50): {}; knee at {knee}",
            sweep.join(", ")
        ));
        if proposed > *knee {
            proposed = (*knee).max(1);
            evidence.push(format!(
                "capped at the measured knee ({knee}): deeper only adds latency"
            ));
        }
    }
    let mut target_limit = None;
    if let Some(max) = limit {
        if proposed > max {
            evidence.push(format!(
                "capped by the target's max_queue_depth = {max} (the model asks for {proposed})"
            ));
            target_limit = Some(proposed);
            proposed = max;
        }
    }
    if proposed <= current {
        return Vec::new();
    }
    // Expected: the modelled reactors at the proposed depth, the others as they are.
    let (mut expected, mut lo, mut hi, mut latency) = (0.0, 0.0, 0.0, 0.0f64);
    for r in &latest.reactors {
        match models.iter().find(|(ri, _, _)| *ri == r.index) {
            Some((_, qn, rm)) => {
                let p = rm.predict(proposed.saturating_mul(*qn as u32));
                expected += p.iops;
                lo += p.iops_range.0;
                hi += p.iops_range.1;
                latency = latency.max(p.latency_ns);
            }
            None => {
                expected += r.iops;
                lo += r.iops;
                hi += r.iops;
            }
        }
    }
    let now = latest.total.iops;
    let mut out = vec![Recommendation {
        setting: Setting::InitiatorQueueDepth,
        current: current.to_string(),
        proposed: proposed.to_string(),
        expected_effect: format!(
            "{}: {} -> ~{} ({}-{}), round trip ~{:.0} µs (the reactor model's knee; deeper \
             only adds latency)",
            ratio_text(expected, now),
            k(now),
            k(expected),
            k(lo),
            k(hi),
            latency / 1e3
        ),
        expected_iops: (expected > 0.0).then_some(expected),
        expected_iops_range: (lo > 0.0 && hi >= lo).then_some((lo, hi)),
        expected_latency_us: (latency > 0.0).then_some(latency / 1e3),
        evidence: evidence.clone(),
        addresses: vec![FindingKind::InitiatorLimited],
        applies_to: "initiator".into(),
        fragment: format!(
            "ringside-perf -q {proposed}\nfio --iodepth={proposed}\n{} --queue-size={proposed}",
            connect_line(info)
        ),
    }];
    if let (Some(want), Some(max)) = (target_limit, info.settings.max_queue_depth) {
        out.push(Recommendation {
            setting: Setting::TargetQueueDepth,
            current: max.to_string(),
            proposed: want.to_string(),
            expected_effect: format!(
                "lets initiators reach the depth the reactor model asks for ({want})"
            ),
            expected_iops: None,
            expected_iops_range: None,
            expected_latency_us: None,
            evidence,
            addresses: vec![FindingKind::InitiatorLimited],
            applies_to: "ringside-tgt".into(),
            fragment: format!("[limits]\nmax_queue_depth = {want}"),
        });
    }
    out
}

fn spread(info: &TargetInfo, w: &Window, m: &Model) -> Vec<Recommendation> {
    let n = w.reactors.iter().filter(|r| !r.stalled).count();
    let qpairs = all_io_qpairs(w);
    if n < 2 {
        return Vec::new();
    }
    let hot = w.reactors.iter().map(|r| r.iops).fold(0.0, f64::max);
    let cap = m.capacity().unwrap_or(hot).max(hot);
    let now = w.total.iops;
    let expected = (n.min(qpairs.max(1)) as f64 * hot).min(n as f64 * cap);
    let mut evidence = vec![format!(
        "{qpairs} active qpair(s) over {n} reactors: {}",
        w.reactors
            .iter()
            .map(|r| format!(
                "reactor {} {} qpair(s), {} IOPS, {:.0} % busy",
                r.index,
                io_qpairs(w, r.index),
                k(r.iops),
                r.busy_ratio * 100.0
            ))
            .collect::<Vec<_>>()
            .join("; ")
    )];
    evidence.extend(m.capacity_evidence());
    if qpairs < n {
        return vec![Recommendation {
            setting: Setting::InitiatorQpairs,
            current: qpairs.to_string(),
            proposed: n.to_string(),
            expected_effect: format!(
                "{}: {} -> ~{} (one qpair per reactor)",
                ratio_text((n as f64 * hot).min(n as f64 * cap), now),
                k(now),
                k((n as f64 * hot).min(n as f64 * cap))
            ),
            expected_iops: Some((n as f64 * hot).min(n as f64 * cap)),
            expected_iops_range: None,
            expected_latency_us: None,
            evidence,
            addresses: vec![FindingKind::ReactorImbalance],
            applies_to: "initiator".into(),
            fragment: format!(
                "ringside-perf --qpairs {n}\nfio --numjobs={n}\n{} --nr-io-queues={n}",
                connect_line(info)
            ),
        }];
    }
    let current = info.settings.placement.unwrap_or_default();
    if current == PlacementPolicy::LeastLoaded {
        return Vec::new();
    }
    evidence.push(format!("placement is {current}"));
    vec![Recommendation {
        setting: Setting::Placement,
        current: current.to_string(),
        proposed: PlacementPolicy::LeastLoaded.to_string(),
        expected_effect: format!(
            "up to {}: {} -> ~{} once the initiator reconnects (placement applies to new \
             connections)",
            ratio_text(expected, now),
            k(now),
            k(expected)
        ),
        expected_iops: Some(expected),
        expected_iops_range: None,
        expected_latency_us: None,
        evidence,
        addresses: vec![FindingKind::ReactorImbalance],
        applies_to: "ringside-tgt".into(),
        fragment: format!("placement = \"{}\"", PlacementPolicy::LeastLoaded),
    }]
}

fn idle(info: &TargetInfo, w: &Window, findings: &[Finding]) -> Vec<Recommendation> {
    let burning: Vec<u32> = findings
        .iter()
        .filter(|f| f.kind == FindingKind::IdlePollingBurn)
        .filter_map(|f| match f.subject {
            Subject::Reactor { index } => Some(index),
            _ => None,
        })
        .collect();
    let polls = w
        .reactors
        .iter()
        .filter(|r| burning.contains(&r.index))
        .map(|r| r.polls_per_s)
        .filter(|p| p.is_finite())
        .fold(0.0, f64::max);
    // Sleep after ~1 ms of empty polls at the measured idle poll rate.
    let after = ((polls * IDLE_BEFORE_SLEEP_US / 1e6).round() as u64).clamp(100, 1_000_000);
    let current = info.settings.idle.unwrap_or(IdlePolicy::Poll).to_string();
    let cpu: Vec<String> = w
        .reactors
        .iter()
        .filter(|r| burning.contains(&r.index))
        .map(|r| {
            format!(
                "reactor {}: {:.0} % busy, {}, {} polls/s",
                r.index,
                r.busy_ratio * 100.0,
                r.cpu_ratio
                    .map_or("on CPU throughout (poll policy)".into(), |c| format!(
                        "{:.0} % on CPU",
                        c * 100.0
                    )),
                k(r.polls_per_s)
            )
        })
        .collect();
    let mut evidence = cpu;
    evidence.push(format!(
        "after_idle_polls = {after}: ~{IDLE_BEFORE_SLEEP_US:.0} µs of empty polls at the measured rate"
    ));
    vec![Recommendation {
        setting: Setting::IdlePolicy,
        current,
        proposed: IdlePolicy::Sleep.to_string(),
        expected_effect: format!(
            "frees ~{} core(s) while idle (on-CPU share falls to about the busy share); the first \
             request after an idle spell waits for a wake-up (tens of µs)",
            burning.len().max(1)
        ),
        expected_iops: None,
        expected_iops_range: None,
        expected_latency_us: None,
        evidence,
        addresses: vec![FindingKind::IdlePollingBurn],
        applies_to: "ringside-tgt".into(),
        fragment: format!(
            "idle = {{ mode = \"sleep\", after_idle_polls = {after}, max_sleep_us = {MAX_SLEEP_US} }}"
        ),
    }]
}
