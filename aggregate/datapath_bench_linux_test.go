package aggregate

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowlens/flowlens/bpf"
	"github.com/flowlens/flowlens/internal/testenv"
	"github.com/flowlens/flowlens/lab/traffic"
)

// BenchmarkDatapathOverhead measures pod-to-pod throughput through the bridge with the capture
// attached, as a ratio to without: the median over five interleaved pairs (the lab's harness,
// lab/traffic). It runs once whatever b.N is; e2e's BenchmarkDatapath prices the whole agent
// the same way.
func BenchmarkDatapathOverhead(b *testing.B) {
	requireRoot(b)
	testenv.Tool(b, "iperf3", "iperf3")
	tn := newTestNode(b, "10.42.0", 2)
	end := func(p *testPod) traffic.Endpoint { return traffic.Endpoint{NetNS: p.ns, IP: mustAddr(b, p.ip)} }
	attach := func() (func() error, error) {
		var c *bpf.Capture
		inNetns(b, tn.node, func() {
			var err error
			c, err = bpf.New(bpf.Config{FlushInterval: time.Second}, nil, prometheus.NewRegistry())
			if err != nil {
				b.Fatal(err)
			}
		})
		src, err := New(c, nil, prometheus.NewRegistry())
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- src.Run(ctx, make(chan Event, 1<<16)) }()
		for c.Status()[bpf.StatusInterfaces] != "2" {
			time.Sleep(10 * time.Millisecond)
		}
		return func() error { cancel(); return <-done }, nil
	}
	f, err := traffic.Overhead{From: end(tn.pods[0]), To: end(tn.pods[1]), Rounds: 5, Seconds: 2, Attach: attach}.Run(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	f.Report(b)
}
