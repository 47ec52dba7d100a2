//! Frames of `ringside top` rendered into ratatui's `TestBackend`, asserted on what a person
//! would read: rows, their order, the findings and their evidence, FROZEN, the waiting screen.
//!
//! The snapshots come from agent-core's own pipeline: synthetic counter samples (two reactors,
//! three qpairs, two netdevs, one NVMe device) pushed through an `Analyzer` with no detectors,
//! plus a hand-made finding and recommendation so the test does not depend on detector
//! thresholds that other work tunes.

use agent_core::finding::{Evidence, Finding, FindingKind, Recommendation, Setting, Severity};
use agent_core::sample::{
    DeviceSample, NetdevSample, QpairSample, ReactorInfo, ReactorSample, Sample, TargetInfo,
};
use agent_core::topology::{CpuInfo, NumaNodeInfo};
use agent_core::{Analyzer, AnalyzerConfig, Hist, Snapshot, Subject, Topology};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use tui::{buffer_lines, render, App, Key, View};

const SEC: u64 = 1_000_000_000;

fn info() -> TargetInfo {
    TargetInfo {
        name: "demo".into(),
        pid: 4242,
        reactors: vec![
            ReactorInfo {
                index: 0,
                core: 0,
                tid: Some(100),
            },
            ReactorInfo {
                index: 1,
                core: 1,
                tid: Some(101),
            },
        ],
        ..TargetInfo::default()
    }
}

// agent-core's model grows fields while the agent grows collectors; `..default()` keeps this
// fixture compiling when one is added.
#[allow(clippy::needless_update)]
fn topology() -> Topology {
    Topology {
        source: "test".into(),
        nodes: vec![NumaNodeInfo {
            os_index: 0,
            memory_bytes: None,
            cpus: vec![0, 1],
            ..NumaNodeInfo::default()
        }],
        cpus: (0..2)
            .map(|i| CpuInfo {
                os_index: i,
                core: i,
                package: 0,
                node: Some(0),
                ..CpuInfo::default()
            })
            .collect(),
        ..Topology::default()
    }
}

/// A qpair that has completed `rate * t` commands of `lat_us` each, with a queue size of 32
/// when `sized`.
fn qpair(slot: u16, rate: u64, t: u64, lat_us: u64, sized: bool) -> QpairSample {
    let n = rate * t;
    let mut latency = Hist::empty();
    for _ in 0..n {
        latency.record(lat_us * 1000);
    }
    QpairSample {
        slot,
        generation: 1,
        ident: (1 << 16) | u64::from(slot + 1),
        submitted: n + 2,
        completed: n,
        outstanding: 2,
        high_water: 8,
        bytes: n * 4096,
        queue_size: sized.then_some(32),
        latency,
        ..QpairSample::default()
    }
}

/// Counters at `t` seconds: reactor 0 does 2 000 IOPS (25 µs), reactor 1 does 9 000 IOPS over
/// two qpairs (40 µs); reactor 1 is busier, so sorting by IOPS flips the index order.
fn sample(t: u64) -> Sample {
    let reactor = |index: u32, busy_ms: u64, qpairs: Vec<QpairSample>| {
        let reads: u64 = qpairs.iter().map(|q| q.completed).sum();
        ReactorSample {
            index,
            polls: t * 100_000,
            busy_polls: t * 1000,
            busy_ns: t * busy_ms * 1_000_000,
            idle_ns: t * (1000 - busy_ms) * 1_000_000,
            cmds_read: reads,
            bytes_read: reads * 4096,
            backend_submitted: reads,
            backend_completed: reads,
            qpairs,
            ..ReactorSample::default()
        }
    };
    Sample {
        t_ns: t * SEC,
        reactors: vec![
            reactor(0, 150, vec![qpair(0, 2_000, t, 25, true)]),
            reactor(
                1,
                700,
                vec![qpair(0, 4_000, t, 40, false), qpair(1, 5_000, t, 40, true)],
            ),
        ],
        netdevs: vec![
            NetdevSample {
                name: "lo".into(),
                rx_bytes: t * 50_000_000,
                tx_bytes: t * 50_000_000,
                ..NetdevSample::default()
            },
            NetdevSample {
                name: "eth0".into(),
                rx_bytes: t * 1_000_000,
                tx_bytes: t * 900_000_000,
                speed_mbps: Some(10_000),
                ..NetdevSample::default()
            },
        ],
        devices: vec![DeviceSample {
            name: "nvme0n1".into(),
            reads: t * 3_000,
            sectors_read: t * 3_000 * 8,
            read_ticks_ms: t * 300,
            io_ticks_ms: t * 600,
            in_flight: 4,
            ..DeviceSample::default()
        }],
        ..Sample::default()
    }
}

fn finding() -> Finding {
    Finding {
        kind: FindingKind::InitiatorLimited,
        severity: Severity::Warning,
        subject: Subject::Qpair {
            reactor: 0,
            slot: 0,
        },
        summary: "qpair 0.0 keeps 0.05 requests in flight of 32 allowed".into(),
        evidence: vec![
            Evidence::new("avg outstanding", 0.05, ""),
            Evidence::new("queue size", 32.0, ""),
            Evidence::new("reactor busy", 15.0, "%"),
        ],
        windows: 5,
        since_ns: SEC,
        until_ns: 6 * SEC,
        confidence: 0.8,
        cost: None,
    }
}

fn recommendation() -> Recommendation {
    Recommendation {
        setting: Setting::InitiatorQueueDepth,
        current: "1".into(),
        proposed: "32".into(),
        expected_effect: "~6x IOPS: 2.0K -> ~12K".into(),
        expected_iops: Some(12_000.0),
        expected_iops_range: None,
        expected_latency_us: None,
        evidence: vec!["Little's law: 12K IOPS x 25us = 0.3 in flight per qpair".into()],
        addresses: vec![FindingKind::InitiatorLimited],
        applies_to: "initiator".into(),
        fragment: "ringside-perf -q 32\nfio --iodepth=32".into(),
    }
}

/// A snapshot after `windows` one-second windows, without findings.
fn live(windows: u64) -> Snapshot {
    let mut a = Analyzer::with_detectors(info(), topology(), AnalyzerConfig::default(), Vec::new());
    for t in 0..=windows {
        a.push(sample(t));
    }
    let s = a.snapshot();
    assert!(s.window.is_some(), "the analyzer closed no window");
    s
}

fn with_finding(mut s: Snapshot) -> Snapshot {
    s.findings = vec![finding()];
    s.recommendations = vec![recommendation()];
    s
}

fn screen(app: &App, w: u16, h: u16) -> Vec<String> {
    let mut t = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    t.draw(|f| render(f, app)).expect("draw");
    buffer_lines(t.backend().buffer())
}

fn text(lines: &[String]) -> String {
    lines.join("\n")
}

/// The table body: rows after the header line holding `first` (the first column's title) up to
/// the first blank line, as first tokens.
fn table_keys(lines: &[String], first: &str) -> Vec<String> {
    table_lines(lines, first)
        .iter()
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect()
}

fn table_lines(lines: &[String], first: &str) -> Vec<String> {
    let start = lines
        .iter()
        .position(|l| l.trim_start().starts_with(first))
        .unwrap_or_else(|| panic!("no {first} header in:\n{}", text(lines)));
    lines[start + 1..]
        .iter()
        .take_while(|l| !l.trim().is_empty())
        .cloned()
        .collect()
}

/// The table row whose first column is `key`.
fn table_row(lines: &[String], first: &str, key: &str) -> String {
    table_lines(lines, first)
        .into_iter()
        .find(|l| l.split_whitespace().next() == Some(key))
        .unwrap_or_else(|| panic!("no {key} row under {first}:\n{}", text(lines)))
}

fn press(app: &mut App, keys: &[Key]) {
    for k in keys {
        app.handle_key(*k);
    }
}

fn type_str(app: &mut App, s: &str) {
    for c in s.chars() {
        app.handle_key(Key::Char(c));
    }
}

#[test]
fn reactor_rows_show_the_window_figures() {
    let mut app = App::new();
    app.push(live(3));
    let lines = screen(&app, 160, 50);
    let all = text(&lines);
    assert_eq!(table_keys(&lines, "REACTOR"), ["0", "1"], "{all}");
    let r1 = table_row(&lines, "REACTOR", "1");
    assert!(r1.contains("9.0K"), "reactor 1 IOPS: {r1}");
    assert!(r1.contains("70.0%"), "reactor 1 useful share: {r1}");
    assert!(r1.contains("36.9"), "reactor 1 MB/s (9000 x 4096 B): {r1}");
    // No thread statistics were collected: CPU% is unknown, not 0.
    assert!(r1.contains('—'), "unknown CPU% shown as a dash: {r1}");
    assert!(
        all.contains("demo pid 4242"),
        "header names the target:\n{all}"
    );
    assert!(all.contains("11.0K IOPS"), "header total IOPS:\n{all}");
    assert!(
        all.contains("IOPS, all reactors") || all.contains("reactor 0 IOPS"),
        "sparkline titles:\n{all}"
    );
}

#[test]
fn a_finding_appears_with_its_subject_and_kind() {
    let mut app = App::new();
    app.push(with_finding(live(3)));
    let all = text(&screen(&app, 160, 50));
    assert!(
        all.contains("initiator_limited qpair 0.0"),
        "the findings strip under the reactors table:\n{all}"
    );
    assert!(all.contains("1 finding"), "header count:\n{all}");

    app.handle_key(Key::Char('5'));
    assert_eq!(app.view(), View::Findings);
    let lines = screen(&app, 160, 50);
    let row = lines
        .iter()
        .find(|l| l.starts_with("warning"))
        .unwrap_or_else(|| panic!("no finding row:\n{}", text(&lines)));
    assert!(
        row.contains("initiator_limited") && row.contains("qpair 0.0"),
        "{row}"
    );
    assert!(
        text(&lines).contains("initiator_queue_depth: 1 → 32"),
        "recommendation listed:\n{}",
        text(&lines)
    );
}

#[test]
fn sorting_by_iops_changes_the_row_order_and_r_reverses_it() {
    let mut app = App::new();
    app.push(live(3));
    assert_eq!(table_keys(&screen(&app, 160, 50), "REACTOR"), ["0", "1"]);
    // REACTOR CORE NODE CPU% USEFUL% IOPS: five presses of `s` reach IOPS.
    press(&mut app, &[Key::Char('s'); 5]);
    let lines = screen(&app, 160, 50);
    assert!(
        text(&lines).contains("IOPS▼"),
        "the header marks the sort column:\n{}",
        text(&lines)
    );
    assert_eq!(
        table_keys(&lines, "REACTOR"),
        ["1", "0"],
        "busiest first:\n{}",
        text(&lines)
    );
    app.handle_key(Key::Char('r'));
    assert_eq!(table_keys(&screen(&app, 160, 50), "REACTOR"), ["0", "1"]);

    // Qpairs sort independently: by IOPS, reactor 1's 5K qpair comes first.
    app.handle_key(Key::Char('2'));
    assert_eq!(
        table_keys(&screen(&app, 160, 50), "QPAIR"),
        ["0.0", "1.0", "1.1"]
    );
    press(&mut app, &[Key::Char('s'); 7]);
    assert_eq!(
        table_keys(&screen(&app, 160, 50), "QPAIR"),
        ["1.1", "1.0", "0.0"]
    );
}

#[test]
fn freezing_holds_the_screen_until_resumed() {
    let mut app = App::new();
    app.push(live(3));
    app.handle_key(Key::Char('f'));
    assert!(app.frozen());
    let before = screen(&app, 160, 50);
    assert!(text(&before).contains("FROZEN"), "{}", text(&before));

    // A new snapshot where reactor 0 is gone and totals changed.
    let mut newer = live(4);
    if let Some(w) = newer.window.as_mut() {
        w.reactors.retain(|r| r.index == 1);
        w.total.iops = 123_456.0;
    }
    assert!(!app.push(newer), "a frozen view must not take the snapshot");
    let after = screen(&app, 160, 50);
    // Everything but the FROZEN badge (which counts held-back snapshots) is unchanged.
    assert_eq!(before[1..], after[1..], "frozen screen changed");
    assert!(!text(&after).contains("123.5K"), "{}", text(&after));
    assert!(text(&after).contains("FROZEN (+1)"), "{}", text(&after));

    app.handle_key(Key::Char(' '));
    assert!(!app.frozen());
    let resumed = text(&screen(&app, 160, 50));
    assert!(
        resumed.contains("123.5K"),
        "resuming shows the newest:\n{resumed}"
    );
    assert!(!resumed.contains("FROZEN"), "{resumed}");
}

#[test]
fn the_filter_hides_rows_whose_names_do_not_match() {
    let mut app = App::new();
    app.push(live(3));
    app.handle_key(Key::Char('2'));
    app.handle_key(Key::Char('/'));
    type_str(&mut app, "reactor 1");
    let editing = text(&screen(&app, 160, 50));
    assert!(editing.contains("/reactor 1"), "filter prompt:\n{editing}");
    app.handle_key(Key::Enter);
    let lines = screen(&app, 160, 50);
    assert_eq!(
        table_keys(&lines, "QPAIR"),
        ["1.0", "1.1"],
        "{}",
        text(&lines)
    );
    assert!(text(&lines).contains("filter: reactor 1"));

    // The same filter applies to every view; netdevs match by name.
    app.handle_key(Key::Esc);
    app.handle_key(Key::Char('3'));
    app.handle_key(Key::Char('/'));
    type_str(&mut app, "eth");
    app.handle_key(Key::Enter);
    let lines = screen(&app, 160, 50);
    assert_eq!(table_keys(&lines, "NETDEV"), ["eth0"], "{}", text(&lines));
    let eth = table_row(&lines, "NETDEV", "eth0");
    assert!(
        eth.contains("10 Gb/s") && eth.contains("72%"),
        "capacity and utilisation (900 MB/s of 1.25 GB/s): {eth}"
    );

    type_str(&mut app, "/zzz");
    app.handle_key(Key::Enter);
    let all = text(&screen(&app, 160, 50));
    assert!(all.contains("no netdevs match the filter"), "{all}");
}

#[test]
fn enter_on_a_finding_opens_its_evidence_and_recommendation_fragment() {
    let mut app = App::new();
    app.push(with_finding(live(3)));
    app.handle_key(Key::Char('5'));
    let closed = text(&screen(&app, 160, 50));
    assert!(!closed.contains("avg outstanding"), "{closed}");
    app.handle_key(Key::Enter);
    let open = text(&screen(&app, 160, 50));
    for want in [
        "evidence",
        "avg outstanding: 0.050",
        "queue size: 32",
        "initiator_queue_depth 1 → 32",
        "~6x IOPS",
        "Little's law",
        "ringside-perf -q 32",
        "fio --iodepth=32",
    ] {
        assert!(open.contains(want), "evidence pane lacks {want:?}:\n{open}");
    }
    app.handle_key(Key::Esc);
    let closed = text(&screen(&app, 160, 50));
    assert!(
        !closed.contains("avg outstanding"),
        "esc closes the pane:\n{closed}"
    );

    // From the qpairs view, enter on the flagged qpair jumps to its finding.
    app.handle_key(Key::Char('2'));
    app.handle_key(Key::Enter);
    assert_eq!(app.view(), View::Findings);
}

#[test]
fn no_window_yet_says_waiting_instead_of_panicking() {
    let app = App::new();
    assert!(text(&screen(&app, 120, 40)).contains("waiting for the first window"));

    // One sample: the analyzer has no window yet.
    let mut a = Analyzer::with_detectors(info(), topology(), AnalyzerConfig::default(), Vec::new());
    a.push(sample(0));
    let mut app = App::new();
    app.push(a.snapshot());
    for v in ['1', '2', '3', '4', '5'] {
        app.handle_key(Key::Char(v));
        press(&mut app, &[Key::Char('s'), Key::Down, Key::Enter]);
        let all = text(&screen(&app, 120, 40));
        assert!(
            all.contains("waiting for the first window"),
            "view {v}:\n{all}"
        );
    }
}

#[test]
fn tiny_and_odd_terminal_sizes_do_not_panic() {
    let mut app = App::new();
    app.push(with_finding(live(3)));
    for (w, h) in [(20, 5), (1, 1), (3, 2), (40, 10), (80, 24), (200, 3)] {
        for keys in [
            vec![],
            vec![Key::Char('2')],
            vec![Key::Char('3')],
            vec![Key::Char('4')],
            vec![Key::Char('5'), Key::Enter],
            vec![Key::Char('?')],
            vec![Key::Char('/'), Key::Char('x')],
        ] {
            let mut a = app.clone();
            press(&mut a, &keys);
            let lines = screen(&a, w, h);
            assert_eq!(lines.len(), usize::from(h), "{w}x{h} {keys:?}");
        }
    }
    let small = text(&screen(&app, 20, 5));
    assert!(small.contains("ringside top"), "{small}");
}

#[test]
fn render_text_is_the_screen_without_trailing_blanks() {
    let mut app = App::new();
    app.push(live(3));
    let out = tui::render_text(&app, 120, 40);
    assert!(out.lines().any(|l| l.starts_with("0 ")), "{out}");
    assert!(out.lines().all(|l| !l.ends_with(' ')), "{out}");
    assert!(out.ends_with('\n') && !out.ends_with("\n\n"), "{out:?}");
}

#[test]
fn the_text_report_has_every_table_the_evidence_and_the_fragments() {
    let out = tui::text_report(&with_finding(live(3)));
    for want in [
        "demo pid 4242",
        "Reactors\nREACTOR",
        "Qpairs\nQPAIR",
        "Netdevs\nNETDEV",
        "Devices\nDEVICE",
        "nvme0n1",
        "warning initiator_limited qpair 0.0",
        "  avg outstanding: 0.05",
        "initiator_queue_depth: 1 → 32 (initiator)",
        "    ringside-perf -q 32",
    ] {
        assert!(out.contains(want), "text report lacks {want:?}:\n{out}");
    }
    let r1 = out
        .lines()
        .skip_while(|l| !l.starts_with("REACTOR"))
        .find(|l| l.starts_with("1 "))
        .unwrap_or_else(|| panic!("no reactor 1 row:\n{out}"));
    assert!(r1.contains("9.0K"), "{r1}");
    assert!(out.lines().all(|l| !l.ends_with(' ')), "{out}");

    let empty = tui::text_report(&Snapshot::default());
    assert!(empty.contains("waiting for the first window"), "{empty}");
}

/// An RDMA target: reactor 0 does RDMA work with a dry SRQ; a hardware port (`mlx5_0`) and a
/// software one (`rxe0`) are sampled.
fn rdma_live() -> Snapshot {
    use agent_core::sample::{RdmaPortSample, RdmaReactorSample};
    let mut a = Analyzer::with_detectors(info(), topology(), AnalyzerConfig::default(), Vec::new());
    for t in 0..=3u64 {
        let mut s = sample(t);
        s.reactors[0].rdma = Some(RdmaReactorSample {
            cq_polls: t * 10_000,
            cq_polls_nonempty: t * 2_000,
            completions: t * 9_000,
            doorbells: t * 3_000,
            send_wrs: t * 6_000,
            recv_wrs: t * 3_000,
            srq_size: 512,
            srq_depth: 18,
            srq_low_water: 0,
            ..RdmaReactorSample::default()
        });
        s.rdma_ports = vec![
            RdmaPortSample {
                device: "mlx5_0".into(),
                port: 1,
                netdev: Some("ens1f0".into()),
                rate_bits_per_s: Some(25_000_000_000),
                xmit_bytes: Some(t * 2_500_000_000),
                rcv_bytes: Some(t * 1_000_000),
                ..RdmaPortSample::default()
            },
            RdmaPortSample {
                device: "rxe0".into(),
                port: 1,
                soft: true,
                netdev: Some("eth0".into()),
                ..RdmaPortSample::default()
            },
        ];
        a.push(s);
    }
    a.snapshot()
}

#[test]
fn rdma_reactors_show_cq_batching_and_the_srq_and_ports_list_under_netdevs() {
    let mut app = App::new();
    app.push(rdma_live());
    let lines = screen(&app, 160, 50);
    let r0 = table_row(&lines, "REACTOR", "0");
    assert!(
        r0.contains("4.5") && r0.contains("DRY 18/512"),
        "completions per nonempty poll (9000/2000) and the dry SRQ: {r0}"
    );
    let r1 = table_row(&lines, "REACTOR", "1");
    assert!(!r1.contains("/512"), "a TCP reactor has no SRQ: {r1}");

    app.handle_key(Key::Char('3'));
    let lines = screen(&app, 160, 50);
    let keys = table_keys(&lines, "NETDEV");
    assert!(
        keys.contains(&"mlx5_0/1".to_string()) && keys.contains(&"rxe0/1".to_string()),
        "{keys:?}"
    );
    let m = table_row(&lines, "NETDEV", "mlx5_0/1");
    assert!(
        m.contains("2500.0") && m.contains("25 Gb/s") && m.contains("80%"),
        "port counters, rate and utilisation (2.5 of 3.125 GB/s): {m}"
    );
    let x = table_row(&lines, "NETDEV", "rxe0/1");
    assert!(x.contains("sw"), "software ports are marked: {x}");

    let once = tui::text_report(&rdma_live());
    assert!(
        once.contains("DRY 18/512") && once.contains("mlx5_0/1"),
        "{once}"
    );
}

/// `top --all`: the fleet line lists every target with its state, the one shown in brackets;
/// `t` shows the next one; a target that left the fleet leaves the line.
#[test]
fn the_fleet_line_shows_every_target_and_t_switches_the_one_shown() {
    use agent_core::lifecycle::{InstanceId, LifeEvent, TargetStatus};
    let target = |name: &str, gone: bool| {
        let mut s = live(2);
        s.target.name = name.to_string();
        let mut l = TargetStatus::waiting(name, 0, "not seen yet");
        l.apply(LifeEvent::Appeared(InstanceId::default()), 1);
        if gone {
            l.apply(LifeEvent::Vanished("process 42 is dead".into()), 2);
            s.window = None;
        }
        s.lifecycle = Some(l);
        s
    };
    let fleet_line = |lines: &[String]| {
        lines
            .iter()
            .find(|l| l.starts_with("targets ("))
            .cloned()
            .unwrap_or_else(|| panic!("no fleet line:\n{}", text(lines)))
    };
    let mut app = App::new();
    app.push_fleet(vec![]);
    let lines = screen(&app, 160, 30);
    assert!(
        fleet_line(&lines).contains("targets (0): none yet"),
        "{}",
        text(&lines)
    );

    app.push_fleet(vec![target("alpha", false), target("beta", true)]);
    let lines = screen(&app, 160, 30);
    let line = fleet_line(&lines);
    assert!(line.contains("[alpha attached]"), "{line}");
    assert!(line.contains("beta GONE: process 42 is dead"), "{line}");
    assert!(text(&lines).contains("alpha pid"), "the header is alpha's");

    press(&mut app, &[Key::Char('t')]);
    app.push_fleet(vec![target("alpha", false), target("beta", true)]);
    let lines = screen(&app, 160, 30);
    assert!(
        fleet_line(&lines).contains("[beta GONE"),
        "{}",
        text(&lines)
    );
    assert!(text(&lines).contains("beta pid"), "the header is beta's");

    // beta stopped cleanly: it leaves the line and alpha is shown again.
    app.push_fleet(vec![target("alpha", false)]);
    let lines = screen(&app, 160, 30);
    let line = fleet_line(&lines);
    assert!(
        line.contains("[alpha attached]") && !line.contains("beta"),
        "{line}"
    );
}
