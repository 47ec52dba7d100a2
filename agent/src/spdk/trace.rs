//! SPDK's tracepoint file (`/dev/shm/<app>_trace.pid<PID>`, v26.01 `struct spdk_trace_file`),
//! read without disturbing the target.
//!
//! Layout (little-endian, offsets from the file's start), as SPDK v26.01 writes it:
//! `file_size`, `tsc_rate`, `tpoint_mask[20]`, `tname[1024][16]`, `owner_type[256]`
//! (`{type, id_prefix}`), `object[256]` (`{type, id_prefix}`), `tpoint[1280]` (190 bytes each: name,
//! id, owner and object type, `new_object`, `num_args`, 8 argument descriptions `{name[14], type,
//! size}`, 16 relations `{object_type, arg_index}`), `num_owners`, `owner_description_size`,
//! `lcore_history_offsets[1024]`, `owner_offset`; then one `spdk_trace_history` per lcore (`lcore`,
//! `num_entries`, `tpoint_count[1280]`, `next_entry`, then `num_entries` 32-byte entries
//! `{tsc, tpoint_id, owner_id, size, object_id, args[8]}`), then the owner table (`{tsc, type,
//! description[owner_description_size]}` packed). Arguments longer than the entry's 8 bytes continue
//! in the next ring slots, marked with tpoint id 1280 and the same tsc.
//!
//! Reading: the file is read with positioned reads (`pread`) on a read-only descriptor, never
//! mapped writable and never locked: the target's reactors keep writing their rings while we copy
//! them. [`SpdkTrace::snapshot`] decodes a whole file the way SPDK's own `spdk_trace` does (same
//! entries, same object numbering); [`SpdkTrace::poll`] reads only what is new since the last call
//! and detects a lapped read from each ring's monotonic `next_entry` counter.
//!
//! Threading: an [`SpdkTrace`] is owned by one thread (the agent's sampling thread).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

/// Tracepoint groups (`SPDK_TRACE_MAX_GROUP_ID`).
pub const MAX_GROUP_ID: usize = 20;
/// Tracepoint ids (`SPDK_TRACE_MAX_TPOINT_ID`); also the id of a continuation slot.
pub const MAX_TPOINT_ID: usize = MAX_GROUP_ID * 64;
/// Lcores (`SPDK_TRACE_MAX_LCORE`).
pub const MAX_LCORE: usize = 1024;
const THREAD_NAME_LEN: usize = 16;
const MAX_ARGS: usize = 8;
const MAX_RELATIONS: usize = 16;

const OFF_TSC_RATE: u64 = 8;
const OFF_TPOINT_MASK: u64 = 16;
const OFF_OWNER_TYPE: u64 =
    OFF_TPOINT_MASK + 8 * MAX_GROUP_ID as u64 + (MAX_LCORE * THREAD_NAME_LEN) as u64;
const OFF_OBJECT: u64 = OFF_OWNER_TYPE + 2 * 256;
const OFF_TPOINT: u64 = OFF_OBJECT + 2 * 256;
/// `sizeof(struct spdk_trace_tpoint)`.
pub const TPOINT_SIZE: u64 = 24 + 2 + 4 + (16 * MAX_ARGS) as u64 + (2 * MAX_RELATIONS) as u64;
const OFF_NUM_OWNERS: u64 = OFF_TPOINT + TPOINT_SIZE * MAX_TPOINT_ID as u64;
const OFF_LCORE_OFFSETS: u64 = OFF_NUM_OWNERS + 8;
const OFF_OWNER_OFFSET: u64 = OFF_LCORE_OFFSETS + 8 * MAX_LCORE as u64;
/// `sizeof(struct spdk_trace_file)`: the header before the histories.
pub const HEADER_SIZE: u64 = OFF_OWNER_OFFSET + 8;
/// `sizeof(struct spdk_trace_history)` without its entries.
pub const HISTORY_HEADER: u64 = 8 + 8 + 8 * MAX_TPOINT_ID as u64 + 8;
const OFF_NEXT_ENTRY: u64 = HISTORY_HEADER - 8;
/// `sizeof(struct spdk_trace_entry)`.
pub const ENTRY_SIZE: u64 = 32;
/// Bytes of argument data in a continuation slot (`spdk_trace_entry_buffer.data`).
const BUFFER_DATA: usize = 22;
/// Most entries per ring we accept (SPDK's default is 32768; `-n` raises it).
const MAX_ENTRIES: u64 = 1 << 26;

/// Why a trace file cannot be read. Each message is one line naming what was found.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// Opening or reading failed.
    #[error("cannot read SPDK trace file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Shorter than SPDK v26.01's header or than its own `file_size`.
    #[error("SPDK trace file {path} is truncated: {len} bytes, {what} needs {need}")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
        /// What needs more bytes.
        what: &'static str,
        /// How many.
        need: u64,
    },
    /// Not the v26.01 layout (another SPDK version, or not an SPDK trace file at all).
    #[error("{path} is not an SPDK v26.01 trace file: {found}")]
    Layout {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        found: String,
    },
}

/// An argument's kind (`SPDK_TRACE_ARG_TYPE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgKind {
    /// An integer.
    Int,
    /// A pointer (an integer naming an object).
    Ptr,
    /// A string.
    Str,
}

/// One argument description of a tracepoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgDesc {
    /// Name (`qd`, `ctx`).
    pub name: String,
    /// Kind.
    pub kind: ArgKind,
    /// Bytes recorded.
    pub size: u8,
}

/// A registered tracepoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tpoint {
    /// Id (`group * 64 + index`).
    pub id: u16,
    /// Name (`TCP_REQ_NEW`).
    pub name: String,
    /// Owner type of the entries (0: none).
    pub owner_type: u8,
    /// Object type of the entries (0: none).
    pub object_type: u8,
    /// Whether an entry starts a new object.
    pub new_object: bool,
    /// Arguments.
    pub args: Vec<ArgDesc>,
    /// `(object type, argument index)`: arguments that name other objects.
    pub related: Vec<(u8, u8)>,
}

/// One lcore's history ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LcoreRing {
    /// Lcore number.
    pub lcore: u32,
    /// Offset of its `spdk_trace_history` in the file.
    pub offset: u64,
    /// Ring slots.
    pub num_entries: u64,
}

/// The file's description part (constant while the target runs, except the masks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// `file_size`.
    pub file_size: u64,
    /// TSC ticks per second.
    pub tsc_rate: u64,
    /// Enabled tracepoints per group.
    pub tpoint_mask: [u64; MAX_GROUP_ID],
    /// Registered tracepoints by id.
    pub tpoints: BTreeMap<u16, Tpoint>,
    /// Owner type → id prefix character.
    pub owner_prefix: [u8; 256],
    /// Object type → id prefix character.
    pub object_prefix: [u8; 256],
    /// The lcores with a ring.
    pub lcores: Vec<LcoreRing>,
    /// Owner slots.
    pub num_owners: u16,
    /// Bytes of description per owner.
    pub owner_description_size: u16,
    /// Offset of the owner table.
    pub owner_offset: u64,
}

impl Header {
    /// Whether any tracepoint of any group is enabled.
    pub fn tracing_enabled(&self) -> bool {
        self.tpoint_mask.iter().any(|m| *m != 0)
    }

    /// The tracepoint with this name, when registered.
    pub fn tpoint_named(&self, name: &str) -> Option<&Tpoint> {
        self.tpoints.values().find(|t| t.name == name)
    }

    /// Whether tracepoint `id` is enabled now.
    pub fn enabled(&self, id: u16) -> bool {
        let g = usize::from(id >> 6);
        g < MAX_GROUP_ID && self.tpoint_mask[g] & (1u64 << (id & 0x3f)) != 0
    }
}

/// A decoded argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgValue {
    /// Integer or pointer.
    Int(u64),
    /// String.
    Str(String),
}

impl ArgValue {
    /// The integer value (0 for a string).
    pub fn int(&self) -> u64 {
        match self {
            ArgValue::Int(v) => *v,
            ArgValue::Str(_) => 0,
        }
    }
}

/// One decoded trace entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Lcore whose ring holds it.
    pub lcore: u32,
    /// Tracepoint id.
    pub tpoint: u16,
    /// TSC.
    pub tsc: u64,
    /// Owner id (index into the owner table).
    pub owner: u16,
    /// `size` field (bytes of the I/O, for the tracepoints that record one).
    pub size: u32,
    /// Object id (a pointer in the target: the request, the bdev_io…).
    pub object: u64,
    /// Arguments, as the tracepoint describes them.
    pub args: Vec<ArgValue>,
    /// Object number (`r12`) and the object's first TSC, when its start is in the file.
    pub object_index: Option<(u64, u64)>,
    /// A related object `(type, number)`, when an argument names one seen before.
    pub related: Option<(u8, u64)>,
}

/// An owner (a qpair, a poll group's thread, a bdev…).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// Owner id.
    pub id: u16,
    /// Owner type.
    pub owner_type: u8,
    /// TSC at registration.
    pub tsc: u64,
    /// Description (`127.0.0.1:36178 nqn.2016-06.io.spdk:cnode1`, `nvmf_tgt_poll_group_000`).
    pub description: String,
}

/// Where a live reader is in each ring: the next sequence number to read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    next: HashMap<u32, u64>,
}

/// What one [`SpdkTrace::poll`] returned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// New entries, in (tsc, lcore) order.
    pub entries: Vec<Entry>,
    /// Entries overwritten before we could read them (the ring lapped the reader).
    pub lost: u64,
}

enum Backing {
    File(File),
    Mem(Vec<u8>),
}

/// An SPDK trace file, validated against the v26.01 layout.
pub struct SpdkTrace {
    path: PathBuf,
    backing: Backing,
    len: u64,
    header: Header,
}

fn le_u16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn le_u32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn le_u64(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}
fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

impl SpdkTrace {
    /// Opens a trace file read-only and checks its layout.
    pub fn open(path: &Path) -> Result<SpdkTrace, TraceError> {
        let io = |source| TraceError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        SpdkTrace::new(path.to_path_buf(), Backing::File(file), len)
    }

    /// A trace file already in memory (a copy, a decompressed recording).
    pub fn from_bytes(name: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<SpdkTrace, TraceError> {
        let len = bytes.len() as u64;
        SpdkTrace::new(name.into(), Backing::Mem(bytes), len)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The description part as read at open, with the masks re-read by [`SpdkTrace::refresh`].
    pub fn header(&self) -> &Header {
        &self.header
    }

    fn read_at(&self, off: u64, buf: &mut [u8]) -> Result<(), TraceError> {
        let end = off.saturating_add(buf.len() as u64);
        if end > self.len {
            return Err(TraceError::Truncated {
                path: self.path.clone(),
                len: self.len,
                what: "a read of the ring",
                need: end,
            });
        }
        match &self.backing {
            Backing::File(f) => f.read_exact_at(buf, off).map_err(|source| TraceError::Io {
                path: self.path.clone(),
                source,
            }),
            Backing::Mem(m) => {
                // In range: checked against `len` (= m.len()) above.
                buf.copy_from_slice(&m[off as usize..end as usize]);
                Ok(())
            }
        }
    }

    fn read_vec(&self, off: u64, len: u64) -> Result<Vec<u8>, TraceError> {
        let mut v = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
        self.read_at(off, &mut v)?;
        Ok(v)
    }

    fn read_u64(&self, off: u64) -> Result<u64, TraceError> {
        let mut b = [0u8; 8];
        self.read_at(off, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn new(path: PathBuf, backing: Backing, len: u64) -> Result<SpdkTrace, TraceError> {
        let mut t = SpdkTrace {
            path,
            backing,
            len,
            header: Header {
                file_size: 0,
                tsc_rate: 0,
                tpoint_mask: [0; MAX_GROUP_ID],
                tpoints: BTreeMap::new(),
                owner_prefix: [0; 256],
                object_prefix: [0; 256],
                lcores: Vec::new(),
                num_owners: 0,
                owner_description_size: 0,
                owner_offset: 0,
            },
        };
        if len < HEADER_SIZE {
            return Err(TraceError::Truncated {
                path: t.path,
                len,
                what: "the v26.01 header",
                need: HEADER_SIZE,
            });
        }
        let h = t.read_vec(0, HEADER_SIZE)?;
        t.header = t.parse_header(&h)?;
        Ok(t)
    }

    fn layout(&self, found: String) -> TraceError {
        TraceError::Layout {
            path: self.path.clone(),
            found,
        }
    }

    fn parse_header(&self, h: &[u8]) -> Result<Header, TraceError> {
        let file_size = le_u64(h, 0);
        let tsc_rate = le_u64(h, OFF_TSC_RATE as usize);
        if !(HEADER_SIZE..=(1 << 40)).contains(&file_size) {
            return Err(self.layout(format!(
                "its file_size field says {file_size} bytes (a v26.01 header alone is {HEADER_SIZE})"
            )));
        }
        if self.len < file_size {
            return Err(TraceError::Truncated {
                path: self.path.clone(),
                len: self.len,
                what: "its own file_size field",
                need: file_size,
            });
        }
        if !(1_000_000..=100_000_000_000).contains(&tsc_rate) {
            return Err(self.layout(format!("a TSC rate of {tsc_rate} Hz")));
        }
        let mut tpoint_mask = [0u64; MAX_GROUP_ID];
        for (g, m) in tpoint_mask.iter_mut().enumerate() {
            *m = le_u64(h, OFF_TPOINT_MASK as usize + 8 * g);
        }
        let mut owner_prefix = [0u8; 256];
        let mut object_prefix = [0u8; 256];
        for i in 0..256 {
            owner_prefix[i] = h[OFF_OWNER_TYPE as usize + 2 * i + 1];
            object_prefix[i] = h[OFF_OBJECT as usize + 2 * i + 1];
        }
        let mut tpoints = BTreeMap::new();
        for id in 0..MAX_TPOINT_ID {
            let o = (OFF_TPOINT + TPOINT_SIZE * id as u64) as usize;
            let d = &h[o..o + TPOINT_SIZE as usize];
            let name = cstr(&d[..24]);
            if name.is_empty() {
                continue;
            }
            let tid = le_u16(d, 24);
            let num_args = usize::from(d[29]);
            if usize::from(tid) != id || num_args > MAX_ARGS {
                return Err(self.layout(format!(
                    "tracepoint slot {id} holds {name:?} with id {tid} and {num_args} arguments"
                )));
            }
            let mut args = Vec::with_capacity(num_args);
            for k in 0..num_args {
                let a = &d[30 + 16 * k..46 + 16 * k];
                let kind = match a[14] {
                    0 => ArgKind::Int,
                    1 => ArgKind::Ptr,
                    2 => ArgKind::Str,
                    other => {
                        return Err(
                            self.layout(format!("tracepoint {name} argument {k} of type {other}"))
                        )
                    }
                };
                args.push(ArgDesc {
                    name: cstr(&a[..14]),
                    kind,
                    size: a[15],
                });
            }
            let mut related = Vec::new();
            for k in 0..MAX_RELATIONS {
                let r = 158 + 2 * k;
                if d[r] == 0 {
                    break;
                }
                related.push((d[r], d[r + 1]));
            }
            tpoints.insert(
                tid,
                Tpoint {
                    id: tid,
                    name,
                    owner_type: d[26],
                    object_type: d[27],
                    new_object: d[28] != 0,
                    args,
                    related,
                },
            );
        }
        let num_owners = le_u16(h, OFF_NUM_OWNERS as usize);
        let owner_description_size = le_u16(h, OFF_NUM_OWNERS as usize + 2);
        let owner_offset = le_u64(h, OFF_OWNER_OFFSET as usize);
        let owner_bytes = u64::from(num_owners) * (9 + u64::from(owner_description_size));
        if owner_offset < HEADER_SIZE || owner_offset.saturating_add(owner_bytes) != file_size {
            return Err(self.layout(format!(
                "an owner table of {num_owners} × {} bytes at {owner_offset} that does not end at \
                 file_size {file_size}",
                9 + u64::from(owner_description_size)
            )));
        }
        let mut lcores = Vec::new();
        for lcore in 0..MAX_LCORE {
            let off = le_u64(h, OFF_LCORE_OFFSETS as usize + 8 * lcore);
            if off == 0 {
                continue;
            }
            if off < HEADER_SIZE || off.saturating_add(HISTORY_HEADER) > owner_offset {
                return Err(self.layout(format!(
                    "lcore {lcore}'s history at offset {off}, outside {HEADER_SIZE}..{owner_offset}"
                )));
            }
            let mut hh = [0u8; 16];
            self.read_at(off, &mut hh)?;
            let l = le_u32(&hh, 0);
            let n = le_u64(&hh, 8);
            let end = off
                .saturating_add(HISTORY_HEADER)
                .saturating_add(n.saturating_mul(ENTRY_SIZE));
            if l as usize != lcore || n > MAX_ENTRIES || end > owner_offset {
                return Err(self.layout(format!(
                    "lcore {lcore}'s history says lcore {l} with {n} entries of {ENTRY_SIZE} bytes \
                     (ending at {end}, the owner table starts at {owner_offset})"
                )));
            }
            lcores.push(LcoreRing {
                lcore: lcore as u32,
                offset: off,
                num_entries: n,
            });
        }
        Ok(Header {
            file_size,
            tsc_rate,
            tpoint_mask,
            tpoints,
            owner_prefix,
            object_prefix,
            lcores,
            num_owners,
            owner_description_size,
            owner_offset,
        })
    }

    /// Re-reads the enabled masks (`trace_enable_tpoint_group` changes them at run time).
    pub fn refresh(&mut self) -> Result<(), TraceError> {
        let b = self.read_vec(OFF_TPOINT_MASK, 8 * MAX_GROUP_ID as u64)?;
        for g in 0..MAX_GROUP_ID {
            self.header.tpoint_mask[g] = le_u64(&b, 8 * g);
        }
        Ok(())
    }

    /// The registered owners (slots with a registration TSC).
    pub fn owners(&self) -> Result<Vec<Owner>, TraceError> {
        let h = &self.header;
        let size = 9 + u64::from(h.owner_description_size);
        let table = self.read_vec(h.owner_offset, u64::from(h.num_owners) * size)?;
        let mut out = Vec::new();
        for id in 0..usize::from(h.num_owners) {
            let o = id * size as usize;
            let tsc = le_u64(&table, o);
            if tsc == 0 {
                continue;
            }
            out.push(Owner {
                id: id as u16,
                owner_type: table[o + 8],
                tsc,
                description: cstr(&table[o + 9..o + size as usize]),
            });
        }
        Ok(out)
    }

    /// Each ring's `next_entry` now (monotonic count of entries written).
    pub fn next_entries(&self) -> Result<Vec<(u32, u64)>, TraceError> {
        self.header
            .lcores
            .iter()
            .map(|r| Ok((r.lcore, self.read_u64(r.offset + OFF_NEXT_ENTRY)?)))
            .collect()
    }

    fn ring_bytes(&self, r: &LcoreRing) -> Result<Vec<u8>, TraceError> {
        self.read_vec(r.offset + HISTORY_HEADER, r.num_entries * ENTRY_SIZE)
    }

    /// Decodes the whole file as SPDK's `spdk_trace` does: each ring from its oldest to its newest
    /// entry (by TSC), all rings merged by (tsc, lcore) (an entry with the same TSC as an earlier
    /// one on the same lcore replaces it, as in SPDK's parser), objects numbered in that order.
    pub fn snapshot(&self) -> Result<Vec<Entry>, TraceError> {
        let mut rings = Vec::new();
        let mut order: BTreeMap<(u64, u32), (usize, usize)> = BTreeMap::new();
        for r in &self.header.lcores {
            let n = r.num_entries as usize;
            if n == 0 {
                continue;
            }
            let bytes = self.ring_bytes(r)?;
            let tsc = |i: usize| le_u64(&bytes, i * ENTRY_SIZE as usize);
            if tsc(0) == 0 {
                continue;
            }
            let mut filled = n;
            while filled > 0 && tsc(filled - 1) == 0 {
                filled -= 1;
            }
            let (first, last) = if filled == n {
                let (mut first, mut last) = (0, 0);
                for i in 1..n {
                    if tsc(i) < tsc(first) {
                        first = i;
                    }
                    if tsc(i) > tsc(last) {
                        last = i;
                    }
                }
                (first, last)
            } else {
                (0, filled - 1)
            };
            let ri = rings.len();
            let mut i = first;
            loop {
                let o = i * ENTRY_SIZE as usize;
                if usize::from(le_u16(&bytes, o + 8)) != MAX_TPOINT_ID {
                    order.insert((tsc(i), r.lcore), (ri, i));
                }
                if i == last {
                    break;
                }
                i += 1;
                if i == filled {
                    i = 0;
                }
            }
            rings.push((r.lcore, bytes, n));
        }
        let mut objects = ObjectTable::default();
        let mut out = Vec::with_capacity(order.len());
        for (_, (ri, slot)) in order {
            let (lcore, bytes, n) = &rings[ri];
            let ring = RingView {
                bytes,
                slots: *n,
                valid: None,
            };
            // A broken continuation ends the stream, as in SPDK's parser.
            let Some(e) = self.decode(*lcore, &ring, slot, Some(&mut objects)) else {
                break;
            };
            out.push(e);
        }
        Ok(out)
    }

    /// Reads the entries written since the last call (the whole ring on the first call), never
    /// blocking the target: each ring is copied between two reads of its `next_entry`, and slots
    /// the writer may have reused meanwhile are dropped and counted as lost.
    pub fn poll(&self, cursor: &mut Cursor) -> Result<Batch, TraceError> {
        let mut batch = Batch::default();
        for r in &self.header.lcores {
            let n = r.num_entries;
            if n == 0 {
                continue;
            }
            let before = self.read_u64(r.offset + OFF_NEXT_ENTRY)?;
            let bytes = self.ring_bytes(r)?;
            let after = self.read_u64(r.offset + OFF_NEXT_ENTRY)?;
            // Slots holding sequence numbers below `after - n` were (or are being) overwritten.
            let oldest = after.saturating_sub(n);
            let start = match cursor.next.get(&r.lcore) {
                Some(&c) if c > before => before, // the target restarted its ring: resync
                Some(&c) => {
                    if c < oldest {
                        batch.lost += oldest - c;
                    }
                    c.max(oldest)
                }
                None => oldest,
            };
            // Never more than one ring's worth, whatever the counters say (a corrupt or reset
            // `next_entry` must not make us walk billions of sequence numbers).
            let start = start.max(before.saturating_sub(n));
            cursor.next.insert(r.lcore, before);
            let ring = RingView {
                bytes: &bytes,
                slots: n as usize,
                valid: Some((start, before)),
            };
            for seq in start..before {
                let slot = (seq % n) as usize;
                let o = slot * ENTRY_SIZE as usize;
                if usize::from(le_u16(&bytes, o + 8)) == MAX_TPOINT_ID {
                    continue;
                }
                if let Some(e) = self.decode(r.lcore, &ring, slot, None) {
                    batch.entries.push(e);
                }
            }
        }
        batch.entries.sort_by_key(|e| (e.tsc, e.lcore));
        Ok(batch)
    }

    /// Decodes the entry in `slot`, following its continuation slots for long arguments.
    fn decode(
        &self,
        lcore: u32,
        ring: &RingView<'_>,
        slot: usize,
        objects: Option<&mut ObjectTable>,
    ) -> Option<Entry> {
        let e = ring.slot(slot);
        let tsc = le_u64(e, 0);
        let tpoint = le_u16(e, 8);
        let mut entry = Entry {
            lcore,
            tpoint,
            tsc,
            owner: le_u16(e, 10),
            size: le_u32(e, 12),
            object: le_u64(e, 16),
            args: Vec::new(),
            object_index: None,
            related: None,
        };
        let desc = self.header.tpoints.get(&tpoint);
        let mut objects = objects;
        if let (Some(t), Some(objs)) = (desc, objects.as_deref_mut()) {
            let stats = objs.of(t.object_type);
            if t.new_object {
                stats.index.insert(entry.object, (stats.counter, tsc));
                stats.counter += 1;
            }
            if t.object_type != 0 {
                entry.object_index = stats.index.get(&entry.object).copied();
            }
        }
        let Some(t) = desc else {
            return Some(entry);
        };
        // The first argument bytes sit in the entry itself: offset 24, i.e. 14 bytes into the
        // `data` area of the buffer view (which starts at 10).
        let mut cur = slot;
        let mut off = 14usize;
        for a in &t.args {
            let mut value = Vec::with_capacity(usize::from(a.size));
            let mut done = 0usize;
            while done < usize::from(a.size) {
                if off == BUFFER_DATA {
                    cur = ring.next(cur)?;
                    let b = ring.slot(cur);
                    if usize::from(le_u16(b, 8)) != MAX_TPOINT_ID || le_u64(b, 0) != tsc {
                        return None;
                    }
                    off = 0;
                }
                let take = (BUFFER_DATA - off).min(usize::from(a.size) - done);
                let b = ring.slot(cur);
                value.extend_from_slice(&b[10 + off..10 + off + take]);
                off += take;
                done += take;
            }
            entry.args.push(match a.kind {
                ArgKind::Str => ArgValue::Str(cstr(&value)),
                ArgKind::Int | ArgKind::Ptr => {
                    let mut v = [0u8; 8];
                    let k = value.len().min(8);
                    v[..k].copy_from_slice(&value[..k]);
                    ArgValue::Int(u64::from_le_bytes(v))
                }
            });
        }
        if let Some(objs) = objects {
            for (ty, arg) in &t.related {
                let Some(v) = entry.args.get(usize::from(*arg)) else {
                    continue;
                };
                if let Some((idx, _)) = objs.of(*ty).index.get(&v.int()) {
                    entry.related = Some((*ty, *idx));
                    break;
                }
            }
        }
        Some(entry)
    }

    /// The entry as `spdk_trace -j` prints it (the oracle's shape).
    pub fn entry_json(&self, e: &Entry) -> Value {
        let h = &self.header;
        let mut m = Map::new();
        m.insert("lcore".into(), json!(e.lcore));
        m.insert("tpoint".into(), json!(e.tpoint));
        m.insert("tsc".into(), json!(e.tsc));
        let t = h.tpoints.get(&e.tpoint);
        if let Some(t) = t.filter(|t| t.owner_type != 0) {
            let p = char::from(h.owner_prefix[usize::from(t.owner_type)]);
            m.insert("poller".into(), json!(format!("{p}{:02}", e.owner)));
        }
        if e.size != 0 {
            m.insert("size".into(), json!(e.size));
        }
        let object_type = t.map(|t| t.object_type).unwrap_or(0);
        if object_type != 0 || e.object != 0 {
            let mut o = Map::new();
            if let Some((idx, start)) = e.object_index.filter(|_| object_type != 0) {
                let p = char::from(h.object_prefix[usize::from(object_type)]);
                o.insert("id".into(), json!(format!("{p}{idx}")));
                if !t.is_some_and(|t| t.new_object) {
                    o.insert("time".into(), json!(e.tsc.saturating_sub(start)));
                }
            }
            o.insert("value".into(), json!(e.object));
            m.insert("object".into(), Value::Object(o));
        }
        if let Some((ty, idx)) = e.related {
            let p = char::from(h.object_prefix[usize::from(ty)]);
            m.insert("related".into(), json!(format!("{p}{idx}")));
        }
        if t.is_some_and(|t| !t.args.is_empty()) {
            let args: Vec<Value> = e
                .args
                .iter()
                .map(|a| match a {
                    ArgValue::Int(v) => json!(v),
                    ArgValue::Str(s) => json!(s),
                })
                .collect();
            m.insert("args".into(), Value::Array(args));
        }
        Value::Object(m)
    }
}

/// A copy of one ring and which sequence numbers in it are trustworthy.
struct RingView<'a> {
    bytes: &'a [u8],
    slots: usize,
    /// `[start, end)` sequence numbers safe to read (live reads); `None`: every slot (a file).
    valid: Option<(u64, u64)>,
}

impl RingView<'_> {
    fn slot(&self, i: usize) -> &[u8] {
        let o = i * ENTRY_SIZE as usize;
        &self.bytes[o..o + ENTRY_SIZE as usize]
    }

    /// The slot after `i` (wrapping), or `None` when a live read did not cover it.
    fn next(&self, i: usize) -> Option<usize> {
        let n = if i + 1 == self.slots { 0 } else { i + 1 };
        if let Some((start, end)) = self.valid {
            // Is the sequence number living in slot n inside [start, end)? Slots map to the
            // sequence numbers congruent to them modulo the ring size.
            let len = end.saturating_sub(start);
            let rel =
                (n as u64 + self.slots as u64 - start % self.slots as u64) % self.slots as u64;
            if rel >= len {
                return None;
            }
        }
        Some(n)
    }
}

#[derive(Default)]
struct ObjectStats {
    index: HashMap<u64, (u64, u64)>,
    counter: u64,
}

#[derive(Default)]
struct ObjectTable {
    by_type: HashMap<u8, ObjectStats>,
}

impl ObjectTable {
    fn of(&mut self, ty: u8) -> &mut ObjectStats {
        self.by_type.entry(ty).or_default()
    }
}

/// The trace file of process `pid` in `dir` (`<app>_trace.pid<PID>`; nvmf_tgt writes
/// `nvmf_trace.pid<PID>`), when there is exactly one.
pub fn find_for_pid(dir: &Path, pid: u32) -> Option<PathBuf> {
    let suffix = format!("_trace.pid{pid}");
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(&suffix))
        })
        .collect();
    (found.len() == 1).then(|| found.remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_sizes_match_spdk_v26_01() {
        assert_eq!(TPOINT_SIZE, 190);
        assert_eq!(HEADER_SIZE, 268_992);
        assert_eq!(HISTORY_HEADER, 10_264);
    }

    #[test]
    fn a_short_file_is_refused_in_one_line() {
        let e = SpdkTrace::from_bytes("short", vec![0u8; 4096])
            .err()
            .unwrap();
        let s = e.to_string();
        assert!(s.contains("truncated") && s.contains("268992"), "{s}");
        assert!(!s.contains('\n'));
    }

    #[test]
    fn a_foreign_file_is_refused_naming_what_it_found() {
        let mut b = vec![0u8; HEADER_SIZE as usize];
        b[..8].copy_from_slice(b"RINGSIDE");
        let s = SpdkTrace::from_bytes("foreign", b)
            .err()
            .unwrap()
            .to_string();
        assert!(s.contains("not an SPDK v26.01 trace file"), "{s}");
    }

    /// A small valid file: one lcore ring of 8 entries (a 3-argument tracepoint whose arguments
    /// continue into the next slot, and a 1-argument one), 4 owners.
    fn small_file() -> Vec<u8> {
        let n = 8u64;
        let hist = HEADER_SIZE;
        let owners = hist + HISTORY_HEADER + n * ENTRY_SIZE;
        let desc = 16u16;
        let size = owners + 4 * (9 + u64::from(desc));
        let mut b = vec![0u8; size as usize];
        let put = |b: &mut Vec<u8>, off: u64, v: &[u8]| {
            b[off as usize..off as usize + v.len()].copy_from_slice(v)
        };
        put(&mut b, 0, &size.to_le_bytes());
        put(&mut b, OFF_TSC_RATE, &2_600_000_000u64.to_le_bytes());
        put(&mut b, OFF_TPOINT_MASK + 8 * 5, &u64::MAX.to_le_bytes());
        put(&mut b, OFF_OWNER_TYPE + 2 * 48, &[48, b't']);
        put(&mut b, OFF_OBJECT + 2 * 128, &[128, b'r']);
        for (id, name, nargs) in [(320u16, "TCP_REQ_NEW", 1u8), (333, "TCP_REQ_COMPLETED", 3)] {
            let o = OFF_TPOINT + TPOINT_SIZE * u64::from(id);
            put(&mut b, o, name.as_bytes());
            put(&mut b, o + 24, &id.to_le_bytes());
            put(&mut b, o + 26, &[48, 128, u8::from(id == 320), nargs]);
            for k in 0..u64::from(nargs) {
                put(&mut b, o + 30 + 16 * k, b"qd");
                put(&mut b, o + 44 + 16 * k, &[0, 8]);
            }
        }
        put(&mut b, OFF_NUM_OWNERS, &4u16.to_le_bytes());
        put(&mut b, OFF_NUM_OWNERS + 2, &desc.to_le_bytes());
        put(&mut b, OFF_LCORE_OFFSETS, &hist.to_le_bytes());
        put(&mut b, OFF_OWNER_OFFSET, &owners.to_le_bytes());
        put(&mut b, hist + 8, &n.to_le_bytes());
        put(&mut b, hist + OFF_NEXT_ENTRY, &6u64.to_le_bytes());
        let e = hist + HISTORY_HEADER;
        let mut slot = 0u64;
        for (i, tp) in [320u16, 333, 320, 333].iter().enumerate() {
            let tsc = 1000 + i as u64 * 10;
            let o = e + slot * ENTRY_SIZE;
            put(&mut b, o, &tsc.to_le_bytes());
            put(&mut b, o + 8, &tp.to_le_bytes());
            put(&mut b, o + 10, &1u16.to_le_bytes());
            put(&mut b, o + 16, &(0x1000 + (i as u64 / 2)).to_le_bytes());
            put(&mut b, o + 24, &(i as u64).to_le_bytes());
            slot += 1;
            if *tp == 333 {
                // 24 bytes of arguments: 8 in the entry, 16 in the next slot.
                let c = e + slot * ENTRY_SIZE;
                put(&mut b, c, &tsc.to_le_bytes());
                put(&mut b, c + 8, &(MAX_TPOINT_ID as u16).to_le_bytes());
                slot += 1;
            }
        }
        put(&mut b, owners, &5u64.to_le_bytes());
        put(&mut b, owners + 8, &[48]);
        put(&mut b, owners + 9, b"127.0.0.1:4 nqn");
        b
    }

    #[test]
    fn a_small_file_decodes_with_continuations_and_owners() {
        let t = SpdkTrace::from_bytes("small", small_file()).unwrap();
        let e = t.snapshot().unwrap();
        assert_eq!(e.len(), 4);
        assert_eq!(e[1].tpoint, 333);
        assert_eq!(e[1].args.len(), 3);
        assert_eq!(e[1].object_index, Some((0, 1000)));
        assert_eq!(t.owners().unwrap()[0].description, "127.0.0.1:4 nqn");
        let json = t.entry_json(&e[3]);
        assert_eq!(json["object"]["id"], "r1");
        assert_eq!(json["poller"], "t01");
    }

    #[test]
    fn damaged_files_never_panic() {
        let good = small_file();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        // Flip bytes in the interesting places: masks, descriptions, counts, offsets, rings.
        let regions = [
            (0u64, 24u64),
            (OFF_TPOINT + TPOINT_SIZE * 320, TPOINT_SIZE),
            (OFF_TPOINT + TPOINT_SIZE * 333, TPOINT_SIZE),
            (OFF_NUM_OWNERS, 16),
            (HEADER_SIZE, 16),
            (HEADER_SIZE + OFF_NEXT_ENTRY, 8),
            (HEADER_SIZE + HISTORY_HEADER, 8 * ENTRY_SIZE),
        ];
        for _ in 0..2000 {
            let mut b = good.clone();
            for _ in 0..1 + rnd() % 4 {
                let (start, len) = regions[(rnd() % regions.len() as u64) as usize];
                let at = (start + rnd() % len) as usize;
                b[at] = rnd() as u8;
            }
            if let Ok(t) = SpdkTrace::from_bytes("damaged", b) {
                if let Ok(entries) = t.snapshot() {
                    for e in &entries {
                        let _ = t.entry_json(e);
                    }
                }
                let _ = t.poll(&mut Cursor::default());
                let _ = t.owners();
            }
        }
    }

    #[test]
    fn the_trace_file_of_a_pid_is_found_by_spdks_name() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("nvmf_trace.pid42"), b"").unwrap();
        std::fs::write(d.path().join("nvmf_trace.pid421"), b"").unwrap();
        assert_eq!(
            find_for_pid(d.path(), 42),
            Some(d.path().join("nvmf_trace.pid42"))
        );
        assert_eq!(find_for_pid(d.path(), 7), None);
        std::fs::write(d.path().join("spdk_tgt_trace.pid42"), b"").unwrap();
        assert_eq!(
            find_for_pid(d.path(), 42),
            None,
            "two candidates: none chosen"
        );
    }

    #[test]
    fn live_ring_views_cover_only_the_valid_sequences() {
        let bytes = vec![0u8; 4 * ENTRY_SIZE as usize];
        let v = RingView {
            bytes: &bytes,
            slots: 4,
            valid: Some((5, 7)),
        };
        // Sequences 5 and 6 live in slots 1 and 2.
        assert_eq!(v.next(1), Some(2));
        assert_eq!(v.next(2), None);
        assert_eq!(v.next(3), None);
    }
}
