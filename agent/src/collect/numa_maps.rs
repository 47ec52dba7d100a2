//! Where the target's memory lives: `/proc/<pid>/numa_maps`, summed per NUMA node for the
//! mappings that hold I/O buffers and for all mappings (DESIGN §5).
//!
//! Threading: owned by the sampling thread. The kernel builds the file by walking the target's
//! page tables when it is read, so the cost grows with the target's resident memory (11 to 38 ms
//! for ~330 MiB resident on the shared development VM, i.e. 35 to 115 µs per resident MiB), and
//! holds the target's mmap lock while it walks. To keep that off the tick (and off the agent's
//! cost at full load: at 2 % it was a tenth of the agent's CPU), a read may take at most
//! [`MAX_DUTY_PER_MILLE`] ‰ of wall time: after a read that took `c`, the next happens no sooner
//! than `c × 1000 / MAX_DUTY_PER_MILLE` later, and the ticks in between repeat the last summary
//! (placement changes slowly; a 256 MiB target is re-read every few seconds, the first tick
//! always reads).
//!
//! What counts as a buffer mapping: at least [`BUFFER_MIN_BYTES`] resident, and anonymous
//! (including the heap, not the stack), shared memory (`/dev/shm/*`, SysV, memfd) or hugetlb —
//! but not the target's own trace file (`/dev/shm/ringside.*`) nor any other file mapping
//! (binaries, libraries, page cache). numa_maps gives no mapping sizes, only resident pages per
//! node, and resident pages are what placement is about.

use std::time::{Duration, Instant};

use agent_core::sample::{Capability, MemorySample, Sample, TargetInfo};

/// Smallest resident size of a mapping counted as an I/O buffer.
pub const BUFFER_MIN_BYTES: u64 = 1 << 20;

/// Largest share of wall time (per mille) spent reading `numa_maps`.
pub const MAX_DUTY_PER_MILLE: u32 = 2;

/// Whether a new read is due, `since` after the last one, which cost `cost`.
fn read_due(since: Duration, cost: Duration) -> bool {
    since >= cost * 1000 / MAX_DUTY_PER_MILLE
}

/// A malformed `numa_maps` line.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("numa_maps line {line}: {reason}")]
pub struct NumaMapsError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub reason: String,
}

/// What backs a mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backing {
    /// Anonymous memory (`anon=` or nothing said).
    Anonymous,
    /// The brk heap.
    Heap,
    /// A thread stack.
    Stack,
    /// A file (shared memory files included), path as printed (escapes kept: `\040`).
    File(String),
}

/// One line of `numa_maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NumaMapping {
    /// Start address.
    pub start: u64,
    /// Memory policy as printed (`default`, `bind:1`, `interleave:0-1`, `prefer:1`…).
    pub policy: String,
    /// What backs it.
    pub backing: Backing,
    /// hugetlb mapping.
    pub huge: bool,
    /// Resident pages per node, `(node, pages)`.
    pub pages_by_node: Vec<(u32, u64)>,
    /// Page size in bytes (`kernelpagesize_kB`; 4 KiB when not printed).
    pub page_size: u64,
}

impl NumaMapping {
    /// Resident bytes over all nodes.
    pub fn resident_bytes(&self) -> u64 {
        self.pages_by_node
            .iter()
            .map(|&(_, p)| p.saturating_mul(self.page_size))
            .fold(0u64, u64::saturating_add)
    }

    /// Whether the mapping holds I/O buffers (see the module doc).
    pub fn is_buffer(&self) -> bool {
        if self.resident_bytes() < BUFFER_MIN_BYTES {
            return false;
        }
        match &self.backing {
            Backing::Anonymous | Backing::Heap => true,
            Backing::Stack => false,
            Backing::File(path) => {
                if path.starts_with("/dev/shm/ringside.") {
                    return false; // the trace file, not data buffers
                }
                self.huge
                    || path.starts_with("/dev/shm/")
                    || path.starts_with("/SYSV")
                    || path.starts_with("/memfd:")
                    || path.starts_with("/dev/hugepages")
                    || path.starts_with("/anon_hugepage")
            }
        }
    }
}

/// Parses the whole file.
pub fn parse(text: &str) -> Result<Vec<NumaMapping>, NumaMapsError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            parse_line(l).map_err(|reason| NumaMapsError {
                line: i + 1,
                reason,
            })
        })
        .collect()
}

fn parse_line(line: &str) -> Result<NumaMapping, String> {
    let mut toks = line.split_whitespace().peekable();
    let addr = toks.next().ok_or("empty line")?;
    let start = u64::from_str_radix(addr, 16).map_err(|_| format!("bad start address {addr:?}"))?;
    // The policy may hold spaces ("weighted interleave:0-1", "prefer (many):0-1"): it runs up
    // to the first attribute.
    let mut policy = Vec::new();
    while let Some(t) = toks.peek() {
        if is_attribute(t) {
            break;
        }
        policy.push(*t);
        toks.next();
    }
    if policy.is_empty() {
        return Err("no memory policy".into());
    }
    let mut m = NumaMapping {
        start,
        policy: policy.join(" "),
        backing: Backing::Anonymous,
        huge: false,
        pages_by_node: Vec::new(),
        page_size: 4096,
    };
    for t in toks {
        match t {
            "heap" => m.backing = Backing::Heap,
            "stack" => m.backing = Backing::Stack,
            "huge" => m.huge = true,
            _ => {
                let Some((k, v)) = t.split_once('=') else {
                    continue; // an attribute a newer kernel added
                };
                let num = || v.parse::<u64>().map_err(|_| format!("bad value in {t:?}"));
                if k == "file" {
                    m.backing = Backing::File(v.to_string());
                } else if k == "kernelpagesize_kB" {
                    m.page_size = num()?
                        .checked_mul(1024)
                        .ok_or_else(|| format!("page size overflows in {t:?}"))?;
                } else if let Some(node) = k.strip_prefix('N') {
                    let node: u32 = node.parse().map_err(|_| format!("bad node in {t:?}"))?;
                    m.pages_by_node.push((node, num()?));
                }
            }
        }
    }
    Ok(m)
}

fn is_attribute(t: &str) -> bool {
    matches!(t, "heap" | "stack" | "huge")
        || t.split_once('=').is_some_and(|(k, _)| {
            matches!(
                k,
                "file"
                    | "anon"
                    | "dirty"
                    | "mapped"
                    | "mapmax"
                    | "swapcache"
                    | "active"
                    | "writeback"
                    | "kernelpagesize_kB"
            ) || (k.len() > 1 && k.starts_with('N') && k[1..].bytes().all(|b| b.is_ascii_digit()))
        })
}

/// Bytes per node for buffer mappings and all mappings; the policy of the largest buffer.
pub fn summarize(maps: &[NumaMapping]) -> MemorySample {
    let mut buffer: Vec<(u32, u64)> = Vec::new();
    let mut total: Vec<(u32, u64)> = Vec::new();
    let mut largest: Option<(u64, &str)> = None;
    for m in maps {
        let is_buffer = m.is_buffer();
        for &(node, pages) in &m.pages_by_node {
            let bytes = pages.saturating_mul(m.page_size);
            add(&mut total, node, bytes);
            if is_buffer {
                add(&mut buffer, node, bytes);
            }
        }
        if is_buffer {
            let r = m.resident_bytes();
            if largest.is_none_or(|(b, _)| r > b) {
                largest = Some((r, &m.policy));
            }
        }
    }
    buffer.sort_unstable();
    total.sort_unstable();
    MemorySample {
        buffer_bytes_by_node: buffer,
        total_bytes_by_node: total,
        policy: largest.map(|(_, p)| p.to_string()),
    }
}

fn add(v: &mut Vec<(u32, u64)>, node: u32, bytes: u64) {
    match v.iter_mut().find(|(n, _)| *n == node) {
        Some((_, b)) => *b = b.saturating_add(bytes),
        None => v.push((node, bytes)),
    }
}

/// Reads the target's `numa_maps` each tick into [`Sample::memory`].
pub struct NumaMapsCollector {
    pid: u32,
    /// Why nothing flows, when nothing does.
    problem: Option<String>,
    /// Last parse error, reported once on stderr (the file is the kernel's: it should not happen).
    parse_error_noted: bool,
    /// The last summary, its time and what reading it cost.
    last: Option<(MemorySample, Instant, Duration)>,
}

impl NumaMapsCollector {
    /// A collector for process `pid`.
    pub fn new(pid: u32) -> NumaMapsCollector {
        NumaMapsCollector {
            pid,
            problem: None,
            parse_error_noted: false,
            last: None,
        }
    }

    fn path(&self) -> String {
        format!("/proc/{}/numa_maps", self.pid)
    }

    fn read(&self) -> Result<String, String> {
        std::fs::read_to_string(self.path()).map_err(|e| {
            use std::io::ErrorKind;
            let pid = self.pid;
            match e.kind() {
                ErrorKind::PermissionDenied => format!(
                    "no permission to read /proc/{pid}/numa_maps (run as the target's user or with CAP_SYS_PTRACE): buffer memory placement unknown"
                ),
                ErrorKind::NotFound
                    if std::path::Path::new(&format!("/proc/{pid}")).exists() =>
                {
                    format!(
                        "no /proc/{pid}/numa_maps (kernel without NUMA support): buffer memory placement unknown"
                    )
                }
                ErrorKind::NotFound => {
                    format!("process {pid} not found: buffer memory placement unknown")
                }
                _ => format!(
                    "cannot read /proc/{pid}/numa_maps ({e}): buffer memory placement unknown"
                ),
            }
        })
    }
}

impl super::Collector for NumaMapsCollector {
    fn name(&self) -> &'static str {
        "numa_maps"
    }

    fn capability(&self) -> Capability {
        Capability {
            name: "numa_maps".into(),
            available: self.problem.is_none(),
            note: self.problem.clone().unwrap_or_else(|| {
                format!(
                    "/proc/{}/numa_maps: bytes per NUMA node of buffer mappings (>= 1 MiB anonymous, shared or hugetlb) and of all memory",
                    self.pid
                )
            }),
        }
    }

    fn describe(&mut self, _info: &mut TargetInfo) {
        match self.read() {
            Ok(text) => {
                if let Err(e) = parse(&text) {
                    self.problem = Some(format!("unexpected numa_maps format ({e})"));
                }
            }
            Err(why) => self.problem = Some(why),
        }
    }

    fn collect(&mut self, _info: &TargetInfo, sample: &mut Sample) {
        if self.problem.is_some() {
            return;
        }
        if let Some((mem, at, cost)) = &self.last {
            if !read_due(at.elapsed(), *cost) {
                sample.memory = Some(mem.clone());
                return;
            }
        }
        let start = Instant::now();
        let Ok(text) = self.read() else {
            self.last = None; // the target is gone or the file unreadable now
            return;
        };
        match parse(&text) {
            Ok(maps) => {
                let mem = summarize(&maps);
                self.last = Some((mem.clone(), start, start.elapsed()));
                sample.memory = Some(mem);
            }
            Err(e) => {
                if !self.parse_error_noted {
                    self.parse_error_noted = true;
                    eprintln!("ringside: numa_maps of pid {}: {e}", self.pid);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/numa_maps/target.txt"
    ));
    const MIB: u64 = 1 << 20;
    const PAGE: u64 = 4096;

    #[test]
    fn lines_parse() {
        let m = parse(TARGET).expect("fixture parses");
        assert_eq!(m.len(), 13);
        assert_eq!(m[0].start, 0x55b7af8d0000);
        assert_eq!(
            m[0].backing,
            Backing::File("/usr/local/bin/ringside-tgt".into())
        );
        assert_eq!(m[1].backing, Backing::Heap);
        assert_eq!(m[1].pages_by_node, vec![(0, 28154)]);
        assert_eq!(m[2].policy, "bind:1");
        assert_eq!(m[2].pages_by_node, vec![(1, 65536)]);
        assert_eq!(m[3].policy, "interleave:0-1");
        assert_eq!(m[3].pages_by_node, vec![(0, 512), (1, 512)]);
        assert_eq!(m[4].policy, "prefer:1");
        assert!(m[5].huge);
        assert_eq!(m[5].page_size, 2048 * 1024);
        assert_eq!(m[5].resident_bytes(), 32 * MIB);
        assert_eq!(m[9].backing, Backing::Anonymous);
        assert_eq!(m[10].backing, Backing::Stack);
        assert_eq!(m[11].policy, "default");
        assert!(m[11].pages_by_node.is_empty());
        assert_eq!(m[12].policy, "weighted interleave:0-1");
    }

    #[test]
    fn buffer_classification() {
        let m = parse(TARGET).expect("fixture parses");
        let buffers: Vec<bool> = m.iter().map(NumaMapping::is_buffer).collect();
        assert_eq!(
            buffers,
            vec![
                false, // binary
                true,  // heap, 110 MiB
                true,  // bind:1 anon 256 MiB
                true,  // interleave anon 4 MiB
                false, // the trace file
                true,  // anonymous hugetlb
                true,  // memfd, 1.2 MiB
                false, // libc text
                false, // libc data (copy-on-write anon in a library)
                false, // anon but 40 KiB
                false, // stack
                false, // nothing resident
                true,  // weighted interleave 2 MiB
            ]
        );
    }

    #[test]
    fn summary_by_node() {
        let s = summarize(&parse(TARGET).expect("fixture parses"));
        let n0_buf = (28154 + 512 + 300 + 256) * PAGE + 16 * MIB;
        let n1_buf = (65536 + 512 + 256) * PAGE + 16 * MIB;
        assert_eq!(s.buffer_bytes_by_node, vec![(0, n0_buf), (1, n1_buf)]);
        let n0_all = (90 + 28154 + 512 + 2048 + 300 + 400 + 300 + 10 + 400 + 256) * PAGE + 16 * MIB;
        assert_eq!(s.total_bytes_by_node, vec![(0, n0_all), (1, n1_buf)]);
        assert_eq!(s.policy.as_deref(), Some("bind:1"));
    }

    #[test]
    fn empty_file_summarizes_to_nothing() {
        let s = summarize(&parse("").expect("empty parses"));
        assert_eq!(s, MemorySample::default());
    }

    #[test]
    fn bad_lines_name_their_line() {
        let bad = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/numa_maps/bad_count.txt"
        ));
        let e = parse(bad).expect_err("N1=lots");
        assert_eq!(e.line, 1);
        assert!(e.reason.contains("N1=lots"), "{e}");
        let bad = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/numa_maps/bad_address.txt"
        ));
        let e = parse(bad).expect_err("bad address");
        assert!(e.to_string().contains("bad start address"), "{e}");
        let e = parse("7f00 \n7f01 anon=1\n").expect_err("no policy");
        assert_eq!(e.line, 1);
        let e = parse("7f00 default\n7f01 anon=1\n").expect_err("no policy on line 2");
        assert_eq!(e.line, 2);
    }

    #[test]
    fn reads_stay_under_the_duty_cycle() {
        let ms = Duration::from_millis;
        // 11 ms per read at 2 ‰: at most one read per 5.5 s.
        assert!(!read_due(ms(5000), ms(11)));
        assert!(read_due(ms(5500), ms(11)));
        // A cheap read (0.5 ms) is due every 250 ms, i.e. every tick.
        assert!(!read_due(ms(200), Duration::from_micros(500)));
        assert!(read_due(ms(1000), Duration::from_micros(500)));
        // 140 ms (a 4 GiB target): every 70 s.
        assert!(!read_due(ms(60_000), ms(140)));
        assert!(read_due(ms(70_000), ms(140)));
    }

    #[test]
    fn unknown_attributes_are_skipped() {
        let m = parse("7f00 default anon=3 newthing=7 flag N0=3 kernelpagesize_kB=4\n")
            .expect("forward compatible");
        assert_eq!(m[0].pages_by_node, vec![(0, 3)]);
    }
}
