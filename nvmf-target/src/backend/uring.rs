//! The `uring` backend: io_uring on a regular file or a block device.
//!
//! Ownership and threads: [`UringBdev`] is created once at start (it opens the file, with
//! O_DIRECT when the filesystem takes it, and checks that io_uring works at all) and is shared
//! read-only by every reactor. Each reactor opens its own [`UringQueue`] on its own thread, so
//! the ring and its buffers are allocated on the reactor's NUMA node; the queue is never shared
//! and never locks. `submit` turns an operation into submission queue entries without a system
//! call; the reactor's backend poll then makes one `io_uring_enter` (no waiting) for everything
//! queued since the last poll and for pending completion task work, and reaps the completion
//! queue. With spinning reactors (`idle = poll`) the ring runs with `COOP_TASKRUN |
//! TASKRUN_FLAG`: completions are not pushed to the reactor with an interrupt; the kernel raises
//! a flag the poll checks. With the `sleep` idle policy a completion must end the reactor's
//! `epoll_wait`, so the ring keeps the default signalling (TWA_SIGNAL wakes the thread).
//!
//! Buffers: the caller's buffer goes to the kernel as is (zero copy) when it is aligned for
//! O_DIRECT (the TCP request buffers are [`IoBuf`]s, the RDMA data buffers sit in a page-aligned
//! region). A misaligned one is copied through a bounce buffer from a per-queue pool registered
//! with the ring (`IORING_REGISTER_BUFFERS`, so bounced I/O uses `READ_FIXED`/`WRITE_FIXED`), or a
//! one-off aligned allocation when the pool is empty; bounces are counted
//! ([`UringBdev::bounced`]). The caller's buffers are not registered: the transports own them
//! and may grow them between requests. The kernel holds a caller's buffer until the
//! completion is reaped, which is why `quiesce` exists and why dropping a queue waits for
//! everything in flight.
//!
//! Commands: Read/Write → `READ`/`WRITE` at `lba * block_size` (a short transfer is resubmitted
//! for the rest); Flush → `FSYNC` with `DATASYNC` (fdatasync: the data and what is needed to
//! read it back, which includes the device's volatile cache flush); Write Zeroes →
//! `FALLOCATE(ZERO_RANGE | KEEP_SIZE)` (a block device turns it into REQ_OP_WRITE_ZEROES or
//! writes of zero pages), falling back to `WRITE_FIXED`s of a registered zero buffer where the
//! filesystem refuses it (tmpfs); Dataset Management deallocate → one
//! `FALLOCATE(PUNCH_HOLE | KEEP_SIZE)` per range (a file gets a hole; a block device gets
//! unmapping write-zeroes, e.g. a loop device punches its backing file). BLKDISCARD is a
//! blocking ioctl, so it is not used; where punching is refused (a block device without
//! write-zeroes-unmap) deallocation is a successful no-op, which NVMe allows for a namespace
//! that does not promise what deallocated blocks read back as (DLFEAT 0).
//!
//! All `unsafe` of the backend is here: pushing entries that point at buffers (the kernel
//! writes into them later), registering the bounce pool, copies through bounce buffers.
#![allow(unsafe_code)]

use std::fs::{File, Metadata, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use super::ring::{ring_queue_poll, OpSlab, RingCore};
use super::{
    check_range, check_ranges, Bdev, BdevError, BdevOp, BdevQueue, DeviceInfo, IoBuf, IO_ALIGN,
};
use crate::config::BackendKind;

/// Why a uring bdev could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum UringError {
    #[error("cannot open {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is neither a regular file nor a block device")]
    NotStorage { path: PathBuf },
    #[error("{path} is empty: give it a size first (e.g. fallocate -l 1GiB {path})")]
    Empty { path: PathBuf },
    #[error("{path}: size {size} bytes is not a multiple of the block size {block_size}")]
    NotMultiple {
        path: PathBuf,
        size: u64,
        block_size: u32,
    },
    #[error(
        "{path}: the namespace size {want} bytes is larger than the file or device ({size} bytes)"
    )]
    TooSmall { path: PathBuf, want: u64, size: u64 },
    #[error("{path}: block size {asked} is not a multiple of the {min}-byte unit the device takes for direct I/O")]
    BlockSize { path: PathBuf, asked: u32, min: u32 },
    #[error("{path}: the device's direct-I/O unit is {min} bytes; namespaces have 512 or 4096-byte blocks")]
    Unit { path: PathBuf, min: u32 },
    #[error("cannot read the size or block size of {path}")]
    Geometry {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("io_uring is refused by this kernel (io_uring_setup failed: a kernel without io_uring, sysctl kernel.io_uring_disabled, or a seccomp filter such as a container's); the null and malloc backends still work")]
    Refused {
        #[source]
        source: std::io::Error,
    },
    #[error(
        "this kernel's io_uring lacks the {op} operation; the null and malloc backends still work"
    )]
    Missing { op: &'static str },
}

/// Size of the registered zero buffer that Write Zeroes falls back to.
const ZERO_BUF: usize = 256 * 1024;
/// Zero-buffer writes in flight per Write Zeroes command on the fallback path.
const ZERO_WRITES_IN_FLIGHT: u32 = 4;
/// Bytes of bounce buffers per queue (at least 2, at most 32 buffers of `max_io_size`).
const BOUNCE_POOL_BYTES: usize = 4 << 20;
/// `user_data` bits above the op index: which kind of entry completed (and for a zero-buffer
/// write, its length from bit 40 on).
const UD_ZERO_FALLOC: u64 = 1 << 32;
const UD_ZERO_WRITE: u64 = 2 << 32;
const UD_LEN_SHIFT: u32 = 40;
/// Registered buffer indices.
const REG_POOL: u16 = 0;
const REG_ZERO: u16 = 1;

/// A file or block device driven through io_uring.
#[derive(Debug)]
pub struct UringBdev {
    file: File,
    path: PathBuf,
    block_size: u32,
    num_blocks: u64,
    /// Opened with O_DIRECT (false: the filesystem refused it and I/O goes through the page cache).
    direct: bool,
    /// Buffer address alignment direct I/O needs (1 without O_DIRECT).
    mem_align: usize,
    /// Size of one bounce buffer (the largest transfer, MDTS).
    bounce_size: usize,
    device: Option<DeviceInfo>,
    /// Cleared, with one line printed, the first time the filesystem refuses ZERO_RANGE.
    zero_range_ok: AtomicBool,
    /// Cleared, with one line printed, the first time the device refuses PUNCH_HOLE.
    punch_ok: AtomicBool,
    /// Cleared, with one line printed, the first time a queue cannot register its buffers.
    register_ok: AtomicBool,
    bounced: AtomicU64,
    io_errors: AtomicU64,
    /// Completions wake the reactor (it may sleep in epoll): rings without COOP_TASKRUN.
    wake: bool,
}

impl UringBdev {
    /// Opens `path` (a regular file or a block device). `block_size` 0 takes the device's unit;
    /// `size` 0 takes the whole file or device. `max_io` is the largest transfer (bounce size).
    pub fn open(
        path: &Path,
        block_size: u32,
        size: u64,
        max_io: usize,
    ) -> Result<UringBdev, UringError> {
        let p = || path.to_path_buf();
        let open_err = |source| UringError::Open { path: p(), source };
        let meta = std::fs::metadata(path).map_err(open_err)?;
        let blockdev = meta.file_type().is_block_device();
        if !blockdev && !meta.is_file() {
            return Err(UringError::NotStorage { path: p() });
        }
        let open = |direct: bool| {
            let mut flags = libc::O_CLOEXEC;
            if direct {
                flags |= libc::O_DIRECT;
            }
            if blockdev {
                // Claim the device: fails with EBUSY while it is mounted or claimed elsewhere.
                flags |= libc::O_EXCL;
            }
            OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(flags)
                .open(path)
        };
        let (mut file, direct) = match open(true) {
            Ok(f) => (f, true),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                let f = open(false).map_err(open_err)?;
                eprintln!(
                    "ringside-tgt: uring {}: the filesystem refuses O_DIRECT (tmpfs?); using buffered I/O through the page cache",
                    path.display()
                );
                (f, false)
            }
            Err(e) => return Err(open_err(e)),
        };
        let geometry = |source| UringError::Geometry { path: p(), source };
        let total = if blockdev {
            file.seek(SeekFrom::End(0)).map_err(geometry)?
        } else {
            meta.len()
        };
        // The smallest direct-I/O unit (offset and length) and the buffer alignment.
        let (unit, mem_align) = if !direct {
            (512, 1)
        } else {
            let dio = rustix::fs::statx(
                &file,
                "",
                rustix::fs::AtFlags::EMPTY_PATH,
                rustix::fs::StatxFlags::DIOALIGN,
            )
            .ok()
            .filter(|x| {
                x.stx_mask & rustix::fs::StatxFlags::DIOALIGN.bits() != 0
                    && x.stx_dio_offset_align != 0
            })
            .map(|x| (x.stx_dio_offset_align, x.stx_dio_mem_align.max(1)));
            let lbs = if blockdev {
                Some(rustix::fs::ioctl_blksszget(&file).map_err(|e| geometry(e.into()))?)
            } else {
                None
            };
            match (lbs, dio) {
                (Some(l), Some((_, m))) => (l, m as usize),
                (Some(l), None) => (l, l as usize),
                (None, Some((o, m))) => (o, m as usize),
                // An old kernel without STATX_DIOALIGN: the filesystem's block size is safe.
                (None, None) => (meta.blksize().clamp(512, 4096) as u32, 4096),
            }
        };
        let unit = unit.max(512);
        let block_size = if block_size == 0 {
            if unit > 4096 || !unit.is_power_of_two() {
                return Err(UringError::Unit {
                    path: p(),
                    min: unit,
                });
            }
            unit
        } else if block_size % unit != 0 {
            return Err(UringError::BlockSize {
                path: p(),
                asked: block_size,
                min: unit,
            });
        } else {
            block_size
        };
        if total == 0 {
            return Err(UringError::Empty { path: p() });
        }
        let bytes = if size == 0 { total } else { size };
        if bytes > total {
            return Err(UringError::TooSmall {
                path: p(),
                want: bytes,
                size: total,
            });
        }
        if bytes % u64::from(block_size) != 0 {
            return Err(UringError::NotMultiple {
                path: p(),
                size: bytes,
                block_size,
            });
        }
        probe_kernel()?;
        Ok(UringBdev {
            device: device_of(&meta),
            file,
            path: p(),
            block_size,
            num_blocks: bytes / u64::from(block_size),
            direct,
            mem_align: mem_align.max(1),
            bounce_size: max_io.clamp(4096, 16 << 20).next_multiple_of(IO_ALIGN),
            zero_range_ok: AtomicBool::new(true),
            punch_ok: AtomicBool::new(true),
            register_ok: AtomicBool::new(true),
            bounced: AtomicU64::new(0),
            io_errors: AtomicU64::new(0),
            wake: false,
        })
    }

    /// Whether a completion must wake a sleeping reactor (idle policy `sleep`). Without it
    /// (reactors that spin) the rings use `COOP_TASKRUN`: no inter-processor interrupt per
    /// completion, the poll runs the completion work when the kernel flags it. With it, the
    /// kernel signals the reactor's thread (TWA_SIGNAL), which ends its `epoll_wait` at once.
    pub fn wake_reactor(mut self, wake: bool) -> Self {
        self.wake = wake;
        self
    }

    /// Operations copied through a bounce buffer because their buffer was misaligned.
    pub fn bounced(&self) -> u64 {
        self.bounced.load(Ordering::Relaxed)
    }

    /// Whether the file is open with O_DIRECT.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Operations that failed with an I/O error from the kernel.
    pub fn io_errors(&self) -> u64 {
        self.io_errors.load(Ordering::Relaxed)
    }

    fn fd(&self) -> types::Fd {
        types::Fd(self.file.as_raw_fd())
    }

    /// Clears `flag` and prints `why` once, the first time a capability turns out missing.
    fn note_unsupported(&self, flag: &AtomicBool, why: &str) {
        if flag.swap(false, Ordering::Relaxed) {
            eprintln!("ringside-tgt: uring {}: {why}", self.path.display());
        }
    }
}

/// Checks that io_uring works and has every operation used here, on a short-lived thread:
/// closing a ring later queues task work (TWA_SIGNAL) on the thread that created it, which would
/// make a blocking call with a timeout on the caller's thread (e.g. a test's socket read) fail
/// with EINTR.
fn probe_kernel() -> Result<(), UringError> {
    std::thread::scope(|s| {
        s.spawn(probe_kernel_here)
            .join()
            .unwrap_or(Err(UringError::Missing { op: "probe" }))
    })
}

fn probe_kernel_here() -> Result<(), UringError> {
    let ring = IoUring::new(2).map_err(|source| UringError::Refused { source })?;
    let mut probe = io_uring::Probe::new();
    if ring.submitter().register_probe(&mut probe).is_err() {
        return Ok(()); // Before 5.6 there is no probe; the setup itself is the test.
    }
    for (code, op) in [
        (opcode::Read::CODE, "READ"),
        (opcode::Write::CODE, "WRITE"),
        (opcode::ReadFixed::CODE, "READ_FIXED"),
        (opcode::WriteFixed::CODE, "WRITE_FIXED"),
        (opcode::Fsync::CODE, "FSYNC"),
        (opcode::Fallocate::CODE, "FALLOCATE"),
    ] {
        if !probe.is_supported(code) {
            return Err(UringError::Missing { op });
        }
    }
    Ok(())
}

/// The whole disk holding `meta`'s data (the device itself for a block device, the device of
/// its filesystem for a file) and its NUMA node, from sysfs. None for filesystems without a
/// block device (tmpfs, overlay on tmpfs, NFS).
fn device_of(meta: &Metadata) -> Option<DeviceInfo> {
    let dev = if meta.file_type().is_block_device() {
        meta.rdev()
    } else {
        meta.dev()
    };
    let (maj, min) = (rustix::fs::major(dev), rustix::fs::minor(dev));
    let sys = std::fs::canonicalize(format!("/sys/dev/block/{maj}:{min}")).ok()?;
    // A partition's directory sits inside its disk's.
    let disk = if sys.join("partition").exists() {
        sys.parent()?.to_path_buf()
    } else {
        sys
    };
    let name = disk.file_name()?.to_str()?.to_string();
    let mut numa = None;
    let mut d = std::fs::canonicalize(disk.join("device")).ok();
    while let Some(dir) = d {
        if let Ok(s) = std::fs::read_to_string(dir.join("numa_node")) {
            numa = s
                .trim()
                .parse::<i32>()
                .ok()
                .and_then(|n| u32::try_from(n).ok());
            break;
        }
        d = dir
            .parent()
            .filter(|p| p.starts_with("/sys/devices") && *p != Path::new("/sys/devices"))
            .map(Path::to_path_buf);
    }
    Some(DeviceInfo {
        name,
        numa_node: numa,
    })
}

impl Bdev for UringBdev {
    fn kind(&self) -> BackendKind {
        BackendKind::Uring {
            path: self.path.clone(),
        }
    }
    fn block_size(&self) -> u32 {
        self.block_size
    }
    fn num_blocks(&self) -> u64 {
        self.num_blocks
    }
    fn open_queue(self: Arc<Self>, depth: usize) -> Box<dyn BdevQueue> {
        Box::new(UringQueue::new(self, depth))
    }
    fn device(&self) -> Option<DeviceInfo> {
        self.device.clone()
    }
    fn bounced(&self) -> u64 {
        UringBdev::bounced(self)
    }
}

impl Drop for UringBdev {
    fn drop(&mut self) {
        let b = self.bounced();
        if b > 0 {
            eprintln!(
                "ringside-tgt: uring {}: {b} I/Os went through bounce buffers (misaligned buffers)",
                self.path.display()
            );
        }
    }
}

/// Where an operation's data buffer came from.
enum Bounce {
    /// The caller's buffer, used as is.
    None,
    /// Pool slot `slot`; for a read, copy to `user` when done.
    Pool { slot: u16, user: *mut u8 },
    /// A one-off aligned buffer (pool empty; held here until done); for a read, copy to
    /// `user` when done.
    Own { _buf: IoBuf, user: *mut u8 },
}

enum Work {
    Free,
    /// Read or write of `len` bytes at `off` from `ptr`, `done` bytes so far.
    Rw {
        write: bool,
        ptr: *mut u8,
        len: usize,
        off: u64,
        done: usize,
        bounce: Bounce,
    },
    /// Flush or deallocate: only its entries' results matter.
    Simple,
    /// Write Zeroes of `next..end` (bytes); `falloc` while the ZERO_RANGE entry is out.
    Zero {
        next: u64,
        end: u64,
        falloc: bool,
    },
}

/// One operation: `parts` entries of it are queued or in the kernel.
struct Op {
    tag: u64,
    parts: u32,
    err: Option<BdevError>,
    work: Work,
}

/// One reactor's ring on a [`UringBdev`].
pub struct UringQueue {
    /// The ring (none when it could not be created on this reactor: every operation then
    /// fails), its backlog and what is in the kernel.
    rq: RingCore<squeue::Entry, cqueue::Entry>,
    dev: Arc<UringBdev>,
    /// The operations (entries' user data index them), their results for the next poll.
    ops: OpSlab<Op>,
    /// Bounce pool: `BOUNCE_POOL_BYTES / dev.bounce_size` (2..=32) buffers of `dev.bounce_size`
    /// at `pool_base` (owned by `_pool`); `pool_free` lists the free ones.
    _pool: IoBuf,
    pool_base: *mut u8,
    pool_free: Vec<u16>,
    _zero: IoBuf,
    zero_base: *const u8,
    /// Pool and zero buffer are registered with the ring (else plain READ/WRITE are used).
    registered: bool,
    /// One line per queue for the first I/O error; the rest are counted.
    said_error: bool,
}

// SAFETY: the raw pointers are the queue's own pool and zero buffer (owned by fields of the same
// value, heap memory that does not move with it) and callers' buffers that the `BdevQueue`
// contract keeps valid until their operation is reported; the queue is used through `&mut` by one
// thread at a time, so moving it to another thread (it is created on its reactor's thread and
// stays there in practice) cannot race with anything.
unsafe impl Send for UringQueue {}

impl UringQueue {
    fn new(dev: Arc<UringBdev>, depth: usize) -> UringQueue {
        let entries = depth.next_power_of_two().clamp(64, 4096) as u32;
        let ring = if dev.wake {
            IoUring::new(entries)
        } else {
            IoUring::builder()
                .setup_coop_taskrun()
                .setup_taskrun_flag()
                .build(entries)
                .or_else(|_| IoUring::new(entries)) // before 5.19: task work by interrupt
        };
        let ring = match ring {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!(
                    "ringside-tgt: uring {}: cannot create this reactor's io_uring ({e}); its I/O to this namespace fails",
                    dev.path.display()
                );
                None
            }
        };
        let slots = (BOUNCE_POOL_BYTES / dev.bounce_size).clamp(2, 32);
        let mut pool = IoBuf::new(slots * dev.bounce_size);
        let pool_base = pool.as_mut_ptr();
        let zero = IoBuf::new(ZERO_BUF);
        let zero_base = zero.as_ptr();
        let mut registered = false;
        if let Some(r) = ring.as_ref() {
            let iov = [
                libc::iovec {
                    iov_base: pool_base.cast(),
                    iov_len: pool.len(),
                },
                libc::iovec {
                    iov_base: zero_base.cast_mut().cast(),
                    iov_len: zero.len(),
                },
            ];
            // SAFETY: both regions are heap memory owned by this queue (`_pool`, `_zero`), never
            // reallocated, and dropped only after the ring (field order) and after `quiesce` in
            // Drop has waited for every entry using them. Registration pins the pages.
            let res = unsafe { r.submitter().register_buffers(&iov) };
            registered = res.is_ok();
            if let Err(e) = res {
                // Usually RLIMIT_MEMLOCK for a user without CAP_IPC_LOCK.
                dev.note_unsupported(
                    &dev.register_ok,
                    &format!("cannot register the bounce and zero buffers ({e}); they use plain READ/WRITE"),
                );
            }
        }
        UringQueue {
            rq: RingCore::new(ring, depth, format!("uring {}", dev.path.display())),
            ops: OpSlab::new(depth),
            _pool: pool,
            pool_base,
            pool_free: (0..slots as u16).rev().collect(),
            _zero: zero,
            zero_base,
            registered,
            said_error: false,
            dev,
        }
    }

    fn alloc(&mut self, tag: u64, work: Work) -> u32 {
        let op = Op {
            tag,
            parts: 0,
            err: None,
            work,
        };
        self.ops.alloc(op)
    }

    /// Reports `i` as finished and recycles it.
    fn finish(&mut self, i: u32) {
        let op = &mut self.ops[i];
        let work = std::mem::replace(&mut op.work, Work::Free);
        if let Work::Rw {
            write: false,
            bounce: Bounce::Pool { user, .. } | Bounce::Own { user, .. },
            ptr,
            len,
            ..
        } = &work
        {
            if op.err.is_none() {
                // SAFETY: `ptr` is this op's bounce buffer (pool slot or own allocation, `len`
                // bytes, no entry uses it any more: the read completed); `user` is the caller's
                // buffer of `len` bytes, valid until the completion is reported (queue
                // contract) and distinct from the bounce memory.
                unsafe { std::ptr::copy_nonoverlapping(*ptr, *user, *len) };
            }
        }
        if let Work::Rw {
            bounce: Bounce::Pool { slot, .. },
            ..
        } = work
        {
            self.pool_free.push(slot);
        }
        let (tag, r) = (op.tag, op.err.map_or(Ok(()), Err));
        self.ops.finish(i, tag, r);
    }

    /// Queues one entry for op `i`.
    fn push(&mut self, i: u32, e: squeue::Entry) {
        self.ops[i].parts += 1;
        // SAFETY: every entry built here points at memory that stays valid until its completion
        // is reaped: the caller's buffer (queue contract), this queue's pool or zero buffer
        // (freed after Drop's quiesce), or nothing (fsync, fallocate).
        unsafe { self.rq.push(e) };
    }

    /// Reaps every completion and advances the operations they belong to.
    fn reap(&mut self) {
        let done = self.rq.reap();
        for &(ud, res) in &done {
            self.complete(ud, res);
        }
        self.rq.give_back(done);
    }

    fn complete(&mut self, ud: u64, res: i32) {
        let i = ud as u32;
        let Some(op) = self.ops.get_mut(i) else {
            return;
        };
        op.parts = op.parts.saturating_sub(1);
        match &mut op.work {
            Work::Free => return,
            Work::Rw {
                write,
                ptr,
                len,
                off,
                done,
                bounce,
            } => {
                let write = *write;
                if res > 0 {
                    *done += res as usize;
                    if *done < *len {
                        // Short transfer: the rest, from where it stopped.
                        let (p, rest, at) =
                            (ptr.wrapping_add(*done), *len - *done, *off + *done as u64);
                        let fixed = matches!(bounce, Bounce::Pool { .. }) && self.registered;
                        let e = self
                            .rw_entry(write, p, rest, at, fixed)
                            .user_data(u64::from(i));
                        self.push(i, e);
                        return;
                    }
                } else {
                    // 0: end of file inside the namespace (the file shrank under us).
                    let errno = if res == 0 { libc::EIO } else { -res };
                    self.fail(i, errno, if write { "write" } else { "read" });
                }
            }
            Work::Simple => {
                if res == -libc::EOPNOTSUPP {
                    // Deallocate on a device that cannot punch: a hint NVMe lets us drop.
                    let dev = self.dev.clone();
                    dev.note_unsupported(
                        &dev.punch_ok,
                        "the device refuses FALLOC_FL_PUNCH_HOLE: Dataset Management deallocate is a no-op",
                    );
                } else if res < 0 {
                    self.fail(i, -res, "flush/deallocate");
                }
            }
            Work::Zero { next, end, falloc } => {
                if ud & UD_ZERO_FALLOC != 0 {
                    *falloc = false;
                    if res >= 0 {
                        *next = *end; // zeroed in one go
                    } else if res == -libc::EOPNOTSUPP {
                        let dev = self.dev.clone();
                        dev.note_unsupported(
                            &dev.zero_range_ok,
                            "the filesystem refuses FALLOC_FL_ZERO_RANGE: Write Zeroes writes zeroes",
                        );
                    } else {
                        self.fail(i, -res, "write zeroes");
                    }
                } else if res < 0 || res as u64 != ud >> UD_LEN_SHIFT {
                    // A short zero write is rare enough to report instead of resuming.
                    self.fail(i, if res < 0 { -res } else { libc::EIO }, "write zeroes");
                }
                self.zero_more(i);
            }
        }
        if self.ops[i].parts == 0 {
            self.finish(i);
        }
    }

    /// Records an I/O error on op `i`.
    fn fail(&mut self, i: u32, errno: i32, what: &str) {
        let op = &mut self.ops[i];
        op.err.get_or_insert(BdevError::Media);
        if let Work::Zero { next, end, .. } = &mut op.work {
            *next = *end; // issue no more
        }
        self.dev.io_errors.fetch_add(1, Ordering::Relaxed);
        if !self.said_error {
            self.said_error = true;
            eprintln!(
                "ringside-tgt: uring {}: {what} failed: {} (further errors are counted, not printed)",
                self.dev.path.display(),
                std::io::Error::from_raw_os_error(errno)
            );
        }
    }

    /// Keeps up to [`ZERO_WRITES_IN_FLIGHT`] zero-buffer writes out for Write Zeroes op `i`.
    fn zero_more(&mut self, i: u32) {
        loop {
            let op = &mut self.ops[i];
            let Work::Zero { next, end, falloc } = &mut op.work else {
                return;
            };
            if *falloc || *next >= *end || op.parts >= ZERO_WRITES_IN_FLIGHT {
                return;
            }
            let len = (*end - *next).min(ZERO_BUF as u64) as usize;
            let at = *next;
            *next += len as u64;
            let e = self
                .rw_entry(true, self.zero_base.cast_mut(), len, at, self.registered)
                .user_data(u64::from(i) | UD_ZERO_WRITE | (len as u64) << UD_LEN_SHIFT);
            self.push(i, e);
        }
    }

    /// A read or write entry; `fixed` when `ptr` is in the registered pool or zero buffer.
    fn rw_entry(
        &self,
        write: bool,
        ptr: *mut u8,
        len: usize,
        off: u64,
        fixed: bool,
    ) -> squeue::Entry {
        let fd = self.dev.fd();
        let len = len as u32; // at most 16 MiB (MDTS) or the zero buffer
        let in_zero = ptr.cast_const() == self.zero_base;
        let idx = if in_zero { REG_ZERO } else { REG_POOL };
        match (write, fixed) {
            (false, false) => opcode::Read::new(fd, ptr, len).offset(off).build(),
            (true, false) => opcode::Write::new(fd, ptr, len).offset(off).build(),
            (false, true) => opcode::ReadFixed::new(fd, ptr, len, idx)
                .offset(off)
                .build(),
            (true, true) => opcode::WriteFixed::new(fd, ptr, len, idx)
                .offset(off)
                .build(),
        }
    }

    /// Starts a read or write of the caller's `ptr..ptr+len` at block `lba`.
    fn start_rw(&mut self, tag: u64, write: bool, user: *mut u8, len: usize, lba: u64) {
        let off = lba * u64::from(self.dev.block_size);
        let aligned = user.addr() % self.dev.mem_align == 0;
        let (ptr, bounce) = if aligned {
            (user, Bounce::None)
        } else {
            self.dev.bounced.fetch_add(1, Ordering::Relaxed);
            match self.pool_free.pop() {
                Some(slot) if len <= self.dev.bounce_size => (
                    self.pool_base
                        .wrapping_add(usize::from(slot) * self.dev.bounce_size),
                    Bounce::Pool { slot, user },
                ),
                other => {
                    if let Some(s) = other {
                        self.pool_free.push(s);
                    }
                    let mut buf = IoBuf::new(len);
                    (buf.as_mut_ptr(), Bounce::Own { _buf: buf, user })
                }
            }
        };
        if write && !aligned {
            // SAFETY: `user` is the caller's buffer of `len` bytes (a `&[u8]` alive for this
            // call); `ptr` is a bounce buffer of at least `len` bytes that no entry uses (a free
            // pool slot or a fresh allocation).
            unsafe { std::ptr::copy_nonoverlapping(user.cast_const(), ptr, len) };
        }
        let fixed = matches!(bounce, Bounce::Pool { .. }) && self.registered;
        let i = self.alloc(
            tag,
            Work::Rw {
                write,
                ptr,
                len,
                off,
                done: 0,
                bounce,
            },
        );
        let e = self
            .rw_entry(write, ptr, len, off, fixed)
            .user_data(u64::from(i));
        self.push(i, e);
    }

    fn fallocate(&self, mode: i32, off: u64, len: u64) -> squeue::Entry {
        opcode::Fallocate::new(self.dev.fd(), len)
            .offset(off)
            .mode(mode)
            .build()
    }
}

impl BdevQueue for UringQueue {
    fn submit(&mut self, tag: u64, op: BdevOp<'_>) {
        self.ops.accept();
        if !self.rq.is_up() {
            self.ops.report(tag, Err(BdevError::Media));
            return;
        }
        let (bs, nb) = (self.dev.block_size, self.dev.num_blocks);
        let bytes = |b: u64| b * u64::from(bs);
        match op {
            BdevOp::Read { lba, buf } => match check_range(bs, nb, lba, buf.len()) {
                Ok(0) => self.ops.report(tag, Ok(())), // nothing to move
                Ok(_) => self.start_rw(tag, false, buf.as_mut_ptr(), buf.len(), lba),
                Err(e) => self.ops.report(tag, Err(e)),
            },
            BdevOp::Write { lba, buf } => match check_range(bs, nb, lba, buf.len()) {
                Ok(0) => self.ops.report(tag, Ok(())),
                // The kernel only reads through this pointer.
                Ok(_) => self.start_rw(tag, true, buf.as_ptr().cast_mut(), buf.len(), lba),
                Err(e) => self.ops.report(tag, Err(e)),
            },
            BdevOp::Flush => {
                let i = self.alloc(tag, Work::Simple);
                let e = opcode::Fsync::new(self.dev.fd())
                    .flags(types::FsyncFlags::DATASYNC)
                    .build()
                    .user_data(u64::from(i));
                self.push(i, e);
            }
            BdevOp::WriteZeroes { lba, blocks } => {
                if lba.checked_add(blocks).is_none_or(|e| e > nb) {
                    self.ops.report(tag, Err(BdevError::OutOfRange));
                    return;
                }
                let (off, end) = (bytes(lba), bytes(lba + blocks));
                let falloc = self.dev.zero_range_ok.load(Ordering::Relaxed);
                let i = self.alloc(
                    tag,
                    Work::Zero {
                        next: off,
                        end,
                        falloc,
                    },
                );
                if falloc {
                    let mode = libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE;
                    let e = self
                        .fallocate(mode, off, end - off)
                        .user_data(u64::from(i) | UD_ZERO_FALLOC);
                    self.push(i, e);
                } else {
                    self.zero_more(i);
                }
                if self.ops[i].parts == 0 {
                    self.finish(i); // zero blocks
                }
            }
            BdevOp::Deallocate { ranges } => {
                if let Err(e) = check_ranges(ranges, nb) {
                    self.ops.report(tag, Err(e));
                    return;
                }
                let i = self.alloc(tag, Work::Simple);
                if self.dev.punch_ok.load(Ordering::Relaxed) {
                    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
                    for &(lba, n) in ranges.iter().filter(|r| r.1 > 0) {
                        let e = self
                            .fallocate(mode, bytes(lba), bytes(n))
                            .user_data(u64::from(i));
                        self.push(i, e);
                    }
                }
                if self.ops[i].parts == 0 {
                    self.finish(i);
                }
            }
        }
    }

    ring_queue_poll!();
}

impl Drop for UringQueue {
    fn drop(&mut self) {
        // The kernel may still be reading or writing callers' buffers and the pool: wait.
        self.quiesce();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(len: u64) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::Builder::new()
            .prefix("ringside-uring")
            .tempdir_in("/var/tmp")
            .expect("temp dir under /var/tmp");
        let p = dir.path().join("disk");
        let f = File::create(&p).expect("create file");
        f.set_len(len).expect("size file");
        (dir, p)
    }

    fn run(q: &mut dyn BdevQueue, n: usize) -> Vec<(u64, Result<(), BdevError>)> {
        let mut v = Vec::new();
        for _ in 0..1_000_000 {
            q.poll(&mut |t, r| v.push((t, r)));
            if v.len() >= n {
                break;
            }
            std::thread::yield_now();
        }
        assert_eq!(v.len(), n, "every operation completes");
        v.sort_by_key(|x| x.0);
        v
    }

    #[test]
    fn round_trip_zeroes_deallocate_and_bounce() {
        let (_d, p) = temp_file(1 << 20);
        let b = Arc::new(UringBdev::open(&p, 0, 0, 128 * 1024).expect("open"));
        assert_eq!(b.block_size() as u64 * b.num_blocks(), 1 << 20);
        let bs = b.block_size() as usize;
        let mut q = b.clone().open_queue(16);
        let mut data = IoBuf::new(8 * bs);
        for (i, x) in data.iter_mut().enumerate() {
            *x = (i * 7 + 3) as u8;
        }
        q.submit(1, BdevOp::Write { lba: 4, buf: &data });
        q.submit(2, BdevOp::Flush);
        assert_eq!(run(q.as_mut(), 2), vec![(1, Ok(())), (2, Ok(()))]);
        // Misaligned on purpose: goes through the bounce pool.
        let mut raw = vec![0u8; 8 * bs + 1];
        q.submit(
            3,
            BdevOp::Read {
                lba: 4,
                buf: &mut raw[1..],
            },
        );
        assert_eq!(run(q.as_mut(), 1), vec![(3, Ok(()))]);
        assert_eq!(&raw[1..], &data[..], "read back through a bounce buffer");
        assert!(b.bounced() >= 1, "the misaligned read was counted");
        q.submit(4, BdevOp::WriteZeroes { lba: 5, blocks: 1 });
        q.submit(5, BdevOp::Deallocate { ranges: &[(7, 2)] });
        assert_eq!(run(q.as_mut(), 2), vec![(4, Ok(())), (5, Ok(()))]);
        let mut out = IoBuf::new(8 * bs);
        q.submit(
            6,
            BdevOp::Read {
                lba: 4,
                buf: &mut out,
            },
        );
        assert_eq!(run(q.as_mut(), 1), vec![(6, Ok(()))]);
        assert_eq!(&out[..bs], &data[..bs]);
        assert!(out[bs..2 * bs].iter().all(|&x| x == 0), "write zeroes");
        assert_eq!(&out[2 * bs..3 * bs], &data[2 * bs..3 * bs]);
        assert!(out[3 * bs..5 * bs].iter().all(|&x| x == 0), "deallocated");
        assert_eq!(&out[5 * bs..], &data[5 * bs..]);
        // What the kernel wrote is in the file.
        let on_disk = std::fs::read(&p).expect("read file");
        assert_eq!(&on_disk[4 * bs..5 * bs], &data[..bs]);
    }

    #[test]
    fn range_errors_and_quiesce() {
        let (_d, p) = temp_file(64 * 1024);
        let b = Arc::new(UringBdev::open(&p, 0, 0, 128 * 1024).expect("open"));
        let nb = b.num_blocks();
        let mut q = b.clone().open_queue(4);
        let mut buf = IoBuf::new(1024);
        q.submit(
            1,
            BdevOp::Read {
                lba: nb - 1,
                buf: &mut buf,
            },
        );
        q.submit(2, BdevOp::WriteZeroes { lba: nb, blocks: 1 });
        q.submit(
            3,
            BdevOp::Deallocate {
                ranges: &[(0, 1), (nb, 1)],
            },
        );
        // Many writes, then quiesce: the kernel is done with them when it returns.
        let bufs: Vec<IoBuf> = (0..64)
            .map(|_| IoBuf::new(b.block_size() as usize))
            .collect();
        for (i, w) in bufs.iter().enumerate() {
            q.submit(
                10 + i as u64,
                BdevOp::Write {
                    lba: i as u64 % nb,
                    buf: w,
                },
            );
        }
        q.quiesce();
        let r = run(q.as_mut(), 67);
        assert_eq!(r[0], (1, Err(BdevError::OutOfRange)));
        assert_eq!(r[1], (2, Err(BdevError::OutOfRange)));
        assert_eq!(r[2], (3, Err(BdevError::OutOfRange)));
        assert!(r[3..].iter().all(|x| x.1.is_ok()), "{r:?}");
        assert_eq!(q.in_flight(), 0);
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let (_d, p) = temp_file(0);
        let e = UringBdev::open(&p, 0, 0, 4096).unwrap_err().to_string();
        assert!(e.contains("is empty"), "{e}");
        let (_d2, p2) = temp_file(1000);
        let e = UringBdev::open(&p2, 512, 0, 4096).unwrap_err().to_string();
        assert!(e.contains("not a multiple of the block size"), "{e}");
        let e = UringBdev::open(Path::new("/nonexistent/x"), 0, 0, 4096)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot open /nonexistent/x"), "{e}");
        let e = UringBdev::open(Path::new("/var/tmp"), 0, 0, 4096)
            .unwrap_err()
            .to_string();
        assert!(e.contains("neither a regular file"), "{e}");
        let (_d3, p3) = temp_file(8192);
        let e = UringBdev::open(&p3, 0, 16384, 4096)
            .unwrap_err()
            .to_string();
        assert!(e.contains("larger than the file"), "{e}");
    }

    #[test]
    fn tmpfs_refuses_zero_range_so_write_zeroes_writes_zeroes() {
        let dir = match tempfile::tempdir_in("/dev/shm") {
            Ok(d) => d,
            Err(e) => {
                eprintln!("skipped: no /dev/shm ({e})");
                return;
            }
        };
        let p = dir.path().join("disk");
        File::create(&p)
            .and_then(|f| f.set_len(1 << 20))
            .expect("tmpfs file");
        let b = Arc::new(UringBdev::open(&p, 0, 0, 128 * 1024).expect("open on tmpfs"));
        let mut q = b.clone().open_queue(8);
        let data = vec![0xa5u8; 64 * 1024];
        q.submit(1, BdevOp::Write { lba: 0, buf: &data });
        assert_eq!(run(q.as_mut(), 1), vec![(1, Ok(()))]);
        // 64 KiB of zeroes: ZERO_RANGE is refused on tmpfs (then zero-buffer writes), or works.
        q.submit(
            2,
            BdevOp::WriteZeroes {
                lba: 0,
                blocks: 128,
            },
        );
        assert_eq!(run(q.as_mut(), 1), vec![(2, Ok(()))]);
        let mut out = vec![0xffu8; 64 * 1024];
        q.submit(
            3,
            BdevOp::Read {
                lba: 0,
                buf: &mut out,
            },
        );
        assert_eq!(run(q.as_mut(), 1), vec![(3, Ok(()))]);
        assert!(out.iter().all(|&x| x == 0), "zeroed on tmpfs");
    }
}
