//! Detectors: one module each, every one a small state machine over windows.
//!
//! Contract: [`Detector::observe`] looks at one [`Window`] (with the [`Topology`], the
//! [`TargetInfo`] and the windows before it) and pushes a *candidate* [`Finding`] for each
//! subject whose condition holds in this window, with the evidence from this window and a
//! `confidence` in 0..1 that reflects the margin over its threshold. It never decides alone that
//! a fault is real: the [`crate::analyzer::Analyzer`] raises a finding only after the same
//! (kind, subject) held in several consecutive windows (DESIGN §6: never from one noisy window).
//!
//! Pure: no I/O, no clock; state only from the windows seen.

use crate::finding::Finding;
use crate::sample::TargetInfo;
use crate::topology::Topology;
use crate::window::Window;

/// What a detector sees besides the current window.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// What the target is.
    pub info: &'a TargetInfo,
    /// The machine.
    pub topology: &'a Topology,
    /// Earlier windows, oldest first (bounded; the current one is not included).
    pub history: &'a [Window],
}

/// A fault detector.
pub trait Detector: Send {
    /// Stable name (`numa`, `starvation`…).
    fn name(&self) -> &'static str;

    /// Looks at one window and pushes candidate findings.
    fn observe(&mut self, window: &Window, ctx: &Context<'_>, out: &mut Vec<Finding>);
}

/// The standard set, in report order.
pub fn default_detectors() -> Vec<Box<dyn Detector>> {
    Vec::new()
}
