//! End-to-end tests of the initiator against the in-process fake target (see `fake_target`):
//! transport, admin bring-up, discovery, the worker loop, verify and failure reporting.

use std::time::Duration;

use crate::config::{PerfConfig, Workload};
use crate::fake_target::{start, FakeOptions, FakeTarget};
use crate::perf::{run, PerfError};
use crate::units::CoreId;

fn cfg_for(t: &FakeTarget, subnqn: Option<&str>) -> PerfConfig {
    let mut trid = format!(
        "trtype:tcp adrfam:ipv4 traddr:127.0.0.1 trsvcid:{}",
        t.addr.port()
    );
    if let Some(n) = subnqn {
        trid.push_str(&format!(" subnqn:{n}"));
    }
    let mut c = PerfConfig::new(trid.parse().expect("trid"));
    c.pin = false;
    c.cores = vec![CoreId(0)];
    c.duration = Duration::from_secs(20);
    c.io_timeout = Duration::from_secs(10);
    c
}

fn fake() -> (FakeTarget, FakeOptions) {
    let o = FakeOptions::default();
    (start(o.clone()), o)
}

#[test]
fn verify_passes_for_every_transfer_path() {
    let (t, o) = fake();
    // 512 and 4096: in-capsule writes, single C2H; 8192: in-capsule limit; 16384+: R2T with
    // several H2CData PDUs (MAXH2CDATA 16 KiB) and multi-PDU C2H; 131072: several R2Ts.
    for io in [512u64, 4096, 8192, 16384, 65536, 131072] {
        let mut c = cfg_for(&t, Some(&o.subnqn));
        c.io_size = io;
        c.queue_depth = 8;
        c.workload = Workload::RandRw;
        c.read_mix = 50;
        c.verify = true;
        c.io_limit = Some(200);
        c.range = Some(1 << 20);
        let r = run(&c).unwrap_or_else(|e| panic!("io {io}: {}", crate::error_chain(&e)));
        assert!(r.ok(), "io {io}: {}", r.to_text());
        assert_eq!(r.total.ios, 200, "io {io}: exactly the limit");
        assert!(r.total.reads > 0 && r.total.writes > 0, "io {io}: mixed");
        let v = r.verify.as_ref().expect("verify summary");
        assert_eq!(v.mismatches, 0, "io {io}");
        assert_eq!(v.prefilled_bytes, 1 << 20, "io {io}: whole range prefilled");
        assert!(
            v.checked_blocks >= r.total.reads * io / 512,
            "io {io}: every read checked"
        );
    }
}

#[test]
fn digests_and_two_qpairs_work() {
    let (t, o) = fake();
    let mut c = cfg_for(&t, Some(&o.subnqn));
    c.header_digest = true;
    c.data_digest = true;
    c.qpairs_per_ns = 2;
    c.io_size = 65536;
    c.queue_depth = 4;
    c.workload = Workload::Rw;
    c.verify = true;
    c.io_limit = Some(100);
    c.range = Some(4 << 20);
    let r = run(&c).unwrap_or_else(|e| panic!("{}", crate::error_chain(&e)));
    assert!(r.ok(), "{}", r.to_text());
    assert!(
        r.target.header_digest && r.target.data_digest,
        "digests negotiated"
    );
    assert_eq!(r.cores[0].qpairs, 2);
    assert_eq!(r.total.ios, 100);
    let x = r.transport;
    assert!(x.send_calls > 0 && x.recv_calls > x.recv_empty, "{x:?}");
    assert!(x.pdus_received >= 100, "at least one pdu per i/o: {x:?}");
    assert!(x.pdus_sent >= 100, "a capsule per i/o, plus H2CData: {x:?}");
    assert!(
        x.bytes_sent >= 100 * 65536 * 3 / 10,
        "write payload was sent: {x:?}"
    );
}

#[test]
fn corrupted_reads_are_counted_as_mismatches() {
    let o = FakeOptions {
        corrupt_reads: true,
        ..FakeOptions::default()
    };
    let t = start(o.clone());
    let mut c = cfg_for(&t, Some(&o.subnqn));
    c.verify = true;
    c.io_limit = Some(50);
    c.range = Some(256 << 10);
    c.workload = Workload::RandRead;
    let r = run(&c).unwrap_or_else(|e| panic!("{}", crate::error_chain(&e)));
    let v = r.verify.as_ref().expect("verify");
    assert_eq!(v.mismatches, 50, "every read corrupt");
    assert!(!r.ok());
    assert!(
        !v.first.is_empty() && v.first[0].offset == 0,
        "{:?}",
        v.first
    );
    assert!(r.to_text().contains("MISMATCH"), "{}", r.to_text());
}

#[test]
fn wrong_subnqn_is_a_clear_error() {
    let (t, _) = fake();
    let c = cfg_for(&t, Some("nqn.2024-01.io.ringside:nope"));
    let e = run(&c).expect_err("unknown subsystem");
    let msg = crate::error_chain(&e);
    assert!(matches!(e, PerfError::Host { .. }), "{msg}");
    assert!(msg.contains("CONNECT_INVALID_PARAMETERS"), "{msg}");
    assert!(msg.contains("nqn.2024-01.io.ringside:nope"), "{msg}");
}

#[test]
fn discovery_finds_the_subsystem() {
    let (t, o) = fake();
    let mut c = cfg_for(&t, None);
    c.io_limit = Some(10);
    let r = run(&c).unwrap_or_else(|e| panic!("{}", crate::error_chain(&e)));
    assert_eq!(r.target.subnqn, o.subnqn);
    assert_eq!(r.total.ios, 10);
}

#[test]
fn lost_connection_ends_the_qpair_with_a_message() {
    let o = FakeOptions {
        drop_after: Some(20),
        ..FakeOptions::default()
    };
    let t = start(o.clone());
    let mut c = cfg_for(&t, Some(&o.subnqn));
    c.io_limit = Some(1000);
    let r = run(&c).unwrap_or_else(|e| panic!("{}", crate::error_chain(&e)));
    assert!(!r.ok());
    assert_eq!(r.fatal.len(), 1, "{:?}", r.fatal);
    // The initiator learns of the close on whichever syscall comes first: a recv of 0 bytes, or a
    // send that fails with EPIPE/ECONNRESET. Either way the message names the qpair and the cause.
    let msg = &r.fatal[0];
    assert!(msg.contains("qpair qid 1"), "{msg}");
    assert!(
        msg.contains("connection closed")
            || msg.contains("Broken pipe")
            || msg.contains("Connection reset"),
        "{msg}"
    );
    assert!(r.total.ios < 1000);
}

#[test]
fn nvme_error_status_is_counted_by_name() {
    let o = FakeOptions {
        fail_from_lba: Some(8192),
        ..FakeOptions::default()
    };
    let t = start(o.clone());
    let mut c = cfg_for(&t, Some(&o.subnqn));
    c.io_limit = Some(400);
    c.workload = Workload::RandRead;
    let r = run(&c).unwrap_or_else(|e| panic!("{}", crate::error_chain(&e)));
    let n = r.errors.get("LBA_OUT_OF_RANGE").copied().unwrap_or(0);
    assert!(n > 0 && n < 400, "about half fail: {:?}", r.errors);
    assert_eq!(r.total.ios, 400, "errors count as completed I/Os");
    assert_eq!(r.total.errors, n);
    assert!(!r.ok());
    assert!(r.to_text().contains("LBA_OUT_OF_RANGE"), "{}", r.to_text());
}

#[test]
fn short_sends_resume_where_they_stopped() {
    let o = FakeOptions {
        slow_reader: true,
        maxh2cdata: 131072,
        r2t_chunk: 131072,
        ..FakeOptions::default()
    };
    let t = start(o.clone());
    let mut c = cfg_for(&t, Some(&o.subnqn));
    c.socket_buffer = Some(4096);
    c.io_size = 131072;
    c.queue_depth = 8;
    c.workload = Workload::RandWrite;
    c.verify = true;
    c.io_limit = Some(40);
    c.range = Some(2 << 20);
    let r = run(&c).unwrap_or_else(|e| panic!("{}", crate::error_chain(&e)));
    assert!(r.ok(), "{}", r.to_text());
    assert!(
        r.transport.send_partial > 0,
        "the slow reader must have forced short writes: {:?}",
        r.transport
    );
    assert_eq!(r.total.writes, 40);
    // What was written through short sends reads back intact.
    let mut c2 = cfg_for(&t, Some(&o.subnqn));
    c2.io_size = 131072;
    c2.queue_depth = 4;
    c2.workload = Workload::Read;
    c2.verify = true;
    c2.io_limit = Some(16);
    c2.range = Some(2 << 20);
    let r2 = run(&c2).unwrap_or_else(|e| panic!("{}", crate::error_chain(&e)));
    assert_eq!(
        r2.verify.as_ref().map(|v| v.mismatches),
        Some(0),
        "{}",
        r2.to_text()
    );
}

#[test]
fn success_flag_saves_the_capsule_resp_and_refused_cattr_falls_back() {
    for (reject, keep_flow) in [(false, false), (true, false), (false, true)] {
        let o = FakeOptions {
            reject_cattr: reject,
            ..FakeOptions::default()
        };
        let t = start(o.clone());
        let mut c = cfg_for(&t, Some(&o.subnqn));
        c.sq_flow_control = keep_flow;
        c.queue_depth = 4;
        c.workload = Workload::RandRead;
        c.io_limit = Some(400);
        let r = run(&c).unwrap_or_else(|e| panic!("{}", crate::error_chain(&e)));
        assert!(r.ok(), "reject {reject}: {}", r.to_text());
        assert_eq!(r.total.ios, 400);
        let pdus = r.transport.pdus_received;
        if reject || keep_flow {
            assert_eq!(
                pdus, 800,
                "C2HData + CapsuleResp per read: {:?}",
                r.transport
            );
        } else {
            assert!(
                (400..800).contains(&pdus),
                "even cids end with SUCCESS, no CapsuleResp: {:?}",
                r.transport
            );
        }
    }
}

#[test]
fn queue_depth_may_use_every_entry_mqes_allows() {
    let o = FakeOptions {
        mqes: 15,
        ..FakeOptions::default()
    };
    let t = start(o.clone());
    for qd in [1u32, 16] {
        let mut c = cfg_for(&t, Some(&o.subnqn));
        c.queue_depth = qd;
        c.io_limit = Some(100);
        let r = run(&c).unwrap_or_else(|e| panic!("qd {qd}: {}", crate::error_chain(&e)));
        assert_eq!(r.total.ios, 100, "qd {qd}");
    }
    let mut c = cfg_for(&t, Some(&o.subnqn));
    c.queue_depth = 17;
    let e = run(&c).expect_err("qd 17 > MQES + 1");
    assert!(
        crate::error_chain(&e).contains("queue size limit of 16 entries"),
        "{}",
        crate::error_chain(&e)
    );
}
