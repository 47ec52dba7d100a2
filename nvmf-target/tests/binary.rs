//! The `ringside-tgt` binary: help, clear errors for bad input, serving, and a clean exit on
//! SIGTERM (socket file removed).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_ringside-tgt");

#[test]
fn help_describes_the_common_flags() {
    let out = Command::new(BIN)
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--malloc",
        "--null",
        "--cores",
        "--config",
        "--rpc-socket",
        "--allow-host",
        "--block-size",
    ] {
        assert!(s.contains(flag), "--help mentions {flag}");
    }
}

#[test]
fn bad_input_is_one_clear_line() {
    for (args, want) in [
        (
            vec!["--listen", "127.0.0.1:0", "--malloc", "1000"],
            "multiple of the block size",
        ),
        (
            vec![
                "--listen",
                "127.0.0.1:0",
                "--malloc",
                "1GiB",
                "--cores",
                "4096",
            ],
            "core 4096",
        ),
        (vec!["--listen", "127.0.0.1:0"], "no namespace"),
        (
            vec![
                "--listen",
                "127.0.0.1:0",
                "--null",
                "1GiB",
                "--nqn",
                "bogus",
            ],
            "invalid NQN",
        ),
        (
            vec!["--config", "/nonexistent/ringside.toml"],
            "cannot read config file",
        ),
        (vec!["--malloc", "12 parsecs"], "invalid value"),
        (
            vec![
                "--listen",
                "127.0.0.1:0",
                "--null",
                "1GiB",
                "--trace-ring-records",
                "1000",
            ],
            "ring_records must be a power of two",
        ),
    ] {
        let out = Command::new(BIN).args(&args).output().expect("run");
        assert!(!out.status.success(), "{args:?} must fail");
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains(want), "{args:?}: expected {want:?} in {e:?}");
        assert!(!e.contains("panicked"), "{args:?} panicked: {e}");
    }
}

#[test]
fn check_prints_the_example_config() {
    let ex = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/target.toml");
    let core = nvmf_target::config::online_cores()[0].to_string();
    let out = Command::new(BIN)
        .args(["--config", ex, "--cores", &core, "--check"])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("nqn.2026-11.io.ringside:nvme0"));
}

#[test]
fn serves_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("tgt.sock");
    let (mut child, addr, _stderr) =
        common::spawn_tgt(dir.path(), &["--null", "64MiB", "--name", "bintest"]);
    let mut h = common::Host::open(addr);
    h.icreq(false, false);
    let c = h.connect(common::NQN, 0, 31, 0, 0xffff);
    assert!(c.status.is_success());
    assert!(sock.exists());
    let trace = dir.path().join("ringside.bintest");
    assert!(
        trace.is_file(),
        "trace file {} while running",
        trace.display()
    );
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let status = child.wait().expect("wait");
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    assert!(!sock.exists(), "rpc socket removed");
    assert!(!trace.exists(), "trace file removed on a clean exit");
}

#[test]
fn no_trace_writes_no_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let core = nvmf_target::config::online_cores()[0].to_string();
    let mut child = Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--null",
            "64MiB",
            "--cores",
            &core,
        ])
        .args(["--name", "bintest-notrace", "--no-trace"])
        .arg("--rpc-socket")
        .arg(dir.path().join("tgt.sock"))
        .arg("--trace-dir")
        .arg(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringside-tgt");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    loop {
        let l = lines
            .next()
            .expect("target exited before its rpc line")
            .expect("stderr line");
        if l.contains("rpc socket") {
            break;
        }
    }
    let trace = dir.path().join("ringside.bintest-notrace");
    let exists = trace.exists();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("wait");
    assert!(!exists, "--no-trace still created {}", trace.display());
    assert!(status.success(), "clean exit: {status:?}");
}

/// The cores a thread of `pid` may run on, by thread name (from /proc).
fn thread_cpus(pid: u32) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        if let Some(list) = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        {
            out.push((comm.trim().to_string(), list.trim().to_string()));
        }
    }
    out
}

/// The service threads (acceptor, RPC) run on the cores no reactor owns, so they never preempt
/// a reactor; the reactor stays on its own core.
#[test]
fn service_threads_stay_off_the_reactor_cores() {
    let cores = nvmf_target::config::online_cores();
    if cores.len() < 2 {
        eprintln!("skipped: one online core, nothing to keep the service threads on");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, _addr, _stderr) =
        common::spawn_tgt(dir.path(), &["--null", "64MiB", "--name", "bintest-mask"]);
    let threads = thread_cpus(child.id());
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let reactor_core = cores[0].to_string();
    let of = |name: &str| {
        threads
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, l)| l.clone())
            .unwrap_or_else(|| panic!("no thread {name}: {threads:?}"))
    };
    assert_eq!(
        of(&format!("reactor-{reactor_core}")),
        reactor_core,
        "{threads:?}"
    );
    for service in ["acceptor", "rpc"] {
        let list = of(service);
        let on: Vec<&str> = list.split(',').collect();
        assert!(
            !on.contains(&reactor_core.as_str()) && !list.starts_with(&format!("{reactor_core}-")),
            "{service} may run on the reactor's core {reactor_core}: {list} ({threads:?})"
        );
    }
}
