//! `ringside trace`: dump or follow a target's tracepoint rings, all reactors merged in time
//! order, as records or as rebuilt requests with per-stage durations.
//!
//! Single-threaded: one merged cursor over the read-only mapping, polled every `--interval`
//! while following. The reader never blocks the target; when the target laps it, the records
//! lost are counted and reported, never guessed. Output goes to a `Write` so tests can capture
//! it; the closing summary goes to stderr in text mode and as a last JSON line with `--json`.
//!
//! `--kernel` (with `--follow`) also loads the kernel probes (`probes` crate) filtered to the
//! target's reactor threads and cores, listener ports and namespace devices, and interleaves
//! their events with the ring's output on one clock: ring ticks are converted to
//! CLOCK_MONOTONIC with the trace file's calibration, and eBPF stamps `bpf_ktime_get_ns`, the
//! same clock. The probe set is owned by the same single thread and polled in place of the
//! sleep between ring polls. Lines are then held back [`KERNEL_HOLD_BACK_NS`] and printed
//! sorted by their start time (a request by its first stage, a preemption by the switch away),
//! so a request and the kernel events inside its span come out together. When the probes
//! cannot load, one `kernel:` line says why and the ring output continues unchanged.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};
use trace_ring::description::{ArgKind, TpRole};
use trace_ring::{tsc, Description, Event, QpairCounters, ReactorCounters, Start, TraceReader};

use crate::attach::{self, AttachArgs};
use crate::collect::kernel as kernel_probes;
use crate::requests::{Request, RequestBuilder};

/// Options of `ringside trace`.
#[derive(Args, Clone, Debug)]
pub struct TraceArgs {
    /// List the target instances in /dev/shm and exit.
    #[arg(long)]
    pub list: bool,
    /// Print the instance's description (tracepoint catalog, reactors, listeners, namespaces).
    #[arg(long)]
    pub describe: bool,
    /// Print each reactor's counters page.
    #[arg(long)]
    pub counters: bool,
    /// Keep reading new records until the target exits (or --duration / --count / Ctrl-C).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Print requests (per-stage durations) rather than records.
    #[arg(long)]
    pub requests: bool,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// Only these reactors (index; repeatable or comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub reactor: Vec<u32>,
    /// Only these qpair slots (repeatable or comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub qpair: Vec<u16>,
    /// Only these tracepoints: a name (`tcp.r2t_sent`), a group (`tcp`) or a prefix (`tcp.h2c*`).
    #[arg(long, value_delimiter = ',')]
    pub tpoint: Vec<String>,
    /// With --follow: stop after this many seconds.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Stop after printing this many records (or requests).
    #[arg(long)]
    pub count: Option<u64>,
    /// With --follow: poll interval in milliseconds.
    #[arg(long, default_value_t = 20)]
    pub interval: u64,
    /// With --follow: also trace the kernel (eBPF: reactor preemptions, wake-ups, migrations,
    /// irqs on reactor cores, TCP retransmits on the listeners, slow block requests, NUMA
    /// migrations), interleaved in time order. Needs root or CAP_BPF and CAP_PERFMON.
    #[arg(long)]
    pub kernel: bool,
}

/// How long lines wait, with `--kernel`, before they are printed in time order: a request is
/// printed when it completes but sorted by its start, a preemption is streamed when it ends.
pub const KERNEL_HOLD_BACK_NS: u64 = 500_000_000;

/// Runs `ringside trace`.
pub fn run(attach: &AttachArgs, args: &TraceArgs, out: &mut dyn Write) -> Result<()> {
    if args.list {
        return list(attach, args.json, out);
    }
    let reader = attach.open()?;
    if args.describe {
        return describe(&reader, args.json, out);
    }
    if args.counters {
        return counters(&reader, args.json, out);
    }
    if args.kernel && !args.follow {
        bail!(
            "--kernel needs --follow: kernel events exist only from the moment the probes attach \
             (e.g. `ringside trace --follow --duration 5 --kernel`)"
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    if args.follow {
        let s = Arc::clone(&stop);
        // A second handler install (tests call run() repeatedly) is not an error worth failing on.
        let _ = ctrlc::set_handler(move || s.store(true, Ordering::Relaxed));
    }
    Tracer::new(&reader, args)?.run(&reader, args, &stop, out)
}

fn list(attach: &AttachArgs, json: bool, out: &mut dyn Write) -> Result<()> {
    let all = attach::list(&attach.shm_dir)?;
    if json {
        for i in &all {
            let v = json!({
                "name": i.name, "path": i.path, "pid": i.pid, "alive": i.alive,
                "abi": i.abi.map(|(a, b)| format!("{a}.{b}")), "problem": i.problem,
            });
            writeln!(out, "{v}")?;
        }
    } else if all.is_empty() {
        writeln!(out, "no instances in {}", attach.shm_dir.display())?;
    } else {
        writeln!(
            out,
            "{:<20} {:>8} {:<7} {:<5} path",
            "name", "pid", "state", "abi"
        )?;
        for i in &all {
            let pid = i.pid.map_or("-".to_string(), |p| p.to_string());
            let state = if i.alive { "live" } else { "exited" };
            let abi = i.abi.map_or("-".to_string(), |(a, b)| format!("{a}.{b}"));
            writeln!(
                out,
                "{:<20} {:>8} {:<7} {:<5} {}{}",
                i.name,
                pid,
                state,
                abi,
                i.path.display(),
                i.problem
                    .as_ref()
                    .map_or(String::new(), |p| format!("  ({p})"))
            )?;
        }
    }
    Ok(())
}

fn describe(reader: &TraceReader, json: bool, out: &mut dyn Write) -> Result<()> {
    let d = reader.description();
    let h = reader.header();
    if json {
        let v = json!({
            "name": reader.name(), "pid": h.pid, "abi": format!("{}.{}", h.abi_major, h.abi_minor),
            "tsc_hz": h.tsc_hz, "enabled_mask": format!("{:#x}", reader.enabled_mask()),
            "description": d,
        });
        writeln!(out, "{v}")?;
        return Ok(());
    }
    writeln!(
        out,
        "instance {} (pid {}, ABI {}.{}, clock {} Hz, {} reactors, ring {} records)",
        reader.name(),
        h.pid,
        h.abi_major,
        h.abi_minor,
        h.tsc_hz,
        reader.reactors(),
        reader.geometry().ring_records
    )?;
    for r in &d.reactors {
        let node = r.numa_node.map_or("?".into(), |n| n.to_string());
        writeln!(
            out,
            "  reactor {} on core {} (NUMA node {node})",
            r.index, r.core
        )?;
    }
    for l in &d.listeners {
        writeln!(
            out,
            "  listener {} {} netdev {} speed {}",
            l.transport,
            l.address,
            l.netdev.as_deref().unwrap_or("?"),
            l.link_speed_mbps
                .map_or("?".into(), |s| format!("{s} Mb/s"))
        )?;
    }
    for s in &d.subsystems {
        writeln!(out, "  subsystem {}", s.nqn)?;
        for n in &s.namespaces {
            writeln!(
                out,
                "    nsid {} backend {} device {}{} size {}{}{}",
                n.nsid,
                n.backend,
                n.device.as_deref().unwrap_or("-"),
                n.device_path
                    .as_deref()
                    .map_or(String::new(), |p| format!(" ({p})")),
                n.size_bytes.map_or("?".into(), |b| b.to_string()),
                n.numa_node
                    .map_or(String::new(), |d| format!(" NUMA node {d}")),
                if n.device_queues.is_empty() {
                    String::new()
                } else {
                    let q: Vec<String> = n
                        .device_queues
                        .iter()
                        .map(|q| format!("reactor {} -> qid {}", q.reactor, q.qid))
                        .collect();
                    format!(" queues [{}]", q.join(", "))
                }
            )?;
        }
    }
    let mask = reader.enabled_mask();
    writeln!(out, "  tracepoints (enabled mask {mask:#x}):")?;
    for t in &d.tracepoints {
        let on = mask >> trace_ring::tpoint_group(t.id) & 1 == 1;
        let args: Vec<&str> = t.args.iter().map(|a| a.name.as_str()).collect();
        writeln!(
            out,
            "    {:#06x} {:<32} {:<6} {:<3} {}",
            t.id,
            t.name,
            role_name(t.role),
            if on { "on" } else { "off" },
            args.join(", ")
        )?;
    }
    Ok(())
}

fn counters(reader: &TraceReader, json: bool, out: &mut dyn Write) -> Result<()> {
    for r in 0..reader.reactors() {
        let Some(c) = reader.counters(r) else {
            continue;
        };
        let t = &c.totals;
        let active = c
            .qpairs
            .iter()
            .enumerate()
            .filter(|(_, q)| q.generation != 0);
        if json {
            // Every word by its ABI field name, so scripts read `.totals.rdma_srq_depth`.
            let fields = |names: &[&str], words: &[u64]| -> serde_json::Map<String, Value> {
                names
                    .iter()
                    .zip(words)
                    .map(|(n, w)| ((*n).to_string(), json!(w)))
                    .collect()
            };
            let qpairs: Vec<Value> = active
                .map(|(slot, q)| {
                    let mut m = fields(QpairCounters::FIELD_NAMES, &q.to_words());
                    m.insert("slot".into(), json!(slot));
                    Value::Object(m)
                })
                .collect();
            let totals = fields(ReactorCounters::FIELD_NAMES, &t.to_words());
            // Requests recorded per stage histogram, by the stage's ABI name.
            let stages: serde_json::Map<String, Value> = reader
                .description()
                .stages
                .iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    let h = reader.stage_histogram(r, i as u32)?;
                    Some((s.to_string(), json!({"count": h.count()})))
                })
                .collect();
            let v = json!({"reactor": r, "totals": totals, "qpairs": qpairs, "stages": stages});
            writeln!(out, "{v}")?;
        } else {
            writeln!(out, "reactor {r}: {t:?}")?;
            for (slot, q) in active {
                writeln!(out, "  slot {slot}: {q:?}")?;
            }
        }
    }
    Ok(())
}

fn role_name(r: TpRole) -> &'static str {
    match r {
        TpRole::Event => "event",
        TpRole::Begin => "begin",
        TpRole::Stage => "stage",
        TpRole::End => "end",
    }
}

/// Which records pass the filters.
struct Filter {
    reactors: HashSet<u32>,
    qpairs: HashSet<u16>,
    tpoints: Option<HashSet<u16>>,
}

impl Filter {
    fn new(desc: &Description, args: &TraceArgs) -> Result<Filter> {
        let tpoints = if args.tpoint.is_empty() {
            None
        } else {
            let mut set = HashSet::new();
            for pat in &args.tpoint {
                let before = set.len();
                for t in &desc.tracepoints {
                    if tpoint_matches(pat, &t.name, &t.group) {
                        set.insert(t.id);
                    }
                }
                if set.len() == before {
                    let known: Vec<&str> =
                        desc.tracepoints.iter().map(|t| t.name.as_str()).collect();
                    bail!(
                        "no tracepoint matches {pat:?}; the target has: {}",
                        known.join(", ")
                    );
                }
            }
            Some(set)
        };
        Ok(Filter {
            reactors: args.reactor.iter().copied().collect(),
            qpairs: args.qpair.iter().copied().collect(),
            tpoints,
        })
    }

    fn place(&self, reactor: u32, qpair: u16) -> bool {
        (self.reactors.is_empty() || self.reactors.contains(&reactor))
            && (self.qpairs.is_empty() || self.qpairs.contains(&qpair))
    }

    fn event(&self, ev: &Event) -> bool {
        self.place(ev.reactor, ev.record.qpair)
            && self
                .tpoints
                .as_ref()
                .is_none_or(|s| s.contains(&ev.record.tpoint))
    }
}

fn tpoint_matches(pat: &str, name: &str, group: &str) -> bool {
    match pat.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pat == name || pat == group,
    }
}

struct Tracer {
    filter: Filter,
    builder: RequestBuilder,
    disconnect_tps: HashSet<u16>,
    first_ns: Option<u64>,
    printed: u64,
    events_seen: u64,
    lost: u64,
    late: u64,
    /// With `--kernel` and probes running: the probes and the lines waiting for their turn.
    kernel: Option<KernelMerge>,
}

/// The kernel side of `--kernel`: the probe set and the time-sorted lines not yet printed.
struct KernelMerge {
    probes: probes::ProbeSet,
    /// (sort key ns, arrival sequence, the line with its newline).
    pending: Vec<(u64, u64, String)>,
    seq: u64,
    events: u64,
}

impl KernelMerge {
    fn push(&mut self, key: u64, line: String) {
        self.seq += 1;
        self.pending.push((key, self.seq, line));
    }

    /// Prints, in time order, every line whose key is at or before `watermark`.
    fn flush(&mut self, watermark: u64, out: &mut dyn Write) -> Result<()> {
        self.pending.sort_by_key(|&(k, s, _)| (k, s));
        let n = self.pending.partition_point(|&(k, _, _)| k <= watermark);
        for (_, _, line) in self.pending.drain(..n) {
            out.write_all(line.as_bytes())?;
        }
        Ok(())
    }
}

/// The target as the trace file describes it, for the probe filter.
fn target_info(reader: &TraceReader) -> agent_core::sample::TargetInfo {
    use agent_core::sample::{ListenerInfo, NamespaceInfo, ReactorInfo, TargetInfo};
    let d = reader.description();
    TargetInfo {
        pid: reader.header().pid,
        reactors: d
            .reactors
            .iter()
            .map(|r| ReactorInfo {
                index: r.index,
                core: r.core,
                tid: r
                    .tid
                    .or_else(|| reader.writer_thread(r.index).map(|(tid, _)| tid)),
            })
            .collect(),
        listeners: d
            .listeners
            .iter()
            .map(|l| ListenerInfo {
                transport: l.transport,
                address: l.address.clone(),
                netdev: l.netdev.clone(),
            })
            .collect(),
        namespaces: d
            .subsystems
            .iter()
            .flat_map(|s| {
                s.namespaces.iter().map(|n| NamespaceInfo {
                    nqn: s.nqn.clone(),
                    nsid: n.nsid,
                    backend: n.backend,
                    device: n.device.clone(),
                })
            })
            .collect(),
        ..TargetInfo::default()
    }
}

/// Loads the probes for `--kernel`; prints one line saying what runs (or why nothing does).
fn start_kernel(
    reader: &TraceReader,
    json: bool,
    out: &mut dyn Write,
) -> Result<Option<KernelMerge>> {
    let mut filter = kernel_probes::filter_for(&target_info(reader));
    filter.pid = Some(reader.header().pid);
    let cfg = probes::ProbeConfig {
        filter,
        probes: kernel_probes::probe_kinds(false),
        ..probes::ProbeConfig::default()
    };
    let (available, note, set) = match probes::ProbeSet::start(&cfg) {
        Ok((set, statuses)) => {
            let (any, note) = kernel_probes::summarize(&statuses);
            (any, note, any.then_some(set))
        }
        Err(e) => (false, format!("kernel probes not started: {e}"), None),
    };
    let tail = if available {
        ""
    } else {
        "; the ring output continues without kernel events"
    };
    if json {
        let v = json!({"type": "kernel_status", "available": available, "note": format!("{note}{tail}")});
        writeln!(out, "{v}")?;
    } else {
        writeln!(out, "kernel: {note}{tail}")?;
    }
    Ok(set.map(|probes| KernelMerge {
        probes,
        pending: Vec::new(),
        seq: 0,
        events: 0,
    }))
}

impl Tracer {
    fn new(reader: &TraceReader, args: &TraceArgs) -> Result<Tracer> {
        let desc = reader.description();
        for &r in &args.reactor {
            if r >= reader.reactors() {
                bail!(
                    "no reactor {r}: the target has {} (0..{})",
                    reader.reactors(),
                    reader.reactors()
                );
            }
        }
        let disconnect_tps = desc
            .tracepoints
            .iter()
            .filter(|t| t.name.ends_with("disconnect") || t.name.ends_with("destroy"))
            .map(|t| t.id)
            .collect();
        Ok(Tracer {
            filter: Filter::new(desc, args)?,
            builder: RequestBuilder::new(desc),
            disconnect_tps,
            first_ns: None,
            printed: 0,
            events_seen: 0,
            lost: 0,
            late: 0,
            kernel: None,
        })
    }

    fn run(
        mut self,
        reader: &TraceReader,
        args: &TraceArgs,
        stop: &AtomicBool,
        out: &mut dyn Write,
    ) -> Result<()> {
        let clock = reader.clock();
        let to_ns = |t: u64| clock.to_mono_ns(t);
        let hold_back = clock.ns_to_ticks(2_000_000);
        let mut merged = reader
            .merged(Start::Oldest, hold_back)
            .context("cannot read the rings")?;
        let deadline = args
            .duration
            .map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.0)));
        let mut batch = Vec::new();
        let limit = args.count.unwrap_or(u64::MAX);
        if args.kernel {
            self.kernel = start_kernel(reader, args.json, out)?;
        }
        loop {
            batch.clear();
            // Check liveness before polling: once the producer is gone, one more full drain
            // sees everything it ever wrote.
            let finished = !args.follow
                || !reader.producer_alive()
                || stop.load(Ordering::Relaxed)
                || deadline.is_some_and(|d| Instant::now() >= d);
            // How far the ring has been read (on CLOCK_MONOTONIC): a slow reader lags the
            // wall clock, and kernel lines must not overtake ring lines still to come.
            let read_up_to = tsc::mono_ns();
            let st = if finished {
                merged.drain(&mut batch)
            } else {
                merged.poll(clock.from_mono_ns(read_up_to), &mut batch)
            };
            self.lost += st.lost;
            self.late += st.late;
            for ev in &batch {
                if self.printed >= limit {
                    break;
                }
                self.one(ev, args, reader.description(), &to_ns, out)?;
            }
            let done = finished || self.printed >= limit;
            self.kernel_step(args, done, read_up_to, out)?;
            out.flush()?;
            if done {
                break;
            }
            if self.kernel.is_none() {
                std::thread::sleep(Duration::from_millis(args.interval.max(1)));
            }
        }
        self.summary(args.json, out)
    }

    /// With `--kernel`: takes the kernel events so far, turns them into lines, prints what is
    /// older than the hold-back before `read_up_to` (how far the rings have been read;
    /// everything when `done`), then sleeps out the poll interval.
    fn kernel_step(
        &mut self,
        args: &TraceArgs,
        done: bool,
        read_up_to: u64,
        out: &mut dyn Write,
    ) -> Result<()> {
        let Some(k) = &mut self.kernel else {
            return Ok(());
        };
        let interval = Duration::from_millis(args.interval.max(1));
        let began = Instant::now();
        // Never block in the ring-buffer wait: it wakes this thread for every event (thousands
        // a second when a busy reactor is switched out often), and those wake-ups land on the
        // reactor's core. Take what is there and sleep the interval instead.
        let events = match k.probes.poll(Duration::ZERO) {
            Ok(ev) => ev,
            Err(e) => {
                // The ring keeps going; say once why the kernel side stopped.
                let line =
                    format!("kernel: polling the probes failed ({e}); kernel events stop here");
                if args.json {
                    writeln!(
                        out,
                        "{}",
                        json!({"type": "kernel_status", "available": false, "note": line})
                    )?;
                } else {
                    writeln!(out, "{line}")?;
                }
                k.flush(u64::MAX, out)?;
                self.kernel = None;
                return Ok(());
            }
        };
        for ev in &events {
            let key = kernel_event_start(ev);
            let first = *self.first_ns.get_or_insert(key);
            let line = format_kernel_event(ev, key, first, args.json);
            k.events += 1;
            k.push(key, line);
        }
        let watermark = if done {
            u64::MAX
        } else {
            read_up_to.saturating_sub(KERNEL_HOLD_BACK_NS)
        };
        k.flush(watermark, out)?;
        if !done {
            // Keep the ring-poll cadence (formatting took part of it).
            if let Some(rest) = interval.checked_sub(began.elapsed()) {
                std::thread::sleep(rest);
            }
        }
        Ok(())
    }

    fn one(
        &mut self,
        ev: &Event,
        args: &TraceArgs,
        desc: &Description,
        to_ns: &impl Fn(u64) -> u64,
        out: &mut dyn Write,
    ) -> Result<()> {
        self.events_seen += 1;
        let ns = to_ns(ev.record.tsc);
        let first = *self.first_ns.get_or_insert(ns);
        if args.requests {
            if self.disconnect_tps.contains(&ev.record.tpoint) {
                self.builder.drop_qpair(ev.reactor, ev.record.qpair);
            }
            if let Some(req) = self.builder.push(ev, to_ns) {
                if self.filter.place(req.reactor, req.qpair) {
                    self.printed += 1;
                    match &mut self.kernel {
                        Some(k) => {
                            let mut buf = Vec::new();
                            print_request(&req, first, desc, args.json, &mut buf)?;
                            k.push(req.start_ns, String::from_utf8_lossy(&buf).into_owned());
                        }
                        None => print_request(&req, first, desc, args.json, out)?,
                    }
                }
            }
        } else if self.filter.event(ev) {
            self.printed += 1;
            match &mut self.kernel {
                Some(k) => {
                    let mut buf = Vec::new();
                    print_event(ev, ns, first, desc, args.json, &mut buf)?;
                    k.push(ns, String::from_utf8_lossy(&buf).into_owned());
                }
                None => print_event(ev, ns, first, desc, args.json, out)?,
            }
        }
        Ok(())
    }

    fn summary(&self, json: bool, out: &mut dyn Write) -> Result<()> {
        let rs = self.builder.stats();
        if json {
            let mut v = json!({"summary": {
                "events": self.events_seen, "printed": self.printed, "lost": self.lost,
                "late": self.late, "requests": rs,
            }});
            if let Some(k) = &self.kernel {
                v["summary"]["kernel_events"] = json!(k.events);
                v["summary"]["kernel_drops"] = json!(k
                    .probes
                    .read_aggregates()
                    .map(|a| a.ringbuf_drops)
                    .unwrap_or(0));
            }
            writeln!(out, "{v}")?;
        }
        let mut line = format!(
            "ringside trace: {} records read, {} printed, {} lost to ring laps",
            self.events_seen, self.printed, self.lost
        );
        if rs.completed + rs.abandoned + rs.in_flight > 0 {
            line.push_str(&format!(
                "; requests: {} complete, {} in flight, {} abandoned",
                rs.completed, rs.in_flight, rs.abandoned
            ));
        }
        if let Some(k) = &self.kernel {
            let _ = write!(line, "; {} kernel events", k.events);
        }
        let _ = writeln!(io::stderr(), "{line}");
        Ok(())
    }
}

/// Seconds since the first line (negative for a kernel event older than the first record).
fn rel(ns: u64, first: u64) -> f64 {
    if ns >= first {
        (ns - first) as f64 / 1e9
    } else {
        -((first - ns) as f64 / 1e9)
    }
}

/// When a kernel event began (its sort key): the switch away for a preemption, the waking for
/// a wake-up, the start of an irq, syscall or block request.
pub fn kernel_event_start(ev: &probes::KernelEvent) -> u64 {
    use probes::KernelEvent as K;
    match ev {
        K::Preempted { start_ns, .. }
        | K::IrqTime { start_ns, .. }
        | K::Syscall { start_ns, .. } => *start_ns,
        K::Wakeup { waking_ns, .. } => *waking_ns,
        K::BlockRq { issue_ns, .. } => *issue_ns,
        other => other.ts_ns(),
    }
}

/// One kernel event as a text line or a JSON object (`"type": "kernel"`, `t_ns` = its start on
/// CLOCK_MONOTONIC, `event` = its kind, then its fields), newline included.
pub fn format_kernel_event(ev: &probes::KernelEvent, t_ns: u64, first: u64, json: bool) -> String {
    use probes::KernelEvent as K;
    let us = |ns: u64| ns as f64 / 1e3;
    let (event, fields, text): (&str, Value, String) = match ev {
        K::Preempted { tid, cpu, start_ns, end_ns, resumed_cpu, by_pid, by_comm } => (
            "preempted",
            json!({"tid": tid, "cpu": cpu, "end_ns": end_ns, "duration_ns": end_ns.saturating_sub(*start_ns),
                   "resumed_cpu": resumed_cpu, "by_pid": by_pid, "by_comm": by_comm}),
            format!("sched_switch: reactor tid {tid} preempted on cpu {cpu} by {by_comm} (pid {by_pid}) for {:.1}us, resumed on cpu {resumed_cpu}",
                us(end_ns.saturating_sub(*start_ns))),
        ),
        K::Wakeup { tid, waker_pid, waking_ns, running_ns, target_cpu, cpu } => (
            "wakeup",
            json!({"tid": tid, "waker_pid": waker_pid, "running_ns": running_ns,
                   "latency_ns": running_ns.saturating_sub(*waking_ns), "target_cpu": target_cpu, "cpu": cpu}),
            format!("wakeup: reactor tid {tid} woken by pid {waker_pid}, ran {:.1}us later on cpu {cpu}",
                us(running_ns.saturating_sub(*waking_ns))),
        ),
        K::Migrated { tid, orig_cpu, dest_cpu, .. } => (
            "migrated",
            json!({"tid": tid, "orig_cpu": orig_cpu, "dest_cpu": dest_cpu}),
            format!("migrate: reactor tid {tid} cpu {orig_cpu} -> {dest_cpu}"),
        ),
        K::IrqTime { cpu, kind, vector, duration_ns, .. } => {
            let k = match kind {
                probes::IrqKind::Hard => "hardirq",
                probes::IrqKind::Soft => "softirq",
            };
            (
                k,
                json!({"cpu": cpu, "vector": vector, "duration_ns": duration_ns}),
                format!("{k}: vector {vector} on reactor cpu {cpu} for {:.1}us", us(*duration_ns)),
            )
        }
        K::Syscall { tid, nr, ret, duration_ns, .. } => (
            "syscall",
            json!({"tid": tid, "nr": nr, "ret": ret, "duration_ns": duration_ns}),
            format!("syscall: reactor tid {tid} nr {nr} took {:.1}us (ret {ret})", us(*duration_ns)),
        ),
        K::BlockRq { dev, op, sector, bytes, error, latency_ns, .. } => (
            "block_rq",
            json!({"dev": dev.to_string(), "op": format!("{op:?}"), "sector": sector, "bytes": bytes,
                   "error": error, "latency_ns": latency_ns}),
            format!("block: {dev} {op:?} sector {sector} {bytes}B took {:.1}us (error {error})", us(*latency_ns)),
        ),
        K::TcpRetransmit { conn, state, tgid, .. } => (
            "tcp_retransmit",
            json!({"conn": conn.to_string(), "state": state, "tgid": tgid}),
            format!("tcp_retransmit: {conn} (state {state})"),
        ),
        K::TcpSample { conn, sample, .. } => (
            "tcp_sample",
            json!({"conn": conn.to_string(), "cwnd": sample.snd_cwnd, "srtt_us": sample.srtt_us,
                   "in_flight": sample.in_flight(), "unsent": sample.unsent()}),
            format!("tcp: {conn} cwnd {} srtt {}us in flight {}B unsent {}B",
                sample.snd_cwnd, sample.srtt_us, sample.in_flight(), sample.unsent()),
        ),
        K::NumaPages { tid, reason, succeeded, failed, .. } => (
            "numa_pages",
            json!({"tid": tid, "reason": reason, "succeeded": succeeded, "failed": failed}),
            format!("numa: tid {tid} migrated {succeeded} pages ({failed} failed, reason {reason})"),
        ),
        K::NumaTask { kind, tid, src_cpu, dst_cpu, .. } => (
            "numa_task",
            json!({"kind": format!("{kind:?}"), "tid": tid, "src_cpu": src_cpu, "dst_cpu": dst_cpu}),
            format!("numa: {kind:?} tid {tid} cpu {src_cpu} -> {dst_cpu}"),
        ),
    };
    if json {
        let mut v = json!({"type": "kernel", "t_ns": t_ns, "event": event});
        if let (Some(o), Value::Object(f)) = (v.as_object_mut(), fields) {
            o.extend(f);
        }
        format!("{v}\n")
    } else {
        format!("{:>12.6} kernel {text}\n", rel(t_ns, first))
    }
}

fn fmt_arg(kind: ArgKind, v: u64) -> String {
    match kind {
        ArgKind::Hex | ArgKind::Status => format!("{v:#x}"),
        ArgKind::Bytes => format!("{v}B"),
        ArgKind::Nanos => format!("{:.3}us", v as f64 / 1e3),
        ArgKind::Opcode => format!("{v:#04x}"),
        _ => v.to_string(),
    }
}

fn print_event(
    ev: &Event,
    ns: u64,
    first: u64,
    desc: &Description,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let r = &ev.record;
    let tp = desc.tracepoint(r.tpoint);
    let name = tp.map_or_else(|| format!("tp{:#06x}", r.tpoint), |t| t.name.clone());
    let vals = [r.arg0, r.arg1];
    let qpair = (r.qpair != trace_ring::NO_QPAIR).then_some(r.qpair);
    if json {
        let mut args = serde_json::Map::new();
        if let Some(t) = tp {
            for (a, v) in t.args.iter().zip(vals) {
                args.insert(a.name.clone(), json!(v));
            }
        }
        let v = json!({"type": "record", "t_ns": ns, "reactor": ev.reactor, "qpair": qpair,
                       "cid": r.cid, "tpoint": name, "args": args});
        writeln!(out, "{v}")?;
        return Ok(());
    }
    let args: Vec<String> = tp.map_or_else(Vec::new, |t| {
        t.args
            .iter()
            .zip(vals)
            .map(|(a, v)| format!("{}={}", a.name, fmt_arg(a.kind, v)))
            .collect()
    });
    let q = qpair.map_or_else(|| "-".to_string(), |q| q.to_string());
    writeln!(
        out,
        "{:>12.6} r{} q{:<3} cid {:<5} {:<28} {}",
        rel(ns, first),
        ev.reactor,
        q,
        r.cid,
        name,
        args.join(" ")
    )?;
    Ok(())
}

fn print_request(
    req: &Request,
    first: u64,
    desc: &Description,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    if json {
        let mut v = serde_json::to_value(req)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("type".into(), json!("request"));
        }
        writeln!(out, "{v}")?;
        return Ok(());
    }
    // Format the begin tracepoint's arguments by their catalog kinds, as record lines are.
    let begin = req
        .stages
        .first()
        .and_then(|s| desc.tracepoints.iter().find(|t| t.name == s.name));
    let args: Vec<String> = req
        .args
        .iter()
        .map(|(n, v)| {
            let kind = begin
                .and_then(|t| t.args.iter().find(|a| &a.name == n))
                .map_or(ArgKind::U64, |a| a.kind);
            format!("{n}={}", fmt_arg(kind, *v))
        })
        .collect();
    let stages: Vec<String> = req
        .stages
        .iter()
        .skip(1)
        .map(|s| format!("{} +{:.1}us", short(&s.name), s.delta_ns as f64 / 1e3))
        .collect();
    writeln!(
        out,
        "{:>12.6} r{} q{:<3} cid {:<5} {:>9.1}us  {}  | {}",
        rel(req.start_ns, first),
        req.reactor,
        req.qpair,
        req.cid,
        req.total_ns as f64 / 1e3,
        args.join(" "),
        stages.join(", ")
    )?;
    Ok(())
}

fn short(name: &str) -> &str {
    name.split_once('.').map_or(name, |(_, s)| s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use probes::KernelEvent;

    fn preempted() -> KernelEvent {
        KernelEvent::Preempted {
            tid: 11,
            cpu: 1,
            start_ns: 5_000,
            end_ns: 9_000,
            resumed_cpu: 1,
            by_pid: 42,
            by_comm: "sh".into(),
        }
    }

    #[test]
    fn kernel_events_are_keyed_by_their_start() {
        assert_eq!(kernel_event_start(&preempted()), 5_000);
        assert_eq!(preempted().ts_ns(), 9_000, "the probe's own ts is the end");
    }

    #[test]
    fn kernel_event_json_has_the_fields_a_timeline_needs() {
        let line = format_kernel_event(&preempted(), 5_000, 0, true);
        let v: Value = serde_json::from_str(line.trim_end()).expect("one JSON object");
        assert_eq!(v["type"], "kernel");
        assert_eq!(v["event"], "preempted");
        assert_eq!(v["t_ns"], 5_000);
        assert_eq!(v["duration_ns"], 4_000);
        assert_eq!(v["by_pid"], 42);
        assert_eq!(v["by_comm"], "sh");
        assert!(line.ends_with('\n'));
    }

    #[test]
    fn kernel_event_text_is_relative_and_may_precede_the_first_record() {
        let line = format_kernel_event(&preempted(), 5_000, 1_005_000, false);
        assert!(
            line.contains("-0.001000 kernel sched_switch: reactor tid 11 preempted on cpu 1 by sh (pid 42) for 4.0us"),
            "{line}"
        );
    }
}
