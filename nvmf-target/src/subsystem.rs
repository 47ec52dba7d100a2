//! Subsystems, namespaces and controllers: the slow-path shared state.
//!
//! Subsystems are built once at start and shared by every reactor through `Arc`s. Their
//! namespaces sit in fixed slots filled in order (`OnceLock`s, never emptied), so a namespace
//! added at run time by the RPC becomes visible to every reactor's I/O path without a lock, and
//! a removed one is only marked inactive; the RPC first has every reactor open a queue on the
//! new bdev. Host access (allow any host, the list) changes at run time under a `Mutex` read on
//! Connect only. Controllers are created by an admin-queue Connect on whichever
//! reactor received it and are shared through the subsystem's controller table (a `Mutex`,
//! touched only on Connect and teardown, never on Read/Write). What the I/O path of another
//! reactor needs from a controller is only the `failed` flag, read at timer ticks. The
//! controller's register state (CC, CSTS, features, AERs) is owned by its admin connection and
//! lives there, not here.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::backend::Bdev;
use crate::config::{BackendKind, SubsystemConfig, DISCOVERY_NQN};

/// Whether a subsystem serves storage or the discovery log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubsystemKind {
    Discovery,
    Nvm,
}

/// A namespace: a bdev exposed under an NSID.
pub struct Namespace {
    pub nsid: u32,
    /// Index into the target's bdev list (and each reactor's queue list).
    pub bdev_index: usize,
    pub bdev: Arc<dyn Bdev>,
    pub block_size: u32,
    pub num_blocks: u64,
    pub kind: BackendKind,
    pub nguid: [u8; 16],
    pub uuid: [u8; 16],
    /// Cleared when the namespace is removed at run time (its slot is not reused).
    active: AtomicBool,
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("nsid", &self.nsid)
            .field("kind", &self.kind)
            .field("block_size", &self.block_size)
            .field("num_blocks", &self.num_blocks)
            .finish()
    }
}

/// Namespaces a subsystem may gain at run time beyond its configured ones.
pub const MAX_RUNTIME_NAMESPACES: usize = 32;
/// NN reported at least (SPDK's default `max_namespaces`), so hosts accept NSIDs added later.
pub const MIN_MAX_NSID: u32 = 32;

impl Namespace {
    fn new(nqn: &str, nsid: u32, bdev: &Arc<dyn Bdev>, bdev_index: usize) -> Arc<Namespace> {
        let nguid = stable_id(nqn, nsid, 0x6e67);
        let mut uuid = stable_id(nqn, nsid, 0x7575);
        uuid[6] = (uuid[6] & 0x0f) | 0x40; // version 4 layout
        uuid[8] = (uuid[8] & 0x3f) | 0x80; // RFC 4122 variant
        Arc::new(Namespace {
            nsid,
            bdev_index,
            bdev: bdev.clone(),
            block_size: bdev.block_size(),
            num_blocks: bdev.num_blocks(),
            kind: bdev.kind(),
            nguid,
            uuid,
            active: AtomicBool::new(true),
        })
    }

    /// log2 of the block size (LBADS).
    pub fn lbads(&self) -> u8 {
        self.block_size.trailing_zeros() as u8
    }
}

/// A controller: one host association (admin queue plus its I/O queues).
#[derive(Debug)]
pub struct Controller {
    pub cntlid: u16,
    pub hostnqn: String,
    pub hostid: [u8; 16],
    /// Number of I/O queues granted (Set Features Number of Queues); 0 until negotiated, then
    /// I/O Connects may use qid 1..=granted.
    pub io_queues_granted: AtomicU32,
    /// Set when the association is torn down (admin queue gone, keep-alive expired, shutdown).
    /// Reactors close every connection of a failed controller at their next timer tick.
    pub failed: AtomicBool,
    /// Which qids are connected (index 0 = admin).
    qids: Mutex<Vec<bool>>,
    /// A Namespace Attribute Changed notice waits for an AER (checked at the admin queue's
    /// timer tick and when an AER arrives).
    pub ns_notice: AtomicBool,
    /// NSIDs changed since the host last read the Changed Namespace List log.
    changed_ns: Mutex<Vec<u32>>,
}

impl Controller {
    /// Marks qid connected; false if it already was.
    pub fn claim_qid(&self, qid: u16) -> bool {
        let mut q = self.qids.lock().unwrap_or_else(|e| e.into_inner());
        let i = usize::from(qid);
        if q.len() <= i {
            q.resize(i + 1, false);
        }
        !std::mem::replace(&mut q[i], true)
    }

    pub fn release_qid(&self, qid: u16) {
        let mut q = self.qids.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = q.get_mut(usize::from(qid)) {
            *s = false;
        }
    }

    pub fn connected_qids(&self) -> Vec<u16> {
        let q = self.qids.lock().unwrap_or_else(|e| e.into_inner());
        q.iter()
            .enumerate()
            .filter(|(_, &c)| c)
            .map(|(i, _)| i as u16)
            .collect()
    }

    pub fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Records a changed namespace for the log and raises the notice.
    pub fn namespace_changed(&self, nsid: u32) {
        let mut c = self.changed_ns.lock().unwrap_or_else(|e| e.into_inner());
        if !c.contains(&nsid) {
            c.push(nsid);
        }
        self.ns_notice.store(true, Ordering::Release);
    }

    /// The Changed Namespace List (sorted; more than 1024 reads as the overflow entry
    /// 0xFFFFFFFF), cleared by the read.
    pub fn take_changed_namespaces(&self) -> Vec<u32> {
        let mut c = std::mem::take(&mut *self.changed_ns.lock().unwrap_or_else(|e| e.into_inner()));
        if c.len() > 1024 {
            return vec![u32::MAX];
        }
        c.sort_unstable();
        c
    }
}

/// An NVM or discovery subsystem.
pub struct Subsystem {
    pub nqn: String,
    pub kind: SubsystemKind,
    pub serial: String,
    pub model: String,
    /// Who may connect: any host, or the listed ones. Changed at run time by the RPC
    /// (`nvmf_subsystem_add_host`...); read on Connect and for the discovery log only.
    hosts: Mutex<HostAccess>,
    /// Namespace slots, filled in order and never emptied, so the I/O path finds a namespace
    /// without a lock (a namespace added at run time takes the next slot; a removed one is
    /// marked inactive). Read them through [`Subsystem::namespace`] and
    /// [`Subsystem::namespaces`].
    ns_slots: Box<[OnceLock<Arc<Namespace>>]>,
    /// Serialises namespace additions (slow path).
    ns_add: Mutex<()>,
    /// NN in Identify Controller: the largest NSID the subsystem may ever have.
    pub max_nsid: u32,
    ctrls: Mutex<CtrlTable>,
}

impl std::fmt::Debug for Subsystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subsystem")
            .field("nqn", &self.nqn)
            .field("kind", &self.kind)
            .finish()
    }
}

/// A subsystem's host access: SPDK's model, an allow-any flag beside an explicit list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostAccess {
    pub allow_any_host: bool,
    pub hosts: Vec<String>,
}

#[derive(Default)]
struct CtrlTable {
    by_id: BTreeMap<u16, Arc<Controller>>,
    next: u16,
}

/// Why a controller could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateCtrlError {
    HostNotAllowed,
    NoFreeCntlid,
}

impl Subsystem {
    pub fn discovery() -> Subsystem {
        Subsystem {
            nqn: DISCOVERY_NQN.to_string(),
            kind: SubsystemKind::Discovery,
            serial: "RINGSIDEDISC".into(),
            model: "ringside discovery".into(),
            hosts: Mutex::new(HostAccess {
                allow_any_host: true,
                hosts: Vec::new(),
            }),
            ns_slots: Box::new([]),
            ns_add: Mutex::new(()),
            max_nsid: 0,
            ctrls: Mutex::new(CtrlTable::default()),
        }
    }

    /// Builds an NVM subsystem; `bdevs` are the already created bdevs of its namespaces, in
    /// order, and `first_bdev_index` the target-wide index of the first one.
    pub fn nvm(
        cfg: &SubsystemConfig,
        bdevs: &[Arc<dyn Bdev>],
        first_bdev_index: usize,
    ) -> Subsystem {
        let slots: Vec<OnceLock<Arc<Namespace>>> = (0..cfg.namespaces.len()
            + MAX_RUNTIME_NAMESPACES)
            .map(|_| OnceLock::new())
            .collect();
        let mut max_nsid = MIN_MAX_NSID;
        for (i, (ns, bdev)) in cfg.namespaces.iter().zip(bdevs).enumerate() {
            let nsid = ns.nsid.unwrap_or(i as u32 + 1);
            max_nsid = max_nsid.max(nsid);
            let _ = slots[i].set(Namespace::new(&cfg.nqn, nsid, bdev, first_bdev_index + i));
        }
        Subsystem {
            nqn: cfg.nqn.clone(),
            kind: SubsystemKind::Nvm,
            serial: cfg.serial.clone(),
            model: cfg.model.clone(),
            hosts: Mutex::new(HostAccess {
                allow_any_host: cfg.allowed_hosts.is_empty(),
                hosts: cfg.allowed_hosts.clone(),
            }),
            ns_slots: slots.into_boxed_slice(),
            ns_add: Mutex::new(()),
            max_nsid,
            ctrls: Mutex::new(CtrlTable::default()),
        }
    }

    pub fn host_allowed(&self, hostnqn: &str) -> bool {
        let h = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        h.allow_any_host || h.hosts.iter().any(|x| x == hostnqn)
    }

    /// Who may connect now.
    pub fn host_access(&self) -> HostAccess {
        self.hosts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Adds a host to the list (`false`: it was there already). A subsystem that allows any
    /// host keeps doing so (as SPDK's does) until `set_allow_any_host(false)`.
    pub fn add_host(&self, hostnqn: &str) -> bool {
        let mut h = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        if h.hosts.iter().any(|x| x == hostnqn) {
            return false;
        }
        h.hosts.push(hostnqn.to_string());
        true
    }

    /// Removes a host from the list (`false`: it was not there). Its connected controllers stay
    /// (as in SPDK); new Connects from it are refused unless any host is allowed.
    pub fn remove_host(&self, hostnqn: &str) -> bool {
        let mut h = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        let before = h.hosts.len();
        h.hosts.retain(|x| x != hostnqn);
        h.hosts.len() != before
    }

    pub fn set_allow_any_host(&self, allow: bool) {
        self.hosts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .allow_any_host = allow;
    }

    /// The namespace with `nsid`, if active (no lock: the I/O path calls it per command).
    #[inline]
    pub fn namespace(&self, nsid: u32) -> Option<&Arc<Namespace>> {
        self.namespace_slot(nsid)
            .filter(|n| n.active.load(Ordering::Relaxed))
    }

    /// The namespace with `nsid`, active or removed (its memory stays until the subsystem goes:
    /// data of a read that completed before a removal is still sent from it).
    #[inline]
    pub fn namespace_slot(&self, nsid: u32) -> Option<&Arc<Namespace>> {
        // O(1) in the usual layout (NSIDs 1..n in slot order); a scan otherwise.
        let direct = (nsid as usize)
            .checked_sub(1)
            .and_then(|i| self.ns_slots.get(i))
            .and_then(OnceLock::get)
            .filter(|n| n.nsid == nsid);
        direct.or_else(|| {
            self.ns_slots
                .iter()
                .map_while(OnceLock::get)
                .find(|n| n.nsid == nsid)
        })
    }

    /// The active namespaces, sorted by NSID (slow path).
    pub fn namespaces(&self) -> Vec<Arc<Namespace>> {
        let mut v: Vec<Arc<Namespace>> = self
            .ns_slots
            .iter()
            .map_while(OnceLock::get)
            .filter(|n| n.active.load(Ordering::Relaxed))
            .cloned()
            .collect();
        v.sort_by_key(|n| n.nsid);
        v
    }

    /// Adds a namespace at run time over `bdev` (whose queue every reactor already has at
    /// `bdev_index`); `nsid` None takes the lowest free one. Every controller is told (the
    /// Namespace Attribute Changed notice and the Changed Namespace List log).
    pub fn add_namespace(
        &self,
        nsid: Option<u32>,
        bdev: &Arc<dyn Bdev>,
        bdev_index: usize,
    ) -> Result<Arc<Namespace>, &'static str> {
        if self.kind == SubsystemKind::Discovery {
            return Err("the discovery subsystem has no namespaces");
        }
        let _g = self.ns_add.lock().unwrap_or_else(|e| e.into_inner());
        let used = |id: u32| {
            self.ns_slots
                .iter()
                .map_while(OnceLock::get)
                .any(|n| n.nsid == id)
        };
        let nsid = match nsid {
            Some(0) | Some(u32::MAX) => return Err("nsid 0 and 0xffffffff are reserved"),
            Some(id) if id > self.max_nsid => return Err("nsid above the subsystem's maximum"),
            Some(id) if used(id) => return Err("nsid in use (or used before) in this subsystem"),
            Some(id) => id,
            None => (1..=self.max_nsid)
                .find(|&id| !used(id))
                .ok_or("no free nsid")?,
        };
        let slot = self
            .ns_slots
            .iter()
            .find(|s| s.get().is_none())
            .ok_or("no room for another namespace in this subsystem")?;
        let ns = Namespace::new(&self.nqn, nsid, bdev, bdev_index);
        let _ = slot.set(ns.clone());
        self.namespace_changed(nsid);
        Ok(ns)
    }

    /// Removes a namespace at run time (its NSID is not reused); every controller is told.
    pub fn remove_namespace(&self, nsid: u32) -> bool {
        let _g = self.ns_add.lock().unwrap_or_else(|e| e.into_inner());
        let Some(ns) = self.namespace(nsid) else {
            return false;
        };
        ns.active.store(false, Ordering::Relaxed);
        self.namespace_changed(nsid);
        true
    }

    fn namespace_changed(&self, nsid: u32) {
        for c in self.controllers() {
            c.namespace_changed(nsid);
        }
    }

    /// Creates a controller for an admin Connect (cntlid 0xFFFF or 0xFFFE: dynamic model).
    pub fn create_controller(
        &self,
        hostnqn: &str,
        hostid: [u8; 16],
    ) -> Result<Arc<Controller>, CreateCtrlError> {
        if self.kind == SubsystemKind::Nvm && !self.host_allowed(hostnqn) {
            return Err(CreateCtrlError::HostNotAllowed);
        }
        let mut t = self.ctrls.lock().unwrap_or_else(|e| e.into_inner());
        // cntlid 1..=0xFFEF are valid; reuse freed ids only after wrapping.
        let mut id = t.next;
        for _ in 0..0xFFEF {
            id = if id >= 0xFFEF { 1 } else { id + 1 };
            if !t.by_id.contains_key(&id) {
                t.next = id;
                let c = Arc::new(Controller {
                    cntlid: id,
                    hostnqn: hostnqn.to_string(),
                    hostid,
                    io_queues_granted: AtomicU32::new(0),
                    failed: AtomicBool::new(false),
                    qids: Mutex::new(vec![true]),
                    ns_notice: AtomicBool::new(false),
                    changed_ns: Mutex::new(Vec::new()),
                });
                t.by_id.insert(id, c.clone());
                return Ok(c);
            }
        }
        Err(CreateCtrlError::NoFreeCntlid)
    }

    pub fn controller(&self, cntlid: u16) -> Option<Arc<Controller>> {
        let t = self.ctrls.lock().unwrap_or_else(|e| e.into_inner());
        t.by_id.get(&cntlid).cloned()
    }

    /// Tears a controller down: marks it failed (its I/O connections close at their reactor's
    /// next tick) and removes it from the table.
    pub fn remove_controller(&self, cntlid: u16) {
        let mut t = self.ctrls.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = t.by_id.remove(&cntlid) {
            c.failed.store(true, Ordering::Relaxed);
        }
    }

    pub fn controllers(&self) -> Vec<Arc<Controller>> {
        let t = self.ctrls.lock().unwrap_or_else(|e| e.into_inner());
        t.by_id.values().cloned().collect()
    }
}

/// A 16-byte identifier that is the same across restarts for the same (NQN, NSID), so hosts
/// see a stable NGUID/UUID.
fn stable_id(nqn: &str, nsid: u32, salt: u16) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, half) in out.chunks_exact_mut(8).enumerate() {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (nqn, nsid, salt, i).hash(&mut h);
        half.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controllers_get_distinct_ids_and_qids_claim_once() {
        let s = Subsystem::discovery();
        let a = s
            .create_controller("nqn.2014-08.org.nvmexpress:uuid:a", [0; 16])
            .unwrap();
        let b = s
            .create_controller("nqn.2014-08.org.nvmexpress:uuid:b", [0; 16])
            .unwrap();
        assert_ne!(a.cntlid, b.cntlid);
        assert!(a.claim_qid(1));
        assert!(!a.claim_qid(1), "a qid can be connected once");
        a.release_qid(1);
        assert!(a.claim_qid(1));
        s.remove_controller(a.cntlid);
        assert!(a.is_failed());
        assert!(s.controller(a.cntlid).is_none());
        assert!(s.controller(b.cntlid).is_some());
    }

    #[test]
    fn host_access_follows_spdks_model() {
        let s = Subsystem::discovery();
        assert!(
            s.host_allowed("nqn.a"),
            "the discovery subsystem allows any host"
        );
        s.set_allow_any_host(false);
        assert!(!s.host_allowed("nqn.a"));
        assert!(!s.host_allowed(""), "an empty host nqn is not on any list");
        assert!(s.add_host("nqn.a"));
        assert!(!s.add_host("nqn.a"), "listed once");
        assert!(s.host_allowed("nqn.a"));
        assert!(!s.host_allowed("nqn.b"));
        assert!(s.remove_host("nqn.a"));
        assert!(!s.remove_host("nqn.a"));
        assert!(!s.host_allowed("nqn.a"));
    }

    #[test]
    fn stable_ids_are_stable_and_distinct() {
        assert_eq!(stable_id("nqn.x", 1, 1), stable_id("nqn.x", 1, 1));
        assert_ne!(stable_id("nqn.x", 1, 1), stable_id("nqn.x", 2, 1));
    }
}
