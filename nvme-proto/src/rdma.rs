//! NVMe/RDMA transport wire types (NVMe/RDMA Transport Specification 1.0): the RDMA-CM private
//! data exchanged when a queue pair connects (request, accept, reject) and the RDMA transport
//! specific address subtype of discovery log entries. Data itself moves by keyed SGLs
//! ([`crate::sgl::SglDescriptor::keyed`]) with RDMA READ/WRITE, and capsules are SEND/RECV
//! messages holding an SQE (plus in-capsule data) or a CQE: no framing beyond that.
//!
//! Pure values; encoders write into caller buffers.

use crate::bytes::{put_u16, u16_at};
use crate::ProtoError;

/// Size of the private data in RDMA_CM_REQ / RDMA_CM_REP / RDMA_CM_REJ.
pub const CM_PRIVATE_DATA_SIZE: usize = 32;

fn short(what: &'static str, have: usize) -> ProtoError {
    ProtoError::short(what, CM_PRIVATE_DATA_SIZE, have)
}

/// RDMA_CM_REQUEST private data (host to controller).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CmRequest {
    /// Record format, 0.
    pub recfmt: u16,
    /// Queue id the connection is for (0 = admin).
    pub qid: u16,
    /// Host receive queue size: number of RDMA RECVs the host posted (CQ entries it can take).
    pub hrqsize: u16,
    /// Host send queue size, zero-based (SQ entries), as in Connect's SQSIZE.
    pub hsqsize: u16,
    /// Controller id for I/O queues (NVMe-oF 1.1); 0xffff otherwise.
    pub cntlid: u16,
}

impl CmRequest {
    /// Decode; needs the first 8 bytes (CNTLID reads as 0xffff when the peer sent fewer than 10).
    /// The transport may deliver more than 32 bytes (InfiniBand CM pads); extra bytes are ignored.
    pub fn decode(b: &[u8]) -> Result<Self, ProtoError> {
        if b.len() < 8 {
            return Err(ProtoError::short(
                "rdma cm request private data",
                8,
                b.len(),
            ));
        }
        Ok(CmRequest {
            recfmt: u16_at(b, 0),
            qid: u16_at(b, 2),
            hrqsize: u16_at(b, 4),
            hsqsize: u16_at(b, 6),
            cntlid: if b.len() >= 10 { u16_at(b, 8) } else { 0xffff },
        })
    }
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, ProtoError> {
        let have = out.len();
        let b = out
            .get_mut(..CM_PRIVATE_DATA_SIZE)
            .ok_or(short("rdma cm request private data", have))?;
        b.fill(0);
        put_u16(b, 0, self.recfmt);
        put_u16(b, 2, self.qid);
        put_u16(b, 4, self.hrqsize);
        put_u16(b, 6, self.hsqsize);
        put_u16(b, 8, self.cntlid);
        Ok(CM_PRIVATE_DATA_SIZE)
    }
}

/// RDMA_CM_ESTABLISHED / accept private data (controller to host).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CmAccept {
    pub recfmt: u16,
    /// Controller receive queue size (RECVs posted for this queue).
    pub crqsize: u16,
}

impl CmAccept {
    /// Decode; needs 4 bytes (Linux nvmet sends 8, the specification's format is 32).
    pub fn decode(b: &[u8]) -> Result<Self, ProtoError> {
        if b.len() < 4 {
            return Err(ProtoError::short("rdma cm accept private data", 4, b.len()));
        }
        Ok(CmAccept {
            recfmt: u16_at(b, 0),
            crqsize: u16_at(b, 2),
        })
    }
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, ProtoError> {
        let have = out.len();
        let b = out
            .get_mut(..CM_PRIVATE_DATA_SIZE)
            .ok_or(short("rdma cm accept private data", have))?;
        b.fill(0);
        put_u16(b, 0, self.recfmt);
        put_u16(b, 2, self.crqsize);
        Ok(CM_PRIVATE_DATA_SIZE)
    }
}

/// RDMA_CM_REJECT status values.
pub mod reject_status {
    pub const INVALID_PRIVATE_DATA_LENGTH: u16 = 0x01;
    pub const INVALID_RECFMT: u16 = 0x02;
    pub const INVALID_QID: u16 = 0x03;
    pub const INVALID_HSQSIZE: u16 = 0x04;
    pub const INVALID_HRQSIZE: u16 = 0x05;
    pub const NO_RESOURCES: u16 = 0x06;
    pub const INVALID_IRD: u16 = 0x07;
    pub const INVALID_ORD: u16 = 0x08;
    pub const INVALID_CNTLID: u16 = 0x09;
}

/// RDMA_CM_REJECT private data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CmReject {
    pub recfmt: u16,
    /// See [`reject_status`].
    pub status: u16,
}

impl CmReject {
    /// Size Linux sends (the reject carries only these 4 bytes).
    pub const SIZE: usize = 4;

    pub fn decode(b: &[u8]) -> Result<Self, ProtoError> {
        if b.len() < Self::SIZE {
            return Err(ProtoError::short(
                "rdma cm reject private data",
                Self::SIZE,
                b.len(),
            ));
        }
        Ok(CmReject {
            recfmt: u16_at(b, 0),
            status: u16_at(b, 2),
        })
    }
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, ProtoError> {
        let have = out.len();
        let b = out.get_mut(..Self::SIZE).ok_or(ProtoError::short(
            "rdma cm reject private data",
            Self::SIZE,
            have,
        ))?;
        put_u16(b, 0, self.recfmt);
        put_u16(b, 2, self.status);
        Ok(Self::SIZE)
    }
}

/// RDMA transport specific address subtype (TSAS of a discovery entry with TRTYPE 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RdmaTsas {
    /// 1 = reliable connected, 2 = reliable datagram.
    pub qptype: u8,
    /// 1 none, 2 InfiniBand, 3 RoCE v1, 4 RoCE v2, 5 iWARP.
    pub prtype: u8,
    /// 2 = RDMA_CM.
    pub cms: u8,
    pub pkey: u16,
}

impl RdmaTsas {
    pub const QPTYPE_CONNECTED: u8 = 1;
    pub const PRTYPE_NOT_SPECIFIED: u8 = 1;
    pub const PRTYPE_ROCE_V2: u8 = 4;
    pub const CMS_RDMA_CM: u8 = 2;

    /// What Linux nvmet announces: connected QPs, RDMA-CM, provider not specified.
    pub const fn rdma_cm() -> Self {
        RdmaTsas {
            qptype: Self::QPTYPE_CONNECTED,
            prtype: Self::PRTYPE_NOT_SPECIFIED,
            cms: Self::CMS_RDMA_CM,
            pkey: 0,
        }
    }

    pub fn to_tsas(self) -> [u8; 256] {
        let mut t = [0u8; 256];
        t[0] = self.qptype;
        t[1] = self.prtype;
        t[2] = self.cms;
        put_u16(&mut t, 8, self.pkey);
        t
    }

    pub fn from_tsas(t: &[u8; 256]) -> Self {
        RdmaTsas {
            qptype: t[0],
            prtype: t[1],
            cms: t[2],
            pkey: u16_at(t, 8),
        }
    }
}

/// TCP transport specific address subtype: byte 0 SECTYPE (0 none, 1 TLS 1.2, 2 TLS 1.3).
pub mod tcp_sectype {
    pub const NONE: u8 = 0;
    pub const TLS_1_2: u8 = 1;
    pub const TLS_1_3: u8 = 2;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cm_request_layout_and_round_trip() {
        let r = CmRequest {
            recfmt: 0,
            qid: 2,
            hrqsize: 128,
            hsqsize: 127,
            cntlid: 5,
        };
        let mut b = [0xffu8; 32];
        assert_eq!(r.encode(&mut b), Ok(32));
        assert_eq!(&b[..10], &[0, 0, 2, 0, 128, 0, 127, 0, 5, 0]);
        assert!(b[10..].iter().all(|&x| x == 0), "reserved bytes zeroed");
        assert_eq!(CmRequest::decode(&b), Ok(r));
        assert_eq!(CmRequest::decode(&b[..8]).map(|r| r.cntlid), Ok(0xffff));
        assert!(CmRequest::decode(&b[..7]).is_err());
    }

    #[test]
    fn cm_accept_reject_round_trip() {
        let a = CmAccept {
            recfmt: 0,
            crqsize: 64,
        };
        let mut b = [0u8; 32];
        a.encode(&mut b).expect("encode");
        assert_eq!(CmAccept::decode(&b), Ok(a));
        assert_eq!(CmAccept::decode(&b[..8]), Ok(a), "linux sends 8 bytes");
        assert!(CmAccept::decode(&b[..3]).is_err());
        let r = CmReject {
            recfmt: 0,
            status: reject_status::INVALID_HSQSIZE,
        };
        let mut b = [0u8; 4];
        assert_eq!(r.encode(&mut b), Ok(4));
        assert_eq!(b, [0, 0, 4, 0]);
        assert_eq!(CmReject::decode(&b), Ok(r));
    }

    #[test]
    fn rdma_tsas() {
        let t = RdmaTsas::rdma_cm().to_tsas();
        assert_eq!(&t[..3], &[1, 1, 2]);
        assert_eq!(RdmaTsas::from_tsas(&t), RdmaTsas::rdma_cm());
    }
}
