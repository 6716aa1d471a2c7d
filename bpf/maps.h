/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Maps. For each: who writes it, who reads it.
 */
#ifndef __FLOWLENS_MAPS_H
#define __FLOWLENS_MAPS_H

#include "headers/kernel.h"
#include "headers/bpf_helpers.h"
#include "types.h"

/* Per-flow counters. Written by all programs (tc_* insert, nf_accept only
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
 * source, which is not in local_pods. Written by nf_accept when conntrack
 * shows NAT; read by tc_to_pod. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct flow_key);
	__type(value, __u8);
} nat_counted SEC(".maps");

/* Connections nf_accept has already matched to a flow: ct_tag (nf_conn
 * pointer | reply direction) -> that direction's flow key. A packet of such
 * a connection, in the epoch the flow records (flow_stats.nf_ct/nf_epoch),
 * costs one read of skb->_nfct and two hash lookups instead of rebuilding
 * the key from the conntrack tuple (five kernel reads). A reused nf_conn
 * pointer is matched again in the next epoch at the latest, and one that
 * now names another flow fails the nf_ct check at once. Written and read by
 * nf_accept; max_entries follows the flow table. */
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
 * connection). Written by nf_accept, read by tc_to_pod. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct flow_key);
	__type(value, struct flow_key);
} svc_replies SEC(".maps");

/* What tc_from_pod last did on this CPU, for the hooks the same packet
 * reaches next on the same CPU (the veth's receive runs the bridge, the
 * netfilter hooks and the destination veth's egress in one softirq):
 * - ifindex: a pod veth tc_from_pod runs on. tc_to_pod skips a packet that
 *   entered on it (counted there) without the pod_ifs lookup.
 * - ct, len: when nf_accept matched the packet's flow in this epoch (to
 *   its conntrack entry, flow_stats.nf_ct, or to none), that entry's tag
 *   and the packet's IP length. nf_accept, finding a packet of the same
 *   entry and direction, ingress veth and length, has nothing to add and
 *   returns before any lookup. One-shot: nf_accept clears len.
 * Internal to the programs (not in types.h: user space never reads it). */
struct hot_slot {
	__u64 ct;
	__u32 ifindex;
	__u32 len;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
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
 * ring buffer reader, which reads on a timer (about every 100 ms): records
 * wake it only once the ring is a quarter full, so a storm of new
 * dropped flows costs a wake-up per batch, not one per flow. */
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
