package policy

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
)

// ProtocolICMP is the protocol of an ICMP (or ICMPv6) query. NetworkPolicy
// ports name only TCP, UDP and SCTP, so ICMP is allowed only by rules without
// ports; a rule with ports never allows it. This is what kube-router
// enforces (its per-rule iptables matches carry "-p tcp/udp/sctp" when the
// rule has ports, and none when it has not) and what the upstream e2e tests
// assume when they probe with ICMP only under allow-all rules.
const ProtocolICMP corev1.Protocol = "ICMP"

// Query is one connection, named by its initiator: for reply traffic ask
// with the original direction (NetworkPolicy is stateful, replies of an
// allowed connection are allowed).
type Query struct {
	Src, Dst netip.Addr
	Port     uint16 // destination port; ignored for ICMP
	Protocol corev1.Protocol
	// ICMPType is the ICMPv4 type of an ICMP query; 0 (echo reply) and 8
	// (echo request) are treated alike by every profile.
	ICMPType uint8
}

// Verdict is the intended fate of a connection and its explanation.
type Verdict struct {
	Query Query
	// SrcPod and DstPod are "namespace/name", empty when the address is not
	// a pod (outside the cluster, a node, a hostNetwork pod).
	SrcPod, DstPod string
	Allowed        bool
	// Isolated is true when either side is isolated; when false the
	// connection is allowed because no policy applies (NOT_ISOLATED).
	Isolated bool
	// Egress is the source pod's side, Ingress the destination pod's.
	Egress, Ingress Side
	// OwnNode names the destination pod's node when the source is that node:
	// such traffic is Allowed whatever the policies say (the NetworkPolicy
	// documentation, and every enforcer).
	OwnNode string
	// Enforcer is the engine's profile name ("" for the spec alone).
	Enforcer string
	// EnforcerAllows says why the enforcer accepts a connection the
	// policies deny (e.g. kube-router's ICMP accepts); "" otherwise.
	EnforcerAllows string
}

// Side explains one end. IsolatedBy and AllowedBy may be shared with other
// verdicts: treat them as read-only.
type Side struct {
	// Applicable is false when this end is not a pod: NetworkPolicy does not
	// judge it, and it is then Allowed.
	Applicable bool
	Isolated   bool
	Allowed    bool
	IsolatedBy []Ref
	AllowedBy  []Ref
}

// Predicted says whether the enforcer lets the connection through: the
// policies allow it, or the enforcer accepts it before any policy.
func (v Verdict) Predicted() bool { return v.Allowed || v.EnforcerAllows != "" }

// Evaluate judges one connection. Addresses that are no pod's are peers
// outside the cluster, matched only by ipBlock; ipBlocks also match pod
// addresses (kube-router on K3s matches ipBlock by address whatever is
// behind it).
func (e *Engine) Evaluate(q Query) Verdict {
	if q.Protocol == "" {
		q.Protocol = corev1.ProtocolTCP
	}
	q.Src, q.Dst = q.Src.Unmap(), q.Dst.Unmap()
	v := Verdict{Query: q}
	src, dst := int32(-1), int32(-1)
	if i, ok := e.byIP.get(q.Src); ok {
		src = i
		v.SrcPod = e.pods[i].key
	}
	if i, ok := e.byIP.get(q.Dst); ok {
		dst = i
		v.DstPod = e.pods[i].key
	}
	v.Egress.Allowed, v.Ingress.Allowed = true, true
	if src >= 0 {
		iso := &e.isolations[e.pods[src].egress]
		v.Egress = e.side(iso.policies, iso.refs, true, src, dst, &q)
	}
	if dst >= 0 {
		iso := &e.isolations[e.pods[dst].ingress]
		v.Ingress = e.side(iso.policies, iso.refs, false, src, dst, &q)
	}
	v.Allowed = v.Egress.Allowed && v.Ingress.Allowed
	v.Isolated = v.Egress.Isolated || v.Ingress.Isolated
	v.Enforcer = e.enforcer.Name
	if src < 0 && dst >= 0 {
		if n, ok := e.nodeOf[q.Src]; ok && n != "" && n == e.pods[dst].node {
			v.OwnNode, v.Ingress.Allowed, v.Allowed = n, true, v.Egress.Allowed
		}
	}
	if !v.Allowed {
		v.EnforcerAllows = e.enforcer.accepts(&q)
	}
	return v
}

func (e *Engine) side(policies []int32, iso []Ref, egress bool, src, dst int32, q *Query) Side {
	s := Side{Applicable: true, Isolated: len(policies) > 0, IsolatedBy: iso}
	if !s.Isolated {
		s.Allowed = true
		return s
	}
	// The peer is the other end: the destination for egress rules, the
	// source for ingress rules.
	peer, peerAddr := src, q.Src
	if egress {
		peer, peerAddr = dst, q.Dst
	}
	for _, pi := range policies {
		p := &e.policies[pi]
		rules := p.ingress
		if egress {
			rules = p.egress
		}
		for ri := range rules {
			r := &rules[ri]
			if !e.portMatches(r, dst, q) || !peerMatches(r, peer, peerAddr) {
				continue
			}
			switch len(s.AllowedBy) {
			case 0:
				s.AllowedBy = r.refs
			case 1:
				s.AllowedBy = append([]Ref{s.AllowedBy[0]}, r.refs[0])
			default:
				s.AllowedBy = append(s.AllowedBy, r.refs[0])
			}
		}
	}
	s.Allowed = len(s.AllowedBy) > 0
	return s
}

func peerMatches(r *boundRule, peer int32, addr netip.Addr) bool {
	if r.allPeers {
		return true
	}
	for i := range r.peers {
		p := &r.peers[i]
		if p.block != nil {
			if p.block.contains(addr) {
				return true
			}
		} else if peer >= 0 && p.pods.has(peer) {
			return true
		}
	}
	return false
}

// portMatches checks the destination port. Named ports resolve against the
// destination pod's containerPorts (name and protocol), for ingress and
// egress rules alike; a destination that is not a pod, or has no such named
// port, never matches a named port.
func (e *Engine) portMatches(r *boundRule, dst int32, q *Query) bool {
	if r.allPorts {
		return true
	}
	for i := range r.ports {
		p := &r.ports[i]
		if p.proto != q.Protocol {
			continue
		}
		if p.any {
			return true
		}
		if p.named == "" {
			if p.lo <= q.Port && q.Port <= p.hi {
				return true
			}
			continue
		}
		if dst < 0 {
			continue
		}
		for _, np := range e.portSets[e.pods[dst].ports] {
			if np.name == p.named && np.proto == p.proto && np.port == q.Port {
				return true
			}
		}
	}
	return false
}
