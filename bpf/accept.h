/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * past_policy: what a packet of a flow a veth counted tells once it is
 * past the policy layer. nf_accept runs it after the filter table (the
 * netfilter mode); in the egress mode (the default) tc_to_pod and tc_exit
 * run it where a packet leaves, on a pod veth or a node interface, which
 * every forwarded packet reaches only after the FORWARD chain: the same
 * facts without a netfilter hook on every forwarded packet's path.
 */
#ifndef __FLOWLENS_ACCEPT_H
#define __FLOWLENS_ACCEPT_H

#include "types.h"
#include "maps.h"
#include "parse.h"
#include "flow.h"
#include "hotslot.h"
#include "conntrack.h"

/* Names what past_policy learns a packet's flow from: its conntrack entry's
 * direction (the nf_conn pointer, | CT_TAG_REPLY for the reply direction;
 * NEW packets are keyed as ESTABLISHED ones of the same direction), or 0
 * without an entry (the headers alone). RELATED packets, keyed from their
 * headers but carrying another connection's entry, get CT_TAG_NOCACHE:
 * never cached, they always take the full path. */
#define CT_TAG_REPLY 1
#define CT_TAG_NOCACHE 2
static __always_inline __u64 ct_tag(unsigned long nfct)
{
	unsigned long ct = nfct & ~NFCT_INFOMASK;
	__u8 info = nfct & NFCT_INFOMASK;
	if (!ct)
		return 0;
	if (info == IP_CT_ESTABLISHED || info == IP_CT_NEW)
		return ct;
	if (info == IP_CT_ESTABLISHED_REPLY)
		return ct | CT_TAG_REPLY;
	return ct | CT_TAG_NOCACHE;
}

/* past_policy marks skb's flow as past policy, if a veth counted it. skb is
 * a trusted kernel pointer (netfilter's ctx->skb, or a tc program's context
 * cast back to the kernel's), so its fields are plain loads. len is the
 * packet's IP length and iif the interface it entered the node on: with
 * the conntrack entry they tell the packet tc_from_pod counted last on this
 * CPU from any other; hs is this CPU's hot slot. */
static __always_inline void past_policy(struct sk_buff *skb, __u64 len, __u32 iif, struct hot_slot *hs)
{
	struct pkt_info pi;
	struct nf_conn *ct;
	__u8 ctinfo;

	unsigned long nfct = skb->_nfct;
	__u64 tag = ct_tag(nfct);

	/* tc_from_pod counted this very packet, of a flow this program matched
	 * to the same conntrack entry in this epoch (see hot): nothing to add.
	 * With an entry, its tag names the packet's connection and direction
	 * whatever interface the packet came through (a packet routed through
	 * the bridge's own address entered on the bridge, as the kernel sees
	 * it); without one, the interface must match too. */
	if (hs && hs->len) {
		bool same = hs->ct == tag && hs->len == len && (tag || hs->ifindex == iif);
		hs->len = 0;
		if (same)
			return;
	}
	/* Another packet of a connection already matched in this epoch. The
	 * flow may have been pruned while idle and counted anew at a veth
	 * (nf_ct is 0 then): that takes the full path, to confirm it again. */
	if (tag && !(tag & CT_TAG_NOCACHE)) {
		struct flow_key *known = bpf_map_lookup_elem(&ct_flows, &tag);
		if (known) {
			struct flow_stats *kst = bpf_map_lookup_elem(&flows, known);
			if (kst && kst->nf_ct == tag && kst->nf_epoch == nf_epoch(bpf_ktime_get_ns())) {
				/* Matched on another CPU this epoch: the slot here may
				 * cache the flow with the epoch before, and would send
				 * its packets here for the rest of this one. */
				struct hot_entry *he = hs ? hot_find(hs, known) : NULL;
				if (he) {
					he->nf_ct = tag;
					he->nf_epoch = kst->nf_epoch;
					he->nf_fwd = kst->fwd_pkts != 0;
				}
				return;
			}
		}
	}

	if (key_from_skb(skb, &pi, &ct, &ctinfo) < 0)
		return;
	/* Only flows a veth counted: non-pod traffic never enters the map. */
	struct flow_stats *st = bpf_map_lookup_elem(&flows, &pi.key);
	if (!st) {
		if (ct && ctinfo == IP_CT_ESTABLISHED_REPLY)
			note_remote_svc_reply(ct, &pi.key);
		return;
	}

	__u64 segs = kskb_segs(skb);
	__sync_fetch_and_add(&st->fwd_pkts, segs);
	__sync_fetch_and_add(&st->fwd_bytes, len);
	if (!(tag & CT_TAG_NOCACHE)) {
		/* What follows decides the same for every packet of this entry
		 * and direction (or, without an entry, of this flow) until the
		 * epoch ends. */
		if (tag)
			bpf_map_update_elem(&ct_flows, &tag, &pi.key, BPF_ANY);
		st->nf_ct = tag;
		st->nf_epoch = nf_epoch(bpf_ktime_get_ns());
		/* The flow tc_from_pod caches on this CPU: its next packets
		 * return at the hot check above. */
		struct hot_entry *he = hs ? hot_find(hs, &pi.key) : NULL;
		if (he) {
			he->nf_ct = tag;
			he->nf_epoch = st->nf_epoch;
			he->nf_fwd = 1;
		}
	}
	if (!ct || st->obs != OBS_FROM_POD)
		return;

	if (ctinfo == IP_CT_ESTABLISHED_REPLY && !st->is_reply)
		st->is_reply = 1;
	else if ((ctinfo == IP_CT_NEW || ctinfo == IP_CT_ESTABLISHED) && st->is_reply)
		st->is_reply = 0;
	if (pi.key.proto != IPPROTO_ICMP && pi.key.proto != IPPROTO_ICMPV6)
		note_xlat(ct, ctinfo, st);

	/* A NATed packet a local pod sent may reach another local pod with an
	 * address that is not in local_pods (a ClusterIP as the source of a
	 * backend's reply). Remember its post-NAT key so tc_to_pod skips it. */
	unsigned long status = BPF_CORE_READ(ct, status);
	if (!(status & IPS_NAT_MASK) || pi.key.proto == IPPROTO_ICMP || pi.key.proto == IPPROTO_ICMPV6)
		return;
	struct flow_key other, post;
	int err;
	if (ctinfo == IP_CT_ESTABLISHED_REPLY)
		err = KEY_FROM_CT(ct, 0, &other);
	else if (ctinfo == IP_CT_NEW || ctinfo == IP_CT_ESTABLISHED)
		err = KEY_FROM_CT(ct, 1, &other);
	else
		return;
	if (err)
		return;
	reverse_key(&other, &post);
	if (!bpf_map_lookup_elem(&nat_counted, &post)) {
		__u8 one = 1;
		bpf_map_update_elem(&nat_counted, &post, &one, BPF_ANY);
	}
}

#endif /* __FLOWLENS_ACCEPT_H */
