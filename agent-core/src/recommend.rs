//! The recommender: from the findings and the measured windows, the settings to change, each
//! with its current value, proposed value, expected effect and evidence, and a ready fragment
//! (TOML for `ringside-tgt`, flags for the initiator).
//!
//! Pure: a function of its inputs.

use crate::finding::{Finding, Recommendation};
use crate::sample::TargetInfo;
use crate::topology::Topology;
use crate::window::Window;

/// Recommendations for the current state. `windows` are the recent windows, oldest first (the
/// last one is the newest); `findings` are the raised (persistent) findings.
pub fn recommend(
    _info: &TargetInfo,
    _topology: &Topology,
    _windows: &[Window],
    _findings: &[Finding],
) -> Vec<Recommendation> {
    Vec::new()
}
