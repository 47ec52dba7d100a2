//! The result of a run: `PerfReport` (serde, for `--json` and sweeps) and its text table in the
//! style of `spdk_nvme_perf`. Built by the coordinator after the workers are joined.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::config::PerfConfig;
use crate::pattern::Mismatch;
use crate::stats::{IoStats, LatencySummary};
use crate::transport::TransportCounters;
use crate::usage::UsageSummary;

/// What the initiator learned about the controller.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TargetInfo {
    /// "TCP" or "RDMA".
    pub transport: String,
    pub address: String,
    pub subnqn: String,
    pub hostnqn: String,
    pub cntlid: u16,
    pub model: String,
    pub serial: String,
    pub firmware: String,
    /// NVMe version (VS property) as "major.minor.tertiary".
    pub version: String,
    /// Maximum data transfer size in bytes (None: unlimited).
    pub mdts_bytes: Option<u64>,
    /// I/O command capsule size in bytes (IOCCSZ * 16).
    pub ioccsz_bytes: u32,
    /// Largest in-capsule write the initiator sends (IOCCSZ * 16 - 64).
    pub in_capsule_limit: u32,
    pub maxh2cdata: u32,
    pub header_digest: bool,
    pub data_digest: bool,
    /// I/O queues granted by Set Features Number of Queues.
    pub io_queues_granted: u32,
    pub namespaces: Vec<NamespaceInfo>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct NamespaceInfo {
    pub nsid: u32,
    pub blocks: u64,
    pub block_size: u32,
    pub size_bytes: u64,
}

/// Totals of one worker or of the whole run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Totals {
    pub ios: u64,
    pub reads: u64,
    pub writes: u64,
    pub bytes: u64,
    pub errors: u64,
    pub elapsed_s: f64,
    pub iops: f64,
    pub mib_s: f64,
    pub latency: LatencySummary,
}

impl Totals {
    pub fn from_stats(s: &IoStats, elapsed_s: f64) -> Self {
        let per_s = |v: u64| {
            if elapsed_s > 0.0 {
                v as f64 / elapsed_s
            } else {
                0.0
            }
        };
        Totals {
            ios: s.ios(),
            reads: s.reads,
            writes: s.writes,
            bytes: s.bytes(),
            errors: s.error_count(),
            elapsed_s,
            iops: per_s(s.ios()),
            mib_s: per_s(s.bytes()) / (1024.0 * 1024.0),
            latency: s.latency_summary(),
        }
    }
}

/// One worker's line.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CoreResult {
    pub core: u32,
    pub qpairs: u32,
    #[serde(flatten)]
    pub totals: Totals,
    /// Transport-level failures that ended a qpair of this worker.
    pub fatal: Vec<String>,
    /// Syscalls and bytes over the measured interval.
    pub transport: TransportCounters,
    /// The worker thread's CPU time over the measured interval.
    pub usage: UsageSummary,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct VerifySummary {
    pub prefilled_bytes: u64,
    pub checked_blocks: u64,
    pub mismatches: u64,
    /// The first few mismatches, for the user.
    pub first: Vec<Mismatch>,
}

/// Everything `run` returns. `ok()` says whether the exit status should be zero.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PerfReport {
    pub tool: &'static str,
    pub version: &'static str,
    pub config: PerfConfig,
    pub target: TargetInfo,
    pub total: Totals,
    pub cores: Vec<CoreResult>,
    /// NVMe error completions by status name.
    pub errors: BTreeMap<String, u64>,
    /// Transport failures (TermReq, connection closed, timeouts), one line each.
    pub fatal: Vec<String>,
    pub verify: Option<VerifySummary>,
    /// Syscalls and bytes over the measured interval, all workers.
    pub transport: TransportCounters,
}

impl PerfReport {
    /// True when no I/O failed, no transport failed and every verified read matched.
    pub fn ok(&self) -> bool {
        self.fatal.is_empty()
            && self.errors.is_empty()
            && self.verify.as_ref().is_none_or(|v| v.mismatches == 0)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The human-readable table.
    pub fn to_text(&self) -> String {
        let mut o = String::new();
        let c = &self.config;
        let t = &self.target;
        let _ = writeln!(
            o,
            "Initializing NVMe Controllers\nAttached to NVMe over Fabrics controller at {}: {}",
            t.address, t.subnqn
        );
        let _ = writeln!(
            o,
            "  cntlid {} model {:?} serial {:?} fw {:?} nvme {} mdts {} in-capsule {} B maxh2cdata {} B hdgst {} ddgst {}",
            t.cntlid,
            t.model,
            t.serial,
            t.firmware,
            t.version,
            t.mdts_bytes.map_or("unlimited".to_string(), |b| b.to_string()),
            t.in_capsule_limit,
            t.maxh2cdata,
            t.header_digest,
            t.data_digest
        );
        for ns in &t.namespaces {
            let _ = writeln!(
                o,
                "  namespace {}: {} blocks of {} B ({:.2} GiB)",
                ns.nsid,
                ns.blocks,
                ns.block_size,
                ns.size_bytes as f64 / (1u64 << 30) as f64
            );
        }
        let _ = writeln!(
            o,
            "Workload {} io_size {} qd {} mix {}% read, {} core(s) x {} qpair(s)/ns, {:.1} s{}{}",
            c.workload.name(),
            c.io_size,
            c.queue_depth,
            c.workload.read_pct(c.read_mix),
            c.cores.len(),
            c.qpairs_per_ns,
            c.duration.as_secs_f64(),
            c.io_limit
                .map_or(String::new(), |n| format!(", io limit {n}")),
            if c.verify { ", verify" } else { "" }
        );
        let _ = writeln!(
            o,
            "========================================================================================================"
        );
        let _ = writeln!(
            o,
            "{:<32} {:>12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "", "", "", "Latency(us)", "", "", "", ""
        );
        let _ = writeln!(
            o,
            "{:<32} {:>12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "Device Information", "IOPS", "MiB/s", "Average", "min", "p99", "p99.9", "max"
        );
        let line = |o: &mut String, name: &str, x: &Totals| {
            let l = &x.latency;
            let _ = writeln!(
                o,
                "{:<32} {:>12.2} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>10.2}",
                name, x.iops, x.mib_s, l.avg_us, l.min_us, l.p99_us, l.p999_us, l.max_us
            );
        };
        for core in &self.cores {
            line(
                &mut o,
                &format!("{} {} from core {:>2}", t.transport, t.address, core.core),
                &core.totals,
            );
        }
        let _ = writeln!(
            o,
            "========================================================================================================"
        );
        line(&mut o, "Total", &self.total);
        let l = &self.total.latency;
        let _ = writeln!(
            o,
            "\nLatency percentiles (us): p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us
        );
        let _ = writeln!(
            o,
            "I/Os: {} ({} reads, {} writes) in {:.3} s",
            self.total.ios, self.total.reads, self.total.writes, self.total.elapsed_s
        );
        for core in &self.cores {
            let u = &core.usage;
            let el = core.totals.elapsed_s.max(1e-9);
            let _ = writeln!(
                o,
                "Core {:>2} cpu: on-cpu {:.1}% (user {:.1}%, system {:.1}%), run-queue wait {:.3} s, {} involuntary switches, {:.0} ns cpu per I/O",
                core.core,
                100.0 * u.on_cpu_s / el,
                100.0 * u.user_s / el,
                100.0 * u.system_s / el,
                u.run_queue_wait_s,
                u.involuntary_switches,
                1e9 * u.on_cpu_s / core.totals.ios.max(1) as f64
            );
        }
        let x = &self.transport;
        let ios = self.total.ios.max(1) as f64;
        let _ = writeln!(
            o,
            "Syscalls per I/O: recv {:.2} ({:.2} found nothing), send {:.2} ({} partial); {:.2} PDUs per non-empty recv",
            x.recv_calls as f64 / ios,
            x.recv_empty as f64 / ios,
            x.send_calls as f64 / ios,
            x.send_partial,
            x.pdus_received as f64 / (x.recv_calls - x.recv_empty).max(1) as f64
        );
        if let Some(v) = &self.verify {
            let _ = writeln!(
                o,
                "Verify: prefilled {} B, checked {} blocks, {} mismatches",
                v.prefilled_bytes, v.checked_blocks, v.mismatches
            );
            for m in &v.first {
                let _ = writeln!(o, "  MISMATCH {m}");
            }
        }
        if !self.errors.is_empty() {
            let _ = writeln!(o, "NVMe errors:");
            for (k, v) in &self.errors {
                let _ = writeln!(o, "  {k}: {v}");
            }
        }
        for f in &self.fatal {
            let _ = writeln!(o, "FATAL: {f}");
        }
        o
    }
}
