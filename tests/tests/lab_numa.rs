//! NUMA misplacement for real, in the lab guest's two NUMA nodes (this host has one): the reactor
//! on node 0 with its buffers bound to node 1 (`numactl --membind=1`) must be reported by
//! `ringside diagnose` as numa_misplacement on reactor 0; with the buffers on node 0, nothing.
//! The guest script is bench-harness/lab/guest/numa-diagnose.sh. `RINGSIDE_SKIP_LAB=1` skips it.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tests::{cargo_bin, workspace_root};

fn lab_dir() -> PathBuf {
    std::env::var_os("RINGSIDE_LAB")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/ringside-lab"))
}

#[test]
fn lab_numa_membind_to_the_other_node_is_reported_as_misplacement() {
    if std::env::var("RINGSIDE_SKIP_LAB").as_deref() == Ok("1") {
        println!("skipped: RINGSIDE_SKIP_LAB=1 (this test boots the QEMU lab; CI runs it)");
        return;
    }
    let bins = [
        cargo_bin("nvmf-target", "ringside-tgt"),
        cargo_bin("bench-harness", "ringside-perf"),
        cargo_bin("agent", "ringside"),
    ];
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let out_dir = lab_dir()
        .join("runs")
        .join(format!("numa-{stamp}-{}", std::process::id()));
    let root = workspace_root();
    let t0 = Instant::now();
    let status = Command::new("bash")
        .arg(root.join("bench-harness/lab/run.sh"))
        .args(["-q", "--timeout", "1500", "--out"])
        .arg(&out_dir)
        .arg("--")
        .arg(root.join("bench-harness/lab/guest/numa-diagnose.sh"))
        .args(&bins)
        .current_dir(&root)
        .stdin(Stdio::null())
        .status()
        .expect("the lab runner starts");
    let console = std::fs::read_to_string(out_dir.join("console.log")).unwrap_or_default();
    let r: BTreeMap<&str, &str> = console
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("LAB_RESULT "))
        .filter_map(|kv| kv.split_once('='))
        .collect();
    println!(
        "lab numa run: {:.0} s, status {:?}; results: {r:?}",
        t0.elapsed().as_secs_f64(),
        status.code()
    );
    let tail: String = console
        .lines()
        .filter(|l| l.starts_with("LAB_ERROR") || l.starts_with("  |"))
        .take(120)
        .collect::<Vec<_>>()
        .join("\n");
    for (k, want) in [
        ("guest.numa_nodes", "2"),
        ("membind.diagnose.status", "0"),
        ("membind.numa_misplacement", "ok"),
        ("local.diagnose.status", "0"),
        ("local.numa_misplacement", "ok"),
        ("all", "ok"),
    ] {
        assert_eq!(
            r.get(k).copied(),
            Some(want),
            "{k} (console {}):\n{tail}",
            out_dir.join("console.log").display()
        );
    }
    let nodes = r.get("membind.buffer_nodes").copied().unwrap_or("");
    assert!(
        nodes.contains("1:"),
        "numa_maps shows buffer bytes on node 1: {nodes}"
    );
}
