//! Shared helpers for the integration tests.
#![allow(dead_code)]

use trace_ring::description::{
    ArgDesc, ArgKind, BackendKind, GroupDesc, ListenerDesc, NamespaceDesc, ReactorDesc, Stage,
    SubsystemDesc, TpRole, TracepointDesc, Transport,
};
use trace_ring::{tpoint_id, Description, Layout};

pub const TP_SUBMIT: u16 = tpoint_id(1, 0);
pub const TP_COMPLETE: u16 = tpoint_id(1, 1);
pub const TP_POLL: u16 = tpoint_id(2, 0);

/// A description exercising every part of the schema.
pub fn description(reactors: u32) -> Description {
    Description {
        groups: vec![
            GroupDesc {
                bit: 1,
                name: "io".into(),
            },
            GroupDesc {
                bit: 2,
                name: "poll".into(),
            },
        ],
        tracepoints: vec![
            TracepointDesc {
                id: TP_SUBMIT,
                name: "io.submit".into(),
                group: "io".into(),
                args: vec![
                    ArgDesc {
                        name: "opcode".into(),
                        kind: ArgKind::Opcode,
                    },
                    ArgDesc {
                        name: "bytes".into(),
                        kind: ArgKind::Bytes,
                    },
                ],
                role: TpRole::Begin,
            },
            TracepointDesc {
                id: TP_COMPLETE,
                name: "io.complete".into(),
                group: "io".into(),
                args: vec![ArgDesc {
                    name: "status".into(),
                    kind: ArgKind::Status,
                }],
                role: TpRole::End,
            },
            TracepointDesc {
                id: TP_POLL,
                name: "poll.busy".into(),
                group: "poll".into(),
                args: vec![],
                role: TpRole::Event,
            },
        ],
        stages: vec![Stage::ToBackend, Stage::Backend],
        reactors: (0..reactors)
            .map(|i| ReactorDesc {
                index: i,
                core: i,
                numa_node: Some(0),
                tid: None,
            })
            .collect(),
        listeners: vec![ListenerDesc {
            transport: Transport::Tcp,
            address: "127.0.0.1:4420".into(),
            netdev: Some("lo".into()),
            link_speed_mbps: None,
            numa_node: None,
        }],
        subsystems: vec![SubsystemDesc {
            nqn: "nqn.2026-11.io.ringside:nvme0".into(),
            namespaces: vec![NamespaceDesc {
                nsid: 1,
                backend: BackendKind::Malloc,
                device: None,
                size_bytes: Some(256 << 20),
                block_size: Some(512),
                numa_node: Some(0),
                ..Default::default()
            }],
        }],
        settings: Some(trace_ring::description::SettingsDesc {
            idle: Some(trace_ring::description::IdlePolicy::Poll),
            max_queue_depth: Some(128),
            ..Default::default()
        }),
    }
}

pub fn layout(reactors: u32, ring_records: u64) -> Layout {
    Layout {
        reactors,
        ring_records,
        qpair_slots: 4,
        stages: 2,
    }
}

/// The self-check the torn-record tests use: arg1 is a function of arg0.
pub fn check_of(x: u64) -> u64 {
    x.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) ^ 0xA5A5_5A5A_DEAD_BEEF
}
