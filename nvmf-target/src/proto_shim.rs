//! TEMPORARY: Identify, log page and discovery log encoders, until nvme-proto's Phase 2
//! (Identify/log-page/discovery encoders, requested in /work/notes/requests-proto.md) lands.
//! Delete this module then and use nvme-proto's types. Pure byte layout, no state.
//!
//! Offsets are from NVMe Base 2.0 (Identify Controller figure 275, Identify Namespace figure
//! 280, Namespace Identification Descriptor figure 283) and NVMe-oF 1.1 (Discovery Log Page).

/// Size of every Identify data structure.
pub const IDENTIFY_SIZE: usize = 4096;

fn put_u16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}
/// ASCII field padded with spaces (serial, model, firmware, discovery strings).
fn put_str(b: &mut [u8], off: usize, len: usize, s: &str) {
    let f = &mut b[off..off + len];
    f.fill(b' ');
    let n = s.len().min(len);
    f[..n].copy_from_slice(&s.as_bytes()[..n]);
}
/// NUL-padded string field (NQNs).
fn put_nqn(b: &mut [u8], off: usize, s: &str) {
    let f = &mut b[off..off + 256];
    f.fill(0);
    let n = s.len().min(223);
    f[..n].copy_from_slice(&s.as_bytes()[..n]);
}

/// Controller type (CNTRLTYPE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtrlType {
    Io = 1,
    Discovery = 2,
}

/// Inputs of Identify Controller.
#[derive(Clone, Debug)]
pub struct IdentifyCtrl<'a> {
    pub serial: &'a str,
    pub model: &'a str,
    pub firmware: &'a str,
    pub subnqn: &'a str,
    pub cntlid: u16,
    pub ctrl_type: CtrlType,
    /// log2(max transfer / 4 KiB).
    pub mdts: u8,
    pub version: u32,
    /// Zero-based.
    pub aerl: u8,
    /// Keep alive granularity in 100 ms units.
    pub kas: u16,
    pub maxcmd: u16,
    pub nn: u32,
    pub oncs: u16,
    pub vwc: u8,
    pub sgls: u32,
    /// In 16-byte units, command capsule (64 bytes + in-capsule data).
    pub ioccsz: u32,
    pub iorcsz: u32,
    pub msdbd: u8,
    pub oaes: u32,
    pub cmic: u8,
    pub lpa: u8,
}

pub fn identify_ctrl(c: &IdentifyCtrl<'_>, out: &mut [u8; IDENTIFY_SIZE]) {
    out.fill(0);
    put_u16(out, 0, 0x1d1d); // VID: none registered; any non-zero value
    put_u16(out, 2, 0x1d1d);
    put_str(out, 4, 20, c.serial);
    put_str(out, 24, 40, c.model);
    put_str(out, 64, 8, c.firmware);
    out[72] = 6; // RAB
    out[76] = c.cmic;
    out[77] = c.mdts;
    put_u16(out, 78, c.cntlid);
    put_u32(out, 80, c.version);
    put_u32(out, 92, c.oaes);
    out[111] = c.ctrl_type as u8;
    out[258] = 3; // ACL: 4 aborts (zero-based)
    out[259] = c.aerl;
    out[260] = 0x3; // FRMW: slot 1 read-only, 1 slot
    out[261] = c.lpa;
    out[262] = 0; // ELPE: 1 entry
    put_u16(out, 320, c.kas);
    out[512] = 0x66; // SQES
    out[513] = 0x44; // CQES
    put_u16(out, 514, c.maxcmd);
    put_u32(out, 516, c.nn);
    put_u16(out, 520, c.oncs);
    out[525] = c.vwc;
    put_u32(out, 536, c.sgls);
    put_nqn(out, 768, c.subnqn);
    put_u32(out, 1792, c.ioccsz);
    put_u32(out, 1796, c.iorcsz);
    put_u16(out, 1800, 0); // ICDOFF
    out[1802] = 0; // FCATT: dynamic controller model
    out[1803] = c.msdbd;
    put_u16(out, 1804, 1); // OFCS: Disconnect supported
                           // Power state 0: max power 0 (not reported), entry/exit latencies 0.
}

/// Inputs of Identify Namespace.
#[derive(Clone, Debug)]
pub struct IdentifyNs {
    pub nsze: u64,
    pub lbads: u8,
    pub nguid: [u8; 16],
    /// Namespace may be attached to several controllers (NMIC bit 0).
    pub shared: bool,
}

pub fn identify_ns(n: &IdentifyNs, out: &mut [u8; IDENTIFY_SIZE]) {
    out.fill(0);
    put_u64(out, 0, n.nsze);
    put_u64(out, 8, n.nsze);
    put_u64(out, 16, n.nsze);
    out[24] = 0; // NSFEAT
    out[25] = 0; // NLBAF: one format
    out[26] = 0; // FLBAS: format 0
    out[30] = n.shared as u8;
    // DLFEAT: deallocated blocks read as zeros (001b), Write Zeroes may deallocate (bit 3).
    out[33] = 0x09;
    out[104..120].copy_from_slice(&n.nguid);
    put_u32(out, 128, u32::from(n.lbads) << 16); // LBAF0: MS 0, LBADS, RP 0
}

/// Identify Active Namespace ID list: NSIDs greater than `after`, ascending, at most 1024.
pub fn active_ns_list(nsids: impl Iterator<Item = u32>, after: u32, out: &mut [u8; IDENTIFY_SIZE]) {
    out.fill(0);
    for (i, id) in nsids.filter(|&n| n > after).take(1024).enumerate() {
        put_u32(out, i * 4, id);
    }
}

/// Namespace Identification Descriptor list: NGUID, UUID and CSI (NVM).
pub fn ns_descriptors(nguid: &[u8; 16], uuid: &[u8; 16], out: &mut [u8; IDENTIFY_SIZE]) {
    out.fill(0);
    let mut o = 0;
    for (nidt, id) in [(2u8, &nguid[..]), (3u8, &uuid[..])] {
        out[o] = nidt;
        out[o + 1] = id.len() as u8;
        out[o + 4..o + 4 + id.len()].copy_from_slice(id);
        o += 4 + id.len();
    }
    out[o] = 4; // CSI
    out[o + 1] = 1;
    out[o + 4] = 0; // NVM command set
}

/// Discovery log page: 1024-byte header and one 1024-byte entry per record.
pub const DISC_HDR: usize = 1024;
pub const DISC_ENTRY: usize = 1024;

/// One discovery log entry.
#[derive(Clone, Debug)]
pub struct DiscEntry<'a> {
    /// 1 IPv4, 2 IPv6.
    pub adrfam: u8,
    /// 2 NVM subsystem, 3 current discovery subsystem.
    pub subtype: u8,
    pub portid: u16,
    pub asqsz: u16,
    pub trsvcid: &'a str,
    pub subnqn: &'a str,
    pub traddr: &'a str,
}

/// Appends the discovery log (header plus entries) to `out`.
pub fn discovery_log(genctr: u64, entries: &[DiscEntry<'_>], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + DISC_HDR + entries.len() * DISC_ENTRY, 0);
    let b = &mut out[start..];
    put_u64(b, 0, genctr);
    put_u64(b, 8, entries.len() as u64);
    put_u16(b, 16, 0); // RECFMT
    for (i, e) in entries.iter().enumerate() {
        let o = DISC_HDR + i * DISC_ENTRY;
        b[o] = 3; // TRTYPE: TCP
        b[o + 1] = e.adrfam;
        b[o + 2] = e.subtype;
        b[o + 3] = 0x2; // TREQ: secure channel not required
        put_u16(b, o + 4, e.portid);
        put_u16(b, o + 6, 0xffff); // CNTLID: dynamic
        put_u16(b, o + 8, e.asqsz);
        put_str(b, o + 32, 32, e.trsvcid);
        put_nqn(b, o + 256, e.subnqn);
        put_str(b, o + 512, 256, e.traddr);
        b[o + 768] = 0; // TSAS.SECTYPE: none
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_entry_fields_at_spec_offsets() {
        let mut v = Vec::new();
        discovery_log(
            7,
            &[DiscEntry {
                adrfam: 1,
                subtype: 2,
                portid: 1,
                asqsz: 32,
                trsvcid: "4420",
                subnqn: "nqn.2026-11.io.ringside:nvme0",
                traddr: "127.0.0.1",
            }],
            &mut v,
        );
        assert_eq!(v.len(), 2048);
        assert_eq!(
            u64::from_le_bytes(v[8..16].try_into().unwrap()),
            1,
            "numrec"
        );
        assert_eq!(v[1024], 3, "trtype tcp");
        assert_eq!(&v[1024 + 32..1024 + 36], b"4420");
        assert_eq!(v[1024 + 36], b' ', "trsvcid is space padded");
        assert_eq!(&v[1024 + 256..1024 + 285], b"nqn.2026-11.io.ringside:nvme0");
        assert_eq!(&v[1024 + 512..1024 + 521], b"127.0.0.1");
    }

    #[test]
    fn ns_list_skips_lower_ids() {
        let mut b = [0u8; IDENTIFY_SIZE];
        active_ns_list([1u32, 2, 5].into_iter(), 1, &mut b);
        assert_eq!(&b[..12], &[2, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0]);
    }
}
