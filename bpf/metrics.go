package bpf

import "github.com/prometheus/client_golang/prometheus"

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
		return nil, err
	}
	return m, nil
}
