//! Command-line arguments of `ringside-perf` and their conversion into a `PerfConfig`.
//! Lives in the library so that argument handling is unit-tested; `main.rs` only calls it.

use std::time::Duration;

use clap::Parser;

use crate::config::{PerfConfig, Workload};
use crate::trid::{check_nqn, TransportId};
use crate::units::{parse_core_list, parse_size, CoreId};

fn parse_trid(s: &str) -> Result<TransportId, String> {
    s.parse().map_err(|e: crate::trid::TridError| e.to_string())
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    parse_size(s).map_err(|e| e.to_string())
}

/// A parsed `--cores` list (a newtype so clap takes it as one value).
#[derive(Debug, Clone)]
pub struct CoreList(pub Vec<CoreId>);

fn parse_cores(s: &str) -> Result<CoreList, String> {
    parse_core_list(s).map(CoreList).map_err(|e| e.to_string())
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("invalid number of seconds {s:?}"))?;
    if !(0.0..=1e7).contains(&v) {
        return Err(format!("seconds out of range: {s:?}"));
    }
    Ok(Duration::from_secs_f64(v))
}

fn parse_workload(s: &str) -> Result<Workload, String> {
    s.parse()
        .map_err(|e: crate::config::ConfigError| e.to_string())
}

fn parse_nqn(s: &str) -> Result<String, String> {
    check_nqn(s).map_err(|e| e.to_string())?;
    Ok(s.to_string())
}

fn parse_u64_any(s: &str) -> Result<u64, String> {
    let r = if let Some(h) = s.strip_prefix("0x") {
        u64::from_str_radix(h, 16)
    } else {
        s.parse()
    };
    r.map_err(|_| format!("invalid number {s:?}"))
}

/// A user-space NVMe/TCP initiator and load generator (in the spirit of spdk_nvme_perf).
#[derive(Debug, Parser)]
#[command(name = "ringside-perf", version)]
pub struct PerfArgs {
    /// Transport ID: 'trtype:tcp adrfam:ipv4 traddr:127.0.0.1 trsvcid:4420 subnqn:NQN'.
    /// Without subnqn the discovery subsystem is asked and its first NVM subsystem is used.
    #[arg(short = 'r', long = "transport-id", value_parser = parse_trid)]
    pub trid: TransportId,
    /// Queue depth per qpair.
    #[arg(short = 'q', long = "queue-depth", default_value_t = 32)]
    pub queue_depth: u32,
    /// I/O size in bytes (4096, 4k, 128KiB).
    #[arg(short = 'o', long = "io-size", default_value = "4096", value_parser = parse_bytes)]
    pub io_size: u64,
    /// Workload: read, write, randread, randwrite, rw, randrw.
    #[arg(short = 'w', long = "workload", default_value = "randread", value_parser = parse_workload)]
    pub workload: Workload,
    /// Read percentage for rw/randrw.
    #[arg(short = 'M', long = "rwmixread", default_value_t = 50, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub read_mix: u8,
    /// Run time in seconds (after the warm-up).
    #[arg(short = 't', long = "time", default_value = "10", value_parser = parse_secs)]
    pub time: Duration,
    /// Cores for worker threads (e.g. 1, 0-1, 0,2): one pinned worker per core.
    #[arg(long = "cores", default_value = "0", value_parser = parse_cores)]
    pub cores: CoreList,
    /// I/O qpairs per namespace per core.
    #[arg(long = "qpairs", default_value_t = 1)]
    pub qpairs: u32,
    /// Write a per-LBA pattern over the working set first, then check every read.
    #[arg(long)]
    pub verify: bool,
    /// Seed of the --verify pattern (decimal or 0x-hex).
    #[arg(long = "verify-seed", value_parser = parse_u64_any)]
    pub verify_seed: Option<u64>,
    /// Seed of the random LBA and read/write choices.
    #[arg(long = "seed", default_value = "1", value_parser = parse_u64_any)]
    pub seed: u64,
    /// Print a JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Host NQN (default: derived from a generated host id).
    #[arg(long, value_parser = parse_nqn)]
    pub hostnqn: Option<String>,
    /// Ask for the NVMe/TCP header digest.
    #[arg(long = "header-digest")]
    pub header_digest: bool,
    /// Ask for the NVMe/TCP data digest.
    #[arg(long = "data-digest")]
    pub data_digest: bool,
    /// Warm-up seconds before measuring.
    #[arg(long, default_value = "0", value_parser = parse_secs)]
    pub warmup: Duration,
    /// Stop after this many I/Os in total.
    #[arg(long = "io-limit")]
    pub io_limit: Option<u64>,
    /// Restrict the working set to the first BYTES of each namespace (4k, 64MiB, 1G).
    #[arg(long, value_parser = parse_bytes)]
    pub range: Option<u64>,
    /// A command outstanding longer than this (seconds) fails its qpair.
    #[arg(long = "io-timeout", default_value = "30", value_parser = parse_secs)]
    pub io_timeout: Duration,
    /// Keep-alive timeout to request, seconds (0: none).
    #[arg(long = "keep-alive", default_value = "10", value_parser = parse_secs)]
    pub keep_alive: Duration,
    /// Do not pin worker threads to their cores.
    #[arg(long = "no-pin")]
    pub no_pin: bool,
    /// SO_SNDBUF/SO_RCVBUF for every connection (default: kernel autotuning).
    #[arg(long = "socket-buffer", value_parser = parse_bytes)]
    pub socket_buffer: Option<u64>,
    /// Keep SQ flow control on I/O queues (then every command gets a CapsuleResp).
    #[arg(long = "sq-flow-control")]
    pub sq_flow_control: bool,
    /// Fault injection: send I/Os above the controller's MDTS anyway (the target must refuse
    /// each with INVALID_FIELD).
    #[arg(long = "over-mdts")]
    pub over_mdts: bool,
}

impl PerfArgs {
    pub fn into_config(self) -> PerfConfig {
        let mut c = PerfConfig::new(self.trid);
        c.queue_depth = self.queue_depth;
        c.io_size = self.io_size;
        c.workload = self.workload;
        c.read_mix = self.read_mix;
        c.duration = self.time;
        c.warmup = self.warmup;
        c.cores = self.cores.0;
        c.qpairs_per_ns = self.qpairs;
        c.verify = self.verify;
        if let Some(s) = self.verify_seed {
            c.verify_seed = s;
        }
        c.seed = self.seed;
        c.hostnqn = self.hostnqn.or_else(|| c.trid.hostnqn.clone());
        c.header_digest = self.header_digest;
        c.data_digest = self.data_digest;
        c.io_limit = self.io_limit;
        c.range = self.range;
        c.io_timeout = self.io_timeout;
        c.keep_alive = self.keep_alive;
        c.pin = !self.no_pin;
        c.socket_buffer = self.socket_buffer;
        c.sq_flow_control = self.sq_flow_control;
        c.over_mdts = self.over_mdts;
        c
    }
}

/// `ringside-perf agent-cost`: the target's IOPS with `ringside diagnose` attached against no
/// agent, in interleaved A/B rounds on one target, and the agent's CPU share and RSS (run as
/// root for the default kernel probes; on a quiet machine).
#[derive(Debug, Parser)]
#[command(name = "ringside-perf agent-cost")]
pub struct AgentCostArgs {
    /// Write the result's JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<std::path::PathBuf>,
    /// A/B rounds (the order alternates).
    #[arg(long, default_value = "5")]
    pub rounds: u32,
    /// Seconds per side of a round.
    #[arg(long = "time", default_value = "10", value_parser = parse_secs)]
    pub time: Duration,
    /// The initiator's queue depth.
    #[arg(short = 'q', long = "queue-depth", default_value = "32")]
    pub depth: u32,
    /// Extra arguments for `ringside diagnose` (e.g. `--agent-arg=--no-kernel`).
    #[arg(long = "agent-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub agent_args: Vec<String>,
    /// Directory of ringside-tgt and ringside (default: beside this executable).
    #[arg(long = "bin-dir", value_name = "DIR")]
    pub bin_dir: Option<std::path::PathBuf>,
}

/// `ringside-perf scenarios`: the fault-injection suite (see `scenario`). Runs as root for the
/// network-namespace and kernel-probe scenarios; the whole suite takes about 3 minutes with the
/// defaults (the estimate is printed before it starts).
#[derive(Debug, Parser)]
#[command(name = "ringside-perf scenarios")]
pub struct ScenarioArgs {
    /// Write the suite's JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<std::path::PathBuf>,
    /// Run only these scenarios (comma-separated, in this order): catalogue names (see --list)
    /// or specs with other parameters: depth-N, hog-steady, hog-BURST-every-PERIOD (ms),
    /// tbf-RATE (50mbit), healthy-N, numa-wrong-node.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Instead of the catalogue, six scenarios whose parameters are drawn from wide ranges with
    /// this seed (two starved depths, a steady and a bursty hog, a shaped link, a healthy depth):
    /// runs nobody tuned for. The same seed gives the same set.
    #[arg(long, value_name = "SEED")]
    pub vary: Option<u64>,
    /// List the scenarios and exit.
    #[arg(long)]
    pub list: bool,
    /// Seconds the agent watches each scenario.
    #[arg(long = "diagnose-time", default_value = "8", value_parser = parse_secs)]
    pub diagnose_time: Duration,
    /// Seconds per depth of the brute-force sweep (and of applying a recommended depth).
    #[arg(long = "sweep-time", default_value = "3", value_parser = parse_secs)]
    pub sweep_time: Duration,
    /// Interleaved rounds of the sweep (each depth's figure is its median over them).
    #[arg(long = "sweep-repeats", default_value = "3")]
    pub sweep_repeats: u32,
    /// Depths of the sweep.
    #[arg(
        long = "sweep-depths",
        value_delimiter = ',',
        default_value = "1,2,4,8,16,32,64,128"
    )]
    pub sweep_depths: Vec<u32>,
    /// Directory of ringside-tgt and ringside (default: beside this executable).
    #[arg(long = "bin-dir", value_name = "DIR")]
    pub bin_dir: Option<std::path::PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spdk_like_command_line_parses() {
        let a = PerfArgs::try_parse_from([
            "ringside-perf",
            "-r",
            "trtype:tcp adrfam:ipv4 traddr:127.0.0.1 trsvcid:4420 subnqn:nqn.2016-06.io.spdk:cnode1",
            "-q",
            "128",
            "-o",
            "128KiB",
            "-w",
            "randrw",
            "-M",
            "70",
            "-t",
            "5",
            "--cores",
            "0-1",
            "--verify",
            "--range",
            "64MiB",
        ])
        .expect("valid args");
        let c = a.into_config();
        assert_eq!(c.queue_depth, 128);
        assert_eq!(c.io_size, 128 * 1024);
        assert_eq!(c.workload, Workload::RandRw);
        assert_eq!(c.read_mix, 70);
        assert_eq!(c.duration, Duration::from_secs(5));
        assert_eq!(c.cores, vec![CoreId(0), CoreId(1)]);
        assert!(c.verify);
        assert_eq!(c.range, Some(64 << 20));
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn bad_trid_and_size_are_reported_by_clap() {
        let e = PerfArgs::try_parse_from(["p", "-r", "trtype:tcp"]).expect_err("missing traddr");
        assert!(e.to_string().contains("lacks \"traddr\""), "{e}");
        let e = PerfArgs::try_parse_from(["p", "-r", "trtype:tcp traddr:1.2.3.4", "-o", "4q"])
            .expect_err("bad size");
        assert!(e.to_string().contains("unknown size suffix"), "{e}");
        let e = PerfArgs::try_parse_from(["p", "-r", "trtype:tcp traddr:1.2.3.4", "-M", "101"])
            .expect_err("bad mix");
        assert!(e.to_string().contains("101"), "{e}");
    }
}
