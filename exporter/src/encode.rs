//! From [`Snapshot`]s to the Prometheus text exposition.
//!
//! Two parts: an [`Accumulator`] that folds each new window into monotonic totals (counters and
//! cumulative histograms: Prometheus wants totals, the agent hands out per-window figures), and
//! [`Families`], the only way to emit a sample: it takes a [`MetricDef`] from the catalog and
//! exactly its labels, drops non-finite values (no NaN ever reaches a scraper), and encodes with
//! the `prometheus` crate's `TextEncoder`.
//!
//! Counters derived from a window's rates are `round(rate × window length)`: the window computed
//! the rate from an integer delta over the same length, so rounding recovers that delta exactly.
//!
//! Owned by one thread at a time (the exporter's mutex); no I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use agent_core::finding::FindingKind;
use agent_core::window::Window;
use agent_core::{Hist, Snapshot};
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};

use crate::catalog::{self, Kind, MetricDef, LATENCY_BUCKETS_NS, LATENCY_BUCKETS_SECONDS};

/// Caps on label sets that come from the outside world, so a misbehaving source cannot grow the
/// exposition without bound.
pub const MAX_QPAIRS: usize = 4096;
/// Most distinct `host` label values (hosts served by the target's qpairs); qpairs of further
/// hosts are labelled [`OTHER_HOST`], so a sum by host adds them up there.
pub const MAX_HOSTS: usize = 16;
/// The `host` value of the hosts beyond [`MAX_HOSTS`].
pub const OTHER_HOST: &str = "other";
/// Most netdevs or devices tracked.
pub const MAX_INTERFACES: usize = 64;
/// Most stage histograms per reactor.
pub const MAX_STAGES: usize = 64;
/// Most (kind, subject) finding series; cleared ones are forgotten first.
pub const MAX_FINDING_SUBJECTS: usize = 256;
/// Most capabilities or recommendation settings.
pub const MAX_NAMES: usize = 64;

/// A latency histogram at the catalog's fixed bounds: per-bound counts (not cumulative), the
/// overflow lives only in `count`; `sum_ns` and `count` are exact.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PromHist {
    /// Values attributed to each bound of [`LATENCY_BUCKETS_NS`] (not cumulative).
    pub per_bound: [u64; LATENCY_BUCKETS_NS.len()],
    /// All values, including those above the last bound.
    pub count: u64,
    /// Sum of all values (ns).
    pub sum_ns: u128,
}

impl PromHist {
    /// Adds an agent histogram. A ring bucket counts at the first bound that is at or above its
    /// highest value, so `le` never under-states a latency (a ring bucket straddling a bound
    /// goes to the next bound: an error of at most one ring bucket, 6.25 %).
    pub fn add(&mut self, h: &Hist) {
        for (_, high, count) in h.buckets() {
            if let Some(i) = LATENCY_BUCKETS_NS.iter().position(|&b| high <= b) {
                self.per_bound[i] = self.per_bound[i].saturating_add(count);
            }
        }
        self.count = self.count.saturating_add(h.count());
        self.sum_ns = self.sum_ns.saturating_add(u128::from(h.sum()));
    }

    /// Cumulative counts per bound (what `le` means).
    pub fn cumulative(&self) -> [u64; LATENCY_BUCKETS_NS.len()] {
        let mut out = [0u64; LATENCY_BUCKETS_NS.len()];
        let mut acc = 0u64;
        for (o, c) in out.iter_mut().zip(self.per_bound) {
            acc = acc.saturating_add(c);
            *o = acc;
        }
        out
    }
}

#[derive(Clone, Debug, Default)]
struct ReactorTotals {
    core: u32,
    reads: u64,
    writes: u64,
    other: u64,
    bytes_read: u64,
    bytes_written: u64,
    polls: u64,
    backend_submissions: u64,
    buffer_waits: u64,
    errors: u64,
    connects_refused: u64,
    protocol_closes: u64,
    involuntary_switches: Option<u64>,
    migrations: Option<u64>,
    preemptions: Option<u64>,
    syscalls: Option<u64>,
    latency: PromHist,
    stages: BTreeMap<agent_core::sample::Stage, PromHist>,
    /// RDMA work, once the reactor did any.
    rdma: Option<RdmaTotals>,
}

#[derive(Clone, Debug, Default)]
struct RdmaTotals {
    cq_polls: u64,
    cq_polls_nonempty: u64,
    completions: u64,
    doorbells: u64,
    send_wrs: u64,
    recv_wrs: u64,
    srq_empties: u64,
}

#[derive(Clone, Debug, Default)]
struct PortTotals {
    rx_bytes: Option<u64>,
    tx_bytes: Option<u64>,
    rx_packets: Option<u64>,
    tx_packets: Option<u64>,
    discards: Option<u64>,
    wait: Option<u64>,
    retransmits: u64,
    hw: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Default)]
struct QpairTotals {
    completions: u64,
    bytes: u64,
    errors: u64,
    latency: PromHist,
}

#[derive(Clone, Debug, Default)]
struct NetdevTotals {
    rx_bytes: u64,
    tx_bytes: u64,
    rx_packets: u64,
    tx_packets: u64,
    drops: u64,
    qdisc_drops: u64,
    qdisc_overlimits: u64,
}

#[derive(Clone, Debug, Default)]
struct DeviceTotals {
    completions: u64,
    bytes: u64,
}

#[derive(Clone, Debug)]
struct FindingState {
    severity: &'static str,
    active: bool,
    confidence: f64,
    /// Update sequence number when it was last active (eviction order).
    last_active: u64,
}

/// Running totals over every window seen, plus the state of findings.
#[derive(Debug, Default)]
pub struct Accumulator {
    last_window_end: Option<u64>,
    windows_folded: u64,
    updates: u64,
    reactors: BTreeMap<u32, ReactorTotals>,
    /// By reactor, slot and `host` label (a slot rebound to another host is a new series).
    qpairs: BTreeMap<(u32, u16, String), QpairTotals>,
    /// The hosts given a label of their own (at most [`MAX_HOSTS`], first come).
    hosts: BTreeSet<String>,
    netdevs: BTreeMap<String, NetdevTotals>,
    devices: BTreeMap<String, DeviceTotals>,
    rdma_ports: BTreeMap<(String, u32), PortTotals>,
    tcp_retransmits: Option<u64>,
    findings: BTreeMap<(FindingKind, String), FindingState>,
    raised: BTreeMap<FindingKind, u64>,
    settings_seen: BTreeSet<String>,
}

/// `round(rate × secs)` as an integer delta; 0 for anything non-finite or negative.
fn delta(rate: f64, secs: f64) -> u64 {
    let v = (rate * secs).round();
    if v.is_finite() && v > 0.0 {
        v as u64
    } else {
        0
    }
}

fn add(total: &mut u64, d: u64) {
    *total = total.saturating_add(d);
}

fn add_opt(total: &mut Option<u64>, d: Option<u64>) {
    if let Some(d) = d {
        *total = Some(total.unwrap_or(0).saturating_add(d));
    }
}

impl Accumulator {
    /// An empty accumulator.
    pub fn new() -> Accumulator {
        Accumulator::default()
    }

    /// Windows folded into the totals so far.
    pub fn windows_folded(&self) -> u64 {
        self.windows_folded
    }

    /// Folds a snapshot: its window into the totals (once: a snapshot repeating the previous
    /// window adds nothing), its findings into the finding states.
    pub fn fold(&mut self, snap: &Snapshot) {
        self.updates += 1;
        for r in &snap.target.reactors {
            self.reactors.entry(r.index).or_default().core = r.core;
        }
        if let Some(w) = &snap.window {
            if self.last_window_end != Some(w.end_ns) {
                self.last_window_end = Some(w.end_ns);
                self.windows_folded += 1;
                self.fold_window(w);
            }
        }
        self.fold_findings(snap);
        for r in &snap.recommendations {
            if self.settings_seen.len() < MAX_NAMES {
                self.settings_seen.insert(r.setting.name().to_string());
            }
        }
    }

    /// The `host` label of a qpair: its host while fewer than [`MAX_HOSTS`] hosts have one,
    /// [`OTHER_HOST`] beyond; empty (no label) when the source does not say.
    fn host_label(&mut self, host: Option<&str>) -> String {
        let Some(h) = host.filter(|h| !h.is_empty()) else {
            return String::new();
        };
        if self.hosts.contains(h) {
            return h.to_string();
        }
        if self.hosts.len() < MAX_HOSTS && h != OTHER_HOST {
            self.hosts.insert(h.to_string());
            return h.to_string();
        }
        OTHER_HOST.to_string()
    }

    /// The label [`Accumulator::host_label`] gave `host` (without adding it).
    fn host_label_of<'a>(&self, host: Option<&'a str>) -> &'a str {
        match host.filter(|h| !h.is_empty()) {
            None => "",
            Some(h) if self.hosts.contains(h) => h,
            Some(_) => OTHER_HOST,
        }
    }

    fn fold_window(&mut self, w: &Window) {
        let secs = w.seconds();
        for r in &w.reactors {
            let t = self.reactors.entry(r.index).or_default();
            t.core = r.core;
            let reads = delta(r.read_iops, secs);
            let writes = delta(r.write_iops, secs);
            add(&mut t.reads, reads);
            add(&mut t.writes, writes);
            add(
                &mut t.other,
                r.completions.saturating_sub(reads.saturating_add(writes)),
            );
            add(&mut t.bytes_read, delta(r.read_bytes_per_s, secs));
            add(&mut t.bytes_written, delta(r.write_bytes_per_s, secs));
            add(&mut t.polls, delta(r.polls_per_s, secs));
            add(
                &mut t.backend_submissions,
                delta(r.backend_submits_per_s, secs),
            );
            add(&mut t.buffer_waits, r.buffer_waits);
            add(&mut t.errors, r.errors);
            add(&mut t.connects_refused, r.connects_refused);
            add(&mut t.protocol_closes, r.protocol_closes);
            add_opt(
                &mut t.involuntary_switches,
                r.involuntary_switches_per_s.map(|x| delta(x, secs)),
            );
            add_opt(&mut t.migrations, r.migrations);
            add_opt(&mut t.preemptions, r.preemptions);
            add_opt(&mut t.syscalls, r.syscalls_per_s.map(|x| delta(x, secs)));
            t.latency.add(&r.latency);
            for (name, h) in &r.stages {
                if t.stages.len() < MAX_STAGES || t.stages.contains_key(name) {
                    t.stages.entry(*name).or_default().add(h);
                }
            }
            if let Some(x) = &r.rdma {
                let rt = t.rdma.get_or_insert_with(RdmaTotals::default);
                add(&mut rt.cq_polls, x.cq_polls);
                add(&mut rt.cq_polls_nonempty, x.cq_polls_nonempty);
                add(&mut rt.completions, x.completions);
                add(&mut rt.doorbells, x.doorbells);
                add(&mut rt.send_wrs, x.send_wrs);
                add(&mut rt.recv_wrs, x.recv_wrs);
                add(&mut rt.srq_empties, x.srq_empties.unwrap_or(0));
            }
        }
        for q in &w.qpairs {
            let key = (q.reactor, q.slot, self.host_label(q.host.as_deref()));
            if self.qpairs.len() >= MAX_QPAIRS && !self.qpairs.contains_key(&key) {
                continue;
            }
            let t = self.qpairs.entry(key).or_default();
            add(&mut t.completions, q.completions);
            add(&mut t.bytes, delta(q.bytes_per_s, secs));
            add(&mut t.errors, q.errors);
            t.latency.add(&q.latency);
        }
        for n in &w.netdevs {
            if self.netdevs.len() >= MAX_INTERFACES && !self.netdevs.contains_key(&n.name) {
                continue;
            }
            let t = self.netdevs.entry(n.name.clone()).or_default();
            add(&mut t.rx_bytes, delta(n.rx_bytes_per_s, secs));
            add(&mut t.tx_bytes, delta(n.tx_bytes_per_s, secs));
            add(&mut t.rx_packets, delta(n.rx_packets_per_s, secs));
            add(&mut t.tx_packets, delta(n.tx_packets_per_s, secs));
            add(&mut t.drops, n.drops);
            add(&mut t.qdisc_drops, n.qdisc_drops);
            add(
                &mut t.qdisc_overlimits,
                delta(n.qdisc_overlimits_per_s, secs),
            );
        }
        for d in &w.devices {
            if self.devices.len() >= MAX_INTERFACES && !self.devices.contains_key(&d.name) {
                continue;
            }
            let t = self.devices.entry(d.name.clone()).or_default();
            add(&mut t.completions, delta(d.iops, secs));
            add(&mut t.bytes, delta(d.bytes_per_s, secs));
        }
        for p in &w.rdma_ports {
            let key = (p.device.clone(), p.port);
            if self.rdma_ports.len() >= MAX_INTERFACES && !self.rdma_ports.contains_key(&key) {
                continue;
            }
            let t = self.rdma_ports.entry(key).or_default();
            add_opt(&mut t.rx_bytes, p.rx_bytes_per_s.map(|r| delta(r, secs)));
            add_opt(&mut t.tx_bytes, p.tx_bytes_per_s.map(|r| delta(r, secs)));
            add_opt(
                &mut t.rx_packets,
                p.rx_packets_per_s.map(|r| delta(r, secs)),
            );
            add_opt(
                &mut t.tx_packets,
                p.tx_packets_per_s.map(|r| delta(r, secs)),
            );
            add_opt(&mut t.discards, p.xmit_discards);
            add_opt(&mut t.wait, p.xmit_wait);
            add(&mut t.retransmits, p.retransmit_events());
            for (name, d) in &p.hw_counters {
                if t.hw.len() < MAX_NAMES || t.hw.contains_key(name) {
                    add(t.hw.entry(name.clone()).or_default(), *d);
                }
            }
        }
        add_opt(&mut self.tcp_retransmits, w.tcp_retransmits);
    }

    fn fold_findings(&mut self, snap: &Snapshot) {
        let was_active: BTreeSet<(FindingKind, String)> = self
            .findings
            .iter()
            .filter(|(_, s)| s.active)
            .map(|(k, _)| k.clone())
            .collect();
        for s in self.findings.values_mut() {
            s.active = false;
        }
        for f in &snap.findings {
            let key = (f.kind, f.subject.to_string());
            if !self.findings.contains_key(&key) && self.findings.len() >= MAX_FINDING_SUBJECTS {
                // Forget the cleared finding that was active longest ago, if there is one.
                let victim = self
                    .findings
                    .iter()
                    .filter(|(_, s)| !s.active)
                    .min_by_key(|(_, s)| s.last_active)
                    .map(|(k, _)| k.clone());
                match victim {
                    Some(v) => {
                        self.findings.remove(&v);
                    }
                    None => continue,
                }
            }
            let newly_raised = !was_active.contains(&key);
            let state = self.findings.entry(key).or_insert(FindingState {
                severity: f.severity.name(),
                active: false,
                confidence: 0.0,
                last_active: 0,
            });
            if newly_raised && !state.active {
                *self.raised.entry(f.kind).or_default() += 1;
            }
            state.active = true;
            state.severity = f.severity.name();
            state.confidence = f.confidence;
            state.last_active = self.updates;
        }
    }
}

/// Metric families being built; emitted in catalog order.
#[derive(Default)]
pub struct Families {
    by_name: BTreeMap<&'static str, MetricFamily>,
}

fn is_catalogued(def: &MetricDef) -> bool {
    catalog::find(def.name) == Some(def)
}

impl Families {
    /// Nothing yet.
    pub fn new() -> Families {
        Families::default()
    }

    fn push(&mut self, def: &MetricDef, labels: &[&str], mut m: Metric) {
        // Only catalogued definitions, only with their declared labels: anything else is a bug
        // in this crate, caught by the tests, and skipped in release builds.
        if !is_catalogued(def) || labels.len() != def.labels.len() {
            debug_assert!(
                false,
                "{} emitted outside the catalog or with wrong labels",
                def.name
            );
            return;
        }
        m.set_label(
            def.labels
                .iter()
                .zip(labels)
                // An unknown host is no label at all (Prometheus reads `host=""` the same way;
                // this keeps the series of sources that do not say as they were).
                .filter(|(n, v)| !(v.is_empty() && **n == "host"))
                .map(|(n, v)| {
                    let mut p = LabelPair::default();
                    p.set_name((*n).to_string());
                    p.set_value((*v).to_string());
                    p
                })
                .collect(),
        );
        let family = self.by_name.entry(def.name).or_insert_with(|| {
            let mut f = MetricFamily::default();
            f.set_name(def.name.to_string());
            f.set_help(def.help.to_string());
            f.set_field_type(match def.kind {
                Kind::Counter => MetricType::COUNTER,
                Kind::Gauge => MetricType::GAUGE,
                Kind::Histogram => MetricType::HISTOGRAM,
            });
            f
        });
        family.mut_metric().push(m);
    }

    /// A gauge sample; non-finite values are dropped.
    pub fn gauge(&mut self, def: &MetricDef, labels: &[&str], v: f64) {
        if def.kind != Kind::Gauge || !v.is_finite() {
            debug_assert!(def.kind == Kind::Gauge, "{} is not a gauge", def.name);
            return;
        }
        let mut g = Gauge::default();
        g.set_value(v);
        let mut m = Metric::default();
        m.set_gauge(g);
        self.push(def, labels, m);
    }

    /// A counter sample.
    pub fn counter(&mut self, def: &MetricDef, labels: &[&str], v: u64) {
        if def.kind != Kind::Counter {
            debug_assert!(false, "{} is not a counter", def.name);
            return;
        }
        let mut c = Counter::default();
        c.set_value(v as f64);
        let mut m = Metric::default();
        m.set_counter(c);
        self.push(def, labels, m);
    }

    /// A histogram sample at the catalog's latency bounds.
    pub fn histogram(&mut self, def: &MetricDef, labels: &[&str], h: &PromHist) {
        if def.kind != Kind::Histogram {
            debug_assert!(false, "{} is not a histogram", def.name);
            return;
        }
        let buckets = h
            .cumulative()
            .iter()
            .zip(LATENCY_BUCKETS_SECONDS)
            .map(|(&c, le)| {
                let mut b = Bucket::default();
                b.set_upper_bound(le);
                b.set_cumulative_count(c);
                b
            })
            .collect();
        let mut ph = Histogram::default();
        ph.set_bucket(buckets);
        ph.set_sample_count(h.count);
        ph.set_sample_sum(h.sum_ns as f64 / 1e9);
        let mut m = Metric::default();
        m.set_histogram(ph);
        self.push(def, labels, m);
    }

    /// The text exposition, families in catalog order.
    pub fn encode(mut self) -> String {
        let families: Vec<MetricFamily> = catalog::CATALOG
            .iter()
            .filter_map(|d| self.by_name.remove(d.name))
            .collect();
        // Every family has at least one metric and a name by construction, the only conditions
        // under which the encoder fails.
        prometheus::TextEncoder::new()
            .encode_to_string(&families)
            .unwrap_or_default()
    }
}

/// Merges the expositions of several targets into one: each family's `# HELP`/`# TYPE` once,
/// then every target's samples of it, each sample labelled `target="<name>"` first (samples
/// that already carry a `target` label keep theirs: the lifecycle series, which name the
/// instance; `target` means the instance on every series, the kind of target is
/// `ringside_target_info`'s `kind`). Names are instance
/// names (`[A-Za-z0-9_.-]`), so they need no escaping.
pub fn merge_with_target_label(parts: &[(String, String)]) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut heads: BTreeMap<String, String> = BTreeMap::new();
    let mut samples: BTreeMap<String, String> = BTreeMap::new();
    for (name, text) in parts {
        let mut family = String::new();
        for line in text.lines() {
            if let Some(rest) = line
                .strip_prefix("# HELP ")
                .or_else(|| line.strip_prefix("# TYPE "))
            {
                family = rest.split(' ').next().unwrap_or("").to_string();
                if !heads.contains_key(&family) {
                    order.push(family.clone());
                }
                let h = heads.entry(family.clone()).or_default();
                if !h.contains(line) {
                    h.push_str(line);
                    h.push('\n');
                }
                continue;
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            let (metric, rest) = line.split_at(end);
            let out = samples.entry(family.clone()).or_default();
            if rest.starts_with("{target=") || rest.contains(",target=\"") {
                out.push_str(line);
            } else if let Some(labels) = rest.strip_prefix('{') {
                let _ = write!(out, "{metric}{{target=\"{name}\",{labels}");
            } else {
                let _ = write!(out, "{metric}{{target=\"{name}\"}}{rest}");
            }
            out.push('\n');
        }
    }
    let mut out = String::new();
    for family in order {
        if let Some(h) = heads.get(&family) {
            out.push_str(h);
        }
        if let Some(s) = samples.get(&family) {
            out.push_str(s);
        }
    }
    out
}

/// Renders the target's lifecycle (up, state, start time), when the snapshot carries one.
pub fn render_lifecycle(snap: &Snapshot, f: &mut Families) {
    use agent_core::lifecycle::TargetState;
    use catalog as c;
    let Some(l) = &snap.lifecycle else { return };
    let up = if l.state.is_live() { 1.0 } else { 0.0 };
    f.gauge(&c::TARGET_UP, &[&l.name], up);
    for s in [
        TargetState::Waiting,
        TargetState::Attached,
        TargetState::Gone,
        TargetState::Reattached,
    ] {
        let v = if s == l.state { 1.0 } else { 0.0 };
        f.gauge(&c::TARGET_STATE, &[&l.name, s.as_str()], v);
    }
    if let (true, Some(i)) = (l.state.is_live(), &l.instance) {
        f.gauge(
            &c::TARGET_START_TIME,
            &[&l.name],
            i.start_realtime_ns as f64 / 1e9,
        );
    }
}

/// Renders everything a snapshot and the totals say (the agent's part of `/metrics`).
pub fn render_snapshot(snap: &Snapshot, acc: &Accumulator, f: &mut Families) {
    use catalog as c;

    if !snap.target.name.is_empty() {
        let kind = snap.target.flavor.as_deref().unwrap_or("ringside");
        f.gauge(&c::TARGET_INFO, &[&snap.target.name, kind], 1.0);
    }
    for l in &snap.target.listeners {
        let netdev = l.netdev.as_deref().unwrap_or("");
        f.gauge(
            &c::TARGET_LISTENER_INFO,
            &[l.transport.as_str(), &l.address, netdev],
            1.0,
        );
    }
    if let Some(n) = acc.tcp_retransmits {
        f.counter(&c::TARGET_TCP_RETRANSMITS, &[], n);
    }

    let window = snap.window.as_ref();
    for (index, t) in &acc.reactors {
        let reactor = index.to_string();
        let core = t.core.to_string();
        let rl: [&str; 2] = [&reactor, &core];
        let rw = window.and_then(|w| w.reactor(*index));
        let node = rw
            .and_then(|r| r.node)
            .or_else(|| snap.topology.node_of_cpu(t.core))
            .map(|n| n.to_string())
            .unwrap_or_default();
        f.gauge(&c::REACTOR_INFO, &[&reactor, &core, &node], 1.0);
        for (op, v) in [("read", t.reads), ("write", t.writes), ("other", t.other)] {
            f.counter(&c::REACTOR_COMPLETIONS, &[&reactor, &core, op], v);
        }
        for (dir, v) in [("read", t.bytes_read), ("write", t.bytes_written)] {
            f.counter(&c::REACTOR_IO_BYTES, &[&reactor, &core, dir], v);
        }
        f.counter(&c::REACTOR_POLLS, &rl, t.polls);
        f.counter(&c::REACTOR_BACKEND_SUBMISSIONS, &rl, t.backend_submissions);
        f.counter(&c::REACTOR_BUFFER_WAITS, &rl, t.buffer_waits);
        f.counter(&c::REACTOR_ERRORS, &rl, t.errors);
        f.counter(&c::REACTOR_CONNECTS_REFUSED, &rl, t.connects_refused);
        f.counter(&c::REACTOR_PROTOCOL_CLOSES, &rl, t.protocol_closes);
        if let Some(v) = t.involuntary_switches {
            f.counter(&c::REACTOR_INVOLUNTARY_SWITCHES, &rl, v);
        }
        if let Some(v) = t.migrations {
            f.counter(&c::REACTOR_MIGRATIONS, &rl, v);
        }
        if let Some(v) = t.preemptions {
            f.counter(&c::REACTOR_PREEMPTIONS, &rl, v);
        }
        if let Some(v) = t.syscalls {
            f.counter(&c::REACTOR_SYSCALLS, &rl, v);
        }
        f.histogram(&c::REACTOR_LATENCY, &rl, &t.latency);
        for (stage, h) in &t.stages {
            f.histogram(
                &c::REACTOR_STAGE_LATENCY,
                &[&reactor, &core, stage.as_str()],
                h,
            );
        }
        if let Some(x) = &t.rdma {
            f.counter(&c::RDMA_CQ_POLLS, &rl, x.cq_polls);
            f.counter(&c::RDMA_CQ_POLLS_NONEMPTY, &rl, x.cq_polls_nonempty);
            f.counter(&c::RDMA_COMPLETIONS, &rl, x.completions);
            f.counter(&c::RDMA_DOORBELLS, &rl, x.doorbells);
            for (queue, v) in [("send", x.send_wrs), ("receive", x.recv_wrs)] {
                f.counter(&c::RDMA_WORK_REQUESTS, &[&reactor, &core, queue], v);
            }
            f.counter(&c::RDMA_SRQ_EMPTY, &rl, x.srq_empties);
        }
        if let Some(x) = rw.and_then(|r| r.rdma.as_ref()) {
            let ratios = [
                (
                    &c::RDMA_COMPLETIONS_PER_NONEMPTY_POLL,
                    x.completions_per_nonempty_poll,
                ),
                (&c::RDMA_COMPLETIONS_PER_POLL, x.completions_per_poll),
                (&c::RDMA_WORK_REQUESTS_PER_DOORBELL, x.wrs_per_doorbell),
            ];
            for (def, v) in ratios {
                if let Some(v) = v {
                    f.gauge(def, &rl, v);
                }
            }
            f.gauge(&c::RDMA_SEND_PENDING, &rl, x.pending_wrs as f64);
            f.gauge(
                &c::RDMA_SEND_PENDING_MAX,
                &rl,
                x.pending_wrs_high_water as f64,
            );
            f.gauge(&c::RDMA_SRQ_POSTED, &rl, x.srq_depth as f64);
            f.gauge(&c::RDMA_SRQ_LOW_WATER, &rl, x.srq_low_water as f64);
            f.gauge(&c::RDMA_SRQ_SIZE, &rl, x.srq_size as f64);
        }
        if let Some(r) = rw {
            f.gauge(&c::REACTOR_BUSY_RATIO, &rl, r.busy_ratio);
            if let Some(ns) = r.ns_per_io {
                f.gauge(&c::REACTOR_COST_PER_IO, &rl, ns / 1e9);
            }
            f.gauge(&c::REACTOR_MEAN_OUTSTANDING, &rl, r.avg_outstanding);
            f.gauge(&c::REACTOR_BACKEND_INFLIGHT, &rl, r.backend_inflight as f64);
            f.gauge(
                &c::REACTOR_BACKEND_INFLIGHT_MAX,
                &rl,
                r.backend_inflight_high_water as f64,
            );
            f.gauge(&c::REACTOR_ACTIVE_QPAIRS, &rl, f64::from(r.active_qpairs));
            f.gauge(&c::REACTOR_STALLED, &rl, if r.stalled { 1.0 } else { 0.0 });
            let optional = [
                (&c::REACTOR_CPU_RATIO, r.cpu_ratio),
                (&c::REACTOR_RUNQUEUE_WAIT_RATIO, r.runqueue_wait_ratio),
                (&c::REACTOR_PREEMPTED_RATIO, r.preempted_ratio),
                (&c::REACTOR_IRQ_RATIO, r.irq_ratio),
            ];
            for (def, v) in optional {
                if let Some(v) = v {
                    f.gauge(def, &rl, v);
                }
            }
        }
    }

    for ((reactor, slot, host), t) in &acc.qpairs {
        let reactor_s = reactor.to_string();
        let slot_s = slot.to_string();
        let ql: [&str; 3] = [&reactor_s, &slot_s, host];
        f.counter(&c::QPAIR_COMPLETIONS, &ql, t.completions);
        f.counter(&c::QPAIR_IO_BYTES, &ql, t.bytes);
        f.counter(&c::QPAIR_ERRORS, &ql, t.errors);
        f.histogram(&c::QPAIR_LATENCY, &ql, &t.latency);
        // A qpair missing from the latest window had nothing outstanding and completed nothing.
        let qw = window.and_then(|w| {
            w.qpairs.iter().find(|q| {
                q.reactor == *reactor
                    && q.slot == *slot
                    && acc.host_label_of(q.host.as_deref()) == host
            })
        });
        f.gauge(
            &c::QPAIR_OUTSTANDING,
            &ql,
            qw.map_or(0.0, |q| q.outstanding as f64),
        );
        f.gauge(
            &c::QPAIR_MEAN_OUTSTANDING,
            &ql,
            qw.map_or(0.0, |q| q.avg_outstanding),
        );
        if let Some(q) = qw {
            f.gauge(&c::QPAIR_OUTSTANDING_MAX, &ql, q.high_water as f64);
            if let Some(size) = q.queue_size {
                f.gauge(&c::QPAIR_QUEUE_SIZE, &ql, f64::from(size));
            }
        }
    }

    for (name, t) in &acc.netdevs {
        let nl: [&str; 1] = [name];
        for (dir, bytes, packets) in [
            ("receive", t.rx_bytes, t.rx_packets),
            ("transmit", t.tx_bytes, t.tx_packets),
        ] {
            f.counter(&c::NETDEV_BYTES, &[name, dir], bytes);
            f.counter(&c::NETDEV_PACKETS, &[name, dir], packets);
        }
        f.counter(&c::NETDEV_DROPS, &nl, t.drops);
        f.counter(&c::NETDEV_QDISC_DROPS, &nl, t.qdisc_drops);
        f.counter(&c::NETDEV_QDISC_OVERLIMITS, &nl, t.qdisc_overlimits);
        if let Some(n) = window.and_then(|w| w.netdevs.iter().find(|n| &n.name == name)) {
            if let Some(cap) = n.capacity_bytes_per_s {
                f.gauge(&c::NETDEV_CAPACITY, &nl, cap);
            }
            if let Some(u) = n.utilisation {
                f.gauge(&c::NETDEV_UTILISATION, &nl, u);
            }
            f.gauge(&c::NETDEV_QDISC_BACKLOG, &nl, n.qdisc_backlog_bytes as f64);
        }
    }

    for (name, t) in &acc.devices {
        let dl: [&str; 1] = [name];
        f.counter(&c::DEVICE_COMPLETIONS, &dl, t.completions);
        f.counter(&c::DEVICE_IO_BYTES, &dl, t.bytes);
        if let Some(d) = window.and_then(|w| w.devices.iter().find(|d| &d.name == name)) {
            if let Some(us) = d.avg_latency_us {
                f.gauge(&c::DEVICE_SERVICE_TIME, &dl, us / 1e6);
            }
            f.gauge(&c::DEVICE_UTILISATION, &dl, d.utilisation);
            f.gauge(&c::DEVICE_INFLIGHT, &dl, d.in_flight as f64);
        }
    }

    for ((device, port), t) in &acc.rdma_ports {
        let port_s = port.to_string();
        let pl: [&str; 2] = [device, &port_s];
        for (dir, bytes, packets) in [
            ("receive", t.rx_bytes, t.rx_packets),
            ("transmit", t.tx_bytes, t.tx_packets),
        ] {
            if let Some(b) = bytes {
                f.counter(&c::RDMA_PORT_BYTES, &[device, &port_s, dir], b);
            }
            if let Some(p) = packets {
                f.counter(&c::RDMA_PORT_PACKETS, &[device, &port_s, dir], p);
            }
        }
        if let Some(d) = t.discards {
            f.counter(&c::RDMA_PORT_TRANSMIT_DISCARDS, &pl, d);
        }
        if let Some(w) = t.wait {
            f.counter(&c::RDMA_PORT_TRANSMIT_WAIT, &pl, w);
        }
        f.counter(&c::RDMA_PORT_RETRANSMITS, &pl, t.retransmits);
        for (name, v) in &t.hw {
            f.counter(&c::RDMA_PORT_HW_COUNTER, &[device, &port_s, name], *v);
        }
        let pw = window.and_then(|w| {
            w.rdma_ports
                .iter()
                .find(|p| &p.device == device && p.port == *port)
        });
        if let Some(p) = pw {
            f.gauge(
                &c::RDMA_PORT_INFO,
                &[
                    device,
                    &port_s,
                    p.netdev.as_deref().unwrap_or(""),
                    p.link_layer.as_deref().unwrap_or(""),
                    p.state.as_deref().unwrap_or(""),
                    if p.soft { "true" } else { "false" },
                ],
                1.0,
            );
            if let Some(cap) = p.capacity_bytes_per_s {
                f.gauge(&c::RDMA_PORT_CAPACITY, &pl, cap);
            }
            if let Some(u) = p.utilisation {
                f.gauge(&c::RDMA_PORT_UTILISATION, &pl, u);
            }
        }
    }

    if let Some(m) = window.and_then(|w| w.memory.as_ref()) {
        for (node, bytes) in m.buffer_bytes_by_node.iter().take(MAX_NAMES) {
            f.gauge(&c::MEMORY_BUFFER, &[&node.to_string()], *bytes as f64);
        }
        for (node, bytes) in m.total_bytes_by_node.iter().take(MAX_NAMES) {
            f.gauge(&c::MEMORY_RESIDENT, &[&node.to_string()], *bytes as f64);
        }
    }

    let mut active_by_kind: BTreeMap<FindingKind, u64> = BTreeMap::new();
    for ((kind, subject), s) in &acc.findings {
        f.gauge(
            &c::FINDING_ACTIVE,
            &[kind.name(), subject, s.severity],
            if s.active { 1.0 } else { 0.0 },
        );
        if s.active {
            f.gauge(
                &c::FINDING_CONFIDENCE,
                &[kind.name(), subject],
                s.confidence.clamp(0.0, 1.0),
            );
            *active_by_kind.entry(*kind).or_default() += 1;
        }
    }
    for kind in FindingKind::ALL {
        let n = active_by_kind.get(&kind).copied().unwrap_or(0);
        f.gauge(&c::FINDING_SUBJECTS, &[kind.name()], n as f64);
        let raised = acc.raised.get(&kind).copied().unwrap_or(0);
        f.counter(&c::FINDING_RAISED, &[kind.name()], raised);
    }
    for setting in &acc.settings_seen {
        let on = snap
            .recommendations
            .iter()
            .any(|r| r.setting.name() == setting);
        f.gauge(
            &c::RECOMMENDATION_ACTIVE,
            &[setting],
            if on { 1.0 } else { 0.0 },
        );
    }

    f.counter(&c::AGENT_WINDOWS, &[], snap.windows_seen);
    if let Some(w) = window {
        f.gauge(&c::AGENT_WINDOW_LENGTH, &[], w.seconds());
    }
    for cap in snap.target.capabilities.iter().take(MAX_NAMES) {
        f.gauge(
            &c::AGENT_CAPABILITY,
            &[&cap.name],
            if cap.available { 1.0 } else { 0.0 },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_core::finding::{Finding, Severity, Subject};
    use agent_core::sample::{ReactorInfo, TargetInfo};
    use agent_core::window::{QpairWindow, ReactorWindow};

    fn hist(values: &[u64]) -> Hist {
        let mut h = Hist::empty();
        for v in values {
            h.record(*v);
        }
        h
    }

    fn snapshot(end_s: u64, reads: u64, lat_ns: &[u64]) -> Snapshot {
        let lat = hist(lat_ns);
        Snapshot {
            t_ns: end_s * 1_000_000_000,
            target: TargetInfo {
                name: "t1".into(),
                reactors: vec![ReactorInfo {
                    index: 0,
                    core: 3,
                    tid: None,
                }],
                ..TargetInfo::default()
            },
            window: Some(Window {
                start_ns: (end_s - 1) * 1_000_000_000,
                end_ns: end_s * 1_000_000_000,
                reactors: vec![ReactorWindow {
                    index: 0,
                    core: 3,
                    iops: reads as f64,
                    read_iops: reads as f64,
                    read_bytes_per_s: reads as f64 * 4096.0,
                    completions: reads,
                    busy_ratio: 0.25,
                    latency: lat.clone(),
                    ..ReactorWindow::default()
                }],
                qpairs: vec![QpairWindow {
                    reactor: 0,
                    slot: 2,
                    completions: reads,
                    outstanding: 4,
                    latency: lat,
                    ..QpairWindow::default()
                }],
                ..Window::default()
            }),
            windows_seen: end_s,
            ..Snapshot::default()
        }
    }

    #[test]
    fn qpairs_carry_their_host_bounded_with_the_rest_under_other() {
        let mut acc = Accumulator::new();
        let mut s = snapshot(10, 100, &[20_000]);
        let w = s.window.as_mut().expect("window");
        let q = w.qpairs[0].clone();
        w.qpairs = (0..MAX_HOSTS as u16 + 3)
            .map(|i| QpairWindow {
                slot: i,
                host: Some(format!("nqn.2014-08.io.example:host{i}")),
                ..q.clone()
            })
            .chain([QpairWindow {
                slot: 999,
                host: None,
                ..q.clone()
            }])
            .collect();
        acc.fold(&s);
        let text = render(&s, &acc);
        let host_of = |l: &str| {
            l.split("host=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .map(str::to_string)
        };
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("ringside_qpair_completions_total{"))
            .collect();
        let hosts: BTreeSet<String> = series.iter().filter_map(|l| host_of(l)).collect();
        assert_eq!(
            hosts.len(),
            MAX_HOSTS + 1,
            "{MAX_HOSTS} hosts and other: {hosts:?}"
        );
        assert!(hosts.contains("nqn.2014-08.io.example:host0") && hosts.contains(OTHER_HOST));
        let other: f64 = series
            .iter()
            .filter(|l| host_of(l).as_deref() == Some(OTHER_HOST))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert_eq!(
            other, 300.0,
            "the three hosts beyond the cap sum under other"
        );
        let unknown = r#"ringside_qpair_completions_total{reactor="0",qpair="999"}"#;
        assert_eq!(
            value(&text, unknown),
            Some(100.0),
            "no host: no label\n{text}"
        );
        // The gauges follow the same labels.
        let g = r#"ringside_qpair_outstanding_requests{reactor="0",qpair="0",host="nqn.2014-08.io.example:host0"}"#;
        assert_eq!(value(&text, g), Some(4.0), "{text}");
    }

    fn render(snap: &Snapshot, acc: &Accumulator) -> String {
        let mut f = Families::new();
        render_snapshot(snap, acc, &mut f);
        f.encode()
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn counters_accumulate_windows_once_each() {
        let mut acc = Accumulator::new();
        let s1 = snapshot(10, 1000, &[]);
        acc.fold(&s1);
        acc.fold(&s1); // the same window again: no double count
        let s2 = snapshot(11, 500, &[]);
        acc.fold(&s2);
        let text = render(&s2, &acc);
        let reads = r#"ringside_reactor_completions_total{reactor="0",core="3",op="read"}"#;
        assert_eq!(value(&text, reads), Some(1500.0), "{text}");
        let bytes = r#"ringside_reactor_io_bytes_total{reactor="0",core="3",direction="read"}"#;
        assert_eq!(value(&text, bytes), Some(1500.0 * 4096.0), "{text}");
        let q = r#"ringside_qpair_completions_total{reactor="0",qpair="2"}"#;
        assert_eq!(value(&text, q), Some(1500.0), "{text}");
        assert_eq!(
            value(
                &text,
                r#"ringside_reactor_busy_ratio{reactor="0",core="3"}"#
            ),
            Some(0.25)
        );
        assert_eq!(acc.windows_folded(), 2);
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_exact_sum_and_count() {
        // 1.5 µs lands in le=2e-6; 30 µs in le=5e-5; 2 s only in +Inf.
        let mut acc = Accumulator::new();
        let s = snapshot(10, 3, &[1_500, 30_000, 2_000_000_000]);
        acc.fold(&s);
        let text = render(&s, &acc);
        let b = |le: &str| {
            value(
                &text,
                &format!(
                    r#"ringside_reactor_latency_seconds_bucket{{reactor="0",core="3",le="{le}"}}"#
                ),
            )
        };
        assert_eq!(b("0.000001"), Some(0.0), "{text}");
        assert_eq!(b("0.000002"), Some(1.0), "{text}");
        assert_eq!(b("0.00002"), Some(1.0), "{text}");
        assert_eq!(b("0.00005"), Some(2.0), "{text}");
        assert_eq!(b("1"), Some(2.0), "{text}");
        assert_eq!(b("+Inf"), Some(3.0), "{text}");
        let count = r#"ringside_reactor_latency_seconds_count{reactor="0",core="3"}"#;
        assert_eq!(value(&text, count), Some(3.0));
        let sum = r#"ringside_reactor_latency_seconds_sum{reactor="0",core="3"}"#;
        let got = value(&text, sum).expect("sum present");
        assert!((got - 2.0000315).abs() < 1e-9, "sum {got}");
    }

    #[test]
    fn a_straddling_ring_bucket_counts_at_the_next_bound() {
        // Ring buckets near 1 ms are 2^15 ns wide at 2^19..2^20; 1_000_000 ns sits in one that
        // ends above 1 ms, so it may not be reported as <= 1 ms.
        let (lo, hi) = agent_core::hist::bucket_bounds(agent_core::hist::bucket_index(999_999));
        assert!(lo <= 999_999 && hi > 1_000_000, "premise: {lo}..{hi}");
        let mut p = PromHist::default();
        p.add(&hist(&[999_999]));
        let cum = p.cumulative();
        assert_eq!(
            cum[9], 0,
            "le=1ms must not claim a value that may exceed it"
        );
        assert_eq!(cum[10], 1);
    }

    #[test]
    fn findings_are_gauges_per_kind_and_subject_and_raises_are_counted() {
        let finding = Finding {
            kind: FindingKind::InitiatorLimited,
            severity: Severity::Warning,
            subject: Subject::Qpair {
                reactor: 0,
                slot: 2,
            },
            summary: "x".into(),
            evidence: Vec::new(),
            windows: 3,
            since_ns: 0,
            until_ns: 0,
            confidence: 0.8,
            cost: None,
        };
        let mut acc = Accumulator::new();
        let mut s = snapshot(10, 1, &[]);
        s.findings = vec![finding.clone()];
        acc.fold(&s);
        acc.fold(&s);
        let text = render(&s, &acc);
        let active = r#"ringside_finding_active{kind="initiator_limited",subject="qpair 0.2",severity="warning"}"#;
        assert_eq!(value(&text, active), Some(1.0), "{text}");
        let raised = r#"ringside_finding_raised_total{kind="initiator_limited"}"#;
        assert_eq!(value(&text, raised), Some(1.0), "{text}");
        let subjects = r#"ringside_finding_active_subjects{kind="numa_misplacement"}"#;
        assert_eq!(
            value(&text, subjects),
            Some(0.0),
            "every kind is exported: {text}"
        );

        s.findings.clear();
        acc.fold(&s);
        let text = render(&s, &acc);
        assert_eq!(value(&text, active), Some(0.0), "cleared: {text}");
        assert!(
            !text.contains("ringside_finding_confidence_ratio{"),
            "{text}"
        );

        s.findings = vec![finding];
        acc.fold(&s);
        let text = render(&s, &acc);
        assert_eq!(value(&text, raised), Some(2.0), "raised again: {text}");
    }

    #[test]
    fn finding_subjects_are_capped() {
        let mut acc = Accumulator::new();
        let mut s = snapshot(10, 1, &[]);
        s.findings = (0..(MAX_FINDING_SUBJECTS as u32 + 50))
            .map(|i| Finding {
                kind: FindingKind::ReactorPreemption,
                severity: Severity::Info,
                subject: Subject::Reactor { index: i },
                summary: String::new(),
                evidence: Vec::new(),
                windows: 3,
                since_ns: 0,
                until_ns: 0,
                confidence: 0.5,
                cost: None,
            })
            .collect();
        acc.fold(&s);
        let text = render(&s, &acc);
        let n = text
            .lines()
            .filter(|l| l.starts_with("ringside_finding_active{"))
            .count();
        assert_eq!(n, MAX_FINDING_SUBJECTS);
    }

    #[test]
    fn absent_sources_and_non_finite_values_emit_nothing() {
        let mut acc = Accumulator::new();
        let mut s = snapshot(10, 1, &[]);
        if let Some(w) = s.window.as_mut() {
            w.reactors[0].busy_ratio = f64::NAN;
        }
        acc.fold(&s);
        let text = render(&s, &acc);
        assert!(!text.contains("NaN"), "{text}");
        assert!(!text.contains("ringside_reactor_busy_ratio{"), "{text}");
        assert!(!text.contains("ringside_reactor_cpu_ratio"), "{text}");
        assert!(!text.contains("ringside_netdev_"), "{text}");
        assert!(
            text.contains("ringside_target_info{name=\"t1\",kind=\"ringside\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn an_spdk_target_is_labelled_as_such() {
        let mut acc = Accumulator::new();
        let mut s = snapshot(10, 1, &[]);
        s.target.flavor = Some("spdk".into());
        acc.fold(&s);
        let text = render(&s, &acc);
        assert!(
            text.contains("ringside_target_info{name=\"t1\",kind=\"spdk\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn every_emitted_family_is_catalogued() {
        let mut acc = Accumulator::new();
        let s = snapshot(10, 100, &[20_000]);
        acc.fold(&s);
        let text = render(&s, &acc);
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap_or("");
            assert!(
                catalog::family_of_series(name).is_some(),
                "{name} is not in the catalog"
            );
        }
    }

    fn rdma_snapshot(end_s: u64) -> Snapshot {
        use agent_core::window::{RdmaPortWindow, RdmaReactorWindow};
        let mut s = snapshot(end_s, 100, &[20_000]);
        let w = s.window.as_mut().expect("window");
        w.reactors[0].rdma = Some(RdmaReactorWindow {
            cq_polls: 1_000,
            cq_polls_nonempty: 250,
            completions: 1_000,
            doorbells: 400,
            send_wrs: 600,
            recv_wrs: 200,
            completions_per_nonempty_poll: Some(4.0),
            completions_per_poll: Some(1.0),
            wrs_per_doorbell: Some(2.0),
            pending_wrs: 9,
            pending_wrs_high_water: 33,
            srq_depth: 500,
            srq_low_water: 0,
            srq_size: 512,
            srq_ran_dry: true,
            srq_empties: Some(3),
            ..RdmaReactorWindow::default()
        });
        w.rdma_ports = vec![
            RdmaPortWindow {
                device: "mlx5_0".into(),
                port: 1,
                netdev: Some("ens1f0".into()),
                link_layer: Some("Ethernet".into()),
                state: Some("ACTIVE".into()),
                rate_bits_per_s: Some(25_000_000_000),
                capacity_bytes_per_s: Some(3.125e9),
                tx_bytes_per_s: Some(2.5e9),
                rx_bytes_per_s: Some(1e6),
                tx_packets_per_s: Some(600_000.0),
                rx_packets_per_s: Some(30_000.0),
                utilisation: Some(0.8),
                xmit_discards: Some(0),
                xmit_wait: Some(7),
                hw_counters: [
                    ("out_of_sequence".to_string(), 3),
                    ("rx_write_requests".to_string(), 10),
                ]
                .into_iter()
                .collect(),
                retransmits: [("out_of_sequence".to_string(), 3)].into_iter().collect(),
                ..RdmaPortWindow::default()
            },
            RdmaPortWindow {
                device: "rxe0".into(),
                port: 1,
                soft: true,
                netdev: Some("eth0".into()),
                hw_counters: [("sent_pkts".to_string(), 50)].into_iter().collect(),
                ..RdmaPortWindow::default()
            },
        ];
        s
    }

    #[test]
    fn rdma_reactor_and_port_series_accumulate_and_are_typed() {
        let mut acc = Accumulator::new();
        acc.fold(&rdma_snapshot(10));
        let s = rdma_snapshot(11);
        acc.fold(&s);
        let text = render(&s, &acc);
        let r = "{reactor=\"0\",core=\"3\"}";
        for (series, want) in [
            (format!("ringside_rdma_cq_polls_total{r}"), 2_000.0),
            (format!("ringside_rdma_completions_total{r}"), 2_000.0),
            (format!("ringside_rdma_doorbells_total{r}"), 800.0),
            (
                "ringside_rdma_work_requests_total{reactor=\"0\",core=\"3\",queue=\"send\"}"
                    .to_string(),
                1_200.0,
            ),
            (format!("ringside_rdma_completions_per_nonempty_poll{r}"), 4.0),
            (format!("ringside_rdma_work_requests_per_doorbell{r}"), 2.0),
            (format!("ringside_rdma_send_pending_max_requests{r}"), 33.0),
            (format!("ringside_rdma_srq_low_water_requests{r}"), 0.0),
            (format!("ringside_rdma_srq_size_requests{r}"), 512.0),
            (format!("ringside_rdma_srq_empty_total{r}"), 6.0),
            (
                "ringside_rdma_port_bytes_total{rdma_device=\"mlx5_0\",port=\"1\",direction=\"transmit\"}"
                    .to_string(),
                5e9,
            ),
            (
                "ringside_rdma_port_utilisation_ratio{rdma_device=\"mlx5_0\",port=\"1\"}".to_string(),
                0.8,
            ),
            (
                "ringside_rdma_port_retransmit_events_total{rdma_device=\"mlx5_0\",port=\"1\"}"
                    .to_string(),
                6.0,
            ),
            (
                "ringside_rdma_port_transmit_wait_total{rdma_device=\"mlx5_0\",port=\"1\"}"
                    .to_string(),
                14.0,
            ),
            (
                "ringside_rdma_port_hw_counter_total{rdma_device=\"rxe0\",port=\"1\",counter=\"sent_pkts\"}"
                    .to_string(),
                100.0,
            ),
        ] {
            assert_eq!(value(&text, &series), Some(want), "{series} in\n{text}");
        }
        assert!(text.contains("# TYPE ringside_rdma_cq_polls_total counter"));
        assert!(text.contains("# TYPE ringside_rdma_srq_posted_requests gauge"));
        assert!(
            text.contains("software=\"true\"") && text.contains("netdev=\"eth0\""),
            "{text}"
        );
        assert!(
            !text.contains("ringside_rdma_port_bytes_total{rdma_device=\"rxe0\""),
            "no byte counters on rxe: no series"
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap_or("");
            assert!(
                catalog::family_of_series(name).is_some(),
                "{name} not catalogued"
            );
        }

        // A TCP-only target shows no RDMA series at all.
        let mut acc = Accumulator::new();
        let s = snapshot(10, 100, &[20_000]);
        acc.fold(&s);
        assert!(!render(&s, &acc).contains("ringside_rdma_"));
    }

    #[test]
    fn merged_targets_carry_a_target_label_and_one_help_per_family() {
        let a = "# HELP m_total x\n# TYPE m_total counter\nm_total{op=\"read\"} 1\n\
                 # HELP ringside_target_up u\n# TYPE ringside_target_up gauge\n\
                 ringside_target_up{target=\"a\"} 1\n";
        let b = "# HELP m_total x\n# TYPE m_total counter\nm_total{op=\"read\"} 2\n\
                 # HELP g g\n# TYPE g gauge\ng 3\n";
        let out = merge_with_target_label(&[("a".into(), a.into()), ("b".into(), b.into())]);
        assert_eq!(out.matches("# HELP m_total").count(), 1, "{out}");
        assert!(
            out.contains("m_total{target=\"a\",op=\"read\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("m_total{target=\"b\",op=\"read\"} 2\n"),
            "{out}"
        );
        assert!(out.contains("g{target=\"b\"} 3\n"), "{out}");
        assert!(
            out.contains("ringside_target_up{target=\"a\"} 1\n"),
            "an existing target label is kept, not doubled: {out}"
        );
        let help = out.find("# HELP m_total").expect("help");
        let second = out.find("m_total{target=\"b\"").expect("b's sample");
        let g = out.find("# HELP g").expect("g");
        assert!(
            help < second && second < g,
            "samples grouped under their family: {out}"
        );
    }
}
