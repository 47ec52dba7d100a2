//! A live analysis session: the collectors ([`Sources`]) feeding the pure
//! [`Analyzer`](agent_core::Analyzer). Every live sink (`diagnose`, `top`, `serve`, `record`)
//! drives one of these.
//!
//! Threading: a `Session` is owned by one thread; call [`Session::tick`] every
//! [`Session::interval`]. Sinks that serve other threads (the exporter's HTTP workers) copy the
//! [`Snapshot`] out after each tick.

use std::time::Duration;

use agent_core::sample::{Capability, Sample};
use agent_core::{Analyzer, AnalyzerConfig, Snapshot, Topology, Window};
use anyhow::{Context, Result};

use crate::attach::AttachArgs;
use crate::collect::ring::RingCollector;
use crate::collect::{Collector, Sources};

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
}

impl Default for SessionOptions {
    fn default() -> SessionOptions {
        SessionOptions {
            window: Duration::from_secs(1),
            topology_arg: None,
            nic: None,
            kernel: rustix::process::geteuid().is_root(),
            kernel_syscalls: false,
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

/// Collectors plus analyzer.
pub struct Session {
    sources: Sources,
    analyzer: Analyzer,
    interval: Duration,
    last_sample: Option<Sample>,
}

impl Session {
    /// Attaches to the target chosen by `attach` and sets every collector up. Collectors that
    /// cannot work say so in the snapshot's capabilities; only a missing trace file is an error.
    pub fn open(attach: &AttachArgs, opts: &SessionOptions) -> Result<Session> {
        let reader = attach.open()?;
        let pid = reader.header().pid;
        // Counters and request records (bounded per tick: see collect::ring).
        let mut collectors: Vec<Box<dyn Collector>> =
            vec![Box::new(RingCollector::with_records(reader))];
        collectors.extend(crate::collect::standard::standard(pid));
        // After procfs, which resolves the reactor tids the probes filter on.
        if opts.kernel {
            collectors.push(crate::collect::kernel::kernel_collector(
                pid,
                opts.kernel_syscalls,
            ));
        }
        let sources = Sources::new(collectors, Box::new(trace_ring::tsc::mono_ns));
        Session::open_sources(sources, opts)
    }

    /// A live session over collectors already set up (ringside-tgt's or SPDK's): applies
    /// `--nic`, keeps the agent off the reactors' cores and loads the topology.
    pub fn open_sources(mut sources: Sources, opts: &SessionOptions) -> Result<Session> {
        if let Some(nic) = &opts.nic {
            for l in &mut sources.info_mut().listeners {
                l.netdev = Some(nic.clone());
            }
        }
        // Off the reactors' cores before sampling starts (threads started later inherit it).
        let mut cores: Vec<u32> = sources.info().reactors.iter().map(|r| r.core).collect();
        cores.sort_unstable();
        cores.dedup();
        sources.note_capability(crate::placement::keep_off_reactor_cores(&cores));
        let (topology, notes) = match &opts.topology_arg {
            Some(arg) => load_topology(arg)?,
            None => discover_topology(),
        };
        sources.note_capability(Capability {
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
        });
        Ok(Session::from_sources(sources, topology, opts.window))
    }

    /// A session over ready-made sources (tests).
    pub fn from_sources(sources: Sources, topology: Topology, window: Duration) -> Session {
        let cfg = AnalyzerConfig {
            window_ns: u64::try_from(window.as_nanos()).unwrap_or(u64::MAX).max(1),
            ..AnalyzerConfig::default()
        };
        let analyzer = Analyzer::new(sources.info().clone(), topology, cfg);
        Session {
            sources,
            analyzer,
            interval: window,
            last_sample: None,
        }
    }

    /// How often to call [`Session::tick`].
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Takes a sample now and analyses it; returns the window it closed, if any.
    pub fn tick(&mut self) -> Option<&Window> {
        let s = self.sources.sample();
        self.last_sample = Some(s.clone());
        self.analyzer.push(s)
    }

    /// The latest raw sample (for `ringside record`).
    pub fn last_sample(&self) -> Option<&Sample> {
        self.last_sample.as_ref()
    }

    /// The analyzer (findings over the whole session, windows).
    pub fn analyzer(&self) -> &Analyzer {
        &self.analyzer
    }

    /// The current state for sinks.
    pub fn snapshot(&self) -> Snapshot {
        self.analyzer.snapshot()
    }
}
