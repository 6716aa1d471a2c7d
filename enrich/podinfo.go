package enrich

import (
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// podInfo is a pod as enrichment keeps it: what the index and the cluster
// state's consumers (the policy engine, the metrics) read, a few hundred
// bytes where a corev1.Pod, even slimmed, costs kilobytes (issue 9). The
// informers' transform stores it in place of the Pod; the store keys it
// through GetObjectMeta (namespace and name) and tells an update from a
// resync by its resourceVersion. Immutable once made; its strings are the
// decoded object's own, not copies.
type podInfo struct {
	namespace, name, resourceVersion string
	nodeName                         string
	phase                            corev1.PodPhase
	podIP                            string
	podIPs                           []string
	// labels are key, value pairs sorted by key.
	labels []string
	// ports are the named container ports (the only ones NetworkPolicy
	// resolves), in container order.
	ports []podPort
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

func newPodInfo(p *corev1.Pod) *podInfo {
	out := &podInfo{
		namespace: p.Namespace, name: p.Name, resourceVersion: p.ResourceVersion,
		nodeName: p.Spec.NodeName, phase: p.Status.Phase, podIP: p.Status.PodIP,
		hostNetwork: p.Spec.HostNetwork,
	}
	if len(p.Status.PodIPs) > 0 {
		out.podIPs = make([]string, len(p.Status.PodIPs))
		for i, ip := range p.Status.PodIPs {
			out.podIPs[i] = ip.IP
		}
	}
	if len(p.Labels) > 0 {
		out.labels = make([]string, 0, 2*len(p.Labels))
		for _, k := range slices.Sorted(maps.Keys(p.Labels)) {
			out.labels = append(out.labels, k, p.Labels[k])
		}
	}
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name != "" {
				out.ports = append(out.ports, podPort{container: c.Name, name: cp.Name, port: cp.ContainerPort, protocol: cp.Protocol})
			}
		}
	}
	if ref := metav1.GetControllerOfNoCopy(p); ref != nil {
		out.controller = Workload{Kind: ref.Kind, Name: ref.Name}
	}
	return out
}

// label returns the value of the label key.
func (p *podInfo) label(key string) string {
	for i := 0; i+1 < len(p.labels); i += 2 {
		if p.labels[i] == key {
			return p.labels[i+1]
		}
	}
	return ""
}

// labelMap is the labels as a Pod has them.
func (p *podInfo) labelMap() map[string]string {
	if len(p.labels) == 0 {
		return nil
	}
	m := make(map[string]string, len(p.labels)/2)
	for i := 0; i+1 < len(p.labels); i += 2 {
		m[p.labels[i]] = p.labels[i+1]
	}
	return m
}

// pod rebuilds the Pod the cluster state hands out, with what its
// consumers read (the policy engine: labels, IPs, phase, hostNetwork,
// named container ports; the metrics: namespace and name).
func (p *podInfo) pod() corev1.Pod {
	out := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.namespace, Name: p.name, ResourceVersion: p.resourceVersion, Labels: p.labelMap()},
		Spec:       corev1.PodSpec{NodeName: p.nodeName, HostNetwork: p.hostNetwork},
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

// DeepCopyObject implements runtime.Object.
func (p *podInfo) DeepCopyObject() runtime.Object {
	out := *p
	out.podIPs = slices.Clone(p.podIPs)
	out.labels = slices.Clone(p.labels)
	out.ports = slices.Clone(p.ports)
	return &out
}
