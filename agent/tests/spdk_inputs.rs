//! The SPDK source's inputs, live and broken: a small fake SPDK RPC server on a unix socket
//! (answering from a recorded `rpc.jsonl`) for the client and the CLI, a socket that is not
//! SPDK's, and trace files that are truncated, foreign or of another layout. Every bad input
//! ends in one line, never a panic.

mod common;
use common::{gunzip, recordings, trace_file};

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use agent::collect::Sources;
use agent::spdk::replay::ReplayRpc;
use agent::spdk::rpc::{RpcClient, RpcTransport};
use agent::spdk::source::{SpdkCollector, SpdkOptions};
use agent::spdk::trace::{Cursor, SpdkTrace, HEADER_SIZE, HISTORY_HEADER};
use serde_json::{json, Value};

fn trace_bytes(dir: &Path) -> Vec<u8> {
    gunzip(&trace_file(dir))
}

/// Serves `replay` on a unix socket, one JSON-RPC answer per request, until the test ends.
/// `framework_get_reactors` moves the replay to its next recorded second.
fn fake_spdk(path: &Path, replay: ReplayRpc) {
    let listener = UnixListener::bind(path).unwrap();
    let replay = Arc::new(Mutex::new(replay));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let replay = Arc::clone(&replay);
            std::thread::spawn(move || serve(conn, &replay));
        }
    });
}

fn serve(conn: UnixStream, replay: &Mutex<ReplayRpc>) {
    let mut w = conn.try_clone().unwrap();
    let reqs = serde_json::Deserializer::from_reader(conn).into_iter::<Value>();
    for req in reqs {
        let Ok(req) = req else { return };
        let method = req["method"].as_str().unwrap_or("").to_string();
        let mut r = replay.lock().unwrap();
        if method == "framework_get_reactors" {
            r.begin_round();
        }
        let answer = match r.call(&method, req.get("params").cloned()) {
            Ok(v) => json!({"jsonrpc": "2.0", "id": req["id"], "result": v}),
            Err(_) => json!({"jsonrpc": "2.0", "id": req["id"],
                             "error": {"code": -32601, "message": "Method not found"}}),
        };
        if w.write_all(answer.to_string().as_bytes()).is_err() {
            return;
        }
    }
}

/// The recorded answers of `scenario` without the lines of `drop_method`, with `edit` applied.
fn recorded(
    root: &Path,
    scenario: &str,
    drop_method: &str,
    edit: impl Fn(&mut Value),
) -> ReplayRpc {
    let text = std::fs::read_to_string(root.join(scenario).join("rpc.jsonl")).unwrap();
    let mut kept = String::new();
    for l in text.lines() {
        let mut v: Value = serde_json::from_str(l).unwrap();
        if v["method"] == drop_method {
            continue;
        }
        edit(&mut v);
        kept.push_str(&v.to_string());
        kept.push('\n');
    }
    ReplayRpc::parse("rpc.jsonl", &kept).unwrap()
}

#[test]
fn the_client_reads_a_fake_spdk_and_a_missing_method_costs_one_line() {
    let Some(root) = recordings() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("spdk.sock");
    fake_spdk(
        &sock,
        recorded(&root, "healthy-qd32", "thread_get_pollers", |_| {}),
    );
    let client = RpcClient::connect(&sock).unwrap();
    assert!(
        client.version.starts_with("SPDK v26.01"),
        "{}",
        client.version
    );
    let spdk = SpdkCollector::new(Box::new(client), SpdkOptions::default());
    let mut sources = Sources::new(vec![Box::new(spdk)], Box::new(|| 0));
    let info = sources.info().clone();
    assert_eq!(info.flavor.as_deref(), Some("spdk"));
    assert_eq!(info.reactors.len(), 1);
    assert_eq!(info.settings.max_queue_depth, Some(128));
    let cap = info.capabilities.iter().find(|c| c.name == "spdk").unwrap();
    assert!(!cap.note.contains('\n'), "{}", cap.note);
    assert!(
        cap.note
            .contains("unavailable: thread_get_pollers: Method not found (code -32601)"),
        "{}",
        cap.note
    );
    let s = sources.sample();
    let spdk = s.spdk.as_ref().expect("SPDK part of the sample");
    // The rest is still used: poll groups and reactors, but no pollers.
    assert_eq!(spdk.poll_groups.len(), 1);
    assert!(spdk.reactors[0].busy_ns > 0);
    assert!(spdk.pollers.is_empty());
    // The trace file named by trace_get_info is not on this machine: said in one line.
    assert!(cap.note.contains("RPC-only"), "{}", cap.note);
}

#[test]
fn a_socket_that_is_not_spdk_is_refused_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    // An HTTP server.
    let http = tmp.path().join("http.sock");
    let l = UnixListener::bind(&http).unwrap();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let mut c = c;
            let mut buf = [0u8; 512];
            let _ = c.read(&mut buf);
            let _ = c.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        }
    });
    let e = RpcClient::connect(&http)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains("is not SPDK's RPC socket") && !e.contains('\n'),
        "{e}"
    );

    // A JSON-RPC server that is not SPDK (no spdk_get_version).
    let other = tmp.path().join("other.sock");
    let l = UnixListener::bind(&other).unwrap();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let mut w = c.try_clone().unwrap();
            for req in serde_json::Deserializer::from_reader(c)
                .into_iter::<Value>()
                .flatten()
            {
                let a = json!({"jsonrpc": "2.0", "id": req["id"],
                               "error": {"code": -32601, "message": "Method not found"}});
                let _ = w.write_all(a.to_string().as_bytes());
            }
        }
    });
    let e = RpcClient::connect(&other)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains("is not SPDK's RPC socket") && e.contains("-32601"),
        "{e}"
    );

    // Nothing listening.
    let e = RpcClient::connect(&tmp.path().join("none.sock"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.starts_with("SPDK RPC socket") && !e.contains('\n'), "{e}");
}

#[test]
fn truncated_foreign_and_other_layout_trace_files_are_refused_in_one_line() {
    let Some(root) = recordings() else { return };
    let good = trace_bytes(&root.join("healthy-qd32"));
    let one_line = |bytes: Vec<u8>, want: &str| {
        let e = SpdkTrace::from_bytes("t", bytes)
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains(want) && !e.contains('\n'), "{e}");
    };
    // Truncated: inside the header, and inside the rings (shorter than its own file_size).
    one_line(good[..100_000].to_vec(), "truncated");
    one_line(good[..2_000_000].to_vec(), "truncated");
    // Foreign: a JSON document the size of a header, and a ringside trace-ring header.
    let mut json = b"{\"not\": \"a trace\"}".to_vec();
    json.resize(HEADER_SIZE as usize, b' ');
    one_line(json, "not an SPDK v26.01 trace file");
    // Another layout: an SPDK with 32-byte-larger entries or more groups moves every offset;
    // simulated here by a history whose entries do not fit before the owner table, and by an
    // owner table that does not end at file_size.
    let lcore0 = u64::from_le_bytes(good[260_792..260_800].try_into().unwrap()) as usize;
    let mut bigger = good.clone();
    bigger[lcore0 + 8..lcore0 + 16].copy_from_slice(&(1u64 << 20).to_le_bytes());
    one_line(bigger, "entries of 32 bytes");
    let mut owners = good.clone();
    owners[260_786..260_788].copy_from_slice(&200u16.to_le_bytes());
    one_line(owners, "owner table");
    // The good file still reads.
    assert!(SpdkTrace::from_bytes("t", good).is_ok());
}

#[test]
fn a_live_reader_reads_new_entries_and_counts_what_a_lap_overwrote() {
    let Some(root) = recordings() else { return };
    let bytes = trace_bytes(&root.join("starved-qd1"));
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("nvmf_trace.pid1");
    std::fs::write(&path, &bytes).unwrap();
    let t = SpdkTrace::open(&path).unwrap();
    let ring = t.header().lcores[0];
    let mut cursor = Cursor::default();
    let first = t.poll(&mut cursor).unwrap();
    assert_eq!(first.lost, 0);
    assert!(first.entries.len() > 29_000, "{}", first.entries.len());
    // Nothing new: nothing read.
    assert!(t.poll(&mut cursor).unwrap().entries.is_empty());
    // The writer moves on by one and a half rings: the reader lost half a ring's worth.
    let next_off = ring.offset + HISTORY_HEADER - 8;
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let next = u64::from_le_bytes(
        bytes[next_off as usize..next_off as usize + 8]
            .try_into()
            .unwrap(),
    );
    use std::os::unix::fs::FileExt;
    f.write_all_at(&(next + ring.num_entries * 3 / 2).to_le_bytes(), next_off)
        .unwrap();
    let lapped = t.poll(&mut cursor).unwrap();
    assert_eq!(lapped.lost, ring.num_entries / 2);
}

#[test]
fn diagnose_on_an_spdk_socket_says_how_to_enable_tracing() {
    let Some(root) = recordings() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("spdk.sock");
    // The target as started without -e: every tracepoint group off.
    fake_spdk(
        &sock,
        recorded(&root, "starved-qd1", "", |v| {
            if v["method"] == "trace_get_info" {
                for (_, g) in v["result"].as_object_mut().unwrap().iter_mut() {
                    if g.get("tpoint_mask").is_some() {
                        g["tpoint_mask"] = json!("0x0");
                    }
                }
                v["result"]["tpoint_group_mask"] = json!("0x0");
            }
        }),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_ringside"))
        .args([
            "diagnose",
            "--duration",
            "2s",
            "--interval",
            "1s",
            "--json",
            "--no-kernel",
        ])
        .arg("--spdk-rpc")
        .arg(&sock)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["target"]["flavor"], "spdk");
    let caps = report["target"]["capabilities"].as_array().unwrap();
    let spdk = caps.iter().find(|c| c["name"] == "spdk").unwrap();
    let note = spdk["note"].as_str().unwrap();
    assert!(
        note.contains("-e nvmf_tcp,bdev") && note.contains("trace_enable_tpoint_group"),
        "{note}"
    );
    assert!(
        report["timeline"].as_array().is_some_and(|t| !t.is_empty()),
        "RPC-only analysis still comes"
    );
}

#[test]
fn record_report_and_top_work_on_an_spdk_socket_with_its_trace_file() {
    let Some(root) = recordings() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("spdk.sock");
    fake_spdk(&sock, recorded(&root, "healthy-qd32", "", |_| {}));
    let trace = tmp.path().join("nvmf_trace.pid15771");
    std::fs::write(&trace, trace_bytes(&root.join("healthy-qd32"))).unwrap();
    let rec = tmp.path().join("spdk.rec");
    let out = Command::new(env!("CARGO_BIN_EXE_ringside"))
        .args(["record", "--duration", "2s", "--no-kernel", "-o"])
        .arg(&rec)
        .arg("--spdk-rpc")
        .arg(&sock)
        .arg("--spdk-trace")
        .arg(&trace)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_ringside"))
        .args(["report", "--json"])
        .arg(&rec)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["target"]["flavor"], "spdk");
    let note = report["target"]["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "spdk")
        .and_then(|c| c["note"].as_str())
        .unwrap()
        .to_string();
    assert!(
        note.contains("nvmf_trace.pid15771 (1 lcore ring(s) of 32768 entries"),
        "{note}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_ringside"))
        .args(["top", "--once", "--json", "--no-kernel", "--spdk-rpc"])
        .arg(&sock)
        .arg("--spdk-trace")
        .arg(&trace)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snap: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(snap["target"]["flavor"], "spdk");
    assert_eq!(snap["target"]["reactors"][0]["tid"], 15771);
}
