//! The machine model the detectors reason with: NUMA nodes, CPUs, and where PCI devices (NICs,
//! NVMe controllers) and their netdevs / block devices sit.
//!
//! Pure data. The agent builds it from hwloc (live, XML or synthetic) plus sysfs; tests build it
//! from recorded fixtures. `serde` both ways so a report and a recording carry it.

use serde::{Deserialize, Serialize};

/// A machine's topology.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    /// Where it came from: "this machine (hwloc 2.9.0)", "xml:fixtures/two-socket.xml"…
    pub source: String,
    /// NUMA nodes, by OS index.
    pub nodes: Vec<NumaNodeInfo>,
    /// Logical CPUs (PUs), by OS index.
    pub cpus: Vec<CpuInfo>,
    /// PCI devices of interest (network and storage), with their locality.
    pub pci: Vec<PciDevice>,
}

/// A NUMA node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumaNodeInfo {
    /// OS index.
    pub os_index: u32,
    /// Local memory in bytes, when known.
    pub memory_bytes: Option<u64>,
    /// CPUs (OS indexes) local to it.
    pub cpus: Vec<u32>,
    /// Relative distances (ACPI SLIT, 10 = local) to every node of [`Topology::nodes`], in that
    /// order; empty when unknown.
    #[serde(default)]
    pub distances: Vec<u32>,
}

/// A logical CPU.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuInfo {
    /// OS index (what `taskset` and the target's core list use).
    pub os_index: u32,
    /// Physical core (hwloc logical index of the Core object).
    pub core: u32,
    /// Package (socket): hwloc logical index of the Package object.
    pub package: u32,
    /// NUMA node, when known.
    pub node: Option<u32>,
}

/// A PCI device.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PciDevice {
    /// Bus id, `0000:3b:00.0`.
    pub bdf: String,
    /// "network", "storage", "other" (see [`PciDevice::NETWORK`], [`PciDevice::STORAGE`]).
    pub class: String,
    /// Vendor/device name when hwloc knows it.
    pub name: Option<String>,
    /// NUMA node it is attached to (closest), when known.
    pub node: Option<u32>,
    /// Netdevs it provides (`ens1f0`).
    pub netdevs: Vec<String>,
    /// Block devices it provides (`nvme0n1`).
    pub block_devices: Vec<String>,
    /// RDMA devices it provides (`mlx5_0`, `rxe0`).
    pub rdma_devices: Vec<String>,
    /// Link speed in Mb/s for network devices, when known.
    pub link_speed_mbps: Option<u64>,
}

impl PciDevice {
    /// [`PciDevice::class`] of network controllers (PCI class 0x02).
    pub const NETWORK: &'static str = "network";
    /// [`PciDevice::class`] of mass storage controllers (PCI class 0x01).
    pub const STORAGE: &'static str = "storage";
    /// [`PciDevice::class`] of everything else.
    pub const OTHER: &'static str = "other";

    /// The model's class name for a PCI class code (`0x0200` network, `0x0108` NVMe…): the
    /// base class is the high byte.
    pub fn class_name(class_id: u16) -> &'static str {
        match class_id >> 8 {
            0x01 => PciDevice::STORAGE,
            0x02 => PciDevice::NETWORK,
            _ => PciDevice::OTHER,
        }
    }

    /// Whether it is a network controller.
    pub fn is_network(&self) -> bool {
        self.class == PciDevice::NETWORK
    }

    /// Whether it is a storage controller.
    pub fn is_storage(&self) -> bool {
        self.class == PciDevice::STORAGE
    }

    /// A short label for pictures and reports: its OS names if any, else its bus id.
    pub fn label(&self) -> String {
        let names: Vec<&str> = self
            .netdevs
            .iter()
            .chain(&self.block_devices)
            .chain(&self.rdma_devices)
            .map(String::as_str)
            .collect();
        if names.is_empty() {
            self.bdf.clone()
        } else {
            names.join(" ")
        }
    }
}

/// Whether `dev` is `base` or one of its partitions (`nvme0n1p2` of `nvme0n1`, `sda3` of `sda`),
/// and not merely a longer name (`nvme0n10` is not `nvme0n1`'s).
fn is_same_or_partition(dev: &str, base: &str) -> bool {
    let Some(rest) = dev.strip_prefix(base) else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    // The kernel puts a `p` between a name ending in a digit and the partition number.
    let digits = if base.ends_with(|c: char| c.is_ascii_digit()) {
        match rest.strip_prefix('p') {
            Some(d) => d,
            None => return false,
        }
    } else {
        rest
    };
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

impl Topology {
    /// NUMA node of a CPU.
    pub fn node_of_cpu(&self, cpu: u32) -> Option<u32> {
        self.cpus
            .iter()
            .find(|c| c.os_index == cpu)
            .and_then(|c| c.node)
    }

    /// CPUs of a node, ascending.
    pub fn cpus_of_node(&self, node: u32) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .cpus
            .iter()
            .filter(|c| c.node == Some(node))
            .map(|c| c.os_index)
            .collect();
        v.sort_unstable();
        v
    }

    /// The PCI device providing a netdev.
    pub fn pci_of_netdev(&self, netdev: &str) -> Option<&PciDevice> {
        self.pci
            .iter()
            .find(|p| p.netdevs.iter().any(|n| n == netdev))
    }

    /// The PCI device providing a block device (`nvme0n1`, or one of its partitions
    /// `nvme0n1p2`).
    pub fn pci_of_block_device(&self, dev: &str) -> Option<&PciDevice> {
        let dev = dev.strip_prefix("/dev/").unwrap_or(dev);
        // An exact name wins over a partition match.
        self.pci
            .iter()
            .find(|p| p.block_devices.iter().any(|b| b == dev))
            .or_else(|| {
                self.pci
                    .iter()
                    .find(|p| p.block_devices.iter().any(|b| is_same_or_partition(dev, b)))
            })
    }

    /// The PCI device providing an RDMA device (`mlx5_0`).
    pub fn pci_of_rdma_device(&self, dev: &str) -> Option<&PciDevice> {
        self.pci
            .iter()
            .find(|p| p.rdma_devices.iter().any(|n| n == dev))
    }

    /// The PCI device with a bus id (`0000:81:00.0`; `81:00.0` means domain 0), any case.
    pub fn pci_by_bdf(&self, bdf: &str) -> Option<&PciDevice> {
        let want = normalize_bdf(bdf);
        self.pci.iter().find(|p| normalize_bdf(&p.bdf) == want)
    }

    /// A PCI device by any of its names: bus id, netdev, block device (or partition) or RDMA
    /// device.
    pub fn find_pci(&self, name: &str) -> Option<&PciDevice> {
        self.pci_by_bdf(name)
            .or_else(|| self.pci_of_netdev(name))
            .or_else(|| self.pci_of_rdma_device(name))
            .or_else(|| self.pci_of_block_device(name))
    }

    /// NUMA node of a netdev's NIC.
    pub fn node_of_netdev(&self, netdev: &str) -> Option<u32> {
        self.pci_of_netdev(netdev).and_then(|p| p.node)
    }

    /// NUMA node of a block device's controller.
    pub fn node_of_block_device(&self, dev: &str) -> Option<u32> {
        self.pci_of_block_device(dev).and_then(|p| p.node)
    }

    /// NUMA node of a PCI device by bus id.
    pub fn node_of_pci(&self, bdf: &str) -> Option<u32> {
        self.pci_by_bdf(bdf).and_then(|p| p.node)
    }

    /// Link speed (Mb/s) of a netdev's NIC, when known.
    pub fn link_speed_of_netdev(&self, netdev: &str) -> Option<u64> {
        self.pci_of_netdev(netdev).and_then(|p| p.link_speed_mbps)
    }

    /// A NUMA node by OS index.
    pub fn node(&self, os_index: u32) -> Option<&NumaNodeInfo> {
        self.nodes.iter().find(|n| n.os_index == os_index)
    }

    /// Relative distance between two nodes (10 = local), from the recorded matrix; `None` when
    /// either node is unknown or no matrix was recorded.
    pub fn distance(&self, a: u32, b: u32) -> Option<u32> {
        let col = self.nodes.iter().position(|n| n.os_index == b)?;
        self.node(a)?.distances.get(col).copied()
    }

    /// Package (logical index) of a CPU.
    pub fn package_of_cpu(&self, cpu: u32) -> Option<u32> {
        self.cpus
            .iter()
            .find(|c| c.os_index == cpu)
            .map(|c| c.package)
    }

    /// Number of distinct packages.
    pub fn package_count(&self) -> usize {
        let mut p: Vec<u32> = self.cpus.iter().map(|c| c.package).collect();
        p.sort_unstable();
        p.dedup();
        p.len()
    }

    /// Number of distinct physical cores.
    pub fn core_count(&self) -> usize {
        let mut p: Vec<u32> = self.cpus.iter().map(|c| c.core).collect();
        p.sort_unstable();
        p.dedup();
        p.len()
    }

    /// Number of NUMA nodes (at least 1).
    pub fn node_count(&self) -> usize {
        self.nodes.len().max(1)
    }

    /// One line: "2 NUMA nodes, 2 packages, 16 cores, 32 CPUs, 2 NICs, 1 storage controller".
    pub fn summary(&self) -> String {
        fn n(count: usize, one: &str, many: &str) -> String {
            format!("{count} {}", if count == 1 { one } else { many })
        }
        let nics = self.pci.iter().filter(|p| p.is_network()).count();
        let storage = self.pci.iter().filter(|p| p.is_storage()).count();
        [
            n(self.nodes.len(), "NUMA node", "NUMA nodes"),
            n(self.package_count(), "package", "packages"),
            n(self.core_count(), "core", "cores"),
            n(self.cpus.len(), "CPU", "CPUs"),
            n(nics, "NIC", "NICs"),
            n(storage, "storage controller", "storage controllers"),
        ]
        .join(", ")
    }
}

/// `81:00.0` → `0000:81:00.0`, lowercase.
fn normalize_bdf(bdf: &str) -> String {
    let b = bdf.trim().to_ascii_lowercase();
    if b.matches(':').count() == 1 {
        format!("0000:{b}")
    } else {
        b
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Two nodes (CPUs 0-1 on node 0, 2-3 on node 1), the NIC `ens1f0` on node 1, `nvme0n1` on
    /// node 0 and `sda` on node 1 (also the detectors' unit tests).
    pub(crate) fn two_nodes() -> Topology {
        Topology {
            source: "test".into(),
            nodes: vec![
                NumaNodeInfo {
                    os_index: 0,
                    memory_bytes: None,
                    cpus: vec![0, 1],
                    distances: vec![10, 21],
                },
                NumaNodeInfo {
                    os_index: 1,
                    memory_bytes: None,
                    cpus: vec![2, 3],
                    distances: vec![21, 10],
                },
            ],
            cpus: (0..4)
                .map(|i| CpuInfo {
                    os_index: i,
                    core: i,
                    package: i / 2,
                    node: Some(i / 2),
                })
                .collect(),
            pci: vec![
                PciDevice {
                    bdf: "0000:81:00.0".into(),
                    class: "network".into(),
                    node: Some(1),
                    netdevs: vec!["ens1f0".into()],
                    rdma_devices: vec!["mlx5_0".into()],
                    link_speed_mbps: Some(25_000),
                    ..PciDevice::default()
                },
                PciDevice {
                    bdf: "0000:01:00.0".into(),
                    class: "storage".into(),
                    node: Some(0),
                    block_devices: vec!["nvme0n1".into()],
                    ..PciDevice::default()
                },
                PciDevice {
                    bdf: "0000:02:00.0".into(),
                    class: "storage".into(),
                    node: Some(1),
                    block_devices: vec!["sda".into()],
                    ..PciDevice::default()
                },
            ],
        }
    }

    #[test]
    fn lookups_follow_the_model() {
        let t = two_nodes();
        assert_eq!(t.node_of_cpu(3), Some(1));
        assert_eq!(t.node_of_cpu(9), None);
        assert_eq!(t.cpus_of_node(1), vec![2, 3]);
        assert_eq!(t.node_of_netdev("ens1f0"), Some(1));
        assert_eq!(t.node_of_netdev("lo"), None);
        assert_eq!(t.node_count(), 2);
    }

    #[test]
    fn block_devices_match_names_and_partitions_only() {
        let t = two_nodes();
        let bdf = |d: &str| t.pci_of_block_device(d).map(|p| p.bdf.clone());
        assert_eq!(bdf("nvme0n1").as_deref(), Some("0000:01:00.0"));
        assert_eq!(bdf("/dev/nvme0n1p3").as_deref(), Some("0000:01:00.0"));
        assert_eq!(
            bdf("nvme0n10"),
            None,
            "namespace 10, not a partition of namespace 1"
        );
        assert_eq!(bdf("nvme0n1x"), None, "not a partition name");
        assert_eq!(
            bdf("nvme0n12"),
            None,
            "a different namespace, not a partition"
        );
        assert_eq!(bdf("sda2").as_deref(), Some("0000:02:00.0"));
        assert_eq!(bdf("sdab"), None, "a different disk");
        assert_eq!(t.node_of_block_device("sda"), Some(1));
    }

    #[test]
    fn pci_lookups_by_any_name() {
        let t = two_nodes();
        assert_eq!(t.node_of_pci("81:00.0"), Some(1));
        assert_eq!(t.node_of_pci("0000:81:00.0"), Some(1));
        assert_eq!(t.node_of_pci("0000:99:00.0"), None);
        assert_eq!(t.find_pci("mlx5_0").map(|p| p.node), Some(Some(1)));
        assert_eq!(t.find_pci("nvme0n1p1").map(|p| p.node), Some(Some(0)));
        assert_eq!(t.link_speed_of_netdev("ens1f0"), Some(25_000));
        assert_eq!(t.pci[0].label(), "ens1f0 mlx5_0");
        assert_eq!(PciDevice::class_name(0x0108), PciDevice::STORAGE);
        assert_eq!(PciDevice::class_name(0x0207), PciDevice::NETWORK);
        assert_eq!(PciDevice::class_name(0x0300), PciDevice::OTHER);
    }

    #[test]
    fn distances_and_counts() {
        let t = two_nodes();
        assert_eq!(t.distance(0, 1), Some(21));
        assert_eq!(t.distance(1, 1), Some(10));
        assert_eq!(t.distance(0, 7), None);
        assert_eq!(t.package_of_cpu(2), Some(1));
        assert_eq!(t.package_count(), 2);
        assert_eq!(t.core_count(), 4);
        assert_eq!(
            t.summary(),
            "2 NUMA nodes, 2 packages, 4 cores, 4 CPUs, 1 NIC, 2 storage controllers"
        );
    }

    #[test]
    fn old_json_without_distances_still_loads() {
        let json = r#"{"source":"x","nodes":[{"os_index":0,"memory_bytes":null,"cpus":[0]}],
            "cpus":[{"os_index":0,"core":0,"package":0,"node":0}],"pci":[]}"#;
        let t: Topology = serde_json::from_str(json).expect("topology without distances parses");
        assert!(t.nodes[0].distances.is_empty());
        assert_eq!(t.distance(0, 0), None);
    }
}
