//! JSON-RPC 2.0 over a unix stream socket, served by one non-reactor thread (plus one short-lived
//! thread per client connection).
//!
//! Requests are JSON objects, one after another on the stream (no framing, like SPDK's
//! `rpc.py`; a newline between them is fine). Malformed JSON gets a parse error (-32700) and the
//! connection is closed, because a byte stream cannot be resynchronised after a syntax error.
//! The server reads the reactors' counters and the subsystem tables; it never touches a
//! reactor's private state. `shutdown` asks the target to stop; the socket file is removed when
//! the server exits.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};

use crate::shared::Shared;

/// Largest request accepted (bytes).
const MAX_REQUEST: usize = 1 << 20;

/// Standard JSON-RPC error codes.
pub use crate::spdk_rpc::code;

/// Errors starting the RPC server.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("rpc socket {path} is in use by a running instance")]
    InUse { path: PathBuf },
    #[error("cannot bind rpc socket {path}")]
    Bind {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Binds the socket (removing a stale file left by a dead instance).
pub fn bind(path: &Path) -> Result<UnixListener, RpcError> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(RpcError::InUse {
                path: path.to_path_buf(),
            });
        }
        let _ = std::fs::remove_file(path);
    }
    let l = UnixListener::bind(path).map_err(|source| RpcError::Bind {
        path: path.to_path_buf(),
        source,
    })?;
    l.set_nonblocking(true).map_err(|source| RpcError::Bind {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(l)
}

/// Gives the bound socket file `mode` (read bits also granting write: connecting needs write)
/// and group `gid` (`[trace] mode` and `group`).
pub fn restrict(path: &Path, mode: u32, gid: Option<u32>) -> Result<(), RpcError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |source| RpcError::Bind {
        path: path.to_path_buf(),
        source,
    };
    if let Some(g) = gid {
        std::os::unix::fs::chown(path, None, Some(g)).map_err(err)?;
    }
    let mode = (mode | ((mode & 0o444) >> 1)) & 0o777;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(err)
}

/// Starts the server thread. It exits (and removes the socket file) once the target's shutdown
/// flag is set.
pub fn spawn(
    listener: UnixListener,
    path: PathBuf,
    shared: Arc<Shared>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("rpc".into())
        .spawn(move || {
            while !shared.shutdown.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let sh = shared.clone();
                        let _ = std::thread::Builder::new()
                            .name("rpc-client".into())
                            .spawn(move || serve_client(stream, &sh));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            let _ = std::fs::remove_file(&path);
        })
}

fn serve_client(mut stream: UnixStream, shared: &Arc<Shared>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        // Answer every complete request in the buffer.
        loop {
            let start = buf.iter().position(|b| !b.is_ascii_whitespace());
            let Some(start) = start else {
                buf.clear();
                break;
            };
            let mut it = serde_json::Deserializer::from_slice(&buf[start..]).into_iter::<Value>();
            match it.next() {
                Some(Ok(v)) => {
                    let used = start + it.byte_offset();
                    buf.drain(..used);
                    if let Some(resp) = handle(v, shared) {
                        if write_json(&mut stream, &resp).is_err() {
                            return;
                        }
                    }
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(e)) => {
                    let _ = write_json(
                        &mut stream,
                        &error(Value::Null, code::PARSE_ERROR, &format!("parse error: {e}")),
                    );
                    return;
                }
                None => {
                    buf.clear();
                    break;
                }
            }
        }
        if shared.shutdown.load(Ordering::Acquire) && buf.is_empty() {
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => {
                if buf.len() + n > MAX_REQUEST {
                    let _ = write_json(
                        &mut stream,
                        &error(
                            Value::Null,
                            code::INVALID_REQUEST,
                            "request larger than 1 MiB",
                        ),
                    );
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => return,
        }
    }
}

fn trace_info(shared: &Shared) -> Value {
    match &shared.trace {
        Some((path, control)) => json!({
            "enabled": true,
            "path": path.display().to_string(),
            "groups": crate::trace::GROUPS.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
            "enabled_groups": crate::trace::names_of(control.enabled_mask()),
        }),
        None => json!({"enabled": false, "path": null, "groups": [], "enabled_groups": []}),
    }
}

/// `{"enable": ["tcp"], "disable": ["poll"]}` (either may be absent; "all" names every group;
/// disabling applies first).
fn trace_set_groups(params: &Value, shared: &Shared) -> Result<Value, (i64, String)> {
    let Some((_, control)) = &shared.trace else {
        return Err((code::INVALID_PARAMS, "tracing is off in this target".into()));
    };
    let list = |key: &str| -> Result<u64, (i64, String)> {
        let Some(v) = params.get(key) else {
            return Ok(0);
        };
        let arr = v.as_array().ok_or_else(|| {
            (
                code::INVALID_PARAMS,
                format!("{key} must be an array of group names"),
            )
        })?;
        let mut names = Vec::new();
        for x in arr {
            match x.as_str() {
                Some("all") => {
                    names.extend(crate::trace::GROUPS.iter().map(|(_, n)| n.to_string()))
                }
                Some(n) => names.push(n.to_string()),
                None => return Err((code::INVALID_PARAMS, format!("{key} must hold strings"))),
            }
        }
        crate::trace::mask_of(&names).map_err(|e| (code::INVALID_PARAMS, e))
    };
    if !params.is_object() {
        return Err((
            code::INVALID_PARAMS,
            "params must be an object {\"enable\": [...], \"disable\": [...]}".into(),
        ));
    }
    let (on, off) = (list("enable")?, list("disable")?);
    // Disable first, then enable: {"disable": ["all"], "enable": ["tcp"]} leaves only tcp on.
    control.set_enabled_mask((control.enabled_mask() & !off) | on);
    Ok(trace_info(shared))
}

fn write_json(stream: &mut UnixStream, v: &Value) -> std::io::Result<()> {
    let mut out = serde_json::to_vec(v).map_err(std::io::Error::other)?;
    out.push(b'\n');
    stream.write_all(&out)
}

fn error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// Answers one request value; `None` for notifications (no `id`).
pub fn handle(req: Value, shared: &Arc<Shared>) -> Option<Value> {
    let Value::Object(obj) = req else {
        return Some(error(
            Value::Null,
            code::INVALID_REQUEST,
            "request must be a JSON object",
        ));
    };
    let id = obj.get("id").cloned();
    let rid = id.clone().unwrap_or(Value::Null);
    if !matches!(rid, Value::Null | Value::Number(_) | Value::String(_)) {
        return Some(error(
            Value::Null,
            code::INVALID_REQUEST,
            "id must be a number, string or null",
        ));
    }
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Some(error(rid, code::INVALID_REQUEST, "jsonrpc must be \"2.0\""));
    }
    let Some(method) = obj.get("method").and_then(Value::as_str) else {
        return Some(error(rid, code::INVALID_REQUEST, "method must be a string"));
    };
    let params = obj.get("params").cloned().unwrap_or(Value::Null);
    if !matches!(params, Value::Null | Value::Object(_) | Value::Array(_)) {
        return Some(error(
            rid,
            code::INVALID_PARAMS,
            "params must be an object or an array",
        ));
    }
    let result = match method {
        "get_config" => Ok(serde_json::to_value(&shared.config).unwrap_or(Value::Null)),
        "get_stats" => Ok(shared.stats_json()),
        "get_subsystems" => Ok(shared.subsystems_json()),
        "trace_get_info" => Ok(trace_info(shared)),
        "trace_set_groups" => trace_set_groups(&params, shared),
        "shutdown" => {
            shared.request_shutdown();
            Ok(Value::Bool(true))
        }
        "rpc_get_methods" => {
            let own = [
                "get_config",
                "get_stats",
                "get_subsystems",
                "trace_get_info",
                "trace_set_groups",
                "shutdown",
                "rpc_get_methods",
            ];
            Ok(json!(own
                .iter()
                .chain(crate::spdk_rpc::METHODS)
                .collect::<Vec<_>>()))
        }
        // SPDK's method names (rpc.py's vocabulary) where the meaning matches.
        _ => crate::spdk_rpc::call(method, &params, shared).unwrap_or_else(|| {
            Err((
                code::METHOD_NOT_FOUND,
                format!("method not found: {method}"),
            ))
        }),
    };
    id.as_ref()?;
    Some(match result {
        Ok(v) => json!({"jsonrpc": "2.0", "id": rid, "result": v}),
        Err((c, m)) => error(rid, c, &m),
    })
}
