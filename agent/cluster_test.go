package agent

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/flowlens/flowlens/aggregate"
	"github.com/flowlens/flowlens/kubeapi/kubeapitest"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// TestAgentAgainstFakeCluster builds the agent through build, the path New
// takes after loading the capture, with a fake kernel source and client-go's
// fake clientset, and runs it as an in-cluster agent would: names from real
// informers, the intended set from the cluster's NetworkPolicies, and a
// policy applied while the agent runs changing the verdict of the next flow.
// fakeCluster holds linkding's pod, PostgreSQL's, and a default deny of
// ingress in database: the first flow between them is an UNEXPECTED_ALLOW.
func fakeCluster() kubeapitest.Clientset {
	ns := func(name string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/metadata.name": name}}}
	}
	pod := func(ns, name, ip, app string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": app}},
			Spec:       corev1.PodSpec{NodeName: "node1", Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{{Name: "pg", ContainerPort: 5432}}}}},
			Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}, HostIP: "192.0.2.1"},
		}
	}
	return kubeapitest.New(
		ns("linkding"), ns("database"),
		pod("linkding", "linkding-0", "10.42.0.10", "linkding"),
		pod("database", "postgresql-cluster-1", "10.42.0.20", "postgresql"),
		&networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: "database", Name: "default-deny-ingress"},
			Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
		},
	)
}

// allowAppsIngress lets linkding reach PostgreSQL through its named port.
func allowAppsIngress() *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "database", Name: "allow-apps-ingress"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "postgresql"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "linkding"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Port: &intstr.IntOrString{Type: intstr.String, StrVal: "pg"}}},
			}},
		},
	}
}

func TestAgentAgainstFakeCluster(t *testing.T) {
	client := fakeCluster()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()

	// The same path New takes once it has a capture and a client.
	flows := make(chan aggregate.Event)
	src := &chanSource{in: flows}
	cfg := DefaultConfig()
	cfg.NodeName = "node1"
	cfg.MetricsPodLabels = true
	cfg.MetricsAddress = ""
	cfg.GRPCAddress = "127.0.0.1:0"
	cfg.FlowLog = []string{"-"}
	in, err := parseInputs(cfg)
	require.NoError(t, err)
	out := &lockedBuffer{}
	a, err := build(ctx, cfg, in, log, out, reg, src, client)
	require.NoError(t, err)
	require.NotNil(t, a.deps.policy, "the cluster's policies are the intended set")
	j := a.deps.policy
	ring := &logSink{out: out}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	waitState := func(want string) {
		require.Eventually(t, func() bool { _, st := j.State(); return st == want }, 5*time.Second, 10*time.Millisecond, want)
	}
	waitState("ok: 1 policies, 2 pods")
	send := func(sport uint32) *flowlensv1.Flow {
		ev := tcpFlow("10.42.0.10", "10.42.0.20", sport, 5432, flowlensv1.Verdict_FORWARDED, false)
		flows <- ev
		var got *flowlensv1.Flow
		require.Eventually(t, func() bool {
			got = ring.last(t)
			return got.GetL4().GetTcp().GetSourcePort() == sport
		}, 5*time.Second, 10*time.Millisecond)
		return got
	}

	f := send(40000)
	assert.Equal(t, "linkding-0", f.GetSource().GetPodName())
	assert.Equal(t, "postgresql-cluster-1", f.GetDestination().GetPodName())
	assert.Equal(t, flowlensv1.IntendedVerdict_DENY, f.GetPolicy().GetVerdict())
	assert.Equal(t, flowlensv1.Mismatch_UNEXPECTED_ALLOW, f.GetPolicy().GetMismatch(), "the kernel forwarded what the cluster's set denies")
	assert.Equal(t, "cluster", f.GetPolicy().GetSource())

	// The allow rule lands in the cluster: the next flow is judged by it,
	// through the named port.
	_, err = client.NetworkingV1().NetworkPolicies("database").Create(ctx, allowAppsIngress(), metav1.CreateOptions{})
	require.NoError(t, err)
	waitState("ok: 2 policies, 2 pods")
	f = send(40001)
	assert.Equal(t, flowlensv1.IntendedVerdict_ALLOW, f.GetPolicy().GetVerdict(), f.GetPolicy().GetSummary())
	assert.Equal(t, flowlensv1.Mismatch_NONE, f.GetPolicy().GetMismatch())
	assert.Contains(t, f.GetPolicy().GetSummary(), "database/allow-apps-ingress")

	// The client pod goes away: its pod-labelled series go with it, and the
	// policy set is rebuilt without it.
	series := func() int {
		return testutil.CollectAndCount(a.pipe.metrics.flows)
	}
	require.Equal(t, 1, series())
	require.NoError(t, client.CoreV1().Pods("linkding").Delete(ctx, "linkding-0", metav1.DeleteOptions{}))
	require.Eventually(t, func() bool { return series() == 0 }, 5*time.Second, 10*time.Millisecond, "series of the deleted pod removed")
	waitState("ok: 2 policies, 1 pods")

	st := a.Status()
	assert.Equal(t, "cluster, enforcer k3s-kube-router", st.GetPolicySource(), "the default profile is shown with the source")
	assert.Contains(t, st.GetEnrichmentState(), "synced")
	cancel()
	require.NoError(t, <-done)
}

// chanSource plays what arrives on in until ctx ends.
type chanSource struct{ in chan aggregate.Event }

func (c *chanSource) Run(ctx context.Context, out chan<- aggregate.Event) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-c.in:
			out <- ev
		}
	}
}

func (c *chanSource) Status() map[string]string { return map[string]string{"veth": "tcx"} }

// lockedBuffer is the agent's stdout, written by the flow log and read by
// the test.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// logSink reads the flows back from the JSON flow log.
type logSink struct{ out *lockedBuffer }

func (l *logSink) last(t *testing.T) *flowlensv1.Flow {
	l.out.mu.Lock()
	lines := strings.Split(strings.TrimSpace(l.out.buf.String()), "\n")
	l.out.mu.Unlock()
	if lines[len(lines)-1] == "" {
		return nil
	}
	var f flowlensv1.Flow
	require.NoError(t, protojson.Unmarshal([]byte(lines[len(lines)-1]), &f))
	return &f
}
