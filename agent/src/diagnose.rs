//! `ringside diagnose`, `ringside record` and `ringside report`: watch a target for a while (or
//! replay a recording) and write the diagnosis report.
//!
//! Single-threaded: one loop samples every interval until the duration is over or Ctrl-C; the
//! analysis is `agent_core`'s and identical for a live session and a recording (a recording is
//! exactly the samples a live session took).

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_core::recording::Recording;
use agent_core::report::{AgentCost, Report};
use agent_core::sample::Sample;
use agent_core::{window, Analyzer, AnalyzerConfig, TargetInfo, Topology};
use anyhow::{bail, Context, Result};
use clap::Args;

use crate::attach::AttachArgs;
use crate::session::{Session, SessionOptions};

/// Parses `10s`, `500ms`, `2m`, `1.5s` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult) = if let Some(v) = s.strip_suffix("ms") {
        (v, 1e-3)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix('m') {
        (v, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (use 10s, 500ms, 2m)"))?;
    if !v.is_finite() || v <= 0.0 || v * mult > 86_400.0 {
        return Err(format!(
            "{s:?}: a duration must be above 0 and at most a day"
        ));
    }
    Ok(Duration::from_secs_f64(v * mult))
}

/// Options shared by every analysing subcommand.
#[derive(Args, Clone, Debug, Default)]
pub struct AnalysisArgs {
    /// Analyse against this topology instead of this machine's: hwloc XML (`lstopo --of xml`),
    /// ringside JSON, or `synthetic:<hwloc synthetic description>`.
    #[arg(long, value_name = "FILE")]
    pub topology: Option<String>,
    /// The network device serving the listeners (overrides what the agent finds; use it when
    /// analysing against another machine's topology).
    #[arg(long, value_name = "NETDEV")]
    pub nic: Option<String>,
    /// Do not attach the kernel probes (attached by default when root).
    #[arg(long)]
    pub no_kernel: bool,
    /// Also count the reactors' system calls in the kernel (attaches raw_syscalls, which slows
    /// every system call on the machine while the agent runs).
    #[arg(long)]
    pub kernel_syscalls: bool,
    /// Also time every softirq on the reactors' cores and sample TCP state per packet
    /// (tcp_probe): off by default, they cost a busy reactor's core a few percent.
    #[arg(long)]
    pub kernel_per_packet: bool,
    /// Analyse an SPDK nvmf_tgt through its JSON-RPC socket instead of a ringside-tgt
    /// (`/var/tmp/spdk.sock` is SPDK's default).
    #[arg(long, value_name = "SOCK")]
    pub spdk_rpc: Option<PathBuf>,
    /// The SPDK target's trace file (default: the one `trace_get_info` names, usually
    /// `/dev/shm/nvmf_trace.pid<PID>`).
    #[arg(long, value_name = "FILE", requires = "spdk_rpc")]
    pub spdk_trace: Option<PathBuf>,
}

/// Opens the session the analysis flags ask for: an SPDK target with `--spdk-rpc`, else the
/// ringside-tgt instance `attach` picks.
pub fn open_session(
    attach: &AttachArgs,
    analysis: &AnalysisArgs,
    opts: &SessionOptions,
) -> Result<Session> {
    match &analysis.spdk_rpc {
        Some(rpc) => crate::spdk::open_session(
            &crate::spdk::SpdkTarget {
                rpc: rpc.clone(),
                trace: analysis.spdk_trace.clone(),
            },
            opts,
        ),
        None => Session::open(attach, opts),
    }
}

/// `ringside diagnose`.
#[derive(Args, Clone, Debug)]
pub struct DiagnoseArgs {
    /// How long to watch.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Window length.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Print the report as JSON instead of Markdown.
    #[arg(long)]
    pub json: bool,
    /// Also write a self-contained HTML report with charts to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Also keep the samples as a recording (for `ringside report`).
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    #[command(flatten)]
    pub analysis: AnalysisArgs,
}

/// `ringside record`.
#[derive(Args, Clone, Debug)]
pub struct RecordArgs {
    /// Where to write the recording (JSON lines).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// How long to record.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Sampling interval (the window length of a later report).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    #[command(flatten)]
    pub analysis: AnalysisArgs,
}

/// `ringside report`.
#[derive(Args, Clone, Debug)]
pub struct ReportArgs {
    /// The recording (`ringside record -o FILE` or `ringside diagnose --record FILE`).
    pub recording: PathBuf,
    /// Print the report as JSON instead of Markdown.
    #[arg(long)]
    pub json: bool,
    /// Also write a self-contained HTML report to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Window length for the replay (default: the recording's sampling interval, 1 s).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Analyse against this topology instead of the recorded one.
    #[arg(long, value_name = "FILE")]
    pub topology: Option<String>,
}

/// The agent's own CPU time (all threads, ns) and peak RSS (bytes), from procfs.
fn own_usage() -> (u64, u64) {
    let mut cpu_ns = 0u64;
    if let Ok(tasks) = fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            if let Ok(s) = fs::read_to_string(t.path().join("schedstat")) {
                cpu_ns += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    let hwm = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024;
    (cpu_ns, hwm)
}

/// The process's Ctrl-C flag (one handler per process: installed on first use).
fn stop_flag() -> Arc<AtomicBool> {
    static STOP: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    Arc::clone(STOP.get_or_init(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let _ = ctrlc::set_handler(move || s.store(true, Ordering::Relaxed));
        stop
    }))
}

/// Samples a live session for `duration`, calling `each` with every sample. Returns the first
/// and last samples and the agent's cost.
fn watch(
    session: &mut Session,
    duration: Duration,
    notes: &mut Vec<String>,
    mut each: impl FnMut(&Sample) -> Result<()>,
) -> Result<(Option<Sample>, Option<Sample>, AgentCost)> {
    let stop = stop_flag();
    let (cpu0, _) = own_usage();
    let start = Instant::now();
    let interval = session.interval();
    let mut first = None;
    let mut k: u32 = 0;
    let attachments = session.status().map(|s| s.attachments);
    loop {
        session.tick();
        // The findings and the recording cover one instance: stop at its end.
        if session.status().map(|s| s.attachments) != attachments || !session.is_live() {
            let why = session
                .status()
                .map(|s| {
                    let what = if s.state.is_live() {
                        "was replaced by a new instance (reattached)".to_string()
                    } else {
                        format!("went away ({})", s.reason)
                    };
                    format!(
                        "target {} {what} at {} UTC, {:.1} s into the watch; the report covers the instance watched until then",
                        s.name,
                        utc_now(),
                        start.elapsed().as_secs_f64()
                    )
                })
                .unwrap_or_default();
            eprintln!("ringside: {why}");
            notes.push(why);
            break;
        }
        if let Some(s) = session.last_sample() {
            each(s)?;
            if first.is_none() {
                first = Some(s.clone());
            }
        }
        if stop.load(Ordering::Relaxed) || start.elapsed() >= duration {
            break;
        }
        k += 1;
        let due = start + interval * k;
        // Sleep in short steps so Ctrl-C ends the watch promptly.
        while Instant::now() < due && !stop.load(Ordering::Relaxed) {
            std::thread::sleep((due - Instant::now()).min(Duration::from_millis(100)));
        }
    }
    let (cpu1, hwm) = own_usage();
    let last = session.last_sample().cloned();
    let agent_ns = |s: Option<&Sample>| -> u64 {
        s.and_then(|s| s.kernel.as_ref())
            .map(|k| k.reactors.iter().map(|r| r.agent_ns).sum())
            .unwrap_or(0)
    };
    let cost = AgentCost {
        cpu_seconds: cpu1.saturating_sub(cpu0) as f64 / 1e9,
        wall_seconds: start.elapsed().as_secs_f64(),
        max_rss_bytes: hwm,
        on_reactor_cores_seconds: agent_ns(last.as_ref()).saturating_sub(agent_ns(first.as_ref()))
            as f64
            / 1e9,
    };
    Ok((first, last, cost))
}

/// Builds the report from an analyzer that saw every sample.
fn build_report(
    analyzer: &Analyzer,
    first: Option<&Sample>,
    last: Option<&Sample>,
    cost: Option<AgentCost>,
    source: String,
    lifecycle: Vec<String>,
) -> Report {
    let overall = match (first, last) {
        (Some(a), Some(b)) if b.t_ns > a.t_ns => {
            Some(window::build(analyzer.info(), analyzer.topology(), a, b))
        }
        _ => None,
    };
    Report {
        target: analyzer.info().clone(),
        topology: analyzer.topology().clone(),
        overall,
        timeline: analyzer.summaries().cloned().collect(),
        findings: analyzer.all_findings(),
        recommendations: final_recommendations(analyzer),
        agent_cost: cost,
        source,
        tail: agent_core::requests::worst_tail(analyzer.windows()),
        lifecycle,
    }
}

/// The analyzer's recommendations at the end; when the load stopped before the end (a run that
/// finished, so its findings cleared), the recommendations for everything raised during the run,
/// judged on the windows up to the last one that carried I/O.
fn final_recommendations(analyzer: &Analyzer) -> Vec<agent_core::Recommendation> {
    let now = analyzer.recommendations();
    let raised = analyzer.all_findings();
    if !now.is_empty() || raised.is_empty() {
        return now.to_vec();
    }
    let windows: Vec<agent_core::Window> = analyzer.windows().cloned().collect();
    let Some(end) = windows.iter().rposition(|w| w.total.iops > 0.0) else {
        return Vec::new();
    };
    agent_core::recommend::recommend(
        analyzer.info(),
        analyzer.topology(),
        &windows[..=end],
        &raised,
    )
}

fn emit(report: &Report, json: bool, html: Option<&Path>, out: &mut dyn Write) -> Result<()> {
    if json {
        serde_json::to_writer_pretty(&mut *out, report).context("cannot write the report")?;
        writeln!(out)?;
    } else {
        out.write_all(report.to_markdown().as_bytes())?;
    }
    if let Some(path) = html {
        let svg = crate::render_topology(report);
        fs::write(path, report.to_html(&svg))
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("ringside: HTML report written to {}", path.display());
    }
    out.flush()?;
    Ok(())
}

/// Session options from the shared analysis flags.
pub fn session_options(interval: Duration, analysis: &AnalysisArgs) -> SessionOptions {
    SessionOptions {
        window: interval,
        topology_arg: analysis.topology.clone(),
        nic: analysis.nic.clone(),
        kernel: !analysis.no_kernel && rustix::process::geteuid().is_root(),
        kernel_syscalls: analysis.kernel_syscalls,
        kernel_per_packet: analysis.kernel_per_packet,
    }
}

/// `ringside diagnose`.
pub fn diagnose(attach: &AttachArgs, args: &DiagnoseArgs, out: &mut dyn Write) -> Result<()> {
    if args.interval > args.duration {
        bail!("--interval must not exceed --duration");
    }
    let mut session = open_session(
        attach,
        &args.analysis,
        &session_options(args.interval, &args.analysis),
    )?;
    let mut notes = Vec::new();
    wait_for_target(&mut session, &mut notes)?;
    let mut rec = match &args.record {
        Some(p) => Some(open_recording(
            p,
            session.analyzer().info(),
            session.analyzer().topology(),
        )?),
        None => None,
    };
    eprintln!(
        "ringside: watching {} (pid {}) for {:.0?} …",
        session.analyzer().info().name,
        session.analyzer().info().pid,
        args.duration
    );
    let (first, last, cost) = watch(&mut session, args.duration, &mut notes, |s| {
        if let Some(w) = &mut rec {
            writeln!(w, "{}", Recording::sample_line(s))?;
        }
        Ok(())
    })?;
    if let Some(mut w) = rec {
        w.flush()?;
    }
    let report = build_report(
        session.analyzer(),
        first.as_ref(),
        last.as_ref(),
        Some(cost),
        "live".into(),
        notes,
    );
    emit(&report, args.json, args.html.as_deref(), out)
}

fn open_recording(path: &Path, info: &TargetInfo, topo: &Topology) -> Result<BufWriter<fs::File>> {
    let f = fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = BufWriter::new(f);
    writeln!(w, "{}", Recording::header_line(info, topo))?;
    Ok(w)
}

/// `ringside record`.
pub fn record(attach: &AttachArgs, args: &RecordArgs, out: &mut dyn Write) -> Result<()> {
    let mut session = open_session(
        attach,
        &args.analysis,
        &session_options(args.interval, &args.analysis),
    )?;
    let mut notes = Vec::new();
    wait_for_target(&mut session, &mut notes)?;
    let mut w = open_recording(
        &args.output,
        session.analyzer().info(),
        session.analyzer().topology(),
    )?;
    let mut n = 0u64;
    let (_, _, cost) = watch(&mut session, args.duration, &mut notes, |s| {
        writeln!(w, "{}", Recording::sample_line(s))?;
        n += 1;
        Ok(())
    })?;
    w.flush()?;
    writeln!(
        out,
        "recorded {n} samples of {} to {} ({:.2} % of a core)",
        session.analyzer().info().name,
        args.output.display(),
        cost.core_share() * 100.0
    )?;
    for n in &notes {
        writeln!(out, "target lifecycle: {n}")?;
    }
    Ok(())
}

/// Waits for the target when the session started before it (said once by the session), and
/// notes how long, for the report.
fn wait_for_target(session: &mut Session, notes: &mut Vec<String>) -> Result<()> {
    let t0 = Instant::now();
    if !session.is_live() {
        if !session.wait_live(&stop_flag()) {
            bail!("stopped while waiting for the target");
        }
        notes.push(format!(
            "waited {:.1} s for target {} to start; attached at {} UTC",
            t0.elapsed().as_secs_f64(),
            session.analyzer().info().name,
            utc_now()
        ));
    }
    Ok(())
}

/// Now as `YYYY-MM-DD HH:MM:SS` in UTC (civil date from the Unix day count, Howard Hinnant's
/// algorithm), for the times in the report.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc(secs)
}

fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// `ringside report`.
pub fn report(args: &ReportArgs, out: &mut dyn Write) -> Result<()> {
    let text = fs::read_to_string(&args.recording)
        .with_context(|| format!("cannot read {}", args.recording.display()))?;
    let rec = Recording::parse(&text)
        .with_context(|| format!("{} is not a usable recording", args.recording.display()))?;
    let topology = match &args.topology {
        Some(t) => crate::session::load_topology(t)?.0,
        None => rec.header.topology.clone(),
    };
    let cfg = AnalyzerConfig {
        window_ns: u64::try_from(args.interval.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1),
        ..AnalyzerConfig::default()
    };
    let mut analyzer = Analyzer::new(rec.header.info.clone(), topology, cfg);
    for s in &rec.samples {
        analyzer.push(s.clone());
    }
    let report = build_report(
        &analyzer,
        rec.samples.first(),
        rec.samples.last(),
        None,
        args.recording.display().to_string(),
        Vec::new(),
    );
    emit(&report, args.json, args.html.as_deref(), out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_are_civil_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(1_796_557_622), "2026-12-06 11:47:02");
    }

    #[test]
    fn durations_parse_and_bad_ones_say_why() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("soon")
            .unwrap_err()
            .contains("not a duration"));
        assert!(parse_duration("9999999s").is_err());
    }

    /// What `ringside diagnose --json` and `ringside report --json` print for an RDMA target:
    /// the reactor's RDMA figures at `overall.reactors[i].rdma`, the ports at
    /// `overall.rdma_ports`, the same as the live snapshot's `window`.
    #[test]
    fn the_json_report_and_the_snapshot_carry_rdma_reactors_and_ports() {
        use crate::collect::rdma::RdmaCollector;
        use crate::collect::ring::RingCollector;
        use crate::collect::{Collector, Sources};
        use crate::session::Session;
        use trace_ring::description::ReactorDesc;
        use trace_ring::{Description, Layout, TraceFile};

        let dir = tempfile::tempdir().expect("tempdir");
        let sys = dir.path().join("sys");
        let port = sys.join("class/infiniband/rxe0/ports/1");
        let put = |p: &Path, text: &str| {
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs::write(p, text).expect("write");
        };
        put(&sys.join("class/infiniband/rxe0/parent"), "eth0\n");
        put(&port.join("rate"), "10 Gb/sec (1X QDR)\n");
        put(&port.join("state"), "4: ACTIVE\n");
        put(&port.join("hw_counters/rcvd_seq_err"), "0\n");
        let desc = Description {
            reactors: vec![ReactorDesc::default()],
            ..Description::default()
        };
        let layout = Layout {
            reactors: 1,
            ring_records: 64,
            qpair_slots: 4,
            stages: 0,
        };
        let tf = TraceFile::create(dir.path(), "rdma-json", std::process::id(), &desc, &layout)
            .expect("trace file");
        let mut w = tf.take_reactor(0).expect("reactor");
        w.counters.rdma_post_recv(512, 8);
        w.counters.rdma_srq_ready(512);
        let reader = trace_ring::TraceReader::open(tf.path()).expect("open");
        let collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(RingCollector::new(reader)),
            Box::new(RdmaCollector::with_root(&sys)),
        ];
        let mut t = 0u64;
        let clock = Box::new(move || {
            t += 1_000_000_000;
            t
        });
        let sources = Sources::new(collectors, clock);
        let mut session =
            Session::from_sources(sources, Topology::default(), Duration::from_secs(1));
        let rec_path = dir.path().join("rec.jsonl");
        let mut rec = open_recording(
            &rec_path,
            session.analyzer().info(),
            session.analyzer().topology(),
        )
        .expect("recording");
        for i in 0..3u64 {
            w.counters.rdma_cq_poll(4);
            w.counters.rdma_post_send(2);
            put(
                &port.join("hw_counters/rcvd_seq_err"),
                &format!("{}\n", i * 5),
            );
            session.tick();
            let s = session.last_sample().expect("a sample");
            writeln!(rec, "{}", Recording::sample_line(s)).expect("write sample");
        }
        rec.flush().expect("flush");
        drop(rec);

        let snap = serde_json::to_value(session.snapshot()).expect("snapshot json");
        assert_eq!(snap["window"]["rdma_ports"][0]["device"], "rxe0", "{snap}");
        assert_eq!(snap["window"]["rdma_ports"][0]["soft"], true);
        assert_eq!(snap["window"]["reactors"][0]["rdma"]["srq_size"], 512);

        let mut out = Vec::new();
        report(
            &ReportArgs {
                recording: rec_path,
                json: true,
                html: None,
                interval: Duration::from_secs(1),
                topology: None,
            },
            &mut out,
        )
        .expect("report");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("report json");
        let o = &v["overall"];
        assert_eq!(o["rdma_ports"][0]["device"], "rxe0", "{o}");
        assert_eq!(o["rdma_ports"][0]["netdev"], "eth0");
        assert_eq!(o["rdma_ports"][0]["retransmits"]["rcvd_seq_err"], 10);
        assert_eq!(o["reactors"][0]["rdma"]["completions"], 8);
        assert_eq!(
            o["reactors"][0]["rdma"]["completions_per_nonempty_poll"],
            4.0
        );
        assert_eq!(o["reactors"][0]["rdma"]["srq_depth"], 512);
        let caps = v["target"]["capabilities"]
            .as_array()
            .expect("capabilities");
        assert!(
            caps.iter()
                .any(|c| c["name"] == "rdma" && c["available"] == true),
            "{caps:?}"
        );
    }
}
