//! Identify Controller / Namespace, namespace id lists and descriptor lists.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nvme_proto::identify::{decode_ns_list, IdentifyController, IdentifyNamespace, NsDescriptor};

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = IdentifyController::decode(data) {
        let v = c.to_vec().expect("a decoded controller re-encodes");
        assert_eq!(IdentifyController::decode(&v), Ok(c));
    }
    if let Ok(n) = IdentifyNamespace::decode(data) {
        let _ = n.block_size();
        let v = n.to_vec().expect("a decoded namespace re-encodes");
        assert_eq!(IdentifyNamespace::decode(&v), Ok(n));
    }
    if let Ok(list) = NsDescriptor::decode_list(data) {
        let mut v = vec![0u8; 4096];
        if NsDescriptor::encode_list(&list, &mut v).is_ok() {
            assert_eq!(NsDescriptor::decode_list(&v), Ok(list));
        }
    }
    let _ = decode_ns_list(data);
});
