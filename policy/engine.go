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
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"

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
	// pods are sorted by key (PodAddr searches them).
	pods []pod
	byIP addrIndex

	policies []bound
	// isolations are the distinct lists of policies isolating a pod (for
	// ingress or egress), isolations[0] the empty one: the pods of a
	// workload share one, so a pod holds two indexes rather than lists.
	isolations []isolation
	// portSets are the distinct named container ports of pods (portSets[0]
	// none), keeping only the names some rule refers to.
	portSets [][]namedPort

	// nodeOf names the node behind each node address.
	nodeOf   map[netip.Addr]string
	enforcer Enforcer
}

type pod struct {
	key  string // "namespace/name"
	node string
	ip   netip.Addr
	// Indexes into portSets and, per direction, isolations.
	ports, ingress, egress int32
}

// isolation is the policies isolating a pod, in policy order, and the same
// as Refs, shared by every Verdict (callers must not modify them).
type isolation struct {
	policies []int32
	refs     []Ref
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
// It is NewSet and Set.Compile.
func Compile(state ClusterState, policies []networkingv1.NetworkPolicy) (*Engine, error) {
	s, err := NewSet(policies)
	if err != nil {
		return nil, err
	}
	return s.Compile(state)
}

// Compile binds the set to a cluster state.
//
// Pods are the pods of the state that are not hostNetwork and have an IP:
// a hostNetwork pod shares its node's address and is, for NetworkPolicy,
// not a pod but an ipBlock peer. Pods in phase Succeeded or Failed are
// ignored (their IPs are reused). When two remaining pods claim the same IP
// the one sorting first by namespace/name wins, so the result does not
// depend on input order.
func (s *Set) Compile(state ClusterState) (*Engine, error) {
	e := &Engine{byIP: newAddrIndex(), nodeOf: map[netip.Addr]string{}}
	for i := range state.Nodes {
		for _, a := range nodeaddr.Of(&state.Nodes[i]) {
			e.nodeOf[a] = state.Nodes[i].Name
		}
	}

	nsLabels := map[string]labels.Set{}
	for _, ns := range state.Namespaces {
		l := labels.Set{}
		for k, v := range ns.Labels {
			l[k] = v
		}
		l[nsNameLabel] = ns.Name
		nsLabels[ns.Name] = l
	}

	podLabels, podNs, err := e.indexPods(state.Pods, s.portNames())
	if err != nil {
		return nil, err
	}
	podsByNs := map[string][]int32{}
	for i, ns := range podNs {
		podsByNs[ns] = append(podsByNs[ns], int32(i))
		if _, ok := nsLabels[ns]; !ok {
			nsLabels[ns] = labels.Set{nsNameLabel: ns}
		}
	}
	nsNames := make([]string, 0, len(nsLabels))
	for ns := range nsLabels {
		nsNames = append(nsNames, ns)
	}
	slices.Sort(nsNames)

	b := binder{e: e, podLabels: podLabels, podsByNs: podsByNs, nsLabels: nsLabels, nsNames: nsNames, memo: map[string]bitset{}}
	n := len(e.pods)
	// Per pod, the policies isolating it, until they are interned below.
	ingressOf, egressOf := make([][]int32, n), make([][]int32, n)
	e.policies = make([]bound, 0, len(s.policies))
	for _, p := range s.policies {
		idx := int32(len(e.policies))
		bp := bound{ref: Ref{Namespace: p.ns, Name: p.name, Rule: -1}}
		refs := make([]Ref, len(p.ingress)+len(p.egress))
		bp.ingress = b.rules(p, p.ingress, refs[:len(p.ingress)])
		bp.egress = b.rules(p, p.egress, refs[len(p.ingress):])
		e.policies = append(e.policies, bp)
		for _, i := range podsByNs[p.ns] {
			if !p.podSelector.Matches(podLabels[i]) {
				continue
			}
			if p.isIngress {
				ingressOf[i] = append(ingressOf[i], idx)
			}
			if p.isEgress {
				egressOf[i] = append(egressOf[i], idx)
			}
		}
	}
	groups := map[string]int32{"": 0}
	e.isolations = []isolation{{}}
	for i := range e.pods {
		e.pods[i].ingress = e.isolation(groups, ingressOf[i])
		e.pods[i].egress = e.isolation(groups, egressOf[i])
	}
	return e, nil
}

// isolation interns a list of policy indexes.
func (e *Engine) isolation(groups map[string]int32, policies []int32) int32 {
	key := make([]byte, 0, 4*len(policies))
	for _, pi := range policies {
		key = binary.LittleEndian.AppendUint32(key, uint32(pi))
	}
	if g, ok := groups[string(key)]; ok {
		return g
	}
	iso := isolation{policies: slices.Clone(policies), refs: make([]Ref, len(policies))}
	for k, pi := range policies {
		iso.refs[k] = e.policies[pi].ref
	}
	g := int32(len(e.isolations))
	e.isolations = append(e.isolations, iso)
	groups[string(key)] = g
	return g
}

// indexPods fills e.pods and e.byIP and returns each pod's labels and
// namespace, for binding selectors. Only container ports named in
// portNames are kept: no rule can match the others.
func (e *Engine) indexPods(pods []corev1.Pod, portNames map[string]bool) ([]labels.Set, []string, error) {
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
			return nil, nil, fmt.Errorf("pod %s: metadata.namespace is empty", p.Name)
		}
		ips := []string{}
		if p.Status.PodIP != "" {
			ips = append(ips, p.Status.PodIP)
		}
		for _, pip := range p.Status.PodIPs {
			ips = append(ips, pip.IP)
		}
		key := p.Namespace + "/" + p.Name
		for _, s := range ips {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, nil, fmt.Errorf("pod %s/%s: status pod IP %q: %w", p.Namespace, p.Name, s, err)
			}
			cands = append(cands, cand{p: p, key: key, ip: a.Unmap()})
		}
	}
	// Sorted by key, a pod's addresses are adjacent and e.pods comes out
	// sorted.
	slices.SortStableFunc(cands, func(a, b cand) int { return cmp.Compare(a.key, b.key) })
	var (
		podLabels []labels.Set
		podNs     []string
	)
	portSets := map[string]int32{"": 0}
	e.portSets = [][]namedPort{nil}
	for _, c := range cands {
		if _, taken := e.byIP.get(c.ip); taken {
			continue
		}
		idx := int32(len(e.pods) - 1)
		if idx < 0 || e.pods[idx].key != c.key {
			idx++
			e.pods = append(e.pods, pod{key: c.key, node: c.p.Spec.NodeName, ip: c.ip, ports: e.portSet(portSets, c.p, portNames)})
			podLabels = append(podLabels, labels.Set(c.p.Labels))
			podNs = append(podNs, c.p.Namespace)
		}
		e.byIP.set(c.ip, idx)
	}
	e.pods = slices.Clip(e.pods)
	return podLabels, podNs, nil
}

// portSet interns the pod's container ports named in names.
func (e *Engine) portSet(sets map[string]int32, p *corev1.Pod, names map[string]bool) int32 {
	ports := containerPorts(p, names)
	var key []byte
	for _, np := range ports {
		key = binary.AppendUvarint(key, uint64(len(np.name)))
		key = append(key, np.name...)
		key = binary.AppendUvarint(key, uint64(len(np.proto)))
		key = append(key, np.proto...)
		key = binary.LittleEndian.AppendUint16(key, np.port)
	}
	if i, ok := sets[string(key)]; ok {
		return i
	}
	i := int32(len(e.portSets))
	e.portSets = append(e.portSets, ports)
	sets[string(key)] = i
	return i
}

func containerPorts(p *corev1.Pod, names map[string]bool) []namedPort {
	var out []namedPort
	for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for _, c := range cs {
			for _, cp := range c.Ports {
				if cp.Name == "" || !names[cp.Name] || cp.ContainerPort < 1 || cp.ContainerPort > 65535 {
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
	return slices.Clip(out)
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

// rules binds a policy's ingress or egress rules; refs holds one Ref per
// rule.
func (b *binder) rules(p *parsed, rules []parsedRule, refs []Ref) []boundRule {
	if rules == nil {
		return nil
	}
	out := make([]boundRule, len(rules))
	for ri, r := range rules {
		refs[ri] = Ref{Namespace: p.ns, Name: p.name, Rule: ri}
		br := boundRule{parsedRule: r, refs: refs[ri : ri+1 : ri+1]}
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
	i, ok := slices.BinarySearchFunc(e.pods, key, func(p pod, k string) int { return strings.Compare(p.key, k) })
	if !ok {
		return netip.Addr{}, false
	}
	return e.pods[i].ip, true
}

// PodAt returns the "namespace/name" of the pod with this IP.
func (e *Engine) PodAt(a netip.Addr) (string, bool) {
	i, ok := e.byIP.get(a.Unmap())
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
