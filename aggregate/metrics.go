package aggregate

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowlens/flowlens/internal/lost"
)

type metrics struct {
	lost *lost.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	l, err := lost.NewCounter(reg)
	if err != nil {
		return nil, err
	}
	return &metrics{lost: l}, nil
}
