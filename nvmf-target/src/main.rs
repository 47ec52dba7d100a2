//! `ringside-tgt`: parses flags, starts the target, waits for SIGINT/SIGTERM or the `shutdown`
//! RPC, and stops cleanly.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use nvmf_target::cli::Args;
use nvmf_target::Target;

fn main() {
    if let Err(e) = run() {
        eprintln!("ringside-tgt: error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut config = args.to_config().context("building the configuration")?;
    if args.check {
        config
            .validate(Some(&nvmf_target::config::online_cores()))
            .context("checking the configuration")?;
        print!(
            "{}",
            toml::to_string_pretty(&config).context("printing the configuration")?
        );
        return Ok(());
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let target = Target::start(config).context("starting the target")?;
    for a in target.listen_addrs() {
        eprintln!("ringside-tgt: listening on tcp {a}");
    }
    for a in target.rdma_listen_addrs() {
        eprintln!("ringside-tgt: listening on rdma {a}");
    }
    eprintln!("ringside-tgt: rpc socket {}", target.rpc_socket().display());
    while !stop.load(Ordering::Relaxed) && !target.is_shutting_down() {
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("ringside-tgt: shutting down");
    target.shutdown();
    Ok(())
}
