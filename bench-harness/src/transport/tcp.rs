//! NVMe/TCP qpair: one non-blocking TCP connection, its request slots and buffers.
//!
//! Ownership: a `TcpQpair` is owned and polled by one thread. Nothing in it is shared; the hot
//! path allocates nothing (slot buffers, the receive buffer, the send staging buffer and the
//! segment list are sized at connect time and only reused).
//!
//! Sending: `submit` appends PDU headers (and digests/padding) to a staging buffer and records
//! an ordered list of segments, some of which point into slot data buffers (in-capsule write
//! data, H2CData payloads), so payload is never copied; `flush` sends all segments with
//! `writev`, resuming where the socket stopped taking bytes.
//!
//! Receiving: `poll` reads whatever is available into one large buffer (sized for at least
//! two of the largest PDUs) and frames every complete PDU with `nvme_proto::tcp::parse_pdu`,
//! copying C2HData payload into the slot buffer. A large C2HData PDU (at least
//! [`DIRECT_MIN`] bytes of data, no data digest) whose header has arrived but not its data is
//! not waited for in the receive buffer: the rest of its data is read straight into the slot
//! buffer (`readv` of the data's place and the receive buffer, so the next PDU's header comes
//! with the same call). That spares the copy into the slot and the receive buffer's compaction,
//! which otherwise moved each partial 128 KiB PDU to the buffer's front (a user-space copy
//! per I/O). A C2HData PDU with LAST_PDU|SUCCESS completes its command without a CapsuleResp.
//!
//! All PDU layouts come from `nvme_proto::tcp`.

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use nvme_proto::tcp::{
    self as ptcp, encode_capsule_cmd, encode_h2c_data_header, encode_icreq, parse_pdu, C2HData,
    H2CData, IcReq, PduConfig, PduError, PduHeader, Role,
};
use nvme_proto::{Cid, Cqe, SglDescriptor, Sqe, Status};

use super::{Completion, Dir, Qpair, QpairLimits, TransportCounters, TransportError};

/// Smallest receive buffer: large enough that one `read` picks up many completions.
const MIN_RBUF: usize = 256 * 1024;
/// Room for a data PDU's header, digests and padding beyond its payload.
const PDU_OVERHEAD: usize = 256;
/// iovecs per `writev`.
const MAX_IOV: usize = 64;
/// Smallest C2HData payload read straight into its slot buffer once its header has arrived.
/// Smaller PDUs are left to the receive buffer, where one `recv` picks up many of them.
pub const DIRECT_MIN: u32 = 16 * 1024;

/// How to set up a qpair.
#[derive(Debug, Clone)]
pub struct TcpParams {
    pub addr: SocketAddr,
    pub qid: u16,
    /// Number of request slots.
    pub depth: u16,
    /// Slot data buffer size (largest command data).
    pub max_data: u32,
    /// Largest write sent in-capsule.
    pub in_capsule: u32,
    pub header_digest: bool,
    pub data_digest: bool,
    /// Copy C2HData payload into the slot buffers. Off for benchmark runs that never look at
    /// read data: the bytes are still received (one kernel-to-user copy, as any initiator
    /// pays) but not copied a second time.
    pub keep_read_data: bool,
    /// SO_SNDBUF and SO_RCVBUF (None: kernel autotuning).
    pub socket_buffer: Option<usize>,
    /// For connect and the ICReq/ICResp exchange.
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Free,
    Allocated,
    Submitted,
}

#[derive(Debug)]
struct Slot {
    state: SlotState,
    dir: Dir,
    len: u32,
    /// C2H payload bytes received so far.
    received: u32,
    /// A C2HData PDU of this command failed its data digest.
    digest_error: bool,
    buf: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
enum Seg {
    /// Bytes of the staging buffer.
    Own { start: u32, end: u32 },
    /// Bytes of a slot's data buffer.
    Slot { cid: u16, start: u32, end: u32 },
}

/// A C2HData PDU whose remaining data is being read straight into its slot's buffer.
#[derive(Debug, Clone, Copy)]
struct Direct {
    cid: u16,
    /// Where the next data byte goes in the slot buffer.
    at: u32,
    /// Data bytes still to come.
    left: u32,
    /// The PDU's data length and SUCCESS flag, applied when the last byte has arrived.
    datal: u32,
    success: bool,
}

impl Seg {
    fn len(&self) -> usize {
        match *self {
            Seg::Own { start, end } | Seg::Slot { start, end, .. } => (end - start) as usize,
        }
    }
}

/// An NVMe/TCP queue pair.
pub struct TcpQpair {
    sock: TcpStream,
    qid: u16,
    limits: QpairLimits,
    keep_read_data: bool,
    cfg: PduConfig,
    slots: Vec<Slot>,
    free: Vec<u16>,
    outstanding: usize,
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    /// The C2HData PDU being received into its slot, if any (the receive buffer is then empty
    /// but for what follows that PDU).
    direct: Option<Direct>,
    sbuf: Vec<u8>,
    segs: Vec<Seg>,
    seg_head: usize,
    seg_off: usize,
    counters: TransportCounters,
}

impl std::fmt::Debug for TcpQpair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpQpair")
            .field("qid", &self.qid)
            .field("outstanding", &self.outstanding)
            .finish_non_exhaustive()
    }
}

fn io_err(op: &'static str) -> impl FnOnce(std::io::Error) -> TransportError {
    move |source| TransportError::Io { op, source }
}

fn pdu_err(e: PduError) -> TransportError {
    TransportError::protocol(e.to_string())
}

fn term_reason(fes: u16, fei: u32) -> String {
    let what = match ptcp::Fes::from_u16(fes) {
        Some(f) => format!("{f:?}"),
        None => "unknown".to_string(),
    };
    format!("fes {fes:#x} ({what}), fei {fei:#x}")
}

impl TcpQpair {
    /// Connects, exchanges ICReq/ICResp (negotiating digests) and returns a non-blocking qpair.
    pub fn connect(p: &TcpParams) -> Result<TcpQpair, TransportError> {
        let sock = TcpStream::connect_timeout(&p.addr, p.timeout).map_err(|source| {
            TransportError::Connect {
                addr: p.addr,
                source,
            }
        })?;
        sock.set_nodelay(true)
            .map_err(io_err("setsockopt TCP_NODELAY"))?;
        if let Some(n) = p.socket_buffer {
            use rustix::net::sockopt;
            sockopt::set_socket_send_buffer_size(&sock, n)
                .map_err(|e| io_err("setsockopt SO_SNDBUF")(e.into()))?;
            sockopt::set_socket_recv_buffer_size(&sock, n)
                .map_err(|e| io_err("setsockopt SO_RCVBUF")(e.into()))?;
        }
        sock.set_read_timeout(Some(p.timeout))
            .map_err(io_err("setsockopt SO_RCVTIMEO"))?;
        let icreq = IcReq {
            pfv: 0,
            hpda: 0,
            hdgst: p.header_digest,
            ddgst: p.data_digest,
            maxr2t: 0,
        };
        let mut req = [0u8; ptcp::IC_LEN];
        let n = encode_icreq(&icreq, &mut req).map_err(|e| TransportError::Internal {
            what: format!("encode ICReq: {e}"),
        })?;
        (&sock).write_all(&req[..n]).map_err(io_err("send ICReq"))?;
        let initial = PduConfig::initial(Role::Host);
        let mut resp = [0u8; 512];
        let mut got = 0;
        let deadline = Instant::now() + p.timeout;
        let icresp = loop {
            match parse_pdu(&resp[..got], &initial) {
                Ok(Some(v)) => match v.header {
                    PduHeader::IcResp(r) => break r,
                    PduHeader::C2HTermReq(t) => {
                        return Err(TransportError::TermReq {
                            reason: term_reason(t.fes, t.fei),
                        })
                    }
                    h => {
                        return Err(TransportError::protocol(format!(
                            "expected ICResp, got {:?}",
                            h.pdu_type()
                        )))
                    }
                },
                Ok(None) => {}
                Err(e) => return Err(pdu_err(e)),
            }
            if got == resp.len() {
                return Err(TransportError::protocol("oversized answer to ICReq"));
            }
            match (&sock).read(&mut resp[got..]) {
                Ok(0) => return Err(TransportError::Closed),
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) || Instant::now() > deadline =>
                {
                    return Err(TransportError::Timeout {
                        what: "ICResp",
                        timeout: p.timeout,
                    })
                }
                Err(e) => return Err(io_err("receive ICResp")(e)),
            }
        };
        // The controller may decline a digest; it must not enable one the host did not ask for.
        if (icresp.hdgst && !p.header_digest) || (icresp.ddgst && !p.data_digest) {
            return Err(TransportError::protocol(
                "ICResp enables a digest the host did not ask for",
            ));
        }
        let mut cfg = PduConfig::negotiated(Role::Host, &icreq, &icresp);
        cfg.max_c2h_data = p.max_data;
        sock.set_nonblocking(true)
            .map_err(io_err("set non-blocking"))?;
        let depth = usize::from(p.depth.max(1));
        let slots = (0..depth)
            .map(|_| Slot {
                state: SlotState::Free,
                dir: Dir::None,
                len: 0,
                received: 0,
                digest_error: false,
                buf: vec![0u8; p.max_data as usize],
            })
            .collect();
        let rbuf_size = MIN_RBUF.max(2 * (p.max_data as usize + PDU_OVERHEAD));
        Ok(TcpQpair {
            sock,
            qid: p.qid,
            limits: QpairLimits {
                max_data: p.max_data,
                in_capsule: p.in_capsule,
                maxh2cdata: icresp.maxh2cdata,
                header_digest: icresp.hdgst,
                data_digest: icresp.ddgst,
            },
            keep_read_data: p.keep_read_data,
            cfg,
            slots,
            free: (0..depth as u16).rev().collect(),
            outstanding: 0,
            rbuf: vec![0u8; rbuf_size],
            rstart: 0,
            rend: 0,
            direct: None,
            sbuf: Vec::with_capacity(depth * 128 + 16 * 1024),
            segs: Vec::with_capacity(depth * 8 + 16),
            seg_head: 0,
            seg_off: 0,
            counters: TransportCounters::default(),
        })
    }

    /// Records staging bytes `start..` as the next segment (merged with a directly preceding
    /// unsent staging segment: fewer iovecs).
    fn push_own(&mut self, start: usize) {
        let end = self.sbuf.len() as u32;
        let start = start as u32;
        if start == end {
            return;
        }
        let last_unsent = self.segs.len() > self.seg_head;
        if let Some(Seg::Own { end: e, .. }) = self.segs.last_mut() {
            if *e == start && last_unsent {
                *e = end;
                return;
            }
        }
        self.segs.push(Seg::Own { start, end });
    }

    /// Grows the staging buffer by `n` zero bytes and returns where they start.
    fn stage(&mut self, n: usize) -> usize {
        let start = self.sbuf.len();
        self.sbuf.resize(start + n, 0);
        start
    }

    /// Queues H2CData PDUs answering an R2T for `cid`.
    fn queue_h2c(
        &mut self,
        cid: u16,
        ttag: u16,
        r2to: u32,
        r2tl: u32,
    ) -> Result<(), TransportError> {
        let slot = self
            .slots
            .get(usize::from(cid))
            .ok_or_else(|| TransportError::protocol(format!("R2T for unknown cid {cid}")))?;
        if slot.state != SlotState::Submitted || slot.dir != Dir::ToController {
            return Err(TransportError::protocol(format!(
                "R2T for cid {cid}, which is not a write in flight"
            )));
        }
        let end = r2to
            .checked_add(r2tl)
            .filter(|&e| e <= slot.len)
            .ok_or_else(|| {
                TransportError::protocol(format!(
                    "R2T for cid {cid} asks for bytes {r2to}+{r2tl} of a {}-byte write",
                    slot.len
                ))
            })?;
        let max = self.limits.maxh2cdata.max(ptcp::MIN_MAXH2CDATA);
        let mut off = r2to;
        while off < end {
            let chunk = (end - off).min(max);
            let h = H2CData {
                cccid: Cid(cid),
                ttag,
                datao: off,
                datal: chunk,
                last: off + chunk == end,
            };
            let start = self.stage(PDU_OVERHEAD);
            let layout =
                encode_h2c_data_header(&h, &self.cfg, &mut self.sbuf[start..]).map_err(|e| {
                    TransportError::Internal {
                        what: format!("encode H2CData: {e}"),
                    }
                })?;
            self.sbuf.truncate(start + layout.header_len);
            self.push_own(start);
            self.counters.pdus_sent += 1;
            self.segs.push(Seg::Slot {
                cid,
                start: off,
                end: off + chunk,
            });
            if layout.ddgst {
                let buf = &self.slots[usize::from(cid)].buf;
                let d = ptcp::digest(&buf[off as usize..(off + chunk) as usize]);
                let start = self.sbuf.len();
                self.sbuf.extend_from_slice(&d.to_le_bytes());
                self.push_own(start);
            }
            off += chunk;
        }
        Ok(())
    }

    fn finish(&mut self, cid: u16) {
        if let Some(s) = self.slots.get_mut(usize::from(cid)) {
            if s.state == SlotState::Submitted {
                s.state = SlotState::Free;
                self.outstanding -= 1;
                self.free.push(cid);
            }
        }
    }

    /// Reads what the socket has into the receive buffer. Returns `(got, full)`: whether new
    /// bytes arrived, and whether the read filled all free space (more may be waiting).
    fn fill(&mut self) -> Result<(bool, bool), TransportError> {
        if self.rstart == self.rend {
            self.rstart = 0;
            self.rend = 0;
        } else if self.rbuf.len() - self.rend < self.rbuf.len() / 4 {
            // Keep room for a whole PDU: move the partial one to the front.
            self.rbuf.copy_within(self.rstart..self.rend, 0);
            self.counters.bytes_moved += (self.rend - self.rstart) as u64;
            self.rend -= self.rstart;
            self.rstart = 0;
        }
        if let Some(d) = self.direct.filter(|d| d.left > 0) {
            return self.fill_direct(d);
        }
        loop {
            let space = self.rbuf.len() - self.rend;
            if space == 0 {
                // parse_pdu bounds every PDU by max_c2h_data, which fits twice: unreachable
                // unless a limit is wrong, and then it must not spin.
                return Err(TransportError::protocol(
                    "PDU larger than the receive buffer",
                ));
            }
            self.counters.recv_calls += 1;
            // A plain syscall (rustix): std's read adds glibc's cancellation-point wrapper.
            match rustix::net::recv(
                &self.sock,
                &mut self.rbuf[self.rend..],
                rustix::net::RecvFlags::empty(),
            )
            .map(|(n, _)| n)
            .map_err(std::io::Error::from)
            {
                Ok(0) => return Err(TransportError::Closed),
                Ok(n) => {
                    self.rend += n;
                    self.counters.bytes_received += n as u64;
                    return Ok((true, n == space));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.counters.recv_empty += 1;
                    return Ok((false, false));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err("receive")(e)),
            }
        }
    }

    /// `fill` while a C2HData PDU's data is read into its slot: one `readv` of the data's place
    /// and the receive buffer's free space (the PDUs that follow).
    fn fill_direct(&mut self, mut d: Direct) -> Result<(bool, bool), TransportError> {
        let (at, left) = (d.at as usize, d.left as usize);
        loop {
            let Some(dst) = self.slots[usize::from(d.cid)].buf.get_mut(at..at + left) else {
                return Err(TransportError::Internal {
                    what: format!("direct receive past cid {}'s buffer", d.cid),
                });
            };
            let mut iov = [
                IoSliceMut::new(dst),
                IoSliceMut::new(&mut self.rbuf[self.rend..]),
            ];
            let space = left + iov[1].len();
            self.counters.recv_calls += 1;
            match rustix::io::readv(&self.sock, &mut iov).map_err(std::io::Error::from) {
                Ok(0) => return Err(TransportError::Closed),
                Ok(n) => {
                    let into_slot = n.min(left);
                    d.at += into_slot as u32;
                    d.left -= into_slot as u32;
                    self.direct = Some(d);
                    self.rend += n - into_slot;
                    self.counters.bytes_received += n as u64;
                    return Ok((true, n == space));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.counters.recv_empty += 1;
                    return Ok((false, false));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err("receive")(e)),
            }
        }
    }

    /// The slot bytes a C2HData PDU's data goes to, after checking that `cid` is a read in
    /// flight and the data lies within it.
    fn c2h_dst_of<'s>(slots: &'s mut [Slot], h: &C2HData) -> Result<&'s mut [u8], TransportError> {
        let cid = h.cccid.0;
        let slot = slots
            .get_mut(usize::from(cid))
            .ok_or_else(|| TransportError::protocol(format!("C2HData for unknown cid {cid}")))?;
        if slot.state != SlotState::Submitted || slot.dir != Dir::FromController {
            return Err(TransportError::protocol(format!(
                "C2HData for cid {cid}, which is not a read in flight"
            )));
        }
        let at = h.datao as usize;
        let len = slot.len;
        slot.buf
            .get_mut(at..at + h.datal as usize)
            .filter(|_| h.datao + h.datal <= len)
            .ok_or_else(|| {
                TransportError::protocol(format!(
                    "C2HData for cid {cid} carries bytes {}+{} of a {len}-byte read",
                    h.datao, h.datal
                ))
            })
    }

    /// With an incomplete PDU at the front of the receive buffer: if it is a large C2HData
    /// whose header has arrived, takes it out of the buffer (the data present so far goes to
    /// the slot) and has `fill` read the rest into the slot. Returns whether it did.
    fn start_direct(&mut self) -> Result<bool, TransportError> {
        let buf = &self.rbuf[self.rstart..self.rend];
        // parse_pdu just returned "incomplete", and it checks the head first: no error here.
        let Ok(Some(head)) = ptcp::parse_pdu_head(buf, &self.cfg) else {
            return Ok(false);
        };
        let PduHeader::C2HData(h) = head.header else {
            return Ok(false);
        };
        // A data digest is checked over the whole data from the receive buffer.
        if head.ddgst || h.datal < DIRECT_MIN || buf.len() < head.data_start {
            return Ok(false);
        }
        let present = buf.len() - head.data_start;
        let (keep, from) = (self.keep_read_data, self.rstart + head.data_start);
        let dst = Self::c2h_dst_of(&mut self.slots, &h)?;
        if keep {
            dst[..present].copy_from_slice(&self.rbuf[from..self.rend]);
        }
        self.counters.pdus_received += 1;
        self.counters.pdus_direct += 1;
        self.rstart = self.rend;
        self.direct = Some(Direct {
            cid: h.cccid.0,
            at: h.datao + present as u32,
            left: h.datal - present as u32,
            datal: h.datal,
            success: h.success,
        });
        Ok(true)
    }

    /// Best effort: tell the target why we give up (H2CTermReq), as the spec asks.
    fn send_term_req(&mut self, e: &PduError) {
        let mut out = [0u8; ptcp::TERM_REQ_MAX_LEN];
        let rx = &self.rbuf[self.rstart..self.rend];
        if let Ok(n) = ptcp::encode_term_req_for(e, Role::Host, rx, &mut out) {
            if n > 0 {
                let _ = (&self.sock).write(&out[..n]);
            }
        }
    }

    /// Frames the PDUs in the receive buffer; calls `on_done` for completions.
    fn parse<F: FnMut(Completion<'_>)>(
        &mut self,
        on_done: &mut F,
    ) -> Result<usize, TransportError> {
        let mut done = 0;
        loop {
            if let Some(d) = self.direct {
                if d.left > 0 {
                    return Ok(done);
                }
                // The directly received PDU is whole: account for it as `C2HData` below does.
                self.direct = None;
                self.slots[usize::from(d.cid)].received += d.datal;
                if d.success {
                    done += self.complete(Cqe::new(Cid(d.cid), Status::SUCCESS), on_done)?;
                }
            }
            let view = parse_pdu(&self.rbuf[self.rstart..self.rend], &self.cfg);
            let v = match view {
                Ok(Some(v)) => v,
                Ok(None) => {
                    if self.start_direct()? {
                        continue;
                    }
                    return Ok(done);
                }
                Err(PduError::DataDigest { cccid, pdu_len, .. }) => {
                    // The command fails; the connection lives on.
                    if let Some(s) = self.slots.get_mut(usize::from(cccid.0)) {
                        s.digest_error = true;
                    }
                    self.rstart += pdu_len;
                    continue;
                }
                Err(e) => {
                    self.send_term_req(&e);
                    return Err(pdu_err(e));
                }
            };
            let len = v.len;
            self.counters.pdus_received += 1;
            match v.header {
                PduHeader::C2HData(h) => {
                    let cid = h.cccid.0;
                    let dst = Self::c2h_dst_of(&mut self.slots, &h)?;
                    if self.keep_read_data {
                        dst.copy_from_slice(v.data);
                    }
                    self.slots[usize::from(cid)].received += h.datal;
                    self.rstart += len;
                    if h.success {
                        let cqe = Cqe::new(Cid(cid), Status::SUCCESS);
                        done += self.complete(cqe, on_done)?;
                    }
                }
                PduHeader::CapsuleResp(cqe) => {
                    self.rstart += len;
                    done += self.complete(cqe, on_done)?;
                }
                PduHeader::R2T(r) => {
                    self.rstart += len;
                    self.queue_h2c(r.cccid.0, r.ttag, r.r2to, r.r2tl)?;
                }
                PduHeader::C2HTermReq(t) => {
                    return Err(TransportError::TermReq {
                        reason: term_reason(t.fes, t.fei),
                    });
                }
                h => {
                    return Err(TransportError::protocol(format!(
                        "unexpected {:?} PDU on an established queue",
                        h.pdu_type()
                    )))
                }
            }
        }
    }

    fn complete<F: FnMut(Completion<'_>)>(
        &mut self,
        mut cqe: Cqe,
        on_done: &mut F,
    ) -> Result<usize, TransportError> {
        let cid = cqe.cid.0;
        let Some(slot) = self.slots.get_mut(usize::from(cid)) else {
            return Err(TransportError::protocol(format!(
                "completion for unknown cid {cid}"
            )));
        };
        if slot.state != SlotState::Submitted {
            return Err(TransportError::protocol(format!(
                "completion for cid {cid}, which is not in flight"
            )));
        }
        if slot.digest_error {
            slot.digest_error = false;
            cqe.status = Status::TRANSIENT_TRANSPORT_ERROR;
        }
        let data: &[u8] = if slot.dir == Dir::FromController {
            if cqe.status.is_success() && slot.received != slot.len {
                return Err(TransportError::protocol(format!(
                    "successful read cid {cid} delivered {} of {} bytes",
                    slot.received, slot.len
                )));
            }
            &slot.buf[..slot.len as usize]
        } else {
            &[]
        };
        on_done(Completion {
            cid: Cid(cid),
            cqe,
            data,
        });
        self.finish(cid);
        Ok(1)
    }
}

impl Qpair for TcpQpair {
    fn qid(&self) -> u16 {
        self.qid
    }

    fn limits(&self) -> QpairLimits {
        self.limits
    }

    fn slots(&self) -> usize {
        self.slots.len()
    }

    fn outstanding(&self) -> usize {
        self.outstanding
    }

    fn counters(&self) -> TransportCounters {
        self.counters
    }

    fn try_alloc(&mut self) -> Option<Cid> {
        let cid = self.free.pop()?;
        if let Some(s) = self.slots.get_mut(usize::from(cid)) {
            s.state = SlotState::Allocated;
        }
        Some(Cid(cid))
    }

    fn release(&mut self, cid: Cid) {
        if let Some(s) = self.slots.get_mut(usize::from(cid.0)) {
            if s.state == SlotState::Allocated {
                s.state = SlotState::Free;
                self.free.push(cid.0);
            }
        }
    }

    fn data_mut(&mut self, cid: Cid) -> &mut [u8] {
        match self.slots.get_mut(usize::from(cid.0)) {
            Some(s) => &mut s.buf,
            None => &mut [],
        }
    }

    fn submit(&mut self, cid: Cid, mut sqe: Sqe, dir: Dir, len: u32) -> Result<(), TransportError> {
        let c = cid.0;
        let max = self.limits.max_data;
        let in_capsule_max = self.limits.in_capsule;
        let slot = self
            .slots
            .get_mut(usize::from(c))
            .filter(|s| s.state == SlotState::Allocated)
            .ok_or_else(|| TransportError::Internal {
                what: format!("submit on cid {c}, which is not allocated"),
            })?;
        if len > max {
            return Err(TransportError::Internal {
                what: format!("{len} bytes exceed the {max}-byte slot"),
            });
        }
        let dir = if len == 0 { Dir::None } else { dir };
        let in_capsule = dir == Dir::ToController && len <= in_capsule_max;
        sqe.cid = cid;
        sqe.dptr = match dir {
            Dir::None => SglDescriptor::tcp_transport(0),
            _ if in_capsule => SglDescriptor::in_capsule(0, len),
            _ => SglDescriptor::tcp_transport(len),
        };
        slot.state = SlotState::Submitted;
        slot.dir = dir;
        slot.len = len;
        slot.received = 0;
        slot.digest_error = false;
        self.outstanding += 1;
        // In-capsule data is copied behind the header (at most IOCCSZ*16 bytes, small).
        let data_len = if in_capsule { len as usize } else { 0 };
        let start = self.stage(PDU_OVERHEAD + data_len);
        let (sbuf, slots) = (&mut self.sbuf, &self.slots);
        let data = &slots[usize::from(c)].buf[..data_len];
        let n = encode_capsule_cmd(&sqe, data, &self.cfg, &mut sbuf[start..]).map_err(|e| {
            TransportError::Internal {
                what: format!("encode CapsuleCmd: {e}"),
            }
        })?;
        self.sbuf.truncate(start + n);
        self.push_own(start);
        self.counters.pdus_sent += 1;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), TransportError> {
        while self.seg_head < self.segs.len() {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let mut n = 0;
            for (i, seg) in self.segs[self.seg_head..].iter().take(MAX_IOV).enumerate() {
                let skip = if i == 0 { self.seg_off } else { 0 };
                let bytes: &[u8] = match *seg {
                    Seg::Own { start, end } => &self.sbuf[start as usize..end as usize],
                    Seg::Slot { cid, start, end } => {
                        &self.slots[usize::from(cid)].buf[start as usize..end as usize]
                    }
                };
                iov[i] = IoSlice::new(&bytes[skip..]);
                n = i + 1;
            }
            self.counters.send_calls += 1;
            let offered: usize = iov[..n].iter().map(|s| s.len()).sum();
            let written =
                match rustix::io::writev(&self.sock, &iov[..n]).map_err(std::io::Error::from) {
                    Ok(0) => return Err(TransportError::Closed),
                    Ok(w) => w,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        self.counters.send_partial += 1;
                        return Ok(());
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(io_err("send")(e)),
                };
            self.counters.bytes_sent += written as u64;
            if written < offered {
                self.counters.send_partial += 1;
            }
            let mut left = written;
            while left > 0 && self.seg_head < self.segs.len() {
                let rest = self.segs[self.seg_head].len() - self.seg_off;
                if left >= rest {
                    left -= rest;
                    self.seg_head += 1;
                    self.seg_off = 0;
                } else {
                    self.seg_off += left;
                    left = 0;
                }
            }
        }
        self.segs.clear();
        self.sbuf.clear();
        self.seg_head = 0;
        self.seg_off = 0;
        Ok(())
    }

    fn send_pending(&self) -> bool {
        self.seg_head < self.segs.len()
    }

    fn poll<F: FnMut(Completion<'_>)>(&mut self, mut on_done: F) -> Result<usize, TransportError> {
        let mut done = 0;
        // One read normally drains the socket; read again only when it filled the buffer.
        loop {
            let (got, full) = self.fill()?;
            if got {
                done += self.parse(&mut on_done)?;
            }
            if !full {
                return Ok(done);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    use nvme_proto::tcp::{self as ptcp, encode_c2h_data, encode_icresp, parse_pdu, C2HData};
    use nvme_proto::tcp::{IcResp, PduConfig, PduHeader, Role};
    use nvme_proto::{Cid, Sqe};

    use super::{TcpParams, TcpQpair};
    use crate::transport::{Completion, Dir, Qpair};

    /// A controller end that answers ICReq by hand, so the test decides how the bytes of each
    /// PDU arrive.
    fn pair() -> (TcpQpair, TcpStream, PduConfig) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().expect("accept");
            let mut req = [0u8; ptcp::IC_LEN];
            s.read_exact(&mut req).expect("icreq");
            let cfg0 = PduConfig::initial(Role::Controller);
            let Ok(Some(v)) = parse_pdu(&req, &cfg0) else {
                panic!("icreq does not parse")
            };
            let PduHeader::IcReq(r) = v.header else {
                panic!("not an icreq")
            };
            let resp = IcResp {
                pfv: 0,
                cpda: 0,
                hdgst: false,
                ddgst: false,
                maxh2cdata: 131072,
            };
            let mut b = [0u8; ptcp::IC_LEN];
            let n = encode_icresp(&resp, &mut b).expect("icresp");
            s.write_all(&b[..n]).expect("send icresp");
            (s, PduConfig::negotiated(Role::Controller, &r, &resp))
        });
        let q = TcpQpair::connect(&TcpParams {
            addr,
            qid: 1,
            depth: 4,
            max_data: 131072,
            in_capsule: 0,
            header_digest: false,
            data_digest: false,
            keep_read_data: true,
            socket_buffer: None,
            timeout: Duration::from_secs(10),
        })
        .expect("connect");
        let (s, cfg) = server.join().expect("server thread");
        (q, s, cfg)
    }

    /// Polls until the qpair has received `bytes` in total (bounded), returning the cids
    /// completed meanwhile and whether their data matched `want`.
    fn poll_until(q: &mut TcpQpair, bytes: u64, want: &[u8]) -> Vec<(u16, bool)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut done = Vec::new();
        while q.counters.bytes_received < bytes || q.direct.is_some_and(|d| d.left == 0) {
            q.poll(|c: Completion<'_>| done.push((c.cid.0, c.data == want)))
                .expect("poll");
            assert!(
                Instant::now() < deadline,
                "bytes never arrived: {:?}",
                q.counters
            );
        }
        done
    }

    #[test]
    fn large_c2h_data_is_received_straight_into_the_slot() {
        let (mut q, mut s, cfg) = pair();
        let cid = q.try_alloc().expect("slot");
        let sqe = Sqe::default();
        q.submit(cid, sqe, Dir::FromController, 65536)
            .expect("submit");
        q.flush().expect("flush");
        let mut cmd = [0u8; ptcp::CAPSULE_CMD_HLEN];
        s.read_exact(&mut cmd).expect("capsule");
        let want: Vec<u8> = (0..65536u32).map(|i| (i * 7 + i / 251) as u8).collect();
        // Two 32 KiB C2HData PDUs, the second ending the read with SUCCESS.
        let mut wire = Vec::new();
        for (k, part) in want.chunks(32768).enumerate() {
            let h = C2HData {
                cccid: Cid(cid.0),
                datao: (k * 32768) as u32,
                datal: 32768,
                last: k == 1,
                success: k == 1,
            };
            let mut out = vec![0u8; 32768 + 64];
            let n = encode_c2h_data(&h, part, &cfg, &mut out).expect("encode");
            wire.extend_from_slice(&out[..n]);
        }
        let pdu = wire.len() / 2;
        // The first PDU's header and a little data; then the rest of it with the second's
        // header and a little data (one readv: the slot, then the receive buffer); then the rest.
        let cuts = [
            0,
            ptcp::DATA_HLEN + 1000,
            pdu + ptcp::DATA_HLEN + 500,
            wire.len(),
        ];
        let mut completions = Vec::new();
        for w in cuts.windows(2) {
            s.write_all(&wire[w[0]..w[1]]).expect("send");
            completions.extend(poll_until(&mut q, w[1] as u64, &want));
        }
        assert_eq!(
            completions,
            vec![(cid.0, true)],
            "one completion, data intact"
        );
        let c = q.counters;
        assert_eq!(c.pdus_received, 2, "{c:?}");
        assert_eq!(c.pdus_direct, 2, "both PDUs arrived in parts: {c:?}");
        assert_eq!(
            c.bytes_moved, 0,
            "no compaction of the receive buffer: {c:?}"
        );
        assert_eq!(q.outstanding(), 0);
    }
}
