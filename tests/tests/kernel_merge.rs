//! End-to-end: kernel probes merged with the target's own trace. A live `ringside-tgt` (one
//! reactor, pinned to the last cpu) under `ringside-perf` QD32 load, a CPU hog pinned on the
//! reactor's core, and `ringside trace --follow --kernel --requests --json`: the kernel's
//! preemption of the reactor by the hog lands, on the one CLOCK_MONOTONIC timeline, inside the
//! requests it delayed. Also a measurement (printed, not asserted) of what the probes cost in
//! IOPS.
//!
//! Root tests (`root_*`) skip with a printed reason when not root or without kernel BTF (CI runs
//! as root). Binaries are built with the cargo running this test (`tests::cargo_bin`).
#![forbid(unsafe_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tests::{cargo_bin, perf_report, Target};

/// The tests here share the machine's cores (targets, loads and hogs pinned to the last CPU):
/// run one at a time, so one test's hog never preempts another's reactor.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn root_with_btf() -> bool {
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .ok()
        == Some(0);
    if !root {
        eprintln!("skipped: needs root (CI runs as root)");
        return false;
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        eprintln!("skipped: no kernel BTF (/sys/kernel/btf/vmlinux)");
        return false;
    }
    true
}

fn last_cpu() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as u32
        - 1
}

/// A target with one reactor on `core` and 64 MiB of RAM.
fn target(tag: &str, core: u32) -> Target {
    target_with(tag, core, &["--malloc", "64MiB"])
}

/// A target with one reactor on `core` whose namespace is `backend` (`--malloc 64MiB`,
/// `--uring /dev/loop3`...). Large rings: a debug-build reader that falls a lap behind loses
/// the very requests the test looks for.
fn target_with(tag: &str, core: u32, backend: &[&str]) -> Target {
    let core = core.to_string();
    let mut args = vec!["--cores", core.as_str(), "--trace-ring-records", "1048576"];
    args.extend_from_slice(backend);
    Target::start(&format!("k{tag}"), &args)
}

/// `ringside-perf` QD32 4 KiB random reads for `secs`, in the background, its worker pinned to
/// cpu 0 (off the reactor's core when there are two or more: the load keeps coming while the
/// hog holds the reactor's core).
fn perf(t: &Target, secs: u32) -> Child {
    t.perf()
        .args(["--json", "--cores", "0", "-t", &secs.to_string()])
        .args(["-q", "32", "-o", "4096", "-w", "randread"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run ringside-perf")
}

/// `taskset -c <core> sh -c 'while :; do :; done'` at nice -10 (so it, not a passing build job,
/// is what takes the core); `taskset` execs `sh`, so the child's pid is the hog's. Killed on drop.
struct Hog(Child);

impl Hog {
    fn start(core: u32) -> Hog {
        Hog(Command::new("nice")
            .args(["-n", "-10", "taskset", "-c", &core.to_string()])
            .args(["sh", "-c", "while :; do :; done"])
            .stdin(Stdio::null())
            .spawn()
            .expect("start the hog (nice, taskset, sh)"))
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn trace(file: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(cargo_bin("agent", "ringside"));
    c.arg("--file").arg(file).arg("trace").args(args);
    c
}

#[test]
fn root_preemption_by_a_hog_lands_inside_the_requests_it_delayed() {
    let _g = serial();
    if !root_with_btf() {
        return;
    }
    let core = last_cpu();
    let tgt = target("tl", core);
    let perf = perf(&tgt, 6);
    std::thread::sleep(Duration::from_millis(500));
    let hog = Hog::start(core);
    let out = trace(
        &tgt.trace_file,
        &[
            "--follow",
            "--duration",
            "4",
            "--kernel",
            "--requests",
            "--json",
        ],
    )
    .output()
    .expect("run ringside trace --kernel");
    let hog_pid = u64::from(hog.0.id());
    drop(hog);
    let report = perf_report(perf);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ringside trace failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON {l:?}: {e}")))
        .collect();
    let status = lines
        .iter()
        .find(|v| v["type"] == "kernel_status")
        .expect("a kernel_status line");
    assert_eq!(status["available"], true, "probes load as root: {status}");
    let requests: Vec<(u64, u64)> = lines
        .iter()
        .filter(|v| v["type"] == "request")
        .map(|v| {
            (
                v["start_ns"].as_u64().expect("start_ns"),
                v["total_ns"].as_u64().expect("total_ns"),
            )
        })
        .collect();
    let preemptions: Vec<(u64, u64)> = lines
        .iter()
        .filter(|v| v["type"] == "kernel" && v["event"] == "preempted" && v["by_pid"] == hog_pid)
        .map(|v| {
            (
                v["t_ns"].as_u64().expect("t_ns"),
                v["duration_ns"].as_u64().expect("duration_ns"),
            )
        })
        .collect();
    assert!(!requests.is_empty(), "requests traced under load");
    assert!(
        !preemptions.is_empty(),
        "the hog (pid {hog_pid}) preempted the reactor; kernel lines: {:?}",
        lines
            .iter()
            .filter(|v| v["type"] == "kernel")
            .take(5)
            .collect::<Vec<_>>()
    );
    // Time order on the one clock: every line's key (request start, event start) ascends.
    let keys: Vec<u64> = lines
        .iter()
        .filter_map(|v| match v["type"].as_str() {
            Some("request") => v["start_ns"].as_u64(),
            Some("kernel") => v["t_ns"].as_u64(),
            _ => None,
        })
        .collect();
    let disorder: Vec<(usize, u64, u64)> = keys
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[0] > w[1])
        .map(|(i, w)| (i, w[0], w[1]))
        .collect();
    assert!(
        disorder.is_empty(),
        "requests and kernel events interleave in time order; out of order at (line, key, next key): {:?}",
        &disorder[..disorder.len().min(5)]
    );
    // A request in flight when the reactor was switched away to the hog (the switch inside its
    // [start, end]) waits for the hog's slice: a latency spike. Preemptions between requests
    // are common too (a malloc-backed request is short), so only some overlap.
    let spanning: Vec<((u64, u64), (u64, u64))> = preemptions
        .iter()
        .flat_map(|&(t, d)| {
            requests
                .iter()
                .filter(move |&&(s, total)| s <= t && t <= s + total)
                .map(move |&r| ((t, d), r))
        })
        .collect();
    let mut totals: Vec<u64> = requests.iter().map(|r| r.1).collect();
    totals.sort_unstable();
    let median = totals[totals.len() / 2];
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    eprintln!(
        "{} requests (median {:.1} us), {} preemptions by the hog, {} request/preemption overlaps, perf {:.0} IOPS",
        requests.len(),
        median as f64 / 1e3,
        preemptions.len(),
        spanning.len(),
        report["total"]["iops"].as_f64().unwrap_or(0.0)
    );
    let ((t, d), (s, total)) = *spanning.first().unwrap_or_else(|| {
        panic!(
            "no request was in flight at a switch to the hog; preemptions {:?}",
            &preemptions[..preemptions.len().min(5)]
        )
    });
    eprintln!(
        "e.g. request start {s} total {:.1} us contains sched_switch at +{:.1} us for {:.1} us",
        total as f64 / 1e3,
        (t - s) as f64 / 1e3,
        d as f64 / 1e3
    );
    // One clock: the reactor was off its core until t + d, so the request cannot have ended
    // before (with ring ticks and eBPF on different clocks this breaks).
    assert!(
        s + total >= t + d,
        "the request ends after the reactor runs again: request [{s}, {}], preempted [{t}, {}]",
        s + total,
        t + d
    );
    assert!(
        total > median,
        "a spike: {total} ns against a median of {median} ns"
    );
}

/// Not asserted: IOPS at QD32 with the probes attached against without. Both runs have the
/// same `ringside trace --follow` reading the rings (printing nothing); only `--kernel`
/// differs, so the ratio is the probes' cost. Alternates twice and keeps the best of each.
#[test]
fn root_probe_overhead_on_iops_is_printed() {
    let _g = serial();
    if !root_with_btf() {
        return;
    }
    let tgt = target("ov", last_cpu());
    let run = |kernel: bool| -> f64 {
        let mut args = vec!["--follow", "--duration", "4", "--qpair", "4095"];
        if kernel {
            args.push("--kernel");
        }
        let mut tracer = trace(&tgt.trace_file, &args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ringside trace");
        // Let the probes attach before the load starts.
        std::thread::sleep(Duration::from_millis(500));
        let report = perf_report(perf(&tgt, 3));
        let _ = tracer.wait();
        report["total"]["iops"].as_f64().expect("total.iops")
    };
    let mut without = 0f64;
    let mut with = 0f64;
    for _ in 0..2 {
        without = without.max(run(false));
        with = with.max(run(true));
    }
    println!(
        "QD32 4 KiB randread, best of 2 x 3 s: {without:.0} IOPS without probes, {with:.0} with \
         (sched, irq, tcp, block, numa): ratio {:.3}",
        with / without
    );
    assert!(without > 0.0 && with > 0.0, "both runs moved I/O");
}

/// The first value under `key` anywhere in `v` (recording lines wrap their payload in a tag).
fn find<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Object(m) => m.get(key).or_else(|| m.values().find_map(|x| find(x, key))),
        Value::Array(a) => a.iter().find_map(|x| find(x, key)),
        _ => None,
    }
}

/// The agent's `KernelCollector` on a live target, through `ringside record` (the tests crate
/// does not link the agent): the reactor's preempted time grows and the pinned hog is its top
/// intruder. Skips with a reason while the session does not load the kernel collector yet
/// (no `ebpf` capability in the recording: `SessionOptions.kernel` not wired).
#[test]
fn root_recorded_kernel_sample_names_the_hog() {
    let _g = serial();
    if !root_with_btf() {
        return;
    }
    let core = last_cpu();
    let tgt = target("rec", core);
    let perf = perf(&tgt, 8);
    std::thread::sleep(Duration::from_millis(500));
    let hog = Hog::start(core);
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = dir.path().join("rec.jsonl");
    let out = Command::new(cargo_bin("agent", "ringside"))
        .arg("--file")
        .arg(&tgt.trace_file)
        .args(["record", "--duration", "4s", "--interval", "1s", "-o"])
        .arg(&rec)
        .output()
        .expect("run ringside record");
    let hog_pid = u64::from(hog.0.id());
    drop(hog);
    let _ = perf_report(perf);
    assert!(
        out.status.success(),
        "ringside record failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&rec).expect("read the recording");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect();
    let caps = lines
        .first()
        .and_then(|h| find(h, "capabilities"))
        .and_then(Value::as_array)
        .expect("the header lists capabilities");
    let Some(ebpf) = caps.iter().find(|c| c["name"] == "ebpf") else {
        eprintln!(
            "skipped: this ringside's session does not load the kernel collector yet \
             (SessionOptions.kernel, /work/notes/requests-lead.md)"
        );
        return;
    };
    assert_eq!(ebpf["available"], true, "probes load as root: {ebpf}");
    let reactor0 = |v: &Value| -> Option<Value> {
        find(v, "kernel")
            .and_then(|k| k["reactors"].as_array())
            .and_then(|r| r.first())
            .cloned()
    };
    let t_ns: Vec<u64> = lines
        .iter()
        .skip(1)
        .filter(|v| reactor0(v).is_some())
        .filter_map(|v| find(v, "t_ns").and_then(Value::as_u64))
        .collect();
    let samples: Vec<Value> = lines.iter().skip(1).filter_map(reactor0).collect();
    assert!(
        samples.len() >= 2,
        "kernel samples in {} lines",
        lines.len()
    );
    let first = &samples[0];
    let last = &samples[samples.len() - 1];
    let ns = |v: &Value| v["preempted_ns"].as_u64().expect("preempted_ns");
    eprintln!("first {first}\nlast {last}\nhog pid {hog_pid}");
    assert!(ns(last) > ns(first), "preempted_ns grows under the hog");
    if let (Some(t0), Some(t1)) = (t_ns.first(), t_ns.last()) {
        eprintln!(
            "preempted {:.2} s of {:.2} s between the first and last sample",
            (ns(last) - ns(first)) as f64 / 1e9,
            (t1 - t0) as f64 / 1e9
        );
        // One thread cannot wait longer than the wall clock (a preemption is counted when it
        // ends, so allow one slice of slack).
        assert!(
            ns(last) - ns(first) <= t1 - t0 + 200_000_000,
            "preempted time within the wall-clock span"
        );
    }
    assert_eq!(
        last["top_intruder"][0].as_u64(),
        Some(hog_pid),
        "the hog is the top intruder: {last}"
    );
}

/// A `uring` namespace on a loop device under load, diagnosed as root: the namespace names the
/// device, the block collector counts its I/O, and the kernel's block tracepoints time the same
/// requests (the eBPF block probe filtered to the namespace's device): both agree on the rate.
#[test]
fn root_uring_namespace_device_is_timed_by_the_block_layer() {
    let _g = serial();
    if !root_with_btf() {
        return;
    }
    let lo = tests::LoopDevice::new(64 << 20);
    let dev = lo.name();
    let tgt = target_with(
        "uring",
        last_cpu(),
        &["--uring", &lo.dev.display().to_string()],
    );
    let perf = perf(&tgt, 12);
    std::thread::sleep(Duration::from_secs(2));
    let out = Command::new(cargo_bin("agent", "ringside"))
        .args(["diagnose", "--file"])
        .arg(&tgt.trace_file)
        .args(["--duration", "5s", "--json"])
        .output()
        .expect("run ringside diagnose");
    let report = perf_report(perf);
    assert!(
        out.status.success(),
        "ringside diagnose failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d: Value = serde_json::from_slice(&out.stdout).expect("diagnose JSON");
    let ns = &d["target"]["namespaces"][0];
    assert_eq!(ns["backend"], "uring", "namespace: {ns}");
    assert_eq!(ns["device"], dev.as_str(), "namespace: {ns}");
    let ebpf = d["target"]["capabilities"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "ebpf"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(ebpf["available"], true, "probes load as root: {ebpf}");
    let w = d["overall"]["devices"]
        .as_array()
        .and_then(|v| v.iter().find(|x| x["name"] == dev.as_str()))
        .cloned()
        .unwrap_or_else(|| panic!("no device {dev} in {}", d["overall"]["devices"]));
    let iops = w["iops"].as_f64().expect("device iops");
    let k = &w["kernel"];
    let rate = k["requests_per_s"].as_f64().unwrap_or(0.0);
    let p50 = k["p50_us"].as_f64().unwrap_or(0.0);
    let p99 = k["p99_us"].as_f64().unwrap_or(0.0);
    eprintln!(
        "{dev}: /sys/block {iops:.0} IOPS, block layer {rate:.0} requests/s, \
         p50 <= {p50:.0} us, p99 <= {p99:.0} us; perf {} IOPS",
        report["total"]["iops"]
    );
    assert!(iops > 0.0, "the block collector counted I/O on {dev}: {w}");
    assert!(
        rate > 0.5 * iops && rate < 2.0 * iops,
        "the block layer's request rate ({rate:.0}/s) matches /sys/block's ({iops:.0}/s): {w}"
    );
    assert!(p50 > 0.0 && p99 >= p50, "block latency quantiles: {k}");
}
