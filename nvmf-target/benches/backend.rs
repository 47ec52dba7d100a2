//! Cost of one backend operation on the reactor's hot path (submit + poll), per backend and
//! size. `cargo bench -p nvmf-target --bench backend`. The `uring` case is one O_DIRECT I/O at
//! queue depth 1 on a 64 MiB file under /var/tmp, polled until it completes: device latency
//! plus the ring's overhead, not a CPU cost like the memory backends.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use nvmf_target::backend::{self, BdevOp};
use nvmf_target::config::{BackendKind, ByteSize, NamespaceConfig};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("backend_submit_poll");
    for kind in [BackendKind::Null, BackendKind::Malloc] {
        let ns = NamespaceConfig {
            nsid: Some(1),
            backend: kind.clone(),
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
    bench_uring(c);
}

fn bench_uring(c: &mut Criterion) {
    let dir = tempfile::Builder::new()
        .prefix("ringside-bench")
        .tempdir_in("/var/tmp")
        .expect("temp dir under /var/tmp");
    let path = dir.path().join("disk");
    // Allocated blocks (not a sparse file), so reads reach the disk.
    std::fs::write(&path, vec![0x5au8; 64 << 20]).expect("write the bench file");
    let ns = NamespaceConfig {
        nsid: Some(1),
        backend: BackendKind::Uring { path },
        size: ByteSize(0),
        block_size: 512,
    };
    let bdev = backend::create(&ns).expect("uring bdev");
    let mut q = Arc::clone(&bdev).open_queue(64);
    let mut g = c.benchmark_group("backend_submit_poll");
    for size in [4096usize, 131072] {
        let mut buf = backend::IoBuf::new(size);
        let blocks = (64u64 << 20) / 512 - (size as u64 / 512);
        g.throughput(Throughput::Bytes(size as u64));
        let mut lba = 0u64;
        for write in [false, true] {
            let name = if write { "uring_write" } else { "uring_read" };
            g.bench_with_input(BenchmarkId::new(name, size), &size, |b, _| {
                b.iter(|| {
                    lba = (lba + 4096) % blocks / 8 * 8;
                    if write {
                        q.submit(1, BdevOp::Write { lba, buf: &buf });
                    } else {
                        q.submit(1, BdevOp::Read { lba, buf: &mut buf });
                    }
                    let mut done = false;
                    while !done {
                        q.poll(&mut |_, r| {
                            assert!(r.is_ok());
                            done = true;
                        });
                    }
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
