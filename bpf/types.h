/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Structs shared with Go. bpf2go generates their Go mirrors (-type), so
 * never mirror them by hand: change them here and run `make generate`.
 */
#ifndef __FLOWLENS_TYPES_H
#define __FLOWLENS_TYPES_H

#include "headers/kernel.h"

#define FAMILY_IPV4 4
#define FAMILY_IPV6 6

/* Where the packets of a flow were counted. */
enum flow_obs {
	OBS_NONE = 0,     /* only seen dropped (kfree_skb) */
	OBS_FROM_POD = 1, /* tc/TCX ingress on the pod's host-side veth */
	OBS_TO_POD = 2,   /* tc/TCX egress on the pod's host-side veth */
};

/*
 * One direction of a connection, as its sender emitted it (before any NAT on
 * the sender's side). Addresses are 16 bytes; IPv4 is stored v4-mapped
 * (::ffff:a.b.c.d). Ports are in host byte order. ICMP echo: sport = echo
 * id; every ICMP: dport = type << 8 | code.
 */
struct flow_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 family; /* FAMILY_IPV4 or FAMILY_IPV6 */
	__u8 flags;  /* FLOW_KEY_*: 0 for the key of a packet */
	__u8 pad;
};

/*
 * flow_key.flags: the key names an aggregate, not a packet's 5-tuple.
 * FLOW_KEY_ATTEMPTS: TCP connection attempts (SYN without ACK) the node
 * dropped, from every source port of saddr to daddr:dport (sport is 0).
 * kfree_skb folds each such drop here, unless the attempt's own flow holds
 * more than that SYN, so a SYN flood or a client retrying against a REJECT
 * is one flow whose drop count is its number of attempts. No packet ever
 * has this key: tc and netfilter programs never count into it.
 */
#define FLOW_KEY_ATTEMPTS 1

/* flow_stats.nf_epoch is the coarse clock >> this: about a second. */
#define NF_EPOCH_SHIFT 30

/* Cumulative counters of one flow_key; user space computes deltas. The
 * fields written per packet come first, so a packet touches few cache lines. */
struct flow_stats {
	__u64 pkts; /* counted at the veth (obs) */
	__u64 bytes;
	__u64 last_ns;  /* bpf_ktime_get_coarse_ns (CLOCK_MONOTONIC) */
	__u64 fwd_pkts; /* seen past the policy layer (netfilter link or delivery) */
	/* Internal to the programs: the conntrack entry past_policy last matched
	 * to this flow (pointer | 1 for its reply direction) and the epoch
	 * (coarse clock >> NF_EPOCH_SHIFT) it did so in. Until the epoch ends,
	 * past_policy has nothing to learn from another packet of that entry. */
	__u64 nf_ct;
	__u32 nf_epoch;
	__u32 ifindex;  /* veth the packets were counted on */
	__u8 tcp_flags; /* OR of the flags seen */
	__u8 obs;       /* enum flow_obs */
	__u8 is_reply;  /* 1 when this is the responder's direction */
	__u8 xlat;      /* 1 when xlat_daddr/xlat_dport are set */
	__u32 drop_reason;  /* enum skb_drop_reason of the last drop */
	__u64 first_ns;
	__u64 fwd_bytes;
	__u64 drop_pkts; /* freed with a drop reason (kfree_skb) */
	__u64 drop_bytes;
	__u32 drop_ifindex; /* skb->dev of the last drop */
	/* Internal: the epoch in which tc_to_pod last decided, from its other
	 * maps, that this flow is counted at its veth (obs OBS_TO_POD, ifindex):
	 * until it ends, a packet of the flow takes that lookup alone. */
	__u32 to_epoch;
	/* Where conntrack sent this direction after a DNAT (a ClusterIP's
	 * backend), when xlat is 1. Set by past_policy and kfree_skb. */
	__u16 xlat_dport;
	__u8 pad[6];
	__u8 xlat_daddr[16];
};

/* Pushed to drop_events when a flow's drop_pkts goes from 0 to 1, with the
 * flow's counters as they were just after that drop: user space reports
 * it from the event alone, without reading the table. */
struct drop_event {
	struct flow_key key;
	struct flow_stats stats;
};

/* local_pods and watch_cidrs keys: v4-mapped like flow_key. */
struct addr_key {
	__u8 addr[16];
};

struct lpm_key {
	__u32 prefixlen; /* of the v4-mapped address: IPv4 /16 is 112 */
	__u8 addr[16];
};

#endif /* __FLOWLENS_TYPES_H */
