//! A live analysis session: the collectors ([`Sources`]) feeding the pure
//! [`Analyzer`](agent_core::Analyzer). Every live sink (`diagnose`, `top`, `serve`, `record`)
//! drives one of these.
//!
//! A session opened on a target follows it (module `lifecycle`): each tick first checks the
//! instance is still the live one; when it is gone, nothing is sampled and the snapshot carries
//! only the lifecycle; when a new instance of the same name appears, the session attaches to
//! it with new collectors and a new analyzer.
//!
//! Threading: a `Session` is owned by one thread; call [`Session::tick`] every
//! [`Session::interval`]. Sinks that serve other threads (the exporter's HTTP workers) copy the
//! [`Snapshot`] out after each tick.

use std::sync::Arc;
use std::time::Duration;

use agent_core::lifecycle::TargetStatus;
use agent_core::sample::{Capability, Sample, TargetInfo};
use agent_core::{Analyzer, AnalyzerConfig, Snapshot, Topology, Window};
use anyhow::{bail, Context, Result};
use trace_ring::TraceReader;

use crate::attach::AttachArgs;
use crate::collect::ring::RingCollector;
use crate::collect::{Collector, Sources};
use crate::lifecycle::{Follower, Step};

/// How to run a session.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    /// Window length (also the sampling interval).
    pub window: Duration,
    /// Topology to analyse against (`--topology`); `None` = discover this machine.
    pub topology_arg: Option<String>,
    /// The netdev serving the listeners (`--nic`), overriding what the collectors found.
    pub nic: Option<String>,
    /// Attach the kernel probes (eBPF): preemption, interrupts, retransmits, block latency.
    pub kernel: bool,
    /// Also attach the raw_syscalls probe (slows every syscall on the machine while attached).
    pub kernel_syscalls: bool,
    /// Also attach the per-packet and per-softirq tracepoints (off by default: their cost).
    pub kernel_per_packet: bool,
}

impl Default for SessionOptions {
    fn default() -> SessionOptions {
        SessionOptions {
            window: Duration::from_secs(1),
            topology_arg: None,
            nic: None,
            kernel: rustix::process::geteuid().is_root(),
            kernel_syscalls: false,
            kernel_per_packet: false,
        }
    }
}

/// Loads a topology from a `--topology` argument (hwloc XML, ringside JSON,
/// `synthetic:…`, `live`): returns it and its degradation notes.
pub fn load_topology(arg: &str) -> Result<(Topology, Vec<String>)> {
    let source = crate::topology::TopologySource::from_arg(arg)?;
    let loaded =
        crate::topology::load(&source).with_context(|| format!("cannot load topology {arg:?}"))?;
    Ok((loaded.topology, loaded.notes))
}

/// This machine's topology (hwloc plus sysfs), or an empty one with a note saying why.
pub fn discover_topology() -> (Topology, Vec<String>) {
    match crate::topology::load(&crate::topology::TopologySource::Live) {
        Ok(l) => (l.topology, l.notes),
        Err(e) => (
            Topology::default(),
            vec![format!(
                "machine topology unavailable ({e}): NUMA findings need --topology; everything else works"
            )],
        ),
    }
}

/// Collectors plus analyzer, following the target through restarts.
pub struct Session {
    /// The collectors of the instance read now; `None` while waiting for it or after it went.
    sources: Option<Sources>,
    /// The instance read now (shared with its ring collector), for the liveness check.
    reader: Option<Arc<TraceReader>>,
    analyzer: Analyzer,
    interval: Duration,
    last_sample: Option<Sample>,
    /// `None` for sessions over ready-made sources and for `--file`.
    follow: Option<Follow>,
}

/// What a followed session needs to attach again.
struct Follow {
    follower: Follower,
    opts: SessionOptions,
    topology: Topology,
    topology_note: Capability,
}

impl Session {
    /// Attaches to the target chosen by `attach` and sets every collector up. Collectors that
    /// cannot work say so in the snapshot's capabilities. With `--name`, a target that is not
    /// there yet is waited for (the session starts in the `waiting` state); a trace file this
    /// user cannot read, or a missing one for `--pid` and `--file`, is an error.
    pub fn open(attach: &AttachArgs, opts: &SessionOptions) -> Result<Session> {
        let (topology, topology_note) = topology_of(opts)?;
        let now = trace_ring::tsc::mono_ns();
        let Some(follower) = Follower::new(attach, now)? else {
            // --file: one file as it is (a live one, or one left behind).
            let reader =
                Arc::new(attach.open().map_err(|e| {
                    match crate::lifecycle::access_problem(&e) {
                        Some(line) => anyhow::anyhow!(line),
                        None => e,
                    }
                })?);
            let sources = attach_sources(&reader, opts, &topology_note);
            let mut s = Session::from_sources(sources, topology, opts.window);
            s.reader = Some(reader);
            return Ok(s);
        };
        let info = TargetInfo {
            name: follower.status().name.clone(),
            ..TargetInfo::default()
        };
        let mut s = Session {
            sources: None,
            reader: None,
            analyzer: Analyzer::new(info, topology.clone(), analyzer_config(opts.window)),
            interval: opts.window,
            last_sample: None,
            follow: Some(Follow {
                follower,
                opts: opts.clone(),
                topology,
                topology_note,
            }),
        };
        s.observe(true)?;
        if s.sources.is_none() {
            if let Some(f) = &s.follow {
                if f.follower.status().attachments == 0 && attach.name.is_none() {
                    // By pid: that process has no trace file (a name would be waited for).
                    bail!("{}", f.follower.status().reason);
                }
            }
        }
        Ok(s)
    }

    /// A live session over collectors already set up (SPDK's): applies `--nic`, keeps the
    /// agent off the reactors' cores and loads the topology. It does not follow restarts.
    pub fn open_sources(mut sources: Sources, opts: &SessionOptions) -> Result<Session> {
        let (topology, topology_note) = topology_of(opts)?;
        prepare(&mut sources, opts, &topology_note);
        Ok(Session::from_sources(sources, topology, opts.window))
    }

    /// A session over ready-made sources (tests, other sources such as SPDK's). It does not
    /// follow restarts: its snapshots carry no lifecycle.
    pub fn from_sources(sources: Sources, topology: Topology, window: Duration) -> Session {
        let analyzer = Analyzer::new(sources.info().clone(), topology, analyzer_config(window));
        Session {
            sources: Some(sources),
            reader: None,
            analyzer,
            interval: window,
            last_sample: None,
            follow: None,
        }
    }

    /// How often to call [`Session::tick`].
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Checks the target's lifecycle (attaching a new instance when one appeared), then takes a
    /// sample and analyses it; returns the window it closed, if any. While the target is not
    /// attached nothing is sampled.
    pub fn tick(&mut self) -> Option<&Window> {
        // Errors only for the first attempt (open), never here.
        let _ = self.observe(false);
        let Some(sources) = &mut self.sources else {
            self.last_sample = None;
            return None;
        };
        let s = sources.sample();
        self.last_sample = Some(s.clone());
        self.analyzer.push(s)
    }

    /// The lifecycle step: liveness of the instance read now, and a new instance when there is
    /// one. A new instance gets new collectors, a new analyzer (windows and findings start
    /// again) and the agent's placement recomputed for its reactor cores.
    fn observe(&mut self, first: bool) -> Result<()> {
        let Some(f) = &mut self.follow else {
            return Ok(());
        };
        let now = trace_ring::tsc::mono_ns();
        match f.follower.observe(self.reader.as_deref(), now, first)? {
            Step::Unchanged => {}
            Step::Lost => {
                self.sources = None;
                self.reader = None;
            }
            Step::Found(r) => {
                let reader: Arc<TraceReader> = Arc::from(r);
                // Drop the old instance's collectors (and their probes) before the new ones.
                self.sources = None;
                let sources = attach_sources(&reader, &f.opts, &f.topology_note);
                self.analyzer = Analyzer::new(
                    sources.info().clone(),
                    f.topology.clone(),
                    analyzer_config(self.interval),
                );
                self.sources = Some(sources);
                self.reader = Some(reader);
            }
        }
        Ok(())
    }

    /// The target's lifecycle, when this session follows one.
    pub fn status(&self) -> Option<&TargetStatus> {
        self.follow.as_ref().map(|f| f.follower.status())
    }

    /// True while an instance is read (always for sessions that do not follow).
    pub fn is_live(&self) -> bool {
        self.sources.is_some()
    }

    /// Waits (ticking every interval, so the wait is said once) until an instance is attached
    /// or `stop` is set; true when attached.
    pub fn wait_live(&mut self, stop: &std::sync::atomic::AtomicBool) -> bool {
        while !self.is_live() && !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let due = std::time::Instant::now() + self.interval;
            while std::time::Instant::now() < due
                && !stop.load(std::sync::atomic::Ordering::Relaxed)
            {
                std::thread::sleep(Duration::from_millis(50).min(self.interval));
            }
            let _ = self.observe(false);
        }
        self.is_live()
    }

    /// The latest raw sample (for `ringside record`); `None` while the target is not attached.
    pub fn last_sample(&self) -> Option<&Sample> {
        self.last_sample.as_ref()
    }

    /// The analyzer (findings over the current instance's windows).
    pub fn analyzer(&self) -> &Analyzer {
        &self.analyzer
    }

    /// The current state for sinks. While the target is waiting or gone it holds only the
    /// target's name, the topology and the lifecycle: no window, history or findings (they
    /// ended with the instance).
    pub fn snapshot(&self) -> Snapshot {
        let lifecycle = self.status().cloned();
        if self.sources.is_none() {
            return Snapshot {
                target: TargetInfo {
                    name: lifecycle
                        .as_ref()
                        .map(|l| l.name.clone())
                        .unwrap_or_default(),
                    ..TargetInfo::default()
                },
                topology: self.analyzer.topology().clone(),
                lifecycle,
                ..Snapshot::default()
            };
        }
        Snapshot {
            lifecycle,
            ..self.analyzer.snapshot()
        }
    }
}

fn analyzer_config(window: Duration) -> AnalyzerConfig {
    AnalyzerConfig {
        window_ns: u64::try_from(window.as_nanos()).unwrap_or(u64::MAX).max(1),
        ..AnalyzerConfig::default()
    }
}

/// The collectors for one instance: its trace ring, the standard system collectors for its pid,
/// the kernel probes when asked; the agent's threads moved off its reactors' cores.
fn attach_sources(
    reader: &Arc<TraceReader>,
    opts: &SessionOptions,
    topology: &Capability,
) -> Sources {
    let pid = reader.header().pid;
    // Off the reactors' cores before anything else runs (the probes count every slice another
    // task takes on those cores from the moment they attach: the agent's own start-up, loading
    // and verifying the later probes, must not be among them). `prepare` says where it ran.
    let mut cores: Vec<u32> = reader
        .description()
        .reactors
        .iter()
        .map(|r| r.core)
        .collect();
    cores.sort_unstable();
    cores.dedup();
    let _ = crate::placement::keep_off_reactor_cores(&cores);
    // Counters and request records (bounded per tick: see collect::ring).
    let mut collectors: Vec<Box<dyn Collector>> = vec![Box::new(
        RingCollector::shared_with_records(Arc::clone(reader)),
    )];
    collectors.extend(crate::collect::standard::standard(pid));
    // After procfs, which resolves the reactor tids the probes filter on.
    if opts.kernel {
        collectors.push(crate::collect::kernel::kernel_collector_with(
            pid,
            crate::collect::kernel::KernelOptions {
                syscalls: opts.kernel_syscalls,
                per_packet: opts.kernel_per_packet,
            },
        ));
    }
    let mut sources = Sources::new(collectors, Box::new(trace_ring::tsc::mono_ns));
    prepare(&mut sources, opts, topology);
    sources
}

/// The topology to analyse against (`--topology` or this machine) and its capability line.
fn topology_of(opts: &SessionOptions) -> Result<(Topology, Capability)> {
    let (topology, notes) = match &opts.topology_arg {
        Some(arg) => load_topology(arg)?,
        None => discover_topology(),
    };
    let note = Capability {
        name: "topology".into(),
        available: !topology.cpus.is_empty(),
        note: if notes.is_empty() {
            format!(
                "{} ({} NUMA node(s), {} CPUs, {} PCI devices)",
                topology.source,
                topology.node_count(),
                topology.cpus.len(),
                topology.pci.len()
            )
        } else {
            notes.join("; ")
        },
    };
    Ok((topology, note))
}

/// `--nic`, the agent's placement off the reactors' cores, the topology line.
fn prepare(sources: &mut Sources, opts: &SessionOptions, topology: &Capability) {
    if let Some(nic) = &opts.nic {
        for l in &mut sources.info_mut().listeners {
            l.netdev = Some(nic.clone());
        }
    }
    // Off the reactors' cores before sampling starts (threads started later inherit it); again
    // for every new instance, whose reactors may sit elsewhere.
    let mut cores: Vec<u32> = sources.info().reactors.iter().map(|r| r.core).collect();
    cores.sort_unstable();
    cores.dedup();
    sources.note_capability(crate::placement::keep_off_reactor_cores(&cores));
    sources.note_capability(topology.clone());
}
