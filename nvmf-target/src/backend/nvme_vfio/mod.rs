//! The `nvme-vfio` backend: a user-space NVMe driver over VFIO (what SPDK's NVMe driver does),
//! for a PCIe controller bound to `vfio-pci`.
//!
//! Ownership and threads: [`NvmeVfioBdev::open`] runs once at start on the main thread. It checks
//! that the device is bound to vfio-pci and that its IOMMU group is viable, maps BAR0, resets the
//! controller (CC.EN = 0, wait CSTS.RDY = 0, CAP.TO bounds every wait: a target killed with
//! SIGKILL left it enabled), sets up the admin queue, enables it, identifies the controller and
//! the namespace, and asks for I/O queues (Set Features, Number of Queues). Then each reactor, on
//! its own pinned thread, opens an [`NvmeVfioQueue`]: it allocates its submission and completion
//! queues and its DMA pages there (first touch: the reactor's NUMA node), maps them for the
//! device at IOVAs from the controller's allocator and creates the I/O queue pair through the
//! admin queue (the only lock: admin commands are rare). The queue pair has its own doorbells
//! (stride CAP.DSTRD) and is used by that reactor alone, without locks or system calls: `submit`
//! writes entries, `poll` rings the submission doorbell once for everything written since, and
//! reaps the completion queue by its phase bit (no interrupts are set up).
//!
//! Data: the transports' buffers are ordinary memory the IOMMU does not map, so data moves
//! through a per-queue pool of 4 KiB DMA pages (hugepage-backed when the kernel has them): a
//! Write copies into pages, a Read copies out on completion. A transfer over two pages gets a
//! PRP list (one page of the pool, up to 512 entries: 2 MiB). An operation that finds no free
//! command id or pages waits in a FIFO backlog and starts when completions free them.
//!
//! Commands: Read, Write, Flush (completed at once when the controller has no volatile write
//! cache), Write Zeroes (split at 65536 blocks), Dataset Management with Deallocate when the
//! namespace reads deallocated blocks as zeroes (DLFEAT), else Write Zeroes with the Deallocate
//! bit, so a deallocated range always reads back as zeroes as with the other backends.
//!
//! Errors: a command not completed within [`COMMAND_TIMEOUT_SECS`] is reported to the host as an
//! error (its id and pages stay reserved until the controller answers, if ever); controller
//! fatal status (CSTS.CFS) fails everything in flight and every later command. Each prints one
//! line the first time. On drop (clean exit) the queues are deleted and the controller is shut
//! down (CC.SHN, wait CSTS.SHST).
//!
//! The `unsafe` of the driver is in [`hw`] alone.

mod hw;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nvme_proto::identify::decode_ns_list;
use nvme_proto::nvme::{AdminOpcode, Cid, Cqe, Nsid, Sqe, CQE_SIZE, SQE_SIZE};
use nvme_proto::sgl::SglDescriptor;

use super::nvme_dev::{encode_dsm_ranges, identify_cmd, status_result, DevCmd, DevData, NvmeNs};
use super::{Bdev, BdevError, BdevOp, BdevQueue, DeviceInfo, DoneQueue};
use crate::config::BackendKind;
use hw::{Bar, DmaMem, UserBuf, Vfio, VfioStep, PAGE};

/// Seconds an I/O command may take before it is reported to the host as failed (Linux's
/// `nvme_core.io_timeout` default).
pub const COMMAND_TIMEOUT_SECS: u32 = 30;
/// Entries of the admin queue pair.
const ADMIN_ENTRIES: u16 = 32;
/// Largest I/O queue created (entries); the controller's CAP.MQES may lower it.
const MAX_IO_ENTRIES: usize = 1024;
/// Bytes of DMA data pages per reactor queue.
const POOL_BYTES: usize = 8 << 20;
/// Largest transfer: one PRP list page of 512 entries plus PRP1.
const MAX_TRANSFER: u64 = 2 << 20;
/// First IOVA handed out (above the 32-bit space and its MSI window).
const IOVA_BASE: u64 = 1 << 32;

// Controller registers (NVMe base specification, section 3.1).
const REG_CAP: usize = 0x00;
const REG_CC: usize = 0x14;
const REG_CSTS: usize = 0x1c;
const REG_AQA: usize = 0x24;
const REG_ASQ: usize = 0x28;
const REG_ACQ: usize = 0x30;
const CSTS_RDY: u32 = 1;
const CSTS_CFS: u32 = 1 << 1;
const CSTS_SHST_MASK: u32 = 3 << 2;
const CSTS_SHST_DONE: u32 = 2 << 2;
const CC_EN: u32 = 1;
const CC_SHN_NORMAL: u32 = 1 << 14;
/// CC with IOSQES = 6 (64 bytes), IOCQES = 4 (16 bytes), MPS = 0 (4 KiB), CSS = NVM, AMS = RR.
const CC_CONFIG: u32 = (6 << 16) | (4 << 20);
/// Features.
const FID_NUMBER_OF_QUEUES: u32 = 0x07;

/// Why the nvme-vfio backend could not start on a device (one line for the user, naming the fix).
#[derive(Debug, thiserror::Error)]
pub enum NvmeVfioError {
    #[error("nvme-vfio {bdf}: no such PCI device (/sys/bus/pci/devices/{bdf} is missing; the address is domain:bus:device.function, e.g. 0000:81:00.0, see lspci -D)")]
    NoDevice { bdf: String },
    #[error("nvme-vfio {bdf}: the device is bound to {driver}, not vfio-pci; bind it with: modprobe vfio-pci; echo {bdf} > /sys/bus/pci/devices/{bdf}/driver/unbind; echo vfio-pci > /sys/bus/pci/devices/{bdf}/driver_override; echo {bdf} > /sys/bus/pci/drivers_probe")]
    NotVfio { bdf: String, driver: String },
    #[error("nvme-vfio {bdf}: the device has no IOMMU group (no IOMMU: boot with intel_iommu=on or amd_iommu=on, and bind it to vfio-pci)")]
    NoGroup { bdf: String },
    #[error("nvme-vfio {bdf}: IOMMU group {group} is not viable: every device in it must be bound to vfio-pci (or no driver), and {others} is not; unbind it: echo BDF > /sys/bus/pci/devices/BDF/driver/unbind, or bind it to vfio-pci the same way")]
    NotViable {
        bdf: String,
        group: u32,
        others: String,
    },
    #[error("nvme-vfio {bdf}: {what}")]
    Vfio {
        bdf: String,
        what: String,
        #[source]
        source: Option<std::io::Error>,
    },
    #[error("nvme-vfio {bdf}: the controller {what}")]
    Controller { bdf: String, what: String },
}

/// The controller, shared by the bdev and every reactor's queue.
#[derive(Debug)]
struct Ctrl {
    bdf: String,
    numa_node: Option<u32>,
    vfio: Arc<Vfio>,
    bar: Bar,
    /// Bytes between doorbells: 4 << CAP.DSTRD.
    db_stride: usize,
    /// CAP.TO: the longest a CSTS transition may take.
    ready_timeout: Duration,
    /// CAP.MQES + 1: the largest queue the controller takes.
    max_entries: usize,
    admin: Mutex<Admin>,
    next_iova: AtomicU64,
    /// The I/O queue ids granted by Set Features (Number of Queues) and which are free.
    qids: Mutex<QidPool>,
    /// The namespace as Identify describes it (the shared NVMe-device layer plans its commands).
    ns: NvmeNs,
    /// Blocks served (the namespace, or its start when the configuration gives a size).
    served: u64,
    /// Controller fatal status seen: every command fails from then on.
    failed: AtomicBool,
    said_timeout: AtomicBool,
    said_small_pages: AtomicBool,
    timeouts: AtomicU64,
    device_errors: AtomicU64,
}

/// One submission/completion queue pair's ring state (admin or I/O).
#[derive(Debug)]
struct Ring {
    sq: DmaMem,
    cq: DmaMem,
    entries: u16,
    qid: u16,
    sq_tail: u16,
    cq_head: u16,
    phase: bool,
    /// Entries written since the last submission doorbell.
    unrung: bool,
}

impl Ring {
    fn new(ctrl: &Ctrl, qid: u16, entries: u16) -> Result<Ring, VfioStep> {
        let sq = ctrl.dma(usize::from(entries) * SQE_SIZE)?;
        let cq = ctrl.dma(usize::from(entries) * CQE_SIZE)?;
        Ok(Ring {
            sq,
            cq,
            entries,
            qid,
            sq_tail: 0,
            cq_head: 0,
            phase: true,
            unrung: false,
        })
    }

    fn sq_doorbell(&self, ctrl: &Ctrl) -> usize {
        0x1000 + 2 * usize::from(self.qid) * ctrl.db_stride
    }

    fn cq_doorbell(&self, ctrl: &Ctrl) -> usize {
        0x1000 + (2 * usize::from(self.qid) + 1) * ctrl.db_stride
    }

    /// Writes a command at the tail (the caller keeps at most `entries - 1` outstanding).
    fn push(&mut self, sqe: &Sqe) {
        self.sq
            .write(usize::from(self.sq_tail) * SQE_SIZE, &sqe.to_bytes());
        self.sq_tail = (self.sq_tail + 1) % self.entries;
        self.unrung = true;
    }

    fn ring(&mut self, ctrl: &Ctrl) {
        if self.unrung {
            ctrl.bar
                .write32(self.sq_doorbell(ctrl), u32::from(self.sq_tail));
            self.unrung = false;
        }
    }

    /// The next completion, if the controller has posted it (its phase tag matches ours).
    fn next(&mut self) -> Option<Cqe> {
        let off = usize::from(self.cq_head) * CQE_SIZE;
        let dw3 = self.cq.read_u32_volatile(off + 12);
        if (dw3 >> 16) & 1 != u32::from(self.phase) {
            return None;
        }
        let mut b = [0u8; CQE_SIZE];
        self.cq.read(off, &mut b);
        self.cq_head += 1;
        if self.cq_head == self.entries {
            self.cq_head = 0;
            self.phase = !self.phase;
        }
        Some(Cqe::decode(&b))
    }

    fn release(&self, ctrl: &Ctrl) {
        ctrl.bar
            .write32(self.cq_doorbell(ctrl), u32::from(self.cq_head));
    }
}

/// The admin queue and its data page (Identify), used under the controller's lock.
#[derive(Debug)]
struct Admin {
    ring: Ring,
    data: DmaMem,
    cid: u16,
}

fn prp_sqe(opcode: u8, nsid: u32, prp1: u64, prp2: u64) -> Sqe {
    Sqe {
        opcode,
        flags: 0, // PSDT 00b: PRPs
        nsid: Nsid(nsid),
        dptr: prp_dptr(prp1, prp2),
        ..Sqe::new(opcode, Cid(0))
    }
}

/// PRP1 and PRP2 of a transfer of `len` bytes over `pages` (IOVAs of 4 KiB pages, in order),
/// with `list` the IOVA of a page for the PRP list when more than two pages are needed; the
/// entries of that list are returned in `entries` (pages 1..).
fn prps(pages: &[u64], list: Option<u64>) -> (u64, u64, &[u64]) {
    match pages {
        [] => (0, 0, &[]),
        [p] => (*p, 0, &[]),
        [p, q] => (*p, *q, &[]),
        [p, rest @ ..] => (*p, list.expect("a PRP list page for over two pages"), rest),
    }
}

impl Ctrl {
    fn dma(&self, len: usize) -> Result<DmaMem, VfioStep> {
        let len = len.max(PAGE).next_multiple_of(PAGE);
        let iova = self
            .next_iova
            .fetch_add(len.next_multiple_of(2 << 20) as u64, Ordering::Relaxed);
        DmaMem::new(&self.vfio, len, iova)
    }

    fn err(&self, what: impl Into<String>) -> NvmeVfioError {
        NvmeVfioError::Controller {
            bdf: self.bdf.clone(),
            what: what.into(),
        }
    }

    fn csts(&self) -> u32 {
        self.bar.read32(REG_CSTS)
    }

    /// Waits (bounded by CAP.TO) for `CSTS & mask == want`.
    fn wait_csts(&self, mask: u32, want: u32, what: &str) -> Result<(), NvmeVfioError> {
        let deadline = Instant::now() + self.ready_timeout;
        loop {
            let c = self.csts();
            if c == u32::MAX {
                return Err(self.err(
                    "does not answer (CSTS reads all ones: surprise removal or a dead link)",
                ));
            }
            if c & mask == want {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self.err(format!(
                    "did not {what} within CAP.TO ({} ms; CSTS {c:#x})",
                    self.ready_timeout.as_millis()
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Runs one admin command to completion (bounded by CAP.TO, at least 5 s).
    fn admin(&self, mut sqe: Sqe, data_in: bool) -> Result<(Cqe, Vec<u8>), NvmeVfioError> {
        let mut a = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        a.cid = a.cid.wrapping_add(1);
        sqe.cid = Cid(a.cid);
        if data_in {
            sqe.dptr = prp_dptr(a.data.iova(), 0);
        }
        let opcode = sqe.opcode;
        a.ring.push(&sqe);
        a.ring.ring(self);
        let deadline = Instant::now() + self.ready_timeout.max(Duration::from_secs(5));
        loop {
            if let Some(cqe) = a.ring.next() {
                a.ring.release(self);
                if cqe.cid.0 != a.cid {
                    continue; // a late answer to an earlier (timed-out) command
                }
                let mut out = Vec::new();
                if data_in && cqe.status.is_success() {
                    out = vec![0u8; PAGE];
                    a.data.read(0, &mut out);
                }
                return Ok((cqe, out));
            }
            if self.csts() & CSTS_CFS != 0 {
                return Err(self.err(format!(
                    "reports fatal status (CSTS.CFS) during admin command {opcode:#x}"
                )));
            }
            if Instant::now() > deadline {
                return Err(self.err(format!("did not complete admin command {opcode:#x}")));
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    /// An admin command that must succeed.
    fn admin_ok(
        &self,
        sqe: Sqe,
        data_in: bool,
        what: &str,
    ) -> Result<(Cqe, Vec<u8>), NvmeVfioError> {
        let (cqe, data) = self.admin(sqe, data_in)?;
        if !cqe.status.is_success() {
            return Err(self.err(format!("refused {what} with status {:?}", cqe.status)));
        }
        Ok((cqe, data))
    }

    fn identify(&self, cns: u8, nsid: u32) -> Result<Vec<u8>, NvmeVfioError> {
        let sqe = identify_cmd(cns, nsid);
        Ok(self
            .admin_ok(sqe, true, &format!("Identify (CNS {cns})"))?
            .1)
    }

    /// Creates I/O queue pair `qid` on `ring` (interrupts off: completions are polled).
    fn create_queue(&self, ring: &Ring) -> Result<(), NvmeVfioError> {
        let size = u32::from(ring.entries - 1) << 16 | u32::from(ring.qid);
        let mut cq = prp_sqe(AdminOpcode::CreateIoCq as u8, 0, ring.cq.iova(), 0);
        cq.cdw10 = size;
        cq.cdw11 = 1; // PC = 1 (physically contiguous), IEN = 0
        self.admin_ok(cq, false, "Create I/O Completion Queue")?;
        let mut sq = prp_sqe(AdminOpcode::CreateIoSq as u8, 0, ring.sq.iova(), 0);
        sq.cdw10 = size;
        sq.cdw11 = u32::from(ring.qid) << 16 | 1; // CQID, PC = 1
        if let Err(e) = self.admin_ok(sq, false, "Create I/O Submission Queue") {
            self.delete_queue(ring.qid, false);
            return Err(e);
        }
        Ok(())
    }

    fn delete_queue(&self, qid: u16, sq_too: bool) {
        if sq_too {
            let mut d = prp_sqe(AdminOpcode::DeleteIoSq as u8, 0, 0, 0);
            d.cdw10 = u32::from(qid);
            let _ = self.admin(d, false);
        }
        let mut d = prp_sqe(AdminOpcode::DeleteIoCq as u8, 0, 0, 0);
        d.cdw10 = u32::from(qid);
        let _ = self.admin(d, false);
    }

    /// Marks the controller failed (CSTS.CFS); prints one line the first time.
    fn fatal(&self) {
        if !self.failed.swap(true, Ordering::Relaxed) {
            eprintln!(
                "ringside-tgt: nvme-vfio {}: controller fatal status (CSTS.CFS): commands in flight and every later one fail; restart the target to reset the controller",
                self.bdf
            );
        }
    }
}

impl Drop for Ctrl {
    fn drop(&mut self) {
        if self.failed.load(Ordering::Relaxed) {
            return;
        }
        // Clean shutdown: the controller flushes its caches and completes what it must; then
        // disable it (the spec wants CC.EN = 0 before any further use), so vfio-pci's reset on
        // release finds it idle.
        let cc = self.bar.read32(REG_CC);
        self.bar.write32(REG_CC, (cc & !(3 << 14)) | CC_SHN_NORMAL);
        let shut = self.wait_csts(
            CSTS_SHST_MASK,
            CSTS_SHST_DONE,
            "finish its shutdown (CC.SHN)",
        );
        if let Err(e) = shut {
            eprintln!("ringside-tgt: {e}");
        }
        self.bar.write32(REG_CC, 0);
        if let Err(e) = self.wait_csts(CSTS_RDY, 0, "become not ready after CC.EN = 0") {
            eprintln!("ringside-tgt: {e}");
        }
    }
}

/// The device's sysfs directory, checks that it is bound to vfio-pci, and its IOMMU group.
fn check_binding(bdf: &str) -> Result<u32, NvmeVfioError> {
    let dev = PathBuf::from(format!("/sys/bus/pci/devices/{bdf}"));
    if bdf.contains('/') || !dev.exists() {
        return Err(NvmeVfioError::NoDevice { bdf: bdf.into() });
    }
    let driver = link_name(&dev.join("driver")).unwrap_or_else(|| "no driver".into());
    if driver != "vfio-pci" {
        return Err(NvmeVfioError::NotVfio {
            bdf: bdf.into(),
            driver,
        });
    }
    let group = link_name(&dev.join("iommu_group"))
        .and_then(|g| g.parse::<u32>().ok())
        .ok_or_else(|| NvmeVfioError::NoGroup { bdf: bdf.into() })?;
    Ok(group)
}

fn link_name(p: &Path) -> Option<String> {
    let t = std::fs::read_link(p).ok()?;
    Some(t.file_name()?.to_string_lossy().into_owned())
}

/// The devices of `group` other than `bdf` that keep it from being viable (bound to a driver
/// other than vfio-pci), as "BDF (driver)".
fn group_blockers(group: u32, bdf: &str) -> String {
    let dir = format!("/sys/kernel/iommu_groups/{group}/devices");
    let mut v = Vec::new();
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == bdf {
            continue;
        }
        let drv = link_name(&e.path().join("driver"));
        match drv.as_deref() {
            None | Some("vfio-pci") | Some("pcieport") => {}
            Some(d) => v.push(format!("{name} ({d})")),
        }
    }
    if v.is_empty() {
        "another device of the group".into()
    } else {
        v.join(", ")
    }
}

/// An NVMe namespace on a PCIe controller driven from user space through VFIO.
#[derive(Debug)]
pub struct NvmeVfioBdev {
    ctrl: Arc<Ctrl>,
}

impl NvmeVfioBdev {
    /// Opens the controller at `bdf` and its first active namespace. `want_block_size` (0: the
    /// device's) must be the namespace's; `size` (0: all of it) may use only its start.
    pub fn open(bdf: &str, want_block_size: u32, size: u64) -> Result<NvmeVfioBdev, NvmeVfioError> {
        let group = check_binding(bdf)?;
        let vfio_err = |what: &str, source: Option<std::io::Error>| NvmeVfioError::Vfio {
            bdf: bdf.into(),
            what: what.into(),
            source,
        };
        let vfio = Vfio::open(group, bdf).map_err(|s| match s {
            VfioStep::NotViable => NvmeVfioError::NotViable {
                bdf: bdf.into(),
                group,
                others: group_blockers(group, bdf),
            },
            VfioStep::Container(e) => vfio_err(
                "cannot open /dev/vfio/vfio (modprobe vfio-pci; run as root)",
                Some(e),
            ),
            VfioStep::Group(e) if e.raw_os_error() == Some(libc::EBUSY) => vfio_err(
                &format!(
                    "/dev/vfio/{group} is in use (another ringside-tgt or VM owns the device)"
                ),
                None,
            ),
            VfioStep::Group(e) => vfio_err(&format!("cannot open /dev/vfio/{group}"), Some(e)),
            VfioStep::ApiVersion(v) => vfio_err(&format!("unknown VFIO API version {v}"), None),
            VfioStep::NoType1 => vfio_err("the kernel's VFIO lacks the type-1 v2 IOMMU", None),
            VfioStep::SetContainer(e) | VfioStep::SetIommu(e) => {
                vfio_err("cannot attach the IOMMU group to a VFIO container", Some(e))
            }
            VfioStep::DeviceFd(e) => vfio_err("cannot get the device from its VFIO group", Some(e)),
            other => vfio_err(&format!("vfio setup failed: {other}"), None),
        })?;
        let vfio = Arc::new(vfio);
        let reset = vfio.reset();
        vfio.enable_bus_master()
            .map_err(|s| vfio_err(&format!("cannot enable bus mastering: {s}"), None))?;
        let bar = vfio
            .map_bar0()
            .map_err(|s| vfio_err(&format!("cannot map BAR0: {s}"), None))?;
        let cap = bar.read64(REG_CAP);
        let numa_node = std::fs::read_to_string(format!("/sys/bus/pci/devices/{bdf}/numa_node"))
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .and_then(|n| u32::try_from(n).ok());
        let mut ctrl = Ctrl {
            bdf: bdf.into(),
            numa_node,
            vfio: vfio.clone(),
            bar,
            db_stride: 4 << ((cap >> 32) & 0xf),
            ready_timeout: Duration::from_millis(((cap >> 24) & 0xff).max(1) * 500),
            max_entries: ((cap & 0xffff) as usize + 1).max(2),
            // Placeholder until the admin queue exists below.
            admin: Mutex::new(Admin {
                ring: Ring {
                    sq: DmaMem::new(&vfio, PAGE, IOVA_BASE)
                        .map_err(|s| vfio_err(&format!("cannot map DMA memory: {s}"), None))?,
                    cq: DmaMem::new(&vfio, PAGE, IOVA_BASE + (2 << 20))
                        .map_err(|s| vfio_err(&format!("cannot map DMA memory: {s}"), None))?,
                    entries: ADMIN_ENTRIES,
                    qid: 0,
                    sq_tail: 0,
                    cq_head: 0,
                    phase: true,
                    unrung: false,
                },
                data: DmaMem::new(&vfio, PAGE, IOVA_BASE + (4 << 20))
                    .map_err(|s| vfio_err(&format!("cannot map DMA memory: {s}"), None))?,
                cid: 0,
            }),
            next_iova: AtomicU64::new(IOVA_BASE + (6 << 20)),
            qids: Mutex::new(QidPool::new(0)),
            ns: NvmeNs {
                nsid: 0,
                block_size: 512,
                num_blocks: 0,
                max_transfer: PAGE as u32,
                mdts: 0,
                volatile_cache: false,
                write_zeroes: false,
                dsm: false,
                dealloc_reads_zeroes: false,
                model: String::new(),
                serial: String::new(),
                firmware: String::new(),
            },
            served: 0,
            failed: AtomicBool::new(false),
            said_timeout: AtomicBool::new(false),
            said_small_pages: AtomicBool::new(false),
            timeouts: AtomicU64::new(0),
            device_errors: AtomicU64::new(0),
        };
        if cap == u64::MAX {
            ctrl.failed.store(true, Ordering::Relaxed);
            return Err(ctrl.err("does not answer (CAP reads all ones)"));
        }
        if (cap >> 37) & 1 == 0 {
            ctrl.failed.store(true, Ordering::Relaxed);
            return Err(ctrl.err("does not support the NVM command set (CAP.CSS)"));
        }
        if (cap >> 48) & 0xf != 0 {
            ctrl.failed.store(true, Ordering::Relaxed);
            return Err(ctrl.err("needs pages over 4 KiB (CAP.MPSMIN); not supported"));
        }
        // Reset: a previous owner (a target killed with SIGKILL) may have left it enabled.
        let was_enabled = ctrl.bar.read32(REG_CC) & CC_EN != 0;
        ctrl.bar.write32(REG_CC, 0);
        if let Err(e) = ctrl.wait_csts(CSTS_RDY, 0, "become not ready after CC.EN = 0") {
            ctrl.failed.store(true, Ordering::Relaxed);
            return Err(e);
        }
        if was_enabled {
            eprintln!(
                "ringside-tgt: nvme-vfio {bdf}: the controller was left enabled (a previous owner did not shut it down); reset it{}",
                if reset { " (and the PCI function)" } else { "" }
            );
        }
        {
            let a = ctrl.admin.get_mut().unwrap_or_else(|e| e.into_inner());
            let e = u32::from(ADMIN_ENTRIES - 1);
            ctrl.bar.write32(REG_AQA, e << 16 | e);
            ctrl.bar.write64(REG_ASQ, a.ring.sq.iova());
            ctrl.bar.write64(REG_ACQ, a.ring.cq.iova());
        }
        ctrl.bar.write32(REG_CC, CC_CONFIG | CC_EN);
        if let Err(e) = ctrl.wait_csts(
            CSTS_RDY | CSTS_CFS,
            CSTS_RDY,
            "become ready after CC.EN = 1",
        ) {
            ctrl.failed.store(true, Ordering::Relaxed);
            return Err(e);
        }
        let id_ctrl = ctrl.identify(1, 0)?;
        let list = decode_ns_list(&ctrl.identify(2, 0)?).map_err(|e| {
            ctrl.err(format!(
                "sent an active namespace list that does not decode: {e}"
            ))
        })?;
        let nsid = list
            .first()
            .map(|n| n.0)
            .ok_or_else(|| ctrl.err("has no active namespace"))?;
        let mut ns = NvmeNs::from_identify(&id_ctrl, &ctrl.identify(0, nsid)?, nsid)
            .map_err(|e| ctrl.err(e.to_string()))?;
        // One PRP list page per command: 512 entries plus PRP1.
        ns.cap_transfer(MAX_TRANSFER);
        let served = ns
            .served_blocks(want_block_size, size)
            .map_err(|e| ctrl.err(format!("namespace {nsid}: {e}")))?;
        // Number of Queues: ask for one per possible reactor; the controller grants what it has.
        let want = std::thread::available_parallelism()
            .map_or(4, |n| n.get())
            .clamp(1, 64) as u32;
        let mut nq = prp_sqe(AdminOpcode::SetFeatures as u8, 0, 0, 0);
        nq.cdw10 = FID_NUMBER_OF_QUEUES;
        nq.cdw11 = (want - 1) << 16 | (want - 1);
        let (cqe, _) = ctrl.admin_ok(nq, false, "Set Features (Number of Queues)")?;
        let granted = ((cqe.dw0 & 0xffff).min(cqe.dw0 >> 16) + 1).min(want) as u16;
        ctrl.qids = Mutex::new(QidPool::new(granted));
        eprintln!(
            "ringside-tgt: nvme-vfio {bdf}: {} {} (fw {}), namespace {nsid}: {served} of {} blocks of {} bytes, numa node {}, {granted} I/O queues, largest transfer {} bytes",
            ns.model.trim(),
            ns.serial.trim(),
            ns.firmware.trim(),
            ns.num_blocks,
            ns.block_size,
            numa_node.map_or("unknown".into(), |n| n.to_string()),
            ns.max_transfer,
        );
        ctrl.ns = ns;
        ctrl.served = served;
        Ok(NvmeVfioBdev {
            ctrl: Arc::new(ctrl),
        })
    }

    /// The PCI address.
    pub fn bdf(&self) -> &str {
        &self.ctrl.bdf
    }

    /// Commands that timed out so far.
    pub fn timeouts(&self) -> u64 {
        self.ctrl.timeouts.load(Ordering::Relaxed)
    }

    /// Commands the device completed with an error status so far.
    pub fn device_errors(&self) -> u64 {
        self.ctrl.device_errors.load(Ordering::Relaxed)
    }
}

impl Bdev for NvmeVfioBdev {
    fn kind(&self) -> BackendKind {
        BackendKind::NvmeVfio {
            bdf: self.ctrl.bdf.clone(),
        }
    }
    fn block_size(&self) -> u32 {
        self.ctrl.ns.block_size
    }
    fn num_blocks(&self) -> u64 {
        self.ctrl.served
    }
    fn open_queue(self: Arc<Self>, depth: usize) -> Box<dyn BdevQueue> {
        match NvmeVfioQueue::new(self.ctrl.clone(), depth) {
            Ok(q) => Box::new(q),
            Err(e) => {
                eprintln!("ringside-tgt: {e}; this reactor's I/O to the namespace fails");
                Box::new(NvmeVfioQueue::dead(self.ctrl.clone()))
            }
        }
    }
    fn device(&self) -> Option<DeviceInfo> {
        Some(DeviceInfo {
            name: self.ctrl.bdf.clone(),
            numa_node: self.ctrl.numa_node,
        })
    }
    fn device_path(&self) -> Option<String> {
        Some(self.ctrl.bdf.clone())
    }
    fn device_queue(&self, _reactor: usize, core: usize) -> Option<u32> {
        self.ctrl.qids().for_cpu(core).map(u32::from)
    }
}

/// One operation of the reactor (the caller's tag): the device commands the shared layer planned
/// for it, issued in order as command ids and pages allow.
#[derive(Debug, Default)]
struct Slot {
    /// In use (between `submit` and its report).
    busy: bool,
    tag: u64,
    /// The caller's buffer (Read: copied into on completion; Write: copied from at issue).
    user: UserBuf,
    read: bool,
    /// Deallocate ranges (copied: the caller's scratch is reused).
    ranges: Vec<(u64, u64)>,
    cmds: Vec<DevCmd>,
    next_cmd: usize,
    /// Commands at the device.
    parts: u32,
    /// First error.
    err: Option<BdevError>,
    /// Reported to the caller already (timed out, or the controller failed): the slot waits for
    /// the device's answers only to free what it holds.
    abandoned: bool,
    /// Watchdog epoch of its first command.
    epoch: u32,
}

impl Slot {
    fn issued(&self) -> bool {
        self.abandoned || self.next_cmd == self.cmds.len()
    }
}

/// A command at the device: its slot, its pages, and where Read data goes on completion.
#[derive(Debug, Default)]
struct Cmd {
    slot: u32,
    pages: Vec<u32>,
    /// Read data: copy `len` bytes to the slot's buffer at `user_off` on success.
    copy_out: bool,
    user_off: usize,
    len: usize,
}

/// One reactor's I/O queue pair on the controller.
#[derive(Debug)]
pub struct NvmeVfioQueue {
    ctrl: Arc<Ctrl>,
    ring: Option<Ring>,
    pool: Option<DmaMem>,
    free_pages: Vec<u32>,
    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    /// Indexed by command id.
    cmds: Vec<Cmd>,
    free_cids: Vec<u16>,
    backlog: VecDeque<u32>,
    ready: DoneQueue,
    outstanding: usize,
    /// Scratch: page IOVAs of one command, a DSM range page.
    iovas: Vec<u64>,
    page: Vec<u8>,
    polls: u32,
    epoch: u32,
    epoch_at: Instant,
}

/// The I/O queue ids granted by Set Features (Number of Queues), and which of them are free.
#[derive(Debug)]
struct QidPool {
    granted: u16,
    /// Ascending.
    free: Vec<u16>,
}

impl QidPool {
    fn new(granted: u16) -> QidPool {
        QidPool {
            granted,
            free: (1..=granted).collect(),
        }
    }

    /// The I/O queue a reactor pinned to CPU `cpu` takes: `cpu + 1` while the controller granted
    /// that many, so the trace description can name every reactor's queue before the reactors
    /// open them. A reactor on a higher CPU takes the highest free queue and is not named there.
    fn for_cpu(&self, cpu: usize) -> Option<u16> {
        u16::try_from(cpu + 1).ok().filter(|q| *q <= self.granted)
    }

    /// Takes the queue id for a reactor on CPU `cpu` (see [`QidPool::for_cpu`]).
    fn take(&mut self, cpu: usize) -> Option<u16> {
        match self
            .for_cpu(cpu)
            .and_then(|q| self.free.binary_search(&q).ok())
        {
            Some(i) => Some(self.free.remove(i)),
            None => self.free.pop(),
        }
    }

    /// Gives a queue id back.
    fn put(&mut self, qid: u16) {
        if let Err(i) = self.free.binary_search(&qid) {
            self.free.insert(i, qid);
        }
    }
}

impl Ctrl {
    fn qids(&self) -> std::sync::MutexGuard<'_, QidPool> {
        self.qids.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl NvmeVfioQueue {
    fn new(ctrl: Arc<Ctrl>, depth: usize) -> Result<NvmeVfioQueue, NvmeVfioError> {
        // The reactor thread is pinned to its core before it opens its queues.
        let qid = ctrl
            .qids()
            .take(rustix::thread::sched_getcpu())
            .ok_or_else(|| {
                ctrl.err(
                    "has no I/O queue left for another reactor (Number of Queues); use fewer cores",
                )
            })?;
        let entries = (depth + 1).min(ctrl.max_entries).clamp(2, MAX_IO_ENTRIES) as u16;
        let map = |s: VfioStep| ctrl.err(format!("queue memory could not be mapped: {s}"));
        let made = Ring::new(&ctrl, qid, entries)
            .map_err(map)
            .and_then(|ring| {
                let pool = ctrl.dma(POOL_BYTES).map_err(map)?;
                ctrl.create_queue(&ring)?;
                Ok((ring, pool))
            });
        let (ring, pool) = match made {
            Ok(x) => x,
            Err(e) => {
                ctrl.qids().put(qid);
                return Err(e);
            }
        };
        let npages = (pool.len() / PAGE) as u32;
        if !pool.huge() && !ctrl.said_small_pages.swap(true, Ordering::Relaxed) {
            eprintln!(
                "ringside-tgt: nvme-vfio {}: no 2 MiB hugepages for the DMA pages (echo 64 > /proc/sys/vm/nr_hugepages); using 4 KiB pages",
                ctrl.bdf
            );
        }
        let max_pages = (ctrl.ns.max_transfer as usize).div_ceil(PAGE) + 1;
        let depth = depth.max(1);
        Ok(NvmeVfioQueue {
            ring: Some(ring),
            pool: Some(pool),
            free_pages: (0..npages).rev().collect(),
            slots: (0..depth).map(|_| Slot::default()).collect(),
            free_slots: (0..depth as u32).rev().collect(),
            cmds: (0..entries)
                .map(|_| Cmd {
                    pages: Vec::with_capacity(max_pages),
                    ..Cmd::default()
                })
                .collect(),
            free_cids: (0..entries - 1).rev().collect(),
            backlog: VecDeque::with_capacity(depth),
            ready: DoneQueue::new(depth),
            outstanding: 0,
            iovas: Vec::with_capacity(max_pages),
            page: vec![0u8; PAGE],
            polls: 0,
            epoch: 0,
            epoch_at: Instant::now(),
            ctrl,
        })
    }

    /// A queue without a queue pair: every operation fails.
    fn dead(ctrl: Arc<Ctrl>) -> NvmeVfioQueue {
        NvmeVfioQueue {
            ctrl,
            ring: None,
            pool: None,
            free_pages: Vec::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            cmds: Vec::new(),
            free_cids: Vec::new(),
            backlog: VecDeque::new(),
            ready: DoneQueue::new(64),
            outstanding: 0,
            iovas: Vec::new(),
            page: Vec::new(),
            polls: 0,
            epoch: 0,
            epoch_at: Instant::now(),
        }
    }

    /// The I/O queue id on the controller (None: this reactor got none).
    pub fn qid(&self) -> Option<u16> {
        self.ring.as_ref().map(|r| r.qid)
    }

    /// Issues what it can of slot `s`'s commands; false when it must wait for command ids or
    /// pages.
    fn advance(&mut self, s: u32) -> bool {
        let si = s as usize;
        while !self.slots[si].issued() {
            let Some(&cid) = self.free_cids.last() else {
                return false;
            };
            let dc = self.slots[si].cmds[self.slots[si].next_cmd];
            let (bytes, fill) = match dc.data {
                DevData::None => (0, None),
                DevData::Buf { offset, len } => (len, Some(offset)),
                DevData::Zeroes { len } | DevData::Ranges { len } => (len, None),
            };
            let n = bytes.div_ceil(PAGE);
            let need = n + usize::from(n > 2);
            if self.free_pages.len() < need {
                return false;
            }
            self.free_cids.pop();
            let pool = self.pool.as_ref().expect("a live queue has its pool");
            let slot = &mut self.slots[si];
            let cmd = &mut self.cmds[usize::from(cid)];
            cmd.slot = s;
            cmd.copy_out = false;
            self.iovas.clear();
            for i in 0..n {
                let p = self.free_pages.pop().expect("counted above");
                cmd.pages.push(p);
                let off = p as usize * PAGE;
                self.iovas.push(pool.iova() + off as u64);
                let chunk = PAGE.min(bytes - i * PAGE);
                match (dc.data, fill) {
                    (DevData::Buf { .. }, Some(at)) if !slot.read => {
                        pool.write_from_user(off, &slot.user, at + i * PAGE, chunk)
                    }
                    (DevData::Zeroes { .. }, _) => pool.zero(off, PAGE),
                    _ => {}
                }
            }
            if let (DevData::Ranges { len }, Some(&p)) = (dc.data, cmd.pages.first()) {
                let w = encode_dsm_ranges(&slot.ranges, &mut self.page[..len.min(PAGE)]);
                pool.write(p as usize * PAGE, &self.page[..w]);
            }
            if let (DevData::Buf { offset, len }, true) = (dc.data, slot.read) {
                cmd.copy_out = true;
                cmd.user_off = offset;
                cmd.len = len;
            }
            let list = (n > 2).then(|| {
                let p = self.free_pages.pop().expect("counted above");
                cmd.pages.push(p);
                p
            });
            let (prp1, prp2, rest) = prps(
                &self.iovas,
                list.map(|p| pool.iova() + (p as usize * PAGE) as u64),
            );
            if let Some(p) = list {
                for (i, e) in rest.iter().enumerate() {
                    pool.write(p as usize * PAGE + i * 8, &e.to_le_bytes());
                }
            }
            let mut sqe = dc.sqe;
            sqe.cid = Cid(cid);
            sqe.dptr = prp_dptr(prp1, prp2);
            if slot.parts == 0 {
                slot.epoch = self.epoch;
            }
            slot.parts += 1;
            slot.next_cmd += 1;
            self.ring
                .as_mut()
                .expect("a live queue has its ring")
                .push(&sqe);
        }
        true
    }

    /// Slot `s` has all its answers: reports it (unless it was already) and frees it.
    fn finish(&mut self, s: u32) {
        let slot = &mut self.slots[s as usize];
        if !slot.abandoned {
            self.ready.push(slot.tag, slot.err.map_or(Ok(()), Err));
        }
        slot.busy = false;
        slot.abandoned = false;
        slot.err = None;
        slot.parts = 0;
        slot.cmds.clear();
        slot.next_cmd = 0;
        slot.ranges.clear();
        slot.user = UserBuf::default();
        self.free_slots.push(s);
    }

    fn check_done(&mut self, s: u32) {
        let slot = &self.slots[s as usize];
        if slot.busy && slot.issued() && slot.parts == 0 {
            self.finish(s);
        }
    }

    /// Starts slot `s` now, or queues it behind the backlog.
    fn start(&mut self, s: u32) {
        if self.backlog.is_empty() && self.advance(s) {
            self.check_done(s);
        } else {
            self.backlog.push_back(s);
        }
    }

    fn reap(&mut self) {
        let mut any = false;
        while let Some(cqe) = self.ring.as_mut().and_then(Ring::next) {
            any = true;
            let cid = cqe.cid.0;
            let Some(cmd) = self.cmds.get_mut(usize::from(cid)) else {
                continue;
            };
            let s = cmd.slot;
            let slot = &mut self.slots[s as usize];
            let ok = cqe.status.is_success();
            if ok && cmd.copy_out && !slot.abandoned {
                let pool = self.pool.as_ref().expect("a live queue has its pool");
                for (i, &p) in cmd.pages.iter().take(cmd.len.div_ceil(PAGE)).enumerate() {
                    let chunk = PAGE.min(cmd.len - i * PAGE);
                    pool.read_to_user(
                        p as usize * PAGE,
                        &slot.user,
                        cmd.user_off + i * PAGE,
                        chunk,
                    );
                }
            }
            self.free_pages.append(&mut cmd.pages);
            self.free_cids.push(cid);
            slot.parts = slot.parts.saturating_sub(1);
            if let Err(e) = status_result(cqe.status) {
                self.ctrl.device_errors.fetch_add(1, Ordering::Relaxed);
                slot.err.get_or_insert(e);
            }
            self.check_done(s);
        }
        if let (true, Some(ring)) = (any, self.ring.as_ref()) {
            ring.release(&self.ctrl);
        }
    }

    fn run_backlog(&mut self) {
        while let Some(&s) = self.backlog.front() {
            if !self.advance(s) {
                break;
            }
            self.backlog.pop_front();
            self.check_done(s);
        }
    }

    /// Every ~1 s of polling: controller fatal status and command timeouts.
    fn watchdog(&mut self) {
        self.polls = self.polls.wrapping_add(1);
        if self.polls % 1024 != 0 || self.epoch_at.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.epoch_at = Instant::now();
        self.epoch = self.epoch.wrapping_add(1);
        let csts = self.ctrl.csts();
        if csts & CSTS_CFS != 0 || csts == u32::MAX {
            self.ctrl.fatal();
        }
        let failed = self.ctrl.failed.load(Ordering::Relaxed);
        for i in 0..self.slots.len() {
            let slot = &mut self.slots[i];
            if !slot.busy || slot.abandoned {
                continue;
            }
            let late = slot.parts > 0 && self.epoch.wrapping_sub(slot.epoch) > COMMAND_TIMEOUT_SECS;
            if !(failed || late) {
                continue;
            }
            slot.abandoned = true;
            self.ready.push(slot.tag, Err(BdevError::Media));
            if late && !failed {
                self.ctrl.timeouts.fetch_add(1, Ordering::Relaxed);
                if !self.ctrl.said_timeout.swap(true, Ordering::Relaxed) {
                    eprintln!(
                        "ringside-tgt: nvme-vfio {}: a command got no completion within {COMMAND_TIMEOUT_SECS} s; reported to the host as an error (later timeouts are counted, not printed)",
                        self.ctrl.bdf
                    );
                }
            }
            self.check_done(i as u32);
        }
        if failed {
            self.backlog.retain(|&s| self.slots[s as usize].busy);
        }
    }
}

fn prp_dptr(prp1: u64, prp2: u64) -> SglDescriptor {
    let mut dptr = [0u8; 16];
    dptr[..8].copy_from_slice(&prp1.to_le_bytes());
    dptr[8..].copy_from_slice(&prp2.to_le_bytes());
    SglDescriptor::Raw(dptr)
}

impl BdevQueue for NvmeVfioQueue {
    fn submit(&mut self, tag: u64, op: BdevOp<'_>) {
        self.outstanding += 1;
        if self.ring.is_none() || self.ctrl.failed.load(Ordering::Relaxed) {
            self.ready.push(tag, Err(BdevError::Media));
            return;
        }
        let Some(s) = self.free_slots.pop() else {
            // More than the depth the queue was opened with: the caller broke its bound.
            self.ready.push(tag, Err(BdevError::Media));
            return;
        };
        let slot = &mut self.slots[s as usize];
        let ctrl = &self.ctrl;
        let cmds = &mut slot.cmds;
        let planned = ctrl
            .ns
            .plan(&op, ctrl.served, ctrl.ns.max_transfer as usize, &mut |c| {
                cmds.push(c)
            });
        match planned {
            Ok(n) if n > 0 => {}
            other => {
                slot.cmds.clear();
                self.free_slots.push(s);
                self.ready.push(tag, other.map(|_| ()));
                return;
            }
        }
        slot.busy = true;
        slot.tag = tag;
        match op {
            BdevOp::Read { buf, .. } => {
                slot.user = UserBuf::from_mut(buf);
                slot.read = true;
            }
            BdevOp::Write { buf, .. } => {
                slot.user = UserBuf::from_ref(buf);
                slot.read = false;
            }
            BdevOp::Deallocate { ranges } => {
                slot.ranges.extend_from_slice(ranges);
                slot.read = false;
            }
            BdevOp::Flush | BdevOp::WriteZeroes { .. } => slot.read = false,
        }
        self.start(s);
    }

    fn poll(&mut self, done: &mut dyn FnMut(u64, Result<(), BdevError>)) -> usize {
        if let Some(ring) = self.ring.as_mut() {
            ring.ring(&self.ctrl);
        }
        self.reap();
        if !self.backlog.is_empty() {
            self.run_backlog();
            if let Some(ring) = self.ring.as_mut() {
                ring.ring(&self.ctrl);
            }
        }
        if self.outstanding > self.ready.len() {
            self.watchdog();
        }
        let n = self.ready.drain(done);
        self.outstanding -= n;
        n
    }

    fn in_flight(&self) -> usize {
        self.outstanding
    }

    fn quiesce(&mut self) {
        // A Write's buffer is read when its command is issued and a Read's written when it
        // completes, so a caller's buffer is in use while its operation is queued or at the
        // device: wait for all of them (bounded by the command timeout).
        let deadline = Instant::now() + Duration::from_secs(u64::from(COMMAND_TIMEOUT_SECS) + 2);
        while self.slots.iter().any(|s| s.busy && !s.abandoned)
            && !self.ctrl.failed.load(Ordering::Relaxed)
        {
            if let Some(ring) = self.ring.as_mut() {
                ring.ring(&self.ctrl);
            }
            self.reap();
            self.run_backlog();
            if Instant::now() > deadline {
                // Report what is left as failed and stop touching the callers' buffers.
                for slot in self.slots.iter_mut().filter(|s| s.busy && !s.abandoned) {
                    slot.abandoned = true;
                    self.ready.push(slot.tag, Err(BdevError::Media));
                }
                break;
            }
            std::thread::yield_now();
        }
        if self.ctrl.failed.load(Ordering::Relaxed) {
            for slot in self.slots.iter_mut().filter(|s| s.busy && !s.abandoned) {
                slot.abandoned = true;
                self.ready.push(slot.tag, Err(BdevError::Media));
            }
        }
    }
}

impl Drop for NvmeVfioQueue {
    fn drop(&mut self) {
        self.quiesce();
        if let Some(ring) = self.ring.take() {
            if !self.ctrl.failed.load(Ordering::Relaxed) {
                // Deleting the submission queue aborts what is left; then its memory can go.
                self.ctrl.delete_queue(ring.qid, true);
            }
            self.ctrl.qids().put(ring.qid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nvme_proto::nvme::IoOpcode;

    #[test]
    fn prp_entries_for_one_two_and_many_pages() {
        let p = [0x1000u64, 0x5000, 0x3000, 0x9000];
        assert_eq!(prps(&p[..1], None), (0x1000, 0, &[][..]));
        assert_eq!(prps(&p[..2], None), (0x1000, 0x5000, &[][..]));
        assert_eq!(
            prps(&p, Some(0x7000)),
            (0x1000, 0x7000, &[0x5000u64, 0x3000, 0x9000][..]),
            "over two pages: PRP2 points at a list of the rest"
        );
    }

    #[test]
    fn prp_command_encodes_psdt_prp_and_both_entries() {
        let s = prp_sqe(IoOpcode::Read as u8, 3, 0x1234_5000, 0xabcd_e000);
        let b = s.to_bytes();
        assert_eq!(b[0], IoOpcode::Read as u8);
        assert_eq!(b[1] >> 6, 0, "PSDT 00b: PRPs");
        assert_eq!(u32::from_le_bytes(b[4..8].try_into().unwrap()), 3);
        assert_eq!(
            u64::from_le_bytes(b[24..32].try_into().unwrap()),
            0x1234_5000
        );
        assert_eq!(
            u64::from_le_bytes(b[32..40].try_into().unwrap()),
            0xabcd_e000
        );
    }

    #[test]
    fn each_reactor_takes_the_queue_its_cpu_names_while_granted() {
        let mut p = QidPool::new(4);
        assert_eq!(p.for_cpu(0), Some(1));
        assert_eq!(p.for_cpu(3), Some(4));
        assert_eq!(p.for_cpu(4), None, "beyond the granted queues: not named");
        assert_eq!(p.take(2), Some(3));
        assert_eq!(p.take(0), Some(1));
        assert_eq!(
            p.take(9),
            Some(4),
            "a high CPU takes the highest free queue"
        );
        assert_eq!(
            p.take(3),
            Some(2),
            "its own queue taken: the highest free one"
        );
        assert_eq!(p.take(1), None, "all four in use");
        p.put(3);
        p.put(3);
        assert_eq!(
            p.take(2),
            Some(3),
            "given back once, taken again by its CPU"
        );
        assert_eq!(p.take(5), None);
    }

    #[test]
    fn unknown_devices_are_one_clear_line() {
        let e = NvmeVfioBdev::open("0000:ff:1f.7", 0, 0)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no such PCI device") && e.contains("0000:ff:1f.7"),
            "{e}"
        );
        assert!(!e.contains('\n'), "one line: {e}");
        let e = NvmeVfioBdev::open("../../etc", 0, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no such PCI device"), "{e}");
    }
}
