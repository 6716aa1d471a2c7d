/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The per-CPU hot slot (see struct hot_slot in maps.h): tc_from_pod counts
 * the further packets of the two flows a CPU counted last there, and a
 * pinned timer adds them to the flow table within flush_delay_ns.
 */
#ifndef __FLOWLENS_HOTSLOT_H
#define __FLOWLENS_HOTSLOT_H

#include "types.h"
#include "config.h"
#include "maps.h"
#include "flow.h"
#include "pods.h"

/* This CPU's hot slot. */
static __always_inline struct hot_slot *hot_slot(void)
{
	__u32 cpu = bpf_get_smp_processor_id();
	return bpf_map_lookup_elem(&hot, &cpu);
}

/* coarse_now is bpf_ktime_get_coarse_ns, read once per tick on this CPU.
 * The coarse clock only moves when the tick advances jiffies (both in
 * tick_do_update_jiffies64), and the verifier inlines bpf_jiffies64 into
 * one load, so the packets after a tick's first take a load and a
 * comparison instead of a helper call and a seqcount read: the helper was
 * a tenth of tc_from_pod's time on the real path. A packet between the
 * jiffies increment and the clock's update caches the tick before: the
 * time is a tick late at most, the coarse clock's own resolution, and
 * never goes backwards. A fresh slot's jiffies (0) never matches: jiffies
 * starts at INITIAL_JIFFIES and 64 bits do not wrap. */
static __always_inline __u64 coarse_now(struct hot_slot *hs)
{
	__u64 j = bpf_jiffies64();
	if (hs->jiffies == j)
		return hs->coarse;
	__u64 now = bpf_ktime_get_coarse_ns();
	hs->jiffies = j;
	hs->coarse = now;
	return now;
}

/* flush_pending adds the packets waiting in a hot slot's entry to their
 * flow. Not inlined: it runs once per run of a flow's packets. */
static __noinline int flush_pending(struct hot_entry *he)
{
	if (!he->pkts)
		return 0;
	struct flow_stats *st = bpf_map_lookup_elem(&flows, &he->key);
	if (!st) {
		/* Pruned or evicted since the slot cached it: count the packets
		 * in a new entry, as a packet arriving now would be. */
		flow_create(&he->key, OBS_FROM_POD, he->key_ifindex, he->last_ns);
		learn_pod(he->key.saddr, he->key_ifindex);
		st = bpf_map_lookup_elem(&flows, &he->key);
	}
	if (st)
		add(st, he->tcp_flags, he->bytes, he->pkts, he->key_ifindex, OBS_FROM_POD, false, he->last_ns);
	he->pkts = 0;
	he->bytes = 0;
	he->tcp_flags = 0;
	return 0;
}

static int flush_timer(void *map, __u32 *key, struct hot_slot *hs)
{
	hs->armed = 0;
	flush_pending(&hs->e[0]);
	flush_pending(&hs->e[1]);
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

/* hot_cache makes the entry's flow the one of st. */
static __always_inline void hot_cache(struct hot_entry *he, const struct flow_key *key, __u32 ifindex, struct flow_stats *st)
{
	__builtin_memcpy(&he->key, key, sizeof(he->key));
	he->key_ifindex = ifindex;
	he->nf_ct = st->nf_ct;
	he->nf_epoch = st->nf_epoch;
	he->nf_fwd = st->fwd_pkts != 0;
	he->gen = prune_gen;
	he->cached = 1;
}


/* hot_find is the slot's entry caching key, or NULL. A key is in at most
 * one entry (tc_from_pod replaces the entry holding the key, whichever
 * veth it was cached on), so the first match is the only one. */
static __always_inline struct hot_entry *hot_find(struct hot_slot *hs, const struct flow_key *key)
{
	if (hs->e[0].cached && same_key(&hs->e[0].key, key))
		return &hs->e[0];
	if (hs->e[1].cached && same_key(&hs->e[1].key, key))
		return &hs->e[1];
	return NULL;
}

#endif /* __FLOWLENS_HOTSLOT_H */
