//! Link saturation: a listener's link carries close to its capacity (link speed, or the egress
//! shaping rate of a tbf/htb root qdisc when lower), or its shaper queues and drops, with TCP
//! retransmits as corroboration. When the link is full, a faster target changes nothing: the
//! answer is more links, a faster one, or less shaping.
//!
//! A netdev without a known capacity (`lo`, or a device reporting no speed and not shaped) is
//! never judged. Only the listeners' netdevs are judged when the target names them. Stateless;
//! pure.

use super::{candidate, margin, pct, Context, Detector};
use crate::finding::{Evidence, Finding, FindingKind, Severity, Subject};
use crate::window::{NetdevWindow, Window};

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
    let also = if also.is_empty() {
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
    let severity = if dropping || retransmits > 0 || n.drops > 0 {
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
    Some(candidate(
        FindingKind::LinkSaturation,
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
        w,
        confidence,
    ))
}
