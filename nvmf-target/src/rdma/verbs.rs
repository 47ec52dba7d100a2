//! The only `unsafe` of the RDMA transport: thin owned wrappers over librdmacm and libibverbs
//! (`rdma-sys`). Everything above this module is safe Rust.
//!
//! Ownership and threads:
//! - [`EventChannel`] and the [`CmId`]s of listeners belong to the `rdma-cm` thread. A
//!   connection's [`CmId`] is created by a CONNECT_REQUEST event on that thread and then moved
//!   to the reactor that serves the connection, which destroys it (`rdma_destroy_id` waits only
//!   for events already read and not yet acknowledged; the rdma-cm thread acknowledges each
//!   event right after forwarding it, so the wait is bounded by that).
//! - [`Pd`], [`Cq`], [`Srq`] and [`Region`] (a registered memory region) are created by a
//!   reactor on its own thread (first touch puts the pages on its NUMA node) and used only by it.
//!   A [`Qp`] is created by that reactor against its PD, CQ and SRQ and posted to only by it.
//! - Raw pointers are `Send` here because each object has exactly one user thread at a time, as
//!   described above; none is `Sync`.
//!
//! The fast-path calls (`ibv_poll_cq`, `ibv_post_send`, `ibv_post_srq_recv`) go through the
//! provider's function table without allocation or locks of ours; work requests are built in
//! fixed arrays on the stack.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, RawFd};
use std::ptr;

use rdma_sys::*;

/// A verbs or rdma-cm call failed.
#[derive(Debug, thiserror::Error)]
#[error("{call} failed: {source}")]
pub struct VerbsError {
    pub call: &'static str,
    #[source]
    pub source: std::io::Error,
}

fn err(call: &'static str) -> VerbsError {
    VerbsError {
        call,
        source: std::io::Error::last_os_error(),
    }
}

fn err_rc(call: &'static str, rc: i32) -> VerbsError {
    // Verbs post calls return the errno value; rdma-cm calls return -1 and set errno.
    let source = if rc > 0 {
        std::io::Error::from_raw_os_error(rc)
    } else {
        std::io::Error::last_os_error()
    };
    VerbsError { call, source }
}

fn sockaddr_of(addr: SocketAddr) -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid (unspecified) value.
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

/// Owns the raw channel; destroyed when the last of the channel and its ids is gone (an id
/// may outlive the rdma-cm thread at shutdown, and destroying an id needs its channel).
struct ChannelGuard(*mut rdma_event_channel);

// SAFETY: the guard only destroys the channel, once, when the last reference drops.
unsafe impl Send for ChannelGuard {}
// SAFETY: no method uses the pointer through a shared reference.
unsafe impl Sync for ChannelGuard {}

impl Drop for ChannelGuard {
    fn drop(&mut self) {
        // SAFETY: every id created on the channel holds a reference, so none is left.
        unsafe { rdma_destroy_event_channel(self.0) };
    }
}

/// An rdma-cm event channel (the connection manager's event queue), non-blocking.
pub struct EventChannel {
    ch: *mut rdma_event_channel,
    guard: std::sync::Arc<ChannelGuard>,
}

// SAFETY: the channel is used by one thread at a time (the rdma-cm thread); librdmacm keeps no
// thread-local state for it.
unsafe impl Send for EventChannel {}

impl EventChannel {
    /// Fails when librdmacm finds no RDMA device or `/dev/infiniband/rdma_cm` is missing.
    pub fn new() -> Result<EventChannel, VerbsError> {
        // SAFETY: no arguments; returns NULL on failure.
        let ch = unsafe { rdma_create_event_channel() };
        if ch.is_null() {
            return Err(err("rdma_create_event_channel"));
        }
        let c = EventChannel {
            ch,
            guard: std::sync::Arc::new(ChannelGuard(ch)),
        };
        let fd = c.raw_fd();
        // SAFETY: fd is the channel's open descriptor, valid while `c` lives.
        let bfd = unsafe { BorrowedFd::borrow_raw(fd) };
        let flags = rustix::fs::fcntl_getfl(bfd).map_err(|e| VerbsError {
            call: "fcntl(F_GETFL)",
            source: e.into(),
        })?;
        rustix::fs::fcntl_setfl(bfd, flags | rustix::fs::OFlags::NONBLOCK).map_err(|e| {
            VerbsError {
                call: "fcntl(F_SETFL)",
                source: e.into(),
            }
        })?;
        Ok(c)
    }

    fn raw_fd(&self) -> RawFd {
        // SAFETY: `ch` is a live channel; `fd` is a plain field.
        unsafe { (*self.ch).fd }
    }

    /// The channel's descriptor, for poll(2).
    pub fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the descriptor stays open as long as `self`.
        unsafe { BorrowedFd::borrow_raw(self.raw_fd()) }
    }

    /// Creates an RC id bound to `addr` and listening.
    pub fn listen(&self, addr: SocketAddr, backlog: i32) -> Result<CmId, VerbsError> {
        let mut id: *mut rdma_cm_id = ptr::null_mut();
        // SAFETY: `ch` is live; `id` receives the new id.
        let rc = unsafe {
            rdma_create_id(
                self.ch,
                &mut id,
                ptr::null_mut(),
                rdma_port_space::RDMA_PS_TCP,
            )
        };
        if rc != 0 {
            return Err(err_rc("rdma_create_id", rc));
        }
        let id = CmId {
            id,
            _ch: self.guard.clone(),
        };
        let mut ss = sockaddr_of(addr);
        // SAFETY: `ss` holds a valid sockaddr of its family.
        let rc = unsafe { rdma_bind_addr(id.id, &mut ss as *mut _ as *mut libc::sockaddr) };
        if rc != 0 {
            return Err(err_rc("rdma_bind_addr", rc));
        }
        // SAFETY: `id` is bound.
        let rc = unsafe { rdma_listen(id.id, backlog) };
        if rc != 0 {
            return Err(err_rc("rdma_listen", rc));
        }
        Ok(id)
    }

    /// The next event, if one is ready (never blocks).
    pub fn next_event(&self) -> Option<CmEvent> {
        let mut ev: *mut rdma_cm_event = ptr::null_mut();
        // SAFETY: the channel is non-blocking; on success `ev` points to an event that stays
        // valid until rdma_ack_cm_event, done by CmEvent's Drop.
        let rc = unsafe { rdma_get_cm_event(self.ch, &mut ev) };
        if rc != 0 || ev.is_null() {
            return None;
        }
        // SAFETY: `ev` is valid (above); the fields are plain values or pointers we copy.
        let e = unsafe { &*ev };
        // SAFETY: for connection events `param.conn` is the active member.
        let conn = unsafe { e.param.conn };
        let private = if conn.private_data.is_null() || conn.private_data_len == 0 {
            Vec::new()
        } else {
            // SAFETY: librdmacm gives private_data_len readable bytes at private_data.
            unsafe {
                std::slice::from_raw_parts(
                    conn.private_data as *const u8,
                    usize::from(conn.private_data_len),
                )
            }
            .to_vec()
        };
        Some(CmEvent {
            ev,
            kind: e.event,
            status: e.status,
            id: e.id as usize,
            listen_id: e.listen_id as usize,
            private,
            guard: self.guard.clone(),
            initiator_depth: conn.initiator_depth,
            responder_resources: conn.responder_resources,
        })
    }
}

/// Event kinds the transport handles (values of `rdma_cm_event_type`).
pub mod event {
    use rdma_sys::rdma_cm_event_type as t;
    pub const CONNECT_REQUEST: u32 = t::RDMA_CM_EVENT_CONNECT_REQUEST;
    pub const ESTABLISHED: u32 = t::RDMA_CM_EVENT_ESTABLISHED;
    pub const DISCONNECTED: u32 = t::RDMA_CM_EVENT_DISCONNECTED;
    pub const TIMEWAIT_EXIT: u32 = t::RDMA_CM_EVENT_TIMEWAIT_EXIT;
    pub const CONNECT_ERROR: u32 = t::RDMA_CM_EVENT_CONNECT_ERROR;
    pub const UNREACHABLE: u32 = t::RDMA_CM_EVENT_UNREACHABLE;
    pub const REJECTED: u32 = t::RDMA_CM_EVENT_REJECTED;
    pub const DEVICE_REMOVAL: u32 = t::RDMA_CM_EVENT_DEVICE_REMOVAL;
    pub const ADDR_CHANGE: u32 = t::RDMA_CM_EVENT_ADDR_CHANGE;
}

/// The name librdmacm gives an event kind.
pub fn event_name(kind: u32) -> String {
    // SAFETY: rdma_event_str returns a static string for any value.
    let p = unsafe { rdma_event_str(kind) };
    if p.is_null() {
        return format!("event {kind}");
    }
    // SAFETY: non-null static NUL-terminated string.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// One rdma-cm event; acknowledged when dropped. `id`/`listen_id` identify ids by address.
pub struct CmEvent {
    ev: *mut rdma_cm_event,
    pub kind: u32,
    pub status: i32,
    pub id: usize,
    pub listen_id: usize,
    pub private: Vec<u8>,
    guard: std::sync::Arc<ChannelGuard>,
    /// From the host's point of view swapped by rdma-cm: the RDMA READs we may have in flight.
    pub initiator_depth: u8,
    pub responder_resources: u8,
}

impl CmEvent {
    /// Takes ownership of the new id of a CONNECT_REQUEST. Drop the event (ack) before
    /// dropping the id: `rdma_destroy_id` waits for the ack.
    pub fn take_new_id(&self) -> CmId {
        // SAFETY: `ev` is live until Drop; `id` is a plain pointer field.
        let id = unsafe { (*self.ev).id };
        CmId {
            id,
            _ch: self.guard.clone(),
        }
    }
}

impl Drop for CmEvent {
    fn drop(&mut self) {
        // SAFETY: acknowledged exactly once.
        unsafe { rdma_ack_cm_event(self.ev) };
    }
}

/// An rdma-cm id (a listener or one connection). Destroys its QP (if any) and itself on drop.
pub struct CmId {
    id: *mut rdma_cm_id,
    /// Keeps the channel alive until this id is destroyed (field order: dropped after `id`'s
    /// Drop ran).
    _ch: std::sync::Arc<ChannelGuard>,
}

// SAFETY: an id is used by one thread at a time (rdma-cm thread, then its reactor, then back);
// librdmacm serialises its own internal state per id.
unsafe impl Send for CmId {}

impl CmId {
    /// The id's address, as carried in events.
    pub fn key(&self) -> usize {
        self.id as usize
    }

    /// The device this id is bound to (None for a wildcard listener).
    pub fn device(&self) -> Option<Device> {
        // SAFETY: `id` is live.
        let v = unsafe { (*self.id).verbs };
        (!v.is_null()).then_some(Device { ctx: v })
    }

    /// Creates the RC queue pair of this connection on `pd`, with `cq` for both directions and
    /// `srq` for receives.
    pub fn create_qp(
        &self,
        pd: &Pd,
        cq: &Cq,
        srq: &Srq,
        max_send_wr: u32,
    ) -> Result<Qp, VerbsError> {
        // SAFETY: zeroed ibv_qp_init_attr is a valid starting value (null pointers, 0 caps).
        let mut attr: ibv_qp_init_attr = unsafe { std::mem::zeroed() };
        attr.send_cq = cq.cq;
        attr.recv_cq = cq.cq;
        attr.srq = srq.srq;
        attr.qp_type = ibv_qp_type::IBV_QPT_RC;
        attr.sq_sig_all = 0;
        attr.cap.max_send_wr = max_send_wr;
        attr.cap.max_send_sge = 1;
        attr.cap.max_recv_wr = 0;
        attr.cap.max_recv_sge = 1;
        // SAFETY: `id` is live and has no QP yet; pd/cq/srq are live objects of the same device
        // (the reactor that owns them outlives its connections).
        let rc = unsafe { rdma_create_qp(self.id, pd.pd, &mut attr) };
        if rc != 0 {
            return Err(err_rc("rdma_create_qp", rc));
        }
        // SAFETY: rdma_create_qp set `id->qp`.
        let qp = unsafe { (*self.id).qp };
        // SAFETY: `qp` is live.
        let qpn = unsafe { (*qp).qp_num };
        Ok(Qp { qp, qpn })
    }

    /// Accepts a connection request with `private` data (NVMe/RDMA CM accept).
    pub fn accept(&self, private: &[u8], initiator_depth: u8) -> Result<(), VerbsError> {
        // SAFETY: zeroed rdma_conn_param is valid (no private data).
        let mut p: rdma_conn_param = unsafe { std::mem::zeroed() };
        p.private_data = private.as_ptr() as *const _;
        p.private_data_len = private.len().min(255) as u8;
        p.initiator_depth = initiator_depth;
        p.responder_resources = 0;
        p.flow_control = 1;
        p.retry_count = 7;
        p.rnr_retry_count = 7;
        p.srq = 1;
        // SAFETY: `id` has a QP; `p` and the private bytes live through the call (copied).
        let rc = unsafe { rdma_accept(self.id, &mut p) };
        if rc != 0 {
            return Err(err_rc("rdma_accept", rc));
        }
        Ok(())
    }

    /// Rejects a connection request with `private` data (NVMe/RDMA CM reject).
    pub fn reject(&self, private: &[u8]) {
        // SAFETY: `id` is a connection request id; the bytes are copied by the call.
        unsafe {
            rdma_reject(
                self.id,
                private.as_ptr() as *const _,
                private.len().min(255) as u8,
            )
        };
    }

    /// Starts a disconnect (the peer gets DISCONNECTED); moves the QP to the error state so
    /// outstanding work requests flush. Idempotent.
    pub fn disconnect(&self) {
        // SAFETY: `id` is live; a second call only returns an error we ignore.
        unsafe { rdma_disconnect(self.id) };
    }

    /// The peer's address as text, for messages.
    pub fn peer(&self) -> String {
        // SAFETY: `id` is live; rdma_get_peer_addr returns a reference into it.
        let sa = unsafe { rdma_get_peer_addr(&*self.id) } as *const libc::sockaddr;
        // SAFETY: the family tells which struct the storage holds.
        unsafe {
            match i32::from((*sa).sa_family) {
                libc::AF_INET => {
                    let s = &*(sa as *const libc::sockaddr_in);
                    let ip = std::net::Ipv4Addr::from(u32::from_be(s.sin_addr.s_addr));
                    format!("{ip}:{}", u16::from_be(s.sin_port))
                }
                libc::AF_INET6 => {
                    let s = &*(sa as *const libc::sockaddr_in6);
                    let ip = std::net::Ipv6Addr::from(s.sin6_addr.s6_addr);
                    format!("[{ip}]:{}", u16::from_be(s.sin6_port))
                }
                _ => "?".into(),
            }
        }
    }
}

impl Drop for CmId {
    fn drop(&mut self) {
        // SAFETY: `id` is live; its QP (if any) is no longer posted to (the reactor drained
        // its work requests before handing the id back); every event for it was acked.
        unsafe {
            if !(*self.id).qp.is_null() {
                rdma_destroy_qp(self.id);
            }
            rdma_destroy_id(self.id);
        }
    }
}

/// A device context opened by librdmacm (never closed by us: rdma-cm owns it).
#[derive(Clone, Copy)]
pub struct Device {
    ctx: *mut ibv_context,
}

// SAFETY: ibv_context is thread-safe for object creation; it is never freed while we run.
unsafe impl Send for Device {}
// SAFETY: as above: only creation calls go through a shared Device.
unsafe impl Sync for Device {}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

impl Device {
    pub fn same(&self, o: &Device) -> bool {
        self.ctx == o.ctx
    }

    /// The first device librdmacm knows (for wildcard listeners).
    pub fn first() -> Option<Device> {
        let mut n = 0;
        // SAFETY: returns a NULL-terminated array owned by librdmacm, freed below.
        let list = unsafe { rdma_get_devices(&mut n) };
        if list.is_null() {
            return None;
        }
        // SAFETY: n >= 0 entries are valid; the contexts outlive the list.
        let d = unsafe { (n > 0).then(|| *list) }.filter(|p| !p.is_null());
        // SAFETY: the list came from rdma_get_devices.
        unsafe { rdma_free_devices(list) };
        d.map(|ctx| Device { ctx })
    }

    pub fn name(&self) -> String {
        // SAFETY: ctx->device is live; ibv_get_device_name returns its static name.
        unsafe {
            let p = ibv_get_device_name((*self.ctx).device);
            if p.is_null() {
                return "?".into();
            }
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }

    /// (max_qp_wr, max_qp_init_rd_atom, max_srq_wr, max_cqe) of the device.
    pub fn limits(&self) -> Result<(u32, u8, u32, u32), VerbsError> {
        // SAFETY: zeroed ibv_device_attr is a valid output buffer.
        let mut a: ibv_device_attr = unsafe { std::mem::zeroed() };
        // SAFETY: ctx is live; `a` is written by the call.
        let rc = unsafe { ibv_query_device(self.ctx, &mut a) };
        if rc != 0 {
            return Err(err_rc("ibv_query_device", rc));
        }
        Ok((
            a.max_qp_wr.max(0) as u32,
            a.max_qp_init_rd_atom.clamp(0, 255) as u8,
            a.max_srq_wr.max(0) as u32,
            a.max_cqe.max(0) as u32,
        ))
    }

    pub fn alloc_pd(&self) -> Result<Pd, VerbsError> {
        // SAFETY: ctx is live.
        let pd = unsafe { ibv_alloc_pd(self.ctx) };
        if pd.is_null() {
            return Err(err("ibv_alloc_pd"));
        }
        Ok(Pd { pd })
    }

    /// A CQ polled by its owner (no completion channel).
    pub fn create_cq(&self, entries: u32) -> Result<Cq, VerbsError> {
        // SAFETY: ctx is live; no channel, vector 0.
        let cq = unsafe {
            ibv_create_cq(
                self.ctx,
                entries as i32,
                ptr::null_mut(),
                ptr::null_mut(),
                0,
            )
        };
        if cq.is_null() {
            return Err(err("ibv_create_cq"));
        }
        Ok(Cq {
            cq,
            // SAFETY: ibv_wc is plain data; zeroed entries are valid placeholders.
            wcs: unsafe { std::mem::zeroed() },
        })
    }
}

/// A protection domain.
pub struct Pd {
    pd: *mut ibv_pd,
}
// SAFETY: owned by one reactor thread at a time.
unsafe impl Send for Pd {}

impl Pd {
    /// Allocates `len` zeroed bytes on the calling thread (its NUMA node, by first touch) and
    /// registers them for local writes and remote reads/writes.
    pub fn register(&self, len: usize) -> Result<Region, VerbsError> {
        let mut mem = vec![0u8; len].into_boxed_slice();
        // Touch every page on this thread so the memory lands on its node now.
        for i in (0..len).step_by(4096) {
            mem[i] = 0;
        }
        let base = Box::into_raw(mem) as *mut u8;
        let access = ibv_access_flags::IBV_ACCESS_LOCAL_WRITE
            | ibv_access_flags::IBV_ACCESS_REMOTE_READ
            | ibv_access_flags::IBV_ACCESS_REMOTE_WRITE;
        // SAFETY: [base, base+len) is a live allocation owned by the Region below.
        let mr = unsafe { ibv_reg_mr(self.pd, base as *mut _, len, access.0 as i32) };
        if mr.is_null() {
            let e = err("ibv_reg_mr");
            // SAFETY: reconstitutes the box leaked above; not registered.
            drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(base, len)) });
            return Err(e);
        }
        // SAFETY: `mr` is live.
        let (lkey, rkey) = unsafe { ((*mr).lkey, (*mr).rkey) };
        Ok(Region {
            base,
            len,
            mr,
            lkey,
            rkey,
        })
    }

    pub fn create_srq(&self, max_wr: u32) -> Result<Srq, VerbsError> {
        // SAFETY: zeroed init attr is valid.
        let mut a: ibv_srq_init_attr = unsafe { std::mem::zeroed() };
        a.attr.max_wr = max_wr;
        a.attr.max_sge = 1;
        // SAFETY: pd is live.
        let srq = unsafe { ibv_create_srq(self.pd, &mut a) };
        if srq.is_null() {
            return Err(err("ibv_create_srq"));
        }
        Ok(Srq { srq })
    }
}

impl Drop for Pd {
    fn drop(&mut self) {
        // SAFETY: every QP, SRQ and MR on this PD was destroyed before (field order in the
        // owner and the reactor's shutdown order).
        unsafe { ibv_dealloc_pd(self.pd) };
    }
}

/// Registered memory, owned by one reactor. Byte ranges are handed out by offset; the caller's
/// request state machine guarantees a range is not being DMA'd while it reads or writes it.
pub struct Region {
    base: *mut u8,
    len: usize,
    mr: *mut ibv_mr,
    pub lkey: u32,
    pub rkey: u32,
}

// SAFETY: owned by one reactor thread at a time.
unsafe impl Send for Region {}

impl Region {
    /// Device address of byte `off` (the region is registered at its virtual address).
    pub fn addr(&self, off: usize) -> u64 {
        self.base as u64 + off as u64
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes `[off, off+n)`; panics if out of the region (callers compute offsets from sizes
    /// fixed at creation).
    pub fn bytes(&self, off: usize, n: usize) -> &[u8] {
        assert!(off.checked_add(n).is_some_and(|e| e <= self.len));
        // SAFETY: in bounds (checked); the range is not the target of an in-flight RDMA
        // operation or receive (request state machine), so no one writes it meanwhile.
        unsafe { std::slice::from_raw_parts(self.base.add(off), n) }
    }

    /// Mutable bytes `[off, off+n)`; see [`Region::bytes`].
    pub fn bytes_mut(&mut self, off: usize, n: usize) -> &mut [u8] {
        assert!(off.checked_add(n).is_some_and(|e| e <= self.len));
        // SAFETY: in bounds; `&mut self` excludes other references we hand out; the device does
        // not touch the range while the request owning it is in a CPU state.
        unsafe { std::slice::from_raw_parts_mut(self.base.add(off), n) }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: no work request refers to the region any more (QPs destroyed first).
        unsafe {
            ibv_dereg_mr(self.mr);
            drop(Box::from_raw(ptr::slice_from_raw_parts_mut(
                self.base, self.len,
            )));
        }
    }
}

/// A work completion, copied out of the CQ.
#[derive(Clone, Copy, Debug, Default)]
pub struct Wc {
    pub wr_id: u64,
    /// 0 = success (IBV_WC_SUCCESS).
    pub status: u32,
    pub opcode: u32,
    pub byte_len: u32,
    pub qp_num: u32,
}

/// `opcode` values of receive completions.
pub const WC_RECV: u32 = ibv_wc_opcode::IBV_WC_RECV;

/// The text of a completion status.
pub fn wc_status_name(s: u32) -> String {
    // SAFETY: returns a static string for any value.
    let p = unsafe { ibv_wc_status_str(s) };
    if p.is_null() {
        return format!("status {s}");
    }
    // SAFETY: static NUL-terminated string.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// Completions polled per `ibv_poll_cq` call.
pub const POLL_BATCH: usize = 32;

/// A completion queue polled by its owner.
pub struct Cq {
    cq: *mut ibv_cq,
    wcs: [ibv_wc; POLL_BATCH],
}

// SAFETY: owned by one reactor thread at a time.
unsafe impl Send for Cq {}

impl Cq {
    /// Polls up to [`POLL_BATCH`] completions into `out`; returns how many.
    pub fn poll(&mut self, out: &mut [Wc; POLL_BATCH]) -> Result<usize, VerbsError> {
        // SAFETY: cq is live; `wcs` has room for POLL_BATCH entries.
        let n = unsafe { ibv_poll_cq(self.cq, POLL_BATCH as i32, self.wcs.as_mut_ptr()) };
        if n < 0 {
            return Err(err_rc("ibv_poll_cq", -n));
        }
        let n = n as usize;
        for (o, w) in out.iter_mut().zip(&self.wcs[..n]) {
            *o = Wc {
                wr_id: w.wr_id,
                status: w.status,
                opcode: w.opcode,
                byte_len: w.byte_len,
                qp_num: w.qp_num,
            };
        }
        Ok(n)
    }
}

impl Drop for Cq {
    fn drop(&mut self) {
        // SAFETY: every QP using this CQ was destroyed first.
        unsafe { ibv_destroy_cq(self.cq) };
    }
}

/// Receives posted per `ibv_post_srq_recv` call at most.
pub const RECV_BATCH: usize = 32;

/// A shared receive queue.
pub struct Srq {
    srq: *mut ibv_srq,
}

// SAFETY: owned by one reactor thread at a time.
unsafe impl Send for Srq {}

impl Srq {
    /// Posts receives for `bufs` (`(wr_id, offset in region)`), each `len` bytes of `region`,
    /// as one chain per [`RECV_BATCH`].
    pub fn post_recvs(
        &self,
        region: &Region,
        bufs: &[(u64, usize)],
        len: u32,
    ) -> Result<(), VerbsError> {
        for chunk in bufs.chunks(RECV_BATCH) {
            let mut sges = [ibv_sge {
                addr: 0,
                length: 0,
                lkey: 0,
            }; RECV_BATCH];
            let mut wrs = [ibv_recv_wr {
                wr_id: 0,
                next: ptr::null_mut(),
                sg_list: ptr::null_mut(),
                num_sge: 1,
            }; RECV_BATCH];
            for (i, &(wr_id, off)) in chunk.iter().enumerate() {
                assert!(off + len as usize <= region.len);
                sges[i] = ibv_sge {
                    addr: region.addr(off),
                    length: len,
                    lkey: region.lkey,
                };
                wrs[i].wr_id = wr_id;
            }
            let base = wrs.as_mut_ptr();
            for i in 0..chunk.len() {
                // SAFETY: i and i+1 are within the array; pointers into stack arrays that live
                // through the post call (the provider copies the WRs).
                unsafe {
                    (*base.add(i)).sg_list = sges.as_mut_ptr().add(i);
                    (*base.add(i)).next = if i + 1 < chunk.len() {
                        base.add(i + 1)
                    } else {
                        ptr::null_mut()
                    };
                }
            }
            let mut bad: *mut ibv_recv_wr = ptr::null_mut();
            // SAFETY: srq is live; the chain is well formed (above); buffers are in a registered
            // region owned by the caller and not otherwise in use (they are free receive slots).
            let rc = unsafe { ibv_post_srq_recv(self.srq, base, &mut bad) };
            if rc != 0 {
                return Err(err_rc("ibv_post_srq_recv", rc));
            }
        }
        Ok(())
    }
}

impl Drop for Srq {
    fn drop(&mut self) {
        // SAFETY: every QP attached to the SRQ was destroyed first.
        unsafe { ibv_destroy_srq(self.srq) };
    }
}

/// One send-queue work request.
#[derive(Clone, Copy, Debug)]
pub enum SendWr {
    /// SEND of `len` bytes at `off` of the region.
    Send { wr_id: u64, off: usize, len: u32 },
    /// RDMA READ of `len` bytes from the host's (`raddr`, `rkey`) into `off`.
    Read {
        wr_id: u64,
        off: usize,
        len: u32,
        raddr: u64,
        rkey: u32,
    },
    /// RDMA WRITE of `len` bytes at `off` to the host's (`raddr`, `rkey`).
    Write {
        wr_id: u64,
        off: usize,
        len: u32,
        raddr: u64,
        rkey: u32,
    },
}

/// A connection's RC queue pair (destroyed with its [`CmId`]).
pub struct Qp {
    qp: *mut ibv_qp,
    pub qpn: u32,
}

// SAFETY: posted to by one reactor thread only.
unsafe impl Send for Qp {}

impl Qp {
    /// Posts `wrs` (at most 4) as one chain: one doorbell. Every WR is signaled, so each has
    /// its own completion (the request state machine counts them).
    pub fn post(&self, region: &Region, wrs: &[SendWr]) -> Result<(), VerbsError> {
        const MAX: usize = 4;
        assert!(!wrs.is_empty() && wrs.len() <= MAX);
        // SAFETY: ibv_send_wr and ibv_sge are plain data; zeroed values are valid.
        let mut w: [ibv_send_wr; MAX] = unsafe { std::mem::zeroed() };
        let mut s = [ibv_sge {
            addr: 0,
            length: 0,
            lkey: 0,
        }; MAX];
        for (i, wr) in wrs.iter().enumerate() {
            let (wr_id, off, len, opcode, remote) = match *wr {
                SendWr::Send { wr_id, off, len } => {
                    (wr_id, off, len, ibv_wr_opcode::IBV_WR_SEND, None)
                }
                SendWr::Read {
                    wr_id,
                    off,
                    len,
                    raddr,
                    rkey,
                } => (
                    wr_id,
                    off,
                    len,
                    ibv_wr_opcode::IBV_WR_RDMA_READ,
                    Some((raddr, rkey)),
                ),
                SendWr::Write {
                    wr_id,
                    off,
                    len,
                    raddr,
                    rkey,
                } => (
                    wr_id,
                    off,
                    len,
                    ibv_wr_opcode::IBV_WR_RDMA_WRITE,
                    Some((raddr, rkey)),
                ),
            };
            assert!(off + len as usize <= region.len);
            s[i] = ibv_sge {
                addr: region.addr(off),
                length: len,
                lkey: region.lkey,
            };
            w[i].wr_id = wr_id;
            w[i].num_sge = 1;
            w[i].opcode = opcode;
            w[i].send_flags = ibv_send_flags::IBV_SEND_SIGNALED.0;
            if let Some((raddr, rkey)) = remote {
                w[i].wr.rdma = rdma_t {
                    remote_addr: raddr,
                    rkey,
                };
            }
        }
        let base = w.as_mut_ptr();
        for i in 0..wrs.len() {
            // SAFETY: indexes within the arrays; the arrays outlive the post call.
            unsafe {
                (*base.add(i)).sg_list = s.as_mut_ptr().add(i);
                (*base.add(i)).next = if i + 1 < wrs.len() {
                    base.add(i + 1)
                } else {
                    ptr::null_mut()
                };
            }
        }
        let mut bad: *mut ibv_send_wr = ptr::null_mut();
        // SAFETY: qp is live (its CmId is held by the same connection); the chain is well
        // formed; the local ranges are registered and owned by requests in a posted state.
        let rc = unsafe { ibv_post_send(self.qp, base, &mut bad) };
        if rc != 0 {
            return Err(err_rc("ibv_post_send", rc));
        }
        Ok(())
    }

    /// Moves the QP to the error state: outstanding work requests complete with a flush error.
    pub fn set_error(&self) {
        // SAFETY: zeroed ibv_qp_attr is valid; only qp_state is read with this mask.
        let mut a: ibv_qp_attr = unsafe { std::mem::zeroed() };
        a.qp_state = ibv_qp_state::IBV_QPS_ERR;
        // SAFETY: qp is live.
        unsafe { ibv_modify_qp(self.qp, &mut a, ibv_qp_attr_mask::IBV_QP_STATE.0 as i32) };
    }
}
