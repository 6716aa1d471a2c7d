package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowlens/flowlens/lab/scenario"
)

// BenchmarkDatapath is issue 2's overhead figure: iperf3 TCP throughput and
// 64-byte UDP packets per second between two pods of the lab (through the
// bridge, br_netfilter and kube-router-shaped rules), with the real agent
// attached as a ratio to without, interleaved round by round so the noisy
// shared machine affects both sides alike; and the agent's CPU seconds per
// million packets. It runs once, whatever b.N is.
func BenchmarkDatapath(b *testing.B) {
	requireRoot(b)
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Skip("iperf3 not installed (make deps)")
	}
	l := startLab(b, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// Two pods no policy rule targets (the lab writes rules from each pod's
	// TargetOf list, left empty here): iperf3's control
	// connection and its UDP data share a port, which the scenario's
	// policies would split.
	var pods [2]*scenario.Pod
	for i := range pods {
		p, err := l.AddPod(ctx, scenario.PodSpec{Namespace: "other", Name: fmt.Sprintf("iperf-%d", i), Node: 1, Labels: map[string]string{"app": "iperf"}})
		if err != nil {
			b.Fatal(err)
		}
		pods[i] = p
	}
	rounds := 3
	if s := os.Getenv("FLOWLENS_BENCH_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	// FLOWLENS_BENCH_AGENT_ARGS adds agent flags, e.g. "--accepted-mode
	// inference" to price the netfilter link.
	extra := strings.Fields(os.Getenv("FLOWLENS_BENCH_AGENT_ARGS"))
	var (
		tcp, udp          [2]float64 // [without, with] sums
		agentCPU, packets float64
		rss               float64 // the agent's peak resident set, MB
	)
	for r := 0; r < rounds; r++ {
		tcp[0] += iperf(b, pods, false).rate
		udp[0] += iperf(b, pods, true).rate

		a := startAgent(b, l, "node1", append([]string{"--flush-interval", "5s"}, extra...)...)
		cpu0 := procCPU(b, a.cmd.Process.Pid)
		t := iperf(b, pods, false)
		u := iperf(b, pods, true)
		cpu1 := procCPU(b, a.cmd.Process.Pid)
		rss = max(rss, peakRSS(b, a.cmd.Process.Pid))
		a.stop()
		tcp[1] += t.rate
		udp[1] += u.rate
		agentCPU += cpu1 - cpu0
		packets += t.packets + u.packets
	}
	n := float64(rounds)
	b.ReportMetric(tcp[0]/n/1e9, "tcp-Gbit/s-without")
	b.ReportMetric(tcp[1]/n/1e9, "tcp-Gbit/s-with")
	b.ReportMetric(tcp[1]/tcp[0], "tcp-ratio")
	b.ReportMetric(udp[0]/n, "udp64-pps-without")
	b.ReportMetric(udp[1]/n, "udp64-pps-with")
	b.ReportMetric(udp[1]/udp[0], "udp64-ratio")
	if packets > 0 {
		b.ReportMetric(agentCPU/(packets/1e6), "agent-cpu-s/Mpkt")
	}
	b.ReportMetric(rss, "agent-peak-rss-MB")
}

type iperfRun struct {
	rate    float64 // TCP bits/s or UDP received packets/s
	packets float64 // packets the client sent (UDP) or an estimate from bytes (TCP, 1448-byte segments)
}

// iperf runs one 3-second iperf3 measurement from pods[0] to pods[1].
func iperf(b *testing.B, pods [2]*scenario.Pod, udp bool) iperfRun {
	b.Helper()
	srv := exec.Command("ip", "netns", "exec", pods[1].NetNS, "iperf3", "-s", "-1", "-p", "5201", "-B", pods[1].IP.String())
	if err := srv.Start(); err != nil {
		b.Fatalf("start iperf3 server: %v", err)
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	args := []string{"netns", "exec", pods[0].NetNS, "iperf3", "-c", pods[1].IP.String(), "-p", "5201", "-t", "3", "-J"}
	if udp {
		args = append(args, "-u", "-l", "64", "-b", "0")
	}
	var r struct {
		Error string `json:"error"`
		End   struct {
			Sum struct {
				Packets     float64 `json:"packets"`
				LostPackets float64 `json:"lost_packets"`
				Seconds     float64 `json:"seconds"`
			} `json:"sum"`
			SumSent struct {
				Bytes float64 `json:"bytes"`
			} `json:"sum_sent"`
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	// The server needs a moment to listen; iperf3 reports that (and any
	// other failure) in its JSON, not always in its exit code.
	for try := 0; ; try++ {
		out, err := exec.Command("ip", args...).Output()
		r.Error = ""
		if jerr := json.Unmarshal(out, &r); jerr != nil && err == nil {
			err = jerr
		}
		if err == nil && r.Error == "" {
			break
		}
		if try == 30 {
			b.Fatalf("iperf3 client: %v %s\n%s", err, r.Error, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if udp {
		return iperfRun{rate: (r.End.Sum.Packets - r.End.Sum.LostPackets) / r.End.Sum.Seconds, packets: r.End.Sum.Packets}
	}
	return iperfRun{rate: r.End.SumReceived.BitsPerSecond, packets: r.End.SumSent.Bytes / 1448}
}

// procCPU is a process's CPU seconds, summed over its threads from
// schedstat (nanosecond resolution: the agent's user-space work between
// flushes is far below the 10 ms ticks of /proc/PID/stat).
func procCPU(b *testing.B, pid int) float64 {
	b.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		b.Fatalf("read agent threads: %v", err)
	}
	var ns float64
	for _, t := range tasks {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue // the thread exited
		}
		if f := strings.Fields(string(raw)); len(f) > 0 {
			v, _ := strconv.ParseFloat(f[0], 64)
			ns += v
		}
	}
	return ns / 1e9
}

// peakRSS is a process's peak resident set (VmHWM) in MB.
func peakRSS(b *testing.B, pid int) float64 {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatalf("read agent status: %v", err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}
