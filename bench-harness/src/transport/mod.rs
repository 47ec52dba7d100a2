//! The transport boundary: a [`Qpair`] moves commands, data and completions for one NVMe-oF
//! queue. The worker loop and the admin helpers are generic over it; [`AnyQpair`] picks
//! NVMe/TCP ([`tcp::TcpQpair`]) or NVMe/RDMA (`rdma::RdmaQpair`, feature `rdma`) at connect time.
//!
//! Ownership: a qpair is owned by exactly one thread (a worker, or the coordinator for the admin
//! queue) and is never shared. It owns its request slots (cid = slot index) and each slot's
//! preallocated data buffer; callers fill a slot's buffer before submitting a write and read it
//! in the completion callback of a read.

#[cfg(feature = "rdma")]
pub mod rdma;
pub mod tcp;

use std::time::{Duration, Instant};

use nvme_proto::{Cid, Cqe, Sqe};

/// Direction of a command's data, from the host's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    None,
    /// Host to controller (writes, Connect data).
    ToController,
    /// Controller to host (reads, Identify, log pages).
    FromController,
}

/// A finished command. `data` is the slot's buffer truncated to the command's length for
/// controller-to-host commands (empty otherwise); it is valid only during the callback, and
/// holds the received data only on qpairs built to keep read data.
#[derive(Debug)]
pub struct Completion<'a> {
    pub cid: Cid,
    pub cqe: Cqe,
    pub data: &'a [u8],
}

/// Why a qpair cannot go on. Every variant is fatal for the qpair that returned it.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("connection to {addr} failed")]
    Connect {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("socket {op} failed")]
    Io {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("connection closed by the target")]
    Closed,
    #[error("target terminated the connection (TermReq): {reason}")]
    TermReq { reason: String },
    #[error("protocol violation by the target: {what}")]
    Protocol { what: String },
    #[error("{which} digest mismatch on a {pdu} PDU")]
    Digest {
        which: &'static str,
        pdu: &'static str,
    },
    #[error("no {what} within {timeout:?}")]
    Timeout {
        what: &'static str,
        timeout: Duration,
    },
    #[error("initiator bug: {what}")]
    Internal { what: String },
}

impl TransportError {
    pub fn protocol(what: impl Into<String>) -> Self {
        TransportError::Protocol { what: what.into() }
    }
}

/// Limits the transport negotiated or was configured with.
#[derive(Debug, Clone, Copy, Default)]
pub struct QpairLimits {
    /// Largest data the slots can hold.
    pub max_data: u32,
    /// Largest write sent in-capsule (larger ones wait for R2T).
    pub in_capsule: u32,
    /// Largest H2CData payload the target accepts.
    pub maxh2cdata: u32,
    pub header_digest: bool,
    pub data_digest: bool,
}

/// Monotonic per-qpair transport counters (syscalls and bytes), for "where does the time go".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TransportCounters {
    /// Receive calls (`read`), and how many of them found nothing (EAGAIN).
    pub recv_calls: u64,
    pub recv_empty: u64,
    /// Send calls (`writev`), and how many did not take everything offered.
    pub send_calls: u64,
    pub send_partial: u64,
    pub pdus_received: u64,
    /// PDUs queued for sending (CapsuleCmd, H2CData): the target's PDUs received.
    pub pdus_sent: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    /// Received PDUs whose data went straight from the socket into the I/O's buffer (TCP: large
    /// C2HData, see `tcp::DIRECT_MIN`), not through the receive buffer.
    pub pdus_direct: u64,
    /// Bytes moved inside the receive buffer by user space (a partial PDU moved to the front
    /// to make room): a copy per byte that the socket did not force.
    pub bytes_moved: u64,
}

impl TransportCounters {
    pub fn add(&mut self, o: &TransportCounters) {
        self.recv_calls += o.recv_calls;
        self.recv_empty += o.recv_empty;
        self.send_calls += o.send_calls;
        self.send_partial += o.send_partial;
        self.pdus_received += o.pdus_received;
        self.pdus_sent += o.pdus_sent;
        self.bytes_received += o.bytes_received;
        self.bytes_sent += o.bytes_sent;
        self.pdus_direct += o.pdus_direct;
        self.bytes_moved += o.bytes_moved;
    }

    /// `self - earlier` (counters are monotonic).
    pub fn since(&self, earlier: &TransportCounters) -> TransportCounters {
        TransportCounters {
            recv_calls: self.recv_calls - earlier.recv_calls,
            recv_empty: self.recv_empty - earlier.recv_empty,
            send_calls: self.send_calls - earlier.send_calls,
            send_partial: self.send_partial - earlier.send_partial,
            pdus_received: self.pdus_received - earlier.pdus_received,
            pdus_sent: self.pdus_sent - earlier.pdus_sent,
            bytes_received: self.bytes_received - earlier.bytes_received,
            bytes_sent: self.bytes_sent - earlier.bytes_sent,
            pdus_direct: self.pdus_direct - earlier.pdus_direct,
            bytes_moved: self.bytes_moved - earlier.bytes_moved,
        }
    }
}

/// One NVMe-oF queue pair, polled by its owner thread.
pub trait Qpair {
    fn qid(&self) -> u16;
    fn limits(&self) -> QpairLimits;
    /// Number of request slots (the queue depth this qpair was built for).
    fn slots(&self) -> usize;
    /// Commands submitted and not yet completed.
    fn outstanding(&self) -> usize;
    fn counters(&self) -> TransportCounters;
    /// A free slot, or `None` when all are in use.
    fn try_alloc(&mut self) -> Option<Cid>;
    /// Returns an allocated slot without submitting it.
    fn release(&mut self, cid: Cid);
    /// The slot's data buffer (`limits().max_data` bytes).
    fn data_mut(&mut self, cid: Cid) -> &mut [u8];
    /// Queues `sqe` for the allocated slot `cid` with `len` bytes of data moving in `dir`; the
    /// transport sets `sqe.cid` and the data pointer. Nothing is sent before [`Qpair::flush`].
    fn submit(&mut self, cid: Cid, sqe: Sqe, dir: Dir, len: u32) -> Result<(), TransportError>;
    /// Sends what is queued, as far as the socket takes it without blocking.
    fn flush(&mut self) -> Result<(), TransportError>;
    /// True when queued bytes still wait to be sent.
    fn send_pending(&self) -> bool;
    /// Receives what is available, calling `on_done` for each completed command (whose slot is
    /// free again when the callback returns). Returns the number of completions.
    fn poll<F: FnMut(Completion<'_>)>(&mut self, on_done: F) -> Result<usize, TransportError>;
}

/// Result of a synchronous command: the CQE and, for controller-to-host commands, the data.
#[derive(Debug)]
pub struct SyncResult {
    pub cqe: Cqe,
    pub data: Vec<u8>,
}

/// Runs one command to completion (slow path: connect, admin, keep-alive). `data_out` is copied
/// into the slot for host-to-controller commands; `data_in_len` bytes are returned for
/// controller-to-host ones. Spins briefly, then sleeps between polls.
pub fn execute<Q: Qpair>(
    q: &mut Q,
    sqe: Sqe,
    dir: Dir,
    data_out: &[u8],
    data_in_len: u32,
    timeout: Duration,
) -> Result<SyncResult, TransportError> {
    let cid = q.try_alloc().ok_or_else(|| TransportError::Internal {
        what: "no free slot for a synchronous command".into(),
    })?;
    let len = match dir {
        Dir::None => 0,
        Dir::ToController => {
            let buf = q.data_mut(cid);
            let Some(dst) = buf.get_mut(..data_out.len()) else {
                q.release(cid);
                return Err(TransportError::Internal {
                    what: format!("{} bytes of command data exceed the slot", data_out.len()),
                });
            };
            dst.copy_from_slice(data_out);
            data_out.len() as u32
        }
        Dir::FromController => {
            if data_in_len > q.limits().max_data {
                q.release(cid);
                return Err(TransportError::Internal {
                    what: format!("{data_in_len} bytes of command data exceed the slot"),
                });
            }
            data_in_len
        }
    };
    q.submit(cid, sqe, dir, len)?;
    let deadline = Instant::now() + timeout;
    let mut result = None;
    let mut spins = 0u32;
    loop {
        q.flush()?;
        q.poll(|c| {
            if c.cid == cid {
                result = Some(SyncResult {
                    cqe: c.cqe,
                    data: c.data.to_vec(),
                });
            }
        })?;
        if let Some(r) = result.take() {
            return Ok(r);
        }
        if Instant::now() > deadline {
            return Err(TransportError::Timeout {
                what: "command completion",
                timeout,
            });
        }
        spins += 1;
        if spins > 2000 {
            std::thread::sleep(Duration::from_micros(50));
        } else {
            std::hint::spin_loop();
        }
    }
}

/// The qpair of either transport (one branch per call; the worker loop stays generic).
// One per queue, built once and never moved on the I/O path: the variants' sizes don't matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum AnyQpair {
    Tcp(tcp::TcpQpair),
    #[cfg(feature = "rdma")]
    Rdma(rdma::RdmaQpair),
}

macro_rules! any {
    ($self:expr, $q:ident => $e:expr) => {
        match $self {
            AnyQpair::Tcp($q) => $e,
            #[cfg(feature = "rdma")]
            AnyQpair::Rdma($q) => $e,
        }
    };
}

impl Qpair for AnyQpair {
    fn qid(&self) -> u16 {
        any!(self, q => q.qid())
    }
    fn limits(&self) -> QpairLimits {
        any!(self, q => q.limits())
    }
    fn slots(&self) -> usize {
        any!(self, q => q.slots())
    }
    fn outstanding(&self) -> usize {
        any!(self, q => q.outstanding())
    }
    fn counters(&self) -> TransportCounters {
        any!(self, q => q.counters())
    }
    fn try_alloc(&mut self) -> Option<Cid> {
        any!(self, q => q.try_alloc())
    }
    fn release(&mut self, cid: Cid) {
        any!(self, q => q.release(cid))
    }
    fn data_mut(&mut self, cid: Cid) -> &mut [u8] {
        any!(self, q => q.data_mut(cid))
    }
    fn submit(&mut self, cid: Cid, sqe: Sqe, dir: Dir, len: u32) -> Result<(), TransportError> {
        any!(self, q => q.submit(cid, sqe, dir, len))
    }
    fn flush(&mut self) -> Result<(), TransportError> {
        any!(self, q => q.flush())
    }
    fn send_pending(&self) -> bool {
        any!(self, q => q.send_pending())
    }
    fn poll<F: FnMut(Completion<'_>)>(&mut self, on_done: F) -> Result<usize, TransportError> {
        any!(self, q => q.poll(on_done))
    }
}
