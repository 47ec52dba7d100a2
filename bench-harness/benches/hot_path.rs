//! User-space cost of the initiator's per-I/O work, without the kernel: building and encoding a
//! command capsule, framing a 4 KiB C2HData + CapsuleResp pair, recording a latency, choosing an
//! LBA, and the --verify pattern. `cargo bench -p bench-harness --bench hot_path`.

use std::hint::black_box;

use bench_harness::pattern::Pattern;
use bench_harness::rng::WyRand;
use bench_harness::stats::IoStats;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nvme_proto::tcp::{
    encode_c2h_data, encode_capsule_cmd, encode_capsule_resp, parse_pdu, C2HData, PduConfig, Role,
};
use nvme_proto::{Cid, Cqe, Nsid, SglDescriptor, Sqe, Status};

fn io_path(c: &mut Criterion) {
    let host = PduConfig {
        max_c2h_data: 1 << 20,
        ..PduConfig::initial(Role::Host)
    };
    let ctrl = PduConfig::initial(Role::Controller);
    // What a target sends back for one 4 KiB read.
    let data = vec![0xa5u8; 4096];
    let mut rx = vec![0u8; 8192];
    let h = C2HData {
        cccid: Cid(7),
        datao: 0,
        datal: 4096,
        last: true,
        success: false,
    };
    let n1 = encode_c2h_data(&h, &data, &ctrl, &mut rx).expect("c2h");
    let n2 = encode_capsule_resp(&Cqe::new(Cid(7), Status::SUCCESS), false, &mut rx[n1..])
        .expect("resp");
    rx.truncate(n1 + n2);
    let mut slot = vec![0u8; 4096];
    let mut sbuf = vec![0u8; 512];
    let mut rng = WyRand::new(1);
    let mut stats = IoStats::new();

    c.bench_function("encode_read_capsule", |b| {
        b.iter(|| {
            let sqe = Sqe::read(
                Cid(7),
                Nsid(1),
                black_box(8),
                8,
                SglDescriptor::tcp_transport(4096),
            )
            .expect("sqe");
            let n = encode_capsule_cmd(&sqe, &[], &host, &mut sbuf).expect("encode");
            black_box(&sbuf[..n]);
        })
    });
    c.bench_function("frame_c2h_4k_and_resp_no_copy", |b| {
        b.iter(|| {
            let mut off = 0;
            while let Ok(Some(v)) = parse_pdu(black_box(&rx[off..]), &host) {
                black_box(v.header);
                off += v.len;
            }
        })
    });
    c.bench_function("read_4k_user_space_per_io", |b| {
        b.iter(|| {
            let lba = rng.below(262_144) * 8;
            let sqe = Sqe::read(Cid(7), Nsid(1), lba, 8, SglDescriptor::tcp_transport(4096))
                .expect("sqe");
            let n = encode_capsule_cmd(&sqe, &[], &host, &mut sbuf).expect("encode");
            black_box(&sbuf[..n]);
            let mut off = 0;
            while let Ok(Some(v)) = parse_pdu(&rx[off..], &host) {
                if !v.data.is_empty() {
                    slot.copy_from_slice(v.data);
                }
                off += v.len;
            }
            stats.record_read(4096, black_box(12_345));
        })
    });
}

fn verify_pattern(c: &mut Criterion) {
    let p = Pattern::new(42, 512);
    let mut buf = vec![0u8; 4096];
    let mut g = c.benchmark_group("verify_pattern_4k");
    g.throughput(Throughput::Bytes(4096));
    g.bench_function("fill", |b| b.iter(|| p.fill(black_box(1000), &mut buf)));
    p.fill(1000, &mut buf);
    g.bench_function("check", |b| {
        b.iter(|| assert!(p.check(black_box(1000), &buf).is_none()))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(1))
        .sample_size(20);
    targets = io_path, verify_pattern
}
criterion_main!(benches);
