package enrich

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"unique"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// podInfo is a pod as enrichment keeps it: what the index and the cluster
// state's consumers (the policy engine, the metrics) read, about a hundred
// bytes of its own where a corev1.Pod, even slimmed, costs kilobytes
// (issue 9). What the pods of a workload have in common (namespace,
// labels, ports, controller) is one podShape they share. The informers'
// transform stores it in place of the Pod; the store keys it through
// GetObjectMeta (namespace and name) and tells an update from a resync by
// its resourceVersion. Immutable once made.
type podInfo struct {
	*podShape
	name, resourceVersion string
	// node is interned: a node's pods share its name.
	node   unique.Handle[string]
	phase  corev1.PodPhase
	podIP  string
	podIPs []string
}

// podShape is what pods stamped from one template share, interned per
// index (see shapeKey). Immutable once made.
type podShape struct {
	namespace string
	// labels are "k=v" strings sorted as labelStrings sorts them: the
	// Identity's Labels as they are. keyLens[i] is the length of the key
	// in labels[i]; a key cannot hold "=" in a valid object, but a static
	// file is not validated.
	labels  []string
	keyLens []int32
	// ports are the named container ports (the only ones NetworkPolicy
	// resolves), in container order; named are the same as the
	// Identity's Ports.
	ports []podPort
	named []NamedPort
	// controller is the controlling owner's kind and name, empty for none.
	controller  Workload
	hostNetwork bool
}

type podPort struct {
	container, name string
	port            int32
	protocol        corev1.Protocol
}

var _ runtime.Object = (*podInfo)(nil)

// podInfo slims p, sharing its shape with the index's other pods of the
// same shape.
func (ix *index) podInfo(p *corev1.Pod) *podInfo {
	out := &podInfo{
		podShape: ix.shapes.get(shapeKey(p), func() *podShape { return newPodShape(p) }),
		name:     p.Name, resourceVersion: p.ResourceVersion,
		phase: knownPhase(p.Status.Phase), podIP: p.Status.PodIP,
	}
	if p.Spec.NodeName != "" {
		out.node = unique.Make(p.Spec.NodeName)
	}
	if len(p.Status.PodIPs) > 0 {
		out.podIPs = make([]string, len(p.Status.PodIPs))
		for i, ip := range p.Status.PodIPs {
			out.podIPs[i] = ip.IP
		}
		if out.podIP == out.podIPs[0] {
			// The API server sets both; keep one copy of the text.
			out.podIP = out.podIPs[0]
		}
	}
	return out
}

func newPodShape(p *corev1.Pod) *podShape {
	s := &podShape{namespace: p.Namespace, hostNetwork: p.Spec.HostNetwork}
	if len(p.Labels) > 0 {
		type label struct {
			kv     string
			keyLen int32
		}
		ls := make([]label, 0, len(p.Labels))
		for k, v := range p.Labels {
			ls = append(ls, label{k + "=" + v, int32(len(k))})
		}
		// Sorted as labelStrings sorts: "a-b=x" comes before "a=y".
		slices.SortFunc(ls, func(a, b label) int {
			if c := strings.Compare(a.kv, b.kv); c != 0 {
				return c
			}
			return int(a.keyLen - b.keyLen)
		})
		s.labels = make([]string, len(ls))
		s.keyLens = make([]int32, len(ls))
		for i, l := range ls {
			s.labels[i], s.keyLens[i] = l.kv, l.keyLen
		}
	}
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == "" {
				continue
			}
			proto := knownProtocol(cp.Protocol)
			s.ports = append(s.ports, podPort{container: c.Name, name: cp.Name, port: cp.ContainerPort, protocol: proto})
			if proto == "" {
				proto = corev1.ProtocolTCP
			}
			s.named = append(s.named, NamedPort{Name: cp.Name, Port: uint16(cp.ContainerPort), Protocol: string(proto)})
		}
	}
	if ref := metav1.GetControllerOfNoCopy(p); ref != nil {
		s.controller = Workload{Kind: ref.Kind, Name: ref.Name}
	}
	return s
}

// shapeKey encodes everything newPodShape keeps, each string prefixed by
// its length so that no two shapes share a key.
func shapeKey(p *corev1.Pod) string {
	b := make([]byte, 0, 128)
	str := func(s string) {
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, ':')
		b = append(b, s...)
	}
	str(p.Namespace)
	b = strconv.AppendBool(b, p.Spec.HostNetwork)
	for _, k := range slices.Sorted(maps.Keys(p.Labels)) {
		str(k)
		str(p.Labels[k])
	}
	b = append(b, '|')
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name != "" {
				str(c.Name)
				str(cp.Name)
				str(string(cp.Protocol))
				b = strconv.AppendInt(b, int64(cp.ContainerPort), 10)
			}
		}
	}
	b = append(b, '|')
	if ref := metav1.GetControllerOfNoCopy(p); ref != nil {
		str(ref.Kind)
		str(ref.Name)
	}
	return string(b)
}

// knownPhase returns the constant for a known phase, so that pods do not
// each keep a copy of "Running".
func knownPhase(p corev1.PodPhase) corev1.PodPhase {
	for _, c := range []corev1.PodPhase{corev1.PodRunning, corev1.PodPending, corev1.PodSucceeded, corev1.PodFailed, corev1.PodUnknown} {
		if p == c {
			return c
		}
	}
	return p
}

// knownProtocol is knownPhase for protocols.
func knownProtocol(p corev1.Protocol) corev1.Protocol {
	for _, c := range []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP} {
		if p == c {
			return c
		}
	}
	return p
}

// nodeName is the node the pod runs on, "" when not scheduled.
func (p *podInfo) nodeName() string {
	if p.node == (unique.Handle[string]{}) {
		return ""
	}
	return p.node.Value()
}

// key is the pod's key in the index.
func (p *podInfo) key() podKey { return podKey{p.namespace, p.name} }

// label returns the value of the label key.
func (p *podInfo) label(key string) string {
	for i, kv := range p.labels {
		if n := int(p.keyLens[i]); n == len(key) && strings.HasPrefix(kv, key) {
			return kv[n+1:]
		}
	}
	return ""
}

// labelMap is the labels as a Pod has them.
func (p *podInfo) labelMap() map[string]string {
	if len(p.labels) == 0 {
		return nil
	}
	m := make(map[string]string, len(p.labels))
	for i, kv := range p.labels {
		n := p.keyLens[i]
		m[kv[:n]] = kv[n+1:]
	}
	return m
}

// pod rebuilds the Pod the cluster state hands out, with what its
// consumers read (the policy engine: labels, IPs, phase, hostNetwork,
// named container ports; the metrics: namespace and name).
func (p *podInfo) pod() corev1.Pod {
	out := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.namespace, Name: p.name, ResourceVersion: p.resourceVersion, Labels: p.labelMap()},
		Spec:       corev1.PodSpec{NodeName: p.nodeName(), HostNetwork: p.hostNetwork},
		Status:     corev1.PodStatus{Phase: p.phase, PodIP: p.podIP},
	}
	if p.controller.Kind != "" {
		yes := true
		out.OwnerReferences = []metav1.OwnerReference{{Kind: p.controller.Kind, Name: p.controller.Name, Controller: &yes}}
	}
	for _, ip := range p.podIPs {
		out.Status.PodIPs = append(out.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	for i, pp := range p.ports {
		cp := corev1.ContainerPort{Name: pp.name, ContainerPort: pp.port, Protocol: pp.protocol}
		if n := len(out.Spec.Containers); n > 0 && p.ports[i-1].container == pp.container {
			out.Spec.Containers[n-1].Ports = append(out.Spec.Containers[n-1].Ports, cp)
			continue
		}
		out.Spec.Containers = append(out.Spec.Containers, corev1.Container{Name: pp.container, Ports: []corev1.ContainerPort{cp}})
	}
	return out
}

// GetObjectMeta is what the informer's store keys the pod by.
func (p *podInfo) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Namespace: p.namespace, Name: p.name, ResourceVersion: p.resourceVersion}
}

// GetObjectKind implements runtime.Object; a podInfo carries no type
// metadata.
func (p *podInfo) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject implements runtime.Object. The shape is immutable and
// stays shared.
func (p *podInfo) DeepCopyObject() runtime.Object {
	out := *p
	out.podIPs = slices.Clone(p.podIPs)
	return &out
}
