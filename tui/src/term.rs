//! The one module that owns the terminal: raw mode, the alternate screen, the hidden cursor, and
//! the event loop of `ringside top`.
//!
//! Threading: everything runs on the caller's thread. The loop polls the keyboard with a timeout
//! so it wakes at least every [`TopOptions::interval`] to call the snapshot source; the source
//! (the agent's session tick) therefore runs on this thread too and must not block for long.
//!
//! Restoring the terminal is guaranteed three ways: the [`TerminalGuard`]'s `Drop` (normal exit
//! and `?` errors), a panic hook installed for the loop's lifetime (restores before the panic
//! message is printed, so it is readable), and Ctrl-C, which raw mode delivers as a key and which
//! ends the loop normally. A SIGINT sent from elsewhere reaches the loop through
//! [`TopOptions::stop`] when the caller installs a handler.

use std::io::{self, IsTerminal, Stdout};
use std::panic::{self, PanicHookInfo};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossterm::cursor::{Hide, Show};
use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::execute;
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;

use agent_core::Snapshot;

use crate::app::{Action, App, Key};
use crate::ui::render;

/// How the live view runs.
#[derive(Clone, Debug)]
pub struct TopOptions {
    /// How often to ask for a new snapshot.
    pub interval: Duration,
    /// Set by someone else (a SIGINT handler) to end the loop.
    pub stop: Option<Arc<AtomicBool>>,
}

impl Default for TopOptions {
    fn default() -> TopOptions {
        TopOptions {
            interval: Duration::from_secs(1),
            stop: None,
        }
    }
}

/// Longest wait for a key before the loop re-checks the stop flag and redraws.
const MAX_POLL: Duration = Duration::from_millis(250);

/// Runs the live view until `q`, Ctrl-C or [`TopOptions::stop`].
///
/// `next` is called once at start and then every `opts.interval`; `Some` replaces the snapshot
/// (held back while frozen), `None` means nothing new. Errors only when the terminal cannot be
/// set up or written to; stdout must be a terminal.
pub fn run(mut next: impl FnMut() -> Option<Snapshot>, opts: TopOptions) -> io::Result<()> {
    run_app(move |app| next().map(|s| app.push(s)), opts)
}

/// [`run`] for `ringside top --all`: `next` returns the snapshots of every followed target (see
/// [`App::push_fleet`]); `t` switches the target shown.
pub fn run_fleet(
    mut next: impl FnMut() -> Option<Vec<Snapshot>>,
    opts: TopOptions,
) -> io::Result<()> {
    run_app(move |app| next().map(|s| app.push_fleet(s)), opts)
}

fn run_app(mut next: impl FnMut(&mut App) -> Option<bool>, opts: TopOptions) -> io::Result<()> {
    if !io::stdout().is_terminal() {
        return Err(io::Error::other(
            "the live view needs a terminal on stdout (use --once or --json)",
        ));
    }
    let interval = opts.interval.max(Duration::from_millis(10));
    let mut app = App::new();
    let mut guard = TerminalGuard::enter()?;
    next(&mut app);
    let mut due = Instant::now() + interval;
    loop {
        guard.terminal.draw(|f| render(f, &app))?;
        if opts
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
        {
            break;
        }
        let now = Instant::now();
        let wait = due.saturating_duration_since(now).min(MAX_POLL);
        if event::poll(wait)? {
            if let Event::Key(k) = event::read()? {
                if let Some(key) = decode(k) {
                    if app.handle_key(key) == Action::Quit {
                        break;
                    }
                }
            }
            // Resize and other events just redraw.
        }
        let now = Instant::now();
        if now >= due {
            // Keep sampling while frozen: windows stay one interval long and the newest snapshot
            // is ready the moment the view resumes.
            next(&mut app);
            due += interval;
            if due <= now {
                // The source was slow; do not try to catch up with a burst of ticks.
                due = now + interval;
            }
        }
    }
    drop(guard);
    Ok(())
}

/// Maps a terminal key event to a [`Key`]; releases and unknown keys are `None`.
pub fn decode(k: KeyEvent) -> Option<Key> {
    if k.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
    Some(match k.code {
        KeyCode::Char(c) if ctrl => Key::Ctrl(c.to_ascii_lowercase()),
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Enter => Key::Enter,
        KeyCode::Esc => Key::Esc,
        KeyCode::Tab => Key::Tab,
        KeyCode::BackTab => Key::BackTab,
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::PageUp => Key::PageUp,
        KeyCode::PageDown => Key::PageDown,
        KeyCode::Home => Key::Home,
        KeyCode::End => Key::End,
        KeyCode::Backspace => Key::Backspace,
        _ => return None,
    })
}

type Hook = Box<dyn Fn(&PanicHookInfo<'_>) + Sync + Send + 'static>;

/// Raw mode + alternate screen for its lifetime, and a panic hook that undoes both.
struct TerminalGuard {
    terminal: Terminal<CrosstermBackend<Stdout>>,
    previous_hook: Option<Arc<Hook>>,
}

impl TerminalGuard {
    fn enter() -> io::Result<TerminalGuard> {
        enable_raw_mode()?;
        if let Err(e) = execute!(io::stdout(), EnterAlternateScreen, Hide) {
            restore();
            return Err(e);
        }
        let previous: Arc<Hook> = Arc::new(panic::take_hook());
        let p = Arc::clone(&previous);
        panic::set_hook(Box::new(move |info| {
            restore();
            p(info);
        }));
        let mut guard = TerminalGuard {
            terminal: match Terminal::new(CrosstermBackend::new(io::stdout())) {
                Ok(t) => t,
                Err(e) => {
                    restore();
                    return Err(e);
                }
            },
            previous_hook: Some(previous),
        };
        guard.terminal.clear()?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
        if let Some(prev) = self.previous_hook.take() {
            // Put the caller's hook back (ours would restore a terminal we no longer own).
            let _ = panic::take_hook();
            panic::set_hook(Box::new(move |info| prev(info)));
        }
    }
}

/// Leaves raw mode and the alternate screen, shows the cursor. Idempotent; errors ignored
/// (nothing better to do while unwinding or exiting).
fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(io::stdout(), LeaveAlternateScreen, Show);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    #[test]
    fn ctrl_c_in_raw_mode_is_a_quit_key_and_releases_are_ignored() {
        assert_eq!(
            decode(press(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Key::Ctrl('c'))
        );
        assert_eq!(
            decode(press(KeyCode::Char('C'), KeyModifiers::CONTROL)),
            Some(Key::Ctrl('c'))
        );
        assert_eq!(
            decode(press(KeyCode::Char('q'), KeyModifiers::NONE)),
            Some(Key::Char('q'))
        );
        assert_eq!(
            decode(press(KeyCode::BackTab, KeyModifiers::SHIFT)),
            Some(Key::BackTab)
        );
        let mut release = press(KeyCode::Char('q'), KeyModifiers::NONE);
        release.kind = KeyEventKind::Release;
        assert_eq!(decode(release), None);
        assert_eq!(decode(press(KeyCode::F(5), KeyModifiers::NONE)), None);

        let mut app = App::new();
        let key = decode(press(KeyCode::Char('c'), KeyModifiers::CONTROL)).expect("a key");
        assert_eq!(app.handle_key(key), Action::Quit);
    }
}
