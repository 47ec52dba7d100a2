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
}
