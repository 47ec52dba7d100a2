//! `run`: one complete measurement. The calling thread is the coordinator: it resolves the
//! subsystem (Discovery when no subnqn is given), brings up the admin queue, plans the qpairs,
//! starts one worker thread per core (see `worker`), steps them through their phases with an
//! atomic gate while sending Keep Alive, joins them, merges their statistics and shuts the
//! controller down. Nothing here runs on the I/O path.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

pub use crate::config::PerfConfig;
pub use crate::report::PerfReport;

use crate::config::ConfigError;
use crate::cpu::CpuError;
use crate::error_chain;
use crate::host::{default_hostnqn, generate_hostid, AdminSession, HostError, HostParams};
use crate::report::{CoreResult, NamespaceInfo, TargetInfo, Totals, VerifySummary};
use crate::stats::IoStats;
use crate::trid::DISCOVERY_NQN;
use crate::worker::{
    run_worker, LanePlan, NsTarget, WorkerEvent, WorkerResult, WorkerSpec, GATE_ABORT,
    GATE_PREFILL, GATE_RUN,
};
use nvme_proto::log::{subtype, trtype, DiscoveryEntry};

/// Why a run could not produce a report.
#[derive(Debug, thiserror::Error)]
pub enum PerfError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Cpu(#[from] CpuError),
    #[error("controller at {addr}")]
    Host {
        addr: SocketAddr,
        #[source]
        source: HostError,
    },
    #[error("discovery at {addr}: {what}")]
    Discovery { addr: SocketAddr, what: String },
    #[error("{what}")]
    Setup { what: String },
    #[error("worker on core {core} failed: {error}")]
    Worker { core: u32, error: String },
}

fn setup(what: impl Into<String>) -> PerfError {
    PerfError::Setup { what: what.into() }
}

/// How long the slow path waits for any single answer.
const SLOW_PATH_TIMEOUT: Duration = Duration::from_secs(10);

/// Picks the subsystem to use from Discovery log entries: the first NVM subsystem reachable
/// over the transport asked for (`want`: a `trtype` value), else the first NVM subsystem; at
/// its own address when it names a usable one, else the discovery address.
pub fn pick_subsystem(
    entries: &[DiscoveryEntry],
    fallback: SocketAddr,
    want: u8,
) -> Option<(String, SocketAddr)> {
    let e = entries
        .iter()
        .find(|e| e.subtype == subtype::NVME && e.trtype == want)
        .or_else(|| entries.iter().find(|e| e.subtype == subtype::NVME))?;
    let addr = match (e.traddr.parse::<IpAddr>(), e.trsvcid.parse::<u16>()) {
        (Ok(ip), Ok(port)) if !ip.is_unspecified() && port != 0 => SocketAddr::new(ip, port),
        _ => fallback,
    };
    Some((e.subnqn.to_string(), addr))
}

fn discover(base: &HostParams) -> Result<(String, SocketAddr), PerfError> {
    let addr = base.addr;
    let mut p = base.clone();
    p.subnqn = DISCOVERY_NQN.to_string();
    p.kato = Duration::ZERO;
    let host = |source| PerfError::Host { addr, source };
    let mut s = AdminSession::connect(p).map_err(host)?;
    let entries = s.discovery_log().map_err(host)?;
    let _ = s.shutdown();
    let want = if base.rdma { trtype::RDMA } else { trtype::TCP };
    pick_subsystem(&entries, addr, want).ok_or_else(|| PerfError::Discovery {
        addr,
        what: format!(
            "the discovery log lists no NVM subsystem ({} entries)",
            entries.len()
        ),
    })
}

/// Runs the configured workload and returns its report. Transport failures during the run and
/// verify mismatches are in the report (see `PerfReport::ok`); setup failures are errors.
pub fn run(cfg: &PerfConfig) -> Result<PerfReport, PerfError> {
    cfg.validate()?;
    let _main_thread = if cfg.pin {
        crate::cpu::check_cores(&cfg.cores)?;
        Some(crate::cpu::confine_current_thread(&cfg.cores)?)
    } else {
        None
    };
    let hostid = generate_hostid();
    let hostnqn = cfg
        .hostnqn
        .clone()
        .or_else(|| cfg.trid.hostnqn.clone())
        .unwrap_or_else(|| default_hostnqn(&hostid));
    let mut params = HostParams {
        addr: cfg.trid.socket_addr(),
        subnqn: String::new(),
        hostnqn,
        hostid,
        header_digest: cfg.header_digest,
        data_digest: cfg.data_digest,
        kato: cfg.keep_alive,
        socket_buffer: cfg.socket_buffer.map(|n| n as usize),
        disable_sq_flow_control: !cfg.sq_flow_control,
        rdma: cfg.trid.trtype == crate::trid::TrType::Rdma,
        timeout: SLOW_PATH_TIMEOUT.min(cfg.io_timeout.max(Duration::from_secs(1))),
    };
    match &cfg.trid.subnqn {
        Some(n) => params.subnqn = n.clone(),
        None => {
            let (nqn, addr) = discover(&params)?;
            params.subnqn = nqn;
            params.addr = addr;
        }
    }
    let addr = params.addr;
    let host = |source| PerfError::Host { addr, source };
    let mut admin = AdminSession::connect(params.clone()).map_err(host)?;
    let result = run_with_admin(cfg, &mut admin, &params);
    let shutdown = admin.shutdown();
    let mut report = result?;
    if let Err(e) = shutdown {
        report.fatal.push(format!("shutdown: {}", error_chain(&e)));
    }
    Ok(report)
}

fn run_with_admin(
    cfg: &PerfConfig,
    admin: &mut AdminSession,
    params: &HostParams,
) -> Result<PerfReport, PerfError> {
    let addr = params.addr;
    let host = |source| PerfError::Host { addr, source };
    let idc = admin.identify_controller().map_err(host)?;
    // Fabrics data pointers are SGLs; Linux refuses controllers that do not claim them too.
    use nvme_proto::identify::sgls;
    if idc.sgls & (sgls::SUPPORTED | sgls::SUPPORTED_DWORD_ALIGNED) == 0 {
        return Err(setup(format!(
            "controller {} does not report SGL support (Identify SGLS {:#x})",
            params.subnqn, idc.sgls
        )));
    }
    let mut nss = admin.namespaces().map_err(host)?;
    if let Some(want) = cfg.trid.nsid {
        nss.retain(|(n, _)| *n == want);
        if nss.is_empty() {
            return Err(setup(format!(
                "namespace {want} is not active on {}",
                params.subnqn
            )));
        }
    }
    if nss.is_empty() {
        return Err(setup(format!(
            "subsystem {} has no active namespace",
            params.subnqn
        )));
    }
    // Data transfer limits.
    let mdts_bytes = idc.max_transfer_bytes(admin.cap.mpsmin);
    if let Some(m) = mdts_bytes {
        if cfg.io_size > m && !cfg.over_mdts {
            return Err(setup(format!(
                "i/o size {} exceeds the controller's maximum data transfer size {m} (MDTS {})",
                cfg.io_size, idc.mdts
            )));
        }
    }
    let ioccsz_bytes = idc.ioccsz.saturating_mul(16);
    let in_capsule = idc.in_capsule_data_size();
    // MQES is zero-based: the controller takes queues of up to MQES + 1 entries.
    if cfg.queue_depth > u32::from(admin.cap.mqes) + 1 {
        return Err(setup(format!(
            "queue depth {} exceeds the controller's queue size limit of {} entries (CAP.MQES {})",
            cfg.queue_depth,
            u32::from(admin.cap.mqes) + 1,
            admin.cap.mqes
        )));
    }
    let mut targets = Vec::new();
    let mut ns_info = Vec::new();
    for (nsid, ns) in &nss {
        let Some(block_size) = ns.block_size() else {
            return Err(setup(format!(
                "namespace {nsid} reports an invalid lba format (flbas {:#x})",
                ns.flbas
            )));
        };
        let size = ns.nsze.saturating_mul(u64::from(block_size));
        if cfg.io_size % u64::from(block_size) != 0 {
            return Err(setup(format!(
                "i/o size {} is not a multiple of namespace {nsid}'s block size {block_size}",
                cfg.io_size
            )));
        }
        let working = cfg.range.map_or(size, |r| r.min(size));
        let units = working / cfg.io_size;
        if units == 0 {
            return Err(setup(format!(
                "namespace {nsid} ({size} bytes) is smaller than one i/o of {} bytes",
                cfg.io_size
            )));
        }
        targets.push(NsTarget {
            nsid: *nsid,
            block_size,
            units,
        });
        ns_info.push(NamespaceInfo {
            nsid: *nsid,
            blocks: ns.nsze,
            block_size,
            size_bytes: size,
        });
    }
    let per_core = targets.len() * cfg.qpairs_per_ns as usize;
    let total = per_core * cfg.cores.len();
    if total > 65534 {
        return Err(setup(format!(
            "{total} i/o qpairs are more than NVMe allows"
        )));
    }
    let (nsq, ncq) = admin.set_number_of_queues(total as u16).map_err(host)?;
    let granted = nsq.min(ncq);
    if (granted as usize) < total {
        return Err(setup(format!(
            "the controller grants {granted} i/o queues, the run needs {total} ({} cores x {} namespaces x {} qpairs)",
            cfg.cores.len(),
            targets.len(),
            cfg.qpairs_per_ns
        )));
    }
    // Plan: lane g (global) on namespace t, k-th of the lanes on that namespace.
    let lanes_per_ns = cfg.cores.len() as u64 * u64::from(cfg.qpairs_per_ns);
    let mut specs = Vec::new();
    let mut qid = 1u16;
    let mut g = 0u64;
    let mut k_per_ns = vec![0u64; targets.len()];
    for core in &cfg.cores {
        let mut lanes = Vec::new();
        for (ti, t) in targets.iter().enumerate() {
            for _ in 0..cfg.qpairs_per_ns {
                let k = k_per_ns[ti];
                k_per_ns[ti] += 1;
                let stripe = (t.units * k / lanes_per_ns, t.units * (k + 1) / lanes_per_ns);
                let limit = match cfg.io_limit {
                    None => u64::MAX,
                    Some(n) => n / total as u64 + u64::from(g < n % total as u64),
                };
                lanes.push(LanePlan {
                    qid,
                    ns: *t,
                    stripe,
                    limit,
                });
                qid += 1;
                g += 1;
            }
        }
        specs.push(WorkerSpec {
            core: *core,
            cfg: cfg.clone(),
            host: params.clone(),
            cntlid: admin.cntlid,
            in_capsule,
            lanes,
        });
    }

    let gate = Arc::new(AtomicU8::new(0));
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::new();
    for spec in specs {
        let gate = gate.clone();
        let tx = tx.clone();
        let core = spec.core;
        let h = std::thread::Builder::new()
            .name(format!("perf-core-{core}"))
            .spawn(move || run_worker(spec, gate, tx))
            .map_err(|e| setup(format!("cannot start worker thread: {e}")))?;
        handles.push((core, h));
    }
    drop(tx);
    let n = handles.len();
    let mut fatal = Vec::new();

    let abort =
        |gate: &AtomicU8,
         handles: Vec<(crate::units::CoreId, std::thread::JoinHandle<WorkerResult>)>| {
            gate.store(GATE_ABORT, Ordering::Release);
            for (_, h) in handles {
                let _ = h.join();
            }
        };
    // Phase 1: everybody connected; phase 2 (verify): everybody prefilled.
    let phases: &[(u8, bool)] = if cfg.verify {
        &[(0, false), (GATE_PREFILL, true)]
    } else {
        &[(0, false)]
    };
    for &(set, prefill) in phases {
        if set != 0 {
            gate.store(set, Ordering::Release);
        }
        let mut got = 0;
        while got < n {
            if let Err(e) = admin.keep_alive_if_due() {
                abort(&gate, handles);
                return Err(host(e));
            }
            match rx.recv_timeout(Duration::from_millis(20)) {
                Ok(WorkerEvent::Connected { .. }) if !prefill => got += 1,
                Ok(WorkerEvent::Prefilled { .. }) if prefill => got += 1,
                Ok(WorkerEvent::Failed { core, error }) => {
                    abort(&gate, handles);
                    return Err(PerfError::Worker {
                        core: core.0,
                        error,
                    });
                }
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    abort(&gate, handles);
                    return Err(setup("a worker thread exited unexpectedly"));
                }
            }
        }
    }
    gate.store(GATE_RUN, Ordering::Release);
    while handles.iter().any(|(_, h)| !h.is_finished()) {
        if let Err(e) = admin.keep_alive_if_due() {
            fatal.push(format!("keep alive: {}", error_chain(&e)));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut results = Vec::new();
    for (core, h) in handles {
        match h.join() {
            Ok(r) => results.push(r),
            Err(_) => fatal.push(format!("worker on core {core} panicked")),
        }
    }

    // Merge.
    let mut total_stats = IoStats::new();
    let mut cores = Vec::new();
    let mut mismatches = Vec::new();
    let mut prefilled = 0;
    let mut max_elapsed = 0f64;
    let mut transport = crate::transport::TransportCounters::default();
    for r in &results {
        transport.add(&r.transport);
        total_stats.merge(&r.stats);
        let el = r.elapsed.as_secs_f64();
        max_elapsed = max_elapsed.max(el);
        cores.push(CoreResult {
            core: r.core,
            qpairs: r.qpairs,
            totals: Totals::from_stats(&r.stats, el),
            fatal: r.fatal.clone(),
            transport: r.transport,
            usage: r.usage,
        });
        fatal.extend(r.fatal.iter().cloned());
        mismatches.extend(r.mismatches.iter().copied());
        prefilled += r.prefilled_bytes;
    }
    mismatches.truncate(8);
    let errors: BTreeMap<String, u64> = total_stats.errors.clone();
    let verify = cfg.verify.then_some(VerifySummary {
        prefilled_bytes: prefilled,
        checked_blocks: total_stats.verified_blocks,
        mismatches: total_stats.mismatches,
        first: mismatches,
    });
    let vs = admin.vs;
    let target = TargetInfo {
        transport: if params.rdma { "RDMA" } else { "TCP" }.into(),
        address: addr.to_string(),
        subnqn: params.subnqn.clone(),
        hostnqn: params.hostnqn.clone(),
        cntlid: admin.cntlid,
        model: idc.mn.clone(),
        serial: idc.sn.clone(),
        firmware: idc.fr.clone(),
        version: format!("{}.{}.{}", vs >> 16, (vs >> 8) & 0xff, vs & 0xff),
        mdts_bytes,
        ioccsz_bytes,
        in_capsule_limit: in_capsule,
        maxh2cdata: admin.maxh2cdata(),
        header_digest: admin.qpair_limits().header_digest,
        data_digest: admin.qpair_limits().data_digest,
        io_queues_granted: granted,
        namespaces: ns_info,
    };
    Ok(PerfReport {
        tool: "ringside-perf",
        version: env!("CARGO_PKG_VERSION"),
        config: cfg.clone(),
        target,
        total: Totals::from_stats(&total_stats, max_elapsed),
        cores,
        errors,
        fatal,
        verify,
        transport,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(st: u8, tr: u8, nqn: &str, addr: &str, port: &str) -> DiscoveryEntry {
        let nqn = nvme_proto::fabrics::Nqn::new(nqn).expect("valid nqn");
        let mut e = DiscoveryEntry::tcp(nqn, st, addr, 1, 1);
        e.trtype = tr;
        e.trsvcid = port.into();
        e
    }

    #[test]
    fn discovery_picks_the_first_nvm_subsystem_of_the_asked_transport() {
        let fallback: SocketAddr = "127.0.0.1:8009".parse().expect("addr");
        let entries = vec![
            entry(3, 3, DISCOVERY_NQN, "127.0.0.1", "8009"),
            entry(2, 1, "nqn.x:rdma", "10.0.0.1", "4420"),
            entry(2, 3, "nqn.x:tcp", "127.0.0.2", "4421"),
        ];
        let (nqn, a) = pick_subsystem(&entries, fallback, trtype::TCP).expect("one nvm subsystem");
        assert_eq!(nqn, "nqn.x:tcp");
        assert_eq!(a.to_string(), "127.0.0.2:4421");
        let (nqn, a) = pick_subsystem(&entries, fallback, trtype::RDMA).expect("the rdma one");
        assert_eq!(
            (nqn.as_str(), a.to_string()),
            ("nqn.x:rdma", "10.0.0.1:4420".into())
        );
        let entries = vec![entry(2, 3, "nqn.x:any", "0.0.0.0", "4420")];
        let (_, a) = pick_subsystem(&entries, fallback, trtype::RDMA).expect("any nvm subsystem");
        assert_eq!(a, fallback, "wildcard listener address falls back");
        assert!(
            pick_subsystem(&[entry(3, 3, DISCOVERY_NQN, "", "")], fallback, trtype::TCP).is_none()
        );
    }
}
