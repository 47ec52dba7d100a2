//! Property tests against simple models: ring indices and losses, counters, histogram math; and a
//! concurrent writer/reader stress test that no torn record is ever returned.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{check_of, description, layout, TP_POLL};
use proptest::prelude::*;
use trace_ring::histogram::{bucket_bounds, bucket_index};
use trace_ring::layout::ReactorCounters;
use trace_ring::{Histogram, OpClass, Record, Start, TraceFile, TraceReader};

#[derive(Clone, Debug)]
enum Op {
    Write(u64),
    Poll,
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![(0u64..40).prop_map(Op::Write), Just(Op::Poll)],
        1..40,
    )
}

fn record_for(i: u64) -> Record {
    Record {
        tsc: i,
        tpoint: TP_POLL,
        qpair: (i % 7) as u16,
        cid: i as u32,
        arg0: i,
        arg1: check_of(i),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Quiescent writer: a poll returns exactly records `[max(pos, head + 1 - N), head)` and counts
    /// the rest as lost (the oldest slot is treated as possibly being overwritten, so a lapped
    /// reader gets the newest N - 1).
    #[test]
    fn ring_matches_model(ring_bits in 1u32..5, ops in ops()) {
        let n = 1u64 << ring_bits;
        let dir = tempfile::tempdir().expect("tempdir");
        let tf = TraceFile::create(dir.path(), "model", std::process::id(), &description(1), &layout(1, n))
            .expect("create");
        let mut w = tf.take_reactor(0).expect("reactor");
        let r = TraceReader::open(tf.path()).expect("open");
        let mut cursor = r.cursor(0, Start::Oldest).expect("cursor");
        let (mut written, mut pos, mut lost_total) = (0u64, 0u64, 0u64);
        for op in ops {
            match op {
                Op::Write(k) => {
                    for _ in 0..k {
                        w.ring.write(record_for(written));
                        written += 1;
                    }
                }
                Op::Poll => {
                    let mut out = Vec::new();
                    let st = cursor.poll(&mut out);
                    let from = pos.max((written + 1).saturating_sub(n)).min(written);
                    let expected: Vec<Record> = (from..written).map(record_for).collect();
                    prop_assert_eq!(&out, &expected);
                    prop_assert_eq!(st.lost, from - pos);
                    prop_assert_eq!(st.records, expected.len());
                    lost_total += from - pos;
                    pos = written;
                    prop_assert_eq!(cursor.position(), pos);
                    prop_assert_eq!(cursor.lost_total(), lost_total);
                }
            }
        }
        prop_assert_eq!(r.head(0), Some(written));
    }

    /// Counters read back equal the model and never decrease between snapshots; the per-I/O
    /// totals (commands) are batched: what the page shows equals the model as of the last poll,
    /// and the writer's own totals equal the model at every step.
    #[test]
    fn counters_monotonic_and_exact(steps in prop::collection::vec((0u8..4, 0u64..10_000), 1..60)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let tf = TraceFile::create(dir.path(), "ctr", std::process::id(), &description(1), &layout(1, 4))
            .expect("create");
        let mut w = tf.take_reactor(0).expect("reactor");
        let r = TraceReader::open(tf.path()).expect("open");
        let mut model = ReactorCounters::default();
        // The model with the commands as of the last poll (what the page shows).
        let mut published = ReactorCounters::default();
        let mut prev = ReactorCounters::default();
        for (kind, v) in steps {
            match kind {
                0 => { w.counters.poll(v, v % 2 == 0, v);
                       model.polls += 1;
                       if v % 2 == 0 { model.busy_polls += 1; model.busy_tsc += v } else { model.idle_tsc += v }
                       model.last_poll_tsc = v;
                       published = model; }
                1 => { w.counters.command(OpClass::Read, v); model.cmds_read += 1; model.bytes_read += v; }
                2 => { w.counters.command(OpClass::Write, v); model.cmds_write += 1; model.bytes_write += v; }
                _ => { w.counters.buffer_wait(); model.buffer_waits += 1; published.buffer_waits += 1; }
            }
            let now = r.counters(0).expect("snapshot").totals;
            prop_assert_eq!(now, published);
            prop_assert_eq!(w.counters.totals(), model);
            for (i, (a, b)) in now.to_words().iter().zip(prev.to_words().iter()).enumerate() {
                if ReactorCounters::FIELD_NAMES[i] != "last_poll_tsc" {
                    prop_assert!(a >= b, "{} went backwards", ReactorCounters::FIELD_NAMES[i]);
                }
            }
            prev = now;
        }
    }

    /// Merging histograms equals the histogram of the union.
    #[test]
    fn histogram_merge_is_union(a in prop::collection::vec(any::<u64>(), 0..200),
                                b in prop::collection::vec(0u64..1_000_000, 0..200)) {
        let mut ha = Histogram::new();
        a.iter().for_each(|&v| ha.record(v));
        let mut hb = Histogram::new();
        b.iter().for_each(|&v| hb.record(v));
        let mut union = Histogram::new();
        a.iter().chain(b.iter()).for_each(|&v| union.record(v));
        let mut merged = ha.clone();
        merged.merge(&hb);
        prop_assert_eq!(&merged, &union);
        let mut other_order = hb.clone();
        other_order.merge(&ha);
        prop_assert_eq!(&other_order, &union);
        prop_assert_eq!(merged.count(), (a.len() + b.len()) as u64);
    }

    /// A quantile lies in the same bucket as the exact order statistic, so within that bucket's
    /// width (at most 1/16 of its value).
    #[test]
    fn quantile_within_bucket(mut values in prop::collection::vec(0u64..(1 << 40), 1..300), q in 0.0f64..=1.0) {
        let mut h = Histogram::new();
        values.iter().for_each(|&v| h.record(v));
        values.sort_unstable();
        let n = values.len() as u64;
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let exact = values[(rank - 1) as usize];
        let est = h.quantile(q).expect("non-empty");
        prop_assert_eq!(bucket_index(est), bucket_index(exact), "est {} exact {}", est, exact);
        let (lo, hi) = bucket_bounds(bucket_index(exact));
        if exact < (1 << 38) {
            prop_assert!(est.abs_diff(exact) <= hi - lo, "est {} exact {}", est, exact);
        }
        prop_assert_eq!(h.max(), *values.last().expect("non-empty"));
    }
}

fn valid_file_bytes() -> &'static [u8] {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let tf = TraceFile::create(
            dir.path(),
            "fuzz",
            std::process::id(),
            &description(2),
            &layout(2, 8),
        )
        .expect("create");
        let mut w = tf.take_reactor(1).expect("reactor");
        for i in 0..12 {
            w.ring.write(record_for(i));
            w.counters.qpair_complete(1, 512, 1000 * i, false);
        }
        std::fs::read(tf.path()).expect("read")
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, .. ProptestConfig::default() })]

    /// Random corruption of the header page or truncation: `open` returns an error or a reader
    /// whose every accessor stays in bounds; nothing panics or crashes.
    #[test]
    fn corrupted_files_never_panic(edits in prop::collection::vec((0usize..4096, any::<u8>()), 1..8),
                                   cut in prop::option::of(0usize..20_000)) {
        let mut bytes = valid_file_bytes().to_vec();
        for (at, v) in edits {
            bytes[at] = v;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.min(bytes.len()));
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("ringside.fuzz");
        std::fs::write(&p, &bytes).expect("write");
        if let Ok(r) = TraceReader::open(&p) {
            for reactor in 0..r.reactors() {
                let mut c = r.cursor(reactor, Start::Oldest).expect("cursor of a valid reactor");
                let mut out = Vec::new();
                c.poll(&mut out);
                prop_assert!(out.len() as u64 <= r.geometry().ring_records);
                let snap = r.counters(reactor).expect("counters of a valid reactor");
                prop_assert_eq!(snap.qpairs.len(), r.geometry().qpair_slots as usize);
                for s in 0..r.geometry().qpair_slots.min(4) {
                    prop_assert!(r.qpair_histogram(reactor, s as u16).is_some());
                }
                for s in 0..r.geometry().stages.min(4) {
                    prop_assert!(r.stage_histogram(reactor, s).is_some());
                }
            }
            let _ = r.tsc_to_mono_ns(12345);
            prop_assert!(r.counters(r.reactors()).is_none());
        }
    }

    /// The merged stream is the sorted union of the per-reactor streams.
    #[test]
    fn merge_is_sorted_union(streams in prop::collection::vec(prop::collection::vec(0u64..50, 0..20), 1..4)) {
        let reactors = streams.len() as u32;
        let dir = tempfile::tempdir().expect("tempdir");
        let tf = TraceFile::create(dir.path(), "merge", std::process::id(), &description(reactors), &layout(reactors, 32))
            .expect("create");
        let mut expected = Vec::new();
        for (r, gaps) in streams.iter().enumerate() {
            let mut w = tf.take_reactor(r as u32).expect("reactor");
            let mut t = 0;
            for (k, gap) in gaps.iter().enumerate() {
                t += gap;
                w.ring.record_at(t, TP_POLL, 0, k as u32, r as u64, 0);
                expected.push((t, r as u32, k as u32));
            }
        }
        let reader = TraceReader::open(tf.path()).expect("open");
        let mut m = reader.merged(Start::Oldest, 0).expect("merged");
        let mut out = Vec::new();
        m.drain(&mut out);
        let got: Vec<(u64, u32, u32)> = out.iter().map(|e| (e.record.tsc, e.reactor, e.record.cid)).collect();
        expected.sort();
        prop_assert_eq!(got, expected);
        prop_assert_eq!(m.late_total(), 0);
    }
}

/// A writer thread laps a tiny ring as fast as it can while a reader polls: every returned record
/// must be self-consistent (arg1 = f(arg0), tsc and cid derived from arg0), numbered exactly
/// `position + lost` onward, and the reader's received + lost must add up to what was written.
#[test]
fn torn_records_are_never_returned() {
    const TOTAL: u64 = 2_000_000;
    for ring in [2u64, 8, 64] {
        let dir = tempfile::tempdir().expect("tempdir");
        let tf = TraceFile::create(
            dir.path(),
            "torn",
            std::process::id(),
            &description(1),
            &layout(1, ring),
        )
        .expect("create");
        let mut w = tf.take_reactor(0).expect("reactor");
        let r = TraceReader::open(tf.path()).expect("open");
        let mut cursor = r.cursor(0, Start::Oldest).expect("cursor");
        let done = Arc::new(AtomicBool::new(false));
        let done_w = Arc::clone(&done);
        let writer = std::thread::spawn(move || {
            for i in 0..TOTAL {
                w.ring.write(record_for(i));
            }
            done_w.store(true, Ordering::Release);
        });
        let (mut received, mut lost, mut expected_next) = (0u64, 0u64, 0u64);
        let mut out = Vec::new();
        loop {
            let finished = done.load(Ordering::Acquire);
            out.clear();
            let st = cursor.poll(&mut out);
            lost += st.lost;
            expected_next += st.lost;
            for rec in &out {
                assert_eq!(
                    rec.arg0, expected_next,
                    "ring {ring}: record numbering skipped"
                );
                assert_eq!(
                    *rec,
                    record_for(rec.arg0),
                    "ring {ring}: torn record returned"
                );
                expected_next += 1;
            }
            received += out.len() as u64;
            if finished && cursor.backlog() == 0 {
                break;
            }
        }
        writer.join().expect("writer thread");
        assert_eq!(
            received + lost,
            TOTAL,
            "ring {ring}: every record is received or counted lost"
        );
        assert!(received > 0, "ring {ring}: the reader got nothing");
        eprintln!("ring {ring}: received {received}, lost {lost}");
    }
}
