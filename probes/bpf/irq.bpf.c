// SPDX-License-Identifier: Apache-2.0
/*
 * irq: time spent in hard irq handlers and softirqs on reactor cores, per
 * (cpu, kind, vector) as a log2 histogram; handlers at least
 * rs_config.irq_stream_min_ns long are also streamed. Filter: rs_config.cpu_mask.
 * Hard irqs do not nest on x86 and softirqs do not nest in one another, so one
 * start slot per cpu for each kind is enough.
 */
#include "rs_common.bpf.h"

struct rs_irq_start {
	__u64 hard_ns;
	__u32 hard_irq;
	__u32 _pad0;
	__u64 soft_ns;
	__u32 soft_vec;
	__u32 _pad1;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rs_irq_start);
} rs_irq_start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct rs_irq_key);
	__type(value, struct rs_time_hist);
} rs_irq_time SEC(".maps");

static __always_inline struct rs_irq_start *start_slot(struct rs_config **cfg)
{
	__u32 zero = 0;
	struct rs_config *c = rs_cfg();

	if (!c || !rs_cpu_in_mask(c, bpf_get_smp_processor_id()))
		return NULL;
	*cfg = c;
	return bpf_map_lookup_elem(&rs_irq_start, &zero);
}

static __always_inline void account(struct rs_config *c, __u32 kind, __u32 vec, __u64 start, __u64 now)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct rs_irq_key k = { .cpu = cpu, .irq_kind = kind, .vec = vec };
	struct rs_time_hist zero = {};
	struct rs_time_hist *h;
	__u64 d = now > start ? now - start : 0;

	h = rs_upsert(&rs_irq_time, &k, &zero);
	if (h)
		rs_hist_add(h, d);
	if (d >= c->irq_stream_min_ns) {
		struct rs_ev_irq *e = rs_reserve(sizeof(*e));
		if (e) {
			rs_hdr(&e->hdr, RS_EV_IRQ, now);
			e->irq_kind = kind;
			e->vec = vec;
			e->start_ns = start;
			e->duration_ns = d;
			bpf_ringbuf_submit(e, 0);
		}
	}
}

SEC("tp_btf/irq_handler_entry")
int BPF_PROG(rs_irq_entry, int irq, struct irqaction *action)
{
	struct rs_config *c = NULL;
	struct rs_irq_start *s = start_slot(&c);

	if (s) {
		s->hard_ns = bpf_ktime_get_ns();
		s->hard_irq = irq;
	}
	return 0;
}

SEC("tp_btf/irq_handler_exit")
int BPF_PROG(rs_irq_exit, int irq, struct irqaction *action, int ret)
{
	struct rs_config *c = NULL;
	struct rs_irq_start *s = start_slot(&c);

	if (!s || !c || !s->hard_ns || s->hard_irq != (__u32)irq)
		return 0;
	account(c, RS_IRQ_HARD, irq, s->hard_ns, bpf_ktime_get_ns());
	s->hard_ns = 0;
	return 0;
}

SEC("tp_btf/softirq_entry")
int BPF_PROG(rs_softirq_entry, unsigned int vec)
{
	struct rs_config *c = NULL;
	struct rs_irq_start *s = start_slot(&c);

	if (s) {
		s->soft_ns = bpf_ktime_get_ns();
		s->soft_vec = vec;
	}
	return 0;
}

SEC("tp_btf/softirq_exit")
int BPF_PROG(rs_softirq_exit, unsigned int vec)
{
	struct rs_config *c = NULL;
	struct rs_irq_start *s = start_slot(&c);

	if (!s || !c || !s->soft_ns || s->soft_vec != vec)
		return 0;
	account(c, RS_IRQ_SOFT, vec, s->soft_ns, bpf_ktime_get_ns());
	s->soft_ns = 0;
	return 0;
}
