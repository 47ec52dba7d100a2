//! SGL descriptors (NVMe Base 2.0, 4.3.2): the 16-byte data pointer of fabrics commands.
//!
//! Byte 15 is the SGL identifier: type in bits 7:4, subtype in bits 3:0. What each transport uses:
//! - NVMe/TCP in-capsule data: Data Block, subtype Offset ([`SglDescriptor::in_capsule`]).
//! - NVMe/TCP data moved by R2T/H2CData or C2HData: Transport Data Block, subtype Transport 0xA
//!   ([`SglDescriptor::tcp_transport`]).
//! - NVMe/RDMA host memory: Keyed Data Block with address, 24-bit length and remote key
//!   ([`SglDescriptor::keyed`]); in-capsule data as for TCP.
//!
//! Decoding never fails: an unknown type is kept verbatim as [`SglDescriptor::Raw`], so that a
//! target can still answer the command (with [`crate::Status::SGL_DESCRIPTOR_TYPE_INVALID`]).

use crate::bytes::{u32_at, u64_at, u8_at};

/// SGL descriptor type (bits 7:4 of byte 15).
pub mod sgl_type {
    pub const DATA_BLOCK: u8 = 0x0;
    pub const BIT_BUCKET: u8 = 0x1;
    pub const SEGMENT: u8 = 0x2;
    pub const LAST_SEGMENT: u8 = 0x3;
    pub const KEYED_DATA_BLOCK: u8 = 0x4;
    pub const TRANSPORT_DATA_BLOCK: u8 = 0x5;
}

/// SGL descriptor subtype (bits 3:0 of byte 15).
pub mod subtype {
    /// The address field is a memory address.
    pub const ADDRESS: u8 = 0x0;
    /// The address field is an offset (into in-capsule data).
    pub const OFFSET: u8 = 0x1;
    /// Transport specific (NVMe/TCP uses it for data carried by data PDUs).
    pub const TRANSPORT: u8 = 0xA;
    /// Keyed data block: invalidate the key after the transfer (RDMA send with invalidate).
    pub const INVALIDATE_KEY: u8 = 0xF;
}

/// Largest length a keyed data block can describe (24-bit field).
pub const KEYED_MAX_LEN: u32 = 0x00ff_ffff;

/// A decoded SGL descriptor. Reserved bytes are not kept (they encode as zero), except in `Raw`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SglDescriptor {
    /// Data Block: `addr` is an address or (subtype Offset) an offset into in-capsule data.
    DataBlock { addr: u64, len: u32, subtype: u8 },
    /// Bit Bucket: discard `len` bytes of read data.
    BitBucket { len: u32, subtype: u8 },
    /// Segment or Last Segment: points to a list of further descriptors.
    Segment {
        addr: u64,
        len: u32,
        last: bool,
        subtype: u8,
    },
    /// Keyed Data Block (RDMA): remote address, 24-bit length, remote key.
    KeyedDataBlock {
        addr: u64,
        len: u32,
        key: u32,
        subtype: u8,
    },
    /// Transport Data Block: the data is moved by the transport (NVMe/TCP: R2T/H2CData/C2HData).
    TransportDataBlock { len: u32, subtype: u8 },
    /// An unknown type, or a PRP pair (PSDT = 0), kept byte for byte.
    Raw([u8; 16]),
}

impl Default for SglDescriptor {
    fn default() -> Self {
        SglDescriptor::Raw([0; 16])
    }
}

impl SglDescriptor {
    /// NVMe/TCP and RDMA in-capsule data: Data Block, subtype Offset, `offset` into the capsule data.
    pub const fn in_capsule(offset: u64, len: u32) -> Self {
        SglDescriptor::DataBlock {
            addr: offset,
            len,
            subtype: subtype::OFFSET,
        }
    }

    /// NVMe/TCP data moved by data PDUs: Transport Data Block, subtype Transport (0x5A).
    pub const fn tcp_transport(len: u32) -> Self {
        SglDescriptor::TransportDataBlock {
            len,
            subtype: subtype::TRANSPORT,
        }
    }

    /// NVMe/RDMA host buffer: Keyed Data Block, subtype Address. `len` above
    /// [`KEYED_MAX_LEN`] is truncated to 24 bits on encode; check with [`Self::valid_keyed_len`].
    pub const fn keyed(addr: u64, len: u32, key: u32) -> Self {
        SglDescriptor::KeyedDataBlock {
            addr,
            len,
            key,
            subtype: subtype::ADDRESS,
        }
    }

    /// A PCIe PRP pair (PRP1, PRP2) stored as raw bytes, for commands with PSDT = 0.
    pub fn prp(prp1: u64, prp2: u64) -> Self {
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&prp1.to_le_bytes());
        raw[8..].copy_from_slice(&prp2.to_le_bytes());
        SglDescriptor::Raw(raw)
    }

    pub const fn valid_keyed_len(len: u32) -> bool {
        len <= KEYED_MAX_LEN
    }

    /// Decode the 16 bytes of a descriptor. Never fails (see the module docs).
    pub fn decode(b: &[u8; 16]) -> Self {
        let id = b[15];
        let (ty, st) = (id >> 4, id & 0x0f);
        let addr = u64_at(b, 0);
        let len = u32_at(b, 8);
        match ty {
            sgl_type::DATA_BLOCK => SglDescriptor::DataBlock {
                addr,
                len,
                subtype: st,
            },
            sgl_type::BIT_BUCKET => SglDescriptor::BitBucket { len, subtype: st },
            sgl_type::SEGMENT | sgl_type::LAST_SEGMENT => SglDescriptor::Segment {
                addr,
                len,
                last: ty == sgl_type::LAST_SEGMENT,
                subtype: st,
            },
            sgl_type::KEYED_DATA_BLOCK => SglDescriptor::KeyedDataBlock {
                addr,
                len: u32::from_le_bytes([u8_at(b, 8), u8_at(b, 9), u8_at(b, 10), 0]),
                key: u32_at(b, 11),
                subtype: st,
            },
            sgl_type::TRANSPORT_DATA_BLOCK => {
                SglDescriptor::TransportDataBlock { len, subtype: st }
            }
            _ => SglDescriptor::Raw(*b),
        }
    }

    /// Encode into 16 bytes (reserved bytes zeroed).
    pub fn encode(&self, out: &mut [u8; 16]) {
        *out = self.to_bytes();
    }

    pub fn to_bytes(&self) -> [u8; 16] {
        let mut o = [0u8; 16];
        let id = |ty: u8, st: u8| (ty << 4) | (st & 0x0f);
        match *self {
            SglDescriptor::DataBlock { addr, len, subtype } => {
                o[..8].copy_from_slice(&addr.to_le_bytes());
                o[8..12].copy_from_slice(&len.to_le_bytes());
                o[15] = id(sgl_type::DATA_BLOCK, subtype);
            }
            SglDescriptor::BitBucket { len, subtype } => {
                o[8..12].copy_from_slice(&len.to_le_bytes());
                o[15] = id(sgl_type::BIT_BUCKET, subtype);
            }
            SglDescriptor::Segment {
                addr,
                len,
                last,
                subtype,
            } => {
                o[..8].copy_from_slice(&addr.to_le_bytes());
                o[8..12].copy_from_slice(&len.to_le_bytes());
                let ty = if last {
                    sgl_type::LAST_SEGMENT
                } else {
                    sgl_type::SEGMENT
                };
                o[15] = id(ty, subtype);
            }
            SglDescriptor::KeyedDataBlock {
                addr,
                len,
                key,
                subtype,
            } => {
                o[..8].copy_from_slice(&addr.to_le_bytes());
                let l = len.to_le_bytes();
                o[8..11].copy_from_slice(&l[..3]);
                o[11..15].copy_from_slice(&key.to_le_bytes());
                o[15] = id(sgl_type::KEYED_DATA_BLOCK, subtype);
            }
            SglDescriptor::TransportDataBlock { len, subtype } => {
                o[8..12].copy_from_slice(&len.to_le_bytes());
                o[15] = id(sgl_type::TRANSPORT_DATA_BLOCK, subtype);
            }
            SglDescriptor::Raw(r) => o = r,
        }
        o
    }

    /// The SGL identifier byte (type << 4 | subtype) this descriptor encodes to.
    pub fn identifier(&self) -> u8 {
        self.to_bytes()[15]
    }

    /// The data length the descriptor describes, when it describes data.
    pub fn data_len(&self) -> Option<u32> {
        match *self {
            SglDescriptor::DataBlock { len, .. }
            | SglDescriptor::KeyedDataBlock { len, .. }
            | SglDescriptor::TransportDataBlock { len, .. } => Some(len),
            _ => None,
        }
    }

    /// `Some((offset, len))` when this is in-capsule data (Data Block, subtype Offset).
    pub fn as_in_capsule(&self) -> Option<(u64, u32)> {
        match *self {
            SglDescriptor::DataBlock {
                addr,
                len,
                subtype: subtype::OFFSET,
            } => Some((addr, len)),
            _ => None,
        }
    }

    /// `Some(len)` when this is NVMe/TCP transport data (Transport Data Block, subtype 0xA).
    pub fn as_tcp_transport(&self) -> Option<u32> {
        match *self {
            SglDescriptor::TransportDataBlock {
                len,
                subtype: subtype::TRANSPORT,
            } => Some(len),
            _ => None,
        }
    }

    /// `Some((addr, len, key, invalidate))` when this is an RDMA keyed data block.
    pub fn as_keyed(&self) -> Option<(u64, u32, u32, bool)> {
        match *self {
            SglDescriptor::KeyedDataBlock {
                addr,
                len,
                key,
                subtype: st @ (subtype::ADDRESS | subtype::INVALIDATE_KEY),
            } => Some((addr, len, key, st == subtype::INVALIDATE_KEY)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_descriptors_have_the_identifiers_linux_sends() {
        assert_eq!(SglDescriptor::in_capsule(0, 4096).identifier(), 0x01);
        assert_eq!(SglDescriptor::tcp_transport(4096).identifier(), 0x5A);
        assert_eq!(SglDescriptor::keyed(1, 2, 3).identifier(), 0x40);
    }

    #[test]
    fn keyed_layout_is_addr_len24_key() {
        let d = SglDescriptor::keyed(0x1122_3344_5566_7788, 0x00ab_cdef, 0xdead_beef);
        let b = d.to_bytes();
        assert_eq!(&b[..8], &0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(&b[8..11], &[0xef, 0xcd, 0xab]);
        assert_eq!(&b[11..15], &0xdead_beefu32.to_le_bytes());
        assert_eq!(SglDescriptor::decode(&b), d, "keyed round trip");
        assert_eq!(
            d.as_keyed(),
            Some((0x1122_3344_5566_7788, 0xabcdef, 0xdead_beef, false))
        );
    }

    #[test]
    fn unknown_type_is_kept_raw() {
        let mut b = [7u8; 16];
        b[15] = 0xE3;
        assert_eq!(SglDescriptor::decode(&b), SglDescriptor::Raw(b));
        assert_eq!(SglDescriptor::decode(&b).to_bytes(), b);
    }
}
