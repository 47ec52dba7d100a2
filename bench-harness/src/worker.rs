//! One worker thread: pinned to its core, it connects its own I/O qpairs and then runs a
//! poll-mode, run-to-completion loop over them. Everything it touches on the I/O path (qpairs,
//! request contexts, buffers, PRNG, statistics) is owned by the thread: no locks, no atomics,
//! no allocation per I/O. The only shared state is the coordinator's phase gate (an atomic read
//! while waiting between phases) and the event channel used at phase boundaries.
//!
//! Per loop iteration, for each qpair: receive and parse everything available (completions are
//! timed with one clock read per batch), refill the queue to its depth with new commands, and
//! send all of them with one flush (one `writev`).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nvme_proto::{Nsid, SglDescriptor, Sqe};

use crate::config::PerfConfig;
use crate::host::{connect_io_qpair, status_name, HostParams};
use crate::pattern::{Mismatch, Pattern};
use crate::rng::{mix64, WyRand};
use crate::stats::IoStats;
use crate::transport::{Dir, Qpair, TransportCounters};
use crate::units::CoreId;
use crate::usage::{ThreadUsage, UsageSummary};

/// Phase gate values, written by the coordinator.
pub const GATE_WAIT: u8 = 0;
pub const GATE_PREFILL: u8 = 1;
pub const GATE_RUN: u8 = 2;
pub const GATE_ABORT: u8 = 3;

/// How many mismatches a worker keeps for the report.
const KEEP_MISMATCHES: usize = 8;

/// The namespace a qpair works on, in units of the I/O size.
#[derive(Debug, Clone, Copy)]
pub struct NsTarget {
    pub nsid: u32,
    pub block_size: u32,
    /// Number of I/O-size units in the working set.
    pub units: u64,
}

/// One qpair's assignment.
#[derive(Debug, Clone)]
pub struct LanePlan {
    pub qid: u16,
    pub ns: NsTarget,
    /// Units `[start, end)` this qpair prefills, and where its sequential cursor starts.
    pub stripe: (u64, u64),
    /// Maximum I/Os this qpair issues (from `--io-limit`).
    pub limit: u64,
}

/// What a worker gets from the coordinator.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    pub core: CoreId,
    pub cfg: PerfConfig,
    pub host: HostParams,
    pub cntlid: u16,
    pub in_capsule: u32,
    pub lanes: Vec<LanePlan>,
}

/// Phase reports to the coordinator.
#[derive(Debug)]
pub enum WorkerEvent {
    Connected { core: CoreId },
    Prefilled { core: CoreId },
    Failed { core: CoreId, error: String },
}

/// What a worker hands back when joined.
#[derive(Debug, Default)]
pub struct WorkerResult {
    pub core: u32,
    pub qpairs: u32,
    pub stats: IoStats,
    pub elapsed: Duration,
    pub fatal: Vec<String>,
    pub mismatches: Vec<Mismatch>,
    pub prefilled_bytes: u64,
    /// Transport counters over the measured interval, summed over this worker's qpairs.
    pub transport: TransportCounters,
    /// The worker thread's CPU usage over the measured interval.
    pub usage: UsageSummary,
}

/// What `drive` measured.
struct Measured {
    elapsed: Duration,
    transport: TransportCounters,
    usage: UsageSummary,
}

#[derive(Debug, Clone, Copy)]
struct IoCtx {
    start: Instant,
    lba: u64,
    read: bool,
    active: bool,
}

/// A qpair plus its per-slot request contexts and workload state.
struct Lane<Q> {
    q: Q,
    plan: LanePlan,
    ctx: Vec<IoCtx>,
    rng: WyRand,
    seq_next: u64,
    issued: u64,
    dead: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Prefill,
    Run,
}

/// Entry point of a worker thread.
pub fn run_worker(
    spec: WorkerSpec,
    gate: Arc<AtomicU8>,
    events: Sender<WorkerEvent>,
) -> WorkerResult {
    let core = spec.core;
    let mut res = WorkerResult {
        core: core.0,
        qpairs: spec.lanes.len() as u32,
        ..WorkerResult::default()
    };
    let fail = |res: &mut WorkerResult, e: String| {
        let _ = events.send(WorkerEvent::Failed {
            core,
            error: e.clone(),
        });
        res.fatal.push(e);
    };
    if spec.cfg.pin {
        if let Err(e) = crate::cpu::pin_current_thread(core) {
            fail(&mut res, e.to_string());
            return res;
        }
    }
    let io = spec.cfg.io_size as u32;
    let depth = spec.cfg.queue_depth as u16;
    let mut lanes = Vec::with_capacity(spec.lanes.len());
    for (i, plan) in spec.lanes.iter().enumerate() {
        match connect_io_qpair(
            &spec.host,
            spec.cntlid,
            plan.qid,
            depth,
            io,
            spec.in_capsule,
            spec.cfg.verify,
        ) {
            Ok(q) => lanes.push(Lane::new(q, plan.clone(), spec.cfg.seed, core, i)),
            Err(e) => {
                fail(&mut res, format!("core {core}: {}", crate::error_chain(&e)));
                return res;
            }
        }
    }
    let _ = events.send(WorkerEvent::Connected { core });
    let mut w = Worker {
        cfg: &spec.cfg,
        core,
        stats: IoStats::new(),
        mismatches: Vec::new(),
        mismatch_count: 0,
        verified: 0,
        fatal: Vec::new(),
    };
    if spec.cfg.verify {
        if !wait_gate(&gate, GATE_PREFILL) {
            return res;
        }
        let _ = w.drive(&mut lanes, Mode::Prefill);
        res.prefilled_bytes = lanes
            .iter()
            .map(|l| (l.plan.stripe.1 - l.plan.stripe.0) * spec.cfg.io_size)
            .sum();
        if !w.fatal.is_empty() {
            let e = w.fatal.join("; ");
            let _ = events.send(WorkerEvent::Failed { core, error: e });
            res.fatal = w.fatal;
            return res;
        }
        let _ = events.send(WorkerEvent::Prefilled { core });
    }
    if !wait_gate(&gate, GATE_RUN) {
        return res;
    }
    w.stats.reset();
    let m = w.drive(&mut lanes, Mode::Run);
    res.elapsed = m.elapsed;
    res.transport = m.transport;
    res.usage = m.usage;
    w.stats.mismatches = w.mismatch_count;
    w.stats.verified_blocks = w.verified;
    res.stats = w.stats;
    res.fatal = w.fatal;
    res.mismatches = w.mismatches;
    res
}

/// Waits until the gate reaches `want` (true) or says abort (false).
fn wait_gate(gate: &AtomicU8, want: u8) -> bool {
    loop {
        let g = gate.load(Ordering::Acquire);
        if g == GATE_ABORT {
            return false;
        }
        if g >= want {
            return true;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

impl<Q: Qpair> Lane<Q> {
    fn new(q: Q, plan: LanePlan, seed: u64, core: CoreId, index: usize) -> Self {
        let slots = q.slots();
        let now = Instant::now();
        Lane {
            q,
            rng: WyRand::new(mix64(seed ^ (u64::from(core.0) << 32) ^ index as u64)),
            seq_next: plan.stripe.0,
            plan,
            ctx: vec![
                IoCtx {
                    start: now,
                    lba: 0,
                    read: false,
                    active: false
                };
                slots
            ],
            issued: 0,
            dead: false,
        }
    }
}

struct Worker<'a> {
    cfg: &'a PerfConfig,
    core: CoreId,
    stats: IoStats,
    mismatches: Vec<Mismatch>,
    mismatch_count: u64,
    verified: u64,
    fatal: Vec<String>,
}

impl Worker<'_> {
    /// Runs `mode` over all lanes until every lane is done; returns the measured time and the
    /// transport counters over it.
    fn drive<Q: Qpair>(&mut self, lanes: &mut [Lane<Q>], mode: Mode) -> Measured {
        let cfg = self.cfg;
        let io_size = cfg.io_size;
        let qd = cfg.queue_depth as usize;
        let read_pct = u64::from(cfg.workload.read_pct(cfg.read_mix));
        let random = cfg.workload.random();
        let verify = cfg.verify;
        let start = Instant::now();
        let warmup_end = start
            + if mode == Mode::Run {
                cfg.warmup
            } else {
                Duration::ZERO
            };
        let mut measuring = mode == Mode::Prefill || cfg.warmup.is_zero();
        let mut measure_start = start;
        let end = if mode == Mode::Run && !cfg.duration.is_zero() {
            Some(warmup_end + cfg.duration)
        } else {
            None
        };
        for l in lanes.iter_mut() {
            l.issued = 0;
            l.seq_next = l.plan.stripe.0;
        }
        let mut iter: u64 = 0;
        let mut last_done = start;
        let snapshot = |lanes: &[Lane<Q>]| -> Vec<TransportCounters> {
            lanes.iter().map(|l| l.q.counters()).collect()
        };
        let mut baseline = snapshot(lanes);
        let mut usage0 = ThreadUsage::now();
        loop {
            let now = Instant::now();
            iter = iter.wrapping_add(1);
            if !measuring && now >= warmup_end {
                let (m, v) = (self.mismatch_count, self.verified);
                self.stats.reset();
                self.mismatch_count = m;
                self.verified = v;
                measure_start = now;
                measuring = true;
                baseline = snapshot(lanes);
                usage0 = ThreadUsage::now();
            }
            let stop_time = end.is_some_and(|e| now >= e);
            let mut busy = false;
            for lane in lanes.iter_mut() {
                if lane.dead {
                    continue;
                }
                let block = lane.plan.ns.block_size;
                let blocks = (io_size / u64::from(block)) as u32;
                let pattern = Pattern::new(cfg.verify_seed, block as usize);
                // Receive and complete.
                let mut t_done: Option<Instant> = None;
                let stats = &mut self.stats;
                let ctx = &mut lane.ctx;
                let mism = &mut self.mismatches;
                let mism_count = &mut self.mismatch_count;
                let verified = &mut self.verified;
                let fatal = &mut self.fatal;
                let core = self.core;
                let r = lane.q.poll(|c| {
                    let t = *t_done.get_or_insert_with(Instant::now);
                    let Some(x) = ctx.get_mut(usize::from(c.cid.0)) else {
                        return;
                    };
                    x.active = false;
                    let lat = t.saturating_duration_since(x.start).as_nanos() as u64;
                    if !c.cqe.status.is_success() {
                        let name = status_name(c.cqe.status);
                        if mode == Mode::Prefill {
                            fatal.push(format!(
                                "core {core}: prefill write of lba {} failed: {name}",
                                x.lba
                            ));
                        }
                        stats.record_error(&name);
                    } else if x.read {
                        stats.record_read(io_size, lat);
                        if verify {
                            *verified += u64::from(blocks);
                            if let Some(m) = pattern.check(x.lba, c.data) {
                                *mism_count += 1;
                                if mism.len() < KEEP_MISMATCHES {
                                    mism.push(m);
                                }
                            }
                        }
                    } else {
                        stats.record_write(io_size, lat);
                    }
                });
                match r {
                    Ok(n) => {
                        if n > 0 {
                            last_done = t_done.unwrap_or(now);
                        }
                    }
                    Err(e) => {
                        self.kill(lane, crate::error_chain(&e));
                        continue;
                    }
                }
                // Refill.
                let stop_issue = match mode {
                    Mode::Run => stop_time || lane.issued >= lane.plan.limit,
                    Mode::Prefill => lane.seq_next >= lane.plan.stripe.1,
                };
                if !stop_issue {
                    while lane.q.outstanding() < qd {
                        if mode == Mode::Run && lane.issued >= lane.plan.limit {
                            break;
                        }
                        if mode == Mode::Prefill && lane.seq_next >= lane.plan.stripe.1 {
                            break;
                        }
                        let Some(cid) = lane.q.try_alloc() else { break };
                        let (read, unit) = match mode {
                            Mode::Prefill => {
                                let u = lane.seq_next;
                                lane.seq_next += 1;
                                (false, u)
                            }
                            Mode::Run => {
                                let read = read_pct == 100
                                    || (read_pct > 0 && lane.rng.below(100) < read_pct);
                                let unit = if random {
                                    lane.rng.below(lane.plan.ns.units)
                                } else {
                                    let u = lane.seq_next;
                                    lane.seq_next += 1;
                                    if lane.seq_next >= lane.plan.ns.units {
                                        lane.seq_next = 0;
                                    }
                                    u
                                };
                                (read, unit)
                            }
                        };
                        let lba = unit * u64::from(blocks);
                        if !read && (verify || mode == Mode::Prefill) {
                            if let Some(buf) = lane.q.data_mut(cid).get_mut(..io_size as usize) {
                                pattern.fill(lba, buf);
                            }
                        }
                        let nsid = Nsid(lane.plan.ns.nsid);
                        let dptr = SglDescriptor::default();
                        let sqe = if read {
                            Sqe::read(cid, nsid, lba, blocks, dptr)
                        } else {
                            Sqe::write(cid, nsid, lba, blocks, dptr)
                        };
                        let sqe = match sqe {
                            Ok(s) => s,
                            Err(e) => {
                                lane.q.release(cid);
                                self.kill(lane, format!("cannot build command: {e}"));
                                break;
                            }
                        };
                        let dir = if read {
                            Dir::FromController
                        } else {
                            Dir::ToController
                        };
                        if let Some(x) = lane.ctx.get_mut(usize::from(cid.0)) {
                            *x = IoCtx {
                                start: now,
                                lba,
                                read,
                                active: true,
                            };
                        }
                        if let Err(e) = lane.q.submit(cid, sqe, dir, io_size as u32) {
                            self.kill(lane, crate::error_chain(&e));
                            break;
                        }
                        lane.issued += 1;
                    }
                }
                if lane.dead {
                    continue;
                }
                if let Err(e) = lane.q.flush() {
                    self.kill(lane, crate::error_chain(&e));
                    continue;
                }
                if lane.q.outstanding() > 0 || lane.q.send_pending() || !stop_issue {
                    busy = true;
                }
                // Rare: look for commands the target forgot.
                if iter % 4096 == 0 {
                    let limit = cfg.io_timeout;
                    if let Some((i, x)) =
                        lane.ctx.iter().enumerate().find(|(_, x)| {
                            x.active && now.saturating_duration_since(x.start) > limit
                        })
                    {
                        let what = format!(
                            "{} of lba {} (cid {i}) outstanding for more than {limit:?}",
                            if x.read { "read" } else { "write" },
                            x.lba
                        );
                        self.kill(lane, what);
                    }
                }
            }
            if !busy {
                break;
            }
        }
        let mut transport = TransportCounters::default();
        for (l, b) in lanes.iter().zip(&baseline) {
            transport.add(&l.q.counters().since(b));
        }
        let elapsed = last_done
            .max(measure_start)
            .saturating_duration_since(measure_start);
        Measured {
            elapsed,
            transport,
            usage: ThreadUsage::now().since(&usage0),
        }
    }

    /// Ends a lane after a transport failure; its outstanding commands count as errors.
    fn kill<Q: Qpair>(&mut self, lane: &mut Lane<Q>, why: String) {
        let lost = lane.ctx.iter().filter(|x| x.active).count() as u64;
        for _ in 0..lost {
            self.stats.record_error("TRANSPORT_FAILURE");
        }
        for x in lane.ctx.iter_mut() {
            x.active = false;
        }
        lane.dead = true;
        self.fatal.push(format!(
            "core {} qpair qid {} (nsid {}): {why}{}",
            self.core,
            lane.q.qid(),
            lane.plan.ns.nsid,
            if lost > 0 {
                format!(" ({lost} commands lost)")
            } else {
                String::new()
            }
        ));
    }
}
