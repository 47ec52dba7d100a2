//! The consumer side (the agent): finding instances, validating and mapping a trace file
//! read-only, ring cursors, the time-ordered merge, counters and histogram snapshots.
//!
//! Threading/ownership: a [`TraceReader`] owns a read-only mapping shared (via `Arc`) with the
//! cursors it creates; cursors are `Send` and independent, so a collector may poll each reactor's
//! ring from its own thread. Nothing here ever blocks or slows the producer: readers only load.
//!
//! Validation: every header field is checked against the file length before mapping (a truncated,
//! zero-length or garbage file is an error, never a crash), and every later access is
//! bounds-checked. What cannot be checked is a file shrinking *after* it was mapped (that would
//! raise SIGBUS); ringside producers never truncate a published file, they only unlink it.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::Arc;

use crate::clock::Clock;
use crate::description::Description;
use crate::error::{io_err, Error, Result};
use crate::histogram::Histogram;
use crate::layout::{
    counters_section_size, decode_header, CountersOffsets, Header, QpairCounters, ReactorCounters,
    Record, ABI_MAJOR, ABI_MINOR, DESC_FORMAT_JSON, ENDIAN_TAG, HEADER_MASK_WORD, HEADER_SECTION,
    HEADER_STATE_WORD, HIST_BLOCK_SIZE, HIST_BUCKETS, HIST_MAX_EXP, HIST_SUB_BITS, HIST_WORDS,
    MAGIC, MAX_DESCRIPTION, MAX_QPAIR_SLOTS, MAX_REACTORS, MAX_RING_RECORDS, MAX_STAGES,
    QPAIR_HOST_MAX, QPAIR_HOST_OFFSET, QPAIR_HOST_SIZE, REACTOR_COUNTERS_SIZE, RECORD_SIZE,
    RING_CONTROL_SIZE, RING_CORE_WORD, RING_HEAD_WORD, RING_TID_WORD, STABLE_PREFIX, STATE_EXITED,
    STATE_RUNNING,
};
use crate::mapping::Mapping;
use crate::producer::{instance_path, pid_alive, validate_name, DEFAULT_DIR, FILE_PREFIX};

/// Validated geometry (all offsets in bytes, all inside `file_size`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Reactors.
    pub reactors: u32,
    /// Records per ring.
    pub ring_records: u64,
    /// Reactor 0's ring section.
    pub rings_offset: u64,
    /// Ring stride.
    pub ring_stride: u64,
    /// Records start this far into a ring section.
    pub ring_control_size: u64,
    /// Reactor 0's counters section.
    pub counters_offset: u64,
    /// Counters stride.
    pub counters_stride: u64,
    /// Per-qpair counter slot size.
    pub qpair_counters_size: u64,
    /// Qpair slots.
    pub qpair_slots: u32,
    /// Stages.
    pub stages: u32,
    /// Histogram block size.
    pub hist_size: u64,
    /// Offsets inside a counters section.
    pub offsets: CountersOffsets,
    /// File size the header declares.
    pub file_size: u64,
}

/// Checks a decoded header against the ABI and the actual file length. Pure; `Err` carries the
/// error for `path`.
pub fn validate_header(path: &Path, h: &Header, file_len: u64) -> Result<Geometry> {
    let corrupt = |reason: String| Error::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    if h.magic != MAGIC {
        return Err(Error::BadMagic {
            path: path.to_path_buf(),
        });
    }
    if h.endian_tag != ENDIAN_TAG {
        return Err(Error::Endian {
            path: path.to_path_buf(),
            tag: h.endian_tag,
        });
    }
    if h.abi_major != ABI_MAJOR {
        return Err(Error::Version {
            path: path.to_path_buf(),
            found_major: h.abi_major,
            found_minor: h.abi_minor,
            supported_major: ABI_MAJOR,
            supported_minor: ABI_MINOR,
        });
    }
    if (h.header_size as usize) < std::mem::size_of::<Header>()
        || u64::from(h.header_size) > HEADER_SECTION
    {
        return Err(corrupt(format!(
            "header size {} out of range",
            h.header_size
        )));
    }
    if u64::from(h.record_size) != RECORD_SIZE {
        return Err(corrupt(format!(
            "record size {} is not {RECORD_SIZE}",
            h.record_size
        )));
    }
    if h.file_size < HEADER_SECTION || h.file_size % 8 != 0 {
        return Err(corrupt(format!("file size {} invalid", h.file_size)));
    }
    if h.file_size > file_len {
        return Err(Error::Truncated {
            path: path.to_path_buf(),
            expected: h.file_size,
            actual: file_len,
        });
    }
    if h.reactors == 0 || h.reactors > MAX_REACTORS {
        return Err(corrupt(format!(
            "reactor count {} out of range",
            h.reactors
        )));
    }
    if !h.ring_records.is_power_of_two() || h.ring_records < 2 || h.ring_records > MAX_RING_RECORDS
    {
        return Err(corrupt(format!("ring size {} invalid", h.ring_records)));
    }
    if h.qpair_slots > MAX_QPAIR_SLOTS || h.stages > MAX_STAGES {
        return Err(corrupt(format!(
            "qpair slots {} or stages {} out of range",
            h.qpair_slots, h.stages
        )));
    }
    if h.hist_buckets as usize != HIST_BUCKETS
        || h.hist_sub_bits != HIST_SUB_BITS
        || h.hist_max_exp != HIST_MAX_EXP
    {
        return Err(corrupt(format!(
            "histogram geometry {}/{}/{} differs from {HIST_BUCKETS}/{HIST_SUB_BITS}/{HIST_MAX_EXP}",
            h.hist_buckets, h.hist_sub_bits, h.hist_max_exp
        )));
    }
    let sizes = [
        (
            "ring control",
            u64::from(h.ring_control_size),
            RING_CONTROL_SIZE,
        ),
        (
            "reactor counters",
            u64::from(h.reactor_counters_size),
            REACTOR_COUNTERS_SIZE,
        ),
        // ABI 1.1 files have 64-byte qpair slots (no queue size); readers take what is there.
        ("qpair counters", u64::from(h.qpair_counters_size), 64),
        ("histogram", u64::from(h.hist_size), HIST_BLOCK_SIZE),
    ];
    for (what, declared, min) in sizes {
        if declared < min || declared % 8 != 0 || declared > 1 << 20 {
            return Err(corrupt(format!("{what} block size {declared} invalid")));
        }
    }
    let reactors = u64::from(h.reactors);
    let overflow = || corrupt("section arithmetic overflows".to_string());
    // Rings.
    let ring_need = u64::from(h.ring_control_size) + RECORD_SIZE * h.ring_records;
    if h.ring_stride < ring_need || h.rings_offset % 8 != 0 || h.ring_stride % 8 != 0 {
        return Err(corrupt(format!(
            "ring stride {} / offset {} invalid",
            h.ring_stride, h.rings_offset
        )));
    }
    let rings_end = h
        .ring_stride
        .checked_mul(reactors)
        .and_then(|n| n.checked_add(h.rings_offset))
        .ok_or_else(overflow)?;
    // Counters.
    let counters_need = counters_section_size(
        u64::from(h.reactor_counters_size),
        u64::from(h.qpair_counters_size),
        u64::from(h.hist_size),
        u64::from(h.qpair_slots),
        u64::from(h.stages),
    );
    if h.counters_stride < counters_need || h.counters_offset % 8 != 0 || h.counters_stride % 8 != 0
    {
        return Err(corrupt(format!(
            "counters stride {} / offset {} invalid",
            h.counters_stride, h.counters_offset
        )));
    }
    let counters_end = h
        .counters_stride
        .checked_mul(reactors)
        .and_then(|n| n.checked_add(h.counters_offset))
        .ok_or_else(overflow)?;
    // Description.
    if h.desc_format != DESC_FORMAT_JSON {
        return Err(corrupt(format!(
            "unknown description format {}",
            h.desc_format
        )));
    }
    if h.desc_len > MAX_DESCRIPTION {
        return Err(corrupt(format!(
            "description length {} too large",
            h.desc_len
        )));
    }
    let desc_end = h.desc_offset.checked_add(h.desc_len).ok_or_else(overflow)?;
    // Sections must follow each other without overlapping the header or each other.
    let order = [
        ("description", h.desc_offset, desc_end),
        ("rings", h.rings_offset, rings_end),
        ("counters", h.counters_offset, counters_end),
    ];
    let mut prev_end = HEADER_SECTION;
    for (what, start, end) in order {
        if start < prev_end {
            return Err(corrupt(format!(
                "{what} section at {start} overlaps the previous one"
            )));
        }
        if end > h.file_size {
            return Err(corrupt(format!(
                "{what} section ends at {end}, beyond the file size {}",
                h.file_size
            )));
        }
        prev_end = end;
    }
    Ok(Geometry {
        reactors: h.reactors,
        ring_records: h.ring_records,
        rings_offset: h.rings_offset,
        ring_stride: h.ring_stride,
        ring_control_size: u64::from(h.ring_control_size),
        counters_offset: h.counters_offset,
        counters_stride: h.counters_stride,
        qpair_counters_size: u64::from(h.qpair_counters_size),
        qpair_slots: h.qpair_slots,
        stages: h.stages,
        hist_size: u64::from(h.hist_size),
        offsets: CountersOffsets::new(
            u64::from(h.reactor_counters_size),
            u64::from(h.qpair_counters_size),
            u64::from(h.hist_size),
            u64::from(h.qpair_slots),
        ),
        file_size: h.file_size,
    })
}

/// Opens `path`, reads (with `pread`, not the mapping) and validates its header.
fn read_header(path: &Path) -> Result<(File, Header, Geometry)> {
    let file = File::open(path).map_err(io_err("open", path))?;
    read_header_of(path, file)
}

/// [`read_header`] of a file already open (`path` names it in errors).
fn read_header_of(path: &Path, file: File) -> Result<(File, Header, Geometry)> {
    let len = file.metadata().map_err(io_err("stat", path))?.len();
    if len < HEADER_SECTION {
        return Err(Error::TooSmall {
            path: path.to_path_buf(),
            len,
            min: HEADER_SECTION,
        });
    }
    let mut page = [0u8; HEADER_SECTION as usize];
    file.read_exact_at(&mut page, 0)
        .map_err(io_err("read the header of", path))?;
    let header = decode_header(&page);
    let geometry = validate_header(path, &header, len)?;
    Ok((file, header, geometry))
}

/// A trace instance found in a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    /// Instance name (file name without `ringside.`).
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// Producer pid, when the file has a readable header.
    pub pid: Option<u32>,
    /// The producer process exists and has not marked the file exited.
    pub alive: bool,
    /// ABI version `(major, minor)` of the file, when readable.
    pub abi: Option<(u16, u16)>,
    /// Why this reader cannot open it (another major version, corrupt...), if so.
    pub problem: Option<String>,
}

/// Where to start reading a ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// The oldest record still in the ring.
    Oldest,
    /// Only records written from now on.
    Now,
}

/// A validated, read-only mapped trace file.
pub struct TraceReader {
    path: PathBuf,
    map: Arc<Mapping>,
    header: Header,
    geometry: Geometry,
    description: Description,
    /// The open file, for `fstat` before reads (truncation) and its identity (replacement).
    file: File,
    /// (device, inode) of the file mapped.
    identity: (u64, u64),
    /// Set once the file was seen shorter than the mapping: no mapped page is touched again.
    truncated: std::sync::atomic::AtomicBool,
}

/// What became of the instance behind a [`TraceReader`] ([`TraceReader::liveness`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// The producer runs and the file at the instance's path is the one mapped.
    Live,
    /// The producer marked the file exited (clean shutdown).
    Exited,
    /// The producer process no longer exists (killed, crashed).
    Dead,
    /// The file shrank below its declared size after it was mapped (it is no longer read).
    Truncated {
        /// Its length now.
        len: u64,
    },
    /// Another file now sits at the instance's path (a new instance of the same name).
    Replaced,
    /// Nothing is at the instance's path any more.
    Removed,
}

impl Liveness {
    /// Why the instance is not live, in a few lowercase words (`None` when live).
    pub fn reason(&self, pid: u32) -> Option<String> {
        match self {
            Liveness::Live => None,
            Liveness::Exited => Some(format!("process {pid} exited")),
            Liveness::Dead => Some(format!("process {pid} is gone")),
            Liveness::Truncated { len } => {
                Some(format!("the trace file was truncated to {len} bytes"))
            }
            Liveness::Replaced => Some("the trace file was replaced by another instance".into()),
            Liveness::Removed => Some("the trace file was removed".into()),
        }
    }
}

impl std::fmt::Debug for TraceReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceReader")
            .field("path", &self.path)
            .field("geometry", &self.geometry)
            .finish()
    }
}

impl TraceReader {
    /// Opens and validates a trace file.
    pub fn open(path: impl AsRef<Path>) -> Result<TraceReader> {
        let path = path.as_ref();
        let file = File::open(path).map_err(io_err("open", path))?;
        Self::from_file(path, file)
    }

    /// Validates and maps a trace file already open (`path` names it in errors and
    /// [`TraceReader::liveness`]); see `TraceFile::reader` for the producer's own reader.
    pub fn from_file(path: impl AsRef<Path>, file: File) -> Result<TraceReader> {
        let path = path.as_ref();
        let (file, header, geometry) = read_header_of(path, file)?;
        let desc_len = header.desc_len as usize;
        let mut blob = vec![0u8; desc_len];
        file.read_exact_at(&mut blob, header.desc_offset)
            .map_err(io_err("read the description of", path))?;
        let bad_desc = |reason: String| Error::Description {
            path: path.to_path_buf(),
            reason,
        };
        let crc = crc32c::crc32c(&blob);
        if crc != header.desc_crc32c {
            return Err(bad_desc(format!(
                "checksum {crc:#010x} does not match the header's {:#010x}",
                header.desc_crc32c
            )));
        }
        let description: Description =
            serde_json::from_slice(&blob).map_err(|e| bad_desc(e.to_string()))?;
        let map = Mapping::map(&file, geometry.file_size, false).map_err(io_err("map", path))?;
        let meta = file.metadata().map_err(io_err("stat", path))?;
        Ok(TraceReader {
            path: path.to_path_buf(),
            map: Arc::new(map),
            header,
            geometry,
            description,
            file,
            identity: (meta.dev(), meta.ino()),
            truncated: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The mapped file's (device, inode): with the header's pid and start time it tells two
    /// instances of the same name apart.
    pub fn identity(&self) -> (u64, u64) {
        self.identity
    }

    /// False once the file was seen shorter than its declared size; from then on no mapped
    /// page is read (counters and histograms read as `None`).
    fn intact(&self) -> bool {
        if self.truncated.load(Ordering::Relaxed) {
            return false;
        }
        match self.file.metadata() {
            Ok(m) if m.len() >= self.geometry.file_size => true,
            _ => {
                self.truncated.store(true, Ordering::Relaxed);
                false
            }
        }
    }

    /// What became of the instance: checks, in this order, that the file still holds every
    /// mapped page (`fstat` on the open file: a shrunken file would raise SIGBUS on the next
    /// read), that the producer has not exited and its process exists, and that the file at the
    /// instance's path is still this one. A sink calls it before each read of the counters.
    pub fn liveness(&self) -> Liveness {
        if !self.intact() {
            let len = self.file.metadata().map_or(0, |m| m.len());
            return Liveness::Truncated { len };
        }
        if self.producer_exited() {
            return Liveness::Exited;
        }
        if !pid_alive(self.header.pid) {
            return Liveness::Dead;
        }
        match std::fs::metadata(&self.path) {
            Ok(m) if (m.dev(), m.ino()) == self.identity => Liveness::Live,
            Ok(_) => Liveness::Replaced,
            Err(_) => Liveness::Removed,
        }
    }

    /// Opens instance `name` in `/dev/shm`.
    pub fn find(name: &str) -> Result<TraceReader> {
        Self::find_in(Path::new(DEFAULT_DIR), name)
    }

    /// Opens instance `name` in `dir`.
    pub fn find_in(dir: &Path, name: &str) -> Result<TraceReader> {
        validate_name(name)?;
        let path = instance_path(dir, name);
        match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::NotFound {
                name: name.to_string(),
                dir: dir.to_path_buf(),
            }),
            _ => Self::open(path),
        }
    }

    /// Opens the instance of process `pid` in `/dev/shm`.
    pub fn find_by_pid(pid: u32) -> Result<TraceReader> {
        Self::find_by_pid_in(Path::new(DEFAULT_DIR), pid)
    }

    /// Opens the instance of process `pid` in `dir` (a live one if there are several).
    pub fn find_by_pid_in(dir: &Path, pid: u32) -> Result<TraceReader> {
        let mut matches: Vec<Instance> = Self::list_in(dir)?
            .into_iter()
            .filter(|i| i.pid == Some(pid))
            .collect();
        matches.sort_by_key(|i| !i.alive);
        match matches.first() {
            Some(i) => Self::open(&i.path),
            None => Err(Error::NoInstanceForPid {
                pid,
                dir: dir.to_path_buf(),
            }),
        }
    }

    /// Lists the instances in `/dev/shm`.
    pub fn list() -> Result<Vec<Instance>> {
        Self::list_in(Path::new(DEFAULT_DIR))
    }

    /// Lists the instances in `dir` (files named `ringside.<name>`), sorted by name, each with
    /// its liveness and, for files this reader cannot open, the reason.
    pub fn list_in(dir: &Path) -> Result<Vec<Instance>> {
        let entries = std::fs::read_dir(dir).map_err(io_err("list", dir))?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(fname) = file_name.to_str() else {
                continue;
            };
            let Some(name) = fname.strip_prefix(FILE_PREFIX) else {
                continue;
            };
            let path = entry.path();
            let mut inst = Instance {
                name: name.to_string(),
                path: path.clone(),
                pid: None,
                alive: false,
                abi: None,
                problem: None,
            };
            let mut prefix = [0u8; STABLE_PREFIX];
            let prefix_ok = File::open(&path)
                .and_then(|mut f| f.read_exact(&mut prefix))
                .is_ok();
            if prefix_ok {
                if let Some(h) = crate::layout::decode_stable_prefix(&prefix) {
                    if h.magic == MAGIC {
                        inst.pid = Some(h.pid);
                        inst.abi = Some((h.abi_major, h.abi_minor));
                        inst.alive = h.state == STATE_RUNNING && pid_alive(h.pid);
                    }
                }
            }
            if let Err(e) = read_header(&path) {
                inst.problem = Some(e.to_string());
            }
            out.push(inst);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The header as read at open (`state` and `enabled_mask` are live: see the methods).
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The instance name.
    pub fn name(&self) -> &str {
        self.header.name_str().unwrap_or("")
    }

    /// The validated geometry.
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// The description section.
    pub fn description(&self) -> &Description {
        &self.description
    }

    /// The clock for TSC → CLOCK_MONOTONIC conversion.
    pub fn clock(&self) -> Clock {
        Clock {
            tsc_hz: self.header.tsc_hz,
            calib_tsc: self.header.calib_tsc,
            calib_mono_ns: self.header.calib_mono_ns,
            flags: self.header.flags,
        }
    }

    /// Converts a record timestamp to CLOCK_MONOTONIC ns.
    pub fn tsc_to_mono_ns(&self, tsc: u64) -> u64 {
        self.clock().to_mono_ns(tsc)
    }

    /// Number of reactors.
    pub fn reactors(&self) -> u32 {
        self.geometry.reactors
    }

    fn word(&self, index: usize) -> u64 {
        if self.truncated.load(Ordering::Relaxed) {
            return 0;
        }
        self.map
            .words()
            .get(index)
            .map_or(0, |w| w.load(Ordering::Relaxed))
    }

    /// The live enabled-group mask.
    pub fn enabled_mask(&self) -> u64 {
        self.word(HEADER_MASK_WORD)
    }

    /// True once the producer marked the file exited (clean shutdown).
    pub fn producer_exited(&self) -> bool {
        self.word(HEADER_STATE_WORD) == STATE_EXITED
    }

    /// The producer is running: not marked exited and its pid exists.
    pub fn producer_alive(&self) -> bool {
        !self.producer_exited() && pid_alive(self.header.pid)
    }

    fn ring_word(&self, reactor: u32) -> Option<usize> {
        (reactor < self.geometry.reactors).then(|| {
            ((self.geometry.rings_offset + u64::from(reactor) * self.geometry.ring_stride) / 8)
                as usize
        })
    }

    /// The head (records ever written) of a reactor's ring.
    pub fn head(&self, reactor: u32) -> Option<u64> {
        self.ring_word(reactor)
            .map(|w| self.word(w + RING_HEAD_WORD))
    }

    /// The writer thread id and core a reactor's writer attached with, if it did.
    pub fn writer_thread(&self, reactor: u32) -> Option<(u32, Option<u32>)> {
        let w = self.ring_word(reactor)?;
        let tid = self.word(w + RING_TID_WORD);
        if tid == 0 {
            return None;
        }
        let core = self.word(w + RING_CORE_WORD);
        Some((tid as u32, core.checked_sub(1).map(|c| c as u32)))
    }

    /// A cursor over reactor `reactor`'s ring.
    pub fn cursor(&self, reactor: u32, start: Start) -> Result<RingCursor> {
        let ring_word = self.ring_word(reactor).ok_or(Error::NoSuchReactor {
            index: reactor,
            reactors: self.geometry.reactors,
        })?;
        let mut c = RingCursor {
            map: Arc::clone(&self.map),
            reactor,
            head_word: ring_word + RING_HEAD_WORD,
            slots_word: ring_word + (self.geometry.ring_control_size / 8) as usize,
            records: self.geometry.ring_records,
            pos: 0,
            lost_total: 0,
            anomalies: 0,
        };
        let head = c.load_head();
        c.pos = match start {
            Start::Oldest => head.saturating_sub(c.records),
            Start::Now => head,
        };
        Ok(c)
    }

    /// A time-ordered merge over every reactor's ring. Records are held back until they are
    /// `hold_back_ticks` older than the `now` passed to [`MergedCursor::poll`], which lets a record
    /// stamped just before a poll but published just after it still come out in order.
    pub fn merged(&self, start: Start, hold_back_ticks: u64) -> Result<MergedCursor> {
        let cursors = (0..self.geometry.reactors)
            .map(|r| self.cursor(r, start))
            .collect::<Result<Vec<_>>>()?;
        let n = cursors.len();
        Ok(MergedCursor {
            cursors,
            pending: vec![VecDeque::new(); n],
            hold_back: hold_back_ticks,
            last_emitted: 0,
            late: 0,
            scratch: Vec::new(),
        })
    }

    fn counters_words(&self, reactor: u32) -> Option<&[AtomicU64]> {
        if reactor >= self.geometry.reactors {
            return None;
        }
        let start = ((self.geometry.counters_offset
            + u64::from(reactor) * self.geometry.counters_stride)
            / 8) as usize;
        let len = (self.geometry.counters_stride / 8) as usize;
        self.map.words().get(start..start + len)
    }

    /// A snapshot of a reactor's counters. Each value is read atomically and is monotonic across
    /// snapshots (gauges excepted); values are not mutually consistent to the instant.
    pub fn counters(&self, reactor: u32) -> Option<CountersSnapshot> {
        if !self.intact() {
            return None;
        }
        let words = self.counters_words(reactor)?;
        let load = |range: std::ops::Range<usize>| -> Vec<u64> {
            words
                .get(range)
                .map(|ws| ws.iter().map(|w| w.load(Ordering::Relaxed)).collect())
                .unwrap_or_default()
        };
        let totals = ReactorCounters::from_words(&load(0..ReactorCounters::WORDS));
        let base = (self.geometry.offsets.qpairs / 8) as usize;
        let stride = (self.geometry.qpair_counters_size / 8) as usize;
        let qpairs = (0..self.geometry.qpair_slots as usize)
            .map(|s| {
                let at = base + s * stride;
                // A file of an older minor version may have fewer words per slot.
                QpairCounters::from_words(&load(at..at + QpairCounters::WORDS.min(stride)))
            })
            .collect();
        Some(CountersSnapshot {
            reactor,
            totals,
            qpairs,
        })
    }

    /// Which host the qpair bound to `slot` serves (the controller's host NQN, or the host's
    /// address when its NQN is empty), as the target wrote it at Fabrics Connect; `None` before
    /// the Connect, for a slot out of range, or from a file older than ABI 1.6. Read under the
    /// block's sequence lock (a few retries while the writer is mid-update, then `None`); bytes
    /// that are not UTF-8 read as U+FFFD.
    pub fn qpair_host(&self, reactor: u32, slot: u16) -> Option<String> {
        if !self.intact()
            || u32::from(slot) >= self.geometry.qpair_slots
            || self.geometry.qpair_counters_size < QPAIR_HOST_OFFSET + QPAIR_HOST_SIZE
        {
            return None;
        }
        let words = self.counters_words(reactor)?;
        let at = ((self.geometry.offsets.qpairs
            + u64::from(slot) * self.geometry.qpair_counters_size
            + QPAIR_HOST_OFFSET)
            / 8) as usize;
        let block = words.get(at..at + 2 + QPAIR_HOST_MAX / 8)?;
        for _ in 0..8 {
            let s1 = block[0].load(Ordering::Acquire);
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let len = block[1].load(Ordering::Relaxed);
            let mut bytes = Vec::with_capacity(QPAIR_HOST_MAX);
            for w in &block[2..] {
                bytes.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
            }
            fence(Ordering::Acquire);
            if block[0].load(Ordering::Relaxed) != s1 {
                continue;
            }
            let len = usize::try_from(len).ok()?.min(QPAIR_HOST_MAX);
            if len == 0 {
                return None;
            }
            bytes.truncate(len);
            return Some(String::from_utf8_lossy(&bytes).into_owned());
        }
        None
    }

    fn histogram_at(&self, reactor: u32, byte_offset: u64) -> Option<Histogram> {
        if self.truncated.load(Ordering::Relaxed) {
            return None;
        }
        let words = self.counters_words(reactor)?;
        let at = (byte_offset / 8) as usize;
        let block = words.get(at..at + HIST_WORDS)?;
        let copy: Vec<u64> = block.iter().map(|w| w.load(Ordering::Relaxed)).collect();
        Some(Histogram::from_block(&copy))
    }

    /// A reactor's latency histogram for qpair slot `slot`.
    pub fn qpair_histogram(&self, reactor: u32, slot: u16) -> Option<Histogram> {
        if u32::from(slot) >= self.geometry.qpair_slots {
            return None;
        }
        let off = self.geometry.offsets.qpair_hists + u64::from(slot) * self.geometry.hist_size;
        self.histogram_at(reactor, off)
    }

    /// A reactor's latency histogram for stage `stage`.
    pub fn stage_histogram(&self, reactor: u32, stage: u32) -> Option<Histogram> {
        if stage >= self.geometry.stages {
            return None;
        }
        let off = self.geometry.offsets.stage_hists + u64::from(stage) * self.geometry.hist_size;
        self.histogram_at(reactor, off)
    }
}

/// A reactor's counters at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CountersSnapshot {
    /// The reactor.
    pub reactor: u32,
    /// Per-reactor totals.
    pub totals: ReactorCounters,
    /// Per-qpair slot counters.
    pub qpairs: Vec<QpairCounters>,
}

/// What one poll of a cursor returned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollStats {
    /// Records appended to the output.
    pub records: usize,
    /// Records that were overwritten (or being overwritten) before they could be copied.
    pub lost: u64,
}

/// Reads new records of one ring.
///
/// Protocol (see `RingWriter`): load `head` (Acquire) as `h1`; copy records
/// `[max(pos, h1 - N), h1)` with Relaxed loads; Acquire fence; load `head` again as `h2`. Record
/// `i` is valid iff `i + N > h2`: a writer that had touched its slot again (record `i + N`) would
/// have published `head >= i + N` before doing so. Invalid (overwritten or torn) records are
/// dropped and counted as lost, so a torn record is never returned.
pub struct RingCursor {
    map: Arc<Mapping>,
    reactor: u32,
    head_word: usize,
    slots_word: usize,
    records: u64,
    pos: u64,
    lost_total: u64,
    anomalies: u64,
}

impl std::fmt::Debug for RingCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingCursor")
            .field("reactor", &self.reactor)
            .field("pos", &self.pos)
            .field("lost_total", &self.lost_total)
            .finish()
    }
}

impl RingCursor {
    fn head_atomic(&self) -> Option<&AtomicU64> {
        self.map.words().get(self.head_word)
    }

    fn load_head(&self) -> u64 {
        self.head_atomic().map_or(0, |h| h.load(Ordering::Acquire))
    }

    /// Appends the records written since the last poll to `out`, in write order.
    pub fn poll(&mut self, out: &mut Vec<Record>) -> PollStats {
        let words = self.map.words();
        let Some(head) = words.get(self.head_word) else {
            return PollStats::default();
        };
        let h1 = head.load(Ordering::Acquire);
        if h1 < self.pos {
            // A head never goes backwards; the file is corrupt or was rewritten. Resynchronize.
            self.pos = h1;
            self.anomalies += 1;
            return PollStats::default();
        }
        if h1 == self.pos {
            return PollStats::default();
        }
        let n = self.records;
        let start = self.pos.max(h1.saturating_sub(n));
        let first = out.len();
        out.reserve((h1 - start) as usize);
        for i in start..h1 {
            let at = self.slots_word + ((i & (n - 1)) as usize) * 4;
            let Some(slot) = words.get(at..at + 4) else {
                break;
            };
            out.push(Record::from_words([
                slot[0].load(Ordering::Relaxed),
                slot[1].load(Ordering::Relaxed),
                slot[2].load(Ordering::Relaxed),
                slot[3].load(Ordering::Relaxed),
            ]));
        }
        fence(Ordering::Acquire);
        let h2 = head.load(Ordering::Relaxed);
        // Valid iff i + n > h2, i.e. i >= h2 - (n - 1) (written so that it cannot overflow).
        let valid_from = start.max(h2.saturating_sub(n - 1)).min(h1);
        let invalid = (valid_from - start) as usize;
        out.drain(first..first + invalid.min(out.len() - first));
        let lost = valid_from - self.pos;
        self.lost_total += lost;
        self.pos = h1;
        PollStats {
            records: out.len() - first,
            lost,
        }
    }

    /// Moves the cursor to the ring's current head without reading what lies between (a reader
    /// that reads for part of the time); returns the records passed over. They are not counted
    /// as lost: the reader chose not to read them.
    pub fn skip_to_head(&mut self) -> u64 {
        let h = self.load_head();
        if h < self.pos {
            self.pos = h;
            self.anomalies += 1;
            return 0;
        }
        let skipped = h - self.pos;
        self.pos = h;
        skipped
    }

    /// The reactor this cursor reads.
    pub fn reactor(&self) -> u32 {
        self.reactor
    }

    /// Index of the next record this cursor expects.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Records lost over the cursor's life.
    pub fn lost_total(&self) -> u64 {
        self.lost_total
    }

    /// Times the head was seen going backwards (corrupt or rewritten file).
    pub fn anomalies(&self) -> u64 {
        self.anomalies
    }

    /// Records written but not yet polled (may exceed the ring size when lapped).
    pub fn backlog(&self) -> u64 {
        self.load_head().saturating_sub(self.pos)
    }
}

/// A record and the reactor whose ring it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// Reactor index.
    pub reactor: u32,
    /// The record.
    pub record: Record,
}

/// What one poll of a [`MergedCursor`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MergedStats {
    /// Events appended.
    pub events: usize,
    /// Records lost across all rings in this poll.
    pub lost: u64,
    /// Events emitted with a timestamp older than one already emitted (arrived after the
    /// hold-back window); they are still emitted.
    pub late: u64,
}

/// Merges every reactor's ring into one stream ordered by timestamp (ties: lower reactor first).
pub struct MergedCursor {
    cursors: Vec<RingCursor>,
    pending: Vec<VecDeque<Record>>,
    hold_back: u64,
    last_emitted: u64,
    late: u64,
    scratch: Vec<Record>,
}

impl std::fmt::Debug for MergedCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MergedCursor")
            .field("cursors", &self.cursors)
            .field("late", &self.late)
            .finish()
    }
}

impl MergedCursor {
    /// Polls every ring and appends, in time order, the events stamped at or before
    /// `now_tsc - hold_back_ticks`; later ones stay pending for the next poll.
    pub fn poll(&mut self, now_tsc: u64, out: &mut Vec<Event>) -> MergedStats {
        let lost = self.fill();
        self.emit(Some(now_tsc.saturating_sub(self.hold_back)), out, lost)
    }

    /// Polls every ring and appends everything pending, in time order (at shutdown, or when the
    /// producer has exited).
    pub fn drain(&mut self, out: &mut Vec<Event>) -> MergedStats {
        let lost = self.fill();
        self.emit(None, out, lost)
    }

    /// Records lost over the merge's life, across rings.
    pub fn lost_total(&self) -> u64 {
        self.cursors.iter().map(RingCursor::lost_total).sum()
    }

    /// Late events over the merge's life.
    pub fn late_total(&self) -> u64 {
        self.late
    }

    fn fill(&mut self) -> u64 {
        let mut lost = 0;
        for (c, q) in self.cursors.iter_mut().zip(self.pending.iter_mut()) {
            self.scratch.clear();
            lost += c.poll(&mut self.scratch).lost;
            q.extend(self.scratch.drain(..));
        }
        lost
    }

    fn emit(&mut self, watermark: Option<u64>, out: &mut Vec<Event>, lost: u64) -> MergedStats {
        let first = out.len();
        let mut late = 0;
        loop {
            let mut best: Option<(usize, u64)> = None;
            for (i, q) in self.pending.iter().enumerate() {
                if let Some(r) = q.front() {
                    if best.is_none_or(|(_, t)| r.tsc < t) {
                        best = Some((i, r.tsc));
                    }
                }
            }
            let Some((i, tsc)) = best else { break };
            if watermark.is_some_and(|w| tsc > w) {
                break;
            }
            let Some(record) = self.pending[i].pop_front() else {
                break;
            };
            if tsc < self.last_emitted {
                late += 1;
            }
            self.last_emitted = self.last_emitted.max(tsc);
            out.push(Event {
                reactor: self.cursors[i].reactor,
                record,
            });
        }
        self.late += late;
        MergedStats {
            events: out.len() - first,
            lost,
            late,
        }
    }
}
