//! Happy paths over real loopback TCP against a running target: ICReq, Connect, properties,
//! Identify, features, log pages, discovery, and I/O with in-capsule data, R2T/H2CData writes
//! and multi-PDU C2HData reads, with and without digests.

mod common;

use common::*;
use nvme_proto::fabrics::{prop, Cap, PropertySize};
use nvme_proto::nvme::{feature, Cqe, Nsid, Sqe, Status, DSM_AD};
use nvme_proto::sgl::SglDescriptor;
use rstest::rstest;

#[rstest]
#[case::no_digests(false, false)]
#[case::header_digest(true, false)]
#[case::data_digest(false, true)]
#[case::both_digests(true, true)]
fn admin_bring_up_and_io(#[case] hd: bool, #[case] dd: bool) {
    let t = TestTarget::start();
    let mut admin = t.host();
    let ic = admin.icreq(hd, dd);
    assert_eq!(
        (ic.hdgst, ic.ddgst),
        (hd, dd),
        "digests echo what the host asked"
    );
    assert_eq!(ic.maxh2cdata, 16 * 1024);
    let c = admin.connect(NQN, 0, 31, 10_000, 0xffff);
    assert!(c.status.is_success(), "{:?}", c.status);
    let cntlid = c.dw0 as u16;
    assert_ne!(cntlid, 0);

    let cap = Cap::from_u64(admin.prop_get(prop::CAP, PropertySize::Eight).result64());
    assert_eq!(cap.mqes, 255, "MQES is the configured queue depth - 1");
    assert!(cap.css & Cap::CSS_NVM != 0);
    let vs = admin.prop_get(prop::VS, PropertySize::Four).dw0;
    assert!(vs >= 0x10300, "VS {vs:#x}");
    admin.enable();

    let (c, id) = admin.identify(1, 0);
    assert!(c.status.is_success());
    assert_eq!(id.len(), 4096);
    assert_eq!(u16::from_le_bytes([id[78], id[79]]), cntlid, "CNTLID");
    assert_eq!(id[77], 5, "MDTS = 128 KiB / 4 KiB = 2^5");
    assert_eq!(id[111], 1, "CNTRLTYPE I/O");
    assert_eq!(
        id[525], 0b101,
        "VWC: present, broadcast Flush not supported"
    );
    assert!(
        u32::from_le_bytes([id[536], id[537], id[538], id[539]]) & 1 != 0,
        "SGL support"
    );
    assert_eq!(
        u32::from_le_bytes([id[1792], id[1793], id[1794], id[1795]]),
        (64 + 8192) / 16,
        "IOCCSZ"
    );
    assert_eq!(&id[768..768 + NQN.len()], NQN.as_bytes(), "SUBNQN");

    let (c, ns) = admin.identify(0, 1);
    assert!(c.status.is_success());
    assert_eq!(
        u64::from_le_bytes(ns[0..8].try_into().unwrap()),
        (8 << 20) / 512,
        "NSZE"
    );
    assert_eq!(
        (u32::from_le_bytes(ns[128..132].try_into().unwrap()) >> 16) & 0xff,
        9,
        "LBADS 512"
    );
    let (_, list) = admin.identify(2, 0);
    assert_eq!(&list[..8], &[1, 0, 0, 0, 0, 0, 0, 0], "active ns list");
    let (c, descs) = admin.identify(3, 1);
    assert!(c.status.is_success());
    assert_eq!(descs[0], 2, "first descriptor is the NGUID");
    let (c, cs) = admin.identify(0x06, 0);
    assert!(
        c.status.is_success(),
        "NVM command set Identify Controller: {:?}",
        c.status
    );
    assert!(cs.iter().all(|&b| b == 0), "no limits beyond MDTS");
    let (c, _) = admin.identify(0x55, 0);
    assert!(
        c.status.same_code(Status::INVALID_FIELD),
        "unknown CNS: {:?}",
        c.status
    );
    let (c, _) = admin.identify(0, 77);
    assert!(
        c.status.same_code(Status::INVALID_NAMESPACE_OR_FORMAT),
        "{:?}",
        c.status
    );

    let cid = admin.cid();
    let (c, _) = admin.cmd(Sqe::set_number_of_queues(cid, 4, 4), &[], false);
    assert!(c.status.is_success());
    assert_eq!(c.dw0, 3 | (3 << 16), "4 queues granted");
    let cid = admin.cid();
    let (c, _) = admin.cmd(
        Sqe::get_features(cid, feature::KEEP_ALIVE_TIMER, 0, 0),
        &[],
        false,
    );
    assert_eq!(c.dw0, 10_000);
    let cid = admin.cid();
    let (c, _) = admin.cmd(Sqe::get_features(cid, 0x7e, 0, 0), &[], false);
    assert!(c.status.same_code(Status::INVALID_FIELD));
    let cid = admin.cid();
    let (c, _) = admin.cmd(Sqe::keep_alive(cid), &[], false);
    assert!(c.status.is_success());
    for (lid, len) in [(1u8, 64u32), (2, 512), (4, 4096)] {
        let cid = admin.cid();
        let sqe = Sqe::get_log_page(
            cid,
            Nsid(0xffff_ffff),
            lid,
            len,
            0,
            SglDescriptor::tcp_transport(len),
        )
        .unwrap();
        let (c, d) = admin.cmd(sqe, &[], false);
        assert!(c.status.is_success(), "log {lid}: {:?}", c.status);
        assert_eq!(d.len(), len as usize);
    }
    let cid = admin.cid();
    let sqe = Sqe::get_log_page(
        cid,
        Nsid(0),
        0x70,
        1024,
        0,
        SglDescriptor::tcp_transport(1024),
    )
    .unwrap();
    let (c, _) = admin.cmd(sqe, &[], false);
    assert!(
        c.status.same_code(Status::INVALID_LOG_PAGE),
        "discovery log on an NVM controller"
    );

    let mut io = t.host();
    io.icreq(hd, dd);
    let c = io.connect(NQN, 1, 127, 0, cntlid);
    assert!(c.status.is_success(), "io connect {:?}", c.status);

    // In-capsule 4 KiB write, then read back.
    let d = pattern(4096, 1);
    assert!(io.write(8, &d, true).status.is_success());
    let (c, r) = io.read(8, 4096);
    assert!(c.status.is_success());
    assert_eq!(r, d);
    // 64 KiB through R2T + four 16 KiB H2CData PDUs, read back in four C2HData PDUs.
    let big = pattern(65536, 2);
    assert!(io.write(1000, &big, false).status.is_success());
    let (c, r) = io.read(1000, 65536);
    assert!(c.status.is_success());
    assert_eq!(r, big, "multi-pdu round trip");
    // Write Zeroes and Dataset Management deallocate read back as zeros.
    let cid = io.cid();
    let (c, _) = io.cmd(
        Sqe::write_zeroes(cid, Nsid(1), 1000, 8, false).unwrap(),
        &[],
        false,
    );
    assert!(c.status.is_success());
    let mut range = [0u8; 16];
    range[4..8].copy_from_slice(&8u32.to_le_bytes());
    range[8..16].copy_from_slice(&1016u64.to_le_bytes());
    let cid = io.cid();
    let sqe =
        Sqe::dataset_management(cid, Nsid(1), 1, DSM_AD, SglDescriptor::in_capsule(0, 16)).unwrap();
    let (c, _) = io.cmd(sqe, &range, true);
    assert!(c.status.is_success(), "dsm {:?}", c.status);
    let (_, r) = io.read(1000, 65536);
    assert!(r[..4096].iter().all(|&b| b == 0), "write zeroes");
    assert_eq!(&r[4096..8192], &big[4096..8192]);
    assert!(r[8192..12288].iter().all(|&b| b == 0), "deallocated");
    assert_eq!(&r[12288..], &big[12288..]);
    let cid = io.cid();
    let (c, _) = io.cmd(Sqe::flush(cid, Nsid(1)), &[], false);
    assert!(c.status.is_success());
    // Broadcast Flush is not supported, and Identify says so.
    let cid = io.cid();
    let (c, _) = io.cmd(Sqe::flush(cid, Nsid(0xffff_ffff)), &[], false);
    assert!(
        c.status.same_code(Status::INVALID_NAMESPACE_OR_FORMAT),
        "{:?}",
        c.status
    );
}

#[test]
fn io_errors_get_the_right_status() {
    let t = TestTarget::start();
    let (_admin, mut io) = t.io_pair(false, false);
    let blocks = (8u64 << 20) / 512;
    // LBA out of range (last block + 1).
    let (c, _) = io.read(blocks - 1, 1024);
    assert!(
        c.status.same_code(Status::LBA_OUT_OF_RANGE),
        "{:?}",
        c.status
    );
    assert!(io
        .write(blocks, &[0u8; 512], true)
        .status
        .same_code(Status::LBA_OUT_OF_RANGE));
    // Invalid namespace.
    let cid = io.cid();
    let sqe = Sqe::read(cid, Nsid(9), 0, 1, SglDescriptor::tcp_transport(512)).unwrap();
    assert!(io
        .cmd(sqe, &[], false)
        .0
        .status
        .same_code(Status::INVALID_NAMESPACE_OR_FORMAT));
    // Invalid opcode.
    let cid = io.cid();
    let mut sqe = Sqe::flush(cid, Nsid(1));
    sqe.opcode = 0x7e;
    assert!(io
        .cmd(sqe, &[], false)
        .0
        .status
        .same_code(Status::INVALID_OPCODE));
    // Above MDTS (128 KiB): 256 KiB read.
    let cid = io.cid();
    let sqe = Sqe::read(
        cid,
        Nsid(1),
        0,
        512,
        SglDescriptor::tcp_transport(256 * 1024),
    )
    .unwrap();
    assert!(io
        .cmd(sqe, &[], false)
        .0
        .status
        .same_code(Status::INVALID_FIELD));
    // SGL length disagreeing with the block count.
    let cid = io.cid();
    let sqe = Sqe::read(cid, Nsid(1), 0, 8, SglDescriptor::tcp_transport(512)).unwrap();
    assert!(io
        .cmd(sqe, &[], false)
        .0
        .status
        .same_code(Status::SGL_DATA_BLOCK_LENGTH_INVALID));
    // Keyed SGL (RDMA only) on TCP.
    let cid = io.cid();
    let sqe = Sqe::read(cid, Nsid(1), 0, 1, SglDescriptor::keyed(0x1000, 512, 7)).unwrap();
    assert!(io
        .cmd(sqe, &[], false)
        .0
        .status
        .same_code(Status::SGL_DESCRIPTOR_TYPE_INVALID));
    // Command ID conflict: a write waiting for its H2CData holds its CID.
    let cid = io.cid();
    let w = Sqe::write(cid, Nsid(1), 0, 8, SglDescriptor::tcp_transport(4096)).unwrap();
    io.capsule(&w, &[]);
    let (h, _) = io.recv_pdu();
    let r2t = match h {
        nvme_proto::tcp::PduHeader::R2T(r) => r,
        other => panic!("expected R2T, got {other:?}"),
    };
    let (c, _) = io.cmd(Sqe::flush(cid, Nsid(1)), &[], false);
    assert!(
        c.status.same_code(Status::COMMAND_ID_CONFLICT),
        "{:?}",
        c.status
    );
    // Finish the held write; it still completes.
    let data = pattern(4096, 5);
    let h = nvme_proto::tcp::H2CData {
        cccid: cid,
        ttag: r2t.ttag,
        datao: 0,
        datal: 4096,
        last: true,
    };
    let mut b = vec![0u8; 4200];
    let n = nvme_proto::tcp::encode_h2c_data(&h, &data, &io.cfg, &mut b).unwrap();
    io.send(&b[..n]);
    match io.recv_pdu() {
        (nvme_proto::tcp::PduHeader::CapsuleResp(c), _) => assert!(c.status.is_success()),
        (h, _) => panic!("{h:?}"),
    }
    // Admin opcode on an I/O queue.
    let cid = io.cid();
    let (c, _) = io.cmd(
        Sqe::identify(cid, Nsid(0), 1, SglDescriptor::tcp_transport(4096)),
        &[],
        false,
    );
    assert!(c.status.same_code(Status::INVALID_OPCODE), "{:?}", c.status);
}

#[test]
fn discovery_lists_the_subsystem() {
    let t = TestTarget::start();
    let mut h = t.host();
    h.icreq(false, false);
    let c = h.connect(nvme_proto::fabrics::DISCOVERY_NQN, 0, 31, 0, 0xffff);
    assert!(c.status.is_success(), "{:?}", c.status);
    let (c, id) = h.identify(1, 0);
    assert!(c.status.is_success());
    assert_eq!(id[111], 2, "CNTRLTYPE discovery");
    let cid = h.cid();
    let sqe = Sqe::get_log_page(
        cid,
        Nsid(0),
        0x70,
        4096,
        0,
        SglDescriptor::tcp_transport(4096),
    )
    .unwrap();
    let (c, log) = h.cmd(sqe, &[], false);
    assert!(c.status.is_success(), "{:?}", c.status);
    assert_eq!(
        u64::from_le_bytes(log[8..16].try_into().unwrap()),
        1,
        "one record"
    );
    let e = &log[1024..2048];
    assert_eq!(e[0], 3, "trtype tcp");
    assert_eq!(e[2], 2, "subtype nvm");
    let port = t.addr.port().to_string();
    assert_eq!(&e[32..32 + port.len()], port.as_bytes());
    assert_eq!(&e[256..256 + NQN.len()], NQN.as_bytes());
    assert_eq!(&e[512..521], b"127.0.0.1");
    // Discovery controllers have no I/O queues.
    let mut io = t.host();
    io.icreq(false, false);
    let c = io.connect(nvme_proto::fabrics::DISCOVERY_NQN, 1, 31, 0, c.dw0 as u16);
    assert!(c.status.same_code(Status::CONNECT_INVALID_PARAMETERS));
}

#[test]
fn connect_errors() {
    let t = TestTarget::start_with(|c| {
        c.subsystems[0].allowed_hosts = vec![HOSTNQN.to_string()];
    });
    // Wrong subsystem NQN: Invalid Parameters, offset of SUBNQN in the data.
    let mut h = t.host();
    h.icreq(false, false);
    let c = h.connect("nqn.2026-11.io.ringside:nope", 0, 31, 0, 0xffff);
    assert!(
        c.status.same_code(Status::CONNECT_INVALID_PARAMETERS),
        "{:?}",
        c.status
    );
    assert_eq!(c.dw0, (1 << 16) | 256, "IATTR=data, IPO=256");
    // Host not on the allow list.
    let c = h.connect_as(NQN, "nqn.2014-08.org.nvmexpress:uuid:bad", 0, 31, 0, 0xffff);
    assert!(
        c.status.same_code(Status::CONNECT_INVALID_HOST),
        "{:?}",
        c.status
    );
    // Queue too large.
    let c = h.connect(NQN, 0, 4000, 0, 0xffff);
    assert!(c.status.same_code(Status::CONNECT_INVALID_PARAMETERS));
    assert_eq!(c.dw0, 44, "IPO = SQSIZE offset in the SQE");
    // I/O queue for a controller that does not exist.
    let c = h.connect(NQN, 1, 31, 0, 0x4242);
    assert!(c.status.same_code(Status::CONNECT_INVALID_PARAMETERS));
    assert_eq!(c.dw0, (1 << 16) | 16);
    // A real admin connection, then an I/O qid beyond what was granted.
    let c = h.connect(NQN, 0, 31, 0, 0xffff);
    assert!(c.status.is_success());
    let cntlid = c.dw0 as u16;
    let cid = h.cid();
    let (c, _) = h.cmd(Sqe::set_number_of_queues(cid, 2, 2), &[], false);
    assert!(c.status.is_success());
    let mut io = t.host();
    io.icreq(false, false);
    let c = io.connect(NQN, 3, 31, 0, cntlid);
    assert!(
        c.status.same_code(Status::CONNECT_INVALID_PARAMETERS),
        "{:?}",
        c.status
    );
    assert_eq!(c.dw0, 42, "IPO = QID offset");
    // A second Connect on a connected queue is a sequence error.
    let c = h.connect(NQN, 0, 31, 0, 0xffff);
    assert!(c.status.same_code(Status::COMMAND_SEQUENCE_ERROR));
    // And the same qid twice.
    let c = io.connect(NQN, 2, 31, 0, cntlid);
    assert!(c.status.is_success());
    let mut io2 = t.host();
    io2.icreq(false, false);
    let c = io2.connect(NQN, 2, 31, 0, cntlid);
    assert!(c.status.same_code(Status::CONNECT_INVALID_PARAMETERS));
}

#[test]
fn commands_before_connect_are_refused() {
    let t = TestTarget::start();
    let mut h = t.host();
    h.icreq(false, false);
    let (c, _) = h.identify(1, 0);
    assert!(
        c.status.same_code(Status::COMMAND_SEQUENCE_ERROR),
        "{:?}",
        c.status
    );
}

#[test]
fn keep_alive_expiry_tears_the_controller_down() {
    let t = TestTarget::start();
    let mut admin = t.host();
    admin.icreq(false, false);
    let c = admin.connect(NQN, 0, 31, 300, 0xffff);
    assert!(c.status.is_success());
    let cntlid = c.dw0 as u16;
    let mut io = t.host();
    io.icreq(false, false);
    assert!(io.connect(NQN, 1, 31, 0, cntlid).status.is_success());
    // No keep-alive: the target closes the admin queue, then the I/O queue.
    admin.expect_closed();
    io.expect_closed();
    let mut again = t.host();
    again.icreq(false, false);
    let c = again.connect(NQN, 1, 31, 0, cntlid);
    assert!(
        c.status.same_code(Status::CONNECT_INVALID_PARAMETERS),
        "controller is gone"
    );
}

#[test]
fn aer_is_held_and_limited() {
    let t = TestTarget::start();
    let (mut admin, _io) = t.io_pair(false, false);
    for _ in 0..4 {
        let cid = admin.cid();
        admin.capsule(&Sqe::async_event_request(cid), &[]);
    }
    let cid = admin.cid();
    let (c, _) = admin.cmd(Sqe::async_event_request(cid), &[], false);
    assert!(
        c.status
            .same_code(Status::ASYNC_EVENT_REQUEST_LIMIT_EXCEEDED),
        "{:?}",
        c.status
    );
    let cid = admin.cid();
    let (c, _) = admin.cmd(Sqe::abort(cid, 1, nvme_proto::nvme::Cid(9)), &[], false);
    assert!(c.status.is_success());
    assert_eq!(c.dw0 & 1, 1, "abort reports not aborted");
}

#[test]
fn shutdown_notification_completes() {
    let t = TestTarget::start();
    let (mut admin, _io) = t.io_pair(false, false);
    let cc = nvme_proto::fabrics::Cc {
        en: true,
        css: 0,
        mps: 0,
        ams: 0,
        shn: nvme_proto::fabrics::shn::NORMAL,
        iosqes: 6,
        iocqes: 4,
    };
    assert!(admin
        .prop_set(prop::CC, u64::from(cc.to_u32()))
        .status
        .is_success());
    let csts = admin.prop_get(prop::CSTS, PropertySize::Four).dw0;
    assert_eq!((csts >> 2) & 3, 2, "SHST complete");
}

/// An admin queue and a 32-entry I/O queue on `t`, the I/O queue's Connect with SQ flow control
/// disabled or not; returns the I/O queue's host (the admin one kept alive beside it) and the
/// Connect's completion.
fn io_queue_with_flow_control(t: &TestTarget, disable_flow_control: bool) -> (Host, Host, Cqe) {
    let mut admin = t.host();
    admin.icreq(false, false);
    let c = admin.connect(NQN, 0, 31, 0, 0xffff);
    let mut io = t.host();
    if disable_flow_control {
        io.cattr = nvme_proto::fabrics::cattr::DISABLE_SQ_FLOW_CONTROL;
    }
    io.icreq(false, false);
    let connected = io.connect(NQN, 1, 31, 0, c.dw0 as u16);
    (admin, io, connected)
}

#[test]
fn reads_end_with_c2h_success_when_sq_flow_control_is_off() {
    let t = TestTarget::start();
    let (_admin, mut io, c) = io_queue_with_flow_control(&t, true);
    assert!(c.status.is_success());
    let d = pattern(40960, 9);
    assert!(io.write(64, &d, false).status.is_success());
    let cid = io.cid();
    let sqe = Sqe::read(cid, Nsid(1), 64, 80, SglDescriptor::tcp_transport(40960)).unwrap();
    io.capsule(&sqe, &[]);
    let mut got = Vec::new();
    loop {
        match io.recv_pdu() {
            (nvme_proto::tcp::PduHeader::C2HData(h), data) => {
                got.extend_from_slice(&data);
                if h.last {
                    assert!(h.success, "last C2HData carries SUCCESS");
                    break;
                }
                assert!(!h.success);
            }
            (h, _) => panic!("expected only C2HData, got {h:?}"),
        }
    }
    assert_eq!(got, d);
    // The next command's completion is the next PDU: no CapsuleResp was owed for the read.
    let cid = io.cid();
    let (c, _) = io.cmd(Sqe::flush(cid, Nsid(1)), &[], false);
    assert!(c.status.is_success());
}

/// With the default `always`, reads end with SUCCESS; a host that kept SQ flow control on still
/// gets a CapsuleResp, carrying the true SQ head, at least once per quarter of its SQ.
#[rstest]
#[case::flow_control_on(false, 8)]
#[case::flow_control_off(true, 41)]
fn sq_head_is_still_reported_when_reads_end_with_success(
    #[case] disable_flow_control: bool,
    #[case] longest_run_allowed: usize,
) {
    let t = TestTarget::start();
    // 32 entries: a quarter is 8 commands.
    let (_admin, mut io, connected) = io_queue_with_flow_control(&t, disable_flow_control);
    assert!(connected.status.is_success());
    // A Connect that disabled SQ flow control is answered with SQHD 0xFFFF (the controller
    // agreed); otherwise with the queue's head.
    assert_eq!(
        connected.sqhd == 0xFFFF,
        disable_flow_control,
        "{connected:?}"
    );
    let d = pattern(4096, 5);
    assert!(io.write(8, &d, false).status.is_success());
    let (mut run, mut longest, mut flagged) = (0usize, 0usize, 0usize);
    let mut reports: Vec<(u16, u16)> = Vec::new(); // (reads sent, sqhd)
    for k in 1..=40u16 {
        let cid = io.cid();
        let sqe = Sqe::read(cid, Nsid(1), 8, 8, SglDescriptor::tcp_transport(4096)).unwrap();
        io.capsule(&sqe, &[]);
        let flag = match io.recv_pdu() {
            (nvme_proto::tcp::PduHeader::C2HData(h), data) => {
                assert!(h.last);
                assert_eq!(data, d);
                h.success
            }
            (h, _) => panic!("expected C2HData, got {h:?}"),
        };
        if flag {
            flagged += 1;
            run += 1;
            longest = longest.max(run);
            continue;
        }
        match io.recv_pdu() {
            (nvme_proto::tcp::PduHeader::CapsuleResp(c), _) => {
                assert_eq!(c.cid, cid);
                assert!(c.status.is_success());
                reports.push((k, c.sqhd));
                run = 0;
            }
            (h, _) => panic!("expected the read's CapsuleResp, got {h:?}"),
        }
    }
    assert!(
        flagged >= 30,
        "most reads end with SUCCESS ({flagged} of 40)"
    );
    assert!(
        longest < longest_run_allowed,
        "{longest} reads in a row without the SQ head (reports at {reports:?})"
    );
    for w in reports.windows(2) {
        let ((k1, h1), (k2, h2)) = (w[0], w[1]);
        assert_eq!(
            (h2 + 32 - h1) % 32,
            (k2 - k1) % 32,
            "SQHD follows the commands consumed"
        );
    }
    // The queue goes on: the next command's completion is the next PDU.
    let cid = io.cid();
    let (c, _) = io.cmd(Sqe::flush(cid, Nsid(1)), &[], false);
    assert!(c.status.is_success());
}

#[rstest]
#[case::auto_with_flow_control(nvmf_target::config::C2hSuccess::Auto, false, false)]
#[case::auto_without_flow_control(nvmf_target::config::C2hSuccess::Auto, true, true)]
#[case::always_with_flow_control(nvmf_target::config::C2hSuccess::Always, false, true)]
#[case::never_without_flow_control(nvmf_target::config::C2hSuccess::Never, true, false)]
fn c2h_success_setting_decides_whether_a_read_gets_a_capsule_resp(
    #[case] mode: nvmf_target::config::C2hSuccess,
    #[case] disable_flow_control: bool,
    #[case] expect_success_flag: bool,
) {
    let t = TestTarget::start_with(|c| c.c2h_success = mode);
    let (_admin, mut io, c) = io_queue_with_flow_control(&t, disable_flow_control);
    assert!(c.status.is_success());
    let d = pattern(8192, 21);
    assert!(io.write(16, &d, false).status.is_success());
    let cid = io.cid();
    let sqe = Sqe::read(cid, Nsid(1), 16, 16, SglDescriptor::tcp_transport(8192)).unwrap();
    io.capsule(&sqe, &[]);
    let mut got = Vec::new();
    let flag = loop {
        match io.recv_pdu() {
            (nvme_proto::tcp::PduHeader::C2HData(h), data) => {
                got.extend_from_slice(&data);
                if h.last {
                    break h.success;
                }
            }
            (h, _) => panic!("expected C2HData, got {h:?}"),
        }
    };
    assert_eq!(got, d);
    assert_eq!(flag, expect_success_flag, "{mode:?}");
    if !flag {
        match io.recv_pdu() {
            (nvme_proto::tcp::PduHeader::CapsuleResp(c), _) => {
                assert_eq!(c.cid, cid);
                assert!(c.status.is_success());
            }
            (h, _) => panic!("expected the read's CapsuleResp, got {h:?}"),
        }
    }
    // The queue goes on: the next command's completion is the next PDU.
    let cid = io.cid();
    let (c, _) = io.cmd(Sqe::flush(cid, Nsid(1)), &[], false);
    assert!(c.status.is_success());
}

#[rstest]
#[case::digests(true)]
// Without a data digest a read is sent straight from the malloc namespace's memory.
#[case::no_digests_in_place(false)]
fn pipelined_large_reads_survive_a_slow_reader(#[case] digests: bool) {
    // 32 x 128 KiB reads queued while the host does not read: the target's socket buffer fills,
    // writes go partial, and every byte must still arrive in order and intact.
    let t = TestTarget::start_with(|c| {
        c.limits.max_c2h_data = nvmf_target::config::ByteSize(128 * 1024);
    });
    let (_a, mut io) = t.io_pair(digests, digests);
    let chunk = 128 * 1024;
    let data = pattern(32 * chunk, 77);
    for i in 0..32 {
        assert!(io
            .write(
                (i * chunk / 512) as u64,
                &data[i * chunk..(i + 1) * chunk],
                false
            )
            .status
            .is_success());
    }
    let mut cids = Vec::new();
    for i in 0..32 {
        let cid = io.cid();
        cids.push(cid);
        let sqe = Sqe::read(
            cid,
            Nsid(1),
            (i * chunk / 512) as u64,
            (chunk / 512) as u32,
            SglDescriptor::tcp_transport(chunk as u32),
        )
        .unwrap();
        io.capsule(&sqe, &[]);
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut got: Vec<Vec<u8>> = vec![Vec::new(); 32];
    let mut done = 0;
    while done < 32 {
        match io.recv_pdu() {
            (nvme_proto::tcp::PduHeader::C2HData(h), d) => {
                let i = cids.iter().position(|c| *c == h.cccid).expect("known cid");
                assert_eq!(h.datao as usize, got[i].len());
                got[i].extend_from_slice(&d);
                // A read ends with SUCCESS on its last C2HData or with a CapsuleResp.
                done += usize::from(h.last && h.success);
            }
            (nvme_proto::tcp::PduHeader::CapsuleResp(c), _) => {
                assert!(c.status.is_success());
                done += 1;
            }
            (h, _) => panic!("{h:?}"),
        }
    }
    for (i, g) in got.iter().enumerate() {
        assert!(g == &data[i * chunk..(i + 1) * chunk], "read {i} intact");
    }
}

#[rstest]
#[case::epoll(nvmf_target::config::SocketPoll::Epoll)]
#[case::recv(nvmf_target::config::SocketPoll::Recv)]
#[case::auto(nvmf_target::config::SocketPoll::Auto)]
fn io_under_each_socket_poll_mode_with_pure_polling(#[case] mode: nvmf_target::config::SocketPoll) {
    let t = TestTarget::start_with(|c| {
        c.socket_poll = mode;
        c.idle = nvmf_target::config::IdlePolicy::Poll;
    });
    // More connections than the auto threshold, all served.
    let pairs: Vec<_> = (0..5).map(|_| t.io_pair(false, false)).collect();
    for (i, (_a, mut io)) in pairs.into_iter().enumerate() {
        let d = pattern(16384, i as u8);
        assert!(io.write(64 * i as u64, &d, false).status.is_success());
        let (c, r) = io.read(64 * i as u64, 16384);
        assert!(c.status.is_success());
        assert_eq!(r, d, "connection {i}");
    }
}

#[rstest]
#[case::round_robin(nvmf_target::config::Placement::RoundRobin)]
#[case::least_loaded(nvmf_target::config::Placement::LeastLoaded)]
fn association_spread_over_two_reactors(#[case] placement: nvmf_target::config::Placement) {
    let cores = nvmf_target::config::online_cores();
    if cores.len() < 2 {
        eprintln!("skipping: needs two cores, this process may use {cores:?}");
        return;
    }
    let t = TestTarget::start_with(|c| {
        c.cores = vec![
            nvmf_target::config::CoreId(cores[0]),
            nvmf_target::config::CoreId(cores[1]),
        ];
        c.placement = placement;
    });
    let mut admin = t.host();
    admin.icreq(false, false);
    let c = admin.connect(NQN, 0, 31, 0, 0xffff);
    assert!(c.status.is_success());
    let cntlid = c.dw0 as u16;
    let mut ios: Vec<Host> = (1..=3)
        .map(|qid| {
            let mut h = t.host();
            h.icreq(false, false);
            assert!(
                h.connect(NQN, qid, 63, 0, cntlid).status.is_success(),
                "qid {qid}"
            );
            h
        })
        .collect();
    for (i, io) in ios.iter_mut().enumerate() {
        let d = pattern(8192, i as u8);
        assert!(io.write(16 * i as u64, &d, true).status.is_success());
        assert_eq!(io.read(16 * i as u64, 8192).1, d);
    }
    let stats = t.target.as_ref().unwrap().shared().stats_json();
    let per: Vec<u64> = stats["reactors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["connections"].as_u64().unwrap())
        .collect();
    assert_eq!(per.iter().sum::<u64>(), 4);
    assert!(
        per.iter().all(|&n| n == 2),
        "connections spread 2/2: {per:?}"
    );
    // Closing the admin queue tears the association down on both reactors.
    drop(admin);
    for io in ios.iter_mut() {
        io.expect_closed();
    }
}
