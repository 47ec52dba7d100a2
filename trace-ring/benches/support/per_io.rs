//! What one poll of NVMe/TCP 4 KiB reads emits into the trace file, shared by
//! `benches/record.rs` (criterion) and `examples/ns_per_event.rs` (minimum of many batches).

use trace_ring::{tpoint_id, tsc, OpClass, ReactorWriters};

/// I/Os per poll in the per-I/O benches (the reactor's batch at queue depth 32).
pub const QD: u64 = 32;
// The tracepoints and stages one NVMe/TCP read emits (nvmf-target's catalog: group 1 = tcp,
// group 3 = poll; stages to_backend, backend, to_wire).
const TP_CAPSULE_RECEIVED: u16 = tpoint_id(1, 0);
const TP_BACKEND_SUBMITTED: u16 = tpoint_id(1, 3);
const TP_BACKEND_COMPLETED: u16 = tpoint_id(1, 4);
const TP_RESPONSE_QUEUED: u16 = tpoint_id(1, 5);
const TP_RESPONSE_SENT: u16 = tpoint_id(1, 6);
const TP_POLL_BUSY: u16 = tpoint_id(3, 0);
const STAGE_TO_BACKEND: u32 = 0;
const STAGE_BACKEND: u32 = 1;
const STAGE_TO_WIRE: u32 = 2;

/// What one poll of `QD` 4 KiB reads costs the producer on NVMe/TCP, in the order ringside-tgt
/// does it for a read that goes to a backend queue (tcp/mod.rs `trace_begin`/`trace_response`/
/// `flush`, tcp/io.rs `trace_submit`, nvm.rs `submit`/`completed`/`on_wire`, reactor.rs
/// `poll_backends` and the poll's end): 5 records, 4 histogram values and ~20 counter words per
/// I/O, 3 TSC reads per poll. (A malloc read answered in place also reads the TSC once per I/O.)
/// `records`/`counters`: true to emit that half (to split the cost).
#[inline(always)]
pub fn one_poll(w: &mut ReactorWriters, p: u64, records: bool, counters: bool) {
    let t_capsule = tsc::now();
    for i in 0..QD {
        let (slot, cid) = ((i & 3) as u16, (i as u32) | ((p as u32 & 0xff) << 8));
        if records {
            w.ring
                .record_at(t_capsule, TP_CAPSULE_RECEIVED, slot, cid, 0x02, 4096);
        }
        if counters {
            w.counters.qpair_submit(slot);
        }
        if records {
            w.ring
                .record_at(t_capsule, TP_BACKEND_SUBMITTED, slot, cid, p * QD + i, 4096);
        }
        if counters {
            w.counters.backend_submit();
        }
    }
    // The backend's completions get their own instant.
    let t_done = tsc::now();
    for i in 0..QD {
        let (slot, cid) = ((i & 3) as u16, (i as u32) | ((p as u32 & 0xff) << 8));
        if counters {
            w.counters.backend_complete();
        }
        if records {
            w.ring
                .record_at(t_done, TP_BACKEND_COMPLETED, slot, cid, 0, 0);
        }
        if counters {
            // Latencies vary with the I/O, as they do (different histogram buckets).
            w.counters
                .stage_latency_ticks(STAGE_TO_BACKEND, 900 + i * 37);
            w.counters
                .stage_latency_ticks(STAGE_BACKEND, 2_000 + i * 91);
        }
        if records {
            w.ring
                .record_at(t_done, TP_RESPONSE_QUEUED, slot, cid, 0, 4096);
        }
    }
    // The socket write returned: the responses are on the wire.
    let t_sent = tsc::now();
    for i in 0..QD {
        let (slot, cid) = ((i & 3) as u16, (i as u32) | ((p as u32 & 0xff) << 8));
        if records {
            w.ring.record_at(t_sent, TP_RESPONSE_SENT, slot, cid, 0, 0);
        }
        if counters {
            // nvm::on_wire: the command counts as done once its response has left.
            w.counters
                .stage_latency_ticks(STAGE_TO_WIRE, 1_500 + i * 53);
            w.counters.command(OpClass::Read, 4096);
            w.counters
                .qpair_complete(slot, 4096, 20_000 + i * 613, false);
        }
    }
    if counters {
        w.counters
            .poll(t_sent, true, t_sent.wrapping_sub(t_capsule));
    }
    if records {
        w.ring.record_at(
            t_sent,
            TP_POLL_BUSY,
            trace_ring::NO_QPAIR,
            0,
            t_sent - t_capsule,
            0,
        );
    }
}
