package lab

import (
	"context"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/testenv"
)

// BenchmarkUpClose prints how long building and removing a two-node lab takes (8 namespaces,
// veths, VXLAN, rules on both nodes).
func BenchmarkUpClose(b *testing.B) {
	testenv.Root(b, "builds network namespaces")
	var up, down time.Duration
	for b.Loop() {
		start := time.Now()
		l, err := Up(context.Background(), Config{Nodes: 2})
		if err != nil {
			b.Fatal(err)
		}
		mid := time.Now()
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}
		up += mid.Sub(start)
		down += time.Since(mid)
	}
	b.ReportMetric(float64(up.Milliseconds())/float64(b.N), "up-ms/op")
	b.ReportMetric(float64(down.Milliseconds())/float64(b.N), "close-ms/op")
}

// BenchmarkRuleSync prints the cost of one kube-router-style full re-sync (ipset restore and
// iptables-restore on both nodes), which AddPod pays.
func BenchmarkRuleSync(b *testing.B) {
	testenv.Root(b, "builds network namespaces")
	l, err := Up(context.Background(), Config{Nodes: 2})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	for b.Loop() {
		if err := l.SyncRules(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
