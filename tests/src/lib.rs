//! End-to-end tests that run the real binaries; see tests/tests/.
#![forbid(unsafe_code)]
