//! Reactor threads as the scheduler sees them: `/proc/<pid>/task/<tid>/{stat,status,schedstat,sched}`.
//!
//! Threading: owned by the sampling thread like every collector. Each reactor thread's
//! `/proc/<pid>/task/<tid>` directory is opened once (an `O_PATH` handle held by
//! [`procfs::process::Task`]) and its files are re-read every tick; a thread that exits makes
//! its reads fail, and a thread found by name (`reactor-<core>`) is looked up again next tick, so
//! a restarted reactor is picked up under its new tid.
//!
//! Numbers are monotonic totals straight from the kernel: `schedstat` gives ns on CPU and ns
//! runnable-but-waiting (the preemption signal), `status` the voluntary/involuntary switches
//! and the affinity, `stat` field 39 the CPU it last ran on, and `sched` (present when the
//! kernel has `CONFIG_SCHED_DEBUG`) `se.nr_migrations`.

use std::path::PathBuf;

use agent_core::sample::{
    Capability, ReactorInfo, ReactorSample, Sample, TargetInfo, ThreadSample,
};
use procfs::process::{Process, Task};

/// Reads per-thread scheduler statistics of the target's reactors.
pub struct ProcfsCollector {
    pid: u32,
    threads: Vec<Tracked>,
    /// Why nothing flows, when nothing does.
    problem: Option<String>,
    /// Whether any `sched` file could be read (migrations).
    sched_seen: bool,
    sched_missing: bool,
}

/// One reactor thread.
struct Tracked {
    index: u32,
    core: u32,
    /// Tid given by the target's description (never re-resolved) or found by name.
    from_description: bool,
    tid: Option<u32>,
    task: Option<Task>,
}

impl ProcfsCollector {
    /// A collector for the reactor threads of process `pid`. Nothing is read until
    /// [`Collector::describe`](super::Collector::describe).
    pub fn new(pid: u32) -> ProcfsCollector {
        ProcfsCollector {
            pid,
            threads: Vec::new(),
            problem: None,
            sched_seen: false,
            sched_missing: false,
        }
    }

    fn open_task(&self, tid: u32) -> Option<Task> {
        let p = Process::new(i32::try_from(self.pid).ok()?).ok()?;
        p.task_from_tid(i32::try_from(tid).ok()?).ok()
    }

    fn read_thread(&mut self, i: usize) -> Option<ThreadSample> {
        let t = &self.threads[i];
        let task = t.task.as_ref()?;
        let tid = t.tid?;
        let stat = task.stat().ok()?;
        let status = task.status().ok()?;
        let sched = task.schedstat().ok()?;
        let migrations = read_nr_migrations(self.pid, tid);
        if migrations.is_some() {
            self.sched_seen = true;
        } else {
            self.sched_missing = true;
        }
        Some(ThreadSample {
            tid,
            last_cpu: stat.processor.and_then(|c| u32::try_from(c).ok()),
            allowed_cpus: status
                .cpus_allowed_list
                .map(|ranges| expand_ranges(&ranges))
                .unwrap_or_default(),
            run_ns: sched.sum_exec_runtime,
            runqueue_wait_ns: sched.run_delay,
            voluntary_switches: status.voluntary_ctxt_switches.unwrap_or(0),
            involuntary_switches: status.nonvoluntary_ctxt_switches.unwrap_or(0),
            migrations,
            task_clock_ns: None,
        })
    }
}

impl super::Collector for ProcfsCollector {
    fn name(&self) -> &'static str {
        "procfs"
    }

    fn capability(&self) -> Capability {
        let found: Vec<String> = self
            .threads
            .iter()
            .filter(|t| t.task.is_some())
            .filter_map(|t| t.tid.map(|tid| format!("{tid}")))
            .collect();
        let (available, note) = match (&self.problem, found.is_empty()) {
            (Some(p), _) => (false, p.clone()),
            (None, true) => (
                false,
                format!(
                    "no reactor thread of pid {} found (no tid in the description, no thread named reactor-<core>): thread scheduling statistics unavailable",
                    self.pid
                ),
            ),
            (None, false) => {
                let missing = self.threads.len() - found.len();
                let mut note = format!(
                    "reactor threads {} of pid {}: CPU time, run-queue wait, context switches, last CPU, affinity",
                    found.join(","),
                    self.pid
                );
                if missing > 0 {
                    note.push_str(&format!("; {missing} reactor thread(s) not found"));
                }
                if !self.sched_seen {
                    note.push_str(
                        "; no /proc/<pid>/task/<tid>/sched (kernel without CONFIG_SCHED_DEBUG?): migrations only from perf",
                    );
                }
                (true, note)
            }
        };
        Capability {
            name: "procfs".into(),
            available,
            note,
        }
    }

    fn describe(&mut self, info: &mut TargetInfo) {
        if !PathBuf::from(format!("/proc/{}", self.pid)).exists() {
            self.problem = Some(format!(
                "process {} not found in /proc: thread scheduling statistics unavailable",
                self.pid
            ));
            return;
        }
        if info.reactors.is_empty() {
            // No trace file description: take the target's naming convention at its word.
            let mut named = threads_by_name(self.pid);
            named.sort_by_key(|&(core, _)| core);
            info.reactors = named
                .iter()
                .enumerate()
                .map(|(i, &(core, tid))| ReactorInfo {
                    index: u32::try_from(i).unwrap_or(u32::MAX),
                    core,
                    tid: Some(tid),
                })
                .collect();
        }
        let by_name = if info.reactors.iter().any(|r| r.tid.is_none()) {
            threads_by_name(self.pid)
        } else {
            Vec::new()
        };
        for r in &mut info.reactors {
            let from_description = r.tid.is_some();
            if r.tid.is_none() {
                r.tid = lookup_core(&by_name, r.core);
            }
            let task = r.tid.and_then(|tid| self.open_task(tid));
            self.threads.push(Tracked {
                index: r.index,
                core: r.core,
                from_description,
                tid: r.tid,
                task,
            });
        }
        // Read once so the capability line can say whether migrations are available.
        for i in 0..self.threads.len() {
            let _ = self.read_thread(i);
        }
    }

    fn collect(&mut self, _info: &TargetInfo, sample: &mut Sample) {
        if self.problem.is_some() {
            return;
        }
        let mut by_name: Option<Vec<(u32, u32)>> = None;
        for i in 0..self.threads.len() {
            let mut ts = self.read_thread(i);
            if ts.is_none() && !self.threads[i].from_description {
                // The thread may have been restarted under another tid: look it up by name
                // (one directory scan per tick at most).
                let named = by_name.get_or_insert_with(|| threads_by_name(self.pid));
                let tid = lookup_core(named, self.threads[i].core);
                if tid.is_some() && tid != self.threads[i].tid {
                    self.threads[i].tid = tid;
                    self.threads[i].task = tid.and_then(|t| self.open_task(t));
                    ts = self.read_thread(i);
                }
            }
            if let Some(ts) = ts {
                reactor_mut(sample, self.threads[i].index).thread = Some(ts);
            }
        }
    }
}

/// The sample's reactor entry of `index`, added when the ring collector did not provide one.
pub(crate) fn reactor_mut(sample: &mut Sample, index: u32) -> &mut ReactorSample {
    let pos = match sample.reactors.iter().position(|r| r.index == index) {
        Some(p) => p,
        None => {
            sample.reactors.push(ReactorSample {
                index,
                ..ReactorSample::default()
            });
            sample.reactors.len() - 1
        }
    };
    &mut sample.reactors[pos]
}

/// Reactor threads of `pid`, `(reactor index, tid)`: the description's tid, or the thread
/// named `reactor-<core>`.
pub(crate) fn reactor_tids(pid: u32, info: &TargetInfo) -> Vec<(u32, u32)> {
    let by_name = if info.reactors.iter().any(|r| r.tid.is_none()) {
        threads_by_name(pid)
    } else {
        Vec::new()
    };
    if info.reactors.is_empty() {
        let mut named = threads_by_name(pid);
        named.sort_by_key(|&(core, _)| core);
        return named
            .iter()
            .enumerate()
            .map(|(i, &(_, tid))| (u32::try_from(i).unwrap_or(u32::MAX), tid))
            .collect();
    }
    info.reactors
        .iter()
        .filter_map(|r| Some((r.index, r.tid.or_else(|| lookup_core(&by_name, r.core))?)))
        .collect()
}

fn lookup_core(by_name: &[(u32, u32)], core: u32) -> Option<u32> {
    by_name
        .iter()
        .find(|&&(c, _)| c == core)
        .map(|&(_, tid)| tid)
}

/// Threads of `pid` named `reactor-<core>`, as `(core, tid)`.
pub(crate) fn threads_by_name(pid: u32) -> Vec<(u32, u32)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(comm) = std::fs::read_to_string(e.path().join("comm")) else {
            continue;
        };
        if let Some(core) = parse_reactor_comm(&comm) {
            out.push((core, tid));
        }
    }
    out
}

/// `reactor-<core>` (with the trailing newline of `comm`) → core.
fn parse_reactor_comm(comm: &str) -> Option<u32> {
    comm.trim_end_matches('\n')
        .strip_prefix("reactor-")?
        .parse()
        .ok()
}

/// `se.nr_migrations` from `/proc/<pid>/task/<tid>/sched`, when the file exists.
fn read_nr_migrations(pid: u32, tid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/sched")).ok()?;
    parse_nr_migrations(&text)
}

fn parse_nr_migrations(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "se.nr_migrations")
            .then(|| v.trim().parse().ok())
            .flatten()
    })
}

fn expand_ranges(ranges: &[(u32, u32)]) -> Vec<u32> {
    // A cpu list is bounded by the machine's CPU count; cap it anyway so a corrupt range
    // cannot allocate gigabytes.
    const MAX_CPUS: usize = 1 << 16;
    let mut out = Vec::new();
    for &(a, b) in ranges {
        for c in a..=b.max(a) {
            if out.len() >= MAX_CPUS {
                return out;
            }
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nr_migrations_parsed_from_sched() {
        let text = "head (22027, #threads: 1)\n---------\nse.exec_start   :  10927889.819257\nse.nr_migrations      :        17\nnr_switches  : 3\n";
        assert_eq!(parse_nr_migrations(text), Some(17));
        assert_eq!(parse_nr_migrations("nr_switches : 3\n"), None);
        assert_eq!(parse_nr_migrations("se.nr_migrations : x\n"), None);
    }

    #[test]
    fn reactor_comm_names() {
        assert_eq!(parse_reactor_comm("reactor-3\n"), Some(3));
        assert_eq!(parse_reactor_comm("reactor-x\n"), None);
        assert_eq!(parse_reactor_comm("worker-1\n"), None);
    }

    #[test]
    fn cpu_ranges_expand() {
        assert_eq!(expand_ranges(&[(0, 1), (4, 4)]), vec![0, 1, 4]);
        assert_eq!(expand_ranges(&[(0, u32::MAX)]).len(), 1 << 16);
    }

    #[test]
    fn reactor_mut_finds_or_adds() {
        let mut s = Sample::default();
        s.reactors.push(ReactorSample {
            index: 1,
            polls: 5,
            ..ReactorSample::default()
        });
        assert_eq!(reactor_mut(&mut s, 1).polls, 5);
        reactor_mut(&mut s, 0).polls = 9;
        assert_eq!(s.reactors.len(), 2);
        assert_eq!(s.reactors[1].index, 0);
    }
}
