package policy

import (
	"fmt"
	"slices"
	"strings"
)

// Enforcer is what an enforcer is known to do besides the NetworkPolicy
// spec: traffic it accepts before any policy is consulted. The engine
// reports such traffic for what it is (Verdict.EnforcerAllows) rather than
// as a deny the kernel ignored, so that a mismatch alert only fires for
// something the user can change.
type Enforcer struct {
	Name string
	// Doc is one line for `flowlens status` and --help.
	Doc string
	// icmpTypes are the ICMPv4 types accepted before any policy.
	icmpTypes []uint8
	// icmpRule names the rule that accepts them, for the explanation.
	icmpRule string
}

// Enforcer profiles. Every profile also exempts traffic from a pod's own
// node: the NetworkPolicy documentation says it is always allowed, and
// kube-router implements it ("-m addrtype --src-type LOCAL -d <pod> -j
// ACCEPT" at the top of every pod chain, v2.1 to v2.6).
const (
	// EnforcerK3sKubeRouter is the kube-router K3s embeds from 1.33 on
	// (k3s-io/kube-router v2.6.x): KUBE-NWPLCY-COMMON accepts ICMP echo
	// request (and its replies, as ESTABLISHED), destination unreachable and
	// time exceeded before any policy chain.
	EnforcerK3sKubeRouter = "k3s-kube-router"
	// EnforcerKubeRouterV21 is upstream kube-router v2.1 (K3s up to 1.30 pins
	// v2.1.2): no ICMP accepts, ping obeys the policies.
	EnforcerKubeRouterV21 = "kube-router-v2.1"
	// EnforcerNetworkPolicy is the plain spec.
	EnforcerNetworkPolicy = "networkpolicy"
	// DefaultEnforcer is what a current K3s runs.
	DefaultEnforcer = EnforcerK3sKubeRouter
)

var enforcers = []Enforcer{
	{
		Name:      EnforcerK3sKubeRouter,
		Doc:       "K3s >= 1.33 (kube-router v2.6): ICMP echo, unreachable and time-exceeded accepted before any policy",
		icmpTypes: []uint8{0, 3, 8, 11},
		icmpRule:  "K3s's kube-router accepts ICMP echo, unreachable and time-exceeded before any policy (KUBE-NWPLCY-COMMON)",
	},
	{Name: EnforcerKubeRouterV21, Doc: "upstream kube-router v2.1: the spec, plus a pod's own node always allowed"},
	{Name: EnforcerNetworkPolicy, Doc: "the NetworkPolicy spec (a pod's own node always allowed)"},
}

// EnforcerNames lists the profiles, the default first.
func EnforcerNames() []string {
	out := make([]string, len(enforcers))
	for i, e := range enforcers {
		out[i] = e.Name
	}
	return out
}

// EnforcerByName returns a profile; "" is the default.
func EnforcerByName(name string) (Enforcer, error) {
	if name == "" {
		name = DefaultEnforcer
	}
	for _, e := range enforcers {
		if e.Name == name {
			return e, nil
		}
	}
	return Enforcer{}, fmt.Errorf("enforcer profile %q: want one of %s", name, strings.Join(EnforcerNames(), ", "))
}

// accepts says why the enforcer accepts q before any policy, or "".
func (en *Enforcer) accepts(q *Query) string {
	if q.Protocol == ProtocolICMP && slices.Contains(en.icmpTypes, q.ICMPType) {
		return en.icmpRule
	}
	return ""
}
