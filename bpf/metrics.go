package bpf

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	attached prometheus.Gauge
	// errors counts reads of the kernel side that failed. They are not
	// losses: the entry stays in the flow table and the next flush retries
	// it (an entry that is gone was evicted, which KERNEL_FLOW_TABLE counts).
	errors *prometheus.CounterVec
}

// Kinds of errorsTotal.
const (
	errDecode   = "decode"   // a flow table entry that does not decode
	errLookup   = "lookup"   // a dropped flow's entry could not be read
	errCounters = "counters" // the kernel's created/lost counters could not be read
	errIterate  = "iterate"  // a pass over the flow table ended early
	errDelete   = "delete"   // an idle entry could not be deleted
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		attached: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flowlens_attached_interfaces",
			Help: "Pod interfaces the capture programs are attached to.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowlens_errors_total",
			Help: "Failed reads of the kernel's flow table and counters, by kind; the next flush retries them.",
		}, []string{"kind"}),
	}
	for _, k := range []string{errDecode, errLookup, errCounters, errIterate, errDelete} {
		m.errors.WithLabelValues(k)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.attached, m.errors} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
