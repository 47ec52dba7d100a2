//! Block backends behind a small asynchronous interface.
//!
//! A [`Bdev`] is the shared device (created once at start, `Send + Sync`, held in an `Arc` by
//! every namespace that uses it). Each reactor opens its own [`BdevQueue`] on it at start and is
//! the only user of that queue: it submits operations tagged with a `u64` of its choosing and
//! reaps completions later with [`BdevQueue::poll`], in the same loop that polls the transport.
//! Memory backends do the work during `submit` and report the completion on the next poll, so
//! callers are written for the asynchronous case: the `uring` backend hands the caller's buffer
//! to the kernel and completes much later, so a buffer given to `submit` must stay put (not
//! freed, moved or reused) until its completion is reported or [`BdevQueue::quiesce`] returns.
//! The qpairs' request buffers are [`IoBuf`]s (4 KiB aligned, as O_DIRECT wants) that live as
//! long as their connection, and a connection quiesces the queues before it goes away with
//! requests still at the backend.

mod malloc;
mod null;
pub mod nvme_dev;
mod nvme_vfio;
mod ring;
mod uring;
mod uring_cmd;

use std::collections::VecDeque;
use std::sync::Arc;

use crate::config::{BackendKind, ByteSize, Limits, NamespaceConfig};

pub use malloc::MallocBdev;
pub use null::NullBdev;
pub use nvme_vfio::{NvmeVfioBdev, NvmeVfioError, NvmeVfioQueue, COMMAND_TIMEOUT_SECS};
pub use uring::{UringBdev, UringError};
pub use uring_cmd::{UringCmdBdev, UringCmdError, UringCmdQueue};

/// Alignment of [`IoBuf`]s: a page, which covers every logical block size and the memory
/// alignment O_DIRECT asks for on every device seen so far.
pub const IO_ALIGN: usize = 4096;

/// A byte buffer whose first byte is [`IO_ALIGN`]-aligned, so a backend doing direct I/O can use
/// it without a bounce copy. Safe code: it over-allocates a `Vec` by `IO_ALIGN - 1` bytes and
/// exposes the aligned window, which never moves until the buffer grows.
#[derive(Debug, Default)]
pub struct IoBuf {
    raw: Vec<u8>,
    off: usize,
    len: usize,
}

impl IoBuf {
    /// A zeroed buffer of `len` bytes.
    pub fn new(len: usize) -> IoBuf {
        let raw = vec![0u8; len + IO_ALIGN - 1];
        let off = raw.as_ptr().addr().wrapping_neg() % IO_ALIGN;
        IoBuf { raw, off, len }
    }

    /// Makes the buffer at least `len` bytes long, keeping its contents. Reallocates (and so
    /// moves) only when `len` exceeds what was ever allocated: never call it on a buffer that
    /// is at a backend.
    pub fn grow(&mut self, len: usize) {
        if len <= self.len {
            return;
        }
        if self.off + len <= self.raw.len() {
            self.len = len;
            return;
        }
        let mut n = IoBuf::new(len);
        n[..self.len].copy_from_slice(self);
        *self = n;
    }
}

impl std::ops::Deref for IoBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.raw[self.off..self.off + self.len]
    }
}

impl std::ops::DerefMut for IoBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.raw[self.off..self.off + self.len]
    }
}

/// The kernel block device behind a namespace, for the trace description (the agent reads its
/// `/sys/block/<name>/stat`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Kernel name of the whole disk, e.g. `loop3`, `nvme0n1`, `vda`.
    pub name: String,
    /// NUMA node of the device, when the kernel knows it.
    pub numa_node: Option<u32>,
}

/// Why a bdev could not be created (at start; one line for the user).
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("cannot allocate the RAM disk ({0})")]
    Malloc(BdevError),
    #[error(transparent)]
    Uring(#[from] UringError),
    #[error(transparent)]
    NvmeVfio(#[from] NvmeVfioError),
    #[error(transparent)]
    UringCmd(#[from] UringCmdError),
}

/// One block operation. Offsets and lengths are in blocks of the bdev's block size; the
/// caller has range-checked them against [`Bdev::num_blocks`].
#[derive(Debug)]
pub enum BdevOp<'a> {
    Read {
        lba: u64,
        buf: &'a mut [u8],
    },
    Write {
        lba: u64,
        buf: &'a [u8],
    },
    Flush,
    WriteZeroes {
        lba: u64,
        blocks: u64,
    },
    /// (first lba, number of blocks) ranges.
    Deallocate {
        ranges: &'a [(u64, u64)],
    },
}

/// Why an operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BdevError {
    #[error("lba range beyond the end of the device")]
    OutOfRange,
    #[error("buffer length is not a multiple of the block size")]
    BadLength,
    #[error("device error")]
    Media,
    /// The NVMe device completed the command with this status (`uring-cmd`, `nvme-vfio`): the
    /// host receives it unchanged, SCT, SC, More and DNR included.
    #[error("device status {0}")]
    Nvme(nvme_proto::Status),
}

/// A shared block device.
pub trait Bdev: Send + Sync {
    fn kind(&self) -> BackendKind;
    fn block_size(&self) -> u32;
    fn num_blocks(&self) -> u64;
    /// Opens a queue for one reactor; `depth` bounds the operations in flight on it.
    fn open_queue(self: Arc<Self>, depth: usize) -> Box<dyn BdevQueue>;
    /// The kernel block device the I/O goes to, when there is one.
    fn device(&self) -> Option<DeviceInfo> {
        None
    }
    /// How the target reaches the device, for the trace description: the NVMe generic character
    /// device (`uring-cmd`), the controller's PCI address (`nvme-vfio`).
    fn device_path(&self) -> Option<String> {
        None
    }
    /// The device queue (NVMe queue id) the reactor `reactor` on CPU `core` submits to, when the
    /// backend has device queues and knows which.
    fn device_queue(&self, reactor: usize, core: usize) -> Option<u32> {
        let _ = (reactor, core);
        None
    }
    /// Operations copied through a bounce buffer because the caller's buffer did not suit the
    /// device (uring with O_DIRECT and a misaligned buffer); 0 for backends that always copy.
    fn bounced(&self) -> u64 {
        0
    }
    /// The whole device as memory, for a backend that is memory (malloc): a transport may send
    /// a read's bytes from here instead of copying them into a request buffer first. Other
    /// reactors may be writing these bytes meanwhile (the overlapping-I/O model of the malloc
    /// module): a reader must not rely on them staying the same between two looks.
    fn memory(&self) -> Option<&[u8]> {
        None
    }
}

/// One reactor's queue on a bdev. Not shared: `&mut self` everywhere.
pub trait BdevQueue: Send {
    /// Starts an operation; its completion is reported by a later [`poll`](Self::poll). The
    /// buffer must stay put until then (see the module documentation).
    fn submit(&mut self, tag: u64, op: BdevOp<'_>);
    /// Reports finished operations to `done`; returns how many.
    fn poll(&mut self, done: &mut dyn FnMut(u64, Result<(), BdevError>)) -> usize;
    /// Operations submitted and not yet reported.
    fn in_flight(&self) -> usize;
    /// True when `submit` is done with the buffer it was given by the time it returns (memory
    /// backends copy at once). Callers may then pass transient buffers, such as in-capsule data
    /// still in the receive buffer, instead of copying them into a request buffer first.
    fn copies_on_submit(&self) -> bool {
        false
    }
    /// Blocks until the device holds no buffer handed to [`submit`](Self::submit) any more;
    /// the completions are still reported by the next [`poll`](Self::poll). Call it before
    /// freeing buffers of operations still in flight (a connection closing under load).
    /// Backends that copy on submit hold nothing and return at once.
    fn quiesce(&mut self) {}
}

/// Builds the bdev for a namespace with the default configuration (reactors that spin).
pub fn create(ns: &NamespaceConfig) -> Result<Arc<dyn Bdev>, CreateError> {
    create_with(ns, &Limits::default(), true, &[])
}

/// Builds the bdev for a namespace; `limits.max_io_size` sizes the uring bounce buffers, and
/// `spinning` says the reactors never sleep (`idle = poll`), so a uring queue may leave its
/// completions for the next poll instead of waking the reactor.
pub fn create_with(
    ns: &NamespaceConfig,
    limits: &Limits,
    spinning: bool,
    nodes: &[u32],
) -> Result<Arc<dyn Bdev>, CreateError> {
    let blocks = ns.size.0 / u64::from(ns.block_size.max(1));
    Ok(match &ns.backend {
        BackendKind::Null => Arc::new(NullBdev::new(ns.block_size, blocks)),
        BackendKind::Malloc => {
            let b = Arc::new(MallocBdev::new(ns.block_size, blocks).map_err(CreateError::Malloc)?);
            if let Err(e) = b.bind_to_nodes(nodes) {
                eprintln!("ringside-tgt: {e}");
            }
            if let Some(n) = MallocBdev::huge_pages_notice() {
                eprintln!("ringside-tgt: {n}");
            }
            b.prefault_in_background();
            b
        }
        BackendKind::Uring { path } => {
            let ByteSize(max_io) = limits.max_io_size;
            Arc::new(
                UringBdev::open(
                    path,
                    ns.block_size,
                    ns.size.0,
                    usize::try_from(max_io).unwrap_or(usize::MAX),
                )?
                .wake_reactor(!spinning),
            )
        }
        BackendKind::NvmeVfio { bdf } => {
            Arc::new(NvmeVfioBdev::open(bdf, ns.block_size, ns.size.0)?)
        }
        BackendKind::UringCmd { path } => {
            Arc::new(UringCmdBdev::open(path, ns.block_size, ns.size.0)?.wake_reactor(!spinning))
        }
    })
}

/// Completions of a synchronous backend, waiting for the next poll. Preallocated to the
/// queue depth so pushing never allocates in steady state.
#[derive(Debug)]
pub(crate) struct DoneQueue {
    q: VecDeque<(u64, Result<(), BdevError>)>,
}

impl DoneQueue {
    pub(crate) fn new(depth: usize) -> Self {
        DoneQueue {
            q: VecDeque::with_capacity(depth.max(16)),
        }
    }
    pub(crate) fn push(&mut self, tag: u64, r: Result<(), BdevError>) {
        self.q.push_back((tag, r));
    }
    pub(crate) fn drain(&mut self, done: &mut dyn FnMut(u64, Result<(), BdevError>)) -> usize {
        let n = self.q.len();
        while let Some((tag, r)) = self.q.pop_front() {
            done(tag, r);
        }
        n
    }
    pub(crate) fn len(&self) -> usize {
        self.q.len()
    }
}

/// Checks that every `(lba, blocks)` range of a Dataset Management request lies on the device,
/// so a request with one bad range changes nothing.
pub(crate) fn check_ranges(ranges: &[(u64, u64)], num_blocks: u64) -> Result<(), BdevError> {
    if ranges
        .iter()
        .all(|&(l, n)| l.checked_add(n).is_some_and(|e| e <= num_blocks))
    {
        Ok(())
    } else {
        Err(BdevError::OutOfRange)
    }
}

/// Checks `lba + blocks` against the device and the buffer length against the block size.
pub(crate) fn check_range(
    bs: u32,
    num_blocks: u64,
    lba: u64,
    len_bytes: usize,
) -> Result<u64, BdevError> {
    let bs = u64::from(bs);
    let len = len_bytes as u64;
    if len % bs != 0 {
        return Err(BdevError::BadLength);
    }
    let blocks = len / bs;
    match lba.checked_add(blocks) {
        Some(end) if end <= num_blocks => Ok(blocks),
        _ => Err(BdevError::OutOfRange),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ByteSize;

    fn run(q: &mut dyn BdevQueue) -> Vec<(u64, Result<(), BdevError>)> {
        let mut v = Vec::new();
        q.poll(&mut |t, r| v.push((t, r)));
        v
    }

    fn ns(kind: BackendKind) -> NamespaceConfig {
        NamespaceConfig {
            nsid: Some(1),
            backend: kind,
            size: ByteSize(1 << 20),
            block_size: 512,
        }
    }

    #[test]
    fn malloc_round_trip_and_zeroes() {
        let b = create(&ns(BackendKind::Malloc)).expect("malloc bdev");
        assert_eq!(b.num_blocks(), 2048);
        let mut q = b.clone().open_queue(8);
        let data: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
        q.submit(
            1,
            BdevOp::Write {
                lba: 10,
                buf: &data,
            },
        );
        assert_eq!(q.in_flight(), 1);
        let mut out = vec![0u8; 4096];
        q.submit(
            2,
            BdevOp::Read {
                lba: 10,
                buf: &mut out,
            },
        );
        assert_eq!(run(q.as_mut()), vec![(1, Ok(())), (2, Ok(()))]);
        assert_eq!(out, data, "read must return what was written");
        // A second queue (another reactor) sees the same memory.
        let mut q2 = b.clone().open_queue(8);
        q2.submit(3, BdevOp::WriteZeroes { lba: 11, blocks: 1 });
        q2.submit(4, BdevOp::Deallocate { ranges: &[(13, 2)] });
        let mut out2 = vec![0xffu8; 4096];
        q2.submit(
            5,
            BdevOp::Read {
                lba: 10,
                buf: &mut out2,
            },
        );
        assert_eq!(run(q2.as_mut()).len(), 3);
        assert_eq!(&out2[..512], &data[..512]);
        assert!(out2[512..1024].iter().all(|&b| b == 0), "write zeroes");
        assert_eq!(&out2[1024..1536], &data[1024..1536]);
        assert!(
            out2[1536..2560].iter().all(|&b| b == 0),
            "deallocate reads back zeros"
        );
        assert_eq!(&out2[2560..], &data[2560..]);
    }

    #[test]
    fn out_of_range_is_an_error_not_a_panic() {
        for kind in [BackendKind::Malloc, BackendKind::Null] {
            let b = create(&ns(kind.clone())).expect("bdev");
            let mut q = b.open_queue(4);
            let mut buf = vec![0u8; 1024];
            q.submit(
                1,
                BdevOp::Read {
                    lba: 2047,
                    buf: &mut buf,
                },
            );
            q.submit(
                2,
                BdevOp::Write {
                    lba: u64::MAX,
                    buf: &buf,
                },
            );
            q.submit(
                3,
                BdevOp::Read {
                    lba: 0,
                    buf: &mut buf[..100],
                },
            );
            q.submit(
                4,
                BdevOp::WriteZeroes {
                    lba: 2040,
                    blocks: 9,
                },
            );
            q.submit(
                5,
                BdevOp::Deallocate {
                    ranges: &[(0, 1), (2048, 1)],
                },
            );
            let r = run(q.as_mut());
            assert_eq!(
                r,
                vec![
                    (1, Err(BdevError::OutOfRange)),
                    (2, Err(BdevError::OutOfRange)),
                    (3, Err(BdevError::BadLength)),
                    (4, Err(BdevError::OutOfRange)),
                    (5, Err(BdevError::OutOfRange)),
                ],
                "{kind}"
            );
        }
    }

    #[test]
    fn null_reads_zeros() {
        let b = create(&ns(BackendKind::Null)).expect("null bdev");
        let mut q = b.open_queue(4);
        let mut buf = vec![0xaau8; 512];
        q.submit(
            9,
            BdevOp::Read {
                lba: 0,
                buf: &mut buf,
            },
        );
        assert_eq!(run(q.as_mut()), vec![(9, Ok(()))]);
        assert!(buf.iter().all(|&b| b == 0));
    }
}
