//! Lab test: the `nvme-vfio` backend (a user-space NVMe driver over VFIO) on the lab guest's emulated NVMe
//! controller (NUMA node 1, behind intel-iommu), backed by a raw image file so data persists across target
//! restarts, with a second controller in the same IOMMU group (`--nvme-sibling`) and QEMU's blkdebug failing
//! reads of one block (`--nvme-blkdebug`). One boot runs `bench-harness/lab/guest/nvme-vfio.sh`: a controller
//! still bound to the kernel's nvme driver, then one whose IOMMU group is not viable (its sibling still on
//! nvme), are each one line naming the fix while the malloc namespace is still served; bound to vfio-pci,
//! `ringside-perf --verify` at 512 B, 4 KiB and 128 KiB (a PRP list); the kernel NVMe/TCP initiator with fio
//! crc32c verify; Write Zeroes and deallocate read back as zeroes; the controller's Unrecovered Read Error
//! for the failing block reaches the kernel host as that status; SIGKILL under load and a
//! restart on the same device that still holds the data; `ringside diagnose` raising numa_misplacement for
//! the reactor on core 0 (node 0) serving the node-1 device; SIGTERM exits 0 (CC.SHN) and the next start
//! works again.
//!
//! The host kernel has no NVMe or IOMMU, hence the guest. `RINGSIDE_TGT`, `RINGSIDE_PERF`, `RINGSIDE_AGENT`
//! override the binaries; `RINGSIDE_SKIP_LAB=1` skips it with a printed reason.
#![forbid(unsafe_code)]

use tests::lab;
use tests::workspace_root;

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
    let root = workspace_root();
    let tgt = lab::bin("RINGSIDE_TGT", "nvmf-target", "ringside-tgt");
    let perf = lab::bin("RINGSIDE_PERF", "bench-harness", "ringside-perf");
    let agent = lab::bin("RINGSIDE_AGENT", "agent", "ringside");
    lab::setup();
    let img_dir = tempfile::Builder::new()
        .prefix("ringside-nvme-vfio")
        .tempdir_in("/var/tmp")
        .expect("temp dir under /var/tmp");
    let img = img_dir.path().join("nvme.img");
    std::fs::File::create(&img)
        .and_then(|f| f.set_len(IMAGE_BYTES))
        .expect("sparse NVMe image");
    let img_arg = img.to_string_lossy().into_owned();
    let rules = img_dir.path().join("blkdebug.conf");
    std::fs::write(
        &rules,
        format!(
            "[inject-error]\nevent = \"none\"\niotype = \"read\"\nerrno = \"5\"\nsector = \"{}\"\n",
            ERR_READ_AT / 512
        ),
    )
    .expect("blkdebug rules");
    let rules_arg = rules.to_string_lossy().into_owned();
    let err_env = format!("ERR_READ_AT={ERR_READ_AT}");
    let script = root.join("bench-harness/lab/guest/nvme-vfio.sh");
    let opts = [
        "--nvme-img",
        img_arg.as_str(),
        "--nvme-blkdebug",
        rules_arg.as_str(),
        "--nvme-sibling",
        "-e",
        err_env.as_str(),
        "--timeout",
        &GUEST_TIMEOUT_SECS.to_string(),
    ];
    let args = [script.as_path(), &tgt, &perf, &agent];
    let mut run = lab::run("lab_nvme_vfio", &opts, &args);
    // QEMU's multi-threaded TCG can abort on its own (seen once here: "iotlb_to_section: Assertion
    // ... failed" while the guest remapped PCI BARs during a device reset); that is the emulator
    // crashing (run.sh exit 126, the assertion in qemu.log), not a result: boot once more.
    let qemu_log = std::fs::read_to_string(run.out_dir.join("qemu.log")).unwrap_or_default();
    if run.status == Some(126) && qemu_log.contains("Assertion") {
        println!(
            "QEMU aborted ({}): booting the guest once more",
            qemu_log.lines().last().unwrap_or("")
        );
        run = lab::run("lab_nvme_vfio", &opts, &args);
    }
    println!("{}", run.console);
    let mut c = run.checker();
    c.expect("nvme.numa_node", "1");
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
        "verify.512",
        "verify.4096",
        "verify.131072",
        "kernel.connect",
        "kernel.fio.randwrite_4k",
        "kernel.fio.randwrite_mixed",
        "kernel.write_zeroes",
        "kernel.deallocate",
        "status.read_error",
        "status.neighbour",
        "kernel.disconnect",
        "restart.killed",
        "restart.start",
        "restart.data",
        "restart.verify",
        "diag.start",
        "diagnose.numa_misplacement",
        "diag.stop",
        "after_stop.start",
        "after_stop.verify",
        "after_stop.stop",
        "all",
    ] {
        c.expect(key, "ok");
    }
    c.expect("notbound.driver", "nvme");
    c.expect("notbound.lines", "1");
    c.expect("nonviable.lines", "1");
    c.expect("bind.driver", "vfio-pci");
    c.expect("bind.sibling_driver", "vfio-pci");
    for key in ["verify.512", "verify.4096", "verify.131072"] {
        c.expect_positive(&format!("{key}.checked_blocks"));
    }
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
