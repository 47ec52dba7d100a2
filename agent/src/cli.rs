//! The `ringside` command line: subcommands and their dispatch.

use std::io;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::attach::AttachArgs;
use crate::serve::{self, ServeArgs};
use crate::top::{self, TopArgs};
use crate::trace::{self, TraceArgs};

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
    /// Serve the live analysis for Prometheus: /metrics, /healthz, /snapshot.json.
    Serve(ServeArgs),
    /// Live view: reactors, qpairs, netdevs, devices, findings (`--once` prints one snapshot).
    Top(TopArgs),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match &cli.command {
        Command::Trace(args) => trace::run(&cli.attach, args, &mut out),
        Command::Serve(args) => serve::run(&cli.attach, args),
        Command::Top(args) => top::run(&cli.attach, args),
    }
}
