//! Lab test: the `nvme-vfio` backend (a user-space NVMe driver over VFIO) on the lab guest's emulated NVMe
//! controller (NUMA node 1, behind intel-iommu), backed by a raw image file so data persists across target
//! restarts, with a second controller in the same IOMMU group (`--nvme-sibling`) and QEMU's blkdebug failing
//! reads of one block (`--nvme-blkdebug`). One boot runs `bench-harness/lab/guest/nvme-vfio.sh`: a controller
//! still bound to the kernel's nvme driver, then one whose IOMMU group is not viable (its sibling still on
//! nvme), are each one line naming the fix while the malloc namespace is still served; bound to vfio-pci,
//! `ringside-perf --verify` at 512 B, 4 KiB and 128 KiB (a PRP list); the trace description names the
//! controller, node 1 and the reactor's I/O queue id; the kernel NVMe/TCP initiator with fio crc32c verify;
//! Write Zeroes and deallocate read back as zeroes; the controller's Unrecovered Read Error for the failing
//! block reaches the kernel host as that status; SIGKILL under load and a restart on the same device that
//! still holds the data; `ringside diagnose` raising numa_misplacement for the reactor on core 0 (node 0)
//! serving the node-1 device; SIGTERM exits 0 (CC.SHN) and the next start works again.
//!
//! The host kernel has no NVMe or IOMMU, hence the guest. `RINGSIDE_TGT`, `RINGSIDE_PERF`, `RINGSIDE_AGENT`
//! override the binaries; `RINGSIDE_SKIP_LAB=1` skips it with a printed reason.
#![forbid(unsafe_code)]

use tests::lab;

/// Seconds after which `run.sh` kills the guest (TCG on 2 shared cores).
const GUEST_TIMEOUT_SECS: u32 = 1800;
/// The emulated controller's namespace (a sparse raw image).
const IMAGE_BYTES: u64 = 256 << 20;
/// The byte whose reads QEMU fails (blkdebug), away from everything else the script touches.
const ERR_READ_AT: u64 = 200 << 20;

#[test]
fn lab_nvme_vfio_verify_kernel_initiator_restart_and_diagnose() {
    if lab::skipped() {
        return;
    }
    let image = lab::NvmeImage::new("ringside-nvme-vfio", IMAGE_BYTES, ERR_READ_AT);
    let timeout = GUEST_TIMEOUT_SECS.to_string();
    let run = lab::run_nvme(
        "lab_nvme_vfio",
        "nvme-vfio.sh",
        &image,
        &["--nvme-sibling", "--timeout", &timeout],
    );
    println!("{}", run.console);
    let mut c = run.checker();
    c.expect("nvme.numa_node", "1");
    let bdf = c.get("nvme.bdf").to_string();
    for key in [
        "notbound.start",
        "notbound.message",
        "notbound.malloc_served",
        "notbound.stop",
        "nonviable.start",
        "nonviable.message",
        "nonviable.malloc_served",
        "nonviable.stop",
        "bind",
        "vfio.start",
        "kernel.fio.randwrite_4k",
        "kernel.fio.randwrite_mixed",
        "restart.data",
        "diag.start",
        "diagnose.numa_misplacement",
        "diag.stop",
        "after_stop.start",
        "after_stop.verify",
        "after_stop.stop",
    ] {
        c.expect(key, "ok");
    }
    c.expect("notbound.driver", "nvme");
    c.expect("notbound.lines", "1");
    c.expect("nonviable.lines", "1");
    c.expect("bind.driver", "vfio-pci");
    c.expect("bind.sibling_driver", "vfio-pci");
    // verified I/O, the description (reactor 0 on core 1: I/O queue 2), zeroes, the device's status,
    // SIGKILL and restart
    c.expect_nvme_backend("verify", "vfio", "nvme-vfio", &bdf, IMAGE_BYTES, "0:2");
    c.expect("vfio.describe.device", &bdf);
    c.expect("diagnose.status", "0");
    assert!(
        c.problems.is_empty(),
        "lab nvme-vfio run ({:.0} s, status {:?}, console {}):\n{}\n{}",
        run.secs,
        run.status,
        run.out_dir.join("console.log").display(),
        c.problems.join("\n"),
        run.errors()
    );
}
