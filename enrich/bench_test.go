package enrich

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"github.com/flowlens/flowlens/kubeapi/kubeapitest"
	"github.com/flowlens/flowlens/manifest"
)

const (
	benchPods     = 5000
	benchServices = 1000
	benchNS       = 50
)

func benchIP(i int) string { return fmt.Sprintf("10.42.%d.%d", i/250, i%250+2) }

// benchCluster is a 5,000-pod, 1,000-service cluster with pods shaped like
// real ones: labels, annotations, managedFields-sized metadata, two
// containers with env and ports, all of which the transform must drop.
func benchCluster() []k8sruntime.Object {
	var objs []k8sruntime.Object
	for n := range benchNS {
		objs = append(objs, namespace(fmt.Sprintf("ns-%d", n), "team", fmt.Sprintf("t%d", n%7)))
	}
	for i := range benchServices {
		ns := fmt.Sprintf("ns-%d", i%benchNS)
		name := fmt.Sprintf("app-%d", i)
		objs = append(objs,
			service(ns, name, fmt.Sprintf("10.43.%d.%d", i/250, i%250+2), corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}),
			&appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-5d8f", OwnerReferences: []metav1.OwnerReference{controllerRef("Deployment", name)}}})
		var addrs []string
		for j := range benchPods / benchServices {
			addrs = append(addrs, benchIP(i*(benchPods/benchServices)+j))
		}
		objs = append(objs, slice(ns, name+"-abc", name, 8080, "http", addrs...))
	}
	for i := range benchPods {
		app := i / (benchPods / benchServices)
		ns := fmt.Sprintf("ns-%d", app%benchNS)
		name := fmt.Sprintf("app-%d", app)
		p := pod(ns, fmt.Sprintf("%s-5d8f-%05d", name, i), []string{benchIP(i)},
			labels("app.kubernetes.io/name", name, "app.kubernetes.io/instance", name, "pod-template-hash", "5d8f", "tier", "web"),
			ownedBy("ReplicaSet", name+"-5d8f"), onNode(fmt.Sprintf("node-%d", i%5)))
		p.Annotations = map[string]string{"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z", "prometheus.io/scrape": "true",
			"checksum/config": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
		p.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate,
			FieldsV1: &metav1.FieldsV1{Raw: make([]byte, 2048)}}}
		for c := range 2 {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{
				Name: fmt.Sprintf("c%d", c), Image: "registry.example/app:1.2.3",
				Env:   []corev1.EnvVar{{Name: "A", Value: "1"}, {Name: "B", Value: "2"}, {Name: "C", Value: "3"}},
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
			})
		}
		objs = append(objs, p)
	}
	return objs
}

// writeHeapProfile writes what holds the heap to $FLOWLENS_HEAP_PROFILE
// when it is set (run with -memprofilerate=1 for every allocation).
func writeHeapProfile(b *testing.B) {
	path := os.Getenv("FLOWLENS_HEAP_PROFILE")
	if path == "" {
		return
	}
	f, err := os.Create(path)
	require.NoError(b, err)
	require.NoError(b, pprof.WriteHeapProfile(f))
	require.NoError(b, f.Close())
}

func heapInUse() uint64 {
	var m runtime.MemStats
	for range 3 {
		runtime.GC()
	}
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkMemoryPerPod measures what the informers (slimmed objects) and
// the index hold for 5,000 pods and 1,000 services. Run with -benchtime=1x.
func BenchmarkMemoryPerPod(b *testing.B) {
	objs := benchCluster()
	for b.Loop() {
		cs := kubeapitest.New(objs...)
		before := heapInUse()
		ctx, cancel := context.WithCancel(context.Background())
		k, err := NewKube(ctx, NewAPI(cs), Config{NodeName: "node-0"}, slog.New(slog.DiscardHandler), nil)
		require.NoError(b, err)
		wctx, wcancel := context.WithTimeout(ctx, time.Minute)
		require.True(b, k.WaitForSync(wctx))
		wcancel()
		require.Equal(b, benchPods, k.Status().Pods)
		after := heapInUse()
		writeHeapProfile(b)
		b.ReportMetric(float64(after-before)/benchPods, "bytes/pod")
		b.ReportMetric(float64(after-before)/(1<<20), "MiB")
		b.Logf("%d pods, %d services: %d bytes held, %.0f bytes per pod (services amortized)",
			benchPods, benchServices, after-before, float64(after-before)/benchPods)
		runtime.KeepAlive(cs)
		runtime.KeepAlive(k)
		cancel()
	}
}

func benchStatic(b *testing.B) *index {
	named, err := ParseNamedCIDRs([]string{"proxmox=10.0.1.10/32", "minio=10.0.40.10/32", "lan=192.168.0.0/16", "v6=fd00::/8"})
	require.NoError(b, err)
	ix := newIndex(Config{NodeName: "node-0", NamedCIDRs: named, ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.42.0.0/16")}})
	now := time.Now()
	for _, o := range benchCluster() {
		switch o := o.(type) {
		case *corev1.Namespace:
			ix.upsertNamespace(slimNamespace(o))
		case *corev1.Pod:
			ix.upsertPod(ix.podInfo(o), now)
		case *corev1.Service:
			ix.upsertService(newServiceInfo(o))
		}
	}
	ix.upsertNode(slimNode(node("node-0", "192.168.1.10", "10.42.0.0/24")))
	return ix
}

func BenchmarkLookup(b *testing.B) {
	ix := benchStatic(b)
	now := time.Now()
	for _, bc := range []struct{ name, ip string }{
		{"pod", benchIP(1234)},
		{"host", "192.168.1.10"},
		{"service", "10.43.1.2"},
		{"named-cidr", "192.168.7.7"},
		{"world", "8.8.8.8"},
		{"world-v6", "2001:db8::1"},
	} {
		ip := addr(bc.ip)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				id := ix.Lookup(ip, now)
				_ = id.Endpoint()
			}
		})
	}
	ips := make([]netip.Addr, benchPods)
	for i := range ips {
		ips[i] = addr(benchIP(i))
	}
	b.Run("pod-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				_ = ix.Lookup(ips[i%benchPods], now)
				i++
			}
		})
	})
}

func BenchmarkServiceLookups(b *testing.B) {
	ix := benchStatic(b)
	svc := addr("10.43.1.2")
	b.Run("LookupService", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := ix.LookupService(svc, 80, "TCP"); !ok {
				b.Fatal("not found")
			}
		}
	})
	for _, o := range benchCluster() {
		if es, ok := o.(*discoveryv1.EndpointSlice); ok {
			ix.upsertSlice(newSliceInfo(es))
		}
	}
	backend := netip.AddrPortFrom(addr(benchIP(1234)), 8080)
	b.Run("ServiceForBackend", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := ix.ServiceForBackend(backend, "TCP"); !ok {
				b.Fatal("not found")
			}
		}
	})
}

// BenchmarkMemoryPerPodIndex is the index alone (identities, IP slots,
// service and backend tables, slimmed objects), without informer stores:
// the static source's cost, and the index's share of the Kube figure.
func BenchmarkMemoryPerPodIndex(b *testing.B) {
	objs := benchCluster()
	for b.Loop() {
		before := heapInUse()
		ix := newIndex(Config{NodeName: "node-0"})
		now := time.Now()
		for _, o := range objs {
			switch o := o.(type) {
			case *corev1.Namespace:
				ix.upsertNamespace(slimNamespace(o))
			case *corev1.Pod:
				ix.upsertPod(ix.podInfo(o), now)
			case *corev1.Service:
				ix.upsertService(newServiceInfo(o))
			case *discoveryv1.EndpointSlice:
				ix.upsertSlice(newSliceInfo(o))
			case *appsv1.ReplicaSet:
				ix.upsertOwner("ReplicaSet", newOwnerInfo(&o.ObjectMeta))
			}
		}
		after := heapInUse()
		writeHeapProfile(b)
		b.ReportMetric(float64(after-before)/benchPods, "bytes/pod")
		b.Logf("index only: %.0f bytes per pod", float64(after-before)/benchPods)
		runtime.KeepAlive(ix)
	}
}

// BenchmarkMemoryStatic is the static source from a cluster file of the
// same cluster (without the ReplicaSets, which a cluster file does not
// hold): what stays of the decoded objects once NewStatic has indexed
// them, as the agent's --cluster-file keeps it. Run with -benchtime=1x.
func BenchmarkMemoryStatic(b *testing.B) {
	var buf bytes.Buffer
	for _, o := range benchCluster() {
		switch o := o.(type) {
		case *appsv1.ReplicaSet:
			continue
		case *corev1.Pod:
			o.ManagedFields = nil // its stand-in bytes are no JSON
		}
		gvks, _, err := scheme.Scheme.ObjectKinds(o)
		require.NoError(b, err)
		o.GetObjectKind().SetGroupVersionKind(gvks[0])
		raw, err := yaml.Marshal(o)
		require.NoError(b, err)
		buf.WriteString("---\n")
		buf.Write(raw)
	}
	file := filepath.Join(b.TempDir(), "cluster.yaml")
	require.NoError(b, os.WriteFile(file, buf.Bytes(), 0o600))
	buf = bytes.Buffer{}
	for b.Loop() {
		before := heapInUse()
		objs, err := manifest.Load(file)
		require.NoError(b, err)
		s, err := NewStatic(objs, Config{NodeName: "node-0"})
		require.NoError(b, err)
		objs = nil
		after := heapInUse()
		writeHeapProfile(b)
		require.Equal(b, benchPods, s.Status().Pods)
		b.ReportMetric(float64(after-before)/benchPods, "bytes/pod")
		b.ReportMetric(float64(after-before)/(1<<20), "MiB")
		runtime.KeepAlive(s)
	}
}
