//! A tiny raw NVMe/TCP host for the target's tests: speaks the wire with nvme-proto's codecs
//! over a blocking socket, so each test can send exactly the bytes it wants (good or hostile).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use nvme_proto::fabrics::{ConnectCmd, ConnectData, Nqn, PropertyGet, PropertySet, PropertySize};
use nvme_proto::nvme::{Cid, Cqe, Nsid, Sqe, Status};
use nvme_proto::sgl::SglDescriptor;
use nvme_proto::tcp::{self as ptcp, H2CData, IcReq, IcResp, PduConfig, PduHeader, Role, TermReq};
use nvmf_target::config::{
    BackendKind, ByteSize, Config, IdlePolicy, ListenerConfig, NamespaceConfig,
};
use nvmf_target::Target;

pub const NQN: &str = "nqn.2026-11.io.ringside:nvme0";
pub const HOSTNQN: &str = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000001";
pub const HOSTID: [u8; 16] = [7; 16];

/// A test configuration: one 8 MiB malloc namespace (512-byte blocks), one reactor that sleeps
/// when idle (tests share the machine), port 0, an RPC socket in a temp dir.
pub fn test_config(dir: &tempfile::TempDir) -> Config {
    let mut c = Config::new("test");
    c.cores = vec![nvmf_target::config::CoreId(
        nvmf_target::config::online_cores()[0],
    )];
    c.pin_reactors = false;
    c.idle = IdlePolicy::Sleep {
        after_idle_polls: 64,
        max_sleep_us: 2000,
    };
    c.rpc_socket = Some(dir.path().join("rpc.sock"));
    // Each test target writes its trace file in its own directory (they all share the name).
    c.trace.dir = Some(dir.path().to_path_buf());
    c.listeners = vec![ListenerConfig {
        transport: "tcp".into(),
        addr: "127.0.0.1".parse().expect("ip"),
        port: 0,
    }];
    c.subsystems[0].namespaces.push(NamespaceConfig {
        nsid: Some(1),
        backend: BackendKind::Malloc,
        size: ByteSize(8 << 20),
        block_size: 512,
    });
    c.limits.max_h2c_data = ByteSize(16 * 1024);
    c.limits.max_c2h_data = ByteSize(16 * 1024);
    c.keep_alive.check_interval_ms = 100;
    c
}

pub struct TestTarget {
    pub target: Option<Target>,
    pub addr: SocketAddr,
    pub rpc: PathBuf,
    pub dir: tempfile::TempDir,
}

impl TestTarget {
    pub fn start_with(f: impl FnOnce(&mut Config)) -> TestTarget {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = test_config(&dir);
        f(&mut c);
        let target = Target::start(c).expect("target should start");
        let addr = target.listen_addrs()[0];
        let rpc = target.rpc_socket().to_path_buf();
        TestTarget {
            target: Some(target),
            addr,
            rpc,
            dir,
        }
    }
    pub fn start() -> TestTarget {
        Self::start_with(|_| {})
    }
    pub fn host(&self) -> Host {
        Host::open(self.addr)
    }
    /// An admin + one I/O queue association, ready for I/O on `io`.
    pub fn io_pair(&self, hd: bool, dd: bool) -> (Host, Host) {
        let mut admin = self.host();
        admin.icreq(hd, dd);
        let cqe = admin.connect(NQN, 0, 31, 30_000, 0xffff);
        assert!(
            cqe.status.is_success(),
            "admin connect failed: {:?}",
            cqe.status
        );
        let cntlid = cqe.dw0 as u16;
        admin.enable();
        let mut io = self.host();
        io.icreq(hd, dd);
        let cqe = io.connect(NQN, 1, 63, 0, cntlid);
        assert!(
            cqe.status.is_success(),
            "io connect failed: {:?}",
            cqe.status
        );
        (admin, io)
    }
}

impl Drop for TestTarget {
    fn drop(&mut self) {
        if let Some(t) = self.target.take() {
            t.shutdown();
        }
    }
}

pub enum Reply {
    Pdu(PduHeader, Vec<u8>),
    Closed,
}

pub struct Host {
    pub s: TcpStream,
    pub cfg: PduConfig,
    buf: Vec<u8>,
    next_cid: u16,
    pub maxh2cdata: u32,
    /// Connect attributes sent by `connect` (bit 2: disable SQ flow control).
    pub cattr: u8,
}

impl Host {
    pub fn open(addr: SocketAddr) -> Host {
        let s = TcpStream::connect(addr).expect("tcp connect to the target");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        s.set_nodelay(true).expect("nodelay");
        Host {
            s,
            cfg: PduConfig::initial(Role::Host),
            buf: Vec::new(),
            next_cid: 1,
            maxh2cdata: 4096,
            cattr: 0,
        }
    }

    pub fn cid(&mut self) -> Cid {
        self.next_cid = self.next_cid.wrapping_add(1);
        Cid(self.next_cid)
    }

    pub fn send(&mut self, b: &[u8]) {
        self.s.write_all(b).expect("send to target");
    }

    /// The next PDU, or Closed when the target closed the connection.
    pub fn recv(&mut self) -> Reply {
        loop {
            match ptcp::parse_pdu(&self.buf, &self.cfg) {
                Ok(Some(v)) => {
                    let r = Reply::Pdu(v.header, v.data.to_vec());
                    let n = v.len;
                    self.buf.drain(..n);
                    return r;
                }
                Ok(None) => {}
                Err(e) => panic!("target sent a malformed pdu: {e}"),
            }
            let mut chunk = [0u8; 65536];
            match self.s.read(&mut chunk) {
                Ok(0) => return Reply::Closed,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Reply::Closed,
                Err(e) => panic!("reading from target: {e}"),
            }
        }
    }

    pub fn recv_pdu(&mut self) -> (PduHeader, Vec<u8>) {
        match self.recv() {
            Reply::Pdu(h, d) => (h, d),
            Reply::Closed => panic!("target closed the connection unexpectedly"),
        }
    }

    pub fn icreq(&mut self, hdgst: bool, ddgst: bool) -> IcResp {
        let mut b = [0u8; 128];
        let req = IcReq {
            pfv: 0,
            hpda: 0,
            hdgst,
            ddgst,
            maxr2t: 0,
        };
        let n = ptcp::encode_icreq(&req, &mut b).expect("encode icreq");
        self.send(&b[..n]);
        match self.recv_pdu() {
            (PduHeader::IcResp(r), _) => {
                self.cfg = PduConfig::negotiated(Role::Host, &req, &r);
                self.cfg.max_in_capsule_data = 1 << 20;
                self.maxh2cdata = r.maxh2cdata;
                r
            }
            (h, _) => panic!("expected ICResp, got {h:?}"),
        }
    }

    pub fn capsule(&mut self, sqe: &Sqe, data: &[u8]) {
        let mut b = vec![0u8; 128 + data.len()];
        let n = ptcp::encode_capsule_cmd(sqe, data, &self.cfg, &mut b).expect("encode capsule");
        self.send(&b[..n]);
    }

    /// Sends a command and runs it to completion: answers R2Ts with `out` (split at
    /// MAXH2CDATA), collects C2HData. Returns the completion and the data read.
    pub fn cmd(&mut self, sqe: Sqe, out: &[u8], in_capsule: bool) -> (Cqe, Vec<u8>) {
        self.capsule(&sqe, if in_capsule { out } else { &[] });
        let mut data = Vec::new();
        loop {
            match self.recv_pdu() {
                (PduHeader::CapsuleResp(c), _) => {
                    assert_eq!(c.cid, sqe.cid, "completion for another command");
                    return (c, data);
                }
                (PduHeader::C2HData(h), d) => {
                    assert_eq!(h.cccid, sqe.cid);
                    assert_eq!(h.datao as usize, data.len(), "c2h data in order");
                    data.extend_from_slice(&d);
                    if h.success {
                        return (Cqe::new(sqe.cid, Status::SUCCESS), data);
                    }
                }
                (PduHeader::R2T(r), _) => {
                    assert_eq!(r.cccid, sqe.cid);
                    let mut off = r.r2to as usize;
                    let end = off + r.r2tl as usize;
                    while off < end {
                        let n = (end - off).min(self.maxh2cdata as usize);
                        let h = H2CData {
                            cccid: sqe.cid,
                            ttag: r.ttag,
                            datao: off as u32,
                            datal: n as u32,
                            last: off + n == end,
                        };
                        let mut b = vec![0u8; 64 + n];
                        let len = ptcp::encode_h2c_data(&h, &out[off..off + n], &self.cfg, &mut b)
                            .expect("h2c");
                        self.send(&b[..len]);
                        off += n;
                    }
                }
                (h, _) => panic!("unexpected pdu {h:?}"),
            }
        }
    }

    pub fn connect(&mut self, subnqn: &str, qid: u16, sqsize: u16, kato: u32, cntlid: u16) -> Cqe {
        self.connect_as(subnqn, HOSTNQN, qid, sqsize, kato, cntlid)
    }

    pub fn connect_as(
        &mut self,
        subnqn: &str,
        hostnqn: &str,
        qid: u16,
        sqsize: u16,
        kato: u32,
        cntlid: u16,
    ) -> Cqe {
        let cmd = ConnectCmd {
            cid: self.cid(),
            sgl: SglDescriptor::in_capsule(0, 1024),
            recfmt: 0,
            qid,
            sqsize,
            cattr: self.cattr,
            kato,
        };
        let data = ConnectData {
            hostid: HOSTID,
            cntlid,
            subnqn: Nqn::new(subnqn).expect("nqn"),
            hostnqn: Nqn::new(hostnqn).expect("hostnqn"),
        };
        self.cmd(cmd.to_sqe(), &data.to_bytes(), true).0
    }

    pub fn prop_get(&mut self, offset: u32, size: PropertySize) -> Cqe {
        let c = self.cid();
        self.cmd(
            PropertyGet {
                cid: c,
                size,
                offset,
            }
            .to_sqe(),
            &[],
            false,
        )
        .0
    }

    pub fn prop_set(&mut self, offset: u32, value: u64) -> Cqe {
        let c = self.cid();
        self.cmd(
            PropertySet {
                cid: c,
                size: PropertySize::Four,
                offset,
                value,
            }
            .to_sqe(),
            &[],
            false,
        )
        .0
    }

    /// CC.EN = 1 with NVM command set and 64/16-byte entries, then check CSTS.RDY.
    pub fn enable(&mut self) {
        let cc = nvme_proto::fabrics::Cc {
            en: true,
            css: 0,
            mps: 0,
            ams: 0,
            shn: 0,
            iosqes: 6,
            iocqes: 4,
        };
        let c = self.prop_set(nvme_proto::fabrics::prop::CC, u64::from(cc.to_u32()));
        assert!(c.status.is_success(), "set CC: {:?}", c.status);
        let c = self.prop_get(nvme_proto::fabrics::prop::CSTS, PropertySize::Four);
        assert_eq!(c.dw0 & 1, 1, "CSTS.RDY after CC.EN");
    }

    pub fn identify(&mut self, cns: u8, nsid: u32) -> (Cqe, Vec<u8>) {
        let c = self.cid();
        self.cmd(
            Sqe::identify(c, Nsid(nsid), cns, SglDescriptor::tcp_transport(4096)),
            &[],
            false,
        )
    }

    pub fn write(&mut self, lba: u64, data: &[u8], in_capsule: bool) -> Cqe {
        let c = self.cid();
        let blocks = (data.len() / 512) as u32;
        let sgl = if in_capsule {
            SglDescriptor::in_capsule(0, data.len() as u32)
        } else {
            SglDescriptor::tcp_transport(data.len() as u32)
        };
        let sqe = Sqe::write(c, Nsid(1), lba, blocks, sgl).expect("write sqe");
        self.cmd(sqe, data, in_capsule).0
    }

    pub fn read(&mut self, lba: u64, len: usize) -> (Cqe, Vec<u8>) {
        let c = self.cid();
        let sqe = Sqe::read(
            c,
            Nsid(1),
            lba,
            (len / 512) as u32,
            SglDescriptor::tcp_transport(len as u32),
        )
        .expect("read sqe");
        self.cmd(sqe, &[], false)
    }

    /// Expects a C2HTermReq then the connection closing.
    pub fn expect_term_req(&mut self) -> TermReq {
        let t = match self.recv() {
            Reply::Pdu(PduHeader::C2HTermReq(t), _) => t,
            Reply::Pdu(h, _) => panic!("expected C2HTermReq, got {h:?}"),
            Reply::Closed => panic!("expected C2HTermReq, connection closed without one"),
        };
        self.expect_closed();
        t
    }

    pub fn expect_closed(&mut self) {
        if let Reply::Pdu(h, _) = self.recv() {
            panic!("expected the connection to close, got {h:?}");
        }
    }
}

/// A data pattern that differs per LBA and per seed.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

/// Checks that the target still serves I/O on a fresh association.
pub fn assert_still_serving(t: &TestTarget) {
    let (_a, mut io) = t.io_pair(false, false);
    let d = pattern(4096, 99);
    assert!(
        io.write(4000, &d, true).status.is_success(),
        "write after hostile input"
    );
    let (c, r) = io.read(4000, 4096);
    assert!(c.status.is_success());
    assert_eq!(r, d, "read back after hostile input");
}

/// Starts the `ringside-tgt` binary listening on an ephemeral loopback port on the first online
/// core, its RPC socket (`tgt.sock`) and trace file in `dir`, plus `args`; returns the child,
/// the listening address and a channel of its later stderr lines.
pub fn spawn_tgt(
    dir: &std::path::Path,
    args: &[&str],
) -> (
    std::process::Child,
    SocketAddr,
    std::sync::mpsc::Receiver<String>,
) {
    let (child, addr, _startup, rx) = spawn_tgt_startup(dir, args);
    (child, addr, rx)
}

/// [`spawn_tgt`], also returning the stderr lines printed before the target listened.
pub fn spawn_tgt_startup(
    dir: &std::path::Path,
    args: &[&str],
) -> (
    std::process::Child,
    SocketAddr,
    Vec<String>,
    std::sync::mpsc::Receiver<String>,
) {
    use std::io::{BufRead, BufReader};
    let mut startup = Vec::new();
    let core = nvmf_target::config::online_cores()[0].to_string();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ringside-tgt"))
        .args(["--listen", "127.0.0.1:0", "--cores", &core])
        .args(args)
        .arg("--rpc-socket")
        .arg(dir.join("tgt.sock"))
        .arg("--trace-dir")
        .arg(dir)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn ringside-tgt");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let addr = loop {
        let l = lines
            .next()
            .expect("target exited before listening")
            .expect("stderr line");
        if let Some(a) = l.strip_prefix("ringside-tgt: listening on tcp ") {
            break a.parse::<SocketAddr>().expect("address");
        }
        startup.push(l);
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    (child, addr, startup, rx)
}
