//! End-to-end: the real `ringside-tgt` binary on an ephemeral loopback port, driven by the
//! `ringside-perf` library and binary. Each test starts its own target (tests are serialized:
//! every target busy-polls a core) and kills it when done.
//!
//! The target binary is the one in this test's profile directory (so CARGO_TARGET_DIR is
//! honoured), brought up to date with `cargo build -p nvmf-target`; `RINGSIDE_TGT=<path>`
//! overrides it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use bench_harness::config::{PerfConfig, Workload};
use bench_harness::perf;
use bench_harness::scenario::procs::{Bins, Prefix, TargetProc};
use bench_harness::units::CoreId;

const NQN: &str = "nqn.2026-11.io.ringside:e2e";

static SERIAL: Mutex<()> = Mutex::new(());

/// `<target-dir>/<profile>` of this test binary (`.../<profile>/deps/<test>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in <profile>/deps")
        .to_path_buf()
}

/// The `ringside-tgt` to test against: `$RINGSIDE_TGT` if set, else the one in this profile's
/// directory, (re)built with `cargo build -p nvmf-target` (a no-op when fresh). If that build
/// fails (the target crate mid-edit) an existing binary is used with a warning.
fn target_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("RINGSIDE_TGT") {
            return PathBuf::from(p);
        }
        let dir = profile_dir();
        let bin = dir.join("ringside-tgt");
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root");
        let target_dir = dir.parent().expect("target dir");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace)
            .env("CARGO_TARGET_DIR", target_dir)
            .args(["build", "-q", "-p", "nvmf-target", "--bin", "ringside-tgt"]);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let built = cmd.status().is_ok_and(|s| s.success());
        if !built {
            assert!(
                bin.exists(),
                "cargo build -p nvmf-target failed and there is no {}",
                bin.display()
            );
            eprintln!(
                "warning: cargo build -p nvmf-target failed; testing the existing {}",
                bin.display()
            );
        }
        bin
    })
    .clone()
}

type Tgt = TargetProc;

/// `ringside-tgt` on an ephemeral loopback port with a 64 MiB RAM namespace on core 0, its trace
/// file and RPC socket in a scratch directory of its own (a killed target leaves nothing in
/// /dev/shm, and parallel tests never contend for one name); killed when dropped.
fn start_target() -> Tgt {
    let bins = Bins {
        tgt: target_binary(),
        perf: PathBuf::new(),
        agent: PathBuf::new(),
    };
    TargetProc::start(
        &bins,
        "e2e-perf-",
        &Prefix::default(),
        "127.0.0.1",
        &["--malloc", "64MiB", "--cores", "0", "--nqn", NQN],
    )
    .unwrap_or_else(|e| panic!("{}", bench_harness::error_chain(&e)))
}

fn config(t: &Tgt, subnqn: Option<&str>) -> PerfConfig {
    let mut trid = format!(
        "trtype:tcp adrfam:ipv4 traddr:{} trsvcid:{}",
        t.addr, t.port
    );
    if let Some(n) = subnqn {
        trid.push_str(" subnqn:");
        trid.push_str(n);
    }
    let mut c = PerfConfig::new(trid.parse().expect("trid"));
    c.pin = false;
    c.cores = vec![CoreId(0)];
    c.duration = Duration::from_secs(60);
    c.io_timeout = Duration::from_secs(20);
    c
}

#[test]
fn verify_every_transfer_path_against_ringside_tgt() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = start_target();
    // 512/4096: in-capsule writes; 8192: the in-capsule limit (IOCCSZ*16-64); 16384 and up:
    // R2T + H2CData, several C2HData PDUs when the target splits reads; 131072: the MDTS.
    for io in [512u64, 4096, 8192, 16384, 65536, 131072] {
        let mut c = config(&t, Some(NQN));
        c.io_size = io;
        c.queue_depth = 16;
        c.workload = Workload::RandRw;
        c.verify = true;
        c.io_limit = Some(1000);
        c.range = Some(8 << 20);
        let r = perf::run(&c)
            .unwrap_or_else(|e| panic!("io size {io}: {}", bench_harness::error_chain(&e)));
        let v = r.verify.as_ref().expect("verify summary");
        assert_eq!(v.mismatches, 0, "io size {io}: {}", r.to_text());
        assert!(r.ok(), "io size {io}: {}", r.to_text());
        assert_eq!(r.total.ios, 1000, "io size {io}");
        assert!(
            r.total.reads > 0 && r.total.writes > 0,
            "io size {io}: mixed"
        );
        assert_eq!(v.prefilled_bytes, 8 << 20, "io size {io}: range prefilled");
        assert!(
            v.checked_blocks >= r.total.reads * io / 512,
            "io size {io}: every read verified"
        );
    }
}

#[test]
fn digests_and_sequential_mix_against_ringside_tgt() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = start_target();
    let mut c = config(&t, Some(NQN));
    c.header_digest = true;
    c.data_digest = true;
    c.io_size = 65536;
    c.queue_depth = 8;
    c.qpairs_per_ns = 2;
    c.workload = Workload::Rw;
    c.read_mix = 70;
    c.verify = true;
    c.io_limit = Some(600);
    c.range = Some(4 << 20);
    let r = perf::run(&c).unwrap_or_else(|e| panic!("{}", bench_harness::error_chain(&e)));
    assert!(r.ok(), "{}", r.to_text());
    assert!(r.target.header_digest && r.target.data_digest, "digests on");
    assert_eq!(r.total.ios, 600);
}

fn perf_cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ringside-perf"))
        .args(args)
        .output()
        .expect("run ringside-perf")
}

#[test]
fn cli_json_run_and_discovery_without_subnqn() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = start_target();
    let trid = format!("trtype:tcp adrfam:ipv4 traddr:127.0.0.1 trsvcid:{}", t.port);
    let start = Instant::now();
    let out = perf_cli(&[
        "-r",
        &trid,
        "-q",
        "8",
        "-o",
        "4k",
        "-w",
        "randread",
        "-t",
        "30",
        "--io-limit",
        "500",
        "--cores",
        "0",
        "--no-pin",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(
        j["target"]["subnqn"], NQN,
        "discovery picked the NVM subsystem"
    );
    assert_eq!(j["total"]["ios"], 500);
    assert_eq!(j["config"]["queue_depth"], 8);
    assert!(j["total"]["latency"]["p99_us"]
        .as_f64()
        .is_some_and(|v| v > 0.0));
    assert_eq!(j["cores"].as_array().map(Vec::len), Some(1));
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "io limit ended the run"
    );
}

#[test]
fn wrong_subnqn_fails_clearly_with_nonzero_exit() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = start_target();
    let trid = format!(
        "trtype:tcp traddr:127.0.0.1 trsvcid:{} subnqn:nqn.2026-11.io.ringside:missing",
        t.port
    );
    let out = perf_cli(&["-r", &trid, "--io-limit", "10", "--no-pin"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("nqn.2026-11.io.ringside:missing"),
        "{stderr}"
    );
    assert!(stderr.contains("CONNECT_INVALID_PARAMETERS"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one clear line: {stderr}");
}
