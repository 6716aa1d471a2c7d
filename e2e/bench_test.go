package e2e

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/testenv"
	"github.com/flowlens/flowlens/lab/scenario"
	"github.com/flowlens/flowlens/lab/traffic"
)

// BenchmarkDatapath is issue 2's overhead figure: iperf3 TCP throughput and
// 64-byte UDP packets per second between two pods of the lab (through the
// bridge, br_netfilter and kube-router-shaped rules), with the real agent
// attached as a ratio to without (the lab's harness, lab/traffic, which
// aggregate's BenchmarkDatapathOverhead shares); and the agent's CPU seconds per
// million packets. It runs once, whatever b.N is.
func BenchmarkDatapath(b *testing.B) {
	requireRoot(b)
	testenv.Tool(b, "iperf3", "iperf3")
	l := startLab(b, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	from, to := iperfPods(ctx, b, l)
	// Nine pairs: on this shared VM a pair's ratio moves by several percent,
	// more than the goals' 2-3 %; the median of nine and its quartiles
	// (reported) tell an effect from that.
	rounds := 9
	if s := os.Getenv("FLOWLENS_BENCH_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	// FLOWLENS_BENCH_AGENT_ARGS adds agent flags, e.g. "--accepted-mode
	// inference" to price the netfilter link.
	extra := strings.Fields(os.Getenv("FLOWLENS_BENCH_AGENT_ARGS"))
	// CPU seconds and wake-ups while measured, and how long that was;
	// peak resident set, MB.
	var agentCPU, agentRuns, measured, rss float64
	attach := func() (func() error, error) {
		a := startAgent(b, l, "node1", append([]string{"--flush-interval", "5s"}, extra...)...)
		cpu0, runs0 := procSched(b, a.cmd.Process.Pid)
		t0 := time.Now()
		return func() error {
			cpu, runs := procSched(b, a.cmd.Process.Pid)
			agentCPU += cpu - cpu0
			agentRuns += runs - runs0
			measured += time.Since(t0).Seconds()
			rss = max(rss, readProcMem(b, a.cmd.Process.Pid).hwm)
			a.stop()
			return nil
		}, nil
	}
	f, err := traffic.Overhead{From: from, To: to, Rounds: rounds, Seconds: 3, Attach: attach}.Run(ctx)
	if err != nil {
		b.Fatal(err)
	}
	// Each pair's ratios, so that runs can be pooled into one interval.
	for i := range f.TCPRatios {
		b.Logf("pair %d: tcp %.4f udp64 %.4f", i, f.TCPRatios[i], f.UDPRatios[i])
	}
	f.Report(b)
	if f.PacketsWith > 0 {
		b.ReportMetric(agentCPU/(f.PacketsWith/1e6), "agent-cpu-s/Mpkt")
	}
	if measured > 0 {
		// On a 2-CPU VM each wake-up preempts the traffic it measures.
		b.ReportMetric(agentRuns/measured, "agent-wakeups/s")
	}
	b.ReportMetric(rss, "agent-peak-rss-MB")
}

// iperfPods adds the two pods iperf3 runs between on node1: pods no policy
// rule targets (the lab writes rules from each pod's TargetOf list, left
// empty here), as iperf3's control connection and its UDP data share a
// port, which the scenario's policies would split.
func iperfPods(ctx context.Context, b *testing.B, l *testLab) (from, to traffic.Endpoint) {
	b.Helper()
	var ends [2]traffic.Endpoint
	for i := range ends {
		p, err := l.AddPod(ctx, scenario.PodSpec{Namespace: "other", Name: fmt.Sprintf("iperf-%d", i), Node: 1, Labels: map[string]string{"app": "iperf"}})
		if err != nil {
			b.Fatal(err)
		}
		ends[i] = traffic.Endpoint{NetNS: p.NetNS, IP: p.IP}
	}
	// The two ends run pinned to CPUs 0 and 1: left to the scheduler, on a
	// machine of 2 CPUs, where they and the softirqs land moves the rates
	// by more than the datapath does (runs come out bimodal).
	// FLOWLENS_BENCH_PIN=client-cpus,server-cpus (taskset lists) picks
	// others, =none unpins.
	pin := os.Getenv("FLOWLENS_BENCH_PIN")
	if pin == "" && runtime.NumCPU() >= 2 {
		pin = "0,1"
	}
	if pin != "" && pin != "none" {
		c, s, ok := strings.Cut(pin, ",")
		if !ok || c == "" || s == "" {
			b.Fatalf("FLOWLENS_BENCH_PIN=%q: want client-cpus,server-cpus or none", pin)
		}
		ends[0].CPUs, ends[1].CPUs = c, s
	}
	b.Logf("iperf3 CPUs (FLOWLENS_BENCH_PIN; empty: unpinned): client %q, server %q", ends[0].CPUs, ends[1].CPUs)
	return ends[0], ends[1]
}

// procCPU is a process's CPU seconds, summed over its threads from
// schedstat (nanosecond resolution: the agent's user-space work between
// flushes is far below the 10 ms ticks of /proc/PID/stat).
func procCPU(b *testing.B, pid int) float64 {
	cpu, _ := procSched(b, pid)
	return cpu
}

// procSched is procCPU and how many times the process's threads were put
// on a CPU (schedstat's timeslices): about its wake-ups.
func procSched(b *testing.B, pid int) (cpu, runs float64) {
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
		if f := strings.Fields(string(raw)); len(f) == 3 {
			v, _ := strconv.ParseFloat(f[0], 64)
			n, _ := strconv.ParseFloat(f[2], 64)
			ns += v
			runs += n
		}
	}
	return ns / 1e9, runs
}
