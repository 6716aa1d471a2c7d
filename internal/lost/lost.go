// Package lost counts flow events lost before delivery, whatever lost them
// (the kernel flow table or ring buffer, the agent's queue, a slow gRPC
// client), in the one metric flowlens_lost_events_total{source}.
package lost

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// Counter is the flowlens_lost_events_total metric. A nil *Counter counts
// nothing.
type Counter struct{ vec *prometheus.CounterVec }

// NewCounter registers the metric on reg, or returns the one already
// registered there: the capture and the agent both count into it.
func NewCounter(reg prometheus.Registerer) (*Counter, error) {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "flowlens_lost_events_total",
		Help: "Flow events lost before delivery, by where they were lost.",
	}, []string{"source"})
	if reg == nil {
		return &Counter{vec: vec}, nil
	}
	if err := reg.Register(vec); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, fmt.Errorf("register lost events metric: %w", err)
		}
		existing, ok := are.ExistingCollector.(*prometheus.CounterVec)
		if !ok {
			return nil, fmt.Errorf("register lost events metric: %w", err)
		}
		vec = existing
	}
	// Every source is exported at zero from the start, so the alert and
	// dashboards see a series (0) rather than none before the first loss.
	for v, name := range flowlensv1.LostEventSource_name {
		if v != int32(flowlensv1.LostEventSource_LOST_EVENT_SOURCE_UNSPECIFIED) {
			vec.WithLabelValues(name)
		}
	}
	return &Counter{vec: vec}, nil
}

// Add counts n events lost at src.
func (c *Counter) Add(src flowlensv1.LostEventSource, n uint64) {
	if c == nil || n == 0 {
		return
	}
	c.vec.WithLabelValues(src.String()).Add(float64(n))
}
