//! Noise-resistant companion to `benches/record.rs` for a shared machine: runs each hot-path
//! operation in batches of 4096 and reports the *minimum* ns/op over 2000 batches (preemption and
//! interference only ever add time), plus the median and p90.
//! `cargo run --release -p trace-ring --example ns_per_event [-- --json out.json]` — the JSON is
//! stamped with the git revision, the machine and its load, for comparison over time.

use std::hint::black_box;
use std::time::Instant;

use trace_ring::{tpoint_id, tsc, Description, Layout, RingWriter, TraceFile};

#[path = "../benches/support/per_io.rs"]
mod per_io;

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

struct Results(Vec<serde_json::Value>);

impl Results {
    fn measure(&mut self, name: &str, f: impl FnMut(u64)) {
        self.measure_rounds(name, ROUNDS, f);
    }

    fn measure_rounds(&mut self, name: &str, rounds: usize, mut f: impl FnMut(u64)) {
        let mut per_op: Vec<f64> = (0..rounds)
            .map(|r| {
                let t = Instant::now();
                f(r as u64 * BATCH);
                t.elapsed().as_nanos() as f64 / BATCH as f64
            })
            .collect();
        per_op.sort_by(|a, b| a.total_cmp(b));
        let (min, median, p90) = (per_op[0], per_op[rounds / 2], per_op[rounds * 9 / 10]);
        println!("{name:<40} min {min:>6.2} ns/op   median {median:>6.2} ns/op   p90 {p90:>6.2}");
        self.0.push(serde_json::json!({
            "name": name, "min_ns": min, "median_ns": median, "p90_ns": p90, "batch": BATCH,
            "batches": rounds,
        }));
    }
}

fn first_line_with(path: &str, key: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("")
        .trim()
        .to_string()
}

fn write_json(path: &str, results: Results) {
    let rev = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .unwrap_or_default();
    let doc = serde_json::json!({
        "benchmark": "trace-ring ns_per_event",
        "git_rev": rev.trim(),
        "unix_time": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        "machine": {
            "cpu": first_line_with("/proc/cpuinfo", "model name"),
            "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
            "clocksource": std::fs::read_to_string(
                "/sys/devices/system/clocksource/clocksource0/current_clocksource",
            )
            .unwrap_or_default()
            .trim(),
            "loadavg": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        },
        "results": results.0,
    });
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    if let Err(e) = std::fs::write(path, text) {
        eprintln!("ns_per_event: cannot write {path}: {e}");
        std::process::exit(1);
    }
    println!("wrote {path}");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let json = args
        .iter()
        .position(|a| a == "--json")
        .and_then(|i| args.get(i + 1).cloned());
    let mut res = Results(Vec::new());
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

    res.measure("empty loop (baseline)", |base| {
        for i in base..base + BATCH {
            black_box(i);
        }
    });
    ctl.set_enabled_mask(0);
    res.measure("record, disabled (inline)", |base| {
        for i in base..base + BATCH {
            w.ring.record(tp, i as u16, i as u32, i, i);
        }
    });
    res.measure("record, disabled (out-of-line call)", |base| {
        for i in base..base + BATCH {
            probe(&mut w.ring, tp, i);
        }
    });
    ctl.set_enabled_mask(u64::MAX);
    res.measure("record, enabled, caller's tsc (inline)", |base| {
        for i in base..base + BATCH {
            w.ring.record_at(i, tp, i as u16, i as u32, i, i);
        }
    });
    res.measure("record, enabled, caller's tsc (call)", |base| {
        for i in base..base + BATCH {
            probe_at(&mut w.ring, i, tp, i);
        }
    });
    res.measure("record, enabled, rdtsc (inline)", |base| {
        for i in base..base + BATCH {
            w.ring.record(tp, i as u16, i as u32, i, i);
        }
    });
    res.measure("tsc::now() alone", |_| {
        for _ in 0..BATCH {
            black_box(tsc::now());
        }
    });
    res.measure("counters.command", |base| {
        for i in base..base + BATCH {
            w.counters.command(trace_ring::OpClass::Read, i);
        }
    });
    res.measure("counters.poll", |base| {
        for i in base..base + BATCH {
            w.counters.poll(i, i & 1 == 0, 40);
        }
    });
    res.measure("counters.qpair_submit + qpair_complete", |base| {
        for i in base..base + BATCH {
            w.counters.qpair_submit((i & 63) as u16);
            w.counters
                .qpair_complete((i & 63) as u16, 4096, 20_000 + (i & 4095) * 16, false);
        }
    });
    res.measure("counters.stage_latency_ticks", |base| {
        for i in base..base + BATCH {
            w.counters
                .stage_latency_ticks((i & 15) as u32, 10_000 + (i & 4095) * 64);
        }
    });
    // One NVMe/TCP 4 KiB read at queue depth 32 (see benches/support/per_io.rs): ns per I/O.
    for b in 0..64u16 {
        w.counters.qpair_bind(b, 1);
    }
    let polls = BATCH / per_io::QD;
    for (name, records, counters) in [
        ("per I/O: 4 KiB TCP read, everything", true, true),
        ("per I/O: 4 KiB TCP read, records only", true, false),
        ("per I/O: 4 KiB TCP read, counters only", false, true),
    ] {
        res.measure(name, |base| {
            for p in 0..polls {
                per_io::one_poll(&mut w, base / per_io::QD + p, records, counters);
            }
        });
    }
    // The same with the 4 KiB copy per I/O the socket does (64 MiB "device" into a 128 KiB
    // "socket buffer"): the ring's and counters' lines no longer all stay in L1.
    let src = vec![7u8; 64 << 20];
    let mut dst = vec![0u8; 128 << 10];
    let mut off = 0usize;
    for (name, records, counters) in [
        ("per I/O with 4 KiB copy: copy alone", false, false),
        ("per I/O with 4 KiB copy: everything", true, true),
        ("per I/O with 4 KiB copy: counters only", false, true),
    ] {
        // Fewer batches: each copies 16 MiB.
        res.measure_rounds(name, 200, |base| {
            for p in 0..polls {
                for _ in 0..per_io::QD {
                    let d = (off / 4096 % 32) * 4096;
                    dst[d..d + 4096].copy_from_slice(&src[off..off + 4096]);
                    off = (off + 4096 * 7) % (src.len() - 4096);
                }
                black_box(&dst);
                if records || counters {
                    per_io::one_poll(&mut w, base / per_io::QD + p, records, counters);
                }
            }
        });
    }
    if let Some(path) = json {
        write_json(&path, res);
    }
}
