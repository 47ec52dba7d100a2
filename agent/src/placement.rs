//! Keeps the agent off the target's reactor cores.
//!
//! A poll-mode reactor owns its core: any other thread that runs there preempts it, and the
//! agent would then report itself as the intruder it was asked to find. When a session opens,
//! every thread of the agent (and every thread it starts later, which inherits the mask) is
//! narrowed to the CPUs it may already use minus the reactors' cores. The mask never grows beyond
//! the one the agent started with (a `taskset` given by the operator stands); when a new instance
//! of the target is attached the plan is made again from that starting mask, so the agent leaves
//! the new reactors' cores and may return to the old ones. When no other CPU is left the agent
//! stays where it is and says that it shares the reactors' cores.

use agent_core::sample::Capability;
use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet};

/// The CPUs of `set`, in order.
fn cpus(set: &CpuSet) -> Vec<u32> {
    (0..CpuSet::MAX_CPU as u32)
        .filter(|&c| set.is_set(c as usize))
        .collect()
}

/// `0-2,5`-style list.
fn list(cpus: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        out.push(if j > i {
            format!("{}-{}", cpus[i], cpus[j])
        } else {
            cpus[i].to_string()
        });
        i = j + 1;
    }
    out.join(",")
}

/// The CPUs to keep to: `allowed` minus `reactor_cores`, or `None` when that leaves nothing
/// (or nothing would change).
pub fn plan(allowed: &[u32], reactor_cores: &[u32]) -> Option<Vec<u32>> {
    let keep: Vec<u32> = allowed
        .iter()
        .copied()
        .filter(|c| !reactor_cores.contains(c))
        .collect();
    (!keep.is_empty() && keep.len() < allowed.len()).then_some(keep)
}

/// Moves every thread of this process off `reactor_cores` when another allowed CPU exists;
/// returns the capability line that says where the agent runs.
pub fn keep_off_reactor_cores(reactor_cores: &[u32]) -> Capability {
    let line = |available: bool, note: String| Capability {
        name: "placement".into(),
        available,
        note,
    };
    // The operator's mask, read once: a later instance whose reactors moved is planned against
    // it (so the agent may return to CPUs the previous instance's reactors held, never beyond).
    static OPERATOR: std::sync::OnceLock<Result<Vec<u32>, String>> = std::sync::OnceLock::new();
    let allowed = match OPERATOR.get_or_init(|| {
        sched_getaffinity(None)
            .map(|s| cpus(&s))
            .map_err(|e| e.to_string())
    }) {
        Ok(a) => a.clone(),
        Err(e) => {
            return line(
                false,
                format!("cannot read the agent's CPU affinity ({e}): it runs wherever the scheduler puts it"),
            )
        }
    };
    let reactors = list(reactor_cores);
    let narrowed = sched_getaffinity(None).is_ok_and(|s| cpus(&s) != allowed);
    let keep = match plan(&allowed, reactor_cores) {
        Some(keep) => Some(keep),
        // Narrowed for an earlier instance: back to the operator's mask.
        None if narrowed => Some(allowed.clone()),
        None => None,
    };
    let Some(keep) = keep.filter(|k| k.iter().all(|c| !reactor_cores.contains(c))) else {
        let shares = allowed.iter().any(|c| reactor_cores.contains(c));
        return line(
            !shares,
            if shares {
                format!(
                    "the agent may only run on CPUs {} and shares them with the reactors ({reactors}): it can preempt them and show up as their intruder",
                    list(&allowed)
                )
            } else {
                format!(
                    "the agent runs on CPUs {}, off the reactor cores ({reactors})",
                    list(&allowed)
                )
            },
        );
    };
    let mut set = CpuSet::new();
    for &c in &keep {
        set.set(c as usize);
    }
    // Every thread that exists now; later ones inherit the mask of the thread that starts them.
    let mut failed = 0;
    let tids = std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    for tid in tids {
        let pid = rustix::process::Pid::from_raw(tid);
        if sched_setaffinity(pid, &set).is_err() {
            failed += 1;
        }
    }
    if sched_setaffinity(None, &set).is_err() {
        failed += 1;
    }
    if failed > 0 {
        return line(
            false,
            format!(
                "could not move {failed} agent thread(s) off the reactor cores ({reactors}); the rest run on CPUs {}",
                list(&keep)
            ),
        );
    }
    line(
        true,
        format!(
            "the agent runs on CPUs {}, off the reactor cores ({reactors})",
            list(&keep)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_keeps_the_allowed_cpus_that_no_reactor_uses() {
        assert_eq!(plan(&[0, 1, 2, 3], &[1, 3]), Some(vec![0, 2]));
        assert_eq!(plan(&[0, 1], &[0]), Some(vec![1]));
        assert_eq!(plan(&[0], &[0]), None, "nothing else left: stay");
        assert_eq!(plan(&[2, 3], &[0, 1]), None, "already off the reactors");
        assert_eq!(plan(&[0, 1], &[]), None, "no reactor core known");
    }

    #[test]
    fn lists_are_compact() {
        assert_eq!(list(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
        assert_eq!(list(&[3]), "3");
        assert_eq!(list(&[]), "");
    }
}
