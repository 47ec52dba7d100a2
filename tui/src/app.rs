//! The state of the live view: which view, sort, filter, freeze, selection, the open finding,
//! and the snapshot on screen. Pure and terminal-free (no ratatui, no crossterm): keys arrive as
//! [`Key`]s, snapshots through [`App::push`], and [`crate::render`] draws whatever this holds,
//! so tests drive it exactly as a person would.
//!
//! Owned by the one thread running the loop ([`crate::run`]); nothing here is shared.

use agent_core::finding::Finding;
use agent_core::Snapshot;

use crate::model::{self, TableRow, View};

/// A key press, already decoded from the terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// A printable character.
    Char(char),
    /// A character with Control held.
    Ctrl(char),
    /// Enter.
    Enter,
    /// Escape.
    Esc,
    /// Tab.
    Tab,
    /// Shift-Tab.
    BackTab,
    /// Arrow up.
    Up,
    /// Arrow down.
    Down,
    /// Page up.
    PageUp,
    /// Page down.
    PageDown,
    /// Home.
    Home,
    /// End.
    End,
    /// Backspace.
    Backspace,
}

/// What the loop should do after a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Keep going (redraw).
    Continue,
    /// Leave the view and restore the terminal.
    Quit,
}

/// Sort state of one view.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sort {
    /// Column index.
    pub column: usize,
    /// Flip the column's natural direction (`r`).
    pub reversed: bool,
}

/// Everything the screen shows.
#[derive(Clone, Debug, Default)]
pub struct App {
    snapshot: Snapshot,
    /// The newest snapshot received while frozen (shown on unfreeze).
    pending: Option<Snapshot>,
    /// Snapshots received while frozen.
    missed: u64,
    received: u64,
    view_index: usize,
    sort: [Sort; 5],
    filter: String,
    editing_filter: bool,
    frozen: bool,
    /// Per view: the selected row's name (follows the row when the order changes) and index
    /// (used when that row is gone).
    selected: [(Option<String>, usize); 5],
    detail: Option<Finding>,
    help: bool,
    /// `ringside top --all`: every followed target, one line each on screen; `None` when
    /// following one target.
    fleet: Option<Vec<FleetEntry>>,
    /// The target shown below the fleet line (by name; the first one when it is gone).
    shown: Option<String>,
}

/// One followed target in `ringside top --all`: its name and lifecycle as the fleet line shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FleetEntry {
    /// Instance name.
    pub name: String,
    /// The lifecycle label (`attached`, `GONE: …`, `reattached (instance 2)`, `WAITING: …`).
    pub state: String,
    /// Attached and read now.
    pub live: bool,
}

impl App {
    /// An empty view, waiting for the first snapshot.
    pub fn new() -> App {
        App::default()
    }

    /// Offers a new snapshot. Shown at once unless frozen; while frozen it is kept aside and the
    /// screen does not change. Returns whether the screen now shows it.
    pub fn push(&mut self, snapshot: Snapshot) -> bool {
        self.received += 1;
        if self.frozen {
            self.pending = Some(snapshot);
            self.missed += 1;
            return false;
        }
        self.snapshot = snapshot;
        true
    }

    /// Offers the snapshots of every followed target (`ringside top --all`): the fleet line
    /// lists them all with their states, the rest of the screen shows the one chosen with `t`
    /// (the first while none is, or after the chosen one went). An empty fleet shows the waiting
    /// screen. Returns whether the screen now shows the new snapshot.
    pub fn push_fleet(&mut self, mut snapshots: Vec<Snapshot>) -> bool {
        self.fleet = Some(
            snapshots
                .iter()
                .map(|s| FleetEntry {
                    name: s.target.name.clone(),
                    state: crate::model::lifecycle_label(s).unwrap_or_default(),
                    live: s.lifecycle.as_ref().is_none_or(|l| l.state.is_live()),
                })
                .collect(),
        );
        let at = self
            .shown
            .as_ref()
            .and_then(|n| snapshots.iter().position(|s| &s.target.name == n))
            .unwrap_or(0);
        if at < snapshots.len() {
            let snap = snapshots.swap_remove(at);
            self.shown = Some(snap.target.name.clone());
            self.push(snap)
        } else {
            self.shown = None;
            self.push(Snapshot::default())
        }
    }

    /// The fleet line's entries (`ringside top --all`), `None` when following one target.
    pub fn fleet(&self) -> Option<&[FleetEntry]> {
        self.fleet.as_deref()
    }

    /// The target shown (`--all`), by name.
    pub fn shown(&self) -> Option<&str> {
        self.shown.as_deref()
    }

    /// Shows the next target of the fleet (`t`); it takes effect with the next snapshot.
    fn next_target(&mut self) {
        let Some(fleet) = &self.fleet else { return };
        if fleet.is_empty() {
            return;
        }
        let at = self
            .shown
            .as_ref()
            .and_then(|n| fleet.iter().position(|e| &e.name == n))
            .map_or(0, |i| (i + 1) % fleet.len());
        self.shown = Some(fleet[at].name.clone());
    }

    /// The snapshot on screen.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Snapshots received so far (including those held back while frozen).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The current view.
    pub fn view(&self) -> View {
        View::ALL[self.view_index]
    }

    /// Switches view.
    pub fn set_view(&mut self, view: View) {
        self.view_index = view.index();
        self.detail = None;
    }

    /// Frozen: new snapshots are held back.
    pub fn frozen(&self) -> bool {
        self.frozen
    }

    /// Snapshots held back since freezing.
    pub fn missed(&self) -> u64 {
        self.missed
    }

    /// The filter text.
    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// Whether keys currently edit the filter.
    pub fn editing_filter(&self) -> bool {
        self.editing_filter
    }

    /// The current view's sort.
    pub fn sort(&self) -> Sort {
        self.sort[self.view_index]
    }

    /// Whether the help overlay is open.
    pub fn help(&self) -> bool {
        self.help
    }

    /// The finding whose evidence pane is open: its current state when still raised, else the
    /// state it had when opened.
    pub fn detail(&self) -> Option<&Finding> {
        let d = self.detail.as_ref()?;
        Some(
            self.snapshot
                .findings
                .iter()
                .find(|f| f.kind == d.kind && f.subject == d.subject)
                .unwrap_or(d),
        )
    }

    /// Whether the open finding is still raised in the snapshot on screen.
    pub fn detail_is_current(&self) -> bool {
        self.detail.as_ref().is_some_and(|d| {
            self.snapshot
                .findings
                .iter()
                .any(|f| f.kind == d.kind && f.subject == d.subject)
        })
    }

    /// The current view's rows: filtered, then sorted.
    pub fn rows(&self) -> Vec<TableRow> {
        self.rows_of(self.view())
    }

    /// A view's rows: filtered, then sorted by that view's sort.
    pub fn rows_of(&self, view: View) -> Vec<TableRow> {
        let mut rows = model::rows(view, &self.snapshot);
        model::filter_rows(&mut rows, &self.filter);
        let sort = self.sort[view.index()];
        let desc = view
            .columns()
            .get(sort.column)
            .is_some_and(|c| c.desc_first)
            != sort.reversed;
        model::sort_rows(&mut rows, sort.column, desc);
        rows
    }

    /// Index of the selected row among `rows` (the current view's), if any row.
    pub fn selected_index(&self, rows: &[TableRow]) -> Option<usize> {
        if rows.is_empty() {
            return None;
        }
        let (name, index) = &self.selected[self.view_index];
        name.as_ref()
            .and_then(|n| rows.iter().position(|r| &r.name == n))
            .or(Some((*index).min(rows.len() - 1)))
    }

    fn select(&mut self, rows: &[TableRow], index: usize) {
        if let Some(r) = rows.get(index) {
            self.selected[self.view_index] = (Some(r.name.clone()), index);
        }
    }

    fn move_selection(&mut self, delta: isize) {
        let rows = self.rows();
        let Some(cur) = self.selected_index(&rows) else {
            return;
        };
        let last = rows.len() - 1;
        let next = if delta < 0 {
            cur.saturating_sub(delta.unsigned_abs())
        } else {
            (cur + delta as usize).min(last)
        };
        self.select(&rows, next);
    }

    /// Handles one key.
    pub fn handle_key(&mut self, key: Key) -> Action {
        if key == Key::Ctrl('c') {
            return Action::Quit;
        }
        if self.editing_filter {
            match key {
                Key::Enter => self.editing_filter = false,
                Key::Esc => {
                    self.editing_filter = false;
                    self.filter.clear();
                }
                Key::Backspace => {
                    self.filter.pop();
                }
                Key::Char(c) => self.filter.push(c),
                _ => {}
            }
            return Action::Continue;
        }
        if self.help {
            // Any key closes help; q still quits.
            self.help = false;
            if key == Key::Char('q') {
                return Action::Quit;
            }
            return Action::Continue;
        }
        match key {
            Key::Char('q') => return Action::Quit,
            Key::Tab => self.set_view(View::ALL[(self.view_index + 1) % View::ALL.len()]),
            Key::BackTab => {
                self.set_view(View::ALL[(self.view_index + View::ALL.len() - 1) % View::ALL.len()])
            }
            Key::Char(c @ '1'..='5') => {
                let i = usize::from(c as u8 - b'1');
                self.set_view(View::ALL[i]);
            }
            Key::Char('s') => {
                let n = self.view().columns().len();
                let s = &mut self.sort[self.view_index];
                s.column = (s.column + 1) % n;
                s.reversed = false;
            }
            Key::Char('S') => {
                let n = self.view().columns().len();
                let s = &mut self.sort[self.view_index];
                s.column = (s.column + n - 1) % n;
                s.reversed = false;
            }
            Key::Char('r') => {
                let s = &mut self.sort[self.view_index];
                s.reversed = !s.reversed;
            }
            Key::Char('/') => {
                self.editing_filter = true;
            }
            Key::Char('f') | Key::Char(' ') => self.toggle_freeze(),
            Key::Char('t') => self.next_target(),
            Key::Char('?') | Key::Char('h') => self.help = true,
            Key::Up | Key::Char('k') => self.move_selection(-1),
            Key::Down | Key::Char('j') => self.move_selection(1),
            Key::PageUp => self.move_selection(-10),
            Key::PageDown => self.move_selection(10),
            Key::Home | Key::Char('g') => self.move_selection(isize::MIN / 2),
            Key::End | Key::Char('G') => self.move_selection(isize::MAX / 2),
            Key::Enter => self.open_detail(),
            Key::Esc => {
                if self.detail.is_some() {
                    self.detail = None;
                } else {
                    self.filter.clear();
                }
            }
            _ => {}
        }
        Action::Continue
    }

    fn toggle_freeze(&mut self) {
        self.frozen = !self.frozen;
        if !self.frozen {
            if let Some(s) = self.pending.take() {
                self.snapshot = s;
            }
            self.missed = 0;
        }
    }

    fn open_detail(&mut self) {
        if self.detail.is_some() {
            self.detail = None;
            return;
        }
        if self.view() != View::Findings {
            // Enter elsewhere jumps to the findings about the selected row, when there are any.
            let rows = self.rows();
            let Some(i) = self.selected_index(&rows) else {
                return;
            };
            if rows[i].alert.is_some() {
                let subject = rows[i].name.clone();
                self.set_view(View::Findings);
                let frows = self.rows();
                if let Some(j) = frows.iter().position(|r| {
                    // Finding row names are "<kind> <subject>"; a qpair row name adds its reactor.
                    let s = r.name.split_once(' ').map_or("", |(_, s)| s);
                    subject == s || subject.starts_with(&format!("{s} "))
                }) {
                    self.select(&frows, j);
                }
            }
            return;
        }
        let rows = self.rows();
        let Some(i) = self.selected_index(&rows) else {
            return;
        };
        let key = &rows[i].name;
        self.detail = self
            .snapshot
            .findings
            .iter()
            .find(|f| &model::finding_key(f) == key)
            .cloned();
    }
}
