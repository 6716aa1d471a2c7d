package enrich

import (
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// objMeta is the metadata the informers' store reads of a slimmed object:
// its key and its resourceVersion.
type objMeta struct {
	namespace, name, resourceVersion string
}

func metaOf(m *metav1.ObjectMeta) objMeta {
	return objMeta{namespace: m.Namespace, name: m.Name, resourceVersion: m.ResourceVersion}
}

// GetObjectMeta is what the informer's store keys the object by.
func (m *objMeta) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Namespace: m.namespace, Name: m.name, ResourceVersion: m.resourceVersion}
}

// GetObjectKind implements runtime.Object; slimmed objects carry no type
// metadata.
func (m *objMeta) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// sliceInfo is an EndpointSlice as enrichment keeps it: its Service, its
// ports and its endpoints' addresses, parsed (issue 9: a slimmed
// EndpointSlice kept a discoveryv1.Endpoint of a hundred bytes and more
// per address). Immutable once made.
type sliceInfo struct {
	objMeta
	service string // the kubernetes.io/service-name label
	ports   []slicePort
	// addrs are every endpoint's addresses, ready or not, in order, those
	// that do not parse left out.
	addrs []netip.Addr
}

// slicePort is an EndpointSlice port with a number.
type slicePort struct {
	name  string
	port  uint16
	proto uint8
}

var _ runtime.Object = (*sliceInfo)(nil)

func newSliceInfo(es *discoveryv1.EndpointSlice) *sliceInfo {
	out := &sliceInfo{objMeta: metaOf(&es.ObjectMeta), service: es.Labels[serviceNameLabel]}
	for _, p := range es.Ports {
		if p.Port == nil {
			continue
		}
		sp := slicePort{port: uint16(*p.Port), proto: protoNumber("")}
		if p.Name != nil {
			sp.name = *p.Name
		}
		if p.Protocol != nil {
			sp.proto = protoNumber(string(*p.Protocol))
		}
		out.ports = append(out.ports, sp)
	}
	n := 0
	for _, e := range es.Endpoints {
		n += len(e.Addresses)
	}
	out.addrs = make([]netip.Addr, 0, n)
	for _, e := range es.Endpoints {
		for _, a := range e.Addresses {
			if addr, err := netip.ParseAddr(a); err == nil {
				out.addrs = append(out.addrs, addr.Unmap())
			}
		}
	}
	return out
}

// DeepCopyObject implements runtime.Object.
func (s *sliceInfo) DeepCopyObject() runtime.Object {
	out := *s
	out.ports = slices.Clone(s.ports)
	out.addrs = slices.Clone(s.addrs)
	return &out
}

// ownerInfo is a ReplicaSet or a Job as enrichment keeps it: its
// controller.
type ownerInfo struct {
	objMeta
	controller Workload // empty for none
}

var _ runtime.Object = (*ownerInfo)(nil)

func newOwnerInfo(m *metav1.ObjectMeta) *ownerInfo {
	out := &ownerInfo{objMeta: metaOf(m)}
	if ref := metav1.GetControllerOfNoCopy(m); ref != nil {
		out.controller = Workload{Kind: ref.Kind, Name: ref.Name}
	}
	return out
}

// DeepCopyObject implements runtime.Object.
func (o *ownerInfo) DeepCopyObject() runtime.Object {
	out := *o
	return &out
}

// serviceInfo is a Service as enrichment keeps it. Immutable once made.
type serviceInfo struct {
	objMeta
	labels []string // "k=v", sorted
	ips    []netip.Addr
	ports  []servicePort
}

var _ runtime.Object = (*serviceInfo)(nil)

func newServiceInfo(svc *corev1.Service) *serviceInfo {
	out := &serviceInfo{objMeta: metaOf(&svc.ObjectMeta), labels: labelStrings(svc.Labels), ips: serviceAddrs(svc)}
	if len(svc.Spec.Ports) > 0 {
		out.ports = make([]servicePort, len(svc.Spec.Ports))
	}
	for i, p := range svc.Spec.Ports {
		out.ports[i] = servicePort{
			ref:   ServiceRef{Namespace: svc.Namespace, Name: svc.Name, Port: uint16(p.Port), PortName: p.Name},
			proto: protoNumber(string(p.Protocol)),
		}
	}
	return out
}

// DeepCopyObject implements runtime.Object.
func (s *serviceInfo) DeepCopyObject() runtime.Object {
	out := *s
	out.labels = slices.Clone(s.labels)
	out.ips = slices.Clone(s.ips)
	out.ports = slices.Clone(s.ports)
	return &out
}
