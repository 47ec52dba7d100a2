//! The one-shot diagnosis report (`ringside diagnose`, `ringside report`): its model and its
//! Markdown, HTML and JSON renderings.
//!
//! Pure: built from what the analyzer produced over a session (the whole-run window between the
//! first and last sample, the per-window summaries, every finding raised, the recommendations)
//! and rendered to strings. The HTML is self-contained: inline CSS and SVG charts, no scripts,
//! no external resources.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::finding::{Finding, Recommendation};
use crate::hist::Hist;
use crate::requests::TailAttribution;
use crate::sample::TargetInfo;
use crate::snapshot::WindowSummary;
use crate::topology::Topology;
use crate::window::Window;

/// What the agent itself cost while it watched.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentCost {
    /// CPU time used by the agent (user + system), seconds.
    pub cpu_seconds: f64,
    /// Wall time watched, seconds.
    pub wall_seconds: f64,
    /// Peak resident memory, bytes.
    pub max_rss_bytes: u64,
    /// Time the agent's own threads ran on the reactors' cores (kernel probes), seconds: its
    /// preemptions of the target, counted here and never as a finding.
    #[serde(default)]
    pub on_reactor_cores_seconds: f64,
}

impl AgentCost {
    /// CPU share of one core, 0..1.
    pub fn core_share(&self) -> f64 {
        if self.wall_seconds > 0.0 {
            self.cpu_seconds / self.wall_seconds
        } else {
            0.0
        }
    }
}

/// A diagnosis report.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// What the target is.
    pub target: TargetInfo,
    /// The machine analysed against.
    pub topology: Topology,
    /// The whole run as one window (first sample to last sample).
    pub overall: Option<Window>,
    /// Per-window figures, oldest first.
    pub timeline: Vec<WindowSummary>,
    /// Every finding raised during the run (latest state), most severe first.
    pub findings: Vec<Finding>,
    /// Recommendations at the end of the run.
    pub recommendations: Vec<Recommendation>,
    /// The agent's own cost, when measured (live sessions).
    pub agent_cost: Option<AgentCost>,
    /// Where the data came from: "live" or the recording's path.
    pub source: String,
    /// Tail attribution (the slow requests' stages and the kernel events that overlapped them),
    /// from the window where a cause explained the most, when request records were read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<TailAttribution>,
    /// What happened to the target during a live session (waited for it, it went away, a new
    /// instance replaced it), one sentence each with its time; empty when it stayed attached.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lifecycle: Vec<String>,
}

fn us(ns: u64) -> String {
    if ns >= 10_000_000 {
        format!("{:.1} ms", ns as f64 / 1e6)
    } else if ns >= 10_000 {
        format!("{:.0} µs", ns as f64 / 1e3)
    } else {
        format!("{:.1} µs", ns as f64 / 1e3)
    }
}

fn q_us(h: &Hist, q: f64) -> String {
    h.quantile(q).map_or_else(|| "—".to_string(), us)
}

/// `47.1K`, `1.23M`.
pub fn si(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.2}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.1}K", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn pct(v: f64) -> String {
    format!("{:.1} %", v * 100.0)
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or_else(|| "—".to_string(), f)
}

fn mb(bytes_per_s: f64) -> String {
    format!("{:.1} MB/s", bytes_per_s / 1e6)
}

impl Report {
    /// Markdown for a terminal or a ticket.
    pub fn to_markdown(&self) -> String {
        let mut o = String::new();
        let t = &self.target;
        let _ = writeln!(o, "# ringside diagnosis: {} (pid {})\n", t.name, t.pid);
        let secs = self.overall.as_ref().map_or(0.0, Window::seconds);
        let _ = writeln!(
            o,
            "Watched {:.1} s in {} windows; source: {}; topology: {}.\n",
            secs,
            self.timeline.len(),
            self.source,
            if self.topology.source.is_empty() {
                "unknown"
            } else {
                &self.topology.source
            }
        );
        for l in &self.lifecycle {
            let _ = writeln!(o, "**Target lifecycle:** {l}\n");
        }
        if let Some(w) = &self.overall {
            let _ = writeln!(
                o,
                "**{} IOPS**, {}, p50 {}, p99 {}, over {} reactor(s) on core(s) {:?}.\n",
                si(w.total.iops),
                mb(w.total.bytes_per_s),
                q_us(&w.total.latency, 0.5),
                q_us(&w.total.latency, 0.99),
                w.reactors.len(),
                t.settings.cores
            );
        }

        let _ = writeln!(o, "## Findings\n");
        if self.findings.is_empty() {
            let _ = writeln!(
                o,
                "No fault held for long enough to be reported (each needs several consecutive windows).\n"
            );
        }
        for (i, f) in self.findings.iter().enumerate() {
            let _ = writeln!(
                o,
                "### {}. [{}] {} — {}\n\n{}\n",
                i + 1,
                f.severity.name(),
                f.kind.name(),
                f.subject,
                f.summary
            );
            let _ = writeln!(o, "| evidence | value |\n|---|---|");
            for e in &f.evidence {
                let value = format!("{} {}", fmt_num(e.value), e.unit);
                let _ = writeln!(o, "| {} | {} |", e.what, value.trim_end());
            }
            let _ = writeln!(
                o,
                "\nHeld for {} window(s); confidence {:.0} %.\n",
                f.windows,
                f.confidence * 100.0
            );
        }

        let _ = writeln!(o, "## Recommendations\n");
        if self.recommendations.is_empty() {
            let _ = writeln!(o, "Nothing to change.\n");
        }
        for r in &self.recommendations {
            let _ = writeln!(
                o,
                "### {} ({}): {} → {}\n\nExpected: {}\n",
                r.setting.name(),
                r.applies_to,
                r.current,
                r.proposed,
                r.expected_effect
            );
            for e in &r.evidence {
                let _ = writeln!(o, "- {e}");
            }
            let lang = if r.applies_to == "ringside-tgt" {
                "toml"
            } else {
                "sh"
            };
            let _ = writeln!(o, "\n```{lang}\n{}\n```\n", r.fragment.trim_end());
        }

        if let Some(w) = &self.overall {
            let _ = writeln!(o, "## Reactors\n");
            let _ = writeln!(
                o,
                "| reactor | core | node | IOPS | busy | ns/I/O | p50 | p99 | on-CPU | run-queue wait | inv. switches/s |\n|---|---|---|---|---|---|---|---|---|---|---|"
            );
            for r in &w.reactors {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    r.index,
                    r.core,
                    opt(r.node, |n| n.to_string()),
                    si(r.iops),
                    pct(r.busy_ratio),
                    opt(r.ns_per_io, |v| format!("{v:.0}")),
                    q_us(&r.latency, 0.5),
                    q_us(&r.latency, 0.99),
                    opt(r.cpu_ratio, pct),
                    opt(r.runqueue_wait_ratio, pct),
                    opt(r.involuntary_switches_per_s, |v| format!("{v:.0}")),
                );
            }
            let stages: Vec<_> = w
                .reactors
                .iter()
                .flat_map(|r| r.stages.iter().map(move |(n, h)| (r.index, n, h)))
                .filter(|(_, _, h)| h.count() > 0)
                .collect();
            if !stages.is_empty() {
                let _ = writeln!(
                    o,
                    "\n### Stages\n\n| reactor | stage | count | mean | p50 | p99 |\n|---|---|---|---|---|---|"
                );
                for (r, n, h) in stages {
                    let _ = writeln!(
                        o,
                        "| {r} | {n} | {} | {} | {} | {} |",
                        h.count(),
                        opt(h.mean(), |m| us(m as u64)),
                        q_us(h, 0.5),
                        q_us(h, 0.99)
                    );
                }
            }
            let rdma: Vec<_> = w
                .reactors
                .iter()
                .filter_map(|r| r.rdma.as_ref().map(|x| (r.index, x)))
                .collect();
            if !rdma.is_empty() {
                let _ = writeln!(
                    o,
                    "\n### RDMA\n\n| reactor | completions/s | per nonempty CQ poll | per CQ poll | WRs per doorbell | pending send WRs (high water) | SRQ depth / size | SRQ low water |\n|---|---|---|---|---|---|---|---|"
                );
                let secs = w.seconds();
                for (index, x) in rdma {
                    let per_s = if secs > 0.0 {
                        x.completions as f64 / secs
                    } else {
                        0.0
                    };
                    let _ = writeln!(
                        o,
                        "| {index} | {} | {} | {} | {} | {} ({}) | {} / {} | {}{} |",
                        si(per_s),
                        opt(x.completions_per_nonempty_poll, |v| format!("{v:.2}")),
                        opt(x.completions_per_poll, |v| format!("{v:.2}")),
                        opt(x.wrs_per_doorbell, |v| format!("{v:.2}")),
                        x.pending_wrs,
                        x.pending_wrs_high_water,
                        x.srq_depth,
                        x.srq_size,
                        x.srq_low_water,
                        if x.srq_ran_dry { " (ran dry)" } else { "" }
                    );
                }
            }
            if !w.qpairs.is_empty() {
                let _ = writeln!(
                    o,
                    "\n## Qpairs\n\n| qpair | cntlid.qid | IOPS | avg outstanding | queue size | p50 | p99 |\n|---|---|---|---|---|---|---|"
                );
                for q in &w.qpairs {
                    let _ = writeln!(
                        o,
                        "| {}.{} | {}.{} | {} | {:.2} | {} | {} | {} |",
                        q.reactor,
                        q.slot,
                        q.ident >> 16,
                        q.ident & 0xffff,
                        si(q.iops),
                        q.avg_outstanding,
                        opt(q.queue_size, |s| s.to_string()),
                        q_us(&q.latency, 0.5),
                        q_us(&q.latency, 0.99)
                    );
                }
            }
            if !w.netdevs.is_empty() {
                let _ = writeln!(
                    o,
                    "\n## Links\n\n| netdev | rx | tx | capacity | utilisation | qdisc backlog | qdisc drops |\n|---|---|---|---|---|---|---|"
                );
                for n in &w.netdevs {
                    let _ = writeln!(
                        o,
                        "| {} | {} | {} | {} | {} | {} B | {} |",
                        n.name,
                        mb(n.rx_bytes_per_s),
                        mb(n.tx_bytes_per_s),
                        opt(n.capacity_bytes_per_s, mb),
                        opt(n.utilisation, pct),
                        n.qdisc_backlog_bytes,
                        n.qdisc_drops
                    );
                }
            }
            if !w.rdma_ports.is_empty() {
                let _ = writeln!(
                    o,
                    "\n## RDMA ports\n\n| port | kind | netdev | link layer | state | rate | rx | tx | utilisation | retransmit-class events |\n|---|---|---|---|---|---|---|---|---|---|"
                );
                for p in &w.rdma_ports {
                    let events: Vec<String> = p
                        .retransmits
                        .iter()
                        .map(|(k, v)| format!("{k} {v}"))
                        .collect();
                    let _ = writeln!(
                        o,
                        "| {}/{} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                        p.device,
                        p.port,
                        if p.soft {
                            "software (counted on its netdev)"
                        } else {
                            "hardware"
                        },
                        p.netdev.as_deref().unwrap_or("—"),
                        p.link_layer.as_deref().unwrap_or("—"),
                        p.state.as_deref().unwrap_or("—"),
                        opt(p.rate_bits_per_s, |r| format!("{:.1} Gb/s", r as f64 / 1e9)),
                        opt(p.rx_bytes_per_s, mb),
                        opt(p.tx_bytes_per_s, mb),
                        opt(p.utilisation, pct),
                        if events.is_empty() {
                            "0".to_string()
                        } else {
                            events.join(", ")
                        }
                    );
                }
            }
            if !w.devices.is_empty() {
                let _ = writeln!(
                    o,
                    "\n## Devices\n\n| device | IOPS | throughput | mean service | utilisation | block layer p50 / p99 (eBPF) |\n|---|---|---|---|---|---|"
                );
                for d in &w.devices {
                    let kernel = d.kernel.as_ref().map_or("-".to_string(), |k| {
                        format!(
                            "≤ {} / ≤ {}",
                            opt(k.p50_us, |v| format!("{v:.0} µs")),
                            opt(k.p99_us, |v| format!("{v:.0} µs"))
                        )
                    });
                    let _ = writeln!(
                        o,
                        "| {} | {} | {} | {} | {} | {kernel} |",
                        d.name,
                        si(d.iops),
                        mb(d.bytes_per_s),
                        opt(d.avg_latency_us, |v| format!("{v:.0} µs")),
                        pct(d.utilisation)
                    );
                }
            }
            if let Some(m) = &w.memory {
                let _ = writeln!(o, "\n## Memory placement\n");
                let by = |v: &[(u32, u64)]| {
                    v.iter()
                        .map(|(n, b)| format!("node {n}: {:.1} MiB", *b as f64 / 1048576.0))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let _ = writeln!(
                    o,
                    "- buffers: {}\n- all mappings: {}\n- policy of the largest buffer: {}",
                    by(&m.buffer_bytes_by_node),
                    by(&m.total_bytes_by_node),
                    m.policy.as_deref().unwrap_or("unknown")
                );
            }
        }

        if let Some(t) = &self.tail {
            o.push_str(&tail_markdown(t));
        }
        let _ = writeln!(o, "\n## Data sources\n");
        for c in &t.capabilities {
            let _ = writeln!(
                o,
                "- {} {}: {}",
                if c.available { "✓" } else { "✗" },
                c.name,
                c.note
            );
        }
        if let Some(c) = &self.agent_cost {
            let _ = writeln!(
                o,
                "\nAgent cost: {:.3} s CPU over {:.1} s ({:.2} % of one core), peak RSS {:.1} MiB.",
                c.cpu_seconds,
                c.wall_seconds,
                c.core_share() * 100.0,
                c.max_rss_bytes as f64 / 1048576.0
            );
            if c.on_reactor_cores_seconds > 0.0 {
                let _ = writeln!(
                    o,
                    "Its own threads ran {:.1} ms on the reactors' cores (counted here, not as preemption of the target).",
                    c.on_reactor_cores_seconds * 1e3
                );
            }
        }
        o
    }

    /// Self-contained HTML with charts. `topology_svg` is the topology picture (rendered by the
    /// caller, empty for none).
    pub fn to_html(&self, topology_svg: &str) -> String {
        let mut o = String::new();
        let title = format!(
            "ringside diagnosis: {} (pid {})",
            esc(&self.target.name),
            self.target.pid
        );
        let _ = write!(
            o,
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{title}</title><style>\
body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}}\
table{{border-collapse:collapse;margin:.5em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}\
th{{background:#f3f3f3}}td:first-child,th:first-child{{text-align:left}}\
.critical{{color:#b00}}.warning{{color:#b60}}.info{{color:#06c}}pre{{background:#f6f6f6;padding:.6em}}\
svg text{{font-size:11px;font-family:sans-serif}}</style></head><body><h1>{title}</h1>"
        );
        // The Markdown body carries every table; render the parts that need charts natively and
        // include the rest as preformatted Markdown-derived HTML tables.
        if let Some(w) = &self.overall {
            let _ = write!(
                o,
                "<p><b>{} IOPS</b>, {}, p50 {}, p99 {} over {} reactor(s); watched {:.1} s.</p>",
                si(w.total.iops),
                mb(w.total.bytes_per_s),
                q_us(&w.total.latency, 0.5),
                q_us(&w.total.latency, 0.99),
                w.reactors.len(),
                w.seconds()
            );
        }
        for l in &self.lifecycle {
            let _ = write!(o, "<p><b>Target lifecycle:</b> {}</p>", esc(l));
        }
        let _ = write!(o, "<section id=\"findings\"><h2>Findings</h2>");
        if self.findings.is_empty() {
            let _ = write!(o, "<p>No fault held for long enough to be reported.</p>");
        }
        for f in &self.findings {
            let _ = write!(
                o,
                "<div class=\"finding {sev}\" data-kind=\"{}\"><h3 class=\"{sev}\">[{sev}] {} — {}</h3><p>{}</p><table><tr><th>evidence</th><th>value</th></tr>",
                f.kind.name(),
                f.kind.name(),
                esc(&f.subject.to_string()),
                esc(&f.summary),
                sev = f.severity.name()
            );
            for e in &f.evidence {
                let _ = write!(
                    o,
                    "<tr><td>{}</td><td>{} {}</td></tr>",
                    esc(&e.what),
                    fmt_num(e.value),
                    esc(&e.unit)
                );
            }
            let _ = write!(
                o,
                "</table><p>Held for {} window(s); confidence {:.0} %.</p></div>",
                f.windows,
                f.confidence * 100.0
            );
        }
        let _ = write!(
            o,
            "</section><section id=\"recommendations\"><h2>Recommendations</h2>"
        );
        for r in &self.recommendations {
            let _ = write!(
                o,
                "<h3>{} ({}): {} → {}</h3><p>Expected: {}</p><ul>",
                r.setting.name(),
                esc(&r.applies_to),
                esc(&r.current),
                esc(&r.proposed),
                esc(&r.expected_effect)
            );
            for e in &r.evidence {
                let _ = write!(o, "<li>{}</li>", esc(e));
            }
            let _ = write!(o, "</ul><pre>{}</pre>", esc(&r.fragment));
        }
        let _ = write!(o, "</section>");
        if let Some(t) = &self.tail {
            o.push_str(&tail_html(t));
        }
        let _ = write!(o, "<section id=\"charts\"><h2>IOPS over time</h2>");
        o.push_str(&self.series_chart(|s| {
            s.reactors
                .iter()
                .map(|r| (format!("reactor {}", r.index), r.iops))
                .collect()
        }));
        let _ = write!(o, "<h2>Latency over time (p50, p99)</h2>");
        o.push_str(&self.series_chart(|s| {
            vec![
                ("p50 µs".to_string(), s.p50_ns as f64 / 1e3),
                ("p99 µs".to_string(), s.p99_ns as f64 / 1e3),
            ]
        }));
        if let Some(w) = &self.overall {
            let _ = write!(o, "<h2>Latency distribution</h2>");
            for r in &w.reactors {
                if r.latency.count() > 0 {
                    let _ = write!(o, "<h3>reactor {}</h3>", r.index);
                    o.push_str(&histogram_chart(&r.latency));
                }
            }
        }
        let _ = write!(o, "</section>");
        if !topology_svg.is_empty() {
            let _ = write!(
                o,
                "<section id=\"topology\"><h2>Topology</h2>{topology_svg}</section>"
            );
        }
        let _ = write!(
            o,
            "<h2>Details</h2><pre>{}</pre></body></html>",
            esc(&self.to_markdown())
        );
        o
    }

    /// A line chart of named series over the timeline.
    fn series_chart(&self, f: impl Fn(&WindowSummary) -> Vec<(String, f64)>) -> String {
        let (w, h, pad) = (900.0, 220.0, 50.0);
        let points: Vec<Vec<(String, f64)>> = self.timeline.iter().map(&f).collect();
        if points.is_empty() {
            return "<p>No windows.</p>".into();
        }
        let mut names: Vec<String> = Vec::new();
        for p in &points {
            for (n, _) in p {
                if !names.contains(n) {
                    names.push(n.clone());
                }
            }
        }
        let max = points
            .iter()
            .flatten()
            .map(|(_, v)| *v)
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max)
            .max(1e-9);
        let n = points.len().max(2) - 1;
        let x = |i: usize| pad + (w - 2.0 * pad) * i as f64 / n as f64;
        let y = |v: f64| h - pad + -(h - 2.0 * pad) * (v / max);
        let colors = [
            "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
        ];
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\">\
<line x1=\"{pad}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#999\"/>\
<line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{b}\" stroke=\"#999\"/>\
<text x=\"2\" y=\"{t}\">{}</text><text x=\"2\" y=\"{b}\">0</text>",
            si(max),
            b = h - pad,
            r = w - pad,
            t = pad + 4.0
        );
        for (ci, name) in names.iter().enumerate() {
            let color = colors[ci % colors.len()];
            let pts: Vec<String> = points
                .iter()
                .enumerate()
                .filter_map(|(i, p)| {
                    p.iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| format!("{:.1},{:.1}", x(i), y(v.max(0.0))))
                })
                .collect();
            let _ = write!(
                s,
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\
<text x=\"{:.0}\" y=\"{:.0}\" fill=\"{color}\">{}</text>",
                pts.join(" "),
                pad + 10.0 + 120.0 * ci as f64,
                h - 10.0,
                esc(name)
            );
        }
        s.push_str("</svg>");
        s
    }
}

/// A bar chart of a latency histogram's non-empty buckets (log-linear, so bars are buckets).
fn cause_line(c: &crate::requests::TailCause) -> String {
    format!(
        "{} {}{}",
        c.cause.kind(),
        c.cause.who(),
        c.reactor
            .map(|r| format!(" on reactor {r}"))
            .unwrap_or_default()
    )
}

/// The tail attribution as Markdown.
fn tail_markdown(t: &TailAttribution) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "\n## Tail attribution\n\n{} request record(s) above p99 ({}; median {}) of {} requests in the window.\n",
        t.slow,
        us(t.threshold_ns),
        us(t.median_ns),
        t.requests
    );
    let _ = writeln!(
        o,
        "| stage | mean above p99 | mean at or under p99 |\n|---|---|---|"
    );
    for s in &t.stages {
        let _ = writeln!(
            o,
            "| {} | {} | {} |",
            s.name,
            us(s.slow_mean_ns as u64),
            us(s.typical_mean_ns as u64)
        );
    }
    if !t.causes.is_empty() {
        let _ = writeln!(
            o,
            "\n| kernel cause | slow requests overlapped | events | added delay (mean) | share of the tail |\n|---|---|---|---|---|"
        );
        for c in &t.causes {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} |",
                cause_line(c),
                c.requests,
                c.events,
                us(c.added_ns as u64),
                pct(if t.excess_ns > 0.0 {
                    c.explained_ns / t.excess_ns
                } else {
                    0.0
                })
            );
        }
    }
    if let Some(m) = &t.max {
        let stages: Vec<String> = m
            .request
            .stages
            .iter()
            .map(|(n, ns)| format!("{n} {}", us(*ns)))
            .collect();
        let _ = writeln!(
            o,
            "\nSlowest: qpair {}.{} cid {}, {} ({}){}",
            m.request.reactor,
            m.request.qpair,
            m.request.cid,
            us(m.request.total_ns),
            stages.join(", "),
            if m.overlapped.is_empty() {
                String::new()
            } else {
                format!(
                    "; overlapped by {}",
                    m.overlapped
                        .iter()
                        .map(|s| format!(
                            "{} {} ({})",
                            s.cause.kind(),
                            s.cause.who(),
                            us(s.end_ns.saturating_sub(s.start_ns))
                        ))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
    }
    o
}

/// Colours of stacked stages, in order.
const STAGE_COLOURS: [&str; 6] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948",
];

/// The tail attribution as an HTML section: a stacked bar per group (requests above p99, the
/// others) split by stage, and the kernel causes.
fn tail_html(t: &TailAttribution) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<section id=\"tail-attribution\"><h2>Tail attribution</h2><p>{} request record(s) above p99 ({}; median {}) of {} requests.</p>",
        t.slow,
        esc(&us(t.threshold_ns)),
        esc(&us(t.median_ns)),
        t.requests
    );
    let (w, bar_h, left) = (720.0, 26.0, 150.0);
    let rows = [
        (
            "above p99",
            t.stages.iter().map(|s| s.slow_mean_ns).collect::<Vec<_>>(),
        ),
        (
            "at or under p99",
            t.stages
                .iter()
                .map(|s| s.typical_mean_ns)
                .collect::<Vec<_>>(),
        ),
    ];
    let _ = write!(
        o,
        "<svg class=\"chart stage-breakdown\" width=\"{w}\" height=\"{}\" viewBox=\"0 0 {w} {}\">",
        3.0 * bar_h + 40.0,
        3.0 * bar_h + 40.0
    );
    for (i, (label, vals)) in rows.iter().enumerate() {
        let total: f64 = vals.iter().sum();
        let y = 10.0 + i as f64 * (bar_h + 10.0);
        let _ = write!(
            o,
            "<text x=\"0\" y=\"{}\">{label} ({})</text>",
            y + bar_h * 0.65,
            esc(&us(total as u64))
        );
        let mut x = left;
        for (j, v) in vals.iter().enumerate() {
            let width = if total > 0.0 {
                v / total * (w - left - 10.0)
            } else {
                0.0
            };
            let _ = write!(
                o,
                "<rect class=\"stage\" data-stage=\"{}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{width:.1}\" height=\"{bar_h}\" fill=\"{}\"><title>{}: {}</title></rect>",
                esc(&t.stages[j].name),
                STAGE_COLOURS[j % STAGE_COLOURS.len()],
                esc(&t.stages[j].name),
                esc(&us(*v as u64))
            );
            x += width;
        }
    }
    let ly = 2.0 * (bar_h + 10.0) + 25.0;
    let mut lx = left;
    for (j, s) in t.stages.iter().enumerate() {
        let _ = write!(
            o,
            "<rect x=\"{lx:.0}\" y=\"{:.0}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{:.0}\" y=\"{:.0}\">{}</text>",
            ly - 9.0,
            STAGE_COLOURS[j % STAGE_COLOURS.len()],
            lx + 14.0,
            ly,
            esc(&s.name)
        );
        lx += 110.0;
    }
    let _ = write!(o, "</svg>");
    let _ = write!(
        o,
        "<table class=\"tail-causes\"><tr><th>kernel cause</th><th>slow requests overlapped</th><th>events</th><th>added delay (mean)</th><th>share of the tail</th></tr>"
    );
    for c in &t.causes {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&cause_line(c)),
            c.requests,
            c.events,
            esc(&us(c.added_ns as u64)),
            esc(&pct(if t.excess_ns > 0.0 {
                c.explained_ns / t.excess_ns
            } else {
                0.0
            }))
        );
    }
    let _ = write!(o, "</table>");
    if let Some(m) = &t.max {
        let _ = write!(
            o,
            "<p class=\"slowest\">Slowest: qpair {}.{} cid {}, {}; {} kernel event(s) overlapped it.</p>",
            m.request.reactor,
            m.request.qpair,
            m.request.cid,
            esc(&us(m.request.total_ns)),
            m.overlapped.len()
        );
    }
    let _ = write!(o, "</section>");
    o
}

fn histogram_chart(h: &Hist) -> String {
    let buckets = h.buckets();
    let (w, hh, pad) = (900.0, 200.0, 40.0);
    let max = buckets.iter().map(|b| b.2).max().unwrap_or(1).max(1) as f64;
    let n = buckets.len().max(1) as f64;
    let bw = (w - 2.0 * pad) / n;
    let mut s = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{hh}\">");
    for (i, (lo, _hi, c)) in buckets.iter().enumerate() {
        let bh = (hh - 2.0 * pad) * (*c as f64 / max);
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#1f77b4\"><title>{}: {}</title></rect>",
            pad + bw * i as f64,
            hh - pad - bh,
            (bw - 1.0).max(1.0),
            bh,
            us(*lo),
            c
        );
    }
    if let (Some(first), Some(last)) = (buckets.first(), buckets.last()) {
        let _ = write!(
            s,
            "<text x=\"{pad}\" y=\"{}\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            hh - 10.0,
            us(first.0),
            w - pad,
            hh - 10.0,
            us(last.1)
        );
    }
    s.push_str("</svg>");
    s
}

fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "—".into();
    }
    if (v.fract() == 0.0 && v.abs() < 1e15) || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::{Evidence, FindingKind, Setting, Severity, Subject};
    use crate::window::ReactorWindow;

    fn report() -> Report {
        let mut lat = Hist::empty();
        for v in [20_000, 24_000, 24_500, 90_000] {
            lat.record(v);
        }
        let mut w = Window {
            start_ns: 0,
            end_ns: 10_000_000_000,
            ..Window::default()
        };
        w.reactors.push(ReactorWindow {
            index: 0,
            core: 0,
            iops: 47_100.0,
            busy_ratio: 0.15,
            latency: lat.clone(),
            ..ReactorWindow::default()
        });
        w.total.iops = 47_100.0;
        w.total.latency = lat;
        Report {
            target: TargetInfo {
                name: "demo<&>".into(),
                pid: 7,
                ..TargetInfo::default()
            },
            overall: Some(w.clone()),
            timeline: vec![WindowSummary::of(&w), WindowSummary::of(&w)],
            findings: vec![Finding {
                kind: FindingKind::InitiatorLimited,
                severity: Severity::Warning,
                subject: Subject::Qpair {
                    reactor: 0,
                    slot: 1,
                },
                summary: "qpair 0.1 keeps 1.0 request outstanding".into(),
                evidence: vec![Evidence::new("avg outstanding", 1.0, "")],
                windows: 5,
                since_ns: 0,
                until_ns: 5,
                confidence: 0.8,
                cost: None,
            }],
            recommendations: vec![Recommendation {
                setting: Setting::InitiatorQueueDepth,
                current: "1".into(),
                proposed: "16".into(),
                expected_effect: "~8x IOPS".into(),
                expected_iops: Some(380_000.0),
                expected_iops_range: None,
                expected_latency_us: None,
                evidence: vec!["Little's law".into()],
                addresses: vec![FindingKind::InitiatorLimited],
                applies_to: "initiator".into(),
                fragment: "ringside-perf -q 16".into(),
            }],
            agent_cost: Some(AgentCost {
                cpu_seconds: 0.1,
                wall_seconds: 10.0,
                max_rss_bytes: 8 << 20,
                on_reactor_cores_seconds: 0.0,
            }),
            source: "live".into(),
            tail: Some(crate::requests::TailAttribution {
                threshold_ns: 30_000,
                median_ns: 8_000,
                requests: 400_000,
                slow: 50,
                total_latency_ns: 3.2e9,
                excess_ns: 1.2e8,
                stages: vec![crate::requests::StageShare {
                    name: "backend".into(),
                    slow_mean_ns: 2_400_000.0,
                    typical_mean_ns: 1_100.0,
                }],
                causes: vec![crate::requests::TailCause {
                    cause: crate::requests::KernelCause::Preemption {
                        pid: 31_337,
                        comm: "hog<1>".into(),
                    },
                    reactor: Some(0),
                    requests: 40,
                    events: 10,
                    added_ns: 2_400_000.0,
                    explained_ns: 9.6e7,
                }],
                ..Default::default()
            }),
            ..Report::default()
        }
    }

    #[test]
    fn html_sections_have_stable_ids_and_the_tail_is_a_stacked_chart() {
        let html = report().to_html("<svg id=\"topo\"></svg>");
        for id in [
            "id=\"findings\"",
            "id=\"recommendations\"",
            "id=\"tail-attribution\"",
            "id=\"charts\"",
            "id=\"topology\"",
            "class=\"chart stage-breakdown\"",
            "data-stage=\"backend\"",
            "class=\"tail-causes\"",
            "data-kind=\"initiator_limited\"",
        ] {
            assert!(html.contains(id), "{id} missing");
        }
        assert!(html.contains("hog&lt;1&gt;"), "cause names are escaped");
        let md = report().to_markdown();
        assert!(
            md.contains("## Tail attribution")
                && md.contains("preemption hog<1> (pid 31337) on reactor 0 | 40 | 10"),
            "{md}"
        );
    }

    #[test]
    fn markdown_carries_findings_recommendations_and_tables() {
        let md = report().to_markdown();
        for needle in [
            "# ringside diagnosis: demo<&> (pid 7)",
            "**47.1K IOPS**",
            "[warning] initiator_limited — qpair 0.1",
            "| avg outstanding | 1 |",
            "initiator_queue_depth (initiator): 1 → 16",
            "```sh\nringside-perf -q 16\n```",
            "| 0 | 0 | — | 47.1K | 15.0 % |",
            "1.00 % of one core",
        ] {
            assert!(md.contains(needle), "missing {needle:?} in:\n{md}");
        }
    }

    #[test]
    fn html_is_self_contained_and_escaped() {
        let html = report().to_html("<svg id=\"topo\"></svg>");
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.ends_with("</html>"));
        assert!(html.contains("demo&lt;&amp;&gt;"), "name escaped");
        assert!(!html.contains("demo<&>"), "raw name leaked");
        assert!(html.contains("<polyline"), "a time chart");
        assert!(html.contains("<rect"), "a histogram chart");
        assert!(
            html.contains("<svg id=\"topo\">"),
            "topology picture embedded"
        );
        assert!(!html.contains("<script"), "no scripts");
        assert!(
            !html.contains("http://") || !html.contains("src=\"http"),
            "no external resources"
        );
    }

    #[test]
    fn an_empty_report_renders() {
        let r = Report::default();
        assert!(r.to_markdown().contains("No fault held"));
        assert!(r.to_html("").contains("No windows."));
    }

    #[test]
    fn rdma_reactors_and_ports_get_their_tables() {
        use crate::window::{RdmaPortWindow, RdmaReactorWindow};
        let mut r = report();
        assert!(
            !r.to_markdown().contains("RDMA"),
            "a TCP target shows no RDMA table"
        );
        let w = r.overall.as_mut().expect("overall");
        w.reactors[0].rdma = Some(RdmaReactorWindow {
            completions: 300_000,
            completions_per_nonempty_poll: Some(4.25),
            completions_per_poll: Some(0.5),
            wrs_per_doorbell: Some(3.0),
            pending_wrs: 7,
            pending_wrs_high_water: 64,
            srq_depth: 500,
            srq_low_water: 0,
            srq_size: 512,
            srq_ran_dry: true,
            ..RdmaReactorWindow::default()
        });
        w.rdma_ports.push(RdmaPortWindow {
            device: "rxe0".into(),
            port: 1,
            soft: true,
            netdev: Some("eth0".into()),
            rate_bits_per_s: Some(100_000_000_000),
            retransmits: [("rcvd_seq_err".to_string(), 3)].into_iter().collect(),
            ..RdmaPortWindow::default()
        });
        let md = r.to_markdown();
        for needle in [
            "### RDMA",
            "| 0 | 30.0K | 4.25 | 0.50 | 3.00 | 7 (64) | 500 / 512 | 0 (ran dry) |",
            "## RDMA ports",
            "| rxe0/1 | software (counted on its netdev) | eth0 |",
            "100.0 Gb/s",
            "rcvd_seq_err 3",
        ] {
            assert!(md.contains(needle), "missing {needle:?} in\n{md}");
        }
    }
}
