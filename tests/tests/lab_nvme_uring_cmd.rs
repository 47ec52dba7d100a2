//! Lab test: the `uring-cmd` backend (NVMe passthrough through io_uring on `/dev/ngXnY`) on the lab guest's
//! emulated NVMe controller (NUMA node 1), backed by a sparse raw image so data persists, with QEMU's
//! blkdebug failing reads of one block (`--nvme-blkdebug`) and one poll queue (`nvme.poll_queues=1`, so
//! the rings use IOPOLL). One boot runs `bench-harness/lab/guest/nvme-uring-cmd.sh`: a missing
//! `/dev/ngXnY` and a block device given are one line each naming the fix, and so is a user without
//! access to the device, while the malloc namespace is still served; `ringside-perf --verify` at 512 B,
//! 4 KiB and 128 KiB through uring-cmd; the trace description names the device path, node 1 and the queue
//! ids; through the kernel NVMe/TCP initiator Write Zeroes and deallocate read back as zeroes and Flush
//! works; the controller's Unrecovered Read Error for the failing block reaches the host unchanged (the
//! guest kernel does not retry passthrough commands: REQ_FAILFAST_DRIVER) and the target logs it;
//! `ringside diagnose` raises numa_misplacement for the reactor on core 0 (node 0) naming the device on
//! node 1; a SIGKILL under load and a restart on the same device verify again.
//!
//! The host kernel has no NVMe, hence the guest. `RINGSIDE_TGT`, `RINGSIDE_PERF`, `RINGSIDE_AGENT` override the
//! binaries; `RINGSIDE_SKIP_LAB=1` skips it with a printed reason.
#![forbid(unsafe_code)]

use tests::lab;

/// Seconds after which `run.sh` kills the guest (TCG on 2 shared cores).
const GUEST_TIMEOUT_SECS: u32 = 1800;
/// The emulated controller's namespace (a sparse raw image).
const IMAGE_BYTES: u64 = 1 << 30;
/// The byte whose reads QEMU fails (blkdebug), away from everything else the script touches (and from
/// the partition tables the guest kernel reads at both ends).
const ERR_READ_AT: u64 = 900 << 20;

#[test]
fn lab_nvme_uring_cmd_verify_status_bad_input_and_diagnose() {
    if lab::skipped() {
        return;
    }
    let image = lab::NvmeImage::new("ringside-uring-cmd", IMAGE_BYTES, ERR_READ_AT);
    let timeout = GUEST_TIMEOUT_SECS.to_string();
    let run = lab::run_nvme(
        "lab_nvme_uring_cmd",
        "nvme-uring-cmd.sh",
        &image,
        &["--append", "nvme.poll_queues=1", "--timeout", &timeout],
    );
    println!("{}", run.console);
    let mut c = run.checker();
    c.expect("dev.numa_node", "1");
    c.expect("dev.io_poll", "1");
    let ng = c.get("dev.ng").to_string();
    assert!(ng.starts_with("/dev/ng"), "generic device: {ng}");
    // bad input: one line each naming the fix, the malloc namespace still served
    for key in [
        "bad.start",
        "bad.missing",
        "bad.block",
        "bad.malloc_served",
        "bad.stop",
        "perm.start",
        "perm.refused",
        "perm.malloc_served",
        "perm.stop",
    ] {
        c.expect(key, "ok");
    }
    c.expect_contains("bad.block.line", &ng);
    c.expect_contains("perm.refused.line", "Permission denied");
    // the uring-cmd namespace: IOPOLL on the poll queue; verified I/O, the description (reactor 0 on the
    // blk-mq hardware queue its CPU maps to), zeroes, the device's status, SIGKILL and restart
    c.expect("uc.start", "ok");
    c.expect("uc.iopoll", "yes");
    c.expect("uc.node", "1");
    c.expect_nvme_backend("uc.verify", "uc", "uring-cmd", &ng, IMAGE_BYTES, "0:");
    // the block device that carries the requests (the multipath path nvme0c0n1, or nvme0n1)
    c.expect_prefix("uc.describe.device", "nvme0");
    c.expect("uc.describe.abi", "1.7");
    c.expect("kernel.flush", "ok");
    c.expect("status.target_saw", "ok");
    // the diagnosis
    c.expect("diagnose.status", "0");
    c.expect("diagnose.numa_misplacement", "ok");
    c.expect("diagnose.names_device", "ok");
    c.expect("restart.stop", "ok");
    assert!(
        run.status == Some(0) && c.problems.is_empty(),
        "uring-cmd lab check failed (run.sh exit {:?}; console {}):\n  {}\n{}",
        run.status,
        run.out_dir.join("console.log").display(),
        c.problems.join("\n  "),
        run.errors()
    );
}
