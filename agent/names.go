package agent

import (
	"errors"
	"net/netip"
	"strconv"
	"time"

	"github.com/flowlens/flowlens/enrich"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// resolverNamer adapts an enrichment resolver to the pipeline's namer.
type resolverNamer struct{ r enrich.Resolver }

func (n resolverNamer) Endpoint(ip netip.Addr, at time.Time) *flowlensv1.Endpoint {
	return n.r.Lookup(ip, at).Endpoint()
}

func (n resolverNamer) Service(ip netip.Addr, port uint16, proto string) *flowlensv1.Service {
	if ref, ok := n.r.LookupService(ip, port, proto); ok {
		return ref.Proto()
	}
	return nil
}

// resolverState reports enrichment for ServerStatus.
type resolverState struct{ r enrich.Resolver }

func (s resolverState) State() (string, string) {
	st := s.r.Status()
	state := "synced"
	switch {
	case st.Degraded:
		state = "degraded: " + st.Reason
	case !st.Synced:
		state = "syncing"
	}
	return st.Source, state + ", " + itoa(st.Pods) + " pods, " + itoa(st.Services) + " services"
}

func itoa(n int) string {
	return strconv.Itoa(n)
}

// Ready says whether the first cluster state (API lists or file) is loaded.
func (s resolverState) Ready() error {
	if !s.r.Status().Synced {
		return errors.New("enrichment: the first cluster state is not loaded yet")
	}
	return nil
}
