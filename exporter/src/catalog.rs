//! The metric catalog: every series `ringside serve` can expose, declared once.
//!
//! The encoder ([`crate::encode`]) can only emit a family through a [`MetricDef`] from here, with
//! exactly the labels declared; dashboards may only query names listed here (a test in the
//! `tests` crate enforces it), and `docs/metrics.md` is this table in prose.
//!
//! Naming (DESIGN §7, STYLE "Metrics"): `ringside_<subsystem>_<name>_<unit>[_total]`, base units
//! (seconds, bytes; `ratio` for 0..1 shares; `requests` for queue depths), counters end in
//! `_total`, histograms are in seconds. Label values are bounded: reactor, core and NUMA node
//! indexes, qpair slots (bounded by the target's slot count), interface and device names of the
//! target, finding kinds and subjects (capped), never request ids.
//!
//! Pure constants; no state, no threads.

/// The Prometheus metric type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A monotonic total (name ends in `_total`).
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Cumulative buckets at [`LATENCY_BUCKETS_SECONDS`], plus exact `_sum` and `_count`.
    Histogram,
}

impl Kind {
    /// The `# TYPE` word.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// The unit a series is measured in; it is also the name's last word (before `_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Seconds (durations, latencies).
    Seconds,
    /// Bytes (volumes; for capacities "bytes per second" is said in the help).
    Bytes,
    /// A share, 0..1.
    Ratio,
    /// Requests (queue depths, outstanding counts).
    Requests,
    /// A count of events or things, named by the noun (`completions`, `polls`, `errors`), or an
    /// info/state gauge whose value is 1/0.
    None,
}

impl Unit {
    /// The suffix the name must carry (before `_total`), if any.
    pub fn suffix(self) -> Option<&'static str> {
        match self {
            Unit::Seconds => Some("seconds"),
            Unit::Bytes => Some("bytes"),
            Unit::Ratio => Some("ratio"),
            Unit::Requests => Some("requests"),
            Unit::None => None,
        }
    }
}

/// One series family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricDef {
    /// Full name (`ringside_reactor_completions_total`).
    pub name: &'static str,
    /// Type.
    pub kind: Kind,
    /// Unit.
    pub unit: Unit,
    /// `# HELP` text: what it is and, for derived values, how it is computed.
    pub help: &'static str,
    /// Label names, in the order the encoder passes values.
    pub labels: &'static [&'static str],
}

/// Subsystems (the word after `ringside_`).
pub const SUBSYSTEMS: &[&str] = &[
    "target",
    "reactor",
    "qpair",
    "netdev",
    "device",
    "rdma",
    "memory",
    "finding",
    "recommendation",
    "agent",
    "exporter",
];

/// Every label name a series may carry, with what bounds its values.
pub const LABELS: &[(&str, &str)] = &[
    ("name", "the target instance name (one per exporter)"),
    (
        "target",
        "the target instance name: on the lifecycle series always, and on every other series with `serve --all` (at most --max-targets)",
    ),
    ("kind", "the kind of target: ringside or spdk"),
    ("state", "waiting, attached, gone or reattached"),
    ("transport", "tcp or rdma"),
    ("address", "a listener address of the target (few)"),
    (
        "reactor",
        "reactor index (one per core of the target's core list)",
    ),
    ("core", "CPU the reactor is pinned to"),
    ("numa_node", "NUMA node index"),
    ("op", "read, write or other"),
    (
        "direction",
        "read/write (reactor) or receive/transmit (netdev)",
    ),
    ("stage", "request stage name from the target's catalog"),
    (
        "qpair",
        "qpair slot within its reactor (bounded by the slot count)",
    ),
    (
        "host",
        "the host a qpair serves: its controller's host NQN, or the host address when the NQN is empty (at most 16 values, the rest `other`; absent when the target does not say)",
    ),
    ("netdev", "interface carrying a listener"),
    ("device", "block device behind a namespace"),
    ("queue", "send or receive (RDMA work request queue)"),
    (
        "rdma_device",
        "RDMA device of the machine (mlx5_0, rxe0; few, capped)",
    ),
    ("port", "port number of an RDMA device (1, 2)"),
    ("link_layer", "InfiniBand or Ethernet"),
    ("state", "RDMA port state word (ACTIVE, DOWN, INIT, ARMED…)"),
    (
        "software",
        "true for a software RDMA device (rxe, siw), judged by its netdev",
    ),
    (
        "counter",
        "name of an RDMA driver hw_counters file (a driver's fixed set, capped)",
    ),
    ("kind", "finding kind (a fixed enum)"),
    ("subject", "what a finding is about (capped set)"),
    ("severity", "info, warning or critical"),
    ("setting", "recommender setting (a fixed enum)"),
    ("capability", "agent data source name (fixed set)"),
    ("path", "HTTP path class: metrics, healthz, snapshot, other"),
    ("code", "HTTP status code (fixed set)"),
];

/// Upper bounds (seconds) of the latency histograms: 1-2-5 steps from 1 µs to 1 s.
pub const LATENCY_BUCKETS_SECONDS: [f64; 19] = [
    1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1,
    0.2, 0.5, 1.0,
];

/// The same bounds in nanoseconds (what the agent's histograms hold).
pub const LATENCY_BUCKETS_NS: [u64; 19] = [
    1_000,
    2_000,
    5_000,
    10_000,
    20_000,
    50_000,
    100_000,
    200_000,
    500_000,
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    20_000_000,
    50_000_000,
    100_000_000,
    200_000_000,
    500_000_000,
    1_000_000_000,
];

const fn def(
    name: &'static str,
    kind: Kind,
    unit: Unit,
    help: &'static str,
    labels: &'static [&'static str],
) -> MetricDef {
    MetricDef {
        name,
        kind,
        unit,
        help,
        labels,
    }
}

use Kind::{Counter, Gauge, Histogram};

const R: &[&str] = &["reactor", "core"];
const Q: &[&str] = &["reactor", "qpair", "host"];
const N: &[&str] = &["netdev"];
const D: &[&str] = &["device"];
const P: &[&str] = &["rdma_device", "port"];

// ---- target -------------------------------------------------------------------------------
/// Constant 1, labelled with the target instance.
pub const TARGET_INFO: MetricDef = def(
    "ringside_target_info",
    Gauge,
    Unit::None,
    "Constant 1: the target instance this exporter is attached to, and its kind (ringside-tgt or SPDK's nvmf_tgt).",
    &["name", "kind"],
);
/// The target's lifecycle: up.
pub const TARGET_UP: MetricDef = def(
    "ringside_target_up",
    Gauge,
    Unit::None,
    "1 while the target instance is attached and read; 0 while the agent waits for it or after it went away (its other series are then not served).",
    &["target"],
);
/// The target's lifecycle: the state.
pub const TARGET_STATE: MetricDef = def(
    "ringside_target_state",
    Gauge,
    Unit::None,
    "1 for the agent's current state with the target: waiting, attached, gone or reattached.",
    &["target", "state"],
);
/// The attached instance's start time.
pub const TARGET_START_TIME: MetricDef = def(
    "ringside_target_start_time_seconds",
    Gauge,
    Unit::Seconds,
    "Unix time the attached target instance started; a new value marks a new instance, whose counters start again from zero (a counter reset).",
    &["target"],
);
/// Listeners.
pub const TARGET_LISTENER_INFO: MetricDef = def(
    "ringside_target_listener_info",
    Gauge,
    Unit::None,
    "Constant 1 per listener of the target, with the netdev carrying it (empty when unknown).",
    &["transport", "address", "netdev"],
);
/// TCP retransmits.
pub const TARGET_TCP_RETRANSMITS: MetricDef = def(
    "ringside_target_tcp_retransmits_total",
    Counter,
    Unit::None,
    "TCP retransmits on the target's connections (kernel probes; absent without them).",
    &[],
);

// ---- reactor ------------------------------------------------------------------------------
/// Reactor placement.
pub const REACTOR_INFO: MetricDef = def(
    "ringside_reactor_info",
    Gauge,
    Unit::None,
    "Constant 1 per reactor: its pinned core and that core's NUMA node (empty when unknown).",
    &["reactor", "core", "numa_node"],
);
/// Completions by op.
pub const REACTOR_COMPLETIONS: MetricDef = def(
    "ringside_reactor_completions_total",
    Counter,
    Unit::None,
    "I/O commands completed by the reactor, by op (read, write, other); rate() is its IOPS.",
    &["reactor", "core", "op"],
);
/// Bytes by direction.
pub const REACTOR_IO_BYTES: MetricDef = def(
    "ringside_reactor_io_bytes_total",
    Counter,
    Unit::Bytes,
    "Bytes moved by the reactor's I/O commands, by direction (read, write).",
    &["reactor", "core", "direction"],
);
/// Polls.
pub const REACTOR_POLLS: MetricDef = def(
    "ringside_reactor_polls_total",
    Counter,
    Unit::None,
    "Poll loop iterations of the reactor.",
    R,
);
/// Busy ratio.
pub const REACTOR_BUSY_RATIO: MetricDef = def(
    "ringside_reactor_busy_ratio",
    Gauge,
    Unit::Ratio,
    "Share of the reactor loop that did work in the latest window: busy ns / (busy + idle ns).",
    R,
);
/// Cost per I/O.
pub const REACTOR_COST_PER_IO: MetricDef = def(
    "ringside_reactor_busy_time_per_io_seconds",
    Gauge,
    Unit::Seconds,
    "Busy-poll time per completed I/O in the latest window (absent without I/O); 1/x is the \
     reactor's IOPS capacity at 100 % busy.",
    R,
);
/// Little's-law depth.
pub const REACTOR_MEAN_OUTSTANDING: MetricDef = def(
    "ringside_reactor_mean_outstanding_requests",
    Gauge,
    Unit::Requests,
    "Time-weighted mean requests in flight over the reactor's qpairs in the latest window \
     (Little's law: sum of completed latencies / window length).",
    R,
);
/// Backend in flight.
pub const REACTOR_BACKEND_INFLIGHT: MetricDef = def(
    "ringside_reactor_backend_inflight_requests",
    Gauge,
    Unit::Requests,
    "Requests in flight at the reactor's backend at the end of the latest window.",
    R,
);
/// Backend in-flight high water.
pub const REACTOR_BACKEND_INFLIGHT_MAX: MetricDef = def(
    "ringside_reactor_backend_inflight_max_requests",
    Gauge,
    Unit::Requests,
    "High-water mark of requests in flight at the reactor's backend since the target started.",
    R,
);
/// Backend submissions.
pub const REACTOR_BACKEND_SUBMISSIONS: MetricDef = def(
    "ringside_reactor_backend_submissions_total",
    Counter,
    Unit::None,
    "Requests the reactor submitted to its backend.",
    R,
);
/// Buffer waits.
pub const REACTOR_BUFFER_WAITS: MetricDef = def(
    "ringside_reactor_buffer_waits_total",
    Counter,
    Unit::None,
    "Requests that waited for a data buffer.",
    R,
);
/// Errors.
pub const REACTOR_ERRORS: MetricDef = def(
    "ringside_reactor_errors_total",
    Counter,
    Unit::None,
    "Errors on the reactor (transport, protocol, backend, error status).",
    R,
);
/// Refused Connects.
pub const REACTOR_CONNECTS_REFUSED: MetricDef = def(
    "ringside_reactor_connects_refused_total",
    Counter,
    Unit::None,
    "Fabrics Connects the reactor refused (unknown subsystem, host not allowed, bad \
     parameter); the target prints one line per refusal naming the host, both NQNs, the field \
     and the reason.",
    R,
);
/// Protocol closes.
pub const REACTOR_PROTOCOL_CLOSES: MetricDef = def(
    "ringside_reactor_protocol_closes_total",
    Counter,
    Unit::None,
    "Connections the reactor closed because the host broke the transport protocol (a \
     termination request sent, or an RDMA queue pair failed); one line each in the target's log.",
    R,
);
/// Active qpairs.
pub const REACTOR_ACTIVE_QPAIRS: MetricDef = def(
    "ringside_reactor_active_qpairs",
    Gauge,
    Unit::None,
    "Qpairs of the reactor that completed I/O or had requests outstanding in the latest window.",
    R,
);
/// Stalled.
pub const REACTOR_STALLED: MetricDef = def(
    "ringside_reactor_stalled",
    Gauge,
    Unit::None,
    "1 when the reactor did not poll during the latest window, else 0.",
    R,
);
/// Latency.
pub const REACTOR_LATENCY: MetricDef = def(
    "ringside_reactor_latency_seconds",
    Histogram,
    Unit::Seconds,
    "Latency of the reactor's I/O, capsule received to response sent.",
    R,
);
/// Stage latency.
pub const REACTOR_STAGE_LATENCY: MetricDef = def(
    "ringside_reactor_stage_latency_seconds",
    Histogram,
    Unit::Seconds,
    "Per-stage latency of the reactor's requests (stages named by the target).",
    &["reactor", "core", "stage"],
);
/// On-CPU share.
pub const REACTOR_CPU_RATIO: MetricDef = def(
    "ringside_reactor_cpu_ratio",
    Gauge,
    Unit::Ratio,
    "Share of the latest window the reactor thread was on a CPU (schedstat; absent without procfs).",
    R,
);
/// Runqueue wait share.
pub const REACTOR_RUNQUEUE_WAIT_RATIO: MetricDef = def(
    "ringside_reactor_runqueue_wait_ratio",
    Gauge,
    Unit::Ratio,
    "Share of the latest window the reactor thread was runnable but not running (schedstat).",
    R,
);
/// Involuntary switches.
pub const REACTOR_INVOLUNTARY_SWITCHES: MetricDef = def(
    "ringside_reactor_involuntary_switches_total",
    Counter,
    Unit::None,
    "Involuntary context switches of the reactor thread (procfs).",
    R,
);
/// Migrations.
pub const REACTOR_MIGRATIONS: MetricDef = def(
    "ringside_reactor_migrations_total",
    Counter,
    Unit::None,
    "Migrations of the reactor thread between CPUs.",
    R,
);
/// Preempted share.
pub const REACTOR_PREEMPTED_RATIO: MetricDef = def(
    "ringside_reactor_preempted_ratio",
    Gauge,
    Unit::Ratio,
    "Share of the latest window another task ran on the reactor's core while it was runnable \
     (kernel probes).",
    R,
);
/// Preemptions.
pub const REACTOR_PREEMPTIONS: MetricDef = def(
    "ringside_reactor_preemptions_total",
    Counter,
    Unit::None,
    "Times the reactor thread was switched out while runnable (kernel probes).",
    R,
);
/// Interrupt share.
pub const REACTOR_IRQ_RATIO: MetricDef = def(
    "ringside_reactor_irq_ratio",
    Gauge,
    Unit::Ratio,
    "Share of the latest window spent in hard and soft interrupts on the reactor's core \
     (kernel probes).",
    R,
);
/// Syscalls.
pub const REACTOR_SYSCALLS: MetricDef = def(
    "ringside_reactor_syscalls_total",
    Counter,
    Unit::None,
    "System calls made by the reactor thread (kernel probes).",
    R,
);

// ---- qpair --------------------------------------------------------------------------------
/// Completions.
pub const QPAIR_COMPLETIONS: MetricDef = def(
    "ringside_qpair_completions_total",
    Counter,
    Unit::None,
    "Commands completed on the qpair slot (all qpairs that used the slot).",
    Q,
);
/// Bytes.
pub const QPAIR_IO_BYTES: MetricDef = def(
    "ringside_qpair_io_bytes_total",
    Counter,
    Unit::Bytes,
    "Bytes moved on the qpair slot.",
    Q,
);
/// Errors.
pub const QPAIR_ERRORS: MetricDef = def(
    "ringside_qpair_errors_total",
    Counter,
    Unit::None,
    "Errors on the qpair slot.",
    Q,
);
/// Outstanding at window end.
pub const QPAIR_OUTSTANDING: MetricDef = def(
    "ringside_qpair_outstanding_requests",
    Gauge,
    Unit::Requests,
    "Requests outstanding on the qpair at the end of the latest window.",
    Q,
);
/// Little's-law depth.
pub const QPAIR_MEAN_OUTSTANDING: MetricDef = def(
    "ringside_qpair_mean_outstanding_requests",
    Gauge,
    Unit::Requests,
    "Time-weighted mean requests in flight on the qpair in the latest window (Little's law).",
    Q,
);
/// High water.
pub const QPAIR_OUTSTANDING_MAX: MetricDef = def(
    "ringside_qpair_outstanding_max_requests",
    Gauge,
    Unit::Requests,
    "High-water mark of requests outstanding on the qpair.",
    Q,
);
/// Queue size.
pub const QPAIR_QUEUE_SIZE: MetricDef = def(
    "ringside_qpair_queue_size_requests",
    Gauge,
    Unit::Requests,
    "Queue size granted to the qpair (absent when the target does not say).",
    Q,
);
/// Latency.
pub const QPAIR_LATENCY: MetricDef = def(
    "ringside_qpair_latency_seconds",
    Histogram,
    Unit::Seconds,
    "Latency of the qpair's I/O, capsule received to response sent.",
    Q,
);

// ---- netdev -------------------------------------------------------------------------------
/// Bytes.
pub const NETDEV_BYTES: MetricDef = def(
    "ringside_netdev_bytes_total",
    Counter,
    Unit::Bytes,
    "Bytes through the interface, by direction (receive, transmit).",
    &["netdev", "direction"],
);
/// Packets.
pub const NETDEV_PACKETS: MetricDef = def(
    "ringside_netdev_packets_total",
    Counter,
    Unit::None,
    "Packets through the interface, by direction (receive, transmit).",
    &["netdev", "direction"],
);
/// Drops.
pub const NETDEV_DROPS: MetricDef = def(
    "ringside_netdev_drops_total",
    Counter,
    Unit::None,
    "Packets dropped by the interface (receive + transmit).",
    N,
);
/// Capacity.
pub const NETDEV_CAPACITY: MetricDef = def(
    "ringside_netdev_capacity_bytes",
    Gauge,
    Unit::Bytes,
    "Bytes per second the interface can carry: min(link speed, egress shaping rate); absent \
     when neither is known.",
    N,
);
/// Utilisation.
pub const NETDEV_UTILISATION: MetricDef = def(
    "ringside_netdev_utilisation_ratio",
    Gauge,
    Unit::Ratio,
    "max(receive, transmit) bytes/s / capacity in the latest window (absent without capacity).",
    N,
);
/// Qdisc backlog.
pub const NETDEV_QDISC_BACKLOG: MetricDef = def(
    "ringside_netdev_qdisc_backlog_bytes",
    Gauge,
    Unit::Bytes,
    "Bytes queued in the interface's egress qdisc at the end of the latest window.",
    N,
);
/// Qdisc drops.
pub const NETDEV_QDISC_DROPS: MetricDef = def(
    "ringside_netdev_qdisc_drops_total",
    Counter,
    Unit::None,
    "Packets dropped by the interface's egress qdisc.",
    N,
);
/// Qdisc overlimits.
pub const NETDEV_QDISC_OVERLIMITS: MetricDef = def(
    "ringside_netdev_qdisc_overlimits_total",
    Counter,
    Unit::None,
    "Times the egress qdisc throttled (overlimits).",
    N,
);

// ---- device -------------------------------------------------------------------------------
/// Completions.
pub const DEVICE_COMPLETIONS: MetricDef = def(
    "ringside_device_completions_total",
    Counter,
    Unit::None,
    "I/O completed by the block device behind a namespace.",
    D,
);
/// Bytes.
pub const DEVICE_IO_BYTES: MetricDef = def(
    "ringside_device_io_bytes_total",
    Counter,
    Unit::Bytes,
    "Bytes read and written by the block device.",
    D,
);
/// Mean service time.
pub const DEVICE_SERVICE_TIME: MetricDef = def(
    "ringside_device_mean_service_time_seconds",
    Gauge,
    Unit::Seconds,
    "Mean service time of the device's I/O in the latest window (kernel tick counters; absent \
     without I/O).",
    D,
);
/// Busy share.
pub const DEVICE_UTILISATION: MetricDef = def(
    "ringside_device_utilisation_ratio",
    Gauge,
    Unit::Ratio,
    "Share of the latest window the device had I/O in flight.",
    D,
);
/// In flight.
pub const DEVICE_INFLIGHT: MetricDef = def(
    "ringside_device_inflight_requests",
    Gauge,
    Unit::Requests,
    "Requests in flight at the device at the end of the latest window.",
    D,
);

// ---- rdma: reactors -------------------------------------------------------------------------
/// CQ polls.
pub const RDMA_CQ_POLLS: MetricDef = def(
    "ringside_rdma_cq_polls_total",
    Counter,
    Unit::None,
    "Completion-queue polls (ibv_poll_cq calls) of the reactor; absent on a TCP-only reactor.",
    R,
);
/// Nonempty CQ polls.
pub const RDMA_CQ_POLLS_NONEMPTY: MetricDef = def(
    "ringside_rdma_cq_polls_nonempty_total",
    Counter,
    Unit::None,
    "Completion-queue polls that returned at least one work completion.",
    R,
);
/// Work completions.
pub const RDMA_COMPLETIONS: MetricDef = def(
    "ringside_rdma_completions_total",
    Counter,
    Unit::None,
    "RDMA work completions polled (send, RDMA READ/WRITE and receive).",
    R,
);
/// Doorbells.
pub const RDMA_DOORBELLS: MetricDef = def(
    "ringside_rdma_doorbells_total",
    Counter,
    Unit::None,
    "Doorbells rung (ibv_post_send and ibv_post_srq_recv calls, each posting a chain).",
    R,
);
/// Work requests posted.
pub const RDMA_WORK_REQUESTS: MetricDef = def(
    "ringside_rdma_work_requests_total",
    Counter,
    Unit::Requests,
    "Work requests posted, by queue: send (SEND, RDMA READ, RDMA WRITE) or receive (to the SRQ).",
    &["reactor", "core", "queue"],
);
/// Completions per nonempty poll.
pub const RDMA_COMPLETIONS_PER_NONEMPTY_POLL: MetricDef = def(
    "ringside_rdma_completions_per_nonempty_poll",
    Gauge,
    Unit::None,
    "Work completions per completion-queue poll that found any, in the latest window (batching \
     on the completion side).",
    R,
);
/// Completions per poll.
pub const RDMA_COMPLETIONS_PER_POLL: MetricDef = def(
    "ringside_rdma_completions_per_poll",
    Gauge,
    Unit::None,
    "Work completions per completion-queue poll, empty ones included, in the latest window.",
    R,
);
/// WRs per doorbell.
pub const RDMA_WORK_REQUESTS_PER_DOORBELL: MetricDef = def(
    "ringside_rdma_work_requests_per_doorbell",
    Gauge,
    Unit::None,
    "(Send + receive work requests) / doorbells in the latest window: 1 is one MMIO write per \
     request, more is batched posting.",
    R,
);
/// Pending send WRs.
pub const RDMA_SEND_PENDING: MetricDef = def(
    "ringside_rdma_send_pending_requests",
    Gauge,
    Unit::Requests,
    "Send-queue work requests posted and not yet completed, all qpairs of the reactor.",
    R,
);
/// Pending send WRs high water.
pub const RDMA_SEND_PENDING_MAX: MetricDef = def(
    "ringside_rdma_send_pending_max_requests",
    Gauge,
    Unit::Requests,
    "High-water mark of pending send-queue work requests since the target started.",
    R,
);
/// SRQ depth.
pub const RDMA_SRQ_POSTED: MetricDef = def(
    "ringside_rdma_srq_posted_requests",
    Gauge,
    Unit::Requests,
    "Receive buffers posted on the reactor's shared receive queue at the end of the latest \
     window.",
    R,
);
/// SRQ low water.
pub const RDMA_SRQ_LOW_WATER: MetricDef = def(
    "ringside_rdma_srq_low_water_requests",
    Gauge,
    Unit::Requests,
    "Lowest number of receive buffers posted on the SRQ since it was created; 0 means it ran \
     dry (hosts got receiver-not-ready NAKs).",
    R,
);
/// SRQ size.
pub const RDMA_SRQ_SIZE: MetricDef = def(
    "ringside_rdma_srq_size_requests",
    Gauge,
    Unit::Requests,
    "Receive buffers the reactor's shared receive queue was created with.",
    R,
);
/// SRQ left empty.
pub const RDMA_SRQ_EMPTY: MetricDef = def(
    "ringside_rdma_srq_empty_total",
    Counter,
    Unit::None,
    "Times the reactor's shared receive queue was left with no receive buffer posted (a \
     capsule arriving then gets a receiver-not-ready NAK); its rate says whether it happens now.",
    R,
);

// ---- rdma: ports --------------------------------------------------------------------------
/// Port info.
pub const RDMA_PORT_INFO: MetricDef = def(
    "ringside_rdma_port_info",
    Gauge,
    Unit::None,
    "Constant 1 per RDMA port: its netdev (empty when unknown), link layer, state and whether \
     it is a software device (whose bytes its netdev counts).",
    &[
        "rdma_device",
        "port",
        "netdev",
        "link_layer",
        "state",
        "software",
    ],
);
/// Port bytes.
pub const RDMA_PORT_BYTES: MetricDef = def(
    "ringside_rdma_port_bytes_total",
    Counter,
    Unit::Bytes,
    "Bytes through the RDMA port by direction (port_rcv_data / port_xmit_data x 4); absent \
     when the driver has no usable counter (rxe, a saturated 32-bit one).",
    &["rdma_device", "port", "direction"],
);
/// Port packets.
pub const RDMA_PORT_PACKETS: MetricDef = def(
    "ringside_rdma_port_packets_total",
    Counter,
    Unit::None,
    "Packets through the RDMA port by direction (receive, transmit).",
    &["rdma_device", "port", "direction"],
);
/// Port capacity.
pub const RDMA_PORT_CAPACITY: MetricDef = def(
    "ringside_rdma_port_capacity_bytes",
    Gauge,
    Unit::Bytes,
    "Data rate of the RDMA port in bytes per second (sysfs rate, 8b/10b removed for SDR-QDR).",
    P,
);
/// Port utilisation.
pub const RDMA_PORT_UTILISATION: MetricDef = def(
    "ringside_rdma_port_utilisation_ratio",
    Gauge,
    Unit::Ratio,
    "max(receive, transmit) bytes/s / data rate of the RDMA port in the latest window.",
    P,
);
/// Transmit discards.
pub const RDMA_PORT_TRANSMIT_DISCARDS: MetricDef = def(
    "ringside_rdma_port_transmit_discards_total",
    Counter,
    Unit::None,
    "Outbound packets the RDMA port discarded (port down or congested).",
    P,
);
/// Transmit wait.
pub const RDMA_PORT_TRANSMIT_WAIT: MetricDef = def(
    "ringside_rdma_port_transmit_wait_total",
    Counter,
    Unit::None,
    "Ticks the RDMA port had data to send but no flow-control credits (congestion).",
    P,
);
/// Retransmit-class events.
pub const RDMA_PORT_RETRANSMITS: MetricDef = def(
    "ringside_rdma_port_retransmit_events_total",
    Counter,
    Unit::None,
    "Sum of the port's retransmit, NAK, timeout and sequence-error hw_counters (the names of \
     each driver: rxe, mlx5…).",
    P,
);
/// Driver hw counters.
pub const RDMA_PORT_HW_COUNTER: MetricDef = def(
    "ringside_rdma_port_hw_counter_total",
    Counter,
    Unit::None,
    "Every hw_counters file of the RDMA port, by its driver-specific name (capped).",
    &["rdma_device", "port", "counter"],
);

// ---- memory -------------------------------------------------------------------------------
/// Buffer memory by node.
pub const MEMORY_BUFFER: MetricDef = def(
    "ringside_memory_buffer_bytes",
    Gauge,
    Unit::Bytes,
    "Target memory in buffer-sized mappings, by NUMA node (numa_maps).",
    &["numa_node"],
);
/// All memory by node.
pub const MEMORY_RESIDENT: MetricDef = def(
    "ringside_memory_resident_bytes",
    Gauge,
    Unit::Bytes,
    "Target memory over all mappings, by NUMA node (numa_maps).",
    &["numa_node"],
);

// ---- findings and recommendations ---------------------------------------------------------
/// A finding per kind and subject.
pub const FINDING_ACTIVE: MetricDef = def(
    "ringside_finding_active",
    Gauge,
    Unit::None,
    "1 while the finding is raised for the subject, 0 after it cleared (subjects capped).",
    &["kind", "subject", "severity"],
);
/// Confidence.
pub const FINDING_CONFIDENCE: MetricDef = def(
    "ringside_finding_confidence_ratio",
    Gauge,
    Unit::Ratio,
    "Confidence (0..1) of a raised finding; absent while it is not raised.",
    &["kind", "subject"],
);
/// Subjects per kind.
pub const FINDING_SUBJECTS: MetricDef = def(
    "ringside_finding_active_subjects",
    Gauge,
    Unit::None,
    "Subjects with the finding raised now, for every finding kind (0 when none).",
    &["kind"],
);
/// Raises.
pub const FINDING_RAISED: MetricDef = def(
    "ringside_finding_raised_total",
    Counter,
    Unit::None,
    "Times a finding of this kind was raised (a subject going from not raised to raised).",
    &["kind"],
);
/// Recommendations.
pub const RECOMMENDATION_ACTIVE: MetricDef = def(
    "ringside_recommendation_active",
    Gauge,
    Unit::None,
    "1 while the recommender proposes a change of this setting, else 0.",
    &["setting"],
);

// ---- agent and exporter -------------------------------------------------------------------
/// Windows analysed.
pub const AGENT_WINDOWS: MetricDef = def(
    "ringside_agent_windows_total",
    Counter,
    Unit::None,
    "Windows the agent analysed since it attached.",
    &[],
);
/// Window length.
pub const AGENT_WINDOW_LENGTH: MetricDef = def(
    "ringside_agent_window_length_seconds",
    Gauge,
    Unit::Seconds,
    "Length of the latest window.",
    &[],
);
/// Capabilities.
pub const AGENT_CAPABILITY: MetricDef = def(
    "ringside_agent_capability_available",
    Gauge,
    Unit::None,
    "1 when the agent's data source delivers, 0 when it is missing (see /snapshot.json for why).",
    &["capability"],
);
/// Snapshot age.
pub const EXPORTER_SNAPSHOT_AGE: MetricDef = def(
    "ringside_exporter_snapshot_age_seconds",
    Gauge,
    Unit::Seconds,
    "Time since the exporter last received a snapshot (absent before the first).",
    &[],
);
/// Updates.
pub const EXPORTER_UPDATES: MetricDef = def(
    "ringside_exporter_updates_total",
    Counter,
    Unit::None,
    "Snapshots the exporter received.",
    &[],
);
/// HTTP requests.
pub const EXPORTER_HTTP_REQUESTS: MetricDef = def(
    "ringside_exporter_http_requests_total",
    Counter,
    Unit::Requests,
    "HTTP requests answered, by path class and status code.",
    &["path", "code"],
);
/// Rejected connections.
pub const EXPORTER_CONNECTIONS_REJECTED: MetricDef = def(
    "ringside_exporter_connections_rejected_total",
    Counter,
    Unit::None,
    "Connections refused with 503 because the connection limit was reached and none could be \
     evicted.",
    &[],
);
/// Evicted / timed-out connections.
pub const EXPORTER_CONNECTIONS_DROPPED: MetricDef = def(
    "ringside_exporter_connections_dropped_total",
    Counter,
    Unit::None,
    "Connections closed before a complete exchange: timed out, evicted, reset or oversized.",
    &[],
);
/// Open connections.
pub const EXPORTER_CONNECTIONS_OPEN: MetricDef = def(
    "ringside_exporter_connections_open",
    Gauge,
    Unit::None,
    "HTTP connections open now.",
    &[],
);

/// Every series, in exposition order.
pub const CATALOG: &[MetricDef] = &[
    TARGET_INFO,
    TARGET_UP,
    TARGET_STATE,
    TARGET_START_TIME,
    TARGET_LISTENER_INFO,
    TARGET_TCP_RETRANSMITS,
    REACTOR_INFO,
    REACTOR_COMPLETIONS,
    REACTOR_IO_BYTES,
    REACTOR_POLLS,
    REACTOR_BUSY_RATIO,
    REACTOR_COST_PER_IO,
    REACTOR_MEAN_OUTSTANDING,
    REACTOR_BACKEND_INFLIGHT,
    REACTOR_BACKEND_INFLIGHT_MAX,
    REACTOR_BACKEND_SUBMISSIONS,
    REACTOR_BUFFER_WAITS,
    REACTOR_ERRORS,
    REACTOR_CONNECTS_REFUSED,
    REACTOR_PROTOCOL_CLOSES,
    REACTOR_ACTIVE_QPAIRS,
    REACTOR_STALLED,
    REACTOR_LATENCY,
    REACTOR_STAGE_LATENCY,
    REACTOR_CPU_RATIO,
    REACTOR_RUNQUEUE_WAIT_RATIO,
    REACTOR_INVOLUNTARY_SWITCHES,
    REACTOR_MIGRATIONS,
    REACTOR_PREEMPTED_RATIO,
    REACTOR_PREEMPTIONS,
    REACTOR_IRQ_RATIO,
    REACTOR_SYSCALLS,
    QPAIR_COMPLETIONS,
    QPAIR_IO_BYTES,
    QPAIR_ERRORS,
    QPAIR_OUTSTANDING,
    QPAIR_MEAN_OUTSTANDING,
    QPAIR_OUTSTANDING_MAX,
    QPAIR_QUEUE_SIZE,
    QPAIR_LATENCY,
    NETDEV_BYTES,
    NETDEV_PACKETS,
    NETDEV_DROPS,
    NETDEV_CAPACITY,
    NETDEV_UTILISATION,
    NETDEV_QDISC_BACKLOG,
    NETDEV_QDISC_DROPS,
    NETDEV_QDISC_OVERLIMITS,
    DEVICE_COMPLETIONS,
    DEVICE_IO_BYTES,
    DEVICE_SERVICE_TIME,
    DEVICE_UTILISATION,
    DEVICE_INFLIGHT,
    RDMA_CQ_POLLS,
    RDMA_CQ_POLLS_NONEMPTY,
    RDMA_COMPLETIONS,
    RDMA_DOORBELLS,
    RDMA_WORK_REQUESTS,
    RDMA_COMPLETIONS_PER_NONEMPTY_POLL,
    RDMA_COMPLETIONS_PER_POLL,
    RDMA_WORK_REQUESTS_PER_DOORBELL,
    RDMA_SEND_PENDING,
    RDMA_SEND_PENDING_MAX,
    RDMA_SRQ_POSTED,
    RDMA_SRQ_LOW_WATER,
    RDMA_SRQ_SIZE,
    RDMA_SRQ_EMPTY,
    RDMA_PORT_INFO,
    RDMA_PORT_BYTES,
    RDMA_PORT_PACKETS,
    RDMA_PORT_CAPACITY,
    RDMA_PORT_UTILISATION,
    RDMA_PORT_TRANSMIT_DISCARDS,
    RDMA_PORT_TRANSMIT_WAIT,
    RDMA_PORT_RETRANSMITS,
    RDMA_PORT_HW_COUNTER,
    MEMORY_BUFFER,
    MEMORY_RESIDENT,
    FINDING_ACTIVE,
    FINDING_CONFIDENCE,
    FINDING_SUBJECTS,
    FINDING_RAISED,
    RECOMMENDATION_ACTIVE,
    AGENT_WINDOWS,
    AGENT_WINDOW_LENGTH,
    AGENT_CAPABILITY,
    EXPORTER_SNAPSHOT_AGE,
    EXPORTER_UPDATES,
    EXPORTER_HTTP_REQUESTS,
    EXPORTER_CONNECTIONS_REJECTED,
    EXPORTER_CONNECTIONS_DROPPED,
    EXPORTER_CONNECTIONS_OPEN,
];

/// The catalog entry of a family name.
pub fn find(name: &str) -> Option<&'static MetricDef> {
    CATALOG.iter().find(|d| d.name == name)
}

/// The catalog entry a sample name belongs to: the family itself, or a histogram family for its
/// `_bucket`, `_sum` and `_count` series.
pub fn family_of_series(series: &str) -> Option<&'static MetricDef> {
    if let Some(d) = find(series) {
        return Some(d);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = series.strip_suffix(suffix)?;
        find(base).filter(|d| d.kind == Kind::Histogram)
    })
}

/// Why a definition breaks the naming convention, if it does.
pub fn naming_problem(d: &MetricDef) -> Option<String> {
    let name = d.name;
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !valid_chars || name.contains("__") || name.ends_with('_') {
        return Some("only lowercase letters, digits and single underscores".into());
    }
    let Some(rest) = name.strip_prefix("ringside_") else {
        return Some("does not start with ringside_".into());
    };
    let subsystem = rest.split('_').next().unwrap_or("");
    if !SUBSYSTEMS.contains(&subsystem) {
        return Some(format!("unknown subsystem {subsystem:?}"));
    }
    if rest.len() <= subsystem.len() + 1 {
        return Some("no name after the subsystem".into());
    }
    let base = match (d.kind, name.strip_suffix("_total")) {
        (Kind::Counter, Some(b)) => b,
        (Kind::Counter, None) => return Some("a counter must end in _total".into()),
        (_, Some(_)) => return Some("only counters end in _total".into()),
        (_, None) => name,
    };
    if d.kind == Kind::Histogram && d.unit != Unit::Seconds && d.unit != Unit::Bytes {
        return Some("histograms are in seconds or bytes".into());
    }
    for forbidden in ["_bucket", "_sum", "_count"] {
        if base.ends_with(forbidden) {
            return Some(format!("{forbidden} is reserved for histogram series"));
        }
    }
    match d.unit.suffix() {
        Some(unit) => {
            if !base.ends_with(&format!("_{unit}")) {
                return Some(format!("unit {unit} is not the name's last word"));
            }
        }
        None => {
            // A unitless name must not pretend to have a unit, nor use a non-base unit.
            for unit in [
                "_seconds",
                "_bytes",
                "_ratio",
                "_requests",
                "_milliseconds",
                "_microseconds",
                "_nanoseconds",
                "_ms",
                "_us",
                "_ns",
                "_percent",
                "_kb",
                "_mb",
                "_kib",
                "_mib",
            ] {
                if base.ends_with(unit) {
                    return Some(format!("ends in {unit} but declares no unit"));
                }
            }
        }
    }
    for label in d.labels {
        if !LABELS.iter().any(|(l, _)| l == label) {
            return Some(format!("label {label:?} is not in LABELS"));
        }
    }
    if d.help.is_empty() || d.help.contains('\n') {
        return Some("help must be one non-empty line".into());
    }
    None
}

/// The catalog as a Markdown table (docs/metrics.md embeds it between marker comments).
pub fn markdown_table() -> String {
    let mut out =
        String::from("| series | type | unit | labels | meaning |\n|---|---|---|---|---|\n");
    for d in CATALOG {
        let unit = d.unit.suffix().unwrap_or("-");
        let labels = if d.labels.is_empty() {
            "-".to_string()
        } else {
            d.labels.join(", ")
        };
        out.push_str(&format!(
            "| `{}` | {} | {unit} | {labels} | {} |\n",
            d.name,
            d.kind.name(),
            d.help.replace('|', "\\|")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/metrics.md carries the table generated from this catalog. To refresh it:
    /// `RINGSIDE_WRITE_DOCS=1 cargo test -p exporter catalog_table_in_the_docs`.
    #[test]
    fn catalog_table_in_the_docs_is_current() {
        const BEGIN: &str = "<!-- catalog:begin (generated from exporter/src/catalog.rs) -->\n";
        const END: &str = "<!-- catalog:end -->";
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/metrics.md");
        let doc = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let (Some(b), Some(e)) = (doc.find(BEGIN), doc.find(END)) else {
            panic!("{} lacks the catalog markers", path.display());
        };
        let current = &doc[b + BEGIN.len()..e];
        let table = markdown_table();
        if current != table {
            if std::env::var_os("RINGSIDE_WRITE_DOCS").is_some() {
                let fresh = format!("{}{BEGIN}{table}{}", &doc[..b], &doc[e..]);
                std::fs::write(&path, fresh).expect("write docs/metrics.md");
            } else {
                panic!(
                    "docs/metrics.md is out of date with the catalog: run \
                     RINGSIDE_WRITE_DOCS=1 cargo test -p exporter catalog_table_in_the_docs"
                );
            }
        }
    }

    #[test]
    fn every_name_follows_the_convention() {
        let problems: Vec<String> = CATALOG
            .iter()
            .filter_map(|d| naming_problem(d).map(|p| format!("{}: {p}", d.name)))
            .collect();
        assert!(
            problems.is_empty(),
            "naming problems:\n{}",
            problems.join("\n")
        );
    }

    #[test]
    fn the_convention_check_rejects_bad_names() {
        let bad = [
            def("ringside_reactor_completions", Counter, Unit::None, "h", R),
            def("ringside_reactor_busy_total", Gauge, Unit::None, "h", R),
            def(
                "ringside_reactor_latency_ms",
                Histogram,
                Unit::Seconds,
                "h",
                R,
            ),
            def(
                "ringside_reactor_latency_seconds",
                Histogram,
                Unit::Ratio,
                "h",
                R,
            ),
            def("ringside_bogus_thing", Gauge, Unit::None, "h", &[]),
            def("node_reactor_thing", Gauge, Unit::None, "h", &[]),
            def("ringside_reactor_Busy_ratio", Gauge, Unit::Ratio, "h", R),
            def(
                "ringside_reactor_depth",
                Gauge,
                Unit::None,
                "h",
                &["request_id"],
            ),
            def(
                "ringside_reactor_wait_microseconds",
                Gauge,
                Unit::None,
                "h",
                R,
            ),
            def("ringside_reactor_x_count", Gauge, Unit::None, "h", R),
            def("ringside_reactor", Gauge, Unit::None, "h", R),
        ];
        for d in bad {
            assert!(
                naming_problem(&d).is_some(),
                "{} should be rejected",
                d.name
            );
        }
    }

    #[test]
    fn names_are_unique_and_histogram_series_resolve() {
        for (i, d) in CATALOG.iter().enumerate() {
            assert!(
                CATALOG[i + 1..].iter().all(|o| o.name != d.name),
                "{} declared twice",
                d.name
            );
            let mut seen = std::collections::HashSet::new();
            assert!(
                d.labels.iter().all(|l| seen.insert(*l)),
                "{} repeats a label",
                d.name
            );
        }
        assert_eq!(
            family_of_series("ringside_reactor_latency_seconds_bucket").map(|d| d.name),
            Some("ringside_reactor_latency_seconds")
        );
        assert!(family_of_series("ringside_reactor_busy_ratio_bucket").is_none());
        assert!(family_of_series("ringside_nonexistent").is_none());
    }

    #[test]
    fn bucket_tables_agree_and_ascend() {
        for (s, ns) in LATENCY_BUCKETS_SECONDS.iter().zip(LATENCY_BUCKETS_NS) {
            assert!(
                ((s * 1e9) - ns as f64).abs() < 1e-3,
                "{s} s vs {ns} ns disagree"
            );
        }
        assert!(LATENCY_BUCKETS_NS.windows(2).all(|w| w[0] < w[1]));
    }
}
