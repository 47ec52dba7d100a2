//! NVMe, NVMe-oF and NVMe/TCP wire types and codecs.
//!
//! Pure data: no I/O, no threads, no global state, no `unsafe`. Every decoder takes bytes and
//! returns either a typed value or an error ([`ProtoError`], or [`tcp::PduError`] for the NVMe/TCP
//! framer); no input makes it panic. Encoders write into caller-provided buffers so that the hot
//! path (capsules, data PDUs, completions) allocates nothing; only slow-path structures holding
//! NQNs and strings (Connect data, Identify, Discovery log) own `String`s.
//!
//! Byte order is little-endian everywhere, as on the wire.
//!
//! Modules:
//! - [`nvme`]: submission/completion queue entries, opcodes, status codes, feature ids.
//! - [`sgl`]: SGL descriptors (data block, keyed, transport data block).
//! - [`fabrics`]: Fabrics commands (Connect, Property Get/Set), Connect data, controller properties.
//! - [`identify`]: Identify Controller / Namespace, namespace lists and descriptors.
//! - [`log`]: Get Log Page parameters, error, SMART, changed namespaces, discovery log.
//! - [`rdma`]: NVMe/RDMA connection private data (CM request/accept/reject), RDMA TSAS.
//! - [`tcp`]: NVMe/TCP PDUs, the streaming framer [`tcp::parse_pdu`] and encoders.
//!
//! A target's receive step, in short:
//!
//! ```
//! use nvme_proto::tcp::{self, PduConfig, PduHeader, Role};
//! use nvme_proto::{Cid, Cqe, Nsid, Sqe, SglDescriptor, Status};
//!
//! // What a host would send: a 4 KiB read, data to come back in C2HData PDUs.
//! let cfg = PduConfig::initial(Role::Controller);
//! let sqe = Sqe::read(Cid(1), Nsid(1), 0, 8, SglDescriptor::tcp_transport(4096)).unwrap();
//! let mut wire = [0u8; 128];
//! let n = tcp::encode_capsule_cmd(&sqe, &[], &PduConfig::initial(Role::Host), &mut wire).unwrap();
//!
//! // The target frames it from its receive buffer and answers.
//! let mut out = [0u8; 32];
//! match tcp::parse_pdu(&wire[..n], &cfg) {
//!     Ok(Some(pdu)) => {
//!         if let PduHeader::CapsuleCmd(cmd) = pdu.header {
//!             assert_eq!((cmd.slba(), cmd.nlb()), (0, 8));
//!             let len = tcp::encode_capsule_resp(&Cqe::new(cmd.cid, Status::SUCCESS), cfg.hdgst, &mut out).unwrap();
//!             assert_eq!(len, 24);
//!         }
//!         // consume pdu.len bytes
//!     }
//!     Ok(None) => { /* read more bytes */ }
//!     Err(e) => {
//!         // send tcp::encode_term_req_for(&e, Role::Controller, &wire, &mut out) if e.fes() is Some, then close
//!         let _ = e;
//!     }
//! }
//! ```
#![forbid(unsafe_code)]

mod bytes;
mod error;
pub mod fabrics;
pub mod identify;
pub mod log;
pub mod nvme;
pub mod rdma;
pub mod sgl;
pub mod tcp;

pub use error::ProtoError;
pub use nvme::{Cid, Cqe, Nsid, Sqe, Status};
pub use sgl::SglDescriptor;
