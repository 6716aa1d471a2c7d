package rules

import (
	"fmt"
	"net/netip"
)

// k3sICMPAccepts are the ICMP rules of k3s-io/kube-router v2.6.x's KUBE-NWPLCY-COMMON (K3s >=
// 1.33; research/k3s-datapath.md §2.3), in its order and with its comments. Every pod chain
// jumps to COMMON first, so these accept before any policy is consulted.
var k3sICMPAccepts = []struct {
	icmpType int
	comment  string
}{
	{8, "allow icmp echo requests"},
	{3, "allow icmp destination unreachable messages"},
	{11, "allow icmp time exceeded messages"},
}

// icmpAcceptRules renders k3sICMPAccepts into chain.
func icmpAcceptRules(chain string) []string {
	out := make([]string, 0, len(k3sICMPAccepts))
	for _, r := range k3sICMPAccepts {
		out = append(out, fmt.Sprintf(`-A %s -p icmp -m comment --comment %q -m icmp --icmp-type %d -j ACCEPT`, chain, r.comment, r.icmpType))
	}
	return out
}

// K3sICMPChain holds K3s's ICMP accepts in a node run by the real kube-router v2.1.0.
//
// Its name must not start with KUBE-NWPLCY- or KUBE-POD-FW-: kube-router deletes every chain with
// those prefixes that its current sync did not write.
const K3sICMPChain = "FLOWLENS-K3S-ICMP"

// K3sICMP is an `iptables-restore --noflush` script that makes a node enforced by kube-router
// v2.1.0 accept ICMP the way K3s >= 1.33 does. v2.1.0 has no KUBE-NWPLCY-COMMON and accepts no
// ICMP before policy; the K3s fork (v2.6.3-k3s1) cannot be built here, since the module proxy
// serves no kube-router above v2.1.0.
//
// It must run before kube-router starts in the node. It creates kube-router's three top-level
// chains itself (kube-router keeps existing chains) with a jump to K3sICMPChain for traffic from
// or to the node's pods as their first rule. That order survives every sync: kube-router saves
// the whole filter table, appends its per-pod jumps to the top-level chains, drops only rules
// naming its stale chains and restores the result; its fixed KUBE-ROUTER-INPUT rules (service
// range, node ports) are moved ahead, which only lets them RETURN earlier, as on K3s.
//
// Differences from K3s, none visible to pod traffic: the jump matches the node's pod CIDR where
// K3s's pod chains match each local pod's /32, and conntrack INVALID packets RETURN to
// kube-router's pod chain (which drops them) where COMMON drops them itself.
func K3sICMP(podCIDR netip.Prefix) string {
	lines := []string{
		fmt.Sprintf(`-A %s -m comment --comment "K3s drops invalid state first: leave it to the pod chain" -m conntrack --ctstate INVALID -j RETURN`, K3sICMPChain),
	}
	lines = append(lines, icmpAcceptRules(K3sICMPChain)...)
	const why = "K3s >= 1.33 KUBE-NWPLCY-COMMON ICMP accepts, before the pod chains"
	for _, j := range []struct{ chain, match string }{
		{"KUBE-ROUTER-INPUT", "-s"},
		{"KUBE-ROUTER-FORWARD", "-s"},
		{"KUBE-ROUTER-FORWARD", "-d"},
		{"KUBE-ROUTER-OUTPUT", "-s"},
		{"KUBE-ROUTER-OUTPUT", "-d"},
	} {
		lines = append(lines, fmt.Sprintf(`-A %s %s %s -m comment --comment %q -j %s`, j.chain, j.match, podCIDR, why, K3sICMPChain))
	}
	chains := make([]string, 0, len(topLevelJumps)+1)
	for _, j := range topLevelJumps {
		chains = append(chains, j.chain)
	}
	return restoreTable("filter", nil, append(chains, K3sICMPChain), lines)
}
