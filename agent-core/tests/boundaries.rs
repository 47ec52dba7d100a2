//! Each detector on both sides of its thresholds, with hand-built windows: the named cases say
//! what must and must not be raised, so a threshold that drifts (or a detector that says yes to
//! everything) fails here by name.

use agent_core::detect::{default_detectors, Context};
use agent_core::finding::{Finding, FindingKind, Severity};
use agent_core::hist::Hist;
use agent_core::sample::{ListenerInfo, TargetInfo};
use agent_core::topology::{CpuInfo, NumaNodeInfo, PciDevice, Topology};
use agent_core::window::{NetdevWindow, QpairWindow, ReactorWindow};
use agent_core::Window;
use rstest::rstest;

fn topo(nodes: u32) -> Topology {
    Topology {
        source: "test".into(),
        nodes: (0..nodes)
            .map(|n| NumaNodeInfo {
                os_index: n,
                cpus: vec![2 * n, 2 * n + 1],
                ..NumaNodeInfo::default()
            })
            .collect(),
        cpus: (0..2 * nodes)
            .map(|c| CpuInfo {
                os_index: c,
                core: c,
                package: c / 2,
                node: Some(c / 2),
            })
            .collect(),
        pci: vec![PciDevice {
            bdf: "0000:81:00.0".into(),
            class: "network".into(),
            node: Some(nodes - 1),
            netdevs: vec!["ens1f0".into()],
            ..PciDevice::default()
        }],
    }
}

fn info(netdev: &str) -> TargetInfo {
    TargetInfo {
        listeners: vec![ListenerInfo {
            transport: agent_core::sample::Transport::Tcp,
            address: "10.0.0.1:4420".into(),
            netdev: Some(netdev.into()),
        }],
        ..TargetInfo::default()
    }
}

/// A healthy, loaded reactor on core 0 (node 0): QD16, 95 % busy (4.75 µs per I/O: deeper
/// queues would add little), pinned, alone.
fn reactor() -> ReactorWindow {
    ReactorWindow {
        index: 0,
        core: 0,
        node: Some(0),
        iops: 200_000.0,
        completions: 200_000,
        busy_ratio: 0.95,
        ns_per_io: Some(4_750.0),
        polls_per_s: 100_000.0,
        avg_outstanding: 16.0,
        active_qpairs: 1,
        cpu_ratio: Some(1.0),
        runqueue_wait_ratio: Some(0.001),
        involuntary_switches_per_s: Some(2.0),
        migrations: Some(0),
        allowed_cpus: vec![0],
        last_cpu: Some(0),
        ..ReactorWindow::default()
    }
}

fn qpair(avg: f64, iops: f64) -> QpairWindow {
    let mut latency = Hist::empty();
    latency.record(10_000);
    QpairWindow {
        reactor: 0,
        slot: 0,
        iops,
        completions: iops as u64,
        avg_outstanding: avg,
        high_water: avg.ceil() as u64,
        queue_size: Some(128),
        latency,
        ..QpairWindow::default()
    }
}

fn window(r: ReactorWindow, q: Vec<QpairWindow>, n: Vec<NetdevWindow>) -> Window {
    Window {
        start_ns: 0,
        end_ns: 1_000_000_000,
        reactors: vec![r],
        qpairs: q,
        netdevs: n,
        ..Window::default()
    }
}

fn run(w: &Window, info: &TargetInfo, topo: &Topology) -> Vec<Finding> {
    let ctx = Context {
        info,
        topology: topo,
        history: &[],
    };
    let mut out = Vec::new();
    for mut d in default_detectors() {
        d.observe(w, &ctx, &mut out);
    }
    out
}

fn kinds(out: &[Finding]) -> Vec<FindingKind> {
    let mut v: Vec<FindingKind> = out.iter().map(|f| f.kind).collect();
    v.sort();
    v.dedup();
    v
}

fn link(util: f64, drops: u64, overlimits: f64, backlog: u64) -> NetdevWindow {
    NetdevWindow {
        name: "ens1f0".into(),
        tx_bytes_per_s: util * 1.25e9,
        speed_mbps: Some(10_000),
        capacity_bytes_per_s: Some(1.25e9),
        utilisation: Some(util),
        qdisc_drops: drops,
        qdisc_overlimits_per_s: overlimits,
        qdisc_backlog_bytes: backlog,
        ..NetdevWindow::default()
    }
}

#[test]
fn a_healthy_window_raises_nothing() {
    let w = window(
        reactor(),
        vec![qpair(16.0, 200_000.0)],
        vec![link(0.5, 0, 0.0, 0)],
    );
    let out = run(&w, &info("ens1f0"), &topo(1));
    assert!(out.is_empty(), "{out:#?}");
}

#[rstest]
#[case::single_node_never_judged(1, 0, true, None)]
#[case::reactor_on_the_nics_node(2, 2, true, None)]
#[case::remote_but_idle_reactor(2, 0, false, None)]
#[case::remote_reactor_with_io(2, 0, true, Some(FindingKind::NumaMisplacement))]
fn numa_cases(
    #[case] nodes: u32,
    #[case] core: u32,
    #[case] io: bool,
    #[case] want: Option<FindingKind>,
) {
    let t = topo(nodes);
    let mut r = reactor();
    r.core = core;
    r.node = t.node_of_cpu(core);
    r.allowed_cpus = vec![core];
    r.last_cpu = Some(core);
    if !io {
        r.completions = 0;
        r.iops = 0.0;
        r.active_qpairs = 0;
        r.busy_ratio = 0.0;
        r.cpu_ratio = Some(0.01); // sleeping, so the idle detector stays out of it
    }
    let q = if io {
        vec![qpair(16.0, 200_000.0)]
    } else {
        vec![]
    };
    let out = run(&window(r, q, vec![]), &info("ens1f0"), &t);
    assert_eq!(
        kinds(&out),
        want.into_iter().collect::<Vec<_>>(),
        "{out:#?}"
    );
    if let Some(f) = out.first() {
        assert!(
            f.summary.contains("2-3"),
            "names the NIC node's cores: {}",
            f.summary
        );
    }
}

#[rstest]
#[case::just_under_saturation(0.89, 0, 0.0, 0, false)]
#[case::saturated(0.92, 0, 0.0, 0, true)]
#[case::qdisc_drops_at_moderate_load(0.6, 3, 0.0, 0, true)]
#[case::throttled_with_backlog(0.7, 0, 500.0, 65_536, true)]
#[case::throttle_bursts_on_a_light_link(0.3, 0, 500.0, 65_536, false)]
fn link_cases(
    #[case] util: f64,
    #[case] drops: u64,
    #[case] overlimits: f64,
    #[case] backlog: u64,
    #[case] raised: bool,
) {
    let w = window(
        reactor(),
        vec![qpair(16.0, 200_000.0)],
        vec![link(util, drops, overlimits, backlog)],
    );
    let out = run(&w, &info("ens1f0"), &topo(1));
    assert_eq!(
        kinds(&out).contains(&FindingKind::LinkSaturation),
        raised,
        "{out:#?}"
    );
}

#[test]
fn loopback_without_a_rate_is_never_saturated() {
    let lo = NetdevWindow {
        name: "lo".into(),
        tx_bytes_per_s: 5e9,
        rx_bytes_per_s: 5e9,
        ..NetdevWindow::default()
    };
    let out = run(
        &window(reactor(), vec![qpair(16.0, 200_000.0)], vec![lo]),
        &info("lo"),
        &topo(1),
    );
    assert!(out.is_empty(), "{out:#?}");
}

#[rstest]
#[case::scheduler_noise(0.04, 20.0, None)]
#[case::five_percent_stolen(0.06, 20.0, Some(Severity::Warning))]
#[case::a_third_stolen(0.33, 250.0, Some(Severity::Critical))]
// A non-isolated core's background: 1 % of the time, 150 switches/s: an info note.
#[case::many_short_preemptions(0.01, 150.0, Some(Severity::Info))]
#[case::background_of_kworkers(0.006, 400.0, Some(Severity::Info))]
fn preemption_cases(#[case] rq: f64, #[case] inv: f64, #[case] want: Option<Severity>) {
    let mut r = reactor();
    r.runqueue_wait_ratio = Some(rq);
    r.involuntary_switches_per_s = Some(inv);
    let out = run(
        &window(r, vec![qpair(16.0, 200_000.0)], vec![]),
        &info("lo"),
        &topo(1),
    );
    let got = out
        .iter()
        .find(|f| f.kind == FindingKind::ReactorPreemption)
        .map(|f| f.severity);
    assert_eq!(got, want, "{out:#?}");
}

/// The agent's own slices on the reactor's core are its cost: a run-queue wait that is mostly the
/// agent is background (info), never a warning blaming the machine.
#[test]
fn the_agents_own_preemptions_are_not_the_machines_fault() {
    let mut r = reactor();
    r.runqueue_wait_ratio = Some(0.06);
    r.involuntary_switches_per_s = Some(400.0);
    r.agent_ratio = Some(0.05);
    let out = run(
        &window(r.clone(), vec![qpair(16.0, 200_000.0)], vec![]),
        &info("lo"),
        &topo(1),
    );
    let f = out
        .iter()
        .find(|f| f.kind == FindingKind::ReactorPreemption)
        .expect("the switches are still reported");
    assert_eq!(f.severity, Severity::Info, "{f:#?}");
    assert!(
        f.evidence
            .iter()
            .any(|e| e.what.starts_with("agent's own share")),
        "{f:#?}"
    );
    r.agent_ratio = None;
    let out = run(
        &window(r, vec![qpair(16.0, 200_000.0)], vec![]),
        &info("lo"),
        &topo(1),
    );
    assert!(
        out.iter()
            .any(|f| f.kind == FindingKind::ReactorPreemption && f.severity == Severity::Warning),
        "the same wait by another task is a warning: {out:#?}"
    );
}

#[rstest]
#[case::pinned(vec![0], Some(0), false)]
#[case::unknown_affinity(vec![], None, false)]
#[case::moved_once(vec![0], Some(1), true)]
#[case::unpinned(vec![0, 1], Some(0), true)]
fn migration_cases(
    #[case] allowed: Vec<u32>,
    #[case] migrations: Option<u64>,
    #[case] raised: bool,
) {
    let mut r = reactor();
    r.allowed_cpus = allowed;
    r.migrations = migrations;
    let out = run(
        &window(r, vec![qpair(16.0, 200_000.0)], vec![]),
        &info("lo"),
        &topo(1),
    );
    assert_eq!(
        kinds(&out).contains(&FindingKind::ReactorMigration),
        raised,
        "{out:#?}"
    );
}

#[rstest]
#[case::no_kernel_data(None, false)]
// Budget: 100K polls × (1 qpair + 2) = 300K/s; 200K IOPS.
#[case::within_the_transport_budget(Some(300_000.0), false)]
#[case::a_third_of_a_call_per_io_over(Some(366_000.0), false)]
#[case::one_call_per_io_over(Some(500_000.0), true)]
fn syscall_cases(#[case] calls: Option<f64>, #[case] raised: bool) {
    let mut r = reactor();
    r.syscalls_per_s = calls;
    let out = run(
        &window(r, vec![qpair(16.0, 200_000.0)], vec![]),
        &info("lo"),
        &topo(1),
    );
    assert_eq!(
        kinds(&out).contains(&FindingKind::FastPathSyscalls),
        raised,
        "{out:#?}"
    );
}

#[rstest]
#[case::sleeping(0.0, 0.02, 0.0, false)]
#[case::spinning_for_nothing(0.01, 1.0, 0.0, true)]
#[case::spinning_while_sharing_its_core(0.01, 0.5, 0.45, true)]
#[case::qd1_load_is_not_idle(0.2, 1.0, 0.0, false)]
fn idle_cases(#[case] busy: f64, #[case] cpu: f64, #[case] rq: f64, #[case] raised: bool) {
    let mut r = reactor();
    r.busy_ratio = busy;
    r.cpu_ratio = Some(cpu);
    r.runqueue_wait_ratio = Some(rq);
    r.iops = busy * 1e6;
    let out = run(&window(r, vec![], vec![]), &info("lo"), &topo(1));
    assert_eq!(
        kinds(&out).contains(&FindingKind::IdlePollingBurn),
        raised,
        "{out:#?}"
    );
}

#[test]
fn a_stalled_reactor_is_critical_and_nothing_else() {
    let mut r = reactor();
    r.stalled = true;
    r.busy_ratio = 0.0;
    r.completions = 0;
    r.iops = 0.0;
    r.polls_per_s = 0.0;
    let mut q = qpair(0.0, 0.0);
    q.outstanding = 32;
    let out = run(&window(r, vec![q], vec![]), &info("lo"), &topo(1));
    assert_eq!(kinds(&out), vec![FindingKind::ReactorStalled], "{out:#?}");
    assert_eq!(out[0].severity, Severity::Critical);
    assert!(out[0].summary.contains("32"), "{}", out[0].summary);
}

// Issue-12 sweep figures (QD1 116K, QD2 195K, QD4 308K at 67-95 % busy; QD32 821K saturated):
// depth at the initiator, IOPS, reactor busy, time at the target (µs).
#[rstest]
#[case::qd1_closed_loop(1, 116_000.0, 0.67, 3, true)]
#[case::qd2_reactor_looks_busy(2, 195_000.0, 0.88, 4, true)]
#[case::qd4_reactor_looks_busy(4, 308_000.0, 0.95, 4, true)]
#[case::qd32_saturated(32, 821_000.0, 1.0, 8, false)]
#[case::qd2_but_requests_wait_at_the_target(2, 50_000.0, 0.3, 36, false)]
fn initiator_limited_cases(
    #[case] depth: u64,
    #[case] iops: f64,
    #[case] busy: f64,
    #[case] at_target_us: u64,
    #[case] raised: bool,
) {
    let mut r = reactor();
    r.busy_ratio = busy;
    r.iops = iops;
    r.completions = iops as u64;
    r.ns_per_io = Some(busy * 1e9 / iops);
    let mut q = qpair(iops * at_target_us as f64 / 1e6, iops);
    q.high_water = depth;
    q.latency = Hist::empty();
    q.latency.record(at_target_us * 1000);
    r.avg_outstanding = q.avg_outstanding;
    let out = run(&window(r, vec![q], vec![]), &info("lo"), &topo(1));
    assert_eq!(
        kinds(&out).contains(&FindingKind::InitiatorLimited),
        raised,
        "{out:#?}"
    );
    if let Some(f) = out.iter().find(|f| f.kind == FindingKind::InitiatorLimited) {
        let cost = f.cost.as_ref().expect("a starved qpair's cost");
        assert!(
            cost.iops_share.is_some_and(|s| s > 0.2),
            "IOPS lost: {cost:?}"
        );
        assert_eq!(
            f.severity,
            cost.severity(),
            "severity follows from the cost"
        );
    }
}

#[test]
fn a_light_application_load_is_not_a_depth_limit() {
    // 500 IOPS, 0.005 in flight at the target: an application with little to do.
    let mut r = reactor();
    r.busy_ratio = 0.01;
    r.iops = 1_000.0;
    r.completions = 1_000;
    r.ns_per_io = Some(10_000.0);
    let mut q = qpair(0.005, 1_000.0);
    q.high_water = 1;
    let out = run(&window(r, vec![q], vec![]), &info("lo"), &topo(1));
    assert!(
        !kinds(&out).contains(&FindingKind::InitiatorLimited),
        "{out:#?}"
    );
}

#[test]
fn a_full_link_is_not_blamed_on_the_initiator() {
    let mut r = reactor();
    r.busy_ratio = 0.1;
    let w = window(r, vec![qpair(1.0, 29_000.0)], vec![link(0.97, 0, 0.0, 0)]);
    let out = run(&w, &info("ens1f0"), &topo(1));
    assert_eq!(kinds(&out), vec![FindingKind::LinkSaturation], "{out:#?}");
}

#[rstest]
#[case::balanced(0.95, 400_000.0, 0.9, 380_000.0, false)]
#[case::one_saturated_one_light(0.97, 420_000.0, 0.3, 120_000.0, true)]
#[case::both_light(0.5, 200_000.0, 0.1, 20_000.0, false)]
fn imbalance_cases(
    #[case] busy0: f64,
    #[case] iops0: f64,
    #[case] busy1: f64,
    #[case] iops1: f64,
    #[case] raised: bool,
) {
    let mut a = reactor();
    a.busy_ratio = busy0;
    a.iops = iops0;
    let mut b = reactor();
    b.index = 1;
    b.core = 1;
    b.allowed_cpus = vec![1];
    b.busy_ratio = busy1;
    b.iops = iops1;
    let mut w = window(a, vec![], vec![]);
    w.reactors.push(b);
    let out = run(&w, &info("lo"), &topo(1));
    assert_eq!(
        kinds(&out).contains(&FindingKind::ReactorImbalance),
        raised,
        "{out:#?}"
    );
}

#[rstest]
#[case::rare_waits(100, false)]
#[case::two_percent_wait(4_000, true)]
fn buffer_cases(#[case] waits: u64, #[case] raised: bool) {
    let mut r = reactor();
    r.buffer_waits = waits;
    let out = run(
        &window(r, vec![qpair(16.0, 200_000.0)], vec![]),
        &info("lo"),
        &topo(1),
    );
    assert_eq!(
        kinds(&out).contains(&FindingKind::BufferStarvation),
        raised,
        "{out:#?}"
    );
}

/// An nvme-vfio namespace names its controller by PCI address (a device owned by vfio-pci has no
/// block device): a loaded reactor on node 0 serving that node-1 controller over `lo` (no NIC
/// node to judge) is misplaced by the device alone; on node 1 it is not.
#[rstest]
#[case::reactor_away_from_the_vfio_device(0, true)]
#[case::reactor_on_the_vfio_device_node(2, false)]
fn numa_vfio_device_by_pci_address(#[case] core: u32, #[case] misplaced: bool) {
    let mut t = topo(2);
    t.pci.push(PciDevice {
        bdf: "0000:82:00.0".into(),
        class: PciDevice::STORAGE.into(),
        node: Some(1),
        ..PciDevice::default()
    });
    let mut info = info("lo");
    info.namespaces = vec![agent_core::sample::NamespaceInfo {
        nqn: "nqn.2026-11.io.ringside:nvme0".into(),
        nsid: 1,
        backend: agent_core::sample::BackendKind::NvmeVfio,
        device: Some("0000:82:00.0".into()),
    }];
    let mut r = reactor();
    r.core = core;
    r.node = t.node_of_cpu(core);
    r.allowed_cpus = vec![core];
    r.last_cpu = Some(core);
    let out = run(&window(r, vec![qpair(16.0, 200_000.0)], vec![]), &info, &t);
    let numa: Vec<&Finding> = out
        .iter()
        .filter(|f| f.kind == FindingKind::NumaMisplacement)
        .collect();
    assert_eq!(numa.len(), usize::from(misplaced), "{out:#?}");
    if let Some(f) = numa.first() {
        assert!(
            f.summary.contains("0000:82:00.0") && f.summary.contains("node 1"),
            "names the device and its node: {}",
            f.summary
        );
    }
}
