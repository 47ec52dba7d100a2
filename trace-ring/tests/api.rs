//! Producer → consumer round trips in one process.

mod common;

use common::{description, layout, TP_COMPLETE, TP_POLL, TP_SUBMIT};
use trace_ring::{
    histogram::bucket_index, Error, ErrorClass, OpClass, Record, Start, TraceFile, TraceReader,
    NO_QPAIR,
};

fn pid() -> u32 {
    std::process::id()
}

#[test]
fn header_and_description_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let desc = description(2);
    let tf = TraceFile::create(dir.path(), "rt", pid(), &desc, &layout(2, 64)).expect("create");
    assert_eq!(tf.path(), dir.path().join("ringside.rt"));
    let len = std::fs::metadata(tf.path()).expect("stat").len();
    assert_eq!(
        len,
        tf.sections().file_size,
        "file size follows the formula"
    );

    let r = TraceReader::find_in(dir.path(), "rt").expect("find");
    assert_eq!(r.name(), "rt");
    assert_eq!(r.header().pid, pid());
    assert_eq!(r.reactors(), 2);
    assert_eq!(r.description(), &desc);
    assert_eq!(
        r.description()
            .tracepoint(TP_SUBMIT)
            .map(|t| t.name.as_str()),
        Some("io.submit")
    );
    assert_eq!(r.description().group_name(TP_POLL), Some("poll"));
    assert!(r.producer_alive());
    assert_eq!(r.clock(), tf.clock());
    assert!(r.header().tsc_hz > 0);
    let by_pid = TraceReader::find_by_pid_in(dir.path(), pid()).expect("find by pid");
    assert_eq!(by_pid.path(), tf.path());
}

#[test]
fn records_flow_and_drop_removes_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tf = TraceFile::create(dir.path(), "flow", pid(), &description(2), &layout(2, 16))
        .expect("create");
    let mut w0 = tf.take_reactor(0).expect("reactor 0");
    let mut w1 = tf.take_reactor(1).expect("reactor 1");
    assert!(matches!(
        tf.take_reactor(0),
        Err(Error::ReactorTaken { index: 0 })
    ));
    assert!(matches!(
        tf.take_reactor(2),
        Err(Error::NoSuchReactor {
            index: 2,
            reactors: 2
        })
    ));

    let r = TraceReader::open(tf.path()).expect("open");
    let mut c0 = r.cursor(0, Start::Oldest).expect("cursor");
    let mut out = Vec::new();
    assert_eq!(c0.poll(&mut out).records, 0);

    w0.ring.record_at(100, TP_SUBMIT, 3, 7, 0x01, 4096);
    w0.ring.record(TP_COMPLETE, 3, 7, 0, 0);
    w1.ring.record_at(150, TP_POLL, NO_QPAIR, 0, 0, 0);
    let stats = c0.poll(&mut out);
    assert_eq!(stats.records, 2);
    assert_eq!(stats.lost, 0);
    assert_eq!(
        out[0],
        Record {
            tsc: 100,
            tpoint: TP_SUBMIT,
            qpair: 3,
            cid: 7,
            arg0: 1,
            arg1: 4096
        }
    );
    assert_eq!(out[1].tpoint, TP_COMPLETE);
    assert!(out[1].tsc > 1000, "record() stamps a real TSC");
    assert_eq!(r.head(0), Some(2));
    assert_eq!(r.head(1), Some(1));

    // Attach publishes the writer thread.
    w1.ring.attach_current_thread(Some(5));
    let (tid, core) = r.writer_thread(1).expect("attached");
    assert!(tid > 0);
    assert_eq!(core, Some(5));
    assert_eq!(r.writer_thread(0), None);

    let path = tf.path().to_path_buf();
    drop(tf);
    assert!(!path.exists(), "clean exit unlinks the file");
    assert!(r.producer_exited(), "readers see the exited state");
    // Writers outliving the TraceFile still write harmlessly into the unlinked mapping.
    w0.ring.record_at(200, TP_SUBMIT, 0, 0, 0, 0);
    out.clear();
    assert_eq!(c0.poll(&mut out).records, 1);
}

#[test]
fn mask_toggles_groups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tf = TraceFile::create(dir.path(), "mask", pid(), &description(1), &layout(1, 16))
        .expect("create");
    let mut w = tf.take_reactor(0).expect("reactor");
    let ctl = tf.control();
    let r = TraceReader::open(tf.path()).expect("open");
    assert_eq!(r.enabled_mask(), u64::MAX, "everything starts enabled");
    ctl.set_group(1, false);
    assert!(!w.ring.enabled(TP_SUBMIT));
    assert!(w.ring.enabled(TP_POLL));
    w.ring.record_at(1, TP_SUBMIT, 0, 0, 0, 0);
    w.ring.record_at(2, TP_POLL, 0, 0, 0, 0);
    assert_eq!(r.head(0), Some(1), "the disabled tracepoint wrote nothing");
    assert_eq!(r.enabled_mask(), !(1 << 1));
    ctl.set_enabled_mask(0);
    w.ring.record_at(3, TP_POLL, 0, 0, 0, 0);
    assert_eq!(r.head(0), Some(1));
    ctl.set_group(1, true);
    w.ring.record_at(4, TP_SUBMIT, 0, 0, 0, 0);
    assert_eq!(r.head(0), Some(2));
    assert_eq!(ctl.enabled_mask(), 1 << 1);
}

#[test]
fn counters_and_histograms_are_readable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tf = TraceFile::create(dir.path(), "ctr", pid(), &description(2), &layout(2, 16))
        .expect("create");
    let clock = tf.clock();
    let mut w = tf.take_reactor(1).expect("reactor");
    let c = &mut w.counters;
    c.poll(1000, true, 50);
    c.poll(2000, false, 70);
    c.command(OpClass::Read, 4096);
    c.command(OpClass::Write, 512);
    c.command(OpClass::Admin, 0);
    c.buffer_wait();
    c.backend_submit();
    c.backend_submit();
    c.backend_complete();
    c.connection_opened();
    c.error(ErrorClass::Backend);
    c.qpair_bind(2, 0x0001_0002);
    c.qpair_submit(2);
    c.qpair_submit(2);
    c.qpair_submit(2);
    let ticks = clock.ns_to_ticks(10_000);
    c.qpair_complete(2, 4096, ticks, false);
    c.qpair_complete(2, 4096, ticks, true);
    c.qpair_submit(9); // beyond 4 slots
    c.stage_latency_ns(1, 300);
    c.stage_latency_ns(1, 700);
    c.stage_latency_ns(5, 1); // beyond 2 stages: ignored
                              // Command and backend totals are batched until the next poll: none is in the page yet.
    let r = TraceReader::open(tf.path()).expect("open");
    let before = r.counters(1).expect("reactor 1").totals;
    assert_eq!(
        (
            before.cmds_read,
            before.backend_submitted,
            before.backend_inflight
        ),
        (0, 0, 0),
        "batched totals visible before a flush"
    );
    assert_eq!(
        c.totals().cmds_read,
        1,
        "the writer's own totals include the batch"
    );
    c.flush();

    let s = r.counters(1).expect("reactor 1");
    let t = s.totals;
    assert_eq!(
        (t.polls, t.busy_polls, t.busy_tsc, t.idle_tsc),
        (2, 1, 50, 70)
    );
    assert_eq!(t.last_poll_tsc, 2000);
    assert_eq!(
        (t.cmds_read, t.bytes_read, t.cmds_write, t.bytes_write),
        (1, 4096, 1, 512)
    );
    assert_eq!(t.cmds_admin, 1);
    assert_eq!(t.buffer_waits, 1);
    assert_eq!((t.backend_submitted, t.backend_completed), (2, 1));
    assert_eq!((t.backend_inflight, t.backend_inflight_high_water), (1, 2));
    assert_eq!(t.connections_opened, 1);
    assert_eq!(t.errors_backend, 1);
    assert_eq!(t.qpair_slot_overflow, 1);
    assert_eq!(s.qpairs.len(), 4);
    let q = s.qpairs[2];
    assert_eq!((q.generation, q.ident), (1, 0x0001_0002));
    assert_eq!(
        (q.submitted, q.completed, q.outstanding, q.high_water),
        (3, 2, 1, 3)
    );
    assert_eq!((q.bytes, q.errors), (8192, 1));
    assert_eq!(s.qpairs[0], Default::default());
    assert_eq!(
        r.counters(0).expect("reactor 0").totals.polls,
        0,
        "reactors are separate"
    );
    assert!(r.counters(2).is_none());

    let h = r.qpair_histogram(1, 2).expect("histogram");
    assert_eq!(h.count(), 2);
    assert!(
        h.max().abs_diff(10_000) <= 10,
        "latency converted to ns: {}",
        h.max()
    );
    assert_eq!(
        bucket_index(h.quantile(0.5).expect("p50")),
        bucket_index(h.max())
    );
    let st = r.stage_histogram(1, 1).expect("stage");
    assert_eq!((st.count(), st.sum(), st.max()), (2, 1000, 700));
    assert_eq!(r.stage_histogram(1, 0).expect("stage 0").count(), 0);
    assert!(r.stage_histogram(1, 2).is_none());
    assert!(r.qpair_histogram(1, 4).is_none());
}

#[test]
fn qpair_host_is_written_at_connect_and_cleared_on_rebind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tf = TraceFile::create(dir.path(), "hosts", pid(), &description(1), &layout(1, 16))
        .expect("create");
    let mut w = tf.take_reactor(0).expect("reactor");
    let r = TraceReader::open(tf.path()).expect("open");
    let c = &mut w.counters;
    c.qpair_bind(1, 0x0001_0001);
    assert_eq!(r.qpair_host(0, 1), None, "no host before the Connect");
    let nqn = "nqn.2014-08.org.nvmexpress:uuid:0f8c3f5e-8a6b-4b2c-9c1e-2d6a7e5b9f01";
    c.qpair_host(1, nqn);
    assert_eq!(r.qpair_host(0, 1).as_deref(), Some(nqn));
    c.qpair_host(2, "10.0.0.7");
    assert_eq!(r.qpair_host(0, 2).as_deref(), Some("10.0.0.7"));
    // A longer host is cut on a char boundary at QPAIR_HOST_MAX bytes.
    let long = "é".repeat(200);
    c.qpair_host(3, &long);
    let got = r.qpair_host(0, 3).expect("long host");
    assert!(got.len() <= trace_ring::layout::QPAIR_HOST_MAX && long.starts_with(&got));
    assert!(!got.contains('\u{fffd}'), "cut on a char boundary: {got}");
    // A new qpair in slot 1 has no host until its own Connect.
    c.qpair_bind(1, 0x0002_0001);
    assert_eq!(r.qpair_host(0, 1), None);
    c.qpair_host(1, "nqn.2014-08.io.example:other");
    assert_eq!(
        r.qpair_host(0, 1).as_deref(),
        Some("nqn.2014-08.io.example:other")
    );
    assert_eq!(r.qpair_host(0, 9), None, "slot out of range");
    assert_eq!(r.qpair_host(1, 1), None, "reactor out of range");
}

#[test]
fn rdma_counters_track_polls_doorbells_pending_wrs_and_the_srq() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tf = TraceFile::create(dir.path(), "rdma", pid(), &description(1), &layout(1, 4))
        .expect("create");
    let mut w = tf.take_reactor(0).expect("reactor");
    let c = &mut w.counters;
    c.rdma_post_recv(128, 8); // the SRQ is filled in 8 chains
    c.rdma_srq_ready(128);
    c.rdma_cq_poll(0);
    c.rdma_cq_poll(3);
    for _ in 0..3 {
        c.rdma_recv_consumed();
    }
    c.rdma_post_send(2); // RDMA WRITE + SEND in one chain
    c.rdma_post_send(1);
    c.rdma_cq_poll(2);
    c.rdma_send_done(2);
    c.rdma_post_recv(3, 1);
    c.rdma_recv_consumed();

    let r = TraceReader::open(tf.path()).expect("open");
    let t = r.counters(0).expect("reactor 0").totals;
    assert_eq!(
        (
            t.rdma_cq_polls,
            t.rdma_cq_polls_nonempty,
            t.rdma_completions
        ),
        (3, 2, 5)
    );
    assert_eq!(
        (t.rdma_doorbells, t.rdma_send_wrs, t.rdma_recv_wrs),
        (11, 3, 131)
    );
    assert_eq!((t.rdma_pending_wrs, t.rdma_pending_wrs_high_water), (1, 3));
    assert_eq!(
        (t.rdma_srq_size, t.rdma_srq_depth, t.rdma_srq_low_water),
        (128, 127, 125),
        "depth back up after the repost, low water kept"
    );
    assert_eq!(t.rdma_srq_empty, 0, "never empty so far");
    assert_eq!(t.polls, 0, "RDMA words do not touch the 1.2 ones");

    // Drain it: the last receive taken leaves it empty, once per time it happens.
    let c = &mut w.counters;
    for _ in 0..127 {
        c.rdma_recv_consumed();
    }
    c.rdma_post_recv(1, 1);
    c.rdma_recv_consumed();
    c.rdma_recv_consumed(); // a flush on an empty queue: no underflow, no second count
    let t = r.counters(0).expect("reactor 0").totals;
    assert_eq!((t.rdma_srq_depth, t.rdma_srq_low_water), (0, 0));
    assert_eq!(
        t.rdma_srq_empty, 2,
        "the 127th and the reposted one; not the flush at 0"
    );
}

#[test]
fn merged_cursor_orders_by_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tf = TraceFile::create(dir.path(), "merge", pid(), &description(3), &layout(3, 64))
        .expect("create");
    let mut ws: Vec<_> = (0..3)
        .map(|i| tf.take_reactor(i).expect("reactor"))
        .collect();
    let r = TraceReader::open(tf.path()).expect("open");
    let mut m = r.merged(Start::Oldest, 10).expect("merged");
    // Interleaved timestamps across reactors.
    for t in 0..30u64 {
        ws[(t % 3) as usize]
            .ring
            .record_at(t * 10, TP_POLL, 0, t as u32, t, 0);
    }
    let mut out = Vec::new();
    // Watermark 150 - 10 = 140: only events up to tsc 140.
    let st = m.poll(150, &mut out);
    assert_eq!(st.events, 15);
    assert!(out.iter().all(|e| e.record.tsc <= 140));
    let st = m.drain(&mut out);
    assert_eq!(st.events, 15);
    assert_eq!(out.len(), 30);
    for (i, e) in out.iter().enumerate() {
        assert_eq!(e.record.arg0, i as u64, "event {i} out of order");
        assert_eq!(e.reactor, (i % 3) as u32);
    }
    assert_eq!(m.late_total(), 0);
    // A record stamped before what was already emitted is still delivered, flagged late.
    ws[0].ring.record_at(5, TP_POLL, 0, 0, 99, 0);
    out.clear();
    let st = m.drain(&mut out);
    assert_eq!((st.events, st.late), (1, 1));
}

#[test]
fn listing_reports_liveness_and_problems() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tf =
        TraceFile::create(dir.path(), "a", pid(), &description(1), &layout(1, 16)).expect("create");
    std::fs::write(dir.path().join("ringside.junk"), b"not a trace file").expect("write");
    std::fs::write(dir.path().join("unrelated"), b"x").expect("write");
    let list = TraceReader::list_in(dir.path()).expect("list");
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0].name, "a");
    assert!(list[0].alive);
    assert_eq!(list[0].pid, Some(pid()));
    assert_eq!(list[0].problem, None);
    assert_eq!(list[1].name, "junk");
    assert!(!list[1].alive);
    assert!(
        list[1]
            .problem
            .as_deref()
            .is_some_and(|p| p.contains("too small")),
        "{list:?}"
    );
    drop(tf);
    let list = TraceReader::list_in(dir.path()).expect("list");
    assert_eq!(list.len(), 1);
    assert!(matches!(
        TraceReader::find_in(dir.path(), "a"),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        TraceReader::find_by_pid_in(dir.path(), pid()),
        Err(Error::NoInstanceForPid { .. })
    ));
}

#[test]
fn bad_names_and_layouts_are_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["", ".hidden", "a/b", "sp ace", &"x".repeat(64)] {
        let e = TraceFile::create(dir.path(), name, pid(), &description(1), &layout(1, 16))
            .expect_err("bad name");
        assert!(matches!(e, Error::InvalidName { .. }), "{name:?}: {e}");
    }
    let e = TraceFile::create(dir.path(), "l", pid(), &description(1), &layout(1, 15))
        .expect_err("ring not a power of two");
    assert!(e.to_string().contains("power of two"), "{e}");
    let e = TraceFile::create(dir.path(), "l", pid(), &description(2), &layout(1, 16))
        .expect_err("reactor count mismatch");
    assert!(matches!(e, Error::InvalidDescription { .. }), "{e}");
    let mut dup = description(1);
    dup.tracepoints.push(dup.tracepoints[0].clone());
    let e = TraceFile::create(dir.path(), "l", pid(), &dup, &layout(1, 16)).expect_err("dup id");
    assert!(e.to_string().contains("duplicate tracepoint id"), "{e}");
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("ls").count(),
        0,
        "no leftovers"
    );
}

#[test]
fn start_now_skips_existing_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tf = TraceFile::create(dir.path(), "now", pid(), &description(1), &layout(1, 16))
        .expect("create");
    let mut w = tf.take_reactor(0).expect("reactor");
    for i in 0..5 {
        w.ring.record_at(i, TP_POLL, 0, 0, i, 0);
    }
    let r = TraceReader::open(tf.path()).expect("open");
    let mut now = r.cursor(0, Start::Now).expect("cursor");
    let mut oldest = r.cursor(0, Start::Oldest).expect("cursor");
    w.ring.record_at(5, TP_POLL, 0, 0, 5, 0);
    let mut out = Vec::new();
    assert_eq!(now.poll(&mut out).records, 1);
    assert_eq!(out[0].arg0, 5);
    out.clear();
    assert_eq!(oldest.poll(&mut out).records, 6);
    assert_eq!(oldest.backlog(), 0);
    assert!(matches!(
        r.cursor(1, Start::Now),
        Err(Error::NoSuchReactor { .. })
    ));
}

/// Named ring boundary cases: `(ring size, records before the first poll, records between the
/// polls, expected first index and lost count at the second poll)`.
#[rstest::rstest]
#[case::never_written(8, 0, 0, 0, 0)]
#[case::ring_wraps(8, 6, 6, 6, 0)]
#[case::just_under_one_lap(8, 0, 7, 0, 0)]
#[case::exactly_one_lap_loses_the_slot_under_rewrite(8, 0, 8, 1, 1)]
#[case::reader_lapped(8, 0, 20, 13, 13)]
#[case::reader_lapped_twice_after_reading(4, 3, 11, 11, 8)]
fn ring_boundaries(
    #[case] n: u64,
    #[case] first: u64,
    #[case] second: u64,
    #[case] expected_from: u64,
    #[case] expected_lost: u64,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let tf = TraceFile::create(dir.path(), "bounds", pid(), &description(1), &layout(1, n))
        .expect("create");
    let mut w = tf.take_reactor(0).expect("reactor");
    let r = TraceReader::open(tf.path()).expect("open");
    let mut c = r.cursor(0, Start::Oldest).expect("cursor");
    let mut out = Vec::new();
    for i in 0..first {
        w.ring.record_at(i, TP_POLL, 0, 0, i, 0);
    }
    let st = c.poll(&mut out);
    assert_eq!((st.records as u64, st.lost), (first, 0), "first poll");
    out.clear();
    for i in first..first + second {
        w.ring.record_at(i, TP_POLL, 0, 0, i, 0);
    }
    let st = c.poll(&mut out);
    let got: Vec<u64> = out.iter().map(|r| r.arg0).collect();
    let want: Vec<u64> = (expected_from..first + second).collect();
    assert_eq!(got, want, "records returned are exactly the newest ones");
    assert_eq!(st.lost, expected_lost, "lost count");
    assert_eq!(c.lost_total(), expected_lost);
}

#[test]
fn writers_are_send_readers_are_send_and_sync() {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}
    send::<trace_ring::RingWriter>();
    send::<trace_ring::CountersWriter>();
    send::<trace_ring::RingCursor>();
    send_sync::<TraceReader>();
    send_sync::<trace_ring::TraceControl>();
    send_sync::<TraceFile>();
}

#[test]
fn anonymous_file_has_counters_its_own_reader_sees_and_no_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tf = TraceFile::create_anonymous(
        "anon",
        pid(),
        &description(1),
        &layout(1, 2),
        trace_ring::Clock::calibrated(),
    )
    .expect("create anonymous");
    assert!(!tf.is_published());
    assert!(
        TraceReader::find_in(dir.path(), "anon").is_err(),
        "nothing to find by name"
    );
    let mut w = tf.take_reactor(0).expect("reactor 0");
    w.counters.connection_opened();
    w.counters.qpair_bind(3, 0);
    w.counters.qpair_ident(3, (7 << 16) | 1);
    w.counters.qpair_submit(3);
    let r = tf.reader().expect("own reader");
    let c = r.counters(0).expect("counters");
    assert_eq!(c.totals.connections_opened, 1);
    let q = &c.qpairs[3];
    assert_eq!(
        (q.generation, q.ident, q.outstanding),
        (1, (7 << 16) | 1, 1)
    );
    w.counters.qpair_unbind(3);
    let q = r.counters(0).expect("counters").qpairs[3];
    assert_eq!(
        (q.generation, q.ident, q.outstanding, q.submitted),
        (1, 0, 0, 1),
        "unbind clears the identity and the gauge, keeps the totals"
    );
}

#[test]
fn a_published_file_reads_itself_through_its_descriptor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tf = TraceFile::create(dir.path(), "own", pid(), &description(1), &layout(1, 16))
        .expect("create");
    assert!(tf.is_published());
    let mut w = tf.take_reactor(0).expect("reactor 0");
    w.counters.poll(10, true, 5);
    let r = tf.reader().expect("own reader");
    assert_eq!(r.path(), tf.path());
    assert_eq!(r.counters(0).map(|c| c.totals.busy_tsc), Some(5));
}
