//! The NVMe/TCP framer on an arbitrary byte stream under an arbitrary configuration: the first
//! four bytes choose the config, the rest is the stream, parsed PDU after PDU as a receiver would.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nvme_proto::tcp::{self, PduConfig, Role};

fuzz_target!(|data: &[u8]| {
    let Some((&[a, b, c, d], stream)) = data.split_first_chunk::<4>() else {
        return;
    };
    let limit = |x: u8| if x == 0 { u32::MAX } else { (x as u32) * 64 };
    let cfg = PduConfig {
        role: if a & 1 == 0 {
            Role::Controller
        } else {
            Role::Host
        },
        hdgst: a & 2 != 0,
        ddgst: a & 4 != 0,
        rx_pda: (a >> 3) & 0x3,
        tx_pda: (a >> 5) & 0x3,
        max_h2c_data: limit(b),
        max_c2h_data: limit(c),
        max_in_capsule_data: limit(d),
    };
    let mut buf = stream;
    loop {
        match tcp::parse_pdu(buf, &cfg) {
            Ok(Some(v)) => {
                assert!(
                    v.len >= 8 && v.len <= buf.len(),
                    "view length out of bounds"
                );
                let start = (v.data.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
                assert!(
                    start <= v.len && start + v.data.len() <= v.len,
                    "data outside the pdu"
                );
                buf = &buf[v.len..];
            }
            Ok(None) => break,
            Err(e) => {
                if let tcp::PduError::DataDigest { pdu_len, .. } = e {
                    assert!(pdu_len <= buf.len());
                    buf = &buf[pdu_len..];
                    continue;
                }
                let mut out = [0u8; 256];
                let n =
                    tcp::encode_term_req_for(&e, cfg.role, buf, &mut out).expect("term req fits");
                assert!(n == 0 || (24..=152).contains(&n));
                break;
            }
        }
    }
});
