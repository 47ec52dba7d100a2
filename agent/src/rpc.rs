//! `ringside rpc METHOD [PARAMS]`: the target's JSON-RPC 2.0 socket from the shell, like SPDK's
//! `rpc.py` (`-s SOCKET`, the method, its parameters as one JSON value), printing the result as
//! indented JSON.
//!
//! [`Client`] is the one JSON-RPC client of the agent (this command, `ringside tune`, and the
//! SPDK source, which adds its version check on top: `spdk::rpc`). `ringside rpc` makes one
//! call on the calling thread; no state. An RPC error prints one line
//! (`ringside: rpc METHOD: CODE MESSAGE`) and exits non-zero, as does a socket that is not there
//! or a reply that is not JSON.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};

/// `ringside rpc` arguments.
#[derive(Args, Debug)]
pub struct RpcArgs {
    /// The target's RPC socket (default: `/var/tmp/ringside-<NAME>.sock` for `--name NAME`, else
    /// the default instance's `/var/tmp/ringside-ringside.sock`).
    #[arg(short = 's', long = "server")]
    pub socket: Option<PathBuf>,
    /// How long to wait for the answer, in seconds.
    #[arg(short = 't', long, default_value_t = 60.0)]
    pub timeout: f64,
    /// The method: SPDK's names where the meaning matches (`nvmf_get_subsystems`,
    /// `nvmf_get_stats`, `nvmf_subsystem_add_ns`, `nvmf_subsystem_remove_ns`,
    /// `nvmf_subsystem_add_host`, `nvmf_subsystem_get_qpairs`, `framework_get_reactors`...) and
    /// ringside's own (`get_stats`, `get_subsystems`, `trace_set_groups`...);
    /// `rpc_get_methods` lists them.
    pub method: String,
    /// Parameters: one JSON object (or array), e.g. '{"nqn": "nqn.2026-11.io.ringside:nvme0"}'.
    pub params: Option<String>,
}

/// The socket a call goes to.
pub fn socket_path(args: &RpcArgs, name: Option<&str>) -> PathBuf {
    args.socket.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "/var/tmp/ringside-{}.sock",
            name.unwrap_or("ringside")
        ))
    })
}

/// Largest answer accepted (a target with thousands of qpairs answers a few MB).
pub const MAX_ANSWER: usize = 64 << 20;

/// Why a JSON-RPC call failed. Each message is one line; callers (`ringside rpc`, the SPDK
/// source) word them for their users.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Connecting or talking failed.
    #[error("rpc socket {path}: {source}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// No (complete) answer in time.
    #[error("rpc socket {path}: no answer to {method} within {timeout:?}")]
    Timeout {
        /// The socket.
        path: PathBuf,
        /// The method.
        method: String,
        /// The time allowed.
        timeout: Duration,
    },
    /// The peer closed the connection or answered something that is not a JSON-RPC answer.
    #[error("{path} answered {what}")]
    NotJsonRpc {
        /// The socket.
        path: PathBuf,
        /// What came back (shortened).
        what: String,
    },
    /// The method returned an error (-32601: the target has no such method).
    #[error("{method}: {message} (code {code})")]
    Method {
        /// Method name.
        method: String,
        /// JSON-RPC error code.
        code: i64,
        /// Its message.
        message: String,
    },
}

/// A JSON-RPC 2.0 client of one unix socket, shared by `ringside rpc`, `ringside tune` and the
/// SPDK source: one request object per call, the answer read until it parses as one JSON value
/// (at most [`MAX_ANSWER`] bytes), ids counting up; the connection is kept between calls and
/// reopened after a failure (the target restarted). Owned by one thread; calls are sequential.
#[derive(Debug)]
pub struct Client {
    path: PathBuf,
    timeout: Duration,
    stream: Option<UnixStream>,
    next_id: u64,
}

/// What came back, shortened to one printable line.
pub fn shorten(s: &str) -> String {
    let one: String = s.chars().filter(|c| !c.is_control()).take(60).collect();
    if one.is_empty() {
        "nothing (closed the connection)".into()
    } else {
        format!("{one:?}")
    }
}

impl Client {
    /// A client of `path`; each call may take `timeout` to send and to answer. Connects at the
    /// first call.
    pub fn new(path: &Path, timeout: Duration) -> Client {
        Client {
            path: path.to_path_buf(),
            timeout,
            stream: None,
            next_id: 1,
        }
    }

    /// The socket.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Calls `method` with `params` (or none) and returns its `result`.
    pub fn call(&mut self, method: &str, params: Option<Value>) -> Result<Value, CallError> {
        let answer = match self.exchange(method, params) {
            Ok(a) => a,
            Err(e) => {
                self.stream = None;
                return Err(e);
            }
        };
        if let Some(err) = answer.get("error") {
            return Err(CallError::Method {
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
                Err(CallError::NotJsonRpc {
                    path: self.path.clone(),
                    what: shorten(&answer.to_string()),
                })
            }
        }
    }

    fn io(&self, source: std::io::Error) -> CallError {
        CallError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn exchange(&mut self, method: &str, params: Option<Value>) -> Result<Value, CallError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut req = json!({"jsonrpc": "2.0", "method": method, "id": id});
        if let Some(p) = params {
            req["params"] = p;
        }
        let mut bytes = serde_json::to_vec(&req).unwrap_or_default();
        bytes.push(b'\n');
        let (path, timeout) = (self.path.clone(), self.timeout);
        let io = |source: std::io::Error| {
            if matches!(
                source.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) {
                CallError::Timeout {
                    path: path.clone(),
                    method: method.to_string(),
                    timeout,
                }
            } else {
                CallError::Io {
                    path: path.clone(),
                    source,
                }
            }
        };
        if self.stream.is_none() {
            let s = UnixStream::connect(&self.path).map_err(|e| self.io(e))?;
            s.set_read_timeout(Some(self.timeout))
                .map_err(|e| self.io(e))?;
            s.set_write_timeout(Some(self.timeout))
                .map_err(|e| self.io(e))?;
            self.stream = Some(s);
        }
        let Some(s) = self.stream.as_mut() else {
            return Err(self.io(std::io::Error::other("no connection")));
        };
        s.write_all(&bytes).map_err(io)?;
        let mut buf = Vec::with_capacity(4096);
        let mut chunk = [0u8; 65536];
        loop {
            let n = s.read(&mut chunk).map_err(io)?;
            if n == 0 {
                return Err(CallError::NotJsonRpc {
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
                    return Err(CallError::NotJsonRpc {
                        path: path.clone(),
                        what: shorten(&String::from_utf8_lossy(&buf)),
                    })
                }
                None => {}
            }
            if buf.len() > MAX_ANSWER {
                return Err(CallError::NotJsonRpc {
                    path: path.clone(),
                    what: format!("more than {MAX_ANSWER} bytes without a complete answer"),
                });
            }
        }
    }
}

/// Sends one request to the target's socket and returns its `result`, or the error as one
/// line (`rpc METHOD: CODE MESSAGE` for an error the target answered).
pub fn call(socket: &Path, method: &str, params: Value, timeout: Duration) -> Result<Value> {
    let params = (!params.is_null()).then_some(params);
    match Client::new(socket, timeout).call(method, params) {
        Ok(v) => Ok(v),
        Err(CallError::Method { code, message, .. }) => bail!("rpc {method}: {code} {message}"),
        Err(CallError::Io { source, .. })
            if matches!(
                source.kind(),
                std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::PermissionDenied
            ) =>
        {
            bail!(
                "cannot connect to rpc socket {}: {source}",
                socket.display()
            )
        }
        Err(CallError::Timeout { .. }) => {
            bail!("no answer from {} within {:?}", socket.display(), timeout)
        }
        Err(CallError::NotJsonRpc { what, .. }) => {
            bail!("the target's rpc answer is not a JSON-RPC answer: {what}")
        }
        Err(e) => Err(e.into()),
    }
}

/// Runs `ringside rpc`.
pub fn run(name: Option<&str>, args: &RpcArgs, out: &mut impl Write) -> Result<()> {
    let params = match &args.params {
        None => Value::Null,
        Some(p) => {
            let v: Value =
                serde_json::from_str(p).with_context(|| format!("params are not JSON: {p}"))?;
            if !(v.is_object() || v.is_array()) {
                bail!("params must be a JSON object or array, got: {p}");
            }
            v
        }
    };
    if !(args.timeout > 0.0 && args.timeout.is_finite()) {
        bail!("--timeout must be a positive number of seconds");
    }
    let socket = socket_path(args, name);
    let result = call(
        &socket,
        &args.method,
        params,
        Duration::from_secs_f64(args.timeout),
    )?;
    serde_json::to_writer_pretty(&mut *out, &result)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}
