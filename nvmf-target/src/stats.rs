//! Per-reactor statistics: plain monotonic counters with exactly one writer.
//!
//! Each reactor owns one [`ReactorStats`] (shared through an `Arc` with the RPC thread) and is the
//! only thread that writes it. A counter update is a Relaxed load plus a Relaxed store (no
//! locked read-modify-write: there is no other writer), so it costs the same as a plain add and
//! the RPC thread can read consistent-enough values at any time, even while the reactor runs.
//! Everything a reactor reports lives in this one struct (with a fixed-size table of qpair slots)
//! so that it can later move, unchanged in shape, into the shared-memory counters page.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde_json::{json, Value};

/// A monotonic (or gauge) counter written by a single thread.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Must only be called by the owning reactor.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }
    /// Subtracts `n` (gauges). Must only be called by the owning reactor.
    #[inline]
    pub fn sub(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_sub(n), Relaxed);
    }
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed);
    }
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

pub use crate::nvm::OpClass;

/// Statistics of one qpair slot. `qpair_id` 0 means the slot is free.
#[derive(Debug, Default)]
pub struct QpairStats {
    pub qpair_id: Counter,
    /// (cntlid << 16) | qid, valid once connected.
    pub ctrl_qid: Counter,
    pub submitted: Counter,
    pub completed: Counter,
    /// Commands received and not yet answered (gauge).
    pub outstanding: Counter,
    /// Highest `outstanding` seen.
    pub high_water: Counter,
}

impl QpairStats {
    #[inline]
    pub fn on_submit(&self) {
        self.submitted.add(1);
        let o = self.outstanding.get() + 1;
        self.outstanding.set(o);
        if o > self.high_water.get() {
            self.high_water.set(o);
        }
    }
    #[inline]
    pub fn on_complete(&self) {
        self.completed.add(1);
        self.outstanding.sub(1);
    }
    fn reset(&self, id: u64) {
        self.ctrl_qid.set(0);
        self.submitted.set(0);
        self.completed.set(0);
        self.outstanding.set(0);
        self.high_water.set(0);
        self.qpair_id.set(id);
    }
}

/// All counters of one reactor.
#[derive(Debug)]
pub struct ReactorStats {
    pub core: usize,
    /// Loop iterations.
    pub polls: Counter,
    /// Iterations that found work (a received PDU, a completion, a message, bytes sent).
    pub busy_polls: Counter,
    /// Wall time spent in busy iterations.
    pub busy_ns: Counter,
    /// Wall time spent in empty iterations (including sleeps under the sleep idle policy).
    pub idle_ns: Counter,
    /// Commands received, by [`OpClass`].
    pub cmds: [Counter; OpClass::COUNT],
    /// Commands completed with a non-success status.
    pub cmd_errors: Counter,
    pub bytes_read: Counter,
    pub bytes_written: Counter,
    pub pdus_received: Counter,
    pub pdus_sent: Counter,
    /// Live connections (gauge) and all connections ever accepted.
    pub connections: Counter,
    pub connections_total: Counter,
    /// Connections closed because of a transport or protocol error.
    pub connection_errors: Counter,
    pub qpairs: Box<[QpairStats]>,
    /// RDMA transport work (all zero on a reactor without RDMA connections).
    pub rdma: RdmaStats,
}

/// One unit of RDMA transport work, counted by [`RdmaStats::apply`] and mirrored into the
/// counters page (`trace_ring::CountersWriter::rdma_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RdmaEvent {
    /// One `ibv_poll_cq` call that returned this many completions.
    CqPoll(u64),
    /// One doorbell (`ibv_post_send`) posting a chain of this many send-queue work requests.
    PostSend(u64),
    /// Send-queue work requests completed (or flushed).
    SendDone(u64),
    /// Receive work requests posted to the SRQ, in this many doorbells.
    PostRecv { wrs: u64, doorbells: u64 },
    /// A receive buffer was consumed (a capsule arrived, or the receive was flushed).
    RecvConsumed,
    /// The SRQ was created and filled with this many buffers.
    SrqReady(u64),
}

/// RDMA counters of one reactor (see `ReactorCounters` in trace-ring for each meaning).
#[derive(Debug, Default)]
pub struct RdmaStats {
    pub cq_polls: Counter,
    pub cq_polls_nonempty: Counter,
    pub completions: Counter,
    pub doorbells: Counter,
    pub send_wrs: Counter,
    pub recv_wrs: Counter,
    /// Gauge: send-queue work requests posted, not yet completed.
    pub pending_wrs: Counter,
    pub pending_wrs_high_water: Counter,
    /// Gauge: receive buffers posted on the SRQ.
    pub srq_depth: Counter,
    pub srq_low_water: Counter,
    pub srq_size: Counter,
    /// Times the SRQ was left with no receive posted.
    pub srq_empty: Counter,
}

impl RdmaStats {
    /// Counts one event. Must only be called by the owning reactor.
    #[inline]
    pub fn apply(&self, e: RdmaEvent) {
        match e {
            RdmaEvent::CqPoll(n) => {
                self.cq_polls.add(1);
                if n > 0 {
                    self.cq_polls_nonempty.add(1);
                    self.completions.add(n);
                }
            }
            RdmaEvent::PostSend(n) => {
                self.doorbells.add(1);
                self.send_wrs.add(n);
                self.pending_wrs.add(n);
                if self.pending_wrs.get() > self.pending_wrs_high_water.get() {
                    self.pending_wrs_high_water.set(self.pending_wrs.get());
                }
            }
            RdmaEvent::SendDone(n) => self
                .pending_wrs
                .set(self.pending_wrs.get().saturating_sub(n)),
            RdmaEvent::PostRecv { wrs, doorbells } => {
                self.doorbells.add(doorbells);
                self.recv_wrs.add(wrs);
                self.srq_depth.add(wrs);
            }
            RdmaEvent::RecvConsumed => {
                let before = self.srq_depth.get();
                let d = before.saturating_sub(1);
                self.srq_depth.set(d);
                if d < self.srq_low_water.get() {
                    self.srq_low_water.set(d);
                }
                if before == 1 {
                    self.srq_empty.add(1);
                }
            }
            RdmaEvent::SrqReady(size) => {
                self.srq_size.set(size);
                self.srq_depth.set(size);
                self.srq_low_water.set(size);
            }
        }
    }

    /// A JSON view for `get_stats`, with the ratios an engineer reads first.
    pub fn to_json(&self) -> Value {
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        json!({
            "cq_polls": self.cq_polls.get(),
            "cq_polls_nonempty": self.cq_polls_nonempty.get(),
            "completions": self.completions.get(),
            "completions_per_nonempty_poll": ratio(self.completions.get(), self.cq_polls_nonempty.get()),
            "doorbells": self.doorbells.get(),
            "send_wrs": self.send_wrs.get(),
            "recv_wrs": self.recv_wrs.get(),
            "wrs_per_doorbell": ratio(self.send_wrs.get() + self.recv_wrs.get(), self.doorbells.get()),
            "pending_wrs": self.pending_wrs.get(),
            "pending_wrs_high_water": self.pending_wrs_high_water.get(),
            "srq_depth": self.srq_depth.get(),
            "srq_low_water": self.srq_low_water.get(),
            "srq_size": self.srq_size.get(),
            "srq_empty": self.srq_empty.get(),
        })
    }
}

impl ReactorStats {
    pub fn new(core: usize, max_qpairs: usize) -> Self {
        ReactorStats {
            core,
            polls: Counter::default(),
            busy_polls: Counter::default(),
            busy_ns: Counter::default(),
            idle_ns: Counter::default(),
            cmds: Default::default(),
            cmd_errors: Counter::default(),
            bytes_read: Counter::default(),
            bytes_written: Counter::default(),
            pdus_received: Counter::default(),
            pdus_sent: Counter::default(),
            connections: Counter::default(),
            connections_total: Counter::default(),
            connection_errors: Counter::default(),
            qpairs: (0..max_qpairs).map(|_| QpairStats::default()).collect(),
            rdma: RdmaStats::default(),
        }
    }

    /// Claims slot `slot` for a new qpair.
    pub fn open_qpair(&self, slot: usize, id: u64) {
        if let Some(q) = self.qpairs.get(slot) {
            q.reset(id);
        }
    }

    /// Frees slot `slot`.
    pub fn close_qpair(&self, slot: usize) {
        if let Some(q) = self.qpairs.get(slot) {
            q.qpair_id.set(0);
        }
    }

    /// A JSON view for `get_stats`.
    pub fn to_json(&self) -> Value {
        let cmds: serde_json::Map<String, Value> = OpClass::NAMES
            .iter()
            .zip(self.cmds.iter())
            .map(|(n, c)| ((*n).to_string(), json!(c.get())))
            .collect();
        let qpairs: Vec<Value> = self
            .qpairs
            .iter()
            .filter(|q| q.qpair_id.get() != 0)
            .map(|q| {
                let cq = q.ctrl_qid.get();
                json!({
                    "qpair_id": q.qpair_id.get(),
                    "cntlid": cq >> 16,
                    "qid": cq & 0xffff,
                    "submitted": q.submitted.get(),
                    "completed": q.completed.get(),
                    "outstanding": q.outstanding.get(),
                    "high_water": q.high_water.get(),
                })
            })
            .collect();
        json!({
            "core": self.core,
            "polls": self.polls.get(),
            "busy_polls": self.busy_polls.get(),
            "busy_ns": self.busy_ns.get(),
            "idle_ns": self.idle_ns.get(),
            "commands": cmds,
            "command_errors": self.cmd_errors.get(),
            "bytes_read": self.bytes_read.get(),
            "bytes_written": self.bytes_written.get(),
            "pdus_received": self.pdus_received.get(),
            "pdus_sent": self.pdus_sent.get(),
            "connections": self.connections.get(),
            "connections_total": self.connections_total.get(),
            "connection_errors": self.connection_errors.get(),
            "qpairs": qpairs,
            "rdma": self.rdma.to_json(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn high_water_tracks_peak() {
        let s = ReactorStats::new(0, 4);
        s.open_qpair(1, 77);
        let q = &s.qpairs[1];
        q.on_submit();
        q.on_submit();
        q.on_complete();
        q.on_submit();
        q.on_complete();
        assert_eq!(q.outstanding.get(), 1);
        assert_eq!(q.high_water.get(), 2);
        let j = s.to_json();
        assert_eq!(j["qpairs"][0]["qpair_id"], 77);
        assert_eq!(j["qpairs"][0]["submitted"], 3);
        s.close_qpair(1);
        assert_eq!(s.to_json()["qpairs"].as_array().map(Vec::len), Some(0));
    }

    #[test]
    fn rdma_events_keep_gauges_and_ratios() {
        let s = ReactorStats::new(0, 4);
        let r = &s.rdma;
        r.apply(RdmaEvent::PostRecv {
            wrs: 64,
            doorbells: 2,
        });
        r.apply(RdmaEvent::SrqReady(64));
        r.apply(RdmaEvent::CqPoll(0));
        r.apply(RdmaEvent::CqPoll(4));
        for _ in 0..4 {
            r.apply(RdmaEvent::RecvConsumed);
        }
        r.apply(RdmaEvent::PostSend(2));
        r.apply(RdmaEvent::PostSend(2));
        r.apply(RdmaEvent::SendDone(3));
        r.apply(RdmaEvent::SendDone(5)); // more than pending: the gauge stops at 0
        r.apply(RdmaEvent::PostRecv {
            wrs: 4,
            doorbells: 1,
        });
        let j = s.to_json();
        let rd = &j["rdma"];
        assert_eq!(rd["cq_polls"], 2);
        assert_eq!(rd["completions_per_nonempty_poll"], 4.0);
        assert_eq!(rd["pending_wrs"], 0);
        assert_eq!(rd["pending_wrs_high_water"], 4);
        assert_eq!(
            (rd["srq_depth"].clone(), rd["srq_low_water"].clone()),
            (64.into(), 60.into())
        );
        // 4 send WRs + 68 receive WRs over 2 + 2 + 1 doorbells.
        assert_eq!(rd["wrs_per_doorbell"], 72.0 / 5.0);
        assert_eq!(rd["srq_empty"], 0);
        for _ in 0..64 {
            r.apply(RdmaEvent::RecvConsumed);
        }
        r.apply(RdmaEvent::RecvConsumed); // nothing posted: no second count
        let j = s.to_json();
        assert_eq!(
            (
                j["rdma"]["srq_depth"].clone(),
                j["rdma"]["srq_empty"].clone()
            ),
            (0.into(), 1.into())
        );
    }
}
