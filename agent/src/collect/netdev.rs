//! The network devices carrying the target's listeners: byte/packet/drop counters from
//! `/proc/net/dev`, link speed from sysfs, and the egress root qdisc (shaping rate, backlog,
//! drops, overlimits) from iproute2's `tc`.
//!
//! Threading: owned by the sampling thread. Everything is read in the network namespace of the
//! calling *thread* (the agent joins the target's): `/proc/thread-self/net/*` rather than
//! `/proc/net` (which follows the process's main thread), `getifaddrs` (a netlink socket of the
//! thread's namespace), and `tc` children (forked from this thread, so they inherit its
//! namespace). sysfs shows the namespace it was mounted in, so a link speed is only trusted when
//! the sysfs ifindex matches the one of the current namespace.
//!
//! `tc` is one short child process per device per tick (about a millisecond or two), bounded by
//! a timeout; an htb root's rate comes from `tc class show` and is cached until the root qdisc
//! changes.

use std::io::Read;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent_core::sample::{Capability, NetdevSample, Sample, TargetInfo};
use nix::ifaddrs::getifaddrs;
use nix::net::if_::InterfaceFlags;

/// How long a `tc` child may take before it is killed and the tick goes on without qdisc stats.
const TC_TIMEOUT: Duration = Duration::from_millis(500);

/// Reads counters of the listeners' network devices.
pub struct NetdevCollector {
    devs: Vec<Dev>,
    /// How each listener was resolved (for the capability line).
    resolved: Vec<String>,
    tc: TcState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TcState {
    Untried,
    Works,
    /// `tc` is not installed: said once in the capability line.
    Missing,
}

struct Dev {
    name: String,
    /// `(kind, handle)` of the root qdisc whose htb rate is cached.
    htb_key: Option<(String, String)>,
    htb_rate: Option<u64>,
}

impl NetdevCollector {
    /// A collector for the netdevs of the target's listeners (resolved in
    /// [`Collector::describe`](super::Collector::describe)).
    pub fn new() -> NetdevCollector {
        NetdevCollector {
            devs: Vec::new(),
            resolved: Vec::new(),
            tc: TcState::Untried,
        }
    }

    /// The devices watched (after `describe`).
    pub fn devices(&self) -> Vec<&str> {
        self.devs.iter().map(|d| d.name.as_str()).collect()
    }

    fn add_dev(&mut self, name: &str) {
        if !self.devs.iter().any(|d| d.name == name) {
            self.devs.push(Dev {
                name: name.to_string(),
                htb_key: None,
                htb_rate: None,
            });
        }
    }

    fn qdisc(&mut self, i: usize, out: &mut NetdevSample) {
        if self.tc == TcState::Missing {
            return;
        }
        let name = self.devs[i].name.clone();
        let json = match run_tc(&["-s", "-j", "qdisc", "show", "dev", &name]) {
            Ok(j) => j,
            Err(TcError::Missing) => {
                self.tc = TcState::Missing;
                return;
            }
            Err(TcError::Failed) => return,
        };
        self.tc = TcState::Works;
        let Some(root) = parse_root_qdisc(&json) else {
            return;
        };
        out.qdisc_backlog_bytes = root.backlog;
        out.qdisc_drops = root.drops;
        out.qdisc_overlimits = root.overlimits;
        out.shaped_rate_bytes = match root.kind.as_str() {
            "tbf" => root.rate,
            "htb" => {
                let dev = &mut self.devs[i];
                let key = (root.kind.clone(), root.handle.clone());
                if dev.htb_key.as_ref() != Some(&key) {
                    dev.htb_rate = run_tc(&["class", "show", "dev", &name])
                        .ok()
                        .and_then(|t| htb_root_rate(&t, &root.handle));
                    dev.htb_key = Some(key);
                }
                dev.htb_rate
            }
            _ => None,
        };
    }
}

impl Default for NetdevCollector {
    fn default() -> Self {
        NetdevCollector::new()
    }
}

impl super::Collector for NetdevCollector {
    fn name(&self) -> &'static str {
        "netdev"
    }

    fn capability(&self) -> Capability {
        if self.devs.is_empty() {
            return Capability {
                name: "netdev".into(),
                available: false,
                note: if self.resolved.is_empty() {
                    "no listener to watch: netdev counters unavailable".into()
                } else {
                    format!(
                        "no netdev found for the listeners ({}): netdev counters unavailable",
                        self.resolved.join("; ")
                    )
                },
            };
        }
        let tc = match self.tc {
            TcState::Missing => {
                "; tc (iproute2) not found: qdisc shaping rate, backlog and drops unknown, byte counters work"
            }
            TcState::Untried | TcState::Works => "; egress qdisc via tc",
        };
        Capability {
            name: "netdev".into(),
            available: true,
            note: format!("{}{tc}", self.resolved.join("; ")),
        }
    }

    fn describe(&mut self, info: &mut TargetInfo) {
        for l in &mut info.listeners {
            if let Some(n) = &l.netdev {
                self.resolved.push(format!("{} on {n}", l.address));
                let n = n.clone();
                self.add_dev(&n);
                continue;
            }
            let Some(ip) = parse_listener_ip(&l.address) else {
                self.resolved
                    .push(format!("{}: not an IP address, skipped", l.address));
                continue;
            };
            let names = netdevs_of(ip);
            match names.as_slice() {
                [] => self
                    .resolved
                    .push(format!("{}: no interface holds {ip}", l.address)),
                [one] => {
                    self.resolved.push(format!("{} on {one}", l.address));
                    l.netdev = Some(one.clone());
                }
                many => self.resolved.push(format!(
                    "{} on all up interfaces ({})",
                    l.address,
                    many.join(", ")
                )),
            }
            for n in &names {
                self.add_dev(n);
            }
        }
        // Learn now whether tc exists, so the capability line can say it.
        if let Some(first) = self.devs.first().map(|d| d.name.clone()) {
            let mut scratch = NetdevSample {
                name: first,
                ..NetdevSample::default()
            };
            self.qdisc(0, &mut scratch);
        }
    }

    fn collect(&mut self, _info: &TargetInfo, sample: &mut Sample) {
        if self.devs.is_empty() {
            return;
        }
        let dev_text = std::fs::read_to_string("/proc/thread-self/net/dev").unwrap_or_default();
        let counters = parse_proc_net_dev(&dev_text);
        for i in 0..self.devs.len() {
            let name = self.devs[i].name.clone();
            let Some(c) = counters.iter().find(|c| c.name == name) else {
                continue; // gone (or renamed): nothing to report this tick
            };
            let mut s = c.clone();
            s.speed_mbps = link_speed(&name);
            self.qdisc(i, &mut s);
            sample.netdevs.push(s);
        }
    }
}

/// `"1.2.3.4:4420"`, `"[::1]:4420"` or a bare address → the IP.
fn parse_listener_ip(addr: &str) -> Option<IpAddr> {
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    addr.trim_matches(|c| c == '[' || c == ']').parse().ok()
}

/// Interfaces holding `ip` in this thread's network namespace; the unspecified address means
/// every interface that is up.
fn netdevs_of(ip: IpAddr) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    fn push(out: &mut Vec<String>, n: &str) {
        if !out.iter().any(|x| x == n) {
            out.push(n.to_string());
        }
    }
    let addrs: Vec<_> = match getifaddrs() {
        Ok(it) => it.collect(),
        Err(_) => Vec::new(),
    };
    if ip.is_unspecified() {
        for a in &addrs {
            if a.flags.contains(InterfaceFlags::IFF_UP) {
                push(&mut out, &a.interface_name);
            }
        }
        return out;
    }
    match ip {
        IpAddr::V4(v4) => {
            for a in &addrs {
                if a.address
                    .as_ref()
                    .and_then(|s| s.as_sockaddr_in())
                    .is_some_and(|s| s.ip() == v4)
                {
                    push(&mut out, &a.interface_name);
                }
            }
        }
        IpAddr::V6(v6) => {
            let text =
                std::fs::read_to_string("/proc/thread-self/net/if_inet6").unwrap_or_default();
            for (a, name) in parse_if_inet6(&text) {
                if a == v6 {
                    push(&mut out, &name);
                }
            }
        }
    }
    if out.is_empty() && ip.is_loopback() {
        // 127.0.0.2 is not assigned to lo but routes through it.
        for a in &addrs {
            if a.flags.contains(InterfaceFlags::IFF_LOOPBACK) {
                push(&mut out, &a.interface_name);
            }
        }
    }
    out
}

/// `/proc/net/if_inet6` lines: `<32 hex digits> <ifindex> <prefix> <scope> <flags> <name>`.
fn parse_if_inet6(text: &str) -> Vec<(Ipv6Addr, String)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (hex, name) = (f.first()?, f.get(5)?);
            if hex.len() != 32 {
                return None;
            }
            let v = u128::from_str_radix(hex, 16).ok()?;
            Some((Ipv6Addr::from(v), (*name).to_string()))
        })
        .collect()
}

/// `/proc/net/dev` → one sample per interface (counters only).
fn parse_proc_net_dev(text: &str) -> Vec<NetdevSample> {
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            let v: Vec<u64> = rest
                .split_whitespace()
                .map(|x| x.parse::<u64>())
                .collect::<Result<_, _>>()
                .ok()?;
            if name.is_empty() || v.len() < 16 {
                return None;
            }
            Some(NetdevSample {
                name: name.to_string(),
                rx_bytes: v[0],
                rx_packets: v[1],
                rx_drops: v[3],
                tx_bytes: v[8],
                tx_packets: v[9],
                tx_drops: v[11],
                ..NetdevSample::default()
            })
        })
        .collect()
}

/// Link speed (Mb/s) from sysfs, when the device reports one and sysfs shows this namespace's
/// device of that name.
fn link_speed(name: &str) -> Option<u64> {
    if name.contains('/') || name.starts_with('.') {
        return None;
    }
    let base = format!("/sys/class/net/{name}");
    let sys_index: u32 = std::fs::read_to_string(format!("{base}/ifindex"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let ns_index = nix::net::if_::if_nametoindex(name).ok()?;
    if sys_index != ns_index {
        return None; // sysfs mounted for another namespace
    }
    let speed: i64 = std::fs::read_to_string(format!("{base}/speed"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    u64::try_from(speed).ok().filter(|&s| s > 0)
}

enum TcError {
    Missing,
    Failed,
}

/// Runs `tc args…`, returns its stdout; kills it after [`TC_TIMEOUT`].
fn run_tc(args: &[&str]) -> Result<String, TcError> {
    let mut child = match Command::new("tc")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(TcError::Missing),
        Err(_) => return Err(TcError::Failed),
    };
    let start = Instant::now();
    let mut pause = Duration::from_micros(200);
    // One device's output is far below a pipe's capacity, so tc never blocks on us.
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if start.elapsed() < TC_TIMEOUT => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(5));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(TcError::Failed);
            }
        }
    };
    let mut out = String::new();
    if let Some(mut so) = child.stdout.take() {
        if so.read_to_string(&mut out).is_err() {
            return Err(TcError::Failed);
        }
    }
    if !status.success() {
        return Err(TcError::Failed);
    }
    Ok(out)
}

/// What the root qdisc says.
#[derive(Debug, PartialEq, Eq)]
struct RootQdisc {
    kind: String,
    handle: String,
    /// tbf rate in bytes/s.
    rate: Option<u64>,
    backlog: u64,
    drops: u64,
    overlimits: u64,
}

/// The root entry of `tc -s -j qdisc show dev X`.
fn parse_root_qdisc(json: &str) -> Option<RootQdisc> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let root = v
        .as_array()?
        .iter()
        .find(|q| q.get("root").and_then(|r| r.as_bool()) == Some(true))?;
    let num = |k: &str| root.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
    let rate = root
        .get("options")
        .and_then(|o| o.get("rate"))
        .and_then(|r| {
            r.as_u64()
                .or_else(|| r.as_str().and_then(parse_tc_rate_bytes))
        });
    Some(RootQdisc {
        kind: root.get("kind")?.as_str()?.to_string(),
        handle: root
            .get("handle")
            .and_then(|h| h.as_str())
            .unwrap_or("")
            .to_string(),
        rate,
        backlog: num("backlog"),
        drops: num("drops"),
        overlimits: num("overlimits"),
    })
}

/// From `tc class show dev X` (text: iproute2's JSON for htb classes is not JSON on every
/// version), the ceiling of the htb class directly under the root qdisc `handle` (`1:`), in
/// bytes/s: the most the device may send.
fn htb_root_rate(text: &str, handle: &str) -> Option<u64> {
    let major = handle.trim_end_matches(':');
    text.lines()
        .filter(|l| l.starts_with("class htb "))
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let id = f.get(2)?;
            let is_root = f.get(3) == Some(&"root");
            if !is_root || id.split(':').next() != Some(major) {
                return None;
            }
            let value_of = |key: &str| {
                f.iter()
                    .position(|x| *x == key)
                    .and_then(|p| f.get(p + 1))
                    .and_then(|v| parse_tc_rate_bytes(v))
            };
            value_of("ceil").or_else(|| value_of("rate"))
        })
}

/// A tc rate (`100Mbit`, `50mbit`, `1Gbit`, `125000bps`, `8Kibit`) → bytes/s.
fn parse_tc_rate_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = s.split_at(split);
    let num: f64 = num.parse().ok()?;
    let unit = unit.to_ascii_lowercase();
    let (prefix, bits_per_unit) = if let Some(p) = unit.strip_suffix("bit") {
        (p, 1.0)
    } else if let Some(p) = unit.strip_suffix("bps") {
        (p, 8.0)
    } else {
        return None;
    };
    let mult = match prefix {
        "" => 1.0,
        "k" => 1e3,
        "m" => 1e6,
        "g" => 1e9,
        "t" => 1e12,
        "ki" => 1024.0,
        "mi" => 1024.0 * 1024.0,
        "gi" => 1024.0 * 1024.0 * 1024.0,
        "ti" => 1024.0f64.powi(4),
        _ => return None,
    };
    let bytes = num * mult * bits_per_unit / 8.0;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then(|| bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_addresses_parse() {
        assert_eq!(
            parse_listener_ip("127.0.0.1:4420"),
            Some("127.0.0.1".parse().expect("ip"))
        );
        assert_eq!(
            parse_listener_ip("[::1]:4420"),
            Some("::1".parse().expect("ip"))
        );
        assert_eq!(
            parse_listener_ip("0.0.0.0"),
            Some("0.0.0.0".parse().expect("ip"))
        );
        assert_eq!(parse_listener_ip("rdma:mlx5_0"), None);
    }

    #[test]
    fn if_inet6_lines() {
        let text = "fd000000000000000000000000000002 04 40 00 82     eth0\n\
                    00000000000000000000000000000001 01 80 10 80       lo\n\
                    garbage\n";
        let v = parse_if_inet6(text);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0], ("fd00::2".parse().expect("ip"), "eth0".to_string()));
        assert_eq!(v[1], (Ipv6Addr::LOCALHOST, "lo".to_string()));
    }

    #[test]
    fn proc_net_dev_lines() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo: 1000      10    0    1    0     0          0         0     2000      20    0    2    0     0       0          0\n  eth0: 5 6 0 0 0 0 0 0 7 8 0 0 0 0 0 0\n  bad: 1 2 3\n";
        let v = parse_proc_net_dev(text);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].name, "lo");
        assert_eq!(
            (v[0].rx_bytes, v[0].rx_packets, v[0].rx_drops),
            (1000, 10, 1)
        );
        assert_eq!(
            (v[0].tx_bytes, v[0].tx_packets, v[0].tx_drops),
            (2000, 20, 2)
        );
        assert_eq!((v[1].rx_bytes, v[1].tx_bytes), (5, 7));
    }

    #[test]
    fn tbf_root_qdisc_json() {
        let j = r#"[{"kind":"tbf","handle":"8001:","root":true,"refcnt":3,"options":{"rate":12500000,"burst":32762,"lat":50000},"bytes":10,"packets":1,"drops":3,"overlimits":4,"requeues":0,"backlog":1500,"qlen":1}]"#;
        let q = parse_root_qdisc(j).expect("root qdisc");
        assert_eq!(q.kind, "tbf");
        assert_eq!(q.rate, Some(12_500_000));
        assert_eq!((q.backlog, q.drops, q.overlimits), (1500, 3, 4));
        assert_eq!(parse_root_qdisc("[]"), None);
        assert_eq!(parse_root_qdisc("not json"), None);
    }

    #[test]
    fn htb_class_text() {
        let t = "class htb 1:10 root prio 0 rate 50Mbit ceil 60Mbit burst 1600b cburst 1600b \nclass htb 1:20 parent 1:10 prio 0 rate 1Mbit ceil 1Mbit burst 1600b cburst 1600b\n";
        assert_eq!(htb_root_rate(t, "1:"), Some(7_500_000));
        assert_eq!(htb_root_rate(t, "2:"), None);
    }

    #[test]
    fn tc_rates() {
        assert_eq!(parse_tc_rate_bytes("100Mbit"), Some(12_500_000));
        assert_eq!(parse_tc_rate_bytes("1Gbit"), Some(125_000_000));
        assert_eq!(parse_tc_rate_bytes("8Kibit"), Some(1024));
        assert_eq!(parse_tc_rate_bytes("1000bps"), Some(1000));
        assert_eq!(parse_tc_rate_bytes("12parsecs"), None);
        assert_eq!(parse_tc_rate_bytes("Mbit"), None);
    }
}
