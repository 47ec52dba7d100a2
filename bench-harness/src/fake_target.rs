//! Test-only in-process NVMe/TCP target built from nvme-proto encoders, so the initiator's
//! transport, admin bring-up and worker loop are tested before (and independently of) the real
//! `ringside-tgt`. One thread per accepted connection, blocking sockets; the RAM disk is shared
//! behind a mutex (test code: simplicity over speed).
//!
//! It deliberately exercises the paths a real target may take: C2HData split into several PDUs,
//! the SUCCESS flag on even cids (no CapsuleResp) and a CapsuleResp on odd ones, R2Ts of at most
//! `r2t_chunk` bytes answered by several H2CData PDUs (MAXH2CDATA is small), digests when asked.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use nvme_proto::fabrics::{self, Cc, ConnectCmd, ConnectData, PropertyGet, PropertySet};
use nvme_proto::identify::{self, IdentifyController, IdentifyNamespace};
use nvme_proto::log::{subtype, DiscoveryEntry, DiscoveryLog};
use nvme_proto::nvme::{AdminOpcode, IoOpcode};
use nvme_proto::tcp::{
    encode_c2h_data, encode_capsule_resp, encode_icresp, encode_r2t, parse_pdu, C2HData, IcResp,
    PduConfig, PduHeader, Role, R2T,
};
use nvme_proto::{Cid, Cqe, Nsid, Sqe, Status};

#[derive(Debug, Clone)]
pub struct FakeOptions {
    pub subnqn: String,
    pub blocks: u64,
    pub block_size: u32,
    pub maxh2cdata: u32,
    pub c2h_chunk: u32,
    pub r2t_chunk: u32,
    /// IOCCSZ in 16-byte units.
    pub ioccsz: u32,
    pub mdts: u8,
    pub mqes: u16,
    /// Corrupt the first byte of every read's data (to prove verify catches it).
    pub corrupt_reads: bool,
    /// Close the connection after this many I/O commands (transport failure test).
    pub drop_after: Option<u64>,
    /// Fail I/O at or above this LBA with LBA Out of Range.
    pub fail_from_lba: Option<u64>,
    /// Tiny receive buffer and slow reads, so the initiator's sends come back short.
    pub slow_reader: bool,
    /// Refuse I/O queue Connects that disable SQ flow control (CATTR bit 2).
    pub reject_cattr: bool,
}

impl Default for FakeOptions {
    fn default() -> Self {
        FakeOptions {
            subnqn: "nqn.2024-01.io.ringside:fake".into(),
            blocks: 16384,
            block_size: 512,
            maxh2cdata: 16384,
            c2h_chunk: 16384,
            r2t_chunk: 32768,
            ioccsz: (8192 + 64) / 16,
            mdts: 5,
            mqes: 255,
            corrupt_reads: false,
            drop_after: None,
            fail_from_lba: None,
            slow_reader: false,
            reject_cattr: false,
        }
    }
}

pub struct FakeTarget {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Drop for FakeTarget {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect(self.addr);
    }
}

struct Shared {
    opts: FakeOptions,
    disk: Mutex<Vec<u8>>,
    cc: Mutex<u32>,
}

pub fn start(opts: FakeOptions) -> FakeTarget {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind fake target");
    let addr = l.local_addr().expect("local addr");
    if opts.slow_reader {
        // Inherited by accepted sockets: a small advertised window from the start.
        rustix::net::sockopt::set_socket_recv_buffer_size(&l, 4096).expect("SO_RCVBUF");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let shared = Arc::new(Shared {
        disk: Mutex::new(vec![
            0u8;
            (opts.blocks * u64::from(opts.block_size)) as usize
        ]),
        opts,
        cc: Mutex::new(0),
    });
    let st = stop.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            if st.load(Ordering::Acquire) {
                break;
            }
            let Ok(c) = c else { continue };
            let sh = shared.clone();
            std::thread::spawn(move || {
                let _ = serve(c, &sh);
            });
        }
    });
    FakeTarget { addr, stop }
}

struct Conn<'a> {
    s: TcpStream,
    cfg: PduConfig,
    sh: &'a Shared,
    out: Vec<u8>,
    ios: u64,
    qid: u16,
    /// SQ flow control disabled at Connect: successful reads may skip the CapsuleResp.
    no_sqflow: bool,
}

impl Conn<'_> {
    fn send_resp(&mut self, cqe: Cqe) -> std::io::Result<()> {
        let mut b = [0u8; 32];
        let n = encode_capsule_resp(&cqe, self.cfg.hdgst, &mut b).expect("encode resp");
        self.s.write_all(&b[..n])
    }
}

fn serve(s: TcpStream, sh: &Shared) -> std::io::Result<()> {
    let mut c = Conn {
        s,
        cfg: PduConfig::initial(Role::Controller),
        sh,
        out: vec![0u8; 1 << 20],
        ios: 0,
        qid: 0,
        no_sqflow: false,
    };
    let mut buf: Vec<u8> = Vec::new();
    let mut tmp = vec![0u8; if sh.opts.slow_reader { 2048 } else { 1 << 16 }];
    // Pending write: (cid, sqe, data collected, bytes expected, next r2t offset)
    let mut writes: std::collections::HashMap<u16, (Sqe, Vec<u8>, u32)> = Default::default();
    loop {
        let n = c.s.read(&mut tmp)?;
        if n == 0 {
            return Ok(());
        }
        if sh.opts.slow_reader {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        buf.extend_from_slice(&tmp[..n]);
        loop {
            let v = match parse_pdu(&buf, &c.cfg) {
                Ok(Some(v)) => v,
                Ok(None) => break,
                Err(e) => panic!("fake target: bad pdu from initiator: {e}"),
            };
            let len = v.len;
            let data = v.data.to_vec();
            let header = v.header;
            buf.drain(..len);
            match header {
                PduHeader::IcReq(r) => {
                    let resp = IcResp {
                        pfv: 0,
                        cpda: 0,
                        hdgst: r.hdgst,
                        ddgst: r.ddgst,
                        maxh2cdata: sh.opts.maxh2cdata,
                    };
                    let mut b = [0u8; 128];
                    let n = encode_icresp(&resp, &mut b).expect("icresp");
                    c.s.write_all(&b[..n])?;
                    c.cfg = PduConfig::negotiated(Role::Controller, &r, &resp);
                    c.cfg.max_in_capsule_data = 8192;
                    c.cfg.max_h2c_data = sh.opts.maxh2cdata;
                }
                PduHeader::CapsuleCmd(sqe) => {
                    if c.qid > 0
                        && sqe.opcode == IoOpcode::Write as u8
                        && !sqe.is_fabrics()
                        && data.is_empty()
                    {
                        let len = sqe.nlb() * sh.opts.block_size;
                        writes.insert(sqe.cid.0, (sqe, Vec::with_capacity(len as usize), len));
                        send_r2t(&mut c, sqe.cid, 0, len)?;
                        continue;
                    }
                    command(&mut c, sqe, &data)?;
                }
                PduHeader::H2CData(h) => {
                    let Some((sqe, got, total)) = writes.get_mut(&h.cccid.0) else {
                        panic!("fake target: h2c data for unknown cid");
                    };
                    assert_eq!(h.datao as usize, got.len(), "h2c data in order");
                    got.extend_from_slice(&data);
                    let (sqe, total, have) = (*sqe, *total, got.len() as u32);
                    if have == total {
                        let (_, d, _) = writes.remove(&h.cccid.0).expect("present");
                        command(&mut c, sqe, &d)?;
                    } else if h.last {
                        send_r2t(&mut c, h.cccid, have, total)?;
                    }
                }
                other => panic!("fake target: unexpected {other:?}"),
            }
        }
    }
}

fn send_r2t(c: &mut Conn<'_>, cid: Cid, off: u32, total: u32) -> std::io::Result<()> {
    let r = R2T {
        cccid: cid,
        ttag: cid.0 ^ 0x5a5a,
        r2to: off,
        r2tl: (total - off).min(c.sh.opts.r2t_chunk),
    };
    let mut b = [0u8; 32];
    let n = encode_r2t(&r, &c.cfg, &mut b).expect("r2t");
    c.s.write_all(&b[..n])
}

fn send_data(c: &mut Conn<'_>, cid: Cid, data: &[u8]) -> std::io::Result<()> {
    let chunk = c.sh.opts.c2h_chunk as usize;
    // Without SQ flow control, use SUCCESS on even cids (both completion paths get exercised).
    let success = c.no_sqflow && cid.0 % 2 == 0;
    let mut off = 0;
    while off < data.len() {
        let n = chunk.min(data.len() - off);
        let last = off + n == data.len();
        let h = C2HData {
            cccid: cid,
            datao: off as u32,
            datal: n as u32,
            last,
            success: last && success,
        };
        let w = encode_c2h_data(&h, &data[off..off + n], &c.cfg, &mut c.out).expect("c2h");
        let out = c.out[..w].to_vec();
        c.s.write_all(&out)?;
        off += n;
    }
    if !success {
        c.send_resp(Cqe::new(cid, Status::SUCCESS))?;
    }
    Ok(())
}

fn command(c: &mut Conn<'_>, sqe: Sqe, data: &[u8]) -> std::io::Result<()> {
    let sh = c.sh;
    let cid = sqe.cid;
    let ok = Cqe::new(cid, Status::SUCCESS);
    if sqe.is_fabrics() {
        if let Ok(cmd) = ConnectCmd::from_sqe(&sqe) {
            let d = ConnectData::decode(data).expect("connect data");
            let mut r = ok;
            let no_sqflow = cmd.cattr & fabrics::cattr::DISABLE_SQ_FLOW_CONTROL != 0;
            if cmd.sqsize == 0 || (cmd.qid > 0 && cmd.sqsize > sh.opts.mqes) {
                r.status = Status::CONNECT_INVALID_PARAMETERS;
                r.dw0 =
                    fabrics::connect_invalid_param_dw0(false, fabrics::connect_cmd_offset::SQSIZE);
            } else if cmd.qid > 0 && no_sqflow && sh.opts.reject_cattr {
                r.status = Status::CONNECT_INVALID_PARAMETERS;
                r.dw0 =
                    fabrics::connect_invalid_param_dw0(false, fabrics::connect_cmd_offset::CATTR);
            } else if d.subnqn.as_str() != sh.opts.subnqn && !d.subnqn.is_discovery() {
                r.status = Status::CONNECT_INVALID_PARAMETERS;
                r.dw0 =
                    fabrics::connect_invalid_param_dw0(true, fabrics::connect_data_offset::SUBNQN);
            } else {
                r.dw0 = 1;
                c.qid = cmd.qid;
                c.no_sqflow = no_sqflow;
                if cmd.qid > 0 {
                    c.cfg.max_in_capsule_data = sh.opts.ioccsz * 16 - 64;
                }
            }
            return c.send_resp(r);
        }
        if let Ok(g) = PropertyGet::from_sqe(&sqe) {
            let cc = *sh.cc.lock().expect("cc");
            let v: u64 = match g.offset {
                fabrics::prop::CAP => fabrics::Cap {
                    mqes: sh.opts.mqes,
                    cqr: true,
                    to: 1,
                    css: 1,
                    ..Default::default()
                }
                .to_u64(),
                fabrics::prop::VS => u64::from(fabrics::VS_1_3),
                fabrics::prop::CC => u64::from(cc),
                fabrics::prop::CSTS => {
                    let cc = Cc::from_u32(cc);
                    fabrics::Csts {
                        rdy: cc.en,
                        shst: if cc.shn != 0 { 2 } else { 0 },
                        ..Default::default()
                    }
                    .to_u32()
                    .into()
                }
                _ => 0,
            };
            let mut r = ok;
            r.dw0 = v as u32;
            r.dw1 = (v >> 32) as u32;
            return c.send_resp(r);
        }
        if let Ok(s) = PropertySet::from_sqe(&sqe) {
            if s.offset == fabrics::prop::CC {
                *sh.cc.lock().expect("cc") = s.value as u32;
            }
            return c.send_resp(ok);
        }
        return c.send_resp(Cqe::new(cid, Status::INVALID_OPCODE));
    }
    if c.qid == 0 {
        match AdminOpcode::from_u8(sqe.opcode) {
            Some(AdminOpcode::Identify) => {
                let d = match sqe.identify_cns() {
                    identify::cns::CONTROLLER => IdentifyController {
                        mn: "fake".into(),
                        mdts: sh.opts.mdts,
                        cntlid: 1,
                        nn: 1,
                        ioccsz: sh.opts.ioccsz,
                        sgls: identify::sgls::SUPPORTED
                            | identify::sgls::OFFSET
                            | identify::sgls::TRANSPORT_DATA_BLOCK,
                        ..IdentifyController::default()
                    }
                    .to_vec()
                    .expect("identify controller"),
                    identify::cns::ACTIVE_NS_LIST => {
                        let mut d = vec![0u8; identify::IDENTIFY_SIZE];
                        identify::encode_active_ns_list(&[Nsid(1)], Nsid(0), &mut d)
                            .expect("ns list");
                        d
                    }
                    identify::cns::NAMESPACE => IdentifyNamespace::simple(
                        sh.opts.blocks,
                        sh.opts.block_size.trailing_zeros() as u8,
                    )
                    .to_vec()
                    .expect("identify namespace"),
                    _ => return c.send_resp(Cqe::new(cid, Status::INVALID_FIELD)),
                };
                return send_data(c, cid, &d);
            }
            Some(AdminOpcode::SetFeatures) => {
                let mut r = ok;
                r.dw0 = nvme_proto::nvme::number_of_queues(8, 8);
                return c.send_resp(r);
            }
            Some(AdminOpcode::KeepAlive) => return c.send_resp(ok),
            Some(AdminOpcode::GetLogPage) => {
                let numd = (sqe.cdw10 >> 16) | (sqe.cdw11 & 0xffff) << 16;
                let len = (numd as usize + 1) * 4;
                let nqn = fabrics::Nqn::new(&sh.opts.subnqn).expect("nqn");
                let log = DiscoveryLog {
                    genctr: 1,
                    recfmt: 0,
                    entries: vec![DiscoveryEntry::tcp(nqn, subtype::NVME, "0.0.0.0", 4420, 1)],
                };
                let mut page = log.to_vec().expect("discovery log");
                page.resize(len, 0);
                return send_data(c, cid, &page);
            }
            _ => return c.send_resp(Cqe::new(cid, Status::INVALID_OPCODE)),
        }
    }
    // I/O.
    c.ios += 1;
    if c.sh.opts.drop_after.is_some_and(|n| c.ios > n) {
        let _ = c.s.shutdown(std::net::Shutdown::Both);
        return Err(std::io::Error::other("dropped on purpose"));
    }
    let bs = u64::from(sh.opts.block_size);
    let (slba, nlb) = (sqe.slba(), u64::from(sqe.nlb()));
    if slba + nlb > sh.opts.blocks || sh.opts.fail_from_lba.is_some_and(|f| slba >= f) {
        return c.send_resp(Cqe::new(cid, Status::LBA_OUT_OF_RANGE));
    }
    let range = (slba * bs) as usize..((slba + nlb) * bs) as usize;
    match IoOpcode::from_u8(sqe.opcode) {
        Some(IoOpcode::Write) => {
            assert_eq!(data.len(), range.len(), "write data length");
            sh.disk.lock().expect("disk")[range].copy_from_slice(data);
            c.send_resp(ok)
        }
        Some(IoOpcode::Read) => {
            let mut d = sh.disk.lock().expect("disk")[range].to_vec();
            if sh.opts.corrupt_reads {
                d[0] ^= 0xff;
            }
            send_data(c, cid, &d)
        }
        _ => c.send_resp(Cqe::new(cid, Status::INVALID_OPCODE)),
    }
}
