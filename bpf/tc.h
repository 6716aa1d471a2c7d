/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The veth programs: tc_from_pod (ingress on a pod's host-side veth, what
 * the pod sends) and tc_to_pod (egress, what is delivered to it).
 */
#ifndef __FLOWLENS_TC_H
#define __FLOWLENS_TC_H

#include "types.h"
#include "maps.h"
#include "parse.h"
#include "flow.h"
#include "pods.h"
#include "hotslot.h"
#include "accept.h"

/* A tc program's context as the kernel's sk_buff (6.3+; the verifier turns
 * the call into a register move): the conntrack entry and the headers'
 * offsets are plain loads from it. Weak, and called only when
 * accept_at_egress is set: on an older kernel the verifier drops the calls
 * as dead code, and the programs load for the other modes. */
extern void *bpf_cast_to_kern_ctx(void *obj) __ksym __weak;

static __always_inline __u64 tc_segs(struct __sk_buff *skb)
{
	__u32 segs = skb->gso_segs;
	return segs ? segs : 1;
}

/* IP-layer length, so veth counts and netfilter/kfree counts agree. */
static __always_inline __u64 tc_l3_len(struct __sk_buff *skb)
{
	return skb->len > ETH_HLEN ? skb->len - ETH_HLEN : 0;
}

static __always_inline bool is_multicast(const struct flow_key *k)
{
	if (k->family == FAMILY_IPV4)
		return (k->daddr[12] & 0xf0) == 0xe0 ||
		       (k->daddr[12] == 0xff && k->daddr[13] == 0xff && k->daddr[14] == 0xff && k->daddr[15] == 0xff);
	return k->daddr[0] == 0xff;
}

SEC("tc")
int tc_from_pod(struct __sk_buff *skb)
{
	struct hot_slot *hs = hot_slot();
	if (!hs)
		return TC_ACT_UNSPEC; /* never: a slot per CPU */
	hs->ifindex = skb->ifindex;
	hs->len = 0;
	struct pkt_info pi;
	if (parse_tc(skb, &pi) < 0)
		return TC_ACT_UNSPEC;

	/* The coarse clock (a tick's resolution): the precise one is a
	 * clocksource read on every packet, and flow times need no better. */
	__u64 now = coarse_now(hs);
	__u64 len = tc_l3_len(skb), segs = tc_segs(skb);
	bool nf_hot;
	struct hot_entry *he = hot_find(hs, &pi.key);
	if (he && he->key_ifindex == skb->ifindex && he->gen == prune_gen && arm_flush(hs)) {
		/* A flow this CPU counted lately: the packet waits in the slot. */
		he->pkts += segs;
		he->bytes += len;
		he->last_ns = now;
		he->tcp_flags |= pi.tcp_flags;
	} else {
		/* Replace the entry counted into less lately, or this flow's own
		 * (cached on another veth, or its packets cannot wait). */
		if (!he)
			he = hs->mru ? &hs->e[0] : &hs->e[1];
		flush_pending(he); /* the previous flow's, before the entry changes */
		bool created = false;
		struct flow_stats *st = count(&pi, len, segs, skb->ifindex, OBS_FROM_POD, false, &created, now);
		if (created)
			learn_pod(pi.key.saddr, skb->ifindex);
		if (!st) {
			he->cached = 0;
			return TC_ACT_UNSPEC;
		}
		hot_cache(he, &pi.key, skb->ifindex, st);
	}
	hs->mru = he == &hs->e[1];
	nf_hot = he->nf_fwd && he->nf_epoch == nf_epoch(now);
	/* past_policy matched this flow (to its conntrack entry, if any) in this
	 * epoch: tell it which entry, so for this packet (next on this CPU) it
	 * returns before any lookup. */
	if (nf_hot) {
		hs->ct = he->nf_ct;
		hs->len = len;
	}
	return TC_ACT_UNSPEC;
}

SEC("tc")
int tc_to_pod(struct __sk_buff *skb)
{
	__u32 iif = skb->ingress_ifindex;
	struct hot_slot *hs = hot_slot();
	/* Delivered, so past the FORWARD chain (egress mode: see accept.h). */
	if (accept_at_egress)
		past_policy(bpf_cast_to_kern_ctx(skb), tc_l3_len(skb), iif, hs);
	if (iif && hs && hs->ifindex == iif)
		return TC_ACT_UNSPEC; /* the common case of the one below */
	if (iif && bpf_map_lookup_elem(&pod_ifs, &iif))
		return TC_ACT_UNSPEC; /* entered on a pod veth: counted there */

	struct pkt_info pi;
	if (parse_tc(skb, &pi) < 0)
		return TC_ACT_UNSPEC;

	/* A flow counted here in this epoch: what the lookups below decided
	 * for it still holds, so this one lookup is all. */
	__u64 now = hs ? coarse_now(hs) : bpf_ktime_get_coarse_ns();
	__u64 len = tc_l3_len(skb), segs = tc_segs(skb);
	struct flow_stats *st = bpf_map_lookup_elem(&flows, &pi.key);
	if (st && st->to_epoch == nf_epoch(now) && st->obs == OBS_TO_POD && st->ifindex == skb->ifindex) {
		add(st, pi.tcp_flags, len, segs, skb->ifindex, OBS_TO_POD, true, now);
		return TC_ACT_UNSPEC;
	}

	struct addr_key src;
	__builtin_memcpy(src.addr, pi.key.saddr, 16);
	if (bpf_map_lookup_elem(&local_pods, &src))
		return TC_ACT_UNSPEC; /* counted at the sender's veth */
	if (bpf_map_lookup_elem(&nat_counted, &pi.key))
		return TC_ACT_UNSPEC; /* same, seen here after NAT */

	/* The destination of a unicast packet delivered here is this veth's
	 * pod: learn it too, so a drop towards a pod that never sent anything
	 * yet is still known as ingress to a local pod. */
	if (!is_multicast(&pi.key)) {
		struct addr_key dst;
		__builtin_memcpy(dst.addr, pi.key.daddr, 16);
		__u32 *known = bpf_map_lookup_elem(&local_pods, &dst);
		if (!known || *known != skb->ifindex) {
			__u32 ifindex = skb->ifindex;
			bpf_map_update_elem(&local_pods, &dst, &ifindex, BPF_ANY);
		}
	}

	/* A ClusterIP reply from a backend on another node: count it under the
	 * backend's key (see svc_replies). */
	struct flow_key *backend = bpf_map_lookup_elem(&svc_replies, &pi.key);
	if (backend)
		__builtin_memcpy(&pi.key, backend, sizeof(pi.key));

	bool created = false;
	st = count(&pi, len, segs, skb->ifindex, OBS_TO_POD, true, &created, now);
	if (!st)
		return TC_ACT_UNSPEC;
	if (!backend)
		st->to_epoch = nf_epoch(now); /* this key is the packet's: see above */
	else if (!st->is_reply)
		st->is_reply = 1;
	return TC_ACT_UNSPEC;
}

/* tc_exit, egress on the node's other interfaces in the egress mode (the
 * overlay's, the uplinks'): a packet leaving through one is past the
 * FORWARD chain. Counts nothing: the packets it sees were counted at the
 * sending pod's veth, or are the node's own. */
SEC("tc")
int tc_exit(struct __sk_buff *skb)
{
	if (!accept_at_egress)
		return TC_ACT_UNSPEC; /* never attached then */
	if (skb->protocol != bpf_htons(ETH_P_IP) && skb->protocol != bpf_htons(ETH_P_IPV6))
		return TC_ACT_UNSPEC;
	struct sk_buff *k = bpf_cast_to_kern_ctx(skb);
	/* The IP length whatever the device's link layer (an Ethernet-like
	 * overlay, or an L3 one such as WireGuard's): __dev_queue_xmit set
	 * the MAC header where the packet's data starts. */
	__u32 l2 = (__u16)(k->network_header - k->mac_header);
	__u32 len = skb->len;
	past_policy(k, len > l2 ? len - l2 : 0, skb->ingress_ifindex, hot_slot());
	return TC_ACT_UNSPEC;
}

#endif /* __FLOWLENS_TC_H */
