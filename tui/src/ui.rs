//! Widgets: draw an [`App`] into a ratatui frame. Stateless: every frame is computed from the
//! app alone, so a `TestBackend` frame is exactly what a person sees.
//!
//! Layout, top to bottom: a header (target, window, totals, FROZEN), the view tabs, two
//! sparklines over the history, the view's table (or the findings table with the evidence pane),
//! a strip with the most severe findings while another view is shown, and the help/filter line.
//! Sections drop out on small terminals rather than overlap; nothing here can panic on a tiny
//! area.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Row, Sparkline, Table, TableState, Wrap};
use ratatui::Frame;

use agent_core::finding::{Finding, Severity};
use agent_core::Snapshot;

use crate::app::App;
use crate::model::{self, fmt_count, fmt_ns, Series, TableRow, View, UNKNOWN};

/// What the main area says before the first window closes.
pub const WAITING: &str = "waiting for the first window";

fn severity_style(s: Severity) -> Style {
    match s {
        Severity::Critical => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        Severity::Warning => Style::new().fg(Color::Yellow),
        Severity::Info => Style::new().fg(Color::Cyan),
    }
}

/// Draws the whole screen.
pub fn render(frame: &mut Frame<'_>, app: &App) {
    let area = frame.area();
    if area.width == 0 || area.height == 0 {
        return;
    }
    let snap = app.snapshot();
    let rows = app.rows();
    let selected = app.selected_index(&rows);

    let show_tabs = area.height >= 6;
    let show_sparks = area.height >= 18 && snap.window.is_some();
    let strip_lines = if app.view() != View::Findings && area.height >= 24 {
        snap.findings.len().min(3) as u16
    } else {
        0
    };
    let fleet_line = u16::from(app.fleet().is_some() && area.height >= 4);
    let [header, fleet, tabs, sparks, main, strip, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(fleet_line),
        Constraint::Length(u16::from(show_tabs)),
        Constraint::Length(if show_sparks { 4 } else { 0 }),
        Constraint::Min(1),
        Constraint::Length(strip_lines),
        Constraint::Length(1),
    ])
    .areas(area);

    draw_header(frame, app, header);
    if fleet_line > 0 {
        draw_fleet(frame, app, fleet);
    }
    if show_tabs {
        draw_tabs(frame, app, tabs);
    }
    if show_sparks {
        let series = model::sparklines(app.view(), snap, selected.and_then(|i| rows.get(i)));
        draw_sparklines(frame, snap, &series, sparks);
    }
    // Findings can outlive windows (a replayed snapshot); everything else needs a window.
    let findings_to_show = app.view() == View::Findings && !snap.findings.is_empty();
    if snap.window.is_none() && !findings_to_show {
        draw_waiting(frame, app, main);
    } else if app.view() == View::Findings {
        draw_findings(frame, app, &rows, selected, main);
    } else {
        draw_table(frame, app, &rows, selected, main);
    }
    if strip_lines > 0 {
        draw_strip(frame, snap, strip);
    }
    draw_footer(frame, app, footer);
    if app.help() {
        draw_help(frame, area);
    }
}

/// `top --all`: every followed target with its state; the one shown in brackets.
fn draw_fleet(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let fleet = app.fleet().unwrap_or_default();
    let mut spans = vec![Span::styled(
        format!("targets ({})", fleet.len()),
        Style::new().add_modifier(Modifier::BOLD),
    )];
    if fleet.is_empty() {
        spans.push(Span::raw(": none yet, waiting for one to start"));
    }
    for e in fleet {
        let style = if e.live {
            Style::new().fg(Color::Green)
        } else {
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
        };
        let shown = app.shown() == Some(e.name.as_str());
        spans.push(Span::raw(if shown { " │ [" } else { " │ " }));
        spans.push(Span::raw(format!("{} ", e.name)));
        spans.push(Span::styled(e.state.clone(), style));
        if shown {
            spans.push(Span::raw("]"));
        }
    }
    if fleet.len() > 1 {
        spans.push(Span::raw(" │ t: next target"));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_header(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let snap = app.snapshot();
    let mut spans = vec![Span::styled(
        "ringside top",
        Style::new().add_modifier(Modifier::BOLD),
    )];
    let name = if snap.target.name.is_empty() {
        UNKNOWN.to_string()
    } else {
        snap.target.name.clone()
    };
    spans.push(Span::raw(format!(" │ {name} pid {}", snap.target.pid)));
    spans.push(Span::raw(format!(
        " │ {} reactors",
        snap.target.reactors.len()
    )));
    if let Some(l) = crate::model::lifecycle_label(snap) {
        let style = match snap.lifecycle.as_ref().map(|l| l.state) {
            Some(s) if s.is_live() => Style::new().fg(Color::Green),
            _ => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        };
        spans.push(Span::raw(" │ "));
        spans.push(Span::styled(l, style));
    }
    if let Some(w) = &snap.window {
        spans.push(Span::raw(format!(
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
        )));
    }
    let n = snap.findings.len();
    if n > 0 {
        let worst = snap.findings.iter().map(|f| f.severity).max();
        let style = worst.map_or(Style::new(), severity_style);
        spans.push(Span::raw(" │ "));
        spans.push(Span::styled(
            format!("{n} finding{}", if n == 1 { "" } else { "s" }),
            style,
        ));
    }
    let [left, right] = Layout::horizontal([
        Constraint::Min(0),
        Constraint::Length(if app.frozen() { 18 } else { 0 }),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(Line::from(spans)), left);
    if app.frozen() {
        let text = match app.missed() {
            0 => " FROZEN ".to_string(),
            m => format!(" FROZEN (+{m}) "),
        };
        frame.render_widget(
            Paragraph::new(Span::styled(
                text,
                Style::new()
                    .fg(Color::Black)
                    .bg(Color::Yellow)
                    .add_modifier(Modifier::BOLD),
            ))
            .right_aligned(),
            right,
        );
    }
}

fn draw_tabs(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let snap = app.snapshot();
    let mut spans = Vec::new();
    for (i, v) in View::ALL.iter().enumerate() {
        let count = match v {
            View::Findings => format!(" ({})", snap.findings.len()),
            _ => String::new(),
        };
        let label = format!(" {} {}{} ", i + 1, v.title(), count);
        let style = if *v == app.view() {
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        } else {
            Style::new()
        };
        spans.push(Span::styled(label, style));
        spans.push(Span::raw(" "));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_sparklines(frame: &mut Frame<'_>, snap: &Snapshot, series: &[Series], area: Rect) {
    let constraints = vec![Constraint::Ratio(1, series.len().max(1) as u32); series.len()];
    let cols = Layout::horizontal(constraints).spacing(2).split(area);
    for (s, col) in series.iter().zip(cols.iter()) {
        let [title, chart] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(*col);
        let width = usize::from(chart.width);
        let shown = &s.points[s.points.len().saturating_sub(width)..];
        let span_s =
            model::history_seconds(&snap.history[snap.history.len().saturating_sub(shown.len())..]);
        let label = format!("{} {} (last {})", s.title, s.latest, fmt_span(span_s));
        frame.render_widget(
            Paragraph::new(Span::styled(label, Style::new().fg(Color::DarkGray))),
            title,
        );
        let mut spark = Sparkline::default()
            .data(shown.iter().copied())
            .style(Style::new().fg(Color::Green));
        if let Some(m) = s.max {
            spark = spark.max(m);
        }
        frame.render_widget(spark, chart);
    }
}

fn fmt_span(secs: f64) -> String {
    if secs >= 90.0 {
        format!("{:.0}m", secs / 60.0)
    } else {
        format!("{secs:.0}s")
    }
}

fn draw_waiting(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let snap = app.snapshot();
    let mut lines = vec![Line::from(format!("{WAITING}…"))];
    if app.received() == 0 {
        lines.push(Line::from("(no snapshot yet)"));
    } else {
        lines.push(Line::from(format!(
            "{} samples so far; a window needs two samples one interval apart",
            app.received()
        )));
    }
    for c in snap.target.capabilities.iter().filter(|c| !c.available) {
        lines.push(Line::from(Span::styled(
            format!("{}: {}", c.name, c.note),
            Style::new().fg(Color::DarkGray),
        )));
    }
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(Block::new().borders(Borders::TOP)),
        area,
    );
}

fn header_row(app: &App, view: View) -> Row<'static> {
    let sort = app.sort();
    let cols = view.columns();
    Row::new(cols.iter().enumerate().map(|(i, c)| {
        if i == sort.column {
            let desc = c.desc_first != sort.reversed;
            format!("{}{}", c.title, if desc { "▼" } else { "▲" })
        } else {
            c.title.to_string()
        }
    }))
    .style(Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED))
}

fn widths(view: View) -> Vec<Constraint> {
    let cols = view.columns();
    cols.iter()
        .enumerate()
        .map(|(i, c)| {
            if i + 1 == cols.len() {
                Constraint::Min(c.width)
            } else {
                Constraint::Length(c.width)
            }
        })
        .collect()
}

fn table<'a>(app: &App, view: View, rows: &'a [TableRow]) -> Table<'a> {
    let body = rows.iter().map(|r| {
        let style = r.alert.map_or(Style::new(), severity_style);
        Row::new(r.cells.iter().map(|c| c.text.as_str())).style(style)
    });
    Table::new(body, widths(view))
        .header(header_row(app, view))
        .column_spacing(1)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
}

fn empty_note(app: &App, view: View) -> String {
    let snap = app.snapshot();
    if !app.filter().is_empty() {
        return format!("no {} match the filter {:?}", view_noun(view), app.filter());
    }
    let source = match view {
        View::Netdevs => Some("netdev"),
        View::Devices => Some("block"),
        _ => None,
    };
    let why = source
        .and_then(|s| {
            snap.target
                .capabilities
                .iter()
                .find(|c| c.name == s && !c.available)
        })
        .map(|c| format!(" ({}: {})", c.name, c.note))
        .unwrap_or_default();
    format!("no {} in this window{why}", view_noun(view))
}

fn view_noun(view: View) -> &'static str {
    match view {
        View::Reactors => "reactors",
        View::Qpairs => "active qpairs",
        View::Netdevs => "netdevs",
        View::Devices => "block devices",
        View::Findings => "findings",
    }
}

fn draw_table(
    frame: &mut Frame<'_>,
    app: &App,
    rows: &[TableRow],
    selected: Option<usize>,
    area: Rect,
) {
    let view = app.view();
    if rows.is_empty() {
        let [head, note] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
        frame.render_widget(table(app, view, rows), head);
        frame.render_widget(
            Paragraph::new(empty_note(app, view)).wrap(Wrap { trim: true }),
            note,
        );
        return;
    }
    let mut state = TableState::new().with_selected(selected);
    frame.render_stateful_widget(table(app, view, rows), area, &mut state);
}

fn draw_findings(
    frame: &mut Frame<'_>,
    app: &App,
    rows: &[TableRow],
    selected: Option<usize>,
    area: Rect,
) {
    let snap = app.snapshot();
    let detail = app.detail();
    let lower_wanted = detail.is_some() || !snap.recommendations.is_empty();
    let table_height = if lower_wanted {
        (rows.len() as u16 + 2)
            .min(area.height / 2 + 1)
            .max(3)
            .min(area.height)
    } else {
        area.height
    };
    let [top, bottom] =
        Layout::vertical([Constraint::Length(table_height), Constraint::Min(0)]).areas(area);
    if rows.is_empty() {
        let [head, note] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(top);
        frame.render_widget(table(app, View::Findings, rows), head);
        let text = if !app.filter().is_empty() {
            empty_note(app, View::Findings)
        } else {
            format!(
                "no findings ({} windows analysed; a finding is raised after it holds for several windows)",
                snap.windows_seen
            )
        };
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), note);
    } else {
        let mut state = TableState::new().with_selected(selected);
        frame.render_stateful_widget(table(app, View::Findings, rows), top, &mut state);
    }
    if bottom.height == 0 {
        return;
    }
    let text = match detail {
        Some(f) => evidence_text(f, app.detail_is_current(), snap),
        None => recommendations_text(snap),
    };
    let title = if detail.is_some() {
        " evidence (enter/esc closes) "
    } else {
        " recommendations (select a finding, enter for its evidence) "
    };
    frame.render_widget(
        Paragraph::new(text)
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(title)),
        bottom,
    );
}

fn evidence_text(f: &Finding, current: bool, snap: &Snapshot) -> Text<'static> {
    let mut lines = vec![
        Line::from(vec![
            Span::styled(
                format!("{} ", f.severity.name().to_uppercase()),
                severity_style(f.severity),
            ),
            Span::styled(
                format!("{} on {}", f.kind.name(), f.subject),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Span::raw(if current {
                String::new()
            } else {
                "  (no longer raised)".to_string()
            }),
        ]),
        Line::from(f.summary.clone()),
        Line::from(format!(
            "held {} windows, confidence {:.0}%",
            f.windows,
            f.confidence * 100.0
        )),
        Line::from(Span::styled(
            "evidence:",
            Style::new().add_modifier(Modifier::BOLD),
        )),
    ];
    for e in &f.evidence {
        let value = model::fmt_value(e.value);
        lines.push(Line::from(format!("  {}: {value} {}", e.what, e.unit)));
    }
    let recs: Vec<_> = snap
        .recommendations
        .iter()
        .filter(|r| r.addresses.contains(&f.kind))
        .collect();
    if recs.is_empty() {
        lines.push(Line::from("no recommendation addresses this finding yet"));
    }
    for r in recs {
        lines.push(Line::from(Span::styled(
            format!(
                "recommendation: {} {} → {} ({})",
                r.setting.name(),
                r.current,
                r.proposed,
                r.applies_to
            ),
            Style::new().add_modifier(Modifier::BOLD),
        )));
        lines.push(Line::from(format!("  expected: {}", r.expected_effect)));
        for e in &r.evidence {
            lines.push(Line::from(format!("  because: {e}")));
        }
        for l in r.fragment.lines() {
            lines.push(Line::from(Span::styled(
                format!("    {l}"),
                Style::new().fg(Color::Green),
            )));
        }
    }
    Text::from(lines)
}

fn recommendations_text(snap: &Snapshot) -> Text<'static> {
    let mut lines = Vec::new();
    for r in &snap.recommendations {
        lines.push(Line::from(vec![
            Span::styled(
                format!("{}: {} → {}", r.setting.name(), r.current, r.proposed),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!("  {}", r.expected_effect)),
        ]));
        for l in r.fragment.lines() {
            lines.push(Line::from(Span::styled(
                format!("    {l}"),
                Style::new().fg(Color::Green),
            )));
        }
    }
    Text::from(lines)
}

fn draw_strip(frame: &mut Frame<'_>, snap: &Snapshot, area: Rect) {
    let lines: Vec<Line> = snap
        .findings
        .iter()
        .take(usize::from(area.height))
        .map(|f| {
            Line::from(vec![
                Span::styled(
                    format!("{:<8} ", f.severity.name()),
                    severity_style(f.severity),
                ),
                Span::raw(format!("{} {}: {}", f.kind.name(), f.subject, f.summary)),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), area);
}

fn draw_footer(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let key = Style::new().add_modifier(Modifier::BOLD);
    let line = if app.editing_filter() {
        Line::from(vec![
            Span::styled("/", key),
            Span::raw(app.filter().to_string()),
            Span::styled("█", Style::new().fg(Color::DarkGray)),
            Span::raw("   enter keep · esc clear"),
        ])
    } else {
        let sort = app.sort();
        let col = app
            .view()
            .columns()
            .get(sort.column)
            .map_or("", |c| c.title);
        let mut spans = vec![];
        for (k, what) in [("q", " quit  "), ("tab/1-5", " view  "), ("s", "")] {
            spans.push(Span::styled(k, key));
            spans.push(Span::raw(what));
        }
        spans.push(Span::raw(format!(" sort:{col}  ")));
        for (k, what) in [
            ("r", " reverse  "),
            ("/", " filter  "),
            (
                "f",
                if app.frozen() {
                    " resume  "
                } else {
                    " freeze  "
                },
            ),
            ("↑↓", " select  "),
            ("enter", " evidence  "),
            ("?", " help"),
        ] {
            spans.push(Span::styled(k, key));
            spans.push(Span::raw(what));
        }
        if !app.filter().is_empty() {
            spans.push(Span::styled(
                format!("  filter: {}", app.filter()),
                Style::new().fg(Color::Yellow),
            ));
        }
        Line::from(spans)
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn draw_help(frame: &mut Frame<'_>, area: Rect) {
    let lines = [
        "tab / shift-tab   next / previous view",
        "1-5               reactors, qpairs, netdevs, devices, findings",
        "s / S             sort by the next / previous column",
        "r                 reverse the sort",
        "/                 filter rows by name (enter keeps, esc clears)",
        "f / space         freeze (keep sampling, hold the screen) / resume",
        "t                 next target (top --all)",
        "↑↓ j k PgUp PgDn  select a row",
        "enter             findings: open the evidence pane; other views:",
        "                  jump to the findings about the selected row",
        "esc               close the pane / clear the filter",
        "q / ctrl-c        quit",
        "",
        "\"—\" means nobody measured it (a collector is missing).",
    ];
    let w = (lines.iter().map(|l| l.chars().count()).max().unwrap_or(0) as u16 + 4).min(area.width);
    let h = (lines.len() as u16 + 2).min(area.height);
    let popup = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines.iter().map(|l| Line::from(*l)).collect::<Vec<_>>())
            .block(Block::bordered().title(" keys (any key closes) ")),
        popup,
    );
}
