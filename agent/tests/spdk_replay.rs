//! The SPDK source on the three shared recordings (`../shared/spdk-recordings/`): its RPC
//! answers replayed from `rpc.jsonl`, its trace file as copied after the run. The samples are
//! written as a ringside recording and `ringside report` reads it back, as an operator would:
//!
//! - `starved-qd1` (spdk_nvme_perf -q 1) → `initiator_limited`, with a proposed depth;
//! - `healthy-qd32` → no finding above info;
//! - `hog-on-reactor-core` (a busy loop on the reactor's core) → what RPC and trace alone show:
//!   the reactor's trace stops with requests ready, said with its (limited) confidence.

mod common;
use common::{gunzip, recordings, trace_file};

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use agent::diagnose::{report, ReportArgs};
use agent::session::Session;
use agent::spdk::replay::ReplayRpc;
use agent::spdk::trace::SpdkTrace;
use agent_core::recording::Recording;
use agent_core::Topology;
use serde_json::Value;

/// Replays one scenario into a ringside recording and runs `ringside report --json` on it.
fn report_of(dir: &Path) -> Value {
    let rpc_text = std::fs::read_to_string(dir.join("rpc.jsonl")).unwrap();
    let rpc = ReplayRpc::parse("rpc.jsonl", &rpc_text).unwrap();
    let rounds = rpc.rounds();
    let trace_path = trace_file(dir);
    let trace = SpdkTrace::from_bytes(trace_path.clone(), gunzip(&trace_path)).unwrap();
    let sources = agent::spdk::replay_sources(Box::new(rpc), Some(trace));
    let mut session = Session::from_sources(sources, Topology::default(), Duration::from_secs(1));
    let tmp = tempfile::tempdir().unwrap();
    let rec = tmp.path().join("spdk.jsonl");
    let mut f = std::fs::File::create(&rec).unwrap();
    writeln!(
        f,
        "{}",
        Recording::header_line(session.analyzer().info(), session.analyzer().topology())
    )
    .unwrap();
    for _ in 0..rounds {
        session.tick();
        writeln!(
            f,
            "{}",
            Recording::sample_line(session.last_sample().unwrap())
        )
        .unwrap();
    }
    drop(f);
    if let Ok(d) = std::env::var("SPDK_REPLAY_DUMP") {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        std::fs::copy(&rec, Path::new(&d).join(format!("{name}.jsonl"))).unwrap();
    }
    let mut out = Vec::new();
    report(
        &ReportArgs {
            recording: rec,
            json: true,
            html: None,
            interval: Duration::from_secs(1),
            topology: None,
        },
        &mut out,
    )
    .unwrap();
    serde_json::from_slice(&out).unwrap()
}

fn findings(r: &Value) -> Vec<&Value> {
    r["findings"].as_array().unwrap().iter().collect()
}

fn show(r: &Value) -> String {
    findings(r)
        .iter()
        .map(|f| {
            format!(
                "{} {} {}: {}",
                f["severity"], f["kind"], f["confidence"], f["summary"]
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn spdk_replays_give_the_scenarios_verdicts() {
    let Some(root) = recordings() else { return };

    let starved = report_of(&root.join("starved-qd1"));
    eprintln!("starved-qd1:\n{}", show(&starved));
    let limited = findings(&starved)
        .into_iter()
        .find(|f| f["kind"] == "initiator_limited")
        .unwrap_or_else(|| panic!("starved-qd1: no initiator_limited:\n{}", show(&starved)));
    assert_eq!(limited["subject"]["type"], "qpair", "{limited}");
    assert_eq!(limited["subject"]["reactor"], 0, "{limited}");
    let depth = starved["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["setting"] == "initiator_queue_depth")
        .unwrap_or_else(|| panic!("no depth proposed: {}", starved["recommendations"]));
    let proposed: u32 = depth["proposed"].as_str().unwrap().parse().unwrap();
    assert!(proposed > 1, "proposed depth {proposed}");
    assert!(
        depth["fragment"]
            .as_str()
            .unwrap()
            .contains(&format!("spdk_nvme_perf -q {proposed}")),
        "SPDK-shaped fragment: {}",
        depth["fragment"]
    );
    assert_eq!(starved["target"]["flavor"], "spdk");

    let healthy = report_of(&root.join("healthy-qd32"));
    eprintln!("healthy-qd32:\n{}", show(&healthy));
    for f in findings(&healthy) {
        assert_eq!(
            f["severity"], "info",
            "healthy-qd32 has more than info: {f}"
        );
    }

    let hog = report_of(&root.join("hog-on-reactor-core"));
    eprintln!("hog-on-reactor-core:\n{}", show(&hog));
    let stalled = findings(&hog)
        .into_iter()
        .find(|f| f["kind"] == "reactor_preemption" && f["subject"]["index"] == 0)
        .unwrap_or_else(|| panic!("hog: the trace gap is not reported:\n{}", show(&hog)));
    // Severity follows from the cost: 47 % of the sampled time held back by the hog.
    let share = stalled["cost"]["iops_share"].as_f64().expect("a cost");
    assert!(share >= 0.25, "the hog's cost: {stalled}");
    assert_eq!(stalled["severity"], "critical", "{stalled}");
    let c = stalled["confidence"].as_f64().unwrap();
    assert!(
        c > 0.0 && c < 0.6,
        "a trace snapshot's confidence stays limited: {c}"
    );
    assert!(
        stalled["summary"]
            .as_str()
            .unwrap()
            .contains("without kernel probes"),
        "{stalled}"
    );
}
