// SPDX-License-Identifier: Apache-2.0
/*
 * sched: what happens to reactor threads on their cores.
 *  - sched_switch: a reactor switched out while runnable (preempted) or asleep
 *    (voluntary); when it comes back the off-cpu time is added to its stats and,
 *    for a preemption, one Preempted event is streamed. On reactor cores the
 *    time each non-reactor task ran is "stolen" time, aggregated by (cpu, pid, comm).
 *  - sched_waking/sched_wakeup: wake-up of a reactor and its latency to running.
 *  - sched_migrate_task: a reactor moved to another cpu.
 * Filters: rs_tids (reactor tids; with rs_config.tgid set, only threads of that process),
 * rs_config.cpu_mask (reactor cores).
 */
#include "rs_common.bpf.h"

/* tp_btf arguments are trusted BTF pointers: fields are read directly (CO-RE relocated through
 * vmlinux.h's preserve_access_index), which is cheaper than a bpf_probe_read per field on this
 * hot path (every context switch of the machine). */

/* A reactor switched out, waiting to run again. `by_pid`/`by_comm` name the task that ran
 * longest (one slice) on its cpu while it waited: the first task to take the cpu is often a
 * short one (rcu_preempt, a kworker, ksoftirqd) that the real intruder follows. */
struct rs_off {
	__u64 start_ns;
	__u32 cpu;
	__u32 involuntary;
	__u32 by_pid;
	__u32 _pad;
	__u64 by_ns; /* the longest slice seen so far (0: only the first task is known) */
	char by_comm[RS_COMM_LEN];
};

struct rs_waking {
	__u64 ts_ns;
	__u32 waker_pid;
	__u32 target_cpu;
};

/* Plain preallocated hashes (an LRU costs about twice as much per update here): entries are
 * removed when the reactor runs again, so only a reactor that exits while off-cpu leaves one
 * behind; 4096 slots for at most 1024 reactors leave room for that. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct rs_off);
} rs_off SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct rs_waking);
} rs_waking SEC(".maps");

/* The reactor tid switched out involuntarily on this cpu and not back yet (0: none): whose
 * rs_off entry the slices of the tasks running meanwhile are charged to. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} rs_waiting SEC(".maps");

/* When the current task on this cpu was switched in (reactor cores only). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} rs_last_switch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct rs_stolen_key);
	__type(value, struct rs_stolen_val);
} rs_stolen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct rs_reactor_stats);
} rs_rstats SEC(".maps");

static __always_inline struct rs_reactor_stats *stats_of(__u32 tid)
{
	struct rs_reactor_stats zero = {};
	return rs_upsert(&rs_rstats, &tid, &zero);
}

/* With a target pid configured, a task of another process is rejected by two loads and a
 * compare, before any hash lookup: the common case on every context switch of the machine. */
static __always_inline bool reactor_task(const struct rs_config *c, const struct task_struct *t)
{
	if (c->tgid && (__u32)t->tgid != c->tgid)
		return false;
	return rs_is_reactor(t->pid);
}

static __always_inline __u32 task_cpu(const struct task_struct *p)
{
	return p->thread_info.cpu;
}

/* A slice of `ns` by task `pid` just ended on `cpu`: when a reactor waits there, the longest
 * such slice names its intruder. Only this cpu's sched_switch touches the entry while the
 * reactor is off (it comes back through a switch on a cpu, which deletes the entry). */
static __always_inline void note_intruder(__u32 cpu, __u32 pid, const char *comm, __u64 ns)
{
	__u32 zero = 0;
	__u32 *waiting = bpf_map_lookup_elem(&rs_waiting, &zero);
	struct rs_off *o;

	if (!waiting || !*waiting)
		return;
	o = bpf_map_lookup_elem(&rs_off, waiting);
	if (!o || o->cpu != cpu || !o->involuntary || ns <= o->by_ns)
		return;
	o->by_ns = ns;
	o->by_pid = pid;
	__builtin_memcpy(o->by_comm, comm, RS_COMM_LEN);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(rs_sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	struct rs_config *c = rs_cfg();
	__u64 now = bpf_ktime_get_ns();
	__u32 cpu = bpf_get_smp_processor_id();
	__u32 prev_tid = prev->pid;
	__u32 next_tid = next->pid;
	bool prev_reactor;
	__u32 zero = 0;

	if (!c)
		return 0;
	prev_reactor = reactor_task(c, prev);

	{
		/* Updated on every cpu, so a core added to the mask at runtime starts from a fresh
		 * timestamp rather than from whenever it was last a reactor core. */
		__u64 *last = bpf_map_lookup_elem(&rs_last_switch, &zero);
		if (last) {
			/* prev ran since *last; pid 0 is the idle task: idle time is not stolen. */
			if (*last && now > *last && prev_tid != 0 && !prev_reactor &&
			    rs_cpu_in_mask(c, cpu)) {
				struct rs_stolen_key k = { .cpu = cpu, .pid = prev_tid };
				struct rs_stolen_val z = {};
				struct rs_stolen_val *v;

				bpf_probe_read_kernel_str(k.comm, sizeof(k.comm), prev->comm);
				v = rs_upsert(&rs_stolen, &k, &z);
				if (v) {
					__sync_fetch_and_add(&v->ns, now - *last);
					__sync_fetch_and_add(&v->slices, 1);
				}
				note_intruder(cpu, prev_tid, k.comm, now - *last);
			}
			*last = now;
		}
	}

	if (prev_reactor) {
		struct rs_off o = {
			.start_ns = now,
			.cpu = cpu,
			/* The classic tracepoint reports "R+" for the same condition. */
			.involuntary = preempt || prev_state == 0 /* TASK_RUNNING */,
			.by_pid = next_tid,
		};
		bpf_probe_read_kernel_str(o.by_comm, sizeof(o.by_comm), next->comm);
		bpf_map_update_elem(&rs_off, &prev_tid, &o, BPF_ANY);
		if (o.involuntary) {
			__u32 *waiting = bpf_map_lookup_elem(&rs_waiting, &zero);
			if (waiting)
				*waiting = prev_tid;
		}
	}

	if (reactor_task(c, next)) {
		struct rs_off *o = bpf_map_lookup_elem(&rs_off, &next_tid);
		struct rs_waking *w = bpf_map_lookup_elem(&rs_waking, &next_tid);
		struct rs_reactor_stats *s = stats_of(next_tid);

		if (o) {
			__u64 d = now > o->start_ns ? now - o->start_ns : 0;
			if (o->involuntary) {
				struct rs_ev_preempted *e;
				if (s) {
					__sync_fetch_and_add(&s->preempted, 1);
					__sync_fetch_and_add(&s->preempted_ns, d);
				}
				e = rs_reserve(sizeof(*e));
				if (e) {
					rs_hdr(&e->hdr, RS_EV_PREEMPTED, now);
					e->tid = next_tid;
					e->cpu = o->cpu;
					e->start_ns = o->start_ns;
					e->end_ns = now;
					e->by_pid = o->by_pid;
					e->_pad = 0;
					__builtin_memcpy(e->by_comm, o->by_comm, RS_COMM_LEN);
					bpf_ringbuf_submit(e, 0);
				}
			} else if (s) {
				__sync_fetch_and_add(&s->voluntary, 1);
				__sync_fetch_and_add(&s->voluntary_ns, d);
			}
			bpf_map_delete_elem(&rs_off, &next_tid);
		}
		{
			__u32 *waiting = bpf_map_lookup_elem(&rs_waiting, &zero);
			if (waiting && *waiting == next_tid)
				*waiting = 0;
		}
		if (w) {
			__u64 lat = now > w->ts_ns ? now - w->ts_ns : 0;
			struct rs_ev_wakeup *e;
			if (s) {
				__sync_fetch_and_add(&s->wakeups, 1);
				__sync_fetch_and_add(&s->wake_latency_ns, lat);
				if (lat > s->wake_latency_max_ns)
					s->wake_latency_max_ns = lat;
			}
			/* An adaptive-sleep reactor may wake very often: stream only slow wake-ups. */
			e = lat >= c->wakeup_stream_min_ns ? rs_reserve(sizeof(*e)) : NULL;
			if (e) {
				rs_hdr(&e->hdr, RS_EV_WAKEUP, now);
				e->tid = next_tid;
				e->waker_pid = w->waker_pid;
				e->waking_ns = w->ts_ns;
				e->running_ns = now;
				e->target_cpu = w->target_cpu;
				e->_pad = 0;
				bpf_ringbuf_submit(e, 0);
			}
			bpf_map_delete_elem(&rs_waking, &next_tid);
		}
	}
	return 0;
}

SEC("tp_btf/sched_waking")
int BPF_PROG(rs_sched_waking, struct task_struct *p)
{
	struct rs_config *c = rs_cfg();
	__u32 tid = p->pid;
	struct rs_waking w = {};

	if (!c || !reactor_task(c, p))
		return 0;
	w.ts_ns = bpf_ktime_get_ns();
	w.waker_pid = (__u32)bpf_get_current_pid_tgid();
	w.target_cpu = task_cpu(p);
	bpf_map_update_elem(&rs_waking, &tid, &w, BPF_ANY);
	return 0;
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(rs_sched_wakeup, struct task_struct *p)
{
	struct rs_config *c = rs_cfg();
	__u32 tid = p->pid;
	struct rs_waking *w;

	if (!c || !reactor_task(c, p))
		return 0;
	/* sched_wakeup fires once the target cpu is chosen; sched_waking may have been missed. */
	w = bpf_map_lookup_elem(&rs_waking, &tid);
	if (w) {
		w->target_cpu = task_cpu(p);
	} else {
		struct rs_waking nw = {
			.ts_ns = bpf_ktime_get_ns(),
			.waker_pid = (__u32)bpf_get_current_pid_tgid(),
			.target_cpu = task_cpu(p),
		};
		bpf_map_update_elem(&rs_waking, &tid, &nw, BPF_ANY);
	}
	return 0;
}

SEC("tp_btf/sched_migrate_task")
int BPF_PROG(rs_sched_migrate_task, struct task_struct *p, int dest_cpu)
{
	struct rs_config *c = rs_cfg();
	__u32 tid = p->pid;
	struct rs_reactor_stats *s;
	struct rs_ev_migrated *e;
	__u64 now;

	if (!c || !reactor_task(c, p))
		return 0;
	now = bpf_ktime_get_ns();
	s = stats_of(tid);
	if (s)
		__sync_fetch_and_add(&s->migrations, 1);
	e = rs_reserve(sizeof(*e));
	if (e) {
		rs_hdr(&e->hdr, RS_EV_MIGRATED, now);
		e->tid = tid;
		e->orig_cpu = task_cpu(p);
		e->dest_cpu = dest_cpu;
		e->_pad = 0;
		bpf_ringbuf_submit(e, 0);
	}
	return 0;
}
