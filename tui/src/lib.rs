//! The live terminal view of `agent_core::Snapshot`s (`ringside top`).
#![forbid(unsafe_code)]
