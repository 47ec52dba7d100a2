//! Command-line flags and how they turn into a [`Config`]. Pure: no I/O besides reading the
//! `--config` file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use crate::config::{
    parse_core_list, BackendKind, ByteSize, Config, ConfigError, IdlePolicy, ListenerConfig,
    NamespaceConfig, Placement,
};

/// ringside-tgt: a poll-mode, run-to-completion NVMe/TCP target.
///
/// Either give a TOML file with --config (see nvmf-target/examples/target.toml), or describe one
/// subsystem with flags, e.g.:
///
///   ringside-tgt --listen 127.0.0.1:4420 --malloc 1GiB --cores 0
///
/// Every reactor thread busy-polls its core. Stop with SIGINT/SIGTERM or the `shutdown` RPC.
#[derive(Debug, Parser)]
#[command(name = "ringside-tgt", version, verbatim_doc_comment)]
pub struct Args {
    /// TOML configuration file; --name, --cores, --rpc-socket, --listen, --listen-rdma, --placement, --idle, --no-trace, --trace-ring-records, --trace-dir and --trace-group override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Listen address (repeatable), e.g. 127.0.0.1:4420 or [::1]:4420.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Vec<SocketAddr>,

    /// NVMe/RDMA listen address (repeatable), e.g. 192.168.1.10:4420 (an address of an RDMA
    /// device's netdev; rdma-cm does not listen on loopback).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen_rdma: Vec<SocketAddr>,

    /// Add a RAM namespace of SIZE (e.g. 1GiB, 512MiB); repeatable, NSIDs follow the order given.
    #[arg(long, value_name = "SIZE")]
    pub malloc: Vec<ByteSize>,

    /// Add a null namespace of SIZE (reads return zeros, writes are dropped); repeatable.
    #[arg(long, value_name = "SIZE")]
    pub null: Vec<ByteSize>,

    /// Block size of the namespaces given by --malloc/--null: 512 or 4096.
    #[arg(long, value_name = "BYTES", default_value_t = 512)]
    pub block_size: u32,

    /// Add an io_uring namespace on a regular file or block device (O_DIRECT; size from the
    /// file, which must not be empty); repeatable, after the --malloc and --null namespaces.
    #[arg(long, value_name = "PATH")]
    pub uring: Vec<PathBuf>,

    /// Block size of the --uring namespaces: 512 or 4096 (default: the device's logical block
    /// size; for a file the smallest O_DIRECT unit of its filesystem, usually 512).
    #[arg(long, value_name = "BYTES")]
    pub uring_block_size: Option<u32>,

    /// Add a namespace on a PCIe NVMe controller bound to vfio-pci, driven from user space
    /// (its first active namespace; size and block size from the device), e.g. 0000:81:00.0;
    /// repeatable, after the --uring namespaces.
    #[arg(long, value_name = "BDF")]
    pub nvme_vfio: Vec<String>,

    /// Add a namespace served by NVMe passthrough through io_uring on an NVMe generic character
    /// device, e.g. /dev/ng0n1 (size and block size from the device's Identify data);
    /// repeatable, after the --uring namespaces.
    #[arg(long, value_name = "/dev/ngXnY")]
    pub uring_cmd: Vec<PathBuf>,

    /// Reactor cores, e.g. 0 or 0,1 or 0-3 (default 0).
    #[arg(long, value_name = "LIST")]
    pub cores: Option<String>,

    /// Subsystem NQN for the flag-built subsystem.
    #[arg(long, value_name = "NQN", default_value = crate::config::DEFAULT_NQN)]
    pub nqn: String,

    /// Instance name (default ringside).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// JSON-RPC unix socket (default /var/tmp/ringside-<name>.sock).
    #[arg(long, value_name = "PATH")]
    pub rpc_socket: Option<PathBuf>,

    /// Host NQN allowed to connect to the flag-built subsystem (repeatable; default: any host).
    #[arg(long, value_name = "NQN")]
    pub allow_host: Vec<String>,

    /// Connection placement policy: round-robin, least-loaded or numa-local.
    #[arg(long, value_name = "POLICY")]
    pub placement: Option<Placement>,

    /// Idle policy: `poll` (spin, lowest latency) or `sleep` (after 1000 empty polls, wait in
    /// epoll for up to 1 ms: for shared machines and emulated guests).
    #[arg(long, value_name = "POLICY", value_parser = ["poll", "sleep"])]
    pub idle: Option<String>,

    /// NVMe/TCP reads end with C2HData SUCCESS instead of a CapsuleResp: `auto` (when the host
    /// disabled SQ flow control), `always` (like SPDK's nvmf_tgt) or `never`.
    #[arg(long, value_name = "MODE")]
    pub c2h_success: Option<crate::config::C2hSuccess>,

    /// Validate the configuration, print it as TOML and exit.
    #[arg(long)]
    pub check: bool,

    /// Do not write the shared-memory trace file (overrides [trace] enabled).
    #[arg(long)]
    pub no_trace: bool,

    /// Records per reactor trace ring, a power of two (overrides [trace] ring_records).
    #[arg(long, value_name = "N")]
    pub trace_ring_records: Option<u64>,

    /// Directory of the trace file ringside.<name> (default /dev/shm; overrides [trace] dir).
    #[arg(long, value_name = "DIR")]
    pub trace_dir: Option<PathBuf>,

    /// Group (name or gid) that may read the trace file and use the RPC socket; sets the mode
    /// to 0640 unless [trace] mode says otherwise (overrides [trace] group).
    #[arg(long, value_name = "GROUP")]
    pub trace_group: Option<String>,
}

impl Args {
    /// Builds the configuration (not yet validated).
    pub fn to_config(&self) -> Result<Config, ConfigError> {
        let from_flags = !self.malloc.is_empty()
            || !self.null.is_empty()
            || !self.uring.is_empty()
            || !self.nvme_vfio.is_empty()
            || !self.uring_cmd.is_empty();
        let mut cfg = match &self.config {
            Some(path) => {
                if from_flags
                    || !self.allow_host.is_empty()
                    || self.nqn != crate::config::DEFAULT_NQN
                {
                    return Err(ConfigError::Invalid(
                        "--malloc, --null, --uring, --nqn and --allow-host describe a subsystem; with --config, describe it in the file".into(),
                    ));
                }
                Config::load(path)?
            }
            None => {
                let mut c = Config::new(self.name.as_deref().unwrap_or("ringside"));
                let s = &mut c.subsystems[0];
                s.nqn = self.nqn.clone();
                s.allowed_hosts = self.allow_host.clone();
                let ns = |backend, size| NamespaceConfig {
                    nsid: None,
                    backend,
                    size,
                    block_size: self.block_size,
                };
                s.namespaces
                    .extend(self.malloc.iter().map(|&sz| ns(BackendKind::Malloc, sz)));
                s.namespaces
                    .extend(self.null.iter().map(|&sz| ns(BackendKind::Null, sz)));
                s.namespaces
                    .extend(self.uring.iter().map(|p| NamespaceConfig {
                        nsid: None,
                        backend: BackendKind::Uring { path: p.clone() },
                        size: ByteSize(0),
                        block_size: self.uring_block_size.unwrap_or(0),
                    }));
                s.namespaces
                    .extend(self.nvme_vfio.iter().map(|bdf| NamespaceConfig {
                        nsid: None,
                        backend: BackendKind::NvmeVfio { bdf: bdf.clone() },
                        size: ByteSize(0),
                        block_size: 0,
                    }));
                s.namespaces
                    .extend(self.uring_cmd.iter().map(|p| NamespaceConfig {
                        nsid: None,
                        backend: BackendKind::UringCmd { path: p.clone() },
                        size: ByteSize(0),
                        block_size: 0,
                    }));
                c
            }
        };
        if let Some(n) = &self.name {
            cfg.name = n.clone();
        }
        if let Some(c) = &self.cores {
            cfg.cores = parse_core_list(c)?;
        }
        if let Some(p) = &self.rpc_socket {
            cfg.rpc_socket = Some(p.clone());
        }
        if self.no_trace {
            cfg.trace.enabled = false;
        }
        if let Some(n) = self.trace_ring_records {
            cfg.trace.ring_records = n;
        }
        if let Some(d) = &self.trace_dir {
            cfg.trace.dir = Some(d.clone());
        }
        if let Some(g) = &self.trace_group {
            cfg.trace.group = Some(g.clone());
            if cfg.trace.mode == crate::config::TraceConfig::default().mode {
                cfg.trace.mode = "0640".into();
            }
        }
        if let Some(p) = self.placement {
            cfg.placement = p;
        }
        if let Some(m) = self.c2h_success {
            cfg.c2h_success = m;
        }
        match self.idle.as_deref() {
            Some("sleep") => {
                cfg.idle = IdlePolicy::Sleep {
                    after_idle_polls: 1000,
                    max_sleep_us: 1000,
                }
            }
            Some(_) => cfg.idle = IdlePolicy::Poll,
            None => {}
        }
        if !self.listen.is_empty() || !self.listen_rdma.is_empty() {
            let l = |t: &str| {
                let t = t.to_string();
                move |a: &SocketAddr| ListenerConfig {
                    transport: t.clone(),
                    addr: a.ip(),
                    port: a.port(),
                }
            };
            cfg.listeners = self.listen.iter().map(l("tcp")).collect();
            cfg.listeners.extend(self.listen_rdma.iter().map(l("rdma")));
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("ringside-tgt").chain(args.iter().copied()))
            .expect("arguments should parse")
    }

    #[test]
    fn common_case_builds_one_subsystem() {
        let a = parse(&[
            "--listen",
            "127.0.0.1:4420",
            "--malloc",
            "1GiB",
            "--cores",
            "0",
        ]);
        let mut c = a.to_config().expect("config");
        c.validate(Some(&[0])).expect("valid");
        assert_eq!(c.listeners[0].port, 4420);
        assert_eq!(c.subsystems[0].namespaces[0].size, ByteSize(1 << 30));
        assert_eq!(c.subsystems[0].namespaces[0].block_size, 512);
        assert_eq!(
            c.rpc_socket_path(),
            PathBuf::from("/var/tmp/ringside-ringside.sock")
        );
    }

    #[test]
    fn idle_flag_sets_the_policy() {
        let a = parse(&[
            "--listen",
            "127.0.0.1:1",
            "--null",
            "1GiB",
            "--idle",
            "sleep",
        ]);
        assert!(matches!(
            a.to_config().unwrap().idle,
            IdlePolicy::Sleep { .. }
        ));
        assert!(Args::try_parse_from(["ringside-tgt", "--idle", "nap"]).is_err());
    }

    #[test]
    fn no_namespace_is_a_clear_error() {
        let a = parse(&["--listen", "127.0.0.1:4420"]);
        let e = a
            .to_config()
            .unwrap()
            .validate(None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no namespace"), "{e}");
    }

    #[test]
    fn uring_flag_builds_a_uring_namespace() {
        let a = parse(&[
            "--listen",
            "127.0.0.1:1",
            "--malloc",
            "1MiB",
            "--uring",
            "/dev/loop0",
            "--uring-block-size",
            "4096",
        ]);
        let mut c = a.to_config().expect("config");
        c.validate(None).expect("valid");
        let ns = &c.subsystems[0].namespaces[1];
        assert_eq!(
            ns.backend,
            BackendKind::Uring {
                path: "/dev/loop0".into()
            }
        );
        assert_eq!(
            (ns.nsid, ns.size, ns.block_size),
            (Some(2), ByteSize(0), 4096)
        );
        let a = parse(&["--listen", "127.0.0.1:1", "--uring", "/x"]);
        let ns = &a.to_config().expect("config").subsystems[0].namespaces[0];
        assert_eq!(ns.block_size, 0, "block size from the device by default");
        let bad = parse(&[
            "--listen",
            "127.0.0.1:1",
            "--uring",
            "/x",
            "--uring-block-size",
            "1024",
        ]);
        assert!(bad.to_config().unwrap().validate(None).is_err());
    }

    #[test]
    fn uring_cmd_flag_builds_a_device_sized_namespace() {
        let a = parse(&[
            "--listen",
            "127.0.0.1:1",
            "--malloc",
            "1MiB",
            "--uring-cmd",
            "/dev/ng0n1",
        ]);
        let mut c = a.to_config().expect("config");
        c.validate(None).expect("valid");
        let ns = &c.subsystems[0].namespaces[1];
        assert_eq!(
            ns.backend,
            BackendKind::UringCmd {
                path: "/dev/ng0n1".into()
            }
        );
        assert_eq!(
            (ns.nsid, ns.size, ns.block_size),
            (Some(2), ByteSize(0), 0),
            "size and block size from Identify"
        );
        // The TOML form round-trips through the same shape.
        let toml = toml::to_string(ns).expect("encodes");
        assert!(
            toml.contains("backend = \"uring-cmd\"") && toml.contains("/dev/ng0n1"),
            "{toml}"
        );
        let back: NamespaceConfig = toml::from_str(&toml).expect("decodes");
        assert_eq!(&back, ns);
        let e = toml::from_str::<NamespaceConfig>("backend = \"uring-cmd\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs path = \"/dev/ngXnY\""), "{e}");
    }

    #[test]
    fn bad_flags_are_rejected() {
        assert!(Args::try_parse_from(["ringside-tgt", "--malloc", "1QB"]).is_err());
        assert!(Args::try_parse_from(["ringside-tgt", "--listen", "localhost"]).is_err());
        let a = parse(&[
            "--listen",
            "127.0.0.1:1",
            "--null",
            "1GiB",
            "--block-size",
            "1000",
        ]);
        assert!(a.to_config().unwrap().validate(None).is_err());
        let a = parse(&["--listen", "127.0.0.1:1", "--null", "1GiB", "--nqn", "bad"]);
        assert!(a.to_config().unwrap().validate(None).is_err());
    }
}
