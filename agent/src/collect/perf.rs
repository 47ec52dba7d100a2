//! perf software counters on each reactor thread: `task-clock`, `context-switches`,
//! `cpu-migrations`, opened once per thread as one perf group so a tick costs one `read(2)` per
//! thread. Kernel-side events are included (`include_kernel`): a context switch or a migration
//! happens in the kernel and would otherwise count as 0.
//!
//! Threading: owned by the sampling thread; the counters are file descriptors attached to the
//! target's threads (the kernel counts, we only read). A counter whose thread exited keeps its
//! last values. Hardware counters (cycles) are only probed, to say in the capability line whether
//! the machine has a PMU (virtual machines often have none: `ENOENT`).

use std::io;

use agent_core::sample::{Capability, Sample, TargetInfo, ThreadSample};
use perf_event::events::{Hardware, Software};
use perf_event::{Builder, Counter, Group};

use super::procfs::{reactor_mut, reactor_tids};

/// Reads perf software counters of the target's reactor threads.
pub struct PerfCollector {
    pid: u32,
    threads: Vec<PerfThread>,
    /// Set when the counters could not be opened (the one line).
    problem: Option<String>,
    /// Whether `cycles` could be opened.
    hardware: Option<Result<(), String>>,
}

struct PerfThread {
    index: u32,
    tid: u32,
    group: Group,
    task_clock: Counter,
    context_switches: Counter,
    migrations: Counter,
    /// Last `context-switches` total (no field in the sample yet; kept for `context_switches`).
    last_switches: Option<u64>,
}

impl PerfCollector {
    /// A collector for the reactor threads of process `pid`; counters are opened in
    /// [`Collector::describe`](super::Collector::describe).
    pub fn new(pid: u32) -> PerfCollector {
        PerfCollector {
            pid,
            threads: Vec::new(),
            problem: None,
            hardware: None,
        }
    }

    /// perf `context-switches` total of a reactor at the last collect (the sample has no field
    /// for it: procfs splits switches into voluntary and involuntary).
    pub fn context_switches(&self, reactor: u32) -> Option<u64> {
        self.threads
            .iter()
            .find(|t| t.index == reactor)
            .and_then(|t| t.last_switches)
    }

    fn open(index: u32, tid: u32) -> io::Result<PerfThread> {
        let pid = libc_pid(tid)?;
        let mut group = Group::builder().observe_pid(pid).build_group()?;
        let member = |ev: Software, group: &mut Group| {
            Builder::new(ev)
                .observe_pid(pid)
                .include_kernel()
                .build_with_group(group)
        };
        let task_clock = member(Software::TASK_CLOCK, &mut group)?;
        let context_switches = member(Software::CONTEXT_SWITCHES, &mut group)?;
        let migrations = member(Software::CPU_MIGRATIONS, &mut group)?;
        group.enable()?;
        Ok(PerfThread {
            index,
            tid,
            group,
            task_clock,
            context_switches,
            migrations,
            last_switches: None,
        })
    }
}

fn libc_pid(tid: u32) -> io::Result<i32> {
    i32::try_from(tid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// One line for a failed `perf_event_open`.
fn explain(e: &io::Error, pid: u32) -> String {
    match e.raw_os_error() {
        Some(1 | 13) => format!(
            "no permission to open perf events on pid {pid} (perf_event_paranoid={}; needs root or CAP_PERFMON): task-clock and perf migrations unavailable; procfs statistics still work",
            std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "?".into())
        ),
        Some(2 | 19 | 95) => format!(
            "perf software events not supported by this kernel ({e}): task-clock unavailable; procfs statistics still work"
        ),
        Some(3) => format!("reactor thread of pid {pid} exited before perf could attach ({e})"),
        _ => format!("perf_event_open failed on pid {pid}: {e}; procfs statistics still work"),
    }
}

impl super::Collector for PerfCollector {
    fn name(&self) -> &'static str {
        "perf"
    }

    fn capability(&self) -> Capability {
        if let Some(p) = &self.problem {
            return Capability {
                name: "perf".into(),
                available: false,
                note: p.clone(),
            };
        }
        if self.threads.is_empty() {
            return Capability {
                name: "perf".into(),
                available: false,
                note: format!(
                    "no reactor thread of pid {} to attach perf counters to",
                    self.pid
                ),
            };
        }
        let hw = match &self.hardware {
            Some(Ok(())) => "hardware counters (cycles) available too".to_string(),
            Some(Err(why)) => why.clone(),
            None => "hardware counters not probed".to_string(),
        };
        Capability {
            name: "perf".into(),
            available: true,
            note: format!(
                "task-clock, context-switches, cpu-migrations on {} reactor thread(s); {hw}",
                self.threads.len()
            ),
        }
    }

    fn describe(&mut self, info: &mut TargetInfo) {
        let tids = reactor_tids(self.pid, info);
        for &(index, tid) in &tids {
            match PerfCollector::open(index, tid) {
                Ok(t) => self.threads.push(t),
                Err(e) => {
                    // One reason is enough: a permission problem is the same for every thread.
                    self.problem.get_or_insert_with(|| explain(&e, self.pid));
                }
            }
        }
        if !self.threads.is_empty() {
            // Some threads may have failed (exited); what was opened works.
            self.problem = None;
        }
        if let Some(&(_, tid)) = tids.first() {
            self.hardware = Some(probe_cycles(tid));
        }
    }

    fn collect(&mut self, _info: &TargetInfo, sample: &mut Sample) {
        for t in &mut self.threads {
            let Ok(data) = t.group.read() else { continue };
            let task_clock = data.get(&t.task_clock).map(|e| e.value());
            let migrations = data.get(&t.migrations).map(|e| e.value());
            t.last_switches = data.get(&t.context_switches).map(|e| e.value());
            let r = reactor_mut(sample, t.index);
            let th = r.thread.get_or_insert_with(|| ThreadSample {
                tid: t.tid,
                ..ThreadSample::default()
            });
            if th.tid != t.tid {
                // procfs found the reactor under another tid (restarted): ours is stale.
                continue;
            }
            th.task_clock_ns = task_clock;
            if migrations.is_some() {
                // perf counts every migration since attach; `se.nr_migrations` counts since
                // thread start. Either is a monotonic total; prefer one source for the session.
                th.migrations = migrations;
            }
        }
    }
}

/// Opens (and drops) a `cycles` counter on `tid` to learn whether there is a PMU.
fn probe_cycles(tid: u32) -> Result<(), String> {
    let pid = libc_pid(tid).map_err(|e| e.to_string())?;
    match Builder::new(Hardware::CPU_CYCLES)
        .observe_pid(pid)
        .include_kernel()
        .build()
    {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(2 | 19 | 95)) => {
            Err("no hardware PMU: cycles/instructions unavailable; software counters work".into())
        }
        Err(e) => Err(format!(
            "hardware counters unavailable ({e}); software counters work"
        )),
    }
}
