//! The live terminal view of `agent_core::Snapshot`s (`ringside top`).
//!
//! Three layers, as in bottom and bandwhich:
//! - [`App`] (module `app`) holds the state a person changes with keys (view, sort, filter,
//!   freeze, selection, the open finding) and the snapshot on screen; [`model`] turns a snapshot
//!   into tables and sparkline series. Neither imports ratatui.
//! - [`render`] (module `ui`) draws an `App` into a ratatui `Frame`, statelessly, so a
//!   `TestBackend` frame is exactly what a person sees.
//! - [`run`] (module `term`) is the only code that touches the real terminal: raw mode, the
//!   alternate screen, a panic hook that restores both, and the key/tick loop.
//!
//! [`text_report`] prints a snapshot without a terminal (`ringside top --once`): every view's
//! table, the findings with their evidence and the recommendations with their fragments;
//! [`render_text`] draws the live screen into a string.
#![forbid(unsafe_code)]

mod app;
pub mod model;
mod term;
mod text;
mod ui;

use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::Terminal;

pub use agent_core::Snapshot;
pub use app::{Action, App, FleetEntry, Key, Sort};
pub use model::View;
pub use term::{decode, run, run_fleet, TopOptions};
pub use text::{header as header_text, report as text_report};
pub use ui::{render, WAITING};

/// The rows of a buffer as text (one `String` per row, trailing spaces kept).
pub fn buffer_lines(buffer: &Buffer) -> Vec<String> {
    let area = buffer.area;
    (area.top()..area.bottom())
        .map(|y| {
            (area.left()..area.right())
                .filter_map(|x| buffer.cell((x, y)))
                .map(|c| c.symbol())
                .collect()
        })
        .collect()
}

/// Draws `app` into a `width` x `height` screen and returns it as text: trailing spaces and
/// trailing blank rows removed. What `ringside top --once` prints.
pub fn render_text(app: &App, width: u16, height: u16) -> String {
    let mut terminal = match Terminal::new(TestBackend::new(width, height)) {
        Ok(t) => t,
        Err(e) => match e {},
    };
    if let Err(e) = terminal.draw(|f| render(f, app)) {
        match e {}
    }
    let mut lines: Vec<String> = buffer_lines(terminal.backend().buffer())
        .into_iter()
        .map(|l| l.trim_end().to_string())
        .collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}
