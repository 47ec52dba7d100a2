//! What the collectors hand to the core: a [`TargetInfo`] once (what the target is) and a
//! [`Sample`] per tick (what the counters say now).
//!
//! Every counter in a sample is a **monotonic total** as read from its source (trace-ring counters
//! page, procfs, perf, `/proc/net/dev`, qdisc stats, eBPF maps); the core derives rates and
//! ratios from deltas between consecutive samples ([`crate::window`]). Every time is
//! CLOCK_MONOTONIC nanoseconds (DESIGN §6: ring ticks are converted with the ring header's
//! calibration before they get here; eBPF uses `bpf_ktime_get_ns`, the same clock).
//!
//! A source that is missing leaves its field `None` or empty and says why once in
//! [`TargetInfo::capabilities`]; the core never fails because a source is absent.
//!
//! Pure data, `serde` both ways: a recording is `TargetInfo` then one `Sample` per line
//! ([`crate::recording`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hist::Hist;
use crate::requests::{KernelSpan, RequestBatch};

pub use trace_ring::description::{BackendKind, IdlePolicy, PlacementPolicy, Stage, Transport};

/// What the target is: from the trace file's description plus what the agent learned about
/// the machine at attach time. Constant for a session.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetInfo {
    /// Instance name.
    pub name: String,
    /// Target process id.
    pub pid: u32,
    /// Reactors (one per core of the target's core list).
    pub reactors: Vec<ReactorInfo>,
    /// Listeners.
    pub listeners: Vec<ListenerInfo>,
    /// Namespaces and their backends.
    pub namespaces: Vec<NamespaceInfo>,
    /// Per-stage histograms, in counters-page order (may be empty: the target then records
    /// only per-qpair latency).
    pub stages: Vec<Stage>,
    /// The target's tunables as it runs now (the recommender's "current value").
    pub settings: TargetSettings,
    /// Each source the agent tried: available or not, and one line saying why.
    pub capabilities: Vec<Capability>,
    /// What kind of target this is when it is not ringside-tgt (`"spdk"`): sinks label it and the
    /// recommender writes fragments in its vocabulary. Absent from older recordings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flavor: Option<String>,
}

/// A reactor.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactorInfo {
    /// Reactor index (ring number).
    pub index: u32,
    /// CPU (OS index) it is pinned to.
    pub core: u32,
    /// Thread id, when known.
    pub tid: Option<u32>,
}

/// A listener and the NIC behind it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerInfo {
    /// The listener's transport.
    pub transport: Transport,
    /// "ip:port".
    pub address: String,
    /// The netdev carrying the address (`lo`, `eth0`, `veth-tgt`…), when found.
    pub netdev: Option<String>,
}

/// A namespace and its backing device.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceInfo {
    /// NQN of the subsystem.
    pub nqn: String,
    /// Namespace id.
    pub nsid: u32,
    /// The namespace's backend.
    pub backend: BackendKind,
    /// Block device name (`nvme0n1`, `loop3`) or file, when any.
    pub device: Option<String>,
}

/// The target's tunables, as far as the agent could learn them. `None` = unknown.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetSettings {
    /// Core list (CPU OS indexes), one reactor each.
    pub cores: Vec<u32>,
    /// Idle policy.
    pub idle: Option<IdlePolicy>,
    /// Connection placement policy.
    pub placement: Option<PlacementPolicy>,
    /// Largest I/O queue size the target grants.
    pub max_queue_depth: Option<u32>,
    /// Largest number of I/O queues per controller.
    pub max_io_queues: Option<u32>,
}

/// One source's availability.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capability {
    /// Short name: "trace-ring", "procfs", "perf", "netdev", "qdisc", "numa_maps", "topology",
    /// "ebpf:sched"…
    pub name: String,
    /// Whether data flows from it.
    pub available: bool,
    /// One line: what is missing and what still works, or what it provides.
    pub note: String,
}

/// One collection tick: cumulative counters of every source, at `t_ns`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// CLOCK_MONOTONIC ns when the sample was taken.
    pub t_ns: u64,
    /// Per-reactor counters (from the counters page) and thread statistics.
    pub reactors: Vec<ReactorSample>,
    /// Network devices carrying listeners (and any others collected).
    pub netdevs: Vec<NetdevSample>,
    /// Block devices behind namespaces.
    pub devices: Vec<DeviceSample>,
    /// Where the target's memory sits, from `/proc/<pid>/numa_maps`.
    pub memory: Option<MemorySample>,
    /// Aggregates from the kernel probes, when loaded.
    pub kernel: Option<KernelSample>,
    /// RDMA ports (`/sys/class/infiniband/<dev>/ports/<n>`), empty on a machine without RDMA
    /// devices. Absent from recordings made before RDMA ports were collected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rdma_ports: Vec<RdmaPortSample>,
    /// What an SPDK target adds (poll groups, pollers, its own busy accounting, the trace
    /// profile); `None` for ringside-tgt and in older recordings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spdk: Option<crate::spdk::SpdkSample>,
    /// Request records rebuilt from the rings since the previous sample (bounded; the batch says
    /// how), when the ring collector reads records. Shared: the session keeps the last sample
    /// (for recordings) while the analyzer holds its batch until the window closes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<std::sync::Arc<RequestBatch>>,
    /// Kernel events streamed since the previous sample (preemptions of reactors, interrupts on
    /// their cores, slow block requests, retransmits), on the same clock.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kernel_events: Vec<KernelSpan>,
}

/// A reactor's counters at one instant (a copy of the counters page, converted to ns).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReactorSample {
    /// Reactor index.
    pub index: u32,
    /// Poll loop iterations.
    pub polls: u64,
    /// Iterations that found work.
    pub busy_polls: u64,
    /// ns spent in busy iterations.
    pub busy_ns: u64,
    /// ns spent in idle iterations.
    pub idle_ns: u64,
    /// Age (ns) of the last completed poll at sample time (a stalled reactor's grows).
    pub last_poll_age_ns: u64,
    /// Read-class commands completed.
    pub cmds_read: u64,
    /// Write-class commands completed.
    pub cmds_write: u64,
    /// Other I/O commands completed.
    pub cmds_other: u64,
    /// Admin/fabrics commands completed.
    pub cmds_admin: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Bytes written.
    pub bytes_write: u64,
    /// Requests that waited for a data buffer.
    pub buffer_waits: u64,
    /// Requests submitted to the backend.
    pub backend_submitted: u64,
    /// Backend completions.
    pub backend_completed: u64,
    /// Gauge: requests in flight at the backend.
    pub backend_inflight: u64,
    /// Gauge: high-water mark of backend in-flight.
    pub backend_inflight_high_water: u64,
    /// Connections opened on this reactor.
    pub connections_opened: u64,
    /// Connections closed.
    pub connections_closed: u64,
    /// Errors (transport + protocol + backend + status).
    pub errors: u64,
    /// Fabrics Connects refused (trace-ring ABI 1.5; 0 in older files and recordings).
    #[serde(default)]
    pub connects_refused: u64,
    /// Connections closed on a protocol error (trace-ring ABI 1.5; 0 in older files).
    #[serde(default)]
    pub protocol_closes: u64,
    /// Qpair slots in use.
    pub qpairs: Vec<QpairSample>,
    /// Per-stage latency histograms (cumulative), in [`TargetInfo::stages`] order.
    pub stages: Vec<Hist>,
    /// The reactor thread as the OS sees it.
    pub thread: Option<ThreadSample>,
    /// RDMA transport counters (trace-ring ABI 1.3); `None` on a reactor that never did RDMA
    /// work (every word zero) and in recordings made before they existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdma: Option<RdmaReactorSample>,
}

/// A reactor's RDMA transport counters (the counters page's `rdma_*` words). The first six are
/// monotonic totals, the rest gauges.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RdmaReactorSample {
    /// Completion-queue polls (`ibv_poll_cq` calls).
    pub cq_polls: u64,
    /// Polls that returned at least one completion.
    pub cq_polls_nonempty: u64,
    /// Work completions polled (send, RDMA READ/WRITE and receive).
    pub completions: u64,
    /// Doorbells rung (`ibv_post_send` and `ibv_post_srq_recv` calls).
    pub doorbells: u64,
    /// Send-queue work requests posted (SEND, RDMA READ, RDMA WRITE).
    pub send_wrs: u64,
    /// Receive work requests posted to the shared receive queue.
    pub recv_wrs: u64,
    /// Gauge: send-queue work requests posted and not yet completed, all qpairs.
    pub pending_wrs: u64,
    /// Gauge: high-water mark of `pending_wrs`.
    pub pending_wrs_high_water: u64,
    /// Gauge: receive buffers posted on the shared receive queue now.
    pub srq_depth: u64,
    /// Gauge: lowest `srq_depth` since the SRQ was created (0: it ran dry at least once).
    pub srq_low_water: u64,
    /// Gauge: receive buffers the SRQ was created with.
    pub srq_size: u64,
    /// Times the SRQ was left with no receive posted (monotonic; absent from recordings made
    /// before the target counted it, which read as 0).
    #[serde(default)]
    pub srq_empty: u64,
}

impl RdmaReactorSample {
    /// Whether every word is zero (a TCP-only reactor): the collector stores `None` then.
    pub fn is_zero(&self) -> bool {
        *self == RdmaReactorSample::default()
    }
}

/// One port of an RDMA device, from sysfs. Counters are cumulative; `None` means the driver does
/// not provide the counter or it is unusable (a 32-bit counter stuck at its maximum is not
/// traffic).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RdmaPortSample {
    /// RDMA device (`mlx5_0`, `rxe0`).
    pub device: String,
    /// Port number (from 1).
    pub port: u32,
    /// A software device (rxe, siw): its traffic goes through `netdev`, whose counters already
    /// count it, so the port is not judged on its own.
    pub soft: bool,
    /// The network device the port runs over, when known (`ens1f0`, `eth0`).
    pub netdev: Option<String>,
    /// `InfiniBand` or `Ethernet` (RoCE / iWARP), when known.
    pub link_layer: Option<String>,
    /// Port state as sysfs says it (`ACTIVE`, `DOWN`, `INIT`…), without the numeric prefix.
    pub state: Option<String>,
    /// Signalling rate in bits per second (`ports/<n>/rate`), when known.
    pub rate_bits_per_s: Option<u64>,
    /// Bytes transmitted (`port_xmit_data` × 4, or its 64-bit extended form).
    pub xmit_bytes: Option<u64>,
    /// Bytes received (`port_rcv_data` × 4).
    pub rcv_bytes: Option<u64>,
    /// Packets transmitted.
    pub xmit_packets: Option<u64>,
    /// Packets received.
    pub rcv_packets: Option<u64>,
    /// Outbound packets discarded (port down or congested).
    pub xmit_discards: Option<u64>,
    /// Ticks the port had data to send but no flow-control credits (congestion), when provided.
    pub xmit_wait: Option<u64>,
    /// Every file of `hw_counters/` (driver-specific names), cumulative.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hw_counters: BTreeMap<String, u64>,
}

/// A qpair slot's counters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QpairSample {
    /// Slot within the reactor.
    pub slot: u16,
    /// Slot generation (a new qpair in the same slot has a higher one).
    pub generation: u64,
    /// Identity (`cntlid << 16 | qid`).
    pub ident: u64,
    /// Commands submitted.
    pub submitted: u64,
    /// Commands completed.
    pub completed: u64,
    /// Gauge: outstanding now.
    pub outstanding: u64,
    /// Gauge: high-water mark of outstanding.
    pub high_water: u64,
    /// Bytes moved.
    pub bytes: u64,
    /// Errors.
    pub errors: u64,
    /// Queue size granted to this qpair, when known.
    pub queue_size: Option<u32>,
    /// The host this qpair serves (its controller's host NQN, or the host's address when the
    /// NQN is empty), when the source says (trace-ring ABI 1.6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Latency histogram (capsule received → response sent), cumulative.
    pub latency: Hist,
}

/// A thread's scheduling statistics (procfs, perf software counters).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadSample {
    /// Thread id.
    pub tid: u32,
    /// CPU it last ran on (`/proc/<pid>/task/<tid>/stat` field 39).
    pub last_cpu: Option<u32>,
    /// CPUs it may run on (`Cpus_allowed_list`).
    pub allowed_cpus: Vec<u32>,
    /// ns on CPU (`schedstat` field 1).
    pub run_ns: u64,
    /// ns runnable but waiting for a CPU (`schedstat` field 2): time stolen by others.
    pub runqueue_wait_ns: u64,
    /// Voluntary context switches.
    pub voluntary_switches: u64,
    /// Involuntary context switches (preemptions).
    pub involuntary_switches: u64,
    /// Migrations between CPUs (`se.nr_migrations` or perf `cpu-migrations`).
    pub migrations: Option<u64>,
    /// perf `task-clock` ns, when perf events are available.
    pub task_clock_ns: Option<u64>,
}

/// A network device's counters (`/proc/net/dev`, sysfs, qdisc stats).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetdevSample {
    /// Interface name.
    pub name: String,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Receive drops.
    pub rx_drops: u64,
    /// Transmit drops.
    pub tx_drops: u64,
    /// Link speed (Mb/s) from sysfs; `None` when the device reports none (lo, veth may say 10000).
    pub speed_mbps: Option<u64>,
    /// Egress shaping rate (bytes/s) of the root qdisc (tbf/htb), when shaped.
    pub shaped_rate_bytes: Option<u64>,
    /// Gauge: bytes queued in the egress qdisc.
    pub qdisc_backlog_bytes: u64,
    /// Packets dropped by the egress qdisc.
    pub qdisc_drops: u64,
    /// Times the qdisc throttled (overlimits).
    pub qdisc_overlimits: u64,
}

/// A block device's counters (`/sys/block/<dev>/stat`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSample {
    /// Device name (`nvme0n1`).
    pub name: String,
    /// Reads completed.
    pub reads: u64,
    /// Writes completed.
    pub writes: u64,
    /// Sectors read.
    pub sectors_read: u64,
    /// Sectors written.
    pub sectors_written: u64,
    /// ms spent reading (sum over requests).
    pub read_ticks_ms: u64,
    /// ms spent writing.
    pub write_ticks_ms: u64,
    /// Gauge: requests in flight.
    pub in_flight: u64,
    /// ms the device had I/O in flight.
    pub io_ticks_ms: u64,
}

/// Where the target process's memory lives, by NUMA node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemorySample {
    /// Bytes per NUMA node over the mappings that hold I/O buffers (shared/anonymous mappings
    /// of at least 1 MiB; see the collector), `(node, bytes)`.
    pub buffer_bytes_by_node: Vec<(u32, u64)>,
    /// Bytes per node over all mappings.
    pub total_bytes_by_node: Vec<(u32, u64)>,
    /// NUMA memory policy of the largest buffer mapping (`default`, `bind:1`, `interleave:0-1`).
    pub policy: Option<String>,
}

/// Kernel probe aggregates (cumulative), per reactor thread and per port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelSample {
    /// Per reactor, by reactor index.
    pub reactors: Vec<KernelReactorSample>,
    /// TCP retransmits on the listeners' connections.
    pub tcp_retransmits: u64,
    /// NUMA page migrations of the target's pages.
    pub numa_migrations: u64,
    /// The namespaces' block devices as the block layer saw them (absent from recordings made
    /// before the agent merged them).
    #[serde(default)]
    pub devices: Vec<KernelDeviceSample>,
}

/// One of the namespaces' block devices from the kernel's block tracepoints
/// (`block_rq_issue` → `block_rq_complete`), cumulative since the probes attached.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelDeviceSample {
    /// Device name (`loop3`, `nvme0n1`), as the namespace names it.
    pub name: String,
    /// Requests completed.
    pub requests: u64,
    /// Bytes moved.
    pub bytes: u64,
    /// Requests completed with an error.
    pub errors: u64,
    /// Sum of issue-to-completion times (ns).
    pub latency_total_ns: u64,
    /// Requests by issue-to-completion time: entry `i` counts `[2^i, 2^(i+1))` ns.
    pub latency_log2: Vec<u64>,
}

/// Kernel view of one reactor thread.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelReactorSample {
    /// Reactor index.
    pub index: u32,
    /// Times the reactor was switched out while runnable (preempted).
    pub preemptions: u64,
    /// ns the reactor was runnable but another task ran on its core.
    pub preempted_ns: u64,
    /// The task that preempted it most, `(pid, comm)`, when known; never the agent itself
    /// (its own time there is [`KernelReactorSample::agent_ns`]).
    pub top_intruder: Option<(u32, String)>,
    /// ns the agent's own threads ran on the reactor's core (part of `preempted_ns` when the
    /// reactor was runnable then): the agent's cost, not a fault of the machine.
    #[serde(default)]
    pub agent_ns: u64,
    /// ns of hard interrupts on the reactor's core.
    pub irq_ns: u64,
    /// ns of soft interrupts on the reactor's core.
    pub softirq_ns: u64,
    /// System calls made by the reactor thread.
    pub syscalls: u64,
    /// Migrations.
    pub migrations: u64,
}
