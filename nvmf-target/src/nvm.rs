//! The NVM I/O command set, once for every transport (the I/O counterpart of
//! [`crate::controller`]): which commands exist, how they are checked (opcode, NSID, MDTS, SGL
//! length, LBA range), the [`BdevOp`] each becomes, how a backend result maps to an NVMe status,
//! and the per-request bookkeeping every transport owes the counters page (stage latencies,
//! bytes, errors). A transport (`tcp/`, `rdma/`) only moves data: it asks [`check`] before it
//! fetches anything from the host, [`check_data`] once it knows how much data the host described,
//! hands the request's buffer to [`submit`], and reports the completion through [`completed`]
//! and the response's departure through [`on_wire`].
//!
//! Threading: plain functions run by the reactor that owns the request, on its `Ctx`. Nothing
//! here allocates or locks (Dataset Management ranges go to the reactor's preallocated scratch).

use nvme_proto::nvme::{IoOpcode, Sqe, Status, DSM_AD, DSM_RANGE_SIZE};
use trace_ring::OpClass as TraceClass;

use crate::backend::{BdevError, BdevOp};
use crate::pollgroup::Ctx;
use crate::subsystem::Subsystem;
use crate::trace::{STAGE_BACKEND, STAGE_TO_BACKEND, STAGE_TO_WIRE};

/// Command classes counted separately.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(usize)]
pub enum OpClass {
    #[default]
    Read = 0,
    Write,
    Flush,
    WriteZeroes,
    Dsm,
    OtherIo,
    Admin,
    Fabrics,
}

impl OpClass {
    pub const COUNT: usize = 8;
    pub const NAMES: [&'static str; Self::COUNT] = [
        "read",
        "write",
        "flush",
        "write_zeroes",
        "dataset_management",
        "other_io",
        "admin",
        "fabrics",
    ];

    /// The class of a command on an I/O queue.
    pub fn of_io(sqe: &Sqe) -> OpClass {
        match IoOpcode::from_u8(sqe.opcode) {
            Some(IoOpcode::Read) => OpClass::Read,
            Some(IoOpcode::Write) => OpClass::Write,
            Some(IoOpcode::Flush) => OpClass::Flush,
            Some(IoOpcode::WriteZeroes) => OpClass::WriteZeroes,
            Some(IoOpcode::DatasetManagement) => OpClass::Dsm,
            _ => OpClass::OtherIo,
        }
    }

    /// The class of any command on queue `qid`.
    pub fn of(sqe: &Sqe, qid: u16) -> OpClass {
        if sqe.is_fabrics() {
            OpClass::Fabrics
        } else if qid == 0 {
            OpClass::Admin
        } else {
            OpClass::of_io(sqe)
        }
    }

    /// The counters page's class.
    pub fn trace(self) -> TraceClass {
        match self {
            OpClass::Read => TraceClass::Read,
            OpClass::Write => TraceClass::Write,
            OpClass::Admin | OpClass::Fabrics => TraceClass::Admin,
            _ => TraceClass::Other,
        }
    }
}

/// A checked I/O command: what the backend will do and how much data moves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoCmd {
    pub class: OpClass,
    /// The namespace's NSID (as an index).
    pub ns_index: usize,
    /// Index of the namespace's bdev (the reactor's `bdevs` queue).
    pub bdev: usize,
    pub slba: u64,
    pub nlb: u64,
    /// Bytes of data the command moves (host to controller for Write and Dataset Management,
    /// controller to host for Read, none otherwise).
    pub len: u32,
    /// Number of blocks of the namespace (for the range check).
    blocks: u64,
    /// Dataset Management attributes (CDW11; zero for other commands), so a request keeps
    /// this and not the whole 64-byte command.
    pub dsm_attributes: u32,
}

impl IoCmd {
    /// Whether the command carries data, so the transport must find out how much the host
    /// described (its SGL) before [`check_data`].
    pub fn moves_data(&self) -> bool {
        matches!(self.class, OpClass::Read | OpClass::Write | OpClass::Dsm)
    }

    /// Whether the data goes from the host to the controller.
    pub fn from_host(&self) -> bool {
        matches!(self.class, OpClass::Write | OpClass::Dsm)
    }
}

/// Checks what can be checked from the command alone, before any data moves: a known opcode, an
/// enabled queue (`subsys`), an active namespace, the transfer within MDTS (`mdts` bytes).
#[inline]
pub fn check(sqe: &Sqe, subsys: Option<&Subsystem>, mdts: u64) -> Result<IoCmd, Status> {
    let class = OpClass::of_io(sqe);
    if class == OpClass::OtherIo {
        return Err(Status::INVALID_OPCODE);
    }
    let Some(subsys) = subsys else {
        return Err(Status::COMMAND_SEQUENCE_ERROR);
    };
    let nsid = sqe.nsid.0;
    if class == OpClass::Flush && nsid == 0xffff_ffff {
        // Identify says broadcast Flush is not supported (VWC bits 2:1 = 10b): a uring namespace
        // would need a flush of its own, and hosts flush per namespace.
        return Err(Status::INVALID_NAMESPACE_OR_FORMAT);
    }
    let Some(ns) = subsys.namespace(nsid) else {
        return Err(Status::INVALID_NAMESPACE_OR_FORMAT);
    };
    let ns_index = nsid as usize;
    let nlb = u64::from(sqe.cdw12 & 0xffff) + 1;
    let len = match class {
        OpClass::Read | OpClass::Write => nlb * u64::from(ns.block_size),
        OpClass::Dsm => (u64::from(sqe.cdw10 & 0xff) + 1) * DSM_RANGE_SIZE as u64,
        _ => 0,
    };
    if len > mdts {
        return Err(Status::INVALID_FIELD);
    }
    Ok(IoCmd {
        class,
        ns_index,
        bdev: ns.bdev_index,
        slba: sqe.slba(),
        nlb,
        len: len as u32,
        blocks: ns.num_blocks,
        dsm_attributes: if class == OpClass::Dsm { sqe.cdw11 } else { 0 },
    })
}

/// Checks the rest once the transport knows how many bytes the host's SGL describes
/// (`sgl_len`, ignored for commands without data): the SGL matches the transfer, and the LBA
/// range lies within the namespace.
pub fn check_data(cmd: &IoCmd, sgl_len: u64) -> Result<(), Status> {
    if cmd.moves_data() && sgl_len != u64::from(cmd.len) {
        return Err(Status::SGL_DATA_BLOCK_LENGTH_INVALID);
    }
    let in_range = cmd
        .slba
        .checked_add(cmd.nlb)
        .is_some_and(|e| e <= cmd.blocks);
    if matches!(
        cmd.class,
        OpClass::Read | OpClass::Write | OpClass::WriteZeroes
    ) && !in_range
    {
        return Err(Status::LBA_OUT_OF_RANGE);
    }
    Ok(())
}

/// The data a command works on.
pub enum Payload<'a> {
    /// The request's own buffer (`len` bytes): read into, or holding the host's data.
    Buffer(&'a mut [u8]),
    /// The host's data where it arrived (a TCP receive buffer), for a backend that copies on
    /// submit ([`crate::backend::BdevQueue::copies_on_submit`]).
    Host(&'a [u8]),
}

/// Hands a checked command to this reactor's queue of its bdev, tagged `tag`.
pub fn submit(cmd: &IoCmd, tag: u64, data: Payload<'_>, ctx: &mut Ctx) {
    let q = &mut ctx.bdevs[cmd.bdev];
    let lba = cmd.slba;
    match (cmd.class, data) {
        (OpClass::Read, Payload::Buffer(buf)) => q.submit(tag, BdevOp::Read { lba, buf }),
        (OpClass::Write, Payload::Buffer(buf)) => q.submit(tag, BdevOp::Write { lba, buf }),
        (OpClass::Write, Payload::Host(buf)) => q.submit(tag, BdevOp::Write { lba, buf }),
        (OpClass::WriteZeroes, _) => q.submit(
            tag,
            BdevOp::WriteZeroes {
                lba,
                blocks: cmd.nlb,
            },
        ),
        (OpClass::Flush, _) => q.submit(tag, BdevOp::Flush),
        (OpClass::Dsm, data) => {
            let buf: &[u8] = match data {
                Payload::Buffer(b) => b,
                Payload::Host(b) => b,
            };
            // Only the Deallocate attribute does anything; the ranges go to the reactor's
            // scratch (never reallocated: 256 ranges is the spec's maximum).
            ctx.dsm.clear();
            if cmd.dsm_attributes & DSM_AD != 0 {
                for r in buf.chunks_exact(DSM_RANGE_SIZE) {
                    let nlb = u32::from_le_bytes([r[4], r[5], r[6], r[7]]);
                    let slba =
                        u64::from_le_bytes([r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15]]);
                    ctx.dsm.push((slba, u64::from(nlb)));
                }
            }
            ctx.bdevs[cmd.bdev].submit(tag, BdevOp::Deallocate { ranges: &ctx.dsm });
        }
        // A Read needs a buffer to read into; `check` admits no other class.
        (OpClass::Read, Payload::Host(_)) | (_, _) => {}
    }
    ctx.trace.counters(|c| c.backend_submit());
}

/// A read from a backend that is memory ([`crate::backend::Bdev::memory`], malloc), done
/// without a copy: the offset in the device and the bytes the command reads, where they lie, for
/// the transport to send from. Counts the backend submission and completion; the caller reports
/// the completion through [`completed`] as for any read. `None` (nothing counted): the backend is
/// not memory, submit the read instead. The LBA range was checked by [`check_data`].
#[inline]
pub fn read_in_place<'a>(
    cmd: &IoCmd,
    subsys: &'a Subsystem,
    ctx: &Ctx,
) -> Option<(usize, &'a [u8])> {
    if cmd.class != OpClass::Read {
        return None;
    }
    let ns = subsys.namespace_slot(cmd.ns_index as u32)?;
    let mem = ns.bdev.memory()?;
    let off = usize::try_from(cmd.slba.checked_mul(u64::from(ns.block_size))?).ok()?;
    let bytes = mem.get(off..off.checked_add(cmd.len as usize)?)?;
    ctx.trace.counters(|c| {
        c.backend_submit();
        c.backend_complete();
    });
    Some((off, bytes))
}

/// The NVMe status of a backend result.
pub fn status_of(class: OpClass, r: Result<(), BdevError>) -> Status {
    match r {
        Ok(()) => Status::SUCCESS,
        Err(BdevError::OutOfRange) => Status::LBA_OUT_OF_RANGE,
        Err(BdevError::BadLength) => Status::INVALID_FIELD,
        Err(BdevError::Media) => match class {
            OpClass::Read => Status::UNRECOVERED_READ_ERROR,
            _ => Status::WRITE_FAULT,
        },
        // The device's own answer, bit for bit.
        Err(BdevError::Nvme(s)) => s,
    }
}

/// A backend operation finished: records the `to_backend` (capsule `t0` -> submit `t_submit`)
/// and `backend` (submit -> now) stages, counts a backend error and returns the response's
/// status (the transport counts the command and its bytes when the response goes out).
pub fn completed(
    ctx: &mut Ctx,
    class: OpClass,
    t0: u64,
    t_submit: u64,
    r: Result<(), BdevError>,
) -> Status {
    if ctx.trace.active() {
        let now = ctx.trace.tsc();
        ctx.trace.counters(|c| {
            c.stage_latency_ticks(STAGE_TO_BACKEND, t_submit.wrapping_sub(t0));
            c.stage_latency_ticks(STAGE_BACKEND, now.wrapping_sub(t_submit));
        });
    }
    if r.is_err() {
        ctx.trace
            .counters(|c| c.error(trace_ring::ErrorClass::Backend));
    }
    status_of(class, r)
}

/// What a transport remembers of a response between queuing it and learning that it left
/// (the TCP write carrying its last byte returned, the RDMA SEND completed): enough to close
/// the command's accounting then. Plain data, kept in the transport's own preallocated queue or
/// request (no allocation per I/O).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    /// Trace clock: the command arrived.
    pub t0: u64,
    /// Trace clock: the response was queued / posted.
    pub queued_at: u64,
    /// Bytes the command moved (counted only if `ok`).
    pub bytes: u32,
    pub class: TraceClass,
    /// The response's status is SUCCESS.
    pub ok: bool,
}

impl Response {
    /// A response being queued now (`ctx`'s latest clock read) for a command that arrived at
    /// `t0`.
    #[inline]
    pub fn queued(ctx: &Ctx, t0: u64, class: TraceClass, bytes: u64, status: Status) -> Response {
        Response {
            t0,
            queued_at: ctx.trace.tsc(),
            bytes: u32::try_from(bytes).unwrap_or(u32::MAX),
            class,
            ok: status.is_success(),
        }
    }
}

/// Response `r` of a command on qpair slot `slot` is on the wire now (the transport refreshed
/// the clock when it learned so): the command is done. Records the `to_wire` stage, counts the
/// command, its bytes and a failed status, and completes it on the qpair (outstanding drops, its
/// hold time, arrival to sent, goes to the slot's latency histogram). Counting here and not when
/// the response is queued keeps a qpair's outstanding honest for a command answered at once (a
/// read from memory): it is held until its data and response leave, as the host sees it.
#[inline]
pub fn on_wire(ctx: &Ctx, slot: u16, r: &Response) {
    ctx.trace.with(|w| on_wire_in(w, slot, r));
}

/// [`on_wire`] inside a borrow the caller already holds (a batch of responses).
#[inline]
pub fn on_wire_in(w: &mut crate::trace::Writers<'_>, slot: u16, r: &Response) {
    let now = w.tsc();
    let bytes = if r.ok { u64::from(r.bytes) } else { 0 };
    let c = w.counters();
    c.stage_latency_ticks(STAGE_TO_WIRE, now.wrapping_sub(r.queued_at));
    c.command(r.class, bytes);
    c.qpair_complete(slot, bytes, now.wrapping_sub(r.t0), !r.ok);
    if !r.ok {
        c.error(trace_ring::ErrorClass::Status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BackendKind, ByteSize, Limits, NamespaceConfig, SubsystemConfig};
    use nvme_proto::nvme::Nsid;

    fn subsys() -> Subsystem {
        let ns = NamespaceConfig {
            nsid: Some(1),
            backend: BackendKind::Null,
            size: ByteSize(1 << 20),
            block_size: 512,
        };
        let b = crate::backend::create_with(&ns, &Limits::default(), true, &[]).expect("null bdev");
        let cfg = SubsystemConfig {
            nqn: "nqn.2026-11.io.ringside:nvm-test".into(),
            serial: "RS1".into(),
            model: "ringside".into(),
            allowed_hosts: Vec::new(),
            namespaces: vec![ns],
        };
        Subsystem::nvm(&cfg, &[b], 0)
    }

    fn sqe(opcode: u8, nsid: u32, slba: u64, nlb0: u16) -> Sqe {
        Sqe {
            opcode,
            nsid: Nsid(nsid),
            cdw10: slba as u32,
            cdw11: (slba >> 32) as u32,
            cdw12: u32::from(nlb0),
            ..Sqe::default()
        }
    }

    #[test]
    fn every_check_answers_with_its_status() {
        let s = subsys();
        let mdts = 8192;
        let read = IoOpcode::Read as u8;
        let write = IoOpcode::Write as u8;
        assert_eq!(
            check(&sqe(0x7f, 1, 0, 0), Some(&s), mdts),
            Err(Status::INVALID_OPCODE)
        );
        assert_eq!(
            check(&sqe(read, 1, 0, 0), None, mdts),
            Err(Status::COMMAND_SEQUENCE_ERROR)
        );
        assert_eq!(
            check(&sqe(read, 2, 0, 0), Some(&s), mdts),
            Err(Status::INVALID_NAMESPACE_OR_FORMAT)
        );
        assert_eq!(
            check(
                &sqe(IoOpcode::Flush as u8, 0xffff_ffff, 0, 0),
                Some(&s),
                mdts
            ),
            Err(Status::INVALID_NAMESPACE_OR_FORMAT)
        );
        // 17 blocks of 512 bytes = 8704 > MDTS 8192, for both directions.
        assert_eq!(
            check(&sqe(read, 1, 0, 16), Some(&s), mdts),
            Err(Status::INVALID_FIELD)
        );
        assert_eq!(
            check(&sqe(write, 1, 0, 16), Some(&s), mdts),
            Err(Status::INVALID_FIELD)
        );
        let c = check(&sqe(read, 1, 0, 15), Some(&s), mdts).expect("16 blocks fit");
        assert_eq!(
            (c.len, c.nlb, c.moves_data(), c.from_host()),
            (8192, 16, true, false)
        );
        assert_eq!(
            check_data(&c, 4096),
            Err(Status::SGL_DATA_BLOCK_LENGTH_INVALID)
        );
        assert_eq!(check_data(&c, 8192), Ok(()));
        // The namespace has 2048 blocks: the last 16 fit, one more does not.
        let end = check(&sqe(write, 1, 2032, 15), Some(&s), mdts).expect("in mdts");
        assert_eq!(check_data(&end, 8192), Ok(()));
        let over = check(&sqe(write, 1, 2033, 15), Some(&s), mdts).expect("in mdts");
        assert_eq!(check_data(&over, 8192), Err(Status::LBA_OUT_OF_RANGE));
        let wz = check(
            &sqe(IoOpcode::WriteZeroes as u8, 1, u64::MAX, 0),
            Some(&s),
            mdts,
        )
        .expect("write zeroes has no data");
        assert!(!wz.moves_data());
        assert_eq!(check_data(&wz, 0), Err(Status::LBA_OUT_OF_RANGE));
    }

    #[test]
    fn backend_errors_map_to_one_status_each() {
        assert_eq!(status_of(OpClass::Read, Ok(())), Status::SUCCESS);
        assert_eq!(
            status_of(OpClass::Write, Err(BdevError::OutOfRange)),
            Status::LBA_OUT_OF_RANGE
        );
        assert_eq!(
            status_of(OpClass::Read, Err(BdevError::BadLength)),
            Status::INVALID_FIELD
        );
        assert_eq!(
            status_of(OpClass::Read, Err(BdevError::Media)),
            Status::UNRECOVERED_READ_ERROR
        );
        assert_eq!(
            status_of(OpClass::Dsm, Err(BdevError::Media)),
            Status::WRITE_FAULT
        );
    }
}
