//! NUMA misplacement: a reactor that carries I/O on a node other than its NIC's, its backend
//! device's, or the one holding the target's I/O buffers. Every packet, DMA and buffer touch then
//! crosses the interconnect: more latency per I/O and less bandwidth, for nothing.
//!
//! Only judged with at least two NUMA nodes in the topology; a NIC or device whose node is not
//! known (`lo`, a virtual device, a topology without PCI locality) is not judged.
//!
//! Cost ([`cost`]): measured when a reactor on the right node carries I/O in the same window:
//! the misplaced reactor's extra time per I/O over it is the share of its time the interconnect
//! takes. Otherwise estimated (and said so): [`REMOTE_PENALTY`] more time per I/O for each thing
//! on the wrong node. Either way, a saturated reactor loses that share of its IOPS and one with
//! idle time the busy part of it ([`super::iops_lost`]), so a nearly idle misplaced reactor is an
//! info note with the fix. Stateless; pure.

use super::{carries_io, costed, cpu_list, iops_lost, margin, pct, Context, Detector};
use crate::finding::{Cost, Evidence, Finding, FindingKind, Subject};
use crate::window::{ReactorWindow, Window};

/// Reactor time per I/O each remote resource (NIC, device, buffers) adds when no local
/// reactor measures it: every packet, DMA and buffer touch crosses the interconnect, and the
/// published cross-node penalties of NVMe-oF targets are 10-30 % per I/O; the middle.
pub const REMOTE_PENALTY: f64 = 0.2;

/// The cost of `r` running on the wrong node with `remote` resources there, against a
/// `local` reactor on the home node when one carries I/O.
pub fn cost(r: &ReactorWindow, remote: usize, local: Option<&ReactorWindow>) -> Cost {
    let measured = local.and_then(|l| {
        let (mine, theirs) = (r.ns_per_io?, l.ns_per_io?);
        let share = 1.0 - theirs / mine;
        share.is_finite().then_some((share.max(0.0), l.index))
    });
    let (time_share, basis) = match measured {
        Some((share, by)) => (
            share,
            format!(
                "measured: its busy time per I/O against reactor {by} on the right node: the \
                 difference is the interconnect's share of its time"
            ),
        ),
        None => {
            let penalty = REMOTE_PENALTY * remote as f64;
            (
                penalty / (1.0 + penalty),
                format!(
                    "not measured (no reactor on the right node carries I/O to compare): \
                     estimated {remote} remote resource(s) × ~{:.0} % more time per I/O",
                    REMOTE_PENALTY * 100.0
                ),
            )
        }
    };
    Cost {
        iops_share: Some(iops_lost(time_share, r.busy_ratio)),
        latency_share: None,
        added_latency_ns: None,
        basis,
    }
}

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
            let local = w
                .reactors
                .iter()
                .find(|x| carries_io(x) && x.ns_per_io.is_some() && node_of(x) == Some(home))
                .filter(|_| home != node);
            let cost = cost(r, wrong.len(), local);
            // Topology facts are exact; buffer placement is a measured share.
            let confidence = if nic.is_some() || dev.is_some() {
                0.9
            } else {
                memory.map_or(0.5, |(_, s)| margin(s, BUFFER_LOCAL_SHARE, 0.0))
            };
            out.push(costed(
                FindingKind::NumaMisplacement,
                cost,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::Severity;
    use crate::sample::{ListenerInfo, TargetInfo, Transport};
    use crate::topology::Topology;

    /// The topology module's two nodes (NIC `ens1f0` on node 1) and a listener on that NIC.
    fn two_nodes() -> (TargetInfo, Topology) {
        let topo = crate::topology::tests::two_nodes();
        let info = TargetInfo {
            listeners: vec![ListenerInfo {
                transport: Transport::Tcp,
                address: "10.0.0.1:4420".into(),
                netdev: Some("ens1f0".into()),
            }],
            ..TargetInfo::default()
        };
        (info, topo)
    }

    fn reactor(index: u32, core: u32, iops: f64, busy: f64) -> ReactorWindow {
        ReactorWindow {
            index,
            core,
            iops,
            completions: iops as u64,
            busy_ratio: busy,
            ns_per_io: Some(busy * 1e9 / iops),
            ..ReactorWindow::default()
        }
    }

    fn observe(reactors: Vec<ReactorWindow>) -> Vec<Finding> {
        let w = Window {
            end_ns: 1_000_000_000,
            reactors,
            ..Window::default()
        };
        let (info, topo) = two_nodes();
        super::super::observe_one(&mut Numa, &w, &info, &topo, &[])
    }

    #[test]
    fn a_saturated_misplaced_reactor_costs_the_estimated_penalty() {
        let f = observe(vec![reactor(0, 0, 300_000.0, 1.0)]);
        assert_eq!(f.len(), 1, "{f:?}");
        let c = f[0].cost.as_ref().expect("cost");
        assert!((c.iops_share.unwrap() - 0.2 / 1.2).abs() < 1e-9, "{c:?}");
        assert!(c.basis.starts_with("not measured"), "{}", c.basis);
        assert_eq!(f[0].severity, Severity::Warning);
        // Nearly idle: the same penalty on 5 % of busy time is background.
        let f = observe(vec![reactor(0, 0, 1_000.0, 0.05)]);
        assert_eq!(f[0].severity, Severity::Info, "{:?}", f[0].cost);
        assert!(f[0].summary.contains("use cores 2-3"), "{}", f[0].summary);
    }

    #[test]
    fn a_local_reactor_measures_the_penalty() {
        // Reactor 0 (node 0) needs 4 µs per I/O, reactor 1 (node 1, the NIC's) 2.5 µs.
        let f = observe(vec![
            reactor(0, 0, 250_000.0, 1.0),
            reactor(1, 2, 400_000.0, 1.0),
        ]);
        assert_eq!(f.len(), 1, "only the misplaced one: {f:?}");
        let c = f[0].cost.as_ref().unwrap();
        assert!((c.iops_share.unwrap() - 0.375).abs() < 1e-9, "{c:?}");
        assert!(c.basis.starts_with("measured"), "{}", c.basis);
        assert_eq!(f[0].severity, Severity::Critical);
    }
}
