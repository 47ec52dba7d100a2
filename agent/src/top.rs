//! `ringside top`: the live view of a target (crate `tui`), or one snapshot without a terminal.
//!
//! Threading: one thread owns the [`Session`] and ticks it every `--interval`; in the live view
//! that is the `tui` loop's thread (the tick runs inside the snapshot closure it calls), so
//! sampling and drawing never race. A SIGINT sent from outside (raw mode turns a typed Ctrl-C
//! into a key, which `tui` handles itself) sets a flag the loop checks at least every 250 ms,
//! and the terminal is restored before returning.
//!
//! `--once` takes two samples one interval apart, so the snapshot holds exactly one window, and
//! prints it as text (every table, findings, recommendations) or with `--json` as one
//! `agent_core::Snapshot` object. `--json` alone prints one snapshot per line every interval.
//!
//! `--all` follows every instance in the trace directory (`lifecycle::Fleet`, as `serve --all`):
//! the live view adds a line listing every target with its state (`t` switches the one shown),
//! and `--json`/`--once` print arrays of snapshots.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_core::Snapshot;
use anyhow::{Context, Result};
use clap::Args;

use crate::attach::AttachArgs;
use crate::diagnose::AnalysisArgs;
use crate::lifecycle::Fleet;
use crate::serve::parse_interval;
use crate::session::Session;

/// Options of `ringside top`.
#[derive(Args, Clone, Debug)]
pub struct TopArgs {
    /// Sampling interval and window length: `1s`, `500ms`, `2.5s`.
    #[arg(long, default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,
    /// Print one snapshot (one window: two samples one interval apart) and exit; no terminal
    /// needed.
    #[arg(long)]
    pub once: bool,
    /// JSON: with --once one Snapshot object; without it, one Snapshot per line every interval
    /// until Ctrl-C.
    #[arg(long)]
    pub json: bool,
    /// Follow every target instance in the trace directory, appearing and disappearing (as
    /// `serve --all`): the live view lists them all with their states and `t` switches the one
    /// shown; --json and --once print an array of snapshots.
    #[arg(long, conflicts_with_all = ["name", "pid", "file"])]
    pub all: bool,
    /// With --all: most targets followed at once.
    #[arg(long, default_value_t = 16)]
    pub max_targets: usize,
    #[command(flatten)]
    pub analysis: AnalysisArgs,
}

/// Runs `ringside top`.
pub fn run(attach: &AttachArgs, args: &TopArgs) -> Result<()> {
    let opts = crate::diagnose::session_options(args.interval, &args.analysis);
    if args.all {
        let fleet = Fleet::new(&attach.shm_dir, &opts, args.max_targets.max(1));
        return run_all(fleet, args);
    }
    let mut session = crate::diagnose::open_session(attach, &args.analysis, &opts)?;
    let stdout = io::stdout();
    if args.once {
        let snap = first_window(&mut session, args.interval);
        let mut out = io::BufWriter::new(stdout.lock());
        if args.json {
            serde_json::to_writer(&mut out, &snap).context("cannot encode the snapshot")?;
            writeln!(out)?;
        } else {
            out.write_all(tui::text_report(&snap).as_bytes())?;
        }
        out.flush().context("cannot write to stdout")?;
        return Ok(());
    }

    let stop = stop_on_ctrl_c();
    if args.json {
        return json_lines(&stop, args.interval, || {
            session.tick().is_some().then(|| session.snapshot())
        });
    }

    // The header shows every state change; printed lines would scroll the screen.
    crate::lifecycle::set_quiet(true);
    tui::run(
        || {
            session.tick();
            Some(session.snapshot())
        },
        tui::TopOptions {
            interval: args.interval,
            stop: Some(stop),
        },
    )
    .context("ringside top")
}

/// A flag Ctrl-C sets. A handler may already be installed when run() is called twice in one
/// process (tests); typed Ctrl-C still works through the terminal, so that is not worth failing
/// on.
fn stop_on_ctrl_c() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stop);
    let _ = ctrlc::set_handler(move || s.store(true, Ordering::Relaxed));
    stop
}

/// `--json` without `--once`: one line per interval of what `next` gives (nothing on a tick it
/// gives `None`), until `stop`.
fn json_lines<T: serde::Serialize>(
    stop: &AtomicBool,
    interval: Duration,
    mut next: impl FnMut() -> Option<T>,
) -> Result<()> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut at = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if let Some(v) = next() {
            serde_json::to_writer(&mut out, &v).context("cannot encode the snapshot")?;
            writeln!(out)?;
            out.flush().context("cannot write to stdout")?;
        }
        at += interval;
        sleep_until(at, stop);
    }
    Ok(())
}

/// `ringside top --all`: every instance in the directory, followed as by `serve --all`.
fn run_all(mut fleet: Fleet, args: &TopArgs) -> Result<()> {
    let stdout = io::stdout();
    if args.once {
        // Two ticks one interval apart: every target attached at the first has one window.
        fleet.tick();
        std::thread::sleep(args.interval);
        fleet.tick();
        let snaps = fleet.snapshots();
        let mut out = io::BufWriter::new(stdout.lock());
        if args.json {
            serde_json::to_writer(&mut out, &snaps).context("cannot encode the snapshots")?;
            writeln!(out)?;
        } else if snaps.is_empty() {
            writeln!(out, "no target instance in the trace directory")?;
        } else {
            for s in &snaps {
                out.write_all(tui::text_report(s).as_bytes())?;
                writeln!(out)?;
            }
        }
        out.flush().context("cannot write to stdout")?;
        return Ok(());
    }
    let stop = stop_on_ctrl_c();
    if args.json {
        return json_lines(&stop, args.interval, || {
            fleet.tick();
            Some(fleet.snapshots())
        });
    }
    // The fleet line shows every state change; printed lines would scroll the screen.
    crate::lifecycle::set_quiet(true);
    tui::run_fleet(
        || {
            fleet.tick();
            Some(fleet.snapshots())
        },
        tui::TopOptions {
            interval: args.interval,
            stop: Some(stop),
        },
    )
    .context("ringside top --all")
}

/// Samples until the analyzer closes its first window (normally after one interval; a few more
/// tries cover a sleep that woke early or a slow first sample).
fn first_window(session: &mut Session, interval: Duration) -> Snapshot {
    session.tick();
    for _ in 0..4 {
        std::thread::sleep(interval);
        if session.tick().is_some() {
            break;
        }
    }
    session.snapshot()
}

/// Sleeps until `t` in short steps so `stop` is noticed within 100 ms.
fn sleep_until(t: Instant, stop: &AtomicBool) {
    loop {
        let now = Instant::now();
        if now >= t || stop.load(Ordering::Relaxed) {
            return;
        }
        std::thread::sleep((t - now).min(Duration::from_millis(100)));
    }
}
