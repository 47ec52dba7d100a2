//! Typed kernel events streamed through the one BPF ring buffer, and the small value types they
//! carry. Timestamps are `bpf_ktime_get_ns`: CLOCK_MONOTONIC nanoseconds, the agent's one clock.

use crate::config::BlockDev;
use std::fmt;
use std::net::IpAddr;

/// Hard irq handler or softirq.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IrqKind {
    Hard,
    Soft,
}

/// Block request operation (`REQ_OP_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BlockOp {
    Read,
    Write,
    Flush,
    Discard,
    WriteZeroes,
    /// Any other `REQ_OP_*` value (zone management, driver-private...).
    Other(u32),
}

impl BlockOp {
    pub fn from_raw(op: u32) -> BlockOp {
        match op {
            0 => BlockOp::Read,
            1 => BlockOp::Write,
            2 => BlockOp::Flush,
            3 => BlockOp::Discard,
            9 => BlockOp::WriteZeroes,
            other => BlockOp::Other(other),
        }
    }
}

/// Netdev direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NetDir {
    Tx,
    Rx,
}

/// Scheduler NUMA placement decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NumaTaskKind {
    /// sched_move_numa: moved to a cpu on its preferred node.
    Move,
    /// sched_swap_numa: swapped cpus with another task.
    Swap,
    /// sched_stick_numa: a move was attempted but failed.
    Stick,
    Other(u32),
}

impl NumaTaskKind {
    pub fn from_raw(k: u32) -> NumaTaskKind {
        match k {
            0 => NumaTaskKind::Move,
            1 => NumaTaskKind::Swap,
            2 => NumaTaskKind::Stick,
            other => NumaTaskKind::Other(other),
        }
    }
}

/// A TCP connection from the local socket's point of view (`s` = local).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TcpConn {
    pub saddr: IpAddr,
    pub sport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
}

impl fmt::Display for TcpConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} -> {}",
            std::net::SocketAddr::new(self.saddr, self.sport),
            std::net::SocketAddr::new(self.daddr, self.dport)
        )
    }
}

/// Send-side state of a connection from `tcp_probe` (fires on incoming segments).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpSample {
    pub snd_una: u32,
    pub snd_nxt: u32,
    pub write_seq: u32,
    pub snd_wnd: u32,
    pub snd_cwnd: u32,
    pub srtt_us: u32,
    pub wmem_queued: u32,
}

impl TcpSample {
    /// Bytes sent and not yet acknowledged: `snd_nxt - snd_una` (sequence arithmetic).
    pub fn in_flight(&self) -> u32 {
        self.snd_nxt.wrapping_sub(self.snd_una)
    }
    /// Bytes queued by the application and not yet sent: `write_seq - snd_nxt`.
    pub fn unsent(&self) -> u32 {
        self.write_seq.wrapping_sub(self.snd_nxt)
    }
}

/// One streamed kernel event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelEvent {
    /// A reactor thread was switched out while runnable on `cpu` at `start_ns` and ran again
    /// (on `resumed_cpu`) at `end_ns`; `by_pid`/`by_comm` ran the longest slice on its cpu
    /// meanwhile (the first task to take the cpu when none ran there after it, e.g. a
    /// migration): the intruder, not the short kernel thread that often runs first.
    Preempted {
        tid: u32,
        cpu: u32,
        start_ns: u64,
        end_ns: u64,
        resumed_cpu: u32,
        by_pid: u32,
        by_comm: String,
    },
    /// A sleeping reactor thread was woken at `waking_ns` by `waker_pid` and ran at
    /// `running_ns` on `cpu` (streamed when slower than `StreamThresholds::wakeup_latency_min_ns`).
    Wakeup {
        tid: u32,
        waker_pid: u32,
        waking_ns: u64,
        running_ns: u64,
        target_cpu: u32,
        cpu: u32,
    },
    /// A reactor thread was migrated.
    Migrated {
        ts_ns: u64,
        tid: u32,
        orig_cpu: u32,
        dest_cpu: u32,
    },
    /// A long hard irq or softirq on a reactor core (see `StreamThresholds::irq_min_ns`).
    IrqTime {
        cpu: u32,
        kind: IrqKind,
        vector: u32,
        start_ns: u64,
        duration_ns: u64,
    },
    /// A long syscall by a reactor thread (see `StreamThresholds::syscall_min_ns`).
    Syscall {
        tid: u32,
        nr: u32,
        ret: i64,
        start_ns: u64,
        duration_ns: u64,
    },
    /// A slow block request (see `StreamThresholds::block_min_ns`).
    BlockRq {
        dev: BlockDev,
        op: BlockOp,
        sector: u64,
        bytes: u32,
        error: i32,
        issue_ns: u64,
        latency_ns: u64,
    },
    /// A TCP segment was retransmitted; `tgid` is whoever was on the cpu (often softirq context).
    TcpRetransmit {
        ts_ns: u64,
        conn: TcpConn,
        state: i32,
        tgid: u32,
    },
    /// Rate-limited send-queue sample of a connection.
    TcpSample {
        ts_ns: u64,
        conn: TcpConn,
        sample: TcpSample,
    },
    /// Pages of the target migrated (`reason` is the kernel's `MR_*`, 5 = NUMA misplaced).
    NumaPages {
        ts_ns: u64,
        tid: u32,
        reason: u32,
        succeeded: u64,
        failed: u64,
        thp_succeeded: u64,
        thp_failed: u64,
    },
    /// The scheduler moved, swapped or tried to move a target thread for NUMA locality.
    NumaTask {
        ts_ns: u64,
        kind: NumaTaskKind,
        tid: u32,
        src_cpu: u32,
        dst_cpu: u32,
        other_tid: u32,
    },
}

impl KernelEvent {
    /// When the event completed (CLOCK_MONOTONIC ns).
    pub fn ts_ns(&self) -> u64 {
        match self {
            KernelEvent::Preempted { end_ns, .. } => *end_ns,
            KernelEvent::Wakeup { running_ns, .. } => *running_ns,
            KernelEvent::IrqTime {
                start_ns,
                duration_ns,
                ..
            }
            | KernelEvent::Syscall {
                start_ns,
                duration_ns,
                ..
            } => start_ns.saturating_add(*duration_ns),
            KernelEvent::BlockRq {
                issue_ns,
                latency_ns,
                ..
            } => issue_ns.saturating_add(*latency_ns),
            KernelEvent::Migrated { ts_ns, .. }
            | KernelEvent::TcpRetransmit { ts_ns, .. }
            | KernelEvent::TcpSample { ts_ns, .. }
            | KernelEvent::NumaPages { ts_ns, .. }
            | KernelEvent::NumaTask { ts_ns, .. } => *ts_ns,
        }
    }
}
