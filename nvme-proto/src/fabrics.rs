//! NVMe over Fabrics commands (NVMe-oF 1.1 / Base 2.0 chapter 6): Connect, Property Get/Set,
//! the 1024-byte Connect data, and the controller properties (CAP, VS, CC, CSTS) that fabrics
//! hosts read and write through Property Get/Set instead of MMIO.
//!
//! Fabrics commands reuse the 64-byte SQE: opcode 0x7F, fctype in byte 4 (the low byte of
//! [`Sqe::nsid`]), the SGL at bytes 24..40 and command fields from byte 40 (cdw10..).

use crate::bytes::{arr, nul_terminated, put, put_u16, u16_at};
use crate::nvme::{AdminOpcode, Cid, Nsid, Sqe};
use crate::sgl::SglDescriptor;
use crate::ProtoError;

/// Fabrics command types (byte 4 of a fabrics SQE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FabricsType {
    PropertySet = 0x00,
    Connect = 0x01,
    PropertyGet = 0x04,
    AuthenticationSend = 0x05,
    AuthenticationReceive = 0x06,
    Disconnect = 0x08,
}

impl FabricsType {
    pub const fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0x00 => FabricsType::PropertySet,
            0x01 => FabricsType::Connect,
            0x04 => FabricsType::PropertyGet,
            0x05 => FabricsType::AuthenticationSend,
            0x06 => FabricsType::AuthenticationReceive,
            0x08 => FabricsType::Disconnect,
            _ => return None,
        })
    }
}

/// Size of the Connect command's data.
pub const CONNECT_DATA_SIZE: usize = 1024;
/// Size of an NQN field on the wire.
pub const NQN_FIELD_SIZE: usize = 256;
/// Longest NQN (bytes, excluding the NUL).
pub const NQN_MAX_LEN: usize = 223;
/// The well-known discovery subsystem NQN.
pub const DISCOVERY_NQN: &str = "nqn.2014-08.org.nvmexpress.discovery";
/// CNTLID a host sends in Connect for the admin queue when any controller will do (dynamic model).
pub const CNTLID_DYNAMIC: u16 = 0xffff;
/// CNTLID for the static model, "any controller".
pub const CNTLID_STATIC_ANY: u16 = 0xfffe;

/// A validated NVMe Qualified Name: UTF-8, 1..=223 bytes, no NUL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nqn(String);

impl Nqn {
    pub fn new(s: &str) -> Result<Self, ProtoError> {
        Self::check(s.as_bytes(), 0).map(|_| Nqn(s.to_owned()))
    }

    fn check(b: &[u8], offset: usize) -> Result<&str, ProtoError> {
        let bad = |reason| ProtoError::InvalidField {
            field: "nqn",
            offset,
            reason,
        };
        if b.is_empty() {
            return Err(bad("empty"));
        }
        if b.len() > NQN_MAX_LEN {
            return Err(bad("longer than 223 bytes"));
        }
        if b.contains(&0) {
            return Err(bad("contains nul"));
        }
        std::str::from_utf8(b).map_err(|_| bad("not utf-8"))
    }

    /// Decode a 256-byte NUL-terminated field located at `offset` (for error reports).
    pub fn decode_field(field: &[u8], offset: usize) -> Result<Self, ProtoError> {
        let s = nul_terminated(field).ok_or(ProtoError::InvalidField {
            field: "nqn",
            offset,
            reason: "not nul-terminated",
        })?;
        Self::check(s, offset).map(|s| Nqn(s.to_owned()))
    }

    /// Write into a 256-byte field, NUL padded.
    pub fn encode_field(&self, field: &mut [u8]) {
        field.fill(0);
        put(field, 0, self.0.as_bytes());
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_discovery(&self) -> bool {
        self.0 == DISCOVERY_NQN
    }
}

impl std::fmt::Display for Nqn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Connect attributes (CATTR byte).
pub mod cattr {
    /// Priority class of an I/O queue (bits 1:0), urgent / high / medium / low.
    pub const PRIORITY_MASK: u8 = 0x3;
    /// Disable SQ flow control (bit 2): SQHD is not reported.
    pub const DISABLE_SQ_FLOW_CONTROL: u8 = 1 << 2;
    /// I/O queue deletion request (bit 3, NVMe-oF 1.1+).
    pub const IO_QUEUE_DELETION: u8 = 1 << 3;
}

/// The Connect command (fctype 0x01).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectCmd {
    pub cid: Cid,
    pub sgl: SglDescriptor,
    /// Record format, 0 for NVMe-oF 1.x.
    pub recfmt: u16,
    /// 0 for the admin queue.
    pub qid: u16,
    /// Submission queue size, zero-based (entries - 1).
    pub sqsize: u16,
    pub cattr: u8,
    /// Keep alive timeout in milliseconds (admin queue only).
    pub kato: u32,
}

impl ConnectCmd {
    /// Number of entries the host asks for (sqsize + 1).
    pub const fn queue_entries(&self) -> u32 {
        self.sqsize as u32 + 1
    }

    pub fn to_sqe(&self) -> Sqe {
        let mut s = Sqe::new(AdminOpcode::Fabrics as u8, self.cid);
        s.nsid = Nsid(FabricsType::Connect as u32);
        s.dptr = self.sgl;
        s.cdw10 = self.recfmt as u32 | (self.qid as u32) << 16;
        s.cdw11 = self.sqsize as u32 | (self.cattr as u32) << 16;
        s.cdw12 = self.kato;
        s
    }

    /// Read a Connect command from an SQE. Errors if it is not a Connect.
    pub fn from_sqe(s: &Sqe) -> Result<Self, ProtoError> {
        check_fabrics(s, FabricsType::Connect)?;
        Ok(ConnectCmd {
            cid: s.cid,
            sgl: s.dptr,
            recfmt: s.cdw10 as u16,
            qid: (s.cdw10 >> 16) as u16,
            sqsize: s.cdw11 as u16,
            cattr: (s.cdw11 >> 16) as u8,
            kato: s.cdw12,
        })
    }
}

fn check_fabrics(s: &Sqe, ty: FabricsType) -> Result<(), ProtoError> {
    if !s.is_fabrics() {
        return Err(ProtoError::InvalidField {
            field: "opcode",
            offset: 0,
            reason: "not a fabrics command",
        });
    }
    if s.fctype() != ty as u8 {
        return Err(ProtoError::InvalidField {
            field: "fctype",
            offset: 4,
            reason: "unexpected fabrics command type",
        });
    }
    Ok(())
}

/// Byte offsets of Connect command fields within the SQE (for Invalid Parameters responses).
pub mod connect_cmd_offset {
    pub const RECFMT: u16 = 40;
    pub const QID: u16 = 42;
    pub const SQSIZE: u16 = 44;
    pub const CATTR: u16 = 46;
    pub const KATO: u16 = 48;
}

/// Byte offsets of Connect data fields (for Invalid Parameters responses).
pub mod connect_data_offset {
    pub const HOSTID: u16 = 0;
    pub const CNTLID: u16 = 16;
    pub const SUBNQN: u16 = 256;
    pub const HOSTNQN: u16 = 512;
}

/// The 1024-byte Connect data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectData {
    pub hostid: [u8; 16],
    pub cntlid: u16,
    pub subnqn: Nqn,
    pub hostnqn: Nqn,
}

impl ConnectData {
    /// Decode and validate. The error's offset is the field's offset in the data, which is
    /// what [`connect_invalid_param_dw0`] wants with `in_data = true`.
    pub fn decode(b: &[u8]) -> Result<Self, ProtoError> {
        if b.len() < CONNECT_DATA_SIZE {
            return Err(ProtoError::short(
                "connect data",
                CONNECT_DATA_SIZE,
                b.len(),
            ));
        }
        let sub = b.get(256..512).unwrap_or_default();
        let host = b.get(512..768).unwrap_or_default();
        Ok(ConnectData {
            hostid: arr(b, 0),
            cntlid: u16_at(b, 16),
            subnqn: Nqn::decode_field(sub, connect_data_offset::SUBNQN as usize)?,
            hostnqn: Nqn::decode_field(host, connect_data_offset::HOSTNQN as usize)?,
        })
    }

    pub fn encode(&self, out: &mut [u8]) -> Result<usize, ProtoError> {
        let have = out.len();
        let out = out.get_mut(..CONNECT_DATA_SIZE).ok_or(ProtoError::short(
            "connect data",
            CONNECT_DATA_SIZE,
            have,
        ))?;
        out.fill(0);
        put(out, 0, &self.hostid);
        put_u16(out, 16, self.cntlid);
        if let Some(f) = out.get_mut(256..512) {
            self.subnqn.encode_field(f);
        }
        if let Some(f) = out.get_mut(512..768) {
            self.hostnqn.encode_field(f);
        }
        Ok(CONNECT_DATA_SIZE)
    }

    pub fn to_bytes(&self) -> [u8; CONNECT_DATA_SIZE] {
        let mut b = [0u8; CONNECT_DATA_SIZE];
        // Cannot fail: the buffer is exactly the size.
        let _ = self.encode(&mut b);
        b
    }
}

/// The Connect response's dw0 on success: CNTLID (bits 15:0) and AUTHREQ (bits 31:16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnectResponse {
    pub cntlid: u16,
    pub authreq: u16,
}

impl ConnectResponse {
    pub const fn to_dw0(self) -> u32 {
        self.cntlid as u32 | (self.authreq as u32) << 16
    }
    pub const fn from_dw0(dw0: u32) -> Self {
        ConnectResponse {
            cntlid: dw0 as u16,
            authreq: (dw0 >> 16) as u16,
        }
    }
}

/// dw0 of a Connect Invalid Parameters completion: IPO (byte offset of the bad field, bits 15:0)
/// and IATTR (bit 16: 1 = the offset is in the Connect data, 0 = in the SQE).
pub const fn connect_invalid_param_dw0(in_data: bool, offset: u16) -> u32 {
    offset as u32 | if in_data { 1 << 16 } else { 0 }
}

/// Property attribute size (ATTRIB bits 2:0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PropertySize {
    Four,
    Eight,
}

impl PropertySize {
    const fn from_attrib(a: u8) -> Option<Self> {
        match a & 0x7 {
            0 => Some(PropertySize::Four),
            1 => Some(PropertySize::Eight),
            _ => None,
        }
    }
    const fn attrib(self) -> u32 {
        match self {
            PropertySize::Four => 0,
            PropertySize::Eight => 1,
        }
    }
    pub const fn bytes(self) -> usize {
        match self {
            PropertySize::Four => 4,
            PropertySize::Eight => 8,
        }
    }
}

/// Property Get (fctype 0x04). The value comes back in the CQE's dw0 (and dw1 for 8 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PropertyGet {
    pub cid: Cid,
    pub size: PropertySize,
    pub offset: u32,
}

impl PropertyGet {
    pub fn to_sqe(&self) -> Sqe {
        let mut s = Sqe::new(AdminOpcode::Fabrics as u8, self.cid);
        s.nsid = Nsid(FabricsType::PropertyGet as u32);
        s.cdw10 = self.size.attrib();
        s.cdw11 = self.offset;
        s
    }
    pub fn from_sqe(s: &Sqe) -> Result<Self, ProtoError> {
        check_fabrics(s, FabricsType::PropertyGet)?;
        Ok(PropertyGet {
            cid: s.cid,
            size: PropertySize::from_attrib(s.cdw10 as u8).ok_or(ProtoError::InvalidField {
                field: "attrib",
                offset: 40,
                reason: "size is neither 4 nor 8 bytes",
            })?,
            offset: s.cdw11,
        })
    }
}

/// Property Set (fctype 0x00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PropertySet {
    pub cid: Cid,
    pub size: PropertySize,
    pub offset: u32,
    pub value: u64,
}

impl PropertySet {
    pub fn to_sqe(&self) -> Sqe {
        let mut s = Sqe::new(AdminOpcode::Fabrics as u8, self.cid);
        s.nsid = Nsid(FabricsType::PropertySet as u32);
        s.cdw10 = self.size.attrib();
        s.cdw11 = self.offset;
        s.cdw12 = self.value as u32;
        s.cdw13 = (self.value >> 32) as u32;
        s
    }
    pub fn from_sqe(s: &Sqe) -> Result<Self, ProtoError> {
        check_fabrics(s, FabricsType::PropertySet)?;
        let size = PropertySize::from_attrib(s.cdw10 as u8).ok_or(ProtoError::InvalidField {
            field: "attrib",
            offset: 40,
            reason: "size is neither 4 nor 8 bytes",
        })?;
        let value = match size {
            PropertySize::Four => s.cdw12 as u64,
            PropertySize::Eight => s.cdw12 as u64 | (s.cdw13 as u64) << 32,
        };
        Ok(PropertySet {
            cid: s.cid,
            size,
            offset: s.cdw11,
            value,
        })
    }
}

/// A fabrics Disconnect (fctype 0x08, NVMe-oF 1.1+).
pub fn disconnect_sqe(cid: Cid) -> Sqe {
    let mut s = Sqe::new(AdminOpcode::Fabrics as u8, cid);
    s.nsid = Nsid(FabricsType::Disconnect as u32);
    s
}

/// Controller property offsets and their sizes.
pub mod prop {
    use super::PropertySize;
    /// Controller Capabilities (8 bytes).
    pub const CAP: u32 = 0x00;
    /// Version (4 bytes).
    pub const VS: u32 = 0x08;
    /// Controller Configuration (4 bytes).
    pub const CC: u32 = 0x14;
    /// Controller Status (4 bytes).
    pub const CSTS: u32 = 0x1C;
    /// NVM Subsystem Reset (4 bytes).
    pub const NSSR: u32 = 0x20;

    /// The size of a known property, or `None` for an offset a fabrics controller does not define.
    pub const fn size_of(offset: u32) -> Option<PropertySize> {
        match offset {
            CAP => Some(PropertySize::Eight),
            VS | CC | CSTS | NSSR => Some(PropertySize::Four),
            _ => None,
        }
    }
}

/// CAP (Controller Capabilities) fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cap {
    /// Maximum queue entries supported, zero-based.
    pub mqes: u16,
    /// Contiguous queues required (always 1 for fabrics).
    pub cqr: bool,
    /// Arbitration mechanisms supported (bits 18:17).
    pub ams: u8,
    /// Worst-case time to ready, in 500 ms units.
    pub to: u8,
    /// Doorbell stride (0 for fabrics).
    pub dstrd: u8,
    pub nssrs: bool,
    /// Command sets supported (bits 44:37); bit 0 = NVM command set, bit 7 = no I/O command set.
    pub css: u8,
    pub bps: bool,
    /// Memory page size minimum/maximum (2^(12+n)).
    pub mpsmin: u8,
    pub mpsmax: u8,
}

impl Cap {
    pub const CSS_NVM: u8 = 1 << 0;
    pub const CSS_NO_IO: u8 = 1 << 7;

    pub const fn to_u64(self) -> u64 {
        self.mqes as u64
            | (self.cqr as u64) << 16
            | ((self.ams & 0x3) as u64) << 17
            | (self.to as u64) << 24
            | ((self.dstrd & 0xf) as u64) << 32
            | (self.nssrs as u64) << 36
            | (self.css as u64) << 37
            | (self.bps as u64) << 45
            | ((self.mpsmin & 0xf) as u64) << 48
            | ((self.mpsmax & 0xf) as u64) << 52
    }
    pub const fn from_u64(v: u64) -> Self {
        Cap {
            mqes: v as u16,
            cqr: (v >> 16) & 1 != 0,
            ams: ((v >> 17) & 0x3) as u8,
            to: (v >> 24) as u8,
            dstrd: ((v >> 32) & 0xf) as u8,
            nssrs: (v >> 36) & 1 != 0,
            css: (v >> 37) as u8,
            bps: (v >> 45) & 1 != 0,
            mpsmin: ((v >> 48) & 0xf) as u8,
            mpsmax: ((v >> 52) & 0xf) as u8,
        }
    }
}

/// VS (Version): major, minor, tertiary.
pub const fn version(major: u16, minor: u8, tertiary: u8) -> u32 {
    (major as u32) << 16 | (minor as u32) << 8 | tertiary as u32
}

/// NVMe 1.3 / 1.4 / 2.0 version values.
pub const VS_1_3: u32 = version(1, 3, 0);
pub const VS_1_4: u32 = version(1, 4, 0);
pub const VS_2_0: u32 = version(2, 0, 0);

/// CC (Controller Configuration) fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cc {
    pub en: bool,
    /// I/O command set selected (bits 6:4).
    pub css: u8,
    /// Memory page size 2^(12+mps) (bits 10:7).
    pub mps: u8,
    /// Arbitration mechanism (bits 13:11).
    pub ams: u8,
    /// Shutdown notification (bits 15:14): see [`shn`].
    pub shn: u8,
    /// I/O submission queue entry size, log2 (bits 19:16); 6 for 64 bytes.
    pub iosqes: u8,
    /// I/O completion queue entry size, log2 (bits 23:20); 4 for 16 bytes.
    pub iocqes: u8,
}

/// CC.SHN values.
pub mod shn {
    pub const NONE: u8 = 0;
    pub const NORMAL: u8 = 1;
    pub const ABRUPT: u8 = 2;
}

impl Cc {
    pub const fn to_u32(self) -> u32 {
        self.en as u32
            | ((self.css & 0x7) as u32) << 4
            | ((self.mps & 0xf) as u32) << 7
            | ((self.ams & 0x7) as u32) << 11
            | ((self.shn & 0x3) as u32) << 14
            | ((self.iosqes & 0xf) as u32) << 16
            | ((self.iocqes & 0xf) as u32) << 20
    }
    pub const fn from_u32(v: u32) -> Self {
        Cc {
            en: v & 1 != 0,
            css: ((v >> 4) & 0x7) as u8,
            mps: ((v >> 7) & 0xf) as u8,
            ams: ((v >> 11) & 0x7) as u8,
            shn: ((v >> 14) & 0x3) as u8,
            iosqes: ((v >> 16) & 0xf) as u8,
            iocqes: ((v >> 20) & 0xf) as u8,
        }
    }
}

/// CSTS (Controller Status) fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Csts {
    pub rdy: bool,
    /// Controller fatal status.
    pub cfs: bool,
    /// Shutdown status (bits 3:2): see [`shst`].
    pub shst: u8,
    pub nssro: bool,
    pub pp: bool,
}

/// CSTS.SHST values.
pub mod shst {
    pub const NORMAL: u8 = 0;
    pub const OCCURRING: u8 = 1;
    pub const COMPLETE: u8 = 2;
}

impl Csts {
    pub const fn to_u32(self) -> u32 {
        self.rdy as u32
            | (self.cfs as u32) << 1
            | ((self.shst & 0x3) as u32) << 2
            | (self.nssro as u32) << 4
            | (self.pp as u32) << 5
    }
    pub const fn from_u32(v: u32) -> Self {
        Csts {
            rdy: v & 1 != 0,
            cfs: (v >> 1) & 1 != 0,
            shst: ((v >> 2) & 0x3) as u8,
            nssro: (v >> 4) & 1 != 0,
            pp: (v >> 5) & 1 != 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> ConnectData {
        ConnectData {
            hostid: [0xab; 16],
            cntlid: CNTLID_DYNAMIC,
            subnqn: Nqn::new("nqn.2024-01.io.ringside:sub1").expect("valid nqn"),
            hostnqn: Nqn::new("nqn.2014-08.org.nvmexpress:uuid:1234").expect("valid nqn"),
        }
    }

    #[test]
    fn connect_sqe_layout_matches_spec_offsets() {
        let c = ConnectCmd {
            cid: Cid(7),
            sgl: SglDescriptor::in_capsule(0, 1024),
            recfmt: 0,
            qid: 3,
            sqsize: 127,
            cattr: cattr::DISABLE_SQ_FLOW_CONTROL,
            kato: 15000,
        };
        let b = c.to_sqe().to_bytes();
        assert_eq!(b[0], 0x7f);
        assert_eq!(b[4], 0x01, "fctype connect");
        assert_eq!(&b[42..44], &[3, 0], "qid at 42");
        assert_eq!(&b[44..46], &[127, 0], "sqsize at 44");
        assert_eq!(b[46], 4, "cattr at 46");
        assert_eq!(&b[48..52], &15000u32.to_le_bytes(), "kato at 48");
        let back = ConnectCmd::from_sqe(&Sqe::decode(&b)).expect("connect");
        assert_eq!(back, c);
        assert_eq!(back.queue_entries(), 128);
    }

    #[test]
    fn connect_data_round_trip_and_offsets() {
        let d = data();
        let b = d.to_bytes();
        assert_eq!(&b[16..18], &[0xff, 0xff]);
        assert_eq!(&b[256..260], b"nqn.");
        assert_eq!(&b[512..516], b"nqn.");
        assert_eq!(ConnectData::decode(&b), Ok(d));
    }

    #[test]
    fn connect_data_rejects_unterminated_and_non_utf8_nqn() {
        let mut b = data().to_bytes();
        b[256..512].fill(b'a');
        let e = ConnectData::decode(&b).expect_err("unterminated subnqn");
        assert!(
            matches!(e, ProtoError::InvalidField { offset: 256, .. }),
            "{e:?}"
        );
        let mut b = data().to_bytes();
        b[512] = 0xff;
        let e = ConnectData::decode(&b).expect_err("bad utf8");
        assert!(
            matches!(e, ProtoError::InvalidField { offset: 512, .. }),
            "{e:?}"
        );
        let mut b = data().to_bytes();
        b[256..256 + 224].fill(b'n');
        b[256 + 224] = 0;
        assert!(ConnectData::decode(&b).is_err(), "224-byte nqn is too long");
        assert!(ConnectData::decode(&b[..1000]).is_err(), "short");
    }

    #[test]
    fn property_set_get_round_trip() {
        let set = PropertySet {
            cid: Cid(2),
            size: PropertySize::Four,
            offset: prop::CC,
            value: Cc {
                en: true,
                iosqes: 6,
                iocqes: 4,
                ..Cc::default()
            }
            .to_u32() as u64,
        };
        let s = set.to_sqe();
        assert_eq!(s.to_bytes()[4], 0x00);
        assert_eq!(PropertySet::from_sqe(&s), Ok(set));
        assert_eq!(Cc::from_u32(set.value as u32).iosqes, 6);
        assert_eq!(set.value, 0x0046_0001);
        let get = PropertyGet {
            cid: Cid(3),
            size: PropertySize::Eight,
            offset: prop::CAP,
        };
        assert_eq!(PropertyGet::from_sqe(&get.to_sqe()), Ok(get));
        assert!(
            PropertyGet::from_sqe(&set.to_sqe()).is_err(),
            "wrong fctype"
        );
    }

    #[test]
    fn cap_bits() {
        let cap = Cap {
            mqes: 1023,
            cqr: true,
            to: 30,
            css: Cap::CSS_NVM,
            ..Cap::default()
        };
        let v = cap.to_u64();
        assert_eq!(v & 0xffff, 1023);
        assert_eq!((v >> 16) & 1, 1);
        assert_eq!((v >> 24) & 0xff, 30);
        assert_eq!((v >> 37) & 0xff, 1);
        assert_eq!(Cap::from_u64(v), cap);
        assert_eq!(
            Csts::from_u32(
                Csts {
                    rdy: true,
                    shst: shst::COMPLETE,
                    ..Csts::default()
                }
                .to_u32()
            )
            .shst,
            2
        );
        assert_eq!(VS_1_3, 0x0001_0300);
    }

    #[test]
    fn invalid_param_dw0() {
        assert_eq!(
            connect_invalid_param_dw0(true, connect_data_offset::HOSTNQN),
            0x1_0200
        );
        assert_eq!(
            connect_invalid_param_dw0(false, connect_cmd_offset::QID),
            42
        );
        assert_eq!(
            ConnectResponse::from_dw0(
                ConnectResponse {
                    cntlid: 5,
                    authreq: 0
                }
                .to_dw0()
            )
            .cntlid,
            5
        );
    }
}
