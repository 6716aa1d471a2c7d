package enrich

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// health tracks, per watched resource, whether its last list or watch
// failed. Enrichment is degraded while any resource is failing; lookups keep
// answering from the last known state meanwhile.
type health struct {
	degraded   prometheus.Gauge
	syncErrors *prometheus.CounterVec

	mu      sync.Mutex
	failing map[string]string // resource -> last error; guarded by mu
}

func newHealth() *health {
	return &health{
		degraded: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flowlens_enrichment_degraded",
			Help: "1 while the Kubernetes API cannot be listed or watched; flows then carry names from the last known state or IPs only.",
		}),
		syncErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowlens_enrichment_sync_errors_total",
			Help: "List or watch errors from the Kubernetes API, by resource.",
		}, []string{"resource"}),
		failing: map[string]string{},
	}
}

// benign reports errors that end a watch in normal operation: the reflector
// re-watches or re-lists at once, so they are not degradation.
func benign(err error) bool {
	_, fallback := errors.AsType[*fallbackError](err)
	return fallback || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		apierrors.IsResourceExpired(err) || apierrors.IsGone(err)
}

// fail records a list/watch error; it reports whether the resource was
// healthy before (for logging the transition once).
func (h *health) fail(resource string, err error) bool {
	h.syncErrors.WithLabelValues(resource).Inc()
	h.mu.Lock()
	defer h.mu.Unlock()
	_, was := h.failing[resource]
	h.failing[resource] = err.Error()
	h.degraded.Set(1)
	return !was
}

// ok records a successful list or watch; it reports whether the resource
// was failing before.
func (h *health) ok(resource string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, was := h.failing[resource]; !was {
		return false
	}
	delete(h.failing, resource)
	if len(h.failing) == 0 {
		h.degraded.Set(0)
	}
	return true
}

func (h *health) state() (degraded bool, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.failing) == 0 {
		return false, ""
	}
	parts := make([]string, 0, len(h.failing))
	for r, e := range h.failing {
		parts = append(parts, fmt.Sprintf("%s: %s", r, e))
	}
	sort.Strings(parts)
	return true, "kubernetes API unreachable: " + strings.Join(parts, "; ")
}

func (h *health) register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{h.degraded, h.syncErrors} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register enrichment metrics: %w", err)
		}
	}
	return nil
}

// RegisterStaticHealth exports the enrichment health of a static source
// (--cluster-file): never degraded, but the series exists at zero so the
// FlowlensEnrichmentDegraded alert and dashboards see 0 rather than nothing.
func RegisterStaticHealth(reg prometheus.Registerer) error {
	return newHealth().register(reg)
}
