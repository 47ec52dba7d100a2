//! The NVM I/O command set for [`Conn`]: validation, data movement set-up (in-capsule data,
//! R2T, C2HData) and submission to this reactor's backend queue. Nothing here locks or
//! allocates: requests and their buffers come from the connection's pool.

use nvme_proto::nvme::{IoOpcode, Sqe, Status, DSM_AD, DSM_RANGE_SIZE};

use super::{Conn, H2cSource, ReqState};
use crate::backend::BdevOp;
use crate::reactor::{make_tag, Ctx};
use crate::stats::OpClass;
use crate::trace::TP_BACKEND_SUBMITTED;

impl Conn {
    pub(super) fn on_io(&mut self, sqe: Sqe, data: &[u8], ctx: &mut Ctx) {
        let op = IoOpcode::from_u8(sqe.opcode);
        let class = match op {
            Some(IoOpcode::Read) => OpClass::Read,
            Some(IoOpcode::Write) => OpClass::Write,
            Some(IoOpcode::Flush) => OpClass::Flush,
            Some(IoOpcode::WriteZeroes) => OpClass::WriteZeroes,
            Some(IoOpcode::DatasetManagement) => OpClass::Dsm,
            _ => OpClass::OtherIo,
        };
        ctx.stats.cmds[class as usize].add(1);
        if class == OpClass::OtherIo {
            return self.respond(sqe.cid, Status::INVALID_OPCODE, 0, 0, ctx);
        }
        if let Err(st) = self.start_io(sqe, data, class, ctx) {
            self.respond(sqe.cid, st, 0, 0, ctx);
        }
    }

    fn start_io(
        &mut self,
        sqe: Sqe,
        data: &[u8],
        class: OpClass,
        ctx: &mut Ctx,
    ) -> Result<(), Status> {
        let Some(subsys) = self.subsys.as_ref() else {
            return Err(Status::COMMAND_SEQUENCE_ERROR);
        };
        let nsid = sqe.nsid.0;
        if class == OpClass::Flush && nsid == 0xffff_ffff {
            // Identify says broadcast Flush is not supported (VWC bits 2:1 = 10b): a uring
            // namespace would need a flush of its own, and hosts flush per namespace.
            return Err(Status::INVALID_NAMESPACE_OR_FORMAT);
        }
        let Some(ns_index) = subsys
            .namespaces
            .binary_search_by_key(&nsid, |n| n.nsid)
            .ok()
        else {
            return Err(Status::INVALID_NAMESPACE_OR_FORMAT);
        };
        let ns = &subsys.namespaces[ns_index];
        let (bs, blocks, bdev) = (u64::from(ns.block_size), ns.num_blocks, ns.bdev_index);
        let mdts = ctx.shared.config.limits.max_io_size.0;
        let slba = sqe.slba();
        let nlb = u64::from(sqe.cdw12 & 0xffff) + 1;
        let in_range = |s: u64, n: u64| s.checked_add(n).is_some_and(|e| e <= blocks);
        match class {
            OpClass::Read => {
                let len = nlb * bs;
                if len > mdts {
                    return Err(Status::INVALID_FIELD);
                }
                let sgl_len = self.c2h_len(&sqe, data)?;
                if sgl_len as u64 != len {
                    return Err(Status::SGL_DATA_BLOCK_LENGTH_INVALID);
                }
                if !in_range(slba, nlb) {
                    return Err(Status::LBA_OUT_OF_RANGE);
                }
                let idx = self.take_req(&sqe, len as u32, class, ns_index, ctx)?;
                self.trace_submit(idx, slba, len, ctx);
                let r = &mut self.reqs[usize::from(idx)];
                r.state = ReqState::AtBackend;
                let tag = make_tag(self.gen, self.slot, idx);
                ctx.bdevs[bdev].submit(
                    tag,
                    BdevOp::Read {
                        lba: slba,
                        buf: &mut r.buf[..len as usize],
                    },
                );
                Ok(())
            }
            OpClass::Write | OpClass::Dsm => {
                let len = if class == OpClass::Write {
                    nlb * bs
                } else {
                    (u64::from(sqe.cdw10 & 0xff) + 1) * DSM_RANGE_SIZE as u64
                };
                if len > mdts {
                    return Err(Status::INVALID_FIELD);
                }
                let src = self.h2c_source(&sqe, data)?;
                let sgl_len = match src {
                    H2cSource::InCapsule(l) | H2cSource::R2T(l) => u64::from(l),
                };
                if sgl_len != len {
                    return Err(Status::SGL_DATA_BLOCK_LENGTH_INVALID);
                }
                if class == OpClass::Write && !in_range(slba, nlb) {
                    return Err(Status::LBA_OUT_OF_RANGE);
                }
                let idx = self.take_req(&sqe, len as u32, class, ns_index, ctx)?;
                match src {
                    H2cSource::InCapsule(_)
                        if class == OpClass::Write && ctx.bdevs[bdev].copies_on_submit() =>
                    {
                        // Straight from the receive buffer: the backend copies before returning.
                        self.trace_submit(idx, slba, len, ctx);
                        let r = &mut self.reqs[usize::from(idx)];
                        r.state = ReqState::AtBackend;
                        r.received = len as u32;
                        let tag = make_tag(self.gen, self.slot, idx);
                        ctx.bdevs[bdev].submit(
                            tag,
                            BdevOp::Write {
                                lba: slba,
                                buf: data,
                            },
                        );
                    }
                    H2cSource::InCapsule(_) => {
                        let r = &mut self.reqs[usize::from(idx)];
                        r.buf[..data.len()].copy_from_slice(data);
                        r.received = len as u32;
                        self.execute_write_like(usize::from(idx), ctx);
                    }
                    H2cSource::R2T(_) => {
                        self.reqs[usize::from(idx)].state = ReqState::AwaitH2C;
                        self.send_r2t(sqe.cid, idx, len as u32, ctx);
                    }
                }
                Ok(())
            }
            OpClass::WriteZeroes => {
                if !in_range(slba, nlb) {
                    return Err(Status::LBA_OUT_OF_RANGE);
                }
                let idx = self.take_req(&sqe, 0, class, ns_index, ctx)?;
                self.trace_submit(idx, slba, 0, ctx);
                self.reqs[usize::from(idx)].state = ReqState::AtBackend;
                let tag = make_tag(self.gen, self.slot, idx);
                ctx.bdevs[bdev].submit(
                    tag,
                    BdevOp::WriteZeroes {
                        lba: slba,
                        blocks: nlb,
                    },
                );
                Ok(())
            }
            OpClass::Flush => {
                let idx = self.take_req(&sqe, 0, class, ns_index, ctx)?;
                self.trace_submit(idx, 0, 0, ctx);
                self.reqs[usize::from(idx)].state = ReqState::AtBackend;
                ctx.bdevs[bdev].submit(make_tag(self.gen, self.slot, idx), BdevOp::Flush);
                Ok(())
            }
            _ => Err(Status::INVALID_OPCODE),
        }
    }

    /// A request goes to the backend.
    fn trace_submit(&mut self, idx: u16, lba: u64, bytes: u64, ctx: &Ctx) {
        let r = &mut self.reqs[usize::from(idx)];
        r.t_submit = ctx.trace.tsc();
        let cid = r.sqe.cid.0;
        ctx.trace
            .tp(TP_BACKEND_SUBMITTED, self.slot, cid, lba, bytes);
        ctx.trace.counters(|c| c.backend_submit());
    }

    /// A request from the pool, or the connection is terminated (the host overran its queue)
    /// and the caller answers nothing: `Err(SUCCESS)` is never sent because the state is no
    /// longer Enabled.
    fn take_req(
        &mut self,
        sqe: &Sqe,
        len: u32,
        class: OpClass,
        ns_index: usize,
        ctx: &mut Ctx,
    ) -> Result<u16, Status> {
        match self.alloc_req(sqe, len, class, ns_index) {
            Some(i) => Ok(i),
            None => {
                self.queue_overrun(sqe, ctx);
                Err(Status::INTERNAL_ERROR)
            }
        }
    }

    /// Host data is in the request's buffer: submit the write or the deallocation.
    pub(super) fn execute_write_like(&mut self, idx: usize, ctx: &mut Ctx) {
        let tag = make_tag(self.gen, self.slot, idx as u16);
        {
            let r = &self.reqs[idx];
            let (lba, len) = (r.sqe.slba(), u64::from(r.len));
            self.trace_submit(idx as u16, lba, len, ctx);
        }
        let Some(subsys) = self.subsys.as_ref() else {
            return;
        };
        let r = &mut self.reqs[idx];
        let ns = &subsys.namespaces[r.ns_index];
        let q = &mut ctx.bdevs[ns.bdev_index];
        r.state = ReqState::AtBackend;
        match r.class {
            OpClass::Write => {
                q.submit(
                    tag,
                    BdevOp::Write {
                        lba: r.sqe.slba(),
                        buf: &r.buf[..r.len as usize],
                    },
                );
            }
            _ => {
                // Dataset Management: only the Deallocate attribute does anything.
                ctx.dsm.clear();
                if r.sqe.cdw11 & DSM_AD != 0 {
                    for c in r.buf[..r.len as usize].chunks_exact(DSM_RANGE_SIZE) {
                        let nlb = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
                        let slba = u64::from_le_bytes([
                            c[8], c[9], c[10], c[11], c[12], c[13], c[14], c[15],
                        ]);
                        ctx.dsm.push((slba, u64::from(nlb)));
                    }
                }
                q.submit(tag, BdevOp::Deallocate { ranges: &ctx.dsm });
            }
        }
    }
}
