//! The `ringside` command line: subcommands and their dispatch.

use std::io;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::attach::AttachArgs;
use crate::diagnose::{self, DiagnoseArgs, RecordArgs, ReportArgs};
use crate::rpc::{self, RpcArgs};
use crate::serve::{self, ServeArgs};
use crate::top::{self, TopArgs};
use crate::trace::{self, TraceArgs};
use crate::tune::{self, TuneArgs};

/// ringside: see inside a poll-mode NVMe-oF target.
#[derive(Parser, Debug)]
#[command(name = "ringside", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub attach: AttachArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Dump or follow the target's tracepoint rings (all reactors merged in time order).
    Trace(TraceArgs),
    /// Watch the target for a while and write a diagnosis: findings with evidence,
    /// recommended settings as ready config fragments (Markdown, JSON or HTML).
    Diagnose(DiagnoseArgs),
    /// Record the agent's inputs for a later `ringside report`.
    Record(RecordArgs),
    /// Diagnose offline from a recording.
    Report(ReportArgs),
    /// Serve the live analysis for Prometheus: /metrics, /healthz, /snapshot.json.
    Serve(ServeArgs),
    /// Live view: reactors, qpairs, netdevs, devices, findings (`--once` prints one snapshot).
    Top(TopArgs),
    /// Call the target's JSON-RPC (like SPDK's rpc.py): `ringside rpc nvmf_get_subsystems`,
    /// `ringside rpc nvmf_subsystem_add_host '{"nqn": "...", "host": "..."}'`.
    Rpc(RpcArgs),
    /// Commission a node: a bounded depth x qpairs sweep with ringside-perf finds the knee
    /// (under --p99-max), compared with the passive recommendation; the target's own settings
    /// are applied over RPC, measured, kept or rolled back. About 75 s at most with the defaults.
    Tune(TuneArgs),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match &cli.command {
        Command::Trace(args) => trace::run(&cli.attach, args, &mut out),
        Command::Diagnose(args) => diagnose::diagnose(&cli.attach, args, &mut out),
        Command::Record(args) => diagnose::record(&cli.attach, args, &mut out),
        Command::Report(args) => diagnose::report(args, &mut out),
        Command::Serve(args) => serve::run(&cli.attach, args),
        Command::Top(args) => top::run(&cli.attach, args),
        Command::Rpc(args) => rpc::run(cli.attach.name.as_deref(), args, &mut out),
        Command::Tune(args) => tune::run(&cli.attach, args, &mut out),
    }
}
