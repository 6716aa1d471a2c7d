package traffic

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

type metrics map[string]float64

func (m metrics) ReportMetric(v float64, unit string) { m[unit] = v }

func TestReportConfidenceInterval(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ratios []float64
		want   bool // the interval is reported
		lo, hi float64
	}{
		{"five pairs: too few for 95 %", []float64{0.97, 0.99, 0.95, 0.98, 0.96}, false, 0, 0},
		{"six pairs: the extremes", []float64{0.97, 0.99, 0.95, 0.98, 0.96, 1.01}, true, 0.95, 1.01},
		{"nine pairs: the 2nd and 8th", []float64{0.90, 0.97, 0.99, 0.95, 0.98, 0.96, 1.01, 0.94, 1.05}, true, 0.94, 1.01},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := metrics{}
			Figures{TCPRatios: tc.ratios, UDPRatios: tc.ratios}.Report(m)
			for _, p := range []string{"tcp-ratio", "udp64-ratio"} {
				lo, okLo := m[p+"-ci95-lo"]
				hi, okHi := m[p+"-ci95-hi"]
				assert.Equal(t, tc.want, okLo && okHi, p)
				if tc.want {
					assert.InDelta(t, tc.lo, lo, 1e-9, p)
					assert.InDelta(t, tc.hi, hi, 1e-9, p)
				}
				assert.InDelta(t, Median(tc.ratios), m[p], 1e-9, p)
			}
			assert.InDelta(t, float64(len(tc.ratios)), m["pairs"], 1e-9)
		})
	}
}
