//! block probe against a loop device (root; skipped otherwise): O_DIRECT writes with dd must
//! show up as latencies, counts and bytes for exactly that device.

mod common;

use probes::{BlockDev, BlockOp, KernelEvent, ProbeConfig, ProbeKind, ProbeSet, StreamThresholds};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A loop device over a file; detached on drop, also when the test fails.
struct LoopDev {
    path: PathBuf,
}

impl LoopDev {
    fn attach(file: &Path) -> Result<LoopDev, String> {
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(file)
            .output()
            .map_err(|e| format!("losetup not runnable: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "losetup failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        Ok(LoopDev { path })
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.path).status();
    }
}

const COUNT: u64 = 256;

#[test]
fn root_dd_on_loop_device_gives_block_latencies_for_that_device() {
    if !common::root_and_btf("root_dd_on_loop_device_gives_block_latencies_for_that_device") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let backing = dir.path().join("disk.img");
    std::fs::write(&backing, vec![0u8; 4 << 20]).expect("backing file");
    let lo = match LoopDev::attach(&backing) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("skipping: no loop device available ({e})");
            return;
        }
    };
    let dev = BlockDev::from_path(&lo.path).expect("loop device has a device number");
    println!("loop device {} = {dev}", lo.path.display());

    let cfg = ProbeConfig {
        probes: vec![ProbeKind::Block],
        filter: probes::Filter {
            devices: vec![dev],
            stream: StreamThresholds {
                block_min_ns: Some(0),
                ..StreamThresholds::default()
            },
            ..probes::Filter::default()
        },
        ..ProbeConfig::default()
    };
    let (mut set, statuses) = ProbeSet::start(&cfg).expect("valid config");
    assert!(set.running().contains(&ProbeKind::Block), "{statuses:?}");

    let st = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", lo.path.display()))
        .args([
            "oflag=direct",
            "bs=4k",
            &format!("count={COUNT}"),
            "status=none",
        ])
        .status()
        .expect("dd runs");
    assert!(st.success(), "dd to {} failed", lo.path.display());

    let mut events = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        events.extend(set.poll(Duration::from_millis(100)).expect("poll"));
        let writes = events
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    KernelEvent::BlockRq {
                        op: BlockOp::Write,
                        ..
                    }
                )
            })
            .count() as u64;
        if writes >= COUNT {
            break;
        }
    }
    let mut streamed_bytes = 0u64;
    for e in &events {
        match e {
            KernelEvent::BlockRq {
                dev: d,
                op,
                bytes,
                latency_ns,
                ..
            } => {
                assert_eq!(*d, dev, "only the configured device is traced: {e:?}");
                if *op == BlockOp::Write {
                    streamed_bytes += u64::from(*bytes);
                    assert!(*latency_ns > 0, "{e:?}");
                }
            }
            other => panic!("block probe streamed a non-block event: {other:?}"),
        }
    }
    assert!(
        streamed_bytes >= COUNT * 4096,
        "streamed {streamed_bytes} bytes of writes"
    );

    let agg = set.read_aggregates().expect("aggregates");
    println!("{:?}", agg.block);
    let w = agg
        .block
        .iter()
        .find(|b| b.dev == dev && b.op == BlockOp::Write)
        .unwrap_or_else(|| panic!("no write totals for {dev}: {:?}", agg.block));
    assert!(w.latency.count >= COUNT, "{w:?}");
    assert!(w.bytes >= COUNT * 4096, "{w:?}");
    assert_eq!(
        w.latency.buckets.iter().sum::<u64>(),
        w.latency.count,
        "every request is in one bucket"
    );
    let p50 = w.latency.quantile_upper_ns(0.5).expect("non-empty");
    println!(
        "loop write latency: n={} mean={:?} ns p50<{p50} ns max={} ns",
        w.latency.count,
        w.latency.mean_ns(),
        w.latency.max_ns
    );
    assert!(agg.block.iter().all(|b| b.dev == dev), "{:?}", agg.block);
}
