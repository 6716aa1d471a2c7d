/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Maps. For each: who writes it, who reads it.
 */
#ifndef __FLOWLENS_MAPS_H
#define __FLOWLENS_MAPS_H

#include "headers/kernel.h"
#include "headers/bpf_helpers.h"
#include "types.h"

/* Per-flow counters. Written by all programs (tc_* insert, past_policy only
 * updates, kfree_skb inserts drops); read and pruned by user space each
 * flush. max_entries is set from Config.FlowTableSize before load. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow_key);
	__type(value, struct flow_stats);
} flows SEC(".maps");

/* IPs seen as the source of packets on a pod veth -> that veth's ifindex.
 * Written by tc_from_pod; read by tc_to_pod (skip packets a local pod sent,
 * already counted at its own veth) and kfree_skb (scope). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct addr_key);
	__type(value, __u32);
} local_pods SEC(".maps");

/* ifindexes of the pod veths tc_from_pod is attached to. A packet
 * delivered to a pod whose skb entered the node on one of them was counted
 * at that veth already: tc_to_pod skips it before parsing anything (the
 * common same-node case, ClusterIP replies included). Written by user space
 * after attaching and before detaching; read by tc_to_pod. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} pod_ifs SEC(".maps");

/* Post-NAT keys of flows already counted at their sender's veth: a reply
 * from a local service backend reaches the client with the ClusterIP as
 * source, which is not in local_pods. Written by past_policy when conntrack
 * shows NAT; read by tc_to_pod. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct flow_key);
	__type(value, __u8);
} nat_counted SEC(".maps");

/* Connections past_policy has already matched to a flow: ct_tag (nf_conn
 * pointer | reply direction) -> that direction's flow key. A packet of such
 * a connection, in the epoch the flow records (flow_stats.nf_ct/nf_epoch),
 * costs one read of skb->_nfct and two hash lookups instead of rebuilding
 * the key from the conntrack tuple (five kernel reads). A reused nf_conn
 * pointer is matched again in the next epoch at the latest, and one that
 * now names another flow fails the nf_ct check at once. Written and read by
 * past_policy; max_entries follows the flow table. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct flow_key);
} ct_flows SEC(".maps");

/* Replies of ClusterIP connections whose backend is on another node:
 * post-NAT key (ClusterIP:port -> client, what the client's veth sees)
 * -> the key as the backend sent it. Such a reply is counted once, on
 * delivery, under the backend's key, so it names the backend pod and is
 * judged as the reply of a connection to it (as kube-router judged the
 * connection). Written by past_policy, read by tc_to_pod. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct flow_key);
	__type(value, struct flow_key);
} svc_replies SEC(".maps");

/* One flow a hot slot caches: the flow (key, on the veth key_ifindex),
 * what past_policy last decided for it (nf_ct, nf_epoch, nf_fwd: copied from
 * the flow when cached, and written by past_policy when it matches the key),
 * and its packets counted here but not yet in the flow (pkts, bytes,
 * tcp_flags, last_ns). */
struct hot_entry {
	struct flow_key key;
	__u64 pkts;
	__u64 bytes;
	__u64 last_ns;
	__u64 nf_ct;
	__u32 nf_epoch;
	__u32 key_ifindex;
	__u8 tcp_flags;
	__u8 cached;    /* key is valid */
	__u8 nf_fwd;    /* past_policy has seen the flow past policy */
	__u8 pad;
	__u32 gen;      /* prune_gen when cached: user space deleted no flow since */
};

/* What tc_from_pod last did on a CPU, for the hooks the same packet
 * reaches next on the same CPU (the veth's receive runs the bridge, the
 * netfilter hooks and the destination veth's egress in one softirq), and
 * the two flows it last counted there. Indexed by CPU: an array rather
 * than a per-CPU one, because the kernel keeps bpf_timer out of per-CPU
 * maps.
 * - ifindex: a pod veth tc_from_pod runs on. tc_to_pod skips a packet that
 *   entered on it (counted there) without the pod_ifs lookup.
 * - ct, len: when past_policy matched the packet's flow in this epoch (to
 *   its conntrack entry, flow_stats.nf_ct, or to none), that entry's tag
 *   and the packet's IP length. past_policy, finding a packet of the same
 *   entry and direction and length (without an entry, of the same ingress
 *   veth), has nothing to add and returns before any lookup. One-shot:
 *   past_policy clears len.
 * - e[2]: the two flows tc_from_pod counted last on this CPU (two, because
 *   a TCP transfer between two pods of a node often alternates its data
 *   and its ACKs on one CPU: with one entry, each evicted the other). A
 *   further packet of either adds to its entry's pending counts instead of
 *   looking the flow up: the flow-table lookup is most of tc_from_pod's
 *   cost under load. Another flow's packet takes the entry counted into
 *   less lately (mru names the other); its pending counts reach the flow
 *   then (flush_pending), or flush_delay_ns (config.h) after the first of
 *   any entry's (timer, pinned to this CPU, flushing both): user space sees
 *   every packet once, at most that much later. Only tc_from_pod, the
 *   timer and kfree_skb's attempt folding (softirqs of this CPU, which
 *   never interleave) touch the keys and the pending counts.
 * - jiffies, coarse: coarse_now's cache of the coarse clock (hotslot.h).
 * Internal to the programs (not in types.h: user space never reads it). */
struct hot_slot {
	struct bpf_timer timer;
	__u64 ct;
	__u32 ifindex;
	__u32 len;
	struct hot_entry e[2];
	__u64 jiffies;  /* coarse_now: the tick coarse was read in */
	__u64 coarse;   /* coarse_now: the coarse clock read then */
	__u8 mru;       /* the index of the entry counted into last */
	__u8 armed;     /* the timer is set to flush */
	__u8 timer_ok;  /* the timer is initialised; 2: it cannot be (flush at once) */
	__u8 pad[29];   /* 256 bytes a slot: CPUs share few cache lines */
};
_Static_assert(sizeof(struct hot_slot) == 256, "a hot slot is 256 bytes");

/* max_entries is set to the number of possible CPUs before load. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hot_slot);
} hot SEC(".maps");

/* Pod and service CIDRs: kfree_skb reports only drops touching them.
 * Written by user space before attach. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 64);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_key);
	__type(value, __u8);
} watch_cidrs SEC(".maps");

/* First drop of a flow, with its counters, so user space can report it
 * within its read interval. Written by kfree_skb; read by the user-space
 * ring buffer reader, which reads on a timer (about every 100 ms) while
 * records come: records wake it only once the ring is a quarter full, so a
 * storm of new dropped flows costs a wake-up per batch, not one per flow.
 * After an interval without records it sleeps with no timer and the next
 * record wakes it (drop_reader_idle). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} drop_events SEC(".maps");

/* uapi bpf.h: bpf_ringbuf_submit flags and bpf_ringbuf_query fields. */
enum {
	BPF_RB_NO_WAKEUP = (1ULL << 0),
	BPF_RB_FORCE_WAKEUP = (1ULL << 1),
};
enum {
	BPF_RB_AVAIL_DATA = 0,
	BPF_RB_RING_SIZE = 1,
};

/* The fill (a fraction of the ring: 1/DROP_RING_WAKE_DIV) from which a
 * record wakes the reader at once. */
#define DROP_RING_WAKE_DIV 4

#endif /* __FLOWLENS_MAPS_H */
