//! Loading the machine [`Topology`] the detectors reason with: from this machine (hwloc with I/O
//! discovery, enriched from sysfs), from an hwloc XML file (another machine, recorded with
//! `lstopo --of xml`), from an hwloc synthetic description (`synthetic:pack:2 numa:1 core:4 pu:2`)
//! or from ringside's own JSON [`Topology`].
//!
//! Threading and ownership: plain functions, run once on the caller's thread when a session
//! starts. The hwloc topology is built, converted to the pure model and dropped inside [`load`];
//! nothing of hwloc outlives the call.
//!
//! hwloc knows NUMA nodes, packages, cores, PUs and which PCI device provides which netdev,
//! block device and RDMA device, but not a netdev's link speed, and it misses devices it does
//! not consider important. sysfs fills those in ([`SysfsFacts`]): on this machine it is read
//! from `/sys`; for an XML file a sidecar `NAME.sysfs.json` next to `NAME.xml` carries the same
//! facts for the recorded machine. Whatever cannot be known becomes one line in
//! [`Loaded::notes`], never an error: only an unreadable or invalid input file is one. hwloc
//! itself is called behind `catch_unwind`, so a binding panic on strange input becomes an error
//! too.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use agent_core::topology::{CpuInfo, NumaNodeInfo, PciDevice, Topology};
use hwlocality::object::attributes::ObjectAttributes;
use hwlocality::object::types::{OSDeviceType, ObjectType};
use hwlocality::object::TopologyObject;
use hwlocality::topology::builder::{BuildFlags, TopologyBuilder, TypeFilter};
use serde::{Deserialize, Serialize};

/// Where to take the topology from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopologySource {
    /// This machine: hwloc with I/O discovery plus sysfs.
    Live,
    /// An hwloc XML file (`lstopo --of xml > host.xml`), plus `host.sysfs.json` when present.
    Xml(PathBuf),
    /// An hwloc synthetic description (`pack:2 numa:1 core:4 pu:2`); no I/O devices.
    Synthetic(String),
    /// ringside's JSON [`Topology`] (as in reports and recordings).
    Json(PathBuf),
}

impl TopologySource {
    /// Parses a `--topology` argument: `live`; `synthetic:DESCRIPTION`; `FILE.xml`; `FILE.json`;
    /// any other existing file by its first character (`<` XML, `{` JSON).
    pub fn from_arg(arg: &str) -> Result<TopologySource, TopologyError> {
        let bad = || TopologyError::BadArgument {
            arg: arg.to_string(),
        };
        let a = arg.trim();
        if a.is_empty() {
            return Err(bad());
        }
        if a.eq_ignore_ascii_case("live") {
            return Ok(TopologySource::Live);
        }
        if let Some(desc) = a.strip_prefix("synthetic:") {
            let desc = desc.trim();
            if desc.is_empty() {
                return Err(bad());
            }
            return Ok(TopologySource::Synthetic(desc.to_string()));
        }
        let lower = a.to_ascii_lowercase();
        if lower.ends_with(".xml") {
            return Ok(TopologySource::Xml(PathBuf::from(a)));
        }
        if lower.ends_with(".json") {
            return Ok(TopologySource::Json(PathBuf::from(a)));
        }
        // No telling extension: look at the content (a recording saved as `host` or `-`).
        let head = fs::read(a).map_err(|_| bad())?;
        match head.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'<') => Ok(TopologySource::Xml(PathBuf::from(a))),
            Some(b'{') => Ok(TopologySource::Json(PathBuf::from(a))),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for TopologySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopologySource::Live => f.write_str("live"),
            TopologySource::Xml(p) => write!(f, "xml:{}", p.display()),
            TopologySource::Synthetic(d) => write!(f, "synthetic:{d}"),
            TopologySource::Json(p) => write!(f, "json:{}", p.display()),
        }
    }
}

/// A loaded topology and what it could not know.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    /// The model.
    pub topology: Topology,
    /// One line per degradation ("hwloc found no PCI devices (no I/O discovery): …").
    pub notes: Vec<String>,
}

/// Why a topology could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// The `--topology` argument is none of the accepted forms.
    #[error(
        "unrecognised topology {arg:?}: expected `live`, FILE.xml (hwloc), FILE.json (ringside) \
         or `synthetic:DESCRIPTION` (e.g. `synthetic:pack:2 numa:1 core:4 pu:2`)"
    )]
    BadArgument {
        /// The argument.
        arg: String,
    },
    /// A topology file (or its sidecar) cannot be read.
    #[error("cannot read topology file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// hwloc refused an XML file.
    #[error("hwloc rejected topology xml {}: {reason}", path.display())]
    Xml {
        /// The file.
        path: PathBuf,
        /// hwloc's reason.
        reason: String,
    },
    /// hwloc refused a synthetic description.
    #[error("hwloc rejected synthetic topology {description:?}: {reason}")]
    Synthetic {
        /// The description.
        description: String,
        /// hwloc's reason.
        reason: String,
    },
    /// A JSON file is not a ringside topology (or its sidecar not sysfs facts).
    #[error("invalid topology json {}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error (line and column).
        #[source]
        source: serde_json::Error,
    },
    /// The file parsed but describes no usable machine.
    #[error("topology {what} is unusable: {reason}")]
    Invalid {
        /// Which topology (its source).
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// Neither hwloc nor sysfs could describe this machine.
    #[error("cannot discover this machine's topology: hwloc: {hwloc}; sysfs {}: {sysfs}", path.display())]
    Discovery {
        /// hwloc's failure.
        hwloc: String,
        /// The sysfs directory read.
        path: PathBuf,
        /// sysfs's failure.
        sysfs: String,
    },
}

/// Loads a topology. Live discovery degrades (hwloc → sysfs only) rather than fail; files fail
/// with an error naming the path.
pub fn load(source: &TopologySource) -> Result<Loaded, TopologyError> {
    match source {
        TopologySource::Live => load_live(Path::new("/sys")),
        TopologySource::Xml(path) => load_xml(path),
        TopologySource::Synthetic(desc) => load_synthetic(desc),
        TopologySource::Json(path) => load_json(path),
    }
}

/// This machine through hwloc, enriched from the sysfs tree at `sys` (normally `/sys`); when
/// hwloc fails, the CPU topology comes from `sys` alone, with a note.
pub fn load_live(sys: &Path) -> Result<Loaded, TopologyError> {
    let mut notes = Vec::new();
    let host = fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let host = if host.is_empty() {
        "this machine".to_string()
    } else {
        host
    };
    let hw = build_hwloc(|b| {
        b.with_io_type_filter(TypeFilter::KeepImportant)
            .map_err(|e| e.to_string())?
            // The machine, not this process's cgroup: the target may be pinned to CPUs the
            // agent is not allowed on.
            .with_flags(BuildFlags::INCLUDE_DISALLOWED)
            .map_err(|e| e.to_string())
    })
    .and_then(|hw| guarded(|| convert(&hw, format!("live:{host} (hwloc)"))));
    let (mut topo, hwloc_pci) = match hw {
        Ok((topo, pci_objects)) => (topo, Some(pci_objects)),
        Err(hwloc) => match sysfs_cpu_topology(sys) {
            Ok(mut topo) => {
                notes.push(format!(
                    "hwloc failed ({hwloc}): CPUs, nodes and devices from sysfs only"
                ));
                topo.source = format!("live:{host} (sysfs only)");
                (topo, None)
            }
            Err(sysfs) => {
                return Err(TopologyError::Discovery {
                    hwloc,
                    path: sys.to_path_buf(),
                    sysfs,
                });
            }
        },
    };
    if topo.nodes.iter().all(|n| n.distances.is_empty()) {
        add_sysfs_distances(&mut topo, sys);
    }
    let facts = SysfsFacts::read(sys);
    if hwloc_pci == Some(0) && !facts.pci.is_empty() {
        notes.push(
            "hwloc found no PCI devices (no I/O discovery): NIC/device locality from sysfs only"
                .into(),
        );
    }
    facts.apply(&mut topo);
    if topo.pci.is_empty() {
        notes.push(
            "no PCI network or storage devices found (hwloc and sysfs): NIC/device locality unknown"
                .into(),
        );
    }
    note_unknown_locality(&topo, &mut notes);
    Ok(Loaded {
        topology: topo,
        notes,
    })
}

/// A topology from a sysfs tree alone (`/sys`, or a copy of another machine's): nodes and
/// their CPUs and distances, packages and cores, and the [`SysfsFacts`] devices.
pub fn load_sysfs(sys: &Path) -> Result<Loaded, TopologyError> {
    let mut topo = sysfs_cpu_topology(sys).map_err(|reason| TopologyError::Invalid {
        what: format!("sysfs:{}", sys.display()),
        reason,
    })?;
    topo.source = format!("sysfs:{}", sys.display());
    add_sysfs_distances(&mut topo, sys);
    let mut notes = Vec::new();
    SysfsFacts::read(sys).apply(&mut topo);
    note_unknown_locality(&topo, &mut notes);
    Ok(Loaded {
        topology: topo,
        notes,
    })
}

/// The sidecar of an XML file: `host.xml` → `host.sysfs.json`.
pub fn sidecar_path(xml: &Path) -> PathBuf {
    xml.with_extension("sysfs.json")
}

fn load_xml(path: &Path) -> Result<Loaded, TopologyError> {
    let text = fs::read_to_string(path).map_err(|source| TopologyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let xml_err = |reason: String| TopologyError::Xml {
        path: path.to_path_buf(),
        reason: format!("not a valid hwloc topology ({reason})"),
    };
    if text.contains('\0') {
        return Err(xml_err("the file contains NUL bytes".into()));
    }
    let hw = build_hwloc(|b| {
        b.from_xml(&text)
            .map_err(|e| e.to_string())?
            // Keep every recorded I/O object; the conversion picks network and storage.
            .with_io_type_filter(TypeFilter::KeepAll)
            .map_err(|e| e.to_string())
    })
    .map_err(xml_err)?;
    let (mut topo, pci_objects) = guarded(|| convert(&hw, format!("xml:{}", path.display())))
        .map_err(|reason| TopologyError::Xml {
            path: path.to_path_buf(),
            reason,
        })?;
    let mut notes = Vec::new();
    if topo.cpus.is_empty() {
        return Err(TopologyError::Invalid {
            what: topo.source,
            reason: "it has no CPUs (PU objects)".into(),
        });
    }
    let sidecar = sidecar_path(path);
    let have_sidecar = sidecar.exists();
    if have_sidecar {
        let facts = SysfsFacts::from_file(&sidecar)?;
        facts.apply(&mut topo);
        topo.source = format!("{} + {}", topo.source, sidecar.display());
    }
    if pci_objects == 0 && topo.pci.is_empty() {
        notes.push(format!(
            "{} has no PCI devices (recorded without I/O discovery?): NIC/device locality unknown",
            path.display()
        ));
    }
    note_unknown_locality(&topo, &mut notes);
    for p in topo.pci.iter().filter(|p| p.is_network()) {
        if p.link_speed_mbps.is_none() {
            let why = if have_sidecar {
                format!("not in {}", sidecar.display())
            } else {
                format!("hwloc xml does not record it; add {}", sidecar.display())
            };
            notes.push(format!("link speed of {} unknown ({why})", p.label()));
        }
    }
    Ok(Loaded {
        topology: topo,
        notes,
    })
}

fn load_synthetic(desc: &str) -> Result<Loaded, TopologyError> {
    let syn_err = |reason: String| TopologyError::Synthetic {
        description: desc.to_string(),
        reason,
    };
    if desc.contains('\0') {
        return Err(syn_err("the description contains NUL bytes".into()));
    }
    let hw = build_hwloc(|b| b.from_synthetic(desc).map_err(|e| e.to_string())).map_err(syn_err)?;
    let (topo, _) = guarded(|| convert(&hw, format!("synthetic:{desc}"))).map_err(syn_err)?;
    let mut notes =
        vec!["synthetic topology has no I/O devices: NIC/device locality unknown".into()];
    if topo.nodes.len() <= 1 && topo.package_count() > 1 {
        notes.push(format!(
            "synthetic description has no numa level: hwloc made one NUMA node for all {} packages \
             (add e.g. `numa:1` after `pack:N`)",
            topo.package_count()
        ));
    }
    Ok(Loaded {
        topology: topo,
        notes,
    })
}

fn load_json(path: &Path) -> Result<Loaded, TopologyError> {
    let text = fs::read_to_string(path).map_err(|source| TopologyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut topo: Topology = serde_json::from_str(&text).map_err(|source| TopologyError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    let recorded = std::mem::take(&mut topo.source);
    topo.source = if recorded.is_empty() || recorded.starts_with("json:") {
        format!("json:{}", path.display())
    } else {
        format!("json:{} (recorded from {recorded})", path.display())
    };
    if topo.cpus.is_empty() {
        return Err(TopologyError::Invalid {
            what: topo.source,
            reason: "it lists no CPUs".into(),
        });
    }
    let mut notes = Vec::new();
    let known = |n: u32| topo.nodes.iter().any(|x| x.os_index == n);
    for c in &topo.cpus {
        if let Some(n) = c.node.filter(|&n| !known(n)) {
            notes.push(format!(
                "cpu {} names NUMA node {n}, which the topology does not list",
                c.os_index
            ));
        }
    }
    for p in &topo.pci {
        if let Some(n) = p.node.filter(|&n| !known(n)) {
            notes.push(format!(
                "{} names NUMA node {n}, which the topology does not list",
                p.bdf
            ));
        }
    }
    note_unknown_locality(&topo, &mut notes);
    if topo.pci.is_empty() {
        notes.push(format!(
            "{} lists no PCI devices: NIC/device locality unknown",
            path.display()
        ));
    }
    Ok(Loaded {
        topology: topo,
        notes,
    })
}

/// One note per device whose node is unknown on a multi-node machine (on one node, every device
/// is on it).
fn note_unknown_locality(topo: &Topology, notes: &mut Vec<String>) {
    if topo.nodes.len() <= 1 {
        return;
    }
    for p in topo.pci.iter().filter(|p| p.node.is_none()) {
        notes.push(format!(
            "{} ({}): NUMA node unknown (attached to no single node; sysfs numa_node -1 or \
             absent): its locality cannot be judged",
            p.bdf,
            p.label()
        ));
    }
}

/// Runs `f`, turning a panic (a binding assertion on input hwloc accepted) into an error.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        format!("hwloc binding failed: {msg}")
    })
}

/// Builds an hwloc topology configured by `cfg`.
fn build_hwloc(
    cfg: impl FnOnce(TopologyBuilder) -> Result<TopologyBuilder, String>,
) -> Result<hwlocality::Topology, String> {
    guarded(|| {
        let b = cfg(TopologyBuilder::new())?;
        b.build().map_err(|e| match e.errno {
            // errno's Display is the C library's text ("Invalid argument").
            Some(errno) => format!("{}: {errno}", e.api),
            None => format!("{} failed", e.api),
        })
    })?
}

fn cstr(s: Option<&std::ffi::CStr>) -> Option<String> {
    s.map(|c| c.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
}

fn os_index(obj: &TopologyObject) -> Option<u32> {
    obj.os_index().and_then(|i| u32::try_from(i).ok())
}

fn cpuset_of(obj: &TopologyObject) -> Vec<u32> {
    obj.cpuset()
        .map(|set| {
            set.iter_set()
                .filter_map(|i| u32::try_from(usize::from(i)).ok())
                .collect()
        })
        .unwrap_or_default()
}

fn nodeset_of(obj: &TopologyObject) -> Vec<u32> {
    obj.nodeset()
        .map(|set| {
            set.iter_set()
                .filter_map(|i| u32::try_from(usize::from(i)).ok())
                .collect()
        })
        .unwrap_or_default()
}

fn bdf_string(domain: u32, bus: u8, dev: u8, func: u8) -> String {
    format!("{domain:04x}:{bus:02x}:{dev:02x}.{func:x}")
}

/// hwloc → model. Returns the model and how many PCI objects hwloc had (any class), so the
/// caller can tell "no I/O discovery" from "no interesting devices".
fn convert(hw: &hwlocality::Topology, source: String) -> (Topology, usize) {
    let mut nodes: Vec<NumaNodeInfo> = hw
        .objects_with_type(ObjectType::NUMANode)
        .filter_map(|n| {
            let os_index = os_index(n)?;
            let memory_bytes = match n.attributes() {
                Some(ObjectAttributes::NUMANode(a)) => a.local_memory().map(|m| m.get()),
                _ => None,
            };
            let mut cpus = cpuset_of(n);
            cpus.sort_unstable();
            Some(NumaNodeInfo {
                os_index,
                memory_bytes,
                cpus,
                distances: Vec::new(),
            })
        })
        .collect();
    nodes.sort_by_key(|n| n.os_index);

    let node_of = |cpu: u32| {
        nodes
            .iter()
            .find(|n| n.cpus.binary_search(&cpu).is_ok())
            .map(|n| n.os_index)
    };
    let mut cpus: Vec<CpuInfo> = hw
        .objects_with_type(ObjectType::PU)
        .filter_map(|pu| {
            let os = os_index(pu)?;
            let core = pu
                .first_ancestor_with_type(ObjectType::Core)
                .map_or(pu.logical_index(), |c| c.logical_index());
            let package = pu
                .first_ancestor_with_type(ObjectType::Package)
                .map_or(0, |p| p.logical_index());
            Some(CpuInfo {
                os_index: os,
                core: u32::try_from(core).unwrap_or(u32::MAX),
                package: u32::try_from(package).unwrap_or(u32::MAX),
                node: node_of(os),
            })
        })
        .collect();
    cpus.sort_by_key(|c| c.os_index);

    add_hwloc_distances(hw, &mut nodes);
    if let [only] = nodes.as_mut_slice() {
        // hwloc records no matrix for one node; its distance to itself is local by definition.
        if only.distances.is_empty() {
            only.distances = vec![10];
        }
    }

    let single_node = (nodes.len() == 1).then(|| nodes[0].os_index);
    let mut pci_objects = 0;
    let mut pci = Vec::new();
    for dev in hw.pci_devices() {
        pci_objects += 1;
        let Some(ObjectAttributes::PCIDevice(a)) = dev.attributes() else {
            continue;
        };
        let mut p = PciDevice {
            bdf: bdf_string(
                u32::from(a.domain()),
                a.bus_id(),
                a.bus_device(),
                a.function(),
            ),
            class: PciDevice::class_name(a.class_id()).to_string(),
            name: pci_name(dev),
            node: pci_node(dev, single_node),
            ..PciDevice::default()
        };
        collect_os_devices(dev, &mut p);
        let named =
            !(p.netdevs.is_empty() && p.block_devices.is_empty() && p.rdma_devices.is_empty());
        if p.is_network() || p.is_storage() || named {
            pci.push(p);
        }
    }
    pci.sort_by(|a, b| a.bdf.cmp(&b.bdf));
    (
        Topology {
            source,
            nodes,
            cpus,
            pci,
        },
        pci_objects,
    )
}

fn pci_name(dev: &TopologyObject) -> Option<String> {
    let vendor = cstr(dev.info("PCIVendor"));
    let device = cstr(dev.info("PCIDevice"));
    match (vendor, device) {
        (Some(v), Some(d)) => Some(format!("{v} {d}")),
        (v, d) => v.or(d),
    }
}

/// The node a PCI device is attached to: its first non-I/O ancestor's, when that is exactly one
/// node (a device hanging off the whole machine on a multi-node box has no single node).
fn pci_node(dev: &TopologyObject, single_node: Option<u32>) -> Option<u32> {
    let nodes = dev
        .first_non_io_ancestor()
        .map(nodeset_of)
        .unwrap_or_default();
    match nodes.as_slice() {
        [n] => Some(*n),
        _ => single_node,
    }
}

/// OS devices below a PCI device (directly, or below a nested I/O object).
fn collect_os_devices(obj: &TopologyObject, p: &mut PciDevice) {
    for child in obj.io_children() {
        match child.object_type() {
            ObjectType::OSDevice => {
                let (Some(name), Some(ObjectAttributes::OSDevice(a))) =
                    (cstr(child.name()), child.attributes())
                else {
                    continue;
                };
                let list = match a.device_type() {
                    OSDeviceType::Network => &mut p.netdevs,
                    OSDeviceType::Storage => &mut p.block_devices,
                    OSDeviceType::OpenFabrics => &mut p.rdma_devices,
                    _ => continue,
                };
                push_unique(list, name);
            }
            // A PCI function below a bridge is its own device; don't claim its names.
            ObjectType::PCIDevice | ObjectType::Bridge => {}
            _ => collect_os_devices(child, p),
        }
    }
}

fn push_unique(list: &mut Vec<String>, name: String) {
    if !list.contains(&name) {
        list.push(name);
        list.sort();
    }
}

fn add_hwloc_distances(hw: &hwlocality::Topology, nodes: &mut [NumaNodeInfo]) {
    let Ok(all) = hw.distances(None) else {
        return;
    };
    for d in &all {
        let objs: Vec<Option<u32>> = d
            .objects()
            .map(|o| {
                o.filter(|o| o.object_type() == ObjectType::NUMANode)
                    .and_then(os_index)
            })
            .collect();
        if objs.len() != nodes.len() || objs.iter().any(Option::is_none) {
            continue;
        }
        let n = objs.len();
        let values = d.distances();
        if values.len() != n * n {
            continue;
        }
        // Row/column order of the matrix is hwloc's; the model's is `nodes`' order.
        let col = |os: u32| objs.iter().position(|&o| o == Some(os));
        let order: Vec<Option<usize>> = nodes.iter().map(|x| col(x.os_index)).collect();
        if order.iter().any(Option::is_none) {
            continue;
        }
        for (i, node) in nodes.iter_mut().enumerate() {
            let Some(row) = order[i] else { continue };
            node.distances = order
                .iter()
                .flatten()
                .map(|&c| u32::try_from(values[row * n + c]).unwrap_or(u32::MAX))
                .collect();
        }
        return;
    }
}

// ---------------------------------------------------------------------------------------------
// sysfs

/// What sysfs says about devices, beyond what hwloc reports: which PCI function provides each
/// netdev / block device / RDMA device, netdev link speeds, and PCI NUMA nodes.
///
/// Read from a live sysfs tree ([`SysfsFacts::read`]), or from a sidecar JSON next to an hwloc
/// XML (the same facts for a recorded machine, [`SysfsFacts::from_file`]). Every field may be
/// missing in the JSON:
/// `{"netdevs":{"ens1f0":{"pci":"0000:81:00.0","speed_mbps":25000}},
///   "block_devices":{"nvme0n1":{"pci":"0000:01:00.0"}},
///   "pci":{"0000:81:00.0":{"class":"network","numa_node":1}}}`
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SysfsFacts {
    /// Netdevs by name.
    pub netdevs: BTreeMap<String, NetdevFacts>,
    /// Whole block devices (no partitions) by name.
    pub block_devices: BTreeMap<String, DeviceFacts>,
    /// RDMA devices by name.
    pub rdma_devices: BTreeMap<String, RdmaFacts>,
    /// PCI functions by bus id.
    pub pci: BTreeMap<String, PciFacts>,
}

/// A netdev.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetdevFacts {
    /// PCI function behind it (`/sys/class/net/X/device`); `None` for virtual devices.
    pub pci: Option<String>,
    /// `/sys/class/net/X/speed` when positive (it reads -1 or fails when unknown or down).
    pub speed_mbps: Option<u64>,
}

/// A block device.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeviceFacts {
    /// PCI function behind it; `None` for virtual devices (loop, zram, dm).
    pub pci: Option<String>,
}

/// An RDMA device.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RdmaFacts {
    /// PCI function behind it (a hardware HCA).
    pub pci: Option<String>,
    /// The netdev it rides on (soft-RoCE `rxe0` → `parent`), whose PCI function then counts.
    pub netdev: Option<String>,
}

/// A PCI function.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PciFacts {
    /// The model's class name (`network`, `storage`, `other`), from `class`.
    pub class: Option<String>,
    /// `numa_node`, when not -1.
    pub numa_node: Option<u32>,
}

impl SysfsFacts {
    /// Reads the sysfs tree at `sys` (normally `/sys`). Missing or unreadable parts are simply
    /// absent.
    pub fn read(sys: &Path) -> SysfsFacts {
        let mut f = SysfsFacts::default();
        for (name, path) in dir_entries(&sys.join("class/net")) {
            let speed = read_trim(&path.join("speed"))
                .and_then(|s| s.parse::<i64>().ok())
                .filter(|&s| s > 0)
                .and_then(|s| u64::try_from(s).ok());
            f.netdevs.insert(
                name,
                NetdevFacts {
                    pci: bdf_in_path(&path),
                    speed_mbps: speed,
                },
            );
        }
        for (name, path) in dir_entries(&sys.join("class/block")) {
            if path.join("partition").exists() {
                continue;
            }
            f.block_devices.insert(
                name,
                DeviceFacts {
                    pci: bdf_in_path(&path),
                },
            );
        }
        for (name, path) in dir_entries(&sys.join("class/infiniband")) {
            f.rdma_devices.insert(
                name,
                RdmaFacts {
                    pci: bdf_in_path(&path.join("device")),
                    netdev: read_trim(&path.join("parent")).filter(|s| !s.is_empty()),
                },
            );
        }
        for (bdf, path) in dir_entries(&sys.join("bus/pci/devices")) {
            let class = read_trim(&path.join("class"))
                .and_then(|c| u32::from_str_radix(c.trim_start_matches("0x"), 16).ok())
                .map(|c| PciDevice::class_name(u16::try_from(c >> 8).unwrap_or(0)).to_string());
            let numa_node = read_trim(&path.join("numa_node"))
                .and_then(|s| s.parse::<i64>().ok())
                .and_then(|n| u32::try_from(n).ok());
            f.pci
                .insert(bdf.to_ascii_lowercase(), PciFacts { class, numa_node });
        }
        f
    }

    /// Reads a sidecar JSON file.
    pub fn from_file(path: &Path) -> Result<SysfsFacts, TopologyError> {
        let text = fs::read_to_string(path).map_err(|source| TopologyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| TopologyError::Json {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Adds these facts to `topo`: attaches names to PCI devices (adding devices hwloc did not
    /// report), sets link speeds, fills unknown nodes.
    pub fn apply(&self, topo: &mut Topology) {
        let single_node = (topo.nodes.len() == 1).then(|| topo.nodes[0].os_index);
        // Network and storage functions even without OS names (an NVMe bound to vfio-pci).
        for (bdf, pf) in &self.pci {
            if matches!(
                pf.class.as_deref(),
                Some(PciDevice::NETWORK | PciDevice::STORAGE)
            ) {
                self.ensure_pci(topo, bdf, PciDevice::OTHER, single_node);
            }
        }
        for (name, nd) in &self.netdevs {
            let idx = match &nd.pci {
                Some(bdf) => Some(self.ensure_pci(topo, bdf, PciDevice::NETWORK, single_node)),
                None => topo.pci.iter().position(|p| p.netdevs.contains(name)),
            };
            let Some(i) = idx else { continue };
            let p = &mut topo.pci[i];
            push_unique(&mut p.netdevs, name.clone());
            if nd.speed_mbps.is_some() {
                p.link_speed_mbps = p.link_speed_mbps.max(nd.speed_mbps);
            }
        }
        for (name, bd) in &self.block_devices {
            if let Some(bdf) = &bd.pci {
                let i = self.ensure_pci(topo, bdf, PciDevice::STORAGE, single_node);
                push_unique(&mut topo.pci[i].block_devices, name.clone());
            }
        }
        for (name, rd) in &self.rdma_devices {
            let bdf = rd.pci.clone().or_else(|| {
                let nd = rd.netdev.as_ref()?;
                self.netdevs
                    .get(nd)
                    .and_then(|n| n.pci.clone())
                    .or_else(|| topo.pci_of_netdev(nd).map(|p| p.bdf.clone()))
            });
            if let Some(bdf) = bdf {
                let i = self.ensure_pci(topo, &bdf, PciDevice::NETWORK, single_node);
                push_unique(&mut topo.pci[i].rdma_devices, name.clone());
            }
        }
        topo.pci.sort_by(|a, b| a.bdf.cmp(&b.bdf));
    }

    /// Index of the device `bdf` in `topo.pci`, added when missing; fills its node and class
    /// from these facts when hwloc left them unknown.
    fn ensure_pci(
        &self,
        topo: &mut Topology,
        bdf: &str,
        class_hint: &str,
        single_node: Option<u32>,
    ) -> usize {
        let key = normalize_bdf(bdf);
        let facts = self.pci.get(&key);
        let node = facts.and_then(|f| f.numa_node).or(single_node);
        let class = facts
            .and_then(|f| f.class.clone())
            .filter(|c| c != PciDevice::OTHER)
            .unwrap_or_else(|| class_hint.to_string());
        if let Some(i) = topo.pci.iter().position(|p| normalize_bdf(&p.bdf) == key) {
            let p = &mut topo.pci[i];
            if p.node.is_none() {
                p.node = node;
            }
            if p.class == PciDevice::OTHER {
                p.class = class;
            }
            return i;
        }
        topo.pci.push(PciDevice {
            bdf: key,
            class,
            node,
            ..PciDevice::default()
        });
        topo.pci.len() - 1
    }
}

fn normalize_bdf(bdf: &str) -> String {
    let b = bdf.trim().to_ascii_lowercase();
    if b.matches(':').count() == 1 {
        format!("0000:{b}")
    } else {
        b
    }
}

/// `dddd:bb:dd.f` (domain may be longer, as behind Intel VMD).
fn is_bdf(s: &str) -> bool {
    let Some((rest, func)) = s.rsplit_once('.') else {
        return false;
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let hex = |p: &str, min: usize, max: usize| {
        (min..=max).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_hexdigit())
    };
    parts.len() == 3
        && hex(parts[0], 4, 8)
        && hex(parts[1], 2, 2)
        && hex(parts[2], 2, 2)
        && func.len() == 1
        && func.bytes().all(|b| (b'0'..=b'7').contains(&b))
}

/// The PCI function closest to a sysfs device: the last bus-id component of its resolved path
/// (`/sys/devices/pci0000:00/0000:00:03.0/virtio2/net/eth0` → `0000:00:03.0`).
fn bdf_in_path(path: &Path) -> Option<String> {
    let real = fs::canonicalize(path).ok()?;
    real.components()
        .rev()
        .filter_map(|c| c.as_os_str().to_str())
        .find(|c| is_bdf(c))
        .map(str::to_ascii_lowercase)
}

/// Entries of a directory, sorted by name; empty when it cannot be read.
fn dir_entries(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<(String, PathBuf)> = rd
        .filter_map(Result::ok)
        .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
        .collect();
    v.sort();
    v
}

fn read_trim(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// Parses a kernel CPU list (`0-3,8,10-11`).
pub fn parse_cpulist(s: &str) -> Result<Vec<u32>, String> {
    let mut v = Vec::new();
    for part in s.trim().split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |x: &str| {
            x.trim()
                .parse::<u32>()
                .map_err(|_| format!("bad cpu list {s:?}"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b || b - a > 1 << 16 {
                    return Err(format!("bad cpu range {part:?}"));
                }
                v.extend(a..=b);
            }
            None => v.push(num(part)?),
        }
    }
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

/// Nodes, CPUs, packages and cores from `sys/devices/system/{node,cpu}`.
fn sysfs_cpu_topology(sys: &Path) -> Result<Topology, String> {
    let cpu_dir = sys.join("devices/system/cpu");
    let online = read_trim(&cpu_dir.join("online"))
        .ok_or_else(|| format!("cannot read {}", cpu_dir.join("online").display()))?;
    let online = parse_cpulist(&online)?;
    if online.is_empty() {
        return Err(format!(
            "{} lists no CPUs",
            cpu_dir.join("online").display()
        ));
    }
    let node_dir = sys.join("devices/system/node");
    let mut nodes: Vec<NumaNodeInfo> = dir_entries(&node_dir)
        .into_iter()
        .filter_map(|(name, path)| {
            let os_index = name.strip_prefix("node")?.parse::<u32>().ok()?;
            let cpus = read_trim(&path.join("cpulist"))
                .and_then(|l| parse_cpulist(&l).ok())
                .unwrap_or_default();
            let memory_bytes = read_trim(&path.join("meminfo")).and_then(|m| {
                // "Node 0 MemTotal:       24682416 kB"
                let line = m.lines().find(|l| l.contains("MemTotal:"))?;
                let kb = line.split_whitespace().rev().nth(1)?.parse::<u64>().ok()?;
                kb.checked_mul(1024)
            });
            Some(NumaNodeInfo {
                os_index,
                memory_bytes,
                cpus,
                distances: Vec::new(),
            })
        })
        .collect();
    nodes.sort_by_key(|n| n.os_index);
    if nodes.is_empty() {
        // A kernel without NUMA support: one node holding everything.
        nodes.push(NumaNodeInfo {
            os_index: 0,
            memory_bytes: None,
            cpus: online.clone(),
            distances: Vec::new(),
        });
    }
    let ids = |cpu: u32, file: &str| {
        read_trim(&cpu_dir.join(format!("cpu{cpu}/topology/{file}")))
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or(0)
    };
    let raw: Vec<(u32, i64, i64)> = online
        .iter()
        .map(|&c| (c, ids(c, "physical_package_id"), ids(c, "core_id")))
        .collect();
    // Logical indexes, as hwloc numbers them: packages by id, cores by (package, core id).
    let mut packages: Vec<i64> = raw.iter().map(|r| r.1).collect();
    packages.sort_unstable();
    packages.dedup();
    let mut cores: Vec<(i64, i64)> = raw.iter().map(|r| (r.1, r.2)).collect();
    cores.sort_unstable();
    cores.dedup();
    let rank = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    let cpus = raw
        .iter()
        .map(|&(c, pkg, core)| CpuInfo {
            os_index: c,
            core: rank(cores.binary_search(&(pkg, core)).unwrap_or(0)),
            package: rank(packages.binary_search(&pkg).unwrap_or(0)),
            node: nodes
                .iter()
                .find(|n| n.cpus.contains(&c))
                .map(|n| n.os_index),
        })
        .collect();
    Ok(Topology {
        source: String::new(),
        nodes,
        cpus,
        pci: Vec::new(),
    })
}

/// `node*/distance` rows, when every node has one of the right length.
fn add_sysfs_distances(topo: &mut Topology, sys: &Path) {
    let n = topo.nodes.len();
    let rows: Vec<Option<Vec<u32>>> = topo
        .nodes
        .iter()
        .map(|node| {
            let p = sys.join(format!(
                "devices/system/node/node{}/distance",
                node.os_index
            ));
            let row: Vec<u32> = read_trim(&p)?
                .split_whitespace()
                .map(|x| x.parse().ok())
                .collect::<Option<_>>()?;
            (row.len() == n).then_some(row)
        })
        .collect();
    if rows.iter().all(Option::is_some) {
        for (node, row) in topo.nodes.iter_mut().zip(rows) {
            node.distances = row.unwrap_or_default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_arg_forms() {
        assert_eq!(
            TopologySource::from_arg("live").ok(),
            Some(TopologySource::Live)
        );
        assert_eq!(
            TopologySource::from_arg("synthetic:pack:2 numa:1 core:4 pu:2").ok(),
            Some(TopologySource::Synthetic(
                "pack:2 numa:1 core:4 pu:2".into()
            ))
        );
        assert_eq!(
            TopologySource::from_arg("host.XML").ok(),
            Some(TopologySource::Xml("host.XML".into()))
        );
        assert_eq!(
            TopologySource::from_arg("a/b.json").ok(),
            Some(TopologySource::Json("a/b.json".into()))
        );
        for bad in ["", "synthetic:", "/nonexistent/host"] {
            let e = TopologySource::from_arg(bad).expect_err("bad argument must be refused");
            assert!(e.to_string().contains("expected `live`"), "{e}");
        }
    }

    #[test]
    fn cpulists() {
        assert_eq!(
            parse_cpulist("0-3,8,10-11\n"),
            Ok(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpulist(""), Ok(vec![]));
        assert!(parse_cpulist("3-1").is_err());
        assert!(parse_cpulist("x").is_err());
        assert!(
            parse_cpulist("0-4294967295").is_err(),
            "absurd ranges are refused"
        );
    }

    #[test]
    fn bus_ids() {
        assert!(is_bdf("0000:00:03.0"));
        assert!(is_bdf("10000:e1:00.7"));
        assert!(!is_bdf("pci0000:00"));
        assert!(!is_bdf("0000:00:03.8"));
        assert!(!is_bdf("virtio2"));
        assert_eq!(normalize_bdf("81:00.0"), "0000:81:00.0");
    }
}
