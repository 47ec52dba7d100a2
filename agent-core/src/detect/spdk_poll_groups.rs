//! SPDK poll groups: qpairs spread unevenly over the NVMe-oF poll groups, and qpair counts that
//! stayed behind after disconnects (spdk#3137, #2800, #2636; ceph-nvmeof#27: one reactor at
//! 100 %, the other at 9.5 %). SPDK places a new qpair on a poll group by its own counts, so a
//! stale count keeps steering connections away from a group that has room.
//!
//! From `nvmf_get_stats` (`current_io_qpairs` per group) and `nvmf_subsystem_get_qpairs` (the
//! qpairs that really exist, per thread).
//!
//! Cost ([`spread_cost`]): stale counts cost nothing yet (info: they steer the next
//! connections). A spread costs IOPS only while the fullest group is saturated: moving half the
//! spread to the emptiest group frees at least those qpairs' share of the fullest group's IOPS,
//! up to the emptiest group's idle capacity; that gain over the IOPS plus the gain is the share
//! lost. Stateless; pure.

use super::{costed, margin, pct, si, Context, Detector};
use crate::finding::{Cost, Evidence, Finding, FindingKind, Subject};
use crate::spdk::PollGroupWindow;

/// The share of IOPS an uneven spread costs: `hot`/`cold` are the fullest and emptiest groups
/// with their I/O qpair counts and busy shares, `total_iops` all groups' IOPS.
pub fn spread_cost(
    (hot, hot_qpairs, hot_busy): (&PollGroupWindow, u32, f64),
    (cold, cold_qpairs, cold_busy): (&PollGroupWindow, u32, f64),
    total_iops: f64,
) -> Cost {
    if !(hot_busy >= SATURATED_BUSY) || hot_qpairs == 0 {
        return Cost {
            iops_share: Some(0.0),
            latency_share: None,
            added_latency_ns: None,
            basis: format!(
                "the fullest group is {} busy: it serves all its qpairs ask, so the spread costs \
                 no IOPS yet",
                pct(hot_busy)
            ),
        };
    }
    let moved = f64::from((hot_qpairs - cold_qpairs) / 2);
    let freed = hot.iops * moved / f64::from(hot_qpairs);
    // The emptiest group's capacity at its own cost per I/O, or the fullest's when it has none.
    let per_busy = if cold.iops > 0.0 && cold_busy > 0.0 {
        cold.iops / cold_busy
    } else {
        hot.iops / hot_busy.max(f64::MIN_POSITIVE)
    };
    let headroom = per_busy * (1.0 - cold_busy).max(0.0);
    let gain = freed.min(headroom);
    let share = gain / (total_iops + gain);
    Cost {
        iops_share: Some(if share.is_finite() { share } else { 0.0 }),
        latency_share: None,
        added_latency_ns: None,
        basis: format!(
            "moving {moved:.0} qpair(s) off the saturated group frees ~{} IOPS of it, which the \
             emptiest group (headroom ~{} IOPS) can serve",
            si(freed),
            si(headroom)
        ),
    }
}
use crate::window::Window;

/// I/O qpairs more on the fullest group than on the emptiest for the spread to matter: one
/// more is what round-robin placement of an odd count gives.
pub const MIN_SPREAD: u32 = 2;

/// Busy share of the fullest group's thread (or its reactor) at which the spread costs
/// throughput: the group cannot take more, while another has room.
pub const SATURATED_BUSY: f64 = 0.9;

/// Raises [`FindingKind::ReactorImbalance`] for SPDK poll groups.
#[derive(Clone, Copy, Debug, Default)]
pub struct SpdkPollGroups;

impl Detector for SpdkPollGroups {
    fn name(&self) -> &'static str {
        "spdk_poll_groups"
    }

    fn observe(&mut self, w: &Window, _ctx: &Context<'_>, out: &mut Vec<Finding>) {
        let Some(s) = &w.spdk else { return };
        let listed = |name: &str| {
            s.listed_qpairs
                .iter()
                .find(|(t, _)| t == name)
                .map(|(_, n)| *n)
                .unwrap_or(0)
        };
        // Stale counts: the group believes it holds more I/O qpairs than exist on its thread.
        for g in &s.poll_groups {
            let real = listed(&g.name);
            if g.current_io_qpairs > real && !s.listed_qpairs.is_empty() {
                let stale = g.current_io_qpairs - real;
                let cost = Cost {
                    iops_share: Some(0.0),
                    latency_share: None,
                    added_latency_ns: None,
                    basis: "stale counts cost nothing until they steer a new connection".into(),
                };
                out.push(costed(
                    FindingKind::ReactorImbalance,
                    cost,
                    Subject::Reactor { index: g.lcore },
                    format!(
                        "poll group {} counts {} I/O qpair(s) but only {real} exist on it: {stale} \
                         stale after disconnects, and SPDK places new qpairs by these counts",
                        g.name, g.current_io_qpairs
                    ),
                    vec![
                        Evidence::new(
                            "current_io_qpairs (nvmf_get_stats)",
                            f64::from(g.current_io_qpairs),
                            "",
                        ),
                        Evidence::new(
                            "qpairs listed (nvmf_subsystem_get_qpairs)",
                            f64::from(real),
                            "",
                        ),
                    ],
                    w,
                    margin(f64::from(stale), 0.0, 2.0),
                ));
            }
        }
        if s.poll_groups.len() < 2 {
            return;
        }
        let count = |g: &crate::spdk::PollGroupWindow| {
            if s.listed_qpairs.is_empty() {
                g.current_io_qpairs
            } else {
                listed(&g.name)
            }
        };
        let (Some(hot), Some(cold)) = (
            s.poll_groups.iter().max_by_key(|g| count(g)),
            s.poll_groups.iter().min_by_key(|g| count(g)),
        ) else {
            return;
        };
        let spread = count(hot) - count(cold);
        if spread < MIN_SPREAD {
            return;
        }
        let hot_busy = hot
            .busy_ratio
            .or_else(|| w.reactor(hot.lcore).map(|r| r.busy_ratio))
            .unwrap_or(0.0);
        let cold_busy = cold
            .busy_ratio
            .or_else(|| w.reactor(cold.lcore).map(|r| r.busy_ratio))
            .unwrap_or(0.0);
        let total: f64 = s.poll_groups.iter().map(|g| g.iops).sum();
        let cost = spread_cost(
            (hot, count(hot), hot_busy),
            (cold, count(cold), cold_busy),
            total,
        );
        let groups: Vec<String> = s
            .poll_groups
            .iter()
            .map(|g| {
                format!(
                    "{} (core {}): {} qpair(s), {} IOPS{}",
                    g.name,
                    g.lcore,
                    count(g),
                    si(g.iops),
                    g.busy_ratio
                        .map(|b| format!(", {} busy", pct(b)))
                        .unwrap_or_default()
                )
            })
            .collect();
        let mut evidence = vec![
            Evidence::new("qpair spread (fullest - emptiest)", f64::from(spread), ""),
            Evidence::new("fullest group qpairs", f64::from(count(hot)), ""),
            Evidence::new("emptiest group qpairs", f64::from(count(cold)), ""),
            Evidence::new("fullest group busy", hot_busy * 100.0, "%"),
        ];
        evidence.push(Evidence::new("fullest group IOPS", hot.iops, "IOPS"));
        evidence.push(Evidence::new("emptiest group IOPS", cold.iops, "IOPS"));
        out.push(costed(
            FindingKind::ReactorImbalance,
            cost,
            Subject::Reactor { index: hot.lcore },
            format!(
                "qpairs spread unevenly over SPDK's poll groups (spread {spread}): {}; reconnect \
                 the hosts or set the transport's placement (nvmf_set_config \
                 --conn-sched / poll group assignment) so each group serves its share",
                groups.join("; ")
            ),
            evidence,
            w,
            margin(f64::from(spread), f64::from(MIN_SPREAD), 6.0),
        ));
    }
}
