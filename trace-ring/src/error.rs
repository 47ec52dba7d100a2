//! Errors of the producer and the consumer.
#![forbid(unsafe_code)]

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong creating, opening or finding a trace file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The instance name is unusable as a file name suffix.
    #[error("invalid trace instance name {name:?}: use 1-63 characters from [A-Za-z0-9_.-], not starting with '.'")]
    InvalidName {
        /// The rejected name.
        name: String,
    },
    /// The sizing configuration is out of range.
    #[error("invalid trace layout: {reason}")]
    InvalidLayout {
        /// Which limit.
        reason: &'static str,
    },
    /// The description is inconsistent or does not fit the layout.
    #[error("invalid trace description: {reason}")]
    InvalidDescription {
        /// Why.
        reason: String,
    },
    /// Another live process owns the trace file.
    #[error("trace file {path} belongs to running process {pid}; stop it or pick another name")]
    InUse {
        /// The file.
        path: PathBuf,
        /// Its producer.
        pid: u32,
    },
    /// A file of that name exists but is not a trace file, so it is not replaced.
    #[error("{path} exists and is not a ringside trace file; not replacing it")]
    Foreign {
        /// The file.
        path: PathBuf,
    },
    /// An I/O operation failed.
    #[error("cannot {op} {path}")]
    Io {
        /// What we were doing ("create", "open", "map", ...).
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A reactor index beyond the file's reactor count.
    #[error("reactor {index} does not exist (the trace file has {reactors})")]
    NoSuchReactor {
        /// Requested index.
        index: u32,
        /// Reactors in the file.
        reactors: u32,
    },
    /// A reactor's writers were already handed out (one writer per ring).
    #[error("the writers of reactor {index} were already taken")]
    ReactorTaken {
        /// The reactor.
        index: u32,
    },
    /// The file is shorter than a header (an empty file included).
    #[error("{path}: {len} bytes is too small for a trace file (at least {min})")]
    TooSmall {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
        /// The minimum.
        min: u64,
    },
    /// Wrong magic.
    #[error("{path}: not a ringside trace file (bad magic)")]
    BadMagic {
        /// The file.
        path: PathBuf,
    },
    /// The endian tag is wrong: written by a big-endian machine, or corrupt.
    #[error(
        "{path}: endian tag {tag:#010x} is not the little-endian one; corrupt or foreign file"
    )]
    Endian {
        /// The file.
        path: PathBuf,
        /// The tag found.
        tag: u32,
    },
    /// Another major version of the ABI.
    #[error("{path}: trace ABI version {found_major}.{found_minor} cannot be read by this reader (trace ABI {supported_major}.{supported_minor}); use a matching ringside")]
    Version {
        /// The file.
        path: PathBuf,
        /// Its major version.
        found_major: u16,
        /// Its minor version.
        found_minor: u16,
        /// Ours.
        supported_major: u16,
        /// Ours.
        supported_minor: u16,
    },
    /// A header field is out of range or a section lies outside the file.
    #[error("{path}: corrupt trace header: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Which check failed.
        reason: String,
    },
    /// The file is shorter than its header says.
    #[error("{path}: truncated trace file: header says {expected} bytes, file has {actual}")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Size from the header.
        expected: u64,
        /// Actual size.
        actual: u64,
    },
    /// The description blob is unreadable.
    #[error("{path}: bad trace description: {reason}")]
    Description {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No instance of that name.
    #[error("no trace instance named {name:?} in {dir}")]
    NotFound {
        /// The name.
        name: String,
        /// Where we looked.
        dir: PathBuf,
    },
    /// No instance of that pid.
    #[error("no trace instance of process {pid} in {dir}")]
    NoInstanceForPid {
        /// The pid.
        pid: u32,
        /// Where we looked.
        dir: PathBuf,
    },
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_err(op: &'static str, path: &std::path::Path) -> impl FnOnce(io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { op, path, source }
}
