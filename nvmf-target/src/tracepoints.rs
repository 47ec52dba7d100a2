//! The tracepoint catalog of the target, every transport's in one place (DESIGN §2 "Tracing"):
//! group bits and names, tracepoint ids, roles and arguments, and the stage histograms of the
//! counters page. Pure constants and descriptions: it depends on nothing else in the crate, so
//! configuration (group names), the transports (ids) and the trace file (description) all sit
//! above it.
#![forbid(unsafe_code)]

use trace_ring::description::{ArgDesc, ArgKind, Stage, TpRole, TracepointDesc};
use trace_ring::layout::tpoint_id;

/// Group bit of the NVMe/TCP request stages.
pub const GROUP_TCP: u8 = 1;
/// Group bit of the qpair lifecycle events.
pub const GROUP_QPAIR: u8 = 2;
/// Group bit of the poll accounting events.
pub const GROUP_POLL: u8 = 3;
/// Group names by bit, as `trace_set_groups` and `[trace] enabled` spell them.
pub const GROUPS: &[(u8, &str)] = &[
    (GROUP_TCP, "tcp"),
    (GROUP_QPAIR, "qpair"),
    (GROUP_POLL, "poll"),
    #[cfg(feature = "rdma")]
    (GROUP_RDMA, "rdma"),
];

pub const TP_CAPSULE_RECEIVED: u16 = tpoint_id(GROUP_TCP, 0);
pub const TP_R2T_SENT: u16 = tpoint_id(GROUP_TCP, 1);
pub const TP_H2C_DONE: u16 = tpoint_id(GROUP_TCP, 2);
pub const TP_BACKEND_SUBMITTED: u16 = tpoint_id(GROUP_TCP, 3);
pub const TP_BACKEND_COMPLETED: u16 = tpoint_id(GROUP_TCP, 4);
pub const TP_RESPONSE_QUEUED: u16 = tpoint_id(GROUP_TCP, 5);
pub const TP_RESPONSE_SENT: u16 = tpoint_id(GROUP_TCP, 6);
pub const TP_QPAIR_CONNECT: u16 = tpoint_id(GROUP_QPAIR, 0);
pub const TP_QPAIR_DISCONNECT: u16 = tpoint_id(GROUP_QPAIR, 1);
pub const TP_QPAIR_DESTROY: u16 = tpoint_id(GROUP_QPAIR, 2);
pub const TP_POLL_BUSY: u16 = tpoint_id(GROUP_POLL, 0);

/// Per-stage latency histograms in the counters page (named in the description, index order):
/// capsule received -> submitted to the backend (includes the host's data for writes), backend
/// submit -> complete, response queued -> on the wire. Both transports record all three.
pub const STAGES: [Stage; 3] = [Stage::ToBackend, Stage::Backend, Stage::ToWire];
/// Stage index: capsule received -> backend submit.
pub const STAGE_TO_BACKEND: u32 = 0;
/// Stage index: backend submit -> backend complete.
pub const STAGE_BACKEND: u32 = 1;
/// Stage index: response queued -> socket write returned.
pub const STAGE_TO_WIRE: u32 = 2;

/// Bit mask of the named groups; an unknown name is an error naming it.
pub fn mask_of(names: &[String]) -> Result<u64, String> {
    let mut m = 0u64;
    for n in names {
        let Some((bit, _)) = GROUPS.iter().find(|(_, g)| g == n) else {
            return Err(format!(
                "unknown trace group {n:?} (known: tcp, qpair, poll)"
            ));
        };
        m |= 1 << bit;
    }
    Ok(m)
}

/// Names of the groups enabled in `mask`.
pub fn names_of(mask: u64) -> Vec<&'static str> {
    GROUPS
        .iter()
        .filter(|(b, _)| mask & (1 << b) != 0)
        .map(|(_, n)| *n)
        .collect()
}

fn tp(id: u16, name: &str, group: &str, role: TpRole, args: &[(&str, ArgKind)]) -> TracepointDesc {
    TracepointDesc {
        id,
        name: name.into(),
        group: group.into(),
        args: args
            .iter()
            .map(|(n, k)| ArgDesc {
                name: (*n).into(),
                kind: *k,
            })
            .collect(),
        role,
    }
}

/// The tracepoint catalog.
pub fn catalog() -> Vec<TracepointDesc> {
    use ArgKind as K;
    use TpRole as R;
    #[cfg_attr(not(feature = "rdma"), allow(unused_mut))]
    let mut v = vec![
        tp(
            TP_CAPSULE_RECEIVED,
            "tcp.capsule_received",
            "tcp",
            R::Begin,
            &[("opcode", K::Opcode), ("bytes", K::Bytes)],
        ),
        tp(
            TP_R2T_SENT,
            "tcp.r2t_sent",
            "tcp",
            R::Stage,
            &[("bytes", K::Bytes)],
        ),
        tp(
            TP_H2C_DONE,
            "tcp.h2c_done",
            "tcp",
            R::Stage,
            &[("bytes", K::Bytes)],
        ),
        tp(
            TP_BACKEND_SUBMITTED,
            "tcp.backend_submitted",
            "tcp",
            R::Stage,
            &[("lba", K::Lba), ("bytes", K::Bytes)],
        ),
        tp(
            TP_BACKEND_COMPLETED,
            "tcp.backend_completed",
            "tcp",
            R::Stage,
            &[("status", K::Status)],
        ),
        tp(
            TP_RESPONSE_QUEUED,
            "tcp.response_queued",
            "tcp",
            R::Stage,
            &[("status", K::Status), ("bytes", K::Bytes)],
        ),
        tp(TP_RESPONSE_SENT, "tcp.response_sent", "tcp", R::End, &[]),
        tp(
            TP_QPAIR_CONNECT,
            "qpair.connect",
            "qpair",
            R::Event,
            &[("qid", K::U64), ("cntlid", K::U64)],
        ),
        tp(
            TP_QPAIR_DISCONNECT,
            "qpair.disconnect",
            "qpair",
            R::Event,
            &[("qid", K::U64)],
        ),
        tp(
            TP_QPAIR_DESTROY,
            "qpair.destroy",
            "qpair",
            R::Event,
            &[("ident", K::U64)],
        ),
        tp(
            TP_POLL_BUSY,
            "poll.busy",
            "poll",
            R::Event,
            &[("ticks", K::Ticks)],
        ),
    ];
    #[cfg(feature = "rdma")]
    v.extend(rdma_catalog());
    v
}

/// Group bit of the NVMe/RDMA request stages.
pub const GROUP_RDMA: u8 = 4;
pub const TP_RDMA_NEW: u16 = tpoint_id(GROUP_RDMA, 0);
pub const TP_RDMA_NEED_BUFFER: u16 = tpoint_id(GROUP_RDMA, 1);
pub const TP_RDMA_HAVE_BUFFER: u16 = tpoint_id(GROUP_RDMA, 2);
pub const TP_RDMA_READ_POSTED: u16 = tpoint_id(GROUP_RDMA, 3);
pub const TP_RDMA_READ_COMPLETED: u16 = tpoint_id(GROUP_RDMA, 4);
pub const TP_RDMA_EXECUTING: u16 = tpoint_id(GROUP_RDMA, 5);
pub const TP_RDMA_EXECUTED: u16 = tpoint_id(GROUP_RDMA, 6);
pub const TP_RDMA_RESPONSE_POSTED: u16 = tpoint_id(GROUP_RDMA, 7);
pub const TP_RDMA_COMPLETED: u16 = tpoint_id(GROUP_RDMA, 8);

/// The RDMA request stages, appended to the catalog.
pub fn rdma_catalog() -> Vec<TracepointDesc> {
    use ArgKind as K;
    use TpRole as R;
    let tp = |id: u16, name: &str, role: TpRole, args: &[(&str, ArgKind)]| TracepointDesc {
        id,
        name: name.into(),
        group: "rdma".into(),
        args: args
            .iter()
            .map(|(n, k)| trace_ring::description::ArgDesc {
                name: (*n).into(),
                kind: *k,
            })
            .collect(),
        role,
    };
    vec![
        tp(
            TP_RDMA_NEW,
            "rdma.new",
            R::Begin,
            &[("opcode", K::Opcode), ("bytes", K::Bytes)],
        ),
        tp(TP_RDMA_NEED_BUFFER, "rdma.need_buffer", R::Stage, &[]),
        tp(TP_RDMA_HAVE_BUFFER, "rdma.have_buffer", R::Stage, &[]),
        tp(
            TP_RDMA_READ_POSTED,
            "rdma.read_posted",
            R::Stage,
            &[("bytes", K::Bytes)],
        ),
        tp(TP_RDMA_READ_COMPLETED, "rdma.read_completed", R::Stage, &[]),
        tp(
            TP_RDMA_EXECUTING,
            "rdma.executing",
            R::Stage,
            &[("lba", K::Lba), ("bytes", K::Bytes)],
        ),
        tp(
            TP_RDMA_EXECUTED,
            "rdma.executed",
            R::Stage,
            &[("status", K::Status)],
        ),
        tp(
            TP_RDMA_RESPONSE_POSTED,
            "rdma.response_posted",
            R::Stage,
            &[("status", K::Status), ("bytes", K::Bytes)],
        ),
        tp(TP_RDMA_COMPLETED, "rdma.completed", R::End, &[]),
    ]
}
