//! `ringside`: the agent's command line. Parsing only; everything lives in the library.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() {
    let cli = agent::cli::Cli::parse();
    if let Err(e) = agent::cli::run(cli) {
        // One clear line, the chain of causes joined, never a backtrace.
        eprintln!("ringside: {e:#}");
        std::process::exit(1);
    }
}
