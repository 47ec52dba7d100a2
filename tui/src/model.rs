//! Tables and series built from a [`Snapshot`]: what each view shows, as plain strings and sort
//! keys. No ratatui here: the widgets ([`crate::ui`]) only lay these out, and `--once` text
//! output, tests and the live view all read the same model.
//!
//! Unknown values (a collector that is not running, a qpair whose queue size was never reported)
//! are shown as "—" and sort last, whatever the direction.

use std::cmp::Ordering;

use agent_core::finding::{Finding, Severity, Subject};
use agent_core::snapshot::WindowSummary;
use agent_core::window::{RdmaReactorWindow, Window};
use agent_core::Snapshot;

/// The placeholder for a value nobody measured.
pub const UNKNOWN: &str = "—";

/// The views, in tab order (keys 1-5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum View {
    /// Per reactor.
    Reactors,
    /// Per active qpair.
    Qpairs,
    /// Per netdev.
    Netdevs,
    /// Per block device.
    Devices,
    /// Findings and recommendations.
    Findings,
}

impl View {
    /// Tab order.
    pub const ALL: [View; 5] = [
        View::Reactors,
        View::Qpairs,
        View::Netdevs,
        View::Devices,
        View::Findings,
    ];

    /// Position in [`View::ALL`].
    pub fn index(self) -> usize {
        match self {
            View::Reactors => 0,
            View::Qpairs => 1,
            View::Netdevs => 2,
            View::Devices => 3,
            View::Findings => 4,
        }
    }

    /// Tab title.
    pub fn title(self) -> &'static str {
        match self {
            View::Reactors => "Reactors",
            View::Qpairs => "Qpairs",
            View::Netdevs => "Netdevs",
            View::Devices => "Devices",
            View::Findings => "Findings",
        }
    }

    /// The columns of this view's table.
    pub fn columns(self) -> &'static [Column] {
        match self {
            View::Reactors => REACTOR_COLUMNS,
            View::Qpairs => QPAIR_COLUMNS,
            View::Netdevs => NETDEV_COLUMNS,
            View::Devices => DEVICE_COLUMNS,
            View::Findings => FINDING_COLUMNS,
        }
    }
}

/// One table column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    /// Header text.
    pub title: &'static str,
    /// Width in cells (the last column of a table takes what is left).
    pub width: u16,
    /// Largest first when chosen as the sort column (rates, latencies); otherwise ascending.
    pub desc_first: bool,
}

const fn col(title: &'static str, width: u16, desc_first: bool) -> Column {
    Column {
        title,
        width,
        desc_first,
    }
}

const REACTOR_COLUMNS: &[Column] = &[
    col("REACTOR", 8, false),
    col("CORE", 5, false),
    col("NODE", 5, false),
    col("CPU%", 6, true),
    col("USEFUL%", 8, true),
    col("IOPS", 8, true),
    col("MB/s", 8, true),
    col("p50", 8, true),
    col("p99", 8, true),
    col("QPAIRS", 7, true),
    col("DEPTH", 7, true),
    col("COST/IO", 8, true),
    col("CQE/POLL", 9, true),
    col("SRQ", 12, false),
    col("STATE", 20, false),
];

const QPAIR_COLUMNS: &[Column] = &[
    col("QPAIR", 7, false),
    col("REACTOR", 8, false),
    col("CNTLID:QID", 11, false),
    col("DEPTH/LIMIT", 12, true),
    col("USE OF LIMIT", 13, true),
    col("NOW", 5, true),
    col("HIGH", 5, true),
    col("IOPS", 8, true),
    col("MB/s", 8, true),
    col("p50", 8, true),
    col("p99", 8, true),
    col("ERR", 5, true),
];

const NETDEV_COLUMNS: &[Column] = &[
    col("NETDEV", 12, false),
    col("RX MB/s", 9, true),
    col("TX MB/s", 9, true),
    col("RX pkt/s", 9, true),
    col("TX pkt/s", 9, true),
    col("CAPACITY", 10, true),
    col("UTILISATION", 18, true),
    col("BACKLOG", 9, true),
    col("DROPS", 6, true),
];

const DEVICE_COLUMNS: &[Column] = &[
    col("DEVICE", 12, false),
    col("IOPS", 8, true),
    col("MB/s", 8, true),
    col("AVG LAT", 9, true),
    col("UTILISATION", 18, true),
    col("IN FLIGHT", 9, true),
];

const FINDING_COLUMNS: &[Column] = &[
    col("SEVERITY", 9, true),
    col("KIND", 19, false),
    col("SUBJECT", 14, false),
    col("WINDOWS", 8, true),
    col("CONF", 5, true),
    col("SUMMARY", 40, false),
];

/// What a row sorts by in one column.
#[derive(Clone, Debug, PartialEq)]
pub enum SortKey {
    /// A number.
    Num(f64),
    /// Text (case-insensitive).
    Text(String),
    /// Unknown: always last.
    Missing,
}

impl SortKey {
    fn cmp_to(&self, other: &SortKey, desc: bool) -> Ordering {
        let o = match (self, other) {
            (SortKey::Missing, SortKey::Missing) => return Ordering::Equal,
            (SortKey::Missing, _) => return Ordering::Greater,
            (_, SortKey::Missing) => return Ordering::Less,
            (SortKey::Num(a), SortKey::Num(b)) => a.total_cmp(b),
            (SortKey::Text(a), SortKey::Text(b)) => a.to_lowercase().cmp(&b.to_lowercase()),
            (SortKey::Num(_), SortKey::Text(_)) => Ordering::Less,
            (SortKey::Text(_), SortKey::Num(_)) => Ordering::Greater,
        };
        if desc {
            o.reverse()
        } else {
            o
        }
    }
}

/// One table cell: what is shown and what it sorts by.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    /// Shown text.
    pub text: String,
    /// Sort key.
    pub key: SortKey,
}

impl Cell {
    fn num(text: String, v: f64) -> Cell {
        Cell {
            text,
            key: SortKey::Num(v),
        }
    }

    fn text(text: impl Into<String>) -> Cell {
        let text = text.into();
        Cell {
            key: SortKey::Text(text.clone()),
            text,
        }
    }

    fn opt(v: Option<f64>, fmt: impl Fn(f64) -> String) -> Cell {
        match v {
            Some(v) if v.is_finite() => Cell::num(fmt(v), v),
            _ => Cell::unknown(),
        }
    }

    fn unknown() -> Cell {
        Cell {
            text: UNKNOWN.to_string(),
            key: SortKey::Missing,
        }
    }
}

/// One table row.
#[derive(Clone, Debug, PartialEq)]
pub struct TableRow {
    /// What the filter matches and what identifies the row across snapshots ("reactor 0",
    /// "qpair 0.3 reactor 0", "netdev lo", a finding's kind and subject).
    pub name: String,
    /// Cells, one per column of the view.
    pub cells: Vec<Cell>,
    /// The most severe finding about this row's subject, for highlighting.
    pub alert: Option<Severity>,
}

/// Sorts rows by a column (stable: equal keys keep the snapshot's order).
pub fn sort_rows(rows: &mut [TableRow], column: usize, desc: bool) {
    rows.sort_by(|a, b| match (a.cells.get(column), b.cells.get(column)) {
        (Some(x), Some(y)) => x.key.cmp_to(&y.key, desc),
        _ => Ordering::Equal,
    });
}

/// Keeps rows whose name contains `filter` (case-insensitive); an empty filter keeps all.
pub fn filter_rows(rows: &mut Vec<TableRow>, filter: &str) {
    let f = filter.trim().to_lowercase();
    if !f.is_empty() {
        rows.retain(|r| r.name.to_lowercase().contains(&f));
    }
}

/// The rows of a view in snapshot order (unsorted, unfiltered). Empty without a window.
pub fn rows(view: View, snap: &Snapshot) -> Vec<TableRow> {
    if view == View::Findings {
        return finding_rows(&snap.findings);
    }
    let Some(w) = &snap.window else {
        return Vec::new();
    };
    match view {
        View::Reactors => reactor_rows(w, &snap.findings),
        View::Qpairs => qpair_rows(w, &snap.findings),
        View::Netdevs => {
            let mut rows = netdev_rows(w, &snap.findings);
            rows.extend(rdma_port_rows(w, &snap.findings));
            rows
        }
        View::Devices => device_rows(w, &snap.findings),
        View::Findings => unreachable!("handled above"),
    }
}

fn alert_for<'a>(findings: &'a [Finding], subject: &Subject) -> Option<&'a Finding> {
    // Findings arrive most severe first.
    findings.iter().find(|f| &f.subject == subject)
}

fn reactor_rows(w: &Window, findings: &[Finding]) -> Vec<TableRow> {
    w.reactors
        .iter()
        .map(|r| {
            let subject = Subject::Reactor { index: r.index };
            let alert = alert_for(findings, &subject);
            let state = if r.stalled {
                Cell::text("STALLED")
            } else if let Some(f) = alert {
                Cell::text(f.kind.name())
            } else {
                Cell::text("ok")
            };
            let core = (r.core != u32::MAX).then_some(f64::from(r.core));
            TableRow {
                name: subject.to_string(),
                cells: vec![
                    Cell::num(r.index.to_string(), f64::from(r.index)),
                    Cell::opt(core, |c| format!("{c:.0}")),
                    Cell::opt(r.node.map(f64::from), |n| format!("{n:.0}")),
                    Cell::opt(r.cpu_ratio, pct),
                    Cell::num(pct(r.busy_ratio), r.busy_ratio),
                    Cell::num(fmt_count(r.iops), r.iops),
                    mbps_cell(r.read_bytes_per_s + r.write_bytes_per_s),
                    latency_cell(r.latency.quantile(0.5)),
                    latency_cell(r.latency.quantile(0.99)),
                    Cell::num(r.active_qpairs.to_string(), f64::from(r.active_qpairs)),
                    Cell::num(format!("{:.1}", r.avg_outstanding), r.avg_outstanding),
                    Cell::opt(r.ns_per_io, |v| fmt_ns(v as u64)),
                    Cell::opt(
                        r.rdma
                            .as_ref()
                            .and_then(|x| x.completions_per_nonempty_poll),
                        |v| format!("{v:.1}"),
                    ),
                    srq_cell(r.rdma.as_ref()),
                    state,
                ],
                alert: alert.map(|f| f.severity),
            }
        })
        .collect()
}

/// The shared receive queue of an RDMA reactor: posted/size, `DRY` once its low water hit 0.
/// Sorts by the posted share (emptiest first).
fn srq_cell(x: Option<&RdmaReactorWindow>) -> Cell {
    match x.filter(|x| x.srq_size > 0) {
        Some(x) => Cell {
            text: format!(
                "{}{}/{}",
                if x.srq_ran_dry { "DRY " } else { "" },
                x.srq_depth,
                x.srq_size
            ),
            key: SortKey::Num(x.srq_depth as f64 / x.srq_size as f64),
        },
        None => Cell::unknown(),
    }
}

fn qpair_rows(w: &Window, findings: &[Finding]) -> Vec<TableRow> {
    w.qpairs
        .iter()
        .map(|q| {
            let subject = Subject::Qpair {
                reactor: q.reactor,
                slot: q.slot,
            };
            let limit = q.queue_size.filter(|&n| n > 0);
            let depth = match limit {
                Some(n) => format!("{:.1}/{n}", q.avg_outstanding),
                None => format!("{:.1}/{UNKNOWN}", q.avg_outstanding),
            };
            let use_of_limit = limit.map(|n| q.avg_outstanding / f64::from(n));
            let cntlid = q.ident >> 16;
            let qid = q.ident & 0xffff;
            TableRow {
                name: format!("{subject} reactor {}", q.reactor),
                cells: vec![
                    Cell::num(
                        format!("{}.{}", q.reactor, q.slot),
                        f64::from(q.reactor) * 65536.0 + f64::from(q.slot),
                    ),
                    Cell::num(q.reactor.to_string(), f64::from(q.reactor)),
                    Cell::num(format!("{cntlid}:{qid}"), q.ident as f64),
                    Cell::num(depth, q.avg_outstanding),
                    Cell::opt(use_of_limit, |u| bar(u, 6)),
                    Cell::num(q.outstanding.to_string(), q.outstanding as f64),
                    Cell::num(q.high_water.to_string(), q.high_water as f64),
                    Cell::num(fmt_count(q.iops), q.iops),
                    mbps_cell(q.bytes_per_s),
                    latency_cell(q.latency.quantile(0.5)),
                    latency_cell(q.latency.quantile(0.99)),
                    Cell::num(q.errors.to_string(), q.errors as f64),
                ],
                alert: alert_for(findings, &subject).map(|f| f.severity),
            }
        })
        .collect()
}

fn netdev_rows(w: &Window, findings: &[Finding]) -> Vec<TableRow> {
    w.netdevs
        .iter()
        .map(|n| {
            let subject = Subject::Netdev {
                name: n.name.clone(),
            };
            TableRow {
                name: subject.to_string(),
                cells: vec![
                    Cell::text(n.name.clone()),
                    mbps_cell(n.rx_bytes_per_s),
                    mbps_cell(n.tx_bytes_per_s),
                    Cell::num(fmt_count(n.rx_packets_per_s), n.rx_packets_per_s),
                    Cell::num(fmt_count(n.tx_packets_per_s), n.tx_packets_per_s),
                    Cell::opt(n.capacity_bytes_per_s, fmt_link),
                    Cell::opt(n.utilisation, |u| bar(u, 10)),
                    Cell::num(
                        fmt_bytes(n.qdisc_backlog_bytes),
                        n.qdisc_backlog_bytes as f64,
                    ),
                    Cell::num(n.drops.to_string(), n.drops as f64),
                ],
                alert: alert_for(findings, &subject).map(|f| f.severity),
            }
        })
        .collect()
}

/// RDMA ports, listed under the netdevs: a hardware port's own counters (its netdev's row does
/// not see RDMA traffic); a software one (`sw`, rxe/siw) for reference, its bytes are already in
/// its netdev's row.
fn rdma_port_rows(w: &Window, findings: &[Finding]) -> Vec<TableRow> {
    w.rdma_ports
        .iter()
        .map(|p| {
            let subject = Subject::RdmaPort {
                device: p.device.clone(),
                port: p.port,
            };
            let label = format!("{}/{}{}", p.device, p.port, if p.soft { " sw" } else { "" });
            TableRow {
                name: format!("{subject} {}", p.netdev.as_deref().unwrap_or_default()),
                cells: vec![
                    Cell::text(label),
                    Cell::opt(p.rx_bytes_per_s, |v| format!("{:.1}", v / 1e6)),
                    Cell::opt(p.tx_bytes_per_s, |v| format!("{:.1}", v / 1e6)),
                    Cell::opt(p.rx_packets_per_s, fmt_count),
                    Cell::opt(p.tx_packets_per_s, fmt_count),
                    Cell::opt(p.capacity_bytes_per_s, fmt_link),
                    Cell::opt(p.utilisation, |u| bar(u, 10)),
                    Cell::unknown(),
                    Cell::opt(p.xmit_discards.map(|d| d as f64), |d| format!("{d:.0}")),
                ],
                alert: alert_for(findings, &subject).map(|f| f.severity),
            }
        })
        .collect()
}

fn device_rows(w: &Window, findings: &[Finding]) -> Vec<TableRow> {
    w.devices
        .iter()
        .map(|d| {
            let subject = Subject::Device {
                name: d.name.clone(),
            };
            TableRow {
                name: subject.to_string(),
                cells: vec![
                    Cell::text(d.name.clone()),
                    Cell::num(fmt_count(d.iops), d.iops),
                    mbps_cell(d.bytes_per_s),
                    Cell::opt(d.avg_latency_us, |us| fmt_ns((us * 1000.0) as u64)),
                    Cell::num(bar(d.utilisation, 10), d.utilisation),
                    Cell::num(d.in_flight.to_string(), d.in_flight as f64),
                ],
                alert: alert_for(findings, &subject).map(|f| f.severity),
            }
        })
        .collect()
}

fn finding_rows(findings: &[Finding]) -> Vec<TableRow> {
    findings
        .iter()
        .map(|f| TableRow {
            name: finding_key(f),
            cells: vec![
                Cell::num(f.severity.name().to_string(), severity_rank(f.severity)),
                Cell::text(f.kind.name()),
                Cell::text(f.subject.to_string()),
                Cell::num(f.windows.to_string(), f64::from(f.windows)),
                Cell::num(format!("{:.0}%", f.confidence * 100.0), f.confidence),
                Cell::text(f.summary.clone()),
            ],
            alert: Some(f.severity),
        })
        .collect()
}

/// The identity (and filter text) of a finding row: kind and subject.
pub fn finding_key(f: &Finding) -> String {
    format!("{} {}", f.kind.name(), f.subject)
}

fn severity_rank(s: Severity) -> f64 {
    match s {
        Severity::Info => 0.0,
        Severity::Warning => 1.0,
        Severity::Critical => 2.0,
    }
}

fn mbps_cell(bytes_per_s: f64) -> Cell {
    Cell::num(format!("{:.1}", bytes_per_s / 1e6), bytes_per_s)
}

fn latency_cell(ns: Option<u64>) -> Cell {
    match ns {
        Some(v) if v > 0 => Cell::num(fmt_ns(v), v as f64),
        _ => Cell::unknown(),
    }
}

/// An evidence number with the precision a person reads: integers as they are, `70.1`,
/// `5495`, small values to three decimals (`0.050`).
pub fn fmt_value(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        UNKNOWN.to_string()
    } else if v.fract() == 0.0 || a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// `0.452` → `45.2%`.
pub fn pct(ratio: f64) -> String {
    format!("{:.1}%", ratio * 100.0)
}

/// `1234` → `1.2K`, `2_500_000` → `2.50M`.
pub fn fmt_count(v: f64) -> String {
    if !v.is_finite() {
        return UNKNOWN.to_string();
    }
    let a = v.abs();
    if a < 1000.0 {
        format!("{v:.0}")
    } else if a < 1e6 {
        format!("{:.1}K", v / 1e3)
    } else {
        format!("{:.2}M", v / 1e6)
    }
}

/// Nanoseconds, in the unit that keeps 3 significant digits: `850ns`, `25.3µs`, `1.20ms`.
pub fn fmt_ns(ns: u64) -> String {
    let v = ns as f64;
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{:.1}µs", v / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2}ms", v / 1e6)
    } else {
        format!("{:.2}s", v / 1e9)
    }
}

/// Bytes: `512B`, `12.0KB`, `3.4MB`.
pub fn fmt_bytes(b: u64) -> String {
    let v = b as f64;
    if b < 1_000 {
        format!("{b}B")
    } else if b < 1_000_000 {
        format!("{:.1}KB", v / 1e3)
    } else {
        format!("{:.1}MB", v / 1e6)
    }
}

/// A link capacity in bytes/s, shown in bits: `10 Gb/s`, `100 Mb/s`.
pub fn fmt_link(bytes_per_s: f64) -> String {
    let bits = bytes_per_s * 8.0;
    if bits >= 1e9 {
        let g = format!("{:.3}", bits / 1e9);
        format!("{} Gb/s", g.trim_end_matches('0').trim_end_matches('.'))
    } else {
        format!("{:.0} Mb/s", bits / 1e6)
    }
}

/// A ratio as a text bar with its percentage: `███░░░ 52%`. Ratios above 1 fill the bar and
/// still print their value.
pub fn bar(ratio: f64, width: usize) -> String {
    let r = if ratio.is_finite() {
        ratio.max(0.0)
    } else {
        0.0
    };
    let filled = ((r.min(1.0) * width as f64).round() as usize).min(width);
    format!(
        "{}{} {:.0}%",
        "█".repeat(filled),
        "░".repeat(width - filled),
        r * 100.0
    )
}

/// One sparkline: a title with the latest value and the series, oldest first.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// "IOPS (all)", "reactor 0 useful %"…
    pub title: String,
    /// The newest value, formatted.
    pub latest: String,
    /// Values, oldest first (scaled to integers: ratios in per-mille).
    pub points: Vec<u64>,
    /// The scale's top, when fixed (ratios: 1000); `None` = the series' own maximum.
    pub max: Option<u64>,
}

fn series(
    history: &[WindowSummary],
    title: String,
    value: impl Fn(&WindowSummary) -> Option<f64>,
    fmt: impl Fn(f64) -> String,
    per_mille: bool,
) -> Series {
    let scale = if per_mille { 1000.0 } else { 1.0 };
    let points: Vec<u64> = history
        .iter()
        .map(|h| value(h).map_or(0, |v| (v * scale).max(0.0).round() as u64))
        .collect();
    let latest = history
        .last()
        .and_then(&value)
        .map_or_else(|| UNKNOWN.to_string(), fmt);
    Series {
        title,
        latest,
        points,
        max: per_mille.then_some(1000),
    }
}

/// The two sparklines of a view: the whole target, and the selected row where history has one.
pub fn sparklines(view: View, snap: &Snapshot, selected: Option<&TableRow>) -> Vec<Series> {
    let h = &snap.history;
    let total_iops = series(
        h,
        "IOPS, all reactors".into(),
        |s| Some(s.iops),
        fmt_count,
        false,
    );
    let p99 = series(
        h,
        "p99 latency".into(),
        |s| (s.p99_ns > 0).then_some(s.p99_ns as f64),
        |v| fmt_ns(v as u64),
        false,
    );
    let reactor_index = |row: &TableRow| match row.cells.first().map(|c| &c.key) {
        Some(SortKey::Num(v)) => Some(*v as u32),
        _ => None,
    };
    match (view, selected) {
        (View::Reactors, Some(row)) => {
            let Some(idx) = reactor_index(row) else {
                return vec![total_iops, p99];
            };
            let find = move |s: &WindowSummary| s.reactors.iter().find(|r| r.index == idx).cloned();
            vec![
                series(
                    h,
                    format!("reactor {idx} IOPS"),
                    move |s| find(s).map(|r| r.iops),
                    fmt_count,
                    false,
                ),
                series(
                    h,
                    format!("reactor {idx} useful"),
                    move |s| find(s).map(|r| r.busy_ratio),
                    pct,
                    true,
                ),
            ]
        }
        (View::Netdevs, Some(row)) => {
            let name = row
                .cells
                .first()
                .map(|c| c.text.clone())
                .unwrap_or_default();
            let n1 = name.clone();
            let n2 = name.clone();
            // A netdev's or an RDMA port's figures (ports are named `device/port`).
            fn link<'s>(
                s: &'s WindowSummary,
                name: &str,
            ) -> Option<&'s (String, f64, Option<f64>)> {
                s.netdevs
                    .iter()
                    .chain(s.rdma_ports.iter())
                    .find(|n| n.0 == name)
            }
            vec![
                series(
                    h,
                    format!("{name} rx+tx MB/s"),
                    move |s| link(s, &n1).map(|n| n.1),
                    |v| format!("{:.1}", v / 1e6),
                    false,
                ),
                series(
                    h,
                    format!("{name} utilisation"),
                    move |s| link(s, &n2).and_then(|n| n.2),
                    pct,
                    true,
                ),
            ]
        }
        _ => vec![total_iops, p99],
    }
}

/// The time span of the history (s).
pub fn history_seconds(h: &[WindowSummary]) -> f64 {
    h.iter().map(|s| s.seconds).sum()
}

/// The target's lifecycle as the header says it: `attached`, `reattached (instance 2)`,
/// `GONE: why`, `WAITING: why`; `None` for a snapshot without one (recordings, tests).
pub fn lifecycle_label(snap: &Snapshot) -> Option<String> {
    use agent_core::lifecycle::TargetState;
    let l = snap.lifecycle.as_ref()?;
    Some(match l.state {
        TargetState::Attached => "attached".to_string(),
        TargetState::Reattached => format!("reattached (instance {})", l.attachments),
        TargetState::Gone => format!("GONE: {}", l.reason),
        TargetState::Waiting => format!("WAITING: {}", l.reason),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_keep_three_significant_digits_and_units() {
        assert_eq!(fmt_count(999.0), "999");
        assert_eq!(fmt_count(47_250.0), "47.2K");
        assert_eq!(fmt_count(2_500_000.0), "2.50M");
        assert_eq!(fmt_ns(850), "850ns");
        assert_eq!(fmt_ns(25_300), "25.3µs");
        assert_eq!(fmt_ns(1_200_000), "1.20ms");
        assert_eq!(fmt_link(10e9 / 8.0), "10 Gb/s");
        assert_eq!(fmt_link(2.5e9 / 8.0), "2.5 Gb/s");
        assert_eq!(fmt_link(100e6 / 8.0), "100 Mb/s");
        assert_eq!(bar(0.5, 4), "██░░ 50%");
        assert_eq!(bar(1.7, 4), "████ 170%");
        assert_eq!(bar(f64::NAN, 2), "░░ 0%");
        assert_eq!(fmt_value(70.148), "70.1");
        assert_eq!(fmt_value(5494.941), "5495");
        assert_eq!(fmt_value(32.0), "32");
        assert_eq!(fmt_value(0.05), "0.050");
    }

    #[test]
    fn missing_values_sort_last_in_both_directions() {
        let row = |k: SortKey| TableRow {
            name: format!("{k:?}"),
            cells: vec![Cell {
                text: String::new(),
                key: k,
            }],
            alert: None,
        };
        let mut rows = vec![
            row(SortKey::Missing),
            row(SortKey::Num(1.0)),
            row(SortKey::Num(3.0)),
        ];
        sort_rows(&mut rows, 0, true);
        assert_eq!(rows[0].cells[0].key, SortKey::Num(3.0));
        assert_eq!(rows[2].cells[0].key, SortKey::Missing);
        sort_rows(&mut rows, 0, false);
        assert_eq!(rows[0].cells[0].key, SortKey::Num(1.0));
        assert_eq!(rows[2].cells[0].key, SortKey::Missing);
    }
}
