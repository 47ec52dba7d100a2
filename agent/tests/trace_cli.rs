//! `ringside trace` as a user runs it: the real binary against real trace files written with the
//! trace-ring producer (the target's own writer), in a private directory.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use trace_ring::description::{ArgDesc, ArgKind, GroupDesc, ReactorDesc, TpRole, TracepointDesc};
use trace_ring::{tpoint_id, Description, Layout, TraceFile, NO_QPAIR};

const BEGIN: u16 = tpoint_id(1, 0);
const STAGE: u16 = tpoint_id(1, 1);
const END: u16 = tpoint_id(1, 2);
const POLL: u16 = tpoint_id(2, 0);

fn desc(reactors: u32) -> Description {
    let tp = |id, name: &str, group: &str, role, args: Vec<ArgDesc>| TracepointDesc {
        id,
        name: name.into(),
        group: group.into(),
        args,
        role,
    };
    let arg = |name: &str, kind| ArgDesc {
        name: name.into(),
        kind,
    };
    Description {
        groups: vec![
            GroupDesc {
                bit: 1,
                name: "tcp".into(),
            },
            GroupDesc {
                bit: 2,
                name: "poll".into(),
            },
        ],
        tracepoints: vec![
            tp(
                BEGIN,
                "tcp.capsule_received",
                "tcp",
                TpRole::Begin,
                vec![arg("opcode", ArgKind::Opcode), arg("bytes", ArgKind::Bytes)],
            ),
            tp(STAGE, "tcp.backend_submitted", "tcp", TpRole::Stage, vec![]),
            tp(END, "tcp.response_sent", "tcp", TpRole::End, vec![]),
            tp(
                POLL,
                "poll.busy",
                "poll",
                TpRole::Event,
                vec![arg("n", ArgKind::U64)],
            ),
        ],
        reactors: (0..reactors)
            .map(|i| ReactorDesc {
                index: i,
                core: i,
                numa_node: Some(0),
                tid: None,
            })
            .collect(),
        ..Default::default()
    }
}

fn layout(reactors: u32, ring_records: u64) -> Layout {
    Layout {
        reactors,
        ring_records,
        qpair_slots: 4,
        stages: 2,
    }
}

fn ringside(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringside"))
        .arg("--shm-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("run ringside")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json_lines(o: &Output) -> Vec<Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// Writes `n` requests per reactor: begin at t, stage at t+100, end at t+300 (ticks), and a poll
/// event between them.
fn write_requests(tf: &TraceFile, reactors: u32, n: u32) {
    // Timestamps near the calibration point, so they convert to real CLOCK_MONOTONIC times.
    let base = tf.clock().calib_tsc;
    for r in 0..reactors {
        let mut w = tf.take_reactor(r).expect("writer");
        for i in 0..n {
            let t = base + u64::from(i) * 1_000 + u64::from(r) * 7;
            let (q, cid) = ((i % 3) as u16, i % 8);
            w.ring.record_at(t, BEGIN, q, cid, 0x02, 4096);
            w.ring.record_at(t + 50, POLL, NO_QPAIR, 0, 0, 0);
            w.ring.record_at(t + 100, STAGE, q, cid, 0, 0);
            w.ring.record_at(t + 300, END, q, cid, 0, 0);
        }
    }
}

#[test]
fn dump_merges_reactors_in_time_order_with_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tf = TraceFile::create(
        dir.path(),
        "dump",
        std::process::id(),
        &desc(2),
        &layout(2, 64),
    )
    .expect("create");
    write_requests(&tf, 2, 3);
    let o = ringside(dir.path(), &["trace", "--json"]);
    assert!(
        o.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let lines = json_lines(&o);
    let records: Vec<&Value> = lines.iter().filter(|v| v["type"] == "record").collect();
    assert_eq!(records.len(), 2 * 3 * 4, "every record of both reactors");
    let times: Vec<u64> = records
        .iter()
        .map(|v| v["t_ns"].as_u64().expect("t_ns"))
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "time order: {times:?}"
    );
    assert!(records.iter().any(|v| v["reactor"] == 1) && records.iter().any(|v| v["reactor"] == 0));
    let first = records[0];
    assert_eq!(first["tpoint"], "tcp.capsule_received");
    assert_eq!(first["args"]["bytes"], 4096);
    let summary = &lines.last().expect("summary")["summary"];
    assert_eq!(summary["lost"], 0);
    assert_eq!(summary["events"], 24);
}

#[test]
fn counters_json_names_every_word_including_the_rdma_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = desc(1);
    d.stages = vec![
        trace_ring::description::Stage::ToBackend,
        trace_ring::description::Stage::Backend,
    ];
    let tf = TraceFile::create(dir.path(), "ctrs", std::process::id(), &d, &layout(1, 64))
        .expect("create");
    let mut w = tf.take_reactor(0).expect("writer");
    w.counters.poll(10, true, 5);
    w.counters.qpair_bind(1, 0x0001_0001);
    w.counters.qpair_submit(1);
    w.counters.rdma_post_recv(64, 2);
    w.counters.rdma_srq_ready(64);
    w.counters.rdma_cq_poll(3);
    w.counters.rdma_recv_consumed();
    w.counters.rdma_post_send(2);
    w.counters.stage_latency_ticks(1, 100);
    w.counters.stage_latency_ticks(1, 200);
    let o = ringside(dir.path(), &["trace", "--counters", "--json"]);
    assert!(
        o.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 1, "one line per reactor: {lines:?}");
    let t = &lines[0]["totals"];
    assert_eq!(t["polls"], 1);
    assert_eq!(t["rdma_completions"], 3);
    assert_eq!(t["rdma_doorbells"], 3);
    assert_eq!(
        (t["rdma_srq_size"].clone(), t["rdma_srq_depth"].clone()),
        (64.into(), 63.into())
    );
    assert_eq!(t["rdma_pending_wrs"], 2);
    let st = &lines[0]["stages"];
    assert_eq!(
        (
            st["to_backend"]["count"].clone(),
            st["backend"]["count"].clone()
        ),
        (0.into(), 2.into()),
        "stage histograms by their ABI names: {st}"
    );
    let q = &lines[0]["qpairs"][0];
    assert_eq!(
        (q["slot"].clone(), q["outstanding"].clone()),
        (1.into(), 1.into())
    );
}

#[test]
fn requests_have_every_stage_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tf = TraceFile::create(
        dir.path(),
        "req",
        std::process::id(),
        &desc(2),
        &layout(2, 256),
    )
    .expect("create");
    write_requests(&tf, 2, 10);
    let o = ringside(dir.path(), &["trace", "--requests", "--json"]);
    assert!(
        o.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let lines = json_lines(&o);
    let reqs: Vec<&Value> = lines.iter().filter(|v| v["type"] == "request").collect();
    assert_eq!(reqs.len(), 20);
    for r in &reqs {
        let names: Vec<&str> = r["stages"]
            .as_array()
            .expect("stages")
            .iter()
            .map(|s| s["name"].as_str().expect("name"))
            .collect();
        assert_eq!(
            names,
            [
                "tcp.capsule_received",
                "tcp.backend_submitted",
                "tcp.response_sent"
            ]
        );
        assert!(r["total_ns"].as_u64().expect("total") > 0);
    }
    let summary = &lines.last().expect("summary")["summary"]["requests"];
    assert_eq!(summary["completed"], 20);
    assert_eq!(summary["abandoned"], 0);

    // Text mode prints one line per request, filtered by reactor.
    let o = ringside(dir.path(), &["trace", "--requests", "--reactor", "1"]);
    let text = stdout(&o);
    assert_eq!(text.lines().count(), 10, "{text}");
    assert!(text.lines().all(|l| l.contains(" r1 ")), "{text}");
    assert!(text.contains("backend_submitted +"), "{text}");
}

#[test]
fn tpoint_filter_selects_by_name_prefix_and_rejects_unknown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tf = TraceFile::create(
        dir.path(),
        "flt",
        std::process::id(),
        &desc(1),
        &layout(1, 64),
    )
    .expect("create");
    write_requests(&tf, 1, 5);
    let o = ringside(
        dir.path(),
        &["trace", "--json", "--tpoint", "tcp.response*"],
    );
    assert!(
        o.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let names: Vec<String> = json_lines(&o)
        .iter()
        .filter(|v| v["type"] == "record")
        .map(|v| v["tpoint"].as_str().expect("tpoint").to_string())
        .collect();
    assert_eq!(names, vec!["tcp.response_sent"; 5]);

    let o = ringside(dir.path(), &["trace", "--tpoint", "nope"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no tracepoint matches \"nope\""), "{err}");
}

#[test]
fn follow_lapped_by_the_writer_counts_every_lost_record() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let dir = tempfile::tempdir().expect("tempdir");
    let tf = TraceFile::create(
        dir.path(),
        "lap",
        std::process::id(),
        &desc(1),
        &layout(1, 16),
    )
    .expect("create");
    let mut w = tf.take_reactor(0).expect("writer");
    let base = tf.clock().calib_tsc;
    w.ring.record_at(base, POLL, NO_QPAIR, 0, 0, 0);
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringside"))
        .arg("--shm-dir")
        .arg(dir.path())
        .args([
            "trace",
            "--follow",
            "--json",
            "--interval",
            "50",
            "--duration",
            "60",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringside trace --follow");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    // The follower has attached once it prints the marker record.
    let first = lines.next().expect("a line").expect("read");
    assert!(first.contains("poll.busy"), "{first}");
    // 4000 records into a 16-record ring between two polls: the reader is lapped.
    for i in 1..=4000u64 {
        w.ring.record_at(base + i * 10, POLL, NO_QPAIR, 0, i, 0);
    }
    drop(w);
    drop(tf); // clean producer exit: the follower drains and stops
    let rest: Vec<Value> = lines
        .map(|l| serde_json::from_str(&l.expect("read")).expect("json"))
        .collect();
    let status = child.wait().expect("wait");
    assert!(status.success());
    let summary = &rest.last().expect("summary")["summary"];
    let lost = summary["lost"].as_u64().expect("lost");
    let events = summary["events"].as_u64().expect("events");
    assert_eq!(events + lost, 4001, "read + lost = written ({summary})");
    assert!(
        lost > 0,
        "a 16-record ring cannot hold 4000 records ({summary})"
    );
    // What was read after the marker ends with the newest records, in order, none invented.
    let ns: Vec<u64> = rest
        .iter()
        .filter(|v| v["type"] == "record")
        .map(|v| v["args"]["n"].as_u64().expect("n"))
        .collect();
    assert_eq!(ns.len() as u64 + 1, events);
    assert_eq!(ns.last(), Some(&4000));
    assert!(ns.windows(2).all(|w| w[0] < w[1]), "in order");
}

#[test]
fn instance_selection_and_bad_files_give_one_clear_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    // No instance at all.
    let o = ringside(dir.path(), &["trace"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no ringside-tgt instance found"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // Two live instances: must choose.
    let a = TraceFile::create(
        dir.path(),
        "a",
        std::process::id(),
        &desc(1),
        &layout(1, 16),
    )
    .expect("a");
    let _b = TraceFile::create(
        dir.path(),
        "b",
        std::process::id(),
        &desc(1),
        &layout(1, 16),
    )
    .expect("b");
    let o = ringside(dir.path(), &["trace"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("2 live instances"),
        "{err}"
    );
    let o = ringside(dir.path(), &["--name", "a", "trace", "--describe"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout(&o).contains("tcp.capsule_received"));
    let o = ringside(dir.path(), &["trace", "--list"]);
    let text = stdout(&o);
    assert!(text.contains("live") && text.lines().count() == 3, "{text}");
    drop(a);

    // Garbage and a truncated file.
    std::fs::write(dir.path().join("garbage"), b"not a trace file at all").expect("write");
    let o = ringside(
        dir.path(),
        &[
            "--file",
            &dir.path().join("garbage").to_string_lossy(),
            "trace",
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.starts_with("ringside: cannot read trace file"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // Another ABI major version.
    let other = dir.path().join("ringside.b");
    let mut bytes = std::fs::read(&other).expect("read b");
    bytes[8] = 9; // abi_major sits right after the 8-byte magic
    let copy = dir.path().join("major9");
    std::fs::write(&copy, &bytes).expect("write copy");
    let o = ringside(dir.path(), &["--file", &copy.to_string_lossy(), "trace"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains('9'), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
