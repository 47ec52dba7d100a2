/* SPDX-License-Identifier: Apache-2.0 */
/*
 * BPF-side helpers and the shared maps every probe object declares. The
 * loader creates each shared map once and points every object at it with
 * bpf_map__reuse_fd, so one config write or filter update reaches all probes
 * and all events arrive through one ring buffer.
 */
#ifndef RS_COMMON_BPF_H
#define RS_COMMON_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "ringside_probes.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* ---- shared maps (sizes must match probes/src/abi.rs) ---- */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rs_config);
} rs_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} rs_tids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u8);
} rs_devs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u8);
} rs_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u8);
} rs_ifaces SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} rs_events SEC(".maps");

/* Events lost because the ring buffer was full (per cpu, summed by the loader). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} rs_drops SEC(".maps");

/* ---- helpers ---- */
static __always_inline struct rs_config *rs_cfg(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&rs_config, &zero);
}

static __always_inline bool rs_cpu_in_mask(const struct rs_config *c, __u32 cpu)
{
	if (cpu >= RS_CPU_WORDS * 64)
		return false;
	return (c->cpu_mask[(cpu / 64) & (RS_CPU_WORDS - 1)] >> (cpu % 64)) & 1;
}

static __always_inline bool rs_is_reactor(__u32 tid)
{
	return tid != 0 && bpf_map_lookup_elem(&rs_tids, &tid) != NULL;
}

static __always_inline void *rs_reserve(__u64 size)
{
	void *e = bpf_ringbuf_reserve(&rs_events, size, 0);
	if (!e) {
		__u32 zero = 0;
		__u64 *d = bpf_map_lookup_elem(&rs_drops, &zero);
		if (d)
			*d += 1;
	}
	return e;
}

static __always_inline void rs_hdr(struct rs_event_hdr *h, __u32 kind, __u64 now)
{
	h->kind = kind;
	h->cpu = bpf_get_smp_processor_id();
	h->ts_ns = now;
}

static __always_inline __u32 rs_log2(__u64 v)
{
	__u32 r, shift;
	r = (v > 0xFFFFFFFFull) << 5;
	v >>= r;
	shift = (v > 0xFFFF) << 4;
	v >>= shift;
	r |= shift;
	shift = (v > 0xFF) << 3;
	v >>= shift;
	r |= shift;
	shift = (v > 0xF) << 2;
	v >>= shift;
	r |= shift;
	shift = (v > 0x3) << 1;
	v >>= shift;
	r |= shift;
	r |= (v >> 1);
	return r;
}

static __always_inline void rs_hist_add(struct rs_time_hist *h, __u64 ns)
{
	__u32 b = rs_log2(ns);
	if (b >= RS_HIST_BUCKETS)
		b = RS_HIST_BUCKETS - 1;
	__sync_fetch_and_add(&h->count, 1);
	__sync_fetch_and_add(&h->total_ns, ns);
	/* Racy max: two cpus may race, the loser's value is lost; acceptable for a maximum. */
	if (ns > h->max_ns)
		h->max_ns = ns;
	__sync_fetch_and_add(&h->buckets[b & (RS_HIST_BUCKETS - 1)], 1);
}

/* Look a key up, inserting a zeroed value first when absent. */
static __always_inline void *rs_upsert(void *map, const void *key, const void *zero)
{
	void *v = bpf_map_lookup_elem(map, key);
	if (v)
		return v;
	bpf_map_update_elem(map, key, zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(map, key);
}

#endif /* RS_COMMON_BPF_H */
