// Package bpf loads flowlens's eBPF programs, attaches them beside the
// node's datapath and turns their in-kernel flow counters into
// flowlens.v1.Flow records.
//
// Kernel side (flowlens.c, see its header comment): tc_from_pod and
// tc_to_pod on each pod's host-side veth (TCX, or tc clsact), nf_accept as a
// netfilter link after the filter table on FORWARD/INPUT/OUTPUT (IPv4 and
// IPv6), and kfree_skb on tp_btf/kfree_skb. They share the flows LRU hash;
// user space polls it every flush interval and is woken early only by the
// drop_events ring buffer, once per flow's first drop.
//
// User side: New loads, Run attaches, follows netlink link events, reports
// and on cancellation detaches everything. The record rules live in
// records.go (aggregator) and are unit-tested against a fake table.
//
// Regenerate the bindings with `go generate ./bpf` (clang, bpftool not
// needed); check-generated.sh verifies the committed output is current.
package bpf
