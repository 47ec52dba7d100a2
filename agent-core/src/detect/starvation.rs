//! Queue starvation: work that could flow but does not, and where it waits.
//!
//! - **Initiator-limited qpairs** ([`FindingKind::InitiatorLimited`]), at any depth: the reactor
//!   model ([`crate::model`], Little's law against the reactor's measured cost per I/O) expects
//!   [`STARVED_GAIN`] more IOPS at its knee than the reactor serves at the depth the initiator
//!   keeps, and the target holds the qpair's requests under [`TARGET_SHARE_MAX`] of their round
//!   trip: the initiator holds the depth down. A saturated reactor at depth has no knee beyond
//!   its depth and is not flagged; the busy share alone says nothing at low depth, where each
//!   I/O pays the receive and send that batching would share. A qpair with traffic but almost nothing in flight
//!   (under [`BACK_TO_BACK_OUTSTANDING`]) is an application with little to do, not a depth limit;
//!   and while a link is saturated the requests wait in the network, not at the initiator.
//! - **Buffer starvation** ([`FindingKind::BufferStarvation`]): requests waiting for a data
//!   buffer, more than [`BUFFER_WAITS_PER_IO`] of them; or, on an RDMA reactor, a shared receive
//!   queue that ran dry (its low-water mark reached 0 while the reactor carries RDMA traffic):
//!   a capsule arrived with no receive buffer posted, the host's NIC got a receiver-not-ready
//!   NAK and retried after its RNR timer. Both are the same fault (buffers short of the load)
//!   on one reactor, so they make one finding with the evidence of each.
//! - **Reactor imbalance** ([`FindingKind::ReactorImbalance`]): one reactor saturated while
//!   another serves under half its IOPS.
//! - **Backend saturated / starved** ([`FindingKind::BackendSaturated`],
//!   [`FindingKind::BackendStarved`]): from the per-stage histograms (`to_backend`, `backend`,
//!   `to_wire`, as ringside-tgt names them) where the latency goes, and from the block device's
//!   utilisation. Without stage histograms only the device-based check runs.
//!
//! Stateless (the history comes in the context); pure.

use super::{candidate, costed, io_qpairs, link, margin, pct, si, us, Context, Detector};
use crate::finding::{Cost, Evidence, Finding, FindingKind, Severity, Subject};
use crate::hist::Hist;
use crate::model;
use crate::sample::{BackendKind, Stage};
use crate::window::{RdmaReactorWindow, ReactorWindow, Window};

/// IOPS the reactor model ([`crate::model`]) must expect at its knee, over what the reactor
/// serves now, for the initiator to be the limit: 25 % is beyond what a window's noise or the
/// model's range (±20 %) explains.
pub const STARVED_GAIN: f64 = 0.25;

/// Share of the round trip the target may hold a request for a starved initiator: the rest is
/// time in which the reactor could serve more requests if the initiator sent them. Requests held
/// at the target most of the loop wait for the target instead (measured over loopback: 20 % at
/// QD1, ~10 % at QD32).
pub const TARGET_SHARE_MAX: f64 = 0.8;

/// Initiator depth per qpair from which a single window's model is not enough: a deep initiator
/// whose requests spend the round trip outside the target is more often an initiator or a wire
/// at its own limit (a queue) than a delay more depth would fill, and one window cannot tell the
/// two apart; windows at two depths can (the model is then fitted, not calibrated).
pub const DEEP_DEPTH: u32 = 8;

/// Outstanding requests (time-weighted, at the target) under which a reactor's backend is not
/// judged starved (few requests in flight need not queue before it).
pub const LOW_OUTSTANDING: f64 = 4.0;

/// Outstanding at the target above which the qpair is fed back to back (closed loop): at QD1 the
/// target holds the request for 20-50 % of the round trip (the rest is wire and initiator), so a
/// depth-bound initiator shows 0.2-1; an application issuing occasional I/O shows ~0.01.
pub const BACK_TO_BACK_OUTSTANDING: f64 = 0.1;

/// Completions per window under which a qpair's figures are too thin to judge.
pub const MIN_COMPLETIONS: u64 = 500;

/// Buffer waits per I/O above which buffers are short: each wait costs at least one poll round.
pub const BUFFER_WAITS_PER_IO: f64 = 0.01;

/// Share of the SRQ's size under which its depth at a window's end means it is still being
/// drained faster than the reactor reposts (the reactor reposts once per poll, so a healthy SRQ
/// sits near full at any instant).
pub const SRQ_LOW_SHARE: f64 = 0.125;

/// RDMA work completions in a window for a dry SRQ to be judged: a reactor without RDMA traffic
/// is not starving now, whatever its low-water mark remembers.
pub const SRQ_MIN_COMPLETIONS: u64 = 100;

/// Busy share at which a reactor is saturated: its loop finds work nearly every iteration.
pub const SATURATED_BUSY: f64 = 0.9;

/// A reactor serving under this share of a saturated peer's IOPS is underused.
pub const IMBALANCE_SHARE: f64 = 0.5;

/// Share of the request latency spent in one stage for it to dominate.
pub const DOMINANT_STAGE_SHARE: f64 = 0.6;

/// Backends that live in the reactor's memory: never saturated as a device.
pub const RAM_BACKENDS: [BackendKind; 2] = [BackendKind::Null, BackendKind::Malloc];

/// Backend in flight (time-weighted, from the backend stage by Little's law) over its high-water
/// mark at which the backend runs at its limit.
pub const BACKEND_AT_LIMIT: f64 = 0.8;

/// Backend high-water under which the backend has never been asked for parallelism (QD1 on a
/// slow device is initiator-limited, not backend-saturated).
pub const BACKEND_MIN_HIGH_WATER: u64 = 4;

/// Backend share of latency under which the backend is idle-fast relative to the request.
pub const BACKEND_IDLE_SHARE: f64 = 0.2;

/// Share of the latency spent before the backend (receive, parse, data transfer, buffer wait)
/// at which requests are held up on their way to an idle backend: half of it.
pub const STARVED_BEFORE_SHARE: f64 = 0.5;

/// Reactor busy under which it is not the bottleneck when requests queue before the backend.
pub const STARVED_MAX_BUSY: f64 = 0.8;

/// Device utilisation at which the device is saturated (without stage data), when its service
/// time has also at least doubled over the best seen in recent windows.
pub const DEVICE_SATURATED: f64 = 0.95;

/// Device utilisation under which the device is idle enough to be "starved".
pub const DEVICE_IDLE: f64 = 0.5;

/// Raises the starvation family of findings.
#[derive(Clone, Copy, Debug, Default)]
pub struct Starvation;

impl Detector for Starvation {
    fn name(&self) -> &'static str {
        "starvation"
    }

    fn observe(&mut self, w: &Window, ctx: &Context<'_>, out: &mut Vec<Finding>) {
        initiator_limited(w, ctx, out);
        buffers(w, out);
        imbalance(w, out);
        backend_stages(w, ctx, out);
        backend_devices(w, ctx, out);
    }
}

fn initiator_limited(w: &Window, ctx: &Context<'_>, out: &mut Vec<Finding>) {
    // A full link holds the initiator's requests in the network, not the initiator: the target
    // then sees few in flight too. The link detector owns that case.
    if w.netdevs.iter().any(link::limits) || w.rdma_ports.iter().any(link::port_limits) {
        return;
    }
    let limit = ctx.info.settings.max_queue_depth;
    for r in &w.reactors {
        if r.stalled {
            continue;
        }
        let Some(m) = model::reactor_model(ctx.history, w, r.index) else {
            continue;
        };
        let qpairs: Vec<_> = w
            .qpairs
            .iter()
            .filter(|q| q.reactor == r.index && q.completions >= MIN_COMPLETIONS)
            .collect();
        if qpairs.is_empty() {
            continue;
        }
        let depth_now = m.anchor.depth;
        let knee = m.knee(limit.map(|l| l.saturating_mul(qpairs.len() as u32)));
        if !(f64::from(knee) > depth_now) {
            continue;
        }
        let at_knee = m.predict(knee);
        let gain = at_knee.iops / r.iops;
        if !(gain >= 1.0 + STARVED_GAIN) {
            continue;
        }
        for q in qpairs {
            let depth = q.avg_outstanding;
            if !(depth >= BACK_TO_BACK_OUTSTANDING) {
                continue; // an application with little to do, not a depth limit
            }
            let rtt = f64::from(model::initiator_depth(q)) / q.iops * 1e9;
            let at_target = q.latency.mean().unwrap_or(0.0);
            // Requests held at the target most of their round trip wait for the target, not
            // for the initiator: more depth would queue them there.
            if !(at_target < TARGET_SHARE_MAX * rtt) {
                continue;
            }
            if model::initiator_depth(q) >= DEEP_DEPTH && !m.fitted {
                continue;
            }
            let p50 = q.latency.quantile(0.5).map(|v| v as f64);
            let lost = 1.0 - r.iops / at_knee.iops;
            let cost = Cost {
                iops_share: Some(lost),
                latency_share: None,
                added_latency_ns: None,
                basis: format!(
                    "reactor model: {} IOPS at {} in flight vs ~{} expected at {knee} (the knee)",
                    si(r.iops),
                    depth_now,
                    si(at_knee.iops)
                ),
            };
            let mut evidence = vec![
                Evidence::new(
                    "in flight at the initiator",
                    f64::from(model::initiator_depth(q)),
                    "",
                ),
                Evidence::new("avg outstanding at the target", depth, ""),
                Evidence::new("qpair IOPS", q.iops, "IOPS"),
                Evidence::new("round trip (depth / IOPS)", rtt / 1e3, "us"),
                Evidence::new("time at the target", at_target / 1e3, "us"),
                Evidence::new("reactor busy", r.busy_ratio * 100.0, "%"),
                Evidence::new("reactor busy ns per I/O", m.anchor.cost_ns, "ns"),
                Evidence::new("modelled plateau", m.plateau(), "IOPS"),
                Evidence::new("modelled IOPS at the knee", at_knee.iops, "IOPS"),
            ];
            if let Some(s) = q.queue_size {
                evidence.push(Evidence::new("queue size", f64::from(s), ""));
            }
            if let Some(p) = p50 {
                evidence.push(Evidence::new("p50 latency at the target", p / 1e3, "us"));
            }
            out.push(costed(
                FindingKind::InitiatorLimited,
                cost,
                Subject::Qpair {
                    reactor: q.reactor,
                    slot: q.slot,
                },
                format!(
                    "qpair {}.{} keeps only {} request(s) in flight ({} IOPS; the target holds \
                     them {} of their {} round trip) while reactor {} could serve ~{} IOPS at \
                     {knee} in flight: the initiator's queue depth, not the target, limits \
                     throughput",
                    q.reactor,
                    q.slot,
                    model::initiator_depth(q),
                    si(q.iops),
                    us(at_target),
                    us(rtt),
                    r.index,
                    si(at_knee.iops),
                ),
                evidence,
                w,
                margin(gain, 1.0 + STARVED_GAIN, 3.0),
            ));
        }
    }
}

fn buffers(w: &Window, out: &mut Vec<Finding>) {
    for r in &w.reactors {
        let waits = buffer_waits(r);
        let srq = srq_dry(r);
        if waits.is_none() && srq.is_none() {
            continue;
        }
        let mut evidence = Vec::new();
        let mut said = Vec::new();
        let mut severity = Severity::Warning;
        let mut confidence: f64 = 0.0;
        if let Some(per_io) = waits {
            if per_io >= 0.1 {
                severity = Severity::Critical;
            }
            confidence = confidence.max(margin(per_io, BUFFER_WAITS_PER_IO, 0.1));
            said.push(format!(
                "{} of requests waited for a data buffer ({} waits for {} I/Os)",
                pct(per_io),
                r.buffer_waits,
                r.completions
            ));
            evidence.extend([
                Evidence::new("buffer waits", r.buffer_waits as f64, ""),
                Evidence::new("buffer waits per I/O", per_io * 100.0, "%"),
            ]);
        }
        if let Some(q) = srq {
            // The low-water mark is since the SRQ was created: a dry SRQ stays dry in the data.
            // Seeing it fall to 0 in this window, or the SRQ still nearly empty at its end,
            // says it is happening now, not once at some earlier burst.
            let now_low = (q.srq_depth as f64) < SRQ_LOW_SHARE * q.srq_size as f64;
            if now_low {
                severity = Severity::Critical;
            }
            confidence = confidence.max(if q.srq_ran_dry_in_window || now_low {
                0.9
            } else {
                0.7
            });
            said.push(format!(
                "its shared receive queue ran dry (low water 0 of {} receive buffers, {} posted \
                 at the window's end{}): hosts got receiver-not-ready NAKs and retried",
                q.srq_size,
                q.srq_depth,
                match q.srq_empties {
                    Some(n) if n > 0 => format!(", emptied {n} times in this window"),
                    _ if q.srq_ran_dry_in_window => ", emptied in this window".to_string(),
                    _ => String::new(),
                }
            ));
            evidence.extend([
                Evidence::new("SRQ low water", q.srq_low_water as f64, ""),
                Evidence::new("SRQ depth", q.srq_depth as f64, ""),
                Evidence::new("SRQ size", q.srq_size as f64, ""),
                Evidence::new("RDMA receive WRs posted", q.recv_wrs as f64, ""),
            ]);
            if let Some(n) = q.srq_empties {
                evidence.push(Evidence::new("SRQ emptied in window", n as f64, "times"));
            }
            if let Some(c) = q.completions_per_nonempty_poll {
                evidence.push(Evidence::new(
                    "RDMA completions per nonempty CQ poll",
                    c,
                    "",
                ));
            }
        }
        evidence.extend([
            Evidence::new("reactor IOPS", r.iops, "IOPS"),
            Evidence::new("avg outstanding", r.avg_outstanding, ""),
        ]);
        let fix = match (waits.is_some(), srq.is_some()) {
            (true, true) => "receive and data buffers are both too few for this load",
            (false, true) => {
                "the shared receive queue is too shallow for this many commands in flight, or \
                 the reactor reposts receives too late"
            }
            _ => "the buffer pool is too small for this depth and I/O size",
        };
        out.push(candidate(
            FindingKind::BufferStarvation,
            severity,
            Subject::Reactor { index: r.index },
            format!("reactor {}: {}: {fix}", r.index, said.join("; ")),
            evidence,
            w,
            confidence,
        ));
    }
}

/// Buffer waits per I/O, when over [`BUFFER_WAITS_PER_IO`].
fn buffer_waits(r: &ReactorWindow) -> Option<f64> {
    if r.buffer_waits == 0 || r.completions == 0 {
        return None;
    }
    let per_io = r.buffer_waits as f64 / r.completions as f64;
    (per_io > BUFFER_WAITS_PER_IO).then_some(per_io)
}

/// The reactor's RDMA figures when its shared receive queue ran dry and it carries RDMA traffic
/// in this window. With the target's count of empties that means "emptied within this window"
/// (a burst long ago is history: the finding clears); recordings without the count fall back
/// on the sticky low-water mark.
fn srq_dry(r: &ReactorWindow) -> Option<&RdmaReactorWindow> {
    r.rdma.as_ref().filter(|q| {
        let dry = match q.srq_empties {
            Some(n) => n > 0,
            None => q.srq_ran_dry,
        };
        dry && q.completions >= SRQ_MIN_COMPLETIONS
    })
}

fn imbalance(w: &Window, out: &mut Vec<Finding>) {
    let live: Vec<&ReactorWindow> = w.reactors.iter().filter(|r| !r.stalled).collect();
    if live.len() < 2 {
        return;
    }
    let Some(hot) = live
        .iter()
        .filter(|r| r.busy_ratio >= SATURATED_BUSY && r.iops > 0.0)
        .max_by(|a, b| a.busy_ratio.total_cmp(&b.busy_ratio))
    else {
        return;
    };
    let Some(cold) = live
        .iter()
        .filter(|r| r.index != hot.index)
        .min_by(|a, b| a.iops.total_cmp(&b.iops))
    else {
        return;
    };
    if !(cold.iops < IMBALANCE_SHARE * hot.iops) {
        return;
    }
    let share = cold.iops / hot.iops;
    out.push(candidate(
        FindingKind::ReactorImbalance,
        Severity::Warning,
        Subject::Target,
        format!(
            "reactor {} is {} busy serving {} IOPS on {} qpair(s) while reactor {} serves {} IOPS \
             on {} qpair(s) at {} busy: the work is unevenly spread over the reactors",
            hot.index,
            pct(hot.busy_ratio),
            si(hot.iops),
            io_qpairs(w, hot.index),
            cold.index,
            si(cold.iops),
            io_qpairs(w, cold.index),
            pct(cold.busy_ratio)
        ),
        vec![
            Evidence::new(
                format!("reactor {} busy", hot.index),
                hot.busy_ratio * 100.0,
                "%",
            ),
            Evidence::new(format!("reactor {} IOPS", hot.index), hot.iops, "IOPS"),
            Evidence::new(
                format!("reactor {} qpairs", hot.index),
                f64::from(io_qpairs(w, hot.index)),
                "",
            ),
            Evidence::new(
                format!("reactor {} busy", cold.index),
                cold.busy_ratio * 100.0,
                "%",
            ),
            Evidence::new(format!("reactor {} IOPS", cold.index), cold.iops, "IOPS"),
            Evidence::new(
                format!("reactor {} qpairs", cold.index),
                f64::from(io_qpairs(w, cold.index)),
                "",
            ),
        ],
        w,
        margin(share, IMBALANCE_SHARE, 0.0).min(margin(hot.busy_ratio, SATURATED_BUSY, 1.0)),
    ));
}

fn stage(r: &ReactorWindow, which: Stage) -> Option<&Hist> {
    r.stages
        .iter()
        .find(|(n, h)| *n == which && h.count() > 0)
        .map(|(_, h)| h)
}

fn backend_stages(w: &Window, ctx: &Context<'_>, out: &mut Vec<Finding>) {
    let secs = w.seconds();
    if !(secs > 0.0) {
        return;
    }
    let devices_util: Option<f64> = ctx
        .info
        .namespaces
        .iter()
        .filter_map(|ns| ns.device.as_deref())
        .filter_map(|d| w.devices.iter().find(|x| x.name == d))
        .map(|d| d.utilisation)
        .reduce(f64::max);
    // RAM backends (null, malloc) complete on the reactor itself: their "backend" time is the
    // reactor's own work and its wait to reap the completion, never a device limit.
    let device_backed = ctx
        .info
        .namespaces
        .iter()
        .any(|ns| !RAM_BACKENDS.contains(&ns.backend));
    for r in &w.reactors {
        if r.stalled || r.completions < MIN_COMPLETIONS {
            continue;
        }
        let Some(backend) = stage(r, Stage::Backend).and_then(Hist::mean) else {
            continue;
        };
        let before = stage(r, Stage::ToBackend)
            .and_then(Hist::mean)
            .unwrap_or(0.0);
        let after = stage(r, Stage::ToWire).and_then(Hist::mean);
        // The request's time at the target as the stages split it; the qpair latency only when
        // the stages do not cover the whole request.
        let total = match after {
            Some(a) => before + backend + a,
            None => r.latency.mean().unwrap_or(0.0),
        };
        if !(total > 0.0) {
            continue;
        }
        let backend_share = (backend / total).min(1.0);
        let before_share = (before / total).min(1.0);
        // Little's law on the backend stage: time-weighted requests in the backend.
        let backend_inflight =
            stage(r, Stage::Backend).map_or(0.0, |h| h.sum() as f64 / 1e9 / secs);
        let hw = r.backend_inflight_high_water;
        let subject = Subject::Reactor { index: r.index };
        if device_backed
            && backend_share >= DOMINANT_STAGE_SHARE
            && hw >= BACKEND_MIN_HIGH_WATER
            && backend_inflight >= BACKEND_AT_LIMIT * hw as f64
            && r.busy_ratio < SATURATED_BUSY
        {
            let mut evidence = vec![
                Evidence::new("backend share of latency", backend_share * 100.0, "%"),
                Evidence::new("mean backend time", backend / 1e3, "us"),
                Evidence::new("mean request latency", total / 1e3, "us"),
                Evidence::new("backend in flight (avg)", backend_inflight, ""),
                Evidence::new("backend in flight high-water", hw as f64, ""),
                Evidence::new("reactor busy", r.busy_ratio * 100.0, "%"),
            ];
            if let Some(u) = devices_util {
                evidence.push(Evidence::new("device utilisation", u * 100.0, "%"));
            }
            out.push(candidate(
                FindingKind::BackendSaturated,
                Severity::Warning,
                subject.clone(),
                format!(
                    "reactor {}: the backend takes {} of each request's {} and holds {:.0} \
                     requests against a high-water of {hw}, with the reactor only {} busy: the \
                     backend is the bottleneck",
                    r.index,
                    pct(backend_share),
                    us(total),
                    backend_inflight,
                    pct(r.busy_ratio)
                ),
                evidence,
                w,
                margin(backend_share, DOMINANT_STAGE_SHARE, 0.95),
            ));
        } else if before_share >= STARVED_BEFORE_SHARE
            && backend_share <= BACKEND_IDLE_SHARE
            && r.avg_outstanding >= LOW_OUTSTANDING
            && r.busy_ratio < STARVED_MAX_BUSY
            && devices_util.is_none_or(|u| u < DEVICE_IDLE)
        {
            let mut evidence = vec![
                Evidence::new(
                    "share of latency before the backend",
                    before_share * 100.0,
                    "%",
                ),
                Evidence::new("mean time before the backend", before / 1e3, "us"),
                Evidence::new("backend share of latency", backend_share * 100.0, "%"),
                Evidence::new("avg outstanding", r.avg_outstanding, ""),
                Evidence::new("backend in flight (avg)", backend_inflight, ""),
                Evidence::new("reactor busy", r.busy_ratio * 100.0, "%"),
            ];
            if let Some(u) = devices_util {
                evidence.push(Evidence::new("device utilisation", u * 100.0, "%"));
            }
            out.push(candidate(
                FindingKind::BackendStarved,
                Severity::Warning,
                subject,
                format!(
                    "reactor {}: requests spend {} of their {} before reaching the backend while \
                     the backend holds only {:.1} of {:.0} outstanding and the reactor is {} busy: \
                     the backend is starved by the transport path (data transfer, buffers)",
                    r.index,
                    pct(before_share),
                    us(total),
                    backend_inflight,
                    r.avg_outstanding,
                    pct(r.busy_ratio)
                ),
                evidence,
                w,
                margin(before_share, STARVED_BEFORE_SHARE, 0.9),
            ));
        }
    }
}

fn backend_devices(w: &Window, ctx: &Context<'_>, out: &mut Vec<Finding>) {
    // With stage histograms the per-reactor check above is the better judge.
    if w.reactors
        .iter()
        .any(|r| stage(r, Stage::Backend).is_some())
    {
        return;
    }
    for ns_dev in ctx
        .info
        .namespaces
        .iter()
        .filter_map(|n| n.device.as_deref())
    {
        let Some(d) = w.devices.iter().find(|d| d.name == ns_dev) else {
            continue;
        };
        let Some(lat) = d.avg_latency_us.filter(|l| l.is_finite() && *l > 0.0) else {
            continue;
        };
        if !(d.utilisation >= DEVICE_SATURATED) {
            continue;
        }
        // Service time rising under load: the best recent service time is the baseline.
        let best = ctx
            .history
            .iter()
            .flat_map(|h| h.devices.iter().filter(|x| x.name == d.name))
            .filter_map(|x| x.avg_latency_us)
            .filter(|l| l.is_finite() && *l > 0.0)
            .min_by(f64::total_cmp);
        let Some(best) = best else { continue };
        if !(lat >= 2.0 * best) {
            continue;
        }
        out.push(candidate(
            FindingKind::BackendSaturated,
            Severity::Warning,
            Subject::Device {
                name: d.name.clone(),
            },
            format!(
                "device {} is busy {} of the time and its service time rose to {lat:.0} µs from \
                 {best:.0} µs: the device is the bottleneck",
                d.name,
                pct(d.utilisation)
            ),
            {
                let mut e = vec![
                    Evidence::new("device utilisation", d.utilisation * 100.0, "%"),
                    Evidence::new("service time", lat, "us"),
                    Evidence::new("best recent service time", best, "us"),
                    Evidence::new("device IOPS", d.iops, "IOPS"),
                    Evidence::new("in flight", d.in_flight as f64, ""),
                ];
                // The block layer's own timing, when the kernel probes ran.
                if let Some(p99) = d.kernel.as_ref().and_then(|k| k.p99_us) {
                    e.push(Evidence::new("block layer p99 (upper bound)", p99, "us"));
                }
                e
            },
            w,
            margin(lat / best, 2.0, 4.0),
        ));
    }
}
