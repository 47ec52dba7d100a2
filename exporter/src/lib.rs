//! The Prometheus exporter (`ringside serve`): the metric [`catalog`], the encoding of
//! `agent_core::Snapshot`s ([`encode`]), and the HTTP endpoint ([`http`]).
//!
//! Threading and ownership: one [`Exporter`] is shared (`Arc`) between the agent's sampling
//! thread, which calls [`Exporter::update`] after each tick, and the server thread, which reads
//! the rendered text and JSON. `update` does the work (fold the window into totals, render the
//! agent's series and the snapshot JSON) under a mutex; a request only clones the rendered
//! `Arc<str>`s and formats the exporter's own few series, so a scrape never waits on analysis
//! and an update never waits on a slow client.
//!
//! Must not depend on `agent` or `probes` (DESIGN §1): it sees the agent only through
//! `Snapshot`.
#![forbid(unsafe_code)]

pub mod catalog;
pub mod encode;
pub mod http;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use agent_core::Snapshot;

pub use http::{serve, ServeOptions, ServerHandle};

/// Counters of the HTTP endpoint (the `ringside_exporter_*` series).
#[derive(Debug, Default)]
pub struct HttpStats {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// Connections refused with 503 at the limit.
    pub rejected: AtomicU64,
    /// Connections closed before a complete exchange.
    pub dropped: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
}

impl HttpStats {
    /// Counts one answered request. `path` is one of the bounded classes.
    pub fn count(&self, path: &'static str, code: u16) {
        let mut m = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((path, code)).or_default() += 1;
    }

    /// Requests answered so far, by (path class, status code).
    pub fn requests(&self) -> BTreeMap<(&'static str, u16), u64> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[derive(Default)]
struct State {
    /// The totals of each target (one, unnamed, without `--all`).
    targets: BTreeMap<String, Target>,
    agent_text: Arc<str>,
    json: Option<Arc<str>>,
    last_update: Option<Instant>,
    updates: u64,
    /// Why `/healthz` fails (no target is attached), `None` when healthy.
    unhealthy: Option<String>,
}

/// One target's running totals.
#[derive(Default)]
struct Target {
    acc: encode::Accumulator,
    /// The instance the totals belong to: a new one starts them again from zero.
    instance: Option<agent_core::lifecycle::InstanceId>,
}

impl Target {
    /// Folds and renders one snapshot; returns the text and, when the target is not attached,
    /// why (then only the lifecycle series are rendered).
    fn render(&mut self, snap: &Snapshot) -> (String, Option<String>) {
        if let Some(l) = snap.lifecycle.as_ref().filter(|l| l.state.is_live()) {
            if self.instance != l.instance {
                self.acc = encode::Accumulator::default();
                self.instance.clone_from(&l.instance);
            }
        }
        let mut f = encode::Families::new();
        encode::render_lifecycle(snap, &mut f);
        let down = match &snap.lifecycle {
            Some(l) if !l.state.is_live() => Some(format!(
                "target {} {}: {}",
                l.name,
                l.state.as_str(),
                l.reason
            )),
            _ => None,
        };
        if down.is_none() {
            self.acc.fold(snap);
            encode::render_snapshot(snap, &self.acc, &mut f);
        }
        (f.encode(), down)
    }
}

/// The shared state between the sampling thread and the HTTP server.
#[derive(Default)]
pub struct Exporter {
    state: Mutex<State>,
    /// The endpoint's own counters.
    pub http: HttpStats,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("updates", &self.lock().updates)
            .finish_non_exhaustive()
    }
}

impl Exporter {
    /// An exporter with nothing to say yet (only its own series).
    pub fn new() -> Exporter {
        Exporter::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the totals half-updated in a way worth
        // refusing to serve; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the latest snapshot: folds its window into the totals (each window once) and
    /// renders what `/metrics` and `/snapshot.json` serve until the next update.
    ///
    /// With a lifecycle in the snapshot: while the target is not attached (waiting or gone)
    /// only the lifecycle series are served and `/healthz` fails with the reason; a new
    /// instance starts every total again from zero (a counter reset, marked by
    /// `ringside_target_start_time_seconds`).
    pub fn update(&self, snap: &Snapshot) {
        let json = serde_json::to_string(snap).ok().map(Arc::<str>::from);
        let mut st = self.lock();
        st.targets.retain(|k, _| k.is_empty());
        let (text, down) = st.targets.entry(String::new()).or_default().render(snap);
        st.unhealthy = down;
        st.agent_text = Arc::from(text);
        st.json = json;
        st.last_update = Some(Instant::now());
        st.updates += 1;
    }

    /// Takes the latest snapshot of every target followed (`ringside serve --all`): each
    /// target's series carry a `target` label (its instance name), each target's totals are its
    /// own, a target no longer in `snaps` loses its series, and `/healthz` fails only while no
    /// target is attached. `/snapshot.json` is the array of snapshots.
    pub fn update_all(&self, snaps: &[Snapshot]) {
        let json = serde_json::to_string(snaps).ok().map(Arc::<str>::from);
        let mut st = self.lock();
        let names: std::collections::BTreeSet<&str> =
            snaps.iter().map(|s| s.target.name.as_str()).collect();
        st.targets.retain(|k, _| names.contains(k.as_str()));
        let mut parts = Vec::with_capacity(snaps.len());
        let mut downs = Vec::new();
        for snap in snaps {
            let name = snap.target.name.clone();
            let (text, down) = st.targets.entry(name.clone()).or_default().render(snap);
            downs.extend(down);
            parts.push((name, text));
        }
        st.unhealthy = if snaps.is_empty() {
            Some("no target instance found yet".into())
        } else if downs.len() == snaps.len() {
            Some(downs.join("; "))
        } else {
            None
        };
        st.agent_text = Arc::from(encode::merge_with_target_label(&parts));
        st.json = json;
        st.last_update = Some(Instant::now());
        st.updates += 1;
    }

    /// The full `/metrics` body.
    pub fn render_metrics(&self) -> String {
        let (agent, own) = self.metrics_parts();
        let mut out = String::with_capacity(agent.len() + own.len());
        out.push_str(&agent);
        out.push_str(&own);
        out
    }

    /// The `/metrics` body in two parts: the agent's series as rendered by the last update
    /// (shared, not copied), and the exporter's own series rendered now.
    pub fn metrics_parts(&self) -> (Arc<str>, String) {
        let (agent_text, last_update, updates) = {
            let st = self.lock();
            (Arc::clone(&st.agent_text), st.last_update, st.updates)
        };
        let mut f = encode::Families::new();
        if let Some(t) = last_update {
            f.gauge(
                &catalog::EXPORTER_SNAPSHOT_AGE,
                &[],
                t.elapsed().as_secs_f64(),
            );
        }
        f.counter(&catalog::EXPORTER_UPDATES, &[], updates);
        for ((path, code), n) in self.http.requests() {
            f.counter(
                &catalog::EXPORTER_HTTP_REQUESTS,
                &[path, &code.to_string()],
                n,
            );
        }
        let h = &self.http;
        f.counter(
            &catalog::EXPORTER_CONNECTIONS_REJECTED,
            &[],
            h.rejected.load(Ordering::Relaxed),
        );
        f.counter(
            &catalog::EXPORTER_CONNECTIONS_DROPPED,
            &[],
            h.dropped.load(Ordering::Relaxed),
        );
        f.gauge(
            &catalog::EXPORTER_CONNECTIONS_OPEN,
            &[],
            h.open.load(Ordering::Relaxed) as f64,
        );
        (agent_text, f.encode())
    }

    /// The latest snapshot as JSON, once there is one.
    pub fn snapshot_json(&self) -> Option<Arc<str>> {
        self.lock().json.clone()
    }

    /// Why `/healthz` fails (the target is waiting or gone), `None` while healthy.
    pub fn unhealthy(&self) -> Option<String> {
        self.lock().unhealthy.clone()
    }

    /// Snapshots received so far.
    pub fn updates(&self) -> u64 {
        self.lock().updates
    }
}
