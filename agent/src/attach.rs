//! Finding the target instance a subcommand looks at.
//!
//! Every `ringside` subcommand takes the same [`AttachArgs`]: `--file PATH` opens a trace file
//! directly, `--name NAME` opens `/dev/shm/ringside.NAME`, `--pid PID` the instance written by
//! that process; with none of them, the only live instance is used, and an error lists the
//! candidates when there are none or several. Single-threaded, no state kept.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use trace_ring::{Instance, TraceReader};

/// How to pick the target instance.
#[derive(Args, Clone, Debug, Default)]
pub struct AttachArgs {
    /// Attach to the instance written by this process id.
    #[arg(long, global = true, conflicts_with_all = ["name", "file"])]
    pub pid: Option<u32>,
    /// Attach to the instance with this name (`ringside-tgt --name`).
    #[arg(long, global = true, conflicts_with = "file")]
    pub name: Option<String>,
    /// Read this trace file (a live one, or one left behind).
    #[arg(long, global = true)]
    pub file: Option<PathBuf>,
    /// Directory holding the trace files.
    #[arg(long, global = true, default_value = trace_ring::DEFAULT_DIR, hide = true)]
    pub shm_dir: PathBuf,
}

impl AttachArgs {
    /// Opens the chosen instance.
    pub fn open(&self) -> Result<TraceReader> {
        if let Some(path) = &self.file {
            return TraceReader::open(path)
                .with_context(|| format!("cannot read trace file {}", path.display()));
        }
        if let Some(name) = &self.name {
            return TraceReader::find_in(&self.shm_dir, name)
                .with_context(|| format!("cannot attach to instance {name:?}"));
        }
        if let Some(pid) = self.pid {
            return TraceReader::find_by_pid_in(&self.shm_dir, pid)
                .with_context(|| format!("cannot attach to process {pid}"));
        }
        only_live_instance(&self.shm_dir)
    }
}

/// Lists the instances in `dir`.
pub fn list(dir: &Path) -> Result<Vec<Instance>> {
    TraceReader::list_in(dir).with_context(|| format!("cannot list instances in {}", dir.display()))
}

fn only_live_instance(dir: &Path) -> Result<TraceReader> {
    let all = list(dir)?;
    let live: Vec<&Instance> = all.iter().filter(|i| i.alive).collect();
    match live.as_slice() {
        [one] => TraceReader::open(&one.path)
            .with_context(|| format!("cannot attach to instance {:?}", one.name)),
        [] => {
            if all.is_empty() {
                bail!(
                    "no ringside-tgt instance found in {} (is the target running? use --file for a saved trace)",
                    dir.display()
                )
            }
            let names: Vec<String> = all.iter().map(describe).collect();
            Err(anyhow!(
                "no live ringside-tgt instance in {}; stale ones: {} (use --file or --name to read one)",
                dir.display(),
                names.join(", ")
            ))
        }
        many => {
            let names: Vec<String> = many.iter().map(|i| describe(i)).collect();
            bail!(
                "{} live instances, choose one with --name or --pid: {}",
                many.len(),
                names.join(", ")
            )
        }
    }
}

/// `name (pid 123, live)`.
pub fn describe(i: &Instance) -> String {
    let pid = i
        .pid
        .map_or_else(|| "pid ?".to_string(), |p| format!("pid {p}"));
    let state = if i.alive { "live" } else { "exited" };
    match &i.problem {
        Some(p) => format!("{} ({pid}, {state}, unreadable: {p})", i.name),
        None => format!("{} ({pid}, {state})", i.name),
    }
}
