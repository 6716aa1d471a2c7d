// Package policy evaluates Kubernetes NetworkPolicies (networking.k8s.io/v1)
// offline: given the cluster's namespaces and pods and a set of policies, it
// says whether a connection is intended to be allowed, and why.
//
// Everything that depends only on the state and the policies (which pods
// each policy selects, which pods each rule peer matches) is computed once in
// Compile, so that Evaluate is a handful of map and bitset lookups.
package policy

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/flowlens/flowlens/internal/nodeaddr"
)

// ClusterState is what policies are evaluated against: namespaces (for their
// labels), pods with status.podIP(s) and spec.nodeName, and nodes (for their
// addresses: traffic from a pod's own node is always allowed).
type ClusterState struct {
	Namespaces []corev1.Namespace
	Pods       []corev1.Pod
	Nodes      []corev1.Node
}

// Ref names a policy, and for an allowing rule its index in the policy's
// ingress or egress list (-1 when the policy as a whole is meant).
type Ref struct {
	Namespace, Name string
	Rule            int
}

func (r Ref) String() string {
	if r.Rule < 0 {
		return r.Namespace + "/" + r.Name
	}
	return fmt.Sprintf("%s/%s rule %d", r.Namespace, r.Name, r.Rule)
}

// Engine answers queries against one compiled state and policy set. It is
// immutable and safe for concurrent use; rebuild it with Compile on change.
type Engine struct {
	pods   []pod
	byIP   map[netip.Addr]int32
	byName map[string]int32 // "namespace/name"

	policies []bound
	// Per pod: the policies isolating it for ingress / egress, and the same
	// as Refs, shared by every Verdict (callers must not modify them).
	ingressOf, egressOf   [][]int32
	ingressIso, egressIso [][]Ref

	// nodeOf names the node behind each node address.
	nodeOf   map[netip.Addr]string
	enforcer Enforcer
}

type pod struct {
	key   string // "namespace/name"
	ns    string
	node  string
	ip    netip.Addr
	ports []namedPort
}

type namedPort struct {
	name  string
	proto corev1.Protocol
	port  uint16
}

type bound struct {
	ref             Ref
	ingress, egress []boundRule
}

type boundRule struct {
	parsedRule
	// refs is a one-element slice shared by every verdict this rule alone
	// allows, so the common case does not allocate.
	refs  []Ref
	peers []boundPeer
}

type boundPeer struct {
	block *ipBlock
	pods  bitset
}

type bitset []uint64

func newBitset(n int) bitset      { return make(bitset, (n+63)/64) }
func (b bitset) set(i int32)      { b[i>>6] |= 1 << (uint(i) & 63) }
func (b bitset) has(i int32) bool { return b[i>>6]&(1<<(uint(i)&63)) != 0 }

// nsNameLabel is set by the API server on every namespace (1.21+); it is
// added here too so state files need not spell it.
const nsNameLabel = "kubernetes.io/metadata.name"

// Compile validates the policies and precomputes, per policy, the pods it
// selects and, per rule peer, the pods it matches. Invalid policies are
// reported together (errors.Join of *PolicyError); nothing is skipped.
//
// Pods are the pods of the state that are not hostNetwork and have an IP:
// a hostNetwork pod shares its node's address and is, for NetworkPolicy,
// not a pod but an ipBlock peer. Pods in phase Succeeded or Failed are
// ignored (their IPs are reused). When two remaining pods claim the same IP
// the one sorting first by namespace/name wins, so the result does not
// depend on input order.
func Compile(state ClusterState, policies []networkingv1.NetworkPolicy) (*Engine, error) {
	e := &Engine{byIP: map[netip.Addr]int32{}, byName: map[string]int32{}, nodeOf: map[netip.Addr]string{}}
	for i := range state.Nodes {
		for _, a := range nodeaddr.Of(&state.Nodes[i]) {
			e.nodeOf[a] = state.Nodes[i].Name
		}
	}

	parsedPolicies := make([]*parsed, 0, len(policies))
	var errs []error
	seen := map[string]bool{}
	for i := range policies {
		np := &policies[i]
		if k := np.Namespace + "/" + np.Name; seen[k] {
			errs = append(errs, &PolicyError{Namespace: np.Namespace, Name: np.Name, Err: errors.New("defined twice")})
			continue
		} else {
			seen[k] = true
		}
		p, err := parse(np)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		parsedPolicies = append(parsedPolicies, p)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	// Informers list in no particular order; explanations should not vary.
	slices.SortFunc(parsedPolicies, func(a, b *parsed) int {
		return cmp.Or(cmp.Compare(a.ns, b.ns), cmp.Compare(a.name, b.name))
	})

	nsLabels := map[string]labels.Set{}
	for _, ns := range state.Namespaces {
		l := labels.Set{}
		for k, v := range ns.Labels {
			l[k] = v
		}
		l[nsNameLabel] = ns.Name
		nsLabels[ns.Name] = l
	}

	podLabels, err := e.indexPods(state.Pods)
	if err != nil {
		return nil, err
	}
	podsByNs := map[string][]int32{}
	for i, p := range e.pods {
		podsByNs[p.ns] = append(podsByNs[p.ns], int32(i))
		if _, ok := nsLabels[p.ns]; !ok {
			nsLabels[p.ns] = labels.Set{nsNameLabel: p.ns}
		}
	}
	nsNames := make([]string, 0, len(nsLabels))
	for ns := range nsLabels {
		nsNames = append(nsNames, ns)
	}
	slices.Sort(nsNames)

	b := binder{e: e, podLabels: podLabels, podsByNs: podsByNs, nsLabels: nsLabels, nsNames: nsNames, memo: map[string]bitset{}}
	n := len(e.pods)
	e.ingressOf, e.egressOf = make([][]int32, n), make([][]int32, n)
	e.ingressIso, e.egressIso = make([][]Ref, n), make([][]Ref, n)
	for _, p := range parsedPolicies {
		idx := int32(len(e.policies))
		bp := bound{ref: Ref{Namespace: p.ns, Name: p.name, Rule: -1}}
		bp.ingress = b.rules(p, p.ingress)
		bp.egress = b.rules(p, p.egress)
		e.policies = append(e.policies, bp)
		for _, i := range podsByNs[p.ns] {
			if !p.podSelector.Matches(podLabels[i]) {
				continue
			}
			if p.isIngress {
				e.ingressOf[i] = append(e.ingressOf[i], idx)
				e.ingressIso[i] = append(e.ingressIso[i], bp.ref)
			}
			if p.isEgress {
				e.egressOf[i] = append(e.egressOf[i], idx)
				e.egressIso[i] = append(e.egressIso[i], bp.ref)
			}
		}
	}
	return e, nil
}

func (e *Engine) indexPods(pods []corev1.Pod) ([]labels.Set, error) {
	type cand struct {
		p   *corev1.Pod
		key string
		ip  netip.Addr
	}
	var cands []cand
	for i := range pods {
		p := &pods[i]
		if p.Spec.HostNetwork || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if p.Namespace == "" {
			return nil, fmt.Errorf("pod %s: metadata.namespace is empty", p.Name)
		}
		ips := []string{}
		if p.Status.PodIP != "" {
			ips = append(ips, p.Status.PodIP)
		}
		for _, pip := range p.Status.PodIPs {
			ips = append(ips, pip.IP)
		}
		for _, s := range ips {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("pod %s/%s: status pod IP %q: %w", p.Namespace, p.Name, s, err)
			}
			cands = append(cands, cand{p: p, key: p.Namespace + "/" + p.Name, ip: a.Unmap()})
		}
	}
	slices.SortStableFunc(cands, func(a, b cand) int { return cmp.Compare(a.key, b.key) })
	var podLabels []labels.Set
	for _, c := range cands {
		if _, taken := e.byIP[c.ip]; taken {
			continue
		}
		idx, ok := e.byName[c.key]
		if !ok {
			idx = int32(len(e.pods))
			e.byName[c.key] = idx
			e.pods = append(e.pods, pod{key: c.key, ns: c.p.Namespace, node: c.p.Spec.NodeName, ip: c.ip, ports: containerPorts(c.p)})
			podLabels = append(podLabels, labels.Set(c.p.Labels))
		}
		e.byIP[c.ip] = idx
	}
	return podLabels, nil
}

func containerPorts(p *corev1.Pod) []namedPort {
	var out []namedPort
	for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for _, c := range cs {
			for _, cp := range c.Ports {
				if cp.Name == "" || cp.ContainerPort < 1 || cp.ContainerPort > 65535 {
					continue
				}
				proto := cp.Protocol
				if proto == "" {
					proto = corev1.ProtocolTCP
				}
				out = append(out, namedPort{name: cp.Name, proto: proto, port: uint16(cp.ContainerPort)})
			}
		}
	}
	return out
}

// binder matches parsed selectors against the state. Peers with the same
// selectors share one bitset (policies repeat "namespace X" peers a lot).
type binder struct {
	e         *Engine
	podLabels []labels.Set
	podsByNs  map[string][]int32
	nsLabels  map[string]labels.Set
	nsNames   []string
	memo      map[string]bitset
}

func (b *binder) rules(p *parsed, rules []parsedRule) []boundRule {
	if rules == nil {
		return nil
	}
	out := make([]boundRule, len(rules))
	for ri, r := range rules {
		br := boundRule{parsedRule: r, refs: []Ref{{Namespace: p.ns, Name: p.name, Rule: ri}}}
		for _, pp := range r.peers {
			if pp.block != nil {
				br.peers = append(br.peers, boundPeer{block: pp.block})
				continue
			}
			br.peers = append(br.peers, boundPeer{pods: b.podSet(p.ns, pp)})
		}
		out[ri] = br
	}
	return out
}

func (b *binder) podSet(policyNs string, pp parsedPeer) bitset {
	key := pp.key
	if pp.nsSel == nil {
		key = policyNs + "|" + key
	}
	if bs, ok := b.memo[key]; ok {
		return bs
	}
	bs := newBitset(len(b.e.pods))
	var namespaces []string
	if pp.nsSel == nil {
		namespaces = []string{policyNs}
	} else {
		for _, ns := range b.nsNames {
			if pp.nsSel.Matches(b.nsLabels[ns]) {
				namespaces = append(namespaces, ns)
			}
		}
	}
	for _, ns := range namespaces {
		for _, i := range b.podsByNs[ns] {
			if pp.podSel == nil || pp.podSel.Matches(b.podLabels[i]) {
				bs.set(i)
			}
		}
	}
	b.memo[key] = bs
	return bs
}

// WithEnforcer returns an engine that predicts what the enforcer en does
// (Verdict.EnforcerAllows); Compile's engine knows only the spec.
func (e *Engine) WithEnforcer(en Enforcer) *Engine {
	c := *e
	c.enforcer = en
	return &c
}

// Enforcer is the engine's enforcer profile (zero: the spec alone).
func (e *Engine) Enforcer() Enforcer { return e.enforcer }

// PodAddr returns the IP of a pod given as "namespace/name".
func (e *Engine) PodAddr(key string) (netip.Addr, bool) {
	i, ok := e.byName[key]
	if !ok {
		return netip.Addr{}, false
	}
	return e.pods[i].ip, true
}

// PodAt returns the "namespace/name" of the pod with this IP.
func (e *Engine) PodAt(a netip.Addr) (string, bool) {
	i, ok := e.byIP[a.Unmap()]
	if !ok {
		return "", false
	}
	return e.pods[i].key, true
}

// Pods lists the pods known to the engine as "namespace/name", sorted.
func (e *Engine) Pods() []string {
	out := make([]string, len(e.pods))
	for i, p := range e.pods {
		out[i] = p.key
	}
	slices.Sort(out)
	return out
}
