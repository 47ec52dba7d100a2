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
//! completed nor kept).
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

/// The thread's sleep bounds.
const MIN_SLEEP: Duration = Duration::from_millis(1);
const MAX_SLEEP: Duration = Duration::from_millis(50);

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
    names: std::collections::HashMap<u16, String>,
    clock: Clock,
    ring_records: u64,
    buf: Vec<Record>,
    slow: Vec<Slot>,
    floor: u64,
    sampled: Vec<Slot>,
    seen: u64,
    completed: u64,
    lost: u64,
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
            names.insert(t.id, t.name.clone());
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
            names,
            clock: reader.clock(),
            ring_records: reader.geometry().ring_records.max(1),
            buf: Vec::new(),
            slow: Vec::new(),
            floor: 0,
            sampled: Vec::new(),
            seen: 0,
            completed: 0,
            lost: 0,
        }
    }

    /// Reads what the rings hold beyond the cursors; returns the records read.
    pub fn pump(&mut self) -> u64 {
        if self.gone {
            return 0;
        }
        if let Some(f) = &self.guard {
            if f.metadata().map_or(true, |m| m.len() < self.file_size) {
                self.gone = true;
                return 0;
            }
        }
        let mut read = 0;
        for (c, table) in self.cursors.iter_mut().zip(self.tables.iter_mut()) {
            self.buf.clear();
            let st = c.poll(&mut self.buf);
            self.lost += st.lost;
            read += self.buf.len() as u64;
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
        read
    }

    /// Records read beyond the cursors so far, summed over reactors (for tests).
    pub fn position(&self) -> u64 {
        self.cursors.iter().map(RingCursor::position).sum()
    }

    /// What was kept since the last drain, as a batch; starts the next interval.
    pub fn drain(&mut self) -> RequestBatch {
        trim(&mut self.slow);
        let batch_completed = self.completed;
        let mut batch = RequestBatch {
            policy: format!(
                "read continuously; slowest {KEEP_SLOWEST} + every {KEEP_EVERY}th (at most {MAX_SAMPLED}) per sample"
            ),
            completed: batch_completed,
            lost_records: self.lost,
            ..RequestBatch::default()
        };
        let kept: Vec<Slot> = self.slow.drain(..).chain(self.sampled.drain(..)).collect();
        for s in kept {
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
                        .unwrap_or_else(|| format!("tp{tp:#06x}"));
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
        self.completed = 0;
        self.lost = 0;
        self.floor = 0;
        batch
    }

    /// Records per ring.
    fn ring_records(&self) -> u64 {
        self.ring_records
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

    /// Pumps what is new, then takes what was kept since the last call.
    pub fn drain(&self) -> RequestBatch {
        let mut r = self.records.lock().unwrap_or_else(|e| e.into_inner());
        r.pump();
        r.drain()
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

/// The thread: pump, then sleep until the rings are about a quarter full at the rate just seen.
fn run(records: &Mutex<Records>, stop: &AtomicBool) {
    let mut last = Instant::now();
    let mut sleep = MIN_SLEEP;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(sleep);
        let (read, ring) = {
            let mut r = records.lock().unwrap_or_else(|e| e.into_inner());
            (r.pump(), r.ring_records())
        };
        let dt = last.elapsed();
        last = Instant::now();
        // Records per second over all rings; a quarter of one ring at that rate (a bound that
        // keeps a single busy ring from lapping us even when several are busy).
        let rate = read as f64 / dt.as_secs_f64().max(1e-6);
        sleep = if rate > 0.0 {
            Duration::from_secs_f64((ring as f64 / 4.0) / rate).clamp(MIN_SLEEP, MAX_SLEEP)
        } else {
            MAX_SLEEP
        };
    }
}
