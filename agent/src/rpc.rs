//! `ringside rpc METHOD [PARAMS]`: the target's JSON-RPC 2.0 socket from the shell, like SPDK's
//! `rpc.py` (`-s SOCKET`, the method, its parameters as one JSON value), printing the result as
//! indented JSON.
//!
//! One short-lived connection per call on the calling thread; no state. An RPC error prints one
//! line (`ringside: rpc METHOD: CODE MESSAGE`) and exits non-zero, as does a socket that is not
//! there or a reply that is not JSON.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
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

/// Sends one request and returns its `result` (or the error as one line).
pub fn call(
    socket: &std::path::Path,
    method: &str,
    params: Value,
    timeout: Duration,
) -> Result<Value> {
    let mut s = UnixStream::connect(socket)
        .with_context(|| format!("cannot connect to rpc socket {}", socket.display()))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let mut req = json!({"jsonrpc": "2.0", "id": 1, "method": method});
    if !params.is_null() {
        req["params"] = params;
    }
    let mut bytes = serde_json::to_vec(&req)?;
    bytes.push(b'\n');
    s.write_all(&bytes)
        .with_context(|| format!("cannot send to rpc socket {}", socket.display()))?;
    // One reply: read until it parses as a whole JSON value.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let reply: Value = loop {
        let n = match s.read(&mut chunk) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                bail!("no answer from {} within {:?}", socket.display(), timeout)
            }
            Err(e) => return Err(e).context("cannot read the rpc answer"),
        };
        if n == 0 {
            bail!("the target closed the rpc connection without answering");
        }
        buf.extend_from_slice(&chunk[..n]);
        match serde_json::from_slice(&buf) {
            Ok(v) => break v,
            Err(e) if e.is_eof() => continue,
            Err(e) => bail!("the target's answer is not JSON: {e}"),
        }
    };
    if let Some(err) = reply.get("error") {
        let code = err.get("code").and_then(Value::as_i64).unwrap_or(0);
        let msg = err
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("(no message)");
        bail!("rpc {method}: {code} {msg}");
    }
    Ok(reply.get("result").cloned().unwrap_or(Value::Null))
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
