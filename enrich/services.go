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

type serviceState struct {
	namespace, name string
	ips             []netip.Addr
	ports           []servicePort
	id              *Identity
	// backendKeys are the backends this service added, to remove them when
	// its slices or ports change.
	backendKeys []backendKey
}

type servicePort struct {
	name  string
	port  uint16
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
		if p.port == port && p.proto == pn {
			return ServiceRef{Namespace: s.namespace, Name: s.name, Port: p.port, PortName: p.name}, true
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
		return refs[0], true
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

func (ix *index) upsertService(svc *corev1.Service) {
	key := objKey(svc.Namespace, svc.Name)
	st := &serviceState{
		namespace: svc.Namespace,
		name:      svc.Name,
		ips:       serviceAddrs(svc),
		id: (&Identity{
			Kind:      flowlensv1.EndpointKind_SERVICE,
			Namespace: svc.Namespace,
			Name:      svc.Name,
			Labels:    labelStrings(svc.Labels),
		}).publish(),
	}
	for _, p := range svc.Spec.Ports {
		st.ports = append(st.ports, servicePort{name: p.Name, port: uint16(p.Port), proto: protoNumber(string(p.Protocol))})
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
	ix.rebuildBackendsLocked(key)
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

func (ix *index) upsertSlice(es *discoveryv1.EndpointSlice) {
	svc := es.Labels[serviceNameLabel]
	if svc == "" {
		return
	}
	key := objKey(es.Namespace, svc)
	ix.mu.Lock()
	defer ix.mu.Unlock()
	m := ix.slices[key]
	if m == nil {
		m = map[string]*discoveryv1.EndpointSlice{}
		ix.slices[key] = m
	}
	m[es.Name] = es
	ix.rebuildBackendsLocked(key)
}

func (ix *index) deleteSlice(es *discoveryv1.EndpointSlice) {
	svc := es.Labels[serviceNameLabel]
	if svc == "" {
		return
	}
	key := objKey(es.Namespace, svc)
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if m := ix.slices[key]; m != nil {
		delete(m, es.Name)
		if len(m) == 0 {
			delete(ix.slices, key)
		}
	}
	ix.rebuildBackendsLocked(key)
}

func (ix *index) dropBackendsLocked(st *serviceState) {
	for _, k := range st.backendKeys {
		refs := slices.DeleteFunc(ix.backends[k], func(r ServiceRef) bool {
			return r.Namespace == st.namespace && r.Name == st.name
		})
		if len(refs) == 0 {
			delete(ix.backends, k)
		} else {
			ix.backends[k] = refs
		}
	}
	st.backendKeys = nil
}

// rebuildBackendsLocked joins a service's ports with its EndpointSlices'
// ports (by port name, as kube-proxy does) and indexes every endpoint
// address, ready or not: a flow to a terminating backend still went through
// the service.
func (ix *index) rebuildBackendsLocked(key string) {
	st := ix.services[key]
	if st == nil {
		return
	}
	ix.dropBackendsLocked(st)
	seen := map[backendKey]struct{}{}
	for _, es := range ix.slices[key] {
		for _, ep := range es.Ports {
			if ep.Port == nil {
				continue
			}
			name := ""
			if ep.Name != nil {
				name = *ep.Name
			}
			proto := uint8(6)
			if ep.Protocol != nil {
				proto = protoNumber(string(*ep.Protocol))
			}
			var ref ServiceRef
			found := false
			for _, sp := range st.ports {
				if sp.name == name && sp.proto == proto {
					ref = ServiceRef{Namespace: st.namespace, Name: st.name, Port: sp.port, PortName: sp.name}
					found = true
					break
				}
			}
			if !found {
				continue
			}
			for _, e := range es.Endpoints {
				for _, a := range e.Addresses {
					addr, err := netip.ParseAddr(a)
					if err != nil {
						continue
					}
					k := backendKey{addr: addr.Unmap(), port: uint16(*ep.Port), proto: proto}
					if _, dup := seen[k]; dup {
						continue
					}
					seen[k] = struct{}{}
					st.backendKeys = append(st.backendKeys, k)
					ix.backends[k] = insertRef(ix.backends[k], ref)
				}
			}
		}
	}
}

// insertRef keeps refs sorted by namespace/name so the answer for a backend
// shared by several services does not depend on event order.
func insertRef(refs []ServiceRef, r ServiceRef) []ServiceRef {
	i, _ := slices.BinarySearchFunc(refs, r, func(a, b ServiceRef) int {
		if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return slices.Insert(refs, i, r)
}
