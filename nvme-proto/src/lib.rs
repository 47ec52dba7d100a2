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
//! - [`tcp`]: NVMe/TCP PDUs, the streaming framer [`tcp::parse_pdu`] and encoders.
#![forbid(unsafe_code)]

mod bytes;
mod error;
pub mod fabrics;
pub mod identify;
pub mod log;
pub mod nvme;
pub mod sgl;
pub mod tcp;

pub use error::ProtoError;
pub use nvme::{Cid, Cqe, Nsid, Sqe, Status};
pub use sgl::SglDescriptor;
