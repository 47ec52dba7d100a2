//! Requests rebuilt from SPDK's NVMe/TCP tracepoints: each `TCP_REQ_NEW` … `TCP_REQ_COMPLETED`
//! pair (same request object) gives a request's time at the target and its qpair (the entry's
//! owner); `TCP_REQ_NEW`'s `qd` argument is the qpair's depth when the request arrived. Also what
//! the trace says about the reactor: requests that waited for a buffer, and stalls (no entry at
//! all on an lcore for milliseconds while requests were ready for its next step).
//!
//! Threading: owned by the SPDK source on the sampling thread. Open requests carry over between
//! calls (a request may start in one read of the ring and complete in the next); everything else
//! is taken per sample with [`ProfileBuilder::take`].

use std::collections::HashMap;

use agent_core::spdk::TraceProfile;

use super::trace::{Entry, Header};

/// A gap without any entry on an lcore, with requests ready for it, that counts as a stall:
/// the reactor's loop records something for every request step within microseconds; a
/// millisecond with work waiting means the thread was not running.
pub const STALL_MIN_NS: u64 = 1_000_000;

/// Requests tracked at once (a qpair that vanished leaves its requests open; they are dropped
/// oldest first beyond this).
pub const MAX_OPEN: usize = 1 << 16;

/// Latencies kept per qpair per sample (the most recent ones).
pub const MAX_LATENCIES: usize = 4096;

/// What the trace says about one qpair (trace owner) in one sample.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QpairTrace {
    /// Time at the target of the requests that completed (ns), oldest first.
    pub latencies: Vec<u64>,
    /// Largest depth seen when a request arrived (`TCP_REQ_NEW`'s `qd`).
    pub max_qd: u64,
}

#[derive(Clone, Copy, Debug)]
struct Open {
    start: u64,
    owner: u16,
    lcore: u32,
    ready: bool,
    need_buffer_seq: Option<u64>,
    seq: u64,
}

/// The tracepoint ids this module uses, looked up by name (ids differ between SPDK versions).
#[derive(Clone, Debug, Default)]
struct Ids {
    new: Option<u16>,
    need_buffer: Option<u16>,
    have_buffer: Option<u16>,
    completed: Option<u16>,
    /// Steps after which the reactor itself acts next (received, buffered, ready to execute,
    /// executed, ready to complete).
    ready: Vec<u16>,
    /// Every request-state tracepoint of the TCP transport.
    request: Vec<u16>,
}

/// Builds [`TraceProfile`]s and per-qpair request figures from decoded entries.
#[derive(Debug)]
pub struct ProfileBuilder {
    ids: Ids,
    tsc_rate: u64,
    open: HashMap<u64, Open>,
    seq: u64,
    /// Per lcore: entries seen (sequence), last TSC, requests ready now.
    lcores: HashMap<u32, (u64, u64, u32)>,
    per_owner: HashMap<u16, QpairTrace>,
    first_tsc: Option<u64>,
    last_tsc: u64,
    requests: u64,
    buffer_waits: u64,
    stall_ticks: u64,
    longest: Option<(u64, u32, u32)>,
}

impl ProfileBuilder {
    /// A builder for a file with this header.
    pub fn new(h: &Header) -> ProfileBuilder {
        let id = |n: &str| h.tpoint_named(n).map(|t| t.id);
        let ready = [
            "TCP_REQ_NEW",
            "TCP_REQ_HAVE_BUFFER",
            "TCP_REQ_RDY_TO_EXECUTE",
            "TCP_REQ_EXECUTED",
            "TCP_REQ_RDY_TO_COMPLETE",
        ]
        .iter()
        .filter_map(|n| id(n))
        .collect();
        let request = h
            .tpoints
            .values()
            .filter(|t| t.name.starts_with("TCP_REQ_"))
            .map(|t| t.id)
            .collect();
        ProfileBuilder {
            ids: Ids {
                new: id("TCP_REQ_NEW"),
                need_buffer: id("TCP_REQ_NEED_BUFFER"),
                have_buffer: id("TCP_REQ_HAVE_BUFFER"),
                completed: id("TCP_REQ_COMPLETED"),
                ready,
                request,
            },
            tsc_rate: h.tsc_rate.max(1),
            open: HashMap::new(),
            seq: 0,
            lcores: HashMap::new(),
            per_owner: HashMap::new(),
            first_tsc: None,
            last_tsc: 0,
            requests: 0,
            buffer_waits: 0,
            stall_ticks: 0,
            longest: None,
        }
    }

    /// Whether the file registers the TCP request tracepoints at all.
    pub fn understands_requests(&self) -> bool {
        self.ids.new.is_some() && self.ids.completed.is_some()
    }

    fn ns(&self, ticks: u64) -> u64 {
        (u128::from(ticks) * 1_000_000_000 / u128::from(self.tsc_rate)) as u64
    }

    /// Feeds entries in time order.
    pub fn feed(&mut self, entries: &[Entry]) {
        for e in entries {
            self.seq += 1;
            let seq = self.seq;
            let ready_now = {
                let l = self.lcores.entry(e.lcore).or_insert((0, e.tsc, 0));
                let gap = e.tsc.saturating_sub(l.1);
                let ready = l.2;
                l.0 = seq;
                l.1 = l.1.max(e.tsc);
                (gap, ready)
            };
            let (gap, ready) = ready_now;
            if ready > 0 && self.ns(gap) >= STALL_MIN_NS {
                self.stall_ticks += gap;
                if self.longest.is_none_or(|(g, _, _)| gap > g) {
                    self.longest = Some((gap, ready, e.lcore));
                }
            }
            if !self.ids.request.contains(&e.tpoint) {
                continue;
            }
            self.first_tsc.get_or_insert(e.tsc);
            self.last_tsc = self.last_tsc.max(e.tsc);
            let is_ready = self.ids.ready.contains(&e.tpoint);
            if Some(e.tpoint) == self.ids.new {
                let qd = e.args.first().map(|a| a.int()).unwrap_or(0);
                let q = self.per_owner.entry(e.owner).or_default();
                q.max_qd = q.max_qd.max(qd);
                if self.open.len() >= MAX_OPEN {
                    if let Some((&k, _)) = self.open.iter().min_by_key(|(_, o)| o.start) {
                        self.drop_open(k);
                    }
                }
                self.drop_open(e.object);
                self.open.insert(
                    e.object,
                    Open {
                        start: e.tsc,
                        owner: e.owner,
                        lcore: e.lcore,
                        ready: false,
                        need_buffer_seq: None,
                        seq,
                    },
                );
            }
            let Some(mut o) = self.open.get(&e.object).copied() else {
                continue;
            };
            if Some(e.tpoint) == self.ids.completed {
                self.drop_open(e.object);
                self.requests += 1;
                let lat = self.ns(e.tsc.saturating_sub(o.start));
                let q = self.per_owner.entry(o.owner).or_default();
                if q.latencies.len() >= MAX_LATENCIES {
                    q.latencies.remove(0);
                }
                q.latencies.push(lat);
                continue;
            }
            if Some(e.tpoint) == self.ids.need_buffer {
                o.need_buffer_seq = Some(seq);
            }
            if Some(e.tpoint) == self.ids.have_buffer {
                // Handed a buffer in the same step (nothing else in between on this lcore) is
                // not a wait; anything recorded in between means it waited for a later poll.
                if o.need_buffer_seq.is_some_and(|s| s + 1 != seq) {
                    self.buffer_waits += 1;
                }
                o.need_buffer_seq = None;
            }
            if o.ready != is_ready {
                if let Some(l) = self.lcores.get_mut(&o.lcore) {
                    if is_ready {
                        l.2 += 1;
                    } else {
                        l.2 = l.2.saturating_sub(1);
                    }
                }
                o.ready = is_ready;
            }
            o.seq = seq;
            self.open.insert(e.object, o);
        }
    }

    fn drop_open(&mut self, object: u64) {
        if let Some(o) = self.open.remove(&object) {
            if o.ready {
                if let Some(l) = self.lcores.get_mut(&o.lcore) {
                    l.2 = l.2.saturating_sub(1);
                }
            }
        }
    }

    /// The profile of what was fed since the last call, and per-owner figures; resets them
    /// (open requests carry over). `None` when no request completed.
    pub fn take(
        &mut self,
        lost: u64,
        snapshot: bool,
    ) -> Option<(TraceProfile, HashMap<u16, QpairTrace>)> {
        let per_owner = std::mem::take(&mut self.per_owner);
        let requests = std::mem::take(&mut self.requests);
        let first = self.first_tsc.take();
        let stall_ticks = std::mem::take(&mut self.stall_ticks);
        let profile = TraceProfile {
            covered_ns: first
                .map(|f| self.ns(self.last_tsc.saturating_sub(f)))
                .unwrap_or(0),
            requests,
            buffer_waits: std::mem::take(&mut self.buffer_waits),
            stall_ns: self.ns(stall_ticks),
            longest_stall: self.longest.map(|(g, r, _)| (self.ns(g), r)),
            stall_lcore: self.longest.take().map(|(_, _, l)| l),
            lost,
            snapshot,
        };
        (requests > 0).then_some((profile, per_owner))
    }
}
