package rules

import (
	"github.com/flowlens/flowlens/lab/scenario"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func defaultInput(t *testing.T, node, nodes int) Input {
	t.Helper()
	sc := scenario.DefaultScenario()
	require.NoError(t, sc.Validate(nodes))
	sc = sc.WithNodes(nodes)
	var pods []Pod
	for _, p := range sc.Pods {
		pods = append(pods, Pod{Spec: p, IP: p.IP})
	}
	return Input{Node: node, Rules: sc.Rules, Services: sc.Services, Pods: pods, SyncVersion: "1700000000000000000"}
}

// The ipset names are stable in kube-router; these three are what the real controller produced
// for the same policies (research/kube-router-lab.md §4, k3s-datapath.md §2.3).
func TestIPSetNamesMatchKubeRouter(t *testing.T) {
	assert.Equal(t, "KUBE-DST-7L6ZVAJDQHUG22OH", ingressTargetSet("demo", "default-deny-ingress"))
	assert.Equal(t, "KUBE-DST-JT6RXENWD3I2OY4W", ingressTargetSet("demo", "allow-frontend-to-backend"))
	assert.Equal(t, "KUBE-SRC-4NBZEF6T3K6RXMXQ", ingressPeerSet("demo", "allow-frontend-to-backend", 0))
}

func TestIPSetMembers(t *testing.T) {
	in := defaultInput(t, 1, 2)
	sets := ipsetMembers(in)
	ips := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, a := range s {
			out = append(out, netip.MustParseAddr(a))
		}
		return out
	}
	// Sets hold pods of every node: node1's rules must know node2's frontend-selected peers and targets.
	assert.ElementsMatch(t, ips("10.42.0.10", "10.42.0.11", "10.42.0.12", "10.42.1.10"), sets[ingressTargetSet("demo", "default-deny-ingress")])
	assert.ElementsMatch(t, ips("10.42.0.11", "10.42.1.10"), sets[ingressTargetSet("demo", "allow-frontend-to-backend")])
	assert.ElementsMatch(t, ips("10.42.0.10"), sets[ingressPeerSet("demo", "allow-frontend-to-backend", 0)])
	assert.ElementsMatch(t, ips("10.42.0.20", "10.42.1.11"), sets[egressTargetSet("other", "deny-egress")])
	assert.Len(t, sets, 4)

	script := IPSets(in)
	assert.Contains(t, script, "create KUBE-SRC-4NBZEF6T3K6RXMXQ hash:ip timeout 0\nflush KUBE-SRC-4NBZEF6T3K6RXMXQ\nadd KUBE-SRC-4NBZEF6T3K6RXMXQ 10.42.0.10 timeout 0\n")
}

func TestFilterCoversOnlyLocalPods(t *testing.T) {
	for _, tc := range []struct {
		node        int
		local, away []string
	}{
		{1, []string{"10.42.0.10", "10.42.0.11", "10.42.0.12", "10.42.0.20"}, []string{"10.42.1.10", "10.42.1.11"}},
		{2, []string{"10.42.1.10", "10.42.1.11"}, []string{"10.42.0.10", "10.42.0.11", "10.42.0.12", "10.42.0.20"}},
	} {
		f := Filter(defaultInput(t, tc.node, 2))
		for _, ip := range tc.local {
			// 1 INPUT + 4 FORWARD + 2 OUTPUT jumps per local pod.
			n := regexp.MustCompile(`(?m)^-A KUBE-ROUTER-(INPUT|FORWARD|OUTPUT) -[sd] `+regexp.QuoteMeta(ip)+`/32 `).FindAllString(f, -1)
			assert.Len(t, n, 7, "node%d jumps for %s", tc.node, ip)
		}
		for _, ip := range tc.away {
			assert.NotContains(t, f, ip+"/32", "node%d must not have rules for remote pod %s", tc.node, ip)
		}
	}
}

func TestFilterShape(t *testing.T) {
	in := defaultInput(t, 1, 2)
	f := Filter(in)
	lines := strings.Split(f, "\n")
	require.Equal(t, "*filter", lines[0])
	require.Equal(t, "COMMIT", lines[len(lines)-2])

	backend := podChainName("demo", "backend", in.SyncVersion)
	outsider := podChainName("other", "outsider", in.SyncVersion)
	allow := policyChainName("demo", "allow-frontend-to-backend", in.SyncVersion)
	deny := policyChainName("demo", "default-deny-ingress", in.SyncVersion)
	egress := policyChainName("other", "deny-egress", in.SyncVersion)

	for _, want := range []string{
		`-A FORWARD -m comment --comment "kube-router netpol - TEMCG2JMHZYE7H7T" -j KUBE-ROUTER-FORWARD`,
		`-A FORWARD -m comment --comment "KUBE-ROUTER rule to explicitly ACCEPT traffic that comply to network policies" -m mark --mark 0x20000/0x20000 -j ACCEPT`,
		`-A KUBE-NWPLCY-COMMON -m comment --comment "rule to drop invalid state for pod" -m conntrack --ctstate INVALID -j DROP`,
		`-A KUBE-NWPLCY-COMMON -p icmp -m comment --comment "allow icmp echo requests" -m icmp --icmp-type 8 -j ACCEPT`,
		`-A KUBE-ROUTER-FORWARD -d 10.42.0.11/32 -m physdev --physdev-is-bridged -m comment --comment "rule to jump traffic destined to POD name:backend namespace: demo to chain ` + backend + `" -j ` + backend,
		`-A ` + backend + ` -d 10.42.0.11/32 -m comment --comment "run through nw policy allow-frontend-to-backend" -j ` + allow,
		`-A ` + backend + ` -d 10.42.0.11/32 -m comment --comment "run through nw policy default-deny-ingress" -j ` + deny,
		`-A ` + backend + ` -s 10.42.0.11/32 -m comment --comment "run through default egress network policy chain" -j KUBE-NWPLCY-DEFAULT`,
		`-A ` + backend + ` -m comment --comment "rule to REJECT traffic destined for POD name:backend namespace: demo" -m mark ! --mark 0x10000/0x10000 -j REJECT --reject-with icmp-port-unreachable`,
		`-A ` + outsider + ` -s 10.42.0.20/32 -m comment --comment "run through nw policy deny-egress" -j ` + egress,
		`-A ` + outsider + ` -d 10.42.0.20/32 -m comment --comment "run through default ingress network policy chain" -j KUBE-NWPLCY-DEFAULT`,
		`-A ` + allow + ` -m comment --comment "rule to ACCEPT traffic from source pods to dest pods selected by policy name allow-frontend-to-backend namespace demo" -m set --match-set KUBE-SRC-4NBZEF6T3K6RXMXQ src -m set --match-set KUBE-DST-JT6RXENWD3I2OY4W dst -p udp -m udp --dport 5353 -m mark --mark 0x10000/0x10000 -j RETURN`,
		`-A ` + deny + ` -m comment --comment "rule to log dropped traffic" -m limit --limit 10/min --limit-burst 10 -m mark ! --mark 0x10000/0x10000 -j NFLOG --nflog-prefix "DROP by policy demo/default-deny-ingress" --nflog-group 100`,
	} {
		assert.Contains(t, lines, want)
	}
	// The empty default-deny chain holds only its log rule; the egress deny likewise.
	assert.Len(t, grepPrefix(lines, "-A "+deny+" "), 1)
	assert.Len(t, grepPrefix(lines, "-A "+egress+" "), 1)
	// Two ports -> two MARK+RETURN pairs, then the log rule.
	assert.Len(t, grepPrefix(lines, "-A "+allow+" "), 5)
	// The pod chain ends with the pod NFLOG, REJECT, mark clear, mark accept.
	chain := grepPrefix(lines, "-A "+backend+" ")
	require.GreaterOrEqual(t, len(chain), 4)
	assert.Contains(t, chain[len(chain)-4], "-j NFLOG --nflog-group 100")
	assert.NotContains(t, chain[len(chain)-4], "--nflog-prefix")
	assert.Contains(t, chain[len(chain)-3], "-j REJECT")
	assert.Equal(t, "-A "+backend+" -j MARK --set-xmark 0x0/0x10000", chain[len(chain)-2])
	assert.Contains(t, chain[len(chain)-1], "-j MARK --set-xmark 0x20000/0x20000")
	// Every chain used is declared.
	for _, l := range lines {
		if m := regexp.MustCompile(` -j (KUBE-[A-Z0-9-]+|FLANNEL-FWD)`).FindStringSubmatch(l); m != nil {
			assert.Contains(t, lines, ":"+m[1]+" - [0:0]")
		}
	}
}

func grepPrefix(lines []string, prefix string) []string {
	var out []string
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

func TestChainNamesChangeWithSync(t *testing.T) {
	assert.NotEqual(t, podChainName("demo", "backend", "1"), podChainName("demo", "backend", "2"))
	assert.Regexp(t, `^KUBE-POD-FW-[A-Z2-7]{16}$`, podChainName("demo", "backend", "1"))
	assert.Regexp(t, `^KUBE-NWPLCY-[A-Z2-7]{16}$`, policyChainName("demo", "x", "1"))
}

func TestNATShape(t *testing.T) {
	n := NAT(defaultInput(t, 2, 2))
	lines := strings.Split(n, "\n")
	svc := svcChainName("demo/backend:http", "TCP")
	assert.Contains(t, lines, `-A KUBE-SERVICES -d 10.43.0.20/32 -p tcp -m comment --comment "demo/backend:http cluster IP" -m tcp --dport 80 -j `+svc)
	assert.Contains(t, lines, `-A FLANNEL-POSTRTG -s 10.42.1.0/24 -d 10.42.0.0/16 -m comment --comment "flanneld masq" -j RETURN`)
	dnat := grepPrefix(lines, "-A KUBE-SEP-")
	var targets []string
	for _, l := range dnat {
		if i := strings.Index(l, "--to-destination "); i >= 0 {
			targets = append(targets, l[i+len("--to-destination "):])
		}
	}
	assert.ElementsMatch(t, []string{"10.42.0.11:8080", "10.42.1.10:8080"}, targets)
	assert.Len(t, grepPrefix(lines, "-A "+svc+" -m comment --comment \"demo/backend:http -> 10.42.0.11:8080\" -m statistic --mode random --probability 0.50000000000"), 1)

	one := NAT(defaultInput(t, 1, 1))
	assert.NotContains(t, one, "10.42.1.10", "a one-node lab has no node2 backend")
}

// K3sICMP's script: kube-router's three top-level chains declared (so kube-router keeps them),
// the fork's three ICMP accepts after an INVALID return, and jumps for the node's pods only.
func TestK3sICMPScript(t *testing.T) {
	script := K3sICMP(netip.MustParsePrefix("10.42.1.0/24"))
	assert.Equal(t, `*filter
:KUBE-ROUTER-INPUT - [0:0]
:KUBE-ROUTER-FORWARD - [0:0]
:KUBE-ROUTER-OUTPUT - [0:0]
:FLOWLENS-K3S-ICMP - [0:0]
-A FLOWLENS-K3S-ICMP -m comment --comment "K3s drops invalid state first: leave it to the pod chain" -m conntrack --ctstate INVALID -j RETURN
-A FLOWLENS-K3S-ICMP -p icmp -m comment --comment "allow icmp echo requests" -m icmp --icmp-type 8 -j ACCEPT
-A FLOWLENS-K3S-ICMP -p icmp -m comment --comment "allow icmp destination unreachable messages" -m icmp --icmp-type 3 -j ACCEPT
-A FLOWLENS-K3S-ICMP -p icmp -m comment --comment "allow icmp time exceeded messages" -m icmp --icmp-type 11 -j ACCEPT
-A KUBE-ROUTER-INPUT -s 10.42.1.0/24 -m comment --comment "K3s >= 1.33 KUBE-NWPLCY-COMMON ICMP accepts, before the pod chains" -j FLOWLENS-K3S-ICMP
-A KUBE-ROUTER-FORWARD -s 10.42.1.0/24 -m comment --comment "K3s >= 1.33 KUBE-NWPLCY-COMMON ICMP accepts, before the pod chains" -j FLOWLENS-K3S-ICMP
-A KUBE-ROUTER-FORWARD -d 10.42.1.0/24 -m comment --comment "K3s >= 1.33 KUBE-NWPLCY-COMMON ICMP accepts, before the pod chains" -j FLOWLENS-K3S-ICMP
-A KUBE-ROUTER-OUTPUT -s 10.42.1.0/24 -m comment --comment "K3s >= 1.33 KUBE-NWPLCY-COMMON ICMP accepts, before the pod chains" -j FLOWLENS-K3S-ICMP
-A KUBE-ROUTER-OUTPUT -d 10.42.1.0/24 -m comment --comment "K3s >= 1.33 KUBE-NWPLCY-COMMON ICMP accepts, before the pod chains" -j FLOWLENS-K3S-ICMP
COMMIT
`, script)
	// The same accepts as the hand enforcer's KUBE-NWPLCY-COMMON, rule for rule.
	filter := Filter(defaultInput(t, 1, 1))
	for _, r := range icmpAcceptRules(K3sICMPChain) {
		assert.Contains(t, filter, strings.Replace(r, K3sICMPChain, "KUBE-NWPLCY-COMMON", 1)+"\n")
	}
	assert.False(t, strings.HasPrefix(K3sICMPChain, "KUBE-NWPLCY-") || strings.HasPrefix(K3sICMPChain, "KUBE-POD-FW-"),
		"kube-router deletes chains with its prefixes")
}
