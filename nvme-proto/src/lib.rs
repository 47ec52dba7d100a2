//! NVMe and NVMe-oF wire types and codecs (placeholder until issue 2 lands the codecs).
#![forbid(unsafe_code)]
