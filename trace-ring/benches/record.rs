//! Cost of the hot paths: ns per recorded event (disabled, enabled with an rdtsc, enabled with a
//! caller-supplied timestamp), the counters increments, and a reader's poll per record.
//! Each iteration runs a batch of 1024 operations whose arguments vary with the loop index (so
//! nothing is hoisted, and `black_box` costs are not counted per event); throughput is per op.
//! Short runs on purpose (shared machine): `cargo bench -p trace-ring --bench record`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use trace_ring::{tpoint_id, tsc, Description, Layout, OpClass, Start, TraceFile, TraceReader};

#[path = "support/per_io.rs"]
mod per_io;
use per_io::{one_poll, QD};

const TP: u16 = tpoint_id(1, 0);
const BATCH: u64 = 1024;

fn dir() -> tempfile::TempDir {
    tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("tempdir")
}

fn file(dir: &tempfile::TempDir, name: &str) -> TraceFile {
    let layout = Layout {
        reactors: 1,
        ring_records: 1 << 14,
        qpair_slots: 64,
        stages: 16,
    };
    TraceFile::create(
        dir.path(),
        name,
        std::process::id(),
        &Description::default(),
        &layout,
    )
    .expect("create trace file")
}

fn bench_record(c: &mut Criterion) {
    let d = dir();
    let tf = file(&d, "bench-record");
    let mut w = tf.take_reactor(0).expect("reactor");
    let ctl = tf.control();
    let mut g = c.benchmark_group("record");
    g.throughput(Throughput::Elements(BATCH));

    g.bench_function("empty_loop_baseline", |b| {
        b.iter(|| {
            for i in 0..BATCH {
                black_box(i);
            }
        })
    });
    ctl.set_enabled_mask(0);
    g.bench_function("disabled", |b| {
        let tp = black_box(TP);
        b.iter(|| {
            for i in 0..BATCH {
                w.ring.record(tp, i as u16, i as u32, i, i);
            }
        })
    });
    ctl.set_enabled_mask(u64::MAX);
    g.bench_function("enabled_rdtsc", |b| {
        let tp = black_box(TP);
        b.iter(|| {
            for i in 0..BATCH {
                w.ring.record(tp, i as u16, i as u32, i, i);
            }
        })
    });
    g.bench_function("enabled_given_tsc", |b| {
        let tp = black_box(TP);
        let t0 = black_box(1u64);
        b.iter(|| {
            for i in 0..BATCH {
                w.ring.record_at(t0 + i, tp, i as u16, i as u32, i, i);
            }
        })
    });
    g.bench_function("tsc_now_alone", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                black_box(tsc::now());
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("counters");
    g.throughput(Throughput::Elements(BATCH));
    g.bench_function("poll", |b| {
        b.iter(|| {
            for i in 0..BATCH {
                w.counters.poll(i, i & 1 == 0, 40);
            }
        })
    });
    g.bench_function("command", |b| {
        b.iter(|| {
            for i in 0..BATCH {
                w.counters.command(OpClass::Read, i);
            }
        })
    });
    g.bench_function("qpair_submit_plus_complete_with_histogram", |b| {
        b.iter(|| {
            for i in 0..BATCH {
                w.counters.qpair_submit((i & 63) as u16);
                w.counters
                    .qpair_complete((i & 63) as u16, 4096, 20_000 + i * 16, false);
            }
        })
    });
    g.bench_function("stage_latency_ticks", |b| {
        b.iter(|| {
            for i in 0..BATCH {
                w.counters
                    .stage_latency_ticks((i & 15) as u32, 10_000 + i * 64);
            }
        })
    });
    g.finish();

    bench_per_io(c, &mut w);

    // Reader: write then poll a batch of fresh records (copy + validation; writes included).
    let r = TraceReader::open(tf.path()).expect("open");
    let mut cur = r.cursor(0, Start::Now).expect("cursor");
    let mut out = Vec::with_capacity(BATCH as usize);
    let mut g = c.benchmark_group("reader");
    g.throughput(Throughput::Elements(BATCH));
    g.bench_function("write_then_poll_per_record", |b| {
        b.iter(|| {
            for i in 0..BATCH {
                w.ring.record_at(i, TP, 0, 0, i, i);
            }
            out.clear();
            black_box(cur.poll(&mut out));
        })
    });
    g.finish();
}

/// Per-I/O producer cost of a 4 KiB NVMe/TCP read at full rate (`per_io/*`, ns per I/O):
/// everything, records only, counters only, and everything with the 4 KiB copy per I/O the
/// socket does (`with_4k_copy`: the payload streams through the caches as in the target, so the
/// ring's and counters' lines are not all in L1; `copy_only` is that copy alone, to subtract).
fn bench_per_io(c: &mut Criterion, w: &mut trace_ring::ReactorWriters) {
    let mut g = c.benchmark_group("per_io");
    g.throughput(Throughput::Elements(QD));
    for w_i in 0..64u16 {
        w.counters.qpair_bind(w_i, 1);
    }
    let mut p = 0u64;
    g.bench_function("read_4k_all", |b| {
        b.iter(|| {
            p += 1;
            one_poll(w, black_box(p), true, true);
        })
    });
    g.bench_function("read_4k_records_only", |b| {
        b.iter(|| {
            p += 1;
            one_poll(w, black_box(p), true, false);
        })
    });
    g.bench_function("read_4k_counters_only", |b| {
        b.iter(|| {
            p += 1;
            one_poll(w, black_box(p), false, true);
        })
    });
    // 64 MiB of "device" read 4 KiB at a time into a 128 KiB "socket buffer": as in the target,
    // the payload evicts what the producer touched since the last poll.
    let src = vec![7u8; 64 << 20];
    let mut dst = vec![0u8; 128 << 10];
    let mut off = 0usize;
    let mut copy = |n: u64| {
        for _ in 0..n {
            let d = (off / 4096 % 32) * 4096;
            dst[d..d + 4096].copy_from_slice(&src[off..off + 4096]);
            off = (off + 4096 * 7) % (src.len() - 4096);
        }
        black_box(&dst);
    };
    g.bench_function("copy_only", |b| b.iter(|| copy(QD)));
    g.bench_function("read_4k_all_with_4k_copy", |b| {
        b.iter(|| {
            p += 1;
            copy(QD);
            one_poll(w, black_box(p), true, true);
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = bench_record
}
criterion_main!(benches);
