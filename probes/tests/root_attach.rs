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
