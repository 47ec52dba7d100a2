//! The trace file's counters pages: per-reactor totals, per-qpair counters and latency
//! histograms, per-stage histograms. Reading is a copy of atomics (no locks, the reactors never
//! wait for us); ticks are converted to ns with the file's calibration (DESIGN §6, one clock).
//!
//! This collector also describes the target (reactors, listeners, namespaces, stages, settings)
//! from the file's description section.

use agent_core::hist::Hist;
use agent_core::sample::{
    Capability, ListenerInfo, NamespaceInfo, QpairSample, ReactorInfo, ReactorSample, Sample,
    TargetInfo,
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
                transport: l.transport.clone(),
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
                    backend: n.backend.clone(),
                    device: n.device.clone(),
                })
            })
            .collect();
        info.stages = d.stages.clone();
        info.settings.cores = d.reactors.iter().map(|r| r.core).collect();
        if let Some(s) = &d.settings {
            info.settings.idle = s.idle.clone();
            info.settings.placement = s.placement.clone();
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
