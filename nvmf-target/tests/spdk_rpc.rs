//! `ringside rpc` (the agent's rpc.py-like client) against a running target: SPDK's method
//! names and shapes, host access changed at run time, and bad input as one line.

mod common;

use std::process::{Command, Output, Stdio};

use common::*;
use nvme_proto::nvme::Status;
use serde_json::{json, Value};

fn ringside(rpc: &std::path::Path, args: &[&str]) -> Output {
    Command::new(tests::cargo_bin("agent", "ringside"))
        .arg("rpc")
        .arg("-s")
        .arg(rpc)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ringside rpc")
}

/// Runs `ringside rpc -s SOCKET ARGS...` and parses its output (panics on failure).
fn rpc(t: &TestTarget, args: &[&str]) -> Value {
    let out = ringside(&t.rpc, args);
    assert!(
        out.status.success(),
        "ringside rpc {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "ringside rpc {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Runs a call expected to fail; returns its stderr (one line).
fn rpc_err(t: &TestTarget, args: &[&str]) -> String {
    let out = ringside(&t.rpc, args);
    assert!(!out.status.success(), "ringside rpc {args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn spdk_method_names_answer_with_spdk_shapes() {
    let t = TestTarget::start();
    let subs = rpc(&t, &["nvmf_get_subsystems"]);
    let subs = subs.as_array().expect("an array");
    assert_eq!(subs.len(), 2, "discovery + one NVM subsystem");
    assert_eq!(subs[0]["subtype"], "Discovery");
    let s = &subs[1];
    assert_eq!(
        (s["nqn"].as_str(), s["subtype"].as_str()),
        (Some(NQN), Some("NVMe"))
    );
    assert_eq!(s["allow_any_host"], true);
    assert_eq!(
        s["listen_addresses"][0],
        json!({"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1",
               "trsvcid": t.addr.port().to_string()})
    );
    assert_eq!(s["namespaces"][0]["nsid"], 1);
    assert_eq!(s["namespaces"][0]["num_blocks"], (8 << 20) / 512);
    let one = rpc(
        &t,
        &["nvmf_get_subsystems", &json!({"nqn": NQN}).to_string()],
    );
    assert_eq!(one.as_array().map(Vec::len), Some(1), "filtered by nqn");

    let (_admin, mut io) = t.io_pair(false, false);
    assert!(io.write(0, &pattern(4096, 3), true).status.is_success());
    let q = rpc(
        &t,
        &[
            "nvmf_subsystem_get_qpairs",
            &json!({"nqn": NQN}).to_string(),
        ],
    );
    let q = q.as_array().expect("an array");
    let qids: Vec<u64> = q.iter().filter_map(|x| x["qid"].as_u64()).collect();
    assert_eq!(qids, vec![0, 1], "admin and I/O queue: {q:?}");
    assert_eq!(q[0]["cntlid"], q[1]["cntlid"]);
    assert_eq!(q[1]["hostnqn"], HOSTNQN);

    let st = rpc(&t, &["nvmf_get_stats"]);
    let g = &st["poll_groups"][0];
    assert_eq!(
        (
            g["current_admin_qpairs"].as_u64(),
            g["current_io_qpairs"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(g["completed_nvme_io"], 1, "the one write");
    assert_eq!(g["transports"][0]["trtype"], "TCP");

    let r = rpc(&t, &["framework_get_reactors"]);
    let core = nvmf_target::config::online_cores()[0] as u64;
    assert_eq!(r["reactors"][0]["lcore"], core);
    assert!(r["reactors"][0]["busy"].as_u64() > Some(0), "{r}");
    assert!(r["tick_rate"].as_u64() > Some(0));

    // ringside's own names keep working through the same client.
    let own = rpc(&t, &["get_stats"]);
    assert_eq!(own["reactors"][0]["commands"]["write"], 1);
    let methods = rpc(&t, &["rpc_get_methods"]);
    for m in ["get_stats", "nvmf_get_subsystems", "framework_get_reactors"] {
        assert!(
            methods.as_array().is_some_and(|a| a.contains(&json!(m))),
            "{m}"
        );
    }
}

#[test]
fn hosts_are_allowed_and_refused_at_run_time() {
    let t = TestTarget::start();
    let connect = |t: &TestTarget| {
        let mut h = t.host();
        h.icreq(false, false);
        h.connect(NQN, 0, 31, 0, 0xffff).status
    };
    assert_eq!(connect(&t), Status::SUCCESS, "any host at start");
    let p = json!({"nqn": NQN, "allow_any_host": false}).to_string();
    assert_eq!(rpc(&t, &["nvmf_subsystem_allow_any_host", &p]), true);
    assert_eq!(
        connect(&t),
        Status::CONNECT_INVALID_HOST,
        "allow-list, empty"
    );
    let p = json!({"nqn": NQN, "host": HOSTNQN}).to_string();
    assert_eq!(rpc(&t, &["nvmf_subsystem_add_host", &p]), true);
    assert_eq!(connect(&t), Status::SUCCESS, "listed");
    let subs = rpc(
        &t,
        &["nvmf_get_subsystems", &json!({"nqn": NQN}).to_string()],
    );
    assert_eq!(subs[0]["hosts"], json!([{"nqn": HOSTNQN}]));
    assert_eq!(subs[0]["allow_any_host"], false);
    assert!(rpc_err(&t, &["nvmf_subsystem_add_host", &p]).contains("already"));
    assert_eq!(rpc(&t, &["nvmf_subsystem_remove_host", &p]), true);
    assert_eq!(connect(&t), Status::CONNECT_INVALID_HOST, "removed");
}

#[test]
fn bad_calls_are_one_line() {
    let t = TestTarget::start();
    assert!(rpc_err(&t, &["no_such_method"]).contains("method not found"));
    assert!(rpc_err(&t, &["nvmf_get_subsystems", "{not json"]).contains("not JSON"));
    let p = json!({"nqn": "nqn.2026-11.io.ringside:nope", "host": HOSTNQN}).to_string();
    assert!(rpc_err(&t, &["nvmf_subsystem_add_host", &p]).contains("Unable to find subsystem"));
    assert!(rpc_err(&t, &["nvmf_subsystem_get_qpairs"]).contains("nqn"));
    let gone = t.dir.path().join("nothing.sock");
    let out = Command::new(tests::cargo_bin("agent", "ringside"))
        .args(["rpc", "-s"])
        .arg(&gone)
        .arg("nvmf_get_stats")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect to rpc socket"));
}
