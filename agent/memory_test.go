package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/flowlens/flowlens/agent/observer"
	"github.com/flowlens/flowlens/aggregate"
	"github.com/flowlens/flowlens/bpf"
	"github.com/flowlens/flowlens/deploy"
	"github.com/flowlens/flowlens/lab/scenario"
)

// The node the memory benchmark sizes the DaemonSet for (issue 9).
const (
	memPods       = 5000
	memNamespaces = 50
	memPolicies   = 1000
	memFlows      = 65536 // the kernel table's and the ring's default size
)

// memNode is the cluster the memory benchmark holds, the same the e2e
// BenchmarkAgentRSS feeds the agent binary.
var memNode = scenario.Synthetic{Pods: memPods, Namespaces: memNamespaces, Policies: memPolicies, Base: netip.MustParseAddr("10.42.0.0")}

// BenchmarkAgentMemory builds the whole agent-side state the DaemonSet's
// memory must hold, through build as New does: 5,000 pods and 1,000
// NetworkPolicies (a --cluster-file: the static source holds the objects
// as the informers would), the intended set compiled, a full 65,536-entry
// kernel flow table read by the real aggregation (its per-flow state and
// the records of each flush) and a full 65,536-flow ring. It prints the
// live heap the agent added (after forced GCs) and then, with the GC left
// to itself, the process's highest resident set over two flush intervals,
// split into RssAnon and RssFile, and the GC's CPU meanwhile; the test
// binary's own baseline is in the resident set, as the agent binary's is.
// The DaemonSet's GOMEMLIMIT applies, as it does to the agent, unless
// GOMEMLIMIT is set in the environment. Run with -benchtime=1x.
func BenchmarkAgentMemory(b *testing.B) {
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		c, err := deploy.AgentContainer()
		require.NoError(b, err)
		limit, err := deploy.GoMemLimit(c)
		require.NoError(b, err)
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(limit))
	}
	for b.Loop() {
		dir := b.TempDir()
		file, policies := filepath.Join(dir, "cluster.yaml"), filepath.Join(dir, "policies.yaml")
		cluster, pols, err := memNode.YAML()
		require.NoError(b, err)
		require.NoError(b, os.WriteFile(file, cluster, 0o600))
		require.NoError(b, os.WriteFile(policies, pols, 0o600))
		// The stand-in for the kernel's table is kernel memory in the agent.
		kernel := newFullTable()
		before := liveHeap()
		// The binary's pages the test binary touched before any state.
		baseFile := procStatus(b, "RssFile:")

		ctx, cancel := context.WithCancel(context.Background())
		cfg := DefaultConfig()
		cfg.NodeName = "node-0"
		cfg.ClusterFile = file
		cfg.Policies = policies
		cfg.MetricsAddress = ""
		cfg.GRPCAddress = "127.0.0.1:0"
		cfg.FlowLog = []string{"-"}
		in, err := parseInputs(cfg)
		require.NoError(b, err)
		src, err := aggregate.New(kernel, nil, prometheus.NewRegistry())
		require.NoError(b, err)
		a, err := build(ctx, cfg, in, slog.New(slog.DiscardHandler), io.Discard, prometheus.NewRegistry(), src, nil)
		require.NoError(b, err)
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()

		ring := a.deps.ring.(*observer.Ring)
		want := fmt.Sprintf("ok: %d policies, %d pods", memPolicies, memPods)
		deadline := time.Now().Add(5 * time.Minute)
		for {
			_, st := a.deps.policy.State()
			if st == want && ring.Len() == ring.Capacity() && kernel.flushes.Load() >= 2 {
				break
			}
			require.True(b, time.Now().Before(deadline), "state %q, ring %d/%d", st, ring.Len(), ring.Capacity())
			time.Sleep(100 * time.Millisecond)
		}
		// Records of a flush are in flight for part of each interval:
		// sample the live heap over two intervals and keep the highest.
		var after, low uint64 = 0, ^uint64(0)
		for end := time.Now().Add(2 * bpf.DefaultFlushInterval); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
			h := liveHeap()
			after, low = max(after, h), min(low, h)
		}
		// FLOWLENS_HEAP_PROFILE=file writes what holds the heap here.
		if path := os.Getenv("FLOWLENS_HEAP_PROFILE"); path != "" {
			f, err := os.Create(path)
			require.NoError(b, err)
			require.NoError(b, pprof.WriteHeapProfile(f))
			require.NoError(b, f.Close())
		}
		// The resident set as the agent runs, without the forced GCs above:
		// the highest over two more intervals, with the GC's own work then.
		rss := steadyRSS(b, 2*bpf.DefaultFlushInterval)
		hwm := procStatus(b, "VmHWM:")
		mib := func(v uint64) float64 { return float64(v) / (1 << 20) }
		b.ReportMetric(mib(after-before), "agent-heap-MiB")
		b.ReportMetric(mib(low-before), "agent-heap-low-MiB")
		b.ReportMetric(rss.rss, "rss-MiB")
		b.ReportMetric(hwm, "peak-rss-MiB")
		b.ReportMetric(rss.anon, "rss-anon-MiB")
		b.ReportMetric(rss.file, "rss-file-MiB")
		b.ReportMetric(rss.gcCores, "gc-cores")
		b.Logf("%d pods, %d policies, %d-entry table, ring %d/%d: agent heap %.1f MiB (%.1f between flushes), baseline %.1f MiB; "+
			"VmRSS %.1f MiB (RssAnon %.1f, RssFile %.1f; %.1f before the state), VmHWM %.1f MiB since start; GC %d cycles in %s using %.3f cores",
			memPods, memPolicies, memFlows, ring.Len(), ring.Capacity(), mib(after-before), mib(low-before), mib(before),
			rss.rss, rss.anon, rss.file, baseFile, hwm, rss.gcCycles, rss.window, rss.gcCores)
		cancel()
		require.NoError(b, <-done)
	}
}

// liveHeap is the heap the last GC found live. HeapAlloc right after a GC
// would also count what the busy pipeline allocated during the cycle.
func liveHeap() uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// rssSample is the resident set at its highest over a window: the heap
// and runtime (RssAnon) and the pages of the binary touched (RssFile, which
// does not grow with the cluster), with what the GC did meanwhile.
type rssSample struct {
	rss, anon, file float64 // MiB
	window          time.Duration
	gcCycles        uint64
	gcCores         float64 // GC CPU seconds per second
}

func steadyRSS(b *testing.B, window time.Duration) rssSample {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}, {Name: "/cpu/classes/gc/total:cpu-seconds"}}
	metrics.Read(s)
	cycles, gcCPU := s[0].Value.Uint64(), s[1].Value.Float64()
	out := rssSample{window: window}
	for end := time.Now().Add(window); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if rss := procStatus(b, "VmRSS:"); rss > out.rss {
			out.rss, out.anon, out.file = rss, procStatus(b, "RssAnon:"), procStatus(b, "RssFile:")
		}
	}
	metrics.Read(s)
	out.gcCycles = s[0].Value.Uint64() - cycles
	out.gcCores = (s[1].Value.Float64() - gcCPU) / window.Seconds()
	return out
}

// procStatus is a /proc/self/status figure in MiB.
func procStatus(b *testing.B, field string) float64 {
	raw, err := os.ReadFile("/proc/self/status")
	require.NoError(b, err)
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field {
			kb, err := strconv.ParseFloat(f[1], 64)
			require.NoError(b, err)
			return kb / 1024
		}
	}
	b.Fatalf("%s not in /proc/self/status", field)
	return 0
}

// bytesOf is the memory of a generated struct, laid out as the kernel's.
func bytesOf[T bpf.FlowKey | bpf.FlowStats](v *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(v)), unsafe.Sizeof(*v))
}

// fullTable is a kernel whose flow table holds memFlows TCP flows between
// the pods, each with new packets at every read, so every flush reports
// them all.
type fullTable struct {
	keys    []bpf.FlowKey
	flushes atomic.Int64
}

func newFullTable() *fullTable {
	t := &fullTable{keys: make([]bpf.FlowKey, memFlows)}
	for i := range t.keys {
		t.keys[i] = bpf.FlowKey{Saddr: memNode.PodIP(i % memPods).As16(), Daddr: memNode.PodIP((i*7 + 1) % memPods).As16(),
			Sport: uint16(i), Dport: 8080, Proto: 6, Family: 4}
	}
	return t
}

func (t *fullTable) stats() bpf.FlowStats {
	n := uint64(t.flushes.Load()+1) * 10
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	now := uint64(ts.Nano())
	return bpf.FlowStats{FirstNs: now - uint64(time.Second), LastNs: now, Pkts: n, Bytes: n * 100, FwdPkts: n, FwdBytes: n * 100,
		Ifindex: 3, Obs: bpf.ObsFromPod, TcpFlags: 0x12}
}

func (t *fullTable) IterateFlows(fn func(key, val []byte)) error {
	st := t.stats()
	for i := range t.keys {
		fn(bytesOf(&t.keys[i]), bytesOf(&st))
	}
	t.flushes.Add(1)
	return nil
}

func (t *fullTable) LookupFlow(key *bpf.FlowKey, st *bpf.FlowStats) error {
	*st = t.stats()
	return nil
}
func (t *fullTable) DeleteFlows([]bpf.FlowKey) error   { return nil }
func (t *fullTable) Counters() (uint64, uint64, error) { return memFlows, 0, nil }
func (t *fullTable) DropReason(uint32) string          { return "NETFILTER_DROP" }
func (t *fullTable) InterfaceName(uint32) string       { return "veth0123abcd" }
func (t *fullTable) Inference() bool                   { return false }
func (t *fullTable) Status() map[string]string         { return map[string]string{"veth": "tcx"} }
func (t *fullTable) Config() bpf.Config {
	return bpf.Config{NodeName: "node-0", FlushInterval: bpf.DefaultFlushInterval, IdleTimeout: time.Hour}
}
func (t *fullTable) Watch(ctx context.Context, _ chan<- bpf.DropEvent) error {
	<-ctx.Done()
	return nil
}
