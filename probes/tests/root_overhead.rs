//! Probe overhead, measured in one run with and without the probes (root; skipped otherwise).
//! Prints a table; asserts only that the probes were really active while measured (no timed
//! assertions). Figures are copied into README.md. Kept short: a few seconds.
//!
//! Two figures per case: the wall-clock cost per operation against the same loop without the
//! probe (noisy on a shared machine), and the kernel's own accounting of the time spent inside
//! the BPF programs (BPF_ENABLE_STATS run_time_ns / run_cnt), which does not depend on noise.
//!
//! - syscalls: a tight loop of getpid() (enter + exit probe per call), in three filter cases.
//! - sched: two threads pinned to one cpu ping-pong through channels (2 context switches and
//!   2 wake-ups per round trip), with the sched probe filtered out and fully engaged.

mod common;

use probes::{Filter, ProbeConfig, ProbeKind, ProbeSet};
use std::cell::RefCell;
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

const GETPIDS: u32 = 50_000;
const ROUND_TRIPS: u32 = 3_000;
const ROUNDS: usize = 3;

/// Mean ns per run of each of the set's programs, as "tracepoint=ns" pairs, and the total
/// time spent in all of them.
fn bpf_cost(set: &ProbeSet) -> (String, f64) {
    let stats = set.program_stats();
    let mut total = 0.0;
    let mut parts = Vec::new();
    for s in stats.iter().filter(|s| s.run_count > 0) {
        let ns = s.ns_per_run().unwrap_or(0.0);
        parts.push(format!("{} {ns:.0} ns x{}", s.tracepoint, s.run_count));
        total += s.run_time_ns as f64;
    }
    (parts.join(", "), total)
}

fn start(kind: ProbeKind, filter: Filter) -> ProbeSet {
    let cfg = ProbeConfig {
        probes: vec![kind],
        filter,
        ringbuf_bytes: 1 << 24,
        off: Vec::new(),
    };
    let (set, statuses) = ProbeSet::start(&cfg).expect("valid config");
    assert!(set.running().contains(&kind), "{statuses:?}");
    set
}

/// ns per getpid() on the calling thread.
fn getpid_loop() -> f64 {
    let t = Instant::now();
    for _ in 0..GETPIDS {
        std::hint::black_box(rustix::process::getpid());
    }
    t.elapsed().as_nanos() as f64 / f64::from(GETPIDS)
}

/// ns per context switch for two threads on `cpu`; calls `register(tid_a, tid_b)` first.
fn ping_pong(cpu: usize, register: impl FnOnce(u32, u32)) -> f64 {
    let (to_b, b_rx) = mpsc::channel::<u32>();
    let (to_a, a_rx) = mpsc::channel::<u32>();
    let (tid_tx, tid_rx) = mpsc::channel();
    let b = thread::spawn(move || {
        common::pin_to(cpu);
        tid_tx.send(common::gettid()).expect("main listens");
        while let Ok(v) = b_rx.recv() {
            if to_a.send(v).is_err() {
                break;
            }
        }
    });
    let tid_b = tid_rx.recv().expect("tid b");
    let (res_tx, res_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (tid_tx, tid_rx) = mpsc::channel();
    let a = thread::spawn(move || {
        common::pin_to(cpu);
        tid_tx.send(common::gettid()).expect("main listens");
        go_rx.recv().expect("go");
        let t = Instant::now();
        for i in 0..ROUND_TRIPS {
            to_b.send(i).expect("b alive");
            a_rx.recv().expect("b answers");
        }
        res_tx
            .send(t.elapsed().as_nanos() as f64 / f64::from(2 * ROUND_TRIPS))
            .expect("main listens");
    });
    let tid_a = tid_rx.recv().expect("tid a");
    register(tid_a, tid_b);
    go_tx.send(()).expect("a waits");
    let ns = res_rx.recv().expect("result");
    a.join().expect("thread a");
    b.join().expect("thread b");
    ns
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

/// One measured case: `run` once for the wall clock with statistics off, once more with the
/// kernel's run-time statistics on for the in-BPF cost, spread over the `ops` operations of
/// one run (so rarely-run programs weigh what they cost).
fn measure(set: &RefCell<ProbeSet>, ops: u32, mut run: impl FnMut() -> f64) -> (f64, String, f64) {
    let wall = run();
    let stats = set.borrow().enable_run_stats().expect("run stats as root");
    run();
    let (detail, total) = bpf_cost(&set.borrow());
    drop(stats);
    (wall, detail, total / f64::from(ops))
}

fn report(unit: &str, base: &[f64], cases: &[(&str, Vec<f64>, String, f64)]) {
    let b = min(base);
    println!("  {:37} {b:8.1} ns/{unit}", "no probe");
    for (name, walls, detail, sum) in cases {
        let m = min(walls);
        println!(
            "  {name:37} {m:8.1} ns/{unit} (+{:.1} ns, x{:.2}); in BPF {sum:.0} ns/{unit} ({detail})",
            m - b,
            m / b
        );
    }
}

#[test]
fn root_overhead_of_syscall_and_sched_probes() {
    if !common::root_and_btf("root_overhead_of_syscall_and_sched_probes") {
        return;
    }
    let me = common::getpid();
    let tid = common::gettid();

    // --- syscalls ---
    let filters = [
        ("attached, other process (tgid test)", Some(1), vec![]),
        ("attached, our process, not a reactor", Some(me), vec![]),
        ("attached, reactor thread (counted)", Some(me), vec![tid]),
    ];
    let mut base = Vec::new();
    let mut cases: Vec<(&str, Vec<f64>, String, f64)> = filters
        .iter()
        .map(|(n, _, _)| (*n, Vec::new(), String::new(), 0.0))
        .collect();
    let mut counted = 0;
    for _ in 0..ROUNDS {
        base.push(getpid_loop());
        for (case, (_, pid, tids)) in cases.iter_mut().zip(&filters) {
            let s = RefCell::new(start(
                ProbeKind::Syscalls,
                Filter {
                    pid: *pid,
                    reactor_tids: tids.clone(),
                    ..Filter::default()
                },
            ));
            let (wall, detail, sum) = measure(&s, GETPIDS, getpid_loop);
            let s = s.into_inner();
            case.1.push(wall);
            (case.2, case.3) = (detail, sum);
            if !tids.is_empty() {
                let agg = s.read_aggregates().expect("aggregates");
                counted = agg
                    .syscalls
                    .iter()
                    .filter(|c| c.tid == tid && c.nr == 39)
                    .map(|c| c.count)
                    .sum::<u64>();
            }
        }
    }
    assert!(
        counted >= 2 * u64::from(GETPIDS),
        "the syscall probe counted both measured loops ({counted})"
    );
    println!("syscalls probe, getpid() loop of {GETPIDS}, best of {ROUNDS}:");
    report("call", &base, &cases);

    // --- sched ---
    let cpu = thread::available_parallelism().map_or(1, |n| n.get()) - 1;
    let mut base = Vec::new();
    let mut by_tgid = (
        "attached, other process (tgid test)",
        Vec::new(),
        String::new(),
        0.0,
    );
    let mut filtered = (
        "attached, our process, not reactors",
        Vec::new(),
        String::new(),
        0.0,
    );
    let mut engaged = (
        "attached, both threads reactors",
        Vec::new(),
        String::new(),
        0.0,
    );
    let mut wakeups = 0;
    for _ in 0..ROUNDS {
        base.push(ping_pong(cpu, |_, _| {}));
        for (case, pid) in [(&mut by_tgid, 1), (&mut filtered, me)] {
            let s = RefCell::new(start(
                ProbeKind::Sched,
                Filter {
                    pid: Some(pid),
                    ..Filter::default()
                },
            ));
            let (wall, detail, sum) = measure(&s, 2 * ROUND_TRIPS, || ping_pong(cpu, |_, _| {}));
            case.1.push(wall);
            (case.2, case.3) = (detail, sum);
        }
        let s = RefCell::new(start(
            ProbeKind::Sched,
            Filter {
                cores: vec![cpu as u32],
                ..Filter::default()
            },
        ));
        let run = || {
            ping_pong(cpu, |a, b| {
                // Registration happens before the timed loop starts.
                let mut s = s.borrow_mut();
                s.add_reactor_tid(a).expect("add tid");
                s.add_reactor_tid(b).expect("add tid");
            })
        };
        let (wall, detail, sum) = measure(&s, 2 * ROUND_TRIPS, run);
        engaged.1.push(wall);
        (engaged.2, engaged.3) = (detail, sum);
        let s = s.into_inner();
        wakeups = s
            .read_aggregates()
            .expect("aggregates")
            .reactors
            .iter()
            .map(|r| r.wakeups)
            .sum::<u64>();
    }
    assert!(
        wakeups >= u64::from(ROUND_TRIPS),
        "the sched probe saw the measured wake-ups ({wakeups})"
    );
    println!("sched probe, ping-pong of {ROUND_TRIPS} round trips on cpu {cpu}, best of {ROUNDS}:");
    report("switch", &base, &[by_tgid, filtered, engaged]);
}
