//! ringside's analysis core: what the agent knows, with no I/O.
//!
//! Data flows one way: collectors (in the `agent` crate) produce a [`TargetInfo`] once and a
//! [`Sample`] per tick; the [`Analyzer`] turns consecutive samples into [`Window`]s (rates,
//! ratios, Little's-law outstanding depth, latency histograms), runs the [`detect`]ors on each,
//! raises [`Finding`]s that persist over several windows, asks the [`recommend`]er for
//! settings, and publishes a [`Snapshot`] that every sink (TUI, exporter, reports) renders.
//!
//! No I/O, no threads, no clock: time is in the samples. Everything is `serde`, so a recording
//! replays through exactly the same code as a live session.
#![forbid(unsafe_code)]

pub mod analyzer;
pub mod detect;
pub mod finding;
pub mod hist;
pub mod lifecycle;
pub mod model;
pub mod recommend;
pub mod recording;
pub mod report;
pub mod requests;
pub mod sample;
pub mod snapshot;
pub mod spdk;
pub mod topology;
pub mod topology_svg;
pub mod window;

pub use analyzer::{Analyzer, AnalyzerConfig};
pub use finding::{Evidence, Finding, FindingKind, Recommendation, Setting, Severity, Subject};
pub use hist::Hist;
pub use sample::{Sample, TargetInfo};
pub use snapshot::Snapshot;
pub use topology::Topology;
pub use window::Window;
