//! Topology loading: this machine (hwloc + sysfs), recorded hwloc XML fixtures with their sysfs
//! sidecar, synthetic descriptions, ringside JSON, and bad inputs (clear errors, no panic).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use agent::topology::{
    load, load_sysfs, parse_cpulist, Loaded, SysfsFacts, TopologyError, TopologySource,
};
use agent_core::topology::Topology;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/topology")
        .join(name)
}

fn load_ok(src: &TopologySource) -> Loaded {
    load(src).unwrap_or_else(|e| panic!("loading {src} failed: {e}"))
}

/// Every CPU belongs to the node that lists it, node CPU lists agree with the CPU table, and
/// every node a CPU or device names exists.
fn assert_consistent(t: &Topology) {
    for n in &t.nodes {
        assert_eq!(
            t.cpus_of_node(n.os_index),
            n.cpus,
            "node {} CPU list disagrees with the CPU table in {}",
            n.os_index,
            t.source
        );
        assert!(
            n.distances.is_empty() || n.distances.len() == t.nodes.len(),
            "distance row of node {} has the wrong length",
            n.os_index
        );
    }
    for c in &t.cpus {
        let node = c
            .node
            .unwrap_or_else(|| panic!("cpu {} has no node", c.os_index));
        assert!(
            t.node(node).is_some(),
            "cpu {} names missing node {node}",
            c.os_index
        );
    }
    for p in &t.pci {
        if let Some(n) = p.node {
            assert!(t.node(n).is_some(), "{} names missing node {n}", p.bdf);
        }
    }
}

/// The model of this machine agrees with what sysfs says: exactly the online CPUs, one node per
/// sysfs node, every netdev and disk sysfs places on a PCI function on that function with the
/// same speed, `lo` nowhere.
fn assert_matches_this_machine(t: &Topology) {
    let online = fs::read_to_string("/sys/devices/system/cpu/online")
        .expect("this machine has /sys/devices/system/cpu/online");
    let online = parse_cpulist(&online).expect("the kernel's cpu list parses");
    let cpus: Vec<u32> = t.cpus.iter().map(|c| c.os_index).collect();
    assert_eq!(cpus, online, "CPUs must be exactly the online ones");
    let sys_nodes = fs::read_dir("/sys/devices/system/node")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    let n = e.file_name();
                    let n = n.to_string_lossy();
                    n.strip_prefix("node")
                        .is_some_and(|i| i.parse::<u32>().is_ok())
                })
                .count()
        })
        .unwrap_or(1)
        .max(1);
    assert_eq!(t.nodes.len(), sys_nodes, "one node per sysfs node");
    assert_consistent(t);
    for c in &online {
        assert!(t.node_of_cpu(*c).is_some(), "cpu {c} has a node");
    }
    assert!(t.pci_of_netdev("lo").is_none(), "lo is not a PCI netdev");
    assert_eq!(t.node_of_netdev("lo"), None);
    let facts = SysfsFacts::read(Path::new("/sys"));
    for (name, nd) in &facts.netdevs {
        if let Some(bdf) = &nd.pci {
            let p = t
                .pci_of_netdev(name)
                .unwrap_or_else(|| panic!("netdev {name} (on {bdf}) missing from the model"));
            assert_eq!(&p.bdf, bdf, "netdev {name}");
            assert_eq!(
                p.link_speed_mbps, nd.speed_mbps,
                "netdev {name}: model speed vs sysfs speed"
            );
            if t.nodes.len() == 1 {
                assert_eq!(
                    p.node,
                    Some(t.nodes[0].os_index),
                    "one node: {bdf} is on it"
                );
            }
        }
    }
    for (name, bd) in &facts.block_devices {
        if let Some(bdf) = &bd.pci {
            let p = t
                .pci_of_block_device(name)
                .unwrap_or_else(|| panic!("block device {name} (on {bdf}) missing"));
            assert_eq!(&p.bdf, bdf, "block device {name}");
        }
    }
}

#[test]
fn live_machine_matches_sysfs() {
    let l = load_ok(&TopologySource::Live);
    let t = &l.topology;
    println!("{}: {}; notes: {:?}", t.source, t.summary(), l.notes);
    assert!(t.source.starts_with("live:"), "source {:?}", t.source);
    assert_matches_this_machine(t);
    // The live model serialises and reads back as a JSON topology.
    let json = serde_json::to_string(t).expect("topology serialises");
    let back: Topology = serde_json::from_str(&json).expect("and deserialises");
    assert_eq!(&back, t);
}

/// Runs one `#[ignore]`d test of this binary in a child process with `env` set: hwloc reads its
/// configuration from the environment, and setting it in this multi-threaded process would
/// race the other tests.
fn run_child(test: &str, env: &[(&str, &str)]) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new(exe)
        .args([
            "--exact",
            test,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .envs(env.iter().copied())
        .output()
        .expect("run the test binary again");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child test {test} with {env:?} failed:\n{stdout}\n{stderr}"
    );
}

const CHILD_ENV: &str = "RINGSIDE_TOPOLOGY_CHILD";

/// Whether this process is the child [`run_child`] started (the child tests are `#[ignore]`d,
/// and `cargo test -- --ignored` alone must not run them without their environment).
fn in_child(test: &str) -> bool {
    let here = std::env::var(CHILD_ENV).is_ok_and(|v| v == test);
    if !here {
        println!("skipping {test}: it runs only as a child of its parent test");
    }
    here
}

#[test]
fn live_without_hwloc_io_discovery_uses_sysfs() {
    run_child(
        "child_live_without_hwloc_io",
        &[
            ("HWLOC_COMPONENTS", "-linuxio,-pci"),
            (CHILD_ENV, "child_live_without_hwloc_io"),
        ],
    );
}

#[test]
#[ignore = "run by live_without_hwloc_io_discovery_uses_sysfs with HWLOC_COMPONENTS set"]
fn child_live_without_hwloc_io() {
    if !in_child("child_live_without_hwloc_io") {
        return;
    }
    let l = load_ok(&TopologySource::Live);
    println!("{}; notes: {:?}", l.topology.summary(), l.notes);
    assert_matches_this_machine(&l.topology);
    let sysfs_has_pci = !SysfsFacts::read(Path::new("/sys")).pci.is_empty();
    if sysfs_has_pci {
        assert!(
            l.notes
                .iter()
                .any(|n| n.contains("hwloc found no PCI devices")),
            "one note says hwloc had no I/O: {:?}",
            l.notes
        );
    }
}

#[test]
fn live_falls_back_to_sysfs_when_hwloc_fails() {
    run_child(
        "child_live_hwloc_broken",
        &[
            ("HWLOC_COMPONENTS", "nosuch,stop"),
            (CHILD_ENV, "child_live_hwloc_broken"),
        ],
    );
}

#[test]
#[ignore = "run by live_falls_back_to_sysfs_when_hwloc_fails with HWLOC_COMPONENTS set"]
fn child_live_hwloc_broken() {
    if !in_child("child_live_hwloc_broken") {
        return;
    }
    let l = load_ok(&TopologySource::Live);
    println!("{}; notes: {:?}", l.topology.summary(), l.notes);
    assert!(
        l.topology.source.contains("sysfs only"),
        "{}",
        l.topology.source
    );
    let hwloc_notes: Vec<&String> = l.notes.iter().filter(|n| n.contains("hwloc")).collect();
    assert_eq!(hwloc_notes.len(), 1, "one note about hwloc: {:?}", l.notes);
    assert!(
        hwloc_notes[0].starts_with("hwloc failed (hwloc_topology_load: Invalid argument")
            && hwloc_notes[0].contains("sysfs only"),
        "the note says hwloc failed and why: {:?}",
        l.notes
    );
    assert_matches_this_machine(&l.topology);
}

#[test]
fn two_socket_xml_fixture_places_nic_and_nvme() {
    let path = fixture("two-socket.xml");
    let l = load_ok(&TopologySource::Xml(path.clone()));
    let t = &l.topology;
    assert!(
        l.notes.is_empty(),
        "complete fixture, no degradation notes: {:?}",
        l.notes
    );
    assert!(t.source.contains("two-socket.xml") && t.source.contains("two-socket.sysfs.json"));
    assert_eq!(t.nodes.len(), 2, "two NUMA nodes");
    assert_eq!(t.package_count(), 2);
    assert_eq!(t.core_count(), 16);
    assert_eq!(t.cpus.len(), 32);
    assert_consistent(t);
    assert_eq!(t.node(0).and_then(|n| n.memory_bytes), Some(64 << 30));
    for c in &t.cpus {
        assert_eq!(
            t.node_of_cpu(c.os_index),
            Some(c.package),
            "cpu {}: one node per package",
            c.os_index
        );
        assert_eq!(
            c.package,
            c.os_index / 16,
            "cpu {}: 16 PUs per package",
            c.os_index
        );
        assert_eq!(c.core, c.os_index / 2, "cpu {}: 2 PUs per core", c.os_index);
    }
    assert_eq!(t.cpus_of_node(1), (16..32).collect::<Vec<u32>>());
    assert_eq!(t.distance(0, 1), Some(21));
    assert_eq!(t.distance(1, 1), Some(10));

    assert_eq!(t.node_of_netdev("ens1f0"), Some(1));
    let nic = t
        .pci_of_netdev("ens1f0")
        .expect("ens1f0 is on a PCI device");
    assert_eq!(nic.bdf, "0000:81:00.0");
    assert!(nic.is_network());
    assert_eq!(nic.link_speed_mbps, Some(25_000), "speed from the sidecar");
    assert_eq!(nic.rdma_devices, vec!["mlx5_0".to_string()]);
    assert_eq!(
        nic.name.as_deref(),
        Some("Mellanox Technologies MT27710 Family [ConnectX-4 Lx]")
    );
    let ssd = t
        .pci_of_block_device("nvme0n1")
        .expect("nvme0n1 is on a PCI device");
    assert_eq!(ssd.bdf, "0000:01:00.0");
    assert_eq!(ssd.node, Some(0));
    assert!(ssd.is_storage());
    assert_eq!(
        t.node_of_block_device("nvme0n1p1"),
        Some(0),
        "partitions too"
    );
    assert_eq!(t.node_of_pci("81:00.0"), Some(1));
    assert_eq!(
        t.pci.len(),
        2,
        "bridges are not devices of interest: {:?}",
        t.pci
    );
}

#[test]
fn xml_without_sidecar_notes_unknown_link_speed() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let xml = dir.path().join("copy.xml");
    fs::copy(fixture("two-socket.xml"), &xml).expect("copy the fixture");
    let l = load_ok(&TopologySource::Xml(xml));
    assert_eq!(
        l.topology.node_of_netdev("ens1f0"),
        Some(1),
        "locality is in the xml"
    );
    assert_eq!(l.topology.link_speed_of_netdev("ens1f0"), None);
    assert!(
        l.notes
            .iter()
            .any(|n| n.contains("link speed of ens1f0") && n.contains("copy.sysfs.json")),
        "a note says the speed is unknown and where to put it: {:?}",
        l.notes
    );
}

#[test]
fn this_machine_recording_loads_as_xml_and_json() {
    let x = load_ok(&TopologySource::Xml(fixture("this-machine.xml")));
    let j = load_ok(&TopologySource::Json(fixture("this-machine.json")));
    for t in [&x.topology, &j.topology] {
        assert_consistent(t);
        assert_eq!(t.nodes.len(), 1);
        assert_eq!(t.cpus.len(), 2);
        assert_eq!(t.node_of_netdev("eth0"), Some(0));
        assert_eq!(
            t.pci_of_netdev("eth0").map(|p| p.bdf.as_str()),
            Some("0000:00:03.0")
        );
        assert_eq!(t.node_of_block_device("vda"), Some(0));
        assert!(t.pci_of_netdev("lo").is_none());
    }
    assert!(
        j.topology.source.starts_with("json:"),
        "{}",
        j.topology.source
    );
    // Same machine, same model (apart from where it came from).
    let strip = |t: &Topology| Topology {
        source: String::new(),
        ..t.clone()
    };
    assert_eq!(strip(&x.topology), strip(&j.topology));
}

#[test]
fn synthetic_two_packages() {
    let l =
        load_ok(&TopologySource::from_arg("synthetic:pack:2 numa:1 core:4 pu:2").expect("parses"));
    let t = &l.topology;
    assert_eq!(t.nodes.len(), 2);
    assert_eq!(t.cpus.len(), 16);
    assert_consistent(t);
    assert_eq!(t.cpus_of_node(1), (8..16).collect::<Vec<u32>>());
    assert!(t.pci.is_empty());
    assert!(
        l.notes.iter().any(|n| n.contains("no I/O devices")),
        "{:?}",
        l.notes
    );

    let l = load_ok(&TopologySource::Synthetic("pack:2 core:4 pu:2".into()));
    assert_eq!(
        l.topology.nodes.len(),
        1,
        "hwloc makes one node without a numa level"
    );
    assert_eq!(l.topology.package_count(), 2);
    assert!(
        l.notes.iter().any(|n| n.contains("no numa level")),
        "a note says the description has no NUMA level: {:?}",
        l.notes
    );
}

#[test]
fn bad_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let garbage = dir.path().join("garbage.xml");
    fs::write(
        &garbage,
        "<topology version=\"2.0\"><object type=\"Machine\"><nope",
    )
    .expect("write");
    let e = load(&TopologySource::Xml(garbage.clone())).expect_err("garbage xml is refused");
    assert!(matches!(e, TopologyError::Xml { .. }), "{e:?}");
    assert!(e.to_string().contains("garbage.xml"), "names the file: {e}");

    let not_xml = dir.path().join("text.xml");
    fs::write(&not_xml, "hello\0world").expect("write");
    let e = load(&TopologySource::Xml(not_xml)).expect_err("binary junk is refused");
    assert!(e.to_string().contains("text.xml"), "{e}");

    let missing = dir.path().join("missing.xml");
    let e = load(&TopologySource::Xml(missing.clone())).expect_err("missing file");
    assert!(matches!(e, TopologyError::Read { .. }), "{e:?}");
    assert!(
        e.to_string().contains(&missing.display().to_string()),
        "names the path: {e}"
    );
    let e = load(&TopologySource::Json(dir.path().join("missing.json"))).expect_err("missing");
    assert!(e.to_string().contains("missing.json"), "{e}");

    let bad_json = dir.path().join("bad.json");
    fs::write(&bad_json, "{\"source\": 3}").expect("write");
    let e = load(&TopologySource::Json(bad_json)).expect_err("not a topology");
    assert!(
        matches!(e, TopologyError::Json { .. }) && e.to_string().contains("bad.json"),
        "{e}"
    );

    let empty = dir.path().join("empty.json");
    fs::write(&empty, r#"{"source":"x","nodes":[],"cpus":[],"pci":[]}"#).expect("write");
    let e = load(&TopologySource::Json(empty)).expect_err("no CPUs");
    assert!(e.to_string().contains("no CPUs"), "{e}");

    let e = load(&TopologySource::Synthetic("pack:two".into())).expect_err("bad synthetic");
    assert!(matches!(e, TopologyError::Synthetic { .. }), "{e:?}");
    assert!(e.to_string().contains("pack:two"), "{e}");

    // A sidecar that is not sysfs facts fails loudly rather than being ignored.
    let xml = dir.path().join("host.xml");
    fs::copy(fixture("two-socket.xml"), &xml).expect("copy");
    fs::write(dir.path().join("host.sysfs.json"), "{\"netdevz\": {}}").expect("write");
    let e = load(&TopologySource::Xml(xml)).expect_err("bad sidecar");
    assert!(e.to_string().contains("host.sysfs.json"), "{e}");

    let e = TopologySource::from_arg("nonsense").expect_err("unknown form");
    assert!(
        e.to_string().contains("synthetic:"),
        "lists the accepted forms: {e}"
    );
}

#[test]
fn from_arg_sniffs_files_without_extension() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let x = dir.path().join("host");
    fs::copy(fixture("two-socket.xml"), &x).expect("copy");
    assert_eq!(
        TopologySource::from_arg(&x.display().to_string()).ok(),
        Some(TopologySource::Xml(x))
    );
    let j = dir.path().join("rec");
    fs::copy(fixture("this-machine.json"), &j).expect("copy");
    assert_eq!(
        TopologySource::from_arg(&j.display().to_string()).ok(),
        Some(TopologySource::Json(j))
    );
}

/// Builds a fake sysfs tree of a two-node machine with symlinks like the kernel's.
fn fake_sysfs(root: &Path) {
    let w = |p: &str, s: &str| {
        let p = root.join(p);
        fs::create_dir_all(p.parent().expect("has a parent")).expect("mkdir");
        fs::write(p, s).expect("write");
    };
    let link = |target: &str, at: &str| {
        let at = root.join(at);
        fs::create_dir_all(at.parent().expect("has a parent")).expect("mkdir");
        std::os::unix::fs::symlink(root.join(target), at).expect("symlink");
    };
    w("devices/system/cpu/online", "0-3\n");
    for c in 0..4u32 {
        w(
            &format!("devices/system/cpu/cpu{c}/topology/physical_package_id"),
            &format!("{}\n", c / 2),
        );
        w(
            &format!("devices/system/cpu/cpu{c}/topology/core_id"),
            &format!("{}\n", c % 2),
        );
    }
    w("devices/system/node/node0/cpulist", "0-1\n");
    w("devices/system/node/node1/cpulist", "2-3\n");
    w("devices/system/node/node0/distance", "10 32\n");
    w("devices/system/node/node1/distance", "32 10\n");
    w(
        "devices/system/node/node1/meminfo",
        "Node 1 MemTotal:       1024 kB\n",
    );
    // A NIC on node 1 with two netdev levels (virtio-style), an NVMe on node 0, a NIC whose
    // firmware gives no node, a loop device and lo.
    let nic = "devices/pci0000:80/0000:80:01.0/0000:81:00.0";
    w(&format!("{nic}/class"), "0x020000\n");
    w(&format!("{nic}/numa_node"), "1\n");
    w(&format!("{nic}/net/ens1f0/speed"), "25000\n");
    link(&format!("{nic}/net/ens1f0"), "class/net/ens1f0");
    link(nic, "bus/pci/devices/0000:81:00.0");
    let ssd = "devices/pci0000:00/0000:00:01.1/0000:01:00.0";
    w(&format!("{ssd}/class"), "0x010802\n");
    w(&format!("{ssd}/numa_node"), "0\n");
    w(&format!("{ssd}/nvme/nvme0/nvme0n1/size"), "1\n");
    w(
        &format!("{ssd}/nvme/nvme0/nvme0n1/nvme0n1p1/partition"),
        "1\n",
    );
    link(&format!("{ssd}/nvme/nvme0/nvme0n1"), "class/block/nvme0n1");
    link(
        &format!("{ssd}/nvme/nvme0/nvme0n1/nvme0n1p1"),
        "class/block/nvme0n1p1",
    );
    link(ssd, "bus/pci/devices/0000:01:00.0");
    let nic2 = "devices/pci0000:00/0000:00:03.0";
    w(&format!("{nic2}/class"), "0x020000\n");
    w(&format!("{nic2}/numa_node"), "-1\n");
    w(&format!("{nic2}/virtio2/net/eth0/speed"), "-1\n");
    link(&format!("{nic2}/virtio2/net/eth0"), "class/net/eth0");
    link(nic2, "bus/pci/devices/0000:00:03.0");
    w("devices/virtual/net/lo/speed", "");
    link("devices/virtual/net/lo", "class/net/lo");
    w("devices/virtual/block/loop0/size", "0\n");
    link("devices/virtual/block/loop0", "class/block/loop0");
    // soft-RoCE on eth0: no PCI device of its own.
    w("devices/virtual/infiniband/rxe0/parent", "eth0\n");
    link("devices/virtual/infiniband/rxe0", "class/infiniband/rxe0");
}

#[test]
fn sysfs_tree_alone_gives_nodes_devices_and_speeds() {
    let dir = tempfile::tempdir().expect("temporary directory");
    fake_sysfs(dir.path());
    let l = load_sysfs(dir.path()).unwrap_or_else(|e| panic!("fake sysfs loads: {e}"));
    let t = &l.topology;
    assert_eq!(t.nodes.len(), 2);
    assert_consistent(t);
    assert_eq!(t.package_count(), 2);
    assert_eq!(t.core_count(), 4);
    assert_eq!(t.node_of_cpu(3), Some(1));
    assert_eq!(t.distance(0, 1), Some(32));
    assert_eq!(t.node(1).and_then(|n| n.memory_bytes), Some(1024 * 1024));
    assert_eq!(t.node_of_netdev("ens1f0"), Some(1));
    assert_eq!(t.link_speed_of_netdev("ens1f0"), Some(25_000));
    assert_eq!(
        t.pci_of_block_device("nvme0n1").map(|p| p.bdf.as_str()),
        Some("0000:01:00.0")
    );
    assert_eq!(t.node_of_block_device("nvme0n1p1"), Some(0));
    let p = t.pci_of_block_device("nvme0n1").expect("nvme0n1");
    assert_eq!(
        p.block_devices,
        vec!["nvme0n1".to_string()],
        "partitions are not listed"
    );
    assert!(t.pci_of_netdev("lo").is_none());
    assert!(t.pci_of_block_device("loop0").is_none());
    let eth0 = t.pci_of_netdev("eth0").expect("eth0 is on 0000:00:03.0");
    assert_eq!(
        eth0.node, None,
        "numa_node -1 on a two-node machine is unknown"
    );
    assert_eq!(eth0.link_speed_mbps, None, "speed -1 is unknown");
    assert_eq!(
        eth0.rdma_devices,
        vec!["rxe0".to_string()],
        "rxe0 rides on eth0"
    );
    assert!(
        l.notes
            .iter()
            .any(|n| n.contains("0000:00:03.0 (eth0 rxe0): NUMA node unknown")),
        "{:?}",
        l.notes
    );
}

#[test]
fn sysfs_without_cpus_is_an_error() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let e = load_sysfs(dir.path()).expect_err("an empty tree describes no machine");
    assert!(e.to_string().contains("online"), "{e}");
}

#[test]
fn truncated_xml_never_panics() {
    let full = fs::read_to_string(fixture("two-socket.xml")).expect("fixture");
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("cut.xml");
    let mut errors = 0;
    // Cut at 40 points spread over the file (char boundaries: the fixture is ASCII).
    for i in 1..40 {
        let cut = full.len() * i / 40;
        fs::write(&path, &full[..cut]).expect("write");
        match load(&TopologySource::Xml(path.clone())) {
            Ok(l) => assert!(!l.topology.cpus.is_empty(), "a loaded cut has CPUs"),
            Err(e) => {
                errors += 1;
                assert!(e.to_string().contains("cut.xml"), "{e}");
            }
        }
    }
    assert!(errors > 30, "almost every cut is refused ({errors}/39)");
}

#[test]
fn xml_device_on_no_single_node_is_noted() {
    // Move the NIC's host bridge from package 1 to the machine: hwloc then knows no single
    // node for it (as on boxes whose firmware reports no proximity for a root complex).
    let full = fs::read_to_string(fixture("two-socket.xml")).expect("fixture");
    let start = full
        .find("      <object type=\"Bridge\" gp_index=\"110\"")
        .expect("the NIC's bridge");
    let end = start
        + full[start..].find("\n      </object>\n").expect("its end")
        + "\n      </object>\n".len();
    let block = &full[start..end];
    let rest = format!("{}{}", &full[..start], &full[end..]);
    let at = rest
        .find("  </object>\n  <distances2")
        .expect("the machine's end");
    let moved = format!("{}{block}{}", &rest[..at], &rest[at..]);
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("moved.xml");
    fs::write(&path, moved).expect("write");
    let l = load_ok(&TopologySource::Xml(path));
    assert_eq!(l.topology.nodes.len(), 2);
    assert_eq!(l.topology.node_of_netdev("ens1f0"), None, "no single node");
    assert_eq!(
        l.topology.node_of_block_device("nvme0n1"),
        Some(0),
        "the SSD stays"
    );
    assert!(
        l.notes
            .iter()
            .any(|n| n.starts_with("0000:81:00.0 (ens1f0 mlx5_0): NUMA node unknown")),
        "{:?}",
        l.notes
    );
}
