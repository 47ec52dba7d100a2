//! Property tests: on arbitrary windows (any floats, NaN and infinities included, any counts,
//! any topology) no detector panics, every evidence value is finite, every confidence is in
//! 0..=1, and the recommender neither panics nor predicts a non-finite IOPS.

use agent_core::detect::{default_detectors, Context};
use agent_core::finding::{Finding, FindingKind, Severity, Subject};
use agent_core::hist::Hist;
use agent_core::recommend::recommend;
use agent_core::sample::{
    ListenerInfo, MemorySample, NamespaceInfo, ReactorInfo, TargetInfo, TargetSettings,
};
use agent_core::topology::{CpuInfo, NumaNodeInfo, PciDevice, Topology};
use agent_core::window::{
    DeviceWindow, NetdevWindow, QpairWindow, RdmaPortWindow, RdmaReactorWindow, ReactorWindow,
    TotalWindow,
};
use agent_core::Window;
use proptest::prelude::*;

fn f() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => 0.0..1.0f64,
        3 => 0.0..1e7f64,
        1 => any::<f64>(),
        1 => Just(0.0),
        1 => Just(f64::NAN),
    ]
}

fn hist() -> impl Strategy<Value = Hist> {
    prop::collection::vec((1u64..10_000_000, 1u64..10_000), 0..4).prop_map(|v| {
        let mut h = Hist::empty();
        for (ns, n) in v {
            for _ in 0..n.min(50) {
                h.record(ns);
            }
        }
        h
    })
}

fn reactor() -> impl Strategy<Value = ReactorWindow> {
    (
        (
            0u32..3,
            0u32..6,
            prop::option::of(0u32..3),
            f(),
            f(),
            any::<u64>(),
            f(),
        ),
        (
            prop::option::of(f()),
            f(),
            hist(),
            any::<u64>(),
            any::<u64>(),
            any::<bool>(),
        ),
        (
            f(),
            0u32..5,
            prop::option::of(f()),
            prop::option::of(f()),
            prop::option::of(f()),
        ),
        (
            prop::option::of(0u64..100),
            prop::collection::vec(0u32..8, 0..3),
            prop::option::of(f()),
            prop::option::of(f()),
            prop::option::of(f()),
            prop::collection::vec(
                (
                    prop::sample::select(agent_core::sample::Stage::ALL.to_vec()),
                    hist(),
                ),
                0..3,
            ),
        ),
    )
        .prop_map(
            |(
                (index, core, node, iops, busy, completions, polls),
                (ns_per_io, _x, latency, buffer_waits, hw, stalled),
                (avg_out, active, cpu, rq, inv),
                (migrations, allowed, preempted, irq, syscalls, stages),
            )| ReactorWindow {
                index,
                core,
                node,
                iops,
                completions: completions % 10_000_000,
                busy_ratio: busy,
                ns_per_io,
                polls_per_s: polls,
                latency,
                stages,
                buffer_waits: buffer_waits % 1_000_000,
                backend_inflight: hw % 1000,
                backend_inflight_high_water: hw % 1000,
                stalled,
                avg_outstanding: avg_out,
                active_qpairs: active,
                cpu_ratio: cpu,
                runqueue_wait_ratio: rq,
                involuntary_switches_per_s: inv,
                migrations,
                allowed_cpus: allowed,
                preempted_ratio: preempted,
                preemptions: Some(3),
                top_intruder: Some((7, "hog".into())),
                irq_ratio: irq,
                syscalls_per_s: syscalls,
                ..ReactorWindow::default()
            },
        )
}

fn qpair() -> impl Strategy<Value = QpairWindow> {
    (
        0u32..3,
        0u16..4,
        f(),
        0u64..2_000_000,
        f(),
        0u64..300,
        0u64..300,
        prop::option::of(0u32..512),
        hist(),
    )
        .prop_map(
            |(reactor, slot, iops, completions, avg, out, hw, qs, latency)| QpairWindow {
                reactor,
                slot,
                iops,
                completions,
                avg_outstanding: avg,
                outstanding: out,
                high_water: hw,
                queue_size: qs,
                latency,
                ..QpairWindow::default()
            },
        )
}

fn netdev() -> impl Strategy<Value = NetdevWindow> {
    (
        prop_oneof![Just("lo".to_string()), Just("ens1f0".to_string())],
        f(),
        f(),
        prop::option::of(f()),
        prop::option::of(f()),
        any::<u64>(),
        0u64..100,
        f(),
        0u64..100,
    )
        .prop_map(
            |(name, rx, tx, cap, util, backlog, drops, over, dd)| NetdevWindow {
                name,
                rx_bytes_per_s: rx,
                tx_bytes_per_s: tx,
                capacity_bytes_per_s: cap,
                utilisation: util,
                qdisc_backlog_bytes: backlog,
                qdisc_drops: drops,
                qdisc_overlimits_per_s: over,
                drops: dd,
                speed_mbps: Some(10_000),
                shaped_rate_bytes: Some(125_000_000),
                ..NetdevWindow::default()
            },
        )
}

fn device() -> impl Strategy<Value = DeviceWindow> {
    (
        (f(), prop::option::of(f()), f(), 0u64..100),
        prop::option::of((f(), prop::option::of(f()), prop::option::of(f()))),
    )
        .prop_map(|((iops, lat, util, inf), kernel)| DeviceWindow {
            name: "nvme0n1".into(),
            iops,
            bytes_per_s: iops,
            avg_latency_us: lat,
            utilisation: util,
            in_flight: inf,
            kernel: kernel.map(|(rate, p50, p99)| agent_core::window::KernelDeviceWindow {
                requests_per_s: rate,
                avg_us: p50,
                p50_us: p50,
                p99_us: p99,
                errors: 0,
            }),
        })
}

fn rdma_reactor() -> impl Strategy<Value = RdmaReactorWindow> {
    (
        (any::<u64>(), any::<u64>(), any::<u64>()),
        (prop::option::of(f()), prop::option::of(f())),
        (
            any::<u64>(),
            0u64..1024,
            0u64..1024,
            any::<bool>(),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (polls, completions, doorbells),
                (per_poll, per_db),
                (pending, depth, low, dry, now),
            )| {
                RdmaReactorWindow {
                    cq_polls: polls,
                    completions,
                    doorbells,
                    completions_per_nonempty_poll: per_poll,
                    completions_per_poll: per_poll,
                    wrs_per_doorbell: per_db,
                    pending_wrs: pending,
                    srq_depth: depth,
                    srq_low_water: low,
                    srq_size: depth.max(low),
                    srq_ran_dry: dry,
                    srq_ran_dry_in_window: now,
                    ..RdmaReactorWindow::default()
                }
            },
        )
}

fn rdma_port() -> impl Strategy<Value = RdmaPortWindow> {
    (
        (
            any::<bool>(),
            prop::option::of(any::<u64>()),
            prop::option::of(f()),
        ),
        (
            prop::option::of(f()),
            prop::option::of(f()),
            prop::option::of(f()),
        ),
        (
            prop::option::of(any::<u64>()),
            prop::option::of(any::<u64>()),
            prop::collection::btree_map("[a-z_]{1,12}", any::<u64>(), 0..4),
        ),
    )
        .prop_map(
            |((soft, rate, cap), (tx, rx, util), (discards, wait, retransmits))| RdmaPortWindow {
                device: "mlx5_0".into(),
                port: 1,
                soft,
                netdev: Some("ens1f0".into()),
                rate_bits_per_s: rate,
                capacity_bytes_per_s: cap,
                tx_bytes_per_s: tx,
                rx_bytes_per_s: rx,
                utilisation: util,
                xmit_discards: discards,
                xmit_wait: wait,
                retransmits,
                ..RdmaPortWindow::default()
            },
        )
}

fn window() -> impl Strategy<Value = Window> {
    (
        0u64..10_000_000_000,
        0u64..3_000_000_000,
        prop::collection::vec(reactor(), 0..4),
        prop::collection::vec(qpair(), 0..5),
        prop::collection::vec(netdev(), 0..3),
        prop::collection::vec(device(), 0..2),
        prop::option::of(prop::collection::vec((0u32..3, any::<u64>()), 0..3)),
        prop::option::of(0u64..100),
        (f(), f(), hist()),
        prop::collection::vec(rdma_port(), 0..3),
        prop::collection::vec(prop::option::of(rdma_reactor()), 4),
    )
        .prop_map(
            |(
                start,
                len,
                mut reactors,
                qpairs,
                netdevs,
                devices,
                mem,
                retx,
                (ti, ta, tl),
                rdma_ports,
                rdma,
            )| Window {
                start_ns: start,
                end_ns: start + len,
                reactors: {
                    for (r, x) in reactors.iter_mut().zip(rdma) {
                        r.rdma = x;
                    }
                    reactors
                },
                qpairs,
                netdevs,
                devices,
                rdma_ports,
                memory: mem.map(|b| MemorySample {
                    buffer_bytes_by_node: b.into_iter().map(|(n, v)| (n, v >> 8)).collect(),
                    ..MemorySample::default()
                }),
                tcp_retransmits: retx,
                requests: None,
                total: TotalWindow {
                    iops: ti,
                    avg_outstanding: ta,
                    latency: tl,
                    ..TotalWindow::default()
                },
                spdk: None,
            },
        )
}

fn topology(nodes: u32) -> Topology {
    Topology {
        source: "prop".into(),
        nodes: (0..nodes)
            .map(|n| NumaNodeInfo {
                os_index: n,
                cpus: (0..8).filter(|c| c % nodes == n).collect(),
                ..NumaNodeInfo::default()
            })
            .collect(),
        cpus: (0..8)
            .map(|c| CpuInfo {
                os_index: c,
                core: c,
                package: c % nodes,
                node: Some(c % nodes),
            })
            .collect(),
        pci: vec![
            PciDevice {
                bdf: "0000:81:00.0".into(),
                class: "network".into(),
                node: Some(nodes - 1),
                netdevs: vec!["ens1f0".into()],
                ..PciDevice::default()
            },
            PciDevice {
                bdf: "0000:82:00.0".into(),
                class: "storage".into(),
                node: Some(0),
                block_devices: vec!["nvme0n1".into()],
                ..PciDevice::default()
            },
        ],
    }
}

fn info() -> TargetInfo {
    TargetInfo {
        reactors: (0..3)
            .map(|i| ReactorInfo {
                index: i,
                core: i,
                tid: None,
            })
            .collect(),
        listeners: vec![ListenerInfo {
            transport: agent_core::sample::Transport::Tcp,
            address: "10.0.0.1:4420".into(),
            netdev: Some("ens1f0".into()),
        }],
        namespaces: vec![NamespaceInfo {
            nqn: "nqn.x".into(),
            nsid: 1,
            backend: agent_core::sample::BackendKind::Uring,
            device: Some("nvme0n1".into()),
        }],
        settings: TargetSettings {
            cores: vec![0, 1, 2],
            idle: Some(agent_core::sample::IdlePolicy::Poll),
            placement: Some(agent_core::sample::PlacementPolicy::RoundRobin),
            max_queue_depth: Some(64),
            max_io_queues: Some(8),
        },
        ..TargetInfo::default()
    }
}

fn any_finding(kind: FindingKind) -> Finding {
    Finding {
        kind,
        severity: Severity::Warning,
        subject: match kind {
            FindingKind::InitiatorLimited => Subject::Qpair {
                reactor: 0,
                slot: 0,
            },
            FindingKind::ReactorImbalance => Subject::Target,
            _ => Subject::Reactor { index: 0 },
        },
        summary: "x".into(),
        evidence: Vec::new(),
        windows: 3,
        since_ns: 0,
        until_ns: 1,
        confidence: 0.9,
        cost: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn detectors_never_panic_and_never_report_nan(
        history in prop::collection::vec(window(), 0..4),
        w in window(),
        nodes in 1u32..3,
    ) {
        let topo = topology(nodes);
        let info = info();
        let ctx = Context { info: &info, topology: &topo, history: &history };
        let mut out = Vec::new();
        for mut d in default_detectors() {
            d.observe(&w, &ctx, &mut out);
        }
        for f in &out {
            prop_assert!(f.evidence.iter().all(|e| e.value.is_finite()), "{:?}", f);
            prop_assert!((0.0..=1.0).contains(&f.confidence), "{:?}", f);
            prop_assert!(!f.summary.is_empty());
            prop_assert!(!f.summary.contains("NaN"), "{}", f.summary);
        }
    }

    #[test]
    fn the_recommender_never_panics_and_predicts_finite_iops(
        windows in prop::collection::vec(window(), 0..5),
        nodes in 1u32..3,
        kinds in prop::collection::vec(prop::sample::select(FindingKind::ALL.to_vec()), 0..6),
    ) {
        let topo = topology(nodes);
        let findings: Vec<Finding> = kinds.into_iter().map(any_finding).collect();
        for r in recommend(&info(), &topo, &windows, &findings) {
            prop_assert!(r.expected_iops.is_none_or(|v| v.is_finite() && v >= 0.0), "{:?}", r);
            prop_assert!(!r.fragment.is_empty());
            if r.applies_to == "ringside-tgt" {
                prop_assert!(toml::from_str::<toml::Table>(&r.fragment).is_ok(), "{}", r.fragment);
            }
        }
    }
}

mod pipeline {
    //! The whole pipeline on arbitrary samples: a recording is input from a file, so no sequence
    //! of counters may make the analyzer panic (overflow, NaN, division by zero).
    use agent_core::sample::{
        KernelReactorSample, KernelSample, NetdevSample, QpairSample, RdmaPortSample,
        RdmaReactorSample, ReactorSample, Sample, ThreadSample,
    };
    use agent_core::{Analyzer, AnalyzerConfig};
    use proptest::prelude::*;

    /// Counters as a live target produces them (up to 2^60: centuries of ns).
    fn counter() -> impl Strategy<Value = u64> {
        prop_oneof![0u64..1_000_000_000_000, 0u64..(1 << 60), Just(0)]
    }

    /// Counters a corrupt or hand-edited recording may hold.
    fn hostile_counter() -> impl Strategy<Value = u64> {
        prop_oneof![counter(), Just(u64::MAX), (u64::MAX / 2)..u64::MAX]
    }

    fn sample() -> impl Strategy<Value = Sample> {
        sample_with(counter().boxed())
    }

    fn sample_with(counter: BoxedStrategy<u64>) -> impl Strategy<Value = Sample> {
        let counter = move || counter.clone();
        (
            0u64..20_000_000_000,
            prop::collection::vec(
                (
                    0u32..3,
                    counter(),
                    counter(),
                    counter(),
                    counter(),
                    counter(),
                    counter(),
                    counter(),
                ),
                0..3,
            ),
            (counter(), counter(), prop::option::of(0u64..100_000)),
            (counter(), counter(), counter(), counter()),
        )
            .prop_map(|(t, rs, (q1, q2, speed), (k1, k2, k3, k4))| Sample {
                t_ns: t,
                reactors: rs
                    .into_iter()
                    .map(|(index, a, b, c, d, e, f, g)| ReactorSample {
                        index,
                        polls: a,
                        busy_ns: b,
                        idle_ns: c,
                        cmds_read: d,
                        last_poll_age_ns: e,
                        buffer_waits: f,
                        qpairs: vec![QpairSample {
                            slot: 0,
                            completed: d,
                            outstanding: g,
                            high_water: g,
                            ..QpairSample::default()
                        }],
                        thread: Some(ThreadSample {
                            tid: 1,
                            run_ns: e,
                            runqueue_wait_ns: f,
                            involuntary_switches: g,
                            migrations: Some(a),
                            ..ThreadSample::default()
                        }),
                        rdma: Some(RdmaReactorSample {
                            cq_polls: a,
                            cq_polls_nonempty: b,
                            completions: c,
                            doorbells: d,
                            send_wrs: e,
                            recv_wrs: f,
                            srq_depth: g % 1024,
                            srq_low_water: g % 3,
                            srq_size: 512,
                            ..RdmaReactorSample::default()
                        }),
                        ..ReactorSample::default()
                    })
                    .collect(),
                netdevs: vec![NetdevSample {
                    name: "ens1f0".into(),
                    tx_bytes: q1,
                    rx_bytes: q2,
                    speed_mbps: speed,
                    shaped_rate_bytes: speed,
                    qdisc_drops: k4,
                    ..NetdevSample::default()
                }],
                kernel: Some(KernelSample {
                    reactors: vec![KernelReactorSample {
                        index: 0,
                        preempted_ns: k1,
                        syscalls: k2,
                        irq_ns: k3 / 2,
                        softirq_ns: k3 / 2,
                        ..KernelReactorSample::default()
                    }],
                    tcp_retransmits: k4,
                    ..KernelSample::default()
                }),
                rdma_ports: vec![RdmaPortSample {
                    device: "mlx5_0".into(),
                    port: 1,
                    soft: speed.is_some_and(|s| s % 2 == 0),
                    rate_bits_per_s: speed.map(|s| s * 1_000_000),
                    xmit_bytes: Some(q1),
                    rcv_bytes: Some(q2),
                    xmit_wait: Some(k1),
                    hw_counters: [("packet_seq_err".to_string(), k4)].into_iter().collect(),
                    ..RdmaPortSample::default()
                }],
                ..Sample::default()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn the_analyzer_never_panics_on_arbitrary_counters(
            mut samples in prop::collection::vec(sample(), 1..8),
            nodes in 1u32..3,
        ) {
            run(&mut samples, nodes)?;
        }

        // window.rs adds raw counters (`busy + idle`, `irq_ns + softirq_ns`, `rx_drops +
        // tx_drops`…) before subtracting, which overflows (a panic in debug builds) on counters
        // near u64::MAX; reported in /work/notes/requests-lead.md. Run it once that is fixed.
        #[test]
        fn the_analyzer_never_panics_on_hostile_counters(
            mut samples in prop::collection::vec(sample_with(hostile_counter().boxed()), 1..8),
            nodes in 1u32..3,
        ) {
            run(&mut samples, nodes)?;
        }
    }

    fn run(samples: &mut Vec<Sample>, nodes: u32) -> Result<(), TestCaseError> {
        // Time moves forward in a recording; the counters may do anything.
        samples.sort_by_key(|s| s.t_ns);
        let mut a = Analyzer::new(
            super::info(),
            super::topology(nodes),
            AnalyzerConfig::default(),
        );
        for s in samples.drain(..) {
            a.push(s);
        }
        for f in a.all_findings() {
            prop_assert!(f.evidence.iter().all(|e| e.value.is_finite()), "{:?}", f);
        }
        for r in a.recommendations() {
            prop_assert!(r.expected_iops.is_none_or(f64::is_finite));
        }
        Ok(())
    }
}
