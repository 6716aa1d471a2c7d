package enrich

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/flowlens/flowlens/manifest"
)

// Static is the Resolver over objects loaded from YAML (the lab's cluster
// file, or a snapshot for standalone use). It never changes after NewStatic.
type Static struct {
	*index
	source string
}

var (
	_ Resolver     = (*Static)(nil)
	_ ClusterState = (*Static)(nil)
)

// NewStatic indexes objs (as loaded by manifest.Load). Pods and Services
// with unparsable addresses are errors naming the object and, when known,
// the file and document it came from.
func NewStatic(objs *manifest.Objects, cfg Config) (*Static, error) {
	if objs == nil {
		return nil, errors.New("static enrichment: no objects")
	}
	if err := validate(objs); err != nil {
		return nil, err
	}
	s := &Static{index: newIndex(cfg), source: "static"}
	now := time.Now()
	// Namespaces and owners first so pods get their labels without a
	// rebuild; the result does not depend on the order either way.
	for i := range objs.Namespaces {
		s.upsertNamespace(slimNamespace(&objs.Namespaces[i]))
	}
	for i := range objs.Nodes {
		s.upsertNode(slimNode(&objs.Nodes[i]))
	}
	for i := range objs.Pods {
		s.upsertPod(s.podInfo(&objs.Pods[i]), now)
	}
	for i := range objs.Services {
		s.upsertService(newServiceInfo(&objs.Services[i]))
	}
	for i := range objs.EndpointSlices {
		s.upsertSlice(newSliceInfo(&objs.EndpointSlices[i]))
	}
	// Drain the construction-time signal: nothing changes after this.
	s.changed.Drain()
	return s, nil
}

// WithSource names where the objects came from in Status (for example
// "static:lab/cluster.yaml").
func (s *Static) WithSource(source string) *Static {
	s.source = source
	return s
}

// Status implements Resolver.
func (s *Static) Status() Status {
	pods, svcs := s.counts()
	return Status{Source: s.source, Synced: true, Pods: pods, Services: svcs}
}

func validate(objs *manifest.Objects) error {
	bad := func(kind, ns, name, what, value string) error {
		where := objs.Where(kind, ns, name)
		if where != "" {
			where += ": "
		}
		return fmt.Errorf("%s%s %s/%s: %s %q is not an IP address", where, kind, ns, name, what, value)
	}
	for _, p := range objs.Pods {
		for _, ip := range p.Status.PodIPs {
			if _, err := netip.ParseAddr(ip.IP); err != nil {
				return bad("Pod", p.Namespace, p.Name, "status.podIPs", ip.IP)
			}
		}
		if ip := p.Status.PodIP; ip != "" {
			if _, err := netip.ParseAddr(ip); err != nil {
				return bad("Pod", p.Namespace, p.Name, "status.podIP", ip)
			}
		}
	}
	for _, svc := range objs.Services {
		for _, ip := range append([]string{svc.Spec.ClusterIP}, svc.Spec.ClusterIPs...) {
			if ip == "" || ip == "None" {
				continue
			}
			if _, err := netip.ParseAddr(ip); err != nil {
				return bad("Service", svc.Namespace, svc.Name, "spec.clusterIP", ip)
			}
		}
	}
	return nil
}
