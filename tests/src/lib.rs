//! End-to-end tests that run the real binaries; see `tests/tests/` and README.md.
//!
//! This library holds what every end-to-end test needs: where the workspace is, and the path of a
//! workspace binary built by the same cargo that runs the test.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Read};
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

/// Waits for a starting `ringside-tgt` (spawned with stderr piped) to print its
/// `listening on tcp ADDR:PORT` line — and, when `until_rpc`, its `rpc socket` line — then keeps
/// draining its stderr on a thread so it never blocks on a full pipe. Returns the port and the
/// start-up lines; panics with them (after killing the child) if the target exits first.
pub fn wait_listening(child: &mut Child, until_rpc: bool) -> (u16, String) {
    let mut err = BufReader::new(child.stderr.take().expect("the target's stderr is piped"));
    let mut port = None;
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        match err.read_line(&mut line) {
            Ok(0) | Err(_) => {
                let _ = child.kill();
                panic!("ringside-tgt exited during start-up; its stderr:\n{seen}");
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
    let port = port.unwrap_or_else(|| panic!("no listening line in:\n{seen}"));
    (port, seen)
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
