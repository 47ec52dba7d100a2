//! End-to-end: the agent follows its target across restarts and failures (issue 16).
//!
//! - `prometheus_sees_serve_follow_a_sigkill_and_restart_under_load`: `ringside serve --name`
//!   started before its target waits (one line, `/healthz` 503, `ringside_target_up 0`), attaches
//!   when it appears, and a real Prometheus scrapes it across a SIGKILL and a restart under
//!   `ringside-perf` load: `ringside_target_up` goes 0 → 1 → 0 → 1, no reactor series while gone
//!   (and `/healthz` 503 with the reason), `ringside_target_start_time_seconds` changes, and
//!   `rate()` of completions after the restart matches ringside-perf's IOPS within 10 %.
//! - `a_truncated_trace_file_ends_the_instance_without_crashing_the_agent`: the live target's
//!   file truncated under `ringside serve` (the reader would otherwise touch pages past EOF and
//!   take SIGBUS): the agent stays up and says the instance is gone because of the truncation.
//! - `root_access_follows_trace_mode_and_group`: by default the trace file is 0600 and `nobody`
//!   is told in one line it is owner-only; with `--trace-group` the file is 0640 and the RPC
//!   socket 0660 in that group, `nobody` without the group is told which group to join, and
//!   `nobody` in it reads the target.
//!
//! - `serve_all_follows_targets_appearing_and_vanishing`: `ringside serve --all` with two
//!   targets started and stopped at different times: each target's series (labelled `target`)
//!   appear within two intervals of its start and vanish within two intervals of its stop;
//!   `target` names an instance on every series (`ringside_target_info`'s kind is `kind`).
//!
//! - `the_trace_file_is_published_before_the_listener_accepts`: a client connecting the moment
//!   the target's port opens finds the trace file there and valid (header, description, live),
//!   with a 256 MiB malloc namespace (the issue measured the file 0.47 s after the port then).
//!
//! - `diagnose_says_in_its_report_that_the_target_came_late_and_went_away`: `ringside diagnose`
//!   started before its target waits for it, and when the target is killed mid-watch the report
//!   says both (with UTC times) and covers the instance watched until then.
//!
//! Every wait is a bounded poll of a condition (a hang guard, not a speed assertion).
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tests::prom::{http_get, tools, wait_for, Prom};
use tests::{cargo_bin, perf_report, Target};

/// One test at a time: each runs targets under load, and the rate comparison needs a machine
/// not shared with the other tests' loads.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// `ringside serve --name NAME` on an ephemeral port, following instances in `dir`; its stderr
/// is kept for the assertions.
struct Serve {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl Serve {
    fn start(dir: &Path, name: &str, interval: &str) -> Serve {
        Serve::spawn(dir, &["--name", name], &["--interval", interval])
    }

    fn spawn(dir: &Path, attach: &[&str], serve: &[&str]) -> Serve {
        let bin = cargo_bin("agent", "ringside");
        let mut child = Command::new(&bin)
            .args(attach)
            .arg("--shm-dir")
            .arg(dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(serve)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let err = child.stderr.take().expect("piped stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let keep = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(a) = line
                    .strip_prefix("ringside serve: http://")
                    .and_then(|r| r.split('/').next())
                    .and_then(|a| a.parse::<SocketAddr>().ok())
                {
                    let _ = tx.send(a);
                }
                let mut k = keep.lock().unwrap_or_else(|e| e.into_inner());
                k.push_str(&line);
                k.push('\n');
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("ringside serve did not start: {}", stderr.lock().unwrap());
            });
        Serve {
            child,
            addr,
            stderr,
        }
    }

    fn get(&self, path: &str) -> (u16, String) {
        http_get(self.addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// Waits (bounded) for `/healthz` to answer 503; returns its body.
    fn wait_unhealthy(&self, when: &str) -> String {
        wait_for(&format!("healthz 503 {when}"), 30, || {
            let (code, body) = self.get("/healthz");
            (code == 503).then_some(body)
        })
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Asserts the agent is still running.
    fn assert_running(&mut self) {
        assert!(
            matches!(self.child.try_wait(), Ok(None)),
            "ringside serve exited; stderr:\n{}",
            self.stderr()
        );
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the first sample of `name` in an exposition.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `ringside-perf` for `secs` seconds of 4 KiB random reads at depth 8, JSON report.
fn perf(t: &Target, secs: u32) -> Child {
    t.perf()
        .args([
            "--json", "--no-pin", "-q", "8", "-o", "4096", "-w", "randread",
        ])
        .args(["-t", &secs.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start ringside-perf")
}

/// The sum over series of a raw range-vector query's samples, by timestamp, in time order.
fn summed_samples(prom: &Prom, expr: &str) -> Vec<(f64, f64)> {
    let r = prom
        .query(expr)
        .unwrap_or_else(|e| panic!("query {expr}: {e}"));
    let mut by_t: std::collections::BTreeMap<i64, f64> = std::collections::BTreeMap::new();
    for series in &r {
        for v in series["values"].as_array().into_iter().flatten() {
            let t = v[0].as_f64().unwrap_or(0.0);
            let x: f64 = v[1].as_str().and_then(|s| s.parse().ok()).unwrap_or(0.0);
            *by_t.entry((t * 1000.0) as i64).or_default() += x;
        }
    }
    by_t.into_iter()
        .map(|(t, x)| (t as f64 / 1000.0, x))
        .collect()
}

#[test]
fn prometheus_sees_serve_follow_a_sigkill_and_restart_under_load() {
    let _g = serial();
    let Some(tools) = tools("prometheus_sees_serve_follow_a_sigkill_and_restart_under_load") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let name = format!("lc{}", std::process::id());
    // Started before its target: it waits instead of exiting.
    // Short windows: the counters move in steps of one window, so the rate over a few
    // scrapes is smooth.
    let mut serve = Serve::start(dir.path(), &name, "250ms");
    let (code, body) = serve.get("/healthz");
    assert_eq!(code, 503, "healthz while waiting: {body}");
    assert!(body.contains("waiting"), "healthz says why: {body}");
    let (_, metrics) = serve.get("/metrics");
    assert_eq!(
        sample(&metrics, "ringside_target_up"),
        Some(0.0),
        "{metrics}"
    );
    assert!(
        serve.stderr().contains("waiting for target"),
        "the wait is said: {}",
        serve.stderr()
    );
    let prom = Prom::start(&tools, serve.addr);
    wait_for("Prometheus to see ringside_target_up 0", 60, || {
        (prom.value("ringside_target_up") == Some(0.0)).then_some(())
    });

    // First instance, under load.
    let mut first = Target::start_in(dir.path(), &name, &["--malloc", "64MiB"]);
    wait_for("healthz 200 after the target started", 30, || {
        (serve.get("/healthz").0 == 200).then_some(())
    });
    perf_report(perf(&first, 3));
    wait_for(
        "Prometheus to see the first instance's completions",
        60,
        || {
            prom.value("sum(ringside_reactor_completions_total)")
                .filter(|v| *v > 0.0)
        },
    );
    let start1 = prom
        .value("ringside_target_start_time_seconds")
        .expect("start time of the first instance");

    // SIGKILL: gone.
    first.kill();
    let body = serve.wait_unhealthy("after SIGKILL");
    assert!(body.contains("gone"), "healthz says gone: {body}");
    let (_, metrics) = serve.get("/metrics");
    assert_eq!(
        sample(&metrics, "ringside_target_up"),
        Some(0.0),
        "{metrics}"
    );
    assert!(
        !metrics.contains("ringside_reactor_") && !metrics.contains("ringside_qpair_"),
        "no reactor or qpair series while gone:\n{metrics}"
    );
    wait_for("Prometheus to see the target down", 60, || {
        (prom.value("ringside_target_up") == Some(0.0)).then_some(())
    });
    let stale = prom
        .query("ringside_reactor_completions_total")
        .expect("query");
    assert!(stale.is_empty(), "stale completions while gone: {stale:?}");
    serve.assert_running();

    // A new instance with the same name (it reclaims the stale file): reattached.
    let second = Target::start_in(dir.path(), &name, &["--malloc", "64MiB"]);
    wait_for("healthz 200 after the restart", 30, || {
        (serve.get("/healthz").0 == 200).then_some(())
    });
    wait_for("Prometheus to see the target up again", 60, || {
        (prom.value("ringside_target_up") == Some(1.0)).then_some(())
    });
    let load_start = now_unix();
    let report = perf_report(perf(&second, 30));
    let ios = report["total"]["ios"]
        .as_f64()
        .or_else(|| report["ios"].as_f64())
        .unwrap_or_else(|| panic!("ringside-perf total I/Os in {report}"));
    let iops = report["total"]["iops"]
        .as_f64()
        .or_else(|| report["iops"].as_f64())
        .unwrap_or_else(|| panic!("ringside-perf IOPS in {report}"));
    // The counters of the new instance started again from zero and end at what perf did.
    wait_for("the completions to reach ringside-perf's total", 60, || {
        prom.value("sum(ringside_reactor_completions_total)")
            .filter(|v| *v >= ios)
    });
    let start2 = prom
        .value("ringside_target_start_time_seconds")
        .expect("start time of the second instance");
    assert!(start2 > start1, "a new start time: {start1} then {start2}");
    // The load as the exporter saw it, after the restart's counter reset: from the last scrape
    // before the completions moved to the first scrape holding the final total. rate() over
    // exactly that span (the load is not steady on a shared machine, so only its whole length
    // compares with ringside-perf's average); the scrapes' 1 s granularity leaves at most 2 s of
    // idle in it, about 3 % of the 30 s load.
    let all = summed_samples(
        &prom,
        &format!(
            "ringside_reactor_completions_total[{}s]",
            (now_unix() - load_start).ceil() as u64 + 5
        ),
    );
    let reset = (1..all.len())
        .rfind(|&i| all[i].1 < all[i - 1].1)
        .unwrap_or(0);
    let samples = &all[reset..];
    let t_final = samples
        .iter()
        .find(|(_, v)| *v >= ios)
        .map(|(t, _)| *t)
        .unwrap_or_else(|| panic!("no sample with the final total {ios}: {all:?}"));
    let idle = samples.first().map_or(0.0, |(_, v)| *v);
    let t_begin = samples
        .iter()
        .take_while(|(_, v)| *v <= idle + 100.0)
        .last()
        .map_or(load_start, |(t, _)| *t);
    let span_ms = ((t_final - t_begin) * 1000.0).round() as u64 + 1;
    let rate = prom
        .query_at(
            &format!("sum(rate(ringside_reactor_completions_total[{span_ms}ms]))"),
            t_final,
        )
        .expect("rate query")
        .first()
        .and_then(|s| s["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()))
        .expect("a rate");
    let err = (rate - iops).abs() / iops;
    assert!(
        err <= 0.10,
        "rate() of completions {rate:.0}/s vs ringside-perf {iops:.0} IOPS: {:.1} % apart \
         (over {span_ms} ms ending at {t_final}; samples {all:?})",
        err * 100.0
    );
    eprintln!(
        "rate() after the restart {rate:.0}/s, ringside-perf {iops:.0} IOPS ({:.1} %)",
        err * 100.0
    );

    // The whole story as Prometheus stored it: waiting, up, down, up.
    let ups = summed_samples(&prom, "ringside_target_up[10m]");
    let mut seq: Vec<f64> = ups.iter().map(|(_, v)| *v).collect();
    seq.dedup();
    assert_eq!(
        seq,
        vec![0.0, 1.0, 0.0, 1.0],
        "ringside_target_up over time"
    );
    let said = serve.stderr();
    assert!(
        said.contains("is gone") && said.contains("reattached to target"),
        "the agent said what happened:\n{said}"
    );
}

#[test]
fn a_truncated_trace_file_ends_the_instance_without_crashing_the_agent() {
    let _g = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let name = format!("tr{}", std::process::id());
    let _t = Target::start_in(dir.path(), &name, &["--malloc", "16MiB"]);
    let mut serve = Serve::start(dir.path(), &name, "200ms");
    wait_for("healthz 200", 30, || {
        (serve.get("/healthz").0 == 200).then_some(())
    });
    let path = dir.path().join(format!("ringside.{name}"));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open the trace file");
    f.set_len(4096).expect("truncate");
    let body = serve.wait_unhealthy("after the truncation");
    assert!(
        body.contains("truncated") || body.contains("gone"),
        "healthz says why: {body}"
    );
    // Several more intervals: the agent keeps serving and reads nothing of the short file.
    for _ in 0..5 {
        let (code, metrics) = serve.get("/metrics");
        assert_eq!(code, 200);
        assert!(!metrics.contains("ringside_reactor_"), "{metrics}");
        std::thread::sleep(Duration::from_millis(200));
    }
    serve.assert_running();
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The agent binary copied where `nobody` can run it.
fn agent_for_nobody(dir: &Path) -> std::path::PathBuf {
    let copy = dir.join("ringside");
    std::fs::copy(cargo_bin("agent", "ringside"), &copy).expect("copy the agent");
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    copy
}

/// `ringside --name NAME --shm-dir DIR top --once --json` as nobody, with `groups` as its
/// supplementary groups.
fn top_as_nobody(agent: &Path, dir: &Path, name: &str, groups: &str) -> std::process::Output {
    let mut c = Command::new("setpriv");
    c.args(["--reuid", "nobody", "--regid", "nogroup"]);
    if groups.is_empty() {
        c.arg("--clear-groups");
    } else {
        c.args(["--groups", groups]);
    }
    c.arg(agent)
        .args(["--name", name, "--shm-dir"])
        .arg(dir)
        .args([
            "top",
            "--once",
            "--json",
            "--interval",
            "200ms",
            "--no-kernel",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run setpriv")
}

#[test]
fn root_access_follows_trace_mode_and_group() {
    let _g = serial();
    if !is_root() {
        println!("skipped: needs root to run the agent as nobody");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod the trace dir");
    let agent = agent_for_nobody(dir.path());

    // Default: owner only, like SPDK.
    let name = format!("acc{}", std::process::id());
    let t = Target::start_in(dir.path(), &name, &["--malloc", "16MiB"]);
    let meta = std::fs::metadata(&t.trace_file).expect("stat");
    assert_eq!(meta.mode() & 0o777, 0o600, "default trace file mode");
    let out = top_as_nobody(&agent, dir.path(), &name, "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "nobody must not read a 0600 file: {err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(
        lines[0].contains("owner only") && lines[0].contains("--trace-group"),
        "the line says why and what to do: {err}"
    );
    drop(t);

    // --trace-group: 0640 in that group; the RPC socket 0660.
    let gid = "4242";
    let name = format!("grp{}", std::process::id());
    let t = Target::start_in(
        dir.path(),
        &name,
        &["--malloc", "16MiB", "--trace-group", gid],
    );
    let meta = std::fs::metadata(&t.trace_file).expect("stat");
    assert_eq!(
        (meta.mode() & 0o777, meta.gid()),
        (0o640, 4242),
        "trace file mode and group"
    );
    let sock = std::fs::metadata(&t.rpc).expect("stat the rpc socket");
    assert_eq!(
        (sock.mode() & 0o777, sock.gid()),
        (0o660, 4242),
        "rpc socket"
    );

    let out = top_as_nobody(&agent, dir.path(), &name, "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "nobody outside the group: {err}");
    assert!(
        err.trim().lines().count() == 1 && err.contains("join group 4242"),
        "one line naming the group to join: {err}"
    );

    let out = top_as_nobody(&agent, dir.path(), &name, gid);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "nobody in group {gid} reads it: {err}"
    );
    let snap: Value = serde_json::from_slice(&out.stdout).expect("snapshot JSON");
    assert_eq!(snap["lifecycle"]["state"], "attached", "{snap}");
    assert_eq!(snap["target"]["name"], name.as_str());
}

/// Instance names: those up, those with reactor series.
type Seen = (Vec<String>, Vec<String>);

/// The instance names with a `ringside_target_up 1` sample and with reactor series.
fn targets_in(metrics: &str) -> Seen {
    let label = |l: &str| {
        l.split("target=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .map(str::to_string)
    };
    let mut up: Vec<String> = metrics
        .lines()
        .filter(|l| l.starts_with("ringside_target_up{") && l.ends_with(" 1"))
        .filter_map(label)
        .collect();
    let mut reactors: Vec<String> = metrics
        .lines()
        .filter(|l| l.starts_with("ringside_reactor_info{"))
        .filter_map(label)
        .collect();
    up.sort();
    up.dedup();
    reactors.sort();
    reactors.dedup();
    (up, reactors)
}

#[test]
fn serve_all_follows_targets_appearing_and_vanishing() {
    let _g = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let interval = Duration::from_millis(500);
    let serve = Serve::spawn(dir.path(), &[], &["--all", "--interval", "500ms"]);
    let (code, _) = serve.get("/healthz");
    assert_eq!(code, 503, "no target yet");
    let a = format!("alla{}", std::process::id());
    let b = format!("allb{}", std::process::id());
    // The issue asks for two intervals; this is a bounded wait (a hang guard, never a speed
    // assertion), and how long it took is printed beside the two intervals.
    let wait_seen = |what: &str, ok: &dyn Fn(&Seen) -> bool| {
        let t0 = std::time::Instant::now();
        loop {
            let seen = targets_in(&serve.get("/metrics").1);
            if ok(&seen) {
                eprintln!(
                    "{what} after {:?} (two intervals: {:?})",
                    t0.elapsed(),
                    interval * 2
                );
                return;
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "{what}: {seen:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let mut ta = Target::start_in(dir.path(), &a, &["--malloc", "16MiB"]);
    wait_seen("a appears", &|(up, r)| {
        up == std::slice::from_ref(&a) && r == std::slice::from_ref(&a)
    });
    let mut tb = Target::start_in(dir.path(), &b, &["--malloc", "16MiB"]);
    wait_seen("b appears", &|(up, r)| {
        up.len() == 2 && up.contains(&b) && r.contains(&b)
    });
    assert_eq!(serve.get("/healthz").0, 200);
    // One meaning per label name: `target` is the instance on every series (the kind of target
    // is `kind`), so every `target` value is one of the two instances.
    let (_, metrics) = serve.get("/metrics");
    for t in [&a, &b] {
        let info =
            format!("ringside_target_info{{target=\"{t}\",name=\"{t}\",kind=\"ringside\"}} 1");
        assert!(metrics.contains(&info), "{info} in:\n{metrics}");
    }
    for l in metrics.lines().filter(|l| l.contains("target=\"")) {
        let v = l
            .split("target=\"")
            .nth(1)
            .and_then(|r| r.split('"').next());
        assert!(
            v == Some(a.as_str()) || v == Some(b.as_str()),
            "target names an instance: {l}"
        );
    }
    ta.stop();
    wait_seen("a vanishes", &|(up, r)| {
        up == std::slice::from_ref(&b) && r == std::slice::from_ref(&b)
    });
    let (_, metrics) = serve.get("/metrics");
    assert!(!metrics.contains(&a), "nothing of a is left:\n{metrics}");
    tb.stop();
    wait_seen("b vanishes", &|(up, r)| up.is_empty() && r.is_empty());
    assert_eq!(serve.get("/healthz").0, 503, "no target left");
}

#[test]
fn the_trace_file_is_published_before_the_listener_accepts() {
    let _g = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let name = format!("pub{}", std::process::id());
    // A free port chosen here, so the test can connect before the target says anything.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let bin = cargo_bin("nvmf-target", "ringside-tgt");
    let mut child = Command::new(&bin)
        .args(["--name", &name, "--listen", &format!("127.0.0.1:{port}")])
        .args(["--malloc", "256MiB"])
        .arg("--rpc-socket")
        .arg(dir.path().join("rpc.sock"))
        .arg("--trace-dir")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let t0 = std::time::Instant::now();
    let connected = loop {
        if let Ok(s) = std::net::TcpStream::connect(addr) {
            break s;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("ringside-tgt exited before listening: {status}");
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("ringside-tgt never listened on {addr}");
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    // The port accepted: the trace file must already be there, complete and live.
    let path = dir.path().join(format!("ringside.{name}"));
    let opened = trace_ring::TraceReader::open(&path);
    let live = opened
        .as_ref()
        .map(|r| matches!(r.liveness(), trace_ring::Liveness::Live))
        .unwrap_or(false);
    drop(connected);
    let _ = child.kill();
    let _ = child.wait();
    let r = opened
        .unwrap_or_else(|e| panic!("the port was open but the trace file was not readable: {e}"));
    assert_eq!(r.name(), name, "the file is this instance's");
    assert!(live, "the file is the live instance's");
    assert!(
        !r.description().reactors.is_empty(),
        "the description is complete"
    );
}

#[test]
fn diagnose_says_in_its_report_that_the_target_came_late_and_went_away() {
    let _g = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let name = format!("diag{}", std::process::id());
    let bin = cargo_bin("agent", "ringside");
    let mut child = Command::new(&bin)
        .args(["--name", &name, "--shm-dir"])
        .arg(dir.path())
        .args([
            "diagnose",
            "--duration",
            "10m",
            "--interval",
            "250ms",
            "--no-kernel",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let err = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let wait_line = |what: &str| {
        let t0 = std::time::Instant::now();
        loop {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(l) if l.contains(what) => return l,
                Ok(_) => {}
                Err(_) => assert!(
                    t0.elapsed() < Duration::from_secs(60),
                    "no line with {what:?}"
                ),
            }
        }
    };
    wait_line("waiting for target");
    let mut t = Target::start_in(dir.path(), &name, &["--malloc", "16MiB"]);
    wait_line("watching");
    t.kill();
    let out = child.wait_with_output().expect("diagnose ends");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "diagnose exits 0:\n{report}");
    assert!(
        report.contains("**Target lifecycle:** waited ")
            && report.contains(&format!("for target {name} to start; attached at ")),
        "the wait is in the report:\n{report}"
    );
    let gone = report
        .lines()
        .find(|l| l.contains(&format!("**Target lifecycle:** target {name} went away (")))
        .unwrap_or_else(|| panic!("the end is in the report:\n{report}"));
    assert!(
        gone.contains(" UTC, ") && gone.contains("s into the watch"),
        "with its time: {gone}"
    );
}
