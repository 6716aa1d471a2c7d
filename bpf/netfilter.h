/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * nf_accept, the netfilter program after the filter table: marks packets
 * of known flows as past policy.
 */
#ifndef __FLOWLENS_NETFILTER_H
#define __FLOWLENS_NETFILTER_H

#include "types.h"
#include "maps.h"
#include "parse.h"
#include "flow.h"
#include "hotslot.h"
#include "conntrack.h"

/* Names what nf_accept learns a packet's flow from: its conntrack entry's
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

SEC("netfilter")
int nf_accept(struct bpf_nf_ctx *ctx)
{
	struct sk_buff *skb = ctx->skb;
	struct pkt_info pi;
	struct nf_conn *ct;
	__u8 ctinfo;

	/* ctx->skb is a trusted kernel pointer: direct (CO-RE) loads, no
	 * probe-read helper call on the per-packet path. */
	unsigned long nfct = skb->_nfct;
	__u64 tag = ct_tag(nfct);

	/* tc_from_pod counted this very packet, of a flow this program matched
	 * to the same conntrack entry in this epoch (see hot): nothing to add. */
	struct hot_slot *hs = hot_slot();
	if (hs && hs->len) {
		bool same = hs->ct == tag && hs->len == skb->len && hs->ifindex == skb->skb_iif;
		hs->len = 0;
		if (same)
			return NF_ACCEPT;
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
				return NF_ACCEPT;
			}
		}
	}

	if (key_from_skb(skb, &pi, &ct, &ctinfo) < 0)
		return NF_ACCEPT;
	/* Only flows a veth counted: non-pod traffic never enters the map. */
	struct flow_stats *st = bpf_map_lookup_elem(&flows, &pi.key);
	if (!st) {
		if (ct && ctinfo == IP_CT_ESTABLISHED_REPLY)
			note_remote_svc_reply(ct, &pi.key);
		return NF_ACCEPT;
	}

	__u64 segs = kskb_segs(skb);
	__sync_fetch_and_add(&st->fwd_pkts, segs);
	__sync_fetch_and_add(&st->fwd_bytes, BPF_CORE_READ(skb, len));
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
		return NF_ACCEPT;

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
		return NF_ACCEPT;
	struct flow_key other, post;
	int err;
	if (ctinfo == IP_CT_ESTABLISHED_REPLY)
		err = KEY_FROM_CT(ct, 0, &other);
	else if (ctinfo == IP_CT_NEW || ctinfo == IP_CT_ESTABLISHED)
		err = KEY_FROM_CT(ct, 1, &other);
	else
		return NF_ACCEPT;
	if (err)
		return NF_ACCEPT;
	reverse_key(&other, &post);
	if (!bpf_map_lookup_elem(&nat_counted, &post)) {
		__u8 one = 1;
		bpf_map_update_elem(&nat_counted, &post, &one, BPF_ANY);
	}
	return NF_ACCEPT;
}

#endif /* __FLOWLENS_NETFILTER_H */
