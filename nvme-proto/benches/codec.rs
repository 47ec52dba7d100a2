//! Hot-path codec costs: framing a CapsuleCmd (what a target does per command) and encoding a
//! CapsuleResp (what it does per completion), with and without digests.

use criterion::{criterion_group, criterion_main, Criterion};
use nvme_proto::nvme::{Cid, Cqe, Nsid, Sqe, Status};
use nvme_proto::sgl::SglDescriptor;
use nvme_proto::tcp::{self, PduConfig, Role};
use std::hint::black_box;

fn cfg(role: Role, digests: bool) -> PduConfig {
    PduConfig {
        hdgst: digests,
        ddgst: digests,
        max_h2c_data: 128 * 1024,
        max_in_capsule_data: 8192,
        ..PduConfig::initial(role)
    }
}

fn bench(c: &mut Criterion) {
    for digests in [false, true] {
        let tag = if digests { "hdgst+ddgst" } else { "no_digest" };
        let rx = cfg(Role::Controller, digests);
        let tx = PduConfig {
            role: Role::Host,
            ..rx
        };

        let read = Sqe::read(Cid(7), Nsid(1), 1234, 8, SglDescriptor::tcp_transport(4096))
            .expect("valid read");
        let mut buf = [0u8; 128];
        let n = tcp::encode_capsule_cmd(&read, &[], &tx, &mut buf).expect("encode");
        c.bench_function(&format!("parse_pdu/capsule_cmd_read/{tag}"), |b| {
            b.iter(|| {
                let v = tcp::parse_pdu(black_box(&buf[..n]), &rx)
                    .expect("valid")
                    .expect("complete");
                black_box(v.len)
            })
        });

        let write = Sqe::write(Cid(8), Nsid(1), 1234, 1, SglDescriptor::in_capsule(0, 4096))
            .expect("valid write");
        let data = vec![0xa5u8; 4096];
        let mut wbuf = vec![0u8; 8192];
        let wn = tcp::encode_capsule_cmd(&write, &data, &tx, &mut wbuf).expect("encode");
        c.bench_function(
            &format!("parse_pdu/capsule_cmd_write_4k_in_capsule/{tag}"),
            |b| {
                b.iter(|| {
                    let v = tcp::parse_pdu(black_box(&wbuf[..wn]), &rx)
                        .expect("valid")
                        .expect("complete");
                    black_box(v.data.len())
                })
            },
        );

        let cqe = Cqe {
            sqhd: 3,
            ..Cqe::new(Cid(7), Status::SUCCESS)
        };
        let mut out = [0u8; 32];
        c.bench_function(&format!("encode_capsule_resp/{tag}"), |b| {
            b.iter(|| tcp::encode_capsule_resp(black_box(&cqe), digests, &mut out).expect("fits"))
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(1))
        .sample_size(30);
    targets = bench
}
criterion_main!(benches);
