package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flowlens/flowlens/aggregate"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// churnState is a cluster whose pods the test adds and removes.
type churnState struct {
	mu      sync.Mutex
	pods    map[string]corev1.Pod
	changed chan struct{}
}

func (s *churnState) Snapshot() ([]corev1.Namespace, []corev1.Pod) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]corev1.Pod, 0, len(s.pods))
	for _, p := range s.pods {
		out = append(out, p)
	}
	return nil, out
}

func (s *churnState) Changed() <-chan struct{} { return s.changed }

func (s *churnState) set(name string, present bool) {
	s.mu.Lock()
	if present {
		s.pods[name] = corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "batch", Name: name}}
	} else {
		delete(s.pods, name)
	}
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// churnNamer names the churning pods by IP; a bare pod is its own workload.
type churnNamer struct {
	mu  sync.Mutex
	eps map[netip.Addr]*flowlensv1.Endpoint
}

func (n *churnNamer) Endpoint(ip netip.Addr, _ time.Time) *flowlensv1.Endpoint {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ep, ok := n.eps[ip]; ok {
		return ep
	}
	return &flowlensv1.Endpoint{Kind: flowlensv1.EndpointKind_WORLD}
}

func (n *churnNamer) Service(netip.Addr, uint16, string) *flowlensv1.Service { return nil }

// 1,000 short-lived bare pods (a CronJob's, say) each send a flow and go
// away: the flow series count returns to its baseline, with and without
// pod labels, while a long-lived Deployment's series stay.
func TestMetricSeriesReturnToBaselineAfterPodChurn(t *testing.T) {
	for _, podLabels := range []bool{false, true} {
		t.Run(fmt.Sprintf("pod labels %v", podLabels), func(t *testing.T) { churnPods(t, podLabels, 1000) })
	}
}

func churnPods(t *testing.T, podLabels bool, n int) {
	state := &churnState{pods: map[string]corev1.Pod{}, changed: make(chan struct{}, 1)}
	names := &churnNamer{eps: map[netip.Addr]*flowlensv1.Endpoint{}}
	web := netip.MustParseAddr("10.42.0.2")
	names.eps[web] = &flowlensv1.Endpoint{Kind: flowlensv1.EndpointKind_POD, Namespace: "batch", PodName: "web-7d9f-abcde",
		NodeName: "node1", Workloads: []*flowlensv1.Workload{{Kind: "Deployment", Name: "web"}}}
	state.set("web-7d9f-abcde", true)

	flows := make(chan aggregate.Event)
	reg := prometheus.NewRegistry()
	cfg := DefaultConfig()
	cfg.NodeName = "node1"
	cfg.MetricsAddress = ""
	cfg.MetricsPodLabels = podLabels
	a, err := newAgent(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), reg,
		deps{source: &chanSource{in: flows}, names: names, clusterState: state, gatherer: reg})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })

	send := func(src netip.Addr) {
		ev := tcpFlow(src.String(), "10.42.0.250", 40000, 443, flowlensv1.Verdict_FORWARDED, false)
		ev.Flow.TrafficDirection = flowlensv1.TrafficDirection_EGRESS
		flows <- ev
	}
	series := func() int {
		n, err := testutil.GatherAndCount(reg, "flowlens_flows_total", "flowlens_packets_total", "flowlens_bytes_total")
		require.NoError(t, err)
		return n
	}
	send(web)
	require.Eventually(t, func() bool { return a.pipe.seen.Load() == 1 }, 5*time.Second, time.Millisecond)
	baseline := series()
	require.Equal(t, 3, baseline, "one series each for the Deployment")

	peak := 0
	for i := range n {
		name := fmt.Sprintf("backup-%d", i)
		ip := netip.AddrFrom4([4]byte{10, 42, 1 + byte(i/250), byte(i % 250)})
		names.mu.Lock()
		names.eps[ip] = &flowlensv1.Endpoint{Kind: flowlensv1.EndpointKind_POD, Namespace: "batch", PodName: name, NodeName: "node1"}
		names.mu.Unlock()
		state.set(name, true)
		send(ip)
		if i%100 == 99 {
			require.Eventually(t, func() bool { return a.pipe.seen.Load() == uint64(i+2) }, 5*time.Second, time.Millisecond)
			peak = max(peak, series())
		}
		state.set(name, false)
	}
	require.Eventually(t, func() bool { return a.pipe.seen.Load() == uint64(n+1) }, 5*time.Second, time.Millisecond)
	assert.Eventually(t, func() bool { return series() == baseline }, 10*time.Second, 10*time.Millisecond,
		"series back to the baseline of %d after %d pods came and went", baseline, n)
	t.Logf("pod labels %v: baseline %d series, at most %d seen during churn, %d after", podLabels, baseline, peak, series())
	assert.Equal(t, 1.0, testutil.ToFloat64(a.pipe.metrics.flows.WithLabelValues(
		append([]string{"FORWARDED", "", "egress", "batch", "web"}, podLabelValue(podLabels, "web-7d9f-abcde")...)...)),
		"the live Deployment's series keep their count")
}

func podLabelValue(on bool, pod string) []string {
	if on {
		return []string{pod}
	}
	return nil
}
