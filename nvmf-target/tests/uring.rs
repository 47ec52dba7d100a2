//! The `uring` backend end to end: a target serving a namespace on a real file (under
//! /var/tmp, not tmpfs, so O_DIRECT reaches the disk) or on a loop device (root), driven by the
//! raw test host (command semantics, persistence across a restart) and by `ringside-perf
//! --verify` (data integrity under random mixed load at 512 B, 4 KiB and 128 KiB).

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use common::{pattern, TestTarget, NQN};
use nvme_proto::nvme::{Nsid, Sqe, Status, DSM_AD};
use nvme_proto::sgl::SglDescriptor;
use nvmf_target::config::{BackendKind, ByteSize, Config, NamespaceConfig};

const BIN: &str = env!("CARGO_BIN_EXE_ringside-tgt");
const BS: u64 = 512;

/// A directory on the real disk (not tmpfs), removed on drop.
fn disk_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ringside-uring-test")
        .tempdir_in("/var/tmp")
        .expect("a temp dir under /var/tmp")
}

fn sized_file(dir: &Path, name: &str, len: u64) -> PathBuf {
    let p = dir.join(name);
    File::create(&p)
        .and_then(|f| f.set_len(len))
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", p.display()));
    p
}

/// Replaces the test namespace with a uring one on `path` (512-byte blocks, whole file).
fn uring_ns(path: &Path) -> impl FnOnce(&mut Config) {
    let path = path.to_path_buf();
    move |c| {
        c.subsystems[0].namespaces = vec![NamespaceConfig {
            nsid: Some(1),
            backend: BackendKind::Uring { path },
            size: ByteSize(0),
            block_size: BS as u32,
        }];
    }
}

/// Write Zeroes of 8 blocks at `wz`, then a Dataset Management deallocate of 8 blocks at `dsm`.
fn zero_then_deallocate(io: &mut common::Host, wz: u64, dsm: u64) {
    let cid = io.cid();
    let (c, _) = io.cmd(
        Sqe::write_zeroes(cid, Nsid(1), wz, 8, false).expect("sqe"),
        &[],
        false,
    );
    assert!(c.status.is_success(), "write zeroes {:?}", c.status);
    let mut range = [0u8; 16];
    range[4..8].copy_from_slice(&8u32.to_le_bytes());
    range[8..16].copy_from_slice(&dsm.to_le_bytes());
    let cid = io.cid();
    let sqe = Sqe::dataset_management(cid, Nsid(1), 1, DSM_AD, SglDescriptor::in_capsule(0, 16))
        .expect("sqe");
    let (c, _) = io.cmd(sqe, &range, true);
    assert!(c.status.is_success(), "dsm {:?}", c.status);
}

fn shared(t: &TestTarget) -> &std::sync::Arc<nvmf_target::target::Shared> {
    t.target.as_ref().expect("target running").shared()
}

#[test]
fn uring_file_commands_statuses_and_persistence() {
    let dir = disk_dir();
    let file = sized_file(dir.path(), "disk", 16 << 20);
    let blocks = (16 << 20) / BS;
    let d1 = pattern(4096, 1);
    let big = pattern(65536, 2);
    {
        let t = TestTarget::start_with(uring_ns(&file));
        let (_admin, mut io) = t.io_pair(false, false);
        // In-capsule write and an R2T write (four H2CData PDUs), read back.
        assert!(
            io.write(8, &d1, true).status.is_success(),
            "in-capsule write"
        );
        assert!(io.write(1000, &big, false).status.is_success(), "r2t write");
        let (c, r) = io.read(8, 4096);
        assert!(c.status.is_success(), "read {:?}", c.status);
        assert_eq!(r, d1, "4 KiB read back");
        let (c, r) = io.read(1000, 65536);
        assert!(c.status.is_success());
        assert_eq!(r, big, "64 KiB read back");
        // Beyond the end of the file.
        let (c, _) = io.read(blocks - 1, 1024);
        assert!(
            c.status.same_code(Status::LBA_OUT_OF_RANGE),
            "read past the end: {:?}",
            c.status
        );
        assert!(
            io.write(blocks, &[0u8; 512], true)
                .status
                .same_code(Status::LBA_OUT_OF_RANGE),
            "write past the end"
        );
        // Write Zeroes (FALLOC_FL_ZERO_RANGE) and deallocate (PUNCH_HOLE) read back as zeros.
        zero_then_deallocate(&mut io, 1000, 1016);
        let cid = io.cid();
        let (c, _) = io.cmd(
            Sqe::write_zeroes(cid, Nsid(1), blocks, 1, false).expect("sqe"),
            &[],
            false,
        );
        assert!(
            c.status.same_code(Status::LBA_OUT_OF_RANGE),
            "write zeroes past the end: {:?}",
            c.status
        );
        let (_, r) = io.read(1000, 65536);
        assert!(r[..4096].iter().all(|&b| b == 0), "write zeroes");
        assert_eq!(&r[4096..8192], &big[4096..8192], "untouched between");
        assert!(r[8192..12288].iter().all(|&b| b == 0), "deallocated");
        assert_eq!(&r[12288..], &big[12288..], "untouched after");
        let cid = io.cid();
        let (c, _) = io.cmd(Sqe::flush(cid, Nsid(1)), &[], false);
        assert!(c.status.is_success(), "flush {:?}", c.status);
        assert_eq!(
            shared(&t).bdevs[0].bounced(),
            0,
            "TCP request buffers are aligned: no bounce copies"
        );
        // The description names the disk under the file's filesystem, when it has one.
        let trace = t
            .target
            .as_ref()
            .and_then(|t| t.trace_path())
            .expect("trace file")
            .to_path_buf();
        let reader = trace_ring::TraceReader::open(&trace).expect("open the trace file");
        let ns = &reader.description().subsystems[0].namespaces[0];
        assert_eq!(ns.backend, trace_ring::description::BackendKind::Uring);
        assert_eq!(ns.size_bytes, Some(16 << 20));
        let st_dev = std::os::unix::fs::MetadataExt::dev(&std::fs::metadata(&file).expect("stat"));
        let sys = format!(
            "/sys/dev/block/{}:{}",
            rustix::fs::major(st_dev),
            rustix::fs::minor(st_dev)
        );
        if Path::new(&sys).exists() {
            let dev = ns
                .device
                .as_deref()
                .expect("a device for a file on a block device");
            assert!(
                Path::new(&format!("/sys/block/{dev}/stat")).exists(),
                "{dev} is a whole disk"
            );
        }
    }
    // The data is in the file itself (direct read, target stopped).
    let on_disk = std::fs::read(&file).expect("read the backing file");
    assert_eq!(on_disk.len() as u64, 16 << 20, "size kept (KEEP_SIZE)");
    assert_eq!(
        &on_disk[8 * 512..8 * 512 + 4096],
        &d1[..],
        "written data on disk"
    );
    let at = 1000 * 512;
    assert!(
        on_disk[at..at + 4096].iter().all(|&b| b == 0),
        "zeroes on disk"
    );
    assert_eq!(&on_disk[at + 4096..at + 8192], &big[4096..8192]);
    // A new target on the same file serves the same data.
    let t = TestTarget::start_with(uring_ns(&file));
    let (_admin, mut io) = t.io_pair(false, false);
    let (c, r) = io.read(8, 4096);
    assert!(c.status.is_success());
    assert_eq!(r, d1, "data survives a target restart");
    let (_, r) = io.read(1000 + 32, 4096);
    assert_eq!(&r[..], &big[32 * 512..32 * 512 + 4096]);
}

/// `ringside-perf`, built once per test run with the same cargo and target directory.
fn perf_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root");
        let out = Command::new(&cargo)
            .args([
                "build",
                "-p",
                "bench-harness",
                "--bin",
                "ringside-perf",
                "--message-format=json-render-diagnostics",
            ])
            .current_dir(root)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cargo:?} build: {e}"));
        assert!(out.status.success(), "cargo build of ringside-perf failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|m| {
                m["reason"] == "compiler-artifact" && m["target"]["name"] == "ringside-perf"
            })
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo reported no ringside-perf executable")
    })
}

/// Runs `ringside-perf --verify` (randrw 50/50, QD 16, 2 s) at `size` over the first `range`
/// bytes and checks it found no error and no mismatch and checked reads. Returns the report.
fn perf_verify(addr: std::net::SocketAddr, size: &str, range: &str) -> serde_json::Value {
    let trid = format!(
        "trtype:tcp adrfam:ipv4 traddr:{} trsvcid:{} subnqn:{NQN}",
        addr.ip(),
        addr.port()
    );
    let out = Command::new(perf_bin())
        .args([
            "-r", &trid, "-q", "16", "-o", size, "-w", "randrw", "-t", "2", "--verify", "--range",
            range, "--no-pin", "--json",
        ])
        .output()
        .expect("run ringside-perf");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "perf printed no JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(out.status.success(), "perf {size} failed: {stdout}");
    assert_eq!(v["verify"]["mismatches"], 0, "{size}: mismatches");
    assert!(
        v["verify"]["checked_blocks"].as_u64().unwrap_or(0) > 0,
        "{size}: reads were checked: {}",
        v["verify"]
    );
    assert!(
        v["total"]["writes"].as_u64().unwrap_or(0) > 0,
        "{size}: writes were done"
    );
    assert_eq!(v["errors"], serde_json::json!({}), "{size}: NVMe errors");
    assert_eq!(
        v["fatal"],
        serde_json::json!([]),
        "{size}: transport failures"
    );
    v
}

#[test]
fn uring_file_survives_perf_verify_at_three_sizes() {
    let dir = disk_dir();
    let file = sized_file(dir.path(), "disk", 64 << 20);
    let t = TestTarget::start_with(uring_ns(&file));
    for size in ["512", "4096", "131072"] {
        perf_verify(t.addr, size, "32MiB");
    }
    assert_eq!(shared(&t).bdevs[0].bounced(), 0, "no bounce copies");
    drop(t);
    // A spinning reactor (idle = poll): the rings use COOP_TASKRUN, completions are found by
    // the poll instead of waking the reactor.
    let ns = uring_ns(&file);
    let t = TestTarget::start_with(|c| {
        ns(c);
        c.idle = nvmf_target::config::IdlePolicy::Poll;
    });
    perf_verify(t.addr, "4096", "32MiB");
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Completed reads and writes of a block device, from /sys/block/<dev>/stat.
fn block_ios(name: &str) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/sys/block/{name}/stat")).expect("block stat");
    let f: Vec<u64> = s
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    (f[0], f[4])
}

#[test]
fn root_uring_on_a_loop_device_verifies_and_is_described() {
    if !is_root() {
        eprintln!(
            "skipped: root_uring_on_a_loop_device_verifies_and_is_described needs root (losetup)"
        );
        return;
    }
    let lo = tests::LoopDevice::new(64 << 20);
    let t = TestTarget::start_with(uring_ns(&lo.dev));
    // The trace file's description names the loop device.
    let path = t
        .target
        .as_ref()
        .and_then(|t| t.trace_path())
        .expect("the test target writes a trace file")
        .to_path_buf();
    let reader = trace_ring::TraceReader::open(&path).expect("open the trace file");
    let ns = &reader.description().subsystems[0].namespaces[0];
    assert_eq!(ns.backend, trace_ring::description::BackendKind::Uring);
    assert_eq!(
        ns.device.as_deref(),
        Some(lo.name().as_str()),
        "device named"
    );
    assert_eq!(ns.size_bytes, Some(64 << 20));
    assert_eq!(ns.block_size, Some(512));
    let before = block_ios(&lo.name());
    for size in ["512", "4096", "131072"] {
        perf_verify(t.addr, size, "32MiB");
    }
    let after = block_ios(&lo.name());
    assert!(
        after.0 > before.0 && after.1 > before.1,
        "the I/O reached {}: {before:?} -> {after:?}",
        lo.name()
    );
    // Write Zeroes and deallocate on a block device (blkdev fallocate).
    let (_admin, mut io) = t.io_pair(false, false);
    let d = pattern(8192, 5);
    assert!(io.write(100, &d, true).status.is_success());
    zero_then_deallocate(&mut io, 100, 108);
    let (_, r) = io.read(100, 8192);
    assert!(
        r[..4096].iter().all(|&b| b == 0),
        "write zeroes on a loop device"
    );
    // Deallocated blocks read back as zeroes on a loop device (it punches its backing file);
    // on devices that cannot, deallocate is a no-op and this would read the old data.
    assert!(
        r[4096..].iter().all(|&b| b == 0),
        "deallocated on a loop device"
    );
}

#[test]
fn bad_uring_paths_are_one_clear_line() {
    let dir = disk_dir();
    let empty = sized_file(dir.path(), "empty", 0);
    let odd = sized_file(dir.path(), "odd", 1000);
    let fine = sized_file(dir.path(), "fine", 1 << 20);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--uring".into(), "/nonexistent/disk".into()],
            "cannot open /nonexistent/disk: No such file or directory",
        ),
        (
            vec!["--uring".into(), empty.display().to_string()],
            "is empty",
        ),
        (
            vec!["--uring".into(), odd.display().to_string()],
            "not a multiple of the block size",
        ),
        (
            vec!["--uring".into(), dir.path().display().to_string()],
            "neither a regular file nor a block device",
        ),
        (
            vec![
                "--uring".into(),
                fine.display().to_string(),
                "--uring-block-size".into(),
                "1000".into(),
            ],
            "block size 1000",
        ),
    ];
    for (args, want) in cases {
        let out = Command::new(BIN)
            .args(["--listen", "127.0.0.1:0", "--no-trace", "--rpc-socket"])
            .arg(dir.path().join("rpc.sock"))
            .args(&args)
            .output()
            .expect("run ringside-tgt");
        assert!(!out.status.success(), "{args:?} must fail");
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains(want), "{args:?}: expected {want:?} in {e:?}");
        assert_eq!(e.trim().lines().count(), 1, "{args:?}: one line: {e:?}");
        assert!(!e.contains("panicked"), "{args:?} panicked: {e}");
    }
    // Without permission: a read-only file as a user, or (as root) a root-owned file opened by
    // `nobody` through setpriv.
    let ro = sized_file(dir.path(), "ro", 1 << 20);
    let mut cmd = if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
        c
    } else {
        let mut perm = std::fs::metadata(&ro).expect("meta").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o444);
        std::fs::set_permissions(&ro, perm).expect("chmod");
        Command::new(BIN)
    };
    match cmd
        .args([
            "--listen",
            "127.0.0.1:0",
            "--no-trace",
            "--rpc-socket",
            "/tmp/ringside-uring-perm.sock",
            "--uring",
        ])
        .arg(&ro)
        .output()
    {
        Ok(out) if is_root() && out.status.code() == Some(127) => {
            eprintln!("skipped the permission case: setpriv could not run the binary");
        }
        Ok(out) => {
            let e = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "no permission must fail");
            assert!(e.contains("Permission denied"), "{e}");
            assert_eq!(e.trim().lines().count(), 1, "one line: {e:?}");
        }
        Err(e) => eprintln!("skipped the permission case: cannot run setpriv ({e})"),
    }
}

#[test]
fn uring_namespace_in_a_toml_file() {
    let dir = disk_dir();
    let file = sized_file(dir.path(), "disk", 1 << 20);
    let cfg = dir.path().join("t.toml");
    let check = |ns: &str| {
        let toml = format!(
            "[[listeners]]\naddr = \"127.0.0.1\"\nport = 0\n\n[[subsystems]]\nnqn = \"{NQN}\"\n\n[[subsystems.namespaces]]\n{ns}"
        );
        std::fs::write(&cfg, toml).expect("write config");
        Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .arg("--check")
            .output()
            .expect("run --check")
    };
    let out = check(&format!(
        "backend = \"uring\"\npath = \"{}\"\n",
        file.display()
    ));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(s.contains("backend = \"uring\""), "{s}");
    assert!(s.contains(&format!("path = \"{}\"", file.display())), "{s}");
    // A uring namespace without a path, and a path on another backend, are refused.
    let out = check("backend = \"uring\"\n");
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(e.contains("needs path"), "{e}");
    let out = check("backend = \"malloc\"\nsize = \"1MiB\"\npath = \"/x\"\n");
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(e.contains("path is only for the uring backend"), "{e}");
}

#[test]
fn uring_connection_dropped_with_io_in_flight() {
    // The request buffers go away with the connection while the kernel may still be reading into
    // them: the connection quiesces the queue first. The target must keep serving, other data
    // intact, no crash or hang.
    let dir = disk_dir();
    // Written blocks (not holes), so the reads go to the disk and take a while.
    let file = dir.path().join("disk");
    std::fs::write(&file, vec![0x11u8; 32 << 20]).expect("write the backing file");
    let t = TestTarget::start_with(uring_ns(&file));
    let keep = pattern(65536, 9);
    {
        let (_admin, mut io) = t.io_pair(false, false);
        assert!(io.write(0, &keep, false).status.is_success());
    }
    for round in 0..5u64 {
        let (_admin, mut io) = t.io_pair(false, false);
        // 32 reads of 128 KiB and the FIN in one burst while the reactor sleeps (idle policy of
        // the test config), so it reads them all in one poll and finds the connection closed
        // with the reads still at the backend.
        let mut burst = Vec::new();
        for k in 0..32u64 {
            let cid = io.cid();
            let lba = 256 + (round * 32 + k) * 256 % 60_000;
            let sqe = Sqe::read(
                cid,
                Nsid(1),
                lba,
                256,
                SglDescriptor::tcp_transport(128 * 1024),
            )
            .expect("read sqe");
            let mut b = [0u8; 128];
            let n = nvme_proto::tcp::encode_capsule_cmd(&sqe, &[], &io.cfg, &mut b)
                .expect("encode capsule");
            burst.extend_from_slice(&b[..n]);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        io.send(&burst);
        let _ = io.s.shutdown(std::net::Shutdown::Both);
    }
    let (_admin, mut io) = t.io_pair(false, false);
    let (c, r) = io.read(0, 65536);
    assert!(c.status.is_success(), "served after abrupt disconnects");
    assert_eq!(r, keep, "data intact after abrupt disconnects");
}

#[test]
fn io_uring_refused_by_seccomp_is_one_clear_line() {
    use std::os::unix::process::CommandExt;
    // A seccomp filter failing io_uring_setup (425 on every architecture's unified table) with
    // EPERM, as container runtimes do.
    const LD_NR: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS, seccomp_data.nr at offset 0
    const JEQ: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET: u16 = 0x06; // BPF_RET | BPF_K
    let filter = [
        libc::sock_filter {
            code: LD_NR,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: JEQ,
            jt: 0,
            jf: 1,
            k: 425,
        },
        libc::sock_filter {
            code: RET,
            jt: 0,
            jf: 0,
            k: 0x0005_0000 | libc::EPERM as u32, // SECCOMP_RET_ERRNO
        },
        libc::sock_filter {
            code: RET,
            jt: 0,
            jf: 0,
            k: 0x7fff_0000, // SECCOMP_RET_ALLOW
        },
    ];
    let dir = disk_dir();
    let file = sized_file(dir.path(), "disk", 1 << 20);
    let mut cmd = Command::new(BIN);
    cmd.args(["--listen", "127.0.0.1:0", "--no-trace", "--rpc-socket"])
        .arg(dir.path().join("rpc.sock"))
        .arg("--uring")
        .arg(&file);
    // SAFETY: the closure runs in the forked child before exec and only makes two prctl system
    // calls (async-signal-safe) with pointers to `filter`, which the fork copied and which lives
    // until exec replaces the image.
    unsafe {
        cmd.pre_exec(move || {
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr().cast_mut(),
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("skipped: cannot install a seccomp filter here ({e})");
            return;
        }
    };
    let e = String::from_utf8_lossy(&out.stderr);
    eprintln!("without io_uring: {}", e.trim());
    assert!(!out.status.success(), "must fail without io_uring: {e}");
    assert!(e.contains("io_uring is refused"), "{e}");
    assert!(e.contains("null and malloc backends still work"), "{e}");
    assert!(e.contains("Operation not permitted"), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "one line: {e:?}");
}
