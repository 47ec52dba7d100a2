//! The ringside agent: attaches to a running `ringside-tgt` through its shared-memory trace file
//! and turns what it finds into something a storage engineer can read.
//!
//! So far: `ringside trace` (dump and follow the tracepoint rings, rebuild each request with its
//! per-stage durations). Every subcommand attaches with `--pid`, `--name` or `--file`, and to the
//! only running instance when none is given ([`attach`]).
#![forbid(unsafe_code)]

pub mod attach;
pub mod cli;
pub mod collect;
pub mod requests;
pub mod serve;
pub mod session;
pub mod top;
pub mod topology;
pub mod trace;
