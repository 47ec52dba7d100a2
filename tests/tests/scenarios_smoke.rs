//! A short smoke run of the scenario suite (`ringside-perf scenarios`, bench-harness
//! `scenario`): two scenarios with short windows and a three-point sweep, checking the plumbing
//! end to end — real target, real initiator, real `ringside diagnose` — and the JSON's shape.
//! The full suite (the figures the README quotes) is not part of the tests: it needs a quiet
//! machine and ~3 minutes (docs/scenarios.md).
#![forbid(unsafe_code)]

use std::process::Command;

use serde_json::Value;
use tests::scenario_bins;

#[test]
fn the_suite_runs_a_depth_fault_and_a_healthy_run_and_writes_its_json() {
    let bins = scenario_bins();
    let dir = bins.agent.parent().expect("the binaries' directory");
    let out_dir = tempfile::tempdir().expect("tempdir");
    let json = out_dir.path().join("suite.json");
    let out = Command::new(&bins.perf)
        .args(["scenarios", "--only", "depth-1,healthy-32"])
        .args(["--diagnose-time", "7", "--sweep-time", "1"])
        .args(["--sweep-depths", "1,4,16"])
        .arg("--bin-dir")
        .arg(dir)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("ringside-perf scenarios runs");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the suite failed: {}\n{table}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON is written"))
            .expect("the suite's JSON parses");
    let sc = v["scenarios"].as_array().expect("scenarios");
    let names: Vec<&str> = sc.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["depth-1", "healthy-32"], "{v}");
    for s in sc {
        assert_eq!(s["status"], "ran", "{s}");
        assert!(
            s["load"]["iops"].as_f64().is_some_and(|i| i > 0.0),
            "the load ran: {s}"
        );
        assert!(s["findings"].is_array(), "{s}");
    }
    // Depth 1: the agent finds the starved initiator on its qpair, recommends a depth, and the
    // suite applies it and sets it against the sweep.
    let d = &sc[0];
    assert_eq!(d["expected"]["kind"], "initiator_limited");
    assert_eq!(
        d["matched"], true,
        "depth 1 must be reported as initiator-limited: {d}"
    );
    assert_eq!(d["found"]["subject"]["type"], "qpair");
    let rec = d["depth"]["recommended"]
        .as_u64()
        .unwrap_or_else(|| panic!("a depth is recommended: {d}"));
    assert!(rec > 1, "{d}");
    let measured = d["depth"]["measured_iops"]
        .as_f64()
        .expect("the recommended depth was applied and measured");
    assert!(measured > 0.0);
    let ratio = d["depth"]["ratio_to_best"].as_f64().expect("a ratio");
    let best = v["sweep"]
        .as_array()
        .expect("sweep")
        .iter()
        .filter_map(|p| p["iops"].as_f64())
        .fold(0.0f64, f64::max);
    assert!(
        (ratio - measured / best).abs() < 1e-9,
        "ratio = measured / best"
    );
    let depths: Vec<u64> = v["sweep"]
        .as_array()
        .expect("sweep")
        .iter()
        .filter_map(|p| p["depth"].as_u64())
        .collect();
    assert_eq!(depths, [1, 4, 16]);
    // Healthy: the verdict is "nothing above info", whatever the agent said.
    let h = &sc[1];
    assert!(h["expected"].is_null(), "{h}");
    let above: usize = h["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["severity"] != "info")
        .count();
    assert_eq!(h["matched"], above == 0, "{h}");
    assert_eq!(h["unexpected"].as_array().map(Vec::len), Some(above), "{h}");
    // The table names both and the footer counts them.
    assert!(
        table.contains("depth-1") && table.contains("healthy-32"),
        "{table}"
    );
    assert!(table.contains("faults reported: 1/1"), "{table}");
    assert_eq!(v["summary"]["faults_ran"], 1);
    assert_eq!(v["summary"]["healthy_ran"], 1);
    assert!(v["machine"]["cpus"].as_u64().is_some_and(|c| c >= 1));
}
