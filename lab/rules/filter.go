package rules

import (
	"fmt"
	"github.com/flowlens/flowlens/lab/netns"
	"github.com/flowlens/flowlens/lab/scenario"
	"net/netip"
	"sort"
	"strings"
)

// Pod is a pod with its address, as the rule writers see it.
type Pod struct {
	Spec scenario.PodSpec
	IP   netip.Addr
}

// Input is everything one node's rules depend on. Rules cover the node's own pods (their
// egress and their ingress), while ipsets hold pods from every node, as kube-router does.
type Input struct {
	Node        int
	Rules       []scenario.PolicyRules
	Services    []scenario.ServiceSpec
	Pods        []Pod  // every pod in the cluster
	SyncVersion string // kube-router puts its sync time in chain names; so do we
}

const (
	markMatched  = "0x10000/0x10000"
	markAccepted = "0x20000/0x20000"
	nflogGroup   = "100"
	nflogLimit   = "-m limit --limit 10/min --limit-burst 10"
)

// Hashes of the built-in-chain jump comments; research/k3s-datapath.md §2.1 checked them against
// a real node's iptables-save.
var topLevelJumps = []struct{ builtin, chain, hash string }{
	{"INPUT", "KUBE-ROUTER-INPUT", "4IA2OSFRMVNDXBVV"},
	{"FORWARD", "KUBE-ROUTER-FORWARD", "TEMCG2JMHZYE7H7T"},
	{"OUTPUT", "KUBE-ROUTER-OUTPUT", "VEAAIY32XVBHCSCY"},
}

// renderIPSets writes an `ipset restore` script creating and filling kube-router's sets.
// It is run with -exist, and flushes each set so that a re-sync replaces the members.
func IPSets(in Input) string {
	sets := ipsetMembers(in)
	names := make([]string, 0, len(sets))
	for n := range sets {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "create %s hash:ip timeout 0\nflush %s\n", n, n)
		for _, ip := range sets[n] {
			fmt.Fprintf(&b, "add %s %s timeout 0\n", n, ip)
		}
	}
	return b.String()
}

func ipsetMembers(in Input) map[string][]netip.Addr {
	sets := map[string][]netip.Addr{}
	for _, r := range in.Rules {
		if r.Ingress {
			sets[ingressTargetSet(r.Namespace, r.Name)] = nil
			for i, rs := range r.IngressRules {
				if !rs.AnyPeer {
					sets[ingressPeerSet(r.Namespace, r.Name, i)] = nil
				}
			}
		}
		if r.Egress {
			sets[egressTargetSet(r.Namespace, r.Name)] = nil
			for i, rs := range r.EgressRules {
				if !rs.AnyPeer {
					sets[egressPeerSet(r.Namespace, r.Name, i)] = nil
				}
			}
		}
	}
	rulesByKey := rulesIndex(in.Rules)
	for _, p := range in.Pods {
		for _, t := range p.Spec.TargetOf {
			r := rulesByKey[t]
			if r.Ingress {
				n := ingressTargetSet(r.Namespace, r.Name)
				sets[n] = append(sets[n], p.IP)
			}
			if r.Egress {
				n := egressTargetSet(r.Namespace, r.Name)
				sets[n] = append(sets[n], p.IP)
			}
		}
		for _, ref := range p.Spec.PeerOf {
			ns, name, dir, idx := splitPeerRef(ref)
			n := ingressPeerSet(ns, name, idx)
			if dir == "egress" {
				n = egressPeerSet(ns, name, idx)
			}
			sets[n] = append(sets[n], p.IP)
		}
	}
	return sets
}

func rulesIndex(rules []scenario.PolicyRules) map[string]scenario.PolicyRules {
	m := make(map[string]scenario.PolicyRules, len(rules))
	for _, r := range rules {
		m[r.Key()] = r
	}
	return m
}

// splitPeerRef splits a validated "ns/policy/dir/N".
func splitPeerRef(ref string) (ns, name, dir string, idx int) {
	parts := strings.Split(ref, "/")
	fmt.Sscanf(parts[3], "%d", &idx)
	return parts[0], parts[1], parts[2], idx
}

// renderFilter writes the node's whole filter table for iptables-restore, in the shape of
// k3s-io/kube-router v2.6.3-k3s1 (research/k3s-datapath.md §2.3) plus Flannel's FLANNEL-FWD.
func Filter(in Input) string {
	var local []Pod
	for _, p := range in.Pods {
		if p.Spec.Node == in.Node {
			local = append(local, p)
		}
	}
	rulesByKey := rulesIndex(in.Rules)
	var chains []string
	var lines []string
	add := func(format string, a ...any) { lines = append(lines, fmt.Sprintf(format, a...)) }

	chains = append(chains, "KUBE-ROUTER-INPUT", "KUBE-ROUTER-FORWARD", "KUBE-ROUTER-OUTPUT",
		"KUBE-NWPLCY-COMMON", "KUBE-NWPLCY-DEFAULT", "FLANNEL-FWD")

	for _, j := range topLevelJumps {
		add(`-A %s -m comment --comment "kube-router netpol - %s" -j %s`, j.builtin, j.hash, j.chain)
		// The fork's "Updated rules from ACCEPT to RETURN" moved this ACCEPT into the built-in chains.
		add(`-A %s -m comment --comment "KUBE-ROUTER rule to explicitly ACCEPT traffic that comply to network policies" -m mark --mark %s -j ACCEPT`, j.builtin, markAccepted)
	}
	add(`-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD`)
	add(`-A FLANNEL-FWD -s %s -m comment --comment "flanneld forward" -j ACCEPT`, netns.ClusterCIDR)
	add(`-A FLANNEL-FWD -d %s -m comment --comment "flanneld forward" -j ACCEPT`, netns.ClusterCIDR)

	add(`-A KUBE-ROUTER-INPUT -d %s -m comment --comment "allow traffic to primary/secondary cluster IP range - EKROEGTNIJ3AP3LC" -j RETURN`, netns.ServiceCIDR)
	add(`-A KUBE-ROUTER-INPUT -p tcp -m comment --comment "allow LOCAL TCP traffic to node ports - LR7XO7NXDBGQJD2M" -m addrtype --dst-type LOCAL -m multiport --dports 30000:32767 -j RETURN`)
	add(`-A KUBE-ROUTER-INPUT -p udp -m comment --comment "allow LOCAL UDP traffic to node ports - 76UCBPIZNGJNWNUZ" -m addrtype --dst-type LOCAL -m multiport --dports 30000:32767 -j RETURN`)

	for _, p := range local {
		chain := podChainName(p.Spec.Namespace, p.Spec.Name, in.SyncVersion)
		from := fmt.Sprintf("rule to jump traffic from POD name:%s namespace: %s to chain %s", p.Spec.Name, p.Spec.Namespace, chain)
		to := fmt.Sprintf("rule to jump traffic destined to POD name:%s namespace: %s to chain %s", p.Spec.Name, p.Spec.Namespace, chain)
		add(`-A KUBE-ROUTER-INPUT -s %s/32 -m comment --comment %q -j %s`, p.IP, from, chain)
		add(`-A KUBE-ROUTER-FORWARD -d %s/32 -m comment --comment %q -j %s`, p.IP, to, chain)
		add(`-A KUBE-ROUTER-FORWARD -d %s/32 -m physdev --physdev-is-bridged -m comment --comment %q -j %s`, p.IP, to, chain)
		add(`-A KUBE-ROUTER-FORWARD -s %s/32 -m comment --comment %q -j %s`, p.IP, from, chain)
		add(`-A KUBE-ROUTER-FORWARD -s %s/32 -m physdev --physdev-is-bridged -m comment --comment %q -j %s`, p.IP, from, chain)
		add(`-A KUBE-ROUTER-OUTPUT -d %s/32 -m comment --comment %q -j %s`, p.IP, to, chain)
		add(`-A KUBE-ROUTER-OUTPUT -s %s/32 -m comment --comment %q -j %s`, p.IP, from, chain)
	}

	add(`-A KUBE-NWPLCY-DEFAULT -m comment --comment "rule to mark traffic matching a network policy" -j MARK --set-xmark %s`, markMatched)
	add(`-A KUBE-NWPLCY-COMMON -m comment --comment "rule to drop invalid state for pod" -m conntrack --ctstate INVALID -j DROP`)
	add(`-A KUBE-NWPLCY-COMMON -m comment --comment "rule for stateful firewall for pod" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`)
	lines = append(lines, icmpAcceptRules("KUBE-NWPLCY-COMMON")...)

	for _, r := range in.Rules {
		chain := policyChainName(r.Namespace, r.Name, in.SyncVersion)
		chains = append(chains, chain)
		lines = append(lines, policyChainRules(chain, r)...)
	}

	for _, p := range local {
		chain := podChainName(p.Spec.Namespace, p.Spec.Name, in.SyncVersion)
		chains = append(chains, chain)
		lines = append(lines, podChainRules(chain, p, rulesByKey, in.SyncVersion)...)
	}

	return restoreTable("filter", []string{"INPUT", "FORWARD", "OUTPUT"}, chains, lines)
}

// restoreTable renders one table for iptables-restore: the built-in
// chains, the user chains it declares, the rules, COMMIT.
func restoreTable(table string, builtin, chains, lines []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%s\n", table)
	for _, c := range builtin {
		fmt.Fprintf(&b, ":%s ACCEPT [0:0]\n", c)
	}
	for _, c := range chains {
		fmt.Fprintf(&b, ":%s - [0:0]\n", c)
	}
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// policyChainRules: every allow rule is a MARK + RETURN pair per port; the chain ends with the
// fork's per-policy NFLOG, which also fires for packets another policy later accepts.
func policyChainRules(chain string, r scenario.PolicyRules) []string {
	var out []string
	comment := fmt.Sprintf("rule to ACCEPT traffic from source pods to dest pods selected by policy name %s namespace %s", r.Name, r.Namespace)
	pair := func(cmt, sets string, ports []scenario.Port) {
		matches := []string{""}
		if len(ports) > 0 {
			matches = nil
			for _, p := range ports {
				proto := strings.ToLower(p.Protocol)
				matches = append(matches, fmt.Sprintf(" -p %s -m %s --dport %d", proto, proto, p.Port))
			}
		}
		for _, m := range matches {
			out = append(out,
				fmt.Sprintf(`-A %s -m comment --comment %q%s%s -j MARK --set-xmark %s`, chain, cmt, sets, m, markMatched),
				fmt.Sprintf(`-A %s -m comment --comment %q%s%s -m mark --mark %s -j RETURN`, chain, cmt, sets, m, markMatched))
		}
	}
	if r.Ingress {
		dst := fmt.Sprintf(" -m set --match-set %s dst", ingressTargetSet(r.Namespace, r.Name))
		for i, rs := range r.IngressRules {
			if rs.AnyPeer {
				pair(fmt.Sprintf("rule to ACCEPT traffic from all sources to dest pods selected by policy name: %s namespace %s", r.Name, r.Namespace), dst, rs.Ports)
				continue
			}
			src := fmt.Sprintf(" -m set --match-set %s src", ingressPeerSet(r.Namespace, r.Name, i))
			pair(comment, src+dst, rs.Ports)
		}
	}
	if r.Egress {
		src := fmt.Sprintf(" -m set --match-set %s src", egressTargetSet(r.Namespace, r.Name))
		for i, rs := range r.EgressRules {
			if rs.AnyPeer {
				pair(fmt.Sprintf("rule to ACCEPT traffic from source pods to all destinations selected by policy name: %s namespace %s", r.Name, r.Namespace), src, rs.Ports)
				continue
			}
			dst := fmt.Sprintf(" -m set --match-set %s dst", egressPeerSet(r.Namespace, r.Name, i))
			pair(comment, src+dst, rs.Ports)
		}
	}
	out = append(out, fmt.Sprintf(`-A %s -m comment --comment "rule to log dropped traffic" %s -m mark ! --mark %s -j NFLOG --nflog-prefix %q --nflog-group %s`,
		chain, nflogLimit, markMatched, nflogPrefix(r.Namespace, r.Name), nflogGroup))
	return out
}

// nflogPrefix mirrors kube-router's safeJoin: "<ns>/<name>" is cut to 48 characters.
func nflogPrefix(ns, name string) string {
	s := ns + "/" + name
	if len(s) > 48 {
		s = s[:48]
	}
	return "DROP by policy " + s
}

func podChainRules(chain string, p Pod, rulesByKey map[string]scenario.PolicyRules, syncVersion string) []string {
	ip := p.IP.String() + "/32"
	var ingress, egress, both []scenario.PolicyRules
	for _, t := range p.Spec.TargetOf {
		r := rulesByKey[t]
		switch {
		case r.Ingress && r.Egress:
			both = append(both, r)
		case r.Ingress:
			ingress = append(ingress, r)
		default:
			egress = append(egress, r)
		}
	}
	out := []string{
		fmt.Sprintf(`-A %s -m comment --comment "common bi-directional traffic policy rules" -j KUBE-NWPLCY-COMMON`, chain),
		fmt.Sprintf(`-A %s -d %s -m comment --comment "rule to permit the traffic traffic to pods when source is the pod's local node" -m addrtype --src-type LOCAL -j ACCEPT`, chain, ip),
	}
	jump := func(addr string, r scenario.PolicyRules) {
		out = append(out, fmt.Sprintf(`-A %s%s -m comment --comment "run through nw policy %s" -j %s`,
			chain, addr, r.Name, policyChainName(r.Namespace, r.Name, syncVersion)))
	}
	if len(egress)+len(both) == 0 {
		out = append(out, fmt.Sprintf(`-A %s -s %s -m comment --comment "run through default egress network policy chain" -j KUBE-NWPLCY-DEFAULT`, chain, ip))
	}
	for _, r := range egress {
		jump(" -s "+ip, r)
	}
	if len(ingress)+len(both) == 0 {
		out = append(out, fmt.Sprintf(`-A %s -d %s -m comment --comment "run through default ingress network policy chain" -j KUBE-NWPLCY-DEFAULT`, chain, ip))
	}
	for _, r := range ingress {
		jump(" -d "+ip, r)
	}
	for _, r := range both {
		jump("", r)
	}
	who := fmt.Sprintf("POD name:%s namespace: %s", p.Spec.Name, p.Spec.Namespace)
	out = append(out,
		fmt.Sprintf(`-A %s -m comment --comment "rule to log dropped traffic %s" -m mark ! --mark %s %s -j NFLOG --nflog-group %s`, chain, who, markMatched, nflogLimit, nflogGroup),
		fmt.Sprintf(`-A %s -m comment --comment "rule to REJECT traffic destined for %s" -m mark ! --mark %s -j REJECT --reject-with icmp-port-unreachable`, chain, who, markMatched),
		fmt.Sprintf(`-A %s -j MARK --set-xmark 0x0/0x10000`, chain),
		fmt.Sprintf(`-A %s -m comment --comment "set mark to ACCEPT traffic that comply to network policies" -j MARK --set-xmark %s`, chain, markAccepted),
	)
	return out
}
