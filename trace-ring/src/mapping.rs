//! The memory mapping of a trace file and the atomic views into it: one of the two modules of this
//! crate allowed to use `unsafe` (the other is `tsc`).
//!
//! Threading/ownership: a [`Mapping`] is shared through `Arc` by the `TraceFile`, its writers and
//! the reader's cursors; it is unmapped when the last owner drops. The memory behind it is shared
//! with other processes: the producer process writes rings, counters, the header's `state` and
//! `enabled_mask` concurrently with any number of reader processes. Therefore nothing in this
//! crate ever creates a `&[u8]` or `&T` (non-atomic) view of the mapping: every access goes
//! through `AtomicU64` words, which is what makes a concurrent writer (or a hostile one) unable to
//! cause undefined behaviour in a reader.
//!
//! SIGBUS: touching a page beyond the end of the underlying file raises SIGBUS. The mapping length
//! is checked against the file length when mapping, and the producer never truncates a published
//! file (it only unlinks it), so every page of a mapping stays backed for the mapping's lifetime.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::fs::File;
use std::io;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use rustix::mm::{MapFlags, ProtFlags};

/// A shared (MAP_SHARED) mapping of a whole trace file, viewed as `u64` words.
pub(crate) struct Mapping {
    ptr: NonNull<AtomicU64>,
    words: usize,
}

// SAFETY: the mapping is only ever accessed through `&[AtomicU64]` (which is `Sync`), and munmap
// happens in `Drop`, i.e. when no thread holds a reference any more.
unsafe impl Send for Mapping {}
// SAFETY: as above; shared references only allow atomic access.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes of `file` (`len` a non-zero multiple of 8 not beyond the file's
    /// current length, which the caller has checked), read-write when `writable`.
    pub(crate) fn map(file: &File, len: u64, writable: bool) -> io::Result<Mapping> {
        let file_len = file.metadata()?.len();
        if len == 0 || len % 8 != 0 || len > file_len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "mapping length must be a non-zero multiple of 8 within the file",
            ));
        }
        let len_usize = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file too large to map"))?;
        let prot = if writable {
            ProtFlags::READ | ProtFlags::WRITE
        } else {
            ProtFlags::READ
        };
        // SAFETY: a fresh mapping at an address chosen by the kernel (null hint) aliases no Rust
        // object. `len` is within the file (checked above), so no page of the mapping starts past
        // EOF at this moment, and producers never truncate (module doc).
        let raw = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len_usize,
                prot,
                MapFlags::SHARED,
                file,
                0,
            )
        }?;
        let ptr = NonNull::new(raw.cast::<AtomicU64>())
            .ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Mapping {
            ptr,
            words: len_usize / 8,
        })
    }

    /// The whole mapping as atomic words.
    #[inline]
    pub(crate) fn words(&self) -> &[AtomicU64] {
        // SAFETY: `ptr` is page aligned (so aligned for AtomicU64) and valid for `words * 8` bytes
        // until `Drop` (we hold `&self`). Other processes (the producer, or for the producer the
        // readers never write) may access the memory concurrently, but only `AtomicU64` is used
        // on this side, so there is no non-atomic access to race with; the producer also only
        // writes through these same atomic views.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.words) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`words` describe exactly the region returned by mmap; every view into it
        // borrows `self` (or an `Arc<Mapping>` owned by a `RingSlots`), so none outlives this drop.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.words * 8) };
    }
}

/// Raw, pre-validated pointers for a ring writer's hot path: the enabled mask in the header, the
/// ring head and the slot array. They avoid re-deriving and bounds-checking slices per record,
/// which is what keeps a disabled tracepoint at one load and a branch.
///
/// `Send` (a reactor thread owns it) but not `Sync` (one writer per ring, by construction: the
/// producer hands out each reactor's writer once).
pub(crate) struct RingSlots {
    mask: NonNull<AtomicU64>,
    head: NonNull<AtomicU64>,
    slots: NonNull<[AtomicU64; 4]>,
    slot_mask: u64,
    _map: Arc<Mapping>,
    _not_sync: PhantomData<Cell<()>>,
}

// SAFETY: the pointers target a mapping kept alive by `_map` and are only used for atomic
// accesses, which are valid from any thread; the single-writer protocol (one `RingSlots` per
// ring) is enforced by `TraceFile::take_reactor`, not by thread affinity.
unsafe impl Send for RingSlots {}

impl RingSlots {
    /// Builds the views; `None` unless `mask_word`, `head_word` and `records` slots of 4 words
    /// starting at `slots_word` all lie inside the mapping and `records` is a power of two.
    pub(crate) fn new(
        map: Arc<Mapping>,
        mask_word: usize,
        head_word: usize,
        slots_word: usize,
        records: u64,
    ) -> Option<RingSlots> {
        if !records.is_power_of_two() {
            return None;
        }
        let words = map.words();
        let n = usize::try_from(records).ok()?;
        let slot_words = words.get(slots_word..slots_word.checked_add(n.checked_mul(4)?)?)?;
        let mask = NonNull::from(words.get(mask_word)?);
        let head = NonNull::from(words.get(head_word)?);
        let slots = NonNull::from(slot_words).cast::<[AtomicU64; 4]>();
        Some(RingSlots {
            mask,
            head,
            slots,
            slot_mask: records - 1,
            _map: map,
            _not_sync: PhantomData,
        })
    }

    /// The header's enabled-tracepoint mask.
    #[inline(always)]
    pub(crate) fn mask(&self) -> &AtomicU64 {
        // SAFETY: in bounds of the mapping (checked in `new`), kept alive by `_map`; the producer's
        // control handle stores to it concurrently, atomically.
        unsafe { self.mask.as_ref() }
    }

    /// The ring head (records ever written). Only this writer stores to it; readers load it.
    #[inline(always)]
    pub(crate) fn head(&self) -> &AtomicU64 {
        // SAFETY: in bounds (checked in `new`), kept alive by `_map`; readers in other processes
        // only load it.
        unsafe { self.head.as_ref() }
    }

    /// The slot for record number `index` (taken modulo the ring size).
    #[inline(always)]
    pub(crate) fn slot(&self, index: u64) -> &[AtomicU64; 4] {
        let i = (index & self.slot_mask) as usize;
        // SAFETY: `i < records` and `new` checked that `records` 4-word slots starting at `slots`
        // lie inside the mapping (kept alive by `_map`); AtomicU64 arrays have the alignment of
        // u64. Readers in other processes load these words concurrently, atomically.
        unsafe { self.slots.add(i).as_ref() }
    }
}

/// A pre-validated window of words (one reactor's counters section) for a single writer: `Send`,
/// not `Sync`, like [`RingSlots`].
pub(crate) struct WordWindow {
    ptr: NonNull<AtomicU64>,
    len: usize,
    _map: Arc<Mapping>,
    _not_sync: PhantomData<Cell<()>>,
}

// SAFETY: as for `RingSlots`: the pointer targets a mapping kept alive by `_map`, accessed only
// atomically; one writer per window is enforced by `TraceFile::take_reactor`.
unsafe impl Send for WordWindow {}

impl WordWindow {
    /// `len` words starting at word `start`; `None` if that is not inside the mapping.
    pub(crate) fn new(map: Arc<Mapping>, start: usize, len: usize) -> Option<WordWindow> {
        let window = map.words().get(start..start.checked_add(len)?)?;
        let ptr = NonNull::from(window).cast::<AtomicU64>();
        Some(WordWindow {
            ptr,
            len,
            _map: map,
            _not_sync: PhantomData,
        })
    }

    /// The window as a slice.
    #[inline(always)]
    pub(crate) fn words(&self) -> &[AtomicU64] {
        // SAFETY: `ptr..ptr+len` was a subslice of the mapping (checked in `new`), which `_map`
        // keeps alive; readers in other processes only load these words, atomically.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}
