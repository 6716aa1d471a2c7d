package enrich

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/flowlens/flowlens/kubeapi/kubeapitest"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	k8stesting "k8s.io/client-go/testing"
)

var ctx = context.Background()

func TestKubePodLifecycle(t *testing.T) {
	k, cs := startKube(t, Config{DeletedGrace: time.Minute},
		namespace("database", "team", "data"),
		pod("database", "postgresql-cluster-1", []string{"10.42.0.9", "fd00:42::9"},
			labels("cnpg.io/cluster", "postgresql-cluster", "role", "primary"),
			ownedBy("Cluster", "postgresql-cluster"),
			func(p *corev1.Pod) {
				p.Spec.Containers = []corev1.Container{{Name: "pg", Image: "postgres", Ports: []corev1.ContainerPort{{Name: "postgresql", ContainerPort: 5432}, {ContainerPort: 9187}}}}
				p.Annotations = map[string]string{"big": "annotation"}
			}))

	// add: both address families name the pod, with labels, namespace
	// labels, workload and ports.
	for _, ip := range []string{"10.42.0.9", "fd00:42::9", "::ffff:10.42.0.9"} {
		id := k.Lookup(addr(ip), time.Now())
		require.Equal(t, flowlensv1.EndpointKind_POD, id.Kind, ip)
		assert.Equal(t, "database", id.Namespace)
		assert.Equal(t, "postgresql-cluster-1", id.Name)
		assert.Equal(t, []string{"cnpg.io/cluster=postgresql-cluster", "role=primary"}, id.Labels)
		assert.Equal(t, []string{"kubernetes.io/metadata.name=database", "team=data"}, id.NamespaceLabels)
		assert.Equal(t, Workload{Kind: "Cluster", Name: "postgresql-cluster"}, id.Workload)
		assert.Equal(t, testNode, id.NodeName)
		assert.Equal(t, []NamedPort{{Name: "postgresql", Port: 5432, Protocol: "TCP"}}, id.Ports)
		ep := id.Endpoint()
		assert.Equal(t, "postgresql-cluster-1", ep.PodName)
		assert.Same(t, ep, k.Lookup(addr(ip), time.Time{}).Endpoint(), "the proto is cached per identity")
	}
	// the informer stored the slimmed pod
	_, pods := k.Snapshot()
	require.Len(t, pods, 1)
	assert.Nil(t, pods[0].Annotations)
	assert.Empty(t, pods[0].Spec.Containers[0].Image)
	assert.Equal(t, []corev1.ContainerPort{{Name: "postgresql", ContainerPort: 5432}}, pods[0].Spec.Containers[0].Ports, "only named ports kept")

	// update: the IP changes; the new one resolves at once, the old one
	// only for flows of the past.
	p, err := cs.CoreV1().Pods("database").Get(ctx, "postgresql-cluster-1", metav1.GetOptions{})
	require.NoError(t, err)
	p.Status.PodIPs = []corev1.PodIP{{IP: "10.42.0.10"}}
	p.Status.PodIP = "10.42.0.10"
	_, err = cs.CoreV1().Pods("database").Update(ctx, p, metav1.UpdateOptions{})
	require.NoError(t, err)
	eventually(t, func() bool { return k.Lookup(addr("10.42.0.10"), time.Now()).Kind == flowlensv1.EndpointKind_POD }, "new IP resolves")
	assert.Equal(t, flowlensv1.EndpointKind_WORLD, k.Lookup(addr("10.42.0.9"), time.Now().Add(2*time.Minute)).Kind)

	// delete: the IP keeps naming the pod for the grace period, then not.
	deleted := time.Now()
	require.NoError(t, cs.CoreV1().Pods("database").Delete(ctx, "postgresql-cluster-1", metav1.DeleteOptions{}))
	eventually(t, func() bool { return k.Status().Pods == 0 }, "pod deleted")
	assert.Equal(t, "postgresql-cluster-1", k.Lookup(addr("10.42.0.10"), time.Now()).Name, "within grace")
	assert.Equal(t, "postgresql-cluster-1", k.Lookup(addr("10.42.0.10"), deleted.Add(-time.Second)).Name, "flow from before the delete")
	assert.Equal(t, flowlensv1.EndpointKind_WORLD, k.Lookup(addr("10.42.0.10"), time.Now().Add(61*time.Second)).Kind, "after grace")
	k.gc(time.Now().Add(61 * time.Second))
	assert.Equal(t, flowlensv1.EndpointKind_WORLD, k.Lookup(addr("10.42.0.10"), time.Time{}).Kind, "forgotten by the janitor")
}

func TestKubeIPReuse(t *testing.T) {
	k, cs := startKube(t, Config{DeletedGrace: time.Minute},
		pod("a", "old", []string{"10.42.0.20"}),
		pod("a", "job-1", []string{"10.42.0.21"}))
	eventually(t, func() bool { return k.Lookup(addr("10.42.0.20"), time.Time{}).Name == "old" }, "old pod indexed")
	beforeDelete := time.Now()
	time.Sleep(2 * time.Millisecond)

	// the old pod goes, a new pod takes its IP within the grace period
	require.NoError(t, cs.CoreV1().Pods("a").Delete(ctx, "old", metav1.DeleteOptions{}))
	eventually(t, func() bool { return k.Status().Pods == 1 }, "old deleted")
	_, err := cs.CoreV1().Pods("b").Create(ctx, pod("b", "new", []string{"10.42.0.20"}), metav1.CreateOptions{})
	require.NoError(t, err)
	eventually(t, func() bool { return k.Lookup(addr("10.42.0.20"), time.Now()).Name == "new" }, "new pod takes the IP")
	assert.Equal(t, "old", k.Lookup(addr("10.42.0.20"), beforeDelete).Name, "flows seen before the delete keep the old name")
	assert.Equal(t, "new", k.Lookup(addr("10.42.0.20"), time.Time{}).Name)

	// a completed pod lets go of its IP while its object lingers, and a
	// new pod may take it; the completed pod no longer claims it
	j, err := cs.CoreV1().Pods("a").Get(ctx, "job-1", metav1.GetOptions{})
	require.NoError(t, err)
	j.Status.Phase = corev1.PodSucceeded
	_, err = cs.CoreV1().Pods("a").Update(ctx, j, metav1.UpdateOptions{})
	require.NoError(t, err)
	_, err = cs.CoreV1().Pods("a").Create(ctx, pod("a", "job-2", []string{"10.42.0.21"}), metav1.CreateOptions{})
	require.NoError(t, err)
	eventually(t, func() bool { return k.Lookup(addr("10.42.0.21"), time.Now()).Name == "job-2" }, "reused IP")
	// a late update of the completed pod must not take the IP back
	j.Labels = map[string]string{"x": "y"}
	_, err = cs.CoreV1().Pods("a").Update(ctx, j, metav1.UpdateOptions{})
	require.NoError(t, err)
	eventually(t, func() bool {
		_, pods := k.Snapshot()
		for _, p := range pods {
			if p.Name == "job-1" && p.Labels["x"] == "y" {
				return true
			}
		}
		return false
	}, "late update seen")
	assert.Equal(t, "job-2", k.Lookup(addr("10.42.0.21"), time.Now()).Name)
}

func TestKubeHostsAndNodes(t *testing.T) {
	k, cs := startKube(t, Config{},
		node(testNode, "192.168.1.10", "10.42.0.0/24"),
		node("node-b", "192.168.1.11", "10.42.1.0/24"),
		pod("kube-system", "svclb-traefik", []string{"192.168.1.10"}, hostNetwork),
		pod("monitoring", "node-exporter-x", []string{"192.168.1.12"}, hostNetwork, onNode("node-c")),
		pod("a", "peer", []string{"10.42.1.5"}, onNode("node-b")))

	tests := []struct {
		ip   string
		kind flowlensv1.EndpointKind
		name string
	}{
		{"192.168.1.10", flowlensv1.EndpointKind_HOST, testNode}, // node IP and hostNetwork pod: never the pod
		{"10.42.0.1", flowlensv1.EndpointKind_HOST, testNode},    // cni0
		{"10.42.0.0", flowlensv1.EndpointKind_HOST, testNode},    // flannel.1
		{"192.168.1.11", flowlensv1.EndpointKind_NODE, "node-b"}, // other node
		{"10.42.1.1", flowlensv1.EndpointKind_NODE, "node-b"},    // its cni0
		{"192.168.1.12", flowlensv1.EndpointKind_NODE, "node-c"}, // only a hostNetwork pod names this node
		{"10.42.1.5", flowlensv1.EndpointKind_POD, "peer"},       // peers on other nodes are named too
		{"1.1.1.1", flowlensv1.EndpointKind_WORLD, ""},
	}
	for _, tt := range tests {
		t.Run(tt.ip, func(t *testing.T) {
			id := k.Lookup(addr(tt.ip), time.Now())
			assert.Equal(t, tt.kind, id.Kind)
			assert.Equal(t, tt.name, id.Name)
		})
	}
	assert.Equal(t, "node-b", k.Lookup(addr("10.42.1.5"), time.Now()).NodeName)

	// a hostNetwork pod going away does not take the node's address with it
	require.NoError(t, cs.CoreV1().Pods("kube-system").Delete(ctx, "svclb-traefik", metav1.DeleteOptions{}))
	require.NoError(t, cs.CoreV1().Pods("monitoring").Delete(ctx, "node-exporter-x", metav1.DeleteOptions{}))
	eventually(t, func() bool { return k.Lookup(addr("192.168.1.12"), time.Now()).Kind == flowlensv1.EndpointKind_WORLD }, "hostNetwork-only address forgotten")
	assert.Equal(t, flowlensv1.EndpointKind_HOST, k.Lookup(addr("192.168.1.10"), time.Now()).Kind)

	require.NoError(t, cs.CoreV1().Nodes().Delete(ctx, "node-b", metav1.DeleteOptions{}))
	eventually(t, func() bool { return k.Lookup(addr("192.168.1.11"), time.Now()).Kind == flowlensv1.EndpointKind_WORLD }, "node deleted")
}

func TestKubeWorkloads(t *testing.T) {
	rs := func(name string, owner ...metav1.OwnerReference) *appsv1.ReplicaSet {
		return &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "w", Name: name, OwnerReferences: owner}}
	}
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "w", Name: "backup-29000000",
		OwnerReferences: []metav1.OwnerReference{controllerRef("CronJob", "backup")}}}
	k, cs := startKube(t, Config{},
		rs("linkding-7c9f", controllerRef("Deployment", "linkding")),
		rs("bare-rs"),
		rs("canary-5d8f", controllerRef("Rollout", "canary")),
		job,
		pod("w", "linkding-7c9f-abcde", []string{"10.42.0.30"}, ownedBy("ReplicaSet", "linkding-7c9f"), labels("pod-template-hash", "7c9f")),
		pod("w", "bare-rs-x", []string{"10.42.0.31"}, ownedBy("ReplicaSet", "bare-rs")),
		pod("w", "canary-5d8f-x", []string{"10.42.0.32"}, ownedBy("ReplicaSet", "canary-5d8f"), labels("pod-template-hash", "5d8f")),
		pod("w", "backup-29000000-x", []string{"10.42.0.33"}, ownedBy("Job", "backup-29000000")),
		pod("w", "db-0", []string{"10.42.0.34"}, ownedBy("StatefulSet", "db")),
		pod("w", "agent-x", []string{"10.42.0.35"}, ownedBy("DaemonSet", "agent")),
		pod("w", "debug", []string{"10.42.0.36"}),
		pod("w", "late-6b7c-x", []string{"10.42.0.37"}, ownedBy("ReplicaSet", "late-6b7c"), labels("pod-template-hash", "6b7c")),
		pod("w", "orphan-x", []string{"10.42.0.38"}, ownedBy("ReplicaSet", "orphan")),
	)
	tests := []struct {
		ip   string
		want Workload
	}{
		{"10.42.0.30", Workload{"Deployment", "linkding"}},
		{"10.42.0.31", Workload{"ReplicaSet", "bare-rs"}},
		{"10.42.0.32", Workload{"Rollout", "canary"}}, // owner lookup beats the naming rule
		{"10.42.0.33", Workload{"CronJob", "backup"}},
		{"10.42.0.34", Workload{"StatefulSet", "db"}},
		{"10.42.0.35", Workload{"DaemonSet", "agent"}},
		{"10.42.0.36", Workload{"Pod", "debug"}},
		{"10.42.0.37", Workload{"Deployment", "late"}}, // RS not seen yet: pod-template-hash rule
		{"10.42.0.38", Workload{"ReplicaSet", "orphan"}},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, k.Lookup(addr(tt.ip), time.Now()).Workload, tt.ip)
	}
	// the ReplicaSet arrives and says otherwise: its pods are renamed
	_, err := cs.AppsV1().ReplicaSets("w").Create(ctx, rs("orphan", controllerRef("Deployment", "adopter")), metav1.CreateOptions{})
	require.NoError(t, err)
	eventually(t, func() bool {
		return k.Lookup(addr("10.42.0.38"), time.Now()).Workload == Workload{"Deployment", "adopter"}
	}, "pods renamed when their ReplicaSet arrives")
	assert.Equal(t, []*flowlensv1.Workload{{Kind: "Deployment", Name: "adopter"}},
		k.Lookup(addr("10.42.0.38"), time.Now()).Endpoint().Workloads)
}

func TestKubeNamespaceLabelsFollow(t *testing.T) {
	k, cs := startKube(t, Config{},
		pod("apps", "web", []string{"10.42.0.40"}))
	assert.Nil(t, k.Lookup(addr("10.42.0.40"), time.Now()).NamespaceLabels)
	select {
	case <-k.Changed():
	default:
	}
	_, err := cs.CoreV1().Namespaces().Create(ctx, namespace("apps", "env", "prod"), metav1.CreateOptions{})
	require.NoError(t, err)
	eventually(t, func() bool { return len(k.Lookup(addr("10.42.0.40"), time.Now()).NamespaceLabels) == 2 }, "ns labels applied")
	select {
	case <-k.Changed():
	case <-time.After(time.Second):
		t.Fatal("Changed did not fire for a namespace change")
	}
	nss, pods := k.Snapshot()
	require.Len(t, nss, 1)
	require.Len(t, pods, 1)
	assert.Equal(t, "prod", nss[0].Labels["env"])
}

func TestKubeServices(t *testing.T) {
	k, cs := startKube(t, Config{},
		service("database", "postgresql-cluster-rw", "10.43.0.50",
			corev1.ServicePort{Name: "postgres", Port: 5432, Protocol: corev1.ProtocolTCP}),
		service("linkding", "linkding", "10.43.0.60",
			corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP},
			corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}),
		slice("database", "postgresql-cluster-rw-abc", "postgresql-cluster-rw", 5432, "postgres", "10.42.0.9"),
		slice("linkding", "linkding-xyz", "linkding", 9090, "http", "10.42.0.17", "10.42.1.17"),
		pod("database", "postgresql-cluster-1", []string{"10.42.0.9"}))

	ref, ok := k.LookupService(addr("10.43.0.50"), 5432, "TCP")
	require.True(t, ok)
	assert.Equal(t, ServiceRef{Namespace: "database", Name: "postgresql-cluster-rw", Port: 5432, PortName: "postgres"}, ref)
	_, ok = k.LookupService(addr("10.43.0.50"), 5433, "TCP")
	assert.False(t, ok, "wrong port")
	_, ok = k.LookupService(addr("10.43.0.50"), 5432, "UDP")
	assert.False(t, ok, "wrong protocol")
	ref, ok = k.LookupService(addr("10.43.0.60"), 53, "udp")
	require.True(t, ok)
	assert.Equal(t, "dns", ref.PortName)

	id := k.Lookup(addr("10.43.0.60"), time.Now())
	assert.Equal(t, flowlensv1.EndpointKind_SERVICE, id.Kind)
	assert.Equal(t, "linkding", id.Name)

	// backends: the target port maps back to the service port
	ref, ok = k.ServiceForBackend(netipAddrPort("10.42.1.17", 9090), "TCP")
	require.True(t, ok)
	assert.Equal(t, ServiceRef{Namespace: "linkding", Name: "linkding", Port: 80, PortName: "http"}, ref)
	_, ok = k.ServiceForBackend(netipAddrPort("10.42.1.17", 80), "TCP")
	assert.False(t, ok, "service port is not a backend port")
	ref, ok = k.ServiceForBackend(netipAddrPort("10.42.0.9", 5432), "TCP")
	require.True(t, ok)
	assert.Equal(t, "postgresql-cluster-rw", ref.Name)
	assert.Equal(t, "postgresql-cluster-1", k.Lookup(addr("10.42.0.9"), time.Now()).Name, "the backend is still the pod")

	// a backend behind two services resolves to the first by namespace/name,
	// whatever the event order
	_, err := cs.CoreV1().Services("database").Create(ctx, service("database", "postgresql-cluster-any", "10.43.0.51",
		corev1.ServicePort{Name: "postgres", Port: 5432, Protocol: corev1.ProtocolTCP}), metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = cs.DiscoveryV1().EndpointSlices("database").Create(ctx,
		slice("database", "postgresql-cluster-any-1", "postgresql-cluster-any", 5432, "postgres", "10.42.0.9"), metav1.CreateOptions{})
	require.NoError(t, err)
	eventually(t, func() bool {
		r, _ := k.ServiceForBackend(netipAddrPort("10.42.0.9", 5432), "TCP")
		return r.Name == "postgresql-cluster-any"
	}, "second service indexed")

	// slice and service deletion
	require.NoError(t, cs.DiscoveryV1().EndpointSlices("linkding").Delete(ctx, "linkding-xyz", metav1.DeleteOptions{}))
	eventually(t, func() bool {
		_, ok := k.ServiceForBackend(netipAddrPort("10.42.1.17", 9090), "TCP")
		return !ok
	}, "slice deleted")
	require.NoError(t, cs.CoreV1().Services("database").Delete(ctx, "postgresql-cluster-any", metav1.DeleteOptions{}))
	eventually(t, func() bool {
		r, _ := k.ServiceForBackend(netipAddrPort("10.42.0.9", 5432), "TCP")
		return r.Name == "postgresql-cluster-rw"
	}, "service deleted")
	_, ok = k.LookupService(addr("10.43.0.51"), 5432, "TCP")
	assert.False(t, ok)
	assert.Equal(t, 2, k.Status().Services)
}

// TestKubeAPIError drives the real informers against a clientset whose
// list and watch fail, then recover: names must come back.
func TestKubeAPIError(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	cs := kubeapitest.New(pod("a", "web", []string{"10.42.0.50"}))
	unreachable := errors.New("dial tcp 10.43.0.1:443: connect: connection refused")
	cs.PrependReactor("list", "*", func(k8stesting.Action) (bool, runtime.Object, error) {
		if failing.Load() {
			return true, nil, unreachable
		}
		return false, nil, nil
	})
	cs.PrependWatchReactor("*", func(k8stesting.Action) (bool, watch.Interface, error) {
		if failing.Load() {
			return true, nil, unreachable
		}
		return false, nil, nil
	})
	k, reg := startKubeWith(t, cs, Config{}, false)

	eventually(t, func() bool { return strings.Count(k.Status().Reason, "connection refused") == 7 }, "degraded on all 7 resources while the API fails")
	st := k.Status()
	assert.False(t, st.Synced)
	assert.Contains(t, st.Reason, "connection refused")
	assert.Contains(t, st.Reason, "pods")
	assert.Equal(t, 1.0, testutil.ToFloat64(k.health.degraded))
	assert.Greater(t, testutil.ToFloat64(k.health.syncErrors.WithLabelValues("pods")), 0.0)
	n, err := testutil.GatherAndCount(reg, "flowlens_enrichment_degraded", "flowlens_enrichment_sync_errors_total")
	require.NoError(t, err)
	assert.GreaterOrEqual(t, n, 2)
	// capture goes on: lookups answer, IP-only
	assert.Equal(t, flowlensv1.EndpointKind_WORLD, k.Lookup(addr("10.42.0.50"), time.Now()).Kind)

	failing.Store(false)
	// the reflectors back off (0.8s, 1.6s, ...) before retrying
	require.Eventually(t, func() bool {
		st := k.Status()
		return !st.Degraded && st.Synced
	}, 20*time.Second, 20*time.Millisecond, "recovers when the API does")
	assert.Empty(t, k.Status().Reason)
	assert.Equal(t, 0.0, testutil.ToFloat64(k.health.degraded))
	eventually(t, func() bool { return k.Lookup(addr("10.42.0.50"), time.Now()).Name == "web" }, "names return")
}

// TestKubeAPIStopped is an API server that stops: its open watch ends cleanly
// and every new watch is refused. The reflector retries refused watches in a
// loop of its own, without its error handler; enrichment must still report
// degraded, and recover when the watch is accepted again.
func TestKubeAPIStopped(t *testing.T) {
	var (
		mu      sync.Mutex
		down    bool
		current *watch.FakeWatcher
	)
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
	cs := kubeapitest.New(pod("a", "web", []string{"10.42.0.50"}))
	cs.PrependWatchReactor("pods", func(k8stesting.Action) (bool, watch.Interface, error) {
		mu.Lock()
		defer mu.Unlock()
		if down {
			return true, nil, refused
		}
		current = watch.NewFake()
		return true, current, nil
	})
	k, _ := startKubeWith(t, cs, Config{}, true)
	require.False(t, k.Status().Degraded)
	// A watch that ends within a second is an error the handler sees; an
	// API server stopping under a long-lived watch ends it cleanly.
	time.Sleep(1100 * time.Millisecond)
	mu.Lock()
	down = true
	current.Stop()
	mu.Unlock()

	eventually(t, func() bool { return k.Status().Degraded }, "degraded while every watch is refused")
	assert.Contains(t, k.Status().Reason, "pods: ")
	assert.Contains(t, k.Status().Reason, "connection refused")
	assert.Equal(t, 1.0, testutil.ToFloat64(k.health.degraded))
	assert.Equal(t, "web", k.Lookup(addr("10.42.0.50"), time.Now()).Name, "last known names stay")

	mu.Lock()
	down = false
	mu.Unlock()
	// the reflector backs off (0.8s, 1.6s, ...) between refused watches
	require.Eventually(t, func() bool { return !k.Status().Degraded }, 20*time.Second, 20*time.Millisecond, "recovers when a watch is accepted")
	assert.Equal(t, 0.0, testutil.ToFloat64(k.health.degraded))
}

// TestKubeAPIProbe is an API server that stops answering without closing
// anything (a partition): only the probe notices, by its timeout.
func TestKubeAPIProbe(t *testing.T) {
	k, _ := startKube(t, Config{}, pod("a", "web", []string{"10.42.0.50"}))
	var silent atomic.Bool
	silent.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go k.probe(ctx, func(ctx context.Context) error {
		if silent.Load() {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}, 10*time.Millisecond, 50*time.Millisecond)

	eventually(t, func() bool { return k.Status().Degraded }, "degraded while the API server is silent")
	assert.Contains(t, k.Status().Reason, "apiserver: context deadline exceeded")
	assert.Equal(t, "web", k.Lookup(addr("10.42.0.50"), time.Now()).Name, "last known names stay")
	silent.Store(false)
	eventually(t, func() bool { return !k.Status().Degraded }, "recovers when the API server answers")
	assert.Equal(t, 0.0, testutil.ToFloat64(k.health.degraded))
}
