//! SPDK trace reader against SPDK's own decoder: every entry of the three recordings in
//! `../shared/spdk-recordings/` must equal what `spdk_trace -j` printed (tpoint, tsc, owner,
//! object, arguments, related object). The recordings are read gzip-compressed in place.

use std::io::Read;
use std::path::PathBuf;

use agent::spdk::trace::SpdkTrace;

const SCENARIOS: [&str; 3] = ["healthy-qd32", "starved-qd1", "hog-on-reactor-core"];

/// `../shared/spdk-recordings` beside the checkout, when present.
fn recordings() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/spdk-recordings");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipped: {} is absent (the shared recordings sit beside the checkout)",
            dir.display()
        );
        None
    }
}

fn gunzip(path: &std::path::Path) -> Vec<u8> {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(f)
        .read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    out
}

fn trace_file(dir: &std::path::Path) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("nvmf_trace.pid") && n.ends_with(".gz"))
        })
        .unwrap_or_else(|| panic!("no nvmf_trace.pid*.gz in {}", dir.display()))
}

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
