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
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const GETPIDS: u32 = 100_000;
const ROUND_TRIPS: u32 = 5_000;
const ROUNDS: usize = 3;

/// Mean ns per run of each of the set's programs, as "tracepoint=ns" pairs, plus their sum.
fn bpf_cost(set: &ProbeSet) -> (String, f64) {
    let stats = set.program_stats();
    let mut sum = 0.0;
    let mut parts = Vec::new();
    for s in stats.iter().filter(|s| s.run_count > 0) {
        let ns = s.ns_per_run().unwrap_or(0.0);
        parts.push(format!("{}={ns:.0}ns/{}runs", s.tracepoint, s.run_count));
        sum += ns;
    }
    (parts.join(" "), sum)
}

fn start(kind: ProbeKind, filter: Filter) -> ProbeSet {
    let cfg = ProbeConfig {
        probes: vec![kind],
        filter,
        ringbuf_bytes: 1 << 24,
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

#[test]
fn root_overhead_of_syscall_and_sched_probes() {
    if !common::root_and_btf("root_overhead_of_syscall_and_sched_probes") {
        return;
    }
    let me = common::getpid();
    let tid = common::gettid();

    // --- syscalls ---
    let (mut base, mut other_pid, mut not_reactor, mut reactor) = (vec![], vec![], vec![], vec![]);
    let mut costs = [
        (String::new(), 0.0),
        (String::new(), 0.0),
        (String::new(), 0.0),
    ];
    let mut counted = 0;
    for _ in 0..ROUNDS {
        base.push(getpid_loop());
        {
            let s = start(
                ProbeKind::Syscalls,
                Filter {
                    pid: Some(1),
                    ..Filter::default()
                },
            );
            let _stats = s.enable_run_stats().expect("run stats as root");
            other_pid.push(getpid_loop());
            costs[0] = bpf_cost(&s);
        }
        {
            let s = start(
                ProbeKind::Syscalls,
                Filter {
                    pid: Some(me),
                    ..Filter::default()
                },
            );
            let _stats = s.enable_run_stats().expect("run stats as root");
            not_reactor.push(getpid_loop());
            costs[1] = bpf_cost(&s);
        }
        let s = start(
            ProbeKind::Syscalls,
            Filter {
                pid: Some(me),
                reactor_tids: vec![tid],
                ..Filter::default()
            },
        );
        let stats = s.enable_run_stats().expect("run stats as root");
        reactor.push(getpid_loop());
        costs[2] = bpf_cost(&s);
        drop(stats);
        let agg = s.read_aggregates().expect("aggregates");
        counted = agg
            .syscalls
            .iter()
            .filter(|c| c.tid == tid && c.nr == 39)
            .map(|c| c.count)
            .sum::<u64>();
    }
    assert!(
        counted >= u64::from(GETPIDS),
        "the syscall probe counted the measured loop ({counted})"
    );
    let b = min(&base);
    println!("syscalls probe, getpid() loop of {GETPIDS}, best of {ROUNDS}:");
    println!("  no probe                              {b:7.1} ns/call");
    for ((name, v), (detail, sum)) in [
        ("attached, other process (tgid test)", &other_pid),
        ("attached, our process, not a reactor", &not_reactor),
        ("attached, reactor thread (counted)", &reactor),
    ]
    .into_iter()
    .zip(&costs)
    {
        let m = min(v);
        println!(
            "  {name:37} {m:7.1} ns/call  (+{:.1} ns, x{:.2}); in BPF {sum:.0} ns/call: {detail}",
            m - b,
            m / b
        );
    }

    // --- sched ---
    let cpu = thread::available_parallelism().map_or(1, |n| n.get()) - 1;
    let (mut base, mut filtered, mut engaged) = (vec![], vec![], vec![]);
    let mut costs = [(String::new(), 0.0), (String::new(), 0.0)];
    let mut preempt_or_wake = 0;
    for _ in 0..ROUNDS {
        base.push(ping_pong(cpu, |_, _| {}));
        {
            let s = start(ProbeKind::Sched, Filter::default());
            let _stats = s.enable_run_stats().expect("run stats as root");
            filtered.push(ping_pong(cpu, |_, _| {}));
            costs[0] = bpf_cost(&s);
        }
        let mut s = start(
            ProbeKind::Sched,
            Filter {
                cores: vec![cpu as u32],
                ..Filter::default()
            },
        );
        let stats = s.enable_run_stats().expect("run stats as root");
        let mut reg = |a: u32, b: u32| {
            s.add_reactor_tid(a).expect("add tid");
            s.add_reactor_tid(b).expect("add tid");
        };
        // Registration happens before the timed loop starts.
        let ns = ping_pong(cpu, &mut reg);
        engaged.push(ns);
        costs[1] = bpf_cost(&s);
        drop(stats);
        let agg = s.read_aggregates().expect("aggregates");
        preempt_or_wake = agg.reactors.iter().map(|r| r.wakeups).sum::<u64>();
        let _ = s.poll(Duration::from_millis(1));
    }
    assert!(
        preempt_or_wake >= u64::from(ROUND_TRIPS),
        "the sched probe saw the measured wake-ups ({preempt_or_wake})"
    );
    let b = min(&base);
    println!("sched probe, ping-pong of {ROUND_TRIPS} round trips on cpu {cpu}, best of {ROUNDS}:");
    println!("  no probe                              {b:7.1} ns/switch");
    for ((name, v), (detail, _)) in [
        ("attached, filtered out", &filtered),
        ("attached, both threads reactors", &engaged),
    ]
    .into_iter()
    .zip(&costs)
    {
        let m = min(v);
        println!(
            "  {name:37} {m:7.1} ns/switch (+{:.1} ns, x{:.2}); in BPF: {detail}",
            m - b,
            m / b
        );
    }
}
