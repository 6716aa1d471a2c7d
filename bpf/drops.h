/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * kfree_skb, on tp_btf/kfree_skb: counts the packets the kernel drops and
 * folds dropped connection attempts into one flow per source, destination
 * and port.
 */
#ifndef __FLOWLENS_DROPS_H
#define __FLOWLENS_DROPS_H

#include "types.h"
#include "config.h"
#include "maps.h"
#include "parse.h"
#include "flow.h"
#include "pods.h"
#include "hotslot.h"
#include "conntrack.h"

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

/* The TCP flags of a kernel skb, from its headers (a key taken from
 * conntrack carries none). */
static __always_inline __u8 kskb_tcp_flags(struct sk_buff *skb)
{
	struct pkt_info hp;
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 nh = BPF_CORE_READ(skb, network_header);
	__u16 proto = bpf_ntohs(BPF_CORE_READ(skb, protocol));
	if (parse_l3(head, true, nh, proto, &hp) < 0 || hp.key.proto != IPPROTO_TCP)
		return 0;
	return hp.tcp_flags;
}

/* A connection attempt: a SYN without ACK (nor RST or FIN). */
static __always_inline bool is_attempt(__u8 flags)
{
	return (flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN)) == TCP_SYN;
}

/* fold_attempt counts a dropped connection attempt in its aggregate (see
 * FLOW_KEY_ATTEMPTS), turning key into the aggregate's, and returns the
 * aggregate; NULL leaves the drop to the attempt's own flow: one that holds
 * more than this SYN (another packet counted or dropped, anything past
 * policy, flags besides SYN) is a connection, reported whole.
 *
 * Exactness: the attempt's own entry, when a veth counted the SYN, holds
 * no drop (checked here, and kfree_skb counts drops nowhere else), so
 * whatever user space read of it reports nothing dropped and nothing
 * forwarded (no fwd_pkts: unconfirmed packets are held, and a held packet
 * whose entry vanished is forgotten). Only the caller whose delete removes
 * it takes it out of flows_created (an entry user space read before is
 * then both discovered and taken out: the eviction estimate can come out
 * low by such an entry, never high); the drop itself is counted here once,
 * whoever deleted the entry. A SYN of the same 5-tuple counted on another
 * CPU meanwhile (a retransmission) loses its veth count with the entry, but
 * its own drop comes here too. The aggregate counts at the veth exactly
 * what it drops (for a pod's own attempts), so none of it is ever held as
 * unmatched and reported forwarded. */
/* forget_hot_attempt takes a folded attempt out of this CPU's hot slot,
 * or returns false when the slot shows the 5-tuple is more than attempts
 * (packets with other flags, or more than this SYN waiting).
 * tc_from_pod and kfree_skb run for a SYN in one softirq on one CPU, so
 * when the slot caches the attempt's key and holds packets, they are this
 * SYN's (each earlier one was taken out at its own fold): the aggregate
 * counts it now, and the slot must not bring it back as a flow of its own.
 * The slot forgets the key too, so the next SYN of that 5-tuple (a
 * retransmission, a second later on an idle CPU) is looked up and folded
 * like the first. */
static __always_inline bool forget_hot_attempt(const struct flow_key *key, __u64 segs, __u64 len)
{
	struct hot_slot *hs = hot_slot();
	struct hot_entry *he = hs ? hot_find(hs, key) : NULL;
	if (!he)
		return true;
	if (he->pkts > segs || (he->tcp_flags & ~TCP_SYN))
		return false;
	he->pkts = 0;
	he->bytes = 0;
	he->tcp_flags = 0;
	he->cached = 0;
	return true;
}

static __always_inline struct flow_stats *fold_attempt(struct flow_key *key, __u8 obs, __u32 ifindex, __u64 segs, __u64 len,
						      __u64 now)
{
	struct flow_stats *own = bpf_map_lookup_elem(&flows, key);
	if (own && (own->drop_pkts || own->fwd_pkts || own->pkts > segs || (own->tcp_flags & ~TCP_SYN)))
		return NULL;
	if (!forget_hot_attempt(key, segs, len))
		return NULL;
	if (own) {
		if (bpf_map_delete_elem(&flows, key) == 0)
			__sync_fetch_and_add(&flows_created, -1);
	}
	key->sport = 0;
	key->flags = FLOW_KEY_ATTEMPTS;
	struct flow_stats *st = bpf_map_lookup_elem(&flows, key);
	if (!st) {
		struct flow_stats init;
		__builtin_memset(&init, 0, sizeof(init));
		init.first_ns = now;
		init.last_ns = now;
		init.obs = obs;
		init.ifindex = ifindex;
		if (bpf_map_update_elem(&flows, key, &init, BPF_NOEXIST) == 0)
			__sync_fetch_and_add(&flows_created, 1);
		st = bpf_map_lookup_elem(&flows, key);
		if (!st)
			return NULL; /* never: an LRU map makes room */
	}
	if (st->obs == OBS_FROM_POD) {
		__sync_fetch_and_add(&st->pkts, segs);
		__sync_fetch_and_add(&st->bytes, len);
	}
	if (!(st->tcp_flags & TCP_SYN))
		st->tcp_flags |= TCP_SYN;
	return st;
}

/* Wake the reader when it sleeps with no timer, or when the ring is
 * filling (see drop_events); otherwise its timer reads the record. Called
 * after the record's reservation: the exchange is a full barrier, and user
 * space sets the flag before it looks at the ring a last time, so either
 * it sees this record or this sees the flag. */
static __always_inline __u64 drop_ring_wakeup(void)
{
	if (__sync_lock_test_and_set(&drop_reader_idle, 0))
		return BPF_RB_FORCE_WAKEUP;
	__u64 avail = bpf_ringbuf_query(&drop_events, BPF_RB_AVAIL_DATA);
	__u64 size = bpf_ringbuf_query(&drop_events, BPF_RB_RING_SIZE);
	return avail >= size / DROP_RING_WAKE_DIV ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(kfree_skb, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	if ((__u32)reason <= bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_NOT_SPECIFIED))
		return 0;
	struct net_device *dev = BPF_CORE_READ(skb, dev);
	if (!dev)
		return 0;
	if (BPF_CORE_READ(dev, nd_net.net, ns.inum) != netns_ino)
		return 0;
	__u16 proto = bpf_ntohs(BPF_CORE_READ(skb, protocol));
	if (proto != ETH_P_IP && proto != ETH_P_IPV6)
		return 0;

	struct pkt_info pi;
	struct nf_conn *ct;
	__u8 ctinfo;
	if (key_from_skb(skb, &pi, &ct, &ctinfo) < 0)
		return 0;

	__u32 *src_if = local_pod_if(pi.key.saddr);
	bool src_local = src_if != NULL;
	bool dst_local = !src_local && local_pod_if(pi.key.daddr) != NULL;
	if (!src_local && !dst_local && !watched(pi.key.saddr) && !watched(pi.key.daddr))
		return 0;

	__u64 now = bpf_ktime_get_ns();
	__u32 ifindex = BPF_CORE_READ(dev, ifindex);
	__u64 segs = kskb_segs(skb), len = BPF_CORE_READ(skb, len);
	__u8 obs = src_local ? OBS_FROM_POD : (dst_local ? OBS_TO_POD : OBS_NONE);
	struct flow_stats *st = NULL;
	if (pi.key.proto == IPPROTO_TCP && is_attempt(ct ? kskb_tcp_flags(skb) : pi.tcp_flags))
		st = fold_attempt(&pi.key, obs, src_if ? *src_if : ifindex, segs, len, now);
	if (!st) {
		bool created = false;
		st = flow_get_or_create(&pi.key, obs, src_local ? 0 : ifindex, now, &created);
	}
	if (!st)
		return 0;
	__u64 before = st->drop_pkts;
	__sync_fetch_and_add(&st->drop_pkts, segs);
	__sync_fetch_and_add(&st->drop_bytes, len);
	st->drop_reason = reason;
	st->drop_ifindex = ifindex;
	st->last_ns = now;
	if (ct && pi.key.proto != IPPROTO_ICMP && pi.key.proto != IPPROTO_ICMPV6)
		note_xlat(ct, ctinfo, st);
	if (before != 0)
		return 0;

	struct drop_event *ev = bpf_ringbuf_reserve(&drop_events, sizeof(*ev), 0);
	if (!ev) {
		__sync_fetch_and_add(&ringbuf_lost, 1);
		return 0;
	}
	__builtin_memcpy(&ev->key, &pi.key, sizeof(ev->key));
	__builtin_memcpy(&ev->stats, st, sizeof(ev->stats));
	bpf_ringbuf_submit(ev, drop_ring_wakeup());
	return 0;
}

#endif /* __FLOWLENS_DROPS_H */
