//! Typed rows read from the probes' aggregate maps by [`crate::ProbeSet::read_aggregates`].
//! All counters are monotonic totals since the probe was attached; rates are the caller's
//! business (difference of two reads over the time between them).

use crate::abi::HIST_BUCKETS;
use crate::config::BlockDev;
use crate::events::{BlockOp, IrqKind, NetDir, NumaTaskKind, TcpConn, TcpSample};

/// A log2 latency histogram: bucket `i` counts durations in `[2^i, 2^(i+1))` ns (bucket 0 also
/// holds 0 and 1 ns; the last bucket holds everything from 2^31 ns ≈ 2.1 s up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyHist {
    pub count: u64,
    pub total_ns: u64,
    pub max_ns: u64,
    pub buckets: [u64; HIST_BUCKETS],
}

impl Default for LatencyHist {
    fn default() -> Self {
        LatencyHist {
            count: 0,
            total_ns: 0,
            max_ns: 0,
            buckets: [0; HIST_BUCKETS],
        }
    }
}

impl LatencyHist {
    /// Mean duration in ns (`total_ns / count`), `None` when empty.
    pub fn mean_ns(&self) -> Option<u64> {
        self.total_ns.checked_div(self.count)
    }

    /// Upper bound (exclusive, ns) of the bucket holding quantile `q` in `[0, 1]`: the answer is
    /// within a factor of two. `None` when empty.
    pub fn quantile_upper_ns(&self, q: f64) -> Option<u64> {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(if i + 1 == HIST_BUCKETS {
                    self.max_ns.max(1 << i)
                } else {
                    1u64 << (i + 1)
                });
            }
        }
        Some(self.max_ns)
    }

    /// Adds another histogram (e.g. summing cpus or ops).
    pub fn merge(&mut self, o: &LatencyHist) {
        self.count += o.count;
        self.total_ns += o.total_ns;
        self.max_ns = self.max_ns.max(o.max_ns);
        for (a, b) in self.buckets.iter_mut().zip(o.buckets.iter()) {
            *a += b;
        }
    }
}

/// Time a non-reactor task ran on a reactor core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StolenTime {
    pub cpu: u32,
    pub pid: u32,
    pub comm: String,
    pub ns: u64,
    /// Number of times it was switched out of that core.
    pub slices: u64,
}

/// Scheduling totals of one reactor thread.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReactorSchedStats {
    pub tid: u32,
    /// Switched out while runnable, and the total time until it ran again.
    pub preempted: u64,
    pub preempted_ns: u64,
    /// Switched out to sleep, and the total time asleep.
    pub voluntary: u64,
    pub voluntary_ns: u64,
    /// Wake-ups and the total / max wake-up-to-running latency.
    pub wakeups: u64,
    pub wake_latency_ns: u64,
    pub wake_latency_max_ns: u64,
    pub migrations: u64,
}

/// Hard irq / softirq time on one reactor core for one vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IrqTotals {
    pub cpu: u32,
    pub kind: IrqKind,
    pub vector: u32,
    pub time: LatencyHist,
}

/// Syscalls by one reactor thread for one syscall number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyscallTotals {
    pub tid: u32,
    pub nr: u32,
    pub count: u64,
    pub total_ns: u64,
    pub max_ns: u64,
    /// Returned a negative errno.
    pub errors: u64,
}

/// Requests completed on one device for one op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockTotals {
    pub dev: BlockDev,
    pub op: BlockOp,
    pub bytes: u64,
    pub errors: u64,
    /// Issue to completion; `latency.count` is the number of requests.
    pub latency: LatencyHist,
}

/// Retransmits and the send-queue samples of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpConnTotals {
    pub conn: TcpConn,
    pub retransmits: u64,
    pub last_retransmit_ns: u64,
    pub samples: u64,
    pub last_sample_ns: u64,
    pub max_in_flight: u32,
    pub max_unsent: u32,
    pub last: Option<TcpSample>,
}

/// Packets and bytes of one netdev in one direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetTotals {
    pub ifindex: u32,
    pub dir: NetDir,
    pub packets: u64,
    pub bytes: u64,
    /// tx only: the driver did not return NETDEV_TX_OK.
    pub errors: u64,
}

/// Page migrations in the target's context for one kernel `MR_*` reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumaPagesTotals {
    pub reason: u32,
    pub events: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub thp_succeeded: u64,
    pub thp_failed: u64,
}

/// Scheduler NUMA placement decisions for one target thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumaTaskTotals {
    pub tid: u32,
    pub kind: NumaTaskKind,
    pub count: u64,
}

/// Everything the aggregate maps hold, each list sorted by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aggregates {
    pub stolen: Vec<StolenTime>,
    pub reactors: Vec<ReactorSchedStats>,
    pub irq: Vec<IrqTotals>,
    pub syscalls: Vec<SyscallTotals>,
    pub block: Vec<BlockTotals>,
    pub tcp: Vec<TcpConnTotals>,
    pub net: Vec<NetTotals>,
    pub numa_pages: Vec<NumaPagesTotals>,
    pub numa_tasks: Vec<NumaTaskTotals>,
    /// Events the kernel could not stream because the ring buffer was full.
    pub ringbuf_drops: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_reports_the_bucket_upper_bound() {
        let mut h = LatencyHist::default();
        h.buckets[10] = 90; // [1024, 2048)
        h.buckets[20] = 10; // [1 Mi, 2 Mi)
        h.count = 100;
        h.max_ns = 1_500_000;
        assert_eq!(h.quantile_upper_ns(0.5), Some(2048));
        assert_eq!(h.quantile_upper_ns(0.9), Some(2048));
        assert_eq!(h.quantile_upper_ns(0.91), Some(1 << 21));
        assert_eq!(LatencyHist::default().quantile_upper_ns(0.5), None);
    }

    #[test]
    fn merge_adds_counts_and_keeps_max() {
        let mut a = LatencyHist {
            count: 1,
            total_ns: 10,
            max_ns: 10,
            ..LatencyHist::default()
        };
        a.buckets[3] = 1;
        let mut b = a.clone();
        b.max_ns = 20;
        a.merge(&b);
        assert_eq!(
            (a.count, a.total_ns, a.max_ns, a.buckets[3]),
            (2, 20, 20, 2)
        );
        assert_eq!(a.mean_ns(), Some(10));
    }
}
