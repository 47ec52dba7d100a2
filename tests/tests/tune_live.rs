//! `ringside tune` against a live `ringside-tgt`: a short passive window at depth 1, a small
//! depth sweep with the real `ringside-perf`, the knee, the comparison with the passive
//! recommendation, and the JSON it writes; a p99 limit no point can meet stops the sweep after
//! its first point and leaves no knee; bad input is one clear line.
#![forbid(unsafe_code)]

use std::process::Command;
use std::sync::Mutex;

use serde_json::Value;
use tests::{cargo_bin, Target};

/// The live tests share the machine's two cores: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn tune(t: &Target, extra: &[&str]) -> (Value, String) {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let json = out_dir.path().join("tune.json");
    let out = Command::new(cargo_bin("agent", "ringside"))
        .arg("--file")
        .arg(&t.trace_file)
        .arg("tune")
        .arg("--rpc-socket")
        .arg(&t.rpc)
        .arg("--perf")
        .arg(cargo_bin("bench-harness", "ringside-perf"))
        .args(["--step", "1s", "--passive", "5s", "--qpairs", "1"])
        .args(extra)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("ringside tune runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "ringside tune failed: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = serde_json::from_str(&std::fs::read_to_string(&json).expect("tune wrote its JSON"))
        .expect("the JSON parses");
    (v, text)
}

#[test]
fn tune_sweeps_finds_the_knee_and_compares_the_passive_recommendation() {
    let _g = serial();
    let t = Target::start("tune", &["--malloc", "64MiB", "--cores", "0"]);
    let (v, text) = tune(&t, &["--depth", "1", "--depths", "1,4,16"]);
    let sweep = v["sweep"].as_array().expect("sweep");
    let depths: Vec<u64> = sweep.iter().filter_map(|p| p["depth"].as_u64()).collect();
    assert!(
        depths.len() >= 2 && depths.starts_with(&[1, 4]),
        "the sweep measured the depths in order: {depths:?}"
    );
    let best = sweep
        .iter()
        .filter_map(|p| p["iops"].as_f64())
        .fold(0.0f64, f64::max);
    assert!(best > 0.0, "{v}");
    assert_eq!(v["knee"]["best"]["iops"].as_f64(), Some(best), "{v}");
    let knee_iops = v["knee"]["knee"]["iops"].as_f64().expect("a knee");
    assert!(
        knee_iops >= 0.95 * best,
        "the knee is within 95 % of the best"
    );
    assert!(
        v["current"]["iops"].as_f64().is_some_and(|i| i > 0.0),
        "{v}"
    );
    assert_eq!(v["current"]["depth"], 1);
    // Depth 1 is starved: the passive diagnosis recommends a depth, tune measures it.
    let c = &v["comparison"];
    assert_eq!(c["recommended"], true, "{v}");
    assert!(c["depth"].as_u64().is_some_and(|d| d > 1), "{c}");
    let measured = c["measured_iops"]
        .as_f64()
        .expect("the recommendation was measured");
    let share = c["share_of_best"].as_f64().expect("a share of the best");
    assert!((share - measured / best).abs() < 1e-9, "{c}");
    assert!(
        v["passive_findings"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f["kind"] == "initiator_limited")),
        "{v}"
    );
    // Nothing to change on the target at this load, or the target said why it was not applied.
    for a in v["target_settings"].as_array().expect("target_settings") {
        assert!(
            ["kept", "rolled back", "not applied"].contains(&a["outcome"].as_str().unwrap_or("")),
            "{a}"
        );
        assert!(a["reason"].as_str().is_some_and(|r| !r.is_empty()), "{a}");
    }
    assert!(
        text.contains("best: depth") && text.contains("passive vs knee"),
        "{text}"
    );
}

#[test]
fn an_unreachable_p99_limit_stops_the_sweep_and_leaves_no_knee() {
    let _g = serial();
    let t = Target::start("tunep", &["--malloc", "64MiB", "--cores", "0"]);
    let (v, text) = tune(
        &t,
        &[
            "--depth",
            "4",
            "--depths",
            "1,2,4",
            "--p99-max",
            "1us",
            "--no-apply",
        ],
    );
    let sweep = v["sweep"].as_array().expect("sweep");
    assert_eq!(
        sweep.len(),
        1,
        "stopped after the first point over the limit: {v}"
    );
    assert!(v["knee"].is_null(), "{v}");
    assert_eq!(v["p99_max_us"].as_f64(), Some(1.0));
    assert!(text.contains("no point kept p99 under the limit"), "{text}");
}

#[test]
fn bad_tune_input_is_one_clear_line() {
    let t = Target::start("tuneb", &["--malloc", "64MiB", "--cores", "0"]);
    let out = Command::new(cargo_bin("agent", "ringside"))
        .arg("--file")
        .arg(&t.trace_file)
        .args(["tune", "--depths", "0,4"])
        .output()
        .expect("ringside runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("between 1 and 4096"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
