package policy

import (
	"errors"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// PolicyError is a NetworkPolicy that cannot be used: the field path is
// relative to spec, as in "egress[0].to[0].ipBlock.cidr".
type PolicyError struct {
	Namespace, Name string
	Err             error
}

func (e *PolicyError) Error() string {
	return fmt.Sprintf("networkpolicy %s/%s: %v", e.Namespace, e.Name, e.Err)
}

func (e *PolicyError) Unwrap() error { return e.Err }

// parsed is a policy validated and reduced to what evaluation needs, before
// it is bound to a cluster state (selectors not yet matched against pods).
type parsed struct {
	ns, name    string
	podSelector labels.Selector
	// ingress/egress are nil when the policy does not isolate that way
	// (policyTypes); an isolating policy with no rules has empty, non-nil
	// slices.
	ingress, egress []parsedRule
	isIngress       bool
	isEgress        bool
}

type parsedRule struct {
	allPeers bool // no from/to: every source or destination, pods or not
	peers    []parsedPeer
	allPorts bool // no ports: every port of every protocol, ICMP included
	ports    []port
}

type parsedPeer struct {
	block *ipBlock
	// For pod peers: nsSel nil means "the policy's namespace"; podSel nil
	// means "every pod of the selected namespaces".
	nsSel, podSel labels.Selector
	key           string // memo key of the matched pod set
}

type ipBlock struct {
	cidr   netip.Prefix
	except []netip.Prefix
}

func (b *ipBlock) contains(a netip.Addr) bool {
	if !b.cidr.Contains(a) {
		return false
	}
	for _, e := range b.except {
		if e.Contains(a) {
			return false
		}
	}
	return true
}

type port struct {
	proto  corev1.Protocol
	any    bool // port absent: every port of proto
	lo, hi uint16
	named  string // resolved against the destination pod's containerPorts
}

// Validate checks a NetworkPolicy the way the API server would and reports
// the first problem as a *PolicyError naming the field.
func Validate(np *networkingv1.NetworkPolicy) error {
	_, err := parse(np)
	return err
}

func parse(np *networkingv1.NetworkPolicy) (*parsed, error) {
	p, err := parseSpec(np)
	if err != nil {
		return nil, &PolicyError{Namespace: np.Namespace, Name: np.Name, Err: err}
	}
	return p, nil
}

func parseSpec(np *networkingv1.NetworkPolicy) (*parsed, error) {
	if np.Namespace == "" {
		// kubectl would put it in the current context's namespace and
		// kustomize may set one at build time; guessing here would evaluate
		// a different policy than the one deployed.
		return nil, errors.New("metadata.namespace is empty")
	}
	p := &parsed{ns: np.Namespace, name: np.Name}
	var err error
	if p.podSelector, err = selector("podSelector", &np.Spec.PodSelector); err != nil {
		return nil, err
	}
	// policyTypes defaulting, as the API server does on create: Ingress
	// always, Egress when there are egress rules.
	if len(np.Spec.PolicyTypes) == 0 {
		p.isIngress = true
		p.isEgress = len(np.Spec.Egress) > 0
	}
	for i, t := range np.Spec.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			p.isIngress = true
		case networkingv1.PolicyTypeEgress:
			p.isEgress = true
		default:
			return nil, fmt.Errorf("policyTypes[%d] %q: must be Ingress or Egress", i, t)
		}
	}
	// Rules of a type not in policyTypes are still validated (the API
	// server does) but never used.
	ingress := make([]parsedRule, 0, len(np.Spec.Ingress))
	for i, r := range np.Spec.Ingress {
		pr, err := parseRule(fmt.Sprintf("ingress[%d]", i), "from", r.From, r.Ports)
		if err != nil {
			return nil, err
		}
		ingress = append(ingress, pr)
	}
	egress := make([]parsedRule, 0, len(np.Spec.Egress))
	for i, r := range np.Spec.Egress {
		pr, err := parseRule(fmt.Sprintf("egress[%d]", i), "to", r.To, r.Ports)
		if err != nil {
			return nil, err
		}
		egress = append(egress, pr)
	}
	if p.isIngress {
		p.ingress = ingress
	}
	if p.isEgress {
		p.egress = egress
	}
	return p, nil
}

func parseRule(path, peersField string, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort) (parsedRule, error) {
	r := parsedRule{allPeers: len(peers) == 0, allPorts: len(ports) == 0}
	for i := range peers {
		pp, err := parsePeer(fmt.Sprintf("%s.%s[%d]", path, peersField, i), &peers[i])
		if err != nil {
			return r, err
		}
		r.peers = append(r.peers, pp)
	}
	for i := range ports {
		pt, err := parsePort(fmt.Sprintf("%s.ports[%d]", path, i), &ports[i])
		if err != nil {
			return r, err
		}
		r.ports = append(r.ports, pt)
	}
	return r, nil
}

func parsePeer(path string, peer *networkingv1.NetworkPolicyPeer) (parsedPeer, error) {
	var pp parsedPeer
	if peer.IPBlock != nil {
		if peer.PodSelector != nil || peer.NamespaceSelector != nil {
			return pp, fmt.Errorf("%s: ipBlock cannot be combined with podSelector or namespaceSelector", path)
		}
		b, err := parseIPBlock(path+".ipBlock", peer.IPBlock)
		if err != nil {
			return pp, err
		}
		pp.block = b
		return pp, nil
	}
	if peer.PodSelector == nil && peer.NamespaceSelector == nil {
		return pp, fmt.Errorf("%s: must specify podSelector, namespaceSelector or ipBlock", path)
	}
	var err error
	nsKey, podKey := "<policy namespace>", "<all pods>"
	if peer.NamespaceSelector != nil {
		if pp.nsSel, err = selector(path+".namespaceSelector", peer.NamespaceSelector); err != nil {
			return pp, err
		}
		nsKey = "ns:" + pp.nsSel.String()
	}
	if peer.PodSelector != nil {
		if pp.podSel, err = selector(path+".podSelector", peer.PodSelector); err != nil {
			return pp, err
		}
		podKey = "pod:" + pp.podSel.String()
	}
	pp.key = nsKey + "|" + podKey
	return pp, nil
}

func parseIPBlock(path string, b *networkingv1.IPBlock) (*ipBlock, error) {
	cidr, err := netip.ParsePrefix(b.CIDR)
	if err != nil {
		return nil, fmt.Errorf("%s.cidr %q: invalid CIDR", path, b.CIDR)
	}
	// Host bits are accepted and masked, as the API server accepts
	// "10.0.0.1/8" for objects created before strict CIDR validation.
	cidr = cidr.Masked()
	out := &ipBlock{cidr: cidr}
	for i, e := range b.Except {
		ex, err := netip.ParsePrefix(e)
		if err != nil {
			return nil, fmt.Errorf("%s.except[%d] %q: invalid CIDR", path, i, e)
		}
		ex = ex.Masked()
		// The API server requires each except to be a strict subset of cidr.
		if ex.Addr().Is4() != cidr.Addr().Is4() || ex.Bits() <= cidr.Bits() || !cidr.Contains(ex.Addr()) {
			return nil, fmt.Errorf("%s.except[%d] %q: not strictly inside cidr %q", path, i, e, b.CIDR)
		}
		out.except = append(out.except, ex)
	}
	return out, nil
}

func parsePort(path string, p *networkingv1.NetworkPolicyPort) (port, error) {
	pt := port{proto: corev1.ProtocolTCP}
	if p.Protocol != nil {
		switch *p.Protocol {
		case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
			pt.proto = *p.Protocol
		default:
			return pt, fmt.Errorf("%s.protocol %q: must be TCP, UDP or SCTP", path, *p.Protocol)
		}
	}
	if p.Port == nil {
		if p.EndPort != nil {
			return pt, fmt.Errorf("%s.endPort: requires port", path)
		}
		pt.any = true
		return pt, nil
	}
	if p.Port.Type == intstr.String {
		if msgs := validation.IsValidPortName(p.Port.StrVal); len(msgs) > 0 {
			return pt, fmt.Errorf("%s.port %q: invalid port name: %s", path, p.Port.StrVal, msgs[0])
		}
		if p.EndPort != nil {
			return pt, fmt.Errorf("%s.endPort: cannot be used with the named port %q", path, p.Port.StrVal)
		}
		pt.named = p.Port.StrVal
		return pt, nil
	}
	if p.Port.IntVal < 1 || p.Port.IntVal > 65535 {
		return pt, fmt.Errorf("%s.port %d: must be between 1 and 65535", path, p.Port.IntVal)
	}
	pt.lo, pt.hi = uint16(p.Port.IntVal), uint16(p.Port.IntVal)
	if p.EndPort != nil {
		if *p.EndPort < p.Port.IntVal || *p.EndPort > 65535 {
			return pt, fmt.Errorf("%s.endPort %d: must be between port %d and 65535", path, *p.EndPort, p.Port.IntVal)
		}
		pt.hi = uint16(*p.EndPort)
	}
	return pt, nil
}

// selector converts a label selector, reporting bad operators, values and
// label syntax. An empty selector selects everything.
func selector(path string, s *metav1.LabelSelector) (labels.Selector, error) {
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		return nil, fmt.Errorf("%s: invalid selector: %w", path, err)
	}
	return sel, nil
}
