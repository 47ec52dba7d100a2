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
    /// The per-stage latency histograms (index = stage number).
    pub stages: Vec<Stage>,
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
    /// Idle policy.
    pub idle: Option<IdlePolicy>,
    /// Connection placement policy.
    pub placement: Option<PlacementPolicy>,
    /// Largest I/O queue size granted.
    pub max_queue_depth: Option<u32>,
    /// Largest number of I/O queues per controller.
    pub max_io_queues: Option<u32>,
}

/// Declares one word list of the ABI's vocabulary: a unit enum whose JSON form is a fixed
/// lowercase name, plus `Unknown` for a name this reader does not know (a newer minor version may
/// add words; such a file still reads, and the word shows as "unknown").
macro_rules! vocabulary {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal,)+ }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $s)] $v,)+
            /// A name this reader does not know (written by a newer target).
            #[default]
            #[serde(rename = "unknown", other)]
            Unknown,
        }

        impl $name {
            /// Every known word, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$v,)+];

            /// The stable name, as written in the JSON description.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$v => $s,)+
                    $name::Unknown => "unknown",
                }
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl core::str::FromStr for $name {
            type Err = String;
            /// Parses a known name; anything else is an error listing the known names.
            fn from_str(s: &str) -> Result<Self, String> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|w| w.as_str() == s)
                    .ok_or_else(|| {
                        let known: Vec<&str> = $name::ALL.iter().map(|w| w.as_str()).collect();
                        format!("unknown {} {s:?} (known: {})", stringify!($name), known.join(", "))
                    })
            }
        }
    };
}

vocabulary! {
    /// A per-stage latency histogram of the counters page: a span of a request's life.
    Stage {
        /// Capsule received -> submitted to the backend (includes the host's data for writes:
        /// R2T/H2CData on TCP, RDMA READ on RDMA).
        ToBackend = "to_backend",
        /// Backend submit -> backend complete.
        Backend = "backend",
        /// Response queued -> handed to the wire (socket write returned, or RDMA SEND completed).
        ToWire = "to_wire",
    }
}

vocabulary! {
    /// An NVMe-oF transport.
    Transport {
        /// NVMe/TCP.
        Tcp = "tcp",
        /// NVMe/RDMA.
        Rdma = "rdma",
    }
}

vocabulary! {
    /// The kind of backend behind a namespace.
    BackendKind {
        /// Completes instantly, no data.
        Null = "null",
        /// RAM.
        Malloc = "malloc",
        /// io_uring on a file or block device.
        Uring = "uring",
        /// NVMe passthrough through io_uring commands.
        UringCmd = "uring-cmd",
        /// User-space PCIe NVMe driver over VFIO.
        NvmeVfio = "nvme-vfio",
    }
}

vocabulary! {
    /// What a reactor does when it finds no work.
    IdlePolicy {
        /// Keeps polling (lowest latency, a full core).
        Poll = "poll",
        /// Sleeps in epoll after a number of idle polls.
        Sleep = "sleep",
    }
}

vocabulary! {
    /// How new connections are given to reactors.
    PlacementPolicy {
        /// In turn.
        RoundRobin = "round-robin",
        /// The reactor with the fewest connections.
        LeastLoaded = "least-loaded",
        /// A reactor on the NUMA node of the listener's NIC (least loaded among them).
        NumaLocal = "numa-local",
    }
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
    /// The listener's transport.
    pub transport: Transport,
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
    /// The namespace's backend.
    pub backend: BackendKind,
    /// Backing device or file, when any.
    pub device: Option<String>,
    /// Size in bytes.
    pub size_bytes: Option<u64>,
    /// Logical block size.
    pub block_size: Option<u32>,
    /// NUMA node of the device or memory, when known.
    pub numa_node: Option<u32>,
    /// How the target reaches the device (ABI 1.7): the NVMe generic character device of a
    /// `uring-cmd` namespace (`/dev/ng0n1`), the PCI address of an `nvme-vfio` controller; absent
    /// for other backends and in older files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_path: Option<String>,
    /// The device queue each reactor submits to (ABI 1.7; empty when the backend has no device
    /// queues or does not know them, and in older files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_queues: Vec<DeviceQueueDesc>,
}

/// One reactor's queue on a namespace's device.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceQueueDesc {
    /// Reactor index.
    pub reactor: u32,
    /// The NVMe submission/completion queue id the reactor's commands go to (the I/O queue pair
    /// a `nvme-vfio` reactor owns; for `uring-cmd` the kernel's queue for the reactor's CPU).
    pub qid: u32,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_names_are_stable_and_round_trip() {
        // The JSON names are the ABI: changing one is a major version bump.
        let names = |all: &[&str]| all.join(",");
        assert_eq!(
            names(&Stage::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>()),
            "to_backend,backend,to_wire"
        );
        assert_eq!(
            serde_json::to_string(&BackendKind::UringCmd).expect("encodes"),
            "\"uring-cmd\""
        );
        assert_eq!(
            serde_json::to_string(&PlacementPolicy::NumaLocal).expect("encodes"),
            "\"numa-local\""
        );
        for s in Stage::ALL {
            let j = serde_json::to_string(s).expect("encodes");
            assert_eq!(serde_json::from_str::<Stage>(&j).expect("decodes"), *s);
            assert_eq!(s.as_str().parse::<Stage>(), Ok(*s));
        }
        for t in [Transport::Tcp, Transport::Rdma] {
            assert_eq!(t.to_string().parse::<Transport>(), Ok(t));
        }
        let e = "disk".parse::<BackendKind>().unwrap_err();
        assert!(e.contains("disk") && e.contains("nvme-vfio"), "{e}");
    }

    #[test]
    fn a_word_from_a_newer_writer_reads_as_unknown() {
        assert_eq!(
            serde_json::from_str::<Stage>("\"h2c_wait\"").expect("decodes"),
            Stage::Unknown
        );
        assert_eq!(
            serde_json::from_str::<IdlePolicy>("\"interrupt\"").expect("decodes"),
            IdlePolicy::Unknown
        );
    }

    #[test]
    fn an_abi_1_3_description_with_string_fields_still_reads() {
        // What a 1.3 target wrote: the same words, then free-form strings.
        let j = r#"{"stages":["to_backend","backend","to_wire"],
            "listeners":[{"transport":"rdma","address":"10.0.0.1:4420","netdev":null,
                          "link_speed_mbps":null,"numa_node":1}],
            "subsystems":[{"nqn":"n","namespaces":[{"nsid":1,"backend":"malloc","device":null,
                          "size_bytes":4096,"block_size":512,"numa_node":null}]}],
            "settings":{"idle":"sleep","placement":"least-loaded"}}"#;
        let d: Description = serde_json::from_str(j).expect("a 1.3 description decodes");
        assert_eq!(d.stages, [Stage::ToBackend, Stage::Backend, Stage::ToWire]);
        assert_eq!(d.listeners[0].transport, Transport::Rdma);
        assert_eq!(d.subsystems[0].namespaces[0].backend, BackendKind::Malloc);
        let s = d.settings.expect("settings");
        assert_eq!(s.idle, Some(IdlePolicy::Sleep));
        assert_eq!(s.placement, Some(PlacementPolicy::LeastLoaded));
        let ns = &d.subsystems[0].namespaces[0];
        assert_eq!(
            (ns.device_path.as_deref(), ns.device_queues.len()),
            (None, 0)
        );
    }

    #[test]
    fn device_path_and_queues_round_trip_and_stay_out_when_empty() {
        let ns = NamespaceDesc {
            nsid: 1,
            backend: BackendKind::UringCmd,
            device: Some("nvme0n1".into()),
            numa_node: Some(1),
            device_path: Some("/dev/ng0n1".into()),
            device_queues: vec![DeviceQueueDesc { reactor: 0, qid: 2 }],
            ..NamespaceDesc::default()
        };
        let j = serde_json::to_string(&ns).expect("encodes");
        assert!(j.contains(r#""device_path":"/dev/ng0n1""#), "{j}");
        assert!(
            j.contains(r#""device_queues":[{"reactor":0,"qid":2}]"#),
            "{j}"
        );
        let back: NamespaceDesc = serde_json::from_str(&j).expect("decodes");
        assert_eq!(back, ns);
        let plain = serde_json::to_string(&NamespaceDesc::default()).expect("encodes");
        assert!(
            !plain.contains("device_path") && !plain.contains("device_queues"),
            "{plain}"
        );
    }
}
