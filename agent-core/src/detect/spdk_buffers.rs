//! SPDK's shared data buffers: the TCP transport's pool (`num_shared_buffers`) is carved into a
//! per-poll-group cache (`buf_cache_size` each) and what is left; a request that finds neither
//! waits in `TCP_REQ_NEED_BUFFER` until a later poll (spdk#3296). The finding shows the
//! arithmetic and the setting to change.
//!
//! Cost: the trace counts buffer waits but does not time them, so the cost is not measured;
//! the rule is explicit: a trace in which no request waited measures a cost of nothing (the
//! overcommitted pool is an info note with the setting); requests that waited, or an
//! overcommitted pool without a trace to say, are a warning.
//!
//! From `nvmf_get_transports` and the trace's buffer waits. Stateless; pure.

use super::{costed, margin, unmeasured, Context, Detector};
use crate::finding::{Cost, Evidence, Finding, FindingKind, Severity, Subject};
use crate::spdk::cache_per_group;
use crate::window::Window;

/// Buffer waits per traced request above which buffers are short (as for ringside-tgt: each
/// wait costs at least one poll round).
pub const WAITS_PER_REQUEST: f64 = 0.01;

/// Raises [`FindingKind::BufferStarvation`] for SPDK's transport buffers.
#[derive(Clone, Copy, Debug, Default)]
pub struct SpdkBuffers;

impl Detector for SpdkBuffers {
    fn name(&self) -> &'static str {
        "spdk_buffers"
    }

    fn observe(&mut self, w: &Window, _ctx: &Context<'_>, out: &mut Vec<Finding>) {
        let Some(s) = &w.spdk else { return };
        let Some(t) = &s.transport else { return };
        let groups = s.poll_groups.len().max(1) as u64;
        let cache = cache_per_group(t, groups);
        let cached = cache * groups;
        let qpairs: u64 = s
            .poll_groups
            .iter()
            .map(|g| u64::from(g.current_io_qpairs))
            .sum();
        // Worst case: every qpair full of requests that each need a buffer.
        let demand = qpairs * u64::from(t.max_queue_depth);
        let waits = s
            .trace
            .as_ref()
            .filter(|p| p.requests > 0)
            .map(|p| (p.buffer_waits as f64 / p.requests as f64, p));
        let overcommitted = t.buf_cache_size < u64::from(u32::MAX) && cached > t.num_shared_buffers;
        let waiting = waits.is_some_and(|(r, _)| r > WAITS_PER_REQUEST);
        if !overcommitted && !waiting {
            return;
        }
        let need = (cached + demand).max(t.num_shared_buffers);
        let mut evidence = vec![
            Evidence::new("num_shared_buffers", t.num_shared_buffers as f64, ""),
            Evidence::new("buffers cached per poll group", cache as f64, ""),
            Evidence::new("poll groups", groups as f64, ""),
            Evidence::new("cached in all groups", cached as f64, ""),
            Evidence::new("I/O qpairs × max_queue_depth", demand as f64, ""),
        ];
        if let Some((r, p)) = waits {
            evidence.push(Evidence::new(
                "traced requests that waited for a buffer",
                r * 100.0,
                "%",
            ));
            evidence.push(Evidence::new("traced requests", p.requests as f64, ""));
        }
        let headroom = t.num_shared_buffers as i64 - cached as i64;
        let summary = format!(
            "SPDK's TCP transport has {} shared buffers, {cache} cached per poll group × {groups} \
             group(s) = {cached} (headroom {headroom}) for up to {demand} requests in flight{}: \
             raise num_shared_buffers to {need} (rpc.py nvmf_create_transport -t TCP -n {need} -b \
             {cache}, before the first listener)",
            t.num_shared_buffers,
            waits
                .map(|(r, _)| format!(
                    "; {:.1} % of the traced requests waited in TCP_REQ_NEED_BUFFER",
                    r * 100.0
                ))
                .unwrap_or_default()
        );
        let confidence = match waits {
            Some((r, _)) if waiting => margin(r, WAITS_PER_REQUEST, 0.2),
            _ => 0.6,
        };
        let kind = FindingKind::BufferStarvation;
        out.push(match waits {
            Some((r, _)) if r <= 0.0 => costed(
                kind,
                Cost {
                    iops_share: Some(0.0),
                    latency_share: Some(0.0),
                    added_latency_ns: None,
                    basis: "no traced request waited for a buffer: the overcommitted pool costs \
                            nothing yet"
                        .into(),
                },
                Subject::Target,
                summary,
                evidence,
                w,
                confidence,
            ),
            Some((r, _)) => unmeasured(
                kind,
                Severity::Warning,
                format!(
                    "{:.1} % of the traced requests waited for a buffer, each at least one poll \
                     round; the trace does not time the wait (warning)",
                    r * 100.0
                ),
                Subject::Target,
                summary,
                evidence,
                w,
                confidence,
            ),
            None => unmeasured(
                kind,
                Severity::Warning,
                "no trace to count buffer waits; the caches overcommit the pool (warning)".into(),
                Subject::Target,
                summary,
                evidence,
                w,
                confidence,
            ),
        });
    }
}
