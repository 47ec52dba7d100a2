//! The host side of an NVMe-oF controller association: admin queue bring-up (Connect, CAP/VS,
//! CC.EN, CSTS.RDY, Identify, Number of Queues, namespaces), Keep Alive, Discovery, I/O queue
//! Connect and the normal shutdown. Slow path only.
//!
//! Threading: an [`AdminSession`] belongs to the coordinator thread. I/O qpairs are connected
//! with [`connect_io_qpair`] by the worker threads that will own them, with a copy of the
//! session's [`HostParams`] and cntlid.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nvme_proto::fabrics::{
    self, Cap, Cc, ConnectCmd, ConnectData, ConnectResponse, Csts, Nqn, PropertyGet, PropertySet,
    PropertySize,
};
use nvme_proto::identify::{self, IdentifyController, IdentifyNamespace};
use nvme_proto::log::{self as plog, DiscoveryEntry, DiscoveryLog, DiscoveryLogHeader};
use nvme_proto::nvme::{Nsid, NSID_ALL};
use nvme_proto::{Cid, Cqe, SglDescriptor, Sqe, Status};

use crate::transport::tcp::{TcpParams, TcpQpair};
use crate::transport::{execute, AnyQpair, Dir, Qpair, TransportError};

/// Admin queue depth (Linux uses 32 as well).
pub const ADMIN_QUEUE_DEPTH: u16 = 32;
/// Request slots on the admin queue: commands are issued one at a time.
pub const ADMIN_SLOTS: u16 = 4;
/// In-capsule data the admin queue accepts (NVMe/TCP: 8 KiB, what Linux assumes).
pub const ADMIN_IN_CAPSULE: u32 = 8192;

/// Why the association could not be set up or used.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{stage}")]
    Transport {
        stage: String,
        #[source]
        source: TransportError,
    },
    #[error("{command} failed with status {status}{hint}")]
    Status {
        command: &'static str,
        status: String,
        hint: String,
    },
    #[error("{what}")]
    Controller { what: String },
}

fn tr(stage: impl Into<String>) -> impl FnOnce(TransportError) -> HostError {
    let stage = stage.into();
    move |source| HostError::Transport { stage, source }
}

/// Status name for messages: "LBA_OUT_OF_RANGE" or "sct 0x1 sc 0x99".
pub fn status_name(s: Status) -> String {
    match s.name() {
        Some(n) => n.to_string(),
        None => format!("sct {:#x} sc {:#04x}", s.sct(), s.sc()),
    }
}

/// Name of a Connect completion status: command-specific codes of Connect overlap with those
/// of I/O commands, so `Status::name` alone can pick the wrong one.
fn connect_status_name(s: Status) -> String {
    for (st, n) in [
        (
            Status::CONNECT_INCOMPATIBLE_FORMAT,
            "CONNECT_INCOMPATIBLE_FORMAT",
        ),
        (Status::CONNECT_CONTROLLER_BUSY, "CONNECT_CONTROLLER_BUSY"),
        (
            Status::CONNECT_INVALID_PARAMETERS,
            "CONNECT_INVALID_PARAMETERS",
        ),
        (
            Status::CONNECT_RESTART_DISCOVERY,
            "CONNECT_RESTART_DISCOVERY",
        ),
        (Status::CONNECT_INVALID_HOST, "CONNECT_INVALID_HOST"),
    ] {
        if s.same_code(st) {
            return n.to_string();
        }
    }
    status_name(s)
}

fn check(command: &'static str, cqe: &Cqe) -> Result<(), HostError> {
    if cqe.status.is_success() {
        Ok(())
    } else {
        Err(HostError::Status {
            command,
            status: status_name(cqe.status),
            hint: String::new(),
        })
    }
}

/// Host identity sent in every Connect of one association.
#[derive(Debug, Clone)]
pub struct HostParams {
    pub addr: SocketAddr,
    pub subnqn: String,
    pub hostnqn: String,
    pub hostid: [u8; 16],
    pub header_digest: bool,
    pub data_digest: bool,
    pub kato: Duration,
    pub timeout: Duration,
    /// SO_SNDBUF/SO_RCVBUF for every qpair (None: autotuning).
    pub socket_buffer: Option<usize>,
    /// Ask for I/O queues without SQ flow control (CATTR bit 2), as Linux does when the
    /// discovery log allows it: targets may then skip the CapsuleResp of successful reads.
    pub disable_sq_flow_control: bool,
    /// NVMe/RDMA instead of NVMe/TCP (trtype:rdma).
    pub rdma: bool,
}

/// A random host id (UUID v4) from the kernel's RNG, falling back to time and pid.
pub fn generate_hostid() -> [u8; 16] {
    use std::io::Read;
    let mut id = [0u8; 16];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut id))
        .is_ok();
    if !ok {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let a = crate::rng::mix64(t ^ u64::from(std::process::id()));
        let b = crate::rng::mix64(a);
        id[..8].copy_from_slice(&a.to_le_bytes());
        id[8..].copy_from_slice(&b.to_le_bytes());
    }
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    id
}

pub fn uuid_string(id: &[u8; 16]) -> String {
    let h: Vec<String> = id.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    )
}

/// The NQN Linux derives from a host id.
pub fn default_hostnqn(id: &[u8; 16]) -> String {
    format!("nqn.2014-08.org.nvmexpress:uuid:{}", uuid_string(id))
}

/// One queue's Connect parameters.
#[derive(Debug, Clone, Copy)]
struct QueueSpec {
    qid: u16,
    /// Request slots on our side.
    slots: u16,
    /// Zero-based queue size sent in Connect.
    sqsize: u16,
    cntlid: u16,
    max_data: u32,
    in_capsule: u32,
    keep_read_data: bool,
    /// Connect CATTR (bit 2: disable SQ flow control).
    cattr: u8,
}

fn connect_qpair(p: &HostParams, spec: QueueSpec) -> Result<(AnyQpair, u16), HostError> {
    let QueueSpec {
        qid,
        slots,
        sqsize,
        cntlid,
        max_data,
        in_capsule,
        keep_read_data,
        cattr,
    } = spec;
    let what = if qid == 0 { "admin" } else { "i/o" };
    let q = if p.rdma {
        connect_rdma(p, qid, slots, max_data, in_capsule, what)?
    } else {
        AnyQpair::Tcp(connect_tcp(
            p,
            qid,
            slots,
            max_data,
            in_capsule,
            keep_read_data,
            what,
        )?)
    };
    let data = connect_data(p, cntlid)?;
    connect_command(q, p, qid, sqsize, cattr, cntlid, &data, what)
}

#[cfg(feature = "rdma")]
fn connect_rdma(
    p: &HostParams,
    qid: u16,
    slots: u16,
    max_data: u32,
    in_capsule: u32,
    what: &str,
) -> Result<AnyQpair, HostError> {
    crate::transport::rdma::RdmaQpair::connect(&crate::transport::rdma::RdmaParams {
        addr: p.addr,
        qid,
        depth: slots,
        max_data: max_data.max(fabrics::CONNECT_DATA_SIZE as u32),
        // The admin queue sends Connect data by keyed SGL, as Linux does.
        in_capsule: if qid == 0 { 0 } else { in_capsule },
        timeout: p.timeout,
        // Lab fault scenarios (docs/rdma.md); the admin queue stays healthy for bad rkeys.
        fault: crate::transport::rdma::RdmaFault::from_env()
            .filter(|f| qid != 0 || *f != crate::transport::rdma::RdmaFault::BadRkey),
    })
    .map(AnyQpair::Rdma)
    .map_err(tr(format!(
        "cannot set up the nvme/rdma connection of {what} queue {qid} to {}",
        p.addr
    )))
}

#[cfg(not(feature = "rdma"))]
fn connect_rdma(
    _p: &HostParams,
    _qid: u16,
    _slots: u16,
    _max_data: u32,
    _in_capsule: u32,
    _what: &str,
) -> Result<AnyQpair, HostError> {
    Err(HostError::Controller {
        what: "nvme/rdma is not built in (cargo feature `rdma`)".into(),
    })
}

fn connect_tcp(
    p: &HostParams,
    qid: u16,
    slots: u16,
    max_data: u32,
    in_capsule: u32,
    keep_read_data: bool,
    what: &str,
) -> Result<TcpQpair, HostError> {
    TcpQpair::connect(&TcpParams {
        addr: p.addr,
        qid,
        depth: slots,
        max_data: max_data.max(fabrics::CONNECT_DATA_SIZE as u32),
        in_capsule,
        header_digest: p.header_digest,
        data_digest: p.data_digest,
        keep_read_data,
        socket_buffer: p.socket_buffer,
        timeout: p.timeout,
    })
    .map_err(tr(format!(
        "cannot set up the nvme/tcp connection of {what} queue {qid} to {}",
        p.addr
    )))
}

fn connect_data(
    p: &HostParams,
    cntlid: u16,
) -> Result<[u8; fabrics::CONNECT_DATA_SIZE], HostError> {
    let nqn = |s: &str| {
        Nqn::new(s).map_err(|e| HostError::Controller {
            what: format!("invalid nqn {s:?}: {e}"),
        })
    };
    let data = ConnectData {
        hostid: p.hostid,
        cntlid,
        subnqn: nqn(&p.subnqn)?,
        hostnqn: nqn(&p.hostnqn)?,
    }
    .to_bytes();
    Ok(data)
}

#[allow(clippy::too_many_arguments)]
fn connect_command(
    mut q: AnyQpair,
    p: &HostParams,
    qid: u16,
    sqsize: u16,
    cattr: u8,
    cntlid: u16,
    data: &[u8],
    what: &str,
) -> Result<(AnyQpair, u16), HostError> {
    let cmd = ConnectCmd {
        cid: Cid(0),
        sgl: SglDescriptor::in_capsule(0, data.len() as u32),
        recfmt: 0,
        qid,
        sqsize,
        cattr,
        kato: if qid == 0 {
            p.kato.as_millis().min(u32::MAX as u128) as u32
        } else {
            0
        },
    };
    let r = execute(&mut q, cmd.to_sqe(), Dir::ToController, data, 0, p.timeout).map_err(tr(
        format!("fabrics connect of {what} queue {qid} to {}", p.subnqn),
    ))?;
    if !r.cqe.status.is_success() {
        let s = r.cqe.status;
        let mut hint = String::new();
        if s.same_code(Status::CONNECT_INVALID_PARAMETERS) {
            let in_data = r.cqe.dw0 & (1 << 16) != 0;
            let ipo = r.cqe.dw0 as u16;
            let field = match (in_data, ipo) {
                (true, fabrics::connect_data_offset::SUBNQN) => {
                    format!("subnqn {:?}: no such subsystem on the target?", p.subnqn)
                }
                (true, fabrics::connect_data_offset::HOSTNQN) => {
                    format!("hostnqn {:?}: host not allowed?", p.hostnqn)
                }
                (true, fabrics::connect_data_offset::CNTLID) => format!("cntlid {cntlid}"),
                (true, fabrics::connect_data_offset::HOSTID) => "hostid".to_string(),
                (false, fabrics::connect_cmd_offset::SQSIZE) => {
                    format!("sqsize {} (queue depth too large?)", cmd.sqsize)
                }
                (false, fabrics::connect_cmd_offset::QID) => format!("qid {qid}"),
                (false, fabrics::connect_cmd_offset::CATTR) => format!("cattr {cattr:#x}"),
                (in_data, off) => format!(
                    "{} byte {off}",
                    if in_data { "connect data" } else { "command" }
                ),
            };
            hint = format!(" (target rejected {field})");
        } else if s.same_code(Status::CONNECT_INVALID_HOST) {
            hint = format!(" (host {:?} not allowed)", p.hostnqn);
        }
        return Err(HostError::Status {
            command: if qid == 0 {
                "fabrics connect (admin queue)"
            } else {
                "fabrics connect (i/o queue)"
            },
            status: connect_status_name(s),
            hint: format!("{hint} for subsystem {} at {}", p.subnqn, p.addr),
        });
    }
    Ok((q, ConnectResponse::from_dw0(r.cqe.dw0).cntlid))
}

/// Connects I/O queue `qid` of controller `cntlid` with `depth` request slots (called on the
/// worker thread that will own it). As Linux does on fabrics, the queue has `depth` entries
/// (sqsize = `depth` - 1, zero-based) and all of them may be outstanding; sqsize 0 is invalid,
/// so a depth of 1 asks for 2 entries. `keep_read_data`: see [`TcpParams::keep_read_data`].
///
/// With `HostParams::disable_sq_flow_control` the Connect sets CATTR bit 2, which lets the
/// target end successful reads with a C2HData PDU flagged SUCCESS instead of a CapsuleResp (one
/// PDU less per read). A target that refuses the attribute (Invalid Parameters on CATTR, or
/// Invalid Field) gets a second Connect without it on a fresh connection.
pub fn connect_io_qpair(
    p: &HostParams,
    cntlid: u16,
    qid: u16,
    depth: u16,
    max_data: u32,
    in_capsule: u32,
    keep_read_data: bool,
) -> Result<AnyQpair, HostError> {
    let mut spec = QueueSpec {
        qid,
        slots: depth,
        sqsize: depth.saturating_sub(1).max(1),
        cntlid,
        max_data,
        in_capsule,
        keep_read_data,
        cattr: if p.disable_sq_flow_control {
            fabrics::cattr::DISABLE_SQ_FLOW_CONTROL
        } else {
            0
        },
    };
    match connect_qpair(p, spec) {
        Err(HostError::Status { status, hint, .. })
            if spec.cattr != 0
                && (status == "INVALID_FIELD"
                    || (status == "CONNECT_INVALID_PARAMETERS" && hint.contains("cattr"))) =>
        {
            spec.cattr = 0;
            connect_qpair(p, spec).map(|(q, _)| q)
        }
        r => r.map(|(q, _)| q),
    }
}

/// An enabled controller's admin queue and what was learned about the controller.
pub struct AdminSession {
    q: AnyQpair,
    pub params: HostParams,
    pub cntlid: u16,
    pub cap: Cap,
    pub vs: u32,
    last_keep_alive: Instant,
    shut_down: bool,
}

impl AdminSession {
    /// Connects the admin queue and enables the controller (CC.EN = 1, waits for CSTS.RDY).
    pub fn connect(params: HostParams) -> Result<Self, HostError> {
        let (q, cntlid) = connect_qpair(
            &params,
            QueueSpec {
                qid: 0,
                slots: ADMIN_SLOTS,
                sqsize: ADMIN_QUEUE_DEPTH - 1,
                cntlid: fabrics::CNTLID_DYNAMIC,
                max_data: 64 * 1024,
                in_capsule: ADMIN_IN_CAPSULE,
                keep_read_data: true,
                cattr: 0,
            },
        )?;
        let mut s = AdminSession {
            q,
            params,
            cntlid,
            cap: Cap::default(),
            vs: 0,
            last_keep_alive: Instant::now(),
            shut_down: false,
        };
        s.cap = Cap::from_u64(s.property_get(fabrics::prop::CAP, PropertySize::Eight)?);
        s.vs = s.property_get(fabrics::prop::VS, PropertySize::Four)? as u32;
        let cc = Cc {
            en: true,
            css: 0,
            mps: 0,
            ams: 0,
            shn: 0,
            iosqes: 6,
            iocqes: 4,
        };
        s.property_set(fabrics::prop::CC, cc.to_u32())?;
        // CAP.TO is in 500 ms units; give at least the I/O timeout.
        let limit = Duration::from_millis(500 * u64::from(s.cap.to)).max(s.params.timeout);
        let start = Instant::now();
        loop {
            let csts =
                Csts::from_u32(s.property_get(fabrics::prop::CSTS, PropertySize::Four)? as u32);
            if csts.cfs {
                return Err(HostError::Controller {
                    what: "controller reports fatal status (CSTS.CFS) after enable".into(),
                });
            }
            if csts.rdy {
                break;
            }
            if start.elapsed() > limit {
                return Err(HostError::Controller {
                    what: format!("controller not ready (CSTS.RDY) {limit:?} after CC.EN=1"),
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(s)
    }

    fn run(
        &mut self,
        what: &'static str,
        sqe: Sqe,
        dir: Dir,
        out: &[u8],
        in_len: u32,
    ) -> Result<(Cqe, Vec<u8>), HostError> {
        let t = self.params.timeout;
        let r = execute(&mut self.q, sqe, dir, out, in_len, t).map_err(tr(what))?;
        check(what, &r.cqe)?;
        Ok((r.cqe, r.data))
    }

    pub fn property_get(&mut self, offset: u32, size: PropertySize) -> Result<u64, HostError> {
        let sqe = PropertyGet {
            cid: Cid(0),
            size,
            offset,
        }
        .to_sqe();
        let (cqe, _) = self.run("property get", sqe, Dir::None, &[], 0)?;
        Ok(match size {
            PropertySize::Four => u64::from(cqe.dw0),
            PropertySize::Eight => cqe.result64(),
        })
    }

    pub fn property_set(&mut self, offset: u32, value: u32) -> Result<(), HostError> {
        let sqe = PropertySet {
            cid: Cid(0),
            size: PropertySize::Four,
            offset,
            value: u64::from(value),
        }
        .to_sqe();
        self.run("property set", sqe, Dir::None, &[], 0).map(|_| ())
    }

    pub fn identify(&mut self, cns: u8, nsid: u32) -> Result<Vec<u8>, HostError> {
        let sqe = Sqe::identify(Cid(0), Nsid(nsid), cns, SglDescriptor::tcp_transport(4096));
        self.run("identify", sqe, Dir::FromController, &[], 4096)
            .map(|(_, d)| d)
    }

    pub fn identify_controller(&mut self) -> Result<IdentifyController, HostError> {
        let d = self.identify(identify::cns::CONTROLLER, 0)?;
        IdentifyController::decode(&d).map_err(|e| HostError::Controller {
            what: format!("invalid identify controller data: {e}"),
        })
    }

    /// Active namespaces with their Identify Namespace data.
    pub fn namespaces(&mut self) -> Result<Vec<(u32, IdentifyNamespace)>, HostError> {
        let list = identify::decode_ns_list(&self.identify(identify::cns::ACTIVE_NS_LIST, 0)?)
            .map_err(|e| HostError::Controller {
                what: format!("invalid active namespace list: {e}"),
            })?;
        let mut out = Vec::with_capacity(list.len());
        for nsid in list {
            let d = self.identify(identify::cns::NAMESPACE, nsid.0)?;
            let ns = IdentifyNamespace::decode(&d).map_err(|e| HostError::Controller {
                what: format!("invalid identify namespace data for nsid {}: {e}", nsid.0),
            })?;
            out.push((nsid.0, ns));
        }
        Ok(out)
    }

    /// Set Features / Number of Queues; returns the granted (submission, completion) counts.
    pub fn set_number_of_queues(&mut self, n: u16) -> Result<(u32, u32), HostError> {
        let sqe = Sqe::set_number_of_queues(Cid(0), n, n);
        let (cqe, _) = self.run("set features (number of queues)", sqe, Dir::None, &[], 0)?;
        Ok(nvme_proto::nvme::decode_number_of_queues(cqe.dw0))
    }

    /// Sends Keep Alive when half the keep-alive timeout has passed since the last one.
    pub fn keep_alive_if_due(&mut self) -> Result<(), HostError> {
        if self.params.kato.is_zero() || self.last_keep_alive.elapsed() < self.params.kato / 2 {
            return Ok(());
        }
        self.run("keep alive", Sqe::keep_alive(Cid(0)), Dir::None, &[], 0)?;
        self.last_keep_alive = Instant::now();
        Ok(())
    }

    /// Reads the whole Discovery log page (header first, then header and all records).
    pub fn discovery_log(&mut self) -> Result<Vec<DiscoveryEntry>, HostError> {
        let bad = |e: nvme_proto::ProtoError| HostError::Controller {
            what: format!("invalid discovery log: {e}"),
        };
        let rec = plog::DISCOVERY_RECORD_SIZE as u32;
        let glp = |len: u32| {
            Sqe::get_log_page(
                Cid(0),
                NSID_ALL,
                plog::lid::DISCOVERY,
                len,
                0,
                SglDescriptor::tcp_transport(len),
            )
            .map_err(bad)
        };
        let what = "get log page (discovery)";
        let (_, head) = self.run(what, glp(rec)?, Dir::FromController, &[], rec)?;
        let h = DiscoveryLogHeader::decode(&head).map_err(bad)?;
        // 60 records fit the 64 KiB admin slot; plenty for a benchmark's needs.
        let numrec = h.numrec.min(60) as u32;
        let len = rec * (1 + numrec);
        let (_, page) = self.run(what, glp(len)?, Dir::FromController, &[], len)?;
        let mut page = page;
        // Keep the header's count consistent with what was fetched.
        if let Some(n) = page.get_mut(8..16) {
            let got = u64::from_le_bytes(n.try_into().unwrap_or([0; 8])).min(u64::from(numrec));
            n.copy_from_slice(&got.to_le_bytes());
        }
        Ok(DiscoveryLog::decode(&page).map_err(bad)?.entries)
    }

    /// Normal shutdown: CC.SHN = 01b, wait for CSTS.SHST = complete (bounded), then close.
    pub fn shutdown(mut self) -> Result<(), HostError> {
        self.shut_down = true;
        let cc = self.property_get(fabrics::prop::CC, PropertySize::Four)? as u32;
        let mut cc = Cc::from_u32(cc);
        cc.shn = fabrics::shn::NORMAL;
        self.property_set(fabrics::prop::CC, cc.to_u32())?;
        let start = Instant::now();
        loop {
            let csts =
                Csts::from_u32(self.property_get(fabrics::prop::CSTS, PropertySize::Four)? as u32);
            if csts.shst == fabrics::shst::COMPLETE {
                return Ok(());
            }
            if start.elapsed() > self.params.timeout.min(Duration::from_secs(10)) {
                return Err(HostError::Controller {
                    what: "controller did not report shutdown complete (CSTS.SHST)".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn in_capsule_limit(&self) -> u32 {
        self.q.limits().in_capsule
    }

    pub fn maxh2cdata(&self) -> u32 {
        self.q.limits().maxh2cdata
    }

    pub fn qpair_limits(&self) -> crate::transport::QpairLimits {
        self.q.limits()
    }
}
