//! What every backend that drives a real NVMe device shares (`uring-cmd` through the kernel's
//! NVMe generic character device, `nvme-vfio` through its own queues): written once here, in safe
//! code, with no I/O.
//!
//! - [`NvmeNs::from_identify`]: the namespace as Identify Controller and Identify Namespace
//!   describe it (LBA data size from FLBAS, NSZE, MDTS, VWC, ONCS, DLFEAT). The target advertises
//!   this geometry to its hosts; nothing is guessed. A format with metadata is refused with one
//!   line (the target's namespaces carry none).
//! - [`NvmeNs::plan`]: the device commands (64-byte SQEs of nvme-proto, PSDT = PRP, CID 0: the
//!   backend fills in CID and data pointer) for one [`BdevOp`], split at the device's maximum
//!   transfer and at 65536 blocks, with Write Zeroes, Dataset Management and Flush shaped by what
//!   the controller supports.
//! - [`status_result`]: the device's completion status becomes [`BdevError::Nvme`], which the
//!   NVM command set returns to the host unchanged (SCT, SC, CRD, More, DNR).
//!
//! Memory pages are 4 KiB on both paths (Linux's NVMe driver and the VFIO driver set CC.MPS = 0),
//! so MDTS counts 4 KiB units.

use nvme_proto::identify::{self as id, IdentifyController, IdentifyNamespace};
use nvme_proto::nvme::{DsmRange, DSM_AD, DSM_MAX_RANGES, DSM_RANGE_SIZE};
use nvme_proto::{Cid, Nsid, ProtoError, Sqe, Status};

use super::{check_range, check_ranges, BdevError, BdevOp};
use BdevError::BadLength;

/// Page size the controllers run with (CC.MPS = 0), the unit of MDTS.
pub const PAGE_SIZE: u32 = 4096;
/// Most blocks one Read, Write or Write Zeroes command carries (NLB is 16 bits, zero-based).
pub const MAX_BLOCKS_PER_CMD: u64 = 1 << 16;
/// Transfer size used when the controller reports no limit (MDTS 0).
pub const UNLIMITED_TRANSFER: u32 = 1 << 20;

/// Why a device namespace cannot be served (one line for the user).
#[derive(Debug, thiserror::Error)]
pub enum IdentifyError {
    #[error("cannot decode the device's identify data")]
    Decode(#[from] ProtoError),
    #[error("namespace {nsid} is not active on the device (its size is 0)")]
    Inactive { nsid: u32 },
    #[error(
        "namespace {nsid}: FLBAS selects LBA format {index}, which the namespace does not list"
    )]
    NoFormat { nsid: u32, index: usize },
    #[error("namespace {nsid}: its LBA format {index} carries {ms} bytes of metadata per block, which ringside does not serve; format it without metadata (nvme format DEVICE --namespace-id={nsid} --lbaf=N, N a format with ms 0 in nvme id-ns)")]
    Metadata { nsid: u32, index: usize, ms: u16 },
    #[error("namespace {nsid}: blocks of {size} bytes are not supported (512 to 4096)")]
    BlockSize { nsid: u32, size: u64 },
}

/// Why a namespace's configured geometry does not fit the device.
#[derive(Debug, thiserror::Error)]
pub enum GeometryError {
    #[error("the device's blocks are {device} bytes, the configuration asks for {asked}: leave block_size out (or 0) to take the device's")]
    BlockSize { device: u32, asked: u32 },
    #[error(
        "the namespace size {want} bytes is larger than the device's namespace ({have} bytes)"
    )]
    TooLarge { want: u64, have: u64 },
    #[error(
        "the namespace size {want} bytes is not a multiple of the device's block size {block_size}"
    )]
    NotMultiple { want: u64, block_size: u32 },
}

/// One namespace of an NVMe device, as its controller describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NvmeNs {
    pub nsid: u32,
    /// LBA data size of the format in use (FLBAS), bytes.
    pub block_size: u32,
    /// NSZE, blocks.
    pub num_blocks: u64,
    /// Bytes one Read or Write may move: MDTS (4 KiB units), at most 65536 blocks, further capped
    /// by [`NvmeNs::cap_transfer`] (the kernel's limit for passthrough).
    pub max_transfer: u32,
    /// MDTS as reported (0 = no limit).
    pub mdts: u8,
    /// VWC bit 0: a volatile write cache, so Flush must reach the device.
    pub volatile_cache: bool,
    /// ONCS: Write Zeroes supported.
    pub write_zeroes: bool,
    /// ONCS: Dataset Management supported.
    pub dsm: bool,
    /// DLFEAT bits 2:0 = 001b: deallocated blocks read as zeroes.
    pub dealloc_reads_zeroes: bool,
    /// Identify Controller's model, serial and firmware (for logs and the trace description).
    pub model: String,
    pub serial: String,
    pub firmware: String,
}

impl NvmeNs {
    /// Reads namespace `nsid` from the 4096-byte Identify Controller (CNS 01h) and Identify
    /// Namespace (CNS 00h) data of its controller.
    pub fn from_identify(ctrl: &[u8], ns: &[u8], nsid: u32) -> Result<NvmeNs, IdentifyError> {
        let c = IdentifyController::decode(ctrl)?;
        let n = IdentifyNamespace::decode(ns)?;
        if n.nsze == 0 {
            return Err(IdentifyError::Inactive { nsid });
        }
        let index = n.format_index();
        let f = *n
            .lbaf
            .get(index)
            .ok_or(IdentifyError::NoFormat { nsid, index })?;
        if f.ms != 0 {
            return Err(IdentifyError::Metadata {
                nsid,
                index,
                ms: f.ms,
            });
        }
        if !(9..=12).contains(&f.lbads) {
            return Err(IdentifyError::BlockSize {
                nsid,
                size: 1u64.checked_shl(u32::from(f.lbads)).unwrap_or(0),
            });
        }
        let block_size = 1u32 << f.lbads;
        let mdts_bytes = c
            .max_transfer_bytes(0)
            .map_or(u64::from(UNLIMITED_TRANSFER), |b| {
                b.min(u64::from(UNLIMITED_TRANSFER))
            });
        let mut me = NvmeNs {
            nsid,
            block_size,
            num_blocks: n.nsze,
            max_transfer: 0,
            mdts: c.mdts,
            volatile_cache: c.vwc & id::vwc::PRESENT != 0,
            write_zeroes: c.oncs & id::oncs::WRITE_ZEROES != 0,
            dsm: c.oncs & id::oncs::DATASET_MANAGEMENT != 0,
            dealloc_reads_zeroes: n.dlfeat & 0x7 == 0x1,
            model: c.mn,
            serial: c.sn,
            firmware: c.fr,
        };
        me.max_transfer = me.clamp_transfer(mdts_bytes);
        Ok(me)
    }

    /// Lowers the largest transfer to `bytes` (e.g. the kernel's `max_hw_sectors_kb` for the
    /// namespace), keeping it a whole number of blocks and at least one block.
    pub fn cap_transfer(&mut self, bytes: u64) {
        self.max_transfer = self.clamp_transfer(bytes.min(u64::from(self.max_transfer)));
    }

    fn clamp_transfer(&self, bytes: u64) -> u32 {
        let bs = u64::from(self.block_size);
        let b = bytes.min(MAX_BLOCKS_PER_CMD * bs).max(bs);
        (b - b % bs) as u32
    }

    /// Bytes of the whole namespace.
    pub fn bytes(&self) -> u64 {
        self.num_blocks.saturating_mul(u64::from(self.block_size))
    }

    /// The blocks the target serves for a namespace configured with `block_size` (0: the
    /// device's) and `size` bytes (0: the whole namespace, else its first `size` bytes).
    pub fn served_blocks(&self, block_size: u32, size: u64) -> Result<u64, GeometryError> {
        if block_size != 0 && block_size != self.block_size {
            return Err(GeometryError::BlockSize {
                device: self.block_size,
                asked: block_size,
            });
        }
        if size == 0 {
            return Ok(self.num_blocks);
        }
        if size > self.bytes() {
            return Err(GeometryError::TooLarge {
                want: size,
                have: self.bytes(),
            });
        }
        if size % u64::from(self.block_size) != 0 {
            return Err(GeometryError::NotMultiple {
                want: size,
                block_size: self.block_size,
            });
        }
        Ok(size / u64::from(self.block_size))
    }

    /// The device commands for `op` on a namespace served with `served` blocks (see
    /// [`served_blocks`](Self::served_blocks)), in order, handed to `emit`. Nothing is emitted
    /// when the operation fails its checks (range, length); an operation with nothing to do
    /// (Flush without a volatile cache, zero blocks) emits nothing and returns `Ok(0)`.
    /// `zero_len` is the size of the backend's zero buffer, used for Write Zeroes when the
    /// controller lacks the command. Returns how many commands were emitted.
    pub fn plan(
        &self,
        op: &BdevOp<'_>,
        served: u64,
        zero_len: usize,
        emit: &mut dyn FnMut(DevCmd),
    ) -> Result<usize, BdevError> {
        let bs = self.block_size;
        let mut n = 0usize;
        let mut out = |c: DevCmd| {
            n += 1;
            emit(c);
        };
        match op {
            BdevOp::Read { lba, buf } => {
                check_range(bs, served, *lba, buf.len())?;
                self.split_rw(false, *lba, buf.len(), &mut out)?;
            }
            BdevOp::Write { lba, buf } => {
                check_range(bs, served, *lba, buf.len())?;
                self.split_rw(true, *lba, buf.len(), &mut out)?;
            }
            BdevOp::Flush => {
                if self.volatile_cache {
                    out(DevCmd::new(
                        Sqe::flush(Cid(0), Nsid(self.nsid)),
                        DevData::None,
                    ));
                }
            }
            BdevOp::WriteZeroes { lba, blocks } => {
                check_ranges(&[(*lba, *blocks)], served)?;
                self.zeroes(*lba, *blocks, false, zero_len, &mut out)?;
            }
            BdevOp::Deallocate { ranges } => {
                check_ranges(ranges, served)?;
                let count = ranges.iter().filter(|r| r.1 > 0).count();
                if count == 0 {
                    // Nothing to deallocate.
                } else if self.dsm && self.dealloc_reads_zeroes && count <= DSM_MAX_RANGES {
                    // One Dataset Management with every non-empty range; the backend encodes
                    // them with `encode_dsm_ranges`.
                    let sqe = Sqe::dataset_management(
                        Cid(0),
                        Nsid(self.nsid),
                        count as u32,
                        DSM_AD,
                        Default::default(),
                    )
                    .map_err(|_| BadLength)?;
                    out(DevCmd::new(
                        sqe,
                        DevData::Ranges {
                            len: count * DSM_RANGE_SIZE,
                        },
                    ));
                } else {
                    // The target promises deallocated blocks read as zeroes (DLFEAT): where the
                    // device does not, deallocate through Write Zeroes with DEAC.
                    for &(lba, blocks) in ranges.iter() {
                        self.zeroes(lba, blocks, true, zero_len, &mut out)?;
                    }
                }
            }
        }
        Ok(n)
    }

    fn split_rw(
        &self,
        write: bool,
        lba: u64,
        len: usize,
        out: &mut dyn FnMut(DevCmd),
    ) -> Result<(), BdevError> {
        let bs = self.block_size as usize;
        let step = self.max_transfer as usize;
        let mut off = 0usize;
        while off < len {
            let l = step.min(len - off);
            let at = lba + (off / bs) as u64;
            let blocks = (l / bs) as u32;
            let sqe = if write {
                Sqe::write(Cid(0), Nsid(self.nsid), at, blocks, Default::default())
            } else {
                Sqe::read(Cid(0), Nsid(self.nsid), at, blocks, Default::default())
            }
            .map_err(|_| BadLength)?;
            out(DevCmd::new(
                sqe,
                DevData::Buf {
                    offset: off,
                    len: l,
                },
            ));
            off += l;
        }
        Ok(())
    }

    /// Write Zeroes (DEAC when `deallocate`) over `blocks` blocks at `lba`, or writes from the
    /// zero buffer where the controller lacks Write Zeroes.
    fn zeroes(
        &self,
        lba: u64,
        blocks: u64,
        deallocate: bool,
        zero_len: usize,
        out: &mut dyn FnMut(DevCmd),
    ) -> Result<(), BdevError> {
        let bs = u64::from(self.block_size);
        let step = if self.write_zeroes {
            MAX_BLOCKS_PER_CMD
        } else {
            (u64::from(self.max_transfer).min(zero_len as u64) / bs).max(1)
        };
        if !self.write_zeroes && (zero_len as u64) < bs {
            return Err(BadLength);
        }
        let mut done = 0u64;
        while done < blocks {
            let n = step.min(blocks - done);
            let at = lba + done;
            let c = if self.write_zeroes {
                let sqe = Sqe::write_zeroes(Cid(0), Nsid(self.nsid), at, n as u32, deallocate)
                    .map_err(|_| BadLength)?;
                DevCmd::new(sqe, DevData::None)
            } else {
                let sqe = Sqe::write(Cid(0), Nsid(self.nsid), at, n as u32, Default::default())
                    .map_err(|_| BadLength)?;
                DevCmd::new(
                    sqe,
                    DevData::Zeroes {
                        len: (n * bs) as usize,
                    },
                )
            };
            out(c);
            done += n;
        }
        Ok(())
    }
}

/// Where a device command's data is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DevData {
    /// No data (Flush, Write Zeroes).
    None,
    /// `len` bytes at `offset` in the operation's buffer.
    Buf { offset: usize, len: usize },
    /// `len` bytes of the backend's zero buffer (writes standing in for Write Zeroes).
    Zeroes { len: usize },
    /// The operation's Dataset Management ranges, `len` bytes once encoded with
    /// [`encode_dsm_ranges`].
    Ranges { len: usize },
}

/// One command for the device: the SQE without CID and data pointer, and where its data is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DevCmd {
    pub sqe: Sqe,
    pub data: DevData,
}

impl DevCmd {
    fn new(mut sqe: Sqe, data: DevData) -> DevCmd {
        sqe.flags = 0; // PSDT = PRP, not fused: what a PCIe controller (and Linux's passthrough) takes
        DevCmd { sqe, data }
    }
}

/// Encodes the non-empty `(lba, blocks)` ranges as Dataset Management ranges into `out`;
/// returns the bytes written (16 per range). `out` must hold them (see [`DevData::Ranges`]).
pub fn encode_dsm_ranges(ranges: &[(u64, u64)], out: &mut [u8]) -> usize {
    let mut n = 0;
    for (&(slba, nlb), chunk) in ranges
        .iter()
        .filter(|r| r.1 > 0)
        .zip(out.chunks_exact_mut(DSM_RANGE_SIZE))
    {
        if let Ok(c) = <&mut [u8; DSM_RANGE_SIZE]>::try_from(chunk) {
            DsmRange {
                context_attributes: 0,
                nlb: nlb.min(u64::from(u32::MAX)) as u32,
                slba,
            }
            .encode(c);
            n += DSM_RANGE_SIZE;
        }
    }
    n
}

/// An admin Identify for the device (PSDT = PRP, CID 0): `cns` 01h controller, 00h namespace.
pub fn identify_cmd(cns: u8, nsid: u32) -> Sqe {
    let mut s = Sqe::identify(Cid(0), Nsid(nsid), cns, Default::default());
    s.flags = 0;
    s
}

/// The result of a device command from its completion status: success, or the status itself,
/// which the host receives unchanged.
pub fn status_result(status: Status) -> Result<(), BdevError> {
    if status.is_success() {
        Ok(())
    } else {
        Err(BdevError::Nvme(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nvme_proto::identify::{cns, LbaFormat, IDENTIFY_SIZE};
    use nvme_proto::nvme::{IoOpcode, CDW12_DEAC};

    /// Identify Controller bytes laid out by hand at the base specification's offsets (MDTS byte
    /// 77, ONCS bytes 521:520, VWC byte 525, SN 23:04, MN 63:24, FR 71:64), as a QEMU NVMe
    /// controller reports them.
    fn ctrl_page(mdts: u8, oncs: u16, vwc: u8) -> Vec<u8> {
        let mut b = vec![0u8; IDENTIFY_SIZE];
        b[0..2].copy_from_slice(&0x1b36u16.to_le_bytes()); // VID: Red Hat (QEMU)
        b[4..24].copy_from_slice(b"lab                 ");
        b[24..64].copy_from_slice(b"QEMU NVMe Ctrl                          ");
        b[64..72].copy_from_slice(b"10.0.2  ");
        b[77] = mdts;
        b[512] = 0x66;
        b[513] = 0x44;
        b[516..520].copy_from_slice(&256u32.to_le_bytes()); // NN
        b[520..522].copy_from_slice(&oncs.to_le_bytes());
        b[525] = vwc;
        b[768..768 + 24].copy_from_slice(b"nqn.2019-08.org.qemu:lab");
        b
    }

    /// Identify Namespace bytes at the spec's offsets: NSZE 7:0, NLBAF 25, FLBAS 26, DLFEAT 33,
    /// LBAF0.. at 128 (MS 15:0, LBADS 23:16, RP 25:24).
    fn ns_page(nsze: u64, flbas: u8, formats: &[(u16, u8)], dlfeat: u8) -> Vec<u8> {
        let mut b = vec![0u8; IDENTIFY_SIZE];
        b[0..8].copy_from_slice(&nsze.to_le_bytes());
        b[8..16].copy_from_slice(&nsze.to_le_bytes());
        b[25] = (formats.len() - 1) as u8;
        b[26] = flbas;
        b[33] = dlfeat;
        for (i, &(ms, lbads)) in formats.iter().enumerate() {
            let v = u32::from(ms) | u32::from(lbads) << 16;
            b[128 + 4 * i..132 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// QEMU's default formats: 512, 512+8, 512+16, 512+64, 4096, 4096+8, 4096+16, 4096+64.
    const QEMU_FORMATS: [(u16, u8); 8] = [
        (0, 9),
        (8, 9),
        (16, 9),
        (64, 9),
        (0, 12),
        (8, 12),
        (16, 12),
        (64, 12),
    ];

    fn qemu_ns(flbas: u8) -> Result<NvmeNs, IdentifyError> {
        let oncs = id::oncs::WRITE_ZEROES | id::oncs::DATASET_MANAGEMENT | id::oncs::COMPARE;
        NvmeNs::from_identify(
            &ctrl_page(7, oncs, 0x07),
            &ns_page(1 << 21, flbas, &QEMU_FORMATS, 0x09),
            1,
        )
    }

    #[test]
    fn identify_of_a_qemu_controller_gives_the_geometry() {
        let ns = qemu_ns(0).expect("512-byte format");
        assert_eq!(ns.block_size, 512);
        assert_eq!(ns.num_blocks, 1 << 21);
        assert_eq!(ns.bytes(), 1 << 30);
        assert_eq!(ns.mdts, 7);
        assert_eq!(ns.max_transfer, 512 * 1024, "4 KiB << MDTS 7");
        assert!(ns.volatile_cache && ns.write_zeroes && ns.dsm && ns.dealloc_reads_zeroes);
        assert_eq!(
            (ns.model.as_str(), ns.serial.as_str(), ns.firmware.as_str()),
            ("QEMU NVMe Ctrl", "lab", "10.0.2")
        );
        // FLBAS 4: the 4096-byte format (the count is in blocks of that size).
        let ns4 = qemu_ns(4).expect("4096-byte format");
        assert_eq!(ns4.block_size, 4096);
        // FLBAS bits 6:5 are the high bits of the index: 0x20 | 4 = format 20, not listed.
        let e = qemu_ns(0x24).unwrap_err().to_string();
        assert!(e.contains("LBA format 20"), "{e}");
    }

    #[test]
    fn metadata_formats_and_odd_sizes_are_refused_with_one_line() {
        let e = qemu_ns(1).unwrap_err().to_string();
        assert!(
            e.contains("8 bytes of metadata") && e.contains("nvme format"),
            "{e}"
        );
        assert!(!e.contains('\n'));
        let big = NvmeNs::from_identify(&ctrl_page(0, 0, 0), &ns_page(100, 0, &[(0, 14)], 0), 3)
            .unwrap_err()
            .to_string();
        assert!(big.contains("16384 bytes"), "{big}");
        let inactive = NvmeNs::from_identify(&ctrl_page(0, 0, 0), &ns_page(0, 0, &[(0, 9)], 0), 2)
            .unwrap_err()
            .to_string();
        assert!(inactive.contains("namespace 2 is not active"), "{inactive}");
        let short = NvmeNs::from_identify(&[0u8; 100], &ns_page(1, 0, &[(0, 9)], 0), 1);
        assert!(matches!(short, Err(IdentifyError::Decode(_))));
    }

    #[test]
    fn the_roundtrip_of_our_own_identify_agrees() {
        // nvme-proto's encoder and the hand layout above must agree on every field read here.
        let mut n = IdentifyNamespace::simple(1000, 12);
        n.lbaf.insert(
            0,
            LbaFormat {
                ms: 0,
                lbads: 9,
                rp: 0,
            },
        );
        n.flbas = 1;
        let c = IdentifyController {
            mdts: 0,
            oncs: 0,
            vwc: 0,
            ..IdentifyController::default()
        };
        let ns =
            NvmeNs::from_identify(&c.to_vec().unwrap(), &n.to_vec().unwrap(), 5).expect("decodes");
        assert_eq!((ns.block_size, ns.num_blocks), (4096, 1000));
        assert_eq!(ns.max_transfer, UNLIMITED_TRANSFER, "MDTS 0: our own cap");
        assert!(!ns.volatile_cache && !ns.write_zeroes && !ns.dsm);
    }

    #[test]
    fn served_blocks_follow_the_configuration() {
        let ns = qemu_ns(0).expect("ns");
        assert_eq!(ns.served_blocks(0, 0).unwrap(), 1 << 21);
        assert_eq!(ns.served_blocks(512, 1 << 20).unwrap(), 2048);
        let e = ns.served_blocks(4096, 0).unwrap_err().to_string();
        assert!(e.contains("512 bytes") && e.contains("4096"), "{e}");
        assert!(ns.served_blocks(0, 2 << 30).is_err());
        assert!(ns.served_blocks(0, 1000).is_err());
    }

    fn plan(ns: &NvmeNs, op: BdevOp<'_>, zero: usize) -> Result<Vec<DevCmd>, BdevError> {
        let mut v = Vec::new();
        let n = ns.plan(&op, ns.num_blocks, zero, &mut |c| v.push(c))?;
        assert_eq!(n, v.len());
        Ok(v)
    }

    #[test]
    fn reads_and_writes_split_at_the_device_limit() {
        let mut ns = qemu_ns(0).expect("ns");
        ns.cap_transfer(128 * 1024);
        let mut buf = vec![0u8; 300 * 1024];
        let v = plan(
            &ns,
            BdevOp::Read {
                lba: 10,
                buf: &mut buf,
            },
            0,
        )
        .expect("read");
        assert_eq!(v.len(), 3);
        let got: Vec<(u8, u64, u32, DevData)> = v
            .iter()
            .map(|c| (c.sqe.opcode, c.sqe.slba(), c.sqe.cdw12 & 0xffff, c.data))
            .collect();
        let r = IoOpcode::Read as u8;
        assert_eq!(
            got,
            vec![
                (
                    r,
                    10,
                    255,
                    DevData::Buf {
                        offset: 0,
                        len: 131072
                    }
                ),
                (
                    r,
                    266,
                    255,
                    DevData::Buf {
                        offset: 131072,
                        len: 131072
                    }
                ),
                (
                    r,
                    522,
                    87,
                    DevData::Buf {
                        offset: 262144,
                        len: 45056
                    }
                ),
            ]
        );
        assert!(v.iter().all(|c| c.sqe.flags == 0 && c.sqe.nsid == Nsid(1)));
        let w = plan(
            &ns,
            BdevOp::Write {
                lba: 0,
                buf: &buf[..4096],
            },
            0,
        )
        .expect("write");
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].sqe.opcode, IoOpcode::Write as u8);
        // Checks before any command: past the end, a partial block.
        let end = ns.num_blocks;
        assert_eq!(
            plan(
                &ns,
                BdevOp::Write {
                    lba: end - 1,
                    buf: &buf[..1024]
                },
                0
            ),
            Err(BdevError::OutOfRange)
        );
        assert_eq!(
            plan(
                &ns,
                BdevOp::Write {
                    lba: 0,
                    buf: &buf[..100]
                },
                0
            ),
            Err(BdevError::BadLength)
        );
    }

    #[test]
    fn write_zeroes_flush_and_deallocate_follow_oncs_vwc_and_dlfeat() {
        let ns = qemu_ns(0).expect("ns");
        // 70000 blocks: two Write Zeroes (65536 + 4464).
        let wz = plan(
            &ns,
            BdevOp::WriteZeroes {
                lba: 5,
                blocks: 70000,
            },
            0,
        )
        .expect("wz");
        assert_eq!(wz.len(), 2);
        assert_eq!(wz[0].sqe.opcode, IoOpcode::WriteZeroes as u8);
        assert_eq!((wz[1].sqe.slba(), wz[1].sqe.cdw12 & 0xffff), (65541, 4463));
        assert_eq!(wz[0].sqe.cdw12 & CDW12_DEAC, 0);
        let fl = plan(&ns, BdevOp::Flush, 0).expect("flush");
        assert_eq!(fl.len(), 1);
        assert_eq!(fl[0].sqe.opcode, IoOpcode::Flush as u8);
        let ranges = [(8u64, 8u64), (100, 0), (200, 16)];
        let d = plan(&ns, BdevOp::Deallocate { ranges: &ranges }, 0).expect("dsm");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].sqe.opcode, IoOpcode::DatasetManagement as u8);
        assert_eq!(
            (d[0].sqe.cdw10, d[0].sqe.cdw11),
            (1, DSM_AD),
            "2 ranges, AD"
        );
        assert_eq!(d[0].data, DevData::Ranges { len: 32 });
        let mut enc = [0u8; 64];
        assert_eq!(encode_dsm_ranges(&ranges, &mut enc), 32);
        let back: Vec<DsmRange> = DsmRange::iter(&enc[..32]).map(|r| r.unwrap()).collect();
        assert_eq!(
            back.iter().map(|r| (r.slba, r.nlb)).collect::<Vec<_>>(),
            vec![(8, 8), (200, 16)]
        );

        // A controller without a cache, Write Zeroes or zeroing deallocate.
        let bare = NvmeNs {
            volatile_cache: false,
            write_zeroes: false,
            dealloc_reads_zeroes: false,
            ..ns.clone()
        };
        assert!(plan(&bare, BdevOp::Flush, 0).expect("flush").is_empty());
        let z = plan(
            &bare,
            BdevOp::WriteZeroes {
                lba: 0,
                blocks: 300,
            },
            65536,
        )
        .expect("zero");
        assert_eq!(
            z.iter().map(|c| (c.sqe.opcode, c.data)).collect::<Vec<_>>(),
            vec![
                (IoOpcode::Write as u8, DevData::Zeroes { len: 65536 }),
                (IoOpcode::Write as u8, DevData::Zeroes { len: 65536 }),
                (IoOpcode::Write as u8, DevData::Zeroes { len: 22528 }),
            ]
        );
        assert_eq!(
            plan(&bare, BdevOp::WriteZeroes { lba: 0, blocks: 1 }, 0),
            Err(BdevError::BadLength),
            "no zero buffer, no way to zero"
        );
        // Deallocate where the device does not read zeroes back: Write Zeroes with DEAC.
        let wz_dealloc = NvmeNs {
            dealloc_reads_zeroes: false,
            ..ns.clone()
        };
        let d = plan(&wz_dealloc, BdevOp::Deallocate { ranges: &ranges }, 0).expect("deac");
        assert_eq!(d.len(), 2);
        assert!(d
            .iter()
            .all(|c| c.sqe.opcode == IoOpcode::WriteZeroes as u8 && c.sqe.cdw12 & CDW12_DEAC != 0));
        assert_eq!(
            plan(
                &ns,
                BdevOp::Deallocate {
                    ranges: &[(0, 1), (ns.num_blocks, 1)]
                },
                0
            ),
            Err(BdevError::OutOfRange)
        );
        assert!(plan(&ns, BdevOp::Deallocate { ranges: &[(3, 0)] }, 0)
            .expect("empty")
            .is_empty());
    }

    #[test]
    fn device_status_reaches_the_host_unchanged() {
        assert_eq!(status_result(Status::SUCCESS), Ok(()));
        // Deallocated or Unwritten Logical Block with DNR and More, as a device sets them.
        let s = Status::DEALLOCATED_OR_UNWRITTEN_BLOCK
            .with_dnr()
            .with_more();
        let r = status_result(s);
        assert_eq!(r, Err(BdevError::Nvme(s)));
        let host = crate::nvm::status_of(crate::nvm::OpClass::Read, r);
        assert_eq!(host.0, s.0, "every bit: SCT, SC, More, DNR");
        let cmd = identify_cmd(cns::CONTROLLER, 0);
        assert_eq!((cmd.opcode, cmd.flags, cmd.cdw10), (0x06, 0, 1));
    }
}
