//! Reading the timestamp counter: the second module allowed `unsafe` (the `rdtsc` intrinsic).
//!
//! Threading/ownership: stateless functions, callable from any thread. On x86_64 record
//! timestamps are raw TSC ticks; elsewhere they are CLOCK_MONOTONIC nanoseconds (the header says
//! so with `FLAG_TSC_IS_MONOTONIC_NS` and `tsc_hz = 1e9`).
#![allow(unsafe_code)]

use rustix::time::{clock_gettime, ClockId};

/// True when [`now`] returns CLOCK_MONOTONIC nanoseconds rather than TSC ticks.
pub const IS_MONOTONIC_NS: bool = !cfg!(target_arch = "x86_64");

/// Current timestamp in ticks of the trace clock.
#[inline(always)]
pub fn now() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `rdtsc` has no memory effects and no preconditions; every x86_64 CPU has it.
        // (It is not serializing: a timestamp may be taken a few cycles early, which is fine for
        // tracing and avoids the cost of `rdtscp`/fences.)
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        mono_ns()
    }
}

/// Whether the CPU advertises an invariant TSC (CPUID 0x8000_0007 EDX bit 8).
pub fn invariant() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // `__cpuid` became a safe function in newer toolchains; the block keeps older ones happy.
        #[allow(unused_unsafe)]
        // SAFETY: CPUID is available on every x86_64 CPU and has no memory effects.
        let max = unsafe { core::arch::x86_64::__cpuid(0x8000_0000) }.eax;
        if max < 0x8000_0007 {
            return false;
        }
        #[allow(unused_unsafe)]
        // SAFETY: as above; leaf 0x8000_0007 exists (checked against the maximum leaf).
        let leaf = unsafe { core::arch::x86_64::__cpuid(0x8000_0007) };
        leaf.edx & (1 << 8) != 0
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// CLOCK_MONOTONIC in nanoseconds.
pub fn mono_ns() -> u64 {
    timespec_ns(clock_gettime(ClockId::Monotonic))
}

/// CLOCK_REALTIME in nanoseconds since the Unix epoch.
pub fn realtime_ns() -> u64 {
    timespec_ns(clock_gettime(ClockId::Realtime))
}

fn timespec_ns(t: rustix::time::Timespec) -> u64 {
    (t.tv_sec.max(0) as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec.max(0) as u64)
}
