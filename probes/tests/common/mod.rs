//! Helpers shared by the root tests: the skip rule and small process utilities.
#![allow(dead_code)]

use std::path::Path;

/// True when the test may run; otherwise prints why it is skipped.
pub fn root_and_btf(test: &str) -> bool {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipping {test}: needs root (BPF load/attach)");
        return false;
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        eprintln!("skipping {test}: /sys/kernel/btf/vmlinux missing (kernel without BTF)");
        return false;
    }
    true
}

pub fn gettid() -> u32 {
    rustix::thread::gettid().as_raw_nonzero().get() as u32
}

pub fn getpid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// Pins the calling thread to `cpu`.
pub fn pin_to(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set).expect("sched_setaffinity on a valid cpu");
}
