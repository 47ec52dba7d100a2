//! Shared-memory trace ABI (filled by issue 3).
#![forbid(unsafe_code)]
