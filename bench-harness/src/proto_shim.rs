//! TEMPORARY: decoders nvme-proto does not have yet (Identify controller/namespace, active
//! namespace list, Discovery log page). Requested in /work/notes/requests-proto.md; this module
//! is deleted as soon as nvme-proto ships them. Pure functions, no threading concerns.

fn u16_at(b: &[u8], o: usize) -> u16 {
    let mut a = [0u8; 2];
    if let Some(s) = b.get(o..o + 2) {
        a.copy_from_slice(s);
    }
    u16::from_le_bytes(a)
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(o..o + 4) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(o..o + 8) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

fn text(b: &[u8], o: usize, len: usize) -> String {
    let s = b.get(o..o + len).unwrap_or_default();
    let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
    String::from_utf8_lossy(&s[..end]).trim().to_string()
}

/// The Identify Controller fields the initiator uses.
#[derive(Debug, Clone, Default)]
pub struct IdCtrl {
    pub sn: String,
    pub mn: String,
    pub fr: String,
    pub mdts: u8,
    pub cntlid: u16,
    pub sgls: u32,
    pub ioccsz: u32,
    pub iorcsz: u32,
    pub maxcmd: u16,
    pub nn: u32,
    pub kas: u16,
    pub subnqn: String,
}

pub fn id_ctrl(b: &[u8]) -> IdCtrl {
    IdCtrl {
        sn: text(b, 4, 20),
        mn: text(b, 24, 40),
        fr: text(b, 64, 8),
        mdts: b.get(77).copied().unwrap_or(0),
        cntlid: u16_at(b, 78),
        kas: u16_at(b, 320),
        maxcmd: u16_at(b, 514),
        nn: u32_at(b, 516),
        sgls: u32_at(b, 536),
        subnqn: text(b, 768, 256),
        ioccsz: u32_at(b, 1792),
        iorcsz: u32_at(b, 1796),
    }
}

/// The Identify Namespace fields the initiator uses.
#[derive(Debug, Clone, Default)]
pub struct IdNs {
    pub nsze: u64,
    pub ncap: u64,
    /// LBA data size in bytes of the formatted LBA format.
    pub block_size: u32,
    pub metadata: u16,
}

pub fn id_ns(b: &[u8]) -> IdNs {
    let flbas = b.get(26).copied().unwrap_or(0);
    let idx = (flbas & 0x0f) as usize | (((flbas >> 5) & 0x3) as usize) << 4;
    let lbaf = u32_at(b, 128 + 4 * idx);
    let lbads = (lbaf >> 16) & 0xff;
    IdNs {
        nsze: u64_at(b, 0),
        ncap: u64_at(b, 8),
        block_size: if (9..=31).contains(&lbads) {
            1 << lbads
        } else {
            0
        },
        metadata: lbaf as u16,
    }
}

/// The active namespace list (CNS 2): ids until the first zero.
pub fn active_ns_list(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .take_while(|&n| n != 0)
        .collect()
}

/// One Discovery log page entry.
#[derive(Debug, Clone, Default)]
pub struct DiscEntry {
    pub trtype: u8,
    pub adrfam: u8,
    pub subtype: u8,
    pub portid: u16,
    pub trsvcid: String,
    pub subnqn: String,
    pub traddr: String,
}

/// Header of the discovery log: (genctr, numrec).
pub fn disc_header(b: &[u8]) -> (u64, u64) {
    (u64_at(b, 0), u64_at(b, 8))
}

pub fn disc_entries(b: &[u8], numrec: u64) -> Vec<DiscEntry> {
    (0..numrec as usize)
        .map_while(|i| b.get(1024 + i * 1024..1024 + (i + 1) * 1024))
        .map(|e| DiscEntry {
            trtype: e[0],
            adrfam: e[1],
            subtype: e[2],
            portid: u16_at(e, 4),
            trsvcid: text(e, 32, 32),
            subnqn: text(e, 256, 256),
            traddr: text(e, 512, 256),
        })
        .collect()
}
