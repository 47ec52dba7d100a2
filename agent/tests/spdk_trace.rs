//! SPDK trace reader against SPDK's own decoder: every entry of the three recordings in
//! `../shared/spdk-recordings/` must equal what `spdk_trace -j` printed (tpoint, tsc, owner,
//! object, arguments, related object). The recordings are read gzip-compressed in place.

mod common;
use common::{gunzip, recordings, trace_file};

use agent::spdk::trace::SpdkTrace;

const SCENARIOS: [&str; 3] = ["healthy-qd32", "starved-qd1", "hog-on-reactor-core"];

#[test]
fn every_entry_of_every_recording_equals_spdk_traces_own_decoding() {
    let Some(root) = recordings() else { return };
    for s in SCENARIOS {
        let dir = root.join(s);
        let path = trace_file(&dir);
        let trace = SpdkTrace::from_bytes(path.clone(), gunzip(&path)).unwrap();
        let oracle: serde_json::Value =
            serde_json::from_slice(&gunzip(&dir.join("spdk_trace.json.gz"))).unwrap();
        assert_eq!(
            oracle["tsc_rate"].as_u64(),
            Some(trace.header().tsc_rate),
            "{s}: tsc rate"
        );
        let want = oracle["entries"].as_array().unwrap();
        let got = trace.snapshot().unwrap();
        assert_eq!(got.len(), want.len(), "{s}: entry count");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let g = trace.entry_json(g);
            assert_eq!(&g, w, "{s}: entry {i} differs");
        }
        // The tracepoint descriptions agree too (names, ids, argument names and sizes).
        for t in oracle["tpoints"].as_array().unwrap() {
            let id = t["id"].as_u64().unwrap() as u16;
            let mine = &trace.header().tpoints[&id];
            assert_eq!(mine.name, t["name"].as_str().unwrap(), "{s}: tpoint {id}");
            let args: Vec<(String, u64)> = t["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| {
                    (
                        a["name"].as_str().unwrap().to_string(),
                        a["size"].as_u64().unwrap(),
                    )
                })
                .collect();
            let margs: Vec<(String, u64)> = mine
                .args
                .iter()
                .map(|a| (a.name.clone(), u64::from(a.size)))
                .collect();
            assert_eq!(margs, args, "{s}: tpoint {id} arguments");
        }
    }
}
