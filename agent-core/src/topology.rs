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
}

/// A logical CPU.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuInfo {
    /// OS index (what `taskset` and the target's core list use).
    pub os_index: u32,
    /// Physical core (hwloc logical index of the Core object).
    pub core: u32,
    /// Package (socket).
    pub package: u32,
    /// NUMA node, when known.
    pub node: Option<u32>,
}

/// A PCI device.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PciDevice {
    /// Bus id, `0000:3b:00.0`.
    pub bdf: String,
    /// "network", "storage", "other".
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

    /// The PCI device providing a block device (`nvme0n1`, also matches a partition prefix).
    pub fn pci_of_block_device(&self, dev: &str) -> Option<&PciDevice> {
        self.pci.iter().find(|p| {
            p.block_devices
                .iter()
                .any(|b| dev == b || dev.starts_with(b.as_str()))
        })
    }

    /// NUMA node of a netdev's NIC.
    pub fn node_of_netdev(&self, netdev: &str) -> Option<u32> {
        self.pci_of_netdev(netdev).and_then(|p| p.node)
    }

    /// Number of NUMA nodes (at least 1).
    pub fn node_count(&self) -> usize {
        self.nodes.len().max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_nodes() -> Topology {
        Topology {
            source: "test".into(),
            nodes: vec![
                NumaNodeInfo {
                    os_index: 0,
                    memory_bytes: None,
                    cpus: vec![0, 1],
                },
                NumaNodeInfo {
                    os_index: 1,
                    memory_bytes: None,
                    cpus: vec![2, 3],
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
            pci: vec![PciDevice {
                bdf: "0000:81:00.0".into(),
                class: "network".into(),
                node: Some(1),
                netdevs: vec!["ens1f0".into()],
                ..PciDevice::default()
            }],
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
}
