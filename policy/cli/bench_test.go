package cli

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/flowlens/flowlens/policy"
	"github.com/flowlens/flowlens/policy/internal/synth"
)

// BenchmarkMatrix500: the full pod matrix (250,000 verdicts) for 500 pods
// in 10 namespaces under 200 policies.
func BenchmarkMatrix500(b *testing.B) {
	c := synth.Generate(synth.Config{Namespaces: 10, Pods: 500, Policies: 200, Seed: 1})
	e, err := policy.Compile(policy.ClusterState{Namespaces: c.Namespaces, Pods: c.Pods}, c.Policies)
	if err != nil {
		b.Fatal(err)
	}
	pods := e.Pods()
	b.ReportAllocs()
	for b.Loop() {
		if m := computeMatrix(e, pods, 8080, corev1.ProtocolTCP); len(m) != 500 {
			b.Fatal(len(m))
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/matrix")
}
