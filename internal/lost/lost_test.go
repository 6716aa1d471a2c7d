package lost

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// Two users of one registry share one metric.
func TestCounterSharedOnOneRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	kernel, err := NewCounter(reg)
	require.NoError(t, err)
	agent, err := NewCounter(reg)
	require.NoError(t, err)
	kernel.Add(flowlensv1.LostEventSource_KERNEL_RING_BUFFER, 2)
	agent.Add(flowlensv1.LostEventSource_CLIENT_QUEUE, 3)
	agent.Add(flowlensv1.LostEventSource_KERNEL_RING_BUFFER, 1)
	var nilCounter *Counter
	nilCounter.Add(flowlensv1.LostEventSource_AGENT_QUEUE, 1)

	n, err := testutil.GatherAndCount(reg, "flowlens_lost_events_total")
	require.NoError(t, err)
	assert.Equal(t, len(flowlensv1.LostEventSource_name)-1, n, "one series per source, every source from the start")
	assert.InDelta(t, 3, testutil.ToFloat64(kernel.vec.WithLabelValues("KERNEL_RING_BUFFER")), 0)
	assert.InDelta(t, 3, testutil.ToFloat64(kernel.vec.WithLabelValues("CLIENT_QUEUE")), 0)
}

// Every source is exported at zero before anything is lost.
func TestCounterExportsEverySourceAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	_, err := NewCounter(reg)
	require.NoError(t, err)
	want := `# HELP flowlens_lost_events_total Flow events lost before delivery, by where they were lost.
# TYPE flowlens_lost_events_total counter
flowlens_lost_events_total{source="AGENT_QUEUE"} 0
flowlens_lost_events_total{source="CLIENT_QUEUE"} 0
flowlens_lost_events_total{source="KERNEL_FLOW_TABLE"} 0
flowlens_lost_events_total{source="KERNEL_RING_BUFFER"} 0
`
	assert.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want), "flowlens_lost_events_total"))
}
