//! The kernel-probe collector (`ebpf`): the `probes` crate's eBPF programs, filtered in the kernel
//! to the target's reactor threads and cores, its listener ports and its namespaces' block
//! devices, read as cumulative totals into [`Sample::kernel`].
//!
//! Threading: owned by the agent's sampling thread like every collector; the [`ProbeSet`] (map
//! fds, attach links, the ring-buffer consumer) lives inside it and is dropped with it, which
//! detaches every program. [`Collector::describe`] loads and attaches; [`Collector::collect`]
//! reads the aggregate maps (a few map walks, no blocking) and drains the event ring without
//! looking at it, so the kernel side never reports drops for a consumer that is not there.
//!
//! Degradation: each probe loads on its own; the one capability line names the probes that run
//! and, for each that does not, why (no root: "run as root or grant CAP_BPF and CAP_PERFMON";
//! no kernel BTF). Nothing else in the agent depends on them. The `syscalls` probe puts every
//! syscall of the machine on the tracing slow path (probes/README.md, Overhead), so it is only
//! attached when asked for ([`KernelOptions::syscalls`]).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use agent_core::requests::{KernelCause, KernelSpan};
use agent_core::sample::{
    Capability, KernelDeviceSample, KernelReactorSample, KernelSample, Sample, TargetInfo,
};
use probes::{
    Aggregates, BlockDev, Filter, IrqKind, Outcome, ProbeConfig, ProbeKind, ProbeSet, ProbeStatus,
    StreamThresholds,
};

use super::Collector;

/// What to attach.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOptions {
    /// Also attach `raw_syscalls` (slows every syscall on the machine while attached).
    pub syscalls: bool,
    /// Also attach the per-packet and per-softirq tracepoints ([`probes::config::PER_PACKET`]:
    /// `tcp_probe`, `softirq_entry`/`softirq_exit`), which run hundreds of thousands of times a
    /// second on a busy reactor's core; off by default (hard interrupts, retransmits stay on).
    pub per_packet: bool,
}

/// The probes this collector attaches (`syscalls` only on request).
pub fn probe_kinds(syscalls: bool) -> Vec<ProbeKind> {
    let mut kinds = vec![
        ProbeKind::Sched,
        ProbeKind::Irq,
        ProbeKind::Tcp,
        ProbeKind::Block,
        ProbeKind::Numa,
    ];
    if syscalls {
        kinds.push(ProbeKind::Syscalls);
    }
    kinds
}

/// The in-kernel filter for a target as described by `info`: its pid, reactor tids and cores,
/// listener ports, and the namespaces' block devices (file-backed and memory namespaces have
/// none). Nothing is streamed by default thresholds beyond what the probes always stream.
pub fn filter_for(info: &TargetInfo) -> Filter {
    let mut f = Filter {
        pid: (info.pid != 0).then_some(info.pid),
        ..Filter::default()
    };
    for r in &info.reactors {
        if let Some(tid) = r.tid.filter(|&t| t != 0) {
            if !f.reactor_tids.contains(&tid) {
                f.reactor_tids.push(tid);
            }
        }
        if !f.cores.contains(&r.core) {
            f.cores.push(r.core);
        }
    }
    for l in &info.listeners {
        if let Some(port) = listener_port(&l.address) {
            if !f.ports.contains(&port) {
                f.ports.push(port);
            }
        }
    }
    for (d, _) in namespace_devices(info) {
        if !f.devices.contains(&d) {
            f.devices.push(d);
        }
    }
    f
}

/// The namespaces' block devices with the names the namespaces give them (`loop3`,
/// `/dev/nvme0n1`); a regular file or a missing name is simply not a block device to watch.
pub fn namespace_devices(info: &TargetInfo) -> Vec<(BlockDev, String)> {
    let mut out: Vec<(BlockDev, String)> = Vec::new();
    for n in &info.namespaces {
        let Some(dev) = n.device.as_deref().filter(|d| !d.is_empty()) else {
            continue;
        };
        let path = if dev.starts_with('/') {
            PathBuf::from(dev)
        } else {
            PathBuf::from("/dev").join(dev)
        };
        if let Ok(d) = BlockDev::from_path(&path) {
            if !out.iter().any(|(x, _)| *x == d) {
                // The block collector names devices as /sys/block does: without "/dev/".
                let name = dev.rsplit('/').next().unwrap_or(dev).to_string();
                out.push((d, name));
            }
        }
    }
    out
}

/// The port of an `ip:port` listener address (`[v6]:port` too); `None` when it has none.
pub fn listener_port(address: &str) -> Option<u16> {
    if let Ok(a) = address.parse::<SocketAddr>() {
        return Some(a.port());
    }
    address.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

/// One line from the probes' statuses: which run, and for each that does not, why. Probes not
/// requested are left out. Returns whether any probe runs.
pub fn summarize(statuses: &[ProbeStatus]) -> (bool, String) {
    let running: Vec<&str> = statuses
        .iter()
        .filter(|s| matches!(s.outcome, Outcome::Attached))
        .map(|s| s.probe.name())
        .collect();
    let mut parts = Vec::new();
    if !running.is_empty() {
        parts.push(format!("loaded: {}", running.join(", ")));
    }
    for s in statuses.iter().filter(|s| s.outcome == Outcome::Partial) {
        parts.push(format!("{} partial: {}", s.probe, s.detail));
    }
    // Probes failing for the same reason (no privilege, no BTF) share one clause.
    let mut failed: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for s in statuses.iter().filter(|s| s.outcome == Outcome::Failed) {
        failed.entry(&s.detail).or_default().push(s.probe.name());
    }
    for (detail, names) in failed {
        parts.push(format!("not loaded: {}: {detail}", names.join(", ")));
    }
    let any = statuses
        .iter()
        .any(|s| matches!(s.outcome, Outcome::Attached | Outcome::Partial));
    if parts.is_empty() {
        parts.push("no kernel probe was requested".into());
    }
    (any, parts.join("; "))
}

/// Interrupt runs on a reactor core streamed for tail attribution: 20 µs is several times a
/// request's time at the target, shorter runs are the per-packet work every request pays.
pub const STREAM_IRQ_MIN_NS: u64 = 20_000;

/// Block requests streamed for tail attribution: 1 ms is slow for any flash device.
pub const STREAM_BLOCK_MIN_NS: u64 = 1_000_000;

/// Kernel events kept per sample: a bound on what a storm (a hog preempting thousands of times a
/// second) can put into one sample; the rest are counted by the aggregates anyway.
pub const MAX_EVENTS_PER_SAMPLE: usize = 4096;

/// Softirq vector names (`include/linux/interrupt.h`).
const SOFTIRQS: [&str; 10] = [
    "HI", "TIMER", "NET_TX", "NET_RX", "BLOCK", "IRQ_POLL", "TASKLET", "SCHED", "HRTIMER", "RCU",
];

/// The kernel events that explain a slow request, as spans on the one clock: preemptions of a
/// reactor thread (by the task that ran), long interrupts on a reactor's core, slow block
/// requests of a namespace's device, retransmits. Others (wake-ups, syscalls, samples) are left
/// out.
pub fn spans_of(
    info: &TargetInfo,
    devices: &[(BlockDev, String)],
    events: &[probes::KernelEvent],
) -> Vec<KernelSpan> {
    use probes::KernelEvent as K;
    let by_tid = |tid: u32| {
        info.reactors
            .iter()
            .find(|r| r.tid == Some(tid))
            .map(|r| r.index)
    };
    let by_cpu = |cpu: u32| {
        info.reactors
            .iter()
            .find(|r| r.core == cpu)
            .map(|r| r.index)
    };
    let mut out = Vec::new();
    for ev in events {
        let span = match ev {
            K::Preempted {
                tid,
                start_ns,
                end_ns,
                by_pid,
                by_comm,
                ..
            } => by_tid(*tid).map(|r| KernelSpan {
                cause: KernelCause::Preemption {
                    pid: *by_pid,
                    comm: by_comm.clone(),
                },
                reactor: Some(r),
                start_ns: *start_ns,
                end_ns: *end_ns,
            }),
            K::IrqTime {
                cpu,
                kind,
                vector,
                start_ns,
                duration_ns,
            } => by_cpu(*cpu).map(|r| KernelSpan {
                cause: match kind {
                    IrqKind::Hard => KernelCause::Irq {
                        name: format!("irq {vector}"),
                    },
                    IrqKind::Soft => KernelCause::Softirq {
                        name: SOFTIRQS
                            .get(*vector as usize)
                            .map_or_else(|| format!("softirq {vector}"), |n| (*n).to_string()),
                    },
                },
                reactor: Some(r),
                start_ns: *start_ns,
                end_ns: start_ns.saturating_add(*duration_ns),
            }),
            K::BlockRq {
                dev,
                issue_ns,
                latency_ns,
                ..
            } => devices
                .iter()
                .find(|(d, _)| d == dev)
                .map(|(_, name)| KernelSpan {
                    cause: KernelCause::Block {
                        device: name.clone(),
                    },
                    reactor: None,
                    start_ns: *issue_ns,
                    end_ns: issue_ns.saturating_add(*latency_ns),
                }),
            K::TcpRetransmit { ts_ns, .. } => Some(KernelSpan {
                cause: KernelCause::Retransmit,
                reactor: None,
                start_ns: *ts_ns,
                end_ns: *ts_ns,
            }),
            _ => None,
        };
        out.extend(span);
        if out.len() >= MAX_EVENTS_PER_SAMPLE {
            break;
        }
    }
    out
}

/// Kernel probes for one target process.
pub struct KernelCollector {
    pid: u32,
    opts: KernelOptions,
    set: Option<ProbeSet>,
    statuses: Vec<ProbeStatus>,
    problem: Option<String>,
}

impl KernelCollector {
    /// A collector for process `pid`; nothing is loaded before [`Collector::describe`].
    pub fn new(pid: u32, opts: KernelOptions) -> KernelCollector {
        KernelCollector {
            pid,
            opts,
            set: None,
            statuses: Vec::new(),
            problem: None,
        }
    }

    /// The per-probe status lines of the last start (empty before `describe`).
    pub fn statuses(&self) -> &[ProbeStatus] {
        &self.statuses
    }

    fn config(&self, info: &TargetInfo) -> ProbeConfig {
        let mut filter = filter_for(info);
        if filter.pid.is_none() && self.pid != 0 {
            filter.pid = Some(self.pid);
        }
        // Stream what explains a slow request (tail attribution): interrupts on reactor cores and
        // block requests long enough to matter; preemptions and retransmits always stream. No
        // per-connection TCP samples, no wake-ups.
        filter.stream = StreamThresholds {
            irq_min_ns: Some(STREAM_IRQ_MIN_NS),
            syscall_min_ns: None,
            block_min_ns: Some(STREAM_BLOCK_MIN_NS),
            tcp_sample_interval_ns: None,
            wakeup_latency_min_ns: None,
        };
        ProbeConfig {
            filter,
            probes: probe_kinds(self.opts.syscalls),
            ringbuf_bytes: 1 << 16,
            off: if self.opts.per_packet {
                Vec::new()
            } else {
                probes::config::PER_PACKET.to_vec()
            },
        }
    }

    /// Follows reactor tids learned after `describe` (the final description may know more).
    fn refresh_filter(&mut self, info: &TargetInfo) {
        let want = config_tids(info);
        let Some(set) = &mut self.set else {
            return;
        };
        if want.iter().all(|t| set.filter().reactor_tids.contains(t)) {
            return;
        }
        for t in want {
            // A failed update keeps the old filter; the totals are then just narrower.
            let _ = set.add_reactor_tid(t);
        }
    }
}

fn config_tids(info: &TargetInfo) -> Vec<u32> {
    info.reactors
        .iter()
        .filter_map(|r| r.tid.filter(|&t| t != 0))
        .collect()
}

/// Builds the kernel part of a sample from the probes' totals.
pub fn kernel_sample(info: &TargetInfo, agg: &Aggregates) -> KernelSample {
    kernel_sample_with(info, agg, &namespace_devices(info))
}

/// [`kernel_sample`] with the namespaces' block devices already resolved.
pub fn kernel_sample_with(
    info: &TargetInfo,
    agg: &Aggregates,
    devices: &[(BlockDev, String)],
) -> KernelSample {
    let agent_pid = std::process::id();
    let reactors = info
        .reactors
        .iter()
        .map(|r| {
            let mut k = KernelReactorSample {
                index: r.index,
                ..KernelReactorSample::default()
            };
            if let Some(st) = r.tid.and_then(|t| agg.reactors.iter().find(|s| s.tid == t)) {
                k.preemptions = st.preempted;
                k.preempted_ns = st.preempted_ns;
                k.migrations = st.migrations;
            }
            let mut intruders: HashMap<(u32, &str), u64> = HashMap::new();
            for s in agg.stolen.iter().filter(|s| s.cpu == r.core) {
                // The agent's own slices there are its cost, shown as such, never an intruder.
                if s.pid == agent_pid {
                    k.agent_ns = k.agent_ns.saturating_add(s.ns);
                    continue;
                }
                *intruders.entry((s.pid, s.comm.as_str())).or_default() += s.ns;
            }
            k.top_intruder = intruders
                .into_iter()
                .filter(|&(_, ns)| ns > 0)
                .max_by_key(|&((pid, _), ns)| (ns, std::cmp::Reverse(pid)))
                .map(|((pid, comm), _)| (pid, comm.to_string()));
            for i in agg.irq.iter().filter(|i| i.cpu == r.core) {
                match i.kind {
                    IrqKind::Hard => k.irq_ns = k.irq_ns.saturating_add(i.time.total_ns),
                    IrqKind::Soft => k.softirq_ns = k.softirq_ns.saturating_add(i.time.total_ns),
                }
            }
            if let Some(tid) = r.tid {
                k.syscalls = agg
                    .syscalls
                    .iter()
                    .filter(|s| s.tid == tid)
                    .map(|s| s.count)
                    .sum();
            }
            k
        })
        .collect();
    let devices = devices
        .iter()
        .map(|(dev, name)| {
            let mut k = KernelDeviceSample {
                name: name.clone(),
                ..KernelDeviceSample::default()
            };
            // Every operation (read, write, flush, discard...) of the device together.
            for b in agg.block.iter().filter(|b| b.dev == *dev) {
                k.requests = k.requests.saturating_add(b.latency.count);
                k.bytes = k.bytes.saturating_add(b.bytes);
                k.errors = k.errors.saturating_add(b.errors);
                k.latency_total_ns = k.latency_total_ns.saturating_add(b.latency.total_ns);
                if k.latency_log2.len() < b.latency.buckets.len() {
                    k.latency_log2.resize(b.latency.buckets.len(), 0);
                }
                for (acc, &c) in k.latency_log2.iter_mut().zip(b.latency.buckets.iter()) {
                    *acc = acc.saturating_add(c);
                }
            }
            k
        })
        .collect();
    KernelSample {
        reactors,
        tcp_retransmits: agg.tcp.iter().map(|c| c.retransmits).sum(),
        numa_migrations: agg.numa_pages.iter().map(|p| p.succeeded).sum(),
        devices,
    }
}

impl Collector for KernelCollector {
    fn name(&self) -> &'static str {
        "ebpf"
    }

    fn capability(&self) -> Capability {
        if let Some(p) = &self.problem {
            return Capability {
                name: "ebpf".into(),
                available: false,
                note: p.clone(),
            };
        }
        let (available, mut note) = summarize(&self.statuses);
        if !self.opts.syscalls {
            note.push_str(
                "; syscalls off (it slows every syscall on the machine; ask for it to count reactor syscalls)",
            );
        }
        if !self.opts.per_packet {
            note.push_str(
                "; per-packet tcp_probe and softirq timing off (they cost a busy reactor's core a few %; --kernel-per-packet turns them on)",
            );
        }
        Capability {
            name: "ebpf".into(),
            available,
            note,
        }
    }

    fn describe(&mut self, info: &mut TargetInfo) {
        let cfg = self.config(info);
        match ProbeSet::start(&cfg) {
            Ok((set, statuses)) => {
                self.set = Some(set);
                self.statuses = statuses;
            }
            Err(e) => {
                self.problem = Some(format!(
                    "kernel probes not started: {e}; user-space collectors are unaffected"
                ))
            }
        }
    }

    fn collect(&mut self, info: &TargetInfo, sample: &mut Sample) {
        self.refresh_filter(info);
        let Some(set) = &mut self.set else {
            return;
        };
        if set.running().is_empty() {
            return;
        }
        // The events that explain slow requests join the sample (bounded); the ring is drained
        // every tick so it never fills.
        let devices = namespace_devices(info);
        if let Ok(events) = set.poll(Duration::ZERO) {
            sample.kernel_events = spans_of(info, &devices, &events);
        }
        if let Ok(agg) = set.read_aggregates() {
            sample.kernel = Some(kernel_sample_with(info, &agg, &devices));
        }
    }
}

/// The kernel collector for process `pid`, boxed for [`super::Sources`]; `syscalls` also
/// attaches the `raw_syscalls` probe. Place it after the procfs collector (which resolves the
/// reactor thread ids it filters on).
pub fn kernel_collector(pid: u32, syscalls: bool) -> Box<dyn Collector> {
    kernel_collector_with(
        pid,
        KernelOptions {
            syscalls,
            per_packet: false,
        },
    )
}

/// [`kernel_collector`] with every option.
pub fn kernel_collector_with(pid: u32, opts: KernelOptions) -> Box<dyn Collector> {
    Box::new(KernelCollector::new(pid, opts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_core::sample::{ListenerInfo, ReactorInfo};
    use probes::aggregates::{LatencyHist, ReactorSchedStats, StolenTime};

    fn info() -> TargetInfo {
        TargetInfo {
            pid: 100,
            reactors: vec![
                ReactorInfo {
                    index: 0,
                    core: 1,
                    tid: Some(101),
                },
                ReactorInfo {
                    index: 1,
                    core: 0,
                    tid: None,
                },
            ],
            listeners: vec![ListenerInfo {
                transport: trace_ring::description::Transport::Tcp,
                address: "127.0.0.1:4420".into(),
                netdev: None,
            }],
            ..TargetInfo::default()
        }
    }

    #[test]
    fn preemptions_and_long_interrupts_become_spans_of_their_reactor() {
        let events = vec![
            probes::KernelEvent::Preempted {
                tid: 101,
                cpu: 1,
                start_ns: 1_000,
                end_ns: 3_001_000,
                resumed_cpu: 1,
                by_pid: 77,
                by_comm: "hog".into(),
            },
            probes::KernelEvent::IrqTime {
                cpu: 0,
                kind: IrqKind::Soft,
                vector: 3,
                start_ns: 5_000,
                duration_ns: 40_000,
            },
            // Another process's thread: not a reactor, not kept.
            probes::KernelEvent::Preempted {
                tid: 999,
                cpu: 1,
                start_ns: 1,
                end_ns: 2,
                resumed_cpu: 1,
                by_pid: 1,
                by_comm: "x".into(),
            },
        ];
        let spans = spans_of(&info(), &[], &events);
        assert_eq!(spans.len(), 2, "{spans:?}");
        assert_eq!(spans[0].reactor, Some(0));
        assert_eq!(
            spans[0].cause,
            KernelCause::Preemption {
                pid: 77,
                comm: "hog".into()
            }
        );
        assert_eq!(spans[0].end_ns - spans[0].start_ns, 3_000_000);
        assert_eq!(spans[1].reactor, Some(1), "cpu 0 is reactor 1's core");
        assert_eq!(
            spans[1].cause,
            KernelCause::Softirq {
                name: "NET_RX".into()
            }
        );
    }

    #[test]
    fn filter_names_pid_tids_cores_and_ports() {
        let f = filter_for(&info());
        assert_eq!(f.pid, Some(100));
        assert_eq!(f.reactor_tids, vec![101]);
        assert_eq!(f.cores, vec![1, 0]);
        assert_eq!(f.ports, vec![4420]);
        assert!(f.devices.is_empty(), "no namespace device");
        assert_eq!(listener_port("[::1]:9000"), Some(9000));
        assert_eq!(listener_port("nothing"), None);
    }

    #[test]
    fn sample_maps_totals_to_reactors() {
        let stolen = |pid: u32, comm: &str, cpu: u32, ns: u64| StolenTime {
            cpu,
            pid,
            comm: comm.into(),
            ns,
            slices: 1,
        };
        let agg = Aggregates {
            stolen: vec![
                stolen(7, "hog", 1, 5_000),
                stolen(8, "kworker", 1, 1_000),
                stolen(9, "other", 0, 9_000),
            ],
            reactors: vec![ReactorSchedStats {
                tid: 101,
                preempted: 3,
                preempted_ns: 4_000,
                migrations: 2,
                ..ReactorSchedStats::default()
            }],
            irq: vec![
                probes::aggregates::IrqTotals {
                    cpu: 1,
                    kind: IrqKind::Soft,
                    vector: 3,
                    time: LatencyHist {
                        total_ns: 700,
                        ..LatencyHist::default()
                    },
                },
                probes::aggregates::IrqTotals {
                    cpu: 1,
                    kind: IrqKind::Hard,
                    vector: 30,
                    time: LatencyHist {
                        total_ns: 50,
                        ..LatencyHist::default()
                    },
                },
            ],
            ..Aggregates::default()
        };
        let k = kernel_sample(&info(), &agg);
        let r0 = &k.reactors[0];
        assert_eq!(
            (r0.preemptions, r0.preempted_ns, r0.migrations),
            (3, 4_000, 2)
        );
        assert_eq!(r0.top_intruder, Some((7, "hog".to_string())));
        assert_eq!((r0.irq_ns, r0.softirq_ns), (50, 700));
        assert_eq!(r0.agent_ns, 0, "the agent did not run there");
        let r1 = &k.reactors[1];
        assert_eq!(r1.preempted_ns, 0, "no tid, no thread stats");
        assert_eq!(r1.top_intruder, Some((9, "other".to_string())));
        assert!(k.devices.is_empty(), "no namespace device");
    }

    #[test]
    fn the_agents_own_slices_are_its_cost_not_an_intruder() {
        let me = std::process::id();
        let stolen = |pid: u32, comm: &str, ns: u64| StolenTime {
            cpu: 1,
            pid,
            comm: comm.into(),
            ns,
            slices: 1,
        };
        let agg = Aggregates {
            stolen: vec![
                stolen(me, "ringside", 9_000),
                stolen(15, "rcu_preempt", 1_000),
            ],
            ..Aggregates::default()
        };
        let k = kernel_sample(&info(), &agg);
        assert_eq!(k.reactors[0].agent_ns, 9_000);
        assert_eq!(
            k.reactors[0].top_intruder,
            Some((15, "rcu_preempt".to_string())),
            "the agent is never named as the intruder, even when it took the most"
        );
    }

    #[test]
    fn block_totals_of_a_namespace_device_sum_over_operations() {
        let dev = BlockDev { major: 7, minor: 3 };
        let other = BlockDev { major: 8, minor: 0 };
        let hist = |count: u64, bucket: usize| {
            let mut h = LatencyHist {
                count,
                total_ns: count * (1 << bucket),
                max_ns: 1 << bucket,
                ..LatencyHist::default()
            };
            h.buckets[bucket] = count;
            h
        };
        let block = |dev: BlockDev, op: probes::BlockOp, count: u64, bucket: usize| {
            probes::aggregates::BlockTotals {
                dev,
                op,
                bytes: count * 4096,
                errors: u64::from(op == probes::BlockOp::Write),
                latency: hist(count, bucket),
            }
        };
        let agg = Aggregates {
            block: vec![
                block(dev, probes::BlockOp::Read, 90, 14),
                block(dev, probes::BlockOp::Write, 10, 20),
                block(other, probes::BlockOp::Read, 1_000, 10),
            ],
            ..Aggregates::default()
        };
        let k = kernel_sample_with(&info(), &agg, &[(dev, "loop3".into())]);
        assert_eq!(k.devices.len(), 1, "only the namespace's device");
        let d = &k.devices[0];
        assert_eq!(d.name, "loop3");
        assert_eq!((d.requests, d.bytes, d.errors), (100, 100 * 4096, 1));
        assert_eq!(d.latency_total_ns, 90 * (1 << 14) + 10 * (1 << 20));
        assert_eq!((d.latency_log2[14], d.latency_log2[20]), (90, 10));
        assert_eq!(d.latency_log2.iter().sum::<u64>(), 100);
    }

    #[test]
    fn summary_groups_failures_by_reason() {
        let st = |probe, outcome, detail: &str| ProbeStatus {
            probe,
            outcome,
            attached: Vec::new(),
            detail: detail.into(),
        };
        let (any, line) = summarize(&[
            st(
                ProbeKind::Sched,
                Outcome::Attached,
                "attached: sched_switch",
            ),
            st(ProbeKind::Irq, Outcome::Failed, "no perm"),
            st(ProbeKind::Tcp, Outcome::Failed, "no perm"),
            st(ProbeKind::Net, Outcome::Disabled, "not requested"),
        ]);
        assert!(any);
        assert_eq!(line, "loaded: sched; not loaded: irq, tcp: no perm");
        let (any, _) = summarize(&[st(ProbeKind::Irq, Outcome::Failed, "x")]);
        assert!(!any);
    }
}
