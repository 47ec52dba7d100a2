//! What to probe and what to filter on: [`ProbeConfig`] (given once to [`crate::ProbeSet::start`])
//! and its [`Filter`] part (also replaceable at runtime through the shared config map).
//! Plain data, validated before anything touches the kernel.

use crate::ProbeError;
use std::fmt;
use std::path::Path;

/// Reactor cores are a bitmask of this many cpus in the kernel config.
pub const CPU_LIMIT: usize = 1024;
/// Capacities of the shared filter sets (`bpf/rs_common.bpf.h`).
pub const MAX_TIDS: usize = 1024;
pub const MAX_DEVICES: usize = 256;
pub const MAX_PORTS: usize = 256;
pub const MAX_IFINDEXES: usize = 256;

/// One probe program group (one BPF object each, loaded and attached independently).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeKind {
    Sched,
    Irq,
    Syscalls,
    Block,
    Tcp,
    Net,
    Numa,
}

impl ProbeKind {
    pub const ALL: [ProbeKind; 7] = [
        ProbeKind::Sched,
        ProbeKind::Irq,
        ProbeKind::Syscalls,
        ProbeKind::Block,
        ProbeKind::Tcp,
        ProbeKind::Net,
        ProbeKind::Numa,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ProbeKind::Sched => "sched",
            ProbeKind::Irq => "irq",
            ProbeKind::Syscalls => "syscalls",
            ProbeKind::Block => "block",
            ProbeKind::Tcp => "tcp",
            ProbeKind::Net => "net",
            ProbeKind::Numa => "numa",
        }
    }

    /// Kernel tracepoints (tp_btf names) this probe attaches to, in attach order.
    pub fn tracepoints(self) -> &'static [&'static str] {
        match self {
            ProbeKind::Sched => &[
                "sched_switch",
                "sched_waking",
                "sched_wakeup",
                "sched_migrate_task",
            ],
            ProbeKind::Irq => &[
                "irq_handler_entry",
                "irq_handler_exit",
                "softirq_entry",
                "softirq_exit",
            ],
            ProbeKind::Syscalls => &["sys_enter", "sys_exit"],
            ProbeKind::Block => &["block_rq_issue", "block_rq_complete"],
            ProbeKind::Tcp => &["tcp_retransmit_skb", "tcp_probe"],
            ProbeKind::Net => &["net_dev_xmit", "netif_receive_skb"],
            ProbeKind::Numa => &[
                "mm_migrate_pages",
                "sched_move_numa",
                "sched_swap_numa",
                "sched_stick_numa",
            ],
        }
    }
}

impl std::str::FromStr for ProbeKind {
    type Err = ProbeError;

    /// Parses a probe name as printed by [`ProbeKind::name`] (e.g. from a `--probes` list).
    fn from_str(s: &str) -> Result<ProbeKind, ProbeError> {
        ProbeKind::ALL
            .into_iter()
            .find(|k| k.name() == s.trim())
            .ok_or_else(|| ProbeError::Config {
                reason: format!(
                    "unknown probe {s:?}; known: {}",
                    ProbeKind::ALL.map(ProbeKind::name).join(", ")
                ),
            })
    }
}

impl fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A block device by number (as in `ls -l /dev/...`, `stat -c %t:%T`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockDev {
    pub major: u32,
    pub minor: u32,
}

impl BlockDev {
    /// The device number of a block special file, e.g. `/dev/loop3` or `/dev/nvme0n1`.
    pub fn from_path(path: &Path) -> Result<BlockDev, ProbeError> {
        let st = rustix::fs::stat(path).map_err(|e| ProbeError::Device {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::BlockDevice {
            return Err(ProbeError::Device {
                path: path.to_path_buf(),
                reason: "not a block device".into(),
            });
        }
        Ok(BlockDev {
            major: rustix::fs::major(st.st_rdev),
            minor: rustix::fs::minor(st.st_rdev),
        })
    }
}

impl fmt::Display for BlockDev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// Which aggregated facts are also streamed as events, by minimum duration. `None` = never
/// streamed (the aggregates still count everything).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamThresholds {
    /// Stream `IrqTime` for hard irq / softirq runs at least this long on reactor cores.
    pub irq_min_ns: Option<u64>,
    /// Stream `Syscall` for reactor syscalls at least this long.
    pub syscall_min_ns: Option<u64>,
    /// Stream `BlockRq` for requests at least this long.
    pub block_min_ns: Option<u64>,
    /// At most one `TcpSample` per connection per interval.
    pub tcp_sample_interval_ns: Option<u64>,
    /// Stream `Wakeup` for reactor wake-ups whose waking-to-running latency is at least this
    /// long (an adaptive-sleep reactor can wake many thousand times a second).
    pub wakeup_latency_min_ns: Option<u64>,
}

impl Default for StreamThresholds {
    fn default() -> Self {
        StreamThresholds {
            irq_min_ns: Some(100_000),
            syscall_min_ns: Some(1_000_000),
            block_min_ns: Some(10_000_000),
            tcp_sample_interval_ns: Some(100_000_000),
            wakeup_latency_min_ns: Some(50_000),
        }
    }
}

/// The in-kernel filter, shared by every probe. Empty sets match nothing unless the matching
/// `any_*` flag is set, so a forgotten filter never streams the whole machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// The target process (tgid): a cheap first test before the reactor-tid lookup (sched,
    /// syscalls: reactor tids must then belong to it), the whole filter for numa.
    /// `None` = any process.
    pub pid: Option<u32>,
    /// Reactor thread ids (sched, syscalls).
    pub reactor_tids: Vec<u32>,
    /// Reactor cores (sched stolen time, irq).
    pub cores: Vec<u32>,
    /// Backend block devices (block).
    pub devices: Vec<BlockDev>,
    pub any_device: bool,
    /// Local or remote TCP ports of interest, e.g. the target's listeners (tcp).
    pub ports: Vec<u16>,
    pub any_port: bool,
    /// Netdev ifindexes (net).
    pub ifindexes: Vec<u32>,
    pub any_ifindex: bool,
    pub stream: StreamThresholds,
}

impl Filter {
    pub fn validate(&self) -> Result<(), ProbeError> {
        let too_many = |what: &'static str, n: usize, max: usize| {
            if n > max {
                Err(ProbeError::Config {
                    reason: format!("{n} {what} given, at most {max} fit the kernel set"),
                })
            } else {
                Ok(())
            }
        };
        too_many("reactor tids", self.reactor_tids.len(), MAX_TIDS)?;
        too_many("devices", self.devices.len(), MAX_DEVICES)?;
        too_many("ports", self.ports.len(), MAX_PORTS)?;
        too_many("ifindexes", self.ifindexes.len(), MAX_IFINDEXES)?;
        if let Some(&c) = self.cores.iter().find(|&&c| c as usize >= CPU_LIMIT) {
            return Err(ProbeError::Config {
                reason: format!("core {c} is beyond the {CPU_LIMIT}-cpu reactor mask"),
            });
        }
        if self.reactor_tids.contains(&0) {
            return Err(ProbeError::Config {
                reason: "tid 0 (the idle task) cannot be a reactor".into(),
            });
        }
        if let Some(d) = self
            .devices
            .iter()
            .find(|d| d.major >= 1 << 12 || d.minor >= 1 << 20)
        {
            return Err(ProbeError::Config {
                reason: format!(
                    "device {d} does not fit a kernel dev_t (12-bit major, 20-bit minor)"
                ),
            });
        }
        Ok(())
    }
}

/// Everything [`crate::ProbeSet::start`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeConfig {
    pub filter: Filter,
    /// Probes to load; the others are reported as disabled.
    pub probes: Vec<ProbeKind>,
    /// Size of the one event ring buffer: a power of two, at least one page.
    pub ringbuf_bytes: u32,
    /// Tracepoints of the requested probes left unattached (the per-packet `tcp_probe` and the
    /// per-softirq `softirq_entry`/`softirq_exit` on a busy reactor core cost the target more
    /// than they tell, [`PER_PACKET`]); the status line names them as off.
    pub off: Vec<&'static str>,
}

/// The tracepoints that fire per packet or per softirq on a busy reactor's core: at ~800K IOPS
/// over loopback they run hundreds of thousands of times a second each, a few percent of the
/// reactor's core; an agent that watches always leaves them off unless asked (`off`).
pub const PER_PACKET: [&str; 3] = ["tcp_probe", "softirq_entry", "softirq_exit"];

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            filter: Filter::default(),
            probes: ProbeKind::ALL.to_vec(),
            ringbuf_bytes: 1 << 22,
            off: Vec::new(),
        }
    }
}

impl ProbeConfig {
    pub fn validate(&self) -> Result<(), ProbeError> {
        self.filter.validate()?;
        // 4 KiB pages on the machines this targets; libbpf rejects other non-page multiples.
        let page = 4096;
        if !self.ringbuf_bytes.is_power_of_two() || self.ringbuf_bytes < page {
            return Err(ProbeError::Config {
                reason: format!(
                    "ring buffer size {} must be a power of two and at least one page ({page})",
                    self.ringbuf_bytes
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(r: Result<(), ProbeError>) -> String {
        match r {
            Err(ProbeError::Config { reason }) => reason,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn bad_configs_are_clear_errors() {
        let f = Filter {
            cores: vec![1, 1024],
            ..Filter::default()
        };
        assert_eq!(
            reason(f.validate()),
            "core 1024 is beyond the 1024-cpu reactor mask"
        );
        let f = Filter {
            reactor_tids: vec![0],
            ..Filter::default()
        };
        assert!(reason(f.validate()).contains("tid 0"));
        let f = Filter {
            ports: (0..=MAX_PORTS as u16).collect(),
            ..Filter::default()
        };
        assert_eq!(
            reason(f.validate()),
            "257 ports given, at most 256 fit the kernel set"
        );
        let f = Filter {
            devices: vec![BlockDev {
                major: 1 << 12,
                minor: 0,
            }],
            ..Filter::default()
        };
        assert!(reason(f.validate()).contains("does not fit a kernel dev_t"));
        let c = ProbeConfig {
            ringbuf_bytes: 5000,
            ..ProbeConfig::default()
        };
        assert!(reason(c.validate()).contains("power of two"));
        assert!(ProbeConfig::default().validate().is_ok());
    }

    #[test]
    fn probe_names_round_trip_and_unknown_names_are_errors() {
        for k in ProbeKind::ALL {
            assert_eq!(k.name().parse::<ProbeKind>().expect("known name"), k);
        }
        assert_eq!(
            reason("kprobes".parse::<ProbeKind>().map(|_| ())),
            "unknown probe \"kprobes\"; known: sched, irq, syscalls, block, tcp, net, numa"
        );
    }

    #[test]
    fn block_dev_from_a_regular_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        std::fs::write(&p, b"x").expect("write");
        match BlockDev::from_path(&p) {
            Err(ProbeError::Device { reason, .. }) => assert_eq!(reason, "not a block device"),
            other => panic!("expected a device error, got {other:?}"),
        }
        assert!(BlockDev::from_path(&dir.path().join("missing")).is_err());
    }
}
