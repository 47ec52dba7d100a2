//! The SPDK detectors on synthetic windows: each fires on its fault with the numbers in its
//! evidence, and stays silent on the healthy counterpart.

use agent_core::detect::spdk_buffers::SpdkBuffers;
use agent_core::detect::spdk_cpu::SpdkCpu;
use agent_core::detect::spdk_idle::SpdkIdle;
use agent_core::detect::spdk_poll_groups::SpdkPollGroups;
use agent_core::detect::{Context, Detector};
use agent_core::finding::{FindingKind, Severity, Subject};
use agent_core::spdk::{
    PollGroupWindow, PollerWindow, SpdkReactorWindow, SpdkWindow, TraceProfile, TransportSettings,
};
use agent_core::window::ReactorWindow;
use agent_core::{Finding, TargetInfo, Topology, Window};

fn run(d: &mut dyn Detector, w: &Window) -> Vec<Finding> {
    let info = TargetInfo::default();
    let topo = Topology::default();
    let ctx = Context {
        info: &info,
        topology: &topo,
        history: &[],
    };
    let mut out = Vec::new();
    d.observe(w, &ctx, &mut out);
    out
}

fn window(spdk: SpdkWindow) -> Window {
    Window {
        start_ns: 0,
        end_ns: 1_000_000_000,
        reactors: (0..2)
            .map(|i| ReactorWindow {
                index: i,
                core: i,
                completions: 100_000,
                iops: 100_000.0,
                busy_ratio: 0.5,
                ns_per_io: Some(5_000.0),
                ..ReactorWindow::default()
            })
            .collect(),
        spdk: Some(spdk),
        ..Window::default()
    }
}

fn group(name: &str, lcore: u32, qpairs: u32, busy: f64) -> PollGroupWindow {
    PollGroupWindow {
        name: name.into(),
        lcore,
        current_io_qpairs: qpairs,
        iops: 10_000.0 * f64::from(qpairs),
        busy_ratio: Some(busy),
    }
}

#[test]
fn qpairs_piled_on_one_saturated_poll_group_are_an_imbalance_and_stale_counts_are_said() {
    let w = window(SpdkWindow {
        poll_groups: vec![group("pg0", 0, 5, 0.97), group("pg1", 1, 1, 0.1)],
        listed_qpairs: vec![("pg0".into(), 5), ("pg1".into(), 1)],
        ..SpdkWindow::default()
    });
    let f = run(&mut SpdkPollGroups, &w);
    let imb = f
        .iter()
        .find(|f| f.kind == FindingKind::ReactorImbalance)
        .expect("imbalance");
    // Cost: moving 2 of pg0's 5 qpairs frees 2/5 of its 50K IOPS (20K), within pg1's headroom
    // (90 % of 100K): 20K more on 60K.
    let cost = imb.cost.as_ref().expect("an imbalance's cost");
    assert!(
        (cost.iops_share.unwrap() - 20.0 / 80.0).abs() < 1e-9,
        "{cost:?}"
    );
    assert_eq!(imb.severity, Severity::Critical);
    assert_eq!(imb.severity, cost.severity());
    assert_eq!(imb.subject, Subject::Reactor { index: 0 });
    // The same spread while pg0 still has headroom costs nothing yet.
    let w = window(SpdkWindow {
        poll_groups: vec![group("pg0", 0, 5, 0.6), group("pg1", 1, 1, 0.1)],
        listed_qpairs: vec![("pg0".into(), 5), ("pg1".into(), 1)],
        ..SpdkWindow::default()
    });
    let f = run(&mut SpdkPollGroups, &w);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].cost.as_ref().unwrap().share(), 0.0);
    assert_eq!(f[0].severity, Severity::Info);
    // pg1 nearly full too: the gain is bounded by its headroom (5 % of 100K on 60K).
    let w = window(SpdkWindow {
        poll_groups: vec![group("pg0", 0, 5, 0.97), group("pg1", 1, 1, 0.95)],
        listed_qpairs: vec![("pg0".into(), 5), ("pg1".into(), 1)],
        ..SpdkWindow::default()
    });
    let f = run(&mut SpdkPollGroups, &w);
    let share = f[0].cost.as_ref().unwrap().iops_share.unwrap();
    let headroom = 10_000.0 / 0.95 * 0.05;
    assert!(
        (share - headroom / (60_000.0 + headroom)).abs() < 1e-9,
        "{share}"
    );
    assert_eq!(f[0].severity, Severity::Info);
    assert!(imb.summary.contains("spread 4"), "{}", imb.summary);

    // Even spread: nothing. A group that still counts qpairs that left: an info line.
    let w = window(SpdkWindow {
        poll_groups: vec![group("pg0", 0, 3, 0.5), group("pg1", 1, 2, 0.5)],
        listed_qpairs: vec![("pg0".into(), 1), ("pg1".into(), 2)],
        ..SpdkWindow::default()
    });
    let f = run(&mut SpdkPollGroups, &w);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].severity, Severity::Info);
    assert_eq!(f[0].cost.as_ref().map(|c| c.share()), Some(0.0));
    assert!(f[0].summary.contains("2 stale"), "{}", f[0].summary);
}

#[test]
fn caches_larger_than_the_pool_or_traced_buffer_waits_give_the_arithmetic_and_the_setting() {
    let t = TransportSettings {
        num_shared_buffers: 200,
        buf_cache_size: 64,
        io_unit_size: 131_072,
        max_queue_depth: 128,
    };
    let groups = vec![
        group("pg0", 0, 1, 0.5),
        group("pg1", 1, 1, 0.5),
        group("pg2", 0, 1, 0.5),
        group("pg3", 1, 1, 0.5),
    ];
    let w = window(SpdkWindow {
        poll_groups: groups.clone(),
        transport: Some(t.clone()),
        ..SpdkWindow::default()
    });
    let f = run(&mut SpdkBuffers, &w);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].kind, FindingKind::BufferStarvation);
    // 64 × 4 = 256 cached of 200; 4 qpairs × 128 deep = 512 in flight: 768 needed.
    assert!(
        f[0].summary.contains("= 256 (headroom -56)"),
        "{}",
        f[0].summary
    );
    assert!(f[0].summary.contains("-n 768 -b 64"), "{}", f[0].summary);
    // No trace to count waits: the cost is not measured and the rule (warning) is said.
    let c = f[0].cost.as_ref().expect("cost");
    assert!(
        c.iops_share.is_none() && c.basis.starts_with("not measured"),
        "{c:?}"
    );
    assert_eq!(f[0].severity, Severity::Warning);
    // The same pool with a trace in which nothing waited: measured free, info.
    let traced = window(SpdkWindow {
        poll_groups: groups.clone(),
        transport: Some(t.clone()),
        trace: Some(TraceProfile {
            requests: 1000,
            covered_ns: 10_000_000,
            ..TraceProfile::default()
        }),
        ..SpdkWindow::default()
    });
    let f = run(&mut SpdkBuffers, &traced);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].cost.as_ref().map(|c| c.share()), Some(0.0));
    assert_eq!(f[0].severity, Severity::Info);

    // SPDK's default cache and no waits: nothing. The same with 5 % of requests waiting: found.
    let auto = TransportSettings {
        buf_cache_size: u64::from(u32::MAX),
        num_shared_buffers: 4095,
        ..t
    };
    let mut spdk = SpdkWindow {
        poll_groups: groups,
        transport: Some(auto),
        trace: Some(TraceProfile {
            requests: 1000,
            buffer_waits: 0,
            covered_ns: 10_000_000,
            ..TraceProfile::default()
        }),
        ..SpdkWindow::default()
    };
    assert!(run(&mut SpdkBuffers, &window(spdk.clone())).is_empty());
    if let Some(p) = spdk.trace.as_mut() {
        p.buffer_waits = 50;
    }
    let f = run(&mut SpdkBuffers, &window(spdk));
    assert_eq!(f.len(), 1);
    assert!(
        f[0].summary.contains("5.0 % of the traced requests waited"),
        "{}",
        f[0].summary
    );
    assert_eq!(f[0].severity, Severity::Warning, "waits, untimed");
    assert!(
        f[0].cost.as_ref().unwrap().basis.contains("does not time"),
        "{:?}",
        f[0].cost
    );
}

#[test]
fn an_interrupt_mode_reactor_that_spins_names_the_poller_keeping_it_awake() {
    let reactor = |in_interrupt| SpdkReactorWindow {
        lcore: 1,
        in_interrupt,
        busy_ratio: 0.01,
        accounted_ratio: 1.0,
        proc_cpu_ratio: Some(0.98),
        threads: vec!["pg1".into()],
    };
    let pollers = vec![
        PollerWindow {
            thread: "pg1".into(),
            name: "nvmf_poll_group_poll".into(),
            runs_per_s: 900_000.0,
            busy_per_s: 3.0,
        },
        PollerWindow {
            thread: "other".into(),
            name: "elsewhere".into(),
            runs_per_s: 2_000_000.0,
            busy_per_s: 0.0,
        },
    ];
    let w = window(SpdkWindow {
        reactors: vec![reactor(true)],
        pollers: pollers.clone(),
        ..SpdkWindow::default()
    });
    let f = run(&mut SpdkIdle, &w);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].kind, FindingKind::IdlePollingBurn);
    assert!(
        f[0].summary
            .contains("poller nvmf_poll_group_poll on thread pg1"),
        "{}",
        f[0].summary
    );
    let c = f[0].cost.as_ref().expect("cost");
    assert_eq!((c.iops_share, c.latency_share), (Some(0.0), Some(0.0)));
    assert!(c.basis.contains("97 % of a core"), "{}", c.basis);
    assert_eq!(f[0].severity, Severity::Info);
    // In poll mode it spins by design: not this detector's business.
    let w = window(SpdkWindow {
        reactors: vec![reactor(false)],
        pollers,
        ..SpdkWindow::default()
    });
    assert!(run(&mut SpdkIdle, &w).is_empty());
}

#[test]
fn busy_ticks_without_cpu_time_and_trace_stalls_are_preemption_with_their_confidence() {
    let reactor = |cpu| SpdkReactorWindow {
        lcore: 0,
        in_interrupt: false,
        busy_ratio: 0.8,
        accounted_ratio: 1.0,
        proc_cpu_ratio: Some(cpu),
        threads: vec![],
    };
    let f = run(
        &mut SpdkCpu,
        &window(SpdkWindow {
            reactors: vec![reactor(0.5)],
            ..SpdkWindow::default()
        }),
    );
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].kind, FindingKind::ReactorPreemption);
    // Off CPU half the window on a reactor 80 % busy: 40 % of its IOPS.
    let c = f[0].cost.as_ref().expect("cost");
    assert!((c.iops_share.unwrap() - 0.4).abs() < 1e-9, "{c:?}");
    assert_eq!(f[0].severity, Severity::Critical);
    assert!(f[0].summary.contains("only 50 %"), "{}", f[0].summary);
    // 20 % off CPU on the same reactor: 16 %, a warning.
    let f = run(
        &mut SpdkCpu,
        &window(SpdkWindow {
            reactors: vec![reactor(0.8)],
            ..SpdkWindow::default()
        }),
    );
    assert!((f[0].cost.as_ref().unwrap().share() - 0.16).abs() < 1e-9);
    assert_eq!(f[0].severity, Severity::Warning);
    // /proc agrees with SPDK: nothing.
    let agree = window(SpdkWindow {
        reactors: vec![reactor(0.97)],
        ..SpdkWindow::default()
    });
    assert!(run(&mut SpdkCpu, &agree).is_empty());

    // A live trace sample: 3 ms of 10 ms stalled with requests ready on lcore 1.
    let stalls = window(SpdkWindow {
        reactors: vec![reactor(0.97)],
        trace: Some(TraceProfile {
            covered_ns: 10_000_000,
            requests: 500,
            stall_ns: 3_000_000,
            longest_stall: Some((3_000_000, 7)),
            stall_lcore: Some(1),
            ..TraceProfile::default()
        }),
        ..SpdkWindow::default()
    });
    let f = run(&mut SpdkCpu, &stalls);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].subject, Subject::Reactor { index: 1 });
    // 30 % of the traced time held back.
    let c = f[0].cost.as_ref().expect("cost");
    assert!((c.iops_share.unwrap() - 0.3).abs() < 1e-9, "{c:?}");
    assert!(c.basis.contains("sampled"), "{}", c.basis);
    assert_eq!(f[0].severity, Severity::Critical);
    assert!(
        f[0].confidence <= 0.6 && f[0].confidence > 0.0,
        "{}",
        f[0].confidence
    );
    assert!(f[0].summary.contains("7 request(s)"), "{}", f[0].summary);
}
