//! Property tests: round trips for every codec, "arbitrary bytes never panic" for every decoder
//! (the same decoders the cargo-fuzz targets exercise), and stream reassembly for the NVMe/TCP
//! framer at every split point.

use nvme_proto::fabrics::{
    Cap, Cc, ConnectCmd, ConnectData, ConnectResponse, Csts, Nqn, PropertyGet, PropertySet,
    PropertySize,
};
use nvme_proto::identify::{self, IdentifyController, IdentifyNamespace, NsDescriptor};
use nvme_proto::log::{self, DiscoveryEntry, DiscoveryLog, ErrorLogEntry, GetLogPage, SmartLog};
use nvme_proto::nvme::{Cid, Cqe, Nsid, Sqe, Status};
use nvme_proto::sgl::SglDescriptor;
use nvme_proto::tcp::{self, PduConfig, PduError, PduHeader, Role};
use proptest::prelude::*;

fn cfg_strategy() -> impl Strategy<Value = PduConfig> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        0u8..4,
        0u8..4,
        prop_oneof![Just(4096u32), 1u32..70_000],
        prop_oneof![Just(8192u32), 0u32..70_000],
    )
        .prop_map(|(ctrl, hd, dd, rx, tx, h2c, icd)| PduConfig {
            role: if ctrl { Role::Controller } else { Role::Host },
            hdgst: hd,
            ddgst: dd,
            rx_pda: rx,
            tx_pda: tx,
            max_h2c_data: h2c,
            max_c2h_data: h2c,
            max_in_capsule_data: icd,
        })
}

fn sgl_strategy() -> impl Strategy<Value = SglDescriptor> {
    prop_oneof![
        (any::<u64>(), any::<u32>()).prop_map(|(a, l)| SglDescriptor::in_capsule(a, l)),
        any::<u32>().prop_map(SglDescriptor::tcp_transport),
        (any::<u64>(), 0u32..=0xff_ffff, any::<u32>())
            .prop_map(|(a, l, k)| SglDescriptor::keyed(a, l, k)),
        (any::<u64>(), any::<u32>(), 0u8..16)
            .prop_map(|(addr, len, subtype)| SglDescriptor::DataBlock { addr, len, subtype }),
    ]
}

fn sqe_strategy() -> impl Strategy<Value = Sqe> {
    (
        any::<u8>(),
        any::<u16>(),
        any::<u32>(),
        any::<(u32, u32, u64)>(),
        sgl_strategy(),
        any::<[u32; 6]>(),
        0u8..4,
    )
        .prop_map(|(op, cid, nsid, (c2, c3, mptr), dptr, cdw, fuse)| {
            let mut s = Sqe::new(op, Cid(cid));
            s.flags |= fuse;
            s.nsid = Nsid(nsid);
            s.cdw2 = c2;
            s.cdw3 = c3;
            s.mptr = mptr;
            s.dptr = dptr;
            [s.cdw10, s.cdw11, s.cdw12, s.cdw13, s.cdw14, s.cdw15] = cdw;
            s
        })
}

fn nqn_strategy() -> impl Strategy<Value = Nqn> {
    "nqn\\.[a-z0-9.:-]{1,219}".prop_map(|s| Nqn::new(&s).expect("generated nqn is valid"))
}

/// A PDU the given role can receive, encoded with `cfg`'s sender view.
#[derive(Debug, Clone)]
enum Pdu {
    Cmd(Sqe, Vec<u8>),
    Resp(Cqe),
    H2C(tcp::H2CData, Vec<u8>),
    C2H(tcp::C2HData, Vec<u8>),
    R2T(tcp::R2T),
    Term(tcp::Fes, u32, Vec<u8>),
}

fn pdu_strategy(role: Role, max_data: usize) -> BoxedStrategy<Pdu> {
    let data = proptest::collection::vec(any::<u8>(), 1..=max_data.max(1));
    let opt_data = proptest::collection::vec(any::<u8>(), 0..=max_data);
    let term = (
        1u16..=6,
        any::<u32>(),
        proptest::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(f, fei, d)| {
            Pdu::Term(
                tcp::Fes::from_u16(f).unwrap_or(tcp::Fes::InvalidHeaderField),
                fei,
                d,
            )
        });
    match role {
        Role::Controller => prop_oneof![
            (sqe_strategy(), opt_data).prop_map(|(s, d)| Pdu::Cmd(s, d)),
            (any::<(u16, u16, u32, bool)>(), data).prop_map(|((c, t, o, last), d)| Pdu::H2C(
                tcp::H2CData {
                    cccid: Cid(c),
                    ttag: t,
                    datao: o / 2,
                    datal: d.len() as u32,
                    last
                },
                d
            )),
            term,
        ]
        .boxed(),
        Role::Host => prop_oneof![
            (
                any::<(u32, u32, u16, u16, u16)>(),
                0u16..0x8000,
                any::<bool>()
            )
                .prop_map(|((dw0, dw1, sqhd, sqid, cid), st, phase)| Pdu::Resp(Cqe {
                    dw0,
                    dw1,
                    sqhd,
                    sqid,
                    cid: Cid(cid),
                    status: Status(st),
                    phase
                })),
            (any::<(u16, u32, bool, bool)>(), data).prop_map(
                |((c, o, last, success), d)| Pdu::C2H(
                    tcp::C2HData {
                        cccid: Cid(c),
                        datao: o / 2,
                        datal: d.len() as u32,
                        last,
                        success: success && last
                    },
                    d
                )
            ),
            (any::<(u16, u16, u32)>(), 1u32..).prop_map(|((c, t, o), l)| Pdu::R2T(tcp::R2T {
                cccid: Cid(c),
                ttag: t,
                r2to: o,
                r2tl: l
            })),
            term,
        ]
        .boxed(),
    }
}

fn encode(p: &Pdu, cfg: &PduConfig, out: &mut [u8]) -> usize {
    let sender = match cfg.role {
        Role::Controller => Role::Host,
        Role::Host => Role::Controller,
    };
    let tx = PduConfig {
        role: sender,
        tx_pda: cfg.rx_pda,
        ..*cfg
    };
    let r = match p {
        Pdu::Cmd(s, d) => tcp::encode_capsule_cmd(s, d, &tx, out),
        Pdu::Resp(c) => tcp::encode_capsule_resp(c, cfg.hdgst, out),
        Pdu::H2C(h, d) => tcp::encode_h2c_data(h, d, &tx, out),
        Pdu::C2H(h, d) => tcp::encode_c2h_data(h, d, &tx, out),
        Pdu::R2T(r) => tcp::encode_r2t(r, &tx, out),
        Pdu::Term(f, fei, d) => tcp::encode_term_req(sender, *f, *fei, d, out),
    };
    r.expect("encoding into a large enough buffer succeeds")
}

fn expected(p: &Pdu) -> (PduHeader, Vec<u8>) {
    match p {
        Pdu::Cmd(s, d) => (PduHeader::CapsuleCmd(*s), d.clone()),
        Pdu::Resp(c) => (PduHeader::CapsuleResp(*c), vec![]),
        Pdu::H2C(h, d) => (PduHeader::H2CData(*h), d.clone()),
        Pdu::C2H(h, d) => (PduHeader::C2HData(*h), d.clone()),
        Pdu::R2T(r) => (PduHeader::R2T(*r), vec![]),
        Pdu::Term(f, fei, d) => {
            let t = tcp::TermReq {
                fes: *f as u16,
                fei: *fei,
            };
            let d = d[..d.len().min(128)].to_vec();
            // The receiver of a C2HTermReq is the host; `expected_for` flips it for a controller.
            (PduHeader::C2HTermReq(t), d)
        }
    }
}

fn expected_for(p: &Pdu, role: Role) -> (PduHeader, Vec<u8>) {
    let (h, d) = expected(p);
    match h {
        PduHeader::C2HTermReq(t) if role == Role::Controller => (PduHeader::H2CTermReq(t), d),
        h => (h, d),
    }
}

/// Feed `stream` in the given chunks, parsing as a receiver would.
fn receive(
    stream: &[u8],
    cuts: &[usize],
    cfg: &PduConfig,
) -> Result<Vec<(PduHeader, Vec<u8>)>, PduError> {
    let mut buf: Vec<u8> = Vec::new();
    let mut got = Vec::new();
    let mut start = 0;
    let mut points: Vec<usize> = cuts.iter().copied().filter(|&c| c < stream.len()).collect();
    points.push(stream.len());
    points.sort_unstable();
    for end in points {
        buf.extend_from_slice(&stream[start..end]);
        start = end;
        while let Some(v) = tcp::parse_pdu(&buf, cfg)? {
            assert!(v.len <= buf.len(), "view longer than buffer");
            got.push((v.header, v.data.to_vec()));
            buf.drain(..v.len);
        }
    }
    assert!(buf.is_empty(), "bytes left over after a complete stream");
    Ok(got)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn sqe_typed_round_trip(s in sqe_strategy()) {
        prop_assert_eq!(Sqe::decode(&s.to_bytes()), s);
    }

    #[test]
    fn sqe_bytes_decode_is_canonical(b in any::<[u8; 64]>()) {
        let s = Sqe::decode(&b);
        prop_assert_eq!(Sqe::decode(&s.to_bytes()), s);
        // All command dwords survive untouched.
        prop_assert_eq!(&s.to_bytes()[40..], &b[40..]);
        prop_assert_eq!(&s.to_bytes()[..24], &b[..24]);
    }

    #[test]
    fn cqe_bytes_round_trip_exactly(b in any::<[u8; 16]>()) {
        prop_assert_eq!(Cqe::decode(&b).to_bytes(), b);
    }

    #[test]
    fn sgl_round_trip(d in sgl_strategy(), raw in any::<[u8; 16]>()) {
        prop_assert_eq!(SglDescriptor::decode(&d.to_bytes()), d);
        let x = SglDescriptor::decode(&raw);
        prop_assert_eq!(SglDescriptor::decode(&x.to_bytes()), x);
    }

    #[test]
    fn connect_round_trip(hostid in any::<[u8; 16]>(), cntlid in any::<u16>(), sub in nqn_strategy(), host in nqn_strategy(),
                          f in any::<(u16, u16, u16, u8, u32)>(), cid in any::<u16>(), sgl in sgl_strategy()) {
        let d = ConnectData { hostid, cntlid, subnqn: sub, hostnqn: host };
        prop_assert_eq!(ConnectData::decode(&d.to_bytes()), Ok(d));
        let c = ConnectCmd { cid: Cid(cid), sgl, recfmt: f.0, qid: f.1, sqsize: f.2, cattr: f.3, kato: f.4 };
        prop_assert_eq!(ConnectCmd::from_sqe(&Sqe::decode(&c.to_sqe().to_bytes())), Ok(c));
        let r = ConnectResponse { cntlid: f.1, authreq: f.2 };
        prop_assert_eq!(ConnectResponse::from_dw0(r.to_dw0()), r);
    }

    #[test]
    fn connect_data_arbitrary_bytes(b in proptest::collection::vec(any::<u8>(), 0..1100)) {
        if let Ok(d) = ConnectData::decode(&b) {
            prop_assert!(d.subnqn.as_str().len() <= 223 && d.hostnqn.as_str().len() <= 223);
            prop_assert_eq!(ConnectData::decode(&d.to_bytes()), Ok(d));
        }
    }

    #[test]
    fn property_round_trip(cid in any::<u16>(), off in any::<u32>(), v in any::<u64>(), eight in any::<bool>()) {
        let size = if eight { PropertySize::Eight } else { PropertySize::Four };
        let value = if eight { v } else { v & 0xffff_ffff };
        let s = PropertySet { cid: Cid(cid), size, offset: off, value };
        prop_assert_eq!(PropertySet::from_sqe(&Sqe::decode(&s.to_sqe().to_bytes())), Ok(s));
        let g = PropertyGet { cid: Cid(cid), size, offset: off };
        prop_assert_eq!(PropertyGet::from_sqe(&Sqe::decode(&g.to_sqe().to_bytes())), Ok(g));
    }

    #[test]
    fn property_registers_canonical(v in any::<u64>(), w in any::<u32>()) {
        let cap = Cap::from_u64(v);
        prop_assert_eq!(Cap::from_u64(cap.to_u64()), cap);
        let cc = Cc::from_u32(w);
        prop_assert_eq!(Cc::from_u32(cc.to_u32()), cc);
        let cs = Csts::from_u32(w);
        prop_assert_eq!(Csts::from_u32(cs.to_u32()), cs);
    }

    #[test]
    fn get_log_page_round_trip(cdw in any::<[u32; 5]>()) {
        let mut s = Sqe::new(2, Cid(1));
        [s.cdw10, s.cdw11, s.cdw12, s.cdw13, s.cdw14] = cdw;
        let g = GetLogPage::from_sqe(&s);
        prop_assert_eq!(GetLogPage::from_sqe(&g.to_sqe(Cid(1), Nsid(0), SglDescriptor::default())), g);
        prop_assert!(g.len_bytes() >= 4);
    }

    #[test]
    fn log_entries_canonical(e in any::<[u8; 64]>(), s in proptest::collection::vec(any::<u8>(), 512)) {
        let err = ErrorLogEntry::decode(&e).expect("64 bytes");
        let mut b = [0u8; 64];
        err.encode(&mut b).expect("encode");
        prop_assert_eq!(ErrorLogEntry::decode(&b), Ok(err));
        let sm = SmartLog::decode(&s).expect("512 bytes");
        let mut b = [0u8; 512];
        sm.encode(&mut b).expect("encode");
        prop_assert_eq!(SmartLog::decode(&b), Ok(sm));
    }

    #[test]
    fn discovery_round_trip(entries in proptest::collection::vec(
        (nqn_strategy(), "[0-9a-f:.]{1,64}", any::<u16>(), any::<u16>(), 1u8..4, any::<u8>()), 0..4), genctr in any::<u64>()) {
        let log = DiscoveryLog {
            genctr,
            recfmt: 0,
            entries: entries.into_iter().map(|(n, a, port, pid, st, sec)| {
                let mut e = DiscoveryEntry::tcp(n, st, &a, port, pid);
                e.tsas[0] = sec;
                e
            }).collect(),
        };
        prop_assert_eq!(DiscoveryLog::decode(&log.to_vec().expect("encode")), Ok(log));
    }

    #[test]
    fn page_decoders_arbitrary_bytes(b in proptest::collection::vec(any::<u8>(), 0..4200), numrec in 0u64..6) {
        if let Ok(c) = IdentifyController::decode(&b) {
            let v = c.to_vec().expect("decoded controller re-encodes");
            prop_assert_eq!(IdentifyController::decode(&v), Ok(c));
        }
        if let Ok(n) = IdentifyNamespace::decode(&b) {
            let v = n.to_vec().expect("decoded namespace re-encodes");
            let _ = n.block_size();
            prop_assert_eq!(IdentifyNamespace::decode(&v), Ok(n));
        }
        if let Ok(list) = NsDescriptor::decode_list(&b) {
            let mut v = vec![0u8; 4096];
            if NsDescriptor::encode_list(&list, &mut v).is_ok() {
                prop_assert_eq!(NsDescriptor::decode_list(&v), Ok(list));
            }
        }
        let _ = identify::decode_ns_list(&b);
        if let Ok(r) = nvme_proto::rdma::CmRequest::decode(&b) {
            let mut v = [0u8; 32];
            r.encode(&mut v).expect("32 bytes");
            prop_assert_eq!(nvme_proto::rdma::CmRequest::decode(&v).map(|x| (x.qid, x.hsqsize)), Ok((r.qid, r.hsqsize)));
        }
        let _ = nvme_proto::rdma::CmAccept::decode(&b);
        let _ = nvme_proto::rdma::CmReject::decode(&b);
        let _ = log::decode_changed_ns_list(&b);
        let mut d = b.clone();
        if d.len() >= 16 {
            d[8..16].copy_from_slice(&numrec.to_le_bytes());
        }
        if let Ok(l) = DiscoveryLog::decode(&d) {
            prop_assert_eq!(l.entries.len() as u64, numrec);
        }
        let _ = DiscoveryLog::decode(&b);
    }

    #[test]
    fn parse_pdu_arbitrary_bytes(b in proptest::collection::vec(any::<u8>(), 0..600), cfg in cfg_strategy()) {
        match tcp::parse_pdu(&b, &cfg) {
            Ok(Some(v)) => {
                prop_assert!(v.len <= b.len());
                prop_assert!(v.len >= 8);
                let start = (v.data.as_ptr() as usize).wrapping_sub(b.as_ptr() as usize);
                prop_assert!(start <= v.len && start + v.data.len() <= v.len, "data outside the pdu");
            }
            Ok(None) => {}
            Err(e) => {
                let mut out = [0u8; 256];
                let n = tcp::encode_term_req_for(&e, cfg.role, &b, &mut out).expect("term req fits 256 bytes");
                prop_assert!(n == 0 || (24..=152).contains(&n));
            }
        }
    }

    #[test]
    fn parse_pdu_sane_header_arbitrary_body(ty in prop_oneof![0u8..8, Just(9u8)], fl in 0u8..16, pdo in any::<u8>(),
                                           plen in 0u32..400, body in proptest::collection::vec(any::<u8>(), 0..400),
                                           cfg in cfg_strategy()) {
        // Headers with plausible hlen so that the deeper checks are reached.
        let hlen = tcp::PduType::from_u8(ty).map_or(24, |t| t.hlen() as u8);
        let mut b = vec![ty, fl, hlen, pdo];
        b.extend_from_slice(&plen.to_le_bytes());
        b.extend_from_slice(&body);
        if let Ok(Some(v)) = tcp::parse_pdu(&b, &cfg) {
            prop_assert_eq!(v.len, plen as usize);
            prop_assert!(v.len <= b.len());
        }
    }

    #[test]
    fn pdu_round_trip((cfg, p) in cfg_strategy().prop_flat_map(|cfg| {
        let max = (cfg.max_in_capsule_data.min(cfg.max_h2c_data) as usize).min(300);
        (Just(cfg), pdu_strategy(cfg.role, max))
    })) {
        let mut buf = vec![0u8; 2048];
        let n = encode(&p, &cfg, &mut buf);
        match tcp::parse_pdu(&buf[..n], &cfg) {
            Ok(Some(v)) => {
                prop_assert_eq!(v.len, n);
                prop_assert_eq!((v.header, v.data.to_vec()), expected_for(&p, cfg.role));
            }
            // In-capsule data above a tiny configured limit is refused, correctly.
            Err(PduError::Fatal { fes: tcp::Fes::DataTransferLimitExceeded, .. }) => {}
            other => prop_assert!(false, "unexpected {:?} for {:?}", other, p),
        }
        // Every strict prefix asks for more bytes (or is already refused by its common header).
        for cut in 0..n {
            match tcp::parse_pdu(&buf[..cut], &cfg) {
                Ok(None) | Err(PduError::Fatal { fes: tcp::Fes::DataTransferLimitExceeded, .. }) => {}
                other => prop_assert!(false, "prefix {} gave {:?}", cut, other),
            }
            // Once the header is in, the head alone says what the whole PDU will (a receiver may
            // then read the data straight into its place).
            if let Ok(Some(h)) = tcp::parse_pdu_head(&buf[..cut], &cfg) {
                prop_assert_eq!(h.len, n);
                prop_assert!(h.data_start <= h.data_end && h.data_end <= n);
                prop_assert_eq!((h.header, buf[h.data_start..h.data_end].to_vec()), expected_for(&p, cfg.role));
            }
        }
    }

    #[test]
    fn stream_split_at_every_byte(cfg in cfg_strategy(), pdus in (any::<bool>()).prop_flat_map(|c| {
        let role = if c { Role::Controller } else { Role::Host };
        (Just(role), proptest::collection::vec(pdu_strategy(role, 64), 1..5))
    })) {
        let (role, pdus) = pdus;
        let cfg = PduConfig { role, max_h2c_data: 4096, max_c2h_data: 4096, max_in_capsule_data: 4096, ..cfg };
        let mut stream = Vec::new();
        let mut want = Vec::new();
        for p in &pdus {
            let mut buf = vec![0u8; 1024];
            let n = encode(p, &cfg, &mut buf);
            stream.extend_from_slice(&buf[..n]);
            want.push(expected_for(p, role));
        }
        let whole = receive(&stream, &[], &cfg).expect("whole stream parses");
        prop_assert_eq!(&whole, &want);
        for cut in 0..stream.len() {
            prop_assert_eq!(&receive(&stream, &[cut], &cfg).expect("split stream parses"), &want, "cut at {}", cut);
        }
        // And byte by byte.
        let all: Vec<usize> = (1..stream.len()).collect();
        prop_assert_eq!(&receive(&stream, &all, &cfg).expect("byte stream parses"), &want);
    }

    #[test]
    fn corrupted_byte_never_panics((cfg, p) in cfg_strategy().prop_flat_map(|cfg| {
        let cfg = PduConfig { max_h2c_data: 4096, max_c2h_data: 4096, max_in_capsule_data: 4096, ..cfg };
        (Just(cfg), pdu_strategy(cfg.role, 100))
    }), idx in any::<prop::sample::Index>(), x in 1u8..) {
        let mut buf = vec![0u8; 1024];
        let n = encode(&p, &cfg, &mut buf);
        let i = idx.index(n);
        buf[i] ^= x;
        let (want_h, _) = expected_for(&p, cfg.role);
        let hlen = want_h.pdu_type().hlen();
        let digested = cfg.hdgst && want_h.pdu_type().carries_hdgst();
        match tcp::parse_pdu(&buf[..n], &cfg) {
            Ok(Some(v)) => {
                prop_assert!(v.len <= n);
                // Under a header digest, no change to the header or its digest gets through.
                prop_assert!(!(digested && i < hlen + 4), "corrupt header byte {} accepted: {:?}", i, v);
            }
            Ok(None) => {}
            Err(e) => {
                if digested && (8..hlen + 4).contains(&i) {
                    prop_assert_eq!(e.fes(), Some(tcp::Fes::HeaderDigestError), "byte {}", i);
                }
            }
        }
    }

    #[test]
    fn encoders_never_panic_and_respect_buffers(cfg in cfg_strategy(), out_len in 0usize..300, datal in any::<u32>(),
                                               data in proptest::collection::vec(any::<u8>(), 0..200), s in sqe_strategy()) {
        let mut out = vec![0u8; out_len];
        let h2c = tcp::H2CData { cccid: Cid(1), ttag: 2, datao: 3, datal, last: true };
        let c2h = tcp::C2HData { cccid: Cid(1), datao: 3, datal, last: true, success: true };
        let results = [
            tcp::encode_capsule_cmd(&s, &data, &cfg, &mut out).ok(),
            tcp::encode_capsule_resp(&Cqe::new(Cid(1), Status::SUCCESS), cfg.hdgst, &mut out).ok(),
            tcp::encode_h2c_data(&h2c, &data, &cfg, &mut out).ok(),
            tcp::encode_c2h_data(&c2h, &data, &cfg, &mut out).ok(),
            tcp::encode_h2c_data_header(&h2c, &cfg, &mut out).ok().map(|l| l.header_len),
            tcp::encode_c2h_data_header(&c2h, &cfg, &mut out).ok().map(|l| l.header_len),
            tcp::encode_capsule_cmd_header(&s, datal as usize, &cfg, &mut out).ok().map(|l| l.header_len),
            tcp::encode_r2t(&tcp::R2T { cccid: Cid(1), ttag: 1, r2to: 0, r2tl: datal }, &cfg, &mut out).ok(),
            tcp::encode_term_req(cfg.role, tcp::Fes::PduSequenceError, datal, &data, &mut out).ok(),
            tcp::encode_icreq(&tcp::IcReq::default(), &mut out).ok(),
        ];
        for n in results.into_iter().flatten() {
            prop_assert!(n <= out_len, "wrote {} bytes into {}", n, out_len);
        }
    }
}
