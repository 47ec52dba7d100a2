//! SPDK poll groups: qpairs spread unevenly over the NVMe-oF poll groups, and qpair counts that
//! stayed behind after disconnects (spdk#3137, #2800, #2636; ceph-nvmeof#27: one reactor at
//! 100 %, the other at 9.5 %). SPDK places a new qpair on a poll group by its own counts, so a
//! stale count keeps steering connections away from a group that has room.
//!
//! From `nvmf_get_stats` (`current_io_qpairs` per group) and `nvmf_subsystem_get_qpairs` (the
//! qpairs that really exist, per thread). Stateless; pure.

use super::{candidate, margin, pct, si, Context, Detector};
use crate::finding::{Evidence, Finding, FindingKind, Severity, Subject};
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
                out.push(candidate(
                    FindingKind::ReactorImbalance,
                    Severity::Info,
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
        let severity = if hot_busy >= SATURATED_BUSY {
            Severity::Warning
        } else {
            Severity::Info
        };
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
        out.push(candidate(
            FindingKind::ReactorImbalance,
            severity,
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
