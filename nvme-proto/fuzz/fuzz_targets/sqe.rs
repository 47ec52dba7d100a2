//! SQE, CQE and SGL decoding plus the typed fabrics views of an SQE.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nvme_proto::fabrics::{ConnectCmd, PropertyGet, PropertySet};
use nvme_proto::log::GetLogPage;
use nvme_proto::nvme::{Cqe, DsmRange, Sqe};
use nvme_proto::sgl::SglDescriptor;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = Sqe::from_slice(data) {
        assert_eq!(Sqe::decode(&s.to_bytes()), s, "sqe decode is not canonical");
        let _ = (
            s.slba(),
            s.nlb(),
            s.dsm_nr(),
            s.fctype(),
            s.dptr.as_keyed(),
            s.dptr.as_in_capsule(),
        );
        let _ = ConnectCmd::from_sqe(&s);
        let _ = PropertyGet::from_sqe(&s);
        let _ = PropertySet::from_sqe(&s);
        let g = GetLogPage::from_sqe(&s);
        let _ = g.len_bytes();
    }
    if let Ok(c) = Cqe::from_slice(data) {
        assert_eq!(
            &c.to_bytes()[..],
            &data[..16],
            "cqe must round trip exactly"
        );
    }
    if let Some(b) = data.first_chunk::<16>() {
        let d = SglDescriptor::decode(b);
        assert_eq!(SglDescriptor::decode(&d.to_bytes()), d);
    }
    let _ = nvme_proto::rdma::CmRequest::decode(data);
    let _ = nvme_proto::rdma::CmAccept::decode(data);
    let _ = nvme_proto::rdma::CmReject::decode(data);
    for r in DsmRange::iter(data) {
        let _ = r;
    }
});
