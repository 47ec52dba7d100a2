//! Degradation: without privileges every requested probe reports one clear line and nothing
//! panics (root, because the test drops to `nobody` in a child process to get there).

mod common;

use probes::{Outcome, ProbeConfig, ProbeKind, ProbeSet};
use std::os::unix::process::CommandExt;
use std::process::Command;

const CHILD_ENV: &str = "RS_PROBES_UNPRIVILEGED_CHILD";

#[test]
fn root_unprivileged_start_degrades_to_one_line_per_probe() {
    if !common::root_and_btf("root_unprivileged_start_degrades_to_one_line_per_probe") {
        return;
    }
    let exe = std::env::current_exe().expect("test binary path");
    let out = Command::new(exe)
        .args([
            "--exact",
            "unprivileged_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .uid(65534)
        .gid(65534)
        .output()
        .expect("spawn the test binary as nobody");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout
        .lines()
        // libtest prints "test unprivileged_child ... " before the first line without a newline.
        .filter_map(|l| l.split_once("STATUS ").map(|(_, rest)| rest))
        .collect();
    for l in &lines {
        println!("{l}");
    }
    assert_eq!(
        lines.len(),
        ProbeKind::ALL.len(),
        "one line per probe: {stdout}"
    );
    for (l, k) in lines.iter().zip(ProbeKind::ALL) {
        assert!(l.starts_with(&format!("{k}: not loaded: ")), "{l}");
        assert!(
            l.contains("CAP_BPF"),
            "says which privilege is missing: {l}"
        );
        assert!(!l.contains('\n'));
    }
}

/// Runs only inside the child spawned above (as `nobody`); a no-op otherwise.
#[test]
fn unprivileged_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let (mut set, statuses) = ProbeSet::start(&ProbeConfig::default()).expect("valid config");
    for s in &statuses {
        assert_eq!(s.outcome, Outcome::Failed, "{s}");
        println!("STATUS {s}");
    }
    assert!(set.running().is_empty());
    // The set stays usable: polling returns nothing, aggregates are empty, updates say why.
    assert!(set
        .poll(std::time::Duration::from_millis(1))
        .expect("poll without probes")
        .is_empty());
    assert_eq!(
        set.read_aggregates().expect("empty"),
        probes::Aggregates::default()
    );
    assert!(set.add_reactor_tid(1).is_err());
}
