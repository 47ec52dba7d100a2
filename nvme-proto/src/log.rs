//! Log pages (NVMe Base 2.0, 5.16): Get Log Page parameters, Error Information, SMART / Health,
//! Changed Namespace List, and the NVMe-oF Discovery log page.
//!
//! A target builds a whole page with these encoders and answers each Get Log Page with the
//! requested window of it ([`copy_log_window`]). Decoders never size an allocation from a count
//! read off the wire without checking it against the bytes actually present.

use crate::bytes::{
    put, put_text, put_u128, put_u16, put_u32, put_u64, text_field, u128_at, u16_at, u32_at,
    u64_at, u8_at,
};
use crate::fabrics::{Nqn, NQN_FIELD_SIZE};
use crate::nvme::{AdminOpcode, Cid, Nsid, Sqe, Status};
use crate::sgl::SglDescriptor;
use crate::ProtoError;

/// Log page identifiers.
pub mod lid {
    pub const ERROR_INFORMATION: u8 = 0x01;
    pub const SMART_HEALTH: u8 = 0x02;
    pub const FIRMWARE_SLOT: u8 = 0x03;
    pub const CHANGED_NS_LIST: u8 = 0x04;
    pub const COMMANDS_SUPPORTED_EFFECTS: u8 = 0x05;
    pub const DEVICE_SELF_TEST: u8 = 0x06;
    pub const TELEMETRY_HOST: u8 = 0x07;
    pub const TELEMETRY_CONTROLLER: u8 = 0x08;
    pub const ANA: u8 = 0x0C;
    pub const DISCOVERY: u8 = 0x70;
    pub const RESERVATION_NOTIFICATION: u8 = 0x80;
    pub const SANITIZE_STATUS: u8 = 0x81;
}

/// Get Log Page command fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetLogPage {
    pub lid: u8,
    /// Log specific field (cdw10 bits 14:8).
    pub lsp: u8,
    /// Retain asynchronous event (cdw10 bit 15).
    pub rae: bool,
    /// Number of dwords, 1-based (NUMDU:NUMDL + 1).
    pub numd: u32,
    /// Log specific identifier (cdw11 bits 31:16).
    pub lsi: u16,
    /// Byte offset into the page (LPOU:LPOL).
    pub offset: u64,
    /// UUID index (cdw14 bits 6:0).
    pub uuid_index: u8,
    /// Offset type (cdw14 bit 23): offset is an index, not bytes.
    pub ot: bool,
    pub csi: u8,
}

impl GetLogPage {
    pub const fn from_sqe(s: &Sqe) -> Self {
        let numd0 = (s.cdw10 >> 16) | (s.cdw11 & 0xffff) << 16;
        GetLogPage {
            lid: s.cdw10 as u8,
            lsp: ((s.cdw10 >> 8) & 0x7f) as u8,
            rae: s.cdw10 & (1 << 15) != 0,
            numd: numd0.wrapping_add(1),
            lsi: (s.cdw11 >> 16) as u16,
            offset: s.cdw12 as u64 | (s.cdw13 as u64) << 32,
            uuid_index: (s.cdw14 & 0x7f) as u8,
            ot: s.cdw14 & (1 << 23) != 0,
            csi: (s.cdw14 >> 24) as u8,
        }
    }

    /// Requested length in bytes (NUMD counts up to 2^32 dwords, so this is a u64).
    pub const fn len_bytes(&self) -> u64 {
        if self.numd == 0 {
            // NUMD field 0xffffffff + 1 wrapped: 2^32 dwords.
            (1u64 << 32) * 4
        } else {
            self.numd as u64 * 4
        }
    }

    pub fn to_sqe(&self, cid: Cid, nsid: Nsid, dptr: SglDescriptor) -> Sqe {
        let numd0 = self.numd.wrapping_sub(1);
        let mut s = Sqe::new(AdminOpcode::GetLogPage as u8, cid);
        s.nsid = nsid;
        s.cdw10 = self.lid as u32
            | ((self.lsp & 0x7f) as u32) << 8
            | if self.rae { 1 << 15 } else { 0 }
            | (numd0 & 0xffff) << 16;
        s.cdw11 = numd0 >> 16 | (self.lsi as u32) << 16;
        s.cdw12 = self.offset as u32;
        s.cdw13 = (self.offset >> 32) as u32;
        s.cdw14 = (self.uuid_index & 0x7f) as u32
            | if self.ot { 1 << 23 } else { 0 }
            | (self.csi as u32) << 24;
        s.dptr = dptr;
        s
    }
}

/// Copy the window `[offset, offset + out.len())` of a log page into `out`, zero-filling past
/// the page's end. An offset beyond the page is an error (the target answers Invalid Field).
pub fn copy_log_window(page: &[u8], offset: u64, out: &mut [u8]) -> Result<usize, ProtoError> {
    let off = usize::try_from(offset)
        .ok()
        .filter(|&o| o <= page.len())
        .ok_or(ProtoError::OutOfRange {
            field: "log page offset",
            value: offset,
        })?;
    out.fill(0);
    let src = page.get(off..).unwrap_or_default();
    let n = src.len().min(out.len());
    put(out, 0, src.get(..n).unwrap_or_default());
    Ok(out.len())
}

/// Size of an Error Information log entry.
pub const ERROR_ENTRY_SIZE: usize = 64;

/// One Error Information log entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ErrorLogEntry {
    /// Unique, incrementing error count (0 = empty entry).
    pub error_count: u64,
    pub sqid: u16,
    pub cid: Cid,
    pub status: Status,
    pub phase: bool,
    /// Byte (bits 7:0) and bit (bits 10:8) of the command parameter in error; 0xffff if n/a.
    pub parameter_error_location: u16,
    pub lba: u64,
    pub nsid: Nsid,
    pub vendor_specific_info: u8,
    pub trtype: u8,
    pub command_specific_info: u64,
    pub transport_specific_info: u16,
}

impl ErrorLogEntry {
    pub fn decode(b: &[u8]) -> Result<Self, ProtoError> {
        if b.len() < ERROR_ENTRY_SIZE {
            return Err(ProtoError::short(
                "error log entry",
                ERROR_ENTRY_SIZE,
                b.len(),
            ));
        }
        let (status, phase) = Status::from_cqe_field(u16_at(b, 12));
        Ok(ErrorLogEntry {
            error_count: u64_at(b, 0),
            sqid: u16_at(b, 8),
            cid: Cid(u16_at(b, 10)),
            status,
            phase,
            parameter_error_location: u16_at(b, 14),
            lba: u64_at(b, 16),
            nsid: Nsid(u32_at(b, 24)),
            vendor_specific_info: u8_at(b, 28),
            trtype: u8_at(b, 29),
            command_specific_info: u64_at(b, 32),
            transport_specific_info: u16_at(b, 40),
        })
    }

    pub fn encode(&self, out: &mut [u8]) -> Result<usize, ProtoError> {
        let have = out.len();
        let b = out.get_mut(..ERROR_ENTRY_SIZE).ok_or(ProtoError::short(
            "error log entry",
            ERROR_ENTRY_SIZE,
            have,
        ))?;
        b.fill(0);
        put_u64(b, 0, self.error_count);
        put_u16(b, 8, self.sqid);
        put_u16(b, 10, self.cid.0);
        put_u16(b, 12, self.status.to_cqe_field(self.phase));
        put_u16(b, 14, self.parameter_error_location);
        put_u64(b, 16, self.lba);
        put_u32(b, 24, self.nsid.0);
        b[28] = self.vendor_specific_info;
        b[29] = self.trtype;
        put_u64(b, 32, self.command_specific_info);
        put_u16(b, 40, self.transport_specific_info);
        Ok(ERROR_ENTRY_SIZE)
    }
}

/// Size of the SMART / Health Information log.
pub const SMART_SIZE: usize = 512;

/// SMART / Health Information (controller-wide or per namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SmartLog {
    pub critical_warning: u8,
    /// Composite temperature, kelvin.
    pub composite_temperature: u16,
    pub available_spare: u8,
    pub available_spare_threshold: u8,
    pub percentage_used: u8,
    pub endurance_group_critical_warning: u8,
    /// In thousands of 512-byte units (rounded up).
    pub data_units_read: u128,
    pub data_units_written: u128,
    pub host_read_commands: u128,
    pub host_write_commands: u128,
    /// Minutes.
    pub controller_busy_time: u128,
    pub power_cycles: u128,
    pub power_on_hours: u128,
    pub unsafe_shutdowns: u128,
    pub media_errors: u128,
    pub error_log_entries: u128,
    pub warning_temperature_time: u32,
    pub critical_temperature_time: u32,
    /// Temperature sensors 1..8, kelvin (0 = not implemented).
    pub temperature_sensors: [u16; 8],
}

impl SmartLog {
    /// Data units (thousands of 512-byte units, rounded up) for a byte count.
    pub const fn data_units(bytes: u128) -> u128 {
        bytes.div_ceil(512 * 1000)
    }

    pub fn decode(b: &[u8]) -> Result<Self, ProtoError> {
        if b.len() < SMART_SIZE {
            return Err(ProtoError::short("smart log", SMART_SIZE, b.len()));
        }
        let mut t = [0u16; 8];
        for (i, v) in t.iter_mut().enumerate() {
            *v = u16_at(b, 200 + 2 * i);
        }
        Ok(SmartLog {
            critical_warning: u8_at(b, 0),
            composite_temperature: u16_at(b, 1),
            available_spare: u8_at(b, 3),
            available_spare_threshold: u8_at(b, 4),
            percentage_used: u8_at(b, 5),
            endurance_group_critical_warning: u8_at(b, 6),
            data_units_read: u128_at(b, 32),
            data_units_written: u128_at(b, 48),
            host_read_commands: u128_at(b, 64),
            host_write_commands: u128_at(b, 80),
            controller_busy_time: u128_at(b, 96),
            power_cycles: u128_at(b, 112),
            power_on_hours: u128_at(b, 128),
            unsafe_shutdowns: u128_at(b, 144),
            media_errors: u128_at(b, 160),
            error_log_entries: u128_at(b, 176),
            warning_temperature_time: u32_at(b, 192),
            critical_temperature_time: u32_at(b, 196),
            temperature_sensors: t,
        })
    }

    pub fn encode(&self, out: &mut [u8]) -> Result<usize, ProtoError> {
        let have = out.len();
        let b =
            out.get_mut(..SMART_SIZE)
                .ok_or(ProtoError::short("smart log", SMART_SIZE, have))?;
        b.fill(0);
        b[0] = self.critical_warning;
        put_u16(b, 1, self.composite_temperature);
        b[3] = self.available_spare;
        b[4] = self.available_spare_threshold;
        b[5] = self.percentage_used;
        b[6] = self.endurance_group_critical_warning;
        put_u128(b, 32, self.data_units_read);
        put_u128(b, 48, self.data_units_written);
        put_u128(b, 64, self.host_read_commands);
        put_u128(b, 80, self.host_write_commands);
        put_u128(b, 96, self.controller_busy_time);
        put_u128(b, 112, self.power_cycles);
        put_u128(b, 128, self.power_on_hours);
        put_u128(b, 144, self.unsafe_shutdowns);
        put_u128(b, 160, self.media_errors);
        put_u128(b, 176, self.error_log_entries);
        put_u32(b, 192, self.warning_temperature_time);
        put_u32(b, 196, self.critical_temperature_time);
        for (i, v) in self.temperature_sensors.iter().enumerate() {
            put_u16(b, 200 + 2 * i, *v);
        }
        Ok(SMART_SIZE)
    }
}

/// Size of the Changed Namespace List log.
pub const CHANGED_NS_LIST_SIZE: usize = 4096;
const CHANGED_NS_MAX: usize = CHANGED_NS_LIST_SIZE / 4;

/// What a Changed Namespace List says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangedNamespaces {
    List(Vec<Nsid>),
    /// More than 1024 namespaces changed (first entry 0xffffffff).
    Overflow,
}

/// Encode the Changed Namespace List: up to 1024 ids, or the overflow marker if more.
pub fn encode_changed_ns_list(nsids: &[Nsid], out: &mut [u8]) -> Result<usize, ProtoError> {
    let have = out.len();
    let b = out
        .get_mut(..CHANGED_NS_LIST_SIZE)
        .ok_or(ProtoError::short(
            "changed namespace list",
            CHANGED_NS_LIST_SIZE,
            have,
        ))?;
    b.fill(0);
    if nsids.len() > CHANGED_NS_MAX {
        put_u32(b, 0, u32::MAX);
    } else {
        for (i, n) in nsids.iter().enumerate() {
            put_u32(b, 4 * i, n.0);
        }
    }
    Ok(CHANGED_NS_LIST_SIZE)
}

pub fn decode_changed_ns_list(b: &[u8]) -> ChangedNamespaces {
    if b.len() >= 4 && u32_at(b, 0) == u32::MAX {
        return ChangedNamespaces::Overflow;
    }
    ChangedNamespaces::List(
        b.chunks_exact(4)
            .take(CHANGED_NS_MAX)
            .map(|c| u32_at(c, 0))
            .take_while(|&n| n != 0)
            .map(Nsid)
            .collect(),
    )
}

/// Discovery log header and entry size.
pub const DISCOVERY_RECORD_SIZE: usize = 1024;

/// Transport types (TRTYPE).
pub mod trtype {
    pub const RDMA: u8 = 1;
    pub const FC: u8 = 2;
    pub const TCP: u8 = 3;
    pub const LOOP: u8 = 254;
}

/// RDMA transport specific address subtype (TSAS bytes 0..3 of an RDMA discovery entry).
pub mod rdma_tsas {
    /// Byte 0, RDMA_QPTYPE: reliable connected.
    pub const QPTYPE_RELIABLE_CONNECTED: u8 = 1;
    /// Byte 1, RDMA_PRTYPE: no provider specified.
    pub const PRTYPE_NOT_SPECIFIED: u8 = 1;
    /// Byte 2, RDMA_CMS: the RDMA IP connection management service (rdma-cm).
    pub const CMS_RDMA_CM: u8 = 1;
}

/// Address families (ADRFAM).
pub mod adrfam {
    pub const PCI: u8 = 0;
    pub const IPV4: u8 = 1;
    pub const IPV6: u8 = 2;
    pub const IB: u8 = 3;
    pub const FC: u8 = 4;
    pub const LOOP: u8 = 254;
}

/// Subsystem types (SUBTYPE).
pub mod subtype {
    /// A referral to another discovery service.
    pub const DISCOVERY_REFERRAL: u8 = 1;
    pub const NVME: u8 = 2;
    /// The discovery subsystem being queried (NVMe-oF 1.1+).
    pub const CURRENT_DISCOVERY: u8 = 3;
}

/// Transport requirements (TREQ).
pub mod treq {
    pub const SECURE_CHANNEL_NOT_SPECIFIED: u8 = 0;
    pub const SECURE_CHANNEL_REQUIRED: u8 = 1;
    pub const SECURE_CHANNEL_NOT_REQUIRED: u8 = 2;
    /// The controller supports disabling SQ flow control.
    pub const DISABLE_SQ_FLOW_CONTROL: u8 = 1 << 2;
}

/// Entry flags (EFLAGS).
pub mod eflags {
    pub const DUPLICATE_RETURNED_INFO: u16 = 1 << 0;
    pub const EXPLICIT_PERSISTENT_CONNECTION: u16 = 1 << 1;
    pub const NO_CDC_CONNECTIVITY: u16 = 1 << 2;
}

/// Discovery log page header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DiscoveryLogHeader {
    /// Generation counter: changes whenever the log changes.
    pub genctr: u64,
    pub numrec: u64,
    pub recfmt: u16,
}

impl DiscoveryLogHeader {
    /// Decode the first 16+ bytes of a discovery log (a host reads the header first to learn
    /// how many records to fetch).
    pub fn decode(b: &[u8]) -> Result<Self, ProtoError> {
        if b.len() < 18 {
            return Err(ProtoError::short("discovery log header", 18, b.len()));
        }
        Ok(DiscoveryLogHeader {
            genctr: u64_at(b, 0),
            numrec: u64_at(b, 8),
            recfmt: u16_at(b, 16),
        })
    }

    /// Bytes the whole log occupies, if representable.
    pub fn log_len(&self) -> Option<u64> {
        self.numrec
            .checked_add(1)?
            .checked_mul(DISCOVERY_RECORD_SIZE as u64)
    }
}

/// One discovery log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryEntry {
    pub trtype: u8,
    pub adrfam: u8,
    pub subtype: u8,
    pub treq: u8,
    pub portid: u16,
    /// 0xffff for the dynamic controller model.
    pub cntlid: u16,
    /// Admin max SQ size (entries).
    pub asqsz: u16,
    pub eflags: u16,
    /// Transport service id (TCP/RDMA: the port number as text), at most 32 bytes.
    pub trsvcid: String,
    pub subnqn: Nqn,
    /// Transport address (IP address as text), at most 256 bytes.
    pub traddr: String,
    /// Transport specific address subtype (TCP: byte 0 SECTYPE; RDMA: QPTYPE, PRTYPE, CMS, PKEY).
    pub tsas: [u8; 256],
}

impl DiscoveryEntry {
    /// An NVMe/TCP entry for `subnqn` at `traddr:port` (IPv4 unless the address has a ':').
    pub fn tcp(subnqn: Nqn, subtype: u8, traddr: &str, port: u16, portid: u16) -> Self {
        DiscoveryEntry {
            trtype: trtype::TCP,
            adrfam: if traddr.contains(':') {
                adrfam::IPV6
            } else {
                adrfam::IPV4
            },
            subtype,
            treq: treq::SECURE_CHANNEL_NOT_REQUIRED,
            portid,
            cntlid: crate::fabrics::CNTLID_DYNAMIC,
            asqsz: 32,
            eflags: 0,
            trsvcid: port.to_string(),
            subnqn,
            traddr: traddr.to_owned(),
            tsas: [0; 256],
        }
    }

    /// An NVMe/RDMA entry for `subnqn` at `traddr:port`: TSAS says reliable connected queue
    /// pairs, no particular provider, connections through the RDMA IP connection manager
    /// (RDMA transport specification, "Transport Specific Address Subtype").
    pub fn rdma(subnqn: Nqn, subtype: u8, traddr: &str, port: u16, portid: u16) -> Self {
        let mut e = DiscoveryEntry::tcp(subnqn, subtype, traddr, port, portid);
        e.trtype = trtype::RDMA;
        e.tsas[0] = rdma_tsas::QPTYPE_RELIABLE_CONNECTED;
        e.tsas[1] = rdma_tsas::PRTYPE_NOT_SPECIFIED;
        e.tsas[2] = rdma_tsas::CMS_RDMA_CM;
        e
    }

    /// Decode one 1024-byte entry; `base` is its offset in the page, for error reports.
    pub fn decode(b: &[u8], base: usize) -> Result<Self, ProtoError> {
        if b.len() < DISCOVERY_RECORD_SIZE {
            return Err(ProtoError::short(
                "discovery log entry",
                DISCOVERY_RECORD_SIZE,
                b.len(),
            ));
        }
        let shift = |e: ProtoError| match e {
            ProtoError::InvalidField {
                field,
                offset,
                reason,
            } => ProtoError::InvalidField {
                field,
                offset: base + offset,
                reason,
            },
            other => other,
        };
        Ok(DiscoveryEntry {
            trtype: u8_at(b, 0),
            adrfam: u8_at(b, 1),
            subtype: u8_at(b, 2),
            treq: u8_at(b, 3),
            portid: u16_at(b, 4),
            cntlid: u16_at(b, 6),
            asqsz: u16_at(b, 8),
            eflags: u16_at(b, 10),
            trsvcid: text_field(b, 32, 32, "trsvcid").map_err(shift)?,
            subnqn: Nqn::decode_field(b.get(256..512).unwrap_or_default(), 256).map_err(shift)?,
            traddr: text_field(b, 512, 256, "traddr").map_err(shift)?,
            tsas: crate::bytes::arr(b, 768),
        })
    }

    pub fn encode(&self, out: &mut [u8]) -> Result<usize, ProtoError> {
        let have = out.len();
        let b = out
            .get_mut(..DISCOVERY_RECORD_SIZE)
            .ok_or(ProtoError::short(
                "discovery log entry",
                DISCOVERY_RECORD_SIZE,
                have,
            ))?;
        b.fill(0);
        b[0] = self.trtype;
        b[1] = self.adrfam;
        b[2] = self.subtype;
        b[3] = self.treq;
        put_u16(b, 4, self.portid);
        put_u16(b, 6, self.cntlid);
        put_u16(b, 8, self.asqsz);
        put_u16(b, 10, self.eflags);
        // Text fields are NUL padded, as Linux nvmet sends them; a full-width value is allowed.
        put_text(b, 32, 32, &self.trsvcid, b' ', "trsvcid")?;
        if let Some(f) = b.get_mut(256..256 + NQN_FIELD_SIZE) {
            self.subnqn.encode_field(f);
        }
        put_text(b, 512, 256, &self.traddr, b' ', "traddr")?;
        put(b, 768, &self.tsas);
        // Replace the space padding with NULs (spaces only served to allow full-width values).
        for range in [32..64, 512..768] {
            if let Some(f) = b.get_mut(range) {
                let used = f.iter().rposition(|&c| c != b' ').map_or(0, |p| p + 1);
                if let Some(pad) = f.get_mut(used..) {
                    pad.fill(0);
                }
            }
        }
        Ok(DISCOVERY_RECORD_SIZE)
    }
}

/// A whole discovery log page.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiscoveryLog {
    pub genctr: u64,
    pub recfmt: u16,
    pub entries: Vec<DiscoveryEntry>,
}

impl DiscoveryLog {
    pub fn len_bytes(&self) -> usize {
        DISCOVERY_RECORD_SIZE * (1 + self.entries.len())
    }

    pub fn encode(&self, out: &mut [u8]) -> Result<usize, ProtoError> {
        let total = self.len_bytes();
        if out.len() < total {
            return Err(ProtoError::short("discovery log", total, out.len()));
        }
        let (h, rest) = out.split_at_mut(DISCOVERY_RECORD_SIZE);
        h.fill(0);
        put_u64(h, 0, self.genctr);
        put_u64(h, 8, self.entries.len() as u64);
        put_u16(h, 16, self.recfmt);
        for (e, chunk) in self
            .entries
            .iter()
            .zip(rest.chunks_mut(DISCOVERY_RECORD_SIZE))
        {
            e.encode(chunk)?;
        }
        Ok(total)
    }

    pub fn to_vec(&self) -> Result<Vec<u8>, ProtoError> {
        let mut v = vec![0u8; self.len_bytes()];
        self.encode(&mut v)?;
        Ok(v)
    }

    /// Decode a complete log: the buffer must hold the header and NUMREC entries.
    pub fn decode(b: &[u8]) -> Result<Self, ProtoError> {
        let h = DiscoveryLogHeader::decode(b)?;
        let need =
            h.log_len()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or(ProtoError::InvalidField {
                    field: "numrec",
                    offset: 8,
                    reason: "record count overflows",
                })?;
        if b.len() < need {
            return Err(ProtoError::short("discovery log", need, b.len()));
        }
        let entries = b
            .get(DISCOVERY_RECORD_SIZE..need)
            .unwrap_or_default()
            .chunks_exact(DISCOVERY_RECORD_SIZE)
            .enumerate()
            .map(|(i, c)| DiscoveryEntry::decode(c, DISCOVERY_RECORD_SIZE * (i + 1)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DiscoveryLog {
            genctr: h.genctr,
            recfmt: h.recfmt,
            entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_log_page_round_trip_through_sqe() {
        let g = GetLogPage {
            lid: lid::DISCOVERY,
            lsp: 0,
            rae: true,
            numd: 0x1_0001,
            lsi: 0,
            offset: 0x1_0000_0400,
            uuid_index: 0,
            ot: false,
            csi: 0,
        };
        let s = g.to_sqe(Cid(1), Nsid(0), SglDescriptor::default());
        assert_eq!(
            s.cdw10,
            0x70 | 1 << 15,
            "numdl 0 (numd 0x10001 zero-based = 0x10000)"
        );
        assert_eq!(s.cdw11, 1);
        assert_eq!(GetLogPage::from_sqe(&s), g);
        assert_eq!(g.len_bytes(), 0x1_0001 * 4);
        let via_ctor =
            Sqe::get_log_page(Cid(1), Nsid(0), 2, 512, 0, SglDescriptor::default()).expect("valid");
        assert_eq!(GetLogPage::from_sqe(&via_ctor).len_bytes(), 512);
    }

    #[test]
    fn log_window_zero_fills_and_rejects_far_offsets() {
        let page = [1u8; 10];
        let mut out = [9u8; 8];
        assert_eq!(copy_log_window(&page, 6, &mut out), Ok(8));
        assert_eq!(out, [1, 1, 1, 1, 0, 0, 0, 0]);
        assert!(copy_log_window(&page, 11, &mut out).is_err());
    }

    #[test]
    fn error_and_smart_round_trip() {
        let e = ErrorLogEntry {
            error_count: 3,
            sqid: 1,
            cid: Cid(4),
            status: Status::LBA_OUT_OF_RANGE.with_dnr(),
            parameter_error_location: 0xffff,
            lba: 99,
            nsid: Nsid(1),
            trtype: trtype::TCP,
            ..Default::default()
        };
        let mut b = [0u8; 64];
        e.encode(&mut b).expect("encode");
        assert_eq!(ErrorLogEntry::decode(&b), Ok(e));
        let s = SmartLog {
            composite_temperature: 300,
            available_spare: 100,
            data_units_read: SmartLog::data_units(1_000_000),
            host_write_commands: 1 << 70,
            ..Default::default()
        };
        let mut b = [0u8; 512];
        s.encode(&mut b).expect("encode");
        assert_eq!(&b[1..3], &300u16.to_le_bytes());
        assert_eq!(s.data_units_read, 2);
        assert_eq!(SmartLog::decode(&b), Ok(s));
    }

    #[test]
    fn changed_ns_list_overflow() {
        let mut b = [0u8; 4096];
        encode_changed_ns_list(&[Nsid(2), Nsid(9)], &mut b).expect("encode");
        assert_eq!(
            decode_changed_ns_list(&b),
            ChangedNamespaces::List(vec![Nsid(2), Nsid(9)])
        );
        let many: Vec<Nsid> = (1..=1025).map(Nsid).collect();
        encode_changed_ns_list(&many, &mut b).expect("encode");
        assert_eq!(decode_changed_ns_list(&b), ChangedNamespaces::Overflow);
    }

    #[test]
    fn discovery_log_round_trip_and_offsets() {
        let nqn = Nqn::new("nqn.2024-01.io.ringside:null0").expect("nqn");
        let log = DiscoveryLog {
            genctr: 5,
            recfmt: 0,
            entries: vec![
                DiscoveryEntry::tcp(nqn.clone(), subtype::NVME, "127.0.0.1", 4420, 1),
                DiscoveryEntry::tcp(
                    Nqn::new(crate::fabrics::DISCOVERY_NQN).expect("nqn"),
                    subtype::CURRENT_DISCOVERY,
                    "::1",
                    8009,
                    2,
                ),
            ],
        };
        let b = log.to_vec().expect("encode");
        assert_eq!(b.len(), 3 * 1024);
        assert_eq!(&b[8..16], &2u64.to_le_bytes(), "numrec");
        let e0 = &b[1024..2048];
        assert_eq!((e0[0], e0[1], e0[2]), (3, 1, 2), "trtype tcp, ipv4, nvme");
        assert_eq!(&e0[32..37], b"4420\0");
        assert_eq!(&e0[512..522], b"127.0.0.1\0");
        assert_eq!(&e0[256..260], b"nqn.");
        assert_eq!(b[2048 + 1], adrfam::IPV6);
        assert_eq!(DiscoveryLog::decode(&b), Ok(log));
        assert!(DiscoveryLog::decode(&b[..3000]).is_err(), "truncated");
        let mut huge = b.clone();
        huge[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(DiscoveryLog::decode(&huge).is_err(), "numrec overflow");
    }

    #[test]
    fn rdma_discovery_entry_names_rdma_cm_and_reliable_connected() {
        let nqn = Nqn::new("nqn.2024-01.io.ringside:null0").expect("nqn");
        let e = DiscoveryEntry::rdma(nqn, subtype::NVME, "10.99.0.1", 4420, 3);
        let log = DiscoveryLog {
            genctr: 1,
            recfmt: 0,
            entries: vec![e],
        };
        let b = log.to_vec().expect("encode");
        let e0 = &b[1024..2048];
        assert_eq!((e0[0], e0[1], e0[2]), (1, 1, 2), "trtype rdma, ipv4, nvme");
        assert_eq!(&e0[4..6], &3u16.to_le_bytes(), "portid");
        assert_eq!(
            &e0[768..772],
            &[1, 1, 1, 0],
            "TSAS: RC, no provider, RDMA_IP_CM"
        );
        assert_eq!(DiscoveryLog::decode(&b), Ok(log));
    }
}
