//! The trace file's counters pages: per-reactor totals, per-qpair counters and latency
//! histograms, per-stage histograms. Reading is a copy of atomics (no locks, the reactors never
//! wait for us); ticks are converted to ns with the file's calibration (DESIGN §6, one clock).
//!
//! This collector also describes the target (reactors, listeners, namespaces, stages, settings)
//! from the file's description section.
//!
//! With records on it also reads each reactor's ring continuously in the background and keeps,
//! per tick, the slowest requests of the whole interval and a uniform sample of the rest
//! ([`crate::collect::records`] says what is dropped); the counters' histograms still count every
//! request.

use agent_core::hist::Hist;
use agent_core::sample::{
    Capability, ListenerInfo, NamespaceInfo, QpairSample, RdmaReactorSample, ReactorInfo,
    ReactorSample, Sample, TargetInfo,
};
use std::sync::Arc;

use trace_ring::TraceReader;

use super::records::Reader;

/// Reads the counters pages of one trace file.
pub struct RingCollector {
    reader: Arc<TraceReader>,
    gone_noted: bool,
    records: Option<Reader>,
}

impl RingCollector {
    /// Wraps an opened trace file.
    pub fn new(reader: TraceReader) -> RingCollector {
        RingCollector::shared(Arc::new(reader))
    }

    /// Wraps a trace file shared with the session (which checks its liveness each tick).
    pub fn shared(reader: Arc<TraceReader>) -> RingCollector {
        RingCollector {
            reader,
            gone_noted: false,
            records: None,
        }
    }

    /// Also reads request records from the rings, only when a sample is taken (at most one
    /// ring's worth per tick: a fixed cut for tests; the session reads continuously).
    pub fn with_records(reader: TraceReader) -> RingCollector {
        let reader = Arc::new(reader);
        RingCollector {
            records: Some(Reader::start(&reader, false)),
            ..RingCollector::shared(reader)
        }
    }

    /// Reads request records continuously in the background over a trace file shared with the
    /// session (see [`crate::collect::records`] for what is kept and dropped).
    pub fn shared_with_records(reader: Arc<TraceReader>) -> RingCollector {
        RingCollector {
            records: Some(Reader::start(&reader, true)),
            ..RingCollector::shared(reader)
        }
    }

    /// Records read from the rings so far (for tests waiting on the background reader).
    pub fn records_read(&self) -> u64 {
        self.records.as_ref().map_or(0, Reader::position)
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
                if !crate::lifecycle::quiet() {
                    eprintln!(
                        "ringside: target {} (pid {}) is gone; its last counters stay visible",
                        info.name, info.pid
                    );
                }
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
                    host: self.reader.qpair_host(r, slot),
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
        sample.requests = self
            .records
            .as_ref()
            .map(|r| std::sync::Arc::new(r.drain()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::records::{KEEP_EVERY, KEEP_SLOWEST};
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

    /// A one-reactor trace file with a request's three tracepoints: `tcp.capsule` (0x100,
    /// begin), `tcp.backend` (0x101, stage), `tcp.sent` (0x102, end).
    fn request_file(dir: &std::path::Path, name: &str, ring_records: u64) -> TraceFile {
        use trace_ring::description::{TpRole, TracepointDesc};
        let tp = |id: u16, name: &str, role| TracepointDesc {
            id,
            name: name.into(),
            group: "tcp".into(),
            args: Vec::new(),
            role,
        };
        let desc = Description {
            reactors: vec![ReactorDesc::default()],
            tracepoints: vec![
                tp(0x100, "tcp.capsule", TpRole::Begin),
                tp(0x101, "tcp.backend", TpRole::Stage),
                tp(0x102, "tcp.sent", TpRole::End),
            ],
            ..Description::default()
        };
        let layout = Layout {
            reactors: 1,
            ring_records,
            qpair_slots: 4,
            stages: 0,
        };
        TraceFile::create(dir, name, std::process::id(), &desc, &layout)
            .expect("create a trace file")
    }

    #[test]
    fn records_become_requests_the_slowest_kept_and_lost_ones_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tf = request_file(dir.path(), "records", 4096);
        let mut w = tf.take_reactor(0).expect("reactor 0");
        let reader = TraceReader::open(tf.path()).expect("open");
        let mut rc = RingCollector::with_records(reader);
        let mut info = TargetInfo::default();
        rc.describe(&mut info);
        let base = trace_ring::tsc::now();
        let per_us = tf.clock().ns_to_ticks(1_000).max(1);
        let tsc = |us: u64| base + us * per_us;
        // 1000 requests, every 10th ten times slower in its backend stage.
        for i in 0..1000u64 {
            let cid = (i % 64) as u32;
            let slow = if i % 10 == 0 { 10 } else { 1 };
            w.ring.record_at(tsc(i * 100), 0x100, 1, cid, 0, 0);
            w.ring.record_at(tsc(i * 100 + 2), 0x101, 1, cid, 0, 0);
            w.ring
                .record_at(tsc(i * 100 + 2 + 5 * slow), 0x102, 1, cid, 0, 0);
        }
        let mut s = Sample::default();
        rc.collect(&info, &mut s);
        let b = s.requests.expect("records read");
        assert_eq!(b.completed, 1000);
        assert_eq!(b.lost_records, 0);
        assert_eq!(
            b.records.len() as u64 + b.dropped,
            1000,
            "kept and dropped add up"
        );
        assert!(b.records.len() <= KEEP_SLOWEST + 1000 / KEEP_EVERY as usize + 1);
        let max = b.records.iter().map(|r| r.total_ns).max().unwrap_or(0);
        assert!(max > 0);
        let slow = b
            .records
            .iter()
            .filter(|r| r.stages.iter().any(|(n, _)| &**n == "tcp.sent"))
            .filter(|r| r.total_ns > max / 2)
            .count();
        assert_eq!(slow, 100, "every slow request is among the kept");
        // A second tick after the ring lapped: what was overwritten is counted, not read.
        for i in 0..3000u64 {
            let cid = (i % 64) as u32;
            w.ring
                .record_at(tsc(200_000 + i * 100), 0x100, 1, cid, 0, 0);
            w.ring
                .record_at(tsc(200_000 + i * 100 + 2), 0x102, 1, cid, 0, 0);
        }
        let mut s = Sample::default();
        rc.collect(&info, &mut s);
        let b = s.requests.expect("records read");
        // A lapped ring yields its newest 4095 records (the oldest slot may be mid-overwrite).
        assert_eq!(b.lost_records, 6000 - 4095);
        assert!(b.completed > 1000 && b.completed <= 2048, "{}", b.completed);
    }

    /// The background reader sees the whole interval: a ring of 64 records is written 10 times
    /// over between two samples, one slow request each time; every slow one is kept and nothing
    /// is lost (a reader taking one ring's worth per tick would see only the last).
    #[test]
    fn the_background_reader_keeps_every_slow_request_of_the_interval() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tf = request_file(dir.path(), "bg-records", 64);
        let mut w = tf.take_reactor(0).expect("reactor 0");
        let reader = TraceReader::open(tf.path()).expect("open");
        let mut rc = RingCollector::shared_with_records(Arc::new(reader));
        let mut info = TargetInfo::default();
        rc.describe(&mut info);
        let base = trace_ring::tsc::now();
        let per_us = tf.clock().ns_to_ticks(1_000).max(1);
        let tsc = |us: u64| base + us * per_us;
        let mut written = 0u64;
        for round in 0..10u64 {
            // 20 requests (60 records, nearly the whole ring), the first one 1 ms slow.
            for i in 0..20u64 {
                let at = round * 100_000 + i * 100;
                let slow = if i == 0 { 1_000 } else { 5 };
                let cid = i as u32;
                w.ring.record_at(tsc(at), 0x100, 1, cid, 0, 0);
                w.ring.record_at(tsc(at + 2), 0x101, 1, cid, 0, 0);
                w.ring.record_at(tsc(at + 2 + slow), 0x102, 1, cid, 0, 0);
            }
            written += 60;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while rc.records_read() < written {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the background reader read {} of {written} records in 30 s",
                    rc.records_read()
                );
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        let mut s = Sample::default();
        rc.collect(&info, &mut s);
        let b = s.requests.expect("records read");
        assert_eq!(b.lost_records, 0, "read before the writer lapped it");
        assert_eq!(b.completed, 200);
        let slow = b.records.iter().filter(|r| r.total_ns >= 900_000).count();
        assert_eq!(
            slow, 10,
            "every round's slow request is kept: {:?}",
            b.policy
        );
        assert_eq!(b.records.len() as u64 + b.dropped, 200);
        let r = b
            .records
            .iter()
            .find(|r| r.total_ns >= 900_000)
            .expect("a slow one");
        let names: Vec<&str> = r.stages.iter().map(|(n, _)| &**n).collect();
        assert_eq!(names, ["tcp.backend", "tcp.sent"]);
        assert!(
            r.stages[1].1 >= 900_000,
            "the time went in the last stage: {r:?}"
        );
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
