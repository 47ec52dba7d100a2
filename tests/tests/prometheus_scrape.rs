//! End-to-end: a real Prometheus server scrapes `ringside serve` attached to a live `ringside-tgt`
//! under `ringside-perf` load; the dashboards' queries run against that Prometheus.
//!
//! - `prometheus_scrapes_ringside_serve_and_counters_follow_the_load`: the scrape target is up;
//!   the completion and byte counters start at 0 and end exactly at what `ringside-perf` did,
//!   read/write split included; their rate() rose during the load; the qpair series carry
//!   perf's host NQN as `host`; the latency histogram holds
//!   every I/O; `promtool check metrics` accepts the exposition; `/snapshot.json` is the
//!   agent's snapshot; Ctrl-C (SIGINT) stops `ringside serve` cleanly and Prometheus then sees
//!   the target down.
//! - `every_dashboard_query_parses_and_returns_data`: every expression and variable query of
//!   `dashboards/*.json` is accepted by Prometheus and returns series during load, except those
//!   built only on series whose source is absent here (listed with the reason in `OPTIONAL`) or
//!   ending in a filter (`== 1`, `> 0`) whose unfiltered expression returns series.
//! - `dashboards_query_only_catalogued_series` (no Prometheus needed): every metric name in the
//!   dashboards is in `exporter::catalog`, and the JSON is what `dashboards/generate.py` writes.
//!
//! Prometheus is not the Debian service: each test runs `prometheus` itself on a free loopback
//! port with a temporary config (1 s scrape interval) and a temporary TSDB. Without Prometheus
//! installed the tests skip with a printed reason, unless `CI` is set, where they fail.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};

use serde_json::Value;
use tests::prom::{http_get, tools, wait_for, Prom};
use tests::{cargo_bin, perf_report, workspace_root, Target};

/// One stack at a time: the two live tests each run a target, the agent, Prometheus and load.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Series that may have no samples in this environment, and why. A dashboard query built only
/// on these may return nothing; any other query must return series.
const OPTIONAL: &[(&str, &str)] = &[
    ("ringside_reactor_cpu_ratio", "procfs collector"),
    ("ringside_reactor_runqueue_wait_ratio", "procfs collector"),
    (
        "ringside_reactor_involuntary_switches_total",
        "procfs collector",
    ),
    ("ringside_reactor_migrations_total", "procfs/perf collector"),
    (
        "ringside_reactor_preempted_ratio",
        "kernel probes (root, eBPF)",
    ),
    ("ringside_reactor_irq_ratio", "kernel probes"),
    ("ringside_reactor_preemptions_total", "kernel probes"),
    ("ringside_reactor_syscalls_total", "kernel probes"),
    ("ringside_target_tcp_retransmits_total", "kernel probes"),
    ("ringside_netdev_bytes_total", "netdev collector"),
    ("ringside_netdev_packets_total", "netdev collector"),
    ("ringside_netdev_drops_total", "netdev collector"),
    ("ringside_netdev_qdisc_drops_total", "netdev collector"),
    ("ringside_netdev_qdisc_overlimits_total", "netdev collector"),
    ("ringside_netdev_qdisc_backlog_bytes", "netdev collector"),
    (
        "ringside_netdev_capacity_bytes",
        "lo has no link speed or shaping",
    ),
    (
        "ringside_netdev_utilisation_ratio",
        "lo has no link speed or shaping",
    ),
    (
        "ringside_device_completions_total",
        "the malloc backend has no block device",
    ),
    (
        "ringside_device_io_bytes_total",
        "the malloc backend has no block device",
    ),
    (
        "ringside_device_mean_service_time_seconds",
        "no block device",
    ),
    ("ringside_device_utilisation_ratio", "no block device"),
    ("ringside_device_inflight_requests", "no block device"),
    ("ringside_memory_buffer_bytes", "numa_maps collector"),
    ("ringside_memory_resident_bytes", "numa_maps collector"),
    (
        "ringside_finding_active",
        "no finding is raised under a short healthy load",
    ),
    ("ringside_finding_confidence_ratio", "no finding is raised"),
    (
        "ringside_recommendation_active",
        "no recommendation without findings",
    ),
    (
        "ringside_qpair_queue_size_requests",
        "only when the counters page reports it",
    ),
    (
        "ringside_rdma_completions_per_nonempty_poll",
        "RDMA transport; no RDMA devices on the build machine",
    ),
    ("ringside_rdma_work_requests_per_doorbell", "RDMA transport"),
    ("ringside_rdma_send_pending_requests", "RDMA transport"),
    ("ringside_rdma_send_pending_max_requests", "RDMA transport"),
    ("ringside_rdma_srq_posted_requests", "RDMA transport"),
    ("ringside_rdma_srq_low_water_requests", "RDMA transport"),
    ("ringside_rdma_srq_size_requests", "RDMA transport"),
    ("ringside_rdma_srq_empty_total", "RDMA transport"),
    ("ringside_rdma_port_bytes_total", "RDMA devices"),
    ("ringside_rdma_port_capacity_bytes", "RDMA devices"),
    ("ringside_rdma_port_utilisation_ratio", "RDMA devices"),
    ("ringside_rdma_port_retransmit_events_total", "RDMA devices"),
];

// ---------------------------------------------------------------------------------------------
// The processes

/// A target with 64 MiB of RAM.
fn target(tag: &str) -> Target {
    Target::start(&format!("p{tag}"), &["--malloc", "64MiB"])
}

/// The host NQN `ringside-perf` connects with (the qpair series' `host` label).
const PERF_HOST: &str = "nqn.2014-08.io.ringside:scrape-perf";

/// Starts `ringside-perf` (4 KiB random 50/50 read/write at depth 8 for `secs`).
fn perf(t: &Target, secs: u32) -> Child {
    t.perf()
        .args([
            "--json",
            "--no-pin",
            "-q",
            "8",
            "-o",
            "4096",
            "--hostnqn",
            PERF_HOST,
        ])
        .args(["-w", "randrw", "-M", "50", "-t", &secs.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start ringside-perf")
}

/// A running `ringside serve` on an ephemeral port.
struct Serve {
    child: Option<Child>,
    addr: SocketAddr,
}

impl Serve {
    /// Follows the instance of `trace_file` by name (so the lifecycle series are there too).
    fn start(trace_file: &Path) -> Serve {
        let bin = cargo_bin("agent", "ringside");
        let name = trace_file
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("ringside."))
            .expect("a ringside.<name> trace file");
        let dir = trace_file.parent().expect("the trace directory");
        let mut child = Command::new(&bin)
            .args(["--name", name, "--shm-dir"])
            .arg(dir)
            .args(["serve", "--listen", "127.0.0.1:0", "--interval", "1s"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut err = BufReader::new(child.stderr.take().expect("piped stderr"));
        let mut line = String::new();
        // The agent says it attached first; the address line follows.
        let mut n = err.read_line(&mut line).unwrap_or(0);
        while n > 0 && line.starts_with("ringside: ") {
            line.clear();
            n = err.read_line(&mut line).unwrap_or(0);
        }
        let addr = line
            .trim()
            .strip_prefix("ringside serve: http://")
            .and_then(|r| r.split('/').next())
            .and_then(|a| a.parse().ok());
        let Some(addr) = addr.filter(|_| n > 0) else {
            let _ = child.kill();
            let mut rest = String::new();
            let _ = err.read_to_string(&mut rest);
            panic!("ringside serve did not start: {line}{rest}");
        };
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = err.read_to_string(&mut sink);
            if !sink.is_empty() {
                eprintln!("ringside serve stderr: {sink}");
            }
        });
        Serve {
            child: Some(child),
            addr,
        }
    }

    /// SIGINT (Ctrl-C), then waits: `ringside serve` must exit 0.
    fn interrupt(mut self) {
        let mut c = self.child.take().expect("serve running");
        let _ = Command::new("kill")
            .args(["-INT", &c.id().to_string()])
            .status();
        let st = c.wait().expect("wait for ringside serve");
        assert!(st.success(), "ringside serve exited with {st} after SIGINT");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Dashboards

/// Every PromQL expression in a dashboard: panel targets and variable queries, with where.
fn dashboard_exprs(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let d: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    let file = path.file_name().map(|f| f.to_string_lossy().to_string());
    let file = file.unwrap_or_default();
    let mut out = Vec::new();
    let panels = d["panels"].as_array().cloned().unwrap_or_default();
    assert!(!panels.is_empty(), "{file}: no panels");
    for p in &panels {
        let title = p["title"].as_str().unwrap_or("?");
        let nested = p["panels"].as_array().cloned().unwrap_or_default();
        for q in std::iter::once(p).chain(nested.iter()) {
            for t in q["targets"].as_array().cloned().unwrap_or_default() {
                let expr = t["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{file}: panel {title:?} has a target without expr"));
                out.push((format!("{file}: panel {title:?}"), expr.to_string()));
            }
        }
    }
    for v in d["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        if v["type"] != "query" {
            continue;
        }
        let q = v["query"]
            .as_str()
            .or_else(|| v["query"]["query"].as_str())
            .unwrap_or_else(|| panic!("{file}: variable {} has no query", v["name"]));
        // `label_values(selector, label)`: the selector is the PromQL part.
        let sel = q
            .strip_prefix("label_values(")
            .and_then(|r| r.rsplit_once(','))
            .map(|(s, _)| s.trim().to_string())
            .unwrap_or_else(|| q.to_string());
        out.push((format!("{file}: variable {}", v["name"]), sel));
    }
    out
}

fn dashboards() -> Vec<PathBuf> {
    let dir = workspace_root().join("dashboards");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    v.sort();
    assert!(
        v.len() >= 2,
        "expected the node and fleet dashboards in {}",
        dir.display()
    );
    v
}

/// Grafana's variables replaced by values Prometheus accepts; an unknown variable is an error.
fn substitute(expr: &str) -> Result<String, String> {
    const VARS: &[(&str, &str)] = &[
        ("__rate_interval", "10s"),
        ("__interval", "2s"),
        ("__range", "1m"),
        ("instance", ".*"),
        ("target", ".*"),
        ("reactor", ".*"),
    ];
    let mut out = String::new();
    let mut rest = expr;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, len) = if let Some(b) = after.strip_prefix('{') {
            let end = b.find('}').ok_or("unclosed ${")?;
            (&b[..end], end + 2)
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        let value = VARS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| format!("unknown dashboard variable ${name}"))?;
        out.push_str(value);
        rest = &after[len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The metric names a PromQL expression selects: identifiers outside strings, label matchers,
/// ranges and grouping clauses that are not functions, keywords or numbers.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Blank out strings, `{...}` and `[...]`.
    let mut flat = String::new();
    let (mut depth_brace, mut depth_bracket, mut in_str) = (0, 0, false);
    for c in expr.chars() {
        match c {
            '"' => {
                in_str = !in_str;
                flat.push(' ');
            }
            _ if in_str => flat.push(' '),
            '{' => {
                depth_brace += 1;
                flat.push(' ');
            }
            '}' => {
                depth_brace -= 1;
                flat.push(' ');
            }
            '[' => {
                depth_bracket += 1;
                flat.push(' ');
            }
            ']' => {
                depth_bracket -= 1;
                flat.push(' ');
            }
            _ if depth_brace > 0 || depth_bracket > 0 => flat.push(' '),
            _ => flat.push(c),
        }
    }
    const GROUPING: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const KEYWORDS: &[&str] = &[
        "bool", "and", "or", "unless", "offset", "inf", "nan", "atan2",
    ];
    let chars: Vec<char> = flat.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if !(c.is_ascii_alphabetic() || c == '_' || c == ':') {
            // Skip numbers whole (1e-6, 0.99).
            if c.is_ascii_digit() {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                continue;
            }
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len()
            && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
        {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        let mut j = i;
        while j < chars.len() && chars[j] == ' ' {
            j += 1;
        }
        let next = chars.get(j).copied();
        if GROUPING.contains(&word.as_str()) {
            // Skip the label list in parentheses.
            if next == Some('(') {
                while j < chars.len() && chars[j] != ')' {
                    j += 1;
                }
                i = j + 1;
            }
            continue;
        }
        let following: String = chars[j..].iter().take(8).collect();
        let grouped = ["by ", "by(", "without ", "without("]
            .iter()
            .any(|g| following.starts_with(g));
        if next == Some('(') || grouped || KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
            continue; // a function, or an aggregation (`sum by (x) (...)`)
        }
        names.insert(word);
    }
    names
}

fn optional(name: &str) -> bool {
    OPTIONAL.iter().any(|(n, _)| *n == name)
        || ["_bucket", "_sum", "_count"].iter().any(|s| {
            name.strip_suffix(s)
                .is_some_and(|b| OPTIONAL.iter().any(|(n, _)| *n == b))
        })
}

/// `expr` without a trailing comparison filter (`== 1`, `> 0`), if it has one.
fn unfiltered(expr: &str) -> Option<&str> {
    for op in [" == ", " > ", " != ", " >= "] {
        if let Some((lhs, rhs)) = expr.rsplit_once(op) {
            if rhs.trim().parse::<f64>().is_ok() {
                return Some(lhs.trim());
            }
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// The tests

#[test]
fn dashboards_query_only_catalogued_series() {
    let mut problems = Vec::new();
    for path in dashboards() {
        for (place, expr) in dashboard_exprs(&path) {
            if let Err(e) = substitute(&expr) {
                problems.push(format!("{place}: {e}: {expr}"));
            }
            let names = metric_names(&expr);
            if names.is_empty() {
                problems.push(format!("{place}: selects no metric: {expr}"));
            }
            for n in names {
                if exporter::catalog::family_of_series(&n).is_none() {
                    problems.push(format!("{place}: {n} is not in the catalog"));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "dashboard problems:\n{}",
        problems.join("\n")
    );

    // The extraction itself: a query for an uncatalogued series must be caught.
    let bogus = r#"sum by (reactor) (rate(ringside_reactor_bogus_total{instance=~"$instance"}[5m])) / on (instance) group_left (core) node_cpu_seconds_total"#;
    let names = metric_names(bogus);
    assert_eq!(
        names,
        BTreeSet::from([
            "node_cpu_seconds_total".to_string(),
            "ringside_reactor_bogus_total".to_string()
        ]),
        "metric name extraction"
    );
    assert!(names
        .iter()
        .all(|n| exporter::catalog::family_of_series(n).is_none()));
    for (n, _) in OPTIONAL {
        assert!(
            exporter::catalog::find(n).is_some(),
            "OPTIONAL lists {n}, which is not in the catalog"
        );
    }

    // The committed JSON is what the generator writes.
    let gen = workspace_root().join("dashboards/generate.py");
    let out = tempfile::tempdir().expect("temporary directory");
    match Command::new("python3").arg(&gen).arg(out.path()).output() {
        Ok(o) if o.status.success() => {
            for path in dashboards() {
                let name = path.file_name().expect("file name");
                let fresh = std::fs::read_to_string(out.path().join(name)).unwrap_or_default();
                let committed = std::fs::read_to_string(&path).unwrap_or_default();
                assert!(
                    fresh == committed,
                    "{} differs from what dashboards/generate.py writes: run it and commit",
                    path.display()
                );
            }
        }
        Ok(o) => panic!(
            "dashboards/generate.py failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => eprintln!("python3 not available ({e}): generator comparison skipped"),
    }
}

#[test]
fn prometheus_scrapes_ringside_serve_and_counters_follow_the_load() {
    let Some(tools) = tools("prometheus_scrapes_ringside_serve_and_counters_follow_the_load")
    else {
        return;
    };
    let _g = serial();
    let mut tgt = target("scrape");
    let serve = Serve::start(&tgt.trace_file);
    let (code, body) = http_get(serve.addr, "/healthz").expect("GET /healthz");
    assert_eq!((code, body.as_str()), (200, "ok\n"), "/healthz");

    let prom = Prom::start(&tools, serve.addr);
    wait_for("the scrape target to be up", 60, || {
        (prom.value(r#"up{job="ringside"}"#) == Some(1.0)).then_some(())
    });
    let total = "sum(ringside_reactor_completions_total)";
    let before = wait_for("the first completions sample", 60, || prom.value(total));
    assert_eq!(before, 0.0, "completions before any I/O");

    let report = perf_report(perf(&tgt, 4));
    let ios = report["total"]["ios"].as_f64().expect("perf total.ios");
    let reads = report["total"]["reads"].as_f64().expect("perf total.reads");
    let writes = report["total"]["writes"]
        .as_f64()
        .expect("perf total.writes");
    assert!(
        reads > 0.0 && writes > 0.0,
        "perf did reads and writes: {report}"
    );

    // The counters end exactly at what perf did, once the last window is scraped.
    wait_for(&format!("{total} to reach perf's {ios} I/Os"), 60, || {
        (prom.value(total) == Some(ios)).then_some(())
    });
    let by_op = |op: &str| {
        prom.value(&format!(
            r#"sum(ringside_reactor_completions_total{{op="{op}"}})"#
        ))
    };
    assert_eq!(by_op("read"), Some(reads), "reads");
    assert_eq!(by_op("write"), Some(writes), "writes");
    assert_eq!(
        prom.value("sum(ringside_reactor_io_bytes_total)"),
        Some(ios * 4096.0),
        "bytes = I/Os x 4 KiB"
    );
    let peak = prom
        .value("max_over_time(sum(rate(ringside_reactor_completions_total[3s]))[2m:1s])")
        .expect("a rate over the last two minutes");
    assert!(
        peak > 0.0,
        "the IOPS (rate of completions) rose with the load"
    );
    let qpairs = prom
        .value("sum(ringside_qpair_completions_total)")
        .expect("qpair completions");
    assert!(qpairs >= ios, "qpair completions {qpairs} < {ios}");
    // Per host: the qpairs perf opened carry its host NQN (the target wrote it at Connect).
    let by_host = prom
        .value(&format!(
            "sum(ringside_qpair_completions_total{{host=\"{PERF_HOST}\"}})"
        ))
        .expect("qpair completions labelled with perf's host NQN");
    assert!(by_host >= ios, "perf's host did {by_host} of {ios} I/Os");
    let count = prom
        .value("sum(ringside_reactor_latency_seconds_count)")
        .expect("latency count");
    assert!(
        count >= ios,
        "latency histogram holds {count} of {ios} I/Os"
    );
    let p50 = prom
        .value("histogram_quantile(0.5, sum by (le) (ringside_reactor_latency_seconds_bucket))")
        .expect("p50");
    assert!(p50 > 0.0 && p50 <= 1.0, "p50 latency {p50} s");
    let windows = prom.value("ringside_agent_windows_total").expect("windows");
    assert!(windows >= 3.0, "windows analysed: {windows}");

    // The exposition passes promtool's format and lint checks.
    let (code, metrics) = http_get(serve.addr, "/metrics").expect("GET /metrics");
    assert_eq!(code, 200);
    let mut check = Command::new(&tools.promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    check
        .stdin
        .take()
        .expect("promtool stdin")
        .write_all(metrics.as_bytes())
        .expect("feed promtool");
    let out = check.wait_with_output().expect("wait for promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let (code, json) = http_get(serve.addr, "/snapshot.json").expect("GET /snapshot.json");
    assert_eq!(code, 200);
    let snap: Value = serde_json::from_str(&json).expect("/snapshot.json is JSON");
    assert!(
        snap["windows_seen"].as_u64().unwrap_or(0) >= 3,
        "snapshot windows_seen"
    );
    assert!(
        snap["target"]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("pscrape")),
        "snapshot target name: {}",
        snap["target"]["name"]
    );

    // Ctrl-C stops serve cleanly; Prometheus then sees the target down.
    serve.interrupt();
    wait_for("the scrape target to be down", 60, || {
        (prom.value(r#"up{job="ringside"}"#) == Some(0.0)).then_some(())
    });
    let log = prom.log();
    assert!(
        !log.contains("level=error"),
        "prometheus logged errors:\n{log}"
    );
    tgt.stop();
}

#[test]
fn every_dashboard_query_parses_and_returns_data() {
    let Some(tools) = tools("every_dashboard_query_parses_and_returns_data") else {
        return;
    };
    let _g = serial();
    let mut tgt = target("dash");
    let serve = Serve::start(&tgt.trace_file);
    let prom = Prom::start(&tools, serve.addr);
    wait_for("the scrape target to be up", 60, || {
        (prom.value(r#"up{job="ringside"}"#) == Some(1.0)).then_some(())
    });
    let load = perf(&tgt, 20);
    // Queries run while I/O flows and rates have several samples.
    wait_for("I/O to flow for a few scrapes", 60, || {
        let ok = prom
            .value("sum(rate(ringside_reactor_completions_total[10s]))")
            .is_some_and(|v| v > 0.0)
            && prom
                .value("count(ringside_reactor_busy_time_per_io_seconds)")
                .is_some_and(|v| v > 0.0)
            // Qpair series appear with the connection: wait until they have a rate too.
            && prom
                .value("sum(rate(ringside_qpair_completions_total[10s]))")
                .is_some_and(|v| v > 0.0)
            && prom
                .value("count_over_time(ringside_reactor_busy_ratio[1m])")
                .is_some_and(|v| v >= 4.0);
        ok.then_some(())
    });

    let mut problems = Vec::new();
    let mut checked = 0;
    for path in dashboards() {
        for (place, expr) in dashboard_exprs(&path) {
            let q = match substitute(&expr) {
                Ok(q) => q,
                Err(e) => {
                    problems.push(format!("{place}: {e}"));
                    continue;
                }
            };
            checked += 1;
            let result = match prom.query(&q) {
                Ok(r) => r,
                Err(e) => {
                    problems.push(format!("{place}: Prometheus rejects {q}: {e}"));
                    continue;
                }
            };
            if !result.is_empty() {
                continue;
            }
            let names = metric_names(&expr);
            if !names.is_empty() && names.iter().all(|n| optional(n)) {
                continue;
            }
            match unfiltered(&q).map(|u| prom.query(u)) {
                Some(Ok(r)) if !r.is_empty() => continue,
                _ => problems.push(format!("{place}: no data for {q}")),
            }
        }
    }
    let report = perf_report(load);
    assert!(
        report["total"]["ios"].as_u64().unwrap_or(0) > 0,
        "the load did I/O"
    );
    assert!(checked >= 50, "only {checked} dashboard queries found");
    assert!(
        problems.is_empty(),
        "{} of {checked} dashboard queries failed:\n{}",
        problems.len(),
        problems.join("\n")
    );
    drop(serve);
    tgt.stop();
}
