//! The NVMe/TCP side of the NVM I/O command set: the checks, the backend operation and the
//! status mapping are [`crate::nvm`]'s; this file only decides where the data comes from and
//! goes to (in-capsule data, R2T + H2CData, C2HData from the request's buffer). Nothing here
//! locks or allocates: requests and their buffers come from the connection's pool.

use nvme_proto::nvme::{Sqe, Status};

use super::{Conn, H2cSource, ReqState};
use crate::nvm::{self, IoCmd, OpClass, Payload};
use crate::pollgroup::{Ctx, ReqTag};
use crate::trace::TP_BACKEND_SUBMITTED;

impl Conn {
    pub(super) fn on_io(&mut self, sqe: &Sqe, data: &[u8], ctx: &mut Ctx) {
        if let Err(st) = self.start_io(sqe, data, ctx) {
            self.respond(sqe.cid, st, 0, 0, ctx);
        }
    }

    fn start_io(&mut self, sqe: &Sqe, data: &[u8], ctx: &mut Ctx) -> Result<(), Status> {
        let cmd = nvm::check(sqe, self.subsys.as_deref(), ctx.mdts())?;
        let mut src = None;
        let sgl_len = if !cmd.moves_data() {
            0
        } else if cmd.from_host() {
            let s = self.h2c_source(sqe, data)?;
            src = Some(s);
            match s {
                H2cSource::InCapsule(l) | H2cSource::R2T(l) => u64::from(l),
            }
        } else {
            self.c2h_len(sqe, data)? as u64
        };
        nvm::check_data(&cmd, sgl_len)?;
        let idx = self.take_req(sqe, &cmd, ctx)?;
        let tag = ReqTag::Tcp {
            gen: self.gen,
            slot: self.slot,
            req: idx,
        }
        .encode();
        match src {
            Some(H2cSource::InCapsule(_))
                if cmd.class == OpClass::Write && ctx.bdevs[cmd.bdev].copies_on_submit() =>
            {
                // Straight from the receive buffer: the backend copies before returning.
                self.trace_submit(idx, cmd.slba, u64::from(cmd.len), ctx);
                let r = &mut self.reqs[usize::from(idx)];
                r.state = ReqState::AtBackend;
                r.received = cmd.len;
                nvm::submit(&cmd, tag, Payload::Host(data), ctx);
            }
            Some(H2cSource::InCapsule(_)) => {
                let r = &mut self.reqs[usize::from(idx)];
                r.buf[..data.len()].copy_from_slice(data);
                r.received = cmd.len;
                self.execute_write_like(usize::from(idx), None, ctx);
            }
            Some(H2cSource::R2T(_)) => {
                self.reqs[usize::from(idx)].state = ReqState::AwaitH2C;
                self.send_r2t(sqe.cid, idx, cmd.len, ctx);
            }
            None if self.read_in_place(idx, &cmd, ctx) => {}
            None => {
                let lba = if cmd.class == OpClass::Flush {
                    0
                } else {
                    cmd.slba
                };
                self.trace_submit(idx, lba, u64::from(cmd.len), ctx);
                let r = &mut self.reqs[usize::from(idx)];
                r.state = ReqState::AtBackend;
                let buf = &mut r.buf[..cmd.len as usize];
                nvm::submit(&cmd, tag, Payload::Buffer(buf), ctx);
            }
        }
        Ok(())
    }

    /// A request goes to the backend.
    fn trace_submit(&mut self, idx: u16, lba: u64, bytes: u64, ctx: &Ctx) {
        let r = &mut self.reqs[usize::from(idx)];
        r.t_submit = ctx.trace.tsc();
        let cid = r.cid.0;
        ctx.trace
            .tp(TP_BACKEND_SUBMITTED, self.slot, cid, lba, bytes);
    }

    /// A request from the pool, or the connection is terminated (the host overran its queue)
    /// and the caller answers nothing: `Err(SUCCESS)` is never sent because the state is no
    /// longer Enabled.
    fn take_req(&mut self, sqe: &Sqe, cmd: &IoCmd, ctx: &mut Ctx) -> Result<u16, Status> {
        match self.alloc_req(sqe.cid, cmd) {
            Some(i) => Ok(i),
            None => {
                self.queue_overrun(sqe, ctx);
                Err(Status::INTERNAL_ERROR)
            }
        }
    }

    /// Host data is in the request's buffer (or in `host`, where it arrived, for a backend that
    /// copies on submit): submit the write or the deallocation.
    pub(super) fn execute_write_like(&mut self, idx: usize, host: Option<&[u8]>, ctx: &mut Ctx) {
        let tag = ReqTag::Tcp {
            gen: self.gen,
            slot: self.slot,
            req: idx as u16,
        }
        .encode();
        let cmd = self.reqs[idx].io;
        self.trace_submit(idx as u16, cmd.slba, u64::from(cmd.len), ctx);
        let r = &mut self.reqs[idx];
        r.state = ReqState::AtBackend;
        let data = match host {
            Some(d) => Payload::Host(d),
            None => Payload::Buffer(&mut r.buf[..cmd.len as usize]),
        };
        nvm::submit(&cmd, tag, data, ctx);
    }
}
