//! Faults injected on purpose: a CPU hog on a core (steady, or in bursts), and a network
//! namespace pair joined by a veth link shaped with `tc tbf`.
//!
//! A hog is a thread of the calling process, pinned to the core and named [`HOG_NAME`] (the
//! name the kernel probes report as the intruder); dropping it stops and joins it. A namespace
//! pair is deleted (with its veth) when dropped.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::ScenarioError;
use crate::cpu::pin_current_thread;
use crate::units::CoreId;

/// The hog thread's name (its `comm` in /proc and in the kernel's sched events).
pub const HOG_NAME: &str = "ringside-hog";

/// How a hog uses its core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "shape")]
pub enum HogShape {
    /// Spins all the time.
    Steady,
    /// Spins `burst_ms` out of every `period_ms`, sleeps the rest.
    Bursty {
        /// Milliseconds of spinning per period.
        burst_ms: u64,
        /// The period, milliseconds.
        period_ms: u64,
    },
}

/// A thread spinning on one core; stopped and joined when dropped.
pub struct Hog {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// `/proc/self/task/<tid>` of the hog thread (its schedstat says how long it ran).
    task: Option<std::path::PathBuf>,
    started: std::time::Instant,
    shape: HogShape,
}

/// What a hog actually got: the scheduler decides, and a hog that spins by the wall clock may
/// barely run if the reactor is not preempted for it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HogUsage {
    /// Time on the CPU.
    pub ran: Duration,
    /// Time runnable but waiting for the CPU.
    pub waited: Duration,
    /// Since the hog started.
    pub elapsed: Duration,
}

impl HogUsage {
    /// Share of the elapsed time the hog ran.
    pub fn share(&self) -> f64 {
        self.ran.as_secs_f64() / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// `/proc/.../schedstat`: on-CPU ns, run-queue wait ns, slices.
pub fn parse_schedstat(text: &str) -> Option<(Duration, Duration)> {
    let mut f = text.split_whitespace().map(|v| v.parse::<u64>().ok());
    let ran = f.next()??;
    let waited = f.next()??;
    Some((Duration::from_nanos(ran), Duration::from_nanos(waited)))
}

impl Hog {
    /// Starts a hog pinned to `core`.
    pub fn start(core: u32, shape: HogShape) -> Result<Hog, ScenarioError> {
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(HOG_NAME.into())
            .spawn(move || {
                let pinned = pin_current_thread(CoreId(core)).map_err(|e| e.to_string());
                let ok = pinned.is_ok();
                // `/proc/thread-self` is `<pid>/task/<tid>`.
                let task = std::fs::read_link("/proc/thread-self")
                    .ok()
                    .map(|p| std::path::Path::new("/proc").join(p));
                let _ = tx.send(pinned.map(|()| task));
                if ok {
                    spin(&s, shape);
                }
            })
            .map_err(|source| ScenarioError::Spawn {
                what: "the hog thread".into(),
                source,
            })?;
        let mut hog = Hog {
            stop,
            thread: Some(thread),
            task: None,
            started: std::time::Instant::now(),
            shape,
        };
        match rx.recv() {
            Ok(Ok(task)) => {
                hog.task = task;
                Ok(hog)
            }
            Ok(Err(e)) => Err(ScenarioError::Setup {
                step: format!("pin the hog to core {core}"),
                stderr: e,
            }),
            Err(_) => Err(ScenarioError::Setup {
                step: "start the hog".into(),
                stderr: "the hog thread ended before pinning".into(),
            }),
        }
    }
}

impl Hog {
    /// How long the hog ran and waited so far (`None` when its schedstat cannot be read).
    pub fn usage(&self) -> Option<HogUsage> {
        let text = std::fs::read_to_string(self.task.as_ref()?.join("schedstat")).ok()?;
        let (ran, waited) = parse_schedstat(&text)?;
        Some(HogUsage {
            ran,
            waited,
            elapsed: self.started.elapsed(),
        })
    }

    /// The share of the time the hog's shape asks for.
    pub fn duty(&self) -> f64 {
        match self.shape {
            HogShape::Steady => 1.0,
            HogShape::Bursty {
                burst_ms,
                period_ms,
            } => burst_ms as f64 / period_ms.max(1) as f64,
        }
    }
}

fn spin(stop: &AtomicBool, shape: HogShape) {
    let (burst, period) = match shape {
        HogShape::Steady => (Duration::from_millis(100), Duration::ZERO),
        HogShape::Bursty {
            burst_ms,
            period_ms,
        } => (
            Duration::from_millis(burst_ms),
            Duration::from_millis(period_ms),
        ),
    };
    let mut x = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        while start.elapsed() < burst {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        if let Some(rest) = period.checked_sub(start.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Two network namespaces joined by a veth pair, the target's side shaped with
/// `tc qdisc add … root tbf rate <rate>` (reads flow target → initiator: its egress).
pub struct NetnsPair {
    /// The target's namespace.
    pub target_ns: String,
    /// The initiator's namespace.
    pub initiator_ns: String,
    /// The target's veth (the shaped one).
    pub target_dev: String,
    /// The target's address.
    pub target_ip: String,
}

impl NetnsPair {
    /// Creates the pair (root), named after `id`, the target's egress shaped to `rate`
    /// (`tc` syntax: `100mbit`).
    pub fn create(id: u32, rate: &str) -> Result<NetnsPair, ScenarioError> {
        let id = id % 10_000;
        let pair = NetnsPair {
            target_ns: format!("rstgt{id}"),
            initiator_ns: format!("rsini{id}"),
            target_dev: format!("rsvt{id}"),
            target_ip: "10.231.0.1".into(),
        };
        let (nt, ni, vt) = (&pair.target_ns, &pair.initiator_ns, &pair.target_dev);
        let vi = format!("rsvi{id}");
        // Left over from a run that was killed: start clean.
        for ns in [nt, ni] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(std::process::Stdio::null())
                .status();
        }
        sh(&format!("ip netns add {nt} && ip netns add {ni}"))?;
        sh(&format!(
            "ip link add {vt} netns {nt} type veth peer name {vi} netns {ni}"
        ))?;
        sh(&format!(
            "ip -n {nt} addr add {}/24 dev {vt} && ip -n {nt} link set {vt} up && ip -n {nt} link set lo up",
            pair.target_ip
        ))?;
        sh(&format!(
            "ip -n {ni} addr add 10.231.0.2/24 dev {vi} && ip -n {ni} link set {vi} up && ip -n {ni} link set lo up"
        ))?;
        sh(&format!(
            "ip netns exec {nt} tc qdisc add dev {vt} root tbf rate {rate} burst 64kb latency 100ms"
        ))?;
        Ok(pair)
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.target_ns])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.initiator_ns])
            .status();
    }
}

fn sh(cmd: &str) -> Result<(), ScenarioError> {
    let out = Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map_err(|source| ScenarioError::Spawn {
            what: "sh".into(),
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ScenarioError::Setup {
            step: cmd.into(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Whether this process runs as root (network namespaces, tc, the kernel probes).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_lines_parse_and_bad_ones_do_not() {
        assert_eq!(
            parse_schedstat("1500000 250000 42\n"),
            Some((Duration::from_micros(1500), Duration::from_micros(250)))
        );
        assert_eq!(parse_schedstat(""), None);
        assert_eq!(parse_schedstat("12 x 3"), None);
        let u = HogUsage {
            ran: Duration::from_millis(50),
            waited: Duration::ZERO,
            elapsed: Duration::from_secs(1),
        };
        assert!((u.share() - 0.05).abs() < 1e-12);
    }

    #[test]
    fn a_bursty_hog_pins_itself_and_stops_when_dropped() {
        let hog = Hog::start(
            0,
            HogShape::Bursty {
                burst_ms: 1,
                period_ms: 10,
            },
        )
        .expect("core 0 exists");
        let t = hog.thread.as_ref().expect("running").thread().clone();
        assert_eq!(t.name(), Some(HOG_NAME));
        assert!((hog.duty() - 0.1).abs() < 1e-12);
        // Its schedstat is readable and counts up while it spins (bounded wait, no timing).
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let ran = loop {
            let u = hog.usage().expect("the hog's schedstat");
            if u.ran > Duration::ZERO || std::time::Instant::now() > deadline {
                break u.ran;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(ran > Duration::ZERO, "the hog never ran");
        drop(hog);
        let err = Hog::start(100_000, HogShape::Steady)
            .err()
            .expect("no such core");
        assert!(err.to_string().contains("core 100000"), "{err}");
    }
}
