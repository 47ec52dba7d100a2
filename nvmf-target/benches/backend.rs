//! Cost of one backend operation on the reactor's hot path (submit + poll), per backend and
//! size. `cargo bench -p nvmf-target --bench backend`.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use nvmf_target::backend::{self, BdevOp};
use nvmf_target::config::{BackendKind, ByteSize, NamespaceConfig};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("backend_submit_poll");
    for kind in [BackendKind::Null, BackendKind::Malloc] {
        let ns = NamespaceConfig {
            nsid: Some(1),
            backend: kind,
            size: ByteSize(64 << 20),
            block_size: 512,
        };
        let bdev = backend::create(&ns).expect("bdev");
        let mut q = Arc::clone(&bdev).open_queue(64);
        for size in [4096usize, 131072] {
            let mut buf = vec![0x5au8; size];
            let blocks = (64u64 << 20) / 512 - (size as u64 / 512);
            g.throughput(Throughput::Bytes(size as u64));
            let mut lba = 0u64;
            g.bench_with_input(
                BenchmarkId::new(format!("{kind}_read"), size),
                &size,
                |b, _| {
                    b.iter(|| {
                        lba = (lba + 4099) % blocks;
                        q.submit(1, BdevOp::Read { lba, buf: &mut buf });
                        q.poll(&mut |_, r| assert!(r.is_ok()));
                    })
                },
            );
            g.bench_with_input(
                BenchmarkId::new(format!("{kind}_write"), size),
                &size,
                |b, _| {
                    b.iter(|| {
                        lba = (lba + 4099) % blocks;
                        q.submit(1, BdevOp::Write { lba, buf: &buf });
                        q.poll(&mut |_, r| assert!(r.is_ok()));
                    })
                },
            );
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
