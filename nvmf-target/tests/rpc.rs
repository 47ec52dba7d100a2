//! The JSON-RPC socket: stats move with I/O, malformed input gets JSON-RPC errors, shutdown
//! stops the target and removes the socket file.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn call_raw(path: &std::path::Path, raw: &[u8]) -> Value {
    let mut s = UnixStream::connect(path).expect("connect rpc socket");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw).expect("send");
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).expect("read reply");
    serde_json::from_str(&line).expect("reply is JSON")
}

fn call(path: &std::path::Path, method: &str) -> Value {
    let req = json!({"jsonrpc": "2.0", "id": 1, "method": method});
    let r = call_raw(path, req.to_string().as_bytes());
    assert_eq!(r["id"], 1);
    assert!(r.get("error").is_none(), "{method}: {r}");
    r["result"].clone()
}

/// `get_stats` once the I/O qpair has nothing outstanding (bounded wait): a command counts as
/// done when the write carrying its response has returned on the target, which can be just
/// after the host has read that response.
fn settled_stats(path: &std::path::Path) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = call(path, "get_stats");
        let busy = s["reactors"][0]["qpairs"]
            .as_array()
            .is_some_and(|q| q.iter().any(|x| x["qid"] == 1 && x["outstanding"] != 0));
        if !busy || std::time::Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn stats_move_with_io() {
    let t = TestTarget::start();
    assert!(t.target.as_ref().unwrap().trace_path().is_some());
    stats_follow_io(&t);
}

/// With tracing off the counters page still exists (an anonymous file nobody else finds) and
/// `get_stats` reads the same counts from it.
#[test]
fn stats_move_with_io_without_tracing() {
    let t = TestTarget::start_with(|c| c.trace.enabled = false);
    assert_eq!(t.target.as_ref().unwrap().trace_path(), None);
    let published: Vec<_> = std::fs::read_dir(t.dir.path())
        .expect("read the trace dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("ringside."))
        .map(|e| e.file_name())
        .collect();
    assert!(
        published.is_empty(),
        "no trace file published: {published:?}"
    );
    stats_follow_io(&t);
}

fn stats_follow_io(t: &TestTarget) {
    let before = call(&t.rpc, "get_stats");
    let r0 = &before["reactors"][0];
    assert_eq!(r0["commands"]["read"], 0);
    let (_a, mut io) = t.io_pair(false, false);
    let d = pattern(8192, 1);
    assert!(io.write(0, &d, true).status.is_success());
    for _ in 0..5 {
        assert!(io.read(0, 8192).0.status.is_success());
    }
    let after = settled_stats(&t.rpc);
    let r = &after["reactors"][0];
    assert_eq!(r["commands"]["read"], 5);
    assert_eq!(r["commands"]["write"], 1);
    assert_eq!(r["bytes_read"], 5 * 8192);
    assert_eq!(r["bytes_written"], 8192);
    assert_eq!(r["connections"], 2);
    assert!(r["polls"].as_u64().unwrap() > r0["polls"].as_u64().unwrap());
    assert!(r["busy_polls"].as_u64().unwrap() > 0);
    let qps = r["qpairs"].as_array().expect("qpairs");
    let ioq = qps
        .iter()
        .find(|q| q["qid"] == 1)
        .expect("the I/O qpair is listed");
    assert_eq!(ioq["submitted"], 7, "connect + write + 5 reads");
    assert_eq!(ioq["completed"], 7);
    assert_eq!(ioq["outstanding"], 0);
    assert!(ioq["high_water"].as_u64().unwrap() >= 1);

    let subs = call(&t.rpc, "get_subsystems");
    let nvm = subs
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["nqn"] == NQN)
        .expect("subsystem listed");
    assert_eq!(nvm["namespaces"][0]["num_blocks"], (8 << 20) / 512);
    assert_eq!(nvm["controllers"].as_array().unwrap().len(), 1);
    let cfg = call(&t.rpc, "get_config");
    assert_eq!(cfg["name"], "test");

    // Closed connections leave the listing and the live count; the totals stay.
    drop((_a, io));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let r = loop {
        let s = call(&t.rpc, "get_stats");
        let r = s["reactors"][0].clone();
        if r["connections"] == 0 || std::time::Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(r["connections"], 0, "{r}");
    assert_eq!(r["connections_total"], 2, "{r}");
    assert_eq!(r["qpairs"].as_array().map(Vec::len), Some(0), "{r}");
    assert_eq!(r["commands"]["read"], 5);
}

#[test]
fn malformed_requests_get_errors() {
    let t = TestTarget::start();
    let r = call_raw(&t.rpc, b"{nope}");
    assert_eq!(r["error"]["code"], -32700, "{r}");
    let r = call_raw(&t.rpc, b"[1,2]");
    assert_eq!(r["error"]["code"], -32600, "{r}");
    let r = call_raw(
        &t.rpc,
        br#"{"jsonrpc":"2.0","id":"x","method":"frobnicate"}"#,
    );
    assert_eq!(r["error"]["code"], -32601, "{r}");
    assert_eq!(r["id"], "x");
    let r = call_raw(&t.rpc, br#"{"jsonrpc":"1.0","id":2,"method":"get_stats"}"#);
    assert_eq!(r["error"]["code"], -32600);
    let r = call_raw(
        &t.rpc,
        br#"{"jsonrpc":"2.0","id":3,"method":"get_stats","params":7}"#,
    );
    assert_eq!(r["error"]["code"], -32602);
    // Still serving afterwards.
    call(&t.rpc, "get_stats");
    assert_still_serving(&t);
}

#[test]
fn shutdown_rpc_stops_everything() {
    let mut t = TestTarget::start();
    let (_a, _io) = t.io_pair(false, false);
    let r = call(&t.rpc, "shutdown");
    assert_eq!(r, Value::Bool(true));
    let target = t.target.take().expect("running");
    target.wait();
    assert!(!t.rpc.exists(), "rpc socket file removed");
    assert!(
        std::net::TcpStream::connect(t.addr).is_err(),
        "listener closed"
    );
}

#[test]
fn trace_file_lives_with_the_target_and_groups_toggle_at_runtime() {
    let t = TestTarget::start();
    let info = call(&t.rpc, "trace_get_info");
    let path = std::path::PathBuf::from(info["path"].as_str().expect("trace path"));
    assert!(path.starts_with(t.dir.path()), "{info}");
    assert!(path.is_file(), "trace file {} missing", path.display());
    assert_eq!(info["enabled_groups"], json!(["tcp", "qpair", "poll"]));
    let req = json!({"jsonrpc": "2.0", "id": 1, "method": "trace_set_groups",
                     "params": {"disable": ["all"], "enable": ["qpair"]}});
    let r = call_raw(&t.rpc, req.to_string().as_bytes());
    assert_eq!(r["result"]["enabled_groups"], json!(["qpair"]), "{r}");
    let bad = json!({"jsonrpc": "2.0", "id": 1, "method": "trace_set_groups",
                     "params": {"enable": ["tcpp"]}});
    let r = call_raw(&t.rpc, bad.to_string().as_bytes());
    assert!(
        r["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("tcpp")),
        "{r}"
    );
    // I/O still works with the request tracepoints off.
    let (_a, mut io) = t.io_pair(false, false);
    assert!(io.read(0, 4096).0.status.is_success());
    drop(io);
    drop(_a);
    drop(t);
    assert!(
        !path.exists(),
        "{} left behind after a clean stop",
        path.display()
    );
}

#[test]
fn an_unwritable_trace_dir_only_turns_tracing_off() {
    let t = TestTarget::start_with(|c| {
        c.trace.dir = Some("/nonexistent/ringside-trace-dir".into());
    });
    let info = call(&t.rpc, "trace_get_info");
    assert_eq!(info["enabled"], false, "{info}");
    let (_a, mut io) = t.io_pair(false, false);
    assert!(io.read(0, 4096).0.status.is_success());
}

/// Reads answered in place from a malloc namespace (no backend poll between capsule and
/// response) stay outstanding on their qpair until their response has left the target, as the
/// host sees them: 16 reads sent in one segment are all in flight at once in the counters, the
/// figure the agent's Little's-law depth reads. Counted at "response queued", each read was done
/// before the next was parsed and the qpair never showed more than one.
#[test]
fn in_place_reads_stay_outstanding_until_their_response_is_sent() {
    use nvme_proto::nvme::{Nsid, Sqe};
    use nvme_proto::sgl::SglDescriptor;
    use nvme_proto::tcp::{self as ptcp, PduHeader};

    const N: u64 = 16;
    let t = TestTarget::start();
    assert!(t.target.as_ref().unwrap().trace_path().is_some());
    let (_a, mut io) = t.io_pair(false, false);
    let mut wire = Vec::new();
    for i in 0..N {
        let sqe = Sqe::read(
            io.cid(),
            Nsid(1),
            i * 8,
            8,
            SglDescriptor::tcp_transport(4096),
        )
        .expect("read sqe");
        let mut b = [0u8; 128];
        let n = ptcp::encode_capsule_cmd(&sqe, &[], &io.cfg, &mut b).expect("encode capsule");
        wire.extend_from_slice(&b[..n]);
    }
    // One send: the reactor parses every capsule of it before it flushes any answer.
    io.send(&wire);
    let mut done = 0;
    while done < N {
        match io.recv_pdu() {
            (PduHeader::CapsuleResp(c), _) => {
                assert!(c.status.is_success(), "{c:?}");
                done += 1;
            }
            (PduHeader::C2HData(h), _) if h.success => done += 1,
            (PduHeader::C2HData(_), _) => {}
            (h, _) => panic!("unexpected pdu {h:?}"),
        }
    }
    let s = settled_stats(&t.rpc);
    let r = &s["reactors"][0];
    let q = r["qpairs"]
        .as_array()
        .and_then(|q| q.iter().find(|x| x["qid"] == 1))
        .expect("the I/O qpair is listed");
    assert_eq!(q["completed"], N + 1, "connect + the reads: {q}");
    assert_eq!(q["outstanding"], 0, "{q}");
    let hw = q["high_water"].as_u64().expect("high_water");
    assert!(
        hw >= N / 2,
        "{N} reads in one segment: {hw} outstanding at most ({q})"
    );
    assert_eq!(r["commands"]["read"], N, "{r}");
    assert_eq!(r["bytes_read"], N * 4096, "{r}");
}
