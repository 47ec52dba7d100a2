//! End-to-end tests that run the real binaries; see `tests/tests/` and README.md.
//!
//! This library holds what every end-to-end test needs: where the workspace is, the path of a
//! workspace binary built by the same cargo that runs the test, a running target ([`Target`])
//! and a loop device ([`LoopDevice`]).
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives inside the workspace")
        .to_path_buf()
}

/// Builds `bin` of `package` with the cargo running this test (same `CARGO_TARGET_DIR`, same
/// profile; a no-op when fresh) and returns the executable path cargo reports. The `tests` crate
/// cannot use another package's `CARGO_BIN_EXE_*`.
pub fn cargo_bin(package: &str, bin: &str) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(&cargo)
        .args([
            "build",
            "-p",
            package,
            "--bin",
            bin,
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(workspace_root())
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo:?} build: {e}"));
    assert!(
        out.status.success(),
        "cargo build -p {package} --bin {bin} failed ({})",
        out.status
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == bin)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo build reported no {bin} executable"))
}

/// The workspace's `ringside-tgt`, `ringside-perf` and `ringside` built by this cargo, for the
/// scenario pieces of bench-harness (`bench_harness::scenario`).
pub fn scenario_bins() -> bench_harness::scenario::procs::Bins {
    bench_harness::scenario::procs::Bins {
        tgt: cargo_bin("nvmf-target", "ringside-tgt"),
        perf: cargo_bin("bench-harness", "ringside-perf"),
        agent: cargo_bin("agent", "ringside"),
    }
}

/// Waits for a starting `ringside-tgt` (spawned with stderr piped) to print its
/// `listening on tcp ADDR:PORT` line — and, when `until_rpc`, its `rpc socket` line — then keeps
/// draining its stderr on a thread so it never blocks on a full pipe. Returns the port and the
/// start-up lines; panics with them (after killing the child) if the target exits first.
pub fn wait_listening(child: &mut Child, until_rpc: bool) -> (u16, String) {
    bench_harness::scenario::procs::wait_listening(child, until_rpc)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A loop device on a sparse file under /var/tmp (a real disk, where O_DIRECT works: /tmp may be
/// tmpfs), detached on drop. Needs root (`losetup`).
pub struct LoopDevice {
    /// `/dev/loopN`.
    pub dev: PathBuf,
    _dir: tempfile::TempDir,
}

impl LoopDevice {
    /// Attaches a new loop device over a sparse file of `len` bytes; panics with losetup's
    /// message when it cannot.
    pub fn new(len: u64) -> LoopDevice {
        let dir = tempfile::Builder::new()
            .prefix("ringside-loop")
            .tempdir_in("/var/tmp")
            .expect("a temporary directory under /var/tmp");
        let backing = dir.path().join("backing");
        std::fs::File::create(&backing)
            .and_then(|f| f.set_len(len))
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", backing.display()));
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(&backing)
            .output()
            .expect("run losetup");
        assert!(
            out.status.success(),
            "losetup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dev = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        LoopDevice { dev, _dir: dir }
    }

    /// The kernel's name for it (`loop3`), as in /sys/block.
    pub fn name(&self) -> String {
        self.dev
            .file_name()
            .expect("device name")
            .to_string_lossy()
            .into_owned()
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

/// A running `ringside-tgt` on an ephemeral loopback port, with its trace file and RPC socket in
/// a temporary directory of its own (so tests may run in parallel and leave nothing in
/// `/dev/shm`); killed (SIGKILL) when dropped unless [`Target::stop`]ped. The starter is
/// bench-harness's ([`bench_harness::scenario::procs::TargetProc`]), shared with the scenario
/// suite.
pub struct Target {
    inner: bench_harness::scenario::procs::TargetProc,
    /// The TCP listener's port.
    pub port: u16,
    /// `ringside.<name>` in the temporary directory.
    pub trace_file: PathBuf,
    /// The RPC socket.
    pub rpc: PathBuf,
}

impl Target {
    /// Starts `ringside-tgt --name <tag><pid> --listen 127.0.0.1:0 <args>` (`args`: the backend,
    /// `--cores`...) and waits until it listens and serves RPC.
    pub fn start(tag: &str, args: &[&str]) -> Target {
        Target::wrap(bench_harness::scenario::procs::TargetProc::start(
            &Target::bins(),
            tag,
            &bench_harness::scenario::procs::Prefix::default(),
            "127.0.0.1",
            args,
        ))
    }

    /// The target binary built by the cargo running the test (no perf or agent needed).
    fn bins() -> bench_harness::scenario::procs::Bins {
        bench_harness::scenario::procs::Bins {
            tgt: cargo_bin("nvmf-target", "ringside-tgt"),
            perf: PathBuf::new(),
            agent: PathBuf::new(),
        }
    }

    /// A started target, or a panic with the start-up error chain.
    fn wrap(
        started: Result<
            bench_harness::scenario::procs::TargetProc,
            bench_harness::scenario::ScenarioError,
        >,
    ) -> Target {
        let inner = started.unwrap_or_else(|e| panic!("{}", bench_harness::error_chain(&e)));
        Target {
            port: inner.port,
            trace_file: inner.trace_file.clone(),
            rpc: inner.rpc.clone(),
            inner,
        }
    }

    /// Starts `ringside-tgt --name <name>` with its trace file and RPC socket in `dir` (which
    /// the caller keeps: a later instance of the same name may start there), and waits until it
    /// listens and serves RPC.
    pub fn start_in(dir: &Path, name: &str, args: &[&str]) -> Target {
        Target::wrap(bench_harness::scenario::procs::TargetProc::start_in(
            &Target::bins(),
            dir,
            name,
            &bench_harness::scenario::procs::Prefix::default(),
            "127.0.0.1",
            args,
        ))
    }

    /// The temporary directory holding the trace file and the RPC socket.
    pub fn dir(&self) -> &Path {
        self.inner.dir()
    }

    /// The target's process id.
    pub fn pid(&self) -> u32 {
        self.inner.pid()
    }

    /// SIGKILL, then waits: the target dies without cleaning up (its trace file stays).
    pub fn kill(&mut self) {
        self.inner.kill();
    }

    /// `ringside-perf -r <this target's transport id>`, stdin closed; add the workload.
    pub fn perf(&self) -> Command {
        let mut c = Command::new(cargo_bin("bench-harness", "ringside-perf"));
        c.arg("-r")
            .arg(format!(
                "trtype:tcp adrfam:ipv4 traddr:127.0.0.1 trsvcid:{}",
                self.port
            ))
            .stdin(Stdio::null());
        c
    }

    /// SIGTERM, then waits; asserts the target exited with status 0. The temporary directory
    /// stays until the value is dropped (a caller may check what the exit left behind).
    pub fn stop(&mut self) {
        let st = self
            .inner
            .stop()
            .unwrap_or_else(|e| panic!("{}", bench_harness::error_chain(&e)));
        assert!(st.success(), "ringside-tgt exited with {st} after SIGTERM");
    }
}

/// Waits for a `ringside-perf --json` run; asserts it succeeded and returns its JSON report.
pub fn perf_report(child: Child) -> serde_json::Value {
    let out = child.wait_with_output().expect("wait for ringside-perf");
    assert!(
        out.status.success(),
        "ringside-perf failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "ringside-perf printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The QEMU lab guest (`bench-harness/lab/`): running a script in it and checking the
/// `LAB_RESULT key=value` facts it prints.
pub mod lab {
    use std::collections::BTreeMap;
    use std::ffi::OsStr;
    use std::path::PathBuf;
    use std::process::{Command, Stdio};
    use std::time::{Instant, SystemTime, UNIX_EPOCH};

    use super::{cargo_bin, workspace_root};

    /// The lab's directory (`RINGSIDE_LAB`, default `/var/tmp/ringside-lab`).
    pub fn dir() -> PathBuf {
        std::env::var_os("RINGSIDE_LAB")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/tmp/ringside-lab"))
    }

    /// `RINGSIDE_SKIP_LAB=1` skips the lab tests (with a printed reason).
    pub fn skipped() -> bool {
        let skip = std::env::var("RINGSIDE_SKIP_LAB").as_deref() == Ok("1");
        if skip {
            println!("skipped: RINGSIDE_SKIP_LAB=1 (this test boots the QEMU lab; CI runs it)");
        }
        skip
    }

    /// The binary named by environment variable `env` (a release build, pinned binaries...),
    /// else `bin` of `package` built by the cargo running the test.
    pub fn bin(env: &str, package: &str, bin: &str) -> PathBuf {
        if let Some(p) = std::env::var_os(env) {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "{env}={} is not a file", p.display());
            return p;
        }
        cargo_bin(package, bin)
    }

    /// Sets the lab up on first use (`bench-harness/lab/setup.sh`: root on a fresh machine,
    /// ~45 s, then ~0 s); panics when it cannot.
    pub fn setup() {
        let setup = Command::new("bash")
            .arg(workspace_root().join("bench-harness/lab/setup.sh"))
            .status()
            .expect("cannot run bench-harness/lab/setup.sh");
        assert!(
            setup.success(),
            "lab setup failed ({setup}); see its error line above"
        );
    }

    /// Output of one guest run.
    pub struct GuestRun {
        /// `run.sh`'s exit code (the guest script's).
        pub status: Option<i32>,
        /// The guest's console.
        pub console: String,
        /// Where the run's files are.
        pub out_dir: PathBuf,
        /// Wall time of the run.
        pub secs: f64,
    }

    impl GuestRun {
        /// The `LAB_RESULT key=value` facts.
        pub fn results(&self) -> BTreeMap<String, String> {
            self.console
                .lines()
                .filter_map(|l| l.trim_end_matches('\r').strip_prefix("LAB_RESULT "))
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        }

        /// The LAB_ERROR lines and the evidence printed under them.
        pub fn errors(&self) -> String {
            let mut s = String::new();
            let mut in_err = false;
            for l in self.console.lines() {
                if l.starts_with("LAB_ERROR") {
                    in_err = true;
                } else if !l.starts_with("  |") {
                    in_err = false;
                }
                if in_err {
                    s.push_str(l);
                    s.push('\n');
                }
            }
            s
        }

        /// The guest's uptime on the first console line starting with `marker`.
        pub fn uptime_at(&self, marker: &str) -> Option<f64> {
            let line = self.console.lines().find(|l| l.starts_with(marker))?;
            line.split("uptime=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        }

        /// A checker over this run's facts.
        pub fn checker(&self) -> Checker {
            Checker {
                r: self.results(),
                problems: Vec::new(),
            }
        }
    }

    /// Runs `bench-harness/lab/run.sh -q <opts> --out <lab>/runs/<name>-<stamp>-<pid> -- <args>`
    /// (`args`: the guest script and its arguments) from the workspace root.
    pub fn run<S: AsRef<OsStr>>(name: &str, opts: &[&str], args: &[S]) -> GuestRun {
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let out_dir = dir()
            .join("runs")
            .join(format!("{name}-{stamp}-{}", std::process::id()));
        let run_sh = workspace_root().join("bench-harness/lab/run.sh");
        let t0 = Instant::now();
        let status = Command::new("bash")
            .arg(&run_sh)
            .arg("-q")
            .args(opts)
            .arg("--out")
            .arg(&out_dir)
            .arg("--")
            .args(args)
            .current_dir(workspace_root())
            .stdin(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", run_sh.display()));
        let secs = t0.elapsed().as_secs_f64();
        let console = std::fs::read_to_string(out_dir.join("console.log")).unwrap_or_default();
        GuestRun {
            status: status.code(),
            console,
            out_dir,
            secs,
        }
    }

    /// The lab guest's emulated NVMe controller for the NVMe backend tests (`lab_nvme_*`): a sparse
    /// raw image under /var/tmp (data persists across target restarts, unwritten blocks exist) and
    /// QEMU blkdebug rules that fail every read of byte `err_read_at` (so the controller answers
    /// that read with Unrecovered Read Error).
    pub struct NvmeImage {
        _dir: tempfile::TempDir,
        img: String,
        rules: String,
        err_read_at: u64,
    }

    impl NvmeImage {
        pub fn new(prefix: &str, bytes: u64, err_read_at: u64) -> NvmeImage {
            let dir = tempfile::Builder::new()
                .prefix(prefix)
                .tempdir_in("/var/tmp")
                .expect("temp dir under /var/tmp");
            let img = dir.path().join("nvme.img");
            std::fs::File::create(&img)
                .and_then(|f| f.set_len(bytes))
                .expect("sparse NVMe image");
            let rules = dir.path().join("blkdebug.conf");
            std::fs::write(
                &rules,
                format!(
                    "[inject-error]\nevent = \"none\"\niotype = \"read\"\nerrno = \"5\"\nsector = \"{}\"\n",
                    err_read_at / 512
                ),
            )
            .expect("blkdebug rules");
            NvmeImage {
                img: img.to_string_lossy().into_owned(),
                rules: rules.to_string_lossy().into_owned(),
                _dir: dir,
                err_read_at,
            }
        }

        /// `run.sh` options: the image, the blkdebug rules, `ERR_READ_AT` for the guest script.
        pub fn opts(&self) -> Vec<String> {
            [
                "--nvme-img",
                &self.img,
                "--nvme-blkdebug",
                &self.rules,
                "-e",
                &format!("ERR_READ_AT={}", self.err_read_at),
            ]
            .map(String::from)
            .to_vec()
        }
    }

    /// Boots the guest once for an NVMe backend test: `bench-harness/lab/guest/<script>` with
    /// the target, initiator and agent binaries (`RINGSIDE_TGT`, `RINGSIDE_PERF`,
    /// `RINGSIDE_AGENT` override them), `image`'s options and `extra`. QEMU's multi-threaded TCG
    /// can abort on its own (seen once: "iotlb_to_section: Assertion ... failed" while the guest
    /// remapped PCI BARs during a device reset): that is the emulator crashing (run.sh exit 126,
    /// the assertion in qemu.log), not a result, so the guest boots once more.
    pub fn run_nvme(name: &str, script: &str, image: &NvmeImage, extra: &[&str]) -> GuestRun {
        let tgt = bin("RINGSIDE_TGT", "nvmf-target", "ringside-tgt");
        let perf = bin("RINGSIDE_PERF", "bench-harness", "ringside-perf");
        let agent = bin("RINGSIDE_AGENT", "agent", "ringside");
        setup();
        let script = workspace_root()
            .join("bench-harness/lab/guest")
            .join(script);
        let image_opts = image.opts();
        let opts: Vec<&str> = image_opts
            .iter()
            .map(String::as_str)
            .chain(extra.iter().copied())
            .collect();
        let args = [script.as_path(), &tgt, &perf, &agent];
        let run = self::run(name, &opts, &args);
        let qemu_log = std::fs::read_to_string(run.out_dir.join("qemu.log")).unwrap_or_default();
        if run.status == Some(126) && qemu_log.contains("Assertion") {
            println!(
                "QEMU aborted ({}): booting the guest once more",
                qemu_log.lines().last().unwrap_or("")
            );
            return self::run(name, &opts, &args);
        }
        run
    }

    /// Collects every mismatch between a run's facts and what they should be, so one failing
    /// run reports all of them.
    pub struct Checker {
        /// The facts.
        pub r: BTreeMap<String, String>,
        /// What did not match, one line each.
        pub problems: Vec<String>,
    }

    impl Checker {
        /// The fact `key`, or `<missing>`.
        pub fn get(&self, key: &str) -> &str {
            self.r.get(key).map(String::as_str).unwrap_or("<missing>")
        }

        /// `key` is exactly `want`.
        pub fn expect(&mut self, key: &str, want: &str) {
            let got = self.get(key).to_string();
            if got != want {
                self.problems
                    .push(format!("{key}: got {got:?}, want {want:?}"));
            }
        }

        /// `key` starts with `want`.
        pub fn expect_prefix(&mut self, key: &str, want: &str) {
            let got = self.get(key).to_string();
            if !got.starts_with(want) {
                self.problems.push(format!(
                    "{key}: got {got:?}, want it to start with {want:?}"
                ));
            }
        }

        /// `key` contains `want`.
        pub fn expect_contains(&mut self, key: &str, want: &str) {
            let got = self.get(key).to_string();
            if !got.contains(want) {
                self.problems
                    .push(format!("{key}: got {got:?}, want it to contain {want:?}"));
            }
        }

        /// What every NVMe backend's guest script checks the same way: `ringside-perf --verify`
        /// at 512 B, 4 KiB and 128 KiB under `<verify>.<size>`; the trace description of target
        /// `<described>` (backend, device path, node 1, size, and the reactor:qid pairs starting with
        /// `queues`);
        /// through the kernel initiator Write Zeroes and deallocate read back as zeroes; the
        /// controller's Unrecovered Read Error reaching the host unchanged, a neighbour still
        /// read; SIGKILL under load and a restart; no NVMe trouble in the kernel log; all ok.
        pub fn expect_nvme_backend(
            &mut self,
            verify: &str,
            described: &str,
            backend: &str,
            device_path: &str,
            size_bytes: u64,
            queues: &str,
        ) {
            for sz in [512, 4096, 131072] {
                let k = format!("{verify}.{sz}");
                self.expect(&k, "ok");
                self.expect(&format!("{k}.mismatches"), "0");
                self.expect(&format!("{k}.errors"), "0");
                self.expect_positive(&format!("{k}.checked_blocks"));
                self.expect_positive(&format!("{k}.reads"));
                self.expect_positive(&format!("{k}.writes"));
            }
            let d = format!("{described}.describe");
            self.expect(&format!("{d}.backend"), backend);
            self.expect(&format!("{d}.device_path"), device_path);
            self.expect(&format!("{d}.numa_node"), "1");
            self.expect(&format!("{d}.size_bytes"), &size_bytes.to_string());
            self.expect_prefix(&format!("{d}.queues"), queues);
            for key in [
                "kernel.connect",
                "kernel.written",
                "kernel.write_zeroes",
                "kernel.deallocate",
                "status.read_error",
                "status.neighbour",
                "kernel.disconnect",
                "restart.killed",
                "restart.start",
                "restart.verify",
                "dmesg",
                "all",
            ] {
                self.expect(key, "ok");
            }
            self.expect("kernel.write_zeroes.status", "0");
            self.expect("kernel.deallocate.status", "0");
        }

        /// `key` is a count above 0.
        pub fn expect_positive(&mut self, key: &str) {
            if self.get(key).parse::<u64>().unwrap_or(0) == 0 {
                self.problems.push(format!(
                    "{key}: got {:?}, want a count above 0",
                    self.get(key)
                ));
            }
        }
    }
}

/// A Prometheus server of our own and the small HTTP client the tests query it (and
/// `ringside serve`) with.
pub mod prom {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use serde_json::Value;
    // ---------------------------------------------------------------------------------------------
    // Prometheus availability

    pub struct Tools {
        /// `prometheus`.
        pub prometheus: PathBuf,
        /// `promtool`.
        pub promtool: PathBuf,
    }

    pub fn which(name: &str) -> Option<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/bin")])
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    }

    /// The Prometheus binaries, or `None` after printing why the test skips (fails under `CI`).
    pub fn tools(test: &str) -> Option<Tools> {
        match (which("prometheus"), which("promtool")) {
            (Some(prometheus), Some(promtool)) => Some(Tools {
                prometheus,
                promtool,
            }),
            _ => {
                let why =
                    "prometheus/promtool not installed (scripts/setup.sh installs the Debian \
                           package `prometheus`)";
                assert!(
                    std::env::var_os("CI").is_none(),
                    "{test}: {why}, and CI is set"
                );
                eprintln!("skipping {test}: {why}");
                None
            }
        }
    }

    // ---------------------------------------------------------------------------------------------
    // A tiny HTTP client (HTTP/1.0: the server closes after the response, no chunking).

    pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        write!(
            s,
            "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: */*\r\n\r\n"
        )
        .map_err(|e| format!("send to {addr}: {e}"))?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)
            .map_err(|e| format!("read from {addr}: {e}"))?;
        let text = String::from_utf8_lossy(&raw).to_string();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("no HTTP head from {addr}{path}"))?;
        let code = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("bad status line from {addr}{path}: {head}"))?;
        Ok((code, body.to_string()))
    }

    pub fn urlencode(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    /// Polls `f` every 250 ms until it returns `Some`, for at most `secs` seconds.
    pub fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
        let until = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(
                Instant::now() < until,
                "gave up after {secs} s waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("cannot find a free loopback port")
    }

    pub struct Prom {
        child: Child,
        /// Its HTTP address.
        pub addr: SocketAddr,
        dir: tempfile::TempDir,
    }

    impl Prom {
        pub fn start(tools: &Tools, scrape: SocketAddr) -> Prom {
            let dir = tempfile::tempdir().expect("temporary directory for prometheus");
            let config = dir.path().join("prometheus.yml");
            std::fs::write(
                &config,
                format!(
                    "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                     scrape_configs:\n  - job_name: ringside\n    static_configs:\n      \
                     - targets: ['{scrape}']\n"
                ),
            )
            .expect("write prometheus.yml");
            // A free port can be taken between the probe and Prometheus' bind: retry a few times.
            for _ in 0..3 {
                let addr: SocketAddr = format!("127.0.0.1:{}", free_port())
                    .parse()
                    .expect("address");
                let log =
                    std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
                let mut child = Command::new(&tools.prometheus)
                    .arg(format!("--config.file={}", config.display()))
                    .arg(format!(
                        "--storage.tsdb.path={}",
                        dir.path().join("data").display()
                    ))
                    .arg(format!("--web.listen-address={addr}"))
                    .arg("--log.level=warn")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::from(log))
                    .spawn()
                    .unwrap_or_else(|e| panic!("cannot start {}: {e}", tools.prometheus.display()));
                let ready = wait_for("prometheus to start", 60, || {
                    if let Ok(Some(_)) = child.try_wait() {
                        return Some(false);
                    }
                    match http_get(addr, "/-/ready") {
                        Ok((200, _)) => Some(true),
                        _ => None,
                    }
                });
                if ready {
                    return Prom { child, addr, dir };
                }
                let _ = child.wait();
            }
            let log =
                std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
            panic!("prometheus did not start; its log:\n{log}");
        }

        /// `/api/v1/query` at now: `Ok(result array)` or `Err(Prometheus' error)`.
        pub fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
            self.query_path(&format!("/api/v1/query?query={}", urlencode(expr)))
        }

        /// `/api/v1/query` at Unix time `t` (seconds).
        pub fn query_at(&self, expr: &str, t: f64) -> Result<Vec<Value>, String> {
            self.query_path(&format!(
                "/api/v1/query?query={}&time={t:.3}",
                urlencode(expr)
            ))
        }

        fn query_path(&self, path: &str) -> Result<Vec<Value>, String> {
            let (code, body) = http_get(self.addr, path)?;
            let v: Value =
                serde_json::from_str(&body).map_err(|e| format!("HTTP {code}, not JSON ({e})"))?;
            if v["status"] != "success" {
                return Err(format!(
                    "HTTP {code}: {} {}",
                    v["errorType"].as_str().unwrap_or("?"),
                    v["error"].as_str().unwrap_or("?")
                ));
            }
            Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
        }

        /// The single value of a query returning one series (or a scalar), if any.
        pub fn value(&self, expr: &str) -> Option<f64> {
            let r = self
                .query(expr)
                .unwrap_or_else(|e| panic!("query {expr}: {e}"));
            let first = r.first()?;
            first["value"][1].as_str()?.parse().ok()
        }

        /// Prometheus' own log (warnings and errors).
        pub fn log(&self) -> String {
            std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
        }
    }

    impl Drop for Prom {
        fn drop(&mut self) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            if self.child.wait().is_err() {
                let _ = self.child.kill();
            }
        }
    }
}
