//! End-to-end: `ringside top` against a live `ringside-tgt` loaded by `ringside-perf`.
//!
//! The live view runs in a real terminal: a detached tmux session (160x50) on a private tmux
//! socket, driven with `send-keys` and read with `capture-pane`, so the test sees exactly what a
//! person would, and can check that quitting gives the terminal back (main screen, cooked mode,
//! cursor visible). `--once --json` is checked as a plain process. `top --all` is followed
//! through two targets appearing, one killed and restarted and one stopped.
//!
//! Each test starts its own target with its trace file and RPC socket in a temporary directory
//! and an ephemeral port, so tests may run in parallel and nothing is left in `/dev/shm`. Waits
//! for the screen are bounded polls (a hang guard, not a speed assertion): on expiry the test
//! fails with the last screen it saw.
#![forbid(unsafe_code)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use tests::{cargo_bin, Target};

/// A target for these tests: 64 MiB of RAM.
fn target(tag: &str) -> Target {
    Target::start(&format!("top{tag}"), &["--malloc", "64MiB"])
}

/// Starts a random-read load for up to 10 minutes (killed when the returned guard drops).
fn load(t: &Target) -> Killed {
    let child = t
        .perf()
        .args(["--no-pin", "-t", "600", "-q", "8"])
        .args(["-o", "4096", "-w", "randread"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start ringside-perf");
    Killed(child)
}

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A tmux server on its own socket, killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// A detached 160x50 session running a plain `sh` with a `$ ` prompt.
    fn start(tag: &str) -> Tmux {
        let t = Tmux {
            socket: format!("ringside-top-{tag}-{}", std::process::id()),
        };
        let out = t
            .cmd()
            .args(["new-session", "-d", "-s", "top", "-x", "160", "-y", "50"])
            .arg("env PS1='$ ' TERM=xterm-256color sh")
            .output()
            .expect("cannot run tmux");
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        // -u: UTF-8 screen whatever the locale; -f /dev/null: no user configuration.
        c.args(["-u", "-f", "/dev/null", "-L", &self.socket]);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = self
            .cmd()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run tmux {args:?}: {e}"));
        assert!(
            out.status.success(),
            "tmux {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn send_line(&self, line: &str) {
        self.run(&["send-keys", "-t", "top", "-l", line]);
        self.run(&["send-keys", "-t", "top", "Enter"]);
    }

    fn send_key(&self, key: &str) {
        self.run(&["send-keys", "-t", "top", key]);
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "top"]).stdout).into_owned()
    }

    fn format(&self, f: &str) -> String {
        String::from_utf8_lossy(&self.run(&["display-message", "-p", "-t", "top", f]).stdout)
            .trim()
            .to_string()
    }

    /// Polls the screen until `ok` holds (at most ~60 s); returns that screen or fails with
    /// the last one.
    fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        for _ in 0..240 {
            last = self.screen();
            if ok(&last) {
                return last;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("the screen never showed {what}; last screen:\n{last}");
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}

/// The IOPS of reactor `index` as shown in the reactors table: the cell under the `IOPS` header
/// of the row whose first cell is the index. Columns are counted in characters (the screen has
/// box-drawing and arrow glyphs).
fn reactor_iops(screen: &str, index: u32) -> Option<f64> {
    let lines: Vec<Vec<char>> = screen.lines().map(|l| l.chars().collect()).collect();
    let h = lines
        .iter()
        .position(|l| l.iter().collect::<String>().starts_with("REACTOR"))?;
    let header: String = lines[h].iter().collect();
    let col = header.split("IOPS").next()?.chars().count();
    let row = lines[h + 1..].iter().find(|l| {
        l.iter().collect::<String>().split_whitespace().next() == Some(&index.to_string())
    })?;
    let cell: String = row.get(col..)?.iter().collect();
    parse_count(cell.split_whitespace().next()?)
}

/// `1.9K` → 1900, `2.50M` → 2 500 000, `812` → 812.
fn parse_count(s: &str) -> Option<f64> {
    let (num, scale) = match s.chars().last()? {
        'K' => (&s[..s.len() - 1], 1e3),
        'M' => (&s[..s.len() - 1], 1e6),
        _ => (s, 1.0),
    };
    num.parse::<f64>().ok().map(|v| v * scale)
}

/// `ringside --file <file>`; `bin` is resolved once per test (each `cargo_bin` is a cargo run,
/// which can wait for a lock long enough for the load to end).
fn ringside(bin: &Path, file: &Path) -> Command {
    let mut c = Command::new(bin);
    c.arg("--file").arg(file);
    c
}

fn sh_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

#[test]
fn live_view_in_tmux_shows_reactor_iops_and_q_restores_the_terminal() {
    if !Tmux::available() {
        println!("skipped: tmux is not installed (scripts/setup.sh installs it)");
        return;
    }
    let ringside_bin = cargo_bin("agent", "ringside");
    let tgt = target("tmux");
    let _load = load(&tgt);
    let tmux = Tmux::start("live");
    // capture-pane drops trailing blanks: the prompt "$ " reads as "$".
    tmux.wait_for("the shell prompt", |s| {
        s.lines().any(|l| l.trim_end() == "$")
    });
    assert_eq!(
        tmux.format("#{alternate_on}"),
        "0",
        "alt screen before start"
    );

    tmux.send_line(&format!(
        "{} --file {} top --interval 500ms; echo \"top exited $?\"",
        sh_quote(&ringside_bin),
        sh_quote(&tgt.trace_file)
    ));
    let screen = tmux.wait_for("reactor 0 with nonzero IOPS", |s| {
        reactor_iops(s, 0).is_some_and(|v| v > 0.0)
    });
    assert!(screen.contains("ringside top"), "header:\n{screen}");
    assert!(
        screen.contains(" 1 Reactors ") && screen.contains("5 Findings"),
        "view tabs:\n{screen}"
    );
    assert!(screen.contains("q quit"), "help line:\n{screen}");
    assert_eq!(
        tmux.format("#{alternate_on}"),
        "1",
        "the live view uses the alternate screen"
    );

    // Keys reach the view: the qpairs tab lists the perf connection's I/O qpair.
    tmux.send_key("2");
    tmux.wait_for("the qpairs table", |s| {
        s.lines().any(|l| l.starts_with("QPAIR")) && s.lines().any(|l| l.starts_with("0."))
    });
    tmux.send_key("f");
    tmux.wait_for("FROZEN", |s| s.contains("FROZEN"));

    tmux.send_key("q");
    // Wait for the echo's own line: the typed command line also contains "top exited", and the
    // main screen (with that line) is back a moment before the process has exited.
    let after = tmux.wait_for("the shell after quitting", |s| {
        s.lines().any(|l| l.trim_start().starts_with("top exited"))
    });
    assert!(
        after.lines().any(|l| l.trim() == "top exited 0"),
        "ringside top exit status:\n{after}"
    );
    assert!(
        !after.contains("REACTOR"),
        "the view's table is still on the screen after quitting:\n{after}"
    );
    assert_eq!(tmux.format("#{alternate_on}"), "0", "alt screen left on");
    assert_eq!(tmux.format("#{cursor_flag}"), "1", "cursor left hidden");

    // Raw mode is off again: the line discipline is back to canonical mode with echo.
    tmux.send_line("stty -a | tr ' ;' '\\n\\n' | grep -x -e icanon -e -icanon -e echo -e -echo; echo stty-done");
    let stty = tmux.wait_for("the stty answer", |s| {
        s.lines().any(|l| l.trim() == "stty-done")
    });
    let modes: Vec<&str> = stty
        .lines()
        .map(str::trim)
        .filter(|l| ["icanon", "-icanon", "echo", "-echo"].contains(l))
        .collect();
    assert!(
        modes.contains(&"icanon") && modes.contains(&"echo"),
        "terminal modes after quitting: {modes:?}\n{stty}"
    );
}

#[test]
fn once_json_prints_one_snapshot_with_one_window_under_load() {
    let bin = cargo_bin("agent", "ringside");
    let tgt = target("json");
    let _load = load(&tgt);
    // Wait for the load to reach the target (its counters page shows reads).
    let mut seen = String::new();
    let mut flowing = false;
    for _ in 0..120 {
        let out = ringside(&bin, &tgt.trace_file)
            .args(["trace", "--counters"])
            .output()
            .expect("cannot run ringside trace --counters");
        seen = String::from_utf8_lossy(&out.stdout).into_owned();
        if seen.contains("cmds_read: ") && !seen.contains("cmds_read: 0 ") {
            flowing = seen
                .split("cmds_read: ")
                .skip(1)
                .any(|s| s.split(|c: char| !c.is_ascii_digit()).next() != Some("0"));
        }
        if flowing {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(flowing, "no reads reached the target:\n{seen}");

    let out = ringside(&bin, &tgt.trace_file)
        .args(["top", "--once", "--json", "--interval", "500ms"])
        .stdin(Stdio::null())
        .output()
        .expect("cannot run ringside top --once --json");
    assert!(
        out.status.success(),
        "ringside top --once --json failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1, "one JSON line:\n{text}");
    let snap: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"));
    for field in [
        "t_ns",
        "target",
        "topology",
        "window",
        "history",
        "findings",
        "recommendations",
        "windows_seen",
    ] {
        assert!(
            snap.get(field).is_some(),
            "Snapshot field {field} missing: {text}"
        );
    }
    assert_eq!(snap["windows_seen"], 1, "exactly one window: {text}");
    assert_eq!(
        snap["history"].as_array().map(Vec::len),
        Some(1),
        "one summary in the history: {text}"
    );
    let w = &snap["window"];
    let iops = w["total"]["iops"].as_f64().unwrap_or(0.0);
    assert!(iops > 0.0, "total IOPS under load: {}", w["total"]);
    let r0 = w["reactors"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["index"] == 0))
        .unwrap_or_else(|| panic!("no reactor 0 in the window: {w}"));
    assert!(
        r0["iops"].as_f64().unwrap_or(0.0) > 0.0,
        "reactor 0 IOPS: {r0}"
    );
    assert_eq!(
        snap["target"]["name"]
            .as_str()
            .map(|n| n.starts_with("topjson")),
        Some(true)
    );

    // The text form of the same: the reactors table with reactor 0 busy.
    let out = ringside(&bin, &tgt.trace_file)
        .args(["top", "--once", "--interval", "500ms"])
        .stdin(Stdio::null())
        .output()
        .expect("cannot run ringside top --once");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        reactor_iops(&text, 0).is_some_and(|v| v > 0.0),
        "reactor 0 IOPS in the text form:\n{text}"
    );
}

#[test]
fn top_without_a_terminal_says_so_instead_of_garbling_the_output() {
    let bin = cargo_bin("agent", "ringside");
    let tgt = target("notty");
    let out = ringside(&bin, &tgt.trace_file)
        .arg("top")
        .stdin(Stdio::null())
        .output()
        .expect("cannot run ringside top");
    assert!(
        !out.status.success(),
        "top with a pipe for stdout must fail"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("needs a terminal") && err.contains("--once"),
        "one clear line: {err}"
    );
    assert!(out.stdout.is_empty(), "nothing written to the pipe");
}

#[test]
fn live_view_in_tmux_shows_the_target_waiting_attached_gone_and_reattached() {
    if !Tmux::available() {
        println!("skipped: tmux is not installed (scripts/setup.sh installs it)");
        return;
    }
    let ringside_bin = cargo_bin("agent", "ringside");
    let dir = tempfile::tempdir().expect("tempdir");
    let name = format!("toplc{}", std::process::id());
    let tmux = Tmux::start("lifecycle");
    tmux.wait_for("the shell prompt", |s| {
        s.lines().any(|l| l.trim_end() == "$")
    });
    // Started before its target: the header says it waits.
    tmux.send_line(&format!(
        "{} --name {name} --shm-dir {} top --interval 250ms --no-kernel",
        sh_quote(&ringside_bin),
        sh_quote(dir.path())
    ));
    let header = |s: &str| {
        s.lines()
            .find(|l| l.contains("ringside top"))
            .map(str::to_string)
    };
    let waiting = tmux.wait_for("WAITING in the header", |s| {
        header(s).is_some_and(|h| h.contains("WAITING"))
    });
    let mut tgt = Target::start_in(dir.path(), &name, &["--malloc", "16MiB"]);
    let attached = tmux.wait_for("attached in the header", |s| {
        header(s).is_some_and(|h| h.contains("attached") && !h.contains("reattached"))
    });
    tgt.kill();
    let gone = tmux.wait_for("GONE in the header", |s| {
        header(s).is_some_and(|h| h.contains("GONE"))
    });
    let _again = Target::start_in(dir.path(), &name, &["--malloc", "16MiB"]);
    let back = tmux.wait_for("reattached in the header", |s| {
        header(s).is_some_and(|h| h.contains("reattached (instance 2)"))
    });
    for (what, screen) in [
        ("waiting", &waiting),
        ("attached", &attached),
        ("gone", &gone),
        ("reattached", &back),
    ] {
        eprintln!("--- {what}:\n{}", header(screen).unwrap_or_default());
    }
    tmux.send_key("q");
}

/// `top --all` (issue 16's Must-show, in frames): two targets started and stopped at different
/// times; the fleet line shows each appear, one killed (GONE) and restarted (reattached), the
/// other stopped cleanly (it leaves the line).
#[test]
fn live_view_all_in_tmux_shows_targets_appear_die_come_back_and_leave() {
    if !Tmux::available() {
        println!("skipped: tmux is not installed (scripts/setup.sh installs it)");
        return;
    }
    let ringside_bin = cargo_bin("agent", "ringside");
    let dir = tempfile::tempdir().expect("tempdir");
    let a = format!("topa{}", std::process::id());
    let b = format!("topb{}", std::process::id());
    let tmux = Tmux::start("all");
    tmux.wait_for("the shell prompt", |s| {
        s.lines().any(|l| l.trim_end() == "$")
    });
    tmux.send_line(&format!(
        "{} --shm-dir {} top --all --interval 250ms --no-kernel",
        sh_quote(&ringside_bin),
        sh_quote(dir.path())
    ));
    let fleet = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("targets ("))
            .map(str::to_string)
    };
    let mut frames = vec![(
        "none yet",
        tmux.wait_for("an empty fleet line", |s| {
            fleet(s).is_some_and(|l| l.contains("targets (0): none yet"))
        }),
    )];
    let mut ta = Target::start_in(dir.path(), &a, &["--malloc", "16MiB"]);
    frames.push((
        "a attached",
        tmux.wait_for("a attached", |s| {
            fleet(s).is_some_and(|l| l.contains(&format!("{a} attached")))
        }),
    ));
    let mut tb = Target::start_in(dir.path(), &b, &["--malloc", "16MiB"]);
    frames.push((
        "both attached",
        tmux.wait_for("a and b attached", |s| {
            fleet(s).is_some_and(|l| {
                l.contains("targets (2)")
                    && l.contains(&format!("{a} attached"))
                    && l.contains(&format!("{b} attached"))
            })
        }),
    ));
    ta.kill();
    frames.push((
        "a gone",
        tmux.wait_for("a GONE, b attached", |s| {
            fleet(s).is_some_and(|l| {
                l.contains(&format!("{a} GONE")) && l.contains(&format!("{b} attached"))
            })
        }),
    ));
    let _ta2 = Target::start_in(dir.path(), &a, &["--malloc", "16MiB"]);
    frames.push((
        "a reattached",
        tmux.wait_for("a reattached", |s| {
            fleet(s).is_some_and(|l| l.contains(&format!("{a} reattached (instance 2)")))
        }),
    ));
    tb.stop();
    frames.push((
        "b left",
        tmux.wait_for("b leaves the fleet line", |s| {
            fleet(s).is_some_and(|l| l.contains("targets (1)") && !l.contains(&b))
        }),
    ));
    for (what, screen) in &frames {
        eprintln!("--- {what}:\n{}", fleet(screen).unwrap_or_default());
    }
    tmux.send_key("q");
}
