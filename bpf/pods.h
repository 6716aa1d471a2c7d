/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The addresses the programs know: local pods (local_pods, learnt from
 * their veths) and the watched CIDRs.
 */
#ifndef __FLOWLENS_PODS_H
#define __FLOWLENS_PODS_H

#include "types.h"
#include "maps.h"

/* learn_pod records that addr sends from the pod veth ifindex, on the first
 * packet of each of its flows: often enough to follow an IP moving to
 * another veth, and no lookup on the packets in between. */
static __always_inline void learn_pod(const __u8 *addr, __u32 ifindex)
{
	struct addr_key pod;
	__builtin_memcpy(pod.addr, addr, 16);
	bpf_map_update_elem(&local_pods, &pod, &ifindex, BPF_ANY);
}

static __always_inline bool watched(__u8 *addr)
{
	struct lpm_key lk;
	lk.prefixlen = 128;
	__builtin_memcpy(lk.addr, addr, 16);
	return bpf_map_lookup_elem(&watch_cidrs, &lk) != NULL;
}

/* The veth a local pod's address was seen on, or NULL. */
static __always_inline __u32 *local_pod_if(__u8 *addr)
{
	struct addr_key k;
	__builtin_memcpy(k.addr, addr, 16);
	return bpf_map_lookup_elem(&local_pods, &k);
}

#endif /* __FLOWLENS_PODS_H */
