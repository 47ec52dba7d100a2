//! The analysis pipeline: samples in, windows, findings and recommendations out.
//!
//! Single-threaded and pure: the caller (agent loop, recording replay, test) pushes samples with
//! their own timestamps; nothing here reads a clock. A window closes when a sample arrives at
//! least `window_ns` (less 10 % jitter allowance) after the previous window's end; samples in
//! between are skipped (counters are cumulative, nothing is lost).
//!
//! Persistence (DESIGN §6): detectors propose candidates per window; a finding is raised when its
//! (kind, subject) was proposed in `min_windows` consecutive windows, and it is dropped once it
//! has been absent for `clear_after` windows. Everything ever raised is kept in
//! [`Analyzer::all_findings`] for reports.

use std::collections::{BTreeMap, VecDeque};

use crate::detect::{default_detectors, Context, Detector};
use crate::finding::{Finding, FindingKind, Recommendation, Subject};
use crate::recommend::recommend;
use crate::requests::{self, KernelSpan, RequestBatch};
use crate::sample::{Sample, TargetInfo};
use crate::snapshot::{Snapshot, WindowSummary};
use crate::topology::Topology;
use crate::window::{self, Window};

/// Tunables of the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnalyzerConfig {
    /// Window length (ns). Default 1 s.
    pub window_ns: u64,
    /// Consecutive windows a condition must hold before it is raised. Default 3.
    pub min_windows: u32,
    /// Windows of absence after which a raised finding is dropped. Default 2.
    pub clear_after: u32,
    /// Windows kept for detectors and the recommender. Default 60.
    pub keep_windows: usize,
    /// Summaries kept for sparklines and charts. Default 600.
    pub keep_summaries: usize,
}

impl Default for AnalyzerConfig {
    fn default() -> AnalyzerConfig {
        AnalyzerConfig {
            window_ns: 1_000_000_000,
            min_windows: 3,
            clear_after: 2,
            keep_windows: 60,
            keep_summaries: 600,
        }
    }
}

#[derive(Clone, Debug)]
struct Streak {
    consecutive: u32,
    absent: u32,
    since_ns: u64,
    latest: Finding,
    raised: bool,
}

/// Samples in; windows, findings and recommendations out.
pub struct Analyzer {
    cfg: AnalyzerConfig,
    info: TargetInfo,
    topology: Topology,
    detectors: Vec<Box<dyn Detector>>,
    prev: Option<Sample>,
    windows: VecDeque<Window>,
    summaries: VecDeque<WindowSummary>,
    streaks: BTreeMap<(FindingKind, Subject), Streak>,
    ever: BTreeMap<(FindingKind, Subject), Finding>,
    findings: Vec<Finding>,
    recommendations: Vec<Recommendation>,
    windows_seen: u64,
    /// Records and kernel events of samples that did not close a window yet (they are not
    /// cumulative like counters: the window that closes takes them all).
    pending_batches: Vec<std::sync::Arc<RequestBatch>>,
    pending_spans: Vec<KernelSpan>,
}

impl Analyzer {
    /// A pipeline with the standard detectors.
    pub fn new(info: TargetInfo, topology: Topology, cfg: AnalyzerConfig) -> Analyzer {
        Analyzer::with_detectors(info, topology, cfg, default_detectors())
    }

    /// A pipeline with the given detectors (tests, or a subset).
    pub fn with_detectors(
        info: TargetInfo,
        topology: Topology,
        cfg: AnalyzerConfig,
        detectors: Vec<Box<dyn Detector>>,
    ) -> Analyzer {
        Analyzer {
            cfg,
            info,
            topology,
            detectors,
            prev: None,
            windows: VecDeque::new(),
            summaries: VecDeque::new(),
            streaks: BTreeMap::new(),
            ever: BTreeMap::new(),
            findings: Vec::new(),
            recommendations: Vec::new(),
            windows_seen: 0,
            pending_batches: Vec::new(),
            pending_spans: Vec::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &AnalyzerConfig {
        &self.cfg
    }

    /// What the target is.
    pub fn info(&self) -> &TargetInfo {
        &self.info
    }

    /// The machine.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Pushes a sample; returns the window it closed, if any. A sample older than the previous
    /// one (clock confusion, replay out of order) is ignored.
    pub fn push(&mut self, mut sample: Sample) -> Option<&Window> {
        let Some(prev) = &self.prev else {
            self.prev = Some(sample);
            return None;
        };
        if sample.t_ns < prev.t_ns {
            return None;
        }
        self.pending_batches.extend(sample.requests.take());
        self.pending_spans.append(&mut sample.kernel_events);
        let due = self.cfg.window_ns - self.cfg.window_ns / 10;
        if sample.t_ns - prev.t_ns < due {
            return None;
        }
        let mut w = window::build(&self.info, &self.topology, prev, &sample);
        let batches: Vec<&RequestBatch> = self.pending_batches.iter().map(|b| &**b).collect();
        let spans: Vec<&KernelSpan> = self.pending_spans.iter().collect();
        let lat = &w.total.latency;
        let counters = match (lat.quantile(0.5), lat.quantile(0.99)) {
            (Some(p50), Some(p99)) => Some((p50, p99, lat.count(), lat.sum() as f64)),
            _ => None,
        };
        w.requests = requests::build(&batches, &spans, counters, &self.info);
        self.pending_batches.clear();
        self.pending_spans.clear();
        self.prev = Some(sample);
        self.push_window(w);
        self.windows.back()
    }

    /// Analyses a ready-made window (replays and tests).
    pub fn push_window(&mut self, w: Window) {
        // The kept windows as one slice, without copying them (this runs every tick).
        let history: &[Window] = self.windows.make_contiguous();
        let ctx = Context {
            info: &self.info,
            topology: &self.topology,
            history,
        };
        let mut candidates = Vec::new();
        for d in &mut self.detectors {
            d.observe(&w, &ctx, &mut candidates);
        }
        self.update_streaks(&w, candidates);
        self.windows_seen += 1;
        self.summaries.push_back(WindowSummary::of(&w));
        while self.summaries.len() > self.cfg.keep_summaries {
            self.summaries.pop_front();
        }
        self.windows.push_back(w);
        while self.windows.len() > self.cfg.keep_windows {
            self.windows.pop_front();
        }
        let windows: &[Window] = self.windows.make_contiguous();
        self.recommendations = recommend(&self.info, &self.topology, windows, &self.findings);
    }

    fn update_streaks(&mut self, w: &Window, candidates: Vec<Finding>) {
        let mut seen = std::collections::BTreeSet::new();
        for c in candidates {
            let key = (c.kind, c.subject.clone());
            if !seen.insert(key.clone()) {
                continue; // one candidate per (kind, subject) per window: the first wins
            }
            let s = self.streaks.entry(key).or_insert_with(|| Streak {
                consecutive: 0,
                absent: 0,
                since_ns: w.start_ns,
                latest: c.clone(),
                raised: false,
            });
            if s.absent > 0 && !s.raised {
                s.consecutive = 0;
                s.since_ns = w.start_ns;
            }
            s.consecutive += 1;
            s.absent = 0;
            s.latest = c;
            if s.consecutive >= self.cfg.min_windows {
                s.raised = true;
            }
        }
        let min = self.cfg.min_windows;
        let clear_after = self.cfg.clear_after;
        self.streaks.retain(|key, s| {
            if !seen.contains(key) {
                s.absent += 1;
                if !s.raised {
                    return false;
                }
                if s.absent >= clear_after {
                    return false;
                }
            }
            true
        });
        let mut findings: Vec<Finding> = self
            .streaks
            .values()
            .filter(|s| s.raised)
            .map(|s| {
                let mut f = s.latest.clone();
                f.windows = s.consecutive;
                f.since_ns = s.since_ns;
                f.until_ns = w.end_ns;
                // Margin confidence from the detector, scaled by how long it has held.
                let persistence = 1.0 - 0.5f64.powi(s.consecutive as i32 - min as i32 + 2);
                f.confidence = (f.confidence.clamp(0.0, 1.0) * persistence).clamp(0.0, 1.0);
                f
            })
            .collect();
        findings.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(b.confidence.total_cmp(&a.confidence))
                .then(a.kind.cmp(&b.kind))
                .then(a.subject.cmp(&b.subject))
        });
        for f in &findings {
            let key = (f.kind, f.subject.clone());
            let keep = match self.ever.get(&key) {
                Some(old) => f.windows >= old.windows || f.until_ns > old.until_ns,
                None => true,
            };
            if keep {
                self.ever.insert(key, f.clone());
            }
        }
        self.findings = findings;
    }

    /// Findings raised now.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// Every finding raised since attach (latest state of each), most severe first.
    pub fn all_findings(&self) -> Vec<Finding> {
        let mut v: Vec<Finding> = self.ever.values().cloned().collect();
        v.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(b.windows.cmp(&a.windows))
                .then(a.kind.cmp(&b.kind))
        });
        v
    }

    /// Current recommendations.
    pub fn recommendations(&self) -> &[Recommendation] {
        &self.recommendations
    }

    /// Kept windows, oldest first.
    pub fn windows(&self) -> impl Iterator<Item = &Window> {
        self.windows.iter()
    }

    /// Kept summaries, oldest first.
    pub fn summaries(&self) -> impl Iterator<Item = &WindowSummary> {
        self.summaries.iter()
    }

    /// Windows analysed.
    pub fn windows_seen(&self) -> u64 {
        self.windows_seen
    }

    /// The current state for sinks.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            t_ns: self.windows.back().map_or(0, |w| w.end_ns),
            target: self.info.clone(),
            topology: self.topology.clone(),
            window: self.windows.back().cloned(),
            history: self.summaries.iter().cloned().collect(),
            findings: self.findings.clone(),
            recommendations: self.recommendations.clone(),
            windows_seen: self.windows_seen,
            lifecycle: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::{Evidence, Severity};

    /// Proposes a finding for reactor 0 in every window whose total IOPS is below 100.
    struct LowIops;
    impl Detector for LowIops {
        fn name(&self) -> &'static str {
            "low"
        }
        fn observe(&mut self, w: &Window, _: &Context<'_>, out: &mut Vec<Finding>) {
            if w.total.iops < 100.0 {
                out.push(Finding {
                    kind: FindingKind::InitiatorLimited,
                    severity: Severity::Warning,
                    subject: Subject::Reactor { index: 0 },
                    summary: "low".into(),
                    evidence: vec![Evidence::new("iops", w.total.iops, "IOPS")],
                    windows: 1,
                    since_ns: w.start_ns,
                    until_ns: w.end_ns,
                    confidence: 0.9,
                    cost: None,
                });
            }
        }
    }

    fn window(i: u64, iops: f64) -> Window {
        let mut w = Window {
            start_ns: i * 1_000_000_000,
            end_ns: (i + 1) * 1_000_000_000,
            ..Window::default()
        };
        w.total.iops = iops;
        w
    }

    fn analyzer() -> Analyzer {
        Analyzer::with_detectors(
            TargetInfo::default(),
            Topology::default(),
            AnalyzerConfig::default(),
            vec![Box::new(LowIops)],
        )
    }

    #[test]
    fn one_noisy_window_never_raises_a_finding() {
        let mut a = analyzer();
        for (i, iops) in [1000.0, 10.0, 1000.0, 10.0, 1000.0, 10.0, 1000.0]
            .iter()
            .enumerate()
        {
            a.push_window(window(i as u64, *iops));
            assert!(a.findings().is_empty(), "raised at window {i}");
        }
        assert!(a.all_findings().is_empty());
    }

    #[test]
    fn three_consecutive_windows_raise_and_two_absent_clear() {
        let mut a = analyzer();
        a.push_window(window(0, 10.0));
        a.push_window(window(1, 10.0));
        assert!(a.findings().is_empty());
        a.push_window(window(2, 10.0));
        assert_eq!(a.findings().len(), 1);
        let f = &a.findings()[0];
        assert_eq!(f.windows, 3);
        assert_eq!(f.since_ns, 0);
        assert_eq!(f.until_ns, 3_000_000_000);
        assert!(
            f.confidence > 0.0 && f.confidence <= 0.9,
            "{}",
            f.confidence
        );
        a.push_window(window(3, 1000.0));
        assert_eq!(a.findings().len(), 1, "one absent window keeps it");
        a.push_window(window(4, 1000.0));
        assert!(a.findings().is_empty(), "two absent windows clear it");
        assert_eq!(a.all_findings().len(), 1, "reports keep what was raised");
    }

    #[test]
    fn samples_close_windows_at_the_configured_length() {
        let mut a = analyzer();
        let s = |t: u64| Sample {
            t_ns: t,
            ..Sample::default()
        };
        assert!(a.push(s(0)).is_none());
        assert!(a.push(s(500_000_000)).is_none(), "half a window");
        assert!(a.push(s(1_000_000_000)).is_some());
        assert!(a.push(s(900_000_000)).is_none(), "older sample ignored");
        assert!(a.push(s(1_950_000_000)).is_some(), "within 10% jitter");
        assert_eq!(a.windows_seen(), 2);
        assert_eq!(a.snapshot().history.len(), 2);
    }
}
