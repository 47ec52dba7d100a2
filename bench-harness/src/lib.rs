//! `bench-harness`: the user-space NVMe-oF initiator and load generator behind `ringside-perf`.
//!
//! Entry point for programs and tests: [`perf::run`] with a [`config::PerfConfig`] returns a
//! [`report::PerfReport`]. `main.rs` only parses arguments ([`cli::PerfArgs`]) and prints.
//!
//! Threading model: the calling thread connects the admin queue, then starts one pinned worker
//! thread per core; each worker owns its I/O qpairs (sockets, request slots, buffers, PRNG and
//! statistics) outright and runs a poll loop without locks or per-I/O allocation. The calling
//! thread keeps the admin queue alive (Keep Alive) meanwhile and merges the statistics after
//! joining the workers.
// The NVMe/RDMA transport's verbs calls are the one exception (`transport/rdma.rs`).
#![deny(unsafe_code)]

pub mod cli;
pub mod config;
pub mod cpu;
pub mod host;
pub mod pattern;
pub mod perf;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod stats;
pub mod transport;
pub mod trid;
pub mod units;
pub mod usage;
pub mod worker;

/// Formats an error with its sources: "outer: inner: root".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod fake_target;
#[cfg(test)]
mod fake_tests;
