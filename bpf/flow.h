/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The flow table: creating a flow's entry and counting packets into it.
 */
#ifndef __FLOWLENS_FLOW_H
#define __FLOWLENS_FLOW_H

#include "types.h"
#include "config.h"
#include "maps.h"
#include "parse.h"

static __always_inline void reverse_key(const struct flow_key *k, struct flow_key *r)
{
	__builtin_memcpy(r, k, sizeof(*r));
	__builtin_memcpy(r->saddr, k->daddr, 16);
	__builtin_memcpy(r->daddr, k->saddr, 16);
	if (k->proto == IPPROTO_ICMP || k->proto == IPPROTO_ICMPV6) {
		/* Echo-style pairs share the id; the type flips. */
		__u8 t = k->dport >> 8;
		switch (t) {
		case 8: t = 0; break;
		case 0: t = 8; break;
		case 13: case 15: case 17: t += 1; break;
		case 14: case 16: case 18: t -= 1; break;
		case 128: t = 129; break;
		case 129: t = 128; break;
		}
		r->dport = (__u16)t << 8;
		return;
	}
	r->sport = k->dport;
	r->dport = k->sport;
}

static __always_inline bool same_key(const struct flow_key *a, const struct flow_key *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;
	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3] && x[4] == y[4];
}

/* flow_create inserts a flow's entry. Not inlined: the packets of known
 * flows never run it, and it keeps their path short in the program's code. */
static __noinline int flow_create(struct flow_key *key, __u8 obs, __u32 ifindex, __u64 now)
{
	struct flow_stats init;
	__builtin_memset(&init, 0, sizeof(init));
	init.first_ns = now;
	init.last_ns = now;
	init.obs = obs;
	init.ifindex = ifindex;
	/* The first direction seen is the initiator's; conntrack corrects this
	 * in past_policy for connections that predate the agent. */
	struct flow_key rev;
	reverse_key(key, &rev);
	if (bpf_map_lookup_elem(&flows, &rev))
		init.is_reply = 1;
	if (bpf_map_update_elem(&flows, key, &init, BPF_NOEXIST) == 0)
		__sync_fetch_and_add(&flows_created, 1);
	return 0;
}

static __always_inline struct flow_stats *flow_get_or_create(struct flow_key *key, __u8 obs, __u32 ifindex, __u64 now, bool *created)
{
	struct flow_stats *st = bpf_map_lookup_elem(&flows, key);
	if (st)
		return st;
	*created = true;
	flow_create(key, obs, ifindex, now);
	return bpf_map_lookup_elem(&flows, key);
}

/* The epoch past_policy's per-flow decisions hold for (about a second).
 * Netfilter programs have only the precise clock, tc_from_pod uses the
 * coarse one: they differ by less than a tick, which at an epoch's end
 * costs at most one more full pass in past_policy. */
static __always_inline __u32 nf_epoch(__u64 now)
{
	return now >> NF_EPOCH_SHIFT;
}

/* add counts packets into their flow. */
static __always_inline void add(struct flow_stats *st, __u8 tcp_flags, __u64 bytes, __u64 segs, __u32 ifindex, __u8 obs,
				bool delivered, __u64 now)
{
	__sync_fetch_and_add(&st->pkts, segs);
	__sync_fetch_and_add(&st->bytes, bytes);
	if (delivered) {
		__sync_fetch_and_add(&st->fwd_pkts, segs);
		__sync_fetch_and_add(&st->fwd_bytes, bytes);
	}
	st->last_ns = now;
	if ((st->tcp_flags | tcp_flags) != st->tcp_flags)
		st->tcp_flags |= tcp_flags;
	if (st->obs == OBS_NONE)
		st->obs = obs; /* created by kfree_skb before the veth saw it */
	if (st->ifindex != ifindex)
		st->ifindex = ifindex;
}

/* count adds a packet to its flow and returns the flow (NULL when the
 * table has no room); *created tells whether this packet created it. */
static __always_inline struct flow_stats *count(struct pkt_info *pi, __u64 bytes, __u64 segs, __u32 ifindex, __u8 obs, bool delivered,
						bool *created, __u64 now)
{
	struct flow_stats *st = flow_get_or_create(&pi->key, obs, ifindex, now, created);
	if (st)
		add(st, pi->tcp_flags, bytes, segs, ifindex, obs, delivered, now);
	return st;
}

#endif /* __FLOWLENS_FLOW_H */
