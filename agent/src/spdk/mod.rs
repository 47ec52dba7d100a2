//! SPDK's `nvmf_tgt` as a source: its tracepoint file ([`trace`]).
pub mod trace;
