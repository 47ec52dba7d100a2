//! Noise-resistant companion to `benches/record.rs` for a shared machine: runs each hot-path
//! operation in batches of 4096 and reports the *minimum* ns/op over 2000 batches (preemption and
//! interference only ever add time), plus the median. `cargo run --release -p trace-ring --example
//! ns_per_event`.

use std::hint::black_box;
use std::time::Instant;

use trace_ring::{tpoint_id, tsc, Description, Layout, RingWriter, TraceFile};

const TP: u16 = tpoint_id(1, 0);
const BATCH: u64 = 4096;
const ROUNDS: usize = 2000;

/// One disabled or enabled tracepoint, out of line so its code can be inspected with objdump.
#[inline(never)]
pub fn probe(w: &mut RingWriter, tp: u16, i: u64) {
    w.record(tp, i as u16, i as u32, i, i);
}

#[inline(never)]
pub fn probe_at(w: &mut RingWriter, tsc: u64, tp: u16, i: u64) {
    w.record_at(tsc, tp, i as u16, i as u32, i, i);
}

fn measure(name: &str, mut f: impl FnMut(u64)) {
    let mut per_op: Vec<f64> = (0..ROUNDS)
        .map(|r| {
            let t = Instant::now();
            f(r as u64 * BATCH);
            t.elapsed().as_nanos() as f64 / BATCH as f64
        })
        .collect();
    per_op.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{name:<40} min {:>6.2} ns/op   median {:>6.2} ns/op",
        per_op[0],
        per_op[ROUNDS / 2]
    );
}

fn main() {
    let dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("tempdir");
    let tf = TraceFile::create(
        dir.path(),
        "ns-per-event",
        std::process::id(),
        &Description::default(),
        &Layout::default(),
    )
    .expect("create");
    let mut w = tf.take_reactor(0).expect("reactor");
    let ctl = tf.control();
    let tp = black_box(TP);

    measure("empty loop (baseline)", |base| {
        for i in base..base + BATCH {
            black_box(i);
        }
    });
    ctl.set_enabled_mask(0);
    measure("record, disabled (inline)", |base| {
        for i in base..base + BATCH {
            w.ring.record(tp, i as u16, i as u32, i, i);
        }
    });
    measure("record, disabled (out-of-line call)", |base| {
        for i in base..base + BATCH {
            probe(&mut w.ring, tp, i);
        }
    });
    ctl.set_enabled_mask(u64::MAX);
    measure("record, enabled, caller's tsc (inline)", |base| {
        for i in base..base + BATCH {
            w.ring.record_at(i, tp, i as u16, i as u32, i, i);
        }
    });
    measure("record, enabled, caller's tsc (call)", |base| {
        for i in base..base + BATCH {
            probe_at(&mut w.ring, i, tp, i);
        }
    });
    measure("record, enabled, rdtsc (inline)", |base| {
        for i in base..base + BATCH {
            w.ring.record(tp, i as u16, i as u32, i, i);
        }
    });
    measure("tsc::now() alone", |_| {
        for _ in 0..BATCH {
            black_box(tsc::now());
        }
    });
    measure("counters.command", |base| {
        for i in base..base + BATCH {
            w.counters.command(trace_ring::OpClass::Read, i);
        }
    });
    measure("counters.poll", |base| {
        for i in base..base + BATCH {
            w.counters.poll(i, i & 1 == 0, 40);
        }
    });
    measure("counters.qpair_submit + qpair_complete", |base| {
        for i in base..base + BATCH {
            w.counters.qpair_submit((i & 63) as u16);
            w.counters
                .qpair_complete((i & 63) as u16, 4096, 20_000 + (i & 4095) * 16, false);
        }
    });
    measure("counters.stage_latency_ticks", |base| {
        for i in base..base + BATCH {
            w.counters
                .stage_latency_ticks((i & 15) as u32, 10_000 + (i & 4095) * 64);
        }
    });
}
