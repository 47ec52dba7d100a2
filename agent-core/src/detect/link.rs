//! Link saturation: a listener's link carries close to its capacity (link speed, or the egress
//! shaping rate of a tbf/htb root qdisc when lower), or its shaper queues and drops, with TCP
//! retransmits as corroboration. When the link is full, a faster target changes nothing: the
//! answer is more links, a faster one, or less shaping.
//!
//! A netdev without a known capacity (`lo`, or a device reporting no speed and not shaped) is
//! never judged. Only the listeners' netdevs are judged when the target names them.
//!
//! RDMA ports: on a hardware RoCE or InfiniBand port the NIC moves RDMA traffic itself, so the
//! netdev's counters never see it; the port's own counters (`port_xmit_data`/`port_rcv_data`)
//! against its data rate decide, with the subject [`Subject::RdmaPort`]. The port also shows
//! trouble a netdev cannot: retransmits, NAKs, ACK timeouts and sequence errors in its
//! `hw_counters`, transmit discards, and transmit-wait (no flow-control credits). A software
//! device (rxe, siw) sends through its netdev, whose counters already count every byte: its port
//! is never judged on its own (that would count the traffic twice); its retransmit-class counters
//! become evidence of the netdev's finding instead.
//!
//! Cost ([`cost`]): what the target would serve without the link's limit is what its reactors
//! can serve: each reactor carrying I/O serves `iops / busy` at full load, so the share of IOPS
//! the link takes is `1 - iops / Σ(iops / busy)`. A link that is full while the reactors are
//! saturated too costs nothing more than they do (info: both limits meet). Without reactor
//! figures the cost is not measured and the rule is explicit: critical with drops or
//! retransmits, warning without. Stateless; pure.

use super::{carries_io, costed, margin, pct, unmeasured, Context, Detector};
use crate::finding::{Cost, Evidence, Finding, FindingKind, Severity, Subject};
use crate::window::{NetdevWindow, RdmaPortWindow, Window};

/// Utilisation at which the link is the limit: TCP/IP and NVMe/TCP headers plus ACK traffic
/// keep goodput a few % under line rate, so 90 % of capacity is as full as a link gets.
pub const SATURATED_UTILISATION: f64 = 0.9;

/// Shaper throttling events per second that, with a standing backlog, mean the shaper is holding
/// traffic back (a shaper that never throttles reports 0; a few per second are bursts).
pub const OVERLIMITS_PER_S: f64 = 50.0;

/// Utilisation below which shaper throttling alone is not judged: bursts of an otherwise light
/// link hit a tbf bucket without the link being the limit.
pub const THROTTLED_MIN_UTILISATION: f64 = 0.5;

/// Raises [`FindingKind::LinkSaturation`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Link;

fn rate_text(bytes_per_s: f64) -> String {
    if bytes_per_s >= 1e9 {
        format!("{:.2} GB/s", bytes_per_s / 1e9)
    } else {
        format!("{:.0} MB/s", bytes_per_s / 1e6)
    }
}

impl Detector for Link {
    fn name(&self) -> &'static str {
        "link"
    }

    fn observe(&mut self, w: &Window, ctx: &Context<'_>, out: &mut Vec<Finding>) {
        let named: Vec<&str> = ctx
            .info
            .listeners
            .iter()
            .filter_map(|l| l.netdev.as_deref())
            .collect();
        for n in &w.netdevs {
            if !named.is_empty() && !named.contains(&n.name.as_str()) {
                continue;
            }
            if let Some(f) = judge(n, w) {
                out.push(f);
            }
        }
        for p in &w.rdma_ports {
            // A port whose netdev is known and carries no listener is not the target's.
            let foreign = p
                .netdev
                .as_deref()
                .is_some_and(|nd| !named.is_empty() && !named.contains(&nd));
            if foreign {
                continue;
            }
            if let Some(f) = judge_port(p, w) {
                out.push(f);
            }
        }
    }
}

/// The share of the target's IOPS a full link takes: the reactors' headroom (see the module
/// doc). `None` without a reactor that carries I/O with a busy share.
pub fn cost(w: &Window) -> Option<Cost> {
    let (mut iops, mut capacity) = (0.0, 0.0);
    for r in w
        .reactors
        .iter()
        .filter(|r| carries_io(r) && r.busy_ratio > 0.0 && r.busy_ratio.is_finite())
    {
        iops += r.iops;
        capacity += r.iops / r.busy_ratio.min(1.0);
    }
    if !(capacity > 0.0) {
        return None;
    }
    let lost = (1.0 - iops / capacity).max(0.0);
    Some(Cost {
        iops_share: Some(lost),
        latency_share: None,
        added_latency_ns: None,
        basis: format!(
            "the reactors serve {} of what they could at full load (IOPS / busy share): the \
             rest is what the link holds back",
            pct(1.0 - lost)
        ),
    })
}

/// The finding, its severity from [`cost`] when the window measures one, else from the rule
/// `unmeasured_severity` (the module doc).
fn costed_or_rule(
    w: &Window,
    unmeasured_severity: Severity,
    subject: Subject,
    summary: String,
    evidence: Vec<Evidence>,
    confidence: f64,
) -> Finding {
    let kind = FindingKind::LinkSaturation;
    match cost(w) {
        Some(c) => {
            let summary = if c.severity() == Severity::Info {
                format!(
                    "{summary}; the reactors are saturated too, so a faster link alone gains \
                     little"
                )
            } else {
                summary
            };
            costed(kind, c, subject, summary, evidence, w, confidence)
        }
        None => unmeasured(
            kind,
            unmeasured_severity,
            "no reactor busy figures, so what the target could serve beyond the link is not \
             known (critical with drops or retransmits, else warning)"
                .into(),
            subject,
            summary,
            evidence,
            w,
            confidence,
        ),
    }
}

/// A link-limit reading: capacity (bytes/s), utilisation, and the three ways a link shows it is
/// the limit.
struct Reading {
    capacity: f64,
    util: f64,
    full: bool,
    dropping: bool,
    throttled: bool,
}

/// `None` when the netdev has no known capacity or carries nothing.
fn read(n: &NetdevWindow) -> Option<Reading> {
    let capacity = n
        .capacity_bytes_per_s
        .filter(|c| c.is_finite() && *c > 0.0)?;
    let util = n.utilisation.filter(|u| u.is_finite())?;
    let throughput = n.rx_bytes_per_s.max(n.tx_bytes_per_s);
    if !(throughput > 0.0) {
        return None;
    }
    Some(Reading {
        capacity,
        util,
        full: util >= SATURATED_UTILISATION,
        dropping: n.qdisc_drops > 0,
        throttled: n.qdisc_overlimits_per_s >= OVERLIMITS_PER_S
            && n.qdisc_backlog_bytes > 0
            && util >= THROTTLED_MIN_UTILISATION,
    })
}

/// Whether this netdev limits throughput in the window (other detectors stand back then).
pub fn limits(n: &NetdevWindow) -> bool {
    read(n).is_some_and(|r| r.full || r.dropping || r.throttled)
}

/// A hardware RDMA port's link-limit reading: capacity, utilisation, and whether it is full or
/// shows trouble while busy.
struct PortReading {
    capacity: f64,
    util: f64,
    throughput: f64,
    full: bool,
    troubled: bool,
}

/// `None` for a software port, a port without a known rate or byte counters, or an idle one.
fn read_port(p: &RdmaPortWindow) -> Option<PortReading> {
    if p.soft {
        return None;
    }
    let capacity = p
        .capacity_bytes_per_s
        .filter(|c| c.is_finite() && *c > 0.0)?;
    let util = p.utilisation.filter(|u| u.is_finite())?;
    let throughput = p
        .tx_bytes_per_s
        .unwrap_or(0.0)
        .max(p.rx_bytes_per_s.unwrap_or(0.0));
    if !(throughput > 0.0) {
        return None;
    }
    let trouble = p.retransmit_events() > 0
        || p.xmit_discards.is_some_and(|d| d > 0)
        || p.xmit_wait.is_some_and(|t| t > 0);
    Some(PortReading {
        capacity,
        util,
        throughput,
        full: util >= SATURATED_UTILISATION,
        troubled: trouble && util >= THROTTLED_MIN_UTILISATION,
    })
}

/// Whether this hardware RDMA port limits throughput in the window.
pub fn port_limits(p: &RdmaPortWindow) -> bool {
    read_port(p).is_some_and(|r| r.full || r.troubled)
}

/// Evidence of a port's retransmit-class counters, transmit discards and waits in the window.
fn port_trouble_evidence(p: &RdmaPortWindow) -> Vec<Evidence> {
    let mut e: Vec<Evidence> = p
        .retransmits
        .iter()
        .map(|(k, v)| Evidence::new(format!("{} {k}", p.device), *v as f64, ""))
        .collect();
    if let Some(d) = p.xmit_discards.filter(|d| *d > 0) {
        e.push(Evidence::new(
            format!("{} transmit discards", p.device),
            d as f64,
            "",
        ));
    }
    if let Some(t) = p.xmit_wait.filter(|t| *t > 0) {
        e.push(Evidence::new(
            format!("{} transmit wait", p.device),
            t as f64,
            "ticks",
        ));
    }
    e
}

fn judge_port(p: &RdmaPortWindow, w: &Window) -> Option<Finding> {
    let PortReading {
        capacity,
        util,
        throughput,
        full,
        troubled,
    } = read_port(p)?;
    if !full && !troubled {
        return None;
    }
    let trouble = port_trouble_evidence(p);
    let rate = p.rate_bits_per_s.map_or_else(
        || format!("capacity {}", rate_text(capacity)),
        |r| format!("a {} Gb/s port", fmt_gbits(r)),
    );
    let via = p
        .netdev
        .as_deref()
        .map(|n| format!(" ({n})"))
        .unwrap_or_default();
    let also = if trouble.is_empty() {
        String::new()
    } else {
        let events = p.retransmit_events();
        let mut parts = Vec::new();
        if events > 0 {
            parts.push(format!("{events} retransmit/NAK/timeout events"));
        }
        if p.xmit_discards.is_some_and(|d| d > 0) {
            parts.push("transmit discards".to_string());
        }
        if p.xmit_wait.is_some_and(|t| t > 0) {
            parts.push("transmit waits for credits".to_string());
        }
        format!(", {}", parts.join(", "))
    };
    let mut evidence = vec![
        Evidence::new("throughput", throughput / 1e6, "MB/s"),
        Evidence::new("capacity", capacity / 1e6, "MB/s"),
        Evidence::new("utilisation", util * 100.0, "%"),
    ];
    if let Some(t) = p.tx_bytes_per_s {
        evidence.push(Evidence::new("transmit", t / 1e6, "MB/s"));
    }
    if let Some(r) = p.rx_bytes_per_s {
        evidence.push(Evidence::new("receive", r / 1e6, "MB/s"));
    }
    evidence.extend(trouble.iter().cloned());
    let severity = if trouble.is_empty() {
        Severity::Warning
    } else {
        Severity::Critical
    };
    let mut confidence = if full {
        margin(util, SATURATED_UTILISATION, 1.0)
    } else {
        0.6
    };
    if !trouble.is_empty() {
        confidence = (confidence + 0.1).min(1.0);
    }
    Some(costed_or_rule(
        w,
        severity,
        Subject::RdmaPort {
            device: p.device.clone(),
            port: p.port,
        },
        format!(
            "RDMA port {}/{}{via} carries {} of {rate} ({}){also}: the link, not the target, \
             limits throughput",
            p.device,
            p.port,
            rate_text(throughput),
            pct(util)
        ),
        evidence,
        confidence,
    ))
}

/// `25`, `56`, `12.5` (Gb/s).
fn fmt_gbits(bits: u64) -> String {
    let g = bits as f64 / 1e9;
    if (g - g.round()).abs() < 0.05 {
        format!("{g:.0}")
    } else {
        format!("{g:.1}")
    }
}

fn judge(n: &NetdevWindow, w: &Window) -> Option<Finding> {
    let Reading {
        capacity,
        util,
        full,
        dropping,
        throttled,
    } = read(n)?;
    if !full && !dropping && !throttled {
        return None;
    }
    let throughput = n.rx_bytes_per_s.max(n.tx_bytes_per_s);
    let retransmits = w.tcp_retransmits.unwrap_or(0);
    let shaped = n
        .shaped_rate_bytes
        .is_some_and(|s| (s as f64) <= capacity * 1.0001);
    let what_limits = if shaped {
        format!("shaped to {}", rate_text(capacity))
    } else {
        match n.speed_mbps {
            Some(m) if m >= 1000 => format!("a {} Gb/s link", m / 1000),
            Some(m) => format!("a {m} Mb/s link"),
            None => format!("capacity {}", rate_text(capacity)),
        }
    };
    let mut also = Vec::new();
    if n.qdisc_backlog_bytes > 0 {
        also.push(format!("{} KiB queued", n.qdisc_backlog_bytes / 1024));
    }
    if n.qdisc_drops > 0 {
        also.push(format!("{} qdisc drops", n.qdisc_drops));
    }
    if retransmits > 0 {
        also.push(format!("{retransmits} TCP retransmits"));
    }
    let mut also = if also.is_empty() {
        String::new()
    } else {
        format!(", {}", also.join(", "))
    };
    let mut evidence = vec![
        Evidence::new("throughput", throughput / 1e6, "MB/s"),
        Evidence::new("capacity", capacity / 1e6, "MB/s"),
        Evidence::new("utilisation", util * 100.0, "%"),
        Evidence::new("qdisc backlog", n.qdisc_backlog_bytes as f64, "B"),
        Evidence::new("qdisc drops", n.qdisc_drops as f64, ""),
        Evidence::new("qdisc overlimits", n.qdisc_overlimits_per_s, "/s"),
        Evidence::new("device drops", n.drops as f64, ""),
    ];
    if let Some(r) = w.tcp_retransmits {
        evidence.push(Evidence::new("TCP retransmits", r as f64, ""));
    }
    // A software RDMA device (rxe, siw) over this netdev: its bytes are already in the netdev's
    // counters; its retransmit-class counters say what the congestion does to RDMA.
    let mut rdma_retransmits = 0u64;
    for p in w
        .rdma_ports
        .iter()
        .filter(|p| p.soft && p.netdev.as_deref() == Some(n.name.as_str()))
    {
        rdma_retransmits = rdma_retransmits.saturating_add(p.retransmit_events());
        evidence.extend(port_trouble_evidence(p));
    }
    if rdma_retransmits > 0 {
        also.push_str(&format!(", {rdma_retransmits} RDMA retransmit/NAK events"));
    }
    let severity = if dropping || retransmits > 0 || n.drops > 0 || rdma_retransmits > 0 {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let mut confidence = if full {
        margin(util, SATURATED_UTILISATION, 1.0)
    } else {
        0.5
    };
    if dropping || throttled {
        confidence = confidence.max(0.8);
    }
    if retransmits > 0 {
        confidence = (confidence + 0.1).min(1.0);
    }
    Some(costed_or_rule(
        w,
        severity,
        Subject::Netdev {
            name: n.name.clone(),
        },
        format!(
            "{} carries {} of {what_limits} ({}){also}: the link, not the target, limits \
             throughput",
            n.name,
            rate_text(throughput),
            pct(util)
        ),
        evidence,
        confidence,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{ListenerInfo, TargetInfo};
    use crate::topology::Topology;
    use crate::window::NetdevWindow;

    fn port(soft: bool, netdev: &str, util: f64) -> RdmaPortWindow {
        let cap = 3_125_000_000.0;
        RdmaPortWindow {
            device: if soft { "rxe0" } else { "mlx5_0" }.into(),
            port: 1,
            soft,
            netdev: Some(netdev.into()),
            rate_bits_per_s: Some(25_000_000_000),
            capacity_bytes_per_s: Some(cap),
            tx_bytes_per_s: Some(util * cap),
            rx_bytes_per_s: Some(1e6),
            utilisation: Some(util),
            retransmits: [("rcvd_seq_err".to_string(), 9)].into_iter().collect(),
            ..RdmaPortWindow::default()
        }
    }

    fn observe(w: &Window, listener_netdev: &str) -> Vec<Finding> {
        let info = TargetInfo {
            listeners: vec![ListenerInfo {
                transport: crate::sample::Transport::Rdma,
                address: "10.0.0.1:4420".into(),
                netdev: Some(listener_netdev.into()),
            }],
            ..TargetInfo::default()
        };
        super::super::observe_one(&mut Link, w, &info, &Topology::default(), &[])
    }

    #[test]
    fn a_full_hardware_port_is_judged_a_soft_one_never() {
        let mut w = Window {
            start_ns: 0,
            end_ns: 1_000_000_000,
            rdma_ports: vec![port(false, "ens1f0", 0.95)],
            ..Window::default()
        };
        let out = observe(&w, "ens1f0");
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(
            out[0].subject,
            Subject::RdmaPort {
                device: "mlx5_0".into(),
                port: 1
            }
        );
        assert_eq!(
            out[0].severity,
            Severity::Critical,
            "retransmits make it critical"
        );
        assert!(port_limits(&w.rdma_ports[0]));

        w.rdma_ports = vec![port(true, "ens1f0", 0.95)];
        assert!(
            observe(&w, "ens1f0").is_empty(),
            "rxe's bytes are its netdev's"
        );
        assert!(!port_limits(&w.rdma_ports[0]));
    }

    #[test]
    fn ports_of_other_netdevs_idle_ports_and_unknown_counters_are_not_judged() {
        let mut w = Window {
            end_ns: 1_000_000_000,
            rdma_ports: vec![port(false, "ens2f0", 0.95)],
            ..Window::default()
        };
        assert!(observe(&w, "ens1f0").is_empty(), "not the listener's port");
        w.rdma_ports = vec![port(false, "ens1f0", 0.3)];
        w.rdma_ports[0].retransmits.clear();
        assert!(observe(&w, "ens1f0").is_empty(), "30 % and clean");
        let mut unknown = port(false, "ens1f0", 0.95);
        unknown.tx_bytes_per_s = None;
        unknown.rx_bytes_per_s = None;
        unknown.utilisation = None;
        w.rdma_ports = vec![unknown];
        assert!(
            observe(&w, "ens1f0").is_empty(),
            "saturated 32-bit counters are no traffic"
        );
    }

    #[test]
    fn a_busy_port_with_retransmits_is_trouble_below_the_saturation_line() {
        let w = Window {
            end_ns: 1_000_000_000,
            rdma_ports: vec![port(false, "ens1f0", 0.6)],
            ..Window::default()
        };
        let out = observe(&w, "ens1f0");
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].summary.contains("retransmit"), "{}", out[0].summary);
    }

    fn shaped(util: f64) -> NetdevWindow {
        NetdevWindow {
            name: "eth0".into(),
            tx_bytes_per_s: util * 1.25e9,
            speed_mbps: Some(10_000),
            capacity_bytes_per_s: Some(1.25e9),
            utilisation: Some(util),
            ..NetdevWindow::default()
        }
    }

    fn reactor(iops: f64, busy: f64) -> crate::window::ReactorWindow {
        crate::window::ReactorWindow {
            iops,
            completions: iops as u64,
            busy_ratio: busy,
            ..Default::default()
        }
    }

    #[test]
    fn a_full_link_costs_the_reactors_headroom() {
        // Two reactors at 40 % and 60 % busy serving 100K each: they could serve 250K + 167K.
        let w = Window {
            end_ns: 1_000_000_000,
            netdevs: vec![shaped(0.95)],
            reactors: vec![reactor(100_000.0, 0.4), reactor(100_000.0, 0.6)],
            ..Window::default()
        };
        let out = observe(&w, "eth0");
        assert_eq!(out.len(), 1, "{out:?}");
        let c = out[0].cost.as_ref().expect("cost");
        let want = 1.0 - 200_000.0 / (250_000.0 + 100_000.0 / 0.6);
        assert!((c.iops_share.unwrap() - want).abs() < 1e-9, "{c:?}");
        assert_eq!(
            out[0].severity,
            Severity::Critical,
            "half the IOPS held back"
        );

        // Reactors saturated as well: the link costs nothing more than they do.
        let w = Window {
            reactors: vec![reactor(100_000.0, 0.99)],
            ..w
        };
        let out = observe(&w, "eth0");
        assert!(out[0].cost.as_ref().unwrap().share() < 0.02);
        assert_eq!(out[0].severity, Severity::Info);
        assert!(
            out[0].summary.contains("reactors are saturated too"),
            "{}",
            out[0].summary
        );
    }

    #[test]
    fn without_reactor_figures_the_cost_is_unmeasured_and_the_rule_is_said() {
        let w = Window {
            end_ns: 1_000_000_000,
            netdevs: vec![shaped(0.95)],
            ..Window::default()
        };
        let out = observe(&w, "eth0");
        let c = out[0].cost.as_ref().expect("cost");
        assert_eq!((c.iops_share, c.latency_share), (None, None));
        assert!(c.basis.starts_with("not measured"), "{}", c.basis);
        assert_eq!(out[0].severity, Severity::Warning, "full, no drops");
    }

    #[test]
    fn a_saturated_netdev_carries_its_soft_rdma_ports_retransmits_as_evidence() {
        let w = Window {
            end_ns: 1_000_000_000,
            netdevs: vec![NetdevWindow {
                name: "eth0".into(),
                tx_bytes_per_s: 1.2e9,
                speed_mbps: Some(10_000),
                capacity_bytes_per_s: Some(1.25e9),
                utilisation: Some(0.96),
                ..NetdevWindow::default()
            }],
            rdma_ports: vec![port(true, "eth0", 0.38)],
            ..Window::default()
        };
        let out = observe(&w, "eth0");
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(
            out[0].subject,
            Subject::Netdev {
                name: "eth0".into()
            }
        );
        assert!(
            out[0]
                .evidence
                .iter()
                .any(|e| e.what == "rxe0 rcvd_seq_err" && e.value == 9.0),
            "{:?}",
            out[0].evidence
        );
        assert!(
            out[0].summary.contains("RDMA retransmit"),
            "{}",
            out[0].summary
        );
    }
}
