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
 * 3. past_policy (accept.h) marks packets of known flows as past policy
 *    where they leave the policy layer. In the egress mode (the default):
 *    tc_to_pod for packets delivered to a pod, tc_exit (tc/TCX egress on
 *    the node's other interfaces: flannel.1, uplinks) for packets leaving
 *    the node, nf_accept (netfilter link on INPUT) for packets to the node
 *    itself; no hook on the FORWARD path. In the netfilter mode nf_accept
 *    runs after the filter table on FORWARD, INPUT and OUTPUT. Keys come
 *    from the skb's conntrack entry, which holds the tuples as each side
 *    sent them. That is decided once per flow, entry and epoch (about a
 *    second): the packet tc_from_pod just counted returns after one
 *    comparison (hot), other packets of a matched entry after two lookups
 *    (ct_flows).
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

/* One translation unit (bpf2go compiles this file); each concept's code is
 * a header of its own. */
#include "parse.h"
#include "flow.h"
#include "pods.h"
#include "hotslot.h"
#include "tc.h"
#include "conntrack.h"
#include "accept.h"
#include "netfilter.h"
#include "drops.h"
