//! Connect data (1024 bytes with two NQNs).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nvme_proto::fabrics::ConnectData;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = ConnectData::decode(data) {
        assert!(d.subnqn.as_str().len() <= 223 && d.hostnqn.as_str().len() <= 223);
        assert_eq!(ConnectData::decode(&d.to_bytes()), Ok(d));
    }
});
