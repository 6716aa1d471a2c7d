package bpf

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the kernel side's own; the flow table's read errors and
// lost events are counted by package aggregate, which reads the table.
type metrics struct {
	attached prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		attached: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flowlens_attached_interfaces",
			Help: "Pod interfaces the capture programs are attached to.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	if err := reg.Register(m.attached); err != nil {
		return nil, fmt.Errorf("register flowlens_attached_interfaces: %w", err)
	}
	return m, nil
}
