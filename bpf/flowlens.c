//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * flowlens capture: per-flow counters for the traffic of the pods on this
 * node, and the kernel's verdict on it.
 *
 * 1. tc_from_pod (tc/TCX ingress on a pod's host-side veth) counts every
 *    packet the pod sends, keyed by the 5-tuple as sent (pre-NAT), and learns
 *    the pod's IP (local_pods).
 * 2. tc_to_pod (tc/TCX egress on the veth) counts packets delivered to the
 *    pod, unless a local pod sent them (they entered on a pod veth, or come
 *    from a local pod's address: already counted at its own veth, so
 *    same-node traffic is counted once). Delivery is past policy: it marks
 *    the packets forwarded. The reply of a ClusterIP connection served by
 *    another node's backend is counted under the backend's key.
 * 3. nf_accept (netfilter link after the filter table on FORWARD, INPUT and
 *    OUTPUT) marks packets of known flows as past policy. Keys come from the
 *    skb's conntrack entry, which holds the tuples as each side sent them.
 *    That is decided once per flow, entry and epoch (about a second): the
 *    packet tc_from_pod just counted returns after one comparison (hot),
 *    other packets of a matched entry after two lookups (ct_flows).
 * 4. kfree_skb (tp_btf) counts packets the kernel freed with a drop reason in
 *    this network namespace, for pod and service addresses, and tells user
 *    space of a flow's first drop through the drop_events ring buffer. A
 *    dropped connection attempt (TCP SYN) whose flow holds nothing else is
 *    folded into one flow per source, destination and port (see
 *    FLOW_KEY_ATTEMPTS), so a SYN flood is one flow, not one per SYN.
 * No program ever changes a verdict.
 */
#include "headers/kernel.h"
#include "headers/bpf_helpers.h"
#include "headers/bpf_endian.h"
#include "headers/bpf_core_read.h"
#include "headers/bpf_tracing.h"
#include "types.h"
#include "config.h"
#include "maps.h"

char __license[] SEC("license") = "Dual BSD/GPL";

/* Emit BTF for the structs user space decodes but no map declares. */
const struct drop_event *unused_drop_event __attribute__((unused));

struct pkt_info {
	struct flow_key key;
	__u8 tcp_flags;
};

struct iphdr_min {
	__u8 ver_ihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__u8 saddr[4];
	__u8 daddr[4];
};

struct ipv6hdr_min {
	__be32 vtc_flow;
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
};

/* Reads packet bytes: from a tc context with bpf_skb_load_bytes, or from
 * kernel memory (skb->head) in tracing and netfilter programs. kern is a
 * compile-time constant at every call site, so the unused helper is
 * compiled out. */
static __always_inline int load(void *src, bool kern, __u32 off, void *dst, __u32 len)
{
	if (kern)
		return bpf_probe_read_kernel(dst, len, (unsigned char *)src + off);
	/* Headers in the linear part (nearly always): direct packet access,
	 * no helper call. The bound on off keeps the verifier's range check
	 * simple; deeper headers take the helper. */
	struct __sk_buff *skb = src;
	unsigned char *data = (unsigned char *)(long)skb->data;
	unsigned char *end = (unsigned char *)(long)skb->data_end;
	if (off <= 512 && data + off + len <= end) {
		__builtin_memcpy(dst, data + off, len);
		return 0;
	}
	return bpf_skb_load_bytes(src, off, dst, len);
}

static __always_inline void map_v4(__u8 *dst16, const __u8 *src4)
{
	__builtin_memset(dst16, 0, 10);
	dst16[10] = 0xff;
	dst16[11] = 0xff;
	__builtin_memcpy(dst16 + 12, src4, 4);
}

static __always_inline bool icmp_has_id(__u8 proto, __u8 type)
{
	if (proto == IPPROTO_ICMP)
		return type == 0 || type == 8 || (type >= 13 && type <= 18);
	return type == 128 || type == 129;
}

static __always_inline int parse_l4(void *src, bool kern, __u32 off, struct pkt_info *pi)
{
	switch (pi->key.proto) {
	case IPPROTO_TCP: {
		__u8 h[14];
		if (load(src, kern, off, h, sizeof(h)) < 0)
			return -1;
		pi->key.sport = (__u16)h[0] << 8 | h[1];
		pi->key.dport = (__u16)h[2] << 8 | h[3];
		pi->tcp_flags = h[13];
		return 0;
	}
	case IPPROTO_UDP:
	case IPPROTO_SCTP: {
		__u8 h[4];
		if (load(src, kern, off, h, sizeof(h)) < 0)
			return -1;
		pi->key.sport = (__u16)h[0] << 8 | h[1];
		pi->key.dport = (__u16)h[2] << 8 | h[3];
		return 0;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6: {
		__u8 h[8];
		if (load(src, kern, off, h, sizeof(h)) < 0)
			return -1;
		pi->key.dport = (__u16)h[0] << 8 | h[1];
		if (icmp_has_id(pi->key.proto, h[0]))
			pi->key.sport = (__u16)h[4] << 8 | h[5];
		return 0;
	}
	}
	return 0;
}

/* Parses an IPv4/IPv6 packet whose network header starts at off. */
static __always_inline int parse_l3(void *src, bool kern, __u32 off, __u16 eth_proto, struct pkt_info *pi)
{
	__builtin_memset(pi, 0, sizeof(*pi));
	if (eth_proto == ETH_P_IP) {
		struct iphdr_min ip;
		if (load(src, kern, off, &ip, sizeof(ip)) < 0)
			return -1;
		__u32 ihl = (ip.ver_ihl & 0x0f) * 4;
		if (ihl < sizeof(ip))
			return -1;
		pi->key.family = FAMILY_IPV4;
		pi->key.proto = ip.protocol;
		map_v4(pi->key.saddr, ip.saddr);
		map_v4(pi->key.daddr, ip.daddr);
		if (bpf_ntohs(ip.frag_off) & 0x1fff)
			return 0; /* not the first fragment: no L4 header */
		return parse_l4(src, kern, off + ihl, pi);
	}
	if (eth_proto == ETH_P_IPV6) {
		struct ipv6hdr_min ip6;
		if (load(src, kern, off, &ip6, sizeof(ip6)) < 0)
			return -1;
		pi->key.family = FAMILY_IPV6;
		__builtin_memcpy(pi->key.saddr, ip6.saddr, 16);
		__builtin_memcpy(pi->key.daddr, ip6.daddr, 16);
		__u8 nh = ip6.nexthdr;
		__u32 l4 = off + sizeof(ip6);
#pragma unroll
		for (int i = 0; i < 4; i++) {
			__u8 ext[8];
			if (nh != IPPROTO_IPV6_HOPOPTS && nh != IPPROTO_IPV6_ROUTING &&
			    nh != IPPROTO_IPV6_DSTOPTS && nh != IPPROTO_IPV6_FRAGMENT)
				break;
			if (load(src, kern, l4, ext, sizeof(ext)) < 0)
				return -1;
			if (nh == IPPROTO_IPV6_FRAGMENT) {
				if (((__u16)ext[2] << 8 | ext[3]) & 0xfff8) {
					pi->key.proto = ext[0];
					return 0;
				}
				l4 += 8;
			} else {
				l4 += ((__u32)ext[1] + 1) * 8;
			}
			nh = ext[0];
		}
		pi->key.proto = nh;
		return parse_l4(src, kern, l4, pi);
	}
	return -1;
}

/* The IPv4 header as it lies in a packet, for direct access: word loads
 * (the JITs of the architectures built for load unaligned words). */
struct iphdr_pkt {
	__u8 ver_ihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__be32 saddr;
	__be32 daddr;
};

/* TCP's header up to its flags: the largest L4 prefix the key needs. */
#define L4_PREFIX 14

/* parse_tc_slow is parse_tc's general case, not inlined so the common
 * case's code stays short. */
static __noinline int parse_tc_slow(struct __sk_buff *skb, struct pkt_info *pi)
{
	return parse_l3(skb, false, ETH_HLEN, bpf_ntohs(skb->protocol), pi);
}

/* Parses a tc packet. The common case, an IPv4 header without options
 * followed by at least L4_PREFIX bytes, all in the linear part, takes one
 * bounds check and word loads; everything else the general parser. */
static __always_inline int parse_tc(struct __sk_buff *skb, struct pkt_info *pi)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct iphdr_pkt *ip = data + ETH_HLEN;
	if (skb->protocol != bpf_htons(ETH_P_IP) || (void *)(ip + 1) + L4_PREFIX > end || ip->ver_ihl != 0x45 ||
	    (ip->frag_off & bpf_htons(0x1fff)))
		return parse_tc_slow(skb, pi);

	__u8 *l4 = (__u8 *)(ip + 1);
	__u64 *k = (__u64 *)&pi->key;
	/* saddr and daddr v4-mapped (::ffff:a.b.c.d), 8 bytes at a time. */
	k[0] = 0;
	k[1] = (__u64)ip->saddr << 32 | bpf_htonl(0xffff);
	k[2] = 0;
	k[3] = (__u64)ip->daddr << 32 | bpf_htonl(0xffff);
	k[4] = 0;
	pi->key.family = FAMILY_IPV4;
	pi->key.proto = ip->protocol;
	pi->tcp_flags = 0;
	switch (ip->protocol) {
	case IPPROTO_TCP:
		pi->tcp_flags = l4[13];
		/* fall through */
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		pi->key.sport = (__u16)l4[0] << 8 | l4[1];
		pi->key.dport = (__u16)l4[2] << 8 | l4[3];
		break;
	case IPPROTO_ICMP:
		pi->key.dport = (__u16)l4[0] << 8 | l4[1];
		if (icmp_has_id(IPPROTO_ICMP, l4[0]))
			pi->key.sport = (__u16)l4[4] << 8 | l4[5];
		break;
	}
	return 0;
}

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
	 * in nf_accept for connections that predate the agent. */
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

/* The epoch nf_accept's per-flow decisions hold for (about a second).
 * Netfilter programs have only the precise clock, tc_from_pod uses the
 * coarse one: they differ by less than a tick, which at an epoch's end
 * costs at most one more full pass in nf_accept. */
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

/* This CPU's hot slot. */
static __always_inline struct hot_slot *hot_slot(void)
{
	__u32 cpu = bpf_get_smp_processor_id();
	return bpf_map_lookup_elem(&hot, &cpu);
}

static __always_inline bool same_key(const struct flow_key *a, const struct flow_key *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;
	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3] && x[4] == y[4];
}

/* learn_pod records that addr sends from the pod veth ifindex, on the first
 * packet of each of its flows: often enough to follow an IP moving to
 * another veth, and no lookup on the packets in between. */
static __always_inline void learn_pod(const __u8 *addr, __u32 ifindex)
{
	struct addr_key pod;
	__builtin_memcpy(pod.addr, addr, 16);
	bpf_map_update_elem(&local_pods, &pod, &ifindex, BPF_ANY);
}

/* flush_pending adds the packets waiting in the hot slot to their flow.
 * Not inlined: it runs once per run of a flow's packets. */
static __noinline int flush_pending(struct hot_slot *hs)
{
	if (!hs->pkts)
		return 0;
	struct flow_stats *st = bpf_map_lookup_elem(&flows, &hs->key);
	if (!st) {
		/* Pruned or evicted since the slot cached it: count the packets
		 * in a new entry, as a packet arriving now would be. */
		flow_create(&hs->key, OBS_FROM_POD, hs->key_ifindex, hs->last_ns);
		learn_pod(hs->key.saddr, hs->key_ifindex);
		st = bpf_map_lookup_elem(&flows, &hs->key);
	}
	if (st)
		add(st, hs->tcp_flags, hs->bytes, hs->pkts, hs->key_ifindex, OBS_FROM_POD, false, hs->last_ns);
	hs->pkts = 0;
	hs->bytes = 0;
	hs->tcp_flags = 0;
	return 0;
}

static int flush_timer(void *map, __u32 *key, struct hot_slot *hs)
{
	hs->armed = 0;
	flush_pending(hs);
	return 0;
}

/* arm_flush makes sure the timer will flush the slot; false when it cannot
 * (a kernel without CPU-pinned BPF timers, < 6.7): then nothing waits. */
static __always_inline bool arm_flush(struct hot_slot *hs)
{
	if (hs->armed)
		return true;
	if (hs->timer_ok == 0) {
		/* -EBUSY: initialised already, by a program loaded before. */
		long err = bpf_timer_init(&hs->timer, &hot, CLOCK_MONOTONIC);
		if ((err && err != -16) || bpf_timer_set_callback(&hs->timer, flush_timer)) {
			hs->timer_ok = 2;
			return false;
		}
		hs->timer_ok = 1;
	}
	if (hs->timer_ok != 1)
		return false;
	/* Pinned: the callback runs on this CPU, never at the same time as
	 * this program (softirqs of one CPU do not interleave). */
	if (bpf_timer_start(&hs->timer, flush_delay_ns, BPF_F_TIMER_CPU_PIN)) {
		hs->timer_ok = 2;
		return false;
	}
	hs->armed = 1;
	return true;
}

/* hot_cache makes the slot's flow the one of st. */
static __always_inline void hot_cache(struct hot_slot *hs, const struct flow_key *key, __u32 ifindex, struct flow_stats *st)
{
	__builtin_memcpy(&hs->key, key, sizeof(hs->key));
	hs->key_ifindex = ifindex;
	hs->nf_ct = st->nf_ct;
	hs->nf_epoch = st->nf_epoch;
	hs->nf_fwd = st->fwd_pkts != 0;
	hs->cached = 1;
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

	/* The coarse clock (a tick's resolution) is a plain read, the precise
	 * one a clocksource read on every packet; flow times need no better. */
	__u64 now = bpf_ktime_get_coarse_ns();
	__u64 len = tc_l3_len(skb), segs = tc_segs(skb);
	bool nf_hot;
	if (hs->cached && hs->key_ifindex == skb->ifindex && same_key(&hs->key, &pi.key) && arm_flush(hs)) {
		/* The flow this CPU counted last: the packet waits in the slot. */
		hs->pkts += segs;
		hs->bytes += len;
		hs->last_ns = now;
		hs->tcp_flags |= pi.tcp_flags;
		nf_hot = hs->nf_fwd && hs->nf_epoch == nf_epoch(now);
	} else {
		flush_pending(hs); /* the previous flow's, before the slot changes */
		bool created = false;
		struct flow_stats *st = count(&pi, len, segs, skb->ifindex, OBS_FROM_POD, false, &created, now);
		if (created)
			learn_pod(pi.key.saddr, skb->ifindex);
		if (!st) {
			hs->cached = 0;
			return TC_ACT_UNSPEC;
		}
		hot_cache(hs, &pi.key, skb->ifindex, st);
		nf_hot = hs->nf_fwd && hs->nf_epoch == nf_epoch(now);
	}
	/* nf_accept matched this flow (to its conntrack entry, if any) in this
	 * epoch: tell it which entry, so for this packet (next on this CPU) it
	 * returns before any lookup. */
	if (nf_hot) {
		hs->ct = hs->nf_ct;
		hs->len = len;
	}
	return TC_ACT_UNSPEC;
}

SEC("tc")
int tc_to_pod(struct __sk_buff *skb)
{
	__u32 iif = skb->ingress_ifindex;
	struct hot_slot *hs = hot_slot();
	if (iif && hs && hs->ifindex == iif)
		return TC_ACT_UNSPEC; /* the common case of the one below */
	if (iif && bpf_map_lookup_elem(&pod_ifs, &iif))
		return TC_ACT_UNSPEC; /* entered on a pod veth: counted there */

	struct pkt_info pi;
	if (parse_tc(skb, &pi) < 0)
		return TC_ACT_UNSPEC;

	/* A flow counted here in this epoch: what the lookups below decided
	 * for it still holds, so this one lookup is all. */
	__u64 now = bpf_ktime_get_coarse_ns();
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

#define CT_TUPLE(ct, dir, field) (&(ct)->tuplehash[dir].tuple.field)

/* Fills key from one direction of a conntrack entry: that direction's
 * packets as their sender emitted them. dir must be a constant so CO-RE
 * relocates the array index against the kernel's element size. */
#define KEY_FROM_CT(ct, dir, key)                                                     \
	({                                                                            \
		int __ret = 0;                                                        \
		union nf_inet_addr __s, __d;                                          \
		__be16 __sp = 0, __dp = 0;                                            \
		__u16 __l3 = 0;                                                       \
		__u8 __p = 0;                                                         \
		if (bpf_core_read(&__s, sizeof(__s), CT_TUPLE(ct, dir, src.u3)) ||    \
		    bpf_core_read(&__d, sizeof(__d), CT_TUPLE(ct, dir, dst.u3)) ||    \
		    bpf_core_read(&__sp, sizeof(__sp), CT_TUPLE(ct, dir, src.u.all)) || \
		    bpf_core_read(&__dp, sizeof(__dp), CT_TUPLE(ct, dir, dst.u.all)) || \
		    bpf_core_read(&__l3, sizeof(__l3), CT_TUPLE(ct, dir, src.l3num)) || \
		    bpf_core_read(&__p, sizeof(__p), CT_TUPLE(ct, dir, dst.protonum)))  \
			__ret = -1;                                                   \
		else                                                                  \
			__ret = fill_key_from_ct(key, &__s, &__d, __sp, __dp, __l3, __p); \
		__ret;                                                                \
	})

static __always_inline int fill_key_from_ct(struct flow_key *key, union nf_inet_addr *s, union nf_inet_addr *d,
					    __be16 sp, __be16 dp, __u16 l3num, __u8 proto)
{
	__builtin_memset(key, 0, sizeof(*key));
	if (l3num == 2 /* AF_INET */) {
		key->family = FAMILY_IPV4;
		map_v4(key->saddr, (__u8 *)&s->ip);
		map_v4(key->daddr, (__u8 *)&d->ip);
	} else if (l3num == 10 /* AF_INET6 */) {
		key->family = FAMILY_IPV6;
		__builtin_memcpy(key->saddr, s->ip6, 16);
		__builtin_memcpy(key->daddr, d->ip6, 16);
	} else {
		return -1;
	}
	key->proto = proto;
	switch (proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		key->sport = bpf_ntohs(sp);
		key->dport = bpf_ntohs(dp);
		break;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		/* dst.u.icmp is {type, code}; src.u.icmp.id the echo id. */
		key->dport = bpf_ntohs(dp);
		if (icmp_has_id(proto, key->dport >> 8))
			key->sport = bpf_ntohs(sp);
		break;
	}
	return 0;
}

/* Records where a DNAT sent the original direction of a connection (the
 * backend behind a ClusterIP): the reply tuple's source. */
static __always_inline void note_xlat(struct nf_conn *ct, __u8 ctinfo, struct flow_stats *st)
{
	if (st->xlat || (ctinfo != IP_CT_NEW && ctinfo != IP_CT_ESTABLISHED))
		return;
	if (!(BPF_CORE_READ(ct, status) & IPS_DST_NAT))
		return;
	struct flow_key reply;
	if (KEY_FROM_CT(ct, 1, &reply))
		return;
	__builtin_memcpy(st->xlat_daddr, reply.saddr, 16);
	st->xlat_dport = reply.sport;
	st->xlat = 1;
}

/* A reply of a DNATed connection that no local veth counted: its backend
 * is on another node. Map the key the client's veth will see after the
 * reverse NAT to the backend's key (this_key). */
static __always_inline void note_remote_svc_reply(struct nf_conn *ct, const struct flow_key *this_key)
{
	if (this_key->proto != IPPROTO_TCP && this_key->proto != IPPROTO_UDP && this_key->proto != IPPROTO_SCTP)
		return;
	if (!(BPF_CORE_READ(ct, status) & IPS_DST_NAT))
		return;
	struct flow_key orig, post;
	if (KEY_FROM_CT(ct, 0, &orig))
		return;
	reverse_key(&orig, &post);
	bpf_map_update_elem(&svc_replies, &post, this_key, BPF_ANY);
}

/* Key of a kernel skb: from conntrack when it has the tuple of this
 * direction (pre-DNAT, as the sender emitted it), else from the headers. */
static __always_inline int key_from_skb(struct sk_buff *skb, struct pkt_info *pi, struct nf_conn **ctp, __u8 *ctinfop)
{
	unsigned long nfct = BPF_CORE_READ(skb, _nfct);
	__u8 ctinfo = nfct & NFCT_INFOMASK;
	struct nf_conn *ct = (struct nf_conn *)(nfct & ~NFCT_INFOMASK);
	*ctp = ct;
	*ctinfop = ctinfo;
	if (ct) {
		__builtin_memset(pi, 0, sizeof(*pi));
		if (ctinfo == IP_CT_NEW || ctinfo == IP_CT_ESTABLISHED) {
			if (KEY_FROM_CT(ct, 0, &pi->key) == 0)
				return 0;
		} else if (ctinfo == IP_CT_ESTABLISHED_REPLY) {
			if (KEY_FROM_CT(ct, 1, &pi->key) == 0)
				return 0;
		}
	}
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 nh = BPF_CORE_READ(skb, network_header);
	__u16 proto = bpf_ntohs(BPF_CORE_READ(skb, protocol));
	return parse_l3(head, true, nh, proto, pi);
}

static __always_inline __u64 kskb_segs(struct sk_buff *skb)
{
	unsigned char *head = BPF_CORE_READ(skb, head);
	unsigned int end = BPF_CORE_READ(skb, end);
	unsigned short segs = 0;
	bpf_probe_read_kernel(&segs, sizeof(segs),
			      head + end + bpf_core_field_offset(struct skb_shared_info, gso_segs));
	return segs ? segs : 1;
}

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
			if (kst && kst->nf_ct == tag && kst->nf_epoch == nf_epoch(bpf_ktime_get_ns()))
				return NF_ACCEPT;
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
		if (hs && hs->cached && same_key(&hs->key, &pi.key)) {
			hs->nf_ct = tag;
			hs->nf_epoch = st->nf_epoch;
			hs->nf_fwd = 1;
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
	if (!hs || !hs->cached || !same_key(&hs->key, key))
		return true;
	if (hs->pkts > segs || (hs->tcp_flags & ~TCP_SYN))
		return false;
	hs->pkts = 0;
	hs->bytes = 0;
	hs->tcp_flags = 0;
	hs->cached = 0;
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

/* Wake the reader only when the ring is filling (see drop_events). */
static __always_inline __u64 drop_ring_wakeup(void)
{
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
