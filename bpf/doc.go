// Package bpf is flowlens's kernel side: it loads the eBPF programs,
// attaches them beside the node's datapath and exposes their in-kernel flow
// counters, raw, to package aggregate, which turns them into
// flowlens.v1.Flow records.
//
// Kernel side (flowlens.c, see its header comment; it includes one header
// per concept: parse.h, flow.h, pods.h, hotslot.h, tc.h, conntrack.h,
// accept.h, netfilter.h, drops.h): tc_from_pod and
// tc_to_pod on each pod's host-side veth (TCX, or tc clsact), tc_exit on
// egress of the node's other interfaces and nf_accept as a netfilter link on
// INPUT (the egress mode; in the netfilter mode nf_accept runs after the
// filter table on FORWARD/INPUT/OUTPUT instead, IPv4 and IPv6), and
// kfree_skb on tp_btf/kfree_skb. They share the flows LRU hash;
// user space polls it every flush interval and is woken early only by the
// drop_events ring buffer, once per flow's first drop.
//
// User side: New loads, Watch attaches, follows netlink link events, sends
// first drops and on cancellation detaches everything; table.go reads the
// flow table and counters for aggregation meanwhile.
//
// Regenerate the bindings with `go generate ./bpf` (clang, bpftool not
// needed); check-generated.sh verifies the committed output is current.
package bpf
