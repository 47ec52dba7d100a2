//! Everything of the `nvme-vfio` driver that touches memory Rust does not own: the VFIO ioctls,
//! the controller's registers (BAR0, mapped from the device), and the DMA memory the controller
//! reads and writes on its own (queues, PRP lists, bounce pages). The rest of the driver
//! (`mod.rs`) is safe code on top of the four types here: [`Vfio`] (container, group, device),
//! [`Bar`] (volatile 32/64-bit register access), [`DmaMem`] (pinned memory mapped at an IOVA)
//! and [`UserBuf`] (a caller's buffer held across an operation, as the [`super::super::BdevQueue`]
//! contract allows).
//!
//! Who else writes this memory: the NVMe controller, by DMA, at any time it owns a queue entry or
//! a data page (completion queue entries, Read data, Identify data), and by MMIO side effects on
//! BAR0 (CSTS changes under us). Every access is therefore volatile (registers, completion
//! entries) or done only while the protocol gives the memory to the host (a data page between
//! the completion that returns it and the submission that hands it out again).
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;

use vfio_bindings::bindings::vfio::{
    vfio_device_info, vfio_group_status, vfio_iommu_type1_dma_map, vfio_iommu_type1_dma_unmap,
    vfio_region_info, VFIO_TYPE1v2_IOMMU, VFIO_API_VERSION, VFIO_BASE, VFIO_DEVICE_FLAGS_RESET,
    VFIO_DMA_MAP_FLAG_READ, VFIO_DMA_MAP_FLAG_WRITE, VFIO_GROUP_FLAGS_VIABLE,
    VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_CONFIG_REGION_INDEX, VFIO_REGION_INFO_FLAG_MMAP,
    VFIO_TYPE,
};

/// `_IO(VFIO_TYPE, VFIO_BASE + nr)`: every VFIO ioctl has no size or direction bits.
const fn vfio_io(nr: u32) -> libc::c_ulong {
    ((VFIO_TYPE as u32) << 8 | (VFIO_BASE + nr)) as libc::c_ulong
}
const GET_API_VERSION: libc::c_ulong = vfio_io(0);
const CHECK_EXTENSION: libc::c_ulong = vfio_io(1);
const SET_IOMMU: libc::c_ulong = vfio_io(2);
const GROUP_GET_STATUS: libc::c_ulong = vfio_io(3);
const GROUP_SET_CONTAINER: libc::c_ulong = vfio_io(4);
const GROUP_GET_DEVICE_FD: libc::c_ulong = vfio_io(6);
const DEVICE_GET_INFO: libc::c_ulong = vfio_io(7);
const DEVICE_GET_REGION_INFO: libc::c_ulong = vfio_io(8);
const DEVICE_RESET: libc::c_ulong = vfio_io(11);
const IOMMU_MAP_DMA: libc::c_ulong = vfio_io(13);
const IOMMU_UNMAP_DMA: libc::c_ulong = vfio_io(14);

/// Page size of the controller's memory (CC.MPS = 0) and of DMA allocations.
pub const PAGE: usize = 4096;
const HUGE: usize = 2 << 20;

/// What went wrong at a VFIO step (the caller turns it into one line naming the fix).
#[derive(Debug)]
pub enum VfioStep {
    Container(std::io::Error),
    ApiVersion(i32),
    NoType1,
    Group(std::io::Error),
    NotViable,
    SetContainer(std::io::Error),
    SetIommu(std::io::Error),
    DeviceFd(std::io::Error),
    Region(std::io::Error),
    NoMmap,
    Map(std::io::Error),
    Config(std::io::Error),
}

impl std::fmt::Display for VfioStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VfioStep::Container(e) => write!(f, "cannot open /dev/vfio/vfio: {e}"),
            VfioStep::ApiVersion(v) => write!(f, "unknown VFIO API version {v}"),
            VfioStep::NoType1 => f.write_str("no type-1 v2 IOMMU in the kernel's VFIO"),
            VfioStep::Group(e) => write!(f, "cannot open the VFIO group: {e}"),
            VfioStep::NotViable => f.write_str("the IOMMU group is not viable"),
            VfioStep::SetContainer(e) => write!(f, "cannot attach the group to a container: {e}"),
            VfioStep::SetIommu(e) => write!(f, "cannot set the type-1 IOMMU: {e}"),
            VfioStep::DeviceFd(e) => write!(f, "cannot get the device from its group: {e}"),
            VfioStep::Region(e) => write!(f, "cannot read a region of the device: {e}"),
            VfioStep::NoMmap => f.write_str("BAR0 cannot be mapped (no mmap support or too small)"),
            VfioStep::Map(e) => write!(f, "cannot map memory: {e}"),
            VfioStep::Config(e) => write!(f, "cannot access the PCI config space: {e}"),
        }
    }
}

/// An open VFIO container with one group and its NVMe device. Closing the files (on drop)
/// detaches the device, unmaps every IOVA and unpins the memory.
#[derive(Debug)]
pub struct Vfio {
    container: File,
    _group: File,
    device: File,
    /// The device supports VFIO_DEVICE_RESET (a function-level or bus reset).
    can_reset: bool,
}

fn last_err() -> std::io::Error {
    std::io::Error::last_os_error()
}

impl Vfio {
    /// Opens `/dev/vfio/<group>`, checks it is viable, attaches it to a new type-1 container
    /// and gets the device `bdf`'s file.
    pub fn open(group: u32, bdf: &str) -> Result<Vfio, VfioStep> {
        let rw = |p: &str| OpenOptions::new().read(true).write(true).open(p);
        let container = rw("/dev/vfio/vfio").map_err(VfioStep::Container)?;
        // SAFETY: an ioctl without argument on a file we own.
        let v = unsafe { libc::ioctl(container.as_raw_fd(), GET_API_VERSION) };
        if v != VFIO_API_VERSION as i32 {
            return Err(VfioStep::ApiVersion(v));
        }
        // SAFETY: the argument is an integer, passed by value.
        let t1 = unsafe {
            libc::ioctl(
                container.as_raw_fd(),
                CHECK_EXTENSION,
                VFIO_TYPE1v2_IOMMU as libc::c_ulong,
            )
        };
        if t1 != 1 {
            return Err(VfioStep::NoType1);
        }
        let group = rw(&format!("/dev/vfio/{group}")).map_err(VfioStep::Group)?;
        let mut st = vfio_group_status {
            argsz: std::mem::size_of::<vfio_group_status>() as u32,
            flags: 0,
        };
        // SAFETY: the kernel writes `flags` of the struct we pass, whose argsz is its size.
        if unsafe { libc::ioctl(group.as_raw_fd(), GROUP_GET_STATUS, &mut st) } < 0 {
            return Err(VfioStep::Group(last_err()));
        }
        if st.flags & VFIO_GROUP_FLAGS_VIABLE == 0 {
            return Err(VfioStep::NotViable);
        }
        let cfd: libc::c_int = container.as_raw_fd();
        // SAFETY: the kernel reads one int (the container's fd) from the pointer.
        if unsafe { libc::ioctl(group.as_raw_fd(), GROUP_SET_CONTAINER, &cfd) } < 0 {
            return Err(VfioStep::SetContainer(last_err()));
        }
        // SAFETY: an integer argument by value.
        if unsafe {
            libc::ioctl(
                container.as_raw_fd(),
                SET_IOMMU,
                VFIO_TYPE1v2_IOMMU as libc::c_ulong,
            )
        } < 0
        {
            return Err(VfioStep::SetIommu(last_err()));
        }
        let name = std::ffi::CString::new(bdf)
            .map_err(|_| VfioStep::DeviceFd(std::io::Error::from_raw_os_error(libc::EINVAL)))?;
        // SAFETY: the kernel reads a NUL-terminated string that outlives the call.
        let dfd = unsafe { libc::ioctl(group.as_raw_fd(), GROUP_GET_DEVICE_FD, name.as_ptr()) };
        if dfd < 0 {
            return Err(VfioStep::DeviceFd(last_err()));
        }
        // SAFETY: the ioctl returned a new file descriptor that nothing else owns.
        let device = unsafe { File::from_raw_fd(dfd) };
        let mut info = vfio_device_info {
            argsz: std::mem::size_of::<vfio_device_info>() as u32,
            ..Default::default()
        };
        // SAFETY: the kernel fills the struct we pass, whose argsz is its size.
        let ok = unsafe { libc::ioctl(device.as_raw_fd(), DEVICE_GET_INFO, &mut info) } == 0;
        Ok(Vfio {
            container,
            _group: group,
            device,
            can_reset: ok && info.flags & VFIO_DEVICE_FLAGS_RESET != 0,
        })
    }

    /// Resets the PCI function when the device supports it (after a crash of a previous owner
    /// the controller may be mid-command). Returns whether a reset was done.
    pub fn reset(&self) -> bool {
        // SAFETY: an ioctl without argument on the device's file.
        self.can_reset && unsafe { libc::ioctl(self.device.as_raw_fd(), DEVICE_RESET) } == 0
    }

    fn region(&self, index: u32) -> Result<vfio_region_info, VfioStep> {
        let mut r = vfio_region_info {
            argsz: std::mem::size_of::<vfio_region_info>() as u32,
            index,
            ..Default::default()
        };
        // SAFETY: the kernel fills the struct we pass, whose argsz is its size.
        if unsafe { libc::ioctl(self.device.as_raw_fd(), DEVICE_GET_REGION_INFO, &mut r) } < 0 {
            return Err(VfioStep::Region(last_err()));
        }
        Ok(r)
    }

    /// Turns on memory space decoding and bus mastering (DMA) in the PCI command register.
    pub fn enable_bus_master(&self) -> Result<(), VfioStep> {
        let cfg = self.region(VFIO_PCI_CONFIG_REGION_INDEX)?;
        let mut cmd = [0u8; 2];
        self.device
            .read_exact_at(&mut cmd, cfg.offset + 4)
            .map_err(VfioStep::Config)?;
        let v = u16::from_le_bytes(cmd) | 0x6;
        self.device
            .write_all_at(&v.to_le_bytes(), cfg.offset + 4)
            .map_err(VfioStep::Config)
    }

    /// Maps BAR0 (the controller's registers and doorbells).
    pub fn map_bar0(&self) -> Result<Bar, VfioStep> {
        let r = self.region(VFIO_PCI_BAR0_REGION_INDEX)?;
        if r.flags & VFIO_REGION_INFO_FLAG_MMAP == 0 || r.size < 0x2000 {
            return Err(VfioStep::NoMmap);
        }
        // SAFETY: a new shared mapping of the device file at the region's offset; the kernel
        // checks the range. Nothing else in this process maps it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                r.size as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.device.as_raw_fd(),
                r.offset as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(VfioStep::Map(last_err()));
        }
        Ok(Bar {
            base: p.cast(),
            len: r.size as usize,
        })
    }
}

/// The controller's register window (BAR0), mapped uncached. Registers change under us (CSTS,
/// and the controller reads doorbells): every access is volatile.
#[derive(Debug)]
pub struct Bar {
    base: *mut u8,
    len: usize,
}

// SAFETY: the mapping is process-wide device memory; concurrent register accesses from several
// reactors touch different doorbells (each queue has its own), and the shared registers (CC,
// CSTS, AQA/ASQ/ACQ) are written only under the admin lock or before the reactors start.
unsafe impl Send for Bar {}
// SAFETY: as above: `&Bar` only allows volatile accesses of whole registers.
unsafe impl Sync for Bar {}

impl Bar {
    fn at<T>(&self, off: usize) -> *mut T {
        assert!(
            off + std::mem::size_of::<T>() <= self.len && off % std::mem::size_of::<T>() == 0,
            "register offset {off:#x} outside BAR0 or misaligned"
        );
        self.base.wrapping_add(off).cast()
    }
    pub fn read32(&self, off: usize) -> u32 {
        // SAFETY: `at` checked the offset lies in the mapping and is aligned; the device may
        // change the register at any time, hence the volatile read.
        unsafe { self.at::<u32>(off).read_volatile() }
    }
    /// A 64-bit register as two 32-bit reads (low, then high), which every controller takes.
    pub fn read64(&self, off: usize) -> u64 {
        u64::from(self.read32(off)) | u64::from(self.read32(off + 4)) << 32
    }
    pub fn write32(&self, off: usize, v: u32) {
        // Entries and data written to DMA memory before this doorbell must be visible to the
        // device first.
        fence(Ordering::SeqCst);
        // SAFETY: `at` checked the offset; the write is an MMIO store the device acts on.
        unsafe { self.at::<u32>(off).write_volatile(v) }
    }
    pub fn write64(&self, off: usize, v: u64) {
        self.write32(off, v as u32);
        self.write32(off + 4, (v >> 32) as u32);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map_bar0`, not used after this.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// Pinned memory mapped for the device at `iova` (VFIO_IOMMU_MAP_DMA); unmapped and freed on
/// drop. Hugepages (2 MiB) when the size allows and the kernel has them, else 4 KiB pages; the
/// pages are touched by the creating thread, so they sit on its NUMA node.
#[derive(Debug)]
pub struct DmaMem {
    ptr: *mut u8,
    len: usize,
    iova: u64,
    huge: bool,
    vfio: Arc<Vfio>,
}

// SAFETY: the memory belongs to this value alone (plus the device); it moves between threads
// with its owner (a reactor's queue is created on the reactor and stays there).
unsafe impl Send for DmaMem {}
// SAFETY: shared access (the admin queue behind its mutex) only reads and writes through
// volatile or copy methods that take `&self`, serialized by the owner.
unsafe impl Sync for DmaMem {}

impl DmaMem {
    /// Allocates `len` bytes (rounded up to pages), zeroed, and maps them at `iova`.
    pub fn new(vfio: &Arc<Vfio>, len: usize, iova: u64) -> Result<DmaMem, VfioStep> {
        let len = len.max(PAGE).next_multiple_of(PAGE);
        let anon = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        let mut huge = false;
        let mut p = libc::MAP_FAILED;
        if len % HUGE == 0 {
            // SAFETY: a new anonymous mapping; fails cleanly without hugepages.
            p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    prot,
                    anon | libc::MAP_HUGETLB,
                    -1,
                    0,
                )
            };
            huge = p != libc::MAP_FAILED;
        }
        if p == libc::MAP_FAILED {
            // SAFETY: a new anonymous mapping.
            p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, anon, -1, 0) };
        }
        if p == libc::MAP_FAILED {
            return Err(VfioStep::Map(last_err()));
        }
        let ptr: *mut u8 = p.cast();
        // Touch every page on this thread (first-touch NUMA placement), before the device sees it.
        // SAFETY: the mapping is `len` bytes, private to us, not yet given to the device.
        unsafe { ptr.write_bytes(0, len) };
        let map = vfio_iommu_type1_dma_map {
            argsz: std::mem::size_of::<vfio_iommu_type1_dma_map>() as u32,
            flags: VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
            vaddr: ptr as u64,
            iova,
            size: len as u64,
        };
        // SAFETY: the kernel reads the struct and pins `len` bytes at `vaddr`, which we own
        // until drop (unmapped there before munmap).
        if unsafe { libc::ioctl(vfio.container.as_raw_fd(), IOMMU_MAP_DMA, &map) } < 0 {
            let e = last_err();
            // SAFETY: our mapping, never given to the device.
            unsafe { libc::munmap(p, len) };
            return Err(VfioStep::Map(e));
        }
        Ok(DmaMem {
            ptr,
            len,
            iova,
            huge,
            vfio: vfio.clone(),
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }
    pub fn iova(&self) -> u64 {
        self.iova
    }
    pub fn huge(&self) -> bool {
        self.huge
    }

    fn check(&self, off: usize, n: usize) {
        assert!(
            off.checked_add(n).is_some_and(|e| e <= self.len),
            "dma access {off}+{n} beyond {}",
            self.len
        );
    }

    /// Reads a little-endian u32 the device may be writing (a completion entry's last dword).
    pub fn read_u32_volatile(&self, off: usize) -> u32 {
        self.check(off, 4);
        assert!(off % 4 == 0);
        // SAFETY: in bounds and aligned (checked); the device writes this memory by DMA at any
        // time, so the read is volatile; an Acquire fence orders the reads that follow it.
        let v = unsafe { self.ptr.add(off).cast::<u32>().read_volatile() };
        fence(Ordering::Acquire);
        u32::from_le(v)
    }

    /// Copies `out.len()` bytes out at `off` (memory the protocol gives the host right now:
    /// a completion entry whose phase matched, Read data of a completed command).
    pub fn read(&self, off: usize, out: &mut [u8]) {
        self.check(off, out.len());
        // SAFETY: in bounds; the device no longer writes this range (see above); `out` is ours.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(off), out.as_mut_ptr(), out.len()) };
    }

    /// Copies `data` in at `off` (a submission entry, a PRP list, Write data: memory the device
    /// reads only after the doorbell write that follows).
    pub fn write(&self, off: usize, data: &[u8]) {
        self.check(off, data.len());
        // SAFETY: in bounds; the device does not read the range until it is handed over by a
        // later doorbell write (which fences).
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(off), data.len()) };
    }

    /// Fills `n` bytes at `off` with zeroes.
    pub fn zero(&self, off: usize, n: usize) {
        self.check(off, n);
        // SAFETY: in bounds; not owned by the device (as for `write`).
        unsafe { self.ptr.add(off).write_bytes(0, n) };
    }

    /// Copies `len` bytes at `off` into a caller's buffer.
    pub fn read_to_user(&self, off: usize, user: &UserBuf, user_off: usize, len: usize) {
        self.check(off, len);
        assert!(user_off + len <= user.len);
        // SAFETY: both ranges are in bounds (checked); the device is done with the DMA range
        // (its command completed); `user` is the caller's buffer, kept alive and unmoved until
        // the completion is reported (the BdevQueue contract), and nothing else writes it meanwhile.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(off), user.ptr.add(user_off), len) };
    }

    /// Copies `len` bytes of a caller's buffer in at `off`.
    pub fn write_from_user(&self, off: usize, user: &UserBuf, user_off: usize, len: usize) {
        self.check(off, len);
        assert!(user_off + len <= user.len);
        // SAFETY: as `read_to_user`, the other way; the device reads the range only after the
        // submission's doorbell.
        unsafe { std::ptr::copy_nonoverlapping(user.ptr.add(user_off), self.ptr.add(off), len) };
    }
}

impl Drop for DmaMem {
    fn drop(&mut self) {
        let unmap = vfio_iommu_type1_dma_unmap {
            argsz: std::mem::size_of::<vfio_iommu_type1_dma_unmap>() as u32,
            flags: 0,
            iova: self.iova,
            size: self.len as u64,
            data: Default::default(),
        };
        // SAFETY: the kernel reads the struct; after it the device can no longer reach the
        // memory (an access faults in the IOMMU), so freeing it below is safe.
        unsafe { libc::ioctl(self.vfio.container.as_raw_fd(), IOMMU_UNMAP_DMA, &unmap) };
        // SAFETY: our mapping, unreachable by the device now.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// A caller's buffer held across an operation (its pointer and length, the lifetime erased):
/// the [`super::super::BdevQueue`] contract keeps it alive and unmoved until the completion is
/// reported or the queue is quiesced.
#[derive(Clone, Copy, Debug)]
pub struct UserBuf {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: a plain pointer the owning queue dereferences on its own thread only.
unsafe impl Send for UserBuf {}

impl Default for UserBuf {
    fn default() -> Self {
        UserBuf {
            ptr: std::ptr::null_mut(),
            len: 0,
        }
    }
}

impl UserBuf {
    /// A buffer the device's data is copied into (Read).
    pub fn from_mut(b: &mut [u8]) -> UserBuf {
        UserBuf {
            ptr: b.as_mut_ptr(),
            len: b.len(),
        }
    }
    /// A buffer the data is copied from (Write); never written through.
    pub fn from_ref(b: &[u8]) -> UserBuf {
        UserBuf {
            ptr: b.as_ptr().cast_mut(),
            len: b.len(),
        }
    }
}
