//! SPDK's `nvmf_tgt` as a source: its tracepoint file ([`trace`], requests rebuilt in
//! [`profile`]), its JSON-RPC ([`rpc`], or a recording of it: [`replay`]), mapped onto the
//! common model by [`source`]. `ringside diagnose|top|serve|record --spdk-rpc SOCK
//! [--spdk-trace FILE]` analyse an SPDK target with the same pipeline as ringside-tgt.
//!
//! Threading: everything here runs on the agent's sampling thread.

pub mod profile;
pub mod replay;
pub mod rpc;
pub mod source;
pub mod trace;

use std::path::{Path, PathBuf};

use agent_core::sample::Capability;
use anyhow::{Context, Result};

use crate::collect::{Collector, Sources};
use crate::session::{Session, SessionOptions};
use rpc::{RpcClient, RpcTransport};
use source::{SpdkCollector, SpdkOptions};

/// Where the SPDK target is.
#[derive(Clone, Debug, Default)]
pub struct SpdkTarget {
    /// Its RPC socket (`--spdk-rpc`).
    pub rpc: PathBuf,
    /// Its trace file (`--spdk-trace`); default: what `trace_get_info` names.
    pub trace: Option<PathBuf>,
}

/// A live session on an SPDK target: the SPDK source, then (when the target runs on this
/// machine) procfs, perf, netdev, RDMA, block and numa_maps for its pid, and the kernel probes
/// filtered to its reactor threads.
pub fn open_session(target: &SpdkTarget, opts: &SessionOptions) -> Result<Session> {
    let mut client = RpcClient::connect(&target.rpc)
        .with_context(|| format!("cannot use SPDK RPC socket {}", target.rpc.display()))?;
    let pid = client
        .call("framework_get_reactors", None)
        .ok()
        .and_then(|r| r.get("pid").and_then(serde_json::Value::as_u64))
        .unwrap_or(0) as u32;
    let spdk = SpdkCollector::new(
        Box::new(client),
        SpdkOptions {
            trace: target.trace.clone(),
            trace_is_snapshot: false,
        },
    );
    let mut collectors: Vec<Box<dyn Collector>> = vec![Box::new(spdk)];
    let local = pid > 0 && Path::new(&format!("/proc/{pid}")).exists();
    if local {
        collectors.extend(crate::collect::standard::standard(pid));
        if opts.kernel {
            collectors.push(crate::collect::kernel::kernel_collector(
                pid,
                opts.kernel_syscalls,
            ));
        }
    }
    let mut sources = Sources::new(collectors, Box::new(trace_ring::tsc::mono_ns));
    if !local {
        sources.note_capability(Capability {
            name: "procfs".into(),
            available: false,
            note: format!(
                "SPDK pid {pid} is not a process of this machine (or of this pid namespace): no \
                 procfs, perf, netdev or kernel probes; RPC and trace only"
            ),
        });
    }
    Session::open_sources(sources, opts)
}

/// Sources replaying a recorded SPDK target: RPC answers from `rpc.jsonl`, the trace file copied
/// after the run (its requests stand for every window). Time comes from the recording.
pub fn replay_sources(rpc: Box<dyn RpcTransport>, trace: Option<trace::SpdkTrace>) -> Sources {
    let mut c = SpdkCollector::new(
        rpc,
        SpdkOptions {
            trace: None,
            trace_is_snapshot: true,
        },
    );
    if let Some(t) = trace {
        c = c.with_trace(t);
    }
    Sources::new(vec![Box::new(c)], Box::new(|| 0))
}
