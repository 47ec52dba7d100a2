//! The Prometheus exporter (`ringside serve`): metric catalog, encoding of `agent_core::Snapshot`s,
//! and the HTTP endpoint.
#![forbid(unsafe_code)]
