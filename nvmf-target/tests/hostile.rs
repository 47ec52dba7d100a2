//! Hostile input: every malformed PDU is answered with a C2HTermReq and the close of *that*
//! connection only, every bad command with an NVMe status; another association keeps being
//! served throughout and the target is still serving afterwards (no reactor died).

mod common;

use common::*;
use nvme_proto::nvme::{Nsid, Sqe, Status};
use nvme_proto::sgl::SglDescriptor;
use nvme_proto::tcp::{self as ptcp, Fes, PduHeader};

fn fes(t: &nvme_proto::tcp::TermReq) -> Option<Fes> {
    Fes::from_u16(t.fes)
}

/// A connection that has done ICReq and an admin Connect.
fn connected(t: &TestTarget, hd: bool, dd: bool) -> Host {
    let mut h = t.host();
    h.icreq(hd, dd);
    assert!(h.connect(NQN, 0, 31, 0, 0xffff).status.is_success());
    h
}

/// Runs `hostile` on a fresh connection while a bystander association does I/O before and
/// after; checks the bystander is unaffected and the target still accepts new work.
fn with_bystander(t: &TestTarget, hostile: impl FnOnce(&TestTarget)) {
    let (_a, mut io) = t.io_pair(false, false);
    let d = pattern(4096, 3);
    assert!(io.write(100, &d, true).status.is_success());
    hostile(t);
    let (c, r) = io.read(100, 4096);
    assert!(c.status.is_success(), "bystander read after hostile input");
    assert_eq!(r, d, "bystander data intact");
    assert_still_serving(t);
}

#[test]
fn wrong_hlen_gets_term_req() {
    let t = TestTarget::start();
    with_bystander(&t, |t| {
        let mut h = connected(t, false, false);
        let mut b = [0u8; 128];
        let sqe = Sqe::flush(h.cid(), Nsid(1));
        let n = ptcp::encode_capsule_cmd(&sqe, &[], &h.cfg, &mut b).unwrap();
        b[2] = 60; // hlen of a CapsuleCmd is 72
        h.send(&b[..n]);
        let tr = h.expect_term_req();
        assert_eq!(fes(&tr), Some(Fes::InvalidHeaderField));
        assert_eq!(tr.fei, 2, "FEI points at hlen");
    });
}

#[test]
fn plen_shorter_than_header_gets_term_req() {
    let t = TestTarget::start();
    with_bystander(&t, |t| {
        let mut h = connected(t, false, false);
        let mut b = [0u8; 128];
        let sqe = Sqe::flush(h.cid(), Nsid(1));
        let n = ptcp::encode_capsule_cmd(&sqe, &[], &h.cfg, &mut b).unwrap();
        b[4..8].copy_from_slice(&40u32.to_le_bytes());
        h.send(&b[..n]);
        assert_eq!(fes(&h.expect_term_req()), Some(Fes::InvalidHeaderField));
    });
}

#[test]
fn unknown_pdu_type_gets_term_req() {
    let t = TestTarget::start();
    with_bystander(&t, |t| {
        let mut h = t.host();
        h.icreq(false, false);
        let mut b = [0u8; 24];
        b[0] = 0x0b;
        b[2] = 24;
        b[4..8].copy_from_slice(&24u32.to_le_bytes());
        h.send(&b);
        let tr = h.expect_term_req();
        assert_eq!(fes(&tr), Some(Fes::InvalidHeaderField));
        assert_eq!(tr.fei, 0);
    });
}

#[test]
fn capsule_before_icreq_gets_term_req() {
    let t = TestTarget::start();
    with_bystander(&t, |t| {
        let mut h = t.host();
        let mut b = [0u8; 128];
        let sqe = Sqe::flush(h.cid(), Nsid(1));
        let n = ptcp::encode_capsule_cmd(&sqe, &[], &h.cfg, &mut b).unwrap();
        h.send(&b[..n]);
        assert_eq!(fes(&h.expect_term_req()), Some(Fes::PduSequenceError));
    });
}

#[test]
fn bad_header_digest_gets_term_req() {
    let t = TestTarget::start();
    with_bystander(&t, |t| {
        let mut h = connected(t, true, false);
        let mut b = [0u8; 128];
        let sqe = Sqe::keep_alive(h.cid());
        let n = ptcp::encode_capsule_cmd(&sqe, &[], &h.cfg, &mut b).unwrap();
        b[72] ^= 0xff; // corrupt the header digest
        h.send(&b[..n]);
        assert_eq!(fes(&h.expect_term_req()), Some(Fes::HeaderDigestError));
    });
}

#[test]
fn bad_data_digest_fails_only_the_command() {
    let t = TestTarget::start();
    with_bystander(&t, |t| {
        let (_a, mut io) = t.io_pair(true, true);
        let d = pattern(4096, 8);
        let cid = io.cid();
        let sqe = Sqe::write(cid, Nsid(1), 200, 8, SglDescriptor::in_capsule(0, 4096)).unwrap();
        let mut b = vec![0u8; 5000];
        let n = ptcp::encode_capsule_cmd(&sqe, &d, &io.cfg, &mut b).unwrap();
        b[n - 1] ^= 0x55; // corrupt the data digest
        io.send(&b[..n]);
        match io.recv_pdu() {
            (PduHeader::CapsuleResp(c), _) => {
                assert_eq!(c.cid, cid);
                assert!(
                    c.status.same_code(Status::TRANSIENT_TRANSPORT_ERROR),
                    "{:?}",
                    c.status
                );
            }
            (h, _) => panic!("expected a failed completion, got {h:?}"),
        }
        // The connection survives and the write did not land.
        let (c, r) = io.read(200, 4096);
        assert!(c.status.is_success());
        assert_ne!(r, d, "corrupted write must not be applied");
        // Same for H2CData.
        let cid = io.cid();
        let sqe = Sqe::write(cid, Nsid(1), 200, 8, SglDescriptor::tcp_transport(4096)).unwrap();
        io.capsule(&sqe, &[]);
        let r2t = match io.recv_pdu() {
            (PduHeader::R2T(r), _) => r,
            (h, _) => panic!("{h:?}"),
        };
        let h2c = ptcp::H2CData {
            cccid: cid,
            ttag: r2t.ttag,
            datao: 0,
            datal: 4096,
            last: true,
        };
        let n = ptcp::encode_h2c_data(&h2c, &d, &io.cfg, &mut b).unwrap();
        b[n - 2] ^= 1;
        io.send(&b[..n]);
        match io.recv_pdu() {
            (PduHeader::CapsuleResp(c), _) => {
                assert!(
                    c.status.same_code(Status::TRANSIENT_TRANSPORT_ERROR),
                    "{:?}",
                    c.status
                )
            }
            (h, _) => panic!("{h:?}"),
        }
        assert!(
            io.write(200, &d, true).status.is_success(),
            "connection still works"
        );
    });
}

#[test]
fn in_capsule_data_above_the_limit_gets_term_req() {
    let t = TestTarget::start();
    with_bystander(&t, |t| {
        let (_a, mut io) = t.io_pair(false, false);
        // I/O queues accept 8 KiB in-capsule; send 16 KiB.
        let d = pattern(16384, 1);
        let cid = io.cid();
        let sqe = Sqe::write(cid, Nsid(1), 0, 32, SglDescriptor::in_capsule(0, 16384)).unwrap();
        io.capsule(&sqe, &d);
        assert_eq!(
            fes(&io.expect_term_req()),
            Some(Fes::DataTransferLimitExceeded)
        );
    });
}

#[test]
fn h2c_above_maxh2cdata_gets_term_req() {
    let t = TestTarget::start();
    with_bystander(&t, |t| {
        let (_a, mut io) = t.io_pair(false, false);
        let d = pattern(32768, 1);
        let cid = io.cid();
        let sqe = Sqe::write(cid, Nsid(1), 0, 64, SglDescriptor::tcp_transport(32768)).unwrap();
        io.capsule(&sqe, &[]);
        let r2t = match io.recv_pdu() {
            (PduHeader::R2T(r), _) => r,
            (h, _) => panic!("{h:?}"),
        };
        let h2c = ptcp::H2CData {
            cccid: cid,
            ttag: r2t.ttag,
            datao: 0,
            datal: 32768,
            last: true,
        };
        let mut b = vec![0u8; 33000];
        let n = ptcp::encode_h2c_data(&h2c, &d, &io.cfg, &mut b).unwrap();
        io.send(&b[..n]);
        assert_eq!(
            fes(&io.expect_term_req()),
            Some(Fes::DataTransferLimitExceeded)
        );
    });
}

#[test]
fn h2c_with_unknown_ttag_or_offset_gets_term_req() {
    let t = TestTarget::start();
    with_bystander(&t, |t| {
        let (_a, mut io) = t.io_pair(false, false);
        let d = pattern(4096, 1);
        let h2c = ptcp::H2CData {
            cccid: io.cid(),
            ttag: 999,
            datao: 0,
            datal: 4096,
            last: true,
        };
        let mut b = vec![0u8; 5000];
        let n = ptcp::encode_h2c_data(&h2c, &d, &io.cfg, &mut b).unwrap();
        io.send(&b[..n]);
        assert_eq!(fes(&io.expect_term_req()), Some(Fes::InvalidHeaderField));

        let (_a, mut io) = t.io_pair(false, false);
        let cid = io.cid();
        let sqe = Sqe::write(cid, Nsid(1), 0, 8, SglDescriptor::tcp_transport(4096)).unwrap();
        io.capsule(&sqe, &[]);
        let r2t = match io.recv_pdu() {
            (PduHeader::R2T(r), _) => r,
            (h, _) => panic!("{h:?}"),
        };
        let h2c = ptcp::H2CData {
            cccid: cid,
            ttag: r2t.ttag,
            datao: 512,
            datal: 4096,
            last: true,
        };
        let n = ptcp::encode_h2c_data(&h2c, &d, &io.cfg, &mut b).unwrap();
        io.send(&b[..n]);
        assert_eq!(
            fes(&io.expect_term_req()),
            Some(Fes::DataTransferOutOfRange)
        );
    });
}

#[test]
fn unknown_opcodes_get_invalid_opcode() {
    let t = TestTarget::start();
    with_bystander(&t, |t| {
        let (mut admin, mut io) = t.io_pair(false, false);
        for op in [0x03u8, 0x04, 0x0b, 0x42, 0xff] {
            let cid = io.cid();
            let mut s = Sqe::flush(cid, Nsid(1));
            s.opcode = op;
            let (c, _) = io.cmd(s, &[], false);
            assert!(
                c.status.same_code(Status::INVALID_OPCODE),
                "io opcode {op:#x}: {:?}",
                c.status
            );
        }
        for op in [0x00u8, 0x01, 0x80, 0xc0, 0xff] {
            let cid = admin.cid();
            let mut s = Sqe::keep_alive(cid);
            s.opcode = op;
            let (c, _) = admin.cmd(s, &[], false);
            assert!(
                c.status.same_code(Status::INVALID_OPCODE),
                "admin opcode {op:#x}: {:?}",
                c.status
            );
        }
        // Unknown fabrics command type.
        let cid = admin.cid();
        let mut s = Sqe::new(0x7f, cid);
        s.nsid = Nsid(0x33);
        assert!(admin
            .cmd(s, &[], false)
            .0
            .status
            .same_code(Status::INVALID_OPCODE));
    });
}

#[test]
fn abrupt_disconnect_mid_transfer() {
    let t = TestTarget::start();
    with_bystander(&t, |t| {
        // Half an H2CData PDU, then gone.
        let (a, mut io) = t.io_pair(false, false);
        let cid = io.cid();
        let sqe = Sqe::write(cid, Nsid(1), 0, 32, SglDescriptor::tcp_transport(16384)).unwrap();
        io.capsule(&sqe, &[]);
        let r2t = match io.recv_pdu() {
            (PduHeader::R2T(r), _) => r,
            (h, _) => panic!("{h:?}"),
        };
        let d = pattern(16384, 4);
        let h2c = ptcp::H2CData {
            cccid: cid,
            ttag: r2t.ttag,
            datao: 0,
            datal: 16384,
            last: true,
        };
        let mut b = vec![0u8; 17000];
        let n = ptcp::encode_h2c_data(&h2c, &d, &io.cfg, &mut b).unwrap();
        io.send(&b[..n / 2]);
        drop(io);
        drop(a);
        // Half a capsule header, then gone.
        let mut h = t.host();
        h.icreq(false, false);
        h.send(&[4, 0, 72, 0, 72, 0]);
        drop(h);
        // Reads queued and the socket closed before the data is sent.
        let (_a, mut io) = t.io_pair(false, false);
        for _ in 0..16 {
            let cid = io.cid();
            let sqe = Sqe::read(cid, Nsid(1), 0, 128, SglDescriptor::tcp_transport(65536)).unwrap();
            io.capsule(&sqe, &[]);
        }
        drop(io);
    });
}

#[test]
fn queue_overrun_gets_term_req() {
    let t = TestTarget::start();
    with_bystander(&t, |t| {
        let (_a, mut io) = {
            let mut admin = t.host();
            admin.icreq(false, false);
            let c = admin.connect(NQN, 0, 31, 0, 0xffff);
            let mut io = t.host();
            io.icreq(false, false);
            assert!(
                io.connect(NQN, 1, 3, 0, c.dw0 as u16).status.is_success(),
                "4-entry queue"
            );
            (admin, io)
        };
        // Five writes waiting for data on a 4-entry queue.
        for _ in 0..5 {
            let cid = io.cid();
            let sqe = Sqe::write(cid, Nsid(1), 0, 8, SglDescriptor::tcp_transport(4096)).unwrap();
            io.capsule(&sqe, &[]);
        }
        for _ in 0..4 {
            assert!(matches!(io.recv_pdu().0, PduHeader::R2T(_)));
        }
        assert_eq!(fes(&io.expect_term_req()), Some(Fes::PduSequenceError));
    });
}

#[test]
fn garbage_stream_never_panics() {
    let t = TestTarget::start();
    with_bystander(&t, |t| {
        let mut seed: u64 = 0x1234_5678;
        for round in 0..40 {
            let mut h = t.host();
            if round % 2 == 0 {
                h.icreq(round % 4 == 0, round % 3 == 0);
            }
            let mut g = vec![0u8; 512];
            for x in g.iter_mut() {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                *x = (seed >> 33) as u8;
            }
            // Make some of them look like capsules so deeper code runs.
            if round % 5 == 0 {
                g[0] = 4;
                g[2] = 72;
                g[3] = 0;
                g[4..8].copy_from_slice(&72u32.to_le_bytes());
                g[1] = 0;
            }
            h.send(&g);
            drop(h);
        }
    });
}

#[test]
fn silent_connections_are_closed_after_the_handshake_timeout() {
    let t = TestTarget::start_with(|c| c.limits.handshake_timeout_ms = 300);
    with_bystander(&t, |t| {
        let mut no_icreq = t.host();
        let mut no_connect = t.host();
        no_connect.icreq(false, false);
        no_icreq.expect_closed();
        no_connect.expect_closed();
    });
}

#[test]
fn icreq_with_unknown_version_gets_term_req() {
    let t = TestTarget::start();
    with_bystander(&t, |t| {
        let mut h = t.host();
        let mut b = [0u8; 128];
        let req = ptcp::IcReq {
            pfv: 0,
            hpda: 0,
            hdgst: false,
            ddgst: false,
            maxr2t: 0,
        };
        let n = ptcp::encode_icreq(&req, &mut b).unwrap();
        b[8] = 1; // PFV 1
        h.send(&b[..n]);
        assert_eq!(fes(&h.expect_term_req()), Some(Fes::UnsupportedParameter));
        // A second ICReq on an established connection is a sequence error.
        let mut h = t.host();
        h.icreq(false, false);
        let n = ptcp::encode_icreq(&req, &mut b).unwrap();
        h.send(&b[..n]);
        assert_eq!(fes(&h.expect_term_req()), Some(Fes::PduSequenceError));
    });
}

#[test]
fn h2c_datal_disagreeing_with_plen_gets_term_req() {
    let t = TestTarget::start();
    with_bystander(&t, |t| {
        let (_a, mut io) = t.io_pair(false, false);
        let cid = io.cid();
        let sqe = Sqe::write(cid, Nsid(1), 0, 8, SglDescriptor::tcp_transport(4096)).unwrap();
        io.capsule(&sqe, &[]);
        let r2t = match io.recv_pdu() {
            (PduHeader::R2T(r), _) => r,
            (h, _) => panic!("{h:?}"),
        };
        let d = pattern(2048, 1);
        let h2c = ptcp::H2CData {
            cccid: cid,
            ttag: r2t.ttag,
            datao: 0,
            datal: 2048,
            last: true,
        };
        let mut b = vec![0u8; 3000];
        let n = ptcp::encode_h2c_data(&h2c, &d, &io.cfg, &mut b).unwrap();
        b[16..20].copy_from_slice(&4096u32.to_le_bytes()); // datal lies
        io.send(&b[..n]);
        assert_eq!(fes(&io.expect_term_req()), Some(Fes::InvalidHeaderField));
    });
}
