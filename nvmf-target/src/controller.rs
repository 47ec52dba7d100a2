//! The NVMe controller model both transports share: Fabrics Connect acceptance, Property
//! Get/Set, the admin command set (Identify, Get Log Page with the discovery log, Get/Set
//! Features, Keep Alive, Asynchronous Event Request, Abort) and keep-alive expiry.
//!
//! Everything here runs on the reactor that owns the queue, on the slow path (admin and fabrics
//! commands). A transport keeps only what is its own: where the command's data comes from and
//! goes to (TCP: in-capsule data, R2T, C2HData PDUs; RDMA: registered buffers, RDMA READ and
//! WRITE), its connection states and how a response is sent. So the two transports answer every
//! admin command with the same status, the same data and the same controller state.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nvme_proto::fabrics::{
    self, connect_cmd_offset as cmd_off, connect_data_offset as data_off, prop, Cap, Cc,
    ConnectCmd, ConnectData, Csts, Nqn, PropertyGet, PropertySet, PropertySize, CNTLID_DYNAMIC,
    CNTLID_STATIC_ANY,
};
use nvme_proto::identify::{
    self as id, cntrltype, IdentifyController, IdentifyNamespace, NsDescriptor, IDENTIFY_SIZE,
};
use nvme_proto::log::{self as plog, DiscoveryEntry, DiscoveryLog, SmartLog};
use nvme_proto::nvme::{feature, AdminOpcode, Cid, Nsid, Sqe, Status};

use crate::pollgroup::Ctx;
use crate::subsystem::{Controller, CreateCtrlError, Subsystem, SubsystemKind};

/// Outstanding Asynchronous Event Requests allowed (AERL + 1).
pub const AER_LIMIT: usize = 4;
/// VS reported: NVMe 1.4.
pub const VERSION: u32 = fabrics::VS_1_4;

/// The transport a queue runs on, where the controller's answers differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Rdma,
}

impl Transport {
    /// The transport's name in log lines and JSON (`tcp`, `rdma`).
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Rdma => "rdma",
        }
    }
}

/// A refused Connect: the status and completion dword 0 the host gets (Connect's
/// invalid-parameter locator), and the field and reason the target's log line names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: Status,
    pub dw0: u32,
    /// The offending field, as the specification names it (`hostnqn`, `qid`, `sqsize`...).
    pub field: &'static str,
    /// Why, in a few lowercase words.
    pub reason: &'static str,
}

impl Refusal {
    /// A refusal whose status carries no parameter locator.
    pub fn new(status: Status, field: &'static str, reason: &'static str) -> Refusal {
        Refusal {
            status,
            dw0: 0,
            field,
            reason,
        }
    }
}

/// Connect's "invalid parameters" refusal naming the offending field (`in_data`: the offset is
/// in the Connect data, else in the command).
pub fn invalid_param(
    in_data: bool,
    offset: u16,
    field: &'static str,
    reason: &'static str,
) -> Refusal {
    Refusal {
        status: Status::CONNECT_INVALID_PARAMETERS,
        dw0: fabrics::connect_invalid_param_dw0(in_data, offset),
        field,
        reason,
    }
}

/// Prints the one line a refused Connect gets (host address, both NQNs as the host sent them,
/// the field and the reason) and counts it in the counters page. `data` is the Connect data as
/// received (possibly short or malformed: the NQNs are shown as far as they can be read).
pub fn connect_refused(
    r: &Refusal,
    transport: Transport,
    peer: impl std::fmt::Display,
    qid: u16,
    data: &[u8],
    ctx: &Ctx,
) {
    let nqn_at = |off: u16| {
        let f = data
            .get(usize::from(off)..usize::from(off) + 256)
            .unwrap_or(&[]);
        let end = f.iter().position(|&b| b == 0).unwrap_or(f.len());
        match String::from_utf8_lossy(&f[..end]) {
            s if s.is_empty() => "(empty)".to_string(),
            s => s
                .chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .collect(),
        }
    };
    eprintln!(
        "ringside-tgt: connect refused: {} host {peer} qid {qid} subnqn {} hostnqn {}: {}: {} ({})",
        transport.name(),
        nqn_at(data_off::SUBNQN),
        nqn_at(data_off::HOSTNQN),
        r.field,
        r.reason,
        r.status,
    );
    ctx.trace.counters(|c| c.connect_refused());
}

/// A Fabrics Connect succeeded on the qpair in counters slot `slot`: names it in the counters
/// page (`cntlid << 16 | qid` and the queue size granted) and records the connect tracepoint.
/// Both transports call it.
pub fn connected(ctx: &Ctx, slot: u16, cid: u16, qid: u16, cntlid: u16, queue_size: u32) {
    ctx.trace.counters(|c| {
        c.qpair_ident(slot, (u64::from(cntlid) << 16) | u64::from(qid));
        c.qpair_queue_size(slot, queue_size);
    });
    ctx.trace.tp(
        crate::trace::TP_QPAIR_CONNECT,
        slot,
        cid,
        u64::from(qid),
        u64::from(cntlid),
    );
}

/// Prints the one line a connection closed on a protocol error gets and counts it in the
/// counters page. `subsys`/`ctrl`: what the queue belonged to, if it got that far.
pub fn protocol_close(
    transport: Transport,
    peer: impl std::fmt::Display,
    subsys: Option<&Arc<Subsystem>>,
    ctrl: Option<&Arc<Controller>>,
    field: &str,
    reason: &str,
    ctx: &Ctx,
) {
    let none = "(not connected)";
    eprintln!(
        "ringside-tgt: connection closed on a protocol error: {} host {peer} subnqn {} hostnqn {}: {field}: {reason}",
        transport.name(),
        subsys.map_or(none, |s| s.nqn.as_str()),
        ctrl.map_or(none, |c| if c.hostnqn.is_empty() { "(empty)" } else { c.hostnqn.as_str() }),
    );
    ctx.trace.counters(|c| c.protocol_close());
}

/// What an admin queue holds besides its queue: controller registers, keep-alive and held AERs.
/// `H` is how the transport names a held AER (TCP: its command id; RDMA: its request index);
/// each is kept with its command id, which the host may reuse once it abandoned the AER.
#[derive(Debug)]
pub struct AdminState<H> {
    pub cc: u32,
    pub csts: u32,
    pub kato_ms: u32,
    pub last_keep_alive: Instant,
    pub aers: Vec<(Cid, H)>,
    pub async_event_config: u32,
    pub vwc_enabled: bool,
}

impl<H> AdminState<H> {
    fn new(kato_ms: u32, now: Instant) -> Self {
        AdminState {
            cc: 0,
            csts: 0,
            kato_ms,
            last_keep_alive: now,
            aers: Vec::with_capacity(AER_LIMIT),
            async_event_config: 0,
            vwc_enabled: true,
        }
    }

    /// A new admin command carries the command id of a held AER: the host has abandoned that
    /// AER (SPDK's host completes its outstanding AERs itself at detach and reuses their ids,
    /// e.g. for a Property Get of CC), so it stops being held and its id is free again. Returns
    /// the abandoned AER for the transport to release without a response.
    pub fn abandon_aer(&mut self, cid: Cid) -> Option<H> {
        let i = self.aers.iter().position(|(c, _)| *c == cid)?;
        Some(self.aers.swap_remove(i).1)
    }

    /// Whether the host missed its keep-alive: KATO plus one check interval of grace.
    pub fn keep_alive_expired(&self, now: Instant, check_interval_ms: u32) -> bool {
        self.kato_ms > 0
            && now.saturating_duration_since(self.last_keep_alive)
                > Duration::from_millis(u64::from(self.kato_ms) + u64::from(check_interval_ms))
    }
}

/// The keep-alive check of a connection's timer tick, for every transport: `true` when the host
/// of this admin queue missed its keep-alive; the controller is then torn down (one line naming
/// it, its host and `peer`) and the caller terminates the connection.
pub fn keep_alive_tick<T>(
    admin: Option<&AdminState<T>>,
    subsys: Option<&Arc<Subsystem>>,
    ctrl: Option<&Arc<Controller>>,
    peer: impl std::fmt::Display,
    ctx: &Ctx,
) -> bool {
    let expired =
        admin.is_some_and(|a| a.keep_alive_expired(ctx.now, ctx.keep_alive().check_interval_ms));
    if expired {
        if let (Some(s), Some(c)) = (subsys, ctrl) {
            eprintln!(
                "ringside-tgt: keep-alive expired for controller {} of {} (host {}, {peer}); tearing it down",
                c.cntlid, s.nqn, c.hostnqn
            );
            s.remove_controller(c.cntlid);
        }
    }
    expired
}

/// Completion dword 0 of an AER reporting Namespace Attribute Changed: event type Notice (2),
/// information 0, log page Changed Namespace List (4).
pub const AEN_NS_ATTRIBUTE_CHANGED: u32 = 0x0004_0002;

/// Takes the controller's pending Namespace Attribute Changed notice if the host enabled such
/// notices (Set Features Asynchronous Event Configuration bit 8): the AER completion dword 0.
fn take_ns_notice<H>(a: &AdminState<H>, ctrl: &Controller) -> Option<u32> {
    if a.async_event_config & id::oaes::NS_ATTRIBUTE == 0 {
        return None;
    }
    ctrl.ns_notice
        .swap(false, Ordering::AcqRel)
        .then_some(AEN_NS_ATTRIBUTE_CHANGED)
}

/// At the admin queue's timer tick: a held AER to complete now with this dword 0, when a
/// notice is pending (a namespace was added or removed).
pub fn due_event<H>(a: &mut AdminState<H>, ctrl: &Controller) -> Option<(Cid, H, u32)> {
    if a.aers.is_empty() || !ctrl.ns_notice.load(Ordering::Relaxed) {
        return None;
    }
    let dw0 = take_ns_notice(a, ctrl)?;
    let (cid, h) = a.aers.remove(0);
    Some((cid, h, dw0))
}

/// Decodes a Connect command and checks its record format.
pub fn connect_command(sqe: &Sqe) -> Result<ConnectCmd, Refusal> {
    let cmd = ConnectCmd::from_sqe(sqe)
        .map_err(|_| Refusal::new(Status::INVALID_FIELD, "sgl", "not a connect command"))?;
    if cmd.recfmt != 0 {
        return Err(Refusal::new(
            Status::CONNECT_INCOMPATIBLE_FORMAT,
            "recfmt",
            "unknown record format",
        ));
    }
    Ok(cmd)
}

/// An accepted Connect: what the queue now belongs to.
pub struct Accepted<H> {
    pub subsys: Arc<Subsystem>,
    pub ctrl: Arc<Controller>,
    /// The new controller's admin state (admin queue only).
    pub admin: Option<Box<AdminState<H>>>,
    /// Queue entries granted (SQSIZE + 1).
    pub entries: u32,
}

/// The Connect data as the target reads it: like [`ConnectData`], but an empty (all-zero) Host
/// NQN is allowed and reads as `""`. SPDK's host sends one by default; SPDK's and Linux's
/// targets let such a host into a subsystem that allows any host, and so do we.
struct ConnectFields {
    hostid: [u8; 16],
    cntlid: u16,
    subnqn: String,
    hostnqn: String,
}

fn connect_fields(data: &[u8]) -> Result<ConnectFields, Refusal> {
    let bad = |e: nvme_proto::ProtoError| match e {
        nvme_proto::ProtoError::InvalidField { offset, reason, .. } => {
            let field = if offset as u16 == data_off::SUBNQN {
                "subnqn"
            } else if offset as u16 == data_off::HOSTNQN {
                "hostnqn"
            } else {
                "connect data"
            };
            invalid_param(true, offset as u16, field, reason)
        }
        _ => invalid_param(true, 0, "connect data", "shorter than 1024 bytes"),
    };
    let host = data
        .get(usize::from(data_off::HOSTNQN)..usize::from(data_off::HOSTNQN) + 256)
        .unwrap_or(&[]);
    if host.first() == Some(&0) {
        // Empty Host NQN: decode the rest with a placeholder in its place.
        let mut copy = [0u8; fabrics::CONNECT_DATA_SIZE];
        copy.copy_from_slice(
            data.get(..fabrics::CONNECT_DATA_SIZE)
                .ok_or_else(|| invalid_param(true, 0, "connect data", "shorter than 1024 bytes"))?,
        );
        copy[usize::from(data_off::HOSTNQN)] = b'-';
        let cd = ConnectData::decode(&copy).map_err(bad)?;
        return Ok(ConnectFields {
            hostid: cd.hostid,
            cntlid: cd.cntlid,
            subnqn: cd.subnqn.as_str().to_string(),
            hostnqn: String::new(),
        });
    }
    let cd = ConnectData::decode(data).map_err(bad)?;
    Ok(ConnectFields {
        hostid: cd.hostid,
        cntlid: cd.cntlid,
        subnqn: cd.subnqn.as_str().to_string(),
        hostnqn: cd.hostnqn.as_str().to_string(),
    })
}

/// Records, for the agent's per-host series, which host the qpair in trace slot `slot` serves
/// (trace-ring ABI 1.6): the controller's host NQN, or the host's address (without the port,
/// which changes per connection) when the NQN is empty. Both transports call it once their
/// Connect is accepted.
pub fn trace_qpair_host(ctx: &Ctx, slot: u16, ctrl: Option<&Controller>, peer: &str) {
    let host = match ctrl.map(|c| c.hostnqn.as_str()) {
        Some(nqn) if !nqn.is_empty() => nqn.to_string(),
        _ => peer
            .parse::<std::net::SocketAddr>()
            .map_or_else(|_| peer.to_string(), |a| a.ip().to_string()),
    };
    ctx.trace.counters(|c| c.qpair_host(slot, &host));
}

/// Accepts or refuses a Connect whose transport checks passed (`data`: the Connect data).
/// An admin Connect creates a controller; an I/O Connect claims its queue id on one.
pub fn accept_connect<H>(cmd: &ConnectCmd, data: &[u8], ctx: &Ctx) -> Result<Accepted<H>, Refusal> {
    let cd = connect_fields(data)?;
    let Some(subsys) = ctx.subsystem(&cd.subnqn).cloned() else {
        return Err(invalid_param(
            true,
            data_off::SUBNQN,
            "subnqn",
            "no such subsystem",
        ));
    };
    let not_allowed = || {
        Refusal::new(
            Status::CONNECT_INVALID_HOST,
            "hostnqn",
            if cd.hostnqn.is_empty() {
                "empty host nqn on a subsystem with an allow-list"
            } else {
                "not on the subsystem's allowed hosts"
            },
        )
    };
    if subsys.kind == SubsystemKind::Nvm && !subsys.host_allowed(&cd.hostnqn) {
        return Err(not_allowed());
    }
    let limits = ctx.limits();
    let entries = cmd.queue_entries();
    let max = if cmd.qid == 0 {
        limits.max_admin_queue_depth
    } else {
        limits.max_queue_depth
    };
    if cmd.sqsize == 0 || entries > max {
        return Err(invalid_param(
            false,
            cmd_off::SQSIZE,
            "sqsize",
            if cmd.sqsize == 0 {
                "zero"
            } else {
                "above the queue depth limit"
            },
        ));
    }
    if cmd.qid == 0 {
        if cd.cntlid != CNTLID_DYNAMIC && cd.cntlid != CNTLID_STATIC_ANY {
            return Err(invalid_param(
                true,
                data_off::CNTLID,
                "cntlid",
                "admin connect must ask for a dynamic controller",
            ));
        }
        let ctrl = subsys
            .create_controller(&cd.hostnqn, cd.hostid)
            .map_err(|e| match e {
                CreateCtrlError::HostNotAllowed => not_allowed(),
                CreateCtrlError::NoFreeCntlid => Refusal::new(
                    Status::CONNECT_CONTROLLER_BUSY,
                    "cntlid",
                    "no free controller id",
                ),
            })?;
        let kato = if cmd.kato == 0 && subsys.kind == SubsystemKind::Nvm {
            ctx.keep_alive().default_timeout_ms
        } else {
            cmd.kato
        };
        return Ok(Accepted {
            subsys,
            ctrl,
            admin: Some(Box::new(AdminState::new(kato, ctx.now))),
            entries,
        });
    }
    if subsys.kind == SubsystemKind::Discovery {
        return Err(invalid_param(
            false,
            cmd_off::QID,
            "qid",
            "the discovery subsystem has no i/o queues",
        ));
    }
    let Some(ctrl) = subsys.controller(cd.cntlid) else {
        return Err(invalid_param(
            true,
            data_off::CNTLID,
            "cntlid",
            "no such controller",
        ));
    };
    if ctrl.is_failed() {
        return Err(invalid_param(
            true,
            data_off::CNTLID,
            "cntlid",
            "controller is being torn down",
        ));
    }
    if ctrl.hostnqn != cd.hostnqn {
        return Err(invalid_param(
            true,
            data_off::HOSTNQN,
            "hostnqn",
            "differs from the admin queue's",
        ));
    }
    if ctrl.hostid != cd.hostid {
        return Err(invalid_param(
            true,
            data_off::HOSTID,
            "hostid",
            "differs from the admin queue's",
        ));
    }
    if u32::from(cmd.qid) > granted_queues(Some(&ctrl), ctx) {
        return Err(invalid_param(
            false,
            cmd_off::QID,
            "qid",
            "above the i/o queues granted",
        ));
    }
    if !ctrl.claim_qid(cmd.qid) {
        return Err(invalid_param(
            false,
            cmd_off::QID,
            "qid",
            "already connected",
        ));
    }
    Ok(Accepted {
        subsys,
        ctrl,
        admin: None,
        entries,
    })
}

/// CAP: the I/O queue limit, for discovery controllers too (Linux sizes its queues from MQES
/// and warns when a discovery controller reports less than its default of 128; the admin
/// queue's own limit is enforced at Connect).
fn cap(ctx: &Ctx) -> u64 {
    let depth = ctx.limits().max_queue_depth;
    Cap {
        mqes: (depth - 1) as u16,
        cqr: true,
        ams: 0,
        to: 30,
        dstrd: 0,
        nssrs: false,
        css: Cap::CSS_NVM,
        bps: false,
        mpsmin: 0,
        mpsmax: 0,
    }
    .to_u64()
}

/// Property Get: the property's value.
pub fn property_get<H>(admin: Option<&AdminState<H>>, sqe: &Sqe, ctx: &Ctx) -> Result<u64, Status> {
    let pg = PropertyGet::from_sqe(sqe).map_err(|_| Status::INVALID_FIELD)?;
    if prop::size_of(pg.offset) != Some(pg.size) {
        return Err(Status::INVALID_FIELD);
    }
    let (cc, csts) = admin.map_or((0, 0), |a| (a.cc, a.csts));
    match pg.offset {
        prop::CAP => Ok(cap(ctx)),
        prop::VS => Ok(u64::from(VERSION)),
        prop::CC => Ok(u64::from(cc)),
        prop::CSTS => Ok(u64::from(csts)),
        _ => Err(Status::INVALID_FIELD),
    }
}

/// Property Set (CC only): enabling sets CSTS.RDY; a shutdown notification completes at once
/// (RAM and null backends have nothing to write back).
pub fn property_set<H>(admin: Option<&mut AdminState<H>>, sqe: &Sqe) -> Result<(), Status> {
    let ps = PropertySet::from_sqe(sqe).map_err(|_| Status::INVALID_FIELD)?;
    if ps.offset != prop::CC || ps.size != PropertySize::Four {
        return Err(Status::INVALID_FIELD);
    }
    let a = admin.ok_or(Status::COMMAND_SEQUENCE_ERROR)?;
    let new = Cc::from_u32(ps.value as u32);
    let mut csts = Csts::from_u32(a.csts);
    csts.shst = if new.shn != fabrics::shn::NONE {
        fabrics::shst::COMPLETE
    } else {
        fabrics::shst::NORMAL
    };
    csts.rdy = new.en;
    a.cc = new.to_u32();
    a.csts = csts.to_u32();
    Ok(())
}

/// The controller side an admin command sees.
pub struct AdminQueue<'a, H> {
    pub transport: Transport,
    pub subsys: Option<&'a Arc<Subsystem>>,
    pub ctrl: Option<&'a Arc<Controller>>,
    pub admin: Option<&'a mut AdminState<H>>,
}

/// How an admin command ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Complete now with status, dw0, dw1 and no data.
    Status(Status, u32, u32),
    /// Complete successfully after sending the `c2h_len` bytes left in `out`.
    Data,
    /// Held without a response (an AER, until an event or the controller's end).
    Held,
}

fn status(s: Status) -> Reply {
    Reply::Status(s, 0, 0)
}

/// Executes an admin command. `c2h_len` is the controller-to-host transfer the host described
/// (already checked by the transport); `aer` names the command should it be held; data for
/// the host goes into `out`, exactly `c2h_len` bytes when the reply is [`Reply::Data`].
pub fn admin_command<H>(
    q: AdminQueue<'_, H>,
    sqe: &Sqe,
    c2h_len: usize,
    aer: H,
    out: &mut Vec<u8>,
    ctx: &Ctx,
) -> Reply {
    let discovery = q.subsys.is_some_and(|s| s.kind == SubsystemKind::Discovery);
    let done = |r: Result<u32, Status>| match r {
        Ok(dw0) => Reply::Status(Status::SUCCESS, dw0, 0),
        Err(s) => status(s),
    };
    let data = |r: Result<(), Status>| match r {
        Ok(()) => Reply::Data,
        Err(s) => status(s),
    };
    match AdminOpcode::from_u8(sqe.opcode) {
        Some(AdminOpcode::Identify) => data(identify(&q, sqe, c2h_len, out, ctx)),
        Some(AdminOpcode::GetLogPage) => data(get_log_page(&q, sqe, c2h_len, out, ctx)),
        Some(AdminOpcode::KeepAlive) => {
            if let Some(a) = q.admin {
                a.last_keep_alive = ctx.now;
            }
            status(Status::SUCCESS)
        }
        Some(AdminOpcode::GetFeatures) => done(get_features(&q, sqe, discovery, ctx)),
        Some(AdminOpcode::SetFeatures) => done(set_features(q, sqe, discovery, ctx)),
        Some(AdminOpcode::AsyncEventRequest) => {
            let Some(a) = q.admin else {
                return status(Status::COMMAND_SEQUENCE_ERROR);
            };
            if a.aers.len() >= AER_LIMIT {
                return status(Status::ASYNC_EVENT_REQUEST_LIMIT_EXCEEDED);
            }
            // An event that waited for an AER completes this one at once.
            if let Some(dw0) = q.ctrl.and_then(|c| take_ns_notice(a, c)) {
                return Reply::Status(Status::SUCCESS, dw0, 0);
            }
            // Held until an event happens or the controller goes away.
            a.aers.push((sqe.cid, aer));
            Reply::Held
        }
        // dw0 bit 0 set: command not aborted (everything runs to completion anyway).
        Some(AdminOpcode::Abort) if !discovery => Reply::Status(Status::SUCCESS, 1, 0),
        _ => status(Status::INVALID_OPCODE),
    }
}

fn identify<H>(
    q: &AdminQueue<'_, H>,
    sqe: &Sqe,
    len: usize,
    out: &mut Vec<u8>,
    ctx: &Ctx,
) -> Result<(), Status> {
    if len == 0 {
        return Err(Status::INVALID_FIELD);
    }
    let subsys = q.subsys.ok_or(Status::COMMAND_SEQUENCE_ERROR)?;
    let discovery = subsys.kind == SubsystemKind::Discovery;
    let mut page = [0u8; IDENTIFY_SIZE];
    let nsid = sqe.nsid.0;
    let nn = subsys.max_nsid;
    match sqe.identify_cns() {
        id::cns::CONTROLLER => {
            let l = ctx.limits();
            let ctrl = IdentifyController {
                vid: 0x1d1d,
                ssvid: 0x1d1d,
                sn: subsys.serial.clone(),
                mn: subsys.model.clone(),
                fr: env!("CARGO_PKG_VERSION").to_string(),
                cmic: if discovery {
                    0
                } else {
                    id::cmic::MULTI_CONTROLLER
                },
                mdts: (l.max_io_size.0 / 4096).trailing_zeros() as u8,
                cntlid: q.ctrl.map_or(0, |c| c.cntlid),
                ver: VERSION,
                oaes: if discovery { 0 } else { id::oaes::NS_ATTRIBUTE },
                ctratt: id::ctratt::HOST_ID_128,
                cntrltype: if discovery {
                    cntrltype::DISCOVERY
                } else {
                    cntrltype::IO
                },
                acl: 3,
                aerl: (AER_LIMIT - 1) as u8,
                lpa: id::lpa::EXTENDED_DATA,
                elpe: 0,
                kas: (ctx.keep_alive().check_interval_ms / 100).max(1) as u16,
                maxcmd: l.max_queue_depth as u16,
                nn: if discovery { 0 } else { nn },
                oncs: if discovery {
                    0
                } else {
                    id::oncs::DATASET_MANAGEMENT | id::oncs::WRITE_ZEROES
                },
                vwc: if discovery {
                    0
                } else {
                    // Flush per namespace only: a broadcast Flush would have to reach every
                    // namespace's backend (uring: fdatasync) before completing.
                    id::vwc::PRESENT | id::vwc::FLUSH_BROADCAST_UNSUPPORTED
                },
                // How data may be described: TCP's transport data blocks, RDMA's keyed SGLs
                // (remote memory); in-capsule data with offsets on both.
                sgls: match q.transport {
                    Transport::Tcp => id::sgls::TRANSPORT_DATA_BLOCK,
                    Transport::Rdma => id::sgls::KEYED_DATA_BLOCK,
                } | id::sgls::SUPPORTED
                    | id::sgls::OFFSET,
                subnqn: subsys.nqn.clone(),
                ioccsz: ((64 + l.in_capsule_data_size.0) / 16) as u32,
                iorcsz: 1,
                icdoff: 0,
                fcatt: 0,
                msdbd: 1,
                ofcs: 1,
                ..IdentifyController::default()
            };
            ctrl.encode(&mut page).map_err(|_| Status::INTERNAL_ERROR)?;
        }
        id::cns::NAMESPACE if !discovery => match subsys.namespace(nsid) {
            Some(ns) => {
                let mut n = IdentifyNamespace::simple(ns.num_blocks, ns.lbads());
                n.nmic = 1; // may be attached to several controllers
                n.nguid = ns.nguid;
                n.encode(&mut page).map_err(|_| Status::INTERNAL_ERROR)?;
            }
            // Valid but inactive NSIDs read as zeros.
            None if nsid != 0 && nsid <= nn => {}
            None => return Err(Status::INVALID_NAMESPACE_OR_FORMAT),
        },
        id::cns::ACTIVE_NS_LIST if !discovery => {
            if nsid >= 0xffff_fffe {
                return Err(Status::INVALID_NAMESPACE_OR_FORMAT);
            }
            let ids: Vec<Nsid> = subsys.namespaces().iter().map(|n| Nsid(n.nsid)).collect();
            id::encode_active_ns_list(&ids, Nsid(nsid), &mut page)
                .map_err(|_| Status::INTERNAL_ERROR)?;
        }
        // NVM command set specific Identify Controller (Linux asks for it with VS >= 1.1):
        // all limits zero, i.e. none beyond MDTS.
        id::cns::IO_CS_CONTROLLER if !discovery && sqe.identify_csi() == id::csi::NVM => {}
        id::cns::NS_DESCRIPTOR_LIST if !discovery => match subsys.namespace(nsid) {
            Some(ns) => {
                let list = [
                    NsDescriptor::Nguid(ns.nguid),
                    NsDescriptor::Uuid(ns.uuid),
                    NsDescriptor::Csi(id::csi::NVM),
                ];
                NsDescriptor::encode_list(&list, &mut page).map_err(|_| Status::INTERNAL_ERROR)?;
            }
            None => return Err(Status::INVALID_NAMESPACE_OR_FORMAT),
        },
        _ => return Err(Status::INVALID_FIELD),
    }
    out.clear();
    out.extend_from_slice(&page[..len.min(IDENTIFY_SIZE)]);
    out.resize(len, 0);
    Ok(())
}

fn get_log_page<H>(
    q: &AdminQueue<'_, H>,
    sqe: &Sqe,
    len: usize,
    out: &mut Vec<u8>,
    ctx: &Ctx,
) -> Result<(), Status> {
    let subsys = q.subsys.ok_or(Status::COMMAND_SEQUENCE_ERROR)?;
    let discovery = subsys.kind == SubsystemKind::Discovery;
    let glp = plog::GetLogPage::from_sqe(sqe);
    let (lid, offset) = (glp.lid, glp.offset);
    if glp.len_bytes() != len as u64 || offset % 4 != 0 || glp.ot {
        return Err(Status::INVALID_FIELD);
    }
    let mut log = Vec::new();
    match lid {
        plog::lid::ERROR_INFORMATION if !discovery => log.resize(plog::ERROR_ENTRY_SIZE, 0), // no errors logged
        plog::lid::SMART_HEALTH if !discovery => {
            log.resize(plog::SMART_SIZE, 0);
            let st = ctx.trace.totals();
            let smart = SmartLog {
                composite_temperature: 310,
                available_spare: 100,
                available_spare_threshold: 10,
                // This reactor's share only: the log is a courtesy, not an account.
                data_units_read: SmartLog::data_units(u128::from(st.bytes_read)),
                data_units_written: SmartLog::data_units(u128::from(st.bytes_write)),
                ..SmartLog::default()
            };
            let _ = smart.encode(&mut log);
        }
        plog::lid::CHANGED_NS_LIST if !discovery => {
            log.resize(plog::CHANGED_NS_LIST_SIZE, 0);
            // Read clears the list (unless the host asks to retain it, RAE: cdw10 bit 15).
            let rae = sqe.cdw10 & (1 << 15) != 0;
            if let Some(c) = q.ctrl.filter(|_| !rae) {
                for (i, nsid) in c.take_changed_namespaces().iter().enumerate() {
                    log[i * 4..i * 4 + 4].copy_from_slice(&nsid.to_le_bytes());
                }
            }
        }
        plog::lid::DISCOVERY if discovery => discovery_log(q.ctrl, &mut log, ctx),
        _ => return Err(Status::INVALID_LOG_PAGE),
    }
    out.clear();
    out.resize(len, 0);
    plog::copy_log_window(&log, offset, out)
        .map(|_| ())
        .map_err(|_| Status::INVALID_FIELD)
}

/// Every NVM subsystem this host may use × every listener, TCP and RDMA, whichever transport
/// the host asked on.
fn discovery_log(ctrl: Option<&Arc<Controller>>, out: &mut Vec<u8>, ctx: &Ctx) {
    let hostnqn = ctrl.map(|c| c.hostnqn.clone()).unwrap_or_default();
    let asqsz = ctx.limits().max_admin_queue_depth as u16;
    let tcp = ctx.tcp_listen_addrs().iter();
    let rdma = ctx.rdma_listen_addrs();
    let mut entries = Vec::new();
    for s in ctx.subsystems().iter().filter(|s| s.host_allowed(&hostnqn)) {
        let Ok(nqn) = Nqn::new(&s.nqn) else { continue };
        let ports = tcp
            .clone()
            .map(|a| (Transport::Tcp, a))
            .chain(rdma.iter().map(|a| (Transport::Rdma, a)));
        for (i, (t, a)) in ports.enumerate() {
            let (ip, port, portid) = (a.ip().to_string(), a.port(), i as u16 + 1);
            let mut e = match t {
                Transport::Tcp => {
                    let mut e =
                        DiscoveryEntry::tcp(nqn.clone(), plog::subtype::NVME, &ip, port, portid);
                    // We honour Connect's "disable SQ flow control" (and then end reads with C2H
                    // SUCCESS).
                    e.treq |= plog::treq::DISABLE_SQ_FLOW_CONTROL;
                    e
                }
                Transport::Rdma => {
                    DiscoveryEntry::rdma(nqn.clone(), plog::subtype::NVME, &ip, port, portid)
                }
            };
            e.asqsz = asqsz;
            entries.push(e);
        }
    }
    // The configuration never changes at run time, so the generation counter is constant.
    let log = DiscoveryLog {
        genctr: 1,
        recfmt: 0,
        entries,
    };
    out.resize(log.len_bytes(), 0);
    if log.encode(out).is_err() {
        out.clear();
    }
}

/// I/O queues granted to a controller (Set Features Number of Queues, else the limit).
pub fn granted_queues(ctrl: Option<&Arc<Controller>>, ctx: &Ctx) -> u32 {
    match ctrl.map_or(0, |c| c.io_queues_granted.load(Ordering::Relaxed)) {
        0 => ctx.limits().max_io_queues,
        g => g,
    }
}

fn get_features<H>(
    q: &AdminQueue<'_, H>,
    sqe: &Sqe,
    discovery: bool,
    ctx: &Ctx,
) -> Result<u32, Status> {
    let a = q.admin.as_ref().ok_or(Status::COMMAND_SEQUENCE_ERROR)?;
    match sqe.feature_id() {
        feature::KEEP_ALIVE_TIMER => Ok(a.kato_ms),
        feature::ASYNC_EVENT_CONFIG => Ok(a.async_event_config),
        feature::NUMBER_OF_QUEUES if !discovery => {
            let g = granted_queues(q.ctrl, ctx);
            Ok((g - 1) | ((g - 1) << 16))
        }
        feature::VOLATILE_WRITE_CACHE if !discovery => Ok(a.vwc_enabled as u32),
        _ => Err(Status::INVALID_FIELD),
    }
}

fn set_features<H>(
    q: AdminQueue<'_, H>,
    sqe: &Sqe,
    discovery: bool,
    ctx: &Ctx,
) -> Result<u32, Status> {
    if sqe.feature_save() {
        return Err(Status::FEATURE_NOT_SAVEABLE);
    }
    let max_q = ctx.limits().max_io_queues;
    let a = q.admin.ok_or(Status::COMMAND_SEQUENCE_ERROR)?;
    match sqe.feature_id() {
        feature::KEEP_ALIVE_TIMER => {
            a.kato_ms = sqe.cdw11;
            a.last_keep_alive = ctx.now;
            Ok(0)
        }
        feature::ASYNC_EVENT_CONFIG => {
            a.async_event_config = sqe.cdw11;
            Ok(0)
        }
        feature::NUMBER_OF_QUEUES if !discovery => {
            let nsq = sqe.cdw11 & 0xffff;
            let ncq = sqe.cdw11 >> 16;
            if nsq == 0xffff || ncq == 0xffff {
                return Err(Status::INVALID_FIELD);
            }
            let g = (nsq.max(ncq) + 1).min(max_q);
            if let Some(c) = q.ctrl {
                c.io_queues_granted.store(g, Ordering::Relaxed);
            }
            Ok((g - 1) | ((g - 1) << 16))
        }
        feature::VOLATILE_WRITE_CACHE if !discovery => {
            a.vwc_enabled = sqe.cdw11 & 1 != 0;
            Ok(0)
        }
        _ => Err(Status::INVALID_FIELD),
    }
}
