package enrich

import (
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/flowlens/flowlens/internal/nodeaddr"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
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

func (ix *index) upsertNode(node *corev1.Node) {
	ips := nodeaddr.Of(node)
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
	ix.nodes[node.Name] = &nodeState{node: node, ips: ips}
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

// Nodes returns copies of the (slimmed) nodes, sorted by name: the policy
// engine needs their addresses to tell a pod's own node.
func (ix *index) Nodes() []corev1.Node {
	ix.mu.RLock()
	out := make([]corev1.Node, 0, len(ix.nodes))
	for _, n := range ix.nodes {
		out = append(out, *n.node)
	}
	ix.mu.RUnlock()
	slices.SortFunc(out, func(a, b corev1.Node) int { return strings.Compare(a.Name, b.Name) })
	return out
}
