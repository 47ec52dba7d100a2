//! End-to-end: the agent keeps off the reactors' cores. A `ringside-tgt` with its reactor on
//! CPU 0 and `ringside diagnose` watching it: every agent thread's allowed CPUs exclude 0 while
//! it runs, and the report's `placement` capability says where it ran. Under `taskset -c 0` the
//! agent has nowhere else to go: it stays, and says it shares the reactor's core. Needs two or
//! more CPUs (skips with a printed reason otherwise).
#![forbid(unsafe_code)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tests::{cargo_bin, Target};

/// `Cpus_allowed_list` of every thread of `pid`.
fn thread_cpus(pid: u32) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("status")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|v| v.trim().to_string())
        })
        .collect()
}

/// Runs `ringside diagnose` on `tgt` (prefixed by `wrap`, e.g. taskset), samples its threads'
/// CPU lists while it runs, and returns them with the report.
fn diagnose(tgt: &Target, wrap: &[&str]) -> (Vec<String>, Value) {
    let agent = cargo_bin("agent", "ringside");
    let mut cmd = match wrap.split_first() {
        Some((prog, args)) => {
            let mut c = Command::new(prog);
            c.args(args).arg(&agent);
            c
        }
        None => Command::new(&agent),
    };
    let child = cmd
        .args([
            "diagnose",
            "--no-kernel",
            "--json",
            "--duration",
            "4s",
            "--file",
        ])
        .arg(&tgt.trace_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ringside diagnose");
    // Sample once the session is open (its first window is 1 s in).
    let until = Instant::now() + Duration::from_millis(2500);
    let mut seen = Vec::new();
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(250));
        seen.extend(thread_cpus(child.id()));
    }
    let out = child
        .wait_with_output()
        .expect("wait for ringside diagnose");
    assert!(
        out.status.success(),
        "ringside diagnose failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("diagnose JSON");
    (seen, report)
}

fn placement(report: &Value) -> Value {
    report["target"]["capabilities"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "placement"))
        .cloned()
        .unwrap_or_else(|| panic!("no placement capability in {}", report["target"]))
}

#[test]
fn the_agent_keeps_off_the_reactor_core_and_says_where_it_ran() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        println!("skipped: needs two CPUs (the reactor takes CPU 0), this machine has {cpus}");
        return;
    }
    // One reactor on CPU 0.
    let tgt = Target::start("place", &["--null", "64MiB", "--cores", "0"]);
    let (seen, report) = diagnose(&tgt, &[]);
    assert!(!seen.is_empty(), "no agent thread seen");
    // Thread lists are read while the agent starts too: the last ones are what matters, and
    // none may include CPU 0 once the session is open.
    let last = &seen[seen.len().saturating_sub(3)..];
    for l in last {
        assert!(
            // A range "a-b" includes CPU 0 only when it starts there.
            !l.split(',').any(|r| r.split('-').next() == Some("0")),
            "an agent thread may still run on the reactor's CPU 0: {l} (all seen: {seen:?})"
        );
    }
    let p = placement(&report);
    assert_eq!(p["available"], true, "{p}");
    assert!(
        p["note"]
            .as_str()
            .is_some_and(|n| n.contains("off the reactor cores (0)")),
        "{p}"
    );

    // Pinned by the operator to the reactor's CPU: the agent stays, and says so.
    let (seen, report) = diagnose(&tgt, &["taskset", "-c", "0"]);
    assert!(seen.iter().all(|l| l == "0"), "taskset stands: {seen:?}");
    let p = placement(&report);
    assert_eq!(p["available"], false, "{p}");
    assert!(
        p["note"]
            .as_str()
            .is_some_and(|n| n.contains("shares them with the reactors (0)")),
        "{p}"
    );
}
