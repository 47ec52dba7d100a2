//! Target lifecycle: builds bdevs and subsystems, binds listeners and the RPC socket, starts the
//! reactor threads, the acceptor thread and the RPC thread, and stops them all on shutdown.
//!
//! Threads: one reactor per configured core (pinned, named `reactor-<core>`), one `acceptor`
//! (blocking-ish accept on the listeners, then hands each connection to a reactor through that
//! reactor's message queue and eventfd), one `rpc`. Shared state lives in [`Shared`]
//! (`crate::shared`): immutable configuration and subsystems, a reader of the counters page (each
//! reactor is the single writer of its section), and the shutdown flag. Shutdown: set the flag, wake every reactor; each closes its connections and exits; the
//! acceptor and RPC threads notice the flag within a few tens of milliseconds.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::backend::{self, Bdev};
use trace_ring::description::Transport;

use crate::config::{online_cores, Config, ConfigError};
use crate::reactor::Reactor;
pub use crate::shared::Shared;
use crate::shared::{Msg, ReactorLink};
use crate::subsystem::Subsystem;

/// Errors starting the target.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration")]
    Config(#[from] ConfigError),
    #[error("cannot create backend for {nqn} nsid {nsid}")]
    Backend {
        nqn: String,
        nsid: u32,
        #[source]
        source: backend::CreateError,
    },
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Rpc(#[from] crate::rpc::RpcError),
    #[error("{0}")]
    Counters(String),
    #[error("cannot start thread {name}")]
    Thread {
        name: String,
        #[source]
        source: std::io::Error,
    },
}

/// A running target.
#[derive(Debug)]
pub struct Target {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    rpc_path: PathBuf,
    /// The counters page and trace rings (published or anonymous). Dropped after the threads
    /// have stopped: a published file is marked exited and removed.
    trace_file: Option<trace_ring::TraceFile>,
}

impl Target {
    /// Validates `config` and starts everything. Returns once every listener is bound and every
    /// thread is running.
    pub fn start(mut config: Config) -> Result<Target, StartError> {
        config.validate(Some(&online_cores()))?;
        #[cfg(feature = "rdma")]
        if config.listeners.iter().any(|l| l.kind() == Transport::Rdma)
            && config.trace.groups == crate::config::TraceConfig::default().groups
        {
            // RDMA request stages are traced by default when there is RDMA to trace.
            config.trace.groups.push("rdma".into());
        }

        let cores: Vec<usize> = config.cores.iter().map(|c| c.0).collect();
        // Only a malloc namespace's memory is bound (see docs/target.md "NUMA"): without one there
        // is nothing to say, even on a one-node machine.
        let has_malloc = config
            .subsystems
            .iter()
            .flat_map(|s| &s.namespaces)
            .any(|ns| matches!(ns.backend, crate::config::BackendKind::Malloc));
        let nodes = if has_malloc {
            crate::placement::reactor_memory_nodes(&cores).unwrap_or_else(|e| {
                eprintln!("ringside-tgt: {e}");
                Vec::new()
            })
        } else {
            Vec::new()
        };
        let mut bdevs: Vec<Arc<dyn Bdev>> = Vec::new();
        let mut subsystems = Vec::new();
        for s in &config.subsystems {
            let first = bdevs.len();
            let mut mine = Vec::new();
            let mut served = s.clone();
            served.namespaces.clear();
            for (i, ns) in s.namespaces.iter().enumerate() {
                let b = match backend::create_with(
                    ns,
                    &config.limits,
                    matches!(config.idle, crate::config::IdlePolicy::Poll),
                    &nodes,
                ) {
                    Ok(b) => b,
                    // A device that is not there or not ready for us (nvme-vfio: not bound to
                    // vfio-pci, group not viable, controller failing; uring-cmd: a missing
                    // /dev/ngXnY, a block device given, passthrough refused) must not take the
                    // other namespaces down: one line, and the rest are served.
                    Err(e)
                        if matches!(
                            ns.backend,
                            crate::config::BackendKind::NvmeVfio { .. }
                                | crate::config::BackendKind::UringCmd { .. }
                        ) =>
                    {
                        eprintln!(
                            "ringside-tgt: {} nsid {}: not served: {e}",
                            s.nqn,
                            ns.nsid.unwrap_or(i as u32 + 1)
                        );
                        continue;
                    }
                    Err(source) => {
                        return Err(StartError::Backend {
                            nqn: s.nqn.clone(),
                            nsid: ns.nsid.unwrap_or(0),
                            source,
                        })
                    }
                };
                let mut ns = ns.clone();
                ns.nsid = Some(ns.nsid.unwrap_or(i as u32 + 1));
                served.namespaces.push(ns);
                mine.push(b.clone());
                bdevs.push(b);
            }
            subsystems.push(Arc::new(Subsystem::nvm(&served, &mine, first)));
        }

        // Bound (so the trace file can name the real ports) but not listening yet: connections
        // are refused until the trace file is published below, so "port open" means
        // "observable" to an agent started with the target.
        let mut bound = Vec::new();
        let mut listen_addrs = Vec::new();
        for l in config
            .listeners
            .iter()
            .filter(|l| l.kind() == Transport::Tcp)
        {
            let addr = SocketAddr::new(l.addr, l.port);
            let (fd, local) =
                bind_tcp(addr).map_err(|source| StartError::Listen { addr, source })?;
            listen_addrs.push(local);
            bound.push((fd, local));
        }
        let (mode, gid) = config.trace.access()?;

        let mut links = Vec::new();
        let mut rxs = Vec::new();
        for _ in &config.cores {
            let (tx, rx) = mpsc::channel();
            let wake = rustix::event::eventfd(
                0,
                rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
            )
            .map_err(|e| StartError::Thread {
                name: "eventfd".into(),
                source: e.into(),
            })?;
            links.push(ReactorLink {
                tx,
                wake: Arc::new(wake),
            });
            rxs.push(rx);
        }

        let discovery = Arc::new(Subsystem::discovery());
        let (trace_file, writers) = crate::trace::create(&config, &listen_addrs, &subsystems)
            .map_err(StartError::Counters)?;
        let counters = trace_file
            .reader()
            .map_err(|e| StartError::Counters(format!("cannot read the counters page: {e}")))?;
        let mut listeners = Vec::new();
        for (fd, addr) in bound {
            rustix::net::listen(&fd, 1024).map_err(|e| StartError::Listen {
                addr,
                source: e.into(),
            })?;
            let tl = TcpListener::from(fd);
            tl.set_nonblocking(true)
                .map_err(|source| StartError::Listen { addr, source })?;
            listeners.push(tl);
        }
        let rpc_path = config.rpc_socket_path();
        let rpc_listener = crate::rpc::bind(&rpc_path)?;
        crate::rpc::restrict(&rpc_path, mode, gid)?;
        let trace = trace_file
            .is_published()
            .then(|| (trace_file.path().to_path_buf(), trace_file.control()));

        let env = Arc::new(crate::pollgroup::Env::new(
            config.clone(),
            subsystems,
            discovery,
            listen_addrs,
        ));
        let shared = Arc::new(Shared::new(env, bdevs, counters, links, trace));

        // From here on a failure must stop the threads already started.
        let mut started = Target {
            shared: shared.clone(),
            threads: Vec::new(),
            rpc_path: rpc_path.clone(),
            trace_file: Some(trace_file),
        };
        let threads = &mut started.threads;
        let spawn_err = |name: String| move |source| StartError::Thread { name, source };
        for (i, (rx, tw)) in rxs
            .into_iter()
            .zip(writers.into_iter().map(Some))
            .enumerate()
        {
            let core = config.cores[i];
            let name = format!("reactor-{core}");
            let sh = shared.clone();
            let h = std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || {
                    if sh.config.pin_reactors {
                        let mut set = rustix::thread::CpuSet::new();
                        set.set(core.0);
                        if let Err(e) = rustix::thread::sched_setaffinity(None, &set) {
                            eprintln!(
                                "ringside-tgt: reactor-{core}: cannot pin to core {core}: {e}"
                            );
                        }
                    }
                    match Reactor::new(i, sh.clone(), rx, tw) {
                        Ok(mut r) => r.run(),
                        Err(e) => {
                            eprintln!("ringside-tgt: reactor-{core} failed to start: {e}");
                            sh.request_shutdown();
                        }
                    }
                })
                .map_err(spawn_err(name))?;
            threads.push(h);
        }

        // The service threads (acceptor, RDMA CM, RPC and its clients) start on the cores no
        // reactor owns, so they never preempt a reactor (an RPC client polling get_stats showed
        // up as the main intruder on a healthy reactor's core); with every core a reactor's,
        // they stay where they were.
        let _service_mask = config
            .pin_reactors
            .then(|| ServiceMask::off(&config.cores.iter().map(|c| c.0).collect::<Vec<_>>()))
            .flatten();
        let sh = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("acceptor".into())
                .spawn(move || acceptor(listeners, sh))
                .map_err(spawn_err("acceptor".into()))?,
        );
        let rdma: Vec<SocketAddr> = config
            .listeners
            .iter()
            .filter(|l| l.kind() == Transport::Rdma)
            .map(|l| SocketAddr::new(l.addr, l.port))
            .collect();
        if !rdma.is_empty() {
            #[cfg(feature = "rdma")]
            match crate::rdma::spawn_cm(&rdma, shared.clone()) {
                Ok((h, bound)) => {
                    threads.push(h);
                    let _ = shared.env.rdma_addrs.set(bound);
                }
                // One line, and the target goes on serving TCP.
                Err(e) => eprintln!("ringside-tgt: rdma unavailable: {e}"),
            }
        }
        let threads = &mut started.threads;
        threads.push(
            crate::rpc::spawn(rpc_listener, rpc_path, shared).map_err(spawn_err("rpc".into()))?,
        );
        Ok(started)
    }

    /// The bound listener addresses (real ports when the configuration asked for port 0).
    pub fn listen_addrs(&self) -> &[SocketAddr] {
        &self.shared.listen_addrs
    }

    /// The bound NVMe/RDMA listener addresses.
    pub fn rdma_listen_addrs(&self) -> &[SocketAddr] {
        self.shared.rdma_listen_addrs()
    }

    pub fn rpc_socket(&self) -> &std::path::Path {
        &self.rpc_path
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Asks the target to stop (does not wait).
    pub fn request_shutdown(&self) {
        self.shared.request_shutdown();
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shared.is_shutting_down()
    }

    /// Waits for every thread to finish (after a shutdown request from anywhere).
    pub fn wait(mut self) {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.rpc_path);
        self.trace_file = None;
    }

    /// The trace file's path, when tracing (the anonymous counters page has none).
    pub fn trace_path(&self) -> Option<&std::path::Path> {
        self.trace_file
            .as_ref()
            .filter(|f| f.is_published())
            .map(|f| f.path())
    }

    /// Requests shutdown and waits.
    pub fn shutdown(self) {
        self.request_shutdown();
        self.wait();
    }
}

impl Drop for Target {
    /// A target dropped without [`Target::wait`] (including a failed start) stops its threads.
    fn drop(&mut self) {
        if self.threads.is_empty() {
            return;
        }
        self.shared.request_shutdown();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.rpc_path);
    }
}

/// Accepts connections and places them on reactors.
fn acceptor(listeners: Vec<TcpListener>, shared: Arc<Shared>) {
    let nodes: Vec<Option<u32>> = listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .ok()
                .and_then(|a| crate::placement::nic_node_of(&a))
        })
        .collect();
    let fds: Vec<_> = listeners.iter().collect();
    while !shared.is_shutting_down() {
        let mut pfds: Vec<rustix::event::PollFd<'_>> = fds
            .iter()
            .map(|l| rustix::event::PollFd::new(*l, rustix::event::PollFlags::IN))
            .collect();
        let timeout = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 50_000_000,
        };
        if rustix::event::poll(&mut pfds, Some(&timeout)).is_err() {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        for (l, &nic_node) in listeners.iter().zip(&nodes) {
            loop {
                match l.accept() {
                    Ok((s, peer)) => place(s, peer, &shared, nic_node),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        eprintln!("ringside-tgt: accept failed: {e}");
                        std::thread::sleep(Duration::from_millis(10));
                        break;
                    }
                }
            }
        }
    }
}

fn place(s: TcpStream, peer: SocketAddr, shared: &Shared, nic_node: Option<u32>) {
    if s.set_nonblocking(true).is_err() || s.set_nodelay(true).is_err() {
        return;
    }
    let idx = shared.pick_reactor(nic_node);
    let id = shared.next_qpair_id();
    shared.links[idx].send(Msg::NewConnection {
        stream: s,
        peer,
        id,
    });
}

/// A TCP socket bound to `addr` (address reuse as `TcpListener::bind` sets it) but not yet
/// listening, and the address it got (the real port for port 0).
fn bind_tcp(addr: SocketAddr) -> std::io::Result<(std::os::fd::OwnedFd, SocketAddr)> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let family = if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let fd = rustix::net::socket_with(family, SocketType::STREAM, SocketFlags::CLOEXEC, None)?;
    rustix::net::sockopt::set_socket_reuseaddr(&fd, true)?;
    rustix::net::bind(&fd, &addr)?;
    let local = rustix::net::getsockname(&fd)?;
    let local = SocketAddr::try_from(local).unwrap_or(addr);
    Ok((fd, local))
}

/// The calling thread confined to the cores no reactor owns while it lives (threads it spawns
/// meanwhile inherit that mask); its earlier mask is back on drop.
struct ServiceMask {
    before: rustix::thread::CpuSet,
}

impl ServiceMask {
    /// `None` when the mask cannot be read or every allowed core is a reactor's.
    fn off(reactor_cores: &[usize]) -> Option<ServiceMask> {
        use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet};
        let before = sched_getaffinity(None).ok()?;
        let mut rest = CpuSet::new();
        let mut any = false;
        for c in (0..CpuSet::MAX_CPU).filter(|&c| before.is_set(c) && !reactor_cores.contains(&c)) {
            rest.set(c);
            any = true;
        }
        (any && sched_setaffinity(None, &rest).is_ok()).then_some(ServiceMask { before })
    }
}

impl Drop for ServiceMask {
    fn drop(&mut self) {
        let _ = rustix::thread::sched_setaffinity(None, &self.before);
    }
}
