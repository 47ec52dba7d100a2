//! Loading, attaching, polling and reading the probes.
//!
//! Ownership: a [`ProbeSet`] owns everything kernel-side: the shared maps (config, filter sets,
//! the one ring buffer, the drop counter) as map fds, and per probe its attach links and the fds
//! of its aggregate maps. The libbpf objects themselves are closed right after attach: a link
//! keeps its program alive and a program keeps the maps it uses alive, so dropping the
//! `ProbeSet` (links first) detaches everything. It is `Send` and meant to be used from one
//! collector thread; the ring-buffer callback runs inside [`ProbeSet::poll`] on that thread.
//!
//! Each probe is opened, loaded and attached on its own; a failure yields one status line for
//! that probe and never stops the others.

use crate::abi;
use crate::aggregates::Aggregates;
use crate::config::{Filter, ProbeConfig, ProbeKind};
use crate::events::KernelEvent;
use crate::skel;
use crate::ProbeError;
use libbpf_rs::skel::{OpenSkel as _, SkelBuilder as _};
use libbpf_rs::{
    Link, MapCore as _, MapFlags, MapHandle, MapType, OpenMapMut, RingBuffer, RingBufferBuilder,
};
use std::collections::{BTreeSet, HashSet, VecDeque};
use std::fmt;
use std::mem::MaybeUninit;
use std::os::fd::AsFd as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// How a probe came out of [`ProbeSet::start`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every tracepoint attached.
    Attached,
    /// Some tracepoints attached, some are missing or failed (see the detail).
    Partial,
    /// Nothing of this probe runs.
    Failed,
    /// Not requested in [`ProbeConfig::probes`].
    Disabled,
}

/// One probe's result: [`fmt::Display`] gives the one line to show a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeStatus {
    pub probe: ProbeKind,
    pub outcome: Outcome,
    /// Tracepoints this probe is attached to.
    pub attached: Vec<&'static str>,
    /// What is missing and why, what still works.
    pub detail: String,
}

impl fmt::Display for ProbeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.outcome {
            Outcome::Attached => "attached",
            Outcome::Partial => "partial",
            Outcome::Failed => "not loaded",
            Outcome::Disabled => "disabled",
        };
        write!(f, "{}: {what}: {}", self.probe, self.detail)
    }
}

/// The maps every probe object shares (`bpf/rs_common.bpf.h`).
struct Shared {
    config: MapHandle,
    tids: MapHandle,
    devs: MapHandle,
    ports: MapHandle,
    ifaces: MapHandle,
    events: MapHandle,
    drops: MapHandle,
}

fn create_map(
    ty: MapType,
    name: &str,
    key: u32,
    value: u32,
    entries: u32,
) -> Result<MapHandle, libbpf_rs::Error> {
    let opts = libbpf_rs::libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_map_create_opts>() as _,
        ..Default::default()
    };
    MapHandle::create(ty, Some(name), key, value, entries, &opts)
}

impl Shared {
    fn create(ringbuf_bytes: u32) -> Result<Shared, libbpf_rs::Error> {
        use crate::config::{MAX_DEVICES, MAX_IFINDEXES, MAX_PORTS, MAX_TIDS};
        let set = |name: &str, n: usize| create_map(MapType::Hash, name, 4, 1, n as u32);
        Ok(Shared {
            config: create_map(MapType::Array, "rs_config", 4, abi::CONFIG_SIZE as u32, 1)?,
            tids: set("rs_tids", MAX_TIDS)?,
            devs: set("rs_devs", MAX_DEVICES)?,
            ports: set("rs_ports", MAX_PORTS)?,
            ifaces: set("rs_ifaces", MAX_IFINDEXES)?,
            events: create_map(MapType::RingBuf, "rs_events", 0, 0, ringbuf_bytes)?,
            drops: create_map(MapType::PercpuArray, "rs_drops", 4, 8, 1)?,
        })
    }

    /// Points an object's copy of shared map `name` at our instance, after checking its layout.
    fn reuse(&self, name: &'static str, m: &mut OpenMapMut<'_>) -> Result<(), LoadFailure> {
        let ours = match name {
            "rs_config" => &self.config,
            "rs_tids" => &self.tids,
            "rs_devs" => &self.devs,
            "rs_ports" => &self.ports,
            "rs_ifaces" => &self.ifaces,
            "rs_events" => &self.events,
            _ => &self.drops,
        };
        if ours.map_type() != MapType::RingBuf {
            check_layout(
                name,
                m.key_size(),
                m.value_size(),
                ours.key_size() as usize,
                ours.value_size() as usize,
            )?;
        }
        m.reuse_fd(ours.as_fd())
            .map_err(|e| LoadFailure::Other(format!("sharing map {name} failed: {e}")))
    }

    fn write_filter(&self, f: &Filter) -> Result<(), ProbeError> {
        let bpf = |op: &str| {
            let op = op.to_string();
            move |source| ProbeError::Bpf { op, source }
        };
        self.config
            .update(&0u32.to_ne_bytes(), &abi::encode_config(f), MapFlags::ANY)
            .map_err(bpf("writing rs_config"))?;
        sync_set(&self.tids, f.reactor_tids.iter().copied()).map_err(bpf("updating rs_tids"))?;
        sync_set(&self.devs, f.devices.iter().map(|&d| abi::kernel_dev(d)))
            .map_err(bpf("updating rs_devs"))?;
        sync_set(&self.ports, f.ports.iter().map(|&p| u32::from(p)))
            .map_err(bpf("updating rs_ports"))?;
        sync_set(&self.ifaces, f.ifindexes.iter().copied()).map_err(bpf("updating rs_ifaces"))?;
        Ok(())
    }
}

/// Makes the u32 set `map` hold exactly `want`: adds first, then removes the rest, so a key
/// present before and after is never briefly missing.
fn sync_set(map: &MapHandle, want: impl Iterator<Item = u32>) -> Result<(), libbpf_rs::Error> {
    let want: HashSet<u32> = want.collect();
    for k in &want {
        map.update(&k.to_ne_bytes(), &[1], MapFlags::ANY)?;
    }
    let stale: Vec<Vec<u8>> = map
        .keys()
        .filter(|k| {
            let key = k.as_slice().try_into().map(u32::from_ne_bytes).ok();
            key.is_none_or(|key| !want.contains(&key))
        })
        .collect();
    for k in stale {
        map.delete(&k)?;
    }
    Ok(())
}

fn check_layout(
    map: &'static str,
    key: u32,
    value: u32,
    want_key: usize,
    want_value: usize,
) -> Result<(), LoadFailure> {
    for (what, actual, expected) in [("key", key, want_key), ("value", value, want_value)] {
        if actual as usize != expected {
            return Err(LoadFailure::Layout(ProbeError::Layout {
                map,
                what,
                actual,
                expected,
            }));
        }
    }
    Ok(())
}

enum LoadFailure {
    Open(libbpf_rs::Error),
    NoTracepoints(Vec<&'static str>),
    Load(libbpf_rs::Error),
    Layout(ProbeError),
    Other(String),
}

/// One loaded probe: its links (attached programs) and its aggregate maps.
struct Loaded {
    kind: ProbeKind,
    _links: Vec<Link>,
    maps: Vec<(&'static str, MapHandle)>,
    attached: Vec<&'static str>,
    missing: Vec<&'static str>,
    /// Left off by the configuration.
    off: Vec<&'static str>,
    attach_errors: Vec<(&'static str, String)>,
    /// Kernel program id per attached tracepoint (0 if the link could not tell).
    prog_ids: Vec<(&'static str, u32)>,
}

/// Kernel run-time statistics of one attached program (see [`ProbeSet::enable_run_stats`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramStats {
    pub probe: ProbeKind,
    pub tracepoint: &'static str,
    /// Times the program ran while statistics were enabled.
    pub run_count: u64,
    /// Total time spent in the program (kernel-measured).
    pub run_time_ns: u64,
}

impl ProgramStats {
    /// Mean cost of one invocation, `run_time_ns / run_count`.
    pub fn ns_per_run(&self) -> Option<f64> {
        (self.run_count > 0).then(|| self.run_time_ns as f64 / self.run_count as f64)
    }
}

/// Keeps the kernel's BPF run-time statistics on while alive (they cost two clock reads per
/// program run, so they are off by default).
#[derive(Debug)]
pub struct RunStatsGuard {
    _fd: std::os::fd::OwnedFd,
}

/// Tracepoints present in the running kernel's BTF (`btf_trace_<name>` typedefs).
struct KernelTracepoints(HashSet<&'static str>, Vec<&'static str>);

impl KernelTracepoints {
    fn probe(kinds: &[ProbeKind]) -> Result<KernelTracepoints, String> {
        if !Path::new(VMLINUX_BTF).exists() {
            return Err(format!(
                "kernel BTF {VMLINUX_BTF} is missing (kernel built without CONFIG_DEBUG_INFO_BTF): \
                 tp_btf programs cannot attach"
            ));
        }
        let btf = libbpf_rs::btf::Btf::from_vmlinux()
            .map_err(|e| format!("kernel BTF {VMLINUX_BTF} could not be read: {e}"))?;
        let mut present = HashSet::new();
        for k in kinds {
            for &tp in k.tracepoints() {
                let name = format!("btf_trace_{tp}");
                if btf
                    .type_by_name::<libbpf_rs::btf::BtfType<'_>>(&name)
                    .is_some()
                {
                    present.insert(tp);
                }
            }
        }
        Ok(KernelTracepoints(present, Vec::new()))
    }

    fn has(&self, tp: &str) -> bool {
        self.0.contains(tp)
    }

    /// Left off by the configuration.
    fn is_off(&self, tp: &str) -> bool {
        self.1.contains(&tp)
    }
}

/// Generates `fn $name(shared, tracepoints) -> Result<Loaded, LoadFailure>` for one skeleton:
/// open, share the common maps, disable programs whose tracepoint this kernel lacks, load,
/// attach each program separately, keep fds of its aggregate maps after checking their layout.
macro_rules! probe_loader {
    ($name:ident, $kind:expr, $module:ident :: $builder:ident,
     progs: [$($prog:ident => $tp:literal),+ $(,)?],
     maps: [$($map:ident => ($ks:expr, $vs:expr)),* $(,)?]) => {
        fn $name(shared: &Shared, tps: &KernelTracepoints) -> Result<Loaded, LoadFailure> {
            let mut storage = MaybeUninit::uninit();
            let mut open = skel::$module::$builder::default()
                .open(&mut storage)
                .map_err(LoadFailure::Open)?;
            shared.reuse("rs_config", &mut open.maps.rs_config)?;
            shared.reuse("rs_tids", &mut open.maps.rs_tids)?;
            shared.reuse("rs_devs", &mut open.maps.rs_devs)?;
            shared.reuse("rs_ports", &mut open.maps.rs_ports)?;
            shared.reuse("rs_ifaces", &mut open.maps.rs_ifaces)?;
            shared.reuse("rs_events", &mut open.maps.rs_events)?;
            shared.reuse("rs_drops", &mut open.maps.rs_drops)?;
            let mut wanted: Vec<&'static str> = Vec::new();
            let mut missing: Vec<&'static str> = Vec::new();
            let mut off: Vec<&'static str> = Vec::new();
            $(
                if tps.is_off($tp) {
                    open.progs.$prog.set_autoload(false);
                    off.push($tp);
                } else if tps.has($tp) {
                    wanted.push($tp);
                } else {
                    open.progs.$prog.set_autoload(false);
                    missing.push($tp);
                }
            )+
            if wanted.is_empty() && missing.is_empty() {
                return Err(LoadFailure::Other(format!(
                    "every tracepoint ({}) is off in the configuration",
                    off.join(", ")
                )));
            }
            if wanted.is_empty() {
                return Err(LoadFailure::NoTracepoints(missing));
            }
            let skel = open.load().map_err(LoadFailure::Load)?;
            let mut links = Vec::new();
            let mut attached = Vec::new();
            let mut attach_errors = Vec::new();
            let mut prog_ids = Vec::new();
            $(
                if wanted.contains(&$tp) {
                    match skel.progs.$prog.attach() {
                        Ok(link) => {
                            let id = link.info().map(|i| i.prog_id).unwrap_or(0);
                            links.push(link);
                            attached.push($tp);
                            prog_ids.push(($tp, id));
                        }
                        Err(e) => attach_errors.push(($tp, e.to_string())),
                    }
                }
            )+
            #[allow(unused_mut)]
            let mut maps = Vec::new();
            $(
                check_layout(
                    stringify!($map),
                    skel.maps.$map.key_size(),
                    skel.maps.$map.value_size(),
                    $ks,
                    $vs,
                )?;
                let handle = MapHandle::try_from(&skel.maps.$map).map_err(|e| {
                    LoadFailure::Other(format!("keeping map {} failed: {e}", stringify!($map)))
                })?;
                maps.push((stringify!($map), handle));
            )*
            Ok(Loaded {
                kind: $kind,
                _links: links,
                maps,
                attached,
                missing,
                off,
                attach_errors,
                prog_ids,
            })
        }
    };
}

probe_loader!(load_sched, ProbeKind::Sched, sched::SchedSkelBuilder,
progs: [
    rs_sched_switch => "sched_switch",
    rs_sched_waking => "sched_waking",
    rs_sched_wakeup => "sched_wakeup",
    rs_sched_migrate_task => "sched_migrate_task",
],
maps: [
    rs_stolen => (abi::STOLEN_KEY, abi::STOLEN_VAL),
    rs_rstats => (4, abi::RSTATS_VAL),
]);

probe_loader!(load_irq, ProbeKind::Irq, irq::IrqSkelBuilder,
    progs: [
        rs_irq_entry => "irq_handler_entry",
        rs_irq_exit => "irq_handler_exit",
        rs_softirq_entry => "softirq_entry",
        rs_softirq_exit => "softirq_exit",
    ],
    maps: [rs_irq_time => (abi::IRQ_KEY, abi::HIST_SIZE)]);

probe_loader!(load_syscalls, ProbeKind::Syscalls, syscalls::SyscallsSkelBuilder,
    progs: [rs_sys_enter => "sys_enter", rs_sys_exit => "sys_exit"],
    maps: [rs_syscalls => (abi::SYSCALL_KEY, abi::SYSCALL_VAL)]);

probe_loader!(load_block, ProbeKind::Block, block::BlockSkelBuilder,
    progs: [rs_block_rq_issue => "block_rq_issue", rs_block_rq_complete => "block_rq_complete"],
    maps: [rs_block => (abi::BLOCK_KEY, abi::BLOCK_VAL)]);

probe_loader!(load_tcp, ProbeKind::Tcp, tcp::TcpSkelBuilder,
    progs: [rs_tcp_retransmit_skb => "tcp_retransmit_skb", rs_tcp_probe => "tcp_probe"],
    maps: [rs_tcp => (abi::CONN_SIZE, abi::TCP_VAL)]);

probe_loader!(load_net, ProbeKind::Net, net::NetSkelBuilder,
    progs: [rs_net_dev_xmit => "net_dev_xmit", rs_netif_receive_skb => "netif_receive_skb"],
    maps: [rs_net => (abi::NET_KEY, abi::NET_VAL)]);

probe_loader!(load_numa, ProbeKind::Numa, numa::NumaSkelBuilder,
progs: [
    rs_mm_migrate_pages => "mm_migrate_pages",
    rs_sched_move_numa => "sched_move_numa",
    rs_sched_swap_numa => "sched_swap_numa",
    rs_sched_stick_numa => "sched_stick_numa",
],
maps: [
    rs_numa_pages => (4, abi::NUMA_PAGES_VAL),
    rs_numa_tasks => (abi::NUMA_TASK_KEY, 8),
]);

// ---- libbpf's own messages: kept (bounded) instead of printed, so a TUI stays intact ----

static LIBBPF_LOG: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());
const LIBBPF_LOG_LINES: usize = 200;

fn libbpf_print(_level: libbpf_rs::PrintLevel, msg: String) {
    if let Ok(mut log) = LIBBPF_LOG.lock() {
        for line in msg.lines().filter(|l| !l.trim().is_empty()) {
            if log.len() == LIBBPF_LOG_LINES {
                log.pop_front();
            }
            log.push_back(line.to_string());
        }
    }
}

fn install_libbpf_print() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        libbpf_rs::set_print(Some((libbpf_rs::PrintLevel::Warn, libbpf_print)));
    });
}

/// The last warnings libbpf printed (verifier and attach messages), oldest first. The probes
/// crate routes libbpf's output here rather than to stderr.
pub fn libbpf_messages() -> Vec<String> {
    LIBBPF_LOG
        .lock()
        .map(|l| l.iter().cloned().collect())
        .unwrap_or_default()
}

fn last_libbpf_line() -> String {
    libbpf_messages()
        .into_iter()
        .rev()
        .find(|l| l.contains("libbpf:"))
        .map(|l| {
            let l = l.trim();
            let l: String = l.chars().take(200).collect();
            format!(" ({l})")
        })
        .unwrap_or_default()
}

fn permission_hint(e: &libbpf_rs::Error) -> &'static str {
    if e.kind() == libbpf_rs::ErrorKind::PermissionDenied {
        ": run as root or grant CAP_BPF and CAP_PERFMON"
    } else {
        ""
    }
}

/// Loaded probes, the shared maps and the event ring buffer.
pub struct ProbeSet {
    // Field order is drop order: stop polling, then detach, then release the shared maps.
    ring: Option<RingBuffer<'static>>,
    probes: Vec<Loaded>,
    shared: Option<Shared>,
    /// Tracepoints of the running kernel, or why no probe can run at all.
    kernel: Result<KernelTracepoints, String>,
    queue: Arc<Mutex<Vec<KernelEvent>>>,
    decode_errors: Arc<AtomicU64>,
    filter: Filter,
}

impl fmt::Debug for ProbeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeSet")
            .field(
                "probes",
                &self.probes.iter().map(|p| p.kind).collect::<Vec<_>>(),
            )
            .field("filter", &self.filter)
            .finish()
    }
}

impl ProbeSet {
    /// Loads and attaches every probe of `cfg.probes` independently, with the filter written
    /// before the first attach. Returns the set (possibly with no probe running) and one status
    /// per [`ProbeKind`]. Only an invalid configuration is an error.
    pub fn start(cfg: &ProbeConfig) -> Result<(ProbeSet, Vec<ProbeStatus>), ProbeError> {
        cfg.validate()?;
        install_libbpf_print();
        let mut set = ProbeSet {
            ring: None,
            probes: Vec::new(),
            shared: None,
            kernel: Err(String::new()),
            queue: Arc::new(Mutex::new(Vec::new())),
            decode_errors: Arc::new(AtomicU64::new(0)),
            filter: cfg.filter.clone(),
        };
        let wanted: BTreeSet<ProbeKind> = cfg.probes.iter().copied().collect();
        let disabled = |k: ProbeKind| ProbeStatus {
            probe: k,
            outcome: Outcome::Disabled,
            attached: Vec::new(),
            detail: "not requested in the probe configuration".into(),
        };
        if wanted.is_empty() {
            set.kernel = Err("no probe was requested".into());
            return Ok((set, ProbeKind::ALL.iter().map(|&k| disabled(k)).collect()));
        }
        match Self::prepare_kernel(cfg) {
            Ok((shared, mut tps)) => {
                tps.1 = cfg.off.clone();
                set.shared = Some(shared);
                set.kernel = Ok(tps);
            }
            Err(reason) => set.kernel = Err(reason),
        }
        let statuses = ProbeKind::ALL
            .iter()
            .map(|&k| {
                if wanted.contains(&k) {
                    set.attach(k)
                } else {
                    disabled(k)
                }
            })
            .collect();
        Ok((set, statuses))
    }

    /// Creates the shared maps, writes the filter, reads which tracepoints the kernel has.
    /// An error is the reason no probe can run, worded for the status lines.
    fn prepare_kernel(cfg: &ProbeConfig) -> Result<(Shared, KernelTracepoints), String> {
        let shared = Shared::create(cfg.ringbuf_bytes)
            .map_err(|e| format!("creating BPF maps failed ({e}){}", permission_hint(&e)))?;
        shared
            .write_filter(&cfg.filter)
            .map_err(|e| format!("writing the filter maps failed: {e}"))?;
        let tps = KernelTracepoints::probe(&ProbeKind::ALL)?;
        Ok((shared, tps))
    }

    /// Loads and attaches one more probe into the running set (e.g. `syscalls` for the length of
    /// a diagnosis), sharing the filter and the ring buffer. Returns its status line; a probe
    /// already running is reported as it is.
    pub fn attach(&mut self, kind: ProbeKind) -> ProbeStatus {
        if let Some(p) = self.probes.iter().find(|p| p.kind == kind) {
            return ProbeStatus {
                probe: kind,
                outcome: Outcome::Attached,
                attached: p.attached.clone(),
                detail: format!("already attached: {}", p.attached.join(", ")),
            };
        }
        let (shared, tps) = match (&self.shared, &self.kernel) {
            (Some(shared), Ok(tps)) => (shared, tps),
            (_, Err(reason)) => {
                return ProbeStatus {
                    probe: kind,
                    outcome: Outcome::Failed,
                    attached: Vec::new(),
                    detail: format!(
                        "{reason}; no kernel probe runs, user-space collectors are unaffected"
                    ),
                }
            }
            // prepare_kernel sets both or neither.
            (None, Ok(_)) => {
                return ProbeStatus {
                    probe: kind,
                    outcome: Outcome::Failed,
                    attached: Vec::new(),
                    detail: "the shared BPF maps are missing".into(),
                }
            }
        };
        let result = match kind {
            ProbeKind::Sched => load_sched(shared, tps),
            ProbeKind::Irq => load_irq(shared, tps),
            ProbeKind::Syscalls => load_syscalls(shared, tps),
            ProbeKind::Block => load_block(shared, tps),
            ProbeKind::Tcp => load_tcp(shared, tps),
            ProbeKind::Net => load_net(shared, tps),
            ProbeKind::Numa => load_numa(shared, tps),
        };
        let mut status = status_of(kind, &result);
        if let Ok(loaded) = result {
            if !loaded.attached.is_empty() {
                self.probes.push(loaded);
                if let Err(e) = self.ensure_ring() {
                    // Aggregates still work without the ring buffer.
                    status.outcome = Outcome::Partial;
                    status.detail.push_str(&format!(
                        "; no events: opening the ring buffer failed ({e}), aggregates still work"
                    ));
                }
            }
        }
        status
    }

    /// Detaches one probe and releases its maps (its aggregates are gone). Returns whether it
    /// was running.
    pub fn detach(&mut self, kind: ProbeKind) -> bool {
        let before = self.probes.len();
        self.probes.retain(|p| p.kind != kind);
        self.probes.len() != before
    }

    /// Opens the ring-buffer consumer once the first probe runs.
    fn ensure_ring(&mut self) -> Result<(), libbpf_rs::Error> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        if self.ring.is_some() {
            return Ok(());
        }
        let queue = Arc::clone(&self.queue);
        let errors = Arc::clone(&self.decode_errors);
        let mut builder = RingBufferBuilder::new();
        builder.add(&shared.events, move |rec: &[u8]| {
            match abi::decode_event(rec) {
                Ok(ev) => {
                    if let Ok(mut q) = queue.lock() {
                        q.push(ev);
                    }
                }
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            0
        })?;
        self.ring = Some(builder.build()?);
        Ok(())
    }

    /// Waits up to `timeout` for events and returns those decoded (possibly none).
    pub fn poll(&mut self, timeout: Duration) -> Result<Vec<KernelEvent>, ProbeError> {
        match &self.ring {
            Some(ring) => {
                if let Err(e) = ring.poll(timeout) {
                    if e.kind() != libbpf_rs::ErrorKind::Interrupted {
                        return Err(ProbeError::Bpf {
                            op: "polling the ring buffer".into(),
                            source: e,
                        });
                    }
                }
            }
            // Nothing can arrive; honour the timeout so a caller's loop does not spin.
            None => std::thread::sleep(timeout),
        }
        Ok(self
            .queue
            .lock()
            .map(|mut q| std::mem::take(&mut *q))
            .unwrap_or_default())
    }

    /// Records that could not be decoded (a layout mismatch; should stay 0).
    pub fn decode_errors(&self) -> u64 {
        self.decode_errors.load(Ordering::Relaxed)
    }

    /// Probes with at least one attached tracepoint.
    pub fn running(&self) -> Vec<ProbeKind> {
        self.probes.iter().map(|p| p.kind).collect()
    }

    /// The filter currently in the kernel.
    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    fn shared(&self) -> Result<&Shared, ProbeError> {
        self.shared.as_ref().ok_or(ProbeError::NotRunning)
    }

    /// Replaces the in-kernel filter (config and every set) for all probes at once.
    pub fn set_filter(&mut self, f: &Filter) -> Result<(), ProbeError> {
        f.validate()?;
        self.shared()?.write_filter(f)?;
        self.filter = f.clone();
        Ok(())
    }

    /// Adds a reactor thread to the running filter.
    pub fn add_reactor_tid(&mut self, tid: u32) -> Result<(), ProbeError> {
        let mut f = self.filter.clone();
        if !f.reactor_tids.contains(&tid) {
            f.reactor_tids.push(tid);
        }
        self.set_filter(&f)
    }

    /// Adds a TCP port to the running filter.
    pub fn add_port(&mut self, port: u16) -> Result<(), ProbeError> {
        let mut f = self.filter.clone();
        if !f.ports.contains(&port) {
            f.ports.push(port);
        }
        self.set_filter(&f)
    }

    /// Turns on per-program run-time statistics until the guard is dropped (root only); read
    /// them with [`ProbeSet::program_stats`]. This is how the probes' own cost is measured.
    pub fn enable_run_stats(&self) -> Result<RunStatsGuard, ProbeError> {
        skel::enable_run_stats()
            .map(|fd| RunStatsGuard { _fd: fd })
            .map_err(|e| ProbeError::Stats {
                reason: e.to_string(),
            })
    }

    /// Run count and run time of every attached program (zero unless statistics were enabled).
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        let mut by_id = std::collections::HashMap::new();
        for p in &self.probes {
            for &(tp, id) in &p.prog_ids {
                by_id.insert(id, (p.kind, tp));
            }
        }
        let mut out: Vec<ProgramStats> = libbpf_rs::query::ProgInfoIter::default()
            .filter_map(|info| {
                by_id
                    .get(&info.id)
                    .map(|&(probe, tracepoint)| ProgramStats {
                        probe,
                        tracepoint,
                        run_count: info.run_cnt,
                        run_time_ns: info.run_time_ns,
                    })
            })
            .collect();
        out.sort_by_key(|s| (s.probe, s.tracepoint));
        out
    }

    /// Reads every aggregate map of the running probes.
    pub fn read_aggregates(&self) -> Result<Aggregates, ProbeError> {
        let mut out = Aggregates::default();
        for p in &self.probes {
            for (name, map) in &p.maps {
                if *name == "rs_net" {
                    // Per-CPU: one value per possible CPU, summed.
                    for key in map.keys() {
                        let values = map.lookup_percpu(&key, MapFlags::ANY).map_err(|source| {
                            ProbeError::Bpf {
                                op: format!("reading map {name}"),
                                source,
                            }
                        })?;
                        let Some(values) = values else { continue };
                        if let Some(t) = values.iter().map(|v| abi::net(&key, v)).reduce(|a, b| {
                            crate::aggregates::NetTotals {
                                packets: a.packets + b.packets,
                                bytes: a.bytes + b.bytes,
                                errors: a.errors + b.errors,
                                ..a
                            }
                        }) {
                            out.net.push(t);
                        }
                    }
                    continue;
                }
                for key in map.keys() {
                    let value =
                        map.lookup(&key, MapFlags::ANY)
                            .map_err(|source| ProbeError::Bpf {
                                op: format!("reading map {name}"),
                                source,
                            })?;
                    // The entry can vanish between keys() and lookup(): skip it.
                    let Some(v) = value else { continue };
                    match *name {
                        "rs_stolen" => out.stolen.push(abi::stolen(&key, &v)),
                        "rs_rstats" => out.reactors.push(abi::reactor_stats(&key, &v)),
                        "rs_irq_time" => out.irq.push(abi::irq(&key, &v)),
                        "rs_syscalls" => out.syscalls.push(abi::syscall(&key, &v)),
                        "rs_block" => out.block.push(abi::block(&key, &v)),
                        "rs_tcp" => out.tcp.push(abi::tcp(&key, &v)),
                        "rs_net" => out.net.push(abi::net(&key, &v)),
                        "rs_numa_pages" => out.numa_pages.push(abi::numa_pages(&key, &v)),
                        "rs_numa_tasks" => out.numa_tasks.push(abi::numa_task(&key, &v)),
                        _ => {}
                    }
                }
            }
        }
        if let Some(shared) = &self.shared {
            if let Ok(Some(per_cpu)) = shared
                .drops
                .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
            {
                out.ringbuf_drops = per_cpu
                    .iter()
                    .filter_map(|v| v.as_slice().try_into().ok().map(u64::from_ne_bytes))
                    .sum();
            }
        }
        out.stolen
            .sort_by(|a, b| (a.cpu, a.pid, &a.comm).cmp(&(b.cpu, b.pid, &b.comm)));
        out.reactors.sort_by_key(|r| r.tid);
        out.irq.sort_by_key(|r| (r.cpu, r.kind, r.vector));
        out.syscalls.sort_by_key(|r| (r.tid, r.nr));
        out.block.sort_by_key(|r| (r.dev, r.op));
        out.tcp.sort_by_key(|r| r.conn);
        out.net.sort_by_key(|r| (r.ifindex, r.dir));
        out.numa_pages.sort_by_key(|r| r.reason);
        out.numa_tasks.sort_by_key(|r| (r.tid, r.kind));
        Ok(out)
    }
}

fn status_of(kind: ProbeKind, r: &Result<Loaded, LoadFailure>) -> ProbeStatus {
    let failed = |detail: String| ProbeStatus {
        probe: kind,
        outcome: Outcome::Failed,
        attached: Vec::new(),
        detail: format!("{detail}; the other probes are unaffected"),
    };
    match r {
        Err(LoadFailure::Open(e)) => failed(format!("opening the BPF object failed: {e}")),
        Err(LoadFailure::NoTracepoints(tps)) => failed(format!(
            "none of its tracepoints ({}) exist in this kernel's BTF",
            tps.join(", ")
        )),
        Err(LoadFailure::Load(e)) => failed(format!(
            "the kernel refused to load it: {e}{}{}",
            permission_hint(e),
            last_libbpf_line()
        )),
        Err(LoadFailure::Layout(e)) => failed(e.to_string()),
        Err(LoadFailure::Other(s)) => failed(s.clone()),
        Ok(l) => {
            let mut problems: Vec<String> = l
                .missing
                .iter()
                .map(|tp| format!("tracepoint {tp} is not in this kernel"))
                .collect();
            problems.extend(
                l.attach_errors
                    .iter()
                    .map(|(tp, e)| format!("attaching {tp} failed ({e})")),
            );
            if l.attached.is_empty() {
                failed(problems.join(", "))
            } else if problems.is_empty() {
                let off = if l.off.is_empty() {
                    String::new()
                } else {
                    format!(" ({} off)", l.off.join(", "))
                };
                ProbeStatus {
                    probe: kind,
                    outcome: Outcome::Attached,
                    attached: l.attached.clone(),
                    detail: format!("{}{off}", l.attached.join(", ")),
                }
            } else {
                ProbeStatus {
                    probe: kind,
                    outcome: Outcome::Partial,
                    attached: l.attached.clone(),
                    detail: format!(
                        "{}; still attached: {}",
                        problems.join(", "),
                        l.attached.join(", ")
                    ),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(
        kind: ProbeKind,
        attached: Vec<&'static str>,
        missing: Vec<&'static str>,
        attach_errors: Vec<(&'static str, String)>,
    ) -> Result<Loaded, LoadFailure> {
        Ok(Loaded {
            kind,
            _links: Vec::new(),
            maps: Vec::new(),
            attached,
            missing,
            off: Vec::new(),
            attach_errors,
            prog_ids: Vec::new(),
        })
    }

    #[test]
    fn tracepoints_left_off_are_named_in_an_attached_line() {
        let mut l = loaded(ProbeKind::Tcp, vec!["tcp_retransmit_skb"], vec![], vec![]);
        if let Ok(l) = &mut l {
            l.off = vec!["tcp_probe"];
        }
        let s = status_of(ProbeKind::Tcp, &l);
        assert_eq!(s.outcome, Outcome::Attached);
        assert_eq!(s.detail, "tcp_retransmit_skb (tcp_probe off)");
    }

    #[test]
    fn missing_tracepoint_is_one_partial_line_naming_what_still_works() {
        let r = loaded(
            ProbeKind::Tcp,
            vec!["tcp_retransmit_skb"],
            vec!["tcp_probe"],
            vec![],
        );
        let s = status_of(ProbeKind::Tcp, &r);
        assert_eq!(s.outcome, Outcome::Partial);
        assert_eq!(
            s.to_string(),
            "tcp: partial: tracepoint tcp_probe is not in this kernel; still attached: tcp_retransmit_skb"
        );
    }

    #[test]
    fn attach_failure_of_every_program_is_a_failed_line() {
        let r = loaded(
            ProbeKind::Net,
            vec![],
            vec![],
            vec![
                ("net_dev_xmit", "EINVAL".into()),
                ("netif_receive_skb", "EINVAL".into()),
            ],
        );
        let s = status_of(ProbeKind::Net, &r);
        assert_eq!(s.outcome, Outcome::Failed);
        assert_eq!(
            s.to_string(),
            "net: not loaded: attaching net_dev_xmit failed (EINVAL), attaching netif_receive_skb failed (EINVAL); the other probes are unaffected"
        );
    }

    #[test]
    fn no_tracepoints_and_layout_mismatch_are_failed_lines() {
        let s = status_of(
            ProbeKind::Numa,
            &Err(LoadFailure::NoTracepoints(vec!["sched_move_numa"])),
        );
        assert_eq!(
            s.to_string(),
            "numa: not loaded: none of its tracepoints (sched_move_numa) exist in this kernel's BTF; the other probes are unaffected"
        );
        let s = status_of(
            ProbeKind::Block,
            &Err(check_layout("rs_block", 8, 300, 8, 296).expect_err("mismatch")),
        );
        assert_eq!(s.outcome, Outcome::Failed);
        assert!(
            s.to_string()
                .contains("map rs_block: value size is 300 bytes but the loader expects 296"),
            "{s}"
        );
    }

    #[test]
    fn probe_set_can_move_to_a_collector_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<ProbeSet>();
    }

    #[test]
    fn fully_attached_lists_its_tracepoints() {
        let r = loaded(
            ProbeKind::Syscalls,
            vec!["sys_enter", "sys_exit"],
            vec![],
            vec![],
        );
        assert_eq!(
            status_of(ProbeKind::Syscalls, &r).to_string(),
            "syscalls: attached: sys_enter, sys_exit"
        );
    }
}
