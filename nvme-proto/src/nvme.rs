//! NVMe queue entries (NVMe Base 2.0, 4.2 and 4.6): the 64-byte submission queue entry [`Sqe`],
//! the 16-byte completion queue entry [`Cqe`], the completion [`Status`], opcodes and feature ids.
//!
//! `Sqe` and `Cqe` are plain `Copy` values; decoding a 64-byte SQE never fails (any bit pattern is
//! some command, possibly an invalid one the target must answer), and the typed accessors for
//! I/O and admin commands read the command dwords without checking the opcode.

use crate::bytes::{arr, put_u16, put_u32, put_u64, u16_at, u32_at, u64_at};
use crate::sgl::SglDescriptor;
use crate::ProtoError;

/// Size of a submission queue entry (SQES = 6).
pub const SQE_SIZE: usize = 64;
/// Size of a completion queue entry (CQES = 4).
pub const CQE_SIZE: usize = 16;
/// Namespace id meaning "all namespaces" / "not namespace specific".
pub const NSID_ALL: Nsid = Nsid(0xffff_ffff);

/// Command identifier (unique per submission queue among outstanding commands).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Cid(pub u16);

/// Namespace identifier (1-based; 0 is invalid for I/O, 0xffffffff is broadcast).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Nsid(pub u32);

impl Nsid {
    /// A namespace id that can name one namespace (not 0, not broadcast).
    pub const fn is_valid_single(self) -> bool {
        self.0 != 0 && self.0 != NSID_ALL.0
    }
}

/// Admin command opcodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum AdminOpcode {
    DeleteIoSq = 0x00,
    CreateIoSq = 0x01,
    GetLogPage = 0x02,
    DeleteIoCq = 0x04,
    CreateIoCq = 0x05,
    Identify = 0x06,
    Abort = 0x08,
    SetFeatures = 0x09,
    GetFeatures = 0x0A,
    AsyncEventRequest = 0x0C,
    NamespaceManagement = 0x0D,
    FirmwareCommit = 0x10,
    FirmwareDownload = 0x11,
    NamespaceAttachment = 0x15,
    KeepAlive = 0x18,
    DirectiveSend = 0x19,
    DirectiveReceive = 0x1A,
    DoorbellBufferConfig = 0x7C,
    /// Fabrics commands (Connect, Property Get/Set, ...); the fctype is in byte 4.
    Fabrics = 0x7F,
    FormatNvm = 0x80,
    SecuritySend = 0x81,
    SecurityReceive = 0x82,
    Sanitize = 0x84,
}

impl AdminOpcode {
    pub const fn from_u8(v: u8) -> Option<Self> {
        use AdminOpcode::*;
        Some(match v {
            0x00 => DeleteIoSq,
            0x01 => CreateIoSq,
            0x02 => GetLogPage,
            0x04 => DeleteIoCq,
            0x05 => CreateIoCq,
            0x06 => Identify,
            0x08 => Abort,
            0x09 => SetFeatures,
            0x0A => GetFeatures,
            0x0C => AsyncEventRequest,
            0x0D => NamespaceManagement,
            0x10 => FirmwareCommit,
            0x11 => FirmwareDownload,
            0x15 => NamespaceAttachment,
            0x18 => KeepAlive,
            0x19 => DirectiveSend,
            0x1A => DirectiveReceive,
            0x7C => DoorbellBufferConfig,
            0x7F => Fabrics,
            0x80 => FormatNvm,
            0x81 => SecuritySend,
            0x82 => SecurityReceive,
            0x84 => Sanitize,
            _ => return None,
        })
    }
}

/// NVM command set I/O opcodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum IoOpcode {
    Flush = 0x00,
    Write = 0x01,
    Read = 0x02,
    WriteUncorrectable = 0x04,
    Compare = 0x05,
    WriteZeroes = 0x08,
    DatasetManagement = 0x09,
    Verify = 0x0C,
    ReservationRegister = 0x0D,
    ReservationReport = 0x0E,
    ReservationAcquire = 0x11,
    ReservationRelease = 0x15,
    Copy = 0x19,
    /// Fabrics commands may also arrive on I/O queues (e.g. Connect is on the queue it creates).
    Fabrics = 0x7F,
}

impl IoOpcode {
    pub const fn from_u8(v: u8) -> Option<Self> {
        use IoOpcode::*;
        Some(match v {
            0x00 => Flush,
            0x01 => Write,
            0x02 => Read,
            0x04 => WriteUncorrectable,
            0x05 => Compare,
            0x08 => WriteZeroes,
            0x09 => DatasetManagement,
            0x0C => Verify,
            0x0D => ReservationRegister,
            0x0E => ReservationReport,
            0x11 => ReservationAcquire,
            0x15 => ReservationRelease,
            0x19 => Copy,
            0x7F => Fabrics,
            _ => return None,
        })
    }

    /// Data direction from the opcode's low two bits (Base 2.0, figure 28): 01 host to
    /// controller, 10 controller to host, 11 bidirectional, 00 none.
    pub const fn direction(opcode: u8) -> DataDirection {
        match opcode & 0x3 {
            0 => DataDirection::None,
            1 => DataDirection::HostToController,
            2 => DataDirection::ControllerToHost,
            _ => DataDirection::Bidirectional,
        }
    }
}

/// Data transfer direction of a command (from the opcode's low two bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataDirection {
    None,
    HostToController,
    ControllerToHost,
    Bidirectional,
}

/// Feature identifiers (Get/Set Features cdw10 bits 7:0).
pub mod feature {
    pub const ARBITRATION: u8 = 0x01;
    pub const POWER_MANAGEMENT: u8 = 0x02;
    pub const LBA_RANGE_TYPE: u8 = 0x03;
    pub const TEMPERATURE_THRESHOLD: u8 = 0x04;
    pub const ERROR_RECOVERY: u8 = 0x05;
    pub const VOLATILE_WRITE_CACHE: u8 = 0x06;
    /// cdw11 / dw0: NSQR bits 15:0, NCQR bits 31:16, both zero-based.
    pub const NUMBER_OF_QUEUES: u8 = 0x07;
    pub const INTERRUPT_COALESCING: u8 = 0x08;
    pub const INTERRUPT_VECTOR_CONFIG: u8 = 0x09;
    pub const WRITE_ATOMICITY: u8 = 0x0A;
    pub const ASYNC_EVENT_CONFIG: u8 = 0x0B;
    pub const AUTONOMOUS_POWER_STATE: u8 = 0x0C;
    pub const HOST_MEMORY_BUFFER: u8 = 0x0D;
    pub const TIMESTAMP: u8 = 0x0E;
    /// cdw11: KATO in milliseconds.
    pub const KEEP_ALIVE_TIMER: u8 = 0x0F;
    pub const HOST_BEHAVIOR_SUPPORT: u8 = 0x16;
    pub const HOST_IDENTIFIER: u8 = 0x81;
    pub const RESERVATION_NOTIFICATION_MASK: u8 = 0x82;
    pub const RESERVATION_PERSISTENCE: u8 = 0x83;
}

/// Get Features select field (cdw10 bits 10:8).
pub mod feature_select {
    pub const CURRENT: u8 = 0;
    pub const DEFAULT: u8 = 1;
    pub const SAVED: u8 = 2;
    pub const SUPPORTED_CAPABILITIES: u8 = 3;
}

/// Status code type (bits 11:9 of the status field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Sct {
    Generic = 0,
    CommandSpecific = 1,
    MediaDataIntegrity = 2,
    PathRelated = 3,
    VendorSpecific = 7,
}

/// A completion status, in the layout Linux uses for `NVME_SC_*` (the CQE status field without
/// the phase bit): bits 7:0 SC, bits 10:8 SCT, bits 12:11 CRD, bit 13 More, bit 14 DNR.
///
/// The named constants carry neither DNR nor More; add them with [`Status::with_dnr`] and
/// compare codes with [`Status::code`] or [`Status::same_code`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Status(pub u16);

macro_rules! statuses {
    ($($(#[$m:meta])* $name:ident = ($sct:expr, $sc:expr);)*) => {
        impl Status {
            $($(#[$m])* pub const $name: Status = Status::new($sct as u8, $sc);)*

            /// The constant's name for known codes (ignoring DNR/More/CRD), for logs.
            pub fn name(self) -> Option<&'static str> {
                let c = self.code();
                $(if c == Status::$name.0 { return Some(stringify!($name)); })*
                None
            }
        }
    };
}

statuses! {
    SUCCESS = (Sct::Generic, 0x00);
    INVALID_OPCODE = (Sct::Generic, 0x01);
    INVALID_FIELD = (Sct::Generic, 0x02);
    COMMAND_ID_CONFLICT = (Sct::Generic, 0x03);
    DATA_TRANSFER_ERROR = (Sct::Generic, 0x04);
    ABORTED_POWER_LOSS = (Sct::Generic, 0x05);
    INTERNAL_ERROR = (Sct::Generic, 0x06);
    ABORT_REQUESTED = (Sct::Generic, 0x07);
    ABORTED_SQ_DELETED = (Sct::Generic, 0x08);
    ABORTED_FAILED_FUSED = (Sct::Generic, 0x09);
    ABORTED_MISSING_FUSED = (Sct::Generic, 0x0A);
    INVALID_NAMESPACE_OR_FORMAT = (Sct::Generic, 0x0B);
    COMMAND_SEQUENCE_ERROR = (Sct::Generic, 0x0C);
    INVALID_SGL_SEGMENT_DESCRIPTOR = (Sct::Generic, 0x0D);
    INVALID_NUMBER_OF_SGL_DESCRIPTORS = (Sct::Generic, 0x0E);
    /// "Data SGL Length Invalid".
    SGL_DATA_BLOCK_LENGTH_INVALID = (Sct::Generic, 0x0F);
    SGL_METADATA_LENGTH_INVALID = (Sct::Generic, 0x10);
    SGL_DESCRIPTOR_TYPE_INVALID = (Sct::Generic, 0x11);
    INVALID_USE_OF_CMB = (Sct::Generic, 0x12);
    PRP_OFFSET_INVALID = (Sct::Generic, 0x13);
    ATOMIC_WRITE_UNIT_EXCEEDED = (Sct::Generic, 0x14);
    OPERATION_DENIED = (Sct::Generic, 0x15);
    INVALID_SGL_OFFSET = (Sct::Generic, 0x16);
    HOST_ID_INCONSISTENT_FORMAT = (Sct::Generic, 0x18);
    KEEP_ALIVE_TIMER_EXPIRED = (Sct::Generic, 0x19);
    KEEP_ALIVE_TIMEOUT_INVALID = (Sct::Generic, 0x1A);
    ABORTED_PREEMPT_ABORT = (Sct::Generic, 0x1B);
    SANITIZE_FAILED = (Sct::Generic, 0x1C);
    SANITIZE_IN_PROGRESS = (Sct::Generic, 0x1D);
    SGL_DATA_BLOCK_GRANULARITY_INVALID = (Sct::Generic, 0x1E);
    COMMAND_NOT_SUPPORTED_FOR_QUEUE_IN_CMB = (Sct::Generic, 0x1F);
    NAMESPACE_WRITE_PROTECTED = (Sct::Generic, 0x20);
    COMMAND_INTERRUPTED = (Sct::Generic, 0x21);
    TRANSIENT_TRANSPORT_ERROR = (Sct::Generic, 0x22);
    LBA_OUT_OF_RANGE = (Sct::Generic, 0x80);
    CAPACITY_EXCEEDED = (Sct::Generic, 0x81);
    NAMESPACE_NOT_READY = (Sct::Generic, 0x82);
    RESERVATION_CONFLICT = (Sct::Generic, 0x83);
    FORMAT_IN_PROGRESS = (Sct::Generic, 0x84);

    COMPLETION_QUEUE_INVALID = (Sct::CommandSpecific, 0x00);
    INVALID_QUEUE_IDENTIFIER = (Sct::CommandSpecific, 0x01);
    INVALID_QUEUE_SIZE = (Sct::CommandSpecific, 0x02);
    ABORT_COMMAND_LIMIT_EXCEEDED = (Sct::CommandSpecific, 0x03);
    ASYNC_EVENT_REQUEST_LIMIT_EXCEEDED = (Sct::CommandSpecific, 0x05);
    INVALID_FIRMWARE_SLOT = (Sct::CommandSpecific, 0x06);
    INVALID_FIRMWARE_IMAGE = (Sct::CommandSpecific, 0x07);
    INVALID_INTERRUPT_VECTOR = (Sct::CommandSpecific, 0x08);
    INVALID_LOG_PAGE = (Sct::CommandSpecific, 0x09);
    INVALID_FORMAT = (Sct::CommandSpecific, 0x0A);
    FEATURE_NOT_SAVEABLE = (Sct::CommandSpecific, 0x0D);
    FEATURE_NOT_CHANGEABLE = (Sct::CommandSpecific, 0x0E);
    FEATURE_NOT_NAMESPACE_SPECIFIC = (Sct::CommandSpecific, 0x0F);
    NAMESPACE_ID_UNAVAILABLE = (Sct::CommandSpecific, 0x16);
    NAMESPACE_ALREADY_ATTACHED = (Sct::CommandSpecific, 0x18);
    NAMESPACE_NOT_ATTACHED = (Sct::CommandSpecific, 0x1A);
    INVALID_CONTROLLER_ID = (Sct::CommandSpecific, 0x1F);
    /// I/O command set specific: Conflicting Attributes (e.g. DSM).
    CONFLICTING_ATTRIBUTES = (Sct::CommandSpecific, 0x80);
    INVALID_PROTECTION_INFORMATION = (Sct::CommandSpecific, 0x81);
    ATTEMPTED_WRITE_TO_READ_ONLY_RANGE = (Sct::CommandSpecific, 0x82);

    /// Fabrics Connect: Incompatible Format (RECFMT not supported).
    CONNECT_INCOMPATIBLE_FORMAT = (Sct::CommandSpecific, 0x80);
    /// Fabrics Connect: Controller Busy (e.g. queue already connected).
    CONNECT_CONTROLLER_BUSY = (Sct::CommandSpecific, 0x81);
    /// Fabrics Connect: Invalid Parameters (dw0 holds IATTR/IPO, see `fabrics`).
    CONNECT_INVALID_PARAMETERS = (Sct::CommandSpecific, 0x82);
    CONNECT_RESTART_DISCOVERY = (Sct::CommandSpecific, 0x83);
    CONNECT_INVALID_HOST = (Sct::CommandSpecific, 0x84);
    INVALID_QUEUE_TYPE = (Sct::CommandSpecific, 0x85);
    DISCOVERY_RESTART = (Sct::CommandSpecific, 0x90);
    AUTHENTICATION_REQUIRED = (Sct::CommandSpecific, 0x91);

    WRITE_FAULT = (Sct::MediaDataIntegrity, 0x80);
    UNRECOVERED_READ_ERROR = (Sct::MediaDataIntegrity, 0x81);
    ACCESS_DENIED = (Sct::MediaDataIntegrity, 0x86);
    DEALLOCATED_OR_UNWRITTEN_BLOCK = (Sct::MediaDataIntegrity, 0x87);

    INTERNAL_PATH_ERROR = (Sct::PathRelated, 0x00);
    ANA_PERSISTENT_LOSS = (Sct::PathRelated, 0x01);
    ANA_INACCESSIBLE = (Sct::PathRelated, 0x02);
    ANA_TRANSITION = (Sct::PathRelated, 0x03);
    HOST_PATHING_ERROR = (Sct::PathRelated, 0x70);
}

impl Status {
    /// Like [`Status::name`], but resolves command-specific codes the command decides:
    /// SCT 1 codes 0x80..=0x91 of a Fabrics command (`opcode` 0x7F) are the Connect / discovery
    /// codes, not the I/O command set ones that share their values (fabrics command types
    /// other than Connect do not define command-specific codes in that range).
    pub fn name_for(self, opcode: u8) -> Option<&'static str> {
        if opcode == AdminOpcode::Fabrics as u8 && self.sct() == Sct::CommandSpecific as u8 {
            let fabrics = [
                Status::CONNECT_INCOMPATIBLE_FORMAT,
                Status::CONNECT_CONTROLLER_BUSY,
                Status::CONNECT_INVALID_PARAMETERS,
                Status::CONNECT_RESTART_DISCOVERY,
                Status::CONNECT_INVALID_HOST,
                Status::INVALID_QUEUE_TYPE,
                Status::DISCOVERY_RESTART,
                Status::AUTHENTICATION_REQUIRED,
            ];
            let names = [
                "CONNECT_INCOMPATIBLE_FORMAT",
                "CONNECT_CONTROLLER_BUSY",
                "CONNECT_INVALID_PARAMETERS",
                "CONNECT_RESTART_DISCOVERY",
                "CONNECT_INVALID_HOST",
                "INVALID_QUEUE_TYPE",
                "DISCOVERY_RESTART",
                "AUTHENTICATION_REQUIRED",
            ];
            if let Some(i) = fabrics.iter().position(|s| s.same_code(self)) {
                return names.get(i).copied();
            }
        }
        self.name()
    }

    pub const DNR: u16 = 1 << 14;
    pub const MORE: u16 = 1 << 13;

    pub const fn new(sct: u8, sc: u8) -> Self {
        Status((((sct & 0x7) as u16) << 8) | sc as u16)
    }
    pub const fn sc(self) -> u8 {
        (self.0 & 0xff) as u8
    }
    pub const fn sct(self) -> u8 {
        ((self.0 >> 8) & 0x7) as u8
    }
    /// Command Retry Delay index (0..=3).
    pub const fn crd(self) -> u8 {
        ((self.0 >> 11) & 0x3) as u8
    }
    pub const fn more(self) -> bool {
        self.0 & Self::MORE != 0
    }
    pub const fn dnr(self) -> bool {
        self.0 & Self::DNR != 0
    }
    pub const fn with_dnr(self) -> Self {
        Status(self.0 | Self::DNR)
    }
    pub const fn with_more(self) -> Self {
        Status(self.0 | Self::MORE)
    }
    pub const fn with_crd(self, crd: u8) -> Self {
        Status((self.0 & !(0x3 << 11)) | (((crd & 0x3) as u16) << 11))
    }
    /// SCT and SC only (bits 10:0).
    pub const fn code(self) -> u16 {
        self.0 & 0x7ff
    }
    pub const fn same_code(self, other: Status) -> bool {
        self.code() == other.code()
    }
    pub const fn is_success(self) -> bool {
        self.code() == 0
    }
    /// From the 16-bit CQE status field (phase in bit 0).
    pub const fn from_cqe_field(v: u16) -> (Status, bool) {
        (Status(v >> 1), v & 1 != 0)
    }
    /// To the 16-bit CQE status field with the given phase.
    pub const fn to_cqe_field(self, phase: bool) -> u16 {
        ((self.0 & 0x7fff) << 1) | phase as u16
    }
}

impl std::fmt::Debug for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Status(sct={:#x} sc={:#04x}", self.sct(), self.sc())?;
        if let Some(n) = self.name() {
            write!(f, " {n}")?;
        }
        if self.dnr() {
            f.write_str(" dnr")?;
        }
        if self.more() {
            f.write_str(" more")?;
        }
        f.write_str(")")
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// PSDT (byte 1 bits 7:6): how the data pointer is to be read.
pub mod psdt {
    pub const PRP: u8 = 0;
    /// SGL, metadata pointer is an address (what fabrics commands use).
    pub const SGL_MPTR_ADDRESS: u8 = 1;
    pub const SGL_MPTR_SGL: u8 = 2;
}

/// Fused operation (byte 1 bits 1:0).
pub mod fuse {
    pub const NORMAL: u8 = 0;
    pub const FIRST: u8 = 1;
    pub const SECOND: u8 = 2;
}

/// cdw12 bit 30 of Read/Write/Write Zeroes: Force Unit Access.
pub const CDW12_FUA: u32 = 1 << 30;
/// cdw12 bit 31 of Read/Write/Write Zeroes: Limited Retry.
pub const CDW12_LR: u32 = 1 << 31;
/// cdw12 bit 25 of Write Zeroes: Deallocate.
pub const CDW12_DEAC: u32 = 1 << 25;
/// cdw11 bit 2 of Dataset Management: Attribute - Deallocate.
pub const DSM_AD: u32 = 1 << 2;
/// cdw11 bit 1 of Dataset Management: Integral Dataset for Write.
pub const DSM_IDW: u32 = 1 << 1;
/// cdw11 bit 0 of Dataset Management: Integral Dataset for Read.
pub const DSM_IDR: u32 = 1 << 0;
/// Size of one Dataset Management range.
pub const DSM_RANGE_SIZE: usize = 16;
/// Most ranges one Dataset Management command carries (NR is 8 bits, zero-based).
pub const DSM_MAX_RANGES: usize = 256;

/// A 64-byte submission queue entry. Fields follow the common command format; for Fabrics
/// commands byte 4 (low byte of `nsid`) is the fctype (see [`crate::fabrics`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sqe {
    pub opcode: u8,
    /// Byte 1: FUSE in bits 1:0, PSDT in bits 7:6.
    pub flags: u8,
    pub cid: Cid,
    pub nsid: Nsid,
    pub cdw2: u32,
    pub cdw3: u32,
    pub mptr: u64,
    /// Bytes 24..40. Decoded as an SGL descriptor unless PSDT is PRP (then `Raw`); always an
    /// SGL for Fabrics commands (opcode 0x7F).
    pub dptr: SglDescriptor,
    pub cdw10: u32,
    pub cdw11: u32,
    pub cdw12: u32,
    pub cdw13: u32,
    pub cdw14: u32,
    pub cdw15: u32,
}

impl Sqe {
    /// A command with the given opcode and cid, PSDT = SGL (as fabrics require), all else zero.
    pub const fn new(opcode: u8, cid: Cid) -> Self {
        Sqe {
            opcode,
            flags: psdt::SGL_MPTR_ADDRESS << 6,
            cid,
            nsid: Nsid(0),
            cdw2: 0,
            cdw3: 0,
            mptr: 0,
            dptr: SglDescriptor::Raw([0; 16]),
            cdw10: 0,
            cdw11: 0,
            cdw12: 0,
            cdw13: 0,
            cdw14: 0,
            cdw15: 0,
        }
    }

    /// Decode 64 bytes. Never fails; validation of fields is the receiver's job.
    pub fn decode(b: &[u8; SQE_SIZE]) -> Self {
        let flags = b[1];
        let dptr_bytes: [u8; 16] = arr(b, 24);
        // Fabrics commands always carry an SGL (their byte 1 is reserved, and some hosts leave
        // it zero); other commands follow PSDT.
        let dptr = if flags >> 6 == psdt::PRP && b[0] != AdminOpcode::Fabrics as u8 {
            SglDescriptor::Raw(dptr_bytes)
        } else {
            SglDescriptor::decode(&dptr_bytes)
        };
        Sqe {
            opcode: b[0],
            flags,
            cid: Cid(u16_at(b, 2)),
            nsid: Nsid(u32_at(b, 4)),
            cdw2: u32_at(b, 8),
            cdw3: u32_at(b, 12),
            mptr: u64_at(b, 16),
            dptr,
            cdw10: u32_at(b, 40),
            cdw11: u32_at(b, 44),
            cdw12: u32_at(b, 48),
            cdw13: u32_at(b, 52),
            cdw14: u32_at(b, 56),
            cdw15: u32_at(b, 60),
        }
    }

    /// Decode from a slice that must hold at least 64 bytes.
    pub fn from_slice(b: &[u8]) -> Result<Self, ProtoError> {
        let a: &[u8; SQE_SIZE] = b
            .get(..SQE_SIZE)
            .and_then(|s| s.try_into().ok())
            .ok_or(ProtoError::short("sqe", SQE_SIZE, b.len()))?;
        Ok(Self::decode(a))
    }

    pub fn encode(&self, out: &mut [u8; SQE_SIZE]) {
        out[0] = self.opcode;
        out[1] = self.flags;
        put_u16(out, 2, self.cid.0);
        put_u32(out, 4, self.nsid.0);
        put_u32(out, 8, self.cdw2);
        put_u32(out, 12, self.cdw3);
        put_u64(out, 16, self.mptr);
        out[24..40].copy_from_slice(&self.dptr.to_bytes());
        put_u32(out, 40, self.cdw10);
        put_u32(out, 44, self.cdw11);
        put_u32(out, 48, self.cdw12);
        put_u32(out, 52, self.cdw13);
        put_u32(out, 56, self.cdw14);
        put_u32(out, 60, self.cdw15);
    }

    pub fn to_bytes(&self) -> [u8; SQE_SIZE] {
        let mut b = [0u8; SQE_SIZE];
        self.encode(&mut b);
        b
    }

    pub const fn fuse(&self) -> u8 {
        self.flags & 0x3
    }
    pub const fn psdt(&self) -> u8 {
        self.flags >> 6
    }
    /// Fabrics command type (byte 4), meaningful when `opcode == 0x7F`.
    pub const fn fctype(&self) -> u8 {
        (self.nsid.0 & 0xff) as u8
    }
    pub const fn is_fabrics(&self) -> bool {
        self.opcode == AdminOpcode::Fabrics as u8
    }

    // ---- I/O command accessors (Read, Write, Write Zeroes, Compare, Verify) ----

    /// Starting LBA (cdw10 | cdw11 << 32).
    pub const fn slba(&self) -> u64 {
        self.cdw10 as u64 | (self.cdw11 as u64) << 32
    }
    /// Number of logical blocks, 1..=65536 (the NLB field is zero-based).
    pub const fn nlb(&self) -> u32 {
        (self.cdw12 & 0xffff) + 1
    }
    pub const fn fua(&self) -> bool {
        self.cdw12 & CDW12_FUA != 0
    }
    pub const fn limited_retry(&self) -> bool {
        self.cdw12 & CDW12_LR != 0
    }
    /// Write Zeroes: deallocate bit.
    pub const fn deac(&self) -> bool {
        self.cdw12 & CDW12_DEAC != 0
    }
    /// Dataset Management: number of ranges, 1..=256 (NR is zero-based).
    pub const fn dsm_nr(&self) -> u32 {
        (self.cdw10 & 0xff) + 1
    }
    /// Dataset Management: cdw11 attributes (AD, IDW, IDR).
    pub const fn dsm_attributes(&self) -> u32 {
        self.cdw11
    }

    // ---- Admin accessors ----

    /// Identify: CNS (cdw10 bits 7:0).
    pub const fn identify_cns(&self) -> u8 {
        (self.cdw10 & 0xff) as u8
    }
    /// Identify: CNTID (cdw10 bits 31:16).
    pub const fn identify_cntid(&self) -> u16 {
        (self.cdw10 >> 16) as u16
    }
    /// Identify: CSI (cdw11 bits 31:24).
    pub const fn identify_csi(&self) -> u8 {
        (self.cdw11 >> 24) as u8
    }
    /// Get/Set Features: feature id (cdw10 bits 7:0).
    pub const fn feature_id(&self) -> u8 {
        (self.cdw10 & 0xff) as u8
    }
    /// Get Features: select (cdw10 bits 10:8).
    pub const fn feature_select(&self) -> u8 {
        ((self.cdw10 >> 8) & 0x7) as u8
    }
    /// Set Features: save (cdw10 bit 31).
    pub const fn feature_save(&self) -> bool {
        self.cdw10 & (1 << 31) != 0
    }
    /// Abort: (SQID, CID) of the command to abort (cdw10 bits 15:0 and 31:16).
    pub const fn abort_target(&self) -> (u16, Cid) {
        ((self.cdw10 & 0xffff) as u16, Cid((self.cdw10 >> 16) as u16))
    }

    // ---- Constructors ----

    fn io(
        opcode: IoOpcode,
        cid: Cid,
        nsid: Nsid,
        slba: u64,
        blocks: u32,
    ) -> Result<Self, ProtoError> {
        if blocks == 0 || blocks > 0x1_0000 {
            return Err(ProtoError::OutOfRange {
                field: "number of logical blocks",
                value: blocks as u64,
            });
        }
        let mut s = Sqe::new(opcode as u8, cid);
        s.nsid = nsid;
        s.cdw10 = slba as u32;
        s.cdw11 = (slba >> 32) as u32;
        s.cdw12 = blocks - 1;
        Ok(s)
    }

    /// Read `blocks` (1..=65536) logical blocks at `slba` into `dptr`.
    pub fn read(
        cid: Cid,
        nsid: Nsid,
        slba: u64,
        blocks: u32,
        dptr: SglDescriptor,
    ) -> Result<Self, ProtoError> {
        let mut s = Self::io(IoOpcode::Read, cid, nsid, slba, blocks)?;
        s.dptr = dptr;
        Ok(s)
    }

    /// Write `blocks` (1..=65536) logical blocks at `slba` from `dptr`.
    pub fn write(
        cid: Cid,
        nsid: Nsid,
        slba: u64,
        blocks: u32,
        dptr: SglDescriptor,
    ) -> Result<Self, ProtoError> {
        let mut s = Self::io(IoOpcode::Write, cid, nsid, slba, blocks)?;
        s.dptr = dptr;
        Ok(s)
    }

    /// Set or clear Force Unit Access (Read, Write, Write Zeroes).
    pub const fn with_fua(mut self, fua: bool) -> Self {
        if fua {
            self.cdw12 |= CDW12_FUA;
        } else {
            self.cdw12 &= !CDW12_FUA;
        }
        self
    }

    pub fn flush(cid: Cid, nsid: Nsid) -> Self {
        let mut s = Sqe::new(IoOpcode::Flush as u8, cid);
        s.nsid = nsid;
        s
    }

    /// Write Zeroes over `blocks` (1..=65536) blocks; `deallocate` sets DEAC.
    pub fn write_zeroes(
        cid: Cid,
        nsid: Nsid,
        slba: u64,
        blocks: u32,
        deallocate: bool,
    ) -> Result<Self, ProtoError> {
        let mut s = Self::io(IoOpcode::WriteZeroes, cid, nsid, slba, blocks)?;
        if deallocate {
            s.cdw12 |= CDW12_DEAC;
        }
        Ok(s)
    }

    /// Dataset Management with `ranges` (1..=256) ranges carried in `dptr`; `attributes` is a
    /// combination of [`DSM_AD`], [`DSM_IDW`], [`DSM_IDR`].
    pub fn dataset_management(
        cid: Cid,
        nsid: Nsid,
        ranges: u32,
        attributes: u32,
        dptr: SglDescriptor,
    ) -> Result<Self, ProtoError> {
        if ranges == 0 || ranges as usize > DSM_MAX_RANGES {
            return Err(ProtoError::OutOfRange {
                field: "dataset management ranges",
                value: ranges as u64,
            });
        }
        let mut s = Sqe::new(IoOpcode::DatasetManagement as u8, cid);
        s.nsid = nsid;
        s.cdw10 = ranges - 1;
        s.cdw11 = attributes;
        s.dptr = dptr;
        Ok(s)
    }

    /// Identify with the given CNS (see `identify::cns` constants), CNTID 0, CSI 0.
    pub fn identify(cid: Cid, nsid: Nsid, cns: u8, dptr: SglDescriptor) -> Self {
        let mut s = Sqe::new(AdminOpcode::Identify as u8, cid);
        s.nsid = nsid;
        s.cdw10 = cns as u32;
        s.dptr = dptr;
        s
    }

    /// Get Log Page for `numd_bytes` bytes (multiple of 4, at least 4) from byte `offset`.
    pub fn get_log_page(
        cid: Cid,
        nsid: Nsid,
        lid: u8,
        len_bytes: u32,
        offset: u64,
        dptr: SglDescriptor,
    ) -> Result<Self, ProtoError> {
        if len_bytes < 4 || len_bytes % 4 != 0 || offset % 4 != 0 {
            return Err(ProtoError::OutOfRange {
                field: "log page length/offset (dword multiple)",
                value: len_bytes as u64,
            });
        }
        let numd = len_bytes / 4 - 1;
        let mut s = Sqe::new(AdminOpcode::GetLogPage as u8, cid);
        s.nsid = nsid;
        s.cdw10 = lid as u32 | (numd & 0xffff) << 16;
        s.cdw11 = numd >> 16;
        s.cdw12 = offset as u32;
        s.cdw13 = (offset >> 32) as u32;
        s.dptr = dptr;
        Ok(s)
    }

    pub fn get_features(cid: Cid, fid: u8, select: u8, cdw11: u32) -> Self {
        let mut s = Sqe::new(AdminOpcode::GetFeatures as u8, cid);
        s.cdw10 = fid as u32 | ((select as u32 & 0x7) << 8);
        s.cdw11 = cdw11;
        s
    }

    pub fn set_features(cid: Cid, fid: u8, save: bool, cdw11: u32) -> Self {
        let mut s = Sqe::new(AdminOpcode::SetFeatures as u8, cid);
        s.cdw10 = fid as u32 | if save { 1 << 31 } else { 0 };
        s.cdw11 = cdw11;
        s
    }

    /// Set Features / Number of Queues asking for `nsq` and `ncq` I/O queues (1-based counts,
    /// 1..=65535).
    pub fn set_number_of_queues(cid: Cid, nsq: u16, ncq: u16) -> Self {
        let enc = number_of_queues(nsq, ncq);
        Sqe::set_features(cid, feature::NUMBER_OF_QUEUES, false, enc)
    }

    pub fn keep_alive(cid: Cid) -> Self {
        Sqe::new(AdminOpcode::KeepAlive as u8, cid)
    }

    pub fn async_event_request(cid: Cid) -> Self {
        Sqe::new(AdminOpcode::AsyncEventRequest as u8, cid)
    }

    pub fn abort(cid: Cid, sqid: u16, target: Cid) -> Self {
        let mut s = Sqe::new(AdminOpcode::Abort as u8, cid);
        s.cdw10 = sqid as u32 | (target.0 as u32) << 16;
        s
    }
}

/// Encode queue counts (1-based, 1..=65535) as the Number of Queues dword (zero-based fields).
pub const fn number_of_queues(nsq: u16, ncq: u16) -> u32 {
    (nsq.saturating_sub(1) as u32) | (ncq.saturating_sub(1) as u32) << 16
}

/// Decode a Number of Queues dword into 1-based (submission, completion) counts.
pub const fn decode_number_of_queues(dw: u32) -> (u32, u32) {
    ((dw & 0xffff) + 1, (dw >> 16) + 1)
}

/// One Dataset Management range (16 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DsmRange {
    pub context_attributes: u32,
    /// Length in logical blocks (not zero-based).
    pub nlb: u32,
    pub slba: u64,
}

impl DsmRange {
    pub fn decode(b: &[u8; DSM_RANGE_SIZE]) -> Self {
        DsmRange {
            context_attributes: u32_at(b, 0),
            nlb: u32_at(b, 4),
            slba: u64_at(b, 8),
        }
    }
    pub fn encode(&self, out: &mut [u8; DSM_RANGE_SIZE]) {
        put_u32(out, 0, self.context_attributes);
        put_u32(out, 4, self.nlb);
        put_u64(out, 8, self.slba);
    }

    /// Iterate over the ranges in a DSM payload; a trailing partial range is an error item.
    pub fn iter(data: &[u8]) -> impl Iterator<Item = Result<DsmRange, ProtoError>> + '_ {
        let have = data.len();
        data.chunks(DSM_RANGE_SIZE)
            .map(move |c| match <&[u8; DSM_RANGE_SIZE]>::try_from(c) {
                Ok(a) => Ok(DsmRange::decode(a)),
                Err(_) => Err(ProtoError::short(
                    "dataset management range",
                    DSM_RANGE_SIZE,
                    have % DSM_RANGE_SIZE,
                )),
            })
    }
}

/// A 16-byte completion queue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cqe {
    /// Command specific (Connect: CNTLID; Property Get: value low; Number of Queues ...).
    pub dw0: u32,
    pub dw1: u32,
    /// Submission queue head pointer (fabrics with SQ flow control).
    pub sqhd: u16,
    pub sqid: u16,
    pub cid: Cid,
    pub status: Status,
    /// Phase tag (bit 0 of the status field); fabrics ignore it.
    pub phase: bool,
}

impl Cqe {
    /// A completion for `cid` with `status`, everything else zero.
    pub const fn new(cid: Cid, status: Status) -> Self {
        Cqe {
            dw0: 0,
            dw1: 0,
            sqhd: 0,
            sqid: 0,
            cid,
            status,
            phase: false,
        }
    }

    pub fn decode(b: &[u8; CQE_SIZE]) -> Self {
        let (status, phase) = Status::from_cqe_field(u16_at(b, 14));
        Cqe {
            dw0: u32_at(b, 0),
            dw1: u32_at(b, 4),
            sqhd: u16_at(b, 8),
            sqid: u16_at(b, 10),
            cid: Cid(u16_at(b, 12)),
            status,
            phase,
        }
    }

    pub fn from_slice(b: &[u8]) -> Result<Self, ProtoError> {
        let a: &[u8; CQE_SIZE] = b
            .get(..CQE_SIZE)
            .and_then(|s| s.try_into().ok())
            .ok_or(ProtoError::short("cqe", CQE_SIZE, b.len()))?;
        Ok(Self::decode(a))
    }

    pub fn encode(&self, out: &mut [u8; CQE_SIZE]) {
        put_u32(out, 0, self.dw0);
        put_u32(out, 4, self.dw1);
        put_u16(out, 8, self.sqhd);
        put_u16(out, 10, self.sqid);
        put_u16(out, 12, self.cid.0);
        put_u16(out, 14, self.status.to_cqe_field(self.phase));
    }

    pub fn to_bytes(&self) -> [u8; CQE_SIZE] {
        let mut b = [0u8; CQE_SIZE];
        self.encode(&mut b);
        b
    }

    /// The 64-bit result (dw0 | dw1 << 32), e.g. an 8-byte Property Get value.
    pub const fn result64(&self) -> u64 {
        self.dw0 as u64 | (self.dw1 as u64) << 32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqe_read_fields_land_at_spec_offsets() {
        let s = Sqe::read(
            Cid(0x1234),
            Nsid(1),
            0x0102_0304_0506_0708,
            8,
            SglDescriptor::tcp_transport(4096),
        )
        .expect("valid read")
        .with_fua(true);
        let b = s.to_bytes();
        assert_eq!(b[0], 0x02, "read opcode");
        assert_eq!(b[1] >> 6, 1, "psdt sgl");
        assert_eq!(&b[2..4], &[0x34, 0x12], "cid");
        assert_eq!(&b[4..8], &[1, 0, 0, 0], "nsid");
        assert_eq!(&b[40..48], &0x0102_0304_0506_0708u64.to_le_bytes(), "slba");
        assert_eq!(
            u32::from_le_bytes([b[48], b[49], b[50], b[51]]),
            7 | CDW12_FUA,
            "nlb zero-based + fua"
        );
        assert_eq!(b[39], 0x5A, "sgl identifier");
        let d = Sqe::decode(&b);
        assert_eq!(d, s);
        assert_eq!(d.slba(), 0x0102_0304_0506_0708);
        assert_eq!(d.nlb(), 8);
        assert!(d.fua());
    }

    #[test]
    fn io_constructor_rejects_zero_and_too_many_blocks() {
        let d = SglDescriptor::tcp_transport(0);
        assert!(Sqe::read(Cid(1), Nsid(1), 0, 0, d).is_err(), "0 blocks");
        assert!(
            Sqe::read(Cid(1), Nsid(1), 0, 65537, d).is_err(),
            "65537 blocks"
        );
        assert_eq!(
            Sqe::read(Cid(1), Nsid(1), 0, 65536, d).map(|s| s.nlb()),
            Ok(65536)
        );
    }

    #[test]
    fn cqe_status_and_phase_layout() {
        let c = Cqe {
            dw0: 0xaabbccdd,
            dw1: 1,
            sqhd: 5,
            sqid: 2,
            cid: Cid(9),
            status: Status::LBA_OUT_OF_RANGE.with_dnr(),
            phase: true,
        };
        let b = c.to_bytes();
        // SC 0x80 in bits 8:1, SCT 0 in 11:9, DNR bit 15, phase bit 0.
        assert_eq!(u16::from_le_bytes([b[14], b[15]]), (0x80 << 1) | 1 | 0x8000);
        assert_eq!(Cqe::decode(&b), c);
        let fab = Status::CONNECT_INVALID_HOST.to_cqe_field(false);
        assert_eq!(
            fab,
            (0x184u16) << 1,
            "linux NVME_SC_CONNECT_INVALID_HOST is 0x184"
        );
    }

    #[test]
    fn status_names_ignore_flags() {
        assert_eq!(
            Status::INVALID_FIELD.with_dnr().name(),
            Some("INVALID_FIELD")
        );
        assert!(Status::INVALID_FIELD
            .with_dnr()
            .same_code(Status::INVALID_FIELD));
        assert!(!Status::INVALID_FIELD.with_dnr().is_success());
        assert!(Status::SUCCESS.is_success());
        assert_eq!(Status::new(7, 0xff).name(), None);
        let ip = Status::CONNECT_INVALID_PARAMETERS.with_dnr();
        assert_eq!(ip.name_for(0x7f), Some("CONNECT_INVALID_PARAMETERS"));
        assert_eq!(
            ip.name_for(0x01),
            Some("ATTEMPTED_WRITE_TO_READ_ONLY_RANGE")
        );
        assert_eq!(Status::INVALID_FIELD.name_for(0x7f), Some("INVALID_FIELD"));
    }

    #[test]
    fn get_log_page_numd_split() {
        let s = Sqe::get_log_page(
            Cid(1),
            NSID_ALL,
            0x70,
            0x4_0000 * 4 + 8,
            4096,
            SglDescriptor::default(),
        )
        .expect("valid");
        let numd = (s.cdw10 >> 16) | (s.cdw11 & 0xffff) << 16;
        assert_eq!(numd, 0x4_0000 + 1, "numd zero-based");
        assert_eq!(s.cdw10 & 0xff, 0x70);
        assert_eq!(s.cdw12, 4096);
        assert!(Sqe::get_log_page(Cid(1), NSID_ALL, 2, 3, 0, SglDescriptor::default()).is_err());
    }

    #[test]
    fn prp_commands_keep_dptr_raw() {
        let mut s = Sqe::new(IoOpcode::Read as u8, Cid(1));
        s.flags = 0;
        s.dptr = SglDescriptor::prp(0x1000, 0x2000);
        let d = Sqe::decode(&s.to_bytes());
        assert_eq!(d.dptr, SglDescriptor::prp(0x1000, 0x2000));
    }

    #[test]
    fn fabrics_dptr_is_an_sgl_even_without_psdt() {
        let mut s = Sqe::new(AdminOpcode::Fabrics as u8, Cid(1));
        s.flags = 0;
        s.dptr = SglDescriptor::in_capsule(0, 1024);
        assert_eq!(
            Sqe::decode(&s.to_bytes()).dptr,
            SglDescriptor::in_capsule(0, 1024)
        );
    }

    #[test]
    fn dsm_ranges_iterate_and_flag_partial() {
        let mut buf = [0u8; 40];
        let r = DsmRange {
            context_attributes: 0,
            nlb: 8,
            slba: 100,
        };
        let mut a = [0u8; 16];
        r.encode(&mut a);
        buf[..16].copy_from_slice(&a);
        buf[16..32].copy_from_slice(&a);
        let v: Vec<_> = DsmRange::iter(&buf).collect();
        assert_eq!(v.len(), 3);
        assert_eq!(v[0], Ok(r));
        assert!(v[2].is_err(), "8 trailing bytes are a partial range");
    }
}
