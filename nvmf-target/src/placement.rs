//! Connection placement (DESIGN §2): which reactor a new connection goes to, for the TCP
//! acceptor and the rdma-cm thread alike.
//!
//! Threading: one [`Placer`] per target, shared by the acceptor and the rdma-cm thread; `pick`
//! takes `&self` (a relaxed atomic rotor) and reads the reactors' live connection counts through
//! the closure it is given, so it never blocks a reactor. Policies:
//! * round-robin: the next reactor in the core list;
//! * least-loaded: the reactor with the fewest live connections (ties rotate);
//! * NUMA-local: least loaded among the reactors on the NUMA node of the listener's NIC; every
//!   reactor when the node is unknown or has no reactor (a one-node machine, loopback).
//!
//! The NIC's node comes from sysfs: the netdev that carries the listener's address (longest
//! prefix in `/proc/net/route`, `lo` for loopback), then `/sys/class/net/<dev>/device/numa_node`.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::config::Placement;

/// Picks reactors for new connections.
#[derive(Debug)]
pub struct Placer {
    policy: Placement,
    /// NUMA node of each reactor's core, when known.
    reactor_nodes: Vec<Option<u32>>,
    rotor: AtomicUsize,
}

impl Placer {
    /// A placer over reactors whose cores sit on `reactor_nodes` (index order).
    pub fn new(policy: Placement, reactor_nodes: Vec<Option<u32>>) -> Placer {
        Placer {
            policy,
            reactor_nodes,
            rotor: AtomicUsize::new(0),
        }
    }

    /// The reactor for a connection that arrived on a listener whose NIC is on `nic_node`;
    /// `load(i)` is reactor `i`'s number of live connections.
    pub fn pick(&self, nic_node: Option<u32>, load: impl Fn(usize) -> u64) -> usize {
        let n = self.reactor_nodes.len().max(1);
        let start = self.rotor.fetch_add(1, Ordering::Relaxed);
        let least = |eligible: &dyn Fn(usize) -> bool| {
            (0..n)
                .map(|k| (start + k) % n)
                .filter(|&i| eligible(i))
                .min_by_key(|&i| load(i))
        };
        match self.policy {
            Placement::RoundRobin => start % n,
            Placement::LeastLoaded => least(&|_| true).unwrap_or(0),
            Placement::NumaLocal => {
                let local = |i: usize| {
                    nic_node.is_some() && self.reactor_nodes.get(i).copied().flatten() == nic_node
                };
                least(&local).or_else(|| least(&|_| true)).unwrap_or(0)
            }
        }
    }
}

/// The NUMA nodes of the reactors on `cores`, sorted, for binding memory they all use (a malloc
/// namespace). `Err` (one lowercase line, to print once) when the machine has a single node:
/// there is nothing to choose.
pub fn reactor_memory_nodes(cores: &[usize]) -> Result<Vec<u32>, String> {
    let nodes = std::fs::read_dir("/sys/devices/system/node")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_prefix("node"))
                        .is_some_and(|n| n.parse::<u32>().is_ok())
                })
                .count()
        })
        .unwrap_or(0);
    if nodes < 2 {
        return Err(format!(
            "{nodes} numa node(s): namespace memory left to the kernel's default placement"
        ));
    }
    let mut v: Vec<u32> = cores.iter().filter_map(|&c| numa_node_of_cpu(c)).collect();
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

/// NUMA node of a CPU, from sysfs.
pub fn numa_node_of_cpu(core: usize) -> Option<u32> {
    let dir = std::fs::read_dir(format!("/sys/devices/system/cpu/cpu{core}")).ok()?;
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("node")?.parse().ok())
        .next()
}

/// The netdev carrying `addr`: `lo` for loopback, else the interface of the longest matching
/// prefix in the IPv4 routing table (`None` for a wildcard or an IPv6 address).
pub fn netdev_of(addr: &SocketAddr) -> Option<String> {
    if addr.ip().is_loopback() {
        return Some("lo".into());
    }
    let IpAddr::V4(ip) = addr.ip() else {
        return None;
    };
    if ip.is_unspecified() {
        return None;
    }
    let routes = std::fs::read_to_string("/proc/net/route").ok()?;
    route_dev(&routes, u32::from(ip))
}

/// Longest-prefix match of `ip` (host order) in the text of `/proc/net/route` (destination and
/// mask are little-endian hex), ignoring the default route.
fn route_dev(routes: &str, ip: u32) -> Option<String> {
    routes
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dest = u32::from_str_radix(f.get(1)?, 16).ok()?.swap_bytes();
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?.swap_bytes();
            (mask != 0 && ip & mask == dest).then(|| (mask.count_ones(), f[0].to_string()))
        })
        .max_by_key(|(bits, _)| *bits)
        .map(|(_, dev)| dev)
}

/// NUMA node of a netdev's PCI device (`None` for virtual devices and unknown nodes).
pub fn numa_node_of_netdev(dev: &str) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/sys/class/net/{dev}/device/numa_node")).ok()?;
    s.trim()
        .parse::<i64>()
        .ok()
        .and_then(|n| u32::try_from(n).ok())
}

/// NUMA node of the NIC behind a listener's address.
pub fn nic_node_of(addr: &SocketAddr) -> Option<u32> {
    netdev_of(addr).and_then(|d| numa_node_of_netdev(&d))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recorded two-node machine: reactors on cores 0, 1 (node 0) and 4, 5 (node 1).
    fn two_nodes(policy: Placement) -> Placer {
        Placer::new(policy, vec![Some(0), Some(0), Some(1), Some(1)])
    }

    #[test]
    fn round_robin_takes_each_reactor_in_turn() {
        let p = two_nodes(Placement::RoundRobin);
        let picks: Vec<usize> = (0..6).map(|_| p.pick(Some(1), |_| 0)).collect();
        assert_eq!(picks, [0, 1, 2, 3, 0, 1]);
    }

    #[test]
    fn least_loaded_takes_the_emptiest_reactor() {
        let p = two_nodes(Placement::LeastLoaded);
        let load = [3, 1, 2, 5];
        assert_eq!(p.pick(None, |i| load[i]), 1);
        let mut load = [0u64; 4];
        for _ in 0..8 {
            let i = p.pick(None, |i| load[i]);
            load[i] += 1;
        }
        assert_eq!(
            load,
            [2, 2, 2, 2],
            "ties rotate, so connections spread evenly"
        );
    }

    #[test]
    fn numa_local_keeps_connections_on_the_nics_node() {
        let p = two_nodes(Placement::NumaLocal);
        let mut load = [0u64; 4];
        for _ in 0..6 {
            let i = p.pick(Some(1), |i| load[i]);
            load[i] += 1;
        }
        assert_eq!(load, [0, 0, 3, 3], "NIC on node 1: only reactors 2 and 3");
        // A node without reactors, or no node known: every reactor, least loaded first.
        assert_eq!(p.pick(Some(7), |i| load[i]), 0);
        assert_eq!(p.pick(None, |i| [1, 0, 3, 3][i]), 1);
        // Reactor nodes unknown (no sysfs): falls back to least loaded.
        let q = Placer::new(Placement::NumaLocal, vec![None, None]);
        assert_eq!(q.pick(Some(0), |i| [4, 2][i]), 1);
    }

    #[test]
    fn routes_match_the_longest_prefix() {
        let routes =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
            eth0\t0000000A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n\
            rxe1\t0001000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        let ip = |s: &str| u32::from(s.parse::<std::net::Ipv4Addr>().expect("ip"));
        assert_eq!(route_dev(routes, ip("10.0.1.5")).as_deref(), Some("rxe1"));
        assert_eq!(route_dev(routes, ip("10.0.2.5")).as_deref(), Some("eth0"));
        assert_eq!(
            route_dev(routes, ip("192.168.1.1")),
            None,
            "not via the default route"
        );
    }
}
