//! Discovery log page, error / SMART log entries, changed namespace list.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nvme_proto::log::{
    decode_changed_ns_list, DiscoveryLog, DiscoveryLogHeader, ErrorLogEntry, SmartLog,
};

fuzz_target!(|data: &[u8]| {
    let _ = DiscoveryLogHeader::decode(data).map(|h| h.log_len());
    if let Ok(l) = DiscoveryLog::decode(data) {
        assert_eq!(
            DiscoveryLog::decode(&l.to_vec().expect("re-encodes")),
            Ok(l)
        );
    }
    let _ = ErrorLogEntry::decode(data);
    let _ = SmartLog::decode(data);
    let _ = decode_changed_ns_list(data);
});
