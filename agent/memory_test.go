package agent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
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
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/flowlens/flowlens/agent/observer"
	"github.com/flowlens/flowlens/aggregate"
	"github.com/flowlens/flowlens/bpf"
)

// The node the memory benchmark sizes the DaemonSet for (issue 9).
const (
	memPods       = 5000
	memNamespaces = 50
	memPolicies   = 1000
	memFlows      = 65536 // the kernel table's and the ring's default size
)

func memPodIP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 42, byte(i / 250), byte(i%250 + 2)})
}

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
// GOMEMLIMIT and GOGC in the environment apply as they do to the agent
// (the DaemonSet sets them). Run with -benchtime=1x.
func BenchmarkAgentMemory(b *testing.B) {
	for b.Loop() {
		dir := b.TempDir()
		file, policies := filepath.Join(dir, "cluster.yaml"), filepath.Join(dir, "policies.yaml")
		cluster, pols := memCluster(b)
		require.NoError(b, os.WriteFile(file, cluster, 0o600))
		require.NoError(b, os.WriteFile(policies, pols, 0o600))
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
		kernel := newFullTable()
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

// memCluster is the cluster file: namespaces, pods shaped like a
// Deployment's (labels, owner, ports) and per namespace a default deny plus
// allow rules selecting apps by label from other namespaces' teams.
func memCluster(b *testing.B) (cluster, policies []byte) {
	var out, pols bytes.Buffer
	add := func(o any) {
		raw, err := yaml.Marshal(o)
		require.NoError(b, err)
		to := &out
		if _, ok := o.(*networkingv1.NetworkPolicy); ok {
			to = &pols
		}
		to.WriteString("---\n")
		to.Write(raw)
	}
	for n := range memNamespaces {
		add(&corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("ns-%d", n), Labels: map[string]string{"kubernetes.io/metadata.name": fmt.Sprintf("ns-%d", n), "team": fmt.Sprintf("t%d", n%7)}}})
	}
	for i := range memPods {
		app := fmt.Sprintf("app-%d", i/5)
		add(&corev1.Pod{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("ns-%d", i/5%memNamespaces), Name: fmt.Sprintf("%s-5d8f-%05d", app, i),
				Labels:          map[string]string{"app.kubernetes.io/name": app, "app.kubernetes.io/instance": app, "pod-template-hash": "5d8f", "tier": "web"},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: app + "-5d8f", Controller: ptr(true)}}},
			Spec: corev1.PodSpec{NodeName: fmt.Sprintf("node-%d", i%5), Containers: []corev1.Container{{Name: "c",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: memPodIP(i).String(), PodIPs: []corev1.PodIP{{IP: memPodIP(i).String()}}},
		})
	}
	for p := range memPolicies {
		ns := fmt.Sprintf("ns-%d", p%memNamespaces)
		np := &networkingv1.NetworkPolicy{TypeMeta: metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("allow-%d", p)}}
		if p < memNamespaces {
			np.Name = "default-deny"
			np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
		} else {
			port := intstr.FromString("http")
			np.Spec.PodSelector.MatchLabels = map[string]string{"app.kubernetes.io/name": fmt.Sprintf("app-%d", p)}
			np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": fmt.Sprintf("t%d", p%7)}},
					PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "web"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Port: &port}},
			}}
			np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.42.0.0/16"}}}}}
		}
		add(np)
	}
	return out.Bytes(), pols.Bytes()
}

func ptr[T any](v T) *T { return &v }

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
		t.keys[i] = bpf.FlowKey{Saddr: memPodIP(i % memPods).As16(), Daddr: memPodIP((i*7 + 1) % memPods).As16(),
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
