//! `ringside-perf`: parses the arguments, runs, prints. Everything else lives in the library.
//!
//! Exit status: 0 success; 1 setup or connection failure; 2 I/O errors or a qpair lost to a
//! transport failure; 3 `--verify` mismatches.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use anyhow::Context;
use bench_harness::cli::PerfArgs;
use bench_harness::perf;
use clap::Parser;

fn main() -> ExitCode {
    let args = PerfArgs::parse();
    let json = args.json;
    let cfg = args.into_config();
    let report = match perf::run(&cfg).context("ringside-perf") {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(1);
        }
    };
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    let mismatches = report.verify.as_ref().map_or(0, |v| v.mismatches);
    if mismatches > 0 {
        eprintln!("error: {mismatches} verify mismatches");
        return ExitCode::from(3);
    }
    if !report.ok() {
        for f in &report.fatal {
            eprintln!("error: {f}");
        }
        if !report.errors.is_empty() {
            eprintln!("error: {} commands failed", report.total.errors);
        }
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}
