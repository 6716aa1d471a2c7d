//go:build kubelab

// The real-cluster tests run with `make test-kubernetes` (build tag kubelab):
// they need the Kubernetes binaries, a long build the first time.

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flowlens/flowlens/lab/kube"
	"github.com/flowlens/flowlens/lab/scenario"
	flowlensv1 "github.com/flowlens/flowlens/proto/flowlens/v1"
)

// labCLI builds flowlens-lab next to the agent (TestMain's cleanup removes it).
func labCLI(t *testing.T) string {
	t.Helper()
	out := filepath.Join(filepath.Dir(bins.agent), "flowlens-lab")
	msg, err := exec.Command("go", "build", "-o", out, "../cmd/flowlens-lab").CombinedOutput()
	require.NoError(t, err, "build flowlens-lab: %s", msg)
	return out
}

// TestKubeLabTraffic is the user's path through the real-cluster lab: `flowlens-lab up
// --kubernetes` (flowlens installed from deploy/base, the default scenario's pods, Service and
// NetworkPolicies made real, kube-router enforcing them), `flowlens-lab traffic` driving every
// case between the real pods, the agent reporting them, and `flowlens-lab down` leaving nothing.
// With two nodes the second joins over Flannel-style VXLAN with its own containerd and kubelet,
// and `observe -P` without --node merges both agents.
func TestKubeLabTraffic(t *testing.T) {
	requireRoot(t)
	cli, kr := labCLI(t), kubeRouterBin(t)
	for _, nodes := range []int{1, 2} {
		t.Run(fmt.Sprintf("nodes=%d", nodes), func(t *testing.T) { testLabTraffic(t, cli, kr, nodes) })
	}
}

func testLabTraffic(t *testing.T, cli, kr string, nodes int) {
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	prefix := "fk" + hex.EncodeToString(b)
	prefixes.Lock()
	prefixes.list = append(prefixes.list, prefix)
	prefixes.Unlock()
	stateDir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()

	start := time.Now()
	up := exec.CommandContext(ctx, cli, "up", "--kubernetes", "--nodes", fmt.Sprint(nodes), "--state-dir", stateDir, "--prefix", prefix, "--kube-router-bin", kr)
	out, err := up.CombinedOutput()
	dir := filepath.Join(stateDir, "kubernetes")
	t.Cleanup(func() {
		if !kube.Exists(dir) {
			return
		}
		c, err := kube.Attach(dir, nil)
		require.NoError(t, err)
		st := c.State()
		podNS, err := c.PodNetNS(context.Background())
		assert.NoError(t, err)
		if t.Failed() {
			dumpKubeLogs(t, c)
		}
		msg, err := exec.Command(cli, "down", "--state-dir", stateDir).CombinedOutput()
		require.NoError(t, err, "%s", msg)
		assert.Contains(t, string(msg), "cluster "+prefix+" down")
		assertClusterGone(t, st, podNS)
	})
	require.NoError(t, err, "%s", out)
	t.Logf("flowlens-lab up --kubernetes in %s:\n%s", time.Since(start).Round(time.Second), lastLines(string(out), 8))
	require.Contains(t, string(out), "kubeconfig "+filepath.Join(dir, "kubeconfig"))
	require.Contains(t, string(out), "enforcer kube-router")

	tr := exec.CommandContext(ctx, cli, "traffic", "--state-dir", stateDir, "--duration", "15s")
	out, err = tr.CombinedOutput()
	require.NoError(t, err, "%s", out)
	logs := string(out)
	assert.NotContains(t, logs, "unexpected verdict")
	assert.NotContains(t, logs, "attempt failed")
	for _, tc := range scenario.DefaultScenario().WithNodes(nodes).Cases {
		assert.Contains(t, logs, fmt.Sprintf("msg=traffic round=1 case=%s ", tc.Name), "case %s ran as expected", tc.Name)
	}

	// The agent, installed as the DaemonSet, saw the traffic with the pods' names and the
	// scenario's intent.
	c, err := kube.Attach(dir, nil)
	require.NoError(t, err)
	cs, err := c.Clientset()
	require.NoError(t, err)
	e := &kubeEnv{c: c, cs: cs}
	agents, err := cs.CoreV1().Pods("flowlens").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=flowlens"})
	require.NoError(t, err)
	ready := map[string]bool{}
	for _, p := range agents.Items {
		ready[p.Spec.NodeName] = isReady(&p)
	}
	for _, n := range c.Nodes() {
		assert.True(t, ready[n.Name], "no Ready agent pod on %s", n.Name)
	}
	checkLabFlows(t, e, nodes)
}

// checkLabFlows looks for the scenario's traffic in what the agents report: names, verdicts and
// intent, the ClusterIP's backend, and with two nodes both ends of a cross-node flow.
func checkLabFlows(t *testing.T, e *kubeEnv, nodes int) {
	allowed := e.waitFlow(t, "demo/frontend -> demo/backend:8080 allowed", 45*time.Second, podFlow("demo", "frontend", "demo", "backend", 8080))
	assert.Equal(t, flowlensv1.Verdict_FORWARDED, allowed.GetVerdict())
	denied := e.waitFlow(t, "demo/frontend -> demo/db:8080 dropped", 45*time.Second, func(f *flowlensv1.Flow) bool {
		return podFlow("demo", "frontend", "demo", "db", 8080)(f) && f.GetVerdict() == flowlensv1.Verdict_DROPPED
	})
	assert.Equal(t, flowlensv1.IntendedVerdict_DENY, denied.GetPolicy().GetVerdict())
	assert.Equal(t, flowlensv1.Mismatch_NONE, denied.GetPolicy().GetMismatch())
	// Through the ClusterIP: the service and the backend pod kube-proxy picked (either backend
	// with two nodes), in one record.
	svc, flows := e.findFlow(t, 45*time.Second, func(f *flowlensv1.Flow) bool {
		return f.GetSource().GetPodName() == "frontend" && f.GetDestinationService().GetName() == "backend" &&
			slices.Contains([]string{"backend", "remote"}, f.GetDestination().GetPodName())
	})
	if svc == nil {
		for _, f := range flows {
			if f.GetSource().GetPodName() == "frontend" && (f.GetDestinationService() != nil || f.GetIp().GetDestination() == "10.43.0.20") {
				t.Logf("frontend -> service flow: %s", protojson.Format(f))
			}
		}
		t.Fatal("no flow demo/frontend -> service demo/backend naming its backend pod")
	}
	if nodes == 1 {
		return
	}
	// Across the VXLAN: node1's agent sees frontend's packets leave, node2's see them arrive;
	// observe without --node asked both.
	for _, node := range []string{"node1", "node2"} {
		e.waitFlow(t, "demo/frontend -> demo/remote:8080 on "+node, 45*time.Second, func(f *flowlensv1.Flow) bool {
			return podFlow("demo", "frontend", "demo", "remote", 8080)(f) && f.GetNodeName() == node &&
				f.GetVerdict() == flowlensv1.Verdict_FORWARDED
		})
	}
	// An ingress deny decided on node1 for a client on node2.
	e.waitFlow(t, "demo/remote -> demo/db:8080 dropped on node1", 45*time.Second, func(f *flowlensv1.Flow) bool {
		return podFlow("demo", "remote", "demo", "db", 8080)(f) && f.GetNodeName() == "node1" &&
			f.GetVerdict() == flowlensv1.Verdict_DROPPED
	})
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
