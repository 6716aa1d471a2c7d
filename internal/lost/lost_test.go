package lost

import (
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
	assert.Equal(t, 2, n, "one series per source")
	assert.InDelta(t, 3, testutil.ToFloat64(kernel.vec.WithLabelValues("KERNEL_RING_BUFFER")), 0)
	assert.InDelta(t, 3, testutil.ToFloat64(kernel.vec.WithLabelValues("CLIENT_QUEUE")), 0)
}
