//! `ringside rpc` (the agent's rpc.py-like client) against a running target: SPDK's method
//! names and shapes, host access changed at run time, and bad input as one line.

mod common;

use std::process::{Command, Output, Stdio};

use common::*;
use nvme_proto::nvme::{Cid, Nsid, Sqe, Status};
use nvme_proto::sgl::SglDescriptor;
use nvme_proto::tcp::PduHeader;
use serde_json::{json, Value};

/// The `ringside` binary, built once per test process (before any test opens an association:
/// a build under load must not outlast a host's keep-alive timeout).
fn ringside_bin() -> &'static std::path::Path {
    static BIN: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| tests::cargo_bin("agent", "ringside"))
}

fn ringside(rpc: &std::path::Path, args: &[&str]) -> Output {
    Command::new(ringside_bin())
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
    ringside_bin();
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

    // The write counts once the target's write of its response has returned, which can be
    // just after the host read it: wait for it (bounded).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let st = loop {
        let st = rpc(&t, &["nvmf_get_stats"]);
        if st["poll_groups"][0]["completed_nvme_io"] == 1 || std::time::Instant::now() > deadline {
            break st;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
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
    ringside_bin();
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
    let out = Command::new(ringside_bin())
        .args(["rpc", "-s"])
        .arg(&gone)
        .arg("nvmf_get_stats")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect to rpc socket"));
}

fn changed_ns_log(h: &mut Host) -> Vec<u32> {
    let cid = h.cid();
    let sqe = Sqe::get_log_page(
        cid,
        Nsid(0xffff_ffff),
        4,
        4096,
        0,
        SglDescriptor::tcp_transport(4096),
    )
    .expect("get log page sqe");
    let (c, d) = h.cmd(sqe, &[], false);
    assert!(
        c.status.is_success(),
        "changed namespace list: {:?}",
        c.status
    );
    d.chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .take_while(|&n| n != 0)
        .collect()
}

/// Waits (bounded by the host's read timeout) for the held AER's completion.
fn expect_aen(h: &mut Host, cid: Cid) {
    match h.recv_pdu() {
        (PduHeader::CapsuleResp(c), _) => {
            assert_eq!(c.cid, cid, "the held AER completes");
            assert_eq!(c.status, Status::SUCCESS);
            assert_eq!(
                c.dw0, 0x0004_0002,
                "notice: namespace attribute changed, log page 4"
            );
        }
        (other, _) => panic!("expected the AER's completion, got {other:?}"),
    }
}

fn io_on(h: &mut Host, nsid: u32, write: bool) -> Status {
    let cid = h.cid();
    let data = pattern(4096, 9);
    if write {
        let sqe = Sqe::write(cid, Nsid(nsid), 0, 8, SglDescriptor::in_capsule(0, 4096))
            .expect("write sqe");
        h.cmd(sqe, &data, true).0.status
    } else {
        let sqe =
            Sqe::read(cid, Nsid(nsid), 0, 8, SglDescriptor::tcp_transport(4096)).expect("read sqe");
        let (c, d) = h.cmd(sqe, &[], false);
        if c.status.is_success() {
            assert_eq!(d, data, "read back what was written on nsid {nsid}");
        }
        c.status
    }
}

#[test]
fn a_namespace_added_at_run_time_raises_the_aen_and_fills_the_changed_list() {
    ringside_bin();
    let t = TestTarget::start();
    let (mut admin, mut io) = t.io_pair(false, false);
    // Namespace attribute notices on (as Linux does), one AER held.
    let cid = admin.cid();
    let c = admin
        .cmd(Sqe::set_features(cid, 0x0b, false, 0x100), &[], false)
        .0;
    assert!(c.status.is_success());
    let aer = Cid(900);
    admin.capsule(&Sqe::async_event_request(aer), &[]);
    assert_eq!(
        io_on(&mut io, 2, false),
        Status::INVALID_NAMESPACE_OR_FORMAT
    );

    let p = json!({"nqn": NQN, "namespace": {"backend": "malloc", "size": "4MiB"}});
    assert_eq!(
        rpc(&t, &["nvmf_subsystem_add_ns", &p.to_string()]),
        2,
        "the lowest free nsid"
    );
    expect_aen(&mut admin, aer);
    assert_eq!(changed_ns_log(&mut admin), vec![2]);
    assert_eq!(
        changed_ns_log(&mut admin),
        Vec::<u32>::new(),
        "the read cleared it"
    );
    let (c, list) = admin.identify(2, 0);
    assert!(c.status.is_success());
    assert_eq!(
        &list[..12],
        &[1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0],
        "active list 1, 2"
    );
    assert_eq!(
        io_on(&mut io, 2, true),
        Status::SUCCESS,
        "i/o on the new namespace"
    );
    assert_eq!(io_on(&mut io, 2, false), Status::SUCCESS);
    let subs = rpc(
        &t,
        &["nvmf_get_subsystems", &json!({"nqn": NQN}).to_string()],
    );
    assert_eq!(subs[0]["namespaces"][1]["nsid"], 2);

    // Removal: the next AER reports it, the namespace stops answering.
    let aer = Cid(901);
    admin.capsule(&Sqe::async_event_request(aer), &[]);
    let p = json!({"nqn": NQN, "nsid": 2}).to_string();
    assert_eq!(rpc(&t, &["nvmf_subsystem_remove_ns", &p]), true);
    expect_aen(&mut admin, aer);
    assert_eq!(changed_ns_log(&mut admin), vec![2]);
    assert_eq!(
        io_on(&mut io, 2, false),
        Status::INVALID_NAMESPACE_OR_FORMAT
    );
    assert!(rpc_err(&t, &["nvmf_subsystem_remove_ns", &p]).contains("no active namespace"));
    let bad = json!({"nqn": NQN, "namespace": {"backend": "malloc", "size": "1000"}});
    assert!(rpc_err(&t, &["nvmf_subsystem_add_ns", &bad.to_string()]).contains("multiple"));
    let reused = json!({"nqn": NQN, "namespace": {"nsid": 2, "backend": "null", "size": "1MiB"}});
    assert!(rpc_err(&t, &["nvmf_subsystem_add_ns", &reused.to_string()]).contains("nsid"));
    // Namespace 1 was never disturbed.
    assert!(io.read(0, 4096).0.status.is_success());
}

#[test]
fn the_keep_alive_timeout_frees_a_controller_whose_host_vanished() {
    ringside_bin();
    let t = TestTarget::start();
    // An admin queue with a 500 ms keep-alive timeout and an I/O queue, then silence.
    let mut admin = t.host();
    admin.icreq(false, false);
    let c = admin.connect(NQN, 0, 31, 500, 0xffff);
    assert!(c.status.is_success());
    admin.enable();
    let mut io = t.host();
    io.icreq(false, false);
    assert!(io.connect(NQN, 1, 31, 0, c.dw0 as u16).status.is_success());
    let q = json!({"nqn": NQN}).to_string();
    assert_eq!(
        rpc(&t, &["nvmf_subsystem_get_qpairs", &q])
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    // The target tears the association down by itself: both sockets close (the host's read
    // timeout bounds the wait) and the subsystem has no qpair left.
    admin.expect_closed();
    io.expect_closed();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let left = rpc(&t, &["nvmf_subsystem_get_qpairs", &q]);
        if left.as_array().is_some_and(Vec::is_empty) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the controller is still there 20 s after its host went silent: {left}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_still_serving(&t);
}
