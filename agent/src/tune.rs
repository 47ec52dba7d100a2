//! `ringside tune`: commissioning a node. Where `ringside diagnose` only watches (passive),
//! `tune` drives the target itself with `ringside-perf` (anchor: fio's `latency_target` /
//! `latency_percentile` depth search):
//!
//! 1. **Passive**: load at the operator's current depth while `ringside diagnose --json` watches
//!    a short window; keep its recommendations (depth, qpairs, idle policy, placement).
//! 2. **Sweep**: a bounded depth × qpairs grid, one short `ringside-perf --json` run per point;
//!    along each qpairs row the depths stop early once IOPS stopped growing for two steps or p99
//!    passed `--p99-max` (deeper only adds latency). The **best** point is the largest IOPS whose
//!    p99 stays under the limit; the **knee** the point with the fewest commands in flight
//!    within [`KNEE_SHARE`] of the best.
//! 3. **Compare**: the passive recommendation against the knee (its measured IOPS over the
//!    best, its prediction over what it measured).
//! 4. **Target settings** (idle policy, placement): applied over the target's JSON-RPC socket
//!    when the target offers a method for them, measured, kept when IOPS held (at least
//!    [`KEEP_SHARE`] of before) or rolled back, before/after reported.
//!
//! Single-threaded: the children (`ringside-perf`, `ringside diagnose`) run one at a time
//! except the passive phase's load, which runs beside the diagnosis. The decisions (early stop,
//! knee, comparison) are pure functions over the measured points, unit-tested below.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use serde::Serialize;
use serde_json::{json, Value};

use crate::attach::AttachArgs;
use crate::diagnose::parse_duration;

/// The knee: the fewest commands in flight whose IOPS reaches this share of the best.
pub const KNEE_SHARE: f64 = 0.95;

/// A depth step counts as growth when it raises IOPS by more than this share.
pub const GROWTH: f64 = 0.02;

/// A target setting is kept when IOPS after it reaches this share of before.
pub const KEEP_SHARE: f64 = 0.98;

/// `ringside tune`.
///
/// Bounded in time: at most (depths × qpairs) sweep points of `--step` each plus ~1 s of
/// connection set-up per point, the `--passive` window plus 3 s, and for each target setting
/// applied two measurements of `--step`. With the defaults (8 depths × 2 qpairs, 3 s steps, 5 s
/// passive) at most ~75 s, usually less (the depths stop early past the plateau).
#[derive(Args, Clone, Debug)]
pub struct TuneArgs {
    /// ringside-perf's transport ID (default: the target's first TCP listener).
    #[arg(short = 'r', long = "transport-id", value_name = "TRID")]
    pub trid: Option<String>,
    /// Queue depths per qpair to sweep.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16,32,64,128")]
    pub depths: Vec<u32>,
    /// Qpairs (per namespace per initiator core) to sweep.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub qpairs: Vec<u32>,
    /// Length of each sweep point.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub step: Duration,
    /// Largest acceptable p99 latency (e.g. 500us, 2ms); default: no limit.
    #[arg(long = "p99-max", value_parser = parse_latency)]
    pub p99_max: Option<Duration>,
    /// The depth the operator runs today (the passive window loads at it).
    #[arg(long = "depth", default_value_t = 1)]
    pub current_depth: u32,
    /// The qpairs the operator runs today.
    #[arg(long = "current-qpairs", default_value_t = 1)]
    pub current_qpairs: u32,
    /// Length of the passive diagnosis window.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub passive: Duration,
    /// Initiator cores for ringside-perf (its --cores).
    #[arg(long, default_value = "1")]
    pub cores: String,
    /// Write the result as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// The ringside-perf binary (default: beside this executable, else on PATH).
    #[arg(long, value_name = "PATH")]
    pub perf: Option<PathBuf>,
    /// The target's JSON-RPC socket (default /var/tmp/ringside-<name>.sock).
    #[arg(long = "rpc-socket", value_name = "PATH")]
    pub rpc_socket: Option<PathBuf>,
    /// Do not change the target's settings (sweep and compare only).
    #[arg(long = "no-apply")]
    pub no_apply: bool,
}

/// Parses `500us`, `2ms`, `1s` (or bare microseconds).
pub fn parse_latency(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, mult) = if let Some(v) = t.strip_suffix("us") {
        (v, 1e-6)
    } else if let Some(v) = t.strip_suffix("µs") {
        (v, 1e-6)
    } else if let Some(v) = t.strip_suffix("ms") {
        (v, 1e-3)
    } else if let Some(v) = t.strip_suffix('s') {
        (v, 1.0)
    } else {
        (t, 1e-6)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a latency (use 500us, 2ms)"))?;
    if !v.is_finite() || v <= 0.0 || v * mult > 60.0 {
        return Err(format!(
            "{s:?}: a latency limit must be above 0 and at most 60 s"
        ));
    }
    Ok(Duration::from_secs_f64(v * mult))
}

/// One measured point.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Point {
    pub depth: u32,
    pub qpairs: u32,
    pub iops: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

impl Point {
    /// Commands in flight per initiator core.
    pub fn in_flight(&self) -> u64 {
        u64::from(self.depth) * u64::from(self.qpairs)
    }
}

/// Whether a qpairs row should stop before its next depth: p99 passed the limit, or IOPS did
/// not grow by [`GROWTH`] over the row's best for the last two points.
pub fn stop_row(row: &[Point], p99_max_us: Option<f64>) -> bool {
    let Some(last) = row.last() else {
        return false;
    };
    if p99_max_us.is_some_and(|m| last.p99_us > m) {
        return true;
    }
    if row.len() < 3 {
        return false;
    }
    let before = row[..row.len() - 2]
        .iter()
        .map(|p| p.iops)
        .fold(0.0f64, f64::max);
    row[row.len() - 2..]
        .iter()
        .all(|p| p.iops <= before * (1.0 + GROWTH))
}

/// The sweep's answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Knee {
    /// The largest IOPS with p99 under the limit.
    pub best: Point,
    /// The fewest commands in flight within [`KNEE_SHARE`] of the best (ties: lower p99).
    pub knee: Point,
}

/// Finds the best point under `p99_max_us` and the knee; None when no point is under it.
pub fn find_knee(points: &[Point], p99_max_us: Option<f64>) -> Option<Knee> {
    let ok: Vec<&Point> = points
        .iter()
        .filter(|p| p.iops.is_finite() && p.iops > 0.0)
        .filter(|p| p99_max_us.is_none_or(|m| p.p99_us <= m))
        .collect();
    let best = ok
        .iter()
        .copied()
        .max_by(|a, b| a.iops.total_cmp(&b.iops))?
        .clone();
    let knee = ok
        .iter()
        .copied()
        .filter(|p| p.iops >= best.iops * KNEE_SHARE)
        .min_by(|a, b| {
            a.in_flight()
                .cmp(&b.in_flight())
                .then(a.p99_us.total_cmp(&b.p99_us))
        })
        .unwrap_or(&best)
        .clone();
    Some(Knee { best, knee })
}

/// The passive recommendation next to the sweep.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Comparison {
    /// The recommended depth and qpairs (the current ones where nothing was recommended).
    pub depth: u32,
    pub qpairs: u32,
    /// Whether the passive diagnosis recommended a depth.
    pub recommended: bool,
    /// The IOPS the diagnosis expected there.
    pub expected_iops: Option<f64>,
    /// What that point measured.
    pub measured_iops: Option<f64>,
    /// measured / the best point's IOPS.
    pub share_of_best: Option<f64>,
    /// expected / measured - 1.
    pub prediction_error: Option<f64>,
    /// recommended depth / knee depth (same qpairs basis: commands in flight).
    pub in_flight_vs_knee: Option<f64>,
}

/// Compares the passive recommendation with the knee, given what its point measured.
pub fn compare(
    depth: u32,
    qpairs: u32,
    recommended: bool,
    expected_iops: Option<f64>,
    measured: Option<&Point>,
    knee: Option<&Knee>,
) -> Comparison {
    let measured_iops = measured.map(|p| p.iops);
    Comparison {
        depth,
        qpairs,
        recommended,
        expected_iops,
        measured_iops,
        share_of_best: match (measured_iops, knee) {
            (Some(m), Some(k)) if k.best.iops > 0.0 => Some(m / k.best.iops),
            _ => None,
        },
        prediction_error: match (expected_iops, measured_iops) {
            (Some(e), Some(m)) if m > 0.0 => Some(e / m - 1.0),
            _ => None,
        },
        in_flight_vs_knee: knee.map(|k| {
            (u64::from(depth) * u64::from(qpairs)) as f64 / k.knee.in_flight().max(1) as f64
        }),
    }
}

/// A target setting applied over RPC.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Applied {
    pub setting: String,
    pub current: String,
    pub proposed: String,
    /// `kept`, `rolled back`, or `not applied`.
    pub outcome: String,
    pub reason: String,
    pub before: Option<Point>,
    pub after: Option<Point>,
}

/// What `tune` prints as JSON.
#[derive(Clone, Debug, Serialize)]
pub struct TuneResult {
    pub target: String,
    pub trid: String,
    pub p99_max_us: Option<f64>,
    /// The load at the current depth while the diagnosis watched.
    pub current: Option<Point>,
    /// The diagnosis's findings (kind, subject, severity) and recommendations.
    pub passive_findings: Vec<Value>,
    pub passive_recommendations: Vec<Value>,
    pub sweep: Vec<Point>,
    pub knee: Option<Knee>,
    pub comparison: Comparison,
    pub target_settings: Vec<Applied>,
    pub seconds: f64,
}

/// Upper bound of the run's wall time, seconds (printed before it starts).
pub fn budget_secs(args: &TuneArgs) -> f64 {
    let step = args.step.as_secs_f64() + 1.0;
    (args.depths.len() * args.qpairs.len()) as f64 * step
        + args.passive.as_secs_f64()
        + 3.0
        + step
        + 2.0 * 2.0 * step
}

/// The ringside-perf runner.
struct Perf {
    bin: PathBuf,
    trid: String,
    cores: String,
}

impl Perf {
    fn spawn(&self, depth: u32, qpairs: u32, secs: f64) -> Result<Child> {
        Command::new(&self.bin)
            .args(["-r", &self.trid, "--json", "-o", "4096", "-w", "randread"])
            .args(["--cores", &self.cores])
            .args(["-q", &depth.to_string(), "--qpairs", &qpairs.to_string()])
            .args(["-t", &format!("{secs}")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {}", self.bin.display()))
    }

    fn finish(child: Child, depth: u32, qpairs: u32) -> Result<Point> {
        let v = json_of("ringside-perf", child)?;
        let t = &v["total"];
        match (
            t["iops"].as_f64(),
            t["latency"]["p50_us"].as_f64(),
            t["latency"]["p99_us"].as_f64(),
        ) {
            (Some(iops), Some(p50_us), Some(p99_us)) => Ok(Point {
                depth,
                qpairs,
                iops,
                p50_us,
                p99_us,
            }),
            _ => bail!("ringside-perf's JSON lacks total.iops or its latency"),
        }
    }

    fn run(&self, depth: u32, qpairs: u32, secs: f64) -> Result<Point> {
        Perf::finish(self.spawn(depth, qpairs, secs)?, depth, qpairs)
    }
}

fn json_of(what: &str, child: Child) -> Result<Value> {
    let out = child
        .wait_with_output()
        .with_context(|| format!("cannot wait for {what}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "{what} failed ({}): {}",
            out.status,
            err.lines().last().unwrap_or("")
        );
    }
    serde_json::from_slice(&out.stdout).with_context(|| format!("{what} printed no JSON"))
}

fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// The attach flags again, for the `ringside diagnose` child.
fn attach_flags(attach: &AttachArgs) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(f) = &attach.file {
        v.extend(["--file".to_string(), f.display().to_string()]);
    } else if let Some(n) = &attach.name {
        v.extend(["--name".to_string(), n.clone()]);
    } else if let Some(p) = attach.pid {
        v.extend(["--pid".to_string(), p.to_string()]);
    }
    v
}

/// One JSON-RPC call to the target (`ringside rpc`'s client), 5 s to answer.
fn rpc_call(socket: &Path, method: &str, params: Value) -> Result<Value> {
    crate::rpc::call(socket, method, params, Duration::from_secs(5))
}

/// The RPC method and parameters that set a target setting to `value` at runtime (None: this
/// setting has no runtime method in the contract).
pub fn setter(setting: &str, value: &str) -> Option<(&'static str, Value)> {
    match setting {
        "idle_policy" => Some(("set_idle_policy", json!({ "mode": value }))),
        "placement" => Some(("set_placement", json!({ "placement": value }))),
        _ => None,
    }
}

/// `ringside tune`.
pub fn run(attach: &AttachArgs, args: &TuneArgs, out: &mut dyn Write) -> Result<()> {
    if args.depths.is_empty() || args.qpairs.is_empty() {
        bail!("--depths and --qpairs need at least one value each");
    }
    if let Some(bad) = args
        .depths
        .iter()
        .chain(&args.qpairs)
        .find(|&&v| v == 0 || v > 4096)
    {
        bail!("depths and qpairs must be between 1 and 4096 (got {bad})");
    }
    let t0 = Instant::now();
    let reader = attach.open()?;
    let desc = reader.description();
    let name = reader.name().to_string();
    let trid = match &args.trid {
        Some(t) => t.clone(),
        None => {
            // Through JSON, so the listener's transport reads the same whether the description
            // spells it as a string or as a typed enum.
            let l = desc
                .listeners
                .iter()
                .map(|l| serde_json::to_value(l).unwrap_or(Value::Null))
                .find(|l| l["transport"].as_str() == Some("tcp"))
                .ok_or_else(|| anyhow!("the target has no TCP listener; give -r TRID"))?;
            let addr = l["address"].as_str().unwrap_or("");
            let (ip, port) = addr
                .rsplit_once(':')
                .ok_or_else(|| anyhow!("listener address {addr:?} has no port; give -r TRID"))?;
            format!("trtype:tcp adrfam:ipv4 traddr:{ip} trsvcid:{port}")
        }
    };
    drop(reader);
    let perf = Perf {
        bin: args
            .perf
            .clone()
            .unwrap_or_else(|| sibling("ringside-perf")),
        trid: trid.clone(),
        cores: args.cores.clone(),
    };
    let p99_max_us = args.p99_max.map(|d| d.as_secs_f64() * 1e6);
    let step = args.step.as_secs_f64();
    eprintln!(
        "ringside: tuning {name} over {trid}: at most ~{:.0} s",
        budget_secs(args)
    );

    // 1. Passive.
    let passive = args.passive.as_secs_f64();
    let load = perf.spawn(args.current_depth, args.current_qpairs, passive + 3.0)?;
    std::thread::sleep(Duration::from_secs(1));
    let diag = Command::new(sibling("ringside"))
        .args(attach_flags(attach))
        .args(["diagnose", "--duration", &format!("{passive}s"), "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run ringside diagnose")?;
    let report = json_of("ringside diagnose", diag);
    let current = Perf::finish(load, args.current_depth, args.current_qpairs)?;
    let report = report?;
    let findings: Vec<Value> = report["findings"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| json!({"kind": f["kind"], "subject": f["subject"], "severity": f["severity"], "summary": f["summary"]}))
                .collect()
        })
        .unwrap_or_default();
    let recs: Vec<Value> = report["recommendations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let rec = |setting: &str| recs.iter().find(|r| r["setting"] == setting);
    let rec_depth = rec("initiator_queue_depth");
    let (depth, recommended, expected_iops) = match rec_depth {
        Some(r) => (
            r["proposed"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(args.current_depth),
            true,
            r["expected_iops"].as_f64(),
        ),
        None => (args.current_depth, false, None),
    };
    let qpairs = rec("initiator_qpairs")
        .and_then(|r| r["proposed"].as_str()?.parse().ok())
        .unwrap_or(args.current_qpairs);
    writeln!(
        out,
        "current: depth {} x {} qpair(s): {:.0} IOPS, p99 {:.0} µs",
        args.current_depth, args.current_qpairs, current.iops, current.p99_us
    )?;
    writeln!(
        out,
        "passive diagnosis: {} finding(s); recommends depth {depth} x {qpairs} qpair(s){}",
        findings.len(),
        expected_iops.map_or(String::new(), |e| format!(", expecting {e:.0} IOPS"))
    )?;

    // 2. Sweep.
    let mut sweep = Vec::new();
    for &q in &args.qpairs {
        let mut row = Vec::new();
        for &d in &args.depths {
            let p = perf.run(d, q, step)?;
            writeln!(
                out,
                "  depth {d:>4} x {q} qpair(s): {:>9.0} IOPS  p50 {:>7.0} µs  p99 {:>7.0} µs",
                p.iops, p.p50_us, p.p99_us
            )?;
            row.push(p);
            if stop_row(&row, p99_max_us) {
                break;
            }
        }
        sweep.extend(row);
    }
    let knee = find_knee(&sweep, p99_max_us);
    match &knee {
        Some(k) => writeln!(
            out,
            "best: depth {} x {}: {:.0} IOPS (p99 {:.0} µs); knee: depth {} x {}: {:.0} IOPS (p99 {:.0} µs)",
            k.best.depth, k.best.qpairs, k.best.iops, k.best.p99_us,
            k.knee.depth, k.knee.qpairs, k.knee.iops, k.knee.p99_us
        )?,
        None => writeln!(out, "no point kept p99 under the limit")?,
    }

    // 3. Compare.
    let measured = match sweep
        .iter()
        .find(|p| p.depth == depth && p.qpairs == qpairs)
    {
        Some(p) => Some(p.clone()),
        None => Some(perf.run(depth, qpairs, step)?),
    };
    let cmp = compare(
        depth,
        qpairs,
        recommended,
        expected_iops,
        measured.as_ref(),
        knee.as_ref(),
    );
    writeln!(
        out,
        "passive vs knee: depth {} x {} measured {} ({} of the best){}",
        cmp.depth,
        cmp.qpairs,
        cmp.measured_iops
            .map_or("-".into(), |m| format!("{m:.0} IOPS")),
        cmp.share_of_best.map_or("-".into(), |s| format!("{s:.2}")),
        cmp.prediction_error.map_or(String::new(), |e| format!(
            "; prediction {:+.0} %",
            e * 100.0
        ))
    )?;

    // 4. Target settings.
    let socket = args
        .rpc_socket
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("/var/tmp/ringside-{name}.sock")));
    let mut applied = Vec::new();
    for r in recs
        .iter()
        .filter(|r| r["setting"] == "idle_policy" || r["setting"] == "placement")
    {
        let a = apply_setting(&perf, &socket, r, args, step);
        writeln!(
            out,
            "target setting {}: {} -> {}: {} ({})",
            a.setting, a.current, a.proposed, a.outcome, a.reason
        )?;
        applied.push(a);
    }
    if applied.is_empty() {
        writeln!(
            out,
            "target settings: the diagnosis recommended no idle-policy or placement change"
        )?;
    }
    let result = TuneResult {
        target: name,
        trid,
        p99_max_us,
        current: Some(current),
        passive_findings: findings,
        passive_recommendations: recs,
        sweep,
        knee,
        comparison: cmp,
        target_settings: applied,
        seconds: t0.elapsed().as_secs_f64(),
    };
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&result)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("ringside: tune result written to {}", path.display());
    }
    out.flush()?;
    Ok(())
}

/// Applies one recommended target setting over RPC, measures at the current depth before and
/// after, keeps it when IOPS held, else rolls back.
fn apply_setting(perf: &Perf, socket: &Path, r: &Value, args: &TuneArgs, step: f64) -> Applied {
    let mut a = Applied {
        setting: r["setting"].as_str().unwrap_or("").into(),
        current: r["current"].as_str().unwrap_or("").into(),
        proposed: r["proposed"].as_str().unwrap_or("").into(),
        outcome: "not applied".into(),
        ..Applied::default()
    };
    if args.no_apply {
        a.reason = "--no-apply".into();
        return a;
    }
    let (Some((method, set)), Some((_, back))) = (
        setter(&a.setting, &a.proposed),
        setter(&a.setting, &a.current),
    ) else {
        a.reason = "no runtime method for this setting".into();
        return a;
    };
    let offered = match rpc_call(socket, "rpc_get_methods", Value::Null) {
        Ok(v) => v,
        Err(e) => {
            a.reason = format!("{e:#}");
            return a;
        }
    };
    if !offered
        .as_array()
        .is_some_and(|m| m.iter().any(|x| x == method))
    {
        a.reason = format!(
            "the target offers no {method} method (restart it with the recommended fragment instead)"
        );
        return a;
    }
    let (d, q) = (args.current_depth, args.current_qpairs);
    let before = match perf.run(d, q, step) {
        Ok(p) => p,
        Err(e) => {
            a.reason = format!("measuring before: {e:#}");
            return a;
        }
    };
    if let Err(e) = rpc_call(socket, method, set) {
        a.reason = format!("{e:#}");
        a.before = Some(before);
        return a;
    }
    let after = perf.run(d, q, step);
    let keep = after
        .as_ref()
        .is_ok_and(|p| p.iops >= before.iops * KEEP_SHARE);
    if keep {
        a.outcome = "kept".into();
        a.reason = format!("IOPS held (at least {KEEP_SHARE} of before)");
    } else {
        let undone = rpc_call(socket, method, back);
        a.outcome = "rolled back".into();
        a.reason = match (&after, undone) {
            (_, Err(e)) => format!("rollback failed: {e:#}"),
            (Err(e), Ok(_)) => format!("measuring after: {e:#}"),
            (Ok(_), Ok(_)) => format!("IOPS fell below {KEEP_SHARE} of before"),
        };
    }
    a.before = Some(before);
    a.after = after.ok();
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(depth: u32, qpairs: u32, iops: f64, p99_us: f64) -> Point {
        Point {
            depth,
            qpairs,
            iops,
            p50_us: p99_us / 2.0,
            p99_us,
        }
    }

    /// The issue's measured sweep (4 KiB random read, one reactor): 1 116K … 64 858K, 128 640K.
    fn issue_sweep() -> Vec<Point> {
        [
            (1, 116e3, 40.0),
            (2, 195e3, 45.0),
            (4, 308e3, 50.0),
            (8, 444e3, 60.0),
            (16, 588e3, 80.0),
            (32, 821e3, 120.0),
            (64, 858e3, 200.0),
            (128, 640e3, 600.0),
        ]
        .iter()
        .map(|&(d, i, l)| p(d, 1, i, l))
        .collect()
    }

    #[test]
    fn the_knee_is_the_shallowest_point_near_the_best_under_the_limit() {
        let s = issue_sweep();
        let k = find_knee(&s, None).expect("a knee");
        assert_eq!(k.best.depth, 64);
        assert_eq!(k.knee.depth, 32, "821K is within 5 % of 858K");
        let k = find_knee(&s, Some(100.0)).expect("under 100 µs");
        assert_eq!(k.best.depth, 16);
        assert_eq!(k.knee.depth, 16);
        assert!(find_knee(&s, Some(10.0)).is_none());
    }

    #[test]
    fn a_row_stops_past_the_plateau_or_the_latency_limit() {
        let s = issue_sweep();
        assert!(!stop_row(&s[..6], None), "still growing at 32");
        assert!(!stop_row(&s[..7], None), "64 still grows 4.5 %");
        assert!(!stop_row(&s[..8], None), "64 grew more than 2 % over 32");
        let flat = vec![
            p(8, 1, 400e3, 60.0),
            p(16, 1, 405e3, 80.0),
            p(32, 1, 404e3, 120.0),
        ];
        assert!(stop_row(&flat, None), "two steps without growth");
        assert!(stop_row(&s[..5], Some(70.0)), "p99 80 µs > 70");
        assert!(!stop_row(&s[..1], None));
    }

    #[test]
    fn the_comparison_reports_share_of_best_and_prediction_error() {
        let s = issue_sweep();
        let k = find_knee(&s, None);
        // The issue's case: depth 8 recommended, 606K expected, 444K measured.
        let c = compare(8, 1, true, Some(606e3), Some(&s[3]), k.as_ref());
        let share = c.share_of_best.expect("share");
        assert!((share - 444.0 / 858.0).abs() < 1e-9, "{share}");
        let err = c.prediction_error.expect("error");
        assert!((err - (606.0 / 444.0 - 1.0)).abs() < 1e-9, "{err}");
        assert_eq!(c.in_flight_vs_knee, Some(8.0 / 32.0));
        let none = compare(1, 1, false, None, None, None);
        assert_eq!(none.share_of_best, None);
        assert_eq!(none.prediction_error, None);
    }

    #[test]
    fn latency_limits_parse_and_bad_ones_say_why() {
        assert_eq!(parse_latency("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_latency("2ms"), Ok(Duration::from_millis(2)));
        assert_eq!(parse_latency("250"), Ok(Duration::from_micros(250)));
        assert!(parse_latency("fast").unwrap_err().contains("not a latency"));
        assert!(parse_latency("0us").is_err());
    }

    #[test]
    fn only_idle_policy_and_placement_have_runtime_setters() {
        assert_eq!(
            setter("idle_policy", "sleep"),
            Some(("set_idle_policy", json!({"mode": "sleep"})))
        );
        assert_eq!(
            setter("placement", "least-loaded").map(|s| s.0),
            Some("set_placement")
        );
        assert_eq!(setter("core_list", "0,1"), None);
    }
}
