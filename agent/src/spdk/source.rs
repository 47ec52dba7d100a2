//! The SPDK source behind the agent's [`Collector`] seam: SPDK's JSON-RPC answers and its trace
//! file mapped onto the common model, so the request-level merge, the windows and every detector
//! run on an SPDK `nvmf_tgt` unchanged.
//!
//! Mapping:
//! - an SPDK reactor (lcore, tid; `framework_get_reactors`) is a reactor: index and core = lcore
//!   (nvmf_tgt's `-m` mask names CPUs; a DPDK `--lcores` remap would break that and is not read),
//!   its busy/idle ticks converted with `tick_rate`;
//! - its NVMe-oF poll groups (`nvmf_get_stats`, one SPDK thread each) give its completions and
//!   qpair counts, split into reads and writes by the bdevs' totals (`bdev_get_iostat`, the
//!   backend);
//! - qpairs come from `nvmf_subsystem_get_qpairs` (per poll group thread) and are matched to the
//!   trace's owners by peer address; each poll group's completions are shared among its qpairs
//!   by their traced requests (evenly without a trace);
//! - request time at the target comes from the trace (`TCP_REQ_NEW` → `TCP_REQ_COMPLETED`): each
//!   completion in a window is given a latency from the latest trace sample of its qpair, so
//!   Little's law (outstanding = IOPS × time at the target) holds per window. Without tracing the
//!   qpairs carry counts but no latency, and the depth findings stay silent.
//!
//! The source never writes to the target: only `*_get_*` methods and a read-only trace file.
//! Threads, pollers and qpairs may appear and disappear between samples; each is matched by name
//! (or peer address) and counts from zero when new.
//!
//! Threading: runs on the agent's sampling thread like every collector.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use agent_core::hist::Hist;
use agent_core::sample::{
    Capability, ListenerInfo, NamespaceInfo, QpairSample, ReactorInfo, ReactorSample, Sample,
    TargetInfo,
};
use agent_core::spdk::{
    PollGroup, Poller, SpdkReactor, SpdkSample, TraceProfile, TransportSettings, FLAVOR,
    PROC_TICKS_PER_S,
};
use serde_json::{json, Value};
use trace_ring::description::{BackendKind, IdlePolicy, Transport};

use super::profile::{ProfileBuilder, QpairTrace};
use super::rpc::RpcTransport;
use super::trace::{Cursor, SpdkTrace};
use crate::collect::Collector;

/// The methods read every sample.
pub const PER_SAMPLE: [&str; 5] = [
    "framework_get_reactors",
    "thread_get_stats",
    "thread_get_pollers",
    "nvmf_get_stats",
    "bdev_get_iostat",
];

/// The methods read once, when the source describes the target.
pub const ONCE: [&str; 5] = [
    "nvmf_get_subsystems",
    "nvmf_get_transports",
    "trace_get_info",
    "framework_get_scheduler",
    "spdk_get_version",
];

/// Most completions given a traced latency per qpair per sample (bounds the work per tick; a
/// qpair beyond it gets the rest as counts without latency, and its depth reads low).
pub const MAX_DRAWS: u64 = 4_000_000;

/// How the enable-tracing hint reads.
pub const TRACE_HINT: &str = "start nvmf_tgt with -e nvmf_tcp,bdev (or run `rpc.py \
     trace_enable_tpoint_group nvmf_tcp` and `rpc.py trace_enable_tpoint_group bdev`) for \
     request stages and depths";

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct QpairKey {
    cntlid: u64,
    qid: u64,
    peer: String,
}

#[derive(Clone, Debug, Default)]
struct QpairAcc {
    reactor: u32,
    slot: u16,
    completed: u64,
    bytes: u64,
    high_water: u64,
    latency: Hist,
    draw: usize,
}

#[derive(Clone, Debug)]
struct ListedQpair {
    key: QpairKey,
    thread: String,
}

/// The SPDK source.
pub struct SpdkCollector {
    rpc: Box<dyn RpcTransport>,
    trace: Option<SpdkTrace>,
    trace_snapshot: bool,
    trace_note: String,
    cursor: Cursor,
    builder: Option<ProfileBuilder>,
    latest: Option<(TraceProfile, HashMap<u16, QpairTrace>)>,
    owners: HashMap<u16, String>,
    lost: u64,
    failing: BTreeMap<String, String>,
    tick_rate: u64,
    subsystems: Vec<String>,
    transport: Option<TransportSettings>,
    qpairs: HashMap<QpairKey, QpairAcc>,
    next_slot: HashMap<u32, u16>,
    group_completed: HashMap<String, u64>,
    /// Qpairs listed in the previous sample: they served part of the window even when they
    /// disconnected before its end.
    prev_listed: Vec<ListedQpair>,
    pid: u32,
}

/// Options of the SPDK source.
#[derive(Clone, Debug, Default)]
pub struct SpdkOptions {
    /// The trace file (`--spdk-trace`); `None`: the one `trace_get_info` names, if readable.
    pub trace: Option<PathBuf>,
    /// The trace file is a copy taken after the run (a recording): its profile stands for every
    /// window instead of only the one it was read in.
    pub trace_is_snapshot: bool,
}

fn u(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}
fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}
fn arr<'a>(v: &'a Value, k: &str) -> &'a [Value] {
    v.get(k)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

impl SpdkCollector {
    /// A source reading `rpc` (and a trace file when given or found).
    pub fn new(rpc: Box<dyn RpcTransport>, opts: SpdkOptions) -> SpdkCollector {
        let mut c = SpdkCollector {
            rpc,
            trace: None,
            trace_snapshot: opts.trace_is_snapshot,
            trace_note: String::new(),
            cursor: Cursor::default(),
            builder: None,
            latest: None,
            owners: HashMap::new(),
            lost: 0,
            failing: BTreeMap::new(),
            tick_rate: 0,
            subsystems: Vec::new(),
            transport: None,
            qpairs: HashMap::new(),
            next_slot: HashMap::new(),
            group_completed: HashMap::new(),
            prev_listed: Vec::new(),
            pid: 0,
        };
        if let Some(p) = opts.trace {
            c.open_trace(p);
        }
        c
    }

    /// Uses this (already opened) trace file.
    pub fn with_trace(mut self, t: SpdkTrace) -> SpdkCollector {
        self.builder = Some(ProfileBuilder::new(t.header()));
        self.trace = Some(t);
        self
    }

    /// The target's pid as `framework_get_reactors` says (0 before [`Collector::describe`]).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn open_trace(&mut self, path: PathBuf) {
        match SpdkTrace::open(&path) {
            Ok(t) => {
                self.builder = Some(ProfileBuilder::new(t.header()));
                self.trace = Some(t);
            }
            Err(e) => self.trace_note = format!("{e}; RPC-only analysis"),
        }
    }

    /// Calls a method; a failure is noted once per method and yields `None`.
    fn call(&mut self, method: &str, params: Option<Value>) -> Option<Value> {
        match self.rpc.call(method, params) {
            Ok(v) => {
                self.failing.remove(method);
                Some(v)
            }
            Err(e) => {
                if !self.failing.contains_key(method) {
                    let line = e.to_string();
                    eprintln!("ringside: SPDK RPC {line}; continuing without it");
                    self.failing.insert(method.to_string(), line);
                }
                None
            }
        }
    }

    fn read_trace(&mut self) {
        let (Some(t), Some(b)) = (&self.trace, &mut self.builder) else {
            return;
        };
        match t.poll(&mut self.cursor) {
            Ok(batch) => {
                self.lost += batch.lost;
                if batch
                    .entries
                    .iter()
                    .any(|e| !self.owners.contains_key(&e.owner))
                {
                    if let Ok(owners) = t.owners() {
                        self.owners = owners.into_iter().map(|o| (o.id, o.description)).collect();
                    }
                }
                b.feed(&batch.entries);
                if let Some(p) = b.take(self.lost, self.trace_snapshot) {
                    self.latest = Some(p);
                } else if !self.trace_snapshot {
                    // Live: a window without traced completions has no request figures.
                    self.latest = None;
                }
            }
            Err(e) => {
                eprintln!("ringside: {e}; continuing without the trace");
                self.trace = None;
                self.latest = None;
            }
        }
    }

    fn ns(&self, ticks: u64) -> u64 {
        if self.tick_rate == 0 {
            return 0;
        }
        (u128::from(ticks) * 1_000_000_000 / u128::from(self.tick_rate)) as u64
    }

    fn listed_qpairs(&mut self) -> Vec<ListedQpair> {
        let mut out = Vec::new();
        for nqn in self.subsystems.clone() {
            let Some(v) = self.call("nvmf_subsystem_get_qpairs", Some(json!({ "nqn": nqn })))
            else {
                continue;
            };
            for q in v.as_array().map(Vec::as_slice).unwrap_or(&[]) {
                let peer = q.get("peer_address").cloned().unwrap_or(Value::Null);
                out.push(ListedQpair {
                    key: QpairKey {
                        cntlid: u(q, "cntlid"),
                        qid: u(q, "qid"),
                        peer: format!("{}:{}", s(&peer, "traddr"), s(&peer, "trsvcid")),
                    },
                    thread: s(q, "thread").to_string(),
                });
            }
        }
        out
    }

    /// The trace owner of a qpair (its description starts with the peer address).
    fn owner_of(&self, peer: &str) -> Option<u16> {
        let prefix = format!("{peer} ");
        self.owners
            .iter()
            .find(|(_, d)| d.starts_with(&prefix))
            .map(|(id, _)| *id)
    }
}

impl Collector for SpdkCollector {
    fn name(&self) -> &'static str {
        "spdk"
    }

    fn capability(&self) -> Capability {
        let mut note = format!("SPDK RPC {}", self.rpc.describe());
        if !self.failing.is_empty() {
            note.push_str("; unavailable: ");
            note.push_str(
                &self
                    .failing
                    .values()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; "),
            );
        }
        note.push_str("; trace: ");
        note.push_str(&self.trace_note);
        Capability {
            name: "spdk".into(),
            available: true,
            note,
        }
    }

    fn describe(&mut self, info: &mut TargetInfo) {
        info.flavor = Some(FLAVOR.into());
        if let Some(v) = self.call("spdk_get_version", None) {
            info.name = s(&v, "version").to_string();
        }
        if let Some(r) = self.call("framework_get_reactors", None) {
            self.tick_rate = u(&r, "tick_rate");
            self.pid = u(&r, "pid") as u32;
            info.pid = self.pid;
            let mut interrupt = true;
            for x in arr(&r, "reactors") {
                let lcore = u(x, "lcore") as u32;
                interrupt &= x
                    .get("in_interrupt")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                info.reactors.push(ReactorInfo {
                    index: lcore,
                    core: lcore,
                    tid: Some(u(x, "tid") as u32).filter(|t| *t > 0),
                });
                info.settings.cores.push(lcore);
            }
            info.settings.idle = Some(if interrupt && !info.reactors.is_empty() {
                IdlePolicy::Sleep
            } else {
                IdlePolicy::Poll
            });
        }
        info.name = format!("nvmf_tgt.pid{} ({})", self.pid, info.name);
        if let Some(v) = self.call("nvmf_get_subsystems", None) {
            for sub in v.as_array().map(Vec::as_slice).unwrap_or(&[]) {
                if s(sub, "subtype") == "Discovery" {
                    continue;
                }
                let nqn = s(sub, "nqn").to_string();
                for l in arr(sub, "listen_addresses") {
                    let l = ListenerInfo {
                        transport: s(l, "trtype")
                            .to_ascii_lowercase()
                            .parse()
                            .unwrap_or(Transport::Unknown),
                        address: format!("{}:{}", s(l, "traddr"), s(l, "trsvcid")),
                        netdev: None,
                    };
                    if !info.listeners.contains(&l) {
                        info.listeners.push(l);
                    }
                }
                for ns in arr(sub, "namespaces") {
                    let bdev = s(ns, "bdev_name");
                    let lower = bdev.to_ascii_lowercase();
                    // SPDK bdev modules beyond these have no word in the vocabulary yet.
                    let backend = if lower.starts_with("malloc") {
                        BackendKind::Malloc
                    } else if lower.starts_with("null") {
                        BackendKind::Null
                    } else {
                        BackendKind::Unknown
                    };
                    info.namespaces.push(NamespaceInfo {
                        nqn: nqn.clone(),
                        nsid: u(ns, "nsid") as u32,
                        backend,
                        device: None,
                    });
                }
                self.subsystems.push(nqn);
            }
        }
        if let Some(v) = self.call("nvmf_get_transports", None) {
            for t in v.as_array().map(Vec::as_slice).unwrap_or(&[]) {
                if !s(t, "trtype").eq_ignore_ascii_case("tcp") {
                    continue;
                }
                let mqd = u(t, "max_queue_depth") as u32;
                info.settings.max_queue_depth = Some(mqd).filter(|d| *d > 0);
                info.settings.max_io_queues =
                    Some(u(t, "max_io_qpairs_per_ctrlr") as u32).filter(|d| *d > 0);
                self.transport = Some(TransportSettings {
                    num_shared_buffers: u(t, "num_shared_buffers"),
                    buf_cache_size: u(t, "buf_cache_size"),
                    io_unit_size: u(t, "io_unit_size"),
                    max_queue_depth: mqd,
                });
            }
        }
        let _ = self.call("framework_get_scheduler", None);
        // Probe the per-sample methods once, so the capability line names what is missing.
        for m in PER_SAMPLE.iter().skip(1) {
            let _ = self.call(m, None);
        }
        let trace_info = self.call("trace_get_info", None);
        let tcp_off = trace_info.as_ref().is_some_and(|t| {
            t.get("nvmf_tcp")
                .and_then(|g| g.get("tpoint_mask"))
                .and_then(Value::as_str)
                .is_none_or(|m| m == "0x0")
        });
        if self.trace.is_none() && self.trace_note.is_empty() {
            let named = trace_info
                .as_ref()
                .map(|t| s(t, "tpoint_shm_path").to_string())
                .filter(|p| !p.is_empty())
                .or_else(|| {
                    // No trace_get_info: nvmf_tgt's default name for this pid.
                    super::trace::find_for_pid(std::path::Path::new("/dev/shm"), self.pid)
                        .map(|p| p.display().to_string())
                        .filter(|_| self.pid > 0)
                });
            match named {
                Some(p) if std::path::Path::new(&p).exists() => self.open_trace(PathBuf::from(p)),
                Some(p) => {
                    self.trace_note = format!(
                        "{p} (named by trace_get_info) is not readable here; RPC-only analysis"
                    )
                }
                None => self.trace_note = "no trace file given or named; RPC-only analysis".into(),
            }
        }
        if let Some(t) = &self.trace {
            let h = t.header();
            let basis = if self.trace_snapshot {
                "a snapshot: its requests stand for every window"
            } else {
                "read live, new entries each sample"
            };
            self.trace_note = format!(
                "{} ({} lcore ring(s) of {} entries, {} tracepoints; {basis})",
                t.path().display(),
                h.lcores.len(),
                h.lcores.first().map(|r| r.num_entries).unwrap_or(0),
                h.tpoints.len()
            );
            let tcp_traced = h
                .tpoint_named("TCP_REQ_NEW")
                .is_some_and(|tp| h.enabled(tp.id))
                && self
                    .builder
                    .as_ref()
                    .is_some_and(ProfileBuilder::understands_requests);
            if !tcp_traced || tcp_off {
                self.trace_note
                    .push_str(&format!("; the nvmf_tcp tracepoints are off: {TRACE_HINT}"));
            }
            self.read_trace();
        } else if tcp_off {
            self.trace_note
                .push_str(&format!("; tracing is off on the target: {TRACE_HINT}"));
        }
    }

    fn collect(&mut self, _info: &TargetInfo, sample: &mut Sample) {
        self.rpc.begin_round();
        if let Some(t) = self.rpc.recorded_ns() {
            sample.t_ns = t;
        }
        let reactors = self.call("framework_get_reactors", None);
        let threads = self.call("thread_get_stats", None);
        let pollers = self.call("thread_get_pollers", None);
        let stats = self.call("nvmf_get_stats", None);
        let iostat = self.call("bdev_get_iostat", None);
        let listed = self.listed_qpairs();
        if !self.trace_snapshot {
            self.read_trace();
        }
        if let Some(r) = &reactors {
            let rate = u(r, "tick_rate");
            if rate > 0 {
                self.tick_rate = rate;
            }
        }
        let mut spdk = SpdkSample {
            transport: self.transport.clone(),
            trace: self.latest.as_ref().map(|(p, _)| p.clone()),
            ..SpdkSample::default()
        };
        // Reactors and the threads on them.
        let mut lcore_of: HashMap<String, u32> = HashMap::new();
        for x in reactors.as_ref().map(|r| arr(r, "reactors")).unwrap_or(&[]) {
            let lcore = u(x, "lcore") as u32;
            let threads: Vec<String> = arr(x, "lw_threads")
                .iter()
                .map(|t| s(t, "name").to_string())
                .collect();
            for t in &threads {
                lcore_of.insert(t.clone(), lcore);
            }
            let jiffies = u(x, "usr") + u(x, "sys");
            spdk.reactors.push(SpdkReactor {
                lcore,
                tid: u(x, "tid") as u32,
                in_interrupt: x
                    .get("in_interrupt")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                busy_ns: self.ns(u(x, "busy")),
                idle_ns: self.ns(u(x, "idle")),
                proc_cpu_ns: jiffies * (1_000_000_000 / PROC_TICKS_PER_S),
                threads,
            });
        }
        let thread_ticks: HashMap<String, (u64, u64)> = threads
            .as_ref()
            .map(|t| arr(t, "threads"))
            .unwrap_or(&[])
            .iter()
            .map(|t| (s(t, "name").to_string(), (u(t, "busy"), u(t, "idle"))))
            .collect();
        for t in pollers.as_ref().map(|p| arr(p, "threads")).unwrap_or(&[]) {
            for (kind, key) in [
                ("active", "active_pollers"),
                ("timed", "timed_pollers"),
                ("paused", "paused_pollers"),
            ] {
                for p in arr(t, key) {
                    spdk.pollers.push(Poller {
                        thread: s(t, "name").to_string(),
                        name: s(p, "name").to_string(),
                        kind: kind.into(),
                        run_count: u(p, "run_count"),
                        busy_count: u(p, "busy_count"),
                    });
                }
            }
        }
        for g in stats.as_ref().map(|v| arr(v, "poll_groups")).unwrap_or(&[]) {
            let name = s(g, "name").to_string();
            let (busy, idle) = thread_ticks.get(&name).copied().unwrap_or((0, 0));
            spdk.poll_groups.push(PollGroup {
                lcore: lcore_of.get(&name).copied().unwrap_or(0),
                current_admin_qpairs: u(g, "current_admin_qpairs") as u32,
                current_io_qpairs: u(g, "current_io_qpairs") as u32,
                io_qpairs: u(g, "io_qpairs"),
                completed_nvme_io: u(g, "completed_nvme_io"),
                pending_bdev_io: u(g, "pending_bdev_io"),
                busy_ns: self.ns(busy),
                idle_ns: self.ns(idle),
                name,
            });
        }
        let mut per_thread: BTreeMap<String, u32> = BTreeMap::new();
        for q in listed.iter().filter(|q| q.key.qid > 0) {
            *per_thread.entry(q.thread.clone()).or_default() += 1;
        }
        spdk.listed_qpairs = per_thread.into_iter().collect();

        // The backend: reads vs writes and bytes per I/O over all bdevs.
        let (mut rd, mut wr, mut rb, mut wb) = (0u64, 0u64, 0u64, 0u64);
        for b in iostat.as_ref().map(|v| arr(v, "bdevs")).unwrap_or(&[]) {
            rd += u(b, "num_read_ops");
            wr += u(b, "num_write_ops");
            rb += u(b, "bytes_read");
            wb += u(b, "bytes_written");
        }
        let read_share = if rd + wr > 0 {
            rd as f64 / (rd + wr) as f64
        } else {
            1.0
        };
        let bytes_per_io = if rd + wr > 0 {
            (rb + wb) as f64 / (rd + wr) as f64
        } else {
            0.0
        };

        // Qpairs: each poll group's new completions shared among its I/O qpairs.
        let trace_owners = self
            .latest
            .as_ref()
            .map(|(_, o)| o.clone())
            .unwrap_or_default();
        // Alive during the window: listed now, or at its start.
        let mut alive: Vec<ListedQpair> = listed.clone();
        for q in &self.prev_listed {
            if !alive.iter().any(|x| x.key == q.key) {
                alive.push(q.clone());
            }
        }
        for g in &spdk.poll_groups {
            let before = self
                .group_completed
                .insert(g.name.clone(), g.completed_nvme_io);
            let delta = before
                .map(|b| g.completed_nvme_io.saturating_sub(b))
                .unwrap_or(0);
            let mine: Vec<&ListedQpair> = alive
                .iter()
                .filter(|q| q.thread == g.name && q.key.qid > 0)
                .collect();
            let weights: Vec<u64> = mine
                .iter()
                .map(|q| {
                    self.owner_of(&q.key.peer)
                        .and_then(|o| trace_owners.get(&o))
                        .map(|t| t.latencies.len() as u64)
                        .unwrap_or(0)
                })
                .collect();
            let total: u64 = weights.iter().sum();
            for (i, q) in mine.iter().enumerate() {
                let share = if total > 0 {
                    (delta as u128 * u128::from(weights[i]) / u128::from(total)) as u64
                } else {
                    delta / mine.len() as u64
                };
                let owner = self
                    .owner_of(&q.key.peer)
                    .and_then(|o| trace_owners.get(&o))
                    .cloned();
                let next = self.next_slot.entry(g.lcore).or_insert(0);
                let acc = self.qpairs.entry(q.key.clone()).or_insert_with(|| {
                    let slot = *next;
                    *next = next.wrapping_add(1);
                    QpairAcc {
                        reactor: g.lcore,
                        slot,
                        ..QpairAcc::default()
                    }
                });
                acc.reactor = g.lcore;
                acc.completed += share;
                acc.bytes += (share as f64 * bytes_per_io) as u64;
                if let Some(t) = owner.filter(|t| !t.latencies.is_empty()) {
                    acc.high_water = acc.high_water.max(t.max_qd);
                    let n = t.latencies.len();
                    for k in 0..share.min(MAX_DRAWS) {
                        acc.latency.record(t.latencies[(acc.draw + k as usize) % n]);
                    }
                    acc.draw = (acc.draw + share.min(MAX_DRAWS) as usize) % n;
                }
            }
        }
        // Qpairs gone for a whole sample are forgotten (a reconnect gets a new slot).
        let present: Vec<QpairKey> = alive.iter().map(|q| q.key.clone()).collect();
        self.qpairs.retain(|k, _| present.contains(k));
        self.prev_listed = listed;

        for r in &spdk.reactors {
            let groups: Vec<&PollGroup> = spdk
                .poll_groups
                .iter()
                .filter(|g| g.lcore == r.lcore)
                .collect();
            let completed: u64 = groups.iter().map(|g| g.completed_nvme_io).sum();
            let reads = (completed as f64 * read_share).round() as u64;
            let active = |p: &&Poller| r.threads.contains(&p.thread) && p.kind == "active";
            let mut rs = ReactorSample {
                index: r.lcore,
                polls: spdk
                    .pollers
                    .iter()
                    .filter(active)
                    .map(|p| p.run_count)
                    .sum(),
                busy_polls: spdk
                    .pollers
                    .iter()
                    .filter(active)
                    .map(|p| p.busy_count)
                    .sum(),
                busy_ns: r.busy_ns,
                idle_ns: r.idle_ns,
                cmds_read: reads,
                cmds_write: completed.saturating_sub(reads),
                bytes_read: (reads as f64 * bytes_per_io) as u64,
                bytes_write: (completed.saturating_sub(reads) as f64 * bytes_per_io) as u64,
                backend_submitted: completed,
                backend_completed: completed,
                connections_opened: groups.iter().map(|g| g.io_qpairs).sum(),
                connections_closed: groups
                    .iter()
                    .map(|g| g.io_qpairs.saturating_sub(u64::from(g.current_io_qpairs)))
                    .sum(),
                buffer_waits: 0,
                ..ReactorSample::default()
            };
            let mut qs: Vec<QpairSample> = self
                .qpairs
                .iter()
                .filter(|(_, a)| a.reactor == r.lcore)
                .map(|(k, a)| QpairSample {
                    slot: a.slot,
                    generation: 0,
                    ident: (k.cntlid << 16) | k.qid,
                    submitted: a.completed,
                    completed: a.completed,
                    outstanding: 0,
                    high_water: a.high_water,
                    bytes: a.bytes,
                    errors: 0,
                    queue_size: None,
                    host: None,
                    latency: a.latency.clone(),
                })
                .collect();
            qs.sort_by_key(|q| q.slot);
            rs.qpairs = qs;
            sample.reactors.push(rs);
        }
        sample.spdk = Some(spdk);
    }
}
