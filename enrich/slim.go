package enrich

import (
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// slim is the informers' transform: it keeps only what enrichment and the
// policy engine read; pods, Services, EndpointSlices and the owners become
// small types of their own (podInfo, objinfo.go). Keep in sync with
// what pods.go, nodes.go, services.go and the policy engine (labels, IPs,
// hostNetwork, containerPorts) read.
// Tombstones (cache.DeletedFinalStateUnknown) never reach a transform.
func (ix *index) slim(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		return ix.podInfo(o), nil
	case *corev1.Namespace:
		return slimNamespace(o), nil
	case *corev1.Node:
		return slimNode(o), nil
	case *corev1.Service:
		return newServiceInfo(o), nil
	case *discoveryv1.EndpointSlice:
		return newSliceInfo(o), nil
	case *metav1.PartialObjectMetadata: // a ReplicaSet or a Job
		return newOwnerInfo(&o.ObjectMeta), nil
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
