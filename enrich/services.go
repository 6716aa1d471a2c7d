package enrich

import (
	"net/netip"
	"slices"
	"strings"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// serviceNameLabel ties an EndpointSlice to its Service.
const serviceNameLabel = discoveryv1.LabelServiceName

// serviceState is an indexed Service: the object and its identity.
type serviceState struct {
	*serviceInfo
	id *Identity
}

// servicePort is a port of a Service; the backends behind it share its
// ref.
type servicePort struct {
	ref   ServiceRef
	proto uint8
}

type backendKey struct {
	addr  netip.Addr
	port  uint16
	proto uint8
}

// protoNumber maps a protocol name (any case) to its IP protocol number; 0
// for unknown.
func protoNumber(p string) uint8 {
	switch {
	case p == "", strings.EqualFold(p, "TCP"):
		return 6
	case strings.EqualFold(p, "UDP"):
		return 17
	case strings.EqualFold(p, "SCTP"):
		return 132
	}
	return 0
}

// LookupService implements Resolver.
func (ix *index) LookupService(ip netip.Addr, port uint16, proto string) (ServiceRef, bool) {
	pn := protoNumber(proto)
	ip = ip.Unmap()
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	s := ix.svcIPs[ip]
	if s == nil {
		return ServiceRef{}, false
	}
	for _, p := range s.ports {
		if p.ref.Port == port && p.proto == pn {
			return p.ref, true
		}
	}
	return ServiceRef{}, false
}

// ServiceForBackend implements Resolver.
func (ix *index) ServiceForBackend(backend netip.AddrPort, proto string) (ServiceRef, bool) {
	k := backendKey{addr: backend.Addr().Unmap(), port: backend.Port(), proto: protoNumber(proto)}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if refs := ix.backends[k]; len(refs) > 0 {
		return *refs[0], true
	}
	return ServiceRef{}, false
}

func serviceAddrs(svc *corev1.Service) []netip.Addr {
	var out []netip.Addr
	add := func(s string) {
		if s == "" || s == corev1.ClusterIPNone {
			return
		}
		if a, err := netip.ParseAddr(s); err == nil && !slices.Contains(out, a.Unmap()) {
			out = append(out, a.Unmap())
		}
	}
	for _, s := range svc.Spec.ClusterIPs {
		add(s)
	}
	add(svc.Spec.ClusterIP)
	return out
}

func (ix *index) upsertService(svc *serviceInfo) {
	key := objKey(svc.namespace, svc.name)
	st := &serviceState{
		serviceInfo: svc,
		id: (&Identity{
			Kind:      flowlensv1.EndpointKind_SERVICE,
			Namespace: svc.namespace,
			Name:      svc.name,
			Labels:    svc.labels,
		}).publish(),
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if old := ix.services[key]; old != nil {
		ix.removeServiceLocked(old)
	}
	ix.services[key] = st
	for _, ip := range st.ips {
		ix.svcIPs[ip] = st
	}
	ix.addBackendsLocked(st)
}

func (ix *index) deleteService(namespace, name string) {
	key := objKey(namespace, name)
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if old := ix.services[key]; old != nil {
		ix.removeServiceLocked(old)
		delete(ix.services, key)
	}
}

func (ix *index) removeServiceLocked(st *serviceState) {
	for _, ip := range st.ips {
		if ix.svcIPs[ip] == st {
			delete(ix.svcIPs, ip)
		}
	}
	ix.dropBackendsLocked(st)
}

func (ix *index) upsertSlice(es *sliceInfo) {
	if es.service == "" {
		return
	}
	key := objKey(es.namespace, es.service)
	ix.mu.Lock()
	defer ix.mu.Unlock()
	st := ix.services[key]
	if st != nil {
		ix.dropBackendsLocked(st)
	}
	ss := ix.slices[key]
	if i := slices.IndexFunc(ss, func(s *sliceInfo) bool { return s.name == es.name }); i >= 0 {
		ss[i] = es
	} else {
		ix.slices[key] = append(ss, es)
	}
	if st != nil {
		ix.addBackendsLocked(st)
	}
}

func (ix *index) deleteSlice(es *sliceInfo) {
	if es.service == "" {
		return
	}
	key := objKey(es.namespace, es.service)
	ix.mu.Lock()
	defer ix.mu.Unlock()
	st := ix.services[key]
	if st != nil {
		ix.dropBackendsLocked(st)
	}
	ss := slices.DeleteFunc(ix.slices[key], func(s *sliceInfo) bool { return s.name == es.name })
	if len(ss) == 0 {
		delete(ix.slices, key)
	} else {
		ix.slices[key] = ss
	}
	if st != nil {
		ix.addBackendsLocked(st)
	}
}

// backendsLocked calls yield with every backend of the service: its
// ports joined with its EndpointSlices' ports (by port name, as kube-proxy
// does), at every endpoint address, ready or not (a flow to a terminating
// backend still went through the service). A key can come more than once.
// It depends on the service and its slices only, so that the backends
// added can be found again to drop them: drop before the slices change.
func (ix *index) backendsLocked(st *serviceState, yield func(backendKey, *ServiceRef)) {
	for _, es := range ix.slices[objKey(st.namespace, st.name)] {
		for _, ep := range es.ports {
			i := slices.IndexFunc(st.ports, func(sp servicePort) bool { return sp.ref.PortName == ep.name && sp.proto == ep.proto })
			if i < 0 {
				continue
			}
			for _, a := range es.addrs {
				yield(backendKey{addr: a, port: ep.port, proto: ep.proto}, &st.ports[i].ref)
			}
		}
	}
}

func (ix *index) dropBackendsLocked(st *serviceState) {
	ix.backendsLocked(st, func(k backendKey, _ *ServiceRef) {
		refs := slices.DeleteFunc(ix.backends[k], func(r *ServiceRef) bool {
			return r.Namespace == st.namespace && r.Name == st.name
		})
		if len(refs) == 0 {
			delete(ix.backends, k)
		} else {
			ix.backends[k] = refs
		}
	})
}

func (ix *index) addBackendsLocked(st *serviceState) {
	ix.backendsLocked(st, func(k backendKey, ref *ServiceRef) {
		ix.backends[k] = insertRef(ix.backends[k], ref)
	})
}

// insertRef keeps refs sorted by namespace/name so the answer for a backend
// shared by several services does not depend on event order. A service
// already there (a key it has twice) is not added again.
func insertRef(refs []*ServiceRef, r *ServiceRef) []*ServiceRef {
	i, found := slices.BinarySearchFunc(refs, r, func(a, b *ServiceRef) int {
		if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	if found {
		return refs
	}
	return slices.Insert(refs, i, r)
}
