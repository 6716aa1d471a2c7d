package agent

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	"github.com/flowlens/flowlens/manifest"
	"github.com/flowlens/flowlens/policy"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// staticState is a decoded cluster file as the judge's state.
type staticState struct {
	namespaces []corev1.Namespace
	pods       []corev1.Pod
}

func (s *staticState) Snapshot() ([]corev1.Namespace, []corev1.Pod) { return s.namespaces, s.pods }
func (s *staticState) Changed() <-chan struct{}                     { return nil }

// BenchmarkJudgeAndMetrics prices the policy side and the flow metrics of
// BenchmarkAgentMemory's node on their own, exactly (no sampling): the heap
// the judge keeps for 1,000 policies over 5,000 pods (the compiled engine
// and what it keeps to recompile), the bytes and allocations of judging
// one flow, and the heap the flow metrics keep after the 65,536 flows of a
// full table, each counted as the pipeline counts it. Run with -benchtime=1x.
func BenchmarkJudgeAndMetrics(b *testing.B) {
	for b.Loop() {
		dir := b.TempDir()
		cluster, pols, err := memNode.YAML()
		require.NoError(b, err)
		polFile := filepath.Join(dir, "policies.yaml")
		require.NoError(b, os.WriteFile(polFile, pols, 0o600))
		objs, err := manifest.Decode("cluster.yaml", bytes.NewReader(cluster))
		require.NoError(b, err)
		state := &staticState{namespaces: objs.Namespaces, pods: objs.Pods}
		eps := memEndpoints(state.pods)

		before := liveHeap()
		j := newPolicyJudge(slog.New(slog.DiscardHandler), "files:"+polFile, state)
		set, err := policy.LoadFiles(polFile)
		require.NoError(b, err)
		j.setPolicies(set)
		set = nil
		j.rebuild()
		judged := liveHeap()
		_, st := j.State()
		require.Equal(b, fmt.Sprintf("ok: %d policies, %d pods", memPolicies, memPods), st)

		m, err := newFlowMetrics(prometheus.NewRegistry(), "node-0", false)
		require.NoError(b, err)
		flows := make([]*flowlensv1.Flow, memFlows)
		for i := range flows {
			src, dst := i%memPods, (i*7+1)%memPods
			flows[i] = &flowlensv1.Flow{Verdict: flowlensv1.Verdict_FORWARDED, TrafficDirection: flowlensv1.TrafficDirection_EGRESS,
				Source: eps[src], Destination: eps[dst], Counters: &flowlensv1.Counters{Packets: 10, Bytes: 1000}}
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		allocs, bytes := ms.Mallocs, ms.TotalAlloc
		for i, fl := range flows {
			fl.Policy = j.Judge(PolicyQuery{Src: memNode.PodIP(i % memPods), Dst: memNode.PodIP((i*7 + 1) % memPods), Port: 8080, Protocol: "TCP"}, kernelActionOf(fl))
		}
		runtime.ReadMemStats(&ms)
		allocs, bytes = ms.Mallocs-allocs, ms.TotalAlloc-bytes
		withFlows := liveHeap()
		for _, fl := range flows {
			m.observe(fl)
		}
		counted := liveHeap()
		// FLOWLENS_HEAP_PROFILE=file writes what holds the heap here.
		if path := os.Getenv("FLOWLENS_HEAP_PROFILE"); path != "" {
			f, err := os.Create(path)
			require.NoError(b, err)
			require.NoError(b, pprof.WriteHeapProfile(f))
			require.NoError(b, f.Close())
		}
		mib := func(v uint64) float64 { return float64(v) / (1 << 20) }
		b.ReportMetric(mib(judged-before), "judge-heap-MiB")
		b.ReportMetric(float64(bytes)/memFlows, "judge-B/flow")
		b.ReportMetric(float64(allocs)/memFlows, "judge-allocs/flow")
		b.ReportMetric(mib(counted-withFlows), "metrics-heap-MiB")
		runtime.KeepAlive(j)
		runtime.KeepAlive(m)
		runtime.KeepAlive(flows)
	}
}

// memEndpoints names memNode's pods as the enrichment does: the
// Deployment is the ReplicaSet's name without its hash.
func memEndpoints(pods []corev1.Pod) []*flowlensv1.Endpoint {
	byIP := map[string]*flowlensv1.Endpoint{}
	for i := range pods {
		p := &pods[i]
		rs := p.OwnerReferences[0].Name
		byIP[p.Status.PodIP] = &flowlensv1.Endpoint{Kind: flowlensv1.EndpointKind_POD, Namespace: p.Namespace, PodName: p.Name,
			NodeName: p.Spec.NodeName, Workloads: []*flowlensv1.Workload{{Kind: "Deployment", Name: rs[:strings.LastIndex(rs, "-")]}}}
	}
	out := make([]*flowlensv1.Endpoint, memPods)
	for i := range out {
		out[i] = byIP[memNode.PodIP(i).String()]
	}
	return out
}
