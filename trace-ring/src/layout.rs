//! The on-disk (in-`/dev/shm`) layout: every `#[repr(C)]` type of the ABI, defined once, plus the
//! size formula and the section arithmetic shared by the producer and the consumer.
//!
//! Threading/ownership: this module is pure data and arithmetic (no I/O, no `unsafe`, `core` only).
//! The types here are never placed in shared memory as Rust references: the producer encodes them
//! into the mapping word by word through atomics, and the consumer decodes copies, so a concurrent
//! writer in another process can never invalidate a reference held here.
//!
//! The ABI is little-endian (the crate refuses to build on big-endian targets). Every section offset
//! is 4096-aligned; every field is naturally aligned and there is no implicit padding (tests check).
#![forbid(unsafe_code)]

use core::mem::{offset_of, size_of};

/// File magic, first 8 bytes of every trace file of every ABI version.
pub const MAGIC: [u8; 8] = *b"RINGSIDE";
/// ABI major version: a reader refuses any other major version.
pub const ABI_MAJOR: u16 = 1;
/// ABI minor version: additions that an older reader of the same major can ignore.
pub const ABI_MINOR: u16 = 7;
/// Written as a native `u32`; reads back as this value only on a little-endian machine.
pub const ENDIAN_TAG: u32 = 0x0A0B_0C0D;

/// Every section starts on a page boundary (so the reader can map it and the writer's hot lines
/// never share a page with the description).
pub const PAGE: u64 = 4096;
/// The header section (one page); the `Header` struct uses its beginning.
pub const HEADER_SECTION: u64 = PAGE;
/// Size of one ring record.
pub const RECORD_SIZE: u64 = 32;
/// Size of the control block at the start of each ring (head on its own cache lines).
pub const RING_CONTROL_SIZE: u64 = 128;
/// Size of the per-reactor totals block at the start of each counters section.
pub const REACTOR_COUNTERS_SIZE: u64 = 512;
/// Size of one per-qpair counters slot: two cache lines of counters ([`QpairCounters`]: 9 words
/// used, room to grow in a minor version), then the qpair's host block at
/// [`QPAIR_HOST_OFFSET`] (ABI 1.6; 1.1 files have 64-byte slots, 1.2 ..= 1.5 files 128-byte ones,
/// and their readers skip what they do not know: the stride is in the header).
pub const QPAIR_COUNTERS_SIZE: u64 = 384;
/// Where the host block starts inside a qpair slot (ABI 1.6). The block says which host the
/// qpair serves (the controller's host NQN, or the host address when the NQN is empty), written
/// by the target at Fabrics Connect (slow path) under a sequence lock: word 0 `seq` (odd while
/// being written), word 1 the length in bytes, then the UTF-8 bytes (NUL padded).
pub const QPAIR_HOST_OFFSET: u64 = 128;
/// Size of the host block.
pub const QPAIR_HOST_SIZE: u64 = 256;
/// Longest host string kept (an NQN is at most 223 bytes); longer ones are cut on a char
/// boundary.
pub const QPAIR_HOST_MAX: usize = (QPAIR_HOST_SIZE - 16) as usize;
/// Length of the instance-name field (NUL padded, UTF-8).
pub const NAME_LEN: usize = 64;

/// Limits the producer enforces (and the consumer checks) so that no configuration can produce a
/// surprising file size.
pub const MAX_REACTORS: u32 = 1024;
/// Largest ring (records per reactor): 2^22 records = 128 MiB per reactor.
pub const MAX_RING_RECORDS: u64 = 1 << 22;
/// Qpair slots are indexed by the record's `u16` qpair field.
pub const MAX_QPAIR_SLOTS: u32 = 1 << 16;
/// Maximum number of per-stage histograms per reactor.
pub const MAX_STAGES: u32 = 64;
/// Description blob limit (it is JSON, slow path).
pub const MAX_DESCRIPTION: u64 = 16 << 20;

/// Header `flags`: the "tsc" is CLOCK_MONOTONIC nanoseconds (no usable TSC on this architecture);
/// `tsc_hz` is then 1e9.
pub const FLAG_TSC_IS_MONOTONIC_NS: u64 = 1 << 0;
/// Header `flags`: the CPU reports an invariant TSC (constant rate, synchronized across cores).
pub const FLAG_TSC_INVARIANT: u64 = 1 << 1;

/// Header `state`: the producer is running (or crashed: check the pid).
pub const STATE_RUNNING: u64 = 1;
/// Header `state`: the producer exited cleanly (it also unlinks the file).
pub const STATE_EXITED: u64 = 2;

/// Description formats (`Header::desc_format`).
pub const DESC_FORMAT_JSON: u32 = 1;

/// The header at offset 0. Fields up to `name` are stable across *every* major version, so a
/// producer can recognise (and reclaim) a stale file of another version; the rest is major 1.
///
/// `state` and `enabled_mask` are modified after publication (atomically, by the producer);
/// every other field is written once before the file becomes visible under its final name.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// [`ABI_MAJOR`] of the writer.
    pub abi_major: u16,
    /// [`ABI_MINOR`] of the writer.
    pub abi_minor: u16,
    /// [`ENDIAN_TAG`].
    pub endian_tag: u32,
    /// Process id of the producer (stale-file detection).
    pub pid: u32,
    /// Size in bytes of this struct as the writer knows it (a newer minor may append fields).
    pub header_size: u32,
    /// [`STATE_RUNNING`] or [`STATE_EXITED`]; atomic.
    pub state: u64,
    /// Total file size; the file is never truncated while mapped.
    pub file_size: u64,
    /// Instance name, UTF-8, NUL padded.
    pub name: [u8; NAME_LEN],
    // ---- major 1 ----
    /// `FLAG_*` bits.
    pub flags: u64,
    /// Ticks per second of the record timestamps.
    pub tsc_hz: u64,
    /// Calibration pair: a TSC value ...
    pub calib_tsc: u64,
    /// ... and the CLOCK_MONOTONIC nanoseconds read at the same instant.
    pub calib_mono_ns: u64,
    /// Producer start time, CLOCK_REALTIME ns since the Unix epoch.
    pub start_realtime_ns: u64,
    /// Producer start time, CLOCK_MONOTONIC ns.
    pub start_mono_ns: u64,
    /// Enabled tracepoint groups: bit `g` enables every tracepoint whose id is `g << 8 | n`; atomic.
    pub enabled_mask: u64,
    /// Number of reactors (rings and counters sections).
    pub reactors: u32,
    /// [`RECORD_SIZE`].
    pub record_size: u32,
    /// Records per ring (a power of two).
    pub ring_records: u64,
    /// Offset of reactor 0's ring section.
    pub rings_offset: u64,
    /// Distance between consecutive ring sections.
    pub ring_stride: u64,
    /// [`RING_CONTROL_SIZE`]: records start this far into a ring section.
    pub ring_control_size: u32,
    /// [`REACTOR_COUNTERS_SIZE`].
    pub reactor_counters_size: u32,
    /// Offset of reactor 0's counters section.
    pub counters_offset: u64,
    /// Distance between consecutive counters sections.
    pub counters_stride: u64,
    /// Number of per-qpair slots (counters and latency histogram) per reactor.
    pub qpair_slots: u32,
    /// [`QPAIR_COUNTERS_SIZE`].
    pub qpair_counters_size: u32,
    /// Number of per-stage latency histograms per reactor.
    pub stages: u32,
    /// Size in bytes of one histogram block ([`HIST_BLOCK_SIZE`]).
    pub hist_size: u32,
    /// Number of buckets ([`HIST_BUCKETS`]).
    pub hist_buckets: u32,
    /// Sub-bucket bits ([`HIST_SUB_BITS`]).
    pub hist_sub_bits: u32,
    /// Values at or above `2^hist_max_exp` ns land in the last bucket ([`HIST_MAX_EXP`]).
    pub hist_max_exp: u32,
    /// [`DESC_FORMAT_JSON`].
    pub desc_format: u32,
    /// Offset of the description blob.
    pub desc_offset: u64,
    /// Length of the description blob in bytes.
    pub desc_len: u64,
    /// CRC32C of the description blob.
    pub desc_crc32c: u32,
    /// Zero.
    pub reserved0: u32,
}

/// Bytes of the header every major version shares (magic .. name).
pub const STABLE_PREFIX: usize = offset_of!(Header, flags);

/// One ring record as it sits in memory (little-endian). Word 1 packs `tpoint | qpair << 16 |
/// cid << 32`, which is exactly this struct's layout on a little-endian machine.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Record {
    /// Timestamp in ticks of the header's clock (TSC, or CLOCK_MONOTONIC ns, see the flags).
    pub tsc: u64,
    /// Tracepoint id: `group << 8 | index`; the catalog in the description names it.
    pub tpoint: u16,
    /// Reactor-local qpair slot (`u16::MAX` when the event has no qpair).
    pub qpair: u16,
    /// Command identifier, or another per-event key (0 when none).
    pub cid: u32,
    /// First argument (meaning from the catalog).
    pub arg0: u64,
    /// Second argument (meaning from the catalog).
    pub arg1: u64,
}

impl Record {
    /// The four 64-bit words stored in the ring.
    #[inline(always)]
    pub const fn to_words(&self) -> [u64; 4] {
        [
            self.tsc,
            pack_key(self.tpoint, self.qpair, self.cid),
            self.arg0,
            self.arg1,
        ]
    }

    /// Decodes the four words of a ring slot.
    #[inline]
    pub const fn from_words(w: [u64; 4]) -> Record {
        Record {
            tsc: w[0],
            tpoint: w[1] as u16,
            qpair: (w[1] >> 16) as u16,
            cid: (w[1] >> 32) as u32,
            arg0: w[2],
            arg1: w[3],
        }
    }

    /// The tracepoint group (bit index in the enabled mask).
    #[inline]
    pub const fn group(&self) -> u8 {
        tpoint_group(self.tpoint)
    }
}

/// Packs the middle word of a record.
#[inline(always)]
pub const fn pack_key(tpoint: u16, qpair: u16, cid: u32) -> u64 {
    tpoint as u64 | (qpair as u64) << 16 | (cid as u64) << 32
}

/// Builds a tracepoint id from its group (0..64, the bit in the enabled mask) and index.
#[inline]
pub const fn tpoint_id(group: u8, index: u8) -> u16 {
    ((group as u16 & 63) << 8) | index as u16
}

/// The group (bit of the enabled mask) of a tracepoint id.
#[inline(always)]
pub const fn tpoint_group(tpoint: u16) -> u8 {
    ((tpoint >> 8) & 63) as u8
}

/// Qpair value for events that concern no qpair.
pub const NO_QPAIR: u16 = u16::MAX;

/// Ring control block at the start of each ring section.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingControl {
    /// Number of records ever written (record `i` lives in slot `i % ring_records`); published
    /// with Release after the record's words; atomic.
    pub head: u64,
    /// Pads `head` onto its own 64-byte line.
    pub pad0: [u64; 7],
    /// Linux thread id of the writer once attached (0 before); atomic.
    pub writer_tid: u64,
    /// CPU the writer declared itself pinned to, plus one (0 = unknown); atomic.
    pub writer_core_plus1: u64,
    /// Zero.
    pub pad1: [u64; 6],
}

/// Declares a block of `u64` fields in `repr(C)` order with a decoder from words.
macro_rules! u64_block {
    ($(#[$m:meta])* pub struct $name:ident { $( $(#[$fm:meta])* $field:ident, )* }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $name { $( $(#[$fm])* pub $field: u64, )* }

        impl $name {
            /// Number of `u64` words the struct uses.
            pub const WORDS: usize = size_of::<$name>() / 8;
            /// Field names in word order (for generic dumps and metric catalogs).
            pub const FIELD_NAMES: &'static [&'static str] = &[$(stringify!($field)),*];

            /// Decodes from words in field order; missing words read as 0.
            pub fn from_words(words: &[u64]) -> $name {
                let mut it = words.iter().copied();
                $name { $( $field: it.next().unwrap_or(0), )* }
            }

            /// The fields in word order.
            pub fn to_words(&self) -> [u64; size_of::<$name>() / 8] {
                [$(self.$field),*]
            }
        }
    };
}

u64_block! {
    /// Per-reactor totals at the start of each counters section. All are monotonic totals written by
    /// the reactor alone, except the fields documented as gauges.
    pub struct ReactorCounters {
        /// Poll loop iterations.
        polls,
        /// Iterations that found work.
        busy_polls,
        /// Ticks spent in busy iterations.
        busy_tsc,
        /// Ticks spent in idle iterations.
        idle_tsc,
        /// Gauge: tick of the last completed poll (a stalled reactor stops moving it).
        last_poll_tsc,
        /// Read-class commands completed.
        cmds_read,
        /// Write-class commands completed.
        cmds_write,
        /// Other I/O commands (flush, write zeroes, DSM...).
        cmds_other,
        /// Admin and fabrics commands.
        cmds_admin,
        /// Data bytes moved by read commands.
        bytes_read,
        /// Data bytes moved by write commands.
        bytes_write,
        /// Data bytes moved by other commands.
        bytes_other,
        /// Data bytes moved by admin commands.
        bytes_admin,
        /// Requests that had to wait for a data buffer.
        buffer_waits,
        /// Requests submitted to the backend.
        backend_submitted,
        /// Backend completions.
        backend_completed,
        /// Gauge: requests in flight at the backend.
        backend_inflight,
        /// Gauge: high-water mark of `backend_inflight`.
        backend_inflight_high_water,
        /// Connections (qpairs) accepted by this reactor.
        connections_opened,
        /// Connections closed.
        connections_closed,
        /// Transport errors (socket, digest, PDU).
        errors_transport,
        /// Protocol errors (bad capsule, invalid command).
        errors_protocol,
        /// Backend errors.
        errors_backend,
        /// Commands completed with a non-success status.
        errors_status,
        /// Qpair events whose slot was beyond `qpair_slots` (not accounted per qpair).
        qpair_slot_overflow,
        /// RDMA (ABI 1.3; zero for TCP-only reactors and in 1.2 files): completion-queue polls
        /// (`ibv_poll_cq` calls).
        rdma_cq_polls,
        /// RDMA: polls that returned at least one completion.
        rdma_cq_polls_nonempty,
        /// RDMA: work completions polled (send, RDMA READ/WRITE and receive completions).
        rdma_completions,
        /// RDMA: doorbells rung (`ibv_post_send` and `ibv_post_srq_recv` calls; each posts a
        /// chain of work requests).
        rdma_doorbells,
        /// RDMA: send-queue work requests posted (SEND, RDMA READ, RDMA WRITE).
        rdma_send_wrs,
        /// RDMA: receive work requests posted to the shared receive queue.
        rdma_recv_wrs,
        /// RDMA gauge: send-queue work requests posted and not yet completed, all qpairs.
        rdma_pending_wrs,
        /// RDMA gauge: high-water mark of `rdma_pending_wrs`.
        rdma_pending_wrs_high_water,
        /// RDMA gauge: receive buffers currently posted on the shared receive queue.
        rdma_srq_depth,
        /// RDMA gauge: lowest `rdma_srq_depth` seen since the SRQ was created (0 means a capsule
        /// may have found no receive buffer: receiver-not-ready on the host).
        rdma_srq_low_water,
        /// RDMA gauge: receive buffers the shared receive queue was created with.
        rdma_srq_size,
        /// RDMA: times the shared receive queue was left with no receive posted (monotonic, so a
        /// reader sees whether it happened within its window, unlike the low-water mark).
        rdma_srq_empty,
        /// Fabrics Connects refused (ABI 1.5; zero in older files): each also printed one line
        /// naming the host address, both NQNs, the field and the reason.
        connects_refused,
        /// Connections closed on a protocol error (a TermReq sent, or an RDMA queue pair failed
        /// for a malformed capsule; ABI 1.5), each also printed as one line.
        protocol_closes,
    }
}

u64_block! {
    /// Per-qpair counters slot. A slot is reused by later qpairs: `generation` tells them apart.
    pub struct QpairCounters {
        /// Incremented each time the slot is bound to a new qpair.
        generation,
        /// Caller-defined identity of the current qpair (e.g. `cntlid << 16 | qid`).
        ident,
        /// Commands submitted (monotonic over the slot's lifetime).
        submitted,
        /// Commands completed (monotonic over the slot's lifetime).
        completed,
        /// Gauge: commands outstanding.
        outstanding,
        /// Gauge: high-water mark of `outstanding` for the current generation.
        high_water,
        /// Data bytes moved (monotonic).
        bytes,
        /// Commands completed with an error (monotonic).
        errors,
        /// Gauge: queue size granted to the current qpair (0 = unknown). ABI 1.2; readers of
        /// 1.1 files see 0.
        queue_size,
    }
}

/// Histogram: sub-bucket bits (each power-of-two range splits into `2^HIST_SUB_BITS` buckets, so a
/// bucket is at most 1/16 = 6.25 % wide relative to its lower bound).
pub const HIST_SUB_BITS: u32 = 4;
/// Histogram: values at or above `2^HIST_MAX_EXP` ns (~275 s) are clamped into the last bucket.
pub const HIST_MAX_EXP: u32 = 38;
/// Histogram: bucket count.
pub const HIST_BUCKETS: usize = ((HIST_MAX_EXP - HIST_SUB_BITS + 1) as usize) << HIST_SUB_BITS;
/// Histogram block: words before the buckets (`sum_ns`, `max_ns`, reserved).
pub const HIST_PREFIX_WORDS: usize = 8;
/// Histogram block: total words.
pub const HIST_WORDS: usize = HIST_PREFIX_WORDS + HIST_BUCKETS;
/// Histogram block size in bytes.
pub const HIST_BLOCK_SIZE: u64 = (HIST_WORDS * 8) as u64;

/// Sizing configuration chosen by the producer. The file size is a pure function of it (and of the
/// description length), see [`Sections::compute`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Number of reactors (rings).
    pub reactors: u32,
    /// Records per ring: a power of two, 2 ..= [`MAX_RING_RECORDS`].
    pub ring_records: u64,
    /// Qpair slots per reactor (counters + latency histogram each), 0 ..= [`MAX_QPAIR_SLOTS`].
    pub qpair_slots: u32,
    /// Per-stage latency histograms per reactor, 0 ..= [`MAX_STAGES`].
    pub stages: u32,
}

impl Default for Layout {
    /// One reactor, 16 Ki records (512 KiB), 64 qpair slots, 16 stages.
    fn default() -> Layout {
        Layout {
            reactors: 1,
            ring_records: 1 << 14,
            qpair_slots: 64,
            stages: 16,
        }
    }
}

/// Why a layout is unusable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// `reactors` is 0 or above [`MAX_REACTORS`].
    Reactors,
    /// `ring_records` is not a power of two in 2 ..= [`MAX_RING_RECORDS`].
    RingRecords,
    /// `qpair_slots` above [`MAX_QPAIR_SLOTS`].
    QpairSlots,
    /// `stages` above [`MAX_STAGES`].
    Stages,
    /// Description longer than [`MAX_DESCRIPTION`].
    Description,
}

impl LayoutError {
    /// A lowercase one-line reason.
    pub const fn reason(self) -> &'static str {
        match self {
            LayoutError::Reactors => "reactors must be 1..=1024",
            LayoutError::RingRecords => "ring_records must be a power of two in 2..=4194304",
            LayoutError::QpairSlots => "qpair_slots must be at most 65536",
            LayoutError::Stages => "stages must be at most 64",
            LayoutError::Description => "description must be at most 16 MiB",
        }
    }
}

impl core::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.reason())
    }
}

/// Rounds up to a page.
pub const fn page_align(n: u64) -> u64 {
    n.div_ceil(PAGE) * PAGE
}

/// Where everything lives, computed from a [`Layout`] and the description length.
///
/// Size formula (all terms in bytes, `align` = round up to 4096):
/// ```text
/// file_size = 4096                                              header
///           + align(desc_len)                                   description
///           + reactors * align(128 + 32 * ring_records)         rings
///           + reactors * align(512 + 384 * qpair_slots
///                              + 4544 * (qpair_slots + stages)) counters + histograms
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sections {
    /// Description blob offset.
    pub desc_offset: u64,
    /// Description blob length.
    pub desc_len: u64,
    /// Reactor 0's ring section.
    pub rings_offset: u64,
    /// Ring section stride.
    pub ring_stride: u64,
    /// Reactor 0's counters section.
    pub counters_offset: u64,
    /// Counters section stride.
    pub counters_stride: u64,
    /// Total file size.
    pub file_size: u64,
}

impl Sections {
    /// Validates the layout and computes the sections.
    pub fn compute(layout: &Layout, desc_len: u64) -> Result<Sections, LayoutError> {
        if layout.reactors == 0 || layout.reactors > MAX_REACTORS {
            return Err(LayoutError::Reactors);
        }
        if !layout.ring_records.is_power_of_two()
            || layout.ring_records < 2
            || layout.ring_records > MAX_RING_RECORDS
        {
            return Err(LayoutError::RingRecords);
        }
        if layout.qpair_slots > MAX_QPAIR_SLOTS {
            return Err(LayoutError::QpairSlots);
        }
        if layout.stages > MAX_STAGES {
            return Err(LayoutError::Stages);
        }
        if desc_len > MAX_DESCRIPTION {
            return Err(LayoutError::Description);
        }
        // Within the limits above nothing here can overflow a u64 (max ~ 1024 * 128 MiB + 1024 *
        // 65600 * 4.6 KiB, well under 2^40).
        let reactors = u64::from(layout.reactors);
        let desc_offset = HEADER_SECTION;
        let rings_offset = desc_offset + page_align(desc_len);
        let ring_stride = page_align(RING_CONTROL_SIZE + RECORD_SIZE * layout.ring_records);
        let counters_offset = rings_offset + reactors * ring_stride;
        let counters_stride = counters_section_size(
            REACTOR_COUNTERS_SIZE,
            QPAIR_COUNTERS_SIZE,
            HIST_BLOCK_SIZE,
            u64::from(layout.qpair_slots),
            u64::from(layout.stages),
        );
        let file_size = counters_offset + reactors * counters_stride;
        Ok(Sections {
            desc_offset,
            desc_len,
            rings_offset,
            ring_stride,
            counters_offset,
            counters_stride,
            file_size,
        })
    }
}

/// Minimum size of one counters section (page aligned), from the sizes a header declares.
pub const fn counters_section_size(
    reactor_counters: u64,
    qpair_counters: u64,
    hist: u64,
    qpair_slots: u64,
    stages: u64,
) -> u64 {
    page_align(reactor_counters + qpair_counters * qpair_slots + hist * (qpair_slots + stages))
}

/// Byte offsets inside one counters section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CountersOffsets {
    /// Per-qpair counter slots start here.
    pub qpairs: u64,
    /// Per-qpair histograms start here (one block per slot).
    pub qpair_hists: u64,
    /// Per-stage histograms start here.
    pub stage_hists: u64,
}

impl CountersOffsets {
    /// Offsets for the given declared sizes.
    pub const fn new(reactor_counters: u64, qpair_counters: u64, hist: u64, slots: u64) -> Self {
        CountersOffsets {
            qpairs: reactor_counters,
            qpair_hists: reactor_counters + qpair_counters * slots,
            stage_hists: reactor_counters + qpair_counters * slots + hist * slots,
        }
    }
}

/// Encodes a header into its byte image (little-endian), `HEADER_SECTION` bytes long.
pub fn encode_header(h: &Header, out: &mut [u8; HEADER_SECTION as usize]) {
    out.fill(0);
    macro_rules! put {
        ($field:ident) => {{
            let bytes = h.$field.to_le_bytes();
            let at = offset_of!(Header, $field);
            out[at..at + bytes.len()].copy_from_slice(&bytes);
        }};
    }
    out[..8].copy_from_slice(&h.magic);
    put!(abi_major);
    put!(abi_minor);
    put!(endian_tag);
    put!(pid);
    put!(header_size);
    put!(state);
    put!(file_size);
    let at = offset_of!(Header, name);
    out[at..at + NAME_LEN].copy_from_slice(&h.name);
    put!(flags);
    put!(tsc_hz);
    put!(calib_tsc);
    put!(calib_mono_ns);
    put!(start_realtime_ns);
    put!(start_mono_ns);
    put!(enabled_mask);
    put!(reactors);
    put!(record_size);
    put!(ring_records);
    put!(rings_offset);
    put!(ring_stride);
    put!(ring_control_size);
    put!(reactor_counters_size);
    put!(counters_offset);
    put!(counters_stride);
    put!(qpair_slots);
    put!(qpair_counters_size);
    put!(stages);
    put!(hist_size);
    put!(hist_buckets);
    put!(hist_sub_bits);
    put!(hist_max_exp);
    put!(desc_format);
    put!(desc_offset);
    put!(desc_len);
    put!(desc_crc32c);
    put!(reserved0);
}

/// Decodes the fields common to every major version; `None` when `bytes` is too short.
pub fn decode_stable_prefix(bytes: &[u8]) -> Option<Header> {
    if bytes.len() < STABLE_PREFIX {
        return None;
    }
    let mut page = [0u8; HEADER_SECTION as usize];
    page[..STABLE_PREFIX].copy_from_slice(&bytes[..STABLE_PREFIX]);
    Some(decode_header(&page))
}

/// Decodes a header from its byte image. Pure: validation is the consumer's job.
pub fn decode_header(b: &[u8; HEADER_SECTION as usize]) -> Header {
    macro_rules! get {
        ($field:ident, $ty:ty) => {{
            let at = offset_of!(Header, $field);
            let mut raw = [0u8; size_of::<$ty>()];
            raw.copy_from_slice(&b[at..at + size_of::<$ty>()]);
            <$ty>::from_le_bytes(raw)
        }};
    }
    let mut magic = [0u8; 8];
    magic.copy_from_slice(&b[..8]);
    let mut name = [0u8; NAME_LEN];
    let at = offset_of!(Header, name);
    name.copy_from_slice(&b[at..at + NAME_LEN]);
    Header {
        magic,
        abi_major: get!(abi_major, u16),
        abi_minor: get!(abi_minor, u16),
        endian_tag: get!(endian_tag, u32),
        pid: get!(pid, u32),
        header_size: get!(header_size, u32),
        state: get!(state, u64),
        file_size: get!(file_size, u64),
        name,
        flags: get!(flags, u64),
        tsc_hz: get!(tsc_hz, u64),
        calib_tsc: get!(calib_tsc, u64),
        calib_mono_ns: get!(calib_mono_ns, u64),
        start_realtime_ns: get!(start_realtime_ns, u64),
        start_mono_ns: get!(start_mono_ns, u64),
        enabled_mask: get!(enabled_mask, u64),
        reactors: get!(reactors, u32),
        record_size: get!(record_size, u32),
        ring_records: get!(ring_records, u64),
        rings_offset: get!(rings_offset, u64),
        ring_stride: get!(ring_stride, u64),
        ring_control_size: get!(ring_control_size, u32),
        reactor_counters_size: get!(reactor_counters_size, u32),
        counters_offset: get!(counters_offset, u64),
        counters_stride: get!(counters_stride, u64),
        qpair_slots: get!(qpair_slots, u32),
        qpair_counters_size: get!(qpair_counters_size, u32),
        stages: get!(stages, u32),
        hist_size: get!(hist_size, u32),
        hist_buckets: get!(hist_buckets, u32),
        hist_sub_bits: get!(hist_sub_bits, u32),
        hist_max_exp: get!(hist_max_exp, u32),
        desc_format: get!(desc_format, u32),
        desc_offset: get!(desc_offset, u64),
        desc_len: get!(desc_len, u64),
        desc_crc32c: get!(desc_crc32c, u32),
        reserved0: get!(reserved0, u32),
    }
}

impl Header {
    /// The instance name (up to the first NUL); `None` if it is not UTF-8.
    pub fn name_str(&self) -> Option<&str> {
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
        core::str::from_utf8(&self.name[..end]).ok()
    }
}

/// Word index (in the header page viewed as `u64`s) of the atomic `state` field.
pub const HEADER_STATE_WORD: usize = offset_of!(Header, state) / 8;
/// Word index of the atomic `enabled_mask` field.
pub const HEADER_MASK_WORD: usize = offset_of!(Header, enabled_mask) / 8;
/// Word index of the ring head inside a ring section.
pub const RING_HEAD_WORD: usize = offset_of!(RingControl, head) / 8;
/// Word index of the writer tid inside a ring section.
pub const RING_TID_WORD: usize = offset_of!(RingControl, writer_tid) / 8;
/// Word index of the writer core (+1) inside a ring section.
pub const RING_CORE_WORD: usize = offset_of!(RingControl, writer_core_plus1) / 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_is_fixed() {
        // These offsets are the ABI: changing any of them is a major version bump.
        assert_eq!(offset_of!(Header, magic), 0);
        assert_eq!(offset_of!(Header, abi_major), 8);
        assert_eq!(offset_of!(Header, abi_minor), 10);
        assert_eq!(offset_of!(Header, endian_tag), 12);
        assert_eq!(offset_of!(Header, pid), 16);
        assert_eq!(offset_of!(Header, header_size), 20);
        assert_eq!(offset_of!(Header, state), 24);
        assert_eq!(offset_of!(Header, file_size), 32);
        assert_eq!(offset_of!(Header, name), 40);
        assert_eq!(STABLE_PREFIX, 104);
        assert_eq!(offset_of!(Header, tsc_hz), 112);
        assert_eq!(offset_of!(Header, enabled_mask), 152);
        assert_eq!(offset_of!(Header, reactors), 160);
        assert_eq!(offset_of!(Header, ring_records), 168);
        assert_eq!(offset_of!(Header, counters_offset), 200);
        assert_eq!(offset_of!(Header, desc_offset), 248);
        assert_eq!(offset_of!(Header, desc_crc32c), 264);
        assert_eq!(size_of::<Header>(), 272);
        assert_eq!(core::mem::align_of::<Header>(), 8);
        assert_eq!(HEADER_STATE_WORD * 8, 24);
        assert_eq!(HEADER_MASK_WORD * 8, 152);
    }

    #[test]
    fn header_has_no_padding() {
        // Sum of field sizes equals the struct size: no implicit padding a compiler could fill
        // with garbage or that another language would lay out differently.
        let fields = 8
            + 2
            + 2
            + 4
            + 4
            + 4
            + 8
            + 8
            + NAME_LEN
            + 8 * 7
            + 4
            + 4
            + 8 * 3
            + 4
            + 4
            + 8 * 2
            + 4 * 8
            + 8 * 2
            + 4
            + 4;
        assert_eq!(fields, size_of::<Header>());
    }

    #[test]
    fn record_layout_is_32_bytes_and_matches_words() {
        assert_eq!(size_of::<Record>(), RECORD_SIZE as usize);
        assert_eq!(offset_of!(Record, tsc), 0);
        assert_eq!(offset_of!(Record, tpoint), 8);
        assert_eq!(offset_of!(Record, qpair), 10);
        assert_eq!(offset_of!(Record, cid), 12);
        assert_eq!(offset_of!(Record, arg0), 16);
        assert_eq!(offset_of!(Record, arg1), 24);
        let r = Record {
            tsc: 0x1122_3344_5566_7788,
            tpoint: 0x0102,
            qpair: 0x0304,
            cid: 0x0506_0708,
            arg0: 9,
            arg1: 10,
        };
        let w = r.to_words();
        // Little-endian byte image of word 1 is the struct's bytes 8..16.
        let b = w[1].to_le_bytes();
        assert_eq!(b, [0x02, 0x01, 0x04, 0x03, 0x08, 0x07, 0x06, 0x05]);
        assert_eq!(Record::from_words(w), r);
        assert_eq!(r.group(), 1);
    }

    #[test]
    fn control_and_counter_blocks_fit() {
        assert_eq!(size_of::<RingControl>() as u64, RING_CONTROL_SIZE);
        assert_eq!(RING_HEAD_WORD, 0);
        assert_eq!(
            RING_TID_WORD, 8,
            "writer tid must not share the head's cache line"
        );
        assert!(size_of::<ReactorCounters>() as u64 <= REACTOR_COUNTERS_SIZE);
        assert_eq!(ReactorCounters::WORDS, ReactorCounters::FIELD_NAMES.len());
        assert_eq!(offset_of!(ReactorCounters, polls), 0);
        assert_eq!(offset_of!(ReactorCounters, qpair_slot_overflow), 24 * 8);
        // ABI 1.3 appended the RDMA words after the 1.2 ones.
        assert_eq!(offset_of!(ReactorCounters, rdma_cq_polls), 25 * 8);
        assert_eq!(offset_of!(ReactorCounters, rdma_srq_size), 35 * 8);
        assert_eq!(offset_of!(ReactorCounters, rdma_srq_empty), 36 * 8);
        // ABI 1.5 appended the interop words.
        assert_eq!(offset_of!(ReactorCounters, connects_refused), 37 * 8);
        assert_eq!(offset_of!(ReactorCounters, protocol_closes), 38 * 8);
        assert!(size_of::<QpairCounters>() as u64 <= QPAIR_COUNTERS_SIZE);
        assert_eq!(
            QPAIR_COUNTERS_SIZE % 64,
            0,
            "qpair slots stay cache-line aligned"
        );
        assert_eq!(offset_of!(QpairCounters, high_water), 5 * 8);
        // ABI 1.6: the host block follows the counters' two cache lines, inside the slot.
        assert!(size_of::<QpairCounters>() as u64 <= QPAIR_HOST_OFFSET);
        assert_eq!(QPAIR_HOST_OFFSET + QPAIR_HOST_SIZE, QPAIR_COUNTERS_SIZE);
        const { assert!(QPAIR_HOST_MAX >= 223, "an NQN fits") };
        assert_eq!(HIST_BUCKETS, 560);
        assert_eq!(HIST_BLOCK_SIZE, 4544);
        assert_eq!(
            HIST_BLOCK_SIZE % 64,
            0,
            "histogram blocks stay cache-line aligned"
        );
    }

    #[test]
    fn u64_block_round_trips() {
        let c = ReactorCounters {
            polls: 1,
            qpair_slot_overflow: 25,
            ..Default::default()
        };
        let back = ReactorCounters::from_words(&c.to_words());
        assert_eq!(back, c);
        assert_eq!(ReactorCounters::from_words(&[7]).polls, 7);
    }

    #[test]
    fn header_encode_decode_round_trip() {
        let mut name = [0u8; NAME_LEN];
        name[..4].copy_from_slice(b"demo");
        let h = Header {
            magic: MAGIC,
            abi_major: ABI_MAJOR,
            abi_minor: 3,
            endian_tag: ENDIAN_TAG,
            pid: 1234,
            header_size: size_of::<Header>() as u32,
            state: STATE_RUNNING,
            file_size: 1 << 20,
            name,
            flags: FLAG_TSC_INVARIANT,
            tsc_hz: 2_400_000_000,
            calib_tsc: 5,
            calib_mono_ns: 6,
            start_realtime_ns: 7,
            start_mono_ns: 8,
            enabled_mask: u64::MAX,
            reactors: 2,
            record_size: 32,
            ring_records: 1024,
            rings_offset: 8192,
            ring_stride: 36864,
            ring_control_size: 128,
            reactor_counters_size: 512,
            counters_offset: 1 << 19,
            counters_stride: 4096,
            qpair_slots: 4,
            qpair_counters_size: 64,
            stages: 2,
            hist_size: 4544,
            hist_buckets: 560,
            hist_sub_bits: 4,
            hist_max_exp: 38,
            desc_format: 1,
            desc_offset: 4096,
            desc_len: 99,
            desc_crc32c: 0xdead_beef,
            reserved0: 0,
        };
        let mut page = [0u8; HEADER_SECTION as usize];
        encode_header(&h, &mut page);
        assert_eq!(&page[..8], b"RINGSIDE");
        assert_eq!(&page[16..20], &1234u32.to_le_bytes());
        assert_eq!(decode_header(&page), h);
        assert_eq!(decode_header(&page).name_str(), Some("demo"));
        let prefix = decode_stable_prefix(&page[..STABLE_PREFIX]).expect("prefix decodes");
        assert_eq!(prefix.pid, 1234);
        assert_eq!(
            prefix.flags, 0,
            "fields past the stable prefix are not read"
        );
        assert!(decode_stable_prefix(&page[..STABLE_PREFIX - 1]).is_none());
    }

    #[test]
    fn size_formula_matches_documented_example() {
        let layout = Layout {
            reactors: 2,
            ring_records: 1024,
            qpair_slots: 4,
            stages: 2,
        };
        let s = Sections::compute(&layout, 100).expect("valid layout");
        assert_eq!(s.desc_offset, 4096);
        assert_eq!(s.rings_offset, 8192);
        assert_eq!(s.ring_stride, page_align(128 + 32 * 1024)); // 36864
        assert_eq!(s.ring_stride, 36864);
        assert_eq!(s.counters_offset, 8192 + 2 * 36864);
        // 512 + 4*384 + 6*4544 = 29312 -> 32768
        assert_eq!(s.counters_stride, 32768);
        assert_eq!(s.file_size, 8192 + 2 * 36864 + 2 * 32768);
        // Default layout: document the figure quoted in the README.
        let d = Sections::compute(&Layout::default(), 4000).expect("default valid");
        // 512 + 64*384 + 80*4544 = 388608 -> 389120
        assert_eq!(d.file_size, 4096 + 4096 + 528384 + 389120);
    }

    #[test]
    fn invalid_layouts_are_rejected() {
        let ok = Layout::default();
        let cases = [
            (Layout { reactors: 0, ..ok }, LayoutError::Reactors),
            (
                Layout {
                    reactors: 1025,
                    ..ok
                },
                LayoutError::Reactors,
            ),
            (
                Layout {
                    ring_records: 1000,
                    ..ok
                },
                LayoutError::RingRecords,
            ),
            (
                Layout {
                    ring_records: 1,
                    ..ok
                },
                LayoutError::RingRecords,
            ),
            (
                Layout {
                    ring_records: 1 << 23,
                    ..ok
                },
                LayoutError::RingRecords,
            ),
            (
                Layout {
                    qpair_slots: 65537,
                    ..ok
                },
                LayoutError::QpairSlots,
            ),
            (Layout { stages: 65, ..ok }, LayoutError::Stages),
        ];
        for (layout, err) in cases {
            assert_eq!(Sections::compute(&layout, 0), Err(err), "{layout:?}");
        }
        assert_eq!(
            Sections::compute(&ok, MAX_DESCRIPTION + 1),
            Err(LayoutError::Description)
        );
    }

    #[test]
    fn tpoint_ids_split_into_group_and_index() {
        assert_eq!(tpoint_id(3, 7), 0x0307);
        assert_eq!(tpoint_group(0x0307), 3);
        assert_eq!(tpoint_group(tpoint_id(63, 255)), 63);
        assert_eq!(tpoint_group(0xff00), 63, "groups wrap into the 64-bit mask");
    }
}
