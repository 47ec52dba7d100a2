//! Target configuration: the TOML file format, its defaults and its validation.
//!
//! Pure data, no threads: the binary parses a file (or builds a [`Config`] from flags, see
//! [`crate::cli`]), calls [`Config::validate`] once, and hands the result to [`crate::Target::start`].
//! Everything the reactors later rely on (sizes are multiples of the block size, NSIDs are unique,
//! cores exist) is checked here, so the fast path never re-checks configuration.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

/// The well-known NQN of the discovery subsystem.
pub const DISCOVERY_NQN: &str = "nqn.2014-08.org.nvmexpress.discovery";
/// The NQN of the default subsystem built from command-line flags.
pub const DEFAULT_NQN: &str = "nqn.2026-11.io.ringside:nvme0";
/// Longest NQN the spec allows (bytes, without the terminating NUL).
pub const MAX_NQN_LEN: usize = 223;

/// Errors found while reading or validating a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid size {value:?}: {reason}")]
    Size { value: String, reason: &'static str },
    #[error("invalid core list {value:?}: {reason}")]
    Cores { value: String, reason: String },
    #[error("invalid NQN {nqn:?}: {reason}")]
    Nqn { nqn: String, reason: &'static str },
    #[error("{0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(msg.into())
}

/// A byte size, written in TOML as an integer (bytes) or a string such as `"1GiB"` or `"512M"`.
///
/// Suffixes: `K`/`KiB`, `M`/`MiB`, `G`/`GiB`, `T`/`TiB` are powers of 1024; `KB`, `MB`, `GB`, `TB` are
/// powers of 1000; `B` or none is bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ConfigError::Size {
            value: s.to_string(),
            reason,
        };
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        if num.is_empty() {
            return Err(err(
                "expected a number followed by an optional unit such as KiB, MiB, GiB",
            ));
        }
        let n: u64 = num.parse().map_err(|_| err("number too large"))?;
        let mult: u64 = match unit.trim() {
            "" | "B" | "b" => 1,
            "K" | "k" | "KiB" | "kiB" => 1 << 10,
            "M" | "m" | "MiB" => 1 << 20,
            "G" | "g" | "GiB" => 1 << 30,
            "T" | "t" | "TiB" => 1 << 40,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            _ => {
                return Err(err(
                    "unknown unit (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)",
                ))
            }
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| err("size overflows 64 bits"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
            if n != 0 && n % (1u64 << shift) == 0 {
                return write!(f, "{}{}", n >> shift, unit);
            }
        }
        write!(f, "{n}B")
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Str(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A CPU number as the kernel numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CoreId(pub usize);

impl fmt::Display for CoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Parses a core list such as `0`, `0,1`, `0-3,6`.
pub fn parse_core_list(s: &str) -> Result<Vec<CoreId>, ConfigError> {
    let err = |reason: String| ConfigError::Cores {
        value: s.to_string(),
        reason,
    };
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(err("empty element".into()));
        }
        let num = |p: &str| {
            p.trim()
                .parse::<usize>()
                .map_err(|_| err(format!("{p:?} is not a core number")))
        };
        if let Some((a, b)) = part.split_once('-') {
            let (a, b) = (num(a)?, num(b)?);
            if a > b {
                return Err(err(format!("range {part} is reversed")));
            }
            if b - a > 4096 {
                return Err(err(format!("range {part} is too long")));
            }
            out.extend((a..=b).map(CoreId));
        } else {
            out.push(CoreId(num(part)?));
        }
    }
    Ok(out)
}

/// How new connections are spread over reactors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// Each new connection goes to the next reactor in the core list.
    #[default]
    RoundRobin,
    /// Each new connection goes to the reactor with the fewest live connections.
    LeastLoaded,
    /// Each new connection goes to the least loaded reactor on the NUMA node of the listener's
    /// NIC (every reactor when that node is unknown or has none).
    NumaLocal,
}

impl Placement {
    /// Its name in the trace ABI.
    pub fn abi(self) -> trace_ring::description::PlacementPolicy {
        use trace_ring::description::PlacementPolicy as P;
        match self {
            Placement::RoundRobin => P::RoundRobin,
            Placement::LeastLoaded => P::LeastLoaded,
            Placement::NumaLocal => P::NumaLocal,
        }
    }
}

impl FromStr for Placement {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "round-robin" => Ok(Placement::RoundRobin),
            "least-loaded" => Ok(Placement::LeastLoaded),
            "numa-local" => Ok(Placement::NumaLocal),
            _ => Err(invalid(format!(
                "unknown placement {s:?} (use round-robin, least-loaded or numa-local)"
            ))),
        }
    }
}

/// What a reactor does when a poll found no work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "mode")]
pub enum IdlePolicy {
    /// Spin: poll again at once (lowest latency, one core burnt per reactor).
    #[default]
    Poll,
    /// After `after_idle_polls` consecutive empty polls, wait in epoll for up to `max_sleep_us`.
    Sleep {
        after_idle_polls: u32,
        max_sleep_us: u32,
    },
}

impl IdlePolicy {
    /// Its name in the trace ABI.
    pub fn abi(self) -> trace_ring::description::IdlePolicy {
        use trace_ring::description::IdlePolicy as I;
        match self {
            IdlePolicy::Poll => I::Poll,
            IdlePolicy::Sleep { .. } => I::Sleep,
        }
    }
}

/// How a reactor finds sockets with input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SocketPoll {
    /// `recv` on each connection while the reactor has few (<= 8), `epoll` above that.
    #[default]
    Auto,
    /// `epoll_wait` with a zero timeout, then `recv` on the ready sockets only.
    Epoll,
    /// Non-blocking `recv` on every connection each poll (one syscall less per I/O at low depth).
    Recv,
}

/// When a successful read's last C2HData PDU carries the SUCCESS flag in place of a
/// CapsuleResp (one PDU, 24 bytes and one parse less per read on the host).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum C2hSuccess {
    /// Only on I/O queues whose host disabled SQ flow control at Connect (CATTR bit 2), as the
    /// NVMe/TCP transport spec allows and Linux's nvmet does.
    Auto,
    /// On every I/O queue, as SPDK's `nvmf_tgt` does by default (`c2h_success`); the Linux,
    /// SPDK and FreeBSD hosts accept it. The default: the Linux and SPDK hosts keep SQ flow
    /// control on unless told otherwise, so only this spares them a PDU per read. Unlike SPDK,
    /// on a queue with SQ flow control on one read in a quarter of the SQ still ends with a
    /// CapsuleResp, so a host that counts free slots from SQHD never runs out of them.
    #[default]
    Always,
    /// Never: every command ends with a CapsuleResp.
    Never,
}

impl FromStr for C2hSuccess {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(C2hSuccess::Auto),
            "always" => Ok(C2hSuccess::Always),
            "never" => Ok(C2hSuccess::Never),
            _ => Err(invalid(format!(
                "unknown c2h_success {s:?} (use auto, always or never)"
            ))),
        }
    }
}

/// One transport listener.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// `tcp`, or `rdma` (cargo feature `rdma`, on by default).
    #[serde(default = "default_transport")]
    pub transport: String,
    pub addr: IpAddr,
    /// 0 asks the kernel for a free port (tests).
    #[serde(default = "default_port")]
    pub port: u16,
}

impl ListenerConfig {
    /// The transport as a word of the trace ABI (`Unknown` for a name validation refuses).
    pub fn kind(&self) -> trace_ring::description::Transport {
        self.transport.parse().unwrap_or_default()
    }
}

fn default_transport() -> String {
    "tcp".into()
}
fn default_port() -> u16 {
    4420
}

/// The storage behind a namespace (backend-specific settings live in the variant).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// Completes at once; reads return zeros, writes are dropped.
    Null,
    /// RAM, shared by all reactors.
    Malloc,
    /// io_uring on a regular file or a block device, opened once with O_DIRECT.
    Uring { path: PathBuf },
    /// A PCIe NVMe controller bound to vfio-pci, driven from user space; `bdf` is its PCI
    /// address (`0000:81:00.0`). The namespace is the controller's first active one.
    NvmeVfio { bdf: String },
    /// NVMe passthrough through io_uring on a namespace's generic character device
    /// (`/dev/ngXnY`); size and block size from Identify.
    UringCmd { path: PathBuf },
}

impl BackendKind {
    /// Its name in the trace ABI.
    pub fn abi(&self) -> trace_ring::description::BackendKind {
        use trace_ring::description::BackendKind as B;
        match self {
            BackendKind::Null => B::Null,
            BackendKind::Malloc => B::Malloc,
            BackendKind::Uring { .. } => B::Uring,
            BackendKind::NvmeVfio { .. } => B::NvmeVfio,
            BackendKind::UringCmd { .. } => B::UringCmd,
        }
    }

    /// Whether the file or device gives the size and block size (0 in the configuration = its
    /// own).
    pub fn sized_by_device(&self) -> bool {
        matches!(
            self,
            BackendKind::Uring { .. } | BackendKind::UringCmd { .. } | BackendKind::NvmeVfio { .. }
        )
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.abi().as_str())
    }
}

/// One namespace of a subsystem. In TOML: `backend = "null" | "malloc" | "uring"`, `size`
/// (required for null and malloc; for uring optional, default the whole file or device),
/// `block_size` (512 or 4096; default 512, for uring the device's own), `path` (uring only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawNamespace", into = "RawNamespace")]
pub struct NamespaceConfig {
    /// Namespace id, 1..=0xFFFF_FFFE, unique within its subsystem. Defaults to position + 1.
    pub nsid: Option<u32>,
    pub backend: BackendKind,
    /// Bytes. For `uring`, 0 means the whole file or device (a non-zero size uses its start).
    pub size: ByteSize,
    /// 512 or 4096. For `uring`, 0 means the device's logical block size (a file: the smallest
    /// O_DIRECT unit of its filesystem, at least 512).
    pub block_size: u32,
}

/// The TOML shape of [`NamespaceConfig`] (the path sits next to `backend`).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNamespace {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nsid: Option<u32>,
    backend: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<PathBuf>,
    /// PCI address of an nvme-vfio controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bdf: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    size: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    block_size: Option<u32>,
}

impl TryFrom<RawNamespace> for NamespaceConfig {
    type Error = String;
    fn try_from(r: RawNamespace) -> Result<Self, String> {
        if r.bdf.is_some() && r.backend != "nvme-vfio" {
            return Err(format!(
                "bdf is only for the nvme-vfio backend, not {:?}",
                r.backend
            ));
        }
        let backend = match (r.backend.as_str(), r.path) {
            ("nvme-vfio", None) => match r.bdf {
                Some(bdf) => BackendKind::NvmeVfio { bdf },
                None => {
                    return Err(
                        "an nvme-vfio namespace needs bdf = \"DOMAIN:BUS:DEV.FN\" (e.g. \"0000:81:00.0\")"
                            .into(),
                    )
                }
            },
            ("uring", Some(path)) => BackendKind::Uring { path },
            ("uring-cmd", Some(path)) => BackendKind::UringCmd { path },
            ("uring-cmd", None) => {
                return Err(
                    "a uring-cmd namespace needs path = \"/dev/ngXnY\" (the namespace's NVMe generic character device)"
                        .into(),
                )
            }
            ("uring", None) => {
                return Err("a uring namespace needs path = \"FILE or /dev/BLOCKDEVICE\"".into())
            }
            ("null" | "malloc", Some(_)) => {
                return Err(format!(
                    "path is only for the uring backend, not {:?}",
                    r.backend
                ))
            }
            ("null", None) => BackendKind::Null,
            ("malloc", None) => BackendKind::Malloc,
            (other, _) => {
                return Err(format!(
                    "unknown backend {other:?} (use null, malloc, uring, uring-cmd or nvme-vfio)"
                ))
            }
        };
        let uring = backend.sized_by_device();
        let size = match r.size {
            Some(s) => s,
            None if uring => ByteSize(0),
            None => return Err(format!("a {} namespace needs a size", r.backend)),
        };
        Ok(NamespaceConfig {
            nsid: r.nsid,
            backend,
            size,
            block_size: r.block_size.unwrap_or(if uring { 0 } else { 512 }),
        })
    }
}

impl From<NamespaceConfig> for RawNamespace {
    fn from(n: NamespaceConfig) -> Self {
        let auto = |v: u64| (v != 0).then_some(v);
        RawNamespace {
            nsid: n.nsid,
            backend: n.backend.to_string(),
            path: match &n.backend {
                BackendKind::Uring { path } | BackendKind::UringCmd { path } => Some(path.clone()),
                _ => None,
            },
            bdf: match n.backend {
                BackendKind::NvmeVfio { bdf } => Some(bdf),
                _ => None,
            },
            size: auto(n.size.0).map(ByteSize),
            block_size: auto(u64::from(n.block_size)).map(|b| b as u32),
        }
    }
}

/// One NVM subsystem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubsystemConfig {
    pub nqn: String,
    #[serde(default = "default_serial")]
    pub serial: String,
    #[serde(default = "default_model")]
    pub model: String,
    /// Host NQNs allowed to connect; empty means any host.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    #[serde(default)]
    pub namespaces: Vec<NamespaceConfig>,
}

fn default_serial() -> String {
    "RINGSIDE0001".into()
}
fn default_model() -> String {
    "ringside".into()
}

/// Queue and transfer limits advertised to hosts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest queue (SQ) size a host may ask for in Connect, in entries (CAP.MQES + 1).
    pub max_queue_depth: u32,
    /// Admin queue size limit, in entries.
    pub max_admin_queue_depth: u32,
    /// Number of I/O queues granted per controller at most.
    pub max_io_queues: u32,
    /// Data a write may carry inside its command capsule (IOCCSZ is derived from it).
    pub in_capsule_data_size: ByteSize,
    /// Largest transfer of one command (MDTS); a power of two times 4 KiB.
    pub max_io_size: ByteSize,
    /// Largest H2CData PDU payload the host may send (MAXH2CDATA).
    pub max_h2c_data: ByteSize,
    /// Largest C2HData PDU payload the target sends; reads above it are split.
    pub max_c2h_data: ByteSize,
    /// Connections a reactor can hold (sizes the per-reactor statistics table).
    pub max_connections_per_reactor: u32,
    /// A connection that has not completed ICReq and Connect within this is closed.
    pub handshake_timeout_ms: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_queue_depth: 256,
            max_admin_queue_depth: 32,
            max_io_queues: 16,
            in_capsule_data_size: ByteSize(8192),
            max_io_size: ByteSize(128 * 1024),
            max_h2c_data: ByteSize(128 * 1024),
            max_c2h_data: ByteSize(128 * 1024),
            max_connections_per_reactor: 256,
            handshake_timeout_ms: 10_000,
        }
    }
}

/// Keep-alive handling.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeepAlive {
    /// How often reactors look for expired controllers (also reported as KAS, in 100 ms units).
    pub check_interval_ms: u32,
    /// Used when an NVM-subsystem Connect asks for KATO 0; 0 keeps keep-alive off for it.
    pub default_timeout_ms: u32,
}

impl Default for KeepAlive {
    fn default() -> Self {
        KeepAlive {
            check_interval_ms: 100,
            default_timeout_ms: 0,
        }
    }
}

/// The whole target configuration (one TOML file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Instance name (shared-memory file and default RPC socket are named after it).
    #[serde(default = "default_name")]
    pub name: String,
    /// One reactor per listed core.
    #[serde(default = "default_cores")]
    pub cores: Vec<CoreId>,
    /// JSON-RPC unix socket; defaults to `/var/tmp/ringside-<name>.sock`.
    #[serde(default)]
    pub rpc_socket: Option<PathBuf>,
    #[serde(default)]
    pub placement: Placement,
    #[serde(default)]
    pub idle: IdlePolicy,
    #[serde(default)]
    pub socket_poll: SocketPoll,
    /// NVMe/TCP: when a read ends with C2HData SUCCESS instead of a CapsuleResp.
    #[serde(default)]
    pub c2h_success: C2hSuccess,
    /// Pin reactor threads to their cores (turn off only for tests on busy machines).
    #[serde(default = "default_true")]
    pub pin_reactors: bool,
    #[serde(default)]
    pub listeners: Vec<ListenerConfig>,
    #[serde(default)]
    pub subsystems: Vec<SubsystemConfig>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub keep_alive: KeepAlive,
    #[serde(default)]
    pub trace: TraceConfig,
}

/// The shared-memory trace file (`<dir>/ringside.<name>`, crate `trace-ring`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TraceConfig {
    /// Write the trace file at all (a failure to create it only prints one line).
    pub enabled: bool,
    /// Directory of the file (default `/dev/shm`).
    pub dir: Option<PathBuf>,
    /// Records per reactor ring: a power of two (32 bytes each).
    pub ring_records: u64,
    /// Per-reactor qpair counter slots (connections beyond them count as overflow).
    pub qpair_slots: u32,
    /// Tracepoint groups enabled at start: any of "tcp", "qpair", "poll", "rdma" (the default
    /// set gains "rdma" when an rdma listener is configured).
    pub groups: Vec<String>,
    /// Permission bits of the trace file, octal (`"0600"`: owner only, like SPDK; `"0640"` with
    /// `group` lets an unprivileged agent in that group read it). The RPC socket gets the same
    /// bits with write added wherever read is given (connecting needs write).
    pub mode: String,
    /// Group (name or number) given to the trace file and the RPC socket (`--trace-group`).
    pub group: Option<String>,
}

impl Default for TraceConfig {
    fn default() -> Self {
        TraceConfig {
            enabled: true,
            dir: None,
            ring_records: 16384,
            qpair_slots: 64,
            groups: vec!["tcp".into(), "qpair".into(), "poll".into()],
            mode: "0600".into(),
            group: None,
        }
    }
}

impl TraceConfig {
    /// The mode bits and group id of the trace file and the RPC socket.
    pub fn access(&self) -> Result<(u32, Option<u32>), ConfigError> {
        let m = self.mode.trim();
        let mode = u32::from_str_radix(m.strip_prefix("0o").unwrap_or(m), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| {
                invalid(format!(
                    "trace.mode {:?} is not octal permission bits such as \"0640\"",
                    self.mode
                ))
            })?;
        let gid = match &self.group {
            None => None,
            Some(g) => Some(group_id(g).ok_or_else(|| {
                invalid(format!(
                    "trace.group {g:?}: no such group in /etc/group (create it or use a gid)"
                ))
            })?),
        };
        Ok((mode, gid))
    }
}

/// A group's id from its name (looked up in `/etc/group`) or its number.
pub fn group_id(group: &str) -> Option<u32> {
    if let Ok(gid) = group.parse::<u32>() {
        return Some(gid);
    }
    let table = std::fs::read_to_string("/etc/group").ok()?;
    table.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == group).then_some(())?;
        f.nth(1)?.parse().ok()
    })
}

fn default_name() -> String {
    "ringside".into()
}
fn default_cores() -> Vec<CoreId> {
    vec![CoreId(0)]
}
fn default_true() -> bool {
    true
}

impl Config {
    /// A configuration with one subsystem (no namespaces yet), no listener, defaults elsewhere.
    pub fn new(name: &str) -> Config {
        Config {
            name: name.into(),
            cores: default_cores(),
            rpc_socket: None,
            placement: Placement::default(),
            idle: IdlePolicy::default(),
            socket_poll: SocketPoll::default(),
            c2h_success: C2hSuccess::default(),
            pin_reactors: true,
            listeners: Vec::new(),
            subsystems: vec![SubsystemConfig {
                nqn: DEFAULT_NQN.into(),
                serial: default_serial(),
                model: default_model(),
                allowed_hosts: Vec::new(),
                namespaces: Vec::new(),
            }],
            limits: Limits::default(),
            keep_alive: KeepAlive::default(),
            trace: TraceConfig::default(),
        }
    }

    /// Parses TOML text (`path` only names the source in errors).
    pub fn from_toml(text: &str, path: &std::path::Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })
    }

    /// Reads and parses a TOML file (not yet validated).
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml(&text, path)
    }

    /// The RPC socket path, explicit or derived from the name.
    pub fn rpc_socket_path(&self) -> PathBuf {
        self.rpc_socket
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("/var/tmp/ringside-{}.sock", self.name)))
    }

    /// Checks everything and fills defaulted NSIDs. `online` is the set of CPUs this process may
    /// run on (None skips the core check, for tests of the file format).
    pub fn validate(&mut self, online: Option<&[usize]>) -> Result<(), ConfigError> {
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(invalid(format!(
                "instance name {:?} must be 1..=64 characters of [A-Za-z0-9._-]",
                self.name
            )));
        }
        if self.cores.is_empty() {
            return Err(invalid("the core list is empty"));
        }
        let mut seen = HashSet::new();
        for c in &self.cores {
            if !seen.insert(*c) {
                return Err(invalid(format!("core {c} is listed twice")));
            }
            if let Some(online) = online {
                if !online.contains(&c.0) {
                    return Err(invalid(format!(
                        "core {c} is not available to this process (available: {online:?})"
                    )));
                }
            }
        }
        if let IdlePolicy::Sleep {
            after_idle_polls,
            max_sleep_us,
        } = self.idle
        {
            if after_idle_polls == 0 || max_sleep_us == 0 || max_sleep_us > 1_000_000 {
                return Err(invalid(
                    "idle sleep needs after_idle_polls >= 1 and 1 <= max_sleep_us <= 1000000",
                ));
            }
        }
        if self.listeners.is_empty() {
            return Err(invalid(
                "no listener configured (give --listen ADDR:PORT or a [[listeners]] table)",
            ));
        }
        let mut seen_l = HashSet::new();
        for l in &self.listeners {
            use trace_ring::description::Transport;
            let known = l.kind() == Transport::Tcp
                || (cfg!(feature = "rdma") && l.kind() == Transport::Rdma);
            if !known {
                return Err(invalid(format!(
                    "listener {}:{}: unknown transport {:?} (tcp{} are supported)",
                    l.addr,
                    l.port,
                    l.transport,
                    if cfg!(feature = "rdma") {
                        " and rdma"
                    } else {
                        "; rdma is not built in (cargo feature `rdma`)"
                    }
                )));
            }
            if l.kind() == Transport::Rdma && l.port == 0 {
                return Err(invalid(format!(
                    "listener {}:0: an rdma listener needs a port",
                    l.addr
                )));
            }
            if l.port != 0 && !seen_l.insert((l.transport.as_str(), l.addr, l.port)) {
                return Err(invalid(format!(
                    "listener {}:{} is listed twice",
                    l.addr, l.port
                )));
            }
        }
        self.validate_limits()?;
        let t = &self.trace;
        if !t.ring_records.is_power_of_two() || !(2..=1 << 22).contains(&t.ring_records) {
            return Err(invalid(
                "trace.ring_records must be a power of two in 2..=4194304",
            ));
        }
        t.access()?;
        if t.qpair_slots > 65536 {
            return Err(invalid("trace.qpair_slots must be at most 65536"));
        }
        if let Err(e) = crate::tracepoints::mask_of(&t.groups) {
            return Err(ConfigError::Invalid(format!("trace.groups: {e}")));
        }
        if self.keep_alive.check_interval_ms == 0 || self.keep_alive.check_interval_ms > 60_000 {
            return Err(invalid("keep_alive.check_interval_ms must be 1..=60000"));
        }
        if self.subsystems.is_empty() {
            return Err(invalid("no subsystem configured"));
        }
        let mut nqns = HashSet::new();
        for s in &mut self.subsystems {
            validate_nqn(&s.nqn)?;
            if s.nqn == DISCOVERY_NQN {
                return Err(ConfigError::Nqn {
                    nqn: s.nqn.clone(),
                    reason:
                        "this is the discovery subsystem's NQN, which the target provides itself",
                });
            }
            if !nqns.insert(s.nqn.clone()) {
                return Err(invalid(format!("subsystem {} is listed twice", s.nqn)));
            }
            for h in &s.allowed_hosts {
                validate_nqn(h)?;
            }
            check_ascii_field("serial", &s.serial, 20, &s.nqn)?;
            check_ascii_field("model", &s.model, 40, &s.nqn)?;
            if s.namespaces.is_empty() {
                return Err(invalid(format!(
                    "subsystem {} has no namespace (give --malloc SIZE, --null SIZE or --uring PATH, or a [[subsystems.namespaces]] table)",
                    s.nqn
                )));
            }
            if s.namespaces.len() > 1024 {
                return Err(invalid(format!(
                    "subsystem {} has more than 1024 namespaces",
                    s.nqn
                )));
            }
            let mut nsids = HashSet::new();
            for (i, ns) in s.namespaces.iter_mut().enumerate() {
                let nsid = *ns.nsid.get_or_insert(i as u32 + 1);
                if nsid == 0 || nsid == u32::MAX {
                    return Err(invalid(format!(
                        "subsystem {}: nsid {nsid} is reserved (use 1..=4294967294)",
                        s.nqn
                    )));
                }
                if !nsids.insert(nsid) {
                    return Err(invalid(format!(
                        "subsystem {}: duplicate nsid {nsid}",
                        s.nqn
                    )));
                }
                let uring = ns.backend.sized_by_device();
                if let BackendKind::Uring { path } | BackendKind::UringCmd { path } = &ns.backend {
                    if path.as_os_str().is_empty() {
                        return Err(invalid(format!(
                            "subsystem {} nsid {nsid}: the {} backend needs a path",
                            s.nqn, ns.backend
                        )));
                    }
                }
                let auto_bs = uring && ns.block_size == 0;
                if !auto_bs && ns.block_size != 512 && ns.block_size != 4096 {
                    return Err(invalid(format!(
                        "subsystem {} nsid {nsid}: block size {} (use 512 or 4096)",
                        s.nqn, ns.block_size
                    )));
                }
                // A uring namespace's size comes from its file (0) and is checked at open.
                let size_ok = if uring {
                    auto_bs || ns.size.0 % u64::from(ns.block_size) == 0
                } else {
                    ns.size.0 != 0 && ns.size.0 % u64::from(ns.block_size) == 0
                };
                if !size_ok {
                    return Err(invalid(format!(
                        "subsystem {} nsid {nsid}: size {} must be a non-zero multiple of the block size {}",
                        s.nqn, ns.size, ns.block_size
                    )));
                }
                if ns.backend == BackendKind::Malloc && ns.size.0 > (1u64 << 46) {
                    return Err(invalid(format!(
                        "subsystem {} nsid {nsid}: malloc size {} is unreasonably large",
                        s.nqn, ns.size
                    )));
                }
            }
            s.namespaces.sort_by_key(|n| n.nsid);
        }
        Ok(())
    }

    fn validate_limits(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        if !(2..=4096).contains(&l.max_queue_depth) {
            return Err(invalid("limits.max_queue_depth must be 2..=4096"));
        }
        if !(2..=4096).contains(&l.max_admin_queue_depth) {
            return Err(invalid("limits.max_admin_queue_depth must be 2..=4096"));
        }
        if !(1..=1024).contains(&l.max_io_queues) {
            return Err(invalid("limits.max_io_queues must be 1..=1024"));
        }
        let mdts = l.max_io_size.0;
        if !(4096..=(1 << 24)).contains(&mdts)
            || !(mdts / 4096).is_power_of_two()
            || mdts % 4096 != 0
        {
            return Err(invalid(format!(
                "limits.max_io_size {} must be 4KiB times a power of two, at most 16MiB",
                l.max_io_size
            )));
        }
        let icd = l.in_capsule_data_size.0;
        if icd % 16 != 0 || icd > 1 << 20 {
            return Err(invalid(format!(
                "limits.in_capsule_data_size {} must be a multiple of 16 bytes, at most 1MiB",
                l.in_capsule_data_size
            )));
        }
        for (what, v) in [
            ("max_h2c_data", l.max_h2c_data),
            ("max_c2h_data", l.max_c2h_data),
        ] {
            if v.0 < 4096 || v.0 % 4 != 0 || v.0 > 1 << 24 {
                return Err(invalid(format!(
                    "limits.{what} {v} must be a multiple of 4 bytes in 4KiB..=16MiB"
                )));
            }
        }
        if !(1..=3_600_000).contains(&l.handshake_timeout_ms) {
            return Err(invalid("limits.handshake_timeout_ms must be 1..=3600000"));
        }
        if !(1..=65536).contains(&l.max_connections_per_reactor) {
            return Err(invalid(
                "limits.max_connections_per_reactor must be 1..=65536",
            ));
        }
        Ok(())
    }
}

fn check_ascii_field(what: &str, v: &str, max: usize, nqn: &str) -> Result<(), ConfigError> {
    if v.is_empty() || v.len() > max || !v.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(invalid(format!(
            "subsystem {nqn}: {what} {v:?} must be 1..={max} printable ASCII characters"
        )));
    }
    Ok(())
}

/// Checks an NQN: `nqn.yyyy-mm.<reverse domain>[:<anything>]` or the UUID form, at most 223 bytes.
pub fn validate_nqn(nqn: &str) -> Result<(), ConfigError> {
    let err = |reason| ConfigError::Nqn {
        nqn: nqn.to_string(),
        reason,
    };
    if nqn.len() > MAX_NQN_LEN {
        return Err(err("longer than 223 bytes"));
    }
    if !nqn.is_ascii() || nqn.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(err("must be printable ASCII without spaces"));
    }
    let rest = nqn
        .strip_prefix("nqn.")
        .ok_or_else(|| err("must start with \"nqn.\""))?;
    let date = rest
        .get(..7)
        .ok_or_else(|| err("missing yyyy-mm date after \"nqn.\""))?;
    let b = date.as_bytes();
    if !(b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..].iter().all(u8::is_ascii_digit))
    {
        return Err(err("the date after \"nqn.\" must be yyyy-mm"));
    }
    let month = (b[5] - b'0') * 10 + (b[6] - b'0');
    if !(1..=12).contains(&month) {
        return Err(err("the month in the date is not 01..12"));
    }
    let domain = rest[7..]
        .strip_prefix('.')
        .ok_or_else(|| err("expected \".<reverse domain>\" after the date"))?;
    let dom = domain.split(':').next().unwrap_or("");
    if dom.is_empty() {
        return Err(err("the reverse domain name is empty"));
    }
    Ok(())
}

/// The CPUs this process may run on.
pub fn online_cores() -> Vec<usize> {
    match rustix::thread::sched_getaffinity(None) {
        Ok(set) => (0..rustix::thread::CpuSet::MAX_CPU)
            .filter(|&c| set.is_set(c))
            .collect(),
        Err(_) => (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("4096", 4096)]
    #[case("1GiB", 1 << 30)]
    #[case("512M", 512 << 20)]
    #[case("8KiB", 8192)]
    #[case("2GB", 2_000_000_000)]
    fn sizes_parse(#[case] s: &str, #[case] want: u64) {
        assert_eq!(s.parse::<ByteSize>().expect("size should parse").0, want);
    }

    #[rstest]
    #[case("")]
    #[case("GiB")]
    #[case("12XB")]
    #[case("99999999999999999999")]
    #[case("99999999999TiB")]
    fn bad_sizes_rejected(#[case] s: &str) {
        assert!(s.parse::<ByteSize>().is_err(), "{s:?} should be rejected");
    }

    #[test]
    fn core_lists() {
        assert_eq!(parse_core_list("0").unwrap(), vec![CoreId(0)]);
        assert_eq!(
            parse_core_list("0-2,5").unwrap(),
            vec![CoreId(0), CoreId(1), CoreId(2), CoreId(5)]
        );
        assert!(parse_core_list("2-1").is_err());
        assert!(parse_core_list("a").is_err());
        assert!(parse_core_list("0,,1").is_err());
    }

    #[rstest]
    #[case("nqn.2026-11.io.ringside:nvme0", true)]
    #[case(
        "nqn.2014-08.org.nvmexpress:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        true
    )]
    #[case("iqn.2026-11.io.ringside", false)]
    #[case("nqn.26-11.io.ringside", false)]
    #[case("nqn.2026-13.io.ringside", false)]
    #[case("nqn.2026-11", false)]
    #[case("nqn.2026-11.io ringside", false)]
    fn nqns(#[case] nqn: &str, #[case] ok: bool) {
        assert_eq!(validate_nqn(nqn).is_ok(), ok, "{nqn}");
    }

    fn sample() -> Config {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/target.toml"))
                .expect("examples/target.toml should exist");
        Config::from_toml(&text, std::path::Path::new("target.toml")).expect("example should parse")
    }

    #[test]
    fn example_file_validates() {
        let mut c = sample();
        c.validate(None).expect("example config should validate");
        assert_eq!(c.subsystems[0].namespaces[0].nsid, Some(1));
        assert_eq!(c.subsystems[0].namespaces[0].backend, BackendKind::Malloc);
    }

    #[test]
    fn duplicate_nsid_rejected() {
        let mut c = sample();
        let ns = c.subsystems[0].namespaces[0].clone();
        c.subsystems[0].namespaces.push(ns);
        let e = c.validate(None).unwrap_err().to_string();
        assert!(e.contains("duplicate nsid"), "{e}");
    }

    #[test]
    fn unknown_core_rejected() {
        let mut c = sample();
        c.cores = vec![CoreId(999)];
        let e = c.validate(Some(&[0, 1])).unwrap_err().to_string();
        assert!(e.contains("core 999"), "{e}");
    }

    #[test]
    fn size_not_multiple_of_block_rejected() {
        let mut c = sample();
        c.subsystems[0].namespaces[0].size = ByteSize(1000);
        let e = c.validate(None).unwrap_err().to_string();
        assert!(e.contains("multiple of the block size"), "{e}");
    }

    #[test]
    fn unknown_key_rejected() {
        let e = Config::from_toml("nmae = \"x\"\n", std::path::Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nmae"), "{e}");
    }

    #[test]
    fn bad_mdts_rejected() {
        let mut c = sample();
        c.limits.max_io_size = ByteSize(12288);
        assert!(c.validate(None).is_err());
    }

    #[test]
    fn trace_section_is_validated() {
        let base = sample();
        let mut c = base.clone();
        c.trace.ring_records = 1000;
        let e = c
            .validate(None)
            .expect_err("non-power-of-two ring")
            .to_string();
        assert!(e.contains("ring_records"), "{e}");
        let mut c = base.clone();
        c.trace.groups = vec!["tcp".into(), "bogus".into()];
        let e = format!("{:?}", c.validate(None).expect_err("unknown group"));
        assert!(e.contains("bogus"), "{e}");
        let t = Config::from_toml(
            "[trace]\nenabled = false\nring_records = 64\ngroups = [\"qpair\"]\n",
            std::path::Path::new("t.toml"),
        )
        .expect("a [trace] table parses");
        assert!(!t.trace.enabled);
        assert_eq!(t.trace.ring_records, 64);
        assert_eq!(
            crate::tracepoints::mask_of(&t.trace.groups),
            Ok(1 << crate::tracepoints::GROUP_QPAIR)
        );
        assert!(Config::from_toml("[trace]\nsize = 1\n", std::path::Path::new("t.toml")).is_err());
    }
}
