//! Shared by the SPDK tests: the recordings beside the checkout, read gzip-compressed in place.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};

/// `../shared/spdk-recordings` beside the checkout (CI keeps a copy of shared/ beside the
/// clone), or `None` with the reason printed.
pub fn recordings() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/spdk-recordings");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipped: {} is absent (the shared recordings sit beside the checkout)",
            dir.display()
        );
        None
    }
}

/// A gzip file's contents.
pub fn gunzip(path: &Path) -> Vec<u8> {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(f)
        .read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    out
}

/// The scenario's trace file (`nvmf_trace.pid<PID>.gz`).
pub fn trace_file(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("nvmf_trace.pid") && n.ends_with(".gz"))
        })
        .unwrap_or_else(|| panic!("no nvmf_trace.pid*.gz in {}", dir.display()))
}
