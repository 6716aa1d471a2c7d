package filter

import (
	"slices"
	"strconv"
	"strings"
)

// DropReasons are the names of the kernel's enum skb_drop_reason (without
// the SKB_DROP_REASON_ prefix) from Linux 5.17 to 6.18, the kernel this list
// was last taken from:
//
//	bpftool btf dump file /sys/kernel/btf/vmlinux format c | awk '/^enum skb_drop_reason \{/,/^\};/'
//
// (QDISC_EGRESS is the older name of TC_EGRESS.) The agent names reasons
// from its own kernel's BTF at run time, so the list only serves to refuse
// a misspelt --drop-reason before anything is asked; TestDropReasonsCoverKernel
// fails when the running kernel knows a name this list does not.
var DropReasons = []string{
	"ARP_PVLAN_DISABLE", "BPF_CGROUP_EGRESS", "BRIDGE_INGRESS_STP_STATE", "CAKE_FLOOD",
	"CANFD_RX_INVALID_FRAME", "CANXL_RX_INVALID_FRAME", "CAN_RX_INVALID_FRAME", "CPU_BACKLOG",
	"DEV_HDR", "DEV_READY", "DUALPI2_STEP_DROP", "DUP_FRAG", "FQ_BAND_LIMIT", "FQ_FLOW_LIMIT",
	"FQ_HORIZON_LIMIT", "FRAG_REASM_TIMEOUT", "FRAG_TOO_FAR", "FULL_RING", "HDR_TRUNC", "ICMP_CSUM",
	"INVALID_PROTO", "IPV6DISABLED", "IPV6_BAD_EXTHDR", "IPV6_NDISC_BAD_CODE",
	"IPV6_NDISC_BAD_OPTIONS", "IPV6_NDISC_FRAG", "IPV6_NDISC_HOP_LIMIT", "IPV6_NDISC_NS_OTHERHOST",
	"IP_CSUM", "IP_INADDRERRORS", "IP_INHDR", "IP_INNOROUTES", "IP_INVALID_DEST", "IP_INVALID_SOURCE",
	"IP_LOCALNET", "IP_LOCAL_SOURCE", "IP_NOPROTO", "IP_OUTNOROUTES", "IP_RPFILTER", "IP_TUNNEL_ECN",
	"LOCAL_MAC", "MAC_IEEE_MAC_CONTROL", "MAC_INVALID_SOURCE", "NEIGH_CREATEFAIL", "NEIGH_DEAD",
	"NEIGH_FAILED", "NEIGH_HH_FILLFAIL", "NEIGH_QUEUEFULL", "NETFILTER_DROP", "NOMEM",
	"NOT_SPECIFIED", "NO_SOCKET", "NO_TX_TARGET", "OTHERHOST", "PACKET_SOCK_ERROR", "PFMEMALLOC",
	"PKT_TOO_BIG", "PKT_TOO_SMALL", "PROTO_MEM", "PSP_INPUT", "PSP_OUTPUT", "QDISC_CONGESTED",
	"QDISC_DROP", "QDISC_EGRESS", "QDISC_OVERLIMIT", "QUEUE_PURGE", "RECURSION_LIMIT",
	"SECURITY_HOOK", "SKB_CSUM", "SKB_GSO_SEG", "SKB_RX_HEADROOM", "SKB_UCOPY_FAULT",
	"SOCKET_BACKLOG", "SOCKET_CLOSE", "SOCKET_FILTER", "SOCKET_RCVBUFF", "TAP_FILTER", "TAP_TXFILTER",
	"TCP_ABORT_ON_DATA", "TCP_ACK_UNSENT_DATA", "TCP_AOFAILURE", "TCP_AOKEYNOTFOUND",
	"TCP_AONOTFOUND", "TCP_AOUNEXPECTED", "TCP_AUTH_HDR", "TCP_CLOSE", "TCP_CSUM", "TCP_FASTOPEN",
	"TCP_FLAGS", "TCP_INVALID_ACK_SEQUENCE", "TCP_INVALID_END_SEQUENCE", "TCP_INVALID_SEQUENCE",
	"TCP_INVALID_SYN", "TCP_LISTEN_OVERFLOW", "TCP_MD5FAILURE", "TCP_MD5NOTFOUND",
	"TCP_MD5UNEXPECTED", "TCP_MINTTL", "TCP_OFOMERGE", "TCP_OFO_DROP", "TCP_OFO_QUEUE_PRUNE",
	"TCP_OLD_ACK", "TCP_OLD_DATA", "TCP_OLD_SEQUENCE", "TCP_OVERWINDOW", "TCP_RESET",
	"TCP_RFC7323_PAWS", "TCP_RFC7323_PAWS_ACK", "TCP_RFC7323_TSECR", "TCP_RFC7323_TW_PAWS",
	"TCP_TOO_OLD_ACK", "TCP_ZEROWINDOW", "TC_CHAIN_NOTFOUND", "TC_COOKIE_ERROR", "TC_EGRESS",
	"TC_INGRESS", "TC_RECLASSIFY_LOOP", "TUNNEL_TXINFO", "UDP_CSUM", "UNHANDLED_PROTO",
	"UNICAST_IN_L2_MULTICAST", "UNIX_DISCONNECT", "UNIX_SKIP_OOB", "VXLAN_ENTRY_EXISTS",
	"VXLAN_INVALID_HDR", "VXLAN_VNI_NOT_FOUND", "XDP", "XFRM_POLICY",
}

// KnownDropReason reports whether v (normalised by NormalizeDropReason) is a
// name of DropReasons or a number, which is how the agent names a reason its
// kernel's BTF does not (subsystem reasons, for one).
func KnownDropReason(v string) bool {
	n := NormalizeDropReason(v)
	if _, err := strconv.ParseUint(n, 10, 32); err == nil {
		return true
	}
	_, found := slices.BinarySearch(DropReasons, n)
	return found
}

// SimilarDropReasons returns up to three known names that contain v or that
// v contains, for a "did you mean".
func SimilarDropReasons(v string) []string {
	n := NormalizeDropReason(v)
	if n == "" {
		return nil
	}
	var out []string
	for _, r := range DropReasons {
		if strings.Contains(r, n) || strings.Contains(n, r) {
			out = append(out, r)
			if len(out) == 3 {
				break
			}
		}
	}
	return out
}
