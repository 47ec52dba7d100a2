//! Collectors: the agent's inputs, behind one seam (STYLE: injected inputs).
//!
//! A [`Collector`] reads one source (the trace file's counters, procfs, perf events, netdevs,
//! RDMA ports, block devices, numa_maps, kernel probes) and writes its part of a [`Sample`]. [`Sources`]
//! owns the collectors and the clock, fills [`TargetInfo`] once and a `Sample` per tick; a
//! recording replays through the same `agent_core::Analyzer` without any of them, so tests plug
//! in recorded or synthetic inputs.
//!
//! Threading: all collectors run on the agent's one sampling thread, in order, once per tick.
//! A collector that cannot work (no permission, no PMU, file gone) reports it once through
//! [`Collector::capability`] and then contributes nothing; it never fails the tick.

use agent_core::sample::{Capability, Sample, TargetInfo};

pub mod block;
pub mod kernel;
pub mod netdev;
pub mod numa_maps;
pub mod perf;
pub mod procfs;
pub mod rdma;
pub mod records;
pub mod ring;
pub mod standard;

/// One input source.
pub trait Collector: Send {
    /// Short name (`trace-ring`, `procfs`, `perf`, `netdev`, `block`, `numa_maps`, `ebpf`).
    fn name(&self) -> &'static str;

    /// Availability and one line saying what works or what is missing (called once, after
    /// [`Collector::describe`]).
    fn capability(&self) -> Capability;

    /// Adds what this source knows about the target to `info` (called once before the first
    /// sample; e.g. the ring collector fills reactors and listeners, the netdev collector the
    /// listener's interface).
    fn describe(&mut self, _info: &mut TargetInfo) {}

    /// Adds this source's counters to `sample` (cumulative totals, see `agent_core::sample`).
    /// `info` is the final description. Must not block for long and must not fail the tick:
    /// a source that breaks mid-run leaves its fields empty.
    fn collect(&mut self, info: &TargetInfo, sample: &mut Sample);
}

/// The set of collectors and the clock.
pub struct Sources {
    collectors: Vec<Box<dyn Collector>>,
    clock: Box<dyn FnMut() -> u64 + Send>,
    info: TargetInfo,
}

impl Sources {
    /// Sources with the given collectors; `clock` returns CLOCK_MONOTONIC ns.
    pub fn new(
        mut collectors: Vec<Box<dyn Collector>>,
        clock: Box<dyn FnMut() -> u64 + Send>,
    ) -> Sources {
        let mut info = TargetInfo::default();
        for c in &mut collectors {
            c.describe(&mut info);
        }
        for c in &collectors {
            info.capabilities.push(c.capability());
        }
        Sources {
            collectors,
            clock,
            info,
        }
    }

    /// What the target is (after every collector described it).
    pub fn info(&self) -> &TargetInfo {
        &self.info
    }

    /// The description, for adjustments from the command line (`--nic`).
    pub fn info_mut(&mut self) -> &mut TargetInfo {
        &mut self.info
    }

    /// Adds a capability line from outside the collectors (topology, probes not loaded…).
    pub fn note_capability(&mut self, cap: Capability) {
        self.info.capabilities.push(cap);
    }

    /// Takes one sample now.
    pub fn sample(&mut self) -> Sample {
        let mut s = Sample {
            t_ns: (self.clock)(),
            ..Sample::default()
        };
        for c in &mut self.collectors {
            c.collect(&self.info, &mut s);
        }
        s
    }
}
