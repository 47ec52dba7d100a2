//! Command execution for NVMe/RDMA requests: Fabrics (Connect, Property Get/Set, Disconnect),
//! the admin command set and the NVM I/O command set. Runs on the reactor that owns the
//! connection, after the request's host data (if any) is in its registered buffer; admin and
//! fabrics commands complete inline (their controller-to-host data is written into the same
//! buffer), I/O commands go to the reactor's backend queue with the buffer itself (no copy).
//!
//! Fabrics and admin commands are answered by the controller model both transports share
//! ([`crate::controller`]); the I/O command set mirrors the NVMe/TCP one (`tcp/io.rs`): same
//! statuses, only the data movement differs. Nothing here allocates on the I/O path.

use nvme_proto::fabrics::{self, connect_cmd_offset as cmd_off, FabricsType};
use nvme_proto::nvme::{IoOpcode, Sqe, Status, DSM_AD, DSM_RANGE_SIZE};

use super::{RConn, RConnState, RState, ReactorRdma, TP_RDMA_EXECUTING};
use crate::backend::BdevOp;
use crate::controller::{self as ctl, AdminQueue, Reply, Transport};
use crate::reactor::Ctx;
use crate::stats::OpClass;
use crate::trace::TP_QPAIR_CONNECT;

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
        let mut abandoned = None;
        if let Some(a) = conn.admin.as_mut() {
            a.last_keep_alive = ctx.now;
            // A held AER whose id the host reuses was abandoned by the host: release it.
            abandoned = a.abandon_aer(sqe.cid);
        }
        let out = admin(conn, &sqe, data, &mut rd.scratch, idx, ctx);
        if let Some(held) = abandoned {
            rd.free_req(held);
        }
        out
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
    let reply = |r: Result<u64, Status>| match r {
        Ok(v) => Outcome::Respond(Status::SUCCESS, v as u32, (v >> 32) as u32, 0),
        Err(s) => st(s),
    };
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
        Some(FabricsType::PropertyGet) => reply(ctl::property_get(c.admin.as_deref(), sqe, ctx)),
        Some(FabricsType::PropertySet) => {
            reply(ctl::property_set(c.admin.as_deref_mut(), sqe).map(|()| 0))
        }
        Some(FabricsType::Disconnect) => st(Status::SUCCESS),
        _ => st(Status::INVALID_OPCODE),
    }
}

fn connect(c: &mut RConn, slot: u16, sqe: &Sqe, data: &[u8], ctx: &mut Ctx) -> Outcome {
    let r = (|| -> Result<(), ctl::Refusal> {
        let cmd = ctl::connect_command(sqe)?;
        if data.len() < fabrics::CONNECT_DATA_SIZE {
            return Err(ctl::Refusal::new(
                Status::SGL_DATA_BLOCK_LENGTH_INVALID,
                "sgl",
                "connect data shorter than 1024 bytes",
            ));
        }
        // The queue was named in the CM request already; the Connect must agree.
        if cmd.qid != c.qid {
            return Err(ctl::invalid_param(
                false,
                cmd_off::QID,
                "qid",
                "differs from the rdma-cm request's",
            ));
        }
        let a = ctl::accept_connect(&cmd, data, ctx)?;
        c.admin = a.admin;
        c.sqsize = a.entries as u16;
        c.sqhd = 0;
        c.ctrl = Some(a.ctrl);
        c.subsys = Some(a.subsys);
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
        Err(r) => {
            ctl::connect_refused(&r, Transport::Rdma, &c.peer, c.qid, data, ctx);
            Outcome::Respond(r.status, r.dw0, 0, 0)
        }
    }
}

/// An admin command: the controller answers into `scratch`, copied into the request's
/// registered buffer for the RDMA WRITE (admin data is small and rare: one copy is fine).
fn admin(
    c: &mut RConn,
    sqe: &Sqe,
    data: &mut [u8],
    scratch: &mut Vec<u8>,
    idx: u32,
    ctx: &mut Ctx,
) -> Outcome {
    let q = AdminQueue {
        transport: Transport::Rdma,
        subsys: c.subsys.as_ref(),
        ctrl: c.ctrl.as_ref(),
        admin: c.admin.as_deref_mut(),
    };
    match ctl::admin_command(q, sqe, data.len(), idx, scratch, ctx) {
        Reply::Status(s, dw0, dw1) => Outcome::Respond(s, dw0, dw1, 0),
        Reply::Data => {
            let n = scratch.len().min(data.len());
            data[..n].copy_from_slice(&scratch[..n]);
            data[n..].fill(0);
            Outcome::Respond(Status::SUCCESS, 0, 0, data.len() as u32)
        }
        Reply::Held => Outcome::Held,
    }
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
        // Identify says broadcast Flush is not supported (VWC bits 2:1 = 10b).
        return st(Status::INVALID_NAMESPACE_OR_FORMAT);
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
