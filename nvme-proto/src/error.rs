//! The error type shared by the non-TCP decoders and encoders.

use thiserror::Error;

/// A decode or encode failure. Offsets are byte offsets within the structure being coded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProtoError {
    /// The input (decode) or output (encode) buffer is shorter than the structure.
    #[error("buffer too short for {what}: need {need} bytes, have {have}")]
    Short {
        what: &'static str,
        need: usize,
        have: usize,
    },
    /// A field holds a value the specification does not allow.
    #[error("invalid {field} at byte {offset}: {reason}")]
    InvalidField {
        field: &'static str,
        offset: usize,
        reason: &'static str,
    },
    /// A value given to a constructor or encoder does not fit its field.
    #[error("{field} out of range: {value}")]
    OutOfRange { field: &'static str, value: u64 },
}

impl ProtoError {
    pub(crate) fn short(what: &'static str, need: usize, have: usize) -> Self {
        ProtoError::Short { what, need, have }
    }
}
