package e2e

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/flowlens/flowlens/lab/traffic"
)

// benchProfileEnv=1 makes BenchmarkDatapathVariants sample the iperf3
// client's CPU during every 64-byte UDP measurement (perf record, the
// cpu-clock software event: a VM may have no hardware counters). Pinned, that
// CPU sends and also runs the whole veth path in its softirqs, saturated:
// what it spends per packet is what the rate follows. Sampling prices each
// BPF program's time per packet on that path without
// kernel.bpf_stats_enabled, whose own cost is larger than theirs, and the
// idle share shows the CPU was saturated.
const benchProfileEnv = "FLOWLENS_BENCH_PROFILE"

// profilePeriodNs is the sampling period: one sample per millisecond of the
// CPU's time, busy or idle, 3,000 over a 3 s measurement. Each sample is a
// timer interrupt, on a VM an exit to the hypervisor: at 10 kHz they cut the
// 64-byte UDP rate by a third.
const profilePeriodNs = 1_000_000

// cpuProfile is what the samples of one CPU showed.
type cpuProfile struct {
	samples int
	idle    int            // samples in the idle loop
	progs   map[string]int // samples inside each BPF program, by its name
}

// perPacket is each program's ns per packet sent, and the share of the
// samples the CPU was idle.
func (p cpuProfile) perPacket(packets float64) (idle float64, progs map[string]float64) {
	progs = map[string]float64{}
	if p.samples == 0 || packets <= 0 {
		return 0, progs
	}
	for name, n := range p.progs {
		progs[name] = float64(n) * profilePeriodNs / packets
	}
	return float64(p.idle) / float64(p.samples), progs
}

// profileCPU samples the stacks of cpus (a perf CPU list) until the returned
// func, which reads the samples.
func profileCPU(b *testing.B, cpus string) func() cpuProfile {
	b.Helper()
	out := filepath.Join(b.TempDir(), "perf.data")
	rec := exec.Command("perf", "record", "--quiet", "-e", "cpu-clock", "-c", fmt.Sprint(profilePeriodNs), "-C", cpus, "-g", "-o", out)
	var errb strings.Builder
	rec.Stderr = &errb
	if err := rec.Start(); err != nil {
		b.Fatalf("perf record: %v", err)
	}
	return func() cpuProfile {
		_ = rec.Process.Signal(syscall.SIGINT)
		// perf writes its data on SIGINT, then dies of it (it re-raises).
		err := rec.Wait()
		if ws, ok := rec.ProcessState.Sys().(syscall.WaitStatus); err != nil && !(ok && ws.Signaled() && ws.Signal() == syscall.SIGINT) {
			b.Fatalf("perf record: %v: %s", err, errb.String())
		}
		script := exec.Command("perf", "script", "-i", out, "-F", "ip,sym")
		stdout, err := script.StdoutPipe()
		if err != nil {
			b.Fatalf("perf script: %v", err)
		}
		if err := script.Start(); err != nil {
			b.Fatalf("perf script: %v", err)
		}
		p, perr := parsePerfScript(stdout)
		if err := script.Wait(); err != nil || perr != nil {
			b.Fatalf("perf script: %v %v", err, perr)
		}
		if p.samples == 0 {
			b.Fatalf("perf recorded no samples on CPU %s", cpus)
		}
		return p
	}
}

// parsePerfScript counts the samples of `perf script -F ip,sym`: each a
// stack, innermost frame first, one "address symbol" line a frame, samples
// separated by blank lines. A sample is charged to the outermost BPF program
// on its stack (a subprogram or a helper it calls is the program's cost).
func parsePerfScript(r io.Reader) (cpuProfile, error) {
	p := cpuProfile{progs: map[string]int{}}
	var frames []string
	end := func() {
		if len(frames) == 0 {
			return
		}
		p.samples++
		if slices.Contains(frames, "do_idle") {
			p.idle++
		}
		for _, f := range slices.Backward(frames) {
			if name, ok := bpfProgName(f); ok {
				p.progs[name]++
				break
			}
		}
		frames = frames[:0]
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			end()
			continue
		}
		if len(fields) >= 2 {
			frames = append(frames, fields[1])
		}
	}
	end()
	if err := sc.Err(); err != nil {
		return p, fmt.Errorf("read perf script: %w", err)
	}
	return p, nil
}

// bpfProgName is the program's name in a JITed program's kernel symbol,
// bpf_prog_<tag>_<name>, the tag 16 hex digits (kernel functions such as
// bpf_prog_run_generic_xdp share the prefix).
func bpfProgName(sym string) (string, bool) {
	rest, ok := strings.CutPrefix(sym, "bpf_prog_")
	if !ok {
		return "", false
	}
	tag, name, ok := strings.Cut(rest, "_")
	if !ok || name == "" || len(tag) != 16 || strings.Trim(tag, "0123456789abcdef") != "" {
		return "", false
	}
	return name, true
}

// profileSummary is a variant's profile over its rounds, for a log line:
// medians of the client CPU's idle share and of each program's ns per
// packet, and their sum.
func profileSummary(idle []float64, progs map[string][]float64) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "client CPU idle %.1f %%", 100*traffic.Median(idle))
	names := slices.Sorted(maps.Keys(progs))
	var total float64
	for _, n := range names {
		total += traffic.Median(progs[n])
	}
	fmt.Fprintf(&sb, "; in BPF programs %.1f ns/packet", total)
	for i, n := range names {
		sep := ", "
		if i == 0 {
			sep = ": "
		}
		fmt.Fprintf(&sb, "%s%s %.1f", sep, n, traffic.Median(progs[n]))
	}
	return sb.String()
}

// byProgram turns rounds' ns per packet by program into each program's
// rounds, 0 for a round whose samples never caught it.
func byProgram(rounds []map[string]float64) map[string][]float64 {
	out := map[string][]float64{}
	for _, r := range rounds {
		for name := range r {
			out[name] = nil
		}
	}
	for _, r := range rounds {
		for name := range out {
			out[name] = append(out[name], r[name])
		}
	}
	return out
}
