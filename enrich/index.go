package enrich

import (
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/flowlens/flowlens/internal/signal"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
	corev1 "k8s.io/api/core/v1"
)

// index is the state both sources share: objects in, identities out. Writers
// (informer handlers, the static loader, the janitor) build identities
// outside the lock where they can and hold mu only to swap pointers, so
// Lookup's read lock is never held against slow work.
type index struct {
	grace    time.Duration
	nodeName string
	cidrs    cidrTable // immutable after construction
	cluster  []netip.Prefix
	world    *Identity
	unknown  *Identity

	// changed wakes the one reader of Changed after pods, namespaces or
	// nodes changed.
	changed *signal.Signal

	// shapes and workloads are shared by the pods of a workload; they
	// lock themselves (the informers' transform interns shapes).
	shapes    interned[string, podShape]
	workloads interned[Workload, workloadInfo]

	mu sync.RWMutex
	// Everything below is guarded by mu.
	podIPs   map[netip.Addr]ipSlot    // non-hostNetwork pod IPs, with the last holder kept for the grace period
	hostIPs  map[netip.Addr]*hostAddr // node addresses, Flannel gateway addresses and hostNetwork pod IPs
	svcIPs   map[netip.Addr]*serviceState
	backends map[backendKey][]*ServiceRef // sorted by namespace/name; the services' own refs

	pods       map[podKey]podState
	namespaces map[string]*nsState
	nodes      map[string]*nodeState
	nodeIDs    map[string]*Identity // HOST or NODE identity per node name
	services   map[string]*serviceState
	slices     map[string][]*sliceInfo // by service key
	owners     map[ownerKey]Workload   // ReplicaSets and Jobs -> their controller
}

// podKey is a pod's namespace and name.
type podKey struct{ namespace, name string }

// ipSlot is one pod IP: the pod holding it now (cur) and the one that held
// it before (prev) until prev.until+grace. Kept by value in the map: the
// common slot, one holder, costs no allocation of its own.
type ipSlot struct {
	cur  *podIdent
	prev *displaced
}

type displaced struct {
	id    *podIdent
	until time.Time // when the pod stopped holding the IP
}

// pick chooses the holder for a flow seen at at. A displaced or deleted pod
// keeps the IP for flows seen before it let go; with no new holder it keeps
// it for the grace period too. A zero at means now.
func (s ipSlot) pick(at time.Time, grace time.Duration) *podIdent {
	if s.cur != nil {
		if s.prev != nil && !at.IsZero() && at.Before(s.prev.until) {
			return s.prev.id
		}
		return s.cur
	}
	if s.prev != nil && (at.IsZero() || at.Before(s.prev.until.Add(grace))) {
		return s.prev.id
	}
	return nil
}

// hostAddr is an address of a node. Node objects are authoritative; the
// hostNetwork pods (refs, by pod key) only name an address no Node object
// has listed yet.
type hostAddr struct {
	fromNode *Identity
	fromPods map[podKey]*Identity
}

func (h *hostAddr) identity() *Identity {
	if h.fromNode != nil {
		return h.fromNode
	}
	for _, id := range h.fromPods {
		return id
	}
	return nil
}

// podState is an indexed pod: id is nil for a hostNetwork pod or one that
// holds no IP.
type podState struct {
	pod *podInfo
	id  *podIdent
}

type nsState struct {
	ns     *corev1.Namespace
	labels []string
}

type nodeState struct {
	node *corev1.Node
	ips  []netip.Addr
}

func newIndex(cfg Config) *index {
	ix := &index{
		grace:      cfg.grace(),
		nodeName:   cfg.NodeName,
		cidrs:      newCIDRTable(cfg.NamedCIDRs),
		cluster:    append([]netip.Prefix(nil), cfg.ClusterCIDRs...),
		world:      (&Identity{Kind: flowlensv1.EndpointKind_WORLD}).publish(),
		unknown:    (&Identity{Kind: flowlensv1.EndpointKind_ENDPOINT_KIND_UNSPECIFIED}).publish(),
		changed:    signal.New(),
		podIPs:     map[netip.Addr]ipSlot{},
		hostIPs:    map[netip.Addr]*hostAddr{},
		svcIPs:     map[netip.Addr]*serviceState{},
		backends:   map[backendKey][]*ServiceRef{},
		pods:       map[podKey]podState{},
		namespaces: map[string]*nsState{},
		nodes:      map[string]*nodeState{},
		nodeIDs:    map[string]*Identity{},
		services:   map[string]*serviceState{},
		slices:     map[string][]*sliceInfo{},
		owners:     map[ownerKey]Workload{},
	}
	return ix
}

// Lookup implements Resolver. Order: pods, node addresses, ClusterIPs,
// named CIDRs (longest prefix), cluster CIDRs (unknown), world.
// The result is named so that a pod's identity is filled in place.
func (ix *index) Lookup(ip netip.Addr, at time.Time) (out Identity) {
	ip = ip.Unmap()
	ix.mu.RLock()
	if s, ok := ix.podIPs[ip]; ok {
		if p := s.pick(at, ix.grace); p != nil {
			ix.mu.RUnlock()
			p.fill(&out)
			return out
		}
	}
	if h := ix.hostIPs[ip]; h != nil {
		if id := h.identity(); id != nil {
			ix.mu.RUnlock()
			return *id
		}
	}
	if s := ix.svcIPs[ip]; s != nil {
		id := s.id
		ix.mu.RUnlock()
		return *id
	}
	ix.mu.RUnlock()
	if id, ok := ix.cidrs.lookup(ip); ok {
		return *id
	}
	for _, p := range ix.cluster {
		if p.Contains(ip) {
			return *ix.unknown
		}
	}
	return *ix.world
}

// Changed implements ClusterState.
func (ix *index) Changed() <-chan struct{} { return ix.changed.C() }

// Snapshot implements ClusterState.
func (ix *index) Snapshot() ([]corev1.Namespace, []corev1.Pod) {
	ix.mu.RLock()
	nss := make([]corev1.Namespace, 0, len(ix.namespaces))
	for _, n := range ix.namespaces {
		nss = append(nss, *n.ns)
	}
	pods := make([]corev1.Pod, 0, len(ix.pods))
	for _, p := range ix.pods {
		pods = append(pods, p.pod.pod())
	}
	ix.mu.RUnlock()
	sort.Slice(nss, func(i, j int) bool { return nss[i].Name < nss[j].Name })
	sort.Slice(pods, func(i, j int) bool {
		if pods[i].Namespace != pods[j].Namespace {
			return pods[i].Namespace < pods[j].Namespace
		}
		return pods[i].Name < pods[j].Name
	})
	return nss, pods
}

func (ix *index) counts() (pods, services int) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return len(ix.pods), len(ix.services)
}

// gc forgets displaced pod holders whose grace period has ended.
func (ix *index) gc(now time.Time) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	for ip, s := range ix.podIPs {
		if s.prev == nil || now.Before(s.prev.until.Add(ix.grace)) {
			continue
		}
		if s.cur == nil {
			delete(ix.podIPs, ip)
			continue
		}
		s.prev = nil
		ix.podIPs[ip] = s
	}
}
