//! The user-space NVMe-oF initiator and load generator.
