package bpf

import (
	"context"
	"encoding/json"
	"os/exec"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type iperfResult struct {
	End struct {
		Sum struct {
			Packets     float64 `json:"packets"`
			LostPackets float64 `json:"lost_packets"`
			Seconds     float64 `json:"seconds"`
		} `json:"sum"`
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
}

// iperf runs one iperf3 measurement from pod 0 to pod 1 and returns TCP
// bits/s or UDP received packets/s.
func iperf(b *testing.B, tn *testNode, udp bool) float64 {
	b.Helper()
	srv := exec.Command("ip", "netns", "exec", tn.pods[1].ns, "iperf3", "-s", "-1", "-B", tn.pods[1].ip)
	if err := srv.Start(); err != nil {
		b.Fatalf("start iperf3 server: %v", err)
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	time.Sleep(200 * time.Millisecond)
	args := []string{"netns", "exec", tn.pods[0].ns, "iperf3", "-c", tn.pods[1].ip, "-t", "2", "-J"}
	if udp {
		args = append(args, "-u", "-l", "64", "-b", "0")
	}
	out, err := exec.Command("ip", args...).Output()
	if err != nil {
		b.Fatalf("iperf3 client: %v\n%s", err, out)
	}
	var r iperfResult
	if err := json.Unmarshal(out, &r); err != nil {
		b.Fatalf("iperf3 json: %v", err)
	}
	if udp {
		return (r.End.Sum.Packets - r.End.Sum.LostPackets) / r.End.Sum.Seconds
	}
	return r.End.SumReceived.BitsPerSecond
}

// BenchmarkDatapathOverhead measures pod-to-pod throughput through the
// bridge with the capture attached, as a ratio to without, interleaving
// the two. It runs once whatever b.N is.
func BenchmarkDatapathOverhead(b *testing.B) {
	requireRoot(b)
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Skip("iperf3 not installed")
	}
	tn := newTestNode(b, "10.42.0", 2)
	const rounds = 2
	var base, with [2]float64 // [tcp, udp]
	for range rounds {
		for i, udp := range []bool{false, true} {
			base[i] += iperf(b, tn, udp) / rounds

			var c *Capture
			inNetns(b, tn.node, func() {
				var err error
				c, err = New(Config{FlushInterval: time.Second}, nil, prometheus.NewRegistry())
				if err != nil {
					b.Fatal(err)
				}
			})
			ctx, cancel := context.WithCancel(context.Background())
			out := make(chan Event, 1<<16)
			done := make(chan error, 1)
			go func() { done <- c.Run(ctx, out) }()
			for c.Status()[StatusInterfaces] != "2" {
				time.Sleep(10 * time.Millisecond)
			}
			with[i] += iperf(b, tn, udp) / rounds
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(base[0]/1e9, "tcp-Gbit/s-without")
	b.ReportMetric(with[0]/1e9, "tcp-Gbit/s-with")
	b.ReportMetric(with[0]/base[0], "tcp-ratio")
	b.ReportMetric(base[1], "udp64-pps-without")
	b.ReportMetric(with[1], "udp64-pps-with")
	b.ReportMetric(with[1]/base[1], "udp64-ratio")
}
