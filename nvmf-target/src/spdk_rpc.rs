//! The JSON-RPC methods under SPDK's names, where the meaning matches (`rpc.py` users' muscle
//! memory: `nvmf_get_subsystems`, `nvmf_get_stats`, `nvmf_subsystem_add_host`,
//! `nvmf_subsystem_get_qpairs`, `framework_get_reactors`...), with SPDK's parameter and result
//! shapes as far as the target has the facts. ringside's own methods (`get_stats`,
//! `get_subsystems`...) stay as they are; [`crate::rpc`] dispatches here for the rest.
//!
//! Runs on the RPC thread like the rest of the server: it reads the counters and subsystem
//! tables and changes only what is shared for changing (a subsystem's host access).

use serde_json::{json, Map, Value};

use crate::shared::Shared;
use crate::subsystem::{Subsystem, SubsystemKind};

/// The methods answered here (for `rpc_get_methods`).
/// JSON-RPC 2.0 error codes.
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
}

pub const METHODS: &[&str] = &[
    "nvmf_get_subsystems",
    "nvmf_get_stats",
    "nvmf_subsystem_get_qpairs",
    "nvmf_subsystem_add_host",
    "nvmf_subsystem_remove_host",
    "nvmf_subsystem_allow_any_host",
    "nvmf_subsystem_add_ns",
    "nvmf_subsystem_remove_ns",
    "framework_get_reactors",
    "spdk_get_version",
];

type RpcResult = Result<Value, (i64, String)>;

/// Answers `method` if it is one of [`METHODS`].
pub fn call(method: &str, params: &Value, shared: &Shared) -> Option<RpcResult> {
    Some(match method {
        "nvmf_get_subsystems" => get_subsystems(params, shared),
        "nvmf_get_stats" => Ok(get_stats(shared)),
        "nvmf_subsystem_get_qpairs" => get_qpairs(params, shared),
        "nvmf_subsystem_add_host" => host(params, shared, true),
        "nvmf_subsystem_remove_host" => host(params, shared, false),
        "nvmf_subsystem_allow_any_host" => allow_any_host(params, shared),
        "nvmf_subsystem_add_ns" => add_ns(params, shared),
        "nvmf_subsystem_remove_ns" => remove_ns(params, shared),
        "framework_get_reactors" => Ok(get_reactors(shared)),
        "spdk_get_version" => Ok(json!({
            "version": format!("ringside-tgt {}", env!("CARGO_PKG_VERSION")),
            "fields": {"major": 0, "minor": 0, "patch": 0, "suffix": env!("CARGO_PKG_VERSION")},
        })),
        _ => return None,
    })
}

fn invalid(msg: impl Into<String>) -> (i64, String) {
    (code::INVALID_PARAMS, msg.into())
}

/// The params object (absent params read as `{}`).
fn object<'a>(params: &'a Value, method: &str) -> Result<&'a Map<String, Value>, (i64, String)> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    match params {
        Value::Object(m) => Ok(m),
        Value::Null => Ok(EMPTY.get_or_init(Map::new)),
        _ => Err(invalid(format!("{method}: params must be an object"))),
    }
}

fn string<'a>(m: &'a Map<String, Value>, key: &str) -> Result<&'a str, (i64, String)> {
    m.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{key} (a string) is required")))
}

fn subsystem<'a>(shared: &'a Shared, nqn: &str) -> Result<&'a Subsystem, (i64, String)> {
    shared
        .subsystem(nqn)
        .map(|s| &**s)
        .ok_or_else(|| invalid(format!("Unable to find subsystem with NQN {nqn}")))
}

/// SPDK's listen address object.
fn address(trtype: &str, a: &std::net::SocketAddr) -> Value {
    json!({
        "trtype": trtype,
        "adrfam": if a.is_ipv4() { "IPv4" } else { "IPv6" },
        "traddr": a.ip().to_string(),
        "trsvcid": a.port().to_string(),
    })
}

fn listen_addresses(shared: &Shared) -> Vec<Value> {
    let tcp = shared.listen_addrs.iter().map(|a| address("TCP", a));
    let rdma = shared
        .rdma_listen_addrs()
        .iter()
        .map(|a| address("RDMA", a));
    tcp.chain(rdma).collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// RFC 4122 text form.
fn uuid(b: &[u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// `nvmf_get_subsystems` (optional `{"nqn": ...}` to pick one).
fn get_subsystems(params: &Value, shared: &Shared) -> RpcResult {
    let p = object(params, "nvmf_get_subsystems")?;
    let want = p.get("nqn").and_then(Value::as_str);
    if let Some(n) = want {
        subsystem(shared, n)?;
    }
    let listen = listen_addresses(shared);
    let one = |s: &Subsystem| {
        let access = s.host_access();
        let mut v = json!({
            "nqn": s.nqn,
            "subtype": match s.kind {
                SubsystemKind::Discovery => "Discovery",
                SubsystemKind::Nvm => "NVMe",
            },
            "listen_addresses": listen,
            "allow_any_host": access.allow_any_host,
            "hosts": access.hosts.iter().map(|h| json!({"nqn": h})).collect::<Vec<_>>(),
        });
        if s.kind == SubsystemKind::Nvm {
            v["serial_number"] = json!(s.serial);
            v["model_number"] = json!(s.model);
            v["namespaces"] = s
                .namespaces()
                .iter()
                .map(|n| {
                    let name = format!("{}{}", n.kind, n.nsid);
                    json!({
                        "nsid": n.nsid,
                        "bdev_name": name,
                        "name": name,
                        "nguid": hex(&n.nguid),
                        "uuid": uuid(&n.uuid),
                        "block_size": n.block_size,
                        "num_blocks": n.num_blocks,
                    })
                })
                .collect();
        }
        v
    };
    let all = std::iter::once(&shared.discovery).chain(shared.subsystems.iter());
    Ok(Value::Array(
        all.filter(|s| want.is_none_or(|n| n == s.nqn))
            .map(|s| one(s))
            .collect(),
    ))
}

/// The reactors' entries of `get_stats` (ringside's own shape), whichever way it is produced.
fn reactors(shared: &Shared) -> Vec<Value> {
    match shared.stats_json().get("reactors") {
        Some(Value::Array(r)) => r.clone(),
        _ => Vec::new(),
    }
}

fn u(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// `nvmf_get_stats`: one poll group per reactor. Times are in nanoseconds (`tick_rate` 1e9).
fn get_stats(shared: &Shared) -> Value {
    let mut trtypes = Vec::new();
    if !shared.listen_addrs.is_empty() {
        trtypes.push("TCP");
    }
    if !shared.rdma_listen_addrs().is_empty() {
        trtypes.push("RDMA");
    }
    let groups: Vec<Value> = reactors(shared)
        .iter()
        .map(|r| {
            let qpairs = r.get("qpairs").and_then(Value::as_array);
            let admin = qpairs.map_or(0, |q| q.iter().filter(|x| u(x, "qid") == 0).count());
            let io = qpairs.map_or(0, |q| q.len() - admin.min(q.len()));
            let cmds = r.get("commands").and_then(Value::as_object);
            let nvme_io: u64 = cmds.map_or(0, |c| {
                c.iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "admin" | "fabrics"))
                    .filter_map(|(_, v)| v.as_u64())
                    .sum()
            });
            json!({
                "name": format!("reactor-{}", u(r, "core")),
                "current_admin_qpairs": admin,
                "current_io_qpairs": io,
                "completed_nvme_io": nvme_io,
                "connections_total": u(r, "connections_total"),
                "transports": trtypes.iter().map(|t| json!({"trtype": t})).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({"tick_rate": 1_000_000_000u64, "poll_groups": groups})
}

/// `framework_get_reactors`: busy and idle time per reactor (ns; `tick_rate` 1e9).
fn get_reactors(shared: &Shared) -> Value {
    let interrupt = !matches!(shared.config.idle, crate::config::IdlePolicy::Poll);
    let list: Vec<Value> = reactors(shared)
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let core = u(r, "core");
            json!({
                "lcore": core,
                "busy": u(r, "busy_ns"),
                "idle": u(r, "idle_ns"),
                "in_interrupt": interrupt,
                "lw_threads": [{"name": format!("reactor-{core}"), "id": i}],
            })
        })
        .collect();
    json!({"tick_rate": 1_000_000_000u64, "reactors": list})
}

/// `nvmf_subsystem_get_qpairs {"nqn"}`: every connected queue of the subsystem's controllers.
fn get_qpairs(params: &Value, shared: &Shared) -> RpcResult {
    let p = object(params, "nvmf_subsystem_get_qpairs")?;
    let s = subsystem(shared, string(p, "nqn")?)?;
    let mut out = Vec::new();
    for c in s.controllers() {
        for qid in c.connected_qids() {
            out.push(json!({
                "cntlid": c.cntlid,
                "qid": qid,
                "state": "active",
                "hostnqn": c.hostnqn,
            }));
        }
    }
    Ok(Value::Array(out))
}

/// `nvmf_subsystem_add_host` / `nvmf_subsystem_remove_host {"nqn", "host"}`.
fn host(params: &Value, shared: &Shared, add: bool) -> RpcResult {
    let method = if add {
        "nvmf_subsystem_add_host"
    } else {
        "nvmf_subsystem_remove_host"
    };
    let p = object(params, method)?;
    let s = subsystem(shared, string(p, "nqn")?)?;
    let h = string(p, "host")?;
    if s.kind == SubsystemKind::Discovery {
        return Err(invalid("the discovery subsystem allows any host"));
    }
    if add {
        nvme_proto::fabrics::Nqn::new(h).map_err(|e| invalid(format!("host: {e}")))?;
        if !s.add_host(h) {
            return Err(invalid(format!("host {h} is already allowed on {}", s.nqn)));
        }
    } else if !s.remove_host(h) {
        return Err(invalid(format!("host {h} is not on {}'s list", s.nqn)));
    }
    Ok(Value::Bool(true))
}

/// `nvmf_subsystem_allow_any_host {"nqn", "allow_any_host": bool}`.
fn allow_any_host(params: &Value, shared: &Shared) -> RpcResult {
    let p = object(params, "nvmf_subsystem_allow_any_host")?;
    let s = subsystem(shared, string(p, "nqn")?)?;
    let allow = p
        .get("allow_any_host")
        .and_then(Value::as_bool)
        .ok_or_else(|| invalid("allow_any_host (a boolean) is required"))?;
    if s.kind == SubsystemKind::Discovery {
        return Err(invalid("the discovery subsystem allows any host"));
    }
    s.set_allow_any_host(allow);
    Ok(Value::Bool(true))
}

/// `nvmf_subsystem_add_ns {"nqn", "namespace": {"nsid"?, "backend", "size", "block_size"?,
/// "path"?}}`: the namespace object is a `[[subsystems.namespaces]]` table of the config file
/// (ringside has no separate bdev layer, so it names the backend where SPDK names a bdev).
/// Returns the NSID. Hosts get the Namespace Attribute Changed notice.
fn add_ns(params: &Value, shared: &Shared) -> RpcResult {
    use crate::config::{BackendKind, NamespaceConfig};
    let p = object(params, "nvmf_subsystem_add_ns")?;
    let nqn = string(p, "nqn")?;
    let s = subsystem(shared, nqn)?;
    if s.kind == SubsystemKind::Discovery {
        return Err(invalid("the discovery subsystem has no namespaces"));
    }
    let raw = p.get("namespace").cloned().ok_or_else(|| {
        invalid("namespace (an object: backend, size, block_size, nsid, path) is required")
    })?;
    let ns: NamespaceConfig =
        serde_json::from_value(raw).map_err(|e| invalid(format!("namespace: {e}")))?;
    let uring = ns.backend.sized_by_device();
    if !(matches!(ns.block_size, 512 | 4096) || (uring && ns.block_size == 0)) {
        return Err(invalid(format!(
            "namespace: block size {} (use 512 or 4096)",
            ns.block_size
        )));
    }
    let bs = u64::from(ns.block_size.max(1));
    if !uring && (ns.size.0 == 0 || ns.size.0 % bs != 0) {
        return Err(invalid(format!(
            "namespace: size {} must be a non-zero multiple of the block size {}",
            ns.size, ns.block_size
        )));
    }
    if ns.backend == BackendKind::Malloc && ns.size.0 > (1u64 << 46) {
        return Err(invalid(format!(
            "namespace: malloc size {} is unreasonably large",
            ns.size
        )));
    }
    let added = shared.add_namespace(nqn, &ns).map_err(invalid)?;
    Ok(json!(added.nsid))
}

/// `nvmf_subsystem_remove_ns {"nqn", "nsid"}`: the namespace stops answering (Invalid Namespace)
/// and hosts get the Namespace Attribute Changed notice; its NSID is not reused.
fn remove_ns(params: &Value, shared: &Shared) -> RpcResult {
    let p = object(params, "nvmf_subsystem_remove_ns")?;
    let s = subsystem(shared, string(p, "nqn")?)?;
    let nsid = p
        .get("nsid")
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| invalid("nsid (a number) is required"))?;
    if !s.remove_namespace(nsid) {
        return Err(invalid(format!("no active namespace {nsid} in {}", s.nqn)));
    }
    Ok(Value::Bool(true))
}
