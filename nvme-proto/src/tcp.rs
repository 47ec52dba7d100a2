//! NVMe/TCP transport (NVMe/TCP Transport Specification 1.0): PDU types and headers, a
//! zero-copy streaming framer ([`parse_pdu`]) and encoders that write into caller buffers.
//!
//! Ownership model: everything here is a pure function of its inputs. The connection owner keeps
//! its receive buffer and a [`PduConfig`] (the values negotiated by ICReq/ICResp plus local
//! limits); [`parse_pdu`] borrows the buffer and returns a [`PduView`] pointing into it, or
//! `Ok(None)` when more bytes are needed. Nothing allocates.
//!
//! PDU layout: 8-byte common header (type, flags, hlen, pdo, plen), the rest of the PDU header
//! (hlen bytes in total), an optional 4-byte header digest (CRC32C of the hlen header bytes),
//! padding up to `pdo`, the data, and an optional 4-byte data digest (CRC32C of the data).
//! Digests are stored little-endian.

use crate::bytes::{put, put_u16, put_u32, u16_at, u32_at, u8_at};
use crate::nvme::{Cid, Cqe, Sqe, SQE_SIZE};
use crate::ProtoError;
use thiserror::Error;

/// Common header length.
pub const CH_LEN: usize = 8;
/// Header or data digest length.
pub const DIGEST_LEN: usize = 4;
/// ICReq / ICResp PDU length (header only, no digests ever).
pub const IC_LEN: usize = 128;
pub const CAPSULE_CMD_HLEN: usize = 72;
pub const CAPSULE_RESP_HLEN: usize = 24;
pub const DATA_HLEN: usize = 24;
pub const R2T_HLEN: usize = 24;
pub const TERM_REQ_HLEN: usize = 24;
/// Longest termination request: header plus up to 128 bytes of the offending PDU header.
pub const TERM_REQ_MAX_LEN: usize = 152;
pub const TERM_REQ_MAX_DATA: usize = TERM_REQ_MAX_LEN - TERM_REQ_HLEN;
/// Smallest MAXH2CDATA a controller may announce.
pub const MIN_MAXH2CDATA: u32 = 4096;
/// In-capsule data Linux accepts on the admin queue (8 KiB), a sane default before Connect.
pub const DEFAULT_ADMIN_IN_CAPSULE: u32 = 8192;
/// Default cap on C2HData payload per PDU for a host (not negotiated by the protocol).
pub const DEFAULT_MAX_C2H_DATA: u32 = 16 << 20;
/// Well-known NVMe/TCP ports.
pub const DEFAULT_PORT: u16 = 4420;
pub const DISCOVERY_PORT: u16 = 8009;

/// PDU types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PduType {
    IcReq = 0x00,
    IcResp = 0x01,
    H2CTermReq = 0x02,
    C2HTermReq = 0x03,
    CapsuleCmd = 0x04,
    CapsuleResp = 0x05,
    H2CData = 0x06,
    C2HData = 0x07,
    R2T = 0x09,
}

impl PduType {
    pub const fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0x00 => PduType::IcReq,
            0x01 => PduType::IcResp,
            0x02 => PduType::H2CTermReq,
            0x03 => PduType::C2HTermReq,
            0x04 => PduType::CapsuleCmd,
            0x05 => PduType::CapsuleResp,
            0x06 => PduType::H2CData,
            0x07 => PduType::C2HData,
            0x09 => PduType::R2T,
            _ => return None,
        })
    }

    /// The only legal hlen for this type.
    pub const fn hlen(self) -> usize {
        match self {
            PduType::IcReq | PduType::IcResp => IC_LEN,
            PduType::H2CTermReq | PduType::C2HTermReq => TERM_REQ_HLEN,
            PduType::CapsuleCmd => CAPSULE_CMD_HLEN,
            PduType::CapsuleResp => CAPSULE_RESP_HLEN,
            PduType::H2CData | PduType::C2HData => DATA_HLEN,
            PduType::R2T => R2T_HLEN,
        }
    }

    /// Sent by the host (even types), received by the controller.
    pub const fn is_host_to_controller(self) -> bool {
        (self as u8) & 1 == 0
    }

    /// Flags this type may carry.
    pub const fn valid_flags(self) -> u8 {
        match self {
            PduType::IcReq | PduType::IcResp | PduType::H2CTermReq | PduType::C2HTermReq => 0,
            PduType::CapsuleCmd => flags::HDGSTF | flags::DDGSTF,
            PduType::CapsuleResp | PduType::R2T => flags::HDGSTF,
            PduType::H2CData => flags::HDGSTF | flags::DDGSTF | flags::LAST_PDU,
            PduType::C2HData => flags::HDGSTF | flags::DDGSTF | flags::LAST_PDU | flags::SUCCESS,
        }
    }

    /// Whether a header digest is sent when header digests are negotiated.
    pub const fn carries_hdgst(self) -> bool {
        self.valid_flags() & flags::HDGSTF != 0
    }

    /// Whether the PDU may carry data after `pdo` (and then a data digest when negotiated).
    pub const fn carries_data(self) -> bool {
        self.valid_flags() & flags::DDGSTF != 0
    }
}

/// Common header flags.
pub mod flags {
    /// A header digest follows the header.
    pub const HDGSTF: u8 = 1 << 0;
    /// A data digest follows the data.
    pub const DDGSTF: u8 = 1 << 1;
    /// H2CData/C2HData: last data PDU of the command's transfer.
    pub const LAST_PDU: u8 = 1 << 2;
    /// C2HData: the command succeeded and no CapsuleResp follows (requires LAST_PDU).
    pub const SUCCESS: u8 = 1 << 3;
}

/// Fatal Error Status, carried by termination requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Fes {
    InvalidHeaderField = 0x01,
    PduSequenceError = 0x02,
    HeaderDigestError = 0x03,
    DataTransferOutOfRange = 0x04,
    /// Also "R2T Limit Exceeded".
    DataTransferLimitExceeded = 0x05,
    UnsupportedParameter = 0x06,
}

impl Fes {
    pub const fn from_u16(v: u16) -> Option<Self> {
        Some(match v {
            0x01 => Fes::InvalidHeaderField,
            0x02 => Fes::PduSequenceError,
            0x03 => Fes::HeaderDigestError,
            0x04 => Fes::DataTransferOutOfRange,
            0x05 => Fes::DataTransferLimitExceeded,
            0x06 => Fes::UnsupportedParameter,
            _ => return None,
        })
    }
}

/// Which end of the connection we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The target side: receives host-to-controller PDUs.
    Controller,
    /// The initiator side: receives controller-to-host PDUs.
    Host,
}

/// Per-connection framing parameters: negotiated digests and alignment, plus receive limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PduConfig {
    pub role: Role,
    /// Header digests negotiated (ICResp DGST bit 0).
    pub hdgst: bool,
    /// Data digests negotiated (ICResp DGST bit 1).
    pub ddgst: bool,
    /// Alignment we require of received data PDUs (zero-based dwords; 0 = none): the
    /// controller's CPDA or the host's HPDA.
    pub rx_pda: u8,
    /// Alignment the peer requires of data PDUs we send (zero-based dwords; 0 = none).
    pub tx_pda: u8,
    /// Largest H2CData payload a controller accepts (MAXH2CDATA).
    pub max_h2c_data: u32,
    /// Largest C2HData payload a host accepts.
    pub max_c2h_data: u32,
    /// Largest in-capsule data in a CapsuleCmd (admin: 8 KiB in Linux; I/O: IOCCSZ * 16 - 64).
    pub max_in_capsule_data: u32,
}

impl PduConfig {
    /// Before ICReq/ICResp: no digests, no alignment, default limits.
    pub const fn initial(role: Role) -> Self {
        PduConfig {
            role,
            hdgst: false,
            ddgst: false,
            rx_pda: 0,
            tx_pda: 0,
            max_h2c_data: MIN_MAXH2CDATA,
            max_c2h_data: DEFAULT_MAX_C2H_DATA,
            max_in_capsule_data: DEFAULT_ADMIN_IN_CAPSULE,
        }
    }

    /// After the exchange: the controller's ICResp decides digests (it echoes what it enabled).
    /// `max_in_capsule_data` starts at the admin default; update it once Connect names the queue.
    pub const fn negotiated(role: Role, icreq: &IcReq, icresp: &IcResp) -> Self {
        let (rx_pda, tx_pda) = match role {
            Role::Controller => (icresp.cpda, icreq.hpda),
            Role::Host => (icreq.hpda, icresp.cpda),
        };
        PduConfig {
            role,
            hdgst: icresp.hdgst,
            ddgst: icresp.ddgst,
            rx_pda,
            tx_pda,
            max_h2c_data: icresp.maxh2cdata,
            max_c2h_data: DEFAULT_MAX_C2H_DATA,
            max_in_capsule_data: DEFAULT_ADMIN_IN_CAPSULE,
        }
    }

    /// Header bytes before the data of a data-carrying PDU we send with this config.
    pub const fn tx_pdo(&self, ty: PduType) -> usize {
        let full = ty.hlen()
            + if self.hdgst && ty.carries_hdgst() {
                DIGEST_LEN
            } else {
                0
            };
        align_up(full, pda_bytes(self.tx_pda))
    }
}

/// Alignment in bytes for a zero-based dword PDA value (0 = no constraint, 1 byte).
const fn pda_bytes(pda: u8) -> usize {
    if pda == 0 {
        1
    } else {
        (pda as usize + 1) * 4
    }
}

const fn align_up(v: usize, a: usize) -> usize {
    v.div_ceil(a) * a
}

/// CRC32C as used for header and data digests (stored little-endian on the wire).
#[inline]
pub fn digest(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// ICReq: host's connection parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IcReq {
    /// PDU format version, 0.
    pub pfv: u16,
    /// Host PDU data alignment (zero-based dwords, <= 31).
    pub hpda: u8,
    pub hdgst: bool,
    pub ddgst: bool,
    /// Maximum outstanding R2Ts per command, zero-based.
    pub maxr2t: u32,
}

/// ICResp: controller's connection parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IcResp {
    pub pfv: u16,
    /// Controller PDU data alignment (zero-based dwords, <= 31).
    pub cpda: u8,
    pub hdgst: bool,
    pub ddgst: bool,
    /// Largest H2CData payload the controller accepts (>= 4096, multiple of 4).
    pub maxh2cdata: u32,
}

/// H2CTermReq / C2HTermReq header fields. `fes` is raw: a peer may send values we do not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TermReq {
    pub fes: u16,
    /// Fatal error information (the offending field's byte offset for Invalid Header Field).
    pub fei: u32,
}

/// H2CData header (host data for an R2T).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct H2CData {
    /// Command id of the command the data belongs to.
    pub cccid: Cid,
    /// Transfer tag from the R2T.
    pub ttag: u16,
    /// Offset of this data within the command's data.
    pub datao: u32,
    /// Data length of this PDU.
    pub datal: u32,
    pub last: bool,
}

/// C2HData header (controller data for a read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct C2HData {
    pub cccid: Cid,
    pub datao: u32,
    pub datal: u32,
    pub last: bool,
    /// No CapsuleResp follows (only with `last`).
    pub success: bool,
}

/// R2T header (controller ready to receive host data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct R2T {
    pub cccid: Cid,
    pub ttag: u16,
    /// Offset of the requested data within the command's data.
    pub r2to: u32,
    /// Length requested (> 0).
    pub r2tl: u32,
}

/// A parsed PDU header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PduHeader {
    IcReq(IcReq),
    IcResp(IcResp),
    H2CTermReq(TermReq),
    C2HTermReq(TermReq),
    CapsuleCmd(Sqe),
    CapsuleResp(Cqe),
    H2CData(H2CData),
    C2HData(C2HData),
    R2T(R2T),
}

impl PduHeader {
    pub fn pdu_type(&self) -> PduType {
        match self {
            PduHeader::IcReq(_) => PduType::IcReq,
            PduHeader::IcResp(_) => PduType::IcResp,
            PduHeader::H2CTermReq(_) => PduType::H2CTermReq,
            PduHeader::C2HTermReq(_) => PduType::C2HTermReq,
            PduHeader::CapsuleCmd(_) => PduType::CapsuleCmd,
            PduHeader::CapsuleResp(_) => PduType::CapsuleResp,
            PduHeader::H2CData(_) => PduType::H2CData,
            PduHeader::C2HData(_) => PduType::C2HData,
            PduHeader::R2T(_) => PduType::R2T,
        }
    }

    /// The command id the PDU refers to, if any.
    pub fn cid(&self) -> Option<Cid> {
        match self {
            PduHeader::CapsuleCmd(s) => Some(s.cid),
            PduHeader::CapsuleResp(c) => Some(c.cid),
            PduHeader::H2CData(h) => Some(h.cccid),
            PduHeader::C2HData(h) => Some(h.cccid),
            PduHeader::R2T(h) => Some(h.cccid),
            _ => None,
        }
    }
}

/// A complete, validated PDU borrowed from the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PduView<'a> {
    pub header: PduHeader,
    /// Common header flags as received.
    pub flags: u8,
    /// The data between `pdo` and the data digest (empty when none). For a termination request,
    /// the offending PDU header the peer echoed.
    pub data: &'a [u8],
    /// Bytes this PDU occupies in the buffer (plen): drop them before the next call.
    pub len: usize,
}

/// The 8-byte common header, as validated by [`check_common_header`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommonHeader {
    pub pdu_type: PduType,
    pub flags: u8,
    pub hlen: u8,
    pub pdo: u8,
    pub plen: u32,
}

/// A framing failure.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum PduError {
    /// Send a termination request with `fes` and [`PduError::fei`], then close the connection.
    #[error("fatal pdu error {fes:?} at byte {offset}: {reason}")]
    Fatal {
        fes: Fes,
        /// Byte offset within the PDU of the offending field.
        offset: u32,
        reason: &'static str,
    },
    /// A termination request with an impossible length: close without replying (spec 7.4.7).
    #[error("malformed termination request of {plen} bytes; close without reply")]
    BadTermReq { plen: u32 },
    /// The data digest does not match. Not fatal to the connection: the PDU (`pdu_len` bytes)
    /// must be consumed and the command failed (controller: Transient Transport Error).
    #[error("data digest mismatch in {pdu_type:?} for cid {}: computed {computed:#010x}, received {received:#010x}", cccid.0)]
    DataDigest {
        pdu_type: PduType,
        cccid: Cid,
        pdu_len: usize,
        computed: u32,
        received: u32,
    },
}

impl PduError {
    const fn ihf(offset: u32, reason: &'static str) -> Self {
        PduError::Fatal {
            fes: Fes::InvalidHeaderField,
            offset,
            reason,
        }
    }

    /// FES for the termination request, if one should be sent.
    pub const fn fes(&self) -> Option<Fes> {
        match self {
            PduError::Fatal { fes, .. } => Some(*fes),
            _ => None,
        }
    }

    /// FEI for the termination request: the field offset for Invalid Header Field and
    /// Unsupported Parameter, zero otherwise.
    pub const fn fei(&self) -> u32 {
        match self {
            PduError::Fatal {
                fes: Fes::InvalidHeaderField | Fes::UnsupportedParameter,
                offset,
                ..
            } => *offset,
            _ => 0,
        }
    }

    /// Whether the connection is lost (everything but a data digest mismatch).
    pub const fn is_fatal(&self) -> bool {
        !matches!(self, PduError::DataDigest { .. })
    }
}

/// The data of a termination request answering a PDU that starts at `buf[0]`: its header, at
/// most 128 bytes, as much as was received.
pub fn term_req_data(buf: &[u8]) -> &[u8] {
    let hlen = (u8_at(buf, 2) as usize).clamp(CH_LEN, TERM_REQ_MAX_DATA);
    buf.get(..hlen.min(buf.len())).unwrap_or_default()
}

/// Validate the common header at the start of `buf`. `Ok(None)` when fewer than 8 bytes.
/// Every check that needs only the common header happens here, so that an illegal PDU is
/// refused before its (possibly huge) plen is awaited.
pub fn check_common_header(buf: &[u8], cfg: &PduConfig) -> Result<Option<CommonHeader>, PduError> {
    if buf.len() < CH_LEN {
        return Ok(None);
    }
    let raw_type = u8_at(buf, 0);
    let fl = u8_at(buf, 1);
    let hlen = u8_at(buf, 2);
    let pdo = u8_at(buf, 3);
    let plen = u32_at(buf, 4);

    let ty = PduType::from_u8(raw_type).ok_or(PduError::ihf(0, "unknown pdu type"))?;
    let expect_h2c = cfg.role == Role::Controller;
    if ty.is_host_to_controller() != expect_h2c {
        return Err(PduError::ihf(0, "pdu type not valid in this direction"));
    }
    if matches!(ty, PduType::H2CTermReq | PduType::C2HTermReq)
        && !(TERM_REQ_HLEN as u32..=TERM_REQ_MAX_LEN as u32).contains(&plen)
    {
        return Err(PduError::BadTermReq { plen });
    }

    // Flags: only those the type defines; digest flags exactly as negotiated.
    let valid = ty.valid_flags();
    if fl & !valid != 0 {
        return Err(PduError::ihf(1, "flag not valid for pdu type"));
    }
    let hd = fl & flags::HDGSTF != 0;
    if ty.carries_hdgst() && hd != cfg.hdgst {
        return Err(PduError::ihf(
            1,
            "header digest flag does not match negotiation",
        ));
    }
    let dd_flag = fl & flags::DDGSTF != 0;
    if dd_flag && !cfg.ddgst {
        return Err(PduError::ihf(1, "data digest flag set but not negotiated"));
    }
    if ty == PduType::C2HData && fl & flags::SUCCESS != 0 && fl & flags::LAST_PDU == 0 {
        return Err(PduError::ihf(1, "success flag without last pdu flag"));
    }

    if hlen as usize != ty.hlen() {
        return Err(PduError::ihf(2, "hlen wrong for pdu type"));
    }

    let full_hlen = hlen as u32 + if hd { DIGEST_LEN as u32 } else { 0 };
    if plen < full_hlen {
        return Err(PduError::ihf(4, "plen shorter than header"));
    }

    if !ty.carries_data() {
        // Fixed-size PDUs (termination requests carry their data right after the header).
        let pdo_ok = match ty {
            PduType::H2CTermReq | PduType::C2HTermReq => pdo == 0 || pdo as usize == TERM_REQ_HLEN,
            _ => pdo == 0,
        };
        if !pdo_ok {
            return Err(PduError::ihf(3, "pdo set on a pdu without data"));
        }
        let fixed = !matches!(ty, PduType::H2CTermReq | PduType::C2HTermReq);
        if fixed && plen != full_hlen {
            return Err(PduError::ihf(4, "plen wrong for fixed-size pdu"));
        }
    } else if plen == full_hlen {
        // No data: pdo must be zero (or point at the end), and no data digest can follow.
        if pdo != 0 && pdo as u32 != plen {
            return Err(PduError::ihf(3, "pdo set on a pdu without data"));
        }
        if ty != PduType::CapsuleCmd {
            return Err(PduError::ihf(4, "data pdu without data"));
        }
    } else {
        let dd = cfg.ddgst;
        if dd && !dd_flag {
            return Err(PduError::ihf(1, "data digest negotiated but flag not set"));
        }
        let tail = if dd { DIGEST_LEN as u32 } else { 0 };
        let pdo32 = pdo as u32;
        if pdo32 < full_hlen {
            return Err(PduError::ihf(3, "pdo inside the header"));
        }
        if pdo as usize % pda_bytes(cfg.rx_pda) != 0 {
            return Err(PduError::ihf(3, "pdo not aligned to the negotiated pda"));
        }
        if pdo32.saturating_add(tail) >= plen {
            return Err(PduError::ihf(3, "pdo leaves no data before plen"));
        }
        let data_len = plen - pdo32 - tail;
        let limit = match ty {
            PduType::CapsuleCmd => cfg.max_in_capsule_data,
            PduType::H2CData => cfg.max_h2c_data,
            _ => cfg.max_c2h_data,
        };
        if data_len > limit {
            return Err(PduError::Fatal {
                fes: Fes::DataTransferLimitExceeded,
                offset: 4,
                reason: "data length above the negotiated maximum",
            });
        }
    }
    Ok(Some(CommonHeader {
        pdu_type: ty,
        flags: fl,
        hlen,
        pdo,
        plen,
    }))
}

/// A PDU's validated header, framed before its data has arrived: for a receiver that reads
/// the data of a large PDU straight into its place instead of through the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PduHead {
    pub header: PduHeader,
    /// Common header flags as received.
    pub flags: u8,
    /// The data is bytes `data_start..data_end` of the PDU (empty when none); a data digest
    /// follows it when `ddgst`.
    pub data_start: usize,
    pub data_end: usize,
    pub ddgst: bool,
    /// Bytes the whole PDU occupies (plen).
    pub len: usize,
}

/// Frame one PDU's header from the front of `buf`: every check [`parse_pdu`] makes except the
/// data digest. `Ok(None)`: the header (with its digest) has not fully arrived.
pub fn parse_pdu_head(buf: &[u8], cfg: &PduConfig) -> Result<Option<PduHead>, PduError> {
    let Some(ch) = check_common_header(buf, cfg)? else {
        return Ok(None);
    };
    let plen = ch.plen as usize;
    let hlen = ch.hlen as usize;
    let hd = ch.flags & flags::HDGSTF != 0;
    let full_hlen = hlen + if hd { DIGEST_LEN } else { 0 };
    let Some(hdr) = buf.get(..hlen) else {
        return Ok(None);
    };
    if hd {
        if buf.len() < full_hlen {
            return Ok(None);
        }
        let received = u32_at(buf, hlen);
        if digest(hdr) != received {
            return Err(PduError::Fatal {
                fes: Fes::HeaderDigestError,
                offset: hlen as u32,
                reason: "header digest mismatch",
            });
        }
    }
    // Data range and digest.
    let (data_start, data_end, ddgst) = match ch.pdu_type {
        PduType::H2CTermReq | PduType::C2HTermReq => (hlen, plen, false),
        _ if plen == full_hlen => (plen, plen, false),
        _ => {
            let tail = if cfg.ddgst { DIGEST_LEN } else { 0 };
            (ch.pdo as usize, plen - tail, cfg.ddgst)
        }
    };
    let header = decode_header(ch.pdu_type, ch.flags, hdr, data_end - data_start)?;
    Ok(Some(PduHead {
        header,
        flags: ch.flags,
        data_start,
        data_end,
        ddgst,
        len: plen,
    }))
}

/// Frame one PDU from the front of `buf`.
///
/// `Ok(None)`: more bytes are needed (the common header was fine so far). `Ok(Some(view))`: a
/// complete PDU whose digests matched; consume `view.len` bytes. `Err`: see [`PduError`].
pub fn parse_pdu<'a>(buf: &'a [u8], cfg: &PduConfig) -> Result<Option<PduView<'a>>, PduError> {
    let Some(h) = parse_pdu_head(buf, cfg)? else {
        return Ok(None);
    };
    let Some(pdu) = buf.get(..h.len) else {
        return Ok(None);
    };
    // An empty data range still points into the buffer, at the PDU's end.
    let data = pdu.get(h.data_start..h.data_end).unwrap_or_default();
    if h.ddgst {
        let received = u32_at(pdu, h.data_end);
        let computed = digest(data);
        if computed != received {
            return Err(PduError::DataDigest {
                pdu_type: h.header.pdu_type(),
                cccid: h.header.cid().unwrap_or_default(),
                pdu_len: h.len,
                computed,
                received,
            });
        }
    }
    Ok(Some(PduView {
        header: h.header,
        flags: h.flags,
        data,
        len: h.len,
    }))
}

fn decode_header(ty: PduType, fl: u8, h: &[u8], data_len: usize) -> Result<PduHeader, PduError> {
    let last = fl & flags::LAST_PDU != 0;
    Ok(match ty {
        PduType::IcReq | PduType::IcResp => {
            let pfv = u16_at(h, 8);
            if pfv != 0 {
                return Err(PduError::Fatal {
                    fes: Fes::UnsupportedParameter,
                    offset: 8,
                    reason: "unsupported pdu format version",
                });
            }
            let pda = u8_at(h, 10);
            if pda > 31 {
                return Err(PduError::ihf(10, "pda above 31"));
            }
            let dgst = u8_at(h, 11);
            let v = u32_at(h, 12);
            if ty == PduType::IcReq {
                PduHeader::IcReq(IcReq {
                    pfv,
                    hpda: pda,
                    hdgst: dgst & 1 != 0,
                    ddgst: dgst & 2 != 0,
                    maxr2t: v,
                })
            } else {
                if v < MIN_MAXH2CDATA || v % 4 != 0 {
                    return Err(PduError::ihf(
                        12,
                        "maxh2cdata below 4096 or not a dword multiple",
                    ));
                }
                PduHeader::IcResp(IcResp {
                    pfv,
                    cpda: pda,
                    hdgst: dgst & 1 != 0,
                    ddgst: dgst & 2 != 0,
                    maxh2cdata: v,
                })
            }
        }
        PduType::H2CTermReq | PduType::C2HTermReq => {
            let t = TermReq {
                fes: u16_at(h, 8),
                fei: u32_at(h, 10),
            };
            if ty == PduType::H2CTermReq {
                PduHeader::H2CTermReq(t)
            } else {
                PduHeader::C2HTermReq(t)
            }
        }
        PduType::CapsuleCmd => {
            let sqe: [u8; SQE_SIZE] = crate::bytes::arr(h, CH_LEN);
            PduHeader::CapsuleCmd(Sqe::decode(&sqe))
        }
        PduType::CapsuleResp => PduHeader::CapsuleResp(Cqe::decode(&crate::bytes::arr(h, CH_LEN))),
        PduType::H2CData | PduType::C2HData => {
            let cccid = Cid(u16_at(h, 8));
            let datao = u32_at(h, 12);
            let datal = u32_at(h, 16);
            if datal as usize != data_len {
                return Err(PduError::ihf(
                    16,
                    "datal differs from the pdu's data length",
                ));
            }
            if datao.checked_add(datal).is_none() {
                return Err(PduError::Fatal {
                    fes: Fes::DataTransferOutOfRange,
                    offset: 12,
                    reason: "datao + datal overflows",
                });
            }
            if ty == PduType::H2CData {
                PduHeader::H2CData(H2CData {
                    cccid,
                    ttag: u16_at(h, 10),
                    datao,
                    datal,
                    last,
                })
            } else {
                PduHeader::C2HData(C2HData {
                    cccid,
                    datao,
                    datal,
                    last,
                    success: fl & flags::SUCCESS != 0,
                })
            }
        }
        PduType::R2T => {
            let r = R2T {
                cccid: Cid(u16_at(h, 8)),
                ttag: u16_at(h, 10),
                r2to: u32_at(h, 12),
                r2tl: u32_at(h, 16),
            };
            if r.r2tl == 0 {
                return Err(PduError::ihf(16, "r2tl is zero"));
            }
            PduHeader::R2T(r)
        }
    })
}

// ------------------------------------------------------------------------------------------
// Encoders
// ------------------------------------------------------------------------------------------

/// Where the parts of an encoded PDU sit, for senders that write the data from its own buffer
/// (writev / zero-copy): send `header_len` bytes of header, then `data_len` bytes of data, then
/// the 4-byte [`digest`] of the data if `ddgst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PduLayout {
    /// Header bytes written (header, header digest, padding): the PDU's pdo when it has data.
    pub header_len: usize,
    pub data_len: usize,
    pub ddgst: bool,
    /// Total PDU length.
    pub plen: usize,
}

/// Write the header part of a PDU (common header, `specific` bytes 8..hlen, header digest,
/// padding) for `data_len` bytes of data.
fn encode_header(
    ty: PduType,
    extra_flags: u8,
    specific: &[u8],
    data_len: usize,
    cfg: &PduConfig,
    out: &mut [u8],
) -> Result<PduLayout, ProtoError> {
    let hlen = ty.hlen();
    let is_term = matches!(ty, PduType::H2CTermReq | PduType::C2HTermReq);
    if data_len > 0 && !ty.carries_data() && !is_term {
        return Err(ProtoError::OutOfRange {
            field: "data length of a pdu without data",
            value: data_len as u64,
        });
    }
    let hd = cfg.hdgst && ty.carries_hdgst();
    let dd = cfg.ddgst && ty.carries_data() && data_len > 0;
    let full_hlen = hlen + if hd { DIGEST_LEN } else { 0 };
    let header_len = if data_len > 0 && !is_term {
        align_up(full_hlen, pda_bytes(cfg.tx_pda))
    } else {
        full_hlen
    };
    if header_len > u8::MAX as usize && data_len > 0 {
        return Err(ProtoError::OutOfRange {
            field: "pdo",
            value: header_len as u64,
        });
    }
    let too_long = ProtoError::OutOfRange {
        field: "plen",
        value: data_len as u64,
    };
    let plen = header_len
        .checked_add(data_len)
        .and_then(|v| v.checked_add(if dd { DIGEST_LEN } else { 0 }))
        .ok_or(too_long.clone())?;
    let plen32 = u32::try_from(plen).map_err(|_| too_long)?;
    let have = out.len();
    let out = out
        .get_mut(..header_len)
        .ok_or(ProtoError::short("pdu header", header_len, have))?;
    out.fill(0);
    let mut fl = extra_flags & ty.valid_flags();
    if hd {
        fl |= flags::HDGSTF;
    }
    if dd {
        fl |= flags::DDGSTF;
    }
    out[0] = ty as u8;
    out[1] = fl;
    out[2] = hlen as u8;
    out[3] = if data_len > 0 && !is_term {
        header_len as u8
    } else {
        0
    };
    put_u32(out, 4, plen32);
    put(
        out,
        CH_LEN,
        specific.get(..hlen - CH_LEN).unwrap_or(specific),
    );
    if hd {
        let d = digest(out.get(..hlen).unwrap_or_default());
        put_u32(out, hlen, d);
    }
    Ok(PduLayout {
        header_len,
        data_len,
        ddgst: dd,
        plen,
    })
}

/// Header, then a copy of `data`, then its digest.
fn encode_full(
    ty: PduType,
    extra_flags: u8,
    specific: &[u8],
    data: &[u8],
    cfg: &PduConfig,
    out: &mut [u8],
) -> Result<usize, ProtoError> {
    // Check the whole length first so that nothing is half-written on a short buffer.
    let need = {
        let hd = cfg.hdgst && ty.carries_hdgst();
        let dd = cfg.ddgst && ty.carries_data() && !data.is_empty();
        let full = ty.hlen() + if hd { DIGEST_LEN } else { 0 };
        let hl = if !data.is_empty() && ty.carries_data() {
            align_up(full, pda_bytes(cfg.tx_pda))
        } else {
            full
        };
        hl + data.len() + if dd { DIGEST_LEN } else { 0 }
    };
    if out.len() < need {
        return Err(ProtoError::short("pdu", need, out.len()));
    }
    let l = encode_header(ty, extra_flags, specific, data.len(), cfg, out)?;
    put(out, l.header_len, data);
    if l.ddgst {
        put_u32(out, l.header_len + data.len(), digest(data));
    }
    Ok(l.plen)
}

/// ICReq (128 bytes). Sent before negotiation: never digested.
pub fn encode_icreq(r: &IcReq, out: &mut [u8]) -> Result<usize, ProtoError> {
    let mut s = [0u8; IC_LEN - CH_LEN];
    put_u16(&mut s, 0, r.pfv);
    s[2] = r.hpda;
    s[3] = r.hdgst as u8 | (r.ddgst as u8) << 1;
    put_u32(&mut s, 4, r.maxr2t);
    encode_full(
        PduType::IcReq,
        0,
        &s,
        &[],
        &PduConfig::initial(Role::Host),
        out,
    )
}

/// ICResp (128 bytes).
pub fn encode_icresp(r: &IcResp, out: &mut [u8]) -> Result<usize, ProtoError> {
    let mut s = [0u8; IC_LEN - CH_LEN];
    put_u16(&mut s, 0, r.pfv);
    s[2] = r.cpda;
    s[3] = r.hdgst as u8 | (r.ddgst as u8) << 1;
    put_u32(&mut s, 4, r.maxh2cdata);
    encode_full(
        PduType::IcResp,
        0,
        &s,
        &[],
        &PduConfig::initial(Role::Controller),
        out,
    )
}

/// CapsuleCmd with optional in-capsule `data`.
pub fn encode_capsule_cmd(
    sqe: &Sqe,
    data: &[u8],
    cfg: &PduConfig,
    out: &mut [u8],
) -> Result<usize, ProtoError> {
    encode_full(PduType::CapsuleCmd, 0, &sqe.to_bytes(), data, cfg, out)
}

/// CapsuleCmd header only, for `data_len` bytes of in-capsule data sent separately from the
/// caller's own buffer (writev): send `header_len` bytes, the data, then the 4-byte [`digest`]
/// of the data if `layout.ddgst`. With `data_len == 0` this is the whole PDU.
pub fn encode_capsule_cmd_header(
    sqe: &Sqe,
    data_len: usize,
    cfg: &PduConfig,
    out: &mut [u8],
) -> Result<PduLayout, ProtoError> {
    encode_header(PduType::CapsuleCmd, 0, &sqe.to_bytes(), data_len, cfg, out)
}

/// CapsuleResp: 24 bytes, 28 with a header digest. (A direct path: one per completion.)
pub fn encode_capsule_resp(cqe: &Cqe, hdgst: bool, out: &mut [u8]) -> Result<usize, ProtoError> {
    const FULL: usize = CAPSULE_RESP_HLEN + DIGEST_LEN;
    let n = if hdgst { FULL } else { CAPSULE_RESP_HLEN };
    let have = out.len();
    let dst = out
        .get_mut(..n)
        .ok_or(ProtoError::short("capsule response", n, have))?;
    let mut h = [0u8; FULL];
    h[0] = PduType::CapsuleResp as u8;
    h[1] = if hdgst { flags::HDGSTF } else { 0 };
    h[2] = CAPSULE_RESP_HLEN as u8;
    put_u32(&mut h, 4, n as u32);
    put(&mut h, CH_LEN, &cqe.to_bytes());
    if hdgst {
        let d = digest(h.get(..CAPSULE_RESP_HLEN).unwrap_or_default());
        put_u32(&mut h, CAPSULE_RESP_HLEN, d);
    }
    put(dst, 0, h.get(..n).unwrap_or_default());
    Ok(n)
}

fn data_specific(cccid: Cid, ttag: u16, off: u32, len: u32) -> [u8; DATA_HLEN - CH_LEN] {
    let mut s = [0u8; DATA_HLEN - CH_LEN];
    put_u16(&mut s, 0, cccid.0);
    put_u16(&mut s, 2, ttag);
    put_u32(&mut s, 4, off);
    put_u32(&mut s, 8, len);
    s
}

fn check_datal(datal: u32, data: &[u8]) -> Result<(), ProtoError> {
    if datal as usize != data.len() || datal == 0 {
        return Err(ProtoError::OutOfRange {
            field: "datal (must equal the data length and be non-zero)",
            value: datal as u64,
        });
    }
    Ok(())
}

/// H2CData with its data (`h.datal` must equal `data.len()`).
pub fn encode_h2c_data(
    h: &H2CData,
    data: &[u8],
    cfg: &PduConfig,
    out: &mut [u8],
) -> Result<usize, ProtoError> {
    check_datal(h.datal, data)?;
    let fl = if h.last { flags::LAST_PDU } else { 0 };
    let s = data_specific(h.cccid, h.ttag, h.datao, h.datal);
    encode_full(PduType::H2CData, fl, &s, data, cfg, out)
}

/// H2CData header only, for `h.datal` bytes of data sent separately (see [`PduLayout`]).
pub fn encode_h2c_data_header(
    h: &H2CData,
    cfg: &PduConfig,
    out: &mut [u8],
) -> Result<PduLayout, ProtoError> {
    if h.datal == 0 {
        return Err(ProtoError::OutOfRange {
            field: "datal",
            value: 0,
        });
    }
    let fl = if h.last { flags::LAST_PDU } else { 0 };
    let s = data_specific(h.cccid, h.ttag, h.datao, h.datal);
    encode_header(PduType::H2CData, fl, &s, h.datal as usize, cfg, out)
}

fn c2h_flags(h: &C2HData) -> u8 {
    let mut fl = 0;
    if h.last {
        fl |= flags::LAST_PDU;
    }
    if h.success && h.last {
        fl |= flags::SUCCESS;
    }
    fl
}

/// C2HData with its data (`h.datal` must equal `data.len()`). `success` is only sent with `last`.
pub fn encode_c2h_data(
    h: &C2HData,
    data: &[u8],
    cfg: &PduConfig,
    out: &mut [u8],
) -> Result<usize, ProtoError> {
    check_datal(h.datal, data)?;
    let s = data_specific(h.cccid, 0, h.datao, h.datal);
    encode_full(PduType::C2HData, c2h_flags(h), &s, data, cfg, out)
}

/// C2HData header only, for `h.datal` bytes of data sent separately (see [`PduLayout`]).
pub fn encode_c2h_data_header(
    h: &C2HData,
    cfg: &PduConfig,
    out: &mut [u8],
) -> Result<PduLayout, ProtoError> {
    if h.datal == 0 {
        return Err(ProtoError::OutOfRange {
            field: "datal",
            value: 0,
        });
    }
    let s = data_specific(h.cccid, 0, h.datao, h.datal);
    encode_header(
        PduType::C2HData,
        c2h_flags(h),
        &s,
        h.datal as usize,
        cfg,
        out,
    )
}

/// R2T: 24 bytes, 28 with a header digest.
pub fn encode_r2t(r: &R2T, cfg: &PduConfig, out: &mut [u8]) -> Result<usize, ProtoError> {
    let s = data_specific(r.cccid, r.ttag, r.r2to, r.r2tl);
    encode_full(PduType::R2T, 0, &s, &[], cfg, out)
}

/// A termination request from `from` (Host: H2CTermReq, Controller: C2HTermReq) carrying
/// `offending` (the header of the PDU in error, truncated to 128 bytes; see [`term_req_data`]).
/// Never digested.
pub fn encode_term_req(
    from: Role,
    fes: Fes,
    fei: u32,
    offending: &[u8],
    out: &mut [u8],
) -> Result<usize, ProtoError> {
    let ty = match from {
        Role::Host => PduType::H2CTermReq,
        Role::Controller => PduType::C2HTermReq,
    };
    let data = offending.get(..TERM_REQ_MAX_DATA).unwrap_or(offending);
    let mut s = [0u8; TERM_REQ_HLEN - CH_LEN];
    put_u16(&mut s, 0, fes as u16);
    put_u32(&mut s, 2, fei);
    let need = TERM_REQ_HLEN + data.len();
    if out.len() < need {
        return Err(ProtoError::short("termination request", need, out.len()));
    }
    let l = encode_header(ty, 0, &s, data.len(), &PduConfig::initial(from), out)?;
    put(out, l.header_len, data);
    Ok(l.plen)
}

/// Answer a framing error: the termination request for `err` on a connection whose receive
/// buffer starts with the offending PDU. `Ok(0)` when no request should be sent.
pub fn encode_term_req_for(
    err: &PduError,
    role: Role,
    rx_buf: &[u8],
    out: &mut [u8],
) -> Result<usize, ProtoError> {
    match err.fes() {
        Some(fes) => encode_term_req(role, fes, err.fei(), term_req_data(rx_buf), out),
        None => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nvme::{Nsid, Status};
    use crate::sgl::SglDescriptor;

    fn ctrl(hd: bool, dd: bool) -> PduConfig {
        PduConfig {
            hdgst: hd,
            ddgst: dd,
            max_h2c_data: 128 * 1024,
            max_in_capsule_data: 8192,
            ..PduConfig::initial(Role::Controller)
        }
    }
    fn host(hd: bool, dd: bool) -> PduConfig {
        PduConfig {
            role: Role::Host,
            ..ctrl(hd, dd)
        }
    }

    fn write_cmd() -> Sqe {
        Sqe::write(Cid(5), Nsid(1), 10, 1, SglDescriptor::in_capsule(0, 512)).expect("valid")
    }

    #[test]
    fn capsule_cmd_round_trip_with_and_without_digests() {
        let data = [0x5au8; 512];
        for (hd, dd) in [(false, false), (true, false), (false, true), (true, true)] {
            let cfg = ctrl(hd, dd);
            let mut buf = [0u8; 1024];
            let n = encode_capsule_cmd(&write_cmd(), &data, &cfg, &mut buf).expect("encode");
            assert_eq!(
                n,
                72 + 512 + 4 * (hd as usize + dd as usize),
                "plen hd={hd} dd={dd}"
            );
            let v = parse_pdu(&buf[..n], &cfg)
                .expect("valid")
                .expect("complete");
            assert_eq!(v.len, n);
            assert_eq!(v.header, PduHeader::CapsuleCmd(write_cmd()));
            assert_eq!(v.data, &data[..]);
            for cut in 0..n {
                assert_eq!(
                    parse_pdu(&buf[..cut], &cfg),
                    Ok(None),
                    "prefix {cut} needs more bytes"
                );
            }
        }
    }

    #[test]
    fn capsule_resp_is_24_bytes_and_round_trips() {
        let cqe = Cqe {
            dw0: 1,
            sqhd: 3,
            ..Cqe::new(Cid(9), Status::SUCCESS)
        };
        let mut buf = [0u8; 64];
        assert_eq!(encode_capsule_resp(&cqe, false, &mut buf), Ok(24));
        assert_eq!(&buf[..8], &[5, 0, 24, 0, 24, 0, 0, 0]);
        let n = encode_capsule_resp(&cqe, true, &mut buf).expect("encode");
        assert_eq!(n, 28);
        assert_eq!(buf[1], flags::HDGSTF);
        let v = parse_pdu(&buf[..n], &host(true, false))
            .expect("valid")
            .expect("complete");
        assert_eq!(v.header, PduHeader::CapsuleResp(cqe));
        assert!(
            encode_capsule_resp(&cqe, true, &mut buf[..27]).is_err(),
            "short out"
        );
    }

    #[test]
    fn header_digest_mismatch_is_fes_3() {
        let cfg = ctrl(true, false);
        let mut buf = [0u8; 128];
        let n = encode_capsule_cmd(&write_cmd(), &[], &cfg, &mut buf).expect("encode");
        buf[20] ^= 1;
        let e = parse_pdu(&buf[..n], &cfg).expect_err("bad digest");
        assert_eq!(e.fes(), Some(Fes::HeaderDigestError));
    }

    #[test]
    fn data_digest_mismatch_is_not_fatal_and_names_cid() {
        let cfg = host(false, true);
        let data = [1u8; 100];
        let h = C2HData {
            cccid: Cid(77),
            datao: 0,
            datal: 100,
            last: true,
            success: true,
        };
        let mut buf = [0u8; 256];
        let n = encode_c2h_data(&h, &data, &cfg, &mut buf).expect("encode");
        let v = parse_pdu(&buf[..n], &cfg)
            .expect("valid")
            .expect("complete");
        assert_eq!(v.header, PduHeader::C2HData(h));
        buf[30] ^= 0xff;
        match parse_pdu(&buf[..n], &cfg) {
            Err(e @ PduError::DataDigest { cccid, pdu_len, .. }) => {
                assert_eq!(cccid, Cid(77));
                assert_eq!(pdu_len, n);
                assert!(!e.is_fatal());
            }
            other => panic!("expected data digest error, got {other:?}"),
        }
    }

    #[test]
    fn illegal_common_headers_fail_before_plen_arrives() {
        let cfg = ctrl(false, false);
        // Unknown type 0x08.
        let e = parse_pdu(&[8, 0, 24, 0, 24, 0, 0, 0], &cfg).expect_err("unknown type");
        assert_eq!((e.fes(), e.fei()), (Some(Fes::InvalidHeaderField), 0));
        // Controller receiving a C2H type.
        assert_eq!(
            parse_pdu(&[7, 0, 24, 24, 100, 0, 0, 0], &cfg).map_err(|e| e.fei()),
            Err(0)
        );
        // CapsuleCmd with hlen 24.
        assert_eq!(
            parse_pdu(&[4, 0, 24, 0, 72, 0, 0, 0], &cfg).map_err(|e| e.fei()),
            Err(2)
        );
        // plen < hlen.
        assert_eq!(
            parse_pdu(&[4, 0, 72, 0, 10, 0, 0, 0], &cfg).map_err(|e| e.fei()),
            Err(4)
        );
        // pdo inside header.
        assert_eq!(
            parse_pdu(&[4, 0, 72, 8, 200, 0, 0, 0], &cfg).map_err(|e| e.fei()),
            Err(3)
        );
        // Huge in-capsule data: limit exceeded at once.
        let e = parse_pdu(&[4, 0, 72, 72, 0, 0, 0, 1], &cfg).expect_err("too big");
        assert_eq!(e.fes(), Some(Fes::DataTransferLimitExceeded));
        // Header digest flag without negotiation.
        assert_eq!(
            parse_pdu(&[4, 1, 72, 0, 76, 0, 0, 0], &cfg).map_err(|e| e.fei()),
            Err(1)
        );
        // H2CData above maxh2cdata.
        let e = parse_pdu(&[6, 4, 24, 24, 0, 0, 0x10, 0], &cfg).expect_err("h2c too big");
        assert_eq!(e.fes(), Some(Fes::DataTransferLimitExceeded));
        // A termination request of 1000 bytes: close without reply.
        assert_eq!(
            parse_pdu(&[2, 0, 24, 0, 0xe8, 3, 0, 0], &cfg),
            Err(PduError::BadTermReq { plen: 1000 })
        );
    }

    #[test]
    fn pdo_alignment_is_enforced_and_produced() {
        let mut cfg = ctrl(true, false);
        cfg.rx_pda = 7; // 32-byte alignment
        cfg.tx_pda = 7;
        let mut buf = [0u8; 512];
        let n = encode_capsule_cmd(&write_cmd(), &[9u8; 16], &cfg, &mut buf).expect("encode");
        assert_eq!(buf[3], 96, "72 + 4 rounded up to 32");
        assert_eq!(n, 96 + 16);
        let v = parse_pdu(&buf[..n], &cfg)
            .expect("valid")
            .expect("complete");
        assert_eq!(v.data, &[9u8; 16]);
        cfg.tx_pda = 0;
        let n = encode_capsule_cmd(&write_cmd(), &[9u8; 16], &cfg, &mut buf).expect("encode");
        assert_eq!(buf[3], 76);
        assert_eq!(
            parse_pdu(&buf[..n], &cfg).map_err(|e| e.fei()),
            Err(3),
            "unaligned pdo"
        );
    }

    #[test]
    fn ic_round_trip_and_negotiation() {
        let req = IcReq {
            pfv: 0,
            hpda: 0,
            hdgst: true,
            ddgst: false,
            maxr2t: 0,
        };
        let resp = IcResp {
            pfv: 0,
            cpda: 0,
            hdgst: true,
            ddgst: false,
            maxh2cdata: 131072,
        };
        let mut buf = [0u8; 128];
        assert_eq!(encode_icreq(&req, &mut buf), Ok(128));
        assert_eq!(&buf[..8], &[0, 0, 128, 0, 128, 0, 0, 0]);
        let v = parse_pdu(&buf, &PduConfig::initial(Role::Controller))
            .expect("valid")
            .expect("complete");
        assert_eq!(v.header, PduHeader::IcReq(req));
        assert_eq!(encode_icresp(&resp, &mut buf), Ok(128));
        let v = parse_pdu(&buf, &PduConfig::initial(Role::Host))
            .expect("valid")
            .expect("complete");
        assert_eq!(v.header, PduHeader::IcResp(resp));
        let cfg = PduConfig::negotiated(Role::Controller, &req, &resp);
        assert!(cfg.hdgst && !cfg.ddgst);
        assert_eq!(cfg.max_h2c_data, 131072);
        buf[8] = 1;
        let e = parse_pdu(&buf, &PduConfig::initial(Role::Host)).expect_err("pfv 1");
        assert_eq!((e.fes(), e.fei()), (Some(Fes::UnsupportedParameter), 8));
    }

    #[test]
    fn r2t_h2c_round_trip() {
        let cfg_c = ctrl(true, true);
        let cfg_h = host(true, true);
        let r = R2T {
            cccid: Cid(3),
            ttag: 11,
            r2to: 4096,
            r2tl: 8192,
        };
        let mut buf = [0u8; 256];
        let n = encode_r2t(&r, &cfg_c, &mut buf).expect("encode");
        assert_eq!(n, 28);
        assert_eq!(
            parse_pdu(&buf[..n], &cfg_h)
                .expect("ok")
                .expect("complete")
                .header,
            PduHeader::R2T(r)
        );
        let h = H2CData {
            cccid: Cid(3),
            ttag: 11,
            datao: 4096,
            datal: 64,
            last: true,
        };
        let data = [0xcc; 64];
        let n = encode_h2c_data(&h, &data, &cfg_h, &mut buf).expect("encode");
        assert_eq!(n, 24 + 4 + 64 + 4);
        let v = parse_pdu(&buf[..n], &cfg_c).expect("ok").expect("complete");
        assert_eq!(v.header, PduHeader::H2CData(h));
        assert_eq!(v.data, &data);
        // Header-only encoding gives the same bytes as the full encoding.
        let mut hb = [0u8; 128];
        let mut cb = [0u8; 1024];
        let sqe =
            Sqe::write(Cid(9), Nsid(1), 0, 1, SglDescriptor::in_capsule(0, 100)).expect("valid");
        let full = encode_capsule_cmd(&sqe, &[3u8; 100], &cfg_h, &mut cb).expect("encode");
        let cl = encode_capsule_cmd_header(&sqe, 100, &cfg_h, &mut hb).expect("header");
        assert_eq!((cl.header_len, cl.plen, cl.ddgst), (76, full, true));
        assert_eq!(
            &hb[..76],
            &cb[..76],
            "header-only capsule matches the full encoding"
        );
        let l = encode_h2c_data_header(&h, &cfg_h, &mut hb).expect("encode header");
        assert_eq!(&hb[..l.header_len], &buf[..l.header_len]);
        assert_eq!(l.plen, n);
        assert!(l.ddgst);
        assert_eq!(&buf[n - 4..n], &digest(&data).to_le_bytes());
    }

    #[test]
    fn term_req_round_trip() {
        let cfg = ctrl(false, false);
        let bad = [4u8, 0, 24, 0, 72, 0, 0, 0];
        let e = parse_pdu(&bad, &cfg).expect_err("bad hlen");
        let mut out = [0u8; 200];
        let n = encode_term_req_for(&e, Role::Controller, &bad, &mut out).expect("encode");
        assert_eq!(n, 24 + 8);
        let v = parse_pdu(&out[..n], &host(false, false))
            .expect("ok")
            .expect("complete");
        assert_eq!(v.header, PduHeader::C2HTermReq(TermReq { fes: 1, fei: 2 }));
        assert_eq!(v.data, &bad);
    }

    #[test]
    fn data_limit_is_exact_with_digests() {
        for dd in [false, true] {
            let mut cfg = ctrl(true, dd);
            cfg.max_h2c_data = 4096;
            let mut buf = vec![0u8; 8192];
            let mut h = H2CData {
                cccid: Cid(1),
                ttag: 0,
                datao: 0,
                datal: 4096,
                last: false,
            };
            let host_cfg = PduConfig {
                role: Role::Host,
                ..cfg
            };
            let n = encode_h2c_data(&h, &[7u8; 4096], &host_cfg, &mut buf).expect("encode");
            assert!(
                parse_pdu(&buf[..n], &cfg).expect("at the limit").is_some(),
                "dd={dd}"
            );
            h.datal = 4097;
            let n = encode_h2c_data(&h, &[7u8; 4097], &host_cfg, &mut buf).expect("encode");
            let e = parse_pdu(&buf[..8], &cfg)
                .expect_err("over the limit, from the common header alone");
            assert_eq!(e.fes(), Some(Fes::DataTransferLimitExceeded), "dd={dd}");
            assert!(parse_pdu(&buf[..n], &cfg).is_err());
        }
    }

    #[test]
    fn two_pdus_back_to_back() {
        let cfg = ctrl(false, false);
        let mut buf = [0u8; 512];
        let a = encode_capsule_cmd(&write_cmd(), &[1u8; 8], &cfg, &mut buf).expect("a");
        let b = encode_capsule_cmd(&Sqe::keep_alive(Cid(2)), &[], &cfg, &mut buf[a..]).expect("b");
        let v1 = parse_pdu(&buf[..a + b], &cfg).expect("ok").expect("first");
        assert_eq!(v1.len, a);
        let v2 = parse_pdu(&buf[a..a + b], &cfg)
            .expect("ok")
            .expect("second");
        assert_eq!(v2.header.cid(), Some(Cid(2)));
    }
}
