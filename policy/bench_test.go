package policy_test

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/flowlens/flowlens/policy"
	"github.com/flowlens/flowlens/policy/internal/synth"
)

var benchCfg = synth.Config{Namespaces: 50, Pods: 5000, Policies: 1000, Seed: 1}

// BenchmarkEvaluate: verdicts per second on 1,000 policies and 5,000 pods,
// mostly pod to pod, some outside addresses.
func BenchmarkEvaluate(b *testing.B) {
	c := synth.Generate(benchCfg)
	e, err := policy.Compile(policy.ClusterState{Namespaces: c.Namespaces, Pods: c.Pods}, c.Policies)
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 1))
	ports := []uint16{8080, 8081, 9090, 9050, 443, 80, 53}
	qs := make([]policy.Query, 4096)
	for i := range qs {
		qs[i] = policy.Query{Src: synth.PodIP(r.IntN(5000)), Dst: synth.PodIP(r.IntN(5000)), Port: ports[r.IntN(len(ports))], Protocol: corev1.ProtocolTCP}
		if r.IntN(20) == 0 {
			qs[i].Dst = netip.MustParseAddr("8.8.8.8")
		}
	}
	allowed := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if e.Evaluate(qs[i%len(qs)]).Allowed {
			allowed++
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verdicts/s")
	b.ReportMetric(float64(allowed)/float64(b.N), "allowed-ratio")
}

// BenchmarkCompile: building the engine for 1,000 policies and 5,000 pods.
func BenchmarkCompile(b *testing.B) {
	c := synth.Generate(benchCfg)
	state := policy.ClusterState{Namespaces: c.Namespaces, Pods: c.Pods}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := policy.Compile(state, c.Policies); err != nil {
			b.Fatal(err)
		}
	}
}
