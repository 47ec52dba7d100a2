//! The target's side of the shared-memory trace file (crate `trace-ring`, DESIGN §2 "Tracing"):
//! the tracepoint catalog, the description written at start-up, and [`Tracer`], the per-reactor
//! handle the I/O path records through.
//!
//! Ownership: [`create`] runs once in `Target::start` and returns the `TraceFile` (kept by the
//! `Target`; dropping it marks the file exited and unlinks it) plus one `ReactorWriters` per
//! reactor, each moved to its reactor thread inside that reactor's [`Tracer`]. A `Tracer` is used
//! by its reactor only; it sits in the reactor's `Ctx`, which the connection code borrows
//! immutably in many places, so the writers live in a `RefCell` (a flag check, no lock). The
//! hot path neither allocates nor formats: a disabled group costs one load and a branch, an
//! enabled tracepoint 32 bytes of stores stamped with the last TSC the reactor read (once per
//! poll, again after backend completions and socket writes, so a request's stages stay ordered).
#![forbid(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use trace_ring::description::{
    Description, DeviceQueueDesc, GroupDesc, ListenerDesc, NamespaceDesc, ReactorDesc,
    SettingsDesc, SubsystemDesc, Transport,
};
use trace_ring::{CountersWriter, Layout, ReactorWriters, TraceFile};

use crate::config::Config;
use crate::subsystem::Subsystem;
pub use crate::tracepoints::*;

use crate::placement::{netdev_of, numa_node_of_cpu, numa_node_of_netdev};

/// Builds the description of a target about to start.
pub fn describe(
    config: &Config,
    listeners: &[SocketAddr],
    subsystems: &[std::sync::Arc<Subsystem>],
) -> Description {
    Description {
        groups: GROUPS
            .iter()
            .map(|(bit, name)| GroupDesc {
                bit: *bit,
                name: (*name).into(),
            })
            .collect(),
        tracepoints: catalog(),
        stages: STAGES.to_vec(),
        reactors: config
            .cores
            .iter()
            .enumerate()
            .map(|(i, c)| ReactorDesc {
                index: i as u32,
                core: c.0 as u32,
                numa_node: numa_node_of_cpu(c.0),
                tid: None, // published by the reactor thread when it attaches
            })
            .collect(),
        listeners: listeners
            .iter()
            .map(|a| (Transport::Tcp, *a))
            .chain(
                config
                    .listeners
                    .iter()
                    .filter(|l| l.kind() == Transport::Rdma)
                    .map(|l| (Transport::Rdma, SocketAddr::new(l.addr, l.port))),
            )
            .map(|(transport, a)| ListenerDesc {
                transport,
                address: a.to_string(),
                netdev: netdev_of(&a),
                link_speed_mbps: None,
                numa_node: netdev_of(&a).and_then(|d| numa_node_of_netdev(&d)),
            })
            .collect(),
        subsystems: subsystems
            .iter()
            .map(|s| SubsystemDesc {
                nqn: s.nqn.clone(),
                namespaces: s
                    .namespaces()
                    .iter()
                    .map(|n| {
                        // The kernel block device the I/O reaches (uring), for the agent's
                        // /sys/block/<device>/stat collector and NUMA checks.
                        let dev = n.bdev.device();
                        NamespaceDesc {
                            nsid: n.nsid,
                            backend: n.kind.abi(),
                            device: dev.as_ref().map(|d| d.name.clone()),
                            size_bytes: Some(n.num_blocks * u64::from(n.block_size)),
                            block_size: Some(n.block_size),
                            numa_node: dev.and_then(|d| d.numa_node),
                            device_path: n.bdev.device_path(),
                            device_queues: config
                                .cores
                                .iter()
                                .enumerate()
                                .filter_map(|(i, c)| {
                                    Some(DeviceQueueDesc {
                                        reactor: i as u32,
                                        qid: n.bdev.device_queue(i, c.0)?,
                                    })
                                })
                                .collect(),
                        }
                    })
                    .collect(),
            })
            .collect(),
        settings: Some(SettingsDesc {
            idle: Some(config.idle.abi()),
            placement: Some(config.placement.abi()),
            max_queue_depth: Some(config.limits.max_queue_depth),
            max_io_queues: Some(config.limits.max_io_queues),
        }),
    }
}

/// Creates the counters page (and trace rings) and one writer set per reactor: the published
/// trace file when tracing is on; when it is off, or the file cannot be published (one line
/// says why), an anonymous one (a memfd nobody else finds: rings of 2 records, every group
/// off), so the counters — which `get_stats` reads — exist all the same. `Err` (one lowercase
/// line) only when not even the anonymous file can be made.
pub fn create(
    config: &Config,
    listeners: &[SocketAddr],
    subsystems: &[std::sync::Arc<Subsystem>],
) -> Result<(TraceFile, Vec<ReactorWriters>), String> {
    let desc = describe(config, listeners, subsystems);
    let published = if config.trace.enabled {
        match publish(config, &desc) {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!("ringside-tgt: tracing off: {e}");
                None
            }
        }
    } else {
        None
    };
    let tf = match published {
        Some(f) => f,
        None => {
            let layout = Layout {
                ring_records: 2,
                ..layout(config)
            };
            let tf = TraceFile::create_anonymous(
                &config.name,
                std::process::id(),
                &desc,
                &layout,
                trace_ring::Clock::calibrated(),
            )
            .map_err(|e| format!("cannot create the counters page: {e}"))?;
            tf.control().set_enabled_mask(0);
            tf
        }
    };
    let mut writers = Vec::with_capacity(config.cores.len());
    for i in 0..config.cores.len() {
        writers.push(
            tf.take_reactor(i as u32)
                .map_err(|e| format!("cannot set up trace ring {i}: {e}"))?,
        );
    }
    Ok((tf, writers))
}

/// The file's sizing: one ring and counters section per reactor, and a qpair slot for every
/// connection a reactor may hold (so `get_stats` lists each), at least `trace.qpair_slots`.
fn layout(config: &Config) -> Layout {
    let t = &config.trace;
    Layout {
        reactors: config.cores.len() as u32,
        ring_records: t.ring_records,
        qpair_slots: t
            .qpair_slots
            .max(config.limits.max_connections_per_reactor)
            .min(trace_ring::layout::MAX_QPAIR_SLOTS),
        stages: STAGES.len() as u32,
    }
}

/// Creates and publishes the trace file (`[trace]` dir, mode, group and enabled groups).
fn publish(config: &Config, desc: &Description) -> Result<TraceFile, String> {
    let t = &config.trace;
    let dir: PathBuf = t
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(trace_ring::DEFAULT_DIR));
    let mask = mask_of(&t.groups)?;
    let path = trace_ring::instance_path(&dir, &config.name);
    let (mode, gid) = t.access().map_err(|e| e.to_string())?;
    let tf = TraceFile::create_with_access(
        Path::new(&dir),
        &config.name,
        std::process::id(),
        desc,
        &layout(config),
        trace_ring::Clock::calibrated(),
        trace_ring::Access { mode, gid },
    )
    .map_err(|e| format!("cannot create trace file {}: {e}", path.display()))?;
    if let Some(pid) = tf.reclaimed_stale_pid() {
        eprintln!(
            "ringside-tgt: replaced the stale trace file {} of dead process {pid}",
            path.display()
        );
    }
    tf.control().set_enabled_mask(mask);
    Ok(tf)
}

/// One reactor's entry of `get_stats`, read from its counters page: the totals, the connected
/// qpairs (identity `cntlid << 16 | qid`; slots not yet connected or closed have identity 0 and
/// are left out) and the RDMA transport work with the ratios an engineer reads first. Times are
/// converted from TSC ticks with the file's clock.
pub fn reactor_json(
    core: usize,
    c: &trace_ring::CountersSnapshot,
    clock: trace_ring::Clock,
) -> Value {
    let t = &c.totals;
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let qpairs: Vec<Value> = c
        .qpairs
        .iter()
        .enumerate()
        .filter(|(_, q)| q.ident != 0)
        .map(|(slot, q)| {
            json!({
                "slot": slot,
                "generation": q.generation,
                "cntlid": q.ident >> 16,
                "qid": q.ident & 0xffff,
                "queue_size": q.queue_size,
                "submitted": q.submitted,
                "completed": q.completed,
                "outstanding": q.outstanding,
                "high_water": q.high_water,
                "bytes": q.bytes,
                "errors": q.errors,
            })
        })
        .collect();
    json!({
        "core": core,
        "polls": t.polls,
        "busy_polls": t.busy_polls,
        "busy_ns": clock.ticks_to_ns(t.busy_tsc),
        "idle_ns": clock.ticks_to_ns(t.idle_tsc),
        "commands": {
            "read": t.cmds_read,
            "write": t.cmds_write,
            "other": t.cmds_other,
            "admin": t.cmds_admin,
        },
        "command_errors": t.errors_status,
        "bytes_read": t.bytes_read,
        "bytes_written": t.bytes_write,
        "connections": t.connections_opened.saturating_sub(t.connections_closed),
        "connections_total": t.connections_opened,
        "connection_errors": t.errors_transport + t.errors_protocol,
        "connects_refused": t.connects_refused,
        "protocol_closes": t.protocol_closes,
        "qpairs": qpairs,
        "rdma": {
            "cq_polls": t.rdma_cq_polls,
            "cq_polls_nonempty": t.rdma_cq_polls_nonempty,
            "completions": t.rdma_completions,
            "completions_per_nonempty_poll": ratio(t.rdma_completions, t.rdma_cq_polls_nonempty),
            "doorbells": t.rdma_doorbells,
            "send_wrs": t.rdma_send_wrs,
            "recv_wrs": t.rdma_recv_wrs,
            "wrs_per_doorbell": ratio(t.rdma_send_wrs + t.rdma_recv_wrs, t.rdma_doorbells),
            "pending_wrs": t.rdma_pending_wrs,
            "pending_wrs_high_water": t.rdma_pending_wrs_high_water,
            "srq_depth": t.rdma_srq_depth,
            "srq_low_water": t.rdma_srq_low_water,
            "srq_size": t.rdma_srq_size,
            "srq_empty": t.rdma_srq_empty,
        },
    })
}

/// One reactor's trace handle (see the module doc). Without a trace file every call is a
/// branch on `None`.
pub struct Tracer {
    w: Option<RefCell<ReactorWriters>>,
    /// The latest TSC this reactor read.
    tsc: Cell<u64>,
}

impl Tracer {
    pub fn new(w: Option<ReactorWriters>) -> Tracer {
        Tracer {
            w: w.map(RefCell::new),
            tsc: Cell::new(0),
        }
    }

    /// Whether a trace file is being written.
    #[inline]
    pub fn active(&self) -> bool {
        self.w.is_some()
    }

    /// Reads the TSC (only when tracing) and makes it the stamp of what follows.
    #[inline]
    pub fn refresh(&self) -> u64 {
        if self.w.is_some() {
            self.tsc.set(trace_ring::tsc::now());
        }
        self.tsc.get()
    }

    /// The latest TSC read.
    #[inline]
    pub fn tsc(&self) -> u64 {
        self.tsc.get()
    }

    /// Records a tracepoint stamped with the latest TSC read.
    #[inline]
    pub fn tp(&self, tpoint: u16, qpair: u16, cid: u16, arg0: u64, arg1: u64) {
        self.with(|w| w.tp(tpoint, qpair, cid, arg0, arg1));
    }

    /// Updates the counters page.
    #[inline]
    pub fn counters(&self, f: impl FnOnce(&mut CountersWriter)) {
        self.with(|w| f(w.counters()));
    }

    /// Records and counts several things under one borrow of the writers (the hot path's
    /// groups: a command's arrival, a batch of responses on the wire, a poll's end). Not
    /// called without a trace file.
    #[inline]
    pub fn with(&self, f: impl FnOnce(&mut Writers<'_>)) {
        if let Some(w) = &self.w {
            if let Ok(mut w) = w.try_borrow_mut() {
                f(&mut Writers {
                    w: &mut w,
                    tsc: self.tsc.get(),
                });
            }
        }
    }

    /// This reactor's totals in the counters page (all zero without one).
    pub fn totals(&self) -> trace_ring::ReactorCounters {
        self.w
            .as_ref()
            .and_then(|w| w.try_borrow().ok().map(|w| w.counters.totals()))
            .unwrap_or_default()
    }

    /// Publishes the reactor thread's tid and core in its ring.
    pub fn attach(&self, core: u32) {
        if let Some(w) = &self.w {
            if let Ok(mut w) = w.try_borrow_mut() {
                w.ring.attach_current_thread(Some(core));
            }
        }
    }
}

/// The writers of one reactor, borrowed once for a group of records and counter updates
/// ([`Tracer::with`]); records are stamped with the TSC the tracer read last.
pub struct Writers<'a> {
    w: &'a mut ReactorWriters,
    tsc: u64,
}

impl Writers<'_> {
    /// Records a tracepoint stamped with the latest TSC read.
    #[inline]
    pub fn tp(&mut self, tpoint: u16, qpair: u16, cid: u16, arg0: u64, arg1: u64) {
        self.w
            .ring
            .record_at(self.tsc, tpoint, qpair, u32::from(cid), arg0, arg1);
    }

    /// The counters page.
    #[inline]
    pub fn counters(&mut self) -> &mut CountersWriter {
        &mut self.w.counters
    }

    /// The latest TSC read (the stamp of these records).
    #[inline]
    pub fn tsc(&self) -> u64 {
        self.tsc
    }
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("active", &self.active())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The group table as the description lists it.
    fn groups() -> Vec<GroupDesc> {
        GROUPS
            .iter()
            .map(|(bit, name)| GroupDesc {
                bit: *bit,
                name: (*name).into(),
            })
            .collect()
    }

    #[test]
    fn catalog_is_consistent_and_has_one_begin_and_one_end() {
        let d = Description {
            groups: groups(),
            tracepoints: catalog(),
            ..Description::default()
        };
        d.validate().expect("the catalog should validate");
        let tcp: Vec<_> = d.tracepoints.iter().filter(|t| t.group == "tcp").collect();
        assert_eq!(
            tcp.iter()
                .filter(|t| t.role == trace_ring::description::TpRole::Begin)
                .count(),
            1
        );
        assert_eq!(
            tcp.iter()
                .filter(|t| t.role == trace_ring::description::TpRole::End)
                .count(),
            1
        );
        for t in &d.tracepoints {
            assert_eq!(d.group_name(t.id), Some(t.group.as_str()), "{}", t.name);
            assert!(t.name.starts_with(&format!("{}.", t.group)), "{}", t.name);
        }
        assert_eq!(
            d.tracepoint(TP_RESPONSE_SENT).map(|t| t.name.as_str()),
            Some("tcp.response_sent")
        );
    }

    #[test]
    fn group_masks_round_trip_and_reject_unknown_names() {
        let all: Vec<String> = GROUPS.iter().map(|(_, n)| n.to_string()).collect();
        let m = mask_of(&all).expect("known groups");
        assert_eq!(names_of(m)[..3], ["tcp", "qpair", "poll"]);
        assert_eq!(mask_of(&[]), Ok(0));
        assert!(mask_of(&["disk".into()]).unwrap_err().contains("disk"));
    }

    #[test]
    fn a_group_under_one_borrow_lands_every_record_and_count_with_the_latest_stamp() {
        let desc = Description {
            groups: groups(),
            tracepoints: catalog(),
            stages: STAGES.to_vec(),
            ..Description::default()
        };
        let layout = Layout {
            reactors: 1,
            ring_records: 16,
            qpair_slots: 4,
            stages: STAGES.len() as u32,
        };
        let tf = TraceFile::create_anonymous(
            "with-test",
            std::process::id(),
            &desc,
            &layout,
            trace_ring::Clock::calibrated(),
        )
        .expect("anonymous trace file");
        tf.control().set_enabled_mask(u64::MAX);
        let t = Tracer::new(Some(tf.take_reactor(0).expect("reactor 0")));
        let stamp = t.refresh();
        t.counters(|c| c.qpair_bind(2, 0));
        t.with(|w| {
            assert_eq!(w.tsc(), stamp);
            w.tp(TP_CAPSULE_RECEIVED, 2, 7, 0x02, 4096);
            w.counters().qpair_submit(2);
            w.tp(TP_RESPONSE_SENT, 2, 7, 0, 0);
        });
        // A nested use while the group holds the writers is dropped, not a panic.
        t.with(|_| t.tp(TP_RESPONSE_QUEUED, 2, 8, 0, 0));

        let r = tf.reader().expect("own reader");
        let mut out = Vec::new();
        let mut c = r
            .cursor(0, trace_ring::Start::Oldest)
            .expect("cursor of reactor 0");
        c.poll(&mut out);
        let got: Vec<(u64, u16, u32)> = out.iter().map(|x| (x.tsc, x.tpoint, x.cid)).collect();
        assert_eq!(
            got,
            [
                (stamp, TP_CAPSULE_RECEIVED, 7),
                (stamp, TP_RESPONSE_SENT, 7)
            ]
        );
        let q = r.counters(0).expect("counters").qpairs[2];
        assert_eq!((q.submitted, q.outstanding), (1, 1));
    }

    #[test]
    fn a_tracer_without_a_file_is_inert() {
        let t = Tracer::new(None);
        assert!(!t.active());
        assert_eq!(t.refresh(), 0, "no TSC read without a trace file");
        t.tp(TP_CAPSULE_RECEIVED, 0, 1, 2, 3);
        let mut called = false;
        t.counters(|_| called = true);
        assert!(!called);
    }
}
