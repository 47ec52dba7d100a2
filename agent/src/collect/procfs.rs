//! Reactor threads as the scheduler sees them: `/proc/<pid>/task/<tid>/{stat,status,schedstat,sched}`.
//!
//! Threading: owned by the sampling thread like every collector. Each reactor thread's four
//! files are opened once and re-read from offset 0 every tick (procfs regenerates them on each
//! read), which halves the system calls of a tick and pins the task: after the thread exits its
//! open files fail with `ESRCH` instead of silently showing a new thread that reused the tid. A
//! thread found by name (`reactor-<core>`) is looked up again when its files fail, so a
//! restarted reactor is picked up under its new tid.
//!
//! Numbers are monotonic totals straight from the kernel: `schedstat` gives ns on CPU and ns
//! runnable-but-waiting (the preemption signal), `status` the voluntary/involuntary switches
//! and the affinity, `stat` field 39 the CPU it last ran on, and `sched` (present when the
//! kernel has `CONFIG_SCHED_DEBUG`) `se.nr_migrations`.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use agent_core::sample::{
    Capability, ReactorInfo, ReactorSample, Sample, TargetInfo, ThreadSample,
};

/// Reads per-thread scheduler statistics of the target's reactors.
pub struct ProcfsCollector {
    pid: u32,
    threads: Vec<Tracked>,
    /// Why nothing flows, when nothing does.
    problem: Option<String>,
    /// Whether any `sched` file could be read (migrations).
    sched_seen: bool,
    /// Scratch buffer for file contents (reused every read).
    buf: Vec<u8>,
}

/// One reactor thread.
struct Tracked {
    index: u32,
    core: u32,
    /// Tid given by the target's description (never re-resolved) or found by name.
    from_description: bool,
    tid: Option<u32>,
    task: Option<ThreadFiles>,
}

/// The open statistics files of one thread.
struct ThreadFiles {
    stat: File,
    status: File,
    schedstat: File,
    /// Absent without `CONFIG_SCHED_DEBUG`.
    sched: Option<File>,
}

impl ThreadFiles {
    fn open(pid: u32, tid: u32) -> Option<ThreadFiles> {
        let dir = PathBuf::from(format!("/proc/{pid}/task/{tid}"));
        Some(ThreadFiles {
            stat: File::open(dir.join("stat")).ok()?,
            status: File::open(dir.join("status")).ok()?,
            schedstat: File::open(dir.join("schedstat")).ok()?,
            sched: File::open(dir.join("sched")).ok(),
        })
    }
}

/// The whole of a procfs file, read from offset 0 into `buf`.
fn read_from_start<'a>(f: &File, buf: &'a mut Vec<u8>) -> Option<&'a str> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = f.read_at(&mut chunk, buf.len() as u64).ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 1 << 20 {
            return None; // not a statistics file any more
        }
    }
    std::str::from_utf8(buf).ok()
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
            buf: Vec::with_capacity(4096),
        }
    }

    fn open_task(&self, tid: u32) -> Option<ThreadFiles> {
        ThreadFiles::open(self.pid, tid)
    }

    fn read_thread(&mut self, i: usize) -> Option<ThreadSample> {
        let t = &self.threads[i];
        let task = t.task.as_ref()?;
        let tid = t.tid?;
        let buf = &mut self.buf;
        let last_cpu = parse_stat_processor(read_from_start(&task.stat, buf)?);
        let status = parse_status(read_from_start(&task.status, buf)?);
        let (run_ns, runqueue_wait_ns) = parse_schedstat(read_from_start(&task.schedstat, buf)?)?;
        let migrations = task
            .sched
            .as_ref()
            .and_then(|f| parse_nr_migrations(read_from_start(f, buf)?));
        if migrations.is_some() {
            self.sched_seen = true;
        }
        Some(ThreadSample {
            tid,
            last_cpu,
            allowed_cpus: status.allowed_cpus,
            run_ns,
            runqueue_wait_ns,
            voluntary_switches: status.voluntary,
            involuntary_switches: status.involuntary,
            migrations,
            task_clock_ns: None,
        })
    }
}

/// Field 39 (`processor`) of `/proc/<pid>/task/<tid>/stat`. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted from the last `)`.
fn parse_stat_processor(text: &str) -> Option<u32> {
    let rest = &text[text.rfind(')')? + 1..];
    // Field 3 (state) is the first after the name: field 39 is the 37th.
    rest.split_whitespace().nth(36)?.parse().ok()
}

/// What `status` says about a thread.
#[derive(Debug, Default, PartialEq, Eq)]
struct Status {
    allowed_cpus: Vec<u32>,
    voluntary: u64,
    involuntary: u64,
}

fn parse_status(text: &str) -> Status {
    let mut s = Status::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k {
            "Cpus_allowed_list" => s.allowed_cpus = parse_cpu_list(v),
            "voluntary_ctxt_switches" => s.voluntary = v.parse().unwrap_or(0),
            "nonvoluntary_ctxt_switches" => s.involuntary = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    s
}

/// `schedstat`: ns on CPU, ns waiting on a run queue, time slices.
fn parse_schedstat(text: &str) -> Option<(u64, u64)> {
    let mut f = text.split_whitespace();
    Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
}

/// A kernel CPU list (`0-3,5,7-8`); an unparsable part is skipped.
fn parse_cpu_list(text: &str) -> Vec<u32> {
    let ranges: Vec<(u32, u32)> = text
        .split(',')
        .filter_map(|part| {
            let part = part.trim();
            match part.split_once('-') {
                Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                None => part.parse().ok().map(|c| (c, c)),
            }
        })
        .collect();
    expand_ranges(&ranges)
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
    fn stat_processor_is_field_39() {
        let stat = "25951 (cat) R 25949 25949 16999 0 -1 4194304 98 0 0 0 0 0 0 0 20 0 1 0 1366226 3133440 395 18446744073709551615 94571569098752 94571569118633 140736505579744 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 94571569134640 94571569136256 94572221296640 140736505588451 140736505588471 140736505588471 140736505589739 0\n";
        assert_eq!(parse_stat_processor(stat), Some(1));
        // A name with spaces and parentheses does not shift the fields.
        let odd = stat.replace("(cat)", "(a) b (c)");
        assert_eq!(parse_stat_processor(&odd), Some(1));
        assert_eq!(parse_stat_processor("1 (x) R 1 2"), None);
        assert_eq!(parse_stat_processor("no paren"), None);
    }

    #[test]
    fn status_fields() {
        let text = "Name:\treactor-1\nCpus_allowed:\t3\nCpus_allowed_list:\t0-1,4\nvoluntary_ctxt_switches:\t7\nnonvoluntary_ctxt_switches:\t826\n";
        assert_eq!(
            parse_status(text),
            Status {
                allowed_cpus: vec![0, 1, 4],
                voluntary: 7,
                involuntary: 826
            }
        );
        assert_eq!(parse_status("garbage"), Status::default());
    }

    #[test]
    fn schedstat_fields() {
        assert_eq!(
            parse_schedstat("2188116405 9653432443 827\n"),
            Some((2188116405, 9653432443))
        );
        assert_eq!(parse_schedstat("12"), None);
        assert_eq!(parse_schedstat("x y z"), None);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,5,7-8"), vec![0, 1, 2, 3, 5, 7, 8]);
        assert_eq!(parse_cpu_list("1"), vec![1]);
        assert_eq!(parse_cpu_list(""), Vec::<u32>::new());
        assert_eq!(parse_cpu_list("x,2"), vec![2]);
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
