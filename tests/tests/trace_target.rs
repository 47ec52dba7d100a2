//! End-to-end: `ringside-tgt` writes its shared-memory trace file while `ringside-perf` loads it, and
//! `ringside trace` (another process) rebuilds every request from the rings.
//!
//! The binaries are built with the cargo running this test (`cargo build -p <pkg> --bin <bin>
//! --message-format=json-render-diagnostics`, the way `lab_kernel_initiator.rs` locates `ringside-tgt`; a no-op
//! when fresh) and taken from the executable path cargo reports. Each test runs its own target under a unique
//! `--name`, with its trace file and RPC socket in a temporary directory and an ephemeral port, so tests may run
//! in parallel and nothing is left in `/dev/shm`.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;
use tests::{cargo_bin, Target};

/// The target's in-capsule data limit for I/O queues (`[limits] in_capsule_data_size` default).
const IN_CAPSULE: u64 = 8192;

/// A target with 64 MiB of RAM.
fn target(tag: &str) -> Target {
    Target::start(&format!("t{tag}"), &["--malloc", "64MiB"])
}

/// One JSON-RPC call on the target's socket.
fn rpc(t: &Target, method: &str, params: Value) -> Value {
    let mut s = UnixStream::connect(&t.rpc)
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", t.rpc.display()));
    let req = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    writeln!(s, "{req}").expect("cannot write the rpc request");
    let mut line = String::new();
    BufReader::new(s)
        .read_line(&mut line)
        .expect("cannot read the rpc answer");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad rpc answer {line:?}: {e}"))
}

/// Runs `ringside-perf` against the target; returns its JSON report.
fn perf(t: &Target, args: &[&str]) -> Value {
    let out = t
        .perf()
        .args(["--json", "--no-pin", "-t", "60"])
        .args(args)
        .output()
        .expect("cannot run ringside-perf");
    assert!(
        out.status.success(),
        "ringside-perf {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "ringside-perf printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// SIGTERM, then waits; asserts a clean exit and that the trace file is gone.
fn stop(mut t: Target) {
    t.stop();
    assert!(
        !t.trace_file.exists(),
        "the trace file {} is still there after a clean exit",
        t.trace_file.display()
    );
}

fn ringside(file: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(cargo_bin("agent", "ringside"));
    c.arg("--file").arg(file).arg("trace").args(args);
    c
}

fn stage_names(req: &Value) -> Vec<String> {
    req["stages"]
        .as_array()
        .unwrap_or_else(|| panic!("request without stages: {req}"))
        .iter()
        .map(|s| s["name"].as_str().unwrap_or("?").to_string())
        .collect()
}

fn arg(req: &Value, name: &str) -> Option<u64> {
    req["args"]
        .as_array()?
        .iter()
        .find(|a| a[0] == name)
        .and_then(|a| a[1].as_u64())
}

#[test]
fn every_traced_request_has_its_stages_and_the_io_count_matches_perf() {
    let tgt = target("req");
    let info = rpc(&tgt, "trace_get_info", Value::Null);
    assert_eq!(
        info["result"]["path"].as_str(),
        tgt.trace_file.to_str(),
        "trace_get_info: {info}"
    );
    let follower = ringside(&tgt.trace_file, &["--follow", "--requests", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start ringside trace --follow");

    // 4 KiB writes fit in the capsule; 16 KiB ones go through R2T + H2CData.
    let small = perf(
        &tgt,
        &[
            "-q",
            "4",
            "-o",
            "4096",
            "-w",
            "randrw",
            "-M",
            "50",
            "--io-limit",
            "2000",
        ],
    );
    let large = perf(
        &tgt,
        &[
            "-q",
            "4",
            "-o",
            "16384",
            "-w",
            "randrw",
            "-M",
            "50",
            "--io-limit",
            "300",
        ],
    );
    let ios = |v: &Value| {
        v["total"]["ios"]
            .as_u64()
            .unwrap_or_else(|| panic!("perf JSON without total.ios: {v}"))
    };
    let perf_ios = ios(&small) + ios(&large);
    assert_eq!(
        perf_ios, 2300,
        "perf reports {perf_ios} I/Os for --io-limit 2000 + 300"
    );

    stop(tgt);
    let out = follower
        .wait_with_output()
        .expect("cannot wait for ringside trace");
    assert!(
        out.status.success(),
        "ringside trace --follow failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect();
    let summary = lines
        .iter()
        .find_map(|l| l.get("summary"))
        .unwrap_or_else(|| panic!("no summary line in:\n{text}"));
    let lost = summary["lost"].as_u64().expect("summary.lost");
    let abandoned = summary["requests"]["abandoned"].as_u64().unwrap_or(0);

    let (read_stages, write_r2t_stages) = (
        [
            "tcp.capsule_received",
            "tcp.backend_submitted",
            "tcp.backend_completed",
            "tcp.response_queued",
            "tcp.response_sent",
        ],
        [
            "tcp.capsule_received",
            "tcp.r2t_sent",
            "tcp.h2c_done",
            "tcp.backend_submitted",
            "tcp.backend_completed",
            "tcp.response_queued",
            "tcp.response_sent",
        ],
    );
    let (mut io, mut reads, mut writes, mut r2t_writes, mut admin) = (0u64, 0u64, 0u64, 0u64, 0u64);
    for req in lines.iter().filter(|l| l["type"] == "request") {
        let st = stage_names(req);
        assert_eq!(
            st.first().map(String::as_str),
            Some("tcp.capsule_received"),
            "{req}"
        );
        assert_eq!(
            st.last().map(String::as_str),
            Some("tcp.response_sent"),
            "{req}"
        );
        let opcode = arg(req, "opcode").unwrap_or_else(|| panic!("no opcode arg: {req}"));
        let bytes = arg(req, "bytes").unwrap_or(0);
        // Admin commands never reach a backend (Get Log Page shares opcode 02h with Read).
        if !st.iter().any(|s| s == "tcp.backend_submitted") {
            admin += 1;
            assert_eq!(
                st,
                [
                    "tcp.capsule_received",
                    "tcp.response_queued",
                    "tcp.response_sent"
                ],
                "an admin/fabrics request: {req}"
            );
            continue;
        }
        io += 1;
        match opcode {
            0x02 => {
                reads += 1;
                assert_eq!(st, read_stages, "a read: {req}");
                // The target holds every read for some time before answering it: a zero here
                // means a path answered with a stale clock (its latency and stages read 0,
                // and the agent's Little's-law analysis sees nothing in flight).
                let queued_at = req["stages"][3]["at_ns"].as_u64().unwrap_or(0);
                assert!(queued_at > 0, "a read answered at 0 ns: {req}");
            }
            0x01 if bytes > IN_CAPSULE => {
                writes += 1;
                r2t_writes += 1;
                assert_eq!(st, write_r2t_stages, "a {bytes}-byte write (R2T): {req}");
            }
            0x01 => {
                writes += 1;
                assert_eq!(st, read_stages, "an in-capsule write: {req}");
            }
            other => panic!("unexpected I/O opcode {other:#x}: {req}"),
        }
    }
    assert!(
        admin >= 2,
        "expected the Connect commands among {admin} admin requests"
    );
    assert!(
        reads > 0 && writes > 0 && r2t_writes > 0,
        "reads {reads} writes {writes} r2t {r2t_writes}"
    );
    if lost == 0 {
        assert_eq!(
            abandoned, 0,
            "nothing lost but requests abandoned: {summary}"
        );
        assert_eq!(
            io, perf_ios,
            "traced I/O requests vs perf's I/O count; summary {summary}"
        );
    } else {
        // Every lost request shows up as missing, at most once per lost record.
        assert!(
            io <= perf_ios && perf_ios - io <= lost + abandoned,
            "io {io} perf {perf_ios} {summary}"
        );
    }
}

/// `cmds_read: N` style fields of `ringside trace --counters` (summed over reactors).
fn counter(text: &str, field: &str) -> u64 {
    let key = format!("{field}: ");
    text.match_indices(&key)
        .filter_map(|(i, _)| {
            text[i + key.len()..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

fn counters(file: &Path) -> String {
    let out = ringside(file, &["--counters"])
        .output()
        .expect("cannot run ringside trace --counters");
    assert!(
        out.status.success(),
        "ringside trace --counters failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn counters_page_of_a_live_target_shows_commands_moving_and_groups_toggle() {
    let tgt = target("cnt");
    let before = counters(&tgt.trace_file);
    assert_eq!(
        counter(&before, "cmds_read") + counter(&before, "cmds_write"),
        0,
        "{before}"
    );

    // Turn the request tracepoints off at runtime: counters keep counting.
    let r = rpc(
        &tgt,
        "trace_set_groups",
        serde_json::json!({"disable": ["tcp"]}),
    );
    let enabled = r["result"]["enabled_groups"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        !enabled.iter().any(|g| g == "tcp") && !enabled.is_empty(),
        "{r}"
    );
    let bad = rpc(
        &tgt,
        "trace_set_groups",
        serde_json::json!({"enable": ["nope"]}),
    );
    assert!(
        bad["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("nope")),
        "{bad}"
    );

    let perf = perf(
        &tgt,
        &[
            "-q",
            "4",
            "-o",
            "4096",
            "-w",
            "randrw",
            "-M",
            "50",
            "--io-limit",
            "500",
        ],
    );
    // A command counts once the target's write of its response has returned, which can be just
    // after the host read it: wait (bounded) for the last one.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let after = loop {
        let c = counters(&tgt.trace_file);
        let n = counter(&c, "cmds_read") + counter(&c, "cmds_write");
        if n >= 500 || std::time::Instant::now() > deadline {
            break c;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let (rd, wr) = (counter(&after, "cmds_read"), counter(&after, "cmds_write"));
    assert_eq!(rd + wr, 500, "counters after 500 I/Os:\n{after}");
    assert_eq!(
        Some(rd),
        perf["total"]["reads"].as_u64(),
        "reads vs perf:\n{after}"
    );
    assert_eq!(counter(&after, "bytes_read"), rd * 4096, "{after}");
    assert_eq!(counter(&after, "backend_completed"), 500, "{after}");
    assert!(counter(&after, "connections_opened") >= 2, "{after}");
    stop(tgt);
}
