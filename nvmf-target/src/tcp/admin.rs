//! Fabrics Connect, Property Get/Set and the admin command set for [`Conn`]: the NVMe/TCP side
//! of [`crate::controller`] (which holds the controller model both transports share). Here is
//! only what is TCP's own: where the Connect data comes from (in-capsule), the controller-to-host
//! transfer check, the queue's request pool, SQ flow control and how a response is sent.

use nvme_proto::fabrics;
use nvme_proto::nvme::{Sqe, Status};

use crate::config::C2hSuccess;

use super::{Conn, ConnEvent, Req};
use crate::controller::{self as ctl, AdminQueue, Reply, Transport};
use crate::pollgroup::Ctx;

impl Conn {
    pub(super) fn on_connect(&mut self, sqe: Sqe, data: &[u8], ctx: &mut Ctx) {
        let cid = sqe.cid;
        let r = (|| -> Result<(), ctl::Refusal> {
            let cmd = ctl::connect_command(&sqe)?;
            match self.h2c_source(&sqe, data) {
                Ok(super::H2cSource::InCapsule(len))
                    if len as usize >= fabrics::CONNECT_DATA_SIZE => {}
                Ok(_) => {
                    return Err(ctl::Refusal::new(
                        Status::SGL_DATA_BLOCK_LENGTH_INVALID,
                        "sgl",
                        "connect data not in the capsule or shorter than 1024 bytes",
                    ))
                }
                Err(s) => return Err(ctl::Refusal::new(s, "sgl", "bad data descriptor")),
            }
            let a = ctl::accept_connect(&cmd, data, ctx)?;
            if cmd.qid != 0 {
                self.cfg.max_in_capsule_data = ctx.limits().in_capsule_data_size.0 as u32;
            }
            self.admin = a.admin;
            self.qid = cmd.qid;
            let sq_flow_disabled = cmd.cattr & fabrics::cattr::DISABLE_SQ_FLOW_CONTROL != 0;
            self.c2h_success = cmd.qid != 0
                && match ctx.c2h_success() {
                    C2hSuccess::Auto => sq_flow_disabled,
                    C2hSuccess::Always => true,
                    C2hSuccess::Never => false,
                };
            self.sq_flow = !sq_flow_disabled;
            self.sqsize = a.entries as u16;
            self.sqhd = 0;
            let prealloc = if cmd.qid == 0 { 0 } else { 4096 };
            self.reqs = (0..a.entries).map(|_| Req::new(prealloc)).collect();
            self.free = (0..a.entries as u16).rev().collect();
            self.ctrl = Some(a.ctrl);
            self.subsys = Some(a.subsys);
            Ok(())
        })();
        match r {
            Ok(()) => {
                let cntlid = self.ctrl.as_ref().map_or(0, |c| c.cntlid);
                self.transition(ConnEvent::Connected, ctx);
                let size = u32::from(self.sqsize);
                ctl::connected(ctx, self.slot, cid.0, self.qid, cntlid, size);
                let peer = self.peer.to_string();
                ctl::trace_qpair_host(ctx, self.slot, self.ctrl.as_deref(), &peer);
                // SQ flow control disabled as asked (the discovery log's TREQ says we support
                // it): the Connect response's SQHD is 0xFFFF, which is how a host learns that
                // the controller agreed (FreeBSD's host keeps counting SQ slots otherwise).
                let sqhd = if self.sq_flow { self.sqhd } else { 0xFFFF };
                self.respond_with_sqhd(cid, Status::SUCCESS, u32::from(cntlid), 0, sqhd, ctx);
            }
            Err(r) => {
                let qid = ctl::connect_command(&sqe).map_or(0, |c| c.qid);
                ctl::connect_refused(&r, Transport::Tcp, self.peer, qid, data, ctx);
                self.respond(cid, r.status, r.dw0, 0, ctx)
            }
        }
    }

    pub(super) fn on_property_get(&mut self, sqe: Sqe, ctx: &mut Ctx) {
        match ctl::property_get(self.admin.as_deref(), &sqe, ctx) {
            Ok(v) => self.respond(sqe.cid, Status::SUCCESS, v as u32, (v >> 32) as u32, ctx),
            Err(s) => self.respond(sqe.cid, s, 0, 0, ctx),
        }
    }

    pub(super) fn on_property_set(&mut self, sqe: Sqe, ctx: &mut Ctx) {
        let s = ctl::property_set(self.admin.as_deref_mut(), &sqe)
            .map_or_else(|s| s, |()| Status::SUCCESS);
        self.respond(sqe.cid, s, 0, 0, ctx);
    }

    pub(super) fn on_admin(&mut self, sqe: Sqe, data: &[u8], ctx: &mut Ctx) {
        // Identify and Get Log Page move data to the host: check the transfer the host described.
        let c2h_len = match nvme_proto::nvme::AdminOpcode::from_u8(sqe.opcode) {
            Some(
                nvme_proto::nvme::AdminOpcode::Identify | nvme_proto::nvme::AdminOpcode::GetLogPage,
            ) => match self.c2h_len(&sqe, data) {
                Ok(l) if l <= ctx.limits().max_io_size.0 as usize => l,
                Ok(_) => return self.respond(sqe.cid, Status::INVALID_FIELD, 0, 0, ctx),
                Err(s) => return self.respond(sqe.cid, s, 0, 0, ctx),
            },
            _ => 0,
        };
        let q = AdminQueue {
            transport: Transport::Tcp,
            subsys: self.subsys.as_ref(),
            ctrl: self.ctrl.as_ref(),
            admin: self.admin.as_deref_mut(),
        };
        let mut out = std::mem::take(&mut self.scratch);
        let reply = ctl::admin_command(q, &sqe, c2h_len, sqe.cid, &mut out, ctx);
        self.scratch = out;
        match reply {
            Reply::Status(s, dw0, dw1) => self.respond(sqe.cid, s, dw0, dw1, ctx),
            Reply::Data => self.respond_with_scratch(sqe.cid, c2h_len, ctx),
            Reply::Held => self.cid_mark(sqe.cid, true),
        }
    }
}
