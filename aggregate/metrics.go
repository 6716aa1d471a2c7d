package aggregate

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowlens/flowlens/internal/lost"
)

type metrics struct {
	lost *lost.Counter
	// errors counts reads of the kernel side that failed. They are not
	// losses: the entry stays in the flow table and the next flush retries
	// it (an entry that is gone was evicted, which KERNEL_FLOW_TABLE counts).
	errors *prometheus.CounterVec
}

// Kinds of flowlens_errors_total.
const (
	errDecode   = "decode"   // a flow table entry that does not decode
	errCounters = "counters" // the kernel's created/lost counters could not be read
	errIterate  = "iterate"  // a pass over the flow table ended early
	errDelete   = "delete"   // an idle entry could not be deleted
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	l, err := lost.NewCounter(reg)
	if err != nil {
		return nil, err
	}
	m := &metrics{lost: l, errors: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "flowlens_errors_total",
		Help: "Failed reads of the kernel's flow table and counters, by kind; the next flush retries them.",
	}, []string{"kind"})}
	for _, k := range []string{errDecode, errCounters, errIterate, errDelete} {
		m.errors.WithLabelValues(k) // exported at zero from the start
	}
	if reg != nil {
		if err := reg.Register(m.errors); err != nil {
			return nil, fmt.Errorf("register flowlens_errors_total: %w", err)
		}
	}
	return m, nil
}
