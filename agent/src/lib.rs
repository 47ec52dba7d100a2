//! The ringside agent: attaches to a running `ringside-tgt` through its shared-memory trace file
//! and turns what it finds into something a storage engineer can read.
//!
//! So far: `ringside trace` (dump and follow the tracepoint rings, rebuild each request with its
//! per-stage durations). Every subcommand attaches with `--pid`, `--name` or `--file`, and to the
//! only running instance when none is given ([`attach`]).
#![forbid(unsafe_code)]

pub mod attach;
pub mod cli;
pub mod collect;
pub mod diagnose;
pub mod lifecycle;
pub mod placement;
pub mod requests;
pub mod rpc;
pub mod serve;
pub mod session;
pub mod spdk;
pub mod top;
pub mod topology;
pub mod trace;
pub mod tune;

/// The topology picture for an HTML report: the machine with the reactors' CPUs marked.
pub fn render_topology(report: &agent_core::report::Report) -> String {
    use agent_core::topology_svg::{marks_for, render_svg};
    if report.topology.cpus.is_empty() {
        return String::new();
    }
    let memory = report.overall.as_ref().and_then(|w| w.memory.as_ref());
    render_svg(
        &report.topology,
        &marks_for(&report.target, memory, &report.findings),
    )
}
