/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Keys and NAT from a kernel skb's conntrack entry, for past_policy and
 * kfree_skb.
 */
#ifndef __FLOWLENS_CONNTRACK_H
#define __FLOWLENS_CONNTRACK_H

#include "types.h"
#include "maps.h"
#include "parse.h"
#include "flow.h"

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

#endif /* __FLOWLENS_CONNTRACK_H */
