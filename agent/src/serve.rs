//! `ringside serve`: the live session exported for Prometheus (`/metrics`), plus `/healthz` and
//! `/snapshot.json`.
//!
//! Threading: the calling thread owns the [`Session`] and ticks it every `--interval`, handing
//! each snapshot to the shared [`exporter::Exporter`]; the exporter's own thread serves HTTP
//! (see `exporter::http`). Ctrl-C (SIGINT/SIGTERM via `ctrlc`) sets a flag the loop checks at
//! least every 100 ms; the loop then stops the server and returns.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use exporter::{Exporter, ServeOptions};

use crate::attach::AttachArgs;
use crate::diagnose::AnalysisArgs;
use crate::lifecycle::Fleet;
use crate::session::Session;

/// Options of `ringside serve`.
#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    /// Address to serve /metrics, /healthz and /snapshot.json on.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub listen: SocketAddr,
    /// Sampling interval and window length: `1s`, `500ms`, `2.5s`.
    #[arg(long, default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,
    /// Topology and NIC to analyse against (as for `diagnose` and `top`).
    #[command(flatten)]
    pub analysis: AnalysisArgs,
    /// Follow every target instance in the trace directory, appearing and disappearing; every
    /// series gets a `target` label.
    #[arg(long, conflicts_with_all = ["name", "pid", "file"])]
    pub all: bool,
    /// With --all: most targets followed at once (bounds the `target` label).
    #[arg(long, default_value_t = 16)]
    pub max_targets: usize,
    /// Most HTTP connections open at once.
    #[arg(long, default_value_t = 64, hide = true)]
    pub max_connections: usize,
}

/// Parses `1s`, `250ms`, `2.5s` or a bare number of seconds; 10 ms to 1 h.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (use 1s, 500ms, 2.5s)"))?;
    let secs = v * scale;
    if !secs.is_finite() || !(0.01..=3600.0).contains(&secs) {
        return Err(format!("{s:?}: the interval must be between 10ms and 1h"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Runs `ringside serve` until Ctrl-C.
pub fn run(attach: &AttachArgs, args: &ServeArgs) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stop);
    if let Err(e) = ctrlc::set_handler(move || s.store(true, Ordering::Relaxed)) {
        bail!("cannot install the Ctrl-C handler: {e}");
    }
    run_until(attach, args, &stop)
}

/// Runs `ringside serve` until `stop` is set (tests set it themselves).
pub fn run_until(attach: &AttachArgs, args: &ServeArgs, stop: &AtomicBool) -> Result<()> {
    let opts = crate::diagnose::session_options(args.interval, &args.analysis);
    let mut live = if args.all {
        Live::Fleet(Fleet::new(&attach.shm_dir, &opts, args.max_targets.max(1)))
    } else {
        Live::One(Box::new(crate::diagnose::open_session(
            attach,
            &args.analysis,
            &opts,
        )?))
    };
    let shared = Arc::new(Exporter::new());
    live.publish(&shared);
    let server = exporter::serve(
        args.listen,
        Arc::clone(&shared),
        ServeOptions {
            max_connections: args.max_connections,
            ..ServeOptions::default()
        },
    )
    .with_context(|| format!("cannot listen on {}", args.listen))?;
    eprintln!(
        "ringside serve: http://{}/metrics (every {:?})",
        server.local_addr(),
        args.interval
    );

    let tick = Duration::from_millis(100).min(args.interval);
    let mut next = Instant::now() + args.interval;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now < next {
            std::thread::sleep((next - now).min(tick));
            continue;
        }
        // Keep the cadence; after a long stall, restart it rather than tick in a burst.
        next += args.interval;
        if next < now {
            next = now + args.interval;
        }
        live.tick();
        live.publish(&shared);
    }
    server.shutdown();
    Ok(())
}

/// One followed target, or every one in the directory (`--all`).
enum Live {
    One(Box<Session>),
    Fleet(Fleet),
}

impl Live {
    fn tick(&mut self) {
        match self {
            Live::One(s) => {
                s.tick();
            }
            Live::Fleet(f) => f.tick(),
        }
    }

    fn publish(&self, exporter: &Exporter) {
        match self {
            Live::One(s) => exporter.update(&s.snapshot()),
            Live::Fleet(f) => exporter.update_all(&f.snapshots()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_and_bad_ones_are_refused() {
        assert_eq!(parse_interval("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_interval("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_interval("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_interval("3"), Ok(Duration::from_secs(3)));
        for bad in ["", "fast", "0s", "-1s", "1ms", "2h", "NaNs", "infs"] {
            assert!(parse_interval(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
