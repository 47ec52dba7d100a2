//! The NVMe/RDMA transport (NVMe/RDMA transport specification 1.0 over rdma-cm and verbs).
//!
//! Threads and ownership:
//! - The `rdma-cm` thread ([`spawn_cm`]) owns the event channel and the listening ids. It
//!   validates the NVMe/RDMA private data of each CONNECT_REQUEST (record format, qid, queue
//!   sizes; a bad one is rejected with the specification's reject status), places the new
//!   connection on a reactor (the target's placement policy) and moves its `CmId` there through
//!   the reactor's message queue. Later DISCONNECTED/error events for that id become a message
//!   to the same reactor. It never touches a queue pair.
//! - Each reactor owns a [`ReactorRdma`]: its protection domain, one completion queue shared by
//!   all of its connections (polled with `ibv_poll_cq` batches in the reactor loop, no
//!   completion channel), one shared receive queue with its capsule buffers, a pool of request
//!   objects and a pool of data buffers, all in one registered region allocated on the reactor
//!   thread (so on its NUMA node) at its first RDMA connection. The reactor creates the
//!   connection's RC queue pair against those, accepts the connection, and from then on is the
//!   only thread that posts to it. Nothing on this path locks or allocates.
//! - All `unsafe` is in [`verbs`].
//!
//! A request: RECV completion (capsule) → `new` → (`need_buffer` → `have_buffer` when the pool
//! is empty) → for host-to-controller data by keyed SGL an RDMA READ (`read_posted`,
//! `read_completed`), in-capsule data is copied → `executing` (admin and fabrics inline, I/O at
//! the backend) → `executed` → response posted (RDMA WRITE of controller-to-host data chained
//! with the SEND of the CQE: one doorbell) → SEND completion → `completed`, request and buffer
//! back in their pools. A failed work completion (bad rkey, peer gone, flush) fails the
//! connection: it is disconnected, its queue pair moved to the error state, and it is destroyed
//! once every work request it posted has completed; other connections are untouched.

mod cmd;
pub mod verbs;

use std::collections::VecDeque;
use std::net::SocketAddr;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nvme_proto::nvme::{Cqe, Sqe, Status};
use nvme_proto::rdma::{reject_status, CmAccept, CmReject, CmRequest, CM_PRIVATE_DATA_SIZE};
use trace_ring::ErrorClass;

use crate::backend::BdevError;
use crate::nvm::OpClass;
use crate::pollgroup::{Ctx, ReqTag};
use crate::subsystem::{Controller, Subsystem};
use crate::trace::{TP_QPAIR_DESTROY, TP_QPAIR_DISCONNECT};
use verbs::{CmId, Device, EventChannel, Qp, Region, SendWr, Wc, POLL_BATCH, RECV_BATCH};

/// One unit of RDMA transport work, counted in the counters page by [`count`] (see
/// `trace_ring::CountersWriter::rdma_*` for each meaning).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RdmaEvent {
    /// One `ibv_poll_cq` call that returned this many completions.
    CqPoll(u64),
    /// One doorbell (`ibv_post_send`) posting a chain of this many send-queue work requests.
    PostSend(u64),
    /// Send-queue work requests completed (or flushed).
    SendDone(u64),
    /// Receive work requests posted to the SRQ, in this many doorbells.
    PostRecv { wrs: u64, doorbells: u64 },
    /// A receive buffer was consumed (a capsule arrived, or the receive was flushed).
    RecvConsumed,
    /// The SRQ was created and filled with this many buffers.
    SrqReady(u64),
}

/// Counts RDMA work in the reactor's counters page (`get_stats` reads it there).
#[inline]
fn count(ctx: &Ctx, e: RdmaEvent) {
    ctx.trace.counters(|x| match e {
        RdmaEvent::CqPoll(n) => x.rdma_cq_poll(n),
        RdmaEvent::PostSend(n) => x.rdma_post_send(n),
        RdmaEvent::SendDone(n) => x.rdma_send_done(n),
        RdmaEvent::PostRecv { wrs, doorbells } => x.rdma_post_recv(wrs, doorbells),
        RdmaEvent::RecvConsumed => x.rdma_recv_consumed(),
        RdmaEvent::SrqReady(size) => x.rdma_srq_ready(size),
    });
}

/// The receive-side event for posting `n` receives (one doorbell per [`RECV_BATCH`]).
fn post_recv_event(n: usize) -> RdmaEvent {
    RdmaEvent::PostRecv {
        wrs: n as u64,
        doorbells: n.div_ceil(RECV_BATCH) as u64,
    }
}

pub use crate::tracepoints::{
    rdma_catalog, GROUP_RDMA, TP_RDMA_COMPLETED, TP_RDMA_EXECUTED, TP_RDMA_EXECUTING,
    TP_RDMA_HAVE_BUFFER, TP_RDMA_NEED_BUFFER, TP_RDMA_NEW, TP_RDMA_READ_COMPLETED,
    TP_RDMA_READ_POSTED, TP_RDMA_RESPONSE_POSTED,
};

/// Request objects per reactor (every command in flight on any of its RDMA connections).
const REQS_PER_REACTOR: usize = 1024;
/// Data buffers per reactor, each `max_io_size` bytes; requests beyond wait (`need_buffer`).
const DATA_BUFFERS: usize = 128;
/// Capsule receive buffers in each reactor's shared receive queue.
const SRQ_DEPTH: usize = 512;
/// RDMA READs a connection may have outstanding at most (also bounded by the device).
const MAX_RD_ATOMIC: u8 = 16;
/// How long a connection whose QP is in error may wait for its flushes before it is dropped.
const CLOSE_DEADLINE: Duration = Duration::from_secs(5);

// wr_id layout: kind in bits 60..64, a generation in bits 32..60, an index in bits 0..32.
const WR_RECV: u64 = 1;
const WR_SEND: u64 = 2;
const WR_READ: u64 = 3;
const WR_WRITE: u64 = 4;

fn wr_id(kind: u64, gen: u32, idx: u32) -> u64 {
    (kind << 60) | ((u64::from(gen) & 0x0fff_ffff) << 32) | u64::from(idx)
}

/// What the rdma-cm thread needs from the target (`shared::Shared` implements it), so this
/// transport does not depend on the layers above it.
pub trait CmHost: Send + Sync + 'static {
    fn shutting_down(&self) -> bool;
    fn limits(&self) -> &crate::config::Limits;
    /// A new connection identity (unique in the target).
    fn next_qpair_id(&self) -> u64;
    /// The reactor for a new connection on a listener whose NIC is on `nic_node`.
    fn pick_reactor(&self, nic_node: Option<u32>) -> usize;
    /// The number of reactors.
    fn reactors(&self) -> usize;
    /// Sends `m` to reactor `reactor` and wakes it; false if it is gone.
    fn send(&self, reactor: usize, m: RdmaMsg) -> bool;
}

/// Messages from the rdma-cm thread to a reactor.
pub enum RdmaMsg {
    /// A validated connection request to set up (QP, accept) on this reactor.
    Connect {
        id: CmId,
        req: CmRequest,
        initiator_depth: u8,
        device: Device,
        ident: u64,
    },
    /// The connection `ident` is gone (DISCONNECTED, TIMEWAIT_EXIT, error events).
    Gone { ident: u64 },
    /// The rdma-cm thread rejected a connection request (counted as a transport error).
    Rejected,
}

impl std::fmt::Debug for RdmaMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RdmaMsg::Connect { ident, req, .. } => write!(f, "Connect({ident}, {req:?})"),
            RdmaMsg::Gone { ident } => write!(f, "Gone({ident})"),
            RdmaMsg::Rejected => write!(f, "Rejected"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The rdma-cm thread
// ---------------------------------------------------------------------------------------------

/// Binds the RDMA listeners and starts the rdma-cm thread. `Err` carries one line saying why
/// RDMA is unavailable; the caller prints it once and serves the other transports.
pub fn spawn_cm<H: CmHost>(
    addrs: &[SocketAddr],
    shared: Arc<H>,
) -> Result<(JoinHandle<()>, Vec<SocketAddr>), String> {
    let ch = EventChannel::new().map_err(|e| format!("{e} (no RDMA device or rdma_cm module)"))?;
    let mut listeners = Vec::new();
    let mut bound = Vec::new();
    for &a in addrs {
        let id = ch
            .listen(a, 1024)
            .map_err(|e| format!("cannot listen on rdma {a}: {e}"))?;
        let dev = id
            .device()
            .or_else(Device::first)
            .ok_or_else(|| format!("no RDMA device for {a}"))?;
        bound.push(a);
        listeners.push((id, dev, crate::placement::nic_node_of(&a)));
    }
    let h = std::thread::Builder::new()
        .name("rdma-cm".into())
        .spawn(move || cm_thread(ch, listeners, shared))
        .map_err(|e| format!("cannot start the rdma-cm thread: {e}"))?;
    Ok((h, bound))
}

fn cm_thread<H: CmHost>(
    ch: EventChannel,
    listeners: Vec<(CmId, Device, Option<u32>)>,
    shared: Arc<H>,
) {
    // Connection id address → (reactor, ident), until the connection's first disconnect or error
    // event (an id destroyed by its reactor first leaves its entry until the address is reused;
    // a stale `Gone` never matches a newer ident).
    let mut where_: std::collections::HashMap<usize, (usize, u64)> = Default::default();
    while !shared.shutting_down() {
        let fd = ch.fd();
        let mut pfd = [rustix::event::PollFd::new(
            &fd,
            rustix::event::PollFlags::IN,
        )];
        let timeout = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 50_000_000,
        };
        if rustix::event::poll(&mut pfd, Some(&timeout)).is_err() {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        while let Some(ev) = ch.next_event() {
            match ev.kind {
                verbs::event::CONNECT_REQUEST => {
                    let id = ev.take_new_id();
                    let listener = listeners.iter().find(|(l, _, _)| l.key() == ev.listen_id);
                    let dev = listener.map(|(_, d, _)| *d);
                    let nic_node = listener.and_then(|(_, _, n)| *n);
                    let verdict = check_request(&ev.private, shared.limits());
                    let device = match (id.device(), dev) {
                        (Some(d), Some(l)) if d.same(&l) => Some(d),
                        _ => None,
                    };
                    match (verdict, device) {
                        (Ok(req), Some(device)) => {
                            let ident = shared.next_qpair_id();
                            let r = shared.pick_reactor(nic_node);
                            where_.insert(id.key(), (r, ident));
                            shared.send(
                                r,
                                RdmaMsg::Connect {
                                    id,
                                    req,
                                    initiator_depth: ev.initiator_depth,
                                    device,
                                    ident,
                                },
                            );
                            drop(ev);
                        }
                        (verdict, _) => {
                            let status = verdict.err().unwrap_or(reject_status::NO_RESOURCES);
                            let mut b = [0u8; CmReject::SIZE];
                            let _ = CmReject { recfmt: 0, status }.encode(&mut b);
                            id.reject(&b);
                            eprintln!(
                                "ringside-tgt: rdma: rejected a connection from {} (status {status:#x})",
                                id.peer()
                            );
                            // Counted by the first reactor (the counters page has one
                            // writer per reactor; no reactor owns this connection).
                            if shared.reactors() > 0 {
                                shared.send(0, RdmaMsg::Rejected);
                            }
                            drop(ev); // ack before destroying the id
                            drop(id);
                        }
                    }
                }
                verbs::event::DISCONNECTED
                | verbs::event::TIMEWAIT_EXIT
                | verbs::event::CONNECT_ERROR
                | verbs::event::UNREACHABLE
                | verbs::event::REJECTED
                | verbs::event::DEVICE_REMOVAL
                | verbs::event::ADDR_CHANGE => {
                    // The first of these ends the connection; later ones have nothing to add.
                    if let Some((r, ident)) = where_.remove(&ev.id) {
                        shared.send(r, RdmaMsg::Gone { ident });
                    }
                }
                _ => {} // ESTABLISHED and the rest: nothing to do
            }
        }
    }
    drop(listeners);
    drop(ch);
}

/// Validates the NVMe/RDMA CM request private data; `Err` is the reject status.
pub fn check_request(private: &[u8], l: &crate::config::Limits) -> Result<CmRequest, u16> {
    let req = CmRequest::decode(private).map_err(|_| reject_status::INVALID_PRIVATE_DATA_LENGTH)?;
    if req.recfmt != 0 {
        return Err(reject_status::INVALID_RECFMT);
    }
    if u32::from(req.qid) > l.max_io_queues {
        return Err(reject_status::INVALID_QID);
    }
    let max = if req.qid == 0 {
        l.max_admin_queue_depth
    } else {
        l.max_queue_depth
    };
    // HSQSIZE is zero-based; at least 2 entries (sqsize 0 is invalid, as in Connect).
    if req.hsqsize == 0 || u32::from(req.hsqsize) + 1 > max {
        return Err(reject_status::INVALID_HSQSIZE);
    }
    if req.hrqsize == 0 || u32::from(req.hrqsize) > max + 1 {
        return Err(reject_status::INVALID_HRQSIZE);
    }
    Ok(req)
}

// ---------------------------------------------------------------------------------------------
// The reactor side
// ---------------------------------------------------------------------------------------------

/// Where a request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RState {
    Free,
    /// Waiting in the buffer queue.
    NeedBuffer,
    /// RDMA READ of host data posted.
    Reading,
    /// At the backend.
    AtBackend,
    /// Held without a response (Asynchronous Event Request).
    Held,
    /// Response (and data) posted; waiting for the SEND completion.
    Responding,
}

/// How a command's data moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Xfer {
    None,
    /// Host data in the capsule, `len` bytes after the SQE in receive buffer `recv`.
    InCapsule {
        recv: u32,
    },
    /// Host data to read from (addr, rkey).
    H2C {
        raddr: u64,
        rkey: u32,
    },
    /// Data for the host, to write to (addr, rkey).
    C2H {
        raddr: u64,
        rkey: u32,
    },
}

struct Req {
    state: RState,
    gen: u32,
    /// Connection slot and its generation.
    slot: u16,
    cgen: u32,
    sqe: Sqe,
    len: u32,
    xfer: Xfer,
    buf: Option<u32>,
    /// Work requests posted and not completed.
    wrs: u8,
    class: OpClass,
    /// Response to send once data is in place.
    status: Status,
    dw0: u32,
    dw1: u32,
    /// Bytes to RDMA WRITE to the host with the response.
    c2h: u32,
    /// Trace clock: capsule received, handed to the backend, response posted (the stages).
    t0: u64,
    t_submit: u64,
    t_resp: u64,
    /// An I/O command as the NVM command set checked it on arrival (before its data moved),
    /// so execution does not check it again.
    io: Option<crate::nvm::IoCmd>,
}

impl Req {
    fn new() -> Req {
        Req {
            state: RState::Free,
            gen: 0,
            slot: 0,
            cgen: 0,
            sqe: Sqe::default(),
            len: 0,
            xfer: Xfer::None,
            buf: None,
            wrs: 0,
            class: OpClass::Admin,
            status: Status::SUCCESS,
            dw0: 0,
            dw1: 0,
            c2h: 0,
            t0: 0,
            t_submit: 0,
            t_resp: 0,
            io: None,
        }
    }
}

/// Connection lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RConnState {
    /// Accepted; the first capsule must be a Fabrics Connect.
    AwaitingConnect,
    Enabled,
    /// Disconnected and in the error state: waiting for its work requests to flush.
    Closing,
}

/// Controller state owned by the admin connection (AERs held by their request index).
pub(crate) type AdminState = crate::controller::AdminState<u32>;

/// One NVMe/RDMA connection (one queue pair).
pub(crate) struct RConn {
    // Field order matters: the QP (owned by the CmId) goes before nothing else uses it.
    qp: Qp,
    id: CmId,
    ident: u64,
    gen: u32,
    pub state: RConnState,
    peer: String,
    created: Instant,
    closing_since: Option<Instant>,
    /// Work requests posted on this QP and not completed.
    wrs: u32,
    /// Requests held by this connection.
    reqs: u32,
    max_send_wr: u32,
    pub qid: u16,
    pub sqsize: u16,
    sqhd: u16,
    pub subsys: Option<Arc<Subsystem>>,
    pub ctrl: Option<Arc<Controller>>,
    pub admin: Option<Box<AdminState>>,
}

/// Per-reactor verbs resources, created at the reactor's first RDMA connection. Drop order:
/// the region and queues before the PD.
struct Res {
    region: Region,
    srq: verbs::Srq,
    cq: verbs::Cq,
    pd: verbs::Pd,
    device: Device,
    /// Capsule receive buffer size (SQE + in-capsule data).
    recv_len: usize,
    buf_len: usize,
    recv_off: usize,
    buf_off: usize,
    rsp_off: usize,
    max_qp_wr: u32,
    max_rd: u8,
}

/// One reactor's RDMA state (see the module doc).
pub struct ReactorRdma {
    /// Connections by reactor slot (slots come from the reactor's free list).
    conns: Vec<Option<RConn>>,
    gens: Vec<u32>,
    active: Vec<u16>,
    /// (QP number, slot) of live connections.
    qpns: Vec<(u32, u16)>,
    reqs: Vec<Req>,
    free_reqs: Vec<u32>,
    free_bufs: Vec<u32>,
    waiting: VecDeque<u32>,
    repost: Vec<(u64, usize)>,
    wcs: [Wc; POLL_BATCH],
    /// Scratch for admin responses and Connect data.
    pub(crate) scratch: Vec<u8>,
    res: Option<Res>,
    failed_setup: bool,
}

impl Default for ReactorRdma {
    fn default() -> Self {
        ReactorRdma::new()
    }
}

impl ReactorRdma {
    pub fn new() -> ReactorRdma {
        ReactorRdma {
            conns: Vec::new(),
            gens: Vec::new(),
            active: Vec::new(),
            qpns: Vec::new(),
            reqs: Vec::new(),
            free_reqs: Vec::new(),
            free_bufs: Vec::new(),
            waiting: VecDeque::new(),
            repost: Vec::new(),
            wcs: [Wc::default(); POLL_BATCH],
            scratch: Vec::new(),
            res: None,
            failed_setup: false,
        }
    }

    fn setup(&mut self, device: Device, ctx: &Ctx) -> Result<(), verbs::VerbsError> {
        let l = ctx.limits();
        let (max_qp_wr, max_rd, max_srq_wr, max_cqe) = device.limits()?;
        let recv_len = 64 + l.in_capsule_data_size.0 as usize;
        let buf_len = (l.max_io_size.0 as usize).max(8192);
        let srq_depth = SRQ_DEPTH.min(max_srq_wr.max(16) as usize);
        let recv_off = 0;
        let buf_off = (srq_depth * recv_len).next_multiple_of(4096);
        let rsp_off = buf_off + DATA_BUFFERS * buf_len;
        let total = rsp_off + REQS_PER_REACTOR * 16;
        let pd = device.alloc_pd()?;
        let cqe = (srq_depth + REQS_PER_REACTOR * 3).min(max_cqe.max(64) as usize);
        let cq = device.create_cq(cqe as u32)?;
        let srq = pd.create_srq(srq_depth as u32)?;
        let region = pd.register(total)?;
        let max = l.max_connections_per_reactor as usize;
        self.conns = (0..max).map(|_| None).collect();
        self.gens = vec![0; max];
        self.active = Vec::with_capacity(max);
        self.qpns = Vec::with_capacity(max);
        self.reqs = (0..REQS_PER_REACTOR).map(|_| Req::new()).collect();
        self.free_reqs = (0..REQS_PER_REACTOR as u32).rev().collect();
        self.free_bufs = (0..DATA_BUFFERS as u32).rev().collect();
        self.waiting = VecDeque::with_capacity(REQS_PER_REACTOR);
        self.repost = Vec::with_capacity(srq_depth);
        self.scratch = vec![0; 4096];
        let bufs: Vec<(u64, usize)> = (0..srq_depth as u32)
            .map(|i| (wr_id(WR_RECV, 0, i), recv_off + i as usize * recv_len))
            .collect();
        srq.post_recvs(&region, &bufs, recv_len as u32)?;
        count(ctx, post_recv_event(bufs.len()));
        count(ctx, RdmaEvent::SrqReady(bufs.len() as u64));
        self.res = Some(Res {
            region,
            srq,
            cq,
            pd,
            device,
            recv_len,
            buf_len,
            recv_off,
            buf_off,
            rsp_off,
            max_qp_wr,
            max_rd,
        });
        Ok(())
    }

    /// Handles a message from the rdma-cm thread. `free` is the reactor's free slot list.
    pub fn on_msg(&mut self, m: RdmaMsg, free: &mut Vec<usize>, ctx: &mut Ctx) {
        match m {
            RdmaMsg::Connect {
                id,
                req,
                initiator_depth,
                device,
                ident,
            } => self.connect(id, req, initiator_depth, device, ident, free, ctx),
            RdmaMsg::Gone { ident } => {
                if let Some(&slot) = self
                    .active
                    .iter()
                    .find(|&&s| self.conns[usize::from(s)].as_ref().map(|c| c.ident) == Some(ident))
                {
                    self.fail_conn(slot, ctx);
                }
            }
            RdmaMsg::Rejected => ctx.trace.counters(|c| c.error(ErrorClass::Transport)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn connect(
        &mut self,
        id: CmId,
        req: CmRequest,
        initiator_depth: u8,
        device: Device,
        ident: u64,
        free: &mut Vec<usize>,
        ctx: &mut Ctx,
    ) {
        let reject = |id: &CmId, status: u16| {
            let mut b = [0u8; CmReject::SIZE];
            let _ = CmReject { recfmt: 0, status }.encode(&mut b);
            id.reject(&b);
        };
        if self.res.is_none() && !self.failed_setup {
            if let Err(e) = self.setup(device, ctx) {
                eprintln!(
                    "ringside-tgt: rdma: reactor {} cannot set up {}: {e}",
                    ctx.core(),
                    device.name()
                );
                self.failed_setup = true;
            }
        }
        let Some(res) = self.res.as_ref() else {
            ctx.trace.counters(|c| c.error(ErrorClass::Transport));
            return reject(&id, reject_status::NO_RESOURCES);
        };
        if !res.device.same(&device) {
            ctx.trace.counters(|c| c.error(ErrorClass::Transport));
            return reject(&id, reject_status::NO_RESOURCES);
        }
        let Some(slot) = free.pop() else {
            ctx.trace.counters(|c| c.error(ErrorClass::Transport));
            return reject(&id, reject_status::NO_RESOURCES);
        };
        let entries = u32::from(req.hsqsize) + 1;
        // Per command at most a READ or a WRITE plus the SEND; keep headroom for flushes.
        let max_send_wr = (entries * 2 + 8).min(res.max_qp_wr.max(16));
        let qp = match id.create_qp(&res.pd, &res.cq, &res.srq, max_send_wr) {
            Ok(q) => q,
            Err(e) => {
                eprintln!("ringside-tgt: rdma: {e}");
                free.push(slot);
                ctx.trace.counters(|c| c.error(ErrorClass::Transport));
                return reject(&id, reject_status::NO_RESOURCES);
            }
        };
        let mut private = [0u8; CM_PRIVATE_DATA_SIZE];
        let _ = CmAccept {
            recfmt: 0,
            crqsize: entries.min(u32::from(u16::MAX)) as u16,
        }
        .encode(&mut private);
        let rd = initiator_depth.min(res.max_rd).min(MAX_RD_ATOMIC);
        if let Err(e) = id.accept(&private, rd) {
            eprintln!("ringside-tgt: rdma: {e}");
            free.push(slot);
            ctx.trace.counters(|c| c.error(ErrorClass::Transport));
            let _ = qp;
            return; // dropping the id destroys its QP and itself
        }
        let qpn = qp.qpn;
        self.gens[slot] = self.gens[slot].wrapping_add(1);
        let peer = id.peer();
        self.conns[slot] = Some(RConn {
            qp,
            id,
            ident,
            gen: self.gens[slot],
            state: RConnState::AwaitingConnect,
            peer,
            created: ctx.now,
            closing_since: None,
            wrs: 0,
            reqs: 0,
            max_send_wr,
            qid: req.qid,
            sqsize: 0,
            sqhd: 0,
            subsys: None,
            ctrl: None,
            admin: None,
        });
        self.active.push(slot as u16);
        self.qpns.push((qpn, slot as u16));
        ctx.trace.counters(|c| {
            c.connection_opened();
            // Identity 0 until the Fabrics Connect names the controller and queue.
            c.qpair_bind(slot as u16, 0);
        });
    }

    /// Disconnects a connection and moves its QP to the error state; it is destroyed once
    /// its work requests have flushed.
    fn fail_conn(&mut self, slot: u16, ctx: &Ctx) {
        if let Some(c) = self.conns[usize::from(slot)].as_mut() {
            if c.state != RConnState::Closing {
                ctx.trace
                    .tp(TP_QPAIR_DISCONNECT, slot, 0, u64::from(c.qid), 0);
                c.state = RConnState::Closing;
                c.closing_since = Some(ctx.now);
                c.id.disconnect();
                c.qp.set_error();
            }
        }
    }

    /// A connection closed because its host broke the protocol: one line, counted.
    fn protocol_error(&mut self, slot: u16, field: &str, reason: &str, ctx: &Ctx) {
        if let Some(c) = self.conns[usize::from(slot)].as_ref() {
            crate::controller::protocol_close(
                crate::controller::Transport::Rdma,
                &c.peer,
                c.subsys.as_ref(),
                c.ctrl.as_ref(),
                field,
                reason,
                ctx,
            );
        }
        self.conn_error(slot, ErrorClass::Protocol, ctx);
    }

    fn conn_error(&mut self, slot: u16, class: ErrorClass, ctx: &Ctx) {
        ctx.trace.counters(|c| c.error(class));
        self.fail_conn(slot, ctx);
    }

    /// One poll: completions, then queued work. Returns whether anything happened.
    /// `free` gets the slots of destroyed connections back.
    pub fn poll(&mut self, free: &mut Vec<usize>, ctx: &mut Ctx) -> bool {
        if self.res.is_none() {
            return false;
        }
        let mut work = false;
        let mut wcs = self.wcs;
        for _ in 0..4 {
            let n = match self.res.as_mut() {
                Some(r) => r.cq.poll(&mut wcs).unwrap_or(0),
                None => 0,
            };
            count(ctx, RdmaEvent::CqPoll(n as u64));
            if n == 0 {
                break;
            }
            work = true;
            for w in &wcs[..n] {
                self.on_wc(*w, ctx);
            }
            if n < POLL_BATCH {
                break;
            }
        }
        // Requests waiting for a buffer, in arrival order.
        while !self.free_bufs.is_empty() {
            let Some(r) = self.waiting.pop_front() else {
                break;
            };
            if self.reqs[r as usize].state == RState::NeedBuffer {
                let b = self.free_bufs.pop();
                self.reqs[r as usize].buf = b;
                let (slot, cid) = (self.reqs[r as usize].slot, self.reqs[r as usize].sqe.cid.0);
                ctx.trace.tp(TP_RDMA_HAVE_BUFFER, slot, cid, 0, 0);
                self.start_data(r, ctx);
                work = true;
            }
        }
        if !self.repost.is_empty() {
            if let Some(res) = self.res.as_ref() {
                if res
                    .srq
                    .post_recvs(&res.region, &self.repost, res.recv_len as u32)
                    .is_ok()
                {
                    count(ctx, post_recv_event(self.repost.len()));
                }
            }
            self.repost.clear();
        }
        // Destroy closed connections whose work requests have all completed.
        let mut i = 0;
        while i < self.active.len() {
            let slot = self.active[i];
            let done = self.conns[usize::from(slot)].as_ref().is_some_and(|c| {
                c.state == RConnState::Closing
                    && ((c.wrs == 0 && c.reqs == 0)
                        || c.closing_since
                            .is_some_and(|t| ctx.now.saturating_duration_since(t) > CLOSE_DEADLINE))
            });
            if done {
                self.destroy(slot, free, ctx);
                work = true;
            } else {
                i += 1;
            }
        }
        work
    }

    fn destroy(&mut self, slot: u16, free: &mut Vec<usize>, ctx: &mut Ctx) {
        let s = usize::from(slot);
        let Some(mut c) = self.conns[s].take() else {
            return;
        };
        // Requests still held (held AERs, or at the backend after the deadline) are freed; a
        // backend completion for them later finds a stale generation. Their data buffers go
        // back to the pool, so a backend still writing into them (uring) must finish first.
        if self
            .reqs
            .iter()
            .any(|q| q.state == RState::AtBackend && q.slot == slot && q.cgen == c.gen)
        {
            for q in ctx.bdevs.iter_mut() {
                q.quiesce();
            }
        }
        for r in 0..self.reqs.len() {
            let q = &self.reqs[r];
            if q.state != RState::Free && q.slot == slot && q.cgen == c.gen {
                if q.state == RState::NeedBuffer {
                    self.waiting.retain(|&w| w != r as u32);
                }
                self.free_req(r as u32);
            }
        }
        if let (Some(sub), Some(ctrl)) = (c.subsys.take(), c.ctrl.take()) {
            if c.qid == 0 {
                sub.remove_controller(ctrl.cntlid);
            } else {
                ctrl.release_qid(c.qid);
            }
        }
        if c.wrs > 0 {
            // Destroyed at the close deadline with work requests never completed: they leave
            // the pending gauge with the QP.
            count(ctx, RdmaEvent::SendDone(u64::from(c.wrs)));
        }
        self.active.retain(|&a| a != slot);
        self.qpns.retain(|&(_, a)| a != slot);
        self.gens[s] = self.gens[s].wrapping_add(1);
        ctx.trace.counters(|x| {
            x.qpair_unbind(slot);
            x.connection_closed();
        });
        ctx.trace.tp(TP_QPAIR_DESTROY, slot, 0, c.ident, 0);
        let _ = (&c.peer, c.created, c.max_send_wr);
        drop(c); // destroys the QP and the cm id
        free.push(s);
    }

    fn slot_of_qpn(&self, qpn: u32) -> Option<u16> {
        self.qpns.iter().find(|(q, _)| *q == qpn).map(|&(_, s)| s)
    }

    fn on_wc(&mut self, w: Wc, ctx: &mut Ctx) {
        let kind = w.wr_id >> 60;
        let gen = ((w.wr_id >> 32) & 0x0fff_ffff) as u32;
        let idx = (w.wr_id & 0xffff_ffff) as u32;
        if kind == WR_RECV {
            count(ctx, RdmaEvent::RecvConsumed);
            return self.on_recv(idx, w, ctx);
        }
        let Some(r) = self.reqs.get(idx as usize) else {
            return;
        };
        if r.gen & 0x0fff_ffff != gen || r.state == RState::Free {
            return;
        }
        let slot = r.slot;
        let cgen = r.cgen;
        let live = self.conns[usize::from(slot)]
            .as_ref()
            .is_some_and(|c| c.gen == cgen);
        if let Some(c) = self.conns[usize::from(slot)]
            .as_mut()
            .filter(|c| c.gen == cgen)
        {
            c.wrs = c.wrs.saturating_sub(1);
            count(ctx, RdmaEvent::SendDone(1));
        }
        let r = &mut self.reqs[idx as usize];
        r.wrs = r.wrs.saturating_sub(1);
        if w.status != 0 {
            if live
                && self.conns[usize::from(slot)]
                    .as_ref()
                    .is_some_and(|c| c.state != RConnState::Closing)
            {
                eprintln!(
                    "ringside-tgt: rdma: qpair {slot}: work completion error: {} (kind {kind}); closing the connection",
                    verbs::wc_status_name(w.status)
                );
                self.conn_error(slot, ErrorClass::Transport, ctx);
            }
            if self.reqs[idx as usize].wrs == 0
                && self.reqs[idx as usize].state != RState::AtBackend
            {
                self.free_req(idx);
            }
            return;
        }
        match kind {
            WR_READ => {
                let r = &self.reqs[idx as usize];
                ctx.trace
                    .tp(TP_RDMA_READ_COMPLETED, slot, r.sqe.cid.0, 0, 0);
                if live {
                    self.execute(idx, ctx);
                } else {
                    self.free_req(idx);
                }
            }
            WR_SEND if self.reqs[idx as usize].wrs == 0 => {
                let r = &self.reqs[idx as usize];
                ctx.trace.refresh();
                ctx.trace.tp(TP_RDMA_COMPLETED, slot, r.sqe.cid.0, 0, 0);
                if live {
                    // The response has left: the command is done (a slot whose connection went
                    // meanwhile was unbound, and may serve another qpair by now).
                    let moved = if r.status.is_success() { r.len } else { 0 };
                    let resp = crate::nvm::Response {
                        t0: r.t0,
                        queued_at: r.t_resp,
                        bytes: moved,
                        class: r.class.trace(),
                        ok: r.status.is_success(),
                    };
                    crate::nvm::on_wire(ctx, slot, &resp);
                }
                self.free_req(idx);
            }
            _ => {} // a WRITE: its SEND follows in order
        }
    }

    fn free_req(&mut self, idx: u32) {
        let r = &mut self.reqs[idx as usize];
        if r.state == RState::Free {
            return;
        }
        if let Some(b) = r.buf.take() {
            self.free_bufs.push(b);
        }
        if let Xfer::InCapsule { recv } = r.xfer {
            // Not yet copied (still waiting for a buffer): give the receive back.
            if let Some(res) = self.res.as_ref() {
                self.repost.push((
                    wr_id(WR_RECV, 0, recv),
                    res.recv_off + recv as usize * res.recv_len,
                ));
            }
            r.xfer = Xfer::None;
        }
        r.state = RState::Free;
        r.gen = r.gen.wrapping_add(1);
        let (slot, cgen) = (r.slot, r.cgen);
        if let Some(c) = self.conns[usize::from(slot)]
            .as_mut()
            .filter(|c| c.gen == cgen)
        {
            c.reqs = c.reqs.saturating_sub(1);
        }
        self.free_reqs.push(idx);
    }

    fn on_recv(&mut self, recv: u32, w: Wc, ctx: &mut Ctx) {
        let Some(res) = self.res.as_ref() else { return };
        let off = res.recv_off + recv as usize * res.recv_len;
        let give_back = |me: &mut Self| me.repost.push((wr_id(WR_RECV, 0, recv), off));
        if w.status != 0 {
            return give_back(self);
        }
        let Some(slot) = self.slot_of_qpn(w.qp_num) else {
            return give_back(self);
        };
        let Some(c) = self.conns[usize::from(slot)].as_mut() else {
            return give_back(self);
        };
        if c.state == RConnState::Closing {
            return give_back(self);
        }
        if (w.byte_len as usize) < 64 {
            give_back(self);
            return self.protocol_error(slot, "capsule", "shorter than a command", ctx);
        }
        let mut raw = [0u8; 64];
        raw.copy_from_slice(res.region.bytes(off, 64));
        let sqe = Sqe::decode(&raw);
        let icd_len = w.byte_len as usize - 64;
        let bytes = sqe.dptr.data_len().unwrap_or(0);
        ctx.trace.tp(
            TP_RDMA_NEW,
            slot,
            sqe.cid.0,
            u64::from(sqe.opcode),
            u64::from(bytes),
        );
        ctx.trace.counters(|x| x.qpair_submit(slot));
        let cgen = c.gen;
        if c.sqsize > 0 {
            c.sqhd = (c.sqhd + 1) % c.sqsize;
        }
        // The host may not have more commands outstanding than its queue holds. A request
        // lives on here until its response SEND completes, which can be after the host saw the
        // response and reused the slot: hence twice the queue.
        let limit = 2 * if c.sqsize > 0 {
            u32::from(c.sqsize)
        } else {
            32
        };
        if c.reqs >= limit {
            give_back(self);
            return self.protocol_error(slot, "sqsize", "more commands than the queue holds", ctx);
        }
        // An I/O command is checked by the NVM command set before its data is fetched.
        let early = (c.qid != 0 && c.state == RConnState::Enabled && !sqe.is_fabrics())
            .then(|| crate::nvm::check(&sqe, c.subsys.as_deref(), ctx.mdts()));
        let Some(idx) = self.free_reqs.pop() else {
            give_back(self);
            return self.conn_error(slot, ErrorClass::Transport, ctx);
        };
        c.reqs += 1;
        let t0 = ctx.trace.tsc();
        let r = &mut self.reqs[idx as usize];
        r.state = RState::NeedBuffer;
        r.slot = slot;
        r.cgen = cgen;
        r.sqe = sqe;
        r.buf = None;
        r.wrs = 0;
        r.xfer = Xfer::None;
        r.len = 0;
        r.c2h = 0;
        r.t0 = t0;
        r.io = early.and_then(Result::ok);
        r.class = OpClass::of(&sqe, c.qid);
        // Direction of the data: bits 1:0 of the opcode (of fctype for fabrics commands).
        let dir = if sqe.is_fabrics() {
            sqe.fctype()
        } else {
            sqe.opcode
        } & 3;
        let xfer = match (sqe.dptr, dir) {
            (_, 3) => Err(Status::INVALID_OPCODE),
            (d, _) if d.as_keyed().is_some() => {
                let (raddr, len, rkey, _inv) = d.as_keyed().unwrap_or((0, 0, 0, false));
                match dir {
                    _ if len == 0 => Ok((Xfer::None, 0)),
                    1 => Ok((Xfer::H2C { raddr, rkey }, len)),
                    2 => Ok((Xfer::C2H { raddr, rkey }, len)),
                    _ => Err(Status::INVALID_FIELD),
                }
            }
            (d, 1) if d.as_in_capsule().is_some() => {
                let (o, len) = d.as_in_capsule().unwrap_or((0, 0));
                if o != 0 {
                    Err(Status::INVALID_SGL_OFFSET)
                } else if len as usize > icd_len {
                    Err(Status::SGL_DATA_BLOCK_LENGTH_INVALID)
                } else if len == 0 {
                    Ok((Xfer::None, 0))
                } else {
                    Ok((Xfer::InCapsule { recv }, len))
                }
            }
            (d, 0) if d.data_len().unwrap_or(0) == 0 => Ok((Xfer::None, 0)),
            _ => Err(Status::SGL_DESCRIPTOR_TYPE_INVALID),
        };
        let in_capsule = matches!(xfer, Ok((Xfer::InCapsule { .. }, _)));
        if !in_capsule {
            give_back(self);
        }
        let (xfer, len) = match xfer {
            Ok(x) => x,
            Err(st) => return self.respond(idx, st, 0, 0, ctx),
        };
        if let Some(Err(st)) = early {
            // Refused before any data moves (MDTS, namespace, opcode), as on TCP.
            if let Xfer::InCapsule { .. } = xfer {
                give_back(self);
            }
            return self.respond(idx, st, 0, 0, ctx);
        }
        let buf_len = self.res.as_ref().map_or(0, |r| r.buf_len);
        if len as usize > buf_len {
            if let Xfer::InCapsule { .. } = xfer {
                give_back(self);
            }
            return self.respond(idx, Status::SGL_DATA_BLOCK_LENGTH_INVALID, 0, 0, ctx);
        }
        let r = &mut self.reqs[idx as usize];
        r.xfer = xfer;
        r.len = len;
        if len == 0 {
            return self.execute(idx, ctx);
        }
        match self.free_bufs.pop() {
            Some(b) if self.waiting.is_empty() => {
                self.reqs[idx as usize].buf = Some(b);
                self.start_data(idx, ctx);
            }
            b => {
                if let Some(b) = b {
                    self.free_bufs.push(b);
                }
                ctx.trace.tp(TP_RDMA_NEED_BUFFER, slot, sqe.cid.0, 0, 0);
                ctx.trace.counters(|x| x.buffer_wait());
                self.waiting.push_back(idx);
            }
        }
    }

    /// The request has its buffer: fetch host data (READ or in-capsule copy) or execute.
    fn start_data(&mut self, idx: u32, ctx: &mut Ctx) {
        let Some(res) = self.res.as_mut() else { return };
        let r = &mut self.reqs[idx as usize];
        let Some(b) = r.buf else { return };
        let boff = res.buf_off + b as usize * res.buf_len;
        match r.xfer {
            Xfer::InCapsule { recv } => {
                let roff = res.recv_off + recv as usize * res.recv_len + 64;
                let len = r.len as usize;
                // Copy out of the receive buffer so it can be posted again at once.
                let (src_lo, dst_lo) = (roff, boff);
                let mut tmp = [0u8; 256];
                let mut done = 0;
                while done < len {
                    let n = (len - done).min(tmp.len());
                    tmp[..n].copy_from_slice(res.region.bytes(src_lo + done, n));
                    res.region
                        .bytes_mut(dst_lo + done, n)
                        .copy_from_slice(&tmp[..n]);
                    done += n;
                }
                self.repost.push((
                    wr_id(WR_RECV, 0, recv),
                    res.recv_off + recv as usize * res.recv_len,
                ));
                r.xfer = Xfer::None;
                self.execute(idx, ctx);
            }
            Xfer::H2C { raddr, rkey } => {
                let slot = r.slot;
                let Some(c) = self.conns[usize::from(slot)]
                    .as_mut()
                    .filter(|c| c.gen == r.cgen)
                else {
                    return self.free_req(idx);
                };
                r.state = RState::Reading;
                let wr = SendWr::Read {
                    wr_id: wr_id(WR_READ, r.gen, idx),
                    off: boff,
                    len: r.len,
                    raddr,
                    rkey,
                };
                ctx.trace
                    .tp(TP_RDMA_READ_POSTED, slot, r.sqe.cid.0, u64::from(r.len), 0);
                match c.qp.post(&res.region, &[wr]) {
                    Ok(()) => {
                        c.wrs += 1;
                        r.wrs += 1;
                        count(ctx, RdmaEvent::PostSend(1));
                    }
                    Err(e) => {
                        eprintln!("ringside-tgt: rdma: {e}");
                        self.free_req(idx);
                        self.conn_error(slot, ErrorClass::Transport, ctx);
                    }
                }
            }
            _ => self.execute(idx, ctx),
        }
    }

    /// Runs a command whose host data (if any) is in its buffer.
    fn execute(&mut self, idx: u32, ctx: &mut Ctx) {
        let (slot, cgen) = {
            let r = &self.reqs[idx as usize];
            (r.slot, r.cgen)
        };
        if !self.conns[usize::from(slot)]
            .as_ref()
            .is_some_and(|c| c.gen == cgen && c.state != RConnState::Closing)
        {
            return self.free_req(idx);
        }
        cmd::execute(self, idx, ctx);
    }

    /// A backend operation finished (tag from [`ReactorRdma::backend_tag`]).
    pub fn on_backend_done(
        &mut self,
        gen: u32,
        idx: u32,
        result: Result<(), BdevError>,
        ctx: &mut Ctx,
    ) {
        let Some(r) = self.reqs.get(idx as usize) else {
            return;
        };
        if r.state != RState::AtBackend || ReqTag::gen_bits(r.gen) != gen {
            return;
        }
        let (slot, cid, class, len) = (r.slot, r.sqe.cid.0, r.class, r.len);
        let (t0, t_submit) = (r.t0, r.t_submit);
        let code = u64::from(result.is_err());
        ctx.trace.tp(TP_RDMA_EXECUTED, slot, cid, code, 0);
        let status = crate::nvm::completed(ctx, class, t0, t_submit, result);
        if class == OpClass::Read && status.is_success() {
            self.reqs[idx as usize].c2h = len;
        }
        let live = self.conns[usize::from(slot)].as_ref().is_some_and(|c| {
            c.gen == self.reqs[idx as usize].cgen && c.state != RConnState::Closing
        });
        if !live {
            self.reqs[idx as usize].state = RState::Responding;
            return self.free_req(idx);
        }
        self.respond(idx, status, 0, 0, ctx);
    }

    fn backend_tag(&self, idx: u32) -> u64 {
        ReqTag::Rdma {
            gen: self.reqs[idx as usize].gen,
            req: idx,
        }
        .encode()
    }

    /// Posts the response of request `idx` (with `reqs[idx].c2h` bytes of data to write first).
    fn respond(&mut self, idx: u32, status: Status, dw0: u32, dw1: u32, ctx: &mut Ctx) {
        let Some(res) = self.res.as_mut() else { return };
        let r = &mut self.reqs[idx as usize];
        let slot = r.slot;
        let Some(c) = self.conns[usize::from(slot)]
            .as_mut()
            .filter(|c| c.gen == r.cgen && c.state != RConnState::Closing)
        else {
            r.state = RState::Responding;
            return self.free_req(idx);
        };
        let cqe = Cqe {
            dw0,
            dw1,
            sqhd: c.sqhd,
            sqid: c.qid,
            cid: r.sqe.cid,
            status,
            phase: false,
        };
        let roff = res.rsp_off + idx as usize * 16;
        res.region
            .bytes_mut(roff, 16)
            .copy_from_slice(&cqe.to_bytes());
        r.state = RState::Responding;
        r.status = status;
        r.dw0 = dw0;
        r.dw1 = dw1;
        let send = SendWr::Send {
            wr_id: wr_id(WR_SEND, r.gen, idx),
            off: roff,
            len: 16,
        };
        let write = match (r.xfer, r.buf) {
            (Xfer::C2H { raddr, rkey }, Some(b)) if status.is_success() && r.c2h > 0 => {
                Some(SendWr::Write {
                    wr_id: wr_id(WR_WRITE, r.gen, idx),
                    off: res.buf_off + b as usize * res.buf_len,
                    len: r.c2h,
                    raddr,
                    rkey,
                })
            }
            _ => None,
        };
        let bytes = if write.is_some() { u64::from(r.c2h) } else { 0 };
        let posted = match write {
            Some(w) => c.qp.post(&res.region, &[w, send]).map(|()| 2u8),
            None => c.qp.post(&res.region, &[send]).map(|()| 1u8),
        };
        ctx.trace.tp(
            TP_RDMA_RESPONSE_POSTED,
            slot,
            r.sqe.cid.0,
            u64::from(status.0),
            bytes,
        );
        // Counted done when its SEND completes (`on_wc`), not now.
        r.t_resp = ctx.trace.tsc();
        match posted {
            Ok(n) => {
                c.wrs += u32::from(n);
                r.wrs += n;
                count(ctx, RdmaEvent::PostSend(u64::from(n)));
            }
            Err(e) => {
                eprintln!("ringside-tgt: rdma: {e}");
                self.free_req(idx);
                self.conn_error(slot, ErrorClass::Transport, ctx);
            }
        }
    }

    /// Timer work: keep-alive expiry, handshake timeout, controller teardown from elsewhere.
    pub fn tick(&mut self, ctx: &mut Ctx) {
        for i in 0..self.active.len() {
            let slot = self.active[i];
            let Some(c) = self.conns[usize::from(slot)].as_ref() else {
                continue;
            };
            if c.state == RConnState::Closing {
                continue;
            }
            let handshake = Duration::from_millis(u64::from(ctx.limits().handshake_timeout_ms));
            let mut fail = c.state == RConnState::AwaitingConnect
                && ctx.now.saturating_duration_since(c.created) > handshake;
            fail |= c.ctrl.as_ref().is_some_and(|x| x.is_failed());
            let peer = format_args!("rdma {}", c.peer);
            fail |= crate::controller::keep_alive_tick(
                c.admin.as_deref(),
                c.subsys.as_ref(),
                c.ctrl.as_ref(),
                peer,
                ctx,
            );
            if fail {
                self.fail_conn(slot, ctx);
                continue;
            }
            // A namespace changed: complete a held AER with the notice.
            let due = self.conns[usize::from(slot)].as_mut().and_then(|c| {
                let ctrl = c.ctrl.clone()?;
                crate::controller::due_event(c.admin.as_deref_mut()?, &ctrl)
            });
            if let Some((_, idx, dw0)) = due {
                self.respond(idx, Status::SUCCESS, dw0, 0, ctx);
            }
        }
    }

    /// Target shutdown: disconnect everything and drop it (no waiting for flushes: the
    /// resources go away with the reactor).
    pub fn shutdown(&mut self, free: &mut Vec<usize>, ctx: &mut Ctx) {
        while let Some(&slot) = self.active.last() {
            self.fail_conn(slot, ctx);
            self.destroy(slot, free, ctx);
        }
        // The region holds the data buffers: a backend that lends them to the kernel (uring)
        // must be done with them before it is unregistered and freed.
        for q in ctx.bdevs.iter_mut() {
            q.quiesce();
        }
        self.res = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BackendKind, ByteSize, Config, CoreId, ListenerConfig, NamespaceConfig};

    fn pd(recfmt: u16, qid: u16, hrqsize: u16, hsqsize: u16) -> [u8; CM_PRIVATE_DATA_SIZE] {
        let mut b = [0u8; CM_PRIVATE_DATA_SIZE];
        CmRequest {
            recfmt,
            qid,
            hrqsize,
            hsqsize,
            cntlid: 0xffff,
        }
        .encode(&mut b)
        .expect("encode");
        b
    }

    #[test]
    fn cm_private_data_is_checked_with_the_spec_reject_statuses() {
        let l = crate::config::Limits::default();
        let ok = check_request(&pd(0, 1, 128, 127), &l).expect("a sane i/o queue request");
        assert_eq!((ok.qid, ok.hsqsize), (1, 127));
        assert!(
            check_request(&pd(0, 0, 32, 31), &l).is_ok(),
            "admin queue of 32"
        );
        assert_eq!(
            check_request(&[0u8; 4], &l).err(),
            Some(reject_status::INVALID_PRIVATE_DATA_LENGTH)
        );
        assert_eq!(
            check_request(&pd(7, 1, 128, 127), &l).err(),
            Some(reject_status::INVALID_RECFMT)
        );
        assert_eq!(
            check_request(&pd(0, 1000, 128, 127), &l).err(),
            Some(reject_status::INVALID_QID)
        );
        assert_eq!(
            check_request(&pd(0, 0, 64, 63), &l).err(),
            Some(reject_status::INVALID_HSQSIZE),
            "the admin queue is limited to max_admin_queue_depth"
        );
        assert_eq!(
            check_request(&pd(0, 1, 128, 0), &l).err(),
            Some(reject_status::INVALID_HSQSIZE)
        );
        assert_eq!(
            check_request(&pd(0, 1, 0, 127), &l).err(),
            Some(reject_status::INVALID_HRQSIZE)
        );
    }

    #[test]
    fn wr_ids_and_backend_tags_keep_their_fields_apart() {
        let w = wr_id(WR_WRITE, 0x1234_5678, 77);
        assert_eq!(w >> 60, WR_WRITE);
        assert_eq!(
            (w >> 32) & 0x0fff_ffff,
            0x0234_5678,
            "generation truncated to 28 bits"
        );
        assert_eq!(w & 0xffff_ffff, 77);
    }

    #[test]
    fn rdma_catalog_has_one_begin_one_end_and_its_own_group() {
        let c = rdma_catalog();
        assert_eq!(
            c.iter()
                .filter(|t| t.role == trace_ring::description::TpRole::Begin)
                .count(),
            1
        );
        assert_eq!(
            c.iter()
                .filter(|t| t.role == trace_ring::description::TpRole::End)
                .count(),
            1
        );
        for t in &c {
            assert_eq!(t.group, "rdma");
            assert!(t.name.starts_with("rdma."), "{}", t.name);
            assert_eq!(
                trace_ring::layout::tpoint_group(t.id),
                GROUP_RDMA,
                "{}",
                t.name
            );
        }
        let all = crate::trace::catalog();
        assert!(
            all.iter().any(|t| t.id == TP_RDMA_COMPLETED),
            "appended to the catalog"
        );
    }

    /// On a machine without RDMA (this project's build hosts and CI) an rdma listener costs one
    /// log line: the target starts and serves TCP. With RDMA the listener is bound instead.
    #[test]
    fn an_rdma_listener_without_rdma_leaves_tcp_serving() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = Config::new("rdma-unit");
        c.cores = vec![CoreId(crate::config::online_cores()[0])];
        c.pin_reactors = false;
        c.rpc_socket = Some(dir.path().join("rpc.sock"));
        c.trace.enabled = false;
        c.listeners = vec![
            ListenerConfig {
                transport: "tcp".into(),
                addr: "127.0.0.1".parse().expect("ip"),
                port: 0,
            },
            ListenerConfig {
                transport: "rdma".into(),
                addr: "127.0.0.1".parse().expect("ip"),
                port: 4420,
            },
        ];
        c.subsystems[0].namespaces.push(NamespaceConfig {
            nsid: Some(1),
            backend: BackendKind::Null,
            size: ByteSize(1 << 20),
            block_size: 512,
        });
        let t =
            crate::Target::start(c).expect("the target starts with an rdma listener configured");
        let tcp = t.listen_addrs()[0];
        std::net::TcpStream::connect(tcp).expect("tcp is served");
        if std::path::Path::new("/dev/infiniband/rdma_cm").exists() {
            println!(
                "rdma present: listener bound at {:?}",
                t.rdma_listen_addrs()
            );
        } else {
            assert!(
                t.rdma_listen_addrs().is_empty(),
                "no rdma listener without RDMA"
            );
        }
        t.shutdown();
    }
}
