package enrich

import (
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Resolver names the ends of a flow. Implementations are safe for
// concurrent use; Lookup and the service lookups never block on the network
// and do not allocate.
type Resolver interface {
	// Lookup names ip as it was at time at (when the flow was seen), so a
	// reused pod IP is named after the pod that held it then. A zero at means
	// "now".
	Lookup(ip netip.Addr, at time.Time) Identity
	// LookupService resolves a ClusterIP and port (pre-DNAT destination).
	// proto is "TCP", "UDP" or "SCTP" (any case).
	LookupService(ip netip.Addr, port uint16, proto string) (ServiceRef, bool)
	// ServiceForBackend says which Service fronts a backend endpoint, from
	// EndpointSlices (post-DNAT destination). When several do, the first by
	// namespace/name wins.
	ServiceForBackend(backend netip.AddrPort, proto string) (ServiceRef, bool)
	Status() Status
}

// ClusterState is what the policy engine needs to be rebuilt when pods or
// namespaces change. Both sources implement it.
type ClusterState interface {
	// Snapshot returns copies of the (slimmed) namespaces and pods, sorted by
	// namespace/name; a pod carries only what the index keeps of it
	// (podInfo).
	Snapshot() (namespaces []corev1.Namespace, pods []corev1.Pod)
	// Changed receives a value (coalesced, capacity 1) after pods or
	// namespaces changed.
	Changed() <-chan struct{}
}

// DefaultDeletedGrace is how long a deleted pod's IP keeps resolving to it.
const DefaultDeletedGrace = 2 * time.Minute

// Config configures a source.
type Config struct {
	// NodeName is this node: node IPs and hostNetwork pods on it resolve to
	// HOST, those of other nodes to NODE.
	NodeName string
	// NamedCIDRs name external addresses ("proxmox" -> 10.0.1.10/32); the
	// most specific prefix wins.
	NamedCIDRs map[string]netip.Prefix
	// DeletedGrace is how long a deleted pod's IP keeps resolving to it
	// unless another pod takes the IP. Zero means DefaultDeletedGrace.
	DeletedGrace time.Duration
	// ClusterCIDRs are the pod (and service) ranges: an unknown address in
	// them resolves to ENDPOINT_KIND_UNSPECIFIED rather than WORLD.
	ClusterCIDRs []netip.Prefix
	// ProbeInterval is how often the API server is asked whether it
	// answers; zero means every 5 s. After an outage, informers resume
	// within about one interval of the API server's return.
	ProbeInterval time.Duration
}

func (c Config) probeEvery() time.Duration {
	if c.ProbeInterval <= 0 {
		return probeEvery
	}
	return c.ProbeInterval
}

func (c Config) grace() time.Duration {
	if c.DeletedGrace <= 0 {
		return DefaultDeletedGrace
	}
	return c.DeletedGrace
}
