/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ABI between the BPF programs (probes/bpf/NAME.bpf.c) and the Rust loader
 * (probes/src/abi.rs). Every struct here is plain data with explicit padding
 * and a _Static_assert on its size; probes/src/abi.rs holds the same sizes and
 * decodes every field by offset (native endianness: BPF runs on the host).
 * Change a layout here and in abi.rs together.
 *
 * Maps declared in this header (config, filter sets, the event ring buffer)
 * are shared: every object gets a copy at compile time, and the loader makes
 * all objects use one instance through bpf_map__reuse_fd before load.
 */
#ifndef RINGSIDE_PROBES_H
#define RINGSIDE_PROBES_H

#define RS_CPU_WORDS 16 /* 1024 cpus in the reactor-core bitmask */
#define RS_COMM_LEN 16
#define RS_HIST_BUCKETS 32 /* log2(ns) buckets; the last one catches everything longer */

/* rs_config.flags */
#define RS_F_ANY_DEV (1u << 0)     /* block: every device, ignore the devices set */
#define RS_F_ANY_PORT (1u << 1)    /* tcp: every connection, ignore the ports set */
#define RS_F_ANY_IFINDEX (1u << 2) /* net: every netdev, ignore the ifindexes set */

/* The one entry of the `rs_config` array map; written by the loader before attach and at runtime. */
struct rs_config {
	__u32 tgid;  /* target process; 0 = any (numa probes) */
	__u32 flags; /* RS_F_* */
	__u64 cpu_mask[RS_CPU_WORDS]; /* reactor cores */
	__u64 irq_stream_min_ns;      /* stream IrqTime events at least this long (u64 max = never) */
	__u64 syscall_stream_min_ns;  /* stream Syscall events at least this long */
	__u64 block_stream_min_ns;    /* stream BlockRq events at least this long */
	__u64 tcp_sample_interval_ns; /* at most one TcpSample event per connection per interval */
	__u64 wakeup_stream_min_ns;   /* stream Wakeup events whose waking->running latency is this long */
};
_Static_assert(sizeof(struct rs_config) == 176, "rs_config layout");

/* ---- streamed events (ring buffer `rs_events`) ---- */
enum rs_event_kind {
	RS_EV_PREEMPTED = 1,
	RS_EV_WAKEUP = 2,
	RS_EV_MIGRATED = 3,
	RS_EV_IRQ = 4,
	RS_EV_SYSCALL = 5,
	RS_EV_BLOCK = 6,
	RS_EV_TCP_RETRANSMIT = 7,
	RS_EV_TCP_SAMPLE = 8,
	RS_EV_NUMA_PAGES = 9,
	RS_EV_NUMA_TASK = 10,
};

struct rs_event_hdr {
	__u32 kind; /* enum rs_event_kind */
	__u32 cpu;  /* cpu the program ran on */
	__u64 ts_ns; /* bpf_ktime_get_ns: CLOCK_MONOTONIC */
};
_Static_assert(sizeof(struct rs_event_hdr) == 16, "rs_event_hdr layout");

/* A reactor thread was switched out while runnable, and is now back on a cpu. */
struct rs_ev_preempted {
	struct rs_event_hdr hdr;
	__u32 tid;
	__u32 cpu;     /* cpu it was preempted on */
	__u64 start_ns; /* switched out */
	__u64 end_ns;   /* switched back in (hdr.cpu is where) */
	__u32 by_pid;   /* the task that ran longest (one slice) on its cpu meanwhile */
	__u32 _pad;
	char by_comm[RS_COMM_LEN];
};
_Static_assert(sizeof(struct rs_ev_preempted) == 64, "rs_ev_preempted layout");

/* A reactor thread was woken (sched_waking) and later ran (sched_switch in). */
struct rs_ev_wakeup {
	struct rs_event_hdr hdr;
	__u32 tid;
	__u32 waker_pid;
	__u64 waking_ns;  /* sched_waking */
	__u64 running_ns; /* switched in */
	__u32 target_cpu; /* cpu it was woken on (sched_wakeup) */
	__u32 _pad;
};
_Static_assert(sizeof(struct rs_ev_wakeup) == 48, "rs_ev_wakeup layout");

struct rs_ev_migrated {
	struct rs_event_hdr hdr;
	__u32 tid;
	__u32 orig_cpu;
	__u32 dest_cpu;
	__u32 _pad;
};
_Static_assert(sizeof(struct rs_ev_migrated) == 32, "rs_ev_migrated layout");

#define RS_IRQ_HARD 0
#define RS_IRQ_SOFT 1

struct rs_ev_irq {
	struct rs_event_hdr hdr;
	__u32 irq_kind; /* RS_IRQ_* */
	__u32 vec;      /* irq number or softirq vector */
	__u64 start_ns;
	__u64 duration_ns;
};
_Static_assert(sizeof(struct rs_ev_irq) == 40, "rs_ev_irq layout");

struct rs_ev_syscall {
	struct rs_event_hdr hdr;
	__u32 tid;
	__u32 nr;
	__s64 ret;
	__u64 start_ns;
	__u64 duration_ns;
};
_Static_assert(sizeof(struct rs_ev_syscall) == 48, "rs_ev_syscall layout");

struct rs_ev_block {
	struct rs_event_hdr hdr;
	__u32 dev;   /* kernel dev_t: major << 20 | minor */
	__u32 op;    /* REQ_OP_* */
	__u64 sector;
	__u32 bytes;
	__s32 error; /* blk_status_t */
	__u64 issue_ns;
	__u64 latency_ns;
};
_Static_assert(sizeof(struct rs_ev_block) == 56, "rs_ev_block layout");

/* A TCP connection as seen from the local socket. IPv4 addresses use the first 4 bytes. */
struct rs_conn {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport; /* host order */
	__u16 dport; /* host order */
	__u16 family; /* AF_INET / AF_INET6 */
	__u16 _pad;
};
_Static_assert(sizeof(struct rs_conn) == 40, "rs_conn layout");

struct rs_ev_tcp_retransmit {
	struct rs_event_hdr hdr;
	struct rs_conn conn;
	__s32 state; /* TCP_ESTABLISHED... */
	__u32 tgid;  /* current task when the retransmit fired (often softirq: not the owner) */
};
_Static_assert(sizeof(struct rs_ev_tcp_retransmit) == 64, "rs_ev_tcp_retransmit layout");

struct rs_tcp_sample {
	__u32 snd_una;
	__u32 snd_nxt;
	__u32 write_seq; /* write_seq - snd_nxt = bytes queued, not yet sent */
	__u32 snd_wnd;
	__u32 snd_cwnd;
	__u32 srtt_us;   /* smoothed rtt in us (tcp_sock.srtt_us >> 3) */
	__u32 wmem_queued;
	__u32 _pad;
};
_Static_assert(sizeof(struct rs_tcp_sample) == 32, "rs_tcp_sample layout");

struct rs_ev_tcp_sample {
	struct rs_event_hdr hdr;
	struct rs_conn conn;
	struct rs_tcp_sample s;
};
_Static_assert(sizeof(struct rs_ev_tcp_sample) == 88, "rs_ev_tcp_sample layout");

struct rs_ev_numa_pages {
	struct rs_event_hdr hdr;
	__u32 tid;
	__u32 reason; /* MR_* (MR_NUMA_MISPLACED = 5) */
	__u64 succeeded;
	__u64 failed;
	__u64 thp_succeeded;
	__u64 thp_failed;
};
_Static_assert(sizeof(struct rs_ev_numa_pages) == 56, "rs_ev_numa_pages layout");

#define RS_NUMA_MOVE 0
#define RS_NUMA_SWAP 1
#define RS_NUMA_STICK 2

struct rs_ev_numa_task {
	struct rs_event_hdr hdr;
	__u32 numa_kind; /* RS_NUMA_* */
	__u32 tid;
	__u32 src_cpu;
	__u32 dst_cpu;
	__u32 other_tid; /* swap/stick: the other task, else 0 */
	__u32 _pad;
};
_Static_assert(sizeof(struct rs_ev_numa_task) == 40, "rs_ev_numa_task layout");

/* ---- aggregates (hash maps read by read_aggregates) ---- */

/* rs_stolen: time non-reactor tasks ran on a reactor core. */
struct rs_stolen_key {
	__u32 cpu;
	__u32 pid;
	char comm[RS_COMM_LEN];
};
_Static_assert(sizeof(struct rs_stolen_key) == 24, "rs_stolen_key layout");

struct rs_stolen_val {
	__u64 ns;
	__u64 slices;
};

/* rs_reactor_stats: per reactor tid. */
struct rs_reactor_stats {
	__u64 preempted;
	__u64 preempted_ns; /* runnable but off cpu */
	__u64 voluntary;
	__u64 voluntary_ns; /* sleeping (blocked) */
	__u64 wakeups;
	__u64 wake_latency_ns; /* sum of sched_waking -> running */
	__u64 wake_latency_max_ns;
	__u64 migrations;
};
_Static_assert(sizeof(struct rs_reactor_stats) == 64, "rs_reactor_stats layout");

/* rs_irq_time: per (cpu, kind, vector). */
struct rs_irq_key {
	__u32 cpu;
	__u32 irq_kind;
	__u32 vec;
	__u32 _pad;
};

struct rs_time_hist {
	__u64 count;
	__u64 total_ns;
	__u64 max_ns;
	__u64 buckets[RS_HIST_BUCKETS]; /* bucket i: [2^i, 2^(i+1)) ns, bucket 0 also holds 0 and 1 */
};
_Static_assert(sizeof(struct rs_time_hist) == 280, "rs_time_hist layout");

/* rs_syscalls: per (tid, nr). */
struct rs_syscall_key {
	__u32 tid;
	__u32 nr;
};

struct rs_syscall_val {
	__u64 count;
	__u64 total_ns;
	__u64 max_ns;
	__u64 errors; /* ret < 0 */
};

/* rs_block: per (dev, op). */
struct rs_block_key {
	__u32 dev;
	__u32 op;
};

struct rs_block_val {
	__u64 bytes;
	__u64 errors;
	struct rs_time_hist lat;
};
_Static_assert(sizeof(struct rs_block_val) == 296, "rs_block_val layout");

/* rs_tcp: per connection. */
struct rs_tcp_val {
	__u64 retransmits;
	__u64 last_retransmit_ns;
	__u64 samples;
	__u64 last_sample_ns; /* 0 = no tcp_probe sample yet */
	__u64 last_stream_ns; /* rate limit for TcpSample events */
	__u32 max_in_flight;  /* max(snd_nxt - snd_una) */
	__u32 max_unsent;     /* max(write_seq - snd_nxt) */
	struct rs_tcp_sample last;
};
_Static_assert(sizeof(struct rs_tcp_val) == 80, "rs_tcp_val layout");

/* rs_net: per (ifindex, direction). */
#define RS_NET_TX 0
#define RS_NET_RX 1
struct rs_net_key {
	__u32 ifindex;
	__u32 dir;
};

struct rs_net_val {
	__u64 packets;
	__u64 bytes;
	__u64 errors; /* tx: rc != NETDEV_TX_OK */
};

/* rs_numa_pages: per migrate reason (MR_*). rs_numa_tasks: per (tid, RS_NUMA_*). */
struct rs_numa_pages_val {
	__u64 events;
	__u64 succeeded;
	__u64 failed;
	__u64 thp_succeeded;
	__u64 thp_failed;
};

struct rs_numa_task_key {
	__u32 tid;
	__u32 numa_kind;
};

#endif /* RINGSIDE_PROBES_H */
