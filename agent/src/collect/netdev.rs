//! The network devices carrying the target's listeners: byte/packet/drop counters from
//! `/proc/net/dev`, link speed from sysfs, and the egress root qdisc (shaping rate, backlog,
//! drops, overlimits) from rtnetlink (iproute2's `tc` as the fallback).
//!
//! Threading: owned by the sampling thread. Everything is read in the network namespace of the
//! thread that ran `describe` (the agent joins the target's): `/proc/thread-self/net/*` rather
//! than `/proc/net` (which follows the process's main thread), `getifaddrs` and the rtnetlink
//! socket (netlink sockets of the thread's namespace, the latter kept open), and `tc` children
//! (forked from this thread, so they inherit its namespace). sysfs shows the namespace it was
//! mounted in, so a link speed is only trusted when the sysfs ifindex matches the one of the
//! current namespace.
//!
//! A tick is one read of `/proc/net/dev` and one qdisc dump for all devices (tens of µs); only
//! when rtnetlink is unusable does it cost a `tc` child per device (milliseconds, bounded by a
//! timeout). An htb root's rate comes from its top-level class and is cached until the root
//! qdisc changes.

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
    /// rtnetlink socket for qdisc statistics (opened in `describe`, in that thread's namespace).
    rtnl: Option<rtnl::Rtnl>,
    /// Why rtnetlink is not used, when it is not.
    rtnl_error: Option<String>,
    tc: TcState,
    /// Devices named by the description that this network namespace does not have.
    absent: Vec<String>,
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
    ifindex: Option<u32>,
    /// Handle of the root htb qdisc whose rate is cached.
    htb_key: Option<String>,
    htb_rate: Option<u64>,
}

impl NetdevCollector {
    /// A collector for the netdevs of the target's listeners (resolved in
    /// [`Collector::describe`](super::Collector::describe)).
    pub fn new() -> NetdevCollector {
        NetdevCollector {
            devs: Vec::new(),
            resolved: Vec::new(),
            rtnl: None,
            rtnl_error: None,
            tc: TcState::Untried,
            absent: Vec::new(),
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
                ifindex: nix::net::if_::if_nametoindex(name).ok(),
                htb_key: None,
                htb_rate: None,
            });
        }
    }

    /// Root qdisc of every device, by rtnetlink (one dump) or `tc` (one child per device).
    fn root_qdiscs(&mut self) -> Vec<Option<RootQdisc>> {
        if let Some(rt) = &mut self.rtnl {
            match rt.qdiscs() {
                Ok(all) => {
                    return self
                        .devs
                        .iter_mut()
                        .map(|d| {
                            if d.ifindex.is_none() {
                                d.ifindex = nix::net::if_::if_nametoindex(d.name.as_str()).ok();
                            }
                            let idx = i32::try_from(d.ifindex?).ok()?;
                            let q = all
                                .iter()
                                .find(|q| q.ifindex == idx && q.parent == rtnl::TC_H_ROOT)?;
                            Some(RootQdisc {
                                kind: q.kind.clone(),
                                handle: format!("{:x}:", q.handle >> 16),
                                rate: q.rate,
                                backlog: q.backlog,
                                drops: q.drops,
                                overlimits: q.overlimits,
                            })
                        })
                        .collect();
                }
                Err(e) => {
                    // Fall back to tc for the rest of the session.
                    self.rtnl_error = Some(format!("rtnetlink qdisc dump failed ({e})"));
                    self.rtnl = None;
                }
            }
        }
        (0..self.devs.len())
            .map(|i| self.root_qdisc_tc(i))
            .collect()
    }

    fn root_qdisc_tc(&mut self, i: usize) -> Option<RootQdisc> {
        if self.tc == TcState::Missing {
            return None;
        }
        let json = match run_tc(&["-s", "-j", "qdisc", "show", "dev", &self.devs[i].name]) {
            Ok(j) => j,
            Err(TcError::Missing) => {
                self.tc = TcState::Missing;
                return None;
            }
            Err(TcError::Failed) => return None,
        };
        self.tc = TcState::Works;
        parse_root_qdisc(&json)
    }

    /// The htb root class's ceiling of device `i`, cached per root qdisc handle.
    fn htb_rate(&mut self, i: usize, handle: &str) -> Option<u64> {
        let dev = &self.devs[i];
        if dev.htb_key.as_deref() == Some(handle) {
            return dev.htb_rate;
        }
        let rate = match (&mut self.rtnl, dev.ifindex) {
            (Some(rt), Some(idx)) => {
                let major = u32::from_str_radix(handle.trim_end_matches(':'), 16).ok();
                rt.classes(i32::try_from(idx).ok()?)
                    .ok()
                    .and_then(|cs| {
                        cs.into_iter().find(|c| {
                            c.kind == "htb"
                                && c.parent == rtnl::TC_H_ROOT
                                && Some(c.handle >> 16) == major
                        })
                    })
                    .and_then(|c| c.ceil.or(c.rate))
            }
            _ => run_tc(&["class", "show", "dev", &dev.name])
                .ok()
                .and_then(|t| htb_root_rate(&t, handle)),
        };
        let dev = &mut self.devs[i];
        dev.htb_key = Some(handle.to_string());
        dev.htb_rate = rate;
        rate
    }

    fn fill_qdisc(&mut self, i: usize, root: Option<RootQdisc>, out: &mut NetdevSample) {
        let Some(root) = root else { return };
        out.qdisc_backlog_bytes = root.backlog;
        out.qdisc_drops = root.drops;
        out.qdisc_overlimits = root.overlimits;
        out.shaped_rate_bytes = match root.kind.as_str() {
            "tbf" => root.rate,
            "htb" => self.htb_rate(i, &root.handle),
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
        let absent = if self.absent.is_empty() {
            String::new()
        } else {
            format!(
                "; not in this network namespace: {} (run the agent in the target's, e.g. `ip netns exec`)",
                self.absent.join(", ")
            )
        };
        if self.absent.len() == self.devs.len() {
            return Capability {
                name: "netdev".into(),
                available: false,
                note: format!(
                    "{}{absent}: netdev counters unavailable",
                    self.resolved.join("; ")
                ),
            };
        }
        let qdisc = match (&self.rtnl, &self.rtnl_error, self.tc) {
            (Some(_), _, _) => "; egress qdisc via rtnetlink".to_string(),
            (None, why, TcState::Missing) => format!(
                "; {}tc (iproute2) not found: qdisc shaping rate, backlog and drops unknown, byte counters work",
                why.as_ref().map(|w| format!("{w}, ")).unwrap_or_default()
            ),
            (None, why, TcState::Untried | TcState::Works) => format!(
                "; egress qdisc via tc{}",
                why.as_ref().map(|w| format!(" ({w})")).unwrap_or_default()
            ),
        };
        Capability {
            name: "netdev".into(),
            available: true,
            note: format!("{}{qdisc}{absent}", self.resolved.join("; ")),
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
                [] => self.resolved.push(format!(
                    "{}: no interface of this network namespace holds {ip} (is the agent in the target's?)",
                    l.address
                )),
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
        if self.devs.is_empty() {
            return;
        }
        let present = parse_proc_net_dev(
            &std::fs::read_to_string("/proc/thread-self/net/dev").unwrap_or_default(),
        );
        self.absent = self
            .devs
            .iter()
            .filter(|d| !present.iter().any(|p| p.name == d.name))
            .map(|d| d.name.clone())
            .collect();
        match rtnl::Rtnl::open() {
            Ok(rt) => self.rtnl = Some(rt),
            Err(e) => self.rtnl_error = Some(format!("no rtnetlink socket ({e})")),
        }
        // One query now, so the capability line can say whether qdisc statistics flow.
        let _ = self.root_qdiscs();
    }

    fn collect(&mut self, _info: &TargetInfo, sample: &mut Sample) {
        if self.devs.is_empty() {
            return;
        }
        let dev_text = std::fs::read_to_string("/proc/thread-self/net/dev").unwrap_or_default();
        let counters = parse_proc_net_dev(&dev_text);
        let roots = self.root_qdiscs();
        for (i, root) in roots.into_iter().enumerate() {
            let name = self.devs[i].name.clone();
            let Some(c) = counters.iter().find(|c| c.name == name) else {
                continue; // gone (or renamed): nothing to report this tick
            };
            let mut s = c.clone();
            s.speed_mbps = link_speed(&name);
            self.fill_qdisc(i, root, &mut s);
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

    fn nl_header(ty: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(&0u16.to_ne_bytes());
        v.extend_from_slice(&seq.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn tbf_message(seq: u32, ifindex: i32) -> Vec<u8> {
        use rtnl::build::{attr, message};
        let mut qopt = vec![0u8; 36];
        qopt[8..12].copy_from_slice(&12_500_000u32.to_ne_bytes());
        let mut queue = vec![0u8; 20];
        queue[4..8].copy_from_slice(&1500u32.to_ne_bytes());
        queue[8..12].copy_from_slice(&3u32.to_ne_bytes());
        queue[16..20].copy_from_slice(&4u32.to_ne_bytes());
        let attrs = [
            attr(1, b"tbf\0"),
            attr(2 | 0x8000, &attr(1, &qopt)),
            attr(7 | 0x8000, &attr(3, &queue)),
        ]
        .concat();
        message(36, seq, ifindex, 0x8001_0000, rtnl::TC_H_ROOT, &attrs)
    }

    #[test]
    fn rtnl_tbf_qdisc_dump() {
        let buf = [
            tbf_message(5, 7),
            tbf_message(4, 8), // another request's: ignored
            nl_header(3, 5, &0u32.to_ne_bytes()),
        ]
        .concat();
        let mut got = Vec::new();
        let done = rtnl::walk(&buf, 5, &mut |_, tc, a| got.push(rtnl::parse_qdisc(tc, a)))
            .expect("well-formed dump");
        assert!(done, "NLMSG_DONE ends the dump");
        assert_eq!(
            got,
            vec![rtnl::Qdisc {
                ifindex: 7,
                handle: 0x8001_0000,
                parent: rtnl::TC_H_ROOT,
                kind: "tbf".into(),
                backlog: 1500,
                drops: 3,
                overlimits: 4,
                rate: Some(12_500_000),
            }]
        );
        // A datagram cut short is an error, not a panic.
        let mut n = 0;
        assert!(rtnl::walk(&buf[..40], 5, &mut |_, _, _| n += 1).is_err());
        // Without DONE the dump continues in the next datagram.
        assert!(!rtnl::walk(&tbf_message(5, 7), 5, &mut |_, _, _| n += 1).expect("one message"));
    }

    #[test]
    fn rtnl_htb_class_prefers_64_bit_rates() {
        use rtnl::build::{attr, message};
        let mut opt = vec![0u8; 44];
        opt[8..12].copy_from_slice(&1_000u32.to_ne_bytes());
        opt[20..24].copy_from_slice(&u32::MAX.to_ne_bytes());
        let options = [attr(1, &opt), attr(7, &10_000_000_000u64.to_ne_bytes())].concat();
        let attrs = [attr(1, b"htb\0"), attr(2 | 0x8000, &options)].concat();
        let m = message(40, 9, 3, 0x0001_0010, rtnl::TC_H_ROOT, &attrs);
        let mut got = Vec::new();
        rtnl::walk(&m, 9, &mut |_, tc, a| got.push(rtnl::parse_class(tc, a))).expect("class");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].kind, "htb");
        assert_eq!(got[0].rate, Some(1_000));
        assert_eq!(
            got[0].ceil,
            Some(10_000_000_000),
            "TCA_HTB_CEIL64 wins over the u32"
        );
    }

    #[test]
    fn rtnl_error_reply_is_an_errno() {
        let e = rtnl::walk(
            &nl_header(2, 1, &(-1i32).to_ne_bytes()),
            1,
            &mut |_, _, _| {},
        )
        .expect_err("EPERM");
        assert_eq!(e.raw_os_error(), Some(1));
        assert!(
            rtnl::walk(&nl_header(2, 1, &0i32.to_ne_bytes()), 1, &mut |_, _, _| {}).expect("ack")
        );
    }

    #[test]
    fn rtnl_attributes_stop_at_garbage() {
        assert_eq!(rtnl::attrs(&[0xff, 0xff, 1, 0]).count(), 0);
        assert_eq!(rtnl::attrs(&[2, 0, 1, 0]).count(), 0);
        let two = [rtnl::build::attr(1, b"ab"), rtnl::build::attr(2, b"")].concat();
        let v: Vec<_> = rtnl::attrs(&two).collect();
        assert_eq!(v, vec![(1, &b"ab"[..]), (2, &b""[..])]);
    }

    #[test]
    fn rtnl_request_layout() {
        let r = rtnl::request(38, 7, 0);
        assert_eq!(r.len(), 36);
        assert_eq!(u32::from_ne_bytes(r[0..4].try_into().expect("4")), 36);
        assert_eq!(u16::from_ne_bytes(r[4..6].try_into().expect("2")), 38);
        assert_eq!(u16::from_ne_bytes(r[6..8].try_into().expect("2")), 0x301);
        assert_eq!(u32::from_ne_bytes(r[8..12].try_into().expect("4")), 7);
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

/// rtnetlink queries for qdiscs and classes (what `tc -s qdisc show` asks the kernel), so a tick
/// costs one dump on an already open socket instead of a `tc` process per device.
///
/// The socket belongs to the network namespace of the thread that opened it. Messages are
/// native-endian C structs (`nlmsghdr`, `tcmsg`, `rtattr`); every length is checked before use,
/// so a short or odd reply is an error, never a panic.
mod rtnl {
    use std::io;
    use std::os::fd::OwnedFd;
    use std::time::Duration;

    use rustix::net::sockopt::{set_socket_timeout, Timeout};
    use rustix::net::{socket, AddressFamily, SocketType};

    const NLMSG_HDR: usize = 16;
    const TCMSG: usize = 20;
    const NLM_F_REQUEST: u16 = 0x1;
    const NLM_F_DUMP: u16 = 0x300;
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    const RTM_NEWQDISC: u16 = 36;
    const RTM_GETQDISC: u16 = 38;
    const RTM_NEWTCLASS: u16 = 40;
    const RTM_GETTCLASS: u16 = 42;
    const TCA_KIND: u16 = 1;
    const TCA_OPTIONS: u16 = 2;
    const TCA_STATS2: u16 = 7;
    const TCA_STATS_QUEUE: u16 = 3;
    const TCA_TBF_PARMS: u16 = 1;
    const TCA_TBF_RATE64: u16 = 4;
    const TCA_HTB_PARMS: u16 = 1;
    const TCA_HTB_RATE64: u16 = 6;
    const TCA_HTB_CEIL64: u16 = 7;
    /// `TC_H_ROOT`: the parent of a root qdisc and of an htb top-level class.
    pub(super) const TC_H_ROOT: u32 = 0xffff_ffff;

    /// A qdisc as the kernel reports it.
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub(super) struct Qdisc {
        pub ifindex: i32,
        pub handle: u32,
        pub parent: u32,
        pub kind: String,
        pub backlog: u64,
        pub drops: u64,
        pub overlimits: u64,
        /// tbf rate, bytes/s.
        pub rate: Option<u64>,
    }

    /// A traffic class (htb).
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub(super) struct Class {
        pub handle: u32,
        pub parent: u32,
        pub kind: String,
        /// Guaranteed rate, bytes/s.
        pub rate: Option<u64>,
        /// Ceiling, bytes/s.
        pub ceil: Option<u64>,
    }

    /// An open `NETLINK_ROUTE` socket.
    pub(super) struct Rtnl {
        fd: OwnedFd,
        seq: u32,
        buf: Vec<u8>,
    }

    impl Rtnl {
        pub(super) fn open() -> io::Result<Rtnl> {
            let fd = socket(AddressFamily::NETLINK, SocketType::RAW, None)?;
            // A reply never takes long; if the kernel does not answer, give the tick back.
            set_socket_timeout(&fd, Timeout::Recv, Some(Duration::from_millis(500)))?;
            Ok(Rtnl {
                fd,
                seq: 0,
                buf: vec![0; 64 * 1024],
            })
        }

        /// Every qdisc of the namespace (the kernel ignores the ifindex of a qdisc dump).
        pub(super) fn qdiscs(&mut self) -> io::Result<Vec<Qdisc>> {
            let mut out = Vec::new();
            self.dump(RTM_GETQDISC, 0, |ty, tc, attrs| {
                if ty == RTM_NEWQDISC {
                    out.push(parse_qdisc(tc, attrs));
                }
            })?;
            Ok(out)
        }

        /// The classes of one device.
        pub(super) fn classes(&mut self, ifindex: i32) -> io::Result<Vec<Class>> {
            let mut out = Vec::new();
            self.dump(RTM_GETTCLASS, ifindex, |ty, tc, attrs| {
                if ty == RTM_NEWTCLASS {
                    out.push(parse_class(tc, attrs));
                }
            })?;
            Ok(out)
        }

        fn dump(
            &mut self,
            msg_type: u16,
            ifindex: i32,
            mut each: impl FnMut(u16, &TcMsg, &[u8]),
        ) -> io::Result<()> {
            self.seq = self.seq.wrapping_add(1);
            let req = request(msg_type, self.seq, ifindex);
            rustix::io::write(&self.fd, &req)?;
            loop {
                let n = rustix::io::read(&self.fd, &mut self.buf[..])?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "netlink closed",
                    ));
                }
                if walk(&self.buf[..n], self.seq, &mut each)? {
                    return Ok(());
                }
            }
        }
    }

    /// `nlmsghdr` + `tcmsg` asking for a dump.
    pub(super) fn request(msg_type: u16, seq: u32, ifindex: i32) -> Vec<u8> {
        let len = (NLMSG_HDR + TCMSG) as u32;
        let mut m = Vec::with_capacity(len as usize);
        m.extend_from_slice(&len.to_ne_bytes());
        m.extend_from_slice(&msg_type.to_ne_bytes());
        m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
        m.extend_from_slice(&[0u8; 4]); // family (AF_UNSPEC), padding
        m.extend_from_slice(&ifindex.to_ne_bytes());
        m.extend_from_slice(&[0u8; 12]); // handle, parent, info
        m
    }

    /// The fixed part of a traffic-control message.
    #[derive(Debug, Default, PartialEq, Eq)]
    pub(super) struct TcMsg {
        pub ifindex: i32,
        pub handle: u32,
        pub parent: u32,
    }

    fn u16_at(b: &[u8], at: usize) -> Option<u16> {
        Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
    }

    fn u32_at(b: &[u8], at: usize) -> Option<u32> {
        Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
    }

    fn u64_at(b: &[u8], at: usize) -> Option<u64> {
        Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
    }

    fn bad(what: &str) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, format!("netlink: {what}"))
    }

    /// Walks one datagram of netlink messages; `Ok(true)` at the end of the dump.
    pub(super) fn walk(
        mut b: &[u8],
        seq: u32,
        each: &mut impl FnMut(u16, &TcMsg, &[u8]),
    ) -> io::Result<bool> {
        while b.len() >= NLMSG_HDR {
            let len = u32_at(b, 0).ok_or_else(|| bad("short header"))? as usize;
            let ty = u16_at(b, 4).ok_or_else(|| bad("short header"))?;
            let mseq = u32_at(b, 8).ok_or_else(|| bad("short header"))?;
            if len < NLMSG_HDR || len > b.len() {
                return Err(bad("message length out of bounds"));
            }
            let body = &b[NLMSG_HDR..len];
            if mseq == seq {
                match ty {
                    NLMSG_DONE => return Ok(true),
                    NLMSG_ERROR => {
                        let code = u32_at(body, 0).ok_or_else(|| bad("short error"))? as i32;
                        if code == 0 {
                            return Ok(true); // an acknowledgement
                        }
                        return Err(io::Error::from_raw_os_error(-code));
                    }
                    _ if body.len() >= TCMSG => {
                        let tc = TcMsg {
                            ifindex: u32_at(body, 4).unwrap_or(0) as i32,
                            handle: u32_at(body, 8).unwrap_or(0),
                            parent: u32_at(body, 12).unwrap_or(0),
                        };
                        each(ty, &tc, &body[TCMSG..]);
                    }
                    _ => return Err(bad("short tcmsg")),
                }
            }
            let next = (len + 3) & !3;
            b = b.get(next..).unwrap_or(&[]);
        }
        Ok(false)
    }

    /// `rtattr`s: `(type, payload)`, the nested flag masked off.
    pub(super) fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
        std::iter::from_fn(move || {
            let len = u16_at(b, 0)? as usize;
            let ty = u16_at(b, 2)? & 0x3fff;
            if len < 4 || len > b.len() {
                return None;
            }
            let payload = &b[4..len];
            b = b.get((len + 3) & !3..).unwrap_or(&[]);
            Some((ty, payload))
        })
    }

    fn kind(payload: &[u8]) -> String {
        let end = payload
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(payload.len());
        String::from_utf8_lossy(&payload[..end]).into_owned()
    }

    pub(super) fn parse_qdisc(tc: &TcMsg, a: &[u8]) -> Qdisc {
        let mut q = Qdisc {
            ifindex: tc.ifindex,
            handle: tc.handle,
            parent: tc.parent,
            ..Qdisc::default()
        };
        let mut options: &[u8] = &[];
        for (ty, p) in attrs(a) {
            match ty {
                TCA_KIND => q.kind = kind(p),
                TCA_OPTIONS => options = p,
                TCA_STATS2 => {
                    for (sty, sp) in attrs(p) {
                        if sty == TCA_STATS_QUEUE {
                            // gnet_stats_queue { qlen, backlog, drops, requeues, overlimits }
                            q.backlog = u32_at(sp, 4).map_or(0, u64::from);
                            q.drops = u32_at(sp, 8).map_or(0, u64::from);
                            q.overlimits = u32_at(sp, 16).map_or(0, u64::from);
                        }
                    }
                }
                _ => {}
            }
        }
        if q.kind == "tbf" {
            let mut rate = None;
            for (ty, p) in attrs(options) {
                match ty {
                    // tc_tbf_qopt starts with tc_ratespec { .., u32 rate at 8 }
                    TCA_TBF_PARMS => rate = rate.or(u32_at(p, 8).map(u64::from)),
                    TCA_TBF_RATE64 => rate = u64_at(p, 0).or(rate),
                    _ => {}
                }
            }
            q.rate = rate;
        }
        q
    }

    pub(super) fn parse_class(tc: &TcMsg, a: &[u8]) -> Class {
        let mut c = Class {
            handle: tc.handle,
            parent: tc.parent,
            ..Class::default()
        };
        let mut options: &[u8] = &[];
        for (ty, p) in attrs(a) {
            match ty {
                TCA_KIND => c.kind = kind(p),
                TCA_OPTIONS => options = p,
                _ => {}
            }
        }
        if c.kind == "htb" {
            let (mut rate64, mut ceil64) = (None, None);
            for (ty, p) in attrs(options) {
                match ty {
                    // tc_htb_opt { tc_ratespec rate; tc_ratespec ceil; .. }, 12 bytes each
                    TCA_HTB_PARMS => {
                        c.rate = u32_at(p, 8).map(u64::from);
                        c.ceil = u32_at(p, 20).map(u64::from);
                    }
                    TCA_HTB_RATE64 => rate64 = u64_at(p, 0),
                    TCA_HTB_CEIL64 => ceil64 = u64_at(p, 0),
                    _ => {}
                }
            }
            c.rate = rate64.or(c.rate);
            c.ceil = ceil64.or(c.ceil);
        }
        c
    }

    #[cfg(test)]
    pub(super) mod build {
        //! Builders for synthetic replies (tests).
        pub fn attr(ty: u16, payload: &[u8]) -> Vec<u8> {
            let mut v = Vec::new();
            v.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
            v.extend_from_slice(&ty.to_ne_bytes());
            v.extend_from_slice(payload);
            while v.len() % 4 != 0 {
                v.push(0);
            }
            v
        }

        pub fn message(
            ty: u16,
            seq: u32,
            ifindex: i32,
            handle: u32,
            parent: u32,
            attrs: &[u8],
        ) -> Vec<u8> {
            let len = 16 + 20 + attrs.len();
            let mut v = Vec::new();
            v.extend_from_slice(&(len as u32).to_ne_bytes());
            v.extend_from_slice(&ty.to_ne_bytes());
            v.extend_from_slice(&2u16.to_ne_bytes());
            v.extend_from_slice(&seq.to_ne_bytes());
            v.extend_from_slice(&0u32.to_ne_bytes());
            v.extend_from_slice(&[0u8; 4]);
            v.extend_from_slice(&ifindex.to_ne_bytes());
            v.extend_from_slice(&handle.to_ne_bytes());
            v.extend_from_slice(&parent.to_ne_bytes());
            v.extend_from_slice(&0u32.to_ne_bytes());
            v.extend_from_slice(attrs);
            v
        }
    }
}
