//! RDMA ports from sysfs: `<root>/class/infiniband/<dev>/ports/<n>/` (root `/sys` normally, a
//! temporary tree in tests). Per port: the data rate (`rate`), `state`, `link_layer`, the IB port
//! counters (`counters/port_{xmit,rcv}_{data,packets}`, `port_xmit_discards`, `port_xmit_wait`)
//! and every file of `hw_counters/` (driver-specific names, kept as a name → value map), plus the
//! netdev the port runs over.
//!
//! Why: on a hardware RoCE or InfiniBand port the NIC moves RDMA traffic itself, so the netdev's
//! counters (`/proc/net/dev`) never see it and the link detector needs the port's own. A software
//! device (rxe, siw) sends through a netdev whose counters already count every byte, so it is
//! marked `soft` and the analysis judges its netdev instead (never both: that would count the
//! traffic twice). A device is software when its directory has a `parent` file (rxe and siw
//! write the netdev they are bound to there; hardware drivers do not) or its name starts with
//! `rxe` or `siw` (their default names).
//!
//! Units and traps: `port_xmit_data`/`port_rcv_data` count 4-octet words (IB spec). Without
//! extended counters they are 32-bit and stop at 0xFFFFFFFF: a saturated value is "unknown",
//! never traffic. A 64-bit form (`counters_ext/port_xmit_data_64`, `counters/*_64`) wins when
//! present. rxe has no `counters/` directory at all (no management datagrams): its port gives
//! `hw_counters` only, which is all its analysis needs.
//!
//! Threading: owned by the sampling thread. A tick re-lists the ports (devices come and go with
//! `rdma link add`) and reads a few dozen small files per port. Unreadable or garbled files leave
//! their field `None`; nothing here fails a tick or panics.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use agent_core::sample::{Capability, RdmaPortSample, Sample, TargetInfo};

/// Largest value of a 32-bit IB port counter: where it saturates.
const SATURATED_32: u64 = 0xFFFF_FFFF;
/// Largest value of the 16-bit `port_xmit_discards`.
const SATURATED_16: u64 = 0xFFFF;

/// Reads every RDMA port under a sysfs root.
pub struct RdmaCollector {
    root: PathBuf,
    /// Ports seen at describe time, for the capability line.
    seen: Vec<RdmaPortSample>,
    /// Whether `class/infiniband` exists at all.
    class_present: bool,
}

impl RdmaCollector {
    /// A collector over `/sys`.
    pub fn new() -> RdmaCollector {
        RdmaCollector::with_root("/sys")
    }

    /// A collector over another sysfs root (tests, a recorded tree).
    pub fn with_root(root: impl Into<PathBuf>) -> RdmaCollector {
        RdmaCollector {
            root: root.into(),
            seen: Vec::new(),
            class_present: false,
        }
    }

    fn class_dir(&self) -> PathBuf {
        self.root.join("class/infiniband")
    }

    /// Every port now, sorted by (device, port).
    pub fn read_ports(&self) -> Vec<RdmaPortSample> {
        let mut out = Vec::new();
        for (device, dev_dir) in entries(&self.class_dir()) {
            let soft = dev_dir.join("parent").exists()
                || device.starts_with("rxe")
                || device.starts_with("siw");
            let parent = read_trim(&dev_dir.join("parent"));
            for (port_name, port_dir) in entries(&dev_dir.join("ports")) {
                let Ok(port) = port_name.parse::<u32>() else {
                    continue;
                };
                out.push(read_port(
                    &device,
                    port,
                    soft,
                    parent.as_deref(),
                    &dev_dir,
                    &port_dir,
                ));
            }
        }
        out.sort_by(|a, b| (&a.device, a.port).cmp(&(&b.device, b.port)));
        out
    }
}

impl Default for RdmaCollector {
    fn default() -> RdmaCollector {
        RdmaCollector::new()
    }
}

fn read_port(
    device: &str,
    port: u32,
    soft: bool,
    parent: Option<&str>,
    dev_dir: &Path,
    dir: &Path,
) -> RdmaPortSample {
    let counters = dir.join("counters");
    let ext = dir.join("counters_ext");
    // Extended (64-bit) first; the plain file is 32-bit unless the driver fills it from the
    // extended counters, so its maximum means "saturated", not traffic.
    let wide = |name: &str| {
        read_u64(&ext.join(format!("{name}_64")))
            .or_else(|| read_u64(&counters.join(format!("{name}_64"))))
            .or_else(|| read_u64(&counters.join(name)).filter(|v| *v != SATURATED_32))
    };
    let words_to_bytes = |w: Option<u64>| w.and_then(|w| w.checked_mul(4));
    RdmaPortSample {
        device: device.to_string(),
        port,
        soft,
        netdev: netdev_of(dir, parent, dev_dir),
        link_layer: read_trim(&dir.join("link_layer")).filter(|s| !s.is_empty()),
        state: read_trim(&dir.join("state")).and_then(|s| parse_state(&s)),
        rate_bits_per_s: read_trim(&dir.join("rate")).and_then(|s| parse_rate(&s)),
        xmit_bytes: words_to_bytes(wide("port_xmit_data")),
        rcv_bytes: words_to_bytes(wide("port_rcv_data")),
        xmit_packets: wide("port_xmit_packets"),
        rcv_packets: wide("port_rcv_packets"),
        xmit_discards: read_u64(&counters.join("port_xmit_discards"))
            .filter(|v| *v != SATURATED_16),
        xmit_wait: read_u64(&counters.join("port_xmit_wait")).filter(|v| *v != SATURATED_32),
        hw_counters: hw_counters(&dir.join("hw_counters")),
    }
}

/// The netdev under a port: the GID table's first netdev (RoCE), else the device's `parent`
/// (rxe, siw), else the PCI function's `net/` entry (the first, for a one-port NIC).
fn netdev_of(port_dir: &Path, parent: Option<&str>, dev_dir: &Path) -> Option<String> {
    read_trim(&port_dir.join("gid_attrs/ndevs/0"))
        .filter(|s| !s.is_empty())
        .or_else(|| parent.filter(|s| !s.is_empty()).map(str::to_string))
        .or_else(|| {
            entries(&dev_dir.join("device/net"))
                .into_iter()
                .next()
                .map(|(n, _)| n)
        })
}

/// Every numeric file of `hw_counters/` (`lifespan` is a setting, not a counter).
fn hw_counters(dir: &Path) -> BTreeMap<String, u64> {
    entries(dir)
        .into_iter()
        .filter(|(name, _)| name != "lifespan")
        .filter_map(|(name, path)| read_u64(&path).map(|v| (name, v)))
        .collect()
}

/// `4: ACTIVE` → `ACTIVE`.
pub fn parse_state(s: &str) -> Option<String> {
    let word = s.split_once(':').map_or(s, |(_, w)| w).trim();
    (!word.is_empty()).then(|| word.to_string())
}

/// `25 Gb/sec (1X EDR)` → 25e9 bits/s of data. SDR, DDR and QDR encode 8b/10b, so their shown
/// (signalling) rate carries 80 % of data: `10 Gb/sec (4X SDR)` is 8 Gb/s. FDR and later use
/// 64b/66b and show the data rate.
pub fn parse_rate(s: &str) -> Option<u64> {
    let mut words = s.split_whitespace();
    let value: f64 = words.next()?.parse().ok()?;
    let scale = match words.next()? {
        "Gb/sec" | "Gb/s" => 1e9,
        "Mb/sec" | "Mb/s" => 1e6,
        _ => return None,
    };
    let width_speed = s.split_once('(').map_or("", |(_, r)| r);
    let encoding = if ["SDR", "DDR", "QDR"]
        .iter()
        .any(|e| width_speed.contains(e))
    {
        0.8
    } else {
        1.0
    };
    let bits = value * scale * encoding;
    (bits.is_finite() && bits > 0.0 && bits < 1e15).then(|| bits.round() as u64)
}

fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

fn read_u64(p: &Path) -> Option<u64> {
    read_trim(p)?.parse().ok()
}

/// Sorted `(name, path)` of a directory's entries; empty when it cannot be read.
fn entries(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<(String, PathBuf)> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
        .collect();
    v.sort();
    v
}

fn describe_port(p: &RdmaPortSample) -> String {
    let rate = p
        .rate_bits_per_s
        .map(|r| format!("{:.0} Gb/s", r as f64 / 1e9))
        .unwrap_or_else(|| "rate unknown".into());
    let netdev = p.netdev.as_deref().unwrap_or("no netdev found");
    if p.soft {
        format!(
            "{}/{} (software over {netdev}: judged by the netdev's counters)",
            p.device, p.port
        )
    } else {
        let counters = if p.xmit_bytes.is_some() || p.rcv_bytes.is_some() {
            "port counters"
        } else {
            "no usable byte counters"
        };
        format!(
            "{}/{} (hardware, {}, {rate}, {netdev}: {counters})",
            p.device,
            p.port,
            p.link_layer.as_deref().unwrap_or("link layer unknown")
        )
    }
}

impl super::Collector for RdmaCollector {
    fn name(&self) -> &'static str {
        "rdma"
    }

    fn capability(&self) -> Capability {
        let class = self.class_dir();
        if !self.class_present || self.seen.is_empty() {
            let why = if self.class_present {
                "has no ports"
            } else {
                "absent"
            };
            return Capability {
                name: "rdma".into(),
                available: false,
                note: format!(
                    "no RDMA devices ({} {why}): RDMA port counters not collected; netdev \
                     counters still used",
                    class.display()
                ),
            };
        }
        Capability {
            name: "rdma".into(),
            available: true,
            note: self
                .seen
                .iter()
                .map(describe_port)
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    fn describe(&mut self, _info: &mut TargetInfo) {
        self.class_present = self.class_dir().is_dir();
        self.seen = self.read_ports();
    }

    fn collect(&mut self, _info: &TargetInfo, sample: &mut Sample) {
        // Listed every tick even when absent at attach: `modprobe rdma_rxe` and `rdma link add`
        // during a session bring ports whose counters should flow (a missing directory costs one
        // failed readdir).
        sample.rdma_ports = self.read_ports();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::Collector;
    use agent_core::sample::ReactorInfo;
    use agent_core::topology::Topology;

    /// A recorded-style sysfs tree: `mlx5_0` (hardware RoCE, 25 Gb/s, on `ens1f0`, 32-bit
    /// counters) and `rxe0` (soft-RoCE on `eth0`, hw_counters only).
    struct Tree {
        dir: tempfile::TempDir,
    }

    impl Tree {
        fn new() -> Tree {
            let t = Tree {
                dir: tempfile::tempdir().expect("tempdir"),
            };
            let m = "class/infiniband/mlx5_0";
            t.write(&format!("{m}/node_type"), "1: CA");
            t.write(&format!("{m}/ports/1/rate"), "25 Gb/sec (1X EDR)");
            t.write(&format!("{m}/ports/1/state"), "4: ACTIVE");
            t.write(&format!("{m}/ports/1/link_layer"), "Ethernet");
            t.write(&format!("{m}/ports/1/gid_attrs/ndevs/0"), "ens1f0");
            t.write(&format!("{m}/device/net/ens1f0/mtu"), "9000");
            t.counters(1_000, 500, 10, 5);
            t.write(&format!("{m}/ports/1/counters/port_xmit_discards"), "0");
            t.write(&format!("{m}/ports/1/counters/port_xmit_wait"), "0");
            t.hw("mlx5_0", "out_of_sequence", 0);
            t.hw("mlx5_0", "local_ack_timeout_err", 0);
            t.hw("mlx5_0", "rx_write_requests", 0);
            t.write(&format!("{m}/ports/1/hw_counters/lifespan"), "10");

            let r = "class/infiniband/rxe0";
            t.write(&format!("{r}/parent"), "eth0");
            t.write(&format!("{r}/node_type"), "1: CA");
            t.write(&format!("{r}/ports/1/rate"), "10 Gb/sec (1X QDR)");
            t.write(&format!("{r}/ports/1/state"), "4: ACTIVE");
            t.write(&format!("{r}/ports/1/link_layer"), "Ethernet");
            for (k, v) in [
                ("sent_pkts", 100),
                ("rcvd_pkts", 90),
                ("duplicate_request", 0),
                ("out_of_seq_request", 0),
                ("rcvd_rnr_err", 0),
                ("send_rnr_err", 0),
                ("rcvd_seq_err", 0),
                ("retry_exceeded_err", 0),
                ("retry_rnr_exceeded_err", 0),
                ("completer_retry_err", 0),
            ] {
                t.hw("rxe0", k, v);
            }
            t
        }

        fn write(&self, rel: &str, text: &str) {
            let p = self.dir.path().join(rel);
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs::write(&p, format!("{text}\n")).expect("write");
        }

        fn counters(&self, xmit_words: u64, rcv_words: u64, xmit_pkts: u64, rcv_pkts: u64) {
            let c = "class/infiniband/mlx5_0/ports/1/counters";
            self.write(&format!("{c}/port_xmit_data"), &xmit_words.to_string());
            self.write(&format!("{c}/port_rcv_data"), &rcv_words.to_string());
            self.write(&format!("{c}/port_xmit_packets"), &xmit_pkts.to_string());
            self.write(&format!("{c}/port_rcv_packets"), &rcv_pkts.to_string());
        }

        fn hw(&self, dev: &str, name: &str, v: u64) {
            self.write(
                &format!("class/infiniband/{dev}/ports/1/hw_counters/{name}"),
                &v.to_string(),
            );
        }

        fn collector(&self) -> RdmaCollector {
            let mut c = RdmaCollector::with_root(self.dir.path());
            c.describe(&mut TargetInfo::default());
            c
        }
    }

    fn sample(c: &mut RdmaCollector, t_ns: u64) -> Sample {
        let mut s = Sample {
            t_ns,
            ..Sample::default()
        };
        c.collect(&TargetInfo::default(), &mut s);
        s
    }

    #[test]
    fn the_collector_reads_a_hardware_and_a_software_port() {
        let tree = Tree::new();
        let mut c = tree.collector();
        let s = sample(&mut c, 1);
        assert_eq!(s.rdma_ports.len(), 2, "{:?}", s.rdma_ports);
        let m = &s.rdma_ports[0];
        assert_eq!((m.device.as_str(), m.port, m.soft), ("mlx5_0", 1, false));
        assert_eq!(m.netdev.as_deref(), Some("ens1f0"));
        assert_eq!(m.link_layer.as_deref(), Some("Ethernet"));
        assert_eq!(m.state.as_deref(), Some("ACTIVE"));
        assert_eq!(m.rate_bits_per_s, Some(25_000_000_000));
        assert_eq!(m.xmit_bytes, Some(4_000), "4-octet words");
        assert_eq!(m.rcv_bytes, Some(2_000));
        assert_eq!((m.xmit_packets, m.rcv_packets), (Some(10), Some(5)));
        assert_eq!((m.xmit_discards, m.xmit_wait), (Some(0), Some(0)));
        assert_eq!(m.hw_counters.len(), 3, "lifespan is not a counter");
        let r = &s.rdma_ports[1];
        assert_eq!((r.device.as_str(), r.soft), ("rxe0", true));
        assert_eq!(r.netdev.as_deref(), Some("eth0"), "from the parent file");
        assert_eq!(r.rate_bits_per_s, Some(8_000_000_000), "QDR is 8b/10b");
        assert_eq!(r.xmit_bytes, None, "rxe has no port counters");
        assert_eq!(r.hw_counters.get("sent_pkts"), Some(&100));
        assert_eq!(r.hw_counters.len(), 10);
        let cap = c.capability();
        assert!(cap.available, "{cap:?}");
        assert_eq!(
            cap.note,
            "mlx5_0/1 (hardware, Ethernet, 25 Gb/s, ens1f0: port counters), rxe0/1 (software \
             over eth0: judged by the netdev's counters)"
        );
    }

    #[test]
    fn counters_advancing_between_two_reads_give_the_rates() {
        let tree = Tree::new();
        let mut c = tree.collector();
        let a = sample(&mut c, 10_000_000_000);
        // One second later: 2.96875 GB transmitted (95 % of 25 Gb/s), 1 MB received.
        tree.counters(1_000 + 742_187_500, 500 + 250_000, 10 + 725_000, 5 + 30_000);
        tree.hw("mlx5_0", "out_of_sequence", 7);
        tree.hw("rxe0", "rcvd_seq_err", 2);
        tree.hw("rxe0", "sent_pkts", 1_100);
        let b = sample(&mut c, 11_000_000_000);
        let info = TargetInfo {
            reactors: vec![ReactorInfo::default()],
            ..TargetInfo::default()
        };
        let w = agent_core::window::build(&info, &Topology::default(), &a, &b);
        let m = &w.rdma_ports[0];
        assert_eq!(m.tx_bytes_per_s, Some(2_968_750_000.0));
        assert_eq!(m.rx_bytes_per_s, Some(1_000_000.0));
        assert_eq!(m.tx_packets_per_s, Some(725_000.0));
        let u = m.utilisation.expect("utilisation");
        assert!((u - 0.95).abs() < 1e-9, "utilisation {u}");
        assert_eq!(m.retransmits.get("out_of_sequence"), Some(&7));
        let r = &w.rdma_ports[1];
        assert!(r.soft);
        assert_eq!(r.hw_counters.get("sent_pkts"), Some(&1_000));
        assert_eq!(r.retransmits.get("rcvd_seq_err"), Some(&2));
        assert_eq!(r.utilisation, None, "no byte counters on rxe");
    }

    #[test]
    fn a_saturated_32_bit_counter_is_not_traffic() {
        let tree = Tree::new();
        let mut c = tree.collector();
        let a = sample(&mut c, 1_000_000_000);
        tree.counters(SATURATED_32, SATURATED_32, SATURATED_32, 6);
        let b = sample(&mut c, 2_000_000_000);
        let m = &b.rdma_ports[0];
        assert_eq!(
            (m.xmit_bytes, m.rcv_bytes, m.xmit_packets),
            (None, None, None)
        );
        assert_eq!(m.rcv_packets, Some(6));
        let w = agent_core::window::build(&TargetInfo::default(), &Topology::default(), &a, &b);
        assert_eq!(w.rdma_ports[0].tx_bytes_per_s, None);
        assert_eq!(w.rdma_ports[0].utilisation, None, "unknown, not 4 GB/s");
    }

    #[test]
    fn an_extended_64_bit_counter_wins_over_the_32_bit_one() {
        let tree = Tree::new();
        tree.counters(SATURATED_32, 1, 1, 1);
        tree.write(
            "class/infiniband/mlx5_0/ports/1/counters_ext/port_xmit_data_64",
            "10000000000",
        );
        let s = sample(&mut tree.collector(), 1);
        assert_eq!(s.rdma_ports[0].xmit_bytes, Some(40_000_000_000));
    }

    #[test]
    fn garbled_and_missing_files_leave_fields_empty_without_panicking() {
        let tree = Tree::new();
        let m = "class/infiniband/mlx5_0/ports/1";
        tree.write(&format!("{m}/rate"), "fast");
        tree.write(&format!("{m}/state"), "");
        tree.write(&format!("{m}/counters/port_xmit_data"), "12abc");
        tree.write(&format!("{m}/counters/port_rcv_data"), "-4");
        tree.write(&format!("{m}/hw_counters/out_of_sequence"), "\u{0}\u{1}");
        fs::remove_file(tree.dir.path().join(format!("{m}/gid_attrs/ndevs/0"))).expect("rm");
        fs::create_dir_all(tree.dir.path().join(format!("{m}/hw_counters/a_directory")))
            .expect("mkdir");
        // A port directory that is not a number, and a device without ports.
        tree.write("class/infiniband/mlx5_0/ports/extra/rate", "25 Gb/sec");
        fs::create_dir_all(tree.dir.path().join("class/infiniband/broken0")).expect("mkdir");
        let s = sample(&mut tree.collector(), 1);
        assert_eq!(s.rdma_ports.len(), 2, "{:?}", s.rdma_ports);
        let p = &s.rdma_ports[0];
        assert_eq!((p.rate_bits_per_s, p.state.as_deref()), (None, None));
        assert_eq!((p.xmit_bytes, p.rcv_bytes), (None, None));
        assert!(!p.hw_counters.contains_key("out_of_sequence"));
        assert!(!p.hw_counters.contains_key("a_directory"));
        assert_eq!(
            p.netdev.as_deref(),
            Some("ens1f0"),
            "falls back to the PCI function's net/ entry"
        );
    }

    #[test]
    fn a_device_added_during_the_session_is_collected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = RdmaCollector::with_root(dir.path());
        c.describe(&mut TargetInfo::default());
        assert!(sample(&mut c, 1).rdma_ports.is_empty());
        let port = dir.path().join("class/infiniband/rxe0/ports/1");
        fs::create_dir_all(port.join("hw_counters")).expect("mkdir");
        fs::write(dir.path().join("class/infiniband/rxe0/parent"), "rs0\n").expect("write");
        fs::write(port.join("hw_counters/sent_pkts"), "3\n").expect("write");
        let s = sample(&mut c, 2);
        assert_eq!(s.rdma_ports.len(), 1, "{:?}", s.rdma_ports);
        assert_eq!(s.rdma_ports[0].netdev.as_deref(), Some("rs0"));
    }

    #[test]
    fn no_rdma_devices_is_one_capability_line_and_no_ports() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = RdmaCollector::with_root(dir.path());
        c.describe(&mut TargetInfo::default());
        let cap = c.capability();
        assert!(!cap.available);
        assert_eq!(
            cap.note,
            format!(
                "no RDMA devices ({}/class/infiniband absent): RDMA port counters not \
                 collected; netdev counters still used",
                dir.path().display()
            )
        );
        assert!(sample(&mut c, 1).rdma_ports.is_empty());
        assert_eq!(
            RdmaCollector::new().class_dir(),
            PathBuf::from("/sys/class/infiniband"),
            "the default root gives the documented line"
        );
    }

    #[test]
    fn rates_parse_with_their_encoding() {
        assert_eq!(parse_rate("25 Gb/sec (1X EDR)"), Some(25_000_000_000));
        assert_eq!(parse_rate("100 Gb/sec (4X EDR)"), Some(100_000_000_000));
        assert_eq!(parse_rate("10 Gb/sec (1X QDR)"), Some(8_000_000_000));
        assert_eq!(parse_rate("2.5 Gb/sec (1X SDR)"), Some(2_000_000_000));
        assert_eq!(parse_rate("56 Gb/sec (4X FDR)"), Some(56_000_000_000));
        assert_eq!(parse_rate("100 Mb/sec"), Some(100_000_000));
        for bad in [
            "",
            "fast",
            "25",
            "25 furlongs",
            "-1 Gb/sec",
            "NaN Gb/sec",
            "inf Gb/sec",
        ] {
            assert_eq!(parse_rate(bad), None, "{bad:?}");
        }
        assert_eq!(parse_state("4: ACTIVE").as_deref(), Some("ACTIVE"));
        assert_eq!(parse_state("1: DOWN").as_deref(), Some("DOWN"));
        assert_eq!(parse_state(" : "), None);
    }
}
