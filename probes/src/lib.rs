//! Kernel eBPF probes for a kernel-bypass NVMe-oF target (DESIGN §4).
//!
//! Seven probes (`sched`, `irq`, `syscalls`, `block`, `tcp`, `net`, `numa`), each a CO-RE C
//! program in `bpf/` attached to BTF tracepoints (`tp_btf`), filtered in the kernel by one shared
//! config map and filter sets (target pid, reactor tids, reactor cores, block devices, TCP
//! ports, netdev ifindexes), aggregating in maps and streaming only what must be streamed
//! through one BPF ring buffer. Timestamps are `bpf_ktime_get_ns` (CLOCK_MONOTONIC).
//!
//! ```no_run
//! use probes::{ProbeConfig, ProbeSet};
//! let mut cfg = ProbeConfig::default();
//! cfg.filter.pid = Some(1234);
//! cfg.filter.reactor_tids = vec![1235, 1236];
//! cfg.filter.cores = vec![2, 3];
//! let (mut set, statuses) = ProbeSet::start(&cfg).expect("valid config");
//! for s in &statuses {
//!     println!("{s}");
//! }
//! let events = set.poll(std::time::Duration::from_millis(100)).expect("poll");
//! let totals = set.read_aggregates().expect("read maps");
//! # let _ = (events, totals);
//! ```
//!
//! Threading: a [`ProbeSet`] is owned by one collector thread (see `probeset`).
#![deny(unsafe_code)]

mod abi;
pub mod aggregates;
pub mod config;
pub mod events;
mod probeset;
mod skel;

pub use abi::{decode_event, DecodeError};
pub use aggregates::Aggregates;
pub use config::{BlockDev, Filter, ProbeConfig, ProbeKind, StreamThresholds};
pub use events::{BlockOp, IrqKind, KernelEvent, NetDir, NumaTaskKind, TcpConn, TcpSample};
pub use probeset::{libbpf_messages, Outcome, ProbeSet, ProbeStatus, ProgramStats, RunStatsGuard};

use std::path::PathBuf;

/// Errors of the probes crate. Load and attach failures of single probes are not errors: they
/// are reported as [`ProbeStatus`] lines by [`ProbeSet::start`].
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("invalid probe configuration: {reason}")]
    Config { reason: String },
    #[error("block device {path}: {reason}", path = path.display())]
    Device { path: PathBuf, reason: String },
    #[error("bpf: {op} failed")]
    Bpf {
        op: String,
        #[source]
        source: libbpf_rs::Error,
    },
    #[error(
        "map {map}: {what} size is {actual} bytes but the loader expects {expected} \
         (bpf/ringside_probes.h and src/abi.rs disagree)"
    )]
    Layout {
        map: &'static str,
        what: &'static str,
        actual: u32,
        expected: usize,
    },
    #[error("cannot enable BPF run-time statistics: {reason}")]
    Stats { reason: String },
    #[error("no probe is running")]
    NotRunning,
}
