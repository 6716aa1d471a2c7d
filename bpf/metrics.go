package bpf

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowlens/flowlens/internal/lost"
)

type metrics struct {
	lost     *lost.Counter
	attached prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	l, err := lost.NewCounter(reg)
	if err != nil {
		return nil, err
	}
	m := &metrics{
		lost: l,
		attached: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flowlens_attached_interfaces",
			Help: "Pod interfaces the capture programs are attached to.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	if err := reg.Register(m.attached); err != nil {
		return nil, err
	}
	return m, nil
}
