//! Lists trace instances, or dumps one instance's rings (names from its catalog, times in
//! CLOCK_MONOTONIC ns) and counters: a manual check tool until `ringside trace` exists.
//!
//! `cargo run -p trace-ring --example trace_dump -- [--dir DIR] [NAME [--follow]]`

use std::path::PathBuf;
use std::time::Duration;

use trace_ring::{Start, TraceReader};

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut dir = PathBuf::from(trace_ring::DEFAULT_DIR);
    if let Some(i) = args.iter().position(|a| a == "--dir") {
        if i + 1 >= args.len() {
            eprintln!("trace_dump: --dir needs a directory");
            std::process::exit(2);
        }
        dir = PathBuf::from(args.remove(i + 1));
        args.remove(i);
    }
    let follow = args.iter().any(|a| a == "--follow");
    let Some(name) = args.iter().find(|a| !a.starts_with("--")) else {
        match TraceReader::list_in(&dir) {
            Ok(list) => {
                for i in list {
                    println!(
                        "{:<24} pid {:<8} {:<6} abi {:<6} {}",
                        i.name,
                        i.pid.map_or("-".to_string(), |p| p.to_string()),
                        if i.alive { "alive" } else { "dead" },
                        i.abi.map_or("-".to_string(), |(a, b)| format!("{a}.{b}")),
                        i.problem.unwrap_or_default()
                    );
                }
            }
            Err(e) => {
                eprintln!("trace_dump: {e}");
                std::process::exit(1);
            }
        }
        return;
    };
    let r = match TraceReader::find_in(&dir, name) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("trace_dump: {e}");
            std::process::exit(1);
        }
    };
    let h = r.header();
    println!(
        "{} pid {} abi {}.{} reactors {} ring {} tsc_hz {} flags {:#x} mask {:#018x}",
        r.name(),
        h.pid,
        h.abi_major,
        h.abi_minor,
        r.reactors(),
        h.ring_records,
        h.tsc_hz,
        h.flags,
        r.enabled_mask()
    );
    let desc = r.description();
    let mut merged = match r.merged(Start::Oldest, r.clock().ns_to_ticks(1_000_000)) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("trace_dump: {e}");
            std::process::exit(1);
        }
    };
    let mut out = Vec::new();
    loop {
        out.clear();
        let st = if follow && r.producer_alive() {
            merged.poll(trace_ring::tsc::now(), &mut out)
        } else {
            merged.drain(&mut out)
        };
        for e in &out {
            let rec = e.record;
            let name = desc.tracepoint(rec.tpoint).map_or("?", |t| t.name.as_str());
            println!(
                "{:>16} r{} {:<28} qp {:<5} cid {:<6} {:#x} {:#x}",
                r.tsc_to_mono_ns(rec.tsc),
                e.reactor,
                name,
                rec.qpair,
                rec.cid,
                rec.arg0,
                rec.arg1
            );
        }
        if st.lost > 0 {
            println!("-- lost {} records", st.lost);
        }
        if !follow || !r.producer_alive() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for reactor in 0..r.reactors() {
        if let Some(c) = r.counters(reactor) {
            let t = c.totals;
            println!(
                "reactor {reactor}: polls {} busy {} reads {} writes {} buffer_waits {} backend_inflight {}",
                t.polls, t.busy_polls, t.cmds_read, t.cmds_write, t.buffer_waits, t.backend_inflight
            );
        }
    }
}
