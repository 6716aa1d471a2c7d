/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * nf_accept, the netfilter program after the filter table: marks packets
 * of known flows as past policy. In the netfilter mode it runs on the
 * FORWARD, LOCAL_IN and LOCAL_OUT hooks; in the egress mode only on
 * LOCAL_IN, for packets a pod sends to the node itself, which leave
 * through no interface.
 */
#ifndef __FLOWLENS_NETFILTER_H
#define __FLOWLENS_NETFILTER_H

#include "types.h"
#include "accept.h"

SEC("netfilter")
int nf_accept(struct bpf_nf_ctx *ctx)
{
	struct sk_buff *skb = ctx->skb;
	past_policy(skb, skb->len, skb->skb_iif, hot_slot());
	return NF_ACCEPT;
}

#endif /* __FLOWLENS_NETFILTER_H */
