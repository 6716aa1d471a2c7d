package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/testenv"
	"github.com/flowlens/flowlens/lab/traffic"
)

// benchVariant is one way of running the agent that BenchmarkDatapathVariants
// prices: extra flags, and environment the agent starts with.
type benchVariant struct {
	name string
	args []string
	env  []string // KEY=VALUE
}

// parseBenchVariants reads "name=token ...;name=..." where a token starting
// with "-" is an agent flag and any other is KEY=VALUE for the agent's
// environment.
func parseBenchVariants(s string) ([]benchVariant, error) {
	var out []benchVariant
	for part := range strings.SplitSeq(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, rest, ok := strings.Cut(part, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("variant %q: want name=tokens", part)
		}
		v := benchVariant{name: name}
		for _, tok := range strings.Fields(rest) {
			switch {
			case strings.HasPrefix(tok, "-"):
				v.args = append(v.args, tok)
			case strings.Contains(tok, "="):
				v.env = append(v.env, tok)
			default: // a flag's value
				v.args = append(v.args, tok)
			}
		}
		out = append(out, v)
	}
	return out, nil
}

// benchAgentEnv, set in a variant (FLOWLENS_BENCH_AGENT=/path), runs that
// agent binary instead of the one built from this tree: an older build's
// datapath is then priced in the same run as this one's.
const benchAgentEnv = "FLOWLENS_BENCH_AGENT"

// BenchmarkDatapathVariants prices several ways of running the agent against
// no agent in one run (FLOWLENS_BENCH_VARIANTS, see parseBenchVariants): each
// round measures TCP and 64-byte UDP without the agent and with each variant,
// in an order rotated by one every round, and each variant's ratio is to the
// round's own measurement without. It prints each variant's median ratio and
// quartiles, so that variants are compared under the same drift of load, and
// the CPU nanoseconds per packet each variant adds to iperf3's client and
// server (traffic.Run.CPU): on a loaded machine the rates move by ±30 %, that
// cost much less. FLOWLENS_BENCH_PROBE=1 also logs, per measurement, timer
// interrupts, hrtimers, softirqs and freed skbs machine-wide (perf
// tracepoints) and each BPF program's runs and ns/run (bpftool; needs
// kernel.bpf_stats_enabled=1). FLOWLENS_BENCH_PROFILE=1 samples the client's
// CPU during each UDP measurement (bench_profile_test.go) and logs, per
// variant, each BPF program's ns per packet on the real path and that CPU's
// idle share. A variant's FLOWLENS_BENCH_EMPTY=1 and
// FLOWLENS_BENCH_FREEZE=1 (bench_floor_test.go) price the tc hooks alone and
// the agent without its user space, and FLOWLENS_BENCH_NONE=1 measures nothing
// against nothing, the harness's own spread; make bench prices the agent as deployed
// and the empty hooks, the floor any tc observer of the veths pays.
func BenchmarkDatapathVariants(b *testing.B) {
	requireRoot(b)
	testenv.Tool(b, "iperf3", "iperf3")
	spec := os.Getenv("FLOWLENS_BENCH_VARIANTS")
	if spec == "" {
		spec = "agent=;empty-hooks=" + benchEmptyEnv + "=1"
	}
	variants, err := parseBenchVariants(spec)
	if err != nil {
		b.Fatal(err)
	}
	if len(variants) > 15 {
		b.Fatalf("%d variants: at most 15", len(variants))
	}
	rounds := 9
	if s := os.Getenv("FLOWLENS_BENCH_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	l := startLab(b, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	from, to := iperfPods(ctx, b, l)
	// measure returns the rates and the CPU nanoseconds per packet of
	// iperf3's client and server (the datapath's cost, see traffic.Run.CPU).
	probe := os.Getenv("FLOWLENS_BENCH_PROBE") != ""
	profile := os.Getenv(benchProfileEnv) == "1"
	if profile && from.CPUs == "" {
		b.Fatalf("%s=1 samples the iperf3 client's CPU: pin it (FLOWLENS_BENCH_PIN)", benchProfileEnv)
	}
	if _, err := exec.LookPath("perf"); profile && err != nil {
		b.Fatalf("%s=1 needs perf: apt-get install linux-perf", benchProfileEnv)
	}
	// What the last UDP measurement's profile gave (profile).
	var udpIdle float64
	var udpProgs map[string]float64
	runUDP := func() traffic.Run {
		var stop func() cpuProfile
		if profile {
			stop = profileCPU(b, from.CPUs)
		}
		u, err := traffic.Iperf(ctx, from, to, true, 3)
		if err != nil {
			b.Fatal(err)
		}
		if profile {
			udpIdle, udpProgs = stop().perPacket(u.Packets)
		}
		return u
	}
	measure := func() (tcp, udp, tcpCost, udpCost float64) {
		if probe {
			stop := startProbe(b)
			t, err := traffic.Iperf(ctx, from, to, false, 3)
			if err != nil {
				b.Fatal(err)
			}
			b.Logf("  probe tcp %.3g bit/s %.0f pkts: %s", t.Rate, t.Packets, stop())
			stop = startProbe(b)
			u := runUDP()
			b.Logf("  probe udp %.3g pps %.0f pkts: %s", u.Rate, u.Packets, stop())
			return t.Rate, u.Rate, t.CPU / t.Packets * 1e9, u.CPU / u.Packets * 1e9
		}
		t, err := traffic.Iperf(ctx, from, to, false, 3)
		if err != nil {
			b.Fatal(err)
		}
		u := runUDP()
		return t.Rate, u.Rate, t.CPU / t.Packets * 1e9, u.CPU / u.Packets * 1e9
	}
	n := len(variants) + 1 // index 0: without
	tcpRatios := make([][]float64, n)
	udpRatios := make([][]float64, n)
	tcpCosts := make([][]float64, n)
	udpCosts := make([][]float64, n)
	cpu := make([]float64, n)
	wakeups := make([]float64, n) // the agent's timeslices while measured
	measured := make([]float64, n)
	// With profile: the client CPU's idle share in each variant's UDP
	// measurements, and each program's ns per packet.
	idle := make([][]float64, n)
	progs := make([][]map[string]float64, n)
	for round := range rounds {
		var tcp, udp, tcpCost, udpCost [16]float64
		profiled := func(k int) {
			if profile {
				idle[k] = append(idle[k], udpIdle)
				progs[k] = append(progs[k], udpProgs)
			}
		}
		for i := range n {
			k := (i + round) % n
			if probe {
				name := "without"
				if k > 0 {
					name = variants[k-1].name
				}
				b.Logf(" round %d %s", round, name)
			}
			if k == 0 {
				tcp[0], udp[0], tcpCost[0], udpCost[0] = measure()
				profiled(0)
				continue
			}
			v := variants[k-1]
			agentBin := bins.agent
			var empty, freeze, none bool
			for _, kv := range v.env {
				key, val, _ := strings.Cut(kv, "=")
				switch key {
				case benchAgentEnv:
					bins.agent = val
				case benchEmptyEnv:
					empty = val == "1"
				case benchFreezeEnv:
					freeze = val == "1"
				case benchNoneEnv:
					none = val == "1"
				default:
					b.Setenv(key, val)
				}
			}
			if none {
				if len(v.args) > 0 || len(v.env) > 1 {
					b.Fatalf("variant %s: %s=1 runs nothing, so takes nothing else", v.name, benchNoneEnv)
				}
				tcp[k], udp[k], tcpCost[k], udpCost[k] = measure()
				profiled(k)
				continue
			}
			if empty {
				if len(v.args) > 0 || len(v.env) > 1 {
					b.Fatalf("variant %s: %s=1 runs no agent, so takes nothing else", v.name, benchEmptyEnv)
				}
				detach := attachEmpty(b, l.Node("node1").NetNS)
				tcp[k], udp[k], tcpCost[k], udpCost[k] = measure()
				profiled(k)
				detach()
				continue
			}
			a := startAgent(b, l, "node1", append([]string{"--flush-interval", "5s"}, v.args...)...)
			bins.agent = agentBin
			if freeze {
				// Before startAgent's cleanup (cleanups run last first): a
				// stopped agent would never act on its SIGTERM.
				b.Cleanup(func() { _ = a.cmd.Process.Signal(syscall.SIGCONT) })
				if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
					b.Fatalf("stop the agent: %v", err)
				}
			}
			cpu0, runs0 := procSched(b, a.cmd.Process.Pid)
			t0 := time.Now()
			tcp[k], udp[k], tcpCost[k], udpCost[k] = measure()
			profiled(k)
			cpu1, runs1 := procSched(b, a.cmd.Process.Pid)
			cpu[k] += cpu1 - cpu0
			wakeups[k] += runs1 - runs0
			measured[k] += time.Since(t0).Seconds()
			if freeze {
				if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
					b.Fatalf("continue the agent: %v", err)
				}
			}
			a.stop()
			for _, kv := range v.env {
				key, _, _ := strings.Cut(kv, "=")
				os.Unsetenv(key)
			}
		}
		for k := 1; k < n; k++ {
			tcpRatios[k] = append(tcpRatios[k], tcp[k]/tcp[0])
			udpRatios[k] = append(udpRatios[k], udp[k]/udp[0])
			tcpCosts[k] = append(tcpCosts[k], tcpCost[k]-tcpCost[0])
			udpCosts[k] = append(udpCosts[k], udpCost[k]-udpCost[0])
		}
		b.Logf("round %d cost ns/pkt: tcp %.0f udp %.0f without; %s", round, tcpCost[0], udpCost[0], costLine(variants, tcpCost[:n], udpCost[:n]))
		b.Logf("round %d: tcp %.3g udp %.3g without; %s", round, tcp[0], udp[0], roundLine(variants, tcp[:n], udp[:n]))
	}
	if profile {
		b.Logf("%-12s profile udp64: %s", "without", profileSummary(idle[0], byProgram(progs[0])))
	}
	for k := 1; k < n; k++ {
		name := variants[k-1].name
		b.Logf("%-12s tcp %.3f [%.3f-%.3f] %s  udp64 %.3f [%.3f-%.3f] %s  agent %.2f cpu-s, %.0f wake-ups/s", name,
			traffic.Median(tcpRatios[k]), traffic.Quantile(tcpRatios[k], 0.25), traffic.Quantile(tcpRatios[k], 0.75), ci95(tcpRatios[k]),
			traffic.Median(udpRatios[k]), traffic.Quantile(udpRatios[k], 0.25), traffic.Quantile(udpRatios[k], 0.75), ci95(udpRatios[k]),
			cpu[k], wakeups[k]/max(measured[k], 1e-9))
		b.Logf("%-12s added CPU ns/packet (iperf3 client+server): tcp %.0f [%.0f-%.0f]  udp64 %.0f [%.0f-%.0f]", name,
			traffic.Median(tcpCosts[k]), traffic.Quantile(tcpCosts[k], 0.25), traffic.Quantile(tcpCosts[k], 0.75),
			traffic.Median(udpCosts[k]), traffic.Quantile(udpCosts[k], 0.25), traffic.Quantile(udpCosts[k], 0.75))
		if profile {
			b.Logf("%-12s profile udp64: %s", name, profileSummary(idle[k], byProgram(progs[k])))
		}
		b.ReportMetric(traffic.Median(tcpRatios[k]), name+"-tcp-ratio")
		b.ReportMetric(traffic.Median(udpRatios[k]), name+"-udp64-ratio")
	}
}

// ci95 is the 95 % confidence interval of xs's median, for a log line.
func ci95(xs []float64) string {
	lo, hi, _, ok := traffic.MedianCI(xs, 0.95)
	if !ok {
		return "ci95 n/a (under 6 rounds)"
	}
	return fmt.Sprintf("ci95 %.3f-%.3f", lo, hi)
}

func roundLine(vs []benchVariant, tcp, udp []float64) string {
	var sb strings.Builder
	for k := 1; k < len(tcp); k++ {
		fmt.Fprintf(&sb, "%s %.3f/%.3f ", vs[k-1].name, tcp[k]/tcp[0], udp[k]/udp[0])
	}
	return sb.String()
}

func costLine(vs []benchVariant, tcp, udp []float64) string {
	var sb strings.Builder
	for k := 1; k < len(tcp); k++ {
		fmt.Fprintf(&sb, "%s %+.0f/%+.0f ", vs[k-1].name, tcp[k]-tcp[0], udp[k]-udp[0])
	}
	return sb.String()
}

// startProbe counts, machine-wide, the kernel events the datapath's cost may
// hide in (timer interrupts, hrtimers, softirqs, freed skbs: perf's
// tracepoints, no hardware counters needed) and the BPF programs' runs
// (bpftool, with kernel.bpf_stats_enabled) until the returned func, which
// says what it saw.
func startProbe(b *testing.B) func() string {
	b.Helper()
	events := "irq_vectors:local_timer_entry,timer:hrtimer_start,timer:hrtimer_expire_entry,irq:softirq_entry,skb:kfree_skb,skb:consume_skb"
	cmd := exec.Command("perf", "stat", "-a", "-x", ",", "-e", events)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		b.Fatalf("perf: %v", err)
	}
	progs0 := bpfRuns(b)
	return func() string {
		progs1 := bpfRuns(b)
		_ = cmd.Process.Signal(syscall.SIGINT)
		_ = cmd.Wait()
		var sb strings.Builder
		for line := range strings.SplitSeq(errb.String(), "\n") {
			f := strings.Split(line, ",")
			if len(f) > 3 {
				fmt.Fprintf(&sb, "%s=%s ", f[2], f[0])
			}
		}
		for name, r1 := range progs1 {
			r0 := progs0[name]
			if d := r1[0] - r0[0]; d > 0 {
				fmt.Fprintf(&sb, "%s=%d runs %.0f ns/run ", name, d, float64(r1[1]-r0[1])/float64(d))
			}
		}
		return sb.String()
	}
}

// bpfRuns is run_cnt and run_time_ns of each loaded program by name, summed.
func bpfRuns(b *testing.B) map[string][2]int64 {
	b.Helper()
	out, err := exec.Command("bpftool", "prog", "show", "--json").Output()
	if err != nil {
		b.Fatalf("bpftool: %v", err)
	}
	var progs []struct {
		Name    string `json:"name"`
		RunCnt  int64  `json:"run_cnt"`
		RunTime int64  `json:"run_time_ns"`
	}
	if err := json.Unmarshal(out, &progs); err != nil {
		b.Fatalf("bpftool json: %v", err)
	}
	m := map[string][2]int64{}
	for _, p := range progs {
		r := m[p.Name]
		m[p.Name] = [2]int64{r[0] + p.RunCnt, r[1] + p.RunTime}
	}
	return m
}
