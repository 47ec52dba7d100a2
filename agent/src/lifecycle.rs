//! Following a target instance across restarts: the I/O half of the lifecycle whose states and
//! transition function are `agent_core::lifecycle` (waiting, attached, gone, reattached).
//!
//! Each tick, before any counter is read, the [`Follower`] asks the mapped instance whether it
//! is still the live one ([`trace_ring::TraceReader::liveness`]: the file still holds every mapped
//! page, the producer did not exit and its process exists, the file at the instance's path is
//! still this one). When it is not, the instance is gone; when following by name it then looks
//! for a new live instance of that name on the same tick, so a restart is picked up within one
//! interval. Every distinct reason is said once on stderr.
//!
//! Threading: owned by the session's one sampling thread; no state shared.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use agent_core::lifecycle::{InstanceId, LifeEvent, TargetStatus};
use anyhow::{bail, Result};
use trace_ring::{Liveness, TraceReader};

use crate::attach::AttachArgs;

/// Set while a full-screen view owns the terminal (`ringside top`): the lifecycle lines are not
/// printed (they would scroll the screen under the view, which shows the same states itself).
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Stops (or restarts) printing the lifecycle lines on stderr; see [`QUIET`].
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, std::sync::atomic::Ordering::Relaxed);
}

/// Whether lifecycle lines are kept off stderr now.
pub fn quiet() -> bool {
    QUIET.load(std::sync::atomic::Ordering::Relaxed)
}

/// What a [`Follower::observe`] found.
pub enum Step {
    /// Nothing changed: the current instance (or its absence) stays.
    Unchanged,
    /// The current instance is gone and no new one is there yet.
    Lost,
    /// A live instance to attach to (the first one, or a new one replacing the last).
    Found(Box<TraceReader>),
}

/// Which instance to follow and where it stands.
#[derive(Debug)]
pub struct Follower {
    dir: PathBuf,
    /// Follow by this name (reattach to a new instance of it); `None` when attached by pid.
    name: Option<String>,
    pid: Option<u32>,
    status: TargetStatus,
    said: String,
}

/// The identity of an opened instance.
pub fn instance_id(r: &TraceReader) -> InstanceId {
    InstanceId {
        pid: r.header().pid,
        inode: r.identity().1,
        start_realtime_ns: r.header().start_realtime_ns,
    }
}

impl Follower {
    /// A follower for `attach` (`--name`: by name; `--pid`: that process only; neither: the only
    /// live instance now, then by its name). `None` for `--file`, which reads one file as it is.
    pub fn new(attach: &AttachArgs, now_ns: u64) -> Result<Option<Follower>> {
        if attach.file.is_some() {
            return Ok(None);
        }
        let (name, pid) = match (&attach.name, attach.pid) {
            (Some(n), _) => {
                trace_ring::validate_name(n)?;
                (Some(n.clone()), None)
            }
            (None, Some(p)) => (None, Some(p)),
            (None, None) => {
                let r = attach.open()?;
                (Some(r.name().to_string()), None)
            }
        };
        let label = name
            .clone()
            .unwrap_or_else(|| format!("pid {}", pid.unwrap_or(0)));
        Ok(Some(Follower {
            dir: attach.shm_dir.clone(),
            name,
            pid,
            status: TargetStatus::waiting(&label, now_ns, "not seen yet"),
            said: String::new(),
        }))
    }

    /// The lifecycle now.
    pub fn status(&self) -> &TargetStatus {
        &self.status
    }

    /// Checks `current` (the instance read now, if any) and, when there is none or it is gone,
    /// looks for a live one. Errors only for an instance this user cannot read at the first
    /// attempt (`first`), with one line saying which group to join.
    pub fn observe(
        &mut self,
        current: Option<&TraceReader>,
        now_ns: u64,
        first: bool,
    ) -> Result<Step> {
        let mut lost = false;
        if let Some(r) = current {
            match r.liveness() {
                Liveness::Live => return Ok(Step::Unchanged),
                other => {
                    let why = other
                        .reason(r.header().pid)
                        .unwrap_or_else(|| "gone".into());
                    self.status.apply(LifeEvent::Vanished(why.clone()), now_ns);
                    let next = if self.name.is_some() {
                        "; waiting for it to come back"
                    } else {
                        " (attached by pid: not following a new instance; use --name to)"
                    };
                    self.say(format!("target {} is gone: {why}{next}", self.status.name));
                    lost = true;
                }
            }
        }
        if self.name.is_none() && (lost || self.status.attachments > 0) {
            return Ok(if lost { Step::Lost } else { Step::Unchanged });
        }
        match self.find() {
            Ok(r) => match r.liveness() {
                Liveness::Live => {
                    self.status
                        .apply(LifeEvent::Appeared(instance_id(&r)), now_ns);
                    let verb = if self.status.attachments > 1 {
                        "reattached to"
                    } else {
                        "attached to"
                    };
                    self.say(format!(
                        "{verb} target {} (pid {})",
                        r.name(),
                        r.header().pid
                    ));
                    return Ok(Step::Found(Box::new(r)));
                }
                other => {
                    let why = other
                        .reason(r.header().pid)
                        .map(|w| format!("only a stale trace file ({w})"))
                        .unwrap_or_default();
                    self.wait(why, now_ns);
                }
            },
            Err(e) => {
                let missing = matches!(
                    e.downcast_ref::<trace_ring::Error>(),
                    Some(trace_ring::Error::NotFound { .. })
                );
                if missing && self.status.attachments > 0 {
                    // Gone and not back yet: keep saying why it went.
                } else if let Some(line) = access_problem(&e) {
                    if first {
                        bail!("{line}");
                    }
                    self.wait(line, now_ns);
                } else {
                    self.wait(format!("{e:#}"), now_ns);
                }
            }
        }
        Ok(if lost { Step::Lost } else { Step::Unchanged })
    }

    fn find(&self) -> Result<TraceReader> {
        match (&self.name, self.pid) {
            (Some(n), _) => Ok(TraceReader::find_in(&self.dir, n)?),
            (None, Some(p)) => Ok(TraceReader::find_by_pid_in(&self.dir, p)?),
            (None, None) => bail!("nothing to follow"),
        }
    }

    fn wait(&mut self, why: String, now_ns: u64) {
        self.status.apply(LifeEvent::Vanished(why.clone()), now_ns);
        let what = if self.status.attachments == 0 {
            "waiting for target"
        } else {
            "target"
        };
        self.say(format!("{what} {}: {why}", self.status.name));
    }

    /// Prints `line` unless it was the last thing said.
    fn say(&mut self, line: String) {
        if line != self.said {
            if !quiet() {
                eprintln!("ringside: {line}");
            }
            self.said = line;
        }
    }
}

/// For an error opening a trace file that is a permission problem, one line saying why and
/// what to do (which group to join, or how to start the target so a group can read it).
pub fn access_problem(e: &anyhow::Error) -> Option<String> {
    let denied = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
            || matches!(c.downcast_ref::<trace_ring::Error>(),
                Some(trace_ring::Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::PermissionDenied)
    });
    if !denied {
        return None;
    }
    let path = e
        .chain()
        .find_map(|c| match c.downcast_ref::<trace_ring::Error>() {
            Some(trace_ring::Error::Io { path, .. }) => Some(path.clone()),
            _ => None,
        })?;
    Some(explain_access(&path))
}

/// "cannot read PATH (mode 0640, group G): join group G ..." for a file this user cannot read.
pub fn explain_access(path: &Path) -> String {
    let Ok(m) = std::fs::metadata(path) else {
        return format!(
            "cannot read {}: permission denied (and its directory cannot be searched)",
            path.display()
        );
    };
    let mode = m.mode() & 0o777;
    let group = group_name(m.gid()).unwrap_or_else(|| m.gid().to_string());
    if mode & 0o040 != 0 {
        format!(
            "cannot read {} (mode {mode:04o}, group {group}): join group {group} (usermod -aG {group} USER, then log in again) or run as root",
            path.display()
        )
    } else {
        format!(
            "cannot read {} (mode {mode:04o}: owner only): start ringside-tgt with --trace-group GROUP (or [trace] group and mode = \"0640\") and join that group, or run as root",
            path.display()
        )
    }
}

/// A group's name from `/etc/group`.
fn group_name(gid: u32) -> Option<String> {
    let table = std::fs::read_to_string("/etc/group").ok()?;
    table.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)?.parse::<u32>().ok()? == gid).then(|| name.to_string())
    })
}

/// Every instance in a trace directory (`ringside serve --all`), each followed by name in a
/// session of its own. An instance appears when its live trace file does; one that stopped
/// cleanly (its file removed) vanishes; one that died and left its file stays, gone
/// (`ringside_target_up 0`), until an instance of that name comes back. At most `max` targets
/// are followed (the `target` label stays bounded); the rest are named once on stderr.
pub struct Fleet {
    dir: PathBuf,
    opts: crate::session::SessionOptions,
    sessions: std::collections::BTreeMap<String, crate::session::Session>,
    max: usize,
    said: std::collections::BTreeSet<String>,
}

impl Fleet {
    /// Follows every instance in `dir`.
    pub fn new(dir: &Path, opts: &crate::session::SessionOptions, max: usize) -> Fleet {
        Fleet {
            dir: dir.to_path_buf(),
            opts: opts.clone(),
            sessions: std::collections::BTreeMap::new(),
            max,
            said: std::collections::BTreeSet::new(),
        }
    }

    /// Ticks every session (each checks its instance first), then looks for new instances and
    /// forgets stopped ones.
    pub fn tick(&mut self) {
        for s in self.sessions.values_mut() {
            s.tick();
        }
        let list = match TraceReader::list_in(&self.dir) {
            Ok(l) => l,
            Err(e) => {
                self.say(format!("cannot list {}: {e}", self.dir.display()));
                return;
            }
        };
        let before: Vec<u32> = self.cores();
        self.sessions
            .retain(|name, s| s.is_live() || list.iter().any(|i| &i.name == name));
        for i in list.iter().filter(|i| i.alive && i.problem.is_none()) {
            if self.sessions.contains_key(&i.name) {
                continue;
            }
            if self.sessions.len() >= self.max {
                self.say(format!(
                    "following {} targets already (--max-targets): not {}",
                    self.max, i.name
                ));
                continue;
            }
            let attach = AttachArgs {
                name: Some(i.name.clone()),
                shm_dir: self.dir.clone(),
                ..AttachArgs::default()
            };
            match crate::session::Session::open(&attach, &self.opts) {
                Ok(s) => {
                    self.sessions.insert(i.name.clone(), s);
                }
                Err(e) => self.say(format!("cannot follow {}: {e:#}", i.name)),
            }
        }
        let after = self.cores();
        if after != before && !after.is_empty() {
            // Off every followed target's reactor cores (each session planned for its own).
            crate::placement::keep_off_reactor_cores(&after);
        }
    }

    /// The reactor cores of every attached target, sorted.
    fn cores(&self) -> Vec<u32> {
        let mut c: Vec<u32> = self
            .sessions
            .values()
            .filter(|s| s.is_live())
            .flat_map(|s| s.analyzer().info().reactors.iter().map(|r| r.core))
            .collect();
        c.sort_unstable();
        c.dedup();
        c
    }

    /// One snapshot per followed target, by name.
    pub fn snapshots(&self) -> Vec<agent_core::Snapshot> {
        self.sessions.values().map(|s| s.snapshot()).collect()
    }

    fn say(&mut self, line: String) {
        if self.said.insert(line.clone()) && !quiet() {
            eprintln!("ringside: {line}");
        }
    }
}
