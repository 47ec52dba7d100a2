//! Windows: the deltas between two samples, turned into rates, ratios and latency distributions
//! per reactor, qpair, netdev and device (DESIGN §6).
//!
//! Definitions (each derived from monotonic totals, `dt` = window length):
//! - `iops` = completed commands / dt.
//! - `busy_ratio` = busy-poll ns / (busy + idle ns): the share of the reactor's loop that did work.
//! - `ns_per_io` = busy-poll ns / completed I/O: the reactor's cost per I/O, so its capacity is
//!   `1e9 / ns_per_io` IOPS (an upper bound at 100 % busy).
//! - `ios_per_busy_poll` = completed I/O / poll iterations that found work: the reactor's batch
//!   (how many I/Os one working iteration — a receive, the parsing, one send — carries).
//! - `avg_outstanding` = sum of latencies of requests completed in the window / dt. By Little's law
//!   this is the time-weighted mean number of requests in flight, without tracing each one.
//! - `utilisation` (netdev) = max(rx, tx) bytes/s / capacity, capacity = min(link speed, egress
//!   shaping rate).
//! - RDMA per reactor: `completions_per_nonempty_poll` = work completions / CQ polls that found
//!   any (how many completions one productive poll reaps), `completions_per_poll` = completions /
//!   all CQ polls (how often polling the CQ finds nothing), `wrs_per_doorbell` = (send + receive
//!   work requests) / doorbells (how well posting is batched: 1 = one MMIO write per request).
//! - `utilisation` (RDMA port) = max(rx, tx) bytes/s / (data rate / 8), from the port counters,
//!   which see RDMA traffic the netdev counters of a hardware RoCE/IB port never do.
//!
//! Pure; time comes from the samples.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hist::Hist;
use crate::sample::Stage;
use crate::sample::{
    DeviceSample, KernelDeviceSample, MemorySample, NetdevSample, QpairSample, RdmaPortSample,
    RdmaReactorSample, ReactorSample, Sample, TargetInfo,
};
use crate::topology::Topology;

/// One window of activity.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Start (CLOCK_MONOTONIC ns).
    pub start_ns: u64,
    /// End (CLOCK_MONOTONIC ns).
    pub end_ns: u64,
    /// Per reactor.
    pub reactors: Vec<ReactorWindow>,
    /// Per active qpair (completed something, or has requests outstanding).
    pub qpairs: Vec<QpairWindow>,
    /// Per netdev.
    pub netdevs: Vec<NetdevWindow>,
    /// Per block device.
    pub devices: Vec<DeviceWindow>,
    /// Per RDMA port (empty without RDMA devices).
    #[serde(default)]
    pub rdma_ports: Vec<RdmaPortWindow>,
    /// Memory placement at the window's end.
    pub memory: Option<MemorySample>,
    /// TCP retransmits in the window (kernel probes), when known.
    pub tcp_retransmits: Option<u64>,
    /// Request records and kernel events joined (per-stage latency per qpair, tail attribution),
    /// when the collectors read records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<crate::requests::RequestWindow>,
    /// All reactors together.
    pub total: TotalWindow,
    /// What an SPDK target adds (`None` for ringside-tgt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spdk: Option<crate::spdk::SpdkWindow>,
}

impl Window {
    /// Window length in seconds.
    pub fn seconds(&self) -> f64 {
        self.end_ns.saturating_sub(self.start_ns) as f64 / 1e9
    }

    /// The reactor window of a reactor index.
    pub fn reactor(&self, index: u32) -> Option<&ReactorWindow> {
        self.reactors.iter().find(|r| r.index == index)
    }
}

/// All reactors together.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TotalWindow {
    /// I/O completions per second.
    pub iops: f64,
    /// Bytes per second (read + write).
    pub bytes_per_s: f64,
    /// Latency of all I/O.
    pub latency: Hist,
    /// Mean outstanding requests over all qpairs (Little's law).
    pub avg_outstanding: f64,
}

/// A reactor over one window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReactorWindow {
    /// Reactor index.
    pub index: u32,
    /// CPU it is pinned to.
    pub core: u32,
    /// NUMA node of that CPU (topology), when known.
    pub node: Option<u32>,
    /// I/O completions per second (read + write + other).
    pub iops: f64,
    /// Read completions per second.
    pub read_iops: f64,
    /// Write completions per second.
    pub write_iops: f64,
    /// Bytes read per second.
    pub read_bytes_per_s: f64,
    /// Bytes written per second.
    pub write_bytes_per_s: f64,
    /// I/O completions in the window.
    pub completions: u64,
    /// Busy-poll share of the loop, 0..1.
    pub busy_ratio: f64,
    /// Busy-poll ns per completed I/O (`None` without I/O).
    pub ns_per_io: Option<f64>,
    /// Poll loop iterations per second.
    pub polls_per_s: f64,
    /// Completed I/Os per iteration that found work (the reactor's batch), `None` without any.
    #[serde(default)]
    pub ios_per_busy_poll: Option<f64>,
    /// Latency over the reactor's qpairs.
    pub latency: Hist,
    /// Per-stage latency (name, histogram), when the target records stage histograms.
    pub stages: Vec<(Stage, Hist)>,
    /// Buffer waits in the window.
    pub buffer_waits: u64,
    /// Backend submissions per second.
    pub backend_submits_per_s: f64,
    /// Gauge at window end: backend in flight.
    pub backend_inflight: u64,
    /// Backend in-flight high-water (since start).
    pub backend_inflight_high_water: u64,
    /// Errors in the window.
    pub errors: u64,
    /// Fabrics Connects refused in the window.
    #[serde(default)]
    pub connects_refused: u64,
    /// Connections closed on a protocol error in the window.
    #[serde(default)]
    pub protocol_closes: u64,
    /// The reactor's last poll is older than the window: it is not polling.
    pub stalled: bool,
    /// Mean outstanding requests over its qpairs (Little's law).
    pub avg_outstanding: f64,
    /// Qpairs with activity.
    pub active_qpairs: u32,
    /// Thread on-CPU share (schedstat run time / dt), when known.
    pub cpu_ratio: Option<f64>,
    /// Share of the window the thread was runnable but not running, when known.
    pub runqueue_wait_ratio: Option<f64>,
    /// Involuntary context switches per second, when known.
    pub involuntary_switches_per_s: Option<f64>,
    /// Migrations in the window, when known.
    pub migrations: Option<u64>,
    /// CPU the thread last ran on.
    pub last_cpu: Option<u32>,
    /// CPUs the thread may run on.
    pub allowed_cpus: Vec<u32>,
    /// Kernel probes: share of the window preempted, when loaded.
    pub preempted_ratio: Option<f64>,
    /// Kernel probes: preemptions in the window.
    pub preemptions: Option<u64>,
    /// Kernel probes: the main intruder `(pid, comm)`.
    pub top_intruder: Option<(u32, String)>,
    /// Kernel probes: share of the window the agent's own threads ran on the reactor's core
    /// (the agent's cost; already taken out of `preempted_ratio`).
    #[serde(default)]
    pub agent_ratio: Option<f64>,
    /// Kernel probes: hard + soft interrupt share of the window on its core.
    pub irq_ratio: Option<f64>,
    /// Kernel probes: syscalls per second from the reactor thread.
    pub syscalls_per_s: Option<f64>,
    /// RDMA transport work, on a reactor that did any (`None` on a TCP-only reactor).
    #[serde(default)]
    pub rdma: Option<RdmaReactorWindow>,
}

/// A reactor's RDMA transport work over one window: counts are deltas in the window, gauges are
/// at its end.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RdmaReactorWindow {
    /// Completion-queue polls.
    pub cq_polls: u64,
    /// CQ polls that found at least one completion.
    pub cq_polls_nonempty: u64,
    /// Work completions polled.
    pub completions: u64,
    /// Doorbells rung (post send + post SRQ receive calls).
    pub doorbells: u64,
    /// Send-queue work requests posted.
    pub send_wrs: u64,
    /// Receive work requests posted to the SRQ.
    pub recv_wrs: u64,
    /// Completions / nonempty CQ polls (`None` without a nonempty poll).
    pub completions_per_nonempty_poll: Option<f64>,
    /// Completions / all CQ polls (`None` without a poll).
    pub completions_per_poll: Option<f64>,
    /// (Send + receive work requests) / doorbells (`None` without a doorbell).
    pub wrs_per_doorbell: Option<f64>,
    /// Gauge: send work requests posted, not yet completed.
    pub pending_wrs: u64,
    /// Gauge: high water of pending send work requests (since start).
    pub pending_wrs_high_water: u64,
    /// Gauge: receive buffers on the SRQ now.
    pub srq_depth: u64,
    /// Gauge: lowest SRQ depth since the SRQ was created.
    pub srq_low_water: u64,
    /// Gauge: receive buffers the SRQ was created with (0: no SRQ yet).
    pub srq_size: u64,
    /// The SRQ has run dry since it was created (low water 0 of a nonzero size): a capsule found
    /// no receive buffer and the host got receiver-not-ready NAKs.
    pub srq_ran_dry: bool,
    /// ...and it happened during this window: the target counted the SRQ left empty within it
    /// (or, for recordings without that count, the low water was above 0 at its start).
    pub srq_ran_dry_in_window: bool,
    /// Times the SRQ was left empty in this window (`None`: the recording has no such count).
    #[serde(default)]
    pub srq_empties: Option<u64>,
}

/// An RDMA port over one window. Rates are `None` when the counter is missing or unusable in
/// either sample, or the port was not in the previous sample (a port first seen has no
/// baseline: its counters hold everything since the driver loaded).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RdmaPortWindow {
    /// RDMA device.
    pub device: String,
    /// Port number.
    pub port: u32,
    /// Software device (rxe, siw): judged through its netdev, not on its own.
    pub soft: bool,
    /// The netdev under the port, when known.
    pub netdev: Option<String>,
    /// `InfiniBand` or `Ethernet`.
    pub link_layer: Option<String>,
    /// Port state (`ACTIVE`…).
    pub state: Option<String>,
    /// Data rate (bits/s), when known.
    pub rate_bits_per_s: Option<u64>,
    /// Data rate in bytes/s, when known.
    pub capacity_bytes_per_s: Option<f64>,
    /// Transmit bytes/s.
    pub tx_bytes_per_s: Option<f64>,
    /// Receive bytes/s.
    pub rx_bytes_per_s: Option<f64>,
    /// Transmit packets/s.
    pub tx_packets_per_s: Option<f64>,
    /// Receive packets/s.
    pub rx_packets_per_s: Option<f64>,
    /// max(rx, tx) / capacity, when both are known.
    pub utilisation: Option<f64>,
    /// Transmit discards in the window.
    pub xmit_discards: Option<u64>,
    /// Transmit-wait ticks in the window (no flow-control credits).
    pub xmit_wait: Option<u64>,
    /// Every `hw_counters` file's delta in the window (counters absent in either sample are
    /// left out).
    pub hw_counters: BTreeMap<String, u64>,
    /// The retransmit / NAK / timeout / sequence-error class of `hw_counters` that moved in the
    /// window ([`is_retransmit_class`]): link trouble the transport recovered from, slowly.
    pub retransmits: BTreeMap<String, u64>,
}

impl RdmaPortWindow {
    /// Sum of the retransmit-class counter deltas.
    pub fn retransmit_events(&self) -> u64 {
        self.retransmits
            .values()
            .fold(0u64, |a, b| a.saturating_add(*b))
    }
}

/// Whether a `hw_counters` name counts retransmits, NAKs, timeouts or sequence errors: the
/// drivers name them differently (rxe: `duplicate_request`, `out_of_seq_request`,
/// `rcvd_rnr_err`, `send_rnr_err`, `rcvd_seq_err`, `retry_exceeded_err`,
/// `retry_rnr_exceeded_err`, `completer_retry_err`; mlx5: `out_of_sequence`, `packet_seq_err`,
/// `local_ack_timeout_err`, `rnr_nak_retry_err`, `implied_nak_seq_err`, `roce_adp_retrans`…),
/// so the words decide.
pub fn is_retransmit_class(name: &str) -> bool {
    const WORDS: [&str; 7] = [
        "retry",
        "retrans",
        "seq",
        "rnr",
        "timeout",
        "nak",
        "duplicate",
    ];
    let n = name.to_ascii_lowercase();
    WORDS.iter().any(|w| n.contains(w))
}

/// A qpair over one window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QpairWindow {
    /// Reactor index.
    pub reactor: u32,
    /// Slot.
    pub slot: u16,
    /// Generation of the slot's qpair.
    pub generation: u64,
    /// `cntlid << 16 | qid`.
    pub ident: u64,
    /// Completions per second.
    pub iops: f64,
    /// Completions in the window.
    pub completions: u64,
    /// Bytes per second.
    pub bytes_per_s: f64,
    /// Time-weighted mean outstanding (Little's law).
    pub avg_outstanding: f64,
    /// Gauge at window end.
    pub outstanding: u64,
    /// High-water mark of outstanding for this qpair.
    pub high_water: u64,
    /// Queue size granted, when known.
    pub queue_size: Option<u32>,
    /// The host the qpair serves (host NQN, or address when the NQN is empty), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Latency.
    pub latency: Hist,
    /// Errors in the window.
    pub errors: u64,
}

/// A netdev over one window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NetdevWindow {
    /// Interface.
    pub name: String,
    /// Receive bytes/s.
    pub rx_bytes_per_s: f64,
    /// Transmit bytes/s.
    pub tx_bytes_per_s: f64,
    /// Receive packets/s.
    pub rx_packets_per_s: f64,
    /// Transmit packets/s.
    pub tx_packets_per_s: f64,
    /// Link speed in Mb/s, when known.
    pub speed_mbps: Option<u64>,
    /// Egress shaping rate (bytes/s), when shaped.
    pub shaped_rate_bytes: Option<u64>,
    /// min(link speed, shaping rate) in bytes/s, when either is known.
    pub capacity_bytes_per_s: Option<f64>,
    /// max(rx, tx) / capacity, when capacity is known.
    pub utilisation: Option<f64>,
    /// Gauge: egress qdisc backlog (bytes).
    pub qdisc_backlog_bytes: u64,
    /// Qdisc drops in the window.
    pub qdisc_drops: u64,
    /// Qdisc overlimits per second (throttling events).
    pub qdisc_overlimits_per_s: f64,
    /// Device drops (rx + tx) in the window.
    pub drops: u64,
}

/// A block device over one window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceWindow {
    /// Device.
    pub name: String,
    /// Completions per second.
    pub iops: f64,
    /// Bytes per second.
    pub bytes_per_s: f64,
    /// Mean service time (µs) from the kernel's tick counters, when there was I/O.
    pub avg_latency_us: Option<f64>,
    /// Share of the window with I/O in flight, 0..1.
    pub utilisation: f64,
    /// Gauge: in flight.
    pub in_flight: u64,
    /// The block layer's own timing of this device's requests (kernel probes), when loaded.
    #[serde(default)]
    pub kernel: Option<KernelDeviceWindow>,
}

/// A device's requests in the window as the kernel's block tracepoints timed them (issue to
/// completion, so queueing in the target or in io_uring before the block layer is not in it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KernelDeviceWindow {
    /// Requests completed per second.
    pub requests_per_s: f64,
    /// Mean issue-to-completion time (µs), when there were requests.
    pub avg_us: Option<f64>,
    /// Median, as the upper bound of its power-of-two bucket (µs): within 2x above.
    pub p50_us: Option<f64>,
    /// 99th percentile, as the upper bound of its power-of-two bucket (µs).
    pub p99_us: Option<f64>,
    /// Requests that completed with an error in the window.
    pub errors: u64,
}

/// The kernel window of a device from two cumulative kernel samples (`None` without requests).
fn kernel_device_window(
    n: &KernelDeviceSample,
    p: Option<&KernelDeviceSample>,
    secs: f64,
) -> Option<KernelDeviceWindow> {
    let zero = KernelDeviceSample::default();
    let p = p.unwrap_or(&zero);
    let requests = n.requests.saturating_sub(p.requests);
    if requests == 0 {
        return None;
    }
    let buckets: Vec<u64> = n
        .latency_log2
        .iter()
        .enumerate()
        .map(|(i, &c)| c.saturating_sub(p.latency_log2.get(i).copied().unwrap_or(0)))
        .collect();
    let total: u64 = buckets.iter().sum();
    let quantile = |q: f64| -> Option<f64> {
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0u64;
        buckets.iter().enumerate().find_map(|(i, &c)| {
            seen += c;
            (seen >= rank).then(|| 2f64.powi(i as i32 + 1) / 1000.0)
        })
    };
    Some(KernelDeviceWindow {
        requests_per_s: if secs > 0.0 {
            requests as f64 / secs
        } else {
            0.0
        },
        avg_us: Some(
            n.latency_total_ns.saturating_sub(p.latency_total_ns) as f64 / requests as f64 / 1000.0,
        ),
        p50_us: quantile(0.5),
        p99_us: quantile(0.99),
        errors: n.errors.saturating_sub(p.errors),
    })
}

fn rate(now: u64, before: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        return 0.0;
    }
    now.saturating_sub(before) as f64 / secs
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 / whole as f64).clamp(0.0, 1.0)
    }
}

/// Builds the window between two samples. `prev` and `now` come from the same target; entities
/// present only in `now` count from zero (they appeared during the window).
pub fn build(info: &TargetInfo, topo: &Topology, prev: &Sample, now: &Sample) -> Window {
    let start_ns = prev.t_ns;
    let end_ns = now.t_ns.max(prev.t_ns);
    let dt_ns = end_ns - start_ns;
    let secs = dt_ns as f64 / 1e9;
    let empty_r = ReactorSample::default();
    let mut w = Window {
        start_ns,
        end_ns,
        memory: now.memory.clone(),
        ..Window::default()
    };
    let mut total_latency = Hist::empty();

    for r in &now.reactors {
        let p = prev
            .reactors
            .iter()
            .find(|x| x.index == r.index)
            .unwrap_or(&empty_r);
        let core = info
            .reactors
            .iter()
            .find(|x| x.index == r.index)
            .map(|x| x.core)
            .unwrap_or(u32::MAX);
        let d = |a: u64, b: u64| a.saturating_sub(b);
        let reads = d(r.cmds_read, p.cmds_read);
        let writes = d(r.cmds_write, p.cmds_write);
        let other = d(r.cmds_other, p.cmds_other);
        let completions = reads.saturating_add(writes).saturating_add(other);
        let busy = d(r.busy_ns, p.busy_ns);
        let idle = d(r.idle_ns, p.idle_ns);

        let mut rw = ReactorWindow {
            index: r.index,
            core,
            node: topo.node_of_cpu(core),
            iops: completions as f64 / secs.max(f64::MIN_POSITIVE),
            read_iops: rate(r.cmds_read, p.cmds_read, secs),
            write_iops: rate(r.cmds_write, p.cmds_write, secs),
            read_bytes_per_s: rate(r.bytes_read, p.bytes_read, secs),
            write_bytes_per_s: rate(r.bytes_write, p.bytes_write, secs),
            completions,
            busy_ratio: ratio(busy, busy.saturating_add(idle)),
            ns_per_io: (completions > 0).then(|| busy as f64 / completions as f64),
            polls_per_s: rate(r.polls, p.polls, secs),
            ios_per_busy_poll: match d(r.busy_polls, p.busy_polls) {
                0 => None,
                n => (completions > 0).then(|| completions as f64 / n as f64),
            },
            buffer_waits: d(r.buffer_waits, p.buffer_waits),
            backend_submits_per_s: rate(r.backend_submitted, p.backend_submitted, secs),
            backend_inflight: r.backend_inflight,
            backend_inflight_high_water: r.backend_inflight_high_water,
            errors: d(r.errors, p.errors),
            connects_refused: d(r.connects_refused, p.connects_refused),
            protocol_closes: d(r.protocol_closes, p.protocol_closes),
            stalled: dt_ns > 0 && r.last_poll_age_ns > dt_ns && r.polls == p.polls,
            ..ReactorWindow::default()
        };
        if secs <= 0.0 {
            rw.iops = 0.0;
        }
        rw.stages = info
            .stages
            .iter()
            .enumerate()
            .filter_map(|(i, name)| {
                let now_h = r.stages.get(i)?;
                let before = p.stages.get(i).cloned().unwrap_or_default();
                Some((*name, now_h.delta_since(&before)))
            })
            .collect();

        let mut reactor_latency = Hist::empty();
        for q in &r.qpairs {
            let pq = p.qpairs.iter().find(|x| x.slot == q.slot);
            let qw = qpair_window(r.index, q, pq, secs);
            reactor_latency.merge(&qw.latency);
            if qw.completions > 0 || qw.outstanding > 0 {
                rw.avg_outstanding += qw.avg_outstanding;
                rw.active_qpairs += 1;
                w.qpairs.push(qw);
            }
        }
        total_latency.merge(&reactor_latency);
        rw.latency = reactor_latency;

        if let Some(t) = &r.thread {
            let pt = p.thread.as_ref().filter(|x| x.tid == t.tid);
            rw.last_cpu = t.last_cpu;
            rw.allowed_cpus = t.allowed_cpus.clone();
            if let Some(pt) = pt {
                if dt_ns > 0 {
                    rw.cpu_ratio = Some(ratio(d(t.run_ns, pt.run_ns), dt_ns).min(1.0));
                    rw.runqueue_wait_ratio =
                        Some(ratio(d(t.runqueue_wait_ns, pt.runqueue_wait_ns), dt_ns));
                    rw.involuntary_switches_per_s =
                        Some(rate(t.involuntary_switches, pt.involuntary_switches, secs));
                }
                rw.migrations = match (t.migrations, pt.migrations) {
                    (Some(a), Some(b)) => Some(a.saturating_sub(b)),
                    _ => None,
                };
            }
        }
        if let (Some(k), Some(pk)) = (&now.kernel, &prev.kernel) {
            if let Some(kr) = k.reactors.iter().find(|x| x.index == r.index) {
                let pkr = pk.reactors.iter().find(|x| x.index == r.index);
                let zero = Default::default();
                let pkr = pkr.unwrap_or(&zero);
                if dt_ns > 0 {
                    // The agent's own slices are its cost, not the machine's: taken out.
                    let agent = d(kr.agent_ns, pkr.agent_ns);
                    rw.agent_ratio = Some(ratio(agent, dt_ns));
                    rw.preempted_ratio = Some(ratio(
                        d(kr.preempted_ns, pkr.preempted_ns).saturating_sub(agent),
                        dt_ns,
                    ));
                    rw.irq_ratio = Some(ratio(
                        d(
                            kr.irq_ns.saturating_add(kr.softirq_ns),
                            pkr.irq_ns.saturating_add(pkr.softirq_ns),
                        ),
                        dt_ns,
                    ));
                    rw.syscalls_per_s = Some(rate(kr.syscalls, pkr.syscalls, secs));
                }
                rw.preemptions = Some(d(kr.preemptions, pkr.preemptions));
                rw.top_intruder = kr.top_intruder.clone();
            }
        }
        rw.rdma = r
            .rdma
            .as_ref()
            .map(|now_r| rdma_reactor_window(now_r, p.rdma.as_ref()));
        w.total.iops += rw.iops;
        w.total.bytes_per_s += rw.read_bytes_per_s + rw.write_bytes_per_s;
        w.total.avg_outstanding += rw.avg_outstanding;
        w.reactors.push(rw);
    }
    w.total.latency = total_latency;
    w.spdk = crate::spdk::window(prev.spdk.as_ref(), now.spdk.as_ref(), dt_ns);

    for n in &now.netdevs {
        let p = prev.netdevs.iter().find(|x| x.name == n.name);
        w.netdevs.push(netdev_window(n, p, secs));
    }
    for dv in &now.devices {
        let p = prev.devices.iter().find(|x| x.name == dv.name);
        let mut d = device_window(dv, p, secs);
        let kernel = |s: &Sample| {
            s.kernel
                .as_ref()
                .and_then(|k| k.devices.iter().find(|x| x.name == dv.name).cloned())
        };
        if let (Some(k), Some(pk)) = (kernel(now), prev.kernel.as_ref()) {
            // A device the previous sample's probes did not cover yet has no baseline.
            let before = pk.devices.iter().find(|x| x.name == dv.name);
            if before.is_some() {
                d.kernel = kernel_device_window(&k, before, secs);
            }
        }
        w.devices.push(d);
    }
    for port in &now.rdma_ports {
        let p = prev
            .rdma_ports
            .iter()
            .find(|x| x.device == port.device && x.port == port.port);
        w.rdma_ports.push(rdma_port_window(port, p, secs));
    }
    if let (Some(k), Some(pk)) = (&now.kernel, &prev.kernel) {
        w.tcp_retransmits = Some(k.tcp_retransmits.saturating_sub(pk.tcp_retransmits));
    }
    w
}

fn qpair_window(reactor: u32, q: &QpairSample, p: Option<&QpairSample>, secs: f64) -> QpairWindow {
    let zero = QpairSample::default();
    let p = p.unwrap_or(&zero);
    let latency = q.latency.delta_since(&p.latency);
    let avg_outstanding = if secs > 0.0 {
        latency.sum() as f64 / 1e9 / secs
    } else {
        0.0
    };
    QpairWindow {
        reactor,
        slot: q.slot,
        generation: q.generation,
        ident: q.ident,
        iops: rate(q.completed, p.completed, secs),
        completions: q.completed.saturating_sub(p.completed),
        bytes_per_s: rate(q.bytes, p.bytes, secs),
        avg_outstanding,
        outstanding: q.outstanding,
        high_water: q.high_water,
        queue_size: q.queue_size,
        host: q.host.clone(),
        latency,
        errors: q.errors.saturating_sub(p.errors),
    }
}

fn netdev_window(n: &NetdevSample, p: Option<&NetdevSample>, secs: f64) -> NetdevWindow {
    let zero = NetdevSample::default();
    let p = p.unwrap_or(&zero);
    let speed = n.speed_mbps.map(|m| m as f64 * 1e6 / 8.0);
    let shaped = n.shaped_rate_bytes.map(|b| b as f64);
    let capacity = match (speed, shaped) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
    .filter(|c| *c > 0.0);
    let rx = rate(n.rx_bytes, p.rx_bytes, secs);
    let tx = rate(n.tx_bytes, p.tx_bytes, secs);
    NetdevWindow {
        name: n.name.clone(),
        rx_bytes_per_s: rx,
        tx_bytes_per_s: tx,
        rx_packets_per_s: rate(n.rx_packets, p.rx_packets, secs),
        tx_packets_per_s: rate(n.tx_packets, p.tx_packets, secs),
        speed_mbps: n.speed_mbps,
        shaped_rate_bytes: n.shaped_rate_bytes,
        capacity_bytes_per_s: capacity,
        utilisation: capacity.map(|c| rx.max(tx) / c),
        qdisc_backlog_bytes: n.qdisc_backlog_bytes,
        qdisc_drops: n.qdisc_drops.saturating_sub(p.qdisc_drops),
        qdisc_overlimits_per_s: rate(n.qdisc_overlimits, p.qdisc_overlimits, secs),
        drops: n
            .rx_drops
            .saturating_sub(p.rx_drops)
            .saturating_add(n.tx_drops.saturating_sub(p.tx_drops)),
    }
}

fn rdma_reactor_window(r: &RdmaReactorSample, p: Option<&RdmaReactorSample>) -> RdmaReactorWindow {
    // `None` before means every word was zero: the reactor's first RDMA work is in this window.
    let zero = RdmaReactorSample::default();
    let p = p.unwrap_or(&zero);
    let d = |a: u64, b: u64| a.saturating_sub(b);
    let per = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
    let completions = d(r.completions, p.completions);
    let cq_polls = d(r.cq_polls, p.cq_polls);
    let cq_polls_nonempty = d(r.cq_polls_nonempty, p.cq_polls_nonempty);
    let doorbells = d(r.doorbells, p.doorbells);
    let send_wrs = d(r.send_wrs, p.send_wrs);
    let recv_wrs = d(r.recv_wrs, p.recv_wrs);
    let srq_ran_dry = r.srq_size > 0 && r.srq_low_water == 0;
    // A target that counts empties has counted one whenever the low water reached 0; a dry SRQ
    // with no count comes from a recording made before the count existed.
    let counted = r.srq_empty > 0 || !srq_ran_dry;
    let srq_empties = counted.then(|| d(r.srq_empty, p.srq_empty));
    RdmaReactorWindow {
        cq_polls,
        cq_polls_nonempty,
        completions,
        doorbells,
        send_wrs,
        recv_wrs,
        completions_per_nonempty_poll: per(completions, cq_polls_nonempty),
        completions_per_poll: per(completions, cq_polls),
        wrs_per_doorbell: per(send_wrs.saturating_add(recv_wrs), doorbells),
        pending_wrs: r.pending_wrs,
        pending_wrs_high_water: r.pending_wrs_high_water,
        srq_depth: r.srq_depth,
        srq_low_water: r.srq_low_water,
        srq_size: r.srq_size,
        srq_ran_dry,
        srq_ran_dry_in_window: match srq_empties {
            Some(n) => n > 0,
            None => srq_ran_dry && !(p.srq_size > 0 && p.srq_low_water == 0),
        },
        srq_empties,
    }
}

fn rdma_port_window(n: &RdmaPortSample, p: Option<&RdmaPortSample>, secs: f64) -> RdmaPortWindow {
    let delta = |now: Option<u64>, before: Option<Option<u64>>| -> Option<u64> {
        match (now, before.flatten()) {
            (Some(a), Some(b)) => Some(a.saturating_sub(b)),
            _ => None,
        }
    };
    let per_s = |d: Option<u64>| d.filter(|_| secs > 0.0).map(|v| v as f64 / secs);
    let tx = per_s(delta(n.xmit_bytes, p.map(|x| x.xmit_bytes)));
    let rx = per_s(delta(n.rcv_bytes, p.map(|x| x.rcv_bytes)));
    let capacity = n.rate_bits_per_s.filter(|r| *r > 0).map(|r| r as f64 / 8.0);
    let utilisation = match (capacity, tx, rx) {
        (Some(c), Some(t), Some(r)) => Some(t.max(r) / c),
        (Some(c), Some(v), None) | (Some(c), None, Some(v)) => Some(v / c),
        _ => None,
    };
    let hw_counters: BTreeMap<String, u64> = match p {
        Some(p) => n
            .hw_counters
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.saturating_sub(*p.hw_counters.get(k)?))))
            .collect(),
        None => BTreeMap::new(),
    };
    let retransmits = hw_counters
        .iter()
        .filter(|(k, v)| **v > 0 && is_retransmit_class(k))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    RdmaPortWindow {
        device: n.device.clone(),
        port: n.port,
        soft: n.soft,
        netdev: n.netdev.clone(),
        link_layer: n.link_layer.clone(),
        state: n.state.clone(),
        rate_bits_per_s: n.rate_bits_per_s,
        capacity_bytes_per_s: capacity,
        tx_bytes_per_s: tx,
        rx_bytes_per_s: rx,
        tx_packets_per_s: per_s(delta(n.xmit_packets, p.map(|x| x.xmit_packets))),
        rx_packets_per_s: per_s(delta(n.rcv_packets, p.map(|x| x.rcv_packets))),
        utilisation,
        xmit_discards: delta(n.xmit_discards, p.map(|x| x.xmit_discards)),
        xmit_wait: delta(n.xmit_wait, p.map(|x| x.xmit_wait)),
        hw_counters,
        retransmits,
    }
}

fn device_window(dv: &DeviceSample, p: Option<&DeviceSample>, secs: f64) -> DeviceWindow {
    let zero = DeviceSample::default();
    let p = p.unwrap_or(&zero);
    let ios = dv
        .reads
        .saturating_sub(p.reads)
        .saturating_add(dv.writes.saturating_sub(p.writes));
    let ticks = dv
        .read_ticks_ms
        .saturating_sub(p.read_ticks_ms)
        .saturating_add(dv.write_ticks_ms.saturating_sub(p.write_ticks_ms));
    let sectors = dv
        .sectors_read
        .saturating_sub(p.sectors_read)
        .saturating_add(dv.sectors_written.saturating_sub(p.sectors_written));
    DeviceWindow {
        name: dv.name.clone(),
        iops: if secs > 0.0 { ios as f64 / secs } else { 0.0 },
        bytes_per_s: if secs > 0.0 {
            sectors as f64 * 512.0 / secs
        } else {
            0.0
        },
        avg_latency_us: (ios > 0).then(|| ticks as f64 * 1000.0 / ios as f64),
        utilisation: if secs > 0.0 {
            (dv.io_ticks_ms.saturating_sub(p.io_ticks_ms) as f64 / 1000.0 / secs).min(1.0)
        } else {
            0.0
        },
        in_flight: dv.in_flight,
        kernel: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{KernelSample, ReactorInfo, ThreadSample};

    fn info() -> TargetInfo {
        TargetInfo {
            reactors: vec![ReactorInfo {
                index: 0,
                core: 1,
                tid: Some(42),
            }],
            ..TargetInfo::default()
        }
    }

    fn sample(t_s: u64, reads: u64, busy_ms: u64, lat_us: u64) -> Sample {
        let mut latency = Hist::empty();
        for _ in 0..reads {
            latency.record(lat_us * 1000);
        }
        Sample {
            t_ns: t_s * 1_000_000_000,
            reactors: vec![ReactorSample {
                index: 0,
                polls: t_s * 1000,
                busy_polls: t_s * 100,
                busy_ns: busy_ms * 1_000_000,
                idle_ns: (t_s * 1000 - busy_ms) * 1_000_000,
                cmds_read: reads,
                bytes_read: reads * 4096,
                qpairs: vec![QpairSample {
                    slot: 0,
                    completed: reads,
                    submitted: reads,
                    latency,
                    ..QpairSample::default()
                }],
                thread: Some(ThreadSample {
                    tid: 42,
                    run_ns: t_s * 1_000_000_000,
                    runqueue_wait_ns: t_s * 100_000_000,
                    ..ThreadSample::default()
                }),
                ..ReactorSample::default()
            }],
            ..Sample::default()
        }
    }

    #[test]
    fn rates_ratios_and_littles_law_come_from_deltas() {
        // 1 s window: 40 000 reads at 25 µs each → avg outstanding 40 000 × 25 µs / 1 s = 1.0.
        let w = build(
            &info(),
            &Topology::default(),
            &sample(10, 10_000, 2_000, 25),
            &sample(11, 50_000, 2_400, 25),
        );
        let r = &w.reactors[0];
        assert_eq!(r.core, 1);
        assert!((r.iops - 40_000.0).abs() < 1e-6, "iops {}", r.iops);
        assert!((r.read_bytes_per_s - 40_000.0 * 4096.0).abs() < 1e-3);
        assert!((r.busy_ratio - 0.4).abs() < 1e-9, "busy {}", r.busy_ratio);
        assert_eq!(r.ns_per_io, Some(10_000.0));
        // 40 000 I/Os over 100 working iterations.
        assert_eq!(r.ios_per_busy_poll, Some(400.0));
        let q = &w.qpairs[0];
        assert!(
            (q.avg_outstanding - 1.0).abs() < 0.01,
            "Little's law outstanding {}",
            q.avg_outstanding
        );
        assert_eq!(q.latency.count(), 40_000);
        assert_eq!(r.runqueue_wait_ratio, Some(0.1));
        assert!((w.total.iops - 40_000.0).abs() < 1e-6);
    }

    #[test]
    fn a_zero_length_window_yields_zero_rates_not_nan() {
        let s = sample(5, 100, 10, 25);
        let w = build(&info(), &Topology::default(), &s, &s);
        assert_eq!(w.reactors[0].iops, 0.0);
        assert!(w.reactors[0].busy_ratio.is_finite());
        assert!(w.qpairs.is_empty(), "no activity, no qpair window");
    }

    fn rdma_sample(t_s: u64, r: RdmaReactorSample, ports: Vec<RdmaPortSample>) -> Sample {
        let mut s = sample(t_s, 0, 0, 25);
        s.reactors[0].rdma = (!r.is_zero()).then_some(r);
        s.rdma_ports = ports;
        s
    }

    #[test]
    fn rdma_reactor_ratios_come_from_deltas_and_gauges_from_the_end() {
        let before = RdmaReactorSample {
            cq_polls: 1_000,
            cq_polls_nonempty: 100,
            completions: 400,
            doorbells: 50,
            send_wrs: 150,
            recv_wrs: 100,
            srq_size: 512,
            srq_depth: 512,
            srq_low_water: 480,
            ..RdmaReactorSample::default()
        };
        let after = RdmaReactorSample {
            cq_polls: 11_000,
            cq_polls_nonempty: 2_100,
            completions: 8_400,
            doorbells: 2_050,
            send_wrs: 6_150,
            recv_wrs: 4_100,
            pending_wrs: 12,
            pending_wrs_high_water: 40,
            srq_size: 512,
            srq_depth: 20,
            srq_low_water: 0,
            srq_empty: 3,
        };
        let w = build(
            &info(),
            &Topology::default(),
            &rdma_sample(10, before, vec![]),
            &rdma_sample(11, after.clone(), vec![]),
        );
        let x = w.reactors[0]
            .rdma
            .as_ref()
            .expect("an RDMA reactor has RDMA figures");
        assert_eq!(
            (x.cq_polls, x.completions, x.doorbells),
            (10_000, 8_000, 2_000)
        );
        assert_eq!(x.completions_per_nonempty_poll, Some(4.0));
        assert_eq!(x.completions_per_poll, Some(0.8));
        assert_eq!(x.wrs_per_doorbell, Some(5.0), "(6000 + 4000) / 2000");
        assert_eq!((x.pending_wrs, x.pending_wrs_high_water), (12, 40));
        assert_eq!((x.srq_depth, x.srq_low_water, x.srq_size), (20, 0, 512));
        assert!(x.srq_ran_dry && x.srq_ran_dry_in_window);
        assert_eq!(x.srq_empties, Some(3));

        // The next window: still dry (sticky low water), but not newly.
        let later = RdmaReactorSample {
            completions: 9_000,
            ..after.clone()
        };
        let w = build(
            &info(),
            &Topology::default(),
            &rdma_sample(11, after, vec![]),
            &rdma_sample(12, later, vec![]),
        );
        let x = w.reactors[0].rdma.as_ref().expect("rdma");
        assert!(x.srq_ran_dry && !x.srq_ran_dry_in_window);
        assert_eq!(x.srq_empties, Some(0), "not emptied again");
        assert_eq!(
            x.completions_per_poll, None,
            "no CQ poll in the window, no ratio"
        );

        // A recording from before the target counted empties: the sticky low water decides.
        let old = |t, low| {
            let r = RdmaReactorSample {
                srq_size: 512,
                srq_depth: 100,
                srq_low_water: low,
                completions: t * 1_000,
                ..RdmaReactorSample::default()
            };
            rdma_sample(t, r, vec![])
        };
        let w = build(&info(), &Topology::default(), &old(20, 50), &old(21, 0));
        let x = w.reactors[0].rdma.as_ref().expect("rdma");
        assert_eq!(x.srq_empties, None, "no count in the recording");
        assert!(x.srq_ran_dry && x.srq_ran_dry_in_window);
    }

    #[test]
    fn kernel_block_timing_joins_its_device_by_name_from_deltas() {
        let dev = |reads: u64| DeviceSample {
            name: "loop3".into(),
            reads,
            read_ticks_ms: reads / 10,
            io_ticks_ms: 500,
            ..DeviceSample::default()
        };
        let kdev = |requests: u64, slow: u64| {
            let mut log2 = vec![0; 40];
            log2[14] = requests - slow; // [16.4, 32.8) µs
            log2[20] = slow; // [1.05, 2.1) ms
            KernelDeviceSample {
                name: "loop3".into(),
                requests,
                bytes: requests * 4096,
                errors: 0,
                latency_total_ns: (requests - slow) * 20_000 + slow * 1_500_000,
                latency_log2: log2,
            }
        };
        let with = |t: u64, reads: u64, k: Option<KernelDeviceSample>| {
            let mut s = sample(t, 0, 0, 25);
            s.devices = vec![dev(reads)];
            s.kernel = Some(KernelSample {
                devices: k.into_iter().collect(),
                ..KernelSample::default()
            });
            s
        };
        // 1000 requests in the window, 20 of them slow (2 %): p50 in the 32.8 µs bucket, p99 in
        // the 2.1 ms one.
        let w = build(
            &info(),
            &Topology::default(),
            &with(10, 1_000, Some(kdev(1_000, 10))),
            &with(12, 2_000, Some(kdev(2_000, 30))),
        );
        let k = w.devices[0].kernel.as_ref().expect("kernel timing");
        assert_eq!(k.requests_per_s, 500.0);
        assert_eq!(k.p50_us, Some(32.768));
        assert_eq!(k.p99_us, Some(2_097.152));
        let avg = k.avg_us.expect("avg");
        assert!(
            (avg - (980.0 * 20.0 + 20.0 * 1_500.0) / 1_000.0).abs() < 1e-6,
            "{avg}"
        );
        // No baseline for the device in the previous sample: no window (its totals reach back
        // to when the probes attached).
        let w = build(
            &info(),
            &Topology::default(),
            &with(10, 1_000, None),
            &with(12, 2_000, Some(kdev(2_000, 30))),
        );
        assert_eq!(w.devices[0].kernel, None);
    }

    #[test]
    fn a_tcp_reactor_has_no_rdma_figures() {
        let w = build(
            &info(),
            &Topology::default(),
            &sample(10, 10, 1, 25),
            &sample(11, 20, 2, 25),
        );
        assert_eq!(w.reactors[0].rdma, None);
        assert!(w.rdma_ports.is_empty());
    }

    fn port(xmit_bytes: Option<u64>, rcv_bytes: Option<u64>, hw: &[(&str, u64)]) -> RdmaPortSample {
        RdmaPortSample {
            device: "mlx5_0".into(),
            port: 1,
            netdev: Some("ens1f0".into()),
            rate_bits_per_s: Some(25_000_000_000),
            xmit_bytes,
            rcv_bytes,
            xmit_packets: Some(1_000),
            hw_counters: hw.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            ..RdmaPortSample::default()
        }
    }

    #[test]
    fn rdma_port_rates_utilisation_and_retransmit_class_deltas() {
        let a = port(
            Some(1_000_000_000),
            Some(5_000),
            &[
                ("local_ack_timeout_err", 3),
                ("rx_write_requests", 10),
                ("out_of_sequence", 1),
            ],
        );
        let b = port(
            Some(1_000_000_000 + 2_968_750_000),
            Some(5_000 + 1_000_000),
            &[
                ("local_ack_timeout_err", 7),
                ("rx_write_requests", 99),
                ("out_of_sequence", 1),
            ],
        );
        let w = build(
            &info(),
            &Topology::default(),
            &rdma_sample(10, RdmaReactorSample::default(), vec![a.clone()]),
            &rdma_sample(11, RdmaReactorSample::default(), vec![b]),
        );
        let p = &w.rdma_ports[0];
        assert_eq!(p.tx_bytes_per_s, Some(2_968_750_000.0));
        assert_eq!(p.capacity_bytes_per_s, Some(3_125_000_000.0));
        let u = p.utilisation.expect("utilisation with rate and bytes");
        assert!((u - 0.95).abs() < 1e-9, "utilisation {u}");
        assert_eq!(p.hw_counters.get("rx_write_requests"), Some(&89));
        assert_eq!(
            p.retransmits
                .iter()
                .map(|(k, v)| (k.as_str(), *v))
                .collect::<Vec<_>>(),
            vec![("local_ack_timeout_err", 4)],
            "only retransmit-class counters that moved"
        );

        // A counter unusable in either sample gives no rate, never a spike.
        let c = port(None, Some(5_000 + 2_000_000), &[]);
        let w = build(
            &info(),
            &Topology::default(),
            &rdma_sample(10, RdmaReactorSample::default(), vec![a]),
            &rdma_sample(11, RdmaReactorSample::default(), vec![c]),
        );
        let p = &w.rdma_ports[0];
        assert_eq!(p.tx_bytes_per_s, None);
        assert_eq!(p.rx_bytes_per_s, Some(2_000_000.0));
        assert_eq!(p.utilisation, Some(0.00064));
    }

    #[test]
    fn a_port_first_seen_has_no_baseline() {
        let b = port(Some(9_000_000_000_000), Some(1), &[("packet_seq_err", 100)]);
        let w = build(
            &info(),
            &Topology::default(),
            &rdma_sample(10, RdmaReactorSample::default(), vec![]),
            &rdma_sample(11, RdmaReactorSample::default(), vec![b]),
        );
        let p = &w.rdma_ports[0];
        assert_eq!((p.tx_bytes_per_s, p.utilisation), (None, None));
        assert!(p.retransmits.is_empty());
    }

    #[test]
    fn retransmit_class_names_across_drivers() {
        for n in [
            "duplicate_request",
            "out_of_seq_request",
            "rcvd_rnr_err",
            "send_rnr_err",
            "rcvd_seq_err",
            "retry_exceeded_err",
            "retry_rnr_exceeded_err",
            "completer_retry_err",
            "out_of_sequence",
            "packet_seq_err",
            "local_ack_timeout_err",
            "rnr_nak_retry_err",
            "implied_nak_seq_err",
            "roce_adp_retrans",
        ] {
            assert!(is_retransmit_class(n), "{n} is retransmit-class");
        }
        for n in [
            "sent_pkts",
            "rcvd_pkts",
            "rx_write_requests",
            "ack_deferred",
            "link_downed",
        ] {
            assert!(!is_retransmit_class(n), "{n} is not retransmit-class");
        }
    }
}
