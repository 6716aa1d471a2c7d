package rules

import (
	"testing"

	"github.com/flowlens/flowlens/lab/scenario"
)

// BenchmarkRenderFilter prints the cost of generating one node's filter table text.
func BenchmarkRenderFilter(b *testing.B) {
	sc := scenario.DefaultScenario()
	var pods []Pod
	for _, p := range sc.Pods {
		pods = append(pods, Pod{Spec: p, IP: p.IP})
	}
	in := Input{Node: 1, Rules: sc.Rules, Services: sc.Services, Pods: pods, SyncVersion: "1"}
	b.ReportAllocs()
	for b.Loop() {
		_ = Filter(in)
	}
}
