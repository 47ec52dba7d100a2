//! The snapshot as plain text: every view's table one after another, then the findings with
//! their evidence, the recommendations with their fragments, and the sources. What
//! `ringside top --once` prints; built from the same [`model`](crate::model) tables as the live
//! view, with no terminal involved.

use std::fmt::Write as _;

use agent_core::Snapshot;

use crate::model::{self, fmt_count, fmt_ns, View, UNKNOWN};

/// The header line: target, window, totals.
pub fn header(snap: &Snapshot) -> String {
    let name = if snap.target.name.is_empty() {
        UNKNOWN
    } else {
        snap.target.name.as_str()
    };
    let mut s = format!(
        "ringside top │ {name} pid {} │ {} reactors",
        snap.target.pid,
        snap.target.reactors.len()
    );
    if let Some(l) = model::lifecycle_label(snap) {
        let _ = write!(s, " │ {l}");
    }
    if let Some(w) = &snap.window {
        let _ = write!(
            s,
            " │ window #{} {:.1}s │ {} IOPS {:.1} MB/s p50 {} p99 {}",
            snap.windows_seen,
            w.seconds(),
            fmt_count(w.total.iops),
            w.total.bytes_per_s / 1e6,
            w.total.latency.quantile(0.5).map_or(UNKNOWN.into(), fmt_ns),
            w.total
                .latency
                .quantile(0.99)
                .map_or(UNKNOWN.into(), fmt_ns),
        );
    }
    let n = snap.findings.len();
    if n > 0 {
        let _ = write!(s, " │ {n} finding{}", if n == 1 { "" } else { "s" });
    }
    s
}

fn pad(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n >= width {
        format!("{s} ")
    } else {
        format!("{s}{}", " ".repeat(width - n + 1))
    }
}

/// The whole snapshot as text, lines without trailing spaces, ending in a newline.
pub fn report(snap: &Snapshot) -> String {
    let mut out = header(snap);
    out.push('\n');
    if snap.window.is_none() {
        out.push_str("\nwaiting for the first window\n");
    } else {
        for view in [View::Reactors, View::Qpairs, View::Netdevs, View::Devices] {
            let _ = writeln!(out, "\n{}", view.title());
            let rows = model::rows(view, snap);
            let cols = view.columns();
            if rows.is_empty() {
                out.push_str("(none in this window)\n");
                continue;
            }
            let header: String = cols
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if i + 1 == cols.len() {
                        c.title.to_string()
                    } else {
                        pad(c.title, usize::from(c.width))
                    }
                })
                .collect();
            let _ = writeln!(out, "{}", header.trim_end());
            for r in rows {
                let line: String = r
                    .cells
                    .iter()
                    .zip(cols)
                    .enumerate()
                    .map(|(i, (cell, c))| {
                        if i + 1 == cols.len() {
                            cell.text.clone()
                        } else {
                            pad(&cell.text, usize::from(c.width))
                        }
                    })
                    .collect();
                let _ = writeln!(out, "{}", line.trim_end());
            }
        }
    }
    let _ = writeln!(out, "\nFindings");
    if snap.findings.is_empty() {
        let _ = writeln!(
            out,
            "(none after {} window{})",
            snap.windows_seen,
            if snap.windows_seen == 1 { "" } else { "s" }
        );
    }
    for f in &snap.findings {
        let _ = writeln!(
            out,
            "{} {} {}: {} (held {} windows, confidence {:.0}%)",
            f.severity.name(),
            f.kind.name(),
            f.subject,
            f.summary,
            f.windows,
            f.confidence * 100.0
        );
        for e in &f.evidence {
            let _ = writeln!(
                out,
                "  {}: {} {}",
                e.what,
                model::fmt_value(e.value),
                e.unit
            );
        }
    }
    if !snap.recommendations.is_empty() {
        let _ = writeln!(out, "\nRecommendations");
        for r in &snap.recommendations {
            let _ = writeln!(
                out,
                "{}: {} → {} ({}): {}",
                r.setting.name(),
                r.current,
                r.proposed,
                r.applies_to,
                r.expected_effect
            );
            for l in r.fragment.lines() {
                let _ = writeln!(out, "    {l}");
            }
        }
    }
    if !snap.target.capabilities.is_empty() {
        let _ = writeln!(out, "\nSources");
        for c in &snap.target.capabilities {
            let state = if c.available { "ok" } else { "unavailable" };
            let _ = writeln!(out, "{} ({state}): {}", c.name, c.note);
        }
    }
    out.lines()
        .map(|l| l.trim_end())
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}
