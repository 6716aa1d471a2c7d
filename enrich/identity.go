package enrich

import (
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// Workload is the controller that owns a pod, resolved through
// ownerReferences: ReplicaSet->Deployment and Job->CronJob are followed one
// level up; a bare pod is its own workload (Kind "Pod").
type Workload struct {
	Kind string
	Name string
}

// NamedPort is a container port, kept so the policy engine can resolve named
// ports in NetworkPolicy rules against the destination pod.
type NamedPort struct {
	Name     string
	Port     uint16
	Protocol string // "TCP", "UDP" or "SCTP"
}

// Identity is who an IP is at a moment. Identities handed out by a Resolver
// are shared between callers: their slices (and the proto returned by
// Endpoint) must never be mutated.
type Identity struct {
	Kind flowlensv1.EndpointKind
	// Namespace is set for POD and SERVICE.
	Namespace string
	// Name is the pod name (POD), service name (SERVICE), node name (HOST,
	// NODE) or the named CIDR (CIDR). Empty for WORLD.
	Name string
	// Labels are the pod's (or service's) labels as sorted "k=v" strings.
	Labels []string
	// NamespaceLabels are the labels of the pod's namespace, sorted "k=v";
	// the same slice is shared by every pod of the namespace.
	NamespaceLabels []string
	Workload        Workload
	// NodeName is the node a pod runs on, or the node itself for HOST/NODE.
	NodeName string
	// Ports are the pod's container ports (for named-port policy rules).
	Ports []NamedPort

	// ep caches the proto form so the hot path does not allocate; built once
	// when the identity is published (a pod's: on its first lookup).
	ep *flowlensv1.Endpoint
}

// Known reports whether the identity names something more specific than
// the world or an unknown cluster address.
func (id Identity) Known() bool {
	return id.Kind != flowlensv1.EndpointKind_WORLD && id.Kind != flowlensv1.EndpointKind_ENDPOINT_KIND_UNSPECIFIED
}

// Endpoint returns the proto form of the identity. Identities published by a
// Resolver carry a cached, shared Endpoint: callers must not modify it.
func (id Identity) Endpoint() *flowlensv1.Endpoint {
	if id.ep != nil {
		return id.ep
	}
	return id.buildEndpoint(nil)
}

// buildEndpoint makes the proto form; workloads, when not nil, is the
// shared proto form of id.Workload.
func (id Identity) buildEndpoint(workloads []*flowlensv1.Workload) *flowlensv1.Endpoint {
	ep := &flowlensv1.Endpoint{
		Kind:      id.Kind,
		Namespace: id.Namespace,
		Labels:    id.Labels,
		NodeName:  id.NodeName,
	}
	switch id.Kind {
	case flowlensv1.EndpointKind_POD:
		ep.PodName = id.Name
	default:
		ep.Name = id.Name
	}
	if workloads == nil && id.Workload.Kind != "" {
		workloads = []*flowlensv1.Workload{{Kind: id.Workload.Kind, Name: id.Workload.Name}}
	}
	ep.Workloads = workloads
	return ep
}

// publish fills the cached proto; call once before the identity is shared.
func (id *Identity) publish() *Identity {
	id.ep = id.buildEndpoint(nil)
	return id
}

// ServiceRef names a Service port: what a ClusterIP flow was addressed to.
type ServiceRef struct {
	Namespace string
	Name      string
	// Port is the Service port (not the target port).
	Port     uint16
	PortName string
}

// Proto returns the proto form of the reference.
func (s ServiceRef) Proto() *flowlensv1.Service {
	return &flowlensv1.Service{Namespace: s.Namespace, Name: s.Name, Port: uint32(s.Port)}
}

// Status is the enrichment source's health, for the agent's ServerStatus and
// readiness.
type Status struct {
	// Source is "kubernetes" or "static:<paths>".
	Source string
	// Synced is true once every informer has listed once.
	Synced bool
	// Degraded is true while the API server cannot be listed or watched;
	// lookups then answer from the last known state.
	Degraded bool
	Reason   string
	Pods     int
	Services int
}
