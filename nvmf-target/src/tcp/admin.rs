//! Fabrics Connect, Property Get/Set and the admin command set, for [`Conn`]. Runs on the
//! reactor that owns the admin connection; controller creation and lookup go through the
//! subsystem's controller table (a mutex, slow path only).

use std::sync::atomic::Ordering;

use nvme_proto::fabrics::{
    self, connect_cmd_offset as cmd_off, connect_data_offset as data_off, prop, Cap, Cc,
    ConnectCmd, ConnectData, Csts, PropertyGet, PropertySet, PropertySize, CNTLID_DYNAMIC,
    CNTLID_STATIC_ANY,
};
use nvme_proto::nvme::{feature, AdminOpcode, Sqe, Status};

use super::{AdminState, Conn, ConnEvent, Req};
use crate::reactor::Ctx;
use crate::subsystem::{CreateCtrlError, SubsystemKind};
use nvme_proto::fabrics::Nqn;
use nvme_proto::identify::{
    self as id, cntrltype, IdentifyController, IdentifyNamespace, NsDescriptor, IDENTIFY_SIZE,
};
use nvme_proto::log::{self as plog, DiscoveryEntry, DiscoveryLog, SmartLog};
use nvme_proto::nvme::Nsid;

/// Outstanding Async Event Requests allowed (AERL + 1).
const AER_LIMIT: usize = 4;
/// VS reported: NVMe 1.4.
const VERSION: u32 = fabrics::VS_1_4;

impl Conn {
    pub(super) fn on_connect(&mut self, sqe: Sqe, data: &[u8], ctx: &mut Ctx) {
        let cid = sqe.cid;
        let invalid = |in_data: bool, off: u16| {
            (
                Status::CONNECT_INVALID_PARAMETERS,
                fabrics::connect_invalid_param_dw0(in_data, off),
            )
        };
        let r = (|| -> Result<(), (Status, u32)> {
            let cmd = ConnectCmd::from_sqe(&sqe).map_err(|_| (Status::INVALID_FIELD, 0))?;
            if cmd.recfmt != 0 {
                return Err((Status::CONNECT_INCOMPATIBLE_FORMAT, 0));
            }
            match self.h2c_source(&sqe, data) {
                Ok(super::H2cSource::InCapsule(len))
                    if len as usize >= fabrics::CONNECT_DATA_SIZE => {}
                Ok(_) => return Err((Status::SGL_DATA_BLOCK_LENGTH_INVALID, 0)),
                Err(s) => return Err((s, 0)),
            }
            let cd = ConnectData::decode(data).map_err(|e| match e {
                nvme_proto::ProtoError::InvalidField { offset, .. } => invalid(true, offset as u16),
                _ => invalid(true, 0),
            })?;
            let Some(subsys) = ctx.shared.subsystem(cd.subnqn.as_str()).cloned() else {
                return Err(invalid(true, data_off::SUBNQN));
            };
            if subsys.kind == SubsystemKind::Nvm && !subsys.host_allowed(cd.hostnqn.as_str()) {
                return Err((Status::CONNECT_INVALID_HOST, 0));
            }
            let limits = &ctx.shared.config.limits;
            let entries = cmd.queue_entries();
            let max = if cmd.qid == 0 {
                limits.max_admin_queue_depth
            } else {
                limits.max_queue_depth
            };
            if cmd.sqsize == 0 || entries > max {
                return Err(invalid(false, cmd_off::SQSIZE));
            }
            let ctrl = if cmd.qid == 0 {
                if cd.cntlid != CNTLID_DYNAMIC && cd.cntlid != CNTLID_STATIC_ANY {
                    return Err(invalid(true, data_off::CNTLID));
                }
                let c = subsys
                    .create_controller(cd.hostnqn.as_str(), cd.hostid)
                    .map_err(|e| match e {
                        CreateCtrlError::HostNotAllowed => (Status::CONNECT_INVALID_HOST, 0),
                        CreateCtrlError::NoFreeCntlid => (Status::CONNECT_CONTROLLER_BUSY, 0),
                    })?;
                let kato = if cmd.kato == 0 && subsys.kind == SubsystemKind::Nvm {
                    ctx.shared.config.keep_alive.default_timeout_ms
                } else {
                    cmd.kato
                };
                self.admin = Some(Box::new(AdminState {
                    cc: 0,
                    csts: 0,
                    kato_ms: kato,
                    last_keep_alive: ctx.now,
                    aers: Vec::with_capacity(AER_LIMIT),
                    async_event_config: 0,
                    vwc_enabled: true,
                }));
                c
            } else {
                if subsys.kind == SubsystemKind::Discovery {
                    return Err(invalid(false, cmd_off::QID));
                }
                let Some(c) = subsys.controller(cd.cntlid) else {
                    return Err(invalid(true, data_off::CNTLID));
                };
                if c.is_failed() {
                    return Err(invalid(true, data_off::CNTLID));
                }
                if c.hostnqn != cd.hostnqn.as_str() {
                    return Err(invalid(true, data_off::HOSTNQN));
                }
                if c.hostid != cd.hostid {
                    return Err(invalid(true, data_off::HOSTID));
                }
                let granted = match c.io_queues_granted.load(Ordering::Relaxed) {
                    0 => limits.max_io_queues,
                    g => g,
                };
                if u32::from(cmd.qid) > granted {
                    return Err(invalid(false, cmd_off::QID));
                }
                if !c.claim_qid(cmd.qid) {
                    return Err(invalid(false, cmd_off::QID));
                }
                self.cfg.max_in_capsule_data = limits.in_capsule_data_size.0 as u32;
                c
            };
            self.qid = cmd.qid;
            self.sq_flow_disabled = cmd.cattr & fabrics::cattr::DISABLE_SQ_FLOW_CONTROL != 0;
            self.sqsize = entries as u16;
            self.sqhd = 0;
            let prealloc = if cmd.qid == 0 { 0 } else { 4096 };
            self.reqs = (0..entries).map(|_| Req::new(prealloc)).collect();
            self.free = (0..entries as u16).rev().collect();
            if let Some(q) = ctx.stats.qpairs.get(usize::from(self.slot)) {
                q.ctrl_qid
                    .set((u64::from(ctrl.cntlid) << 16) | u64::from(cmd.qid));
            }
            self.ctrl = Some(ctrl);
            self.subsys = Some(subsys);
            Ok(())
        })();
        match r {
            Ok(()) => {
                let cntlid = self.ctrl.as_ref().map_or(0, |c| c.cntlid);
                self.transition(ConnEvent::Connected, ctx);
                let (slot, size) = (self.slot, u32::from(self.sqsize));
                ctx.trace.counters(|c| c.qpair_queue_size(slot, size));
                ctx.trace.tp(
                    crate::trace::TP_QPAIR_CONNECT,
                    self.slot,
                    cid.0,
                    u64::from(self.qid),
                    u64::from(cntlid),
                );
                self.respond(cid, Status::SUCCESS, u32::from(cntlid), 0, ctx);
            }
            Err((st, dw0)) => self.respond(cid, st, dw0, 0, ctx),
        }
    }

    fn cap(&self, ctx: &Ctx) -> u64 {
        // The I/O queue limit, for discovery controllers too: Linux sizes its queues from MQES
        // and warns when a discovery controller reports less than its default of 128. The admin
        // queue's own limit is enforced at Connect.
        let depth = ctx.shared.config.limits.max_queue_depth;
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

    pub(super) fn on_property_get(&mut self, sqe: Sqe, ctx: &mut Ctx) {
        let Ok(pg) = PropertyGet::from_sqe(&sqe) else {
            return self.respond(sqe.cid, Status::INVALID_FIELD, 0, 0, ctx);
        };
        if prop::size_of(pg.offset) != Some(pg.size) {
            return self.respond(sqe.cid, Status::INVALID_FIELD, 0, 0, ctx);
        }
        let (cc, csts) = self.admin.as_ref().map_or((0, 0), |a| (a.cc, a.csts));
        let v: u64 = match pg.offset {
            prop::CAP => self.cap(ctx),
            prop::VS => u64::from(VERSION),
            prop::CC => u64::from(cc),
            prop::CSTS => u64::from(csts),
            _ => return self.respond(sqe.cid, Status::INVALID_FIELD, 0, 0, ctx),
        };
        self.respond(sqe.cid, Status::SUCCESS, v as u32, (v >> 32) as u32, ctx);
    }

    pub(super) fn on_property_set(&mut self, sqe: Sqe, ctx: &mut Ctx) {
        let Ok(ps) = PropertySet::from_sqe(&sqe) else {
            return self.respond(sqe.cid, Status::INVALID_FIELD, 0, 0, ctx);
        };
        if ps.offset != prop::CC || ps.size != PropertySize::Four {
            return self.respond(sqe.cid, Status::INVALID_FIELD, 0, 0, ctx);
        }
        let Some(a) = self.admin.as_mut() else {
            return self.respond(sqe.cid, Status::COMMAND_SEQUENCE_ERROR, 0, 0, ctx);
        };
        let new = Cc::from_u32(ps.value as u32);
        let mut csts = Csts::from_u32(a.csts);
        if new.shn != fabrics::shn::NONE {
            // Nothing to write back: RAM and null backends are always consistent.
            csts.shst = fabrics::shst::COMPLETE;
        } else {
            csts.shst = fabrics::shst::NORMAL;
        }
        csts.rdy = new.en;
        a.cc = new.to_u32();
        a.csts = csts.to_u32();
        self.respond(sqe.cid, Status::SUCCESS, 0, 0, ctx);
    }

    pub(super) fn on_admin(&mut self, sqe: Sqe, data: &[u8], ctx: &mut Ctx) {
        let discovery = self
            .subsys
            .as_ref()
            .is_some_and(|s| s.kind == SubsystemKind::Discovery);
        match AdminOpcode::from_u8(sqe.opcode) {
            Some(AdminOpcode::Identify) => self.on_identify(sqe, data, ctx),
            Some(AdminOpcode::GetLogPage) => self.on_get_log_page(sqe, data, ctx),
            Some(AdminOpcode::KeepAlive) => {
                if let Some(a) = self.admin.as_mut() {
                    a.last_keep_alive = ctx.now;
                }
                self.respond(sqe.cid, Status::SUCCESS, 0, 0, ctx)
            }
            Some(AdminOpcode::GetFeatures) => self.on_get_features(sqe, discovery, ctx),
            Some(AdminOpcode::SetFeatures) => self.on_set_features(sqe, discovery, ctx),
            Some(AdminOpcode::AsyncEventRequest) => {
                let Some(a) = self.admin.as_mut() else {
                    return self.respond(sqe.cid, Status::COMMAND_SEQUENCE_ERROR, 0, 0, ctx);
                };
                if a.aers.len() >= AER_LIMIT {
                    return self.respond(
                        sqe.cid,
                        Status::ASYNC_EVENT_REQUEST_LIMIT_EXCEEDED,
                        0,
                        0,
                        ctx,
                    );
                }
                // Held until an event happens (none does yet) or the controller goes away.
                a.aers.push(sqe.cid);
                self.cid_mark(sqe.cid, true);
            }
            Some(AdminOpcode::Abort) if !discovery => {
                // dw0 bit 0 set: command not aborted (everything runs to completion anyway).
                self.respond(sqe.cid, Status::SUCCESS, 1, 0, ctx)
            }
            _ => self.respond(sqe.cid, Status::INVALID_OPCODE, 0, 0, ctx),
        }
    }

    fn check_c2h(&self, sqe: &Sqe, data: &[u8], ctx: &Ctx) -> Result<usize, Status> {
        let len = self.c2h_len(sqe, data)?;
        if len > ctx.shared.config.limits.max_io_size.0 as usize {
            return Err(Status::INVALID_FIELD);
        }
        Ok(len)
    }

    fn on_identify(&mut self, sqe: Sqe, data: &[u8], ctx: &mut Ctx) {
        let len = match self.check_c2h(&sqe, data, ctx) {
            Ok(l) => l,
            Err(s) => return self.respond(sqe.cid, s, 0, 0, ctx),
        };
        let Some(subsys) = self.subsys.clone() else {
            return self.respond(sqe.cid, Status::COMMAND_SEQUENCE_ERROR, 0, 0, ctx);
        };
        let discovery = subsys.kind == SubsystemKind::Discovery;
        let mut page = [0u8; IDENTIFY_SIZE];
        let nsid = sqe.nsid.0;
        let nn = subsys.namespaces.last().map_or(0, |n| n.nsid);
        match sqe.identify_cns() {
            id::cns::CONTROLLER => {
                let l = &ctx.shared.config.limits;
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
                    cntlid: self.ctrl.as_ref().map_or(0, |c| c.cntlid),
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
                    kas: (ctx.shared.config.keep_alive.check_interval_ms / 100).max(1) as u16,
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
                        id::vwc::PRESENT | id::vwc::FLUSH_BROADCAST_SUPPORTED
                    },
                    sgls: id::sgls::SUPPORTED | id::sgls::OFFSET | id::sgls::TRANSPORT_DATA_BLOCK,
                    subnqn: subsys.nqn.clone(),
                    ioccsz: ((64 + l.in_capsule_data_size.0) / 16) as u32,
                    iorcsz: 1,
                    icdoff: 0,
                    fcatt: 0,
                    msdbd: 1,
                    ofcs: 1,
                    ..IdentifyController::default()
                };
                if ctrl.encode(&mut page).is_err() {
                    return self.respond(sqe.cid, Status::INTERNAL_ERROR, 0, 0, ctx);
                }
            }
            id::cns::NAMESPACE if !discovery => match subsys.namespace(nsid) {
                Some(ns) => {
                    let mut n = IdentifyNamespace::simple(ns.num_blocks, ns.lbads());
                    n.nmic = 1; // may be attached to several controllers
                    n.nguid = ns.nguid;
                    if n.encode(&mut page).is_err() {
                        return self.respond(sqe.cid, Status::INTERNAL_ERROR, 0, 0, ctx);
                    }
                }
                // Valid but inactive NSIDs read as zeros.
                None if nsid != 0 && nsid <= nn => {}
                None => {
                    return self.respond(sqe.cid, Status::INVALID_NAMESPACE_OR_FORMAT, 0, 0, ctx)
                }
            },
            id::cns::ACTIVE_NS_LIST if !discovery => {
                if nsid >= 0xffff_fffe {
                    return self.respond(sqe.cid, Status::INVALID_NAMESPACE_OR_FORMAT, 0, 0, ctx);
                }
                let ids: Vec<Nsid> = subsys.namespaces.iter().map(|n| Nsid(n.nsid)).collect();
                if id::encode_active_ns_list(&ids, Nsid(nsid), &mut page).is_err() {
                    return self.respond(sqe.cid, Status::INTERNAL_ERROR, 0, 0, ctx);
                }
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
                    if NsDescriptor::encode_list(&list, &mut page).is_err() {
                        return self.respond(sqe.cid, Status::INTERNAL_ERROR, 0, 0, ctx);
                    }
                }
                None => {
                    return self.respond(sqe.cid, Status::INVALID_NAMESPACE_OR_FORMAT, 0, 0, ctx)
                }
            },
            _ => return self.respond(sqe.cid, Status::INVALID_FIELD, 0, 0, ctx),
        }
        self.scratch.clear();
        self.scratch
            .extend_from_slice(&page[..len.min(IDENTIFY_SIZE)]);
        self.respond_with_scratch(sqe.cid, len, ctx);
    }

    fn on_get_log_page(&mut self, sqe: Sqe, data: &[u8], ctx: &mut Ctx) {
        let len = match self.check_c2h(&sqe, data, ctx) {
            Ok(l) => l,
            Err(s) => return self.respond(sqe.cid, s, 0, 0, ctx),
        };
        let Some(subsys) = self.subsys.clone() else {
            return self.respond(sqe.cid, Status::COMMAND_SEQUENCE_ERROR, 0, 0, ctx);
        };
        let discovery = subsys.kind == SubsystemKind::Discovery;
        let glp = plog::GetLogPage::from_sqe(&sqe);
        let (lid, offset) = (glp.lid, glp.offset);
        if glp.len_bytes() != len as u64 || offset % 4 != 0 || glp.ot {
            return self.respond(sqe.cid, Status::INVALID_FIELD, 0, 0, ctx);
        }
        let mut log = std::mem::take(&mut self.scratch);
        log.clear();
        match lid {
            plog::lid::ERROR_INFORMATION if !discovery => log.resize(plog::ERROR_ENTRY_SIZE, 0), // no errors logged
            plog::lid::SMART_HEALTH if !discovery => {
                log.resize(plog::SMART_SIZE, 0);
                let st = &ctx.stats;
                let smart = SmartLog {
                    composite_temperature: 310,
                    available_spare: 100,
                    available_spare_threshold: 10,
                    // This reactor's share only: the log is a courtesy, not an account.
                    data_units_read: SmartLog::data_units(u128::from(st.bytes_read.get())),
                    data_units_written: SmartLog::data_units(u128::from(st.bytes_written.get())),
                    ..SmartLog::default()
                };
                let _ = smart.encode(&mut log);
            }
            plog::lid::CHANGED_NS_LIST if !discovery => log.resize(plog::CHANGED_NS_LIST_SIZE, 0), // none changed
            plog::lid::DISCOVERY if discovery => self.discovery_log(&mut log, ctx),
            _ => {
                self.scratch = log;
                return self.respond(sqe.cid, Status::INVALID_LOG_PAGE, 0, 0, ctx);
            }
        }
        let mut out = vec![0u8; len];
        if plog::copy_log_window(&log, offset, &mut out).is_err() {
            self.scratch = log;
            return self.respond(sqe.cid, Status::INVALID_FIELD, 0, 0, ctx);
        }
        self.scratch = out;
        self.respond_with_scratch(sqe.cid, len, ctx);
    }

    /// Every NVM subsystem this host may use × every listener.
    fn discovery_log(&self, out: &mut Vec<u8>, ctx: &Ctx) {
        let hostnqn = self
            .ctrl
            .as_ref()
            .map(|c| c.hostnqn.clone())
            .unwrap_or_default();
        let mut entries = Vec::new();
        for s in ctx
            .shared
            .subsystems
            .iter()
            .filter(|s| s.host_allowed(&hostnqn))
        {
            let Ok(nqn) = Nqn::new(&s.nqn) else { continue };
            for (i, a) in ctx.shared.listen_addrs.iter().enumerate() {
                let mut e = DiscoveryEntry::tcp(
                    nqn.clone(),
                    plog::subtype::NVME,
                    &a.ip().to_string(),
                    a.port(),
                    i as u16 + 1,
                );
                e.asqsz = ctx.shared.config.limits.max_admin_queue_depth as u16;
                // We honour Connect's "disable SQ flow control" (and then end reads with C2H SUCCESS).
                e.treq |= plog::treq::DISABLE_SQ_FLOW_CONTROL;
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

    fn on_get_features(&mut self, sqe: Sqe, discovery: bool, ctx: &mut Ctx) {
        let fid = sqe.feature_id();
        let Some(a) = self.admin.as_ref() else {
            return self.respond(sqe.cid, Status::COMMAND_SEQUENCE_ERROR, 0, 0, ctx);
        };
        let v = match fid {
            feature::KEEP_ALIVE_TIMER => a.kato_ms,
            feature::ASYNC_EVENT_CONFIG => a.async_event_config,
            feature::NUMBER_OF_QUEUES if !discovery => {
                let g = self.granted_queues(ctx);
                (g - 1) | ((g - 1) << 16)
            }
            feature::VOLATILE_WRITE_CACHE if !discovery => a.vwc_enabled as u32,
            _ => return self.respond(sqe.cid, Status::INVALID_FIELD, 0, 0, ctx),
        };
        self.respond(sqe.cid, Status::SUCCESS, v, 0, ctx);
    }

    fn granted_queues(&self, ctx: &Ctx) -> u32 {
        match self
            .ctrl
            .as_ref()
            .map_or(0, |c| c.io_queues_granted.load(Ordering::Relaxed))
        {
            0 => ctx.shared.config.limits.max_io_queues,
            g => g,
        }
    }

    fn on_set_features(&mut self, sqe: Sqe, discovery: bool, ctx: &mut Ctx) {
        let fid = sqe.feature_id();
        if sqe.feature_save() {
            return self.respond(sqe.cid, Status::FEATURE_NOT_SAVEABLE, 0, 0, ctx);
        }
        let max_q = ctx.shared.config.limits.max_io_queues;
        let ctrl = self.ctrl.clone();
        let Some(a) = self.admin.as_mut() else {
            return self.respond(sqe.cid, Status::COMMAND_SEQUENCE_ERROR, 0, 0, ctx);
        };
        let dw0 = match fid {
            feature::KEEP_ALIVE_TIMER => {
                a.kato_ms = sqe.cdw11;
                a.last_keep_alive = ctx.now;
                0
            }
            feature::ASYNC_EVENT_CONFIG => {
                a.async_event_config = sqe.cdw11;
                0
            }
            feature::NUMBER_OF_QUEUES if !discovery => {
                let nsq = sqe.cdw11 & 0xffff;
                let ncq = sqe.cdw11 >> 16;
                if nsq == 0xffff || ncq == 0xffff {
                    return self.respond(sqe.cid, Status::INVALID_FIELD, 0, 0, ctx);
                }
                let g = (nsq.max(ncq) + 1).min(max_q);
                if let Some(c) = &ctrl {
                    c.io_queues_granted.store(g, Ordering::Relaxed);
                }
                (g - 1) | ((g - 1) << 16)
            }
            feature::VOLATILE_WRITE_CACHE if !discovery => {
                a.vwc_enabled = sqe.cdw11 & 1 != 0;
                0
            }
            _ => return self.respond(sqe.cid, Status::INVALID_FIELD, 0, 0, ctx),
        };
        self.respond(sqe.cid, Status::SUCCESS, dw0, 0, ctx);
    }
}
