//! Command execution for NVMe/RDMA requests: Fabrics (Connect, Property Get/Set, Disconnect),
//! the admin command set and the NVM I/O command set. Runs on the reactor that owns the
//! connection, after the request's host data (if any) is in its registered buffer; admin and
//! fabrics commands complete inline (their controller-to-host data is written into the same
//! buffer), I/O commands go to the reactor's backend queue with the buffer itself (no copy).
//!
//! The behaviour mirrors the NVMe/TCP transport's (`tcp/admin.rs`, `tcp/io.rs`): same statuses,
//! same Identify data, same controller model; only the data movement differs. Nothing here
//! allocates on the I/O path.

use std::sync::atomic::Ordering;

use nvme_proto::fabrics::{
    self, connect_cmd_offset as cmd_off, connect_data_offset as data_off, prop, Cap, Cc,
    ConnectCmd, ConnectData, Csts, FabricsType, Nqn, PropertyGet, PropertySet, PropertySize,
    CNTLID_DYNAMIC, CNTLID_STATIC_ANY,
};
use nvme_proto::identify::{
    self as id, cntrltype, IdentifyController, IdentifyNamespace, NsDescriptor, IDENTIFY_SIZE,
};
use nvme_proto::log::{self as plog, DiscoveryEntry, DiscoveryLog, SmartLog};
use nvme_proto::nvme::{feature, AdminOpcode, IoOpcode, Nsid, Sqe, Status, DSM_AD, DSM_RANGE_SIZE};

use super::{AdminState, RConn, RConnState, RState, ReactorRdma, TP_RDMA_EXECUTING};
use crate::backend::BdevOp;
use crate::reactor::Ctx;
use crate::stats::OpClass;
use crate::subsystem::{CreateCtrlError, SubsystemKind};
use crate::trace::TP_QPAIR_CONNECT;

/// Outstanding Async Event Requests allowed (AERL + 1).
const AER_LIMIT: usize = 4;
/// VS reported: NVMe 1.4.
const VERSION: u32 = fabrics::VS_1_4;

/// What became of a command.
enum Outcome {
    /// Respond now with this status, dw0, dw1 and `c2h` bytes of the buffer for the host.
    Respond(Status, u32, u32, u32),
    /// At the backend: the response comes with its completion.
    Submitted,
    /// Held without a response (AER).
    Held,
}

fn st(s: Status) -> Outcome {
    Outcome::Respond(s, 0, 0, 0)
}

/// The statistics class of a command.
pub(super) fn class_of(sqe: &Sqe, qid: u16) -> OpClass {
    if sqe.is_fabrics() {
        OpClass::Fabrics
    } else if qid == 0 {
        OpClass::Admin
    } else {
        match IoOpcode::from_u8(sqe.opcode) {
            Some(IoOpcode::Read) => OpClass::Read,
            Some(IoOpcode::Write) => OpClass::Write,
            Some(IoOpcode::Flush) => OpClass::Flush,
            Some(IoOpcode::WriteZeroes) => OpClass::WriteZeroes,
            Some(IoOpcode::DatasetManagement) => OpClass::Dsm,
            _ => OpClass::OtherIo,
        }
    }
}

/// Executes request `idx` of `rd` (its data, if any, is in its buffer).
pub(super) fn execute(rd: &mut ReactorRdma, idx: u32, ctx: &mut Ctx) {
    let (slot, sqe, len, class, buf) = {
        let r = &rd.reqs[idx as usize];
        (r.slot, r.sqe, r.len, r.class, r.buf)
    };
    ctx.trace.tp(
        TP_RDMA_EXECUTING,
        slot,
        sqe.cid.0,
        if class == OpClass::Read || class == OpClass::Write {
            sqe.slba()
        } else {
            0
        },
        u64::from(len),
    );
    ctx.stats.cmds[class as usize].add(1);
    let Some(res) = rd.res.as_mut() else { return };
    let Some(conn) = rd.conns[usize::from(slot)].as_mut() else {
        return;
    };
    let data: &mut [u8] = match buf {
        Some(b) => res
            .region
            .bytes_mut(res.buf_off + b as usize * res.buf_len, len as usize),
        None => &mut [],
    };
    let outcome = if sqe.is_fabrics() {
        fabrics(conn, slot, &sqe, data, ctx)
    } else if conn.state != RConnState::Enabled {
        st(Status::COMMAND_SEQUENCE_ERROR)
    } else if conn.qid == 0 {
        if let Some(a) = conn.admin.as_mut() {
            a.last_keep_alive = ctx.now;
        }
        admin(conn, &sqe, data, &mut rd.scratch, idx, ctx)
    } else {
        let tag = super::TAG_RDMA
            | ((u64::from(rd.reqs[idx as usize].gen) & 0x7fff_ffff) << 32)
            | u64::from(idx);
        io(conn, &sqe, class, data, tag, ctx)
    };
    match outcome {
        Outcome::Respond(s, dw0, dw1, c2h) => {
            rd.reqs[idx as usize].c2h = c2h.min(len);
            rd.respond(idx, s, dw0, dw1, ctx);
        }
        Outcome::Submitted => {
            rd.reqs[idx as usize].state = RState::AtBackend;
            ctx.trace.counters(|c| c.backend_submit());
        }
        Outcome::Held => rd.reqs[idx as usize].state = RState::Held,
    }
    let _ = rd.backend_tag(idx);
}

fn fabrics(c: &mut RConn, slot: u16, sqe: &Sqe, data: &mut [u8], ctx: &mut Ctx) -> Outcome {
    match FabricsType::from_u8(sqe.fctype()) {
        Some(FabricsType::Connect) => {
            if c.state != RConnState::AwaitingConnect {
                return st(Status::COMMAND_SEQUENCE_ERROR);
            }
            connect(c, slot, sqe, data, ctx)
        }
        _ if c.state != RConnState::Enabled => st(Status::COMMAND_SEQUENCE_ERROR),
        Some(FabricsType::PropertyGet) | Some(FabricsType::PropertySet) if c.qid != 0 => {
            st(Status::INVALID_OPCODE)
        }
        Some(FabricsType::PropertyGet) => property_get(c, sqe, ctx),
        Some(FabricsType::PropertySet) => property_set(c, sqe),
        Some(FabricsType::Disconnect) => st(Status::SUCCESS),
        _ => st(Status::INVALID_OPCODE),
    }
}

fn connect(c: &mut RConn, slot: u16, sqe: &Sqe, data: &[u8], ctx: &mut Ctx) -> Outcome {
    let invalid = |in_data: bool, off: u16| {
        (
            Status::CONNECT_INVALID_PARAMETERS,
            fabrics::connect_invalid_param_dw0(in_data, off),
        )
    };
    let r = (|| -> Result<(), (Status, u32)> {
        let cmd = ConnectCmd::from_sqe(sqe).map_err(|_| (Status::INVALID_FIELD, 0))?;
        if cmd.recfmt != 0 {
            return Err((Status::CONNECT_INCOMPATIBLE_FORMAT, 0));
        }
        if data.len() < fabrics::CONNECT_DATA_SIZE {
            return Err((Status::SGL_DATA_BLOCK_LENGTH_INVALID, 0));
        }
        // The queue was named in the CM request already; the Connect must agree.
        if cmd.qid != c.qid {
            return Err(invalid(false, cmd_off::QID));
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
            let x = subsys
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
            c.admin = Some(Box::new(AdminState {
                cc: 0,
                csts: 0,
                kato_ms: kato,
                last_keep_alive: ctx.now,
                aers: Vec::with_capacity(AER_LIMIT),
                async_event_config: 0,
                vwc_enabled: true,
            }));
            x
        } else {
            if subsys.kind == SubsystemKind::Discovery {
                return Err(invalid(false, cmd_off::QID));
            }
            let Some(x) = subsys.controller(cd.cntlid) else {
                return Err(invalid(true, data_off::CNTLID));
            };
            if x.is_failed() {
                return Err(invalid(true, data_off::CNTLID));
            }
            if x.hostnqn != cd.hostnqn.as_str() {
                return Err(invalid(true, data_off::HOSTNQN));
            }
            if x.hostid != cd.hostid {
                return Err(invalid(true, data_off::HOSTID));
            }
            let granted = match x.io_queues_granted.load(Ordering::Relaxed) {
                0 => limits.max_io_queues,
                g => g,
            };
            if u32::from(cmd.qid) > granted || !x.claim_qid(cmd.qid) {
                return Err(invalid(false, cmd_off::QID));
            }
            x
        };
        c.sqsize = entries as u16;
        c.sqhd = 0;
        c.ctrl = Some(ctrl);
        c.subsys = Some(subsys);
        Ok(())
    })();
    match r {
        Ok(()) => {
            let cntlid = c.ctrl.as_ref().map_or(0, |x| x.cntlid);
            c.state = RConnState::Enabled;
            ctx.trace.tp(
                TP_QPAIR_CONNECT,
                slot,
                sqe.cid.0,
                u64::from(c.qid),
                u64::from(cntlid),
            );
            Outcome::Respond(Status::SUCCESS, u32::from(cntlid), 0, 0)
        }
        Err((s, dw0)) => {
            eprintln!(
                "ringside-tgt: rdma: connect of qid {} from {} refused: status {:#x}",
                c.qid, c.peer, s.0
            );
            Outcome::Respond(s, dw0, 0, 0)
        }
    }
}

fn cap(ctx: &Ctx) -> u64 {
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

fn property_get(c: &RConn, sqe: &Sqe, ctx: &Ctx) -> Outcome {
    let Ok(pg) = PropertyGet::from_sqe(sqe) else {
        return st(Status::INVALID_FIELD);
    };
    if prop::size_of(pg.offset) != Some(pg.size) {
        return st(Status::INVALID_FIELD);
    }
    let (cc, csts) = c.admin.as_ref().map_or((0, 0), |a| (a.cc, a.csts));
    let v: u64 = match pg.offset {
        prop::CAP => cap(ctx),
        prop::VS => u64::from(VERSION),
        prop::CC => u64::from(cc),
        prop::CSTS => u64::from(csts),
        _ => return st(Status::INVALID_FIELD),
    };
    Outcome::Respond(Status::SUCCESS, v as u32, (v >> 32) as u32, 0)
}

fn property_set(c: &mut RConn, sqe: &Sqe) -> Outcome {
    let Ok(ps) = PropertySet::from_sqe(sqe) else {
        return st(Status::INVALID_FIELD);
    };
    if ps.offset != prop::CC || ps.size != PropertySize::Four {
        return st(Status::INVALID_FIELD);
    }
    let Some(a) = c.admin.as_mut() else {
        return st(Status::COMMAND_SEQUENCE_ERROR);
    };
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
    st(Status::SUCCESS)
}

fn admin(
    c: &mut RConn,
    sqe: &Sqe,
    data: &mut [u8],
    scratch: &mut Vec<u8>,
    idx: u32,
    ctx: &mut Ctx,
) -> Outcome {
    let discovery = c
        .subsys
        .as_ref()
        .is_some_and(|s| s.kind == SubsystemKind::Discovery);
    match AdminOpcode::from_u8(sqe.opcode) {
        Some(AdminOpcode::Identify) => identify(c, sqe, data, ctx),
        Some(AdminOpcode::GetLogPage) => get_log_page(c, sqe, data, scratch, ctx),
        Some(AdminOpcode::KeepAlive) => st(Status::SUCCESS),
        Some(AdminOpcode::GetFeatures) => get_features(c, sqe, discovery, ctx),
        Some(AdminOpcode::SetFeatures) => set_features(c, sqe, discovery, ctx),
        Some(AdminOpcode::AsyncEventRequest) => {
            let Some(a) = c.admin.as_mut() else {
                return st(Status::COMMAND_SEQUENCE_ERROR);
            };
            if a.aers.len() >= AER_LIMIT {
                return st(Status::ASYNC_EVENT_REQUEST_LIMIT_EXCEEDED);
            }
            // Held until an event happens (none does yet) or the controller goes away.
            a.aers.push(idx);
            Outcome::Held
        }
        Some(AdminOpcode::Abort) if !discovery => Outcome::Respond(Status::SUCCESS, 1, 0, 0),
        _ => st(Status::INVALID_OPCODE),
    }
}

/// Copies `src` (zero-padded) into the controller-to-host buffer; returns the bytes to send.
fn put(data: &mut [u8], src: &[u8]) -> u32 {
    data.fill(0);
    let n = src.len().min(data.len());
    data[..n].copy_from_slice(&src[..n]);
    data.len() as u32
}

fn identify(c: &RConn, sqe: &Sqe, data: &mut [u8], ctx: &Ctx) -> Outcome {
    if data.is_empty() {
        return st(Status::INVALID_FIELD);
    }
    let Some(subsys) = c.subsys.clone() else {
        return st(Status::COMMAND_SEQUENCE_ERROR);
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
                cntlid: c.ctrl.as_ref().map_or(0, |x| x.cntlid),
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
                // Keyed SGL data blocks (RDMA) and in-capsule offsets.
                sgls: id::sgls::SUPPORTED | id::sgls::KEYED_DATA_BLOCK | id::sgls::OFFSET,
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
                return st(Status::INTERNAL_ERROR);
            }
        }
        id::cns::NAMESPACE if !discovery => match subsys.namespace(nsid) {
            Some(ns) => {
                let mut n = IdentifyNamespace::simple(ns.num_blocks, ns.lbads());
                n.nmic = 1;
                n.nguid = ns.nguid;
                if n.encode(&mut page).is_err() {
                    return st(Status::INTERNAL_ERROR);
                }
            }
            None if nsid != 0 && nsid <= nn => {}
            None => return st(Status::INVALID_NAMESPACE_OR_FORMAT),
        },
        id::cns::ACTIVE_NS_LIST if !discovery => {
            if nsid >= 0xffff_fffe {
                return st(Status::INVALID_NAMESPACE_OR_FORMAT);
            }
            let ids: Vec<Nsid> = subsys.namespaces.iter().map(|n| Nsid(n.nsid)).collect();
            if id::encode_active_ns_list(&ids, Nsid(nsid), &mut page).is_err() {
                return st(Status::INTERNAL_ERROR);
            }
        }
        id::cns::IO_CS_CONTROLLER if !discovery && sqe.identify_csi() == id::csi::NVM => {}
        id::cns::NS_DESCRIPTOR_LIST if !discovery => match subsys.namespace(nsid) {
            Some(ns) => {
                let list = [
                    NsDescriptor::Nguid(ns.nguid),
                    NsDescriptor::Uuid(ns.uuid),
                    NsDescriptor::Csi(id::csi::NVM),
                ];
                if NsDescriptor::encode_list(&list, &mut page).is_err() {
                    return st(Status::INTERNAL_ERROR);
                }
            }
            None => return st(Status::INVALID_NAMESPACE_OR_FORMAT),
        },
        _ => return st(Status::INVALID_FIELD),
    }
    let n = put(data, &page);
    Outcome::Respond(Status::SUCCESS, 0, 0, n)
}

fn get_log_page(
    c: &RConn,
    sqe: &Sqe,
    data: &mut [u8],
    scratch: &mut Vec<u8>,
    ctx: &Ctx,
) -> Outcome {
    let Some(subsys) = c.subsys.clone() else {
        return st(Status::COMMAND_SEQUENCE_ERROR);
    };
    let discovery = subsys.kind == SubsystemKind::Discovery;
    let glp = plog::GetLogPage::from_sqe(sqe);
    let (lid, offset) = (glp.lid, glp.offset);
    if data.is_empty() || glp.len_bytes() != data.len() as u64 || offset % 4 != 0 || glp.ot {
        return st(Status::INVALID_FIELD);
    }
    let log = scratch;
    log.clear();
    match lid {
        plog::lid::ERROR_INFORMATION if !discovery => log.resize(plog::ERROR_ENTRY_SIZE, 0),
        plog::lid::SMART_HEALTH if !discovery => {
            log.resize(plog::SMART_SIZE, 0);
            let s = &ctx.stats;
            let smart = SmartLog {
                composite_temperature: 310,
                available_spare: 100,
                available_spare_threshold: 10,
                data_units_read: SmartLog::data_units(u128::from(s.bytes_read.get())),
                data_units_written: SmartLog::data_units(u128::from(s.bytes_written.get())),
                ..SmartLog::default()
            };
            let _ = smart.encode(log);
        }
        plog::lid::CHANGED_NS_LIST if !discovery => log.resize(plog::CHANGED_NS_LIST_SIZE, 0),
        plog::lid::DISCOVERY if discovery => discovery_log(c, log, ctx),
        _ => return st(Status::INVALID_LOG_PAGE),
    }
    data.fill(0);
    if plog::copy_log_window(log, offset, data).is_err() {
        return st(Status::INVALID_FIELD);
    }
    Outcome::Respond(Status::SUCCESS, 0, 0, data.len() as u32)
}

/// Every NVM subsystem this host may use × every TCP listener (RDMA listeners are announced
/// by the hosts' own configuration: the discovery log's RDMA entries are not written yet).
fn discovery_log(c: &RConn, out: &mut Vec<u8>, ctx: &Ctx) {
    let hostnqn = c
        .ctrl
        .as_ref()
        .map(|x| x.hostnqn.clone())
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
            entries.push(e);
        }
    }
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

fn granted_queues(c: &RConn, ctx: &Ctx) -> u32 {
    match c
        .ctrl
        .as_ref()
        .map_or(0, |x| x.io_queues_granted.load(Ordering::Relaxed))
    {
        0 => ctx.shared.config.limits.max_io_queues,
        g => g,
    }
}

fn get_features(c: &RConn, sqe: &Sqe, discovery: bool, ctx: &Ctx) -> Outcome {
    let Some(a) = c.admin.as_ref() else {
        return st(Status::COMMAND_SEQUENCE_ERROR);
    };
    let v = match sqe.feature_id() {
        feature::KEEP_ALIVE_TIMER => a.kato_ms,
        feature::ASYNC_EVENT_CONFIG => a.async_event_config,
        feature::NUMBER_OF_QUEUES if !discovery => {
            let g = granted_queues(c, ctx);
            (g - 1) | ((g - 1) << 16)
        }
        feature::VOLATILE_WRITE_CACHE if !discovery => a.vwc_enabled as u32,
        _ => return st(Status::INVALID_FIELD),
    };
    Outcome::Respond(Status::SUCCESS, v, 0, 0)
}

fn set_features(c: &mut RConn, sqe: &Sqe, discovery: bool, ctx: &Ctx) -> Outcome {
    if sqe.feature_save() {
        return st(Status::FEATURE_NOT_SAVEABLE);
    }
    let max_q = ctx.shared.config.limits.max_io_queues;
    let ctrl = c.ctrl.clone();
    let Some(a) = c.admin.as_mut() else {
        return st(Status::COMMAND_SEQUENCE_ERROR);
    };
    let dw0 = match sqe.feature_id() {
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
                return st(Status::INVALID_FIELD);
            }
            let g = (nsq.max(ncq) + 1).min(max_q);
            if let Some(x) = &ctrl {
                x.io_queues_granted.store(g, Ordering::Relaxed);
            }
            (g - 1) | ((g - 1) << 16)
        }
        feature::VOLATILE_WRITE_CACHE if !discovery => {
            a.vwc_enabled = sqe.cdw11 & 1 != 0;
            0
        }
        _ => return st(Status::INVALID_FIELD),
    };
    Outcome::Respond(Status::SUCCESS, dw0, 0, 0)
}

fn io(
    c: &mut RConn,
    sqe: &Sqe,
    class: OpClass,
    data: &mut [u8],
    tag: u64,
    ctx: &mut Ctx,
) -> Outcome {
    let Some(subsys) = c.subsys.as_ref() else {
        return st(Status::COMMAND_SEQUENCE_ERROR);
    };
    let nsid = sqe.nsid.0;
    if class == OpClass::OtherIo {
        return st(Status::INVALID_OPCODE);
    }
    if class == OpClass::Flush && nsid == 0xffff_ffff {
        return st(Status::SUCCESS);
    }
    let Some(ns) = subsys.namespace(nsid) else {
        return st(Status::INVALID_NAMESPACE_OR_FORMAT);
    };
    let (bs, blocks, bdev) = (u64::from(ns.block_size), ns.num_blocks, ns.bdev_index);
    let slba = sqe.slba();
    let nlb = u64::from(sqe.cdw12 & 0xffff) + 1;
    let in_range = |s: u64, n: u64| s.checked_add(n).is_some_and(|e| e <= blocks);
    let q = &mut ctx.bdevs[bdev];
    match class {
        OpClass::Read | OpClass::Write => {
            if nlb * bs != data.len() as u64 {
                return st(Status::SGL_DATA_BLOCK_LENGTH_INVALID);
            }
            if !in_range(slba, nlb) {
                return st(Status::LBA_OUT_OF_RANGE);
            }
            if class == OpClass::Read {
                q.submit(
                    tag,
                    BdevOp::Read {
                        lba: slba,
                        buf: data,
                    },
                );
            } else {
                q.submit(
                    tag,
                    BdevOp::Write {
                        lba: slba,
                        buf: data,
                    },
                );
            }
            Outcome::Submitted
        }
        OpClass::WriteZeroes => {
            if !in_range(slba, nlb) {
                return st(Status::LBA_OUT_OF_RANGE);
            }
            q.submit(
                tag,
                BdevOp::WriteZeroes {
                    lba: slba,
                    blocks: nlb,
                },
            );
            Outcome::Submitted
        }
        OpClass::Flush => {
            q.submit(tag, BdevOp::Flush);
            Outcome::Submitted
        }
        OpClass::Dsm => {
            let len = (u64::from(sqe.cdw10 & 0xff) + 1) * DSM_RANGE_SIZE as u64;
            if len != data.len() as u64 {
                return st(Status::SGL_DATA_BLOCK_LENGTH_INVALID);
            }
            ctx.dsm.clear();
            if sqe.cdw11 & DSM_AD != 0 {
                for r in data.chunks_exact(DSM_RANGE_SIZE) {
                    let nlb = u32::from_le_bytes([r[4], r[5], r[6], r[7]]);
                    let slba =
                        u64::from_le_bytes([r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15]]);
                    ctx.dsm.push((slba, u64::from(nlb)));
                }
            }
            let q = &mut ctx.bdevs[bdev];
            q.submit(tag, BdevOp::Deallocate { ranges: &ctx.dsm });
            Outcome::Submitted
        }
        _ => st(Status::INVALID_OPCODE),
    }
}
