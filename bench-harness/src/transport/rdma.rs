//! NVMe/RDMA qpair: one RC queue pair set up with rdma-cm, its request slots and buffers.
//!
//! Ownership: an `RdmaQpair` is owned and polled by one thread; it owns its event channel, cm
//! id, protection domain, completion queue (polled, no completion channel), queue pair and one
//! registered region holding every slot's data buffer, command capsule and response buffer.
//! Nothing on the hot path allocates: work requests are built on the stack.
//!
//! Commands: `submit` writes the SQE (and in-capsule write data) into the slot's capsule buffer
//! and describes other data with a keyed SGL pointing at the slot's data buffer (the target
//! RDMA READs write data from it and RDMA WRITEs read data into it); `flush` posts the queued
//! SENDs as one chain (one doorbell). `poll` reaps the CQ: a RECV holds a CQE (the receive is
//! posted again at once), a SEND completion frees the capsule buffer; a slot completes when it
//! has both. The NVMe/RDMA private data of the CM request carries the queue id and sizes.
//!
//! This module is the crate's only `unsafe` (librdmacm and libibverbs calls through
//! `rdma-sys`); every block says why it holds.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::net::SocketAddr;
use std::ptr;
use std::time::{Duration, Instant};

use nvme_proto::rdma::{CmReject, CmRequest, CM_PRIVATE_DATA_SIZE};
use nvme_proto::{Cid, Cqe, SglDescriptor, Sqe};
use rdma_sys::*;

use super::{Completion, Dir, Qpair, QpairLimits, TransportCounters, TransportError};

/// How to set up a qpair.
#[derive(Debug, Clone)]
pub struct RdmaParams {
    pub addr: SocketAddr,
    pub qid: u16,
    /// Number of request slots (= queue entries).
    pub depth: u16,
    /// Slot data buffer size.
    pub max_data: u32,
    /// Largest write sent in-capsule (0 on the admin queue before IOCCSZ is known).
    pub in_capsule: u32,
    /// For address/route resolution and the connection handshake.
    pub timeout: Duration,
    /// Deliberate protocol faults, for the lab's fault scenarios.
    pub fault: Option<RdmaFault>,
}

/// A deliberate fault (lab scenarios: the target must drop that connection and serve the rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RdmaFault {
    /// Keyed SGLs carry a wrong rkey: the target's RDMA READ/WRITE fails (remote access error).
    BadRkey,
    /// The CM request carries record format 7: the target must reject the connection.
    BadPrivateData,
}

impl RdmaFault {
    /// From `RINGSIDE_PERF_RDMA_FAULT` (`bad-rkey`, `bad-private-data`); anything else: none.
    pub fn from_env() -> Option<RdmaFault> {
        match std::env::var("RINGSIDE_PERF_RDMA_FAULT").ok()?.as_str() {
            "bad-rkey" => Some(RdmaFault::BadRkey),
            "bad-private-data" => Some(RdmaFault::BadPrivateData),
            _ => None,
        }
    }
}

fn io_err(op: &'static str) -> TransportError {
    TransportError::Io {
        op,
        source: std::io::Error::last_os_error(),
    }
}

fn rc_err(op: &'static str, rc: i32) -> TransportError {
    TransportError::Io {
        op,
        source: if rc > 0 {
            std::io::Error::from_raw_os_error(rc)
        } else {
            std::io::Error::last_os_error()
        },
    }
}

const WR_SEND: u64 = 1;
const WR_RECV: u64 = 2;
const POLL_BATCH: usize = 32;
const SQE_LEN: usize = 64;
const CQE_LEN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Free,
    Allocated,
    Submitted,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    state: SlotState,
    dir: Dir,
    len: u32,
    /// Capsule SEND posted and not completed.
    sending: bool,
    /// The response, once received.
    cqe: Option<Cqe>,
}

/// One NVMe/RDMA queue pair.
pub struct RdmaQpair {
    qid: u16,
    limits: QpairLimits,
    slots: Vec<Slot>,
    free: Vec<u16>,
    outstanding: usize,
    /// Capsules submitted and not yet posted (posted by `flush`).
    pending: Vec<u16>,
    counters: TransportCounters,
    ch: *mut rdma_event_channel,
    id: *mut rdma_cm_id,
    pd: *mut ibv_pd,
    cq: *mut ibv_cq,
    mr: *mut ibv_mr,
    base: *mut u8,
    len: usize,
    data_off: usize,
    cap_off: usize,
    /// Capsule buffer size (SQE + in-capsule data).
    cap_len: usize,
    rsp_off: usize,
    wcs: [ibv_wc; POLL_BATCH],
    reposts: Vec<u32>,
    /// XORed into the rkey of keyed SGLs (0 normally; see [`RdmaFault::BadRkey`]).
    rkey_fault: u32,
}

impl std::fmt::Debug for RdmaQpair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RdmaQpair").field("qid", &self.qid).finish()
    }
}

// SAFETY: every verbs object is used only by the thread that owns the qpair (`Qpair` is moved
// to its worker before use, never shared); librdmacm/libibverbs have no thread affinity.
unsafe impl Send for RdmaQpair {}

fn sockaddr_of(addr: SocketAddr) -> libc::sockaddr_storage {
    // SAFETY: plain old data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            let sin = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_scope_id = a.scope_id();
        }
    }
    ss
}

impl RdmaQpair {
    /// Resolves, connects (NVMe/RDMA private data) and posts the receives. The Fabrics Connect
    /// command is the caller's.
    pub fn connect(p: &RdmaParams) -> Result<RdmaQpair, TransportError> {
        let depth = usize::from(p.depth.max(2));
        let cap_len = SQE_LEN + p.in_capsule as usize;
        let recvs = depth + 1;
        let data_off = 0;
        let cap_off = depth * p.max_data as usize;
        let rsp_off = cap_off + depth * cap_len;
        let len = rsp_off + recvs * CQE_LEN;
        let mut q = RdmaQpair {
            qid: p.qid,
            limits: QpairLimits {
                max_data: p.max_data,
                in_capsule: p.in_capsule,
                maxh2cdata: p.max_data,
                header_digest: false,
                data_digest: false,
            },
            slots: vec![
                Slot {
                    state: SlotState::Free,
                    dir: Dir::None,
                    len: 0,
                    sending: false,
                    cqe: None,
                };
                depth
            ],
            free: (0..depth as u16).rev().collect(),
            outstanding: 0,
            pending: Vec::with_capacity(depth),
            counters: TransportCounters::default(),
            ch: ptr::null_mut(),
            id: ptr::null_mut(),
            pd: ptr::null_mut(),
            cq: ptr::null_mut(),
            mr: ptr::null_mut(),
            base: ptr::null_mut(),
            len: 0,
            data_off,
            cap_off,
            cap_len,
            rsp_off,
            // SAFETY: ibv_wc is plain data.
            wcs: unsafe { std::mem::zeroed() },
            reposts: Vec::with_capacity(recvs),
            rkey_fault: if p.fault == Some(RdmaFault::BadRkey) {
                0x00ba_d000
            } else {
                0
            },
        };
        let deadline = Instant::now() + p.timeout;
        let ms = p.timeout.as_millis().clamp(100, 60_000) as i32;
        // SAFETY: no arguments; NULL on failure.
        q.ch = unsafe { rdma_create_event_channel() };
        if q.ch.is_null() {
            return Err(io_err("rdma_create_event_channel (no RDMA device?)"));
        }
        // SAFETY: the channel is live; `q.id` receives the id (destroyed in Drop).
        let rc = unsafe {
            rdma_create_id(
                q.ch,
                &mut q.id,
                ptr::null_mut(),
                rdma_port_space::RDMA_PS_TCP,
            )
        };
        if rc != 0 {
            q.id = ptr::null_mut();
            return Err(rc_err("rdma_create_id", rc));
        }
        let mut dst = sockaddr_of(p.addr);
        // SAFETY: id live; `dst` a valid sockaddr of its family.
        let rc = unsafe {
            rdma_resolve_addr(
                q.id,
                ptr::null_mut(),
                &mut dst as *mut _ as *mut libc::sockaddr,
                ms,
            )
        };
        if rc != 0 {
            return Err(rc_err("rdma_resolve_addr", rc));
        }
        q.wait_event(
            rdma_cm_event_type::RDMA_CM_EVENT_ADDR_RESOLVED,
            deadline,
            p.addr,
        )?;
        // SAFETY: id live with a resolved address.
        let rc = unsafe { rdma_resolve_route(q.id, ms) };
        if rc != 0 {
            return Err(rc_err("rdma_resolve_route", rc));
        }
        q.wait_event(
            rdma_cm_event_type::RDMA_CM_EVENT_ROUTE_RESOLVED,
            deadline,
            p.addr,
        )?;
        // SAFETY: the route is resolved, so `verbs` is the device context.
        let verbs = unsafe { (*q.id).verbs };
        if verbs.is_null() {
            return Err(TransportError::protocol("rdma-cm resolved no device"));
        }
        // SAFETY: verbs is live (owned by librdmacm).
        q.pd = unsafe { ibv_alloc_pd(verbs) };
        if q.pd.is_null() {
            return Err(io_err("ibv_alloc_pd"));
        }
        let cqe = (depth * 2 + recvs + 8) as i32;
        // SAFETY: verbs live; no channel.
        q.cq = unsafe { ibv_create_cq(verbs, cqe, ptr::null_mut(), ptr::null_mut(), 0) };
        if q.cq.is_null() {
            return Err(io_err("ibv_create_cq"));
        }
        // SAFETY: zeroed init attr is valid.
        let mut attr: ibv_qp_init_attr = unsafe { std::mem::zeroed() };
        attr.send_cq = q.cq;
        attr.recv_cq = q.cq;
        attr.qp_type = ibv_qp_type::IBV_QPT_RC;
        attr.cap.max_send_wr = (depth + 4) as u32;
        attr.cap.max_recv_wr = (recvs + 4) as u32;
        attr.cap.max_send_sge = 1;
        attr.cap.max_recv_sge = 1;
        // SAFETY: id has a resolved route and no QP; pd and cq belong to its device.
        let rc = unsafe { rdma_create_qp(q.id, q.pd, &mut attr) };
        if rc != 0 {
            return Err(rc_err("rdma_create_qp", rc));
        }
        let mem = vec![0u8; len].into_boxed_slice();
        q.base = Box::into_raw(mem) as *mut u8;
        q.len = len;
        let access = ibv_access_flags::IBV_ACCESS_LOCAL_WRITE
            | ibv_access_flags::IBV_ACCESS_REMOTE_READ
            | ibv_access_flags::IBV_ACCESS_REMOTE_WRITE;
        // SAFETY: [base, base+len) is owned by `q` until Drop deregisters then frees it.
        q.mr = unsafe { ibv_reg_mr(q.pd, q.base as *mut _, len, access.0 as i32) };
        if q.mr.is_null() {
            return Err(io_err("ibv_reg_mr"));
        }
        for i in 0..recvs as u32 {
            q.reposts.push(i);
        }
        q.post_recvs()?;
        // NVMe/RDMA CM request private data.
        let mut private = [0u8; CM_PRIVATE_DATA_SIZE];
        let _ = CmRequest {
            recfmt: if p.fault == Some(RdmaFault::BadPrivateData) {
                7
            } else {
                0
            },
            qid: p.qid,
            hrqsize: depth as u16,
            hsqsize: (depth - 1) as u16,
            cntlid: 0xffff,
        }
        .encode(&mut private);
        // SAFETY: zeroed conn param is valid.
        let mut cp: rdma_conn_param = unsafe { std::mem::zeroed() };
        cp.private_data = private.as_ptr() as *const _;
        cp.private_data_len = CM_PRIVATE_DATA_SIZE as u8;
        cp.responder_resources = 16;
        cp.initiator_depth = 0;
        cp.flow_control = 1;
        cp.retry_count = 7;
        cp.rnr_retry_count = 7;
        // SAFETY: id has a QP; `cp` and `private` live through the call.
        let rc = unsafe { rdma_connect(q.id, &mut cp) };
        if rc != 0 {
            return Err(rc_err("rdma_connect", rc));
        }
        q.wait_event(
            rdma_cm_event_type::RDMA_CM_EVENT_ESTABLISHED,
            deadline,
            p.addr,
        )?;
        Ok(q)
    }

    /// Waits for event `want` on the channel; another event is an error naming it.
    fn wait_event(
        &mut self,
        want: u32,
        deadline: Instant,
        addr: SocketAddr,
    ) -> Result<(), TransportError> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(TransportError::Timeout {
                    what: "rdma-cm event",
                    timeout: left,
                });
            }
            // SAFETY: the channel is live; `fd` is a plain field.
            let fd = unsafe { (*self.ch).fd };
            // SAFETY: fd is open for the channel's life.
            let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            let mut pfd = [rustix::event::PollFd::new(
                &bfd,
                rustix::event::PollFlags::IN,
            )];
            let ts = rustix::event::Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            };
            match rustix::event::poll(&mut pfd, Some(&ts)) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    return Err(TransportError::Io {
                        op: "poll",
                        source: e.into(),
                    })
                }
            }
            let mut ev: *mut rdma_cm_event = ptr::null_mut();
            // SAFETY: the channel is readable; `ev` is acked below.
            let rc = unsafe { rdma_get_cm_event(self.ch, &mut ev) };
            if rc != 0 {
                return Err(rc_err("rdma_get_cm_event", rc));
            }
            // SAFETY: `ev` valid until acked.
            let (kind, status) = unsafe { ((*ev).event, (*ev).status) };
            let reject = if kind == rdma_cm_event_type::RDMA_CM_EVENT_REJECTED {
                // SAFETY: for REJECTED the conn param holds the reject private data.
                let c = unsafe { (*ev).param.conn };
                if c.private_data.is_null() {
                    None
                } else {
                    // SAFETY: private_data_len bytes are readable.
                    let b = unsafe {
                        std::slice::from_raw_parts(
                            c.private_data as *const u8,
                            usize::from(c.private_data_len),
                        )
                    };
                    CmReject::decode(b).ok()
                }
            } else {
                None
            };
            // SAFETY: acked exactly once.
            unsafe { rdma_ack_cm_event(ev) };
            if kind == want {
                return Ok(());
            }
            // SAFETY: returns a static string.
            let name = unsafe { CStr::from_ptr(rdma_event_str(kind)) }
                .to_string_lossy()
                .into_owned();
            let what = match reject {
                Some(r) => format!(
                    "target {addr} rejected the rdma connection (nvme/rdma reject status {:#x})",
                    r.status
                ),
                None => format!("rdma-cm reported {name} (status {status}) connecting to {addr}"),
            };
            return Err(TransportError::Protocol { what });
        }
    }

    fn lkey(&self) -> u32 {
        // SAFETY: mr is live (registered in connect before any post).
        unsafe { (*self.mr).lkey }
    }

    fn rkey(&self) -> u32 {
        // SAFETY: as above.
        unsafe { (*self.mr).rkey }
    }

    fn addr(&self, off: usize) -> u64 {
        self.base as u64 + off as u64
    }

    fn bytes_mut(&mut self, off: usize, n: usize) -> &mut [u8] {
        assert!(off + n <= self.len);
        // SAFETY: in bounds; the range belongs to a slot in a CPU-owned state (not posted),
        // so the device does not access it meanwhile; `&mut self` excludes other borrows.
        unsafe { std::slice::from_raw_parts_mut(self.base.add(off), n) }
    }

    fn bytes(&self, off: usize, n: usize) -> &[u8] {
        assert!(off + n <= self.len);
        // SAFETY: as `bytes_mut`; the device finished writing the range before the completion
        // that made us read it.
        unsafe { std::slice::from_raw_parts(self.base.add(off), n) }
    }

    fn post_recvs(&mut self) -> Result<(), TransportError> {
        let lkey = self.lkey();
        for chunk in self.reposts.chunks(POLL_BATCH) {
            let mut sges = [ibv_sge {
                addr: 0,
                length: 0,
                lkey: 0,
            }; POLL_BATCH];
            let mut wrs = [ibv_recv_wr {
                wr_id: 0,
                next: ptr::null_mut(),
                sg_list: ptr::null_mut(),
                num_sge: 1,
            }; POLL_BATCH];
            for (i, &r) in chunk.iter().enumerate() {
                sges[i] = ibv_sge {
                    addr: self.base as u64 + (self.rsp_off + r as usize * CQE_LEN) as u64,
                    length: CQE_LEN as u32,
                    lkey,
                };
                wrs[i].wr_id = (WR_RECV << 32) | u64::from(r);
            }
            let base = wrs.as_mut_ptr();
            for i in 0..chunk.len() {
                // SAFETY: indexes within the stack arrays, which outlive the post.
                unsafe {
                    (*base.add(i)).sg_list = sges.as_mut_ptr().add(i);
                    (*base.add(i)).next = if i + 1 < chunk.len() {
                        base.add(i + 1)
                    } else {
                        ptr::null_mut()
                    };
                }
            }
            let mut bad = ptr::null_mut();
            // SAFETY: the QP is live; the chain and its buffers (response slots not posted
            // elsewhere) are valid.
            let rc = unsafe { ibv_post_recv((*self.id).qp, base, &mut bad) };
            if rc != 0 {
                return Err(rc_err("ibv_post_recv", rc));
            }
        }
        self.reposts.clear();
        Ok(())
    }

    fn finish(&mut self, cid: u16, on_done: &mut impl FnMut(Completion<'_>)) {
        let s = self.slots[usize::from(cid)];
        let Some(cqe) = s.cqe else { return };
        if s.sending || s.state != SlotState::Submitted {
            return;
        }
        let off = self.data_off + usize::from(cid) * self.limits.max_data as usize;
        let n = if s.dir == Dir::FromController {
            s.len as usize
        } else {
            0
        };
        on_done(Completion {
            cid: Cid(cid),
            cqe,
            data: self.bytes(off, n),
        });
        let slot = &mut self.slots[usize::from(cid)];
        slot.state = SlotState::Free;
        slot.cqe = None;
        self.outstanding -= 1;
        self.free.push(cid);
    }
}

impl Drop for RdmaQpair {
    fn drop(&mut self) {
        // SAFETY: each object is destroyed once, children before parents; the device stops
        // using the region once the QP is destroyed.
        unsafe {
            if !self.id.is_null() {
                rdma_disconnect(self.id);
                if !(*self.id).qp.is_null() {
                    rdma_destroy_qp(self.id);
                }
            }
            if !self.mr.is_null() {
                ibv_dereg_mr(self.mr);
            }
            if !self.base.is_null() {
                drop(Box::from_raw(ptr::slice_from_raw_parts_mut(
                    self.base, self.len,
                )));
            }
            if !self.cq.is_null() {
                ibv_destroy_cq(self.cq);
            }
            if !self.pd.is_null() {
                ibv_dealloc_pd(self.pd);
            }
            if !self.id.is_null() {
                rdma_destroy_id(self.id);
            }
            if !self.ch.is_null() {
                rdma_destroy_event_channel(self.ch);
            }
        }
    }
}

impl Qpair for RdmaQpair {
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
        self.slots[usize::from(cid)].state = SlotState::Allocated;
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
        if usize::from(cid.0) >= self.slots.len() {
            return &mut [];
        }
        let n = self.limits.max_data as usize;
        self.bytes_mut(self.data_off + usize::from(cid.0) * n, n)
    }

    fn submit(&mut self, cid: Cid, mut sqe: Sqe, dir: Dir, len: u32) -> Result<(), TransportError> {
        let c = usize::from(cid.0);
        if self.slots.get(c).map(|s| s.state) != Some(SlotState::Allocated) {
            return Err(TransportError::Internal {
                what: format!("submit on cid {}, which is not allocated", cid.0),
            });
        }
        if len > self.limits.max_data {
            return Err(TransportError::Internal {
                what: format!("{len} bytes exceed the {}-byte slot", self.limits.max_data),
            });
        }
        let dir = if len == 0 { Dir::None } else { dir };
        let in_capsule = dir == Dir::ToController && len <= self.limits.in_capsule;
        let data = self.data_off + c * self.limits.max_data as usize;
        sqe.cid = cid;
        sqe.dptr = match dir {
            Dir::None => SglDescriptor::keyed(0, 0, 0),
            _ if in_capsule => SglDescriptor::in_capsule(0, len),
            _ => SglDescriptor::keyed(self.addr(data), len, self.rkey() ^ self.rkey_fault),
        };
        let cap = self.cap_off + c * self.cap_len;
        let raw = sqe.to_bytes();
        self.bytes_mut(cap, SQE_LEN).copy_from_slice(&raw);
        if in_capsule {
            let n = len as usize;
            // Within one region: copy through a small bounce buffer (no overlapping borrows).
            let mut tmp = [0u8; 512];
            let mut done = 0;
            while done < n {
                let k = (n - done).min(tmp.len());
                tmp[..k].copy_from_slice(self.bytes(data + done, k));
                self.bytes_mut(cap + SQE_LEN + done, k)
                    .copy_from_slice(&tmp[..k]);
                done += k;
            }
        }
        let s = &mut self.slots[c];
        s.state = SlotState::Submitted;
        s.dir = dir;
        s.len = len;
        s.cqe = None;
        s.sending = true;
        self.outstanding += 1;
        self.pending.push(cid.0);
        self.counters.bytes_sent += (SQE_LEN + if in_capsule { len as usize } else { 0 }) as u64;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), TransportError> {
        const CHAIN: usize = 16;
        let lkey = self.lkey();
        let mut i = 0;
        while i < self.pending.len() {
            let chunk = &self.pending[i..(i + CHAIN).min(self.pending.len())];
            // SAFETY: plain data; zeroed values are valid.
            let mut wrs: [ibv_send_wr; CHAIN] = unsafe { std::mem::zeroed() };
            let mut sges = [ibv_sge {
                addr: 0,
                length: 0,
                lkey: 0,
            }; CHAIN];
            for (k, &cid) in chunk.iter().enumerate() {
                let s = self.slots[usize::from(cid)];
                let extra = if s.dir == Dir::ToController && s.len <= self.limits.in_capsule {
                    s.len
                } else {
                    0
                };
                sges[k] = ibv_sge {
                    addr: self.addr(self.cap_off + usize::from(cid) * self.cap_len),
                    length: SQE_LEN as u32 + extra,
                    lkey,
                };
                wrs[k].wr_id = (WR_SEND << 32) | u64::from(cid);
                wrs[k].num_sge = 1;
                wrs[k].opcode = ibv_wr_opcode::IBV_WR_SEND;
                wrs[k].send_flags = ibv_send_flags::IBV_SEND_SIGNALED.0;
            }
            let base = wrs.as_mut_ptr();
            for k in 0..chunk.len() {
                // SAFETY: indexes within the stack arrays, which outlive the post.
                unsafe {
                    (*base.add(k)).sg_list = sges.as_mut_ptr().add(k);
                    (*base.add(k)).next = if k + 1 < chunk.len() {
                        base.add(k + 1)
                    } else {
                        ptr::null_mut()
                    };
                }
            }
            let mut bad = ptr::null_mut();
            self.counters.send_calls += 1;
            // SAFETY: QP live; capsule buffers registered and owned by submitted slots.
            let rc = unsafe { ibv_post_send((*self.id).qp, base, &mut bad) };
            if rc != 0 {
                return Err(rc_err("ibv_post_send", rc));
            }
            i += chunk.len();
        }
        self.pending.clear();
        Ok(())
    }

    fn send_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    fn poll<F: FnMut(Completion<'_>)>(&mut self, mut on_done: F) -> Result<usize, TransportError> {
        let mut done = 0;
        loop {
            self.counters.recv_calls += 1;
            // SAFETY: cq live; `wcs` has POLL_BATCH entries.
            let n = unsafe { ibv_poll_cq(self.cq, POLL_BATCH as i32, self.wcs.as_mut_ptr()) };
            if n < 0 {
                return Err(rc_err("ibv_poll_cq", -n));
            }
            if n == 0 {
                self.counters.recv_empty += 1;
                break;
            }
            for k in 0..n as usize {
                let w = &self.wcs[k];
                let (status, wr_id, byte_len) = (w.status, w.wr_id, w.byte_len);
                if status != ibv_wc_status::IBV_WC_SUCCESS {
                    // SAFETY: static string for any status.
                    let why = unsafe { CStr::from_ptr(ibv_wc_status_str(status)) }
                        .to_string_lossy()
                        .into_owned();
                    return Err(TransportError::Protocol {
                        what: format!(
                            "rdma work completion failed: {why} (the connection is gone)"
                        ),
                    });
                }
                let kind = wr_id >> 32;
                let idx = (wr_id & 0xffff_ffff) as u32;
                if kind == WR_RECV {
                    self.counters.pdus_received += 1;
                    self.counters.bytes_received += u64::from(byte_len);
                    let mut raw = [0u8; CQE_LEN];
                    raw.copy_from_slice(self.bytes(self.rsp_off + idx as usize * CQE_LEN, CQE_LEN));
                    self.reposts.push(idx);
                    if (byte_len as usize) < CQE_LEN {
                        return Err(TransportError::protocol(format!(
                            "{}-byte response capsule",
                            byte_len
                        )));
                    }
                    let cqe = Cqe::decode(&raw);
                    let cid = cqe.cid.0;
                    match self.slots.get_mut(usize::from(cid)) {
                        Some(s) if s.state == SlotState::Submitted && s.cqe.is_none() => {
                            s.cqe = Some(cqe);
                        }
                        _ => {
                            return Err(TransportError::protocol(format!(
                                "response for cid {cid}, which is not outstanding"
                            )))
                        }
                    }
                    let before = self.outstanding;
                    self.finish(cid, &mut on_done);
                    done += before - self.outstanding;
                } else {
                    let cid = idx as u16;
                    if let Some(s) = self.slots.get_mut(usize::from(cid)) {
                        s.sending = false;
                    }
                    let before = self.outstanding;
                    self.finish(cid, &mut on_done);
                    done += before - self.outstanding;
                }
            }
            if (n as usize) < POLL_BATCH {
                break;
            }
        }
        if !self.reposts.is_empty() {
            self.post_recvs()?;
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without RDMA (this project's build hosts and CI) a connect fails with an error that says
    /// so, promptly, and leaks nothing (Drop tolerates a half-built qpair).
    #[test]
    fn connect_without_rdma_is_a_clear_error() {
        if std::path::Path::new("/dev/infiniband/rdma_cm").exists() {
            println!("skipped: this machine has RDMA (the lab test covers connects)");
            return;
        }
        let t0 = Instant::now();
        let e = RdmaQpair::connect(&RdmaParams {
            addr: "127.0.0.1:4420".parse().expect("addr"),
            qid: 0,
            depth: 4,
            max_data: 4096,
            in_capsule: 0,
            timeout: Duration::from_secs(2),
            fault: None,
        })
        .expect_err("no RDMA device: the connect must fail");
        let msg = crate::error_chain(&e);
        assert!(msg.contains("rdma"), "the error names rdma: {msg}");
        assert!(t0.elapsed() < Duration::from_secs(10), "failed promptly");
    }
}
