//! The producer side (the target): creating the file, the per-reactor writers, the control handle.
//!
//! Threading/ownership: the target's main thread creates one [`TraceFile`] and keeps it until
//! shutdown; dropping it marks the file exited and unlinks it. For each reactor it takes one
//! [`ReactorWriters`] (a [`RingWriter`] and a [`CountersWriter`]) and moves it to that reactor's
//! thread: they are `Send` but not `Sync`, and each is handed out once, which is what guarantees
//! a single writer per ring and per counters section — the protocol needs no lock and no atomic
//! read-modify-write. [`TraceControl`] (cloneable, `Sync`) lets any thread toggle tracepoint groups.
//! Writers keep the mapping alive on their own, so a reactor outliving the `TraceFile` only writes
//! into an unlinked file.
//!
//! Publication: the file is fully written under a hidden temporary name and then hard-linked to
//! `ringside.<name>` (which fails if the name exists, so two producers never clobber each other),
//! so a reader never sees a half-initialized file. The file is never truncated afterwards.
#![forbid(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::clock::Clock;
use crate::description::Description;
use crate::error::{io_err, Error, Result};
use crate::histogram::{bucket_index, HIST_MAX_WORD, HIST_SUM_WORD};
use crate::layout::{
    encode_header, tpoint_group, CountersOffsets, Header, Layout, QpairCounters, ReactorCounters,
    Record, Sections, ABI_MAJOR, ABI_MINOR, DESC_FORMAT_JSON, ENDIAN_TAG, HEADER_MASK_WORD,
    HEADER_SECTION, HEADER_STATE_WORD, HIST_BLOCK_SIZE, HIST_BUCKETS, HIST_MAX_EXP,
    HIST_PREFIX_WORDS, HIST_SUB_BITS, HIST_WORDS, MAGIC, NAME_LEN, QPAIR_COUNTERS_SIZE,
    QPAIR_HOST_MAX, QPAIR_HOST_OFFSET, REACTOR_COUNTERS_SIZE, RECORD_SIZE, RING_CONTROL_SIZE,
    RING_CORE_WORD, RING_HEAD_WORD, RING_TID_WORD, STABLE_PREFIX, STATE_EXITED, STATE_RUNNING,
};
use crate::mapping::{Mapping, RingSlots, WordWindow};
use crate::tsc;

/// Where trace files live in production.
pub const DEFAULT_DIR: &str = "/dev/shm";
/// File name prefix: `ringside.<name>`.
pub const FILE_PREFIX: &str = "ringside.";

/// Checks an instance name: 1-63 bytes of `[A-Za-z0-9_.-]`, not starting with `.`.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() < NAME_LEN
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName {
            name: name.to_string(),
        })
    }
}

/// The path of an instance's trace file in `dir`.
pub fn instance_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{FILE_PREFIX}{name}"))
}

/// Whether a process exists (signal 0; EPERM means it exists but is not ours).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    let Some(pid) = rustix::process::Pid::from_raw(raw) else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(e) => e != rustix::io::Errno::SRCH,
    }
}

/// Who may read a published trace file (DESIGN §3): its permission bits and group. The default
/// is owner-only (0600), like SPDK's trace files; `0640` with a group lets an unprivileged agent
/// in that group read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// Permission bits (`0o600`, `0o640`...).
    pub mode: u32,
    /// Group id to give the file; `None` keeps the creating process's group.
    pub gid: Option<u32>,
}

impl Default for Access {
    fn default() -> Access {
        Access {
            mode: 0o600,
            gid: None,
        }
    }
}

/// A created, published trace file. Dropping it marks the file exited and removes it.
pub struct TraceFile {
    path: PathBuf,
    map: Arc<Mapping>,
    header: Header,
    sections: Sections,
    layout: Layout,
    clock: Clock,
    taken: Mutex<Vec<bool>>,
    reclaimed: Option<u32>,
    identity: (u64, u64),
    remove_on_drop: bool,
    /// The open file (published or anonymous), for [`TraceFile::reader`].
    file: File,
    /// Whether the file has a name in a directory (false for [`TraceFile::create_anonymous`]).
    published: bool,
}

impl std::fmt::Debug for TraceFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceFile")
            .field("path", &self.path)
            .field("layout", &self.layout)
            .finish()
    }
}

/// Removes the temporary file on every early return of `create`.
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

enum Existing {
    Live(u32),
    Stale(u32),
    Foreign,
    Gone,
}

fn probe_existing(path: &Path) -> Existing {
    let mut prefix = [0u8; STABLE_PREFIX];
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Existing::Gone,
        Err(_) => return Existing::Foreign,
    };
    if file.read_exact(&mut prefix).is_err() {
        return Existing::Foreign;
    }
    let Some(h) = crate::layout::decode_stable_prefix(&prefix) else {
        return Existing::Foreign;
    };
    if h.magic != MAGIC {
        return Existing::Foreign;
    }
    if h.state == STATE_EXITED || !pid_alive(h.pid) {
        Existing::Stale(h.pid)
    } else {
        Existing::Live(h.pid)
    }
}

impl TraceFile {
    /// Creates and publishes `dir/ringside.<name>` for process `pid`, sized by `layout` (see
    /// [`Sections::compute`] for the formula) with `desc` in its description section. A file of
    /// that name left by a dead process (or one marked exited) is reclaimed; one owned by a live
    /// process is an [`Error::InUse`]; a non-trace file is never replaced ([`Error::Foreign`]).
    /// All tracepoint groups start enabled. The clock is [`Clock::calibrated`] (15 ms on the
    /// first call in a process).
    pub fn create(
        dir: &Path,
        name: &str,
        pid: u32,
        desc: &Description,
        layout: &Layout,
    ) -> Result<TraceFile> {
        Self::create_with_clock(dir, name, pid, desc, layout, Clock::calibrated())
    }

    /// [`TraceFile::create`] with an explicit clock.
    pub fn create_with_clock(
        dir: &Path,
        name: &str,
        pid: u32,
        desc: &Description,
        layout: &Layout,
        clock: Clock,
    ) -> Result<TraceFile> {
        Self::create_with_access(dir, name, pid, desc, layout, clock, Access::default())
    }

    /// [`TraceFile::create_with_clock`] with the file's mode and group: they are set on the
    /// private temporary file before it is published, so no reader ever sees it with wider
    /// access than asked.
    pub fn create_with_access(
        dir: &Path,
        name: &str,
        pid: u32,
        desc: &Description,
        layout: &Layout,
        clock: Clock,
        access: Access,
    ) -> Result<TraceFile> {
        validate_name(name)?;
        let (header, sections, blob) = prepare(name, pid, desc, layout, clock)?;
        let final_path = instance_path(dir, name);
        let tmp_path = dir.join(format!(".{FILE_PREFIX}{name}.{pid}.{}.tmp", tsc::mono_ns()));
        let mut guard = TempGuard(Some(tmp_path.clone()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp_path)
            .map_err(io_err("create", &tmp_path))?;
        // The group first, then the mode (fchmod is not subject to the umask).
        if let Some(gid) = access.gid {
            rustix::fs::fchown(&file, None, Some(rustix::fs::Gid::from_raw(gid)))
                .map_err(|e| io_err("set the group of", &tmp_path)(e.into()))?;
        }
        rustix::fs::fchmod(&file, rustix::fs::Mode::from_raw_mode(access.mode & 0o7777))
            .map_err(|e| io_err("set the mode of", &tmp_path)(e.into()))?;
        let (map, identity) = initialize(&file, &tmp_path, &header, &sections, &blob)?;

        let mut reclaimed = None;
        let mut attempts = 0;
        loop {
            match std::fs::hard_link(&tmp_path, &final_path) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 3 => {
                    attempts += 1;
                    match probe_existing(&final_path) {
                        Existing::Live(owner) => {
                            return Err(Error::InUse {
                                path: final_path,
                                pid: owner,
                            })
                        }
                        Existing::Foreign => return Err(Error::Foreign { path: final_path }),
                        Existing::Gone => {}
                        Existing::Stale(owner) => {
                            match std::fs::remove_file(&final_path) {
                                Ok(()) => {}
                                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                                Err(e) => {
                                    return Err(Error::Io {
                                        op: "remove stale",
                                        path: final_path,
                                        source: e,
                                    })
                                }
                            }
                            reclaimed = Some(owner);
                        }
                    }
                }
                Err(e) => {
                    return Err(Error::Io {
                        op: "publish",
                        path: final_path,
                        source: e,
                    })
                }
            }
        }
        drop(guard.0.take().map(std::fs::remove_file));

        Ok(TraceFile {
            path: final_path,
            map: Arc::new(map),
            header,
            sections,
            layout: *layout,
            clock,
            taken: Mutex::new(vec![false; layout.reactors as usize]),
            reclaimed,
            identity,
            remove_on_drop: true,
            file,
            published: true,
        })
    }

    /// A trace file with no name in any directory (a `memfd`): the same layout, writers and
    /// counters as a published one, but no other process finds it. The target uses it when
    /// tracing is off, so its counters page (which its RPC reads) exists all the same.
    pub fn create_anonymous(
        name: &str,
        pid: u32,
        desc: &Description,
        layout: &Layout,
        clock: Clock,
    ) -> Result<TraceFile> {
        validate_name(name)?;
        let (header, sections, blob) = prepare(name, pid, desc, layout, clock)?;
        let path = PathBuf::from(format!("memfd:{FILE_PREFIX}{name}"));
        let fd = rustix::fs::memfd_create(
            format!("{FILE_PREFIX}{name}"),
            rustix::fs::MemfdFlags::CLOEXEC,
        )
        .map_err(|e| io_err("create", &path)(e.into()))?;
        let file = File::from(fd);
        let (map, identity) = initialize(&file, &path, &header, &sections, &blob)?;
        Ok(TraceFile {
            path,
            map: Arc::new(map),
            header,
            sections,
            layout: *layout,
            clock,
            taken: Mutex::new(vec![false; layout.reactors as usize]),
            reclaimed: None,
            identity,
            remove_on_drop: false,
            file,
            published: false,
        })
    }

    /// Whether the file is published in a directory (readers can find it by name).
    pub fn is_published(&self) -> bool {
        self.published
    }

    /// A reader of this very file (through its open descriptor, so it works for an anonymous
    /// file too): the producer's own process reads its counters through it.
    pub fn reader(&self) -> Result<crate::consumer::TraceReader> {
        let file = self
            .file
            .try_clone()
            .map_err(io_err("reopen", &self.path))?;
        crate::consumer::TraceReader::from_file(&self.path, file)
    }

    /// The published path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The header as written at creation (`state` and `enabled_mask` then change live).
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The layout the file was sized for.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Section offsets and the file size.
    pub fn sections(&self) -> &Sections {
        &self.sections
    }

    /// The clock written in the header.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// The pid of the dead producer whose stale file this one replaced, if any.
    pub fn reclaimed_stale_pid(&self) -> Option<u32> {
        self.reclaimed
    }

    /// A handle to toggle tracepoint groups at runtime.
    pub fn control(&self) -> TraceControl {
        TraceControl {
            map: Arc::clone(&self.map),
        }
    }

    /// Hands out reactor `index`'s ring and counters writers; once per reactor.
    pub fn take_reactor(&self, index: u32) -> Result<ReactorWriters> {
        let reactors = self.layout.reactors;
        if index >= reactors {
            return Err(Error::NoSuchReactor { index, reactors });
        }
        {
            let mut taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
            let slot = &mut taken[index as usize];
            if *slot {
                return Err(Error::ReactorTaken { index });
            }
            *slot = true;
        }
        let internal = |what: &str| Error::Corrupt {
            path: self.path.clone(),
            reason: format!("{what} of reactor {index} outside the mapping (internal error)"),
        };
        let ring_word = ((self.sections.rings_offset
            + u64::from(index) * self.sections.ring_stride)
            / 8) as usize;
        let slots = RingSlots::new(
            Arc::clone(&self.map),
            HEADER_MASK_WORD,
            ring_word + RING_HEAD_WORD,
            ring_word + (RING_CONTROL_SIZE / 8) as usize,
            self.layout.ring_records,
        )
        .ok_or_else(|| internal("ring"))?;
        let control = WordWindow::new(
            Arc::clone(&self.map),
            ring_word,
            (RING_CONTROL_SIZE / 8) as usize,
        )
        .ok_or_else(|| internal("ring control"))?;
        let head = slots.head().load(Ordering::Relaxed);
        let counters_word = ((self.sections.counters_offset
            + u64::from(index) * self.sections.counters_stride)
            / 8) as usize;
        let window = WordWindow::new(
            Arc::clone(&self.map),
            counters_word,
            (self.sections.counters_stride / 8) as usize,
        )
        .ok_or_else(|| internal("counters"))?;
        let offs = CountersOffsets::new(
            REACTOR_COUNTERS_SIZE,
            QPAIR_COUNTERS_SIZE,
            HIST_BLOCK_SIZE,
            u64::from(self.layout.qpair_slots),
        );
        Ok(ReactorWriters {
            ring: RingWriter {
                slots,
                control,
                head,
            },
            counters: CountersWriter {
                w: window,
                batch: Batch::default(),
                qpair_slots: self.layout.qpair_slots as usize,
                stages: self.layout.stages as usize,
                qpairs_word: (offs.qpairs / 8) as usize,
                qpair_hists_word: (offs.qpair_hists / 8) as usize,
                stage_hists_word: (offs.stage_hists / 8) as usize,
                ns_mult: self.clock.ns_multiplier(),
            },
        })
    }

    /// Leaves the file in place as if the process had crashed (state stays running, no unlink).
    /// For tests of stale-file handling and for handing the file to a post-mortem tool.
    #[doc(hidden)]
    pub fn abandon(mut self) {
        self.remove_on_drop = false;
    }
}

impl Drop for TraceFile {
    fn drop(&mut self) {
        if !self.remove_on_drop {
            return;
        }
        if let Some(state) = self.map.words().get(HEADER_STATE_WORD) {
            state.store(STATE_EXITED, Ordering::Release);
        }
        // Only unlink the file if the name still refers to our inode (never someone else's).
        if let Ok(meta) = std::fs::metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.identity {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Checks the description against the layout and builds the header, the sections and the
/// description blob of a new file.
fn prepare(
    name: &str,
    pid: u32,
    desc: &Description,
    layout: &Layout,
    clock: Clock,
) -> Result<(Header, Sections, Vec<u8>)> {
    desc.validate()
        .map_err(|reason| Error::InvalidDescription { reason })?;
    if !desc.reactors.is_empty() && desc.reactors.len() != layout.reactors as usize {
        return Err(Error::InvalidDescription {
            reason: format!(
                "{} reactors described but the layout has {}",
                desc.reactors.len(),
                layout.reactors
            ),
        });
    }
    if desc.stages.len() > layout.stages as usize {
        return Err(Error::InvalidDescription {
            reason: format!(
                "{} stages named but the layout has {}",
                desc.stages.len(),
                layout.stages
            ),
        });
    }
    let blob = serde_json::to_vec(desc).map_err(|e| Error::InvalidDescription {
        reason: e.to_string(),
    })?;
    let sections = Sections::compute(layout, blob.len() as u64)
        .map_err(|e| Error::InvalidLayout { reason: e.reason() })?;

    let mut name_field = [0u8; NAME_LEN];
    name_field[..name.len()].copy_from_slice(name.as_bytes());
    let header = Header {
        magic: MAGIC,
        abi_major: ABI_MAJOR,
        abi_minor: ABI_MINOR,
        endian_tag: ENDIAN_TAG,
        pid,
        header_size: std::mem::size_of::<Header>() as u32,
        state: STATE_RUNNING,
        file_size: sections.file_size,
        name: name_field,
        flags: clock.flags,
        tsc_hz: clock.tsc_hz,
        calib_tsc: clock.calib_tsc,
        calib_mono_ns: clock.calib_mono_ns,
        start_realtime_ns: tsc::realtime_ns(),
        start_mono_ns: tsc::mono_ns(),
        enabled_mask: u64::MAX,
        reactors: layout.reactors,
        record_size: RECORD_SIZE as u32,
        ring_records: layout.ring_records,
        rings_offset: sections.rings_offset,
        ring_stride: sections.ring_stride,
        ring_control_size: RING_CONTROL_SIZE as u32,
        reactor_counters_size: REACTOR_COUNTERS_SIZE as u32,
        counters_offset: sections.counters_offset,
        counters_stride: sections.counters_stride,
        qpair_slots: layout.qpair_slots,
        qpair_counters_size: QPAIR_COUNTERS_SIZE as u32,
        stages: layout.stages,
        hist_size: HIST_BLOCK_SIZE as u32,
        hist_buckets: HIST_BUCKETS as u32,
        hist_sub_bits: HIST_SUB_BITS,
        hist_max_exp: HIST_MAX_EXP,
        desc_format: DESC_FORMAT_JSON,
        desc_offset: sections.desc_offset,
        desc_len: blob.len() as u64,
        desc_crc32c: crc32c::crc32c(&blob),
        reserved0: 0,
    };

    Ok((header, sections, blob))
}

/// Sizes `file`, reserves its pages, maps it and writes the header and description; returns
/// the mapping and the file's (device, inode).
fn initialize(
    file: &File,
    tmp_path: &Path,
    header: &Header,
    sections: &Sections,
    blob: &[u8],
) -> Result<(Mapping, (u64, u64))> {
    let tmp_path = tmp_path.to_path_buf();
    file.set_len(sections.file_size)
        .map_err(io_err("size", &tmp_path))?;
    // Reserve the pages now: on a full tmpfs a sparse file would SIGBUS the first reactor
    // that touches a missing page; this turns that into an error here.
    match rustix::fs::fallocate(
        file,
        rustix::fs::FallocateFlags::empty(),
        0,
        sections.file_size,
    ) {
        Ok(()) => {}
        Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => {}
        Err(e) => {
            return Err(Error::Io {
                op: "reserve space for",
                path: tmp_path,
                source: e.into(),
            })
        }
    }
    let map = Mapping::map(file, sections.file_size, true).map_err(io_err("map", &tmp_path))?;
    let mut page = [0u8; HEADER_SECTION as usize];
    encode_header(header, &mut page);
    store_bytes(map.words(), 0, &page);
    store_bytes(map.words(), (sections.desc_offset / 8) as usize, blob);
    let meta = file.metadata().map_err(io_err("stat", &tmp_path))?;
    let identity = (meta.dev(), meta.ino());
    Ok((map, identity))
}

/// Writes `bytes` (zero-padded to whole words, little-endian) at word `at`.
fn store_bytes(words: &[AtomicU64], at: usize, bytes: &[u8]) {
    for (i, chunk) in bytes.chunks(8).enumerate() {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        if let Some(slot) = words.get(at + i) {
            slot.store(u64::from_le_bytes(w), Ordering::Relaxed);
        }
    }
}

/// Toggles tracepoint groups at runtime (any thread; takes effect on the writers' next record).
#[derive(Clone)]
pub struct TraceControl {
    map: Arc<Mapping>,
}

impl std::fmt::Debug for TraceControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceControl")
            .field("mask", &self.enabled_mask())
            .finish()
    }
}

impl TraceControl {
    fn mask(&self) -> Option<&AtomicU64> {
        self.map.words().get(HEADER_MASK_WORD)
    }

    /// The enabled-group mask.
    pub fn enabled_mask(&self) -> u64 {
        self.mask().map_or(0, |m| m.load(Ordering::Relaxed))
    }

    /// Replaces the enabled-group mask.
    pub fn set_enabled_mask(&self, mask: u64) {
        if let Some(m) = self.mask() {
            m.store(mask, Ordering::Relaxed);
        }
    }

    /// Enables or disables one group (bit 0..64).
    pub fn set_group(&self, bit: u8, enabled: bool) {
        if let Some(m) = self.mask() {
            let b = 1u64 << (bit & 63);
            if enabled {
                m.fetch_or(b, Ordering::Relaxed);
            } else {
                m.fetch_and(!b, Ordering::Relaxed);
            }
        }
    }
}

/// One reactor's writers; move it to the reactor's thread.
pub struct ReactorWriters {
    /// The tracepoint ring.
    pub ring: RingWriter,
    /// The counters and histograms.
    pub counters: CountersWriter,
}

impl std::fmt::Debug for ReactorWriters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReactorWriters")
            .field("head", &self.ring.head)
            .finish()
    }
}

/// The single writer of one reactor's ring.
///
/// Protocol (the reader relies on it): for record number `h` the writer issues a Release fence,
/// stores the slot's four words (Relaxed), then stores `head = h + 1` with Release. The fence
/// orders the previous `head = h` store before the slot stores, so a reader that observes any word
/// of record `h` (which overwrites record `h - N`) also observes `head >= h` after its Acquire
/// fence. On x86_64 the fence and Release store compile to plain moves.
pub struct RingWriter {
    slots: RingSlots,
    control: WordWindow,
    head: u64,
}

impl RingWriter {
    /// Whether tracepoint `tpoint`'s group is enabled (one Relaxed load).
    #[inline(always)]
    pub fn enabled(&self, tpoint: u16) -> bool {
        self.slots.mask().load(Ordering::Relaxed) & (1u64 << tpoint_group(tpoint)) != 0
    }

    /// Records an event stamped with the current TSC, if its group is enabled: when disabled this
    /// costs one load and a branch; when enabled, a TSC read and 32 bytes of stores, no lock.
    #[inline(always)]
    pub fn record(&mut self, tpoint: u16, qpair: u16, cid: u32, arg0: u64, arg1: u64) {
        if !self.enabled(tpoint) {
            return;
        }
        self.write(Record {
            tsc: tsc::now(),
            tpoint,
            qpair,
            cid,
            arg0,
            arg1,
        });
    }

    /// Like [`RingWriter::record`] with a timestamp the caller already has (e.g. read once per
    /// poll), saving the TSC read.
    #[inline(always)]
    pub fn record_at(&mut self, tsc: u64, tpoint: u16, qpair: u16, cid: u32, arg0: u64, arg1: u64) {
        if !self.enabled(tpoint) {
            return;
        }
        self.write(Record {
            tsc,
            tpoint,
            qpair,
            cid,
            arg0,
            arg1,
        });
    }

    /// Writes a record unconditionally (ignores the enabled mask).
    #[inline(always)]
    pub fn write(&mut self, r: Record) {
        let h = self.head;
        let w = r.to_words();
        let slot = self.slots.slot(h);
        fence(Ordering::Release);
        slot[0].store(w[0], Ordering::Relaxed);
        slot[1].store(w[1], Ordering::Relaxed);
        slot[2].store(w[2], Ordering::Relaxed);
        slot[3].store(w[3], Ordering::Relaxed);
        self.head = h.wrapping_add(1);
        self.slots.head().store(self.head, Ordering::Release);
    }

    /// Records written so far (the published head).
    pub fn head(&self) -> u64 {
        self.head
    }

    /// Publishes the calling thread's tid and the core it is pinned to in the ring's control
    /// block (readers show them; call it from the reactor thread).
    pub fn attach_current_thread(&mut self, core: Option<u32>) {
        let tid = rustix::thread::gettid().as_raw_nonzero().get() as u64;
        let words = self.control.words();
        if let Some(w) = words.get(RING_TID_WORD) {
            w.store(tid, Ordering::Relaxed);
        }
        if let Some(w) = words.get(RING_CORE_WORD) {
            w.store(core.map_or(0, |c| u64::from(c) + 1), Ordering::Relaxed);
        }
    }
}

/// Opcode classes of the per-reactor command and byte totals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpClass {
    /// Read.
    Read,
    /// Write.
    Write,
    /// Other I/O commands.
    Other,
    /// Admin and fabrics commands.
    Admin,
}

/// Error classes of the per-reactor error totals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Socket, digest or PDU errors.
    Transport,
    /// Malformed capsules, invalid commands.
    Protocol,
    /// Backend I/O errors.
    Backend,
    /// Commands completed with a non-success status.
    Status,
}

macro_rules! rc {
    ($field:ident) => {
        std::mem::offset_of!(ReactorCounters, $field) / 8
    };
}
macro_rules! qc {
    ($field:ident) => {
        std::mem::offset_of!(QpairCounters, $field) / 8
    };
}

const QPAIR_WORDS: usize = (QPAIR_COUNTERS_SIZE / 8) as usize;

/// The single writer of one reactor's counters section. Every update is a Relaxed load and store
/// of a word only this writer stores to (no atomic read-modify-write needed): readers see each
/// total move monotonically, at any time, even if the reactor stalls mid-poll. Events for a qpair
/// slot beyond the layout are counted in `qpair_slot_overflow` instead.
///
/// Batched words: the reactor totals every I/O bumps ([`CountersWriter::command`],
/// [`CountersWriter::backend_submit`], [`CountersWriter::backend_complete`]) are summed in the
/// writer and stored once per poll, by [`CountersWriter::poll`] (or [`CountersWriter::flush`]):
/// a reader sees them at most one poll iteration late, never out of order with the poll count.
pub struct CountersWriter {
    w: WordWindow,
    batch: Batch,
    qpair_slots: usize,
    stages: usize,
    qpairs_word: usize,
    qpair_hists_word: usize,
    stage_hists_word: usize,
    ns_mult: u64,
}

/// The per-I/O reactor totals not yet stored in the page (see [`CountersWriter`]).
#[derive(Clone, Copy, Debug, Default)]
struct Batch {
    /// Commands and bytes by [`OpClass`] (`OpClass::index`).
    cmds: [u64; 4],
    bytes: [u64; 4],
    backend_submitted: u64,
    backend_completed: u64,
    /// `backend_inflight` as it stands (the page gets it at the flush) and its highest value
    /// since the last flush.
    inflight: u64,
    inflight_high: u64,
    /// Whether anything above moved since the last flush.
    dirty: bool,
}

impl OpClass {
    #[inline(always)]
    fn index(self) -> usize {
        match self {
            OpClass::Read => 0,
            OpClass::Write => 1,
            OpClass::Other => 2,
            OpClass::Admin => 3,
        }
    }
}

impl CountersWriter {
    #[inline(always)]
    fn add(&self, idx: usize, v: u64) {
        if let Some(a) = self.w.words().get(idx) {
            a.store(a.load(Ordering::Relaxed).wrapping_add(v), Ordering::Relaxed);
        }
    }

    #[inline(always)]
    fn sub(&self, idx: usize, v: u64) {
        if let Some(a) = self.w.words().get(idx) {
            a.store(
                a.load(Ordering::Relaxed).saturating_sub(v),
                Ordering::Relaxed,
            );
        }
    }

    #[inline(always)]
    fn set(&self, idx: usize, v: u64) {
        if let Some(a) = self.w.words().get(idx) {
            a.store(v, Ordering::Relaxed);
        }
    }

    #[inline(always)]
    fn get(&self, idx: usize) -> u64 {
        self.w
            .words()
            .get(idx)
            .map_or(0, |a| a.load(Ordering::Relaxed))
    }

    #[inline(always)]
    fn raise(&self, idx: usize, v: u64) {
        if let Some(a) = self.w.words().get(idx) {
            if v > a.load(Ordering::Relaxed) {
                a.store(v, Ordering::Relaxed);
            }
        }
    }

    /// The reactor's totals as this writer counted them, batched words included (for the
    /// producer's own reports, e.g. the bytes of a SMART log).
    pub fn totals(&self) -> ReactorCounters {
        let mut words = [0u64; ReactorCounters::WORDS];
        for (i, w) in words.iter_mut().enumerate() {
            *w = self.get(i);
        }
        let mut t = ReactorCounters::from_words(&words);
        let b = &self.batch;
        if b.dirty {
            t.cmds_read += b.cmds[OpClass::Read.index()];
            t.cmds_write += b.cmds[OpClass::Write.index()];
            t.cmds_other += b.cmds[OpClass::Other.index()];
            t.cmds_admin += b.cmds[OpClass::Admin.index()];
            t.bytes_read += b.bytes[OpClass::Read.index()];
            t.bytes_write += b.bytes[OpClass::Write.index()];
            t.bytes_other += b.bytes[OpClass::Other.index()];
            t.bytes_admin += b.bytes[OpClass::Admin.index()];
            t.backend_submitted += b.backend_submitted;
            t.backend_completed += b.backend_completed;
            t.backend_inflight = b.inflight;
            t.backend_inflight_high_water = t.backend_inflight_high_water.max(b.inflight_high);
        }
        t
    }

    /// Stores the batched per-I/O totals into the page ([`CountersWriter::poll`] does it at
    /// the end of every poll iteration; call it where counts must be visible at once).
    #[inline]
    pub fn flush(&mut self) {
        if !self.batch.dirty {
            return;
        }
        let b = self.batch;
        const CMDS: [usize; 4] = [
            rc!(cmds_read),
            rc!(cmds_write),
            rc!(cmds_other),
            rc!(cmds_admin),
        ];
        const BYTES: [usize; 4] = [
            rc!(bytes_read),
            rc!(bytes_write),
            rc!(bytes_other),
            rc!(bytes_admin),
        ];
        for k in 0..4 {
            if b.cmds[k] != 0 {
                self.add(CMDS[k], b.cmds[k]);
                self.add(BYTES[k], b.bytes[k]);
            }
        }
        if b.backend_submitted != 0 {
            self.add(rc!(backend_submitted), b.backend_submitted);
            self.raise(rc!(backend_inflight_high_water), b.inflight_high);
        }
        if b.backend_completed != 0 {
            self.add(rc!(backend_completed), b.backend_completed);
        }
        self.set(rc!(backend_inflight), b.inflight);
        self.batch = Batch {
            inflight: b.inflight,
            inflight_high: b.inflight,
            ..Batch::default()
        };
    }

    /// Accounts one poll-loop iteration of `ticks` ending at `now_tsc` (and stores the batched
    /// per-I/O totals first, so a reader never sees a poll counted before its I/Os).
    #[inline]
    pub fn poll(&mut self, now_tsc: u64, busy: bool, ticks: u64) {
        self.flush();
        self.add(rc!(polls), 1);
        if busy {
            self.add(rc!(busy_polls), 1);
            self.add(rc!(busy_tsc), ticks);
        } else {
            self.add(rc!(idle_tsc), ticks);
        }
        self.set(rc!(last_poll_tsc), now_tsc);
    }

    /// Accounts one completed command of `class` moving `bytes` of data (batched: stored at the
    /// next poll or flush).
    #[inline]
    pub fn command(&mut self, class: OpClass, bytes: u64) {
        let b = &mut self.batch;
        let k = class.index();
        b.cmds[k] = b.cmds[k].wrapping_add(1);
        b.bytes[k] = b.bytes[k].wrapping_add(bytes);
        b.dirty = true;
    }

    /// A request had to wait for a data buffer.
    #[inline]
    pub fn buffer_wait(&mut self) {
        self.add(rc!(buffer_waits), 1);
    }

    /// A request went to the backend (batched: stored at the next poll or flush).
    #[inline]
    pub fn backend_submit(&mut self) {
        let b = &mut self.batch;
        b.backend_submitted = b.backend_submitted.wrapping_add(1);
        b.inflight = b.inflight.wrapping_add(1);
        b.inflight_high = b.inflight_high.max(b.inflight);
        b.dirty = true;
    }

    /// The backend completed a request (batched: stored at the next poll or flush).
    #[inline]
    pub fn backend_complete(&mut self) {
        let b = &mut self.batch;
        b.backend_completed = b.backend_completed.wrapping_add(1);
        b.inflight = b.inflight.saturating_sub(1);
        b.dirty = true;
    }

    /// A connection (qpair) was accepted by this reactor.
    pub fn connection_opened(&mut self) {
        self.add(rc!(connections_opened), 1);
    }

    /// A connection was closed.
    pub fn connection_closed(&mut self) {
        self.add(rc!(connections_closed), 1);
    }

    /// Counts an error.
    #[inline]
    pub fn error(&mut self, class: ErrorClass) {
        self.add(
            match class {
                ErrorClass::Transport => rc!(errors_transport),
                ErrorClass::Protocol => rc!(errors_protocol),
                ErrorClass::Backend => rc!(errors_backend),
                ErrorClass::Status => rc!(errors_status),
            },
            1,
        );
    }

    /// A Fabrics Connect was refused.
    pub fn connect_refused(&mut self) {
        self.add(rc!(connects_refused), 1);
    }

    /// A connection was closed because the host broke the protocol.
    pub fn protocol_close(&mut self) {
        self.add(rc!(protocol_closes), 1);
    }

    /// RDMA: one completion-queue poll that returned `completions` work completions.
    #[inline]
    pub fn rdma_cq_poll(&mut self, completions: u64) {
        self.add(rc!(rdma_cq_polls), 1);
        if completions > 0 {
            self.add(rc!(rdma_cq_polls_nonempty), 1);
            self.add(rc!(rdma_completions), completions);
        }
    }

    /// RDMA: one doorbell posting a chain of `wrs` send-queue work requests.
    #[inline]
    pub fn rdma_post_send(&mut self, wrs: u64) {
        self.add(rc!(rdma_doorbells), 1);
        self.add(rc!(rdma_send_wrs), wrs);
        self.add(rc!(rdma_pending_wrs), wrs);
        let pending = self.get(rc!(rdma_pending_wrs));
        self.raise(rc!(rdma_pending_wrs_high_water), pending);
    }

    /// RDMA: `wrs` send-queue work requests completed (successfully or flushed).
    #[inline]
    pub fn rdma_send_done(&mut self, wrs: u64) {
        self.sub(rc!(rdma_pending_wrs), wrs);
    }

    /// RDMA: `wrs` receive work requests posted to the shared receive queue in `doorbells`
    /// chains.
    #[inline]
    pub fn rdma_post_recv(&mut self, wrs: u64, doorbells: u64) {
        self.add(rc!(rdma_doorbells), doorbells);
        self.add(rc!(rdma_recv_wrs), wrs);
        self.add(rc!(rdma_srq_depth), wrs);
    }

    /// RDMA: a receive buffer of the shared receive queue was consumed by an incoming message
    /// (or flushed); lowers the low-water mark and counts the queue left empty.
    #[inline]
    pub fn rdma_recv_consumed(&mut self) {
        let before = self.get(rc!(rdma_srq_depth));
        self.sub(rc!(rdma_srq_depth), 1);
        let depth = self.get(rc!(rdma_srq_depth));
        if depth < self.get(rc!(rdma_srq_low_water)) {
            self.set(rc!(rdma_srq_low_water), depth);
        }
        if before == 1 {
            self.add(rc!(rdma_srq_empty), 1);
        }
    }

    /// RDMA: the shared receive queue was created with `size` buffers, all posted (sets the
    /// size, the depth and the low-water mark).
    pub fn rdma_srq_ready(&mut self, size: u64) {
        self.set(rc!(rdma_srq_size), size);
        self.set(rc!(rdma_srq_depth), size);
        self.set(rc!(rdma_srq_low_water), size);
    }

    #[inline(always)]
    fn qpair_base(&self, slot: u16) -> Option<usize> {
        let slot = usize::from(slot);
        if slot < self.qpair_slots {
            Some(self.qpairs_word + slot * QPAIR_WORDS)
        } else {
            self.add(rc!(qpair_slot_overflow), 1);
            None
        }
    }

    /// Binds a qpair slot to a new qpair: bumps its generation, records its identity, resets its
    /// gauges (outstanding, high water). Totals stay monotonic over the slot's life.
    pub fn qpair_bind(&mut self, slot: u16, ident: u64) {
        if let Some(b) = self.qpair_base(slot) {
            // The new qpair's host is not known before its Connect: never show the last one's.
            self.host_block(b, b"");
            self.set(b + qc!(ident), ident);
            self.set(b + qc!(outstanding), 0);
            self.set(b + qc!(high_water), 0);
            self.add(b + qc!(generation), 1);
        }
    }

    /// Sets the identity of the qpair bound to a slot once it is known (the target binds a slot
    /// at accept with identity 0 and sets `cntlid << 16 | qid` at Fabrics Connect).
    pub fn qpair_ident(&mut self, slot: u16, ident: u64) {
        if let Some(b) = self.qpair_base(slot) {
            self.set(b + qc!(ident), ident);
        }
    }

    /// The qpair bound to a slot is gone: identity 0 and nothing outstanding (the generation
    /// and the monotonic totals stay, and so does its host until the slot is bound again, so a
    /// reader still counts its last completions for that host).
    pub fn qpair_unbind(&mut self, slot: u16) {
        if let Some(b) = self.qpair_base(slot) {
            self.set(b + qc!(ident), 0);
            self.set(b + qc!(outstanding), 0);
        }
    }

    /// Records which host the qpair bound to a slot serves (its controller's host NQN, or the
    /// host's address when the NQN is empty; ABI 1.6). Slow path (Fabrics Connect): a string cut
    /// at [`QPAIR_HOST_MAX`] bytes on a char boundary, written under the block's sequence lock.
    pub fn qpair_host(&mut self, slot: u16, host: &str) {
        let mut end = host.len().min(QPAIR_HOST_MAX);
        while !host.is_char_boundary(end) {
            end -= 1;
        }
        if let Some(b) = self.qpair_base(slot) {
            self.host_block(b, &host.as_bytes()[..end]);
        }
    }

    /// Writes a host block (`bytes` at most `QPAIR_HOST_MAX` long): `seq` odd, Release fence,
    /// length and bytes, `seq` even with Release (see the README's seqlock protocol).
    fn host_block(&self, slot_word: usize, bytes: &[u8]) {
        let at = slot_word + (QPAIR_HOST_OFFSET / 8) as usize;
        let Some(words) = self.w.words().get(at..at + 2 + QPAIR_HOST_MAX / 8) else {
            return;
        };
        let seq = words[0].load(Ordering::Relaxed);
        words[0].store(seq.wrapping_add(1) | 1, Ordering::Relaxed);
        fence(Ordering::Release);
        words[1].store(bytes.len() as u64, Ordering::Relaxed);
        for (i, w) in words[2..].iter().enumerate() {
            let mut b = [0u8; 8];
            if let Some(chunk) = bytes.get(i * 8..) {
                let n = chunk.len().min(8);
                b[..n].copy_from_slice(&chunk[..n]);
            }
            w.store(u64::from_le_bytes(b), Ordering::Relaxed);
        }
        let even = (seq.wrapping_add(1) | 1).wrapping_add(1);
        words[0].store(even, Ordering::Release);
    }

    /// Records the queue size granted to the qpair bound to a slot.
    pub fn qpair_queue_size(&mut self, slot: u16, size: u32) {
        if let Some(b) = self.qpair_base(slot) {
            self.set(b + qc!(queue_size), u64::from(size));
        }
    }

    /// A command was submitted on a qpair slot.
    #[inline]
    pub fn qpair_submit(&mut self, slot: u16) {
        if let Some(b) = self.qpair_base(slot) {
            self.add(b + qc!(submitted), 1);
            self.add(b + qc!(outstanding), 1);
            let out = self.get(b + qc!(outstanding));
            self.raise(b + qc!(high_water), out);
        }
    }

    /// A command completed on a qpair slot after `latency_ticks` (submission to completion:
    /// ringside-tgt calls it when the response has left, so this is the target's hold time),
    /// moving `bytes`; also records the latency in the slot's histogram.
    #[inline]
    pub fn qpair_complete(&mut self, slot: u16, bytes: u64, latency_ticks: u64, error: bool) {
        if let Some(b) = self.qpair_base(slot) {
            self.add(b + qc!(completed), 1);
            self.sub(b + qc!(outstanding), 1);
            self.add(b + qc!(bytes), bytes);
            if error {
                self.add(b + qc!(errors), 1);
            }
            let ns = Clock::fast_ticks_to_ns(latency_ticks, self.ns_mult);
            self.hist_record(self.qpair_hists_word + usize::from(slot) * HIST_WORDS, ns);
        }
    }

    /// Records a stage latency in ticks into stage `stage`'s histogram (ignored if out of range).
    #[inline]
    pub fn stage_latency_ticks(&mut self, stage: u32, ticks: u64) {
        self.stage_latency_ns(stage, Clock::fast_ticks_to_ns(ticks, self.ns_mult));
    }

    /// Records a stage latency in ns.
    #[inline]
    pub fn stage_latency_ns(&mut self, stage: u32, ns: u64) {
        let stage = stage as usize;
        if stage < self.stages {
            self.hist_record(self.stage_hists_word + stage * HIST_WORDS, ns);
        }
    }

    /// One value into the histogram block at word `base`: the block is bounds-checked once,
    /// then its bucket, sum and max words are updated (Relaxed load + store: one writer).
    #[inline(always)]
    fn hist_record(&self, base: usize, ns: u64) {
        let Some(h) = self.w.words().get(base..base + HIST_WORDS) else {
            return;
        };
        let Ok(h) = <&[AtomicU64; HIST_WORDS]>::try_from(h) else {
            return;
        };
        // `bucket_index` is < HIST_BUCKETS, so this is inside the block.
        let b = &h[(HIST_PREFIX_WORDS + bucket_index(ns)).min(HIST_WORDS - 1)];
        b.store(b.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        let sum = &h[HIST_SUM_WORD];
        sum.store(
            sum.load(Ordering::Relaxed).wrapping_add(ns),
            Ordering::Relaxed,
        );
        let max = &h[HIST_MAX_WORD];
        if ns > max.load(Ordering::Relaxed) {
            max.store(ns, Ordering::Relaxed);
        }
    }
}
