//! The processes a scenario drives: `ringside-tgt`, `ringside-perf` and `ringside diagnose`, as
//! real binaries (bench-harness links none of them), optionally inside a network namespace.
//!
//! Every child is owned by a value that kills it when dropped, so a failing scenario or test
//! leaves nothing running.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::ScenarioError;

/// Where the three binaries are.
#[derive(Clone, Debug)]
pub struct Bins {
    /// `ringside-tgt`.
    pub tgt: PathBuf,
    /// `ringside-perf`.
    pub perf: PathBuf,
    /// `ringside` (the agent).
    pub agent: PathBuf,
}

impl Bins {
    /// The binaries in `dir` (a cargo target profile directory such as `target/release`).
    pub fn in_dir(dir: &Path) -> Bins {
        Bins {
            tgt: dir.join("ringside-tgt"),
            perf: dir.join("ringside-perf"),
            agent: dir.join("ringside"),
        }
    }

    /// The binaries beside the running executable (`ringside-perf scenarios` finds its
    /// siblings in the same target directory).
    pub fn beside_self() -> Result<Bins, ScenarioError> {
        let exe = std::env::current_exe().map_err(|source| ScenarioError::Spawn {
            what: "the current executable's path".into(),
            source,
        })?;
        Ok(Bins::in_dir(exe.parent().unwrap_or(Path::new("."))))
    }

    /// The first binary that is missing, for one clear line before anything starts.
    pub fn missing(&self) -> Option<&Path> {
        [&self.tgt, &self.perf, &self.agent]
            .into_iter()
            .find(|p| !p.is_file())
            .map(PathBuf::as_path)
    }
}

/// A command run inside something (`ip netns exec NS`), or directly when empty.
#[derive(Clone, Debug, Default)]
pub struct Prefix(pub Vec<String>);

impl Prefix {
    /// `ip netns exec <ns>`.
    pub fn netns(ns: &str) -> Prefix {
        Prefix(vec!["ip".into(), "netns".into(), "exec".into(), ns.into()])
    }

    /// `bin` behind this prefix.
    pub fn command(&self, bin: &Path) -> Command {
        match self.0.split_first() {
            None => Command::new(bin),
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
        }
    }
}

/// Waits for a starting `ringside-tgt` (stderr piped) to print `listening on tcp ADDR:PORT`
/// (and, when `until_rpc`, its `rpc socket` line), then drains its stderr on a thread so it never
/// blocks on a full pipe. Returns the port and the start-up lines, or the lines it printed
/// before it exited.
pub fn wait_listening(child: &mut Child, until_rpc: bool) -> Result<(u16, String), String> {
    let Some(stderr) = child.stderr.take() else {
        return Err("the target's stderr is not piped".into());
    };
    let mut err = BufReader::new(stderr);
    let mut port = None;
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        match err.read_line(&mut line) {
            Ok(0) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "ringside-tgt exited during start-up; its stderr:\n{seen}"
                ));
            }
            Ok(_) => {}
        }
        seen.push_str(&line);
        if let Some(a) = line.trim().strip_prefix("ringside-tgt: listening on tcp ") {
            port = a.rsplit(':').next().and_then(|p| p.parse().ok());
        }
        if (until_rpc && line.contains("rpc socket")) || (!until_rpc && port.is_some()) {
            break;
        }
    }
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = err.read_to_end(&mut sink);
    });
    match port {
        Some(p) => Ok((p, seen)),
        None => Err(format!("no listening line in:\n{seen}")),
    }
}

/// A directory removed (with what is in it) when dropped.
#[derive(Debug)]
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// A new directory `/var/tmp/<prefix>-<pid>-<n>`, readable by everybody (a scenario may run
    /// the agent as another user).
    pub fn new(prefix: &str) -> Result<ScratchDir, ScenarioError> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).map_err(|source| ScenarioError::Spawn {
            what: format!("directory {}", p.display()),
            source,
        })?;
        let _ = std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755));
        Ok(ScratchDir(p))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `ringside-tgt`, its trace file and RPC socket in a scratch directory of its own (so
/// several may run at once and nothing is left in `/dev/shm`); killed when dropped unless
/// [`TargetProc::stop`]ped.
pub struct TargetProc {
    child: Option<Child>,
    /// The TCP listener's address (as given).
    pub addr: String,
    /// The listener's port (as bound).
    pub port: u16,
    /// `ringside.<name>`.
    pub trace_file: PathBuf,
    /// The JSON-RPC socket.
    pub rpc: PathBuf,
    path: PathBuf,
    _dir: Option<ScratchDir>,
}

impl TargetProc {
    /// Starts `ringside-tgt --name <tag><pid> --listen <ip>:0 <args>` (`args`: the backend,
    /// `--cores`...) behind `prefix`, and waits until it listens and serves RPC.
    pub fn start(
        bins: &Bins,
        tag: &str,
        prefix: &Prefix,
        ip: &str,
        args: &[&str],
    ) -> Result<TargetProc, ScenarioError> {
        let dir = ScratchDir::new("ringside-tgt")?;
        let name = format!("{tag}{}", std::process::id());
        let mut t = TargetProc::start_in(bins, dir.path(), &name, prefix, ip, args)?;
        t._dir = Some(dir);
        Ok(t)
    }

    /// Starts `ringside-tgt --name <name>` with its trace file and RPC socket in `dir`, which
    /// the caller keeps (a later instance of the same name may start there).
    pub fn start_in(
        bins: &Bins,
        dir: &Path,
        name: &str,
        prefix: &Prefix,
        ip: &str,
        args: &[&str],
    ) -> Result<TargetProc, ScenarioError> {
        let rpc = dir.join(format!("rpc.{name}.sock"));
        let mut child = prefix
            .command(&bins.tgt)
            .args(["--name", name, "--listen", &format!("{ip}:0")])
            .args(args)
            .arg("--rpc-socket")
            .arg(&rpc)
            .arg("--trace-dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| ScenarioError::Spawn {
                what: bins.tgt.display().to_string(),
                source,
            })?;
        let (port, seen) =
            wait_listening(&mut child, true).map_err(|stderr| ScenarioError::Failed {
                what: "ringside-tgt".into(),
                stderr,
            })?;
        let trace_file = dir.join(format!("ringside.{name}"));
        if !trace_file.is_file() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ScenarioError::Failed {
                what: "ringside-tgt".into(),
                stderr: format!("no trace file {}:\n{seen}", trace_file.display()),
            });
        }
        Ok(TargetProc {
            child: Some(child),
            addr: ip.to_string(),
            port,
            trace_file,
            rpc,
            path: dir.to_path_buf(),
            _dir: None,
        })
    }

    /// The scratch directory (trace file, RPC socket); it stays until the value is dropped.
    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// The process id (0 once stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL, then waits: the target dies without cleaning up (its trace file stays).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits; returns how it exited.
    pub fn stop(&mut self) -> Result<std::process::ExitStatus, ScenarioError> {
        let Some(mut child) = self.child.take() else {
            return Err(ScenarioError::Failed {
                what: "ringside-tgt".into(),
                stderr: "already stopped".into(),
            });
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        child.wait().map_err(|source| ScenarioError::Spawn {
            what: "wait for ringside-tgt".into(),
            source,
        })
    }
}

impl Drop for TargetProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One `ringside-perf` run: 4 KiB random reads, `--json`.
#[derive(Clone, Debug)]
pub struct Load {
    /// Queue depth per qpair.
    pub depth: u32,
    /// Qpairs per namespace.
    pub qpairs: u32,
    /// Seconds.
    pub secs: f64,
    /// The initiator's core.
    pub core: u32,
}

impl Load {
    /// The command, behind `prefix`, against `addr:port`.
    pub fn command(&self, bins: &Bins, prefix: &Prefix, addr: &str, port: u16) -> Command {
        let mut c = prefix.command(&bins.perf);
        c.arg("-r")
            .arg(format!(
                "trtype:tcp adrfam:ipv4 traddr:{addr} trsvcid:{port}"
            ))
            .args(["--json", "-o", "4096", "-w", "randread"])
            .args(["--cores", &self.core.to_string()])
            .args(["-q", &self.depth.to_string()])
            .args(["--qpairs", &self.qpairs.to_string()])
            .args(["-t", &format!("{}", self.secs)])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Starts it against `target`.
    pub fn spawn(
        &self,
        bins: &Bins,
        prefix: &Prefix,
        target: &TargetProc,
    ) -> Result<Running, ScenarioError> {
        let child = self
            .command(bins, prefix, &target.addr, target.port)
            .spawn()
            .map_err(|source| ScenarioError::Spawn {
                what: bins.perf.display().to_string(),
                source,
            })?;
        Ok(Running { child: Some(child) })
    }

    /// Runs it to the end against `target` and returns its JSON report.
    pub fn run(
        &self,
        bins: &Bins,
        prefix: &Prefix,
        target: &TargetProc,
    ) -> Result<PerfResult, ScenarioError> {
        self.spawn(bins, prefix, target)?.finish()
    }
}

/// A `ringside-perf` that is running; killed when dropped unfinished.
pub struct Running {
    child: Option<Child>,
}

impl Running {
    /// Waits for it and parses its JSON.
    pub fn finish(mut self) -> Result<PerfResult, ScenarioError> {
        let Some(child) = self.child.take() else {
            return Err(ScenarioError::Failed {
                what: "ringside-perf".into(),
                stderr: "already finished".into(),
            });
        };
        let v = json_output("ringside-perf", child)?;
        PerfResult::from_json(v)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What a scenario keeps of a `ringside-perf` report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PerfResult {
    /// I/Os per second.
    pub iops: f64,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 99th percentile latency, µs.
    pub p99_us: f64,
    /// The whole report.
    #[serde(skip)]
    pub raw: Value,
}

impl PerfResult {
    fn from_json(v: Value) -> Result<PerfResult, ScenarioError> {
        let t = &v["total"];
        let num = |x: &Value| x.as_f64();
        match (
            num(&t["iops"]),
            num(&t["latency"]["p50_us"]),
            num(&t["latency"]["p99_us"]),
        ) {
            (Some(iops), Some(p50_us), Some(p99_us)) => Ok(PerfResult {
                iops,
                p50_us,
                p99_us,
                raw: v,
            }),
            _ => Err(ScenarioError::Failed {
                what: "ringside-perf".into(),
                stderr: format!("its JSON lacks total.iops or latency: {v}"),
            }),
        }
    }
}

/// Waits for `child` (stdout and stderr piped), checks it succeeded and parses its stdout as
/// JSON.
pub fn json_output(what: &str, child: Child) -> Result<Value, ScenarioError> {
    let out = child
        .wait_with_output()
        .map_err(|source| ScenarioError::Spawn {
            what: what.into(),
            source,
        })?;
    if !out.status.success() {
        return Err(ScenarioError::Failed {
            what: format!("{what} ({})", out.status),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    serde_json::from_slice(&out.stdout).map_err(|e| ScenarioError::Failed {
        what: what.into(),
        stderr: format!(
            "printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
                .chars()
                .take(400)
                .collect::<String>()
        ),
    })
}

/// `ringside --file TRACE diagnose --duration <secs>s --json <extra>` behind `prefix`; returns
/// the report.
pub fn diagnose(
    bins: &Bins,
    prefix: &Prefix,
    trace: &Path,
    secs: f64,
    extra: &[&str],
) -> Result<Value, ScenarioError> {
    let child = prefix
        .command(&bins.agent)
        .arg("--file")
        .arg(trace)
        .args(["diagnose", "--duration", &format!("{secs}s"), "--json"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ScenarioError::Spawn {
            what: bins.agent.display().to_string(),
            source,
        })?;
    json_output("ringside diagnose", child)
}

/// Runs `cond` every 50 ms until it holds or `limit` passes; whether it held.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
