//! NUMA misplacement for real, in the lab guest's two NUMA nodes (this host has one): the reactor
//! on node 0 with its buffers bound to node 1 (`numactl --membind=1`) must be reported by
//! `ringside diagnose` as numa_misplacement on reactor 0; with the buffers on node 0, nothing. Then the
//! target's own NUMA binding (DESIGN §2): without numactl, with its reactor on node 1, it binds the malloc
//! namespace to node 1 (`/proc/PID/numa_maps`: policy prefer:1, pages on node 1) and diagnose finds no
//! misplacement.
//! The guest script is bench-harness/lab/guest/numa-diagnose.sh. `RINGSIDE_SKIP_LAB=1` skips it.
#![forbid(unsafe_code)]

use tests::{cargo_bin, lab, workspace_root};

#[test]
fn lab_numa_membind_to_the_other_node_is_reported_as_misplacement() {
    if lab::skipped() {
        return;
    }
    let bins = [
        cargo_bin("nvmf-target", "ringside-tgt"),
        cargo_bin("bench-harness", "ringside-perf"),
        cargo_bin("agent", "ringside"),
    ];
    let script = workspace_root().join("bench-harness/lab/guest/numa-diagnose.sh");
    let mut args = vec![script];
    args.extend(bins);
    let run = lab::run("numa", &["--timeout", "1500"], &args);
    let r = run.results();
    println!(
        "lab numa run: {:.0} s, status {:?}; results: {r:?}",
        run.secs, run.status
    );
    let tail: String = run
        .console
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
        ("placed.diagnose.status", "0"),
        ("placed.malloc_policy", "prefer:1"),
        ("placed.numa_misplacement", "ok"),
        ("all", "ok"),
    ] {
        assert_eq!(
            r.get(k).map(String::as_str),
            Some(want),
            "{k} (console {}):\n{tail}",
            run.out_dir.join("console.log").display()
        );
    }
    let nodes = r
        .get("membind.buffer_nodes")
        .map(String::as_str)
        .unwrap_or("");
    assert!(
        nodes.contains("1:"),
        "numa_maps shows buffer bytes on node 1: {nodes}"
    );
    // The namespace mapping the target bound: its pages on the reactor's node (node 1), at most a
    // few stragglers elsewhere (a preferred policy falls back only when node 1 is full).
    let pages = r
        .get("placed.malloc_pages")
        .map(String::as_str)
        .unwrap_or("");
    let count = |node: &str| -> u64 {
        pages
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(node))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let (n0, n1) = (count("N0="), count("N1="));
    assert!(
        n1 > 0 && n1 >= 9 * n0,
        "the malloc namespace's pages sit on node 1 (the reactor's): {pages}"
    );
}
