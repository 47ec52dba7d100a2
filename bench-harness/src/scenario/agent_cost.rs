//! `ringside-perf agent-cost`: what the agent takes from the target it watches (issue 12, Must
//! show 3), both sides: the target's IOPS with `ringside diagnose` attached (as the user runs it:
//! all default probes when root) against no agent, in interleaved A/B rounds on one target, and
//! the agent's own CPU share of a core and peak RSS from its report.
//!
//! Each round runs the same load twice (QD32, 4 KiB random reads, one qpair, the initiator on its
//! core), once without and once with the agent watching the whole run, the order alternating
//! (AB, BA, …) so a machine that drifts over the minute moves both sides alike; a round's ratio
//! is with/without, and the figure is the median ratio over the rounds with its spread. Numbers
//! taken while other work shares the machine mean little: run it on a quiet machine.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::procs::{json_output, Bins, Load, Prefix, TargetProc};
use super::{median, Machine, ScenarioError};

/// What to run.
#[derive(Clone, Debug, Serialize)]
pub struct AgentCostConfig {
    #[serde(skip)]
    pub bins: Bins,
    /// A/B rounds.
    pub rounds: u32,
    /// Seconds per side of a round.
    pub secs: f64,
    /// The initiator's queue depth.
    pub depth: u32,
    /// The reactor's core.
    pub target_core: u32,
    /// The initiator's core.
    pub initiator_core: u32,
    /// Extra arguments for `ringside diagnose` (e.g. `--no-kernel`, `--kernel-per-packet`).
    pub agent_args: Vec<String>,
}

impl AgentCostConfig {
    /// Defaults: 5 rounds of 10 s per side at QD32, reactor on core 0, initiator on core 1.
    pub fn new(bins: Bins) -> AgentCostConfig {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        AgentCostConfig {
            bins,
            rounds: 5,
            secs: 10.0,
            depth: 32,
            target_core: 0,
            initiator_core: u32::from(cores > 1),
            agent_args: Vec::new(),
        }
    }
}

/// One A/B round.
#[derive(Clone, Debug, Serialize)]
pub struct AgentCostRound {
    /// `without-first` or `with-first`.
    pub order: String,
    /// IOPS without the agent.
    pub without_iops: f64,
    /// IOPS with the agent watching.
    pub with_iops: f64,
    /// with / without.
    pub ratio: f64,
    /// The agent's CPU share of one core over its watch (its report's agent cost).
    pub agent_cpu_share: Option<f64>,
    /// The agent's peak RSS, bytes.
    pub agent_rss_bytes: Option<u64>,
    /// What the agent's probes line said (which ran, which were off).
    pub agent_probes: Option<String>,
}

/// The run.
#[derive(Clone, Debug, Serialize)]
pub struct AgentCostResult {
    pub machine: Machine,
    pub config: AgentCostConfig,
    pub seconds: f64,
    pub rounds: Vec<AgentCostRound>,
    /// Median with/without ratio over the rounds, and its lowest and highest.
    pub ratio_median: f64,
    pub ratio_min: f64,
    pub ratio_max: f64,
    /// Median IOPS of each side.
    pub without_iops_median: f64,
    pub with_iops_median: f64,
    /// Median agent CPU share of a core, and the highest peak RSS.
    pub agent_cpu_share_median: Option<f64>,
    pub agent_rss_bytes_max: Option<u64>,
}

impl AgentCostResult {
    /// The summary lines printed after the run.
    pub fn table(&self) -> String {
        let mut o = String::new();
        o.push_str("round  order          without       with   ratio  agent CPU  agent RSS\n");
        for (i, r) in self.rounds.iter().enumerate() {
            o.push_str(&format!(
                "{:>5}  {:<13} {:>9.0} {:>10.0}  {:>6.3}  {:>8}  {:>9}\n",
                i + 1,
                r.order,
                r.without_iops,
                r.with_iops,
                r.ratio,
                r.agent_cpu_share
                    .map_or("-".into(), |c| format!("{:.2} %", c * 100.0)),
                r.agent_rss_bytes
                    .map_or("-".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0)),
            ));
        }
        o.push_str(&format!(
            "target IOPS with the agent / without: median {:.3} (rounds {:.3}-{:.3}); agent {} of a core, peak RSS {}\n",
            self.ratio_median,
            self.ratio_min,
            self.ratio_max,
            self.agent_cpu_share_median
                .map_or("-".into(), |c| format!("{:.2} %", c * 100.0)),
            self.agent_rss_bytes_max
                .map_or("-".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0)),
        ));
        o
    }
}

/// Runs the rounds (one target for all), printing a line per side on stderr.
pub fn run(cfg: &AgentCostConfig) -> Result<AgentCostResult, String> {
    if let Some(m) = cfg.bins.missing() {
        return Err(format!(
            "{} not found (build the workspace: cargo build --release)",
            m.display()
        ));
    }
    let started = Instant::now();
    let machine = Machine::this();
    if !machine.root {
        eprintln!("agent-cost: not root: the agent runs without its kernel probes");
    }
    let core = cfg.target_core.to_string();
    let target = TargetProc::start(
        &cfg.bins,
        "cost",
        &Prefix::default(),
        "127.0.0.1",
        &["--malloc", "64MiB", "--cores", &core],
    )
    .map_err(|e| crate::error_chain(&e))?;
    let load = Load {
        depth: cfg.depth,
        qpairs: 1,
        secs: cfg.secs,
        core: cfg.initiator_core,
    };
    let mut rounds = Vec::new();
    for i in 0..cfg.rounds.max(1) {
        let with_first = i % 2 == 1;
        let (mut without, mut with) = (None, None);
        for side in [with_first, !with_first] {
            if side {
                with =
                    Some(side_with_agent(cfg, &load, &target).map_err(|e| crate::error_chain(&e))?);
            } else {
                let p = load
                    .run(&cfg.bins, &Prefix::default(), &target)
                    .map_err(|e| crate::error_chain(&e))?;
                eprintln!(
                    "agent-cost: round {} without the agent: {:.0} IOPS",
                    i + 1,
                    p.iops
                );
                without = Some(p.iops);
            }
        }
        let (Some(w0), Some((w1, share, rss, probes))) = (without, with) else {
            continue;
        };
        rounds.push(AgentCostRound {
            order: if with_first {
                "with-first"
            } else {
                "without-first"
            }
            .into(),
            without_iops: w0,
            with_iops: w1,
            ratio: if w0 > 0.0 { w1 / w0 } else { 0.0 },
            agent_cpu_share: share,
            agent_rss_bytes: rss,
            agent_probes: probes,
        });
    }
    let ratios: Vec<f64> = rounds.iter().map(|r| r.ratio).collect();
    let shares: Vec<f64> = rounds.iter().filter_map(|r| r.agent_cpu_share).collect();
    Ok(AgentCostResult {
        machine,
        config: cfg.clone(),
        seconds: started.elapsed().as_secs_f64(),
        ratio_median: median(&ratios),
        ratio_min: ratios
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min)
            .min(median(&ratios)),
        ratio_max: ratios.iter().copied().fold(0.0, f64::max),
        without_iops_median: median(&rounds.iter().map(|r| r.without_iops).collect::<Vec<_>>()),
        with_iops_median: median(&rounds.iter().map(|r| r.with_iops).collect::<Vec<_>>()),
        agent_cpu_share_median: (!shares.is_empty()).then(|| median(&shares)),
        agent_rss_bytes_max: rounds.iter().filter_map(|r| r.agent_rss_bytes).max(),
        rounds,
    })
}

type WithAgent = (f64, Option<f64>, Option<u64>, Option<String>);

/// The load with `ringside diagnose` watching it from before it starts to after it ends.
fn side_with_agent(
    cfg: &AgentCostConfig,
    load: &Load,
    target: &TargetProc,
) -> Result<WithAgent, ScenarioError> {
    // The agent attaches (probes loaded, placement made) before the load starts and watches a
    // little past its end, so every second of the load is watched.
    let lead = Duration::from_millis(1500);
    let child = Prefix::default()
        .command(&cfg.bins.agent)
        .arg("--file")
        .arg(&target.trace_file)
        .args([
            "diagnose",
            "--duration",
            &format!("{}s", (cfg.secs + 2.5).ceil()),
            "--json",
        ])
        .args(&cfg.agent_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ScenarioError::Spawn {
            what: cfg.bins.agent.display().to_string(),
            source,
        })?;
    std::thread::sleep(lead);
    let p = load.run(&cfg.bins, &Prefix::default(), target);
    let report = json_output("ringside diagnose", child)?;
    let p = p?;
    let cost = &report["agent_cost"];
    let share = match (cost["cpu_seconds"].as_f64(), cost["wall_seconds"].as_f64()) {
        (Some(c), Some(w)) if w > 0.0 => Some(c / w),
        _ => None,
    };
    let rss = cost["max_rss_bytes"].as_u64();
    let probes = report["target"]["capabilities"]
        .as_array()
        .and_then(|caps| caps.iter().find(|c| c["name"] == "ebpf"))
        .and_then(|c| c["note"].as_str())
        .map(str::to_string);
    eprintln!(
        "agent-cost: with the agent: {:.0} IOPS; agent {} of a core",
        p.iops,
        share.map_or("-".into(), |s| format!("{:.2} %", s * 100.0))
    );
    Ok((p.iops, share, rss, probes))
}
