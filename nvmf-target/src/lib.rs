//! The bundled poll-mode NVMe-oF target.
