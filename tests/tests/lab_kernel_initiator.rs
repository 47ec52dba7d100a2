//! Lab test: the Linux kernel NVMe/TCP initiator (nvme-tcp + nvme-cli + fio) against `ringside-tgt`, and the
//! keep-alive timeout freeing the controller of a host that vanished (its traffic dropped, no disconnect).
//!
//! The host kernel has no NVMe/TCP initiator, so this boots the QEMU lab guest
//! (`bench-harness/lab/run.sh`, Debian's stock kernel under TCG) and runs
//! `bench-harness/lab/guest/nvmf-tcp-kernel-initiator.sh` in it. The guest sees the host's files at the same
//! paths, so it runs the `ringside-tgt` binary built here unchanged. The script prints one
//! `LAB_RESULT key=value` line per fact; this test parses them and checks them against what the target's own
//! configuration (`ringside-tgt ... --check`) says it serves.
//!
//! Locating the binary: the `tests` crate cannot use `CARGO_BIN_EXE_*` of another package, so the test runs
//! `cargo build -p nvmf-target --bin ringside-tgt --message-format=json` (same cargo, same `CARGO_TARGET_DIR`,
//! same dev profile as `cargo test`; a no-op when it is fresh) and takes the executable path cargo reports.
//! `RINGSIDE_TGT=/path/to/ringside-tgt` overrides that (e.g. to test a release build).
//!
//! The lab sets itself up on first use (`bench-harness/lab/setup.sh`: needs root on a fresh machine, ~45 s,
//! then ~0 s). `RINGSIDE_SKIP_LAB=1` skips the test with a printed reason; nothing else does: in CI the lab
//! must run. On failure the test also runs the lab's reference check (the kernel's own nvmet-tcp target through
//! the same steps), so the report says whether the lab or `ringside-tgt` is at fault.
#![forbid(unsafe_code)]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use tests::{lab, workspace_root};

/// Seconds after which `run.sh` kills the guest. Under TCG on 2 shared cores the whole run takes 3-6 min.
const GUEST_TIMEOUT_SECS: u32 = 1800;
/// The namespace the guest script asks for (`--malloc 256MiB`).
const NS_BYTES: u64 = 256 << 20;

/// Runs `args` (a guest script and its arguments) in the lab guest.
fn guest(name: &str, args: &[&str]) -> lab::GuestRun {
    lab::run(name, &["--timeout", &GUEST_TIMEOUT_SECS.to_string()], args)
}

/// What the target says it serves with the guest script's flags: (nqn, model, serial).
fn expected_identity(tgt: &Path) -> (String, String, String) {
    let out = Command::new(tgt)
        .args([
            "--listen",
            "127.0.0.1:4420",
            "--malloc",
            "256MiB",
            "--block-size",
            "512",
            "--check",
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} --check: {e}", tgt.display()));
    assert!(
        out.status.success(),
        "{} --check failed: {}",
        tgt.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |k: &str| {
        toml_string_in_first_subsystem(&text, k).unwrap_or_else(|| {
            panic!("ringside-tgt --check printed no [[subsystems]] {k} = \"...\":\n{text}")
        })
    };
    (field("nqn"), field("model"), field("serial"))
}

/// `key = "value"` in the first `[[subsystems]]` table of TOML printed by `--check` (plain strings only:
/// NQN, model and serial are printable ASCII; `\"` and `\\` escapes are undone). Kept this small so the tests
/// crate needs no TOML dependency.
fn toml_string_in_first_subsystem(text: &str, key: &str) -> Option<String> {
    let mut lines = text
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != "[[subsystems]]")
        .skip(1);
    lines
        .by_ref()
        .take_while(|l| !l.starts_with('['))
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            if k.trim() != key {
                return None;
            }
            let v = v.trim().strip_prefix('"')?.strip_suffix('"')?;
            Some(v.replace("\\\"", "\"").replace("\\\\", "\\"))
        })
}

#[test]
fn lab_kernel_nvme_tcp_initiator_against_ringside_tgt() {
    if lab::skipped() {
        return;
    }
    let t_all = Instant::now();
    let root = workspace_root();
    let tgt = lab::bin("RINGSIDE_TGT", "nvmf-target", "ringside-tgt");
    // The guest script calls `ringside rpc` from the same directory.
    let agent = lab::bin("RINGSIDE_AGENT", "agent", "ringside");
    assert_eq!(
        agent.parent(),
        tgt.parent(),
        "the guest finds ringside next to ringside-tgt"
    );
    let (nqn, model, serial) = expected_identity(&tgt);
    println!(
        "ringside-tgt: {} (nqn {nqn}, model {model:?}, serial {serial:?})",
        tgt.display()
    );

    let t_setup = Instant::now();
    lab::setup();
    let setup_secs = t_setup.elapsed().as_secs_f64();

    let script = root.join("bench-harness/lab/guest/nvmf-tcp-kernel-initiator.sh");
    let run = guest(
        "lab_kernel_initiator",
        &[
            script.to_str().expect("utf-8 path"),
            tgt.to_str().expect("utf-8 path"),
        ],
    );
    println!("{}", run.console);

    let mut c = run.checker();
    // target lifecycle
    c.expect("target.nqn", &nqn);
    for bs in ["512", "4096"] {
        c.expect(&format!("target.start{bs}"), "ok");
        c.expect(&format!("target.stop{bs}"), "ok");
        c.expect(&format!("target.stop{bs}.status"), "0");
    }
    for (p, lba) in [("lba512", 512u64), ("lba4096", 4096)] {
        // discovery lists our subsystem
        c.expect(&format!("{p}.discover"), "ok");
        c.expect(&format!("{p}.discover.subnqn"), &nqn);
        c.expect(&format!("{p}.connect"), "ok");
        c.expect_prefix(
            &format!("{p}.connect.transport"),
            "tcp traddr=127.0.0.1,trsvcid=4420",
        );
        // Identify Controller as the kernel saw it
        c.expect(&format!("{p}.id_ctrl"), "ok");
        c.expect(&format!("{p}.id_ctrl.mn"), &model);
        c.expect(&format!("{p}.id_ctrl.sn"), &serial);
        c.expect(&format!("{p}.id_ctrl.subnqn"), &nqn);
        // Identify Namespace
        c.expect(&format!("{p}.id_ns"), "ok");
        c.expect(&format!("{p}.id_ns.lba_size"), &lba.to_string());
        c.expect(&format!("{p}.id_ns.nsze"), &(NS_BYTES / lba).to_string());
        c.expect(&format!("{p}.disconnect"), "ok");
    }
    // header and data digests
    c.expect("digest.connect", "ok");
    c.expect("digest.disconnect", "ok");
    // fio crc32c verify jobs: passed, no error, and every written byte was read back and checked
    let fio_jobs = [
        ("lba512.fio.randwrite_4k", Some(32u64 << 20)),
        ("lba512.fio.randwrite_mixed", Some(32 << 20)),
        ("lba512.fio.randrw", None),
        ("lba4096.fio.randwrite_4k", Some(8 << 20)),
        ("lba4096.fio.randwrite_mixed", Some(16 << 20)),
        ("digest.fio.randwrite_4k", Some(8 << 20)),
        ("digest.fio.randwrite_mixed", Some(8 << 20)),
    ];
    for (job, written) in fio_jobs {
        c.expect(job, "ok");
        c.expect(&format!("{job}.error"), "0");
        if let Some(bytes) = written {
            c.expect(&format!("{job}.write_bytes"), &bytes.to_string());
            c.expect(&format!("{job}.read_bytes"), &bytes.to_string());
        } else if c
            .get(&format!("{job}.read_ios"))
            .parse::<u64>()
            .unwrap_or(0)
            == 0
        {
            c.problems
                .push(format!("{job}: no reads, so nothing was verified"));
        }
    }
    // nvme-cli, and a namespace added through `ringside rpc` seen without a rescan
    c.expect("cli.connect", "ok");
    c.expect("cli.list_subsys", "ok");
    c.expect("cli.list_subsys.nqn", &nqn);
    c.expect("cli.id_ctrl", "ok");
    c.expect("cli.id_ctrl.oaes", "0x100");
    c.expect("cli.smart_log", "ok");
    c.expect("cli.error_log", "ok");
    c.expect("cli.get_feature7", "ok");
    c.expect_prefix("cli.get_feature7.value", "0x");
    c.expect("cli.add_ns", "ok");
    c.expect("cli.add_ns.nsid", "2");
    c.expect("cli.new_ns", "ok");
    c.expect("cli.new_ns.bytes", &(16u64 << 20).to_string());
    c.expect("cli.disconnect", "ok");
    c.expect("cli.reconnect", "ok");
    c.expect("cli.reconnect.namespaces", "1 2");
    c.expect("cli.redisconnect", "ok");
    // a host that vanished (loopback down, no disconnect): the keep-alive timeout frees its controller,
    // the target says so in one line and lists none of its queues any more
    c.expect("ka.connect", "ok");
    if c.get("ka.qpairs_before").parse::<u64>().unwrap_or(0) < 2 {
        c.problems.push(format!(
            "ka.qpairs_before: {:?}, want the admin queue and at least one I/O queue listed while connected",
            c.get("ka.qpairs_before")
        ));
    }
    c.expect("ka.log_lines", "1");
    c.expect("ka.qpairs_after", "0");
    c.expect("ka", "ok");
    // the kernel logged no controller reset, I/O timeout, digest error... (fio would not notice a recovered one)
    c.expect("dmesg.nvme_problems", "0");
    c.expect("all", "ok");
    let problems = c.problems;

    let boot = run.uptime_at("LAB_STAGE2_UP").unwrap_or(f64::NAN);
    let done = run.uptime_at("LAB_RC=").unwrap_or(f64::NAN);
    println!(
        "lab timing: setup {setup_secs:.1} s, guest boot to stage 2 {boot:.1} s, boot to result {done:.1} s, \
         run.sh {:.1} s, whole test {:.1} s; console log {}",
        run.secs,
        t_all.elapsed().as_secs_f64(),
        run.out_dir.join("console.log").display()
    );

    if run.status != Some(0) || !problems.is_empty() {
        // Is the lab itself healthy? The kernel's own target through the same steps answers that.
        let selftest = root.join("bench-harness/lab/guest/nvmf-tcp-kernel-target-selftest.sh");
        let st = guest("lab_selftest", &[selftest.to_str().expect("utf-8 path")]);
        let verdict = if st.status == Some(0) {
            "the lab's reference check (kernel nvmet-tcp target, same steps) PASSED: the fault is in ringside-tgt"
        } else {
            "the lab's reference check (kernel nvmet-tcp target, same steps) FAILED too: suspect the lab"
        };
        panic!(
            "the Linux NVMe/TCP initiator against ringside-tgt failed (run.sh status {:?}; console {}):\n  {}\n\
             guest errors:\n{}\n{verdict} (console {})",
            run.status,
            run.out_dir.join("console.log").display(),
            problems.join("\n  "),
            run.errors(),
            st.out_dir.join("console.log").display(),
        );
    }
}
