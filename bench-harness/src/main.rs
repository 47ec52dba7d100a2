//! `ringside-perf`: parses the arguments, runs, prints. Everything else lives in the library.
//! `ringside-perf scenarios …` runs the fault-injection suite instead (`bench_harness::scenario`);
//! `ringside-perf agent-cost …` measures what the agent takes from the target
//! (`bench_harness::scenario::agent_cost`).
//!
//! Exit status: 0 success; 1 setup or connection failure; 2 I/O errors or a qpair lost to a
//! transport failure; 3 `--verify` mismatches. For `scenarios`: 0 when it ran (whatever it
//! found: the JSON and the table say), 1 when it could not run.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use anyhow::Context;
use bench_harness::cli::{AgentCostArgs, PerfArgs, ScenarioArgs};
use bench_harness::perf;
use bench_harness::scenario::{self, procs::Bins, SuiteConfig};
use clap::Parser;

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == "scenarios") {
        return scenarios(ScenarioArgs::parse_from(std::env::args_os().skip(1)));
    }
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "agent-cost")
    {
        return agent_cost(AgentCostArgs::parse_from(std::env::args_os().skip(1)));
    }
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

fn scenarios(args: ScenarioArgs) -> ExitCode {
    let Some(bins) = bins(args.bin_dir.as_deref()) else {
        return ExitCode::from(1);
    };
    let mut cfg = SuiteConfig::new(bins);
    cfg.only = args.only;
    cfg.vary = args.vary;
    cfg.diagnose_secs = args.diagnose_time.as_secs_f64().max(1.0);
    cfg.sweep_secs = args.sweep_time.as_secs_f64().max(0.5);
    cfg.sweep_depths = args.sweep_depths;
    cfg.sweep_repeats = args.sweep_repeats.max(1);
    if args.list {
        return match cfg.selected() {
            Ok(list) => {
                for s in list {
                    println!("{:<20} {}", s.name, s.fault.describe());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        };
    }
    match scenario::run_suite(&cfg) {
        Ok(r) => finish("scenarios", &r, args.json.as_deref(), r.table()),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn agent_cost(args: AgentCostArgs) -> ExitCode {
    let Some(bins) = bins(args.bin_dir.as_deref()) else {
        return ExitCode::from(1);
    };
    let mut cfg = scenario::agent_cost::AgentCostConfig::new(bins);
    cfg.rounds = args.rounds.max(1);
    cfg.secs = args.time.as_secs_f64().max(1.0);
    cfg.depth = args.depth.max(1);
    cfg.agent_args = args.agent_args;
    match scenario::agent_cost::run(&cfg) {
        Ok(r) => finish("agent-cost", &r, args.json.as_deref(), r.table()),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// The binaries to drive: those in `dir` (`--bin-dir`), else the ones beside this one; `None`
/// (said on stderr) when they cannot be found.
fn bins(dir: Option<&std::path::Path>) -> Option<Bins> {
    match dir {
        Some(d) => Some(Bins::in_dir(d)),
        None => Bins::beside_self()
            .map_err(|e| eprintln!("error: {}", bench_harness::error_chain(&e)))
            .ok(),
    }
}

/// Writes `result` as JSON to `json` (when asked) and prints its `table`.
fn finish<R: serde::Serialize>(
    what: &str,
    result: &R,
    json: Option<&std::path::Path>,
    table: String,
) -> ExitCode {
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(result).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("error: cannot write {}: {e}", path.display());
            return ExitCode::from(1);
        }
        eprintln!("{what}: JSON written to {}", path.display());
    }
    print!("{table}");
    ExitCode::SUCCESS
}
