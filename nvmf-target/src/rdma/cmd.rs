//! Command execution for NVMe/RDMA requests: Fabrics (Connect, Property Get/Set, Disconnect),
//! the admin command set and the NVM I/O command set. Runs on the reactor that owns the
//! connection, after the request's host data (if any) is in its registered buffer; admin and
//! fabrics commands complete inline (their controller-to-host data is written into the same
//! buffer), I/O commands go to the reactor's backend queue with the buffer itself (no copy).
//!
//! Fabrics and admin commands are answered by the controller model both transports share
//! ([`crate::controller`]), I/O commands by the NVM command set both share ([`crate::nvm`]):
//! this file only says where the data is. Nothing here allocates on the I/O path.

use nvme_proto::fabrics::{self, connect_cmd_offset as cmd_off, FabricsType};
use nvme_proto::nvme::{Sqe, Status};

use super::{RConn, RConnState, RState, ReactorRdma, TP_RDMA_EXECUTING};
use crate::controller::{self as ctl, AdminQueue, Reply, Transport};
use crate::nvm::{self, IoCmd, OpClass, Payload};
use crate::pollgroup::Ctx;

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

/// Executes request `idx` of `rd` (its data, if any, is in its buffer).
pub(super) fn execute(rd: &mut ReactorRdma, idx: u32, ctx: &mut Ctx) {
    let (slot, sqe, len, class, buf, checked) = {
        let r = &rd.reqs[idx as usize];
        (r.slot, r.sqe, r.len, r.class, r.buf, r.io)
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
    let tag = rd.backend_tag(idx);
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
        io(conn, &sqe, checked, data, tag, ctx)
    };
    match outcome {
        Outcome::Respond(s, dw0, dw1, c2h) => {
            rd.reqs[idx as usize].c2h = c2h.min(len);
            rd.respond(idx, s, dw0, dw1, ctx);
        }
        Outcome::Submitted => {
            let r = &mut rd.reqs[idx as usize];
            r.state = RState::AtBackend;
            r.t_submit = ctx.trace.tsc();
        }
        Outcome::Held => rd.reqs[idx as usize].state = RState::Held,
    }
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
            ctl::connected(ctx, slot, sqe.cid.0, c.qid, cntlid, u32::from(c.sqsize));
            ctl::trace_qpair_host(ctx, slot, c.ctrl.as_deref(), &c.peer);
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

/// An I/O command whose host data (if any) is in `data`, the request's registered buffer,
/// which is as long as the host's keyed SGL says. `checked`: the command as [`nvm::check`]
/// passed it on arrival (checked once per command); `None` (it arrived before its queue was
/// enabled) checks it now.
fn io(
    c: &mut RConn,
    sqe: &Sqe,
    checked: Option<IoCmd>,
    data: &mut [u8],
    tag: u64,
    ctx: &mut Ctx,
) -> Outcome {
    let cmd = match checked
        .map_or_else(|| nvm::check(sqe, c.subsys.as_deref(), ctx.mdts()), Ok)
        .and_then(|cmd| nvm::check_data(&cmd, data.len() as u64).map(|()| cmd))
    {
        Ok(cmd) => cmd,
        Err(s) => return st(s),
    };
    nvm::submit(&cmd, tag, Payload::Buffer(data), ctx);
    Outcome::Submitted
}
