package enrich

import (
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// slim is the informers' transform: it keeps only what enrichment and the
// policy engine read; pods become a podInfo of their own. Keep in sync with
// what pods.go, nodes.go, services.go and the policy engine (labels, IPs,
// hostNetwork, containerPorts) read.
// Tombstones (cache.DeletedFinalStateUnknown) never reach a transform.
func slim(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		return newPodInfo(o), nil
	case *corev1.Namespace:
		return slimNamespace(o), nil
	case *corev1.Node:
		return slimNode(o), nil
	case *corev1.Service:
		return slimService(o), nil
	case *discoveryv1.EndpointSlice:
		return slimSlice(o), nil
	case *metav1.PartialObjectMetadata: // a ReplicaSet or a Job
		return &metav1.PartialObjectMetadata{ObjectMeta: slimMeta(&o.ObjectMeta, false)}, nil
	}
	return obj, nil
}

func slimNamespace(o *corev1.Namespace) *corev1.Namespace {
	return &corev1.Namespace{TypeMeta: o.TypeMeta, ObjectMeta: slimMeta(&o.ObjectMeta, true)}
}

func slimNode(o *corev1.Node) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: slimMeta(&o.ObjectMeta, false),
		Spec:       corev1.NodeSpec{PodCIDR: o.Spec.PodCIDR, PodCIDRs: o.Spec.PodCIDRs},
		Status:     corev1.NodeStatus{Addresses: o.Status.Addresses},
	}
}

func slimService(o *corev1.Service) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: slimMeta(&o.ObjectMeta, true),
		Spec: corev1.ServiceSpec{
			Type:       o.Spec.Type,
			ClusterIP:  o.Spec.ClusterIP,
			ClusterIPs: o.Spec.ClusterIPs,
			Ports:      o.Spec.Ports,
		},
	}
}

func slimSlice(o *discoveryv1.EndpointSlice) *discoveryv1.EndpointSlice {
	eps := make([]discoveryv1.Endpoint, len(o.Endpoints))
	for i, e := range o.Endpoints {
		eps[i] = discoveryv1.Endpoint{Addresses: e.Addresses, NodeName: e.NodeName}
	}
	meta := slimMeta(&o.ObjectMeta, false)
	if svc, ok := o.Labels[serviceNameLabel]; ok {
		meta.Labels = map[string]string{serviceNameLabel: svc}
	}
	return &discoveryv1.EndpointSlice{ObjectMeta: meta, AddressType: o.AddressType, Endpoints: eps, Ports: o.Ports}
}

// slimMeta keeps identity, resourceVersion (the informer needs it), the
// controller reference and optionally labels; annotations and managedFields
// are the bulk of most objects and go.
func slimMeta(m *metav1.ObjectMeta, labels bool) metav1.ObjectMeta {
	out := metav1.ObjectMeta{
		Name:              m.Name,
		Namespace:         m.Namespace,
		UID:               m.UID,
		ResourceVersion:   m.ResourceVersion,
		CreationTimestamp: m.CreationTimestamp,
		DeletionTimestamp: m.DeletionTimestamp,
	}
	if labels {
		out.Labels = m.Labels
	}
	if ref := metav1.GetControllerOfNoCopy(m); ref != nil {
		out.OwnerReferences = []metav1.OwnerReference{*ref}
	}
	return out
}
