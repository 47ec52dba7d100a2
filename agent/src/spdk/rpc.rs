//! SPDK's JSON-RPC 2.0 over its unix socket (`nvmf_tgt -r SOCK`, default `/var/tmp/spdk.sock`):
//! one request object per call, the answer read until it parses as one JSON value.
//!
//! Only read methods are called (`*_get_*`, `spdk_get_version`): the agent never changes the
//! target. A method that is missing or fails is reported once per method by the caller and the
//! others are still used. [`RpcTransport`] is the seam a replay ([`super::replay`]) plugs into.
//!
//! Threading: a client is owned by the agent's sampling thread; calls are sequential.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

/// SPDK's default RPC socket.
pub const DEFAULT_SOCKET: &str = "/var/tmp/spdk.sock";

/// How long one call may take (SPDK answers from its app thread within milliseconds; a target
/// whose app thread is stuck should not stall the agent's tick for long).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest answer accepted (a target with thousands of qpairs answers a few MB).
pub const MAX_ANSWER: usize = 64 << 20;

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

/// A client of one SPDK RPC socket.
pub struct RpcClient {
    path: PathBuf,
    stream: Option<UnixStream>,
    next_id: u64,
    /// `spdk_get_version`'s `version` string.
    pub version: String,
}

fn shorten(s: &str) -> String {
    let one: String = s.chars().filter(|c| !c.is_control()).take(60).collect();
    if one.is_empty() {
        "nothing (closed the connection)".into()
    } else {
        format!("{one:?}")
    }
}

impl RpcClient {
    /// Connects and checks that the peer is SPDK (`spdk_get_version`).
    pub fn connect(path: &Path) -> Result<RpcClient, RpcError> {
        let mut c = RpcClient {
            path: path.to_path_buf(),
            stream: None,
            next_id: 1,
            version: String::new(),
        };
        let v = match c.call("spdk_get_version", None) {
            Ok(v) => v,
            Err(RpcError::Method { code, message, .. }) => {
                return Err(RpcError::NotSpdk {
                    path: c.path,
                    what: format!("error {code} {message:?}"),
                })
            }
            Err(e) => return Err(e),
        };
        match v.get("version").and_then(Value::as_str) {
            Some(s) if s.starts_with("SPDK") => c.version = s.to_string(),
            _ => {
                return Err(RpcError::NotSpdk {
                    path: c.path,
                    what: shorten(&v.to_string()),
                })
            }
        }
        Ok(c)
    }

    fn io(&self, source: std::io::Error) -> RpcError {
        RpcError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn stream(&mut self) -> Result<&mut UnixStream, RpcError> {
        if self.stream.is_none() {
            let s = UnixStream::connect(&self.path).map_err(|e| self.io(e))?;
            s.set_read_timeout(Some(CALL_TIMEOUT))
                .map_err(|e| self.io(e))?;
            s.set_write_timeout(Some(CALL_TIMEOUT))
                .map_err(|e| self.io(e))?;
            self.stream = Some(s);
        }
        // Just set above when it was None.
        self.stream.as_mut().ok_or_else(|| RpcError::Io {
            path: PathBuf::new(),
            source: std::io::Error::other("no connection"),
        })
    }

    fn exchange(&mut self, method: &str, params: Option<Value>) -> Result<Value, RpcError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut req = json!({"jsonrpc": "2.0", "method": method, "id": id});
        if let Some(p) = params {
            req["params"] = p;
        }
        let bytes = serde_json::to_vec(&req).unwrap_or_default();
        let path = self.path.clone();
        let io = |source: std::io::Error| {
            if matches!(
                source.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) {
                RpcError::Timeout {
                    path: path.clone(),
                    method: method.to_string(),
                }
            } else {
                RpcError::Io {
                    path: path.clone(),
                    source,
                }
            }
        };
        let s = self.stream()?;
        s.write_all(&bytes).map_err(io)?;
        let mut buf = Vec::with_capacity(4096);
        let mut chunk = [0u8; 65536];
        loop {
            let n = s.read(&mut chunk).map_err(io)?;
            if n == 0 {
                return Err(RpcError::NotJsonRpc {
                    path: path.clone(),
                    what: shorten(&String::from_utf8_lossy(&buf)),
                });
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut it = serde_json::Deserializer::from_slice(&buf).into_iter::<Value>();
            match it.next() {
                Some(Ok(v)) => return Ok(v),
                Some(Err(e)) if e.is_eof() => {}
                Some(Err(_)) => {
                    return Err(RpcError::NotJsonRpc {
                        path: path.clone(),
                        what: shorten(&String::from_utf8_lossy(&buf)),
                    })
                }
                None => {}
            }
            if buf.len() > MAX_ANSWER {
                return Err(RpcError::NotJsonRpc {
                    path: path.clone(),
                    what: format!("more than {MAX_ANSWER} bytes without a complete answer"),
                });
            }
        }
    }
}

impl RpcTransport for RpcClient {
    fn call(&mut self, method: &str, params: Option<Value>) -> Result<Value, RpcError> {
        let answer = match self.exchange(method, params) {
            Ok(a) => a,
            Err(e) => {
                // A broken connection is re-opened on the next call (the target restarted).
                self.stream = None;
                return Err(e);
            }
        };
        if let Some(err) = answer.get("error") {
            return Err(RpcError::Method {
                method: method.to_string(),
                code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: err
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            });
        }
        match answer.get("result") {
            Some(r) if answer.get("jsonrpc").is_some() => Ok(r.clone()),
            _ => {
                self.stream = None;
                Err(RpcError::NotJsonRpc {
                    path: self.path.clone(),
                    what: shorten(&answer.to_string()),
                })
            }
        }
    }

    fn describe(&self) -> String {
        format!("{} ({})", self.path.display(), self.version)
    }
}
