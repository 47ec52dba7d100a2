//! The byte layouts shared with the BPF programs (`bpf/ringside_probes.h`), encoded and decoded
//! field by field at fixed offsets: no `unsafe`, no `#[repr(C)]` reinterpretation. Pure functions,
//! no I/O; the loader (`probeset`) calls them on ring-buffer records and map values.
//!
//! BPF programs run on the host and write native-endian values, so everything here uses
//! `from_ne_bytes`/`to_ne_bytes` (little-endian on every machine this project targets).
//! Sizes are checked twice: `_Static_assert` in the header, and against the loaded maps'
//! key/value sizes at start-up ([`crate::ProbeError::Layout`]).

use crate::aggregates::{
    BlockTotals, IrqTotals, LatencyHist, NetTotals, NumaPagesTotals, NumaTaskTotals,
    ReactorSchedStats, StolenTime, SyscallTotals, TcpConnTotals,
};
use crate::config::{BlockDev, Filter, CPU_LIMIT};
use crate::events::{BlockOp, IrqKind, KernelEvent, NetDir, NumaTaskKind, TcpConn, TcpSample};
use std::net::IpAddr;

pub(crate) const COMM_LEN: usize = 16;
pub(crate) const HIST_BUCKETS: usize = 32;
pub(crate) const CPU_WORDS: usize = 16;

pub(crate) const F_ANY_DEV: u32 = 1 << 0;
pub(crate) const F_ANY_PORT: u32 = 1 << 1;
pub(crate) const F_ANY_IFINDEX: u32 = 1 << 2;

pub(crate) const CONFIG_SIZE: usize = 176;
pub(crate) const HDR_SIZE: usize = 16;

// Event kinds (enum rs_event_kind) and their record sizes.
const EV_PREEMPTED: u32 = 1;
const EV_WAKEUP: u32 = 2;
const EV_MIGRATED: u32 = 3;
const EV_IRQ: u32 = 4;
const EV_SYSCALL: u32 = 5;
const EV_BLOCK: u32 = 6;
const EV_TCP_RETRANSMIT: u32 = 7;
const EV_TCP_SAMPLE: u32 = 8;
const EV_NUMA_PAGES: u32 = 9;
const EV_NUMA_TASK: u32 = 10;

/// (kind, record size) for every streamed event.
pub(crate) const EVENT_SIZES: [(u32, usize); 10] = [
    (EV_PREEMPTED, 64),
    (EV_WAKEUP, 48),
    (EV_MIGRATED, 32),
    (EV_IRQ, 40),
    (EV_SYSCALL, 48),
    (EV_BLOCK, 56),
    (EV_TCP_RETRANSMIT, 64),
    (EV_TCP_SAMPLE, 88),
    (EV_NUMA_PAGES, 56),
    (EV_NUMA_TASK, 40),
];

// Aggregate map key / value sizes, checked against the loaded maps.
pub(crate) const STOLEN_KEY: usize = 24;
pub(crate) const STOLEN_VAL: usize = 16;
pub(crate) const RSTATS_VAL: usize = 64;
pub(crate) const IRQ_KEY: usize = 16;
pub(crate) const HIST_SIZE: usize = 24 + 8 * HIST_BUCKETS;
pub(crate) const SYSCALL_KEY: usize = 8;
pub(crate) const SYSCALL_VAL: usize = 32;
pub(crate) const BLOCK_KEY: usize = 8;
pub(crate) const BLOCK_VAL: usize = 16 + HIST_SIZE;
pub(crate) const CONN_SIZE: usize = 40;
pub(crate) const TCP_SAMPLE_SIZE: usize = 32;
pub(crate) const TCP_VAL: usize = 48 + TCP_SAMPLE_SIZE;
pub(crate) const NET_KEY: usize = 8;
pub(crate) const NET_VAL: usize = 24;
pub(crate) const NUMA_PAGES_VAL: usize = 40;
pub(crate) const NUMA_TASK_KEY: usize = 8;

/// Why a record or map value could not be decoded. Never a panic: the kernel side is trusted
/// but a layout mismatch (stale object, edited header) must show up as a counted error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than the {need} bytes of its kind {kind}")]
    Short { kind: u32, len: usize, need: usize },
    #[error("unknown event kind {kind}")]
    UnknownKind { kind: u32 },
}

/// A bounds-checked little cursor over a byte slice; every read is at an explicit offset.
struct Rd<'a>(&'a [u8]);

impl Rd<'_> {
    fn bytes<const N: usize>(&self, off: usize) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(src) = self.0.get(off..off + N) {
            out.copy_from_slice(src);
        }
        out
    }
    fn u16(&self, off: usize) -> u16 {
        u16::from_ne_bytes(self.bytes(off))
    }
    fn u32(&self, off: usize) -> u32 {
        u32::from_ne_bytes(self.bytes(off))
    }
    fn i32(&self, off: usize) -> i32 {
        i32::from_ne_bytes(self.bytes(off))
    }
    fn u64(&self, off: usize) -> u64 {
        u64::from_ne_bytes(self.bytes(off))
    }
    fn i64(&self, off: usize) -> i64 {
        i64::from_ne_bytes(self.bytes(off))
    }
    fn comm(&self, off: usize) -> String {
        let raw: [u8; COMM_LEN] = self.bytes(off);
        let end = raw.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
        String::from_utf8_lossy(&raw[..end]).into_owned()
    }
}

/// Encodes the one `struct rs_config` value.
pub(crate) fn encode_config(f: &Filter) -> [u8; CONFIG_SIZE] {
    let mut b = [0u8; CONFIG_SIZE];
    let mut flags = 0;
    if f.any_device {
        flags |= F_ANY_DEV;
    }
    if f.any_port {
        flags |= F_ANY_PORT;
    }
    if f.any_ifindex {
        flags |= F_ANY_IFINDEX;
    }
    b[0..4].copy_from_slice(&f.pid.unwrap_or(0).to_ne_bytes());
    b[4..8].copy_from_slice(&flags.to_ne_bytes());
    let mut mask = [0u64; CPU_WORDS];
    for &cpu in &f.cores {
        // Filter::validate rejects cores >= CPU_LIMIT; skip defensively rather than index out.
        if (cpu as usize) < CPU_LIMIT {
            mask[cpu as usize / 64] |= 1u64 << (cpu % 64);
        }
    }
    for (i, w) in mask.iter().enumerate() {
        b[8 + 8 * i..16 + 8 * i].copy_from_slice(&w.to_ne_bytes());
    }
    let t = &f.stream;
    let never = u64::MAX;
    let fields = [
        t.irq_min_ns.unwrap_or(never),
        t.syscall_min_ns.unwrap_or(never),
        t.block_min_ns.unwrap_or(never),
        t.tcp_sample_interval_ns.unwrap_or(never),
        t.wakeup_latency_min_ns.unwrap_or(never),
    ];
    for (i, v) in fields.iter().enumerate() {
        let off = 8 + 8 * CPU_WORDS + 8 * i;
        b[off..off + 8].copy_from_slice(&v.to_ne_bytes());
    }
    b
}

/// The kernel's internal dev_t (`MKDEV`: major << 20 | minor), as the block probe sees it.
pub(crate) fn kernel_dev(d: BlockDev) -> u32 {
    (d.major << 20) | (d.minor & 0xfffff)
}

pub(crate) fn dev_from_kernel(dev: u32) -> BlockDev {
    BlockDev {
        major: dev >> 20,
        minor: dev & 0xfffff,
    }
}

fn conn(r: &Rd<'_>, off: usize) -> TcpConn {
    let family = r.u16(off + 36);
    let s: [u8; 16] = r.bytes(off);
    let d: [u8; 16] = r.bytes(off + 16);
    let (saddr, daddr) = if family == 10 {
        (IpAddr::from(s), IpAddr::from(d))
    } else {
        (
            IpAddr::from([s[0], s[1], s[2], s[3]]),
            IpAddr::from([d[0], d[1], d[2], d[3]]),
        )
    };
    TcpConn {
        saddr,
        sport: r.u16(off + 32),
        daddr,
        dport: r.u16(off + 34),
    }
}

fn tcp_sample(r: &Rd<'_>, off: usize) -> TcpSample {
    TcpSample {
        snd_una: r.u32(off),
        snd_nxt: r.u32(off + 4),
        write_seq: r.u32(off + 8),
        snd_wnd: r.u32(off + 12),
        snd_cwnd: r.u32(off + 16),
        srtt_us: r.u32(off + 20),
        wmem_queued: r.u32(off + 24),
    }
}

fn hist(r: &Rd<'_>, off: usize) -> LatencyHist {
    let mut buckets = [0u64; HIST_BUCKETS];
    for (i, b) in buckets.iter_mut().enumerate() {
        *b = r.u64(off + 24 + 8 * i);
    }
    LatencyHist {
        count: r.u64(off),
        total_ns: r.u64(off + 8),
        max_ns: r.u64(off + 16),
        buckets,
    }
}

/// Decodes one ring-buffer record.
pub fn decode_event(rec: &[u8]) -> Result<KernelEvent, DecodeError> {
    if rec.len() < HDR_SIZE {
        return Err(DecodeError::Short {
            kind: 0,
            len: rec.len(),
            need: HDR_SIZE,
        });
    }
    let r = Rd(rec);
    let kind = r.u32(0);
    let need = EVENT_SIZES
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, n)| *n)
        .ok_or(DecodeError::UnknownKind { kind })?;
    if rec.len() < need {
        return Err(DecodeError::Short {
            kind,
            len: rec.len(),
            need,
        });
    }
    let cpu = r.u32(4);
    let ts_ns = r.u64(8);
    let ev = match kind {
        EV_PREEMPTED => KernelEvent::Preempted {
            tid: r.u32(16),
            cpu: r.u32(20),
            start_ns: r.u64(24),
            end_ns: r.u64(32),
            resumed_cpu: cpu,
            by_pid: r.u32(40),
            by_comm: r.comm(48),
        },
        EV_WAKEUP => KernelEvent::Wakeup {
            tid: r.u32(16),
            waker_pid: r.u32(20),
            waking_ns: r.u64(24),
            running_ns: r.u64(32),
            target_cpu: r.u32(40),
            cpu,
        },
        EV_MIGRATED => KernelEvent::Migrated {
            ts_ns,
            tid: r.u32(16),
            orig_cpu: r.u32(20),
            dest_cpu: r.u32(24),
        },
        EV_IRQ => KernelEvent::IrqTime {
            cpu,
            kind: if r.u32(16) == 1 {
                IrqKind::Soft
            } else {
                IrqKind::Hard
            },
            vector: r.u32(20),
            start_ns: r.u64(24),
            duration_ns: r.u64(32),
        },
        EV_SYSCALL => KernelEvent::Syscall {
            tid: r.u32(16),
            nr: r.u32(20),
            ret: r.i64(24),
            start_ns: r.u64(32),
            duration_ns: r.u64(40),
        },
        EV_BLOCK => KernelEvent::BlockRq {
            dev: dev_from_kernel(r.u32(16)),
            op: BlockOp::from_raw(r.u32(20)),
            sector: r.u64(24),
            bytes: r.u32(32),
            error: r.i32(36),
            issue_ns: r.u64(40),
            latency_ns: r.u64(48),
        },
        EV_TCP_RETRANSMIT => KernelEvent::TcpRetransmit {
            ts_ns,
            conn: conn(&r, 16),
            state: r.i32(56),
            tgid: r.u32(60),
        },
        EV_TCP_SAMPLE => KernelEvent::TcpSample {
            ts_ns,
            conn: conn(&r, 16),
            sample: tcp_sample(&r, 56),
        },
        EV_NUMA_PAGES => KernelEvent::NumaPages {
            ts_ns,
            tid: r.u32(16),
            reason: r.u32(20),
            succeeded: r.u64(24),
            failed: r.u64(32),
            thp_succeeded: r.u64(40),
            thp_failed: r.u64(48),
        },
        EV_NUMA_TASK => KernelEvent::NumaTask {
            ts_ns,
            kind: NumaTaskKind::from_raw(r.u32(16)),
            tid: r.u32(20),
            src_cpu: r.u32(24),
            dst_cpu: r.u32(28),
            other_tid: r.u32(32),
        },
        _ => return Err(DecodeError::UnknownKind { kind }),
    };
    Ok(ev)
}

// ---- aggregate map entries: (key bytes, value bytes) -> typed row ----

pub(crate) fn stolen(k: &[u8], v: &[u8]) -> StolenTime {
    let (k, v) = (Rd(k), Rd(v));
    StolenTime {
        cpu: k.u32(0),
        pid: k.u32(4),
        comm: k.comm(8),
        ns: v.u64(0),
        slices: v.u64(8),
    }
}

pub(crate) fn reactor_stats(k: &[u8], v: &[u8]) -> ReactorSchedStats {
    let (k, v) = (Rd(k), Rd(v));
    ReactorSchedStats {
        tid: k.u32(0),
        preempted: v.u64(0),
        preempted_ns: v.u64(8),
        voluntary: v.u64(16),
        voluntary_ns: v.u64(24),
        wakeups: v.u64(32),
        wake_latency_ns: v.u64(40),
        wake_latency_max_ns: v.u64(48),
        migrations: v.u64(56),
    }
}

pub(crate) fn irq(k: &[u8], v: &[u8]) -> IrqTotals {
    let k = Rd(k);
    IrqTotals {
        cpu: k.u32(0),
        kind: if k.u32(4) == 1 {
            IrqKind::Soft
        } else {
            IrqKind::Hard
        },
        vector: k.u32(8),
        time: hist(&Rd(v), 0),
    }
}

pub(crate) fn syscall(k: &[u8], v: &[u8]) -> SyscallTotals {
    let (k, v) = (Rd(k), Rd(v));
    SyscallTotals {
        tid: k.u32(0),
        nr: k.u32(4),
        count: v.u64(0),
        total_ns: v.u64(8),
        max_ns: v.u64(16),
        errors: v.u64(24),
    }
}

pub(crate) fn block(k: &[u8], v: &[u8]) -> BlockTotals {
    let (k, v) = (Rd(k), Rd(v));
    BlockTotals {
        dev: dev_from_kernel(k.u32(0)),
        op: BlockOp::from_raw(k.u32(4)),
        bytes: v.u64(0),
        errors: v.u64(8),
        latency: hist(&v, 16),
    }
}

pub(crate) fn tcp(k: &[u8], v: &[u8]) -> TcpConnTotals {
    let (k, v) = (Rd(k), Rd(v));
    let last_sample_ns = v.u64(24);
    TcpConnTotals {
        conn: conn(&k, 0),
        retransmits: v.u64(0),
        last_retransmit_ns: v.u64(8),
        samples: v.u64(16),
        last_sample_ns,
        max_in_flight: v.u32(40),
        max_unsent: v.u32(44),
        last: (last_sample_ns != 0).then(|| tcp_sample(&v, 48)),
    }
}

pub(crate) fn net(k: &[u8], v: &[u8]) -> NetTotals {
    let (k, v) = (Rd(k), Rd(v));
    NetTotals {
        ifindex: k.u32(0),
        dir: if k.u32(4) == 1 {
            NetDir::Rx
        } else {
            NetDir::Tx
        },
        packets: v.u64(0),
        bytes: v.u64(8),
        errors: v.u64(16),
    }
}

pub(crate) fn numa_pages(k: &[u8], v: &[u8]) -> NumaPagesTotals {
    let (k, v) = (Rd(k), Rd(v));
    NumaPagesTotals {
        reason: k.u32(0),
        events: v.u64(0),
        succeeded: v.u64(8),
        failed: v.u64(16),
        thp_succeeded: v.u64(24),
        thp_failed: v.u64(32),
    }
}

pub(crate) fn numa_task(k: &[u8], v: &[u8]) -> NumaTaskTotals {
    let (k, v) = (Rd(k), Rd(v));
    NumaTaskTotals {
        tid: k.u32(0),
        kind: NumaTaskKind::from_raw(k.u32(4)),
        count: v.u64(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StreamThresholds;
    use std::net::Ipv4Addr;

    fn hdr(kind: u32, cpu: u32, ts: u64, size: usize) -> Vec<u8> {
        let mut b = vec![0u8; size];
        b[0..4].copy_from_slice(&kind.to_ne_bytes());
        b[4..8].copy_from_slice(&cpu.to_ne_bytes());
        b[8..16].copy_from_slice(&ts.to_ne_bytes());
        b
    }

    fn put<const N: usize>(b: &mut [u8], off: usize, v: [u8; N]) {
        b[off..off + N].copy_from_slice(&v);
    }

    #[test]
    fn preempted_record_decodes_every_field() {
        let mut b = hdr(EV_PREEMPTED, 1, 900, 64);
        put(&mut b, 16, 4242u32.to_ne_bytes());
        put(&mut b, 20, 1u32.to_ne_bytes());
        put(&mut b, 24, 100u64.to_ne_bytes());
        put(&mut b, 32, 900u64.to_ne_bytes());
        put(&mut b, 40, 777u32.to_ne_bytes());
        b[48..53].copy_from_slice(b"hog\0x");
        let ev = decode_event(&b).expect("a full preempted record decodes");
        assert_eq!(
            ev,
            KernelEvent::Preempted {
                tid: 4242,
                cpu: 1,
                start_ns: 100,
                end_ns: 900,
                resumed_cpu: 1,
                by_pid: 777,
                by_comm: "hog".into()
            }
        );
        assert_eq!(ev.ts_ns(), 900);
    }

    #[test]
    fn comm_without_nul_uses_all_sixteen_bytes() {
        let mut b = hdr(EV_PREEMPTED, 0, 1, 64);
        b[48..64].copy_from_slice(b"abcdefghijklmnop");
        match decode_event(&b) {
            Ok(KernelEvent::Preempted { by_comm, .. }) => assert_eq!(by_comm, "abcdefghijklmnop"),
            other => panic!("expected Preempted, got {other:?}"),
        }
    }

    #[test]
    fn block_record_decodes_dev_op_and_latency() {
        let mut b = hdr(EV_BLOCK, 0, 5000, 56);
        put(&mut b, 16, ((7u32 << 20) | 3).to_ne_bytes());
        put(&mut b, 20, 1u32.to_ne_bytes());
        put(&mut b, 24, 2048u64.to_ne_bytes());
        put(&mut b, 32, 4096u32.to_ne_bytes());
        put(&mut b, 36, 0i32.to_ne_bytes());
        put(&mut b, 40, 1000u64.to_ne_bytes());
        put(&mut b, 48, 4000u64.to_ne_bytes());
        assert_eq!(
            decode_event(&b),
            Ok(KernelEvent::BlockRq {
                dev: BlockDev { major: 7, minor: 3 },
                op: BlockOp::Write,
                sector: 2048,
                bytes: 4096,
                error: 0,
                issue_ns: 1000,
                latency_ns: 4000
            })
        );
    }

    #[test]
    fn tcp_retransmit_decodes_ipv4_and_ipv6() {
        let mut b = hdr(EV_TCP_RETRANSMIT, 0, 77, 64);
        b[16..20].copy_from_slice(&[10, 0, 0, 1]);
        b[32..36].copy_from_slice(&[10, 0, 0, 2]);
        put(&mut b, 48, 4420u16.to_ne_bytes());
        put(&mut b, 50, 51000u16.to_ne_bytes());
        put(&mut b, 52, 2u16.to_ne_bytes());
        put(&mut b, 56, 1i32.to_ne_bytes());
        match decode_event(&b) {
            Ok(KernelEvent::TcpRetransmit {
                conn, state, ts_ns, ..
            }) => {
                assert_eq!(conn.saddr, IpAddr::from(Ipv4Addr::new(10, 0, 0, 1)));
                assert_eq!(conn.daddr, IpAddr::from(Ipv4Addr::new(10, 0, 0, 2)));
                assert_eq!((conn.sport, conn.dport, state, ts_ns), (4420, 51000, 1, 77));
            }
            other => panic!("expected TcpRetransmit, got {other:?}"),
        }
        put(&mut b, 52, 10u16.to_ne_bytes());
        b[16..32].copy_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
        match decode_event(&b) {
            Ok(KernelEvent::TcpRetransmit { conn, .. }) => {
                assert_eq!(conn.saddr, IpAddr::from(std::net::Ipv6Addr::LOCALHOST));
            }
            other => panic!("expected TcpRetransmit, got {other:?}"),
        }
    }

    #[test]
    fn short_and_unknown_records_are_errors_not_panics() {
        assert_eq!(
            decode_event(&[0u8; 3]),
            Err(DecodeError::Short {
                kind: 0,
                len: 3,
                need: HDR_SIZE
            })
        );
        let b = hdr(EV_BLOCK, 0, 1, 40);
        assert_eq!(
            decode_event(&b),
            Err(DecodeError::Short {
                kind: EV_BLOCK,
                len: 40,
                need: 56
            })
        );
        let b = hdr(99, 0, 1, 64);
        assert_eq!(decode_event(&b), Err(DecodeError::UnknownKind { kind: 99 }));
    }

    #[test]
    fn every_kind_decodes_at_its_exact_size_and_not_one_byte_less() {
        for (kind, size) in EVENT_SIZES {
            let b = hdr(kind, 0, 1, size);
            assert!(decode_event(&b).is_ok(), "kind {kind} at {size} bytes");
            assert!(
                decode_event(&b[..size - 1]).is_err(),
                "kind {kind} at {} bytes",
                size - 1
            );
        }
    }

    #[test]
    fn config_encodes_mask_flags_and_thresholds() {
        let f = Filter {
            pid: Some(1234),
            cores: vec![0, 3, 65, 1023],
            any_port: true,
            stream: StreamThresholds {
                irq_min_ns: Some(5),
                syscall_min_ns: None,
                block_min_ns: Some(0),
                tcp_sample_interval_ns: Some(9),
                wakeup_latency_min_ns: Some(11),
            },
            ..Filter::default()
        };
        let b = encode_config(&f);
        let r = Rd(&b);
        assert_eq!(r.u32(0), 1234);
        assert_eq!(r.u32(4), F_ANY_PORT);
        assert_eq!(r.u64(8), 0b1001);
        assert_eq!(r.u64(16), 0b10);
        assert_eq!(r.u64(8 + 8 * 15), 1 << 63);
        assert_eq!(r.u64(136), 5);
        assert_eq!(r.u64(144), u64::MAX);
        assert_eq!(r.u64(152), 0);
        assert_eq!(r.u64(160), 9);
        assert_eq!(r.u64(168), 11);
    }

    #[test]
    fn kernel_dev_round_trips() {
        let d = BlockDev {
            major: 259,
            minor: 70000,
        };
        assert_eq!(kernel_dev(d), (259 << 20) | 70000);
        assert_eq!(dev_from_kernel(kernel_dev(d)), d);
    }

    #[test]
    fn block_value_decodes_histogram() {
        let k = [(7u32 << 20).to_ne_bytes(), 0u32.to_ne_bytes()].concat();
        let mut v = vec![0u8; BLOCK_VAL];
        put(&mut v, 0, 8192u64.to_ne_bytes());
        put(&mut v, 16, 2u64.to_ne_bytes());
        put(&mut v, 24, 3000u64.to_ne_bytes());
        put(&mut v, 32, 2000u64.to_ne_bytes());
        put(&mut v, 40 + 8 * 10, 2u64.to_ne_bytes());
        let t = block(&k, &v);
        assert_eq!(t.dev, BlockDev { major: 7, minor: 0 });
        assert_eq!(t.op, BlockOp::Read);
        assert_eq!(t.bytes, 8192);
        assert_eq!(t.latency.count, 2);
        assert_eq!(t.latency.max_ns, 2000);
        assert_eq!(t.latency.buckets[10], 2);
        assert_eq!(t.latency.buckets.iter().sum::<u64>(), 2);
    }

    #[test]
    fn tcp_value_without_sample_has_no_last() {
        let k = vec![0u8; CONN_SIZE];
        let mut v = vec![0u8; TCP_VAL];
        put(&mut v, 0, 3u64.to_ne_bytes());
        let t = tcp(&k, &v);
        assert_eq!(t.retransmits, 3);
        assert!(t.last.is_none());
        put(&mut v, 24, 10u64.to_ne_bytes());
        put(&mut v, 48, 100u32.to_ne_bytes());
        put(&mut v, 52, 1600u32.to_ne_bytes());
        let t = tcp(&k, &v);
        let s = t.last.expect("a sample was recorded");
        assert_eq!(s.in_flight(), 1500);
    }
}
