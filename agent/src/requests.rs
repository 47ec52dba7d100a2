//! Rebuilding requests from the merged tracepoint stream.
//!
//! A request lives on one reactor and one qpair slot under one command id from its `Begin`
//! tracepoint to its `End` tracepoint (roles come from the catalog in the trace file's
//! description, so this module knows no transport). Pure and single-threaded: feed events in
//! time order, take completed requests out. Command ids are reused once a request completes, so
//! a `Begin` on a key still in flight means the earlier request's end was lost (lapped ring or a
//! disabled group); it is counted as abandoned, never merged into the new one.

use std::collections::HashMap;

use serde::Serialize;
use trace_ring::description::TpRole;
use trace_ring::{Description, Event};

/// One stage of a completed request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Stage {
    /// Tracepoint name.
    pub name: String,
    /// Nanoseconds since the previous stage (0 for the first).
    pub delta_ns: u64,
    /// Nanoseconds since the request began.
    pub at_ns: u64,
}

/// A completed request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Request {
    /// Reactor index.
    pub reactor: u32,
    /// Reactor-local qpair slot.
    pub qpair: u16,
    /// Command identifier.
    pub cid: u32,
    /// CLOCK_MONOTONIC ns of the first stage.
    pub start_ns: u64,
    /// First to last stage, ns.
    pub total_ns: u64,
    /// The `Begin` tracepoint's arguments, by name (opcode, bytes...).
    pub args: Vec<(String, u64)>,
    /// The stages in order.
    pub stages: Vec<Stage>,
}

/// What the builder could not attribute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RequestStats {
    /// Requests completed.
    pub completed: u64,
    /// Requests whose `End` never came before their command id began again.
    pub abandoned: u64,
    /// `Stage`/`End` events with no request in flight (it began before the trace window).
    pub orphan_events: u64,
    /// Requests still in flight.
    pub in_flight: u64,
}

#[derive(Clone, Debug)]
struct InFlight {
    begin_tsc: u64,
    args: [u64; 2],
    stages: Vec<(u16, u64)>,
}

/// Turns time-ordered events into completed requests.
pub struct RequestBuilder {
    roles: HashMap<u16, (TpRole, String, Vec<String>)>,
    in_flight: HashMap<(u32, u16, u32), InFlight>,
    stats: RequestStats,
}

impl RequestBuilder {
    /// A builder for the catalog of `desc`.
    pub fn new(desc: &Description) -> RequestBuilder {
        let roles = desc
            .tracepoints
            .iter()
            .map(|t| {
                let args = t.args.iter().map(|a| a.name.clone()).collect();
                (t.id, (t.role, t.name.clone(), args))
            })
            .collect();
        RequestBuilder {
            roles,
            in_flight: HashMap::new(),
            stats: RequestStats::default(),
        }
    }

    /// Feeds one event (its timestamp already converted to ns by `to_ns`); returns the request it
    /// completed, if any.
    pub fn push(&mut self, ev: &Event, to_ns: impl Fn(u64) -> u64) -> Option<Request> {
        let r = &ev.record;
        let role = self.roles.get(&r.tpoint).map_or(TpRole::Event, |x| x.0);
        let key = (ev.reactor, r.qpair, r.cid);
        match role {
            TpRole::Event => None,
            TpRole::Begin => {
                let fresh = InFlight {
                    begin_tsc: r.tsc,
                    args: [r.arg0, r.arg1],
                    stages: vec![(r.tpoint, r.tsc)],
                };
                if self.in_flight.insert(key, fresh).is_some() {
                    self.stats.abandoned += 1;
                }
                None
            }
            TpRole::Stage => {
                match self.in_flight.get_mut(&key) {
                    Some(f) => f.stages.push((r.tpoint, r.tsc)),
                    None => self.stats.orphan_events += 1,
                }
                None
            }
            TpRole::End => {
                let Some(mut f) = self.in_flight.remove(&key) else {
                    self.stats.orphan_events += 1;
                    return None;
                };
                f.stages.push((r.tpoint, r.tsc));
                self.stats.completed += 1;
                Some(self.finish(key, f, &to_ns))
            }
        }
    }

    fn finish(&self, key: (u32, u16, u32), f: InFlight, to_ns: &impl Fn(u64) -> u64) -> Request {
        let start_ns = to_ns(f.begin_tsc);
        let mut prev = start_ns;
        let stages: Vec<Stage> = f
            .stages
            .iter()
            .map(|&(tp, tsc)| {
                let at = to_ns(tsc).max(prev);
                let s = Stage {
                    name: self.name(tp),
                    delta_ns: at - prev,
                    at_ns: at - start_ns,
                };
                prev = at;
                s
            })
            .collect();
        let begin_tp = f.stages.first().map_or(0, |s| s.0);
        let args = self
            .roles
            .get(&begin_tp)
            .map(|(_, _, names)| {
                names
                    .iter()
                    .zip(f.args)
                    .map(|(n, v)| (n.clone(), v))
                    .collect()
            })
            .unwrap_or_default();
        Request {
            reactor: key.0,
            qpair: key.1,
            cid: key.2,
            start_ns,
            total_ns: prev - start_ns,
            args,
            stages,
        }
    }

    /// Forgets the requests of a qpair (it disconnected).
    pub fn drop_qpair(&mut self, reactor: u32, qpair: u16) {
        self.in_flight
            .retain(|&(r, q, _), _| !(r == reactor && q == qpair));
    }

    /// Counters so far.
    pub fn stats(&self) -> RequestStats {
        RequestStats {
            in_flight: self.in_flight.len() as u64,
            ..self.stats
        }
    }

    fn name(&self, tp: u16) -> String {
        self.roles
            .get(&tp)
            .map_or_else(|| format!("tp{tp:#06x}"), |x| x.1.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trace_ring::description::{ArgDesc, TracepointDesc};
    use trace_ring::Record;

    fn desc() -> Description {
        let tp = |id, name: &str, role| TracepointDesc {
            id,
            name: name.into(),
            group: "tcp".into(),
            args: vec![ArgDesc {
                name: "opcode".into(),
                ..Default::default()
            }],
            role,
        };
        Description {
            tracepoints: vec![
                tp(0x100, "tcp.capsule", TpRole::Begin),
                tp(0x101, "tcp.submitted", TpRole::Stage),
                tp(0x102, "tcp.sent", TpRole::End),
                tp(0x103, "qpair.poll", TpRole::Event),
            ],
            ..Default::default()
        }
    }

    fn ev(reactor: u32, tpoint: u16, qpair: u16, cid: u32, tsc: u64) -> Event {
        Event {
            reactor,
            record: Record {
                tsc,
                tpoint,
                qpair,
                cid,
                arg0: 2,
                arg1: 0,
            },
        }
    }

    #[test]
    fn request_stages_in_order_with_deltas() {
        let mut b = RequestBuilder::new(&desc());
        let id = |t| t;
        assert!(b.push(&ev(0, 0x100, 1, 7, 100), id).is_none());
        assert!(b.push(&ev(0, 0x103, 1, 7, 110), id).is_none());
        assert!(b.push(&ev(0, 0x101, 1, 7, 130), id).is_none());
        let r = b.push(&ev(0, 0x102, 1, 7, 180), id).expect("completed");
        assert_eq!(r.total_ns, 80);
        let names: Vec<&str> = r.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["tcp.capsule", "tcp.submitted", "tcp.sent"]);
        let deltas: Vec<u64> = r.stages.iter().map(|s| s.delta_ns).collect();
        assert_eq!(deltas, [0, 30, 50]);
        assert_eq!(r.args, vec![("opcode".to_string(), 2)]);
        assert_eq!(b.stats().completed, 1);
        assert_eq!(b.stats().in_flight, 0);
    }

    #[test]
    fn same_cid_on_other_reactor_or_qpair_is_another_request() {
        let mut b = RequestBuilder::new(&desc());
        let id = |t| t;
        b.push(&ev(0, 0x100, 1, 7, 100), id);
        b.push(&ev(1, 0x100, 1, 7, 101), id);
        b.push(&ev(0, 0x100, 2, 7, 102), id);
        assert_eq!(b.stats().in_flight, 3);
        let r = b.push(&ev(1, 0x102, 1, 7, 150), id).expect("completed");
        assert_eq!((r.reactor, r.qpair, r.start_ns), (1, 1, 101));
    }

    #[test]
    fn lost_end_counts_abandoned_and_orphans_are_counted() {
        let mut b = RequestBuilder::new(&desc());
        let id = |t| t;
        b.push(&ev(0, 0x100, 1, 7, 100), id);
        b.push(&ev(0, 0x100, 1, 7, 200), id);
        assert!(b.push(&ev(0, 0x101, 3, 9, 210), id).is_none());
        let r = b.push(&ev(0, 0x102, 1, 7, 250), id).expect("completed");
        assert_eq!(r.start_ns, 200, "the second request, not a merge of both");
        let s = b.stats();
        assert_eq!((s.abandoned, s.orphan_events, s.completed), (1, 1, 1));
        b.push(&ev(0, 0x100, 4, 1, 300), id);
        b.drop_qpair(0, 4);
        assert_eq!(b.stats().in_flight, 0);
    }
}
