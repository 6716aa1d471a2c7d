package enrich

import (
	"net/netip"
	"slices"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
	corev1 "k8s.io/api/core/v1"
)

// nodeIdentityLocked returns the shared HOST (this node) or NODE identity for
// a node name. Nodes are few, so identities are kept for the process's life.
func (ix *index) nodeIdentityLocked(name string) *Identity {
	if id := ix.nodeIDs[name]; id != nil {
		return id
	}
	kind := flowlensv1.EndpointKind_NODE
	if name != "" && name == ix.nodeName {
		kind = flowlensv1.EndpointKind_HOST
	}
	id := (&Identity{Kind: kind, Name: name, NodeName: name}).publish()
	ix.nodeIDs[name] = id
	return id
}

// nodeAddrs are the addresses that mean "this node": its InternalIP and
// ExternalIP, and for each pod CIDR the network address (Flannel's
// flannel.1, the source of host-originated VXLAN traffic) and the first host
// address (cni0, the source of kubelet probes).
func nodeAddrs(node *corev1.Node) []netip.Addr {
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

func (ix *index) upsertNode(node *corev1.Node) {
	ips := nodeAddrs(node)
	ix.mu.Lock()
	defer ix.mu.Unlock()
	id := ix.nodeIdentityLocked(node.Name)
	if old := ix.nodes[node.Name]; old != nil {
		for _, ip := range old.ips {
			if !slices.Contains(ips, ip) {
				ix.dropNodeAddrLocked(ip, id)
			}
		}
	}
	for _, ip := range ips {
		h := ix.hostIPs[ip]
		if h == nil {
			h = &hostAddr{}
			ix.hostIPs[ip] = h
		}
		h.fromNode = id
	}
	ix.nodes[node.Name] = &nodeState{ips: ips}
}

func (ix *index) deleteNode(name string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	old := ix.nodes[name]
	if old == nil {
		return
	}
	id := ix.nodeIdentityLocked(name)
	for _, ip := range old.ips {
		ix.dropNodeAddrLocked(ip, id)
	}
	delete(ix.nodes, name)
}

func (ix *index) dropNodeAddrLocked(ip netip.Addr, id *Identity) {
	h := ix.hostIPs[ip]
	if h == nil || h.fromNode != id {
		return
	}
	h.fromNode = nil
	if len(h.fromPods) == 0 {
		delete(ix.hostIPs, ip)
	}
}
