//! The kernel-probe collector (`agent::collect::kernel`) and `ringside trace --kernel` against a
//! stand-in reactor: a thread of this test process busy-spinning on a pinned core, which is
//! what a `ringside-tgt` reactor is to the scheduler (the live-target versions are in the
//! workspace `tests` crate, `tests/tests/kernel_merge.rs`).
//!
//! Root tests are named `root_*` and skip with a printed reason when not root (CI runs as
//! root). The `nobody` cases re-run this test binary as uid 65534 in a child process.

use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use agent::collect::kernel::{kernel_collector, KernelCollector, KernelOptions};
use agent::collect::ring::RingCollector;
use agent::collect::{Collector, Sources};
use agent_core::sample::{Capability, ReactorInfo, Sample, TargetInfo};
use serde_json::Value;
use trace_ring::description::{GroupDesc, ReactorDesc, TpRole, TracepointDesc};
use trace_ring::{tpoint_id, Description, Layout, TraceFile};

/// Upper bound of every wait for the kernel to count something (never reached when it works).
const PATIENCE: Duration = Duration::from_secs(30);

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root (CI runs as root)");
            return;
        }
        if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
            eprintln!("skipped: no kernel BTF (/sys/kernel/btf/vmlinux)");
            return;
        }
    };
}

fn last_cpu() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as u32
        - 1
}

fn my_tid() -> u32 {
    rustix::thread::gettid().as_raw_nonzero().get() as u32
}

/// A busy thread pinned to `cpu` until dropped: the stand-in reactor.
struct Spinner {
    tid: u32,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Spinner {
    fn start(cpu: u32) -> Spinner {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let s = stop.clone();
        let handle = std::thread::Builder::new()
            .name("reactor-0".into())
            .spawn(move || {
                let mut set = nix::sched::CpuSet::new();
                set.set(cpu as usize).expect("cpu in set");
                nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
                    .expect("pin the reactor");
                tx.send(my_tid()).expect("send tid");
                let mut x = 0u64;
                while !s.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
            .expect("spawn the reactor");
        let tid = rx.recv().expect("reactor tid");
        Spinner {
            tid,
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// `taskset -c <core> sh -c 'while :; do :; done'` at a higher priority than the reactor (so
/// it, not a passing build job, takes most of the core); killed on drop.
struct Hog(Child);

impl Hog {
    fn start(core: u32) -> Hog {
        let child = Command::new("nice")
            .args(["-n", "-10", "taskset", "-c", &core.to_string()])
            .args(["sh", "-c", "while :; do :; done"])
            .stdin(Stdio::null())
            .spawn()
            .expect("start the hog (nice, taskset, sh)");
        Hog(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn root_collector_sees_a_pinned_hog_preempt_the_reactor() {
    require_root!();
    let core = last_cpu();
    let reactor = Spinner::start(core);
    let mut info = TargetInfo {
        pid: std::process::id(),
        reactors: vec![ReactorInfo {
            index: 0,
            core,
            tid: Some(reactor.tid),
        }],
        ..TargetInfo::default()
    };
    let mut c = KernelCollector::new(std::process::id(), KernelOptions::default());
    c.describe(&mut info);
    let cap = c.capability();
    eprintln!("ebpf: {}", cap.note);
    assert!(cap.available, "probes load as root: {}", cap.note);
    assert!(
        cap.note.contains("loaded: sched") && cap.note.contains("syscalls off"),
        "the line names what runs and that syscalls is off: {}",
        cap.note
    );
    let mut first = Sample::default();
    c.collect(&info, &mut first);
    let k0 = first.kernel.clone().expect("a kernel sample once loaded");
    assert_eq!(k0.reactors.len(), 1);

    // `taskset` execs into `sh`, so the hog's pid is the child's pid.
    let hog = Hog::start(core);
    let deadline = Instant::now() + PATIENCE;
    let last = loop {
        std::thread::sleep(Duration::from_millis(500));
        let mut s = Sample::default();
        c.collect(&info, &mut s);
        let k = s.kernel.expect("kernel sample");
        let r = k.reactors[0].clone();
        let grown = r.preempted_ns > k0.reactors[0].preempted_ns + 50_000_000;
        if grown && r.top_intruder.as_ref().map(|t| t.0) == Some(hog.pid()) {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "after {PATIENCE:?}: preempted_ns {} (was {}), top intruder {:?}, hog pid {}",
            r.preempted_ns,
            k0.reactors[0].preempted_ns,
            r.top_intruder,
            hog.pid()
        );
    };
    eprintln!(
        "reactor: {} preemptions, {:.1} ms preempted, top intruder {:?} (hog pid {})",
        last.preemptions,
        last.preempted_ns as f64 / 1e6,
        last.top_intruder,
        hog.pid()
    );
    assert!(last.preemptions > k0.reactors[0].preemptions);
    assert_eq!(last.top_intruder.map(|t| t.1), Some("sh".to_string()));
    assert_eq!(last.syscalls, 0, "syscalls probe not attached by default");
}

/// A one-reactor trace file description (tracepoints are needed by the reader).
fn desc(core: u32) -> Description {
    Description {
        groups: vec![GroupDesc {
            bit: 1,
            name: "tcp".into(),
        }],
        tracepoints: vec![
            TracepointDesc {
                id: tpoint_id(1, 0),
                name: "tcp.capsule_received".into(),
                group: "tcp".into(),
                args: vec![],
                role: TpRole::Begin,
            },
            TracepointDesc {
                id: tpoint_id(1, 1),
                name: "tcp.response_sent".into(),
                group: "tcp".into(),
                args: vec![],
                role: TpRole::End,
            },
        ],
        reactors: vec![ReactorDesc {
            index: 0,
            core,
            numa_node: Some(0),
            tid: None,
        }],
        ..Default::default()
    }
}

fn layout() -> Layout {
    Layout {
        reactors: 1,
        ring_records: 64,
        qpair_slots: 4,
        stages: 0,
    }
}

/// Runs in a child process as `nobody` (see `root_collector_as_nobody_says_why`): a ring
/// collector and the kernel collector over a trace file this child writes.
#[test]
#[ignore = "run by root_collector_as_nobody_says_why in a child process"]
fn child_kernel_collector_as_nobody() {
    if std::env::var_os("RINGSIDE_TEST_KERNEL_CHILD").is_none() {
        eprintln!("skipped: only meaningful as the child of root_collector_as_nobody_says_why");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let tf = TraceFile::create(
        dir.path(),
        "nobody",
        std::process::id(),
        &desc(0),
        &layout(),
    )
    .expect("create the trace file");
    let reader = trace_ring::TraceReader::open(tf.path()).expect("open the trace file");
    let collectors: Vec<Box<dyn Collector>> = vec![
        Box::new(RingCollector::new(reader)),
        kernel_collector(std::process::id(), false),
    ];
    let mut sources = Sources::new(collectors, Box::new(trace_ring::tsc::mono_ns));
    let s = sources.sample();
    println!(
        "CAPS:{}",
        serde_json::to_string(&sources.info().capabilities).expect("json")
    );
    println!("SAMPLE:{}", serde_json::to_string(&s).expect("json"));
}

fn run_as_nobody(test: &str) -> String {
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new(&exe)
        .args([
            "--ignored",
            "--exact",
            test,
            "--nocapture",
            "--test-threads=1",
        ])
        .env("RINGSIDE_TEST_KERNEL_CHILD", "1")
        .env("TMPDIR", "/tmp")
        .current_dir("/")
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run the test binary as nobody");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn tagged<'a>(stdout: &'a str, tag: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| l.split_once(tag).map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no {tag} line in {stdout}"))
}

#[test]
fn root_collector_as_nobody_says_why() {
    require_root!();
    let stdout = run_as_nobody("child_kernel_collector_as_nobody");
    let caps: Vec<Capability> =
        serde_json::from_str(tagged(&stdout, "CAPS:")).expect("capabilities json");
    let sample: Sample = serde_json::from_str(tagged(&stdout, "SAMPLE:")).expect("sample json");
    let cap = |n: &str| {
        caps.iter()
            .find(|c| c.name == n)
            .unwrap_or_else(|| panic!("no {n} capability in {caps:?}"))
    };
    let ebpf = cap("ebpf");
    eprintln!("as nobody: ebpf: {}", ebpf.note);
    assert!(!ebpf.available, "nobody cannot load BPF: {}", ebpf.note);
    assert!(
        ebpf.note.contains("not loaded")
            && ebpf
                .note
                .contains("run as root or grant CAP_BPF and CAP_PERFMON"),
        "the line says why and what to do: {}",
        ebpf.note
    );
    for p in ["sched", "irq", "tcp", "block", "numa"] {
        assert!(ebpf.note.contains(p), "{p} is named: {}", ebpf.note);
    }
    assert_eq!(
        ebpf.note.matches("CAP_BPF").count(),
        1,
        "one reason for all: {}",
        ebpf.note
    );
    let ring = cap("trace-ring");
    assert!(ring.available, "the ring collector works: {}", ring.note);
    assert_eq!(
        sample.reactors.len(),
        1,
        "the ring still samples its reactor"
    );
    assert!(sample.kernel.is_none(), "no kernel part without probes");
}

/// A trace file nobody can read: the directory is made world-readable.
fn public_trace_file(name: &str) -> (tempfile::TempDir, TraceFile) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod the trace dir");
    let tf = TraceFile::create(dir.path(), name, std::process::id(), &desc(0), &layout())
        .expect("create the trace file");
    std::fs::set_permissions(tf.path(), std::fs::Permissions::from_mode(0o644))
        .expect("chmod the trace file");
    (dir, tf)
}

fn write_request(tf: &TraceFile, cid: u32) {
    let base = tf.clock().calib_tsc;
    let mut w = tf.take_reactor(0).expect("writer");
    w.ring.record_at(base, tpoint_id(1, 0), 0, cid, 0, 0);
    w.ring.record_at(base + 1000, tpoint_id(1, 1), 0, cid, 0, 0);
}

#[test]
fn kernel_without_follow_is_a_clear_error() {
    let (dir, tf) = public_trace_file("nofollow");
    write_request(&tf, 1);
    let o = Command::new(env!("CARGO_BIN_EXE_ringside"))
        .arg("--shm-dir")
        .arg(dir.path())
        .args(["trace", "--kernel"])
        .output()
        .expect("run ringside");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "refused");
    assert!(err.contains("--kernel needs --follow"), "says why: {err}");
}

#[test]
fn root_trace_kernel_as_nobody_prints_why_and_the_ring_continues() {
    require_root!();
    let (dir, tf) = public_trace_file("tknobody");
    write_request(&tf, 7);
    let o = Command::new(env!("CARGO_BIN_EXE_ringside"))
        .arg("--shm-dir")
        .arg(dir.path())
        .args([
            "trace",
            "--follow",
            "--duration",
            "0.3",
            "--kernel",
            "--requests",
            "--json",
        ])
        .current_dir("/")
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run ringside as nobody");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "exit 0: {stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON {l:?}: {e}")))
        .collect();
    let status = lines
        .iter()
        .find(|v| v["type"] == "kernel_status")
        .unwrap_or_else(|| panic!("a kernel_status line: {stdout}"));
    assert_eq!(status["available"], false);
    let note = status["note"].as_str().expect("note");
    assert!(
        note.contains("CAP_BPF") && note.contains("ring output continues"),
        "{note}"
    );
    let req = lines
        .iter()
        .find(|v| v["type"] == "request")
        .unwrap_or_else(|| panic!("the ring's request is still printed: {stdout}"));
    assert_eq!(req["cid"], 7);
    drop(tf);
}
