//! The `malloc` backend: a RAM disk shared by every reactor, like SPDK's malloc bdev.
//!
//! Ownership: one anonymous private mapping, created at start and unmapped when the last
//! `Arc<MallocBdev>` goes away (reactors hold their queues, queues hold the Arc). Every reactor
//! copies into and out of it without synchronisation: that is the model of a disk, where
//! overlapping I/O in flight at the same time from two queues has undefined *content* (NVMe
//! gives no ordering between queues) and a host that needs ordering waits for completions.
//! This is the one module of the crate with `unsafe`: raw copies into the shared mapping.
//! A lock or per-word atomics would cost on every I/O for a guarantee hosts do not get from
//! real disks either.
#![allow(unsafe_code)]

use std::ptr::NonNull;
use std::sync::Arc;

use rustix::mm::{madvise, mmap_anonymous, munmap, Advice, MapFlags, ProtFlags};

use super::{check_range, check_ranges, Bdev, BdevError, BdevOp, BdevQueue, DoneQueue};
use crate::config::BackendKind;

/// A RAM-backed device. Pages are allocated by the kernel on first touch.
#[derive(Debug)]
pub struct MallocBdev {
    base: NonNull<u8>,
    len: usize,
    block_size: u32,
    num_blocks: u64,
}

// SAFETY: the mapping is valid for `len` bytes for the whole life of the value (unmapped only
// in Drop). Concurrent access from several reactors is byte copies of plain data (no invariant
// a torn value could break); see the module documentation for why that is the intended model.
unsafe impl Send for MallocBdev {}
// SAFETY: as above; all access goes through `copy_in`/`copy_out`/`zero`, which bound-check.
unsafe impl Sync for MallocBdev {}

impl MallocBdev {
    /// Maps `block_size * num_blocks` bytes of zeroed memory.
    pub fn new(block_size: u32, num_blocks: u64) -> Result<Self, BdevError> {
        let len = usize::try_from(u64::from(block_size).saturating_mul(num_blocks))
            .map_err(|_| BdevError::OutOfRange)?;
        if len == 0 {
            return Err(BdevError::BadLength);
        }
        // SAFETY: a fresh anonymous mapping at an address the kernel chooses aliases nothing.
        let p = unsafe {
            mmap_anonymous(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | MapFlags::NORESERVE,
            )
        }
        .map_err(|_| BdevError::Media)?;
        let base = NonNull::new(p.cast::<u8>()).ok_or(BdevError::Media)?;
        // Transparent huge pages: fewer TLB misses on random access. Best effort.
        // SAFETY: `p..p+len` is the mapping just created and owned by nobody else yet; the advice
        // changes no contents the program can observe.
        let _ = unsafe { madvise(p, len, Advice::LinuxHugepage) };
        Ok(MallocBdev {
            base,
            len,
            block_size,
            num_blocks,
        })
    }

    /// One line for the operator when the namespace cannot get transparent huge pages (THP
    /// `never`, or no THP in the kernel): it then runs on 4 KiB pages, one TLB entry per 4 KiB
    /// where a 128 KiB read from 2 MiB pages needs one or two. Nothing fails: it is only slower.
    pub fn huge_pages_notice() -> Option<String> {
        let mode = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok();
        thp_notice(mode.as_deref())
    }

    /// Binds the mapping's pages (before any exists) to `nodes`, the NUMA nodes of the reactors
    /// that serve it (DESIGN §2): preferred on one node, interleaved over several. `mbind`
    /// rather than first touch because the pages are faulted in by a helper thread (see
    /// [`MallocBdev::prefault_in_background`]) or by whichever reactor writes a block first,
    /// neither of which says where the namespace's readers run. `Err` is one lowercase line.
    pub fn bind_to_nodes(&self, nodes: &[u32]) -> Result<(), String> {
        const MPOL_PREFERRED: usize = 1;
        const MPOL_INTERLEAVE: usize = 3;
        /// Nodes the mask can name (the kernel's own limit is at most 1024).
        const MASK_BITS: usize = 1024;
        let mut mask = [0u64; MASK_BITS / 64];
        for &n in nodes {
            let n = n as usize;
            if n >= MASK_BITS {
                return Err(format!(
                    "numa node {n} is beyond the {MASK_BITS} nodes mbind is given"
                ));
            }
            mask[n / 64] |= 1 << (n % 64);
        }
        let mode = match nodes.len() {
            0 => return Ok(()),
            1 => MPOL_PREFERRED,
            _ => MPOL_INTERLEAVE,
        };
        // An operator who started the target under a memory policy (`numactl --membind`...)
        // chose where its memory goes: leave the namespace to that policy.
        let mut current: libc::c_int = 0;
        // SAFETY: get_mempolicy writes one int to `current` (a live local) and, with a null
        // nodemask, address and zero flags, nothing else.
        let r = unsafe {
            libc::syscall(
                libc::SYS_get_mempolicy,
                &mut current as *mut libc::c_int,
                std::ptr::null_mut::<u64>(),
                0usize,
                std::ptr::null_mut::<libc::c_void>(),
                0usize,
            )
        };
        if r == 0 && current != 0 {
            return Err(
                "the process runs under a memory policy (numactl?): namespace memory follows it"
                    .into(),
            );
        }
        // SAFETY: `base..base+len` is this value's own mapping (alive until Drop); mbind only
        // sets the policy its future pages are allocated by and reads `mask` (MASK_BITS bits,
        // `maxnode` = bits + 1 as the syscall counts), changing no memory the program sees.
        let r = unsafe {
            libc::syscall(
                libc::SYS_mbind,
                self.base.as_ptr(),
                self.len,
                mode,
                mask.as_ptr(),
                MASK_BITS + 1,
                0usize,
            )
        };
        if r != 0 {
            return Err(format!(
                "cannot bind the namespace memory to numa node(s) {nodes:?}: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    }

    /// Faults every page in from a short-lived background thread, so that the first I/O to a
    /// page does not pay a page fault (about 1 µs here) on the reactor, without delaying start.
    /// Best effort; I/O is correct before, during and after it.
    pub fn prefault_in_background(self: &Arc<Self>) {
        let me = Arc::clone(self);
        let _ = std::thread::Builder::new()
            .name("malloc-prefault".into())
            .spawn(move || {
                // SAFETY: `me` keeps the mapping alive (no munmap) until this returns; populating
                // only faults pages in as if written, without changing what any reader sees.
                let _ =
                    unsafe { madvise(me.base.as_ptr().cast(), me.len, Advice::LinuxPopulateWrite) };
            });
    }

    fn offset(&self, lba: u64, bytes: usize) -> Option<usize> {
        let off = usize::try_from(lba.checked_mul(u64::from(self.block_size))?).ok()?;
        (off.checked_add(bytes)? <= self.len).then_some(off)
    }

    fn copy_out(&self, lba: u64, dst: &mut [u8]) -> Result<(), BdevError> {
        let off = self.offset(lba, dst.len()).ok_or(BdevError::OutOfRange)?;
        // SAFETY: `off + dst.len() <= len` was checked, the mapping lives as long as `self`,
        // and `dst` is a distinct Rust buffer, so the ranges do not overlap. Other reactors may
        // write these bytes at the same time (see module docs): the copied bytes are then some
        // mix of old and new data, which is what a disk gives for overlapping in-flight I/O.
        unsafe {
            std::ptr::copy_nonoverlapping(self.base.as_ptr().add(off), dst.as_mut_ptr(), dst.len())
        };
        Ok(())
    }

    fn copy_in(&self, lba: u64, src: &[u8]) -> Result<(), BdevError> {
        let off = self.offset(lba, src.len()).ok_or(BdevError::OutOfRange)?;
        // SAFETY: bounds checked as in `copy_out`; `src` is a distinct buffer; concurrent
        // writers to the same bytes are the overlapping-I/O case of the module docs.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.base.as_ptr().add(off), src.len())
        };
        Ok(())
    }

    fn zero(&self, lba: u64, blocks: u64) -> Result<(), BdevError> {
        let bytes = usize::try_from(blocks.saturating_mul(u64::from(self.block_size)))
            .map_err(|_| BdevError::OutOfRange)?;
        let off = self.offset(lba, bytes).ok_or(BdevError::OutOfRange)?;
        // SAFETY: bounds checked; see `copy_in`.
        unsafe { std::ptr::write_bytes(self.base.as_ptr().add(off), 0, bytes) };
        Ok(())
    }
}

/// [`MallocBdev::huge_pages_notice`] for the content of THP's `enabled` file (`None`: absent).
fn thp_notice(enabled: Option<&str>) -> Option<String> {
    match enabled {
        None => Some(
            "no transparent huge pages in this kernel: the malloc namespace uses 4 KiB pages"
                .into(),
        ),
        Some(m) if m.contains("[never]") => Some(
            "transparent huge pages are off (never): the malloc namespace uses 4 KiB pages \
             (echo madvise > /sys/kernel/mm/transparent_hugepage/enabled)"
                .into(),
        ),
        Some(_) => None,
    }
}

impl Drop for MallocBdev {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are the mapping made in `new`; no queue outlives the last Arc,
        // so nothing can touch it after this.
        let _ = unsafe { munmap(self.base.as_ptr().cast(), self.len) };
    }
}

impl Bdev for MallocBdev {
    fn kind(&self) -> BackendKind {
        BackendKind::Malloc
    }
    fn block_size(&self) -> u32 {
        self.block_size
    }
    fn num_blocks(&self) -> u64 {
        self.num_blocks
    }
    fn memory(&self) -> Option<&[u8]> {
        // SAFETY: `base..base+len` is the mapping made in `new`, readable and initialised (zeroed
        // by the kernel), unmapped only when `self` drops, so it outlives the returned borrow.
        // Other reactors write into it through raw pointers at the same time (`copy_in`, `zero`):
        // this view is only handed to the kernel (`writev`, which copies bytes as they are) and
        // never read twice expecting the same value, the same overlapping-I/O model as
        // `copy_out`, whose concurrent reads are no different.
        Some(unsafe { std::slice::from_raw_parts(self.base.as_ptr(), self.len) })
    }
    fn open_queue(self: Arc<Self>, depth: usize) -> Box<dyn BdevQueue> {
        Box::new(MallocQueue {
            dev: self,
            done: DoneQueue::new(depth),
        })
    }
}

struct MallocQueue {
    dev: Arc<MallocBdev>,
    done: DoneQueue,
}

impl BdevQueue for MallocQueue {
    fn submit(&mut self, tag: u64, op: BdevOp<'_>) {
        let d = &self.dev;
        let r = match op {
            BdevOp::Read { lba, buf } => check_range(d.block_size, d.num_blocks, lba, buf.len())
                .and_then(|_| d.copy_out(lba, buf)),
            BdevOp::Write { lba, buf } => check_range(d.block_size, d.num_blocks, lba, buf.len())
                .and_then(|_| d.copy_in(lba, buf)),
            BdevOp::Flush => Ok(()),
            BdevOp::WriteZeroes { lba, blocks } => d.zero(lba, blocks),
            BdevOp::Deallocate { ranges } => check_ranges(ranges, d.num_blocks)
                .and_then(|()| ranges.iter().try_for_each(|&(l, n)| d.zero(l, n))),
        };
        self.done.push(tag, r);
    }

    fn poll(&mut self, done: &mut dyn FnMut(u64, Result<(), BdevError>)) -> usize {
        self.done.drain(done)
    }

    fn in_flight(&self) -> usize {
        self.done.len()
    }

    fn copies_on_submit(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The policy `/proc/self/numa_maps` shows for the mapping starting at `base`.
    fn policy_of(base: *const u8) -> Option<String> {
        let maps = std::fs::read_to_string("/proc/self/numa_maps").ok()?;
        let start = format!("{:x} ", base as usize);
        maps.lines()
            .find(|l| l.starts_with(&start))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(str::to_string)
    }

    #[test]
    fn huge_pages_off_is_one_line_and_on_is_silent() {
        assert_eq!(thp_notice(Some("always [madvise] never\n")), None);
        assert_eq!(thp_notice(Some("[always] madvise never\n")), None);
        for n in [
            thp_notice(Some("always madvise [never]\n")),
            thp_notice(None),
        ] {
            let n = n.expect("a notice");
            assert!(n.contains("4 KiB pages") && !n.contains('\n'), "{n}");
        }
    }

    /// The namespace's mapping is backed by huge pages when THP allows `madvise`.
    #[test]
    fn mapping_gets_huge_pages_when_thp_allows() {
        if MallocBdev::huge_pages_notice().is_some() {
            eprintln!("skipped: transparent huge pages are off here");
            return;
        }
        let b = MallocBdev::new(4096, 2048).expect("map 8 MiB");
        let data = vec![1u8; 4096];
        for lba in (0..2048).step_by(512) {
            b.copy_in(lba, &data).expect("write");
        }
        // The entry whose range holds the mapping (the kernel may have merged it with a
        // neighbouring anonymous mapping of another test, so its start can differ).
        let addr = b.base.as_ptr() as usize;
        let holds = |l: &str| {
            let Some((range, _)) = l.split_once(' ') else {
                return false;
            };
            let Some((lo, hi)) = range.split_once('-') else {
                return false;
            };
            match (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16)) {
                (Ok(lo), Ok(hi)) => (lo..hi).contains(&addr),
                _ => false,
            }
        };
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let huge_kb: u64 = smaps
            .split_inclusive('\n')
            .skip_while(|l| !holds(l))
            .find_map(|l| l.strip_prefix("AnonHugePages:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("the mapping's AnonHugePages line");
        assert!(
            huge_kb >= 2048,
            "no huge page in the namespace: {huge_kb} kB"
        );
    }

    #[test]
    fn binding_sets_the_mapping_policy_and_bad_nodes_are_one_line() {
        let b = MallocBdev::new(4096, 64).expect("map");
        assert_eq!(policy_of(b.base.as_ptr()).as_deref(), Some("default"));
        // Node 0 exists on every Linux machine.
        b.bind_to_nodes(&[0]).expect("bind to node 0");
        assert_eq!(policy_of(b.base.as_ptr()).as_deref(), Some("prefer:0"));
        let data = [7u8; 4096];
        b.copy_in(3, &data).expect("write");
        let mut back = [0u8; 4096];
        b.copy_out(3, &mut back).expect("read");
        assert_eq!(back, data);
        assert!(b.bind_to_nodes(&[]).is_ok(), "no nodes: nothing to do");
        let e = b.bind_to_nodes(&[5000]).unwrap_err();
        assert!(e.contains("5000") && !e.contains('\n'), "{e}");
    }
}
