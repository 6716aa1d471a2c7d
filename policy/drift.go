package policy

import (
	"reflect"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// Diff describes how the set b (e.g. the cluster's) differs from a (e.g.
// the files'): one line per policy, sorted, "added ns/name" (in b only),
// "removed ns/name" (in a only) or "changed ns/name" (different spec).
// Metadata other than the name (labels, resourceVersion...) is ignored.
func Diff(a, b []networkingv1.NetworkPolicy) []string {
	index := func(set []networkingv1.NetworkPolicy) map[string]*networkingv1.NetworkPolicySpec {
		m := make(map[string]*networkingv1.NetworkPolicySpec, len(set))
		for i := range set {
			m[set[i].Namespace+"/"+set[i].Name] = &set[i].Spec
		}
		return m
	}
	ma, mb := index(a), index(b)
	var out []string
	for k, sa := range ma {
		sb, ok := mb[k]
		switch {
		case !ok:
			out = append(out, "removed "+k)
		case !reflect.DeepEqual(normalize(sa), normalize(sb)):
			out = append(out, "changed "+k)
		}
	}
	for k := range mb {
		if _, ok := ma[k]; !ok {
			out = append(out, "added "+k)
		}
	}
	// Sorted by policy, then verb, so the status reads like a listing.
	slices.SortFunc(out, func(x, y string) int {
		_, kx, _ := strings.Cut(x, " ")
		_, ky, _ := strings.Cut(y, " ")
		if c := strings.Compare(kx, ky); c != 0 {
			return c
		}
		return strings.Compare(x, y)
	})
	return out
}

// normalize applies the API server's defaulting so that a file without
// policyTypes or protocols equals the object the cluster returns for it.
func normalize(s *networkingv1.NetworkPolicySpec) *networkingv1.NetworkPolicySpec {
	c := s.DeepCopy()
	if len(c.PolicyTypes) == 0 {
		c.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		if len(c.Egress) > 0 {
			c.PolicyTypes = append(c.PolicyTypes, networkingv1.PolicyTypeEgress)
		}
	}
	for i := range c.Ingress {
		defaultProtocols(c.Ingress[i].Ports)
		if len(c.Ingress[i].From) == 0 {
			c.Ingress[i].From = nil
		}
		if len(c.Ingress[i].Ports) == 0 {
			c.Ingress[i].Ports = nil
		}
	}
	for i := range c.Egress {
		defaultProtocols(c.Egress[i].Ports)
		if len(c.Egress[i].To) == 0 {
			c.Egress[i].To = nil
		}
		if len(c.Egress[i].Ports) == 0 {
			c.Egress[i].Ports = nil
		}
	}
	if len(c.Ingress) == 0 {
		c.Ingress = nil
	}
	if len(c.Egress) == 0 {
		c.Egress = nil
	}
	return c
}

func defaultProtocols(ports []networkingv1.NetworkPolicyPort) {
	for i := range ports {
		if ports[i].Protocol == nil {
			tcp := corev1.ProtocolTCP
			ports[i].Protocol = &tcp
		}
	}
}
