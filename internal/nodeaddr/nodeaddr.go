// Package nodeaddr says which addresses mean "this node": the enrichment
// names them HOST or NODE, and the policy engine exempts them when they
// reach the node's own pods. Both must agree, so the rule lives here once.
package nodeaddr

import (
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// Of returns a node's InternalIP and ExternalIP, and for each pod CIDR the
// network address (Flannel's flannel.1, the source of host-originated VXLAN
// traffic) and the first host address (cni0, the source of kubelet probes).
func Of(node *corev1.Node) []netip.Addr {
	var out []netip.Addr
	add := func(a netip.Addr) {
		a = a.Unmap()
		if a.IsValid() && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	for _, a := range node.Status.Addresses {
		if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil {
			add(ip)
		}
	}
	cidrs := node.Spec.PodCIDRs
	if len(cidrs) == 0 && node.Spec.PodCIDR != "" {
		cidrs = []string{node.Spec.PodCIDR}
	}
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			continue
		}
		p = p.Masked()
		add(p.Addr())
		add(p.Addr().Next())
	}
	return out
}
