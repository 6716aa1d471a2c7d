//go:build kubelab

// The real-cluster tests run with `make test-kubernetes` (build tag kubelab):
// they need the Kubernetes binaries, a long build the first time.

package e2e

import (
	"context"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	"google.golang.org/protobuf/encoding/protojson"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flowlens/flowlens/lab/kube"
	"github.com/flowlens/flowlens/lab/netns"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// agentMetric reads one unlabelled metric from the node's agent, straight from its metrics port
// in the node namespace (no apiserver needed).
func (e *kubeEnv) agentMetric(t *testing.T, name string) string {
	t.Helper()
	n := e.c.Nodes()[0]
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	body, err := e.c.HTTPGetIn(ctx, n.NetNS, "http://"+n.IP+":9280/metrics")
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return ""
	}
	return m[1]
}

// localStatus is `flowlens status` against the node's agent over its loopback, from inside the
// node namespace: it works while the apiserver (and so port-forward) is down.
func (e *kubeEnv) localStatus(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := e.c.ExecIn(ctx, e.c.Nodes()[0].NetNS, bins.cli, "status", "--server", "127.0.0.1:4280")
	require.NoError(t, err, out)
	return out
}

// testAPIOutage stops the apiserver for 30 s while a pod keeps connecting: capture goes on and
// loses nothing, the agent reports degraded enrichment (status and metric) and recovers by itself.
func testAPIOutage(t *testing.T, e *kubeEnv, backendIP string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	_, err := kube.CreatePod(ctx, e.cs, kube.LabPod{Namespace: "demo", Name: "ticker",
		Labels: map[string]string{"app": "frontend"}, Args: []string{"send", "500ms", "tcp", backendIP + ":8080"}}, 2*time.Minute)
	require.NoError(t, err)
	e.waitFlow(t, "demo/ticker -> demo/backend:8080", 45*time.Second, podFlow("demo", "ticker", "demo", "backend", 8080))
	require.Equal(t, "0", e.agentMetric(t, "flowlens_enrichment_degraded"))

	stopped := time.Now()
	require.NoError(t, e.c.StopAPIServer())
	t.Cleanup(func() { _ = e.c.StartAPIServer(context.Background()) }) // never leave the cluster without one
	require.Eventually(t, func() bool { return e.agentMetric(t, "flowlens_enrichment_degraded") == "1" },
		30*time.Second, time.Second, "flowlens_enrichment_degraded never became 1")
	assert.Regexp(t, `(?m)^Enrichment:.*degraded`, e.localStatus(t))
	time.Sleep(time.Until(stopped.Add(30 * time.Second)))
	restarted := time.Now()
	require.NoError(t, e.c.StartAPIServer(ctx))
	require.Eventually(t, func() bool { return e.agentMetric(t, "flowlens_enrichment_degraded") == "0" },
		90*time.Second, time.Second, "enrichment did not recover after the apiserver returned")
	t.Logf("enrichment recovered %v after the apiserver returned", time.Since(restarted).Round(time.Second))
	st := e.localStatus(t)
	assert.Regexp(t, `(?m)^Lost events:\s+none$`, st)
	assert.NotRegexp(t, `(?m)^Enrichment:.*degraded`, st)

	// Capture never stopped: the ticker's flows from inside the outage are there, still named.
	during := 0
	for _, f := range e.observe(t, 5000) {
		ts := f.GetTime().AsTime()
		if podFlow("demo", "ticker", "demo", "backend", 8080)(f) && ts.After(stopped.Add(5*time.Second)) && ts.Before(restarted) {
			during++
		}
	}
	assert.Positive(t, during, "no named ticker flow reported during the outage")

	// Informers are back: a pod created now is named (the only apiserver was down, so nothing could
	// be created during the outage itself). The scheduler, the kubelet and kube-router resume on
	// their reflectors' backoff, which grows to 30 s (a minute with its jitter) over the outage, and
	// must list again after it (the new apiserver cannot resume their watches): each may take a
	// minute or two. The waits follow them; the agent's own part is timed from the connection.
	late, err := kube.CreatePod(ctx, e.cs, kube.LabPod{Namespace: "demo", Name: "latecomer", Labels: map[string]string{"app": "frontend"}}, 4*time.Minute)
	require.NoError(t, err)
	t.Logf("latecomer running %v after the apiserver returned", time.Since(restarted).Round(time.Second))
	// kube-router (PolicyFromCluster left it enforcing) rejects app=frontend until its informers
	// have the new pod: wait until its source ipset holds the address, then connect.
	e.waitKubeRouterSource(t, ctx, late.Status.PodIP, 4*time.Minute)
	t.Logf("kube-router had the latecomer %v after the apiserver returned", time.Since(restarted).Round(time.Second))
	var out string
	connected := assert.Eventually(t, func() bool {
		var ok bool
		ok, out, err = e.c.Connect(ctx, "demo", "latecomer", "tcp", backendIP+":8080")
		return err == nil && ok
	}, 30*time.Second, time.Second)
	require.True(t, connected, "latecomer -> backend:8080: %v %s", err, out)
	connectedAt := time.Now()
	f, flows := e.findFlow(t, 45*time.Second, podFlow("demo", "latecomer", "demo", "backend", 8080))
	if f == nil {
		for _, f := range flows {
			if f.GetIp().GetSource() == late.Status.PodIP {
				t.Logf("flow from the latecomer's address: %s", protojson.Format(f))
			}
		}
		t.Fatalf("no flow demo/latecomer -> demo/backend:8080 within 45s (of %d flows); agent status:\n%s", len(flows), e.localStatus(t))
	}
	t.Logf("latecomer's flow named %v after it connected", time.Since(connectedAt).Round(time.Second))
	assert.Equal(t, late.Status.PodIP, f.GetIp().GetSource())
	require.NoError(t, e.cs.CoreV1().Pods("demo").Delete(ctx, "ticker", metav1.DeleteOptions{}))
}

// waitKubeRouterSource waits until kube-router on the first node lists ip in one of its policies'
// source ipsets (KUBE-SRC-*): its informers have the pod.
func (e *kubeEnv) waitKubeRouterSource(t *testing.T, ctx context.Context, ip string, timeout time.Duration) {
	t.Helper()
	member := regexp.MustCompile(`(?m)^add KUBE-SRC-\S+ ` + regexp.QuoteMeta(ip) + `(\s|$)`)
	deadline := time.Now().Add(timeout)
	for {
		out, err := e.c.ExecIn(ctx, e.c.Nodes()[0].NetNS, "ipset", "save")
		if err == nil && member.MatchString(out) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("kube-router put %s in no source ipset within %v: %v\n%s", ip, timeout, err, out)
		}
		time.Sleep(time.Second)
	}
}

// testAgentRestart deletes the agent pod: the DaemonSet's new pod attaches once per pod veth (the
// old pod's programs are gone, none twice) and reports flows again.
func testAgentRestart(t *testing.T, e *kubeEnv, backendIP string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	before := e.vethAttachments(t)
	require.NotEmpty(t, before)
	for veth, progs := range before {
		require.Equal(t, []string{"TCXIngress", "TCXEgress"}, progs, "%s before the restart", veth)
	}
	sel := metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=flowlens"}
	pods, err := e.cs.CoreV1().Pods("flowlens").List(ctx, sel)
	require.NoError(t, err)
	require.Len(t, pods.Items, len(e.c.Nodes()))
	old := pods.Items[0]
	require.NoError(t, e.cs.CoreV1().Pods("flowlens").Delete(ctx, old.Name, metav1.DeleteOptions{}))
	require.Eventually(t, func() bool {
		pods, err := e.cs.CoreV1().Pods("flowlens").List(ctx, metav1.ListOptions{LabelSelector: sel.LabelSelector, FieldSelector: "spec.nodeName=" + old.Spec.NodeName})
		return err == nil && len(pods.Items) == 1 && pods.Items[0].UID != old.UID && isReady(&pods.Items[0])
	}, 2*time.Minute, time.Second, "no new Ready agent pod after deleting %s", old.Name)

	ok, out, err := e.c.Connect(ctx, "demo", "frontend", "tcp", backendIP+":8080")
	require.NoError(t, err, out)
	require.True(t, ok, out)
	restarted := time.Now()
	e.waitFlow(t, "demo/frontend -> demo/backend:8080 after the restart", 45*time.Second, func(f *flowlensv1.Flow) bool {
		return podFlow("demo", "frontend", "demo", "backend", 8080)(f) && f.GetTime().AsTime().After(restarted.Add(-2*time.Second))
	})
	// The old pod detached on its way out; the new one attached each veth once. (A pod deleted
	// just before, such as the outage's ticker, may take its veth with it meanwhile.)
	after := e.vethAttachments(t)
	require.NotEmpty(t, after)
	for veth, progs := range after {
		assert.Equal(t, []string{"TCXIngress", "TCXEgress"}, progs, "%s after the restart", veth)
	}
	assert.Regexp(t, fmt.Sprintf(`(?m)^Interfaces:\s+%d attached$`, len(after)), e.localStatus(t), "one attachment per pod veth")
}

// vethAttachments lists, per pod veth of the first node (the ports of cni0; the node's uplink is a
// veth too), the TCX programs the kernel reports on it (Debian 12's bpftool does not list TCX).
func (e *kubeEnv) vethAttachments(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	require.NoError(t, netns.Do(e.c.Nodes()[0].NetNS, func() error {
		br, err := netlink.LinkByName("cni0")
		if err != nil {
			return fmt.Errorf("find cni0: %w", err)
		}
		links, err := netlink.LinkList()
		if err != nil {
			return fmt.Errorf("list links: %w", err)
		}
		for _, l := range links {
			if l.Type() != "veth" || l.Attrs().MasterIndex != br.Attrs().Index {
				continue
			}
			out[l.Attrs().Name] = []string{}
			for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
				res, err := link.QueryPrograms(link.QueryOptions{Target: l.Attrs().Index, Attach: at})
				if err != nil {
					return fmt.Errorf("query %s %s: %w", l.Attrs().Name, at, err)
				}
				for range res.Programs {
					out[l.Attrs().Name] = append(out[l.Attrs().Name], at.String())
				}
			}
		}
		return nil
	}))
	return out
}
