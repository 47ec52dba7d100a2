// SPDX-License-Identifier: Apache-2.0
/*
 * block: block_rq_issue -> block_rq_complete latency for the configured
 * devices, as a log2 histogram with counts and bytes per (dev, op); requests
 * at least rs_config.block_stream_min_ns long are also streamed. In-flight
 * requests are keyed by the struct request pointer (unique while in flight,
 * unlike the sector, which advances on partial completions). Filter: rs_devs
 * (kernel dev_t, major << 20 | minor) unless RS_F_ANY_DEV.
 */
#include "rs_common.bpf.h"

#define RS_REQ_OP_MASK 0xff

struct rs_rq_inflight {
	__u64 issue_ns;
	__u64 sector;
	__u32 dev;
	__u32 op;
	__u32 bytes;
	__u32 _pad;
};

/* LRU: requeued or aborted requests never complete under the same pointer. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct rs_rq_inflight);
} rs_rq_inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct rs_block_key);
	__type(value, struct rs_block_val);
} rs_block SEC(".maps");

static __always_inline __u32 rq_dev(struct request *rq)
{
	struct gendisk *disk = rq->q->disk;
	__u32 major, minor;

	if (!disk)
		return 0;
	major = disk->major;
	minor = disk->first_minor;
	return (major << 20) | minor;
}

SEC("tp_btf/block_rq_issue")
int BPF_PROG(rs_block_rq_issue, struct request *rq)
{
	struct rs_config *c = rs_cfg();
	struct rs_rq_inflight f = {};
	__u64 key = (__u64)rq;
	__u32 dev;

	if (!c)
		return 0;
	dev = rq_dev(rq);
	if (!dev)
		return 0;
	if (!(c->flags & RS_F_ANY_DEV) && !bpf_map_lookup_elem(&rs_devs, &dev))
		return 0;
	f.issue_ns = bpf_ktime_get_ns();
	f.sector = rq->__sector;
	f.dev = dev;
	f.op = rq->cmd_flags & RS_REQ_OP_MASK;
	f.bytes = rq->__data_len;
	bpf_map_update_elem(&rs_rq_inflight, &key, &f, BPF_ANY);
	return 0;
}

SEC("tp_btf/block_rq_complete")
int BPF_PROG(rs_block_rq_complete, struct request *rq, blk_status_t error, unsigned int nr_bytes)
{
	struct rs_block_val zero = {};
	struct rs_rq_inflight *f;
	struct rs_block_key k;
	struct rs_block_val *v;
	struct rs_config *c;
	__u64 key = (__u64)rq;
	__u64 now, d;

	f = bpf_map_lookup_elem(&rs_rq_inflight, &key);
	if (!f)
		return 0;
	now = bpf_ktime_get_ns();
	d = now > f->issue_ns ? now - f->issue_ns : 0;
	k.dev = f->dev;
	k.op = f->op;
	v = rs_upsert(&rs_block, &k, &zero);
	if (v) {
		__sync_fetch_and_add(&v->bytes, f->bytes);
		if (error)
			__sync_fetch_and_add(&v->errors, 1);
		rs_hist_add(&v->lat, d);
	}
	c = rs_cfg();
	if (c && d >= c->block_stream_min_ns) {
		struct rs_ev_block *e = rs_reserve(sizeof(*e));
		if (e) {
			rs_hdr(&e->hdr, RS_EV_BLOCK, now);
			e->dev = f->dev;
			e->op = f->op;
			e->sector = f->sector;
			e->bytes = f->bytes;
			e->error = error;
			e->issue_ns = f->issue_ns;
			e->latency_ns = d;
			bpf_ringbuf_submit(e, 0);
		}
	}
	bpf_map_delete_elem(&rs_rq_inflight, &key);
	return 0;
}
