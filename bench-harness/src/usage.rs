//! CPU accounting of the calling thread from procfs (`/proc/thread-self/{stat,schedstat,status}`):
//! user and system time, time waiting on the run queue, context switches. Read by each worker at
//! the start and end of its measured interval (slow path), so a report can say where the
//! initiator's time went and whether it was preempted.

use std::time::Duration;

/// A snapshot of the calling thread's CPU usage. Fields that cannot be read stay zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThreadUsage {
    pub user: Duration,
    pub system: Duration,
    /// On-CPU time (schedstat, nanosecond resolution).
    pub on_cpu: Duration,
    /// Time runnable but waiting for a CPU (schedstat).
    pub run_queue_wait: Duration,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
}

/// Usage over an interval, as the report shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct UsageSummary {
    pub user_s: f64,
    pub system_s: f64,
    pub on_cpu_s: f64,
    pub run_queue_wait_s: f64,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
}

/// Parses utime and stime (fields 14 and 15) of a `stat` line, in clock ticks. The command
/// name (field 2) may hold spaces and parentheses, so fields are counted after the last ')'.
pub fn parse_stat_times(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    // rest starts at field 3 (state); utime is field 14 -> index 11.
    let utime = f.nth(11)?.parse().ok()?;
    let stime = f.next()?.parse().ok()?;
    Some((utime, stime))
}

/// Parses `schedstat`: on-cpu ns, run-queue wait ns, timeslices.
pub fn parse_schedstat(s: &str) -> Option<(u64, u64)> {
    let mut f = s.split_whitespace();
    Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
}

fn status_field(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim_start_matches(':').trim().parse().ok())
}

impl ThreadUsage {
    pub fn now() -> ThreadUsage {
        let mut u = ThreadUsage::default();
        let tick = rustix::param::clock_ticks_per_second().max(1);
        let ticks = |t: u64| Duration::from_nanos(t.saturating_mul(1_000_000_000 / tick));
        if let Some((ut, st)) = std::fs::read_to_string("/proc/thread-self/stat")
            .ok()
            .as_deref()
            .and_then(parse_stat_times)
        {
            u.user = ticks(ut);
            u.system = ticks(st);
        }
        if let Some((run, wait)) = std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .as_deref()
            .and_then(parse_schedstat)
        {
            u.on_cpu = Duration::from_nanos(run);
            u.run_queue_wait = Duration::from_nanos(wait);
        }
        if let Ok(s) = std::fs::read_to_string("/proc/thread-self/status") {
            u.voluntary_switches = status_field(&s, "voluntary_ctxt_switches").unwrap_or(0);
            u.involuntary_switches = status_field(&s, "nonvoluntary_ctxt_switches").unwrap_or(0);
        }
        u
    }

    /// Usage between `earlier` and `self`.
    pub fn since(&self, earlier: &ThreadUsage) -> UsageSummary {
        let d = |a: Duration, b: Duration| a.saturating_sub(b).as_secs_f64();
        UsageSummary {
            user_s: d(self.user, earlier.user),
            system_s: d(self.system, earlier.system),
            on_cpu_s: d(self.on_cpu, earlier.on_cpu),
            run_queue_wait_s: d(self.run_queue_wait, earlier.run_queue_wait),
            voluntary_switches: self
                .voluntary_switches
                .saturating_sub(earlier.voluntary_switches),
            involuntary_switches: self
                .involuntary_switches
                .saturating_sub(earlier.involuntary_switches),
        }
    }
}

impl UsageSummary {
    pub fn add(&mut self, o: &UsageSummary) {
        self.user_s += o.user_s;
        self.system_s += o.system_s;
        self.on_cpu_s += o.on_cpu_s;
        self.run_queue_wait_s += o.run_queue_wait_s;
        self.voluntary_switches += o.voluntary_switches;
        self.involuntary_switches += o.involuntary_switches;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_times_survive_odd_command_names() {
        let line =
            "42 (a b) c)) R 1 1 1 0 -1 4194304 100 0 0 0 1234 567 0 0 20 0 1 0 324155 3133440";
        assert_eq!(parse_stat_times(line), Some((1234, 567)));
        assert_eq!(parse_stat_times("garbage"), None);
        assert_eq!(parse_schedstat("10 20 3\n"), Some((10, 20)));
        assert_eq!(parse_schedstat(""), None);
    }

    #[test]
    fn this_thread_accumulates_cpu_time() {
        let a = ThreadUsage::now();
        let mut x = 0u64;
        let t = std::time::Instant::now();
        while t.elapsed() < Duration::from_millis(30) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        let b = ThreadUsage::now();
        let s = b.since(&a);
        assert!(x > 0);
        assert!(
            s.on_cpu_s > 0.0 || s.user_s > 0.0,
            "spinning shows up as cpu time: {s:?}"
        );
    }
}
