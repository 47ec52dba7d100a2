//! ringside's shared-memory trace ABI (DESIGN §3): one file per target instance,
//! `/dev/shm/ringside.<name>`, holding a self-describing header, a description of the target
//! (tracepoint catalog, reactors, listeners, namespaces), one lock-free ring of fixed 32-byte
//! records per reactor, and one counters + latency-histogram section per reactor.
//!
//! * [`layout`] and [`histogram`] are the pure, `no_std` core: every `#[repr(C)]` type of the ABI,
//!   the size formula, the bucket math.
//! * [`TraceFile`] is the producer (the target): [`RingWriter`] and [`CountersWriter`] per reactor.
//! * [`TraceReader`] is the consumer (the agent): [`RingCursor`], [`MergedCursor`], counters and
//!   histogram snapshots, instance discovery.
//!
//! ```compile_fail
//! // A ring writer belongs to one reactor thread: it can be moved there but never shared.
//! fn shared<T: Sync>() {}
//! shared::<trace_ring::RingWriter>();
//! ```
//!
//! Threading: one writer per ring and per counters section (enforced by handing each out once);
//! any number of readers in any process, which never block or slow the writer. `unsafe` is
//! confined to `mapping` (the mmap and the atomic views into it) and `tsc` (`rdtsc`).
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

#[cfg(target_endian = "big")]
compile_error!("the ringside trace ABI is little-endian; big-endian targets are not supported");

pub mod histogram;
pub mod layout;

#[cfg(feature = "std")]
pub mod clock;
#[cfg(feature = "std")]
mod consumer;
#[cfg(feature = "std")]
pub mod description;
#[cfg(feature = "std")]
mod error;
#[cfg(feature = "std")]
mod mapping;
#[cfg(feature = "std")]
mod producer;
#[cfg(feature = "std")]
pub mod tsc;

pub use histogram::Histogram;
pub use layout::{
    tpoint_group, tpoint_id, Layout, QpairCounters, ReactorCounters, Record, NO_QPAIR,
};

#[cfg(feature = "std")]
pub use clock::Clock;
#[cfg(feature = "std")]
pub use consumer::{
    validate_header, CountersSnapshot, Event, Geometry, Instance, Liveness, MergedCursor,
    MergedStats, PollStats, RingCursor, Start, TraceReader,
};
#[cfg(feature = "std")]
pub use description::Description;
#[cfg(feature = "std")]
pub use error::{Error, Result};
#[cfg(feature = "std")]
pub use producer::{
    instance_path, pid_alive, validate_name, Access, CountersWriter, ErrorClass, OpClass,
    ReactorWriters, RingWriter, TraceControl, TraceFile, DEFAULT_DIR, FILE_PREFIX,
};
