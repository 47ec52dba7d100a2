//! NUMA misplacement: a reactor that carries I/O on a node other than its NIC's, its backend
//! device's, or the one holding the target's I/O buffers. Every packet, DMA and buffer touch then
//! crosses the interconnect: more latency per I/O and less bandwidth, for nothing.
//!
//! Only judged with at least two NUMA nodes in the topology; a NIC or device whose node is not
//! known (`lo`, a virtual device, a topology without PCI locality) is not judged. Stateless;
//! pure.

use super::{candidate, carries_io, cpu_list, margin, pct, Context, Detector};
use crate::finding::{Evidence, Finding, FindingKind, Severity, Subject};
use crate::window::Window;

/// Share of the target's buffer bytes a reactor's node should hold, relative to that node's share
/// of the reactors, below which the buffers count as remote: under half of what node-local
/// allocation would give means most of this reactor's buffer touches cross nodes.
pub const BUFFER_LOCAL_SHARE: f64 = 0.5;

/// Buffer bytes below which placement is not judged (nothing allocated yet).
pub const MIN_BUFFER_BYTES: u64 = 1 << 20;

/// Raises [`FindingKind::NumaMisplacement`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Numa;

impl Detector for Numa {
    fn name(&self) -> &'static str {
        "numa"
    }

    fn observe(&mut self, w: &Window, ctx: &Context<'_>, out: &mut Vec<Finding>) {
        let topo = ctx.topology;
        if topo.nodes.len() < 2 {
            return;
        }
        let mut nics: Vec<(String, u32)> = ctx
            .info
            .listeners
            .iter()
            .filter_map(|l| l.netdev.as_ref())
            .filter_map(|n| Some((n.clone(), topo.node_of_netdev(n)?)))
            .collect();
        nics.dedup();
        let mut devices: Vec<(String, u32)> = ctx
            .info
            .namespaces
            .iter()
            .filter_map(|ns| ns.device.as_ref())
            // A kernel block device (uring), or a PCI address (nvme-vfio: the device has no
            // block device while the target owns it).
            .filter_map(|d| {
                let pci = topo.pci_of_block_device(d).or_else(|| topo.pci_by_bdf(d))?;
                Some((d.clone(), pci.node?))
            })
            .collect();
        devices.dedup();
        let node_of =
            |r: &crate::window::ReactorWindow| r.node.or_else(|| topo.node_of_cpu(r.core));
        let placed: Vec<u32> = w.reactors.iter().filter_map(node_of).collect();
        let buffers = w.memory.as_ref().map(|m| &m.buffer_bytes_by_node);
        let buffer_total: u64 = buffers.map_or(0, |b| {
            b.iter().map(|(_, v)| *v).fold(0u64, u64::saturating_add)
        });

        for r in w.reactors.iter().filter(|r| carries_io(r)) {
            let Some(node) = node_of(r) else { continue };
            let nic = (!nics.is_empty() && !nics.iter().any(|(_, n)| *n == node))
                .then(|| nics[0].clone());
            let dev = (!devices.is_empty() && !devices.iter().any(|(_, n)| *n == node))
                .then(|| devices[0].clone());
            // Buffers: compare this node's share of the bytes with its share of the reactors.
            let mut memory: Option<(u32, f64)> = None;
            if let Some(b) = buffers.filter(|_| buffer_total >= MIN_BUFFER_BYTES) {
                let local: u64 = b
                    .iter()
                    .filter(|(n, _)| *n == node)
                    .map(|(_, v)| *v)
                    .fold(0u64, u64::saturating_add);
                let share = local as f64 / buffer_total as f64;
                let expected = placed.iter().filter(|n| **n == node).count() as f64
                    / placed.len().max(1) as f64;
                if share < BUFFER_LOCAL_SHARE * expected {
                    if let Some((most, _)) =
                        b.iter().filter(|(n, _)| *n != node).max_by_key(|(_, v)| *v)
                    {
                        memory = Some((*most, share));
                    }
                }
            }
            if nic.is_none() && dev.is_none() && memory.is_none() {
                continue;
            }
            // Where the reactor should be: with its NIC first (every I/O crosses it), then its
            // device, then its memory.
            let home = nics
                .first()
                .map(|(_, n)| *n)
                .or(devices.first().map(|(_, n)| *n))
                .or(memory.map(|(n, _)| n))
                .unwrap_or(node);
            let mut evidence = vec![
                Evidence::new(
                    format!("reactor {} node (core {})", r.index, r.core),
                    f64::from(node),
                    "node",
                ),
                Evidence::new("reactor IOPS", r.iops, "IOPS"),
            ];
            let mut wrong = Vec::new();
            if let Some((name, n)) = &nic {
                evidence.push(Evidence::new(
                    format!("NIC node ({name})"),
                    f64::from(*n),
                    "node",
                ));
                wrong.push(format!("its NIC {name} is on node {n}"));
            }
            if let Some((name, n)) = &dev {
                evidence.push(Evidence::new(
                    format!("device node ({name})"),
                    f64::from(*n),
                    "node",
                ));
                wrong.push(format!("its device {name} is on node {n}"));
            }
            if let Some((n, share)) = memory {
                evidence.push(Evidence::new(
                    "buffer bytes on the reactor's node",
                    share * 100.0,
                    "%",
                ));
                evidence.push(Evidence::new(
                    "node holding most buffers",
                    f64::from(n),
                    "node",
                ));
                wrong.push(format!(
                    "{} of the I/O buffers are on node {n}",
                    pct(1.0 - share)
                ));
            }
            let home_cpus = topo.cpus_of_node(home);
            let fix = if home == node {
                format!("bind the target's memory to node {node} (numactl --membind={node})")
            } else if home_cpus.is_empty() {
                format!("run the reactors on node {home}")
            } else {
                format!("use cores {} (node {home})", cpu_list(&home_cpus))
            };
            let severity = if wrong.len() >= 2 || (nic.is_some() && dev.is_some()) {
                Severity::Critical
            } else {
                Severity::Warning
            };
            // Topology facts are exact; buffer placement is a measured share.
            let confidence = if nic.is_some() || dev.is_some() {
                0.9
            } else {
                memory.map_or(0.5, |(_, s)| margin(s, BUFFER_LOCAL_SHARE, 0.0))
            };
            out.push(candidate(
                FindingKind::NumaMisplacement,
                severity,
                Subject::Reactor { index: r.index },
                format!(
                    "reactor {} runs on core {} (node {node}) but {}: every I/O crosses the \
                     interconnect; {fix}",
                    r.index,
                    r.core,
                    wrong.join(" and ")
                ),
                evidence,
                w,
                confidence,
            ));
        }
    }
}
