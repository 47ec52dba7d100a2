//! CPU affinity for worker threads. Called by each worker on itself, once, before it connects.

use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet};

use crate::units::CoreId;

#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    #[error("core {core} is not available to this process (allowed: {allowed})")]
    NotAllowed { core: u32, allowed: String },
    #[error("cannot pin to core {core}")]
    Pin {
        core: u32,
        #[source]
        source: rustix::io::Errno,
    },
    #[error("cannot read this process's cpu affinity")]
    Affinity {
        #[source]
        source: rustix::io::Errno,
    },
}

/// The cores this process may run on.
pub fn allowed_cores() -> Result<Vec<CoreId>, CpuError> {
    let set = sched_getaffinity(None).map_err(|source| CpuError::Affinity { source })?;
    Ok((0..CpuSet::MAX_CPU as u32)
        .filter(|&c| set.is_set(c as usize))
        .map(CoreId)
        .collect())
}

/// Checks that every core of `cores` is usable, so a typo fails before anything connects.
pub fn check_cores(cores: &[CoreId]) -> Result<(), CpuError> {
    let allowed = allowed_cores()?;
    for c in cores {
        if !allowed.contains(c) {
            let list: Vec<String> = allowed.iter().map(|c| c.to_string()).collect();
            return Err(CpuError::NotAllowed {
                core: c.0,
                allowed: list.join(","),
            });
        }
    }
    Ok(())
}

/// Pins the calling thread to `core`.
pub fn pin_current_thread(core: CoreId) -> Result<(), CpuError> {
    let mut set = CpuSet::new();
    if core.0 as usize >= CpuSet::MAX_CPU {
        return Err(CpuError::NotAllowed {
            core: core.0,
            allowed: "none that high".into(),
        });
    }
    set.set(core.0 as usize);
    sched_setaffinity(None, &set).map_err(|source| CpuError::Pin {
        core: core.0,
        source,
    })
}

/// Confines the calling thread to `cores` until the returned guard drops (then its earlier mask
/// is back). For the main thread, which does the admin queue, keep-alive and reporting: it stays
/// on the workers' cores instead of wandering onto the target's reactor core and preempting it
/// (SPDK's perf keeps its main thread inside its core mask the same way).
pub fn confine_current_thread(cores: &[CoreId]) -> Result<Confined, CpuError> {
    let before = sched_getaffinity(None).map_err(|source| CpuError::Affinity { source })?;
    let mut set = CpuSet::new();
    for c in cores {
        if c.0 as usize >= CpuSet::MAX_CPU {
            return Err(CpuError::NotAllowed {
                core: c.0,
                allowed: "none that high".into(),
            });
        }
        set.set(c.0 as usize);
    }
    let first = cores.first().map_or(0, |c| c.0);
    sched_setaffinity(None, &set).map_err(|source| CpuError::Pin {
        core: first,
        source,
    })?;
    Ok(Confined { before })
}

/// The calling thread's earlier cpu mask, put back on drop.
#[must_use = "the thread is confined only while this lives"]
pub struct Confined {
    before: CpuSet,
}

impl Drop for Confined {
    fn drop(&mut self) {
        // Best effort: the mask was readable and settable a moment ago.
        let _ = sched_setaffinity(None, &self.before);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_least_one_core_is_allowed_and_absurd_cores_are_not() {
        let allowed = allowed_cores().expect("affinity readable");
        assert!(!allowed.is_empty(), "some core must be allowed");
        assert!(check_cores(&allowed[..1]).is_ok());
        let err = check_cores(&[CoreId(1000)]).expect_err("core 1000 does not exist here");
        assert!(err.to_string().contains("core 1000"), "{err}");
    }

    #[test]
    fn a_confined_thread_runs_only_on_the_given_cores() {
        let allowed = allowed_cores().expect("affinity readable");
        let one = allowed[allowed.len() - 1];
        std::thread::spawn(move || {
            let before = allowed_cores().expect("affinity readable");
            {
                let _g = confine_current_thread(&[one]).expect("confine to an allowed core");
                assert_eq!(allowed_cores().expect("affinity readable"), vec![one]);
                assert!(confine_current_thread(&[CoreId(100_000)]).is_err());
            }
            assert_eq!(
                allowed_cores().expect("affinity readable"),
                before,
                "restored"
            );
        })
        .join()
        .expect("the confined thread");
    }
}
