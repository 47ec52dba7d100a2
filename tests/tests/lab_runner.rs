//! Lab tests of the QEMU lab runner itself (`bench-harness/lab/run.sh`): what every other lab test relies on.
//! One guest boot checks the plumbing (host files at the same paths, the writable results share, the two-node
//! NUMA topology, the guest command's exit status coming back as `run.sh`'s); a second, killed at once, checks
//! the timeout path. `RINGSIDE_SKIP_LAB=1` skips them with a printed reason; CI runs them.
#![forbid(unsafe_code)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

use tests::workspace_root;

fn skip() -> bool {
    if std::env::var("RINGSIDE_SKIP_LAB").as_deref() == Ok("1") {
        println!("skipped: RINGSIDE_SKIP_LAB=1 (this test boots the QEMU lab; CI runs it)");
        return true;
    }
    false
}

fn run_sh(args: &[&str]) -> Output {
    Command::new("bash")
        .arg(workspace_root().join("bench-harness/lab/run.sh"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run bench-harness/lab/run.sh")
}

#[test]
fn lab_runner_shares_host_files_results_numa_and_exit_status() {
    if skip() {
        return;
    }
    // A directory on the host (under /var/tmp: /tmp may be a tmpfs, which the guest sees too, but keep it
    // plain) with a file the guest must read at the same path, and an empty results dir.
    let host = tempfile::Builder::new()
        .prefix("ringside-lab-runner-")
        .tempdir_in("/var/tmp")
        .expect("temp dir");
    let token = format!("token-{}", std::process::id());
    std::fs::write(host.path().join("in.txt"), &token).expect("write in.txt");
    let out = host.path().join("out");
    std::fs::create_dir(&out).expect("create out dir");

    let guest_cmd = format!(
        "set -e; cat {in_txt} > \"$RINGSIDE_LAB_OUT/seen.txt\"; \
         cat /sys/devices/system/node/node0/cpulist /sys/devices/system/node/node1/cpulist > \"$RINGSIDE_LAB_OUT/nodes.txt\"; \
         echo \"$MARK\" > \"$RINGSIDE_LAB_OUT/env.txt\"; \
         ! touch /lab-root-must-be-writable-overlay-only 2>/dev/null && exit 99; \
         exit 7",
        in_txt = host.path().join("in.txt").display()
    );
    let o = run_sh(&[
        "-q",
        "--timeout",
        "600",
        "--out",
        out.to_str().expect("utf-8 path"),
        "-e",
        "MARK=it works",
        "--",
        "sh",
        "-c",
        &guest_cmd,
    ]);
    let console = std::fs::read_to_string(out.join("console.log")).unwrap_or_default();
    let ctx = format!(
        "stderr:\n{}\nconsole:\n{console}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        o.status.code(),
        Some(7),
        "run.sh must return the guest command's status 7; {ctx}"
    );
    assert!(
        console.contains("LAB_RC=7"),
        "console must record LAB_RC=7; {ctx}"
    );
    let read = |f: &str| {
        std::fs::read_to_string(out.join(f))
            .unwrap_or_else(|e| panic!("guest wrote no {f}: {e}; {ctx}"))
    };
    assert_eq!(
        read("seen.txt"),
        token,
        "the guest must see the host's file at the same path"
    );
    assert_eq!(
        read("nodes.txt"),
        "0-1\n2-3\n",
        "two NUMA nodes with cpus 0-1 and 2-3"
    );
    assert_eq!(
        read("env.txt"),
        "it works\n",
        "-e NAME=VALUE must reach the guest command"
    );
    assert!(
        !Path::new("/lab-root-must-be-writable-overlay-only").exists(),
        "a guest write to / must stay in the guest's overlay"
    );
}

#[test]
fn lab_runner_kills_a_guest_that_overruns_its_timeout() {
    if skip() {
        return;
    }
    let o = run_sh(&["-q", "--timeout", "2", "--", "sleep", "600"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(124),
        "a timed-out guest must give status 124; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("timed out after 2 s"),
        "run.sh must say it timed out; stderr:\n{stderr}"
    );
}
