package agent

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowlens/flowlens/aggregate"
)

// The series alerts and dashboards read exist at zero before anything
// happens, with --cluster-file too: an absent series reads as "no data",
// not 0, and an alert on it can never fire.
func TestKnownSeriesExportedAtZeroFromStart(t *testing.T) {
	cfg := DefaultConfig()
	cfg.NodeName = "node1"
	cfg.MetricsAddress = ""
	cfg.GRPCAddress = "127.0.0.1:0"
	cfg.ClusterFile = "../examples/homelab/cluster.yaml"
	in, err := parseInputs(cfg)
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	_, err = build(context.Background(), cfg, in, slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard, reg,
		&chanSource{in: make(chan aggregate.Event)}, nil)
	require.NoError(t, err)

	for _, tc := range []struct {
		name   string
		series int
	}{
		{"flowlens_lost_events_total", 4},
		{"flowlens_policy_mismatches_total", 3}, // UNEXPECTED_DROP, UNEXPECTED_ALLOW, ENFORCER_ALLOW
		{"flowlens_enrichment_degraded", 1},
	} {
		n, err := testutil.GatherAndCount(reg, tc.name)
		require.NoError(t, err)
		assert.Equal(t, tc.series, n, tc.name)
	}
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "flowlens_lost_events_total", "flowlens_policy_mismatches_total":
				assert.Zero(t, m.GetCounter().GetValue(), mf.GetName())
			case "flowlens_enrichment_degraded":
				assert.Zero(t, m.GetGauge().GetValue(), mf.GetName())
			}
		}
	}
}

type badStatusSource struct{ *chanSource }

func (badStatusSource) Status() map[string]string { return map[string]string{"interfaces": "three"} }

// A capture status that does not parse is said, not read as 0 silently.
func TestStatusReportsUnparsableInterfaceCount(t *testing.T) {
	var logs bytes.Buffer
	cfg := DefaultConfig()
	cfg.MetricsAddress = ""
	a, err := newAgent(cfg, slog.New(slog.NewTextHandler(&logs, nil)), prometheus.NewRegistry(), deps{source: badStatusSource{&chanSource{}}})
	require.NoError(t, err)
	assert.Zero(t, a.Status().GetAttachedInterfaces())
	assert.Contains(t, logs.String(), "interfaces is not a count")
	assert.Contains(t, logs.String(), "three")
}
