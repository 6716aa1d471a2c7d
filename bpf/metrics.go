package bpf

import (
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	lost     *prometheus.CounterVec
	attached prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowlens_lost_events_total",
			Help: "Flow events lost before delivery, by where they were lost.",
		}, []string{"source"}),
		attached: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flowlens_attached_interfaces",
			Help: "Pod interfaces the capture programs are attached to.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.lost, m.attached} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) addLost(src flowlensv1.LostEventSource, n uint64) {
	m.lost.WithLabelValues(src.String()).Add(float64(n))
}
