//! The system collectors against the real kernel: threads of this test process stand in for
//! reactors, loopback and network namespaces for listeners, a loop device for a namespace's
//! disk. Tests named `root_*` need root (CI runs as root) and skip with a printed reason
//! otherwise.
//!
//! Waits are bounded loops on the counters themselves (until the kernel has counted enough, or a
//! generous limit then a panic saying what never happened); nothing asserts on elapsed time.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use agent::collect::block::BlockCollector;
use agent::collect::netdev::NetdevCollector;
use agent::collect::numa_maps::NumaMapsCollector;
use agent::collect::perf::PerfCollector;
use agent::collect::procfs::ProcfsCollector;
use agent::collect::standard::standard;
use agent::collect::{Collector, Sources};
use agent_core::sample::{
    Capability, ListenerInfo, NamespaceInfo, NetdevSample, ReactorInfo, Sample, TargetInfo,
    ThreadSample,
};

const MIB: u64 = 1 << 20;
/// Upper bound of every wait for the kernel to count something (never reached when it works).
const PATIENCE: Duration = Duration::from_secs(60);

fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid()).ok() == Some(0)
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root (CI runs as root)");
            return;
        }
    };
}

fn my_pid() -> u32 {
    std::process::id()
}

fn my_tid() -> u32 {
    // "/proc/thread-self" → "<pid>/task/<tid>"
    let link = std::fs::read_link("/proc/thread-self").expect("read /proc/thread-self");
    link.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .expect("tid in /proc/thread-self")
}

fn last_cpu() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        - 1
}

fn pin_self(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).expect("cpu in set");
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).expect("sched_setaffinity");
}

/// A thread named `name`, pinned to `cpu` (when given), spinning until dropped.
struct Spinner {
    tid: u32,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Spinner {
    fn start(name: &str, cpu: Option<usize>, busy: bool) -> Spinner {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let s = stop.clone();
        let handle = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                if let Some(c) = cpu {
                    pin_self(c);
                }
                tx.send(my_tid()).expect("send tid");
                let mut x = 0u64;
                while !s.load(Ordering::Relaxed) {
                    if busy {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    } else {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            })
            .expect("spawn spinner");
        let tid = rx.recv().expect("spinner tid");
        Spinner {
            tid,
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn info_with_reactor(core: u32, tid: Option<u32>) -> TargetInfo {
    TargetInfo {
        pid: my_pid(),
        reactors: vec![ReactorInfo {
            index: 0,
            core,
            tid,
        }],
        ..TargetInfo::default()
    }
}

fn collect_once(c: &mut dyn Collector, info: &TargetInfo) -> Sample {
    let mut s = Sample::default();
    c.collect(info, &mut s);
    s
}

fn thread_of(s: &Sample) -> ThreadSample {
    s.reactors
        .iter()
        .find(|r| r.index == 0)
        .and_then(|r| r.thread.clone())
        .unwrap_or_else(|| panic!("no thread sample for reactor 0 in {s:?}"))
}

/// Collects until `done(first, now)` holds; panics with `what` after [`PATIENCE`].
fn collect_until(
    c: &mut dyn Collector,
    info: &TargetInfo,
    what: &str,
    done: impl Fn(&Sample, &Sample) -> bool,
) -> (Sample, Sample) {
    let first = collect_once(c, info);
    let start = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let now = collect_once(c, info);
        if done(&first, &now) {
            return (first, now);
        }
        assert!(
            start.elapsed() < PATIENCE,
            "never happened: {what}; last sample {now:?}"
        );
    }
}

fn capability_of(c: &dyn Collector) -> Capability {
    let cap = c.capability();
    eprintln!("capability {}: {} ({})", cap.name, cap.available, cap.note);
    cap
}

#[test]
fn busy_pinned_thread_found_by_name_shows_run_time_and_its_cpu() {
    let cpu = last_cpu();
    // The core in the name is fake (no two tests share a name); the pinning is real.
    let spinner = Spinner::start("reactor-901", Some(cpu), true);
    let mut info = info_with_reactor(901, None);
    let mut c = ProcfsCollector::new(my_pid());
    c.describe(&mut info);
    assert_eq!(
        info.reactors[0].tid,
        Some(spinner.tid),
        "describe resolves the tid of the thread named reactor-901"
    );
    let cap = capability_of(&c);
    assert!(cap.available, "procfs available: {}", cap.note);
    assert!(cap.note.contains(&spinner.tid.to_string()), "{}", cap.note);

    let (a, b) = collect_until(&mut c, &info, "50 ms of CPU time", |a, b| {
        thread_of(b).run_ns >= thread_of(a).run_ns + 50_000_000
    });
    let (ta, tb) = (thread_of(&a), thread_of(&b));
    assert_eq!(tb.tid, spinner.tid);
    assert_eq!(tb.last_cpu, Some(cpu as u32), "last CPU is the pinned one");
    assert_eq!(
        tb.allowed_cpus,
        vec![cpu as u32],
        "affinity is the pinned CPU"
    );
    assert!(tb.run_ns > ta.run_ns);
    assert!(
        tb.voluntary_switches + tb.involuntary_switches >= ta.voluntary_switches,
        "switch totals are monotonic"
    );
    if let (Some(ma), Some(mb)) = (ta.migrations, tb.migrations) {
        assert!(mb >= ma, "migrations are monotonic");
    }
}

#[test]
fn second_busy_thread_on_the_same_cpu_shows_as_runqueue_wait_and_preemption() {
    let cpu = last_cpu();
    let reactor = Spinner::start("reactor-902", Some(cpu), true);
    let _hog = Spinner::start("hog-902", Some(cpu), true);
    let mut info = info_with_reactor(902, Some(reactor.tid));
    let mut c = ProcfsCollector::new(my_pid());
    c.describe(&mut info);
    let (a, b) = collect_until(
        &mut c,
        &info,
        "20 ms of run-queue wait and 3 involuntary switches",
        |a, b| {
            let (ta, tb) = (thread_of(a), thread_of(b));
            tb.runqueue_wait_ns >= ta.runqueue_wait_ns + 20_000_000
                && tb.involuntary_switches >= ta.involuntary_switches + 3
        },
    );
    let (ta, tb) = (thread_of(&a), thread_of(&b));
    eprintln!(
        "reactor sharing its CPU: +{} ns waiting, +{} involuntary switches, +{} ns running",
        tb.runqueue_wait_ns - ta.runqueue_wait_ns,
        tb.involuntary_switches - ta.involuntary_switches,
        tb.run_ns - ta.run_ns
    );
    assert_eq!(tb.last_cpu, Some(cpu as u32));
}

#[test]
fn root_perf_task_clock_grows_for_a_busy_thread() {
    require_root!();
    let spinner = Spinner::start("reactor-903", Some(last_cpu()), true);
    let mut info = info_with_reactor(903, Some(spinner.tid));
    // procfs then perf, in the order `standard` runs them: one thread entry, both filled.
    let mut procfs = ProcfsCollector::new(my_pid());
    let mut perf = PerfCollector::new(my_pid());
    procfs.describe(&mut info);
    perf.describe(&mut info);
    let cap = capability_of(&perf);
    assert!(cap.available, "perf available as root: {}", cap.note);
    assert!(
        cap.note.contains("no hardware PMU") || cap.note.contains("hardware counters"),
        "the capability line says what happened to cycles: {}",
        cap.note
    );
    let sample = |procfs: &mut ProcfsCollector, perf: &mut PerfCollector| {
        let mut s = Sample::default();
        procfs.collect(&info, &mut s);
        perf.collect(&info, &mut s);
        s
    };
    let a = sample(&mut procfs, &mut perf);
    let start = Instant::now();
    let b = loop {
        std::thread::sleep(Duration::from_millis(20));
        let b = sample(&mut procfs, &mut perf);
        let (ta, tb) = (thread_of(&a), thread_of(&b));
        if tb.task_clock_ns.unwrap_or(0) >= ta.task_clock_ns.unwrap_or(0) + 50_000_000 {
            break b;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "task-clock never grew by 50 ms: {b:?}"
        );
    };
    let (ta, tb) = (thread_of(&a), thread_of(&b));
    assert_eq!(
        b.reactors.len(),
        1,
        "procfs and perf share one reactor entry"
    );
    assert!(tb.run_ns > ta.run_ns, "procfs filled the same entry");
    assert!(tb.migrations.is_some(), "perf cpu-migrations filled");
    assert!(
        perf.context_switches(0).is_some(),
        "context-switches counter read"
    );
}

#[test]
fn numa_maps_of_a_touched_64_mib_buffer_are_on_node_0() {
    let mut buf = vec![0u8; 64 * MIB as usize];
    for i in (0..buf.len()).step_by(4096) {
        buf[i] = 1; // fault every page in
    }
    std::hint::black_box(&mut buf);
    let mut info = TargetInfo {
        pid: my_pid(),
        ..TargetInfo::default()
    };
    let mut c = NumaMapsCollector::new(my_pid());
    c.describe(&mut info);
    let cap = capability_of(&c);
    assert!(cap.available, "{}", cap.note);
    let s = collect_once(&mut c, &info);
    let mem = s.memory.expect("memory sample");
    let node0 = |v: &[(u32, u64)]| v.iter().find(|(n, _)| *n == 0).map(|(_, b)| *b);
    let buf0 = node0(&mem.buffer_bytes_by_node).unwrap_or(0);
    let all0 = node0(&mem.total_bytes_by_node).unwrap_or(0);
    eprintln!("node 0: {buf0} buffer bytes, {all0} bytes in all");
    assert!(buf0 >= 64 * MIB, "64 MiB buffer on node 0: {mem:?}");
    assert!(all0 >= buf0, "all mappings include the buffers");
    assert!(mem.policy.is_some(), "policy of the largest buffer");
    std::hint::black_box(&buf);
}

#[test]
fn lo_counters_grow_after_a_loopback_transfer() {
    let mut info = TargetInfo {
        listeners: vec![ListenerInfo {
            transport: trace_ring::description::Transport::Tcp,
            address: "127.0.0.1:4420".into(),
            netdev: None,
        }],
        ..TargetInfo::default()
    };
    let mut c = NetdevCollector::new();
    c.describe(&mut info);
    assert_eq!(info.listeners[0].netdev.as_deref(), Some("lo"));
    let cap = capability_of(&c);
    assert!(cap.available, "{}", cap.note);
    let a = collect_once(&mut c, &info);

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let reader = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut sink = Vec::new();
        s.read_to_end(&mut sink).expect("read");
        sink.len()
    });
    let mut out = TcpStream::connect(addr).expect("connect");
    out.write_all(&vec![7u8; 4 * MIB as usize]).expect("write");
    drop(out);
    assert_eq!(reader.join().expect("reader"), 4 * MIB as usize);

    let b = collect_once(&mut c, &info);
    let lo = |s: &Sample| {
        s.netdevs
            .iter()
            .find(|n| n.name == "lo")
            .cloned()
            .unwrap_or_else(|| panic!("lo in {s:?}"))
    };
    let (la, lb) = (lo(&a), lo(&b));
    assert!(lb.rx_bytes >= la.rx_bytes + 4 * MIB, "rx {la:?} → {lb:?}");
    assert!(lb.tx_bytes >= la.tx_bytes + 4 * MIB, "tx {la:?} → {lb:?}");
    assert!(lb.rx_packets > la.rx_packets);
    assert_eq!(lb.speed_mbps, None, "lo has no link speed");
    assert_eq!(lb.shaped_rate_bytes, None, "lo is not shaped");
}

#[test]
fn unspecified_listener_watches_every_up_interface() {
    let mut info = TargetInfo {
        listeners: vec![ListenerInfo {
            transport: trace_ring::description::Transport::Tcp,
            address: "0.0.0.0:4420".into(),
            netdev: None,
        }],
        ..TargetInfo::default()
    };
    let mut c = NetdevCollector::new();
    c.describe(&mut info);
    assert!(c.devices().contains(&"lo"), "lo is up: {:?}", c.devices());
    let s = collect_once(&mut c, &info);
    assert_eq!(s.netdevs.len(), c.devices().len());
}

#[test]
fn ipv6_loopback_listener_resolves_to_lo() {
    let inet6 = std::fs::read_to_string("/proc/net/if_inet6").unwrap_or_default();
    if !inet6
        .lines()
        .any(|l| l.starts_with("00000000000000000000000000000001"))
    {
        eprintln!("skipped: no ::1 on this machine (IPv6 disabled)");
        return;
    }
    let mut info = TargetInfo {
        listeners: vec![ListenerInfo {
            transport: trace_ring::description::Transport::Tcp,
            address: "[::1]:4420".into(),
            netdev: None,
        }],
        ..TargetInfo::default()
    };
    let mut c = NetdevCollector::new();
    c.describe(&mut info);
    assert_eq!(info.listeners[0].netdev.as_deref(), Some("lo"));
}

#[test]
fn a_netdev_missing_from_this_namespace_is_one_capability_line() {
    let mut info = TargetInfo {
        listeners: vec![ListenerInfo {
            transport: trace_ring::description::Transport::Tcp,
            address: "10.99.0.1:4420".into(),
            netdev: Some("rs-nodev0".into()),
        }],
        ..TargetInfo::default()
    };
    let mut c = NetdevCollector::new();
    c.describe(&mut info);
    let cap = capability_of(&c);
    assert!(!cap.available, "{}", cap.note);
    assert!(
        cap.note.contains("not in this network namespace"),
        "{}",
        cap.note
    );
    let s = collect_once(&mut c, &info);
    assert!(s.netdevs.is_empty(), "{s:?}");

    // An address no interface holds says so too.
    let mut info = TargetInfo {
        listeners: vec![ListenerInfo {
            transport: trace_ring::description::Transport::Tcp,
            address: "192.0.2.250:4420".into(),
            netdev: None,
        }],
        ..TargetInfo::default()
    };
    let mut c = NetdevCollector::new();
    c.describe(&mut info);
    let cap = capability_of(&c);
    assert!(
        !cap.available && cap.note.contains("no interface"),
        "{}",
        cap.note
    );
}

/// Two network namespaces joined by a veth pair; deleted on drop.
struct NetnsPair {
    a: String,
    b: String,
}

impl NetnsPair {
    fn new(tag: &str) -> NetnsPair {
        let pid = my_pid();
        let p = NetnsPair {
            a: format!("rsc-{tag}-{pid}-a"),
            b: format!("rsc-{tag}-{pid}-b"),
        };
        p.run(&["ip", "netns", "add", &p.a]);
        p.run(&["ip", "netns", "add", &p.b]);
        p
    }

    fn run(&self, argv: &[&str]) {
        let out = Command::new(argv[0])
            .args(&argv[1..])
            .output()
            .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        assert!(
            out.status.success(),
            "{argv:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Namespace a (veth `rsva`, 10.213.0.1) and b (veth `rsvb`, 10.213.0.2), `shaper` run as
/// `tc -n a …` commands; a collector in a thread that joined namespace a samples `rsva` before
/// and after 4 MiB of UDP is pushed through the shaper. Returns the capability and both samples.
fn shaped_veth_in_netns(tag: &str, shaper: &[&[&str]]) -> (Capability, NetdevSample, NetdevSample) {
    let ns = NetnsPair::new(tag);
    let (a, b) = (ns.a.clone(), ns.b.clone());
    let ip = |args: &[&str]| {
        let mut v = vec!["ip"];
        v.extend_from_slice(args);
        ns.run(&v);
    };
    ip(&[
        "-n", &a, "link", "add", "rsva", "type", "veth", "peer", "name", "rsvb", "netns", &b,
    ]);
    ip(&[
        "-n",
        &b,
        "link",
        "set",
        "rsvb",
        "address",
        "02:00:00:00:00:02",
    ]);
    ip(&["-n", &a, "addr", "add", "10.213.0.1/24", "dev", "rsva"]);
    ip(&["-n", &b, "addr", "add", "10.213.0.2/24", "dev", "rsvb"]);
    ip(&["-n", &a, "link", "set", "rsva", "up"]);
    ip(&["-n", &b, "link", "set", "rsvb", "up"]);
    // A permanent neighbour: no ARP round trip holds the first packets back.
    ip(&[
        "-n",
        &a,
        "neigh",
        "replace",
        "10.213.0.2",
        "lladdr",
        "02:00:00:00:00:02",
        "dev",
        "rsva",
        "nud",
        "permanent",
    ]);
    for cmd in shaper {
        let mut v = vec!["tc", "-n", &a];
        v.extend_from_slice(cmd);
        ns.run(&v);
    }

    // The collector runs in a thread that joined namespace a, as the agent joins the target's.
    let path = format!("/var/run/netns/{a}");
    let worker = std::thread::spawn(move || {
        let f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let mut info = TargetInfo {
            listeners: vec![ListenerInfo {
                transport: trace_ring::description::Transport::Tcp,
                address: "10.213.0.1:4420".into(),
                netdev: None,
            }],
            ..TargetInfo::default()
        };
        let mut c = NetdevCollector::new();
        c.describe(&mut info);
        let cap = c.capability();
        let before = collect_once(&mut c, &info);
        // 4 MiB of UDP into a shaper far slower than the sender: the qdisc queues and throttles.
        // A send buffer larger than all of it, so the sender never blocks on its own socket
        // memory (the default ~200 KiB would pace it to the shaper and nothing would overflow):
        // everything reaches the qdisc at once and what is over its limit (tbf: rate x latency
        // + burst, ~660 KB) is dropped, a monotonic count that does not depend on when we look.
        let sock = UdpSocket::bind("10.213.0.1:0").expect("bind in netns");
        nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::SndBufForce, &(16 << 20))
            .expect("SO_SNDBUFFORCE (root)");
        let payload = [0x5au8; 1400];
        for _ in 0..3000 {
            let _ = sock.send_to(&payload, "10.213.0.2:9"); // ENOBUFS when the qdisc drops
        }
        let after = collect_once(&mut c, &info);
        (info, cap, before, after)
    });
    let (info, cap, before, after) = worker.join().expect("netns worker");
    eprintln!("capability netdev: {} ({})", cap.available, cap.note);
    assert_eq!(
        info.listeners[0].netdev.as_deref(),
        Some("rsva"),
        "address resolved inside the netns"
    );
    assert!(cap.available, "{}", cap.note);
    let dev = |s: &Sample| {
        s.netdevs
            .iter()
            .find(|n| n.name == "rsva")
            .cloned()
            .unwrap_or_else(|| panic!("rsva in {s:?}"))
    };
    let (x, y) = (dev(&before), dev(&after));
    eprintln!("before {x:?}\nafter  {y:?}");
    assert!(y.tx_packets > x.tx_packets, "packets left through the veth");
    (cap, x, y)
}

#[test]
fn root_qdisc_rate_in_netns() {
    require_root!();
    let (cap, x, y) = shaped_veth_in_netns(
        "tbf",
        &[&[
            "qdisc", "add", "dev", "rsva", "root", "tbf", "rate", "100mbit", "burst", "32kb",
            "latency", "50ms",
        ]],
    );
    assert!(
        cap.note.contains("rtnetlink"),
        "qdisc statistics over rtnetlink: {}",
        cap.note
    );
    assert_eq!(
        y.shaped_rate_bytes,
        Some(12_500_000),
        "tbf rate 100mbit = 12.5 MB/s"
    );
    assert!(y.qdisc_overlimits > x.qdisc_overlimits, "tbf throttled");
    assert!(
        y.qdisc_drops > x.qdisc_drops,
        "the qdisc dropped what was over its limit: {y:?}"
    );
}

#[test]
fn root_htb_ceiling_in_netns() {
    require_root!();
    let (_, x, y) = shaped_veth_in_netns(
        "htb",
        &[
            &[
                "qdisc", "add", "dev", "rsva", "root", "handle", "1:", "htb", "default", "10",
            ],
            &[
                "class", "add", "dev", "rsva", "parent", "1:", "classid", "1:10", "htb", "rate",
                "40mbit", "ceil", "50mbit",
            ],
        ],
    );
    assert_eq!(
        y.shaped_rate_bytes,
        Some(6_250_000),
        "htb root class ceil 50mbit = 6.25 MB/s"
    );
    assert!(
        y.qdisc_backlog_bytes > 0
            || y.qdisc_drops > x.qdisc_drops
            || y.qdisc_overlimits > x.qdisc_overlimits,
        "htb queued, dropped or throttled: {y:?}"
    );
}

/// A loop device over a temporary file; detached on drop.
struct LoopDev {
    path: String,
    _file: tempfile::NamedTempFile,
}

impl LoopDev {
    fn new(bytes: u64) -> LoopDev {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        file.as_file().set_len(bytes).expect("size temp file");
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(file.path())
            .output()
            .expect("losetup");
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        LoopDev { path, _file: file }
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.path]).status();
    }
}

#[test]
fn root_block_stats_of_a_loop_device_after_writes() {
    require_root!();
    let dev = LoopDev::new(16 * MIB);
    let name = dev.path.trim_start_matches("/dev/").to_string();
    let mut info = TargetInfo {
        namespaces: vec![NamespaceInfo {
            nqn: "nqn.test".into(),
            nsid: 1,
            backend: trace_ring::description::BackendKind::Uring,
            device: Some(dev.path.clone()),
        }],
        ..TargetInfo::default()
    };
    let mut c = BlockCollector::new();
    c.describe(&mut info);
    let cap = capability_of(&c);
    assert!(cap.available, "{}", cap.note);
    assert_eq!(c.devices(), vec![name.as_str()]);
    let a = collect_once(&mut c, &info);
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&dev.path)
            .expect("open loop device");
        f.write_all(&vec![0xa5u8; 4 * MIB as usize]).expect("write");
        f.sync_all().expect("fsync"); // pushes the page cache down to the device
    }
    let b = collect_once(&mut c, &info);
    let (da, db) = (&a.devices[0], &b.devices[0]);
    assert_eq!(db.name, name);
    assert!(db.writes > da.writes, "writes completed: {da:?} → {db:?}");
    assert!(
        db.sectors_written >= da.sectors_written + 4 * MIB / 512,
        "4 MiB = 8192 sectors written: {da:?} → {db:?}"
    );
}

#[test]
fn file_namespace_resolves_to_its_filesystem_device() {
    let dir = std::env::var("CARGO_TARGET_TMPDIR").unwrap_or_else(|_| "/var/tmp".into());
    let file = tempfile::NamedTempFile::new_in(&dir).expect("temp file");
    let st_dev = file.as_file().metadata().expect("stat").dev();
    if std::fs::read_to_string(format!(
        "/sys/dev/block/{}:{}/stat",
        (st_dev >> 8) & 0xfff,
        st_dev & 0xff
    ))
    .is_err()
    {
        eprintln!("skipped: {dir} is not on a plain block device");
        return;
    }
    let mut info = TargetInfo {
        namespaces: vec![NamespaceInfo {
            nqn: "nqn.test".into(),
            nsid: 1,
            backend: trace_ring::description::BackendKind::Uring,
            device: Some(file.path().to_string_lossy().into_owned()),
        }],
        ..TargetInfo::default()
    };
    let mut c = BlockCollector::new();
    c.describe(&mut info);
    let cap = capability_of(&c);
    assert!(cap.available, "{}", cap.note);
    let s = collect_once(&mut c, &info);
    assert_eq!(s.devices.len(), 1, "{s:?}");
    assert!(
        s.devices[0].reads + s.devices[0].writes > 0,
        "the root filesystem's device has done I/O: {s:?}"
    );
}

#[test]
fn missing_process_gives_capability_lines_and_empty_samples() {
    // Above the kernel's pid_max limit (4194304): never a live process.
    let pid = 99_999_999;
    let mut sources = Sources::new(standard(pid), Box::new(|| 1));
    let caps = sources.info().capabilities.clone();
    for c in &caps {
        eprintln!("capability {}: {} ({})", c.name, c.available, c.note);
    }
    let names: Vec<&str> = caps.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["procfs", "perf", "netdev", "rdma", "block", "numa_maps"]
    );
    // RDMA ports are the machine's, not the process's: only they may be there.
    assert!(
        caps.iter()
            .filter(|c| c.name != "rdma")
            .all(|c| !c.available),
        "nothing available for a missing pid"
    );
    if !std::path::Path::new("/sys/class/infiniband").exists() {
        let c = caps.iter().find(|c| c.name == "rdma").expect("rdma line");
        assert_eq!(
            c.note,
            "no RDMA devices (/sys/class/infiniband absent): RDMA port counters not collected; \
             netdev counters still used"
        );
    }
    for name in ["procfs", "perf", "numa_maps"] {
        let c = caps.iter().find(|c| c.name == name).expect("capability");
        assert!(
            c.note.contains("99999999"),
            "{name} names the pid: {}",
            c.note
        );
    }
    let s = sources.sample();
    assert_eq!(s.t_ns, 1);
    assert!(s.reactors.is_empty() && s.netdevs.is_empty() && s.devices.is_empty());
    assert!(s.memory.is_none());

    // A reactor whose tid does not exist, in a process that does.
    let mut info = info_with_reactor(904, Some(99_999_999));
    let mut p = ProcfsCollector::new(my_pid());
    p.describe(&mut info);
    assert!(!p.capability().available);
    let s = collect_once(&mut p, &info);
    assert!(s.reactors.is_empty(), "{s:?}");
    let mut b = BlockCollector::new();
    let mut info = TargetInfo {
        namespaces: vec![NamespaceInfo {
            device: Some("/dev/no-such-disk".into()),
            ..NamespaceInfo::default()
        }],
        ..TargetInfo::default()
    };
    b.describe(&mut info);
    let cap = b.capability();
    assert!(
        !cap.available && cap.note.contains("/dev/no-such-disk"),
        "{}",
        cap.note
    );
}

/// Runs in a child process as `nobody` (see `root_capability_lines_as_nobody`): prints the
/// capability lines of the standard collectors for the parent (root's) process.
#[test]
#[ignore = "run by root_capability_lines_as_nobody in a child process"]
fn child_capabilities_as_nobody() {
    let Ok(pid) = std::env::var("RINGSIDE_TEST_TARGET_PID") else {
        eprintln!("skipped: only meaningful as the child of root_capability_lines_as_nobody");
        return;
    };
    let pid: u32 = pid.parse().expect("pid");
    let core: u32 = std::env::var("RINGSIDE_TEST_REACTOR_CORE")
        .expect("core")
        .parse()
        .expect("core number");
    let mut info = TargetInfo {
        pid,
        reactors: vec![ReactorInfo {
            index: 0,
            core,
            tid: None,
        }],
        ..TargetInfo::default()
    };
    let mut collectors = standard(pid);
    for c in &mut collectors {
        c.describe(&mut info);
    }
    let caps: Vec<Capability> = collectors.iter().map(|c| c.capability()).collect();
    let mut s = Sample::default();
    for c in &mut collectors {
        c.collect(&info, &mut s);
    }
    println!(
        "CAPS:{}",
        serde_json::to_string(&caps).expect("capabilities as json")
    );
    println!(
        "SAMPLE:{}",
        serde_json::to_string(&s).expect("sample as json")
    );
}

#[test]
fn root_capability_lines_as_nobody() {
    require_root!();
    let reactor = Spinner::start("reactor-905", None, false);
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new(&exe)
        .args([
            "--ignored",
            "--exact",
            "child_capabilities_as_nobody",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("RINGSIDE_TEST_TARGET_PID", my_pid().to_string())
        .env("RINGSIDE_TEST_REACTOR_CORE", "905")
        .current_dir("/")
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run the test binary as nobody");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |tag: &str| {
        stdout
            .lines()
            .find_map(|l| l.split_once(tag).map(|(_, rest)| rest))
            .unwrap_or_else(|| panic!("no {tag} line in {stdout}"))
            .to_string()
    };
    let caps: Vec<Capability> = serde_json::from_str(&line("CAPS:")).expect("caps json");
    let sample: Sample = serde_json::from_str(&line("SAMPLE:")).expect("sample json");
    for c in &caps {
        eprintln!("as nobody: {}: {} ({})", c.name, c.available, c.note);
    }
    let cap = |n: &str| {
        caps.iter()
            .find(|c| c.name == n)
            .expect("capability")
            .clone()
    };
    let procfs = cap("procfs");
    assert!(
        procfs.available,
        "procfs files are world-readable: {}",
        procfs.note
    );
    let perf = cap("perf");
    assert!(
        !perf.available && perf.note.contains("no permission"),
        "perf says permission: {}",
        perf.note
    );
    assert!(
        perf.note.contains("procfs"),
        "and what still works: {}",
        perf.note
    );
    let numa = cap("numa_maps");
    assert!(
        !numa.available && numa.note.contains("no permission"),
        "numa_maps says permission: {}",
        numa.note
    );
    let t = sample
        .reactors
        .first()
        .and_then(|r| r.thread.clone())
        .expect("procfs still samples the thread");
    assert_eq!(t.tid, reactor.tid);
    assert_eq!(t.task_clock_ns, None, "no perf data");
    assert!(sample.memory.is_none(), "no numa_maps data");
}

/// Not a test: the cost of one `collect()` of each collector on this machine, printed.
/// `cargo test -p agent --release --test collectors -- --ignored --nocapture measure_collect_cost`
#[test]
#[ignore = "a measurement, run by hand"]
fn measure_collect_cost() {
    let _reactor = Spinner::start("reactor-906", None, false);
    let mut buf = vec![0u8; 256 * MIB as usize];
    for i in (0..buf.len()).step_by(4096) {
        buf[i] = 1;
    }
    std::hint::black_box(&mut buf);
    let file = tempfile::NamedTempFile::new_in("/var/tmp").expect("temp file");
    let mut info = TargetInfo {
        pid: my_pid(),
        reactors: vec![ReactorInfo {
            index: 0,
            core: 906,
            tid: None,
        }],
        listeners: vec![ListenerInfo {
            transport: trace_ring::description::Transport::Tcp,
            address: "127.0.0.1:4420".into(),
            netdev: None,
        }],
        namespaces: vec![NamespaceInfo {
            device: Some(file.path().to_string_lossy().into_owned()),
            ..NamespaceInfo::default()
        }],
        ..TargetInfo::default()
    };
    let mut collectors = standard(my_pid());
    for c in &mut collectors {
        c.describe(&mut info);
    }
    for c in &collectors {
        let _ = capability_of(c.as_ref());
    }
    const N: u32 = 200;
    for c in &mut collectors {
        let start = Instant::now();
        for _ in 0..N {
            let mut s = Sample::default();
            c.collect(&info, &mut s);
            std::hint::black_box(&s);
        }
        eprintln!(
            "{:>10}: {:>8.1} us per collect() (mean of {N})",
            c.name(),
            start.elapsed().as_secs_f64() * 1e6 / f64::from(N)
        );
    }
    // numa_maps above mostly repeats its last summary (duty cycle); the read itself costs:
    let start = Instant::now();
    for _ in 0..20 {
        let text = std::fs::read_to_string(format!("/proc/{}/numa_maps", my_pid())).expect("read");
        let maps = agent::collect::numa_maps::parse(&text).expect("parse");
        std::hint::black_box(agent::collect::numa_maps::summarize(&maps));
    }
    eprintln!(
        "numa_maps read+parse with 256 MiB resident: {:.1} us (mean of 20)",
        start.elapsed().as_secs_f64() * 1e6 / 20.0
    );
    std::hint::black_box(&buf);
}
