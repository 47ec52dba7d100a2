// SPDX-License-Identifier: Apache-2.0
/*
 * tcp: per-connection retransmits (tcp_retransmit_skb, each one streamed) and
 * send-side state sampled from tcp_probe (snd_una/snd_nxt/write_seq/snd_wnd/
 * cwnd/srtt): the last sample and the maximum bytes in flight and unsent are
 * kept per connection, and at most one TcpSample event per connection per
 * rs_config.tcp_sample_interval_ns is streamed. Filter: local or remote port
 * in rs_ports (the target's listeners, or an initiator's target port) unless
 * RS_F_ANY_PORT.
 */
#include "rs_common.bpf.h"

#define RS_AF_INET 2
#define RS_AF_INET6 10

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct rs_conn);
	__type(value, struct rs_tcp_val);
} rs_tcp SEC(".maps");

/* Fills *k from the socket (a trusted tp_btf pointer: direct reads); false when the connection
 * is filtered out. Runs for every retransmit and every incoming segment (tcp_probe). */
static __always_inline bool conn_of(const struct sock *sk, struct rs_conn *k)
{
	struct rs_config *c = rs_cfg();
	__u32 sport, dport;

	if (!c)
		return false;
	k->family = sk->__sk_common.skc_family;
	sport = sk->__sk_common.skc_num;
	dport = bpf_ntohs(sk->__sk_common.skc_dport);
	if (!(c->flags & RS_F_ANY_PORT) && !bpf_map_lookup_elem(&rs_ports, &sport) &&
	    !bpf_map_lookup_elem(&rs_ports, &dport))
		return false;
	k->sport = sport;
	k->dport = dport;
	/* Read into typed locals: BPF_CORE_READ_INTO on a byte array would copy one byte. */
	if (k->family == RS_AF_INET) {
		__u32 s4 = sk->__sk_common.skc_rcv_saddr;
		__u32 d4 = sk->__sk_common.skc_daddr;
		__builtin_memcpy(k->saddr, &s4, 4);
		__builtin_memcpy(k->daddr, &d4, 4);
	} else if (k->family == RS_AF_INET6) {
		struct in6_addr s6, d6;
		BPF_CORE_READ_INTO(&s6, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&d6, sk, __sk_common.skc_v6_daddr);
		__builtin_memcpy(k->saddr, &s6, 16);
		__builtin_memcpy(k->daddr, &d6, 16);
	} else {
		return false;
	}
	return true;
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(rs_tcp_retransmit_skb, const struct sock *sk, const struct sk_buff *skb, int err)
{
	struct rs_tcp_val zero = {};
	struct rs_conn k = {};
	struct rs_tcp_val *v;
	struct rs_ev_tcp_retransmit *e;
	__u64 now;

	if (!conn_of(sk, &k))
		return 0;
	now = bpf_ktime_get_ns();
	v = rs_upsert(&rs_tcp, &k, &zero);
	if (v) {
		__sync_fetch_and_add(&v->retransmits, 1);
		v->last_retransmit_ns = now;
	}
	e = rs_reserve(sizeof(*e));
	if (e) {
		rs_hdr(&e->hdr, RS_EV_TCP_RETRANSMIT, now);
		e->conn = k;
		e->state = BPF_CORE_READ(sk, __sk_common.skc_state);
		e->tgid = bpf_get_current_pid_tgid() >> 32;
		bpf_ringbuf_submit(e, 0);
	}
	return 0;
}

SEC("tp_btf/tcp_probe")
int BPF_PROG(rs_tcp_probe, struct sock *sk, const struct sk_buff *skb)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;
	struct rs_tcp_val zero = {};
	struct rs_tcp_sample s = {};
	struct rs_conn k = {};
	struct rs_config *c;
	struct rs_tcp_val *v;
	__u32 in_flight, unsent;
	__u64 now;

	if (!conn_of(sk, &k))
		return 0;
	c = rs_cfg();
	if (!c)
		return 0;
	now = bpf_ktime_get_ns();
	s.snd_una = BPF_CORE_READ(tp, snd_una);
	s.snd_nxt = BPF_CORE_READ(tp, snd_nxt);
	s.write_seq = BPF_CORE_READ(tp, write_seq);
	s.snd_wnd = BPF_CORE_READ(tp, snd_wnd);
	s.snd_cwnd = BPF_CORE_READ(tp, snd_cwnd);
	s.srtt_us = BPF_CORE_READ(tp, srtt_us) >> 3;
	s.wmem_queued = BPF_CORE_READ(sk, sk_wmem_queued);
	in_flight = s.snd_nxt - s.snd_una;
	unsent = s.write_seq - s.snd_nxt;

	v = rs_upsert(&rs_tcp, &k, &zero);
	if (!v)
		return 0;
	__sync_fetch_and_add(&v->samples, 1);
	v->last_sample_ns = now;
	v->last = s;
	if (in_flight > v->max_in_flight)
		v->max_in_flight = in_flight;
	if (unsent > v->max_unsent)
		v->max_unsent = unsent;
	if (c->tcp_sample_interval_ns != ~0ull &&
	    (v->last_stream_ns == 0 || now - v->last_stream_ns >= c->tcp_sample_interval_ns)) {
		struct rs_ev_tcp_sample *e;
		v->last_stream_ns = now;
		e = rs_reserve(sizeof(*e));
		if (e) {
			rs_hdr(&e->hdr, RS_EV_TCP_SAMPLE, now);
			e->conn = k;
			e->s = s;
			bpf_ringbuf_submit(e, 0);
		}
	}
	return 0;
}
