package rules

import (
	"fmt"
	"github.com/flowlens/flowlens/lab/netns"
	"strings"
)

// renderNAT writes the node's nat table: kube-proxy iptables-mode ClusterIP DNAT
// (KUBE-SERVICES -> KUBE-SVC-* -> KUBE-SEP-*) and Flannel's FLANNEL-POSTRTG, whose RETURN rules
// keep pod-to-pod traffic un-masqueraded.
func NAT(in Input) string {
	podIP := map[string]string{}
	for _, p := range in.Pods {
		podIP[p.Spec.Key()] = p.IP.String()
	}
	local := netns.NodePodCIDR(in.Node)
	chains := []string{"KUBE-SERVICES", "KUBE-POSTROUTING", "KUBE-MARK-MASQ", "FLANNEL-POSTRTG"}
	var lines []string
	add := func(format string, a ...any) { lines = append(lines, fmt.Sprintf(format, a...)) }

	add(`-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES`)
	add(`-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES`)
	add(`-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING`)
	add(`-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG`)
	add(`-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000`)
	add(`-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN`)
	add(`-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0`)
	add(`-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully`)
	add(`-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN`)
	add(`-A FLANNEL-POSTRTG -s %s -d %s -m comment --comment "flanneld masq" -j RETURN`, local, netns.ClusterCIDR)
	add(`-A FLANNEL-POSTRTG -s %s -d %s -m comment --comment "flanneld masq" -j RETURN`, netns.ClusterCIDR, local)
	add(`-A FLANNEL-POSTRTG ! -s %s -d %s -m comment --comment "flanneld masq" -j RETURN`, netns.ClusterCIDR, local)
	add(`-A FLANNEL-POSTRTG -s %s ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully`, netns.ClusterCIDR)
	add(`-A FLANNEL-POSTRTG ! -s %s -d %s -m comment --comment "flanneld masq" -j MASQUERADE --random-fully`, netns.ClusterCIDR, netns.ClusterCIDR)

	for _, svc := range in.Services {
		for _, sp := range svc.Ports {
			name := fmt.Sprintf("%s/%s:%s", svc.Namespace, svc.Name, sp.Name)
			proto := strings.ToLower(sp.Protocol)
			svcChain := svcChainName(name, proto)
			chains = append(chains, svcChain)
			add(`-A KUBE-SERVICES -d %s/32 -p %s -m comment --comment "%s cluster IP" -m %s --dport %d -j %s`,
				svc.ClusterIP, proto, name, proto, sp.Port, svcChain)
			add(`-A %s ! -s %s -d %s/32 -p %s -m comment --comment "%s cluster IP" -m %s --dport %d -j KUBE-MARK-MASQ`,
				svcChain, netns.ClusterCIDR, svc.ClusterIP, proto, name, proto, sp.Port)
			n := len(svc.Backends)
			for i, b := range svc.Backends {
				ep := fmt.Sprintf("%s:%d", podIP[b], sp.TargetPort)
				sep := sepChainName(name, proto, ep)
				chains = append(chains, sep)
				// kube-proxy's even split: endpoint i of n is picked with probability 1/(n-i).
				if i < n-1 {
					add(`-A %s -m comment --comment "%s -> %s" -m statistic --mode random --probability %.11f -j %s`,
						svcChain, name, ep, 1/float64(n-i), sep)
				} else {
					add(`-A %s -m comment --comment "%s -> %s" -j %s`, svcChain, name, ep, sep)
				}
				add(`-A %s -s %s/32 -m comment --comment %q -j KUBE-MARK-MASQ`, sep, podIP[b], name)
				add(`-A %s -p %s -m comment --comment %q -m %s -j DNAT --to-destination %s`, sep, proto, name, proto, ep)
			}
		}
	}

	return restoreTable("nat", []string{"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"}, chains, lines)
}
