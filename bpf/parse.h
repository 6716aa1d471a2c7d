/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Packet parsing: a flow key and TCP flags from a packet, read from a tc
 * context or from a kernel skb's memory.
 */
#ifndef __FLOWLENS_PARSE_H
#define __FLOWLENS_PARSE_H

#include "types.h"

struct pkt_info {
	struct flow_key key;
	__u8 tcp_flags;
};

/* The IPv4 header up to its addresses, for the general parser's copies
 * and for parse_tc's direct access, which loads the addresses as words
 * (the JITs of the architectures built for load unaligned words). */
struct iphdr4 {
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
		struct iphdr4 ip;
		if (load(src, kern, off, &ip, sizeof(ip)) < 0)
			return -1;
		__u32 ihl = (ip.ver_ihl & 0x0f) * 4;
		if (ihl < sizeof(ip))
			return -1;
		pi->key.family = FAMILY_IPV4;
		pi->key.proto = ip.protocol;
		map_v4(pi->key.saddr, (const __u8 *)&ip.saddr);
		map_v4(pi->key.daddr, (const __u8 *)&ip.daddr);
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
	struct iphdr4 *ip = data + ETH_HLEN;
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

#endif /* __FLOWLENS_PARSE_H */
