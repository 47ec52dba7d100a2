//! Findings (what is wrong, with the numbers that show it) and recommendations (what to change,
//! with the effect to expect). The types every sink renders.

use serde::{Deserialize, Serialize};

/// What a finding is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A reactor runs on a NUMA node other than its NIC's, its backend device's or its buffers'.
    NumaMisplacement,
    /// A qpair's outstanding depth stays far below what the reactor could serve: the initiator
    /// is the limit.
    InitiatorLimited,
    /// Requests wait for data buffers.
    BufferStarvation,
    /// Reactors carry very different loads while one of them is saturated.
    ReactorImbalance,
    /// The backend is the bottleneck (its stage dominates and its in-flight count is at its limit).
    BackendSaturated,
    /// The backend sits idle while requests queue elsewhere.
    BackendStarved,
    /// A link carries close to its capacity (speed or shaping rate), or shows retransmits /
    /// send-queue build-up.
    LinkSaturation,
    /// Another task takes CPU time from a reactor on its core.
    ReactorPreemption,
    /// A reactor thread moves between CPUs.
    ReactorMigration,
    /// A reactor makes system calls on the fast path beyond what its transport needs.
    FastPathSyscalls,
    /// A reactor burns a core polling with little work.
    IdlePollingBurn,
    /// A reactor stopped polling (its last-poll age grows).
    ReactorStalled,
    /// The slowest requests (above p99) share a cause: a stage that took their time and the
    /// kernel events (preemption, interrupts, block I/O, retransmits) that overlapped them.
    TailLatency,
}

impl FindingKind {
    /// Stable snake_case name (metrics label, JSON).
    pub fn name(self) -> &'static str {
        match self {
            FindingKind::NumaMisplacement => "numa_misplacement",
            FindingKind::InitiatorLimited => "initiator_limited",
            FindingKind::BufferStarvation => "buffer_starvation",
            FindingKind::ReactorImbalance => "reactor_imbalance",
            FindingKind::BackendSaturated => "backend_saturated",
            FindingKind::BackendStarved => "backend_starved",
            FindingKind::LinkSaturation => "link_saturation",
            FindingKind::ReactorPreemption => "reactor_preemption",
            FindingKind::ReactorMigration => "reactor_migration",
            FindingKind::FastPathSyscalls => "fast_path_syscalls",
            FindingKind::IdlePollingBurn => "idle_polling_burn",
            FindingKind::ReactorStalled => "reactor_stalled",
            FindingKind::TailLatency => "tail_latency",
        }
    }

    /// Every kind, for catalogs (metrics, docs).
    pub const ALL: [FindingKind; 13] = [
        FindingKind::NumaMisplacement,
        FindingKind::InitiatorLimited,
        FindingKind::BufferStarvation,
        FindingKind::ReactorImbalance,
        FindingKind::BackendSaturated,
        FindingKind::BackendStarved,
        FindingKind::LinkSaturation,
        FindingKind::ReactorPreemption,
        FindingKind::ReactorMigration,
        FindingKind::FastPathSyscalls,
        FindingKind::IdlePollingBurn,
        FindingKind::ReactorStalled,
        FindingKind::TailLatency,
    ];
}

/// How much it matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing; costs little.
    Info,
    /// Costs performance measurably.
    Warning,
    /// Costs a large share of performance or risks stalls.
    Critical,
}

/// Cost share (of IOPS or of latency) under which a finding is only worth knowing: the
/// background of a non-isolated core (kernel workers, RCU, timers) takes 0.5-1 % of a reactor's
/// time; anything under 2 % is within run-to-run noise of a throughput measurement.
pub const INFO_BELOW: f64 = 0.02;

/// Cost share from which a finding is critical: a quarter of the throughput (or of the latency)
/// is gone.
pub const CRITICAL_FROM: f64 = 0.25;

impl Severity {
    /// The severity a measured cost earns (DESIGN §6: severity follows from the cost): under
    /// [`INFO_BELOW`] info, from [`CRITICAL_FROM`] critical, warning between. A cost that is not
    /// a number is a warning (something is wrong, how much is unknown).
    pub fn from_cost(share: f64) -> Severity {
        if !share.is_finite() {
            Severity::Warning
        } else if share < INFO_BELOW {
            Severity::Info
        } else if share < CRITICAL_FROM {
            Severity::Warning
        } else {
            Severity::Critical
        }
    }

    /// Lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// What a finding is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Subject {
    /// The whole target.
    Target,
    /// A reactor, by index.
    Reactor {
        /// Reactor index.
        index: u32,
    },
    /// A qpair.
    Qpair {
        /// Reactor index.
        reactor: u32,
        /// Slot in the reactor.
        slot: u16,
    },
    /// A network device.
    Netdev {
        /// Interface name.
        name: String,
    },
    /// A block device.
    Device {
        /// Device name.
        name: String,
    },
    /// A port of an RDMA device (hardware RoCE or InfiniBand, whose traffic the netdev counters
    /// do not see).
    RdmaPort {
        /// RDMA device (`mlx5_0`).
        device: String,
        /// Port number (from 1).
        port: u32,
    },
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::Target => write!(f, "target"),
            Subject::Reactor { index } => write!(f, "reactor {index}"),
            Subject::Qpair { reactor, slot } => write!(f, "qpair {reactor}.{slot}"),
            Subject::Netdev { name } => write!(f, "netdev {name}"),
            Subject::Device { name } => write!(f, "device {name}"),
            Subject::RdmaPort { device, port } => write!(f, "rdma port {device}/{port}"),
        }
    }
}

/// One number behind a finding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// What was measured ("avg outstanding", "reactor busy", "p50 latency").
    pub what: String,
    /// Value.
    pub value: f64,
    /// Unit ("", "%", "us", "IOPS", "MB/s", "node").
    pub unit: String,
}

impl Evidence {
    /// Shorthand.
    pub fn new(what: impl Into<String>, value: f64, unit: impl Into<String>) -> Evidence {
        Evidence {
            what: what.into(),
            value,
            unit: unit.into(),
        }
    }
}

/// A diagnosed fault.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// What kind.
    pub kind: FindingKind,
    /// How bad.
    pub severity: Severity,
    /// About what.
    pub subject: Subject,
    /// One sentence a storage engineer reads first.
    pub summary: String,
    /// The numbers (from the latest window that confirmed it, or averaged over the streak).
    pub evidence: Vec<Evidence>,
    /// Windows in which the condition held (consecutive, up to now).
    pub windows: u32,
    /// First window start (ns) of the streak.
    pub since_ns: u64,
    /// Last window end (ns).
    pub until_ns: u64,
    /// 0..1: how sure (grows with the streak and the margin over the threshold).
    pub confidence: f64,
    /// What it costs, measured: the severity follows from it (absent from findings recorded
    /// before costs existed, and from detectors that cannot measure one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<Cost>,
}

/// The measured cost of a finding. Shares are 0..1.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// Share of the IOPS the fault takes: (what the target would serve without it − what it
    /// serves) / what it would serve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iops_share: Option<f64>,
    /// Share of the request latency the fault explains (of the affected requests' time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_share: Option<f64>,
    /// Mean latency the fault adds to the requests it touches (ns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added_latency_ns: Option<f64>,
    /// How it was computed, one line.
    pub basis: String,
}

impl Cost {
    /// The larger of the two shares (0 when neither is known).
    pub fn share(&self) -> f64 {
        self.iops_share
            .into_iter()
            .chain(self.latency_share)
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max)
    }

    /// The severity this cost earns ([`Severity::from_cost`]).
    pub fn severity(&self) -> Severity {
        Severity::from_cost(self.share())
    }

    /// The cost as evidence lines (so every sink that shows evidence shows it).
    pub fn evidence(&self) -> Vec<Evidence> {
        let mut v = Vec::new();
        if let Some(s) = self.iops_share {
            v.push(Evidence::new("cost: IOPS lost", s * 100.0, "%"));
        }
        if let Some(s) = self.latency_share {
            v.push(Evidence::new("cost: latency explained", s * 100.0, "%"));
        }
        if let Some(ns) = self.added_latency_ns {
            v.push(Evidence::new("cost: latency added", ns / 1e3, "us"));
        }
        v
    }
}

/// A setting the recommender can change.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Setting {
    /// The target's core list.
    CoreList,
    /// Number of reactors.
    ReactorCount,
    /// The target's I/O queue size limit (`limits.max_queue_depth`).
    TargetQueueDepth,
    /// The initiator's queue depth per qpair (`-q`, `queue_depth` in fio, `nvme connect -Q`).
    InitiatorQueueDepth,
    /// The initiator's number of qpairs / I/O queues (`--qpairs`, `nvme connect -i`).
    InitiatorQpairs,
    /// Connection placement policy.
    Placement,
    /// Idle policy.
    IdlePolicy,
    /// Memory binding of the target process (`numactl --membind`).
    MemoryBinding,
}

impl Setting {
    /// Stable snake_case name.
    pub fn name(&self) -> &'static str {
        match self {
            Setting::CoreList => "core_list",
            Setting::ReactorCount => "reactor_count",
            Setting::TargetQueueDepth => "target_queue_depth",
            Setting::InitiatorQueueDepth => "initiator_queue_depth",
            Setting::InitiatorQpairs => "initiator_qpairs",
            Setting::Placement => "placement",
            Setting::IdlePolicy => "idle_policy",
            Setting::MemoryBinding => "memory_binding",
        }
    }
}

/// A proposed change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    /// Which setting.
    pub setting: Setting,
    /// Its value now ("1", "[0]", "poll", "unknown").
    pub current: String,
    /// The value to use.
    pub proposed: String,
    /// What to expect, in numbers when possible ("~8x IOPS: 47K -> ~380K").
    pub expected_effect: String,
    /// Expected IOPS after the change, when the model predicts one.
    pub expected_iops: Option<f64>,
    /// The range of the expected IOPS (low, high), from the model's uncertainty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_iops_range: Option<(f64, f64)>,
    /// Expected mean latency (round trip, µs) after the change, when the model predicts one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_latency_us: Option<f64>,
    /// Why: the measurements and the reasoning (Little's law, knee, node of the NIC).
    pub evidence: Vec<String>,
    /// The findings it answers.
    pub addresses: Vec<FindingKind>,
    /// Where it goes: "ringside-tgt" (TOML fragment) or "initiator" (flags).
    pub applies_to: String,
    /// Ready to paste: a TOML fragment for ringside-tgt or initiator options
    /// (`ringside-perf -q 32`, `fio --iodepth=32`, `nvme connect … -Q 32`).
    pub fragment: String,
}
