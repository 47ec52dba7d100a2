//! Identify data structures (NVMe Base 2.0, 5.17 and NVM Command Set 4.1.5): Identify
//! Controller (CNS 0x01), Identify Namespace (CNS 0x00), the active namespace id list
//! (CNS 0x02) and the namespace identification descriptor list (CNS 0x03).
//!
//! Slow path: these types own `String`s and `Vec`s and encode into caller buffers of
//! [`IDENTIFY_SIZE`] bytes. Decoders check lengths, text encodings and counts and never trust a
//! count to size an allocation.

use crate::bytes::{
    arr, put, put_text, put_u128, put_u16, put_u32, put_u64, text_field, u128_at, u16_at, u32_at,
    u64_at, u8_at,
};
use crate::fabrics::NQN_FIELD_SIZE;
use crate::nvme::Nsid;
use crate::ProtoError;

/// Every Identify data structure is 4096 bytes.
pub const IDENTIFY_SIZE: usize = 4096;

/// CNS values (Identify cdw10 bits 7:0).
pub mod cns {
    pub const NAMESPACE: u8 = 0x00;
    pub const CONTROLLER: u8 = 0x01;
    pub const ACTIVE_NS_LIST: u8 = 0x02;
    pub const NS_DESCRIPTOR_LIST: u8 = 0x03;
    pub const NVM_SET_LIST: u8 = 0x04;
    pub const IO_CS_NAMESPACE: u8 = 0x05;
    pub const IO_CS_CONTROLLER: u8 = 0x06;
    pub const IO_CS_ACTIVE_NS_LIST: u8 = 0x07;
    pub const IO_CS_INDEPENDENT_NAMESPACE: u8 = 0x08;
    pub const ALLOCATED_NS_LIST: u8 = 0x10;
    pub const ALLOCATED_NAMESPACE: u8 = 0x11;
    pub const NS_ATTACHED_CONTROLLER_LIST: u8 = 0x12;
    pub const CONTROLLER_LIST: u8 = 0x13;
    pub const IO_COMMAND_SET: u8 = 0x1C;
}

/// CNTRLTYPE values.
pub mod cntrltype {
    pub const IO: u8 = 1;
    pub const DISCOVERY: u8 = 2;
    pub const ADMIN: u8 = 3;
}

/// ONCS bits (optional NVM commands supported).
pub mod oncs {
    pub const COMPARE: u16 = 1 << 0;
    pub const WRITE_UNCORRECTABLE: u16 = 1 << 1;
    pub const DATASET_MANAGEMENT: u16 = 1 << 2;
    pub const WRITE_ZEROES: u16 = 1 << 3;
    pub const SAVE_SELECT_FEATURES: u16 = 1 << 4;
    pub const RESERVATIONS: u16 = 1 << 5;
    pub const TIMESTAMP: u16 = 1 << 6;
    pub const VERIFY: u16 = 1 << 7;
    pub const COPY: u16 = 1 << 8;
}

/// SGLS bits (SGL support).
pub mod sgls {
    /// SGLs supported, no alignment requirement (bits 1:0 = 01b).
    pub const SUPPORTED: u32 = 0b01;
    /// SGLs supported, dword alignment and granularity (bits 1:0 = 10b).
    pub const SUPPORTED_DWORD_ALIGNED: u32 = 0b10;
    pub const KEYED_DATA_BLOCK: u32 = 1 << 2;
    pub const BIT_BUCKET: u32 = 1 << 16;
    pub const BYTE_ALIGNED_CONTIGUOUS_MPTR: u32 = 1 << 17;
    pub const LONGER_THAN_DATA: u32 = 1 << 18;
    pub const MPTR_SINGLE_DESCRIPTOR: u32 = 1 << 19;
    /// The address field may be an offset (in-capsule data).
    pub const OFFSET: u32 = 1 << 20;
    pub const TRANSPORT_DATA_BLOCK: u32 = 1 << 21;
}

/// CMIC bits.
pub mod cmic {
    pub const MULTI_PORT: u8 = 1 << 0;
    pub const MULTI_CONTROLLER: u8 = 1 << 1;
    pub const SR_IOV: u8 = 1 << 2;
    pub const ANA_REPORTING: u8 = 1 << 3;
}

/// OACS bits (optional admin commands).
pub mod oacs {
    pub const SECURITY: u16 = 1 << 0;
    pub const FORMAT_NVM: u16 = 1 << 1;
    pub const FIRMWARE: u16 = 1 << 2;
    pub const NS_MANAGEMENT: u16 = 1 << 3;
    pub const SELF_TEST: u16 = 1 << 4;
    pub const DIRECTIVES: u16 = 1 << 5;
    pub const NVME_MI: u16 = 1 << 6;
    pub const VIRTUALIZATION: u16 = 1 << 7;
    pub const DOORBELL_BUFFER_CONFIG: u16 = 1 << 8;
    pub const GET_LBA_STATUS: u16 = 1 << 9;
}

/// LPA bits (log page attributes).
pub mod lpa {
    pub const SMART_PER_NAMESPACE: u8 = 1 << 0;
    pub const COMMANDS_EFFECTS: u8 = 1 << 1;
    /// Extended data for Get Log Page (NUMDU, LPOL/LPOU).
    pub const EXTENDED_DATA: u8 = 1 << 2;
    pub const TELEMETRY: u8 = 1 << 3;
    pub const PERSISTENT_EVENT: u8 = 1 << 4;
}

/// OAES bits (asynchronous events supported).
pub mod oaes {
    pub const NS_ATTRIBUTE: u32 = 1 << 8;
    pub const FIRMWARE_ACTIVATION: u32 = 1 << 9;
    pub const ANA_CHANGE: u32 = 1 << 11;
    pub const DISCOVERY_LOG_CHANGE: u32 = 1 << 31;
}

/// CTRATT bits.
pub mod ctratt {
    pub const HOST_ID_128: u32 = 1 << 0;
}

/// VWC bits.
pub mod vwc {
    pub const PRESENT: u8 = 1 << 0;
    /// Flush with NSID 0xFFFFFFFF is supported (bits 2:1 = 11b).
    pub const FLUSH_BROADCAST_SUPPORTED: u8 = 0b11 << 1;
    pub const FLUSH_BROADCAST_UNSUPPORTED: u8 = 0b10 << 1;
}

/// Identify Controller, the fields a target fills and an initiator reads. Text fields are ASCII;
/// SN, MN and FR are space padded on the wire, SUBNQN is NUL terminated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifyController {
    pub vid: u16,
    pub ssvid: u16,
    /// Serial number, at most 20 bytes.
    pub sn: String,
    /// Model number, at most 40 bytes.
    pub mn: String,
    /// Firmware revision, at most 8 bytes.
    pub fr: String,
    pub rab: u8,
    pub ieee: [u8; 3],
    pub cmic: u8,
    /// Maximum data transfer size, 2^n minimum pages (0 = no limit).
    pub mdts: u8,
    pub cntlid: u16,
    pub ver: u32,
    pub rtd3r: u32,
    pub rtd3e: u32,
    pub oaes: u32,
    pub ctratt: u32,
    pub cntrltype: u8,
    pub fguid: [u8; 16],
    pub crdt: [u16; 3],
    pub oacs: u16,
    /// Abort command limit, zero-based.
    pub acl: u8,
    /// Asynchronous event request limit, zero-based.
    pub aerl: u8,
    pub frmw: u8,
    pub lpa: u8,
    /// Error log page entries, zero-based.
    pub elpe: u8,
    /// Number of power states supported, zero-based.
    pub npss: u8,
    pub wctemp: u16,
    pub cctemp: u16,
    /// Keep alive granularity, 100 ms units.
    pub kas: u16,
    /// Max (bits 7:4) and required (bits 3:0) SQ entry size, log2: 0x66 for 64 bytes.
    pub sqes: u8,
    /// Max and required CQ entry size, log2: 0x44 for 16 bytes.
    pub cqes: u8,
    pub maxcmd: u16,
    pub nn: u32,
    pub oncs: u16,
    pub fuses: u16,
    pub fna: u8,
    pub vwc: u8,
    pub awun: u16,
    pub awupf: u16,
    pub acwu: u16,
    pub sgls: u32,
    pub mnan: u32,
    /// NVM subsystem NQN (may be empty for a PCIe controller).
    pub subnqn: String,
    /// I/O queue command capsule supported size, 16-byte units (>= 4: the SQE alone).
    pub ioccsz: u32,
    /// I/O queue response capsule supported size, 16-byte units (>= 1).
    pub iorcsz: u32,
    /// In-capsule data offset, 16-byte units.
    pub icdoff: u16,
    /// Bit 0: static controller model.
    pub fcatt: u8,
    /// Maximum SGL data block descriptors (0 = no limit).
    pub msdbd: u8,
    pub ofcs: u16,
    /// Power state 0 maximum power, centiwatts.
    pub ps0_max_power_cw: u16,
}

impl Default for IdentifyController {
    /// An NVMe-oF I/O controller as a minimal fabrics target presents itself.
    fn default() -> Self {
        IdentifyController {
            vid: 0,
            ssvid: 0,
            sn: String::new(),
            mn: String::new(),
            fr: String::new(),
            rab: 6,
            ieee: [0; 3],
            cmic: cmic::MULTI_PORT | cmic::MULTI_CONTROLLER,
            mdts: 5,
            cntlid: 0,
            ver: crate::fabrics::VS_1_3,
            rtd3r: 0,
            rtd3e: 0,
            oaes: 0,
            ctratt: ctratt::HOST_ID_128,
            cntrltype: cntrltype::IO,
            fguid: [0; 16],
            crdt: [0; 3],
            oacs: 0,
            acl: 3,
            aerl: 3,
            frmw: 0x3,
            lpa: lpa::EXTENDED_DATA,
            elpe: 127,
            npss: 0,
            wctemp: 0,
            cctemp: 0,
            kas: 10,
            sqes: 0x66,
            cqes: 0x44,
            maxcmd: 128,
            nn: 0,
            oncs: oncs::DATASET_MANAGEMENT | oncs::WRITE_ZEROES,
            fuses: 0,
            fna: 0,
            vwc: 0,
            awun: 0,
            awupf: 0,
            acwu: 0,
            sgls: sgls::SUPPORTED | sgls::OFFSET | sgls::TRANSPORT_DATA_BLOCK,
            mnan: 0,
            subnqn: String::new(),
            ioccsz: 4,
            iorcsz: 1,
            icdoff: 0,
            fcatt: 0,
            msdbd: 1,
            ofcs: 0,
            ps0_max_power_cw: 0,
        }
    }
}

fn need(b: &[u8], what: &'static str, n: usize) -> Result<(), ProtoError> {
    if b.len() < n {
        return Err(ProtoError::short(what, n, b.len()));
    }
    Ok(())
}

impl IdentifyController {
    pub const SUBNQN_OFFSET: usize = 768;
    pub const NVMF_OFFSET: usize = 1792;

    pub fn decode(b: &[u8]) -> Result<Self, ProtoError> {
        need(b, "identify controller", IDENTIFY_SIZE)?;
        let nqn_field = b.get(768..768 + NQN_FIELD_SIZE).unwrap_or_default();
        if !nqn_field.contains(&0) {
            return Err(ProtoError::InvalidField {
                field: "subnqn",
                offset: 768,
                reason: "not nul-terminated",
            });
        }
        Ok(IdentifyController {
            vid: u16_at(b, 0),
            ssvid: u16_at(b, 2),
            sn: text_field(b, 4, 20, "sn")?,
            mn: text_field(b, 24, 40, "mn")?,
            fr: text_field(b, 64, 8, "fr")?,
            rab: u8_at(b, 72),
            ieee: arr(b, 73),
            cmic: u8_at(b, 76),
            mdts: u8_at(b, 77),
            cntlid: u16_at(b, 78),
            ver: u32_at(b, 80),
            rtd3r: u32_at(b, 84),
            rtd3e: u32_at(b, 88),
            oaes: u32_at(b, 92),
            ctratt: u32_at(b, 96),
            cntrltype: u8_at(b, 111),
            fguid: arr(b, 112),
            crdt: [u16_at(b, 128), u16_at(b, 130), u16_at(b, 132)],
            oacs: u16_at(b, 256),
            acl: u8_at(b, 258),
            aerl: u8_at(b, 259),
            frmw: u8_at(b, 260),
            lpa: u8_at(b, 261),
            elpe: u8_at(b, 262),
            npss: u8_at(b, 263),
            wctemp: u16_at(b, 266),
            cctemp: u16_at(b, 268),
            kas: u16_at(b, 320),
            sqes: u8_at(b, 512),
            cqes: u8_at(b, 513),
            maxcmd: u16_at(b, 514),
            nn: u32_at(b, 516),
            oncs: u16_at(b, 520),
            fuses: u16_at(b, 522),
            fna: u8_at(b, 524),
            vwc: u8_at(b, 525),
            awun: u16_at(b, 526),
            awupf: u16_at(b, 528),
            acwu: u16_at(b, 532),
            sgls: u32_at(b, 536),
            mnan: u32_at(b, 540),
            subnqn: text_field(b, 768, NQN_FIELD_SIZE, "subnqn")?,
            ioccsz: u32_at(b, 1792),
            iorcsz: u32_at(b, 1796),
            icdoff: u16_at(b, 1800),
            fcatt: u8_at(b, 1802),
            msdbd: u8_at(b, 1803),
            ofcs: u16_at(b, 1804),
            ps0_max_power_cw: u16_at(b, 2048),
        })
    }

    /// Encode into the first 4096 bytes of `out` (all other bytes zero).
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, ProtoError> {
        need(out, "identify controller", IDENTIFY_SIZE)?;
        let b = out.get_mut(..IDENTIFY_SIZE).unwrap_or_default();
        b.fill(0);
        put_u16(b, 0, self.vid);
        put_u16(b, 2, self.ssvid);
        put_text(b, 4, 20, &self.sn, b' ', "sn")?;
        put_text(b, 24, 40, &self.mn, b' ', "mn")?;
        put_text(b, 64, 8, &self.fr, b' ', "fr")?;
        b[72] = self.rab;
        put(b, 73, &self.ieee);
        b[76] = self.cmic;
        b[77] = self.mdts;
        put_u16(b, 78, self.cntlid);
        put_u32(b, 80, self.ver);
        put_u32(b, 84, self.rtd3r);
        put_u32(b, 88, self.rtd3e);
        put_u32(b, 92, self.oaes);
        put_u32(b, 96, self.ctratt);
        b[111] = self.cntrltype;
        put(b, 112, &self.fguid);
        for (i, c) in self.crdt.iter().enumerate() {
            put_u16(b, 128 + 2 * i, *c);
        }
        put_u16(b, 256, self.oacs);
        b[258] = self.acl;
        b[259] = self.aerl;
        b[260] = self.frmw;
        b[261] = self.lpa;
        b[262] = self.elpe;
        b[263] = self.npss;
        put_u16(b, 266, self.wctemp);
        put_u16(b, 268, self.cctemp);
        put_u16(b, 320, self.kas);
        b[512] = self.sqes;
        b[513] = self.cqes;
        put_u16(b, 514, self.maxcmd);
        put_u32(b, 516, self.nn);
        put_u16(b, 520, self.oncs);
        put_u16(b, 522, self.fuses);
        b[524] = self.fna;
        b[525] = self.vwc;
        put_u16(b, 526, self.awun);
        put_u16(b, 528, self.awupf);
        put_u16(b, 532, self.acwu);
        put_u32(b, 536, self.sgls);
        put_u32(b, 540, self.mnan);
        put_text(b, 768, NQN_FIELD_SIZE, &self.subnqn, 0, "subnqn")?;
        put_u32(b, 1792, self.ioccsz);
        put_u32(b, 1796, self.iorcsz);
        put_u16(b, 1800, self.icdoff);
        b[1802] = self.fcatt;
        b[1803] = self.msdbd;
        put_u16(b, 1804, self.ofcs);
        put_u16(b, 2048, self.ps0_max_power_cw);
        Ok(IDENTIFY_SIZE)
    }

    pub fn to_vec(&self) -> Result<Vec<u8>, ProtoError> {
        let mut v = vec![0u8; IDENTIFY_SIZE];
        self.encode(&mut v)?;
        Ok(v)
    }

    /// In-capsule data bytes an I/O queue accepts: IOCCSZ * 16 - 64.
    pub const fn in_capsule_data_size(&self) -> u32 {
        (self.ioccsz.saturating_mul(16)).saturating_sub(64)
    }

    /// Maximum data transfer in bytes for a page size of `2^(12 + mpsmin)`, `None` = unlimited.
    pub fn max_transfer_bytes(&self, mpsmin: u8) -> Option<u64> {
        if self.mdts == 0 {
            return None;
        }
        1u64.checked_shl(12 + mpsmin as u32 + self.mdts as u32)
    }
}

/// One LBA format (LBAF entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LbaFormat {
    /// Metadata bytes per block.
    pub ms: u16,
    /// LBA data size, log2 (9 = 512 bytes, 12 = 4096). 0 = format not available.
    pub lbads: u8,
    /// Relative performance, 0 best .. 3 degraded.
    pub rp: u8,
}

impl LbaFormat {
    pub const fn to_u32(self) -> u32 {
        self.ms as u32 | (self.lbads as u32) << 16 | ((self.rp & 0x3) as u32) << 24
    }
    pub const fn from_u32(v: u32) -> Self {
        LbaFormat {
            ms: v as u16,
            lbads: (v >> 16) as u8,
            rp: ((v >> 24) & 0x3) as u8,
        }
    }
}

/// Most LBA formats a namespace can list.
pub const MAX_LBAF: usize = 64;

/// Identify Namespace (NVM command set).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdentifyNamespace {
    /// Size in logical blocks.
    pub nsze: u64,
    pub ncap: u64,
    pub nuse: u64,
    pub nsfeat: u8,
    /// Bits 3:0 (and 6:5) format index, bit 4 metadata at end of LBA.
    pub flbas: u8,
    pub mc: u8,
    pub dpc: u8,
    pub dps: u8,
    /// Bit 0: may be attached to more than one controller.
    pub nmic: u8,
    pub rescap: u8,
    pub fpi: u8,
    /// Deallocate logical block features (bits 2:0 = 001b: deallocated blocks read as zeroes).
    pub dlfeat: u8,
    pub nawun: u16,
    pub nawupf: u16,
    pub nacwu: u16,
    pub noiob: u16,
    pub nvmcap: u128,
    pub npwg: u16,
    pub npwa: u16,
    pub npdg: u16,
    pub npda: u16,
    pub nows: u16,
    pub anagrpid: u32,
    pub nsattr: u8,
    pub nvmsetid: u16,
    pub endgid: u16,
    pub nguid: [u8; 16],
    pub eui64: [u8; 8],
    /// LBA formats, 1..=64 entries (NLBAF is `len - 1` on the wire).
    pub lbaf: Vec<LbaFormat>,
}

/// NSFEAT bits.
pub mod nsfeat {
    pub const THIN_PROVISIONING: u8 = 1 << 0;
    pub const NS_ATOMIC: u8 = 1 << 1;
    pub const DEALLOCATED_ERROR: u8 = 1 << 2;
    pub const UID_REUSE: u8 = 1 << 3;
    pub const OPTIMAL_PERF: u8 = 1 << 4;
}

impl IdentifyNamespace {
    /// A namespace of `blocks` blocks of `2^lbads` bytes, no metadata, one LBA format,
    /// deallocated blocks read as zeroes.
    pub fn simple(blocks: u64, lbads: u8) -> Self {
        IdentifyNamespace {
            nsze: blocks,
            ncap: blocks,
            nuse: blocks,
            dlfeat: 0x1 | (1 << 3),
            lbaf: vec![LbaFormat {
                ms: 0,
                lbads,
                rp: 0,
            }],
            ..Default::default()
        }
    }

    /// Index of the format in use (FLBAS bits 3:0 plus bits 6:5 as the high bits).
    pub const fn format_index(&self) -> usize {
        ((self.flbas & 0xf) | ((self.flbas >> 5) & 0x3) << 4) as usize
    }

    /// Block size of the format in use, or `None` when FLBAS names a missing or invalid format.
    pub fn block_size(&self) -> Option<u32> {
        let f = self.lbaf.get(self.format_index())?;
        if !(9..=31).contains(&f.lbads) {
            return None;
        }
        Some(1u32 << f.lbads)
    }

    pub fn decode(b: &[u8]) -> Result<Self, ProtoError> {
        need(b, "identify namespace", IDENTIFY_SIZE)?;
        let nlbaf = u8_at(b, 25) as usize + 1;
        if nlbaf > MAX_LBAF {
            return Err(ProtoError::InvalidField {
                field: "nlbaf",
                offset: 25,
                reason: "more than 64 lba formats",
            });
        }
        let lbaf = (0..nlbaf)
            .map(|i| LbaFormat::from_u32(u32_at(b, 128 + 4 * i)))
            .collect();
        Ok(IdentifyNamespace {
            nsze: u64_at(b, 0),
            ncap: u64_at(b, 8),
            nuse: u64_at(b, 16),
            nsfeat: u8_at(b, 24),
            flbas: u8_at(b, 26),
            mc: u8_at(b, 27),
            dpc: u8_at(b, 28),
            dps: u8_at(b, 29),
            nmic: u8_at(b, 30),
            rescap: u8_at(b, 31),
            fpi: u8_at(b, 32),
            dlfeat: u8_at(b, 33),
            nawun: u16_at(b, 34),
            nawupf: u16_at(b, 36),
            nacwu: u16_at(b, 38),
            noiob: u16_at(b, 46),
            nvmcap: u128_at(b, 48),
            npwg: u16_at(b, 64),
            npwa: u16_at(b, 66),
            npdg: u16_at(b, 68),
            npda: u16_at(b, 70),
            nows: u16_at(b, 72),
            anagrpid: u32_at(b, 92),
            nsattr: u8_at(b, 99),
            nvmsetid: u16_at(b, 100),
            endgid: u16_at(b, 102),
            nguid: arr(b, 104),
            eui64: arr(b, 120),
            lbaf,
        })
    }

    pub fn encode(&self, out: &mut [u8]) -> Result<usize, ProtoError> {
        need(out, "identify namespace", IDENTIFY_SIZE)?;
        if self.lbaf.is_empty() || self.lbaf.len() > MAX_LBAF {
            return Err(ProtoError::OutOfRange {
                field: "number of lba formats (1..=64)",
                value: self.lbaf.len() as u64,
            });
        }
        let b = out.get_mut(..IDENTIFY_SIZE).unwrap_or_default();
        b.fill(0);
        put_u64(b, 0, self.nsze);
        put_u64(b, 8, self.ncap);
        put_u64(b, 16, self.nuse);
        b[24] = self.nsfeat;
        b[25] = (self.lbaf.len() - 1) as u8;
        b[26] = self.flbas;
        b[27] = self.mc;
        b[28] = self.dpc;
        b[29] = self.dps;
        b[30] = self.nmic;
        b[31] = self.rescap;
        b[32] = self.fpi;
        b[33] = self.dlfeat;
        put_u16(b, 34, self.nawun);
        put_u16(b, 36, self.nawupf);
        put_u16(b, 38, self.nacwu);
        put_u16(b, 46, self.noiob);
        put_u128(b, 48, self.nvmcap);
        put_u16(b, 64, self.npwg);
        put_u16(b, 66, self.npwa);
        put_u16(b, 68, self.npdg);
        put_u16(b, 70, self.npda);
        put_u16(b, 72, self.nows);
        put_u32(b, 92, self.anagrpid);
        b[99] = self.nsattr;
        put_u16(b, 100, self.nvmsetid);
        put_u16(b, 102, self.endgid);
        put(b, 104, &self.nguid);
        put(b, 120, &self.eui64);
        for (i, f) in self.lbaf.iter().enumerate() {
            put_u32(b, 128 + 4 * i, f.to_u32());
        }
        Ok(IDENTIFY_SIZE)
    }

    pub fn to_vec(&self) -> Result<Vec<u8>, ProtoError> {
        let mut v = vec![0u8; IDENTIFY_SIZE];
        self.encode(&mut v)?;
        Ok(v)
    }
}

/// Most namespace ids in an active namespace id list.
pub const NS_LIST_MAX: usize = IDENTIFY_SIZE / 4;

/// Encode an active namespace id list (CNS 0x02): the ids in `nsids` greater than `after`,
/// ascending, at most 1024, zero filled. `nsids` need not be sorted. Returns how many were listed.
pub fn encode_active_ns_list(
    nsids: &[Nsid],
    after: Nsid,
    out: &mut [u8],
) -> Result<usize, ProtoError> {
    need(out, "namespace list", IDENTIFY_SIZE)?;
    let b = out.get_mut(..IDENTIFY_SIZE).unwrap_or_default();
    b.fill(0);
    let mut ids: Vec<u32> = nsids
        .iter()
        .map(|n| n.0)
        .filter(|&n| n > after.0 && n != 0 && n != u32::MAX)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids.truncate(NS_LIST_MAX);
    for (i, id) in ids.iter().enumerate() {
        put_u32(b, 4 * i, *id);
    }
    Ok(ids.len())
}

/// Decode a namespace id list: ids up to the first zero. Errors if not strictly ascending.
pub fn decode_ns_list(b: &[u8]) -> Result<Vec<Nsid>, ProtoError> {
    let mut out = Vec::new();
    let mut prev = 0u32;
    for (i, c) in b.chunks_exact(4).enumerate() {
        let id = u32_at(c, 0);
        if id == 0 {
            break;
        }
        if id <= prev {
            return Err(ProtoError::InvalidField {
                field: "namespace list",
                offset: 4 * i,
                reason: "ids not strictly ascending",
            });
        }
        prev = id;
        out.push(Nsid(id));
    }
    Ok(out)
}

/// Namespace identification descriptor types (NIDT).
pub mod nidt {
    pub const EUI64: u8 = 1;
    pub const NGUID: u8 = 2;
    pub const UUID: u8 = 3;
    pub const CSI: u8 = 4;
}

/// Command set identifiers (CSI).
pub mod csi {
    pub const NVM: u8 = 0;
    pub const KEY_VALUE: u8 = 1;
    pub const ZONED: u8 = 2;
}

/// One namespace identification descriptor (CNS 0x03).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NsDescriptor {
    Eui64([u8; 8]),
    Nguid([u8; 16]),
    Uuid([u8; 16]),
    Csi(u8),
}

impl NsDescriptor {
    fn parts(&self) -> (u8, &[u8]) {
        match self {
            NsDescriptor::Eui64(v) => (nidt::EUI64, v),
            NsDescriptor::Nguid(v) => (nidt::NGUID, v),
            NsDescriptor::Uuid(v) => (nidt::UUID, v),
            NsDescriptor::Csi(v) => (nidt::CSI, std::slice::from_ref(v)),
        }
    }

    /// Encode a descriptor list into 4096 bytes (zero terminated).
    pub fn encode_list(list: &[NsDescriptor], out: &mut [u8]) -> Result<usize, ProtoError> {
        need(out, "namespace descriptor list", IDENTIFY_SIZE)?;
        let b = out.get_mut(..IDENTIFY_SIZE).unwrap_or_default();
        b.fill(0);
        let mut off = 0usize;
        for d in list {
            let (t, v) = d.parts();
            // Keep room for a terminating zero header.
            if off + 4 + v.len() + 4 > IDENTIFY_SIZE {
                return Err(ProtoError::OutOfRange {
                    field: "namespace descriptor list length",
                    value: list.len() as u64,
                });
            }
            b[off] = t;
            b[off + 1] = v.len() as u8;
            put(b, off + 4, v);
            off += 4 + v.len();
        }
        Ok(IDENTIFY_SIZE)
    }

    /// Decode a descriptor list, stopping at a zero NIDT. Unknown types are skipped; known types
    /// with the wrong NIDL and descriptors running past the buffer are errors.
    pub fn decode_list(b: &[u8]) -> Result<Vec<NsDescriptor>, ProtoError> {
        let mut out = Vec::new();
        let mut off = 0usize;
        while off + 4 <= b.len() {
            let t = u8_at(b, off);
            let l = u8_at(b, off + 1) as usize;
            if t == 0 {
                break;
            }
            let Some(v) = b.get(off + 4..off + 4 + l) else {
                return Err(ProtoError::InvalidField {
                    field: "nidl",
                    offset: off + 1,
                    reason: "descriptor runs past the end",
                });
            };
            let bad_len = || ProtoError::InvalidField {
                field: "nidl",
                offset: off + 1,
                reason: "wrong length for descriptor type",
            };
            let d = match t {
                nidt::EUI64 => Some(NsDescriptor::Eui64(v.try_into().map_err(|_| bad_len())?)),
                nidt::NGUID => Some(NsDescriptor::Nguid(v.try_into().map_err(|_| bad_len())?)),
                nidt::UUID => Some(NsDescriptor::Uuid(v.try_into().map_err(|_| bad_len())?)),
                nidt::CSI => match v {
                    [c] => Some(NsDescriptor::Csi(*c)),
                    _ => return Err(bad_len()),
                },
                _ => None,
            };
            out.extend(d);
            off += 4 + l;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctrl() -> IdentifyController {
        IdentifyController {
            vid: 0x1b36,
            sn: "RS0001".into(),
            mn: "ringside null".into(),
            fr: "0.1.0".into(),
            cntlid: 7,
            nn: 4,
            subnqn: "nqn.2024-01.io.ringside:null0".into(),
            ioccsz: (8192 + 64) / 16,
            ..IdentifyController::default()
        }
    }

    #[test]
    fn identify_controller_offsets() {
        let c = ctrl();
        let b = c.to_vec().expect("encode");
        assert_eq!(&b[0..2], &[0x36, 0x1b]);
        assert_eq!(&b[4..10], b"RS0001");
        assert_eq!(b[10], b' ', "sn space padded");
        assert_eq!(&b[78..80], &[7, 0], "cntlid");
        assert_eq!(b[111], 1, "cntrltype io");
        assert_eq!((b[512], b[513]), (0x66, 0x44));
        assert_eq!(&b[516..520], &[4, 0, 0, 0], "nn");
        assert_eq!(&b[768..772], b"nqn.");
        assert_eq!(
            u32::from_le_bytes([b[1792], b[1793], b[1794], b[1795]]),
            516,
            "ioccsz"
        );
        assert_eq!(c.in_capsule_data_size(), 8192);
        assert_eq!(IdentifyController::decode(&b), Ok(c));
    }

    #[test]
    fn identify_controller_rejects_too_long_strings_and_short_buffers() {
        let mut c = ctrl();
        c.sn = "x".repeat(21);
        assert!(c.to_vec().is_err());
        assert!(IdentifyController::decode(&[0u8; 4095]).is_err());
        let mut b = ctrl().to_vec().expect("encode");
        b[768..1024].fill(b'a');
        assert!(
            IdentifyController::decode(&b).is_err(),
            "unterminated subnqn"
        );
    }

    #[test]
    fn identify_namespace_round_trip_and_block_size() {
        let mut ns = IdentifyNamespace::simple(1 << 21, 12);
        ns.nguid = [3; 16];
        ns.lbaf.push(LbaFormat {
            ms: 8,
            lbads: 9,
            rp: 2,
        });
        let b = ns.to_vec().expect("encode");
        assert_eq!(&b[0..8], &(1u64 << 21).to_le_bytes());
        assert_eq!(b[25], 1, "nlbaf zero-based");
        assert_eq!(&b[128..132], &[0, 0, 12, 0]);
        assert_eq!(&b[132..136], &[8, 0, 9, 2]);
        let d = IdentifyNamespace::decode(&b).expect("decode");
        assert_eq!(d, ns);
        assert_eq!(d.block_size(), Some(4096));
        let mut b2 = b.clone();
        b2[25] = 64;
        assert!(IdentifyNamespace::decode(&b2).is_err(), "65 formats");
    }

    #[test]
    fn ns_list_filters_sorts_and_terminates() {
        let mut b = vec![0u8; 4096];
        let n = encode_active_ns_list(&[Nsid(5), Nsid(1), Nsid(3), Nsid(3)], Nsid(1), &mut b)
            .expect("encode");
        assert_eq!(n, 2);
        assert_eq!(decode_ns_list(&b), Ok(vec![Nsid(3), Nsid(5)]));
        b[8..12].copy_from_slice(&2u32.to_le_bytes());
        assert!(decode_ns_list(&b).is_err(), "descending");
    }

    #[test]
    fn ns_descriptors_round_trip() {
        let list = [
            NsDescriptor::Nguid([1; 16]),
            NsDescriptor::Eui64([2; 8]),
            NsDescriptor::Csi(csi::NVM),
        ];
        let mut b = vec![0u8; 4096];
        NsDescriptor::encode_list(&list, &mut b).expect("encode");
        assert_eq!(&b[0..4], &[2, 16, 0, 0]);
        assert_eq!(NsDescriptor::decode_list(&b), Ok(list.to_vec()));
        b[1] = 15;
        assert!(NsDescriptor::decode_list(&b).is_err(), "nguid of 15 bytes");
    }
}
