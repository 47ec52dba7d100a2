//! The NVMe/TCP transport: one [`Conn`] per TCP connection (one qpair), owned by exactly one
//! reactor for its whole life.
//!
//! A connection keeps a large receive buffer and parses every complete PDU in it per poll with
//! nvme-proto's framer, executes each command to completion on this reactor (inline for admin
//! and fabrics commands, through the reactor's backend queue for I/O), and appends every PDU it
//! sends (CapsuleResp, C2HData, R2T, TermReq) to one output buffer that the reactor flushes with
//! a single write at the end of the poll. Requests that wait for data (R2T/H2CData) or for the
//! backend live in a pool sized from the queue size the host asked for in Connect; their data
//! buffers are kept (they only grow), so the steady state allocates nothing.
//!
//! Lifecycle ([`ConnState`]): AwaitingICReq → AwaitingConnect → Enabled → Disconnecting →
//! Closed, driven only by [`Conn::transition`]. Any framing error answers with a C2HTermReq
//! and closes *this* connection; command errors are NVMe statuses and keep it open.

mod admin;
mod io;
mod out;

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nvme_proto::fabrics::FabricsType;
use nvme_proto::nvme::{Cid, Cqe, Sqe, Status};
use nvme_proto::sgl::{subtype, SglDescriptor};
use nvme_proto::tcp::{
    self as ptcp, C2HData, Fes, H2CData, IcResp, PduConfig, PduError, PduHeader, Role, R2T,
};

use crate::backend::{BdevError, IoBuf};
use crate::nvm::{self, IoCmd, OpClass};
use crate::pollgroup::Ctx;
use crate::subsystem::{Controller, Subsystem};
use crate::trace::{
    TP_BACKEND_COMPLETED, TP_BACKEND_SUBMITTED, TP_CAPSULE_RECEIVED, TP_H2C_DONE,
    TP_QPAIR_DISCONNECT, TP_R2T_SENT, TP_RESPONSE_QUEUED, TP_RESPONSE_SENT,
};
use trace_ring::{ErrorClass, OpClass as TraceClass};

/// Connection lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// Waiting for the host's ICReq.
    AwaitingICReq,
    /// ICResp sent; the only command accepted is Fabrics Connect.
    AwaitingConnect,
    /// Connected to a controller: admin or I/O commands flow.
    Enabled,
    /// No more input is processed; pending output (e.g. a TermReq) drains, then the socket closes.
    Disconnecting,
    /// Done; the reactor removes the connection.
    Closed,
}

/// What happened to a connection (the input of [`Conn::transition`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnEvent {
    IcReqAccepted,
    Connected,
    /// A fatal error (TermReq queued), a Disconnect command, controller teardown or shutdown.
    Terminate,
    /// Output drained (or its deadline passed) while disconnecting.
    Drained,
    /// The peer closed the socket or it failed.
    PeerGone,
}

/// With direct `recv` polling, connections other than enabled I/O queues are read once per this
/// many reactor iterations (see [`Conn::poll_due`]).
pub const SLOW_POLL_EVERY: u32 = 16;

/// How long a disconnecting connection may take to drain its output.
const DRAIN_DEADLINE: Duration = Duration::from_secs(1);
/// Stop reading input while this much output is waiting (the peer is not reading).
const MAX_PENDING_OUTPUT: usize = 16 << 20;

/// Where a request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReqState {
    Free,
    /// R2T sent; H2CData is filling the buffer.
    AwaitH2C,
    /// Submitted to the backend.
    AtBackend,
    /// Done; its data is queued for sending from its buffer.
    Sending,
}

/// A command that outlives the poll that received it.
struct Req {
    state: ReqState,
    cid: Cid,
    /// H2C bytes received so far.
    received: u32,
    /// Set when data for this command failed its digest: answer with this instead of executing.
    failed: Option<Status>,
    /// The checked command: class, LBA range, transfer length (`io.len` bytes), bdev. The
    /// 64-byte SQE itself is not kept.
    io: IoCmd,
    /// A read sent straight from a memory backend: its bytes are `memory[off..off + io.len]`
    /// of namespace `io.ns_index`, not `buf` (see [`Conn::read_in_place`]).
    mem_off: Option<usize>,
    /// Trace clock when the capsule arrived (for the qpair latency histogram).
    t0: u64,
    /// Trace clock when it went to the backend (for the stage histograms).
    t_submit: u64,
    /// Data buffer; only grows. `buf[..len]` is the transfer. Page-aligned, so a backend doing
    /// direct I/O (uring) uses it without a bounce copy.
    buf: IoBuf,
}

impl Req {
    fn new(prealloc: usize) -> Req {
        Req {
            state: ReqState::Free,
            cid: Cid(0),
            received: 0,
            failed: None,
            io: IoCmd::default(),
            mem_off: None,
            t0: 0,
            t_submit: 0,
            buf: IoBuf::new(prealloc),
        }
    }
}

/// Controller state owned by the admin connection (registers, features, AERs held by their
/// command id, keep-alive).
type AdminState = crate::controller::AdminState<Cid>;

/// One NVMe/TCP connection (one queue pair).
pub struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    slot: u16,
    gen: u32,
    state: ConnState,
    created: Instant,
    drain_deadline: Option<Instant>,
    cfg: PduConfig,
    rbuf: Vec<u8>,
    rhead: usize,
    rtail: usize,
    /// The largest PDU this connection can receive; `rbuf` holds at least two.
    max_pdu: usize,
    out: out::Out,
    freed_scratch: Vec<u16>,
    qid: u16,
    sqsize: u16,
    sqhd: u16,
    /// Successful reads end with a C2HData carrying SUCCESS instead of a CapsuleResp: an I/O
    /// queue whose host disabled SQ flow control (Connect CATTR bit 2; the spec's condition),
    /// or every I/O queue with `c2h_success = "always"` (the default, as SPDK's).
    c2h_success: bool,
    /// The host kept SQ flow control on (Connect CATTR bit 2 clear): it may count free SQ slots
    /// from the SQHD of the CapsuleResps it gets, so with `c2h_success` some reads still end
    /// with one (see [`Conn::read_ends_with_success`]).
    sq_flow: bool,
    /// Commands consumed since the last CapsuleResp (which carries the SQ head) was queued.
    sqhd_unreported: u16,
    subsys: Option<Arc<Subsystem>>,
    ctrl: Option<Arc<Controller>>,
    admin: Option<Box<AdminState>>,
    reqs: Vec<Req>,
    free: Vec<u16>,
    /// Bit per CID of commands held (waiting for data, at the backend, or AERs).
    cids: Box<[u64]>,
    /// Scratch for admin data (Identify, log pages).
    scratch: Vec<u8>,
    /// The command the next response answers, for the counters page: arrival TSC, class,
    /// bytes moved. Set when a capsule arrives and again before a deferred response.
    cur: (u64, TraceClass, u64),
}

impl Conn {
    pub fn new(
        stream: TcpStream,
        peer: SocketAddr,
        id: u64,
        slot: u16,
        gen: u32,
        ctx: &Ctx,
    ) -> Conn {
        let l = ctx.limits();
        let icd = (l.in_capsule_data_size.0 as usize).max(ptcp::DEFAULT_ADMIN_IN_CAPSULE as usize);
        let h2c = l.max_h2c_data.0 as usize;
        let max_pdu = (ptcp::CAPSULE_CMD_HLEN + 8 + icd).max(ptcp::DATA_HLEN + 8 + 128 + h2c);
        let rlen = (2 * max_pdu).max(256 * 1024);
        Conn {
            stream,
            peer,
            id,
            slot,
            gen,
            state: ConnState::AwaitingICReq,
            created: ctx.now,
            drain_deadline: None,
            cfg: PduConfig::initial(Role::Controller),
            rbuf: vec![0; rlen],
            rhead: 0,
            rtail: 0,
            max_pdu,
            out: out::Out::new(),
            freed_scratch: Vec::with_capacity(256),
            qid: 0,
            sqsize: 0,
            sqhd: 0,
            c2h_success: false,
            sq_flow: true,
            sqhd_unreported: 0,
            subsys: None,
            ctrl: None,
            admin: None,
            reqs: Vec::new(),
            free: Vec::new(),
            cids: vec![0u64; 1024].into_boxed_slice(),
            scratch: Vec::new(),
            cur: (0, TraceClass::Admin, 0),
        }
    }

    pub fn state(&self) -> ConnState {
        self.state
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// The qpair identity given by the acceptor.
    pub fn ident(&self) -> u64 {
        self.id
    }

    pub fn is_closed(&self) -> bool {
        self.state == ConnState::Closed
    }

    /// Whether a reactor polling its sockets with a plain `recv` each (few connections) should
    /// read this one in iteration `iter`: an enabled I/O queue every time; the admin queue,
    /// handshakes and closing connections every [`SLOW_POLL_EVERY`]th iteration. An empty
    /// `recv` costs about as much as the rest of an idle iteration together (a syscall, ~0.6 µs
    /// here), and every host keeps an admin queue beside its I/O queues: polling it at full
    /// rate doubles the iteration a QD1 command waits for. Admin commands are rare and wait
    /// at most a few microseconds more.
    #[inline]
    pub fn poll_due(&self, iter: u32) -> bool {
        (self.qid != 0 && self.state == ConnState::Enabled) || iter % SLOW_POLL_EVERY == 0
    }

    pub fn wants_flush(&self) -> bool {
        !self.out.is_empty() || self.state == ConnState::Disconnecting
    }

    /// The one place the lifecycle changes.
    pub fn transition(&mut self, ev: ConnEvent, ctx: &Ctx) {
        use ConnEvent as E;
        use ConnState as S;
        let next = match (self.state, ev) {
            (S::Closed, _) => S::Closed,
            (_, E::PeerGone) => S::Closed,
            (S::AwaitingICReq, E::IcReqAccepted) => S::AwaitingConnect,
            (S::AwaitingConnect, E::Connected) => S::Enabled,
            (S::Disconnecting, E::Drained) => S::Closed,
            (S::Disconnecting, _) => S::Disconnecting,
            (_, E::Terminate) => S::Disconnecting,
            (s, _) => s, // not a legal event in this state: ignore
        };
        if next == self.state {
            return;
        }
        if !matches!(self.state, S::Disconnecting | S::Closed) {
            ctx.trace
                .tp(TP_QPAIR_DISCONNECT, self.slot, 0, u64::from(self.qid), 0);
        }
        match next {
            S::Disconnecting => {
                self.drain_deadline = Some(ctx.now + DRAIN_DEADLINE);
            }
            S::Closed => {
                let _ = self.stream.shutdown(std::net::Shutdown::Both);
            }
            _ => {}
        }
        self.state = next;
    }

    /// Reads what the socket has and executes every complete PDU. Returns whether it did work.
    pub fn on_readable(&mut self, ctx: &mut Ctx) -> bool {
        match self.state {
            ConnState::Closed => return false,
            ConnState::Disconnecting => {
                // Discard input so level-triggered readiness does not spin; close on EOF.
                let mut sink = [0u8; 4096];
                match self.stream.read(&mut sink) {
                    Ok(0) => self.transition(ConnEvent::PeerGone, ctx),
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => self.transition(ConnEvent::PeerGone, ctx),
                }
                return true;
            }
            _ => {}
        }
        if self.out.pending() > MAX_PENDING_OUTPUT {
            return false; // back-pressure: the host is not reading its completions
        }
        if self.rhead == self.rtail {
            self.rhead = 0;
            self.rtail = 0;
        } else if self.rbuf.len() - self.rtail < self.max_pdu {
            self.rbuf.copy_within(self.rhead..self.rtail, 0);
            self.rtail -= self.rhead;
            self.rhead = 0;
        }
        match recv_raw(&self.stream, &mut self.rbuf[self.rtail..]) {
            Ok(0) => {
                self.transition(ConnEvent::PeerGone, ctx);
                return true;
            }
            Ok(n) => self.rtail += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                return false
            }
            Err(_) => {
                self.transition(ConnEvent::PeerGone, ctx);
                return true;
            }
        }
        self.process_input(ctx);
        true
    }

    fn process_input(&mut self, ctx: &mut Ctx) {
        let rbuf = std::mem::take(&mut self.rbuf);
        while matches!(
            self.state,
            ConnState::AwaitingICReq | ConnState::AwaitingConnect | ConnState::Enabled
        ) {
            let avail = &rbuf[self.rhead..self.rtail];
            match ptcp::parse_pdu(avail, &self.cfg) {
                Ok(None) => break,
                Ok(Some(v)) => {
                    self.rhead += v.len;
                    self.on_pdu(v.header, v.data, ctx);
                }
                Err(PduError::DataDigest {
                    pdu_type,
                    cccid,
                    pdu_len,
                    ..
                }) => {
                    let pdu = &avail[..pdu_len.min(avail.len())];
                    self.rhead += pdu_len;
                    self.on_data_digest_error(pdu_type, cccid, pdu, ctx);
                }
                Err(e) => {
                    self.fatal(&e, avail, ctx);
                    break;
                }
            }
        }
        self.rbuf = rbuf;
    }

    /// Answers a framing error with a C2HTermReq (when the error calls for one) and closes.
    fn fatal(&mut self, e: &PduError, offending: &[u8], ctx: &mut Ctx) {
        ctx.trace.counters(|c| c.error(ErrorClass::Transport));
        let (field, reason) = match e {
            PduError::Fatal {
                fes,
                offset,
                reason,
                ..
            } => (format!("pdu byte {offset}"), format!("{fes:?}: {reason}")),
            other => ("pdu".to_string(), other.to_string()),
        };
        self.log_protocol_close(&field, &reason, ctx);
        let max = ptcp::TERM_REQ_MAX_LEN;
        let n = ptcp::encode_term_req_for(e, Role::Controller, offending, self.out.reserve(max))
            .unwrap_or(0);
        self.out.commit(max, n);
        self.transition(ConnEvent::Terminate, ctx);
    }

    /// A TermReq for a protocol error found above the framer (sequence, ttag, offsets).
    fn fatal_fes(&mut self, fes: Fes, fei: u32, offending_hdr: &[u8], ctx: &mut Ctx) {
        ctx.trace.counters(|c| c.error(ErrorClass::Protocol));
        let ty = offending_hdr.first().map_or(0, |&b| b);
        self.log_protocol_close(
            &format!("pdu type {ty:#04x} byte {fei}"),
            &format!("{fes:?}"),
            ctx,
        );
        let max = ptcp::TERM_REQ_MAX_LEN;
        let data = ptcp::term_req_data(offending_hdr);
        let n = ptcp::encode_term_req(Role::Controller, fes, fei, data, self.out.reserve(max))
            .unwrap_or(0);
        self.out.commit(max, n);
        self.transition(ConnEvent::Terminate, ctx);
    }

    /// The one line and the counter of a connection closed on a protocol error.
    fn log_protocol_close(&self, field: &str, reason: &str, ctx: &Ctx) {
        crate::controller::protocol_close(
            crate::controller::Transport::Tcp,
            self.peer,
            self.subsys.as_ref(),
            self.ctrl.as_ref(),
            field,
            reason,
            ctx,
        );
    }

    fn on_pdu(&mut self, hdr: PduHeader, data: &[u8], ctx: &mut Ctx) {
        match (self.state, hdr) {
            (ConnState::AwaitingICReq, PduHeader::IcReq(req)) => {
                let resp = IcResp {
                    pfv: 0,
                    cpda: 0,
                    hdgst: req.hdgst,
                    ddgst: req.ddgst,
                    maxh2cdata: ctx.limits().max_h2c_data.0 as u32,
                };
                let n = ptcp::encode_icresp(&resp, self.out.reserve(ptcp::IC_LEN)).unwrap_or(0);
                self.out.commit(ptcp::IC_LEN, n);
                let mut cfg = PduConfig::negotiated(Role::Controller, &req, &resp);
                cfg.max_in_capsule_data = (ctx.limits().in_capsule_data_size.0 as u32)
                    .max(ptcp::DEFAULT_ADMIN_IN_CAPSULE);
                cfg.max_c2h_data = ctx.limits().max_c2h_data.0 as u32;
                self.cfg = cfg;
                self.transition(ConnEvent::IcReqAccepted, ctx);
            }
            (ConnState::AwaitingICReq, _) | (_, PduHeader::IcReq(_)) => {
                let hdr_bytes = self.peek_header_for(hdr);
                self.fatal_fes(Fes::PduSequenceError, 0, &hdr_bytes, ctx);
            }
            (_, PduHeader::H2CTermReq(_)) => {
                // The host gives up on the connection: close without reply (spec 7.4.7).
                self.transition(ConnEvent::PeerGone, ctx);
            }
            (_, PduHeader::CapsuleCmd(sqe)) => self.on_capsule(&sqe, data, ctx),
            (_, PduHeader::H2CData(h)) => self.on_h2c(h, data, ctx),
            (_, other) => {
                // Controller-to-host types are refused by the framer; anything else is a
                // sequence error.
                let hdr_bytes = self.peek_header_for(other);
                self.fatal_fes(Fes::PduSequenceError, 0, &hdr_bytes, ctx);
            }
        }
    }

    /// A minimal header for TermReq data when the original bytes are no longer at hand.
    fn peek_header_for(&self, hdr: PduHeader) -> [u8; 8] {
        let ty = hdr.pdu_type();
        [ty as u8, 0, ty.hlen() as u8, 0, 0, 0, 0, 0]
    }

    fn on_data_digest_error(&mut self, ty: ptcp::PduType, cccid: Cid, pdu: &[u8], ctx: &mut Ctx) {
        match ty {
            ptcp::PduType::CapsuleCmd => {
                // The command itself was framed correctly; only its data is suspect.
                if self.state == ConnState::Enabled || self.state == ConnState::AwaitingConnect {
                    self.trace_begin(cccid, 0, 0, ctx);
                    ctx.trace.counters(|c| c.error(ErrorClass::Transport));
                    self.on_submit();
                    self.respond(cccid, Status::TRANSIENT_TRANSPORT_ERROR, 0, 0, ctx);
                }
            }
            ptcp::PduType::H2CData => {
                let ttag = pdu
                    .get(10..12)
                    .map_or(u16::MAX, |b| u16::from_le_bytes([b[0], b[1]]));
                let datal = pdu
                    .get(16..20)
                    .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                match self.reqs.get_mut(usize::from(ttag)) {
                    Some(r) if r.state == ReqState::AwaitH2C && r.cid == cccid => {
                        r.failed = Some(Status::TRANSIENT_TRANSPORT_ERROR);
                        r.received = r.received.saturating_add(datal).min(r.io.len);
                        if r.received >= r.io.len {
                            self.finish_h2c(usize::from(ttag), None, ctx);
                        }
                    }
                    _ => self.fatal_fes(Fes::InvalidHeaderField, 10, pdu, ctx),
                }
            }
            _ => self.fatal_fes(Fes::PduSequenceError, 0, pdu, ctx),
        }
    }

    // ---------------------------------------------------------------------------------------
    // Commands
    // ---------------------------------------------------------------------------------------

    fn cid_busy(&self, cid: Cid) -> bool {
        self.cids[usize::from(cid.0 >> 6)] & (1 << (cid.0 & 63)) != 0
    }

    fn cid_mark(&mut self, cid: Cid, busy: bool) {
        let w = &mut self.cids[usize::from(cid.0 >> 6)];
        if busy {
            *w |= 1 << (cid.0 & 63);
        } else {
            *w &= !(1 << (cid.0 & 63));
        }
    }

    fn on_submit(&mut self) {
        if self.sqsize > 0 {
            self.sqhd = (self.sqhd + 1) % self.sqsize;
        }
        self.sqhd_unreported = self.sqhd_unreported.saturating_add(1);
    }

    /// Whether the successful read answered now ends with the SUCCESS flag on its last C2HData
    /// (no CapsuleResp). On a queue whose host kept SQ flow control on, a read is answered with
    /// a CapsuleResp once a quarter of the SQ was consumed since the last one: the host's view
    /// of the SQ head then never lags by more than that, so a host that counts free slots from
    /// SQHD keeps most of its queue and can never stall (when it has filled the queue by its own
    /// count, all of those commands are here, and the next read's response reports the head).
    fn read_ends_with_success(&self) -> bool {
        self.c2h_success && (!self.sq_flow || self.sqhd_unreported < (self.sqsize / 4).max(1))
    }

    /// A command arrived: opens its request in the trace and its slot in the counters.
    fn trace_begin(&mut self, cid: Cid, opcode: u8, bytes: u64, ctx: &Ctx) {
        let class = if self.qid == 0 {
            TraceClass::Admin
        } else {
            match opcode {
                0x02 => TraceClass::Read,
                0x01 => TraceClass::Write,
                _ => TraceClass::Other,
            }
        };
        self.cur = (ctx.trace.tsc(), class, 0);
        let slot = self.slot;
        ctx.trace.with(|w| {
            w.tp(TP_CAPSULE_RECEIVED, slot, cid.0, u64::from(opcode), bytes);
            w.counters().qpair_submit(slot);
        });
    }

    /// A response (CapsuleResp, or the last C2HData with SUCCESS) was queued for the command
    /// described by `self.cur`.
    fn trace_response(&mut self, cid: Cid, status: Status, ctx: &Ctx) {
        let (t0, class, bytes) = self.cur;
        ctx.trace.tp(
            TP_RESPONSE_QUEUED,
            self.slot,
            cid.0,
            u64::from(status.0),
            bytes,
        );
        if ctx.trace.active() {
            // Counted done when it has left (`flush`), not now.
            let resp = nvm::Response::queued(ctx, t0, class, bytes, status);
            self.out.mark_end(cid.0, resp);
        }
    }

    fn on_capsule(&mut self, sqe: &Sqe, data: &[u8], ctx: &mut Ctx) {
        let bytes = match sqe.dptr {
            SglDescriptor::DataBlock { len, .. }
            | SglDescriptor::TransportDataBlock { len, .. } => u64::from(len),
            _ => data.len() as u64,
        };
        self.trace_begin(sqe.cid, sqe.opcode, bytes, ctx);
        self.on_submit();
        if self.qid == 0 && self.cid_busy(sqe.cid) {
            // A held AER whose id the host reuses was abandoned by the host: free its id.
            if let Some(cid) = self.admin.as_mut().and_then(|a| a.abandon_aer(sqe.cid)) {
                self.cid_mark(cid, false);
            }
        }
        if self.cid_busy(sqe.cid) {
            self.respond(sqe.cid, Status::COMMAND_ID_CONFLICT, 0, 0, ctx);
            return;
        }
        if sqe.is_fabrics() {
            return self.on_fabrics(*sqe, data, ctx);
        }
        if self.state != ConnState::Enabled {
            self.respond(sqe.cid, Status::COMMAND_SEQUENCE_ERROR, 0, 0, ctx);
            return;
        }
        if self.qid == 0 {
            if let Some(a) = self.admin.as_mut() {
                // Any admin command proves the host is alive.
                a.last_keep_alive = ctx.now;
            }
            self.on_admin(*sqe, data, ctx);
        } else {
            self.on_io(sqe, data, ctx);
        }
    }

    fn on_fabrics(&mut self, sqe: Sqe, data: &[u8], ctx: &mut Ctx) {
        match FabricsType::from_u8(sqe.fctype()) {
            Some(FabricsType::Connect) => {
                if self.state != ConnState::AwaitingConnect {
                    return self.respond(sqe.cid, Status::COMMAND_SEQUENCE_ERROR, 0, 0, ctx);
                }
                self.on_connect(sqe, data, ctx);
            }
            _ if self.state != ConnState::Enabled => {
                self.respond(sqe.cid, Status::COMMAND_SEQUENCE_ERROR, 0, 0, ctx)
            }
            Some(FabricsType::PropertyGet) | Some(FabricsType::PropertySet) if self.qid != 0 => {
                self.respond(sqe.cid, Status::INVALID_OPCODE, 0, 0, ctx)
            }
            Some(FabricsType::PropertyGet) => self.on_property_get(sqe, ctx),
            Some(FabricsType::PropertySet) => self.on_property_set(sqe, ctx),
            Some(FabricsType::Disconnect) => {
                self.respond(sqe.cid, Status::SUCCESS, 0, 0, ctx);
                self.transition(ConnEvent::Terminate, ctx);
            }
            _ => self.respond(sqe.cid, Status::INVALID_OPCODE, 0, 0, ctx),
        }
    }

    /// Appends a CapsuleResp.
    fn respond(&mut self, cid: Cid, status: Status, dw0: u32, dw1: u32, ctx: &Ctx) {
        self.respond_with_sqhd(cid, status, dw0, dw1, self.sqhd, ctx);
    }

    /// Appends a CapsuleResp whose SQ head field is `sqhd` (0xFFFF in the response to a Connect
    /// that disabled SQ flow control; the queue's head otherwise).
    fn respond_with_sqhd(
        &mut self,
        cid: Cid,
        status: Status,
        dw0: u32,
        dw1: u32,
        sqhd: u16,
        ctx: &Ctx,
    ) {
        if matches!(self.state, ConnState::Disconnecting | ConnState::Closed) {
            return; // after a TermReq nothing else may be sent
        }
        let cqe = Cqe {
            dw0,
            dw1,
            sqhd,
            sqid: self.qid,
            cid,
            status,
            phase: false,
        };
        let max = ptcp::CAPSULE_RESP_HLEN + ptcp::DIGEST_LEN;
        let n = ptcp::encode_capsule_resp(&cqe, self.cfg.hdgst, self.out.reserve(max)).unwrap_or(0);
        self.out.commit(max, n);
        self.sqhd_unreported = 0;
        self.trace_response(cid, status, ctx);
    }

    /// Appends C2HData PDUs carrying `data` (split at the connection's C2H limit). With `req`,
    /// `data` is that request's buffer and is referenced, not copied (see [`out`]).
    fn send_c2h(
        out: &mut out::Out,
        cfg: &PduConfig,
        cid: Cid,
        data: &[u8],
        req: Option<u16>,
        success: bool,
    ) {
        let max = cfg.max_c2h_data.max(4096) as usize;
        let mut off = 0usize;
        while off < data.len() {
            let n = (data.len() - off).min(max);
            let last = off + n == data.len();
            let h = C2HData {
                cccid: cid,
                datao: off as u32,
                datal: n as u32,
                last,
                success: success && last,
            };
            // Header, header digest and padding: exactly the pdo (at most 255 bytes).
            let hmax = cfg.tx_pdo(ptcp::PduType::C2HData);
            match ptcp::encode_c2h_data_header(&h, cfg, out.reserve(hmax)) {
                Ok(l) => {
                    out.commit(hmax, l.header_len);
                    let chunk = &data[off..off + n];
                    match req {
                        Some(r) => out.push_req(r, off, off + n, last && !l.ddgst),
                        None => out.push_bytes(chunk),
                    }
                    if l.ddgst {
                        out.push_bytes(&ptcp::digest(chunk).to_le_bytes());
                        if let (Some(r), true) = (req, last) {
                            // Free the request once the digest after its data is out.
                            out.push_req(r, 0, 0, true);
                        }
                    }
                }
                Err(_) => {
                    out.commit(hmax, 0);
                    return;
                }
            }
            off += n;
        }
    }

    fn send_r2t(&mut self, cid: Cid, ttag: u16, len: u32, ctx: &Ctx) {
        let r = R2T {
            cccid: cid,
            ttag,
            r2to: 0,
            r2tl: len,
        };
        let max = ptcp::R2T_HLEN + ptcp::DIGEST_LEN;
        let n = ptcp::encode_r2t(&r, &self.cfg, self.out.reserve(max)).unwrap_or(0);
        self.out.commit(max, n);
        ctx.trace
            .tp(TP_R2T_SENT, self.slot, cid.0, u64::from(len), 0);
    }

    /// Sends `len` bytes of admin data (from `self.scratch`, zero-padded) then a success CQE.
    fn respond_with_scratch(&mut self, cid: Cid, len: usize, ctx: &Ctx) {
        if self.scratch.len() < len {
            self.scratch.resize(len, 0);
        }
        Self::send_c2h(
            &mut self.out,
            &self.cfg,
            cid,
            &self.scratch[..len],
            None,
            false,
        );
        self.respond(cid, Status::SUCCESS, 0, 0, ctx);
    }

    /// Checks the data pointer of a controller-to-host command; returns the transfer length.
    fn c2h_len(&self, sqe: &Sqe, data: &[u8]) -> Result<usize, Status> {
        if !data.is_empty() {
            return Err(Status::INVALID_FIELD);
        }
        if sqe.psdt() == 0 {
            return Err(Status::INVALID_FIELD);
        }
        match sqe.dptr {
            SglDescriptor::TransportDataBlock { len, subtype: st } if st == subtype::TRANSPORT => {
                Ok(len as usize)
            }
            SglDescriptor::DataBlock { .. } => Err(Status::SGL_DESCRIPTOR_TYPE_INVALID),
            _ => Err(Status::SGL_DESCRIPTOR_TYPE_INVALID),
        }
    }

    /// Where the data of a host-to-controller command comes from.
    fn h2c_source(&self, sqe: &Sqe, data: &[u8]) -> Result<H2cSource, Status> {
        if sqe.psdt() == 0 {
            return Err(Status::INVALID_FIELD);
        }
        match sqe.dptr {
            SglDescriptor::DataBlock {
                addr,
                len,
                subtype: st,
            } if st == subtype::OFFSET => {
                if addr != 0 {
                    Err(Status::INVALID_SGL_OFFSET)
                } else if len as usize != data.len() {
                    Err(Status::SGL_DATA_BLOCK_LENGTH_INVALID)
                } else {
                    Ok(H2cSource::InCapsule(len))
                }
            }
            SglDescriptor::TransportDataBlock { len, subtype: st } if st == subtype::TRANSPORT => {
                if !data.is_empty() {
                    Err(Status::INVALID_FIELD)
                } else {
                    Ok(H2cSource::R2T(len))
                }
            }
            _ => Err(Status::SGL_DESCRIPTOR_TYPE_INVALID),
        }
    }

    /// Takes a request from the pool for `sqe`; `None` means the host overran its queue.
    fn alloc_req(&mut self, cid: Cid, cmd: &IoCmd) -> Option<u16> {
        let len = cmd.len;
        let idx = self.free.pop()?;
        self.cid_mark(cid, true);
        let r = &mut self.reqs[usize::from(idx)];
        r.cid = cid;
        r.received = 0;
        r.failed = None;
        r.io = *cmd;
        r.mem_off = None;
        r.t0 = self.cur.0;
        r.buf.grow(len as usize);
        Some(idx)
    }

    fn free_req(&mut self, idx: usize) {
        let cid = self.reqs[idx].cid;
        self.reqs[idx].state = ReqState::Free;
        self.cid_mark(cid, false);
        self.free.push(idx as u16);
    }

    /// The host sent more commands than its queue holds.
    fn queue_overrun(&mut self, sqe: &Sqe, ctx: &mut Ctx) {
        let mut hdr = [0u8; 72];
        hdr[0] = ptcp::PduType::CapsuleCmd as u8;
        hdr[2] = 72;
        hdr[8..72].copy_from_slice(&sqe.to_bytes());
        self.fatal_fes(Fes::PduSequenceError, 0, &hdr, ctx);
    }

    fn on_h2c(&mut self, h: H2CData, data: &[u8], ctx: &mut Ctx) {
        let idx = usize::from(h.ttag);
        let hdr = {
            let mut b = [0u8; 24];
            b[0] = ptcp::PduType::H2CData as u8;
            b[2] = 24;
            b[8..10].copy_from_slice(&h.cccid.0.to_le_bytes());
            b[10..12].copy_from_slice(&h.ttag.to_le_bytes());
            b[12..16].copy_from_slice(&h.datao.to_le_bytes());
            b[16..20].copy_from_slice(&h.datal.to_le_bytes());
            b
        };
        let Some(r) = self.reqs.get_mut(idx) else {
            return self.fatal_fes(Fes::InvalidHeaderField, 10, &hdr, ctx);
        };
        if r.state != ReqState::AwaitH2C || r.cid != h.cccid {
            return self.fatal_fes(Fes::InvalidHeaderField, 10, &hdr, ctx);
        }
        if h.datao != r.received {
            return self.fatal_fes(Fes::DataTransferOutOfRange, 12, &hdr, ctx);
        }
        let end = h.datao as usize + data.len();
        if end > r.io.len as usize {
            return self.fatal_fes(Fes::DataTransferOutOfRange, 16, &hdr, ctx);
        }
        if h.datao == 0
            && end == r.io.len as usize
            && r.io.class == OpClass::Write
            && ctx.bdevs[r.io.bdev].copies_on_submit()
        {
            // All of the write in one H2CData PDU and a backend that copies on submit: straight
            // from the receive buffer, without the copy into the request's buffer.
            r.received = end as u32;
            return self.finish_h2c(idx, Some(data), ctx);
        }
        r.buf[h.datao as usize..end].copy_from_slice(data);
        r.received = end as u32;
        if r.received == r.io.len {
            self.finish_h2c(idx, None, ctx);
        }
    }

    /// All host data of a request arrived: execute it (or fail it after a digest error).
    /// `host` is the data where it arrived, when it is all of it and the backend copies on
    /// submit; otherwise the data is in the request's buffer.
    fn finish_h2c(&mut self, idx: usize, host: Option<&[u8]>, ctx: &mut Ctx) {
        {
            let r = &self.reqs[idx];
            ctx.trace
                .tp(TP_H2C_DONE, self.slot, r.cid.0, u64::from(r.received), 0);
        }
        if let Some(st) = self.reqs[idx].failed {
            let cid = self.reqs[idx].cid;
            self.cur = (self.reqs[idx].t0, self.reqs[idx].io.class.trace(), 0);
            self.free_req(idx);
            return self.respond(cid, st, 0, 0, ctx);
        }
        self.execute_write_like(idx, host, ctx);
    }

    /// A backend operation finished.
    pub fn on_backend_done(&mut self, req: u16, r: Result<(), BdevError>, ctx: &mut Ctx) {
        let idx = usize::from(req);
        if self.reqs.get(idx).map(|r| r.state) != Some(ReqState::AtBackend) {
            return;
        }
        let (cid, class, len) = {
            let q = &self.reqs[idx];
            (q.cid, q.io.class, q.io.len as usize)
        };
        ctx.trace.tp(
            TP_BACKEND_COMPLETED,
            self.slot,
            cid.0,
            u64::from(r.is_err()),
            0,
        );
        let (t0, t_submit) = (self.reqs[idx].t0, self.reqs[idx].t_submit);
        let status = nvm::completed(ctx, class, t0, t_submit, r);
        self.cur = (t0, class.trace(), len as u64);
        if status.is_success() && class == OpClass::Read {
            // The data leaves from the request's buffer; the request is freed once written.
            self.reqs[idx].state = ReqState::Sending;
            let r = Some(idx as u16);
            let success = self.read_ends_with_success();
            Self::send_c2h(
                &mut self.out,
                &self.cfg,
                cid,
                &self.reqs[idx].buf[..len],
                r,
                success,
            );
            return self.read_data_queued(cid, success, ctx);
        }
        self.free_req(idx);
        self.respond(cid, status, 0, 0, ctx);
    }

    /// A successful read's data is queued: its response is the SUCCESS flag already on the
    /// last C2HData (`success`, from [`Conn::read_ends_with_success`]), or a CapsuleResp now.
    fn read_data_queued(&mut self, cid: Cid, success: bool, ctx: &mut Ctx) {
        if success {
            self.trace_response(cid, Status::SUCCESS, ctx);
        } else {
            self.respond(cid, Status::SUCCESS, 0, 0, ctx);
        }
    }

    /// Request `idx` reads from a memory backend: its data is queued straight from the device's
    /// memory (no copy into the request's buffer; the socket's copy is the only one) and
    /// answered at once (counted done on the qpair once the response has left, as every
    /// command: [`nvm::on_wire`]). `false` (nothing done): the backend is not memory, or a data
    /// digest is on (its CRC must cover exactly the bytes sent, and another reactor may write
    /// them between the two looks); submit the read instead.
    pub(super) fn read_in_place(&mut self, idx: u16, cmd: &IoCmd, ctx: &mut Ctx) -> bool {
        if self.cfg.ddgst {
            return false;
        }
        let Some(subsys) = self.subsys.as_deref() else {
            return false;
        };
        let Some((off, data)) = nvm::read_in_place(cmd, subsys, ctx) else {
            return false;
        };
        let i = usize::from(idx);
        let r = &mut self.reqs[i];
        // A fresh stamp: nothing else refreshes the clock between the capsule's arrival and
        // this answer (no backend poll), and the request's latency and stages need one.
        r.t_submit = ctx.trace.refresh();
        r.state = ReqState::Sending;
        r.mem_off = Some(off);
        let (cid, t0, slot) = (r.cid, r.t0, self.slot);
        ctx.trace.with(|w| {
            w.tp(
                TP_BACKEND_SUBMITTED,
                slot,
                cid.0,
                cmd.slba,
                u64::from(cmd.len),
            );
            w.tp(TP_BACKEND_COMPLETED, slot, cid.0, 0, 0);
        });
        let status = nvm::completed(ctx, OpClass::Read, t0, r.t_submit, Ok(()));
        debug_assert!(status.is_success());
        self.cur = (t0, TraceClass::Read, u64::from(cmd.len));
        let success = self.read_ends_with_success();
        Self::send_c2h(&mut self.out, &self.cfg, cid, data, Some(idx), success);
        self.read_data_queued(cid, success, ctx);
        true
    }

    /// Writes pending output. Returns whether bytes moved.
    pub fn flush(&mut self, ctx: &mut Ctx) -> bool {
        let (reqs, subsys) = (&self.reqs, self.subsys.as_deref());
        let data_of = |i: u16| -> &[u8] {
            let r = &reqs[usize::from(i)];
            match r.mem_off {
                // A read sent from the device's memory (`read_in_place`); the namespace and its
                // memory live as long as the subsystem this connection holds.
                Some(off) => subsys
                    .and_then(|s| s.namespace_slot(r.io.ns_index as u32))
                    .and_then(|n| n.bdev.memory())
                    .and_then(|m| m.get(off..off + r.io.len as usize))
                    .unwrap_or(&r.buf),
                None => &r.buf,
            }
        };
        let moved = match self.out.write_to(&self.stream, data_of) {
            Ok(n) => n > 0,
            Err(_) => {
                self.transition(ConnEvent::PeerGone, ctx);
                return true;
            }
        };
        if self.out.has_sent() {
            // The write just returned: that is when these responses left.
            ctx.trace.refresh();
            let (out, slot) = (&mut self.out, self.slot);
            // One borrow of the writers for the whole batch.
            ctx.trace.with(|w| {
                while let Some((cid, resp)) = out.pop_sent() {
                    w.tp(TP_RESPONSE_SENT, slot, cid, 0, 0);
                    nvm::on_wire_in(w, slot, &resp);
                }
            });
            while out.pop_sent().is_some() {} // only if the writers were not there
        }
        let mut freed = std::mem::take(&mut self.freed_scratch);
        freed.extend(self.out.take_freed());
        for &i in &freed {
            self.free_req(usize::from(i));
        }
        freed.clear();
        self.freed_scratch = freed;
        if self.out.is_empty() && self.state == ConnState::Disconnecting {
            self.transition(ConnEvent::Drained, ctx);
        }
        if self.state == ConnState::Disconnecting
            && self.drain_deadline.is_some_and(|d| ctx.now >= d)
        {
            self.transition(ConnEvent::Drained, ctx);
        }
        moved
    }

    /// Timer work: keep-alive expiry, controller teardown from elsewhere.
    pub fn tick(&mut self, ctx: &mut Ctx) {
        if self.state == ConnState::Closed {
            return;
        }
        // Idle half-open sockets must not hold a reactor's connection slots forever.
        if matches!(
            self.state,
            ConnState::AwaitingICReq | ConnState::AwaitingConnect
        ) && ctx.now.saturating_duration_since(self.created)
            > Duration::from_millis(u64::from(ctx.limits().handshake_timeout_ms))
        {
            ctx.trace.counters(|c| c.error(ErrorClass::Transport));
            self.transition(ConnEvent::Terminate, ctx);
            return;
        }
        if let Some(c) = &self.ctrl {
            if c.is_failed() && self.state != ConnState::Disconnecting {
                self.transition(ConnEvent::Terminate, ctx);
                return;
            }
        }
        // A namespace changed: complete a held AER with the notice.
        if let (Some(a), Some(c)) = (self.admin.as_deref_mut(), self.ctrl.as_ref()) {
            if let Some((cid, _, dw0)) = crate::controller::due_event(a, c) {
                self.cid_mark(cid, false);
                self.cur = (ctx.trace.tsc(), TraceClass::Admin, 0);
                self.respond(cid, Status::SUCCESS, dw0, 0, ctx);
            }
        }
        if crate::controller::keep_alive_tick(
            self.admin.as_deref(),
            self.subsys.as_ref(),
            self.ctrl.as_ref(),
            self.peer,
            ctx,
        ) {
            self.transition(ConnEvent::Terminate, ctx);
        }
        if self.state == ConnState::Disconnecting
            && self.drain_deadline.is_some_and(|d| ctx.now >= d)
        {
            self.transition(ConnEvent::Drained, ctx);
        }
    }

    /// Target shutdown: stop at once.
    pub fn shutdown(&mut self, ctx: &mut Ctx) {
        let _ = self.flush(ctx);
        self.transition(ConnEvent::PeerGone, ctx);
    }

    /// Called once when the reactor drops the connection: gives back what it holds elsewhere.
    pub fn release(&mut self, ctx: &mut Ctx) {
        self.transition(ConnEvent::PeerGone, ctx);
        // The request buffers go away with the connection: a backend still transferring into
        // one of them (uring) must let go first. Their completions are dropped by generation.
        if self.reqs.iter().any(|r| r.state == ReqState::AtBackend) {
            for q in ctx.bdevs.iter_mut() {
                q.quiesce();
            }
        }
        if let (Some(s), Some(c)) = (self.subsys.take(), self.ctrl.take()) {
            if self.qid == 0 {
                s.remove_controller(c.cntlid);
            } else {
                c.release_qid(self.qid);
            }
        }
        let _ = (self.id, self.gen);
    }
}

/// `recv` as a plain syscall (rustix): std's `read` goes through glibc's cancellation-point
/// wrapper, ~5 % of a QD1 reactor's samples (`__pthread_disable_asynccancel`).
#[inline]
pub(crate) fn recv_raw(s: &TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    rustix::net::recv(s, buf, rustix::net::RecvFlags::empty())
        .map(|(n, _)| n)
        .map_err(std::io::Error::from)
}

/// Where a write-like command's data is.
#[derive(Clone, Copy)]
enum H2cSource {
    InCapsule(u32),
    R2T(u32),
}
