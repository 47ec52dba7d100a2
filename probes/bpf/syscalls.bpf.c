// SPDX-License-Identifier: Apache-2.0
/*
 * syscalls: raw_syscalls sys_enter/sys_exit made by reactor threads, counted
 * and timed per (tid, syscall nr); syscalls at least
 * rs_config.syscall_stream_min_ns long are also streamed. A kernel-bypass fast
 * path ideally makes none. Filters: rs_config.tgid (cheap first test), rs_tids.
 */
#include "rs_common.bpf.h"

struct rs_sys_inflight {
	__u64 start_ns;
	__u64 nr;
};

/* Per-task storage: cheaper than a hash update per syscall, and freed with the task, so a
 * thread that exits inside a syscall (exit, execve) leaves nothing behind. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct rs_sys_inflight);
} rs_sys_inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct rs_syscall_key);
	__type(value, struct rs_syscall_val);
} rs_syscalls SEC(".maps");

static __always_inline bool from_reactor(__u32 *tid_out)
{
	__u64 pt = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pt;
	struct rs_config *c = rs_cfg();

	if (!c || (c->tgid && (__u32)(pt >> 32) != c->tgid))
		return false;
	*tid_out = tid;
	return rs_is_reactor(tid);
}

SEC("tp_btf/sys_enter")
int BPF_PROG(rs_sys_enter, struct pt_regs *regs, long id)
{
	struct rs_sys_inflight *f;
	__u32 tid;

	if (!from_reactor(&tid))
		return 0;
	f = bpf_task_storage_get(&rs_sys_inflight, bpf_get_current_task_btf(), 0,
				 BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!f)
		return 0;
	f->start_ns = bpf_ktime_get_ns();
	f->nr = id;
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(rs_sys_exit, struct pt_regs *regs, long ret)
{
	struct rs_syscall_val zero = {};
	struct rs_syscall_key k;
	struct rs_sys_inflight *f;
	struct rs_syscall_val *v;
	struct rs_config *c;
	__u64 now, d;
	__u32 tid;

	if (!from_reactor(&tid))
		return 0;
	f = bpf_task_storage_get(&rs_sys_inflight, bpf_get_current_task_btf(), 0, 0);
	if (!f || !f->start_ns)
		return 0;
	now = bpf_ktime_get_ns();
	d = now > f->start_ns ? now - f->start_ns : 0;
	k.tid = tid;
	k.nr = (__u32)f->nr;
	v = rs_upsert(&rs_syscalls, &k, &zero);
	if (v) {
		__sync_fetch_and_add(&v->count, 1);
		__sync_fetch_and_add(&v->total_ns, d);
		if (d > v->max_ns)
			v->max_ns = d;
		if (ret < 0)
			__sync_fetch_and_add(&v->errors, 1);
	}
	c = rs_cfg();
	if (c && d >= c->syscall_stream_min_ns) {
		struct rs_ev_syscall *e = rs_reserve(sizeof(*e));
		if (e) {
			rs_hdr(&e->hdr, RS_EV_SYSCALL, now);
			e->tid = tid;
			e->nr = k.nr;
			e->ret = ret;
			e->start_ns = f->start_ns;
			e->duration_ns = d;
			bpf_ringbuf_submit(e, 0);
		}
	}
	f->start_ns = 0;
	return 0;
}
