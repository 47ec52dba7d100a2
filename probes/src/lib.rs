//! Kernel eBPF probes (issue 7).
