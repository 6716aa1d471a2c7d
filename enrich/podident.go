package enrich

import (
	"sync/atomic"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// podIdent is a pod's published identity: the pod and what the index
// adds to it (its namespace's labels, its workload), 32 bytes where a full
// Identity is 176 (issue 9). Lookup assembles the Identity from it.
// Immutable but for ep, which is built on the first lookup: most pods of a
// cluster are never an end of a flow this node sees.
type podIdent struct {
	pod *podInfo
	ns  *nsState // nil while the namespace is unknown
	wl  *workloadInfo
	ep  atomic.Pointer[flowlensv1.Endpoint]
}

// workloadInfo is a workload and its proto form, shared by the workload's
// pods (interned per index).
type workloadInfo struct {
	w     Workload
	proto []*flowlensv1.Workload
}

func newWorkloadInfo(w Workload) *workloadInfo {
	return &workloadInfo{w: w, proto: []*flowlensv1.Workload{{Kind: w.Kind, Name: w.Name}}}
}

// fill sets id to the Identity Lookup hands out for the pod, with its
// cached Endpoint.
func (p *podIdent) fill(id *Identity) {
	*id = Identity{
		Kind:      flowlensv1.EndpointKind_POD,
		Namespace: p.pod.namespace,
		Name:      p.pod.name,
		Labels:    p.pod.labels,
		Workload:  p.wl.w,
		NodeName:  p.pod.nodeName(),
		Ports:     p.pod.named,
	}
	if p.ns != nil {
		id.NamespaceLabels = p.ns.labels
	}
	id.ep = p.ep.Load()
	if id.ep == nil {
		ep := id.buildEndpoint(p.wl.proto)
		if !p.ep.CompareAndSwap(nil, ep) {
			ep = p.ep.Load()
		}
		id.ep = ep
	}
}
