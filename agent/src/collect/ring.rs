//! The trace file's counters pages: per-reactor totals, per-qpair counters and latency
//! histograms, per-stage histograms. Reading is a copy of atomics (no locks, the reactors never
//! wait for us); ticks are converted to ns with the file's calibration (DESIGN §6, one clock).
//!
//! This collector also describes the target (reactors, listeners, namespaces, stages, settings)
//! from the file's description section.

use agent_core::hist::Hist;
use agent_core::sample::{
    Capability, ListenerInfo, NamespaceInfo, QpairSample, RdmaReactorSample, ReactorInfo,
    ReactorSample, Sample, TargetInfo,
};
use trace_ring::TraceReader;

/// Reads the counters pages of one trace file.
pub struct RingCollector {
    reader: TraceReader,
    gone_noted: bool,
}

impl RingCollector {
    /// Wraps an opened trace file.
    pub fn new(reader: TraceReader) -> RingCollector {
        RingCollector {
            reader,
            gone_noted: false,
        }
    }

    /// The reader (for `ringside trace --kernel` and tests).
    pub fn reader(&self) -> &TraceReader {
        &self.reader
    }
}

/// The RDMA words of a reactor's counters (ABI 1.3; read as zero from older files), `None` when
/// all are zero: a TCP-only reactor carries no RDMA part in samples and recordings.
fn rdma_of(t: &trace_ring::layout::ReactorCounters) -> Option<RdmaReactorSample> {
    let r = RdmaReactorSample {
        cq_polls: t.rdma_cq_polls,
        cq_polls_nonempty: t.rdma_cq_polls_nonempty,
        completions: t.rdma_completions,
        doorbells: t.rdma_doorbells,
        send_wrs: t.rdma_send_wrs,
        recv_wrs: t.rdma_recv_wrs,
        pending_wrs: t.rdma_pending_wrs,
        pending_wrs_high_water: t.rdma_pending_wrs_high_water,
        srq_depth: t.rdma_srq_depth,
        srq_low_water: t.rdma_srq_low_water,
        srq_size: t.rdma_srq_size,
        srq_empty: t.rdma_srq_empty,
    };
    (!r.is_zero()).then_some(r)
}

impl super::Collector for RingCollector {
    fn name(&self) -> &'static str {
        "trace-ring"
    }

    fn capability(&self) -> Capability {
        Capability {
            name: "trace-ring".into(),
            available: true,
            note: format!(
                "trace file {} (pid {}, {} reactors)",
                self.reader.path().display(),
                self.reader.header().pid,
                self.reader.reactors()
            ),
        }
    }

    fn describe(&mut self, info: &mut TargetInfo) {
        let d = self.reader.description();
        info.name = self.reader.name().to_string();
        info.pid = self.reader.header().pid;
        info.reactors = d
            .reactors
            .iter()
            .map(|r| ReactorInfo {
                index: r.index,
                core: r.core,
                tid: r
                    .tid
                    .or_else(|| self.reader.writer_thread(r.index).map(|(tid, _)| tid)),
            })
            .collect();
        info.listeners = d
            .listeners
            .iter()
            .map(|l| ListenerInfo {
                transport: l.transport,
                address: l.address.clone(),
                netdev: l.netdev.clone(),
            })
            .collect();
        info.namespaces = d
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
            .collect();
        info.stages = d.stages.clone();
        info.settings.cores = d.reactors.iter().map(|r| r.core).collect();
        if let Some(s) = &d.settings {
            info.settings.idle = s.idle;
            info.settings.placement = s.placement;
            info.settings.max_queue_depth = s.max_queue_depth;
            info.settings.max_io_queues = s.max_io_queues;
        }
    }

    fn collect(&mut self, info: &TargetInfo, sample: &mut Sample) {
        let clock = self.reader.clock();
        if !self.reader.producer_alive() {
            // Counters stay readable after the target exits; keep reporting them (the last
            // window will show zero rates) but say it once on stderr.
            if !self.gone_noted {
                self.gone_noted = true;
                eprintln!(
                    "ringside: target {} (pid {}) is gone; its last counters stay visible",
                    info.name, info.pid
                );
            }
        }
        let now_tsc = clock.from_mono_ns(sample.t_ns);
        for r in 0..self.reader.reactors() {
            let Some(c) = self.reader.counters(r) else {
                continue;
            };
            let t = &c.totals;
            let ns = |ticks: u64| clock.ticks_to_ns(ticks);
            let mut rs = ReactorSample {
                index: r,
                polls: t.polls,
                busy_polls: t.busy_polls,
                busy_ns: ns(t.busy_tsc),
                idle_ns: ns(t.idle_tsc),
                last_poll_age_ns: if t.last_poll_tsc == 0 {
                    0
                } else {
                    ns(now_tsc.saturating_sub(t.last_poll_tsc))
                },
                cmds_read: t.cmds_read,
                cmds_write: t.cmds_write,
                cmds_other: t.cmds_other,
                cmds_admin: t.cmds_admin,
                bytes_read: t.bytes_read,
                bytes_write: t.bytes_write,
                buffer_waits: t.buffer_waits,
                backend_submitted: t.backend_submitted,
                backend_completed: t.backend_completed,
                backend_inflight: t.backend_inflight,
                backend_inflight_high_water: t.backend_inflight_high_water,
                connections_opened: t.connections_opened,
                connections_closed: t.connections_closed,
                errors: t.errors_transport + t.errors_protocol + t.errors_backend + t.errors_status,
                connects_refused: t.connects_refused,
                protocol_closes: t.protocol_closes,
                rdma: rdma_of(t),
                ..ReactorSample::default()
            };
            for (slot, q) in c.qpairs.iter().enumerate() {
                if q.generation == 0 {
                    continue; // never used
                }
                let Ok(slot) = u16::try_from(slot) else { break };
                rs.qpairs.push(QpairSample {
                    slot,
                    generation: q.generation,
                    ident: q.ident,
                    submitted: q.submitted,
                    completed: q.completed,
                    outstanding: q.outstanding,
                    high_water: q.high_water,
                    bytes: q.bytes,
                    errors: q.errors,
                    queue_size: u32::try_from(q.queue_size).ok().filter(|&s| s > 0),
                    latency: self
                        .reader
                        .qpair_histogram(r, slot)
                        .map(Hist::from_histogram)
                        .unwrap_or_default(),
                });
            }
            rs.stages = (0..info.stages.len() as u32)
                .map(|s| {
                    self.reader
                        .stage_histogram(r, s)
                        .map(Hist::from_histogram)
                        .unwrap_or_default()
                })
                .collect();
            sample.reactors.push(rs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::Collector;
    use trace_ring::description::ReactorDesc;
    use trace_ring::{Description, Layout, TraceFile};

    fn file(dir: &std::path::Path) -> TraceFile {
        let desc = Description {
            reactors: (0..2)
                .map(|i| ReactorDesc {
                    index: i,
                    core: i,
                    ..ReactorDesc::default()
                })
                .collect(),
            ..Description::default()
        };
        let layout = Layout {
            reactors: 2,
            ring_records: 64,
            qpair_slots: 4,
            stages: 0,
        };
        TraceFile::create(dir, "rdma-ring", std::process::id(), &desc, &layout)
            .expect("create a trace file")
    }

    #[test]
    fn rdma_words_reach_the_sample_and_a_tcp_reactor_has_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tf = file(dir.path());
        let mut w = tf.take_reactor(0).expect("reactor 0");
        let c = &mut w.counters;
        c.rdma_post_recv(512, 16);
        c.rdma_srq_ready(512);
        c.rdma_cq_poll(0);
        c.rdma_cq_poll(4);
        for _ in 0..4 {
            c.rdma_recv_consumed();
        }
        c.rdma_post_send(2);
        c.rdma_post_send(2);
        c.rdma_send_done(2);

        let reader = TraceReader::open(tf.path()).expect("open");
        let mut rc = RingCollector::new(reader);
        let mut info = TargetInfo::default();
        rc.describe(&mut info);
        let mut s = Sample {
            t_ns: trace_ring::tsc::mono_ns(),
            ..Sample::default()
        };
        rc.collect(&info, &mut s);
        assert_eq!(s.reactors.len(), 2, "{:?}", s.reactors);
        let r = s.reactors[0]
            .rdma
            .as_ref()
            .expect("reactor 0 did RDMA work");
        assert_eq!((r.cq_polls, r.cq_polls_nonempty, r.completions), (2, 1, 4));
        assert_eq!((r.doorbells, r.send_wrs, r.recv_wrs), (18, 4, 512));
        assert_eq!((r.pending_wrs, r.pending_wrs_high_water), (2, 4));
        assert_eq!((r.srq_size, r.srq_depth, r.srq_low_water), (512, 508, 508));
        assert_eq!(s.reactors[1].rdma, None, "a reactor without RDMA work");
        let json = serde_json::to_string(&s.reactors[1]).expect("json");
        assert!(
            !json.contains("rdma"),
            "no rdma key for a TCP reactor: {json}"
        );
    }
}
