//! Request records read from the rings over the whole window (the tail attribution's material).
//!
//! A reactor's ring holds a few ms at full load (16K records, ~5 per request, ~800K IOPS), so a
//! reader that looks once per tick sees a slice of each second and misses a hog that runs 5 ms
//! every 100 ms. Here a background thread reads every ring continuously (it sleeps until the
//! ring is about a quarter full: ~1 ms at full load, 50 ms when idle) and folds the records into
//! completed requests on the fly with a flat table (no allocation per request). Of the requests
//! completed between two ticks it keeps, in a bounded buffer:
//! - the [`KEEP_SLOWEST`] slowest of the whole interval (a running floor: a request at or under
//!   the slowest-kept floor is not kept unless sampled), and
//! - every [`KEEP_EVERY`]-th request (a uniform sample for per-stage latency), at most
//!   [`MAX_SAMPLED`] per tick.
//!
//! What is dropped is counted ([`RequestBatch::dropped`]); records the writer overwrote before
//! the thread read them (a stalled agent) are counted as lost; a request whose command id began
//! again before its end came, or whose table entry another request took, is abandoned (neither
//! completed nor kept). So is every request in flight when the ring lapped the reader: the lost
//! stretch may hold its stages or its end, and an end read after the gap would otherwise pair
//! with the begin of an *earlier* request of the same qpair and command id (whose own end was
//! lost) and make a request tens of ms long that never was: at 600K IOPS a few such pairings a
//! second were the window's whole tail and hid the hog that the tail attribution is for.
//!
//! The thread sleeps until about an eighth of a ring is written at the writers' recent peak
//! rate ([`Pacer`]): not the rate of the last pass, which is zero while a hog holds the reactor's
//! core, after which the reactor resumes at full speed (a reader that then slept its longest
//! lapped right when the requests the hog delayed were ending, and lost exactly those); and
//! counting lost records, not only read ones (a lapped reader would otherwise see a lower rate
//! and sleep longer still).
//!
//! Above [`READ_BUDGET`] records/s the thread reads for only a share of each [`PERIOD`] (budget /
//! the writers' peak rate, at least [`MIN_READ_SHARE`]), passes over a pause of random length
//! (the rest of the period on average, [`pause_after`]) from the heads, and the batch's policy
//! says the share read: reading everything at 1M IOPS cost the target 12 % of its IOPS on a
//! 2-core machine.
//!
//! Threading: [`Records`] sits behind a mutex shared by the collector (which drains it once per
//! tick, after pumping what is new itself so a tick sees everything written before it) and the
//! reader thread; the thread stops and is joined when the collector is dropped. It inherits the
//! agent's CPU mask (set off the reactors' cores before it starts). Reading the rings never
//! blocks the writers (DESIGN §3).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use agent_core::requests::{RequestBatch, RequestRecord};
use trace_ring::description::TpRole;
use trace_ring::{Clock, Record, RingCursor, Start, TraceReader};

/// Slowest requests kept per tick (the tail attribution's material): every request above p99 up
/// to 800K IOPS on the reactors together (1 % of a second's requests), so the tail's counts
/// ("N of M requests above p99") are whole; beyond that the slowest of them.
pub const KEEP_SLOWEST: usize = 8192;

/// Of the other requests, every this-many-th is kept (the per-stage latency's material).
pub const KEEP_EVERY: u64 = 256;

/// Sampled requests kept per tick at most.
pub const MAX_SAMPLED: usize = 8192;

/// Stages of one request the flat table holds (the RDMA path has 9 after its begin).
const MAX_STAGES: usize = 12;

/// Table entries per reactor (a power of two): requests in flight per reactor far above this
/// collide and are counted as abandoned.
const TABLE: usize = 4096;

/// The thread's sleep bounds: at 600K IOPS a 16K-record ring holds ~5 ms, and the thread, on a
/// core shared with a busy-polling initiator, may wait a scheduler slice (a few ms) to run once
/// woken; the floor bounds the wake-ups (a few thousand a second at most).
const MIN_SLEEP: Duration = Duration::from_micros(250);
const MAX_SLEEP: Duration = Duration::from_millis(50);

/// The share of a ring the thread lets the writer fill between two reads.
const RING_SHARE_PER_SLEEP: f64 = 1.0 / 8.0;

/// What one pass over the rings saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Records read.
    pub read: u64,
    /// Records overwritten before they were read (the writers lapped the reader).
    pub lost: u64,
}

/// One request in flight (or kept): its key, begin tick and stages as tick offsets.
#[derive(Clone, Copy, Debug)]
struct Slot {
    /// `qpair << 32 | cid` plus one; 0 = free.
    tag: u64,
    begin: u64,
    end: u64,
    reactor: u32,
    n: u8,
    stages: [(u16, u32); MAX_STAGES],
}

const FREE: Slot = Slot {
    tag: 0,
    begin: 0,
    end: 0,
    reactor: 0,
    n: 0,
    stages: [(0, 0); MAX_STAGES],
};

fn tag(qpair: u16, cid: u32) -> u64 {
    ((u64::from(qpair) << 32) | u64::from(cid)) + 1
}

fn index(qpair: u16, cid: u32) -> usize {
    (usize::from(qpair).wrapping_mul(257) ^ cid as usize) & (TABLE - 1)
}

/// The rings' cursors, the in-flight tables and what was kept since the last drain.
pub struct Records {
    cursors: Vec<RingCursor>,
    tables: Vec<Vec<Slot>>,
    /// Role of every tracepoint id (Event for unknown ids).
    roles: Vec<TpRole>,
    names: Arc<std::collections::HashMap<u16, Arc<str>>>,
    clock: Clock,
    ring_records: u64,
    buf: Vec<Record>,
    slow: Vec<Slot>,
    floor: u64,
    sampled: Vec<Slot>,
    seen: u64,
    completed: u64,
    lost: u64,
    /// Requests in flight when their ring lapped the reader (never completed).
    abandoned_at_laps: u64,
    /// Between two reading periods (see [`READ_BUDGET`]): nothing is read, drains included.
    paused: bool,
    /// Records passed over between reading periods, and the time read vs the time elapsed,
    /// since the last drain (what the batch's policy says it sampled).
    skipped: u64,
    read_time: Duration,
    wall_time: Duration,
    /// The trace file itself, to `fstat` before each pass: a file shrunk under the mapping
    /// (truncated by someone; ringside producers never do) would raise SIGBUS on the next
    /// read, so a short file ends the reading for good.
    guard: Option<std::fs::File>,
    file_size: u64,
    gone: bool,
}

impl Records {
    /// Cursors at the rings' current heads (nothing older is read).
    pub fn new(reader: &TraceReader) -> Records {
        let cursors: Vec<RingCursor> = (0..reader.reactors())
            .filter_map(|r| reader.cursor(r, Start::Now).ok())
            .collect();
        let mut roles = vec![TpRole::Event; 1 << 16];
        let mut names = std::collections::HashMap::new();
        for t in &reader.description().tracepoints {
            roles[usize::from(t.id)] = t.role;
            names.insert(t.id, Arc::from(t.name.as_str()));
        }
        let guard = std::fs::File::open(reader.path()).ok().filter(|f| {
            use std::os::unix::fs::MetadataExt;
            f.metadata()
                .is_ok_and(|m| (m.dev(), m.ino()) == reader.identity())
        });
        Records {
            guard,
            file_size: reader.geometry().file_size,
            gone: false,
            tables: cursors.iter().map(|_| vec![FREE; TABLE]).collect(),
            cursors,
            roles,
            names: Arc::new(names),
            clock: reader.clock(),
            ring_records: reader.geometry().ring_records.max(1),
            buf: Vec::new(),
            slow: Vec::new(),
            floor: 0,
            sampled: Vec::new(),
            seen: 0,
            completed: 0,
            lost: 0,
            abandoned_at_laps: 0,
            paused: false,
            skipped: 0,
            read_time: Duration::ZERO,
            wall_time: Duration::ZERO,
        }
    }

    /// Stops reading until [`Records::resume`]: what is in flight now is abandoned (its end
    /// will not be read).
    pub fn pause(&mut self) {
        self.paused = true;
        for table in &mut self.tables {
            for s in table.iter_mut().filter(|s| s.tag != 0) {
                s.tag = 0;
            }
        }
    }

    /// Reads again from the rings' heads (what was written meanwhile is passed over, counted
    /// as skipped, not lost).
    pub fn resume(&mut self) {
        for c in &mut self.cursors {
            self.skipped += c.skip_to_head();
        }
        self.paused = false;
    }

    /// Accounts `read` of `wall` elapsed time as spent reading (the batch's sampled share).
    fn account(&mut self, read: Duration, wall: Duration) {
        self.read_time += read;
        self.wall_time += wall;
    }

    /// Reads what the rings hold beyond the cursors.
    pub fn pump(&mut self) -> Pass {
        let mut pass = Pass::default();
        if self.gone || self.paused {
            return pass;
        }
        if let Some(f) = &self.guard {
            if f.metadata().map_or(true, |m| m.len() < self.file_size) {
                self.gone = true;
                return pass;
            }
        }
        for (c, table) in self.cursors.iter_mut().zip(self.tables.iter_mut()) {
            self.buf.clear();
            let st = c.poll(&mut self.buf);
            self.lost += st.lost;
            pass.lost += st.lost;
            pass.read += self.buf.len() as u64;
            if st.lost > 0 {
                // Whatever was in flight before the gap may have lost its stages or its end
                // there: abandon it rather than pair a later end with it.
                for s in table.iter_mut().filter(|s| s.tag != 0) {
                    s.tag = 0;
                    self.abandoned_at_laps += 1;
                }
            }
            let reactor = c.reactor();
            for r in &self.buf {
                let i = index(r.qpair, r.cid);
                let t = tag(r.qpair, r.cid);
                match self.roles[usize::from(r.tpoint)] {
                    TpRole::Event => {}
                    TpRole::Begin => {
                        // An entry still taken is a request whose end never came (or a
                        // colliding key): it is abandoned, neither completed nor kept.
                        let s = &mut table[i];
                        s.tag = t;
                        s.begin = r.tsc;
                        s.reactor = reactor;
                        s.n = 0;
                    }
                    TpRole::Stage => {
                        let s = &mut table[i];
                        if s.tag == t && usize::from(s.n) < MAX_STAGES {
                            let off =
                                u32::try_from(r.tsc.saturating_sub(s.begin)).unwrap_or(u32::MAX);
                            s.stages[usize::from(s.n)] = (r.tpoint, off);
                            s.n += 1;
                        }
                    }
                    TpRole::End => {
                        let s = &mut table[i];
                        if s.tag != t {
                            continue; // began before the cursor, or its entry was taken
                        }
                        if usize::from(s.n) < MAX_STAGES {
                            let off =
                                u32::try_from(r.tsc.saturating_sub(s.begin)).unwrap_or(u32::MAX);
                            s.stages[usize::from(s.n)] = (r.tpoint, off);
                            s.n += 1;
                        }
                        s.end = r.tsc.max(s.begin);
                        let done = *s;
                        s.tag = 0;
                        self.completed += 1;
                        self.seen += 1;
                        // The uniform draw first (independent of the latency), then the
                        // slowest above the running floor.
                        if self.seen % KEEP_EVERY == 0 && self.sampled.len() < MAX_SAMPLED {
                            self.sampled.push(done);
                        } else if done.end - done.begin > self.floor {
                            self.slow.push(done);
                            if self.slow.len() >= 2 * KEEP_SLOWEST {
                                self.floor = trim(&mut self.slow);
                            }
                        }
                    }
                }
            }
        }
        pass
    }

    /// Records read beyond the cursors so far, summed over reactors (for tests).
    pub fn position(&self) -> u64 {
        self.cursors.iter().map(RingCursor::position).sum()
    }

    /// What was kept since the last drain, as a batch; starts the next interval.
    pub fn drain(&mut self) -> RequestBatch {
        self.take().into_batch()
    }

    /// What was kept since the last drain, still raw (cheap: the conversion into records,
    /// [`Taken::into_batch`], can run without holding the reader's lock); starts the next
    /// interval.
    pub fn take(&mut self) -> Taken {
        trim(&mut self.slow);
        let mut kept = std::mem::take(&mut self.slow);
        kept.append(&mut self.sampled);
        let read_share = if self.wall_time.is_zero() {
            1.0
        } else {
            (self.read_time.as_secs_f64() / self.wall_time.as_secs_f64()).min(1.0)
        };
        let taken = Taken {
            kept,
            completed: self.completed,
            lost: self.lost,
            abandoned_at_laps: self.abandoned_at_laps,
            skipped: self.skipped,
            read_share,
            clock: self.clock,
            names: self.names.clone(),
        };
        self.completed = 0;
        self.lost = 0;
        self.abandoned_at_laps = 0;
        self.skipped = 0;
        self.read_time = Duration::ZERO;
        self.wall_time = Duration::ZERO;
        self.floor = 0;
        taken
    }

    /// Records per ring.
    fn ring_records(&self) -> u64 {
        self.ring_records
    }
}

/// The kept requests of one interval, before their conversion into [`RequestRecord`]s.
pub struct Taken {
    kept: Vec<Slot>,
    completed: u64,
    lost: u64,
    abandoned_at_laps: u64,
    skipped: u64,
    read_share: f64,
    clock: Clock,
    names: Arc<std::collections::HashMap<u16, Arc<str>>>,
}

impl Taken {
    /// The batch: records on CLOCK_MONOTONIC ns, stages named.
    pub fn into_batch(self) -> RequestBatch {
        let mut policy = if self.skipped > 0 {
            format!(
                "read {:.0} % of the time (slices of ~{:.0} ms at random phases; {} records passed \
                 over between them, the reading budget is {} records/s); slowest {KEEP_SLOWEST} + \
                 every {KEEP_EVERY}th (at most {MAX_SAMPLED}) per sample",
                self.read_share * 100.0,
                self.read_share * PERIOD.as_secs_f64() * 1e3,
                self.skipped,
                READ_BUDGET as u64
            )
        } else {
            format!(
                "read continuously; slowest {KEEP_SLOWEST} + every {KEEP_EVERY}th (at most {MAX_SAMPLED}) per sample"
            )
        };
        if self.lost > 0 {
            policy.push_str(&format!(
                "; the rings lapped the reader: {} records lost, {} requests in flight then left out",
                self.lost, self.abandoned_at_laps
            ));
        }
        let mut batch = RequestBatch {
            policy,
            completed: self.completed,
            lost_records: self.lost,
            ..RequestBatch::default()
        };
        for s in self.kept {
            let start_ns = self.clock.to_mono_ns(s.begin);
            let end_ns = self.clock.to_mono_ns(s.end).max(start_ns);
            let mut prev = 0u64;
            let stages = s.stages[..usize::from(s.n)]
                .iter()
                .map(|&(tp, off)| {
                    let at = self.clock.ticks_to_ns(u64::from(off)).max(prev);
                    let d = at - prev;
                    prev = at;
                    let name = self
                        .names
                        .get(&tp)
                        .cloned()
                        .unwrap_or_else(|| Arc::from(format!("tp{tp:#06x}")));
                    (name, d)
                })
                .collect();
            batch.records.push(RequestRecord {
                reactor: s.reactor,
                qpair: u16::try_from((s.tag - 1) >> 32).unwrap_or(u16::MAX),
                cid: ((s.tag - 1) & 0xffff_ffff) as u32,
                start_ns,
                total_ns: end_ns - start_ns,
                stages,
            });
        }
        batch.dropped = batch.completed.saturating_sub(batch.records.len() as u64);
        batch
    }
}

/// Keeps the slowest [`KEEP_SLOWEST`] of `slow`; returns the new floor (the fastest kept).
fn trim(slow: &mut Vec<Slot>) -> u64 {
    let k = KEEP_SLOWEST;
    if slow.len() > k {
        slow.select_nth_unstable_by_key(k - 1, |s| std::cmp::Reverse(s.end - s.begin));
        slow.truncate(k);
    }
    if slow.len() < k {
        return 0; // room left: keep whatever comes
    }
    slow.iter().map(|s| s.end - s.begin).min().unwrap_or(0)
}

/// The background reader: a thread pumping [`Records`] until dropped.
pub struct Reader {
    records: Arc<Mutex<Records>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Reader {
    /// Reads `reader`'s rings, in the background when `background` (else only when drained:
    /// one ring's worth per drain at most, for tests that need a fixed cut).
    pub fn start(reader: &TraceReader, background: bool) -> Reader {
        let records = Arc::new(Mutex::new(Records::new(reader)));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = if !background {
            None
        } else {
            let records = Arc::clone(&records);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("ringside-records".into())
                .spawn(move || run(&records, &stop))
                .ok()
        };
        if background && thread.is_none() {
            eprintln!(
                "ringside: cannot start the record reader thread; records are read once per tick"
            );
        }
        Reader {
            records,
            stop,
            thread,
        }
    }

    /// Pumps what is new, then takes what was kept since the last call (converted after the
    /// lock is released, so the reader thread is not held up by it).
    pub fn drain(&self) -> RequestBatch {
        let taken = {
            let mut r = self.records.lock().unwrap_or_else(|e| e.into_inner());
            r.pump();
            r.take()
        };
        taken.into_batch()
    }

    /// Records read so far (for tests).
    pub fn position(&self) -> u64 {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .position()
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Records per second the thread reads at most, on average: above it (about 50K requests/s)
/// it reads for a share of each [`PERIOD`] (budget / the writers' peak rate, at least
/// [`MIN_READ_SHARE`]) and passes over the rest. Reading costs ~20 ns per record on the reader's
/// core plus a wake-up every eighth of a ring, and it pulls the ring's cache lines from the
/// writer's core (which must take them back on its next lap): at 1M IOPS (~5M records/s)
/// reading everything took 7 % of a core and cost the target 12 % of its IOPS on this 2-core
/// machine (`ringside-perf agent-cost`); with a budget of 1M records/s (a fifth of each second
/// at 1M IOPS) the agent still took 2.4 % of a core and ~2.6 % of the target's IOPS at QD32, and
/// the target's loss followed the share read (0.1: 0.971-0.974, 0.02: ~1.0; with records off
/// ~1.0). A tail cause that recurs within a second (a hog's bursts, a kworker) is seen in most
/// slices; one rarer than that may fall between, and the kernel events still count it.
pub const READ_BUDGET: f64 = 2.5e5;

/// The reading cycle: read for a share of it, then pass over the rest.
pub const PERIOD: Duration = Duration::from_secs(1);

/// The smallest share of a [`PERIOD`] read (50 ms: on average; a slice of 50 ms holds whole
/// requests delayed by several ms, and the slices' phase moves, see [`pause_after`]).
pub const MIN_READ_SHARE: f64 = 0.05;

/// The share of each period read at the writers' peak rate `peak` (records/s).
pub fn read_share(peak: f64) -> f64 {
    if peak <= READ_BUDGET {
        1.0
    } else {
        (READ_BUDGET / peak).clamp(MIN_READ_SHARE, 1.0)
    }
}

/// The thread: pump, then sleep as the [`Pacer`] says; above [`READ_BUDGET`] read only part of
/// each [`PERIOD`].
fn run(records: &Mutex<Records>, stop: &AtomicBool) {
    let lock = || records.lock().unwrap_or_else(|e| e.into_inner());
    let mut last = Instant::now();
    let mut pacer = Pacer::default();
    let mut sleep = MIN_SLEEP;
    let mut period_start = Instant::now();
    let mut jitter = Jitter::seeded();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(sleep);
        let (pass, ring) = {
            let mut r = lock();
            (r.pump(), r.ring_records())
        };
        let dt = last.elapsed();
        last = Instant::now();
        sleep = pacer.next(pass, dt, ring);
        let share = read_share(pacer.peak());
        let reading = period_start.elapsed();
        if share < 1.0 && reading >= PERIOD.mul_f64(share) {
            // The period's reading is done: pass over the rest of it.
            lock().pause();
            let rest = pause_after(reading, jitter.next());
            let until = Instant::now() + rest;
            while !stop.load(Ordering::Relaxed) {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                std::thread::sleep(left.min(Duration::from_millis(50)));
            }
            let wall = period_start.elapsed();
            let mut r = lock();
            r.account(reading, wall);
            r.resume();
            drop(r);
            period_start = Instant::now();
            last = Instant::now();
            sleep = MIN_SLEEP;
        } else if share >= 1.0 && reading >= PERIOD {
            lock().account(reading, reading);
            period_start = Instant::now();
        }
    }
}

/// The pause after a reading slice of `reading`: the rest of the [`PERIOD`] scaled by `0.5 + u`
/// (`u` uniform in `0..1`), so the mean share read stays the budget's while the slices fall at
/// every phase of the second: a cause recurring with a period near 1 s (a timer, a cron-like
/// kworker, another agent's tick) is not always or never inside the slice.
pub fn pause_after(reading: Duration, u: f64) -> Duration {
    PERIOD
        .saturating_sub(reading)
        .mul_f64(0.5 + u.clamp(0.0, 1.0))
}

/// Uniform draws in `0..1` for [`pause_after`] (xorshift64*, seeded from the clock and the pid).
struct Jitter(u64);

impl Jitter {
    fn seeded() -> Jitter {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Jitter((t ^ u64::from(std::process::id()).rotate_left(32)) | 1)
    }

    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Half-life of the peak write rate the [`Pacer`] remembers: long against a hog's burst or a
/// scheduler slice (ms), short enough that a target gone idle is polled rarely within seconds.
pub const PEAK_HALF_LIFE: Duration = Duration::from_secs(1);

/// How long the reader sleeps between passes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pacer {
    /// Records per second over all rings: the highest seen, decaying with [`PEAK_HALF_LIFE`].
    peak: f64,
    sleep: Option<Duration>,
}

impl Pacer {
    /// The writers' recent peak rate, records per second over all rings.
    pub fn peak(&self) -> f64 {
        self.peak
    }

    /// The sleep after a pass that saw `pass` over `dt`: until [`RING_SHARE_PER_SLEEP`] of one
    /// ring is written at the writers' recent peak rate (records read *and* lost; over all
    /// rings, so that a single busy ring cannot lap the reader even when others are busy too);
    /// after a lap, at most half the previous sleep.
    pub fn next(&mut self, pass: Pass, dt: Duration, ring: u64) -> Duration {
        let secs = dt.as_secs_f64().max(1e-6);
        let rate = (pass.read + pass.lost) as f64 / secs;
        let decay = 0.5f64.powf(secs / PEAK_HALF_LIFE.as_secs_f64());
        self.peak = rate.max(self.peak * decay);
        let mut sleep = if self.peak > 0.0 {
            Duration::from_secs_f64((ring as f64 * RING_SHARE_PER_SLEEP / self.peak).min(1.0))
        } else {
            MAX_SLEEP
        };
        if pass.lost > 0 {
            if let Some(previous) = self.sleep {
                sleep = sleep.min(previous / 2);
            }
        }
        let sleep = sleep.clamp(MIN_SLEEP, MAX_SLEEP);
        self.sleep = Some(sleep);
        sleep
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trace_ring::description::{ReactorDesc, TpRole, TracepointDesc};
    use trace_ring::{Description, Layout, TraceFile};

    /// A one-reactor trace file of 64-record rings with a begin (0x100) and an end (0x102)
    /// tracepoint.
    fn begin_end_trace(dir: &std::path::Path, name: &str) -> TraceFile {
        let tp = |id: u16, role| TracepointDesc {
            id,
            name: format!("tp{id}"),
            group: "tcp".into(),
            args: Vec::new(),
            role,
        };
        let desc = Description {
            reactors: vec![ReactorDesc::default()],
            tracepoints: vec![tp(0x100, TpRole::Begin), tp(0x102, TpRole::End)],
            ..Description::default()
        };
        let layout = Layout {
            reactors: 1,
            ring_records: 64,
            qpair_slots: 4,
            stages: 0,
        };
        TraceFile::create(dir, name, std::process::id(), &desc, &layout)
            .expect("create a trace file")
    }

    /// A request whose end was lost in a lap must not pair with a later end of the same qpair
    /// and command id whose begin was lost: that made requests tens of ms long that never were.
    #[test]
    fn a_lap_abandons_what_was_in_flight_instead_of_pairing_it_with_a_later_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tf = begin_end_trace(dir.path(), "lap");
        let mut w = tf.take_reactor(0).expect("reactor 0");
        let reader = TraceReader::open(tf.path()).expect("open");
        let mut r = Records::new(&reader);
        let per_us = tf.clock().ns_to_ticks(1_000).max(1);
        let base = trace_ring::tsc::now();
        // cid 7 begins and is read...
        w.ring.record_at(base, 0x100, 1, 7, 0, 0);
        assert_eq!(r.pump().lost, 0);
        // ...then 200 records of other commands lap the reader (cid 7's end among the lost,
        // and the begin of cid 7's next use), then that next use ends 10 ms later.
        w.ring.record_at(base + per_us, 0x102, 1, 7, 0, 0);
        for i in 0..100u64 {
            let cid = 100 + (i % 20) as u32;
            w.ring
                .record_at(base + (2 + i) * per_us, 0x100, 1, cid, 0, 0);
            w.ring
                .record_at(base + (3 + i) * per_us, 0x102, 1, cid, 0, 0);
        }
        w.ring.record_at(base + 9_000 * per_us, 0x100, 1, 7, 0, 0);
        for i in 0..40u64 {
            let cid = 200 + i as u32;
            w.ring
                .record_at(base + (9_001 + i) * per_us, 0x100, 1, cid, 0, 0);
            w.ring
                .record_at(base + (9_002 + i) * per_us, 0x102, 1, cid, 0, 0);
        }
        w.ring.record_at(base + 10_000 * per_us, 0x102, 1, 7, 0, 0);
        let pass = r.pump();
        assert!(pass.lost > 0, "the ring lapped the reader: {pass:?}");
        let b = r.drain();
        let long: Vec<&RequestRecord> = b
            .records
            .iter()
            .filter(|x| x.total_ns > 1_000_000)
            .collect();
        assert!(long.is_empty(), "no request spans the lap: {long:?}");
        assert!(b.records.iter().all(|x| x.cid != 7), "{:?}", b.records);
        assert!(b.policy.contains("lapped"), "{}", b.policy);
        assert!(b.completed > 0);
    }

    /// Between two reading periods nothing is read (a drain included); on resuming, the
    /// reader starts at the heads: what was written meanwhile is passed over and counted as
    /// skipped, not lost, a request in flight at the pause is not paired with a later end, and
    /// the batch's policy says what share was read.
    #[test]
    fn a_paused_reader_passes_over_what_was_written_meanwhile_and_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tf = begin_end_trace(dir.path(), "pause");
        let mut w = tf.take_reactor(0).expect("reactor 0");
        let reader = TraceReader::open(tf.path()).expect("open");
        let mut r = Records::new(&reader);
        let per_us = tf.clock().ns_to_ticks(1_000).max(1);
        let base = trace_ring::tsc::now();
        // One request read whole, and cid 7 begun: then the pause.
        w.ring.record_at(base, 0x100, 1, 1, 0, 0);
        w.ring.record_at(base + per_us, 0x102, 1, 1, 0, 0);
        w.ring.record_at(base + 2 * per_us, 0x100, 1, 7, 0, 0);
        assert_eq!(r.pump().read, 3);
        r.pause();
        for i in 0..10u64 {
            let cid = 100 + i as u32;
            w.ring
                .record_at(base + (3 + i) * per_us, 0x100, 1, cid, 0, 0);
            w.ring
                .record_at(base + (4 + i) * per_us, 0x102, 1, cid, 0, 0);
        }
        assert_eq!(r.pump(), Pass::default(), "nothing is read while paused");
        r.account(Duration::from_millis(200), Duration::from_secs(1));
        r.resume();
        // cid 7 ends after the pause: not paired with its begin before it.
        w.ring.record_at(base + 5_000 * per_us, 0x102, 1, 7, 0, 0);
        w.ring.record_at(base + 5_001 * per_us, 0x100, 1, 9, 0, 0);
        w.ring.record_at(base + 5_002 * per_us, 0x102, 1, 9, 0, 0);
        let pass = r.pump();
        assert_eq!(
            pass,
            Pass { read: 3, lost: 0 },
            "read from the head, nothing lost"
        );
        let b = r.drain();
        let cids: Vec<u32> = b.records.iter().map(|x| x.cid).collect();
        assert_eq!(b.completed, 2, "cids 1 and 9: {cids:?}");
        assert!(!cids.contains(&7), "{cids:?}");
        assert_eq!(b.lost_records, 0);
        assert!(b.policy.contains("read 20 %"), "{}", b.policy);
        assert!(b.policy.contains("20 records passed over"), "{}", b.policy);
        // The next interval starts clean.
        assert!(r.drain().policy.starts_with("read continuously"));
    }

    #[test]
    fn pauses_keep_the_mean_share_and_move_the_slices_phase() {
        let reading = Duration::from_millis(50);
        let rest = PERIOD - reading;
        assert_eq!(pause_after(reading, 0.5), rest);
        assert_eq!(pause_after(reading, 0.0), rest / 2);
        assert_eq!(pause_after(reading, 1.0), rest.mul_f64(1.5));
        let mut j = Jitter::seeded();
        let n = 20_000;
        let draws: Vec<f64> = (0..n).map(|_| j.next()).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        let mean = draws.iter().sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.02, "mean draw {mean}");
        // Slices start at every phase of a 1 s cause: all ten 100 ms bins of the phase are hit.
        let mut t = Duration::ZERO;
        let mut bins = [0u32; 10];
        for &u in &draws[..200] {
            bins[(t.as_millis() % 1000 / 100) as usize] += 1;
            t += reading + pause_after(reading, u);
        }
        assert!(bins.iter().all(|&b| b > 0), "{bins:?}");
    }

    #[test]
    fn the_read_share_follows_the_budget_with_a_floor() {
        assert_eq!(read_share(0.0), 1.0);
        assert_eq!(read_share(READ_BUDGET), 1.0);
        assert!((read_share(4.0 * READ_BUDGET) - 0.25).abs() < 1e-9);
        assert_eq!(read_share(1000.0 * READ_BUDGET), MIN_READ_SHARE);
    }

    /// A pass that read nothing (the reactor was preempted by a hog for a few ms) does not make
    /// the reader sleep its longest: the reactor resumes at full rate and would lap it right
    /// when the requests the hog delayed end.
    #[test]
    fn an_empty_pass_after_a_busy_one_keeps_the_sleep_short() {
        let mut p = Pacer::default();
        let ring = 16_384;
        let busy = p.next(
            Pass {
                read: 3_000,
                lost: 0,
            },
            Duration::from_millis(1),
            ring,
        );
        assert!(busy < Duration::from_millis(1), "{busy:?}");
        let idle = p.next(Pass::default(), Duration::from_millis(1), ring);
        assert!(idle <= busy * 2, "{idle:?} after {busy:?}");
        // A lap halves the sleep.
        let lapped = p.next(
            Pass {
                read: 1_000,
                lost: 20_000,
            },
            Duration::from_millis(8),
            ring,
        );
        assert!(lapped <= idle / 2 || lapped == MIN_SLEEP, "{lapped:?}");
        // A target idle for a minute is read rarely again.
        let mut quiet = lapped;
        for _ in 0..60 {
            quiet = p.next(Pass::default(), Duration::from_secs(1), ring);
        }
        assert_eq!(quiet, MAX_SLEEP);
    }
}
