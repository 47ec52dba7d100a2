//! Block devices behind the target's namespaces: `/sys/dev/block/<maj>:<min>/stat`.
//!
//! Threading: owned by the sampling thread. Each namespace's `device` is resolved once, in
//! `describe`: a block device node (`/dev/loop3`) by its `st_rdev`, a bare name (`nvme0n1`) by
//! `/sys/class/block/<name>`, and a regular file by the device holding its filesystem (`st_dev`).
//! A tick reads one small sysfs file per device; the kernel keeps the totals.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use agent_core::sample::{Capability, DeviceSample, Sample, TargetInfo};

/// Reads `/sys/block/<dev>/stat` of the namespaces' devices.
pub struct BlockCollector {
    devs: Vec<BlockDev>,
    /// Per namespace: how its device was resolved or why not.
    notes: Vec<String>,
}

struct BlockDev {
    name: String,
    stat: PathBuf,
}

impl BlockCollector {
    /// A collector for the namespaces' block devices (resolved in
    /// [`Collector::describe`](super::Collector::describe)).
    pub fn new() -> BlockCollector {
        BlockCollector {
            devs: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// The devices watched (after `describe`).
    pub fn devices(&self) -> Vec<&str> {
        self.devs.iter().map(|d| d.name.as_str()).collect()
    }
}

impl Default for BlockCollector {
    fn default() -> Self {
        BlockCollector::new()
    }
}

impl super::Collector for BlockCollector {
    fn name(&self) -> &'static str {
        "block"
    }

    fn capability(&self) -> Capability {
        let note = if self.notes.is_empty() {
            "no namespace has a device (null/malloc backends): no block statistics".to_string()
        } else {
            self.notes.join("; ")
        };
        Capability {
            name: "block".into(),
            available: !self.devs.is_empty(),
            note,
        }
    }

    fn describe(&mut self, info: &mut TargetInfo) {
        for ns in &info.namespaces {
            let Some(dev) = &ns.device else { continue };
            match resolve(dev) {
                Ok((name, sys)) => {
                    self.notes
                        .push(format!("nsid {} ({}): {dev} → {name}", ns.nsid, ns.backend));
                    if !self.devs.iter().any(|d| d.name == name) {
                        self.devs.push(BlockDev {
                            name,
                            stat: sys.join("stat"),
                        });
                    }
                }
                Err(why) => self
                    .notes
                    .push(format!("nsid {} ({}): {dev}: {why}", ns.nsid, ns.backend)),
            }
        }
    }

    fn collect(&mut self, _info: &TargetInfo, sample: &mut Sample) {
        for d in &self.devs {
            let Ok(text) = std::fs::read_to_string(&d.stat) else {
                continue;
            };
            if let Some(mut s) = parse_stat(&text) {
                s.name = d.name.clone();
                sample.devices.push(s);
            }
        }
    }
}

/// A namespace's `device` → (kernel name, sysfs directory).
fn resolve(dev: &str) -> Result<(String, PathBuf), String> {
    let path = Path::new(dev);
    if !dev.contains('/') {
        // A bare kernel name.
        let sys = Path::new("/sys/class/block").join(dev);
        if sys.join("stat").exists() {
            return Ok((dev.to_string(), sys));
        }
        let in_dev = Path::new("/dev").join(dev);
        if !in_dev.exists() {
            return Err("no such block device".into());
        }
        return resolve(&in_dev.to_string_lossy());
    }
    let md = std::fs::metadata(path).map_err(|e| format!("cannot stat: {e}"))?;
    let (id, what) = if md.file_type().is_block_device() {
        (md.rdev(), "block device")
    } else if md.is_file() {
        (md.dev(), "filesystem device")
    } else {
        return Err("neither a block device nor a regular file".into());
    };
    let (maj, min) = (major(id), minor(id));
    if maj == 0 {
        return Err(format!(
            "on a filesystem without a block device ({maj}:{min}: tmpfs, overlay, btrfs…)"
        ));
    }
    let sys = PathBuf::from(format!("/sys/dev/block/{maj}:{min}"));
    let real = std::fs::canonicalize(&sys)
        .map_err(|e| format!("{what} {maj}:{min} not in /sys/dev/block: {e}"))?;
    let name = real
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{what} {maj}:{min}: odd sysfs path {}", real.display()))?
        .to_string();
    Ok((name, real))
}

// glibc's gnu_dev_major/minor encoding.
fn major(dev: u64) -> u64 {
    ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff)
}

fn minor(dev: u64) -> u64 {
    ((dev >> 12) & 0xffff_ff00) | (dev & 0xff)
}

/// `/sys/block/<dev>/stat`: read I/Os, read merges, sectors read, read ticks, write I/Os,
/// write merges, sectors written, write ticks, in flight, io ticks, time in queue, (discard and
/// flush fields on newer kernels).
fn parse_stat(text: &str) -> Option<DeviceSample> {
    let v: Vec<u64> = text
        .split_whitespace()
        .map(|x| x.parse())
        .collect::<Result<_, _>>()
        .ok()?;
    if v.len() < 11 {
        return None;
    }
    Some(DeviceSample {
        name: String::new(),
        reads: v[0],
        sectors_read: v[2],
        read_ticks_ms: v[3],
        writes: v[4],
        sectors_written: v[6],
        write_ticks_ms: v[7],
        in_flight: v[8],
        io_ticks_ms: v[9],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields() {
        let t = "     120        3     4000       50      700        9    56000      800        2      900     1000        0        0        0        0        0        0\n";
        let s = parse_stat(t).expect("stat");
        assert_eq!((s.reads, s.sectors_read, s.read_ticks_ms), (120, 4000, 50));
        assert_eq!(
            (s.writes, s.sectors_written, s.write_ticks_ms),
            (700, 56000, 800)
        );
        assert_eq!((s.in_flight, s.io_ticks_ms), (2, 900));
        assert_eq!(parse_stat("1 2 3"), None);
        assert_eq!(parse_stat("1 2 x 4 5 6 7 8 9 10 11"), None);
    }

    #[test]
    fn dev_numbers() {
        // makedev(7, 3) and makedev(259, 65536)
        assert_eq!((major(0x703), minor(0x703)), (7, 3));
        let big = (259u64 << 8) | ((65536u64 & 0xffff_ff00) << 12);
        assert_eq!((major(big), minor(big)), (259, 65536));
    }

    #[test]
    fn unresolvable_devices_say_why() {
        assert!(resolve("no-such-disk-xyz").is_err());
        assert!(resolve("/nonexistent/file").is_err());
        let e = resolve("/proc/self/status").expect_err("procfs has no block device");
        assert!(e.contains("without a block device"), "{e}");
    }
}
