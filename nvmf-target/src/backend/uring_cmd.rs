//! The `uring-cmd` backend: NVMe commands straight to a namespace through the kernel's NVMe
//! generic character device (`/dev/ngXnY`) with io_uring passthrough (`IORING_OP_URING_CMD`,
//! `NVME_URING_CMD_IO`), as xNVMe's `io_uring_cmd` engine does. The block layer's request
//! building, merging, splitting and accounting are skipped; the device's own completion status
//! comes back and goes to the host unchanged.
//!
//! Ownership and threads: [`UringCmdBdev`] is created once at start. It checks that the path is
//! an NVMe generic character device (one line otherwise: missing, a block device, another kind of
//! file), opens it read-write, reads the namespace's identity through the admin passthrough ioctl
//! (`NVME_IOCTL_ID` for the NSID, then Identify Controller and Identify Namespace with
//! `NVME_IOCTL_ADMIN_CMD`; geometry, MDTS, VWC, ONCS come from the shared layer in
//! [`super::nvme_dev`]), and probes io_uring passthrough on a short-lived thread (a Read of one
//! block: refused = one line naming CAP_SYS_ADMIN or the kernel's age). It is shared read-only by
//! every reactor. Each reactor opens its own [`UringCmdQueue`] on its own thread: one ring with
//! 128-byte SQEs and 32-byte CQEs (`IORING_SETUP_SQE128 | IORING_SETUP_CQE32`), polled
//! (`IORING_SETUP_IOPOLL`) when the namespace's request queue has poll queues
//! (`nvme.poll_queues=N` on the kernel command line; `/sys/block/nvmeXnY/queue/io_poll`), else
//! with `COOP_TASKRUN` like the `uring` backend. `submit` turns an operation into device commands
//! (split at the device's and the kernel's transfer limit) without a system call; the reactor's
//! backend poll makes one `io_uring_enter` for what is queued (and, with IOPOLL, to poll the
//! device's completion queue) and reaps completions. The queue never locks.
//!
//! Buffers: the caller's buffer goes to the kernel as is (the kernel maps its pages for each
//! command; NVMe only needs dword alignment). The queue's own memory — the Dataset Management
//! range lists and the zero buffer used where a device lacks Write Zeroes — is registered with the
//! ring and used as fixed buffers (`IORING_URING_CMD_FIXED`, Linux 6.1+) when the probe showed
//! the kernel takes them. The transports own the request buffers and may grow them between
//! requests, so those are not registered.
//!
//! All `unsafe` of the backend is here: the admin ioctls (the kernel writes the Identify data into
//! our buffer), registering the queue's buffers, pushing entries that point at buffers (the kernel
//! and, by DMA, the device write into them until the completion is reaped).
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use nvme_proto::identify::cns;
use nvme_proto::nvme::DSM_MAX_RANGES;
use nvme_proto::{Nsid, Sqe, Status};

use super::nvme_dev::{
    encode_dsm_ranges, identify_cmd, DevCmd, DevData, GeometryError, IdentifyError, NvmeNs,
};
use super::ring::{ring_queue_poll, OpSlab, RingCore};
use super::{Bdev, BdevError, BdevOp, BdevQueue, DeviceInfo, IoBuf, IO_ALIGN};
use crate::config::BackendKind;

/// `_IOWR('N', 0x80, struct nvme_uring_cmd)`: an I/O command through io_uring.
pub const NVME_URING_CMD_IO: u32 = 0xC048_4E80;
/// `_IOWR('N', 0x41, struct nvme_passthru_cmd)`: a synchronous admin command.
const NVME_IOCTL_ADMIN_CMD: libc::c_ulong = 0xC048_4E41;
/// `_IO('N', 0x40)`: the namespace id of a namespace device.
const NVME_IOCTL_ID: libc::c_ulong = 0x4E40;
/// Bytes of one Dataset Management range list (256 ranges of 16 bytes).
const DSM_BUF: usize = DSM_MAX_RANGES * 16;
/// Range-list buffers per queue (more Dataset Management commands in flight allocate).
const DSM_SLOTS: usize = 16;
/// Zero buffer for devices without Write Zeroes.
const ZERO_BUF: usize = 128 * 1024;
/// Registered buffer indices.
const REG_DSM: u16 = 0;
const REG_ZERO: u16 = 1;

/// Why a uring-cmd namespace cannot be served (one line for the user).
#[derive(Debug, thiserror::Error)]
pub enum UringCmdError {
    #[error("{path} does not exist: --uring-cmd takes the NVMe generic character device of a namespace, /dev/ngXnY (ls /dev/ng*; Linux 5.13+ makes one per namespace)")]
    Missing { path: PathBuf },
    #[error("{path} is a block device: --uring-cmd takes the namespace's NVMe generic character device ({hint}); a block device goes to --uring")]
    BlockDevice { path: PathBuf, hint: String },
    #[error("{path} is an NVMe controller: --uring-cmd takes one of its namespaces' character devices (/dev/ngXnY)")]
    Controller { path: PathBuf },
    #[error("{path} is not an NVMe generic character device (/dev/ngXnY): it is {what}")]
    NotNvme { path: PathBuf, what: String },
    #[error("cannot open {path} for reading and writing ({source}): run as root, or give this user read-write access to it (e.g. chgrp GROUP {path} && chmod g+rw {path})")]
    Permission {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: the kernel refused NVMe passthrough ({what}: {source}): it needs CAP_SYS_ADMIN here (before Linux 6.2 every passthrough command does); run as root or grant the capability")]
    Refused {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{path}: this kernel cannot do {what} ({source}): io_uring NVMe passthrough needs Linux 5.19 or later; use --uring on the block device instead")]
    TooOld {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("io_uring is refused by this kernel (io_uring_setup failed: {0}: a kernel without io_uring, sysctl kernel.io_uring_disabled, or a seccomp filter such as a container's); the null and malloc backends still work")]
    UringRefused(std::io::Error),
    #[error("{path}: {what} failed ({source})")]
    Io {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{path}: the device answered {what} with {status}")]
    Status {
        path: PathBuf,
        what: &'static str,
        status: Status,
    },
    #[error("{path}: {source}")]
    Identify {
        path: PathBuf,
        source: IdentifyError,
    },
    #[error("{path}: {source}")]
    Geometry {
        path: PathBuf,
        source: GeometryError,
    },
}

/// An NVMe namespace driven through its generic character device.
#[derive(Debug)]
pub struct UringCmdBdev {
    file: File,
    path: PathBuf,
    ns: NvmeNs,
    /// Blocks served (the whole namespace or the configured size).
    served: u64,
    device: DeviceInfo,
    /// The namespace's request queue has poll queues: rings use IOPOLL.
    iopoll: bool,
    /// The kernel takes IORING_URING_CMD_FIXED for this device (probed).
    fixed: bool,
    /// Completions wake the reactor (idle policy `sleep`): rings without COOP_TASKRUN.
    wake: bool,
    /// NVMe queue id the kernel sends a CPU's commands to (index = CPU), when sysfs tells.
    queues: Vec<Option<u32>>,
    /// Commands the device completed with an error status.
    device_errors: AtomicU64,
    /// Commands the kernel failed before or after the device (negative results).
    io_errors: AtomicU64,
}

impl UringCmdBdev {
    /// Opens `path` (`/dev/ngXnY`). `block_size` 0 takes the device's; `size` 0 the whole
    /// namespace. `max_io` is the target's largest transfer (MDTS), used to size nothing here:
    /// transfers above the device's limit are split.
    pub fn open(path: &Path, block_size: u32, size: u64) -> Result<UringCmdBdev, UringCmdError> {
        let p = || path.to_path_buf();
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(UringCmdError::Missing { path: p() })
            }
            Err(source) => return Err(UringCmdError::Open { path: p(), source }),
        };
        let ft = meta.file_type();
        if ft.is_block_device() {
            return Err(UringCmdError::BlockDevice {
                path: p(),
                hint: generic_of_block(path),
            });
        }
        if !ft.is_char_device() {
            let what = if meta.is_dir() {
                "a directory"
            } else if meta.is_file() {
                "a regular file (a file goes to --uring)"
            } else {
                "not a device"
            };
            return Err(UringCmdError::NotNvme {
                path: p(),
                what: what.into(),
            });
        }
        let rdev = meta.rdev();
        let sys = std::fs::canonicalize(format!(
            "/sys/dev/char/{}:{}",
            rustix::fs::major(rdev),
            rustix::fs::minor(rdev)
        ))
        .ok();
        let class = sys
            .as_ref()
            .and_then(|s| std::fs::read_link(s.join("subsystem")).ok())
            .and_then(|l| l.file_name().map(|n| n.to_string_lossy().into_owned()));
        match class.as_deref() {
            Some("nvme-generic") => {}
            Some("nvme") => return Err(UringCmdError::Controller { path: p() }),
            other => {
                return Err(UringCmdError::NotNvme {
                    path: p(),
                    what: match other {
                        Some(c) => format!("a {c} character device"),
                        None => "a character device the kernel does not list in sysfs".into(),
                    },
                })
            }
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|source| match source.raw_os_error() {
                Some(libc::EACCES | libc::EPERM) => UringCmdError::Permission { path: p(), source },
                _ => UringCmdError::Open { path: p(), source },
            })?;
        let nsid = namespace_id(&file)
            .map_err(|source| passthrough_error(path, "NVME_IOCTL_ID", source))?;
        let mut ctrl = IoBuf::new(4096);
        let mut nsbuf = IoBuf::new(4096);
        for (buf, cns, id_nsid, what) in [
            (&mut ctrl, cns::CONTROLLER, 0, "identify controller"),
            (&mut nsbuf, cns::NAMESPACE, nsid, "identify namespace"),
        ] {
            match admin_cmd(&file, &identify_cmd(cns, id_nsid), buf) {
                Ok(0) => {}
                Ok(s) => {
                    return Err(UringCmdError::Status {
                        path: p(),
                        what,
                        status: Status(s as u16),
                    })
                }
                Err(source) => return Err(passthrough_error(path, what, source)),
            }
        }
        let mut ns = NvmeNs::from_identify(&ctrl, &nsbuf, nsid)
            .map_err(|source| UringCmdError::Identify { path: p(), source })?;
        // The kernel's name (a /dev/disk/by-id link resolves to it).
        let name = std::fs::canonicalize(path)
            .unwrap_or_else(|_| p())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let block = block_of_generic(&name);
        let reqdev = block.as_deref().map(request_device);
        let queue = block
            .as_ref()
            .map(|b| PathBuf::from(format!("/sys/block/{b}/queue")));
        // The kernel's own limit for one passthrough request (max_hw_sectors_kb), and its segment
        // limit: each 4 KiB page of a caller's buffer may be its own segment.
        if let Some(q) = &queue {
            if let Some(kb) = read_u64(&q.join("max_hw_sectors_kb")) {
                ns.cap_transfer(kb * 1024);
            }
            if let Some(segs) = read_u64(&q.join("max_segments")) {
                ns.cap_transfer(segs.saturating_sub(1).max(1) * 4096);
            }
        }
        let served = ns
            .served_blocks(block_size, size)
            .map_err(|source| UringCmdError::Geometry { path: p(), source })?;
        let poll_queues = queue
            .as_ref()
            .and_then(|q| std::fs::read_to_string(q.join("io_poll")).ok())
            .is_some_and(|s| s.trim() == "1");
        // The generic device may sit outside the PCI tree in sysfs (/sys/devices/virtual/
        // nvme-generic): then the namespace's block device, or its controller, leads to the PCI
        // function.
        let ctrl_sys = name
            .strip_prefix("ng")
            .and_then(|r| r.split('n').next())
            .map(|x| format!("/sys/class/nvme/nvme{x}"));
        let numa_node = sys
            .as_deref()
            .and_then(numa_node_of)
            .or_else(|| {
                let b = std::fs::canonicalize(format!("/sys/block/{}", block.as_deref()?)).ok()?;
                numa_node_of(&b)
            })
            .or_else(|| numa_node_of(&std::fs::canonicalize(ctrl_sys?).ok()?));
        let probe = probe(&file, nsid, poll_queues).map_err(|e| match e {
            ProbeError::Setup(source) => match source.raw_os_error() {
                Some(libc::EINVAL) => UringCmdError::TooOld {
                    path: p(),
                    what: "io_uring with 128-byte entries",
                    source,
                },
                _ => UringCmdError::UringRefused(source),
            },
            ProbeError::Cmd(source) => passthrough_error(path, "io_uring passthrough", source),
        })?;
        if poll_queues && !probe.iopoll {
            eprintln!(
                "ringside-tgt: uring-cmd {}: the device has poll queues but an IOPOLL ring was refused; completions come by interrupt",
                path.display()
            );
        }
        if !probe.fixed {
            eprintln!(
                "ringside-tgt: uring-cmd {}: this kernel does not take fixed buffers for NVMe passthrough (Linux 6.1+); range lists and zero buffers use plain addresses",
                path.display()
            );
        }
        eprintln!(
            "ringside-tgt: uring-cmd {}: nsid {nsid}, {} blocks of {} bytes served, MDTS {} ({} KiB per command), {}{}, NUMA node {}",
            path.display(),
            served,
            ns.block_size,
            ns.mdts,
            ns.max_transfer / 1024,
            if probe.iopoll { "IOPOLL (poll queues)" } else { "interrupt completions" },
            if probe.fixed { ", fixed buffers" } else { "" },
            numa_node.map_or("unknown".to_string(), |n| n.to_string()),
        );
        Ok(UringCmdBdev {
            device: DeviceInfo {
                // The agent reads /sys/block/<name> and finds the PCI device from it: name the
                // block device that carries the namespace's requests when the kernel has one.
                name: reqdev.clone().unwrap_or(name),
                numa_node,
            },
            file,
            path: p(),
            ns,
            served,
            queues: reqdev
                .as_deref()
                .map(|b| kernel_queues(b, probe.iopoll))
                .unwrap_or_default(),
            iopoll: probe.iopoll,
            fixed: probe.fixed,
            wake: false,
            device_errors: AtomicU64::new(0),
            io_errors: AtomicU64::new(0),
        })
    }

    /// Whether a completion must wake a sleeping reactor (idle policy `sleep`), as for `uring`.
    pub fn wake_reactor(mut self, wake: bool) -> Self {
        self.wake = wake;
        self
    }

    /// The namespace as its controller describes it.
    pub fn namespace(&self) -> &NvmeNs {
        &self.ns
    }

    /// Whether the rings poll the device (IOPOLL).
    pub fn is_iopoll(&self) -> bool {
        self.iopoll
    }

    /// Commands the device completed with an error status (passed to the host).
    pub fn device_errors(&self) -> u64 {
        self.device_errors.load(Ordering::Relaxed)
    }

    /// Commands that failed in the kernel (no device status).
    pub fn io_errors(&self) -> u64 {
        self.io_errors.load(Ordering::Relaxed)
    }

    fn ring(&self, entries: u32) -> std::io::Result<Ring> {
        let mut b = IoUring::<squeue::Entry128, cqueue::Entry32>::builder();
        if self.iopoll {
            b.setup_iopoll();
        } else if !self.wake {
            b.setup_coop_taskrun().setup_taskrun_flag();
        }
        b.build(entries).or_else(|e| {
            if self.iopoll || self.wake {
                Err(e)
            } else {
                // Before 5.19: task work by interrupt.
                IoUring::<squeue::Entry128, cqueue::Entry32>::builder().build(entries)
            }
        })
    }
}

type Ring = IoUring<squeue::Entry128, cqueue::Entry32>;

/// The line for a refused passthrough call.
fn passthrough_error(path: &Path, what: &'static str, source: std::io::Error) -> UringCmdError {
    let path = path.to_path_buf();
    match source.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => UringCmdError::Refused { path, what, source },
        Some(libc::EINVAL | libc::EOPNOTSUPP | libc::ENOTTY) => {
            UringCmdError::TooOld { path, what, source }
        }
        _ => UringCmdError::Io { path, what, source },
    }
}

/// `nvme0n1` for `ng0n1`, when that block device exists (it may not: a namespace the block layer
/// cannot use, e.g. an unsupported format, still has its generic device).
fn block_of_generic(name: &str) -> Option<String> {
    let rest = name.strip_prefix("ng")?;
    let b = format!("nvme{rest}");
    Path::new("/sys/block").join(&b).exists().then_some(b)
}

/// The block device that carries the namespace's requests: with native NVMe multipath (the
/// default in distribution kernels) `nvme0n1` is a bio-based head under
/// `/sys/devices/virtual/nvme-subsystem`, without queues; its path `nvme0c0n1` (subsystem 0,
/// controller 0, namespace 1) has the queues and sits under the PCI function (which is how the
/// agent's topology finds the device's node). The first path in name order, or `block` itself.
fn request_device(block: &str) -> String {
    let Some((subsys, ns)) = block.strip_prefix("nvme").and_then(|r| r.split_once('n')) else {
        return block.to_string();
    };
    let prefix = format!("nvme{subsys}c");
    let suffix = format!("n{ns}");
    let mut paths: Vec<String> = std::fs::read_dir("/sys/block")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.strip_prefix(&prefix)
                .and_then(|r| r.strip_suffix(&suffix))
                .is_some_and(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    paths.sort();
    paths
        .into_iter()
        .next()
        .unwrap_or_else(|| block.to_string())
}

/// What to give instead of a block device: `/dev/ng0n1` for `/dev/nvme0n1`.
fn generic_of_block(path: &Path) -> String {
    let name = std::fs::canonicalize(path)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    match name.strip_prefix("nvme") {
        Some(rest) if rest.contains('n') && !rest.contains('p') => format!("/dev/ng{rest}"),
        _ => "/dev/ngXnY; this is not an NVMe namespace".into(),
    }
}

/// The NVMe queue id each CPU's passthrough commands go to on block device `block`: blk-mq's
/// hardware context for the CPU (`/sys/block/<block>/mq/<hctx>/cpu_list`), whose NVMe queue is
/// hctx + 1 (queue 0 is the admin queue). A CPU is in one context per queue map (default, read,
/// poll, numbered in that order): polled commands (`iopoll`) use the last, others the first.
/// `block` is the device that carries the requests (see [`request_device`]).
fn kernel_queues(block: &str, iopoll: bool) -> Vec<Option<u32>> {
    let mut hctx: Vec<(u32, Vec<usize>)> = std::fs::read_dir(format!("/sys/block/{block}/mq"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n: u32 = e.file_name().to_str()?.parse().ok()?;
            let list = std::fs::read_to_string(e.path().join("cpu_list")).ok()?;
            let cpus = crate::config::parse_core_list(list.trim())
                .ok()?
                .into_iter()
                .map(|c| c.0)
                .collect();
            Some((n, cpus))
        })
        .collect();
    hctx.sort_by_key(|h| h.0);
    let ncpu = hctx
        .iter()
        .flat_map(|h| h.1.iter())
        .max()
        .map_or(0, |m| m + 1);
    (0..ncpu)
        .map(|cpu| {
            let mut on = hctx.iter().filter(|h| h.1.contains(&cpu)).map(|h| h.0 + 1);
            if iopoll {
                on.next_back()
            } else {
                on.next()
            }
        })
        .collect()
}

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// The NUMA node of the PCI device above a sysfs device directory.
fn numa_node_of(sys: &Path) -> Option<u32> {
    let mut d = Some(sys);
    while let Some(dir) = d {
        if let Ok(s) = std::fs::read_to_string(dir.join("numa_node")) {
            return s
                .trim()
                .parse::<i32>()
                .ok()
                .and_then(|n| u32::try_from(n).ok());
        }
        d = dir
            .parent()
            .filter(|p| p.starts_with("/sys/devices") && *p != Path::new("/sys/devices"));
    }
    None
}

/// `struct nvme_passthru_cmd` of `<linux/nvme_ioctl.h>` (72 bytes).
#[repr(C)]
#[derive(Default)]
struct PassthruCmd {
    opcode: u8,
    flags: u8,
    rsvd1: u16,
    nsid: u32,
    cdw2: u32,
    cdw3: u32,
    metadata: u64,
    addr: u64,
    metadata_len: u32,
    data_len: u32,
    cdw10: u32,
    cdw11: u32,
    cdw12: u32,
    cdw13: u32,
    cdw14: u32,
    cdw15: u32,
    timeout_ms: u32,
    result: u32,
}

/// Runs one admin command synchronously with `buf` as its data (from the device). Returns the
/// NVMe status (0 = success) or the ioctl's error.
fn admin_cmd(file: &File, sqe: &Sqe, buf: &mut [u8]) -> std::io::Result<u32> {
    let mut c = PassthruCmd {
        opcode: sqe.opcode,
        nsid: sqe.nsid.0,
        addr: buf.as_mut_ptr() as u64,
        data_len: buf.len() as u32,
        cdw10: sqe.cdw10,
        cdw11: sqe.cdw11,
        cdw12: sqe.cdw12,
        cdw13: sqe.cdw13,
        cdw14: sqe.cdw14,
        cdw15: sqe.cdw15,
        ..PassthruCmd::default()
    };
    // SAFETY: `c` is a live `struct nvme_passthru_cmd` the kernel reads and writes (`result`)
    // during the call; `addr`/`data_len` describe `buf`, which the kernel (and the device, by DMA
    // into kernel-mapped pages) writes before the call returns. Nothing else touches either.
    let r = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            NVME_IOCTL_ADMIN_CMD,
            &mut c as *mut PassthruCmd,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(r as u32)
}

/// The namespace id of the namespace device `file`.
fn namespace_id(file: &File) -> std::io::Result<u32> {
    // SAFETY: NVME_IOCTL_ID takes no argument and returns the NSID; no memory is shared.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), NVME_IOCTL_ID) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(r as u32)
}

/// `struct nvme_uring_cmd` of `<linux/nvme_ioctl.h>` (72 of the SQE's 80 command bytes), little
/// endian, for `sqe` with data at `addr` (`len` bytes).
pub fn uring_cmd_bytes(sqe: &Sqe, addr: u64, len: u32) -> [u8; 80] {
    let mut b = [0u8; 80];
    b[0] = sqe.opcode;
    b[1] = sqe.flags;
    b[4..8].copy_from_slice(&sqe.nsid.0.to_le_bytes());
    b[8..12].copy_from_slice(&sqe.cdw2.to_le_bytes());
    b[12..16].copy_from_slice(&sqe.cdw3.to_le_bytes());
    // 16..24 metadata pointer, 32..36 metadata length: none (formats with metadata are refused).
    b[24..32].copy_from_slice(&addr.to_le_bytes());
    b[36..40].copy_from_slice(&len.to_le_bytes());
    for (i, dw) in [
        sqe.cdw10, sqe.cdw11, sqe.cdw12, sqe.cdw13, sqe.cdw14, sqe.cdw15,
    ]
    .into_iter()
    .enumerate()
    {
        b[40 + 4 * i..44 + 4 * i].copy_from_slice(&dw.to_le_bytes());
    }
    // 64..68 timeout_ms: 0 = the driver's default I/O timeout.
    b
}

/// What the probe found.
struct Probed {
    iopoll: bool,
    fixed: bool,
}

enum ProbeError {
    /// The ring could not be set up.
    Setup(std::io::Error),
    /// The passthrough Read failed.
    Cmd(std::io::Error),
}

/// Reads block 0 through io_uring passthrough (fixed buffer first, then plain; with IOPOLL when
/// the device has poll queues), on a short-lived thread (see `uring::probe_kernel` for why).
fn probe(file: &File, nsid: u32, poll_queues: bool) -> Result<Probed, ProbeError> {
    std::thread::scope(|s| {
        s.spawn(|| probe_here(file, nsid, poll_queues))
            .join()
            .unwrap_or(Err(ProbeError::Cmd(std::io::Error::other(
                "probe thread panicked",
            ))))
    })
}

fn probe_here(file: &File, nsid: u32, poll_queues: bool) -> Result<Probed, ProbeError> {
    let mut buf = IoBuf::new(IO_ALIGN);
    let mut read_once = |iopoll: bool, fixed: bool| -> Result<(), ProbeError> {
        let mut b = IoUring::<squeue::Entry128, cqueue::Entry32>::builder();
        if iopoll {
            b.setup_iopoll();
        }
        let mut ring = b.build(4).map_err(ProbeError::Setup)?;
        let iov = [libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        }];
        // SAFETY: `buf` outlives the ring (declared before it, dropped after this closure's
        // ring); registration pins its pages. The kernel writes it only during the read below.
        let registered = fixed && unsafe { ring.submitter().register_buffers(&iov) }.is_ok();
        if fixed && !registered {
            return Err(ProbeError::Cmd(std::io::Error::from_raw_os_error(
                libc::EINVAL,
            )));
        }
        // 512 bytes (the smallest block): the namespace's block size decides the real count,
        // but one block of any size fits in the 4 KiB buffer.
        let mut sqe = Sqe::read(nvme_proto::Cid(0), Nsid(nsid), 0, 1, Default::default())
            .map_err(|e| ProbeError::Cmd(std::io::Error::other(e.to_string())))?;
        sqe.flags = 0;
        let e = opcode::UringCmd80::new(types::Fd(file.as_raw_fd()), NVME_URING_CMD_IO)
            .cmd(uring_cmd_bytes(
                &sqe,
                buf.as_mut_ptr() as u64,
                buf.len() as u32,
            ))
            .buf_index(registered.then_some(0))
            .build()
            .user_data(1);
        // SAFETY: the entry points at `buf`, alive until the completion is reaped below (the
        // loop waits for it); the kernel and the device write into it until then.
        unsafe { ring.submission().push(&e) }
            .map_err(|_| ProbeError::Cmd(std::io::Error::other("submission queue full")))?;
        let res = loop {
            ring.submit_and_wait(1).map_err(ProbeError::Cmd)?;
            if let Some(c) = ring.completion().next() {
                break c.result();
            }
        };
        // A positive result is the device's status (e.g. an unwritten block with DULBE on):
        // passthrough itself works.
        if res < 0 {
            return Err(ProbeError::Cmd(std::io::Error::from_raw_os_error(-res)));
        }
        Ok(())
    };
    let fixed = match read_once(false, true) {
        Ok(()) => true,
        Err(ProbeError::Setup(e)) => return Err(ProbeError::Setup(e)),
        Err(ProbeError::Cmd(_)) => {
            read_once(false, false)?;
            false
        }
    };
    let iopoll = poll_queues && read_once(true, fixed).is_ok();
    Ok(Probed { iopoll, fixed })
}

impl Bdev for UringCmdBdev {
    fn kind(&self) -> BackendKind {
        BackendKind::UringCmd {
            path: self.path.clone(),
        }
    }
    fn block_size(&self) -> u32 {
        self.ns.block_size
    }
    fn num_blocks(&self) -> u64 {
        self.served
    }
    fn open_queue(self: Arc<Self>, depth: usize) -> Box<dyn BdevQueue> {
        Box::new(UringCmdQueue::new(self, depth))
    }
    fn device(&self) -> Option<DeviceInfo> {
        Some(self.device.clone())
    }
    fn device_path(&self) -> Option<String> {
        Some(self.path.display().to_string())
    }
    fn device_queue(&self, _reactor: usize, core: usize) -> Option<u32> {
        self.queues.get(core).copied().flatten()
    }
}

/// Where a Dataset Management range list lives.
enum RangeBuf {
    None,
    /// Registered slot `n` of the queue's range-list pool.
    Slot(u16),
    /// A one-off buffer (pool empty), held until the command completes.
    Own {
        _buf: IoBuf,
    },
}

/// One operation: `parts` device commands of it are queued or at the device.
struct Op {
    tag: u64,
    parts: u32,
    err: Option<BdevError>,
    ranges: RangeBuf,
    /// A command of it (opcode, first LBA) for the one line about a device status.
    what: (u8, u64),
}

/// One reactor's ring on a [`UringCmdBdev`].
pub struct UringCmdQueue {
    /// The ring (none when it could not be created on this reactor: every operation then
    /// fails), its backlog and what is in the kernel.
    rq: RingCore<squeue::Entry128, cqueue::Entry32>,
    dev: Arc<UringCmdBdev>,
    /// The operations (entries' user data index them), their results for the next poll.
    ops: OpSlab<Op>,
    /// The plan of the operation being submitted (preallocated).
    plan: Vec<DevCmd>,
    /// Range-list pool (`DSM_SLOTS` x `DSM_BUF` at `dsm_base`, owned by `_dsm`), free slots.
    _dsm: IoBuf,
    dsm_base: *mut u8,
    dsm_free: Vec<u16>,
    _zero: IoBuf,
    zero_base: *const u8,
    /// Pool and zero buffer are registered (fixed-buffer commands).
    registered: bool,
    /// One line per queue for the first kernel error and the first device status.
    said_error: bool,
    said_status: bool,
}

// SAFETY: the raw pointers are the queue's own range pool and zero buffer (heap memory owned by
// fields of the same value, which does not move with it) and callers' buffers that the
// `BdevQueue` contract keeps valid until their operation is reported; the queue is used through
// `&mut` by one thread at a time.
unsafe impl Send for UringCmdQueue {}

impl UringCmdQueue {
    fn new(dev: Arc<UringCmdBdev>, depth: usize) -> UringCmdQueue {
        let entries = depth.next_power_of_two().clamp(64, 4096) as u32;
        let ring = match dev.ring(entries) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!(
                    "ringside-tgt: uring-cmd {}: cannot create this reactor's io_uring ({e}); its I/O to this namespace fails",
                    dev.path.display()
                );
                None
            }
        };
        let mut dsm = IoBuf::new(DSM_SLOTS * DSM_BUF);
        let dsm_base = dsm.as_mut_ptr();
        let zero = IoBuf::new(ZERO_BUF);
        let zero_base = zero.as_ptr();
        let mut registered = false;
        if let (Some(r), true) = (ring.as_ref(), dev.fixed) {
            let iov = [
                libc::iovec {
                    iov_base: dsm_base.cast(),
                    iov_len: dsm.len(),
                },
                libc::iovec {
                    iov_base: zero_base.cast_mut().cast(),
                    iov_len: zero.len(),
                },
            ];
            // SAFETY: both regions are heap memory owned by this queue (`_dsm`, `_zero`), never
            // reallocated, dropped only after Drop's quiesce has waited for every command using
            // them. Registration pins the pages; the kernel reads them for commands only.
            registered = unsafe { r.submitter().register_buffers(&iov) }.is_ok();
        }
        UringCmdQueue {
            rq: RingCore::new(ring, depth, format!("uring-cmd {}", dev.path.display())),
            ops: OpSlab::new(depth),
            plan: Vec::with_capacity(64),
            _dsm: dsm,
            dsm_base,
            dsm_free: (0..DSM_SLOTS as u16).rev().collect(),
            _zero: zero,
            zero_base,
            registered,
            said_error: false,
            said_status: false,
            dev,
        }
    }

    fn alloc(&mut self, tag: u64) -> u32 {
        let op = Op {
            tag,
            parts: 0,
            err: None,
            ranges: RangeBuf::None,
            what: (0, 0),
        };
        self.ops.alloc(op)
    }

    /// Reports `i` as finished and recycles it.
    fn finish(&mut self, i: u32) {
        let op = &mut self.ops[i];
        if let RangeBuf::Slot(s) = std::mem::replace(&mut op.ranges, RangeBuf::None) {
            self.dsm_free.push(s);
        }
        let (tag, r) = (op.tag, op.err.map_or(Ok(()), Err));
        self.ops.finish(i, tag, r);
    }

    /// Queues one entry for op `i`.
    fn push(&mut self, i: u32, e: squeue::Entry128) {
        self.ops[i].parts += 1;
        // SAFETY: every entry built here points at memory that stays valid until its completion
        // is reaped: the caller's buffer (queue contract), this queue's range pool or zero buffer
        // (freed after Drop's quiesce), an op's own range buffer (held by the op until it
        // finishes), or nothing.
        unsafe { self.rq.push(e) };
    }

    /// Reaps every completion and advances the operations they belong to.
    fn reap(&mut self) {
        let done = self.rq.reap();
        for &(ud, res) in &done {
            self.complete(ud as u32, res);
        }
        self.rq.give_back(done);
    }

    fn complete(&mut self, i: u32, res: i32) {
        let Some(op) = self.ops.get_mut(i) else {
            return;
        };
        op.parts = op.parts.saturating_sub(1);
        if res > 0 {
            // The device's status field (SC, SCT, CRD, More, DNR), as Linux's passthrough reports it.
            let status = Status(res as u16);
            let (opc, lba) = op.what;
            op.err.get_or_insert(BdevError::Nvme(status));
            self.dev.device_errors.fetch_add(1, Ordering::Relaxed);
            if !self.said_status {
                self.said_status = true;
                eprintln!(
                    "ringside-tgt: uring-cmd {}: the device answered opcode {opc:#04x} at lba {lba} with {status}; the host gets it unchanged (further statuses are counted, not printed)",
                    self.dev.path.display()
                );
            }
        } else if res < 0 {
            op.err.get_or_insert(BdevError::Media);
            self.dev.io_errors.fetch_add(1, Ordering::Relaxed);
            if !self.said_error {
                self.said_error = true;
                eprintln!(
                    "ringside-tgt: uring-cmd {}: a command failed in the kernel: {} (further errors are counted, not printed)",
                    self.dev.path.display(),
                    std::io::Error::from_raw_os_error(-res)
                );
            }
        }
        if self.ops[i].parts == 0 {
            self.finish(i);
        }
    }
}

impl BdevQueue for UringCmdQueue {
    fn submit(&mut self, tag: u64, mut op: BdevOp<'_>) {
        self.ops.accept();
        if !self.rq.is_up() {
            self.ops.report(tag, Err(BdevError::Media));
            return;
        }
        let base: *mut u8 = match &mut op {
            BdevOp::Read { buf, .. } => buf.as_mut_ptr(),
            // The kernel only reads through this pointer.
            BdevOp::Write { buf, .. } => buf.as_ptr().cast_mut(),
            _ => std::ptr::null_mut(),
        };
        let mut plan = std::mem::take(&mut self.plan);
        plan.clear();
        let planned = self
            .dev
            .ns
            .plan(&op, self.dev.served, ZERO_BUF, &mut |c| plan.push(c));
        match planned {
            Err(e) => self.ops.report(tag, Err(e)),
            Ok(0) => self.ops.report(tag, Ok(())), // nothing for the device to do
            Ok(_) => {
                let i = self.alloc(tag);
                let fd = types::Fd(self.dev.file.as_raw_fd());
                for c in &plan {
                    let (addr, len, fixed) = match c.data {
                        DevData::None => (0u64, 0u32, None),
                        DevData::Buf { offset, len } => {
                            (base.wrapping_add(offset) as u64, len as u32, None)
                        }
                        DevData::Zeroes { len } => (
                            self.zero_base as u64,
                            len as u32,
                            self.registered.then_some(REG_ZERO),
                        ),
                        DevData::Ranges { len } => {
                            let ranges: &[(u64, u64)] = match &op {
                                BdevOp::Deallocate { ranges } => ranges,
                                _ => &[],
                            };
                            let (ptr, fixed) = match self.dsm_free.pop() {
                                Some(s) => {
                                    self.ops[i].ranges = RangeBuf::Slot(s);
                                    (
                                        self.dsm_base.wrapping_add(usize::from(s) * DSM_BUF),
                                        self.registered.then_some(REG_DSM),
                                    )
                                }
                                None => {
                                    let mut b = IoBuf::new(DSM_BUF);
                                    let p = b.as_mut_ptr();
                                    self.ops[i].ranges = RangeBuf::Own { _buf: b };
                                    (p, None)
                                }
                            };
                            // SAFETY: `ptr` is a free range slot of this queue's pool or the op's
                            // own buffer, `DSM_BUF` bytes that no command uses yet.
                            let out = unsafe { std::slice::from_raw_parts_mut(ptr, DSM_BUF) };
                            let n = encode_dsm_ranges(ranges, out);
                            debug_assert_eq!(n, len);
                            (ptr as u64, n as u32, fixed)
                        }
                    };
                    self.ops[i].what = (c.sqe.opcode, c.sqe.slba());
                    let e = opcode::UringCmd80::new(fd, NVME_URING_CMD_IO)
                        .cmd(uring_cmd_bytes(&c.sqe, addr, len))
                        .buf_index(fixed)
                        .build()
                        .user_data(u64::from(i));
                    self.push(i, e);
                }
            }
        }
        self.plan = plan;
    }

    ring_queue_poll!();
}

impl Drop for UringCmdQueue {
    fn drop(&mut self) {
        // The device may still be reading or writing callers' buffers and the pools: wait.
        self.quiesce();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nvme_proto::nvme::IoOpcode;

    #[test]
    fn nvme_uring_cmd_layout_matches_the_kernel_header() {
        // struct nvme_uring_cmd: opcode 0, flags 1, nsid 4, cdw2 8, cdw3 12, metadata 16,
        // addr 24, metadata_len 32, data_len 36, cdw10..15 40..64, timeout_ms 64.
        let sqe = Sqe::write(
            nvme_proto::Cid(7),
            Nsid(3),
            0x1_0000_0002,
            8,
            Default::default(),
        )
        .expect("sqe");
        let b = uring_cmd_bytes(&sqe, 0xdead_beef_0000, 4096);
        assert_eq!(b[0], IoOpcode::Write as u8);
        assert_eq!(u32::from_le_bytes(b[4..8].try_into().unwrap()), 3);
        assert_eq!(
            u64::from_le_bytes(b[24..32].try_into().unwrap()),
            0xdead_beef_0000
        );
        assert_eq!(u32::from_le_bytes(b[36..40].try_into().unwrap()), 4096);
        assert_eq!(
            u32::from_le_bytes(b[40..44].try_into().unwrap()),
            2,
            "cdw10 = slba low"
        );
        assert_eq!(
            u32::from_le_bytes(b[44..48].try_into().unwrap()),
            1,
            "cdw11 = slba high"
        );
        assert_eq!(
            u32::from_le_bytes(b[48..52].try_into().unwrap()),
            7,
            "cdw12 = nlb - 1"
        );
        assert!(
            b[64..].iter().all(|&x| x == 0),
            "timeout and reserved stay 0"
        );
        // The ioctl numbers: _IOWR('N', nr, 72-byte struct) and _IO('N', 0x40).
        let iowr = |nr: u32| (3u32 << 30) | (72 << 16) | (u32::from(b'N') << 8) | nr;
        assert_eq!(NVME_URING_CMD_IO, iowr(0x80));
        assert_eq!(NVME_IOCTL_ADMIN_CMD as u32, iowr(0x41));
        assert_eq!(NVME_IOCTL_ID as u32, (u32::from(b'N') << 8) | 0x40);
        assert_eq!(std::mem::size_of::<PassthruCmd>(), 72);
    }

    #[test]
    fn bad_paths_are_one_clear_line_each() {
        let line = |p: &str| {
            UringCmdBdev::open(Path::new(p), 0, 0)
                .expect_err(p)
                .to_string()
        };
        let e = line("/dev/ng-ringside-missing0n1");
        assert!(
            e.contains("does not exist") && e.contains("/dev/ngXnY"),
            "{e}"
        );
        let e = line("/dev/null");
        assert!(
            e.contains("not an NVMe generic character device") && e.contains("mem"),
            "{e}"
        );
        let e = line("/etc/hostname");
        assert!(e.contains("regular file") && e.contains("--uring"), "{e}");
        let e = line("/var/tmp");
        assert!(e.contains("a directory"), "{e}");
        for e in [line("/dev/null"), line("/var/tmp")] {
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn kernel_queues_follow_blk_mq_cpu_lists() {
        // Any blk-mq device of this machine will do (loop devices are blk-mq).
        let Some(dev) = std::fs::read_dir("/sys/block")
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| Path::new(&format!("/sys/block/{n}/mq/0/cpu_list")).exists())
        else {
            eprintln!("skipped: no blk-mq device in /sys/block");
            return;
        };
        let q = kernel_queues(&dev, false);
        assert!(!q.is_empty(), "{dev}: at least CPU 0 is mapped");
        // Every online CPU is in some context, and queue ids start at 1 (0 is the admin queue).
        for (cpu, id) in q.iter().enumerate() {
            let id = id.unwrap_or_else(|| panic!("{dev}: cpu {cpu} in no hardware context"));
            assert!(id >= 1, "{dev}: cpu {cpu} -> queue {id}");
        }
        assert!(kernel_queues("ringside-no-such-disk", true).is_empty());
        // Without multipath paths a device carries its own requests.
        assert_eq!(request_device(&dev), dev);
        assert_eq!(request_device("nvme97n3"), "nvme97n3");
    }

    #[test]
    fn block_devices_are_pointed_at_their_generic_device() {
        assert_eq!(
            generic_of_block(Path::new("/dev/nonexistent-nvme")),
            "/dev/ngXnY; this is not an NVMe namespace"
        );
        // A real block device of this machine, when there is one (loop devices need root).
        let Some(dev) = std::fs::read_dir("/dev")
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| std::fs::metadata(p).is_ok_and(|m| m.file_type().is_block_device()))
        else {
            eprintln!("skipped: no block device under /dev");
            return;
        };
        let e = UringCmdBdev::open(&dev, 0, 0)
            .expect_err("block device")
            .to_string();
        assert!(
            e.contains("is a block device") && e.contains("--uring"),
            "{e}"
        );
    }
}
