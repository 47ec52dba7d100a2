//! The one type every sink consumes (TUI, exporter, reports): the latest window, a compact
//! history for sparklines and charts, the raised findings and the recommendations.

use serde::{Deserialize, Serialize};

use crate::finding::{Finding, Recommendation};
use crate::sample::TargetInfo;
use crate::topology::Topology;
use crate::window::Window;

/// Everything a sink shows at one instant.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// CLOCK_MONOTONIC ns of the latest window's end (0 before the first window).
    pub t_ns: u64,
    /// What the target is.
    pub target: TargetInfo,
    /// The machine.
    pub topology: Topology,
    /// The latest window.
    pub window: Option<Window>,
    /// Compact per-window figures, oldest first (bounded).
    pub history: Vec<WindowSummary>,
    /// Findings raised now (persistent over several windows), most severe first.
    pub findings: Vec<Finding>,
    /// Recommendations for the current state.
    pub recommendations: Vec<Recommendation>,
    /// Windows analysed since attach.
    pub windows_seen: u64,
    /// The target's lifecycle (waiting, attached, gone, reattached), in a live session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<crate::lifecycle::TargetStatus>,
}

/// The figures of one window that sparklines and time charts need.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowSummary {
    /// Window end (CLOCK_MONOTONIC ns).
    pub end_ns: u64,
    /// Window length (s).
    pub seconds: f64,
    /// Total IOPS.
    pub iops: f64,
    /// Total bytes/s.
    pub bytes_per_s: f64,
    /// p50 latency over all I/O (ns), 0 without I/O.
    pub p50_ns: u64,
    /// p99 latency over all I/O (ns), 0 without I/O.
    pub p99_ns: u64,
    /// Per reactor.
    pub reactors: Vec<ReactorSummary>,
    /// Per netdev: (name, rx+tx bytes/s, utilisation if known).
    pub netdevs: Vec<(String, f64, Option<f64>)>,
    /// Per RDMA port: (`device/port`, rx+tx bytes/s, utilisation), when its counters are usable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rdma_ports: Vec<(String, f64, Option<f64>)>,
}

/// One reactor in a [`WindowSummary`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReactorSummary {
    /// Reactor index.
    pub index: u32,
    /// IOPS.
    pub iops: f64,
    /// Busy-poll share 0..1.
    pub busy_ratio: f64,
    /// p50 latency (ns).
    pub p50_ns: u64,
    /// p99 latency (ns).
    pub p99_ns: u64,
}

impl WindowSummary {
    /// Summarises a window.
    pub fn of(w: &Window) -> WindowSummary {
        WindowSummary {
            end_ns: w.end_ns,
            seconds: w.seconds(),
            iops: w.total.iops,
            bytes_per_s: w.total.bytes_per_s,
            p50_ns: w.total.latency.quantile(0.5).unwrap_or(0),
            p99_ns: w.total.latency.quantile(0.99).unwrap_or(0),
            reactors: w
                .reactors
                .iter()
                .map(|r| ReactorSummary {
                    index: r.index,
                    iops: r.iops,
                    busy_ratio: r.busy_ratio,
                    p50_ns: r.latency.quantile(0.5).unwrap_or(0),
                    p99_ns: r.latency.quantile(0.99).unwrap_or(0),
                })
                .collect(),
            netdevs: w
                .netdevs
                .iter()
                .map(|n| {
                    (
                        n.name.clone(),
                        n.rx_bytes_per_s + n.tx_bytes_per_s,
                        n.utilisation,
                    )
                })
                .collect(),
            rdma_ports: w
                .rdma_ports
                .iter()
                .filter_map(|p| {
                    let bytes = match (p.rx_bytes_per_s, p.tx_bytes_per_s) {
                        (None, None) => return None,
                        (rx, tx) => rx.unwrap_or(0.0) + tx.unwrap_or(0.0),
                    };
                    Some((format!("{}/{}", p.device, p.port), bytes, p.utilisation))
                })
                .collect(),
        }
    }
}
