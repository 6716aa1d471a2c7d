/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Settings user space writes before load (spec.Variables[...].Set), and
 * counters it reads through the Variables API.
 */
#ifndef __FLOWLENS_CONFIG_H
#define __FLOWLENS_CONFIG_H

#include "headers/kernel.h"

/* Inode of the network namespace this instance observes. kfree_skb is a
 * global tracepoint: without this filter, one node's capture would report
 * another namespace's drops. */
volatile const __u32 netns_ino = 0;

/* Set in the egress mode: tc_to_pod confirms the packets it sees as past
 * policy (accept.h), in place of nf_accept on the FORWARD hook. */
volatile const __u8 accept_at_egress = 0;

/* How long packets of a flow may wait in a CPU's hot slot (maps.h) before
 * they reach the flow table: user space sets it (bpf.pendingDelay). */
volatile const __u64 flush_delay_ns = 250000000;

/* Entries inserted into flows (by any program), minus the entries the
 * programs removed themselves (a connection attempt folded into its
 * aggregate, see FLOW_KEY_ATTEMPTS). User space compares this with the keys
 * it discovered to estimate LRU evictions before a read. */
__u64 flows_created = 0;

/* drop_events reservations that failed (ring buffer full). */
__u64 ringbuf_lost = 0;

/* Bumped by user space after it deletes idle flows from the table. A hot
 * slot entry cached before then may name a deleted flow: its packets take
 * the full path again, which creates the entry the way nf_accept and the
 * drop paths expect (a ClusterIP connection's translation noted), instead
 * of waiting in the slot for flush_pending to recreate it bare. */
__u32 prune_gen = 0;

/* 1 while user space's drop reader sleeps with no timer (bpf.readDrops,
 * after a read interval without records): the next record wakes it, so an
 * idle agent is not woken ten times a second to find the ring empty. */
__u64 drop_reader_idle = 0;

#endif /* __FLOWLENS_CONFIG_H */
