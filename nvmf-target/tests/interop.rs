//! Interop with the hosts people run: SPDK's host connects with an all-zero Host NQN by default,
//! and at detach completes its outstanding AERs itself and reuses their command ids. A refused
//! Connect and a connection closed on a protocol error each print one line and move a counter.

mod common;

use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Host, TestTarget, HOSTID, HOSTNQN, NQN};
use nvme_proto::fabrics::{prop, ConnectCmd, ConnectData, Nqn, PropertySize};
use nvme_proto::nvme::{Cid, Cqe, Sqe, Status};
use nvme_proto::sgl::SglDescriptor;
use nvme_proto::tcp::PduHeader;

/// A Connect whose Host NQN field is all zero bytes (what `spdk_nvme_perf` sends by default).
fn connect_zero_host(h: &mut Host, qid: u16, cntlid: u16) -> Cqe {
    let cmd = ConnectCmd {
        cid: h.cid(),
        sgl: SglDescriptor::in_capsule(0, 1024),
        recfmt: 0,
        qid,
        sqsize: 31,
        cattr: 0,
        kato: 30_000,
    };
    let mut data = ConnectData {
        hostid: HOSTID,
        cntlid,
        subnqn: Nqn::new(NQN).expect("nqn"),
        hostnqn: Nqn::new("placeholder").expect("nqn"),
    }
    .to_bytes();
    data[512..768].fill(0);
    h.cmd(cmd.to_sqe(), &data, true).0
}

#[test]
fn all_zero_host_nqn_is_accepted_by_a_subsystem_that_allows_any_host() {
    let t = TestTarget::start();
    let mut admin = t.host();
    admin.icreq(false, false);
    let c = connect_zero_host(&mut admin, 0, 0xffff);
    assert_eq!(
        c.status,
        Status::SUCCESS,
        "admin connect with an empty host nqn"
    );
    let cntlid = c.dw0 as u16;
    admin.enable();
    let mut io = t.host();
    io.icreq(false, false);
    let c = connect_zero_host(&mut io, 1, cntlid);
    assert_eq!(
        c.status,
        Status::SUCCESS,
        "i/o connect with the same empty nqn"
    );
    let d = common::pattern(4096, 5);
    assert!(io.write(8, &d, true).status.is_success());
    assert_eq!(io.read(8, 4096).1, d, "i/o works on the association");
    // The I/O queue must still carry the admin queue's host NQN.
    let mut other = t.host();
    other.icreq(false, false);
    let c = other.connect_as(NQN, HOSTNQN, 2, 31, 0, cntlid);
    assert_eq!(
        c.status,
        Status::CONNECT_INVALID_PARAMETERS,
        "an i/o connect naming another host than the admin queue's"
    );
}

#[test]
fn all_zero_host_nqn_is_refused_with_invalid_host_where_an_allow_list_is_set() {
    let t = TestTarget::start_with(|c| c.subsystems[0].allowed_hosts = vec![HOSTNQN.into()]);
    let mut h = t.host();
    h.icreq(false, false);
    let c = connect_zero_host(&mut h, 0, 0xffff);
    assert_eq!(c.status, Status::CONNECT_INVALID_HOST);
    // The listed host still gets in.
    let mut ok = t.host();
    ok.icreq(false, false);
    assert!(ok.connect(NQN, 0, 31, 0, 0xffff).status.is_success());
}

fn aer(cid: Cid) -> Sqe {
    Sqe {
        opcode: 0x0c,
        cid,
        ..Sqe::default()
    }
}

fn keep_alive(cid: Cid) -> Sqe {
    Sqe {
        opcode: 0x18,
        cid,
        ..Sqe::default()
    }
}

/// The next CapsuleResp (panics on anything else).
fn next_resp(h: &mut Host) -> Cqe {
    match h.recv_pdu() {
        (PduHeader::CapsuleResp(c), _) => c,
        (other, _) => panic!("expected a CapsuleResp, got {other:?}"),
    }
}

#[test]
fn a_held_aer_whose_cid_the_host_reuses_stops_blocking_it() {
    let t = TestTarget::start();
    let mut h = t.host();
    h.icreq(false, false);
    assert!(h.connect(NQN, 0, 31, 30_000, 0xffff).status.is_success());
    h.enable();
    // Four AERs (the limit): all held, none answered.
    let held = [Cid(100), Cid(101), Cid(102), Cid(103)];
    for c in held {
        h.capsule(&aer(c), &[]);
    }
    h.capsule(&keep_alive(Cid(200)), &[]);
    let c = next_resp(&mut h);
    assert_eq!(
        (c.cid, c.status),
        (Cid(200), Status::SUCCESS),
        "the AERs are held: the keep-alive is answered first"
    );
    // A fifth AER is over the limit while the four are held.
    h.capsule(&aer(Cid(104)), &[]);
    let c = next_resp(&mut h);
    assert_eq!(
        (c.cid, c.status),
        (Cid(104), Status::ASYNC_EVENT_REQUEST_LIMIT_EXCEEDED)
    );

    // The host abandons its AERs (as SPDK's does at detach) and reuses one id for a Property
    // Get of CC: answered, not refused with Command ID Conflict.
    h.capsule(
        &nvme_proto::fabrics::PropertyGet {
            cid: Cid(101),
            size: PropertySize::Four,
            offset: prop::CC,
        }
        .to_sqe(),
        &[],
    );
    let c = next_resp(&mut h);
    assert_eq!(c.cid, Cid(101));
    assert_eq!(c.status, Status::SUCCESS, "reused AER id answered");
    assert_eq!(c.dw0 & 1, 1, "CC.EN as the host set it");
    // The abandoned AER no longer counts against the limit: a new one is held again.
    h.capsule(&aer(Cid(105)), &[]);
    h.capsule(&keep_alive(Cid(201)), &[]);
    let c = next_resp(&mut h);
    assert_eq!(
        (c.cid, c.status),
        (Cid(201), Status::SUCCESS),
        "the new AER is held (not over the limit)"
    );
    // The other held ids still conflict: they were not abandoned.
    h.capsule(&keep_alive(Cid(102)), &[]);
    let c = next_resp(&mut h);
    assert_eq!(c.cid, Cid(102));
    assert_eq!(
        c.status,
        Status::SUCCESS,
        "an admin command reusing any held AER's id abandons that AER"
    );
    // An AER reusing a held AER's id replaces it rather than piling up or conflicting.
    h.capsule(&aer(Cid(105)), &[]);
    h.capsule(&keep_alive(Cid(202)), &[]);
    let c = next_resp(&mut h);
    assert_eq!(
        (c.cid, c.status),
        (Cid(202), Status::SUCCESS),
        "an AER reusing a held AER's id is held in its place"
    );
}

/// Waits (bounded) for a stderr line containing `what`; returns it and the lines seen before.
fn wait_line(rx: &mpsc::Receiver<String>, what: &str, seen: &mut Vec<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(what) => return l,
            Ok(l) => seen.push(l),
            Err(_) => break,
        }
    }
    panic!("no line containing {what:?} within 20 s; seen: {seen:#?}");
}

fn counters(dir: &std::path::Path, name: &str) -> trace_ring::layout::ReactorCounters {
    let r = trace_ring::TraceReader::open(dir.join(format!("ringside.{name}")))
        .expect("open the trace file");
    r.counters(0).expect("reactor 0 counters").totals
}

#[test]
fn a_refused_connect_and_a_protocol_close_print_one_line_each_and_move_their_counters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let name = format!("interop{}", std::process::id());
    let (mut child, addr, rx) = common::spawn_tgt(
        dir.path(),
        &[
            "--null",
            "64MiB",
            "--name",
            &name,
            "--idle",
            "sleep",
            "--allow-host",
            HOSTNQN,
        ],
    );
    let before = counters(dir.path(), &name);
    assert_eq!((before.connects_refused, before.protocol_closes), (0, 0));

    let stranger = "nqn.2014-08.org.nvmexpress:uuid:99999999-0000-0000-0000-000000000009";
    let mut h = Host::open(addr);
    h.icreq(false, false);
    let c = h.connect_as(NQN, stranger, 0, 31, 0, 0xffff);
    assert_eq!(c.status, Status::CONNECT_INVALID_HOST);
    let mut seen = Vec::new();
    let line = wait_line(&rx, "connect refused", &mut seen);
    let local = h.s.local_addr().expect("local addr").to_string();
    for want in [
        local.as_str(),
        NQN,
        stranger,
        "hostnqn: not on the subsystem's allowed hosts",
        "tcp",
    ] {
        assert!(line.contains(want), "{want:?} missing from: {line}");
    }
    assert_eq!(counters(dir.path(), &name).connects_refused, 1);

    // A PDU sequence error (a second ICReq) closes the connection with a TermReq.
    let mut p = Host::open(addr);
    p.icreq(false, false);
    assert!(p.connect(NQN, 0, 31, 0, 0xffff).status.is_success());
    let mut b = [0u8; 128];
    let n = nvme_proto::tcp::encode_icreq(
        &nvme_proto::tcp::IcReq {
            pfv: 0,
            hpda: 0,
            hdgst: false,
            ddgst: false,
            maxr2t: 0,
        },
        &mut b,
    )
    .expect("icreq");
    p.send(&b[..n]);
    p.expect_term_req();
    let line = wait_line(&rx, "connection closed on a protocol error", &mut seen);
    let local = p.s.local_addr().expect("local addr").to_string();
    for want in [local.as_str(), NQN, HOSTNQN, "PduSequenceError"] {
        assert!(line.contains(want), "{want:?} missing from: {line}");
    }
    let after = counters(dir.path(), &name);
    assert_eq!((after.connects_refused, after.protocol_closes), (1, 1));

    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    assert!(child.wait().expect("wait").success());
    seen.extend(rx.iter());
    assert!(
        !seen
            .iter()
            .any(|l| l.contains("connect refused") || l.contains("protocol error")),
        "one line per event, no repeats: {seen:#?}"
    );
}
