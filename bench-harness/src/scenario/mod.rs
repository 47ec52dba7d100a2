//! The scenario suite (DESIGN §8): inject one fault at a time into a live `ringside-tgt` under
//! `ringside-perf` load, let `ringside diagnose` watch, and check that the agent reports exactly
//! that fault; for the initiator-depth faults, apply the recommended depth and compare it with a
//! brute-force depth sweep of the same target. `ringside-perf scenarios` runs it and writes one
//! JSON ([`SuiteResult`]) and a table.
//!
//! Threading and ownership: everything runs on the calling thread, one scenario after the other
//! (a busy-polling reactor takes a whole core; two scenarios at once would measure each other).
//! The only other threads are a hog's (its own, pinned) and the stderr drains of the children.
//! Every process, thread and namespace a scenario starts is owned by a value that ends it when
//! dropped, so an error in the middle of a scenario leaves nothing behind.
//!
//! The pieces ([`procs`], [`faults`]) are also what `tests/tests/diagnose_live.rs` uses.

pub mod agent_cost;
pub mod faults;
pub mod procs;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use faults::{is_root, Hog, HogShape, NetnsPair, HOG_NAME};
use procs::{diagnose, Bins, Load, PerfResult, Prefix, TargetProc};

/// Why a scenario could not run.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot start {what}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} failed: {stderr}")]
    Failed { what: String, stderr: String },
    #[error("setup step `{step}` failed: {stderr}")]
    Setup { step: String, stderr: String },
}

/// A fault to inject.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Fault {
    /// The initiator keeps only `depth` commands in flight on a reactor with headroom.
    InitiatorDepth { depth: u32 },
    /// A CPU hog on the reactor's core.
    Hog { hog: HogShape },
    /// The link between initiator and target shaped with tbf, in a network-namespace pair.
    ShapedLink { rate: String },
    /// The target's buffers on another NUMA node than its reactor.
    WrongNode,
    /// Nothing wrong: a healthy initiator at `depth`.
    Healthy { depth: u32 },
}

/// One scenario of the suite.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Short name (`depth-1`, `hog-bursty`...), what `--only` selects; for a scenario given
    /// as a spec (`hog-3-every-250`), the spec itself.
    pub name: String,
    /// What is injected.
    pub fault: Fault,
}

/// The catalogue, in the order the suite runs it.
pub fn catalogue() -> Vec<Scenario> {
    let s = |name: &str, fault| Scenario {
        name: name.into(),
        fault,
    };
    vec![
        s("depth-1", Fault::InitiatorDepth { depth: 1 }),
        s("depth-2", Fault::InitiatorDepth { depth: 2 }),
        s("depth-4", Fault::InitiatorDepth { depth: 4 }),
        s(
            "hog-steady",
            Fault::Hog {
                hog: HogShape::Steady,
            },
        ),
        s(
            "hog-bursty",
            Fault::Hog {
                hog: HogShape::Bursty {
                    burst_ms: 5,
                    period_ms: 100,
                },
            },
        ),
        s(
            "link-tbf",
            Fault::ShapedLink {
                rate: "100mbit".into(),
            },
        ),
        s("numa-wrong-node", Fault::WrongNode),
        s("healthy-32", Fault::Healthy { depth: 32 }),
        s("healthy-64", Fault::Healthy { depth: 64 }),
    ]
}

/// The grammar of a scenario spec, for error lines and `--help`.
pub const SPEC_GRAMMAR: &str =
    "depth-N, hog-steady, hog-BURST-every-PERIOD (ms), tbf-RATE (tc rate: \
     50mbit, 1gbit), healthy-N, numa-wrong-node";

/// A scenario from its spec (see [`SPEC_GRAMMAR`]): the same faults as the catalogue's with other
/// parameters, so runs nobody scripted can be tried (`--only hog-3-every-250,depth-3`).
pub fn parse_spec(spec: &str) -> Result<Scenario, String> {
    let bad = |why: &str| format!("scenario {spec:?}: {why} (forms: {SPEC_GRAMMAR})");
    let num = |t: &str, what: &str| -> Result<u64, String> {
        t.parse::<u64>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| bad(&format!("{what} must be a positive integer, not {t:?}")))
    };
    let depth = |t: &str| -> Result<u32, String> {
        let d = num(t, "the depth")?;
        u32::try_from(d)
            .ok()
            .filter(|&d| d <= 4096)
            .ok_or_else(|| bad("the depth must be at most 4096"))
    };
    let parts: Vec<&str> = spec.split('-').collect();
    let fault = match parts.as_slice() {
        ["depth", d] => Fault::InitiatorDepth { depth: depth(d)? },
        ["healthy", d] => Fault::Healthy { depth: depth(d)? },
        ["hog", "steady"] => Fault::Hog {
            hog: HogShape::Steady,
        },
        ["hog", b, "every", p] => {
            let (burst_ms, period_ms) = (num(b, "the burst")?, num(p, "the period")?);
            if burst_ms >= period_ms {
                return Err(bad("the burst must be shorter than its period"));
            }
            Fault::Hog {
                hog: HogShape::Bursty {
                    burst_ms,
                    period_ms,
                },
            }
        }
        ["tbf", rate] => {
            let digits = rate.trim_end_matches(|c: char| c.is_ascii_alphabetic());
            let unit = &rate[digits.len()..];
            if num(digits, "the rate").is_err() || !["kbit", "mbit", "gbit"].contains(&unit) {
                return Err(bad("the rate is a number and kbit, mbit or gbit"));
            }
            Fault::ShapedLink {
                rate: (*rate).to_string(),
            }
        }
        ["numa", "wrong", "node"] => Fault::WrongNode,
        _ => return Err(bad("unknown form")),
    };
    Ok(Scenario {
        name: spec.to_string(),
        fault,
    })
}

/// A small deterministic generator (xorshift64*), so a `--vary SEED` run can be repeated.
struct Draw(u64);

impl Draw {
    fn new(seed: u64) -> Draw {
        Draw(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        lo + self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % (hi - lo + 1)
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.range(0, from.len() as u64 - 1) as usize]
    }
}

/// Scenarios with parameters nobody here picked (`--vary SEED`): the catalogue's faults with
/// depths, hog shapes, link rates and healthy depths drawn from wide ranges, one of each kind
/// (two starved depths, two hog shapes), in the catalogue's order. The same seed gives the same
/// set.
pub fn varied(seed: u64) -> Vec<Scenario> {
    let mut d = Draw::new(seed);
    let low = d.range(1, 3);
    let mid = d.range(low + 1, 6);
    let burst = d.range(2, 20);
    // A duty cycle of 2-20 %: a hog a storage engineer would call bursty, not steady.
    let period = d.range((burst * 5).max(40), (burst * 50).min(1500));
    let rate = d.pick(&["20mbit", "50mbit", "200mbit", "400mbit"]);
    let healthy = d.pick(&[8u32, 16, 24, 48, 96, 128]);
    [
        format!("depth-{low}"),
        format!("depth-{mid}"),
        "hog-steady".to_string(),
        format!("hog-{burst}-every-{period}"),
        format!("tbf-{rate}"),
        format!("healthy-{healthy}"),
    ]
    .iter()
    .map(|spec| parse_spec(spec).expect("the generator writes valid specs"))
    .collect()
}

impl Fault {
    /// One line for the table and the JSON.
    pub fn describe(&self) -> String {
        match self {
            Fault::InitiatorDepth { depth } => format!("initiator queue depth {depth}"),
            Fault::Hog {
                hog: HogShape::Steady,
            } => "CPU hog on the reactor's core, steady".into(),
            Fault::Hog {
                hog:
                    HogShape::Bursty {
                        burst_ms,
                        period_ms,
                    },
            } => format!("CPU hog on the reactor's core, {burst_ms} ms every {period_ms} ms"),
            Fault::ShapedLink { rate } => format!("link shaped to {rate} (tbf, netns pair)"),
            Fault::WrongNode => "buffers on the wrong NUMA node".into(),
            Fault::Healthy { depth } => format!("none (healthy, depth {depth})"),
        }
    }

    /// The initiator's depth under this fault.
    fn load_depth(&self) -> u32 {
        match self {
            Fault::InitiatorDepth { depth } | Fault::Healthy { depth } => *depth,
            Fault::Hog { .. } | Fault::ShapedLink { .. } | Fault::WrongNode => 32,
        }
    }
}

/// What the agent must report for a fault.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Expected {
    /// The finding's kind.
    pub kind: String,
    /// Fields the finding's subject must have (`{"type": "reactor", "index": 0}`); empty: any.
    pub subject: serde_json::Map<String, Value>,
    /// A word the finding's summary or evidence must contain (the hog's name).
    pub mentions: Option<String>,
    /// Other kinds that may accompany it above info without counting as a wrong finding.
    pub also_allowed: Vec<String>,
}

fn subject(pairs: &[(&str, Value)]) -> serde_json::Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect()
}

/// The expectation of `fault` (None for a healthy run: nothing above info). `netdev` is the
/// shaped link's device.
pub fn expected(fault: &Fault, reactor: u32, netdev: Option<&str>) -> Option<Expected> {
    let reactor_subject = subject(&[("type", "reactor".into()), ("index", reactor.into())]);
    let preempt = vec!["reactor_preemption".to_string(), "tail_latency".to_string()];
    match fault {
        Fault::InitiatorDepth { .. } => Some(Expected {
            kind: "initiator_limited".into(),
            subject: subject(&[("type", "qpair".into())]),
            mentions: None,
            also_allowed: vec![],
        }),
        Fault::Hog {
            hog: HogShape::Steady,
        } => Some(Expected {
            kind: "reactor_preemption".into(),
            subject: reactor_subject,
            mentions: None,
            also_allowed: preempt,
        }),
        Fault::Hog {
            hog: HogShape::Bursty { .. },
        } => Some(Expected {
            kind: "tail_latency".into(),
            subject: serde_json::Map::new(),
            mentions: Some(HOG_NAME.into()),
            also_allowed: preempt,
        }),
        Fault::ShapedLink { .. } => Some(Expected {
            kind: "link_saturation".into(),
            subject: match netdev {
                Some(d) => subject(&[("type", "netdev".into()), ("name", d.into())]),
                None => subject(&[("type", "netdev".into())]),
            },
            mentions: None,
            also_allowed: vec!["tail_latency".into()],
        }),
        Fault::WrongNode => Some(Expected {
            kind: "numa_misplacement".into(),
            subject: reactor_subject,
            mentions: None,
            also_allowed: vec![],
        }),
        Fault::Healthy { .. } => None,
    }
}

/// A finding as the suite keeps it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FindingBrief {
    pub kind: String,
    pub subject: Value,
    pub severity: String,
    pub summary: String,
}

impl FindingBrief {
    /// `reactor 0`, `qpair reactor=0 slot=1`, `netdev rsvt1`.
    fn subject_text(&self) -> String {
        let Value::Object(m) = &self.subject else {
            return self.subject.to_string();
        };
        let kind = m.get("type").and_then(Value::as_str).unwrap_or("?");
        let rest: Vec<(&String, String)> = m
            .iter()
            .filter(|(k, _)| k.as_str() != "type")
            .map(|(k, v)| (k, v.as_str().map_or(v.to_string(), str::to_string)))
            .collect();
        match rest.as_slice() {
            [(_, v)] => format!("{kind} {v}"),
            many => many
                .iter()
                .fold(kind.to_string(), |a, (k, v)| format!("{a} {k}={v}")),
        }
    }
}

/// The findings of a `ringside diagnose --json` report, with the full text of each (summary
/// and evidence) for the `mentions` check.
pub fn findings_of(report: &Value) -> Vec<(FindingBrief, String)> {
    report["findings"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| {
                    (
                        FindingBrief {
                            kind: f["kind"].as_str().unwrap_or("?").into(),
                            subject: f["subject"].clone(),
                            severity: f["severity"].as_str().unwrap_or("?").into(),
                            summary: f["summary"].as_str().unwrap_or("").into(),
                        },
                        f.to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// How a report compares with what was expected.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Verdict {
    /// The expected finding was raised (with the subject and the mention); for a healthy run:
    /// nothing above info.
    pub matched: bool,
    /// The finding that matched.
    pub found: Option<FindingBrief>,
    /// Findings above info that are neither the expected one nor allowed beside it.
    pub unexpected: Vec<FindingBrief>,
}

/// Judges `report` against `expected` (None: a healthy run).
pub fn judge(report: &Value, expected: Option<&Expected>) -> Verdict {
    let all = findings_of(report);
    let above_info = |f: &FindingBrief| f.severity != "info";
    let Some(e) = expected else {
        let unexpected: Vec<FindingBrief> =
            all.into_iter().map(|(f, _)| f).filter(above_info).collect();
        return Verdict {
            matched: unexpected.is_empty(),
            found: None,
            unexpected,
        };
    };
    let fits = |f: &FindingBrief, text: &str| {
        f.kind == e.kind
            && e.subject.iter().all(|(k, v)| f.subject.get(k) == Some(v))
            && e.mentions
                .as_ref()
                .is_none_or(|m| text.contains(m.as_str()))
    };
    let found = all
        .iter()
        .find(|(f, text)| fits(f, text))
        .map(|(f, _)| f.clone());
    let unexpected = all
        .into_iter()
        .map(|(f, _)| f)
        .filter(|f| above_info(f) && f.kind != e.kind && !e.also_allowed.contains(&f.kind))
        .collect();
    Verdict {
        matched: found.is_some(),
        found,
        unexpected,
    }
}

/// A recommendation as the suite keeps it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RecBrief {
    pub setting: String,
    pub current: String,
    pub proposed: String,
    pub applies_to: String,
    pub expected_iops: Option<f64>,
    /// The range the agent gave its expectation, when it gave one.
    pub expected_iops_range: Option<(f64, f64)>,
}

fn recommendations_of(report: &Value) -> Vec<RecBrief> {
    report["recommendations"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| RecBrief {
                    setting: r["setting"].as_str().unwrap_or("?").into(),
                    current: r["current"].as_str().unwrap_or("").into(),
                    proposed: r["proposed"].as_str().unwrap_or("").into(),
                    applies_to: r["applies_to"].as_str().unwrap_or("").into(),
                    expected_iops: r["expected_iops"].as_f64(),
                    expected_iops_range: match (
                        r["expected_iops_range"][0].as_f64(),
                        r["expected_iops_range"][1].as_f64(),
                    ) {
                        (Some(lo), Some(hi)) => Some((lo, hi)),
                        _ => None,
                    },
                })
                .collect()
        })
        .unwrap_or_default()
}

/// For a depth fault: the recommended depth applied, against the brute-force sweep.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DepthCheck {
    /// The depth the agent recommended (None: it recommended none).
    pub recommended: Option<u32>,
    /// The IOPS it expected there.
    pub expected_iops: Option<f64>,
    /// The range it gave that expectation.
    pub expected_iops_range: Option<(f64, f64)>,
    /// Whether the measured IOPS fell inside that range.
    pub measured_in_range: Option<bool>,
    /// What the recommended depth measured when applied.
    pub measured_iops: Option<f64>,
    /// measured / the sweep's best.
    pub ratio_to_best: Option<f64>,
    /// expected / measured - 1.
    pub prediction_error: Option<f64>,
}

/// One point of the brute-force sweep.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SweepPoint {
    pub depth: u32,
    /// Median IOPS over the repeats.
    pub iops: f64,
    /// Lowest and highest IOPS of the repeats (the spread a shared machine adds).
    pub iops_min: f64,
    pub iops_max: f64,
    /// Repeats measured.
    pub repeats: u32,
    /// Medians over the repeats.
    pub p50_us: f64,
    pub p99_us: f64,
}

/// The median of `v` (mean of the middle two for an even count); 0 when empty.
pub fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Folds repeated measurements of one depth into its point (median and spread).
pub fn sweep_point(depth: u32, runs: &[(f64, f64, f64)]) -> SweepPoint {
    let iops: Vec<f64> = runs.iter().map(|r| r.0).collect();
    SweepPoint {
        depth,
        iops: median(&iops),
        iops_min: iops
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min)
            .min(median(&iops)),
        iops_max: iops.iter().copied().fold(0.0, f64::max),
        repeats: runs.len() as u32,
        p50_us: median(&runs.iter().map(|r| r.1).collect::<Vec<_>>()),
        p99_us: median(&runs.iter().map(|r| r.2).collect::<Vec<_>>()),
    }
}

/// The order of one round of an interleaved sweep: every depth once, the round's start rotated
/// so that no depth always runs first or right after the same neighbour (a machine that drifts
/// over the minute then moves every depth alike).
pub fn round_order(depths: &[u32], round: usize) -> Vec<u32> {
    if depths.is_empty() {
        return Vec::new();
    }
    let k = round % depths.len();
    let mut v: Vec<u32> = depths[k..].iter().chain(&depths[..k]).copied().collect();
    if round % 2 == 1 {
        v.reverse();
    }
    v
}

/// What happened to one scenario.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioResult {
    pub name: String,
    /// What was injected, in words.
    pub fault: String,
    /// What was injected, as data.
    pub injected: Fault,
    /// `ran`, `skipped` or `error`.
    pub status: String,
    /// Why it was skipped or failed; notes on how it ran.
    pub notes: Vec<String>,
    pub expected: Option<Expected>,
    /// Every finding of the report.
    pub findings: Vec<FindingBrief>,
    #[serde(flatten)]
    pub verdict: Verdict,
    pub recommendations: Vec<RecBrief>,
    /// The load while the agent watched.
    pub load: Option<PerfResult>,
    pub depth: Option<DepthCheck>,
    pub seconds: f64,
}

impl ScenarioResult {
    fn new(s: &Scenario) -> ScenarioResult {
        ScenarioResult {
            name: s.name.clone(),
            fault: s.fault.describe(),
            injected: s.fault.clone(),
            status: "ran".into(),
            notes: Vec::new(),
            expected: None,
            findings: Vec::new(),
            verdict: Verdict::default(),
            recommendations: Vec::new(),
            load: None,
            depth: None,
            seconds: 0.0,
        }
    }
}

/// How the suite runs.
#[derive(Clone, Debug, Serialize)]
pub struct SuiteConfig {
    #[serde(skip)]
    pub bins: Bins,
    /// Scenario names or specs to run (empty: all, or the varied set).
    pub only: Vec<String>,
    /// Run [`varied`]`(seed)` instead of the catalogue.
    pub vary: Option<u64>,
    /// How long the agent watches each scenario.
    pub diagnose_secs: f64,
    /// Load before the agent starts watching.
    pub warmup_secs: f64,
    /// Seconds per depth of the brute-force sweep (and of applying a recommendation).
    pub sweep_secs: f64,
    /// Depths of the sweep.
    pub sweep_depths: Vec<u32>,
    /// Rounds of the sweep: each round measures every depth (and every recommended one) once,
    /// in a rotated order; a depth's figure is its median over the rounds.
    pub sweep_repeats: u32,
    /// The reactor's core.
    pub target_core: u32,
    /// The initiator's core.
    pub initiator_core: u32,
}

impl SuiteConfig {
    /// The defaults: 8 s watched per scenario, 4 s per sweep depth, depths 1-128, reactor on
    /// core 0, initiator on core 1 (core 0 on a one-core machine).
    pub fn new(bins: Bins) -> SuiteConfig {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        SuiteConfig {
            bins,
            only: Vec::new(),
            vary: None,
            diagnose_secs: 8.0,
            warmup_secs: 1.0,
            sweep_secs: 3.0,
            sweep_depths: vec![1, 2, 4, 8, 16, 32, 64, 128],
            sweep_repeats: 3,
            target_core: 0,
            initiator_core: u32::from(cores > 1),
        }
    }

    /// The scenarios to run: `only`'s, each a catalogue name or a spec ([`parse_spec`]), in
    /// the order given; else the varied set of `vary`; else the catalogue. One clear line for a
    /// name that is neither.
    pub fn selected(&self) -> Result<Vec<Scenario>, String> {
        let all = catalogue();
        if self.only.is_empty() {
            return Ok(self.vary.map_or(all, varied));
        }
        self.only
            .iter()
            .map(|n| match all.iter().find(|s| &s.name == n) {
                Some(s) => Ok(s.clone()),
                None => parse_spec(n).map_err(|e| {
                    let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
                    format!("unknown scenario {n:?} (known: {}); {e}", names.join(", "))
                }),
            })
            .collect()
    }

    /// Upper bound of the suite's wall time in seconds for `scenarios` (for `--help`, and to say
    /// so before starting).
    pub fn estimate_secs(&self, scenarios: &[Scenario]) -> f64 {
        let per = self.warmup_secs + self.diagnose_secs + 3.0;
        let depth = scenarios
            .iter()
            .filter(|s| matches!(s.fault, Fault::InitiatorDepth { .. }))
            .count();
        let sweep = if depth > 0 {
            (self.sweep_depths.len() + depth) as f64
                * (self.sweep_secs + 1.0)
                * f64::from(self.sweep_repeats.max(1))
        } else {
            0.0
        };
        scenarios.len() as f64 * per + sweep
    }
}

/// Where and what the suite ran.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub hostname: String,
    pub kernel: String,
    pub cpus: usize,
    pub numa_nodes: usize,
    pub root: bool,
    pub git_rev: Option<String>,
}

impl Machine {
    fn this() -> Machine {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        let git_rev = std::process::Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        Machine {
            hostname: read("/proc/sys/kernel/hostname"),
            kernel: read("/proc/sys/kernel/osrelease"),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            numa_nodes: numa_nodes(),
            root: is_root(),
            git_rev,
        }
    }
}

fn numa_nodes() -> usize {
    std::fs::read_dir("/sys/devices/system/node")
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    let n = e.file_name();
                    let n = n.to_string_lossy();
                    n.strip_prefix("node")
                        .is_some_and(|r| r.chars().all(|c| c.is_ascii_digit()))
                })
                .count()
        })
        .unwrap_or(1)
        .max(1)
}

/// The suite's figures, one line each in the table's footer.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Fault scenarios that ran / whose fault was reported with the right subject.
    pub faults_ran: usize,
    pub faults_matched: usize,
    /// Healthy runs that ran / with nothing above info.
    pub healthy_ran: usize,
    pub healthy_clean: usize,
    /// Healthy runs with a `tail_latency` finding of any severity (there should be none).
    pub healthy_tail_latency: usize,
    /// Bursty-hog runs whose `tail_latency` finding names the hog.
    pub bursty_hog_named: usize,
    /// Fault runs with a finding above info that is not theirs.
    pub wrong_findings: usize,
    /// Lowest recommended/best IOPS ratio over the depth scenarios.
    pub worst_ratio_to_best: Option<f64>,
    /// Largest |expected / measured - 1| over the depth scenarios.
    pub worst_prediction_error: Option<f64>,
    pub skipped: Vec<String>,
    pub errors: Vec<String>,
}

/// The suite's JSON.
#[derive(Clone, Debug, Serialize)]
pub struct SuiteResult {
    pub machine: Machine,
    pub started_unix: u64,
    pub seconds: f64,
    pub config: SuiteConfig,
    /// The brute-force depth sweep (empty when no depth scenario ran).
    pub sweep: Vec<SweepPoint>,
    pub scenarios: Vec<ScenarioResult>,
    pub summary: Summary,
}

/// Runs the selected scenarios one after the other, printing a line per step on stderr.
pub fn run_suite(cfg: &SuiteConfig) -> Result<SuiteResult, String> {
    let scenarios = cfg.selected()?;
    if let Some(m) = cfg.bins.missing() {
        return Err(format!(
            "{} not found (build the workspace: cargo build --release)",
            m.display()
        ));
    }
    let started = Instant::now();
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let machine = Machine::this();
    eprintln!(
        "scenarios: {} scenario(s), at most ~{:.0} s",
        scenarios.len(),
        cfg.estimate_secs(&scenarios)
    );
    let mut results = Vec::new();
    for s in &scenarios {
        eprintln!("scenarios: {} — {}", s.name, s.fault.describe());
        let t0 = Instant::now();
        let mut r = ScenarioResult::new(s);
        if let Err(e) = run_one(cfg, &machine, s, &mut r) {
            r.status = "error".into();
            r.notes.push(crate::error_chain(&e));
        }
        r.seconds = t0.elapsed().as_secs_f64();
        eprintln!(
            "scenarios: {} {} ({:.0} s)",
            s.name,
            verdict_word(&r),
            r.seconds
        );
        results.push(r);
    }
    let mut sweep = Vec::new();
    if results
        .iter()
        .any(|r| r.status == "ran" && r.depth.is_some())
    {
        match depth_sweep(cfg, &mut results) {
            Ok(s) => sweep = s,
            Err(e) => {
                for r in results.iter_mut().filter(|r| r.depth.is_some()) {
                    r.notes
                        .push(format!("depth sweep failed: {}", crate::error_chain(&e)));
                }
            }
        }
    }
    let summary = summarize(&results);
    Ok(SuiteResult {
        machine,
        started_unix,
        seconds: started.elapsed().as_secs_f64(),
        config: cfg.clone(),
        sweep,
        scenarios: results,
        summary,
    })
}

/// The target's arguments: a 64 MiB RAM namespace, one reactor on `core`.
fn target_args(core: &str) -> [&str; 4] {
    ["--malloc", "64MiB", "--cores", core]
}

fn run_one(
    cfg: &SuiteConfig,
    machine: &Machine,
    s: &Scenario,
    r: &mut ScenarioResult,
) -> Result<(), ScenarioError> {
    let load = Load {
        depth: s.fault.load_depth(),
        qpairs: 1,
        secs: cfg.warmup_secs + cfg.diagnose_secs + 2.0,
        core: cfg.initiator_core,
    };
    if !machine.root {
        r.notes.push(
            "not root: the agent runs without its kernel probes (preemption and tail \
             attribution need them)"
                .into(),
        );
    }
    let mut hog = None;
    let mut pair = None;
    let (prefix_t, prefix_i, ip) = match &s.fault {
        Fault::WrongNode => {
            r.status = "skipped".into();
            r.notes.push(format!(
                "needs buffers on another NUMA node than the reactor: this host has {} node(s); \
                 the lab guest (two nodes) covers it: cargo test -p tests --test lab_numa",
                machine.numa_nodes
            ));
            r.expected = expected(&s.fault, 0, None);
            return Ok(());
        }
        Fault::ShapedLink { rate } => {
            if !machine.root {
                r.status = "skipped".into();
                r.notes.push("needs root (network namespaces, tc)".into());
                return Ok(());
            }
            let p = NetnsPair::create(std::process::id(), rate)?;
            let out = (
                Prefix::netns(&p.target_ns),
                Prefix::netns(&p.initiator_ns),
                p.target_ip.clone(),
            );
            pair = Some(p);
            out
        }
        _ => (
            Prefix::default(),
            Prefix::default(),
            "127.0.0.1".to_string(),
        ),
    };
    r.expected = expected(
        &s.fault,
        0,
        pair.as_ref().map(|p: &NetnsPair| p.target_dev.as_str()),
    );
    let core = cfg.target_core.to_string();
    let target = TargetProc::start(&cfg.bins, "scn", &prefix_t, &ip, &target_args(&core))?;
    if let Fault::Hog { hog: shape } = &s.fault {
        hog = Some(Hog::start(cfg.target_core, *shape)?);
    }
    let running = load.spawn(&cfg.bins, &prefix_i, &target)?;
    std::thread::sleep(Duration::from_secs_f64(cfg.warmup_secs));
    let report = diagnose(
        &cfg.bins,
        &prefix_t,
        &target.trace_file,
        cfg.diagnose_secs,
        &[],
    );
    let perf = running.finish();
    // Whether the fault took: a hog that spins by the wall clock runs only as much as the
    // scheduler lets it on the reactor's core.
    if let Some(h) = &hog {
        match h.usage() {
            Some(u) => {
                let duty = h.duty();
                r.notes.push(format!(
                    "hog ran {:.0} ms in {:.1} s ({:.1} % of the time; its shape asks {:.1} %), \
                     waited {:.0} ms runnable{}",
                    u.ran.as_secs_f64() * 1e3,
                    u.elapsed.as_secs_f64(),
                    u.share() * 100.0,
                    duty * 100.0,
                    u.waited.as_secs_f64() * 1e3,
                    if u.share() < duty / 4.0 {
                        ": the fault barely took effect"
                    } else {
                        ""
                    }
                ));
            }
            None => r.notes.push("hog: its schedstat could not be read".into()),
        }
    }
    drop(hog);
    let report = report?;
    r.load = Some(perf?);
    // What the agent could not use (kernel probes not loaded, ...): a run without them is not
    // the same test.
    if let Some(caps) = report["target"]["capabilities"].as_array() {
        for c in caps.iter().filter(|c| c["available"] == false) {
            r.notes.push(format!(
                "agent: {} unavailable: {}",
                c["name"].as_str().unwrap_or("?"),
                c["note"].as_str().unwrap_or("")
            ));
        }
    }
    r.findings = findings_of(&report).into_iter().map(|(f, _)| f).collect();
    r.verdict = judge(&report, r.expected.as_ref());
    r.recommendations = recommendations_of(&report);
    // Preemption nobody injected means the figures are not this scenario's: say so.
    if !matches!(s.fault, Fault::Hog { .. }) {
        for f in r
            .findings
            .iter()
            .filter(|f| f.kind == "reactor_preemption" && f.severity != "info")
        {
            r.notes
                .push(format!("the machine is not quiet: {}", f.summary));
        }
    }
    if let Fault::InitiatorDepth { .. } = s.fault {
        let rec = r
            .recommendations
            .iter()
            .find(|x| x.setting == "initiator_queue_depth");
        r.depth = Some(DepthCheck {
            recommended: rec.and_then(|x| x.proposed.parse().ok()),
            expected_iops: rec.and_then(|x| x.expected_iops),
            expected_iops_range: rec.and_then(|x| x.expected_iops_range),
            ..DepthCheck::default()
        });
    }
    drop(target);
    drop(pair);
    Ok(())
}

/// The brute-force sweep on a fresh target, then each recommended depth applied on the same
/// target; fills the depth checks.
fn depth_sweep(
    cfg: &SuiteConfig,
    results: &mut [ScenarioResult],
) -> Result<Vec<SweepPoint>, ScenarioError> {
    let prefix = Prefix::default();
    let core = cfg.target_core.to_string();
    let target = TargetProc::start(
        &cfg.bins,
        "sweep",
        &prefix,
        "127.0.0.1",
        &target_args(&core),
    )?;
    // Every depth of the sweep and every recommended one, measured in interleaved rounds on
    // the same target: a shared machine's drift then lands on all of them alike, and the
    // median of each depth's rounds is its figure (the spread is reported beside it).
    let mut depths: Vec<u32> = cfg.sweep_depths.clone();
    for r in results.iter() {
        if let Some(d) = r.depth.as_ref().and_then(|d| d.recommended) {
            if !depths.contains(&d) {
                depths.push(d);
            }
        }
    }
    let mut runs: std::collections::BTreeMap<u32, Vec<(f64, f64, f64)>> = Default::default();
    for round in 0..cfg.sweep_repeats.max(1) as usize {
        for depth in round_order(&depths, round) {
            let p = measure(cfg, &target, depth)?;
            eprintln!(
                "scenarios: sweep round {} depth {depth:>3}: {:>9.0} IOPS, p99 {:.0} µs",
                round + 1,
                p.iops,
                p.p99_us
            );
            runs.entry(depth)
                .or_default()
                .push((p.iops, p.p50_us, p.p99_us));
        }
    }
    let sweep: Vec<SweepPoint> = cfg
        .sweep_depths
        .iter()
        .map(|&d| sweep_point(d, runs.get(&d).map_or(&[][..], Vec::as_slice)))
        .collect();
    let best = sweep.iter().map(|p| p.iops).fold(0.0f64, f64::max);
    for r in results.iter_mut() {
        let Some(d) = r.depth.as_mut() else { continue };
        let Some(depth) = d.recommended else {
            continue;
        };
        let p = sweep_point(depth, runs.get(&depth).map_or(&[][..], Vec::as_slice));
        eprintln!(
            "scenarios: {}: recommended depth {depth} applied: {:.0} IOPS median of {} ({:.0}-{:.0}; expected {})",
            r.name,
            p.iops,
            p.repeats,
            p.iops_min,
            p.iops_max,
            d.expected_iops
                .map_or("nothing".into(), |e| format!("{e:.0}"))
        );
        d.measured_iops = Some(p.iops);
        if best > 0.0 {
            d.ratio_to_best = Some(p.iops / best);
        }
        if p.iops > 0.0 {
            d.prediction_error = d.expected_iops.map(|e| e / p.iops - 1.0);
            d.measured_in_range = d
                .expected_iops_range
                .map(|(lo, hi)| lo <= p.iops && p.iops <= hi);
        }
    }
    Ok(sweep)
}

fn measure(
    cfg: &SuiteConfig,
    target: &TargetProc,
    depth: u32,
) -> Result<PerfResult, ScenarioError> {
    Load {
        depth,
        qpairs: 1,
        secs: cfg.sweep_secs,
        core: cfg.initiator_core,
    }
    .run(&cfg.bins, &Prefix::default(), target)
}

fn summarize(results: &[ScenarioResult]) -> Summary {
    let mut s = Summary::default();
    for r in results {
        match r.status.as_str() {
            "skipped" => s.skipped.push(r.name.clone()),
            "error" => s.errors.push(r.name.clone()),
            _ => {
                if r.expected.is_some() {
                    s.faults_ran += 1;
                    s.faults_matched += usize::from(r.verdict.matched);
                    s.wrong_findings += usize::from(!r.verdict.unexpected.is_empty());
                } else {
                    s.healthy_ran += 1;
                    s.healthy_clean += usize::from(r.verdict.matched);
                    s.healthy_tail_latency +=
                        usize::from(r.findings.iter().any(|f| f.kind == "tail_latency"));
                }
                if matches!(
                    r.injected,
                    Fault::Hog {
                        hog: HogShape::Bursty { .. }
                    }
                ) {
                    s.bursty_hog_named += usize::from(r.verdict.matched);
                }
            }
        }
        if let Some(d) = &r.depth {
            if let Some(x) = d.ratio_to_best {
                s.worst_ratio_to_best = Some(s.worst_ratio_to_best.map_or(x, |w| w.min(x)));
            }
            if let Some(x) = d.prediction_error {
                let x = x.abs();
                s.worst_prediction_error = Some(s.worst_prediction_error.map_or(x, |w| w.max(x)));
            }
        }
    }
    s
}

fn verdict_word(r: &ScenarioResult) -> &'static str {
    match r.status.as_str() {
        "skipped" => "skipped",
        "error" => "ERROR",
        _ if r.verdict.matched && r.verdict.unexpected.is_empty() => "ok",
        _ if r.verdict.matched => "ok+extra",
        _ => "MISSED",
    }
}

impl SuiteResult {
    /// The summary table (plain text, fixed-width).
    pub fn table(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "{:<16} {:<50} {:<26} {:<44} {:<8} notes",
            "scenario", "fault", "expected", "reported", "verdict"
        );
        for r in &self.scenarios {
            let exp = r
                .expected
                .as_ref()
                .map_or("nothing above info".into(), |e| {
                    let subj = e
                        .subject
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("any");
                    format!("{} {subj}", e.kind)
                });
            let got = match (&r.verdict.found, r.expected.is_some()) {
                (Some(f), _) => format!("{} {} ({})", f.kind, f.subject_text(), f.severity),
                (None, false) if r.status == "ran" => {
                    let info = r.findings.iter().filter(|f| f.severity == "info").count();
                    format!("{info} info finding(s)")
                }
                _ => "-".into(),
            };
            let mut notes: Vec<String> = r
                .verdict
                .unexpected
                .iter()
                .map(|f| format!("also {} {} ({})", f.kind, f.subject_text(), f.severity))
                .collect();
            if let Some(d) = &r.depth {
                notes.push(match (d.recommended, d.ratio_to_best, d.prediction_error) {
                    (Some(q), Some(ratio), Some(err)) => format!(
                        "rec QD{q}: {:.2} of best, predicted {:+.0} %",
                        ratio,
                        err * 100.0
                    ),
                    (Some(q), Some(ratio), None) => {
                        format!("rec QD{q}: {ratio:.2} of best, no prediction")
                    }
                    (Some(q), None, _) => format!("rec QD{q}: not measured"),
                    (None, _, _) => "no depth recommended".into(),
                });
            }
            if r.status != "ran" {
                notes.extend(r.notes.iter().cloned());
            }
            let _ = writeln!(
                o,
                "{:<16} {:<50} {:<26} {:<44} {:<8} {}",
                r.name,
                r.fault,
                exp,
                got,
                verdict_word(r),
                notes.join("; ")
            );
        }
        if !self.sweep.is_empty() {
            let pts: Vec<String> = self
                .sweep
                .iter()
                .map(|p| format!("{}:{:.0}K", p.depth, p.iops / 1e3))
                .collect();
            let _ = writeln!(o, "sweep (depth:IOPS): {}", pts.join(" "));
        }
        if self.scenarios.iter().any(|r| {
            r.notes
                .iter()
                .any(|n| n.starts_with("the machine is not quiet"))
        }) {
            let _ = writeln!(
                o,
                "warning: the reactor was preempted in scenarios that injected no hog (see their \
                 notes): the machine is not quiet, and the verdicts and figures are not the agent's"
            );
        }
        let s = &self.summary;
        let _ = writeln!(
            o,
            "faults reported: {}/{}; healthy runs with nothing above info: {}/{} (with a \
             tail_latency: {}); bursty hog named by tail_latency: {}; runs with a wrong finding: \
             {}; worst recommended/best IOPS: {}; worst prediction error: {}",
            s.faults_matched,
            s.faults_ran,
            s.healthy_clean,
            s.healthy_ran,
            s.healthy_tail_latency,
            s.bursty_hog_named,
            s.wrong_findings,
            s.worst_ratio_to_best
                .map_or("-".into(), |x| format!("{x:.2}")),
            s.worst_prediction_error
                .map_or("-".into(), |x| format!("±{:.0} %", x * 100.0)),
        );
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report(findings: Value) -> Value {
        json!({ "findings": findings, "recommendations": [] })
    }

    #[test]
    fn a_noisy_depth_is_its_median_with_the_spread_beside_it() {
        // The issue-12 run's shape: one round of depth 64 fell to 646K on a shared machine.
        let p = sweep_point(
            64,
            &[
                (858e3, 70.0, 150.0),
                (646e3, 90.0, 199.0),
                (870e3, 72.0, 160.0),
            ],
        );
        assert_eq!(p.iops, 858e3);
        assert_eq!((p.iops_min, p.iops_max, p.repeats), (646e3, 870e3, 3));
        assert_eq!(p.p99_us, 160.0);
        assert_eq!(median(&[1.0, 4.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
        let empty = sweep_point(8, &[]);
        assert_eq!((empty.iops, empty.iops_min, empty.repeats), (0.0, 0.0, 0));
    }

    #[test]
    fn interleaved_rounds_rotate_and_cover_every_depth() {
        let d = [1, 2, 4, 8];
        assert_eq!(round_order(&d, 0), vec![1, 2, 4, 8]);
        assert_eq!(round_order(&d, 1), vec![1, 8, 4, 2]);
        assert_eq!(round_order(&d, 2), vec![4, 8, 1, 2]);
        for r in 0..6 {
            let mut o = round_order(&d, r);
            o.sort_unstable();
            assert_eq!(o, d, "round {r} measures every depth once");
        }
        assert!(round_order(&[], 3).is_empty());
    }

    #[test]
    fn a_fault_matches_on_kind_subject_and_mention_and_other_warnings_are_wrong() {
        let e = expected(
            &Fault::Hog {
                hog: HogShape::Bursty {
                    burst_ms: 5,
                    period_ms: 100,
                },
            },
            0,
            None,
        )
        .expect("a fault");
        let named = report(json!([
            {"kind": "tail_latency", "subject": {"type": "qpair", "index": 0}, "severity": "warning",
             "summary": "41 of 90 requests above p99 overlapped a preemption of reactor 0 by ringside-hog"},
            {"kind": "reactor_preemption", "subject": {"type": "reactor", "index": 0}, "severity": "critical", "summary": ""},
            {"kind": "idle_polling_burn", "subject": {"type": "reactor", "index": 0}, "severity": "warning", "summary": ""},
        ]));
        let v = judge(&named, Some(&e));
        assert!(v.matched, "{v:?}");
        assert_eq!(
            v.found.as_ref().map(|f| f.kind.as_str()),
            Some("tail_latency")
        );
        assert_eq!(v.unexpected.len(), 1, "{v:?}");
        assert_eq!(v.unexpected[0].kind, "idle_polling_burn");
        let unnamed = report(json!([
            {"kind": "tail_latency", "subject": {"type": "qpair", "index": 0}, "severity": "warning",
             "summary": "overlapped a preemption by kworker/0:1"},
        ]));
        assert!(!judge(&unnamed, Some(&e)).matched);
    }

    #[test]
    fn a_subject_must_agree_field_by_field() {
        let e = expected(
            &Fault::ShapedLink {
                rate: "1mbit".into(),
            },
            0,
            Some("rsvt1"),
        )
        .expect("a fault");
        let other = report(json!([
            {"kind": "link_saturation", "subject": {"type": "netdev", "name": "lo"}, "severity": "warning", "summary": ""}
        ]));
        assert!(!judge(&other, Some(&e)).matched);
        let right = report(json!([
            {"kind": "link_saturation", "subject": {"type": "netdev", "name": "rsvt1"}, "severity": "warning", "summary": ""}
        ]));
        assert!(judge(&right, Some(&e)).matched);
    }

    #[test]
    fn a_healthy_run_is_clean_with_info_notes_and_not_with_a_warning() {
        let info = report(json!([
            {"kind": "reactor_preemption", "subject": {"type": "reactor", "index": 0}, "severity": "info", "summary": ""}
        ]));
        assert!(judge(&info, None).matched);
        let warn = report(json!([
            {"kind": "reactor_preemption", "subject": {"type": "reactor", "index": 0}, "severity": "warning", "summary": ""}
        ]));
        let v = judge(&warn, None);
        assert!(!v.matched);
        assert_eq!(v.unexpected.len(), 1);
    }

    #[test]
    fn specs_give_the_catalogue_faults_with_other_parameters_and_bad_ones_one_line() {
        let f = |spec: &str| parse_spec(spec).map(|s| s.fault);
        assert_eq!(f("depth-3"), Ok(Fault::InitiatorDepth { depth: 3 }));
        assert_eq!(f("healthy-96"), Ok(Fault::Healthy { depth: 96 }));
        assert_eq!(
            f("hog-3-every-250"),
            Ok(Fault::Hog {
                hog: HogShape::Bursty {
                    burst_ms: 3,
                    period_ms: 250
                }
            })
        );
        assert_eq!(
            f("tbf-50mbit"),
            Ok(Fault::ShapedLink {
                rate: "50mbit".into()
            })
        );
        for bad in [
            "depth-0",
            "depth-",
            "hog-100-every-100",
            "tbf-50",
            "tbf-fastmbit",
            "nonsense",
            "depth-99999",
        ] {
            let e = parse_spec(bad).unwrap_err();
            assert!(e.contains(bad) && e.contains("forms:"), "{e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
        // Every catalogue name that is a spec parses to the same fault.
        for s in catalogue() {
            if let Ok(p) = parse_spec(&s.name) {
                assert_eq!(p.fault, s.fault, "{}", s.name);
            }
        }
    }

    #[test]
    fn varied_sets_are_repeatable_valid_and_differ_between_seeds() {
        let names = |seed| -> Vec<String> { varied(seed).into_iter().map(|s| s.name).collect() };
        assert_eq!(names(7), names(7));
        let sets: std::collections::BTreeSet<Vec<String>> = (0..20).map(names).collect();
        assert!(sets.len() > 10, "seeds give different sets: {sets:?}");
        for seed in 0..200 {
            let v = varied(seed);
            assert_eq!(v.len(), 6);
            for s in &v {
                assert_eq!(parse_spec(&s.name).map(|p| p.fault), Ok(s.fault.clone()));
                if let Fault::Hog {
                    hog:
                        HogShape::Bursty {
                            burst_ms,
                            period_ms,
                        },
                } = s.fault
                {
                    let duty = burst_ms as f64 / period_ms as f64;
                    assert!((0.019..=0.2).contains(&duty), "{}: duty {duty}", s.name);
                }
            }
            let depths: Vec<u32> = v
                .iter()
                .filter_map(|s| match s.fault {
                    Fault::InitiatorDepth { depth } => Some(depth),
                    _ => None,
                })
                .collect();
            assert!(depths[0] < depths[1] && depths[1] <= 6, "{depths:?}");
        }
        let mut cfg = SuiteConfig::new(Bins::in_dir(std::path::Path::new("/nonexistent")));
        cfg.vary = Some(3);
        assert_eq!(
            cfg.selected().expect("varied").len(),
            6,
            "--vary replaces the catalogue"
        );
        cfg.only = vec!["depth-5".into(), "healthy-32".into()];
        let sel = cfg.selected().expect("a spec and a name");
        assert_eq!(sel[0].fault, Fault::InitiatorDepth { depth: 5 });
        assert_eq!(sel[1].name, "healthy-32");
    }

    #[test]
    fn selection_rejects_unknown_names_and_the_summary_counts_what_ran() {
        let mut cfg = SuiteConfig::new(Bins::in_dir(std::path::Path::new("/nonexistent")));
        cfg.only = vec!["depth-x".into()];
        assert!(cfg
            .selected()
            .unwrap_err()
            .contains("unknown scenario \"depth-x\""));
        cfg.only = vec!["depth-1".into(), "healthy-32".into()];
        let sel = cfg.selected().expect("known names");
        assert_eq!(sel.len(), 2);
        assert!(cfg.estimate_secs(&sel) > 2.0 * cfg.diagnose_secs);
        let mut depth = ScenarioResult::new(&sel[0]);
        depth.expected = expected(&sel[0].fault, 0, None);
        depth.verdict.matched = true;
        depth.depth = Some(DepthCheck {
            recommended: Some(32),
            expected_iops: Some(700e3),
            measured_iops: Some(800e3),
            ratio_to_best: Some(0.93),
            prediction_error: Some(-0.125),
            ..DepthCheck::default()
        });
        let mut healthy = ScenarioResult::new(&sel[1]);
        healthy.verdict.matched = false;
        healthy.findings.push(FindingBrief {
            kind: "tail_latency".into(),
            subject: json!({"type": "reactor", "index": 0}),
            severity: "info".into(),
            summary: String::new(),
        });
        let mut skipped = ScenarioResult::new(&catalogue()[6]);
        skipped.status = "skipped".into();
        let s = summarize(&[depth, healthy, skipped]);
        assert_eq!((s.faults_ran, s.faults_matched), (1, 1));
        assert_eq!((s.healthy_ran, s.healthy_clean), (1, 0));
        assert_eq!(s.healthy_tail_latency, 1);
        assert_eq!(s.bursty_hog_named, 0);
        assert_eq!(s.worst_ratio_to_best, Some(0.93));
        assert_eq!(s.worst_prediction_error, Some(0.125));
        assert_eq!(s.skipped, vec!["numa-wrong-node".to_string()]);
    }
}
