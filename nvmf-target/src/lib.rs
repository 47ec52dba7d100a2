//! The bundled poll-mode NVMe/TCP target, `ringside-tgt`.
//!
//! Start one with [`Target::start`] from a validated-on-start [`config::Config`]. Threads:
//! reactors (one per configured core, see [`reactor`]), an acceptor and a JSON-RPC server (see
//! [`rpc`]), with feature `rdma` an `rdma-cm` thread (see [`rdma`]). The only `unsafe` is the
//! malloc backend's copies into its shared mapping (`backend/malloc.rs`), the io_uring backends'
//! submissions and bounce copies (`backend/ring.rs`, `backend/uring.rs`), the NVMe passthrough
//! ioctls and submissions (`backend/uring_cmd.rs`), the nvme-vfio driver's VFIO ioctls,
//! registers and DMA memory (`backend/nvme_vfio/hw.rs`) and the verbs calls of the RDMA transport
//! (`rdma/verbs.rs`).
#![deny(unsafe_code)]

pub mod backend;
pub mod cli;
pub mod config;
pub mod controller;
pub mod nvm;
pub mod placement;
pub mod pollgroup;
#[cfg(feature = "rdma")]
pub mod rdma;
pub mod reactor;
pub mod rpc;
pub mod shared;
pub mod spdk_rpc;
pub mod subsystem;
pub mod target;
pub mod tcp;
pub mod trace;
pub mod tracepoints;

pub use config::Config;
pub use target::{StartError, Target};
