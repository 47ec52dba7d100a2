//! SPDK's JSON-RPC 2.0 over its unix socket (`nvmf_tgt -r SOCK`, default `/var/tmp/spdk.sock`),
//! through the agent's one JSON-RPC client (`crate::rpc::Client`) plus SPDK's version check.
//!
//! Only read methods are called (`*_get_*`, `spdk_get_version`): the agent never changes the
//! target. A method that is missing or fails is reported once per method by the caller and the
//! others are still used. [`RpcTransport`] is the seam a replay ([`super::replay`]) plugs into.
//!
//! Threading: a client is owned by the agent's sampling thread; calls are sequential.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::rpc::shorten;

/// SPDK's default RPC socket.
pub const DEFAULT_SOCKET: &str = "/var/tmp/spdk.sock";

/// How long one call may take (SPDK answers from its app thread within milliseconds; a target
/// whose app thread is stuck should not stall the agent's tick for long).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a call failed. Each message is one line.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// Connecting or talking failed.
    #[error("SPDK RPC socket {path}: {source}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// No (complete) answer in time.
    #[error("SPDK RPC socket {path}: no answer to {method} within {CALL_TIMEOUT:?}")]
    Timeout {
        /// The socket.
        path: PathBuf,
        /// The method.
        method: String,
    },
    /// The peer answered something that is not a JSON-RPC answer.
    #[error("{path} is not SPDK's RPC socket: it answered {what}")]
    NotJsonRpc {
        /// The socket.
        path: PathBuf,
        /// What came back (shortened).
        what: String,
    },
    /// The peer speaks JSON-RPC but is not SPDK.
    #[error("{path} is not SPDK's RPC socket: spdk_get_version answered {what}")]
    NotSpdk {
        /// The socket.
        path: PathBuf,
        /// What it answered.
        what: String,
    },
    /// The method returned an error (missing in this SPDK, or failing).
    #[error("{method}: {message} (code {code})")]
    Method {
        /// Method name.
        method: String,
        /// JSON-RPC error code (-32601: no such method).
        code: i64,
        /// Its message.
        message: String,
    },
    /// A replay has no answer for the method.
    #[error("{method}: not in the recording")]
    NotRecorded {
        /// Method name.
        method: String,
    },
}

/// Something that answers SPDK RPC methods: the live socket, or a recording.
pub trait RpcTransport: Send {
    /// Calls `method` with `params` (or none) and returns its `result`.
    fn call(&mut self, method: &str, params: Option<Value>) -> Result<Value, RpcError>;

    /// Where the answers come from (for capability lines).
    fn describe(&self) -> String;

    /// Marks the start of a collection round (a replay moves to its next recorded second).
    fn begin_round(&mut self) {}

    /// For a replay: the recorded wall-clock time of the current round (ns); `None` live.
    fn recorded_ns(&self) -> Option<u64> {
        None
    }
}

/// A client of one SPDK RPC socket: the agent's one JSON-RPC client ([`crate::rpc::Client`])
/// with SPDK's version check and SPDK's wording of failures.
pub struct RpcClient {
    inner: crate::rpc::Client,
    /// `spdk_get_version`'s `version` string.
    pub version: String,
}

impl RpcClient {
    /// Connects and checks that the peer is SPDK (`spdk_get_version`).
    pub fn connect(path: &Path) -> Result<RpcClient, RpcError> {
        let mut c = RpcClient {
            inner: crate::rpc::Client::new(path, CALL_TIMEOUT),
            version: String::new(),
        };
        let v = match c.call("spdk_get_version", None) {
            Ok(v) => v,
            Err(RpcError::Method { code, message, .. }) => {
                return Err(RpcError::NotSpdk {
                    path: path.to_path_buf(),
                    what: format!("error {code} {message:?}"),
                })
            }
            Err(e) => return Err(e),
        };
        match v.get("version").and_then(Value::as_str) {
            Some(s) if s.starts_with("SPDK") => c.version = s.to_string(),
            _ => {
                return Err(RpcError::NotSpdk {
                    path: path.to_path_buf(),
                    what: shorten(&v.to_string()),
                })
            }
        }
        Ok(c)
    }
}

impl RpcTransport for RpcClient {
    fn call(&mut self, method: &str, params: Option<Value>) -> Result<Value, RpcError> {
        use crate::rpc::CallError;
        self.inner.call(method, params).map_err(|e| match e {
            CallError::Io { path, source } => RpcError::Io { path, source },
            CallError::Timeout { path, method, .. } => RpcError::Timeout { path, method },
            CallError::NotJsonRpc { path, what } => RpcError::NotJsonRpc { path, what },
            CallError::Method {
                method,
                code,
                message,
            } => RpcError::Method {
                method,
                code,
                message,
            },
        })
    }

    fn describe(&self) -> String {
        format!("{} ({})", self.inner.path().display(), self.version)
    }
}
