//! The per-reactor poll-group context both transports run in, and the backend request tag:
//! the layer below the transports (STYLE "Layering inside a target").
//!
//! Ownership: each reactor owns one [`Ctx`] and lends it (`&mut`) to the connection it is
//! serving; nothing in it is shared with other threads except the read-mostly [`Env`] (target
//! configuration, subsystems, listener addresses), reached through named accessors. The
//! transports (`tcp`, `rdma`) and the command sets (`controller`, `nvm`) depend on this module;
//! it depends on nothing above it (not on the reactor, the target or the RPC).
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::backend::BdevQueue;
use crate::config::{Config, KeepAlive, Limits};
use crate::subsystem::Subsystem;
use crate::trace::Tracer;

/// The target-wide state a reactor's connections read: built once at start (the RDMA
/// listener addresses once the rdma-cm thread bound them), then only read.
#[derive(Debug)]
pub struct Env {
    pub config: Config,
    pub subsystems: Vec<Arc<Subsystem>>,
    pub discovery: Arc<Subsystem>,
    pub listen_addrs: Vec<SocketAddr>,
    /// The bound NVMe/RDMA listener addresses, once the rdma-cm thread has bound them (empty
    /// when RDMA is unavailable).
    pub(crate) rdma_addrs: OnceLock<Vec<SocketAddr>>,
}

impl Env {
    pub fn new(
        config: Config,
        subsystems: Vec<Arc<Subsystem>>,
        discovery: Arc<Subsystem>,
        listen_addrs: Vec<SocketAddr>,
    ) -> Env {
        Env {
            config,
            subsystems,
            discovery,
            listen_addrs,
            rdma_addrs: OnceLock::new(),
        }
    }

    /// Finds a subsystem (discovery included) by NQN.
    pub fn subsystem(&self, nqn: &str) -> Option<&Arc<Subsystem>> {
        if nqn == self.discovery.nqn {
            return Some(&self.discovery);
        }
        self.subsystems.iter().find(|s| s.nqn == nqn)
    }

    /// The bound NVMe/RDMA listener addresses (empty before the rdma-cm thread bound them, and
    /// when RDMA is unavailable).
    pub fn rdma_listen_addrs(&self) -> &[SocketAddr] {
        self.rdma_addrs.get().map_or(&[], Vec::as_slice)
    }
}

/// Everything a connection may use besides itself, borrowed from the reactor. The target-wide
/// state is reached through named accessors (limits, keep-alive, subsystems, listeners), never
/// as a whole.
pub struct Ctx {
    env: Arc<Env>,
    /// The core this reactor runs on.
    core: usize,
    /// One queue per bdev, indexed like `Shared::bdevs`.
    pub bdevs: Vec<Box<dyn BdevQueue>>,
    /// Time at the start of this iteration.
    pub now: Instant,
    /// Scratch for Dataset Management ranges (never reallocated: 256 is the spec's maximum).
    pub dsm: Vec<(u64, u64)>,
    /// This reactor's tracepoint ring and counters page (see [`crate::trace`]).
    pub trace: Tracer,
}

impl Ctx {
    pub fn new(env: Arc<Env>, core: usize, bdevs: Vec<Box<dyn BdevQueue>>, trace: Tracer) -> Ctx {
        Ctx {
            env,
            core,
            bdevs,
            now: Instant::now(),
            dsm: Vec::with_capacity(256),
            trace,
        }
    }

    /// The core this reactor runs on.
    #[inline]
    pub fn core(&self) -> usize {
        self.core
    }

    /// MDTS in bytes: the largest transfer of one command.
    #[inline]
    pub fn mdts(&self) -> u64 {
        self.env.config.limits.max_io_size.0
    }

    /// Queue and transfer limits.
    #[inline]
    pub fn limits(&self) -> &Limits {
        &self.env.config.limits
    }

    /// When NVMe/TCP reads end with C2HData SUCCESS.
    #[inline]
    pub fn c2h_success(&self) -> crate::config::C2hSuccess {
        self.env.config.c2h_success
    }

    /// Keep-alive settings.
    #[inline]
    pub fn keep_alive(&self) -> &KeepAlive {
        &self.env.config.keep_alive
    }

    /// The NVM subsystem (or the discovery subsystem) named `nqn`.
    pub fn subsystem(&self, nqn: &str) -> Option<&Arc<Subsystem>> {
        self.env.subsystem(nqn)
    }

    /// The NVM subsystems.
    pub fn subsystems(&self) -> &[Arc<Subsystem>] {
        &self.env.subsystems
    }

    /// The bound NVMe/TCP listener addresses.
    pub fn tcp_listen_addrs(&self) -> &[SocketAddr] {
        &self.env.listen_addrs
    }

    /// The bound NVMe/RDMA listener addresses (empty without RDMA).
    pub fn rdma_listen_addrs(&self) -> &[SocketAddr] {
        self.env.rdma_listen_addrs()
    }
}

/// Which request a backend completion belongs to. Encoded into the backend's `u64` tag: bit 63
/// tells the transports apart, bits 32..63 carry the connection (TCP) or request (RDMA)
/// generation (31 bits), so a completion for a connection or request gone meanwhile is
/// recognised and dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReqTag {
    /// Request `req` of the TCP connection in reactor slot `slot`.
    Tcp { gen: u32, slot: u16, req: u16 },
    /// Request `req` of the reactor's RDMA request pool.
    Rdma { gen: u32, req: u32 },
}

const TAG_RDMA: u64 = 1 << 63;
const GEN_MASK: u32 = 0x7fff_ffff;

impl ReqTag {
    /// The generation as the tag carries it (31 bits).
    #[inline]
    pub fn gen_bits(gen: u32) -> u32 {
        gen & GEN_MASK
    }

    #[inline]
    pub fn encode(self) -> u64 {
        match self {
            ReqTag::Tcp { gen, slot, req } => {
                (u64::from(gen & GEN_MASK) << 32) | (u64::from(slot) << 16) | u64::from(req)
            }
            ReqTag::Rdma { gen, req } => {
                TAG_RDMA | (u64::from(gen & GEN_MASK) << 32) | u64::from(req)
            }
        }
    }

    #[inline]
    pub fn decode(tag: u64) -> ReqTag {
        let gen = ((tag >> 32) as u32) & GEN_MASK;
        if tag & TAG_RDMA != 0 {
            ReqTag::Rdma {
                gen,
                req: tag as u32,
            }
        } else {
            ReqTag::Tcp {
                gen,
                slot: (tag >> 16) as u16,
                req: tag as u16,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_keep_the_transports_apart() {
        for t in [
            ReqTag::Tcp {
                gen: GEN_MASK,
                slot: 0xffff,
                req: 0xffff,
            },
            ReqTag::Tcp {
                gen: 0,
                slot: 3,
                req: 9,
            },
            ReqTag::Rdma {
                gen: GEN_MASK,
                req: u32::MAX,
            },
            ReqTag::Rdma { gen: 5, req: 0 },
        ] {
            assert_eq!(ReqTag::decode(t.encode()), t);
        }
        // A full 32-bit generation is truncated to 31 bits, never into the transport bit.
        let t = ReqTag::Tcp {
            gen: u32::MAX,
            slot: 1,
            req: 2,
        };
        assert_eq!(t.encode() & TAG_RDMA, 0);
        assert_eq!(
            ReqTag::decode(t.encode()),
            ReqTag::Tcp {
                gen: GEN_MASK,
                slot: 1,
                req: 2
            }
        );
    }
}
