// SPDX-License-Identifier: Apache-2.0
/*
 * numa: page migrations done in the target's context (migrate:mm_migrate_pages,
 * e.g. NUMA balancing faults or move_pages/mbind), aggregated per migrate
 * reason and streamed; and the scheduler's NUMA task placement moves
 * (sched_move_numa, sched_swap_numa, sched_stick_numa) of the target's threads,
 * counted per (tid, kind) and streamed. Filter: rs_config.tgid (0 = any).
 */
#include "rs_common.bpf.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, struct rs_numa_pages_val);
} rs_numa_pages SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct rs_numa_task_key);
	__type(value, __u64);
} rs_numa_tasks SEC(".maps");

static __always_inline bool in_target(__u32 tgid)
{
	struct rs_config *c = rs_cfg();
	return c && (c->tgid == 0 || c->tgid == tgid);
}

SEC("tp_btf/mm_migrate_pages")
int BPF_PROG(rs_mm_migrate_pages, unsigned long succeeded, unsigned long failed,
	     unsigned long thp_succeeded, unsigned long thp_failed, unsigned long thp_split,
	     unsigned long large_folio_split, enum migrate_mode mode, int reason)
{
	__u64 pt = bpf_get_current_pid_tgid();
	struct rs_numa_pages_val zero = {};
	struct rs_numa_pages_val *v;
	struct rs_ev_numa_pages *e;
	__u32 key = reason;
	__u64 now;

	if (!in_target(pt >> 32))
		return 0;
	now = bpf_ktime_get_ns();
	v = rs_upsert(&rs_numa_pages, &key, &zero);
	if (v) {
		__sync_fetch_and_add(&v->events, 1);
		__sync_fetch_and_add(&v->succeeded, succeeded);
		__sync_fetch_and_add(&v->failed, failed);
		__sync_fetch_and_add(&v->thp_succeeded, thp_succeeded);
		__sync_fetch_and_add(&v->thp_failed, thp_failed);
	}
	e = rs_reserve(sizeof(*e));
	if (e) {
		rs_hdr(&e->hdr, RS_EV_NUMA_PAGES, now);
		e->tid = (__u32)pt;
		e->reason = reason;
		e->succeeded = succeeded;
		e->failed = failed;
		e->thp_succeeded = thp_succeeded;
		e->thp_failed = thp_failed;
		bpf_ringbuf_submit(e, 0);
	}
	return 0;
}

static __always_inline void task_move(__u32 kind, const struct task_struct *t, int src_cpu,
				      const struct task_struct *other, int dst_cpu)
{
	__u32 tid = BPF_CORE_READ(t, pid);
	__u32 other_tid = other ? BPF_CORE_READ(other, pid) : 0;
	struct rs_numa_task_key k;
	struct rs_ev_numa_task *e;
	__u64 zero = 0, *n;

	if (!in_target(BPF_CORE_READ(t, tgid))) {
		/* swap: the other task may be the target's */
		if (!other || !in_target(BPF_CORE_READ(other, tgid)))
			return;
		tid = other_tid;
		other_tid = BPF_CORE_READ(t, pid);
	}
	k.tid = tid;
	k.numa_kind = kind;
	n = rs_upsert(&rs_numa_tasks, &k, &zero);
	if (n)
		__sync_fetch_and_add(n, 1);
	e = rs_reserve(sizeof(*e));
	if (e) {
		rs_hdr(&e->hdr, RS_EV_NUMA_TASK, bpf_ktime_get_ns());
		e->numa_kind = kind;
		e->tid = tid;
		e->src_cpu = src_cpu;
		e->dst_cpu = dst_cpu;
		e->other_tid = other_tid;
		e->_pad = 0;
		bpf_ringbuf_submit(e, 0);
	}
}

SEC("tp_btf/sched_move_numa")
int BPF_PROG(rs_sched_move_numa, struct task_struct *tsk, int src_cpu, int dst_cpu)
{
	task_move(RS_NUMA_MOVE, tsk, src_cpu, NULL, dst_cpu);
	return 0;
}

SEC("tp_btf/sched_swap_numa")
int BPF_PROG(rs_sched_swap_numa, struct task_struct *src_tsk, int src_cpu, struct task_struct *dst_tsk,
	     int dst_cpu)
{
	task_move(RS_NUMA_SWAP, src_tsk, src_cpu, dst_tsk, dst_cpu);
	return 0;
}

SEC("tp_btf/sched_stick_numa")
int BPF_PROG(rs_sched_stick_numa, struct task_struct *src_tsk, int src_cpu, struct task_struct *dst_tsk,
	     int dst_cpu)
{
	task_move(RS_NUMA_STICK, src_tsk, src_cpu, dst_tsk, dst_cpu);
	return 0;
}
