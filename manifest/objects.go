// Package manifest decodes Kubernetes objects from YAML and JSON manifests,
// strictly: an unknown kind or field, or a malformed document, is an error
// naming the file and the document index, never a silent skip.
package manifest

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// Objects are Kubernetes objects decoded from YAML/JSON manifests.
type Objects struct {
	Namespaces      []corev1.Namespace
	Pods            []corev1.Pod
	Services        []corev1.Service
	EndpointSlices  []discoveryv1.EndpointSlice
	Nodes           []corev1.Node
	NetworkPolicies []networkingv1.NetworkPolicy

	// Origins says where each object was read, so that validation done later
	// (by the policy engine, the enrichment cache...) can name the file and
	// document of a bad object.
	Origins map[Key]Origin
}

// Key identifies an object: Kind as in the manifest ("Pod", "NetworkPolicy"),
// Namespace empty for cluster-scoped kinds.
type Key struct {
	Kind, Namespace, Name string
}

func (k Key) String() string {
	if k.Namespace == "" {
		return k.Kind + " " + k.Name
	}
	return k.Kind + " " + k.Namespace + "/" + k.Name
}

// Origin is where an object was read.
type Origin struct {
	File string
	// Doc is the 0-based index of the YAML document in File.
	Doc int
	// Item is the 0-based index in a List's items, -1 when the document is
	// the object itself.
	Item int
}

func (o Origin) String() string {
	if o.Item >= 0 {
		return fmt.Sprintf("%s doc %d item %d", o.File, o.Doc, o.Item)
	}
	return fmt.Sprintf("%s doc %d", o.File, o.Doc)
}

// Where returns the origin of an object as "file doc N", or "" when unknown
// (objects not read by this package).
func (o *Objects) Where(kind, namespace, name string) string {
	if o == nil {
		return ""
	}
	if org, ok := o.Origins[Key{Kind: kind, Namespace: namespace, Name: name}]; ok {
		return org.String()
	}
	return ""
}

// merge appends b's objects to o. Duplicate keys are an error naming both
// places: applying both would keep only the last, which hides a mistake.
func (o *Objects) merge(b *Objects) error {
	if o.Origins == nil {
		o.Origins = make(map[Key]Origin, len(b.Origins))
	}
	for k, org := range b.Origins {
		if prev, ok := o.Origins[k]; ok {
			return fmt.Errorf("%s: %s already defined at %s", org, k, prev)
		}
		o.Origins[k] = org
	}
	o.Namespaces = append(o.Namespaces, b.Namespaces...)
	o.Pods = append(o.Pods, b.Pods...)
	o.Services = append(o.Services, b.Services...)
	o.EndpointSlices = append(o.EndpointSlices, b.EndpointSlices...)
	o.Nodes = append(o.Nodes, b.Nodes...)
	o.NetworkPolicies = append(o.NetworkPolicies, b.NetworkPolicies...)
	return nil
}
