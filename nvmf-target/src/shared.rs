//! What every thread of the target shares: [`Shared`] (the read-mostly [`Env`] the reactors'
//! connections also see, the bdevs, the counters page reader, placement, the reactors' message
//! queues and the shutdown flag) and the messages a reactor receives ([`Msg`]).
//!
//! Layering: above the transports (a [`Msg`] carries a TCP stream or an RDMA connection event)
//! and below the reactor, the RPC methods and the target's lifecycle, which all use it; it never
//! names them. The rdma-cm thread reaches the reactors through [`crate::rdma::CmHost`], which
//! [`Shared`] implements, so the RDMA transport does not depend on this module either.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::fd::OwnedFd;
use serde_json::{json, Value};

use crate::backend::{self, Bdev};
pub use crate::pollgroup::Env;
use crate::subsystem::{Subsystem, SubsystemKind};

/// Messages to a reactor.
#[derive(Debug)]
pub enum Msg {
    /// A freshly accepted, non-blocking, TCP_NODELAY connection.
    NewConnection {
        stream: TcpStream,
        peer: SocketAddr,
        id: u64,
    },
    /// An NVMe/RDMA connection event from the rdma-cm thread.
    #[cfg(feature = "rdma")]
    Rdma(crate::rdma::RdmaMsg),
    /// A bdev created at run time (a namespace being added): open this reactor's queue on it
    /// at `index` of its bdev queues, then acknowledge, before any command can reach it.
    AddBdev {
        bdev: NewBdev,
        index: usize,
        done: std::sync::mpsc::Sender<()>,
    },
}

/// A bdev travelling to the reactors in [`Msg::AddBdev`].
pub struct NewBdev(pub Arc<dyn crate::backend::Bdev>);

impl std::fmt::Debug for NewBdev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NewBdev({})", self.0.kind())
    }
}

/// A way to reach one reactor from other threads.
pub(crate) struct ReactorLink {
    pub tx: Sender<Msg>,
    pub wake: Arc<OwnedFd>,
}

impl ReactorLink {
    pub fn send(&self, m: Msg) -> bool {
        let ok = self.tx.send(m).is_ok();
        self.wake();
        ok
    }
    pub fn wake(&self) {
        let _ = rustix::io::write(&*self.wake, &1u64.to_ne_bytes());
    }
}

/// State shared by every thread of the target. Derefs to its [`Env`] (configuration,
/// subsystems, listener addresses), the part the reactors' connections see too.
pub struct Shared {
    pub env: Arc<Env>,
    pub bdevs: Vec<Arc<dyn Bdev>>,
    /// The counters page (the trace file, published or anonymous), read by `get_stats` and
    /// placement; the reactors are its only writers.
    counters: trace_ring::TraceReader,
    pub shutdown: AtomicBool,
    pub started: Instant,
    next_qpair_id: AtomicU64,
    /// Bdevs created at run time (their queues follow `bdevs` in every reactor).
    runtime_bdevs: std::sync::Mutex<usize>,
    pub(crate) links: Vec<ReactorLink>,
    /// Connection placement, for the TCP acceptor and the rdma-cm thread.
    placer: crate::placement::Placer,
    /// The trace file's path and group toggles, when tracing.
    pub trace: Option<(PathBuf, trace_ring::TraceControl)>,
}

impl std::ops::Deref for Shared {
    type Target = Env;
    fn deref(&self) -> &Env {
        &self.env
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.config.name)
            .finish()
    }
}

impl Shared {
    /// The reactor for a new connection on a listener whose NIC is on `nic_node`.
    pub(crate) fn pick_reactor(&self, nic_node: Option<u32>) -> usize {
        self.placer.pick(nic_node, |i| {
            self.counters.counters(i as u32).map_or(0, |c| {
                c.totals
                    .connections_opened
                    .saturating_sub(c.totals.connections_closed)
            })
        })
    }

    /// Builds the shared state of a target about to start its threads.
    pub(crate) fn new(
        env: Arc<Env>,
        bdevs: Vec<Arc<dyn Bdev>>,
        counters: trace_ring::TraceReader,
        links: Vec<ReactorLink>,
        trace: Option<(PathBuf, trace_ring::TraceControl)>,
    ) -> Shared {
        let placer = crate::placement::Placer::new(
            env.config.placement,
            env.config
                .cores
                .iter()
                .map(|c| crate::placement::numa_node_of_cpu(c.0))
                .collect(),
        );
        Shared {
            env,
            bdevs,
            counters,
            shutdown: AtomicBool::new(false),
            started: Instant::now(),
            next_qpair_id: AtomicU64::new(1),
            runtime_bdevs: std::sync::Mutex::new(0),
            links,
            placer,
            trace,
        }
    }

    /// Asks every thread to stop.
    pub fn request_shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
        for l in &self.links {
            l.wake();
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
    }

    /// Creates a namespace at run time: builds its bdev, opens a queue on it on every reactor
    /// (waiting for each to acknowledge, so no command can reach a reactor without one), then
    /// publishes it in the subsystem, which tells the controllers (AEN + Changed Namespace List).
    pub fn add_namespace(
        &self,
        nqn: &str,
        ns: &crate::config::NamespaceConfig,
    ) -> Result<Arc<crate::subsystem::Namespace>, String> {
        let subsys = self
            .subsystems
            .iter()
            .find(|s| s.nqn == nqn)
            .ok_or_else(|| format!("Unable to find subsystem with NQN {nqn}"))?;
        let mut next = self.runtime_bdevs.lock().unwrap_or_else(|e| e.into_inner());
        let bdev = backend::create_with(
            ns,
            &self.config.limits,
            matches!(self.config.idle, crate::config::IdlePolicy::Poll),
            // (the one-node line was printed at start)
            &crate::placement::reactor_memory_nodes(
                &self.config.cores.iter().map(|c| c.0).collect::<Vec<_>>(),
            )
            .unwrap_or_default(),
        )
        .map_err(|e| format!("cannot create the backend: {e}"))?;
        let index = self.bdevs.len() + *next;
        let mut acks = Vec::new();
        for l in &self.links {
            let (done, rx) = mpsc::channel();
            if !l.send(Msg::AddBdev {
                bdev: NewBdev(bdev.clone()),
                index,
                done,
            }) {
                return Err("a reactor is gone".into());
            }
            acks.push(rx);
        }
        for rx in acks {
            rx.recv_timeout(Duration::from_secs(10))
                .map_err(|_| "a reactor did not open a queue on the new bdev".to_string())?;
        }
        *next += 1;
        subsys
            .add_namespace(ns.nsid, &bdev, index)
            .map_err(|e| e.to_string())
    }

    pub fn next_qpair_id(&self) -> u64 {
        self.next_qpair_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn stats_json(&self) -> Value {
        json!({
            "name": self.config.name,
            "uptime_ns": self.started.elapsed().as_nanos() as u64,
            "reactors": self
                .config
                .cores
                .iter()
                .enumerate()
                .map(|(i, core)| {
                    let c = self.counters.counters(i as u32).unwrap_or_else(|| {
                        trace_ring::CountersSnapshot {
                            reactor: i as u32,
                            totals: Default::default(),
                            qpairs: Vec::new(),
                        }
                    });
                    crate::trace::reactor_json(core.0, &c, self.counters.clock())
                })
                .collect::<Vec<_>>(),
        })
    }

    pub fn subsystems_json(&self) -> Value {
        let listen: Vec<Value> = self
            .listen_addrs
            .iter()
            .map(|a| json!({"transport": "tcp", "addr": a.ip().to_string(), "port": a.port()}))
            .collect();
        let one = |s: &Subsystem| {
            json!({
                "nqn": s.nqn,
                "type": match s.kind { SubsystemKind::Discovery => "discovery", SubsystemKind::Nvm => "nvm" },
                "serial": s.serial,
                "model": s.model,
                "listen_addresses": listen,
                "allowed_hosts": s.host_access().hosts,
                "allow_any_host": s.host_access().allow_any_host,
                "namespaces": s.namespaces().iter().map(|n| json!({
                    "nsid": n.nsid,
                    "backend": n.kind.to_string(),
                    "block_size": n.block_size,
                    "num_blocks": n.num_blocks,
                    "uuid": hex(&n.uuid),
                    "nguid": hex(&n.nguid),
                })).collect::<Vec<_>>(),
                "controllers": s.controllers().iter().map(|c| json!({
                    "cntlid": c.cntlid,
                    "hostnqn": c.hostnqn,
                    "hostid": hex(&c.hostid),
                    "io_queues_granted": c.io_queues_granted.load(Ordering::Relaxed),
                    "connected_qids": c.connected_qids(),
                })).collect::<Vec<_>>(),
            })
        };
        let mut v = vec![one(&self.discovery)];
        v.extend(self.subsystems.iter().map(|s| one(s)));
        Value::Array(v)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(feature = "rdma")]
impl crate::rdma::CmHost for Shared {
    fn shutting_down(&self) -> bool {
        self.is_shutting_down()
    }
    fn limits(&self) -> &crate::config::Limits {
        &self.config.limits
    }
    fn next_qpair_id(&self) -> u64 {
        Shared::next_qpair_id(self)
    }
    fn pick_reactor(&self, nic_node: Option<u32>) -> usize {
        Shared::pick_reactor(self, nic_node)
    }
    fn reactors(&self) -> usize {
        self.links.len()
    }
    fn send(&self, reactor: usize, m: crate::rdma::RdmaMsg) -> bool {
        self.links
            .get(reactor)
            .is_some_and(|l| l.send(Msg::Rdma(m)))
    }
}
