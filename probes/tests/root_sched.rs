//! sched and syscalls probes against real threads (root; skipped otherwise).
//! A "reactor" is a test thread pinned to a core; a hog thread pinned to the same core must show
//! up as the preempting task and as stolen time; runtime filter updates must take effect.

mod common;

use probes::{KernelEvent, ProbeConfig, ProbeKind, ProbeSet, StreamThresholds};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

const SYS_GETPID: u32 = 39; // x86_64

fn reactor_core() -> usize {
    let n = thread::available_parallelism().map_or(1, |n| n.get());
    n.saturating_sub(1)
}

/// Polls until `done(events so far)` or the deadline; returns everything seen.
fn poll_until(
    set: &mut ProbeSet,
    deadline: Duration,
    mut done: impl FnMut(&[KernelEvent]) -> bool,
) -> Vec<KernelEvent> {
    let start = Instant::now();
    let mut all = Vec::new();
    while start.elapsed() < deadline {
        all.extend(
            set.poll(Duration::from_millis(100))
                .expect("ring buffer poll"),
        );
        if done(&all) {
            break;
        }
    }
    all
}

#[test]
fn root_hog_on_reactor_core_preempts_it_and_steals_time() {
    if !common::root_and_btf("root_hog_on_reactor_core_preempts_it_and_steals_time") {
        return;
    }
    let core = reactor_core();
    let cfg = ProbeConfig {
        probes: vec![ProbeKind::Sched],
        ..ProbeConfig::default()
    };
    let (mut set, statuses) = ProbeSet::start(&cfg).expect("valid config");
    assert!(set.running().contains(&ProbeKind::Sched), "{statuses:?}");

    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let spin = |stop: Arc<AtomicBool>, tx: mpsc::Sender<u32>| {
        move || {
            common::pin_to(core);
            tx.send(common::gettid()).expect("test main thread listens");
            while !stop.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        }
    };
    let reactor = thread::spawn(spin(Arc::clone(&stop), tx.clone()));
    let reactor_tid = rx.recv().expect("reactor tid");
    // The filter is updated at runtime, after attach, through the shared maps.
    let mut f = set.filter().clone();
    f.cores = vec![core as u32];
    set.set_filter(&f).expect("filter update");
    set.add_reactor_tid(reactor_tid).expect("add reactor tid");
    let hog = thread::spawn(spin(Arc::clone(&stop), tx));
    let hog_tid = rx.recv().expect("hog tid");

    let events = poll_until(&mut set, Duration::from_secs(20), |evs| {
        evs.iter().any(|e| {
            matches!(e, KernelEvent::Preempted { tid, by_pid, .. } if *tid == reactor_tid && *by_pid == hog_tid)
        })
    });
    stop.store(true, Ordering::Relaxed);
    reactor.join().expect("reactor thread");
    hog.join().expect("hog thread");

    let preempted: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, KernelEvent::Preempted { tid, .. } if *tid == reactor_tid))
        .collect();
    println!(
        "{} preemptions of reactor {reactor_tid}, first: {:?}",
        preempted.len(),
        preempted.first()
    );
    let by_hog = preempted
        .iter()
        .find(|e| matches!(e, KernelEvent::Preempted { by_pid, .. } if *by_pid == hog_tid));
    match by_hog {
        Some(KernelEvent::Preempted {
            cpu,
            start_ns,
            end_ns,
            by_comm,
            ..
        }) => {
            assert_eq!(*cpu as usize, core, "preempted on the reactor core");
            assert!(end_ns > start_ns, "end after start");
            assert!(!by_comm.is_empty(), "intruder comm is filled in");
        }
        _ => panic!("no Preempted event for reactor {reactor_tid} by hog {hog_tid} in {events:?}"),
    }
    assert!(
        events
            .iter()
            .all(|e| !matches!(e, KernelEvent::Preempted { tid, .. } if *tid == hog_tid)),
        "the hog is not a reactor and must not produce Preempted events"
    );

    let agg = set.read_aggregates().expect("aggregates");
    let stolen = agg
        .stolen
        .iter()
        .find(|s| s.pid == hog_tid && s.cpu as usize == core)
        .unwrap_or_else(|| {
            panic!(
                "no stolen time for hog {hog_tid} on cpu {core}: {:?}",
                agg.stolen
            )
        });
    assert!(stolen.ns > 0 && stolen.slices > 0, "{stolen:?}");
    assert!(
        agg.stolen.iter().all(|s| s.pid != reactor_tid),
        "a reactor's own time is not stolen time"
    );
    let stats = agg
        .reactors
        .iter()
        .find(|r| r.tid == reactor_tid)
        .expect("reactor stats exist");
    assert!(stats.preempted > 0 && stats.preempted_ns > 0, "{stats:?}");
    assert!(
        agg.reactors.iter().all(|r| r.tid == reactor_tid),
        "only reactor tids have stats: {:?}",
        agg.reactors
    );
    assert_eq!(set.decode_errors(), 0);
}

#[test]
fn root_sleeping_reactor_shows_wakeups_and_migration() {
    if !common::root_and_btf("root_sleeping_reactor_shows_wakeups_and_migration") {
        return;
    }
    let (tx, rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let two_cpus = thread::available_parallelism().map_or(1, |n| n.get()) >= 2;
    let reactor = thread::spawn(move || {
        common::pin_to(0);
        tx.send(common::gettid()).expect("main listens");
        go_rx.recv().expect("main says go");
        for _ in 0..5 {
            thread::sleep(Duration::from_millis(2));
        }
        if two_cpus {
            // Moving the affinity away from the running cpu migrates the thread.
            common::pin_to(1);
            thread::sleep(Duration::from_millis(2));
        }
    });
    let tid = rx.recv().expect("reactor tid");
    let mut cfg = ProbeConfig {
        probes: vec![ProbeKind::Sched],
        ..ProbeConfig::default()
    };
    cfg.filter.reactor_tids = vec![tid];
    cfg.filter.stream.wakeup_latency_min_ns = Some(0);
    let (mut set, statuses) = ProbeSet::start(&cfg).expect("valid config");
    assert!(set.running().contains(&ProbeKind::Sched), "{statuses:?}");
    go_tx.send(()).expect("reactor waits");
    reactor.join().expect("reactor thread");
    let events = poll_until(&mut set, Duration::from_secs(5), |evs| {
        evs.iter()
            .filter(|e| matches!(e, KernelEvent::Wakeup { tid: t, .. } if *t == tid))
            .count()
            >= 5
            && (!two_cpus
                || evs
                    .iter()
                    .any(|e| matches!(e, KernelEvent::Migrated { tid: t, .. } if *t == tid)))
    });
    let wakeups: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            KernelEvent::Wakeup {
                tid: t,
                waking_ns,
                running_ns,
                ..
            } if *t == tid => Some((*waking_ns, *running_ns)),
            _ => None,
        })
        .collect();
    assert!(wakeups.len() >= 5, "5 sleeps give 5 wake-ups: {events:?}");
    assert!(wakeups.iter().all(|(w, r)| r >= w), "running after waking");
    if two_cpus {
        let m = events
            .iter()
            .find_map(|e| match e {
                KernelEvent::Migrated {
                    tid: t,
                    orig_cpu,
                    dest_cpu,
                    ..
                } if *t == tid => Some((*orig_cpu, *dest_cpu)),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no Migrated event for {tid}: {events:?}"));
        assert_eq!(m.1, 1, "migrated to cpu 1: {m:?}");
    }
    let agg = set.read_aggregates().expect("aggregates");
    let stats = agg
        .reactors
        .iter()
        .find(|r| r.tid == tid)
        .expect("reactor stats");
    assert!(stats.voluntary >= 5 && stats.voluntary_ns > 0, "{stats:?}");
    assert!(stats.wakeups >= 5, "{stats:?}");
    if two_cpus {
        assert!(stats.migrations >= 1, "{stats:?}");
    }
}

#[test]
fn root_reactor_syscalls_are_counted_and_others_are_not() {
    if !common::root_and_btf("root_reactor_syscalls_are_counted_and_others_are_not") {
        return;
    }
    let (tx, rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (go2_tx, go2_rx) = mpsc::channel::<()>();
    let worker = |tx: mpsc::Sender<u32>, go: mpsc::Receiver<()>| {
        move || {
            tx.send(common::gettid()).expect("main listens");
            go.recv().expect("main says go");
            for _ in 0..1000 {
                std::hint::black_box(rustix::process::getpid());
            }
        }
    };
    let reactor = thread::spawn(worker(tx.clone(), go_rx));
    let other = thread::spawn(worker(tx, go2_rx));
    let a = rx.recv().expect("tid");
    let b = rx.recv().expect("tid");
    let mut cfg = ProbeConfig {
        probes: vec![ProbeKind::Syscalls],
        ..ProbeConfig::default()
    };
    // Either worker may report first; whichever did is the reactor, the other one is not.
    let (reactor_tid, other_tid) = (a, b);
    cfg.filter.pid = Some(common::getpid());
    cfg.filter.reactor_tids = vec![reactor_tid];
    cfg.filter.stream = StreamThresholds {
        syscall_min_ns: Some(0),
        ..StreamThresholds::default()
    };
    let (mut set, statuses) = ProbeSet::start(&cfg).expect("valid config");
    assert!(set.running().contains(&ProbeKind::Syscalls), "{statuses:?}");
    go_tx.send(()).expect("worker waits");
    go2_tx.send(()).expect("worker waits");
    reactor.join().expect("worker");
    other.join().expect("worker");

    let agg = set.read_aggregates().expect("aggregates");
    let getpid = agg
        .syscalls
        .iter()
        .find(|s| s.tid == reactor_tid && s.nr == SYS_GETPID)
        .unwrap_or_else(|| {
            panic!(
                "no getpid count for reactor {reactor_tid}: {:?}",
                agg.syscalls
            )
        });
    println!("reactor getpid: {getpid:?}");
    assert!(getpid.count >= 1000, "{getpid:?}");
    assert!(getpid.total_ns > 0 && getpid.max_ns > 0, "{getpid:?}");
    assert!(
        agg.syscalls.iter().all(|s| s.tid == reactor_tid),
        "only the reactor's syscalls are counted, not {other_tid}'s: {:?}",
        agg.syscalls
    );
    let events = poll_until(&mut set, Duration::from_secs(5), |evs| {
        evs.iter()
            .filter(|e| matches!(e, KernelEvent::Syscall { nr, .. } if *nr == SYS_GETPID))
            .count()
            >= 1000
    });
    let streamed = events
        .iter()
        .filter(|e| matches!(e, KernelEvent::Syscall { tid, nr, ret, .. } if *tid == reactor_tid && *nr == SYS_GETPID && *ret == i64::from(common::getpid())))
        .count();
    assert!(streamed >= 1000, "streamed {streamed} getpid events");
}
