//! What a run does: `PerfConfig` (built by the CLI or by tests and sweeps) and its validation.
//! Plain data, cloned into each worker thread.

use std::time::Duration;

use crate::trid::{TrType, TransportId};
use crate::units::CoreId;

/// The access pattern (`-w`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    Read,
    Write,
    RandRead,
    RandWrite,
    Rw,
    RandRw,
}

impl Workload {
    pub fn random(self) -> bool {
        matches!(
            self,
            Workload::RandRead | Workload::RandWrite | Workload::RandRw
        )
    }

    /// Percentage of reads, given `-M` (used only by the mixed workloads).
    pub fn read_pct(self, mix: u8) -> u8 {
        match self {
            Workload::Read | Workload::RandRead => 100,
            Workload::Write | Workload::RandWrite => 0,
            Workload::Rw | Workload::RandRw => mix.min(100),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Workload::Read => "read",
            Workload::Write => "write",
            Workload::RandRead => "randread",
            Workload::RandWrite => "randwrite",
            Workload::Rw => "rw",
            Workload::RandRw => "randrw",
        }
    }
}

impl std::str::FromStr for Workload {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "read" => Workload::Read,
            "write" => Workload::Write,
            "randread" => Workload::RandRead,
            "randwrite" => Workload::RandWrite,
            "rw" => Workload::Rw,
            "randrw" => Workload::RandRw,
            _ => {
                return Err(ConfigError::Workload {
                    value: s.to_string(),
                })
            }
        })
    }
}

/// A rejected configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown workload {value:?} (read write randread randwrite rw randrw)")]
    Workload { value: String },
    #[error("queue depth must be 1..=65535, got {value}")]
    QueueDepth { value: u32 },
    #[error("i/o size must be a non-zero multiple of 512 bytes up to 16 MiB, got {value}")]
    IoSize { value: u64 },
    #[error("read percentage must be 0..=100, got {value}")]
    ReadPct { value: u8 },
    #[error("no cores given")]
    NoCores,
    #[error("qpairs per namespace per core must be >= 1")]
    NoQpairs,
    #[error("duration must be > 0 unless --io-limit is given")]
    NoDuration,
    #[error("--range {range} is smaller than one i/o of {io_size} bytes")]
    Range { range: u64, io_size: u64 },
    #[error("--io-limit must be > 0")]
    IoLimit,
    #[error("rdma transport not built in (cargo feature `rdma` of bench-harness is off)")]
    RdmaNotBuilt,
    #[error("digests (--header-digest/--data-digest) exist on nvme/tcp only")]
    RdmaDigest,
    #[error("--io-timeout must be > 0")]
    IoTimeout,
}

/// Everything one run needs. `PerfConfig::new` gives `spdk_nvme_perf`-like defaults.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PerfConfig {
    pub trid: TransportId,
    pub queue_depth: u32,
    pub io_size: u64,
    pub workload: Workload,
    /// `-M`: read percentage for rw/randrw.
    pub read_mix: u8,
    #[serde(serialize_with = "ser_secs")]
    pub duration: Duration,
    #[serde(serialize_with = "ser_secs")]
    pub warmup: Duration,
    pub cores: Vec<CoreId>,
    pub qpairs_per_ns: u32,
    pub verify: bool,
    pub verify_seed: u64,
    /// Seed of the LBA / read-write choice PRNG.
    pub seed: u64,
    pub hostnqn: Option<String>,
    pub header_digest: bool,
    pub data_digest: bool,
    /// Stop after this many I/Os in total (split evenly across qpairs).
    pub io_limit: Option<u64>,
    /// Restrict the working set to the first `range` bytes of each namespace.
    pub range: Option<u64>,
    /// A command outstanding longer than this ends its qpair with an error.
    #[serde(serialize_with = "ser_secs")]
    pub io_timeout: Duration,
    /// Keep-alive timeout requested at connect (0 disables keep-alive).
    #[serde(serialize_with = "ser_secs")]
    pub keep_alive: Duration,
    /// Pin worker threads to their cores (tests on shared machines may turn this off).
    pub pin: bool,
    /// SO_SNDBUF/SO_RCVBUF of every connection (None: kernel autotuning).
    pub socket_buffer: Option<u64>,
    /// Keep SQ flow control on I/O queues (default off, as Linux: the target may then end
    /// successful reads with a SUCCESS-flagged C2HData instead of a CapsuleResp).
    pub sq_flow_control: bool,
    /// Send I/Os larger than the controller's MDTS anyway (fault injection: the target must
    /// refuse each with Invalid Field in Command).
    pub over_mdts: bool,
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl PerfConfig {
    pub fn new(trid: TransportId) -> Self {
        PerfConfig {
            trid,
            queue_depth: 32,
            io_size: 4096,
            workload: Workload::RandRead,
            read_mix: 50,
            duration: Duration::from_secs(10),
            warmup: Duration::ZERO,
            cores: vec![CoreId(0)],
            qpairs_per_ns: 1,
            verify: false,
            verify_seed: 0x5249_4e47_5349_4445, // "RINGSIDE"
            seed: 1,
            hostnqn: None,
            header_digest: false,
            data_digest: false,
            io_limit: None,
            range: None,
            io_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_secs(10),
            pin: true,
            socket_buffer: None,
            sq_flow_control: false,
            over_mdts: false,
        }
    }

    /// Checks what can be checked before connecting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.trid.trtype == TrType::Rdma && !cfg!(feature = "rdma") {
            return Err(ConfigError::RdmaNotBuilt);
        }
        if self.trid.trtype == TrType::Rdma && (self.header_digest || self.data_digest) {
            return Err(ConfigError::RdmaDigest);
        }
        if !(1..=65535).contains(&self.queue_depth) {
            return Err(ConfigError::QueueDepth {
                value: self.queue_depth,
            });
        }
        if self.io_size == 0 || self.io_size % 512 != 0 || self.io_size > 16 << 20 {
            return Err(ConfigError::IoSize {
                value: self.io_size,
            });
        }
        if self.read_mix > 100 {
            return Err(ConfigError::ReadPct {
                value: self.read_mix,
            });
        }
        if self.cores.is_empty() {
            return Err(ConfigError::NoCores);
        }
        if self.qpairs_per_ns == 0 {
            return Err(ConfigError::NoQpairs);
        }
        if self.io_timeout.is_zero() {
            return Err(ConfigError::IoTimeout);
        }
        if self.io_limit == Some(0) {
            return Err(ConfigError::IoLimit);
        }
        if self.duration.is_zero() && self.io_limit.is_none() {
            return Err(ConfigError::NoDuration);
        }
        if let Some(r) = self.range {
            if r < self.io_size {
                return Err(ConfigError::Range {
                    range: r,
                    io_size: self.io_size,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> PerfConfig {
        PerfConfig::new("trtype:tcp traddr:127.0.0.1".parse().expect("trid"))
    }

    #[test]
    fn defaults_validate() {
        assert_eq!(cfg().validate(), Ok(()));
    }

    #[test]
    fn bad_values_are_rejected() {
        let mut c = cfg();
        c.io_size = 1000;
        assert!(matches!(c.validate(), Err(ConfigError::IoSize { .. })));
        let mut c = cfg();
        c.queue_depth = 0;
        assert!(matches!(c.validate(), Err(ConfigError::QueueDepth { .. })));
        let mut c = cfg();
        c.io_timeout = Duration::ZERO;
        assert_eq!(c.validate(), Err(ConfigError::IoTimeout));
        let mut c = cfg();
        c.range = Some(512);
        assert!(matches!(c.validate(), Err(ConfigError::Range { .. })));
        let mut c = cfg();
        c.trid = "trtype:rdma traddr:127.0.0.1".parse().expect("trid");
        if cfg!(feature = "rdma") {
            assert_eq!(c.validate(), Ok(()));
            c.header_digest = true;
            assert_eq!(c.validate(), Err(ConfigError::RdmaDigest));
        } else {
            assert_eq!(c.validate(), Err(ConfigError::RdmaNotBuilt));
        }
        assert!(ConfigError::RdmaNotBuilt
            .to_string()
            .contains("rdma transport not built in"));
    }

    #[test]
    fn workloads_parse_and_mix() {
        let w: Workload = "randrw".parse().expect("randrw");
        assert!(w.random());
        assert_eq!(w.read_pct(70), 70);
        assert_eq!(Workload::Write.read_pct(70), 0);
        assert!("scan".parse::<Workload>().is_err());
    }
}
