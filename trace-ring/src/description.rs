//! The description section: what the agent needs to understand a trace file without any RPC.
//!
//! Threading/ownership: plain serde values. The producer serializes a [`Description`] once at
//! creation (format [`DESC_FORMAT_JSON`](crate::layout::DESC_FORMAT_JSON): UTF-8 JSON, protected
//! by a CRC32C in the header); the reader decodes its own copy. It is slow-path data, so JSON's
//! readability (`ringside trace --describe`, `jq`) wins over compactness. Unknown fields are
//! ignored when decoding, so a newer minor version may add fields.
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};

use crate::layout::tpoint_group;

/// Everything static about the traced target.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Description {
    /// Names of the tracepoint groups, indexed by mask bit.
    pub groups: Vec<GroupDesc>,
    /// The tracepoint catalog.
    pub tracepoints: Vec<TracepointDesc>,
    /// Names of the per-stage latency histograms (index = stage number).
    pub stages: Vec<String>,
    /// The reactors, index order.
    pub reactors: Vec<ReactorDesc>,
    /// Listeners.
    pub listeners: Vec<ListenerDesc>,
    /// Subsystems and their namespaces.
    pub subsystems: Vec<SubsystemDesc>,
    /// The target's tunables as configured (ABI 1.2; absent in older files).
    pub settings: Option<SettingsDesc>,
}

/// The target's tunables, so the agent can state a recommendation's current value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SettingsDesc {
    /// Idle policy ("poll", "sleep").
    pub idle: Option<String>,
    /// Connection placement policy ("round-robin", "least-loaded", "numa-local").
    pub placement: Option<String>,
    /// Largest I/O queue size granted.
    pub max_queue_depth: Option<u32>,
    /// Largest number of I/O queues per controller.
    pub max_io_queues: Option<u32>,
}

/// A tracepoint group: one bit of the enabled mask.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDesc {
    /// Mask bit, 0..64.
    pub bit: u8,
    /// e.g. "tcp", "rdma", "qpair", "poll".
    pub name: String,
}

/// One tracepoint of the catalog.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TracepointDesc {
    /// `group << 8 | index` (see [`tpoint_id`](crate::layout::tpoint_id)).
    pub id: u16,
    /// e.g. "tcp.capsule_parsed".
    pub name: String,
    /// Group name (redundant with the id's group bit, for readers of the JSON).
    pub group: String,
    /// Meaning of `arg0` and `arg1` (zero, one or two entries).
    pub args: Vec<ArgDesc>,
    /// Place in a request's life (absent in files from before ABI 1.1: every tracepoint is then
    /// a plain event).
    pub role: TpRole,
}

/// Where a tracepoint stands in the life of a request, which lives on one reactor × qpair ×
/// command id. Lets a reader rebuild requests without knowing the transport.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TpRole {
    /// Not part of a request (qpair lifecycle, poll accounting).
    #[default]
    Event,
    /// The first stage: a request begins (e.g. its capsule arrived).
    Begin,
    /// An intermediate stage.
    Stage,
    /// The request is complete (its response went out).
    End,
}

/// One argument of a tracepoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArgDesc {
    /// e.g. "bytes", "opcode", "lba".
    pub name: String,
    /// How to display it.
    pub kind: ArgKind,
}

/// Display kind of an argument.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArgKind {
    /// Unsigned integer.
    #[default]
    U64,
    /// Integer shown in hex (addresses, keys, flags).
    Hex,
    /// Byte count.
    Bytes,
    /// A duration in trace clock ticks.
    Ticks,
    /// A duration in nanoseconds.
    Nanos,
    /// An NVMe opcode.
    Opcode,
    /// An NVMe status (SCT << 8 | SC).
    Status,
    /// A logical block address.
    Lba,
    /// A timestamp in trace clock ticks.
    Timestamp,
}

/// A reactor (poll group).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactorDesc {
    /// Index (ring number).
    pub index: u32,
    /// CPU the reactor is pinned to.
    pub core: u32,
    /// NUMA node of that CPU, when known.
    pub numa_node: Option<u32>,
    /// Linux thread id, when known at creation (the writer also records it in its ring's
    /// control block when it attaches).
    pub tid: Option<u32>,
}

/// A listener.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerDesc {
    /// "tcp" or "rdma".
    pub transport: String,
    /// "ip:port".
    pub address: String,
    /// Network device carrying the address, when known.
    pub netdev: Option<String>,
    /// Link speed in Mb/s, when known.
    pub link_speed_mbps: Option<u64>,
    /// NUMA node of the NIC, when known.
    pub numa_node: Option<u32>,
}

/// A subsystem.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubsystemDesc {
    /// NQN.
    pub nqn: String,
    /// Namespaces.
    pub namespaces: Vec<NamespaceDesc>,
}

/// A namespace and its backend.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceDesc {
    /// Namespace id.
    pub nsid: u32,
    /// "null", "malloc", "uring", "uring-cmd", "nvme-vfio".
    pub backend: String,
    /// Backing device or file, when any.
    pub device: Option<String>,
    /// Size in bytes.
    pub size_bytes: Option<u64>,
    /// Logical block size.
    pub block_size: Option<u32>,
    /// NUMA node of the device or memory, when known.
    pub numa_node: Option<u32>,
}

impl Description {
    /// Looks a tracepoint up by id.
    pub fn tracepoint(&self, id: u16) -> Option<&TracepointDesc> {
        self.tracepoints.iter().find(|t| t.id == id)
    }

    /// Checks internal consistency: unique tracepoint ids, group bits below 64, unique group bits.
    /// Returns a lowercase reason.
    pub fn validate(&self) -> Result<(), String> {
        let mut ids: Vec<u16> = self.tracepoints.iter().map(|t| t.id).collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("duplicate tracepoint id {:#06x}", w[0]));
        }
        if let Some(t) = self.tracepoints.iter().find(|t| t.id >> 8 >= 64) {
            return Err(format!(
                "tracepoint {} has id {:#06x}: group must be below 64",
                t.name, t.id
            ));
        }
        let mut bits: Vec<u8> = self.groups.iter().map(|g| g.bit).collect();
        bits.sort_unstable();
        if let Some(b) = bits.iter().find(|&&b| b >= 64) {
            return Err(format!("group bit {b} must be below 64"));
        }
        if let Some(w) = bits.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("duplicate group bit {}", w[0]));
        }
        if let Some(t) = self.tracepoints.iter().find(|t| t.args.len() > 2) {
            return Err(format!("tracepoint {} has more than two arguments", t.name));
        }
        Ok(())
    }

    /// Name of the group of a tracepoint id, when described.
    pub fn group_name(&self, tpoint: u16) -> Option<&str> {
        let bit = tpoint_group(tpoint);
        self.groups
            .iter()
            .find(|g| g.bit == bit)
            .map(|g| g.name.as_str())
    }
}
