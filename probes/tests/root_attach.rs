//! Every probe loads and attaches on this kernel (root; skipped otherwise).

mod common;

use probes::{Outcome, ProbeConfig, ProbeKind, ProbeSet};

#[test]
fn root_every_probe_loads_and_attaches() {
    if !common::root_and_btf("root_every_probe_loads_and_attaches") {
        return;
    }
    let mut cfg = ProbeConfig::default();
    cfg.filter.pid = Some(common::getpid());
    cfg.filter.cores = vec![0];
    let (set, statuses) = ProbeSet::start(&cfg).expect("valid config");
    for s in &statuses {
        println!("{s}");
    }
    assert_eq!(statuses.len(), ProbeKind::ALL.len(), "one status per probe");
    for s in &statuses {
        assert_eq!(s.outcome, Outcome::Attached, "{s}");
        assert_eq!(s.attached, s.probe.tracepoints(), "{s}");
    }
    assert_eq!(set.running(), ProbeKind::ALL.to_vec());
    let agg = set.read_aggregates().expect("aggregate maps are readable");
    assert_eq!(agg.ringbuf_drops, 0);
}

#[test]
fn root_disabled_probes_are_reported_and_not_loaded() {
    if !common::root_and_btf("root_disabled_probes_are_reported_and_not_loaded") {
        return;
    }
    let cfg = ProbeConfig {
        probes: vec![ProbeKind::Net],
        ..ProbeConfig::default()
    };
    let (set, statuses) = ProbeSet::start(&cfg).expect("valid config");
    assert_eq!(set.running(), vec![ProbeKind::Net]);
    for s in &statuses {
        let want = if s.probe == ProbeKind::Net {
            Outcome::Attached
        } else {
            Outcome::Disabled
        };
        assert_eq!(s.outcome, want, "{s}");
    }
}

#[test]
fn root_a_probe_can_be_attached_and_detached_at_runtime() {
    if !common::root_and_btf("root_a_probe_can_be_attached_and_detached_at_runtime") {
        return;
    }
    let mut cfg = ProbeConfig {
        probes: vec![ProbeKind::Net],
        ..ProbeConfig::default()
    };
    cfg.filter.pid = Some(common::getpid());
    cfg.filter.reactor_tids = vec![common::gettid()];
    let (mut set, _) = ProbeSet::start(&cfg).expect("valid config");
    assert_eq!(set.running(), vec![ProbeKind::Net]);

    let s = set.attach(ProbeKind::Syscalls);
    assert_eq!(s.outcome, Outcome::Attached, "{s}");
    for _ in 0..100 {
        std::hint::black_box(rustix::process::getpid());
    }
    let count = |set: &ProbeSet| -> u64 {
        set.read_aggregates()
            .expect("aggregates")
            .syscalls
            .iter()
            .filter(|c| c.tid == common::gettid() && c.nr == 39)
            .map(|c| c.count)
            .sum()
    };
    assert!(count(&set) >= 100, "the late-attached probe counts");
    let again = set.attach(ProbeKind::Syscalls);
    assert!(again.detail.starts_with("already attached"), "{again}");

    assert!(set.detach(ProbeKind::Syscalls));
    assert!(
        !set.detach(ProbeKind::Syscalls),
        "second detach finds nothing"
    );
    assert_eq!(set.running(), vec![ProbeKind::Net]);
    assert_eq!(count(&set), 0, "a detached probe's maps are released");
}
